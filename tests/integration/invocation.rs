//! How klp-cc reads its own command line: a first word that names a
//! compiler that is not installed fails loudly instead of being handed to
//! gcc as an input.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use klp_cc::manifest::Content;

use crate::support::{
    find_program, klp_cc_command, manifest_path, read_manifest, run, run_klp_cc, skip, Cc, CcKind,
    TempDir,
};

const SOURCE: &str = "int twice(int x) { return 2 * x; }\n";

/// Every file in `dir`, sorted, for "nothing was written" checks.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_compiler_that_is_not_installed_is_an_error_not_gcc() {
    let missing: Vec<&str> = ["clang-99", "gcc-99", "gcc-13", "x86_64-linux-gnu-gcc-99"]
        .into_iter()
        .filter(|name| find_program(name).is_none())
        .collect();
    assert!(!missing.is_empty(), "every made-up compiler is installed");
    for name in missing {
        let dir = TempDir::new("missing-cc");
        dir.write("x.c", SOURCE);
        for args in [&[name, "--version"][..], &[name, "-c", "x.c", "-o", "y.o"]] {
            let before = files_in(dir.path());
            let r = run_klp_cc(dir.path(), args);
            assert_eq!(r.output.status.code(), Some(127), "{}", r.describe());
            assert_eq!(
                r.stderr(),
                format!("klp-cc: cannot find compiler `{name}` on PATH\n"),
                "{}",
                r.describe()
            );
            assert!(r.stdout().is_empty(), "a compiler ran: {}", r.describe());
            assert_eq!(files_in(dir.path()), before, "{}", r.describe());
            assert!(!manifest_path(&dir.join("y.o")).exists());
        }
    }
}

#[test]
fn a_missing_compiler_behind_ccache_is_an_error_too() {
    if find_program("ccache").is_none() {
        skip(
            "a_missing_compiler_behind_ccache_is_an_error_too",
            "no ccache",
        );
        return;
    }
    let dir = TempDir::new("missing-ccache");
    dir.write("x.c", SOURCE);
    let r = run_klp_cc(dir.path(), ["ccache", "clang-99", "-c", "x.c", "-o", "y.o"]);
    assert_eq!(r.output.status.code(), Some(127), "{}", r.describe());
    assert!(
        r.stderr().contains("cannot find compiler `clang-99`"),
        "{}",
        r.describe()
    );
    assert!(!dir.join("y.o").exists());
}

#[test]
fn arguments_that_are_not_compiler_names_go_to_klp_cc_compiler() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "arguments go to KLP_CC_COMPILER") else {
        return;
    };
    let dir = TempDir::new("bare-args");
    dir.write("x.c", SOURCE);
    dir.write("main.c", "int main(void) { return 0; }\n");
    run_klp_cc(dir.path(), ["-c", "x.c", "-o", "y.o"]).assert_success();
    assert!(matches!(
        read_manifest(&dir.join("y.o")).content,
        Content::Checksums(_)
    ));
    // A source file first: a link, with the default compiler.
    run_klp_cc(dir.path(), ["main.c", "-o", "prog"]).assert_success();
    assert!(dir.join("prog").exists());
    // A compile whose first word is a source file, with KLP_CC_COMPILER.
    let mut cmd = klp_cc_command(dir.path());
    cmd.env("KLP_CC_COMPILER", cc.path.to_str().unwrap())
        .args(["x.c", "-c", "-o", "z.o"]);
    run(cmd).assert_success();
    assert!(matches!(
        read_manifest(&dir.join("z.o")).content,
        Content::Checksums(_)
    ));
}

#[test]
fn a_compiler_named_by_path_is_run() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "a compiler named by path") else {
        return;
    };
    let dir = TempDir::new("cc-path");
    dir.write("x.c", SOURCE);
    run_klp_cc(
        dir.path(),
        [cc.path.to_str().unwrap(), "-c", "x.c", "-o", "y.o"],
    )
    .assert_success();
    assert_eq!(
        read_manifest(&dir.join("y.o")).driver.as_deref(),
        cc.path.to_str()
    );
    // A relative path too, and one that is not there is named in the error.
    let local = dir.join("mycc");
    std::os::unix::fs::symlink(&cc.path, &local).unwrap();
    run_klp_cc(dir.path(), ["./mycc", "-c", "x.c", "-o", "w.o"]).assert_success();
    assert!(read_manifest(&dir.join("w.o")).driver.is_some());
    let r = run_klp_cc(dir.path(), ["./nocc", "-c", "x.c", "-o", "v.o"]);
    assert_eq!(r.output.status.code(), Some(127), "{}", r.describe());
    assert!(r.stderr().contains("`./nocc`"), "{}", r.describe());
    assert!(!dir.join("v.o").exists());
    // A path that exists but cannot be run is not taken for the compiler.
    let script = dir.write("notrun", "#!/bin/sh\nexit 0\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = run_klp_cc(dir.path(), ["./notrun", "--version"]);
    assert_eq!(r.output.status.code(), Some(127), "{}", r.describe());
    assert!(r.stderr().contains("`./notrun`"), "{}", r.describe());
}
