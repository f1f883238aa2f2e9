#!/bin/bash
# tests/kernel/external-check.sh - `klp-link patch --external` on a real
# external module (kpatch-build's --oot-module case).
#
# On e2e.sh --one-build's klp tree (the production build; run that first),
# under e2e.sh's lock:
#   1. tests/kernel/external/ (klp_ext_demo: /proc/klp_ext_demo shows a
#      greeting and a read count) is copied to a new folder and built
#      there with `make -C TREE M=DIR` and the tree's own CC;
#   2. `klp-link patch TREE --external DIR external/greeting.patch` must
#      report exactly demo_show as changed in klp_ext_demo and build the
#      livepatch; afterwards every file of DIR must have its bytes and
#      mtime back, and `make M=DIR` must compile nothing;
#   3. the one-build kernel boots under qemu: the module is loaded, read
#      and unloaded, then the livepatch is loaded, then the module: its
#      show function must be the patched one and count in the module's own
#      variable (klp relocations to the module's static data and to its
#      local function, written as the module comes). Unloaded and loaded
#      again, it must read patched where the kernel clears klp relocations
#      on a module's removal (clear_relocate_add(), 6.2+), and be refused
#      where it does not (6.1), which klp-link's report must say.
# Afterwards the tree's sources must be the pristine ones again.
# Usage: tests/kernel/external-check.sh [--kernel V] (kernels.sh; default 6.1)
# Env: KLP_LINK (default target/release/klp-link), KLP_KERNEL_CACHE, KLP_ACCEL.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=tests/kernel/lib.sh
. "$HERE/lib.sh"
# shellcheck source=tests/kernel/kernels.sh
. "$HERE/kernels.sh"
# shellcheck source=tests/kernel/e2e-tree.sh
. "$HERE/e2e-tree.sh"
KLP_LOG_TAG=external-check
klp_kernel_args "$@" || exit 2
[ ${#KLP_ARGS[@]} -eq 0 ] || { klp_err "usage: $0 [--kernel V]"; exit 2; }
klp_kernel_select || exit 2
KLP_LINK=${KLP_LINK:-$REPO/target/release/klp-link}
[ -x "$KLP_LINK" ] || { klp_err "no klp-link at $KLP_LINK (cargo build --release)"; exit 2; }
klp_take_e2e_tree "$KLP_KERNEL_CACHE/e2e-one-build" bzImage
# The one-build tree was compiled without klp-cc's section flags.
export KLP_CC_SECTIONS=0
WORK=$(mktemp -d /var/tmp/klp-external-check.XXXXXX)
WORK=$(readlink -f "$WORK")
trap 'rm -rf "$WORK"' EXIT
MOD=$WORK/klp_ext_demo
PATCH=$HERE/external/greeting.patch
fails=0
check() {  # WHAT CONDITION...
    local what=$1; shift
    if "$@"; then klp_log "ok: $what"; else klp_err "FAIL: $what"; fails=$((fails + 1)); fi
}
# state DIR: every file with its hash, size and mtime.
state() { (cd "$1" && find . -type f -printf '%P %s %T@\n' | sort && find . -type f -exec sha256sum {} + | sort -k2); }

# ---- the external module, built against the tree as its vendor would
mkdir -p "$MOD"
cp "$HERE/external/klp_ext_demo.c" "$HERE/external/Kbuild" "$MOD/"
cc=$(sed -n 's/^\(saved\)\{0,1\}cmd_init\/main\.o := \([^ ]*klp-cc\) \([^ ]*\) .*/\2 \3/p' "$TREE/init/.main.o.cmd")
[ -n "$cc" ] || { klp_err "cannot read the tree's CC from $TREE/init/.main.o.cmd"; exit 2; }
make -C "$TREE" M="$MOD" CC="$cc" modules > "$WORK/build.log" 2>&1 ||
    { tail -20 "$WORK/build.log" >&2; klp_err "the external module does not build"; exit 1; }
mkdir -p "$WORK/ko"
cp "$MOD/klp_ext_demo.ko" "$WORK/ko/klp_ext_demo.ko"
sign_like_kbuild "$TREE" "$WORK/ko/klp_ext_demo.ko"
state "$MOD" > "$WORK/before.state"

# ---- klp-link patch
rc=0
TMPDIR=$WORK "$KLP_LINK" patch "$TREE" --external "$MOD" --name livepatch_ext \
    -o "$WORK/ko/livepatch_ext.ko" --json "$PATCH" > "$WORK/patch.json" 2> "$WORK/patch.err" || rc=$?
[ $rc -eq 0 ] || { cat "$WORK/patch.err" "$WORK/patch.json" >&2; klp_err "klp-link patch exits $rc"; exit 1; }
changes=$(python3 - "$WORK/patch.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
for t in doc["comparison"]["targets"]:
    for kind in ("changed", "new"):
        for f in t.get(kind, []):
            print(t["name"], kind, f["name"])
PY
)
klp_log "klp-link reports: $(tr '\n' ';' <<< "$changes")"
check "the report is exactly demo_show, changed, in klp_ext_demo" \
    test "$changes" = "klp_ext_demo changed demo_show"
state "$MOD" > "$WORK/after.state"
check "every file of the module's folder has its bytes and mtime back" cmp -s "$WORK/before.state" "$WORK/after.state"
make -C "$TREE" M="$MOD" CC="$cc" modules > "$WORK/build-after.log" 2>&1
check "make M=DIR afterwards compiles nothing" sh -c "! grep -E '^  (CC|LD) ' '$WORK/build-after.log'"
check "the livepatch is signed" sh -c "tail -c 28 '$WORK/ko/livepatch_ext.ko' | grep -q '~Module signature appended~'"

# ---- in the guest
# Linux before 6.2 does not clear a livepatch's klp relocations into a
# module when it is unloaded, so loading it again under the livepatch is
# refused; klp-link's report must say so, and the guest must see it.
if grep -q clear_relocate_add "$TREE/kernel/livepatch/core.c"; then reload=ok; else reload=refused; fi
if [ $reload = refused ]; then
    check "the report says the module cannot be loaded again under the livepatch" \
        grep -q 'cannot be loaded again' "$WORK/patch.json"
fi
GUEST="reload=$reload"$'\n'$(cat <<'SH'
fail() { echo "EXT-FAIL: $*"; dmesg | tail -30; exit 1; }
insmod /ko/01-klp_ext_demo.ko || fail "insmod klp_ext_demo"
out=$(cat /proc/klp_ext_demo)
echo "before the livepatch: $out"
[ "$out" = "hello from klp_ext_demo (read 1 times)" ] || fail "unpatched module reads: $out"
rmmod klp_ext_demo || fail "rmmod klp_ext_demo"
insmod /ko/02-livepatch_ext.ko || fail "insmod livepatch_ext"
klp_wait_transition 60 || fail "the transition did not finish"
[ "$(cat /sys/kernel/livepatch/livepatch_ext/enabled)" = 1 ] || fail "livepatch_ext is not enabled"
insmod /ko/01-klp_ext_demo.ko || fail "insmod klp_ext_demo under the livepatch"
out=$(cat /proc/klp_ext_demo)
echo "loaded under the livepatch: $out"
[ "$out" = "hello from klp_ext_demo, live-patched (read 1 times)" ] || fail "module loaded under the livepatch reads: $out"
out=$(cat /proc/klp_ext_demo)
[ "$out" = "hello from klp_ext_demo, live-patched (read 2 times)" ] || fail "the second read: $out"
rmmod klp_ext_demo || fail "rmmod klp_ext_demo under the livepatch"
if [ "$reload" = ok ]; then
    insmod /ko/01-klp_ext_demo.ko || fail "insmod klp_ext_demo again, under the livepatch"
    out=$(cat /proc/klp_ext_demo)
    echo "loaded again: $out"
    [ "$out" = "hello from klp_ext_demo, live-patched (read 1 times)" ] || fail "module loaded again reads: $out"
else
    if insmod /ko/01-klp_ext_demo.ko; then fail "this kernel loaded the module again, though it keeps the old relocations"; fi
    dmesg | grep -q 'Skipping invalid relocation target' || fail "the reload was refused for another reason"
    echo "loading it again is refused, as this kernel must (no clear_relocate_add)"
fi
echo "EXT-OK"
SH
)
rc=0; klp_boot "$RUNNING/bzImage" "$WORK/ko/klp_ext_demo.ko:$WORK/ko/livepatch_ext.ko" "$GUEST" || rc=$?
sed 's/^/    guest: /' "$KLP_BOOT_OUTPUT" 2>/dev/null | head -40
check "in the guest the external module comes patched under the livepatch (reload: $reload)" test $rc -eq 0

# ---- the tree
edits=$(cd "$TREE" && find . -path ./.klp-link -prune -o -type f -newer .config -name '*.[ch]' -print |
    while read -r f; do [ -f "$KLP_KERNEL_CACHE/src/$f" ] && ! cmp -s "$KLP_KERNEL_CACHE/src/$f" "$f" && echo "$f"; done || true)
check "the tree's sources are the pristine ones" test -z "$edits"
[ $fails -eq 0 ] || { klp_err "$fails check(s) failed"; exit 1; }
klp_log "PASS"
