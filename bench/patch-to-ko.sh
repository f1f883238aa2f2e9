#!/bin/bash
# bench/patch-to-ko.sh [--kernel V] [-r RUNS] [-f] [-1] [PATCH]
#
# Time from "patch applied" to "livepatch .ko written" on a built tree, by
# phase (issue 5's figure; target < 60 s on 2 cores including the rebuild).
# It uses tests/kernel/e2e.sh's trees (run e2e.sh first): the klp-cc tree
# $KLP_KERNEL_CACHE/e2e/klp and the running kernel e2e/running, under
# e2e.sh's lock; with -1, one-build mode's (e2e.sh --one-build): the one
# tree e2e-one-build/klp, rebuilt with KLP_CC_SECTIONS=0, and klp-link build
# without --vmlinux. Per run:
#   1. klp-link snapshot of the unpatched tree (before the clock starts);
#   2. klp-link fix-lines -d TREE PATCH | patch -p1  } the clock
#   3. kbuild-snippets/klp-rebuild.sh (make DIR/ for the folders of the
#      objects that depend on a patched file: the objects, built-in.a and
#      the .mod files; -f: make bzImage modules, a full incremental build
#      that also relinks vmlinux)                     }
#   4. klp-link build, which prints its own phases   }
#   5. revert and rebuild (not timed).
# PATCH defaults to tests/kernel/patches/cmdline.patch; RUNS to 3. Prints
# each run and the median. --kernel V (6.1, the default or $KLP_KERNEL;
# 6.12; 7.3: tests/kernel/kernels.sh) uses e2e.sh --kernel V's trees; the
# default PATCH is written against 6.1. Env: KLP_CC, KLP_LINK (default
# target/release), KLP_KERNEL_CACHE, JOBS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tests/kernel/lib.sh
. "$ROOT/tests/kernel/lib.sh"
# shellcheck source=tests/kernel/kernels.sh
. "$ROOT/tests/kernel/kernels.sh"
KLP_LOG_TAG=patch-to-ko
klp_kernel_args "$@" || exit 2
set -- "${KLP_ARGS[@]}"
klp_kernel_select || exit 2
RUNS=3 FULL=0 ONE=0
while getopts r:f1 o; do
    case $o in r) RUNS=$OPTARG ;; f) FULL=1 ;; 1) ONE=1 ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
PATCH=$(readlink -f "${1:-$ROOT/tests/kernel/patches/cmdline.patch}")
KLP_CC=${KLP_CC:-$ROOT/target/release/klp-cc}
KLP_LINK=${KLP_LINK:-$ROOT/target/release/klp-link}
[ -x "$KLP_CC" ] && [ -x "$KLP_LINK" ] || { klp_err "build klp-cc and klp-link first (cargo build --release)"; exit 2; }
E2E=$KLP_KERNEL_CACHE/e2e
[ $ONE = 0 ] || { E2E=$KLP_KERNEL_CACHE/e2e-one-build; export KLP_CC_SECTIONS=0; }
TREE=$E2E/klp RUNNING=$E2E/running
CC="$KLP_KERNEL_CACHE/bin/$(sha256sum < "$(readlink -f "$KLP_CC")" | cut -c1-16)/klp-cc gcc"
[ -f "$TREE/.klp-e2e-key" ] && [ ! -f "$TREE/.klp-e2e-dirty" ] && [ -f "$RUNNING/vmlinux" ] ||
    { klp_err "no clean e2e trees under $E2E: run tests/kernel/e2e.sh first"; exit 2; }
grep -qF -- "${CC%% *}" "$TREE/fs/proc/.cmdline.o.cmd" ||
    { klp_err "$TREE was built by another klp-cc (set KLP_CC to the one e2e.sh used)"; exit 2; }
exec 9>"$E2E/.lock"
flock -n 9 || { klp_err "e2e.sh is running"; exit 2; }
# The build identity the tree was built with (see e2e.sh).
export KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 2026'
export KBUILD_BUILD_USER=klp-cc KBUILD_BUILD_HOST=kbuild-check KBUILD_BUILD_VERSION=1
JOBS=${JOBS:-$(nproc)}
# rebuild [make args]: the timed rebuild of the patched (or reverted) tree.
rebuild() {
    if [ $FULL = 1 ]; then
        make -C "$TREE" "$@" bzImage modules
    else
        "$ROOT/kbuild-snippets/klp-rebuild.sh" "$TREE" "$WORK/applied.patch" -- "$@"
    fi
}
WORK=$(mktemp -d /var/tmp/klp-patch-to-ko.XXXXXX)
APPLIED=0
cleanup() {
    if [ $APPLIED = 1 ]; then
        (cd "$TREE" && patch -p1 -R -s -f < "$WORK/applied.patch") &&
            rebuild -s -j"$JOBS" CC="$CC" > /dev/null 2>&1 ||
            klp_err "could not restore $TREE: run e2e.sh, which repairs it"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

"$KLP_LINK" fix-lines -d "$TREE" "$PATCH" -o "$WORK/applied.patch"
PLAN="make bzImage modules"
[ $FULL = 1 ] || PLAN=$("$ROOT/kbuild-snippets/klp-rebuild.sh" -n "$TREE" "$WORK/applied.patch" | sed 's|^make -C [^ ]* |make |')
rel=$(cat "$RUNNING/release")
# Two-build mode names the running kernel; in one-build mode the tree is it.
RUNNING_ARGS=(--vmlinux "$RUNNING/vmlinux" --modules "$RUNNING/modroot/lib/modules/$rel")
[ $ONE = 0 ] || RUNNING_ARGS=()
totals=()
echo "patch-to-ko: $(basename "$PATCH"), $([ $ONE = 1 ] && echo one-build || echo two-build) mode, rebuild: $PLAN, $(nproc) CPUs, JOBS=$JOBS"
printf '  %-4s %8s %9s %9s  %s\n' run apply rebuild klp-link "klp-link phases"
for run in $(seq 1 "$RUNS"); do
    "$KLP_LINK" snapshot "$TREE" -o "$WORK/snap" --force 2> /dev/null
    t0=$(now)
    (cd "$TREE" && patch -p1 -s -f < "$WORK/applied.patch"); APPLIED=1
    t1=$(now)
    rebuild -s -j"$JOBS" CC="$CC" > "$WORK/make.log" 2>&1 ||
        { tail -20 "$WORK/make.log" >&2; exit 1; }
    t2=$(now)
    "$KLP_LINK" build "$WORK/snap" "${RUNNING_ARGS[@]}" --name livepatch_bench \
        --patch "$WORK/applied.patch" -o "$WORK/livepatch_bench.ko" 2> "$WORK/build.log" ||
        { cat "$WORK/build.log" >&2; exit 1; }
    t3=$(now)
    phases=$(sed -n 's/^klp-link: time: //p' "$WORK/build.log")
    printf '  %-4s %8s %9s %9s  %s\n' "$run" "$(secs "$t0" "$t1")" "$(secs "$t1" "$t2")" \
        "$(secs "$t2" "$t3")" "$phases"
    totals+=("$(secs "$t0" "$t3")")
    (cd "$TREE" && patch -p1 -R -s -f < "$WORK/applied.patch"); APPLIED=0
    rebuild -s -j"$JOBS" CC="$CC" > /dev/null 2>&1
done
median=$(printf '%s\n' "${totals[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
echo "patch-to-ko: patch applied -> .ko written: median ${median} s over $RUNS run(s) (${totals[*]})"
