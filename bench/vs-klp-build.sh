#!/bin/bash
# bench/vs-klp-build.sh [-r RUNS] [--no-fresh] [PATCH...]
#
# Upstream klp-build (Linux 7.3's scripts/livepatch/klp-build) beside
# klp-link, on the same 7.3 source, configuration and patches. Run
# `tests/kernel/e2e.sh --kernel 7.3 --one-build` first: its tree is ours,
# and the kernel it built is the running kernel the modules are tested on.
#
# klp-build `make clean`s the tree it runs in, so it gets its own copy of
# the source ($KLP_KERNEL_CACHE/7.3/vs-klp-build/tree) with the e2e tree's
# .config. It needs objtool built with libxxhash (libxxhash-dev), patchutils
# and gawk, which are installed when missing (root). For each PATCH
# (default: cmdline, version-new-helper, binfmt-misc-status,
# uptime-static-key-warn; 7.3 ports from tests/kernel/patches/7.3/ as e2e.sh
# takes them):
#   - klp-build, fresh (the first PATCH only; --no-fresh: none): make clean,
#     the original build, the patched build, diff, module;
#   - klp-build -S 2, RUNS times (default 1): the patched build, diff and
#     module, reusing the fresh run's original build;
#   - ours, bench/patch-to-ko.sh --kernel 7.3 -1 -r RUNS after one untimed
#     run (patch applied to .ko written: the span of klp-build -S 2, which
#     reuses its original build);
#   - both function lists (klp-build's "changed/new function" lines and
#     klp-link diff's), and whether they agree;
#   - whether each module behaves: e2e.sh --module-for with klp-build's
#     module (signed with the running kernel's key, as klp-link signs
#     ours), and e2e.sh with ours.
# Prints a table and the ratios of the medians. Env: KLP_CC, KLP_LINK,
# KLP_KERNEL_CACHE, JOBS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tests/kernel/lib.sh
. "$ROOT/tests/kernel/lib.sh"
# shellcheck source=tests/kernel/kernels.sh
. "$ROOT/tests/kernel/kernels.sh"
KLP_LOG_TAG=vs-klp-build
KLP_KERNEL=7.3
klp_kernel_select || exit 2
RUNS=1 FRESH=1 PATCHES=()
while [ $# -gt 0 ]; do
    case $1 in
        -r) RUNS=$2; shift ;;
        --no-fresh) FRESH=0 ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        -*) klp_err "unknown option $1"; exit 2 ;;
        *) PATCHES+=("$(readlink -f "$1")") ;;
    esac
    shift
done
P=$ROOT/tests/kernel/patches
# port NAME: the patch e2e.sh runs on 7.3 for NAME.
port() { if [ -e "$P/7.3/$1.patch" ]; then echo "$P/7.3/$1.patch"; else echo "$P/$1.patch"; fi; }
[ ${#PATCHES[@]} -gt 0 ] ||
    PATCHES=("$(port cmdline)" "$(port version-new-helper)" "$(port binfmt-misc-status)" "$(port uptime-static-key-warn)")
KLP_CC=${KLP_CC:-$ROOT/target/release/klp-cc}
KLP_LINK=${KLP_LINK:-$ROOT/target/release/klp-link}
JOBS=${JOBS:-$(nproc)}
E2E_TREE=$KLP_KERNEL_CACHE/e2e-one-build/klp
[ -f "$E2E_TREE/.klp-e2e-key" ] && [ -f "$E2E_TREE/vmlinux" ] ||
    { klp_err "no e2e one-build tree at $E2E_TREE: run tests/kernel/e2e.sh --kernel 7.3 --one-build first"; exit 2; }

# ---------------------------------------------------------------- setup
missing=()
for p in libxxhash-dev patchutils gawk; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    klp_log "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
WORK=$KLP_KERNEL_CACHE/vs-klp-build
TREE=$WORK/tree OUT=$WORK/out
mkdir -p "$WORK" "$OUT"
exec 9>"$WORK/.lock"
flock -n 9 || { klp_err "another vs-klp-build.sh is running"; exit 2; }
klp_kernel_source "$KLP_KERNEL_CACHE/src" >&2
if [ ! -f "$TREE/.config" ] || ! cmp -s "$TREE/.config" "$E2E_TREE/.config"; then
    klp_log "a copy of the source for klp-build: $TREE"
    klp_fresh_tree "$KLP_KERNEL_CACHE/src" "$TREE"
    cp "$E2E_TREE/.config" "$TREE/.config"
    make -C "$TREE" -s olddefconfig
    cmp -s "$TREE/.config" "$E2E_TREE/.config" || { klp_err "olddefconfig changed the e2e tree's .config"; exit 1; }
    FRESH=1
fi
# The build identity e2e.sh builds with, so that both trees are alike.
export KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 2026'
export KBUILD_BUILD_USER=klp-cc KBUILD_BUILD_HOST=kbuild-check KBUILD_BUILD_VERSION=1
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
name_of() { basename "$1" .patch; }
modname() { local n=livepatch_$1; echo "${n//[^A-Za-z0-9_]/_}"; }

# klp_build NAME PATCH [ARGS]: one klp-build run; its log in $OUT/NAME.*.log.
klp_build() {
    local name=$1 patch=$2; shift 2
    (cd "$TREE" && scripts/livepatch/klp-build -T -j"$JOBS" -o "$OUT/$(modname "$name").ko" "$@" "$patch")
}

# ---------------------------------------------------------------- klp-build
declare -A T_FRESH T_S2 T_OURS LIST_THEIRS LIST_OURS OK_THEIRS OK_OURS
first=1
for patch in "${PATCHES[@]}"; do
    name=$(name_of "$patch")
    if [ $FRESH = 1 ] && [ $first = 1 ]; then
        klp_log "$name: klp-build, fresh (make clean and two builds: many minutes)"
        t0=$(now)
        klp_build "$name" "$patch" > "$OUT/$name.fresh.log" 2>&1 ||
            { tail -20 "$OUT/$name.fresh.log" >&2; klp_err "klp-build failed"; exit 1; }
        T_FRESH[$name]=$(secs "$t0" "$(now)")
    fi
    first=0
    times=()
    for _ in $(seq 1 "$RUNS"); do
        klp_log "$name: klp-build -S 2"
        t0=$(now)
        klp_build "$name" "$patch" -S 2 > "$OUT/$name.s2.log" 2>&1 ||
            { tail -20 "$OUT/$name.s2.log" >&2; klp_err "klp-build -S 2 failed"; exit 1; }
        times+=("$(secs "$t0" "$(now)")")
    done
    T_S2[$name]=$(median "${times[@]}")
    LIST_THEIRS[$name]=$(sed -n 's/^[^ ]*\.o: \(changed\|new\) function: \(.*\)$/\1 \2/p' "$OUT/$name.s2.log" | sort -u | paste -sd, -)
    ko=$OUT/$(modname "$name").ko
    # The cache's one key, which the trees' CONFIG_MODULE_SIG_KEY names
    # (lib.sh); kbuild wrote its certificate into the tree.
    "$E2E_TREE/scripts/sign-file" sha512 "$(klp_signing_key)" \
        "$E2E_TREE/certs/signing_key.x509" "$ko"
done

# ---------------------------------------------------------------- ours
for patch in "${PATCHES[@]}"; do
    name=$(name_of "$patch")
    klp_log "$name: klp-link (bench/patch-to-ko.sh -1)"
    # An untimed run first: a package installed after the e2e build
    # (libxxhash-dev above) rebuilds objtool, and kbuild then finds every
    # object that objtool processed stale; the first rebuild of a folder
    # pays for that, not for the patch.
    KLP_CC=$KLP_CC KLP_LINK=$KLP_LINK "$ROOT/bench/patch-to-ko.sh" --kernel 7.3 -1 -r 1 "$patch" \
        > "$OUT/$name.warm-up.log" 2>&1 || { cat "$OUT/$name.warm-up.log" >&2; exit 1; }
    KLP_CC=$KLP_CC KLP_LINK=$KLP_LINK "$ROOT/bench/patch-to-ko.sh" --kernel 7.3 -1 -r "$RUNS" "$patch" \
        > "$OUT/$name.ours.log" 2>&1 || { cat "$OUT/$name.ours.log" >&2; exit 1; }
    T_OURS[$name]=$(sed -n 's/.*median \([0-9.]*\) s.*/\1/p' "$OUT/$name.ours.log")
done

# ---------------------------------------------------------------- behaviour
# run_e2e LOG [--module-for ...]: e2e.sh on the patches; sets RESULT[name].
declare -A RESULT
run_e2e() {
    local log=$1; shift
    KLP_CC=$KLP_CC KLP_LINK=$KLP_LINK "$ROOT/tests/kernel/e2e.sh" --kernel 7.3 --one-build "$@" \
        "${PATCHES[@]}" > "$log" 2>&1 || true
    RESULT=()
    local name
    for patch in "${PATCHES[@]}"; do
        name=$(name_of "$patch")
        RESULT[$name]=$(awk -v n="$name" '$1 == n && ($3 == "PASS" || $3 == "FAIL") { print $3 }' "$log" | tail -n1)
    done
}
klp_log "behaviour: e2e.sh with klp-link's modules"
run_e2e "$OUT/e2e-ours.log"
for patch in "${PATCHES[@]}"; do
    name=$(name_of "$patch"); OK_OURS[$name]=${RESULT[$name]:-?}
    run=$(sed -n 's/.*results in \([^ ]*\).*/\1/p' "$OUT/e2e-ours.log" | head -n1)
    LIST_OURS[$name]=$(sed 's/^[^ ]* //' "$run/$name/diff.lines" 2>/dev/null | sort -u | paste -sd, -)
done
klp_log "behaviour: e2e.sh with klp-build's modules"
args=()
for patch in "${PATCHES[@]}"; do
    name=$(name_of "$patch"); args+=(--module-for "$name=$OUT/$(modname "$name").ko")
done
run_e2e "$OUT/e2e-theirs.log" "${args[@]}"
for patch in "${PATCHES[@]}"; do name=$(name_of "$patch"); OK_THEIRS[$name]=${RESULT[$name]:-?}; done

# ---------------------------------------------------------------- report
echo "vs-klp-build: Linux $(cat "$E2E_TREE/include/config/kernel.release"), $(nproc) CPUs, JOBS=$JOBS, RUNS=$RUNS; logs in $OUT"
printf '  %-24s %9s %9s %7s %8s %9s  %-7s %-7s %s\n' patch fresh "-S 2" ours "S2/ours" "fresh/ours" "theirs" "ours" "function lists"
for patch in "${PATCHES[@]}"; do
    name=$(name_of "$patch")
    fresh=${T_FRESH[$name]:--}
    r_s2=$(awk -v a="${T_S2[$name]}" -v b="${T_OURS[$name]}" 'BEGIN { printf "%.1f", a / b }')
    r_fresh=-
    [ "$fresh" = - ] || r_fresh=$(awk -v a="$fresh" -v b="${T_OURS[$name]}" 'BEGIN { printf "%.0f", a / b }')
    lists="agree: ${LIST_OURS[$name]}"
    [ "${LIST_OURS[$name]}" = "${LIST_THEIRS[$name]}" ] ||
        lists="DIFFER: klp-build [${LIST_THEIRS[$name]}], klp-link [${LIST_OURS[$name]}]"
    printf '  %-24s %9s %9s %7s %8s %9s  %-7s %-7s %s\n' "$name" "$fresh" "${T_S2[$name]}" \
        "${T_OURS[$name]}" "$r_s2" "$r_fresh" "${OK_THEIRS[$name]}" "${OK_OURS[$name]}" "$lists"
done
echo "  times in seconds (medians): klp-build fresh, klp-build -S 2, ours (patch applied -> .ko written)"
