//! Pieces of unnamed code that copied code needs, copied alone rather than
//! with their whole section: an alternative's replacement in
//! `.altinstr_replacement`, a `static_cpu_has()` test in `.altinstr_aux`.
//! Such sections hold pieces for every function of the object; copying all
//! of them would drag in references to functions the patch does not touch.
//!
//! How far a piece reaches depends on who refers to it:
//! - from a special-section entry (an alternative's replacement): up to the
//!   next place that table refers to in the section, since the pieces of
//!   one table lie back to back (other references, such as an exception
//!   table entry inside a replacement, do not end it);
//! - from code (a jump): every instruction reachable from there inside the
//!   section, following its own branches until each path leaves the section
//!   or ends, so that no path can run off the end of the copy.
//!
//! Data that the patch needs a fresh copy of but that shares its section
//! with other objects (the warn-once flags in `.data..once`, dynamic debug
//! descriptors in `__dyndbg`) is copied the same way, one object at a time.

use std::collections::{BTreeSet, HashMap};

use crate::arch::{x86_64::X86_64, Arch as _, Insn};
use object::write::{SectionId, SymbolId};

use super::{Copier, ExtractError, Pending};
use crate::elf::{ElfIndex, SectionIndex, SectionKind as Kind, SymbolIndex};

/// The pieces copied so far, per source section.
#[derive(Default)]
pub(super) struct Pieces {
    by_section: HashMap<SectionIndex, Copies>,
}

/// The output section of one source section's pieces.
struct Copies {
    id: SectionId,
    sym: SymbolId,
    pieces: Vec<Piece>,
}

/// Source bytes `[start, end)`, reached at `entry`, copied to `out`.
struct Piece {
    entry: u64,
    start: u64,
    end: u64,
    out: u64,
}

impl Pieces {
    /// The output section symbol and offset that stand for source place
    /// `at` of section `sec`, if a copied piece holds it. A piece entered
    /// exactly there is preferred: it holds all that is reachable from it.
    pub(super) fn find(&self, sec: SectionIndex, at: u64) -> Option<(SymbolId, u64)> {
        let copies = self.by_section.get(&sec)?;
        let p = copies
            .pieces
            .iter()
            .find(|p| p.entry == at)
            .or_else(|| copies.pieces.iter().find(|p| p.start <= at && at < p.end))?;
        Some((copies.sym, p.out + (at - p.start)))
    }

    /// Like [`Pieces::find`], with the output section instead of its symbol.
    pub(super) fn find_with_section(&self, sec: SectionIndex, at: u64) -> Option<(SectionId, u64)> {
        let (_, out) = self.find(sec, at)?;
        Some((self.by_section.get(&sec)?.id, out))
    }
}

impl Copier<'_, '_> {
    /// Copies the piece of unnamed code section `sec` that is reached at
    /// `place` (once) and returns the output section symbol and the offset
    /// that stand for `place`.
    pub(super) fn piece(
        &mut self,
        sec: SectionIndex,
        place: u64,
    ) -> Result<(SymbolId, u64), ExtractError> {
        if let Some(found) = self.pieces.find(sec, place) {
            return Ok(found);
        }
        let index = self.index;
        let section = &index.sections[sec];
        // An empty replacement may sit at the very end.
        if place > section.size || (place == section.size && !self.in_table) {
            return Err(self.malformed(format!(
                "a reference to {}+{place:#x} lies outside the section",
                section.name
            )));
        }
        let (start, end) = if self.in_table {
            (place, self.table_piece_end(sec, place))
        } else {
            reachable_span(index, sec, place).map_err(|e| self.malformed(e))?
        };
        let first = !self.pieces.by_section.contains_key(&sec);
        let (id, sym) = self.piece_section(sec)?;
        let align = if first { section.align.max(1) } else { 1 };
        let out =
            self.out
                .append_section_data(id, &section.data[start as usize..end as usize], align);
        self.add_piece(sec, place, start, end, out);
        Ok((sym, out + (place - start)))
    }
}

impl Copier<'_, '_> {
    /// Copies the bytes `[start, end)` of data section `sec` alone (once):
    /// an unnamed constant. Returns the output section symbol and the
    /// offset of the copy of `start`.
    pub(super) fn data_piece(
        &mut self,
        sec: SectionIndex,
        start: u64,
        end: u64,
    ) -> Result<(SymbolId, u64), ExtractError> {
        if let Some(found) = self.pieces.find(sec, start) {
            return Ok(found);
        }
        let section = &self.index.sections[sec];
        let (id, sym) = self.piece_section(sec)?;
        let out = self.out.append_section_data(
            id,
            &section.data[start as usize..end as usize],
            section.align.max(1),
        );
        self.add_piece(sec, start, start, end, out);
        Ok((sym, out))
    }

    /// Copies named object `n` of section `sec` alone (once): a section
    /// that holds several objects (`.data..once`, `__dyndbg`) when only one
    /// belongs in the patch. Returns the output section symbol and the
    /// offset of the object's copy.
    pub(super) fn object_piece(
        &mut self,
        sec: SectionIndex,
        n: SymbolIndex,
    ) -> Result<(SymbolId, u64), ExtractError> {
        let index = self.index;
        let o = &index.symbols[n];
        if let Some(found) = self.pieces.find(sec, o.value) {
            return Ok(found);
        }
        let section = &index.sections[sec];
        let (start, end) = (o.value, o.value.saturating_add(o.size));
        // An empty object (a lockdep key without lockdep: an empty struct)
        // is copied as no bytes: only its address is used.
        if end > section.size {
            return Err(self.malformed(format!(
                "`{}` has no extent within {} to copy",
                o.name, section.name
            )));
        }
        let (id, sym) = self.piece_section(sec)?;
        let align = section.align.max(1);
        let out = if section.kind == Kind::Bss {
            self.out.append_section_bss(id, o.size, align)
        } else {
            self.out
                .append_section_data(id, &section.data[start as usize..end as usize], align)
        };
        self.add_piece(sec, o.value, start, end, out);
        Ok((sym, out))
    }

    /// Where the piece of `sec` that a special-section entry points at, at
    /// `place`, ends: at the next place the table being carried points at
    /// in `sec` (the pieces of one table lie back to back), else at the next
    /// place anything refers to.
    fn table_piece_end(&self, sec: SectionIndex, place: u64) -> u64 {
        let index = self.index;
        let Some(t) = self.carrying else {
            return index.region_end(sec, place);
        };
        index.sections[t]
            .relocs
            .iter()
            .filter(|r| index.symbols[r.symbol].section == Some(sec))
            .map(|r| index.symbols[r.symbol].value.wrapping_add(r.addend as u64))
            .filter(|&p| p > place)
            .min()
            .unwrap_or(index.sections[sec].size)
            .min(index.sections[sec].size)
    }

    /// The output section that holds the pieces of source section `sec`.
    pub(super) fn piece_section(
        &mut self,
        sec: SectionIndex,
    ) -> Result<(SectionId, SymbolId), ExtractError> {
        if let Some(c) = self.pieces.by_section.get(&sec) {
            return Ok((c.id, c.sym));
        }
        let id = self.add_section_like(sec, self.index.sections[sec].name)?;
        let sym = self.out.section_symbol(id);
        self.pieces.by_section.insert(
            sec,
            Copies {
                id,
                sym,
                pieces: Vec::new(),
            },
        );
        Ok((id, sym))
    }

    /// Records that source bytes `[start, end)` of `sec`, reached at
    /// `entry`, are at `out` of its piece section, and queues their
    /// relocations.
    pub(super) fn add_piece(
        &mut self,
        sec: SectionIndex,
        entry: u64,
        start: u64,
        end: u64,
        out: u64,
    ) {
        let copies = self
            .pieces
            .by_section
            .get_mut(&sec)
            .expect("piece_section ran");
        copies.pieces.push(Piece {
            entry,
            start,
            end,
            out,
        });
        let id = copies.id;
        self.pending.push(Pending {
            sec,
            start,
            end,
            id,
            out_offset: out,
            in_table: self.in_table,
        });
    }
}

/// The smallest span of code section `sec` that holds every instruction
/// reachable from `entry` without leaving the section.
fn reachable_span(index: &ElfIndex, sec: SectionIndex, entry: u64) -> Result<(u64, u64), String> {
    let section = &index.sections[sec];
    let mut todo = vec![entry];
    let mut decoded = BTreeSet::new();
    let (mut lo, mut hi) = (entry, entry);
    while let Some(at) = todo.pop() {
        if at >= section.size || decoded.contains(&at) {
            continue;
        }
        for insn in X86_64.decode(&section.data[at as usize..], at) {
            if !insn.valid {
                return Err(format!(
                    "cannot decode the instruction at {}+{:#x}",
                    section.name, insn.ip
                ));
            }
            if !decoded.insert(insn.ip) {
                break;
            }
            lo = lo.min(insn.ip);
            hi = hi.max(insn.end());
            if let Some(t) = branch_target_in_section(index, sec, &insn) {
                todo.push(t);
            }
            if insn.ends_path {
                break;
            }
        }
    }
    Ok((lo, hi))
}

/// Where a direct branch goes, when that is inside section `sec`: from its
/// relocation if it has one, else from its encoded displacement.
fn branch_target_in_section(index: &ElfIndex, sec: SectionIndex, insn: &Insn) -> Option<u64> {
    let branch = insn.branch?;
    match index.relocs_in(sec, insn.ip, insn.end()).first() {
        Some(r) => {
            let s = &index.symbols[r.symbol];
            (s.section == Some(sec)).then(|| {
                s.value
                    .wrapping_add(r.addend as u64)
                    .wrapping_add(insn.end() - r.offset)
            })
        }
        None => Some(branch.target),
    }
}
