//! Where two versions of a function first differ: the question every patch
//! author asks when a function they did not touch is reported changed.
//! Both versions are traced through the checksum code itself, so what is
//! shown is exactly what made the checksums differ.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::checksum::trace::{render_tokens, trace_function, Step, TraceError};
use crate::elf::NotDefined;
use crate::elf::ObjectError;

/// Why one side of an explanation cannot be traced.
#[derive(Debug)]
pub enum ExplainError {
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    Object {
        path: PathBuf,
        error: ObjectError,
    },
    NotDefined {
        path: PathBuf,
        name: String,
        why: NotDefined,
    },
}

impl fmt::Display for ExplainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExplainError::Read { path, error } => write!(f, "{}: {error}", path.display()),
            ExplainError::Object { path, error } => write!(f, "{}: {error}", path.display()),
            ExplainError::NotDefined { path, name, why } => write!(
                f,
                "`{name}` is not a defined function in {} ({why})",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ExplainError {}

/// A report of the first difference of function `name` between two objects.
pub fn explain_objects(orig: &Path, patched: &Path, name: &str) -> Result<String, ExplainError> {
    let trace = |p: &Path| -> Result<Vec<Step>, ExplainError> {
        let data = std::fs::read(p).map_err(|error| ExplainError::Read {
            path: p.to_owned(),
            error,
        })?;
        trace_function(&data, name).map_err(|e| match e {
            TraceError::Object(error) => ExplainError::Object {
                path: p.to_owned(),
                error,
            },
            TraceError::NotDefined { name, why } => ExplainError::NotDefined {
                path: p.to_owned(),
                name,
                why,
            },
        })
    };
    let (a, b) = (trace(orig)?, trace(patched)?);
    let mut out = format!("explain {name}:\n");
    // Labels hold addresses, which may differ where the hashed input does not.
    let tokens = |steps: &[Step], i: usize| steps.get(i).map(|s| s.tokens.clone());
    let Some(i) = (0..a.len().max(b.len())).find(|&i| tokens(&a, i) != tokens(&b, i)) else {
        out.push_str(
            "  the checksummed instructions and entries are the same; if it is reported \
             changed, it refers to another compiler clone than before (see `clones=` in \
             the manifests)\n",
        );
        return Ok(out);
    };
    let show = |steps: &[Step], which: &str, out: &mut String| match steps.get(i) {
        Some(s) => {
            let _ = writeln!(out, "  {which:<8} {}", s.label);
            let _ = writeln!(out, "  {:<8}   hashed as: {}", "", render_tokens(&s.tokens));
        }
        None => {
            let _ = writeln!(out, "  {which:<8} (ends before this point)");
        }
    };
    let _ = writeln!(
        out,
        "  first difference at step {} of {}/{}:",
        i + 1,
        a.len(),
        b.len()
    );
    if let Some(same) = i.checked_sub(1).and_then(|j| a.get(j)) {
        let _ = writeln!(out, "  (same up to) {}", same.label);
    }
    show(&a, "orig", &mut out);
    show(&b, "patched", &mut out);
    Ok(out)
}
