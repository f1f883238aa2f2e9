//! The post-link rewrite of a livepatch `.ko`: linkers keep neither
//! `SHN_LIVEPATCH` symbols nor `SHF_RELA_LIVEPATCH` sections, so the patch
//! object refers to the running kernel's private symbols through undefined
//! symbols named `.klp.sym.<target>.<name>,<sympos>`, and once kbuild has
//! linked the module this turns them into what the kernel's livepatch core
//! expects (Documentation/livepatch/module-elf-format.rst):
//!
//! - each such symbol gets `st_shndx = SHN_LIVEPATCH`;
//! - the relocations against them move out of `.rela<section>` into
//!   `.klp.rela.<target>.<section>` (`SHT_RELA`, flags
//!   `SHF_ALLOC | SHF_INFO_LINK | SHF_RELA_LIVEPATCH`), which the module
//!   loader leaves alone and livepatch applies when the target is loaded.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use object::build::elf::{Builder, SectionData};
use object::build::Id as _;
use object::elf;

pub const SHN_LIVEPATCH: u16 = 0xff20;
pub const SHF_RELA_LIVEPATCH: u64 = 0x0010_0000;
pub const KLP_SYM_PREFIX: &str = ".klp.sym.";

/// Why a linked module cannot be rewritten.
#[derive(Debug)]
pub enum RewriteError {
    Read(object::build::Error),
    /// A `.klp.sym.*` symbol that the module defines.
    Defined(String),
    NoSymbolTable,
    Write(object::build::Error),
}

impl fmt::Display for RewriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RewriteError::Read(e) => write!(f, "reading the linked module: {e}"),
            RewriteError::Defined(name) => {
                write!(f, "{name} is defined in the module; it must be undefined")
            }
            RewriteError::NoSymbolTable => f.write_str("the linked module has no symbol table"),
            RewriteError::Write(e) => write!(f, "writing the rewritten module: {e}"),
        }
    }
}

impl std::error::Error for RewriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RewriteError::Read(e) | RewriteError::Write(e) => Some(e),
            RewriteError::Defined(_) | RewriteError::NoSymbolTable => None,
        }
    }
}

/// `SHT_LLVM_ADDRSIG`: clang's address-significance table (`.llvm_addrsig`),
/// which ld.lld keeps in a relocatable link such as a module's.
const SHT_LLVM_ADDRSIG: elf::SectionType = elf::SectionType(0x6fff_4c03);

/// The sections of `ko` that are address-significance tables, with a copy
/// of `ko` in which they are plain `SHT_PROGBITS`, or `None` when it has
/// none. object's builder refuses the type; only lld's identical code
/// folding reads the table (the module loader never does, and a module is
/// never linked again), and its contents are symbol indices that the
/// rewrite would make stale, so the rewrite drops it.
fn neutralise_addrsig(ko: &[u8]) -> Option<(Vec<u8>, Vec<usize>)> {
    use object::read::elf::{FileHeader as _, SectionHeader as _};
    let header = elf::FileHeader64::<object::Endianness>::parse(ko).ok()?;
    let endian = header.endian().ok()?;
    let headers = header.section_headers(endian, ko).ok()?;
    let found: Vec<usize> = (0..headers.len())
        .filter(|&i| headers[i].sh_type(endian) == SHT_LLVM_ADDRSIG)
        .collect();
    if found.is_empty() {
        return None;
    }
    let shoff = usize::try_from(header.e_shoff(endian)).ok()?;
    let entsize = std::mem::size_of::<elf::SectionHeader64<object::Endianness>>();
    let mut copy = ko.to_vec();
    for &i in &found {
        let at = shoff + i * entsize + 4; // sh_type follows sh_name
        let bytes = match endian {
            object::Endianness::Little => elf::SHT_PROGBITS.0.to_le_bytes(),
            object::Endianness::Big => elf::SHT_PROGBITS.0.to_be_bytes(),
        };
        copy.get_mut(at..at + 4)?.copy_from_slice(&bytes);
    }
    Some((copy, found))
}

/// Rewrites the linked module `ko`; returns the new file and the number of
/// klp relocations written.
pub fn rewrite(ko: &[u8]) -> Result<(Vec<u8>, usize), RewriteError> {
    let neutralised = neutralise_addrsig(ko);
    let input = neutralised.as_ref().map_or(ko, |(copy, _)| copy);
    let mut b = Builder::read(input).map_err(RewriteError::Read)?;
    if let Some((_, addrsig)) = &neutralised {
        for sec in b.sections.iter_mut() {
            // The builder's ids count from the first header after the null one.
            if addrsig.contains(&(sec.id().index() + 1)) {
                sec.delete = true;
            }
        }
    }
    let mut target_of = HashMap::new();
    for sym in b.symbols.iter_mut() {
        let name = String::from_utf8_lossy(&sym.name).into_owned();
        let Some(rest) = name.strip_prefix(KLP_SYM_PREFIX) else {
            continue;
        };
        let target = rest.split('.').next().unwrap_or_default().to_owned();
        if sym.st_shndx != elf::SHN_UNDEF {
            return Err(RewriteError::Defined(name));
        }
        sym.st_shndx = elf::SymbolSection(SHN_LIVEPATCH);
        sym.section = None;
        target_of.insert(sym.id().index(), target);
    }
    let symtab = b
        .sections
        .iter()
        .find(|s| matches!(s.data, SectionData::Symbol))
        .map(|s| s.id())
        .ok_or(RewriteError::NoSymbolTable)?;

    let mut moved = 0;
    let mut new_sections = Vec::new();
    for sec in b.sections.iter_mut() {
        let SectionData::Relocation(relocs) = &mut sec.data else {
            continue;
        };
        let Some(info) = sec.sh_info_section else {
            continue;
        };
        let mut by_target: BTreeMap<String, Vec<_>> = BTreeMap::new();
        relocs.retain(|r| match r.symbol.and_then(|s| target_of.get(&s.index())) {
            Some(t) => {
                by_target.entry(t.clone()).or_default().push(*r);
                false
            }
            None => true,
        });
        for (target, relocs) in by_target {
            moved += relocs.len();
            new_sections.push((target, info, relocs));
        }
    }
    for (target, info, relocs) in new_sections {
        let info_name = String::from_utf8_lossy(&b.sections.get(info).name).into_owned();
        let sec = b.sections.add();
        sec.name = format!(".klp.rela.{target}.{info_name}")
            .into_bytes()
            .into();
        sec.sh_type = elf::SHT_RELA;
        sec.sh_flags =
            elf::SectionFlags(elf::SHF_ALLOC.0 | elf::SHF_INFO_LINK.0 | SHF_RELA_LIVEPATCH);
        sec.sh_link_section = Some(symtab);
        sec.sh_info_section = Some(info);
        sec.sh_addralign = 8;
        sec.sh_entsize = 24;
        sec.data = SectionData::Relocation(relocs);
    }
    let mut out = Vec::new();
    b.write(&mut out).map_err(RewriteError::Write)?;
    Ok((out, moved))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::read::elf::{ElfFile64, SectionHeader, Sym as _};
    use object::write::{Object, Relocation, Symbol, SymbolSection};
    use object::{
        Architecture, BinaryFormat, Endianness, Object as _, ObjectSection as _, RelocationFlags,
        SectionKind, SymbolFlags, SymbolKind, SymbolScope,
    };

    fn module_like() -> Vec<u8> {
        let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let text = obj.add_section(Vec::new(), b".text.f".to_vec(), SectionKind::Text);
        obj.set_section_data(text, vec![0xe8, 0, 0, 0, 0, 0xe8, 0, 0, 0, 0, 0xc3], 16);
        let mut undefined = |name: &str| {
            obj.add_symbol(Symbol {
                name: name.as_bytes().to_vec(),
                value: 0,
                size: 0,
                kind: SymbolKind::Unknown,
                scope: SymbolScope::Dynamic,
                weak: false,
                section: SymbolSection::Undefined,
                flags: SymbolFlags::None,
            })
        };
        let klp = undefined(".klp.sym.vmlinux.saved_command_line,0");
        let exported = undefined("seq_puts");
        for (offset, symbol) in [(1, klp), (6, exported)] {
            obj.add_relocation(
                text,
                Relocation {
                    offset,
                    symbol,
                    addend: -4,
                    flags: RelocationFlags::Elf {
                        r_type: elf::R_X86_64_PC32,
                    },
                },
            )
            .unwrap();
        }
        obj.write().unwrap()
    }

    #[test]
    fn klp_symbols_and_relocations_are_rewritten() {
        let (out, moved) = rewrite(&module_like()).unwrap();
        assert_eq!(moved, 1);
        let file = ElfFile64::<Endianness>::parse(&*out).unwrap();
        let endian = file.endian();
        let klp_sym = file
            .elf_symbol_table()
            .symbols()
            .iter()
            .find(|s| {
                file.elf_symbol_table().symbol_name(endian, s).unwrap()
                    == b".klp.sym.vmlinux.saved_command_line,0"
            })
            .unwrap();
        assert_eq!(klp_sym.st_shndx(endian).0, SHN_LIVEPATCH);
        let rela = file
            .sections()
            .find(|s| s.name() == Ok(".klp.rela.vmlinux..text.f"))
            .expect("a .klp.rela section");
        let h = rela.elf_section_header();
        assert_eq!(h.sh_type(endian), elf::SHT_RELA);
        assert_eq!(
            h.sh_flags(endian).0,
            elf::SHF_ALLOC.0 | elf::SHF_INFO_LINK.0 | SHF_RELA_LIVEPATCH
        );
        let text = file.sections().find(|s| s.name() == Ok(".text.f")).unwrap();
        assert_eq!(h.sh_info(endian) as usize, text.index().0);
        assert_eq!(
            rela.relocations().count(),
            0,
            "object reads no relocations from a klp section"
        );
        assert_eq!(h.sh_size(endian), 24, "one klp relocation");
        // The exported symbol keeps its normal relocation, alone.
        let normal = file
            .sections()
            .find(|s| s.name() == Ok(".rela.text.f"))
            .unwrap();
        assert_eq!(normal.elf_section_header().sh_size(endian), 24);
    }

    #[test]
    fn clangs_address_significance_table_is_dropped() {
        // What ld.lld -r leaves in a module compiled by clang.
        let mut w = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let text = w.add_section(Vec::new(), b".text.f".to_vec(), SectionKind::Text);
        w.set_section_data(text, vec![0xe8, 0, 0, 0, 0, 0xc3], 16);
        let klp = w.add_symbol(Symbol {
            name: b".klp.sym.vmlinux.saved_command_line,0".to_vec(),
            value: 0,
            size: 0,
            kind: SymbolKind::Unknown,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Undefined,
            flags: SymbolFlags::None,
        });
        w.add_relocation(
            text,
            Relocation {
                offset: 1,
                symbol: klp,
                addend: -4,
                flags: RelocationFlags::Elf {
                    r_type: elf::R_X86_64_PC32,
                },
            },
        )
        .unwrap();
        let addrsig = w.add_section(Vec::new(), b".llvm_addrsig".to_vec(), SectionKind::Metadata);
        w.set_section_data(addrsig, vec![1, 2], 1);
        w.section_mut(addrsig).flags = object::SectionFlags::Elf {
            sh_type: SHT_LLVM_ADDRSIG,
            sh_flags: elf::SHF_EXCLUDE,
        };
        let ko = w.write().unwrap();
        assert!(
            Builder::read(&*ko).is_err(),
            "object's builder refuses the type"
        );
        let (out, moved) = rewrite(&ko).unwrap();
        assert_eq!(moved, 1);
        let file = ElfFile64::<Endianness>::parse(&*out).unwrap();
        assert!(file.sections().all(|s| s.name() != Ok(".llvm_addrsig")));
        assert!(file
            .sections()
            .any(|s| s.name() == Ok(".klp.rela.vmlinux..text.f")));
    }

    #[test]
    fn a_defined_klp_symbol_is_refused() {
        let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let text = obj.add_section(Vec::new(), b".text".to_vec(), SectionKind::Text);
        obj.set_section_data(text, vec![0xc3], 1);
        obj.add_symbol(Symbol {
            name: b".klp.sym.vmlinux.x,0".to_vec(),
            value: 0,
            size: 1,
            kind: SymbolKind::Text,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Section(text),
            flags: SymbolFlags::None,
        });
        let e = rewrite(&obj.write().unwrap()).unwrap_err();
        assert!(e.to_string().contains("must be undefined"), "{e}");
    }
}
