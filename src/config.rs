//! klp-cc's settings, all from `KLP_CC_*` environment variables, read once
//! at start-up so that nothing else consults the environment.
//!
//! | variable | meaning |
//! | --- | --- |
//! | `KLP_CC_COMPILER` | the compiler command for a bare `klp-cc ARGS...` (shell words, e.g. `ccache gcc`); default `gcc` |
//! | `KLP_CC_SECTIONS` | `0` leaves `-ffunction-sections -fdata-sections` off; manifests are still written |
//! | `KLP_CC_LOG` | a file to which klp-cc appends one line per invocation: its decision and why |
//! | `KLP_CC_ACTIVE` | set by klp-cc for the compiler it runs: the programs already in the chain, so a nested klp-cc (a masquerading `gcc` found by ccache, say) neither loops nor writes a second manifest |

use std::ffi::OsString;
use std::path::PathBuf;

pub const COMPILER_VAR: &str = "KLP_CC_COMPILER";
pub const SECTIONS_VAR: &str = "KLP_CC_SECTIONS";
pub const LOG_VAR: &str = "KLP_CC_LOG";
pub const ACTIVE_VAR: &str = "KLP_CC_ACTIVE";

#[derive(Debug, Clone, Default)]
pub struct Config {
    pub compiler: Option<String>,
    pub sections: bool,
    pub log: Option<PathBuf>,
    /// Canonical paths of the programs an outer klp-cc already ran; `None`
    /// when this klp-cc is the outermost.
    pub active_chain: Option<Vec<PathBuf>>,
}

impl Config {
    pub fn from_env() -> Config {
        let var = |name| std::env::var_os(name).filter(|v: &OsString| !v.is_empty());
        Config {
            compiler: var(COMPILER_VAR).map(|v| v.to_string_lossy().into_owned()),
            sections: var(SECTIONS_VAR).is_none_or(|v| v != "0"),
            log: var(LOG_VAR).map(PathBuf::from),
            active_chain: std::env::var_os(ACTIVE_VAR).map(|v| std::env::split_paths(&v).collect()),
        }
    }
}
