//! The instructions klp-cc and klp-link see, behind one small trait per
//! architecture: checksumming, extraction and the explain trace ask only
//! what an [`Insn`] says, never a disassembler of their own.
//!
//! What the rest of the code needs of an instruction is where it is, how
//! long it is, whether it is a direct call or jump and where to, which of
//! its bytes hold a position-dependent field (a branch displacement, a
//! memory displacement, with the address a PC-relative one names), whether
//! it touches memory through that displacement or only computes an
//! address, and whether execution falls through past it. Relocations are
//! not the decoder's business: callers find the one that covers a field by
//! its offset.
//!
//! An arm64 backend fits the same shape without touching checksum or
//! extraction code: every instruction is one 4-byte word (`len` 4); `B`/`BL`
//! are direct branches whose field is the low 26 bits (`Field` names the
//! word, the relocation `R_AARCH64_CALL26`/`JUMP26` covers it); an `ADRP` +
//! `ADD`/`LDR` pair forms an address in two instructions, each carrying its
//! own relocation (`ADR_PREL_PG_HI21`, `ADD_ABS_LO12_NC`/`LDST*_ABS_LO12_NC`),
//! so each reports its word as a [`Field`] and `accesses_memory` only for the
//! load or store half. `opcode` is whatever stable number the backend
//! derives from the instruction's kind; checksums from different backends
//! are never compared.

pub mod x86_64;

/// Bytes of an instruction, counted from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub offset: u8,
    pub size: u8,
}

impl Field {
    /// Whether the field overlaps the `width` bytes at `at`, both counted
    /// from the instruction's start.
    pub fn overlaps(self, at: u64, width: u64) -> bool {
        let (a, b) = (u64::from(self.offset), u64::from(self.offset + self.size));
        at < b && at.saturating_add(width) > a
    }
}

/// A direct call or jump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Branch {
    /// The encoded displacement.
    pub field: Field,
    /// Where it goes as encoded (meaningful when no relocation covers the
    /// field: the assembler resolved it).
    pub target: u64,
}

/// A memory operand's displacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Displacement {
    pub field: Field,
    /// The address it names as encoded, when it is PC-relative.
    pub pc_target: Option<u64>,
}

/// See [`Insn::address_load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressLoad {
    pub field: Field,
    /// The integer argument (1 to 4) whose register it is, if any.
    pub arg: Option<u8>,
}

/// See [`Insn::arg_immediate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgImmediate {
    /// The integer argument, 2 to 4.
    pub arg: u8,
    pub field: Field,
    pub value: u64,
}

/// One decoded instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub ip: u64,
    pub len: u8,
    /// False for bytes that do not decode; `len` then covers what the
    /// backend skipped.
    pub valid: bool,
    pub branch: Option<Branch>,
    pub displacement: Option<Displacement>,
    /// Reads or writes memory through `displacement` (not an address
    /// computation such as x86's `lea`).
    pub accesses_memory: bool,
    /// Execution never continues with the next instruction (an
    /// unconditional jump, a return, a trap).
    pub ends_path: bool,
    /// A call: execution continues after it only if the callee returns.
    pub is_call: bool,
    /// Raises a trap (x86 `ud2` for BUG/WARN, `int3`): the handler decides
    /// whether execution continues after it.
    pub is_trap: bool,
    /// The kind of instruction, stable for one backend: hashed for a
    /// resolved branch instead of its encoding.
    pub opcode: u64,
    /// Prefixes that change what a branch does (x86 `rep`/`repne`).
    pub prefixes: u64,
    /// A constant the instruction puts into the second, third or fourth
    /// integer argument's register (x86-64 `mov $imm32, %esi`): how a
    /// caller passes `__LINE__` to a `(file, line, ...)` or `(sb, func,
    /// line, ...)` callee.
    pub arg_immediate: Option<ArgImmediate>,
    /// Bit `n` set: falls through to the next instruction and is known to
    /// leave the register of integer argument `n` (1 to 4) as it was.
    pub keeps_args: u8,
    /// An address (or constant) the instruction puts into a register
    /// (x86-64 `lea disp(%rip), %reg`, `mov $imm32, %reg`): how a caller
    /// passes `__FILE__` to a `(file, line, ...)` callee, directly or kept
    /// in a callee-saved register across a loop. The relocation on the
    /// field names the string.
    pub address_load: Option<AddressLoad>,
}

impl Insn {
    pub fn end(&self) -> u64 {
        self.ip + u64::from(self.len)
    }

    /// Whether the `width` bytes at `at` (an offset in the section) lie in
    /// a branch's displacement.
    pub fn is_branch_field(&self, at: u64, width: u64) -> bool {
        self.branch
            .is_some_and(|b| at >= self.ip && b.field.overlaps(at - self.ip, width))
    }

    /// Whether the instruction is known to leave integer argument `n`'s
    /// register (1 to 4) alone.
    pub fn keeps_arg(&self, n: u8) -> bool {
        self.keeps_args & (1 << n) != 0
    }

    /// A direct call, or a direct jump that leaves the function's path (a
    /// tail call when its field is relocated).
    pub fn is_direct_call_or_jump(&self) -> bool {
        self.branch.is_some() && (self.is_call || self.ends_path)
    }
}

/// One architecture's decoder.
pub trait Arch {
    type Decoder<'a>: Iterator<Item = Insn>
    where
        Self: 'a;

    /// The instructions of `code`, which sits at address `ip`, in order.
    fn decode<'a>(&'a self, code: &'a [u8], ip: u64) -> Self::Decoder<'a>;

    /// The first instruction of `code` (at `ip`) as a person reads it.
    fn format(&self, code: &[u8], ip: u64) -> String;
}

/// The end of every instruction of `code` (at `ip`), ascending.
pub fn instruction_ends(arch: &impl Arch, code: &[u8], ip: u64) -> Vec<u64> {
    arch.decode(code, ip).map(|i| i.end()).collect()
}

/// The instruction of `code` (at `ip`) that holds the byte at `at`.
pub fn insn_at(arch: &impl Arch, code: &[u8], ip: u64, at: u64) -> Option<Insn> {
    arch.decode(code, ip)
        .take_while(|i| i.ip <= at)
        .find(|i| at < i.end())
}
