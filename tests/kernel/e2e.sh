#!/bin/bash
# tests/kernel/e2e.sh - end-to-end livepatch test: source patch -> klp-cc
# build -> klp-link -> livepatch module -> loaded into a running kernel under
# qemu -> the patched behaviour is checked in the guest.
#
# Usage: tests/kernel/e2e.sh [--kernel V] [--cc C] [--one-build] [--self-test] [--module-for NAME=KO]... [PATCH...]
#
#   --kernel V   the Linux version: 6.1 (the default, or $KLP_KERNEL), 6.12
#                or 7.3 (kernels.sh); other than 6.1, every tree lives under
#                $KLP_KERNEL_CACHE/V/.  The patches in tests/kernel/patches
#                are written against 6.1; where V's code differs, the port
#                in tests/kernel/patches/V/ (same name, or NAME-FAIL.patch
#                where V must refuse what 6.1 loads) replaces one; V's own
#                .check, .expect and .refusal there serve both ports and
#                the 6.1 patches, else those of patches/ do.
#   --cc C       the compiler: gcc (the default, or $KLP_KERNEL_CC), clang
#                (clang-19) or clang-NN, with make LLVM=-NN (compilers.sh);
#                other than gcc, every tree lives under a clang-NN/ folder
#                of the version's cache.
#   PATCH        a -p1 patch against that kernel.  With no PATCH (and no
#                --self-test) every tests/kernel/patches/*.patch runs.
#                NAME.patch       klp-link must build a module that loads
#                                 (enabled=1, transition done) and after which
#                                 NAME.check (beside the patch) passes; the
#                                 check must fail before the module is loaded.
#                NAME-FAIL.patch  klp-link must refuse it: non-zero exit, no .ko;
#                                 with NAME.refusal beside it, the refusal
#                                 must contain that file's text (one line).
#   --self-test  test the harness without `klp-link build`: (1) the upstream
#                samples/livepatch/livepatch-sample.ko from the klp-cc tree,
#                plus `modprobe binfmt_misc`, its mount and a registered
#                handler in the guest; (2) the full cmdline.patch flow with a
#                hand-written stand-in module instead of klp-link's.
#   --module-for NAME=KO   use KO instead of running `klp-link build` for
#                NAME.patch (everything else as usual).
#   --one-build  ONE kernel, built through klp-cc with KLP_CC_SECTIONS=0
#                (byte-identical to a plain gcc build): it boots as the
#                running kernel, and every patch is applied to that same
#                tree; `klp-link build` gets no --vmlinux (sympos from the
#                snapshot).  Its trees live apart from the two-build ones.
#
# Two builds of the same source and .config (lib.sh): the RUNNING kernel
# (CC=gcc; its bzImage boots, its vmlinux gives sympos, its .ko files are
# installed in the guest for modprobe) and the KLP tree (CC="klp-cc gcc";
# patched, rebuilt and reverted in place; only supplies objects).  Both are
# reused from kbuild-check.sh's cache when their cache keys prove they are the
# same build, else built under $KLP_KERNEL_CACHE/e2e/.
#
# env:   KLP_CC, KLP_LINK   binaries (default <repo>/target/release/{klp-cc,klp-link};
#                           built with cargo if missing)
#        KLP_KERNEL_CACHE   cache folder (default /var/tmp/klp-cc-kernel)
#        KLP_E2E_FRESH=1    do not reuse any cached build: build both kernels
#        KLP_ACCEL          qemu -accel value; unset: kvm if a probe boot under KVM
#                           works, else tcg,thread=single (see choose_accel)
#        JOBS, KLP_BOOT_TIMEOUT, KLP_SMP, KLP_MEM: see lib.sh
# Exit:  0 every patch behaved, 1 some did not, 2 setup problem or bad usage.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck disable=SC2034  # read by lib.sh's klp_log
KLP_LOG_TAG=e2e
# shellcheck source=lib.sh
. "$HERE/lib.sh"
# shellcheck source=kernels.sh
. "$HERE/kernels.sh"
# shellcheck source=e2e-tree.sh
. "$HERE/e2e-tree.sh"
# shellcheck source=compilers.sh
. "$HERE/compilers.sh"

die()  { klp_err "$*"; exit 2; }
usage() {  # [0]: --help prints the header; else a short usage line, exit 2
    if [ "${1:-2}" = 0 ]; then sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0; fi
    echo "usage: $0 [--kernel V] [--cc C] [--one-build] [--self-test] [--module-for NAME=KO]... [PATCH...]  (--help for more)" >&2; exit 2
}

# ---------------------------------------------------------------- arguments
SELF_TEST=0
ONE_BUILD=0
PATCHES=()
declare -A MODULE_FOR=()
klp_kernel_args "$@" || usage
klp_compiler_args "${KLP_ARGS[@]}" || usage
set -- "${KLP_ARGS[@]}"
while [ $# -gt 0 ]; do
    case $1 in
        --self-test) SELF_TEST=1 ;;
        --one-build) ONE_BUILD=1 ;;
        --module-for) [ $# -ge 2 ] || usage; MODULE_FOR[${2%%=*}]=${2#*=}; shift ;;
        --module-for=*) a=${1#--module-for=}; MODULE_FOR[${a%%=*}]=${a#*=} ;;
        -h|--help) usage 0 ;;
        --) shift; PATCHES+=("$@"); break ;;
        -*) klp_err "unknown option $1"; usage ;;
        *) PATCHES+=("$1") ;;
    esac
    shift
done
klp_kernel_select || usage
klp_compiler_select || usage
ALL_PATCHES=0
if [ ${#PATCHES[@]} -eq 0 ] && [ $SELF_TEST = 0 ]; then
    ALL_PATCHES=1
    for p in "$HERE"/patches/*.patch; do
        [ -e "$p" ] || continue
        v=$HERE/patches/$KLP_KERNEL/${p##*/}
        f=${v%.patch}-FAIL.patch
        if [ -e "$v" ]; then PATCHES+=("$v"); elif [ -e "$f" ]; then PATCHES+=("$f"); else PATCHES+=("$p"); fi
    done
    [ ${#PATCHES[@]} -gt 0 ] || die "no patches in $HERE/patches"
fi
for i in "${!PATCHES[@]}"; do
    p=${PATCHES[$i]}
    [ -f "$p" ] || die "no such patch: $p"
    case $p in *.patch) ;; *) die "a patch must be named NAME.patch or NAME-FAIL.patch: $p";; esac
    PATCHES[i]=$(readlink -f "$p")
done
for n in "${!MODULE_FOR[@]}"; do
    [ -f "${MODULE_FOR[$n]}" ] || die "--module-for $n: no such file: ${MODULE_FOR[$n]}"
done

# ---------------------------------------------------------------- setup
# The same fixed build identity as kbuild-check.sh: the builds are
# reproducible, and the cache keys below equal kbuild-check's for the same
# inputs (the keys include every KBUILD_* variable), so its trees can be reused.
export KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 2026'
export KBUILD_BUILD_USER=klp-cc KBUILD_BUILD_HOST=kbuild-check KBUILD_BUILD_VERSION=1
unset O KBUILD_OUTPUT KCFLAGS KCPPFLAGS KAFLAGS KBUILD_EXTRA_SYMBOLS LLVM \
      CROSS_COMPILE ARCH KLP_CC_SECTIONS KLP_CC_ACTIVE KLP_CC_COMPILER KLP_CC_LOG
klp_compiler_env || die "no compiler selected"   # LLVM=-NN for clang

CACHE=$KLP_KERNEL_CACHE
case $CACHE/ in "$REPO"/*) die "KLP_KERNEL_CACHE must be outside the repository";; esac
E2E=$CACHE/e2e
mkdir -p "$E2E" "$CACHE/logs" || die "cannot create $E2E"

if [ -z "${KLP_CC:-}" ] || [ -z "${KLP_LINK:-}" ]; then
    if [ ! -x "$REPO/target/release/klp-cc" ] || [ ! -x "$REPO/target/release/klp-link" ]; then
        klp_log "building klp-cc and klp-link (cargo build --release)"
        (cd "$REPO" && cargo build --release) || die "cargo build --release failed"
    fi
fi
KLP_CC=${KLP_CC:-$REPO/target/release/klp-cc}
KLP_LINK=${KLP_LINK:-$REPO/target/release/klp-link}
[ -x "$KLP_CC" ] || die "klp-cc not found or not executable: $KLP_CC"
[ -x "$KLP_LINK" ] || die "klp-link not found or not executable: $KLP_LINK"
KLP_LINK=$(readlink -f "$KLP_LINK")
# A private copy of klp-cc named by its hash, at the same place kbuild-check.sh
# puts it: the CC string recorded in the trees' .cmd files is the same, and a
# cargo build during the run cannot change the compiler under a tree.
KLP_CC_SHA=$(sha256sum < "$(readlink -f "$KLP_CC")" | cut -c1-16)
KLP_CC_PRIV=$CACHE/bin/$KLP_CC_SHA/klp-cc
if [ ! -x "$KLP_CC_PRIV" ]; then
    mkdir -p "$(dirname "$KLP_CC_PRIV")" && cp "$(readlink -f "$KLP_CC")" "$KLP_CC_PRIV.tmp.$$" &&
        mv "$KLP_CC_PRIV.tmp.$$" "$KLP_CC_PRIV" || die "cannot copy klp-cc to $KLP_CC_PRIV"
fi
case $KLP_CC_PRIV in *[[:space:]:]*) die "the cache path must not contain blanks or colons: $CACHE";; esac
KLPCC_CC="$KLP_CC_PRIV $KLP_CC_NAME"  # the klp tree's CC, exactly as in its .cmd files
# One-build mode: the production build itself goes through klp-cc without
# the section flags, and so must every rebuild of it (klp-link refuses
# objects built with other flags).
KLP_MAKE_ENV=()
[ "$ONE_BUILD" = 0 ] || KLP_MAKE_ENV=(KLP_CC_SECTIONS=0)

SRC=$CACHE/src                   # pristine unpacked source (shared with kbuild-check)
RUNNING=$E2E/running             # running kernel: bzImage, vmlinux, .config, modroot/
RUNNING_TREE=$E2E/running-tree   # our own plain build (deleted once its outputs are kept)
KLP=$E2E/klp                     # the klp-cc tree that patches are applied to
CHECK_SECTIONS=$CACHE/check/sections     # kbuild-check (a): a klp-cc build
CHECK_PLAIN=$CACHE/check/plain-objects   # kbuild-check (b): the plain build's outputs
if [ "$ONE_BUILD" = 1 ]; then
    E2E=$CACHE/e2e-one-build
    RUNNING=$E2E/running         # the outputs of the one tree, before any patch
    KLP=$E2E/klp                 # the one tree: running kernel and patch tree
    CHECK_SECTIONS=$CACHE/check/cmp          # kbuild-check (b): the KLP_CC_SECTIONS=0 build
    mkdir -p "$E2E" || die "cannot create $E2E"
fi
RUN_ID=$(date +%Y%m%d-%H%M%S)-$$
RUNDIR=$E2E/runs/$RUN_ID
mkdir -p "$RUNDIR/given"
ln -sfn "runs/$RUN_ID" "$E2E/latest"
# Copy given modules now: one may live in a tree this run replaces.
for n in "${!MODULE_FOR[@]}"; do
    cp "${MODULE_FOR[$n]}" "$RUNDIR/given/$n.ko" || die "cannot copy ${MODULE_FOR[$n]}"
    MODULE_FOR[$n]=$RUNDIR/given/$n.ko
done

# One e2e run at a time: the klp tree is patched in place.
exec 9>"$E2E/.lock"
flock -n 9 || die "another e2e.sh run holds $E2E/.lock"

klp_kernel_source "$SRC" >&2 || die "could not get the kernel source"

# Cache keys: lib.sh's klp_build_key, shared with kbuild-check.sh (source
# package, gcc/ld/make versions, lib.sh, KBUILD_* environment, make arguments,
# klp-cc's sha256; for a version other than 6.1 also rustc's version and
# kernels.sh), so that equal keys mean the same build.
build_key() { klp_build_key "$@"; }
KEY_PLAIN=$(build_key "CC=$KLP_CC_NAME")
KEY_KLP=$(build_key "klp-cc $KLP_CC_SHA" "CC=$KLPCC_CC" "${KLP_MAKE_ENV[@]}")
key_is() { [ "${KLP_E2E_FRESH:-0}" != 1 ] && [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# build_fresh DIR LOG [make args]: fresh copy of the source, configure, build.
build_fresh() {
    local dir=$1 log=$2; shift 2
    klp_fresh_tree "$SRC" "$dir" || { klp_err "could not copy $SRC to $dir"; return 1; }
    klp_configure "$dir" >/dev/null || { klp_err "configuration failed in $dir"; return 1; }
    : > "$log"
    klp_log "building $dir: make $* (log: $log; takes minutes)"
    if ! KLP_BUILD_LOG=$log klp_build "$dir" "$@"; then
        # 6.1's objtool/libsubcmd sub-make has a rare -j race ("mv: cannot
        # stat .../.pager.o.tmp"); make resumes where it stopped.
        klp_log "make failed in $dir; trying once more (log: $log)"
        KLP_BUILD_LOG=$log klp_build "$dir" "$@" || return 1
    fi
    klp_log "built $dir in ${KLP_BUILD_SECS} s"
}

# ---------------------------------------------------------------- running kernel
# $RUNNING holds what the tests need from the plain build: bzImage, vmlinux,
# .config, release, and modroot/lib/modules/<release>/ (every .ko + depmod).
keep_running_outputs() {  # FROM: a built plain tree or kbuild-check's stash
    local from=$1 tmp=$RUNNING.tmp.$$ rel m
    rm -rf "$tmp"; mkdir -p "$tmp"
    for f in arch/x86/boot/bzImage vmlinux .config; do
        [ -f "$from/$f" ] || { klp_err "$from has no $f"; rm -rf "$tmp"; return 1; }
        cp "$from/$f" "$tmp/$(basename "$f")"
    done
    rel=$(grep -a -o -m1 'Linux version [^ ]*' "$tmp/vmlinux" | cut -d' ' -f3) || true
    [ -n "$rel" ] || { klp_err "no 'Linux version' banner in $from/vmlinux"; rm -rf "$tmp"; return 1; }
    echo "$rel" > "$tmp/release"
    m=$tmp/modroot/lib/modules/$rel
    mkdir -p "$m"
    (cd "$from" && find . -path ./tools -prune -o -name '*.ko' -type f -printf '%P\n' | sort) > "$tmp/modules.list"
    [ -s "$tmp/modules.list" ] || { klp_err "no .ko files in $from"; rm -rf "$tmp"; return 1; }
    while read -r k; do
        mkdir -p "$m/kernel/$(dirname "$k")" && cp "$from/$k" "$m/kernel/$k" &&
            sign_like_kbuild "$from" "$m/kernel/$k" || { rm -rf "$tmp"; return 1; }
    done < "$tmp/modules.list"
    sed 's|^|kernel/|' "$tmp/modules.list" > "$m/modules.order"
    : > "$m/modules.builtin"; : > "$m/modules.builtin.modinfo"
    depmod -b "$tmp/modroot" "$rel" || { klp_err "depmod failed"; rm -rf "$tmp"; return 1; }
    rm -rf "$RUNNING" && mv "$tmp" "$RUNNING"
}

prepare_running() {
    if [ "$ONE_BUILD" = 1 ]; then
        # The one tree is the running kernel: its outputs, before any patch.
        if key_is "$RUNNING/.klp-e2e-key" "$KEY_KLP"; then
            klp_log "running kernel: reusing $RUNNING (key $KEY_KLP)"
            return 0
        fi
        keep_running_outputs "$KLP" || return 1
        echo "one-build:$KLP" > "$RUNNING/origin"
        echo "$KEY_KLP" > "$RUNNING/.klp-e2e-key"
        return 0
    fi
    if key_is "$RUNNING/.klp-e2e-key" "$KEY_PLAIN"; then
        klp_log "running kernel: reusing $RUNNING (key $KEY_PLAIN)"
        return 0
    fi
    if key_is "$CHECK_PLAIN/.klp-check-key" "$KEY_PLAIN"; then
        klp_log "running kernel: taking kbuild-check's plain build $CHECK_PLAIN (same key $KEY_PLAIN)"
        if keep_running_outputs "$CHECK_PLAIN" && key_is "$CHECK_PLAIN/.klp-check-key" "$KEY_PLAIN"; then
            echo "kbuild-check:$CHECK_PLAIN" > "$RUNNING/origin"
            echo "$KEY_PLAIN" > "$RUNNING/.klp-e2e-key"
            return 0
        fi
        klp_log "could not take $CHECK_PLAIN (it changed while copying?); building our own"
    fi
    build_fresh "$RUNNING_TREE" "$CACHE/logs/e2e-running.log" "CC=$KLP_CC_NAME" || return 1
    keep_running_outputs "$RUNNING_TREE" || return 1
    echo "built:$RUNNING_TREE" > "$RUNNING/origin"
    echo "$KEY_PLAIN" > "$RUNNING/.klp-e2e-key"
    rm -rf "$RUNNING_TREE"   # only its outputs are needed
}

# ---------------------------------------------------------------- klp tree
# Files of the tree that differ from the pristine source.  Only files newer
# than .config can: every edit after configuring has a newer mtime.
tree_edits() {  # TREE: print relative paths of edited source files
    local t=$1 f
    (cd "$t" && find . -path ./.git -prune -o -type f -newer .config -printf '%P\n') |
        while read -r f; do
            [ -f "$SRC/$f" ] && ! cmp -s "$SRC/$f" "$t/$f" && echo "$f"
        done
    return 0
}

# klp_rebuild LOG [PATCH]: the incremental rebuild klp-link needs, with the
# tree's CC: kbuild-snippets/klp-rebuild.sh, which runs `make DIR/...` for
# the folders of the objects that depend on a file PATCH touches (by
# kbuild's .cmd dependency lists) or, without PATCH or for a file no object
# lists, `make ./`.  Either compiles every stale object (kbuild decides,
# headers included) and refreshes the lists klp-link reads (built-in.a,
# lib.a, the .mod files); neither links vmlinux.o, runs modpost or links a
# module or vmlinux.  vmlinux stays the original build's.
klp_rebuild() {
    local t0 rc=0 args=(-j"${JOBS:-$(nproc)}" "CC=$KLPCC_CC")
    t0=$(now)
    if [ $# -ge 2 ]; then
        env "${KLP_MAKE_ENV[@]}" "$REPO/kbuild-snippets/klp-rebuild.sh" "$KLP" "$2" -- "${args[@]}" >> "$1" 2>&1 || rc=$?
    else
        env "${KLP_MAKE_ENV[@]}" make -C "$KLP" "${args[@]}" ./ >> "$1" 2>&1 || rc=$?
    fi
    KLP_BUILD_SECS=$(secs "$t0" "$(now)")
    if [ $rc -ne 0 ]; then
        klp_err "the rebuild failed in $KLP (exit $rc); last lines of $1:"
        tail -30 "$1" >&2
    fi
    return $rc
}

# stale_dependents PATCH: the objects of the klp tree that depend on a file
# PATCH touches (klp-rebuild.sh --dependents) and are not newer than it,
# one per line.  Empty when the rebuild missed nothing.
stale_dependents() {
    local obj f
    "$REPO/kbuild-snippets/klp-rebuild.sh" --dependents "$KLP" "$1" |
    while read -r obj f; do
        [ "$obj" != - ] && [ -e "$KLP/$obj" ] && ! [ "$KLP/$obj" -nt "$KLP/$f" ] && echo "$obj ($f)"
    done
    return 0
}

# A patch the previous run left applied (it was interrupted): revert, rebuild.
recover_klp_tree() {
    local p=$KLP/.klp-e2e-dirty
    klp_log "klp tree: a previous run left $(head -1 "$p.name" 2>/dev/null || echo 'a patch') applied; reverting"
    if (cd "$KLP" && patch -p1 -R -s -f -E --no-backup-if-mismatch --dry-run < "$p" >/dev/null &&
            patch -p1 -R -s -f -E --no-backup-if-mismatch < "$p"); then
        rm -f "$p" "$p.name"
        klp_rebuild "$CACHE/logs/e2e-recover.log" || return 1
    else
        # Maybe it was reverted already, before the rebuild.
        rm -f "$p" "$p.name"
        klp_rebuild "$CACHE/logs/e2e-recover.log" || return 1
    fi
    [ -z "$(tree_edits "$KLP")" ] || { klp_err "klp tree still differs from the source: $(tree_edits "$KLP" | head -5 | tr '\n' ' ')"; return 1; }
}

# Copy kbuild-check's klp-cc tree.  The only absolute paths in it are in the
# objtool build (tools/objtool/*.cmd): rewrite them, or objtool is rebuilt
# and with it (every object depends on tools/objtool/objtool) the whole tree.
seed_klp_from() {
    local from=$1 tmp=$KLP.tmp.$$ old new n t0
    t0=$(now)
    rm -rf "$tmp"
    cp -a --reflink=auto "$from" "$tmp" || { rm -rf "$tmp"; return 1; }
    key_is "$from/.klp-check-key" "$KEY_KLP" || { klp_err "$from changed while copying"; rm -rf "$tmp"; return 1; }
    rm -f "$tmp/.klp-check-key" "$tmp/.klp-e2e-key" "$tmp/.klp-e2e-dirty" "$tmp/.klp-e2e-dirty.name"
    rm -rf "$KLP" && mv "$tmp" "$KLP" || return 1
    old=$(readlink -f "$from"); new=$KLP
    grep -rlIF "$old" "$KLP" --include='*.cmd' --include='*.d' 2>/dev/null |
        while read -r f; do
            sed -i -E "s#${old//./\\.}([/ :\\\\]|\$)#${new}\\1#g" "$f"
        done
    klp_log "copied $from to $KLP in $(secs "$t0" "$(now)") s; bringing it up to date"
    local log=$CACHE/logs/e2e-seed.log; : > "$log"
    klp_rebuild "$log" || return 1
    n=$(grep -cE '^  (CC|AS) .*\.o$' "$log" || true)
    klp_log "klp tree: the first make in the copy compiled $n objects (${KLP_BUILD_SECS} s)"
    local edits; edits=$(tree_edits "$KLP")
    [ -z "$edits" ] || { klp_err "the copied tree has edited sources: $(echo "$edits" | head -5 | tr '\n' ' ')"; return 1; }
}

prepare_klp() {
    if [ -f "$KLP/.klp-e2e-dirty" ] && key_is "$KLP/.klp-e2e-key" "$KEY_KLP"; then
        recover_klp_tree || { klp_log "recovery failed; the klp tree will be rebuilt"; rm -f "$KLP/.klp-e2e-key"; }
    fi
    if key_is "$KLP/.klp-e2e-key" "$KEY_KLP" && [ ! -f "$KLP/.klp-e2e-dirty" ]; then
        klp_log "klp tree: reusing $KLP (key $KEY_KLP)"
        return 0
    fi
    rm -f "$KLP/.klp-e2e-key"
    if key_is "$CHECK_SECTIONS/.klp-check-key" "$KEY_KLP"; then
        klp_log "klp tree: copying kbuild-check's klp-cc tree $CHECK_SECTIONS (same key $KEY_KLP)"
        if seed_klp_from "$CHECK_SECTIONS"; then
            echo "kbuild-check:$CHECK_SECTIONS" > "$KLP/.klp-e2e-origin"
            echo "$KEY_KLP" > "$KLP/.klp-e2e-key"
            return 0
        fi
        klp_log "could not reuse $CHECK_SECTIONS; building our own"
    fi
    if [ "$ONE_BUILD" = 1 ]; then
        KLP_CC_SECTIONS=0 build_fresh "$KLP" "$CACHE/logs/e2e-klp.log" "CC=$KLPCC_CC" || return 1
    else
        build_fresh "$KLP" "$CACHE/logs/e2e-klp.log" "CC=$KLPCC_CC" || return 1
    fi
    echo "built" > "$KLP/.klp-e2e-origin"
    echo "$KEY_KLP" > "$KLP/.klp-e2e-key"
}

# ---------------------------------------------------------------- klp-link
# The one place that knows `klp-link build`'s command line.  The snapshot
# names the tree it was taken of; the patched objects are read from there.
# APPLIED is the patch as applied: its line map checks line-only functions.
klp_link_build() {  # SNAPSHOT RUNNING_VMLINUX RUNNING_MODULES MODNAME OUT_KO APPLIED
    if [ "$ONE_BUILD" = 1 ]; then
        # The tree is the running kernel: sympos from the snapshot's own
        # symbol tables.
        "$KLP_LINK" build "$1" --name "$4" -o "$5" --patch "$6"
    else
        "$KLP_LINK" build "$1" --vmlinux "$2" --modules "$3" --name "$4" -o "$5" --patch "$6"
    fi
}

# ---------------------------------------------------------------- guest
# modname_of NAME: the livepatch module's name (KBUILD_MODNAME; also the
# /sys/kernel/livepatch/ directory): livepatch_ + NAME, non-identifier chars -> _.
modname_of() { local n=livepatch_$1; echo "${n//[^A-Za-z0-9_]/_}"; }

# strip_signature KO OUT: OUT := KO without its appended module signature
# (struct module_signature, sig_len big-endian at byte 8, then the magic);
# fails when KO has none.
strip_signature() {
    python3 - "$1" "$2" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
magic = b"~Module signature appended~\n"
if not data.endswith(magic):
    sys.exit(1)
info = data[-len(magic) - 12:-len(magic)]
(sig_len,) = struct.unpack(">I", info[8:12])
open(sys.argv[2], "wb").write(data[: len(data) - len(magic) - 12 - sig_len])
PY
}

# guest_script OUT MODNAME CHECKFILE LABEL [PRELUDE]: the shell text the guest
# runs (klp_boot's CHECK).  The livepatch module is /ko/01-*.ko; the running
# kernel's modules follow as /ko/02-... and are installed under
# /lib/modules/$(uname -r) with the host's depmod output, so modprobe works.
guest_script() {
    local out=$1 mod=$2 check=$3 label=$4 prelude=${5:-}
    local rel m i=1 k eof
    rel=$(cat "$RUNNING/release"); m=$RUNNING/modroot/lib/modules/$rel
    eof=KLP_E2E_EOF_$RANDOM$RANDOM
    ! grep -qF "$eof" "$check" || return 1
    {
        echo "# generated by tests/kernel/e2e.sh: $label"
        echo "KLP_E2E_MODULE=$mod; export KLP_E2E_MODULE"
        cat <<'EOF'
e2e_fail() {
    echo "E2E-FAIL: $*"
    echo "--- dmesg (last 40 lines) ---"
    dmesg | tail -40
    exit 1
}
EOF
        echo "rel=\$(uname -r)"
        echo "[ \"\$rel\" = '$rel' ] || e2e_fail \"guest runs \$rel, the modules are for $rel\""
        echo "M=/lib/modules/\$rel"
        while read -r k; do
            i=$((i + 1))
            echo "mkdir -p \"\$M/kernel/$(dirname "$k")\" && mv /ko/$(printf %02d $i)-$(basename "$k") \"\$M/kernel/$k\""
        done < "$RUNNING/modules.list"
        for f in modules.dep modules.alias modules.symbols modules.softdep modules.order modules.builtin; do
            [ -f "$m/$f" ] || continue
            echo "cat > \"\$M/$f\" <<'$eof'"; cat "$m/$f"; echo "$eof"
        done
        echo "mkdir -p /e2e"
        echo "cat > /e2e/test.check <<'$eof'"; cat "$check"; echo "$eof"
        [ -z "$prelude" ] || printf '%s\n' "$prelude"
        cat <<EOF
echo "e2e: $label: running the check before loading the livepatch (it must fail)"
if (cd /tmp && KLP_E2E_PHASE=before sh /e2e/test.check); then
    e2e_fail "the check passes without the livepatch: it does not test the patch"
fi
for u in /ko/*-unsigned-*.ko; do
    [ -e "\$u" ] || continue
    if insmod "\$u"; then e2e_fail "the kernel loaded \$u, the livepatch without its signature"; fi
    echo "e2e: the livepatch without its signature was refused, as it must be"
done
echo "e2e: insmod \$(ls /ko/01-*.ko)"
insmod /ko/01-*.ko || e2e_fail "insmod of the livepatch module failed"
L=/sys/kernel/livepatch/$mod
[ -d "\$L" ] || e2e_fail "no \$L after insmod (livepatch dirs: \$(ls /sys/kernel/livepatch 2>/dev/null))"
klp_wait_transition 60 || e2e_fail "the livepatch transition did not finish"
[ "\$(cat \$L/enabled)" = 1 ] || e2e_fail "\$L/enabled reads \$(cat \$L/enabled), wanted 1"
[ "\$(cat \$L/transition)" = 0 ] || e2e_fail "\$L/transition reads \$(cat \$L/transition), wanted 0"
echo "e2e: \$L: enabled=1 transition=0"
echo "e2e: $label: running the check with the livepatch loaded"
(cd /tmp && KLP_E2E_PHASE=after sh /e2e/test.check) || e2e_fail "the check failed with the livepatch loaded"
echo "e2e: $label: the check passes with the livepatch loaded"
EOF
    } > "$out"
}

# Guest text for the self-test: modules from the running build really load
# with modprobe, binfmt_misc mounts and runs a registered handler.
SELFTEST_BINFMT=$(cat <<'EOF'
echo "e2e: self-test: modprobe binfmt_misc"
modprobe binfmt_misc || e2e_fail "modprobe binfmt_misc failed"
grep -q '^binfmt_misc ' /proc/modules || e2e_fail "binfmt_misc is not in /proc/modules after modprobe"
mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || e2e_fail "cannot mount binfmt_misc on /proc/sys/fs/binfmt_misc"
[ -e /proc/sys/fs/binfmt_misc/register ] || e2e_fail "no /proc/sys/fs/binfmt_misc/register"
[ "$(cat /proc/sys/fs/binfmt_misc/status)" = enabled ] || e2e_fail "binfmt_misc status is not 'enabled'"
echo ':klpe2e:M::#KLPE2E::/bin/sh:' > /proc/sys/fs/binfmt_misc/register || e2e_fail "cannot register a binfmt_misc handler"
printf '#KLPE2E\necho binfmt-handler-ran\n' > /tmp/e2e.bin; chmod +x /tmp/e2e.bin
[ "$(/tmp/e2e.bin)" = binfmt-handler-ran ] || e2e_fail "the registered binfmt_misc handler did not run"
echo -1 > /proc/sys/fs/binfmt_misc/klpe2e
echo "e2e: self-test: binfmt_misc: modprobe, mount, register and run a handler all work"
EOF
)

# ---------------------------------------------------------------- one test
RESULTS=()   # "label|expect|result|apply|link|restore|boot|note"
FAILED=0
TREE_BROKEN=

record() {  # LABEL EXPECT RESULT APPLY LINK RESTORE BOOT NOTE
    RESULTS+=("$1|$2|$3|$4|$5|$6|$7|${8//|//}")
    [ "$3" = PASS ] || FAILED=1
    if [ "$3" = PASS ]; then klp_log "$1: PASS${8:+ ($8)}"; else klp_err "$1: $3${8:+: $8}"; fi
}

# link_reason LOG: klp-link's own reason in one line: the first entry under
# its "errors" heading, else the first "error" line, else the last line.
link_reason() {
    local r
    r=$(awk 'f && NF { sub(/^[ \t]+/, ""); print; exit } /^errors/ { f = 1 }' "$1" 2>/dev/null)
    [ -n "$r" ] || r=$(grep -m1 -iE '^(error|klp-link: error)' "$1" 2>/dev/null) || true
    [ -n "$r" ] || r=$(tail -1 "$1" 2>/dev/null) || true
    echo "$r"
}

# link_failure EXIT LOG: one line on why klp-link build gave no module.
link_failure() {
    local line
    line=$(link_reason "$2")
    case $1 in
        0) echo "klp-link build exited 0 but wrote no .ko: ${line:0:90}" ;;
        2) echo "klp-link build rejected e2e.sh's command line (exit 2, usage; see klp_link_build): ${line:0:90}" ;;
        *) if [ "$1" -ge 126 ]; then echo "klp-link build crashed or was killed (exit $1): ${line:0:90}"
           else echo "klp-link build exit $1: ${line:0:90}"; fi ;;
    esac
}

# no_module LABEL COMMAND: records that `klp-link COMMAND` gave LABEL no
# module, with the end of its log on stderr (run_test's locals: lrc, out,
# expect, note and the phase times).
no_module() {
    echo "--- $1: klp-link $2 (exit $lrc), last lines of $out/klp-link-build.log:" >&2
    tail -20 "$out/klp-link-build.log" | sed 's/^/    /' >&2
    record "$1" "$expect" FAIL "$t_apply" "$t_link" "$t_restore" - \
        "${note}no module: $(link_failure $lrc "$out/klp-link-build.log")"
}

# sidecar PATCH EXT: the file NAME.EXT for PATCH (NAME.patch): for a patch
# of patches/ or of its version folder patches/V/, the compiler's own
# NAME.EXT first (patches/clang/, patches/V/clang/: compilers.sh's
# KLP_CC_PATCHES), then V's own (a version can differ in what it reports
# without a port of the patch), then the one in patches/; for any other
# patch, the one beside it.
sidecar() {
    local dir base
    dir=$(dirname "$1") base=$(basename "${1%.patch}")
    case $dir in
        "$HERE/patches"|"$HERE/patches/$KLP_KERNEL")
            if [ -n "$KLP_CC_PATCHES" ] && [ -e "$HERE/patches/$KLP_CC_PATCHES/$base.$2" ]; then
                echo "$HERE/patches/$KLP_CC_PATCHES/$base.$2"
            elif [ -e "$HERE/patches/$KLP_KERNEL/$base.$2" ]; then
                echo "$HERE/patches/$KLP_KERNEL/$base.$2"
            else
                echo "$HERE/patches/$base.$2"
            fi ;;
        *) echo "$dir/$base.$2" ;;
    esac
}

# check_expected PATCH OUT: when PATCH has a NAME.expect beside it
# (NAME.patch -> NAME.expect), compare it with what OUT/klp-link-diff.json
# (klp-link's comparison) reports, one "TARGET changed|new|removed
# FUNCTION" a line (order and # comments do not matter).  Prints why they
# differ, or nothing.
check_expected() {
    local want out=$2
    want=$(sidecar "$1" expect)
    [ -f "$want" ] || return 0
    python3 - "$out/klp-link-diff.json" > "$out/diff.lines" <<'PY' || { echo "no JSON from klp-link diff"; return 0; }
import json, sys
r = json.load(open(sys.argv[1]))
for t in r["targets"]:
    for kind in ("changed", "new", "removed"):
        for f in t[kind]:
            print(t["name"], kind, f["name"])
PY
    sed -e 's/#.*//' -e 's/[[:space:]]\+/ /g' -e 's/^ //;s/ $//' -e '/^$/d' "$want" | sort > "$out/expect.lines"
    sort -o "$out/diff.lines" "$out/diff.lines"
    cmp -s "$out/diff.lines" "$out/expect.lines" ||
        echo "klp-link diff reports [$(paste -sd, "$out/diff.lines")], $(basename "$want") says [$(paste -sd, "$out/expect.lines")]"
}

# refusal_verdict: the verdict on a -FAIL patch, from run_test's lrc, ko
# and out/klp-link-build.log (and NAME.refusal, the words it must give).
refusal_verdict() {
    local why; why=$(sidecar "$(dirname "$patch")/$name.patch" refusal)
    if [ -f "$why" ] && ! grep -qF -- "$(head -1 "$why")" "$out/klp-link-build.log"; then
        record "$label" "$expect" FAIL "$t_apply" "$t_link" "$t_restore" - \
            "${note}refused, but not with '$(head -1 "$why")': $(link_reason "$out/klp-link-build.log" | cut -c1-100)"
    elif [ $lrc -ne 0 ] && [ $lrc -ne 2 ] && [ $lrc -lt 126 ] && [ ! -e "$ko" ]; then
        record "$label" "$expect" PASS "$t_apply" "$t_link" "$t_restore" - \
            "${note}refused (exit $lrc): $(link_reason "$out/klp-link-build.log" | cut -c1-100)"
    elif [ $lrc -eq 0 ]; then
        record "$label" "$expect" FAIL "$t_apply" "$t_link" "$t_restore" - "${note}klp-link built a module; it must refuse this patch"
    else
        record "$label" "$expect" FAIL "$t_apply" "$t_link" "$t_restore" - \
            "${note}$(link_failure $lrc "$out/klp-link-build.log")$([ -e "$ko" ] && echo '; it left a .ko')"
    fi
}

# link_by_patch PATCH OUT MODNAME: the module, in one `klp-link patch` as a
# user runs it on the klp tree (snapshot reused or taken in KLP/.klp-link,
# fix-lines, rebuild, build, restore).  Sets run_test's ko, lrc, t_apply
# (apply + rebuild), t_link (check + snapshot + build), t_restore and
# unexpected; writes OUT/klp-link-build.log (the report and klp-link's
# messages) and OUT/klp-link-diff.json (the comparison).  Then checks what
# the issue promises: the sources are as before, and a make of what the
# patch touched recompiles nothing.  Returns 1 (after recording) when the
# tree could not be restored.
link_by_patch() {
    local patch=$1 out=$2 mod=$3 args rc=0 rebuilt
    ko=$out/$mod.ko; lrc=0
    args=(patch "$KLP" "$patch" --name "$mod" -o "$ko" --json --keep-tmp)
    [ "$ONE_BUILD" = 1 ] || args+=(--vmlinux "$RUNNING/vmlinux"
        --modules "$RUNNING/modroot/lib/modules/$(cat "$RUNNING/release")")
    # TMPDIR: the work folder it keeps lands among the test's logs.
    (cd "$out" && TMPDIR=$out "$KLP_LINK" "${args[@]}") > "$out/klp-link-patch.json" 2> "$out/klp-link-patch.log" || lrc=$?
    python3 - "$out" <<'PY' || { unexpected+="no JSON from klp-link patch (see $out/klp-link-patch.log); "; }
import json, sys
out = sys.argv[1]
doc = json.load(open(f"{out}/klp-link-patch.json"))
with open(f"{out}/klp-link-build.log", "w") as f:
    f.write(open(f"{out}/klp-link-patch.log").read())
    f.write(doc.get("report", ""))
    for e in doc.get("errors", []):
        f.write(f"klp-link: {e}\n")
if doc.get("comparison"):
    json.dump(doc["comparison"], open(f"{out}/klp-link-diff.json", "w"))
t = {p["phase"]: p["seconds"] for p in doc.get("phases", [])}
g = lambda *names: "%.1f" % sum(t.get(n, 0) for n in names)
open(f"{out}/phases", "w").write(f"{g('apply', 'rebuild')} {g('check', 'snapshot', 'build')} {g('restore')}\n")
PY
    read -r t_apply t_link t_restore < "$out/phases" 2>/dev/null || true
    [ ! -f "$out/klp-link-diff.json" ] || unexpected+=$(check_expected "$patch" "$out")
    if [ -n "$(tree_edits "$KLP")" ]; then
        TREE_BROKEN="klp-link patch left the klp tree edited after $label: $(tree_edits "$KLP" | head -3 | tr '\n' ' ')"
        rm -f "$KLP/.klp-e2e-key"
        record "$label" "$expect" FAIL "$t_apply" "$t_link" "$t_restore" - "$TREE_BROKEN"; return 1
    fi
    klp_rebuild "$out/build-after.log" "$patch" || rc=$?
    rebuilt=$(grep -E '^  (CC|AS) .*\.o$' "$out/build-after.log" | awk '{print $2}' | head -5 | tr '\n' ' ' || true)
    [ $rc -eq 0 ] && [ -z "$rebuilt" ] ||
        unexpected+="after klp-link patch, make of what the patch touched recompiled: ${rebuilt:-(make failed, exit $rc)}; "
    rc=0; "$KLP_LINK" diff "$KLP/.klp-link/snapshot" > "$out/klp-link-diff-after.txt" 2>&1 || rc=$?
    [ $rc -eq 3 ] || unexpected+="after klp-link patch, klp-link diff exits $rc, not 3 (no change); "
    [ -z "$unexpected" ] || { record "$label" "$expect" FAIL "$t_apply" "$t_link" "$t_restore" - "${note}$unexpected"; return 1; }
}

# run_test LABEL PATCH|- MODULE_SOURCE CHECK [PRELUDE]
#   MODULE_SOURCE: klp-link, file:KO (use KO), or standin-cmdline (build the
#   self-test's stand-in module).  PATCH - : no patch, just boot KO.
run_test() {
    local label=$1 patch=$2 source=$3 check=$4 prelude=${5:-}
    local name expect=load out mod ko t0 rc note= unexpected= touched
    local t_apply=- t_link=- t_restore=- t_boot=-
    out=$RUNDIR/$label; mkdir -p "$out"
    name=$label
    if [ "$patch" != - ]; then
        name=$(basename "$patch" .patch)
        case $name in *-FAIL) expect=refuse; name=${name%-FAIL};; esac
        [ -n "$check" ] || check=$(sidecar "$(dirname "$patch")/$name.patch" check)
    fi
    mod=$(modname_of "$name")
    klp_log "=== $label (${patch##*/}, expect: $expect; logs in $out)"
    if [ "$expect" = load ] && [ ! -f "$check" ]; then
        record "$label" "$expect" FAIL - - - - "no check file $check"; return
    fi
    if [ -n "$TREE_BROKEN" ] && [ "$patch" != - ]; then
        record "$label" "$expect" FAIL - - - - "skipped: $TREE_BROKEN"; return
    fi

    if [ "$patch" != - ] && [ "$source" = klp-link ]; then
        link_by_patch "$patch" "$out" "$mod" || return 0
        [ "$expect" != refuse ] || { refusal_verdict; return; }
        if [ $lrc -ne 0 ] || [ ! -f "$ko" ]; then
            no_module "$label" patch; return
        fi
    elif [ "$patch" != - ]; then
        # Applied as a user would: through `klp-link fix-lines`, so that the
        # code below each change keeps its line numbers (-d: where each hunk
        # really applies, as 6.1's patches do at an offset on newer kernels).
        local applied=$out/applied.patch
        if ! "$KLP_LINK" fix-lines -d "$KLP" "$patch" -o "$applied" --force > "$out/patch.log" 2>&1; then
            record "$label" "$expect" FAIL - - - - "klp-link fix-lines failed: $(tail -1 "$out/patch.log")"
            return
        fi
        if ! (cd "$KLP" && patch -p1 -s -f --dry-run < "$applied" >> "$out/patch.log" 2>&1); then
            record "$label" "$expect" FAIL - - - - "does not apply to Linux $(cat "$RUNNING/release"): $(head -1 "$out/patch.log")"
            return
        fi
        # Snapshot of the original klp tree, before the patch touches it.
        t0=$(now); rc=0
        "$KLP_LINK" snapshot "$KLP" -o "$out/snapshot" --force > "$out/klp-link-snapshot.log" 2>&1 || rc=$?
        t_link=$(secs "$t0" "$(now)")
        if [ $rc -ne 0 ]; then
            record "$label" "$expect" FAIL - "$t_link" - - "klp-link snapshot failed (exit $rc): $(tail -1 "$out/klp-link-snapshot.log")"
            return
        fi
        ! grep -q 'recomputed' "$out/klp-link-snapshot.log" ||
            note="snapshot recomputed stale manifests; "

        # Apply and rebuild.  The dirty marker lets the next run revert the
        # patch if this one is interrupted.
        cp "$applied" "$KLP/.klp-e2e-dirty"; echo "$patch" > "$KLP/.klp-e2e-dirty.name"
        t0=$(now); rc=0
        (cd "$KLP" && patch -p1 -s -f --no-backup-if-mismatch < "$applied") >> "$out/patch.log" 2>&1 || rc=$?
        [ $rc -ne 0 ] || klp_rebuild "$out/build-patched.log" "$applied" || rc=$?
        t_apply=$(secs "$t0" "$(now)")
        local built=$rc
        # The rebuild must have compiled every object that depends on a
        # patched file: one it missed would hide a changed function.
        local stale
        stale=$(stale_dependents "$applied" | head -5 | tr '\n' ' ')

        # The livepatch module.
        ko=$out/$mod.ko
        local lrc=0
        if [ $built -ne 0 ]; then
            note+="the patched tree does not build (see $out/build-patched.log); "
        else
            t0=$(now)
            "$KLP_LINK" diff "$out/snapshot" --patch "$applied" > "$out/klp-link-diff.txt" 2>&1 || true
            "$KLP_LINK" diff "$out/snapshot" --patch "$applied" --json > "$out/klp-link-diff.json" 2>/dev/null || true
            unexpected=$(check_expected "$patch" "$out")
            [ -z "$stale" ] ||
                unexpected+="the rebuild left objects older than a patched file they depend on: $stale; "
            case $source in
                klp-link)
                    touch "$out/.before-klp-link"
                    (cd "$out" && klp_link_build "$out/snapshot" "$RUNNING/vmlinux" \
                        "$RUNNING/modroot/lib/modules/$(cat "$RUNNING/release")" "$mod" "$ko" "$applied") \
                        > "$out/klp-link-build.log" 2>&1 || lrc=$?
                    # klp-link must leave the kernel tree exactly as it was.
                    touched=$(find "$KLP" -newer "$out/.before-klp-link" -print -quit)
                    [ -z "$touched" ] || unexpected+="klp-link build changed the kernel tree ($touched); " ;;
                file:*)
                    cp "${source#file:}" "$ko" && echo "module given: ${source#file:}" > "$out/klp-link-build.log" || lrc=$? ;;
                standin-cmdline)
                    build_standin_cmdline "$out/standin" "$mod" > "$out/klp-link-build.log" 2>&1 &&
                        cp "$out/standin/$mod.ko" "$ko" || lrc=$? ;;
            esac
            t_link=$(awk -v a="$t_link" -v b="$(secs "$t0" "$(now)")" 'BEGIN { printf "%.1f", a + b }')
        fi

        # Revert and rebuild: the tree is the original build again.
        t0=$(now); rc=0
        (cd "$KLP" && patch -p1 -R -s -f -E --no-backup-if-mismatch < "$applied") >> "$out/patch.log" 2>&1 || rc=$?
        [ $rc -ne 0 ] || klp_rebuild "$out/build-reverted.log" "$applied" || rc=$?
        t_restore=$(secs "$t0" "$(now)")
        if [ $rc -ne 0 ] || [ -n "$(tree_edits "$KLP")" ]; then
            TREE_BROKEN="the klp tree could not be restored after $label (see $out/patch.log, $out/build-reverted.log)"
            rm -f "$KLP/.klp-e2e-key"   # the next run rebuilds it
            record "$label" "$expect" FAIL "$t_apply" "$t_link" "$t_restore" - "${note}$TREE_BROKEN"
            return
        fi
        rm -f "$KLP/.klp-e2e-dirty" "$KLP/.klp-e2e-dirty.name"
        rc=0; "$KLP_LINK" diff "$out/snapshot" > "$out/klp-link-diff-reverted.txt" 2>&1 || rc=$?
        if [ $rc -ne 3 ]; then
            record "$label" "$expect" FAIL "$t_apply" "$t_link" "$t_restore" - \
                "${note}after the revert klp-link diff exits $rc, not 3 (no change): see $out/klp-link-diff-reverted.txt"
            return
        fi
        if [ $built -ne 0 ]; then
            record "$label" "$expect" FAIL "$t_apply" "$t_link" "$t_restore" - "${note%; }"; return
        fi
        if [ -n "$unexpected" ]; then
            record "$label" "$expect" FAIL "$t_apply" "$t_link" "$t_restore" - "${note}$unexpected"
            return
        fi
        if [ "$expect" = refuse ]; then
            refusal_verdict; return
        fi
        if [ $lrc -ne 0 ] || [ ! -f "$ko" ]; then
            no_module "$label" build; return
        fi
    else
        ko=$out/$(basename "${source#file:}")
        cp "${source#file:}" "$ko"
    fi

    # Host-side checks of the module: its name and vermagic.
    local got_name vm_ko vm_run
    got_name=$(modinfo -F name "$ko" 2>/dev/null || true)
    if [ "$patch" = - ] || [ "$source" != klp-link ]; then
        mod=${got_name:-$mod}
    elif [ "$got_name" != "$mod" ]; then
        record "$label" "$expect" FAIL "$t_apply" "$t_link" "$t_restore" - "${note}the module is named '$got_name', wanted '$mod'"
        return
    fi
    vm_ko=$(modinfo -F vermagic "$ko" 2>/dev/null || true)
    vm_run=$(modinfo -F vermagic "$RUNNING/modroot/lib/modules/$(cat "$RUNNING/release")/kernel/$(head -1 "$RUNNING/modules.list")")
    if [ "$vm_ko" != "$vm_run" ]; then
        record "$label" "$expect" FAIL "$t_apply" "$t_link" "$t_restore" - "${note}vermagic '$vm_ko' differs from the running kernel's '$vm_run'"
        return
    fi

    # Boot the running kernel, load the module, check.
    local modules=$ko
    while read -r k; do
        modules+=":$RUNNING/modroot/lib/modules/$(cat "$RUNNING/release")/kernel/$k"
    done < "$RUNNING/modules.list"
    # A kernel that loads only signed modules must refuse the livepatch
    # without its signature (guest_script tries it first).
    if grep -qx 'CONFIG_MODULE_SIG_FORCE=y' "$RUNNING/.config"; then
        strip_signature "$ko" "$out/unsigned-$mod.ko" ||
            { record "$label" "$expect" FAIL "$t_apply" "$t_link" "$t_restore" - "${note}the module is not signed"; return; }
        modules+=":$out/unsigned-$mod.ko"
    fi
    guest_script "$out/guest.sh" "$mod" "$check" "$label" "$prelude" ||
        { record "$label" "$expect" FAIL "$t_apply" "$t_link" "$t_restore" - "cannot embed $check"; return; }
    t0=$(now); rc=0
    KLP_BOOT_LOG=$out/serial.log klp_boot "$RUNNING/bzImage" "$modules" "$(cat "$out/guest.sh")" || rc=$?
    t_boot=$(secs "$t0" "$(now)")
    if [ $rc -eq 0 ]; then
        record "$label" "$expect" PASS "$t_apply" "$t_link" "$t_restore" "$t_boot" "${note%; }"
    else
        echo "--- $label: guest output ($out/serial.log):" >&2
        sed 's/^/    /' "$KLP_BOOT_OUTPUT" >&2 || true
        local why
        why=$(grep -a -m1 '^E2E-FAIL: ' "$KLP_BOOT_OUTPUT" | sed 's/^E2E-FAIL: //' || true)
        [ -n "$why" ] || why="boot failed (qemu timeout, panic or no result line; see $out/serial.log)"
        record "$label" "$expect" FAIL "$t_apply" "$t_link" "$t_restore" "$t_boot" "${note}$why"
    fi
}

# ---------------------------------------------------------------- interrupts
# interrupt_test LABEL PHASE SIGNAL PATCH: `klp-link patch` stopped by
# SIGNAL once it prints that PHASE began (INT to its process group, as a
# terminal's Ctrl-C; TERM and KILL to klp-link alone) must leave the
# tree as it was: the sources equal the pristine ones, a make of what the
# patch touched recompiles nothing and `klp-link diff` finds no change.
# After KILL, which no program can catch, the next run must restore the
# tree from the journal first.
interrupt_test() {
    local label=$1 phase=$2 sig=$3 patch=$4 out pid rc=0 rebuilt t0 waited=0 note=
    out=$RUNDIR/$label; mkdir -p "$out"
    local running=()
    [ "$ONE_BUILD" = 1 ] || running=(--vmlinux "$RUNNING/vmlinux")
    local args=(patch "$KLP" "$patch" --name livepatch_interrupted -o "$out/x.ko" "${running[@]}")
    t0=$(now)
    setsid "$KLP_LINK" "${args[@]}" > /dev/null 2> "$out/klp-link.log" &
    pid=$!
    until grep -q "^klp-link: $phase\.\.\.$" "$out/klp-link.log" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.02; waited=$((waited + 1))
        [ $waited -lt 6000 ] || break
    done
    # Into the phase, where it has time to be.
    case $phase in rebuild|build) sleep 0.3 ;; esac
    case $sig in
        INT) kill -INT -- "-$pid" 2>/dev/null || note="it ended before the signal; " ;;
        *) kill -s "$sig" "$pid" 2>/dev/null || note="it ended before the signal; " ;;
    esac
    wait "$pid" || rc=$?
    # kill also reaches a process that has exited and is not yet waited
    # for: a run whose last phase (the restore takes milliseconds) ended
    # first says so with its report's last line, and exits 0.
    if [ -z "$note" ] && [ $rc -eq 0 ] && grep -q '^klp-link: phases: ' "$out/klp-link.log" &&
            ! grep -q 'interrupted by signal' "$out/klp-link.log"; then
        note="it ended before the signal; "
    fi
    local want; want=$(( 128 + $(kill -l "$sig") ))
    [ -n "$note" ] || [ $rc -eq "$want" ] ||
        { record "$label" restore FAIL - - - - "klp-link exited $rc, not $want (see $out/klp-link.log)"; return; }
    if [ "$sig" = KILL ]; then
        # The journal is left; the next run puts the tree back first.
        [ -d "$KLP/.klp-link/journal" ] || note+="no journal was left; "
        rc=0; "$KLP_LINK" patch "$KLP" "$patch" --name livepatch_recovery -o "$out/y.ko" \
            "${running[@]}" > /dev/null 2> "$out/recovery.log" || rc=$?
        grep -q 'an earlier run did not finish' "$out/recovery.log" ||
            { record "$label" restore FAIL - - - - "the next run did not restore from the journal (exit $rc; $out/recovery.log)"; return; }
    fi
    [ ! -e "$KLP/.klp-link/journal" ] ||
        { record "$label" restore FAIL - - - - "a journal is left in $KLP/.klp-link"; return; }
    if [ -n "$(tree_edits "$KLP")" ]; then
        TREE_BROKEN="klp-link patch stopped by SIG$sig in $phase left the tree edited: $(tree_edits "$KLP" | head -3 | tr '\n' ' ')"
        rm -f "$KLP/.klp-e2e-key"
        record "$label" restore FAIL - - - - "$TREE_BROKEN"; return
    fi
    rc=0; klp_rebuild "$out/build-after.log" "$patch" || rc=$?
    rebuilt=$(grep -E '^  (CC|AS) .*\.o$' "$out/build-after.log" | awk '{print $2}' | head -5 | tr '\n' ' ' || true)
    [ $rc -eq 0 ] || { record "$label" restore FAIL - - - - "make after it failed (exit $rc)"; return; }
    # A signal that comes while make compiles may leave an object it was
    # writing with no saved copy: klp-link makes such outputs stale, and
    # this make then compiles them from the original sources.
    [ -z "$rebuilt" ] || note+="make compiled again what the run left stale: $rebuilt; "
    rc=0; "$KLP_LINK" diff "$KLP/.klp-link/snapshot" > "$out/diff-after.txt" 2>&1 || rc=$?
    [ $rc -eq 3 ] || { record "$label" restore FAIL - - - - "klp-link diff exits $rc after it, not 3 (no change)"; return; }
    record "$label" restore PASS - "$(secs "$t0" "$(now)")" - - "${note%; }"
}

interrupt_tests() {
    local p
    p=$(printf '%s\n' "${PATCHES[@]}" | grep -m1 '/loadavg-header-macro\.patch$') || { record interrupts restore FAIL - - - - "no loadavg-header-macro.patch to interrupt"; return; }
    [ -z "$TREE_BROKEN" ] || { record interrupts restore FAIL - - - - "skipped: $TREE_BROKEN"; return; }
    for ps in check:INT snapshot:TERM apply:INT rebuild:INT rebuild:TERM build:TERM restore:INT rebuild:KILL; do
        interrupt_test "interrupt-${ps%:*}-${ps#*:}" "${ps%:*}" "${ps#*:}" "$p"
    done
}

# ---------------------------------------------------------------- self-test module
# A hand-written livepatch with cmdline.patch's effect (what klp-link should
# produce from it): /proc/cmdline gets " klp-cc: this has been live patched".
# saved_command_line is not exported, so the module reads /proc/cmdline once,
# before enabling the patch, and prints that copy.  Built with the klp tree's
# own kbuild (make M=), like klp-link's modules.
build_standin_cmdline() {  # DIR MODNAME
    local dir=$1 mod=$2
    rm -rf "$dir"; mkdir -p "$dir"
    cat > "$dir/$mod.c" <<'EOF'
// SPDX-License-Identifier: GPL-2.0
/* klp-cc e2e self-test: stand-in for klp-link's module for cmdline.patch. */
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/seq_file.h>

static char orig_cmdline[4096];

static int e2e_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, orig_cmdline);
	seq_puts(m, " klp-cc: this has been live patched\n");
	return 0;
}

static struct klp_func funcs[] = {
	{ .old_name = "cmdline_proc_show", .new_func = e2e_cmdline_proc_show },
	{ }
};

static struct klp_object objs[] = {
	{ .name = NULL /* vmlinux */, .funcs = funcs },
	{ }
};

static struct klp_patch patch = { .mod = THIS_MODULE, .objs = objs };

static int __init e2e_init(void)
{
	struct file *f = filp_open("/proc/cmdline", O_RDONLY, 0);
	loff_t pos = 0;
	ssize_t n;

	if (IS_ERR(f))
		return PTR_ERR(f);
	n = kernel_read(f, orig_cmdline, sizeof(orig_cmdline) - 1, &pos);
	filp_close(f, NULL);
	if (n < 0)
		return n;
	orig_cmdline[n] = '\0';
	if (n > 0 && orig_cmdline[n - 1] == '\n')
		orig_cmdline[n - 1] = '\0';
	return klp_enable_patch(&patch);
}

static void __exit e2e_exit(void)
{
}

module_init(e2e_init);
module_exit(e2e_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
EOF
    echo "obj-m := $mod.o" > "$dir/Kbuild"
    make -C "$KLP" M="$dir" CC="$KLPCC_CC" -j"${JOBS:-$(nproc)}" modules
}

# choose_accel: KVM when it really works, else software emulation.  A set
# KLP_ACCEL is kept.  Otherwise, with a usable /dev/kvm, one short boot of
# the running kernel under KVM decides: on nested VMs /dev/kvm may exist and
# still fail (qemu aborts setting an MSR) or hang the guest.
# TCG runs single-threaded: under multi-threaded TCG a guest CPU can execute
# a stale int3 after the kernel's text_poke_bp() has removed it (qemu does
# not keep cross-modified code coherent between vCPU threads).  The guest
# then dies "int3: 0000 [#1]" in vmlinux code such as __schedule, without
# any livepatch: enabling and disabling a trace event 400 times kills a plain
# 6.1 guest every time under -accel tcg, and never under tcg,thread=single.
choose_accel() {
    [ -z "${KLP_ACCEL:-}" ] || { klp_log "qemu accelerator: $KLP_ACCEL (KLP_ACCEL)"; return 0; }
    KLP_ACCEL=tcg,thread=single
    if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
        if KLP_ACCEL=kvm KLP_BOOT_TIMEOUT=30 KLP_BOOT_LOG=$RUNDIR/kvm-probe.log \
                klp_boot "$RUNNING/bzImage" - "uname -r" > "$RUNDIR/kvm-probe.out" 2>&1; then
            KLP_ACCEL=kvm
        else
            klp_log "KVM does not boot the running kernel here (see $RUNDIR/kvm-probe.log); using TCG"
        fi
    fi
    export KLP_ACCEL
    klp_log "qemu accelerator: $KLP_ACCEL"
}

# ---------------------------------------------------------------- main
T_START=$(now)
klp_log "klp-cc $KLP_CC_PRIV (sha256 $KLP_CC_SHA...), klp-link $KLP_LINK; results in $RUNDIR"
t0=$(now)
if [ "$ONE_BUILD" = 1 ]; then
    prepare_klp || die "could not prepare the klp-cc tree"
    prepare_running || die "could not prepare the running kernel"
else
    prepare_running || die "could not prepare the running kernel"
    prepare_klp || die "could not prepare the klp-cc tree"
fi
T_PREP=$(secs "$t0" "$(now)")
choose_accel
cmp -s "$RUNNING/.config" "$KLP/.config" ||
    die "the running kernel's .config differs from the klp tree's: $(diff "$RUNNING/.config" "$KLP/.config" | grep '^[<>]' | head -5 | tr '\n' ' ')"
[ "$(cat "$RUNNING/release")" = "$(cat "$KLP/include/config/kernel.release")" ] ||
    die "release $(cat "$RUNNING/release") (running) differs from $(cat "$KLP/include/config/kernel.release") (klp tree)"
klp_log "running kernel $(cat "$RUNNING/release") from $(cat "$RUNNING/origin"); klp tree $KLP from $(cat "$KLP/.klp-e2e-origin"); ready in $T_PREP s"

if [ $SELF_TEST = 1 ]; then
    printf '%s\n' "grep -q 'this has been live patched' /proc/cmdline" > "$RUNDIR/sample.check"
    sample=$KLP/samples/livepatch/livepatch-sample.ko
    if [ -f "$sample" ]; then
        run_test self-test-sample - "file:$sample" "$RUNDIR/sample.check" "$SELFTEST_BINFMT"
    else
        record self-test-sample load FAIL - - - - "no $sample in the klp tree"
    fi
    run_test self-test-cmdline "$HERE/patches/cmdline.patch" standin-cmdline ""
fi
for p in "${PATCHES[@]}"; do
    n=$(basename "$p" .patch)
    if [ -n "${MODULE_FOR[$n]:-}" ]; then
        run_test "$n" "$p" "file:${MODULE_FOR[$n]}" ""
    else
        run_test "$n" "$p" klp-link ""
    fi
done
# With every patch (as CI runs it): `klp-link patch` stopped at each phase.
[ $ALL_PATCHES = 0 ] || interrupt_tests

# ---------------------------------------------------------------- summary
echo
echo "e2e summary: running kernel $(cat "$RUNNING/release") ($(cat "$RUNNING/origin")), klp tree $KLP,"
echo "  klp-cc sha256 $KLP_CC_SHA..., klp-link $KLP_LINK; setup ${T_PREP} s; results in $RUNDIR"
w=4
for r in "${RESULTS[@]}"; do n=${r%%|*}; [ ${#n} -le $w ] || w=${#n}; done
fmt="  %-${w}s  %-6s %-6s %13s %9s %8s %11s  %s\n"
# shellcheck disable=SC2059
printf "$fmt" test expect result apply+rebuild klp-link restore boot+check note
for r in "${RESULTS[@]}"; do
    IFS='|' read -r a b c d e f g h <<< "$r"
    # shellcheck disable=SC2059
    printf "$fmt" "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h"
done
echo "  times in seconds; total $(secs "$T_START" "$(now)") s"
if [ $FAILED -ne 0 ]; then
    echo "e2e: FAILED"
    exit 1
fi
echo "e2e: PASS"
