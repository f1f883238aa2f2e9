//! Files written whole or not at all: the bytes go to a temporary file in
//! the same folder, which is then renamed over the destination. A reader
//! (kbuild, insmod, klp-link) never sees half a manifest, module or patch,
//! and a failed write leaves the old file in place.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `bytes` to `path` atomically, readable by all (tempfile's default
/// is 0600; these files sit beside objects that are 0644). `prefix` names
/// the temporary file, so that a leftover one says what wrote it.
pub fn write(path: &Path, bytes: &[u8], prefix: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(prefix)
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
