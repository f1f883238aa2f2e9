//! Helpers shared by the integration tests: finding a real compiler (and
//! skipping with a note when there is none), the compiler flags a kernel
//! build uses, scratch folders, running the klp-cc binary with everything
//! needed to understand a failure, and reading manifests and objects.

#![allow(dead_code)] // each test module uses its own subset

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use klp_cc::checksum::SymbolRecord;
use klp_cc::manifest::{self, Content, Manifest};

/// The two compiler families klp-cc supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CcKind {
    Gcc,
    Clang,
}

impl CcKind {
    /// The program name looked up on `PATH`, and what klp-cc is given.
    pub fn program(self) -> &'static str {
        match self {
            CcKind::Gcc => "gcc",
            CcKind::Clang => "clang",
        }
    }

    /// The flags of an x86-64 kernel compile that shape code generation
    /// (from Linux 6.1's Makefile and arch/x86/Makefile, without the
    /// include paths, warnings and the retpoline set), in command-line
    /// order. klp-cc itself adds `-ffunction-sections -fdata-sections`.
    /// gcc's driver refuses `-pg` with `-fomit-frame-pointer`, so that one
    /// is left out (it is the -O2 default anyway).
    pub fn kernel_cflags(self) -> &'static [&'static str] {
        match self {
            CcKind::Gcc => KERNEL_CFLAGS_GCC,
            CcKind::Clang => KERNEL_CFLAGS_CLANG,
        }
    }

    /// What a kernel built with retpolines and return thunks adds (it also
    /// turns jump tables off).
    pub fn retpoline_cflags(self) -> &'static [&'static str] {
        match self {
            CcKind::Gcc => RETPOLINE_GCC,
            CcKind::Clang => RETPOLINE_CLANG,
        }
    }
}

impl fmt::Display for CcKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.program())
    }
}

/// Kernel-like code-generation flags for gcc (see [`CcKind::kernel_cflags`]).
pub const KERNEL_CFLAGS_GCC: &[&str] = &[
    "-std=gnu11",
    "-O2",
    "-g",
    "-fno-strict-aliasing",
    "-fno-common",
    "-fshort-wchar",
    "-fno-PIE",
    "-fno-pic",
    "-mcmodel=kernel",
    "-mno-red-zone",
    "-mno-sse",
    "-mno-mmx",
    "-mno-sse2",
    "-mno-3dnow",
    "-mno-avx",
    "-mno-80387",
    "-mno-fp-ret-in-387",
    "-mpreferred-stack-boundary=3",
    "-mskip-rax-setup",
    "-mtune=generic",
    "-fno-asynchronous-unwind-tables",
    "-fno-stack-protector",
    "-fcf-protection=none",
    "-falign-jumps=1",
    "-falign-loops=1",
    "-fno-delete-null-pointer-checks",
    "-fno-allow-store-data-races",
    "-fno-stack-clash-protection",
    "-fno-strict-overflow",
    "-fconserve-stack",
    "-mfentry",
    "-pg",
    "-mrecord-mcount",
];

/// Kernel-like code-generation flags for clang. clang has no
/// `-mrecord-mcount` (the kernel lets objtool build `__mcount_loc`),
/// no `-mno-fp-ret-in-387`, `-fconserve-stack`, `-falign-*` or
/// `-fno-allow-store-data-races`, and spells the stack alignment
/// `-mstack-alignment=8`.
pub const KERNEL_CFLAGS_CLANG: &[&str] = &[
    "-std=gnu11",
    "-O2",
    "-g",
    "-fno-strict-aliasing",
    "-fno-common",
    "-fshort-wchar",
    "-fno-PIE",
    "-fno-pic",
    "-mcmodel=kernel",
    "-mno-red-zone",
    "-mno-sse",
    "-mno-mmx",
    "-mno-sse2",
    "-mno-3dnow",
    "-mno-avx",
    "-mno-80387",
    "-mstack-alignment=8",
    "-mskip-rax-setup",
    "-mtune=generic",
    "-fno-asynchronous-unwind-tables",
    "-fno-stack-protector",
    "-fcf-protection=none",
    "-fno-delete-null-pointer-checks",
    "-fno-strict-overflow",
    "-mfentry",
    "-pg",
];

/// CONFIG_RETPOLINE + CONFIG_RETHUNK for gcc.
pub const RETPOLINE_GCC: &[&str] = &[
    "-mindirect-branch=thunk-extern",
    "-mindirect-branch-register",
    "-mfunction-return=thunk-extern",
    "-fno-jump-tables",
];

/// CONFIG_RETPOLINE for clang (`-mfunction-return` needs clang 16).
pub const RETPOLINE_CLANG: &[&str] = &[
    "-mretpoline-external-thunk",
    "-mfunction-return=thunk-extern",
    "-fno-jump-tables",
];

/// Looks `name` up on `PATH` the way a shell would.
pub fn find_program(name: &str) -> Option<PathBuf> {
    which::which(name).ok()
}

/// A compiler found on `PATH`.
#[derive(Debug, Clone)]
pub struct Cc {
    pub kind: CcKind,
    pub path: PathBuf,
}

impl Cc {
    /// Finds the compiler, or prints why the calling test is skipped and
    /// returns `None`: `let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "…") else { return };`
    pub fn find_or_skip(kind: CcKind, test: &str) -> Option<Cc> {
        match find_program(kind.program()) {
            Some(path) => Some(Cc { kind, path }),
            None => {
                skip(test, &format!("no `{}` on PATH", kind.program()));
                None
            }
        }
    }

    /// The program name to put on klp-cc's command line.
    pub fn program(&self) -> &'static str {
        self.kind.program()
    }

    /// Those of `wanted` this compiler accepts, probed once per list the way
    /// kbuild's `cc-option` does (compile an empty file with the flag); a
    /// dropped flag is printed.
    pub fn accepted_flags(&self, wanted: &[&str]) -> Vec<String> {
        /// (compiler, wanted flags) -> accepted flags.
        type FlagCache = HashMap<(PathBuf, Vec<String>), Vec<String>>;
        static CACHE: OnceLock<Mutex<FlagCache>> = OnceLock::new();
        let key = (
            self.path.clone(),
            wanted.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        );
        let cache = CACHE.get_or_init(Default::default);
        if let Some(v) = cache.lock().unwrap().get(&key) {
            return v.clone();
        }
        let all: Vec<String> = key.1.clone();
        let accepted = if self.accepts(&all) {
            all
        } else {
            // Flag by flag, each with the ones kept so far (some only make
            // sense after others: -mrecord-mcount after -pg).
            let mut keep: Vec<String> = Vec::new();
            for flag in &all {
                let mut trial = keep.clone();
                trial.push(flag.clone());
                if self.accepts(&trial) {
                    keep.push(flag.clone());
                } else {
                    eprintln!(
                        "note: {} does not accept `{flag}`; testing without it",
                        self.path.display()
                    );
                }
            }
            keep
        };
        cache.lock().unwrap().insert(key, accepted.clone());
        accepted
    }

    /// The kernel-like flags this compiler accepts.
    pub fn kernel_cflags(&self) -> Vec<String> {
        self.cflags(false, &[])
    }

    /// The kernel-like flags, the retpoline set if asked for, and `extra`:
    /// those of them this compiler accepts (probed as one command line, so
    /// flags that conflict with each other are caught too).
    pub fn cflags(&self, retpoline: bool, extra: &[String]) -> Vec<String> {
        let mut wanted: Vec<&str> = self.kind.kernel_cflags().to_vec();
        if retpoline {
            wanted.extend_from_slice(self.kind.retpoline_cflags());
        }
        wanted.extend(extra.iter().map(String::as_str));
        self.accepted_flags(&wanted)
    }

    fn accepts(&self, flags: &[String]) -> bool {
        let dir = TempDir::new("cc-option");
        let out = Command::new(&self.path)
            .args(flags)
            .args(["-Werror", "-c", "-x", "c", "/dev/null", "-o"])
            .arg(dir.path().join("probe.o"))
            .output();
        matches!(out, Ok(o) if o.status.success())
    }
}

/// `diff -u` of `before` and `after` as a patch to `rel` (`-p1` paths
/// `a/rel` and `b/rel`), made by the real diff.
pub fn unified_diff(rel: &str, before: &str, after: &str) -> String {
    let dir = TempDir::new("unified-diff");
    let (old, new) = (dir.write("old", before), dir.write("new", after));
    let out = Command::new("diff")
        .args([
            "-u",
            "--label",
            &format!("a/{rel}"),
            "--label",
            &format!("b/{rel}"),
        ])
        .arg(&old)
        .arg(&new)
        .output()
        .expect("running diff");
    assert_eq!(out.status.code(), Some(1), "diff found no difference");
    String::from_utf8(out.stdout).expect("a patch of text")
}

/// Prints the standard note for a test that cannot run here.
pub fn skip(test: &str, why: &str) {
    eprintln!("note: skipping {test}: {why}");
}

/// A scratch folder removed when dropped, unless [`TempDir::keep`] was
/// called (a failing test keeps its files for inspection and says where).
pub struct TempDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("klp-cc-test-{label}-"))
            .tempdir()
            .expect("creating a temporary folder");
        let path = dir.path().to_owned();
        TempDir {
            dir: Some(dir),
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Creates `rel` (and its folders) with `contents`; returns its path.
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("creating a folder");
        }
        std::fs::write(&p, contents).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
        p
    }

    /// Creates the folder `rel`; returns its path.
    pub fn mkdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let p = self.path.join(rel);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        p
    }

    /// Leaves the folder on disk; returns its path.
    pub fn keep(&mut self) -> PathBuf {
        if let Some(d) = self.dir.take() {
            let _ = d.keep();
        }
        self.path.clone()
    }
}

/// A finished command and everything needed to explain it.
pub struct Run {
    pub command: String,
    pub cwd: PathBuf,
    pub output: Output,
}

impl Run {
    pub fn success(&self) -> bool {
        self.output.status.success()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Command, folder, status, stdout and stderr, for a failure message.
    pub fn describe(&self) -> String {
        format!(
            "command: {}\ncwd:     {}\nstatus:  {}\n--- stdout ---\n{}--- stderr ---\n{}--------------",
            self.command,
            self.cwd.display(),
            self.output.status,
            self.stdout(),
            self.stderr()
        )
    }

    /// Panics with [`Run::describe`] unless the command succeeded.
    #[track_caller]
    pub fn assert_success(self) -> Run {
        if !self.success() {
            panic!("command failed\n{}", self.describe());
        }
        self
    }
}

/// Quotes an argument for display, only when needed.
fn shell_quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=+/.,:@%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The command line of `cmd`, shell-quoted, for messages.
pub fn command_line(cmd: &Command) -> String {
    let mut parts = vec![shell_quote(cmd.get_program())];
    parts.extend(cmd.get_args().map(shell_quote));
    parts.join(" ")
}

/// Runs `cmd` to completion, capturing its output.
pub fn run(mut cmd: Command) -> Run {
    let command = command_line(&cmd);
    let cwd = cmd
        .get_current_dir()
        .map(Path::to_owned)
        .unwrap_or_else(|| std::env::current_dir().unwrap_or_default());
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not start `{command}` in {}: {e}", cwd.display()));
    Run {
        command,
        cwd,
        output,
    }
}

/// The klp-cc binary under test.
pub fn klp_cc_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_klp-cc"))
}

/// A command running klp-cc in `cwd`, with every `KLP_CC_*` setting of the
/// calling environment removed so tests do not depend on it.
pub fn klp_cc_command(cwd: &Path) -> Command {
    let mut cmd = Command::new(klp_cc_bin());
    cmd.current_dir(cwd);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("KLP_CC_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs `klp-cc ARGS...` in `cwd`.
pub fn run_klp_cc<I, S>(cwd: &Path, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = klp_cc_command(cwd);
    cmd.args(args);
    run(cmd)
}

/// The klp-link binary under test.
pub fn klp_link_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_klp-link"))
}

/// Runs `klp-link ARGS...` in `cwd`.
pub fn run_klp_link<I, S>(cwd: &Path, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(klp_link_bin());
    cmd.current_dir(cwd).args(args);
    run(cmd)
}

/// Where klp-cc writes the manifest of `object`.
pub fn manifest_path(object: &Path) -> PathBuf {
    manifest::path_for(object)
}

/// Reads the manifest beside `object`, panicking with a clear message when
/// it is missing or unreadable.
#[track_caller]
pub fn read_manifest(object: &Path) -> Manifest {
    let path = manifest_path(object);
    if !path.exists() {
        panic!(
            "no manifest {} beside {} (object exists: {})",
            path.display(),
            object.display(),
            object.exists()
        );
    }
    Manifest::read(&path).unwrap_or_else(|e| panic!("reading manifest: {e}"))
}

/// The manifest's text as written, for failure messages.
pub fn manifest_text(object: &Path) -> String {
    let path = manifest_path(object);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| format!("(cannot read {}: {e})\n", path.display()))
}

/// The symbols of a manifest whose checksums were computed.
#[track_caller]
pub fn checksummed_symbols(m: &Manifest) -> &[SymbolRecord] {
    match &m.content {
        Content::Checksums(s) => s,
        Content::Unavailable(why) => panic!(
            "manifest of {} has no checksums: status unavailable {why}",
            m.object.display()
        ),
    }
}

/// A relocation as the tests care about it: where it is and what it names.
#[derive(Debug, Clone)]
pub struct Reloc {
    /// Name of the section the relocation patches.
    pub section: String,
    pub offset: u64,
    /// The target symbol's name; for a section symbol, the section's name.
    pub target: String,
    pub addend: i64,
}

/// A defined symbol of an object file.
#[derive(Debug, Clone)]
pub struct ElfSymbol {
    pub name: String,
    pub kind: object::SymbolKind,
    pub section: String,
    pub value: u64,
    pub size: u64,
}

/// What the tests read straight from an object, independent of klp-cc.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub path: PathBuf,
    /// Defined function, data and TLS symbols (not sections or files).
    pub symbols: Vec<ElfSymbol>,
    pub relocs: Vec<Reloc>,
    /// Allocated section contents by name.
    pub sections: HashMap<String, Vec<u8>>,
}

impl ObjectInfo {
    #[track_caller]
    pub fn read(path: &Path) -> ObjectInfo {
        use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget};

        let data =
            std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let file = object::File::parse(&*data)
            .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
        let section_name = |idx: object::SectionIndex| -> String {
            file.section_by_index(idx)
                .ok()
                .and_then(|s| s.name().ok().map(str::to_owned))
                .unwrap_or_default()
        };
        let mut symbols = Vec::new();
        for sym in file.symbols() {
            let kind = sym.kind();
            if !matches!(
                kind,
                object::SymbolKind::Text | object::SymbolKind::Data | object::SymbolKind::Tls
            ) {
                continue;
            }
            let Some(idx) = sym.section_index() else {
                continue;
            };
            symbols.push(ElfSymbol {
                name: sym.name().unwrap_or_default().to_owned(),
                kind,
                section: section_name(idx),
                value: sym.address(),
                size: sym.size(),
            });
        }
        let mut relocs = Vec::new();
        let mut sections = HashMap::new();
        for section in file.sections() {
            let name = section.name().unwrap_or_default().to_owned();
            if matches!(
                section.kind(),
                object::SectionKind::Text
                    | object::SectionKind::Data
                    | object::SectionKind::ReadOnlyData
                    | object::SectionKind::ReadOnlyString
                    | object::SectionKind::UninitializedData
            ) || name == "__jump_table"
            {
                sections.insert(name.clone(), section.data().unwrap_or_default().to_vec());
            }
            for (offset, r) in section.relocations() {
                let target = match r.target() {
                    RelocationTarget::Symbol(i) => match file.symbol_by_index(i) {
                        Ok(s) if s.kind() == object::SymbolKind::Section => {
                            s.section_index().map(section_name).unwrap_or_default()
                        }
                        Ok(s) => s.name().unwrap_or_default().to_owned(),
                        Err(_) => String::new(),
                    },
                    RelocationTarget::Section(i) => section_name(i),
                    _ => String::new(),
                };
                relocs.push(Reloc {
                    section: name.clone(),
                    offset,
                    target,
                    addend: r.addend(),
                });
            }
        }
        ObjectInfo {
            path: path.to_owned(),
            symbols,
            relocs,
            sections,
        }
    }

    pub fn symbol(&self, name: &str) -> Option<&ElfSymbol> {
        self.symbols.iter().find(|s| s.name == name)
    }

    /// The bytes of a defined symbol (empty for `.bss`).
    pub fn symbol_bytes(&self, name: &str) -> Option<&[u8]> {
        let s = self.symbol(name)?;
        let data = self.sections.get(&s.section)?;
        let start = usize::try_from(s.value).ok()?;
        let end = start.checked_add(usize::try_from(s.size).ok()?)?;
        data.get(start..end)
    }

    /// Relocations inside the symbol `name`'s bytes.
    pub fn relocs_in_symbol<'a>(&'a self, name: &str) -> Vec<&'a Reloc> {
        let Some(s) = self.symbol(name) else {
            return Vec::new();
        };
        self.relocs
            .iter()
            .filter(|r| {
                r.section == s.section && r.offset >= s.value && r.offset < s.value + s.size
            })
            .collect()
    }

    /// Relocations patching the section `name`.
    pub fn relocs_in_section<'a>(&'a self, name: &str) -> Vec<&'a Reloc> {
        self.relocs.iter().filter(|r| r.section == name).collect()
    }
}

/// `objdump -dr` of `object` (only the sections named, if any), or a note
/// that objdump is missing; for failure messages.
pub fn objdump(object: &Path, sections: &[&str]) -> String {
    let Some(objdump) = find_program("objdump") else {
        return "(objdump not found)\n".into();
    };
    let mut cmd = Command::new(objdump);
    cmd.args(["-dr", "--no-show-raw-insn"]);
    for s in sections {
        cmd.arg(format!("--section={s}"));
    }
    cmd.arg(object);
    let r = run(cmd);
    if r.success() {
        r.stdout()
    } else {
        r.describe()
    }
}

/// A small relocatable AArch64 object.
pub fn foreign_object() -> Vec<u8> {
    use object::write::{Object, Symbol, SymbolSection};
    use object::{Architecture, BinaryFormat, Endianness, SymbolFlags, SymbolKind, SymbolScope};
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::Aarch64, Endianness::Little);
    let text = obj.section_id(object::write::StandardSection::Text);
    let offset = obj.append_section_data(text, &[0xc0, 0x03, 0x5f, 0xd6], 4);
    obj.add_symbol(Symbol {
        name: b"f".to_vec(),
        value: offset,
        size: 4,
        kind: SymbolKind::Text,
        scope: SymbolScope::Linkage,
        weak: false,
        section: SymbolSection::Section(text),
        flags: SymbolFlags::None,
    });
    obj.write().unwrap()
}

/// xorshift64*: small, deterministic, good enough to pick mutations.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// `input` mutated one to five ways: a bit flipped, a byte set, a range
/// zeroed or filled with 0xff, or cut short.
pub fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        if v.is_empty() {
            break;
        }
        let at = rng.below(v.len());
        match rng.below(5) {
            0 => v[at] ^= 1 << rng.below(8),
            1 => v[at] = rng.next() as u8,
            2 => {
                let end = (at + rng.below(16) + 1).min(v.len());
                v[at..end].fill(0);
            }
            3 => {
                let end = (at + rng.below(8) + 1).min(v.len());
                v[at..end].fill(0xff);
            }
            _ => v.truncate(at),
        }
    }
    v
}
