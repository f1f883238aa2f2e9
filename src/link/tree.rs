//! What a built kbuild tree is made of, read from kbuild's own records:
//! the top-level `built-in.a` (a thin archive whose members are vmlinux's
//! objects, plus the `lib.a` archives linked beside it), `modules.order` and each module's
//! `.mod` file (its objects). Paths are relative to the object tree (`O=`
//! folder, or the source tree for an in-tree build). All of these name
//! files, and file names are bytes: they are read as bytes, never as text.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use object::read::archive::ArchiveFile;

use super::kconfig::KernelConfig;
use super::signing::Signing;

/// The target every built-in object belongs to.
pub const VMLINUX: &str = "vmlinux";

/// Archives whose members make up vmlinux (`lib.a` members are linked only
/// when referenced, which the later steps check against the running
/// kernel's symbols). The top-level `built-in.a` rather than 6.1's
/// `vmlinux.a`, which is the same objects but is archived only for the
/// link: the compile step (`make ./`) keeps `built-in.a` current without
/// relinking vmlinux.o, and kernels before 6.1 have no `vmlinux.a`.
const VMLINUX_ARCHIVES: &[&str] = &["built-in.a", "lib/lib.a", "arch/x86/lib/lib.a"];

#[derive(Debug)]
pub enum TreeError {
    NotATree { dir: PathBuf },
    NotBuilt { dir: PathBuf, missing: &'static str },
    Read { path: PathBuf, error: String },
    External { dir: PathBuf, why: &'static str },
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TreeError::NotATree { dir } => write!(
                f,
                "{} is not a kernel object tree (no .config); give the folder the kernel \
                 was built in (its O= folder, if it used one)",
                dir.display()
            ),
            TreeError::NotBuilt { dir, missing } => write!(
                f,
                "{} has no {missing}: build the kernel there first (make CC=\"klp-cc gcc\")",
                dir.display()
            ),
            TreeError::Read { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            TreeError::External { dir, why } => write!(
                f,
                "{}: {why}; build the external module against this tree first \
                 (make -C TREE M=$PWD CC=\"klp-cc gcc\", with the tree's own settings)",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for TreeError {}

/// A built object tree and the objects of each target in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    pub objtree: PathBuf,
    /// Target name (`vmlinux` or a module's name) to its objects.
    pub targets: BTreeMap<String, Vec<PathBuf>>,
    /// Each target's linked file (`vmlinux`, `drivers/my-mod.ko`), relative
    /// to the object tree.
    pub linked: BTreeMap<String, PathBuf>,
    /// kbuild runs objtool on each module's linked object rather than on
    /// each compiled object ([`objtool_on_modules`]).
    pub objtool_on_modules: bool,
    /// How the tree signs modules, if it does.
    pub signing: Option<Signing>,
    /// The folder of an external module built against the tree (`make
    /// M=DIR`), absolute: its modules are targets too, with objects and
    /// `.ko` files named by absolute paths (as kbuild names them there), so
    /// that joining one to the object tree leaves it as it is.
    pub external: Option<PathBuf>,
}

impl Tree {
    pub fn open(dir: &Path) -> Result<Tree, TreeError> {
        let objtree = std::fs::canonicalize(dir).map_err(|e| TreeError::Read {
            path: dir.to_owned(),
            error: e.to_string(),
        })?;
        let config = objtree.join(".config");
        if !config.is_file() {
            return Err(TreeError::NotATree { dir: objtree });
        }
        let config = KernelConfig::new(read(&config)?);
        let objtool_on_modules = objtool_on_modules(&config);
        let signing = Signing::of_tree(&objtree, &config);
        let mut targets = BTreeMap::new();
        if !objtree.join(VMLINUX_ARCHIVES[0]).is_file() {
            return Err(TreeError::NotBuilt {
                dir: objtree,
                missing: "built-in.a",
            });
        }
        let mut vmlinux = Vec::new();
        for archive in VMLINUX_ARCHIVES {
            let path = objtree.join(archive);
            if path.is_file() {
                vmlinux.extend(archive_members(&objtree, Path::new(archive))?);
            }
        }
        dedup_keep_order(&mut vmlinux);
        targets.insert(VMLINUX.to_owned(), vmlinux);
        let mut linked = BTreeMap::from([(VMLINUX.to_owned(), PathBuf::from(VMLINUX))]);
        for (name, ko, objects) in modules(&objtree)? {
            targets.insert(name.clone(), objects);
            linked.insert(name, ko);
        }
        Ok(Tree {
            objtree,
            targets,
            linked,
            objtool_on_modules,
            signing,
            external: None,
        })
    }

    /// Adds the modules of the external module folder `dir` (`make -C
    /// TREE M=DIR`). One of them named like a module of the tree takes its
    /// place: the external one is what the running kernel loads by that
    /// name.
    pub fn with_external(mut self, dir: &Path) -> Result<Tree, TreeError> {
        let dir = std::fs::canonicalize(dir).map_err(|e| TreeError::Read {
            path: dir.to_owned(),
            error: e.to_string(),
        })?;
        if dir == self.objtree {
            return Err(TreeError::External {
                dir,
                why: "is the kernel tree itself, not an external module's folder",
            });
        }
        if !dir.join("modules.order").is_file() {
            return Err(TreeError::External {
                dir,
                why: "has no modules.order",
            });
        }
        let found = modules(&dir)?;
        if found.is_empty() {
            return Err(TreeError::External {
                dir,
                why: "builds no module (its modules.order is empty)",
            });
        }
        for (name, ko, objects) in found {
            // kbuild lists them under M= as it was given; relative ones
            // are relative to the module's folder.
            let objects = objects.iter().map(|o| dir.join(o)).collect();
            self.targets.insert(name.clone(), objects);
            self.linked.insert(name, dir.join(ko));
        }
        self.external = Some(dir);
        Ok(self)
    }

    /// Every object with the target it belongs to.
    pub fn objects(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.targets
            .iter()
            .flat_map(|(t, objs)| objs.iter().map(move |o| (t.as_str(), o.as_path())))
    }
}

/// Whether a kernel with `.config` `config` delays objtool: kbuild's
/// `delay-objtool` (scripts/Makefile.lib, 6.1 to 7.x) is set by any of these
/// options, and then objtool runs once on vmlinux.o and once on each
/// module's linked object (a livepatch module's included), writing that
/// object's ORC and call-site tables itself.
fn objtool_on_modules(config: &KernelConfig) -> bool {
    [
        "CONFIG_X86_KERNEL_IBT",
        "CONFIG_LTO_CLANG",
        "CONFIG_KLP_BUILD",
    ]
    .iter()
    .any(|option| config.enabled(option))
}

fn read(path: &Path) -> Result<Vec<u8>, TreeError> {
    std::fs::read(path).map_err(|e| TreeError::Read {
        path: path.to_owned(),
        error: e.to_string(),
    })
}

/// The object members of a thin archive, relative to the object tree;
/// nested archives are followed.
fn archive_members(objtree: &Path, archive: &Path) -> Result<Vec<PathBuf>, TreeError> {
    let path = objtree.join(archive);
    let data = read(&path)?;
    let bad = |error: String| TreeError::Read {
        path: path.clone(),
        error,
    };
    let file = ArchiveFile::parse(&*data).map_err(|e| bad(e.to_string()))?;
    if !file.is_thin() {
        return Err(bad(
            "not a thin archive (kbuild makes thin ones; was this tree built by kbuild?)".into(),
        ));
    }
    let base = archive.parent().unwrap_or(Path::new(""));
    let mut out = Vec::new();
    for member in file.members() {
        let member = member.map_err(|e| bad(e.to_string()))?;
        let name = member.name();
        let rel = normalize(&base.join(OsStr::from_bytes(name)));
        if name.ends_with(b".a") {
            out.extend(archive_members(objtree, &rel)?);
        } else {
            out.push(rel);
        }
    }
    Ok(out)
}

/// Modules from `modules.order` (`dir/name.ko` in Linux 6.1, `dir/name.o`
/// later): the module's name (dashes become underscores, as in
/// KBUILD_MODNAME), its `.ko` and the objects its `dir/name.mod` lists.
type Module = (String, PathBuf, Vec<PathBuf>);

fn modules(objtree: &Path) -> Result<Vec<Module>, TreeError> {
    let order = objtree.join("modules.order");
    if !order.is_file() {
        return Ok(Vec::new());
    }
    let text = read(&order)?;
    let mut out = Vec::new();
    for line in text
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty())
    {
        let module = Path::new(OsStr::from_bytes(line));
        let mod_file = module.with_extension("mod");
        let listed = read(&objtree.join(&mod_file))?;
        let objects = listed
            .split(u8::is_ascii_whitespace)
            .filter(|o| !o.is_empty())
            .map(|o| normalize(Path::new(OsStr::from_bytes(o))))
            .collect();
        let name = module
            .file_stem()
            .map(|s| s.to_string_lossy().replace('-', "_"))
            .unwrap_or_default();
        out.push((name, module.with_extension("ko"), objects));
    }
    Ok(out)
}

/// Removes `.` and resolves `..` lexically (kbuild paths have no symlinks
/// that matter here).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

fn dedup_keep_order(v: &mut Vec<PathBuf>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|p| seen.insert(p.clone()));
}

#[cfg(test)]
mod tests {
    use super::{objtool_on_modules, KernelConfig};

    #[test]
    fn objtool_is_delayed_by_ibt_clang_lto_or_klp_build() {
        let delays = |text: &[u8]| objtool_on_modules(&KernelConfig::new(text.to_vec()));
        assert!(!delays(b"CONFIG_64BIT=y\nCONFIG_OBJTOOL=y\n"));
        assert!(!delays(b"# CONFIG_X86_KERNEL_IBT is not set\n"));
        assert!(delays(b"CONFIG_64BIT=y\nCONFIG_X86_KERNEL_IBT=y\n"));
        assert!(delays(b"CONFIG_LTO_CLANG=y"));
        assert!(delays(b"CONFIG_KLP_BUILD=y\n"));
    }
}
