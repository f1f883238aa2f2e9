//! The klp-link commands, each from parsed arguments to an outcome the
//! binary turns into an exit status.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Instant;

use super::compare::{check_carried_data, compare_manifests, compare_tree, Comparison};
use super::correlate::{correlate, Change};
use super::destination::{check_module_output, check_patch_output, SnapshotDestination};
use super::explain;
use super::extract::{extract, RunningKernel, Source};
use super::input;
use super::module::{self, ModuleSpec};
use super::report;
use super::snapshot::{original_object, Snapshot};
use super::sympos::Positions;
use super::symvers::Exports;
use super::tree::Tree;
use super::tree::VMLINUX;
use crate::checksum::manifest_of;
use crate::manifest::{Content, SymbolKind};

/// How a comparison ended, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Changes found, and a live patch can carry them.
    Changes,
    /// Nothing changed that a live patch would carry.
    NoChange,
    /// klp-link refuses: the report says why.
    Refused,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Changes => 0,
            Outcome::NoChange => 3,
            Outcome::Refused => 1,
        }
    }

    fn of(cmp: &Comparison) -> Outcome {
        if !cmp.problems.is_empty() {
            Outcome::Refused
        } else if cmp.has_changes() {
            Outcome::Changes
        } else {
            Outcome::NoChange
        }
    }
}

/// An error that ends a command before it has a report.
#[derive(Debug)]
pub struct CommandError(pub String);

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CommandError {}

fn err(e: impl std::fmt::Display) -> CommandError {
    CommandError(e.to_string())
}

pub fn snapshot(
    tree: &Path,
    dest: &Path,
    force: bool,
    with_objects: bool,
    accept_unavailable: bool,
) -> Result<String, CommandError> {
    let tree = Tree::open(tree).map_err(err)?;
    // Checked before the capture: a wrong `-o` should not cost a minute.
    let destination = SnapshotDestination::check(dest, &tree.objtree, force).map_err(err)?;
    let snap = Snapshot::capture(&tree);
    if let Some(e) = snap.missing.first() {
        return Err(CommandError(format!(
            "{} object(s) that kbuild lists cannot be read, e.g. {e}; finish the build first",
            snap.missing.len()
        )));
    }
    let unavailable = snap.without_checksums();
    if !unavailable.is_empty() && !accept_unavailable {
        return Err(CommandError(format!(
            "{} object(s) have no checksums, so a change in them could not be seen; \
             nothing was written:\n{}\nrebuild them (make CC=\"klp-cc gcc\"), or pass \
             --accept-unavailable to take the snapshot anyway (a later diff refuses any \
             change to them)",
            unavailable.len(),
            unavailable
                .iter()
                .map(|(p, why)| format!("  {}: {why}", p.display()))
                .collect::<Vec<_>>()
                .join("\n")
        )));
    }
    snap.write(&destination, with_objects).map_err(err)?;
    let recomputed: Vec<String> = snap
        .objects
        .iter()
        .filter_map(|(p, o)| match &o.source {
            super::load::Source::Recomputed(why) => Some(format!("  {}: {why}", p.display())),
            _ => None,
        })
        .collect();
    let mut msg = format!(
        "klp-link: snapshot of {} ({} objects in {} targets) written to {}\n",
        tree.objtree.display(),
        snap.objects.len(),
        snap.targets.len(),
        dest.display()
    );
    for (p, why) in &unavailable {
        msg.push_str(&format!(
            "klp-link: warning: {} has no checksums ({why}); a change to it will be refused\n",
            p.display()
        ));
    }
    if !recomputed.is_empty() {
        msg.push_str(&format!(
            "klp-link: {} manifest(s) were missing or stale and were recomputed from the objects:\n{}\n",
            recomputed.len(),
            recomputed.join("\n")
        ));
    }
    Ok(msg)
}

pub fn diff(
    snapshot: &Path,
    tree: Option<&Path>,
    json: bool,
    explain_fn: Option<&str>,
) -> Result<(String, Outcome), CommandError> {
    let snap = Snapshot::read(snapshot).map_err(err)?;
    let dir = tree.unwrap_or(&snap.objtree);
    let tree = Tree::open(dir).map_err(err)?;
    if tree.objtree != snap.objtree {
        return Err(CommandError(format!(
            "the snapshot {} was taken of {}, not of {}; compare a tree with its own snapshot",
            snapshot.display(),
            snap.objtree.display(),
            tree.objtree.display()
        )));
    }
    let cmp = compare_tree(&snap, &tree);
    let mut explanation = None;
    if let Some(name) = explain_fn {
        let entry = cmp
            .targets
            .values()
            .flat_map(|r| &r.changed)
            .find(|f| f.name == name || f.orig_name.as_deref() == Some(name))
            .ok_or_else(|| CommandError(format!("`{name}` is not among the changed functions")))?;
        let orig = original_object(snapshot, &entry.object);
        if !orig.is_file() {
            return Err(CommandError(format!(
                "the snapshot has no copy of {}: take it with `klp-link snapshot \
                 --with-objects` to explain changes in a tree, or compare two objects with \
                 `klp-link diff-objects --explain`",
                entry.object.display()
            )));
        }
        explanation = Some(
            explain::explain_objects(&orig, &tree.objtree.join(&entry.object), name)
                .map_err(err)?,
        );
    }
    Ok((render(&cmp, json, explanation), Outcome::of(&cmp)))
}

pub fn diff_objects(
    orig: &Path,
    patched: &Path,
    json: bool,
    explain_fn: Option<&str>,
) -> Result<(String, Outcome), CommandError> {
    let read = |p: &Path| {
        input::regular_file(p).map_err(err)?;
        let m = manifest_of(p);
        match &m.content {
            Content::Unavailable(why) => Err(CommandError(format!("{}: {why}", p.display()))),
            Content::Checksums(_) => Ok(m),
        }
    };
    let (a, b) = (read(orig)?, read(patched)?);
    let mut cmp = Comparison {
        objects: 1,
        rebuilt: 1,
        ..Comparison::default()
    };
    let mut target = Default::default();
    compare_manifests(
        patched,
        &a,
        &b,
        &mut target,
        &mut cmp.problems,
        &mut cmp.notes,
    );
    cmp.targets.insert("object".into(), target);
    // The objects are named as given, so their root is the working folder.
    check_carried_data(&mut cmp, Path::new(""));
    cmp.targets
        .retain(|_, r| !(r.changed.is_empty() && r.new.is_empty() && r.removed.is_empty()));
    let explanation = explain_fn
        .map(|name| explain::explain_objects(orig, patched, name))
        .transpose()
        .map_err(err)?;
    Ok((render(&cmp, json, explanation), Outcome::of(&cmp)))
}

/// `klp-link fix-lines`: the patch at `patch` with `#line` directives, to
/// `output` (written whole, then renamed) or returned for stdout. Bytes, not
/// text: patches to kernel sources hold Latin-1.
pub fn fix_lines(
    patch: &Path,
    output: Option<&Path>,
    force: bool,
) -> Result<Vec<u8>, CommandError> {
    if let Some(out) = output {
        check_patch_output(out, patch, force).map_err(err)?;
    }
    let text = input::read(patch).map_err(err)?;
    let fixed = super::fix_lines::fix_lines(&text)
        .map_err(|e| CommandError(format!("{}: {e}", patch.display())))?;
    for w in &fixed.warnings {
        eprintln!("klp-link: warning: {w}");
    }
    let fixed = fixed.text;
    let Some(out) = output else {
        return Ok(fixed);
    };
    crate::atomic_file::write(out, &fixed, ".klp-link-patch")
        .map_err(|e| CommandError(format!("{}: {e}", out.display())))?;
    Ok(Vec::new())
}

/// The report, with `--explain`'s text after it or, in JSON, as its
/// `explain` field: stdout stays one JSON document.
fn render(cmp: &Comparison, json: bool, explanation: Option<String>) -> String {
    if json {
        let mut value = report::json(cmp);
        if let Some(text) = explanation {
            value["explain"] = text.into();
        }
        let mut s = serde_json::to_string_pretty(&value).expect("JSON of plain data");
        s.push('\n');
        s
    } else {
        let mut s = report::human(cmp);
        s.push_str(explanation.as_deref().unwrap_or(""));
        s
    }
}

/// What `klp-link build` needs besides the snapshot and the tree.
pub struct BuildOptions<'a> {
    /// The running kernel's vmlinux (sympos comes from its symbol order).
    pub vmlinux: &'a Path,
    /// Where the running kernel's modules are, for their sympos.
    pub modules: Option<&'a Path>,
    pub name: &'a str,
    pub output: &'a Path,
    pub replace: bool,
}

/// Compares like `diff`, then builds the livepatch module from the changed
/// and new functions. Refuses (with the report) whenever `diff` would.
pub fn build(
    snapshot: &Path,
    tree: Option<&Path>,
    opts: &BuildOptions,
) -> Result<(String, Outcome), CommandError> {
    let snap = Snapshot::read(snapshot).map_err(err)?;
    let dir = tree.unwrap_or(&snap.objtree);
    let tree = Tree::open(dir).map_err(err)?;
    if tree.objtree != snap.objtree {
        return Err(CommandError(format!(
            "the snapshot {} was taken of {}, not of {}",
            snapshot.display(),
            snap.objtree.display(),
            tree.objtree.display()
        )));
    }
    if !valid_module_name(opts.name) {
        return Err(CommandError(format!(
            "`{}` is not a module name: use letters, digits, `_` and `-`",
            opts.name
        )));
    }
    input::regular_file(opts.vmlinux).map_err(err)?;
    check_module_output(opts.output, &[opts.vmlinux, snapshot]).map_err(err)?;
    let started = Instant::now();
    let cmp = compare_tree(&snap, &tree);
    let compared = started.elapsed();
    let mut report = report::human(&cmp);
    let outcome = Outcome::of(&cmp);
    if outcome != Outcome::Changes {
        report.push_str("klp-link: no module built\n");
        return Ok((report, outcome));
    }
    if let Some(init) = cmp
        .targets
        .values()
        .flat_map(|r| r.changed.iter().chain(&r.new))
        .find(|f| f.is_init())
    {
        return Err(CommandError(format!(
            "{}: `{}` is an __init function; a live patch cannot change it",
            init.object.display(),
            init.name
        )));
    }

    let started = Instant::now();
    let exports = Exports::read(&tree.objtree.join("Module.symvers")).map_err(err)?;
    let mut positions = HashMap::new();
    positions.insert(
        VMLINUX.to_owned(),
        Positions::read(opts.vmlinux, true).map_err(err)?,
    );
    let mut module_notes = String::new();
    for target in cmp.targets.keys().filter(|t| *t != VMLINUX) {
        let ko = match opts.modules {
            Some(dir) => find_module(dir, target).ok_or_else(|| {
                CommandError(format!(
                    "no {target}.ko under {}: --modules must hold the running kernel's modules",
                    dir.display()
                ))
            })?,
            None => {
                let ko = tree
                    .linked
                    .get(target)
                    .ok_or_else(|| CommandError(format!("no .ko known for module {target}")))?;
                module_notes.push_str(&format!(
                    "klp-link: note: sympos in {target} comes from {}, which the patch may \
                     have changed; give --modules DIR with the running kernel's modules\n",
                    ko.display()
                ));
                tree.objtree.join(ko)
            }
        };
        positions.insert(target.clone(), Positions::read(&ko, false).map_err(err)?);
    }
    report.push_str(&module_notes);
    let symbols = started.elapsed();

    // One source per object with changes, keeping the objects' bytes alive.
    type ChangedAndNew = (Vec<String>, Vec<String>);
    let mut per_object: BTreeMap<(&str, &Path), ChangedAndNew> = BTreeMap::new();
    for (target, r) in &cmp.targets {
        for f in &r.changed {
            per_object
                .entry((target, &f.object))
                .or_default()
                .0
                .push(f.name.clone());
        }
        for f in &r.new {
            per_object
                .entry((target, &f.object))
                .or_default()
                .1
                .push(f.name.clone());
        }
    }
    let mut loaded = Vec::new();
    for ((target, object), (changed, new)) in per_object {
        let path = tree.objtree.join(object);
        let data =
            std::fs::read(&path).map_err(|e| CommandError(format!("{}: {e}", path.display())))?;
        let new_data = new_data_of(&snap, &path, object);
        loaded.push((target, object, data, changed, new, new_data));
    }
    let sources: Vec<Source> = loaded
        .iter()
        .map(|(target, object, data, changed, new, new_data)| Source {
            target,
            object_name: object.display().to_string(),
            data,
            changed: changed.clone(),
            new: new.clone(),
            new_data: new_data.clone(),
        })
        .collect();
    let kernel = RunningKernel {
        exports: &exports,
        positions: &positions,
    };
    let started = Instant::now();
    let extracted = extract(&sources, &kernel).map_err(err)?;
    let extracted_in = started.elapsed();
    let spec = ModuleSpec {
        name: opts.name,
        funcs: &extracted.funcs,
        replace: opts.replace,
        patch_object: &extracted.object,
    };
    let built = module::build(&spec, &tree.objtree, opts.output).map_err(CommandError)?;
    report.push_str(&replacements(&extracted));
    report.push_str(&format!(
        "klp-link: wrote {} ({} function(s) replaced, {} klp relocation(s))\n",
        opts.output.display(),
        extracted.funcs.len(),
        built.klp_relocs
    ));
    report.push_str(&format!(
        "klp-link: time: compare {:.3} s, symbol tables {:.3} s, extract {:.3} s, kbuild {:.2} s, \
         klp rewrite {:.3} s\n",
        compared.as_secs_f64(),
        symbols.as_secs_f64(),
        extracted_in.as_secs_f64(),
        built.kbuild.as_secs_f64(),
        built.rewrite.as_secs_f64()
    ));
    Ok((report, Outcome::Changes))
}

/// What the module replaces, per target, with the functions replaced only
/// to deliver one livepatch cannot hook, and the extraction's notes.
fn replacements(extracted: &super::extract::Extracted) -> String {
    let mut out = String::from("klp-link: the module replaces:\n");
    for f in &extracted.funcs {
        let pos = if f.sympos > 0 {
            format!(" (sympos {})", f.sympos)
        } else {
            String::new()
        };
        out.push_str(&format!("  {}: {}{pos}", f.target, f.old_name));
        if let Some(d) = &f.delivers {
            out.push_str(&format!(
                "  (unchanged: it delivers `{d}`, which livepatch cannot hook)"
            ));
        }
        out.push('\n');
    }
    for n in &extracted.notes {
        out.push_str(&format!("klp-link: note: {n}\n"));
    }
    out
}

fn valid_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 56
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The `.ko` of module `name` under `dir`, at any depth; kbuild's module
/// names treat `-` and `_` alike.
fn find_module(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    let want = format!("{}.ko", name.replace('-', "_"));
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(path),
                Ok(_) if e.file_name().to_string_lossy().replace('-', "_") == want => {
                    return Some(path)
                }
                _ => {}
            }
        }
    }
    None
}

/// The data objects of `object` that the original build did not have.
fn new_data_of(snap: &Snapshot, path: &Path, object: &Path) -> BTreeSet<String> {
    let patched = manifest_of(path);
    let orig = snap.objects.get(object).and_then(|o| o.manifest().ok());
    match (orig.map(|m| m.content), &patched.content) {
        (Some(Content::Checksums(o)), Content::Checksums(p)) => correlate(&o, p)
            .into_iter()
            .filter_map(|c| match c {
                Change::New(s) if s.kind == SymbolKind::Data => Some(s.name.clone()),
                _ => None,
            })
            .collect(),
        (None, Content::Checksums(p)) => p
            .iter()
            .filter(|s| s.kind == SymbolKind::Data)
            .map(|s| s.name.clone())
            .collect(),
        _ => BTreeSet::new(),
    }
}
