//! One position-independent XXH3-64 checksum per function and per data
//! object of a relocatable x86-64 ELF object (DESIGN §3).
//!
//! - [`crate::elf`] reads the object once into sorted tables.
//! - [`code`] hashes a function's instructions (iced-x86), each relocated or
//!   resolved field replaced by what it points at ([`describe`]).
//! - [`tables`] adds the special-section entries (jump labels, exception
//!   fixups, bug entries, alternatives) that point into each function.
//! - A `.cold` part is hashed into its parent; `.part`, `.constprop` and
//!   `.isra` clones are functions of their own.
//!
//! - [`manifest_of`] turns an object file into its manifest, guarded so
//!   that no bug in here can fail the compile it runs after.
//!
//! The checksums are the same before and after objtool rewrites the object
//! (kbuild runs it right after the compile). So is the much cheaper
//! [`fingerprint`](fingerprint_object), which tells whether a manifest still
//! describes the object beside it.

pub(crate) mod code;
mod describe;
mod fingerprint;
mod lines;
mod object_manifest;
mod record;
mod tables;
pub mod trace;

use std::collections::{HashMap, HashSet};

pub use object_manifest::manifest_of;
pub use record::{Binding, LineSite, SiteFile, SymbolKind, SymbolRecord};

use xxhash_rust::xxh3::Xxh3;

use crate::elf::{
    DefinedFunction, ElfIndex, NotDefined, ObjectError, SectionIndex, SectionKind, SymType,
    SymbolIndex,
};
use code::Range;
use describe::{tag, Describer, HashExt, Pair, Refs};
use tables::Tables;

/// What klp-cc knows about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectChecksums {
    pub arch: &'static str,
    /// The compiler's own identification from `.comment`, if it left one.
    pub compiler: Option<String>,
    /// What objtool leaves alone of the object (see [`fingerprint_object`]).
    pub fingerprint: u64,
    /// Sorted by name, then section.
    pub symbols: Vec<SymbolRecord>,
}

/// Computes the checksums of the object whose bytes are `data`.
pub fn checksum_object(data: &[u8]) -> Result<ObjectChecksums, ObjectError> {
    let index = ElfIndex::parse(data)?;
    let tables = Tables::new(&index);
    let mut describer = Describer::new(&index);

    let functions = functions(&index)?;
    let children = cold_children(&index, &functions);
    let is_child: std::collections::HashSet<DefinedFunction> =
        children.values().flatten().copied().collect();

    let mut symbols = Vec::new();
    // Data first: a function hashing a read-only object's contents would
    // otherwise leave that region cached without the object's clone
    // references collected.
    for (i, s) in index.symbols.enumerate() {
        let Some(sec) = loaded(&index, s.section) else {
            continue;
        };
        if s.sym_type != SymType::Object || s.name.is_empty() {
            continue;
        }
        let (start, end) = (s.value, s.value.saturating_add(s.size));
        describer.collect_refs(1);
        let checksum = describer.region(sec, start, end, 1);
        let mut sites = Vec::new();
        let lines = lines::dyndbg_line(&index, sec, start, end).map(|line| {
            let word = describe::slice(index.sections[sec].data, line, line + 4);
            let word = u32::from_le_bytes(word.try_into().unwrap_or_default());
            sites.push(lines::dyndbg_site(&index, sec, start, word));
            let mut without = Xxh3::new();
            without.u64(describer.region(sec, start, line, 1));
            without.u64(u64::from(word & !lines::DYNDBG_LINENO_BITS));
            without.u64(describer.region(sec, line + 4, end, 1));
            without.digest()
        });
        let refs = describer.take_refs();
        symbols.push(record(
            &index,
            i,
            SymbolKind::Data,
            (checksum, lines, sites),
            None,
            refs,
        ));
    }
    for &f in &functions {
        let s = &index.symbols[f.symbol()];
        let parent = crate::elf::demangle::cold_parent(s.name)
            .filter(|_| is_child.contains(&f))
            .map(str::to_owned);
        let mut h = Pair::default();
        describer.collect_refs(0);
        hash_function(&mut h, &mut describer, &tables, f);
        for &child in children.get(&f).into_iter().flatten() {
            h.tag(tag::COLD);
            hash_function(&mut h, &mut describer, &tables, child);
        }
        let refs = describer.take_refs();
        let kind = if parent.is_some() {
            SymbolKind::Cold
        } else {
            SymbolKind::Func
        };
        let sums = (h.digest(), h.lines_digest(), h.take_sites());
        symbols.push(record(&index, f.symbol(), kind, sums, parent, refs));
    }
    symbols.sort_by(|a, b| (&a.name, &a.section).cmp(&(&b.name, &b.section)));

    Ok(ObjectChecksums {
        arch: "x86_64",
        compiler: index.comment.clone(),
        fingerprint: fingerprint::fingerprint(&index, &tables),
        symbols,
    })
}

/// The fingerprint of an object: a hash of its sections, relocations and
/// symbols that is the same before and after objtool, computed without
/// decoding any code beyond jump-label sites.
pub fn fingerprint_object(data: &[u8]) -> Result<u64, ObjectError> {
    let index = ElfIndex::parse(data)?;
    let tables = Tables::new(&index);
    Ok(fingerprint::fingerprint(&index, &tables))
}

/// The named functions of the object that are loaded at run time.
fn functions(index: &ElfIndex) -> Result<Vec<DefinedFunction>, ObjectError> {
    let mut functions = Vec::new();
    for i in index.symbols.indices() {
        match index.defined_function(i) {
            Ok(f) => functions.push(f),
            Err(e @ NotDefined::OutsideSection { .. }) => {
                return Err(ObjectError::Malformed(format!(
                    "function `{}`: {e}",
                    index.symbols[i].name
                )))
            }
            // References, data, debug-only code: nothing the object runs.
            Err(_) => {}
        }
    }
    // A compile's own output has no prefix symbols: only an object objtool
    // rewrote pays for the lookup.
    let name = |f: &DefinedFunction| index.symbols[f.symbol()].name;
    if functions.iter().any(|f| name(f).starts_with(PREFIX)) {
        let starts: HashSet<(SectionIndex, u64, &str)> = functions
            .iter()
            .map(|f| (f.section(), f.start(), name(f)))
            .collect();
        functions.retain(|&f| !is_objtool_prefix(index, &starts, f));
    }
    Ok(functions)
}

/// What objtool's `--prefix` names a function's padding by.
const PREFIX: &str = "__pfx_";

/// Whether `f` is the `__pfx_NAME` symbol objtool's `--prefix` lays over
/// the NOPs before function NAME (`starts`: every function's section,
/// start and name): NAME's padding, not a function. objtool adds them after
/// the compile (on 6.x to every object, on 7.x to single-object modules),
/// so counting them would make the compile-time manifest and one
/// recomputed from the final object list different functions, and make a
/// new function's prefix a new function of its own.
fn is_objtool_prefix(
    index: &ElfIndex,
    starts: &HashSet<(SectionIndex, u64, &str)>,
    f: DefinedFunction,
) -> bool {
    const NOP: u8 = 0x90;
    let Some(name) = index.symbols[f.symbol()].name.strip_prefix(PREFIX) else {
        return false;
    };
    let code = &index.sections[f.section()].data;
    starts.contains(&(f.section(), f.end(), name))
        && code
            .get(f.start() as usize..f.end() as usize)
            .is_some_and(|b| b.iter().all(|&x| x == NOP))
}

/// `section`, if there is one and it is loaded at run time.
fn loaded(index: &ElfIndex, section: Option<SectionIndex>) -> Option<SectionIndex> {
    section.filter(|&s| index.sections[s].kind != SectionKind::NotAlloc)
}

/// Hashes a function's own instructions and the table entries that point
/// into them.
fn hash_function(h: &mut impl HashExt, d: &mut Describer, tables: &Tables, f: DefinedFunction) {
    let index = d.index;
    let range = Range {
        section: f.section(),
        start: f.start(),
        end: f.end(),
    };
    code::hash_range(h, d, tables, range);
    let mut seen = Vec::new();
    for e in tables.entries_into(range.section, range.start, range.end) {
        if seen.contains(&(e.table, e.start)) {
            continue;
        }
        seen.push((e.table, e.start));
        h.tag(tag::ENTRY);
        h.bytes(index.sections[e.table].name.as_bytes());
        let entry = d.region(e.table, e.start, e.end, 1);
        match lines::bug_line(index, e) {
            Some(line) => {
                let before = d.region(e.table, e.start, line, 1);
                let after = d.region(e.table, line + 2, e.end, 1);
                let mut without = Xxh3::new();
                without.u64(before);
                without.u64(after);
                h.split_u64(entry, without.digest());
                h.line_site(lines::bug_site(index, e, line));
            }
            None => h.u64(entry),
        }
    }
}

/// Maps each function to its `.cold` parts, matched by name and, for local
/// symbols, by source file.
fn cold_children(
    index: &ElfIndex,
    functions: &[DefinedFunction],
) -> HashMap<DefinedFunction, Vec<DefinedFunction>> {
    let mut by_name: HashMap<&str, Vec<DefinedFunction>> = HashMap::new();
    for &f in functions {
        by_name
            .entry(index.symbols[f.symbol()].name)
            .or_default()
            .push(f);
    }
    let mut children: HashMap<DefinedFunction, Vec<DefinedFunction>> = HashMap::new();
    for &f in functions {
        let child = &index.symbols[f.symbol()];
        let Some(parent) = crate::elf::demangle::cold_parent(child.name) else {
            continue;
        };
        let Some(candidates) = by_name.get(parent) else {
            continue;
        };
        let same_file = candidates
            .iter()
            .copied()
            .find(|p| index.symbols[p.symbol()].file == child.file);
        if let Some(p) = same_file.or_else(|| candidates.first().copied()) {
            children.entry(p).or_default().push(f);
        }
    }
    for v in children.values_mut() {
        v.sort_by_key(|c| index.symbols[c.symbol()].name);
    }
    children
}

fn record(
    index: &ElfIndex,
    i: SymbolIndex,
    kind: SymbolKind,
    (checksum, lines, line_sites): (u64, Option<u64>, Vec<LineSite>),
    parent: Option<String>,
    refs: Refs,
) -> SymbolRecord {
    let s = &index.symbols[i];
    let binding = Binding::of_elf(s.binding);
    SymbolRecord {
        kind,
        checksum,
        lines,
        binding,
        size: s.size,
        section: s
            .section
            .map(|sec| index.sections[sec].name.to_owned())
            .unwrap_or_default(),
        name: s.name.to_owned(),
        demangled: s.demangled.to_string(),
        file: s.file.map(str::to_owned),
        parent,
        clone_refs: refs.clones,
        once_flags: refs.once_flags,
        line_sites,
    }
}
