//! A pure reading of a gcc/clang command line: does it compile or assemble
//! sources into objects (and which ones), or must it pass through untouched,
//! and why. Nothing here touches the filesystem or spawns anything; response
//! files are expanded beforehand by [`crate::response_file`].
//!
//! Everything klp-cc knows about flags is one sorted table, [`FLAGS`]: how
//! each flag's value is written, so that the value of `-o`, `-MF` or
//! `-include` is never taken for an input, and what the flag means for the
//! decision. Only a few flags change the decision; a flag not in the table
//! is opaque and stays where it was.

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

/// How a flag's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueForm {
    /// No value: the argument is the flag alone.
    Absent,
    /// The next argument (`-Xassembler --noexecstack`).
    Separate,
    /// The rest of the argument, possibly empty. The name then stands for
    /// every flag it begins (`-print-` for `-print-file-name=...`).
    Concatenated,
    /// The next argument when the flag stands alone, else the rest of the
    /// argument after the delimiter, if there is one: `-I dir` or `-Idir`,
    /// `--param n=v` or `--param=n=v`.
    Either(Option<char>),
}

/// What a flag means for klp-cc's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning {
    /// `-c`: the command makes objects, unless something else says otherwise.
    Compile,
    /// The compiler writes no object: the command passes through, for this
    /// reason.
    PassThrough(&'static str),
    /// The value is the object's path.
    Output,
    /// The value is the language of the inputs that follow (`none` ends it).
    Language,
    /// Names or asks for a dependency file. Such names vary between builds
    /// of the same code, so they stay out of the flags hash.
    DependencyFile,
    /// Hashed and sent on as written; only its value must not be taken for
    /// an input.
    Opaque,
}

#[derive(Debug)]
struct Flag {
    name: &'static str,
    value: ValueForm,
    meaning: Meaning,
}

const fn flag(name: &'static str, value: ValueForm, meaning: Meaning) -> Flag {
    Flag {
        name,
        value,
        meaning,
    }
}

const PREPROCESS: Meaning = Meaning::PassThrough("preprocess only (-E)");
const ASSEMBLY: Meaning = Meaning::PassThrough("assembly output (-S)");
const DEPS_ONLY: Meaning = Meaning::PassThrough("dependencies only (-M/-MM)");
const SYNTAX_ONLY: Meaning = Meaning::PassThrough("syntax check only (-fsyntax-only)");
const DRY_RUN: Meaning = Meaning::PassThrough("dry run (-###)");
const INFO: Meaning = Meaning::PassThrough("information query");

/// Every flag klp-cc knows, sorted by name in byte order so that a binary
/// search finds the longest name an argument begins with (checked by a
/// test). The flags that take a value are gcc's and clang's; among them
/// only `-o`, `-x` and the dependency-file ones matter beyond keeping the
/// value away from the inputs.
const FLAGS: &[Flag] = {
    use Meaning::*;
    use ValueForm::*;
    &[
        flag("-###", Absent, DRY_RUN),
        flag("--help", Absent, INFO),
        flag("--help=", Concatenated, INFO),
        flag("--param", Either(Some('=')), Opaque),
        flag("--print-", Concatenated, INFO),
        flag("--sysroot", Either(Some('=')), Opaque),
        flag("--target-help", Absent, INFO),
        flag("--version", Absent, INFO),
        flag("-A", Either(None), Opaque),
        flag("-B", Either(None), Opaque),
        flag("-D", Either(None), Opaque),
        flag("-E", Absent, PREPROCESS),
        flag("-G", Either(None), Opaque),
        flag("-I", Either(None), Opaque),
        flag("-L", Either(None), Opaque),
        flag("-M", Absent, DEPS_ONLY),
        flag("-MD", Absent, DependencyFile),
        flag("-MF", Either(None), DependencyFile),
        flag("-MM", Absent, DEPS_ONLY),
        flag("-MMD", Absent, DependencyFile),
        flag("-MP", Absent, DependencyFile),
        flag("-MQ", Either(None), DependencyFile),
        flag("-MT", Either(None), DependencyFile),
        flag("-S", Absent, ASSEMBLY),
        flag("-T", Either(None), Opaque),
        flag("-U", Either(None), Opaque),
        flag("-Wp,-MD,", Concatenated, DependencyFile),
        flag("-Wp,-MMD,", Concatenated, DependencyFile),
        flag("-Xanalyzer", Separate, Opaque),
        flag("-Xassembler", Separate, Opaque),
        flag("-Xclang", Separate, Opaque),
        flag("-Xlinker", Separate, Opaque),
        flag("-Xpreprocessor", Separate, Opaque),
        flag("-arch", Separate, Opaque),
        flag("-aux-info", Separate, Opaque),
        flag("-c", Absent, Compile),
        flag("-dumpbase", Separate, Opaque),
        flag("-dumpbase-ext", Separate, Opaque),
        flag("-dumpdir", Separate, Opaque),
        flag("-dumpfullversion", Absent, INFO),
        flag("-dumpmachine", Absent, INFO),
        flag("-dumpspecs", Absent, INFO),
        flag("-dumpversion", Absent, INFO),
        flag("-e", Either(None), Opaque),
        flag("-fsyntax-only", Absent, SYNTAX_ONLY),
        flag("-gcc-toolchain", Separate, Opaque),
        flag("-idirafter", Either(None), Opaque),
        flag("-imacros", Either(None), Opaque),
        flag("-imultilib", Either(None), Opaque),
        flag("-include", Either(None), Opaque),
        flag("-iprefix", Either(None), Opaque),
        flag("-iquote", Either(None), Opaque),
        flag("-isysroot", Either(None), Opaque),
        flag("-isystem", Either(None), Opaque),
        flag("-ivfsoverlay", Separate, Opaque),
        flag("-iwithprefix", Either(None), Opaque),
        flag("-iwithprefixbefore", Either(None), Opaque),
        flag("-l", Either(None), Opaque),
        flag("-mllvm", Separate, Opaque),
        flag("-o", Either(None), Output),
        flag("-print-", Concatenated, INFO),
        flag("-target", Separate, Opaque),
        flag("-u", Either(None), Opaque),
        flag("-wrapper", Separate, Opaque),
        flag("-x", Either(None), Language),
        flag("-z", Either(None), Opaque),
    ]
};

/// Where an argument that matched a row of [`FLAGS`] has its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written<'a> {
    /// It has none.
    Alone,
    /// In the next argument.
    Next,
    /// In the argument itself, after the flag's name (and delimiter).
    Concatenated(&'a str),
}

impl ValueForm {
    /// How an argument written as the flag's name followed by `rest` carries
    /// its value, or `None` if this flag is not written that way.
    fn fit(self, rest: &str) -> Option<Written<'_>> {
        match (self, rest) {
            (ValueForm::Absent, "") => Some(Written::Alone),
            (ValueForm::Separate | ValueForm::Either(_), "") => Some(Written::Next),
            (ValueForm::Concatenated | ValueForm::Either(None), rest) => {
                Some(Written::Concatenated(rest))
            }
            (ValueForm::Either(Some(delimiter)), rest) => {
                rest.strip_prefix(delimiter).map(Written::Concatenated)
            }
            (ValueForm::Absent | ValueForm::Separate, _) => None,
        }
    }
}

/// The row of [`FLAGS`] with the longest name `arg` begins with and is a
/// way of writing, and where `arg` has its value.
fn lookup(arg: &str) -> Option<(&'static Flag, Written<'_>)> {
    // Every name is a dash and at least one more byte, so only the rows
    // sharing `arg`'s second byte can be prefixes of it: a handful, and
    // none at all for most of a kernel command line (`-O2`, `-g`, `-pg`).
    let second = usize::from(*arg.as_bytes().get(1)?);
    let (first, end) = (BY_SECOND_BYTE[second], BY_SECOND_BYTE[second + 1]);
    let rows = &FLAGS[usize::from(first)..usize::from(end)];
    // The longest name that is a prefix of `key` is the last one not after
    // it, if that one is a prefix at all; if not, only names shorter than
    // what the two have in common can still be prefixes. `key` shrinks on
    // every round, so this ends, mostly after one search.
    let mut key = arg.as_bytes();
    while key.len() >= 2 {
        let after = rows.partition_point(|f| f.name.as_bytes() <= key);
        let row = &rows[after.checked_sub(1)?];
        let name = row.name.as_bytes();
        if key.starts_with(name) {
            // `name` is ASCII, so the rest starts on a character boundary.
            if let Some(written) = row.value.fit(&arg[name.len()..]) {
                return Some((row, written));
            }
            key = &name[..name.len() - 1];
        } else {
            let common = key.iter().zip(name).take_while(|(a, b)| a == b).count();
            key = &key[..common];
        }
    }
    None
}

/// `FLAGS[BY_SECOND_BYTE[b]..BY_SECOND_BYTE[b + 1]]` are the rows whose
/// name has `b` after the dash. Built at compile time; a name shorter than
/// two bytes fails the build here.
const BY_SECOND_BYTE: [u8; 257] = {
    assert!(FLAGS.len() <= u8::MAX as usize);
    let mut first = [0; 257];
    let mut row = 0;
    let mut byte = 0;
    while byte < first.len() {
        while row < FLAGS.len() && (FLAGS[row].name.as_bytes()[1] as usize) < byte {
            row += 1;
        }
        first[byte] = row as u8;
        byte += 1;
    }
    first
};

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
        let Some((row, written)) = lookup(flag) else {
            feed(&mut hasher, arg, None);
            continue;
        };
        let (value, next) = match written {
            Written::Alone => (None, None),
            Written::Concatenated(v) => (Some(OsStr::new(v)), None),
            Written::Next => {
                let Some(v) = args.get(i) else {
                    return Classified::PassThrough("flag without its value");
                };
                i += 1;
                (Some(v.as_os_str()), Some(v.as_os_str()))
            }
        };
        match row.meaning {
            Meaning::PassThrough(reason) => return Classified::PassThrough(reason),
            Meaning::DependencyFile => {}
            Meaning::Output => output = value,
            Meaning::Language => {
                language = value.and_then(OsStr::to_str).filter(|&l| l != "none");
                feed(&mut hasher, arg, next);
            }
            Meaning::Compile => {
                compile = true;
                feed(&mut hasher, arg, next);
            }
            Meaning::Opaque => feed(&mut hasher, arg, next),
        }
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
    fn flag_table_is_sorted_and_unique() {
        for f in FLAGS {
            assert!(f.name.starts_with('-'), "FLAGS: {:?} is not a flag", f.name);
        }
        for w in FLAGS.windows(2) {
            assert!(
                w[0].name < w[1].name,
                "FLAGS: {:?} must come after {:?}",
                w[0].name,
                w[1].name
            );
        }
    }

    #[test]
    fn lookup_finds_the_longest_name_the_argument_is_written_with() {
        fn found(arg: &str) -> Option<(&'static str, Written<'_>)> {
            lookup(arg).map(|(row, written)| (row.name, written))
        }
        assert_eq!(found("-MMD"), Some(("-MMD", Written::Alone)));
        assert_eq!(found("-MF"), Some(("-MF", Written::Next)));
        assert_eq!(found("-MFx.d"), Some(("-MF", Written::Concatenated("x.d"))));
        assert_eq!(
            found("-iwithprefixbeforedir"),
            Some(("-iwithprefixbefore", Written::Concatenated("dir")))
        );
        assert_eq!(
            found("-dumpbase-ext"),
            Some(("-dumpbase-ext", Written::Next))
        );
        assert_eq!(
            found("--param=x=1"),
            Some(("--param", Written::Concatenated("x=1")))
        );
        assert_eq!(
            found("-print-"),
            Some(("-print-", Written::Concatenated("")))
        );
        // Names that take no value, or need a delimiter, are not prefixes.
        assert_eq!(found("-MG"), None);
        assert_eq!(found("-cfoo"), None);
        assert_eq!(found("--paramx"), None);
        assert_eq!(found("-dumpbasex"), None);
        assert_eq!(found("-fno-pic"), None);
        assert_eq!(found("-"), None);
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
