//! The klp-link commands, each from parsed arguments to an outcome the
//! binary turns into an exit status.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::compare::{check_carried_data, compare_manifests, compare_tree, Comparison, LineRule};
use super::destination::{
    check_module_output, check_patch_output, DestinationError, SnapshotDestination,
};
use super::explain::{self, ExplainError};
use super::export_crcs::{self, CrcChange};
use super::extract::{extract, ExtractError, Extracted, RunningKernel, Source};
use super::fix_lines::PatchError;
use super::input::{self, InputError};
use super::klp_rewrite::KLP_SYM_PREFIX;
use super::line_map::LineMap;
use super::load::LoadError;
use super::module::{self, Built, ModuleError, ModuleSpec};
use super::once_flags::OnceChoice;
use super::report;
use super::running::{find_module, Vmlinux};
use super::signing::Signing;
use super::snapshot::{
    original_object, snapshot_symbols, snapshot_symvers, Snapshot, SnapshotError,
};
use super::sympos::{Positions, SymbolTableError};
use super::symvers::{Exports, SymversError};
use super::tree::{Tree, TreeError, VMLINUX};
use crate::checksum::manifest_of;
use crate::manifest::Content;

/// How a comparison ended, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Changes found, and a live patch can carry them.
    Changes,
    /// Nothing changed that a live patch would carry.
    NoChange,
    /// klp-link refuses: the report says why.
    Refused,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Changes => 0,
            Outcome::NoChange => 3,
            Outcome::Refused => 1,
        }
    }

    fn of(cmp: &Comparison) -> Outcome {
        if !cmp.problems.is_empty() {
            Outcome::Refused
        } else if cmp.has_changes() {
            Outcome::Changes
        } else {
            Outcome::NoChange
        }
    }
}

/// An error that ends a command before it has a report: one of a layer's
/// own errors, or a command's own refusal.
#[derive(Debug)]
pub enum CommandError {
    Tree(TreeError),
    Snapshot(SnapshotError),
    Destination(DestinationError),
    Input(InputError),
    Explain(ExplainError),
    Extract(ExtractError),
    Module(ModuleError),
    SymbolTable(SymbolTableError),
    Symvers(SymversError),
    /// Objects kbuild lists that could not be read for the snapshot.
    Unreadable {
        count: usize,
        first: LoadError,
    },
    /// Objects without checksums, with why, and nothing was written.
    WithoutChecksums(Vec<(PathBuf, String)>),
    OtherTree {
        snapshot: PathBuf,
        taken_of: PathBuf,
        tree: PathBuf,
    },
    NotChanged {
        name: String,
    },
    NoOriginal {
        object: PathBuf,
    },
    Unavailable {
        path: PathBuf,
        why: String,
    },
    Patch {
        path: PathBuf,
        error: PatchError,
    },
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The patch could not be written to standard output.
    Stdout(std::io::Error),
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    ModuleName(String),
    NoModule {
        target: String,
        dir: PathBuf,
    },
    NoLinkedModule {
        target: String,
    },
    NoVmlinuxSymbols {
        snapshot: PathBuf,
        old: bool,
    },
    ReleaseDiffers {
        vmlinux: PathBuf,
        running: String,
        snapshot: String,
    },
    /// The patch changes the type of exported symbols the livepatch uses.
    ExportTypeChanged(Vec<CrcChange>),
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::Tree(e) => e.fmt(f),
            CommandError::Snapshot(e) => e.fmt(f),
            CommandError::Destination(e) => e.fmt(f),
            CommandError::Input(e) => e.fmt(f),
            CommandError::Explain(e) => e.fmt(f),
            CommandError::Extract(e) => e.fmt(f),
            CommandError::Module(e) => e.fmt(f),
            CommandError::SymbolTable(e) => e.fmt(f),
            CommandError::Symvers(e) => e.fmt(f),
            CommandError::Unreadable { count, first } => write!(
                f,
                "{count} object(s) that kbuild lists cannot be read, e.g. {first}; finish the \
                 build first"
            ),
            CommandError::WithoutChecksums(objects) => {
                write!(
                    f,
                    "{} object(s) have no checksums, so a change in them could not be seen; \
                     nothing was written:",
                    objects.len()
                )?;
                for (p, why) in objects {
                    write!(f, "\n  {}: {why}", p.display())?;
                }
                write!(
                    f,
                    "\nrebuild them (make CC=\"klp-cc gcc\"), or pass --accept-unavailable to \
                     take the snapshot anyway (a later diff refuses any change to them)"
                )
            }
            CommandError::OtherTree {
                snapshot,
                taken_of,
                tree,
            } => write!(
                f,
                "the snapshot {} was taken of {}, not of {}; compare a tree with its own snapshot",
                snapshot.display(),
                taken_of.display(),
                tree.display()
            ),
            CommandError::NotChanged { name } => {
                write!(f, "`{name}` is not among the changed functions")
            }
            CommandError::NoOriginal { object } => write!(
                f,
                "the snapshot has no copy of {}: take it with `klp-link snapshot \
                 --with-objects` to explain changes in a tree, or compare two objects with \
                 `klp-link diff-objects --explain`",
                object.display()
            ),
            CommandError::Unavailable { path, why } => write!(f, "{}: {why}", path.display()),
            CommandError::Patch { path, error } => write!(f, "{}: {error}", path.display()),
            CommandError::Write { path, error } | CommandError::Read { path, error } => {
                write!(f, "{}: {error}", path.display())
            }
            CommandError::Stdout(e) => write!(f, "writing the patch: {e}"),
            CommandError::ModuleName(name) => write!(
                f,
                "`{name}` is not a module name: use letters, digits, `_` and `-`"
            ),
            CommandError::NoModule { target, dir } => write!(
                f,
                "no {target}.ko under {}: --modules must hold the running kernel's modules",
                dir.display()
            ),
            CommandError::NoLinkedModule { target } => write!(
                f,
                "no .ko known for module {target}: the snapshot has no symbol table of it; give \
                 --modules DIR with the running kernel's modules"
            ),
            CommandError::NoVmlinuxSymbols { snapshot, old } => write!(
                f,
                "{}: give --vmlinux with the running kernel's vmlinux{}",
                if *old {
                    format!(
                        "the snapshot {} was taken by an older klp-link, whose symbol table of \
                         vmlinux does not say which file each local symbol comes from",
                        snapshot.display()
                    )
                } else {
                    format!(
                        "the snapshot {} has no symbol table of vmlinux (it was not linked when \
                         the snapshot was taken)",
                        snapshot.display()
                    )
                },
                if *old {
                    ", or take the snapshot again"
                } else {
                    ""
                }
            ),
            CommandError::ReleaseDiffers {
                vmlinux,
                running,
                snapshot,
            } => write!(
                f,
                "{} is Linux {running}, but the snapshot is of a build of {snapshot}: give the \
                 vmlinux of the running kernel, built from the same source and .config as the \
                 snapshot's tree (or leave --vmlinux out when that tree is the running kernel)",
                vmlinux.display()
            ),
            CommandError::ExportTypeChanged(changes) => {
                for c in changes {
                    writeln!(
                        f,
                        "the patch changes the type of exported `{}`: its CRC is {:#010x} in \
                         the running kernel and {:#010x} in the rebuilt {}",
                        c.symbol,
                        c.was,
                        c.now,
                        c.object.display()
                    )?;
                }
                f.write_str(
                    "the livepatch uses these symbols: the running kernel keeps their old types \
                     while the new code would use the new ones. A live patch cannot change an \
                     exported interface; keep the types as they are (add a new function or a \
                     shadow variable instead)",
                )
            }
        }
    }
}

impl std::error::Error for CommandError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CommandError::Tree(e) => Some(e),
            CommandError::Snapshot(e) => Some(e),
            CommandError::Destination(e) => Some(e),
            CommandError::Input(e) => Some(e),
            CommandError::Explain(e) => Some(e),
            CommandError::Extract(e) => Some(e),
            CommandError::Module(e) => Some(e),
            CommandError::SymbolTable(e) => Some(e),
            CommandError::Symvers(e) => Some(e),
            CommandError::Unreadable { first, .. } => Some(first),
            CommandError::Patch { error, .. } => Some(error),
            CommandError::Write { error, .. }
            | CommandError::Read { error, .. }
            | CommandError::Stdout(error) => Some(error),
            _ => None,
        }
    }
}

macro_rules! from_layer {
    ($($variant:ident($error:ty)),* $(,)?) => {
        $(impl From<$error> for CommandError {
            fn from(e: $error) -> Self {
                CommandError::$variant(e)
            }
        })*
    };
}

from_layer!(
    Tree(TreeError),
    Snapshot(SnapshotError),
    Destination(DestinationError),
    Input(InputError),
    Explain(ExplainError),
    Extract(ExtractError),
    Module(ModuleError),
    SymbolTable(SymbolTableError),
    Symvers(SymversError),
);

pub fn snapshot(
    tree: &Path,
    external: Option<&Path>,
    dest: &Path,
    force: bool,
    with_objects: bool,
    accept_unavailable: bool,
) -> Result<String, CommandError> {
    let tree = open_tree(tree, external)?;
    // Checked before the capture: a wrong `-o` should not cost a minute.
    let destination = SnapshotDestination::check(dest, &tree.objtree, force)?;
    let mut snap = Snapshot::capture(&tree);
    if !snap.missing.is_empty() {
        return Err(CommandError::Unreadable {
            count: snap.missing.len(),
            first: snap.missing.swap_remove(0),
        });
    }
    let unavailable = snap.without_checksums();
    if !unavailable.is_empty() && !accept_unavailable {
        return Err(CommandError::WithoutChecksums(
            unavailable
                .into_iter()
                .map(|(p, why)| (p.to_owned(), why))
                .collect(),
        ));
    }
    snap.write(&destination, with_objects)?;
    let recomputed: Vec<String> = snap
        .objects
        .iter()
        .filter_map(|(p, o)| match &o.source {
            super::load::ManifestSource::Recomputed(why) => {
                Some(format!("  {}: {why}", p.display()))
            }
            _ => None,
        })
        .collect();
    let mut msg = format!(
        "klp-link: snapshot of {} ({} objects in {} targets) written to {}\n",
        tree.objtree.display(),
        snap.objects.len(),
        snap.targets.len(),
        dest.display()
    );
    for (p, why) in &unavailable {
        msg.push_str(&format!(
            "klp-link: warning: {} has no checksums ({why}); a change to it will be refused\n",
            p.display()
        ));
    }
    if !recomputed.is_empty() {
        msg.push_str(&format!(
            "klp-link: {} manifest(s) were missing or stale and were recomputed from the objects:\n{}\n",
            recomputed.len(),
            recomputed.join("\n")
        ));
    }
    Ok(msg)
}

/// The kernel tree at `dir`, with the external module folder `external`.
pub fn open_tree(dir: &Path, external: Option<&Path>) -> Result<Tree, CommandError> {
    let tree = Tree::open(dir)?;
    Ok(match external {
        Some(e) => tree.with_external(e)?,
        None => tree,
    })
}

/// The snapshot at `snapshot` and the tree it was taken of (or `tree`,
/// which must be that tree).
fn open(snapshot: &Path, tree: Option<&Path>) -> Result<(Snapshot, Tree), CommandError> {
    let snap = Snapshot::read(snapshot)?;
    snap.comparable(snapshot)?;
    let tree = open_tree(tree.unwrap_or(&snap.objtree), snap.external.as_deref())?;
    if tree.objtree != snap.objtree {
        return Err(CommandError::OtherTree {
            snapshot: snapshot.to_owned(),
            taken_of: snap.objtree,
            tree: tree.objtree,
        });
    }
    Ok((snap, tree))
}

/// The line map of the patches, in the order they were applied; `None`
/// when none is given.
pub fn line_map(patches: &[PathBuf]) -> Result<Option<LineMap>, CommandError> {
    if patches.is_empty() {
        return Ok(None);
    }
    let mut map = LineMap::default();
    for path in patches {
        let text = input::read(path)?;
        map.add(&text).map_err(|error| CommandError::Patch {
            path: path.to_owned(),
            error,
        })?;
    }
    Ok(Some(map))
}

/// The rule for line-only differences: the patches' map when given.
fn line_rule<'a>(map: Option<&'a LineMap>, root: Option<&'a Path>) -> LineRule<'a> {
    match map {
        Some(map) => LineRule::Patch { map, root },
        None => LineRule::CallSite,
    }
}

pub fn diff(
    snapshot: &Path,
    tree: Option<&Path>,
    patches: &[PathBuf],
    json: bool,
    explain_fn: Option<&str>,
) -> Result<(String, Outcome), CommandError> {
    let (snap, tree) = open(snapshot, tree)?;
    let map = line_map(patches)?;
    let cmp = compare_tree(&snap, &tree, line_rule(map.as_ref(), Some(&tree.objtree)));
    let mut explanation = None;
    if let Some(name) = explain_fn {
        let entry = cmp
            .targets
            .values()
            .flat_map(|r| &r.changed)
            .find(|f| f.name == name || f.orig_name.as_deref() == Some(name))
            .ok_or_else(|| CommandError::NotChanged {
                name: name.to_owned(),
            })?;
        let orig = original_object(snapshot, &entry.object);
        if !orig.is_file() {
            return Err(CommandError::NoOriginal {
                object: entry.object.clone(),
            });
        }
        explanation = Some(explain::explain_objects(
            &orig,
            &tree.objtree.join(&entry.object),
            name,
        )?);
    }
    Ok((render(&cmp, json, explanation), Outcome::of(&cmp)))
}

pub fn diff_objects(
    orig: &Path,
    patched: &Path,
    patches: &[PathBuf],
    json: bool,
    explain_fn: Option<&str>,
) -> Result<(String, Outcome), CommandError> {
    let map = line_map(patches)?;
    let read = |p: &Path| {
        input::regular_file(p)?;
        let m = manifest_of(p);
        match &m.content {
            Content::Unavailable(why) => Err(CommandError::Unavailable {
                path: p.to_owned(),
                why: why.clone(),
            }),
            Content::Checksums(_) => Ok(m),
        }
    };
    let (a, b) = (read(orig)?, read(patched)?);
    let rule = line_rule(map.as_ref(), None);
    let mut cmp = Comparison {
        objects: 1,
        rebuilt: vec![patched.to_owned()],
        lines_by_patch: map.is_some(),
        ..Comparison::default()
    };
    let mut target = Default::default();
    compare_manifests(
        patched,
        (&a, &b),
        rule,
        &mut target,
        &mut cmp.problems,
        &mut cmp.notes,
    );
    cmp.targets.insert("object".into(), target);
    // The objects are named as given, so their root is the working folder.
    check_carried_data(&mut cmp, Path::new(""));
    cmp.targets.retain(|_, r| !r.is_empty());
    let explanation = explain_fn
        .map(|name| explain::explain_objects(orig, patched, name))
        .transpose()?;
    Ok((render(&cmp, json, explanation), Outcome::of(&cmp)))
}

/// `klp-link fix-lines`: the patch at `patch` with `#line` directives, to
/// `output` (written whole, then renamed) or returned for stdout. Bytes, not
/// text: patches to kernel sources hold Latin-1.
pub fn fix_lines(
    patch: &Path,
    tree: Option<&Path>,
    output: Option<&Path>,
    force: bool,
) -> Result<Vec<u8>, CommandError> {
    if let Some(out) = output {
        check_patch_output(out, patch, force)?;
    }
    let text = input::read(patch)?;
    let read_original = |rel: &[u8]| {
        use std::os::unix::ffi::OsStrExt as _;
        let dir = tree?;
        std::fs::read(dir.join(std::ffi::OsStr::from_bytes(rel))).ok()
    };
    let original: Option<super::fix_lines::Original> = match tree {
        Some(_) => Some(&read_original),
        None => None,
    };
    let fixed =
        super::fix_lines::fix_lines(&text, original).map_err(|error| CommandError::Patch {
            path: patch.to_owned(),
            error,
        })?;
    for w in &fixed.warnings {
        eprintln!("klp-link: warning: {w}");
    }
    let fixed = fixed.text;
    let Some(out) = output else {
        return Ok(fixed);
    };
    crate::atomic_file::write(out, &fixed, ".klp-link-patch").map_err(|error| {
        CommandError::Write {
            path: out.to_owned(),
            error,
        }
    })?;
    Ok(Vec::new())
}

/// The report, with `--explain`'s text after it or, in JSON, as its
/// `explain` field: stdout stays one JSON document.
fn render(cmp: &Comparison, json: bool, explanation: Option<String>) -> String {
    if json {
        let mut value = report::json(cmp);
        if let Some(text) = explanation {
            value["explain"] = text.into();
        }
        let mut s = serde_json::to_string_pretty(&value).expect("JSON of plain data");
        s.push('\n');
        s
    } else {
        let mut s = report::human(cmp);
        s.push_str(explanation.as_deref().unwrap_or(""));
        s
    }
}

/// What `klp-link build` needs besides the snapshot and the tree.
pub struct BuildOptions<'a> {
    /// The running kernel's vmlinux, whose symbol order gives sympos;
    /// without it, the snapshot's own vmlinux does (one-build mode).
    pub vmlinux: Option<&'a Path>,
    /// Where the running kernel's modules are, for their sympos; without
    /// it, the snapshot's symbol tables of the modules.
    pub modules: Option<&'a Path>,
    pub name: &'a str,
    pub output: &'a Path,
    pub replace: bool,
    /// The patches as applied, for their line map.
    pub patches: &'a [PathBuf],
    /// A key and certificate to sign with instead of the tree's.
    pub sign_with: Option<(&'a Path, &'a Path)>,
}

/// Compares like `diff`, then builds the livepatch module from the changed
/// and new functions. Refuses (with the report) whenever `diff` would.
pub fn build(
    snapshot: &Path,
    tree: Option<&Path>,
    opts: &BuildOptions,
) -> Result<(String, Outcome), CommandError> {
    let (snap, tree) = open(snapshot, tree)?;
    check_build_options(snapshot, opts)?;
    let mut times = Times::default();
    let map = line_map(opts.patches)?;
    let rule = line_rule(map.as_ref(), Some(&tree.objtree));
    let cmp = timed(&mut times.compare, || compare_tree(&snap, &tree, rule));
    let mut report = BuildReport::new(&cmp);
    let outcome = Outcome::of(&cmp);
    if outcome != Outcome::Changes {
        return Ok((report.without_module(), outcome));
    }
    let running = timed(&mut times.symbols, || {
        running_kernel(snapshot, &snap, &tree, &cmp, opts, &mut report)
    })?;
    let loaded = load_changed_objects(&tree, &cmp)?;
    let extracted = timed(&mut times.extract, || {
        extract(&sources(&loaded), &running.kernel())
    })?;
    check_export_types(&tree, &cmp, &running.exports, &extracted, &mut report)?;
    let signing = match opts.sign_with {
        Some((key, cert)) => Some(Signing::given(
            &tree.objtree,
            tree.signing.as_ref(),
            key,
            cert,
        )),
        None => tree.signing.clone(),
    };
    let built = module::build(
        &ModuleSpec {
            name: opts.name,
            funcs: &extracted.funcs,
            callbacks: &extracted.callbacks,
            replace: opts.replace,
            patch_object: &extracted.object,
        },
        &tree.objtree,
        signing.as_ref(),
        opts.output,
    )?;
    let ko = std::fs::read(opts.output).unwrap_or_default();
    if let Some(note) = super::module_reload::note(&tree.objtree, &ko) {
        report.note(&note);
    }
    Ok((
        report.with_module(&extracted, &built, opts.output, &times),
        Outcome::Changes,
    ))
}

/// Refuses a patch that changes the type (MODVERSIONS CRC) of an exported
/// symbol the patch object uses; other CRC changes go in the report.
fn check_export_types(
    tree: &Tree,
    cmp: &Comparison,
    exports: &Exports,
    extracted: &Extracted,
    report: &mut BuildReport,
) -> Result<(), CommandError> {
    let changes = export_crcs::changes(&tree.objtree, &cmp.rebuilt, exports);
    if changes.is_empty() {
        return Ok(());
    }
    let used = used_exports(&extracted.object)?;
    let (refused, noted): (Vec<_>, Vec<_>) =
        changes.into_iter().partition(|c| used.contains(&c.symbol));
    if !refused.is_empty() {
        return Err(CommandError::ExportTypeChanged(refused));
    }
    for c in noted {
        report.note(&format!(
            "{}: the type of exported `{}` changed (CRC {:#010x} -> {:#010x}); the livepatch \
             does not use it: check that no changed function relies on its new type",
            c.object.display(),
            c.symbol,
            c.was,
            c.now
        ));
    }
    Ok(())
}

/// The running kernel's exports a patch object refers to: its undefined
/// symbols other than `.klp.sym.*`.
fn used_exports(object: &[u8]) -> Result<BTreeSet<String>, CommandError> {
    use object::{Object as _, ObjectSymbol as _};
    let file = object::File::parse(object)
        .map_err(|e| CommandError::Extract(ExtractError::Write(format!("reading it back: {e}"))))?;
    Ok(file
        .symbols()
        .filter(|s| s.is_undefined())
        .filter_map(|s| s.name().ok())
        .filter(|n| !n.is_empty() && !n.starts_with(KLP_SYM_PREFIX))
        .map(str::to_owned)
        .collect())
}

/// Refuses what `build` could only refuse after the comparison: a bad
/// name, an input that is not a file, an output that is not klp-link's.
pub fn check_build_options(snapshot: &Path, opts: &BuildOptions) -> Result<(), CommandError> {
    if !valid_module_name(opts.name) {
        return Err(CommandError::ModuleName(opts.name.to_owned()));
    }
    let mut inputs = vec![snapshot];
    if let Some(vmlinux) = opts.vmlinux {
        input::regular_file(vmlinux)?;
        inputs.insert(0, vmlinux);
    }
    if let Some((key, cert)) = opts.sign_with {
        if !key.to_string_lossy().starts_with("pkcs11:") {
            input::regular_file(key)?;
        }
        input::regular_file(cert)?;
    }
    check_module_output(opts.output, &inputs)?;
    Ok(())
}

/// Runs `phase`, keeping how long it took in `slot`.
fn timed<T>(slot: &mut Duration, phase: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = phase();
    *slot = started.elapsed();
    out
}

/// How long `build`'s own phases took (kbuild and the klp rewrite are
/// timed by [`module::build`]).
#[derive(Default)]
struct Times {
    compare: Duration,
    symbols: Duration,
    extract: Duration,
}

/// `build`'s report: the comparison's, the notes of the later phases, then
/// what the module replaces and how long each phase took.
struct BuildReport {
    text: String,
}

impl BuildReport {
    fn new(cmp: &Comparison) -> Self {
        BuildReport {
            text: report::human(cmp),
        }
    }

    fn note(&mut self, note: &str) {
        self.text.push_str(&format!("klp-link: note: {note}\n"));
    }

    fn without_module(mut self) -> String {
        self.text.push_str("klp-link: no module built\n");
        self.text
    }

    fn with_module(
        mut self,
        extracted: &Extracted,
        built: &Built,
        output: &Path,
        times: &Times,
    ) -> String {
        self.text.push_str(&replacements(extracted));
        self.text.push_str(&format!(
            "klp-link: wrote {} ({} function(s) replaced, {} klp relocation(s))\n",
            output.display(),
            extracted.funcs.len(),
            built.klp_relocs
        ));
        for w in &built.warnings {
            self.text.push_str(&format!("klp-link: kbuild: {w}\n"));
        }
        if let Some(how) = &built.signed {
            self.text
                .push_str(&format!("klp-link: signed it with {how}\n"));
        }
        self.text.push_str(&format!(
            "klp-link: time: compare {:.3} s, symbol tables {:.3} s, extract {:.3} s, kbuild \
             {:.2} s, klp rewrite {:.3} s\n",
            times.compare.as_secs_f64(),
            times.symbols.as_secs_f64(),
            times.extract.as_secs_f64(),
            built.kbuild.as_secs_f64(),
            built.rewrite.as_secs_f64()
        ));
        self.text
    }
}

/// What the running kernel has that references from patched code need.
struct Running {
    exports: Exports,
    positions: HashMap<String, Positions>,
    objtool_on_modules: bool,
}

impl Running {
    fn kernel(&self) -> RunningKernel<'_> {
        RunningKernel {
            exports: &self.exports,
            positions: &self.positions,
            objtool_on_modules: self.objtool_on_modules,
        }
    }
}

/// The exports and symbol tables of the running kernel, for every target
/// with changes.
fn running_kernel(
    snapshot: &Path,
    snap: &Snapshot,
    tree: &Tree,
    cmp: &Comparison,
    opts: &BuildOptions,
    report: &mut BuildReport,
) -> Result<Running, CommandError> {
    let exports = original_exports(snapshot, tree, report)?;
    let mut positions = HashMap::new();
    if opts.vmlinux.is_some() || cmp.targets.contains_key(VMLINUX) {
        positions.insert(
            VMLINUX.to_owned(),
            vmlinux_positions(snapshot, snap, opts.vmlinux, report)?,
        );
    }
    for target in cmp.targets.keys().filter(|t| *t != VMLINUX) {
        let p = module_positions(snapshot, tree, target, opts.modules, report)?;
        positions.insert(target.clone(), p);
    }
    Ok(Running {
        exports,
        positions,
        objtool_on_modules: tree.objtool_on_modules,
    })
}

/// The original build's exports: the patched tree's may differ.
fn original_exports(
    snapshot: &Path,
    tree: &Tree,
    report: &mut BuildReport,
) -> Result<Exports, CommandError> {
    if let Some(path) = snapshot_symvers(snapshot) {
        return Ok(Exports::read(&path)?);
    }
    report.note(
        "the snapshot has no Module.symvers (the tree had none when it was taken, or an older \
         klp-link took it); exports come from the tree's, which the patch may have changed",
    );
    Ok(Exports::read(&tree.objtree.join("Module.symvers"))?)
}

/// vmlinux's symbols: the running kernel's, which must be the release the
/// snapshot was taken of, or the snapshot's own in one-build mode.
fn vmlinux_positions(
    snapshot: &Path,
    snap: &Snapshot,
    vmlinux: Option<&Path>,
    report: &mut BuildReport,
) -> Result<Positions, CommandError> {
    let Some(path) = vmlinux else {
        let symbols = snapshot_symbols(snapshot, VMLINUX)?;
        return match symbols {
            Some(s) if s.has_files() => {
                report.note(
                    "sympos in vmlinux comes from the snapshot's vmlinux: the tree it was taken \
                     of must be the running kernel (otherwise give --vmlinux)",
                );
                Ok(Positions::of(&s.symbols, true))
            }
            other => Err(CommandError::NoVmlinuxSymbols {
                snapshot: snapshot.to_owned(),
                old: other.is_some(),
            }),
        };
    };
    let running = Vmlinux::read(path)?;
    match (&running.release, &snap.release) {
        (Some(running), Some(original)) if running != original => {
            return Err(CommandError::ReleaseDiffers {
                vmlinux: path.to_owned(),
                running: running.clone(),
                snapshot: original.clone(),
            })
        }
        (None, Some(original)) => report.note(&format!(
            "cannot tell which release {} is (no readable linux_banner); it must be {original}",
            path.display()
        )),
        _ => {}
    }
    Ok(running.positions)
}

/// A module's symbols: from `--modules`, else the snapshot's, else (a
/// snapshot older than its file symbols) the tree's `.ko`.
fn module_positions(
    snapshot: &Path,
    tree: &Tree,
    target: &str,
    modules: Option<&Path>,
    report: &mut BuildReport,
) -> Result<Positions, CommandError> {
    if let Some(dir) = modules {
        let ko = find_module(dir, target).ok_or_else(|| CommandError::NoModule {
            target: target.to_owned(),
            dir: dir.to_owned(),
        })?;
        return Ok(Positions::read(&ko, false)?);
    }
    if let Some(s) = snapshot_symbols(snapshot, target)?.filter(|s| s.has_files()) {
        return Ok(Positions::of(&s.symbols, false));
    }
    let ko = tree
        .linked
        .get(target)
        .ok_or_else(|| CommandError::NoLinkedModule {
            target: target.to_owned(),
        })?;
    report.note(&format!(
        "sympos in {target} comes from {}, which the patch may have changed; give --modules \
         DIR with the running kernel's modules",
        ko.display()
    ));
    Ok(Positions::read(&tree.objtree.join(ko), false)?)
}

/// One patched object with changes, its bytes read.
struct ChangedObject<'c> {
    target: &'c str,
    object: &'c Path,
    data: Vec<u8>,
    changed: Vec<String>,
    new: Vec<String>,
    new_data: BTreeSet<String>,
    once_flags: BTreeMap<String, OnceChoice>,
}

/// Reads every patched object that has changed or new functions.
fn load_changed_objects<'c>(
    tree: &Tree,
    cmp: &'c Comparison,
) -> Result<Vec<ChangedObject<'c>>, CommandError> {
    type ChangedAndNew = (Vec<String>, Vec<String>);
    let mut per_object: BTreeMap<(&str, &Path), ChangedAndNew> = BTreeMap::new();
    for (target, r) in &cmp.targets {
        for f in &r.changed {
            let entry = per_object.entry((target, &f.object)).or_default();
            entry.0.push(f.name.clone());
        }
        for f in &r.new {
            let entry = per_object.entry((target, &f.object)).or_default();
            entry.1.push(f.name.clone());
        }
    }
    per_object
        .into_iter()
        .map(|((target, object), (changed, new))| {
            let path = tree.objtree.join(object);
            let data = std::fs::read(&path).map_err(|error| CommandError::Read { path, error })?;
            let report = &cmp.targets[target];
            let new_data = report.new_data.get(object).cloned().unwrap_or_default();
            let once_flags = report.once_flags.get(object).cloned().unwrap_or_default();
            Ok(ChangedObject {
                target,
                object,
                data,
                changed,
                new,
                new_data,
                once_flags,
            })
        })
        .collect()
}

fn sources<'a>(loaded: &'a [ChangedObject]) -> Vec<Source<'a>> {
    loaded
        .iter()
        .map(|o| Source {
            target: o.target,
            object_name: o.object.display().to_string(),
            data: &o.data,
            changed: o.changed.clone(),
            new: o.new.clone(),
            new_data: o.new_data.clone(),
            once_flags: o.once_flags.clone(),
        })
        .collect()
}

/// What the module replaces, per target, with the functions replaced only
/// to deliver one livepatch cannot hook, and the extraction's notes.
fn replacements(extracted: &Extracted) -> String {
    let mut out = String::from("klp-link: the module replaces:\n");
    for f in &extracted.funcs {
        let pos = if f.sympos > 0 {
            format!(" (sympos {})", f.sympos)
        } else {
            String::new()
        };
        out.push_str(&format!("  {}: {}{pos}", f.target, f.old_name));
        if let Some(d) = &f.delivers {
            out.push_str(&format!(
                "  (unchanged: it delivers `{d}`, which livepatch cannot hook)"
            ));
        }
        out.push('\n');
    }
    for n in &extracted.notes {
        out.push_str(&format!("klp-link: note: {n}\n"));
    }
    out
}

fn valid_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 56
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
