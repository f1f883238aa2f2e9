#!/bin/bash
# klp-rebuild.sh [-n | --dependents | --plan] [--external DIR] TREE PATCH... [-- MAKE_ARGS...]
#
# After PATCH is applied to the built kernel tree TREE, runs the smallest
# kbuild invocation that recompiles every object klp-link will read whose
# dependencies changed, and refreshes the lists it reads (built-in.a,
# lib.a, the .mod files), without linking anything:
#
#   make -C TREE MAKE_ARGS dir/ [dir/ ...]
#
# where the directories are those of the objects that depend on a patched
# file, by kbuild's own dependency lists (the .cmd files fixdep writes:
# every header an object includes, and every .c it #includes). kbuild then
# decides, object by object, what is stale, exactly as a full `make` would.
# When a patched file is something no object lists (a Makefile, Kconfig, a
# new file, a script), it falls back to `make ./`: kbuild's whole-tree
# compile step, which also picks up new objects. Either way nothing is
# linked (no vmlinux.o, modpost or .ko), since klp-link reads only objects.
#
# MAKE_ARGS must be the tree's own build settings (CC="klp-cc gcc", O=,
# LLVM=, -j), or kbuild rebuilds everything. -n prints the make command
# instead of running it. --dependents prints, one per line, each object
# that depends on a patched file and its file ("fs/proc/cmdline.o
# fs/proc/cmdline.c"), for checking a rebuild afterwards; a patched file
# that no object lists is printed as "- FILE". --plan prints both halves
# of a run without running it, for klp-link patch (which saves what the
# rebuild will overwrite): "object OBJ FILE" per dependent, then "goal DIR/"
# per make goal.
#
# --external DIR: the patches are against an external module's folder
# (built with make -C TREE M=DIR, DIR an absolute path), not the kernel's
# sources. Its objects are found in DIR's .cmd files, where kbuild writes
# them as DIR/FILE, and are printed that way; the make is
# `make -C TREE MAKE_ARGS M=DIR`, kbuild's external module build, which
# relinks the module too (its folder is all it writes).
# Exit status: make's, or 2 for bad usage.
set -euo pipefail
usage() { echo "usage: $0 [-n | --dependents | --plan] [--external DIR] TREE PATCH... [-- MAKE_ARGS...]" >&2; exit 2; }
mode=run
case ${1:-} in -n) mode=dry; shift ;; --dependents) mode=dependents; shift ;; --plan) mode=plan; shift ;; esac
external=
if [ "${1:-}" = --external ]; then
    [ $# -ge 2 ] || usage
    external=$2; shift 2
    case $external in /*) ;; *) echo "$0: --external needs an absolute path, not $external" >&2; exit 2 ;; esac
    [ -d "$external" ] || { echo "$0: $external is not a folder" >&2; exit 2; }
fi
[ $# -ge 2 ] || usage
tree=$1; shift
[ -f "$tree/.config" ] || { echo "$0: $tree is not a built kernel tree (no .config)" >&2; exit 2; }
patches=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do patches+=("$1"); shift; done
[ "${1:-}" = -- ] && shift
[ ${#patches[@]} -gt 0 ] || usage

# The files the patches touch, as paths in the tree ("+++ b/PATH", with any
# timestamp after a tab dropped; /dev/null is a deletion).
files=$(sed -n 's|^+++ [^/[:space:]]*/\([^[:space:]]*\).*|\1|p' "${patches[@]}" | sort -u)
[ -n "$files" ] || { echo "$0: no file names in ${patches[*]}" >&2; exit 2; }

# ere_path PATH: PATH/ as an extended regular expression.
ere_path() { printf '%s/' "$1" | sed 's/[.[\*^$+?(){}|]/\\&/g'; }

# dependents FILE: the objects whose .cmd file lists FILE as its source
# (source_OBJ := FILE) or, as fixdep writes them, among its dependencies
# (two spaces in, " \" after all but the last). In O= builds the path is
# under $(srctree)/ (6.1) or the source tree's path (7.x), which the O=
# folder's `source` link names.
dependents() {
    local re cmd base=$tree prefix='\$\(srctree\)/' src
    if src=$(readlink "$tree/source" 2>/dev/null); then
        prefix="$prefix|$(ere_path "$src")"
        src=$(readlink -f "$tree/source") && prefix="$prefix|$(ere_path "$src")"
    fi
    if [ -n "$external" ]; then base=$external; prefix=$(ere_path "$external"); fi
    re=$(printf '%s' "$1" | sed 's/[.[\*^$]/\\&/g')
    re="($prefix)?$re"
    (cd "$base" && grep -rlx --include='.*.o.cmd' -E "  $re( \\\\)?|source_[^ ]+ := $re" . || true) |
        while IFS= read -r cmd; do
            cmd=${cmd#./}
            cmd="$(dirname "$cmd")/$(basename "$cmd" .cmd | cut -c2-)"
            if [ -n "$external" ]; then echo "$external/${cmd#./}"; else echo "$cmd"; fi
        done
}

goals=()
whole=0
for f in $files; do
    # Once it is `make ./`, only --plan and --dependents need the rest.
    if [ $whole = 1 ] && { [ $mode = run ] || [ $mode = dry ]; }; then break; fi
    objs=$(dependents "$f")
    if [ $mode = dependents ]; then
        [ -n "$objs" ] && sed "s|\$| $f|" <<< "$objs" || echo "- $f"
        continue
    fi
    [ $mode != plan ] || [ -z "$objs" ] || sed "s|^|object |; s|\$| $f|" <<< "$objs"
    [ $whole = 0 ] || continue
    case $f in
        *.c|*.h|*.S|*.inc) ;;
        *) whole=1; continue ;;
    esac
    [ -n "$objs" ] || { whole=1; continue; }
    while IFS= read -r obj; do
        goals+=("$(dirname "$obj")/")
    done <<< "$objs"
done
[ $mode != dependents ] || exit 0
if [ $whole = 1 ]; then
    goals=(./)
else
    mapfile -t goals < <(printf '%s\n' "${goals[@]}" | sort -u)
    # An object in the top folder (none in Linux today) is under ./ itself.
    case " ${goals[*]} " in *" ./ "*) goals=(./) ;; esac
fi
# An external module is made whole: kbuild's M= build has no folder goals.
[ -z "$external" ] || goals=("M=$external")
cmd=(make -C "$tree" "$@" "${goals[@]}")
if [ $mode = plan ]; then
    printf 'goal %s\n' "${goals[@]}"
elif [ $mode = dry ]; then
    printf '%q ' "${cmd[@]}"; echo
else
    exec "${cmd[@]}"
fi
