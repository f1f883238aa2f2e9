//! Copies the changed and new functions out of the patched objects into one
//! relocatable patch object.
//!
//! Each function's section is copied as it is (with its `.cold` parts), and
//! so is what it needs that the running kernel cannot provide: string
//! literals, constant pools, unnamed tables, local constants, fresh static
//! flags (`__already_done`, ...), data that is new, and the pieces of
//! unnamed code it jumps into ([`pieces`]). Every other reference goes to the
//! running kernel: a normal relocation when vmlinux exports the symbol
//! (resolved at load), otherwise a reference to an undefined symbol
//! `.klp.sym.<target>.<name>,<sympos>`, which the post-link rewrite
//! ([`super::klp_rewrite`]) turns into a klp relocation.
//!
//! The entries of special sections that describe copied code travel with it
//! ([`tables`]); a table klp-link does not know makes it refuse. Which
//! functions replace the running kernel's, and which are only copied, is
//! [`delivery`]'s decision.

mod delivery;
mod helpers;
mod pieces;
mod shared;
mod static_call_keys;
mod tables;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use object::write::{Object, Relocation, SectionId, Symbol, SymbolId, SymbolSection};
use object::{
    elf, Architecture, BinaryFormat, Endianness, RelocationFlags, SectionFlags, SectionKind,
    SymbolFlags, SymbolKind, SymbolScope,
};

use super::data_uses::escaping_use;
use super::sympos::Positions;
use super::symvers::Exports;
use super::tree::VMLINUX;
use crate::arch::{instruction_ends, x86_64::X86_64};
use crate::callsite::{is_callsite_metadata, is_once_flag};
use crate::elf::demangle::cold_parent;
use crate::elf::{
    DefinedFunction, ElfIndex, SectionIndex, SectionKind as Kind, SymType, SymbolIndex,
};
use crate::link::once_flags::OnceChoice;
use delivery::Replaced;
pub use helpers::{Callback, CALLBACK_SECTION};
use pieces::Pieces;
use tables::CarriedTables;

/// Why a patch object could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtractError {
    /// The patched object cannot be read as needed.
    Object { object: String, reason: String },
    /// Something in `object` that a live patch cannot carry; `why` names it
    /// and says what to do.
    Refused { object: String, why: String },
    /// A special-section entry of code for module `module` refers to
    /// `symbol` of that module: such references are resolved only when the
    /// module loads, after the module loader has read the entry.
    LoadTimeModuleReference {
        object: String,
        symbol: String,
        module: String,
    },
    /// The patch object could not be written.
    Write(String),
}

impl fmt::Display for ExtractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtractError::Object { object, reason } => write!(f, "{object}: {reason}"),
            ExtractError::Refused { object, why } => write!(f, "{object}: {why}"),
            ExtractError::LoadTimeModuleReference {
                object,
                symbol,
                module,
            } => write!(
                f,
                "{object}: a special-section entry of the patched code (a static key, static \
                 call or alternative) refers to `{symbol}` in module {module}: the module loader \
                 reads such entries before livepatch can resolve that reference. Keep such uses \
                 out of the changed functions (e.g. static_key_enabled() instead of \
                 static_branch_*())"
            ),
            ExtractError::Write(e) => write!(f, "writing the patch object: {e}"),
        }
    }
}

impl std::error::Error for ExtractError {}

/// One function to replace, for the registration code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KlpFunc {
    pub target: String,
    pub old_name: String,
    /// The global symbol of the new copy in the patch object.
    pub new_symbol: String,
    pub sympos: u64,
    /// Set when this function is replaced only to deliver a changed function
    /// that livepatch cannot hook itself (it has no `__fentry__` call): the
    /// name of that function.
    pub delivers: Option<String>,
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
    /// The once-flags of the patched object and which of them a copy
    /// shares with the running kernel ([`crate::link::once_flags`]).
    pub once_flags: BTreeMap<String, OnceChoice>,
}

/// The running kernel, as far as references from patched code need it.
pub struct RunningKernel<'a> {
    pub exports: &'a Exports,
    /// Symbols of each target, for sympos.
    pub positions: &'a HashMap<String, Positions>,
    /// Its kbuild runs objtool on the livepatch module's linked object,
    /// which then writes the tables objtool makes (ORC, call and return
    /// sites) for all of the module's code: the patch object must not
    /// carry them ([`crate::special_sections::written_by_module_objtool`]).
    pub objtool_on_modules: bool,
}

pub struct Extracted {
    pub object: Vec<u8>,
    pub funcs: Vec<KlpFunc>,
    /// The patch's callbacks, for each target's `klp_object`.
    pub callbacks: Vec<Callback>,
    /// What the patch leaves out or does differently, for the report.
    pub notes: Vec<String>,
}

/// Copies everything `sources` ask for into one patch object.
pub fn extract(sources: &[Source], kernel: &RunningKernel) -> Result<Extracted, ExtractError> {
    let indexes = sources
        .iter()
        .map(|source| {
            ElfIndex::parse(source.data).map_err(|e| ExtractError::Object {
                object: source.object_name.clone(),
                reason: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let new_globals = new_globals(sources, &indexes);
    let mut out = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let mut funcs = Vec::new();
    let mut by_name: HashMap<String, SymbolId> = HashMap::new();
    let mut notes = Vec::new();
    let mut callbacks = Vec::new();
    for (n, (source, index)) in sources.iter().zip(&indexes).enumerate() {
        let mut copier = Copier {
            index,
            source,
            kernel,
            new_globals: &new_globals,
            out: &mut out,
            by_name: &mut by_name,
            copied: HashMap::new(),
            pieces: Pieces::default(),
            pending: Vec::new(),
            moved: Vec::new(),
            tables: CarriedTables::default(),
            in_table: false,
            carrying: None,
            escapes: HashMap::new(),
            notes: &mut notes,
        };
        copier.refuse_ignore_marks()?;
        let replaced = copier.replaced_functions()?;
        funcs.extend(copier.copy_functions(n, &replaced)?);
        copier.copy_new_global_data()?;
        callbacks.extend(copier.copy_callbacks(&callbacks)?);
        copier.translate_pending()?;
        copier.carry_tables()?;
    }
    if kernel.objtool_on_modules {
        static_call_keys::address_keys(&mut out, &mut by_name, kernel.exports)?;
    }
    if let Some(name) = new_globals.iter().find(|g| {
        by_name
            .get(*g)
            .is_some_and(|&id| out.symbol(id).is_undefined())
    }) {
        return Err(ExtractError::Refused {
            object: "the patch".into(),
            why: format!("`{name}` is new and used by the patch, but no patched object defines it"),
        });
    }
    let object = out
        .write()
        .map_err(|e| ExtractError::Write(e.to_string()))?;
    Ok(Extracted {
        object,
        funcs,
        callbacks,
        notes,
    })
}

/// The patch object's symbol `name`, added undefined when it has none yet.
fn named_symbol(
    out: &mut Object<'static>,
    by_name: &mut HashMap<String, SymbolId>,
    name: &str,
) -> SymbolId {
    if let Some(&id) = by_name.get(name) {
        return id;
    }
    let id = out.add_symbol(Symbol {
        name: name.as_bytes().to_vec(),
        value: 0,
        size: 0,
        kind: SymbolKind::Unknown,
        scope: SymbolScope::Dynamic,
        weak: false,
        section: SymbolSection::Undefined,
        flags: SymbolFlags::None,
    });
    by_name.insert(name.to_owned(), id);
    id
}

/// The global functions and data that the patch adds: other patched objects
/// reach them by name, so their copies keep their names.
fn new_globals(sources: &[Source], indexes: &[ElfIndex]) -> HashSet<String> {
    let mut names = HashSet::new();
    for (source, index) in sources.iter().zip(indexes) {
        for name in source.new.iter().chain(&source.new_data) {
            let global = index
                .symbols
                .iter()
                .any(|s| s.name == name && s.section.is_some() && s.binding != elf::STB_LOCAL.0);
            if global {
                names.insert(name.clone());
            }
        }
    }
    names
}

/// A stretch of a source section copied to `out_offset` of section `id`
/// whose relocations are still to be translated.
struct Pending {
    sec: SectionIndex,
    start: u64,
    end: u64,
    id: SectionId,
    out_offset: u64,
    /// Read by the module loader when the livepatch loads (a special-section
    /// entry, an alternative's replacement): see [`Copier::external`].
    in_table: bool,
}

struct Copier<'a, 'd> {
    index: &'a ElfIndex<'d>,
    source: &'a Source<'a>,
    kernel: &'a RunningKernel<'a>,
    /// New global functions and data of all patched objects.
    new_globals: &'a HashSet<String>,
    out: &'a mut Object<'static>,
    /// Symbols of the patch object by name: the running kernel's (exported
    /// names, `.klp.sym.*`), and the new globals the patch defines.
    by_name: &'a mut HashMap<String, SymbolId>,
    /// Source sections copied whole: their copy and its section symbol.
    copied: HashMap<SectionIndex, (SectionId, SymbolId)>,
    /// Pieces of unnamed code copied alone.
    pieces: Pieces,
    pending: Vec<Pending>,
    /// Functions copied out of a shared section whose resolved references
    /// still need relocations: done with the other relocations, once every
    /// function the patch carries has its copy to refer to.
    moved: Vec<shared::Moved>,
    tables: CarriedTables,
    /// Translating a special-section entry or what it points at.
    in_table: bool,
    /// The table whose entries are being carried.
    carrying: Option<SectionIndex>,
    /// Local constants whose address escapes the code that reads them, by
    /// symbol: decided once per object.
    escapes: HashMap<SymbolIndex, bool>,
    notes: &'a mut Vec<String>,
}

impl Copier<'_, '_> {
    /// Tells the report, once per flag, what the patch does with it.
    fn note_once(&mut self, flag: &str, what: &str) {
        let note = format!("{}: once-flag `{flag}`: {what}", self.source.object_name);
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    fn refuse(&self, why: String) -> ExtractError {
        ExtractError::Refused {
            object: self.source.object_name.clone(),
            why,
        }
    }

    fn malformed(&self, reason: String) -> ExtractError {
        ExtractError::Object {
            object: self.source.object_name.clone(),
            reason,
        }
    }

    fn function(&self, name: &str) -> Result<DefinedFunction, ExtractError> {
        self.index.function_named(name).map_err(|why| {
            self.malformed(format!(
                "`{name}` is not a defined function in the patched object ({why})"
            ))
        })
    }

    /// Copies section `sec` whole (once) and queues its relocations.
    fn copy_section(&mut self, sec: SectionIndex) -> Result<(SectionId, SymbolId), ExtractError> {
        self.copy_section_as(sec, self.index.sections[sec].name)
    }

    /// Copies section `sec` whole, as an output section named `name`.
    fn copy_section_as(
        &mut self,
        sec: SectionIndex,
        name: &str,
    ) -> Result<(SectionId, SymbolId), ExtractError> {
        if let Some(&c) = self.copied.get(&sec) {
            return Ok(c);
        }
        let s = &self.index.sections[sec];
        let id = self.add_section_like(sec, name)?;
        if s.kind == Kind::Bss {
            self.out.append_section_bss(id, s.size, s.align.max(1));
        } else {
            self.out
                .set_section_data(id, s.data.to_vec(), s.align.max(1));
        }
        let sym = self.out.section_symbol(id);
        self.copied.insert(sec, (id, sym));
        self.pending.push(Pending {
            sec,
            start: 0,
            end: s.size,
            id,
            out_offset: 0,
            in_table: self.in_table,
        });
        Ok((id, sym))
    }

    /// A new, empty output section named `name` with the type and flags of
    /// source section `sec`.
    fn add_section_like(
        &mut self,
        sec: SectionIndex,
        name: &str,
    ) -> Result<SectionId, ExtractError> {
        let s = &self.index.sections[sec];
        if s.align > 1 && !s.align.is_power_of_two() {
            return Err(self.malformed(format!(
                "section {} has alignment {}, not a power of two",
                s.name, s.align
            )));
        }
        let kind = match s.kind {
            Kind::Code => SectionKind::Text,
            Kind::Strings | Kind::Constants | Kind::ReadOnly => SectionKind::ReadOnlyData,
            Kind::Bss => SectionKind::UninitializedData,
            _ => SectionKind::Data,
        };
        let id = self
            .out
            .add_section(Vec::new(), name.as_bytes().to_vec(), kind);
        // SHF_LINK_ORDER needs an sh_link this writer cannot set; the module
        // loader does not look at it.
        let flags = s.flags & !elf::SHF_LINK_ORDER.0;
        self.out.section_mut(id).flags = SectionFlags::Elf {
            sh_type: elf::SectionType(s.sh_type),
            sh_flags: elf::SectionFlags(flags),
        };
        Ok(id)
    }

    /// Appends `data` to output section `id` at alignment `align` and
    /// returns its offset. In code, the gap before it is int3 rather than
    /// zeros: objtool decodes a module's code from each section's start, and
    /// zero bytes (two-byte `add`s) would run past a copy's first instruction.
    fn append_code(&mut self, id: SectionId, data: &[u8], align: u64) -> u64 {
        const INT3: u8 = 0xcc;
        let section = self.out.section_mut(id);
        let len = section.data().len() as u64;
        let gap = len.next_multiple_of(align) - len;
        if gap > 0 {
            section.append_data(&vec![INT3; gap as usize], 1);
        }
        section.append_data(data, align)
    }

    fn translate_pending(&mut self) -> Result<(), ExtractError> {
        for moved in std::mem::take(&mut self.moved) {
            self.relocate_moved(moved)?;
        }
        while let Some(p) = self.pending.pop() {
            self.in_table = p.in_table;
            let section = &self.index.sections[p.sec];
            let ends = match section.data.get(p.start as usize..p.end as usize) {
                Some(code) if section.kind == Kind::Code => {
                    instruction_ends(&X86_64, code, p.start)
                }
                _ => Vec::new(),
            };
            for r in self.index.relocs_in(p.sec, p.start, p.end) {
                // A PC-relative operand means the place its instruction's end
                // plus the value points at: S + A + (end - P).
                let bias = match ends.binary_search(&r.offset) {
                    _ if !r.pc_relative || ends.is_empty() => 0,
                    Ok(i) => ends.get(i + 1).map_or(0, |e| e - r.offset),
                    Err(i) => ends.get(i).map_or(0, |e| e - r.offset),
                };
                let (symbol, addend) = self.target(r.symbol, r.addend, bias)?;
                self.add_relocation(
                    p.id,
                    p.out_offset + (r.offset - p.start),
                    symbol,
                    addend,
                    r.r_type,
                )?;
            }
        }
        self.in_table = false;
        Ok(())
    }

    fn add_relocation(
        &mut self,
        id: SectionId,
        offset: u64,
        symbol: SymbolId,
        addend: i64,
        r_type: u32,
    ) -> Result<(), ExtractError> {
        self.out
            .add_relocation(
                id,
                Relocation {
                    offset,
                    symbol,
                    addend,
                    flags: RelocationFlags::Elf {
                        r_type: elf::RelocationType(r_type),
                    },
                },
            )
            .map_err(|e| ExtractError::Write(e.to_string()))
    }

    /// Where a relocation against `sym + addend` of the source object goes
    /// in the patch object. `bias` is what turns the value into the place
    /// it means (non-zero for PC-relative operands inside instructions).
    fn target(
        &mut self,
        sym: SymbolIndex,
        addend: i64,
        bias: u64,
    ) -> Result<(SymbolId, i64), ExtractError> {
        let index = self.index;
        let s = &index.symbols[sym];
        let Some(sec) = s.section else {
            return self.external(s.name, addend, None, false);
        };
        let section = &index.sections[sec];
        let offset = s.value.wrapping_add(addend as u64);
        if let Some(&(_, ssym)) = self.copied.get(&sec) {
            return Ok((ssym, offset as i64));
        }
        let place = offset.wrapping_add(bias);
        let named = if s.is_anonymous() {
            self.owner_of_place(sec, place)
        } else {
            Some(sym)
        };
        if let (Kind::Code, Some(_)) = (section.kind, named) {
            // A function of a shared section that the patch carries.
            if let Some((psym, at)) = self.pieces.find(sec, place) {
                return Ok((psym, at.wrapping_sub(bias) as i64));
            }
        }
        match (section.kind, named) {
            (Kind::Strings | Kind::Constants, _) => {
                let (_, ssym) = self.copy_section(sec)?;
                Ok((ssym, offset as i64))
            }
            (Kind::Code, None) => {
                // Unnamed code (an alternative's replacement, a
                // static_cpu_has test in .altinstr_aux): only the piece
                // that is reached.
                let (ssym, at) = self.piece(sec, place)?;
                Ok((ssym, at.wrapping_sub(bias) as i64))
            }
            (_, None) if !has_named_data(index, sec) => {
                // Unnamed data the code reads (a jump table): the patch has
                // its own copy.
                let (_, ssym) = self.copy_section(sec)?;
                Ok((ssym, offset as i64))
            }
            (Kind::ReadOnly, None) if self.unnamed_constant(sec, place).is_some() => {
                // A literal the compiler put between named constants
                // ("i686" padded for a fixed-size copy): read-only and
                // unnamed, so the copy's value is all that matters.
                let (start, end) = self.unnamed_constant(sec, place).expect("checked");
                let (ssym, at) = self.data_piece(sec, start, end)?;
                Ok((
                    ssym,
                    (at as i64).wrapping_add(offset.wrapping_sub(start) as i64),
                ))
            }
            (_, None) => Err(self.refuse(format!(
                "a reference to {}+{place:#x} lies outside every object of that section, so \
                 klp-link cannot tell which one it means",
                section.name
            ))),
            (kind, Some(n)) => {
                let o = &index.symbols[n];
                let rel = offset.wrapping_sub(o.value) as i64;
                let local = o.binding == elf::STB_LOCAL.0;
                // A local constant is copied only while nothing can hold its
                // address; otherwise the running kernel's (unchanged: the
                // compare refuses a changed one) is the one to use.
                let value_only_const = local
                    && kind == Kind::ReadOnly
                    && !*self
                        .escapes
                        .entry(n)
                        .or_insert_with(|| escaping_use(index, n).is_some());
                let copy = kind != Kind::Code
                    && (self.source.new_data.contains(o.name)
                        || is_callsite_metadata(&o.demangled, section.name)
                        || section.name.starts_with(".data..once")
                        || value_only_const);
                if copy && is_once_flag(&o.demangled, section.name) {
                    let source = self.source;
                    match source.once_flags.get(o.name) {
                        Some(OnceChoice::Shared { running }) => {
                            self.note_once(o.name, &format!("the running kernel's `{running}`"));
                            return self.external(running.as_str(), rel, o.file, true);
                        }
                        Some(OnceChoice::Fresh { why }) => {
                            self.note_once(o.name, &format!("a fresh copy: {why}"))
                        }
                        None => self.note_once(
                            o.name,
                            "a fresh copy: no function of the manifest refers to it",
                        ),
                    }
                }
                if copy {
                    if section.named.len() > 1 {
                        // A section of several objects (`.data..once`,
                        // `__dyndbg`): only this one.
                        let (psym, at) = self.object_piece(sec, n)?;
                        return Ok((psym, at.wrapping_add(rel as u64) as i64));
                    }
                    let (_, ssym) = self.copy_section(sec)?;
                    return Ok((ssym, offset as i64));
                }
                self.external(o.name, rel, o.file, local)
            }
        }
    }

    /// The named object that source place `at` of section `sec` belongs to:
    /// the one covering it, else the one it is just past the end of (a
    /// loop's end pointer), else the section's only one.
    /// The unnamed stretch of read-only section `sec` around `place`: from
    /// the end of the named object before it to the start of the next one
    /// (what the checksum hashed), when nothing in it is relocated.
    fn unnamed_constant(&self, sec: SectionIndex, place: u64) -> Option<(u64, u64)> {
        let index = self.index;
        let start = index.sections[sec]
            .named
            .iter()
            .map(|&i| &index.symbols[i])
            .map(|s| s.value.saturating_add(s.size))
            .filter(|&end| end <= place)
            .max()
            .unwrap_or(0);
        let end = index.region_end(sec, place);
        (start < end && index.relocs_in(sec, start, end).is_empty()).then_some((start, end))
    }

    fn owner_of_place(&self, sec: SectionIndex, at: u64) -> Option<SymbolIndex> {
        let index = self.index;
        if let Some(n) = index.symbol_at(sec, at) {
            return Some(n);
        }
        let named = &index.sections[sec].named;
        let objects = || {
            named
                .iter()
                .copied()
                .filter(|&i| index.symbols[i].sym_type == SymType::Object)
        };
        if let Some(end) = objects().find(|&i| {
            let s = &index.symbols[i];
            s.size > 0 && s.value.wrapping_add(s.size) == at
        }) {
            return Some(end);
        }
        let mut only = objects();
        match (only.next(), only.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }

    /// A reference to `name` outside the object: a new global of another
    /// patched object, or the running kernel's.
    fn external(
        &mut self,
        name: &str,
        addend: i64,
        file: Option<&str>,
        local: bool,
    ) -> Result<(SymbolId, i64), ExtractError> {
        if !local && self.new_globals.contains(name) {
            return Ok((self.named(name), addend));
        }
        let target = self.source.target;
        let exporter = if local {
            None
        } else {
            self.kernel.exports.exporter(name)
        };
        let symbol_name = match exporter {
            Some(VMLINUX) => name.to_owned(),
            Some(module) if module != target => {
                return Err(self.refuse(format!(
                    "the patched code uses `{name}`, which module {module} exports: klp-link \
                     cannot yet reach another module's symbols from a livepatch for {target}"
                )));
            }
            _ => {
                if self.in_table && target != VMLINUX {
                    // Module-specific klp relocations are applied only when
                    // the target module loads, after the module loader has
                    // read the livepatch's special sections.
                    return Err(ExtractError::LoadTimeModuleReference {
                        object: self.source.object_name.clone(),
                        symbol: name.to_owned(),
                        module: target.to_owned(),
                    });
                }
                let pos = self.sympos(name, file, local)?;
                format!(".klp.sym.{target}.{name},{pos}")
            }
        };
        Ok((self.named(&symbol_name), addend))
    }

    /// The patch object's symbol `name`: undefined until [`Self::define`]
    /// gives it a place.
    fn named(&mut self, name: &str) -> SymbolId {
        named_symbol(self.out, self.by_name, name)
    }

    /// Defines the global symbol `name` of the patch object at `value` of
    /// `section` (an earlier reference by name may have made it already).
    fn define(&mut self, name: &str, section: SectionId, value: u64, size: u64, kind: SymbolKind) {
        let id = self.named(name);
        let sym = self.out.symbol_mut(id);
        sym.section = SymbolSection::Section(section);
        sym.value = value;
        sym.size = size;
        sym.kind = kind;
    }

    /// Copies the new global data objects: other patched objects may use
    /// them even where this one does not.
    fn copy_new_global_data(&mut self) -> Result<(), ExtractError> {
        let index = self.index;
        for (i, s) in index.symbols.enumerate() {
            let Some(sec) = s.section else { continue };
            // Every kernel link drops `.discard.*`: what the patch needs
            // of it (the callback pointers) is carried under a kept name
            // by its own step, which a copy under this one would pre-empt.
            if s.sym_type != SymType::Object
                || s.binding == elf::STB_LOCAL.0
                || !self.source.new_data.contains(s.name)
                || !self.new_globals.contains(s.name)
                || index.sections[sec].name.starts_with(".discard.")
            {
                continue;
            }
            // A section of several objects (any `.data` or `.bss` of a
            // build without -fdata-sections): only this one.
            let (id, value) = if index.sections[sec].named.len() > 1 {
                self.object_piece(sec, i)?;
                self.pieces
                    .find_with_section(sec, s.value)
                    .ok_or_else(|| self.malformed(format!("`{}` was not copied", s.name)))?
            } else {
                (self.copy_section(sec)?.0, s.value)
            };
            self.define(s.name, id, value, s.size, SymbolKind::Data);
        }
        Ok(())
    }

    fn sympos(&self, name: &str, file: Option<&str>, local: bool) -> Result<u64, ExtractError> {
        let target = self.source.target;
        let positions = self
            .kernel
            .positions
            .get(target)
            .ok_or_else(|| self.malformed(format!("no symbol table of `{target}`")))?;
        positions
            .sympos(name, if local { file } else { None })
            .map_err(|e| self.refuse(e.to_string()))
    }
}

/// Whether section `sec` defines named data objects.
fn has_named_data(index: &ElfIndex, sec: SectionIndex) -> bool {
    index.sections[sec]
        .named
        .iter()
        .any(|&i| index.symbols[i].sym_type == SymType::Object)
}

impl Copier<'_, '_> {
    fn copy_functions(
        &mut self,
        n: usize,
        replaced: &[Replaced],
    ) -> Result<Vec<KlpFunc>, ExtractError> {
        let mut funcs = Vec::new();
        for (i, r) in replaced.iter().enumerate() {
            let f = self.function(&r.name)?;
            let s = &self.index.symbols[f.symbol()];
            let (section_id, value) = self.copy_function(f)?;
            let new_symbol = format!("__klp_new_{n}_{i}");
            // The copy under its own name (for stack traces; global for a
            // new global, which other patched objects may call) and a
            // global handle for the registration code.
            if self.new_globals.contains(s.name) {
                let (name, size) = (s.name, s.size);
                self.define(name, section_id, value, size, SymbolKind::Text);
            } else {
                self.out.add_symbol(Symbol {
                    name: s.name.as_bytes().to_vec(),
                    value,
                    size: s.size,
                    kind: SymbolKind::Text,
                    scope: SymbolScope::Compilation,
                    weak: false,
                    section: SymbolSection::Section(section_id),
                    flags: SymbolFlags::None,
                });
            }
            self.out.add_symbol(Symbol {
                name: new_symbol.clone().into_bytes(),
                value,
                size: s.size,
                kind: SymbolKind::Text,
                scope: SymbolScope::Dynamic,
                weak: false,
                section: SymbolSection::Section(section_id),
                flags: SymbolFlags::None,
            });
            // Its .cold parts travel with it.
            for c in self.index.symbols.indices() {
                let cs = &self.index.symbols[c];
                if cs.sym_type == SymType::Func && cold_parent(cs.name) == Some(s.name) {
                    let cold = self.index.defined_function(c).map_err(|why| {
                        self.malformed(format!("`{}`, a part of `{}`: {why}", cs.name, s.name))
                    })?;
                    self.copy_function(cold)?;
                }
            }
            if r.replaces {
                let sympos = self.sympos(s.name, s.file, s.binding == elf::STB_LOCAL.0)?;
                funcs.push(KlpFunc {
                    target: self.source.target.to_owned(),
                    old_name: s.name.to_owned(),
                    new_symbol,
                    sympos,
                    delivers: r.delivers.clone(),
                });
            }
        }
        Ok(funcs)
    }
}
