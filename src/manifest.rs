//! The checksum manifest: a versioned, line-oriented text file written beside
//! each object (`dir/.name.o.klp` for `dir/name.o`), meant to be read by people
//! and by `diff` as much as by klp-link.
//!
//! ```text
//! klp-cc-manifest 6
//! object fs/proc/cmdline.o
//! compiler GCC: (Debian 12.2.0-14+deb12u1) 12.2.0
//! driver /usr/bin/x86_64-linux-gnu-gcc-12
//! flags 5a0d8c1e4f7b2a93
//! sections on
//! arch x86_64
//! fingerprint 0c4be0f2a1d93e77
//! status ok
//! func 3f9c0e1d2b4a5968 local 47 .text.cmdline_proc_show cmdline_proc_show file=cmdline.c
//! data 77aa01c2d3e4f506 global 8 .data.foo foo
//! cold 1b2c3d4e5f607182 local 21 .text.unlikely.bar bar.cold file=bar.c parent=bar
//! func 2c3d4e5f60718293 local 30 .text.baz baz file=bar.c clones=bar.constprop.1 once=__already_done.3
//! func 4e5f607182930a1b global 64 .text.qux qux lines=5f60718293a4b5c6 sites=812:fs/qux.c
//! end 5
//! ```
//!
//! Header lines are `key value`; symbol lines are
//! `kind checksum binding size section name [key=value ...]`; the keys are
//! `demangled`, `file`, `parent`, `clones` (comma-separated), `once` (the
//! once-flags the function refers to, comma-separated in the order of its
//! code; new in version 3) and `lines` (the line-insensitive checksum, only
//! where line numbers were left out: its absence means there are none,
//! which version 1 could not say). Version 4 has the same lines, with
//! checksums that name a reference to a folded table entry by the function
//! it describes and know the line of 6.19's `__bug_table` entries: a
//! version-3 manifest is recomputed rather than compared. Version 5 adds
//! `sites`: the line-number sites `lines` leaves out, comma-separated in
//! the order the checksum meets them, each `LINE:FILE`, or
//! `LINE:?NAME|NAME...` when the site names no file and it is one of the
//! file names the function loads (`LINE:?` for none), so that klp-link can
//! check each changed line against the patch's line map. Version 6 has the
//! same lines, with checksums and fingerprints that see through the `call
//! __fentry__` objtool's `--mcount` turns into a NOP, and without the
//! `__pfx_` symbols objtool's `--prefix` lays over a function's padding (so
//! an object objtool rewrote after the compile keeps its symbols and
//! checksums): a version-5 manifest is recomputed rather than compared, and
//! a snapshot holding them is refused.
//! The `end` line carries the symbol count, so a truncated file is never
//! mistaken for a complete one. A manifest that could not be computed says
//! `status unavailable <reason>` and lists no symbols. Values escape `\`,
//! space, tab and newline as `\\`, `\s`, `\t` and `\n`. Paths are bytes:
//! a byte that is not part of valid UTF-8 is written `\xNN` (two lower-case
//! hex digits), so a path that is valid UTF-8 is written as it always was.

use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::checksum::{Binding, LineSite, SiteFile, SymbolKind, SymbolRecord};

/// First line of every manifest; the number is bumped on any incompatible change.
pub const MAGIC: &str = "klp-cc-manifest";
pub const VERSION: u32 = 6;

/// The format version a manifest's first line gives, if it is one.
pub fn format_version(first_line: &str) -> Option<&str> {
    first_line
        .strip_prefix(MAGIC)
        .and_then(|r| r.strip_prefix(' '))
}

/// How a symbol line spells its kind.
impl SymbolKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SymbolKind::Func => "func",
            SymbolKind::Cold => "cold",
            SymbolKind::Data => "data",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "func" => SymbolKind::Func,
            "cold" => SymbolKind::Cold,
            "data" => SymbolKind::Data,
            _ => return None,
        })
    }
}

/// How a symbol line spells its binding.
impl Binding {
    pub fn as_str(self) -> &'static str {
        match self {
            Binding::Local => "local",
            Binding::Global => "global",
            Binding::Weak => "weak",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "local" => Binding::Local,
            "global" => Binding::Global,
            "weak" => Binding::Weak,
            _ => return None,
        })
    }
}

/// Either the checksums, or why they could not be computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Checksums(Vec<SymbolRecord>),
    Unavailable(String),
}

/// A whole manifest. Header fields that are unknown (an object checksummed
/// after the fact, say) are `None` and written as `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub object: PathBuf,
    /// The compiler's own identification (the object's `.comment`).
    pub compiler: Option<String>,
    /// The compiler program klp-cc ran.
    pub driver: Option<String>,
    /// Hash of the code-generation arguments (see [`crate::args`]).
    pub flags: Option<u64>,
    /// Whether klp-cc added `-ffunction-sections -fdata-sections`.
    pub sections: Option<bool>,
    pub arch: Option<String>,
    /// Hash of what objtool leaves alone in the object (see [`crate::checksum`]).
    pub fingerprint: Option<u64>,
    pub content: Content,
}

/// Where the manifest of `object` lives: a hidden file beside it, so kbuild's
/// own `.gitignore` (`.*`) keeps it out of `git status`.
pub fn path_for(object: &Path) -> PathBuf {
    // Built from the name's bytes: a lossy name would give two objects whose
    // names differ only in non-UTF-8 bytes one manifest.
    let mut name = OsString::from(".");
    name.push(object.file_name().unwrap_or_default());
    name.push(".klp");
    object.with_file_name(name)
}

impl Manifest {
    /// Renders the manifest in its text form.
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(256);
        let opt = |v: &Option<String>| v.as_deref().map(escape_line).unwrap_or_else(|| "-".into());
        let hex = |v: Option<u64>| v.map(|h| format!("{h:016x}")).unwrap_or_else(|| "-".into());
        let _ = writeln!(out, "{MAGIC} {VERSION}");
        let _ = writeln!(out, "object {}", escape_path_line(&self.object));
        let _ = writeln!(out, "compiler {}", opt(&self.compiler));
        let _ = writeln!(out, "driver {}", opt(&self.driver));
        let _ = writeln!(out, "flags {}", hex(self.flags));
        let sections = match self.sections {
            Some(true) => "on",
            Some(false) => "off",
            None => "-",
        };
        let _ = writeln!(out, "sections {sections}");
        let _ = writeln!(out, "arch {}", opt(&self.arch));
        let _ = writeln!(out, "fingerprint {}", hex(self.fingerprint));
        match &self.content {
            Content::Unavailable(reason) => {
                let _ = writeln!(out, "status unavailable {}", escape_line(reason));
                let _ = writeln!(out, "end 0");
            }
            Content::Checksums(symbols) => {
                let _ = writeln!(out, "status ok");
                for s in symbols {
                    let _ = write!(
                        out,
                        "{} {:016x} {} {} {} {}",
                        s.kind.as_str(),
                        s.checksum,
                        s.binding.as_str(),
                        s.size,
                        escape(&s.section),
                        escape(&s.name)
                    );
                    if s.demangled != s.name {
                        let _ = write!(out, " demangled={}", escape(&s.demangled));
                    }
                    if let Some(f) = &s.file {
                        let _ = write!(out, " file={}", escape(f));
                    }
                    if let Some(p) = &s.parent {
                        let _ = write!(out, " parent={}", escape(p));
                    }
                    for (key, names) in [("clones", &s.clone_refs), ("once", &s.once_flags)] {
                        if !names.is_empty() {
                            let names: Vec<String> = names.iter().map(|r| escape(r)).collect();
                            let _ = write!(out, " {key}={}", names.join(","));
                        }
                    }
                    if let Some(l) = s.lines {
                        let _ = write!(out, " lines={l:016x}");
                    }
                    if !s.line_sites.is_empty() {
                        let sites: Vec<String> = s
                            .line_sites
                            .iter()
                            .map(|site| match &site.file {
                                SiteFile::Known(f) => format!("{}:{f}", site.line),
                                SiteFile::OneOf(names) => {
                                    format!("{}:?{}", site.line, names.join("|"))
                                }
                            })
                            .collect();
                        let _ = write!(out, " sites={}", sites.join(","));
                    }
                    out.push('\n');
                }
                let _ = writeln!(out, "end {}", symbols.len());
            }
        }
        out
    }

    /// Parses the text form; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Manifest, ParseError> {
        Parser::new(text, origin).manifest()
    }

    /// Reads and parses a manifest file.
    pub fn read(path: &Path) -> Result<Manifest, ParseError> {
        let bytes = std::fs::read(path).map_err(|e| ParseError::io(path, e))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| ParseError {
            path: path.to_owned(),
            line: 0,
            what: "not UTF-8 text".into(),
        })?;
        Manifest::parse(text, path)
    }

    /// Writes the manifest to `path` atomically: a temporary file in the same
    /// folder, renamed over `path`, so concurrent readers and writers only
    /// ever see complete manifests.
    pub fn write_atomic(&self, path: &Path) -> std::io::Result<()> {
        crate::atomic_file::write(path, self.to_text().as_bytes(), ".klp-manifest")
    }
}

/// A manifest that cannot be read, with the file and line at fault.
#[derive(Debug)]
pub struct ParseError {
    pub path: PathBuf,
    /// 1-based; 0 when the fault is not on one line.
    pub line: usize,
    pub what: String,
}

impl ParseError {
    fn io(path: &Path, e: std::io::Error) -> Self {
        ParseError {
            path: path.to_owned(),
            line: 0,
            what: e.to_string(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.what)
        } else {
            write!(f, "{}:{}: {}", self.path.display(), self.line, self.what)
        }
    }
}

impl std::error::Error for ParseError {}

struct Parser<'a> {
    lines: std::iter::Enumerate<std::str::Lines<'a>>,
    origin: &'a Path,
    line: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, origin: &'a Path) -> Self {
        Parser {
            lines: text.lines().enumerate(),
            origin,
            line: 0,
        }
    }

    fn error(&self, what: impl Into<String>) -> ParseError {
        ParseError {
            path: self.origin.to_owned(),
            line: self.line,
            what: what.into(),
        }
    }

    fn next_line(&mut self) -> Result<&'a str, ParseError> {
        match self.lines.next() {
            Some((i, l)) => {
                self.line = i + 1;
                Ok(l)
            }
            None => Err(self.error("truncated manifest (no `end` line)")),
        }
    }

    /// Reads `key value` and returns the value.
    fn header(&mut self, key: &str) -> Result<&'a str, ParseError> {
        let line = self.next_line()?;
        match line.split_once(' ') {
            Some((k, v)) if k == key => Ok(v),
            _ => Err(self.error(format!("expected `{key} ...`, found `{line}`"))),
        }
    }

    fn opt_text(&self, v: &str) -> Result<Option<String>, ParseError> {
        if v == "-" {
            Ok(None)
        } else {
            unescape(v).map(Some).map_err(|e| self.error(e.to_string()))
        }
    }

    /// `LINE:FILE`, or `LINE:?NAME|NAME...` when the file is one of those.
    fn line_site(&self, v: &str) -> Result<LineSite, ParseError> {
        let bad = || self.error(format!("bad line site `{v}`"));
        let (line, file) = v.split_once(':').ok_or_else(bad)?;
        let line = line.parse().map_err(|_| bad())?;
        let file = match file.strip_prefix('?') {
            Some("") => SiteFile::OneOf(Vec::new()),
            Some(names) => SiteFile::OneOf(names.split('|').map(str::to_owned).collect()),
            None if SiteFile::writable(file) => SiteFile::Known(file.to_owned()),
            None => return Err(bad()),
        };
        Ok(LineSite { line, file })
    }

    fn opt_hex(&self, v: &str) -> Result<Option<u64>, ParseError> {
        if v == "-" {
            return Ok(None);
        }
        self.hex(v).map(Some)
    }

    fn hex(&self, v: &str) -> Result<u64, ParseError> {
        if v.len() != 16 {
            return Err(self.error(format!("`{v}` is not a 16-digit hex checksum")));
        }
        u64::from_str_radix(v, 16).map_err(|_| self.error(format!("`{v}` is not hex")))
    }

    fn manifest(mut self) -> Result<Manifest, ParseError> {
        let first = self.next_line()?;
        let version = format_version(first)
            .ok_or_else(|| self.error("not a klp-cc manifest (bad first line)"))?;
        if version != VERSION.to_string() {
            return Err(self.error(format!(
                "manifest format version {version}; this klp-cc reads version {VERSION} \
                 (rebuild the tree with this klp-cc)"
            )));
        }
        let object = self.header("object")?;
        let object = unescape_path(object).map_err(|e| self.error(e.to_string()))?;
        let v = self.header("compiler")?;
        let compiler = self.opt_text(v)?;
        let v = self.header("driver")?;
        let driver = self.opt_text(v)?;
        let v = self.header("flags")?;
        let flags = self.opt_hex(v)?;
        let sections = match self.header("sections")? {
            "on" => Some(true),
            "off" => Some(false),
            "-" => None,
            other => return Err(self.error(format!("bad `sections {other}`"))),
        };
        let v = self.header("arch")?;
        let arch = self.opt_text(v)?;
        let v = self.header("fingerprint")?;
        let fingerprint = self.opt_hex(v)?;
        let status = self.header("status")?;
        let content = if status == "ok" {
            Content::Checksums(self.symbols()?)
        } else if let Some(reason) = status.strip_prefix("unavailable ") {
            let reason = unescape(reason).map_err(|e| self.error(e.to_string()))?;
            self.end(0)?;
            Content::Unavailable(reason)
        } else {
            return Err(self.error(format!("bad status `{status}`")));
        };
        if let Some((i, l)) = self.lines.next() {
            self.line = i + 1;
            return Err(self.error(format!("text after `end`: `{l}`")));
        }
        Ok(Manifest {
            object,
            compiler,
            driver,
            flags,
            sections,
            arch,
            fingerprint,
            content,
        })
    }

    fn end(&mut self, count: usize) -> Result<(), ParseError> {
        let v = self.header("end")?;
        if v != count.to_string() {
            return Err(self.error(format!("`end {v}` but {count} symbols were listed")));
        }
        Ok(())
    }

    fn symbols(&mut self) -> Result<Vec<SymbolRecord>, ParseError> {
        let mut out = Vec::new();
        loop {
            let line = self.next_line()?;
            if let Some(count) = line.strip_prefix("end ") {
                if count != out.len().to_string() {
                    return Err(self.error(format!(
                        "`end {count}` but {} symbols were listed",
                        out.len()
                    )));
                }
                return Ok(out);
            }
            out.push(self.symbol(line)?);
        }
    }

    fn symbol(&self, line: &str) -> Result<SymbolRecord, ParseError> {
        let mut f = line.split(' ');
        let mut field = |what: &str| {
            f.next()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| self.error(format!("symbol line lacks its {what}: `{line}`")))
        };
        let kind = field("kind")?;
        let kind = SymbolKind::parse(kind)
            .ok_or_else(|| self.error(format!("unknown symbol kind `{kind}`")))?;
        let checksum = self.hex(field("checksum")?)?;
        let binding = field("binding")?;
        let binding = Binding::parse(binding)
            .ok_or_else(|| self.error(format!("unknown binding `{binding}`")))?;
        let size = field("size")?;
        let size = size
            .parse()
            .map_err(|_| self.error(format!("bad size `{size}`")))?;
        let section = unescape(field("section")?).map_err(|e| self.error(e.to_string()))?;
        let name = unescape(field("name")?).map_err(|e| self.error(e.to_string()))?;
        let mut rec = SymbolRecord {
            kind,
            checksum,
            lines: None,
            binding,
            size,
            section,
            demangled: name.clone(),
            name,
            file: None,
            parent: None,
            clone_refs: Vec::new(),
            once_flags: Vec::new(),
            line_sites: Vec::new(),
        };
        for extra in f {
            let (k, v) = extra
                .split_once('=')
                .ok_or_else(|| self.error(format!("bad field `{extra}`")))?;
            if k == "clones" || k == "once" {
                let names = v
                    .split(',')
                    .map(unescape)
                    .collect::<Result<_, _>>()
                    .map_err(|e| self.error(e.to_string()))?;
                if k == "clones" {
                    rec.clone_refs = names;
                } else {
                    rec.once_flags = names;
                }
                continue;
            }
            if k == "lines" {
                rec.lines = Some(self.hex(v)?);
                continue;
            }
            if k == "sites" {
                rec.line_sites = v
                    .split(',')
                    .map(|site| self.line_site(site))
                    .collect::<Result<_, _>>()?;
                continue;
            }
            let v = unescape(v).map_err(|e| self.error(e.to_string()))?;
            match k {
                "demangled" => rec.demangled = v,
                "file" => rec.file = Some(v),
                "parent" => rec.parent = Some(v),
                _ => return Err(self.error(format!("unknown field `{k}`"))),
            }
        }
        Ok(rec)
    }
}

/// Where an escaped value ends, and so what it must escape besides `\`
/// and line ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    /// A header value runs to the end of its line.
    LineEnd,
    /// A symbol-line field ends at a space.
    Space,
}

/// Escapes a header value: only what would end the line (and the escape
/// character itself) is escaped.
fn escape_line(s: &str) -> String {
    if !s.contains(['\\', '\n', '\r']) && s != "-" {
        return s.to_owned();
    }
    escape_bytes(s.as_bytes(), Until::LineEnd)
}

/// Escapes a symbol-line field.
fn escape(s: &str) -> String {
    if !s.contains(['\\', ' ', '\t', '\n', '\r']) && !s.is_empty() {
        return s.to_owned();
    }
    escape_bytes(s.as_bytes(), Until::Space)
}

/// Escapes a path as a header value (the manifest's `object` line, a
/// snapshot's `tree` and `targets` lines): its bytes, not a lossy string,
/// so that two names differing only in non-UTF-8 bytes stay two names.
pub fn escape_path_line(path: &Path) -> String {
    match path.to_str() {
        Some(s) => escape_line(s),
        None => escape_bytes(path.as_os_str().as_bytes(), Until::LineEnd),
    }
}

/// Escapes a path as a field that ends at a space (a snapshot's `object`
/// lines).
pub fn escape_path_field(path: &Path) -> String {
    match path.to_str() {
        Some(s) => escape(s),
        None => escape_bytes(path.as_os_str().as_bytes(), Until::Space),
    }
}

fn escape_bytes(bytes: &[u8], until: Until) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                ' ' if until == Until::Space => out.push_str("\\s"),
                '\t' if until == Until::Space => out.push_str("\\t"),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    match until {
        // A literal "-" must not read back as "unknown".
        Until::LineEnd if out == "-" => "\\-".into(),
        Until::Space if out.is_empty() => "\\e".into(),
        _ => out,
    }
}

/// A value whose escapes cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EscapeError {
    /// An unknown escape, or `\x` without two hex digits.
    BadEscape { value: String, escape: String },
    /// `\xNN` escapes that make no UTF-8 where text is expected.
    NotUtf8 { value: String },
}

impl fmt::Display for EscapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EscapeError::BadEscape { value, escape } => {
                write!(f, "bad escape `\\{escape}` in `{value}`")
            }
            EscapeError::NotUtf8 { value } => write!(f, "`{value}` is not UTF-8 text"),
        }
    }
}

impl std::error::Error for EscapeError {}

fn unescape(s: &str) -> Result<String, EscapeError> {
    if !s.contains('\\') {
        return Ok(s.to_owned());
    }
    String::from_utf8(unescape_bytes(s)?).map_err(|_| EscapeError::NotUtf8 { value: s.into() })
}

/// Reads back a path escaped by [`escape_path_line`] or
/// [`escape_path_field`], byte for byte.
pub fn unescape_path(s: &str) -> Result<PathBuf, EscapeError> {
    if !s.contains('\\') {
        return Ok(PathBuf::from(s));
    }
    Ok(PathBuf::from(OsString::from_vec(unescape_bytes(s)?)))
}

fn unescape_bytes(s: &str) -> Result<Vec<u8>, EscapeError> {
    let mut out = Vec::with_capacity(s.len());
    let mut chars = s.chars();
    let bad = |escape: String| EscapeError::BadEscape {
        value: s.into(),
        escape,
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            continue;
        }
        match chars.next() {
            Some('\\') => out.push(b'\\'),
            Some('s') => out.push(b' '),
            Some('t') => out.push(b'\t'),
            Some('n') => out.push(b'\n'),
            Some('r') => out.push(b'\r'),
            Some('e') => {}
            Some('-') => out.push(b'-'),
            Some('x') => {
                let digits: String = chars.by_ref().take(2).collect();
                let byte = (digits.len() == 2)
                    .then(|| u8::from_str_radix(&digits, 16).ok())
                    .flatten()
                    .ok_or_else(|| bad(format!("x{digits}")))?;
                out.push(byte);
            }
            other => return Err(bad(other.map(String::from).unwrap_or_default())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            object: "dir with space/a\\b.o".into(),
            compiler: Some("GCC: (Debian 12.2.0-14) 12.2.0".into()),
            driver: Some("-".into()),
            flags: Some(0x1234),
            sections: Some(true),
            arch: Some("x86_64".into()),
            fingerprint: Some(u64::MAX),
            content: Content::Checksums(vec![
                SymbolRecord {
                    kind: SymbolKind::Func,
                    checksum: 7,
                    lines: Some(9),
                    binding: Binding::Local,
                    size: 47,
                    section: ".text.foo.constprop.0".into(),
                    name: "foo.constprop.0".into(),
                    demangled: "foo.constprop".into(),
                    file: Some("a.c".into()),
                    parent: None,
                    clone_refs: vec!["bar.isra.0".into(), "baz.part.1".into()],
                    once_flags: vec!["__already_done.3".into()],
                    line_sites: vec![
                        LineSite {
                            line: 812,
                            file: SiteFile::Known("fs/a.c".into()),
                        },
                        LineSite {
                            line: 9,
                            file: SiteFile::OneOf(Vec::new()),
                        },
                        LineSite {
                            line: 10,
                            file: SiteFile::OneOf(vec!["a.c".into(), "include/b.h".into()]),
                        },
                    ],
                },
                SymbolRecord {
                    kind: SymbolKind::Cold,
                    checksum: 8,
                    lines: None,
                    binding: Binding::Local,
                    size: 3,
                    section: ".text.unlikely.foo".into(),
                    name: "foo.cold".into(),
                    demangled: "foo.cold".into(),
                    file: Some("a.c".into()),
                    parent: Some("foo".into()),
                    clone_refs: Vec::new(),
                    once_flags: Vec::new(),
                    line_sites: Vec::new(),
                },
            ]),
        }
    }

    #[test]
    fn text_round_trips() {
        let m = sample();
        let text = m.to_text();
        assert_eq!(Manifest::parse(&text, Path::new("m")).unwrap(), m);
        let u = Manifest {
            content: Content::Unavailable("LLVM bitcode (LTO)\nsecond line".into()),
            ..sample()
        };
        assert_eq!(Manifest::parse(&u.to_text(), Path::new("m")).unwrap(), u);
    }

    #[test]
    fn truncation_is_detected_at_every_line() {
        let text = sample().to_text();
        let lines: Vec<&str> = text.lines().collect();
        for n in 0..lines.len() {
            let cut = lines[..n].join("\n");
            assert!(
                Manifest::parse(&cut, Path::new("m")).is_err(),
                "accepted a manifest cut after {n} lines"
            );
        }
    }

    #[test]
    fn wrong_version_says_what_to_do() {
        let text = sample()
            .to_text()
            .replace(&format!("klp-cc-manifest {VERSION}"), "klp-cc-manifest 9");
        let e = Manifest::parse(&text, Path::new("m")).unwrap_err();
        assert!(e.to_string().contains("version 9"), "{e}");
    }

    #[test]
    fn manifest_path_is_hidden_beside_object() {
        assert_eq!(
            path_for(Path::new("fs/proc/cmdline.o")),
            Path::new("fs/proc/.cmdline.o.klp")
        );
        assert_eq!(path_for(Path::new("a.o")), Path::new(".a.o.klp"));
        let bytes = |b: &[u8]| PathBuf::from(OsString::from_vec(b.to_vec()));
        assert_eq!(path_for(&bytes(b"d/a\xff.o")), bytes(b"d/.a\xff.o.klp"));
    }

    #[test]
    fn non_utf8_object_paths_round_trip_as_hex_escapes() {
        let object = PathBuf::from(OsString::from_vec(b"d\xe9/a\xff\\x.o".to_vec()));
        let m = Manifest {
            object: object.clone(),
            ..sample()
        };
        let text = m.to_text();
        assert!(text.contains("\nobject d\\xe9/a\\xff\\\\x.o\n"), "{text}");
        assert_eq!(
            Manifest::parse(&text, Path::new("m")).unwrap().object,
            object
        );
        assert_eq!(
            escape_path_field(&object),
            "d\\xe9/a\\xff\\\\x.o",
            "fields escape the same way"
        );
    }

    #[test]
    fn bad_hex_escapes_are_refused() {
        for bad in ["a\\x", "a\\xf", "a\\xzz"] {
            assert!(unescape_path(bad).is_err(), "{bad}");
        }
        assert!(unescape("\\xff").is_err(), "text fields stay UTF-8");
    }
}
