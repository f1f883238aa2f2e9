//! Compiler-generated name suffixes that change when unrelated code changes
//! (`foo.constprop.0` becoming `foo.constprop.1`, `.llvm.<hash>`, the counter
//! in `__UNIQUE_ID_x123`) are removed, so names can be compared across builds.

/// Returns the demangled form of an ELF symbol name (DESIGN §3).
pub fn demangle(name: &str) -> &str {
    let name = match name.find(".llvm.") {
        Some(i) => &name[..i],
        None => name,
    };
    if name.contains('.') || name.starts_with("__UNIQUE_ID_") {
        let trimmed = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.' || c == '_');
        // A name made only of those characters has nothing left to compare by.
        if !trimmed.is_empty() {
            return trimmed;
        }
    }
    name
}

/// If `name` is a `.cold` part split off a function, the parent's name.
pub fn cold_parent(name: &str) -> Option<&str> {
    let base = demangle(name);
    base.strip_suffix(".cold").filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_clone_counters_and_llvm_hashes() {
        assert_eq!(demangle("foo.constprop.0"), "foo.constprop");
        assert_eq!(demangle("foo.isra.12"), "foo.isra");
        assert_eq!(demangle("foo.part.3.cold"), "foo.part.3.cold");
        assert_eq!(demangle("foo.cold"), "foo.cold");
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
