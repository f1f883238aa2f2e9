//! The report a patch author reads: per target, the functions that changed,
//! are new or were removed, then notes and errors. Also as JSON for
//! scripts: one object with top-level `changed` and `new` arrays of function
//! names, the per-target detail, `notes` and `errors`.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::compare::{Comparison, FuncEntry};
use crate::manifest::escape_path_line;

pub fn human(cmp: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "klp-link: {} objects compared, {} rebuilt",
        cmp.objects, cmp.rebuilt
    );
    if cmp.targets.is_empty() {
        out.push_str("no function changed\n");
    }
    for (target, r) in &cmp.targets {
        let _ = writeln!(out, "{target}:");
        for (what, list) in [
            ("changed", &r.changed),
            ("new", &r.new),
            ("removed", &r.removed),
        ] {
            for f in list {
                let mut name = f.name.clone();
                if let Some(o) = &f.orig_name {
                    let _ = write!(name, " (was {o})");
                }
                if f.is_init() {
                    name.push_str(" [init]");
                }
                let _ = writeln!(
                    out,
                    "  {what:<8} {name:<40} {}",
                    escape_path_line(&f.object)
                );
            }
        }
    }
    if !cmp.notes.is_empty() {
        out.push_str("notes:\n");
        for n in &cmp.notes {
            let _ = writeln!(out, "  {n}");
        }
    }
    if !cmp.problems.is_empty() {
        out.push_str("errors (no live patch can be built from this):\n");
        for p in &cmp.problems {
            let _ = writeln!(out, "  {p}");
        }
    }
    out
}

fn entry(f: &FuncEntry) -> Value {
    json!({
        "name": f.name,
        "orig_name": f.orig_name.as_deref().unwrap_or(&f.name),
        "object": escape_path_line(&f.object),
        "section": f.section,
        "init": f.is_init(),
    })
}

pub fn json(cmp: &Comparison) -> Value {
    let names = |pick: fn(&super::compare::TargetReport) -> &Vec<FuncEntry>| -> Vec<String> {
        let mut v: Vec<String> = cmp
            .targets
            .values()
            .flat_map(|r| pick(r).iter().map(|f| f.name.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let targets: Vec<Value> = cmp
        .targets
        .iter()
        .map(|(name, r)| {
            json!({
                "name": name,
                "changed": r.changed.iter().map(entry).collect::<Vec<_>>(),
                "new": r.new.iter().map(entry).collect::<Vec<_>>(),
                "removed": r.removed.iter().map(entry).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "changed": names(|r| &r.changed),
        "new": names(|r| &r.new),
        "removed": names(|r| &r.removed),
        "targets": targets,
        "notes": cmp.notes,
        "errors": cmp.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "objects": cmp.objects,
        "rebuilt": cmp.rebuilt,
    })
}

/// What `--json` prints when a command fails before it has a report: the
/// same fields, empty, with the error, so that stdout is always one JSON
/// document a script can read.
pub fn json_failure(error: &str) -> Value {
    json!({
        "changed": [],
        "new": [],
        "removed": [],
        "targets": [],
        "notes": [],
        "errors": [error],
        "failed": true,
    })
}
