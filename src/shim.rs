//! One klp-cc invocation: resolve the real compiler, read the command line,
//! run the compile (with the section flags when it makes objects) and write
//! a manifest beside each object it made.
//!
//! klp-cc must never fail a compile that the compiler passed: when an
//! object's checksums cannot be computed, its manifest records why.

use std::ffi::OsString;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use crate::args::{classify, Classified, CompilePlan};
use crate::checksum::manifest_of;
use crate::compiler::{self, FindError, Resolved, SpawnError};
use crate::config::Config;
use crate::manifest::{self, Content};
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
    let mut m = manifest_of(object);
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
        let m = manifest_of(object);
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
