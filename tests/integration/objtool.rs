//! Checksums and fingerprints are what they were before objtool rewrote the
//! object. kbuild runs objtool right after each compile; among its edits,
//! `--hacks=jump_label` turns each jump-label `jmp` into a NOP of the same
//! length and drops the relocation such a `jmp` has when its target is in
//! another section (a `.cold` part). This test makes that edit by hand on a
//! real assembled object and compares the manifests.

use object::build::elf::{Builder, SectionData};

use crate::support::{run_klp_cc, Cc, CcKind, TempDir};

const ASM: &str = r#"
	.section .text.f,"ax",@progbits
	.globl f
	.type f, @function
f:
	call __fentry__
1:	jmp .Lcold
	ret
	.size f, .-f

	.section .text.unlikely.f,"ax",@progbits
	.type f.cold, @function
f.cold:
.Lcold:
	ud2
	.size f.cold, .-f.cold

	.section __jump_table,"aw"
	.balign 8
	.long 1b - .
	.long .Lcold - .
	.quad key + 1 - .

	.data
	.globl key
key:	.quad 0
"#;

/// What objtool does to jump-label sites: NOP the `jmp`, drop its relocation.
fn nop_jump_labels(object: &[u8]) -> Vec<u8> {
    let mut b = Builder::read(object).unwrap();
    let text = b
        .sections
        .iter()
        .find(|s| &*s.name == b".text.f")
        .map(|s| s.id())
        .unwrap();
    let site = 5usize; // after the 5-byte call
    let sec = b.sections.get_mut(text);
    let SectionData::Data(data) = &mut sec.data else {
        panic!("no data")
    };
    let mut bytes = data.to_vec();
    assert_eq!(bytes[site], 0xe9, "expected a jmp rel32 at the site");
    bytes[site..site + 5].copy_from_slice(&[0x0f, 0x1f, 0x44, 0x00, 0x00]);
    *data = bytes.into();
    let mut dropped = 0;
    for s in b.sections.iter_mut() {
        if s.sh_info_section != Some(text) {
            continue;
        }
        if let SectionData::Relocation(relocs) = &mut s.data {
            let before = relocs.len();
            relocs.retain(|r| r.r_offset != site as u64 + 1);
            dropped += before - relocs.len();
        }
    }
    assert_eq!(dropped, 1, "the jmp to the cold part had one relocation");
    let mut out = Vec::new();
    b.write(&mut out).unwrap();
    out
}

#[test]
fn a_nopped_jump_label_keeps_checksums_and_fingerprint() {
    let Some(_cc) = Cc::find_or_skip(CcKind::Gcc, "objtool invariance") else {
        return;
    };
    let dir = TempDir::new("objtool");
    dir.write("jl.S", ASM);
    run_klp_cc(dir.path(), ["gcc", "-c", "jl.S", "-o", "jl.o"]).assert_success();
    let before = std::fs::read(dir.join("jl.o")).unwrap();
    let after = nop_jump_labels(&before);
    assert_ne!(before, after);
    let a = klp_cc::checksum::checksum_object(&before).unwrap();
    let b = klp_cc::checksum::checksum_object(&after).unwrap();
    assert_eq!(
        a.symbols, b.symbols,
        "checksums changed under objtool's jump-label edit"
    );
    assert_eq!(
        a.fingerprint, b.fingerprint,
        "fingerprint changed under objtool's jump-label edit"
    );
}
