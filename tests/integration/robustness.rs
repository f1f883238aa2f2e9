//! Malformed input never panics: objects and manifests of real compiles,
//! mutated thousands of ways (bytes flipped, ranges zeroed or filled,
//! truncated), give either a result or an error, on every path that reads
//! them: checksums, `diff-objects` both ways, `--explain` of every symbol
//! name, and the extraction of `klp-link build`. Mutations come from a
//! fixed-seed generator, so a failure reproduces.

use std::collections::{BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Command;

use klp_cc::checksum::{checksum_object, fingerprint_object};
use klp_cc::link::commands::diff_objects;
use klp_cc::link::explain::explain_objects;
use klp_cc::link::extract::{extract, RunningKernel, Source};
use klp_cc::link::sympos::Positions;
use klp_cc::link::symvers::Exports;
use klp_cc::manifest::Manifest;
use object::{Object, ObjectSection, ObjectSymbol};

use crate::support::{mutate, read_manifest, run, run_klp_cc, Cc, CcKind, Rng, TempDir};

/// A real object with the features the checksum code walks: strings,
/// constants, a jump table, static locals, a `.cold` part, `asm goto`.
const SOURCE: &str = r#"
extern void sink(const char *, int);
static int hits;
static const int table[] = { 3, 5, 7, 11, 13 };
__attribute__((cold, noinline)) static void oops(int x) { sink("oops", x); }
int pick(int x)
{
    static int last;
    switch (x) {
    case 0: return 10; case 1: return 21; case 2: return 32; case 3: return 43;
    case 4: return 54; case 5: return 65; case 6: return 76; default: break;
    }
    if (__builtin_expect(x < 0, 0))
        oops(x);
    last = x;
    hits++;
    sink("pick", table[x % 5]);
    return last + hits;
}
int branch(void)
{
    asm goto("1: jmp %l[yes]\n.pushsection __jump_table, \"aw\"\n.long 1b - ., %l[yes] - .\n.quad hits - .\n.popsection" : : : : yes);
    return 0;
yes:
    return 1;
}
"#;

#[test]
fn mutated_objects_and_manifests_never_panic() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "mutated_objects_and_manifests_never_panic")
    else {
        return;
    };
    let dir = TempDir::new("mutate");
    dir.write("m.c", SOURCE);
    let mut args = vec!["gcc".to_string()];
    args.extend(cc.kernel_cflags());
    args.extend(["-c", "m.c", "-o", "m.o"].map(String::from));
    run_klp_cc(dir.path(), &args).assert_success();
    let object = std::fs::read(dir.join("m.o")).unwrap();
    let manifest = read_manifest(&dir.join("m.o")).to_text();
    assert!(checksum_object(&object).is_ok());

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..3000 {
        let bad = mutate(&mut rng, &object);
        match checksum_object(&bad) {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                refused += 1;
            }
        }
        let _ = fingerprint_object(&bad);
    }
    // Both outcomes must have been exercised, or the mutations test nothing.
    assert!(ok > 100 && refused > 100, "ok {ok}, refused {refused}");

    let path = dir.join("manifest");
    let mut parsed = 0;
    for _ in 0..3000 {
        let bad = mutate(&mut rng, manifest.as_bytes());
        let text = String::from_utf8_lossy(&bad);
        if Manifest::parse(&text, &path).is_ok() {
            parsed += 1;
        }
    }
    assert!(parsed < 3000, "every mutated manifest parsed");
}

/// Corpus cases the bounded run mutates: between them they have `.cold`
/// parts, alternatives, static keys, bug and exception tables and jump
/// tables, and functions calling functions of other objects.
const BOUNDED_CASES: &[&str] = &[
    "alternative",
    "asm_goto_key",
    "bug_table_flags",
    "cold_part",
    "exception_table",
    "jump_table_case",
];

/// The default seed of the read-path property: a failure names its
/// mutant's number, which reproduces only from the same seed.
const READ_PATHS_SEED: u64 = 0x5eed_0f0b_ec75;

/// Every read path of klp-link survives mutated real objects: 300 mutants
/// of corpus objects, each compared with `diff-objects` both ways,
/// explained on every symbol name of both sides and extracted as for
/// `klp-link build`. `bench/fuzz-read-paths.sh` runs the same property
/// longer, over the whole corpus.
#[test]
fn mutated_corpus_objects_never_panic_the_read_paths() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "mutated_corpus_objects_never_panic") else {
        return;
    };
    let tally = read_paths_property(&cc, Some(BOUNDED_CASES), 300, READ_PATHS_SEED);
    tally.assert_exercised();
}

/// The long run of [`mutated_corpus_objects_never_panic_the_read_paths`]:
/// `KLP_FUZZ_ITERATIONS` mutants (default 20,000) of every corpus case,
/// from seed `KLP_FUZZ_SEED` (decimal).
#[test]
#[ignore = "minutes long: run by bench/fuzz-read-paths.sh"]
fn mutated_corpus_objects_never_panic_the_read_paths_long() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "mutated_corpus_objects_never_panic_long") else {
        return;
    };
    let env = |name: &str, default: u64| {
        std::env::var(name).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
    };
    let iterations = env("KLP_FUZZ_ITERATIONS", 20_000) as usize;
    let seed = env("KLP_FUZZ_SEED", READ_PATHS_SEED);
    let tally = read_paths_property(&cc, None, iterations, seed);
    eprintln!("fuzz-read-paths: {iterations} mutants from seed {seed:#x}, no panic; {tally:?}");
    tally.assert_exercised();
}

/// One compiled corpus case.
struct Case {
    name: String,
    /// `orig.o` and `patched.o`, as files for the commands that read paths.
    paths: [PathBuf; 2],
    bytes: [Vec<u8>; 2],
    /// Every symbol name of either object, defined or not.
    names: Vec<String>,
    /// The functions of each object, for the extraction to copy.
    functions: [Vec<String>; 2],
    /// The symbols of `orig.o`, standing in for the running kernel's.
    positions: HashMap<String, Positions>,
}

/// How often each read path gave a result and how often it refused.
#[derive(Debug, Default)]
struct Tally {
    diff: [usize; 2],
    explain: [usize; 2],
    extract: [usize; 2],
}

impl Tally {
    fn count(slot: &mut [usize; 2], ok: bool) {
        slot[usize::from(!ok)] += 1;
    }

    /// Both outcomes of every path happened, or the mutations test nothing.
    fn assert_exercised(&self) {
        for (path, [ok, refused]) in [
            ("diff-objects", self.diff),
            ("explain", self.explain),
            ("extract", self.extract),
        ] {
            assert!(ok > 0 && refused > 0, "{path}: ok {ok}, refused {refused}");
        }
    }
}

/// Runs the read paths on `iterations` mutants of the objects of `cases`
/// (every corpus case if `None`); panics, naming the saved mutant, if any
/// of them panics or reports an internal error.
fn read_paths_property(cc: &Cc, cases: Option<&[&str]>, iterations: usize, seed: u64) -> Tally {
    let dir = TempDir::new("read-paths");
    let cases = compile_cases(cc, &dir, cases);
    let exports = Exports::parse("0x0\t__fentry__\tvmlinux\tEXPORT_SYMBOL\t\n");
    let bad_path = dir.join("mutant.o");
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    for i in 0..iterations {
        let case = &cases[rng.below(cases.len())];
        let side = rng.below(2);
        let bad = mutate_elf(&mut rng, &case.bytes[side]);
        std::fs::write(&bad_path, &bad).unwrap();
        let failed = |path: &str| -> String {
            let keep = std::env::temp_dir().join(format!("klp-fuzz-{}-{i}.o", case.name));
            std::fs::write(&keep, &bad).unwrap();
            format!(
                "{path} panicked on mutant {i} (seed {seed:#x}) of {}/{}, saved as {}",
                case.name,
                ["orig.o", "patched.o"][side],
                keep.display()
            )
        };
        let other = &case.paths[1 - side];
        for (a, b) in [(other, &bad_path), (&bad_path, other)] {
            let out = guarded(
                || diff_objects(a, b, &[], i % 2 == 0, None).map(|(o, _)| o),
                || failed("diff-objects"),
            );
            let text = match &out {
                Ok(o) => o.clone(),
                Err(e) => e.to_string(),
            };
            assert!(
                !text.contains("internal error"),
                "{}\n{text}",
                failed("checksums")
            );
            Tally::count(&mut tally.diff, out.is_ok());
        }
        for (k, name) in case.names.iter().enumerate() {
            let (a, b) = if k % 2 == 0 {
                (other, &bad_path)
            } else {
                (&bad_path, other)
            };
            let out = guarded(|| explain_objects(a, b, name), || failed("--explain"));
            Tally::count(&mut tally.explain, out.is_ok());
        }
        let kernel = RunningKernel {
            exports: &exports,
            positions: &case.positions,
            objtool_on_modules: false,
        };
        let source = Source {
            target: "vmlinux",
            object_name: "mutant.o".into(),
            data: &bad,
            changed: case.functions[side].clone(),
            new: vec![],
            new_data: BTreeSet::new(),
            once_flags: Default::default(),
        };
        let out = guarded(|| extract(&[source], &kernel), || failed("extraction"));
        Tally::count(&mut tally.extract, out.is_ok());
    }
    tally
}

/// `f()`, or a test failure saying `what()` if it panics.
fn guarded<T>(f: impl FnOnce() -> T, what: impl FnOnce() -> String) -> T {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| panic!("{}", what()))
}

/// Compiles `orig.c` and `patched.c` of each corpus case (all if `only` is
/// `None`) with the case's flags and `-ffunction-sections
/// -fdata-sections`, as klp-cc builds kernel objects.
fn compile_cases(cc: &Cc, dir: &TempDir, only: Option<&[&str]>) -> Vec<Case> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus");
    let mut names: Vec<String> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| only.is_none_or(|only| only.contains(&n.as_str())))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let (retpoline, extra) = case_flags(&corpus.join(&name).join("expect"));
            let flags = cc.cflags(retpoline, &extra);
            let paths = ["orig", "patched"].map(|version| {
                let object = dir.join(format!("{name}.{version}.o"));
                let mut cmd = Command::new(&cc.path);
                cmd.args(&flags)
                    .args(["-ffunction-sections", "-fdata-sections", "-c"])
                    .arg(corpus.join(&name).join(format!("{version}.c")))
                    .arg("-o")
                    .arg(&object);
                run(cmd).assert_success();
                object
            });
            let bytes = paths.clone().map(|p| std::fs::read(p).unwrap());
            let mut all = BTreeSet::new();
            let functions = bytes.clone().map(|b| {
                let file = object::File::parse(&*b).unwrap();
                all.extend(
                    file.symbols()
                        .filter_map(|s| s.name().ok().map(str::to_owned))
                        .filter(|n| !n.is_empty()),
                );
                file.symbols()
                    .filter(|s| s.kind() == object::SymbolKind::Text && s.is_definition())
                    .filter_map(|s| s.name().ok().map(str::to_owned))
                    .collect()
            });
            let positions = HashMap::from([(
                "vmlinux".to_owned(),
                Positions::read(&paths[0], true).unwrap(),
            )]);
            Case {
                name,
                paths,
                bytes,
                names: all.into_iter().collect(),
                functions,
                positions,
            }
        })
        .collect()
}

/// Whether the case's `expect` asks for the retpoline set, and its extra
/// gcc flags.
fn case_flags(expect: &Path) -> (bool, Vec<String>) {
    let text = std::fs::read_to_string(expect).unwrap_or_default();
    let mut retpoline = false;
    let mut extra = Vec::new();
    for line in text.lines() {
        let line = line.strip_prefix("gcc:").unwrap_or(line).trim();
        if line == "retpoline" {
            retpoline = true;
        } else if let Some(flags) = line.strip_prefix("cflags ") {
            extra.extend(flags.split_whitespace().map(str::to_owned));
        }
    }
    (retpoline, extra)
}

/// `object` mutated where the readers look: one to three byte-level
/// mutations ([`mutate`]'s kinds), each inside one region picked at random
/// among the ELF header, the section header table, the symbol table, a
/// relocation section, a code section and the whole file.
fn mutate_elf(rng: &mut Rng, object: &[u8]) -> Vec<u8> {
    let regions = elf_regions(object);
    let mut v = object.to_vec();
    for _ in 0..=rng.below(2) {
        let (start, len) = regions[rng.below(regions.len())];
        let (start, len) = (start.min(v.len()), len.min(v.len().saturating_sub(start)));
        if len == 0 {
            continue;
        }
        let mut piece = mutate(rng, &v[start..start + len]);
        if piece.len() < len && rng.below(4) != 0 {
            // Most cuts stay inside the region, keeping the file's length.
            piece.extend_from_slice(&v[start + piece.len()..start + len]);
        }
        v.splice(start..start + len, piece);
    }
    v
}

/// (offset, length) of the parts of an ELF object worth mutating.
fn elf_regions(object: &[u8]) -> Vec<(usize, usize)> {
    let file = object::read::elf::ElfFile64::<object::Endianness>::parse(object).unwrap();
    let endian = file.endian();
    let header = file.elf_header();
    let shoff = header.e_shoff.get(endian) as usize;
    let shsize = usize::from(header.e_shnum.get(endian)) * 64;
    let mut regions = vec![(0, 64), (shoff, shsize), (0, object.len())];
    for s in file.sections() {
        let wanted = matches!(
            s.kind(),
            object::SectionKind::Text | object::SectionKind::Metadata
        ) || s.elf_section_header().sh_type.get(endian) == object::elf::SHT_RELA
            || s.name() == Ok(".symtab");
        if let (true, Some((offset, size))) = (wanted, s.file_range()) {
            regions.push((offset as usize, size as usize));
        }
    }
    regions
}
