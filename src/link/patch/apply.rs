//! Applying a source patch with patch(1), after a dry run: a patch that
//! does not apply touches nothing, and the error shows the hunks that
//! failed.

use std::io::Write as _;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use crate::link::line_map::LineMap;

#[derive(Debug)]
pub enum ApplyError {
    /// The patch is not one klp-link can read, or save and restore.
    Unreadable { patch: PathBuf, why: String },
    /// patch(1) could not be run.
    Run { error: std::io::Error },
    /// The dry run failed: patch's words and the hunks that failed.
    DoesNotApply {
        patch: PathBuf,
        output: String,
        hunks: String,
    },
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::Unreadable { patch, why } => write!(f, "{}: {why}", patch.display()),
            ApplyError::Run { error } => write!(f, "cannot run patch(1): {error}"),
            ApplyError::DoesNotApply {
                patch,
                output,
                hunks,
            } => {
                write!(
                    f,
                    "{} does not apply to the tree, which is left as it was:\n{}",
                    patch.display(),
                    output.trim_end()
                )?;
                if !hunks.is_empty() {
                    write!(f, "\nthe hunks that failed:\n{}", hunks.trim_end())?;
                }
                Ok(())
            }
        }
    }
}

/// The files `text` (a `-p1` patch) touches, relative to the source tree.
pub fn touched(patch: &Path, text: &[u8]) -> Result<Vec<PathBuf>, ApplyError> {
    let unreadable = |why: String| ApplyError::Unreadable {
        patch: patch.to_owned(),
        why,
    };
    for line in text.split(|&b| b == b'\n') {
        for git in [&b"rename from "[..], b"copy from ", b"GIT binary patch"] {
            if line.starts_with(git) {
                return Err(unreadable(format!(
                    "it has a git `{}` part, which klp-link cannot restore afterwards; \
                     write it as plain changes to each file",
                    String::from_utf8_lossy(git).trim()
                )));
            }
        }
    }
    let map = LineMap::from_patches([text])
        .map_err(|e| unreadable(format!("not a patch klp-link can read: {e}")))?;
    let mut files = Vec::new();
    for name in map.files() {
        let path = Path::new(name);
        let inside = !name.is_empty()
            && !name.contains('\u{fffd}')
            && path
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside {
            return Err(unreadable(format!(
                "it names `{name}`, which is not a UTF-8 path inside the source tree"
            )));
        }
        files.push(path.to_owned());
    }
    if files.is_empty() {
        return Err(unreadable("it changes no file".into()));
    }
    files.sort();
    Ok(files)
}

/// Applies `text` to `srctree`, or with `dry` only checks that it applies
/// (changing nothing).
pub fn apply(srctree: &Path, patch: &Path, text: &[u8], dry: bool) -> Result<(), ApplyError> {
    let (ok, output) = run_patch(srctree, text, dry)?;
    if ok {
        return Ok(());
    }
    Err(ApplyError::DoesNotApply {
        patch: patch.to_owned(),
        hunks: failed_hunks(text, &output),
        output,
    })
}

fn run_patch(srctree: &Path, text: &[u8], dry: bool) -> Result<(bool, String), ApplyError> {
    let mut cmd = Command::new("patch");
    // -N: an applied patch is a failure, not a question; no backup or
    // reject files are left in the tree.
    cmd.args(["-p1", "-f", "-N", "--no-backup-if-mismatch", "-r", "-"])
        .arg("-d")
        .arg(srctree)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if dry {
        cmd.arg("--dry-run");
    }
    let mut child = cmd.spawn().map_err(|error| ApplyError::Run { error })?;
    let mut stdin = child.stdin.take().expect("piped");
    // A patch that fails early stops reading: a broken pipe is its answer.
    let _ = stdin.write_all(text);
    drop(stdin);
    let out = child
        .wait_with_output()
        .map_err(|error| ApplyError::Run { error })?;
    let mut words = String::from_utf8_lossy(&out.stdout).into_owned();
    words.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), words))
}

/// The text of each hunk patch(1) reports as failed ("checking file F",
/// then "Hunk #N FAILED at L.").
fn failed_hunks(text: &[u8], output: &str) -> String {
    let mut failed: Vec<(String, usize)> = Vec::new();
    let mut file = String::new();
    for line in output.lines() {
        if let Some(f) = line
            .strip_prefix("checking file ")
            .or_else(|| line.strip_prefix("patching file "))
        {
            file = f.trim_matches('\'').to_owned();
        } else if let Some(rest) = line.strip_prefix("Hunk #") {
            if rest.contains("FAILED") {
                if let Some(n) = rest.split_whitespace().next().and_then(|n| n.parse().ok()) {
                    failed.push((file.clone(), n));
                }
            }
        }
    }
    let mut out = String::new();
    let mut current = String::new();
    let mut number = 0;
    let mut keep = false;
    for line in String::from_utf8_lossy(text).lines() {
        if let Some(rest) = line.strip_prefix("+++ ") {
            let path = rest.split('\t').next().unwrap_or_default();
            current = path.split_once('/').map_or(path, |(_, p)| p).to_owned();
            number = 0;
            keep = false;
            continue;
        }
        if line.starts_with("@@ ") {
            number += 1;
            keep = failed.contains(&(current.clone(), number));
            if keep {
                out.push_str(&format!("{current}, hunk #{number}:\n"));
            }
        } else if line.starts_with("--- ") || line.starts_with("diff ") {
            keep = false;
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATCH: &str =
        "--- a/f.c\n+++ b/f.c\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n@@ -5,2 +5,2 @@\n e\n-f\n+F\n";

    #[test]
    fn the_failed_hunk_is_shown() {
        let out = "checking file f.c\nHunk #2 FAILED at 5.\n1 out of 2 hunks FAILED\n";
        assert_eq!(
            failed_hunks(PATCH.as_bytes(), out),
            "f.c, hunk #2:\n@@ -5,2 +5,2 @@\n e\n-f\n+F\n"
        );
    }

    #[test]
    fn touched_files_are_inside_the_tree() {
        let p = Path::new("x.patch");
        assert_eq!(
            touched(p, PATCH.as_bytes()).unwrap(),
            [PathBuf::from("f.c")]
        );
        let escape = PATCH.replace("b/f.c", "b/../f.c");
        assert!(touched(p, escape.as_bytes()).is_err());
        let rename = "diff --git a/x b/y\nrename from x\nrename to y\n";
        assert!(touched(p, rename.as_bytes()).is_err());
    }
}
