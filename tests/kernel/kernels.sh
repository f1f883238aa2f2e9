# shellcheck shell=bash
# tests/kernel/kernels.sh - the Linux versions the real-kernel scripts can
# build, and where each one's source comes from.  Source it after lib.sh,
# let it take --kernel out of the arguments, then select the version:
#
#     . tests/kernel/lib.sh
#     . tests/kernel/kernels.sh
#     klp_kernel_args "$@" || exit 2
#     set -- "${KLP_ARGS[@]}"
#     klp_kernel_select || exit 2
#
# KLP_KERNEL (the environment, or --kernel V / --kernel=V; default 6.1):
#   6.1   Debian 12's linux-source-6.1, installed by lib.sh's klp_get_source
#         with the rest of KLP_PKGS.  lib.sh's own values, unchanged.
#   6.12  Debian 13 (trixie)'s linux-source-6.12             } downloaded,
#   7.3   trixie-backports' linux-source-7.3                  } never installed
# klp_kernel_select is the one place that knows these facts.
#
# Why a second file: klp_build_key (lib.sh) hashes lib.sh whole, so any edit
# of lib.sh would give every cached 6.1 build a new key and rebuild it.
# lib.sh therefore stays as it is and keeps describing 6.1, and for 6.1 this
# file must change nothing that lib.sh set: 6.1's keys do not hash this file.
# For another version klp_kernel_select replaces what differs:
#   KLP_KERNEL_CACHE  $KLP_KERNEL_CACHE/<version>: that version's src/,
#                     check/, e2e*/, logs/ and bin/, laid out as 6.1's are at
#                     the top of the cache, plus pkg/ (the download, below)
#   KLP_TARBALL       the tarball inside the downloaded package
#   KLP_PKGS          without linux-source-6.1
#   KLP_CONFIG        6.1's list with the version's edits, each explained
#   klp_source_id     the downloaded package's version, the toolchain, and a
#                     hash of this file: the version's keys cover this file too
#
# The download, klp_kernel_fetch: packages of a newer suite are never
# installed here (they would pull that suite's libc onto the system).  A
# private apt configuration under pkg/apt/ (its own sources.list, lists,
# caches and an empty dpkg status; none of the system's apt.conf.d) fetches
# the package with `apt-get download`; `dpkg -x` unpacks it into pkg/root/.
# The Release files are verified against the system's Debian archive keyring
# (debian-archive-keyring in Debian 12 has the trixie keys).  The mirror is
# the system's own Debian mirror (KLP_DEBIAN_MIRROR overrides it).  What
# was fetched is recorded in pkg/id ("package=version") and reused from then
# on; to move to a newer upload, delete the version's folder.
#
# Functions (each returns non-zero on failure; none calls exit):
#   klp_kernel_args ARGS...   KLP_KERNEL from --kernel; the other ARGS, in
#                             order, into the array KLP_ARGS
#   klp_kernel_select         check KLP_KERNEL and apply it (once)
#   klp_kernel_fetch          download and unpack the package (not for 6.1)
#   klp_kernel_source DEST    klp_kernel_fetch, then lib.sh's klp_get_source
# Environment: KLP_KERNEL, KLP_DEBIAN_MIRROR (default: the mirror the system's
# apt uses for its own release, else http://deb.debian.org/debian/).

KLP_KERNEL=${KLP_KERNEL:-6.1}
KLP_KERNELS_LIB=$(readlink -f "${BASH_SOURCE[0]}")
KLP_DEBIAN_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

# klp_kernel_args ARGS... - take --kernel V and --kernel=V out of ARGS
# (up to a `--`) into KLP_KERNEL; the rest go to KLP_ARGS.
klp_kernel_args() {
    KLP_ARGS=()
    while [ $# -gt 0 ]; do
        case $1 in
            --kernel)
                [ $# -ge 2 ] || { klp_err "--kernel needs a version (6.1, 6.12 or 7.3)"; return 2; }
                KLP_KERNEL=$2; shift ;;
            --kernel=*) KLP_KERNEL=${1#--kernel=} ;;
            --) KLP_ARGS+=("$@"); return 0 ;;
            *) KLP_ARGS+=("$1") ;;
        esac
        shift
    done
}

# klp_kernel_select - the version table.  Sets KLP_KERNEL_PKG and
# KLP_KERNEL_SUITE, and for a version other than 6.1 replaces lib.sh's
# values as described above.  Calling it again for the same version does
# nothing.
klp_kernel_select() {
    if [ -n "${KLP_KERNEL_SELECTED:-}" ]; then
        [ "$KLP_KERNEL_SELECTED" = "$KLP_KERNEL" ] && return 0
        klp_err "kernel $KLP_KERNEL_SELECTED is already selected, not $KLP_KERNEL"; return 2
    fi
    case $KLP_KERNEL in
        6.1)  KLP_KERNEL_PKG=linux-source-6.1  KLP_KERNEL_SUITE=bookworm ;;
        6.12) KLP_KERNEL_PKG=linux-source-6.12 KLP_KERNEL_SUITE=trixie ;;
        7.3)  KLP_KERNEL_PKG=linux-source-7.3  KLP_KERNEL_SUITE=trixie-backports ;;
        *) klp_err "unknown kernel version '$KLP_KERNEL' (known: 6.1, 6.12, 7.3)"; return 2 ;;
    esac
    KLP_KERNEL_SELECTED=$KLP_KERNEL
    # 6.1 is lib.sh as it stands: nothing to replace.
    [ "$KLP_KERNEL" != 6.1 ] || return 0

    KLP_KERNEL_CACHE=$KLP_KERNEL_CACHE/$KLP_KERNEL
    KLP_TARBALL=$KLP_KERNEL_CACHE/pkg/root/usr/src/$KLP_KERNEL_PKG.tar.xz
    local p pkgs=()
    for p in "${KLP_PKGS[@]}"; do [ "$p" = linux-source-6.1 ] || pkgs+=("$p"); done
    KLP_PKGS=("${pkgs[@]}")
    klp_kernel_config || return 1

    # Replaces lib.sh's (which names the installed linux-source-6.1); the
    # toolchain lines are the same, plus rustc's: from 6.12 on, Kconfig
    # writes the version of the rustc in PATH into .config, even with RUST
    # off.  (sed, not head: under pipefail a --version writing after head
    # has exited would fail the function.)
    klp_source_id() {
        cat "$KLP_KERNEL_CACHE/pkg/id"
        gcc --version | sed -n 1p
        ld --version | sed -n 1p
        make --version | sed -n 1p
        { rustc --version 2>/dev/null || echo "no rustc"; } | sed -n 1p
        sha256sum < "$KLP_KERNELS_LIB"
    }
}

# klp_kernel_config - KLP_CONFIG for the selected version: 6.1's list
# (lib.sh, whose comments give each option's intent) with the version's
# edits, so that the intent stays written in one place.  An edit is
#   -CONFIG_X          drop 6.1's entry for X
#   CONFIG_X:CONFIG_Y  X was renamed Y: the same value, under the new name
#   +CONFIG_X=VAL      add X=VAL
# An edit that does not match 6.1's list is an error (lib.sh changed).
# klp_configure still verifies every resulting option after olddefconfig.
klp_kernel_config() {
    local edits=() e o name out found
    case $KLP_KERNEL in
        6.12|7.3) edits=(
            # SLOB was removed in 6.4.  tinyconfig now picks SLUB_TINY, a
            # cut-down SLUB, where 6.1's picked SLOB: SLOB=n becomes
            # SLUB_TINY=n, for the full SLUB that distros use (CONFIG_SLUB=y
            # stays in the list).
            CONFIG_SLOB:CONFIG_SLUB_TINY
            # Renamed in 6.9 (the MITIGATION_ prefix).
            CONFIG_RETPOLINE:CONFIG_MITIGATION_RETPOLINE
            CONFIG_RETHUNK:CONFIG_MITIGATION_RETHUNK
            # Distro kernels of these versions also have: indirect branch
            # tracking (ENDBR64 at the start of functions; objtool then runs
            # once on vmlinux.o, not on each object), and call depth
            # tracking, which selects CALL_THUNKS and so CALL_PADDING: 16
            # bytes of padding before every function, named by __pfx_
            # symbols that objtool adds.  CALL_PADDING has no prompt; it is
            # listed to verify that it came along.
            +CONFIG_X86_KERNEL_IBT=y
            +CONFIG_MITIGATION_CALL_DEPTH_TRACKING=y
            +CONFIG_CALL_PADDING=y
        ) ;;
    esac
    if [ "$KLP_KERNEL" = 7.3 ]; then
        edits+=(
            # Upstream's klp-build support has no prompt and follows
            # LIVEPATCH on x86-64; like IBT it moves objtool to vmlinux.o.
            # Listed to verify that it is on, as on distro kernels.
            +CONFIG_KLP_BUILD=y
            # 7.x's tiny.config asks for dead code elimination, which would
            # compile every object with -ffunction-sections -fdata-sections
            # and hide what klp-cc adds.  x86 cannot have it in 7.3, and
            # distro kernels do not: keep it off should that change.
            +CONFIG_LD_DEAD_CODE_DATA_ELIMINATION=n
            # SHA-512 for module signatures (6.1 and 6.12 sign with
            # SHA-256: with SHA-512, this 6.12 configuration's kernel
            # refuses every module, kbuild's own included, with -ENOENT and
            # no message).
            CONFIG_MODULE_SIG_SHA256:CONFIG_MODULE_SIG_SHA512
        )
    fi
    for e in "${edits[@]}"; do
        out=() found=0
        case $e in
            -*) for o in "${KLP_CONFIG[@]}"; do
                    name=${o%%=*}
                    if [ "$name" = "${e#-}" ]; then found=1; else out+=("$o"); fi
                done ;;
            +*) out=("${KLP_CONFIG[@]}" "${e#+}") found=1 ;;
            *:*) for o in "${KLP_CONFIG[@]}"; do
                     name=${o%%=*}
                     if [ "$name" = "${e%%:*}" ]; then found=1; o=${e#*:}=${o#*=}; fi
                     out+=("$o")
                 done ;;
            *) found=0 ;;
        esac
        [ $found = 1 ] || { klp_err "kernel $KLP_KERNEL: config edit '$e' matches nothing in lib.sh's KLP_CONFIG"; return 1; }
        KLP_CONFIG=("${out[@]}")
    done
}

# klp_kernel_mirror - the Debian mirror to download from.
klp_kernel_mirror() {
    local m=${KLP_DEBIAN_MIRROR:-} codename=
    if [ -z "$m" ]; then
        # shellcheck disable=SC1091
        codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
        [ -z "$codename" ] ||
            m=$(apt-get indextargets --no-release-info --format '$(REPO_URI)' \
                    "Release: $codename" 'Target-Of: deb' 2>/dev/null | head -n1)
    fi
    echo "${m:-http://deb.debian.org/debian/}"
}

# klp_kernel_fetch - for a version other than 6.1, make sure KLP_TARBALL
# exists: download KLP_KERNEL_PKG from KLP_KERNEL_SUITE with the private apt
# configuration and unpack it with dpkg -x (see the header).  Logs the time.
klp_kernel_fetch() {
    [ -n "${KLP_KERNEL_SELECTED:-}" ] || { klp_err "klp_kernel_fetch: call klp_kernel_select first"; return 2; }
    [ "$KLP_KERNEL" != 6.1 ] || return 0
    local pkg=$KLP_KERNEL_CACHE/pkg
    [ -f "$pkg/id" ] && [ -f "$KLP_TARBALL" ] && return 0
    local apt=$pkg/apt mirror deb version t0
    t0=$(date +%s)
    [ -s "$KLP_DEBIAN_KEYRING" ] ||
        { klp_err "no $KLP_DEBIAN_KEYRING (apt-get install debian-archive-keyring)"; return 1; }
    mirror=$(klp_kernel_mirror)
    rm -rf "$pkg/id" "$pkg/root" "$pkg/root.tmp" "$pkg/download" || return 1
    mkdir -p "$apt/state/lists/partial" "$apt/cache/archives/partial" "$pkg/download" || return 1
    : > "$apt/state/status"      # nothing is installed, as far as this apt knows
    printf 'deb [signed-by=%s] %s %s main\n' "$KLP_DEBIAN_KEYRING" "$mirror" "$KLP_KERNEL_SUITE" \
        > "$apt/sources.list" || return 1
    # APT_CONFIG is read before anything else, so Dir::Etc::Parts and Main
    # set here keep the system's apt.conf(.d) out (its update hooks, its
    # extra index targets); preferences are the defaults.
    cat > "$apt/apt.conf" <<EOF || return 1
Dir::Etc::Main "/dev/null";
Dir::Etc::Parts "/dev/null";
Dir::Etc::SourceList "$apt/sources.list";
Dir::Etc::SourceParts "/dev/null";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "/dev/null";
Dir::State "$apt/state";
Dir::State::status "$apt/state/status";
Dir::Cache "$apt/cache";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
Acquire::GzipIndexes "true";
EOF
    # As root, apt downloads as the unprivileged _apt user, which must be
    # able to write the download folder.
    if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then
        chown _apt "$pkg/download" || return 1
    fi
    klp_log "downloading $KLP_KERNEL_PKG from $mirror $KLP_KERNEL_SUITE (private apt in $apt)"
    APT_CONFIG=$apt/apt.conf apt-get -q update >&2 || { klp_err "apt-get update ($KLP_KERNEL_SUITE) failed"; return 1; }
    (cd "$pkg/download" && APT_CONFIG=$apt/apt.conf apt-get -q download "$KLP_KERNEL_PKG") >&2 ||
        { klp_err "apt-get download $KLP_KERNEL_PKG failed"; return 1; }
    deb=$(find "$pkg/download" -maxdepth 1 -name "${KLP_KERNEL_PKG}_*.deb" | head -n1)
    [ -n "$deb" ] || { klp_err "apt-get download left no $KLP_KERNEL_PKG .deb"; return 1; }
    version=$(dpkg-deb -f "$deb" Version) || return 1
    klp_log "unpacking $(basename "$deb") (dpkg -x) into $pkg/root"
    dpkg -x "$deb" "$pkg/root.tmp" && mv "$pkg/root.tmp" "$pkg/root" || return 1
    [ -f "$KLP_TARBALL" ] || { klp_err "$(basename "$deb") has no $KLP_TARBALL"; return 1; }
    rm -rf "$pkg/download"
    printf '%s=%s\n' "$KLP_KERNEL_PKG" "$version" > "$pkg/id" || return 1
    klp_log "fetched $KLP_KERNEL_PKG=$version in $(( $(date +%s) - t0 )) s"
}

# klp_kernel_source DEST - klp_kernel_fetch, then lib.sh's klp_get_source
# (packages, then the tarball unpacked into DEST once).  For a downloaded
# version, DEST's stamp (.klp-cc-unpacked, which lib.sh leaves empty) holds
# the pkg/id it was unpacked from, and DEST is unpacked again when the
# download has changed since.
klp_kernel_source() {
    [ $# -eq 1 ] || { klp_err "usage: klp_kernel_source DEST"; return 2; }
    local dest=$1 id
    klp_kernel_fetch || return 1
    [ "$KLP_KERNEL" != 6.1 ] || { klp_get_source "$dest"; return; }
    id=$(cat "$KLP_KERNEL_CACHE/pkg/id") || return 1
    if [ -e "$dest/.klp-cc-unpacked" ] && [ "$(cat "$dest/.klp-cc-unpacked")" != "$id" ]; then
        klp_log "$dest was not unpacked from $id: unpacking it again"
        rm -f "$dest/.klp-cc-unpacked" || return 1
    fi
    klp_get_source "$dest" && printf '%s\n' "$id" > "$dest/.klp-cc-unpacked"
}
