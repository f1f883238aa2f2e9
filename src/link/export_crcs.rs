//! Exported interfaces whose type the patch changes. With MODVERSIONS,
//! kbuild computes a CRC of each exported symbol's type when it compiles
//! the exporting object and records it in that object's `.cmd` file as a
//! `#SYMVER <name> <crc>` line (Linux 6.x, 7.x), from which modpost writes
//! Module.symvers. A rebuilt object whose CRC for a symbol differs from the
//! running kernel's (the snapshot's Module.symvers) changed the type of that
//! symbol, or of something reachable from it.

use std::path::{Path, PathBuf};

use super::symvers::{parse_crc, Exports};

/// An exported symbol whose CRC the patched build changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrcChange {
    pub symbol: String,
    /// The rebuilt object exporting it (tree-relative).
    pub object: PathBuf,
    pub was: u32,
    pub now: u32,
}

/// The CRC changes in the `.cmd` files of the `rebuilt` objects of the tree
/// at `objtree`, against the running kernel's `exports`. Nothing without
/// MODVERSIONS (no `#SYMVER` lines, or CRCs of 0).
pub fn changes(objtree: &Path, rebuilt: &[PathBuf], exports: &Exports) -> Vec<CrcChange> {
    let mut out = Vec::new();
    for object in rebuilt {
        let Ok(text) = std::fs::read(objtree.join(cmd_file(object))) else {
            continue;
        };
        for (symbol, now) in symvers(&text) {
            match exports.crc(&symbol) {
                Some(was) if was != 0 && was != now => out.push(CrcChange {
                    symbol,
                    object: object.clone(),
                    was,
                    now,
                }),
                _ => {}
            }
        }
    }
    out
}

/// kbuild's record of how `object` was built: `dir/.name.o.cmd`.
fn cmd_file(object: &Path) -> PathBuf {
    let name = object.file_name().unwrap_or_default().to_string_lossy();
    object.with_file_name(format!(".{name}.cmd"))
}

/// The `#SYMVER <name> <crc>` lines of a `.cmd` file.
fn symvers(text: &[u8]) -> Vec<(String, u32)> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = std::str::from_utf8(line).ok()?;
            let mut f = line.strip_prefix("#SYMVER ")?.split_ascii_whitespace();
            let (name, crc) = (f.next()?, parse_crc(f.next()?)?);
            Some((name.to_owned(), crc))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_symver_lines_of_rebuilt_objects() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("fs/proc")).unwrap();
        std::fs::write(
            dir.path().join("fs/proc/.base.o.cmd"),
            "cmd_fs/proc/base.o := gcc -c base.c\n\
             #SYMVER same 0x0000abcd\n#SYMVER moved 0x12345678\n#SYMVER gone_from_symvers 0x1\n",
        )
        .unwrap();
        let exports = Exports::parse(
            "0x0000abcd\tsame\tvmlinux\tEXPORT_SYMBOL\t\n\
             0x87654321\tmoved\tvmlinux\tEXPORT_SYMBOL_GPL\t\n",
        );
        let objects = [PathBuf::from("fs/proc/base.o"), PathBuf::from("fs/x.o")];
        assert_eq!(
            changes(dir.path(), &objects, &exports),
            [CrcChange {
                symbol: "moved".into(),
                object: "fs/proc/base.o".into(),
                was: 0x8765_4321,
                now: 0x1234_5678,
            }]
        );
        // Without MODVERSIONS every CRC is 0.
        let plain = Exports::parse("0x00000000\tmoved\tvmlinux\tEXPORT_SYMBOL\t\n");
        assert!(changes(dir.path(), &objects, &plain).is_empty());
    }
}
