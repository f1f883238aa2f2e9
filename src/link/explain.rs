//! Where two versions of a function first differ: the question every patch
//! author asks when a function they did not touch is reported changed.
//! Both versions are traced through the checksum code itself, so what is
//! shown is exactly what made the checksums differ.

use std::fmt::Write as _;
use std::path::Path;

use crate::checksum::trace::{render_tokens, trace_function, Step};

/// A report of the first difference of function `name` between two objects.
pub fn explain_objects(orig: &Path, patched: &Path, name: &str) -> Result<String, String> {
    let trace = |p: &Path| -> Result<Vec<Step>, String> {
        let data = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
        trace_function(&data, name)
            .map_err(|e| format!("{}: {e}", p.display()))?
            .ok_or_else(|| format!("{}: no function `{name}`", p.display()))
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
    if i > 0 {
        let _ = writeln!(out, "  (same up to) {}", a[i - 1].label);
    }
    show(&a, "orig", &mut out);
    show(&b, "patched", &mut out);
    Ok(out)
}
