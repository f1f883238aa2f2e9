//! Extraction of changed functions into a patch object, on real gcc
//! objects: what is copied, what becomes a normal relocation to an exported
//! symbol, what becomes a `.klp.sym` reference with the right sympos, which
//! special-section entries travel with the code, and what is refused.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use klp_cc::checksum::manifest_of;
use klp_cc::link::extract::{extract, ExtractError, Extracted, RunningKernel, Source};
use klp_cc::link::once_flags::{self, OnceChoice};
use klp_cc::link::sympos::Positions;
use klp_cc::link::symvers::Exports;
use klp_cc::manifest::Content;
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget};

use crate::support::{klp_cc_command, run, Cc, CcKind, TempDir};

/// The "running kernel": two files that each define a static `helper`
/// (so its sympos depends on the file) and the globals the patch uses.
const KERNEL_A: &str = "int saved_value = 3;\nint exported_fn(int x) { return x; }\n\
    __attribute__((noinline)) static int helper(int x) { return x + 1; }\n\
    int use_a(int x) { return helper(x); }\n";
const KERNEL_B: &str = "__attribute__((noinline)) static int helper(int x) { return x + 2; }\n\
    int use_b(int x) { return helper(x); }\n";
/// The patched file: `b.c` again, with `use_b` changed.
const PATCHED_B: &str = "extern int saved_value;\nextern int exported_fn(int);\n\
    __attribute__((noinline)) static int helper(int x) { return x + 2; }\n\
    extern void printk(const char *, ...);\n\
    int use_b(int x) { printk(\"use_b %d\\n\", x); return helper(x) + saved_value + exported_fn(x); }\n";

/// What every test object calls that a real kernel exports.
const BASE_EXPORTS: &str = "0x0\t__fentry__\tvmlinux\tEXPORT_SYMBOL\t\n\
    0x0\t__x86_return_thunk\tvmlinux\tEXPORT_SYMBOL\t\n";

/// Special sections written the way Linux 6.1's x86 macros write them
/// (arch/x86/include/asm/{jump_label,bug,alternative,asm,cpufeature}.h).
const KERNEL_MACROS: &str = r#"
struct static_key { int enabled; };
struct bits { unsigned char b[16]; };
extern struct bits boot_cpu_data;

static inline __attribute__((always_inline)) int static_branch(struct static_key *key)
{
	asm goto("1: .byte 0x0f,0x1f,0x44,0x00,0x00\n\t"
		 ".pushsection __jump_table, \"aw\"\n\t.balign 8\n\t"
		 ".long 1b - ., %l[l_yes] - .\n\t.quad %c0 - .\n\t.popsection"
		 : : "i" (key) : : l_yes);
	return 0;
l_yes:
	return 1;
}

#define WARN_ON_LIKE(cond) ({						\
	int __c = !!(cond);						\
	if (__c)							\
		asm volatile("1: ud2\n\t"				\
			     ".pushsection __bug_table,\"aw\"\n"	\
			     "2: .long 1b - ., %c0 - .\n\t"		\
			     ".word %c1, %c2\n\t.org 2b + %c3\n\t"	\
			     ".popsection" : : "i" (__FILE__),		\
			     "i" (__LINE__), "i" (1 << 9), "i" (12));	\
	__c; })

/* ALTERNATIVE("", "call <fn>", feature): a replacement with a relocation. */
#define ALTERNATIVE_CALL(fn)						\
	asm volatile("661:\n\t.skip 5, 0x90\n662:\n\t"			\
		     ".pushsection .altinstructions,\"a\"\n\t"		\
		     ".long 661b - .\n\t.long 6641f - .\n\t"		\
		     ".word 3*32+18\n\t.byte 662b-661b\n\t"		\
		     ".byte 6651f-6641f\n\t.popsection\n\t"		\
		     ".pushsection .altinstr_replacement, \"ax\"\n"	\
		     "6641:\n\tcall " #fn "\n6651:\n\t.popsection"	\
		     : : : "memory")

static inline __attribute__((always_inline)) int cpu_has_bit(void)
{
	asm goto("jmp 6f\n\t"
		 ".pushsection .altinstr_aux,\"ax\"\n"
		 "6:\n\ttestb $1, boot_cpu_data+5(%%rip)\n\t"
		 "jnz %l[t_yes]\n\tjmp %l[t_no]\n\t.popsection"
		 : : : : t_yes, t_no);
t_yes:
	return 1;
t_no:
	return 0;
}

static inline __attribute__((always_inline)) int load_or_zero(const int *p)
{
	int v = 0;
	asm volatile("1: movl (%1), %0\n2:\n\t"
		     ".pushsection __ex_table,\"a\"\n\t.balign 4\n\t"
		     ".long 1b - ., 2b - .\n\t.long 3\n\t.popsection"
		     : "+r" (v) : "r" (p));
	return v;
}

static inline __attribute__((always_inline)) void locked_inc(int *v)
{
	asm volatile(".pushsection .smp_locks,\"a\"\n\t.balign 4\n\t"
		     ".long 671f - .\n\t.popsection\n671:\n\tlock incl %0"
		     : "+m" (*v));
}

#define STATIC_CALL_SITE(name)						\
	asm volatile("1: call __SCT__" #name "\n\t"			\
		     ".pushsection .static_call_sites,\"a\"\n\t"	\
		     ".long 1b - ., __SCK__" #name " - .\n\t"		\
		     ".popsection" : : : "memory")
"#;

/// What [`special_source`] uses from the rest of the running kernel.
const SPECIAL_DEFINITIONS: &str = "struct static_key { int enabled; };\n\
    struct static_key key_private;\nint counter;\n\
    struct bits { unsigned char b[16]; } boot_cpu_data;\n\
    void alt_helper(void) {}\nvoid bystander_alt_helper(void) {}\n\
    void __SCT__tp_func_demo(void) {}\nint __SCK__tp_func_demo;\n";

/// A file of the running kernel with two functions that use every kind of
/// special section. `special` is the one the patch changes; `bystander`
/// is unchanged, and nothing of its own may end up in the patch.
fn special_source(changed: bool) -> String {
    format!(
        "{KERNEL_MACROS}
extern struct static_key key_private;
extern int counter;
extern void alt_helper(void);
extern void bystander_alt_helper(void);

int special(int x, const int *p)
{{
	int r = x;
	if (static_branch(&key_private))
		r += 7;
	if (WARN_ON_LIKE(x == 42))
		r = -1;
	ALTERNATIVE_CALL(alt_helper);
	if (cpu_has_bit())
		r += 2;
	r += load_or_zero(p);
	locked_inc(&counter);
	STATIC_CALL_SITE(tp_func_demo);
	return r{};
}}

int bystander(int x, const int *p)
{{
	if (static_branch(&key_private))
		x++;
	WARN_ON_LIKE(x == 43);
	ALTERNATIVE_CALL(bystander_alt_helper);
	if (cpu_has_bit())
		x += 5;
	locked_inc(&counter);
	return x + load_or_zero(p);
}}
",
        if changed { " + 1" } else { "" }
    )
}

/// Compiles `(source, object)` pairs in `dir` through klp-cc with kernel
/// flags.
fn compile(cc: &Cc, dir: &TempDir, pairs: &[(&str, &str)]) {
    compile_as(cc, dir, pairs, Sections::On);
}

/// Whether klp-cc adds its section flags, or builds as in one-build mode
/// (`KLP_CC_SECTIONS=0`: every function of a file in one `.text`).
#[derive(Clone, Copy)]
enum Sections {
    On,
    Off,
}

fn compile_as(cc: &Cc, dir: &TempDir, pairs: &[(&str, &str)], sections: Sections) {
    for (src, out) in pairs {
        let mut cmd = klp_cc_command(dir.path());
        cmd.arg(cc.program())
            .args(cc.kernel_cflags())
            .args(["-c", src, "-o", out]);
        if let Sections::Off = sections {
            cmd.env("KLP_CC_SECTIONS", "0");
        }
        run(cmd).assert_success();
        if cc.kind == CcKind::Clang {
            record_mcount(&dir.join(out));
        }
    }
}

/// What objtool's `--mcount` does to a clang object in a kernel build
/// (clang has no `-mrecord-mcount`): an `__mcount_loc` entry for each
/// function whose first instruction calls `__fentry__`, which is how
/// klp-link tells that livepatch can hook it; the call itself becomes a
/// 5-byte NOP with an `R_X86_64_NONE` relocation.
fn record_mcount(object: &Path) {
    use object::build::elf::{Builder, Relocation, SectionData};
    use object::elf;
    // object's builder does not know clang's address-significance table,
    // which only lld's identical code folding reads.
    let status = std::process::Command::new("objcopy")
        .args(["--remove-section", ".llvm_addrsig"])
        .arg(object)
        .status()
        .unwrap();
    assert!(status.success(), "objcopy {}", object.display());
    let data = std::fs::read(object).unwrap();
    let mut b = Builder::read(&*data).unwrap();
    let fentry = b
        .symbols
        .iter()
        .find(|s| &*s.name == b"__fentry__")
        .map(|s| s.id());
    let mut entries = Vec::new();
    for rela in b.sections.iter() {
        let (SectionData::Relocation(relocs), Some(text)) = (&rela.data, rela.sh_info_section)
        else {
            continue;
        };
        for r in relocs
            .iter()
            .filter(|r| r.symbol.is_some() && r.symbol == fentry)
        {
            // The call's field follows its one opcode byte.
            let call = r.r_offset - 1;
            let func = b.symbols.iter().find(|s| {
                s.section == Some(text) && s.st_type() == elf::STT_FUNC && s.st_value == call
            });
            if let Some(func) = func {
                entries.push(func.id());
            }
        }
    }
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
    table.data = SectionData::Data(vec![0; entries.len() * 8].into());
    let table = table.id();
    let rela = b.sections.add();
    rela.name = b".rela__mcount_loc".to_vec().into();
    rela.sh_type = elf::SHT_RELA;
    rela.sh_flags = elf::SHF_INFO_LINK;
    rela.sh_link_section = Some(symtab);
    rela.sh_info_section = Some(table);
    rela.sh_addralign = 8;
    rela.sh_entsize = 24;
    rela.data = SectionData::Relocation(
        entries
            .iter()
            .enumerate()
            .map(|(i, &func)| Relocation {
                r_offset: i as u64 * 8,
                symbol: Some(func),
                r_type: elf::R_X86_64_64,
                r_addend: 0,
            })
            .collect(),
    );
    // And, as objtool does, each recorded call becomes a 5-byte NOP and its
    // relocation R_X86_64_NONE.
    let mut nops = Vec::new();
    for rela in b.sections.iter_mut() {
        let Some(text) = rela.sh_info_section else {
            continue;
        };
        if let SectionData::Relocation(relocs) = &mut rela.data {
            for r in relocs
                .iter_mut()
                .filter(|r| r.symbol.is_some() && r.symbol == fentry)
            {
                r.r_type = elf::R_X86_64_NONE;
                nops.push((text, r.r_offset as usize - 1));
            }
        }
    }
    for (text, at) in nops {
        if let SectionData::Data(data) = &mut b.sections.get_mut(text).data {
            let mut bytes = data.to_vec();
            assert_eq!(bytes[at], 0xe8, "a call __fentry__");
            bytes[at..at + 5].copy_from_slice(&[0x0f, 0x1f, 0x44, 0x00, 0x00]);
            *data = bytes.into();
        }
    }
    let mut out = Vec::new();
    b.write(&mut out).unwrap();
    std::fs::write(object, out).unwrap();
}

/// Sets `sh_entsize` of `section` in `object` to `entsize`, as objtool
/// does for the tables it writes (`.static_call_sites`, ORC, site lists).
fn set_entsize(object: &Path, section: &str, entsize: u64) {
    let data = std::fs::read(object).unwrap();
    let mut b = object::build::elf::Builder::read(&*data).unwrap();
    let sec = b
        .sections
        .iter_mut()
        .find(|s| &*s.name == section.as_bytes())
        .unwrap_or_else(|| panic!("no {section} in {}", object.display()));
    sec.sh_entsize = entsize;
    let mut out = Vec::new();
    b.write(&mut out).unwrap();
    std::fs::write(object, out).unwrap();
}

/// Links `objects` relocatably into `out`: symbol order and STT_FILE
/// symbols as in a real link.
fn link(dir: &Path, out: &str, objects: &[&str]) {
    let status = std::process::Command::new("ld")
        .current_dir(dir)
        .args(["-r", "-o", out])
        .args(objects)
        .status()
        .unwrap();
    assert!(status.success(), "ld -r -o {out} failed");
}

/// Runs the extraction of `changed` from `object` for `target`, with the
/// symbol tables of the linked files in `linked` (target name, path).
fn run_extract(
    dir: &TempDir,
    object: &str,
    target: &str,
    changed: &[&str],
    exports: &str,
    linked: &[(&str, &str)],
) -> Result<Extracted, ExtractError> {
    run_extract_with(
        dir,
        object,
        target,
        changed,
        Compared::default(),
        exports,
        linked,
    )
}

/// What the compare tells the extraction beside the changed functions.
#[derive(Default)]
struct Compared<'x> {
    /// Functions the patch adds.
    new: &'x [&'x str],
    /// Data objects the patch adds.
    new_data: &'x [&'x str],
    /// Which once-flags a copy shares with the running kernel.
    once_flags: BTreeMap<String, OnceChoice>,
    /// The target kernel runs objtool on the livepatch module (delayed
    /// objtool: IBT, clang LTO, KLP_BUILD).
    objtool_on_modules: bool,
}

/// [`run_extract`], with what the compare found.
fn run_extract_with(
    dir: &TempDir,
    object: &str,
    target: &str,
    changed: &[&str],
    compared: Compared,
    exports: &str,
    linked: &[(&str, &str)],
) -> Result<Extracted, ExtractError> {
    let exports = Exports::parse(&format!("{BASE_EXPORTS}{exports}"));
    let mut positions = HashMap::new();
    for (t, path) in linked {
        let vmlinux = *t == "vmlinux";
        positions.insert(
            t.to_string(),
            Positions::read(&dir.join(path), vmlinux).unwrap(),
        );
    }
    let data = std::fs::read(dir.join(object)).unwrap();
    let source = Source {
        target,
        object_name: object.into(),
        data: &data,
        changed: changed.iter().map(|s| s.to_string()).collect(),
        new: compared.new.iter().map(|s| s.to_string()).collect(),
        new_data: compared.new_data.iter().map(|s| s.to_string()).collect(),
        once_flags: compared.once_flags,
    };
    let kernel = RunningKernel {
        exports: &exports,
        positions: &positions,
        objtool_on_modules: compared.objtool_on_modules,
    };
    extract(&[source], &kernel)
}

/// The names a section's relocations point at (section symbols by their
/// section's name), in offset order.
fn reloc_targets(file: &object::File, section: &str) -> Vec<String> {
    let Some(sec) = file.section_by_name(section) else {
        return Vec::new();
    };
    let mut relocs: Vec<_> = sec.relocations().collect();
    relocs.sort_by_key(|(o, _)| *o);
    relocs
        .into_iter()
        .filter_map(|(_, r)| match r.target() {
            RelocationTarget::Symbol(i) => Some(i),
            _ => None,
        })
        .map(|i| {
            let s = file.symbol_by_index(i).unwrap();
            if s.kind() == object::SymbolKind::Section {
                let sec = file.section_by_index(s.section_index().unwrap()).unwrap();
                sec.name().unwrap().to_string()
            } else {
                s.name().unwrap().to_string()
            }
        })
        .collect()
}

fn section_size(file: &object::File, name: &str) -> u64 {
    file.section_by_name(name)
        .unwrap_or_else(|| panic!("no {name} in the patch object"))
        .size()
}

#[test]
fn references_go_to_copies_exports_or_klp_symbols() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "extract") else {
        return;
    };
    let dir = TempDir::new("extract");
    dir.write("a.c", KERNEL_A);
    dir.write("b.c", KERNEL_B);
    dir.write("patched/b.c", PATCHED_B);
    compile(
        &cc,
        &dir,
        &[
            ("a.c", "a.o"),
            ("b.c", "b.o"),
            ("patched/b.c", "patched/b.o"),
        ],
    );
    link(dir.path(), "vmlinux", &["a.o", "b.o"]);
    let out = run_extract(
        &dir,
        "patched/b.o",
        "vmlinux",
        &["use_b"],
        "0x0\texported_fn\tvmlinux\tEXPORT_SYMBOL\t\n0x0\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n",
        &[("vmlinux", "vmlinux")],
    )
    .unwrap();
    assert_eq!(out.funcs.len(), 1);
    assert_eq!(out.funcs[0].old_name, "use_b");
    assert_eq!(out.funcs[0].sympos, 0);
    assert_eq!(out.funcs[0].delivers, None);

    let file = object::File::parse(&*out.object).unwrap();
    let targets: BTreeSet<String> = reloc_targets(&file, ".text.use_b").into_iter().collect();
    // helper exists twice in the running kernel; ours is b.c's, the second
    // in address order.
    for want in [
        "exported_fn",
        "printk",
        ".klp.sym.vmlinux.saved_value,0",
        ".klp.sym.vmlinux.helper,2",
    ] {
        assert!(
            targets.contains(want),
            "no reference to {want}: {targets:?}"
        );
    }
    assert!(
        targets
            .iter()
            .any(|t| t.starts_with(".rodata") && t.contains("str")),
        "the string literal is copied: {targets:?}"
    );
    let new = file
        .symbols()
        .find(|s| s.name() == Ok("__klp_new_0_0"))
        .expect("a global handle for the registration code");
    assert!(new.is_global() && new.size() > 0);
    assert_eq!(
        reloc_targets(&file, "__mcount_loc"),
        [".text.use_b"],
        "one mcount entry, for the copied function"
    );
}

/// Every special-section entry of the changed function travels with it, and
/// nothing of the unchanged function in the same object does.
#[test]
fn special_section_entries_travel_with_the_function() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "extract special sections") else {
        return;
    };
    let dir = TempDir::new("extract-special");
    dir.write("special.c", special_source(false));
    dir.write("patched/special.c", special_source(true));
    dir.write("other.c", SPECIAL_DEFINITIONS);
    compile(
        &cc,
        &dir,
        &[
            ("special.c", "special.o"),
            ("patched/special.c", "patched/special.o"),
            ("other.c", "other.o"),
        ],
    );
    link(dir.path(), "vmlinux", &["special.o", "other.o"]);
    set_entsize(&dir.join("patched/special.o"), ".static_call_sites", 8);
    let out = run_extract(
        &dir,
        "patched/special.o",
        "vmlinux",
        &["special"],
        "0x0\tboot_cpu_data\tvmlinux\tEXPORT_SYMBOL\t\n",
        &[("vmlinux", "vmlinux")],
    )
    .unwrap();
    assert!(out.notes.is_empty(), "{:?}", out.notes);
    let file = object::File::parse(&*out.object).unwrap();

    // One entry each, about the copied function, with its own fields.
    assert_eq!(section_size(&file, "__jump_table"), 16);
    assert_eq!(
        reloc_targets(&file, "__jump_table"),
        [
            ".text.special",
            ".text.special",
            ".klp.sym.vmlinux.key_private,0"
        ],
        "code, target and a klp reference to the unexported key"
    );
    assert_eq!(section_size(&file, "__bug_table"), 12);
    let bug = reloc_targets(&file, "__bug_table");
    assert_eq!(bug[0], ".text.special");
    assert!(
        bug[1].starts_with(".rodata") && bug[1].contains(".str"),
        "file name copied: {bug:?}"
    );
    assert_eq!(section_size(&file, "__ex_table"), 12);
    assert_eq!(
        reloc_targets(&file, "__ex_table"),
        [".text.special", ".text.special"]
    );
    assert_eq!(section_size(&file, ".smp_locks"), 4);
    assert_eq!(section_size(&file, ".static_call_sites"), 8);
    assert_eq!(
        reloc_targets(&file, ".static_call_sites"),
        [".text.special", ".klp.sym.vmlinux.__SCK__tp_func_demo,0"]
    );

    // The alternative's entry and only its own replacement (one 5-byte
    // call to alt_helper), not the bystander's.
    assert_eq!(section_size(&file, ".altinstructions"), 12);
    assert_eq!(
        reloc_targets(&file, ".altinstructions"),
        [".text.special", ".altinstr_replacement"]
    );
    assert_eq!(section_size(&file, ".altinstr_replacement"), 5);
    assert_eq!(
        reloc_targets(&file, ".altinstr_replacement"),
        [".klp.sym.vmlinux.alt_helper,0"]
    );

    // The static_cpu_has test: just the changed function's piece (testb,
    // jnz, jmp), which jumps back into the copy.
    let aux = file
        .section_by_name(".altinstr_aux")
        .expect("the aux piece");
    let bytes = aux.data().unwrap();
    assert_eq!(bytes.len(), 7 + 6 + 5, "testb + jnz + jmp: {bytes:02x?}");
    assert_eq!(
        reloc_targets(&file, ".altinstr_aux"),
        ["boot_cpu_data", ".text.special", ".text.special"]
    );
    assert!(
        reloc_targets(&file, ".text.special").contains(&".altinstr_aux".to_string()),
        "the copy jumps into the piece"
    );

    let all = symbol_names(&file);
    assert!(
        !all.iter().any(|n| n.contains("bystander")),
        "nothing of the unchanged function: {all:?}"
    );
    // The patch object links (relocations against real sections only).
    std::fs::write(dir.join("patch.o"), &out.object).unwrap();
    link(dir.path(), "patch-linked.o", &["patch.o"]);
}

/// A livepatch for a module cannot carry a static key of that module: the
/// module loader reads `__jump_table` before livepatch resolves the key.
/// A tracepoint's key is the exception: its site stays off, with a note.
#[test]
fn module_local_keys_are_refused_but_tracepoints_are_left_off() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "extract module keys") else {
        return;
    };
    let dir = TempDir::new("extract-module-key");
    let source = |key: &str, changed: bool| {
        format!(
            "{KERNEL_MACROS}\nstruct static_key {key};\n\
             int modfn(int x)\n{{\n\tif (static_branch(&{key}))\n\t\tx++;\n\treturn x{};\n}}\n",
            if changed { " * 2" } else { "" }
        )
    };
    let e = Pair::build(
        &cc,
        &dir,
        "mod_key",
        &source("mod_key", false),
        &source("mod_key", true),
    )
    .extract("mymod", &["modfn"], "")
    .err()
    .expect("refused");
    assert!(
        matches!(&e, ExtractError::LoadTimeModuleReference { symbol, module, .. }
            if symbol == "mod_key" && module == "mymod"),
        "{e:?}"
    );
    assert!(e.to_string().contains("static_key_enabled()"), "{e}");

    let key = "__tracepoint_mod_event";
    let out = Pair::build(&cc, &dir, key, &source(key, false), &source(key, true))
        .extract("mymod", &["modfn"], "")
        .unwrap();
    assert_eq!(out.funcs.len(), 1);
    assert!(
        out.notes
            .iter()
            .any(|n| n.contains("__tracepoint_mod_event")
                && n.contains("modfn")
                && n.contains("stays off")),
        "{:?}",
        out.notes
    );
    let file = object::File::parse(&*out.object).unwrap();
    assert!(
        file.section_by_name("__jump_table")
            .is_none_or(|s| s.size() == 0),
        "the tracepoint's entry is left out"
    );
}

/// For a module, references to the module's own symbols (exported or not)
/// are klp relocations to it; a symbol another module exports is refused.
#[test]
fn module_symbols_take_klp_relocations_and_other_modules_are_refused() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "extract module symbols") else {
        return;
    };
    let dir = TempDir::new("extract-module-syms");
    let source = |changed: bool| {
        format!(
            "__attribute__((noinline)) int mod_exported(int x) {{ return x; }}\n\
             extern int other_mod_fn(int);\n\
             int modfn(int x) {{ return mod_exported(x){}; }}\n\
             int modfn2(int x) {{ return other_mod_fn(x){}; }}\n",
            if changed { " + 1" } else { "" },
            if changed { " + 1" } else { "" }
        )
    };
    let exports = "0x0\tmod_exported\tdrivers/mymod\tEXPORT_SYMBOL\t\n\
                   0x0\tother_mod_fn\tdrivers/other-mod\tEXPORT_SYMBOL\t\n";
    let pair = Pair::build(&cc, &dir, "m", &source(false), &source(true));
    let out = pair.extract("mymod", &["modfn"], exports).unwrap();
    let file = object::File::parse(&*out.object).unwrap();
    assert!(
        reloc_targets(&file, ".text.modfn").contains(&".klp.sym.mymod.mod_exported,0".into()),
        "{:?}",
        reloc_targets(&file, ".text.modfn")
    );
    let e = pair
        .extract("mymod", &["modfn2"], exports)
        .err()
        .expect("refused");
    assert!(
        e.to_string().contains("other_mod_fn") && e.to_string().contains("other_mod"),
        "{e}"
    );
}

/// A changed function that ftrace cannot hook (here `notrace`, like the
/// kernel's out-of-line static inlines and `__do_sys_*` bodies) is
/// delivered by replacing its callers; a global one is refused.
#[test]
fn an_unhookable_function_is_delivered_through_its_callers() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "extract notrace") else {
        return;
    };
    let dir = TempDir::new("extract-notrace");
    let source = |changed: bool, global: bool| {
        format!(
            "{}__attribute__((noinline, no_instrument_function)) int body(int x) {{ return x{}; }}\n\
             int wrapper_a(int x) {{ return body(x) + 1; }}\n\
             int wrapper_b(int x) {{ return body(x) + 2; }}\n\
             int unrelated(int x) {{ return x * 3; }}\n",
            if global { "" } else { "static " },
            if changed { " * 5" } else { "" }
        )
    };
    let local = Pair::build(
        &cc,
        &dir,
        "local",
        &source(false, false),
        &source(true, false),
    );
    let out = local.extract("vmlinux", &["body"], "").unwrap();
    let replaced = replacements(&out);
    assert_eq!(
        replaced,
        BTreeSet::from([("wrapper_a", Some("body")), ("wrapper_b", Some("body"))]),
        "the callers replace the unhookable body"
    );
    let file = object::File::parse(&*out.object).unwrap();
    assert!(
        file.section_by_name(".text.body").is_some(),
        "body is copied"
    );
    assert_eq!(
        reloc_targets(&file, ".text.wrapper_a")
            .iter()
            .filter(|t| t.contains("body"))
            .collect::<Vec<_>>(),
        [".text.body"],
        "the new wrapper calls the new body"
    );

    let e = Pair::build(
        &cc,
        &dir,
        "global",
        &source(false, true),
        &source(true, true),
    )
    .extract("vmlinux", &["body"], "")
    .err()
    .expect("refused");
    assert!(
        e.to_string().contains("`body`") && e.to_string().contains("__fentry__"),
        "{e}"
    );
}

/// A static local is the running kernel's, however the instruction reaches
/// it: `orl $4, stfu(%rip)` has an immediate after the displacement, so its
/// relocation's addend is -5, not -4.
#[test]
fn a_static_local_stays_the_running_kernels() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "static local") else {
        return;
    };
    let dir = TempDir::new("extract-static");
    let orig = "extern void note(int);\nint handler(int x)\n{\n\tstatic int stfu;\n\tif (!stfu)\n\t\tnote(x);\n\tif (x & 4)\n\t\tstfu |= 4;\n\treturn 0;\n}\n";
    let out = Pair::build(
        &cc,
        &dir,
        "s",
        orig,
        &orig.replace("note(x);", "note(x + 1);"),
    )
    .extract(
        "vmlinux",
        &["handler"],
        "0x0\tnote\tvmlinux\tEXPORT_SYMBOL\t\n",
    )
    .unwrap();
    let file = object::File::parse(&*out.object).unwrap();
    let names = symbol_names(&file);
    assert!(
        names
            .iter()
            .any(|n| n.starts_with(".klp.sym.vmlinux.stfu.")),
        "the static local must be the running kernel's: {names:?}"
    );
    assert!(
        file.sections()
            .all(|s| !s.name().unwrap_or("").contains("stfu")),
        "the static local must not be copied"
    );
}

/// A table klp-link does not know, pointing into the changed function, is
/// refused rather than dropped.
#[test]
fn an_unknown_table_about_the_function_is_refused() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "extract unknown table") else {
        return;
    };
    let dir = TempDir::new("extract-unknown");
    let source = |changed: bool| {
        format!(
            "int marked(int x) {{\n\tasm volatile(\"1: nop\\n.pushsection .klp_test_sites,\\\"a\\\"\\n\
             .long 1b - .\\n.popsection\");\n\treturn x{};\n}}\n",
            if changed { " + 1" } else { "" }
        )
    };
    let e = Pair::build(&cc, &dir, "w", &source(false), &source(true))
        .extract("vmlinux", &["marked"], "")
        .err()
        .expect("refused");
    let msg = e.to_string();
    assert!(
        msg.contains("marked") && msg.contains(".klp_test_sites") && msg.contains("does not know"),
        "{msg}"
    );
}

/// Malformed patched objects never panic the extraction: the object with
/// every kind of special section, mutated thousands of ways, gives a patch
/// object or an error.
#[test]
fn mutated_objects_never_panic_extraction() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "extract mutations") else {
        return;
    };
    let dir = TempDir::new("extract-mutate");
    dir.write("special.c", special_source(true));
    dir.write("other.c", SPECIAL_DEFINITIONS);
    compile(
        &cc,
        &dir,
        &[("special.c", "special.o"), ("other.c", "other.o")],
    );
    link(dir.path(), "vmlinux", &["special.o", "other.o"]);
    let object = std::fs::read(dir.join("special.o")).unwrap();
    let exports = Exports::parse(BASE_EXPORTS);
    let mut positions = HashMap::new();
    positions.insert(
        "vmlinux".to_string(),
        Positions::read(&dir.join("vmlinux"), true).unwrap(),
    );
    let kernel = RunningKernel {
        exports: &exports,
        positions: &positions,
        objtool_on_modules: false,
    };
    let mut rng = crate::support::Rng(0x005e_ed0f_c0de);
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..2000 {
        let bad = crate::support::mutate(&mut rng, &object);
        let source = Source {
            target: "vmlinux",
            object_name: "special.o".into(),
            data: &bad,
            changed: vec!["special".into(), "bystander".into()],
            new: vec![],
            new_data: BTreeSet::new(),
            once_flags: Default::default(),
        };
        match std::panic::catch_unwind(|| extract(&[source], &kernel).is_ok()) {
            Ok(true) => ok += 1,
            Ok(false) => refused += 1,
            Err(_) => panic!("extraction panicked on a mutated object"),
        }
    }
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
}

/// A new global function and a new global variable in one patched object,
/// used by a changed function of another: the patch defines them under
/// their names and the other's references reach them, in either order.
#[test]
fn new_globals_of_one_object_reach_another() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "extract new globals") else {
        return;
    };
    let dir = TempDir::new("extract-new-globals");
    let user = |patched: bool| {
        if patched {
            "extern int klp_new_helper(int);\nextern int klp_new_count;\n\
             int user(int x) { klp_new_count++; return klp_new_helper(x); }\n"
        } else {
            "int user(int x) { return x; }\n"
        }
    };
    dir.write("a.c", "int unrelated(int x) { return x; }\n");
    dir.write(
        "patched/a.c",
        "int unrelated(int x) { return x; }\nint klp_new_count = 4;\n\
         __attribute__((noinline)) int klp_new_helper(int x) { return x * 7; }\n",
    );
    dir.write("b.c", user(false));
    dir.write("patched/b.c", user(true));
    compile(
        &cc,
        &dir,
        &[
            ("a.c", "a.o"),
            ("b.c", "b.o"),
            ("patched/a.c", "patched/a.o"),
            ("patched/b.c", "patched/b.o"),
        ],
    );
    link(dir.path(), "vmlinux", &["a.o", "b.o"]);
    let exports = Exports::parse(BASE_EXPORTS);
    let mut positions = HashMap::new();
    positions.insert(
        "vmlinux".to_string(),
        Positions::read(&dir.join("vmlinux"), true).unwrap(),
    );
    let kernel = RunningKernel {
        exports: &exports,
        positions: &positions,
        objtool_on_modules: false,
    };
    let a = std::fs::read(dir.join("patched/a.o")).unwrap();
    let b = std::fs::read(dir.join("patched/b.o")).unwrap();
    let source_a = || Source {
        target: "vmlinux",
        object_name: "a.o".into(),
        data: &a,
        changed: vec![],
        new: vec!["klp_new_helper".into()],
        new_data: BTreeSet::from(["klp_new_count".to_string()]),
        once_flags: Default::default(),
    };
    let source_b = || Source {
        target: "vmlinux",
        object_name: "b.o".into(),
        data: &b,
        changed: vec!["user".into()],
        new: vec![],
        new_data: BTreeSet::new(),
        once_flags: Default::default(),
    };
    for (order, sources) in [
        ("b then a", vec![source_b(), source_a()]),
        ("a then b", vec![source_a(), source_b()]),
    ] {
        let out = extract(&sources, &kernel).unwrap_or_else(|e| panic!("{order}: {e}"));
        let file = object::File::parse(&*out.object).unwrap();
        for name in ["klp_new_helper", "klp_new_count"] {
            let s = file
                .symbols()
                .find(|s| s.name() == Ok(name))
                .unwrap_or_else(|| panic!("{order}: no symbol {name}"));
            assert!(
                s.is_definition() && s.is_global(),
                "{order}: {name} must be a global definition"
            );
        }
        let targets = reloc_targets(&file, ".text.user");
        assert!(
            targets.contains(&"klp_new_helper".to_string())
                && targets.contains(&"klp_new_count".to_string()),
            "{order}: user reaches the new globals by name: {targets:?}"
        );
        assert!(
            !targets.iter().any(|t| t.starts_with(".klp.sym")),
            "{order}: nothing of this is in the running kernel: {targets:?}"
        );
    }
}

/// One source file of the running kernel and its patched version, built
/// through klp-cc; the original alone is linked as the running target.
struct Pair<'d> {
    dir: &'d TempDir,
    name: String,
}

impl<'d> Pair<'d> {
    fn build(cc: &Cc, dir: &'d TempDir, name: &str, orig: &str, patched: &str) -> Pair<'d> {
        Pair::build_as(cc, dir, name, orig, patched, Sections::On)
    }

    fn build_as(
        cc: &Cc,
        dir: &'d TempDir,
        name: &str,
        orig: &str,
        patched: &str,
        sections: Sections,
    ) -> Pair<'d> {
        dir.write(format!("{name}.c"), orig);
        dir.write(format!("patched/{name}.c"), patched);
        compile_as(
            cc,
            dir,
            &[
                (&format!("{name}.c"), &format!("{name}.o")),
                (&format!("patched/{name}.c"), &format!("patched/{name}.o")),
            ],
            sections,
        );
        link(
            dir.path(),
            &format!("{name}-linked"),
            &[&format!("{name}.o")],
        );
        Pair {
            dir,
            name: name.to_owned(),
        }
    }

    /// Extracts `changed` for `target` (vmlinux or a module) with the
    /// extra `exports` lines of Module.symvers.
    fn extract(
        &self,
        target: &str,
        changed: &[&str],
        exports: &str,
    ) -> Result<Extracted, ExtractError> {
        self.extract_with(target, changed, Compared::default(), exports)
    }

    fn extract_with(
        &self,
        target: &str,
        changed: &[&str],
        compared: Compared,
        exports: &str,
    ) -> Result<Extracted, ExtractError> {
        let linked = format!("{}-linked", self.name);
        run_extract_with(
            self.dir,
            &format!("patched/{}.o", self.name),
            target,
            changed,
            compared,
            exports,
            &[(target, &linked)],
        )
    }

    /// The once-flags of the patched object paired with the original's,
    /// from the two manifests, as `klp-link build` pairs them.
    fn once_flags(&self) -> BTreeMap<String, OnceChoice> {
        let symbols = |path: String| match manifest_of(&self.dir.join(path)).content {
            Content::Checksums(s) => s,
            Content::Unavailable(why) => panic!("{why}"),
        };
        once_flags::pair(
            &symbols(format!("{}.o", self.name)),
            &symbols(format!("patched/{}.o", self.name)),
        )
    }

    /// The patched object's bytes.
    fn patched_object(&self) -> Vec<u8> {
        std::fs::read(self.dir.join(format!("patched/{}.o", self.name))).unwrap()
    }
}

/// What the small tests' code calls that vmlinux exports.
const SINK: &str = "0x0\tsink\tvmlinux\tEXPORT_SYMBOL\t\n";

/// A loop's end pointer (`table + 8`) lies just past the array: it is the
/// running kernel's array too, not a copy of it.
#[test]
fn a_pointer_past_a_static_array_is_the_running_kernels() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "extract past the end") else {
        return;
    };
    let dir = TempDir::new("extract-past-end");
    let source = |k: &str| {
        format!(
            "extern void sink(int);\nstatic int table[8];\nint other[4];\n\
             int sum(void)\n{{\n\tint s = {k};\n\tfor (int *p = table; p < table + 8; p++)\n\
             \t\ts += *p;\n\tsink(other[1]);\n\treturn s;\n}}\n"
        )
    };
    let out = Pair::build(&cc, &dir, "end", &source("0"), &source("1"))
        .extract("vmlinux", &["sum"], SINK)
        .unwrap();
    let file = object::File::parse(&*out.object).unwrap();
    let targets = reloc_targets(&file, ".text.sum");
    assert!(
        targets.iter().any(|t| t == ".klp.sym.vmlinux.table,0"),
        "{targets:?}"
    );
    assert!(
        file.sections()
            .all(|s| !s.name().unwrap_or("").contains("table")),
        "the array must not be copied: {targets:?}"
    );
}

/// gcc puts every warn-once flag of a file in one `.data..once` section:
/// only the changed function's flag is copied, fresh.
#[test]
fn once_flags_in_a_shared_section_are_copied_alone() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "extract once flags") else {
        return;
    };
    let dir = TempDir::new("extract-once");
    let source = |k: &str| {
        format!(
            "extern void sink(int);\n\
             #define ONCE(x) ({{ static _Bool __attribute__((section(\".data..once\"))) \
             __already_done; if (!__already_done) {{ __already_done = 1; sink(x); }} }})\n\
             void first(int x) {{ ONCE(x + {k}); }}\nvoid second(int x) {{ ONCE(x); }}\n\
             void third(int x) {{ ONCE(x * 2); }}\n"
        )
    };
    let out = Pair::build(&cc, &dir, "once", &source("1"), &source("2"))
        .extract("vmlinux", &["first"], SINK)
        .unwrap();
    let file = object::File::parse(&*out.object).unwrap();
    assert_eq!(
        section_size(&file, ".data..once"),
        1,
        "one flag of the three"
    );
    assert!(reloc_targets(&file, ".text.first").contains(&".data..once".to_string()));
}

/// A changed function whose once-sites map one to one (same count, same
/// order) refers to the running kernel's flags, so a warning that already
/// fired stays quiet after patching; one that gained a site gets fresh
/// flags. The report says which way each flag went.
#[test]
fn once_flags_are_the_running_kernels_when_the_sites_map_one_to_one() {
    for kind in [CcKind::Gcc, CcKind::Clang] {
        let Some(cc) = Cc::find_or_skip(kind, "shared once flags") else {
            continue;
        };
        let dir = TempDir::new("extract-once-shared");
        let source = |body: &str| {
            format!(
                "extern void sink(int);\n\
                 #define ONCE(x) ({{ static _Bool __attribute__((section(\".data.once\"))) \
                 __already_done; if (!__already_done) {{ __already_done = 1; sink(x); }} }})\n\
                 void warn(int x) {{ {body} }}\nvoid other(int x) {{ ONCE(x); }}\n"
            )
        };
        let orig = source("ONCE(x); if (x > 3) ONCE(x + 1);");
        // The same sites, other code around them.
        let same = Pair::build(
            &cc,
            &dir,
            "same",
            &orig,
            &source("ONCE(x); if (x > 4) ONCE(x + 1);"),
        );
        let out = same
            .extract_with(
                "vmlinux",
                &["warn"],
                Compared {
                    once_flags: same.once_flags(),
                    ..Compared::default()
                },
                SINK,
            )
            .unwrap();
        let file = object::File::parse(&*out.object).unwrap();
        let names = symbol_names(&file);
        let running: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with(".klp.sym.vmlinux.") && n.contains("__already_done"))
            .collect();
        assert_eq!(
            running.len(),
            2,
            "{kind}: both flags are the running kernel's: {names:?}"
        );
        assert!(
            file.section_by_name(".data.once").is_none(),
            "{kind}: no flag is copied"
        );
        assert_eq!(
            out.notes
                .iter()
                .filter(|n| n.contains("once-flag") && n.contains("the running kernel's"))
                .count(),
            2,
            "{kind}: {:?}",
            out.notes
        );

        // A site more: fresh flags, and the report says why.
        let more = Pair::build(
            &cc,
            &dir,
            "more",
            &orig,
            &source("ONCE(x); if (x > 3) ONCE(x + 1); if (x > 9) ONCE(x + 2);"),
        );
        let out = more
            .extract_with(
                "vmlinux",
                &["warn"],
                Compared {
                    once_flags: more.once_flags(),
                    ..Compared::default()
                },
                SINK,
            )
            .unwrap();
        let file = object::File::parse(&*out.object).unwrap();
        assert!(
            !symbol_names(&file)
                .iter()
                .any(|n| n.starts_with(".klp.sym.") && n.contains("__already_done")),
            "{kind}: no running flag is used"
        );
        assert!(
            out.notes
                .iter()
                .any(|n| n.contains("a fresh copy: `warn` has 3 once-sites, the original 2")),
            "{kind}: {:?}",
            out.notes
        );
    }
}

/// A replacement of two instructions with an exception-table entry on the
/// second is copied whole, and the entry travels with it; an empty
/// replacement at the very end of `.altinstr_replacement` is fine.
#[test]
fn replacements_are_copied_whole_with_their_own_entries() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "extract replacements") else {
        return;
    };
    let dir = TempDir::new("extract-replacements");
    let source = |k: &str| {
        format!(
            r#"int load(const int *p)
{{
	int v = {k};
	asm volatile("661:\n\t.skip 3, 0x90\n662:\n\t"
		     ".pushsection .altinstructions,\"a\"\n\t"
		     ".long 661b - .\n\t.long 6641f - .\n\t.word 3*32+18\n\t"
		     ".byte 662b-661b\n\t.byte 6651f-6641f\n\t"
		     ".long 661b - .\n\t.long 6651f - .\n\t.word 3*32+19\n\t"
		     ".byte 662b-661b\n\t.byte 0\n\t.popsection\n\t"
		     ".pushsection .altinstr_replacement, \"ax\"\n"
		     "6641:\n\tnop\n1:\tmovl (%1), %0\n6651:\n\t"
		     ".pushsection __ex_table,\"a\"\n\t.balign 4\n\t"
		     ".long 1b - ., 662b - .\n\t.long 3\n\t.popsection\n\t"
		     ".popsection" : "+r" (v) : "r" (p));
	return v;
}}
"#
        )
    };
    let out = Pair::build(&cc, &dir, "repl", &source("0"), &source("1"))
        .extract("vmlinux", &["load"], SINK)
        .unwrap();
    let file = object::File::parse(&*out.object).unwrap();
    assert_eq!(
        section_size(&file, ".altinstr_replacement"),
        3,
        "nop + movl (%reg), %reg"
    );
    assert_eq!(section_size(&file, ".altinstructions"), 24, "both entries");
    assert_eq!(
        reloc_targets(&file, "__ex_table"),
        [".altinstr_replacement", ".text.load"],
        "the entry about the replacement's load travels with it"
    );
}

/// A changed function livepatch cannot hook, whose address its caller
/// takes (a callback), is refused: replacing the caller would not stop the
/// running kernel from calling the old copy.
#[test]
fn an_unhookable_callback_is_refused() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "extract callback") else {
        return;
    };
    let dir = TempDir::new("extract-callback");
    let source = |k: &str| {
        format!(
            "extern void sink(void (*)(int));\n\
             static __attribute__((noinline, no_instrument_function)) void tick(int x) \
             {{ sink((void (*)(int))(long)(x + {k})); }}\n\
             void setup(void) {{ sink(tick); }}\n"
        )
    };
    let e = Pair::build(&cc, &dir, "cb", &source("1"), &source("2"))
        .extract("vmlinux", &["tick"], SINK)
        .err()
        .expect("refused");
    assert!(
        e.to_string().contains("takes its address") && e.to_string().contains("`setup`"),
        "{e}"
    );
}

/// An unchanged local constant whose address the changed function passes on
/// is the running kernel's (whatever holds that address compares equal),
/// while a table the function only reads by value travels as a copy.
#[test]
fn an_escaping_constant_is_the_running_kernels_a_value_only_one_is_copied() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "escaping constant") else {
        return;
    };
    let dir = TempDir::new("extract-escape");
    let orig = "struct ops { int (*f)(int); int x; };\n\
        static int f1(int a) { return a + 1; }\n\
        static const struct ops my_ops = { f1, 1 };\n\
        static const int weights[] = { 3, 5, 7, 11 };\n\
        extern void register_ops(const struct ops *, int);\n\
        void setup(unsigned i) { register_ops(&my_ops, weights[i % 4]); }\n";
    let out = Pair::build(
        &cc,
        &dir,
        "e",
        orig,
        &orig.replace("weights[i % 4]", "weights[i % 4] + 1"),
    )
    .extract(
        "vmlinux",
        &["setup"],
        "0x0\tregister_ops\tvmlinux\tEXPORT_SYMBOL\t\n",
    )
    .unwrap();
    let file = object::File::parse(&*out.object).unwrap();
    let names = symbol_names(&file);
    assert!(
        names
            .iter()
            .any(|n| n.starts_with(".klp.sym.vmlinux.my_ops,")),
        "the ops struct must be the running kernel's: {names:?}"
    );
    let sections: Vec<String> = file
        .sections()
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .collect();
    assert!(
        !sections.iter().any(|s| s.contains("my_ops")),
        "the ops struct must not be copied: {sections:?}"
    );
    assert!(
        sections.iter().any(|s| s.contains("weights")),
        "the value-only table is copied: {sections:?}"
    );
}

/// A changed function's dynamic-debug descriptor is its own: the patch
/// carries a copy in its own `__dyndbg`, which the module loader registers.
#[test]
fn a_dynamic_debug_descriptor_is_copied_into_the_modules_dyndbg() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "dyndbg descriptor") else {
        return;
    };
    let dir = TempDir::new("extract-dyndbg");
    let orig = "struct _ddebug { const char *modname, *function, *filename, *format;\n\
        unsigned int lineno:18; unsigned int flags:8; } __attribute__((aligned(8)));\n\
        extern void __dynamic_pr_debug(struct _ddebug *, const char *, ...);\n\
        int show(int x) {\n\
        static struct _ddebug __attribute__((used, section(\"__dyndbg\"))) __UNIQUE_ID_ddebug7 =\n\
        { \"m\", __func__, \"f.c\", \"x=%d\\n\", 10, 0 };\n\
        __dynamic_pr_debug(&__UNIQUE_ID_ddebug7, \"x=%d\\n\", x); return x; }\n\
        int other(int x) {\n\
        static struct _ddebug __attribute__((used, section(\"__dyndbg\"))) __UNIQUE_ID_ddebug8 =\n\
        { \"m\", __func__, \"f.c\", \"y=%d\\n\", 20, 0 };\n\
        __dynamic_pr_debug(&__UNIQUE_ID_ddebug8, \"y=%d\\n\", x); return x; }\n";
    let out = Pair::build(&cc, &dir, "d", orig, &orig.replace("x=%d", "x is %d"))
        .extract(
            "vmlinux",
            &["show"],
            "0x0\t__dynamic_pr_debug\tvmlinux\tEXPORT_SYMBOL\t\n",
        )
        .unwrap();
    let file = object::File::parse(&*out.object).unwrap();
    let dyndbg = file
        .section_by_name("__dyndbg")
        .expect("the patch object has its own __dyndbg");
    assert_eq!(dyndbg.size(), 40, "only show's descriptor is copied");
    let names = symbol_names(&file);
    assert!(
        !names.iter().any(|n| n.contains("ddebug")),
        "no descriptor of the running kernel is referenced: {names:?}"
    );
}

/// `__sched`-style functions share `.sched.text` even with
/// -ffunction-sections: the changed one is copied as its own byte range,
/// and its call to a static neighbour, which the assembler resolved inside
/// the section, becomes a relocation to the running kernel's.
#[test]
fn a_function_in_a_shared_section_is_copied_alone() {
    for kind in [CcKind::Gcc, CcKind::Clang] {
        let Some(cc) = Cc::find_or_skip(kind, "shared section") else {
            continue;
        };
        let dir = TempDir::new("extract-shared");
        let source = |k: &str| {
            format!(
                "extern void sink(int);\n\
                 #define __sched __attribute__((section(\".sched.text\"), noinline))\n\
                 static int __sched helper(int x) {{ sink(x); return x * 3; }}\n\
                 int __sched wait_for(int x) {{ return helper(x) + {k}; }}\n\
                 int __sched other_sched(int x) {{ return helper(x) - 1; }}\n"
            )
        };
        let pair = Pair::build(&cc, &dir, "sched", &source("1"), &source("2"));
        let out = pair.extract("vmlinux", &["wait_for"], SINK).unwrap();
        let orig = object::File::parse(&*pair.patched_object())
            .unwrap()
            .symbols()
            .find(|s| s.name() == Ok("wait_for"))
            .map(|s| s.size())
            .unwrap();
        let file = object::File::parse(&*out.object).unwrap();
        let sched = file
            .section_by_name(".sched.text")
            .expect("a .sched.text copy");
        assert_eq!(sched.size(), orig, "only wait_for's bytes are copied");
        let targets = reloc_targets(&file, ".sched.text");
        assert!(
            targets.iter().any(|t| t == ".klp.sym.vmlinux.helper,0"),
            "the resolved call to helper gets a relocation: {targets:?}"
        );
        assert!(
            !file.symbols().any(|s| s.name() == Ok("other_sched")),
            "the neighbour is not copied"
        );
        assert_eq!(out.funcs.len(), 1);
        assert_relocated_fields_are_zero(&file, ".sched.text");
    }
}

/// A build without -ffunction-sections (one-build mode) has every function
/// in `.text`: a changed one is copied alone there too, and a call to
/// another changed function reaches its copy.
#[test]
fn functions_in_a_shared_text_reach_each_others_copies() {
    for kind in [CcKind::Gcc, CcKind::Clang] {
        let Some(cc) = Cc::find_or_skip(kind, "shared .text") else {
            continue;
        };
        let dir = TempDir::new("extract-one-build");
        let source = |k: &str| {
            format!(
                "extern void sink(int);\n\
                 static __attribute__((noinline)) int scale(int x) {{ sink(x); return x * {k}; }}\n\
                 int entry(int x) {{ return scale(x) + 1; }}\n\
                 int bystander(int x) {{ return x - 1; }}\n"
            )
        };
        let pair = Pair::build_as(&cc, &dir, "one", &source("3"), &source("4"), Sections::Off);
        // The caller first: its call must still reach the copy made after it.
        let out = pair.extract("vmlinux", &["entry", "scale"], SINK).unwrap();
        let file = object::File::parse(&*out.object).unwrap();
        let text = file.section_by_name(".text").expect("a .text copy");
        let patched_bytes = pair.patched_object();
        let patched = object::File::parse(&*patched_bytes).unwrap();
        let size_of = |n: &str| {
            patched
                .symbols()
                .find(|s| s.name() == Ok(n))
                .map(|s| s.size())
                .unwrap()
        };
        assert!(
            text.size() >= size_of("scale") + size_of("entry")
                && text.size() < size_of("scale") + size_of("entry") + 32,
            "only the two functions are copied ({} bytes)",
            text.size()
        );
        let targets = reloc_targets(&file, ".text");
        assert!(
            !targets
                .iter()
                .any(|t| t.starts_with(".klp.sym.vmlinux.scale")),
            "entry calls the copy of scale, not the running kernel's: {targets:?}"
        );
        assert!(
            !file.symbols().any(|s| s.name() == Ok("bystander")),
            "the bystander is not copied"
        );
        assert_relocated_fields_are_zero(&file, ".text");
    }
}

/// In one `.text`, the calls to an unhookable static function are resolved
/// by the assembler: its callers are still found, by the function that
/// holds each call, and deliver it; the function beside them is not one.
#[test]
fn an_unhookable_function_in_a_shared_text_is_delivered_through_its_callers() {
    for kind in [CcKind::Gcc, CcKind::Clang] {
        let Some(cc) = Cc::find_or_skip(kind, "shared .text notrace") else {
            continue;
        };
        let dir = TempDir::new("extract-one-build-notrace");
        let source = |k: &str| {
            format!(
                "static __attribute__((noinline, no_instrument_function)) int body(int x) \
                 {{ return x{k}; }}\n\
                 int wrapper_a(int x) {{ return body(x) + 1; }}\n\
                 int unrelated(int x) {{ return x * 3; }}\n\
                 int wrapper_b(int x) {{ return body(x) + 2; }}\n"
            )
        };
        let out = Pair::build_as(&cc, &dir, "nt", &source(""), &source(" * 5"), Sections::Off)
            .extract("vmlinux", &["body"], "")
            .unwrap();
        let replaced = replacements(&out);
        assert_eq!(
            replaced,
            BTreeSet::from([("wrapper_a", Some("body")), ("wrapper_b", Some("body"))]),
            "the callers replace the unhookable body"
        );
        let file = object::File::parse(&*out.object).unwrap();
        let targets = reloc_targets(&file, ".text");
        assert!(
            !targets.iter().any(|t| t.contains("body")),
            "the new wrappers call the new body, inside the copied .text: {targets:?}"
        );
        assert_relocated_fields_are_zero(&file, ".text");
    }
}

/// Each function the patch replaces, with the unhookable one it delivers.
fn replacements(out: &Extracted) -> BTreeSet<(&str, Option<&str>)> {
    out.funcs
        .iter()
        .map(|f| (f.old_name.as_str(), f.delivers.as_deref()))
        .collect()
}

/// The names of `file`'s symbols, in table order.
fn symbol_names(file: &object::File) -> Vec<String> {
    file.symbols()
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .collect()
}

/// Every relocated field of `section` holds zeros: the module loader writes
/// a relocation only over zeros (x86: "existing value is nonzero").
#[track_caller]
fn assert_relocated_fields_are_zero(file: &object::File, section: &str) {
    let sec = file.section_by_name(section).unwrap();
    let data = sec.data().unwrap();
    for (offset, r) in sec.relocations() {
        let width = usize::from(r.size() / 8);
        let field = &data[offset as usize..offset as usize + width];
        assert!(
            field.iter().all(|&b| b == 0),
            "{section}+{offset:#x}: the relocated field holds {field:02x?}"
        );
    }
}

/// New global data in a shared `.bss` (one-build mode) is copied alone, and
/// keeps its name for the other patched objects.
#[test]
fn new_global_data_in_a_shared_bss_is_copied_alone() {
    for kind in [CcKind::Gcc, CcKind::Clang] {
        let Some(cc) = Cc::find_or_skip(kind, "shared .bss") else {
            continue;
        };
        let dir = TempDir::new("extract-one-build-bss");
        let orig = "extern void sink(int);\nint old_a;\nint old_b;\n\
            int count(int x) { sink(old_a); return x; }\n";
        let patched = "extern void sink(int);\nint old_a;\nint old_b;\nint calls;\n\
            int count(int x) { calls++; sink(old_a); return x; }\n";
        let out = Pair::build_as(&cc, &dir, "bss", orig, patched, Sections::Off)
            .extract_with(
                "vmlinux",
                &["count"],
                Compared {
                    new_data: &["calls"],
                    ..Compared::default()
                },
                SINK,
            )
            .unwrap();
        let file = object::File::parse(&*out.object).unwrap();
        let calls = file
            .symbols()
            .find(|s| s.name() == Ok("calls"))
            .expect("the new global keeps its name");
        assert_eq!(calls.size(), 4);
        assert!(
            file.section_by_name(".bss").is_some_and(|s| s.size() == 4),
            "only the new object is copied"
        );
        let targets = reloc_targets(&file, ".text");
        assert!(
            targets
                .iter()
                .any(|t| t.starts_with(".klp.sym.vmlinux.old_a")),
            "the old global stays the running kernel's: {targets:?}"
        );
        assert_relocated_fields_are_zero(&file, ".text");
    }
}

/// A callback the patch adds, as the helper macros make it: a new global
/// pointer in `.discard.klp_callback_ptrs`. Being new data, it must not be
/// copied under that name (every link drops it, and the registration's
/// call through it would not link): it is carried under a kept one.
#[test]
fn a_new_callback_pointer_is_carried_under_a_kept_section() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "callback pointer") else {
        return;
    };
    for sections in [Sections::On, Sections::Off] {
        let dir = TempDir::new("extract-callback-pointer");
        let orig = "extern void sink(int);\nint count(int x) { sink(x); return x; }\n";
        let patched = "extern void sink(int);\nstruct klp_object;\n\
            static void cb(struct klp_object *obj) { sink(7); }\n\
            void (*__klp_post_patch_callback_vmlinux)(struct klp_object *)\n\
              __attribute__((used, section(\".discard.klp_callback_ptrs\"))) = cb;\n\
            int count(int x) { sink(x + 1); return x; }\n";
        let out = Pair::build_as(&cc, &dir, "cb", orig, patched, sections)
            .extract_with(
                "vmlinux",
                &["count"],
                Compared {
                    new: &["cb"],
                    new_data: &["__klp_post_patch_callback_vmlinux"],
                    ..Compared::default()
                },
                SINK,
            )
            .unwrap();
        assert_eq!(out.callbacks.len(), 1, "{:?}", out.callbacks);
        assert_eq!(out.callbacks[0].kind, "post_patch");
        let file = object::File::parse(&*out.object).unwrap();
        let pointer = file
            .symbols()
            .find(|s| s.name() == Ok("__klp_post_patch_callback_vmlinux"))
            .expect("the pointer keeps its name");
        let section = file
            .section_by_index(pointer.section_index().unwrap())
            .unwrap();
        assert_eq!(section.name(), Ok(".data.klp_callback_ptrs"));
        assert!(
            file.section_by_name(".discard.klp_callback_ptrs").is_none(),
            "nothing is left in a section the link drops"
        );
    }
}

/// What objtool wrote into a single-object module of a kernel that delays
/// objtool (its ORC, return sites), and the static call of a kernel helper.
const OBJTOOL_MADE: &str = r#"
extern void __SCT__tp_func_x(int);
int shown(int x)
{
	__SCT__tp_func_x(x);
	return x + 1;
}
asm(".pushsection .orc_unwind_ip,\"a\"\n.long shown - .\n.popsection\n"
    ".pushsection .orc_unwind,\"a\"\n.fill 6,1,0\n.popsection\n"
    ".pushsection .return_sites,\"a\"\n.long shown - .\n.popsection\n");
"#;

/// `shown` of `source`, compiled into a vmlinux, extracted for a kernel
/// that checks its objects with objtool at compile time and for one that
/// runs objtool on the livepatch module: (that choice, the extraction).
fn extract_shown_both_ways(
    test: &str,
    source: &str,
    exports: &str,
) -> Option<Vec<(bool, Extracted)>> {
    let cc = Cc::find_or_skip(CcKind::Gcc, test)?;
    let dir = TempDir::new(test);
    dir.write("patched/m.c", source);
    compile(&cc, &dir, &[("patched/m.c", "patched/m.o")]);
    link(dir.path(), "vmlinux", &["patched/m.o"]);
    let outs = [false, true]
        .into_iter()
        .map(|objtool_on_modules| {
            let out = run_extract_with(
                &dir,
                "patched/m.o",
                "vmlinux",
                &["shown"],
                Compared {
                    objtool_on_modules,
                    ..Compared::default()
                },
                exports,
                &[("vmlinux", "vmlinux")],
            )
            .unwrap();
            (objtool_on_modules, out)
        })
        .collect();
    Some(outs)
}

/// When the target kernel runs objtool on the module itself, the patch
/// object leaves objtool's tables to it, and names the key of each exported
/// static call it makes, so that objtool's `.static_call_sites` entry names
/// the key, not the trampoline; otherwise the tables travel and no key is
/// named.
#[test]
fn objtool_tables_are_left_to_a_module_objtool_pass() {
    let exports = "0x0\t__SCT__tp_func_x\tvmlinux\tEXPORT_SYMBOL_GPL\t\n\
                   0x0\t__SCK__tp_func_x\tvmlinux\tEXPORT_SYMBOL_GPL\t\n";
    let Some(outs) = extract_shown_both_ways("extract-module-objtool", OBJTOOL_MADE, exports)
    else {
        return;
    };
    for (objtool_on_modules, out) in outs {
        let file = object::File::parse(&*out.object).unwrap();
        let has = |name: &str| file.section_by_name(name).is_some();
        for table in [".orc_unwind_ip", ".orc_unwind", ".return_sites"] {
            assert_eq!(
                has(table),
                !objtool_on_modules,
                "{table}, {objtool_on_modules}"
            );
        }
        let keys = reloc_targets(&file, ".discard.addressable");
        if objtool_on_modules {
            assert_eq!(keys, ["__SCK__tp_func_x"]);
        } else {
            assert!(keys.is_empty(), "{keys:?}");
        }
    }
}

/// Two functions with objtool annotations as the kernel's headers write
/// them: a `ud2` reachable after (WARN), in 6.13+'s one table, an unwind
/// hint in its own, and `STACK_FRAME_NON_STANDARD` for both.
const ANNOTATED: &str = r#"
#define REACHABLE_UD2 "ud2\n911:\n\t.pushsection .discard.annotate_insn,\"M\",@progbits,8\n\t" \
	".long 911b - .\n\t.long 5\n\t.popsection\n\t"
#define HINT "987:\n\t.pushsection .discard.unwind_hints\n\t.long 987b - .\n\t" \
	".short 0\n\t.byte 0\n\t.byte 1\n\t.byte 0\n\t.balign 4\n\t.popsection\n\t"
int shown(int x)
{
	if (x > 3)
		asm volatile(REACHABLE_UD2 HINT "nop");
	return x + 1;
}
int other(int x)
{
	if (x > 4)
		asm volatile(REACHABLE_UD2 "nop");
	return x + 2;
}
#define STACK_FRAME_NON_STANDARD(func) \
	static void __attribute__((used, section(".discard.func_stack_frame_non_standard"))) \
		*__func_stack_frame_non_standard_##func = func
STACK_FRAME_NON_STANDARD(shown);
STACK_FRAME_NON_STANDARD(other);
"#;

/// Where objtool runs on the livepatch module, a copied function keeps
/// its own entries of the annotation tables objtool reads (and no other
/// function's); elsewhere they are dropped like every `.discard` section.
#[test]
fn objtool_annotations_travel_where_objtool_checks_the_module() {
    let Some(outs) = extract_shown_both_ways("extract-annotations", ANNOTATED, "") else {
        return;
    };
    for (objtool_on_modules, out) in outs {
        let file = object::File::parse(&*out.object).unwrap();
        for table in [
            ".discard.annotate_insn",
            ".discard.unwind_hints",
            ".discard.func_stack_frame_non_standard",
        ] {
            let targets = reloc_targets(&file, table);
            if objtool_on_modules {
                assert_eq!(targets, [".text.shown"], "{table}");
                let size = file.section_by_name(table).unwrap().size();
                let entry = match table {
                    ".discard.annotate_insn" | ".discard.func_stack_frame_non_standard" => 8,
                    _ => 12,
                };
                assert_eq!(size, entry, "{table}: one entry");
            } else {
                assert!(file.section_by_name(table).is_none(), "{table} is dropped");
            }
        }
    }
}

/// With CALL_PADDING every function has 16 NOPs before it, recorded in
/// `__patchable_function_entries`: a function copied out of a shared
/// `.text` takes them along (call depth tracking writes into them), and
/// the gaps between copies are int3, so that objtool decodes each copy
/// from its first byte.
#[test]
fn a_function_copied_alone_keeps_its_padding() {
    for kind in [CcKind::Gcc, CcKind::Clang] {
        let Some(cc) = Cc::find_or_skip(kind, "padding") else {
            continue;
        };
        let dir = TempDir::new("extract-padding");
        let source = |k: &str| {
            format!(
                "extern void sink(int);\n\
                 #define padded __attribute__((patchable_function_entry(16, 16), noinline))\n\
                 static padded int scale(int x) {{ sink(x); return x * {k}; }}\n\
                 padded int entry(int x) {{ return scale(x) + 1; }}\n\
                 padded int bystander(int x) {{ return x - 1; }}\n"
            )
        };
        let pair = Pair::build_as(&cc, &dir, "pad", &source("3"), &source("4"), Sections::Off);
        let out = pair.extract("vmlinux", &["entry", "scale"], SINK).unwrap();
        let file = object::File::parse(&*out.object).unwrap();
        let text = file.section_by_name(".text").expect("a .text copy");
        let bytes = text.data().unwrap();
        let mut owned = vec![false; bytes.len()];
        for name in ["entry", "scale"] {
            let s = file
                .symbols()
                .find(|s| s.name() == Ok(name))
                .unwrap_or_else(|| panic!("no {name} in the copy"));
            let (at, end) = (s.address() as usize, (s.address() + s.size()) as usize);
            assert!(at >= 16, "{name} at {at:#x} has no room for its padding");
            assert_eq!(bytes[at - 16..at], [0x90; 16], "{name}'s padding");
            owned[at - 16..end].fill(true);
        }
        for (i, &b) in bytes.iter().enumerate() {
            assert!(
                owned[i] || b == 0xcc,
                "byte {i:#x} between copies is {b:#x}, not int3"
            );
        }
    }
}

/// x86's runtime constants (6.11+): a placeholder that vmlinux overwrites
/// at boot, which no module loader would. A function with one is refused,
/// naming the constant.
#[test]
fn a_runtime_constant_is_refused_by_name() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "runtime constant") else {
        return;
    };
    let dir = TempDir::new("extract-runtime-const");
    dir.write(
        "patched/r.c",
        r#"
unsigned long limit_ok(unsigned long p)
{
	unsigned long max;
	asm("mov %1,%0\n1:\n"
	    ".pushsection runtime_ptr_USER_PTR_MAX,\"a\"\n\t"
	    ".long 1b - %c2 - .\n"
	    ".popsection"
	    : "=r" (max) : "i" (0x0123456789abcdefull), "i" (8));
	return p <= max;
}
"#,
    );
    compile(&cc, &dir, &[("patched/r.c", "patched/r.o")]);
    link(dir.path(), "vmlinux", &["patched/r.o"]);
    let err = run_extract(
        &dir,
        "patched/r.o",
        "vmlinux",
        &["limit_ok"],
        "",
        &[("vmlinux", "vmlinux")],
    )
    .err()
    .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("`limit_ok` uses the runtime constant `USER_PTR_MAX`"),
        "{text}"
    );
}

/// A literal with embedded NULs (`COMPAT_UTS_MACHINE`, "i686\0\0") goes to
/// `.rodata` unnamed, beside named constants: the copy carries its bytes,
/// and none of theirs.
#[test]
fn an_unnamed_constant_beside_named_ones_is_copied() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "unnamed constant") else {
        return;
    };
    let dir = TempDir::new("extract-unnamed-const");
    let source = |k: &str| {
        format!(
            "extern void sink(int);\n\
             static const char table[16] = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}};\n\
             static const short other[8] = {{9, 8, 7, 6, 5, 4, 3, 2}};\n\
             int use_table(int i) {{ sink(i); return table[i & 15] + other[i & 7]; }}\n\
             extern unsigned long copy_out(void *dst, const void *src, unsigned long n);\n\
             unsigned long machine(void *dst) {{ sink({k}); \
             return copy_out(dst, \"i686\\0\\0\", sizeof(\"i686\\0\\0\")); }}\n"
        )
    };
    let pair = Pair::build_as(&cc, &dir, "anon", &source("1"), &source("2"), Sections::Off);
    let exports = format!("{SINK}0x0\tcopy_out\tvmlinux\tEXPORT_SYMBOL\t\n");
    let out = pair.extract("vmlinux", &["machine"], &exports).unwrap();
    let file = object::File::parse(&*out.object).unwrap();
    let rodata = file.section_by_name(".rodata").expect("a .rodata copy");
    let data = rodata.data().unwrap();
    assert!(
        data.windows(7).any(|w| w == b"i686\0\0\0"),
        "the literal is copied: {data:?}"
    );
    assert!(
        !data.windows(4).any(|w| w == [1, 2, 3, 4]),
        "the named table is not: {data:?}"
    );
    assert!(reloc_targets(&file, ".text").iter().any(|t| t == ".rodata"));
}
