//! What `klp-link patch` must put back, kept on disk before anything is
//! touched, so that the tree is restored after a failure, a signal, or a
//! run that was killed outright (the next run restores it first).
//!
//! The journal is a folder holding a copy of every file the run will
//! change (its bytes, mode and mtime), the files that did not exist yet,
//! and the state (size, mtime) of every file in the folders the rebuild
//! will write. Restoring puts the copies back byte for byte with their
//! mtimes, removes what the run created, and makes any other file the
//! rebuild rewrote older than anything, so that the next `make` rebuilds
//! it from the restored sources instead of keeping the patched one.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAGIC: &str = "klp-link-journal 1";
const INDEX: &str = "index";

/// A file's state as the rebuild's walk saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileState {
    pub size: u64,
    pub mtime_ns: i128,
}

impl FileState {
    pub fn of(meta: &fs::Metadata) -> FileState {
        FileState {
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// What a restore did beyond putting copies back.
#[derive(Debug, Default)]
pub struct Restored {
    /// Files copied back.
    pub restored: usize,
    /// Files the run created, removed.
    pub removed: Vec<PathBuf>,
    /// Build outputs the rebuild rewrote that had no copy: made stale, so
    /// that the next `make` rebuilds them.
    pub stale: Vec<PathBuf>,
    /// Files that appeared in the rebuild's folders and do not look like
    /// build outputs: left alone.
    pub left: Vec<PathBuf>,
}

#[derive(Debug)]
pub struct JournalError {
    pub path: PathBuf,
    pub error: std::io::Error,
}

impl std::fmt::Display for JournalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.error)
    }
}

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |error| JournalError {
        path: path.to_owned(),
        error,
    }
}

/// An open journal folder.
pub struct Journal {
    dir: PathBuf,
    index: File,
    saved: BTreeSet<PathBuf>,
    next: usize,
}

impl Journal {
    /// Starts a journal at `dir`, which must not exist.
    pub fn create(dir: &Path) -> Result<Journal, JournalError> {
        fs::create_dir(dir).map_err(err(dir))?;
        let path = dir.join(INDEX);
        let mut index = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(err(&path))?;
        writeln!(index, "{MAGIC}").map_err(err(&path))?;
        Ok(Journal {
            dir: dir.to_owned(),
            index,
            saved: BTreeSet::new(),
            next: 0,
        })
    }

    /// Whether `dir` holds a journal a run left behind.
    pub fn exists(dir: &Path) -> bool {
        fs::read_to_string(dir.join(INDEX)).is_ok_and(|s| s.starts_with(MAGIC))
    }

    /// Keeps a copy of `path` (absolute), or notes that it does not exist.
    /// Saving a path twice keeps the first copy: that is the original.
    pub fn save(&mut self, path: &Path) -> Result<(), JournalError> {
        if !self.saved.insert(path.to_owned()) {
            return Ok(());
        }
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return self.record(&format!("absent {}", encode(path)));
            }
            Err(e) => return Err(err(path)(e)),
        };
        if !meta.is_file() {
            return Err(JournalError {
                path: path.to_owned(),
                error: std::io::Error::other("not a regular file, so it cannot be saved"),
            });
        }
        let copy = self.dir.join(self.next.to_string());
        self.next += 1;
        fs::copy(path, &copy).map_err(err(path))?;
        let state = FileState::of(&meta);
        let line = format!(
            "saved {} {:o} {} {} {}",
            copy.file_name().unwrap_or_default().to_string_lossy(),
            meta.permissions().mode() & 0o7777,
            state.mtime_ns,
            meta.atime(),
            encode(path)
        );
        self.record(&line)
    }

    /// Notes the folders the rebuild will write and the state of each file
    /// in them.
    pub fn walked(
        &mut self,
        dirs: &[PathBuf],
        files: &BTreeMap<PathBuf, FileState>,
    ) -> Result<(), JournalError> {
        let mut text = String::new();
        for d in dirs {
            text.push_str(&format!("walked {}\n", encode(d)));
        }
        for (p, s) in files {
            text.push_str(&format!("seen {} {} {}\n", s.size, s.mtime_ns, encode(p)));
        }
        let path = self.dir.join(INDEX);
        self.index.write_all(text.as_bytes()).map_err(err(&path))
    }

    fn record(&mut self, line: &str) -> Result<(), JournalError> {
        let path = self.dir.join(INDEX);
        writeln!(self.index, "{line}").map_err(err(&path))
    }

    /// Restores everything and removes the journal.
    pub fn restore(self) -> Result<Restored, JournalError> {
        let dir = self.dir;
        drop(self.index);
        restore(&dir)
    }
}

/// Restores the tree from the journal at `dir` and removes it.
pub fn restore(dir: &Path) -> Result<Restored, JournalError> {
    let index_path = dir.join(INDEX);
    let index = fs::read(&index_path).map_err(err(&index_path))?;
    let mut out = Restored::default();
    let mut saved = BTreeSet::new();
    let mut walked = Vec::new();
    let mut seen = BTreeMap::new();
    for line in index.split(|&b| b == b'\n').skip(1) {
        let mut words = line.splitn(2, |&b| b == b' ');
        let (Some(kind), Some(rest)) = (words.next(), words.next()) else {
            continue;
        };
        match kind {
            b"saved" => {
                let mut f = rest.splitn(5, |&b| b == b' ');
                let fields: Vec<&[u8]> = f.by_ref().collect();
                let [copy, mode, mtime, atime, path] = fields[..] else {
                    continue;
                };
                let path = decode(path);
                let number = |b: &[u8]| String::from_utf8_lossy(b).parse::<i128>().unwrap_or(0);
                let mode = u32::from_str_radix(&String::from_utf8_lossy(mode), 8).unwrap_or(0o644);
                put_back(
                    &dir.join(OsStr::from_bytes(copy)),
                    &path,
                    mode,
                    number(mtime),
                    number(atime),
                )?;
                out.restored += 1;
                saved.insert(path);
            }
            b"absent" => {
                let path = decode(rest);
                if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
                    fs::remove_file(&path).map_err(err(&path))?;
                    out.removed.push(path.clone());
                }
                saved.insert(path);
            }
            b"walked" => walked.push(decode(rest)),
            b"seen" => {
                let mut f = rest.splitn(3, |&b| b == b' ');
                let fields: Vec<&[u8]> = f.by_ref().collect();
                let [size, mtime, path] = fields[..] else {
                    continue;
                };
                let n = |b: &[u8]| String::from_utf8_lossy(b).parse::<i128>().unwrap_or(-1);
                seen.insert(
                    decode(path),
                    FileState {
                        size: n(size) as u64,
                        mtime_ns: n(mtime),
                    },
                );
            }
            _ => {}
        }
    }
    settle_outputs(&walked, &seen, &saved, &mut out)?;
    // Only now: a journal is removed once nothing in it is needed.
    fs::remove_dir_all(dir).map_err(err(dir))?;
    Ok(out)
}

/// Deals with the files of the rebuild's folders that changed and had no
/// copy: a new build output is removed, a rewritten one made stale.
fn settle_outputs(
    walked: &[PathBuf],
    seen: &BTreeMap<PathBuf, FileState>,
    saved: &BTreeSet<PathBuf>,
    out: &mut Restored,
) -> Result<(), JournalError> {
    let mut now = BTreeMap::new();
    for d in walked {
        walk_into(d, &mut now).map_err(err(d))?;
    }
    for (path, state) in now {
        if saved.contains(&path) {
            continue;
        }
        match seen.get(&path) {
            Some(before) if *before == state => {}
            Some(_) => {
                let f = File::options()
                    .write(true)
                    .open(&path)
                    .map_err(err(&path))?;
                let epoch = FileTimes::new().set_modified(UNIX_EPOCH);
                f.set_times(epoch).map_err(err(&path))?;
                out.stale.push(path);
            }
            None if is_build_output(&path) => {
                fs::remove_file(&path).map_err(err(&path))?;
                out.removed.push(path);
            }
            None => out.left.push(path),
        }
    }
    Ok(())
}

/// Names kbuild and klp-cc give the files they write in an object folder
/// (and, linking a module, in an external module's).
pub fn is_build_output(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().as_bytes();
    name.starts_with(b".tmp_")
        || [
            ".o", ".a", ".mod", ".cmd", ".klp", ".d", ".order", ".ko", ".mod.c", ".symvers",
        ]
        .iter()
        .any(|ext| name.ends_with(ext.as_bytes()))
}

/// Every regular file under `dir` with its state. Hidden klp-link folders
/// and `source` (the link an `O=` tree has to its sources) are not entered.
pub fn walk_into(dir: &Path, into: &mut BTreeMap<PathBuf, FileState>) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        let name = entry.file_name();
        if kind.is_dir() {
            if name == ".git" || name == super::STATE_DIR {
                continue;
            }
            walk_into(&entry.path(), into)?;
        } else if kind.is_file() {
            let meta = entry.metadata()?;
            into.insert(entry.path(), FileState::of(&meta));
        }
    }
    Ok(())
}

/// Puts the copy back at `path` as a new file renamed into place, with the
/// original's mode and times; a file already equal to it is left alone.
fn put_back(
    copy: &Path,
    path: &Path,
    mode: u32,
    mtime_ns: i128,
    atime_s: i128,
) -> Result<(), JournalError> {
    let bytes = fs::read(copy).map_err(err(copy))?;
    let current = fs::symlink_metadata(path).ok();
    if let Some(meta) = &current {
        if meta.is_file()
            && FileState::of(meta).mtime_ns == mtime_ns
            && meta.len() == bytes.len() as u64
            && fs::read(path).is_ok_and(|b| b == bytes)
        {
            return Ok(());
        }
    }
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(err(parent))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".klp-link-restore")
        .tempfile_in(parent)
        .map_err(err(parent))?;
    tmp.write_all(&bytes).map_err(err(path))?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(err(path))?;
    let times = FileTimes::new()
        .set_modified(at(mtime_ns))
        .set_accessed(at(atime_s * 1_000_000_000));
    tmp.as_file().set_times(times).map_err(err(path))?;
    tmp.persist(path).map_err(|e| err(path)(e.error))?;
    Ok(())
}

fn at(ns: i128) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs() as u64)
    }
}

/// A path as one field at the end of an index line: its bytes, with `\`
/// and newlines escaped.
fn encode(path: &Path) -> String {
    let mut s = String::new();
    for &b in path.as_os_str().as_bytes() {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

fn decode(field: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        match (field[i], field.get(i + 1)) {
            (b'\\', Some(b'\\')) => {
                out.push(b'\\');
                i += 2;
            }
            (b'\\', Some(b'n')) => {
                out.push(b'\n');
                i += 2;
            }
            (b'\\', Some(b'x')) if i + 4 <= field.len() => {
                let hex = std::str::from_utf8(&field[i + 2..i + 4]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_survive_the_index() {
        for p in ["/a/b c", "/x\\y", "/new\nline", "/latin\u{e9}"] {
            assert_eq!(decode(encode(Path::new(p)).as_bytes()), PathBuf::from(p));
        }
        let raw = PathBuf::from(OsStr::from_bytes(b"/raw\xff\x01"));
        assert_eq!(decode(encode(&raw).as_bytes()), raw);
    }

    #[test]
    fn a_restore_puts_bytes_and_mtime_back_and_settles_outputs() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("a.c");
        let obj_dir = t.path().join("obj");
        fs::create_dir(&obj_dir).unwrap();
        let obj = obj_dir.join("a.o");
        let list = obj_dir.join("b.o");
        fs::write(&src, "int a;\n").unwrap();
        fs::write(&obj, "orig object").unwrap();
        fs::write(&list, "other object").unwrap();
        let old = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        for p in [&src, &obj, &list] {
            File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_times(FileTimes::new().set_modified(old))
                .unwrap();
        }
        let before = fs::metadata(&src).unwrap();

        let mut j = Journal::create(&t.path().join("journal")).unwrap();
        j.save(&src).unwrap();
        j.save(&t.path().join("new.c")).unwrap();
        j.save(&obj).unwrap();
        let mut seen = BTreeMap::new();
        walk_into(&obj_dir, &mut seen).unwrap();
        j.walked(std::slice::from_ref(&obj_dir), &seen).unwrap();

        fs::write(&src, "int a = 1;\n").unwrap();
        fs::write(t.path().join("new.c"), "new").unwrap();
        fs::write(&obj, "patched object").unwrap();
        fs::write(&list, "rewritten, no copy").unwrap();
        fs::write(obj_dir.join("n.o"), "new output").unwrap();
        fs::write(obj_dir.join("notes.txt"), "not ours").unwrap();

        let r = j.restore().unwrap();
        assert_eq!(fs::read_to_string(&src).unwrap(), "int a;\n");
        let after = fs::metadata(&src).unwrap();
        assert_eq!(FileState::of(&after), FileState::of(&before));
        assert_eq!(fs::read_to_string(&obj).unwrap(), "orig object");
        assert!(!t.path().join("new.c").exists());
        assert!(!obj_dir.join("n.o").exists());
        assert!(obj_dir.join("notes.txt").exists());
        assert_eq!(r.stale, vec![list.clone()]);
        assert_eq!(fs::metadata(&list).unwrap().mtime(), 0);
        assert!(!t.path().join("journal").exists());
    }
}
