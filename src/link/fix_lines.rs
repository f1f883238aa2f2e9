//! `#line` directives for a source patch, so that the code below each
//! change keeps its original line numbers.
//!
//! A patch that adds or removes lines moves every `__LINE__` below it: the
//! line numbers in WARN/BUG table entries, in `pr_*` call sites, in
//! initcall symbol names. Each of those changes a function the patch never
//! touched, and klp-link would report and carry it (or refuse it, if it is
//! `__init`). Applying the patch through this rewrite puts a `#line N` after
//! each group of changed lines in C sources and headers, where N is the
//! line's number in the original file, so only the changed code moves.
//!
//! A directive is only written where the preprocessor accepts one: never
//! inside a block comment or after a line continued with `\`; it moves down
//! to the next context line that is neither.
//!
//! A patch is bytes, not text: kernel sources and file names hold Latin-1,
//! and every byte of the input reaches the output unchanged.

use std::fmt;
use std::io::Write as _;

/// A patch this rewrite cannot read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError {
    /// 1-based line of the patch.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "patch line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for PatchError {}

/// A patch with `#line` directives, and what could not be fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixed {
    pub text: Vec<u8>,
    /// Files whose line numbers stay shifted below some change, because no
    /// line after it in the patch may take a directive.
    pub warnings: Vec<String>,
}

/// The original content of a patched file, by its path in the patch
/// without the first component (`-p1`); `None` when there is no such file.
pub type Original<'a> = &'a dyn Fn(&[u8]) -> Option<Vec<u8>>;

/// The patch `text` with `#line` directives added to its hunks for `.c` and
/// `.h` files, and its hunk headers counted anew. With `original`, each
/// hunk's old lines are looked up in the file it patches, as `patch` does,
/// and the directives name the lines where they really are: a patch made
/// against another version applies at an offset, and the numbers in its
/// hunk headers would shift everything below the change.
pub fn fix_lines(text: &[u8], original: Option<Original>) -> Result<Fixed, PatchError> {
    let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
    let mut out = Vec::with_capacity(text.len() + 256);
    let mut warnings = Vec::new();
    let mut file = FileState::default();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(old_path) = line.strip_prefix(b"--- ") {
            file.finish(&mut warnings);
            file = FileState {
                new_file: old_path.starts_with(b"/dev/null"),
                ..FileState::default()
            };
            out.extend_from_slice(line);
            i += 1;
        } else if line.starts_with(b"+++ ") {
            file.path = path_of(line).to_owned();
            file.c_source = is_c_source(&file.path) && !file.new_file;
            if let (Some(original), true) = (original, file.c_source) {
                let rel = file
                    .path
                    .splitn(2, |&b| b == b'/')
                    .nth(1)
                    .unwrap_or_default();
                let content = original(rel).ok_or_else(|| PatchError {
                    line: i + 1,
                    reason: format!(
                        "{} is not in the tree the patch is for",
                        String::from_utf8_lossy(rel)
                    ),
                })?;
                file.original = Some(split_lines(&content));
            }
            out.extend_from_slice(line);
            i += 1;
        } else if line.starts_with(b"@@ ") {
            let mut hunk = Hunk::parse(line).ok_or_else(|| PatchError {
                line: i + 1,
                reason: format!(
                    "not a hunk header: {}",
                    String::from_utf8_lossy(line.trim_ascii_end())
                ),
            })?;
            let (body, next) = hunk_body(&lines, i + 1, &hunk)?;
            if let Some(original) = &file.original {
                hunk.old_start =
                    locate(original, &body, hunk.old_start).ok_or_else(|| PatchError {
                        line: i + 1,
                        reason: format!(
                            "this hunk of {} matches the file at no line: the patch does not \
                             apply to this tree as it is",
                            String::from_utf8_lossy(&file.path)
                        ),
                    })?;
            }
            let new_body = if file.c_source {
                // A pure insertion goes after old line N: N+1 comes next.
                let first = hunk.old_start + usize::from(hunk.old_count == 0);
                let (fixed, lag) = with_directives(&body, first, file.lag);
                if lag != 0 && file.lag == 0 {
                    file.off_from = first;
                }
                file.lag = lag;
                fixed
            } else {
                body.iter().map(|s| s.to_vec()).collect()
            };
            let new_count = new_body
                .iter()
                .filter(|l| l.starts_with(b" ") || l.starts_with(b"+") || is_empty_context(l))
                .count() as i64;
            // An empty range names the line before it: a pure insertion
            // goes after old line N, a pure deletion leaves new line N-1.
            let new_start = match (hunk.old_count, new_count) {
                (_, 0) => hunk.old_start as i64 + file.shift - 1,
                (0, _) => hunk.old_start as i64 + file.shift + 1,
                _ => hunk.old_start as i64 + file.shift,
            }
            .max(0);
            let _ = write!(
                out,
                "@@ -{},{} +{},{} @@",
                hunk.old_start, hunk.old_count, new_start, new_count
            );
            out.extend_from_slice(hunk.rest);
            file.shift += new_count - hunk.old_count as i64;
            for l in new_body {
                out.extend_from_slice(&l);
            }
            i = next;
        } else {
            out.extend_from_slice(line);
            i += 1;
        }
    }
    file.finish(&mut warnings);
    Ok(Fixed {
        text: out,
        warnings,
    })
}

/// What the rewrite knows of the file whose hunks it is reading.
#[derive(Default)]
struct FileState {
    path: Vec<u8>,
    new_file: bool,
    c_source: bool,
    /// How far new-file line numbers run ahead of the original's.
    shift: i64,
    /// How far the numbers the compiler will give run ahead of the
    /// original's after the last hunk (0 once a directive restored them),
    /// and from which original line on.
    lag: i64,
    off_from: usize,
    /// The patched file's lines (without line ends), to locate hunks in.
    original: Option<Vec<Vec<u8>>>,
}

impl FileState {
    fn finish(&self, warnings: &mut Vec<String>) {
        if self.c_source && self.lag != 0 {
            warnings.push(format!(
                "{}: from about line {} on, __LINE__ stays off by {}: no line after the change \
                 may take a #line directive (add context lines, e.g. diff -U3)",
                String::from_utf8_lossy(&self.path),
                self.off_from,
                self.lag
            ));
        }
    }
}

/// `text`'s lines without their line ends.
fn split_lines(text: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
        .collect();
    if text.ends_with(b"\n") {
        lines.pop();
    }
    lines
}

/// The 1-based line of `file` where the old lines of hunk `body` (context
/// and removed lines) are, nearest to `stated` as `patch` looks; for a hunk
/// without old lines, `stated`.
fn locate(file: &[Vec<u8>], body: &[&[u8]], stated: usize) -> Option<usize> {
    let old: Vec<&[u8]> = body
        .iter()
        .filter(|l| l.starts_with(b" ") || l.starts_with(b"-") || is_empty_context(l))
        .map(|l| {
            let l = l.strip_suffix(b"\n").unwrap_or(l);
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            l.get(1..).unwrap_or_default()
        })
        .collect();
    if old.is_empty() {
        return Some(stated);
    }
    let fits = |start: usize| {
        start >= 1
            && file.len() >= start - 1 + old.len()
            && file[start - 1..start - 1 + old.len()]
                .iter()
                .zip(&old)
                .all(|(a, b)| a.as_slice() == *b)
    };
    (0..=file.len()).find_map(|d| {
        let below = stated.checked_sub(d).filter(|&s| fits(s));
        below.or_else(|| Some(stated + d).filter(|&s| fits(s)))
    })
}

/// The path of a `+++ b/path.c` line, without a tab and timestamp.
pub(super) fn path_of(header: &[u8]) -> &[u8] {
    header[4..]
        .split(|&b| b == b'\t')
        .next()
        .unwrap_or_default()
        .trim_ascii_end()
}

fn is_c_source(path: &[u8]) -> bool {
    path.ends_with(b".c") || path.ends_with(b".h")
}

/// Some tools write an empty line for an empty context line.
fn is_empty_context(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

pub(super) struct Hunk<'a> {
    pub(super) old_start: usize,
    pub(super) old_count: usize,
    new_count: usize,
    /// What follows the second `@@`, with the line end.
    rest: &'a [u8],
}

impl<'a> Hunk<'a> {
    /// `@@ -a[,b] +c[,d] @@ rest`
    pub(super) fn parse(line: &'a [u8]) -> Option<Hunk<'a>> {
        let body = line.strip_prefix(b"@@ -")?;
        let end = body.windows(3).position(|w| w == b" @@")?;
        let (ranges, rest) = (std::str::from_utf8(&body[..end]).ok()?, &body[end + 3..]);
        let (old, new) = ranges.split_once(" +")?;
        let range = |r: &str| -> Option<(usize, usize)> {
            match r.split_once(',') {
                Some((s, c)) => Some((s.parse().ok()?, c.parse().ok()?)),
                None => Some((r.parse().ok()?, 1)),
            }
        };
        let (old_start, old_count) = range(old)?;
        let (_, new_count) = range(new)?;
        Some(Hunk {
            old_start,
            old_count,
            new_count,
            rest,
        })
    }
}

/// The lines of the hunk whose header precedes line `from`, and the index
/// of the line after it.
pub(super) fn hunk_body<'a>(
    lines: &[&'a [u8]],
    from: usize,
    hunk: &Hunk,
) -> Result<(Vec<&'a [u8]>, usize), PatchError> {
    let (mut old, mut new) = (0, 0);
    let mut i = from;
    let mut body = Vec::new();
    while old < hunk.old_count || new < hunk.new_count {
        let Some(&l) = lines.get(i) else {
            return Err(PatchError {
                line: i,
                reason: "the patch ends inside a hunk".into(),
            });
        };
        match l.first() {
            Some(b' ') | Some(b'\n') | Some(b'\r') => {
                old += 1;
                new += 1;
            }
            Some(b'-') => old += 1,
            Some(b'+') => new += 1,
            Some(b'\\') => {}
            _ => {
                return Err(PatchError {
                    line: i + 1,
                    reason: "the hunk has fewer lines than its header says".into(),
                })
            }
        }
        body.push(l);
        i += 1;
    }
    // "\ No newline at end of file" belongs to the last line.
    while lines.get(i).is_some_and(|l| l.starts_with(b"\\")) {
        body.push(lines[i]);
        i += 1;
    }
    Ok((body, i))
}

/// The hunk's lines with a `+#line N` before the first context line after
/// each group of changes that left the numbering off, where a directive is
/// allowed, and at its end if it ends with such a group (a patch without
/// context lines). `old_start` is the number, in the original file, of the
/// hunk's first line, or of the line after a pure insertion; `lag` is how
/// far the compiler's numbering runs ahead at the hunk's start. Returns the
/// lines and the lag at its end.
fn with_directives(body: &[&[u8]], old_start: usize, lag: i64) -> (Vec<Vec<u8>>, i64) {
    let mut out = Vec::with_capacity(body.len() + 2);
    // The original number of the next context or removed line, and the
    // number the compiler gives the next line of the patched file.
    let mut old_line = old_start as i64;
    let mut compiled = old_line + lag;
    let mut lexer = Lexer {
        in_comment: starts_in_comment(body),
        continued: false,
    };
    let mut eol = "\n";
    for &l in body {
        if l.ends_with(b"\r\n") {
            eol = "\r\n";
        }
        let (kind, content) = match l.first() {
            Some(b'\\') => {
                out.push(l.to_vec());
                continue;
            }
            Some(b'-') => ('-', &l[1..]),
            Some(b'+') => ('+', &l[1..]),
            Some(b' ') => (' ', &l[1..]),
            _ => (' ', l),
        };
        match kind {
            '-' => old_line += 1,
            '+' => {
                compiled += 1;
                lexer.feed(content);
            }
            _ => {
                if compiled != old_line && lexer.directive_allowed() {
                    out.push(format!("+#line {old_line}{eol}").into_bytes());
                    compiled = old_line;
                }
                old_line += 1;
                compiled += 1;
                lexer.feed(content);
            }
        }
        out.push(l.to_vec());
    }
    let ends_in_newline = body
        .last()
        .is_some_and(|l| l.ends_with(b"\n") && !l.starts_with(b"\\"));
    if compiled != old_line && lexer.directive_allowed() && ends_in_newline {
        out.push(format!("+#line {old_line}{eol}").into_bytes());
        compiled = old_line;
    }
    (out, compiled - old_line)
}

/// Whether the hunk starts inside a block comment: the original side closes
/// one (`*/`) before it opens any.
fn starts_in_comment(body: &[&[u8]]) -> bool {
    let mut probe = Lexer::default();
    for l in body {
        if l.starts_with(b"+") || l.starts_with(b"\\") {
            continue;
        }
        let content = l.get(1..).unwrap_or_default();
        if let Some(closed_first) = probe.first_comment_token(content) {
            return closed_first;
        }
    }
    false
}

/// Just enough of C's lexical state, line by line, to know whether a
/// directive may start the next line: not inside a block comment, and not
/// after a line continued with a backslash.
#[derive(Default)]
struct Lexer {
    in_comment: bool,
    continued: bool,
}

impl Lexer {
    /// In a line read from outside any comment: `Some(true)` if a `*/`
    /// comes before any `/*`, `Some(false)` if a `/*` comes first, `None`
    /// if neither does.
    fn first_comment_token(&mut self, bytes: &[u8]) -> Option<bool> {
        let mut quote = None;
        let mut i = 0;
        while i + 1 < bytes.len() {
            let (b, next) = (bytes[i], bytes[i + 1]);
            if let Some(q) = quote {
                if b == b'\\' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
            } else if b == b'"' || b == b'\'' {
                quote = Some(b);
            } else if b == b'*' && next == b'/' {
                return Some(true);
            } else if b == b'/' && next == b'*' {
                return Some(false);
            } else if b == b'/' && next == b'/' {
                return None;
            }
            i += 1;
        }
        None
    }

    fn directive_allowed(&self) -> bool {
        !self.in_comment && !self.continued
    }

    fn feed(&mut self, line: &[u8]) {
        let mut bytes = line;
        while let [text @ .., b'\n' | b'\r'] = bytes {
            bytes = text;
        }
        let mut i = 0;
        let mut quote = None;
        while i < bytes.len() {
            let b = bytes[i];
            if self.in_comment {
                if b == b'*' && bytes.get(i + 1) == Some(&b'/') {
                    self.in_comment = false;
                    i += 1;
                }
            } else if let Some(q) = quote {
                if b == b'\\' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
            } else if b == b'"' || b == b'\'' {
                quote = Some(b);
            } else if b == b'/' && bytes.get(i + 1) == Some(&b'*') {
                self.in_comment = true;
                i += 1;
            } else if b == b'/' && bytes.get(i + 1) == Some(&b'/') {
                break;
            }
            i += 1;
        }
        self.continued = bytes.ends_with(b"\\");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rewrite of a UTF-8 patch, as text.
    fn rewrite(patch: &str) -> String {
        String::from_utf8(fix_lines(patch.as_bytes(), None).unwrap().text).unwrap()
    }

    const ADD: &str =
        "--- a/f.c\n+++ b/f.c\n@@ -3,4 +3,5 @@ int f(void)\n a;\n b;\n+c;\n d;\n e;\n";

    #[test]
    fn a_directive_follows_an_addition() {
        let fixed = rewrite(ADD);
        assert_eq!(
            fixed,
            "--- a/f.c\n+++ b/f.c\n@@ -3,4 +3,6 @@ int f(void)\n a;\n b;\n+c;\n+#line 5\n d;\n e;\n"
        );
    }

    /// A patch made against another version applies where its lines are:
    /// the directive and the header name those lines, not the stated ones.
    #[test]
    fn with_the_tree_a_hunk_is_numbered_where_it_applies() {
        let file = b"p;\nq;\nr;\ns;\nt;\na;\nb;\nd;\ne;\n".to_vec();
        let original = |rel: &[u8]| (rel == b"f.c").then(|| file.clone());
        let fixed = fix_lines(ADD.as_bytes(), Some(&original)).unwrap().text;
        assert_eq!(
            String::from_utf8(fixed).unwrap(),
            "--- a/f.c\n+++ b/f.c\n@@ -6,4 +6,6 @@ int f(void)\n a;\n b;\n+c;\n+#line 8\n d;\n e;\n"
        );
        let elsewhere = |_: &[u8]| Some(b"a;\nb;\nX;\ne;\n".to_vec());
        let e = fix_lines(ADD.as_bytes(), Some(&elsewhere)).unwrap_err();
        assert!(e.reason.contains("matches the file at no line"), "{e}");
        let missing = |_: &[u8]| None;
        let e = fix_lines(ADD.as_bytes(), Some(&missing)).unwrap_err();
        assert!(e.reason.contains("f.c is not in the tree"), "{e}");
    }

    #[test]
    fn later_hunks_are_renumbered() {
        let patch = "--- a/f.c\n+++ b/f.c\n@@ -3,3 +3,4 @@\n a;\n+b;\n c;\n d;\n\
                     @@ -20,3 +21,2 @@\n x;\n-y;\n z;\n";
        let fixed = rewrite(patch);
        assert!(
            fixed.contains("@@ -3,3 +3,5 @@\n a;\n+b;\n+#line 4\n c;\n d;\n"),
            "{fixed}"
        );
        assert!(
            fixed.contains("@@ -20,3 +22,3 @@\n x;\n-y;\n+#line 22\n z;\n"),
            "{fixed}"
        );
    }

    #[test]
    fn balanced_changes_need_no_directive() {
        let patch = "--- a/f.c\n+++ b/f.c\n@@ -1,3 +1,3 @@\n a;\n-b;\n+B;\n c;\n";
        assert_eq!(rewrite(patch), patch);
    }

    #[test]
    fn not_inside_comments_or_macro_continuations() {
        let patch = "--- a/f.h\n+++ b/f.h\n@@ -1,4 +1,5 @@\n #define X(a) \\\n+\tfoo(a); \\\n \tbar(a)\n next;\n last;\n";
        let fixed = rewrite(patch);
        assert!(
            fixed.contains(" \tbar(a)\n+#line 3\n next;\n"),
            "after the macro ends: {fixed}"
        );
        let patch = "--- a/f.c\n+++ b/f.c\n@@ -1,4 +1,5 @@\n /* a\n+ * b\n  */\n x;\n y;\n";
        let fixed = rewrite(patch);
        assert!(
            fixed.contains("  */\n+#line 3\n x;\n"),
            "after the comment ends: {fixed}"
        );
    }

    #[test]
    fn new_files_and_pure_insertions_keep_git_numbering() {
        let new_file = "--- /dev/null\n+++ b/new.c\n@@ -0,0 +1,2 @@\n+int a;\n+int b;\n";
        assert_eq!(rewrite(new_file), new_file);
        // Without context lines (diff -U0) the directive ends the hunk.
        let patch = "--- a/f.c\n+++ b/f.c\n@@ -5,0 +6,1 @@\n+x;\n@@ -9,1 +9,0 @@\n-y;\n";
        assert_eq!(
            rewrite(patch),
            "--- a/f.c\n+++ b/f.c\n@@ -5,0 +6,2 @@\n+x;\n+#line 6\n@@ -9,1 +11,1 @@\n-y;\n+#line 10\n"
        );
    }

    #[test]
    fn a_hunk_that_starts_inside_a_comment() {
        let patch = "--- a/f.c\n+++ b/f.c\n@@ -10,4 +10,5 @@\n  * @a: x\n+ * @c: y\n  * Return\n  */\n int f;\n";
        let fixed = rewrite(patch);
        assert!(
            fixed.contains("  */\n+#line 13\n int f;\n"),
            "not inside the comment: {fixed}"
        );
    }

    #[test]
    fn the_lag_carries_to_the_next_hunk_and_is_reported_if_it_stays() {
        // No line of the first hunk may take the directive: the second does.
        let patch = "--- a/f.c\n+++ b/f.c\n@@ -1,2 +1,3 @@\n /* a\n+ b\n c\n\
                     @@ -20,2 +21,2 @@\n */\n int x;\n";
        let fixed = fix_lines(patch.as_bytes(), None).unwrap();
        let text = String::from_utf8_lossy(&fixed.text);
        assert!(
            text.contains("@@ -20,2 +21,3 @@\n */\n+#line 21\n int x;\n"),
            "{text}"
        );
        assert!(fixed.warnings.is_empty(), "{:?}", fixed.warnings);
        let stuck = "--- a/f.c\n+++ b/f.c\n@@ -1,2 +1,3 @@\n /* a\n+ b\n c\n";
        let fixed = fix_lines(stuck.as_bytes(), None).unwrap();
        assert_eq!(fixed.warnings.len(), 1, "{fixed:?}");
        assert!(fixed.warnings[0].contains("f.c"), "{:?}", fixed.warnings);
    }

    #[test]
    fn crlf_patches_get_crlf_directives() {
        let patch = "--- a/f.c\r\n+++ b/f.c\r\n@@ -1,1 +1,2 @@\r\n+x;\r\n y;\r\n";
        assert!(rewrite(patch).contains("+x;\r\n+#line 1\r\n y;\r\n"));
    }

    #[test]
    fn latin1_bytes_in_crlf_patches_pass_through() {
        let patch = b"--- a/\xe9.c\r\n+++ b/\xe9.c\r\n@@ -1,1 +1,2 @@ \xe7\r\n+x; /* \xe9 */\r\n y;\xff\r\n";
        let want = b"--- a/\xe9.c\r\n+++ b/\xe9.c\r\n@@ -1,1 +1,3 @@ \xe7\r\n+x; /* \xe9 */\r\n+#line 1\r\n y;\xff\r\n";
        assert_eq!(fix_lines(patch, None).unwrap().text, want);
    }

    #[test]
    fn other_files_are_left_alone() {
        let patch = "--- a/Makefile\n+++ b/Makefile\n@@ -1,2 +1,3 @@\n a\n+b\n c\n";
        assert_eq!(rewrite(patch), patch);
    }

    #[test]
    fn a_truncated_hunk_is_an_error() {
        let e = fix_lines(b"--- a/f.c\n+++ b/f.c\n@@ -1,3 +1,3 @@\n a\n", None).unwrap_err();
        assert!(e.reason.contains("ends inside a hunk"), "{e}");
    }
}
