//! The klp-link commands, each from parsed arguments to an outcome the
//! binary turns into an exit status.

use std::path::Path;

use super::compare::{compare_manifests, compare_tree, Comparison};
use super::explain;
use super::report;
use super::snapshot::{original_object, Snapshot};
use super::tree::Tree;
use crate::manifest::Content;
use crate::shim;

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
) -> Result<String, CommandError> {
    let tree = Tree::open(tree).map_err(err)?;
    let snap = Snapshot::capture(&tree);
    if let Some(e) = snap.missing.first() {
        return Err(CommandError(format!(
            "{} object(s) that kbuild lists cannot be read, e.g. {e}; finish the build first",
            snap.missing.len()
        )));
    }
    snap.write(dest, force, with_objects).map_err(err)?;
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
    let mut out = render(&cmp, json);
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
        out.push_str(
            &explain::explain_objects(&orig, &tree.objtree.join(&entry.object), name)
                .map_err(err)?,
        );
    }
    Ok((out, Outcome::of(&cmp)))
}

pub fn diff_objects(
    orig: &Path,
    patched: &Path,
    json: bool,
    explain_fn: Option<&str>,
) -> Result<(String, Outcome), CommandError> {
    let read = |p: &Path| {
        let m = shim::compute(p);
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
    cmp.targets
        .retain(|_, r| !(r.changed.is_empty() && r.new.is_empty() && r.removed.is_empty()));
    let mut out = render(&cmp, json);
    if let Some(name) = explain_fn {
        out.push_str(&explain::explain_objects(orig, patched, name).map_err(err)?);
    }
    Ok((out, Outcome::of(&cmp)))
}

fn render(cmp: &Comparison, json: bool) -> String {
    if json {
        let mut s = serde_json::to_string_pretty(&report::json(cmp)).expect("JSON of plain data");
        s.push('\n');
        s
    } else {
        report::human(cmp)
    }
}
