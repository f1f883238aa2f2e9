//! Extraction of changed functions into a patch object, on real gcc
//! objects: what is copied, what becomes a normal relocation to an exported
//! symbol, what becomes a `.klp.sym` reference with the right sympos, and
//! what is refused.

use std::collections::{BTreeSet, HashMap};

use klp_cc::link::extract::{extract, RunningKernel, Source};
use klp_cc::link::sympos::Positions;
use klp_cc::link::symvers::Exports;
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget};

use crate::support::{run_klp_cc, Cc, CcKind, TempDir};

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

#[test]
fn references_go_to_copies_exports_or_klp_symbols() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "extract") else {
        return;
    };
    let dir = TempDir::new("extract");
    dir.write("a.c", KERNEL_A);
    dir.write("b.c", KERNEL_B);
    dir.write("patched/b.c", PATCHED_B);
    let flags = cc.kernel_cflags();
    for (src, out) in [
        ("a.c", "a.o"),
        ("b.c", "b.o"),
        ("patched/b.c", "patched/b.o"),
    ] {
        let mut args = vec!["gcc".to_string()];
        args.extend(flags.iter().cloned());
        args.extend(["-c", src, "-o", out].map(String::from));
        run_klp_cc(dir.path(), &args).assert_success();
    }
    // The running vmlinux: a.o then b.o, linked relocatably (symbol order
    // and STT_FILE symbols as in a real link).
    let status = std::process::Command::new("ld")
        .current_dir(dir.path())
        .args(["-r", "-o", "vmlinux", "a.o", "b.o"])
        .status()
        .unwrap();
    assert!(status.success());

    let exports = Exports::parse(
        "0x0\texported_fn\tvmlinux\tEXPORT_SYMBOL\t\n\
         0x0\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n\
         0x0\t__fentry__\tvmlinux\tEXPORT_SYMBOL\t\n\
         0x0\t__x86_return_thunk\tvmlinux\tEXPORT_SYMBOL\t\n",
    );
    let mut positions = HashMap::new();
    positions.insert(
        "vmlinux".to_string(),
        Positions::read(&dir.join("vmlinux"), true).unwrap(),
    );
    let data = std::fs::read(dir.join("patched/b.o")).unwrap();
    let source = Source {
        target: "vmlinux",
        object_name: "b.o".into(),
        data: &data,
        changed: vec!["use_b".into()],
        new: vec![],
        new_data: BTreeSet::new(),
    };
    let kernel = RunningKernel {
        exports: &exports,
        positions: &positions,
    };
    let out = extract(&[source], &kernel).unwrap();
    assert_eq!(out.funcs.len(), 1);
    assert_eq!(out.funcs[0].old_name, "use_b");
    assert_eq!(out.funcs[0].sympos, 0);

    let file = object::File::parse(&*out.object).unwrap();
    let mut targets = BTreeSet::new();
    let text = file
        .section_by_name(".text.use_b")
        .expect("the function's section is copied");
    for (_, r) in text.relocations() {
        let RelocationTarget::Symbol(i) = r.target() else {
            continue;
        };
        let s = file.symbol_by_index(i).unwrap();
        let name = if s.kind() == object::SymbolKind::Section {
            file.section_by_index(s.section_index().unwrap())
                .unwrap()
                .name()
                .unwrap()
                .to_string()
        } else {
            s.name().unwrap().to_string()
        };
        targets.insert(name);
    }
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
    assert!(
        file.section_by_name("__mcount_loc").is_some(),
        "mcount entries travel with the function"
    );
}

#[test]
fn a_function_with_a_bug_table_entry_is_refused_for_now() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "extract refusal") else {
        return;
    };
    let dir = TempDir::new("extract-refuse");
    dir.write(
        "w.c",
        "int warn_if(int x) {\n\tasm volatile(\"1: ud2\\n.pushsection __bug_table,\\\"aw\\\"\\n.long 1b - .\\n.word 0\\n.popsection\");\n\treturn x;\n}\n",
    );
    let mut args = vec!["gcc".to_string()];
    args.extend(cc.kernel_cflags());
    args.extend(["-c", "w.c", "-o", "w.o"].map(String::from));
    run_klp_cc(dir.path(), &args).assert_success();
    let data = std::fs::read(dir.join("w.o")).unwrap();
    let positions = HashMap::new();
    let exports = Exports::default();
    let source = Source {
        target: "vmlinux",
        object_name: "w.o".into(),
        data: &data,
        changed: vec![],
        new: vec!["warn_if".into()],
        new_data: BTreeSet::new(),
    };
    let kernel = RunningKernel {
        exports: &exports,
        positions: &positions,
    };
    let e = extract(&[source], &kernel).err().expect("refused");
    assert!(e.contains("warn_if") && e.contains("__bug_table"), "{e}");
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
    dir.write("s.c", orig);
    dir.write("patched/s.c", orig.replace("note(x);", "note(x + 1);"));
    for (src, out) in [("s.c", "s.o"), ("patched/s.c", "patched/s.o")] {
        let mut args = vec!["gcc".to_string()];
        args.extend(cc.kernel_cflags());
        args.extend(["-c", src, "-o", out].map(String::from));
        run_klp_cc(dir.path(), &args).assert_success();
    }
    let status = std::process::Command::new("ld")
        .current_dir(dir.path())
        .args(["-r", "-o", "vmlinux", "s.o"])
        .status()
        .unwrap();
    assert!(status.success());
    let exports = Exports::parse(
        "0x0\tnote\tvmlinux\tEXPORT_SYMBOL\t\n0x0\t__fentry__\tvmlinux\tEXPORT_SYMBOL\t\n\
         0x0\t__x86_return_thunk\tvmlinux\tEXPORT_SYMBOL\t\n",
    );
    let mut positions = HashMap::new();
    positions.insert(
        "vmlinux".to_string(),
        Positions::read(&dir.join("vmlinux"), true).unwrap(),
    );
    let data = std::fs::read(dir.join("patched/s.o")).unwrap();
    let source = Source {
        target: "vmlinux",
        object_name: "s.o".into(),
        data: &data,
        changed: vec!["handler".into()],
        new: vec![],
        new_data: BTreeSet::new(),
    };
    let kernel = RunningKernel {
        exports: &exports,
        positions: &positions,
    };
    let out = extract(&[source], &kernel).unwrap();
    let file = object::File::parse(&*out.object).unwrap();
    let names: Vec<String> = file
        .symbols()
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .collect();
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
