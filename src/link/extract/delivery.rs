//! Which functions of a patched object the livepatch copies, and which of
//! them replace the running kernel's. Livepatch hooks a function through the
//! `__fentry__` call ftrace records at its start; a changed function without
//! one (`notrace`, `noinstr`, an out-of-line static inline such as every
//! `__do_sys_NAME` syscall body) is copied, and its callers in the same
//! object replace the running kernel's callers to reach the copy. A
//! function that something else could still reach the old way is refused.

use std::collections::BTreeSet;

use crate::arch::{x86_64::X86_64, Arch as _, Insn};
use object::elf;

use super::{tables, Copier, ExtractError};
use crate::elf::demangle::cold_parent;
use crate::elf::{DefinedFunction, SectionKind as Kind, SymType};

/// The functions of one source to copy, and how each is delivered.
pub(super) struct Replaced {
    pub(super) name: String,
    /// Replaces the running kernel's function (else only copied: new, or
    /// reached through a replaced caller).
    pub(super) replaces: bool,
    pub(super) delivers: Option<String>,
}

impl Copier<'_, '_> {
    /// The functions to copy: the changed and new ones, plus callers that
    /// deliver a changed function livepatch cannot hook.
    pub(super) fn replaced_functions(&self) -> Result<Vec<Replaced>, ExtractError> {
        let mut all: Vec<Replaced> = self
            .source
            .changed
            .iter()
            .map(|f| Replaced {
                name: f.clone(),
                replaces: true,
                delivers: None,
            })
            .chain(self.source.new.iter().map(|f| Replaced {
                name: f.clone(),
                replaces: false,
                delivers: None,
            }))
            .collect();
        let mut i = 0;
        while i < all.len() {
            if all[i].replaces && !self.hookable(self.function(&all[i].name)?) {
                all[i].replaces = false;
                let origin = all[i].delivers.clone().unwrap_or(all[i].name.clone());
                for caller in self.callers_to_deliver(&all[i].name)? {
                    // A caller already copied calls the new copy anyway.
                    if all.iter().all(|r| r.name != caller) {
                        all.push(Replaced {
                            name: caller,
                            replaces: true,
                            delivers: Some(origin.clone()),
                        });
                    }
                }
            }
            i += 1;
        }
        Ok(all)
    }

    /// Whether livepatch can hook function `f`: ftrace records a call site
    /// at its start (an `__mcount_loc` or `__patchable_function_entries`
    /// entry into its first bytes).
    fn hookable(&self, f: DefinedFunction) -> bool {
        let index = self.index;
        let (sec, start) = (f.section(), f.start());
        index.sections.enumerate().any(|(t, table)| {
            matches!(table.name, "__mcount_loc" | "__patchable_function_entries")
                && index.relocs_in(t, 0, table.size).iter().any(|r| {
                    let target = &index.symbols[r.symbol];
                    let at = target.value.wrapping_add(r.addend as u64);
                    // The call follows an ENDBR at most.
                    target.section == Some(sec) && at >= start && at < start.saturating_add(8)
                })
        })
    }

    /// The functions of this object that call `name`, which livepatch
    /// cannot hook: replacing them delivers the new `name`. Refuses when
    /// the running kernel could reach it some other way.
    fn callers_to_deliver(&self, name: &str) -> Result<Vec<String>, ExtractError> {
        let index = self.index;
        let f = self.function(name)?;
        let s = &index.symbols[f.symbol()];
        let why = "it has no __fentry__ call (notrace, noinstr, an out-of-line static inline, or \
                   a file built without -pg), so livepatch cannot hook it";
        if s.binding != elf::STB_LOCAL.0 {
            return Err(self.refuse(format!(
                "`{name}` changed, but {why}; it is global, so callers in other objects may \
                 reach it: change it so that it can be traced, or patch its callers"
            )));
        }
        let sec = f.section();
        let inside = |at: u64| (f.start()..f.end()).contains(&at);
        let mut callers = BTreeSet::new();
        for (c, code) in index.sections.enumerate() {
            if tables::is_special(code.name) || code.kind == Kind::NotAlloc {
                continue;
            }
            // Decoded once per section: the references are few, the
            // section may be large.
            let insns: Vec<Insn> = if code.kind == Kind::Code {
                X86_64.decode(code.data, 0).collect()
            } else {
                Vec::new()
            };
            let insn_at = |at: u64| {
                let i = insns.partition_point(|i| i.end() <= at);
                insns.get(i).filter(|i| i.ip <= at)
            };
            // Every place of this section that refers into `f`, and whether
            // it is the operand of a direct call or jump: relocated ones,
            // and in `f`'s own section those the assembler resolved.
            let mut refs: Vec<(u64, bool)> = Vec::new();
            for r in &code.relocs {
                let t = &index.symbols[r.symbol];
                if t.section != Some(sec) {
                    continue;
                }
                let insn = insn_at(r.offset);
                let bias = match insn {
                    Some(i) if r.pc_relative => i.end() - r.offset,
                    _ => 0,
                };
                if inside(t.value.wrapping_add(r.addend as u64).wrapping_add(bias)) {
                    refs.push((
                        r.offset,
                        insn.is_some_and(|i| i.is_branch_field(r.offset, 1)),
                    ));
                }
            }
            if c == sec {
                for i in insns.iter().filter(|i| !inside(i.ip)) {
                    if let Some(b) = i.branch.filter(|b| inside(b.target)) {
                        refs.push((i.ip + u64::from(b.field.offset), true));
                    }
                    if let Some(d) = i.displacement.filter(|d| d.pc_target.is_some_and(inside)) {
                        refs.push((i.ip + u64::from(d.field.offset), false));
                    }
                }
                refs.sort_unstable();
                refs.dedup_by_key(|r| r.0);
            }
            for (at, direct) in refs {
                if c == sec && inside(at) {
                    continue;
                }
                let caller = index
                    .symbol_at(c, at)
                    .filter(|&i| {
                        code.kind == Kind::Code && index.symbols[i].sym_type == SymType::Func
                    })
                    .map(|i| index.symbols[i].name);
                let Some(caller) = caller else {
                    return Err(self.refuse(format!(
                        "`{name}` changed, but {why}; {}+{at:#x} refers to it, so the running \
                         kernel may reach the old copy through it: klp-link cannot deliver this \
                         change",
                        code.name
                    )));
                };
                // Only a direct call or jump is delivered by replacing the
                // caller: a taken address (a timer or work callback, an ops
                // table filled at run time) keeps reaching the old copy.
                if !direct {
                    return Err(self.refuse(format!(
                        "`{name}` changed, but {why}; `{caller}` takes its address (at \
                         {}+{at:#x}), so the running kernel may keep calling the old copy: \
                         klp-link cannot deliver this change",
                        code.name
                    )));
                }
                callers.insert(cold_parent(caller).unwrap_or(caller).to_owned());
            }
        }
        if callers.is_empty() {
            return Err(self.refuse(format!(
                "`{name}` changed, but {why}, and nothing in this object calls it"
            )));
        }
        Ok(callers.into_iter().collect())
    }
}
