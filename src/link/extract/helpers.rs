//! The marks the patch-author helper macros leave in a patched object.
//!
//! A patch's pre/post patch/unpatch callbacks: the patch source names them
//! with the helper macros (`KLP_PRE_PATCH_CALLBACK(fn)` of
//! `kbuild-snippets/include/livepatch_helpers.h`, upstream's header of the
//! same name since Linux 6.19, or kpatch's macros): each is a pointer
//! variable `__klp_<kind>_callback_<object>` in `.discard.klp_callback_ptrs`,
//! a section every kernel link drops. The pointer is carried into the patch
//! object under a section the module keeps, and the registration code
//! calls through it from the target's `klp_object` callbacks.

use super::{Copier, ExtractError, SymType};

/// Where kpatch-macros.h's KPATCH_IGNORE_FUNCTION and
/// KPATCH_IGNORE_SECTION record what they name.
const IGNORE_SECTION: &str = ".discard.klp_cc_ignore";

/// Where the helper macros put the callback pointers.
pub const CALLBACK_SECTION: &str = ".discard.klp_callback_ptrs";
/// Where the patch object keeps them.
const KEPT_SECTION: &str = ".data.klp_callback_ptrs";

/// The four callbacks of a `klp_object`, as `struct klp_callbacks` names
/// its members.
pub const KINDS: [&str; 4] = ["pre_patch", "post_patch", "pre_unpatch", "post_unpatch"];

/// One callback of the patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    /// `vmlinux` or the module's name.
    pub target: String,
    /// One of [`KINDS`].
    pub kind: &'static str,
    /// The pointer variable in the patch object.
    pub pointer: String,
}

/// The kind and object a callback pointer's name gives.
fn parse(name: &str) -> Option<(&'static str, &str)> {
    let rest = name.strip_prefix("__klp_")?;
    KINDS.iter().find_map(|&kind| {
        let object = rest.strip_prefix(kind)?.strip_prefix("_callback_")?;
        (!object.is_empty()).then_some((kind, object))
    })
}

impl Copier<'_, '_> {
    /// Refuses an object that asks for changed code to be left out:
    /// klp-link never leaves out a function that changed.
    pub(super) fn refuse_ignore_marks(&self) -> Result<(), ExtractError> {
        let index = self.index;
        let marks: Vec<&str> = index
            .symbols
            .iter()
            .filter(|s| {
                s.section
                    .is_some_and(|sec| index.sections[sec].name == IGNORE_SECTION)
            })
            .map(|s| s.name)
            .collect();
        if marks.is_empty() {
            return Ok(());
        }
        Err(self.refuse(format!(
            "it uses KPATCH_IGNORE_FUNCTION or KPATCH_IGNORE_SECTION ({}): klp-link does not \
             leave changed code out of a live patch; review what they name and drop the macros",
            marks.join(", ")
        )))
    }

    /// Carries the callback pointers this object defines; `earlier` are
    /// those of the objects before it.
    pub(super) fn copy_callbacks(
        &mut self,
        earlier: &[Callback],
    ) -> Result<Vec<Callback>, ExtractError> {
        let index = self.index;
        let mut found = Vec::new();
        for s in index.symbols.iter() {
            let Some(sec) = s.section else { continue };
            if index.sections[sec].name != CALLBACK_SECTION || s.sym_type != SymType::Object {
                continue;
            }
            let Some((kind, object)) = parse(s.name) else {
                return Err(self.refuse(format!(
                    "`{}` in {CALLBACK_SECTION} is not a callback the helper macros make \
                     (__klp_{{pre,post}}_{{patch,unpatch}}_callback_OBJECT)",
                    s.name
                )));
            };
            let target = self.source.target;
            // __KBUILD_MODNAME, which names a module's object, is
            // `kmod_NAME` before Linux 6.13 and `NAME` since.
            let object = object.strip_prefix("kmod_").unwrap_or(object);
            if object != target.replace('-', "_") {
                return Err(self.refuse(format!(
                    "callback `{}` is for `{object}`, but its object belongs to `{target}`",
                    s.name
                )));
            }
            if earlier
                .iter()
                .chain(&found)
                .any(|c: &Callback| c.pointer == s.name)
            {
                return Err(self.refuse(format!(
                    "two {kind} callbacks for `{target}`; a klp_object has one of each"
                )));
            }
            let (id, _) = self.copy_section_as(sec, KEPT_SECTION)?;
            self.define(s.name, id, s.value, s.size, object::SymbolKind::Data);
            found.push(Callback {
                target: target.to_owned(),
                kind,
                pointer: s.name.to_owned(),
            });
        }
        for c in &found {
            self.notes.push(format!(
                "{}: the {} callback of `{}` (`{}`) runs as its klp_object's",
                self.source.object_name, c.kind, c.target, c.pointer
            ));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_kind_and_object() {
        assert_eq!(
            parse("__klp_pre_patch_callback_vmlinux"),
            Some(("pre_patch", "vmlinux"))
        );
        assert_eq!(
            parse("__klp_post_unpatch_callback_nfsd"),
            Some(("post_unpatch", "nfsd"))
        );
        assert_eq!(parse("__klp_pre_patch_callback_"), None);
        assert_eq!(parse("__klp_sideways_callback_vmlinux"), None);
    }
}
