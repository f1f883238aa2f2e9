//! Compiler-generated name suffixes that change when unrelated code changes
//! (`foo.constprop.0` becoming `foo.constprop.1`, `.llvm.<hash>`, the counter
//! in `__UNIQUE_ID_x123`) are removed, so names can be compared across builds.
//!
//! The kernel's `__UNIQUE_ID(prefix)` pastes `__COUNTER__` straight onto the
//! prefix (`__UNIQUE_ID_ddebug412`, `__UNIQUE_ID___addressable_foo123`), and
//! the compiler may wrap the result like any static local: gcc appends `.N`
//! (`__UNIQUE_ID_ddebug412.5`), clang prepends the function
//! (`show.__UNIQUE_ID_ddebug412`). So every dot-separated component that
//! starts with `__UNIQUE_ID_` loses its trailing digits. Nothing marks where
//! the prefix ends and the counter begins, so a prefix that ends in digits
//! loses them too (`__UNIQUE_ID___addressable_foo2` + counter 7 becomes
//! `__UNIQUE_ID___addressable_foo`, like `foo`'s): any shorter cut would let a
//! counter that grew a digit rename the symbol. Symbols that share a demangled
//! name this way are told apart by their exact names, which the checksums
//! record and klp-link matches across builds (see `clones=` in the manifest).
use std::borrow::Cow;

/// The marker of names made by the kernel's `__UNIQUE_ID(prefix)`.
const UNIQUE_ID: &str = "__UNIQUE_ID_";

/// Returns the demangled form of an ELF symbol name: `.llvm.<hash>` cut,
/// every all-digit `.N` component dropped (`show.constprop.0.isra.0` becomes
/// `show.constprop.isra`, so renumbering anywhere in a clone chain is not a
/// rename), and the counter of each `__UNIQUE_ID_` component trimmed.
pub fn demangle(name: &str) -> Cow<'_, str> {
    let name = match name.find(".llvm.") {
        Some(i) => &name[..i],
        None => name,
    };
    if !name.contains('.') && !name.contains(UNIQUE_ID) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len());
    for (i, part) in name.split('.').enumerate() {
        let part = if part.starts_with(UNIQUE_ID) {
            part.trim_end_matches(|c: char| c.is_ascii_digit())
        } else {
            part
        };
        if i == 0 {
            out.push_str(part);
        } else if !part.is_empty() && !part.bytes().all(|b| b.is_ascii_digit()) {
            out.push('.');
            out.push_str(part);
        }
    }
    if out.is_empty() || out == name {
        return Cow::Borrowed(name);
    }
    Cow::Owned(out)
}

/// Whether `name` holds a `__UNIQUE_ID()` counter, which [`demangle`] trims.
pub fn has_unique_id(name: &str) -> bool {
    name.split('.').any(|part| part.starts_with(UNIQUE_ID))
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
        assert_eq!(demangle("__UNIQUE_ID_"), "__UNIQUE_ID_");
        assert_eq!(demangle("__already_done.0"), "__already_done");
        assert_eq!(demangle("cmdline_proc_show"), "cmdline_proc_show");
        assert_eq!(demangle("func_2"), "func_2");
    }

    #[test]
    fn trims_unique_id_counters_wherever_the_compiler_puts_them() {
        // gcc numbers function-local statics, clang prefixes the function.
        assert_eq!(demangle("__UNIQUE_ID_ddebug412.5"), "__UNIQUE_ID_ddebug");
        assert_eq!(
            demangle("show.__UNIQUE_ID_ddebug412"),
            "show.__UNIQUE_ID_ddebug"
        );
        assert_eq!(
            demangle("__UNIQUE_ID___addressable_foo123"),
            "__UNIQUE_ID___addressable_foo"
        );
        assert_eq!(
            demangle("__UNIQUE_ID_modinfo_license17"),
            "__UNIQUE_ID_modinfo_license"
        );
        assert_eq!(demangle("__UNIQUE_ID___x43"), "__UNIQUE_ID___x");
        assert_eq!(
            demangle(".data.__UNIQUE_ID_rcu7.2"),
            ".data.__UNIQUE_ID_rcu"
        );
        // The counter cannot be told from a prefix's own trailing digits.
        assert_eq!(
            demangle("__UNIQUE_ID___addressable_foo27"),
            demangle("__UNIQUE_ID___addressable_foo123")
        );
        // Only a component that starts with the marker carries a counter.
        assert_eq!(demangle("x__UNIQUE_ID_a1"), "x__UNIQUE_ID_a1");
        assert!(has_unique_id("show.__UNIQUE_ID_ddebug4"));
        assert!(has_unique_id("__UNIQUE_ID_ddebug4.1"));
        assert!(!has_unique_id("foo.constprop.0"));
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
