//! The kernel's special sections: tables whose entries describe code (a
//! static-key site, an exception fixup, an alternative, an ORC entry), in
//! one table that the checksums and the extraction both read.
//!
//! For each known section it says how the checksum treats it (its entries
//! are folded into the function they point at, or the section only restates
//! what the instructions say or is added by objtool after the compile, and
//! is skipped so that a manifest matches the object before and after
//! objtool) and what the extraction does with the entries about copied code
//! (carried with it, or dropped because the kernel only does less without
//! them). An entry belongs to what its first field points at. Entry sizes
//! differ between kernel versions and configurations: `sh_entsize` when the
//! producer set it, else inferred from the layout of the relocations.

use crate::elf::Reloc;

/// How a function's checksum treats a table's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InChecksum {
    /// Each entry is hashed into the function it points at.
    Folded,
    /// Derived from the instructions, or written by objtool: left out.
    Derived,
}

/// What the extraction does with the entries about copied code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InPatch {
    /// Copied with the code, entry by entry.
    Carried,
    /// Left out: without them the kernel only does less (an ENDBR stays
    /// unsealed), never something wrong.
    Dropped,
    /// Not a table the extraction handles: entries about copied code make
    /// it refuse.
    Refused,
}

/// One known special section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Special {
    pub name: &'static str,
    pub checksum: InChecksum,
    pub patch: InPatch,
}

const fn special(name: &'static str, checksum: InChecksum, patch: InPatch) -> Special {
    Special {
        name,
        checksum,
        patch,
    }
}

use InChecksum::{Derived, Folded};
use InPatch::{Carried, Dropped, Refused};

/// Every special section klp-cc knows, sorted by name.
pub const SPECIAL_SECTIONS: &[Special] = &[
    special(".altinstructions", Folded, Carried),
    special(".call_sites", Derived, Carried),
    special(".cfi_sites", Derived, Refused),
    special(".eh_frame", Derived, Refused),
    special(".ibt_endbr_seal", Derived, Dropped),
    special(".kcfi_traps", Folded, Carried),
    special(".orc_header", Derived, Refused),
    special(".orc_unwind", Derived, Refused),
    special(".orc_unwind_ip", Derived, Carried),
    special(".parainstructions", Folded, Carried),
    special(".retpoline_sites", Derived, Carried),
    special(".return_sites", Derived, Carried),
    special(".smp_locks", Folded, Carried),
    special(".static_call_sites", Derived, Carried),
    special("__bug_table", Folded, Carried),
    special("__ex_table", Folded, Carried),
    special("__jump_table", Folded, Carried),
    special("__mcount_loc", Derived, Carried),
    // Carried it would break the module link: gcc emits one section per
    // function with SHF_LINK_ORDER (CALL_PADDING's nops), and ld refuses to
    // merge ordered and unordered inputs. On x86-64 nothing reads it: vmlinux
    // discards it and ftrace finds call sites through __mcount_loc. (On a
    // future arm64 backend it is ftrace's table and must be carried, linked.)
    special("__patchable_function_entries", Derived, Dropped),
];

/// The known special section `name`; `.discard.*` sections, which every
/// kernel link drops, are derived and dropped.
pub fn lookup(name: &str) -> Option<Special> {
    if name.starts_with(".discard.") {
        return Some(special(".discard.*", Derived, Dropped));
    }
    SPECIAL_SECTIONS
        .binary_search_by(|s| s.name.cmp(name))
        .ok()
        .map(|i| SPECIAL_SECTIONS[i])
}

/// Whether objtool writes table `name` when it runs on a module's linked
/// object (kernels that delay objtool, see [`crate::link::tree::Tree`]).
/// Such a table in a patch object would make that pass refuse the module
/// (ORC) or skip the table for the whole module (the others), so the
/// extraction leaves it to objtool. `__mcount_loc` and `.static_call_sites`
/// are not here: objtool keeps a livepatch module's own (7.x says so; 6.12
/// warns), and gcc's `__mcount_loc` is not objtool's.
pub fn written_by_module_objtool(name: &str) -> bool {
    matches!(
        name,
        ".orc_unwind"
            | ".orc_unwind_ip"
            | ".orc_header"
            | ".call_sites"
            | ".return_sites"
            | ".retpoline_sites"
            | ".ibt_endbr_seal"
            | ".cfi_sites"
    )
}

/// Whether `name` is one of the annotations objtool reads from the object
/// it checks: which instructions are reachable after a `ud2` (every WARN),
/// unwind hints it builds ORC from, retpoline-safe indirect branches,
/// ENDBR-less entries, `noinstr` bounds and the like. Every kernel link
/// drops them, but on a kernel that delays objtool ([`written_by_module_objtool`])
/// objtool reads them again from the livepatch module's linked object, so
/// a copied function keeps its entries: without them objtool would build
/// ORC as if code after a WARN were dead and warn of what its kernel build
/// never did. `.discard.annotate_insn` is 6.13+'s one table for them all;
/// the others are the tables it replaced. `STACK_FRAME_NON_STANDARD`'s
/// table names whole functions objtool must not validate.
pub fn read_by_module_objtool(name: &str) -> bool {
    matches!(
        name,
        ".discard.annotate_insn"
            | ".discard.func_stack_frame_non_standard"
            | ".discard.unwind_hints"
            | ".discard.reachable"
            | ".discard.unreachable"
            | ".discard.retpoline_safe"
            | ".discard.noendbr"
            | ".discard.ibt_endbr_noseal"
            | ".discard.instr_begin"
            | ".discard.instr_end"
            | ".discard.intra_function_calls"
            | ".discard.ignore_alts"
            | ".discard.validate_unret"
    )
}

/// Whether `name` is an export table: the `___ksymtab+NAME` and
/// `___ksymtab_gpl+NAME` entries (and their CRCs, `__kcrctab+NAME`) of
/// kernels before 6.5, or `.export_symbol`, which modpost reads since. A
/// patch object leaves them out: the running kernel's export of a
/// replaced function stays, and livepatch sends callers that come through
/// it to the copy.
pub fn is_export_table(name: &str) -> bool {
    [
        "___ksymtab+",
        "___ksymtab_gpl+",
        "__kcrctab+",
        "__kcrctab_gpl+",
    ]
    .iter()
    .any(|p| name.starts_with(p))
        || matches!(
            name,
            "__ksymtab" | "__ksymtab_gpl" | "__kcrctab" | "__kcrctab_gpl" | ".export_symbol"
        )
}

/// Whether the checksums leave section `name` out.
pub fn is_derived(name: &str) -> bool {
    lookup(name).is_some_and(|s| s.checksum == Derived)
}

/// The size of one entry of a table of `size` bytes with `entsize` from its
/// header and relocations `relocs` (sorted by offset).
pub fn entry_size(size: u64, entsize: u64, relocs: &[Reloc]) -> u64 {
    if entsize > 0 && size % entsize == 0 {
        entsize
    } else {
        inferred_entry_size(size, relocs)
    }
}

/// The smallest entry size that divides the section into entries which all
/// carry relocations at the same offsets; the whole section if none does.
pub fn inferred_entry_size(size: u64, relocs: &[Reloc]) -> u64 {
    if size == 0 {
        return 1;
    }
    let mut divisors: Vec<u64> = (1..)
        .take_while(|d| d * d <= size)
        .filter(|d| size % d == 0)
        .flat_map(|d| [d, size / d])
        .collect();
    divisors.sort_unstable();
    divisors.dedup();
    divisors
        .into_iter()
        .find(|&e| uniform(size, e, relocs))
        .unwrap_or(size)
}

fn uniform(size: u64, e: u64, relocs: &[Reloc]) -> bool {
    let first: Vec<u64> = relocs
        .iter()
        .take_while(|r| r.offset < e)
        .map(|r| r.offset)
        .collect();
    if first.is_empty() || relocs.len() as u64 != first.len() as u64 * (size / e) {
        return false;
    }
    relocs.chunks(first.len()).enumerate().all(|(k, chunk)| {
        let base = k as u64 * e;
        chunk.iter().zip(&first).all(|(r, &f)| r.offset == base + f)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_without_duplicates() {
        assert!(SPECIAL_SECTIONS.windows(2).all(|w| w[0].name < w[1].name));
        assert_eq!(lookup("__jump_table").unwrap().patch, Carried);
        assert!(is_derived(".discard.addressable"));
        assert!(is_derived(".orc_unwind"));
        assert!(!is_derived("__bug_table"));
        assert_eq!(lookup(".rodata"), None);
    }

    fn relocs(offsets: &[u64]) -> Vec<Reloc> {
        offsets
            .iter()
            .map(|&offset| Reloc {
                offset,
                r_type: 2,
                width: 4,
                pc_relative: true,
                symbol: crate::elf::SymbolIndex(0),
                addend: 0,
            })
            .collect()
    }

    #[test]
    fn infers_kernel_entry_sizes() {
        // __jump_table: code, target, key per 16 bytes.
        assert_eq!(
            inferred_entry_size(48, &relocs(&[0, 4, 8, 16, 20, 24, 32, 36, 40])),
            16
        );
        // __bug_table with DEBUG_BUGVERBOSE: address, file per 12 bytes.
        assert_eq!(
            inferred_entry_size(36, &relocs(&[0, 4, 12, 16, 24, 28])),
            12
        );
        // one entry: the whole section.
        assert_eq!(inferred_entry_size(12, &relocs(&[0, 4])), 12);
        // .smp_locks: one pointer per 4 bytes.
        assert_eq!(inferred_entry_size(12, &relocs(&[0, 4, 8])), 4);
        // irregular: one entry.
        assert_eq!(inferred_entry_size(24, &relocs(&[0, 4, 16])), 24);
        // objtool's sh_entsize wins when it divides the section.
        assert_eq!(entry_size(16, 8, &relocs(&[0, 4, 8, 12])), 8);
    }
}
