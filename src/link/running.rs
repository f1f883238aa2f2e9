//! The running kernel as `klp-link build` is told of it: its vmlinux
//! (`--vmlinux`) and modules (`--modules`). Without them the snapshot's own
//! symbol tables stand in (one-build mode: the tree it was taken of is the
//! running kernel).

use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSymbol};

use super::sympos::{read_linked, symbols_of, Positions, SymbolTableError};

/// A running kernel's vmlinux: its symbols for sympos, and the release its
/// `linux_banner` names, if it can be read.
pub struct Vmlinux {
    pub positions: Positions,
    pub release: Option<String>,
}

impl Vmlinux {
    pub fn read(path: &Path) -> Result<Vmlinux, SymbolTableError> {
        read_linked(path, |file| Vmlinux {
            positions: Positions::of(&symbols_of(file), true),
            release: banner_release(file),
        })
    }
}

/// The release `vmlinux` names in its `linux_banner`, if it can be read.
pub fn release_of(vmlinux: &Path) -> Result<Option<String>, SymbolTableError> {
    read_linked(vmlinux, banner_release)
}

/// The release in `linux_banner` ("Linux version RELEASE (...) ..."), the
/// string `uname -r` prints, from the section that holds it.
fn banner_release(file: &object::File) -> Option<String> {
    let sym = file.symbols().find(|s| s.name() == Ok("linux_banner"))?;
    let section = file.section_by_index(sym.section_index()?).ok()?;
    let offset = sym.address().checked_sub(section.address())?;
    let data = section.data().ok()?;
    let banner = data.get(offset as usize..)?;
    let banner = &banner[..banner.iter().position(|&b| b == 0)?];
    let rest = std::str::from_utf8(banner)
        .ok()?
        .strip_prefix("Linux version ")?;
    rest.split_whitespace().next().map(str::to_owned)
}

/// The `.ko` of module `name` under `dir`, at any depth; kbuild's module
/// names treat `-` and `_` alike.
pub fn find_module(dir: &Path, name: &str) -> Option<PathBuf> {
    let want = format!("{}.ko", name.replace('-', "_"));
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(path),
                Ok(_) if e.file_name().to_string_lossy().replace('-', "_") == want => {
                    return Some(path)
                }
                _ => {}
            }
        }
    }
    None
}
