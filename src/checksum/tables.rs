//! Special-section entries that describe code: `__jump_table`, `__ex_table`,
//! `__bug_table`, `.altinstructions`, `.parainstructions`, `.smp_locks`, ...
//!
//! Their entries change what a function does without changing its bytes (a
//! static key, an exception fixup, an alternative's replacement), so each
//! function's checksum covers the entries that point into it. Which tables
//! are left out (they restate the instructions, or objtool adds them after
//! klp-cc ran) and how entry sizes are inferred is
//! [`crate::special_sections`]'s, shared with the extraction.

use crate::elf::{ElfIndex, SectionIndex, SectionKind, SymType};
use crate::special_sections::{inferred_entry_size, is_derived};

/// One table entry that points into code.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub target_offset: u64,
    pub table: SectionIndex,
    pub start: u64,
    pub end: u64,
}

/// A stretch of code that some relocation may point at: one place for a
/// data entry (`S + A`), a few bytes for an instruction's field, whose
/// target also depends on where the instruction ends.
#[derive(Debug, Clone, Copy)]
struct Entered {
    first: u64,
    last: u64,
}

/// The longest reach of an instruction's PC-relative field: the target is
/// `S + A + (end - P)`, and an instruction is at most 15 bytes long.
const MAX_FIELD_REACH: u64 = 15;

/// One list per section, indexed by section number: asked for every
/// instruction, where a hashed map cost an eighth of a manifest.
type PerSection<T> = Vec<Vec<T>>;

fn per_section<T>(index: &ElfIndex) -> PerSection<T> {
    std::iter::repeat_with(Vec::new)
        .take(index.sections.len())
        .collect()
}

fn of<T>(lists: &PerSection<T>, sec: SectionIndex) -> &[T] {
    lists.get(usize::from(sec)).map_or(&[], Vec::as_slice)
}

pub struct Tables {
    /// Per code section: the entries pointing into it, by target offset.
    by_section: PerSection<Entry>,
    /// Per code section: offsets of `asm goto` jump-label sites, which objtool
    /// may turn from `jmp` into a NOP of the same length.
    jump_label_sites: PerSection<u64>,
    /// Per code section: where relocations may point, sorted; built on the
    /// first question, since only functions with line sites ask it.
    entered: std::cell::OnceCell<PerSection<Entered>>,
}

impl Tables {
    pub fn new(index: &ElfIndex) -> Self {
        let mut by_section: PerSection<Entry> = per_section(index);
        let mut jump_label_sites: PerSection<u64> = per_section(index);
        for (table, sec) in index.sections.enumerate() {
            if !is_table(index, table) {
                continue;
            }
            // Not `sh_entsize`: objtool sets it on some tables after the
            // compile, and the checksums must not change when it does.
            let size = inferred_entry_size(sec.size, &sec.relocs);
            for r in &sec.relocs {
                let s = &index.symbols[r.symbol];
                let Some(target) = s.section else { continue };
                if index.sections[target].kind != SectionKind::Code {
                    continue;
                }
                let target_offset = s.value.wrapping_add(r.addend as u64);
                let start = r.offset - r.offset % size;
                by_section[usize::from(target)].push(Entry {
                    target_offset,
                    table,
                    start,
                    end: start.saturating_add(size),
                });
                // jump_entry.code is the first field of each entry.
                if sec.name == "__jump_table" && r.offset == start {
                    jump_label_sites[usize::from(target)].push(target_offset);
                }
            }
        }
        for v in &mut by_section {
            v.sort_by_key(|e| (e.target_offset, e.table, e.start));
        }
        for v in &mut jump_label_sites {
            v.sort_unstable();
            v.dedup();
        }
        Tables {
            by_section,
            jump_label_sites,
            entered: std::cell::OnceCell::new(),
        }
    }

    /// Whether code in `(after, upto]` of section `sec` may be reached
    /// other than by falling through from `after`: some relocation of a
    /// loaded section (a jump table, a `.cold` part's jump back, an
    /// exception fixup, a table entry) points there. Sections objtool adds
    /// are left out, so the answer is the same before and after it ran.
    pub fn entered_between(
        &self,
        index: &ElfIndex,
        sec: SectionIndex,
        after: u64,
        upto: u64,
    ) -> bool {
        let v = of(self.entered.get_or_init(|| self.index_entered(index)), sec);
        let from = v.partition_point(|e| e.first.saturating_add(MAX_FIELD_REACH) < after);
        v[from..]
            .iter()
            .take_while(|e| e.first <= upto)
            .any(|e| e.last > after)
    }

    fn index_entered(&self, index: &ElfIndex) -> PerSection<Entered> {
        let mut entered: PerSection<Entered> = per_section(index);
        for (i, sec) in index.sections.enumerate() {
            if sec.kind == SectionKind::NotAlloc || is_derived(sec.name) {
                continue;
            }
            let code = sec.kind == SectionKind::Code;
            for r in &sec.relocs {
                // objtool drops the relocation of a jump-label `jmp` it
                // turns into a NOP; the `__jump_table` entry keeps the target.
                if code && r.offset > 0 && self.is_jump_label_site(i, r.offset - 1) {
                    continue;
                }
                let s = &index.symbols[r.symbol];
                let Some(target) = s.section else { continue };
                if index.sections[target].kind != SectionKind::Code {
                    continue;
                }
                let first = s.value.wrapping_add(r.addend as u64);
                let last = if code {
                    first.saturating_add(MAX_FIELD_REACH)
                } else {
                    first
                };
                entered[usize::from(target)].push(Entered { first, last });
            }
        }
        for v in &mut entered {
            v.sort_by_key(|e| e.first);
        }
        entered
    }

    /// Entries pointing into `[start, end)` of section `sec`.
    pub fn entries_into(&self, sec: SectionIndex, start: u64, end: u64) -> &[Entry] {
        let v = of(&self.by_section, sec);
        let a = v.partition_point(|e| e.target_offset < start);
        let b = v.partition_point(|e| e.target_offset < end);
        &v[a..b]
    }

    pub fn jump_label_sites(&self, sec: SectionIndex) -> impl Iterator<Item = u64> + '_ {
        of(&self.jump_label_sites, sec).iter().copied()
    }

    pub fn is_jump_label_site(&self, sec: SectionIndex, offset: u64) -> bool {
        of(&self.jump_label_sites, sec)
            .binary_search(&offset)
            .is_ok()
    }
}

/// A loaded, non-code section of relocations with no named objects in it,
/// that is not derived from the code.
fn is_table(index: &ElfIndex, sec: SectionIndex) -> bool {
    let s = &index.sections[sec];
    !s.relocs.is_empty()
        && matches!(
            s.kind,
            SectionKind::ReadOnly | SectionKind::Writable | SectionKind::Constants
        )
        && !is_derived(s.name)
        && !s
            .named
            .iter()
            .any(|&i| index.symbols[i].sym_type == SymType::Object)
}
