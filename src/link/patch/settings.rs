//! How the tree was built, read back from what kbuild and klp-cc left in
//! it, so that the patched rebuild uses the very same settings: a rebuild
//! with another `CC` or section mode would recompile every object, and
//! klp-link would refuse the comparison anyway.

use std::path::{Path, PathBuf};

use crate::link::kconfig::KernelConfig;

/// The make variables and environment of the original build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MakeSettings {
    /// The source tree (the `source` link of an `O=` tree, else the tree).
    pub srctree: PathBuf,
    /// `CC` as the compile commands start: `klp-cc gcc`, `klp-cc ccache gcc`.
    pub cc: Vec<String>,
    /// `LLVM=` for a tree linked with ld.lld (`1`, or clang's `-NN` suffix).
    pub llvm: Option<String>,
    /// The objects were compiled with `KLP_CC_SECTIONS=0` (one-build mode).
    pub sections_off: bool,
}

#[derive(Debug)]
pub enum SettingsError {
    NoCompileCommand { object: PathBuf },
    NotKlpCc { object: PathBuf, cc: String },
}

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettingsError::NoCompileCommand { object } => write!(
                f,
                "{} has no compile command kbuild recorded (its .cmd file): finish the build \
                 first",
                object.display()
            ),
            SettingsError::NotKlpCc { object, cc } => write!(
                f,
                "the tree was not built through klp-cc: {} was compiled by `{cc}`; build it \
                 with make CC=\"klp-cc {cc}\" first",
                object.display()
            ),
        }
    }
}

impl MakeSettings {
    /// Reads the settings of the tree at `objtree` from the `.cmd` file of
    /// `object` (a compiled object of the tree) and its manifest text.
    pub fn read(
        objtree: &Path,
        object: &Path,
        manifest_text: &str,
        config: &KernelConfig,
    ) -> Result<MakeSettings, SettingsError> {
        let srctree = std::fs::canonicalize(objtree.join("source"))
            .ok()
            .filter(|s| s.is_dir())
            .unwrap_or_else(|| objtree.to_owned());
        let cmd = cmd_file(objtree, object);
        let command = std::fs::read_to_string(&cmd)
            .ok()
            .and_then(|text| compile_command(&text))
            .ok_or_else(|| SettingsError::NoCompileCommand {
                object: object.to_owned(),
            })?;
        let cc = compiler_words(&command);
        if !cc.iter().any(|w| is_klp_cc(w)) {
            return Err(SettingsError::NotKlpCc {
                object: object.to_owned(),
                cc: cc.join(" "),
            });
        }
        let llvm = config.enabled("CONFIG_LD_IS_LLD").then(|| {
            let clang = cc.last().map(String::as_str).unwrap_or("");
            match clang.rsplit_once("clang-") {
                Some((_, v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                    format!("-{v}")
                }
                _ => "1".to_owned(),
            }
        });
        Ok(MakeSettings {
            srctree,
            cc,
            llvm,
            sections_off: manifest_text.lines().any(|l| l == "sections off"),
        })
    }

    /// The variables for `make`.
    pub fn make_args(&self) -> Vec<String> {
        let mut args = vec![format!("CC={}", self.cc.join(" "))];
        if let Some(l) = &self.llvm {
            args.push(format!("LLVM={l}"));
        }
        args
    }

    /// The environment for `make` (klp-cc reads it).
    pub fn make_env(&self) -> Vec<(&'static str, &'static str)> {
        if self.sections_off {
            vec![("KLP_CC_SECTIONS", "0")]
        } else {
            Vec::new()
        }
    }
}

/// kbuild's record of how `object` was built: `dir/.name.o.cmd`.
fn cmd_file(objtree: &Path, object: &Path) -> PathBuf {
    let name = object.file_name().unwrap_or_default().to_string_lossy();
    objtree
        .join(object.parent().unwrap_or(Path::new("")))
        .join(format!(".{name}.cmd"))
}

/// The command of a `.cmd` file: `cmd_OBJ := ...` (`savedcmd_` since 6.2).
fn compile_command(text: &str) -> Option<String> {
    let line = text
        .lines()
        .find(|l| l.starts_with("cmd_") || l.starts_with("savedcmd_"))?;
    let (_, command) = line.split_once(" := ")?;
    Some(command.to_owned())
}

/// The words of a compile command before its first option: the `CC` the
/// build was run with.
fn compiler_words(command: &str) -> Vec<String> {
    command
        .split_ascii_whitespace()
        .take_while(|w| !w.starts_with('-'))
        .map(str::to_owned)
        .collect()
}

/// Whether `word` runs klp-cc: named so, or a link to it (a shim folder
/// on PATH that masquerades as the compiler).
fn is_klp_cc(word: &str) -> bool {
    let named = |p: &Path| p.file_name().is_some_and(|n| n == "klp-cc");
    if named(Path::new(word)) {
        return true;
    }
    which::which(word)
        .ok()
        .and_then(|p| std::fs::canonicalize(p).ok())
        .is_some_and(|p| named(&p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiler_is_what_precedes_the_first_option() {
        let text = "savedcmd_fs/proc/cmdline.o := /opt/bin/klp-cc ccache gcc -Wp,-MMD,x -c -o \
                    fs/proc/cmdline.o fs/proc/cmdline.c\n\nsource_fs/proc/cmdline.o := x\n";
        let command = compile_command(text).unwrap();
        assert_eq!(
            compiler_words(&command),
            ["/opt/bin/klp-cc", "ccache", "gcc"]
        );
        assert!(is_klp_cc("/opt/bin/klp-cc"));
        assert!(!is_klp_cc("gcc"));
    }
}
