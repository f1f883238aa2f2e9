//! Finding the real compiler and running it transparently.
//!
//! klp-cc is reached in three ways: `klp-cc gcc ARGS` (or `klp-cc ccache gcc
//! ARGS`), a bare `klp-cc ARGS` (compiler from `KLP_CC_COMPILER`, else
//! `gcc`), or a symlink named like a compiler in a folder put first on PATH.
//! In every case the program is looked up on PATH skipping klp-cc itself and
//! anything an outer klp-cc already ran, so it never runs itself and never
//! loops through a compiler cache that finds the masquerading name again.
//!
//! Whether the first argument names the compiler is decided by its spelling
//! alone, never by whether such a program is installed: otherwise a missing
//! `clang-99` would quietly become an input file of `$KLP_CC_COMPILER`. It
//! names a program unless it starts with `-` or `@`, contains `=`, ends in a
//! source, object, archive or linker-script suffix (`.c`, `.S`, `.o`, `.a`,
//! `.so`, `.lds`, ... see [`FILE_SUFFIXES`]), or is a path to something that
//! exists but is not a regular file (`/dev/null`). A word that names a
//! program and cannot be run is an error: nothing runs and nothing is
//! written. kbuild always puts the compiler first (`CC="klp-cc gcc"`), and a
//! bare `CC=klp-cc` starts with flags or files, so neither is affected.
//!
//! The child inherits stdin, stdout and stderr, so its output passes through
//! byte for byte. SIGTERM and SIGHUP sent to klp-cc while the child runs are
//! forwarded to it (SIGINT and SIGQUIT reach it from the terminal), and a
//! child killed by a signal makes klp-cc die of the same signal. A signal
//! the child survives, or one that arrives while klp-cc writes manifests,
//! is held until the manifests are written; then klp-cc dies of it.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::config::{Config, ACTIVE_VAR};

/// Compiler caches and distributors that take the compiler as their first
/// argument (cc-rs knows the same list).
const WRAPPERS: &[&str] = &["buildcache", "ccache", "distcc", "icecc", "sccache"];

/// Suffixes that make a first argument an input or output file of the
/// compiler rather than the compiler's name: what gcc and clang recognise by
/// suffix, plus objects, archives, shared objects and linker scripts.
pub const FILE_SUFFIXES: &[&str] = &[
    "c", "h", "i", "ii", "cc", "cp", "cxx", "cpp", "CPP", "c++", "C", "hh", "H", "hp", "hxx",
    "hpp", "HPP", "h++", "tcc", "m", "mi", "mm", "M", "mii", "s", "S", "sx", "o", "a", "so", "lds",
    "ld", "ko", "bc", "ll", "d", "map", "txt",
];

/// The real command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The program to execute (a compiler, or a wrapper such as ccache).
    pub program: PathBuf,
    /// For a wrapper, the compiler it is to run (resolved to a path).
    pub wrapped: Option<PathBuf>,
    /// The compiler's own arguments.
    pub args: Vec<OsString>,
    /// The programs in the chain so far, for the child's `KLP_CC_ACTIVE`.
    pub chain: Vec<PathBuf>,
}

impl Resolved {
    /// The compiler proper (the wrapped one when there is a wrapper).
    pub fn compiler(&self) -> &Path {
        self.wrapped.as_deref().unwrap_or(&self.program)
    }
}

#[derive(Debug)]
pub enum FindError {
    /// `name` is nowhere on PATH; `only_skipped` when it is there, but only
    /// as klp-cc itself or a program an outer klp-cc already ran.
    NotFound { name: String, only_skipped: bool },
    /// A compiler named by path that is not an executable file.
    NotExecutable { path: PathBuf },
    /// A compiler named by path that is klp-cc itself or a program an outer
    /// klp-cc already ran.
    Looping { path: PathBuf },
    /// `KLP_CC_COMPILER` could not be split into words.
    BadCompilerVar { value: String, why: String },
}

impl fmt::Display for FindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FindError::NotFound { name, only_skipped } => {
                write!(f, "cannot find compiler `{name}` on PATH")?;
                if *only_skipped {
                    write!(
                        f,
                        " (only klp-cc itself or a program it already ran has that name); \
                         install it or name it by path, e.g. `klp-cc /usr/bin/gcc ...`"
                    )?;
                }
                Ok(())
            }
            FindError::NotExecutable { path } => write!(
                f,
                "cannot find compiler `{}`: not an executable file",
                path.display()
            ),
            FindError::Looping { path } => write!(
                f,
                "will not run compiler `{}`: it is klp-cc itself or a program it already ran",
                path.display()
            ),
            FindError::BadCompilerVar { value, why } => {
                write!(f, "KLP_CC_COMPILER=`{value}` is not a valid command: {why}")
            }
        }
    }
}

impl std::error::Error for FindError {}

/// Works out which real program to run for klp-cc invoked as `argv0` with
/// arguments `rest`.
pub fn resolve(
    argv0: &OsStr,
    rest: &[OsString],
    config: &Config,
    self_exe: &Path,
) -> Result<Resolved, FindError> {
    let invoked = Path::new(argv0)
        .file_name()
        .unwrap_or(argv0)
        .to_string_lossy()
        .into_owned();
    let mut skip: Vec<PathBuf> = config.active_chain.clone().unwrap_or_default();
    skip.extend(canonical(self_exe));

    let (mut words, mut args): (Vec<OsString>, Vec<OsString>) = if !invoked.starts_with("klp-cc") {
        // Masquerading as the compiler of that name.
        (vec![invoked.into()], rest.to_vec())
    } else if rest.first().is_some_and(|a| names_program(a)) {
        (vec![rest[0].clone()], rest[1..].to_vec())
    } else {
        let value = config.compiler.clone().unwrap_or_else(|| "gcc".into());
        let words = shell_words::split(&value).map_err(|e| FindError::BadCompilerVar {
            value: value.clone(),
            why: e.to_string(),
        })?;
        if words.is_empty() {
            return Err(FindError::BadCompilerVar {
                value,
                why: "it is empty".into(),
            });
        }
        (
            words.into_iter().map(OsString::from).collect(),
            rest.to_vec(),
        )
    };

    let program = find(&words[0], &skip)?;
    let mut chain = config.active_chain.clone().unwrap_or_default();
    chain.extend(canonical(&program));
    let mut wrapped = None;
    if is_wrapper(&words[0]) {
        if words.len() == 1 && args.first().is_some_and(|a| names_program(a)) {
            words.push(args.remove(0));
        }
        if let Some(compiler) = words.get(1) {
            let mut skip = skip.clone();
            skip.extend(canonical(&program));
            wrapped = Some(find(compiler, &skip)?);
        }
    }
    // Extra words of KLP_CC_COMPILER (beyond program and compiler) are
    // arguments that come first.
    let extra = words.len().min(if wrapped.is_some() { 2 } else { 1 });
    args.splice(0..0, words.drain(extra..));
    Ok(Resolved {
        program,
        wrapped,
        args,
        chain,
    })
}

fn is_wrapper(word: &OsStr) -> bool {
    let name = Path::new(word).file_name().unwrap_or(word);
    WRAPPERS.iter().any(|w| name == *w)
}

/// Whether `arg` names a program rather than being a compiler argument, by
/// the rule in the module documentation. Whether the program exists is
/// left to [`find`], so that a missing one is reported, not passed on.
fn names_program(arg: &OsStr) -> bool {
    let bytes = arg.as_encoded_bytes();
    if bytes.is_empty() || bytes[0] == b'-' || bytes[0] == b'@' || bytes.contains(&b'=') {
        return false;
    }
    let path = Path::new(arg);
    let file_name = path.file_name().unwrap_or(arg).to_string_lossy();
    // `libfoo.so.1` is a versioned shared object.
    let mut parts = file_name.split('.').skip(1);
    if parts.any(|p| p == "so")
        || path
            .extension()
            .is_some_and(|e| FILE_SUFFIXES.iter().any(|s| e == *s))
    {
        return false;
    }
    let is_path = bytes.contains(&b'/');
    !(is_path && std::fs::metadata(path).is_ok_and(|m| !m.is_file()))
}

/// Looks `name` up like a shell would, skipping `skip` (canonical paths).
fn find(name: &OsStr, skip: &[PathBuf]) -> Result<PathBuf, FindError> {
    let skipped = |p: &Path| canonical(p).is_some_and(|c| skip.contains(&c));
    if name.as_encoded_bytes().contains(&b'/') {
        let path = PathBuf::from(name);
        return if !is_executable(&path) {
            Err(FindError::NotExecutable { path })
        } else if skipped(&path) {
            Err(FindError::Looping { path })
        } else {
            Ok(path)
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut candidates = std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .filter(|p| is_executable(p))
        .peekable();
    let only_skipped = candidates.peek().is_some();
    candidates
        .find(|p| !skipped(p))
        .ok_or_else(|| FindError::NotFound {
            name: name.to_string_lossy().into_owned(),
            only_skipped,
        })
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn canonical(p: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(p).ok()
}

/// The real command could not be started or waited for.
#[derive(Debug)]
pub struct SpawnError {
    pub command: String,
    pub error: std::io::Error,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not run `{}`: {}", self.command, self.error)
    }
}

impl std::error::Error for SpawnError {}

/// The child's pid while it runs, for the forwarding signal handler.
static CHILD: AtomicI32 = AtomicI32::new(0);

/// The last termination signal klp-cc received while the child ran, so that
/// one the child survived (or that came as it exited) still ends klp-cc.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Signals that end klp-cc: the first two are forwarded to the child, the
/// terminal's two reach it through the process group anyway (as with
/// system(3)).
const TERMINATING: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGQUIT];

extern "C" fn forward(signal: libc::c_int) {
    RECEIVED.store(signal, Ordering::SeqCst);
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 && (signal == libc::SIGTERM || signal == libc::SIGHUP) {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Blocks or unblocks the [`TERMINATING`] signals for this thread (and the
/// threads it starts later).
fn mask_terminating(how: libc::c_int) {
    // SAFETY: building a signal set on the stack and changing this thread's
    // signal mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in TERMINATING {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// Runs `resolved` with `extra` arguments appended and waits for it. It
/// returns with termination signals blocked: end with [`exit_like`].
pub fn run(resolved: &Resolved, extra: &[&str]) -> Result<ExitStatus, SpawnError> {
    let mut cmd = Command::new(&resolved.program);
    cmd.arg0(&resolved.program);
    if let Some(w) = &resolved.wrapped {
        cmd.arg(w);
    }
    cmd.args(&resolved.args).args(extra);
    if let Ok(chain) = std::env::join_paths(&resolved.chain) {
        cmd.env(ACTIVE_VAR, chain);
    }
    let describe = || {
        let mut s = resolved.program.display().to_string();
        if let Some(w) = &resolved.wrapped {
            s = format!("{s} {}", w.display());
        }
        for a in resolved.args.iter().take(8) {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        if resolved.args.len() > 8 {
            s.push_str(" ...");
        }
        s
    };
    // Installed before the spawn, so that a signal the child's start
    // provokes is caught; exec resets handlers, so the child gets defaults.
    // SAFETY: installing a handler that only uses atomics and kill(2),
    // remembering what was there before.
    let previous =
        TERMINATING.map(|s| unsafe { libc::signal(s, forward as *const () as libc::sighandler_t) });
    let restore = || {
        for (s, old) in TERMINATING.into_iter().zip(previous) {
            // SAFETY: restoring the disposition klp-cc started with.
            unsafe { libc::signal(s, old) };
        }
    };
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(error) => {
            restore();
            return Err(SpawnError {
                command: describe(),
                error,
            });
        }
    };
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    let early = RECEIVED.load(Ordering::SeqCst);
    if early == libc::SIGTERM || early == libc::SIGHUP {
        // SAFETY: it came before the child's pid was known to the handler.
        unsafe { libc::kill(child.id() as i32, early) };
    }
    let status = child.wait().map_err(|error| SpawnError {
        command: describe(),
        error,
    });
    CHILD.store(0, Ordering::SeqCst);
    // From here until `exit_like`, termination signals wait: the manifest
    // is written whole (an interrupted one would leave its temporary file
    // behind) and then klp-cc dies of them. One caught while the child ran
    // is raised again, unless the child died of a signal, which klp-cc then
    // dies of.
    mask_terminating(libc::SIG_BLOCK);
    restore();
    let received = RECEIVED.swap(0, Ordering::SeqCst);
    if received != 0 && status.as_ref().is_ok_and(|s| s.signal().is_none()) {
        // SAFETY: the signal is blocked, so raising it only makes it pending.
        unsafe { libc::raise(received) };
    }
    status
}

/// Ends klp-cc the way the child ended: with its exit code, or by the signal
/// that killed it. A termination signal held back since the child ended
/// (see [`run`]) is delivered first.
pub fn exit_like(status: ExitStatus) -> ! {
    if let Some(signal) = status.signal() {
        // SAFETY: restoring the default action, so that raising the signal
        // below (or its delivery on unblocking) ends klp-cc.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    mask_terminating(libc::SIG_UNBLOCK);
    if let Some(signal) = status.signal() {
        // SAFETY: raising a signal on ourselves, unblocked in case it is
        // not one of ours; if it does not end us, fall through to exit.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(signal);
        }
        std::process::exit(128 + signal);
    }
    std::process::exit(status.code().unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrappers_are_recognised_by_file_name() {
        assert!(is_wrapper(OsStr::new("ccache")));
        assert!(is_wrapper(OsStr::new("/usr/bin/sccache")));
        assert!(!is_wrapper(OsStr::new("gcc")));
    }

    #[test]
    fn flags_and_files_are_not_programs() {
        for arg in [
            "-c",
            "@args",
            "no-such-source-file.c",
            "dir/x.S",
            "x.o",
            "lib.a",
            "libfoo.so.1",
            "vmlinux.lds",
            "CC=gcc",
            "/dev/null",
            "",
        ] {
            assert!(!names_program(OsStr::new(arg)), "{arg}");
        }
    }

    #[test]
    fn program_names_are_programs_whether_or_not_installed() {
        for arg in [
            "sh",
            "gcc",
            "clang-99",
            "gcc-4.9",
            "x86_64-linux-gnu-gcc-12",
            "/usr/bin/gcc",
            "./no-such-cc",
        ] {
            assert!(names_program(OsStr::new(arg)), "{arg}");
        }
    }
}
