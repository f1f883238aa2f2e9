#!/bin/bash
# bench/link-compare.sh [-n OBJECTS] [-r REBUILT] [-k BINDIR]
#
# How fast klp-link reads a big tree: a synthetic kbuild-like tree of N
# objects (default 30,000) is laid out from 200 distinct real objects
# compiled through klp-cc (20 functions and a few data objects each; every
# object and manifest is a real one, copied), built-in.a listing all of
# them. Then it times, with peak RSS:
#   1. klp-link snapshot        (reads and verifies every manifest)
#   2. klp-link diff, warm       (nothing rebuilt: N stats + snapshot read)
#   3. klp-link diff after R objects (default 300) were "rebuilt" with a
#      changed function each (their objects and manifests replaced)
# Targets (issue 4): diff < 1 s warm and < 200 MB peak for 30,000 objects.
# BINDIR defaults to target/release (built if missing).
set -euo pipefail
N=30000 R=300 BIN=
while getopts n:r:k: o; do
    case $o in n) N=$OPTARG ;; r) R=$OPTARG ;; k) BIN=$OPTARG ;; *) exit 2 ;; esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "$BIN" ]; then
    BIN=$root/target/release
    [ -x "$BIN/klp-link" ] || cargo build --release --quiet --manifest-path "$root/Cargo.toml"
fi
KLP_CC=$BIN/klp-cc KLP_LINK=$BIN/klp-link
work=$(mktemp -d /var/tmp/klp-link-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
src=$work/src tree=$work/tree
mkdir -p "$src" "$tree"

gen() {  # gen FILE SEED VARIANT: 20 functions, a table, a counter
    local f=$1 seed=$2 variant=$3
    {
        echo "extern void sink(const char *, long);"
        echo "static long counter_$seed;"
        echo "static const int table_$seed[] = { $seed, $((seed + 1)), $((seed * 3)), 7 };"
        for i in $(seq 0 19); do
            local k=$(( (seed * 31 + i) % 97 ))
            [ "$i" = 0 ] && k=$((k + variant))
            echo "long f${seed}_$i(long x) { counter_$seed++; if (x > $k) sink(\"f${seed}_$i\", x); return x * $k + table_$seed[x & 3]; }"
        done
    } > "$f"
}
cflags=(-O2 -mfentry -pg -mrecord-mcount -fno-pic -mcmodel=kernel -mno-red-zone
        -fno-asynchronous-unwind-tables -fno-stack-protector)
echo "bench: compiling 200 distinct objects through klp-cc"
for s in $(seq 0 199); do
    gen "$src/u$s.c" "$s" 0
    gen "$src/v$s.c" "$s" 1
done
( cd "$src" && for s in $(seq 0 199); do
    "$KLP_CC" gcc "${cflags[@]}" -c "u$s.c" -o "u$s.o"
    "$KLP_CC" gcc "${cflags[@]}" -c "v$s.c" -o "v$s.o"
  done )

echo "bench: laying out $N objects"
touch "$tree/.config"
python3 - "$src" "$tree" "$N" > "$work/list" <<'PY'
import os, shutil, sys
src, tree, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    d = f"d{i // 100}"
    os.makedirs(os.path.join(tree, d), exist_ok=True)
    s = i % 200
    shutil.copyfile(f"{src}/u{s}.o", f"{tree}/{d}/o{i}.o")
    shutil.copyfile(f"{src}/.u{s}.o.klp", f"{tree}/{d}/.o{i}.o.klp")
    print(f"{d}/o{i}.o")
PY
( cd "$tree" && xargs ar cDPrST built-in.a < "$work/list" )

measure() {  # measure LABEL CMD...: wall seconds and peak RSS
    local label=$1 rc=0; shift
    /usr/bin/time -o "$work/time" -f '%e %M' "$@" >/dev/null 2>&1 || rc=$?
    read -r secs kb < <(tail -n 1 "$work/time")
    printf '%-28s %8s s %8s MB   (exit %s)\n' "$label" "$secs" "$((kb / 1024))" "$rc"
}

echo
printf '%-28s %10s %11s\n' step wall "peak RSS"
measure "snapshot ($N objects)" "$KLP_LINK" snapshot "$tree" -o "$work/snap"
"$KLP_LINK" diff "$work/snap" >/dev/null 2>&1 || true   # warm the page cache
measure "diff, nothing rebuilt" "$KLP_LINK" diff "$work/snap"
measure "diff, nothing rebuilt (2)" "$KLP_LINK" diff "$work/snap"
sleep 0.01
python3 - "$src" "$tree" "$N" "$R" <<'PY'
import shutil, sys
src, tree, n, r = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for i in range(0, n, max(1, n // r))[:r]:
    s, d = i % 200, f"d{i // 100}"
    shutil.copyfile(f"{src}/v{s}.o", f"{tree}/{d}/o{i}.o")
    shutil.copyfile(f"{src}/.v{s}.o.klp", f"{tree}/{d}/.o{i}.o.klp")
PY
measure "diff, $R rebuilt" "$KLP_LINK" diff "$work/snap"
changed=$("$KLP_LINK" diff --json "$work/snap" | grep -c '"name": "f[0-9]*_0"' || true)
echo "bench: the diff after rebuilding reported $changed changed entries (expect $R)"
