//! Termination signals while `klp-link patch` has the tree patched: they
//! are caught, not obeyed, until the tree is restored; then klp-link dies
//! of the first one, as the shell expects. SIGTERM and SIGHUP are passed on
//! to the running child (make forwards them to its compilers); SIGINT and
//! SIGQUIT reach the children from the terminal by themselves.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};

static CHILD: AtomicI32 = AtomicI32::new(0);
static RECEIVED: AtomicI32 = AtomicI32::new(0);

const CAUGHT: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGQUIT];

extern "C" fn note(signal: libc::c_int) {
    // The first one decides how klp-link ends.
    let _ = RECEIVED.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 && (signal == libc::SIGTERM || signal == libc::SIGHUP) {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Catches the termination signals from now on.
pub fn catch() {
    for s in CAUGHT {
        // SAFETY: the handler only touches atomics and calls kill(2).
        unsafe { libc::signal(s, note as *const () as libc::sighandler_t) };
    }
}

/// Lets the termination signals act as usual again: the tree is restored.
pub fn release() {
    for s in CAUGHT {
        // SAFETY: restoring the default action.
        unsafe { libc::signal(s, libc::SIG_DFL) };
    }
}

/// The first termination signal received, if any.
pub fn received() -> Option<libc::c_int> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Runs `cmd` to its end, passing termination signals on to it. Should
/// klp-link be killed outright, the child gets SIGTERM: a make left
/// running would write patched objects while the next run restores the
/// tree.
pub fn run(cmd: &mut Command) -> std::io::Result<ExitStatus> {
    // SAFETY: prctl is async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child: Child = cmd.spawn()?;
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    if let Some(s) = received().filter(|&s| s == libc::SIGTERM || s == libc::SIGHUP) {
        // SAFETY: it came before the handler knew the child's pid.
        unsafe { libc::kill(child.id() as i32, s) };
    }
    let status = child.wait();
    CHILD.store(0, Ordering::SeqCst);
    status
}

/// Ends klp-link by the signal it caught, once the tree is restored.
pub fn die_of(signal: libc::c_int) -> ! {
    // SAFETY: restoring the default action and raising the signal on
    // ourselves; should it not end us, exit as a shell reports it.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
    std::process::exit(128 + signal)
}
