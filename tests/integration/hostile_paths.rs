//! klp-link fed paths a user can mistype: destinations that are `.`, the
//! tree, an ancestor, a file, a folder that is not a snapshot, or the
//! command's own input; inputs that are missing, folders or special files.
//! Each must fail with a message naming the path, and leave every file
//! exactly as it was (a listing of the scratch folder before and after).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde_json::Value;

use crate::link::Fixture;
use crate::support::{run_klp_link, Run, TempDir};

/// Every path under `root` with what it is: a file's length and a hash of
/// its bytes, its mtime, or a folder, link or special file.
fn listing(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let t = meta.file_type();
            let what = if t.is_dir() {
                todo.push(path.clone());
                "dir".to_owned()
            } else if t.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                format!(
                    "file {} {:016x} {}",
                    bytes.len(),
                    xxhash_rust::xxh3::xxh3_64(&bytes),
                    meta.mtime_nsec() + meta.mtime() * 1_000_000_000
                )
            } else if t.is_symlink() {
                format!("link {}", std::fs::read_link(&path).unwrap().display())
            } else if t.is_fifo() {
                "fifo".to_owned()
            } else {
                "other".to_owned()
            };
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            out.insert(rel, what);
        }
    }
    out
}

/// Runs `args` in `cwd` and checks it failed cleanly: exit 1, no panic, a
/// message that names `names`, and `root` unchanged.
#[track_caller]
fn refused(root: &Path, cwd: &Path, args: &[&OsStr], names: &str, says: &str) -> Run {
    let before = listing(root);
    let r = run_klp_link(cwd, args);
    assert_eq!(r.output.status.code(), Some(1), "{}", r.describe());
    let err = r.stderr();
    assert!(
        !err.contains("panicked") && err.contains(names) && err.contains(says),
        "the message names `{names}` and says `{says}`\n{}",
        r.describe()
    );
    let after = listing(root);
    assert_eq!(before, after, "the files changed\n{}", r.describe());
    r
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

#[test]
fn snapshot_never_replaces_what_is_not_a_snapshot() {
    let Some(fx) = Fixture::new("snapshot_never_replaces_what_is_not_a_snapshot") else {
        return;
    };
    let root = fx.root.path();
    std::fs::create_dir(root.join("mydata")).unwrap();
    std::fs::write(root.join("mydata/precious.txt"), "keep me\n").unwrap();
    std::fs::write(root.join("afile"), "a regular file\n").unwrap();
    std::os::unix::fs::symlink("mydata", root.join("alink")).unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (".", ".", "working directory"),
        ("tree", "tree", "kernel tree"),
        ("..", "..", "holds the working directory"),
        ("tree/kernel", "tree/kernel", "not a klp-link snapshot"),
        ("mydata", "mydata", "not a klp-link snapshot"),
        ("afile", "afile", "not a folder"),
        ("alink", "alink", "symbolic link"),
        ("nowhere/snap", "nowhere/snap", "does not exist"),
    ];
    for (dest, names, says) in cases {
        for force in [false, true] {
            let mut args = vec![os("snapshot"), os("tree"), os("-o"), os(dest)];
            if force {
                args.push(os("--force"));
            }
            refused(root, root, &args, names, says);
        }
    }
    // From inside the tree, `-o .` is the tree and the working directory.
    refused(
        root,
        &root.join("tree/kernel"),
        &[os("snapshot"), os(".."), os("-o"), os("..")],
        "..",
        "refusing",
    );
    let leftovers: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".klp-snapshot"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn snapshot_replaces_only_a_snapshot_and_only_with_force() {
    let Some(fx) = Fixture::new("snapshot_replaces_only_a_snapshot_and_only_with_force") else {
        return;
    };
    let root = fx.root.path();
    fx.snapshot();
    let args = [os("snapshot"), os("tree"), os("-o"), os("snap")];
    refused(root, root, &args, "snap", "--force");

    let first = std::fs::read(fx.snap().join("objects")).unwrap();
    std::fs::remove_file(fx.snap().join("objects")).unwrap();
    let r = fx.link([
        os("snapshot"),
        os("tree"),
        os("-o"),
        os("snap"),
        os("--force"),
    ]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.describe());
    assert_eq!(std::fs::read(fx.snap().join("objects")).unwrap(), first);

    // A file of the user's inside the folder makes it not (only) ours.
    std::fs::write(fx.snap().join("notes.txt"), "mine\n").unwrap();
    let mut forced = args.to_vec();
    forced.push(os("--force"));
    refused(root, root, &forced, "snap", "not a klp-link snapshot");
}

#[test]
fn snapshot_names_objects_without_checksums_and_writes_nothing() {
    let Some(fx) = Fixture::new("snapshot_names_objects_without_checksums_and_writes_nothing")
    else {
        return;
    };
    let root = fx.root.path();
    let core = fx.path("kernel/core.o");
    let bytes = std::fs::read(&core).unwrap();
    std::fs::write(&core, &bytes[..bytes.len() / 3]).unwrap();
    let args = [os("snapshot"), os("tree"), os("-o"), os("snap")];
    let r = refused(root, root, &args, "kernel/core.o", "--accept-unavailable");
    assert!(!fx.snap().exists(), "{}", r.describe());

    let mut accepting = args.to_vec();
    accepting.push(os("--accept-unavailable"));
    let r = fx.link(accepting);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.describe());
    assert!(
        r.stderr()
            .contains("warning: kernel/core.o has no checksums"),
        "{}",
        r.describe()
    );
}

#[test]
fn build_output_replaces_only_a_livepatch_module() {
    let Some(fx) = Fixture::new("build_output_replaces_only_a_livepatch_module") else {
        return;
    };
    if !fx.path("vmlinux").is_file() {
        return;
    }
    let root = fx.root.path();
    fx.snapshot();
    std::fs::write(root.join("notes.txt"), "mine\n").unwrap();
    for (out, says) in [
        ("notes.txt", "not a livepatch module"),
        ("tree/vmlinux", "input"),
        ("tree/kernel/core.o", "not a livepatch module"),
        ("tree", "not a file"),
        (".", "working directory"),
        ("nowhere/x.ko", "does not exist"),
    ] {
        refused(
            root,
            root,
            &[
                os("build"),
                os("snap"),
                os("--vmlinux"),
                os("tree/vmlinux"),
                os("--name"),
                os("x"),
                os("-o"),
                os(out),
            ],
            out,
            says,
        );
    }
}

#[test]
fn fix_lines_output_is_never_the_input_and_needs_force() {
    let dir = TempDir::new("fix-lines-output");
    let root = dir.path();
    let patch = "--- a/f.c\n+++ b/f.c\n@@ -1,2 +1,3 @@\n a\n+b\n c\n";
    dir.write("fix.patch", patch);
    dir.write("other.patch", "old\n");
    dir.mkdir("folder");
    fn fix(out: &str, force: bool) -> Vec<&OsStr> {
        let mut args = vec![os("fix-lines"), os("fix.patch"), os("-o"), os(out)];
        if force {
            args.push(os("--force"));
        }
        args
    }
    refused(root, root, &fix("fix.patch", true), "fix.patch", "input");
    refused(root, root, &fix("./fix.patch", false), "fix.patch", "input");
    refused(
        root,
        root,
        &fix("other.patch", false),
        "other.patch",
        "--force",
    );
    refused(root, root, &fix("folder", true), "folder", "not a file");
    refused(root, root, &fix(".", true), ".", "working directory");
    let r = run_klp_link(root, fix("other.patch", true));
    assert_eq!(r.output.status.code(), Some(0), "{}", r.describe());
    assert!(std::fs::read_to_string(root.join("other.patch"))
        .unwrap()
        .contains("+b\n"));
}

#[test]
fn inputs_that_are_missing_folders_or_special_files_are_named() {
    let dir = TempDir::new("bad-inputs");
    let root = dir.path();
    dir.mkdir("folder");
    let fifo = root.join("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    for bad in ["missing", "folder", "fifo"] {
        for args in [
            vec![os("diff"), os(bad)],
            vec![os("diff-objects"), os(bad), os(bad)],
            vec![os("fix-lines"), os(bad)],
            vec![os("snapshot"), os(bad), os("-o"), os("snap")],
        ] {
            // A fifo nobody writes would block a reader: it must be
            // refused before anything opens it for reading.
            refused(root, root, &args, bad, "");
        }
    }
}

#[test]
fn json_runs_that_fail_still_print_json() {
    let dir = TempDir::new("json-failure");
    for args in [
        vec![os("diff"), os("no-such-snapshot"), os("--json")],
        vec![os("diff-objects"), os("a.o"), os("b.o"), os("--json")],
    ] {
        let r = run_klp_link(dir.path(), &args);
        assert_eq!(r.output.status.code(), Some(1), "{}", r.describe());
        let doc: Value = serde_json::from_str(&r.stdout())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", r.describe()));
        let errors = doc["errors"].as_array().expect("an errors array");
        assert!(
            errors.len() == 1 && errors[0].as_str().unwrap().contains(".o")
                || errors[0].as_str().unwrap().contains("no-such-snapshot"),
            "{doc:#}"
        );
        assert_eq!(doc["changed"], Value::Array(vec![]));
    }
}

#[test]
fn klp_cc_manifest_names_inputs_it_cannot_read() {
    use crate::support::run_klp_cc;
    let dir = TempDir::new("klp-cc-bad-inputs");
    let root = dir.path();
    dir.mkdir("folder");
    dir.write("source.c", "int x;\n");
    let status = std::process::Command::new("mkfifo")
        .arg(root.join("fifo"))
        .status()
        .unwrap();
    assert!(status.success());
    for bad in ["missing.o", "folder", "fifo", "source.c"] {
        for stdout in [false, true] {
            let mut args = vec![os("--manifest")];
            if stdout {
                args.push(os("--stdout"));
            }
            args.push(os(bad));
            let before = listing(root);
            let r = run_klp_cc(root, &args);
            assert_eq!(r.output.status.code(), Some(1), "{}", r.describe());
            assert!(r.stderr().contains(bad), "{}", r.describe());
            assert_eq!(before, listing(root), "{}", r.describe());
        }
    }
}

#[test]
fn a_snapshot_folder_with_a_non_utf8_name_works() {
    use std::os::unix::ffi::OsStrExt as _;
    let Some(fx) = Fixture::new("a_snapshot_folder_with_a_non_utf8_name_works") else {
        return;
    };
    let name = OsStr::from_bytes(b"snap\xff");
    let r = fx.link([os("snapshot"), os("tree"), os("-o"), name]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.describe());
    let r = fx.link([os("diff"), name]);
    assert_eq!(r.output.status.code(), Some(3), "{}", r.describe());
    let r = fx.link([os("snapshot"), os("tree"), os("-o"), name, os("--force")]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.describe());
}
