//! Paths are bytes on Linux, and kernel sources hold Latin-1: objects named
//! with bytes that are not UTF-8 keep their own manifests and their own
//! snapshot records, and `fix-lines` passes such bytes through untouched.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use klp_cc::manifest::{self, Manifest};

use crate::support::{
    checksummed_symbols, find_program, klp_cc_command, run, run_klp_cc, run_klp_link, skip, Cc,
    CcKind, TempDir,
};

fn os(bytes: &[u8]) -> OsString {
    OsStr::from_bytes(bytes).to_owned()
}

fn path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(os(bytes))
}

fn source(func: &str, body: &str) -> String {
    format!("int {func}(int x)\n{{\n\treturn {body};\n}}\n")
}

/// Compiles `src` to `obj` (both relative to `dir`) through klp-cc, and
/// makes sure a rebuilt object looks newer, as make and klp-link go by time.
fn compile(cc: &Cc, dir: &Path, src: &[u8], obj: &[u8]) {
    let before = std::fs::metadata(dir.join(path(obj)))
        .and_then(|m| m.modified())
        .ok();
    let mut cmd = klp_cc_command(dir);
    cmd.arg(cc.program())
        .args(cc.kernel_cflags())
        .arg("-c")
        .arg(os(src))
        .arg("-o")
        .arg(os(obj));
    run(cmd).assert_success();
    if let Some(before) = before {
        let file = std::fs::File::options()
            .write(true)
            .open(dir.join(path(obj)))
            .unwrap();
        if file.metadata().unwrap().modified().unwrap() <= before {
            file.set_modified(before + Duration::from_millis(10))
                .unwrap();
        }
    }
}

fn function_names(m: &Manifest) -> Vec<String> {
    checksummed_symbols(m)
        .iter()
        .map(|s| s.name.clone())
        .collect()
}

#[test]
fn non_utf8_objects_get_distinct_manifests() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "non_utf8_objects_get_distinct_manifests") else {
        return;
    };
    let dir = TempDir::new("non-utf8");
    dir.write(path(b"a\xff.c"), source("f_ff", "x + 1"));
    dir.write(path(b"a\xfe.c"), source("f_fe", "x + 2"));
    compile(&cc, dir.path(), b"a\xff.c", b"a\xff.o");
    compile(&cc, dir.path(), b"a\xfe.c", b"a\xfe.o");

    let mut manifests: Vec<Vec<u8>> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .filter(|n| n.ends_with(b".klp"))
        .collect();
    manifests.sort();
    assert_eq!(
        manifests,
        [b".a\xfe.o.klp".to_vec(), b".a\xff.o.klp".to_vec()],
        "one manifest per object, named by its exact bytes"
    );
    for (obj, func, escaped) in [
        (&b"a\xff.o"[..], "f_ff", "object a\\xff.o\n"),
        (&b"a\xfe.o"[..], "f_fe", "object a\\xfe.o\n"),
    ] {
        let object = dir.join(path(obj));
        let m = Manifest::read(&manifest::path_for(&object)).unwrap();
        assert_eq!(m.object, path(obj), "the object line names its own object");
        assert_eq!(function_names(&m), [func]);
        let text = std::fs::read_to_string(manifest::path_for(&object)).unwrap();
        assert!(text.contains(escaped), "{text}");

        let r = run_klp_cc(dir.path(), [os(b"--manifest"), os(b"--stdout"), os(obj)]);
        let r = r.assert_success();
        assert!(r.stdout().contains(escaped), "{}", r.describe());
    }
}

#[test]
fn non_utf8_objects_snapshot_and_diff() {
    let test = "non_utf8_objects_snapshot_and_diff";
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, test) else {
        return;
    };
    if find_program("ar").is_none() {
        skip(test, "no `ar` on PATH");
        return;
    }
    let root = TempDir::new("non-utf8-tree");
    let tree = root.mkdir("tree");
    root.write("tree/.config", "CONFIG_MODULES=y\n");
    let sources: [(&[u8], &str); 3] = [
        (b"kernel/a\xff", "f_ff"),
        (b"kernel/a\xfe", "f_fe"),
        (b"drivers/\xe9/m\xe9", "f_mod"),
    ];
    for (stem, func) in sources {
        let src = [stem, b".c"].concat();
        root.write(Path::new("tree").join(path(&src)), source(func, "x + 1"));
        compile(&cc, &tree, &src, &[stem, b".o"].concat());
    }
    let mut ar = Command::new("ar");
    ar.current_dir(&tree)
        .args(["cDPrST", "built-in.a"])
        .arg(os(b"kernel/a\xff.o"))
        .arg(os(b"kernel/a\xfe.o"));
    run(ar).assert_success();
    root.write("tree/modules.order", b"drivers/\xe9/my-mod.ko\n");
    root.write(
        Path::new("tree").join(path(b"drivers/\xe9/my-mod.mod")),
        b"drivers/\xe9/m\xe9.o\n",
    );

    let snap = run_klp_link(root.path(), ["snapshot", "tree", "-o", "snap"]);
    snap.assert_success();
    let objects = std::fs::read_to_string(root.join("snap/objects")).unwrap();
    for escaped in [
        "kernel/a\\xff.o",
        "kernel/a\\xfe.o",
        "drivers/\\xe9/m\\xe9.o",
    ] {
        assert!(
            objects.contains(&format!("object {escaped} ")),
            "{escaped} recorded by its bytes\n{objects}"
        );
    }
    let diff = |what: &str| {
        let r = run_klp_link(root.path(), ["diff", "snap", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&r.stdout())
            .unwrap_or_else(|e| panic!("{what}: {e}\n{}", r.describe()));
        (r.output.status.code(), v, r.describe())
    };
    let (code, v, describe) = diff("unchanged");
    assert_eq!(code, Some(3), "no change\n{describe}");
    assert_eq!(v["objects"], 3, "three distinct objects\n{describe}");

    root.write(
        Path::new("tree").join(path(b"kernel/a\xff.c")),
        source("f_ff", "x + 3"),
    );
    compile(&cc, &tree, b"kernel/a\xff.c", b"kernel/a\xff.o");
    let (code, v, describe) = diff("a\\xff.c changed");
    assert_eq!(code, Some(0), "{describe}");
    assert_eq!(v["changed"], serde_json::json!(["f_ff"]), "{describe}");
    assert_eq!(v["rebuilt"], 1, "{describe}");
    // The report names the object by its bytes, escaped as in manifests.
    let object = &v["targets"][0]["changed"][0]["object"];
    assert_eq!(object, "kernel/a\\xff.o", "{describe}");

    root.write(
        Path::new("tree").join(path(b"drivers/\xe9/m\xe9.c")),
        source("f_mod", "x + 3"),
    );
    compile(&cc, &tree, b"drivers/\xe9/m\xe9.c", b"drivers/\xe9/m\xe9.o");
    let (code, v, describe) = diff("m\\xe9.c changed");
    assert_eq!(code, Some(0), "{describe}");
    assert_eq!(
        v["changed"],
        serde_json::json!(["f_ff", "f_mod"]),
        "{describe}"
    );
}
