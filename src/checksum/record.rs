//! What the checksums say about one symbol: its kind, binding, checksums
//! and names. The manifest writes these records as text; klp-link
//! correlates and compares them.

/// What a symbol line describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SymbolKind {
    /// A function; its checksum also covers its `.cold` parts.
    Func,
    /// A `.cold` part split off a function by gcc: it travels with `parent`.
    Cold,
    /// A data object (`.data`, `.rodata`, `.bss`, thread-local).
    Data,
}

/// ELF symbol binding, as far as correlation cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Binding {
    Local,
    Global,
    Weak,
}

impl Binding {
    /// From an ELF `st_bind`: anything not local or weak links as global.
    pub fn of_elf(bind: u8) -> Binding {
        match bind {
            0 => Binding::Local,
            2 => Binding::Weak,
            _ => Binding::Global,
        }
    }
}

/// One function or data object and its checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolRecord {
    pub kind: SymbolKind,
    pub checksum: u64,
    /// For a function with proven line-number sites (see
    /// `checksum::lines`): the checksum with those line numbers left out.
    /// Two versions whose checksums differ but whose line-insensitive ones
    /// are equal differ only in line numbers.
    pub lines: Option<u64>,
    pub binding: Binding,
    pub size: u64,
    pub section: String,
    pub name: String,
    /// The name with compiler-generated suffix numbers removed (DESIGN §3).
    pub demangled: String,
    /// For a local symbol: the source file (`STT_FILE`) it belongs to.
    pub file: Option<String>,
    /// For a `.cold` part: the function it was split from.
    pub parent: Option<String>,
    /// The compiler clones (`foo.constprop.1`) this symbol refers to, by
    /// exact name: their numbers are not stable, so the checksum names them
    /// by demangled name and klp-link matches these across builds.
    pub clone_refs: Vec<String>,
    /// The once-flags (`__already_done.3`) a function refers to, by exact
    /// name, in the order its code first refers to them: the site at the
    /// same position in the running kernel's function has the flag to
    /// share.
    pub once_flags: Vec<String>,
    /// The proven line-number sites the line-insensitive checksum leaves
    /// out, in the order it meets them: with the patch at hand, klp-link
    /// accepts a line-only difference only where the patch moved each line
    /// to its new number.
    pub line_sites: Vec<LineSite>,
}

/// One `__LINE__` in a function's code or in a call site's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineSite {
    pub line: u32,
    pub file: SiteFile,
}

/// The file a line site's number belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteFile {
    /// The `__FILE__` passed or recorded beside it.
    Known(String),
    /// Not read at the site (the caller kept `__FILE__` in another
    /// register, across a loop): one of these file names the function
    /// loads, sorted, or none that could be read.
    OneOf(Vec<String>),
}

impl SiteFile {
    /// Whether `name` can be written in a manifest's `sites=` list.
    pub fn writable(name: &str) -> bool {
        !name.is_empty()
            && !name.starts_with('?')
            && !name.contains([',', '|'])
            && !name.contains(char::is_whitespace)
    }
}
