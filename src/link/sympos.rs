//! sympos: which of several same-named symbols of the running kernel a
//! livepatch means. 0 when the name is unique in the target; otherwise the
//! 1-based position among the same-named symbols in kallsyms order, which
//! for vmlinux is address order and for a module its symbol-table order.
//! Which one is ours is told by the `STT_FILE` symbol that precedes a local
//! symbol in the linked symbol table (the source file it came from).
//!
//! The table comes from a linked ELF file (the running kernel's vmlinux or
//! module) or from a snapshot, which keeps the same symbols and file
//! boundaries as [`LinkedSymbol`]s.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSymbol, SymbolKind};

/// One entry of a linked symbol table, in table order: a function, data or
/// TLS symbol, or (`kind` `'f'`) the `STT_FILE` symbol that starts the
/// local symbols of one source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedSymbol {
    pub kind: char,
    pub local: bool,
    pub address: u64,
    pub size: u64,
    pub name: String,
}

impl LinkedSymbol {
    pub const FILE: char = 'f';

    pub fn is_file(&self) -> bool {
        self.kind == Self::FILE
    }
}

/// A linked file whose symbol table cannot be read.
#[derive(Debug)]
pub enum SymbolTableError {
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    Elf {
        path: PathBuf,
        error: object::read::Error,
    },
}

impl fmt::Display for SymbolTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (path, error): (_, &dyn fmt::Display) = match self {
            SymbolTableError::Io { path, error } => (path, error),
            SymbolTableError::Elf { path, error } => (path, error),
        };
        write!(
            f,
            "cannot read the symbol table of {}: {error}",
            path.display()
        )
    }
}

impl std::error::Error for SymbolTableError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SymbolTableError::Io { error, .. } => Some(error),
            SymbolTableError::Elf { error, .. } => Some(error),
        }
    }
}

/// The function, data and file symbols of a linked ELF file, in table
/// order.
pub fn linked_symbols(path: &Path) -> Result<Vec<LinkedSymbol>, SymbolTableError> {
    read_linked(path, symbols_of)
}

/// What `read` takes from the linked ELF file at `path`.
pub fn read_linked<T>(
    path: &Path,
    read: impl FnOnce(&object::File) -> T,
) -> Result<T, SymbolTableError> {
    let data = std::fs::read(path).map_err(|error| SymbolTableError::Io {
        path: path.to_owned(),
        error,
    })?;
    let file = object::File::parse(&*data).map_err(|error| SymbolTableError::Elf {
        path: path.to_owned(),
        error,
    })?;
    Ok(read(&file))
}

/// The function, data and file symbols of `file`, in table order.
pub fn symbols_of(file: &object::File) -> Vec<LinkedSymbol> {
    let mut out = Vec::new();
    for s in file.symbols() {
        let kind = match s.kind() {
            SymbolKind::Text => 't',
            SymbolKind::Data => 'd',
            SymbolKind::Tls => 'l',
            SymbolKind::File => LinkedSymbol::FILE,
            _ => continue,
        };
        let Ok(name) = s.name() else { continue };
        if name.is_empty() && kind != LinkedSymbol::FILE {
            continue;
        }
        out.push(LinkedSymbol {
            kind,
            local: s.is_local(),
            address: s.address(),
            size: s.size(),
            name: name.to_owned(),
        });
    }
    out
}

/// Why a symbol's sympos cannot be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SymposError {
    Absent {
        name: String,
    },
    NoneFromFile {
        name: String,
        count: usize,
        file: Option<String>,
    },
    Ambiguous {
        name: String,
        count: usize,
        mine: usize,
        file: Option<String>,
        address_order: bool,
    },
}

impl fmt::Display for SymposError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SymposError::Absent { name } => {
                write!(f, "`{name}` is not in the running kernel's symbol table")
            }
            SymposError::NoneFromFile { name, count, file } => write!(
                f,
                "`{name}` occurs {count} times in the running kernel and none comes from {}; \
                 cannot tell which one to patch",
                file.as_deref().unwrap_or("an unknown file")
            ),
            SymposError::Ambiguous {
                name,
                count,
                mine,
                file,
                address_order,
            } => write!(
                f,
                "`{name}` occurs {count} times in the running kernel, {mine} of them from {}; \
                 cannot tell which one to patch (in {} order)",
                file.as_deref().unwrap_or("?"),
                if *address_order {
                    "address"
                } else {
                    "symbol-table"
                }
            ),
        }
    }
}

impl std::error::Error for SymposError {}

#[derive(Debug, Clone)]
struct Entry {
    address: u64,
    file: Option<String>,
    local: bool,
}

/// The symbols of one linked target (the running vmlinux, or a module).
#[derive(Debug, Clone, Default)]
pub struct Positions {
    by_name: HashMap<String, Vec<Entry>>,
    address_order: bool,
}

impl Positions {
    /// Reads a linked ELF file; `address_order` for vmlinux, table order
    /// for modules.
    pub fn read(path: &Path, address_order: bool) -> Result<Positions, SymbolTableError> {
        Ok(Positions::of(&linked_symbols(path)?, address_order))
    }

    /// From a symbol table in table order, file symbols included.
    pub fn of(symbols: &[LinkedSymbol], address_order: bool) -> Positions {
        let mut by_name: HashMap<String, Vec<Entry>> = HashMap::new();
        let mut current_file = None;
        for s in symbols {
            if s.is_file() {
                current_file = Some(s.name.clone());
                continue;
            }
            by_name.entry(s.name.clone()).or_default().push(Entry {
                address: s.address,
                file: s.local.then(|| current_file.clone()).flatten(),
                local: s.local,
            });
        }
        if address_order {
            for v in by_name.values_mut() {
                v.sort_by_key(|e| e.address);
            }
        }
        Positions {
            by_name,
            address_order,
        }
    }

    /// The sympos of `name`, a symbol of source file `file` (for a local
    /// symbol).
    pub fn sympos(&self, name: &str, file: Option<&str>) -> Result<u64, SymposError> {
        let Some(all) = self.by_name.get(name) else {
            return Err(SymposError::Absent {
                name: name.to_owned(),
            });
        };
        if all.len() == 1 {
            return Ok(0);
        }
        let file_name = |f: &str| Path::new(f).file_name().map(|n| n.to_owned());
        let want = file.and_then(file_name);
        let mine: Vec<usize> = (0..all.len())
            .filter(|&i| {
                all[i].local && want.is_some() && all[i].file.as_deref().and_then(file_name) == want
            })
            .collect();
        match mine.as_slice() {
            [i] => Ok(*i as u64 + 1),
            [] => Err(SymposError::NoneFromFile {
                name: name.to_owned(),
                count: all.len(),
                file: file.map(str::to_owned),
            }),
            _ => Err(SymposError::Ambiguous {
                name: name.to_owned(),
                count: all.len(),
                mine: mine.len(),
                file: file.map(str::to_owned),
                address_order: self.address_order,
            }),
        }
    }
}
