# shellcheck shell=bash
# tests/kernel/compilers.sh - the compiler a real-kernel script builds
# with.  Source it after lib.sh and kernels.sh, take --cc out of the
# arguments, select the version, then the compiler:
#
#     . tests/kernel/lib.sh
#     . tests/kernel/kernels.sh
#     . tests/kernel/compilers.sh
#     klp_kernel_args "$@" || exit 2
#     klp_compiler_args "${KLP_ARGS[@]}" || exit 2
#     set -- "${KLP_ARGS[@]}"
#     klp_kernel_select || exit 2
#     klp_compiler_select || exit 2
#     ... unset LLVM etc., then:
#     klp_compiler_env
#
# KLP_KERNEL_CC (the environment, or --cc NAME / --cc=NAME; default gcc):
#   gcc        lib.sh and kernels.sh as they stand: this file changes
#              nothing, so gcc's cache keys and folders stay what they were.
#   clang      clang-19, the newest clang Debian 12 has
#   clang-NN   clang-NN with its own LLVM tools: `make LLVM=-NN`, so that
#              kbuild takes clang-NN, ld.lld-NN, llvm-ar-NN, llvm-nm-NN,
#              llvm-objcopy-NN ... and the integrated assembler; HOSTCC
#              becomes clang-NN too.  Packages clang-NN lld-NN llvm-NN.
#
# Why a third file: lib.sh is hashed into every 6.1 key and kernels.sh into
# every 6.12 and 7.3 key, so neither may change for a new compiler.  For a
# compiler other than gcc, klp_compiler_select replaces:
#   KLP_KERNEL_CACHE  <version's cache>/clang-NN: its own src/, check/,
#                     e2e*/, logs/, bin/, signing key (and pkg/ for a
#                     downloaded version), beside gcc's and never in them
#   KLP_TARBALL       for a downloaded version, under that pkg/
#   KLP_PKGS          plus clang-NN lld-NN llvm-NN
#   klp_source_id     the version's own lines, then clang-NN's and
#                     ld.lld-NN's versions, "LLVM=-NN" and a hash of this
#                     file: the keys name the compiler
# and klp_compiler_env exports LLVM=-NN, which every make of the run then
# reads (klp_configure's tinyconfig and olddefconfig included, so that
# Kconfig probes clang, not gcc).
#
# Variables set for the callers:
#   KLP_CC_NAME    the compiler command: gcc or clang-NN (the plain build's
#                  CC, and the last word of the klp tree's "klp-cc CC")
#   KLP_LLVM       empty for gcc, else -NN (make's LLVM=)
#   KLP_CC_PATCHES empty for gcc, else the folder under tests/kernel/patches
#                  whose NAME.expect, NAME.check and NAME.refusal replace
#                  the version's: clang for 6.1, V/clang for version V
#                  (what a patch changes depends on the compiler's inlining
#                  and cloning)

KLP_KERNEL_CC=${KLP_KERNEL_CC:-gcc}
KLP_COMPILERS_LIB=$(readlink -f "${BASH_SOURCE[0]}")

# klp_compiler_args ARGS... - take --cc NAME and --cc=NAME out of ARGS (up
# to a `--`) into KLP_KERNEL_CC; the rest go to KLP_ARGS.
klp_compiler_args() {
    KLP_ARGS=()
    while [ $# -gt 0 ]; do
        case $1 in
            --cc)
                [ $# -ge 2 ] || { klp_err "--cc needs a compiler (gcc, clang or clang-NN)"; return 2; }
                KLP_KERNEL_CC=$2; shift ;;
            --cc=*) KLP_KERNEL_CC=${1#--cc=} ;;
            --) KLP_ARGS+=("$@"); return 0 ;;
            *) KLP_ARGS+=("$1") ;;
        esac
        shift
    done
}

# klp_compiler_select - check KLP_KERNEL_CC and apply it (after
# klp_kernel_select).  Calling it again does nothing.
klp_compiler_select() {
    [ -n "${KLP_KERNEL_SELECTED:-}" ] || { klp_err "klp_compiler_select: call klp_kernel_select first"; return 2; }
    [ -z "${KLP_COMPILER_SELECTED:-}" ] || return 0
    local v
    case $KLP_KERNEL_CC in
        gcc) KLP_CC_NAME=gcc KLP_LLVM= KLP_CC_PATCHES= ;;
        clang) KLP_CC_NAME=clang-19 KLP_LLVM=-19 ;;
        clang-[0-9]*)
            v=${KLP_KERNEL_CC#clang-}
            case $v in *[!0-9]*) klp_err "unknown compiler '$KLP_KERNEL_CC' (known: gcc, clang, clang-NN)"; return 2 ;; esac
            KLP_CC_NAME=$KLP_KERNEL_CC KLP_LLVM=-$v ;;
        *) klp_err "unknown compiler '$KLP_KERNEL_CC' (known: gcc, clang, clang-NN)"; return 2 ;;
    esac
    KLP_COMPILER_SELECTED=$KLP_CC_NAME
    # gcc is lib.sh and kernels.sh as they stand: nothing to replace.
    [ "$KLP_CC_NAME" != gcc ] || return 0
    KLP_CC_PATCHES=clang
    [ "$KLP_KERNEL" = 6.1 ] || KLP_CC_PATCHES=$KLP_KERNEL/clang

    KLP_KERNEL_CACHE=$KLP_KERNEL_CACHE/$KLP_CC_NAME
    [ "$KLP_KERNEL" = 6.1 ] ||
        KLP_TARBALL=$KLP_KERNEL_CACHE/pkg/root/usr/src/$KLP_KERNEL_PKG.tar.xz
    KLP_PKGS+=("$KLP_CC_NAME" "lld$KLP_LLVM" "llvm$KLP_LLVM")

    # The version's own klp_source_id (lib.sh's, or kernels.sh's), then the
    # compiler.  Its lines name gcc and ld as well; they stay, harmless.
    eval "klp_source_id_of_version() $(declare -f klp_source_id | sed 1d)"
    klp_source_id() {
        klp_source_id_of_version
        echo "compiler $KLP_CC_NAME LLVM=$KLP_LLVM"
        { "$KLP_CC_NAME" --version 2>/dev/null || echo "no $KLP_CC_NAME"; } | sed -n 1p
        { "ld.lld$KLP_LLVM" --version 2>/dev/null || echo "no ld.lld$KLP_LLVM"; } | sed -n 1p
        sha256sum < "$KLP_COMPILERS_LIB"
    }
}

# klp_compiler_env - export what every make of the run must see: LLVM=-NN
# for clang (nothing for gcc).  Call it after clearing the environment of
# the caller's LLVM and friends.
klp_compiler_env() {
    [ -n "${KLP_COMPILER_SELECTED:-}" ] || { klp_err "klp_compiler_env: call klp_compiler_select first"; return 2; }
    [ -z "$KLP_LLVM" ] || export LLVM=$KLP_LLVM
}
