//! Reading one object's manifest from a built tree, and making sure it
//! describes the object beside it.
//!
//! A manifest is trusted only when its fingerprint equals the object's
//! (objtool does not change it; a compile without klp-cc does). A missing,
//! unreadable or stale manifest is recomputed from the object itself, and the
//! record says so, so that the report can tell the patch author.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::checksum::fingerprint_object;
use crate::checksum::manifest_of;
use crate::manifest::{self, Content, Manifest};

/// How the manifest of an object was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestSource {
    /// Written by klp-cc at compile time, and verified against the object.
    Compile,
    /// Computed from the object by klp-link, for the reason given.
    Recomputed(String),
}

/// One object as found in a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRecord {
    /// Relative to the object tree.
    pub path: PathBuf,
    pub stamp: Stamp,
    pub manifest: Manifest,
    pub source: ManifestSource,
}

/// Size and modification time: kbuild rebuilds by time, and so an object
/// whose stamp is unchanged since the snapshot is the same object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i128,
}

impl Stamp {
    pub fn of(path: &Path) -> std::io::Result<Stamp> {
        let meta = std::fs::metadata(path)?;
        let mtime = meta.modified()?;
        let mtime_ns = match mtime.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        };
        Ok(Stamp {
            size: meta.len(),
            mtime_ns,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub object: PathBuf,
    pub why: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object.display(), self.why)
    }
}

impl std::error::Error for LoadError {}

/// Loads the object `rel` of the tree at `objtree` with a verified (or
/// recomputed) manifest.
pub fn load(objtree: &Path, rel: &Path) -> Result<ObjectRecord, LoadError> {
    let object = objtree.join(rel);
    let err = |why: String| LoadError {
        object: rel.to_owned(),
        why,
    };
    let stamp = Stamp::of(&object).map_err(|e| err(format!("cannot read the object: {e}")))?;
    let data = std::fs::read(&object).map_err(|e| err(format!("cannot read the object: {e}")))?;
    let manifest_path = manifest::path_for(&object);
    let reason = match Manifest::read(&manifest_path) {
        Err(_) if !manifest_path.exists() => "no manifest (compiled without klp-cc)".to_owned(),
        Err(e) => format!("unreadable manifest ({e})"),
        Ok(m) => match (&m.content, fingerprint_object(&data)) {
            // Nothing to verify against: the object itself cannot be read,
            // and the manifest says why; keep it.
            (Content::Unavailable(_), Err(_)) => {
                return Ok(ObjectRecord {
                    path: rel.to_owned(),
                    stamp,
                    manifest: m,
                    source: ManifestSource::Compile,
                })
            }
            (_, Ok(fp)) if m.fingerprint == Some(fp) => {
                return Ok(ObjectRecord {
                    path: rel.to_owned(),
                    stamp,
                    manifest: m,
                    source: ManifestSource::Compile,
                })
            }
            _ => "stale manifest (the object changed after klp-cc wrote it)".to_owned(),
        },
    };
    let mut m = manifest_of(&object);
    m.object = rel.to_owned();
    Ok(ObjectRecord {
        path: rel.to_owned(),
        stamp,
        manifest: m,
        source: ManifestSource::Recomputed(reason),
    })
}

/// Runs `f` over `items` on all cores, keeping the order.
pub fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items.len().max(1));
    if workers <= 1 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a worker thread panicked"))
            .collect()
    })
}
