//! `Module.symvers`: which symbols vmlinux and the modules export. Patched
//! code reaches an exported symbol through a normal relocation, resolved
//! when the livepatch module loads; anything else needs a klp relocation.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A Module.symvers that cannot be read.
#[derive(Debug)]
pub struct SymversError {
    pub path: PathBuf,
    pub error: std::io::Error,
}

impl fmt::Display for SymversError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.error)
    }
}

impl std::error::Error for SymversError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Exports {
    by_name: HashMap<String, Export>,
}

#[derive(Debug, Clone)]
struct Export {
    /// `vmlinux` or a module name.
    target: String,
    /// The CRC of its type with MODVERSIONS (0 without).
    crc: u32,
}

impl Exports {
    pub fn read(path: &Path) -> Result<Exports, SymversError> {
        let text = std::fs::read_to_string(path).map_err(|error| SymversError {
            path: path.to_owned(),
            error,
        })?;
        Ok(Exports::parse(&text))
    }

    /// `crc<TAB>symbol<TAB>module<TAB>export type[<TAB>namespace]` per line;
    /// the module is `vmlinux` or the module's path without `.ko`.
    pub fn parse(text: &str) -> Exports {
        let mut by_name = HashMap::new();
        for line in text.lines() {
            let mut f = line.split('\t');
            let (Some(crc), Some(name), Some(module)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let target = Path::new(module)
                .file_name()
                .map(|n| n.to_string_lossy().replace('-', "_"))
                .unwrap_or_default();
            let crc = parse_crc(crc).unwrap_or(0);
            by_name.insert(name.to_owned(), Export { target, crc });
        }
        Exports { by_name }
    }

    /// The target exporting `name`, if any.
    pub fn exporter(&self, name: &str) -> Option<&str> {
        self.by_name.get(name).map(|e| e.target.as_str())
    }

    /// The CRC of exported symbol `name` (0 without MODVERSIONS).
    pub fn crc(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).map(|e| e.crc)
    }
}

/// A CRC as kbuild writes it: `0x` and hex digits.
pub fn parse_crc(text: &str) -> Option<u32> {
    u32::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kbuild_lines() {
        let e = Exports::parse(
            "0x00000000\tseq_puts\tvmlinux\tEXPORT_SYMBOL\t\n\
             0x12345678\tbm_helper\tfs/binfmt-misc\tEXPORT_SYMBOL_GPL\tNS\n",
        );
        assert_eq!(e.exporter("seq_puts"), Some("vmlinux"));
        assert_eq!(e.exporter("bm_helper"), Some("binfmt_misc"));
        assert_eq!(e.exporter("saved_command_line"), None);
    }
}
