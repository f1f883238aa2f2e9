//! Pairs the symbols of one object's original and patched manifests.
//!
//! Symbols are matched by a key of demangled name, file scope (the source
//! file of a local symbol) and linkage (local or not), so that renumbered
//! clones (`foo.constprop.0` becoming `foo.constprop.1`) still pair up.
//! Within a key shared by several symbols (two `foo.constprop` clones, 24
//! `__already_done` flags, the dynamic-debug descriptors `__UNIQUE_ID_ddebugN`
//! of one object), equal checksums pair first and the rest pair in the
//! order of their names with numbers compared as numbers (`ddebug9` before
//! `ddebug10`: the order of the counter, which is source order); whatever is
//! left over is new or removed. Equal line-insensitive checksums pair right
//! after equal checksums: such a pair differs only in line numbers.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use crate::checksum::{Binding, SymbolKind, SymbolRecord};

/// What happened to one symbol between the two builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<'a> {
    Changed {
        orig: &'a SymbolRecord,
        patched: &'a SymbolRecord,
    },
    /// Different only in proven line numbers (see `checksum::lines`): not
    /// a change the patch carries, but shown, since it is not nothing.
    LineOnly {
        orig: &'a SymbolRecord,
        patched: &'a SymbolRecord,
    },
    New(&'a SymbolRecord),
    Removed(&'a SymbolRecord),
}

impl<'a> Change<'a> {
    /// The symbol as it is after the patch (before it, when removed).
    pub fn symbol(&self) -> &'a SymbolRecord {
        match self {
            Change::Changed { patched, .. } | Change::LineOnly { patched, .. } => patched,
            Change::New(s) | Change::Removed(s) => s,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key<'a> {
    data: bool,
    name: String,
    file: Option<&'a str>,
    local: bool,
}

/// The name symbols are matched by: the demangled name, with the `__LINE__`
/// and counter that kbuild puts into initcall symbol names removed
/// (`__initcall__kmod_misc__242_295_misc_init4` becomes
/// `__initcall__kmod_misc__misc_init4`), since a line shift renames them;
/// likewise the stub function a Clang LTO build calls the initcall through
/// (`__initstub__kmod_...`).
pub fn match_name(s: &SymbolRecord) -> String {
    let name = s.demangled.as_str();
    let Some((kind, rest)) = ["__initcall__kmod_", "__initstub__kmod_"]
        .into_iter()
        .find_map(|k| Some((k, name.strip_prefix(k)?)))
    else {
        return name.to_owned();
    };
    let Some((module, tail)) = rest.split_once("__") else {
        return name.to_owned();
    };
    let mut parts = tail.splitn(3, '_');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(id), Some(line), Some(func))
            if id.bytes().all(|b| b.is_ascii_digit())
                && line.bytes().all(|b| b.is_ascii_digit()) =>
        {
            format!("{kind}{module}__{func}")
        }
        _ => name.to_owned(),
    }
}

/// `by_file`: whether file scope tells symbols apart; only in objects made
/// of several sources (`ld -r`), since a lone object's file name says
/// nothing (and two copies of one source may be named differently).
fn key(s: &SymbolRecord, by_file: bool) -> Key<'_> {
    Key {
        data: s.kind == SymbolKind::Data,
        name: match_name(s),
        file: if by_file { s.file.as_deref() } else { None },
        local: s.binding == Binding::Local,
    }
}

fn several_files(symbols: &[SymbolRecord]) -> bool {
    let mut files = symbols.iter().filter_map(|s| s.file.as_deref());
    let first = files.next();
    files.any(|f| Some(f) != first)
}

/// Every difference between two symbol lists; `.cold` parts are left out,
/// as their parent's checksum covers them.
///
/// A symbol whose checksum is unchanged still changed when the compiler
/// clones it refers to are not the counterparts of the ones it referred to
/// before (`apply_one` calling `apply.constprop.0` where it called the clone
/// that is now `apply.constprop.1`): clone numbers are not stable, so the
/// checksum names clones by demangled name and the exact ones are matched
/// here. The same holds for a pair that differs only in line numbers.
pub fn correlate<'a>(orig: &'a [SymbolRecord], patched: &'a [SymbolRecord]) -> Vec<Change<'a>> {
    let mut groups: BTreeMap<Key<'a>, (Vec<&'a SymbolRecord>, Vec<&'a SymbolRecord>)> =
        BTreeMap::new();
    let by_file = several_files(orig) || several_files(patched);
    for s in orig {
        groups.entry(key(s, by_file)).or_default().0.push(s);
    }
    for s in patched {
        groups.entry(key(s, by_file)).or_default().1.push(s);
    }
    let mut same = Vec::new();
    let mut changes = Vec::new();
    for (_, (mut before, mut after)) in groups {
        // Equal checksums are the same symbol, wherever they sit.
        before.retain(
            |b| match after.iter().position(|a| a.checksum == b.checksum) {
                Some(i) => {
                    same.push((*b, after.remove(i), false));
                    false
                }
                None => true,
            },
        );
        before.retain(|b| {
            // Of data, only a dynamic-debug descriptor has a line number; a
            // manifest saying other data does is not believed.
            let has_lines = b.kind != SymbolKind::Data || b.section == "__dyndbg";
            let line_only =
                |a: &&SymbolRecord| has_lines && b.lines.is_some() && a.lines == b.lines;
            match after.iter().position(line_only) {
                Some(i) => {
                    same.push((*b, after.remove(i), true));
                    false
                }
                None => true,
            }
        });
        before.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        after.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        let pairs = before.len().min(after.len());
        for (b, a) in before.iter().zip(&after) {
            changes.push(Change::Changed {
                orig: b,
                patched: a,
            });
        }
        changes.extend(after[pairs..].iter().map(|a| Change::New(a)));
        changes.extend(before[pairs..].iter().map(|b| Change::Removed(b)));
    }

    let counterpart: HashMap<&str, &str> = same
        .iter()
        .map(|(b, a, _)| (b.name.as_str(), a.name.as_str()))
        .chain(changes.iter().filter_map(|c| match c {
            Change::Changed { orig, patched } => Some((orig.name.as_str(), patched.name.as_str())),
            _ => None,
        }))
        .collect();
    for (b, a, line_only) in same {
        let mapped: Option<Vec<&str>> = b
            .clone_refs
            .iter()
            .map(|r| counterpart.get(r.as_str()).copied())
            .collect();
        let mut now: Vec<&str> = a.clone_refs.iter().map(String::as_str).collect();
        now.sort_unstable();
        let moved = match mapped {
            Some(mut m) => {
                m.sort_unstable();
                m.dedup();
                m != now
            }
            None => true,
        };
        if moved {
            changes.push(Change::Changed {
                orig: b,
                patched: a,
            });
        } else if line_only {
            changes.push(Change::LineOnly {
                orig: b,
                patched: a,
            });
        }
    }
    changes.retain(|c| c.symbol().kind != SymbolKind::Cold);
    changes
}

/// Orders names with each run of digits compared by its value, so that
/// renumbered symbols keep their relative order when a counter gains a digit.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        let (da, db) = (digits(a), digits(b));
        let ord = if da > 0 && db > 0 {
            let (na, nb) = (trim_zeros(&a[..da]), trim_zeros(&b[..db]));
            na.len()
                .cmp(&nb.len())
                .then_with(|| na.cmp(nb))
                .then_with(|| da.cmp(&db))
        } else {
            a.first().cmp(&b.first())
        };
        if ord != Ordering::Equal || a.is_empty() {
            return ord;
        }
        let step = da.max(1);
        (a, b) = (&a[step..], &b[step.min(b.len())..]);
    }
}

fn digits(s: &[u8]) -> usize {
    s.iter().take_while(|c| c.is_ascii_digit()).count()
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let zeros = s.iter().take_while(|&&c| c == b'0').count();
    &s[zeros..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(kind: SymbolKind, name: &str, demangled: &str, checksum: u64) -> SymbolRecord {
        SymbolRecord {
            kind,
            checksum,
            lines: None,
            binding: Binding::Local,
            size: 8,
            section: format!(".text.{name}"),
            name: name.into(),
            demangled: demangled.into(),
            file: Some("a.c".into()),
            parent: None,
            clone_refs: Vec::new(),
            once_flags: Vec::new(),
            line_sites: Vec::new(),
        }
    }

    fn names(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Changed { orig, patched } => {
                    format!("changed {}>{}", orig.name, patched.name)
                }
                Change::LineOnly { orig, patched } => {
                    format!("line-only {}>{}", orig.name, patched.name)
                }
                Change::New(s) => format!("new {}", s.name),
                Change::Removed(s) => format!("removed {}", s.name),
            })
            .collect()
    }

    #[test]
    fn renumbered_clones_pair_by_checksum() {
        let f = SymbolKind::Func;
        let orig = [sym(f, "foo.constprop.0", "foo.constprop", 1)];
        let patched = [
            sym(f, "foo.constprop.0", "foo.constprop", 2),
            sym(f, "foo.constprop.1", "foo.constprop", 1),
        ];
        assert_eq!(names(&correlate(&orig, &patched)), ["new foo.constprop.0"]);
    }

    #[test]
    fn a_caller_that_switched_clones_changed() {
        let f = SymbolKind::Func;
        let caller = |target: &str| SymbolRecord {
            clone_refs: vec![target.into()],
            once_flags: Vec::new(),
            ..sym(f, "apply_one", "apply_one", 9)
        };
        let orig = [
            sym(f, "apply.constprop.0", "apply.constprop", 1),
            sym(f, "apply.constprop.1", "apply.constprop", 2),
            caller("apply.constprop.1"),
        ];
        // Renumbered, same callee: no change.
        let renumbered = [
            sym(f, "apply.constprop.1", "apply.constprop", 1),
            sym(f, "apply.constprop.0", "apply.constprop", 2),
            caller("apply.constprop.0"),
        ];
        assert!(correlate(&orig, &renumbered).is_empty());
        // Same bytes, the other clone: changed.
        let swapped = [
            sym(f, "apply.constprop.0", "apply.constprop", 1),
            sym(f, "apply.constprop.1", "apply.constprop", 2),
            caller("apply.constprop.0"),
        ];
        assert_eq!(
            names(&correlate(&orig, &swapped)),
            ["changed apply_one>apply_one"]
        );
    }

    #[test]
    fn renumbered_descriptors_pair_by_checksum_then_in_counter_order() {
        let d = SymbolKind::Data;
        let f = SymbolKind::Func;
        let ddebug = |name: &str, checksum| sym(d, name, "__UNIQUE_ID_ddebug", checksum);
        let user = |name: &str, target: &str| SymbolRecord {
            clone_refs: vec![target.into()],
            once_flags: Vec::new(),
            ..sym(f, name, name, 7)
        };
        // Manifests list symbols sorted by name.
        let sorted = |mut v: Vec<SymbolRecord>| {
            v.sort_by(|a, b| a.name.cmp(&b.name));
            v
        };
        let orig = sorted(vec![
            ddebug("__UNIQUE_ID_ddebug7.0", 1),
            ddebug("__UNIQUE_ID_ddebug9.1", 2),
            ddebug("__UNIQUE_ID_ddebug10.2", 3),
            user("open", "__UNIQUE_ID_ddebug7.0"),
            user("show", "__UNIQUE_ID_ddebug9.1"),
            user("store", "__UNIQUE_ID_ddebug10.2"),
        ]);
        // An added `__COUNTER__` use renumbers them all; `open`'s descriptor
        // is as it was, the other two changed. As text, `ddebug10.2` sorts
        // before `ddebug9.1` and would pair with `show`'s descriptor.
        let patched = sorted(vec![
            ddebug("__UNIQUE_ID_ddebug8.0", 1),
            ddebug("__UNIQUE_ID_ddebug10.1", 4),
            ddebug("__UNIQUE_ID_ddebug11.2", 5),
            user("open", "__UNIQUE_ID_ddebug8.0"),
            user("show", "__UNIQUE_ID_ddebug10.1"),
            user("store", "__UNIQUE_ID_ddebug11.2"),
        ]);
        assert_eq!(
            names(&correlate(&orig, &patched)),
            [
                "changed __UNIQUE_ID_ddebug9.1>__UNIQUE_ID_ddebug10.1",
                "changed __UNIQUE_ID_ddebug10.2>__UNIQUE_ID_ddebug11.2",
            ]
        );
        // Referring to another descriptor with the same bytes is a change.
        let swapped = sorted(vec![
            ddebug("__UNIQUE_ID_ddebug7.0", 1),
            ddebug("__UNIQUE_ID_ddebug9.1", 2),
            ddebug("__UNIQUE_ID_ddebug10.2", 3),
            user("open", "__UNIQUE_ID_ddebug9.1"),
            user("show", "__UNIQUE_ID_ddebug9.1"),
            user("store", "__UNIQUE_ID_ddebug10.2"),
        ]);
        assert_eq!(names(&correlate(&orig, &swapped)), ["changed open>open"]);
    }

    #[test]
    fn equal_line_checksums_are_line_only_unless_a_clone_switched() {
        let f = SymbolKind::Func;
        let lined = |name: &str, checksum, lines, clones: &[&str]| SymbolRecord {
            lines,
            clone_refs: clones.iter().map(|c| c.to_string()).collect(),
            once_flags: Vec::new(),
            ..sym(f, name, name, checksum)
        };
        let orig = [
            lined("a", 1, Some(10), &[]),
            lined("b", 2, Some(20), &[]),
            lined("c", 3, None, &[]),
            sym(f, "h.isra.0", "h.isra", 5),
            sym(f, "h.isra.1", "h.isra", 6),
            lined("d", 4, Some(40), &["h.isra.0"]),
        ];
        let patched = [
            lined("a", 11, Some(10), &[]),
            lined("b", 12, Some(21), &[]),
            // Without line sites on one side, nothing is proven.
            lined("c", 13, Some(30), &[]),
            sym(f, "h.isra.0", "h.isra", 5),
            sym(f, "h.isra.1", "h.isra", 6),
            lined("d", 14, Some(40), &["h.isra.1"]),
        ];
        assert_eq!(
            names(&correlate(&orig, &patched)),
            ["changed b>b", "changed c>c", "line-only a>a", "changed d>d"]
        );
        // Data has no line sites, whatever a manifest says.
        let d = SymbolKind::Data;
        let data = |checksum| SymbolRecord {
            lines: Some(7),
            ..sym(d, "x", "x", checksum)
        };
        assert_eq!(names(&correlate(&[data(1)], &[data(2)])), ["changed x>x"]);
    }

    #[test]
    fn natural_order_compares_numbers_by_value() {
        let mut v = ["a10.1", "a9.2", "a09.1", "b", "a", "a9.10", "a9.9"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["a", "a9.2", "a9.9", "a9.10", "a09.1", "a10.1", "b"]);
    }

    #[test]
    fn body_change_new_and_removed() {
        let f = SymbolKind::Func;
        let orig = [sym(f, "a", "a", 1), sym(f, "gone", "gone", 5)];
        let patched = [sym(f, "a", "a", 2), sym(f, "b", "b", 3)];
        assert_eq!(
            names(&correlate(&orig, &patched)),
            ["changed a>a", "new b", "removed gone"]
        );
    }

    #[test]
    fn cold_parts_are_covered_by_their_parent() {
        let orig = [sym(SymbolKind::Cold, "a.cold", "a.cold", 1)];
        let patched = [sym(SymbolKind::Cold, "a.cold", "a.cold", 2)];
        assert!(correlate(&orig, &patched).is_empty());
    }

    #[test]
    fn initcall_line_numbers_do_not_matter() {
        let d = SymbolKind::Data;
        let orig = [sym(
            d,
            "__initcall__kmod_misc__242_295_misc_init4",
            "__initcall__kmod_misc__242_295_misc_init4",
            1,
        )];
        let patched = [sym(
            d,
            "__initcall__kmod_misc__243_297_misc_init4",
            "__initcall__kmod_misc__243_297_misc_init4",
            1,
        )];
        assert!(correlate(&orig, &patched).is_empty());
        let f = SymbolKind::Func;
        let stub = |name| [sym(f, name, name, 1)];
        assert!(correlate(
            &stub("__initstub__kmod_misc__242_295_misc_init4"),
            &stub("__initstub__kmod_misc__243_297_misc_init4")
        )
        .is_empty());
        assert_eq!(
            correlate(
                &stub("__initstub__kmod_misc__242_295_misc_init4"),
                &stub("__initstub__kmod_misc__243_297_other_init4")
            )
            .len(),
            2
        );
    }
}
