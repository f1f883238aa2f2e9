//! klp-link end to end, on a small kbuild-like tree built through klp-cc
//! with kernel code-generation flags: snapshot the build, edit sources,
//! rebuild only what make would rebuild, and check that `klp-link diff`
//! reports exactly the functions that changed, under the right target, and
//! refuses (never panics) on what it cannot handle.
//!
//! The tree:
//!
//! ```text
//! .config
//! include/shared.h       a static inline used by kernel/core.c only, a macro used by none
//! kernel/core.c          body-change, new/removed-function subjects; static `tidy`
//! kernel/data.c          a global and a static initialised variable, a static const table
//! mm/alloc.c             another static `tidy`
//! mm/split.c             a function with a gcc `.cold` part, a `.part` clone
//! lib/strsum.c           linked from lib/lib.a
//! drivers/mymod_*.c      the module `my_mod`
//! kernel/built-in.a      thin archive of kernel/*.o, nested inside built-in.a
//! built-in.a             thin archive: kernel/built-in.a mm/alloc.o mm/split.o
//! modules.order        drivers/my-mod.ko: the module `my_mod`
//! drivers/my-mod.mod     its objects
//! vmlinux, drivers/my-mod.ko   `ld -r` of their objects, for the symbol tables
//! ```

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    find_program, foreign_object, klp_cc_command, mutate, run, run_klp_link, skip, unified_diff,
    Cc, CcKind, ObjectInfo, Rng, Run, TempDir,
};

const SHARED_H: &str = r#"#ifndef SHARED_H
#define SHARED_H

#define SHARED_LIMIT 100

extern void shared_log(const char *msg, int v);

static inline int shared_scale(int x)
{
	return x * 3 + 1;
}

#endif
"#;

const CORE_C: &str = r#"#include "shared.h"

static __attribute__((noinline)) int tidy(int x)
{
	shared_log("core: tidy", x);
	return x + 1;
}

int core_add(int a, int b)
{
	return a * 2 + b;
}

int core_scaled(int x)
{
	return shared_scale(x) - 4;
}

int core_entry(int x)
{
	return tidy(x) * 2;
}

int core_gone(int x)
{
	shared_log("core: gone", x);
	return x - 42;
}

int core_caller(int x)
{
	shared_log("core: caller", x);
	return x + 9;
}

__attribute__((section(".init.text"), cold)) int core_setup(void)
{
	shared_log("core: setup", 1);
	return 0;
}
"#;

const DATA_C: &str = r#"int data_counter = 5;
static int data_state = 7;
static const int data_table[4] = { 2, 3, 5, 7 };

int data_bump(void)
{
	return ++data_state;
}

int data_lookup(int i)
{
	return data_table[i & 3];
}

int data_read_counter(void)
{
	return data_counter;
}
"#;

const ALLOC_C: &str = r#"#include "shared.h"

static __attribute__((noinline)) int tidy(int x)
{
	shared_log("alloc: tidy", x);
	return x + 2;
}

int alloc_entry(int x)
{
	return tidy(x) + 3;
}
"#;

const SPLIT_C: &str = r#"extern void split_report(const char *msg, int v) __attribute__((cold));
extern int split_work(int);

int cold_parent(int x)
{
	if (__builtin_expect(x < 0, 0)) {
		split_report("cold_parent: negative", x);
		split_report("cold_parent: again", x * 2);
		return -1;
	}
	return split_work(x) * 3;
}

static int part_walk(const int *p, int n)
{
	int i, s = 0;

	if (__builtin_expect(n <= 0, 1))
		return 0;
	for (i = 0; i < n; i++) {
		s += split_work(p[i]);
		s ^= split_work(s + i);
		s += split_work(p[i] * 7);
	}
	return s + 11;
}

int part_user_a(const int *p, int n)
{
	return part_walk(p, n) + 1;
}

int part_user_b(const int *p, int n)
{
	return part_walk(p + 1, n - 1) * 2;
}
"#;

const STRSUM_C: &str = r#"int lib_strsum(const char *s)
{
	int n = 0;

	while (*s)
		n += *s++;
	return n;
}
"#;

const MYMOD_MAIN_C: &str = r#"#include "shared.h"

int mymod_init(void)
{
	shared_log("mymod: hello", 1);
	return 0;
}
"#;

const MYMOD_UTIL_C: &str = r#"int mymod_calc(int x)
{
	return x * 11 + 5;
}
"#;

/// Every source of the tree.
const SOURCES: &[(&str, &str)] = &[
    ("include/shared.h", SHARED_H),
    ("kernel/core.c", CORE_C),
    ("kernel/data.c", DATA_C),
    ("mm/alloc.c", ALLOC_C),
    ("mm/split.c", SPLIT_C),
    ("lib/strsum.c", STRSUM_C),
    ("drivers/mymod_main.c", MYMOD_MAIN_C),
    ("drivers/mymod_util.c", MYMOD_UTIL_C),
];

/// Every object, built from the `.c` of the same name.
pub(crate) const OBJECTS: &[&str] = &[
    "kernel/core.o",
    "kernel/data.o",
    "mm/alloc.o",
    "mm/split.o",
    "lib/strsum.o",
    "drivers/mymod_main.o",
    "drivers/mymod_util.o",
];

const MODULE_OBJECTS: &[&str] = &["drivers/mymod_main.o", "drivers/mymod_util.o"];

/// A kbuild-like tree in a scratch folder: `root/tree` is the tree,
/// `root/snap` its snapshot, `root/orig/<object>` the object as it was
/// before its last rebuild.
pub(crate) struct Fixture {
    pub(crate) root: TempDir,
    pub(crate) tree: PathBuf,
    cc: Cc,
    cflags: Vec<String>,
    /// Per object, the contents of the files its last compile read (from
    /// its dependency file), to rebuild what make would rebuild.
    inputs: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

impl Fixture {
    /// Builds the tree, or says why the test is skipped.
    pub(crate) fn new(test: &str) -> Option<Fixture> {
        let cc = Cc::find_or_skip(CcKind::Gcc, test)?;
        if find_program("ar").is_none() {
            skip(test, "no `ar` on PATH");
            return None;
        }
        let root = TempDir::new("link");
        let tree = root.mkdir("tree");
        let mut fx = Fixture {
            root,
            tree,
            cflags: cc.kernel_cflags(),
            cc,
            inputs: BTreeMap::new(),
        };
        fx.write(".config", "CONFIG_LIVEPATCH=y\nCONFIG_MODULES=y\n");
        for (path, text) in SOURCES {
            fx.write(path, text);
        }
        for obj in OBJECTS {
            fx.compile(obj);
        }
        fx.ar("kernel/built-in.a", &["kernel/core.o", "kernel/data.o"]);
        fx.archive_vmlinux(&["mm/alloc.o", "mm/split.o"]);
        fx.ar("lib/lib.a", &["lib/strsum.o"]);
        fx.write("modules.order", "drivers/my-mod.ko\n");
        fx.write(
            "drivers/my-mod.mod",
            &format!("{}\n", MODULE_OBJECTS.join(" ")),
        );
        if find_program("ld").is_some() {
            let vmlinux: Vec<&str> = OBJECTS
                .iter()
                .copied()
                .filter(|o| !MODULE_OBJECTS.contains(o))
                .collect();
            fx.ld_r("vmlinux", &vmlinux);
            fx.ld_r("drivers/my-mod.ko", MODULE_OBJECTS);
        }
        Some(fx)
    }

    /// The top-level `built-in.a`: the nested `kernel/built-in.a`, then
    /// `objects`.
    fn archive_vmlinux(&self, objects: &[&str]) {
        self.ar_nesting("built-in.a", &["kernel/built-in.a"], objects);
    }

    /// `ld -r -o out objects...`: a stand-in for a linked image, for its
    /// symbol table.
    fn ld_r(&self, out: &str, objects: &[&str]) {
        let mut cmd = Command::new("ld");
        cmd.current_dir(&self.tree)
            .args(["-r", "-o", out])
            .args(objects);
        run(cmd).assert_success();
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.tree.join(rel)
    }

    pub(crate) fn snap(&self) -> PathBuf {
        self.root.join("snap")
    }

    pub(crate) fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    pub(crate) fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("writing {rel}: {e}"));
    }

    /// Replaces the one occurrence of `from` in the file `rel` by `to`.
    #[track_caller]
    fn edit(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        assert_eq!(
            text.matches(from).count(),
            1,
            "`{from}` must occur once in {rel}:\n{text}"
        );
        self.write(rel, &text.replacen(from, to, 1));
    }

    /// The compile command of `obj` after the compiler name, as kbuild
    /// would give it: from the tree's top, with a `-Wp,-MMD` dependency file.
    pub(crate) fn compile_args(&self, obj: &str) -> Vec<String> {
        let mut args = self.cflags.clone();
        args.extend([
            "-Iinclude".to_string(),
            format!("-Wp,-MMD,{}", dep_file(obj)),
            "-c".into(),
            obj.replace(".o", ".c"),
            "-o".into(),
            obj.into(),
        ]);
        args
    }

    /// Compiles `obj` through klp-cc.
    fn compile(&mut self, obj: &str) {
        let mut cmd = klp_cc_command(&self.tree);
        cmd.arg(self.cc.program()).args(self.compile_args(obj));
        self.compile_with(obj, cmd);
    }

    /// Compiles `obj` with the bare compiler (and the section flags klp-cc
    /// would add), leaving whatever manifest was there.
    fn compile_plain(&mut self, obj: &str) {
        let mut cmd = Command::new(&self.cc.path);
        cmd.current_dir(&self.tree)
            .args(["-ffunction-sections", "-fdata-sections"])
            .args(self.compile_args(obj));
        self.compile_with(obj, cmd);
    }

    fn compile_with(&mut self, obj: &str, cmd: Command) {
        let before = std::fs::metadata(self.path(obj))
            .and_then(|m| m.modified())
            .ok();
        run(cmd).assert_success();
        // make and klp-link go by modification time: a rebuilt object must
        // look newer even on a file system with coarse timestamps.
        if let Some(before) = before {
            let file = std::fs::File::options()
                .write(true)
                .open(self.path(obj))
                .unwrap();
            if file.metadata().unwrap().modified().unwrap() <= before {
                file.set_modified(before + Duration::from_millis(10))
                    .unwrap();
            }
        }
        let deps = self.read(&dep_file(obj));
        let inputs = deps
            .split_whitespace()
            .skip(1) // "obj:"
            .filter(|w| *w != "\\")
            .map(|f| (f.to_owned(), std::fs::read(self.path(f)).unwrap()))
            .collect();
        self.inputs.insert(obj.to_owned(), inputs);
    }

    /// The files the last compile of `obj` read (its source and headers).
    pub(crate) fn inputs_of(&self, obj: &str) -> Vec<String> {
        self.inputs[obj].keys().cloned().collect()
    }

    /// The compiler's name, as the fixture's compile commands give it.
    pub(crate) fn compiler(&self) -> &'static str {
        self.cc.program()
    }

    /// The objects make would rebuild: those with an input (source or
    /// header) that changed since their last compile.
    fn out_of_date(&self) -> Vec<String> {
        self.inputs
            .iter()
            .filter(|(_, inputs)| {
                inputs
                    .iter()
                    .any(|(f, old)| std::fs::read(self.path(f)).ok().as_ref() != Some(old))
            })
            .map(|(o, _)| o.clone())
            .collect()
    }

    /// Keeps a copy of `obj` in `root/orig/`.
    fn save_orig(&self, obj: &str) {
        let to = self.root.join("orig").join(obj);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(self.path(obj), to).unwrap();
    }

    fn orig(&self, obj: &str) -> PathBuf {
        self.root.join("orig").join(obj)
    }

    /// Recompiles through klp-cc what make would; returns what it rebuilt.
    fn rebuild(&mut self) -> Vec<String> {
        let stale = self.out_of_date();
        for obj in &stale {
            self.save_orig(obj);
            self.compile(obj);
        }
        stale
    }

    /// Recompiles `obj` (unchanged or not) through klp-cc.
    fn force_rebuild(&mut self, obj: &str) {
        self.save_orig(obj);
        self.compile(obj);
    }

    /// `ar cDPrST archive members...`, as kbuild makes its archives.
    fn ar(&self, archive: &str, members: &[&str]) {
        let _ = std::fs::remove_file(self.path(archive));
        let mut cmd = Command::new("ar");
        cmd.current_dir(&self.tree)
            .arg("cDPrST")
            .arg(archive)
            .args(members);
        run(cmd).assert_success();
    }

    /// A thin archive holding the thin archives `nested` as members (GNU ar
    /// would flatten them, so they are added as placeholders and put back),
    /// then `objects`.
    fn ar_nesting(&self, archive: &str, nested: &[&str], objects: &[&str]) {
        let mut kept = Vec::new();
        for n in nested {
            let data = std::fs::read(self.path(n)).unwrap();
            std::fs::write(self.path(n), "placeholder\n").unwrap();
            kept.push((n, data));
        }
        let members: Vec<&str> = nested.iter().chain(objects).copied().collect();
        self.ar(archive, &members);
        for (n, data) in kept {
            std::fs::write(self.path(n), data).unwrap();
        }
    }

    /// `klp-link snapshot tree -o snap` (relative to the scratch folder, as
    /// a user would type it), which must succeed.
    #[track_caller]
    pub(crate) fn snapshot(&self) -> Run {
        let r = self.link(["snapshot", "tree", "-o", "snap"]);
        if r.output.status.code() != Some(0) {
            panic!("snapshot failed\n{}", r.describe());
        }
        r
    }

    pub(crate) fn link<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let r = run_klp_link(self.root.path(), args);
        assert_no_panic(&r);
        r
    }

    /// `klp-link diff snap [tree]`, as JSON and for people.
    fn diff_tree(&self, tree: Option<&Path>) -> Diff {
        let mut args = vec!["diff".into(), self.snap().into_os_string()];
        if let Some(t) = tree {
            args.push(t.as_os_str().to_owned());
        }
        let human = self.link(&args);
        args.push("--json".into());
        Diff::new(self.link(&args), human)
    }

    fn diff(&self) -> Diff {
        self.diff_tree(None)
    }

    /// `klp-link diff snap --patch PATCH`, with the patch written to the
    /// fixture's root.
    fn diff_with_patch(&self, patch: &str) -> Diff {
        let path = self.root.write("fix.patch", patch);
        let mut args: Vec<OsString> = vec!["diff".into(), self.snap().into_os_string()];
        args.extend(["--patch".into(), path.into_os_string()]);
        let human = self.link(&args);
        args.push("--json".into());
        Diff::new(self.link(&args), human)
    }

    /// `nm` of an object in the tree: its defined symbol names.
    fn nm(&self, obj: &str) -> Vec<String> {
        let mut cmd = Command::new("nm");
        cmd.current_dir(&self.tree).arg("--defined-only").arg(obj);
        let r = run(cmd).assert_success();
        r.stdout()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
            .collect()
    }
}

fn dep_file(obj: &str) -> String {
    match obj.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/.{name}.d"),
        None => format!(".{obj}.d"),
    }
}

#[track_caller]
fn assert_no_panic(r: &Run) {
    assert!(
        r.output.status.code() != Some(101)
            && !r.stderr().contains("panicked")
            && !r.stdout().contains("panicked"),
        "klp-link panicked\n{}",
        r.describe()
    );
}

/// The outcome of one `klp-link diff`: the JSON run and the same diff for
/// people, for failure messages.
struct Diff {
    run: Run,
    human: Run,
    json: Value,
}

impl Diff {
    #[track_caller]
    fn new(run: Run, human: Run) -> Diff {
        let json = if run.stdout().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&run.stdout())
                .unwrap_or_else(|e| panic!("diff --json printed no JSON ({e})\n{}", run.describe()))
        };
        let d = Diff { run, human, json };
        assert_eq!(
            d.code(),
            d.human.output.status.code(),
            "the report for people and the JSON one end differently\n{}",
            d.context()
        );
        d
    }

    fn code(&self) -> Option<i32> {
        self.run.output.status.code()
    }

    /// Everything a failure message needs.
    fn context(&self) -> String {
        format!(
            "--- report ---\n{}\n--- JSON ---\n{}",
            self.human.describe(),
            self.run.describe()
        )
    }

    fn strings(&self, key: &str) -> Vec<String> {
        self.json[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn notes(&self) -> Vec<String> {
        self.strings("notes")
    }

    fn errors(&self) -> Vec<String> {
        self.strings("errors")
    }

    /// One line per reported function:
    /// `<target> <changed|new|removed|line_only> <name> <object>`, plus ` (was
    /// <orig_name>)` and ` [init]` when they apply; in report order.
    fn entries(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in self.json["targets"].as_array().into_iter().flatten() {
            let target = t["name"].as_str().unwrap_or("?");
            for kind in ["changed", "new", "removed", "line_only"] {
                for e in t[kind].as_array().into_iter().flatten() {
                    let name = e["name"].as_str().unwrap_or("?");
                    let mut line = format!(
                        "{target} {kind} {name} {}",
                        e["object"].as_str().unwrap_or("?")
                    );
                    if e["orig_name"].as_str() != Some(name) {
                        line.push_str(&format!(" (was {})", e["orig_name"]));
                    }
                    if e["init"] == Value::Bool(true) {
                        line.push_str(" [init]");
                    }
                    out.push(line);
                }
            }
        }
        out
    }

    /// Asserts the exit status and exactly the functions reported, and
    /// that the top-level name lists agree with the per-target detail.
    #[track_caller]
    fn expect(&self, code: i32, entries: &[&str]) {
        assert_eq!(self.code(), Some(code), "exit status\n{}", self.context());
        assert_eq!(
            self.entries(),
            entries,
            "reported functions\n{}",
            self.context()
        );
        for kind in ["changed", "new", "removed", "line_only"] {
            let mut names: Vec<String> = self.json["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|t| t[kind].as_array().into_iter().flatten())
                .map(|e| e["name"].as_str().unwrap_or_default().to_owned())
                .collect();
            names.sort();
            names.dedup();
            assert_eq!(
                self.strings(kind),
                names,
                "top-level `{kind}`\n{}",
                self.context()
            );
        }
    }

    #[track_caller]
    fn expect_no_errors(&self) {
        assert!(self.errors().is_empty(), "errors\n{}", self.context());
    }

    #[track_caller]
    fn expect_no_notes(&self) {
        assert!(self.notes().is_empty(), "notes\n{}", self.context());
    }

    #[track_caller]
    fn expect_rebuilt(&self, n: u64) {
        assert_eq!(
            self.json["rebuilt"].as_u64(),
            Some(n),
            "objects rebuilt\n{}",
            self.context()
        );
    }
}

/// Builds the fixture and snapshots it; `None` when the test is skipped.
fn snapshotted(test: &str) -> Option<Fixture> {
    let fx = Fixture::new(test)?;
    fx.snapshot();
    Some(fx)
}

#[test]
fn snapshot_lists_every_object_of_every_target() {
    let Some(fx) = snapshotted("snapshot_lists_every_object_of_every_target") else {
        return;
    };
    // built-in.a really nests kernel/built-in.a (which GNU ar alone would flatten).
    let vmlinux_a = std::fs::read(fx.path("built-in.a")).unwrap();
    assert!(
        vmlinux_a.starts_with(b"!<thin>\n")
            && vmlinux_a.windows(18).any(|w| w == b"kernel/built-in.a/"),
        "{}",
        String::from_utf8_lossy(&vmlinux_a)
    );
    let targets = std::fs::read_to_string(fx.snap().join("targets")).unwrap();
    let mut lines: Vec<&str> = targets.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "my_mod drivers/mymod_main.o",
            "my_mod drivers/mymod_util.o",
            "vmlinux kernel/core.o",
            "vmlinux kernel/data.o",
            "vmlinux lib/strsum.o",
            "vmlinux mm/alloc.o",
            "vmlinux mm/split.o",
        ],
        "{targets}"
    );
    let objects = std::fs::read_to_string(fx.snap().join("objects")).unwrap();
    for obj in OBJECTS {
        assert!(
            objects.contains(&format!("object {obj} ")) && !objects.contains("recomputed"),
            "{obj} with its compile-time manifest:\n{objects}"
        );
    }
    // A second snapshot into the same folder needs --force.
    let again = fx.link([
        OsStr::new("snapshot"),
        fx.tree.as_os_str(),
        OsStr::new("-o"),
        fx.snap().as_os_str(),
    ]);
    assert!(
        again.output.status.code() == Some(1) && again.stderr().contains("--force"),
        "{}",
        again.describe()
    );
}

#[test]
fn snapshot_keeps_the_linked_symbol_tables() {
    let Some(fx) = snapshotted("snapshot_keeps_the_linked_symbol_tables") else {
        return;
    };
    if !fx.path("vmlinux").exists() {
        skip("snapshot_keeps_the_linked_symbol_tables", "no `ld` on PATH");
        return;
    }
    for (target, function) in [("vmlinux", "core_add"), ("my_mod", "mymod_calc")] {
        let path = fx.snap().join("symbols").join(format!("{target}.syms"));
        let listing: Vec<String> = std::fs::read_dir(fx.snap().join("symbols"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.path().display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; the snapshot has {listing:?}", path.display()));
        assert!(
            text.lines()
                .any(|l| l.starts_with("t global ") && l.ends_with(&format!(" {function}"))),
            "{function} in {}:\n{text}",
            path.display()
        );
    }
}

#[test]
fn no_change_reports_nothing() {
    let Some(mut fx) = snapshotted("no_change_reports_nothing") else {
        return;
    };
    let d = fx.diff();
    d.expect(3, &[]);
    d.expect_rebuilt(0);
    d.expect_no_errors();
    d.expect_no_notes();
    assert_eq!(d.json["objects"].as_u64(), Some(OBJECTS.len() as u64));
    assert!(
        d.human.stdout().contains("no function changed"),
        "{}",
        d.context()
    );

    // Rebuilt, but the same code.
    fx.force_rebuild("mm/alloc.o");
    fx.force_rebuild("drivers/mymod_util.o");
    let d = fx.diff();
    d.expect(3, &[]);
    d.expect_rebuilt(2);
    d.expect_no_errors();
    d.expect_no_notes();
}

#[test]
fn body_change_reports_that_function() {
    let Some(mut fx) = snapshotted("body_change_reports_that_function") else {
        return;
    };
    fx.edit(
        "kernel/core.c",
        "return a * 2 + b;",
        "return a * 2 + b + 1;",
    );
    assert_eq!(fx.rebuild(), ["kernel/core.o"]);
    let d = fx.diff();
    d.expect(0, &["vmlinux changed core_add kernel/core.o"]);
    d.expect_rebuilt(1);
    d.expect_no_errors();
    d.expect_no_notes();
    let human = d.human.stdout();
    assert!(
        human.lines().any(|l| l.contains("changed")
            && l.contains("core_add")
            && l.contains("kernel/core.o")),
        "{}",
        d.context()
    );
}

#[test]
fn new_function_and_its_caller() {
    let Some(mut fx) = snapshotted("new_function_and_its_caller") else {
        return;
    };
    fx.edit(
        "kernel/core.c",
        "int core_caller(int x)\n{\n\tshared_log(\"core: caller\", x);\n\treturn x + 9;",
        "__attribute__((noinline)) int core_fresh(int x)\n{\n\tshared_log(\"core: fresh\", x);\n\treturn x * 7;\n}\n\n\
         int core_caller(int x)\n{\n\tshared_log(\"core: caller\", x);\n\treturn core_fresh(x) + 9;",
    );
    assert_eq!(fx.rebuild(), ["kernel/core.o"]);
    let d = fx.diff();
    d.expect(
        0,
        &[
            "vmlinux changed core_caller kernel/core.o",
            "vmlinux new core_fresh kernel/core.o",
        ],
    );
    d.expect_no_errors();
}

#[test]
fn removed_function() {
    let Some(mut fx) = snapshotted("removed_function") else {
        return;
    };
    fx.edit(
        "kernel/core.c",
        "int core_gone(int x)\n{\n\tshared_log(\"core: gone\", x);\n\treturn x - 42;\n}\n",
        "",
    );
    assert_eq!(fx.rebuild(), ["kernel/core.o"]);
    let d = fx.diff();
    // Nothing to carry: a removed function stays in the running kernel.
    d.expect(3, &["vmlinux removed core_gone kernel/core.o"]);
    d.expect_no_errors();
}

#[test]
fn duplicate_static_names_report_the_right_object() {
    let Some(mut fx) = snapshotted("duplicate_static_names_report_the_right_object") else {
        return;
    };
    for obj in ["kernel/core.o", "mm/alloc.o"] {
        assert!(
            fx.nm(obj).contains(&"tidy".to_string()),
            "{obj}: {:?}",
            fx.nm(obj)
        );
    }
    fx.edit("mm/alloc.c", "return x + 2;", "return x + 6;");
    assert_eq!(fx.rebuild(), ["mm/alloc.o"]);
    let d = fx.diff();
    d.expect(0, &["vmlinux changed tidy mm/alloc.o"]);
    d.expect_no_errors();

    // And the other one, with both objects rebuilt.
    fx.edit("kernel/core.c", "return x + 1;", "return x + 3;");
    fx.force_rebuild("mm/alloc.o");
    assert_eq!(fx.rebuild(), ["kernel/core.o"]);
    let d = fx.diff();
    d.expect(
        0,
        &[
            "vmlinux changed tidy kernel/core.o",
            "vmlinux changed tidy mm/alloc.o",
        ],
    );
}

#[test]
fn header_change_rebuilds_many_reports_few() {
    let Some(mut fx) = snapshotted("header_change_rebuilds_many_reports_few") else {
        return;
    };
    fx.edit("include/shared.h", "return x * 3 + 1;", "return x * 5 + 1;");
    fx.edit(
        "include/shared.h",
        "#define SHARED_LIMIT 100",
        "#define SHARED_LIMIT 200",
    );
    assert_eq!(
        fx.rebuild(),
        ["drivers/mymod_main.o", "kernel/core.o", "mm/alloc.o"]
    );
    let d = fx.diff();
    d.expect(0, &["vmlinux changed core_scaled kernel/core.o"]);
    d.expect_rebuilt(3);
    d.expect_no_errors();
    d.expect_no_notes();
}

#[test]
fn header_macro_only_change_is_no_change() {
    let Some(mut fx) = snapshotted("header_macro_only_change_is_no_change") else {
        return;
    };
    fx.edit(
        "include/shared.h",
        "#define SHARED_LIMIT 100",
        "#define SHARED_LIMIT 300\n#define SHARED_EXTRA 1",
    );
    assert_eq!(fx.rebuild().len(), 3);
    let d = fx.diff();
    d.expect(3, &[]);
    d.expect_rebuilt(3);
    d.expect_no_errors();
}

#[test]
fn cold_path_change_reports_the_parent() {
    let Some(mut fx) = snapshotted("cold_path_change_reports_the_parent") else {
        return;
    };
    let syms = fx.nm("mm/split.o");
    assert!(
        syms.contains(&"cold_parent.cold".into()),
        "gcc made no .cold part: {syms:?}"
    );
    fx.edit("mm/split.c", "x * 2);", "x * 4);");
    assert_eq!(fx.rebuild(), ["mm/split.o"]);
    // The premise: only the cold part's bytes changed.
    let (before, after) = (
        ObjectInfo::read(&fx.orig("mm/split.o")),
        ObjectInfo::read(&fx.path("mm/split.o")),
    );
    assert_eq!(
        before.symbol_bytes("cold_parent"),
        after.symbol_bytes("cold_parent")
    );
    assert_ne!(
        before.symbol_bytes("cold_parent.cold"),
        after.symbol_bytes("cold_parent.cold")
    );
    let d = fx.diff();
    d.expect(0, &["vmlinux changed cold_parent mm/split.o"]);
    d.expect_no_errors();
}

#[test]
fn part_clone_change_reports_the_clone() {
    let Some(mut fx) = snapshotted("part_clone_change_reports_the_clone") else {
        return;
    };
    let syms = fx.nm("mm/split.o");
    assert!(
        syms.contains(&"part_walk.part.0".into()),
        "gcc made no .part clone: {syms:?}"
    );
    fx.edit("mm/split.c", "p[i] * 7", "p[i] * 9");
    assert_eq!(fx.rebuild(), ["mm/split.o"]);
    let syms = fx.nm("mm/split.o");
    assert!(syms.contains(&"part_walk.part.0".into()), "{syms:?}");
    let d = fx.diff();
    d.expect(0, &["vmlinux changed part_walk.part.0 mm/split.o"]);
    d.expect_no_errors();
}

#[test]
fn module_change_is_reported_under_the_module() {
    let Some(mut fx) = snapshotted("module_change_is_reported_under_the_module") else {
        return;
    };
    fx.edit("drivers/mymod_util.c", "x * 11 + 5", "x * 13 + 5");
    assert_eq!(fx.rebuild(), ["drivers/mymod_util.o"]);
    let d = fx.diff();
    d.expect(0, &["my_mod changed mymod_calc drivers/mymod_util.o"]);
    d.expect_no_errors();
    assert!(d.human.stdout().contains("my_mod:"), "{}", d.context());
}

/// An external module folder beside the tree, as `make -C tree M=ext`
/// leaves it: `ext_mod.o` compiled through klp-cc from absolute paths,
/// and kbuild's lists naming it by its absolute path.
fn external_module(fx: &Fixture, body: &str) -> PathBuf {
    let ext = fx.root.join("ext");
    std::fs::create_dir_all(&ext).unwrap();
    std::fs::write(
        ext.join("ext_mod.c"),
        format!("int ext_calc(int x)\n{{\n\t{body}\n}}\n"),
    )
    .unwrap();
    let mut cmd = klp_cc_command(&ext);
    cmd.arg(fx.cc.program())
        .args(&fx.cflags)
        .arg("-c")
        .arg(ext.join("ext_mod.c"))
        .arg("-o")
        .arg(ext.join("ext_mod.o"));
    run(cmd).assert_success();
    let abs = |name: &str| ext.join(name).display().to_string();
    std::fs::write(
        ext.join("modules.order"),
        format!("{}\n", abs("ext-mod.ko")),
    )
    .unwrap();
    std::fs::write(ext.join("ext-mod.mod"), format!("{}\n", abs("ext_mod.o"))).unwrap();
    ext
}

#[test]
fn external_module_change_is_reported_under_that_module() {
    let test = "external_module_change_is_reported_under_that_module";
    let Some(fx) = Fixture::new(test) else {
        return;
    };
    let ext = external_module(&fx, "return x * 7;");
    let object = ext.join("ext_mod.o");
    let original = std::fs::read(&object).unwrap();
    let r = fx.link([
        "snapshot",
        "tree",
        "-o",
        "snap",
        "--with-objects",
        "--external",
        "ext",
    ]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.describe());
    // The kept original sits in the snapshot, not over the object itself.
    assert_eq!(std::fs::read(&object).unwrap(), original);
    let kept = fx
        .snap()
        .join("objects.d/external")
        .join(object.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(&kept).unwrap(), original);

    assert_eq!(fx.diff().code(), Some(3), "nothing changed yet");
    external_module(&fx, "return x * 9;");
    let d = fx.diff();
    d.expect(
        0,
        &[&format!("ext_mod changed ext_calc {}", object.display())],
    );
    d.expect_no_errors();

    // The snapshot needs the folder it was taken with.
    std::fs::rename(&ext, fx.root.join("moved")).unwrap();
    let d = fx.link(["diff", "snap"]);
    assert_eq!(d.output.status.code(), Some(1), "{}", d.describe());
    assert!(
        d.stderr().contains(&ext.display().to_string()),
        "{}",
        d.describe()
    );
}

#[test]
fn external_folder_without_modules_is_refused() {
    let Some(fx) = Fixture::new("external_folder_without_modules_is_refused") else {
        return;
    };
    std::fs::create_dir_all(fx.root.join("empty")).unwrap();
    for dir in ["empty", "tree"] {
        let r = fx.link(["snapshot", "tree", "-o", "snap", "--external", dir]);
        assert_eq!(r.output.status.code(), Some(1), "{}", r.describe());
        assert!(r.stderr().contains("external module"), "{}", r.describe());
        assert!(!fx.snap().exists(), "no snapshot is written");
    }
}

#[track_caller]
fn expect_data_refused(d: &Diff, symbol: &str) {
    assert_eq!(d.code(), Some(1), "exit status\n{}", d.context());
    let errors = d.errors();
    assert!(
        errors.iter().any(|e| e.contains(&format!("`{symbol}`"))
            && e.contains("kernel/data.o")
            && e.contains("shadow")),
        "an error naming `{symbol}` with the shadow-variable hint\n{}",
        d.context()
    );
    assert!(d.human.stdout().contains("errors"), "{}", d.context());
}

#[test]
fn changed_global_initializer_is_refused() {
    let Some(mut fx) = snapshotted("changed_global_initializer_is_refused") else {
        return;
    };
    fx.edit(
        "kernel/data.c",
        "int data_counter = 5;",
        "int data_counter = 6;",
    );
    assert_eq!(fx.rebuild(), ["kernel/data.o"]);
    let d = fx.diff();
    expect_data_refused(&d, "data_counter");
    assert_eq!(d.entries(), Vec::<String>::new(), "{}", d.context());
}

/// `.discard.*` never reaches the kernel (static calls' `__ADDRESSABLE`
/// references live there): data in it is neither new nor changed.
#[test]
fn data_in_discarded_sections_is_ignored() {
    let Some(mut fx) = snapshotted("data_in_discarded_sections_is_ignored") else {
        return;
    };
    fx.edit(
        "kernel/data.c",
        "int data_counter = 5;",
        "int data_counter = 5;\nstatic const int __attribute__((used, section(\".discard.klp_test\"))) \
         data_marker = 2;",
    );
    assert_eq!(fx.rebuild(), ["kernel/data.o"]);
    let d = fx.diff();
    d.expect(3, &[]);
    d.expect_no_errors();
    d.expect_no_notes();
}

#[test]
fn changed_static_initializer_is_refused() {
    let Some(mut fx) = snapshotted("changed_static_initializer_is_refused") else {
        return;
    };
    fx.edit(
        "kernel/data.c",
        "static int data_state = 7;",
        "static int data_state = 9;",
    );
    assert_eq!(fx.rebuild(), ["kernel/data.o"]);
    let d = fx.diff();
    expect_data_refused(&d, "data_state");
    assert_eq!(d.entries(), Vec::<String>::new(), "{}", d.context());
}

#[test]
fn changed_const_table_changes_its_reader_with_a_note() {
    let Some(mut fx) = snapshotted("changed_const_table_changes_its_reader_with_a_note") else {
        return;
    };
    fx.edit("kernel/data.c", "{ 2, 3, 5, 7 }", "{ 2, 3, 5, 11 }");
    assert_eq!(fx.rebuild(), ["kernel/data.o"]);
    let d = fx.diff();
    d.expect(0, &["vmlinux changed data_lookup kernel/data.o"]);
    d.expect_no_errors();
    assert!(
        d.notes().iter().any(|n| n.contains("`data_table`")),
        "a note on data_table\n{}",
        d.context()
    );
}

#[test]
fn stale_manifest_is_not_trusted() {
    let Some(mut fx) = snapshotted("stale_manifest_is_not_trusted") else {
        return;
    };
    let manifest = fx.path("kernel/.core.o.klp");
    let old = std::fs::read(&manifest).unwrap();
    fx.edit(
        "kernel/core.c",
        "return a * 2 + b;",
        "return a * 2 + b + 1;",
    );
    fx.save_orig("kernel/core.o");
    fx.compile_plain("kernel/core.o");
    assert_eq!(
        std::fs::read(&manifest).unwrap(),
        old,
        "the old manifest stays"
    );
    let d = fx.diff();
    d.expect(0, &["vmlinux changed core_add kernel/core.o"]);
    d.expect_no_errors();
    assert!(
        d.notes().iter().any(|n| n.contains("kernel/core.o")
            && n.contains("stale")
            && n.contains("recomputed")),
        "a note that kernel/core.o's manifest was stale and recomputed\n{}",
        d.context()
    );
}

#[test]
fn manifest_missing_before_the_snapshot_is_recomputed() {
    let Some(mut fx) = Fixture::new("manifest_missing_before_the_snapshot_is_recomputed") else {
        return;
    };
    std::fs::remove_file(fx.path("kernel/.core.o.klp")).unwrap();
    let snap = fx.snapshot();
    assert!(
        snap.stderr().contains("kernel/core.o") && snap.stderr().contains("recomputed"),
        "the snapshot says it recomputed kernel/core.o\n{}",
        snap.describe()
    );
    let objects = std::fs::read_to_string(fx.snap().join("objects")).unwrap();
    assert!(
        objects.contains("object kernel/core.o ") && objects.contains(" recomputed no manifest"),
        "{objects}"
    );

    fx.edit(
        "kernel/core.c",
        "return a * 2 + b;",
        "return a * 2 + b + 1;",
    );
    assert_eq!(fx.rebuild(), ["kernel/core.o"]);
    let d = fx.diff();
    d.expect(0, &["vmlinux changed core_add kernel/core.o"]);
    d.expect_no_errors();
}

#[test]
fn manifest_missing_after_the_rebuild_is_recomputed() {
    let Some(mut fx) = snapshotted("manifest_missing_after_the_rebuild_is_recomputed") else {
        return;
    };
    fx.edit(
        "kernel/core.c",
        "return a * 2 + b;",
        "return a * 2 + b + 1;",
    );
    assert_eq!(fx.rebuild(), ["kernel/core.o"]);
    std::fs::remove_file(fx.path("kernel/.core.o.klp")).unwrap();
    let d = fx.diff();
    d.expect(0, &["vmlinux changed core_add kernel/core.o"]);
    d.expect_no_errors();
    assert!(
        d.notes().iter().any(|n| n.contains("kernel/core.o")
            && n.contains("no manifest")
            && n.contains("recomputed")),
        "a note that kernel/core.o had no manifest\n{}",
        d.context()
    );
}

#[test]
fn snapshot_of_another_tree_is_refused() {
    let Some(fx) = snapshotted("snapshot_of_another_tree_is_refused") else {
        return;
    };
    let other = fx.root.join("other");
    let mut cp = Command::new("cp");
    cp.arg("-a").arg(&fx.tree).arg(&other);
    run(cp).assert_success();
    let d = fx.diff_tree(Some(&other));
    assert_eq!(d.code(), Some(1), "{}", d.context());
    let err = d.run.stderr();
    assert!(
        err.contains("was taken of")
            && err.contains(&*fx.tree.canonicalize().unwrap().to_string_lossy())
            && err.contains(&*other.canonicalize().unwrap().to_string_lossy()),
        "{}",
        d.context()
    );
    // Its own tree, named explicitly, is fine.
    fx.diff_tree(Some(&fx.tree)).expect(3, &[]);
}

#[test]
fn init_function_change_is_refused() {
    let Some(mut fx) = snapshotted("init_function_change_is_refused") else {
        return;
    };
    fx.edit("kernel/core.c", "\"core: setup\", 1", "\"core: setup\", 2");
    assert_eq!(fx.rebuild(), ["kernel/core.o"]);
    let d = fx.diff();
    // Listed, marked, and refused: an __init function already ran.
    d.expect(1, &["vmlinux changed core_setup kernel/core.o [init]"]);
    assert!(d.human.stdout().contains("[init]"), "{}", d.context());
    let errors = d.errors();
    assert!(
        errors.len() == 1 && errors[0].contains("core_setup") && errors[0].contains("__init"),
        "{}",
        d.context()
    );
}

/// What kernel/core.c gains for the line-only test: 6.1-style
/// might_sleep() and WARN_ON() (`__bug_table`) sites, one in an __init
/// function.
const CORE_LINE_SITES: &str = r#"
extern void __might_sleep(const char *file, int line);
#define might_sleep() __might_sleep(__FILE__, __LINE__)
#define WARN_ON(cond) ({						\
	int __c = !!(cond);						\
	if (__builtin_expect(__c, 0))					\
		asm volatile("1: ud2\n\t"				\
			     ".pushsection __bug_table,\"aw\"\n"	\
			     "2: .long 1b - ., %c0 - .\n\t"		\
			     ".word %c1, %c2\n\t.org 2b + %c3\n\t"	\
			     ".popsection" : : "i" (__FILE__),		\
			     "i" (__LINE__), "i" (1 << 9 | 1), "i" (12));	\
	__builtin_expect(__c, 0); })

int core_sleeper(int x)
{
	might_sleep();
	return x + 5;
}

int core_warner(int x)
{
	if (WARN_ON(x > 1000))
		return 0;
	return x;
}

__attribute__((section(".init.text"), cold)) int core_early(int x)
{
	might_sleep();
	return WARN_ON(x == 3);
}
"#;

/// Builds kernel/core.c with `sites` appended and snapshots it, then adds
/// lines to core_add above them: core_add changed, the functions with line
/// sites line-only, no error.
fn shift_lines_above_sites(fx: &mut Fixture, sites: &str) -> Diff {
    fx.write("kernel/core.c", &format!("{CORE_C}{sites}"));
    assert_eq!(fx.rebuild(), ["kernel/core.o"]);
    fx.snapshot();
    fx.edit(
        "kernel/core.c",
        "\treturn a * 2 + b;\n",
        "\tint r = a * 2 + b;\n\n\t/* the fix */\n\treturn r + 1;\n",
    );
    assert_eq!(fx.rebuild(), ["kernel/core.o"]);
    let d = fx.diff();
    d.expect(
        0,
        &[
            "vmlinux changed core_add kernel/core.o",
            "vmlinux line_only core_early kernel/core.o [init]",
            "vmlinux line_only core_sleeper kernel/core.o",
            "vmlinux line_only core_warner kernel/core.o",
        ],
    );
    d.expect_no_errors();
    d
}

/// A fix that adds lines above functions whose code holds `__LINE__`
/// (applied as packaging does, without fix-lines): they are listed apart
/// as line-only, not as changed, and an __init one is no refusal.
#[test]
fn line_only_functions_are_listed_apart() {
    let Some(mut fx) = Fixture::new("line_only_functions_are_listed_apart") else {
        return;
    };
    let d = shift_lines_above_sites(&mut fx, CORE_LINE_SITES);
    let human = d.human.stdout();
    assert!(
        human.contains("line-only, ignored") && human.contains("call-site rule"),
        "{}",
        d.context()
    );
    assert!(
        d.json["line_only_rule"]
            .as_str()
            .is_some_and(|r| r.contains("call-site rule")),
        "{}",
        d.context()
    );

    // A real change beside a line shift is a change.
    fx.edit("kernel/core.c", "return x + 5;", "return x + 6;");
    assert_eq!(fx.rebuild(), ["kernel/core.o"]);
    fx.diff().expect(
        0,
        &[
            "vmlinux changed core_add kernel/core.o",
            "vmlinux changed core_sleeper kernel/core.o",
            "vmlinux line_only core_early kernel/core.o [init]",
            "vmlinux line_only core_warner kernel/core.o",
        ],
    );
}

/// With the patch given, a line-only difference must be the patch's own
/// move: the shift of [`line_only_functions_are_listed_apart`] is line-only
/// by the patch's line map, and a patch that moves none of those lines
/// (the same fix made in place) explains none of them: they are changes,
/// and the __init one a refusal.
#[test]
fn line_only_is_checked_against_the_patch_line_map() {
    let Some(mut fx) = Fixture::new("line_only_is_checked_against_the_patch_line_map") else {
        return;
    };
    fx.write("kernel/core.c", &format!("{CORE_C}{CORE_LINE_SITES}"));
    assert_eq!(fx.rebuild(), ["kernel/core.o"]);
    fx.snapshot();
    let before = fx.read("kernel/core.c");
    let (from, to) = (
        "\treturn a * 2 + b;\n",
        "\tint r = a * 2 + b;\n\n\t/* the fix */\n\treturn r + 1;\n",
    );
    fx.edit("kernel/core.c", from, to);
    assert_eq!(fx.rebuild(), ["kernel/core.o"]);
    let after = fx.read("kernel/core.c");

    let d = fx.diff_with_patch(&unified_diff("kernel/core.c", &before, &after));
    d.expect(
        0,
        &[
            "vmlinux changed core_add kernel/core.o",
            "vmlinux line_only core_early kernel/core.o [init]",
            "vmlinux line_only core_sleeper kernel/core.o",
            "vmlinux line_only core_warner kernel/core.o",
        ],
    );
    d.expect_no_errors();
    assert!(
        d.json["line_only_rule"]
            .as_str()
            .is_some_and(|r| r.contains("patch's line map")),
        "{}",
        d.context()
    );

    let in_place = before.replacen(from, "\treturn a * 2 + b + 1;\n", 1);
    let d = fx.diff_with_patch(&unified_diff("kernel/core.c", &before, &in_place));
    d.expect(
        1,
        &[
            "vmlinux changed core_add kernel/core.o",
            "vmlinux changed core_early kernel/core.o [init]",
            "vmlinux changed core_sleeper kernel/core.o",
            "vmlinux changed core_warner kernel/core.o",
        ],
    );
    let notes = d.strings("notes");
    for f in ["core_early", "core_sleeper", "core_warner"] {
        assert!(
            notes
                .iter()
                .any(|n| n.contains(&format!("`{f}`")) && n.contains("where the patch puts it")),
            "a note says why `{f}` counts as changed\n{}",
            d.context()
        );
    }
    assert!(
        d.errors().iter().any(|e| e.contains("core_early")),
        "{}",
        d.context()
    );
}

/// The same rule on the corpus's line-only pair with each compiler, through
/// `diff-objects --patch`: every site the fix moved is line-only, and an
/// explicit `__might_sleep("here", 100)` turned 101, which the call-site
/// rule cannot tell from a line, is a change the patch does not explain.
#[test]
fn diff_objects_checks_line_sites_against_the_patch() {
    for kind in [CcKind::Gcc, CcKind::Clang] {
        let Some(cc) = Cc::find_or_skip(kind, "diff_objects_checks_line_sites_against_the_patch")
        else {
            continue;
        };
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus/line_only");
        let dir = TempDir::new("line-map");
        let mut objects = Vec::new();
        let mut texts = Vec::new();
        for side in ["orig", "patched"] {
            let text = std::fs::read_to_string(corpus.join(format!("{side}.c"))).unwrap();
            dir.write(format!("{side}/kernel/lines.c"), &text);
            let mut cmd = Command::new(&cc.path);
            cmd.current_dir(dir.join(side))
                .args(cc.kernel_cflags())
                .args(["-c", "kernel/lines.c", "-o", "kernel/lines.o"]);
            run(cmd).assert_success();
            objects.push(dir.join(format!("{side}/kernel/lines.o")));
            texts.push(text);
        }
        let patch = dir.write(
            "fix.patch",
            unified_diff("kernel/lines.c", &texts[0], &texts[1]),
        );
        let diff = |with_patch: bool| {
            let mut args: Vec<OsString> = vec![
                "diff-objects".into(),
                objects[0].clone().into(),
                objects[1].clone().into(),
                "--json".into(),
            ];
            if with_patch {
                args.extend(["--patch".into(), patch.clone().into()]);
            }
            let r = run_klp_link(dir.path(), &args);
            assert_no_panic(&r);
            let json: Value = serde_json::from_str(&r.stdout())
                .unwrap_or_else(|e| panic!("{kind}: no JSON ({e})\n{}", r.describe()));
            (r, json)
        };
        let names = |json: &Value, key: &str| -> Vec<String> {
            json[key]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect()
        };
        let (r, json) = diff(true);
        assert_eq!(
            names(&json, "line_only"),
            [
                "checker",
                "journal_tail",
                "resched_loop",
                "setup_thing",
                "shutdowner",
                "sleeper",
                "warner"
            ],
            "{kind}\n{}",
            r.describe()
        );
        let changed = names(&json, "changed");
        for f in [
            "edited",
            "explicit_line",
            "journal",
            "reporter",
            "sleeps_and_changes",
        ] {
            assert!(
                changed.iter().any(|c| c == f),
                "{kind}: {f} changed\n{}",
                r.describe()
            );
        }
        assert!(
            json["line_only_rule"]
                .as_str()
                .is_some_and(|r| r.contains("patch's line map")),
            "{kind}\n{}",
            r.describe()
        );
        // Without the patch, the call-site rule takes 101 for a line.
        let (r, json) = diff(false);
        assert!(
            names(&json, "line_only")
                .iter()
                .any(|f| f == "explicit_line"),
            "{kind}\n{}",
            r.describe()
        );
    }
}

/// x86's `__bug_table` entry from 6.19 on (`HAVE_ARCH_BUG_FORMAT`): a
/// format string between the address and the file, 16 bytes; the code
/// also takes the entry's address, as 7.x's WARN does to pass it on.
const WARN_ON_WITH_FORMAT: &str = r#"#define WARN_ON(cond) ({			\
	int __c = !!(cond);						\
	if (__builtin_expect(__c, 0))					\
		asm volatile("lea 2f(%%rip), %%rax\n\t"		\
			     "1: ud2\n\t"				\
			     ".pushsection __bug_table,\"aw\"\n"	\
			     "2: .long 1b - ., %c4 - ., %c0 - .\n\t"	\
			     ".word %c1, %c2\n\t.org 2b + %c3\n\t"	\
			     ".popsection" : : "i" (__FILE__),		\
			     "i" (__LINE__), "i" (1 << 9 | 1), "i" (16),	\
			     "i" ("cond: %d") : "rax");			\
	__builtin_expect(__c, 0); })
"#;

/// The line of a 7.x `__bug_table` entry is a line too: the same shift as
/// in [`line_only_functions_are_listed_apart`] leaves its function
/// line-only.
#[test]
fn line_only_with_bug_entries_that_have_a_format() {
    let Some(mut fx) = Fixture::new("line_only_with_bug_entries_that_have_a_format") else {
        return;
    };
    let start = CORE_LINE_SITES.find("#define WARN_ON").unwrap();
    let end = start + CORE_LINE_SITES[start..].find("\nint ").unwrap() + 1;
    let sites = format!(
        "{}{WARN_ON_WITH_FORMAT}{}",
        &CORE_LINE_SITES[..start],
        &CORE_LINE_SITES[end..]
    );
    shift_lines_above_sites(&mut fx, &sites);
}

#[test]
fn new_object_in_vmlinux_is_all_new() {
    let Some(mut fx) = snapshotted("new_object_in_vmlinux_is_all_new") else {
        return;
    };
    fx.write(
        "mm/extra.c",
        "int extra_fn(int x)\n{\n\treturn x ^ 0x55;\n}\n",
    );
    fx.compile("mm/extra.o");
    fx.archive_vmlinux(&["mm/alloc.o", "mm/split.o", "mm/extra.o"]);
    let d = fx.diff();
    d.expect(0, &["vmlinux new extra_fn mm/extra.o"]);
    d.expect_no_errors();
}

#[test]
fn object_dropped_from_vmlinux_is_all_removed() {
    let Some(fx) = snapshotted("object_dropped_from_vmlinux_is_all_removed") else {
        return;
    };
    fx.archive_vmlinux(&["mm/split.o"]);
    let d = fx.diff();
    d.expect(
        3,
        &[
            "vmlinux removed alloc_entry mm/alloc.o",
            "vmlinux removed tidy mm/alloc.o",
        ],
    );
    d.expect_no_errors();
}

#[test]
fn changed_compile_flags_are_refused() {
    let Some(mut fx) = snapshotted("changed_compile_flags_are_refused") else {
        return;
    };
    // A flag that leaves the code as it was changes nothing.
    fx.cflags.push("-fno-inline-small-functions".into());
    fx.force_rebuild("mm/alloc.o");
    fx.diff().expect(3, &[]);
    // One that changes the code is refused, whatever changed.
    fx.cflags.push("-fno-omit-frame-pointer".into());
    fx.force_rebuild("mm/alloc.o");
    let d = fx.diff();
    assert_eq!(d.code(), Some(1), "{}", d.context());
    assert!(
        d.errors()
            .iter()
            .any(|e| e.contains("mm/alloc.o") && e.contains("different flags")),
        "{}",
        d.context()
    );
}

#[test]
fn rebuilt_object_without_checksums_is_refused() {
    let Some(fx) = snapshotted("rebuilt_object_without_checksums_is_refused") else {
        return;
    };
    // As if the rebuild made an object klp-link cannot checksum.
    std::fs::write(fx.path("mm/alloc.o"), foreign_object()).unwrap();
    std::fs::remove_file(fx.path("mm/.alloc.o.klp")).unwrap();
    let d = fx.diff();
    assert_eq!(d.code(), Some(1), "{}", d.context());
    assert!(
        d.errors()
            .iter()
            .any(|e| e.contains("mm/alloc.o") && e.contains("no checksums")),
        "{}",
        d.context()
    );
}

#[test]
fn corrupt_manifest_is_recomputed() {
    let Some(mut fx) = snapshotted("corrupt_manifest_is_recomputed") else {
        return;
    };
    fx.edit(
        "kernel/core.c",
        "return a * 2 + b;",
        "return a * 2 + b + 1;",
    );
    assert_eq!(fx.rebuild(), ["kernel/core.o"]);
    let manifest = fx.path("kernel/.core.o.klp");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, &text[..text.len() / 2]).unwrap();
    let d = fx.diff();
    d.expect(0, &["vmlinux changed core_add kernel/core.o"]);
    d.expect_no_errors();
    assert!(
        d.notes()
            .iter()
            .any(|n| n.contains("kernel/core.o") && n.contains("unreadable manifest")),
        "{}",
        d.context()
    );
}

/// Runs klp-link with `args` and asserts it fails with exit 1 and a message
/// on stderr containing every one of `needles`.
#[track_caller]
fn expect_failure(fx_root: &Path, args: &[&OsStr], needles: &[&str]) -> Run {
    let r = run_klp_link(fx_root, args);
    assert_no_panic(&r);
    assert_eq!(
        r.output.status.code(),
        Some(1),
        "exit status\n{}",
        r.describe()
    );
    let err = r.stderr();
    assert!(err.starts_with("klp-link: "), "{}", r.describe());
    for n in needles {
        assert!(
            err.contains(n),
            "stderr should mention `{n}`\n{}",
            r.describe()
        );
    }
    r
}

#[test]
fn not_a_built_tree_is_a_clear_error() {
    let Some(fx) = snapshotted("not_a_built_tree_is_a_clear_error") else {
        return;
    };
    let root = fx.root.path();
    let snap = fx.snap();
    let out = fx.root.join("snap2");
    let check = |dir: &Path, needles: &[&str]| {
        expect_failure(
            root,
            &[
                OsStr::new("snapshot"),
                dir.as_os_str(),
                OsStr::new("-o"),
                out.as_os_str(),
            ],
            needles,
        );
        assert!(!out.exists(), "a failed snapshot left {}", out.display());
        expect_failure(
            root,
            &[OsStr::new("diff"), snap.as_os_str(), dir.as_os_str()],
            needles,
        );
    };
    let empty = fx.root.mkdir("empty");
    check(&empty, &["empty", "no .config"]);
    check(&fx.root.join("nowhere"), &["nowhere", "No such file"]);
    let config_only = fx.root.mkdir("config-only");
    std::fs::write(config_only.join(".config"), "").unwrap();
    check(&config_only, &["config-only", "no built-in.a"]);
    // A built-in.a that is not an archive, or not a thin one.
    let garbage = fx.root.mkdir("garbage");
    std::fs::write(garbage.join(".config"), "").unwrap();
    std::fs::write(garbage.join("built-in.a"), "not an archive\n").unwrap();
    check(&garbage, &["built-in.a"]);
    let mut ar = Command::new("ar");
    ar.current_dir(&fx.tree)
        .arg("rcs")
        .arg(garbage.join("built-in.a"))
        .arg("mm/alloc.o");
    std::fs::remove_file(garbage.join("built-in.a")).unwrap();
    run(ar).assert_success();
    check(&garbage, &["built-in.a", "thin"]);
}

#[test]
fn unbuilt_objects_are_a_clear_error() {
    let Some(fx) = Fixture::new("unbuilt_objects_are_a_clear_error") else {
        return;
    };
    let root = fx.root.path();
    let out = fx.snap();
    let snapshot = [
        OsStr::new("snapshot"),
        fx.tree.as_os_str(),
        OsStr::new("-o"),
        out.as_os_str(),
    ];
    // A module whose .mod file is missing.
    std::fs::rename(fx.path("drivers/my-mod.mod"), fx.root.join("my-mod.mod")).unwrap();
    expect_failure(root, &snapshot, &["drivers/my-mod.mod"]);
    std::fs::rename(fx.root.join("my-mod.mod"), fx.path("drivers/my-mod.mod")).unwrap();
    // An object the archive lists is missing.
    std::fs::rename(fx.path("mm/alloc.o"), fx.root.join("alloc.o")).unwrap();
    expect_failure(root, &snapshot, &["mm/alloc.o"]);
    assert!(!out.exists());
    std::fs::rename(fx.root.join("alloc.o"), fx.path("mm/alloc.o")).unwrap();
    fx.snapshot();
    // ... or goes missing after the snapshot.
    std::fs::remove_file(fx.path("mm/alloc.o")).unwrap();
    let d = fx.diff();
    assert_eq!(d.code(), Some(1), "{}", d.context());
    assert!(
        d.errors().iter().any(|e| e.contains("mm/alloc.o")),
        "{}",
        d.context()
    );
}

#[test]
fn damaged_snapshot_is_a_clear_error() {
    let Some(fx) = snapshotted("damaged_snapshot_is_a_clear_error") else {
        return;
    };
    let root = fx.root.path();
    let snap = fx.snap();
    let diff = [OsStr::new("diff"), snap.as_os_str()];
    let objects_path = snap.join("objects");
    let objects = std::fs::read_to_string(&objects_path).unwrap();

    // Cut in the middle.
    std::fs::write(&objects_path, &objects[..objects.len() / 2]).unwrap();
    expect_failure(root, &diff, &["objects", "damaged"]);
    // Gone.
    std::fs::remove_file(&objects_path).unwrap();
    expect_failure(root, &diff, &["objects"]);
    std::fs::write(&objects_path, &objects).unwrap();

    // A garbage first line.
    let head_path = snap.join("snapshot");
    let head = std::fs::read_to_string(&head_path).unwrap();
    std::fs::write(
        &head_path,
        format!("garbage\n{}", head.split_once('\n').unwrap().1),
    )
    .unwrap();
    expect_failure(root, &diff, &["snapshot", "bad first line"]);
    std::fs::write(&head_path, &head).unwrap();

    // Not a snapshot at all.
    let empty = fx.root.mkdir("empty");
    expect_failure(root, &[OsStr::new("diff"), empty.as_os_str()], &["empty"]);

    // Intact again: no change.
    fx.diff().expect(3, &[]);
}

/// Rewrites the snapshot file `objects` as a klp-cc of the previous
/// manifest format would have written it.
pub(crate) fn as_if_written_by_an_older_klp_cc(objects: &Path) {
    use klp_cc::manifest::{MAGIC, VERSION};
    let text = std::fs::read_to_string(objects).unwrap();
    let current = format!("{MAGIC} {VERSION}\n");
    assert!(text.contains(&current), "{text}");
    let older = format!("{MAGIC} {}\n", VERSION - 1);
    std::fs::write(objects, text.replace(&current, &older)).unwrap();
}

/// A snapshot taken by a klp-cc whose checksum algorithm differs (an older
/// manifest format) is refused as a whole, saying to take it again: its
/// checksums compared with this klp-cc's would misreport functions.
#[test]
fn snapshot_of_older_manifests_is_refused() {
    let Some(fx) = snapshotted("snapshot_of_older_manifests_is_refused") else {
        return;
    };
    let root = fx.root.path();
    let snap = fx.snap();
    as_if_written_by_an_older_klp_cc(&snap.join("objects"));
    let diff = [OsStr::new("diff"), snap.as_os_str()];
    let older_version = format!("format version {}", klp_cc::manifest::VERSION - 1);
    expect_failure(
        root,
        &diff,
        &[&older_version, "klp-link snapshot", "original build"],
    );
    // Taken again from the original tree, it compares.
    let again = fx.link(["snapshot", "tree", "-o", "snap", "--force"]);
    assert_eq!(again.output.status.code(), Some(0), "{}", again.describe());
    fx.diff().expect(3, &[]);
}

/// A snapshot whose `objects` file lost whole objects (cut at an object's
/// end, or emptied) still parses; the objects its `targets` lists without a
/// manifest must make it damaged, not turn every function of theirs "new".
#[test]
fn snapshot_missing_whole_objects_is_damaged() {
    let Some(fx) = snapshotted("snapshot_missing_whole_objects_is_damaged") else {
        return;
    };
    let root = fx.root.path();
    let snap = fx.snap();
    let diff = [OsStr::new("diff"), snap.as_os_str()];
    let objects_path = snap.join("objects");
    let objects = std::fs::read_to_string(&objects_path).unwrap();
    // Cut right after one object's manifest: the others are gone too.
    let first_end = objects.find("\nend ").unwrap();
    let cut = first_end + 1 + objects[first_end + 1..].find('\n').unwrap() + 1;
    std::fs::write(&objects_path, &objects[..cut]).unwrap();
    expect_failure(root, &diff, &["objects"]);
    // Empty.
    std::fs::write(&objects_path, "").unwrap();
    expect_failure(root, &diff, &["objects"]);
}

/// A patch whose only effect on an object is to renumber its
/// `__UNIQUE_ID()` symbols (a `BUILD_BUG_ON` takes a `__COUNTER__` value and
/// emits no code) changes no function: kpatch's create-diff-object agrees.
#[test]
fn renumbered_unique_ids_are_no_change() {
    let Some(mut fx) = Fixture::new("renumbered_unique_ids_are_no_change") else {
        return;
    };
    fx.write(
        "kernel/core.c",
        include_str!("../fixtures/corpus/unique_id_renumber/orig.c"),
    );
    fx.force_rebuild("kernel/core.o");
    fx.edit(
        "kernel/core.c",
        "\tstate = v; return 0;",
        "\tstate = v; { extern void __PASTE(__compiletime_assert_, __COUNTER__)(void); } return 0;",
    );
    assert_eq!(fx.rebuild(), ["kernel/core.o"]);
    let (orig, patched) = (fx.orig("kernel/core.o"), fx.path("kernel/core.o"));
    let renumbered = "__UNIQUE_ID___addressable_store4";
    assert!(
        fx.nm("kernel/core.o").iter().any(|n| n == renumbered),
        "the patched object should define {renumbered}: {:?}",
        fx.nm("kernel/core.o")
    );

    let r = fx.link([
        OsStr::new("diff-objects"),
        orig.as_os_str(),
        patched.as_os_str(),
        OsStr::new("--json"),
    ]);
    assert_eq!(r.output.status.code(), Some(3), "{}", r.describe());
    let json: Value = serde_json::from_str(&r.stdout()).unwrap();
    for key in ["changed", "new", "removed", "errors", "notes"] {
        assert_eq!(json[key], serde_json::json!([]), "{key}\n{}", r.describe());
    }
}

#[test]
fn diff_objects_refuses_what_it_cannot_read() {
    let Some(mut fx) = Fixture::new("diff_objects_refuses_what_it_cannot_read") else {
        return;
    };
    let good = fx.path("kernel/core.o");
    fx.force_rebuild("kernel/core.o");
    let orig = fx.orig("kernel/core.o");
    let dir = fx.root.mkdir("bad");
    let real = std::fs::read(&good).unwrap();
    let cases: Vec<(PathBuf, &str)> = vec![
        (dir.join("text.o"), "not an object\n"),
        (dir.join("empty.o"), ""),
        (dir.join("arm64.o"), ""),
        (dir.join("truncated.o"), ""),
        (dir.join("missing.o"), ""),
        (dir.clone(), ""),
    ];
    std::fs::write(&cases[0].0, cases[0].1).unwrap();
    std::fs::write(&cases[1].0, "").unwrap();
    std::fs::write(&cases[2].0, foreign_object()).unwrap();
    std::fs::write(&cases[3].0, &real[..real.len() / 3]).unwrap();
    for (bad, _) in &cases {
        for (a, b) in [
            (bad.as_path(), good.as_path()),
            (good.as_path(), bad.as_path()),
        ] {
            for json in [false, true] {
                let mut args = vec![OsStr::new("diff-objects"), a.as_os_str(), b.as_os_str()];
                if json {
                    args.push(OsStr::new("--json"));
                }
                expect_failure(fx.root.path(), &args, &[&bad.display().to_string()]);
            }
        }
    }
    let arm = expect_failure(
        fx.root.path(),
        &[
            OsStr::new("diff-objects"),
            cases[2].0.as_os_str(),
            good.as_os_str(),
        ],
        &["arm64.o"],
    );
    assert!(arm.stderr().contains("architecture"), "{}", arm.describe());
    // And the good pair is fine.
    let r = fx.link([
        OsStr::new("diff-objects"),
        orig.as_os_str(),
        good.as_os_str(),
    ]);
    assert_eq!(r.output.status.code(), Some(3), "{}", r.describe());
}

#[test]
fn diff_objects_reports_and_explains_a_body_change() {
    let Some(mut fx) = Fixture::new("diff_objects_reports_and_explains_a_body_change") else {
        return;
    };
    fx.edit(
        "kernel/core.c",
        "return a * 2 + b;",
        "return a * 2 + b + 1;",
    );
    assert_eq!(fx.rebuild(), ["kernel/core.o"]);
    let (orig, patched) = (fx.orig("kernel/core.o"), fx.path("kernel/core.o"));
    let pair = [orig.as_os_str(), patched.as_os_str()];

    let r = fx.link(
        [
            &[OsStr::new("diff-objects")],
            &pair[..],
            &[OsStr::new("--json")],
        ]
        .concat(),
    );
    assert_eq!(r.output.status.code(), Some(0), "{}", r.describe());
    let json: Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(
        json["changed"],
        serde_json::json!(["core_add"]),
        "{}",
        r.describe()
    );
    assert_eq!(json["new"], serde_json::json!([]), "{}", r.describe());
    assert_eq!(json["removed"], serde_json::json!([]), "{}", r.describe());
    assert_eq!(json["errors"], serde_json::json!([]), "{}", r.describe());
    let entry = &json["targets"][0]["changed"][0];
    assert_eq!(entry["name"], "core_add", "{}", r.describe());
    assert_eq!(
        entry["object"].as_str(),
        Some(&*patched.to_string_lossy()),
        "{}",
        r.describe()
    );

    let e = explain(fx.root.path(), &orig, &patched, "core_add");
    assert_eq!(e.run.output.status.code(), Some(0), "{}", e.run.describe());
    let (o, p) = e.first_difference();
    assert!(
        o.0.contains("core_add+") && p.0.contains("core_add+") && o.0 != p.0,
        "both versions of the first differing instruction\n{}",
        e.run.describe()
    );

    // An unchanged function explains that it is the same; an unknown one fails.
    let r = fx.link(
        [
            &[OsStr::new("diff-objects")],
            &pair[..],
            &[OsStr::new("--explain"), OsStr::new("core_entry")],
        ]
        .concat(),
    );
    assert!(r.stdout().contains("the same"), "{}", r.describe());
    let r = fx.link(
        [
            &[OsStr::new("diff-objects")],
            &pair[..],
            &[OsStr::new("--explain"), OsStr::new("no_such_fn")],
        ]
        .concat(),
    );
    assert!(
        r.output.status.code() == Some(1) && r.stderr().contains("no_such_fn"),
        "{}",
        r.describe()
    );
}

/// The output of `klp-link diff-objects ORIG PATCHED --explain NAME`.
struct Explained {
    run: Run,
}

/// One side of a first difference: the instruction as disassembled, and
/// what the checksum took in for it.
type Version = (String, String);

impl Explained {
    /// Whether it says the function's checksummed input is the same.
    fn same(&self) -> bool {
        self.run.stdout().contains("are the same")
    }

    /// The orig and patched versions of the first difference shown; the
    /// two must differ in what was hashed, or it is not a difference.
    #[track_caller]
    fn first_difference(&self) -> (Version, Version) {
        let out = self.run.stdout();
        let lines: Vec<&str> = out.lines().map(str::trim).collect();
        let version = |which: &str| -> Version {
            let i = lines
                .iter()
                .position(|l| l.starts_with(which))
                .unwrap_or_else(|| panic!("no `{which}` line\n{}", self.run.describe()));
            let hashed = lines
                .get(i + 1)
                .and_then(|l| l.strip_prefix("hashed as:"))
                .unwrap_or_else(|| {
                    panic!("no `hashed as` after `{which}`\n{}", self.run.describe())
                });
            (
                lines[i][which.len()..].trim().to_owned(),
                hashed.trim().to_owned(),
            )
        };
        let (o, p) = (version("orig "), version("patched "));
        assert!(
            out.contains("first difference") && o.1 != p.1,
            "the first difference shown hashes the same in both versions\n{}",
            self.run.describe()
        );
        (o, p)
    }
}

fn explain(cwd: &Path, orig: &Path, patched: &Path, name: &str) -> Explained {
    let r = run_klp_link(
        cwd,
        [
            OsStr::new("diff-objects"),
            orig.as_os_str(),
            patched.as_os_str(),
            OsStr::new("--explain"),
            OsStr::new(name),
        ],
    );
    assert_no_panic(&r);
    Explained { run: r }
}

/// Init functions share `.init.text`: one that grew moves the next. The
/// moved one is unchanged, and --explain must say so (and show the real
/// difference of a moved function that did change), not stop at an
/// instruction whose address alone differs.
#[test]
fn explain_ignores_where_a_function_sits_in_its_section() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "explain_ignores_where_a_function_sits") else {
        return;
    };
    let dir = TempDir::new("explain");
    let source = |early_extra: &str, late_arg: u32| {
        format!(
            "extern void shared_log(const char *msg, int v);\n\
             __attribute__((section(\".init.text\"), cold)) int early_setup(void)\n\
             {{\n\tshared_log(\"early\", 1);{early_extra}\n\treturn 0;\n}}\n\
             __attribute__((section(\".init.text\"), cold)) int late_setup(void)\n\
             {{\n\tshared_log(\"late\", {late_arg});\n\treturn 0;\n}}\n"
        )
    };
    let compile = |name: &str, text: String| -> PathBuf {
        dir.write(format!("{name}.c"), text);
        let mut cmd = Command::new(&cc.path);
        cmd.current_dir(dir.path())
            .args(cc.kernel_cflags())
            .args(["-ffunction-sections", "-fdata-sections", "-c"])
            .arg(format!("{name}.c"))
            .arg("-o")
            .arg(format!("{name}.o"));
        run(cmd).assert_success();
        dir.join(format!("{name}.o"))
    };
    let orig = compile("orig", source("", 2));
    let grown = compile("grown", source("\n\tshared_log(\"early again\", 3);", 2));
    let both = compile("both", source("\n\tshared_log(\"early again\", 3);", 5));
    let moved = |o: &Path| ObjectInfo::read(o).symbol("late_setup").map(|s| s.value);
    assert_ne!(moved(&orig), moved(&grown), "late_setup did not move");

    let r = run_klp_link(
        dir.path(),
        [
            OsStr::new("diff-objects"),
            orig.as_os_str(),
            grown.as_os_str(),
            OsStr::new("--json"),
        ],
    );
    assert_no_panic(&r);
    let json: Value = serde_json::from_str(&r.stdout()).unwrap_or(Value::Null);
    assert_eq!(
        json["changed"],
        serde_json::json!(["early_setup"]),
        "{}",
        r.describe()
    );

    let e = explain(dir.path(), &orig, &grown, "late_setup");
    assert!(e.same(), "late_setup only moved\n{}", e.run.describe());
    let e = explain(dir.path(), &orig, &both, "late_setup");
    let (o, p) = e.first_difference();
    assert!(
        o.0.contains("2") && p.0.contains("5"),
        "{}",
        e.run.describe()
    );
}

/// A function that moved to another assembly file is only an undefined
/// reference in the object it left: `--explain` says so, from either side,
/// instead of tracing a function that has no code there.
#[test]
fn explain_refuses_a_name_that_is_not_a_defined_function() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "explain_refuses_an_undefined_function") else {
        return;
    };
    let dir = TempDir::new("explain-undefined");
    let caller = "\t.text\n\t.globl caller\n\t.type caller, @function\ncaller:\n\
                  \tcall ext_fn\n\tret\n\t.size caller, .-caller\n";
    dir.write("u.s", format!("{caller}\t.type ext_fn, @function\n"));
    dir.write(
        "d.s",
        format!(
            "{caller}\t.globl ext_fn\n\t.type ext_fn, @function\next_fn:\n\tret\n\
             \t.size ext_fn, .-ext_fn\n\t.data\nvalue:\t.long 1\n"
        ),
    );
    for name in ["u", "d"] {
        let mut cmd = Command::new(&cc.path);
        cmd.current_dir(dir.path())
            .args(["-c", &format!("{name}.s"), "-o", &format!("{name}.o")]);
        run(cmd).assert_success();
    }
    let explain_in = |orig: &str, patched: &str, name: &str| {
        let r = run_klp_link(
            dir.path(),
            ["diff-objects", orig, patched, "--explain", name],
        );
        assert_no_panic(&r);
        assert_eq!(r.output.status.code(), Some(1), "{}", r.describe());
        r.stderr()
    };
    for (orig, patched) in [("d.o", "u.o"), ("u.o", "d.o")] {
        let err = explain_in(orig, patched, "ext_fn");
        assert!(
            err.contains(
                "`ext_fn` is not a defined function in u.o (it is an undefined reference there)"
            ),
            "{err}"
        );
    }
    let err = explain_in("d.o", "d.o", "value");
    assert!(
        err.contains("`value` is not a defined function in d.o"),
        "{err}"
    );
}

/// Whether a mutation run ended the way klp-link may end.
#[track_caller]
fn expect_orderly(r: &Run) -> i32 {
    assert_no_panic(r);
    let code = r.output.status.code();
    assert!(
        matches!(code, Some(0 | 1 | 3)),
        "unexpected exit status\n{}",
        r.describe()
    );
    if code == Some(1) {
        let why = match serde_json::from_str::<Value>(&r.stdout()) {
            Ok(json) => json["errors"].as_array().is_some_and(|e| !e.is_empty()),
            Err(_) => r.stderr().starts_with("klp-link: ") || r.stdout().contains("errors"),
        };
        assert!(why, "a refusal says why\n{}", r.describe());
    }
    code.unwrap()
}

#[test]
fn mutated_objects_never_panic_diff_objects() {
    let Some(mut fx) = Fixture::new("mutated_objects_never_panic_diff_objects") else {
        return;
    };
    fx.edit("mm/split.c", "p[i] * 7", "p[i] * 9");
    fx.edit("mm/split.c", "x * 2);", "x * 4);");
    assert_eq!(fx.rebuild(), ["mm/split.o"]);
    let orig = std::fs::read(fx.orig("mm/split.o")).unwrap();
    let patched = std::fs::read(fx.path("mm/split.o")).unwrap();
    let dir = fx.root.mkdir("mutants");
    let (a, b) = (dir.join("a.o"), dir.join("b.o"));
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut seen = BTreeMap::new();
    for i in 0..150 {
        let (ma, mb) = match rng.below(3) {
            0 => (mutate(&mut rng, &orig), patched.clone()),
            1 => (orig.clone(), mutate(&mut rng, &patched)),
            _ => (mutate(&mut rng, &orig), mutate(&mut rng, &patched)),
        };
        std::fs::write(&a, ma).unwrap();
        std::fs::write(&b, mb).unwrap();
        let mut args = vec![OsStr::new("diff-objects"), a.as_os_str(), b.as_os_str()];
        if i % 2 == 0 {
            args.push(OsStr::new("--json"));
        }
        if i % 5 == 0 {
            args.extend([OsStr::new("--explain"), OsStr::new("cold_parent")]);
        }
        *seen.entry(expect_orderly(&fx.link(&args))).or_insert(0) += 1;
    }
    // Both refusals and reports must have happened, or this tests nothing.
    assert!(seen.get(&1).copied().unwrap_or(0) > 10, "{seen:?}");
    assert!(
        seen.get(&0).copied().unwrap_or(0) + seen.get(&3).copied().unwrap_or(0) > 10,
        "{seen:?}"
    );
}

#[test]
fn mutated_snapshots_never_panic_diff() {
    let Some(mut fx) = snapshotted("mutated_snapshots_never_panic_diff") else {
        return;
    };
    // Rebuilt objects, so that diff parses their snapshot manifests.
    fx.edit(
        "kernel/core.c",
        "return a * 2 + b;",
        "return a * 2 + b + 1;",
    );
    fx.edit("mm/split.c", "p[i] * 7", "p[i] * 9");
    assert_eq!(fx.rebuild(), ["kernel/core.o", "mm/split.o"]);
    let snap = fx.snap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seen = BTreeMap::new();
    for (file, runs) in [("objects", 120), ("targets", 20), ("snapshot", 10)] {
        let path = snap.join(file);
        let good = std::fs::read(&path).unwrap();
        for i in 0..runs {
            std::fs::write(&path, mutate(&mut rng, &good)).unwrap();
            let mut args = vec![OsStr::new("diff"), snap.as_os_str()];
            if i % 2 == 0 {
                args.push(OsStr::new("--json"));
            }
            *seen.entry(expect_orderly(&fx.link(&args))).or_insert(0) += 1;
        }
        std::fs::write(&path, good).unwrap();
    }
    assert!(seen.get(&1).copied().unwrap_or(0) > 10, "{seen:?}");
    assert!(seen.get(&0).copied().unwrap_or(0) > 10, "{seen:?}");
}

#[test]
fn diff_explains_a_change_in_the_tree_when_the_snapshot_kept_the_objects() {
    let Some(mut fx) = Fixture::new("diff_explain") else {
        return;
    };
    let r = fx.link(["snapshot", "tree", "-o", "snap", "--with-objects"]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.describe());
    let r = fx.link(["snapshot", "tree", "-o", "bare-snap"]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.describe());
    fx.edit(
        "kernel/core.c",
        "return a * 2 + b;",
        "return a * 2 + b + 1;",
    );
    fx.rebuild();
    let r = fx.link(["diff", "snap", "--explain", "core_add"]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.describe());
    let out = r.stdout();
    assert!(
        out.contains("explain core_add:") && out.contains("orig") && out.contains("patched"),
        "{}",
        r.describe()
    );
    // Not a changed function: a clear error.
    let r = fx.link(["diff", "snap", "--explain", "core_setup"]);
    assert!(
        r.output.status.code() == Some(1) && r.stderr().contains("not among the changed"),
        "{}",
        r.describe()
    );
    // A snapshot without the objects says how to get them.
    let r = fx.link(["diff", "bare-snap", "--explain", "core_add"]);
    assert!(
        r.output.status.code() == Some(1) && r.stderr().contains("--with-objects"),
        "{}",
        r.describe()
    );
}

/// What the fixture's code calls, as vmlinux's exports.
const FIXTURE_SYMVERS: &str = "0x0\t__fentry__\tvmlinux\tEXPORT_SYMBOL\t\n\
    0x0\t__x86_return_thunk\tvmlinux\tEXPORT_SYMBOL\t\n\
    0x0\tshared_log\tvmlinux\tEXPORT_SYMBOL\t\n";

/// What `klp-link build` needs of the fixture besides its objects: a
/// Module.symvers and a stand-in for the kernel's kbuild, whose `make -C
/// tree M=DIR modules` "links" the module as the patch object alone.
pub(crate) fn buildable(test: &str) -> Option<Fixture> {
    let fx = Fixture::new(test)?;
    for program in ["ld", "make"] {
        if find_program(program).is_none() {
            skip(test, &format!("no `{program}` on PATH"));
            return None;
        }
    }
    fx.write("Module.symvers", FIXTURE_SYMVERS);
    fx.write(
        "Makefile",
        "modules:\n\
         \tname=$$(sed -n 's/^obj-m := \\(.*\\)\\.o$$/\\1/p' $(M)/Kbuild) && \
         cp $(M)/klp-patch.bin $(M)/$$name.ko\n",
    );
    fx.write("include/config/kernel.release", "6.1.0-klp\n");
    Some(fx)
}

impl Fixture {
    /// `klp-link build snap --name NAME -o NAME.ko` with `extra` arguments.
    fn build(&self, name: &str, extra: &[&OsStr]) -> Run {
        let ko = format!("{name}.ko");
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("build"),
            OsStr::new("snap"),
            OsStr::new("--name"),
            OsStr::new(name),
            OsStr::new("-o"),
            OsStr::new(&ko),
        ];
        args.extend(extra);
        self.link(args)
    }

    /// The running kernel's vmlinux for `--vmlinux`: the fixture's, with a
    /// `linux_banner` of `release`.
    fn running_vmlinux(&self, release: &str) -> PathBuf {
        use object::write::{Object, Symbol, SymbolSection};
        use object::{
            Architecture, BinaryFormat, Endianness, SectionKind, SymbolFlags, SymbolKind,
            SymbolScope,
        };
        let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let rodata = obj.add_section(Vec::new(), b".rodata".to_vec(), SectionKind::ReadOnlyData);
        let banner = format!("Linux version {release} (u@h) (gcc) #1 SMP\n\0");
        obj.set_section_data(rodata, banner.as_bytes().to_vec(), 1);
        obj.add_symbol(Symbol {
            name: b"linux_banner".to_vec(),
            value: 0,
            size: banner.len() as u64,
            kind: SymbolKind::Data,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Section(rodata),
            flags: SymbolFlags::None,
        });
        let banner_o = self.root.join(format!("banner-{release}.o"));
        std::fs::write(&banner_o, obj.write().unwrap()).unwrap();
        let out = self.root.join(format!("vmlinux-{release}"));
        let mut cmd = Command::new("ld");
        cmd.arg("-r")
            .arg("-o")
            .arg(&out)
            .arg(self.path("vmlinux"))
            .arg(&banner_o);
        run(cmd).assert_success();
        out
    }
}

/// The lines of `build`'s report that say what the module replaces.
fn replaced(r: &Run) -> Vec<String> {
    let err = r.stderr();
    err.lines()
        .skip_while(|l| !l.starts_with("klp-link: the module replaces:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(str::to_owned)
        .collect()
}

#[track_caller]
fn expect_built(r: &Run, replaces: &[&str]) {
    assert_no_panic(r);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.describe());
    assert_eq!(replaced(r), replaces, "{}", r.describe());
}

#[test]
fn build_without_vmlinux_takes_sympos_from_the_snapshot() {
    let test = "build_without_vmlinux_takes_sympos_from_the_snapshot";
    let Some(mut fx) = buildable(test) else {
        return;
    };
    fx.snapshot();
    fx.edit("mm/alloc.c", "return x + 2;", "return x + 5;");
    assert_eq!(fx.rebuild(), ["mm/alloc.o"]);
    // `tidy` is also a static of kernel/core.c, linked before mm/alloc.c.
    let want = ["  vmlinux: tidy (sympos 2)"];
    let one_build = fx.build("lp1", &[]);
    expect_built(&one_build, &want);
    assert!(
        one_build
            .stderr()
            .contains("sympos in vmlinux comes from the snapshot's vmlinux"),
        "{}",
        one_build.describe()
    );
    let running = fx.running_vmlinux("6.1.0-klp");
    let with_vmlinux = fx.build("lp2", &[OsStr::new("--vmlinux"), running.as_os_str()]);
    expect_built(&with_vmlinux, &want);

    // A snapshot older than its file symbols cannot tell the two apart.
    let syms = fx.snap().join("symbols/vmlinux.syms");
    let text = std::fs::read_to_string(&syms).unwrap();
    assert!(text.lines().any(|l| l.starts_with("f ")), "{text}");
    let old: String = text
        .lines()
        .filter(|l| !l.starts_with("f "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&syms, old).unwrap();
    let r = fx.build("lp3", &[]);
    assert_eq!(r.output.status.code(), Some(1), "{}", r.describe());
    assert!(
        r.stderr().contains("older klp-link") && r.stderr().contains("--vmlinux"),
        "{}",
        r.describe()
    );
    expect_built(
        &fx.build("lp4", &[OsStr::new("--vmlinux"), running.as_os_str()]),
        &want,
    );
}

#[test]
fn build_refuses_a_vmlinux_of_another_release() {
    let Some(mut fx) = buildable("build_refuses_a_vmlinux_of_another_release") else {
        return;
    };
    fx.snapshot();
    fx.edit("kernel/core.c", "return a * 2 + b;", "return a * 3 + b;");
    assert_eq!(fx.rebuild(), ["kernel/core.o"]);
    let other = fx.running_vmlinux("6.1.0-other");
    let r = fx.build("lp", &[OsStr::new("--vmlinux"), other.as_os_str()]);
    assert_eq!(r.output.status.code(), Some(1), "{}", r.describe());
    assert!(
        r.stderr().contains("is Linux 6.1.0-other")
            && r.stderr().contains("6.1.0-klp")
            && r.stderr().contains("running kernel"),
        "{}",
        r.describe()
    );
    assert!(!fx.root.join("lp.ko").exists());
}

#[test]
fn build_takes_module_sympos_and_exports_from_the_snapshot() {
    let test = "build_takes_module_sympos_and_exports_from_the_snapshot";
    let Some(mut fx) = buildable(test) else {
        return;
    };
    fx.snapshot();
    // The original build's exports count, not the patched tree's.
    std::fs::remove_file(fx.path("Module.symvers")).unwrap();
    fx.edit("drivers/mymod_util.c", "x * 11 + 5", "x * 13 + 5");
    assert_eq!(fx.rebuild(), ["drivers/mymod_util.o"]);
    let r = fx.build("lp1", &[]);
    expect_built(&r, &["  my_mod: mymod_calc"]);
    assert!(
        !r.stderr().contains("which the patch may have changed"),
        "{}",
        r.describe()
    );

    // A snapshot without Module.symvers falls back to the tree's, saying so.
    std::fs::remove_file(fx.snap().join("Module.symvers")).unwrap();
    fx.write("Module.symvers", FIXTURE_SYMVERS);
    let r = fx.build("lp2", &[]);
    expect_built(&r, &["  my_mod: mymod_calc"]);
    assert!(
        r.stderr().contains("the snapshot has no Module.symvers"),
        "{}",
        r.describe()
    );
}

#[test]
fn build_refuses_an_init_change_in_its_report() {
    let Some(mut fx) = buildable("build_refuses_an_init_change_in_its_report") else {
        return;
    };
    fx.snapshot();
    fx.edit("kernel/core.c", "\"core: setup\", 1", "\"core: setup\", 2");
    fx.edit("kernel/core.c", "return a * 2 + b;", "return a * 3 + b;");
    assert_eq!(fx.rebuild(), ["kernel/core.o"]);
    // The comparison refuses it, so `build` stops with the report: no
    // changed `__init` function ever reaches extraction.
    let r = fx.build("lp", &[]);
    assert_eq!(r.output.status.code(), Some(1), "{}", r.describe());
    let err = r.stderr();
    assert!(
        err.contains("`core_setup` is an __init/__exit function and changed")
            && err.contains("klp-link: no module built"),
        "{}",
        r.describe()
    );
    assert!(!fx.root.join("lp.ko").exists());
}

/// A tree that signs modules (CONFIG_MODULE_SIG) gets its livepatch signed
/// by its own scripts/sign-file, with the configured hash and key, after
/// the klp rewrite; a tree whose signing fails gets no module at all.
#[test]
fn build_signs_the_module_as_the_tree_signs_its_modules() {
    let test = "build_signs_the_module_as_the_tree_signs_its_modules";
    let Some(mut fx) = buildable(test) else {
        return;
    };
    fx.write(
        ".config",
        "CONFIG_LIVEPATCH=y\nCONFIG_MODULES=y\nCONFIG_MODULE_SIG=y\n\
         CONFIG_MODULE_SIG_HASH=\"sha384\"\nCONFIG_MODULE_SIG_KEY=\"certs/signing_key.pem\"\n",
    );
    fx.write("certs/signing_key.pem", "key\n");
    // Appends what it was given, as the real one appends the signature.
    fx.write(
        "scripts/sign-file",
        "#!/bin/sh\n[ $# -eq 4 ] || exit 2\nprintf 'SIGNED %s %s %s' \"$1\" \"${2##*/}\" \"${3##*/}\" >> \"$4\"\n",
    );
    let sign_file = fx.path("scripts/sign-file");
    std::fs::set_permissions(
        &sign_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    fx.snapshot();
    fx.edit("mm/alloc.c", "return x + 2;", "return x + 5;");
    assert_eq!(fx.rebuild(), ["mm/alloc.o"]);
    let r = fx.build("lp1", &[]);
    expect_built(&r, &["  vmlinux: tidy (sympos 2)"]);
    assert!(
        r.stderr()
            .contains("signed it with the tree's key, as kbuild signs its modules: sha384 with"),
        "{}",
        r.describe()
    );
    let ko = std::fs::read(fx.root.join("lp1.ko")).unwrap();
    assert!(
        ko.ends_with(b"SIGNED sha384 signing_key.pem signing_key.x509"),
        "the signature is not last"
    );
    assert!(
        object::File::parse(&*ko).is_ok(),
        "the signed module is ELF"
    );

    // A key of one's own, with the tree's sign-file and hash.
    fx.write("../keys/mine.pem", "my key\n");
    fx.write("../keys/mine.x509", "my cert\n");
    let (key, cert) = (fx.path("../keys/mine.pem"), fx.path("../keys/mine.x509"));
    let r = fx.build(
        "lp_own_key",
        &[
            OsStr::new("--sign-key"),
            key.as_os_str(),
            OsStr::new("--sign-cert"),
            cert.as_os_str(),
        ],
    );
    expect_built(&r, &["  vmlinux: tidy (sympos 2)"]);
    assert!(
        r.stderr()
            .contains("signed it with the key given: sha384 with"),
        "{}",
        r.describe()
    );
    let ko = std::fs::read(fx.root.join("lp_own_key.ko")).unwrap();
    assert!(ko.ends_with(b"SIGNED sha384 mine.pem mine.x509"));
    let r = fx.build("lp_no_cert", &[OsStr::new("--sign-key"), key.as_os_str()]);
    assert_eq!(r.output.status.code(), Some(2), "{}", r.describe());

    std::fs::write(&sign_file, "#!/bin/sh\necho 'no key' >&2\nexit 1\n").unwrap();
    let r = fx.build("lp2", &[]);
    assert_eq!(r.output.status.code(), Some(1), "{}", r.describe());
    assert!(
        r.stderr().contains("CONFIG_MODULE_SIG=y") && r.stderr().contains("no key"),
        "{}",
        r.describe()
    );
    assert!(!fx.root.join("lp2.ko").exists(), "a module was left behind");
}

/// With MODVERSIONS, a rebuilt object's `.cmd` records the CRC of each
/// symbol it exports (`#SYMVER`). A patch that changes the CRC of an export
/// the livepatch uses is refused, naming it; one it does not use is noted.
#[test]
fn build_refuses_a_changed_type_of_an_export_it_uses() {
    let test = "build_refuses_a_changed_type_of_an_export_it_uses";
    let Some(mut fx) = buildable(test) else {
        return;
    };
    fx.write(
        "Module.symvers",
        &(FIXTURE_SYMVERS
            .replace("0x0\tshared_log", "0x11111111\tshared_log")
            .replace("0x0\t__fentry__", "0x33333333\t__fentry__")
            + "0x44444444\tunused_export\tvmlinux\tEXPORT_SYMBOL\t\n"),
    );
    fx.snapshot();
    fx.edit("mm/alloc.c", "return x + 2;", "return x + 5;");
    assert_eq!(fx.rebuild(), ["mm/alloc.o"]);
    // As kbuild's gen_symversions appends them after the compile.
    fx.write(
        "mm/.alloc.o.cmd",
        "cmd_mm/alloc.o := gcc -c mm/alloc.c\n#SYMVER unused_export 0x55555555\n\
         #SYMVER __fentry__ 0x33333333\n",
    );
    let r = fx.build("lp1", &[]);
    expect_built(&r, &["  vmlinux: tidy (sympos 2)"]);
    assert!(
        r.stderr()
            .contains("type of exported `unused_export` changed"),
        "{}",
        r.describe()
    );
    fx.write(
        "mm/.alloc.o.cmd",
        "cmd_mm/alloc.o := gcc -c mm/alloc.c\n#SYMVER shared_log 0x22222222\n",
    );
    let r = fx.build("lp2", &[]);
    assert_eq!(r.output.status.code(), Some(1), "{}", r.describe());
    assert!(
        r.stderr()
            .contains("changes the type of exported `shared_log`")
            && r.stderr().contains("0x11111111")
            && r.stderr().contains("0x22222222"),
        "{}",
        r.describe()
    );
    assert!(!fx.root.join("lp2.ko").exists(), "a module was left behind");
}
