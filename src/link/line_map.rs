//! The exact old→new line map of a source patch: where each line of the
//! original files is after the patch, as `__LINE__` sees it.
//!
//! With the patch at hand, a function whose checksums differ only in proven
//! line sites (`checksum::lines`) is line-only only if every site's new
//! number is where the patch moved its old line, in the site's own file.
//! Anything else, a site on a line the patch changed, a shift the patch does
//! not make, an explicit constant that merely looks like a line, is a
//! change. This is stricter than the call-site rule alone, which is all
//! klp-link has without the patch.
//!
//! The map is read from the hunks as they are applied: context lines and
//! the lines between hunks keep their place, shifted by what the hunks
//! above added and removed; removed lines map nowhere; an added `#line N`
//! (what `klp-link fix-lines` writes) renumbers the lines after it, as the
//! preprocessor does. Give the patch exactly as it was applied (the
//! `fix-lines` output when that is what went through `patch`). Several
//! patches apply in the order given. A directive in a context or removed
//! line, or one that also names a file, leaves the rest of that file
//! unmapped: its lines are then always changes.

use std::collections::HashMap;
use std::path::Path;

use super::fix_lines::{hunk_body, path_of, Hunk, PatchError};
use crate::checksum::{LineSite, SiteFile};

/// A run of original lines `[from, to)` that all moved by `delta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    from: u32,
    to: u32,
    delta: i64,
}

/// One patch's map of one file: the segments of original lines that
/// survive, ascending; a line in none of them was removed or changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Stage {
    segments: Vec<Segment>,
}

impl Stage {
    fn map(&self, line: u32) -> Option<u32> {
        let i = self.segments.partition_point(|s| s.to <= line);
        let s = self.segments.get(i).filter(|s| s.from <= line)?;
        u32::try_from(i64::from(line) + s.delta).ok()
    }
}

/// The line maps of every file the patches touch, by path (`-p1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineMap {
    files: HashMap<String, Vec<Stage>>,
}

impl LineMap {
    /// Reads the patches, in the order they were applied.
    pub fn from_patches<'a>(
        patches: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<LineMap, PatchError> {
        let mut map = LineMap::default();
        for text in patches {
            map.add(text)?;
        }
        Ok(map)
    }

    /// Adds a patch applied after those already read.
    pub fn add(&mut self, text: &[u8]) -> Result<(), PatchError> {
        let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
        let mut file: Option<(String, Walk)> = None;
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i];
            if line.starts_with(b"+++ ") {
                self.finish(file.take());
                let path = path_of(line);
                let rel = path.splitn(2, |&b| b == b'/').nth(1).unwrap_or_default();
                let new_file = i > 0 && lines[i - 1].starts_with(b"--- /dev/null");
                let deleted = path.starts_with(b"/dev/null");
                let name = String::from_utf8_lossy(rel).into_owned();
                if !deleted {
                    file = Some((name, Walk::new(new_file)));
                } else if let Some(old) = lines[i - 1].strip_prefix(b"--- ") {
                    // Every line of a deleted file is gone.
                    let old = path_of_minus(old);
                    self.files.entry(old).or_default().push(Stage::default());
                }
                i += 1;
            } else if line.starts_with(b"@@ ") {
                let hunk = Hunk::parse(line).ok_or_else(|| PatchError {
                    line: i + 1,
                    reason: format!(
                        "not a hunk header: {}",
                        String::from_utf8_lossy(line.trim_ascii_end())
                    ),
                })?;
                let (body, next) = hunk_body(&lines, i + 1, &hunk)?;
                if let Some((_, walk)) = &mut file {
                    walk.hunk(&hunk, &body);
                }
                i = next;
            } else {
                i += 1;
            }
        }
        self.finish(file.take());
        Ok(())
    }

    /// The files the patches touch (`-p1` paths), deleted ones included.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    fn finish(&mut self, file: Option<(String, Walk)>) {
        if let Some((name, walk)) = file {
            self.files.entry(name).or_default().push(walk.finish());
        }
    }

    /// Where line `old` of `file` (a `__FILE__` as the compiler wrote it)
    /// is after the patches; a file they do not touch keeps its lines.
    /// `None` when a patch removed or changed the line.
    pub fn map(&self, file: &str, old: u32, root: Option<&Path>) -> Option<u32> {
        match self.files.get(normalise(file, root)) {
            None => Some(old),
            Some(stages) => stages.iter().try_fold(old, |line, s| s.map(line)),
        }
    }

    /// The source file of `object` (`fs/ext4/super.o`: `fs/ext4/super.c`)
    /// as the patches name it: a site whose callee takes `__func__` rather
    /// than `__FILE__` names no file, and its line is most often the
    /// object's own. An object named outside the tree (`diff-objects`)
    /// matches the one patched file its path ends with.
    pub fn source_of(&self, object: &Path, root: Option<&Path>) -> Option<String> {
        let source = object.with_extension("c");
        let source = normalise(source.to_str()?, root);
        if self.files.contains_key(source) {
            return Some(source.to_owned());
        }
        let mut suffixes = self.files.keys().filter(|f| {
            source
                .strip_suffix(f.as_str())
                .is_some_and(|head| head.ends_with('/'))
        });
        match (suffixes.next(), suffixes.next()) {
            (Some(f), None) => Some(f.clone()),
            _ => Some(source.to_owned()),
        }
    }

    /// Checks that the patched sites are the original ones moved as the
    /// patches move their lines; otherwise says which is not. A site that
    /// names no file of its own passes if one of the files it may be, or
    /// `source` (the object's own, [`LineMap::source_of`]), moves its line
    /// there.
    pub fn explains(
        &self,
        orig: &[LineSite],
        patched: &[LineSite],
        root: Option<&Path>,
        source: Option<&str>,
    ) -> Result<(), String> {
        if orig.len() != patched.len() {
            return Err(format!(
                "it has {} line sites where it had {}",
                patched.len(),
                orig.len()
            ));
        }
        for (a, b) in orig.iter().zip(patched) {
            if a.file != b.file {
                return Err(format!(
                    "a line site's file is {} where it was {}",
                    shown(&b.file),
                    shown(&a.file)
                ));
            }
            let files: Vec<&str> = match &a.file {
                SiteFile::Known(f) => vec![f],
                SiteFile::OneOf(names) => names
                    .iter()
                    .map(String::as_str)
                    .chain(source.filter(|s| !names.iter().any(|n| n == s)))
                    .collect(),
            };
            if files.is_empty() && a.line != b.line {
                return Err(format!(
                    "line {} became {} at a site that names no file",
                    a.line, b.line
                ));
            }
            let moved: Vec<Option<u32>> = files.iter().map(|f| self.map(f, a.line, root)).collect();
            if !files.is_empty() && !moved.contains(&Some(b.line)) {
                let to = match moved.iter().flatten().next() {
                    Some(l) => format!("where the patch puts it at {l}"),
                    None => "a line the patch changes".to_owned(),
                };
                return Err(format!(
                    "line {} of {} is {} now, {to}",
                    a.line,
                    shown(&a.file),
                    b.line
                ));
            }
        }
        Ok(())
    }
}

fn shown(file: &SiteFile) -> String {
    match file {
        SiteFile::Known(f) => f.clone(),
        SiteFile::OneOf(names) if names.is_empty() => "a file that is not known".into(),
        SiteFile::OneOf(names) => format!("one of {}", names.join(", ")),
    }
}

/// A `--- a/path` line's path, `-p1`.
fn path_of_minus(rest: &[u8]) -> String {
    let path = rest.split(|&b| b == b'\t').next().unwrap_or_default();
    let path = path.trim_ascii_end();
    let rel = path.splitn(2, |&b| b == b'/').nth(1).unwrap_or_default();
    String::from_utf8_lossy(rel).into_owned()
}

/// A `__FILE__` as a path relative to the tree: kbuild compiles in-tree
/// files by relative names (`fs/proc/base.c`, `./include/linux/sched.h`);
/// an out-of-tree build without a prefix map names them under `root`.
fn normalise<'a>(mut file: &'a str, root: Option<&Path>) -> &'a str {
    if let Some(rest) = root
        .and_then(Path::to_str)
        .and_then(|r| file.strip_prefix(r.trim_end_matches('/')))
        .and_then(|rest| rest.strip_prefix('/'))
    {
        file = rest;
    }
    while let Some(rest) = file.strip_prefix("./") {
        file = rest;
    }
    file
}

/// Reads one file's hunks in order.
struct Walk {
    segments: Vec<Segment>,
    /// The first original line not yet covered.
    next_old: u32,
    /// How far `__LINE__` in the patched file runs ahead of the original
    /// line at `next_old`.
    delta: i64,
    /// The original line from which nothing maps any more.
    broken: Option<u32>,
}

impl Walk {
    fn new(new_file: bool) -> Self {
        Walk {
            segments: Vec::new(),
            next_old: 1,
            delta: 0,
            broken: new_file.then_some(1),
        }
    }

    fn push(&mut self, from: u32, to: u32, delta: i64) {
        let to = self.broken.map_or(to, |b| to.min(b));
        if from >= to {
            return;
        }
        match self.segments.last_mut() {
            Some(last) if last.to == from && last.delta == delta => last.to = to,
            _ => self.segments.push(Segment { from, to, delta }),
        }
    }

    fn hunk(&mut self, hunk: &Hunk, body: &[&[u8]]) {
        let first = hunk.old_start + usize::from(hunk.old_count == 0);
        let first = u32::try_from(first).unwrap_or(u32::MAX);
        self.push(self.next_old, first, self.delta);
        let mut old = first;
        // The number the compiler gives the next line of the patched file.
        let mut compiled = i64::from(first) + self.delta;
        for l in body {
            let (kind, content) = match l.first() {
                Some(b'\\') => continue,
                Some(&k @ (b'-' | b'+' | b' ')) => (k, &l[1..]),
                _ => (b' ', &l[..]),
            };
            match kind {
                b'+' => match directive(content) {
                    Some((n, false)) => compiled = i64::from(n),
                    Some((_, true)) => {
                        self.broken.get_or_insert(old);
                        compiled += 1;
                    }
                    None => compiled += 1,
                },
                b'-' => {
                    if directive(content).is_some() {
                        self.broken.get_or_insert(old);
                    }
                    old += 1;
                }
                _ => {
                    if directive(content).is_some() {
                        self.broken.get_or_insert(old);
                    }
                    self.push(old, old + 1, compiled - i64::from(old));
                    old += 1;
                    compiled += 1;
                }
            }
        }
        self.next_old = old;
        self.delta = compiled - i64::from(old);
    }

    fn finish(mut self) -> Stage {
        self.push(self.next_old, u32::MAX, self.delta);
        Stage {
            segments: self.segments,
        }
    }
}

/// A line directive, `#line N` or `# N "file"`: the number of the line
/// after it, and whether it names a file too.
fn directive(content: &[u8]) -> Option<(u32, bool)> {
    let rest = content.trim_ascii_start().strip_prefix(b"#")?;
    let rest = rest.trim_ascii_start();
    let rest = rest
        .strip_prefix(b"line")
        .unwrap_or(rest)
        .trim_ascii_start();
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let n = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let after = rest[digits..].trim_ascii();
    Some((n, !after.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(patch: &str) -> LineMap {
        LineMap::from_patches([patch.as_bytes()]).unwrap()
    }

    fn site(line: u32, file: &str) -> LineSite {
        LineSite {
            line,
            file: SiteFile::Known(file.into()),
        }
    }

    fn one_of(line: u32, files: &[&str]) -> LineSite {
        LineSite {
            line,
            file: SiteFile::OneOf(files.iter().map(|f| f.to_string()).collect()),
        }
    }

    /// Two lines added after line 4 of f.c: lines up to 4 stay, 5 and
    /// below move by two; other files keep their lines.
    const ADD: &str =
        "--- a/f.c\n+++ b/f.c\n@@ -3,4 +3,6 @@ int f(void)\n a;\n b;\n+c;\n+d;\n e;\n g;\n";

    #[test]
    fn lines_below_an_addition_move_by_its_size() {
        let m = map(ADD);
        let at = |l| m.map("f.c", l, None);
        assert_eq!(
            [at(1), at(4), at(5), at(6), at(900)],
            [Some(1), Some(4), Some(7), Some(8), Some(902)]
        );
        assert_eq!(m.map("./f.c", 5, None), Some(7));
        assert_eq!(m.map("/src/f.c", 5, Some(Path::new("/src/"))), Some(7));
        assert_eq!(m.map("g.c", 5, None), Some(5));
    }

    #[test]
    fn removed_lines_map_nowhere() {
        let m = map("--- a/f.c\n+++ b/f.c\n@@ -3,3 +3,2 @@\n a;\n-b;\n c;\n");
        let at = |l| m.map("f.c", l, None);
        assert_eq!(
            [at(3), at(4), at(5), at(9)],
            [Some(3), None, Some(4), Some(8)]
        );
    }

    /// fix-lines' directive restores the numbering below the change.
    #[test]
    fn an_added_directive_renumbers_what_follows() {
        let m =
            map("--- a/f.c\n+++ b/f.c\n@@ -3,4 +3,7 @@\n a;\n b;\n+c;\n+d;\n+#line 5\n e;\n g;\n");
        let at = |l| m.map("f.c", l, None);
        assert_eq!(
            [at(4), at(5), at(6), at(50)],
            [Some(4), Some(5), Some(6), Some(50)]
        );
        let named = map("--- a/f.c\n+++ b/f.c\n@@ -3,2 +3,3 @@\n a;\n+# 9 \"x.h\"\n b;\n");
        assert_eq!(named.map("f.c", 3, None), Some(3));
        assert_eq!(named.map("f.c", 4, None), None);
    }

    #[test]
    fn patches_apply_in_order_and_new_files_have_no_old_lines() {
        let second = "--- a/f.c\n+++ b/f.c\n@@ -1,2 +1,3 @@\n x;\n+y;\n z;\n";
        let m = LineMap::from_patches([ADD.as_bytes(), second.as_bytes()]).unwrap();
        assert_eq!(m.map("f.c", 5, None), Some(8));
        let new = map("--- /dev/null\n+++ b/n.c\n@@ -0,0 +1,2 @@\n+a;\n+b;\n");
        assert_eq!(new.map("n.c", 1, None), None);
        let gone = map("--- a/o.c\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a;\n-b;\n");
        assert_eq!(gone.map("o.c", 1, None), None);
    }

    #[test]
    fn explains_only_the_moves_the_patch_makes() {
        let m = map(ADD);
        let ok = m.explains(
            &[site(5, "f.c"), site(2, "h.h")],
            &[site(7, "f.c"), site(2, "h.h")],
            None,
            None,
        );
        assert_eq!(ok, Ok(()));
        let wrong = m
            .explains(&[site(5, "f.c")], &[site(8, "f.c")], None, None)
            .unwrap_err();
        assert!(wrong.contains("puts it at 7"), "{wrong}");
        let unpatched = m.explains(&[site(100, "h.h")], &[site(101, "h.h")], None, None);
        assert!(unpatched.is_err());
        assert!(m
            .explains(&[one_of(5, &[])], &[one_of(5, &[])], None, None)
            .is_ok());
        assert!(m
            .explains(&[one_of(5, &[])], &[one_of(6, &[])], None, None)
            .is_err());
        // A site that names no file: one of the files its function loads.
        let both = ["f.c", "h.h"];
        assert!(m
            .explains(&[one_of(5, &both)], &[one_of(7, &both)], None, None)
            .is_ok());
        assert!(m
            .explains(&[one_of(5, &both)], &[one_of(5, &both)], None, None)
            .is_ok());
        assert!(m
            .explains(&[one_of(5, &both)], &[one_of(6, &both)], None, None)
            .is_err());
        assert!(m
            .explains(&[site(5, "f.c")], &[site(7, "g.c")], None, None)
            .is_err());
        assert!(m.explains(&[site(5, "f.c")], &[], None, None).is_err());
        // A `__func__` callee's site: the object's own source.
        assert!(m
            .explains(&[one_of(5, &[])], &[one_of(7, &[])], None, Some("f.c"))
            .is_ok());
        assert!(m
            .explains(&[one_of(5, &[])], &[one_of(8, &[])], None, Some("f.c"))
            .is_err());
    }

    #[test]
    fn an_object_s_source_is_named_as_the_patch_names_it() {
        let m = map("--- a/fs/ext4/super.c\n+++ b/fs/ext4/super.c\n@@ -1,1 +1,2 @@\n a;\n+b;\n");
        let source = |o: &str, root: Option<&str>| m.source_of(Path::new(o), root.map(Path::new));
        assert_eq!(
            source("fs/ext4/super.o", None).as_deref(),
            Some("fs/ext4/super.c")
        );
        assert_eq!(
            source("/src/linux/fs/ext4/super.o", Some("/src/linux")).as_deref(),
            Some("fs/ext4/super.c")
        );
        assert_eq!(
            source("/tmp/patched/fs/ext4/super.o", None).as_deref(),
            Some("fs/ext4/super.c")
        );
        // Not `xfs/ext4/super.c`'s: only at a path component.
        assert_eq!(
            source("/tmp/xfs/ext4/super.o", None).as_deref(),
            Some("/tmp/xfs/ext4/super.c")
        );
        assert_eq!(
            source("kernel/fork.o", None).as_deref(),
            Some("kernel/fork.c")
        );
    }
}
