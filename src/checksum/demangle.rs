//! Compiler-generated name suffixes that change when unrelated code changes
//! (`foo.constprop.0` becoming `foo.constprop.1`, `.llvm.<hash>`, the counter
//! in `__UNIQUE_ID_x123`) are removed, so names can be compared across builds.

use std::borrow::Cow;

/// Returns the demangled form of an ELF symbol name: `.llvm.<hash>` cut,
/// every all-digit `.N` component dropped (`show.constprop.0.isra.0` becomes
/// `show.constprop.isra`, so renumbering anywhere in a clone chain is not a
/// rename), and the counter of `__UNIQUE_ID_` names trimmed.
pub fn demangle(name: &str) -> Cow<'_, str> {
    let name = match name.find(".llvm.") {
        Some(i) => &name[..i],
        None => name,
    };
    let trimmed = if name.starts_with("__UNIQUE_ID_") {
        name.trim_end_matches(|c: char| c.is_ascii_digit())
    } else {
        name
    };
    if !trimmed.contains('.') {
        return Cow::Borrowed(trimmed);
    }
    let mut parts = trimmed.split('.');
    let mut out = String::with_capacity(trimmed.len());
    out.push_str(parts.next().unwrap_or_default());
    for part in parts {
        if !part.is_empty() && !part.bytes().all(|b| b.is_ascii_digit()) {
            out.push('.');
            out.push_str(part);
        }
    }
    if out.is_empty() {
        return Cow::Borrowed(trimmed);
    }
    Cow::Owned(out)
}

/// If `name` is a `.cold` part split off a function (`foo.cold`,
/// `foo.cold.7`, `foo.part.0.cold`), the parent's exact name.
pub fn cold_parent(name: &str) -> Option<&str> {
    let name = match name.find(".llvm.") {
        Some(i) => &name[..i],
        None => name,
    };
    let i = name.rfind(".cold")?;
    let rest = &name[i + ".cold".len()..];
    let numbered = rest.is_empty()
        || rest
            .strip_prefix('.')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    (numbered && i > 0).then(|| &name[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_clone_counters_and_llvm_hashes() {
        assert_eq!(demangle("foo.constprop.0"), "foo.constprop");
        assert_eq!(demangle("foo.isra.12"), "foo.isra");
        assert_eq!(demangle("foo.part.3.cold"), "foo.part.cold");
        assert_eq!(demangle("show.constprop.0.isra.0"), "show.constprop.isra");
        assert_eq!(demangle("CSWTCH.4"), "CSWTCH");
        assert_eq!(demangle("__func__.3"), "__func__");
        assert_eq!(demangle("foo.cold"), "foo.cold");
        assert_eq!(demangle("foo.cold.7"), "foo.cold");
        assert_eq!(demangle("bar.llvm.1234567"), "bar");
        assert_eq!(demangle("__UNIQUE_ID_ddebug417"), "__UNIQUE_ID_ddebug");
        assert_eq!(demangle("__already_done.0"), "__already_done");
        assert_eq!(demangle("cmdline_proc_show"), "cmdline_proc_show");
        assert_eq!(demangle("func_2"), "func_2");
    }

    #[test]
    fn finds_cold_parents() {
        assert_eq!(cold_parent("foo.cold"), Some("foo"));
        assert_eq!(cold_parent("foo.cold.7"), Some("foo"));
        assert_eq!(cold_parent("foo.part.0.cold"), Some("foo.part.0"));
        assert_eq!(cold_parent("cold"), None);
        assert_eq!(cold_parent("foo"), None);
    }
}
