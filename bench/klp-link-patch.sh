#!/bin/bash
# bench/klp-link-patch.sh [--kernel V] [-r RUNS] [-1] [PATCH]
#
# Times `klp-link patch` end to end on tests/kernel/e2e.sh's klp-cc tree
# (run e2e.sh first; -1: one-build mode's tree, e2e.sh --one-build), by
# its phases: its own work (check, snapshot reuse, apply, restore) apart
# from what bench/patch-to-ko.sh measures step by step (rebuild, build).
# The first run may take the snapshot; the median is over the runs after
# it. PATCH defaults to tests/kernel/patches/cmdline.patch; RUNS to 5.
# Env: KLP_LINK (default target/release/klp-link), KLP_KERNEL_CACHE, JOBS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tests/kernel/lib.sh
. "$ROOT/tests/kernel/lib.sh"
# shellcheck source=tests/kernel/kernels.sh
. "$ROOT/tests/kernel/kernels.sh"
# shellcheck source=tests/kernel/e2e-tree.sh
. "$ROOT/tests/kernel/e2e-tree.sh"
KLP_LOG_TAG=klp-link-patch
klp_kernel_args "$@" || exit 2
set -- "${KLP_ARGS[@]}"
klp_kernel_select || exit 2
RUNS=5 ONE=0
while getopts r:1 o; do
    case $o in r) RUNS=$OPTARG ;; 1) ONE=1 ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
PATCH=$(readlink -f "${1:-$ROOT/tests/kernel/patches/cmdline.patch}")
KLP_LINK=${KLP_LINK:-$ROOT/target/release/klp-link}
[ -x "$KLP_LINK" ] || { klp_err "build klp-link first (cargo build --release)"; exit 2; }
E2E=$KLP_KERNEL_CACHE/e2e
[ $ONE = 0 ] || E2E=$KLP_KERNEL_CACHE/e2e-one-build
klp_take_e2e_tree "$E2E" vmlinux
WORK=$(mktemp -d /var/tmp/klp-link-patch.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
RUNNING_ARGS=()
[ $ONE = 1 ] || RUNNING_ARGS=(--vmlinux "$RUNNING/vmlinux" --modules "$RUNNING/modroot/lib/modules/$(cat "$RUNNING/release")")
echo "klp-link-patch: $(basename "$PATCH"), $([ $ONE = 1 ] && echo one-build || echo two-build) mode, $(nproc) CPUs"
printf '  %-4s %8s %8s  %s\n' run total own phases
totals=() owns=()
for run in $(seq 1 "$RUNS"); do
    "$KLP_LINK" patch "$TREE" "$PATCH" --name livepatch_bench -o "$WORK/livepatch_bench.ko" \
        ${JOBS:+-j "$JOBS"} "${RUNNING_ARGS[@]}" --json > "$WORK/out.json" 2> "$WORK/err.log" ||
        { cat "$WORK/err.log" >&2; exit 1; }
    read -r total own phases snap < <(python3 - "$WORK/out.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
t = {p["phase"]: p["seconds"] for p in d["phases"]}
own = sum(t[p] for p in ("check", "snapshot", "apply", "restore"))
print("%.2f %.3f %s %s" % (sum(t.values()), own,
      ",".join("%s=%.2f" % (k, v) for k, v in t.items()), d["snapshot"].replace(" ", "_")))
PY
)
    printf '  %-4s %8s %8s  %s (snapshot %s)\n' "$run" "$total" "$own" "$phases" "$snap"
    [ "$snap" != reused ] || { totals+=("$total"); owns+=("$own"); }
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
[ ${#totals[@]} -gt 0 ] || { echo "klp-link-patch: no run reused the snapshot"; exit 1; }
echo "klp-link-patch: median total $(median "${totals[@]}") s, of which klp-link's own (check, snapshot reuse, apply, restore) $(median "${owns[@]}") s, over ${#totals[@]} run(s) that reused the snapshot"
