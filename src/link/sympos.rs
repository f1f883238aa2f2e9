//! sympos: which of several same-named symbols of the running kernel a
//! livepatch means. 0 when the name is unique in the target; otherwise the
//! 1-based position among the same-named symbols in kallsyms order, which
//! for vmlinux is address order and for a module its symbol-table order.
//! Which one is ours is told by the `STT_FILE` symbol that precedes a local
//! symbol in the linked symbol table (the source file it came from).

use std::collections::HashMap;
use std::path::Path;

use object::{Object, ObjectSymbol, SymbolKind};

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
    pub fn read(path: &Path, address_order: bool) -> Result<Positions, String> {
        let err = |e: String| format!("{}: {e}", path.display());
        let data = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let file = object::File::parse(&*data).map_err(|e| err(e.to_string()))?;
        let mut by_name: HashMap<String, Vec<Entry>> = HashMap::new();
        let mut current_file = None;
        for s in file.symbols() {
            let Ok(name) = s.name() else { continue };
            if s.kind() == SymbolKind::File {
                current_file = Some(name.to_owned());
                continue;
            }
            if !matches!(
                s.kind(),
                SymbolKind::Text | SymbolKind::Data | SymbolKind::Tls
            ) || name.is_empty()
            {
                continue;
            }
            by_name.entry(name.to_owned()).or_default().push(Entry {
                address: s.address(),
                file: s.is_local().then(|| current_file.clone()).flatten(),
                local: s.is_local(),
            });
        }
        if address_order {
            for v in by_name.values_mut() {
                v.sort_by_key(|e| e.address);
            }
        }
        Ok(Positions {
            by_name,
            address_order,
        })
    }

    /// The sympos of `name`, a symbol of source file `file` (for a local
    /// symbol), or an error saying why it cannot be told.
    pub fn sympos(&self, name: &str, file: Option<&str>) -> Result<u64, String> {
        let order = if self.address_order {
            "address"
        } else {
            "symbol-table"
        };
        let Some(all) = self.by_name.get(name) else {
            return Err(format!(
                "`{name}` is not in the running kernel's symbol table"
            ));
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
            [] => Err(format!(
                "`{name}` occurs {} times in the running kernel and none comes from {}; \
                 cannot tell which one to patch",
                all.len(),
                file.unwrap_or("an unknown file")
            )),
            _ => Err(format!(
                "`{name}` occurs {} times in the running kernel, {} of them from {}; \
                 cannot tell which one to patch (in {order} order)",
                all.len(),
                mine.len(),
                file.unwrap_or("?")
            )),
        }
    }
}
