//! The instruction stream of one function, hashed independently of where the
//! function and everything it refers to sit.
//!
//! Each instruction contributes its bytes with every position-dependent field
//! zeroed (relocated fields, resolved branch displacements, RIP-relative
//! displacements), followed by a description of what each such field points
//! at. Jump-label sites contribute only their length, since objtool may have
//! replaced the `jmp` with a NOP; the site's key and target are covered by its
//! `__jump_table` entry.

use iced_x86::{Decoder, DecoderOptions, Instruction, OpKind};

use super::describe::{slice, tag, Describer, HashExt};
use super::lines::LineSites;
use super::tables::Tables;
use crate::elf::SectionIndex;

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
    let mut decoder = Decoder::with_ip(64, data, range.start, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    let mut bytes = Vec::with_capacity(16);
    let mut next_reloc = 0;
    let mut lines = LineSites::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        let ip = insn.ip();
        let len = insn.len() as u64;
        let end = ip + len;
        let first = next_reloc;
        while next_reloc < relocs.len() && relocs[next_reloc].offset < end {
            next_reloc += 1;
        }
        let insn_relocs = &relocs[first..next_reloc];
        let offsets = (!insn.is_invalid()).then(|| decoder.get_constant_offsets(&insn));
        let jump_label = tables.is_jump_label_site(sec, ip);
        let line = lines.step(index, &insn, offsets.as_ref(), insn_relocs, jump_label);

        h.insn(sec, ip);
        // objtool NOPs the site and drops the relocation a `jmp` into
        // another section (a .cold part) had.
        if jump_label {
            h.tag(tag::JUMP_LABEL);
            h.u64(len);
            continue;
        }
        bytes.clear();
        bytes.extend_from_slice(slice(data, ip - range.start, end - range.start));
        let mask = |from: u64, width: u64, bytes: &mut Vec<u8>| {
            let a = from.saturating_sub(ip).min(len) as usize;
            let b = from.saturating_add(width).saturating_sub(ip).min(len) as usize;
            bytes[a..b].fill(0);
        };
        for r in insn_relocs {
            mask(r.offset, u64::from(r.width), &mut bytes);
        }
        let covered = |at: usize, size: usize| {
            let (a, b) = (ip + at as u64, ip + (at + size) as u64);
            insn_relocs
                .iter()
                .any(|r| r.offset < b && r.offset.saturating_add(u64::from(r.width)) > a)
        };
        let mut rip = None;
        if let Some(offsets) = offsets {
            let is_branch = (0..insn.op_count()).any(|i| {
                matches!(
                    insn.op_kind(i),
                    OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
                )
            });
            if is_branch
                && offsets.has_immediate()
                && !covered(offsets.immediate_offset(), offsets.immediate_size())
            {
                // The assembler chose the short or near form by distance, so
                // a resolved branch is hashed by what it does and where it
                // goes, not by its encoding.
                h.tag(tag::BRANCH);
                h.u64(insn.mnemonic() as u64);
                h.u64(u64::from(insn.has_repne_prefix()) | u64::from(insn.has_rep_prefix()) << 1);
                code_target(h, d, range, insn.near_branch_target());
                continue;
            }
            if insn.is_ip_rel_memory_operand()
                && offsets.has_displacement()
                && !covered(offsets.displacement_offset(), offsets.displacement_size())
            {
                mask(
                    ip + offsets.displacement_offset() as u64,
                    offsets.displacement_size() as u64,
                    &mut bytes,
                );
                rip = Some(insn.ip_rel_memory_address());
            }
        }
        match line {
            Some((at, size)) => {
                let mut without = bytes.clone();
                without[at..at + size].fill(0);
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
