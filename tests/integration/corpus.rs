//! The checksum corpus: pairs of C files (before and after a fix) whose
//! manifests must differ in exactly the expected symbols.
//!
//! Each folder `tests/fixtures/corpus/<case>/` holds `orig.c`, `patched.c`
//! and `expect`. For gcc and for clang, each case compiles both files
//! through klp-cc with kernel-like flags ([`CcKind::kernel_cflags`] in
//! support.rs, the one place they are listed), each in a folder of its own
//! as `<case>.c` -> `<case>.o` (so object path and `STT_FILE` agree), reads
//! both manifests and checks them against `expect`. A compiler missing from
//! `PATH` skips its tests with a note.
//!
//! # The `expect` format
//!
//! One directive per line; blank lines and lines starting with `#` are
//! ignored. A line may start with `gcc:` or `clang:` to apply to that
//! compiler only (say why in a comment: `.cold` splitting, clone naming and
//! the like are gcc's).
//!
//! Verdicts name symbols by their *demangled* name as the manifest records
//! it (`counter.1` -> `counter`, `foo.constprop.0` -> `foo.constprop`);
//! `NAME*` (a trailing star) stands for every demangled name starting with
//! `NAME` that no exact line names. All records with one demangled name
//! (functions, `.cold` parts, data objects alike) are compared as a
//! multiset of checksums:
//!
//! - `changed NAME`: in both, and the checksums differ in more than line
//!   numbers;
//! - `line-only NAME`: in both, the checksums differ, and the
//!   line-insensitive ones (`lines=`) are equal;
//! - `same NAME`: in both, with equal checksums;
//! - `new NAME`: only in patched;
//! - `removed NAME`: only in orig;
//! - `extra NAME`: in both, and patched has every checksum orig has plus
//!   more (a second `CSWTCH.N` table, another `.constprop` clone).
//!
//! **Every symbol no verdict names must be `same`**, so a case lists what
//! it is about and any other difference fails. A verdict that matches no
//! symbol in either manifest is an error (it catches typos and cases that
//! stopped testing anything).
//!
//! Setup directives:
//!
//! - `cflags FLAG...`: more compiler flags for this case;
//! - `retpoline`: add the retpoline set ([`CcKind::retpoline_cflags`]).
//!
//! Requirements check that the compiler really produced what the case is
//! about, reading the objects directly (not the manifests):
//!
//! - `require VERSION symbol NAME`: the object defines the symbol `NAME`
//!   (raw, e.g. `apply.constprop.1`); VERSION is `orig`, `patched` or `both`;
//! - `require VERSION reloc FROM TARGET`: some relocation inside the symbol
//!   `FROM` (or the section `FROM`, when no symbol has that name) refers to
//!   the symbol `TARGET`, or to the section `TARGET` or `.text.TARGET`,
//!   `.text.unlikely.TARGET`, `.rodata.TARGET`, `.data.TARGET`, `.bss.TARGET`;
//! - `require same-bytes NAME` / `require different-bytes NAME`: the
//!   symbol's bytes (relocated fields are zero in an object) are identical
//!   / differ between orig and patched.
//!
//! Besides, every function and data symbol the object defines must have a
//! line in its manifest, and the manifest must have checksums (not
//! `status unavailable`).
//!
//! A second set of tests compiles each case's `orig.c` several times and
//! requires byte-identical manifests (see [`check_reproducible`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use klp_cc::checksum::SymbolRecord;
use klp_cc::link::correlate::{correlate, Change};
use klp_cc::manifest::Manifest;

use crate::support::{
    checksummed_symbols, manifest_path, manifest_text, objdump, read_manifest, run_klp_cc, Cc,
    CcKind, ObjectInfo, Run, TempDir,
};

/// Declares the cases: one test per case and compiler, one reproducibility
/// test per case and compiler, and the list that must match the folders.
macro_rules! corpus_cases {
    ($($case:ident),* $(,)?) => {
        const CASES: &[&str] = &[$(stringify!($case)),*];

        mod gcc {
            $(#[test] fn $case() { super::run_case(stringify!($case), super::CcKind::Gcc) })*
        }

        mod clang {
            $(#[test] fn $case() { super::run_case(stringify!($case), super::CcKind::Clang) })*
        }

        mod reproducible_gcc {
            $(#[test] fn $case() {
                super::check_reproducible(stringify!($case), super::CcKind::Gcc)
            })*
        }

        mod reproducible_clang {
            $(#[test] fn $case() {
                super::check_reproducible(stringify!($case), super::CcKind::Clang)
            })*
        }
    };
}

corpus_cases! {
    added_function,
    alternative,
    asm_goto,
    asm_goto_key,
    body_change,
    bss_size,
    bug_table_flags,
    builtin_expect,
    callee_renamed,
    clone_target_swapped,
    cold_part,
    comment_whitespace,
    constant_change,
    constprop_renumber,
    cswtch_renumber,
    exception_table,
    function_moved,
    global_initializer,
    inline_change,
    isra_renumber,
    jump_table_case,
    jump_table_unrelated,
    line_directive,
    line_macro,
    line_only,
    neighbour_grew,
    ops_table,
    part_clone,
    reloc_addend,
    removed_function,
    shared_section,
    static_const_table,
    static_local_init,
    static_local_renumber,
    static_local_unrelated,
    string_literal,
    string_shared,
    string_shifted,
    outside_object,
    tail_call_grew,
    unique_id_counter,
    unique_id_renumber,
}

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus")
}

#[test]
fn every_fixture_folder_is_a_listed_case() {
    let mut on_disk: Vec<String> = std::fs::read_dir(corpus_root())
        .expect("reading tests/fixtures/corpus")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = CASES.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "the folders under tests/fixtures/corpus and the corpus_cases! list differ"
    );
    for case in CASES {
        let dir = corpus_root().join(case);
        for f in ["orig.c", "patched.c", "expect"] {
            assert!(dir.join(f).is_file(), "{} lacks {f}", dir.display());
        }
        for kind in [CcKind::Gcc, CcKind::Clang] {
            if let Err(e) = Expect::load(&dir.join("expect"), kind) {
                panic!("{e}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The expect file

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Changed,
    LineOnly,
    Same,
    New,
    Removed,
    Extra,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Changed => "changed",
            Verdict::LineOnly => "line-only",
            Verdict::Same => "same",
            Verdict::New => "new",
            Verdict::Removed => "removed",
            Verdict::Extra => "extra",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn parse(s: &str) -> Pattern {
        match s.strip_suffix('*') {
            Some(p) => Pattern::Prefix(p.to_owned()),
            None => Pattern::Exact(s.to_owned()),
        }
    }
    fn text(&self) -> String {
        match self {
            Pattern::Exact(s) => s.clone(),
            Pattern::Prefix(p) => format!("{p}*"),
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    line: usize,
    verdict: Verdict,
    pattern: Pattern,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Orig,
    Patched,
    Both,
}

impl Which {
    fn versions(self) -> &'static [&'static str] {
        match self {
            Which::Orig => &["orig"],
            Which::Patched => &["patched"],
            Which::Both => &["orig", "patched"],
        }
    }
}

#[derive(Debug, Clone)]
enum Require {
    Symbol {
        which: Which,
        name: String,
    },
    Reloc {
        which: Which,
        from: String,
        target: String,
    },
    SameBytes(String),
    DifferentBytes(String),
}

#[derive(Debug, Clone)]
struct Requirement {
    line: usize,
    text: String,
    what: Require,
}

/// An `expect` file as it applies to one compiler.
#[derive(Debug, Default)]
struct Expect {
    rules: Vec<Rule>,
    requirements: Vec<Requirement>,
    cflags: Vec<String>,
    retpoline: bool,
}

impl Expect {
    fn load(path: &Path, kind: CcKind) -> Result<Expect, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        Expect::parse(&text, kind).map_err(|e| format!("{}:{e}", path.display()))
    }

    fn parse(text: &str, kind: CcKind) -> Result<Expect, String> {
        let mut ex = Expect::default();
        let mut seen: BTreeMap<Pattern, usize> = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let mut l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if let Some((prefix, rest)) = l.split_once(':') {
                let only = match prefix.trim() {
                    "gcc" => Some(CcKind::Gcc),
                    "clang" => Some(CcKind::Clang),
                    _ => None,
                };
                if let Some(only) = only {
                    if only != kind {
                        continue;
                    }
                    l = rest.trim();
                }
            }
            let words: Vec<&str> = l.split_whitespace().collect();
            let err = |what: &str| Err(format!("{line}: {what}: `{raw}`"));
            let verdict = match words[0] {
                "changed" => Some(Verdict::Changed),
                "line-only" => Some(Verdict::LineOnly),
                "same" => Some(Verdict::Same),
                "new" => Some(Verdict::New),
                "removed" => Some(Verdict::Removed),
                "extra" => Some(Verdict::Extra),
                _ => None,
            };
            if let Some(verdict) = verdict {
                if words.len() != 2 {
                    return err("a verdict takes exactly one name");
                }
                let pattern = Pattern::parse(words[1]);
                if let Some(prev) = seen.insert(pattern.clone(), line) {
                    return err(&format!("name already given a verdict on line {prev}"));
                }
                ex.rules.push(Rule {
                    line,
                    verdict,
                    pattern,
                });
                continue;
            }
            match words[0] {
                "cflags" => ex.cflags.extend(words[1..].iter().map(|s| s.to_string())),
                "retpoline" if words.len() == 1 => ex.retpoline = true,
                "require" => {
                    let which = |w: &str| match w {
                        "orig" => Some(Which::Orig),
                        "patched" => Some(Which::Patched),
                        "both" => Some(Which::Both),
                        _ => None,
                    };
                    let what = match words[1..] {
                        [w, "symbol", name] if which(w).is_some() => Require::Symbol {
                            which: which(w).unwrap(),
                            name: name.to_owned(),
                        },
                        [w, "reloc", from, target] if which(w).is_some() => Require::Reloc {
                            which: which(w).unwrap(),
                            from: from.to_owned(),
                            target: target.to_owned(),
                        },
                        ["same-bytes", name] => Require::SameBytes(name.to_owned()),
                        ["different-bytes", name] => Require::DifferentBytes(name.to_owned()),
                        _ => return err("unknown requirement"),
                    };
                    ex.requirements.push(Requirement {
                        line,
                        text: l.to_owned(),
                        what,
                    });
                }
                _ => return err("unknown directive"),
            }
        }
        Ok(ex)
    }
}

// Patterns go into a BTreeMap only to find duplicates.
impl PartialOrd for Pattern {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pattern {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text().cmp(&other.text())
    }
}

// ---------------------------------------------------------------------------
// Building

/// One version of a case, compiled through klp-cc.
struct Built {
    object: PathBuf,
    manifest: Manifest,
    info: ObjectInfo,
    run: Run,
}

/// Compiles `source` as `<dir>/<stem>.c` -> `<stem>.o` in `dir` through
/// klp-cc; `object_arg` overrides what is passed to `-o`.
fn compile(
    cc: &Cc,
    flags: &[String],
    dir: &Path,
    stem: &str,
    source: &Path,
    object_arg: Option<&Path>,
) -> Result<(PathBuf, Run), String> {
    let src_name = format!("{stem}.c");
    std::fs::copy(source, dir.join(&src_name))
        .map_err(|e| format!("copying {}: {e}", source.display()))?;
    let object = dir.join(format!("{stem}.o"));
    let o_arg: PathBuf = object_arg
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from(format!("{stem}.o")));
    let mut args: Vec<std::ffi::OsString> = vec![cc.program().into()];
    args.extend(flags.iter().map(Into::into));
    args.push("-c".into());
    args.push(src_name.into());
    args.push("-o".into());
    args.push(o_arg.into_os_string());
    let run = run_klp_cc(dir, &args);
    if !run.success() {
        return Err(format!("klp-cc failed\n{}", run.describe()));
    }
    if !manifest_path(&object).is_file() {
        return Err(format!(
            "klp-cc wrote no manifest {}\n{}",
            manifest_path(&object).display(),
            run.describe()
        ));
    }
    Ok((object, run))
}

fn build(
    cc: &Cc,
    flags: &[String],
    dir: &Path,
    case: &str,
    source: &Path,
) -> Result<Built, String> {
    let (object, run) = compile(cc, flags, dir, case, source, None)?;
    let manifest = std::panic::catch_unwind(|| read_manifest(&object))
        .map_err(|_| format!("unreadable manifest beside {}", object.display()))?;
    let info = ObjectInfo::read(&object);
    Ok(Built {
        object,
        manifest,
        info,
        run,
    })
}

// ---------------------------------------------------------------------------
// Checking

fn group(symbols: &[SymbolRecord]) -> BTreeMap<&str, Vec<&SymbolRecord>> {
    let mut m: BTreeMap<&str, Vec<&SymbolRecord>> = BTreeMap::new();
    for s in symbols {
        m.entry(s.demangled.as_str()).or_default().push(s);
    }
    m
}

fn sums(recs: &[&SymbolRecord]) -> Vec<u64> {
    let mut v: Vec<u64> = recs.iter().map(|r| r.checksum).collect();
    v.sort_unstable();
    v
}

/// The line-insensitive checksums, if every record has one.
fn line_sums(recs: &[&SymbolRecord]) -> Option<Vec<u64>> {
    let mut v: Vec<u64> = recs.iter().map(|r| r.lines).collect::<Option<_>>()?;
    v.sort_unstable();
    Some(v)
}

/// `small` is a proper sub-multiset of `big` (both sorted).
fn proper_submultiset(small: &[u64], big: &[u64]) -> bool {
    if small.len() >= big.len() {
        return false;
    }
    let mut rest = big.to_vec();
    for x in small {
        match rest.iter().position(|y| y == x) {
            Some(i) => {
                rest.remove(i);
            }
            None => return false,
        }
    }
    true
}

fn describe_group(recs: &[&SymbolRecord]) -> String {
    if recs.is_empty() {
        return "absent".into();
    }
    recs.iter()
        .map(|r| match r.lines {
            Some(l) => format!("{} {:016x} lines={l:016x}", r.name, r.checksum),
            None => format!("{} {:016x}", r.name, r.checksum),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A problem found in a case, with the raw symbol names it is about (for
/// disassembly in the report).
struct Problem {
    text: String,
    symbols: Vec<String>,
}

fn check(expect: &Expect, orig: &Built, patched: &Built) -> Vec<Problem> {
    let mut problems = Vec::new();
    let o_syms = checksummed_symbols(&orig.manifest);
    let p_syms = checksummed_symbols(&patched.manifest);

    // The manifest must cover every function and data symbol of the object.
    for (version, built, syms) in [("orig", orig, o_syms), ("patched", patched, p_syms)] {
        let names: BTreeSet<&str> = syms.iter().map(|s| s.name.as_str()).collect();
        for s in &built.info.symbols {
            if !names.contains(s.name.as_str()) {
                problems.push(Problem {
                    text: format!(
                        "{version}: the object defines {:?} symbol `{}` ({} bytes in {}) but the \
                         manifest has no line for it",
                        s.kind, s.name, s.size, s.section
                    ),
                    symbols: vec![],
                });
            }
        }
    }

    // Requirements on the objects themselves.
    for req in &expect.requirements {
        let fail = |why: String| Problem {
            text: format!("expect line {} `{}`: {why}", req.line, req.text),
            symbols: vec![],
        };
        let by_version = |v: &str| if v == "orig" { orig } else { patched };
        match &req.what {
            Require::Symbol { which, name } => {
                for v in which.versions() {
                    if by_version(v).info.symbol(name).is_none() {
                        let mut have: Vec<&str> = by_version(v)
                            .info
                            .symbols
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect();
                        have.sort_unstable();
                        problems.push(fail(format!(
                            "{v} object has no symbol `{name}` (it has: {})",
                            have.join(" ")
                        )));
                    }
                }
            }
            Require::Reloc {
                which,
                from,
                target,
            } => {
                for v in which.versions() {
                    let info = &by_version(v).info;
                    let relocs = if info.symbol(from).is_some() {
                        info.relocs_in_symbol(from)
                    } else {
                        info.relocs_in_section(from)
                    };
                    let hit = relocs.iter().any(|r| reloc_names(&r.target, target));
                    if !hit {
                        let seen: Vec<String> = relocs
                            .iter()
                            .map(|r| format!("{}{:+}", r.target, r.addend))
                            .collect();
                        problems.push(fail(format!(
                            "no relocation from `{from}` to `{target}` in {v} (found: {})",
                            if seen.is_empty() {
                                "none".into()
                            } else {
                                seen.join(", ")
                            }
                        )));
                    }
                }
            }
            Require::SameBytes(name) | Require::DifferentBytes(name) => {
                let want_same = matches!(req.what, Require::SameBytes(_));
                match (
                    orig.info.symbol_bytes(name),
                    patched.info.symbol_bytes(name),
                ) {
                    (Some(a), Some(b)) => {
                        if (a == b) != want_same {
                            problems.push(fail(format!(
                                "the bytes of `{name}` {} between orig and patched",
                                if want_same { "differ" } else { "are identical" }
                            )));
                        }
                    }
                    _ => problems.push(fail(format!("`{name}` is not in both objects"))),
                }
            }
        }
    }

    // Verdicts.
    let og = group(o_syms);
    let pg = group(p_syms);
    let all_names: BTreeSet<&str> = og.keys().chain(pg.keys()).copied().collect();
    let exact: BTreeSet<&str> = expect
        .rules
        .iter()
        .filter_map(|r| match &r.pattern {
            Pattern::Exact(n) => Some(n.as_str()),
            Pattern::Prefix(_) => None,
        })
        .collect();
    let switched_clones: BTreeSet<&str> = correlate(o_syms, p_syms)
        .iter()
        .filter_map(|c| match c {
            Change::Changed { orig, patched } if orig.checksum == patched.checksum => {
                Some(patched.demangled.as_str())
            }
            _ => None,
        })
        .collect();
    let mut accounted: BTreeSet<&str> = BTreeSet::new();
    let mut verdicts: Vec<(String, Verdict, Option<usize>, Vec<&str>)> = Vec::new();
    for rule in &expect.rules {
        let names: Vec<&str> = all_names
            .iter()
            .copied()
            .filter(|n| match &rule.pattern {
                Pattern::Exact(e) => n == e,
                Pattern::Prefix(p) => n.starts_with(p.as_str()) && !exact.contains(n),
            })
            .collect();
        accounted.extend(names.iter().copied());
        verdicts.push((rule.pattern.text(), rule.verdict, Some(rule.line), names));
    }
    for n in all_names.iter().copied().filter(|n| !accounted.contains(n)) {
        verdicts.push((n.to_owned(), Verdict::Same, None, vec![n]));
    }
    for (label, verdict, line, names) in verdicts {
        let o: Vec<&SymbolRecord> = names
            .iter()
            .flat_map(|n| og.get(n).into_iter().flatten().copied())
            .collect();
        let p: Vec<&SymbolRecord> = names
            .iter()
            .flat_map(|n| pg.get(n).into_iter().flatten().copied())
            .collect();
        let where_ = match line {
            Some(l) => format!("expect line {l}: {} {label}", verdict.word()),
            None => format!("`{label}` (not in expect, so it must be the same)"),
        };
        if o.is_empty() && p.is_empty() {
            problems.push(Problem {
                text: format!("{where_}: no such symbol in either manifest"),
                symbols: vec![],
            });
            continue;
        }
        let (os, ps) = (sums(&o), sums(&p));
        // Equal checksums with a different exact clone referred to (see
        // `correlate`) are a change too.
        let switched = names.iter().any(|n| switched_clones.contains(n));
        let line_only = os != ps && line_sums(&o).is_some() && line_sums(&o) == line_sums(&p);
        let ok = match verdict {
            Verdict::Changed => {
                !o.is_empty() && !p.is_empty() && ((os != ps && !line_only) || switched)
            }
            Verdict::LineOnly => line_only && !switched,
            Verdict::Same => !o.is_empty() && !p.is_empty() && os == ps && !switched,
            Verdict::New => o.is_empty() && !p.is_empty(),
            Verdict::Removed => !o.is_empty() && p.is_empty(),
            Verdict::Extra => !o.is_empty() && proper_submultiset(&os, &ps),
        };
        if !ok {
            let actual = if o.is_empty() {
                "new".to_owned()
            } else if p.is_empty() {
                "removed".to_owned()
            } else if os == ps && switched {
                "changed (it refers to another clone)".to_owned()
            } else if os == ps {
                "the same".to_owned()
            } else if line_only {
                "line-only".to_owned()
            } else if proper_submultiset(&os, &ps) {
                "extra (patched has orig's checksums and more)".to_owned()
            } else {
                "changed".to_owned()
            };
            let mut symbols: Vec<String> = o.iter().chain(&p).map(|r| r.name.clone()).collect();
            symbols.sort();
            symbols.dedup();
            problems.push(Problem {
                text: format!(
                    "{where_}: but it is {actual}\n      orig:    {}\n      patched: {}",
                    describe_group(&o),
                    describe_group(&p)
                ),
                symbols,
            });
        }
    }
    problems
}

/// Whether a relocation target (symbol name, or section name for a
/// section symbol) is `want` as a `require ... reloc` line means it.
fn reloc_names(target: &str, want: &str) -> bool {
    target == want
        || [".text", ".text.unlikely", ".rodata", ".data", ".bss"]
            .iter()
            .any(|p| target.strip_prefix(p).and_then(|r| r.strip_prefix('.')) == Some(want))
}

/// The disassembly of the sections holding `names`, for the report.
fn disassembly(built: &Built, names: &[String]) -> String {
    let mut sections: Vec<&str> = names
        .iter()
        .filter_map(|n| built.info.symbol(n))
        .filter(|s| s.kind == object::SymbolKind::Text)
        .map(|s| s.section.as_str())
        .collect();
    sections.sort_unstable();
    sections.dedup();
    sections.truncate(6);
    if sections.is_empty() {
        return String::new();
    }
    objdump(&built.object, &sections)
}

fn run_case(case: &str, kind: CcKind) {
    let test = format!("corpus::{kind}::{case}");
    let Some(cc) = Cc::find_or_skip(kind, &test) else {
        return;
    };
    let dir = corpus_root().join(case);
    let expect = Expect::load(&dir.join("expect"), kind).unwrap_or_else(|e| panic!("{e}"));
    let flags = cc.cflags(expect.retpoline, &expect.cflags);
    let mut tmp = TempDir::new(&format!("{case}-{kind}"));
    let built = ["orig", "patched"].map(|v| {
        build(
            &cc,
            &flags,
            &tmp.mkdir(v),
            case,
            &dir.join(format!("{v}.c")),
        )
    });
    let [orig, patched] = match built {
        [Ok(o), Ok(p)] => [o, p],
        [a, b] => {
            let kept = tmp.keep();
            let errs: Vec<String> = [a.err(), b.err()].into_iter().flatten().collect();
            panic!(
                "corpus case `{case}` with {kind}: build failed (files kept in {})\n{}",
                kept.display(),
                errs.join("\n")
            );
        }
    };
    let problems = check(&expect, &orig, &patched);
    if problems.is_empty() {
        return;
    }
    let kept = tmp.keep();
    let mut report = format!(
        "corpus case `{case}` with {kind}: {} problem(s)\n",
        problems.len()
    );
    for p in &problems {
        let _ = writeln!(report, "  - {}", p.text);
    }
    let _ = writeln!(report, "files kept in {}", kept.display());
    for (v, b) in [("orig", &orig), ("patched", &patched)] {
        let _ = write!(
            report,
            "--- {v}: {} ---\n{}",
            b.run.command,
            manifest_text(&b.object)
        );
    }
    let named: Vec<String> = problems.iter().flat_map(|p| p.symbols.clone()).collect();
    if !named.is_empty() {
        for (v, b) in [("orig", &orig), ("patched", &patched)] {
            let d = disassembly(b, &named);
            if !d.is_empty() {
                let _ = write!(report, "--- {v} disassembly ---{d}");
            }
        }
    }
    panic!("{report}");
}

// ---------------------------------------------------------------------------
// Reproducibility

/// The manifest text without its `object` line (the one place the output
/// path is recorded).
fn without_object_line(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("object "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Compiles the case's `orig.c` into two folders with the same relative
/// `-o`, again to the first path, and once with an absolute `-o`: the first
/// three manifests must be byte-identical, the last identical apart from
/// its `object` line. Debug info (`-g`) records each folder's path, so the
/// objects themselves differ.
fn check_reproducible(case: &str, kind: CcKind) {
    let test = format!("corpus::reproducible_{kind}::{case}");
    let Some(cc) = Cc::find_or_skip(kind, &test) else {
        return;
    };
    let dir = corpus_root().join(case);
    let expect = Expect::load(&dir.join("expect"), kind).unwrap_or_else(|e| panic!("{e}"));
    let flags = cc.cflags(expect.retpoline, &expect.cflags);
    let mut tmp = TempDir::new(&format!("{case}-{kind}-repro"));
    let source = dir.join("orig.c");
    let mut problems = Vec::new();
    let mut texts: Vec<(String, String)> = Vec::new();
    let mut compile_one = |label: &str, folder: &str, absolute: bool| -> Option<String> {
        let d = tmp.mkdir(folder);
        let abs = d.join(format!("{case}.o"));
        match compile(
            &cc,
            &flags,
            &d,
            case,
            &source,
            absolute.then_some(abs.as_path()),
        ) {
            Ok((object, _)) => {
                let t = std::fs::read_to_string(manifest_path(&object)).unwrap_or_default();
                texts.push((format!("{label} ({})", object.display()), t.clone()));
                Some(t)
            }
            Err(e) => {
                problems.push(format!("{label}: {e}"));
                None
            }
        }
    };
    let a = compile_one("first compile in a/", "a", false);
    let b = compile_one("same compile in b/", "b", false);
    let a2 = compile_one("same compile again in a/", "a", false);
    let c = compile_one("compile in c/ with an absolute -o", "c", true);
    if let (Some(a), Some(b), Some(a2), Some(c)) = (&a, &b, &a2, &c) {
        if a != b {
            problems.push("the manifests from a/ and b/ differ".into());
        }
        if a != a2 {
            problems.push("compiling to the same path twice gave different manifests".into());
        }
        if without_object_line(a) != without_object_line(c) {
            problems.push(
                "the manifest for an absolute -o differs from a/'s in more than its `object` \
                 line"
                    .into(),
            );
        }
    }
    if problems.is_empty() {
        return;
    }
    let kept = tmp.keep();
    let mut report = format!(
        "reproducibility of `{case}` with {kind}: {}\nfiles kept in {}\n",
        problems.join("\n"),
        kept.display()
    );
    for (label, t) in &texts {
        let _ = write!(report, "--- {label} ---\n{t}");
    }
    panic!("{report}");
}

mod expect_format {
    use super::*;

    #[test]
    fn compiler_prefixes_select_lines() {
        let text = "# c\nchanged a\ngcc: same b.cold\nclang: new c\ngcc: cflags -fx -fy\n\
                    retpoline\nrequire orig symbol a.constprop.0\nextra CSWTCH*\n";
        let g = Expect::parse(text, CcKind::Gcc).unwrap();
        let names: Vec<String> = g.rules.iter().map(|r| r.pattern.text()).collect();
        assert_eq!(names, ["a", "b.cold", "CSWTCH*"]);
        assert_eq!(g.cflags, ["-fx", "-fy"]);
        assert!(g.retpoline);
        assert_eq!(g.requirements.len(), 1);
        let c = Expect::parse(text, CcKind::Clang).unwrap();
        let names: Vec<String> = c.rules.iter().map(|r| r.pattern.text()).collect();
        assert_eq!(names, ["a", "c", "CSWTCH*"]);
        assert!(c.cflags.is_empty());
    }

    #[test]
    fn mistakes_are_reported_with_their_line() {
        for bad in [
            "chnged a",
            "same a b",
            "same a\nsame a",
            "require orig sym a",
        ] {
            let e = Expect::parse(bad, CcKind::Gcc).unwrap_err();
            assert!(e.contains(':'), "{e}");
        }
    }

    #[test]
    fn extra_needs_a_proper_submultiset() {
        assert!(proper_submultiset(&[1], &[1, 2]));
        assert!(proper_submultiset(&[], &[1]));
        assert!(!proper_submultiset(&[1], &[1]));
        assert!(!proper_submultiset(&[1, 1], &[1, 2, 3]));
    }

    #[test]
    fn reloc_targets_match_function_sections() {
        assert!(reloc_names(".text.apply.constprop.1", "apply.constprop.1"));
        assert!(reloc_names(".text.unlikely.process", "process"));
        assert!(reloc_names("cfg", "cfg"));
        assert!(!reloc_names(".text.apply.constprop.1", "apply.constprop.0"));
    }
}
