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
    /// The key came from the command line, not from the tree.
    given: bool,
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
            given: false,
        })
    }

    /// Signing with a key and certificate given on the command line, by
    /// the tree's `sign-file` with the tree's hash (sha256 for a tree that
    /// does not sign modules).
    pub fn given(objtree: &Path, tree: Option<&Signing>, key: &Path, cert: &Path) -> Signing {
        Signing {
            sign_file: objtree.join("scripts/sign-file"),
            hash: tree.map_or_else(|| "sha256".to_owned(), |t| t.hash.clone()),
            key: key.as_os_str().to_owned(),
            cert: cert.to_owned(),
            given: true,
        }
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

    /// For the report: whose key, the hash and the key.
    pub fn describe(&self) -> String {
        let whose = if self.given {
            "the key given"
        } else {
            "the tree's key, as kbuild signs its modules"
        };
        format!(
            "{whose}: {} with {} and {}",
            self.hash,
            Path::new(&self.key).display(),
            self.cert.display()
        )
    }
}
