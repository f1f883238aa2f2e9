//! Copies the changed and new functions out of the patched objects into one
//! relocatable patch object.
//!
//! Each function's section is copied as it is (with its `.cold` part), and
//! so is what it needs that the running kernel cannot provide: string
//! literals, constant pools, unnamed tables, local constants, fresh static
//! flags (`__already_done`, ...) and data that is new. Every other reference
//! goes to the running kernel: a normal relocation when the symbol is
//! exported (resolved at load), otherwise a reference to an undefined symbol
//! `.klp.sym.<target>.<name>,<sympos>`, which the post-link rewrite
//! ([`super::klp_rewrite`]) turns into a klp relocation.
//!
//! The entries of `__mcount_loc`, ORC and return/retpoline site tables that
//! point into copied functions travel with them. Entries of tables this code
//! cannot carry yet (jump labels, bug and exception tables, alternatives,
//! static calls, ...) make it refuse, naming the function.

use std::collections::{BTreeSet, HashMap};

use object::write::{Object, Relocation, Symbol, SymbolId, SymbolSection};
use object::{
    elf, Architecture, BinaryFormat, Endianness, RelocationFlags, SectionFlags, SectionKind,
    SymbolFlags, SymbolKind, SymbolScope,
};

use super::sympos::Positions;
use super::symvers::Exports;
use crate::checksum::demangle::demangle;
use crate::checksum::elf_index::{ElfIndex, SectionKind as Kind, SymType};
use crate::checksum::tables::entry_size;

/// Static locals that each copy of a function is meant to have afresh
/// (warn-once flags, lockdep keys, `__func__`, ratelimit state).
const FRESH_STATICS: &[&str] = &[
    "__already_done",
    "__warned",
    "__key",
    "__func__",
    "_rs",
    "__print_once",
    "descriptor",
];

/// Tables whose entries about a copied function are copied with it.
const CARRIED_TABLES: &[&str] = &[
    "__mcount_loc",
    ".return_sites",
    ".retpoline_sites",
    ".call_sites",
    ".orc_unwind_ip",
];

/// Tables that mean something this extraction cannot carry yet.
const REFUSED_TABLES: &[&str] = &[
    "__jump_table",
    "__bug_table",
    "__ex_table",
    ".altinstructions",
    ".parainstructions",
    ".static_call_sites",
    ".smp_locks",
    "__patchable_function_entries",
];

/// The offsets at which instructions of `code` end, ascending.
fn instruction_ends(code: &[u8]) -> Vec<u64> {
    let mut decoder = iced_x86::Decoder::with_ip(64, code, 0, iced_x86::DecoderOptions::NONE);
    let mut ends = Vec::new();
    while decoder.can_decode() {
        let insn = decoder.decode();
        ends.push(insn.next_ip());
    }
    ends
}

/// One function to replace, for the registration code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KlpFunc {
    pub target: String,
    pub old_name: String,
    /// The global symbol of the new copy in the patch object.
    pub new_symbol: String,
    pub sympos: u64,
}

/// What to copy from one patched object.
pub struct Source<'a> {
    pub target: &'a str,
    pub object_name: String,
    pub data: &'a [u8],
    /// Functions that changed (replace the running kernel's) and are new
    /// (only copied), by their names in the patched object.
    pub changed: Vec<String>,
    pub new: Vec<String>,
    /// Data objects that are new in the patched object (copied, not shared).
    pub new_data: BTreeSet<String>,
}

/// The running kernel, as far as references from patched code need it.
pub struct RunningKernel<'a> {
    pub exports: &'a Exports,
    /// Symbols of each target, for sympos.
    pub positions: &'a HashMap<String, Positions>,
}

pub struct Extracted {
    pub object: Vec<u8>,
    pub funcs: Vec<KlpFunc>,
}

/// Copies everything `sources` ask for into one patch object.
pub fn extract(sources: &[Source], kernel: &RunningKernel) -> Result<Extracted, String> {
    let mut out = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let mut funcs = Vec::new();
    let mut undefined: HashMap<String, SymbolId> = HashMap::new();
    for (n, source) in sources.iter().enumerate() {
        let index =
            ElfIndex::parse(source.data).map_err(|e| format!("{}: {e}", source.object_name))?;
        let mut copier = Copier {
            index: &index,
            source,
            kernel,
            out: &mut out,
            undefined: &mut undefined,
            copied: HashMap::new(),
            pending: Vec::new(),
        };
        funcs.extend(copier.copy_functions(n)?);
        // Refuse before resolving anything: a table entry that cannot be
        // carried is the clearer message.
        copier.copy_tables()?;
        copier.translate_pending()?;
    }
    let object = out
        .write()
        .map_err(|e| format!("writing the patch object: {e}"))?;
    Ok(Extracted { object, funcs })
}

struct Copier<'a, 'd> {
    index: &'a ElfIndex<'d>,
    source: &'a Source<'a>,
    kernel: &'a RunningKernel<'a>,
    out: &'a mut Object<'static>,
    undefined: &'a mut HashMap<String, SymbolId>,
    /// Source section index to the copy's section and section symbol.
    copied: HashMap<usize, (object::write::SectionId, SymbolId)>,
    /// Copied sections whose relocations are still to be translated.
    pending: Vec<usize>,
}

impl Copier<'_, '_> {
    fn err(&self, what: String) -> String {
        format!("{}: {what}", self.source.object_name)
    }

    fn function(&self, name: &str) -> Result<usize, String> {
        (0..self.index.symbols.len())
            .find(|&i| {
                let s = &self.index.symbols[i];
                s.sym_type == SymType::Func && s.name == name && s.section.is_some()
            })
            .ok_or_else(|| self.err(format!("no function `{name}` in the patched object")))
    }

    fn copy_functions(&mut self, n: usize) -> Result<Vec<KlpFunc>, String> {
        let mut funcs = Vec::new();
        let all: Vec<(&String, bool)> = self
            .source
            .changed
            .iter()
            .map(|f| (f, true))
            .chain(self.source.new.iter().map(|f| (f, false)))
            .collect();
        for (i, (name, replaces)) in all.into_iter().enumerate() {
            let f = self.function(name)?;
            let s = &self.index.symbols[f];
            let sec = s.section.expect("defined");
            if self.index.sections[sec].named.len() != 1 {
                return Err(self.err(format!(
                    "`{name}` shares its section {} with other symbols (built without \
                     -ffunction-sections, or placed by an attribute): it cannot be copied alone",
                    self.index.sections[sec].name
                )));
            }
            let (section_id, _) = self.copy_section(sec);
            let new_symbol = format!("__klp_new_{n}_{i}");
            // The copy under its own name (local, for stack traces) and a
            // global handle for the registration code.
            for (sym_name, scope) in [
                (s.name.to_owned(), SymbolScope::Compilation),
                (new_symbol.clone(), SymbolScope::Dynamic),
            ] {
                self.out.add_symbol(Symbol {
                    name: sym_name.into_bytes(),
                    value: s.value,
                    size: s.size,
                    kind: SymbolKind::Text,
                    scope,
                    weak: false,
                    section: SymbolSection::Section(section_id),
                    flags: SymbolFlags::None,
                });
            }
            // Its .cold parts travel with it.
            for c in 0..self.index.symbols.len() {
                let cs = &self.index.symbols[c];
                if cs.sym_type == SymType::Func
                    && crate::checksum::demangle::cold_parent(cs.name) == Some(s.name)
                {
                    if let Some(csec) = cs.section {
                        self.copy_section(csec);
                    }
                }
            }
            if replaces {
                let sympos = self.sympos(s.name, s.file, s.binding == elf::STB_LOCAL.0)?;
                funcs.push(KlpFunc {
                    target: self.source.target.to_owned(),
                    old_name: s.name.to_owned(),
                    new_symbol,
                    sympos,
                });
            }
        }
        Ok(funcs)
    }

    fn sympos(&self, name: &str, file: Option<&str>, local: bool) -> Result<u64, String> {
        let positions = self
            .kernel
            .positions
            .get(self.source.target)
            .ok_or_else(|| self.err(format!("no symbol table of `{}`", self.source.target)))?;
        positions
            .sympos(name, if local { file } else { None })
            .map_err(|e| self.err(e))
    }

    /// Copies section `sec` verbatim (once) and queues its relocations.
    fn copy_section(&mut self, sec: usize) -> (object::write::SectionId, SymbolId) {
        if let Some(&c) = self.copied.get(&sec) {
            return c;
        }
        let s = &self.index.sections[sec];
        let kind = match s.kind {
            Kind::Code => SectionKind::Text,
            Kind::Strings | Kind::Constants | Kind::ReadOnly => SectionKind::ReadOnlyData,
            Kind::Bss => SectionKind::UninitializedData,
            _ => SectionKind::Data,
        };
        let id = self
            .out
            .add_section(Vec::new(), s.name.as_bytes().to_vec(), kind);
        if s.kind == Kind::Bss {
            self.out.append_section_bss(id, s.size, s.align.max(1));
        } else {
            self.out
                .set_section_data(id, s.data.to_vec(), s.align.max(1));
        }
        self.out.section_mut(id).flags = SectionFlags::Elf {
            sh_type: elf::SectionType(s.sh_type),
            sh_flags: elf::SectionFlags(s.flags),
        };
        let sym = self.out.section_symbol(id);
        self.copied.insert(sec, (id, sym));
        self.pending.push(sec);
        (id, sym)
    }

    fn translate_pending(&mut self) -> Result<(), String> {
        while let Some(sec) = self.pending.pop() {
            let (id, _) = self.copied[&sec];
            let section = &self.index.sections[sec];
            let relocs = section.relocs.clone();
            let ends = if section.kind == Kind::Code {
                instruction_ends(section.data)
            } else {
                Vec::new()
            };
            for r in relocs {
                // A PC-relative operand means the place its instruction's end
                // plus the value points at: S + A + (end - P).
                let bias = match ends.binary_search_by(|&e| e.cmp(&r.offset)) {
                    _ if !r.pc_relative || ends.is_empty() => 0,
                    Ok(i) => ends.get(i + 1).map_or(0, |e| e - r.offset),
                    Err(i) => ends.get(i).map_or(0, |e| e - r.offset),
                };
                let (symbol, addend) = self.target(r.symbol, r.addend, bias)?;
                self.out
                    .add_relocation(
                        id,
                        Relocation {
                            offset: r.offset,
                            symbol,
                            addend,
                            flags: RelocationFlags::Elf {
                                r_type: elf::RelocationType(r.r_type),
                            },
                        },
                    )
                    .map_err(|e| self.err(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Where a relocation against `sym + addend` of the source object goes
    /// in the patch object.
    fn target(&mut self, sym: usize, addend: i64, bias: u64) -> Result<(SymbolId, i64), String> {
        let index = self.index;
        let s = &index.symbols[sym];
        let Some(sec) = s.section else {
            return self.external(s.name, addend, None, false);
        };
        let section = &index.sections[sec];
        let offset = s.value.wrapping_add(addend as u64);
        if self.copied.contains_key(&sec) {
            let (_, ssym) = self.copied[&sec];
            return Ok((ssym, offset as i64));
        }
        let place = offset.wrapping_add(bias);
        let named = if s.is_anonymous() {
            index.symbol_at(sec, place)
        } else {
            Some(sym)
        };
        match (section.kind, named) {
            (Kind::Strings | Kind::Constants, _) | (_, None) => {
                // Literals and unnamed tables: the patch has its own copy.
                let (_, ssym) = self.copy_section(sec);
                Ok((ssym, offset as i64))
            }
            (kind, Some(n)) => {
                let o = &index.symbols[n];
                let rel = offset.wrapping_sub(o.value) as i64;
                let local = o.binding == elf::STB_LOCAL.0;
                let copy = kind != Kind::Code
                    && (self.source.new_data.contains(o.name)
                        || FRESH_STATICS.contains(&demangle(o.name).as_ref())
                        || section.name.starts_with(".data..once")
                        || (local && kind == Kind::ReadOnly));
                if copy {
                    if section.named.len() > 1 {
                        return Err(self.err(format!(
                            "`{}` must be copied into the patch but shares section {} with \
                             other data",
                            o.name, section.name
                        )));
                    }
                    let (_, ssym) = self.copy_section(sec);
                    return Ok((ssym, offset as i64));
                }
                self.external(o.name, rel, o.file, local)
            }
        }
    }

    /// A reference to the running kernel's `name`.
    fn external(
        &mut self,
        name: &str,
        addend: i64,
        file: Option<&str>,
        local: bool,
    ) -> Result<(SymbolId, i64), String> {
        let target = self.source.target;
        let symbol_name = match self.kernel.exports.exporter(name) {
            Some(_) if !local => name.to_owned(),
            _ => {
                let pos = self.sympos(name, file, local)?;
                format!(".klp.sym.{target}.{name},{pos}")
            }
        };
        if let Some(&id) = self.undefined.get(&symbol_name) {
            return Ok((id, addend));
        }
        let id = self.out.add_symbol(Symbol {
            name: symbol_name.clone().into_bytes(),
            value: 0,
            size: 0,
            kind: SymbolKind::Unknown,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Undefined,
            flags: SymbolFlags::None,
        });
        self.undefined.insert(symbol_name, id);
        Ok((id, addend))
    }

    /// Copies the entries of site tables that point into copied code, and
    /// refuses when a table it cannot carry points there.
    fn copy_tables(&mut self) -> Result<(), String> {
        let index = self.index;
        let mut carried = Vec::new();
        let read_by_copies: BTreeSet<usize> = self
            .copied
            .keys()
            .flat_map(|&c| &index.sections[c].relocs)
            .filter_map(|r| index.symbols[r.symbol].section)
            .collect();
        let code: Vec<usize> = self
            .copied
            .keys()
            .copied()
            .filter(|&s| index.sections[s].kind == Kind::Code)
            .collect();
        for (t, table) in index.sections.iter().enumerate() {
            if table.relocs.is_empty() || table.kind == Kind::NotAlloc || table.kind == Kind::Code {
                continue;
            }
            let into_copied: Vec<_> = table
                .relocs
                .iter()
                .filter(|r| {
                    index.symbols[r.symbol]
                        .section
                        .is_some_and(|s| code.contains(&s))
                })
                .collect();
            if into_copied.is_empty() || self.copied.contains_key(&t) {
                continue;
            }
            // Data that points at a function (an ops table) is the running
            // kernel's and reaches the new code through the old entry; an
            // unnamed table the copied code itself reads (a jump table) is
            // copied with it.
            let is_data = !table.named.is_empty() || read_by_copies.contains(&t);
            if CARRIED_TABLES.contains(&table.name) {
                carried.push(t);
            } else if !is_data && !table.name.starts_with(".discard.") {
                let r = into_copied[0];
                let s = &index.symbols[r.symbol];
                let at = index
                    .symbol_at(
                        s.section.expect("filtered"),
                        s.value.wrapping_add(r.addend as u64),
                    )
                    .map(|f| index.symbols[f].name)
                    .unwrap_or("?");
                let what = if REFUSED_TABLES.contains(&table.name) {
                    "which klp-link cannot carry into a livepatch yet"
                } else {
                    "a table klp-link does not know; refusing rather than dropping them"
                };
                return Err(self.err(format!("`{at}` has {} entries, {what}", table.name)));
            }
        }
        for t in carried {
            self.copy_entries(t)?;
        }
        Ok(())
    }

    /// Copies the entries of table `t` whose first relocation points into
    /// copied code (and the matching `.orc_unwind` entries for ORC).
    fn copy_entries(&mut self, t: usize) -> Result<(), String> {
        let index = self.index;
        let table = &index.sections[t];
        let size = entry_size(table.size, &table.relocs);
        let mut keep = Vec::new();
        for r in &table.relocs {
            if r.offset % size != 0 {
                continue;
            }
            let s = &index.symbols[r.symbol];
            if s.section.is_some_and(|sec| self.copied.contains_key(&sec)) {
                keep.push(r.offset / size);
            }
        }
        let orc = (table.name == ".orc_unwind_ip")
            .then(|| index.sections.iter().position(|s| s.name == ".orc_unwind"))
            .flatten();
        let id = self.out.add_section(
            Vec::new(),
            table.name.as_bytes().to_vec(),
            SectionKind::ReadOnlyData,
        );
        self.out.section_mut(id).flags = SectionFlags::Elf {
            sh_type: elf::SectionType(table.sh_type),
            sh_flags: elf::SectionFlags(table.flags),
        };
        let mut data = Vec::new();
        let mut orc_data = Vec::new();
        for &k in &keep {
            let start = (k * size) as usize;
            data.extend_from_slice(&table.data[start..start + size as usize]);
            if let Some(o) = orc {
                let entry = 6;
                let from = k as usize * entry;
                orc_data.extend_from_slice(
                    index.sections[o]
                        .data
                        .get(from..from + entry)
                        .ok_or_else(|| {
                            self.err(".orc_unwind is shorter than .orc_unwind_ip".into())
                        })?,
                );
            }
        }
        self.out.set_section_data(id, data, table.align.max(1));
        for (n, &k) in keep.iter().enumerate() {
            for r in index.relocs_in(t, k * size, (k + 1) * size) {
                let (symbol, addend) = self.target(r.symbol, r.addend, 0)?;
                self.out
                    .add_relocation(
                        id,
                        Relocation {
                            offset: n as u64 * size + (r.offset - k * size),
                            symbol,
                            addend,
                            flags: RelocationFlags::Elf {
                                r_type: elf::RelocationType(r.r_type),
                            },
                        },
                    )
                    .map_err(|e| self.err(e.to_string()))?;
            }
        }
        if let Some(o) = orc {
            let src = &index.sections[o];
            let oid = self.out.add_section(
                Vec::new(),
                b".orc_unwind".to_vec(),
                SectionKind::ReadOnlyData,
            );
            self.out.section_mut(oid).flags = SectionFlags::Elf {
                sh_type: elf::SectionType(src.sh_type),
                sh_flags: elf::SectionFlags(src.flags),
            };
            self.out.set_section_data(oid, orc_data, src.align.max(1));
        }
        self.translate_pending()
    }
}
