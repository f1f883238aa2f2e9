#!/bin/bash
# bench/fuzz-read-paths.sh [ITERATIONS] [SEED]
#
# The long run of the read-path property (tests/integration/robustness.rs):
# ITERATIONS (default 20,000) mutants of the objects of every corpus case,
# each compared with `diff-objects` both ways, explained on every symbol
# name and extracted as for `klp-link build`, in-process. SEED (decimal)
# picks other mutants than the default. A panic fails the run, naming the
# mutant and where it was saved. Needs gcc.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export KLP_FUZZ_ITERATIONS=${1:-20000}
[ -z "${2:-}" ] || export KLP_FUZZ_SEED=$2
exec cargo test --manifest-path "$root/Cargo.toml" --test integration \
    mutated_corpus_objects_never_panic_the_read_paths_long -- --ignored --nocapture
