//! Position-independent descriptions of what a relocation or branch points at.
//!
//! A target is hashed by what it *is*, never by where it sits: a named symbol
//! by its demangled name and the offset inside it; a string literal by its
//! characters; a pool constant by its bytes; a read-only object or an
//! anonymous region (a jump table, an alternative's replacement code) by its
//! contents. Contents are followed two levels deep, which bounds the work and
//! breaks reference cycles.

use std::collections::HashMap;

use xxhash_rust::xxh3::Xxh3;

use super::record::LineSite;
use crate::callsite::is_once_flag;
use crate::elf::{ElfIndex, SectionIndex, SectionKind, SymType, SymbolIndex};
use crate::special_sections::{inferred_entry_size, lookup, InChecksum};

/// How many levels of referenced contents are folded into a checksum.
const MAX_DEPTH: u8 = 2;

/// Tags that keep differently shaped inputs from hashing alike.
pub mod tag {
    pub const SYMBOL: u8 = 1;
    pub const READ_ONLY: u8 = 2;
    pub const STRING: u8 = 3;
    pub const CONSTANT: u8 = 4;
    pub const ANONYMOUS: u8 = 5;
    pub const REGION: u8 = 6;
    pub const RELOC: u8 = 7;
    pub const BRANCH: u8 = 8;
    pub const RIP: u8 = 9;
    pub const LABEL: u8 = 10;
    pub const JUMP_LABEL: u8 = 11;
    pub const COLD: u8 = 12;
    pub const ENTRY: u8 = 13;
    pub const INSN: u8 = 14;
    pub const OUTSIDE: u8 = 15;
    pub const TABLE_ENTRY: u8 = 16;
}

/// Typed, length-prefixed writes into an XXH3 stream (or into a trace of
/// what would be hashed, for `klp-link --explain`).
pub trait HashExt {
    fn tag(&mut self, t: u8);
    fn u64(&mut self, v: u64);
    fn bytes(&mut self, b: &[u8]);
    /// Marks the start of the instruction at offset `ip` of section `section`.
    fn insn(&mut self, _section: SectionIndex, _ip: u64) {
        self.tag(tag::INSN);
    }
    /// Writes `main` into the checksum and `lines`, the same input with
    /// its line number left out, into the line-insensitive one.
    fn split_bytes(&mut self, main: &[u8], _lines: &[u8]) {
        self.bytes(main);
    }
    /// As [`split_bytes`](HashExt::split_bytes), for a hashed entry.
    fn split_u64(&mut self, main: u64, _lines: u64) {
        self.u64(main);
    }
    /// Writes into the line-insensitive checksum only.
    fn lines_only(&mut self, _v: u64) {}
    /// Notes that a proven line number, `site`, was left out of the
    /// line-insensitive checksum.
    fn line_site(&mut self, _site: LineSite) {}
}

impl HashExt for Xxh3 {
    fn tag(&mut self, t: u8) {
        self.update(&[t]);
    }
    fn u64(&mut self, v: u64) {
        self.update(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.update(b);
    }
}

/// A function's checksum and its line-insensitive twin, computed in one
/// walk. The twin's stream is the checksum's until the first split, so it
/// is forked only then: most functions pay nothing for it.
#[derive(Default)]
pub struct Pair {
    main: Xxh3,
    lines: Option<Xxh3>,
    sites: Vec<LineSite>,
}

impl Pair {
    fn fork(&mut self) -> &mut Xxh3 {
        self.lines.get_or_insert_with(|| self.main.clone())
    }

    pub fn digest(&self) -> u64 {
        self.main.digest()
    }

    /// The line-insensitive checksum; `None` when no line number was left
    /// out, so that it would say no more than [`digest`](Pair::digest).
    pub fn lines_digest(&self) -> Option<u64> {
        self.lines
            .as_ref()
            .filter(|_| !self.sites.is_empty())
            .map(Xxh3::digest)
    }

    /// The line sites left out, in order.
    pub fn take_sites(&mut self) -> Vec<LineSite> {
        std::mem::take(&mut self.sites)
    }
}

impl HashExt for Pair {
    fn tag(&mut self, t: u8) {
        self.main.tag(t);
        if let Some(l) = &mut self.lines {
            l.tag(t);
        }
    }
    fn u64(&mut self, v: u64) {
        self.main.u64(v);
        if let Some(l) = &mut self.lines {
            l.u64(v);
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        self.main.bytes(b);
        if let Some(l) = &mut self.lines {
            l.bytes(b);
        }
    }
    fn split_bytes(&mut self, main: &[u8], lines: &[u8]) {
        self.fork().bytes(lines);
        self.main.bytes(main);
    }
    fn split_u64(&mut self, main: u64, lines: u64) {
        self.fork().u64(lines);
        self.main.u64(main);
    }
    fn lines_only(&mut self, v: u64) {
        self.fork().u64(v);
    }
    fn line_site(&mut self, site: LineSite) {
        self.sites.push(site);
    }
}

/// Describes targets within one object, remembering region hashes.
pub struct Describer<'a, 'd> {
    pub index: &'a ElfIndex<'d>,
    regions: HashMap<(SectionIndex, u64, u64, u8), u64>,
    /// The depth whose references to renumbered symbols (compiler clones,
    /// `__UNIQUE_ID()` objects) and to once-flags are collected (that of
    /// the symbol being checksummed), if any.
    collect_at: Option<u8>,
    refs: Refs,
}

/// What a symbol refers to by exact name, beside its checksum.
#[derive(Debug, Default)]
pub struct Refs {
    /// Compiler clones and `__UNIQUE_ID()` objects, sorted, once each.
    pub clones: Vec<String>,
    /// Once-flags, in the order the code first refers to them.
    pub once_flags: Vec<String>,
}

impl<'a, 'd> Describer<'a, 'd> {
    pub fn new(index: &'a ElfIndex<'d>) -> Self {
        Describer {
            index,
            regions: HashMap::new(),
            collect_at: None,
            refs: Refs::default(),
        }
    }

    /// Starts collecting the references made at `depth`.
    pub fn collect_refs(&mut self, depth: u8) {
        self.collect_at = Some(depth);
        self.refs = Refs::default();
    }

    /// Stops collecting; returns what was referenced.
    pub fn take_refs(&mut self) -> Refs {
        self.collect_at = None;
        let mut refs = std::mem::take(&mut self.refs);
        refs.clones.sort();
        refs.clones.dedup();
        refs
    }

    /// Hashes "symbol `sym` plus `addend`", the addend already made relative
    /// to the symbol (PC-relative bias removed by the caller).
    pub fn symbol(&mut self, h: &mut impl HashExt, sym: SymbolIndex, addend: i64, depth: u8) {
        let s = &self.index.symbols[sym];
        if self.collect_at == Some(depth) && s.sym_type == SymType::Object {
            let section = s.section.map_or("", |sec| self.index.sections[sec].name);
            if is_once_flag(&s.demangled, section)
                && !self.refs.once_flags.iter().any(|n| n == s.name)
            {
                self.refs.once_flags.push(s.name.to_owned());
            }
        }
        match s.section {
            Some(sec) if s.is_anonymous() => {
                self.place(h, sec, s.value.wrapping_add(addend as u64), depth)
            }
            Some(sec)
                if s.sym_type == SymType::Object
                    && matches!(
                        self.index.sections[sec].kind,
                        SectionKind::ReadOnly | SectionKind::Constants | SectionKind::Strings
                    ) =>
            {
                // A constant table's contents are part of what the code does.
                h.tag(tag::READ_ONLY);
                h.bytes(s.demangled.as_bytes());
                h.u64(addend as u64);
                if depth < MAX_DEPTH {
                    let (start, end) = (s.value, s.value.saturating_add(s.size));
                    let r = self.region(sec, start, end, depth + 1);
                    h.u64(r);
                }
            }
            Some(_)
                if s.demangled != s.name
                    && (s.sym_type == SymType::Func
                        || crate::elf::demangle::has_unique_id(s.name)) =>
            {
                // A compiler clone (`.constprop`, `.isra`, `.part`) or a
                // `__UNIQUE_ID()` object (a dynamic-debug descriptor): its
                // number is not stable and several may share the demangled
                // name, so the exact one is recorded beside the checksum and
                // matched across builds by klp-link.
                if self.collect_at == Some(depth) {
                    self.refs.clones.push(s.name.to_owned());
                }
                h.tag(tag::SYMBOL);
                h.bytes(s.demangled.as_bytes());
                h.u64(addend as u64);
            }
            _ => {
                h.tag(tag::SYMBOL);
                h.bytes(s.demangled.as_bytes());
                h.u64(addend as u64);
            }
        }
    }

    /// Hashes the place `offset` bytes into section `sec`.
    pub fn place(&mut self, h: &mut impl HashExt, sec: SectionIndex, offset: u64, depth: u8) {
        let section = &self.index.sections[sec];
        if offset >= section.size.max(1) {
            // Before or past the section (`array - 1`): name the place by the
            // section's first symbol and the signed distance from it.
            h.tag(tag::OUTSIDE);
            let anchor = section.named.first().map(|&i| &self.index.symbols[i]);
            match anchor {
                Some(a) => {
                    h.bytes(a.demangled.as_bytes());
                    h.u64(offset.wrapping_sub(a.value));
                }
                None => {
                    h.bytes(crate::elf::demangle::demangle(section.name).as_bytes());
                    h.u64(offset);
                }
            }
            return;
        }
        if let Some((field, owner, at)) = self.table_entry_owner(sec, offset) {
            // Code that points at an entry of a table folded into the
            // function the entry describes (7.x x86 WARN passes its
            // __bug_table entry): the entry's contents are that function's
            // checksum's, line-insensitively; here it is named by its owner,
            // not by bytes that hold other functions' positions in a shared
            // section.
            h.tag(tag::TABLE_ENTRY);
            h.bytes(section.name.as_bytes());
            h.u64(field);
            self.symbol(h, owner, at as i64, depth);
            return;
        }
        match section.kind {
            SectionKind::Strings => {
                h.tag(tag::STRING);
                h.bytes(string_at(section.data, offset, section.entsize));
            }
            SectionKind::Constants => {
                let size = section.entsize.max(1);
                let start = offset - offset % size;
                h.tag(tag::CONSTANT);
                h.bytes(slice(section.data, start, start.saturating_add(size)));
                h.u64(offset - start);
            }
            _ => match self.index.symbol_at(sec, offset) {
                Some(sym) => {
                    let addend = offset.wrapping_sub(self.index.symbols[sym].value) as i64;
                    self.symbol(h, sym, addend, depth)
                }
                None => {
                    h.tag(tag::ANONYMOUS);
                    if depth < MAX_DEPTH {
                        let end = self.index.region_end(sec, offset);
                        let r = self.region(sec, offset, end, depth + 1);
                        h.u64(r);
                    } else {
                        h.bytes(crate::elf::demangle::demangle(section.name).as_bytes());
                        h.u64(offset);
                    }
                }
            },
        }
    }

    /// For a place `offset` in an entry of a table folded into the function
    /// each entry describes: the offset within the entry, that function, and
    /// where in it the entry's first field points.
    fn table_entry_owner(&self, sec: SectionIndex, offset: u64) -> Option<(u64, SymbolIndex, u64)> {
        let index = self.index;
        let section = &index.sections[sec];
        if lookup(section.name)?.checksum != InChecksum::Folded {
            return None;
        }
        let size = inferred_entry_size(section.size, &section.relocs);
        let start = offset - offset % size;
        let first = index.relocs_in(sec, start, start + 1).first()?;
        let s = &index.symbols[first.symbol];
        let code = s
            .section
            .filter(|&c| index.sections[c].kind == SectionKind::Code)?;
        let at = s.value.wrapping_add(first.addend as u64);
        let owner = index.symbol_at(code, at)?;
        Some((offset - start, owner, at - index.symbols[owner].value))
    }

    /// The hash of the bytes `[start, end)` of `sec` with every relocation in
    /// it replaced by a description of its target.
    pub fn region(&mut self, sec: SectionIndex, start: u64, end: u64, depth: u8) -> u64 {
        if let Some(&h) = self.regions.get(&(sec, start, end, depth)) {
            return h;
        }
        let index = self.index;
        let section = &index.sections[sec];
        let relocs = index.relocs_in(sec, start, end);
        let mut h = Xxh3::new();
        h.tag(tag::REGION);
        h.u64(end.saturating_sub(start));
        if section.kind != SectionKind::Bss {
            let mut bytes = slice(section.data, start, end).to_vec();
            for r in relocs {
                let from = ((r.offset - start) as usize).min(bytes.len());
                let to = (from + usize::from(r.width)).min(bytes.len());
                bytes[from..to].fill(0);
            }
            h.bytes(&bytes);
        }
        for r in relocs {
            h.tag(tag::RELOC);
            h.u64(r.offset - start);
            h.u64(u64::from(r.r_type));
            self.symbol(&mut h, r.symbol, r.addend, depth);
        }
        let digest = h.digest();
        self.regions.insert((sec, start, end, depth), digest);
        digest
    }
}

/// The bytes of `data[start..end]`, clipped to what exists.
pub fn slice(data: &[u8], start: u64, end: u64) -> &[u8] {
    let len = data.len() as u64;
    let (s, e) = (start.min(len), end.min(len).max(start.min(len)));
    &data[s as usize..e as usize]
}

/// The string at `offset` up to its terminating zero unit (units of
/// `entsize` bytes for wide strings).
pub fn string_at(data: &[u8], offset: u64, entsize: u64) -> &[u8] {
    let unit = entsize.max(1) as usize;
    let rest = slice(data, offset, data.len() as u64);
    let mut end = 0;
    while end + unit <= rest.len() {
        if rest[end..end + unit].iter().all(|&b| b == 0) {
            break;
        }
        end += unit;
    }
    &rest[..end]
}
