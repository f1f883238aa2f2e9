#!/bin/bash
# tests/kernel/kbuild-check.sh - check klp-cc as CC of a real Linux build
# (6.1 unless --kernel says otherwise).
#
#   (a) make CC="klp-cc gcc" (sections on): every object kbuild compiled
#       through klp-cc has a complete manifest dir/.name.o.klp, and no other
#       .klp file exists in the tree.  Feature probes are replayed through
#       klp-cc and gcc: the same exit status, output and files, no manifest.
#   (b) make CC=gcc vs make CC="klp-cc gcc" with KLP_CC_SECTIONS=0, both from
#       a fresh copy of the source at the SAME path: every .o/.ko (and
#       vmlinux, bzImage, .config) byte-identical, except ALLOW_DIFF below.
#   (c) the KLP_CC_SECTIONS=0 bzImage boots under qemu and runs /init.
#
# Usage: tests/kernel/kbuild-check.sh [--kernel 6.1|6.12|7.3]
#        --kernel V        the Linux version (kernels.sh; default $KLP_KERNEL
#                          or 6.1); other than 6.1, everything lives under
#                          $KLP_KERNEL_CACHE/V/
# env:   KLP_CC            klp-cc binary (default: <repo>/target/release/klp-cc,
#                          built with cargo if missing)
#        KLP_KERNEL_CACHE  cache folder (default /var/tmp/klp-cc-kernel)
#        KLP_CHECK_FRESH=1 rebuild even if a cached build has the same key
#        JOBS, KLP_ACCEL, KLP_BOOT_TIMEOUT: see lib.sh
# Exit: 0 all checks pass, 1 a check failed, 2 setup problem.
# Time: three kernel builds plus ~50 s each to copy and configure the source:
# ~11 min on 2 idle cores (2.7 min builds); 21 min measured on a loaded 2-vCPU
# VM.  Builds are cached by key (see below): after a klp-cc change only the
# two klp-cc builds rerun; with nothing changed a run takes about 15 s.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
KLP_LOG_TAG=kbuild-check
# shellcheck source=tests/kernel/lib.sh
. "$HERE/lib.sh"
# shellcheck source=tests/kernel/kernels.sh
. "$HERE/kernels.sh"

die()  { klp_err "$*"; exit 2; }
klp_kernel_args "$@" || exit 2
set -- "${KLP_ARGS[@]}"
[ $# -eq 0 ] || { echo "usage: $0 [--kernel 6.1|6.12|7.3]" >&2; exit 2; }
klp_kernel_select || exit 2
T_START=$(date +%s)

# Objects that may legitimately differ between two otherwise identical builds.
# With KBUILD_BUILD_TIMESTAMP/USER/HOST/VERSION fixed (below), two plain gcc
# builds of a fresh tree at the same path are byte-identical, objects and
# vmlinux/bzImage alike, so the list is empty.  Measured without the fixed
# values (two plain gcc builds of 6.1.192, same path, different time, user and
# host), these 12 of 1105 compared files differ, all through the build time or
# user@host, and would have to be listed here instead:
#   init/version-timestamp.o, init/version.o  (UTS_VERSION "#1 SMP <date>",
#                                              LINUX_COMPILE_BY/_HOST)
#   arch/x86/boot/version.o, header.o         (kernel_version string for the setup)
#   usr/initramfs_data.o                      (default cpio: mtimes = build time)
#   vmlinux.o, .tmp_vmlinux.kallsyms1.o, .tmp_vmlinux.kallsyms2.o, vmlinux
#                                             (link in the objects above)
#   arch/x86/boot/compressed/piggy.o, compressed/vmlinux, bzImage
#                                             (embed the compressed vmlinux)
# Entries are paths relative to the tree root.
ALLOW_DIFF=(
)

# ---------------------------------------------------------------- setup
# Fixed build identity: makes the build reproducible, so ALLOW_DIFF is empty.
export KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 2026'
export KBUILD_BUILD_USER=klp-cc KBUILD_BUILD_HOST=kbuild-check KBUILD_BUILD_VERSION=1
# Nothing from the caller's environment may change the builds.
unset O KBUILD_OUTPUT KCFLAGS KCPPFLAGS KAFLAGS KBUILD_EXTRA_SYMBOLS LLVM \
      CROSS_COMPILE ARCH KLP_CC_SECTIONS KLP_CC_ACTIVE KLP_CC_COMPILER KLP_CC_LOG

if [ -z "${KLP_CC:-}" ]; then
    KLP_CC=$REPO/target/release/klp-cc
    if [ ! -x "$KLP_CC" ]; then
        klp_log "building klp-cc (cargo build --release)"
        (cd "$REPO" && cargo build --release) || die "cargo build --release failed"
    fi
fi
[ -x "$KLP_CC" ] || die "klp-cc not found or not executable: $KLP_CC"
KLP_CC_ORIG=$(readlink -f "$KLP_CC")

CACHE=$KLP_KERNEL_CACHE
# Run a private copy, named by its hash: a cargo build during the run cannot
# change the binary under the builds, and the cache key is exactly what ran.
KLP_CC_SHA=$(sha256sum < "$KLP_CC_ORIG" | cut -c1-16)
KLP_CC=$CACHE/bin/$KLP_CC_SHA/klp-cc
if [ ! -x "$KLP_CC" ]; then
    mkdir -p "$(dirname "$KLP_CC")" && cp "$KLP_CC_ORIG" "$KLP_CC.tmp" && mv "$KLP_CC.tmp" "$KLP_CC" ||
        die "cannot copy $KLP_CC_ORIG to $KLP_CC"
fi
case $KLP_CC in *[[:space:]]*) die "klp-cc path must not contain blanks: $KLP_CC";; esac
KLPCC_CC="$KLP_CC gcc"           # the CC given to make, as it appears in .cmd files

SRC=$CACHE/src                   # pristine unpacked source, never built in
TREE_A=$CACHE/check/sections     # (a): CC="klp-cc gcc"
TREE_B=$CACHE/check/cmp          # (b): plain build, then the KLP_CC_SECTIONS=0 build
STASH=$CACHE/check/plain-objects # (b): the plain build's outputs, same relative paths
LOGS=$CACHE/logs
mkdir -p "$CACHE/check" "$LOGS"
case $CACHE/ in "$REPO"/*) die "KLP_KERNEL_CACHE must be outside the repository";; esac

klp_kernel_source "$SRC" || die "could not get the kernel source"

# Cache keys (klp_build_key in lib.sh, shared with the other kernel scripts):
# a cached build is reused only if everything that goes into it is the same:
# source package, gcc/ld/make versions, lib.sh (configuration and build
# steps), the KBUILD_* environment, the make arguments, and for klp-cc builds
# the klp-cc binary's sha256 and KLP_CC_SECTIONS; for a kernel other than
# 6.1 also rustc's version and kernels.sh.  This script's checking
# logic does not go into the builds.  KLP_CHECK_FRESH=1 rebuilds anyway.
build_key() { klp_build_key "$@"; }
KEY_PLAIN=$(build_key CC=gcc)
KEY_A=$(build_key "klp-cc $KLP_CC_SHA" "CC=$KLPCC_CC")
KEY_B=$(build_key "klp-cc $KLP_CC_SHA" "CC=$KLPCC_CC" KLP_CC_SECTIONS=0)
cached() {  # cached DIR KEY: is DIR a finished build with this key, untouched since?
    [ "${KLP_CHECK_FRESH:-0}" != 1 ] && [ -f "$1/.klp-check-key" ] &&
        [ "$(cat "$1/.klp-check-key")" = "$2" ] || return 1
    # Other scripts may build in these trees (incremental rebuilds of a patched
    # source): anything written after the stamp makes the build unusable here.
    local newer
    newer=$(find "$1" -newer "$1/.klp-check-key" -print -quit 2>/dev/null)
    if [ -n "$newer" ]; then
        klp_log "not reusing $1: changed after its build (e.g. $newer)"
        return 1
    fi
}
# build_tree DIR KEY LOGNAME [make args]: fresh copy, configure, build, stamp.
build_tree() {
    local dir=$1 key=$2 log=$LOGS/$3.log; shift 3
    klp_fresh_tree "$SRC" "$dir" || die "could not copy $SRC to $dir"
    klp_configure "$dir" >/dev/null || die "configuration failed in $dir"
    : > "$log"
    klp_log "building $dir: make $* (log: $log)"
    if ! KLP_BUILD_LOG=$log klp_build "$dir" "$@"; then
        # The kernel's own host-tools build (tools/objtool, tools/lib/subcmd,
        # always compiled with HOSTCC=gcc, never through klp-cc) has a rare
        # -j race: "mv: cannot stat 'tools/objtool/.pager.o.tmp'".  Only when
        # the first failing target is under tools/ is make run once more
        # (incrementally); any other failure fails the check at once.
        local first
        first=$(grep -m1 -oE '\*\*\* \[[^]]*\] Error [0-9]+' "$log" || true)
        if [[ $first =~ :[0-9]+:\ ([^]]+)\]\ Error && ${BASH_REMATCH[1]} =~ (^|/)tools/ ]]; then
            warn "build of $dir failed in the kernel's host tools ($first), not in a klp-cc compile; running make again"
            echo "=== kbuild-check: retry after a host-tools failure" >> "$log"
            KLP_BUILD_LOG=$log klp_build "$dir" "$@" || { klp_err "build failed again: $dir"; return 1; }
        else
            klp_err "build failed: $dir${first:+ (first error: $first)}"; return 1
        fi
    fi
    klp_log "built $dir in ${KLP_BUILD_SECS} s"
    echo "$key" > "$dir/.klp-check-key"
}

FAILS=()
fail() { klp_err "$*"; FAILS+=("$*"); }
SUMMARY=()
note() { klp_log "$*"; SUMMARY+=("$*"); }
WARNINGS=()
warn() { klp_log "WARNING: $*"; WARNINGS+=("$*"); }

# ---------------------------------------------------------------- (a)
klp_log "=== (a) manifests: make CC=\"$KLPCC_CC\" (sections on)"
t0=$(date +%s)
if cached "$TREE_A" "$KEY_A"; then
    klp_log "reusing $TREE_A (same key $KEY_A)"
    build_a=ok
else
    # klp-cc's own decision log (one line per invocation), kept for diagnosis.
    export KLP_CC_LOG=$LOGS/check-sections.klp-cc.log
    rm -f "$KLP_CC_LOG"
    if build_tree "$TREE_A" "$KEY_A" check-sections "CC=$KLPCC_CC"; then
        build_a=ok
    else
        build_a=failed; fail "(a) kernel build with CC=\"$KLPCC_CC\" failed (log $LOGS/check-sections.log)"
    fi
    unset KLP_CC_LOG
fi

if [ "$build_a" = ok ]; then
    # Objects compiled through klp-cc: kbuild's own .<name>.o.cmd files whose
    # command (up to the first ' ; ', which chains objtool or ld -r for
    # single-object modules) is "<klp-cc> gcc ... -c ...".  link-vmlinux.sh
    # also compiles .tmp_vmlinux.kallsyms{1,2}.o with $CC but records no .cmd.
    if python3 - "$TREE_A" "$KLPCC_CC" "$LOGS/check-sections.manifests.txt" <<'PY'
import os, re, sys
from collections import Counter
tree, cc, report = sys.argv[1], sys.argv[2], sys.argv[3]
LINK_VMLINUX_OBJS = [".tmp_vmlinux.kallsyms1.o", ".tmp_vmlinux.kallsyms2.o"]

cmdfiles, klpfiles = [], set()
for d, dirs, files in os.walk(tree):
    in_tools = os.path.relpath(d, tree).split(os.sep)[0] == "tools"   # host tools (objtool)
    for f in files:
        rel = os.path.relpath(os.path.join(d, f), tree)
        if f.startswith(".") and f.endswith(".o.cmd") and not in_tools:
            cmdfiles.append(rel)
        if f.endswith(".klp"):
            klpfiles.add(rel)

objs = {}                      # target -> kind
other = Counter()
for rel in sorted(cmdfiles):
    with open(os.path.join(tree, rel), errors="replace") as fh:
        line = fh.readline().rstrip("\n")
    m = re.match(r"(?:saved)?cmd_(\S+) := (.*)$", line)
    if not m:
        other["unparsable .cmd"] += 1
        continue
    target, cmd = m.group(1), m.group(2)
    first = cmd.split(" ; ")[0]
    if first.startswith(cc + " ") and " -c " in first + " ":
        if not target.endswith(".o"):
            other["klp-cc -c to a non-.o target"] += 1
            continue
        src = first.split()[-1]
        objs[target] = "asm" if src.endswith((".S", ".s")) else "c"
    else:
        other[" ".join(first.split()[:1]) or "(empty)"] += 1
for o in LINK_VMLINUX_OBJS:
    if os.path.exists(os.path.join(tree, o)):
        objs[o] = "link-vmlinux.sh"

def manifest_of(obj):
    d, b = os.path.split(obj)
    return os.path.join(d, "." + b + ".klp")

expected = {manifest_of(o): o for o in objs}
ok, unavail, bad, missing, in_text = 0, [], [], [], []
nsyms = 0
for man, obj in sorted(expected.items()):
    path = os.path.join(tree, man)
    if not os.path.exists(path):
        missing.append(obj); continue
    with open(path, errors="replace") as fh:
        lines = fh.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    why = None
    if not lines or lines[0] != "klp-cc-manifest 6":
        why = "first line is not 'klp-cc-manifest 6'"
    elif not re.fullmatch(r"end \d+", lines[-1]):
        why = "incomplete: last line is not 'end N': %r" % lines[-1][:80]
    else:
        status = [l for l in lines if l.split(" ", 1)[0] == "status"]
        syms = [l for l in lines if l.split(" ", 1)[0] in ("func", "cold", "data")]
        objline = [l.split(" ", 1)[1] for l in lines if l.startswith("object ")]
        n = int(lines[-1].split()[1])
        if len(status) != 1:
            why = "%d status lines" % len(status)
        elif n != len(syms):
            why = "end %d but %d symbol lines" % (n, len(syms))
        elif objline and not (objline[0] == obj or objline[0].endswith("/" + obj)):
            why = "names object %r" % objline[0]
        elif status[0] == "status ok":
            ok += 1; nsyms += n
            # With -ffunction-sections gcc never puts a function in plain .text.
            if objs[obj] == "c" and any(l.split(" ")[0] == "func" and l.split(" ")[4:5] == [".text"]
                                        for l in syms):
                in_text.append(obj)
        elif status[0].startswith("status unavailable"):
            unavail.append((obj, status[0][len("status unavailable"):].strip()))
        else:
            why = "bad status line %r" % status[0]
    if why:
        bad.append((obj, why))
stray = sorted(klpfiles - set(expected))

kinds = Counter(objs.values())
with open(report, "w") as out:
    for man, obj in sorted(expected.items()):
        out.write("%s\t%s\n" % (obj, man))
print("  .o.cmd files scanned:            %d" % len(cmdfiles))
print("  objects compiled through klp-cc: %d (C %d, assembler %d, link-vmlinux.sh %d)"
      % (len(objs), kinds["c"], kinds["asm"], kinds["link-vmlinux.sh"]))
print("  other .o.cmd commands:           %s" % ", ".join("%s %d" % kv for kv in other.most_common()))
print("  manifests status ok:             %d (%d symbol lines)" % (ok, nsyms))
print("  manifests status unavailable:    %d" % len(unavail))
for reason, n in Counter(r for _, r in unavail).most_common():
    ex = [o for o, r in unavail if r == reason][:3]
    print("      %5d  %s   e.g. %s" % (n, reason, ", ".join(ex)))
print("  C objects with a function in plain .text (asm-defined, or sections had no effect): %d%s"
      % (len(in_text), ("  e.g. " + ", ".join(in_text[:6])) if in_text else ""))
print("  objects without a manifest:      %d" % len(missing))
for o in missing[:30]:
    print("      MISSING %s" % o)
print("  malformed/incomplete manifests:  %d" % len(bad))
for o, why in bad[:30]:
    print("      BAD %s: %s" % (o, why))
print("  .klp files that are not an object's manifest: %d" % len(stray))
for s in stray[:30]:
    print("      STRAY %s" % s)
print("COUNTS objects=%d ok=%d unavailable=%d missing=%d bad=%d stray=%d"
      % (len(objs), ok, len(unavail), len(missing), len(bad), len(stray)))
sys.exit(1 if (missing or bad or stray or not objs) else 0)
PY
    then
        note "(a) every compiled object has a complete manifest; no stray .klp files"
    else
        fail "(a) manifest check failed in $TREE_A (see above)"
    fi
    if [ -s "$LOGS/check-sections.klp-cc.log" ]; then
        klp_log "  klp-cc's decisions during the build (KLP_CC_LOG):"
        sed -E 's/^[^ ]+ \[[0-9]+\] //; s/^compile -> .*/compile (writes a manifest)/' \
            "$LOGS/check-sections.klp-cc.log" | sort | uniq -c | sort -rn | sed 's/^/    /' >&2
    fi
    # -ffunction-sections really took effect: one section per function.
    if readelf -SW "$TREE_A/fs/proc/cmdline.o" | grep -q ' \.text\.cmdline_proc_show '; then
        note "(a) sections on: fs/proc/cmdline.o has .text.cmdline_proc_show"
    else
        fail "(a) fs/proc/cmdline.o has no .text.cmdline_proc_show section: -ffunction-sections did not take effect"
    fi
fi

# (a, probes) Replay kbuild's feature probes (scripts/Makefile.compiler,
# scripts/Kconfig.include, scripts/cc-version.sh) through gcc and through
# klp-cc, each in a fresh empty folder: same exit status, stdout, and files
# left behind; no .klp file, also none in /dev (probes write to /dev/null).
klp_log "=== (a) feature probes: klp-cc must behave exactly like gcc, no manifest"
# shellcheck disable=SC2016  # $CC is expanded by the bash -c that runs each probe
PROBES=(
    'mkdir -p .tmp_1; $CC -Werror -O2 -fno-PIE -c -x c /dev/null -o .tmp_1/tmp'
    'mkdir -p .tmp_1; $CC -Werror -fno-such-option -c -x c /dev/null -o .tmp_1/tmp'
    'mkdir .tmp_2; $CC -Werror -fstack-protector-strong -c -x c /dev/null -o .tmp_2/tmp.o'
    'mkdir .tmp_2; $CC -Werror -mno-such-flag -c -x c /dev/null -o .tmp_2/tmp.o'
    'mkdir -p .tmp_3; printf "%b\n" "xsaveopt (%rax)" | $CC -Werror -D__ASSEMBLY__ -c -x assembler-with-cpp -o .tmp_3/tmp -'
    'printf "%b\n" "1: .byte 0x66\n" | $CC -c -x assembler-with-cpp -o /dev/null -'
    'mkdir -p .tmp_4; $CC -Werror -Wa,--fatal-warnings -c -x assembler-with-cpp /dev/null -o .tmp_4/tmp'
    '$CC -Werror -m64 -E -x c /dev/null -o /dev/null'
    '$CC -dM -E -x c /dev/null | sort'
    'printf "#if defined(__clang__)\nClang\n#elif defined(__GNUC__)\nGCC __GNUC__ __GNUC_MINOR__\n#endif\n" | $CC -E -P -x c -'
    '$CC --version'
    '$CC -print-file-name=include'
    'echo "int f(void){return 0;}" > t.c; $CC -O2 -S -o t.s t.c; cat t.s'
)
probe_bad=0
probe_root=$(mktemp -d)
devklp_before=$(find /dev -maxdepth 2 -name '*.klp' 2>/dev/null | sort)
i=0
for p in "${PROBES[@]}"; do
    i=$((i + 1))
    for who in gcc klp; do
        d=$probe_root/$i.$who; mkdir -p "$d"
        if [ $who = gcc ]; then cc=gcc; else cc=$KLPCC_CC; fi
        rc=0; (cd "$d" && CC=$cc bash -c "$p") >"$probe_root/$i.$who.out" 2>"$probe_root/$i.$who.err" || rc=$?
        echo "$rc" > "$probe_root/$i.$who.rc"
        (cd "$d" && find . -mindepth 1 | sort) > "$probe_root/$i.$who.files"
    done
    why=
    cmp -s "$probe_root/$i.gcc.rc" "$probe_root/$i.klp.rc" ||
        why+=" exit $(cat "$probe_root/$i.gcc.rc") vs $(cat "$probe_root/$i.klp.rc");"
    cmp -s "$probe_root/$i.gcc.out" "$probe_root/$i.klp.out" || why+=" stdout differs;"
    cmp -s "$probe_root/$i.gcc.files" "$probe_root/$i.klp.files" ||
        why+=" files differ: $(diff "$probe_root/$i.gcc.files" "$probe_root/$i.klp.files" | grep '^[<>]' | tr '\n' ' ');"
    for f in $(cat "$probe_root/$i.gcc.files"); do
        [ -f "$probe_root/$i.gcc/$f" ] || continue
        cmp -s "$probe_root/$i.gcc/$f" "$probe_root/$i.klp/$f" || why+=" $f differs;"
    done
    if [ -n "$why" ]; then
        fail "(a) probe $i differs from gcc:$why  probe: $p"; probe_bad=1
    fi
done
devklp_after=$(find /dev -maxdepth 2 -name '*.klp' 2>/dev/null | sort)
if [ "$devklp_before" != "$devklp_after" ]; then
    fail "(a) probes left manifests in /dev: $(comm -13 <(echo "$devklp_before") <(echo "$devklp_after") | tr '\n' ' ')"
    probe_bad=1
fi
rm -rf "$probe_root"
[ $probe_bad -ne 0 ] || note "(a) ${#PROBES[@]} feature probes: same exit status, output and files as gcc; no manifest"
T_A=$(( $(date +%s) - t0 ))

# ---------------------------------------------------------------- (b)
klp_log "=== (b) byte identity: make CC=gcc vs make CC=\"$KLPCC_CC\" with KLP_CC_SECTIONS=0"
t0=$(date +%s)
# Both builds start from a fresh copy of the source at the same path
# ($TREE_B), so embedded paths are equal; the plain build's outputs are
# stashed (same relative paths) before the tree is replaced.
COMPARE=(--include='*/' --include='*.o' --include='*.ko' --include=vmlinux
         --include=bzImage --include=.config --exclude='*')
build_b=ok
if cached "$STASH" "$KEY_PLAIN"; then
    klp_log "reusing the stashed plain build $STASH (same key $KEY_PLAIN)"
elif build_tree "$TREE_B" "$KEY_PLAIN" check-plain CC=gcc; then
    rm -rf "$STASH"; mkdir -p "$STASH"
    rsync -a --prune-empty-dirs "${COMPARE[@]}" "$TREE_B/" "$STASH/"
    echo "$KEY_PLAIN" > "$STASH/.klp-check-key"
    rm -f "$TREE_B/.klp-check-key"
else
    build_b=failed; fail "(b) plain gcc build failed (log $LOGS/check-plain.log)"
fi
if [ "$build_b" = ok ]; then
    if cached "$TREE_B" "$KEY_B"; then
        klp_log "reusing $TREE_B (same key $KEY_B)"
    else
        export KLP_CC_SECTIONS=0
        if ! build_tree "$TREE_B" "$KEY_B" check-nosections "CC=$KLPCC_CC"; then
            build_b=failed
            fail "(b) build with CC=\"$KLPCC_CC\" KLP_CC_SECTIONS=0 failed (log $LOGS/check-nosections.log)"
        fi
        unset KLP_CC_SECTIONS
    fi
fi
if [ "$build_b" = ok ]; then
    lst() { (cd "$1" && find . -path ./.git -prune -o -type f \( -name '*.o' -o -name '*.ko' \
              -o -name vmlinux -o -name bzImage -o -name .config \) -printf '%P\n' | sort); }
    lst "$STASH" > "$LOGS/cmp.plain.list"; lst "$TREE_B" > "$LOGS/cmp.klp.list"
    only=$(comm -3 "$LOGS/cmp.plain.list" "$LOGS/cmp.klp.list")
    [ -z "$only" ] || fail "(b) the two builds produced different file sets: $(echo "$only" | head -20 | tr '\n' ' ')"
    differ=() allowed=() same=0
    while read -r f; do
        if cmp -s "$STASH/$f" "$TREE_B/$f"; then same=$((same + 1)); continue; fi
        is_allowed=0
        for a in "${ALLOW_DIFF[@]}"; do [ "$f" = "$a" ] && is_allowed=1; done
        if [ $is_allowed = 1 ]; then allowed+=("$f"); else differ+=("$f"); fi
    done < <(comm -12 "$LOGS/cmp.plain.list" "$LOGS/cmp.klp.list")
    klp_log "  compared $((same + ${#differ[@]} + ${#allowed[@]})) files: $same identical," \
            "${#allowed[@]} differ as allowed (${allowed[*]:-none}), ${#differ[@]} differ unexpectedly"
    for f in "${differ[@]}"; do klp_err "  DIFFERS: $f"; done
    if [ ${#differ[@]} -eq 0 ] && [ -z "$only" ]; then
        note "(b) $same files byte-identical (.o, .ko, vmlinux, bzImage, .config); allow-listed differences: ${#allowed[@]}"
    else
        fail "(b) ${#differ[@]} files differ between CC=gcc and KLP_CC_SECTIONS=0: ${differ[*]:0:20}"
    fi
fi
# Kconfig's probes through klp-cc with sections on must find what gcc finds.
if [ "$build_a" = ok ] && [ -f "$STASH/.config" ]; then
    if cmp -s "$TREE_A/.config" "$STASH/.config"; then
        note "(a) .config after the CC=klp-cc build (sections on) is identical to CC=gcc's"
    else
        fail "(a) .config differs between CC=\"$KLPCC_CC\" and CC=gcc: $(diff "$STASH/.config" "$TREE_A/.config" | grep '^[<>]' | head -10 | tr '\n' ' ')"
    fi
fi
T_B=$(( $(date +%s) - t0 ))

# ---------------------------------------------------------------- (c)
t0=$(date +%s)
if [ "$build_b" = ok ]; then
    klp_log "=== (c) boot the KLP_CC_SECTIONS=0 bzImage under qemu"
    release=$(cat "$TREE_B/include/config/kernel.release")
    if klp_boot "$TREE_B/arch/x86/boot/bzImage" - \
            'echo "uname-r: $(uname -r)"; echo "uname-v: $(uname -v)"' &&
       grep -qxF "uname-r: $release" "$KLP_BOOT_OUTPUT" &&
       grep -qF "uname-v: #$KBUILD_BUILD_VERSION SMP $KBUILD_BUILD_TIMESTAMP" "$KLP_BOOT_OUTPUT"; then
        note "(c) booted under qemu in ${KLP_BOOT_SECS} s: $(grep -a '^uname-' "$KLP_BOOT_OUTPUT" | tr '\n' ' ')"
    else
        fail "(c) boot check failed (log $KLP_BOOT_LOG_FILE; guest said: $(tr '\n' ' ' < "${KLP_BOOT_OUTPUT:-/dev/null}"))"
    fi
fi
T_C=$(( $(date +%s) - t0 ))

# ---------------------------------------------------------------- summary
echo
echo "kbuild-check summary (klp-cc $KLP_CC_ORIG, sha256 $KLP_CC_SHA...)"
for s in "${SUMMARY[@]}"; do echo "  ok    $s"; done
for s in "${WARNINGS[@]}"; do echo "  warn  $s"; done
for s in "${FAILS[@]}"; do echo "  FAIL  $s"; done
echo "  time: (a) ${T_A} s, (b) ${T_B} s, (c) ${T_C} s, total $(( $(date +%s) - T_START )) s; logs in $LOGS"
if [ ${#FAILS[@]} -ne 0 ]; then
    echo "kbuild-check: FAILED (${#FAILS[@]} problem(s))"
    exit 1
fi
echo "kbuild-check: PASS"
