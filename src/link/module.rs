//! The livepatch module: registration code generated from the diff, built
//! with the patch object by the target kernel's own kbuild (`make -C TREE
//! M=DIR`), then rewritten for klp relocations. The Kbuild file and the
//! registration code come from `kbuild-snippets/`, embedded here so an
//! installed klp-link needs nothing beside it. The kernel tree is only read.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::extract::{Callback, KlpFunc};
use super::klp_rewrite::{self, RewriteError};
use super::signing::{SignError, Signing};
use super::tree::VMLINUX;

const KBUILD: &str = include_str!("../../kbuild-snippets/Kbuild.in");
const REGISTER: &str = include_str!("../../kbuild-snippets/klp-register.c.in");
/// The patch object is written as `<stem>.bin` and becomes `<stem>.o` in the
/// module build (kbuild-snippets/Kbuild.in).
const PATCH_STEM: &str = "klp-patch";

pub struct ModuleSpec<'a> {
    /// The module's name (its file is `<name>.ko`).
    pub name: &'a str,
    pub funcs: &'a [KlpFunc],
    pub callbacks: &'a [Callback],
    /// Atomic replace: the new patch replaces every earlier one.
    pub replace: bool,
    pub patch_object: &'a [u8],
}

/// The registration code for `spec`.
pub fn registration(spec: &ModuleSpec) -> String {
    let mut decls = String::new();
    let mut funcs = String::new();
    let mut objects = String::new();
    let mut new_funcs = String::new();
    let mut set_new_funcs = String::new();
    let mut n_new = 0;
    let mut targets: Vec<&str> = spec
        .funcs
        .iter()
        .map(|f| f.target.as_str())
        .chain(spec.callbacks.iter().map(|c| c.target.as_str()))
        .collect();
    targets.sort();
    targets.dedup();
    for (t, target) in targets.iter().enumerate() {
        let _ = writeln!(funcs, "static struct klp_func klp_funcs_{t}[] = {{");
        for (i, f) in spec
            .funcs
            .iter()
            .filter(|f| f.target == *target)
            .enumerate()
        {
            let _ = writeln!(decls, "extern char {}[];", f.new_symbol);
            let _ = writeln!(
                funcs,
                "\t{{\n\t\t.old_name = \"{}\",\n\t\t.old_sympos = {},\n\t}},",
                f.old_name, f.sympos
            );
            let _ = writeln!(new_funcs, "\t{},", f.new_symbol);
            let _ = writeln!(
                set_new_funcs,
                "\tklp_funcs_{t}[{i}].new_func = new_funcs[{n_new}];"
            );
            n_new += 1;
        }
        funcs.push_str("\t{ }\n};\n\n");
        let name = if *target == VMLINUX {
            "NULL".to_owned()
        } else {
            format!("\"{target}\"")
        };
        let mut callbacks = String::new();
        for c in spec.callbacks.iter().filter(|c| c.target == *target) {
            // Called through the patch's pointer: its value is known only
            // once the patch object is linked in.
            let (ret, call) = match c.kind {
                "pre_patch" => ("int", "return "),
                _ => ("void", ""),
            };
            let _ = writeln!(
                decls,
                "extern {ret} (*{ptr})(struct klp_object *);\n\
                 static {ret} klp_{kind}_{t}(struct klp_object *obj)\n\
                 {{\n\t{call}{ptr}(obj);\n}}\n",
                ptr = c.pointer,
                kind = c.kind
            );
            let _ = writeln!(callbacks, "\t\t\t.{kind} = klp_{kind}_{t},", kind = c.kind);
        }
        if !callbacks.is_empty() {
            callbacks = format!("\t\t.callbacks = {{\n{callbacks}\t\t}},\n");
        }
        let _ = writeln!(
            objects,
            "\t{{\n\t\t.name = {name},\n\t\t.funcs = klp_funcs_{t},\n{callbacks}\t}},"
        );
    }
    REGISTER
        .replace("@NAME@", spec.name)
        .replace("@DECLARATIONS@", &decls)
        .replace("@FUNCS@", &funcs)
        .replace("@OBJECTS@", &objects)
        .replace("@NEW_FUNCS@", &new_funcs)
        .replace("@SET_NEW_FUNCS@", &set_new_funcs)
        .replace("@REPLACE@", if spec.replace { "true" } else { "false" })
}

/// What [`build`] did, for the report.
pub struct Built {
    pub klp_relocs: usize,
    /// How the module was signed ([`Signing::describe`]), if the tree signs
    /// modules.
    pub signed: Option<String>,
    /// What kbuild warned about while building it (objtool's checks of the
    /// copied code, on kernels that run objtool on modules).
    pub warnings: Vec<String>,
    /// Time spent in the kernel tree's kbuild, and in the klp rewrite.
    pub kbuild: Duration,
    pub rewrite: Duration,
}

/// Why the module could not be built.
#[derive(Debug)]
pub enum ModuleError {
    BuildFolder(std::io::Error),
    WriteInput {
        name: String,
        error: std::io::Error,
    },
    RunMake(std::io::Error),
    /// kbuild failed; its output says why.
    Kbuild {
        kernel: PathBuf,
        output: String,
    },
    ReadModule {
        path: PathBuf,
        error: std::io::Error,
    },
    Rewrite(RewriteError),
    /// The tree signs modules and signing ours failed.
    Sign(SignError),
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl fmt::Display for ModuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleError::BuildFolder(e) => write!(f, "creating a build folder: {e}"),
            ModuleError::WriteInput { name, error } => write!(f, "{name}: {error}"),
            ModuleError::RunMake(e) => write!(f, "could not run make: {e}"),
            ModuleError::Kbuild { kernel, output } => write!(
                f,
                "building the module with `make -C {} M=...` failed:\n{output}",
                kernel.display()
            ),
            ModuleError::ReadModule { path, error } | ModuleError::Write { path, error } => {
                write!(f, "{}: {error}", path.display())
            }
            ModuleError::Rewrite(e) => e.fmt(f),
            ModuleError::Sign(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ModuleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ModuleError::BuildFolder(e) | ModuleError::RunMake(e) => Some(e),
            ModuleError::WriteInput { error, .. }
            | ModuleError::ReadModule { error, .. }
            | ModuleError::Write { error, .. } => Some(error),
            ModuleError::Rewrite(e) => Some(e),
            ModuleError::Sign(e) => Some(e),
            ModuleError::Kbuild { .. } => None,
        }
    }
}

/// Builds the module in a temporary folder with the kernel tree `kernel`'s
/// kbuild and writes the rewritten `.ko`, signed with `signing` when the
/// tree signs modules, to `out` (atomically). The signature comes last: it
/// covers the bytes the rewrite produced.
pub fn build(
    spec: &ModuleSpec,
    kernel: &Path,
    signing: Option<&Signing>,
    out: &Path,
) -> Result<Built, ModuleError> {
    let dir = tempfile::Builder::new()
        .prefix("klp-link-module.")
        .tempdir()
        .map_err(ModuleError::BuildFolder)?;
    let write = |name: &str, data: &[u8]| {
        std::fs::write(dir.path().join(name), data).map_err(|error| ModuleError::WriteInput {
            name: name.to_owned(),
            error,
        })
    };
    write(
        "Kbuild",
        KBUILD
            .replace("@NAME@", spec.name)
            .replace("@PATCH@", PATCH_STEM)
            .as_bytes(),
    )?;
    write("klp-register.c", registration(spec).as_bytes())?;
    write(&format!("{PATCH_STEM}.bin"), spec.patch_object)?;
    let started = Instant::now();
    let output = Command::new("make")
        .arg("-C")
        .arg(kernel)
        .arg(format!("M={}", dir.path().display()))
        // The patch object refers to the running kernel's private symbols
        // through undefined `.klp.sym.*` symbols: modpost may only warn.
        .arg("KBUILD_MODPOST_WARN=1")
        .arg("modules")
        .output()
        .map_err(ModuleError::RunMake)?;
    if !output.status.success() {
        return Err(ModuleError::Kbuild {
            kernel: kernel.to_owned(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    let kbuild = started.elapsed();
    let warnings = kbuild_warnings(&output.stdout, &output.stderr);
    let started = Instant::now();
    let ko = dir.path().join(format!("{}.ko", spec.name));
    let data = std::fs::read(&ko).map_err(|error| ModuleError::ReadModule { path: ko, error })?;
    let (mut rewritten, klp_relocs) = klp_rewrite::rewrite(&data).map_err(ModuleError::Rewrite)?;
    if let Some(signing) = signing {
        let unsigned = dir.path().join(format!("{}.klp.ko", spec.name));
        std::fs::write(&unsigned, &rewritten).map_err(|error| ModuleError::Write {
            path: unsigned.clone(),
            error,
        })?;
        signing.sign(&unsigned).map_err(ModuleError::Sign)?;
        rewritten = std::fs::read(&unsigned).map_err(|error| ModuleError::ReadModule {
            path: unsigned,
            error,
        })?;
    }
    crate::atomic_file::write(out, &rewritten, ".klp-link-ko").map_err(|error| {
        ModuleError::Write {
            path: out.to_owned(),
            error,
        }
    })?;
    Ok(Built {
        klp_relocs,
        signed: signing.map(Signing::describe),
        warnings,
        kbuild,
        rewrite: started.elapsed(),
    })
}

/// The warnings in kbuild's output, but modpost's about the `.klp.sym.*`
/// symbols, which stay undefined by design until the klp rewrite.
fn kbuild_warnings(stdout: &[u8], stderr: &[u8]) -> Vec<String> {
    [stdout, stderr]
        .iter()
        .flat_map(|out| {
            String::from_utf8_lossy(out)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|l| l.contains("warning:") || l.contains("WARNING:"))
        .filter(|l| !l.contains(super::klp_rewrite::KLP_SYM_PREFIX))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kbuild_warnings_leave_out_the_klp_symbols() {
        let stdout = b"  LD [M]  livepatch_x.o\nlivepatch_x.o: warning: objtool: f+0x12: unreachable instruction\n";
        let stderr = b"WARNING: modpost: \".klp.sym.vmlinux.saved_command_line,0\" [livepatch_x.ko] undefined!\n";
        assert_eq!(
            kbuild_warnings(stdout, stderr),
            ["livepatch_x.o: warning: objtool: f+0x12: unreachable instruction"]
        );
    }

    #[test]
    fn registration_lists_each_target_and_function() {
        let funcs = [
            KlpFunc {
                target: "vmlinux".into(),
                old_name: "cmdline_proc_show".into(),
                new_symbol: "__klp_new_0_0".into(),
                sympos: 0,
                delivers: None,
            },
            KlpFunc {
                target: "binfmt_misc".into(),
                old_name: "bm_status_read".into(),
                new_symbol: "__klp_new_1_0".into(),
                sympos: 2,
                delivers: None,
            },
        ];
        let callbacks = [Callback {
            target: "binfmt_misc".into(),
            kind: "pre_patch",
            pointer: "__klp_pre_patch_callback_binfmt_misc".into(),
        }];
        let spec = ModuleSpec {
            name: "livepatch-x",
            funcs: &funcs,
            callbacks: &callbacks,
            replace: false,
            patch_object: &[],
        };
        let c = registration(&spec);
        for needle in [
            "extern char __klp_new_0_0[];",
            "extern int (*__klp_pre_patch_callback_binfmt_misc)(struct klp_object *);",
            "return __klp_pre_patch_callback_binfmt_misc(obj);",
            ".pre_patch = klp_pre_patch_0,",
            ".old_name = \"cmdline_proc_show\"",
            ".old_sympos = 2,",
            "__section(\".init.klp_funcs\") __used = {\n\t__klp_new_1_0,\n\t__klp_new_0_0,\n};",
            "klp_funcs_0[0].new_func = new_funcs[0];",
            "klp_funcs_1[0].new_func = new_funcs[1];",
            ".name = NULL,",
            ".name = \"binfmt_misc\",",
            ".replace = false,",
            "MODULE_INFO(livepatch, \"Y\");",
        ] {
            assert!(c.contains(needle), "missing `{needle}` in:\n{c}");
        }
        assert!(!c.contains('@'), "unreplaced placeholder in:\n{c}");
    }
}
