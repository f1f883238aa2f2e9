//! The manifest of one object, computed from its bytes: what klp-cc writes
//! after a compile and what klp-link recomputes for an object whose
//! manifest is missing or stale.
//!
//! Checksumming must never take a compile down: malformed input gives an
//! error, and should a bug still panic, the manifest records it and the
//! compile keeps its status (its stderr stays the compiler's).

use std::cell::Cell;
use std::path::Path;
use std::sync::Once;

use super::{checksum_object, ChecksumError, ObjectChecksums};
use crate::manifest::{Content, Manifest};

/// The manifest of the object at `object`, with the fields only a compile
/// knows (driver, flags, sections) left unset.
pub fn manifest_of(object: &Path) -> Manifest {
    let mut m = Manifest {
        object: object.to_owned(),
        compiler: None,
        driver: None,
        flags: None,
        sections: None,
        arch: None,
        fingerprint: None,
        content: Content::Unavailable(String::new()),
    };
    // Only a regular file is read: a fifo or a device named by mistake
    // would block klp-cc or klp-link, or feed them endless bytes.
    let bytes = match std::fs::metadata(object) {
        Ok(meta) if !meta.is_file() => Err(std::io::Error::other(
            "not a regular file (a folder, fifo or device)",
        )),
        _ => std::fs::read(object),
    };
    match bytes {
        Err(e) => m.content = Content::Unavailable(format!("cannot read the object: {e}")),
        Ok(bytes) => match checksum_guarded(&bytes) {
            Ok(sums) => {
                m.compiler = sums.compiler;
                m.arch = Some(sums.arch.to_owned());
                m.fingerprint = Some(sums.fingerprint);
                m.content = Content::Checksums(sums.symbols);
            }
            Err(e) => m.content = Content::Unavailable(e.to_string()),
        },
    }
    m
}

/// Checksums that cannot take the compile down: malformed input is meant
/// to give an error, but should a bug still panic, the manifest records it
/// and the compile keeps its status (and its stderr stays the compiler's).
fn checksum_guarded(bytes: &[u8]) -> Result<ObjectChecksums, ChecksumError> {
    guarded(|| checksum_object(bytes)).unwrap_or_else(|what| {
        Err(ChecksumError::Malformed(format!(
            "klp-cc internal error while checksumming ({what}); please report it"
        )))
    })
}

thread_local! {
    /// Whether this thread is inside [`guarded`], whose panics are not reported.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `work`, turning a panic into `Err` with its message, without the
/// panic hook reporting it. The hook is process-wide and klp-link calls
/// this from a thread pool, so it is wrapped once, for good, and only the
/// panicking thread's own flag decides; swapping hooks around each call
/// would let two threads leave the silent one installed.
fn guarded<T>(work: impl FnOnce() -> T + std::panic::UnwindSafe) -> Result<T, String> {
    static WRAP_HOOK: Once = Once::new();
    WRAP_HOOK.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(Cell::get) {
                report(info);
            }
        }));
    });
    let outer = GUARDED.with(|g| g.replace(true));
    let result = std::panic::catch_unwind(work);
    GUARDED.with(|g| g.set(outer));
    result.map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The child half of [`guarded_panics_are_silent_and_others_still_reported`]:
    /// it needs a process whose panic hook nothing else has touched.
    #[test]
    #[ignore = "run in a child process by guarded_panics_are_silent_and_others_still_reported"]
    fn concurrent_guarded_panics_child() {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..200 {
                        match guarded(|| {
                            if (t + i) % 2 == 0 {
                                panic!("quiet-marker {t} {i}");
                            }
                            i
                        }) {
                            Ok(v) => assert_eq!(v, i),
                            Err(what) => assert_eq!(what, format!("quiet-marker {t} {i}")),
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a guarded panic escaped");
        }
        let loud = std::thread::spawn(|| panic!("loud-marker")).join();
        assert!(loud.is_err());
    }

    #[test]
    fn guarded_panics_are_silent_and_others_still_reported() {
        let child = "checksum::object_manifest::tests::concurrent_guarded_panics_child";
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([child, "--exact", "--ignored", "--nocapture"])
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let context = format!("--- stdout ---\n{stdout}--- stderr ---\n{stderr}");
        assert!(out.status.success(), "{context}");
        assert!(
            stdout.contains("1 passed"),
            "the child test did not run\n{context}"
        );
        assert!(
            !stderr.contains("quiet-marker"),
            "a guarded panic was reported\n{context}"
        );
        assert_eq!(
            stderr.matches("loud-marker").count(),
            1,
            "an unguarded panic was not reported\n{context}"
        );
    }
}
