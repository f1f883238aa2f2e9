//! The few facts klp-link needs from a kernel tree's `.config`.

/// A kernel's `.config`: `CONFIG_NAME=value` lines (`# ... is not set`
/// comments mean off).
pub struct KernelConfig {
    text: Vec<u8>,
}

impl KernelConfig {
    pub fn new(text: Vec<u8>) -> KernelConfig {
        KernelConfig { text }
    }

    /// The raw value of `name` (`CONFIG_` included), if it is set.
    fn value(&self, name: &str) -> Option<&[u8]> {
        self.text
            .split(|&b| b == b'\n')
            .find_map(|line| line.strip_prefix(name.as_bytes())?.strip_prefix(b"="))
    }

    /// Whether bool option `name` is `y`.
    pub fn enabled(&self, name: &str) -> bool {
        self.value(name) == Some(b"y")
    }

    /// The text of string option `name` (without its quotes; Kconfig
    /// escapes `"` and `\` with a backslash).
    pub fn string(&self, name: &str) -> Option<String> {
        let quoted = self.value(name)?.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        let mut out = Vec::with_capacity(quoted.len());
        let mut escaped = false;
        for &b in quoted {
            if escaped || b != b'\\' {
                out.push(b);
                escaped = false;
            } else {
                escaped = true;
            }
        }
        String::from_utf8(out).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::KernelConfig;

    #[test]
    fn reads_bools_and_strings() {
        let c = KernelConfig::new(
            b"CONFIG_X86_KERNEL_IBT=y\n# CONFIG_LTO_CLANG is not set\nCONFIG_MODULE_SIG_KEY=\"certs/a \\\"b\\\".pem\"\nCONFIG_X86_KERNEL_IBT_EXTRA=y\n"
                .to_vec(),
        );
        assert!(c.enabled("CONFIG_X86_KERNEL_IBT"));
        assert!(!c.enabled("CONFIG_LTO_CLANG"));
        assert!(!c.enabled("CONFIG_X86"));
        assert_eq!(
            c.string("CONFIG_MODULE_SIG_KEY").as_deref(),
            Some("certs/a \"b\".pem")
        );
        assert_eq!(c.string("CONFIG_MODULE_SIG_HASH"), None);
    }
}
