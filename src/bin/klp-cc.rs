//! klp-cc: put in CC of a kernel build (`make CC="klp-cc gcc"`). Runs the
//! real compiler with `-ffunction-sections -fdata-sections` added and writes
//! a checksum manifest beside every object it compiles. Settings come from
//! `KLP_CC_*` environment variables (see `klp_cc::config`); the compiler's
//! arguments are never parsed as klp-cc options, except `--manifest` given
//! first to `klp-cc` itself.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use klp_cc::{compiler, config::Config, manifest, shim};

const USAGE: &str = "\
usage: klp-cc [COMPILER [ARGS...]]      run COMPILER (e.g. gcc, clang, `ccache gcc`) on ARGS,
                                        adding -ffunction-sections -fdata-sections and
                                        writing a checksum manifest beside each object
       klp-cc ARGS...                   the same with $KLP_CC_COMPILER (default gcc)
       klp-cc --manifest [--stdout] OBJECT...
                                        compute the manifests of existing objects

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

fn manifest_command(args: &[OsString]) -> ExitCode {
    let to_stdout = args.first().is_some_and(|a| a == "--stdout");
    let objects: Vec<PathBuf> = args[usize::from(to_stdout)..]
        .iter()
        .map(PathBuf::from)
        .collect();
    if objects.is_empty() {
        eprintln!("klp-cc: --manifest needs at least one object file\n\n{USAGE}");
        return ExitCode::from(2);
    }
    if to_stdout {
        let mut failed = false;
        for object in &objects {
            let m = shim::compute(object);
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
