//! Whether the address of a read-only data object escapes its readers.
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

use iced_x86::{Decoder, DecoderOptions, Formatter as _, GasFormatter, Mnemonic, OpKind};

use crate::checksum::elf_index::{ElfIndex, SectionKind, SymType};

/// How far past a PC-relative field its instruction may end: the field is
/// followed by at most an immediate of four bytes (x86-64 has no longer
/// one alongside a displacement), so the addend is `-(4 + imm)`.
const PC_BIAS: std::ops::RangeInclusive<u64> = 4..=8;

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

/// The first use of the address of `sym` (a data object of `index`) that
/// is not a value load by code, if any.
pub fn escaping_use(index: &ElfIndex, sym: usize) -> Option<EscapingUse> {
    let s = &index.symbols[sym];
    let home = s.section?;
    let (start, end) = (s.value, s.value.saturating_add(s.size.max(1)));
    for (j, section) in index.sections.iter().enumerate() {
        if section.kind == SectionKind::NotAlloc || section.name.starts_with(".discard.") {
            continue;
        }
        for r in &section.relocs {
            let t = &index.symbols[r.symbol];
            if t.section != Some(home) {
                continue;
            }
            let base = t.value.wrapping_add(r.addend as u64);
            let reaches = if r.pc_relative {
                PC_BIAS
                    .clone()
                    .any(|b| (start..end).contains(&base.wrapping_add(b)))
            } else {
                (start..end).contains(&base)
            };
            let named = r.symbol == sym;
            if !reaches && !named {
                continue;
            }
            // The object's own pointers to itself travel with its copy.
            if j == home && (start..end).contains(&r.offset) {
                continue;
            }
            let escape = if section.kind == SectionKind::Code {
                code_use(index, j, r.offset)
            } else {
                Some(EscapingUse {
                    place: place_name(index, j, r.offset),
                    what: "its address is stored in data".to_owned(),
                })
            };
            if escape.is_some() {
                return escape;
            }
        }
    }
    None
}

/// `None` when the instruction holding the relocated field at `offset` of
/// code section `sec` reads memory at that address; otherwise the use.
fn code_use(index: &ElfIndex, sec: usize, offset: u64) -> Option<EscapingUse> {
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
    let mut decoder = Decoder::with_ip(64, bytes, func.value, DecoderOptions::NONE);
    while decoder.can_decode() {
        let insn = decoder.decode();
        if insn.next_ip() <= offset {
            continue;
        }
        if insn.ip() > offset || insn.is_invalid() {
            break;
        }
        let offsets = decoder.get_constant_offsets(&insn);
        let in_displacement = offsets.has_displacement()
            && insn.ip() + offsets.displacement_offset() as u64 == offset;
        let reads_memory = (0..insn.op_count()).any(|i| insn.op_kind(i) == OpKind::Memory);
        if in_displacement && reads_memory && insn.mnemonic() != Mnemonic::Lea {
            return None;
        }
        let mut text = String::new();
        GasFormatter::new().format(&insn, &mut text);
        return escapes(format!("its address is taken by `{text}`"));
    }
    escapes("its address is used where no instruction starts".to_owned())
}

fn place_name(index: &ElfIndex, sec: usize, offset: u64) -> String {
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
