#!/bin/bash
# bench/one-build-cost.sh [-r ROUNDS] - what one-build mode costs a full
# kernel build: the lab kernel built from a fresh copy of the source with
# plain `make CC=gcc` and with `make CC="klp-cc gcc"` and KLP_CC_SECTIONS=0
# (byte-identical outputs, plus a manifest per object), alternating, in the
# same run, ROUNDS times each (default 2). Prints each build's wall, user
# and sys seconds, then the ratio of the medians (klp-cc / gcc) of wall time
# and of CPU time (user + sys, less sensitive to other load on the machine).
# Each build is `make bzImage modules` at -j$JOBS (default nproc), in
# $KLP_KERNEL_CACHE/bench-one-build/{gcc,klp} (replaced on every round).
# Env: KLP_CC (default target/release/klp-cc), KLP_KERNEL_CACHE, JOBS.
# Time: about 2 x ROUNDS full builds (5 min each on 2 idle cores).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tests/kernel/lib.sh
. "$ROOT/tests/kernel/lib.sh"
KLP_LOG_TAG=one-build-cost
ROUNDS=2
while getopts r: o; do
    case $o in r) ROUNDS=$OPTARG ;; *) exit 2 ;; esac
done
KLP_CC=$(readlink -f "${KLP_CC:-$ROOT/target/release/klp-cc}")
[ -x "$KLP_CC" ] || { klp_err "build klp-cc first (cargo build --release)"; exit 2; }
# The same build identity as kbuild-check, and nothing from the caller.
export KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 2026'
export KBUILD_BUILD_USER=klp-cc KBUILD_BUILD_HOST=kbuild-check KBUILD_BUILD_VERSION=1
unset KLP_CC_SECTIONS KLP_CC_LOG KCFLAGS
SRC=$KLP_KERNEL_CACHE/src
WORK=$KLP_KERNEL_CACHE/bench-one-build
klp_get_source "$SRC" || exit 2
mkdir -p "$WORK"
export KLP_BUILD_LOG=$WORK/build.log
: > "$KLP_BUILD_LOG"

declare -A WALL CPU
# build NAME [make args...]: fresh copy, configure, full build; records times.
build() {
    local name=$1 tree=$WORK/$1 wall user sys; shift
    klp_fresh_tree "$SRC" "$tree" && klp_configure "$tree" > /dev/null || exit 2
    /usr/bin/time -o "$WORK/time" -f "%e %U %S" make -C "$tree" -j"${JOBS:-$(nproc)}" "$@" \
        bzImage modules >> "$KLP_BUILD_LOG" 2>&1 ||
        { klp_err "the $name build failed (see $KLP_BUILD_LOG)"; exit 1; }
    read -r wall user sys < "$WORK/time"
    printf '  %-4s %8.1f %8.1f %8.1f\n' "$name" "$wall" "$user" "$sys"
    WALL[$name]+="$wall "
    CPU[$name]+="$(echo "$user + $sys" | bc) "
}
median() { printf '%s\n' $1 | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "one-build-cost: $ROUNDS round(s), $(nproc) CPUs, JOBS=${JOBS:-$(nproc)}, klp-cc $KLP_CC"
printf '  %-4s %8s %8s %8s\n' build wall user sys
for _ in $(seq 1 "$ROUNDS"); do
    build gcc CC=gcc
    KLP_CC_SECTIONS=0 build klp CC="$KLP_CC gcc"
done
for m in WALL CPU; do
    declare -n times=$m
    g=$(median "${times[gcc]}") k=$(median "${times[klp]}")
    echo "one-build-cost: median $m: gcc $g s, klp-cc $k s, ratio $(echo "scale=3; $k / $g" | bc)"
done
