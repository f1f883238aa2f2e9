//! The instruction stream of one function, hashed independently of where the
//! function and everything it refers to sit.
//!
//! Each instruction contributes its bytes with every position-dependent field
//! zeroed (relocated fields, resolved branch displacements, RIP-relative
//! displacements), followed by a description of what each such field points
//! at. Jump-label sites contribute only their length, since objtool may have
//! replaced the `jmp` with a NOP; the site's key and target are covered by its
//! `__jump_table` entry.

use super::describe::{slice, tag, Describer, HashExt};
use super::lines::LineSites;
use super::tables::Tables;
use crate::arch::{x86_64::X86_64, Arch as _, Field};
use crate::elf::{Reloc, SectionIndex};
use object::elf;

/// `call rel32` with its field zeroed: a `call __fentry__` as compiled.
pub const FENTRY_CALL: [u8; 5] = [0xe8, 0, 0, 0, 0];

/// One contiguous piece of a function: its section and byte range.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub section: SectionIndex,
    pub start: u64,
    pub end: u64,
}

pub fn hash_range(h: &mut impl HashExt, d: &mut Describer, tables: &Tables, range: Range) {
    let index = d.index;
    let sec = range.section;
    let data = slice(index.sections[sec].data, range.start, range.end);
    let relocs = index.relocs_in(sec, range.start, range.end);
    let mut bytes = Vec::with_capacity(16);
    let mut next_reloc = 0;
    let mut lines = LineSites::default();
    for insn in X86_64.decode(data, range.start) {
        let ip = insn.ip;
        let len = u64::from(insn.len);
        let end = insn.end();
        let first = next_reloc;
        while next_reloc < relocs.len() && relocs[next_reloc].offset < end {
            next_reloc += 1;
        }
        let insn_relocs = &relocs[first..next_reloc];
        let jump_label = tables.is_jump_label_site(sec, ip);
        let line = lines.step(index, &insn, insn_relocs, jump_label);

        h.insn(sec, ip);
        // objtool NOPs the site and drops the relocation a `jmp` into
        // another section (a .cold part) had.
        if jump_label {
            h.tag(tag::JUMP_LABEL);
            h.u64(len);
            continue;
        }
        // objtool --mcount NOPped a `call __fentry__` (clang kernels): hash
        // the call the compiler wrote, as the branch below would have.
        if let Some(site) = index.sections[sec].fentry_site_at(ip).filter(|_| len == 5) {
            h.bytes(&FENTRY_CALL);
            h.tag(tag::RELOC);
            h.u64(1);
            h.u64(u64::from(elf::R_X86_64_PLT32.0));
            d.symbol(h, site.symbol, site.addend.wrapping_add(4), 0);
            continue;
        }
        bytes.clear();
        bytes.extend_from_slice(slice(data, ip - range.start, end - range.start));
        let mask = |field: Field, bytes: &mut Vec<u8>| {
            let a = usize::from(field.offset).min(bytes.len());
            let b = usize::from(field.offset + field.size).min(bytes.len());
            bytes[a..b].fill(0);
        };
        for r in insn_relocs {
            mask(reloc_field(ip, len, r), &mut bytes);
        }
        let covered = |field: Field| is_relocated(ip, field, insn_relocs);
        if let Some(branch) = insn.branch.filter(|b| !covered(b.field)) {
            // The assembler chose the short or near form by distance, so a
            // resolved branch is hashed by what it does and where it goes,
            // not by its encoding.
            h.tag(tag::BRANCH);
            h.u64(insn.opcode);
            h.u64(insn.prefixes);
            code_target(h, d, range, branch.target);
            continue;
        }
        let rip = insn
            .displacement
            .filter(|disp| !covered(disp.field))
            .and_then(|disp| {
                let target = disp.pc_target?;
                mask(disp.field, &mut bytes);
                Some(target)
            });
        match line {
            Some(field) => {
                let mut without = bytes.clone();
                mask(field, &mut without);
                h.split_bytes(&bytes, &without);
            }
            None => h.bytes(&bytes),
        }
        for r in insn_relocs {
            h.tag(tag::RELOC);
            h.u64(r.offset.wrapping_sub(ip));
            h.u64(u64::from(r.r_type));
            // S + A - P is taken from the field; the CPU adds it to the end
            // of the instruction, so the target is S + A + (end - P).
            let addend = if r.pc_relative {
                r.addend.wrapping_add((end - r.offset) as i64)
            } else {
                r.addend
            };
            d.symbol(h, r.symbol, addend, 0);
        }
        if let Some(target) = rip {
            h.tag(tag::RIP);
            d.place(h, sec, target, 0);
        }
    }
    lines.finish(h, index, tables, sec);
}

/// The bytes of the instruction at `ip` (`len` long) that relocation `r`
/// writes; a relocation may start before or run past the instruction.
fn reloc_field(ip: u64, len: u64, r: &Reloc) -> Field {
    let a = r.offset.saturating_sub(ip).min(len);
    let b = r
        .offset
        .saturating_add(u64::from(r.width))
        .saturating_sub(ip)
        .min(len);
    Field {
        offset: a as u8,
        size: (b - a) as u8,
    }
}

/// Whether a relocation writes any byte of `field` of the instruction at
/// `ip`: the field is then the linker's, not the assembler's.
pub fn is_relocated(ip: u64, field: Field, relocs: &[Reloc]) -> bool {
    relocs.iter().any(|r| {
        r.offset < ip + u64::from(field.offset + field.size)
            && r.offset.saturating_add(u64::from(r.width)) > ip + u64::from(field.offset)
    })
}

/// A branch target resolved by the assembler: the function it lands in and
/// the offset inside it, or, for an unnamed spot, the offset from the start
/// of the range being hashed.
fn code_target(h: &mut impl HashExt, d: &mut Describer, range: Range, target: u64) {
    match d.index.symbol_at(range.section, target) {
        Some(sym) => {
            let s = &d.index.symbols[sym];
            h.tag(tag::SYMBOL);
            h.bytes(s.demangled.as_bytes());
            h.u64(target.wrapping_sub(s.value));
        }
        None => {
            h.tag(tag::LABEL);
            h.u64(target.wrapping_sub(range.start));
        }
    }
}
