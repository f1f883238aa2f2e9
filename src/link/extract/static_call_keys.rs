//! Static-call keys for objtool's pass over the livepatch module, in kernels
//! that delay objtool ([`super::RunningKernel::objtool_on_modules`]).
//!
//! That pass turns a call to a trampoline `__SCT__x` into a
//! `.static_call_sites` entry keyed by `__SCK__x` only when the object has
//! a symbol of that name. Without one it records the trampoline instead,
//! which the module loader can resolve only for keys exported with
//! `EXPORT_STATIC_CALL_TRAMP`; for any other key insmod fails ("Failed to
//! fixup __raw_static_call() usage"). Compiled code names its keys in
//! `.discard.addressable` (`static_call()`'s `__STATIC_CALL_ADDRESSABLE`),
//! which the copy leaves behind, so the patch object names them the same
//! way. A trampoline that vmlinux does not export is reached through a
//! `.klp.sym.*` symbol, which objtool does not take for a static call: the
//! call goes through the trampoline, which always jumps to the current
//! target.

use std::collections::HashMap;

use object::write::{Object, Relocation, SymbolId};
use object::{elf, RelocationFlags, SectionKind};

use super::{named_symbol, ExtractError};
use crate::link::symvers::Exports;
use crate::link::tree::VMLINUX;

const TRAMPOLINE_PREFIX: &str = "__SCT__";
const KEY_PREFIX: &str = "__SCK__";

/// Adds a `.discard.addressable` pointer to `__SCK__x` for every `__SCT__x`
/// the patch object refers to by name whose key vmlinux exports.
pub(super) fn address_keys(
    out: &mut Object<'static>,
    by_name: &mut HashMap<String, SymbolId>,
    exports: &Exports,
) -> Result<(), ExtractError> {
    let mut keys: Vec<String> = by_name
        .keys()
        .filter_map(|name| name.strip_prefix(TRAMPOLINE_PREFIX))
        .map(|call| format!("{KEY_PREFIX}{call}"))
        .filter(|key| exports.exporter(key) == Some(VMLINUX))
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    keys.sort();
    let section = out.add_section(
        Vec::new(),
        b".discard.addressable".to_vec(),
        SectionKind::Data,
    );
    for (k, key) in keys.iter().enumerate() {
        let symbol = named_symbol(out, by_name, key);
        out.append_section_data(section, &[0; 8], 8);
        out.add_relocation(
            section,
            Relocation {
                offset: 8 * k as u64,
                symbol,
                addend: 0,
                flags: RelocationFlags::Elf {
                    r_type: elf::R_X86_64_64,
                },
            },
        )
        .map_err(|e| ExtractError::Write(e.to_string()))?;
    }
    Ok(())
}
