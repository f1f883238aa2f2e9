//! The ELF read model both binaries share: a read-only index of one
//! relocatable object, its sections with their relocations sorted by
//! offset, and its symbols with the named ones of each section sorted by
//! address. Built once per object; the checksums, the extraction and the
//! compare's data-use checks look everything up here. [`demangle`] gives
//! symbol names without compiler-generated numbers.

pub mod demangle;

use std::borrow::Cow;
use std::fmt;

use object::elf;
use object::read::elf::{ElfFile64, FileHeader, SectionHeader};
use object::{
    Endianness, Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget,
    SymbolSection,
};

use crate::special_sections::read_by_module_objtool;
use demangle::demangle;

/// Why an object cannot be read as needed (and so has no checksums). The
/// text goes into the manifest, so a later step can refuse with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectError {
    NotElf,
    LlvmBitcode,
    GccLto,
    UnsupportedArch(String),
    NotRelocatable,
    Malformed(String),
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectError::NotElf => write!(f, "not an ELF object"),
            ObjectError::LlvmBitcode => write!(
                f,
                "LLVM bitcode (clang LTO): there is no machine code to checksum before \
                 the final link; build without LTO to live-patch"
            ),
            ObjectError::GccLto => write!(
                f,
                "GCC LTO object (GIMPLE bytecode from -flto): there is no machine code to \
                 checksum before the final link; build without LTO to live-patch"
            ),
            ObjectError::UnsupportedArch(what) => write!(f, "unsupported architecture: {what}"),
            ObjectError::NotRelocatable => {
                write!(f, "not a relocatable object (ELF type is not ET_REL)")
            }
            ObjectError::Malformed(what) => write!(f, "malformed ELF object: {what}"),
        }
    }
}

impl std::error::Error for ObjectError {}

/// A section's position in the object's section table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SectionIndex(pub usize);

/// A symbol's position in the object's symbol table (0 is the null symbol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SymbolIndex(pub usize);

/// Items indexed by their own index type, so that a section index cannot
/// look up a symbol or the other way round.
pub struct Table<I, T> {
    items: Vec<T>,
    index: std::marker::PhantomData<I>,
}

impl<I: From<usize> + Copy, T> Table<I, T> {
    fn new(items: Vec<T>) -> Self {
        Table {
            items,
            index: std::marker::PhantomData,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }

    fn iter_mut(&mut self) -> std::slice::IterMut<'_, T> {
        self.items.iter_mut()
    }

    /// Each item with its index.
    pub fn enumerate(&self) -> impl Iterator<Item = (I, &T)> + '_ {
        self.items.iter().enumerate().map(|(i, t)| (I::from(i), t))
    }

    /// Every index, in order.
    pub fn indices(&self) -> impl Iterator<Item = I> + '_ {
        (0..self.items.len()).map(I::from)
    }

    pub fn get(&self, i: I) -> Option<&T>
    where
        usize: From<I>,
    {
        self.items.get(usize::from(i))
    }
}

impl<I, T> std::ops::IndexMut<I> for Table<I, T>
where
    usize: From<I>,
{
    fn index_mut(&mut self, i: I) -> &mut T {
        &mut self.items[usize::from(i)]
    }
}

impl<I, T> std::ops::Index<I> for Table<I, T>
where
    usize: From<I>,
{
    type Output = T;

    fn index(&self, i: I) -> &T {
        &self.items[usize::from(i)]
    }
}

impl From<usize> for SectionIndex {
    fn from(i: usize) -> Self {
        SectionIndex(i)
    }
}

impl From<SectionIndex> for usize {
    fn from(i: SectionIndex) -> usize {
        i.0
    }
}

impl From<usize> for SymbolIndex {
    fn from(i: usize) -> Self {
        SymbolIndex(i)
    }
}

impl From<SymbolIndex> for usize {
    fn from(i: SymbolIndex) -> usize {
        i.0
    }
}

/// What a section holds, as far as hashing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    Code,
    /// `SHF_MERGE|SHF_STRINGS`: references hash the string they point at.
    Strings,
    /// `SHF_MERGE` constant pools (`.rodata.cst*`): references hash the constant.
    Constants,
    ReadOnly,
    Writable,
    /// `SHT_NOBITS`: has a size but no bytes.
    Bss,
    /// Not loaded at run time (debug info, notes, `.comment`, ...).
    NotAlloc,
}

pub struct Section<'d> {
    pub name: &'d str,
    pub kind: SectionKind,
    pub data: &'d [u8],
    pub size: u64,
    pub entsize: u64,
    pub align: u64,
    /// Raw `sh_flags` and `sh_type`, for copying the section elsewhere.
    pub flags: u64,
    pub sh_type: u32,
    pub relocs: Vec<Reloc>,
    /// The `call __fentry__` sites whose relocation objtool's `--mcount`
    /// made `R_X86_64_NONE` (clang kernels), sorted by offset; not in
    /// `relocs`, since the linker writes nothing there.
    pub fentry_sites: Vec<FentrySite>,
    /// Indices (into [`ElfIndex::symbols`]) of the named functions and data
    /// objects defined here, sorted by address.
    pub named: Vec<SymbolIndex>,
    /// Section-relative addresses where something starts: named symbols and
    /// exact references from elsewhere. Bounds anonymous regions (jump tables,
    /// alternative replacements) so that one does not swallow the next.
    pub starts: Vec<u64>,
}

#[derive(Debug, Clone, Copy)]
pub struct Reloc {
    pub offset: u64,
    pub r_type: u32,
    /// Width of the relocated field in bytes.
    pub width: u8,
    pub pc_relative: bool,
    pub symbol: SymbolIndex,
    pub addend: i64,
}

/// A `call __fentry__` that objtool's `--mcount` recorded in
/// `__mcount_loc` (clang has no `-mrecord-mcount`): it turned the call's
/// `R_X86_64_PLT32` into `R_X86_64_NONE` and the call into a 5-byte NOP.
/// The checksums and the fingerprint hash it as the call it was, so that
/// they stay what klp-cc computed before objtool ran.
#[derive(Debug, Clone, Copy)]
pub struct FentrySite {
    /// Of the call's rel32 field: the instruction starts one byte before.
    pub offset: u64,
    pub symbol: SymbolIndex,
    pub addend: i64,
}

impl Section<'_> {
    /// The recorded `__fentry__` call whose 5-byte instruction starts at `ip`.
    pub fn fentry_site_at(&self, ip: u64) -> Option<&FentrySite> {
        let field = ip.checked_add(1)?;
        self.fentry_sites
            .binary_search_by_key(&field, |s| s.offset)
            .ok()
            .map(|i| &self.fentry_sites[i])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymType {
    Func,
    Object,
    Section,
    File,
    Other,
}

pub struct Symbol<'d> {
    pub name: &'d str,
    pub demangled: Cow<'d, str>,
    pub sym_type: SymType,
    pub binding: u8,
    pub section: Option<SectionIndex>,
    pub value: u64,
    pub size: u64,
    /// The `STT_FILE` in effect for a local symbol.
    pub file: Option<&'d str>,
}

impl Symbol<'_> {
    /// A symbol that stands for a place in a section rather than for a named
    /// entity: section symbols and local labels.
    pub fn is_anonymous(&self) -> bool {
        self.sym_type == SymType::Section
            || self.name.is_empty()
            || (self.binding == elf::STB_LOCAL.0 && self.sym_type == SymType::Other)
    }
}

/// A function the object defines: a named `STT_FUNC` symbol of a loaded
/// section whose code lies inside that section. Only [`ElfIndex`]'s
/// lookups make one, so the code that hashes, traces or copies a function
/// never meets an undefined reference, a data object or a symbol pointing
/// past its section: input that would be one is refused at the lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DefinedFunction {
    symbol: SymbolIndex,
    section: SectionIndex,
    start: u64,
    end: u64,
}

impl DefinedFunction {
    /// Its index in [`ElfIndex::symbols`].
    pub fn symbol(&self) -> SymbolIndex {
        self.symbol
    }

    pub fn section(&self) -> SectionIndex {
        self.section
    }

    /// Its code: `[start, end)` of its section, within the section. A
    /// function without `.size` (assembler code) reaches up to whatever
    /// starts next.
    pub fn start(&self) -> u64 {
        self.start
    }

    pub fn end(&self) -> u64 {
        self.end
    }
}

/// Why a symbol is not a [`DefinedFunction`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotDefined {
    /// No symbol has the name.
    Absent,
    /// An undefined reference (the function is defined elsewhere).
    Undefined,
    /// A symbol of another type (data, a section, a label).
    NotAFunction,
    /// A function of a section that is not loaded at run time.
    NotLoaded { section: String },
    /// Its value or size places it outside its section.
    OutsideSection {
        section: String,
        value: u64,
        size: u64,
    },
}

impl fmt::Display for NotDefined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotDefined::Absent => write!(f, "there is no symbol of that name there"),
            NotDefined::Undefined => write!(f, "it is an undefined reference there"),
            NotDefined::NotAFunction => write!(f, "the symbol of that name there is no function"),
            NotDefined::NotLoaded { section } => {
                write!(f, "it is in {section}, which is not loaded at run time")
            }
            NotDefined::OutsideSection {
                section,
                value,
                size,
            } => write!(
                f,
                "its value {value:#x} and size {size:#x} lie outside its section {section}"
            ),
        }
    }
}

pub struct ElfIndex<'d> {
    pub sections: Table<SectionIndex, Section<'d>>,
    /// Indexed by ELF symbol-table index (entry 0 is the null symbol).
    pub symbols: Table<SymbolIndex, Symbol<'d>>,
    /// The compiler's `.comment` strings, joined.
    pub comment: Option<String>,
}

const LLVM_BITCODE_MAGIC: &[u8] = b"BC\xc0\xde";
const LLVM_WRAPPER_MAGIC: &[u8] = b"\xde\xc0\x17\x0b";

impl<'d> ElfIndex<'d> {
    pub fn parse(data: &'d [u8]) -> Result<Self, ObjectError> {
        if data.starts_with(LLVM_BITCODE_MAGIC) || data.starts_with(LLVM_WRAPPER_MAGIC) {
            return Err(ObjectError::LlvmBitcode);
        }
        if !data.starts_with(&elf::ELFMAG) {
            return Err(ObjectError::NotElf);
        }
        if data.get(4) != Some(&elf::ELFCLASS64.0) {
            return Err(ObjectError::UnsupportedArch(
                "32-bit ELF (only x86-64 is supported)".into(),
            ));
        }
        let file = ElfFile64::<Endianness>::parse(data).map_err(malformed)?;
        let endian = file.endian();
        let header = file.elf_header();
        let machine = header.e_machine(endian);
        if machine != elf::EM_X86_64 {
            return Err(ObjectError::UnsupportedArch(format!(
                "ELF machine {machine} (only x86-64, EM_X86_64 = 62, is supported)"
            )));
        }
        if header.e_type(endian) != elf::ET_REL {
            return Err(ObjectError::NotRelocatable);
        }

        let mut sections = Vec::new();
        let mut comment = None;
        for section in file.sections() {
            let h = section.elf_section_header();
            let name = section.name().map_err(malformed)?;
            if name.starts_with(".gnu.lto_") {
                return Err(ObjectError::GccLto);
            }
            let flags = h.sh_flags(endian).0;
            let sh_type = h.sh_type(endian).0;
            let kind = section_kind(sh_type, flags);
            let data = if sh_type == elf::SHT_NOBITS.0 {
                &[][..]
            } else {
                section.data().map_err(malformed)?
            };
            if name == ".comment" {
                comment = comment_text(data);
            }
            let mut relocs = Vec::new();
            let mut fentry_sites = Vec::new();
            // Not the debug sections' many relocations; objtool's few
            // annotations are carried with the code they are about.
            if kind != SectionKind::NotAlloc || read_by_module_objtool(name) {
                for (offset, r) in section.relocations() {
                    let RelocationFlags::Elf { r_type } = r.flags() else {
                        continue;
                    };
                    let RelocationTarget::Symbol(sym) = r.target() else {
                        continue;
                    };
                    let (width, pc_relative) = reloc_shape(r_type);
                    let r_type = r_type.0;
                    if r_type == elf::R_X86_64_NONE.0
                        && is_recorded_fentry_call(&file, data, offset, sym)
                    {
                        fentry_sites.push(FentrySite {
                            offset,
                            symbol: SymbolIndex(sym.0),
                            addend: r.addend(),
                        });
                    }
                    if width == 0 {
                        continue;
                    }
                    if offset.saturating_add(u64::from(width)) > data.len() as u64
                        && kind != SectionKind::Bss
                    {
                        return Err(ObjectError::Malformed(format!(
                            "relocation at {name}+{offset:#x} lies outside the section"
                        )));
                    }
                    relocs.push(Reloc {
                        offset,
                        r_type,
                        width,
                        pc_relative,
                        symbol: SymbolIndex(sym.0),
                        addend: r.addend(),
                    });
                }
                relocs.sort_by_key(|r| r.offset);
                fentry_sites.sort_by_key(|s| s.offset);
            }
            // object's section indices are ELF indices; keep them aligned.
            while sections.len() < section.index().0 {
                sections.push(empty_section());
            }
            sections.push(Section {
                name,
                kind,
                data,
                size: h.sh_size(endian),
                entsize: h.sh_entsize(endian),
                align: h.sh_addralign(endian),
                flags,
                sh_type,
                relocs,
                fentry_sites,
                named: Vec::new(),
                starts: Vec::new(),
            });
        }

        let table = file.elf_symbol_table();
        let mut symbols = Vec::with_capacity(table.len());
        symbols.push(null_symbol());
        let mut file_name = None;
        for sym in file.symbols() {
            let raw = sym.elf_symbol();
            let name = match sym.name() {
                Ok(name) => Some(name),
                // A source file may be named with any bytes (kernel trees
                // hold Latin-1). Its locals then go without `file=`: the
                // file only tells same-named locals apart, and klp-link
                // refuses what it cannot tell apart rather than guess.
                Err(_) if raw.st_type() == elf::STT_FILE => None,
                Err(e) => return Err(malformed(e)),
            };
            let sym_type = match raw.st_type() {
                elf::STT_FUNC | elf::STT_GNU_IFUNC => SymType::Func,
                elf::STT_OBJECT | elf::STT_TLS | elf::STT_COMMON => SymType::Object,
                elf::STT_SECTION => SymType::Section,
                elf::STT_FILE => SymType::File,
                _ => SymType::Other,
            };
            if sym_type == SymType::File {
                file_name = name;
            }
            let name = name.unwrap_or_default();
            let binding = raw.st_bind().0;
            let section = match sym.section() {
                SymbolSection::Section(i) if i.0 < sections.len() => Some(SectionIndex(i.0)),
                _ => None,
            };
            while symbols.len() < sym.index().0 {
                symbols.push(null_symbol());
            }
            symbols.push(Symbol {
                name,
                demangled: demangle(name),
                sym_type,
                binding,
                section,
                value: sym.address(),
                size: sym.size(),
                file: (binding == elf::STB_LOCAL.0).then_some(file_name).flatten(),
            });
        }

        let mut index = ElfIndex {
            sections: Table::new(sections),
            symbols: Table::new(symbols),
            comment,
        };
        index.link_symbols_and_starts()?;
        Ok(index)
    }

    fn link_symbols_and_starts(&mut self) -> Result<(), ObjectError> {
        for (i, s) in self.symbols.enumerate() {
            if let (Some(sec), SymType::Func | SymType::Object) = (s.section, s.sym_type) {
                if !s.name.is_empty() {
                    self.sections[sec].named.push(i);
                    self.sections[sec].starts.push(s.value);
                }
            }
        }
        // Exact references: absolute ones anywhere, and PC-relative ones in
        // data (`x - .`). PC-relative operands inside instructions point
        // past the instruction end, which is only known after decoding.
        let mut refs = Vec::new();
        for sec in self.sections.iter() {
            for r in &sec.relocs {
                if r.pc_relative && sec.kind == SectionKind::Code {
                    continue;
                }
                let sym = self
                    .symbols
                    .get(r.symbol)
                    .ok_or_else(|| bad_symbol(sec, r))?;
                if let (true, Some(target)) = (sym.is_anonymous(), sym.section) {
                    refs.push((target, sym.value.wrapping_add(r.addend as u64)));
                }
            }
        }
        for (target, at) in refs {
            self.sections[target].starts.push(at);
        }
        for sec in self.sections.iter_mut() {
            let symbols = &self.symbols;
            sec.named
                .sort_by_key(|&i| (symbols[i].value, std::cmp::Reverse(symbols[i].size)));
            sec.starts.sort_unstable();
            sec.starts.dedup();
        }
        for sec in self.sections.iter() {
            if let Some(r) = sec.relocs.iter().find(|r| r.symbol.0 >= self.symbols.len()) {
                return Err(bad_symbol(sec, r));
            }
        }
        Ok(())
    }

    /// Symbol `i` as a defined function, or why it is not one.
    pub fn defined_function(&self, i: SymbolIndex) -> Result<DefinedFunction, NotDefined> {
        let s = self.symbols.get(i).ok_or(NotDefined::Absent)?;
        if s.sym_type != SymType::Func || s.name.is_empty() {
            return Err(NotDefined::NotAFunction);
        }
        let section = s.section.ok_or(NotDefined::Undefined)?;
        let sec = &self.sections[section];
        if sec.kind == SectionKind::NotAlloc {
            return Err(NotDefined::NotLoaded {
                section: sec.name.to_owned(),
            });
        }
        let end = if s.size > 0 {
            s.value.checked_add(s.size)
        } else {
            Some(self.next_symbol_start(section, s.value))
        };
        match end {
            Some(end) if s.value <= sec.size && end <= sec.size => Ok(DefinedFunction {
                symbol: i,
                section,
                start: s.value,
                end,
            }),
            _ => Err(NotDefined::OutsideSection {
                section: sec.name.to_owned(),
                value: s.value,
                size: s.size,
            }),
        }
    }

    /// The defined function named exactly `name`, or why there is none
    /// (what the first symbol of that name is instead).
    pub fn function_named(&self, name: &str) -> Result<DefinedFunction, NotDefined> {
        self.first_defined(|s| s.name == name)
    }

    /// Like [`Self::function_named`], falling back to the demangled name
    /// (`foo` for `foo.constprop.0`).
    pub fn function_named_or_demangled(&self, name: &str) -> Result<DefinedFunction, NotDefined> {
        match self.function_named(name) {
            Err(NotDefined::Absent) => self.first_defined(|s| s.demangled == name),
            Err(why) => self.first_defined(|s| s.demangled == name).map_err(|_| why),
            found => found,
        }
    }

    fn first_defined(
        &self,
        matches: impl Fn(&Symbol) -> bool,
    ) -> Result<DefinedFunction, NotDefined> {
        let mut why = NotDefined::Absent;
        for (i, s) in self.symbols.enumerate() {
            if !matches(s) {
                continue;
            }
            match self.defined_function(i) {
                Ok(f) => return Ok(f),
                Err(e) if why == NotDefined::Absent => why = e,
                Err(_) => {}
            }
        }
        Err(why)
    }

    /// Where code without a `.size` at `after` of `section` ends: at the
    /// next named symbol, or at the end of the section.
    fn next_symbol_start(&self, section: SectionIndex, after: u64) -> u64 {
        let sec = &self.sections[section];
        sec.named
            .iter()
            .map(|&i| self.symbols[i].value)
            .find(|&v| v > after)
            .unwrap_or(sec.size)
            .min(sec.size)
    }

    /// The named function or data object in `section` that covers `offset`
    /// (a zero-sized symbol covers just its own address).
    pub fn symbol_at(&self, section: SectionIndex, offset: u64) -> Option<SymbolIndex> {
        let named = &self.sections[section].named;
        let end = named.partition_point(|&i| self.symbols[i].value <= offset);
        // Symbols rarely overlap beyond aliases of one address, so a short
        // look back finds any cover; a missed one only means the place is
        // described by its contents instead of by name.
        named[..end].iter().rev().take(16).copied().find(|&i| {
            let s = &self.symbols[i];
            offset < s.value.saturating_add(s.size) || offset == s.value
        })
    }

    /// Where the anonymous region that starts at `offset` ends: the next
    /// start recorded for the section, or its end.
    pub fn region_end(&self, section: SectionIndex, offset: u64) -> u64 {
        let sec = &self.sections[section];
        let i = sec.starts.partition_point(|&s| s <= offset);
        sec.starts.get(i).copied().unwrap_or(sec.size).min(sec.size)
    }

    /// The relocations of `section` whose field starts in `[start, end)`.
    pub fn relocs_in(&self, section: SectionIndex, start: u64, end: u64) -> &[Reloc] {
        let relocs = &self.sections[section].relocs;
        let a = relocs.partition_point(|r| r.offset < start);
        let b = relocs.partition_point(|r| r.offset < end);
        &relocs[a..b]
    }
}

fn section_kind(sh_type: u32, flags: u64) -> SectionKind {
    if flags & elf::SHF_ALLOC.0 == 0 {
        SectionKind::NotAlloc
    } else if sh_type == elf::SHT_NOBITS.0 {
        SectionKind::Bss
    } else if flags & elf::SHF_EXECINSTR.0 != 0 {
        SectionKind::Code
    } else if flags & elf::SHF_STRINGS.0 != 0 {
        SectionKind::Strings
    } else if flags & elf::SHF_MERGE.0 != 0 {
        SectionKind::Constants
    } else if flags & elf::SHF_WRITE.0 != 0 {
        SectionKind::Writable
    } else {
        SectionKind::ReadOnly
    }
}

/// Whether the `R_X86_64_NONE` relocation at `offset` of a section's `data`,
/// against symbol `sym`, is a `call __fentry__` that objtool's `--mcount`
/// recorded: the undefined `__fentry__`, and at `offset - 1` the 5-byte NOP
/// objtool wrote (or the call itself, should it leave the bytes).
fn is_recorded_fentry_call(
    file: &ElfFile64<'_, Endianness>,
    data: &[u8],
    offset: u64,
    sym: object::SymbolIndex,
) -> bool {
    let Some(at) = usize::try_from(offset).ok().filter(|&at| at >= 1) else {
        return false;
    };
    matches!(
        data.get(at - 1..at + 4),
        Some([0x0f, 0x1f, 0x44, 0x00, 0x00] | [0xe8, 0, 0, 0, 0])
    ) && file
        .symbol_by_index(sym)
        .is_ok_and(|s| s.is_undefined() && s.name() == Ok("__fentry__"))
}

/// Field width in bytes and whether the value is relative to the field's
/// own address, for each x86-64 relocation type (0 width: no field).
fn reloc_shape(r_type: elf::RelocationType) -> (u8, bool) {
    match r_type {
        elf::R_X86_64_NONE | elf::R_X86_64_TLSDESC_CALL => (0, false),
        elf::R_X86_64_64
        | elf::R_X86_64_GOTOFF64
        | elf::R_X86_64_DTPMOD64
        | elf::R_X86_64_DTPOFF64
        | elf::R_X86_64_TPOFF64
        | elf::R_X86_64_SIZE64 => (8, false),
        elf::R_X86_64_PC64 | elf::R_X86_64_GOTPC64 | elf::R_X86_64_GOTPCREL64 => (8, true),
        elf::R_X86_64_16 => (2, false),
        elf::R_X86_64_PC16 => (2, true),
        elf::R_X86_64_8 => (1, false),
        elf::R_X86_64_PC8 => (1, true),
        elf::R_X86_64_PC32
        | elf::R_X86_64_PLT32
        | elf::R_X86_64_GOTPCREL
        | elf::R_X86_64_GOTPCRELX
        | elf::R_X86_64_REX_GOTPCRELX
        | elf::R_X86_64_GOTPC32
        | elf::R_X86_64_TLSGD
        | elf::R_X86_64_TLSLD
        | elf::R_X86_64_GOTTPOFF
        | elf::R_X86_64_GOTPC32_TLSDESC => (4, true),
        _ => (4, false),
    }
}

fn comment_text(data: &[u8]) -> Option<String> {
    let parts: Vec<String> = data
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).trim().to_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn malformed(e: object::read::Error) -> ObjectError {
    ObjectError::Malformed(e.to_string())
}

fn bad_symbol(sec: &Section, r: &Reloc) -> ObjectError {
    ObjectError::Malformed(format!(
        "relocation at {}+{:#x} names symbol {} which does not exist",
        sec.name, r.offset, r.symbol.0
    ))
}

fn empty_section() -> Section<'static> {
    Section {
        name: "",
        kind: SectionKind::NotAlloc,
        data: &[],
        size: 0,
        entsize: 0,
        align: 0,
        flags: 0,
        sh_type: 0,
        relocs: Vec::new(),
        fentry_sites: Vec::new(),
        named: Vec::new(),
        starts: Vec::new(),
    }
}

fn null_symbol() -> Symbol<'static> {
    Symbol {
        name: "",
        demangled: Cow::Borrowed(""),
        sym_type: SymType::Other,
        binding: elf::STB_LOCAL.0,
        section: None,
        value: 0,
        size: 0,
        file: None,
    }
}
