//! One klp-cc invocation: resolve the real compiler, read the command line,
//! run the compile (with the section flags when it makes objects) and write
//! a manifest beside each object it made.
//!
//! klp-cc must never fail a compile that the compiler passed: when an
//! object's checksums cannot be computed, its manifest records why.

use std::cell::Cell;
use std::ffi::OsString;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Once;

use crate::args::{classify, Classified, CompilePlan};
use crate::checksum::checksum_object;
use crate::compiler::{self, FindError, Resolved, SpawnError};
use crate::config::Config;
use crate::manifest::{self, Content, Manifest};
use crate::response_file;

/// The flags that give every function and data object its own section.
pub const SECTION_FLAGS: [&str; 2] = ["-ffunction-sections", "-fdata-sections"];

#[derive(Debug)]
pub enum ShimError {
    Find(FindError),
    Spawn(SpawnError),
    CurrentDir(std::io::Error),
}

impl fmt::Display for ShimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShimError::Find(e) => e.fmt(f),
            ShimError::Spawn(e) => e.fmt(f),
            ShimError::CurrentDir(e) => write!(f, "cannot read the current directory: {e}"),
        }
    }
}

impl std::error::Error for ShimError {}

/// Runs one compile as klp-cc invoked with `argv` (program name first) and
/// returns the compiler's status.
pub fn run(argv: &[OsString], config: &Config, self_exe: &Path) -> Result<ExitStatus, ShimError> {
    let (argv0, rest) = argv.split_first().expect("argv has a program name");
    let resolved = compiler::resolve(argv0, rest, config, self_exe).map_err(ShimError::Find)?;

    let decision = if config.active_chain.is_some() {
        Classified::PassThrough("an outer klp-cc handles this compile")
    } else {
        let cwd = std::env::current_dir().map_err(ShimError::CurrentDir)?;
        match response_file::expand(&resolved.args, &cwd) {
            Some(args) => classify(&args),
            None => Classified::PassThrough("an @file argument could not be read"),
        }
    };
    log(config, &resolved, &decision);

    let plan = match decision {
        Classified::PassThrough(_) => {
            return compiler::run(&resolved, &[]).map_err(ShimError::Spawn);
        }
        Classified::Compile(plan) => plan,
    };
    // A manifest must never outlive the object it describes: remove the old
    // one first, so a failed or interrupted compile leaves none.
    for object in &plan.objects {
        let _ = std::fs::remove_file(manifest::path_for(object));
    }
    let extra: &[&str] = if config.sections { &SECTION_FLAGS } else { &[] };
    let status = compiler::run(&resolved, extra).map_err(ShimError::Spawn)?;
    if status.success() {
        for object in &plan.objects {
            write_manifest(object, &plan, config, &resolved);
        }
    }
    Ok(status)
}

fn write_manifest(object: &Path, plan: &CompilePlan, config: &Config, resolved: &Resolved) {
    let mut m = compute(object);
    m.driver = Some(resolved.compiler().display().to_string());
    m.flags = Some(plan.flags_hash);
    m.sections = Some(config.sections);
    let path = manifest::path_for(object);
    if let Err(e) = m.write_atomic(&path) {
        // The compile succeeded and stays a success; klp-link will find the
        // manifest missing and say so.
        eprintln!("klp-cc: warning: cannot write {}: {e}", path.display());
    }
}

/// The manifest of the object at `object`, with the fields only a compile
/// knows (driver, flags, sections) left unset.
pub fn compute(object: &Path) -> Manifest {
    let mut m = Manifest {
        object: object.to_owned(),
        compiler: None,
        driver: None,
        flags: None,
        sections: None,
        arch: None,
        fingerprint: None,
        content: Content::Unavailable(String::new()),
    };
    // Only a regular file is read: a fifo or a device named by mistake
    // would block klp-cc or klp-link, or feed them endless bytes.
    let bytes = match std::fs::metadata(object) {
        Ok(meta) if !meta.is_file() => Err(std::io::Error::other(
            "not a regular file (a folder, fifo or device)",
        )),
        _ => std::fs::read(object),
    };
    match bytes {
        Err(e) => m.content = Content::Unavailable(format!("cannot read the object: {e}")),
        Ok(bytes) => match checksum_guarded(&bytes) {
            Ok(sums) => {
                m.compiler = sums.compiler;
                m.arch = Some(sums.arch.to_owned());
                m.fingerprint = Some(sums.fingerprint);
                m.content = Content::Checksums(sums.symbols);
            }
            Err(e) => m.content = Content::Unavailable(e.to_string()),
        },
    }
    m
}

/// Checksums that cannot take the compile down: malformed input is meant
/// to give an error, but should a bug still panic, the manifest records it
/// and the compile keeps its status (and its stderr stays the compiler's).
fn checksum_guarded(
    bytes: &[u8],
) -> Result<crate::checksum::ObjectChecksums, crate::checksum::ChecksumError> {
    guarded(|| checksum_object(bytes)).unwrap_or_else(|what| {
        Err(crate::checksum::ChecksumError::Malformed(format!(
            "klp-cc internal error while checksumming ({what}); please report it"
        )))
    })
}

thread_local! {
    /// Whether this thread is inside [`guarded`], whose panics are not reported.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `work`, turning a panic into `Err` with its message, without the
/// panic hook reporting it. The hook is process-wide and klp-link calls
/// this from a thread pool, so it is wrapped once, for good, and only the
/// panicking thread's own flag decides; swapping hooks around each call
/// would let two threads leave the silent one installed.
fn guarded<T>(work: impl FnOnce() -> T + std::panic::UnwindSafe) -> Result<T, String> {
    static WRAP_HOOK: Once = Once::new();
    WRAP_HOOK.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(Cell::get) {
                report(info);
            }
        }));
    });
    let outer = GUARDED.with(|g| g.replace(true));
    let result = std::panic::catch_unwind(work);
    GUARDED.with(|g| g.set(outer));
    result.map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default()
    })
}

fn log(config: &Config, resolved: &Resolved, decision: &Classified) {
    let Some(path) = &config.log else { return };
    let what = match decision {
        Classified::Compile(p) => format!(
            "compile -> {}",
            p.objects
                .iter()
                .map(|o| o.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Classified::PassThrough(reason) => format!("pass-through: {reason}"),
    };
    let line = format!(
        "{} [{}] {}\n",
        resolved.compiler().display(),
        std::process::id(),
        what
    );
    // O_APPEND writes of one short line do not interleave between processes.
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// `klp-cc --manifest OBJECT...`: computes and writes the manifests of
/// objects built without klp-cc. Returns the paths written.
pub fn manifests_for_objects(objects: &[PathBuf]) -> Result<Vec<PathBuf>, ManifestCommandError> {
    let mut written = Vec::new();
    for object in objects {
        let m = compute(object);
        if let Content::Unavailable(why) = &m.content {
            return Err(ManifestCommandError::Unavailable {
                object: object.clone(),
                why: why.clone(),
            });
        }
        let path = manifest::path_for(object);
        m.write_atomic(&path)
            .map_err(|error| ManifestCommandError::Write {
                path: path.clone(),
                error,
            })?;
        written.push(path);
    }
    Ok(written)
}

#[derive(Debug)]
pub enum ManifestCommandError {
    Unavailable {
        object: PathBuf,
        why: String,
    },
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl fmt::Display for ManifestCommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestCommandError::Unavailable { object, why } => {
                write!(f, "{}: no checksums: {why}", object.display())
            }
            ManifestCommandError::Write { path, error } => {
                write!(f, "cannot write {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for ManifestCommandError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The child half of [`guarded_panics_are_silent_and_others_still_reported`]:
    /// it needs a process whose panic hook nothing else has touched.
    #[test]
    #[ignore = "run in a child process by guarded_panics_are_silent_and_others_still_reported"]
    fn concurrent_guarded_panics_child() {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..200 {
                        match guarded(|| {
                            if (t + i) % 2 == 0 {
                                panic!("quiet-marker {t} {i}");
                            }
                            i
                        }) {
                            Ok(v) => assert_eq!(v, i),
                            Err(what) => assert_eq!(what, format!("quiet-marker {t} {i}")),
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a guarded panic escaped");
        }
        let loud = std::thread::spawn(|| panic!("loud-marker")).join();
        assert!(loud.is_err());
    }

    #[test]
    fn guarded_panics_are_silent_and_others_still_reported() {
        let child = "shim::tests::concurrent_guarded_panics_child";
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([child, "--exact", "--ignored", "--nocapture"])
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let context = format!("--- stdout ---\n{stdout}--- stderr ---\n{stderr}");
        assert!(out.status.success(), "{context}");
        assert!(
            stdout.contains("1 passed"),
            "the child test did not run\n{context}"
        );
        assert!(
            !stderr.contains("quiet-marker"),
            "a guarded panic was reported\n{context}"
        );
        assert_eq!(
            stderr.matches("loud-marker").count(),
            1,
            "an unguarded panic was not reported\n{context}"
        );
    }
}
