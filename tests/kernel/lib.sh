# shellcheck shell=bash
# tests/kernel/lib.sh - helpers shared by klp-cc's real-kernel scripts
# (kbuild-check.sh, the end-to-end livepatch harness, bench/).  Source it:
#
#     . tests/kernel/lib.sh
#
# It gets Linux 6.1 from Debian's linux-source-6.1 package, configures a small
# x86-64 kernel that can be live patched, with what distribution kernels have
# (tinyconfig + LIVEPATCH, ORC/objtool, jump labels, retpolines, return
# thunks, BUG, paravirt, dynamic debug, DWARF 5, modversions, signed modules,
# BINFMT_MISC=m), builds it, and boots a bzImage under qemu with a busybox
# initramfs.
#
# Functions (each returns non-zero on failure; none calls exit):
#   klp_get_source DEST            install missing packages, unpack the source once
#   klp_build_key [ARGS]           cache key of a build (source, toolchain, this file, env)
#   klp_fresh_tree PRISTINE DEST   DEST := a fresh copy of an unpacked source tree
#   klp_configure SRCDIR [CONFIG_X=y|m|n|val ...]   write + verify .config
#   klp_signing_key                the cache's module signing key (made once)
#   klp_build SRCDIR [make args]   make bzImage, then make modules (timed)
#   klp_boot BZIMAGE [MODULES [CHECK]]   boot under qemu, run CHECK in the guest
#
# Environment:
#   KLP_KERNEL_CACHE  cache folder (default /var/tmp/klp-cc-kernel); keep it
#                     outside any git repository
#   JOBS              make -j (default: nproc)
#   KLP_BUILD_LOG     if set, klp_build appends make's output there
#   KLP_ACCEL         qemu accelerator: tcg (default) or kvm (opt-in: on nested
#                     VMs /dev/kvm may exist but hang the guest)
#   KLP_BOOT_TIMEOUT  qemu wall-clock limit in s (300)
#   KLP_SMP, KLP_MEM  guest CPUs (2) and memory (512M)
#   KLP_APPEND        extra kernel command line
#   KLP_BOOT_LOG      serial log file (default: a new file in $KLP_KERNEL_CACHE/logs)
#   KLP_BOOT_VERBOSE  1: copy the serial console to stderr while booting

KLP_KERNEL_CACHE=${KLP_KERNEL_CACHE:-/var/tmp/klp-cc-kernel}
KLP_TARBALL=/usr/src/linux-source-6.1.tar.xz

# Debian packages: kernel source, toolchain and kernel build deps, qemu and a
# static busybox for the initramfs.  `time` is GNU time (/usr/bin/time).
# openssl makes the module signing key (klp_signing_key).
KLP_PKGS=(linux-source-6.1 build-essential bc bison flex libelf-dev libssl-dev
          cpio xz-utils kmod python3 perl rsync time gzip
          qemu-system-x86 busybox-static openssl)

# Options applied on top of tinyconfig; every one is verified after olddefconfig.
KLP_CONFIG=(
    # base: 64-bit, SMP, -O2 like distro kernels (tinyconfig uses -Os), SLUB
    CONFIG_64BIT=y CONFIG_SMP=y
    CONFIG_CC_OPTIMIZE_FOR_SIZE=n CONFIG_CC_OPTIMIZE_FOR_PERFORMANCE=y
    CONFIG_SLOB=n CONFIG_SLUB=y
    CONFIG_KERNEL_XZ=n CONFIG_KERNEL_GZIP=y        # gzip: faster bzImage step
    # boot under qemu: serial console, printk, initramfs, devtmpfs, proc/sys, exec
    CONFIG_PRINTK=y CONFIG_PRINTK_TIME=y CONFIG_EARLY_PRINTK=y
    CONFIG_TTY=y CONFIG_SERIAL_8250=y CONFIG_SERIAL_8250_CONSOLE=y
    CONFIG_BLK_DEV_INITRD=y CONFIG_RD_GZIP=y
    CONFIG_DEVTMPFS=y CONFIG_DEVTMPFS_MOUNT=y
    CONFIG_PROC_FS=y CONFIG_SYSFS=y
    CONFIG_BINFMT_ELF=y CONFIG_BINFMT_SCRIPT=y
    CONFIG_MULTIUSER=y CONFIG_FUTEX=y CONFIG_POSIX_TIMERS=y
    # ACPI (which needs PCI for qemu's DSDT): a second CPU (SeaBIOS's MP table
    # lists only CPU0) and a working `poweroff -f`
    CONFIG_PCI=y CONFIG_ACPI=y
    # modules; MODVERSIONS and signing are below
    CONFIG_MODULES=y CONFIG_MODULE_UNLOAD=y
    # live patching: ftrace with regs, full kallsyms, a reliable unwinder
    CONFIG_KALLSYMS=y CONFIG_KALLSYMS_ALL=y
    CONFIG_FTRACE=y CONFIG_FUNCTION_TRACER=y CONFIG_DYNAMIC_FTRACE=y
    CONFIG_DYNAMIC_FTRACE_WITH_REGS=y
    CONFIG_UNWINDER_GUESS=n CONFIG_UNWINDER_ORC=y   # ORC => objtool on every object
    CONFIG_OBJTOOL=y CONFIG_HAVE_RELIABLE_STACKTRACE=y CONFIG_STACKTRACE=y
    CONFIG_LIVEPATCH=y
    CONFIG_SAMPLES=y CONFIG_SAMPLE_LIVEPATCH=m
    # distro realism: __jump_table, .retpoline_sites, .return_sites, static calls.
    # CPU_MITIGATIONS must be explicit or RETPOLINE silently disappears.
    CONFIG_JUMP_LABEL=y CONFIG_CPU_MITIGATIONS=y CONFIG_RETPOLINE=y CONFIG_RETHUNK=y
    # __bug_table with file/line (tinyconfig turns BUG off; distros never do)
    CONFIG_BUG=y CONFIG_DEBUG_BUGVERBOSE=y
    # a real loadable module to live patch (visible via /proc/sys/fs/binfmt_misc)
    CONFIG_BINFMT_MISC=m
    # What distribution kernels have besides:
    # paravirt patch sites in real use (a KVM guest);
    CONFIG_HYPERVISOR_GUEST=y CONFIG_PARAVIRT=y CONFIG_KVM_GUEST=y
    # pr_debug() descriptors in __dyndbg;
    CONFIG_DYNAMIC_DEBUG=y
    # a CRC per exported symbol and __versions in every module;
    CONFIG_MODVERSIONS=y
    # DWARF 5 debug info: .debug_* sections whose relocations point into
    # every function klp-link copies;
    CONFIG_DEBUG_KERNEL=y CONFIG_DEBUG_INFO_DWARF5=y
    # signed modules, and a kernel that loads no other: klp-link must sign
    # the livepatch the way kbuild signs modules.  SHA-256, Debian's choice
    # (kernels.sh: 7.3 uses SHA-512).  The key is not kbuild's per-tree one
    # but the cache's (klp_configure, klp_signing_key), as a distribution
    # signs all its builds with its own: the running kernel of a two-build
    # test then trusts what the klp-cc tree signs.
    CONFIG_MODULE_SIG=y CONFIG_MODULE_SIG_ALL=y CONFIG_MODULE_SIG_FORCE=y
    CONFIG_MODULE_SIG_SHA256=y
)

klp_log()  { printf '%s: %s\n' "${KLP_LOG_TAG:-klp}" "$*" >&2; }
klp_err()  { printf '%s: ERROR: %s\n' "${KLP_LOG_TAG:-klp}" "$*" >&2; }

# klp_get_source DEST - install missing packages (apt-get; sudo when not root),
# then unpack the linux-source-6.1 tarball into DEST unless DEST/.klp-cc-unpacked
# exists.  DEST becomes the top of the kernel tree.
klp_get_source() {
    [ $# -eq 1 ] || { klp_err "usage: klp_get_source DEST"; return 2; }
    local dest=$1 p missing=() sudo=
    for p in "${KLP_PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' \
            || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        klp_log "installing: ${missing[*]}"
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo apt-get update -q || return 1
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q \
            --no-install-recommends "${missing[@]}" || return 1
    fi
    if [ -e "$dest/.klp-cc-unpacked" ]; then
        return 0
    fi
    [ -f "$KLP_TARBALL" ] || { klp_err "missing $KLP_TARBALL"; return 1; }
    klp_log "unpacking $KLP_TARBALL into $dest"
    rm -rf "$dest" && mkdir -p "$dest" || return 1
    # The tarball's top directory is linux-source-6.1/; strip it.
    tar -xJf "$KLP_TARBALL" -C "$dest" --strip-components=1 || return 1
    touch "$dest/.klp-cc-unpacked"
    klp_log "unpacked Linux $(make -s -C "$dest" kernelversion) into $dest"
}

# klp_source_id - one line naming the exact source and toolchain (for cache keys).
klp_source_id() {
    dpkg-query -W -f='${Package}=${Version}\n' linux-source-6.1 2>/dev/null
    gcc --version | head -1
    ld --version | head -1
    make --version | head -1
}

# klp_build_key [ARGS...] - a 16-hex-digit key for a cached build: a hash of
# klp_source_id, this file (configuration list and build steps), the KBUILD_*
# environment and ARGS (the make arguments and whatever else went into the
# build, e.g. "klp-cc <sha256>").  Every script that reuses another's build
# must compute keys with this function, so that they agree.
KLP_LIB=$(readlink -f "${BASH_SOURCE[0]}")
klp_build_key() {
    local key=none
    if klp_signs_modules; then
        key=$(klp_signing_key) || return 1
        key=$(sha256sum < "$key")
    fi
    { klp_source_id; cat "$KLP_LIB"; env | grep -E '^KBUILD_' | sort; printf '%s\n' "$@"
      echo "signing key $key"; } |
        sha256sum | cut -c1-16
}

# klp_signs_modules - whether KLP_CONFIG asks for signed modules.
klp_signs_modules() {
    local o
    for o in "${KLP_CONFIG[@]}"; do [ "$o" = CONFIG_MODULE_SIG=y ] && return 0; done
    return 1
}

# klp_signing_key - print the path of the cache's module signing key (a PEM
# file with the private key and its self-signed certificate), made once with
# the hash KLP_CONFIG signs with.  Every tree of the cache signs with it, and
# its hash is in every build key, so a new key rebuilds every tree.
klp_signing_key() {
    local hash=sha256 o key conf
    for o in "${KLP_CONFIG[@]}"; do
        case $o in CONFIG_MODULE_SIG_SHA*=y) hash=${o#CONFIG_MODULE_SIG_}; hash=${hash%=y}; hash=${hash,,} ;; esac
    done
    key=$KLP_KERNEL_CACHE/signing-key-$hash.pem
    if [ ! -s "$key" ]; then
        mkdir -p "$KLP_KERNEL_CACHE" || return 1
        conf=$(mktemp) || return 1
        # What the kernel wants of a module signing certificate: not a CA,
        # for digital signatures, with key identifiers.
        printf '%s\n' '[ req ]' 'default_bits = 4096' 'distinguished_name = dn' \
            'prompt = no' 'string_mask = utf8only' 'x509_extensions = ext' \
            '[ dn ]' 'CN = klp-cc test kernels module signing key' \
            '[ ext ]' 'basicConstraints = critical,CA:FALSE' 'keyUsage = digitalSignature' \
            'subjectKeyIdentifier = hash' 'authorityKeyIdentifier = keyid' > "$conf"
        klp_log "making the module signing key $key ($hash)"
        if ! openssl req -new -nodes -utf8 -"$hash" -days 36500 -batch -x509 -config "$conf" \
                -outform PEM -out "$key.tmp.$$" -keyout "$key.tmp.$$" 2>"$conf.err"; then
            klp_err "openssl could not make a signing key: $(cat "$conf.err")"
            rm -f "$conf" "$conf.err" "$key.tmp.$$"; return 1
        fi
        rm -f "$conf" "$conf.err"
        mv "$key.tmp.$$" "$key" || return 1
    fi
    echo "$key"
}

# klp_fresh_tree PRISTINE DEST - replace DEST by a full copy of the unpacked
# tree PRISTINE (a real copy, not hard links: builds must never touch PRISTINE).
klp_fresh_tree() {
    [ $# -eq 2 ] || { klp_err "usage: klp_fresh_tree PRISTINE DEST"; return 2; }
    [ -e "$1/.klp-cc-unpacked" ] || { klp_err "$1 is not an unpacked source tree"; return 1; }
    case $(readlink -m "$2") in /|"$(readlink -m "$1")") klp_err "refusing to replace $2"; return 2;; esac
    mkdir -p "$(dirname "$2")" || return 1
    if [ -e "$2" ]; then
        # Deleting a built tree takes about a minute on a slow disk: move it
        # aside and delete it in the background.
        local trash
        trash=$(mktemp -d "$(dirname "$2")/.trash.XXXXXX") && mv "$2" "$trash/" || return 1
        rm -rf "$trash" &
    fi
    cp -a --reflink=auto "$1" "$2" && rm -f "$2/.klp-cc-unpacked"
}

# klp_configure SRCDIR [CONFIG_X=y|m|n|val ...] - tinyconfig, then KLP_CONFIG
# and the extra options via scripts/config, then olddefconfig; verify that every
# requested value survived (returns 1 naming those that did not).
klp_configure() {
    [ $# -ge 1 ] || { klp_err "usage: klp_configure SRCDIR [CONFIG_X=y ...]"; return 2; }
    local src=$1; shift
    local opts=("${KLP_CONFIG[@]}" "$@") o name val bad=0 key
    make -s -C "$src" tinyconfig >/dev/null || return 1
    for o in "${opts[@]}"; do
        name=${o%%=*}; val=${o#*=}; name=${name#CONFIG_}
        case $val in
            y) "$src/scripts/config" --file "$src/.config" --enable  "$name" ;;
            m) "$src/scripts/config" --file "$src/.config" --module  "$name" ;;
            n) "$src/scripts/config" --file "$src/.config" --disable "$name" ;;
            *) "$src/scripts/config" --file "$src/.config" --set-val "$name" "$val" ;;
        esac || return 1
    done
    make -s -C "$src" olddefconfig || return 1
    if grep -qx 'CONFIG_MODULE_SIG=y' "$src/.config"; then
        key=$(klp_signing_key) || return 1
        "$src/scripts/config" --file "$src/.config" --set-str MODULE_SIG_KEY "$key" || return 1
        make -s -C "$src" olddefconfig || return 1
        grep -qxF "CONFIG_MODULE_SIG_KEY=\"$key\"" "$src/.config" ||
            { klp_err "config: CONFIG_MODULE_SIG_KEY did not take $key"; return 1; }
    fi
    for o in "${opts[@]}"; do
        name=${o%%=*}; val=${o#*=}
        if [ "$val" = n ]; then
            if grep -q "^$name=" "$src/.config"; then
                klp_err "config: $name is set, wanted n"; bad=1
            fi
        elif ! grep -qxF "$o" "$src/.config"; then
            klp_err "config: wanted $o, got: $(grep -E "^(# )?${name}[= ]" "$src/.config" || echo '<absent>')"
            bad=1
        fi
    done
    [ $bad -eq 0 ] || { klp_err "config: requested options did not survive olddefconfig"; return 1; }
    klp_log "configured $src ($(grep -c '=[ym]$' "$src/.config") options set)"
}

# klp_build SRCDIR [make args...] - make bzImage, then make modules, with
# -j$JOBS; the args go to both (e.g. CC="klp-cc gcc", KCFLAGS=..., V=1).
# Sets KLP_BUILD_SECS (wall seconds, both steps) and logs each step's
# wall/user/sys/max RSS.  make's output goes to $KLP_BUILD_LOG if set.
klp_build() {
    [ $# -ge 1 ] || { klp_err "usage: klp_build SRCDIR [make args...]"; return 2; }
    local src=$1; shift
    local jobs=${JOBS:-$(nproc)} target rc t0 t1 timing
    timing=$(mktemp)
    t0=$(date +%s.%N)
    for target in bzImage modules; do
        rc=0
        if [ -n "${KLP_BUILD_LOG:-}" ]; then
            /usr/bin/time -o "$timing" -f "wall %e s, user %U s, sys %S s, max RSS %M KB" \
                make -C "$src" -j"$jobs" "$@" "$target" >>"$KLP_BUILD_LOG" 2>&1 || rc=$?
        else
            /usr/bin/time -o "$timing" -f "wall %e s, user %U s, sys %S s, max RSS %M KB" \
                make -C "$src" -j"$jobs" "$@" "$target" || rc=$?
        fi
        klp_log "build $src: make $target: $(tail -1 "$timing")"
        if [ $rc -ne 0 ]; then
            klp_err "make $target failed in $src (exit $rc)${KLP_BUILD_LOG:+; last lines of $KLP_BUILD_LOG:}"
            [ -z "${KLP_BUILD_LOG:-}" ] || tail -30 "$KLP_BUILD_LOG" >&2
            rm -f "$timing"; return 1
        fi
    done
    t1=$(date +%s.%N)
    rm -f "$timing"
    # shellcheck disable=SC2034  # an output for the caller
    KLP_BUILD_SECS=$(printf '%.1f' "$(echo "$t1 - $t0" | bc)")
}

# klp_boot BZIMAGE [MODULES [CHECK]] - boot BZIMAGE under qemu with a busybox
# initramfs and run the shell text CHECK in the guest (as root, PATH=/bin).
#   MODULES  '-' (none, the default) or a:b.ko: copied into the guest as
#            /ko/01-a.ko, /ko/02-b.ko ...; CHECK decides when to load them
#            (helper: klp_insmod_all).
#   CHECK    shell text, default 'uname -r'.  Its exit status is the result.
#            Guest helpers it can call: klp_insmod_all (insmod /ko/*.ko in
#            order), klp_wait_transition [SECS] (wait until every
#            /sys/kernel/livepatch/*/transition is 0; default 60 s).
# The guest prints CHECK's output between KLP-CHECK-BEGIN/END lines, then
# "KLP-RESULT: PASS" or "KLP-RESULT: FAIL (...)", and powers off.  Returns 0
# on PASS, 1 on FAIL/timeout/panic, 2 on bad usage.  Sets KLP_BOOT_LOG_FILE
# (serial log) and KLP_BOOT_OUTPUT (file with CHECK's output only).
klp_boot() {
    if [ $# -lt 1 ] || [ $# -gt 3 ]; then klp_err "usage: klp_boot BZIMAGE [MODULES [CHECK]]"; return 2; fi
    local bzimage=$1 modules=${2:--} check=${3:-uname -r}
    local busybox=/bin/busybox tmo=${KLP_BOOT_TIMEOUT:-300} work root k a i=0 rc=0 t0 kos=()
    [ -f "$bzimage" ] || { klp_err "no such bzImage: $bzimage"; return 2; }
    [ "$modules" = - ] || IFS=: read -ra kos <<< "$modules"
    for k in "${kos[@]}"; do [ -f "$k" ] || { klp_err "no such module: $k"; return 2; }; done
    [ -x "$busybox" ] || { klp_err "$busybox missing (apt-get install busybox-static)"; return 1; }

    mkdir -p "$KLP_KERNEL_CACHE/logs" || return 1
    work=$(mktemp -d "${TMPDIR:-/tmp}/klp-boot.XXXXXX") || return 1
    KLP_BOOT_LOG_FILE=${KLP_BOOT_LOG:-$(mktemp "$KLP_KERNEL_CACHE/logs/boot.XXXXXX.log")}
    KLP_BOOT_OUTPUT=${KLP_BOOT_LOG_FILE%.log}.check.txt
    root=$work/root
    mkdir -p "$root"/{bin,dev,proc,sys,tmp,ko}
    cp "$busybox" "$root/bin/busybox"
    for a in $("$busybox" --list); do [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"; done
    # Needs root; without it the kernel has no initial console, and /init
    # reopens /dev/console after mounting devtmpfs.
    mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true
    for k in "${kos[@]}"; do
        i=$((i + 1)); cp "$k" "$root/ko/$(printf %02d $i)-$(basename "$k")"
    done
    printf '%s\n' "$check" > "$root/check.sh"
    cat > "$root/init" <<'EOF'
#!/bin/sh
# klp-cc test guest: mount, run /check.sh, report, power off.
export PATH=/bin
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
klp_insmod_all() {
    for ko in /ko/*.ko; do
        [ -e "$ko" ] || continue
        echo "klp-guest: insmod $ko"
        insmod "$ko" || { dmesg | tail -20; return 1; }
    done
}
klp_wait_transition() {   # [SECS]
    limit=${1:-60}
    for t in /sys/kernel/livepatch/*/transition; do
        [ -e "$t" ] || continue
        n=0
        while [ "$(cat "$t")" != 0 ]; do
            n=$((n + 1)); sleep 1
            if [ $n -ge "$limit" ]; then
                echo "klp-guest: $t still 1 after $limit s; tasks not yet patched:"
                for p in /proc/[0-9]*; do
                    [ "$(cat $p/patch_state 2>/dev/null)" = "$(cat ${t%transition}enabled)" ] ||
                        { cat $p/comm; cat $p/stack 2>/dev/null; }
                done
                return 1
            fi
        done
        echo "klp-guest: ${t%/transition}: enabled=$(cat ${t%transition}enabled), transition done after ~$n s"
    done
}
echo "klp-guest: kernel $(uname -r), up $(cut -d' ' -f1 /proc/uptime) s"
echo KLP-CHECK-BEGIN
# A subshell: `exit N` in the check ends only the check, not /init.
( . /check.sh )
rc=$?
echo KLP-CHECK-END
if [ $rc -eq 0 ]; then echo "KLP-RESULT: PASS"; else echo "KLP-RESULT: FAIL (check exit $rc)"; fi
sync
# Without ACPI, poweroff only halts; qemu runs with -no-reboot, so reboot ends it.
if [ -d /sys/firmware/acpi ]; then poweroff -f; else reboot -f; fi
sleep 5
EOF
    chmod +x "$root/init"
    (cd "$root" && find . | cpio -o -H newc -R 0:0 --quiet | gzip -1) \
        > "$work/initramfs.cpio.gz" || { rm -rf "$work"; return 1; }

    local accel=${KLP_ACCEL:-tcg} cpu=max
    klp_log "boot $bzimage (qemu -accel $accel), log $KLP_BOOT_LOG_FILE"
    t0=$(date +%s.%N)
    if [ "${KLP_BOOT_VERBOSE:-0}" = 1 ]; then
        timeout -k 5 "$tmo" qemu-system-x86_64 -accel "$accel" -cpu "$cpu" \
            -smp "${KLP_SMP:-2}" -m "${KLP_MEM:-512M}" -nographic -no-reboot \
            -kernel "$bzimage" -initrd "$work/initramfs.cpio.gz" \
            -append "console=ttyS0 panic=-1 oops=panic ${KLP_APPEND:-}" \
            </dev/null 2>&1 | tee "$KLP_BOOT_LOG_FILE" >&2 || rc=$?
    else
        timeout -k 5 "$tmo" qemu-system-x86_64 -accel "$accel" -cpu "$cpu" \
            -smp "${KLP_SMP:-2}" -m "${KLP_MEM:-512M}" -nographic -no-reboot \
            -kernel "$bzimage" -initrd "$work/initramfs.cpio.gz" \
            -append "console=ttyS0 panic=-1 oops=panic ${KLP_APPEND:-}" \
            </dev/null >"$KLP_BOOT_LOG_FILE" 2>&1 || rc=$?
    fi
    rm -rf "$work"
    KLP_BOOT_SECS=$(printf '%.1f' "$(echo "$(date +%s.%N) - $t0" | bc)")
    tr -d '\r' < "$KLP_BOOT_LOG_FILE" \
        | sed -n '/KLP-CHECK-BEGIN/,/KLP-CHECK-END/{/KLP-CHECK-\(BEGIN\|END\)/d;p}' \
        > "$KLP_BOOT_OUTPUT"
    # No ^ anchor: a printk line may share the line with the marker.
    if grep -aq 'KLP-RESULT: PASS' "$KLP_BOOT_LOG_FILE"; then
        klp_log "boot: PASS after ${KLP_BOOT_SECS} s"
        return 0
    fi
    [ "$rc" -ne 124 ] || klp_err "boot: qemu timed out after $tmo s"
    klp_err "boot: FAIL after ${KLP_BOOT_SECS} s (qemu exit $rc); last lines of $KLP_BOOT_LOG_FILE:"
    tail -25 "$KLP_BOOT_LOG_FILE" | tr -d '\r' >&2
    return 1
}
