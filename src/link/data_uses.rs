//! How the code and data of an object use one of its data objects: whether
//! its address escapes the code that reads it, and which functions refer to
//! it.
//!
//! A live patch may carry its own copy of a constant only when nothing can
//! hold the running kernel's copy's address: then replacing every function
//! that reads it delivers the new contents completely. Once the address is
//! stored, passed to a function, compared, or referenced from other data
//! (an ops struct handed to the VFS ends up in inodes that outlive the
//! patch), the running kernel keeps pointing at the old copy, and a new one
//! would only reach objects created after loading.
//!
//! So a use counts as safe only when it is an instruction that reads memory
//! through the object's address as a displacement (`mov table(,%rax,8),
//! %rsi`, `call *ops+8(%rip)`); an address loaded into a register (`lea`,
//! `mov $table`) might go anywhere. When unsure, it escapes.

use std::fmt;
use std::ops::Range;

use crate::arch::{insn_at, x86_64::X86_64, Arch as _};
use crate::elf::{ElfIndex, Reloc, SectionIndex, SectionKind, SymType, SymbolIndex};

/// How far past a PC-relative field in code its instruction may end, when
/// the instruction cannot be decoded: the field is followed by at most an
/// immediate of four bytes (x86-64 has no longer one alongside a
/// displacement). 0 covers a field that is data placed in code.
const PC_BIAS: std::ops::RangeInclusive<u64> = 0..=8;

/// One use of an object's address that lets it escape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscapingUse {
    /// Where: a function (`name+0x1c`) or a section.
    pub place: String,
    /// What the use is.
    pub what: String,
}

impl fmt::Display for EscapingUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {}", self.what, self.place)
    }
}

/// Every place (section, offset of the relocated field) outside `sym`
/// itself whose relocation points into `sym`, a data object of `index`.
fn references(index: &ElfIndex, sym: SymbolIndex) -> Vec<(SectionIndex, u64)> {
    let s = &index.symbols[sym];
    let Some(home) = s.section else {
        return Vec::new();
    };
    let (start, end) = (s.value, s.value.saturating_add(s.size.max(1)));
    let mut out = Vec::new();
    for (j, section) in index.sections.enumerate() {
        if section.kind == SectionKind::NotAlloc || section.name.starts_with(".discard.") {
            continue;
        }
        for r in &section.relocs {
            if index.symbols[r.symbol].section != Some(home) {
                continue;
            }
            // The object's own pointers to itself travel with it.
            let inside = j == home && (start..end).contains(&r.offset);
            if !inside && (r.symbol == sym || reaches(index, j, r, start..end)) {
                out.push((j, r.offset));
            }
        }
    }
    out
}

/// Whether relocation `r` of section `j` refers to an address in `object`
/// (in the section of `r`'s symbol). An absolute field refers to S + A, and
/// so does a PC-relative one in data: its reader adds the field's own
/// address back. In code the CPU adds the instruction's end instead, which
/// decoding gives; when it cannot, every end the instruction may have
/// counts, so that a use is found rather than missed.
fn reaches(index: &ElfIndex, j: SectionIndex, r: &Reloc, object: Range<u64>) -> bool {
    let base = index.symbols[r.symbol].value.wrapping_add(r.addend as u64);
    if !r.pc_relative || index.sections[j].kind != SectionKind::Code {
        return object.contains(&base);
    }
    let mut ends = PC_BIAS.map(|b| base.wrapping_add(b));
    if !ends.clone().any(|a| object.contains(&a)) {
        return false;
    }
    match instruction_end(index, j, r.offset) {
        Some(end) => object.contains(&base.wrapping_add(end - r.offset)),
        None => ends.any(|a| object.contains(&a)),
    }
}

/// The end of the instruction of function code that holds the byte at
/// `offset` of code section `sec`, when it decodes.
fn instruction_end(index: &ElfIndex, sec: SectionIndex, offset: u64) -> Option<u64> {
    let f = &index.symbols[index.symbol_at(sec, offset)?];
    let bytes = index.sections[sec]
        .data
        .get(f.value as usize..f.value.saturating_add(f.size) as usize)?;
    insn_at(&X86_64, bytes, f.value, offset)
        .filter(|i| i.valid)
        .map(|i| i.end())
}

/// The first use of the address of `sym` (a data object of `index`) that
/// is not a value load by code, if any.
pub fn escaping_use(index: &ElfIndex, sym: SymbolIndex) -> Option<EscapingUse> {
    references(index, sym).into_iter().find_map(|(j, offset)| {
        if index.sections[j].kind == SectionKind::Code {
            code_use(index, j, offset)
        } else {
            Some(EscapingUse {
                place: place_name(index, j, offset),
                what: "its address is stored in data".to_owned(),
            })
        }
    })
}

/// The functions whose code refers to `sym`, by symbol index; a reference
/// from code outside every function is `None`.
pub fn referring_functions(index: &ElfIndex, sym: SymbolIndex) -> Vec<Option<SymbolIndex>> {
    let mut out: Vec<Option<SymbolIndex>> = references(index, sym)
        .into_iter()
        .filter(|&(j, _)| index.sections[j].kind == SectionKind::Code)
        .map(|(j, offset)| {
            index
                .symbol_at(j, offset)
                .filter(|&f| index.symbols[f].sym_type == SymType::Func)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `None` when the instruction holding the relocated field at `offset` of
/// code section `sec` reads memory at that address; otherwise the use.
fn code_use(index: &ElfIndex, sec: SectionIndex, offset: u64) -> Option<EscapingUse> {
    let place = place_name(index, sec, offset);
    let escapes = |what: String| {
        Some(EscapingUse {
            place: place.clone(),
            what,
        })
    };
    let Some(f) = index.symbol_at(sec, offset) else {
        return escapes("its address is used by code outside every function".to_owned());
    };
    let func = &index.symbols[f];
    let data = index.sections[sec].data;
    let Some(bytes) = data.get(func.value as usize..func.value.saturating_add(func.size) as usize)
    else {
        return escapes("its address is used by code klp-link cannot read".to_owned());
    };
    let Some(insn) = insn_at(&X86_64, bytes, func.value, offset) else {
        return escapes("its address is used where no instruction starts".to_owned());
    };
    let in_displacement = insn
        .displacement
        .is_some_and(|d| u64::from(d.field.offset) == offset - insn.ip);
    if insn.valid && in_displacement && insn.accesses_memory {
        return None;
    }
    let start = (insn.ip - func.value) as usize;
    let text = X86_64.format(&bytes[start..], insn.ip);
    escapes(format!("its address is taken by `{text}`"))
}

fn place_name(index: &ElfIndex, sec: SectionIndex, offset: u64) -> String {
    let section = &index.sections[sec];
    match index.symbol_at(sec, offset) {
        Some(n) => {
            let s = &index.symbols[n];
            let what = if s.sym_type == SymType::Func {
                "function"
            } else {
                "object"
            };
            format!(
                "{what} `{}+{:#x}` ({})",
                s.name,
                offset - s.value,
                section.name
            )
        }
        None => format!("{}+{offset:#x}", section.name),
    }
}
