#!/bin/bash
# tests/kernel/link-check.sh [--kernel V] [TREE CC] - klp-link on a real kernel tree.
#
# TREE is a Linux tree fully built with CC (a klp-cc command line, e.g.
# "/path/klp-cc gcc", exactly as the build used it: kbuild rebuilds
# everything if CC changes).  Without arguments: e2e.sh's klp tree
# ($KLP_KERNEL_CACHE/e2e/klp, built with the private copy of $KLP_CC that
# e2e.sh and kbuild-check.sh use), under e2e.sh's lock; run e2e.sh first.
# Checks, each timed:
#   1. `klp-link snapshot` verifies every manifest against its final object
#      (after objtool): none may need recomputing.
#   2. tests/kernel/patches/cmdline.patch, incremental rebuild, `klp-link
#      diff`: exactly cmdline_proc_show changed in vmlinux, nothing else.
#   3. the patch reverted and rebuilt: no functional change (exit 3).
#   4. a comment appended to include/linux/seq_file.h, which many objects
#      include: they all rebuild, and nothing changed (exit 3).
# Rebuilds are `make ./`: the objects, built-in.a and the .mod files,
# which is all klp-link reads.
# The tree is left as it was (patch reverted, header restored, rebuilt).
# --kernel V (6.1, the default or $KLP_KERNEL; 6.12; 7.3: kernels.sh) picks
# the default TREE: e2e.sh --kernel V's klp tree.  The patch is written
# against 6.1.
# Env: KLP_LINK (default target/release/klp-link of this repo), KLP_CC (for
# the default CC), KLP_KERNEL_CACHE, JOBS.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=tests/kernel/lib.sh
. "$HERE/lib.sh"
# shellcheck source=tests/kernel/kernels.sh
. "$HERE/kernels.sh"
KLP_LOG_TAG=link-check
klp_kernel_args "$@" || exit 2
set -- "${KLP_ARGS[@]}"
klp_kernel_select || exit 2
KLP_LINK=${KLP_LINK:-$REPO/target/release/klp-link}
case $# in
    2) TREE=$(cd "$1" && pwd) CC=$2 ;;
    0)
        TREE=$KLP_KERNEL_CACHE/e2e/klp
        klp_cc=${KLP_CC:-$REPO/target/release/klp-cc}
        [ -x "$klp_cc" ] || { klp_err "no klp-cc at $klp_cc (cargo build --release)"; exit 2; }
        CC="$KLP_KERNEL_CACHE/bin/$(sha256sum < "$(readlink -f "$klp_cc")" | cut -c1-16)/klp-cc gcc"
        [ -f "$TREE/.klp-e2e-key" ] && [ ! -f "$TREE/.klp-e2e-dirty" ] ||
            { klp_err "no clean e2e klp tree at $TREE: run tests/kernel/e2e.sh first"; exit 2; }
        exec 9>"$KLP_KERNEL_CACHE/e2e/.lock"
        flock -n 9 || { klp_err "e2e.sh is running (it holds $KLP_KERNEL_CACHE/e2e/.lock)"; exit 2; }
        ;;
    *) echo "usage: $0 [--kernel V] [TREE CC]" >&2; exit 2 ;;
esac
grep -qF -- "${CC%% *}" "$TREE/fs/proc/.cmdline.o.cmd" 2>/dev/null ||
    { klp_err "$TREE was not built with CC=\"$CC\" (see fs/proc/.cmdline.o.cmd)"; exit 2; }
# The build identity kbuild-check.sh built TREE with: a rebuild with another
# one changes init/version.o's banner data, which klp-link rightly refuses.
export KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 2026'
export KBUILD_BUILD_USER=klp-cc KBUILD_BUILD_HOST=kbuild-check KBUILD_BUILD_VERSION=1
[ -x "$KLP_LINK" ] || { klp_err "no klp-link at $KLP_LINK (cargo build --release)"; exit 1; }
JOBS=${JOBS:-$(nproc)}
WORK=$(mktemp -d /var/tmp/klp-link-check.XXXXXX)
SNAP=$WORK/snap
HEADER=include/linux/seq_file.h
FAILS=()
fail() { klp_err "$*"; FAILS+=("$*"); }

DIRTY=0   # 1 while the tree's sources differ from what its objects were built from
restore() {
    if [ "$DIRTY" = 1 ]; then
        (cd "$TREE" && patch -p1 -R -s -f --dry-run < "$HERE/patches/cmdline.patch" >/dev/null 2>&1 &&
            patch -p1 -R -s -f < "$HERE/patches/cmdline.patch") || true
        [ -f "$WORK/header.orig" ] && cp -p "$WORK/header.orig" "$TREE/$HEADER" && touch "$TREE/$HEADER"
        klp_log "restoring the tree (rebuild)"
        make -C "$TREE" -s -j"$JOBS" CC="$CC" ./ > /dev/null 2>&1 ||
            klp_err "could not rebuild $TREE after restoring it"
    fi
    rm -rf "$WORK"
}
trap restore EXIT

rebuild() {  # rebuild LABEL: incremental make, timed; sets SECS
    local t0 t1
    t0=$(date +%s.%N)
    make -C "$TREE" -s -j"$JOBS" CC="$CC" ./ > "$WORK/make.log" 2>&1 ||
        { klp_err "make failed ($1):"; tail -20 "$WORK/make.log" >&2; return 1; }
    t1=$(date +%s.%N)
    SECS=$(echo "$t1 - $t0" | bc)
}

timed() {  # timed VAR CMD...: run, keep exit status in VAR, wall time in LAST_SECS
    local _var=$1 _t0 _t1 _rc=0; shift
    _t0=$(date +%s.%N)
    "$@" || _rc=$?
    _t1=$(date +%s.%N)
    printf -v "$_var" %s "$_rc"
    LAST_SECS=$(echo "$_t1 - $_t0" | bc)
}

json_list() {  # json_list FILE KEY: the names of a top-level array, one a line
    python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))[sys.argv[2]]))' "$1" "$2"
}

# 1. snapshot: every manifest must match its object after objtool
timed rc "$KLP_LINK" snapshot "$TREE" -o "$SNAP" 2> "$WORK/snapshot.err"
cat "$WORK/snapshot.err" >&2
[ "$rc" = 0 ] || fail "snapshot failed (exit $rc)"
if grep -q "recomputed" "$WORK/snapshot.err"; then
    fail "some manifests did not match their final objects (see above)"
else
    klp_log "snapshot in ${LAST_SECS} s: every manifest matches its object after objtool"
fi
objects=$(wc -l < "$SNAP/targets")

# 2. the cmdline patch: exactly cmdline_proc_show
DIRTY=1
(cd "$TREE" && patch -p1 -s < "$HERE/patches/cmdline.patch")
rebuild "cmdline patch"; build_secs=$SECS
timed rc "$KLP_LINK" diff "$SNAP" --json > "$WORK/diff.json"
diff_secs=$LAST_SECS
"$KLP_LINK" diff "$SNAP" >&2 || true
changed=$(json_list "$WORK/diff.json" changed | paste -sd' ')
new=$(json_list "$WORK/diff.json" new | paste -sd' ')
removed=$(json_list "$WORK/diff.json" removed | paste -sd' ')
errors=$(json_list "$WORK/diff.json" errors | paste -sd' ')
targets=$(python3 -c 'import json,sys; print(" ".join(t["name"] for t in json.load(open(sys.argv[1]))["targets"]))' "$WORK/diff.json")
if [ "$rc" = 0 ] && [ "$changed" = cmdline_proc_show ] && [ -z "$new$removed$errors" ] &&
   [ "$targets" = vmlinux ]; then
    klp_log "cmdline patch: rebuilt in ${build_secs} s, diff in ${diff_secs} s: exactly cmdline_proc_show in vmlinux"
else
    fail "cmdline patch: exit $rc, targets [$targets], changed [$changed], new [$new], removed [$removed], errors [$errors]"
fi

# 3. reverted: nothing changed
(cd "$TREE" && patch -p1 -R -s < "$HERE/patches/cmdline.patch")
rebuild "revert"
timed rc "$KLP_LINK" diff "$SNAP" > "$WORK/revert.txt"
[ "$rc" = 3 ] && klp_log "reverted: no functional change (exit 3)" ||
    { cat "$WORK/revert.txt" >&2; fail "reverted tree: expected exit 3, got $rc"; }

# 4. a header many objects include, touched without a code change
cp -p "$TREE/$HEADER" "$WORK/header.orig"
echo "/* klp-cc link-check: a comment only */" >> "$TREE/$HEADER"
rebuild "header"; header_build=$SECS
timed rc "$KLP_LINK" diff "$SNAP" > "$WORK/header.txt"
rebuilt=$(sed -n 's/.* \([0-9]*\) rebuilt$/\1/p' "$WORK/header.txt")
if [ "$rc" = 3 ] && [ "${rebuilt:-0}" -gt 20 ]; then
    klp_log "header comment: ${rebuilt} objects rebuilt in ${header_build} s, diff in ${LAST_SECS} s: no functional change"
else
    cat "$WORK/header.txt" >&2
    fail "header comment: expected exit 3 with many objects rebuilt, got exit $rc, ${rebuilt:-?} rebuilt"
fi
cp -p "$WORK/header.orig" "$TREE/$HEADER"
touch "$TREE/$HEADER"
rebuild "restore"
DIRTY=0

klp_log "summary: $objects objects; snapshot, cmdline diff ${diff_secs} s"
if [ ${#FAILS[@]} -gt 0 ]; then
    klp_err "FAIL: ${#FAILS[@]} check(s) failed"
    exit 1
fi
klp_log PASS
