//! Which once-flags a copied function shares with the running kernel.
//!
//! A `WARN_ONCE()` or `pr_warn_once()` site keeps "already fired" in a
//! static flag. A copy of the function with a fresh flag fires again after
//! patching; with the running kernel's flag it stays quiet, as the site
//! would have. The flag is shared only when the site maps one to one: the
//! same function has the same number of once-sites in both builds, and the
//! flag is the one at the same position in the order its code refers to
//! them. Every function that refers to a flag must agree; otherwise, and
//! for a function the original build does not have, the copy gets a fresh
//! flag, as before this existed.

use std::collections::BTreeMap;

use crate::checksum::{SymbolKind, SymbolRecord};

/// What the patch does with one once-flag of the patched build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnceChoice {
    /// The running kernel's flag of this name (in the same source file).
    Shared { running: String },
    /// The patch's own, fresh flag, and why.
    Fresh { why: String },
}

/// Each once-flag the patched functions of one object refer to (by exact
/// name in the patched object), with what the patch does with it.
pub fn pair(orig: &[SymbolRecord], patched: &[SymbolRecord]) -> BTreeMap<String, OnceChoice> {
    let mut out: BTreeMap<String, OnceChoice> = BTreeMap::new();
    let sites = |s: &&SymbolRecord| s.kind == SymbolKind::Func && !s.once_flags.is_empty();
    for p in patched.iter().filter(sites) {
        let o = orig
            .iter()
            .find(|o| o.kind == SymbolKind::Func && o.name == p.name && o.file == p.file);
        for (i, flag) in p.once_flags.iter().enumerate() {
            let choice = match o {
                Some(o) if o.once_flags.len() == p.once_flags.len() => OnceChoice::Shared {
                    running: o.once_flags[i].clone(),
                },
                Some(o) => OnceChoice::Fresh {
                    why: format!(
                        "`{}` has {} once-sites, the original {}",
                        p.name,
                        p.once_flags.len(),
                        o.once_flags.len()
                    ),
                },
                None => OnceChoice::Fresh {
                    why: format!("the original build has no `{}`", p.name),
                },
            };
            match out.get(flag) {
                Some(seen) if *seen != choice => {
                    let why = match (seen, &choice) {
                        (OnceChoice::Fresh { why }, _) | (_, OnceChoice::Fresh { why }) => {
                            why.clone()
                        }
                        _ => "the functions that use it map it to different sites".to_owned(),
                    };
                    out.insert(flag.clone(), OnceChoice::Fresh { why });
                }
                Some(_) => {}
                None => {
                    out.insert(flag.clone(), choice);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::Binding;

    fn func(name: &str, once: &[&str]) -> SymbolRecord {
        SymbolRecord {
            kind: SymbolKind::Func,
            checksum: 0,
            lines: None,
            binding: Binding::Global,
            size: 1,
            section: format!(".text.{name}"),
            name: name.into(),
            demangled: name.into(),
            file: None,
            parent: None,
            clone_refs: Vec::new(),
            once_flags: once.iter().map(|s| s.to_string()).collect(),
            line_sites: Vec::new(),
        }
    }

    fn shared(running: &str) -> OnceChoice {
        OnceChoice::Shared {
            running: running.into(),
        }
    }

    #[test]
    fn sites_at_the_same_positions_share_the_running_flags() {
        let orig = [func("f", &["a.2", "a.1"]), func("g", &["a.0"])];
        let patched = [func("f", &["a.5", "a.4"]), func("g", &["a.3"])];
        let m = pair(&orig, &patched);
        assert_eq!(m["a.5"], shared("a.2"));
        assert_eq!(m["a.4"], shared("a.1"));
        assert_eq!(m["a.3"], shared("a.0"));
    }

    #[test]
    fn a_different_count_a_new_function_or_a_disagreement_is_fresh() {
        let orig = [
            func("f", &["a.1"]),
            func("g", &["a.0"]),
            func("h", &["a.2"]),
        ];
        let patched = [
            // f gained a site: both of its flags are fresh.
            func("f", &["a.1", "a.9"]),
            // n is new.
            func("n", &["a.8"]),
            // g and h share one flag (a static inline's), mapped to two
            // different running ones.
            func("g", &["a.7"]),
            func("h", &["a.7"]),
        ];
        let m = pair(&orig, &patched);
        for flag in ["a.1", "a.9", "a.8", "a.7"] {
            assert!(
                matches!(m[flag], OnceChoice::Fresh { .. }),
                "{flag}: {:?}",
                m[flag]
            );
        }
        let OnceChoice::Fresh { why } = &m["a.1"] else {
            unreachable!()
        };
        assert!(why.contains("2 once-sites, the original 1"), "{why}");
    }
}
