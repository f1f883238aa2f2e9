//! klp-cc: put in CC of a kernel build (`make CC="klp-cc gcc"`). Runs the
//! real compiler with `-ffunction-sections -fdata-sections` added and writes
//! a checksum manifest beside every object it compiles. Settings come from
//! `KLP_CC_*` environment variables (see `klp_cc::config`); the compiler's
//! arguments are never parsed as klp-cc options, except `--manifest` given
//! first to `klp-cc` itself.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use klp_cc::checksum::manifest_of;
use klp_cc::{compiler, config::Config, manifest, shim};

const USAGE: &str = "\
usage: klp-cc [COMPILER [ARGS...]]      run COMPILER (e.g. gcc, clang, `ccache gcc`) on ARGS,
                                        adding -ffunction-sections -fdata-sections and
                                        writing a checksum manifest beside each object
       klp-cc ARGS...                   the same with $KLP_CC_COMPILER (default gcc), when the
                                        first argument is a flag or a source or object file
       klp-cc --manifest [--stdout] OBJECT...
                                        compute the manifests of existing objects
       klp-cc --help                    this help; the compiler's own is `klp-cc gcc --help`

A first argument that is not a flag or a file is the compiler; one that is not
installed is an error (exit 127). `klp-cc --version` is the compiler's version.
Environment: KLP_CC_COMPILER, KLP_CC_SECTIONS=0 (no section flags), KLP_CC_LOG=FILE.
A symlink to klp-cc named like a compiler runs that compiler from later on PATH.";

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let invoked_as_self = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n.to_string_lossy().starts_with("klp-cc"));
    if invoked_as_self {
        match argv.get(1).and_then(|a| a.to_str()) {
            None => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
            Some("--help" | "-h") => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Some("--manifest") => return manifest_command(&argv[2..]),
            _ => {}
        }
    }
    let config = Config::from_env();
    let self_exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("klp-cc: cannot find its own executable: {e}");
            return ExitCode::from(127);
        }
    };
    match shim::run(&argv, &config, &self_exe) {
        Ok(status) => compiler::exit_like(status),
        Err(e) => {
            eprintln!("klp-cc: {e}");
            // The shell's code for "command not found / not runnable".
            ExitCode::from(127)
        }
    }
}

/// What `klp-cc --manifest` was asked to do.
enum ManifestRequest {
    Help,
    Write {
        to_stdout: bool,
        objects: Vec<PathBuf>,
    },
}

/// A `klp-cc --manifest` command line that cannot be obeyed.
#[derive(Debug)]
enum ManifestUsageError {
    NoObjects,
    UnknownOption(String),
}

impl fmt::Display for ManifestUsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestUsageError::NoObjects => {
                f.write_str("--manifest needs at least one object file")
            }
            ManifestUsageError::UnknownOption(o) => write!(
                f,
                "--manifest takes no option `{o}` (only --stdout, first); \
                 name a file that starts with `-` as ./{o}"
            ),
        }
    }
}

impl std::error::Error for ManifestUsageError {}

/// Reads `--manifest`'s arguments. Objects never start with `-`, so that a
/// mistyped option is refused rather than read as a missing object.
fn parse_manifest_args(args: &[OsString]) -> Result<ManifestRequest, ManifestUsageError> {
    let to_stdout = args.first().is_some_and(|a| a == "--stdout");
    let mut objects = Vec::new();
    for arg in &args[usize::from(to_stdout)..] {
        if arg == "--help" || arg == "-h" {
            return Ok(ManifestRequest::Help);
        }
        if arg.as_encoded_bytes().starts_with(b"-") {
            return Err(ManifestUsageError::UnknownOption(
                arg.to_string_lossy().into_owned(),
            ));
        }
        objects.push(PathBuf::from(arg));
    }
    if objects.is_empty() {
        return Err(ManifestUsageError::NoObjects);
    }
    Ok(ManifestRequest::Write { to_stdout, objects })
}

fn manifest_command(args: &[OsString]) -> ExitCode {
    let (to_stdout, objects) = match parse_manifest_args(args) {
        Ok(ManifestRequest::Write { to_stdout, objects }) => (to_stdout, objects),
        Ok(ManifestRequest::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("klp-cc: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if to_stdout {
        let mut failed = false;
        for object in &objects {
            let m = manifest_of(object);
            if let manifest::Content::Unavailable(why) = &m.content {
                eprintln!("klp-cc: {}: no checksums: {why}", object.display());
                failed = true;
                continue;
            }
            print!("{}", m.to_text());
        }
        return if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    match shim::manifests_for_objects(&objects) {
        Ok(written) => {
            for p in written {
                eprintln!("klp-cc: wrote {}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("klp-cc: {e}");
            ExitCode::FAILURE
        }
    }
}
