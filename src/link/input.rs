//! Files the user names on the command line are read only when they are
//! regular files: a folder gives a confusing error, and a fifo or a device
//! would block klp-link or feed it endless bytes.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum InputError {
    Missing {
        path: PathBuf,
    },
    NotAFile {
        path: PathBuf,
        what: &'static str,
    },
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Missing { path } => {
                write!(f, "{}: no such file; check the path", path.display())
            }
            InputError::NotAFile { path, what } => write!(
                f,
                "{}: is {what}, not a regular file; give the file itself",
                path.display()
            ),
            InputError::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for InputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InputError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Checks that `path` (after symbolic links) is a regular file.
pub fn regular_file(path: &Path) -> Result<(), InputError> {
    let meta = std::fs::metadata(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            InputError::Missing {
                path: path.to_owned(),
            }
        } else {
            InputError::Io {
                path: path.to_owned(),
                error,
            }
        }
    })?;
    let t = meta.file_type();
    if t.is_file() {
        return Ok(());
    }
    let what = if t.is_dir() {
        "a folder"
    } else {
        "a special file (a fifo, socket or device)"
    };
    Err(InputError::NotAFile {
        path: path.to_owned(),
        what,
    })
}

/// The bytes of the regular file at `path`.
pub fn read(path: &Path) -> Result<Vec<u8>, InputError> {
    regular_file(path)?;
    std::fs::read(path).map_err(|error| InputError::Io {
        path: path.to_owned(),
        error,
    })
}
