//! The rules for every path klp-link writes or removes, so that a mistyped
//! `-o` can never cost a user their data.
//!
//! klp-link replaces only what it can prove is its own:
//! - a snapshot folder, recognised by its `snapshot` file's first line and by
//!   holding nothing but the entries a snapshot has;
//! - a livepatch module (`-o`), recognised as an ELF file whose `.modinfo`
//!   says `livepatch=Y`;
//! - a `fix-lines` output only with `--force`, and never the input patch.
//!
//! Whatever the kind, it never replaces `.`, the kernel tree, an ancestor of
//! the tree or of the working directory, a symbolic link or a special file.
//! A snapshot is replaced atomically: the new one is complete beside the old
//! one before the two are exchanged.

use std::ffi::OsStr;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection};

/// The first line of a snapshot's `snapshot` file.
pub const SNAPSHOT_MAGIC: &str = "klp-link-snapshot 1";

/// Every entry a snapshot folder may hold.
pub const SNAPSHOT_ENTRIES: &[&str] = &[
    "snapshot",
    "targets",
    "objects",
    "Module.symvers",
    "symbols",
    "objects.d",
];

#[derive(Debug)]
pub enum DestinationError {
    /// The parent folder the output would go into does not exist.
    NoParent { path: PathBuf },
    /// `.`, the tree, or a folder that holds the tree or the working
    /// directory.
    Protected { path: PathBuf, what: &'static str },
    /// Not a regular file or folder (a symbolic link, a device, a socket...).
    Special { path: PathBuf },
    /// A file stands where a folder is to be written, or the other way round.
    WrongKind { path: PathBuf, want: &'static str },
    /// It exists and klp-link cannot prove it is its own.
    NotOurs { path: PathBuf, what: &'static str },
    /// It exists; replacing it needs `--force`.
    Exists { path: PathBuf },
    /// The output is one of the command's own inputs.
    SameAsInput { path: PathBuf },
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl fmt::Display for DestinationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DestinationError::NoParent { path } => write!(
                f,
                "{}: the folder it would go into does not exist; create it first or choose \
                 another output",
                path.display()
            ),
            DestinationError::Protected { path, what } => write!(
                f,
                "{}: refusing to write over {what}; choose a new path for the output",
                path.display()
            ),
            DestinationError::Special { path } => write!(
                f,
                "{}: is a symbolic link or a special file, which klp-link never replaces; \
                 choose another output path",
                path.display()
            ),
            DestinationError::WrongKind { path, want } => write!(
                f,
                "{}: exists and is not {want}; choose another output path",
                path.display()
            ),
            DestinationError::NotOurs { path, what } => write!(
                f,
                "{}: exists and is not {what}, so klp-link will not replace it (not even with \
                 --force); remove it yourself or choose another output path",
                path.display()
            ),
            DestinationError::Exists { path } => write!(
                f,
                "{}: already exists; pass --force to replace it, or choose another path",
                path.display()
            ),
            DestinationError::SameAsInput { path } => write!(
                f,
                "{}: is also an input of this command; write the output somewhere else",
                path.display()
            ),
            DestinationError::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for DestinationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DestinationError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DestinationError + '_ {
    move |error| DestinationError::Io {
        path: path.to_owned(),
        error,
    }
}

/// What stands at `path` (without following a final symbolic link), and the
/// absolute path it names, resolved through its parent.
struct Existing {
    absolute: PathBuf,
    kind: Option<std::fs::FileType>,
}

fn inspect(path: &Path) -> Result<Existing, DestinationError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent_abs = std::fs::canonicalize(parent).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            DestinationError::NoParent {
                path: path.to_owned(),
            }
        } else {
            DestinationError::Io {
                path: parent.to_owned(),
                error: e,
            }
        }
    })?;
    if !parent_abs.is_dir() {
        return Err(DestinationError::NoParent {
            path: path.to_owned(),
        });
    }
    // `x/.` and `x/..` name folders the user did not spell out: resolve them
    // whole instead of by their last component.
    let absolute = match path.file_name() {
        Some(name) => parent_abs.join(name),
        None => std::fs::canonicalize(path).map_err(io_err(path))?,
    };
    let kind = match std::fs::symlink_metadata(&absolute) {
        Ok(m) => Some(m.file_type()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(path)(e)),
    };
    Ok(Existing { absolute, kind })
}

/// Refuses `.`, the tree, and any folder the tree or the working directory
/// lies in.
fn refuse_protected(
    path: &Path,
    absolute: &Path,
    tree: Option<&Path>,
) -> Result<(), DestinationError> {
    let protected = |what| {
        Err(DestinationError::Protected {
            path: path.to_owned(),
            what,
        })
    };
    if let Ok(cwd) = std::env::current_dir().and_then(std::fs::canonicalize) {
        if cwd == absolute {
            return protected("the working directory");
        }
        if cwd.starts_with(absolute) {
            return protected("a folder that holds the working directory");
        }
    }
    if let Some(tree) = tree.and_then(|t| std::fs::canonicalize(t).ok()) {
        if tree == absolute {
            return protected("the kernel tree");
        }
        if tree.starts_with(absolute) {
            return protected("a folder that holds the kernel tree");
        }
    }
    Ok(())
}

/// Where a snapshot goes, checked: replacing an old one is allowed only with
/// `force` and only when it is recognisably a snapshot.
pub struct SnapshotDestination {
    path: PathBuf,
    replaces_old: bool,
}

impl SnapshotDestination {
    pub fn check(
        path: &Path,
        tree: &Path,
        force: bool,
    ) -> Result<SnapshotDestination, DestinationError> {
        let found = inspect(path)?;
        refuse_protected(path, &found.absolute, Some(tree))?;
        let replaces_old = match found.kind {
            None => false,
            Some(k) if k.is_symlink() => {
                return Err(DestinationError::Special {
                    path: path.to_owned(),
                })
            }
            Some(k) if !k.is_dir() => {
                return Err(DestinationError::WrongKind {
                    path: path.to_owned(),
                    want: "a folder (a snapshot is a folder)",
                })
            }
            Some(_) => {
                if !is_snapshot(&found.absolute)? {
                    return Err(DestinationError::NotOurs {
                        path: path.to_owned(),
                        what: "a klp-link snapshot",
                    });
                }
                if !force {
                    return Err(DestinationError::Exists {
                        path: path.to_owned(),
                    });
                }
                true
            }
        };
        Ok(SnapshotDestination {
            path: found.absolute,
            replaces_old,
        })
    }

    /// The folder a new snapshot is built in: beside the destination, so
    /// that moving it into place is a rename.
    pub fn parent(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }

    /// Puts the complete snapshot `built` in place, replacing the old one
    /// (checked again: it must still be a snapshot) in one exchange.
    pub fn install(&self, built: &Path) -> Result<(), DestinationError> {
        if !self.replaces_old {
            return std::fs::rename(built, &self.path).map_err(io_err(&self.path));
        }
        if !is_snapshot(&self.path)? {
            return Err(DestinationError::NotOurs {
                path: self.path.clone(),
                what: "a klp-link snapshot",
            });
        }
        exchange(built, &self.path).map_err(io_err(&self.path))?;
        // `built` now names the old snapshot.
        std::fs::remove_dir_all(built).map_err(io_err(built))
    }
}

/// Swaps two folders in one step (`renameat2(RENAME_EXCHANGE)`), so that
/// readers see either the old snapshot or the new one, never neither.
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: both are NUL-terminated paths that live across the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    // Filesystems without exchange support: move the old one aside first.
    // For a moment nothing is at `b`, but never a partial snapshot.
    if matches!(
        error.raw_os_error(),
        Some(libc::EINVAL) | Some(libc::ENOSYS)
    ) {
        let aside = a.with_extension("old");
        std::fs::rename(b, &aside)?;
        std::fs::rename(a, b)?;
        return std::fs::rename(&aside, a);
    }
    Err(error)
}

/// Whether `dir` is a klp-link snapshot: its `snapshot` file starts with the
/// magic line, and it holds nothing a snapshot does not.
pub fn is_snapshot(dir: &Path) -> Result<bool, DestinationError> {
    let head = dir.join("snapshot");
    let mut first = [0u8; SNAPSHOT_MAGIC.len() + 1];
    match std::fs::File::open(&head).and_then(|mut f| f.read_exact(&mut first)) {
        Ok(()) => {}
        Err(_) => return Ok(false),
    }
    if &first[..SNAPSHOT_MAGIC.len()] != SNAPSHOT_MAGIC.as_bytes()
        || first[first.len() - 1] != b'\n'
    {
        return Ok(false);
    }
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        if !SNAPSHOT_ENTRIES.iter().any(|e| OsStr::new(e) == name) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Checks the `-o` of `klp-link build`: a new path, or an existing
/// livepatch module (an earlier run's output), never one of `inputs`.
pub fn check_module_output(path: &Path, inputs: &[&Path]) -> Result<(), DestinationError> {
    let found = check_file_output(path, inputs)?;
    if found.kind.is_some() && !is_livepatch_module(&found.absolute) {
        return Err(DestinationError::NotOurs {
            path: path.to_owned(),
            what: "a livepatch module",
        });
    }
    Ok(())
}

/// Checks the `-o` of `klp-link fix-lines`: a new path, or with `force` an
/// existing regular file; never the input patch.
pub fn check_patch_output(path: &Path, input: &Path, force: bool) -> Result<(), DestinationError> {
    let found = check_file_output(path, &[input])?;
    if found.kind.is_some() && !force {
        return Err(DestinationError::Exists {
            path: path.to_owned(),
        });
    }
    Ok(())
}

fn check_file_output(path: &Path, inputs: &[&Path]) -> Result<Existing, DestinationError> {
    let found = inspect(path)?;
    refuse_protected(path, &found.absolute, None)?;
    match found.kind {
        None => {}
        Some(k) if k.is_dir() => {
            return Err(DestinationError::WrongKind {
                path: path.to_owned(),
                want: "a file",
            })
        }
        Some(k) if !k.is_file() => {
            return Err(DestinationError::Special {
                path: path.to_owned(),
            })
        }
        Some(_) => {
            for input in inputs {
                if std::fs::canonicalize(input).is_ok_and(|i| i == found.absolute) {
                    return Err(DestinationError::SameAsInput {
                        path: path.to_owned(),
                    });
                }
            }
        }
    }
    Ok(found)
}

/// An ELF file whose `.modinfo` holds `livepatch=Y`: what kbuild makes of a
/// livepatch module, and so what `klp-link build` writes.
fn is_livepatch_module(path: &Path) -> bool {
    let Ok(data) = std::fs::read(path) else {
        return false;
    };
    let Ok(file) = object::File::parse(&*data) else {
        return false;
    };
    file.section_by_name(".modinfo")
        .and_then(|s| s.data().ok())
        .is_some_and(|info| info.split(|&b| b == 0).any(|kv| kv == b"livepatch=Y"))
}
