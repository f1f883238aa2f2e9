//! Objects that belong to one call site of the function that refers to
//! them rather than being state of the kernel: a dynamic-debug descriptor,
//! a ratelimit state, a warn-once flag. The compare counts their changes as
//! the referring function's, and the extraction gives a copied function
//! its own (or, for a once-flag whose site maps one to one, the running
//! kernel's).

/// Static locals that each belong to one call site, by demangled name:
/// warn-once flags, lockdep keys, `__func__`, ratelimit state, and the
/// dynamic-debug descriptor of kernels before `__UNIQUE_ID` naming.
const CALLSITE_STATICS: &[&str] = &[
    "__already_done",
    "__warned",
    "__key",
    "__func__",
    "_rs",
    "__print_once",
    "descriptor",
];

/// Sections whose objects each describe one call site: dynamic-debug
/// descriptors (`__verbose` before Linux 2.6.30's rename) and printk index
/// entries.
const CALLSITE_SECTIONS: &[&str] = &["__dyndbg", "__verbose", ".printk_index"];

/// Whether a data object (its demangled name, its section) belongs to one
/// call site of the function that refers to it, rather than being state
/// of the running kernel.
pub fn is_callsite_metadata(demangled: &str, section: &str) -> bool {
    CALLSITE_STATICS.contains(&own_name(demangled)) || is_callsite_section(section)
}

/// Whether `section` holds one call site's metadata per object.
fn is_callsite_section(section: &str) -> bool {
    CALLSITE_SECTIONS.iter().any(|p| {
        section
            .strip_prefix(p)
            .is_some_and(|r| r.is_empty() || r.starts_with('.'))
    })
}

/// The last dot-separated part of a demangled name: clang names a static
/// local after its function (`show._rs`), gcc numbers it (`_rs.12`, which
/// demangling already dropped).
fn own_name(demangled: &str) -> &str {
    demangled.rsplit('.').next().unwrap_or(demangled)
}

/// Static locals that remember that their site has fired:
/// `DO_ONCE_LITE()` (`WARN_ONCE()`, `pr_*_once()`), `VM_WARN_ONCE()`,
/// `dev_*_once()`.
const ONCE_FLAGS: &[&str] = &["__already_done", "__warned", "__print_once"];

/// Whether a data object (demangled name, section) is a once-flag: one
/// call site's "already fired" state. Sharing the running kernel's keeps a
/// warning that already fired from firing again after patching.
pub fn is_once_flag(demangled: &str, section: &str) -> bool {
    ONCE_FLAGS.contains(&own_name(demangled)) || matches!(section, ".data.once" | ".data..once")
}
