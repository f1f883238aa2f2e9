#!/bin/sh
# make-shims.sh DIR [KLP_CC]: fill DIR with symlinks to klp-cc named like the
# compilers kbuild and other builds call, so that PATH="DIR:$PATH" routes
# every compile through klp-cc. Each link runs the real compiler of its name
# found later on PATH (klp-cc skips itself), so only names that exist on PATH
# are linked. KLP_CC defaults to the klp-cc found on PATH.
set -eu
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 DIR [KLP_CC]" >&2; exit 2; }
dir=$1
klp_cc=${2:-$(command -v klp-cc || true)}
[ -n "$klp_cc" ] && [ -x "$klp_cc" ] || {
    echo "$0: klp-cc not found; pass its path as the second argument" >&2; exit 1; }
case $klp_cc in /*) ;; *) klp_cc=$(cd "$(dirname "$klp_cc")" && pwd)/$(basename "$klp_cc") ;; esac
mkdir -p "$dir"
arch=$(uname -m)
made=
for name in cc gcc clang "$arch-linux-gnu-gcc" $(cd /usr/bin 2>/dev/null && ls gcc-[0-9]* clang-[0-9]* "$arch"-linux-gnu-gcc-[0-9]* 2>/dev/null); do
    # Only names that resolve to a real compiler outside DIR.
    real=$(PATH=$(printf %s "$PATH" | tr : '\n' | grep -vxF "$dir" | paste -sd: -) command -v "$name" || true)
    [ -n "$real" ] || continue
    ln -sfn "$klp_cc" "$dir/$name"
    made="$made $name"
done
echo "make-shims.sh: linked to $klp_cc in $dir:$made"
echo "use: PATH=\"$dir:\$PATH\" make ..."
