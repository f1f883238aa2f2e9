//! A pure reading of a gcc/clang command line: does it compile or assemble
//! sources into objects (and which ones), or must it pass through untouched,
//! and why. Nothing here touches the filesystem or spawns anything; response
//! files are expanded beforehand by [`crate::response_file`].
//!
//! Only a short list of flags changes the decision; every other flag is
//! opaque and stays where it was. The table below exists so that the value of
//! a flag such as `-o`, `-MF` or `-include` is never taken for an input.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::Xxh3;

/// The outcome of reading a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// Compiles sources to objects: add the section flags, write manifests.
    Compile(CompilePlan),
    /// Anything else: run the compiler exactly as asked, write nothing.
    PassThrough(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompilePlan {
    /// The objects the compiler will write, as paths relative to its cwd.
    pub objects: Vec<PathBuf>,
    /// Hash of the arguments that shape the generated code: everything but
    /// the input, the output and dependency-file options.
    pub flags_hash: u64,
}

/// Flags whose value is the next argument when written alone. Sorted, so a
/// binary search finds them (checked by a test).
const TAKES_VALUE: &[&str] = &[
    "--param",
    "--sysroot",
    "-A",
    "-B",
    "-D",
    "-G",
    "-I",
    "-L",
    "-MF",
    "-MQ",
    "-MT",
    "-T",
    "-U",
    "-Xanalyzer",
    "-Xassembler",
    "-Xclang",
    "-Xlinker",
    "-Xpreprocessor",
    "-arch",
    "-aux-info",
    "-dumpbase",
    "-dumpbase-ext",
    "-dumpdir",
    "-e",
    "-gcc-toolchain",
    "-idirafter",
    "-imacros",
    "-imultilib",
    "-include",
    "-iprefix",
    "-iquote",
    "-isysroot",
    "-isystem",
    "-ivfsoverlay",
    "-iwithprefix",
    "-iwithprefixbefore",
    "-l",
    "-mllvm",
    "-o",
    "-target",
    "-u",
    "-wrapper",
    "-x",
    "-z",
];

/// Flags after which the compiler writes no object.
fn no_object_reason(flag: &str) -> Option<&'static str> {
    Some(match flag {
        "-E" => "preprocess only (-E)",
        "-S" => "assembly output (-S)",
        "-M" | "-MM" => "dependencies only (-M/-MM)",
        "-fsyntax-only" => "syntax check only (-fsyntax-only)",
        "-###" => "dry run (-###)",
        "--version" | "--help" | "--target-help" | "-dumpmachine" | "-dumpversion"
        | "-dumpfullversion" | "-dumpspecs" => "information query",
        f if f.starts_with("-print-") || f.starts_with("--print-") || f.starts_with("--help=") => {
            "information query"
        }
        _ => return None,
    })
}

/// Arguments that name dependency files: they vary between builds of the same
/// code and do not shape it.
fn is_dependency_flag(flag: &str) -> bool {
    matches!(flag, "-MD" | "-MMD" | "-MP")
        || flag.starts_with("-Wp,-MD,")
        || flag.starts_with("-Wp,-MMD,")
        || (flag.len() > 3
            && (flag.starts_with("-MF") || flag.starts_with("-MT") || flag.starts_with("-MQ")))
}

/// Languages gcc compiles or assembles, by file extension.
fn is_source_extension(ext: &str) -> bool {
    matches!(
        ext,
        "c" | "i"
            | "h"
            | "s"
            | "S"
            | "sx"
            | "cc"
            | "cp"
            | "cxx"
            | "cpp"
            | "c++"
            | "C"
            | "CPP"
            | "ii"
            | "m"
            | "mi"
            | "M"
            | "mm"
            | "mii"
            | "f"
            | "F"
            | "for"
            | "f90"
            | "F90"
            | "f95"
            | "F95"
            | "go"
            | "d"
            | "adb"
            | "ads"
            | "rs"
    )
}

struct Input<'a> {
    path: &'a OsStr,
    /// The `-x` language in force, if any.
    language: Option<&'a str>,
}

/// Reads `args` (the compiler's arguments, without the program name).
pub fn classify(args: &[OsString]) -> Classified {
    let mut compile = false;
    let mut output: Option<&OsStr> = None;
    let mut language: Option<&str> = None;
    let mut inputs: Vec<Input> = Vec::new();
    let mut hasher = Xxh3::new();

    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_os_str();
        i += 1;
        let Some(flag) = arg.to_str().filter(|a| a.starts_with('-') && a.len() > 1) else {
            inputs.push(Input {
                path: arg,
                language,
            });
            continue;
        };
        if let Some(reason) = no_object_reason(flag) {
            return Classified::PassThrough(reason);
        }
        if is_dependency_flag(flag) {
            continue;
        }
        if TAKES_VALUE.binary_search(&flag).is_ok() {
            let Some(value) = args.get(i) else {
                return Classified::PassThrough("flag without its value");
            };
            i += 1;
            match flag {
                "-o" => output = Some(value),
                "-MF" | "-MT" | "-MQ" => {}
                "-x" => {
                    language = value.to_str().filter(|&l| l != "none");
                    feed(&mut hasher, arg, Some(value));
                }
                _ => feed(&mut hasher, arg, Some(value)),
            }
            continue;
        }
        if let Some(o) = flag.strip_prefix("-o") {
            output = Some(OsStr::new(o));
            continue;
        }
        if let Some(l) = flag.strip_prefix("-x") {
            language = Some(l).filter(|&l| l != "none");
        }
        if flag == "-c" {
            compile = true;
        }
        feed(&mut hasher, arg, None);
    }

    if !compile {
        return Classified::PassThrough("no -c: not a compile to an object (link or other)");
    }
    let sources: Vec<&Input> = inputs.iter().filter(|i| is_source(i)).collect();
    if sources.iter().any(|s| s.path == "-") {
        return Classified::PassThrough("source from standard input (a kbuild probe)");
    }
    if sources.iter().any(|s| s.path == "/dev/null") {
        return Classified::PassThrough("source /dev/null (a kbuild cc-option probe)");
    }
    if sources.is_empty() {
        return Classified::PassThrough("no source file to compile");
    }
    let objects = match output {
        Some(o) if o == "/dev/null" || o == "-" => {
            return Classified::PassThrough("object written to /dev/null or stdout")
        }
        Some(_) if sources.len() > 1 => {
            return Classified::PassThrough("-o with several sources (the compiler refuses it)")
        }
        Some(o) => vec![PathBuf::from(o)],
        None => sources.iter().map(|s| default_object(s.path)).collect(),
    };
    Classified::Compile(CompilePlan {
        objects,
        flags_hash: hasher.digest(),
    })
}

fn feed(h: &mut Xxh3, flag: &OsStr, value: Option<&OsStr>) {
    h.update(flag.as_bytes());
    h.update(&[0]);
    if let Some(v) = value {
        h.update(v.as_bytes());
        h.update(&[0]);
    }
}

fn is_source(input: &Input) -> bool {
    if input.path == "-" {
        return true;
    }
    match input.language {
        Some(_) => true,
        None => Path::new(input.path)
            .extension()
            .and_then(OsStr::to_str)
            .is_some_and(is_source_extension),
    }
}

/// Where gcc puts the object of `source` when no `-o` is given: its file
/// name with the extension replaced by `.o`, in the current directory.
fn default_object(source: &OsStr) -> PathBuf {
    let name = Path::new(source)
        .file_name()
        .unwrap_or(source)
        .to_os_string();
    PathBuf::from(name).with_extension("o")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    fn objects(line: &str) -> Vec<PathBuf> {
        match classify(&args(line)) {
            Classified::Compile(p) => p.objects,
            other => panic!("`{line}` classified as {other:?}"),
        }
    }

    fn reason(line: &str) -> &'static str {
        match classify(&args(line)) {
            Classified::PassThrough(r) => r,
            other => panic!("`{line}` classified as {other:?}"),
        }
    }

    #[test]
    fn value_table_is_sorted_and_unique() {
        assert!(
            TAKES_VALUE.windows(2).all(|w| w[0] < w[1]),
            "sort TAKES_VALUE"
        );
    }

    #[test]
    fn kbuild_compile_line() {
        let line = "-Wp,-MMD,fs/proc/.cmdline.o.d -nostdinc -I./arch/x86/include \
                    -include ./include/linux/kconfig.h -D__KERNEL__ -O2 -mcmodel=kernel \
                    -DKBUILD_MODFILE='\"fs/proc/cmdline\"' -DKBUILD_BASENAME='\"cmdline\"' \
                    -c -o fs/proc/cmdline.o fs/proc/cmdline.c";
        assert_eq!(objects(line), vec![PathBuf::from("fs/proc/cmdline.o")]);
    }

    #[test]
    fn output_forms_and_default_objects() {
        assert_eq!(objects("-c a.c -ob/x.o"), vec![PathBuf::from("b/x.o")]);
        assert_eq!(objects("-c dir/a.c"), vec![PathBuf::from("a.o")]);
        assert_eq!(
            objects("-c a.c dir/b.S"),
            vec![PathBuf::from("a.o"), PathBuf::from("b.o")]
        );
        assert_eq!(
            objects("-x c -c weird.txt -o w.o"),
            vec![PathBuf::from("w.o")]
        );
        assert_eq!(
            objects("-c -xassembler-with-cpp e.inc -o e.o"),
            vec![PathBuf::from("e.o")]
        );
    }

    #[test]
    fn values_are_not_inputs() {
        assert_eq!(
            objects("-c -include x.c -MF d.c -I inc.c -o a.o a.c"),
            vec![PathBuf::from("a.o")]
        );
        // -x none ends the language switch: a.txt is not a source any more.
        assert_eq!(reason("-x c -x none -c a.txt"), "no source file to compile");
    }

    #[test]
    fn non_compiles_pass_through() {
        assert_eq!(reason("-E a.c"), "preprocess only (-E)");
        assert_eq!(reason("-S -o a.s a.c"), "assembly output (-S)");
        assert_eq!(reason("-M a.c"), "dependencies only (-M/-MM)");
        assert_eq!(reason("-c -MM a.c"), "dependencies only (-M/-MM)");
        assert_eq!(reason("--version"), "information query");
        assert_eq!(reason("-print-file-name=include"), "information query");
        assert_eq!(reason("-dumpmachine"), "information query");
        assert_eq!(
            reason("-o prog a.o b.o"),
            "no -c: not a compile to an object (link or other)"
        );
        assert_eq!(
            reason("-v"),
            "no -c: not a compile to an object (link or other)"
        );
        assert_eq!(
            reason("-Werror -c -x c /dev/null -o .tmp_1/tmp"),
            "source /dev/null (a kbuild cc-option probe)"
        );
        assert_eq!(
            reason("-c -x assembler-with-cpp -o .tmp_1/tmp -"),
            "source from standard input (a kbuild probe)"
        );
        assert_eq!(reason("-c a.o"), "no source file to compile");
        assert_eq!(reason("-c -o"), "flag without its value");
    }

    #[test]
    fn rarer_forms_pass_through_with_their_reason() {
        assert_eq!(reason("-c a.c --help=warnings"), "information query");
        assert_eq!(reason("--print-sysroot"), "information query");
        assert_eq!(reason("-dumpspecs"), "information query");
        assert_eq!(reason("-### -c a.c"), "dry run (-###)");
        assert_eq!(
            reason("-c -fsyntax-only a.c"),
            "syntax check only (-fsyntax-only)"
        );
        assert_eq!(reason("-c a.c -MF"), "flag without its value");
        assert_eq!(reason("-c a.c --param"), "flag without its value");
        // Joined values never need a next argument.
        assert_eq!(objects("-c a.c -MFa.d -Iinc"), vec![PathBuf::from("a.o")]);
    }

    #[test]
    fn dumpbase_takes_a_value_and_is_a_compile() {
        assert_eq!(
            objects("-c -dumpbase a.c a.c -o a.o"),
            vec![PathBuf::from("a.o")]
        );
    }

    #[test]
    fn flags_hash_ignores_output_and_dependency_files() {
        let hash = |l: &str| match classify(&args(l)) {
            Classified::Compile(p) => p.flags_hash,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            hash("-O2 -Wp,-MMD,a/.x.o.d -MF q -c -o a/x.o x.c"),
            hash("-O2 -Wp,-MMD,b/.x.o.d -MF r -c -o b/x.o x.c")
        );
        assert_ne!(hash("-O2 -c x.c"), hash("-O1 -c x.c"));
        assert_ne!(hash("-DA=1 -c x.c"), hash("-DA=2 -c x.c"));
    }

    /// Manifests record the flags hash, and a snapshot compares it across
    /// builds made by different klp-cc versions: these values must never
    /// change for the same command line.
    #[test]
    fn flags_hash_is_stable() {
        let hash = |l: &str| match classify(&args(l)) {
            Classified::Compile(p) => p.flags_hash,
            other => panic!("{other:?}"),
        };
        let pinned: &[(&str, u64)] = &[
            ("-c x.c", 17918856389235258234),
            ("-O2 -c -o x.o x.c", 16089163507047106021),
            (
                "-Wp,-MMD,a/.x.o.d -nostdinc -I./arch/x86/include -I ./include \
                 -include ./include/linux/kconfig.h -D__KERNEL__ -DFOO=1 -U BAR \
                 --param=allow-store-data-races=0 --param max-inline-insns-single=40 \
                 -isystem /usr/lib/gcc/include -MD -MF x.d -MTx.o -MQ x.o -MP \
                 -Xassembler --noexecstack -mcmodel=kernel -c -o a/x.o x.c",
                14825739036071811567,
            ),
            ("-x c -c w.txt -o w.o", 8526189078750659467),
            ("-xc -c w.txt -ow.o", 18197842901513073122),
            (
                "-x assembler-with-cpp -D__ASSEMBLY__ -c e.S",
                16852677716185106235,
            ),
            (
                "-c -dumpbase a.c -dumpdir d/ a.c -o a.o",
                10262001102089170752,
            ),
            (
                "-c --unknown-flag -fno-pic -Wl,-z,now a.c",
                4887767240905667434,
            ),
        ];
        let got: Vec<(&str, u64)> = pinned.iter().map(|&(l, _)| (l, hash(l))).collect();
        assert_eq!(got, pinned);
    }
}
