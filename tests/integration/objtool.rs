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

/// What objtool's `--mcount` does in a clang kernel (clang has no
/// `-mrecord-mcount`): record the `call __fentry__` in `__mcount_loc`, turn
/// its relocation into `R_X86_64_NONE` and the call into a 5-byte NOP.
fn record_mcount_like_objtool(object: &[u8]) -> Vec<u8> {
    use object::build::elf::Relocation;
    use object::elf;
    let mut b = Builder::read(object).unwrap();
    let fentry = b
        .symbols
        .iter()
        .find(|s| &*s.name == b"__fentry__")
        .map(|s| s.id())
        .expect("an undefined __fentry__");
    let text = b
        .sections
        .iter()
        .find(|s| &*s.name == b".text.f")
        .map(|s| s.id())
        .unwrap();
    let f = b
        .symbols
        .iter()
        .find(|s| &*s.name == b"f")
        .map(|s| s.id())
        .unwrap();
    let mut changed = Vec::new();
    for s in b.sections.iter_mut() {
        if s.sh_info_section != Some(text) {
            continue;
        }
        if let SectionData::Relocation(relocs) = &mut s.data {
            for r in relocs.iter_mut().filter(|r| r.symbol == Some(fentry)) {
                r.r_type = elf::R_X86_64_NONE;
                changed.push(r.r_offset as usize);
            }
        }
    }
    assert_eq!(changed, [1], "one call __fentry__, at the start of f");
    let SectionData::Data(data) = &mut b.sections.get_mut(text).data else {
        panic!("no data")
    };
    let mut bytes = data.to_vec();
    assert_eq!(bytes[0], 0xe8, "expected a call rel32");
    bytes[0..5].copy_from_slice(&[0x0f, 0x1f, 0x44, 0x00, 0x00]);
    *data = bytes.into();
    let symtab = b
        .sections
        .iter()
        .find(|s| s.sh_type == elf::SHT_SYMTAB)
        .map(|s| s.id())
        .unwrap();
    let table = b.sections.add();
    table.name = b"__mcount_loc".to_vec().into();
    table.sh_type = elf::SHT_PROGBITS;
    table.sh_flags = elf::SHF_ALLOC;
    table.sh_addralign = 8;
    table.data = SectionData::Data(vec![0; 8].into());
    let table = table.id();
    let rela = b.sections.add();
    rela.name = b".rela__mcount_loc".to_vec().into();
    rela.sh_type = elf::SHT_RELA;
    rela.sh_flags = elf::SHF_INFO_LINK;
    rela.sh_link_section = Some(symtab);
    rela.sh_info_section = Some(table);
    rela.sh_addralign = 8;
    rela.sh_entsize = 24;
    rela.data = SectionData::Relocation(vec![Relocation {
        r_offset: 0,
        symbol: Some(f),
        r_type: elf::R_X86_64_64,
        r_addend: 0,
    }]);
    let mut out = Vec::new();
    b.write(&mut out).unwrap();
    out
}

#[test]
fn an_mcount_recorded_fentry_call_keeps_checksums_and_fingerprint() {
    let Some(_cc) = Cc::find_or_skip(CcKind::Gcc, "objtool invariance") else {
        return;
    };
    let dir = TempDir::new("objtool-mcount");
    dir.write("jl.S", ASM);
    run_klp_cc(dir.path(), ["gcc", "-c", "jl.S", "-o", "jl.o"]).assert_success();
    let before = std::fs::read(dir.join("jl.o")).unwrap();
    let after = record_mcount_like_objtool(&before);
    assert_ne!(before, after);
    let a = klp_cc::checksum::checksum_object(&before).unwrap();
    let b = klp_cc::checksum::checksum_object(&after).unwrap();
    assert_eq!(
        a.symbols, b.symbols,
        "checksums changed under objtool's --mcount edit"
    );
    assert_eq!(
        a.fingerprint, b.fingerprint,
        "fingerprint changed under objtool's --mcount edit"
    );
}

/// `g` after 16 NOPs of padding, as `-fpatchable-function-entry=16,16`
/// leaves it; `PFX` is where objtool's `--prefix` names the padding. `h`
/// has a `__pfx_h` that is not padding: a function of that name.
const PADDED: &str = r#"
	.section .text,"ax",@progbits
PFX
	.rept 16
	nop
	.endr
	.globl g
	.type g, @function
g:
	call __fentry__
	ret
	.size g, .-g

	.type __pfx_h, @function
__pfx_h:
	ud2
	.size __pfx_h, .-__pfx_h
	.globl h
	.type h, @function
h:
	ret
	.size h, .-h
"#;

/// objtool's `--prefix` (on 6.x every object, on 7.x single-object
/// modules) adds a `__pfx_NAME` function symbol over each function's
/// padding after the compile: it is padding, not a function, so the
/// manifest lists the same functions with the same checksums either way.
#[test]
fn an_objtool_prefix_symbol_is_not_a_function() {
    let Some(_cc) = Cc::find_or_skip(CcKind::Gcc, "objtool prefix") else {
        return;
    };
    let dir = TempDir::new("objtool-prefix");
    let prefix = "\t.type __pfx_g, @function\n__pfx_g:\n\t.size __pfx_g, g - __pfx_g";
    dir.write("plain.S", PADDED.replace("PFX", ""));
    dir.write("prefixed.S", PADDED.replace("PFX", prefix));
    for name in ["plain", "prefixed"] {
        run_klp_cc(
            dir.path(),
            [
                "gcc",
                "-c",
                &format!("{name}.S"),
                "-o",
                &format!("{name}.o"),
            ],
        )
        .assert_success();
    }
    let sums = |name: &str| {
        let object = std::fs::read(dir.join(format!("{name}.o"))).unwrap();
        klp_cc::checksum::checksum_object(&object).unwrap().symbols
    };
    let (plain, prefixed) = (sums("plain"), sums("prefixed"));
    let names: Vec<&str> = prefixed.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["__pfx_h", "g", "h"], "{prefixed:#?}");
    assert_eq!(plain, prefixed, "the prefix symbol changed the manifest");
}
