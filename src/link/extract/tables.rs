//! Special sections whose entries describe code: they travel with the
//! copied code, entry by entry, so that the livepatch module's loader does
//! for the new code what the kernel did for the old: ftrace call sites
//! (`__mcount_loc`), static keys (`__jump_table`), static calls,
//! alternatives (with their replacement pieces), exception and bug tables,
//! SMP lock prefixes, paravirt sites, retpoline/return thunk sites and ORC,
//! and, where objtool runs on the livepatch module, the annotations it
//! reads there.
//!
//! An entry belongs to the code its first field points at. An entry's size
//! is the section's `sh_entsize` where it has one (objtool sets it on the
//! tables it writes); otherwise it is inferred from the relocation layout
//! ([`entry_size`]), as for checksums. That inference cannot tell one entry
//! whose fields are all relocated (a static call site) from several
//! entries, which is why `sh_entsize` comes first. `.orc_unwind` is split by
//! the number of `.orc_unwind_ip` entries.
//! Which tables are carried and which dropped is
//! [`crate::special_sections`]'s table, shared with the checksums. A section
//! that is not data, refers to copied code and is not carried or dropped
//! there makes klp-link refuse: dropping entries it does not understand
//! could leave the new code broken in ways no test shows.

use std::collections::{BTreeSet, HashMap};

use object::write::SectionId;

use super::{Copier, ExtractError};
use crate::elf::{Section, SectionIndex, SectionKind as Kind, SymType, SymbolIndex};
use crate::special_sections::{
    entry_size, is_export_table, lookup, read_by_module_objtool, written_by_module_objtool, InPatch,
};

/// More relocations than any known kernel table has per entry: a table whose
/// inferred entry is the whole section but holds more is irregular, and its
/// entries cannot be told apart.
const MAX_RELOCS_PER_ENTRY: usize = 4;

/// Whether `symbol`, a key in table `table`, belongs to a tracepoint. A
/// tracepoint in a module-local key can be left off (its site stays a NOP,
/// its static call goes through the trampoline); any other key cannot.
fn is_tracepoint_key(table: &str, symbol: &str) -> bool {
    match table {
        "__jump_table" => symbol.starts_with("__tracepoint_"),
        ".static_call_sites" => symbol.starts_with("__SCK__tp_func_"),
        _ => false,
    }
}

/// Why klp-link will not carry the entries of table `name` about `at`.
fn refusal(at: &str, name: &str) -> String {
    // x86 runtime constants (6.11+): the code holds a placeholder that
    // vmlinux overwrites once at boot with the value of `sym`; nothing does
    // that for a module, whose own headers read the variable instead.
    let constant = ["runtime_ptr_", "runtime_shift_", "runtime_mask_"]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix));
    match constant {
        Some(sym) => format!(
            "`{at}` uses the runtime constant `{sym}` ({name}): vmlinux writes its value into \
             the code once at boot, and a copy in a module would keep the placeholder. \
             klp-link cannot patch such a function yet (on x86: access_ok(), get_user() and \
             put_user() via USER_PTR_MAX, the dentry hash): write the fix so that it leaves \
             such functions unchanged"
        ),
        None => format!(
            "`{at}` has {name} entries, a table klp-link does not know; refusing rather than \
             dropping them"
        ),
    }
}

/// Whether section `name` is a table of entries about code (carried or
/// dropped), rather than code or data.
pub(super) fn is_special(name: &str) -> bool {
    lookup(name).is_some_and(|s| s.patch != InPatch::Refused)
}

/// The size of one entry of `table`.
fn table_entry_size(table: &Section) -> u64 {
    entry_size(table.size, table.entsize, &table.relocs)
}

/// The tables carried so far: their output sections and which entries.
#[derive(Default)]
pub(super) struct CarriedTables {
    by_table: HashMap<SectionIndex, TableCopy>,
}

struct TableCopy {
    id: SectionId,
    /// The `.orc_unwind` copy, for `.orc_unwind_ip`.
    orc: Option<SectionId>,
    entries: BTreeSet<u64>,
}

impl Copier<'_, '_> {
    /// Carries the entries of every table that point into copied code, until
    /// no more do: entries can bring in pieces (an alternative's
    /// replacement) that other tables have entries about.
    pub(super) fn carry_tables(&mut self) -> Result<(), ExtractError> {
        loop {
            let mut carried_any = false;
            for t in self.index.sections.indices() {
                if !self.is_table(t) {
                    continue;
                }
                let name = self.index.sections[t].name;
                let objtool_reads = self.kernel.objtool_on_modules && read_by_module_objtool(name);
                let fate = lookup(name).map_or(InPatch::Refused, |s| s.patch);
                if (fate == InPatch::Dropped && !objtool_reads)
                    || is_export_table(name)
                    || (self.kernel.objtool_on_modules && written_by_module_objtool(name))
                {
                    continue;
                }
                let owned = self.owned_entries(t)?;
                if owned.is_empty() {
                    continue;
                }
                if fate == InPatch::Refused {
                    let (at, _) = self.owner_of(t, owned[0]);
                    return Err(self.refuse(refusal(at, name)));
                }
                self.carry(t, &owned)?;
                carried_any = true;
            }
            self.translate_pending()?;
            if !carried_any {
                return Ok(());
            }
        }
    }

    /// A loaded, non-code section with relocations and no named data: a
    /// table of entries, unless the copied code reads it as a whole. The
    /// annotations objtool reads are tables too, though never loaded, and
    /// though `STACK_FRAME_NON_STANDARD` names each entry: no code reads them.
    fn is_table(&self, t: SectionIndex) -> bool {
        let s = &self.index.sections[t];
        let annotation = read_by_module_objtool(s.name);
        let kind_ok = match s.kind {
            Kind::Code | Kind::Bss => false,
            Kind::NotAlloc => annotation,
            _ => true,
        };
        !s.relocs.is_empty()
            && kind_ok
            && !self.copied.contains_key(&t)
            && (annotation
                || !s
                    .named
                    .iter()
                    .any(|&i| self.index.symbols[i].sym_type == SymType::Object))
    }

    /// The entries of table `t` not carried yet whose first field points
    /// into copied code.
    fn owned_entries(&self, t: SectionIndex) -> Result<Vec<u64>, ExtractError> {
        let table = &self.index.sections[t];
        let size = table_entry_size(table);
        let done = self.tables.by_table.get(&t).map(|c| &c.entries);
        let mut owned = Vec::new();
        for r in &table.relocs {
            if r.offset % size != 0 || !self.points_into_copied_code(r.symbol, r.addend) {
                continue;
            }
            let k = r.offset / size;
            if !done.is_some_and(|d| d.contains(&k)) {
                owned.push(k);
            }
        }
        owned.dedup();
        if !owned.is_empty() && size == table.size && table.relocs.len() > MAX_RELOCS_PER_ENTRY {
            let (at, _) = self.owner_of(t, owned[0]);
            return Err(self.refuse(format!(
                "`{at}` has entries in {}, whose entries klp-link cannot tell apart (no regular \
                 relocation layout)",
                table.name
            )));
        }
        Ok(owned)
    }

    fn points_into_copied_code(&self, sym: SymbolIndex, addend: i64) -> bool {
        let s = &self.index.symbols[sym];
        let Some(sec) = s.section else { return false };
        if self.index.sections[sec].kind != Kind::Code {
            return false;
        }
        let at = s.value.wrapping_add(addend as u64);
        self.copied.contains_key(&sec) || self.pieces.find(sec, at).is_some()
    }

    /// The function entry `k` of table `t` is about, for messages.
    fn owner_of(&self, t: SectionIndex, k: u64) -> (&str, u64) {
        let index = self.index;
        let table = &index.sections[t];
        let size = table_entry_size(table);
        let r = index.relocs_in(t, k * size, k * size + 1)[0];
        let s = &index.symbols[r.symbol];
        let at = s.value.wrapping_add(r.addend as u64);
        let name = s.section.and_then(|sec| index.symbol_at(sec, at)).map_or(
            index.sections[s.section.unwrap_or(SectionIndex(0))].name,
            |f| index.symbols[f].name,
        );
        (name, at)
    }

    /// Copies entries `entries` of table `t` (and their `.orc_unwind`
    /// partners) and translates their relocations.
    fn carry(&mut self, t: SectionIndex, entries: &[u64]) -> Result<(), ExtractError> {
        let index = self.index;
        let table = &index.sections[t];
        let size = table_entry_size(table);
        let orc = self.orc_partner(t, size)?;
        if !self.tables.by_table.contains_key(&t) {
            let id = self.add_section_like(t, table.name)?;
            let orc_id = match orc {
                Some((o, _)) => Some(self.add_section_like(o, ".orc_unwind")?),
                None => None,
            };
            self.tables.by_table.insert(
                t,
                TableCopy {
                    id,
                    orc: orc_id,
                    entries: BTreeSet::new(),
                },
            );
        }
        let (id, orc_id) = {
            let c = &self.tables.by_table[&t];
            (c.id, c.orc)
        };
        self.in_table = true;
        self.carrying = Some(t);
        for &k in entries {
            let start = k * size;
            // Translate first: an entry that cannot be carried must leave
            // nothing behind.
            let mut relocs = Vec::new();
            let mut dropped = None;
            for r in index.relocs_in(t, start, start + size) {
                match self.target(r.symbol, r.addend, 0) {
                    Ok((symbol, addend)) => {
                        relocs.push((r.offset - start, symbol, addend, r.r_type))
                    }
                    Err(ExtractError::LoadTimeModuleReference { symbol, module, .. })
                        if is_tracepoint_key(table.name, &symbol) =>
                    {
                        dropped = Some((symbol, module));
                        break;
                    }
                    Err(e) => {
                        self.in_table = false;
                        self.carrying = None;
                        return Err(e);
                    }
                }
            }
            let copy = self.tables.by_table.get_mut(&t).expect("inserted above");
            let first = copy.entries.is_empty();
            copy.entries.insert(k);
            if let Some((symbol, module)) = dropped {
                let (at, _) = self.owner_of(t, k);
                let note = format!(
                    "{}: the tracepoint behind `{symbol}` in `{at}` stays off in the livepatch: \
                     its key lives in module {module}, which the module loader cannot reach in time",
                    self.source.object_name
                );
                self.notes.push(note);
                continue;
            }
            let align = if first { table.align.max(1) } else { 1 };
            let out = self.out.append_section_data(
                id,
                &table.data[start as usize..(start + size) as usize],
                align,
            );
            for (offset, symbol, addend, r_type) in relocs {
                self.add_relocation(id, out + offset, symbol, addend, r_type)?;
            }
            if let (Some((o, orc_size)), Some(orc_id)) = (orc, orc_id) {
                let src = &index.sections[o];
                let from = (k * orc_size) as usize;
                let align = if first { src.align.max(1) } else { 1 };
                self.out.append_section_data(
                    orc_id,
                    &src.data[from..from + orc_size as usize],
                    align,
                );
            }
        }
        self.in_table = false;
        self.carrying = None;
        Ok(())
    }

    /// For `.orc_unwind_ip`: the `.orc_unwind` section, whose entries
    /// parallel its entries, and the size of one of them.
    fn orc_partner(
        &self,
        t: SectionIndex,
        size: u64,
    ) -> Result<Option<(SectionIndex, u64)>, ExtractError> {
        let index = self.index;
        if index.sections[t].name != ".orc_unwind_ip" {
            return Ok(None);
        }
        let count = index.sections[t].size / size;
        let (o, _) = index
            .sections
            .enumerate()
            .find(|(_, s)| s.name == ".orc_unwind")
            .ok_or_else(|| self.malformed("it has .orc_unwind_ip but no .orc_unwind".into()))?;
        let orc = &index.sections[o];
        if count == 0 || orc.size % count != 0 || orc.data.len() as u64 != orc.size {
            return Err(self.malformed(format!(
                ".orc_unwind ({} bytes) does not split into the {count} entries of \
                 .orc_unwind_ip",
                orc.size
            )));
        }
        Ok(Some((o, orc.size / count)))
    }
}
