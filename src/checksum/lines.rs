//! Line numbers in the code: the places where a function's bytes hold a
//! `__LINE__` and nothing else, so that a function whose only differences
//! are there can be told apart from one that changed (DESIGN §3).
//!
//! The function's checksum covers them as everything else; a second,
//! line-insensitive checksum leaves them out. A place counts only when it
//! is proven to hold a line number, since missing a real change is worse
//! than reporting a line shift:
//!
//! - a call site: `mov $imm32, %esi` followed, in the same basic block, by a
//!   direct call (or tail jump) through a relocation to one of
//!   [`LINE_CALLEES`], which take `(const char *file, int line, ...)` and
//!   are only called by macros passing `__FILE__, __LINE__`. Nothing in
//!   between may write `%rsi`, branch, call, or be the target of a branch
//!   or of any relocation (a jump table, a `.cold` part jumping back, a
//!   table entry). An immediate passed explicitly to one of those callees
//!   cannot be told from a line number; only the patch's line map could.
//! - a `__bug_table` entry of Linux 6.1 x86 with `CONFIG_DEBUG_BUGVERBOSE`:
//!   `{int bug_addr_disp; int file_disp; u16 line; u16 flags}`, 12 bytes
//!   with relocations at 0 and 4. Other layouts stay fully covered.
//!
//! What the line-insensitive checksum gets instead: every `mov $imm32,
//! %esi` with the immediate zeroed and, once the function's code is
//! walked, for each of them in order either "line site" or its immediate.
//! So two functions with equal line-insensitive checksums differ at most
//! in the immediates of sites both have at the same places.

use iced_x86::{ConstantOffsets, Instruction, Mnemonic, OpKind, Register};
use object::elf;

use super::describe::HashExt;
use super::tables::{Entry, Tables};
use crate::elf::{ElfIndex, Reloc, SectionIndex};

/// Kernel functions (Linux 6.1) whose second argument is the caller's
/// `__LINE__`: `might_sleep()`, `cond_resched()` and the lock variants,
/// `might_fault()`, `cant_sleep()`, `cant_migrate()`, `RCU_LOCKDEP_WARN()`,
/// and the generic `WARN()` (x86 puts its line into `__bug_table` instead).
pub const LINE_CALLEES: &[&str] = &[
    "__might_sleep",
    "__might_resched",
    "__might_fault",
    "__cant_sleep",
    "__cant_migrate",
    "lockdep_rcu_suspicious",
    "warn_slowpath_fmt",
];

/// What the line-insensitive checksum gets for a proven site, in place of
/// the immediate (which is at most 32 bits wide).
const SITE: u64 = u64::MAX;

/// A `mov $imm32, %esi`, and the call to a line callee it feeds, if any.
struct Candidate {
    mov: u64,
    imm: u64,
    call: Option<u64>,
}

/// The line-number call sites of one contiguous piece of code, found while
/// it is walked once.
#[derive(Default)]
pub struct LineSites {
    candidates: Vec<Candidate>,
    /// The candidate whose `%esi` is still live, in the same basic block.
    open: Option<usize>,
    /// Where resolved branches of this piece land.
    targets: Vec<u64>,
}

impl LineSites {
    /// Looks at the next instruction before it is hashed. Returns the
    /// immediate's byte range within the instruction when it may be a line
    /// number: the caller hashes it zeroed into the line-insensitive
    /// checksum.
    pub fn step(
        &mut self,
        index: &ElfIndex,
        insn: &Instruction,
        offsets: Option<&ConstantOffsets>,
        relocs: &[Reloc],
        jump_label: bool,
    ) -> Option<(usize, usize)> {
        let Some(offsets) = offsets.filter(|_| !jump_label && !insn.is_invalid()) else {
            self.open = None;
            return None;
        };
        let ip = insn.ip();
        let imm = offsets
            .has_immediate()
            .then(|| (offsets.immediate_offset(), offsets.immediate_size()));
        let relocated = |(at, size): (usize, usize)| {
            let (a, b) = (ip + at as u64, ip + (at + size) as u64);
            relocs
                .iter()
                .any(|r| r.offset < b && r.offset.saturating_add(u64::from(r.width)) > a)
        };
        let branch = (0..insn.op_count()).any(|i| {
            matches!(
                insn.op_kind(i),
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
            )
        });
        if branch && imm.is_some_and(|f| !relocated(f)) {
            self.targets.push(insn.near_branch_target());
        }
        if insn.mnemonic() == Mnemonic::Mov
            && insn.op_count() == 2
            && insn.op0_kind() == OpKind::Register
            && insn.op0_register() == Register::ESI
            && insn.op1_kind() == OpKind::Immediate32
        {
            if let Some(field) = imm.filter(|&f| !relocated(f)) {
                self.open = Some(self.candidates.len());
                self.candidates.push(Candidate {
                    mov: ip,
                    imm: u64::from(insn.immediate32()),
                    call: None,
                });
                return Some(field);
            }
        }
        let open = self.open?;
        if keeps_rsi(insn) {
            return None;
        }
        let direct_call = matches!(insn.mnemonic(), Mnemonic::Call | Mnemonic::Jmp) && branch;
        if direct_call && calls_line_callee(index, relocs) {
            self.candidates[open].call = Some(ip);
        }
        self.open = None;
        None
    }

    /// Once the piece (section `sec`) is walked: tells the line-insensitive
    /// checksum, for each candidate in order, whether it is a proven site
    /// or what its immediate was.
    pub fn finish(
        self,
        h: &mut impl HashExt,
        index: &ElfIndex,
        tables: &Tables,
        sec: SectionIndex,
    ) {
        for c in &self.candidates {
            let proven = c.call.is_some_and(|call| {
                !self.targets.iter().any(|&t| t > c.mov && t <= call)
                    && !tables.entered_between(index, sec, c.mov, call)
            });
            if proven {
                h.line_site();
                h.lines_only(SITE);
            } else {
                h.lines_only(c.imm);
            }
        }
    }
}

/// Whether an instruction is known to fall through and leave `%rsi` alone:
/// one that writes at most its first operand, which is not `%rsi`.
/// Anything else (branches, string instructions, `xchg`, ...) ends the
/// site.
fn keeps_rsi(insn: &Instruction) -> bool {
    let writes_op0_only = matches!(
        insn.mnemonic(),
        Mnemonic::Mov
            | Mnemonic::Movzx
            | Mnemonic::Movsx
            | Mnemonic::Movsxd
            | Mnemonic::Lea
            | Mnemonic::Xor
            | Mnemonic::Add
            | Mnemonic::Sub
            | Mnemonic::And
            | Mnemonic::Or
            | Mnemonic::Inc
            | Mnemonic::Dec
            | Mnemonic::Neg
            | Mnemonic::Not
            | Mnemonic::Shl
            | Mnemonic::Shr
            | Mnemonic::Sar
            | Mnemonic::Test
            | Mnemonic::Cmp
            | Mnemonic::Nop
            | Mnemonic::Push
            | Mnemonic::Pop
    );
    writes_op0_only
        && !(insn.op_count() > 0
            && insn.op0_kind() == OpKind::Register
            && matches!(
                insn.op0_register(),
                Register::RSI | Register::ESI | Register::SI | Register::SIL
            ))
}

/// Whether the instruction's relocation names a global line callee (a
/// local function of that name would be someone else's).
fn calls_line_callee(index: &ElfIndex, relocs: &[Reloc]) -> bool {
    relocs.iter().any(|r| {
        let s = &index.symbols[r.symbol];
        s.binding != elf::STB_LOCAL.0 && LINE_CALLEES.contains(&s.name)
    })
}

/// The offset of the line field of a 6.1 x86 `__bug_table` entry (see the
/// module header), or `None` for any other entry.
pub fn bug_line(index: &ElfIndex, e: &Entry) -> Option<u64> {
    let table = &index.sections[e.table];
    if table.name != "__bug_table" || e.end - e.start != 12 {
        return None;
    }
    let relocs: Vec<(u64, u8)> = index
        .relocs_in(e.table, e.start, e.end)
        .iter()
        .map(|r| (r.offset - e.start, r.width))
        .collect();
    (relocs == [(0, 4), (4, 4)]).then_some(e.start + 8)
}
