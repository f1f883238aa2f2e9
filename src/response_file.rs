//! `@file` arguments: gcc reads more arguments from the file, with GNU
//! quoting (whitespace separates; single and double quotes group; a
//! backslash escapes the next character), and files may name further
//! `@files`. An `@file` that cannot be read stays a literal argument, as gcc
//! treats it, and the caller passes such a command through.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// gcc's own limit on nested response files is deeper than any real use;
/// this only stops a file that includes itself.
const MAX_DEPTH: usize = 16;

/// The arguments with every readable `@file` replaced by its contents.
/// Returns `None` when an `@file` could not be read or nests too deeply.
pub fn expand(args: &[OsString], cwd: &Path) -> Option<Vec<OsString>> {
    let mut out = Vec::with_capacity(args.len());
    expand_into(args, cwd, 0, &mut out).then_some(out)
}

fn expand_into(args: &[OsString], cwd: &Path, depth: usize, out: &mut Vec<OsString>) -> bool {
    for arg in args {
        let Some(name) = arg.as_bytes().strip_prefix(b"@") else {
            out.push(arg.clone());
            continue;
        };
        if depth >= MAX_DEPTH {
            return false;
        }
        let Ok(text) = std::fs::read(cwd.join(std::ffi::OsStr::from_bytes(name))) else {
            return false;
        };
        if !expand_into(&split_gnu(&text), cwd, depth + 1, out) {
            return false;
        }
    }
    true
}

/// Splits response-file text the way libiberty's `buildargv` does.
pub fn split_gnu(text: &[u8]) -> Vec<OsString> {
    let mut args = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut in_arg = false;
    let mut quote: Option<u8> = None;
    let mut bytes = text.iter().copied();
    while let Some(b) = bytes.next() {
        match (quote, b) {
            (_, b'\\') => {
                if let Some(next) = bytes.next() {
                    cur.push(next);
                }
                in_arg = true;
            }
            (Some(q), b) if b == q => quote = None,
            (Some(_), b) => cur.push(b),
            (None, b'\'' | b'"') => {
                quote = Some(b);
                in_arg = true;
            }
            (None, b) if b.is_ascii_whitespace() => {
                if in_arg {
                    args.push(OsString::from_vec(std::mem::take(&mut cur)));
                    in_arg = false;
                }
            }
            (None, b) => {
                cur.push(b);
                in_arg = true;
            }
        }
    }
    if in_arg {
        args.push(OsString::from_vec(cur));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        split_gnu(s.as_bytes())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn gnu_quoting() {
        assert_eq!(split("-c  a.c\n-o 'b c.o'"), ["-c", "a.c", "-o", "b c.o"]);
        assert_eq!(split(r#"-DX="\"q\"" a\ b ''"#), ["-DX=\"q\"", "a b", ""]);
        assert_eq!(split(r#""it's""#), ["it's"]);
    }

    #[test]
    fn nested_files_and_unreadable_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inner"), "-o x.o").unwrap();
        std::fs::write(dir.path().join("outer"), "-c @inner x.c").unwrap();
        std::fs::write(dir.path().join("loop"), "@loop").unwrap();
        let got = expand(&["@outer".into()], dir.path()).unwrap();
        assert_eq!(got, ["-c", "-o", "x.o", "x.c"]);
        assert_eq!(expand(&["@missing".into()], dir.path()), None);
        assert_eq!(expand(&["@loop".into()], dir.path()), None);
    }
}
