//! Signs the livepatch module the way kbuild signs modules when it installs
//! them (scripts/Makefile.modinst): `scripts/sign-file HASH KEY
//! certs/signing_key.x509 KO`, with the tree's own key. `make modules`,
//! which builds ours, leaves modules unsigned, and a kernel with
//! `MODULE_SIG_FORCE` (or lockdown) loads no unsigned module.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::kconfig::KernelConfig;

/// How a tree signs its modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signing {
    sign_file: PathBuf,
    hash: String,
    /// A file, or a PKCS#11 URI, as CONFIG_MODULE_SIG_KEY gives it.
    key: OsString,
    cert: PathBuf,
}

#[derive(Debug)]
pub struct SignError {
    ko: PathBuf,
    detail: String,
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: the kernel signs its modules (CONFIG_MODULE_SIG=y), and signing the livepatch \
             failed: {}. It must carry a signature the running kernel trusts: build it in the \
             tree that built that kernel, whose certs/ hold the key",
            self.ko.display(),
            self.detail
        )
    }
}

impl std::error::Error for SignError {}

impl Signing {
    /// How the tree at `objtree` with `.config` `config` signs modules;
    /// `None` when it does not.
    pub fn of_tree(objtree: &Path, config: &KernelConfig) -> Option<Signing> {
        if !config.enabled("CONFIG_MODULE_SIG") {
            return None;
        }
        let hash = config
            .string("CONFIG_MODULE_SIG_HASH")
            .unwrap_or_else(|| "sha512".into());
        let key = config
            .string("CONFIG_MODULE_SIG_KEY")
            .unwrap_or_else(|| "certs/signing_key.pem".into());
        // As Makefile.modinst: a relative key is the object tree's when it
        // is there, else the source tree's (an O= build's `source` link).
        let key = if key.starts_with("pkcs11:") || Path::new(&key).is_absolute() {
            OsString::from(key)
        } else if objtree.join(&key).exists() {
            objtree.join(&key).into_os_string()
        } else {
            objtree.join("source").join(&key).into_os_string()
        };
        Some(Signing {
            sign_file: objtree.join("scripts/sign-file"),
            hash,
            key,
            cert: objtree.join("certs/signing_key.x509"),
        })
    }

    /// Signs `ko` in place.
    pub fn sign(&self, ko: &Path) -> Result<(), SignError> {
        let fail = |detail: String| SignError {
            ko: ko.to_owned(),
            detail,
        };
        let output = Command::new(&self.sign_file)
            .arg(&self.hash)
            .arg(&self.key)
            .arg(&self.cert)
            .arg(ko)
            .output()
            .map_err(|e| fail(format!("cannot run {}: {e}", self.sign_file.display())))?;
        if !output.status.success() {
            return Err(fail(format!(
                "{} exited with {}: {}",
                self.sign_file.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(())
    }

    /// For the report: the hash and the key.
    pub fn describe(&self) -> String {
        format!("{} with {}", self.hash, Path::new(&self.key).display())
    }
}
