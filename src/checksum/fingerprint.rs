//! A cheap hash of an object's contents that objtool leaves alone, so that
//! a manifest written right after the compile can be checked against the
//! final object without recomputing its checksums.
//!
//! kbuild runs objtool on each object in the same rule as the compile. In
//! place, objtool adds sections (ORC, retpoline/return/static-call sites)
//! and turns jump-label `jmp`s into NOPs of the same length. So the hash
//! leaves out the sections objtool adds and the bytes of jump-label sites,
//! and names relocation targets by section and offset (not by symbol index,
//! which objtool may shift). Everything else goes in: every other loaded
//! section's name, size, bytes and relocations, and every named symbol.

use crate::arch::{x86_64::X86_64, Arch as _};
use object::elf;
use xxhash_rust::xxh3::Xxh3;

use super::code::FENTRY_CALL;
use super::describe::HashExt;
use super::tables::Tables;
use crate::elf::{ElfIndex, SectionIndex, SectionKind, SymType, SymbolIndex};
use crate::special_sections::is_derived;

pub fn fingerprint(index: &ElfIndex, tables: &Tables) -> u64 {
    let mut h = Xxh3::new();
    let mut sections: Vec<SectionIndex> = index
        .sections
        .indices()
        .filter(|&i| {
            let s = &index.sections[i];
            s.kind != SectionKind::NotAlloc && !is_derived(s.name)
        })
        .collect();
    sections.sort_by_key(|&i| (index.sections[i].name, i));
    for &i in &sections {
        let s = &index.sections[i];
        h.bytes(s.name.as_bytes());
        h.u64(s.size);
        let mut bytes = s.data.to_vec();
        let mut sites = Vec::new();
        if s.kind == SectionKind::Code {
            for site in tables.jump_label_sites(i) {
                let at = site as usize;
                if at >= bytes.len() {
                    continue;
                }
                let len = X86_64
                    .decode(&bytes[at..], 0)
                    .next()
                    .map_or(1, |i| usize::from(i.len).max(1));
                let end = (at + len).min(bytes.len());
                bytes[at..end].fill(0);
                sites.push(at as u64..end as u64);
            }
        }
        // A `call __fentry__` that objtool --mcount NOPped, with its
        // relocation made R_X86_64_NONE (clang kernels): the call and the
        // relocation the compiler wrote.
        let mut relocs: Vec<(u64, u32, SymbolIndex, i64)> = Vec::new();
        for site in &s.fentry_sites {
            let Some(at) = usize::try_from(site.offset).ok().filter(|&at| at >= 1) else {
                continue;
            };
            if let Some(call) = bytes.get_mut(at - 1..at + 4) {
                call.copy_from_slice(&FENTRY_CALL);
                relocs.push((site.offset, elf::R_X86_64_PLT32.0, site.symbol, site.addend));
            }
        }
        h.bytes(&bytes);
        // A site's `jmp` into another section (a .cold part) has a
        // relocation, which objtool drops with the jump.
        let at_site = |offset: &u64| sites.iter().any(|r| r.contains(offset));
        relocs.extend(
            s.relocs
                .iter()
                .filter(|r| !at_site(&r.offset))
                .map(|r| (r.offset, r.r_type, r.symbol, r.addend)),
        );
        relocs.sort_by_key(|r| r.0);
        for (offset, r_type, symbol, addend) in relocs {
            h.u64(offset);
            h.u64(u64::from(r_type));
            let target = &index.symbols[symbol];
            match target.section {
                Some(sec) => {
                    h.tag(1);
                    h.bytes(index.sections[sec].name.as_bytes());
                    h.u64(target.value.wrapping_add(addend as u64));
                }
                None => {
                    h.tag(2);
                    h.bytes(target.name.as_bytes());
                    h.u64(addend as u64);
                }
            }
        }
    }
    let mut symbols: Vec<SymbolIndex> = index
        .symbols
        .indices()
        .filter(|&i| {
            let s = &index.symbols[i];
            matches!(s.sym_type, SymType::Func | SymType::Object) && !s.name.is_empty()
        })
        .collect();
    symbols.sort_by_key(|&i| {
        let s = &index.symbols[i];
        (s.name, s.value, s.size)
    });
    for i in symbols {
        let s = &index.symbols[i];
        h.bytes(s.name.as_bytes());
        h.bytes(
            s.section
                .map(|sec| index.sections[sec].name)
                .unwrap_or_default()
                .as_bytes(),
        );
        h.u64(s.value);
        h.u64(s.size);
        h.tag(s.binding);
    }
    h.digest()
}
