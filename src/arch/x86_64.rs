//! x86-64, decoded with iced-x86.

use iced_x86::{
    Decoder, DecoderOptions, Formatter as _, GasFormatter, Instruction, Mnemonic, OpKind, Register,
};

use super::{AddressLoad, Arch, ArgImmediate, Branch, Displacement, Field, Insn};

/// The x86-64 backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct X86_64;

pub struct Decoded<'a> {
    decoder: Decoder<'a>,
    insn: Instruction,
}

impl Iterator for Decoded<'_> {
    type Item = Insn;

    fn next(&mut self) -> Option<Insn> {
        if !self.decoder.can_decode() {
            return None;
        }
        self.decoder.decode_out(&mut self.insn);
        let insn = &self.insn;
        let ip = insn.ip();
        let len = insn.len() as u8;
        if insn.is_invalid() {
            return Some(Insn {
                ip,
                len: len.max(1),
                valid: false,
                branch: None,
                displacement: None,
                accesses_memory: false,
                ends_path: false,
                is_call: false,
                is_trap: false,
                opcode: insn.mnemonic() as u64,
                prefixes: 0,
                arg_immediate: None,
                keeps_args: 0,
                address_load: None,
            });
        }
        let offsets = self.decoder.get_constant_offsets(insn);
        let field = |offset: usize, size: usize| Field {
            offset: offset as u8,
            size: size as u8,
        };
        let is_branch = (0..insn.op_count()).any(|i| {
            matches!(
                insn.op_kind(i),
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
            )
        });
        // iced reports a branch's displacement as its immediate.
        let branch = (is_branch && offsets.has_immediate()).then(|| Branch {
            field: field(offsets.immediate_offset(), offsets.immediate_size()),
            target: insn.near_branch_target(),
        });
        let displacement = offsets.has_displacement().then(|| Displacement {
            field: field(offsets.displacement_offset(), offsets.displacement_size()),
            pc_target: insn
                .is_ip_rel_memory_operand()
                .then(|| insn.ip_rel_memory_address()),
        });
        let dest_arg = (insn.op_count() > 0 && insn.op0_kind() == OpKind::Register)
            .then(|| arg_of(insn.op0_register()))
            .flatten();
        let arg_immediate = (insn.mnemonic() == Mnemonic::Mov
            && insn.op_count() == 2
            && insn.op1_kind() == OpKind::Immediate32
            && matches!(
                insn.op0_register(),
                Register::ESI | Register::EDX | Register::ECX
            )
            && offsets.has_immediate())
        .then(|| ArgImmediate {
            arg: dest_arg.unwrap_or_default(),
            field: field(offsets.immediate_offset(), offsets.immediate_size()),
            value: u64::from(insn.immediate32()),
        });
        let address_load = (insn.op_count() == 2 && insn.op0_kind() == OpKind::Register)
            .then(|| match (insn.mnemonic(), insn.op1_kind()) {
                (Mnemonic::Lea, OpKind::Memory) if insn.is_ip_rel_memory_operand() => offsets
                    .has_displacement()
                    .then(|| field(offsets.displacement_offset(), offsets.displacement_size())),
                (Mnemonic::Mov, OpKind::Immediate32 | OpKind::Immediate32to64) => offsets
                    .has_immediate()
                    .then(|| field(offsets.immediate_offset(), offsets.immediate_size())),
                _ => None,
            })
            .flatten()
            .map(|field| AddressLoad {
                field,
                arg: dest_arg,
            });
        let accesses_memory = insn.mnemonic() != Mnemonic::Lea
            && (0..insn.op_count()).any(|i| insn.op_kind(i) == OpKind::Memory);
        Some(Insn {
            ip,
            len,
            valid: true,
            branch,
            displacement,
            accesses_memory,
            ends_path: ends_path(insn.mnemonic()),
            is_call: insn.mnemonic() == Mnemonic::Call,
            is_trap: matches!(
                insn.mnemonic(),
                Mnemonic::Ud2 | Mnemonic::Ud1 | Mnemonic::Int3
            ),
            opcode: insn.mnemonic() as u64,
            prefixes: u64::from(insn.has_repne_prefix()) | u64::from(insn.has_rep_prefix()) << 1,
            arg_immediate,
            keeps_args: keeps_args(insn, dest_arg),
            address_load,
        })
    }
}

/// The integer argument (1 to 4) whose register `reg` names, in any width.
fn arg_of(reg: Register) -> Option<u8> {
    match reg {
        Register::RDI | Register::EDI | Register::DI | Register::DIL => Some(1),
        Register::RSI | Register::ESI | Register::SI | Register::SIL => Some(2),
        Register::RDX | Register::EDX | Register::DX | Register::DL | Register::DH => Some(3),
        Register::RCX | Register::ECX | Register::CX | Register::CL | Register::CH => Some(4),
        _ => None,
    }
}

/// The argument registers (bits 1 to 4) an instruction is known to leave
/// alone: one that falls through and writes at most its first operand,
/// `dest` when that is an argument register. Anything else (branches,
/// string instructions, `xchg`, `mul`, ...) counts as writing them all.
fn keeps_args(insn: &Instruction, dest: Option<u8>) -> u8 {
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
    if !writes_op0_only {
        return 0;
    }
    let all = 0b1_1110;
    match dest {
        Some(n) => all & !(1 << n),
        None => all,
    }
}

fn ends_path(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::Jmp
            | Mnemonic::Ret
            | Mnemonic::Retf
            | Mnemonic::Iret
            | Mnemonic::Iretd
            | Mnemonic::Iretq
            | Mnemonic::Sysret
            | Mnemonic::Sysretq
            | Mnemonic::Sysexit
            | Mnemonic::Sysexitq
            | Mnemonic::Int3
            | Mnemonic::Hlt
    )
}

impl Arch for X86_64 {
    type Decoder<'a> = Decoded<'a>;

    fn decode<'a>(&'a self, code: &'a [u8], ip: u64) -> Decoded<'a> {
        Decoded {
            decoder: Decoder::with_ip(64, code, ip, DecoderOptions::NONE),
            insn: Instruction::default(),
        }
    }

    fn format(&self, code: &[u8], ip: u64) -> String {
        let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
        let insn = decoder.decode();
        let mut text = String::new();
        GasFormatter::new().format(&insn, &mut text);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_branches_displacements_and_flow() {
        // call rel32; lea 0x10(%rip),%rax; mov 0x8(%rax),%rdx; jmp rel8; ret
        let code = [
            0xe8, 0x00, 0x00, 0x00, 0x00, // call
            0x48, 0x8d, 0x05, 0x10, 0x00, 0x00, 0x00, // lea
            0x48, 0x8b, 0x50, 0x08, // mov
            0xeb, 0x00, // jmp
            0xc3, // ret
        ];
        let insns: Vec<Insn> = X86_64.decode(&code, 0x100).collect();
        assert_eq!(insns.len(), 5);
        let call = insns[0];
        assert_eq!(call.branch.unwrap().field, Field { offset: 1, size: 4 });
        assert_eq!(call.branch.unwrap().target, 0x105);
        assert!(!call.ends_path && call.is_call);
        let lea = insns[1];
        assert_eq!(lea.displacement.unwrap().pc_target, Some(0x10c + 0x10));
        assert!(!lea.accesses_memory);
        let mov = insns[2];
        assert!(mov.accesses_memory && mov.displacement.unwrap().pc_target.is_none());
        assert!(insns[3].ends_path && insns[3].branch.is_some());
        assert!(insns[4].ends_path);
        assert_eq!(
            crate::arch::insn_at(&X86_64, &code, 0x100, 0x109).map(|i| i.ip),
            Some(0x105)
        );
        assert_eq!(
            crate::arch::instruction_ends(&X86_64, &code, 0x100),
            [0x105, 0x10c, 0x110, 0x112, 0x113]
        );
        assert_eq!(X86_64.format(&code[5..], 0x105), "lea 0x11C,%rax");

        // mov $0x2a,%esi; mov %rax,%rsi; mov $0x7,%edi
        let args = [
            0xbe, 0x2a, 0x00, 0x00, 0x00, // mov $0x2a,%esi
            0x48, 0x89, 0xc6, // mov %rax,%rsi
            0xbf, 0x07, 0x00, 0x00, 0x00, // mov $0x7,%edi
        ];
        let insns: Vec<Insn> = X86_64.decode(&args, 0).collect();
        assert_eq!(
            insns[0].arg_immediate,
            Some(ArgImmediate {
                arg: 2,
                field: Field { offset: 1, size: 4 },
                value: 0x2a
            })
        );
        assert!(!insns[1].keeps_arg(2) && insns[1].arg_immediate.is_none());
        assert!(insns[2].keeps_arg(2) && insns[2].arg_immediate.is_none());
        assert!(insns[0].keeps_arg(1) && !insns[2].keeps_arg(1) && insns[2].keeps_arg(3));
        assert_eq!(
            insns[2].address_load,
            Some(AddressLoad {
                field: Field { offset: 1, size: 4 },
                arg: Some(1)
            })
        );
        assert!(insns[0].address_load.is_some_and(|a| a.arg == Some(2)));
        // mov $0x5,%edx: the third argument.
        let third = X86_64.decode(&[0xba, 0x05, 0, 0, 0], 0).next().unwrap();
        assert!(third
            .arg_immediate
            .is_some_and(|a| a.arg == 3 && a.value == 5));
        assert_eq!(insns[1].address_load, None);
        // lea 0x0(%rip),%r12: an address kept in a callee-saved register.
        let kept = [0x4c, 0x8d, 0x25, 0x00, 0x00, 0x00, 0x00];
        let lea = X86_64.decode(&kept, 0).next().unwrap();
        assert_eq!(
            lea.address_load,
            Some(AddressLoad {
                field: Field { offset: 3, size: 4 },
                arg: None
            })
        );
        assert!(!insns[2].is_direct_call_or_jump());
        assert!(X86_64
            .decode(&code, 0)
            .next()
            .unwrap()
            .is_direct_call_or_jump());
    }
}
