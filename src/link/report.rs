//! The report a patch author reads: per target, the functions that changed,
//! are new or were removed, and apart from them those that differ only in
//! line numbers, then notes and errors. Also as JSON for scripts: one
//! object with top-level `changed`, `new`, `removed` and `line_only` arrays
//! of function names, the per-target detail, `notes` and `errors`.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::compare::{Comparison, FuncEntry};
use crate::manifest::escape_path_line;

/// How a function was proven to differ only in line numbers, for the
/// reader to judge (`checksum::lines`), when no patch is given.
pub const LINE_ONLY_RULE: &str = "line-only by the call-site rule: they differ only in \
     `__LINE__` values passed to __might_sleep() and the like, or kept in __bug_table entries \
     and dynamic-debug descriptors";

/// The same, checked against the patch's line map (`--patch`).
pub const LINE_MAP_RULE: &str = "line-only by the patch's line map: each `__LINE__` that \
     differs (passed to __might_sleep() and the like, or kept in __bug_table entries and \
     dynamic-debug descriptors) is the number the patch moved that line to";

fn line_rule(cmp: &Comparison) -> &'static str {
    if cmp.lines_by_patch {
        LINE_MAP_RULE
    } else {
        LINE_ONLY_RULE
    }
}

fn display_name(f: &FuncEntry) -> String {
    let mut name = f.name.clone();
    if let Some(o) = &f.orig_name {
        let _ = write!(name, " (was {o})");
    }
    if f.is_init() {
        name.push_str(" [init]");
    }
    name
}

pub fn human(cmp: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "klp-link: {} objects compared, {} rebuilt",
        cmp.objects,
        cmp.rebuilt.len()
    );
    let changes = cmp
        .targets
        .values()
        .any(|r| !r.changed.is_empty() || !r.new.is_empty() || !r.removed.is_empty());
    if !changes {
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
                let name = display_name(f);
                let _ = writeln!(
                    out,
                    "  {what:<8} {name:<40} {}",
                    escape_path_line(&f.object)
                );
            }
        }
        if !r.line_only.is_empty() {
            out.push_str("  line-only, ignored:\n");
            for f in &r.line_only {
                let name = display_name(f);
                let _ = writeln!(out, "    {name:<47} {}", escape_path_line(&f.object));
            }
            let _ = writeln!(out, "  ({})", line_rule(cmp));
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
                "line_only": r.line_only.iter().map(entry).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "changed": names(|r| &r.changed),
        "new": names(|r| &r.new),
        "removed": names(|r| &r.removed),
        "line_only": names(|r| &r.line_only),
        "line_only_rule": line_rule(cmp),
        "targets": targets,
        "notes": cmp.notes,
        "errors": cmp.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "objects": cmp.objects,
        "rebuilt": cmp.rebuilt.len(),
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
        "line_only": [],
        "targets": [],
        "notes": [],
        "errors": [error],
        "failed": true,
    })
}
