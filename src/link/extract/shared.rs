//! Functions that share their section with others: copied as their own byte
//! range instead of the whole section.
//!
//! The kernel puts functions together by attribute even with
//! `-ffunction-sections` (`__sched` in `.sched.text`, `__lockfunc` in
//! `.spinlock.text`, `__irq_entry`, `__cpuidle`), and a build without the
//! flag has all of `.text` in one section. The copy moves, so every
//! reference the assembler resolved inside the section and that leaves the
//! range (a call to a static function beside it, a RIP-relative operand
//! naming a place outside) gets a relocation to what it pointed at: the
//! running kernel's function, or its copy when the patch carries it.
//! Special-section entries about the range travel with it as for any copied
//! piece. A function that cannot be delimited exactly is refused: one
//! without a size, one that other symbols overlap, or one whose last
//! instruction would fall through into whatever follows.

use object::write::SectionId;

use super::{Copier, ExtractError};
use crate::arch::{x86_64::X86_64, Arch as _, Field, Insn};
use crate::checksum::code::is_relocated;
use crate::elf::{DefinedFunction, SectionIndex};

/// A function copied out of a shared section, to `out` of output section
/// `id`.
pub(super) struct Moved {
    f: DefinedFunction,
    id: SectionId,
    out: u64,
}

/// `R_X86_64_PC32` and `R_X86_64_PLT32`: what a resolved operand or call
/// becomes once its target may be elsewhere.
const R_PC32: u32 = 2;
const R_PLT32: u32 = 4;

/// The one-byte x86 NOP, which gcc's patchable function entries are made of.
const NOP: u8 = 0x90;

impl Copier<'_, '_> {
    /// Copies function `f` (once) and returns the output section and the
    /// offset of its copy there.
    pub(super) fn copy_function(
        &mut self,
        f: DefinedFunction,
    ) -> Result<(SectionId, u64), ExtractError> {
        let sec = f.section();
        if self.index.sections[sec].named.len() == 1 {
            let (id, _) = self.copy_section(sec)?;
            return Ok((id, f.start()));
        }
        if let Some((id, at)) = self.pieces.find_with_section(sec, f.start()) {
            return Ok((id, at));
        }
        self.delimit(f)?;
        let (id, _) = self.piece_section(sec)?;
        let section = &self.index.sections[sec];
        let (lead, start, end) = (self.padding_start(f), f.start(), f.end());
        let at = self.append_code(
            id,
            &section.data[lead as usize..end as usize],
            section.align.max(1),
        );
        self.add_piece(sec, start, lead, end, at);
        let out = at + (start - lead);
        self.moved.push(Moved { f, id, out });
        Ok((id, out))
    }

    /// Where the bytes that belong to `f` begin: before `f` itself when gcc
    /// put NOPs there (`-fpatchable-function-entry=N,N`, CALL_PADDING),
    /// which it records in `__patchable_function_entries`. Call depth
    /// tracking writes its accounting thunk into them for calls to the
    /// function: a copy without them would have the thunk written over
    /// whatever precedes it, and objtool's `__pfx_` symbol would be missing.
    fn padding_start(&self, f: DefinedFunction) -> u64 {
        const MAX_PADDING: u64 = 64;
        let index = self.index;
        let (sec, start) = (f.section(), f.start());
        let code = &index.sections[sec].data;
        index
            .sections
            .enumerate()
            .filter(|(_, t)| t.name == "__patchable_function_entries")
            .flat_map(|(t, table)| index.relocs_in(t, 0, table.size))
            .filter_map(|r| {
                let target = &index.symbols[r.symbol];
                (target.section == Some(sec)).then(|| target.value.wrapping_add(r.addend as u64))
            })
            .filter(|&at| at < start && start - at <= MAX_PADDING)
            .filter(|&at| code[at as usize..start as usize].iter().all(|&b| b == NOP))
            .min()
            .unwrap_or(start)
    }

    /// Gives the references that `moved` had resolved inside its section
    /// their relocations.
    pub(super) fn relocate_moved(&mut self, moved: Moved) -> Result<(), ExtractError> {
        let f = moved.f;
        let code = &self.index.sections[f.section()].data[f.start() as usize..f.end() as usize];
        for insn in X86_64.decode(code, f.start()) {
            self.relocate_resolved(f, &insn, moved.id, moved.out)?;
        }
        Ok(())
    }

    /// Checks that `f`'s extent is exactly known.
    fn delimit(&self, f: DefinedFunction) -> Result<(), ExtractError> {
        let index = self.index;
        let s = &index.symbols[f.symbol()];
        let section = &index.sections[f.section()];
        let refuse = |why: String| {
            Err(self.refuse(format!(
                "`{}` shares its section {} with other functions, and {why}, so klp-link \
                 cannot copy it alone",
                s.name, section.name
            )))
        };
        if s.size == 0 {
            return refuse("it has no size".into());
        }
        if let Some(&o) = section.named.iter().find(|&&o| {
            let v = index.symbols[o].value;
            v > f.start() && v < f.end()
        }) {
            return refuse(format!("`{}` lies inside it", index.symbols[o].name));
        }
        let code = &section.data[f.start() as usize..f.end() as usize];
        let insns: Vec<Insn> = X86_64.decode(code, f.start()).collect();
        if let Some(bad) = insns.iter().find(|i| !i.valid) {
            return refuse(format!("its instruction at {:#x} does not decode", bad.ip));
        }
        match insns.last() {
            Some(last)
                if last.end() == f.end() && (last.ends_path || last.is_call || last.is_trap) =>
            {
                Ok(())
            }
            _ => refuse("its last instruction may run on into what follows it".into()),
        }
    }

    /// Gives a relocation to a branch or RIP-relative operand of `insn` that
    /// the assembler resolved to a place of the same section outside `f`.
    fn relocate_resolved(
        &mut self,
        f: DefinedFunction,
        insn: &Insn,
        id: SectionId,
        out: u64,
    ) -> Result<(), ExtractError> {
        let sec = f.section();
        let covered = self.index.relocs_in(sec, insn.ip, insn.end());
        let free = |field: Field| !is_relocated(insn.ip, field, covered);
        let mut resolved = Vec::new();
        if let Some(b) = insn.branch.filter(|b| free(b.field)) {
            let r_type = if insn.is_call { R_PLT32 } else { R_PC32 };
            resolved.push((b.field, b.target, r_type));
        }
        if let Some(d) = insn.displacement.filter(|d| free(d.field)) {
            if let Some(target) = d.pc_target {
                resolved.push((d.field, target, R_PC32));
            }
        }
        for (field, target, r_type) in resolved {
            if (f.start()..f.end()).contains(&target) {
                continue;
            }
            if field.size != 4 {
                return Err(self.refuse(format!(
                    "`{}` reaches {}+{target:#x} with a {}-byte operand at {:#x}, which cannot \
                     reach it from a copy",
                    self.index.symbols[f.symbol()].name,
                    self.index.sections[sec].name,
                    field.size,
                    insn.ip
                )));
            }
            let at = insn.ip + u64::from(field.offset);
            let (symbol, addend) = self.resolved_target(f, sec, target, insn.end() - at)?;
            let place = out + (at - f.start());
            // The module loader writes a relocation's value only over zeros
            // (x86 refuses "existing value is nonzero"): the assembler's
            // displacement goes.
            let field_bytes = place as usize..place as usize + usize::from(field.size);
            self.out.section_mut(id).data_mut()[field_bytes].fill(0);
            self.add_relocation(id, place, symbol, addend, r_type)?;
        }
        Ok(())
    }

    /// The symbol and addend for a place `target` of section `sec` that an
    /// operand ending `bias` bytes after its field points at.
    fn resolved_target(
        &mut self,
        f: DefinedFunction,
        sec: SectionIndex,
        target: u64,
        bias: u64,
    ) -> Result<(object::write::SymbolId, i64), ExtractError> {
        let Some(n) = self.index.symbol_at(sec, target) else {
            return Err(self.refuse(format!(
                "`{}` refers to {}+{target:#x}, which belongs to no symbol, so klp-link \
                 cannot tell what the copy should refer to",
                self.index.symbols[f.symbol()].name,
                self.index.sections[sec].name
            )));
        };
        let value = self.index.symbols[n].value;
        let addend = target.wrapping_sub(value).wrapping_sub(bias) as i64;
        self.target(n, addend, bias)
    }
}
