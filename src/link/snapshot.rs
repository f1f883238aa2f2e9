//! The snapshot of an original build: everything later steps need from it,
//! kept in one folder that survives the tree being patched and rebuilt in
//! place.
//!
//! ```text
//! SNAP/snapshot        klp-link-snapshot 1 / tree <objtree> / release <kernel.release>
//!                      [/ external <dir>: an external module's folder, whose
//!                      objects are named by absolute paths]
//! SNAP/targets         "<target> <object>" per line (vmlinux, then modules)
//! SNAP/objects         per object: "object <path> <size> <mtime_ns> <source>"
//!                      then its manifest (which ends with its `end` line)
//! SNAP/Module.symvers  copied from the tree, if it has one: what the original
//!                      build exports (the patched tree's may differ)
//! SNAP/symbols/<target>.syms   the linked symbol table of vmlinux and each
//!                      module, in table order: "<type> <bind> <addr> <size> <name>"
//!                      per symbol and "f <name>" per STT_FILE symbol (which
//!                      starts one source file's local symbols), for sympos;
//!                      snapshots from before the `f` lines have none, so
//!                      `build` needs `--vmlinux` with them (the format's
//!                      version stays 1: older readers ignored `.syms`)
//! SNAP/objects.d/<object>      with --with-objects: the original objects, for --explain
//! ```
//!
//! All text, so a person can look inside; one file for all manifests, so
//! reading 30,000 of them is one read. Paths are escaped as in manifests
//! (`\\`, line ends, in `objects` also space and tab, and `\xNN` for bytes
//! that are not UTF-8), so that every file name reads back byte for byte.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::destination::{DestinationError, SnapshotDestination, SNAPSHOT_MAGIC};
use super::load::{self, ManifestSource, Stamp};
use super::sympos::{linked_symbols, LinkedSymbol, SymbolTableError};
use super::tree::{Tree, TreeError};
use crate::manifest::{
    escape_path_field, escape_path_line, format_version, unescape_path, Content, Manifest,
    ParseError, MAGIC as MANIFEST_MAGIC, VERSION as MANIFEST_VERSION,
};

const MAGIC: &str = SNAPSHOT_MAGIC;
const OBJECTS_DIR: &str = "objects.d";

#[derive(Debug)]
pub enum SnapshotError {
    Tree(TreeError),
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    Format {
        path: PathBuf,
        line: usize,
        what: String,
    },
    /// Manifests written by a klp-cc whose checksums are not comparable
    /// with this one's.
    OldManifests {
        path: PathBuf,
        version: String,
    },
    Destination(DestinationError),
    Symbols(SymbolTableError),
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::Tree(e) => e.fmt(f),
            SnapshotError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            SnapshotError::Format { path, line, what } => write!(
                f,
                "{}:{line}: {what} (not a klp-link snapshot, or a damaged one: take it again \
                 with `klp-link snapshot`)",
                path.display()
            ),
            SnapshotError::OldManifests { path, version } => write!(
                f,
                "{}: the snapshot holds manifests of format version {version}, whose \
                 checksums this klp-link ({MANIFEST_MAGIC} {MANIFEST_VERSION}) cannot compare; \
                 take the snapshot again with this klp-link (`klp-link snapshot --force`) while the \
                 tree is still the original build: older manifests are then recomputed from \
                 the objects",
                path.display()
            ),
            SnapshotError::Destination(e) => e.fmt(f),
            SnapshotError::Symbols(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SnapshotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SnapshotError::Tree(e) => Some(e),
            SnapshotError::Io { error, .. } => Some(error),
            SnapshotError::Format { .. } | SnapshotError::OldManifests { .. } => None,
            SnapshotError::Destination(e) => Some(e),
            SnapshotError::Symbols(e) => Some(e),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |error| SnapshotError::Io {
        path: path.to_owned(),
        error,
    }
}

/// One object of the original build. Its manifest is kept as text and only
/// parsed when the object was rebuilt, so reading a snapshot of 30,000
/// objects costs one scan for the boundaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapObject {
    pub stamp: Stamp,
    pub source: ManifestSource,
    pub manifest_text: String,
    origin: PathBuf,
}

impl SnapObject {
    pub fn manifest(&self) -> Result<Manifest, ParseError> {
        Manifest::parse(&self.manifest_text, &self.origin)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub objtree: PathBuf,
    pub release: Option<String>,
    /// The external module folder the snapshot includes, if any.
    pub external: Option<PathBuf>,
    pub targets: BTreeMap<String, Vec<PathBuf>>,
    /// Each target's linked file, relative to the tree (only at capture).
    pub linked: BTreeMap<String, PathBuf>,
    pub objects: BTreeMap<PathBuf, SnapObject>,
    /// Objects a target lists that were missing from the tree.
    pub missing: Vec<load::LoadError>,
    /// The format version of its manifests, when an older klp-cc wrote
    /// them: their checksums are not comparable with this one's.
    pub older_manifests: Option<String>,
}

/// Where a snapshot taken `--with-objects` keeps the original of `object`;
/// an external module's, named by an absolute path, under `external/`
/// (joined whole, it would name the object itself).
pub fn original_object(snapshot: &Path, object: &Path) -> PathBuf {
    let store = snapshot.join(OBJECTS_DIR);
    match object.strip_prefix("/") {
        Ok(rel) => store.join("external").join(rel),
        Err(_) => store.join(object),
    }
}

impl Snapshot {
    /// Refuses a snapshot whose manifests an older klp-cc wrote: comparing
    /// checksums of two algorithms would report unchanged functions as
    /// changed or, worse, changed ones as unchanged.
    pub fn comparable(&self, dir: &Path) -> Result<(), SnapshotError> {
        match &self.older_manifests {
            Some(version) => Err(SnapshotError::OldManifests {
                path: dir.to_owned(),
                version: version.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Reads everything from a built tree. Objects are loaded (and their
    /// manifests verified) on all cores.
    pub fn capture(tree: &Tree) -> Snapshot {
        let mut paths: Vec<&Path> = tree.objects().map(|(_, o)| o).collect();
        paths.sort();
        paths.dedup();
        // Kept as text straight away: a parsed manifest is several times
        // larger, and 30,000 of them would not fit the memory target.
        let loaded = load::parallel_map(&paths, |p| {
            load::load(&tree.objtree, p).map(|rec| {
                let snap = SnapObject {
                    stamp: rec.stamp,
                    source: rec.source,
                    manifest_text: rec.manifest.to_text(),
                    origin: rec.path.clone(),
                };
                (rec.path, snap)
            })
        });
        let mut objects = BTreeMap::new();
        let mut missing = Vec::new();
        for r in loaded {
            match r {
                Ok((path, snap)) => {
                    objects.insert(path, snap);
                }
                Err(e) => missing.push(e),
            }
        }
        Snapshot {
            objtree: tree.objtree.clone(),
            release: kernel_release(&tree.objtree),
            external: tree.external.clone(),
            targets: tree.targets.clone(),
            linked: tree.linked.clone(),
            objects,
            missing,
            older_manifests: None,
        }
    }

    /// The objects whose manifests hold no checksums, and why.
    pub fn without_checksums(&self) -> Vec<(&Path, String)> {
        self.objects
            .iter()
            // Parsing 30,000 manifests to find the few without checksums
            // would double the snapshot's time; the status line tells.
            .filter(|(_, o)| !o.manifest_text.contains("\nstatus ok\n"))
            .filter_map(|(path, o)| match o.manifest().map(|m| m.content) {
                Ok(Content::Checksums(_)) => None,
                Ok(Content::Unavailable(why)) => Some((path.as_path(), why)),
                Err(e) => Some((path.as_path(), e.to_string())),
            })
            .collect()
    }

    /// Writes the snapshot folder `dest` (atomically: built beside it, then
    /// renamed into place), with Module.symvers and the linked symbol tables
    /// of `vmlinux` and the modules from the tree.
    pub fn write(
        &self,
        dest: &SnapshotDestination,
        with_objects: bool,
    ) -> Result<(), SnapshotError> {
        let parent = dest.parent();
        let tmp = tempfile::Builder::new()
            .prefix(".klp-snapshot")
            .tempdir_in(parent)
            .map_err(io(parent))?;
        let dir = tmp.path();

        let mut head = format!("{MAGIC}\ntree {}\n", escape_path_line(&self.objtree));
        if let Some(r) = &self.release {
            let _ = writeln!(head, "release {r}");
        }
        if let Some(e) = &self.external {
            let _ = writeln!(head, "external {}", escape_path_line(e));
        }
        write_file(&dir.join("snapshot"), &head)?;

        let mut targets = String::new();
        for (t, objs) in &self.targets {
            for o in objs {
                let _ = writeln!(targets, "{t} {}", escape_path_line(o));
            }
        }
        write_file(&dir.join("targets"), &targets)?;

        let mut objects = String::new();
        for (path, rec) in &self.objects {
            let source = match &rec.source {
                ManifestSource::Compile => "compile".to_owned(),
                ManifestSource::Recomputed(why) => format!("recomputed {why}"),
            };
            let _ = writeln!(
                objects,
                "object {} {} {} {}",
                escape_path_field(path),
                rec.stamp.size,
                rec.stamp.mtime_ns,
                source.replace('\n', " ")
            );
            objects.push_str(&rec.manifest_text);
        }
        write_file(&dir.join("objects"), &objects)?;

        let symvers = self.objtree.join("Module.symvers");
        if symvers.is_file() {
            std::fs::copy(&symvers, dir.join("Module.symvers")).map_err(io(&symvers))?;
        }
        std::fs::create_dir(dir.join("symbols")).map_err(io(dir))?;
        for (target, rel) in &self.linked {
            let file = self.objtree.join(rel);
            if !file.is_file() {
                continue;
            }
            let symbols = linked_symbols(&file).map_err(SnapshotError::Symbols)?;
            let text = render_symbols(&symbols);
            write_file(&dir.join("symbols").join(format!("{target}.syms")), &text)?;
        }

        if with_objects {
            for path in self.objects.keys() {
                let to = original_object(dir, path);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent).map_err(io(parent))?;
                }
                let from = self.objtree.join(path);
                std::fs::copy(&from, &to).map_err(io(&from))?;
            }
        }

        // Until it is installed the folder is removed on any error; once
        // exchanged it holds the old snapshot, which `install` removes.
        dest.install(tmp.path())
            .map_err(SnapshotError::Destination)?;
        let _ = tmp.keep();
        Ok(())
    }

    /// Reads a snapshot folder.
    pub fn read(dir: &Path) -> Result<Snapshot, SnapshotError> {
        let head_path = dir.join("snapshot");
        let head = std::fs::read_to_string(&head_path).map_err(io(&head_path))?;
        let fmt = |path: &Path, line: usize, what: &str| SnapshotError::Format {
            path: path.to_owned(),
            line,
            what: what.to_owned(),
        };
        let mut lines = head.lines();
        if lines.next() != Some(MAGIC) {
            return Err(fmt(&head_path, 1, "bad first line"));
        }
        let mut objtree = None;
        let mut release = None;
        let mut external = None;
        for (i, l) in lines.enumerate() {
            let path = |v| unescape_path(v).map_err(|e| fmt(&head_path, i + 2, &e.to_string()));
            match l.split_once(' ') {
                Some(("tree", v)) => objtree = Some(path(v)?),
                Some(("release", v)) => release = Some(v.to_owned()),
                Some(("external", v)) => external = Some(path(v)?),
                _ => return Err(fmt(&head_path, i + 2, "unknown line")),
            }
        }
        let objtree = objtree.ok_or_else(|| fmt(&head_path, 0, "no `tree` line"))?;

        let targets_path = dir.join("targets");
        let text = std::fs::read_to_string(&targets_path).map_err(io(&targets_path))?;
        let mut targets: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for (i, l) in text.lines().enumerate() {
            let (t, o) = l
                .split_once(' ')
                .ok_or_else(|| fmt(&targets_path, i + 1, "expected `<target> <object>`"))?;
            let o = unescape_path(o).map_err(|e| fmt(&targets_path, i + 1, &e.to_string()))?;
            targets.entry(t.to_owned()).or_default().push(o);
        }

        let objects_path = dir.join("objects");
        let text = std::fs::read_to_string(&objects_path).map_err(io(&objects_path))?;
        let objects = parse_objects(&text, &objects_path)?;
        let older_manifests = objects
            .values()
            .find_map(|o| other_manifest_version(&o.manifest_text))
            .map(str::to_owned);
        // Every object a target lists must be there: a snapshot cut at an
        // object boundary would otherwise pass for one whose objects are
        // all new.
        if let Some(lost) = targets
            .values()
            .flatten()
            .find(|o| !objects.contains_key(*o))
        {
            return Err(fmt(
                &objects_path,
                0,
                &format!("{} is listed in `targets` but has no entry", lost.display()),
            ));
        }
        Ok(Snapshot {
            objtree,
            release,
            external,
            targets,
            linked: BTreeMap::new(),
            objects,
            missing: Vec::new(),
            older_manifests,
        })
    }
}

fn parse_objects(text: &str, path: &Path) -> Result<BTreeMap<PathBuf, SnapObject>, SnapshotError> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    let mut line_no = 1;
    while !rest.is_empty() {
        let fmt = |line: usize, what: String| SnapshotError::Format {
            path: path.to_owned(),
            line,
            what,
        };
        let (head, body) = rest
            .split_once('\n')
            .ok_or_else(|| fmt(line_no, "truncated object line".into()))?;
        let mut f = head.splitn(5, ' ');
        let (Some("object"), Some(obj), Some(size), Some(mtime), Some(source)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            return Err(fmt(
                line_no,
                format!("expected `object ...`, found `{head}`"),
            ));
        };
        let stamp = Stamp {
            size: size.parse().map_err(|_| fmt(line_no, "bad size".into()))?,
            mtime_ns: mtime
                .parse()
                .map_err(|_| fmt(line_no, "bad mtime".into()))?,
        };
        let obj = unescape_path(obj).map_err(|e| fmt(line_no, e.to_string()))?;
        let source = match source.split_once(' ') {
            _ if source == "compile" => ManifestSource::Compile,
            Some(("recomputed", why)) => ManifestSource::Recomputed(why.to_owned()),
            _ => return Err(fmt(line_no, format!("bad source `{source}`"))),
        };
        // The manifest runs to its `end N` line.
        let end = find_manifest_end(body)
            .ok_or_else(|| fmt(line_no + 1, "manifest without its `end` line".into()))?;
        let manifest_text = &body[..end];
        line_no += 1 + manifest_text.lines().count();
        rest = &body[end..];
        let origin = path.join(&obj);
        out.insert(
            obj,
            SnapObject {
                stamp,
                source,
                manifest_text: manifest_text.to_owned(),
                origin,
            },
        );
    }
    Ok(out)
}

/// The format version of `manifest_text` when it is a manifest of another
/// one; a damaged first line is left for the manifest parser to report.
fn other_manifest_version(manifest_text: &str) -> Option<&str> {
    format_version(manifest_text.lines().next()?)
        .filter(|v| v.parse::<u32>().ok() != Some(MANIFEST_VERSION))
}

/// The byte offset just past the first `end N` line of `text`.
fn find_manifest_end(text: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        offset += line.len();
        if line.starts_with("end ") {
            return Some(offset);
        }
    }
    None
}

fn write_file(path: &Path, text: &str) -> Result<(), SnapshotError> {
    std::fs::write(path, text).map_err(io(path))
}

/// The release a built tree is of (`make kernelrelease`).
pub fn kernel_release(objtree: &Path) -> Option<String> {
    std::fs::read_to_string(objtree.join("include/config/kernel.release"))
        .ok()
        .map(|s| s.trim().to_owned())
}

fn render_symbols(symbols: &[LinkedSymbol]) -> String {
    let mut out = String::new();
    for s in symbols {
        let name = escape_path_line(Path::new(&s.name));
        if s.is_file() {
            let _ = writeln!(out, "{} {name}", LinkedSymbol::FILE);
            continue;
        }
        let _ = writeln!(
            out,
            "{} {} {:016x} {} {name}",
            s.kind,
            if s.local { "local" } else { "global" },
            s.address,
            s.size,
        );
    }
    out
}

/// The symbol table of `target` as the snapshot at `snapshot` keeps it, or
/// `None` when it has none (the target was not linked when it was taken).
pub fn snapshot_symbols(
    snapshot: &Path,
    target: &str,
) -> Result<Option<SnapshotSymbols>, SnapshotError> {
    let path = snapshot.join("symbols").join(format!("{target}.syms"));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let fmt = |line: usize, what: &str| SnapshotError::Format {
        path: path.clone(),
        line: line + 1,
        what: what.to_owned(),
    };
    let name = |line: usize, v: &str| {
        unescape_path(v)
            .ok()
            .and_then(|p| p.into_os_string().into_string().ok())
            .ok_or_else(|| fmt(line, "bad symbol name"))
    };
    let mut symbols = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if let Some(file) = l.strip_prefix("f ") {
            symbols.push(LinkedSymbol {
                kind: LinkedSymbol::FILE,
                local: true,
                address: 0,
                size: 0,
                name: name(i, file)?,
            });
            continue;
        }
        let mut f = l.splitn(5, ' ');
        let (Some(kind), Some(bind), Some(address), Some(size), Some(n)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            return Err(fmt(i, "expected `<type> <bind> <addr> <size> <name>`"));
        };
        let kind = match kind {
            "t" | "d" | "l" => kind.chars().next().expect("one letter"),
            _ => return Err(fmt(i, "bad symbol type")),
        };
        symbols.push(LinkedSymbol {
            kind,
            local: match bind {
                "local" => true,
                "global" => false,
                _ => return Err(fmt(i, "bad binding")),
            },
            address: u64::from_str_radix(address, 16).map_err(|_| fmt(i, "bad address"))?,
            size: size.parse().map_err(|_| fmt(i, "bad size"))?,
            name: name(i, n)?,
        });
    }
    Ok(Some(SnapshotSymbols { symbols }))
}

/// A target's symbol table as a snapshot keeps it.
pub struct SnapshotSymbols {
    pub symbols: Vec<LinkedSymbol>,
}

impl SnapshotSymbols {
    /// Whether it says which source file each local symbol comes from: a
    /// snapshot taken before klp-link kept the `f` lines does not, and
    /// every linked kernel image has file symbols.
    pub fn has_files(&self) -> bool {
        self.symbols.iter().any(LinkedSymbol::is_file)
    }
}

/// The snapshot's copy of the original build's Module.symvers, if it has
/// one.
pub fn snapshot_symvers(snapshot: &Path) -> Option<PathBuf> {
    Some(snapshot.join("Module.symvers")).filter(|p| p.is_file())
}
