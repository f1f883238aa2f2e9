//! `klp-link patch`: from source patches to a livepatch module in one
//! command, on a tree built through klp-cc, which is left exactly as it
//! was.
//!
//! The phases: check the tree and restore what an earlier run left;
//! take its snapshot, or reuse the one taken when the tree was last as it
//! is now; apply the patches (through fix-lines, after a dry run); rebuild
//! what depends on them with the tree's own settings; compare and build
//! the module; restore. Everything the run changes in the tree is saved
//! first in a journal under `.klp-link/` ([`journal`]), which the restore
//! puts back after success, failure, Ctrl-C or SIGTERM alike, and which
//! the next run puts back if this one was killed outright.

mod apply;
mod journal;
mod rebuild;
mod settings;
mod signals;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::commands::{self, BuildOptions, CommandError, Outcome};
use super::destination::is_snapshot;
use super::kconfig::KernelConfig;
use super::load::{self, Stamp};
use super::snapshot::{kernel_release, Snapshot};
use super::tree::{Tree, VMLINUX};
use apply::ApplyError;
use journal::{Journal, JournalError, Restored};
use rebuild::RebuildError;
use settings::{MakeSettings, SettingsError};

/// The folder klp-link keeps in the object tree: the snapshot and, while a
/// run has the tree patched, the journal. Hidden, so that the kernel's
/// `.gitignore` keeps it out of `git status`.
pub const STATE_DIR: &str = ".klp-link";

/// What `klp-link patch` was asked to do.
pub struct PatchOptions<'a> {
    pub tree: &'a Path,
    pub patches: &'a [PathBuf],
    pub name: Option<&'a str>,
    pub output: Option<&'a Path>,
    /// The patches are to this external module's folder.
    pub external: Option<&'a Path>,
    pub vmlinux: Option<&'a Path>,
    pub modules: Option<&'a Path>,
    pub jobs: Option<usize>,
    pub replace: bool,
    pub keep_tmp: bool,
    /// Take a new snapshot even though the tree changed since the last.
    pub new_snapshot: bool,
    pub sign_with: Option<(&'a Path, &'a Path)>,
    /// Print each phase as it starts.
    pub progress: bool,
    /// Also compute the comparison as JSON.
    pub json: bool,
}

/// How a run ended with the tree restored.
pub struct Ran {
    pub outcome: Outcome,
    /// `klp-link build`'s report, then the run's own lines.
    pub report: String,
    pub json: Value,
}

#[derive(Debug)]
pub enum PatchError {
    Command(CommandError),
    Settings(SettingsError),
    Apply(ApplyError),
    Rebuild(RebuildError),
    Journal(JournalError),
    State {
        path: PathBuf,
        why: String,
    },
    TreeChanged {
        snapshot: PathBuf,
        changed: Vec<PathBuf>,
    },
    Stale {
        objects: Vec<PathBuf>,
    },
    Missed {
        objects: Vec<(PathBuf, PathBuf)>,
    },
    /// A termination signal arrived; the tree is restored.
    Interrupted(libc::c_int),
}

impl std::fmt::Display for PatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PatchError::Command(e) => e.fmt(f),
            PatchError::Settings(e) => e.fmt(f),
            PatchError::Apply(e) => e.fmt(f),
            PatchError::Rebuild(e) => e.fmt(f),
            PatchError::Journal(e) => write!(f, "the journal: {e}"),
            PatchError::State { path, why } => write!(f, "{}: {why}", path.display()),
            PatchError::TreeChanged { snapshot, changed } => {
                write!(
                    f,
                    "the tree changed since its snapshot {} was taken: {} object(s) differ, e.g. {}. \
                     The snapshot must be of the build the running kernel came from: if that is \
                     the tree as it is now, pass --new-snapshot",
                    snapshot.display(),
                    changed.len(),
                    list(changed)
                )
            }
            PatchError::Stale { objects } => write!(
                f,
                "{} object(s) were compiled from a patched source that an earlier run could not \
                 restore ({}); run make in the tree first, with its own CC, to rebuild them from \
                 the original sources",
                objects.len(),
                list(objects)
            ),
            PatchError::Missed { objects } => {
                write!(
                    f,
                    "the rebuild did not recompile {} object(s) that depend on a patched file, so \
                     a change in them could not be seen:",
                    objects.len()
                )?;
                for (o, file) in objects {
                    write!(f, "\n  {} ({})", o.display(), file.display())?;
                }
                write!(f, "\ncheck that make runs with the tree's own settings")
            }
            PatchError::Interrupted(s) => write!(f, "interrupted by signal {s}"),
        }
    }
}

fn list(paths: &[PathBuf]) -> String {
    let mut s: Vec<String> = paths
        .iter()
        .take(3)
        .map(|p| p.display().to_string())
        .collect();
    if paths.len() > 3 {
        s.push("...".into());
    }
    s.join(", ")
}

impl From<CommandError> for PatchError {
    fn from(e: CommandError) -> Self {
        PatchError::Command(e)
    }
}

/// The phases with their times. Shown as they run when asked: on a
/// terminal a spinner with the phase and its time so far, each finished
/// phase left as a line; elsewhere (a log) one line as each starts.
struct Phases {
    spinner: Option<ProgressBar>,
    progress: bool,
    done: Vec<(&'static str, Duration)>,
    current: Option<(&'static str, Instant)>,
}

impl Phases {
    fn new(progress: bool) -> Phases {
        let spinner = (progress && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} klp-link: {msg} {elapsed}")
                    .expect("a valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Phases {
            spinner,
            progress,
            done: Vec::new(),
            current: None,
        }
    }

    fn start(&mut self, name: &'static str) {
        self.end();
        match &self.spinner {
            Some(bar) => {
                bar.reset_elapsed();
                bar.set_message(name);
            }
            None if self.progress => eprintln!("klp-link: {name}..."),
            None => {}
        }
        self.current = Some((name, Instant::now()));
    }

    fn end(&mut self) {
        if let Some((name, t)) = self.current.take() {
            let took = t.elapsed();
            if let Some(bar) = &self.spinner {
                bar.println(format!("klp-link: {name} {:.2} s", took.as_secs_f64()));
            }
            self.done.push((name, took));
        }
    }

    /// Ends the last phase and takes the spinner off the terminal.
    fn finish(&mut self) {
        self.end();
        if let Some(bar) = self.spinner.take() {
            bar.finish_and_clear();
        }
    }

    fn line(&self) -> String {
        let parts: Vec<String> = self
            .done
            .iter()
            .map(|(n, d)| format!("{n} {:.2} s", d.as_secs_f64()))
            .collect();
        format!("klp-link: phases: {}\n", parts.join(", "))
    }

    fn json(&self) -> Value {
        Value::Array(
            self.done
                .iter()
                .map(|(n, d)| json!({"phase": n, "seconds": d.as_secs_f64()}))
                .collect(),
        )
    }
}

/// Runs `klp-link patch`. On a signal it restores the tree and then dies
/// of the signal.
pub fn run(opts: &PatchOptions) -> Result<Ran, PatchError> {
    signals::catch();
    let result = run_caught(opts);
    // From here a signal ends klp-link at once; one that came before (the
    // tree untouched yet, or restored) ends it now.
    signals::release();
    if let Some(signal) = signals::received() {
        eprintln!("klp-link: interrupted by signal {signal}; the tree is as it was before the run");
        signals::die_of(signal);
    }
    result
}

fn run_caught(opts: &PatchOptions) -> Result<Ran, PatchError> {
    let mut phases = Phases::new(opts.progress);
    let mut notes = Vec::new();

    phases.start("check");
    let objtree = std::fs::canonicalize(opts.tree).map_err(|e| PatchError::State {
        path: opts.tree.to_owned(),
        why: e.to_string(),
    })?;
    let name = module_name(opts)?;
    let output = ctx_output(opts, &name);
    commands::check_build_options(
        opts.tree,
        &BuildOptions {
            vmlinux: opts.vmlinux,
            modules: opts.modules,
            name: &name,
            output: &output,
            replace: opts.replace,
            patches: &[],
            sign_with: opts.sign_with,
        },
    )?;
    if let Some(vmlinux) = opts.vmlinux {
        check_release(vmlinux, &objtree)?;
    }
    let state = state_dir(&objtree)?;
    let journal_dir = state.join("journal");
    recover(&journal_dir, &mut notes)?;
    let tree = commands::open_tree(&objtree, opts.external)?;
    let settings = tree_settings(&objtree, &tree)?;
    interrupted()?;

    phases.start("snapshot");
    let snap_dir = state.join(snapshot_name(&tree));
    let taken = ensure_snapshot(&snap_dir, &tree, opts.new_snapshot)?;
    notes.push(format!("snapshot {taken}: {}", snap_dir.display()));
    interrupted()?;

    let work = tempfile::Builder::new()
        .prefix("klp-link-patch.")
        .tempdir()
        .map_err(|e| PatchError::State {
            path: std::env::temp_dir(),
            why: e.to_string(),
        })?;
    let journal = Journal::create(&journal_dir).map_err(PatchError::Journal)?;
    let mut pending = Pending(Some(journal));
    let ctx = Context {
        opts,
        objtree: &objtree,
        snap_dir: &snap_dir,
        settings: &settings,
        tree: &tree,
        work: work.path(),
        name: &name,
    };
    let result = patched(&ctx, &mut pending, &mut phases);

    phases.start("restore");
    let restored = pending.restore();
    phases.finish();
    let restored = restored.map_err(PatchError::Journal)?;
    let restore_notes = describe_restore(&restored);
    if let Some(signal) = signals::received() {
        eprintln!(
            "klp-link: interrupted by signal {signal}; the tree is restored{}",
            if restore_notes.is_empty() { "" } else { ":" }
        );
        for n in &restore_notes {
            eprintln!("klp-link: {n}");
        }
        signals::die_of(signal);
    }
    notes.extend(restore_notes);
    let kept = if opts.keep_tmp {
        let p = work.keep();
        notes.push(format!("kept the work folder {}", p.display()));
        Some(p)
    } else {
        None
    };
    let (report, outcome, diff) = match result {
        Ok(r) => r,
        Err(e) => {
            for n in &notes {
                eprintln!("klp-link: {n}");
            }
            return Err(e);
        }
    };
    let mut text = report;
    for n in &notes {
        text.push_str(&format!("klp-link: {n}\n"));
    }
    text.push_str(&phases.line());
    let module = (outcome == Outcome::Changes).then(|| ctx_output(opts, &name));
    let doc = json!({
        "tree": objtree,
        "outcome": match outcome {
            Outcome::Changes => "changes",
            Outcome::NoChange => "no-change",
            Outcome::Refused => "refused",
        },
        "module": module,
        "snapshot": taken,
        "phases": phases.json(),
        "notes": notes,
        "work": kept,
        "comparison": diff,
        "report": text,
    });
    Ok(Ran {
        outcome,
        report: text,
        json: doc,
    })
}

impl Drop for Phases {
    /// An error's message is printed after this: not beside a spinner.
    fn drop(&mut self) {
        if let Some(bar) = self.spinner.take() {
            bar.finish_and_clear();
        }
    }
}

/// What the patched phases need.
struct Context<'a> {
    opts: &'a PatchOptions<'a>,
    objtree: &'a Path,
    snap_dir: &'a Path,
    settings: &'a MakeSettings,
    tree: &'a Tree,
    work: &'a Path,
    name: &'a str,
}

/// The journal until it is restored, restored also on a panic.
struct Pending(Option<Journal>);

impl Pending {
    fn journal(&mut self) -> &mut Journal {
        self.0.as_mut().expect("not restored yet")
    }

    fn restore(&mut self) -> Result<Restored, JournalError> {
        self.0.take().expect("restored once").restore()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(j) = self.0.take() {
            let _ = j.restore();
        }
    }
}

/// Apply, rebuild, build: the phases during which the tree is patched.
fn patched(
    ctx: &Context,
    pending: &mut Pending,
    phases: &mut Phases,
) -> Result<(String, Outcome, Value), PatchError> {
    phases.start("apply");
    let applied = apply_all(ctx, pending.journal())?;
    interrupted()?;

    phases.start("rebuild");
    let plan = rebuild::plan(ctx.objtree, ctx.tree.external.as_deref(), &applied)
        .map_err(PatchError::Rebuild)?;
    let before = rebuild::save_outputs(ctx.objtree, &plan, pending.journal())
        .map_err(PatchError::Rebuild)?;
    interrupted()?;
    let jobs = ctx.opts.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    rebuild::make(
        ctx.objtree,
        ctx.settings,
        jobs,
        &plan,
        &ctx.work.join("rebuild.log"),
    )
    .map_err(PatchError::Rebuild)?;
    interrupted()?;
    check_rebuilt(ctx, &plan, &before)?;

    phases.start("build");
    let diff = if ctx.opts.json {
        let (text, _) = commands::diff(ctx.snap_dir, Some(ctx.objtree), &applied, true, None)?;
        serde_json::from_str(&text).unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    let output = ctx_output(ctx.opts, ctx.name);
    let (report, outcome) = commands::build(
        ctx.snap_dir,
        Some(ctx.objtree),
        &BuildOptions {
            vmlinux: ctx.opts.vmlinux,
            modules: ctx.opts.modules,
            name: ctx.name,
            output: &output,
            replace: ctx.opts.replace,
            patches: &applied,
            sign_with: ctx.opts.sign_with,
        },
    )?;
    interrupted()?;
    Ok((report, outcome, diff))
}

/// Each patch through fix-lines against the tree as the patches before it
/// left it, a dry run, then for real; every file it touches saved first.
/// Returns the patches as applied.
fn apply_all(ctx: &Context, journal: &mut Journal) -> Result<Vec<PathBuf>, PatchError> {
    install_helpers(&ctx.settings.srctree, journal)?;
    let root = ctx.tree.external.as_ref().unwrap_or(&ctx.settings.srctree);
    let mut applied = Vec::new();
    for (i, patch) in ctx.opts.patches.iter().enumerate() {
        let fixed = commands::fix_lines(patch, Some(root), None, false)?;
        let files = apply::touched(patch, &fixed).map_err(PatchError::Apply)?;
        apply::apply(root, patch, &fixed, true).map_err(PatchError::Apply)?;
        for f in &files {
            journal.save(&root.join(f)).map_err(PatchError::Journal)?;
        }
        let out = ctx.work.join(format!("{i}-applied.patch"));
        std::fs::write(&out, &fixed).map_err(|e| PatchError::State {
            path: out.clone(),
            why: e.to_string(),
        })?;
        apply::apply(root, patch, &fixed, false).map_err(PatchError::Apply)?;
        applied.push(out);
    }
    Ok(applied)
}

/// The patch-author helper headers (kbuild-snippets/include/), by their
/// paths under the source tree's `include/`.
const HELPERS: [(&str, &str); 3] = [
    (
        "linux/livepatch_helpers.h",
        include_str!("../../../kbuild-snippets/include/linux/livepatch_helpers.h"),
    ),
    (
        "kpatch-macros.h",
        include_str!("../../../kbuild-snippets/include/kpatch-macros.h"),
    ),
    (
        "kpatch-syscall.h",
        include_str!("../../../kbuild-snippets/include/kpatch-syscall.h"),
    ),
];

/// Puts the helper headers into the source tree's `include/` for the
/// patched build, each only where the tree has no file of that name (Linux
/// 6.19+ has its own livepatch_helpers.h) and has its folder; the restore
/// removes them.
fn install_helpers(srctree: &Path, journal: &mut Journal) -> Result<(), PatchError> {
    for (rel, text) in HELPERS {
        let path = srctree.join("include").join(rel);
        // Only into a kernel source tree's own folders, never a new one.
        let in_tree = path.parent().is_some_and(Path::is_dir);
        if !in_tree || std::fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        journal.save(&path).map_err(PatchError::Journal)?;
        std::fs::write(&path, text).map_err(|e| PatchError::State {
            path: path.clone(),
            why: e.to_string(),
        })?;
    }
    Ok(())
}

/// Refuses when make left an object that depends on a patched file as it
/// was: a change in it would go unseen.
fn check_rebuilt(
    ctx: &Context,
    plan: &rebuild::Plan,
    before: &std::collections::BTreeMap<PathBuf, journal::FileState>,
) -> Result<(), PatchError> {
    let linked: std::collections::BTreeSet<&Path> = ctx.tree.objects().map(|(_, o)| o).collect();
    let missed: Vec<(PathBuf, PathBuf)> = plan
        .dependents
        .iter()
        .filter(|(o, _)| linked.contains(o.as_path()))
        .filter(|(o, _)| {
            let path = ctx.objtree.join(o);
            let now = std::fs::metadata(&path).map(|m| journal::FileState::of(&m));
            matches!((before.get(&path), now), (Some(b), Ok(n)) if *b == n)
        })
        .cloned()
        .collect();
    if missed.is_empty() {
        Ok(())
    } else {
        Err(PatchError::Missed { objects: missed })
    }
}

/// Refuses, before anything is patched or rebuilt, a `--vmlinux` of
/// another release than the tree's: `build` would refuse it after the
/// rebuild.
fn check_release(vmlinux: &Path, objtree: &Path) -> Result<(), PatchError> {
    let running = super::running::release_of(vmlinux).map_err(CommandError::SymbolTable)?;
    match (running, kernel_release(objtree)) {
        (Some(running), Some(tree)) if running != tree => Err(CommandError::ReleaseDiffers {
            vmlinux: vmlinux.to_owned(),
            running,
            snapshot: tree,
        }
        .into()),
        _ => Ok(()),
    }
}

fn ctx_output(opts: &PatchOptions, name: &str) -> PathBuf {
    opts.output
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from(format!("{name}.ko")))
}

fn interrupted() -> Result<(), PatchError> {
    match signals::received() {
        Some(s) => Err(PatchError::Interrupted(s)),
        None => Ok(()),
    }
}

/// `--name`, or `livepatch_` and the first patch's file name.
fn module_name(opts: &PatchOptions) -> Result<String, PatchError> {
    if let Some(n) = opts.name {
        return Ok(n.to_owned());
    }
    let stem = opts.patches[0]
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy();
    let mut name: String = format!("livepatch_{stem}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    name.truncate(55);
    Ok(name)
}

/// `TREE/.klp-link`, created when missing; a path there that is not
/// klp-link's folder is refused.
fn state_dir(objtree: &Path) -> Result<PathBuf, PatchError> {
    let dir = objtree.join(STATE_DIR);
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(dir),
        Ok(_) => Err(PatchError::State {
            path: dir,
            why: "is not a folder klp-link made (a file or link is in its place); move it away"
                .into(),
        }),
        Err(_) => {
            std::fs::create_dir(&dir).map_err(|e| PatchError::State {
                path: dir.clone(),
                why: e.to_string(),
            })?;
            Ok(dir)
        }
    }
}

/// Restores what a run that was killed left in the tree.
fn recover(journal_dir: &Path, notes: &mut Vec<String>) -> Result<(), PatchError> {
    if !journal_dir.exists() {
        return Ok(());
    }
    if !Journal::exists(journal_dir) {
        return Err(PatchError::State {
            path: journal_dir.to_owned(),
            why: "is left from a run that was killed before its journal was written; nothing in \
                  the tree was changed by it yet: remove the folder"
                .into(),
        });
    }
    let r = journal::restore(journal_dir).map_err(PatchError::Journal)?;
    notes.push(format!(
        "an earlier run did not finish; restored the tree from its journal ({} file(s))",
        r.restored
    ));
    notes.extend(describe_restore(&r));
    Ok(())
}

fn describe_restore(r: &Restored) -> Vec<String> {
    let mut notes = Vec::new();
    if !r.stale.is_empty() {
        notes.push(format!(
            "{} build output(s) the rebuild rewrote had no saved copy and are now older than \
             their sources, so the next make rebuilds them from the original: {}",
            r.stale.len(),
            list(&r.stale)
        ));
    }
    if !r.left.is_empty() {
        notes.push(format!(
            "files that appeared in the rebuilt folders during the run were left alone: {}",
            list(&r.left)
        ));
    }
    notes
}

/// The snapshot's folder under `.klp-link/`: one per external module
/// folder, so that patching one never replaces the kernel's snapshot.
fn snapshot_name(tree: &Tree) -> String {
    match &tree.external {
        None => "snapshot".to_owned(),
        Some(dir) => format!(
            "snapshot-external-{:016x}",
            xxhash_rust::xxh3::xxh3_64(dir.as_os_str().as_encoded_bytes())
        ),
    }
}

/// The snapshot at `dir`: reused when every object is as it was then,
/// taken when there is none (or it is of another tree, such as the one
/// this tree was copied from), refused when the tree changed since,
/// unless `renew`.
fn ensure_snapshot(dir: &Path, tree: &Tree, renew: bool) -> Result<&'static str, PatchError> {
    let old = is_snapshot(dir)
        .map_err(CommandError::Destination)?
        .then(|| Snapshot::read(dir))
        .transpose()
        .map_err(CommandError::Snapshot)?
        .filter(|s| s.objtree == tree.objtree && s.external == tree.external);
    let stale: Vec<PathBuf> = tree
        .objects()
        .map(|(_, o)| o)
        .filter(|o| {
            std::fs::metadata(tree.objtree.join(o))
                .and_then(|m| m.modified())
                .is_ok_and(|t| t == std::time::UNIX_EPOCH)
        })
        .map(Path::to_owned)
        .collect();
    if !stale.is_empty() {
        return Err(PatchError::Stale { objects: stale });
    }
    let how = match old {
        Some(snap) => {
            let changed = changed_since(&snap, tree);
            if changed.is_empty() && snap.older_manifests.is_none() {
                return Ok("reused");
            }
            // Retaking one of older manifests is safe only while the
            // tree is still the one it describes.
            if !changed.is_empty() && !renew {
                snap.comparable(dir).map_err(CommandError::Snapshot)?;
                return Err(PatchError::TreeChanged {
                    snapshot: dir.to_owned(),
                    changed,
                });
            }
            "taken anew"
        }
        None => "taken",
    };
    let force = dir.exists();
    commands::snapshot(
        &tree.objtree,
        tree.external.as_deref(),
        dir,
        force,
        false,
        false,
    )?;
    Ok(how)
}

/// The objects of the tree that are not as the snapshot has them (or that
/// it does not have, or has and the tree no longer lists). An object
/// with a new mtime but the snapshot's manifest is as it was.
fn changed_since(snap: &Snapshot, tree: &Tree) -> Vec<PathBuf> {
    let mut changed: Vec<PathBuf> = tree
        .objects()
        .map(|(_, o)| o)
        .filter(|o| match snap.objects.get(*o) {
            Some(s) => {
                Stamp::of(&tree.objtree.join(o)).ok() != Some(s.stamp)
                    && !same_manifest(tree, o, &s.manifest_text)
            }
            None => true,
        })
        .map(Path::to_owned)
        .collect();
    if snap.targets != tree.targets {
        let listed: std::collections::HashSet<&Path> = tree.objects().map(|(_, o)| o).collect();
        changed.extend(
            snap.objects
                .keys()
                .filter(|o| !listed.contains(o.as_path()))
                .cloned(),
        );
    }
    changed.sort();
    changed.dedup();
    changed
}

/// Whether `object`, rewritten since the snapshot, still has the
/// snapshot's manifest: recompiled from the same source (as after a make
/// that rebuilt what a restore made stale), it is the same object.
fn same_manifest(tree: &Tree, object: &Path, text: &str) -> bool {
    load::load(&tree.objtree, object).is_ok_and(|rec| rec.manifest.to_text() == text)
}

/// The tree's make settings, from the first vmlinux object kbuild has a
/// compile command for (and its manifest, for the section mode).
fn tree_settings(objtree: &Path, tree: &Tree) -> Result<MakeSettings, PatchError> {
    let config = std::fs::read(objtree.join(".config")).map_err(|e| PatchError::State {
        path: objtree.join(".config"),
        why: e.to_string(),
    })?;
    let config = KernelConfig::new(config);
    let mut first_error = None;
    for obj in tree.targets.get(VMLINUX).into_iter().flatten().take(20) {
        let manifest = crate::manifest::path_for(&objtree.join(obj));
        let text = std::fs::read_to_string(manifest).unwrap_or_default();
        match MakeSettings::read(objtree, obj, &text, &config) {
            Ok(s) => return Ok(s),
            Err(e @ SettingsError::NotKlpCc { .. }) => return Err(PatchError::Settings(e)),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(PatchError::Settings(first_error.unwrap_or(
        SettingsError::NoCompileCommand {
            object: PathBuf::from(VMLINUX),
        },
    )))
}
