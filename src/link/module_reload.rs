//! Whether a patched module can be unloaded and loaded again under the
//! livepatch. The kernel writes a livepatch's klp relocations into a
//! module's object when that module comes; Linux before 6.2 does not clear
//! them when it goes (`clear_relocate_add()`), so loading it again finds
//! the places already written and the kernel refuses the module ("Skipping
//! invalid relocation target"). The report says so: it is the kernel's
//! limit, and the module's users need to know before they rely on a
//! reload.

use std::collections::BTreeSet;
use std::path::Path;

use object::{Object, ObjectSection};

/// The report's note for livepatch module `ko` built with the tree at
/// `objtree`, when the tree's kernel keeps klp relocations across a module
/// reload and the livepatch has some into a module.
pub fn note(objtree: &Path, ko: &[u8]) -> Option<String> {
    let modules = relocated_modules(ko);
    if modules.is_empty() || clears_relocations(objtree)? {
        return None;
    }
    let names: Vec<&str> = modules.iter().map(String::as_str).collect();
    Some(format!(
        "the livepatch has klp relocations into {}, and this kernel does not clear them when a \
         module is unloaded (its kernel/livepatch/core.c has no clear_relocate_add(): Linux \
         before 6.2): while the livepatch is loaded, such a module, once unloaded, cannot be \
         loaded again (\"Skipping invalid relocation target\"); unload the livepatch first",
        names.join(", ")
    ))
}

/// The modules named by the livepatch's `.klp.rela.<object>.<section>`
/// sections.
fn relocated_modules(ko: &[u8]) -> BTreeSet<String> {
    let Ok(file) = object::File::parse(ko) else {
        return BTreeSet::new();
    };
    file.sections()
        .filter_map(|s| {
            let name = s.name().ok()?;
            let object = name.strip_prefix(".klp.rela.")?.split('.').next()?;
            (object != "vmlinux").then(|| object.to_owned())
        })
        .collect()
}

/// Whether the tree's kernel clears klp relocations on a module's removal;
/// `None` when its livepatch core cannot be read (say nothing then).
fn clears_relocations(objtree: &Path) -> Option<bool> {
    let srctree = std::fs::canonicalize(objtree.join("source"))
        .ok()
        .filter(|s| s.is_dir())
        .unwrap_or_else(|| objtree.to_owned());
    let core = std::fs::read_to_string(srctree.join("kernel/livepatch/core.c")).ok()?;
    Some(core.contains("clear_relocate_add"))
}

#[cfg(test)]
mod tests {
    use super::clears_relocations;

    #[test]
    fn the_kernels_livepatch_core_tells() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(clears_relocations(dir.path()), None);
        std::fs::create_dir_all(dir.path().join("kernel/livepatch")).unwrap();
        let core = dir.path().join("kernel/livepatch/core.c");
        std::fs::write(&core, "static void klp_free_object_loaded(void) {}\n").unwrap();
        assert_eq!(clears_relocations(dir.path()), Some(false));
        std::fs::write(
            &core,
            "\tclear_relocate_add(sechdrs, strtab, symndx, i, mod);\n",
        )
        .unwrap();
        assert_eq!(clears_relocations(dir.path()), Some(true));
    }
}
