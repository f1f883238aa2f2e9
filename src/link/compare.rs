//! What changed between an original and a patched build: per object, then
//! per target (vmlinux or a module).
//!
//! Functions that changed or are new are what the patch will carry; the
//! patch author reviews exactly that list. Functions that differ only in
//! line numbers are listed apart: the patch leaves them alone. What a live patch cannot do is a
//! [`Problem`] and makes klp-link refuse: a changed data object (the running
//! kernel already holds its value), an object whose checksums could not be
//! computed, or objects built by different compilers or with different
//! flags in the two builds.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use super::correlate::{correlate, Change};
use super::data_uses::{escaping_use, referring_functions};
use super::line_map::LineMap;
use super::load::{self, ManifestSource, ObjectRecord, Stamp};
use super::once_flags::{self, OnceChoice};
use super::snapshot::Snapshot;
use super::tree::Tree;
use crate::callsite::is_callsite_metadata;
use crate::checksum::{Binding, SymbolKind, SymbolRecord};
use crate::elf::demangle::cold_parent;
use crate::elf::{ElfIndex, SymType, SymbolIndex};
use crate::manifest::{Content, Manifest};

/// Data that holds the build's identity (init/version.c): it differs
/// between two builds unless both fix it, which is a setup error, not a patch.
const BUILD_IDENTITY: &[&str] = &["init_uts_ns", "linux_banner", "linux_proc_banner"];

/// One function in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuncEntry {
    pub object: PathBuf,
    /// The symbol's name in the patched build (the original's, if removed).
    pub name: String,
    /// The symbol's name in the original build, when it differs (a clone
    /// renumbered).
    pub orig_name: Option<String>,
    pub section: String,
    pub binding: Binding,
}

impl FuncEntry {
    fn of(object: &Path, s: &SymbolRecord, orig: Option<&SymbolRecord>) -> Self {
        FuncEntry {
            object: object.to_owned(),
            name: s.name.clone(),
            orig_name: orig.filter(|o| o.name != s.name).map(|o| o.name.clone()),
            section: s.section.clone(),
            binding: s.binding,
        }
    }

    /// In `.init.text` or `.exit.text`: not in the running kernel any more.
    pub fn is_init(&self) -> bool {
        is_init_section(&self.section)
    }
}

fn is_init_section(section: &str) -> bool {
    [".init.", ".exit.", ".meminit.", ".ref."]
        .iter()
        .any(|p| section.starts_with(p))
        || section.starts_with(".initcall")
        || section.starts_with(".con_initcall")
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetReport {
    pub changed: Vec<FuncEntry>,
    pub new: Vec<FuncEntry>,
    pub removed: Vec<FuncEntry>,
    /// Functions whose only differences are proven line numbers.
    pub line_only: Vec<FuncEntry>,
    /// Changed data the patch carries, to be checked against the patched
    /// objects ([`check_carried_data`]).
    pub carried: Vec<CarriedData>,
    /// Per object, the data objects the original build did not have: the
    /// patch carries its own copy of those its functions use.
    pub new_data: BTreeMap<PathBuf, BTreeSet<String>>,
    /// Per object, each once-flag its patched functions refer to, and
    /// whether a copy shares the running kernel's.
    pub once_flags: BTreeMap<PathBuf, BTreeMap<String, OnceChoice>>,
}

impl TargetReport {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
            && self.new.is_empty()
            && self.removed.is_empty()
            && self.line_only.is_empty()
    }
}

/// Something a live patch cannot do, or cannot be sure of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    ChangedData {
        object: PathBuf,
        name: String,
        section: String,
    },
    Unavailable {
        object: PathBuf,
        build: &'static str,
        reason: String,
    },
    CompilerDiffers {
        object: PathBuf,
        orig: String,
        patched: String,
    },
    FlagsDiffer {
        object: PathBuf,
    },
    Missing {
        object: PathBuf,
        why: String,
    },
    NewModule {
        name: String,
    },
    InitChanged {
        object: PathBuf,
        name: String,
    },
    /// A changed local constant whose address reaches beyond the functions
    /// that read it: a copy would not reach what holds the old address.
    EscapingConst {
        object: PathBuf,
        name: String,
        section: String,
        escape: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::ChangedData { object, name, .. }
                if BUILD_IDENTITY.contains(&name.as_str()) =>
            {
                write!(
                    f,
                    "{}: `{name}` changed: it holds the build's identity (version, build number, \
                     time, user, host), so the two builds differ in it; build both with the same \
                     KBUILD_BUILD_VERSION, KBUILD_BUILD_TIMESTAMP, KBUILD_BUILD_USER and \
                     KBUILD_BUILD_HOST",
                    object.display()
                )
            }
            Problem::ChangedData {
                object,
                name,
                section,
            } => write!(
                f,
                "{}: data object `{name}` ({section}) changed; a live patch cannot change data \
                 the running kernel already holds: leave its layout and initial value alone and \
                 keep new state in shadow variables (klp_shadow_get_or_alloc)",
                object.display()
            ),
            Problem::Unavailable {
                object,
                build,
                reason,
            } => write!(
                f,
                "{}: changed, but the {build} build has no checksums for it: {reason}",
                object.display()
            ),
            Problem::CompilerDiffers {
                object,
                orig,
                patched,
            } => write!(
                f,
                "{}: built by `{orig}` originally and by `{patched}` now; build both trees with \
                 the same compiler",
                object.display()
            ),
            Problem::FlagsDiffer { object } => write!(
                f,
                "{}: compiled with different flags in the two builds (changed .config, \
                 KCFLAGS or compiler options?); rebuild with the original settings",
                object.display()
            ),
            Problem::Missing { object, why } => write!(f, "{}: {why}", object.display()),
            Problem::InitChanged { object, name } => write!(
                f,
                "{}: `{name}` is an __init/__exit function and changed; it ran at boot (or \
                 runs at unload) and a live patch cannot change what it did: move the fix \
                 into code that runs later",
                object.display()
            ),
            Problem::EscapingConst {
                object,
                name,
                section,
                escape,
            } => write!(
                f,
                "{}: constant `{name}` ({section}) changed and its address escapes ({escape}); \
                 whatever holds the running kernel's copy would keep the old contents: leave \
                 it unchanged and change the code that uses it, or put the new contents in a \
                 new object",
                object.display()
            ),
            Problem::NewModule { name } => write!(
                f,
                "module `{name}` is new in the patched build; a live patch can only change code \
                 the running kernel has"
            ),
        }
    }
}

/// A changed data object that the patch carries a copy of with the
/// functions that use it, if the patched object allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarriedData {
    pub object: PathBuf,
    pub name: String,
    pub section: String,
    pub kind: Carried,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    /// A local constant: carried while its address does not escape.
    Const,
    /// Per-call-site metadata: the functions that refer to it are replaced
    /// and carry their own.
    CallsiteMetadata,
}

/// The whole comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    pub targets: BTreeMap<String, TargetReport>,
    pub problems: Vec<Problem>,
    /// Things the patch author should know that do not stop the patch.
    pub notes: Vec<String>,
    pub objects: usize,
    /// The objects the patched build rewrote (tree-relative).
    pub rebuilt: Vec<PathBuf>,
    /// Whether line-only differences were checked against the patch's line
    /// map, not only by the call-site rule.
    pub lines_by_patch: bool,
}

/// How a difference in proven line sites alone is judged.
#[derive(Debug, Clone, Copy, Default)]
pub enum LineRule<'a> {
    /// By the call-site rule alone: every proven site may hold any line.
    #[default]
    CallSite,
    /// Each site must hold the line the patch moved its old line to.
    /// `root` is the source tree, for `__FILE__`s named by absolute path.
    Patch {
        map: &'a LineMap,
        root: Option<&'a Path>,
    },
}

impl Comparison {
    pub fn has_changes(&self) -> bool {
        self.targets
            .values()
            .any(|t| !t.changed.is_empty() || !t.new.is_empty())
    }
}

/// Compares two manifests of one object, adding to `target`'s report.
pub fn compare_manifests(
    object: &Path,
    (orig, patched): (&Manifest, &Manifest),
    rule: LineRule,
    target: &mut TargetReport,
    problems: &mut Vec<Problem>,
    notes: &mut Vec<String>,
) {
    if orig.fingerprint.is_some() && orig.fingerprint == patched.fingerprint {
        return;
    }
    let (o, p) = match (&orig.content, &patched.content) {
        (Content::Checksums(o), Content::Checksums(p)) => (o, p),
        (Content::Unavailable(reason), _) | (_, Content::Unavailable(reason)) => {
            let build = if matches!(orig.content, Content::Unavailable(_)) {
                "original"
            } else {
                "patched"
            };
            problems.push(Problem::Unavailable {
                object: object.to_owned(),
                build,
                reason: reason.clone(),
            });
            return;
        }
    };
    if let (Some(a), Some(b)) = (&orig.compiler, &patched.compiler) {
        if a != b {
            problems.push(Problem::CompilerDiffers {
                object: object.to_owned(),
                orig: a.clone(),
                patched: b.clone(),
            });
            return;
        }
    }
    if let (Some(a), Some(b)) = (orig.flags, patched.flags) {
        if a != b || orig.sections != patched.sections {
            problems.push(Problem::FlagsDiffer {
                object: object.to_owned(),
            });
            return;
        }
    }
    let flags = once_flags::pair(o, p);
    if !flags.is_empty() {
        target.once_flags.insert(object.to_owned(), flags);
    }
    for change in correlate(o, p) {
        let change = judge_lines(object, change, rule, notes);
        let s = change.symbol();
        if s.kind == SymbolKind::Data {
            if let Change::New(_) = change {
                target
                    .new_data
                    .entry(object.to_owned())
                    .or_default()
                    .insert(s.name.clone());
            }
            // A dynamic-debug descriptor whose line number alone moved: the
            // running kernel's still serves its site.
            if let Change::LineOnly { orig, patched } = change {
                if patched.binding == Binding::Local
                    && is_callsite_metadata(&patched.demangled, &patched.section)
                {
                    target
                        .line_only
                        .push(FuncEntry::of(object, patched, Some(orig)));
                    continue;
                }
            }
            data_change(object, &change, problems, notes, &mut target.carried);
            continue;
        }
        if is_init_section(&s.section)
            && !matches!(change, Change::Removed(_) | Change::LineOnly { .. })
        {
            problems.push(Problem::InitChanged {
                object: object.to_owned(),
                name: s.name.clone(),
            });
        }
        match change {
            Change::Changed { orig, patched } => {
                target
                    .changed
                    .push(FuncEntry::of(object, patched, Some(orig)))
            }
            Change::LineOnly { orig, patched } => {
                target
                    .line_only
                    .push(FuncEntry::of(object, patched, Some(orig)))
            }
            Change::New(s) => target.new.push(FuncEntry::of(object, s, None)),
            Change::Removed(s) => target.removed.push(FuncEntry::of(object, s, None)),
        }
    }
}

/// A line-only difference the patch's line map does not explain is a
/// change, with a note that says which line.
fn judge_lines<'a>(
    object: &Path,
    change: Change<'a>,
    rule: LineRule,
    notes: &mut Vec<String>,
) -> Change<'a> {
    let (Change::LineOnly { orig, patched }, LineRule::Patch { map, root }) = (&change, rule)
    else {
        return change;
    };
    let source = map.source_of(object, root);
    match map.explains(
        &orig.line_sites,
        &patched.line_sites,
        root,
        source.as_deref(),
    ) {
        Ok(()) => change,
        Err(why) => {
            notes.push(format!(
                "{}: `{}` differs only in line numbers, but {why}: it counts as changed",
                object.display(),
                patched.name
            ));
            Change::Changed { orig, patched }
        }
    }
}

fn data_change(
    object: &Path,
    change: &Change,
    problems: &mut Vec<Problem>,
    notes: &mut Vec<String>,
    carried: &mut Vec<CarriedData>,
) {
    let s = change.symbol();
    // Every kernel link drops `.discard.*` (objtool annotations, the
    // `__ADDRESSABLE` references of static calls): nothing of it runs.
    if s.section.starts_with(".discard.") {
        return;
    }
    let at = format!(
        "{}: data object `{}` ({})",
        object.display(),
        s.name,
        s.section
    );
    match change {
        Change::New(_) => notes.push(format!("{at} is new; the patch carries it")),
        Change::Removed(_) => notes.push(format!("{at} is gone; the running kernel keeps it")),
        Change::Changed { .. } if is_init_section(&s.section) => notes.push(format!(
            "{at} changed; it is init data, which a running kernel no longer uses"
        )),
        // Metadata of one call site (a dynamic-debug descriptor, a
        // ratelimit state) belongs to the function that refers to it, which
        // carries its own: checked against the object afterwards.
        Change::Changed { .. }
            if s.binding == Binding::Local && is_callsite_metadata(&s.demangled, &s.section) =>
        {
            carried.push(CarriedData {
                object: object.to_owned(),
                name: s.name.clone(),
                section: s.section.clone(),
                kind: Carried::CallsiteMetadata,
            });
        }
        // A local constant is read only by this object's functions, and
        // their checksums cover its contents: those that read it changed
        // too, and the patch carries its own copy, provided its address
        // does not escape them (checked against the object afterwards).
        Change::Changed { .. }
            if s.binding == Binding::Local && s.section.starts_with(".rodata") =>
        {
            carried.push(CarriedData {
                object: object.to_owned(),
                name: s.name.clone(),
                section: s.section.clone(),
                kind: Carried::Const,
            });
        }
        Change::Changed { .. } | Change::LineOnly { .. } => problems.push(Problem::ChangedData {
            object: object.to_owned(),
            name: s.name.clone(),
            section: s.section.clone(),
        }),
    }
}

/// Compares the snapshot of the original build with the patched tree.
/// Objects whose size and modification time are as the snapshot recorded
/// them were not rebuilt and are not read again.
pub fn compare_tree(snapshot: &Snapshot, tree: &Tree, rule: LineRule) -> Comparison {
    let mut cmp = Comparison {
        lines_by_patch: matches!(rule, LineRule::Patch { .. }),
        ..Comparison::default()
    };
    for name in tree.targets.keys() {
        if !snapshot.targets.contains_key(name) {
            cmp.problems.push(Problem::NewModule { name: name.clone() });
        }
    }
    let mut rebuilt: Vec<(&str, &Path)> = Vec::new();
    for (target, object) in tree.objects() {
        if !snapshot.targets.contains_key(target) {
            continue;
        }
        cmp.objects += 1;
        let now = Stamp::of(&tree.objtree.join(object)).ok();
        let before = snapshot.objects.get(object);
        if now.is_some() && before.map(|b| b.stamp) == now {
            continue;
        }
        rebuilt.push((target, object));
    }
    cmp.rebuilt = rebuilt.iter().map(|(_, o)| o.to_path_buf()).collect();
    let loaded = load::parallel_map(&rebuilt, |(_, o)| load::load(&tree.objtree, o));

    for ((target, object), record) in rebuilt.iter().zip(loaded) {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                cmp.problems.push(Problem::Missing {
                    object: object.to_path_buf(),
                    why: e.why,
                });
                continue;
            }
        };
        note_recomputed(&record, &mut cmp.notes);
        let report = cmp.targets.entry(target.to_string()).or_default();
        match snapshot.objects.get(*object) {
            Some(before) => match before.manifest() {
                Ok(orig) if before.source != ManifestSource::Compile => {
                    if let ManifestSource::Recomputed(why) = &before.source {
                        cmp.notes.push(format!(
                            "{}: in the original build, {why}; its checksums were recomputed \
                             from the object when the snapshot was taken",
                            object.display()
                        ));
                    }
                    compare_manifests(
                        object,
                        (&orig, &record.manifest),
                        rule,
                        report,
                        &mut cmp.problems,
                        &mut cmp.notes,
                    )
                }
                Ok(orig) => compare_manifests(
                    object,
                    (&orig, &record.manifest),
                    rule,
                    report,
                    &mut cmp.problems,
                    &mut cmp.notes,
                ),
                Err(e) => cmp.problems.push(Problem::Missing {
                    object: object.to_path_buf(),
                    why: format!("the snapshot's manifest is damaged: {e}"),
                }),
            },
            // An object the original build did not have: all of it is new.
            None => {
                let empty = Manifest {
                    content: Content::Checksums(Vec::new()),
                    fingerprint: None,
                    compiler: None,
                    flags: None,
                    ..record.manifest.clone()
                };
                compare_manifests(
                    object,
                    (&empty, &record.manifest),
                    rule,
                    report,
                    &mut cmp.problems,
                    &mut cmp.notes,
                );
            }
        }
    }

    // Objects the original build had that the patched one no longer links.
    for (target, objects) in &snapshot.targets {
        let now: HashSet<&PathBuf> = tree.targets.get(target).into_iter().flatten().collect();
        for object in objects {
            if now.contains(object) {
                continue;
            }
            let Some(before) = snapshot.objects.get(object) else {
                continue;
            };
            if let Ok(Manifest {
                content: Content::Checksums(symbols),
                ..
            }) = before.manifest()
            {
                let report = cmp.targets.entry(target.clone()).or_default();
                for s in symbols.iter().filter(|s| s.kind == SymbolKind::Func) {
                    report.removed.push(FuncEntry::of(object, s, None));
                }
            }
        }
    }
    check_carried_data(&mut cmp, &tree.objtree);
    cmp.targets.retain(|_, r| !r.is_empty());
    for r in cmp.targets.values_mut() {
        for list in [&mut r.changed, &mut r.new, &mut r.removed, &mut r.line_only] {
            list.sort_by(|a, b| (&a.object, &a.name).cmp(&(&b.object, &b.name)));
        }
    }
    cmp
}

fn note_recomputed(record: &ObjectRecord, notes: &mut Vec<String>) {
    if let ManifestSource::Recomputed(why) = &record.source {
        notes.push(format!(
            "{}: {why}; checksums recomputed from the object",
            record.path.display()
        ));
    }
}

/// Checks the changed data each target carries against its patched object
/// (under `root`): refuses a constant whose address escapes, and reports
/// the functions that refer to changed per-call-site metadata as changed.
pub fn check_carried_data(cmp: &mut Comparison, root: &Path) {
    for (target, report) in cmp.targets.iter_mut() {
        for c in std::mem::take(&mut report.carried) {
            let path = root.join(&c.object);
            let data = match std::fs::read(&path) {
                Ok(d) => d,
                Err(e) => {
                    cmp.problems.push(Problem::Missing {
                        object: c.object.clone(),
                        why: format!("cannot read the object to check `{}`: {e}", c.name),
                    });
                    continue;
                }
            };
            let index = match ElfIndex::parse(&data) {
                Ok(i) => i,
                Err(e) => {
                    cmp.problems.push(Problem::Missing {
                        object: c.object.clone(),
                        why: format!("cannot read the object to check `{}`: {e}", c.name),
                    });
                    continue;
                }
            };
            let symbols: Vec<SymbolIndex> = index
                .symbols
                .indices()
                .filter(|&i| {
                    let s = &index.symbols[i];
                    s.name == c.name && s.sym_type == SymType::Object && s.section.is_some()
                })
                .collect();
            match c.kind {
                Carried::Const => {
                    check_const(&c, &index, &symbols, &mut cmp.problems, &mut cmp.notes)
                }
                Carried::CallsiteMetadata => attach_metadata(
                    target,
                    &c,
                    &index,
                    &symbols,
                    report,
                    &mut cmp.problems,
                    &mut cmp.notes,
                ),
            }
        }
    }
}

fn check_const(
    c: &CarriedData,
    index: &ElfIndex,
    symbols: &[SymbolIndex],
    problems: &mut Vec<Problem>,
    notes: &mut Vec<String>,
) {
    match symbols.iter().find_map(|&i| escaping_use(index, i)) {
        Some(escape) => problems.push(Problem::EscapingConst {
            object: c.object.clone(),
            name: c.name.clone(),
            section: c.section.clone(),
            escape: escape.to_string(),
        }),
        None => notes.push(format!(
            "{}: data object `{}` ({}) changed; only functions of the patch read it, and \
             they carry a copy",
            c.object.display(),
            c.name,
            c.section
        )),
    }
}

/// Reports every function that refers to the changed metadata `c` as
/// changed (it carries its own copy), except `__init` ones, which no longer
/// run. Metadata that no code refers to changes nothing that runs.
fn attach_metadata(
    target: &str,
    c: &CarriedData,
    index: &ElfIndex,
    symbols: &[SymbolIndex],
    report: &mut TargetReport,
    problems: &mut Vec<Problem>,
    notes: &mut Vec<String>,
) {
    let at = format!("{}: `{}` ({})", c.object.display(), c.name, c.section);
    let mut users = Vec::new();
    for &sym in symbols {
        for f in referring_functions(index, sym) {
            let Some(f) = f else {
                problems.push(Problem::ChangedData {
                    object: c.object.clone(),
                    name: c.name.clone(),
                    section: c.section.clone(),
                });
                return;
            };
            let s = &index.symbols[f];
            let name = cold_parent(s.name).unwrap_or(s.name);
            let Some((func, _)) = index.symbols.enumerate().find(|(_, o)| {
                o.name == name && o.sym_type == SymType::Func && o.section.is_some()
            }) else {
                continue;
            };
            users.push(func);
        }
    }
    users.sort();
    users.dedup();
    if users.is_empty() {
        notes.push(format!(
            "{at} changed; no code refers to it, so nothing that runs changes"
        ));
        return;
    }
    for f in users {
        let s = &index.symbols[f];
        let section = &index.sections[s.section.expect("a defined function")].name;
        if is_init_section(section) {
            notes.push(format!(
                "{at} changed; it belongs to the __init function `{}`, which no longer runs",
                s.name
            ));
            continue;
        }
        let listed = report
            .changed
            .iter()
            .chain(&report.new)
            .any(|e| e.object == c.object && e.name == s.name);
        if !listed {
            report.changed.push(FuncEntry {
                object: c.object.clone(),
                name: s.name.to_owned(),
                orig_name: None,
                section: section.to_string(),
                binding: Binding::of_elf(s.binding),
            });
        }
        notes.push(format!(
            "{at} changed; `{}` ({target}) refers to it and carries its own copy",
            s.name
        ));
    }
}
