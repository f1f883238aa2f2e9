#!/bin/bash
# bench/compile-overhead.sh - what klp-cc adds to each kernel compile.
#
# Takes a kernel tree that was built with CC="klp-cc gcc" (by default the one
# tests/kernel/kbuild-check.sh leaves in $KLP_KERNEL_CACHE/check/sections),
# reads each object's recorded compile command from kbuild's .<name>.o.cmd
# files, and re-runs it two ways, alternating which goes first:
#   bare:   gcc <same args> -ffunction-sections -fdata-sections
#   klp-cc: klp-cc gcc <same args>        (adds the two flags itself, then
#                                          writes the manifest)
# Runs from the tree's root (kbuild commands use relative paths).  The object
# (-o) and the dependency file (-Wp,-MMD,...) go to a temp folder, so the
# tree's real objects, .d and .cmd files are never touched; the objtool step
# kbuild chains after the compile (" ; ./tools/objtool/objtool ...") is not run.
#
# Reports total compile time both ways, the added time as % of the bare total,
# the median and p90 of the added ms per object, and the peak RSS
# (/usr/bin/time -f %M) of `klp-cc --manifest` on the largest object (and on
# the largest object compiled from C).  Each figure is given for wall-clock
# time and for CPU time (user+sys of the command and all it waited for: gcc,
# cc1, as, and the klp-cc shim).  CPU time is far less disturbed by other load
# on the machine; on an idle machine the two agree.
# Targets: added total <= 2 %, median added <= 5 ms per object.
#
# Usage: bench/compile-overhead.sh [--kernel V] [-n N|all] [-r R] [-k KLP_CC] [TREE]
#   --kernel V  the default TREE is kbuild-check.sh --kernel V's (6.1, the
#           default or $KLP_KERNEL; 6.12; 7.3: tests/kernel/kernels.sh)
#   -n N    objects to time (default 200), chosen evenly over the sorted
#           list of objects (deterministic); "all" for every object
#   -r R    run each object R times each way (alternating) and keep each
#           way's minimum (default 1)
#   -k      klp-cc binary (default: the one recorded in the tree's .cmd files)
# env: KLP_KERNEL_CACHE (default /var/tmp/klp-cc-kernel), BENCH_STRICT=1: exit 1
#      when a target is missed.
# Time: about 0.5 s of serial compile per object and mode, so ~3.5 min for
# 200 objects and ~17 min for all ~1050 on this lab's VM.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tests/kernel/lib.sh
. "$ROOT/tests/kernel/lib.sh"
# shellcheck source=tests/kernel/kernels.sh
. "$ROOT/tests/kernel/kernels.sh"
KLP_LOG_TAG=compile-overhead
klp_kernel_args "$@" || exit 2
set -- "${KLP_ARGS[@]}"
klp_kernel_select || exit 2

N=200 REPEAT=1 KLP_CC_OVERRIDE=
while getopts n:r:k:h opt; do
    case $opt in
        n) N=$OPTARG ;;
        r) REPEAT=$OPTARG ;;
        k) KLP_CC_OVERRIDE=$(readlink -f "$OPTARG") ;;
        *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
TREE=${1:-$KLP_KERNEL_CACHE/check/sections}
[ -f "$TREE/Makefile" ] && [ -f "$TREE/vmlinux.o" ] ||
    { echo "compile-overhead: $TREE is not a built kernel tree (run tests/kernel/kbuild-check.sh first)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "compile-overhead: needs GNU time (/usr/bin/time)" >&2; exit 2; }
TREE=$(cd "$TREE" && pwd)
OUT=$(mktemp -d "${TMPDIR:-/tmp}/klp-bench.XXXXXX")
trap 'rm -rf "$OUT"' EXIT

rc=0
python3 - "$TREE" "$N" "$OUT" "$KLP_CC_OVERRIDE" "${BENCH_STRICT:-0}" "$REPEAT" <<'PY'
import os, re, resource, shlex, shutil, subprocess, sys, time, statistics

tree, n_arg, out, klp_override, strict, repeat = sys.argv[1:7]
repeat = int(repeat)
SECTIONS = ["-ffunction-sections", "-fdata-sections"]

# ---- every object compiled through klp-cc, from kbuild's .cmd files
def unescape(cmd):
    # kbuild's make-cmd escaping in .cmd files: '$' -> '$$', '#' -> '$(pound)'
    return cmd.replace("$(pound)", "#").replace("$$", "$")

jobs = []
for d, dirs, files in os.walk(tree):
    if d == tree:
        dirs[:] = [x for x in dirs if x not in ("tools", ".git")]
    for f in files:
        if not (f.startswith(".") and f.endswith(".o.cmd")):
            continue
        with open(os.path.join(d, f), errors="replace") as fh:
            line = fh.readline().rstrip("\n")
        m = re.match(r"(?:saved)?cmd_(\S+) := (.*)$", line)
        if not m:
            continue
        target = m.group(1)
        argv = shlex.split(unescape(m.group(2)))
        if ";" in argv:                      # drop the chained objtool / ld -r
            argv = argv[:argv.index(";")]
        if len(argv) < 3 or os.path.basename(argv[0]) != "klp-cc" or "-c" not in argv:
            continue
        jobs.append((target, argv))
jobs.sort()
if not jobs:
    sys.exit("compile-overhead: no objects compiled through klp-cc in %s" % tree)
klp_cc = klp_override or jobs[0][1][0]
if not (os.path.isfile(klp_cc) and os.access(klp_cc, os.X_OK)):
    sys.exit("compile-overhead: klp-cc %s is not executable (use -k)" % klp_cc)

n = len(jobs) if n_arg == "all" else min(int(n_arg), len(jobs))
picked = [jobs[(i * len(jobs)) // n] for i in range(n)]

def redirect(target, args, mode):
    """args with -o and -Wp,-MMD,<dep> pointing into OUT/<mode>/."""
    flat = target.replace("/", "__")
    res, i = [], 0
    while i < len(args):
        a = args[i]
        if a == "-o":
            res += ["-o", os.path.join(out, mode, flat)]; i += 2; continue
        if a.startswith(("-Wp,-MMD,", "-Wp,-MD,")):
            res.append(a.split(",", 2)[0] + "," + a.split(",", 2)[1] + "," +
                       os.path.join(out, mode, "." + flat + ".d"))
        elif a.startswith(("-MF", "-MD", "-MMD", "-MT", "-MQ")):
            raise SystemExit("compile-overhead: unexpected dep option %s in %s" % (a, target))
        else:
            res.append(a)
        i += 1
    return res

for mode in ("bare", "klp"):
    os.makedirs(os.path.join(out, mode), exist_ok=True)

env = {k: v for k, v in os.environ.items()     # klp-cc's defaults: sections on,
       if not k.startswith("KLP_CC_")}          # no log, not nested (KLP_CC_ACTIVE)

def run(argv):
    """Wall ms and CPU ms (user+sys of the command and everything it waited
    for: gcc, cc1, as, and for klp-cc the shim itself)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter_ns()
    p = subprocess.run(argv, cwd=tree, env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t1 = time.perf_counter_ns()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) * 1000
    return (t1 - t0) / 1e6, cpu, p.returncode, p.stderr.decode(errors="replace")

def commands(target, argv):
    compiler, args = argv[1], argv[2:]
    bare = [compiler] + redirect(target, args, "bare") + SECTIONS
    klp = [klp_cc, compiler] + redirect(target, args, "klp")
    return bare, klp

# warm-up (page cache, gcc binaries): the first picked object, both ways, untimed
for argv in commands(*picked[0]):
    run(argv)

rows, failed, no_manifest = [], [], []
for i, (target, argv) in enumerate(picked):
    bare, klp = commands(target, argv)
    order = [("bare", bare), ("klp", klp)] if i % 2 == 0 else [("klp", klp), ("bare", bare)]
    best = {}          # mode -> (wall, cpu): the minimum over the repeats
    for rep in range(repeat):
        for mode, cmd in (order if rep % 2 == 0 else order[::-1]):
            wall, cpu, rc, err = run(cmd)
            if rc != 0:
                failed.append((target, mode, rc, err.strip().splitlines()[-1:] or [""]))
            w0, c0 = best.get(mode, (wall, cpu))
            best[mode] = (min(w0, wall), min(c0, cpu))
    flat = target.replace("/", "__")
    if not os.path.exists(os.path.join(out, "klp", "." + flat + ".klp")):
        no_manifest.append(target)
    # klp-cc's own work alone, without the compile's noise: `klp-cc --manifest`
    # on the object it just made (what a compile adds, less one exec).
    mbest = None
    for rep in range(repeat):
        w, c, rc, err = run([klp_cc, "--manifest", os.path.join(out, "klp", flat)])
        if rc == 0:
            mbest = (w, c) if mbest is None else (min(mbest[0], w), min(mbest[1], c))
    if not any(f[0] == target for f in failed):
        rows.append((target,) + best["bare"] + best["klp"] + (mbest or (float("nan"),) * 2))
    for mode in ("bare", "klp"):
        for name in (flat, "." + flat + ".d", "." + flat + ".klp"):
            try: os.unlink(os.path.join(out, mode, name))
            except FileNotFoundError: pass
    if (i + 1) % 50 == 0:
        print("  ... %d/%d objects" % (i + 1, n), file=sys.stderr, flush=True)

if not rows:
    sys.exit("compile-overhead: every compile failed: %s" % failed[:3])
def pct(xs, p):                                   # nearest rank
    xs = sorted(xs)
    return xs[max(0, min(len(xs) - 1, -(-len(xs) * p // 100) - 1))]
def summary(ib, ik):
    """Figures for one clock: columns ib (bare) and ik (klp-cc) of rows."""
    bt = sum(r[ib] for r in rows) / 1000
    kt = sum(r[ik] for r in rows) / 1000
    added = [r[ik] - r[ib] for r in rows]
    return dict(bare=bt, klp=kt, added=kt - bt, pct=100 * (kt - bt) / bt,
                med_bare=statistics.median(r[ib] for r in rows),
                med_klp=statistics.median(r[ik] for r in rows),
                med=statistics.median(added), p90=pct(added, 90),
                lo=min(added), hi=max(added))
wall, cpu = summary(1, 3), summary(2, 4)
man_rows = [r for r in rows if r[5] == r[5]]          # not NaN
def man_summary(i, ib):
    xs = [r[i] for r in man_rows]
    return dict(tot=sum(xs) / 1000, pct=100 * sum(xs) / sum(r[ib] for r in man_rows),
                med=statistics.median(xs), p90=pct(xs, 90), hi=max(xs))

# ---- peak RSS of klp-cc --manifest on the largest compiled object in the tree
# (and on the largest object compiled from C, in case the largest is a blob).
def measure_rss(obj):
    """Run klp-cc --manifest on a copy in OUT: it may write .X.o.klp beside X.o,
    and the tree's own manifest must stay as the build left it."""
    mdir = os.path.join(out, "rss", obj.replace("/", "__"))
    os.makedirs(mdir)
    base = os.path.basename(obj)
    shutil.copyfile(os.path.join(tree, obj), os.path.join(mdir, base))
    tfile = os.path.join(mdir, "time.txt")
    p = subprocess.run(["/usr/bin/time", "-o", tfile, "-f", "%M %e", klp_cc, "--manifest", base],
                       cwd=mdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rss_kb, secs = open(tfile).read().split()[-2:]
    man = p.stdout.decode(errors="replace").splitlines()
    side = os.path.join(mdir, "." + base + ".klp")
    if not man and os.path.exists(side):          # written beside the object
        man = open(side, errors="replace").read().splitlines()
    ok = p.returncode == 0 and man and man[0].startswith("klp-cc-manifest") and man[-1].startswith("end ")
    err = "" if ok else "  (FAILED: exit %d, %s)" % (p.returncode, p.stderr.decode(errors="replace").strip()[-200:])
    return int(rss_kb), secs, ok, err

sized = sorted(((os.path.getsize(os.path.join(tree, t)), t, argv) for t, argv in jobs
                if os.path.exists(os.path.join(tree, t))), reverse=True)
rss_objs = [sized[0][:2]]
c_objs = [x for x in sized if x[2][-1].endswith(".c")]
if c_objs and c_objs[0][1] != sized[0][1]:
    rss_objs.append(c_objs[0][:2])
rss = [(size, obj) + measure_rss(obj) for size, obj in rss_objs]
man_ok = all(r[4] for r in rss)

def verdict(ok):
    return "ok" if ok else "MISSED"
print()
print("compile-overhead: %d of %d objects (%s), min of %d run(s) each, tree %s" %
      (len(rows), len(jobs), "all" if n == len(jobs) else "every %.1fth by path" % (len(jobs) / n),
       repeat, tree))
print("  klp-cc: %s" % klp_cc)
print("  load average at the end: %.2f %.2f %.2f on %d CPUs" % (os.getloadavg() + (os.cpu_count(),)))
print()
print("  %-34s %11s %11s %11s" % ("", "gcc+ffs", "klp-cc gcc", "added"))
for name, f in (("wall", wall), ("CPU (user+sys)", cpu)):
    print("  %-34s %9.2f s %9.2f s %9.2f s  %+6.2f %%  target <= 2 %%: %s" %
          ("total compile time, " + name, f["bare"], f["klp"], f["added"], f["pct"], verdict(f["pct"] <= 2)))
    print("  %-34s %8.1f ms %8.1f ms %8.1f ms           target <= 5 ms: %s" %
          ("per object median, " + name, f["med_bare"], f["med_klp"], f["med"], verdict(f["med"] <= 5)))
    print("  %-34s %11s %11s %8.1f ms   (min %.1f, max %.1f)" %
          ("per object p90 added, " + name, "", "", f["p90"], f["lo"], f["hi"]))
if man_rows:
    print()
    print("  klp-cc --manifest alone on each object (the checksum step, no compile):")
    for name, i, ib in (("wall", 5, 1), ("CPU (user+sys)", 6, 2)):
        m = man_summary(i, ib)
        print("  %-34s total %.2f s = %.2f %% of gcc+ffs; median %.1f ms, p90 %.1f ms, max %.1f ms" %
              ("  " + name, m["tot"], m["pct"], m["med"], m["p90"], m["hi"]))
print()
for size, obj, kb, secs, ok, err in rss:
    print("  klp-cc --manifest %s (%s, %.1f MB): peak RSS %.1f MB, %s s%s" %
          (obj, "largest object" if obj == sized[0][1] else "largest C object",
           size / 1e6, kb / 1024, secs, err))
if failed:
    print("  %d compile(s) failed and were left out, e.g. %s" % (len(failed), failed[:3]))
if no_manifest:
    print("  %d klp-cc compile(s) wrote no manifest, e.g. %s" % (len(no_manifest), no_manifest[:5]))
bad = failed or no_manifest or not man_ok
missed = not (wall["pct"] <= 2 and wall["med"] <= 5)
sys.exit(1 if bad or (strict == "1" and missed) else 0)
PY
rc=$?
exit $rc
