//! Special-section entries that describe code: `__jump_table`, `__ex_table`,
//! `__bug_table`, `.altinstructions`, `.parainstructions`, `.smp_locks`, ...
//!
//! Their entries change what a function does without changing its bytes (a
//! static key, an exception fixup, an alternative's replacement), so each
//! function's checksum covers the entries that point into it. Entry sizes
//! differ between kernel versions and configurations, so they are inferred:
//! the smallest size that splits the section into entries with the same
//! relocation layout. Sections that only restate what the instructions
//! already say (mcount/fentry records, objtool's tables) are left out; objtool
//! adds several of them after klp-cc ran, and checksums must not depend on
//! whether it has.

use std::collections::HashMap;

use super::elf_index::{ElfIndex, Reloc, SectionKind, SymType};

/// Sections derived from the instructions themselves, or added by objtool.
const DERIVED: &[&str] = &[
    "__mcount_loc",
    "__patchable_function_entries",
    ".orc_unwind",
    ".orc_unwind_ip",
    ".orc_header",
    ".retpoline_sites",
    ".return_sites",
    ".call_sites",
    ".static_call_sites",
    ".ibt_endbr_seal",
    ".cfi_sites",
    ".eh_frame",
];

/// One table entry that points into code.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub target_offset: u64,
    pub table: usize,
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

pub struct Tables {
    /// Per code section: the entries pointing into it, by target offset.
    by_section: HashMap<usize, Vec<Entry>>,
    /// Per code section: offsets of `asm goto` jump-label sites, which objtool
    /// may turn from `jmp` into a NOP of the same length.
    jump_label_sites: HashMap<usize, Vec<u64>>,
    /// Per code section: where relocations may point, sorted; built on the
    /// first question, since only functions with line sites ask it.
    entered: std::cell::OnceCell<HashMap<usize, Vec<Entered>>>,
}

impl Tables {
    pub fn new(index: &ElfIndex) -> Self {
        let mut by_section: HashMap<usize, Vec<Entry>> = HashMap::new();
        let mut jump_label_sites: HashMap<usize, Vec<u64>> = HashMap::new();
        for (table, sec) in index.sections.iter().enumerate() {
            if !is_table(index, table) {
                continue;
            }
            let size = entry_size(sec.size, &sec.relocs);
            for r in &sec.relocs {
                let s = &index.symbols[r.symbol];
                let Some(target) = s.section else { continue };
                if index.sections[target].kind != SectionKind::Code {
                    continue;
                }
                let target_offset = s.value.wrapping_add(r.addend as u64);
                let start = r.offset - r.offset % size;
                by_section.entry(target).or_default().push(Entry {
                    target_offset,
                    table,
                    start,
                    end: start.saturating_add(size),
                });
                // jump_entry.code is the first field of each entry.
                if sec.name == "__jump_table" && r.offset == start {
                    jump_label_sites
                        .entry(target)
                        .or_default()
                        .push(target_offset);
                }
            }
        }
        for v in by_section.values_mut() {
            v.sort_by_key(|e| (e.target_offset, e.table, e.start));
        }
        for v in jump_label_sites.values_mut() {
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
    pub fn entered_between(&self, index: &ElfIndex, sec: usize, after: u64, upto: u64) -> bool {
        let entered = self.entered.get_or_init(|| self.index_entered(index));
        let Some(v) = entered.get(&sec) else {
            return false;
        };
        let from = v.partition_point(|e| e.first.saturating_add(MAX_FIELD_REACH) < after);
        v[from..]
            .iter()
            .take_while(|e| e.first <= upto)
            .any(|e| e.last > after)
    }

    fn index_entered(&self, index: &ElfIndex) -> HashMap<usize, Vec<Entered>> {
        let mut entered: HashMap<usize, Vec<Entered>> = HashMap::new();
        for (i, sec) in index.sections.iter().enumerate() {
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
                entered
                    .entry(target)
                    .or_default()
                    .push(Entered { first, last });
            }
        }
        for v in entered.values_mut() {
            v.sort_by_key(|e| e.first);
        }
        entered
    }

    /// Entries pointing into `[start, end)` of section `sec`.
    pub fn entries_into(&self, sec: usize, start: u64, end: u64) -> &[Entry] {
        let Some(v) = self.by_section.get(&sec) else {
            return &[];
        };
        let a = v.partition_point(|e| e.target_offset < start);
        let b = v.partition_point(|e| e.target_offset < end);
        &v[a..b]
    }

    pub fn jump_label_sites(&self, sec: usize) -> impl Iterator<Item = u64> + '_ {
        self.jump_label_sites
            .get(&sec)
            .into_iter()
            .flatten()
            .copied()
    }

    pub fn is_jump_label_site(&self, sec: usize, offset: u64) -> bool {
        self.jump_label_sites
            .get(&sec)
            .is_some_and(|v| v.binary_search(&offset).is_ok())
    }
}

/// Whether a section only restates the code or is added by objtool.
pub fn is_derived(name: &str) -> bool {
    DERIVED.contains(&name) || name.starts_with(".discard.")
}

/// A loaded, non-code section of relocations with no named objects in it,
/// that is not derived from the code.
fn is_table(index: &ElfIndex, sec: usize) -> bool {
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

/// The smallest entry size that divides the section into entries which all
/// carry relocations at the same offsets; the whole section if none does.
pub(crate) fn entry_size(size: u64, relocs: &[Reloc]) -> u64 {
    if size == 0 {
        return 1;
    }
    let mut divisors: Vec<u64> = (1..)
        .take_while(|d| d * d <= size)
        .filter(|d| size % d == 0)
        .flat_map(|d| [d, size / d])
        .collect();
    divisors.sort_unstable();
    divisors.dedup();
    divisors
        .into_iter()
        .find(|&e| uniform(size, e, relocs))
        .unwrap_or(size)
}

fn uniform(size: u64, e: u64, relocs: &[Reloc]) -> bool {
    let first: Vec<u64> = relocs
        .iter()
        .take_while(|r| r.offset < e)
        .map(|r| r.offset)
        .collect();
    if first.is_empty() || relocs.len() as u64 != first.len() as u64 * (size / e) {
        return false;
    }
    relocs.chunks(first.len()).enumerate().all(|(k, chunk)| {
        let base = k as u64 * e;
        chunk.iter().zip(&first).all(|(r, &f)| r.offset == base + f)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relocs(offsets: &[u64]) -> Vec<Reloc> {
        offsets
            .iter()
            .map(|&offset| Reloc {
                offset,
                r_type: 2,
                width: 4,
                pc_relative: true,
                symbol: 0,
                addend: 0,
            })
            .collect()
    }

    #[test]
    fn infers_kernel_entry_sizes() {
        // __jump_table: code, target, key per 16 bytes.
        assert_eq!(
            entry_size(48, &relocs(&[0, 4, 8, 16, 20, 24, 32, 36, 40])),
            16
        );
        // __bug_table with DEBUG_BUGVERBOSE: address, file per 12 bytes.
        assert_eq!(entry_size(36, &relocs(&[0, 4, 12, 16, 24, 28])), 12);
        // one entry: the whole section.
        assert_eq!(entry_size(12, &relocs(&[0, 4])), 12);
        // .smp_locks: one pointer per 4 bytes.
        assert_eq!(entry_size(12, &relocs(&[0, 4, 8])), 4);
        // irregular: one entry.
        assert_eq!(entry_size(24, &relocs(&[0, 4, 16])), 24);
    }
}
