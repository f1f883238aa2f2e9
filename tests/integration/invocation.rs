//! How klp-cc and klp-link read their own command lines: a first word that
//! names a compiler that is not installed fails loudly instead of being
//! handed to gcc as an input; `--help` is klp-cc's own; `--manifest` takes
//! no options but `--stdout`; each binary names itself in `--version`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use klp_cc::manifest::Content;

use crate::support::{
    find_program, klp_cc_command, manifest_path, read_manifest, run, run_klp_cc, run_klp_link,
    skip, Cc, CcKind, TempDir,
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

#[test]
fn help_is_klp_ccs_own_and_version_is_the_compilers() {
    let dir = TempDir::new("help");
    for flag in ["--help", "-h"] {
        let r = run_klp_cc(dir.path(), [flag]).assert_success();
        assert!(r.stdout().starts_with("usage: klp-cc"), "{}", r.describe());
        assert!(r.stdout().contains("klp-cc gcc --help"), "{}", r.describe());
        assert!(r.stderr().is_empty(), "{}", r.describe());
    }
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "bare --version") else {
        return;
    };
    let bare = run({
        let mut c = std::process::Command::new(&cc.path);
        c.arg("--version");
        c
    });
    let ours = run_klp_cc(dir.path(), ["--version"]).assert_success();
    assert_eq!(ours.stdout(), bare.stdout());
    let help = run_klp_cc(dir.path(), ["gcc", "--help"]).assert_success();
    assert!(help.stdout().contains("gcc"), "{}", help.describe());
    assert!(!help.stdout().contains("klp-cc"), "{}", help.describe());
}

#[test]
fn manifest_takes_no_options_but_stdout() {
    let dir = TempDir::new("manifest-opts");
    let r = run_klp_cc(dir.path(), ["--manifest", "--help"]).assert_success();
    assert!(r.stdout().starts_with("usage: klp-cc"), "{}", r.describe());
    for (args, option) in [
        (&["--manifest", "--verbose", "a.o"][..], "--verbose"),
        (&["--manifest", "a.o", "--stdout"], "--stdout"),
        (&["--manifest", "--stdout", "-x"], "-x"),
    ] {
        let r = run_klp_cc(dir.path(), args);
        assert_eq!(r.output.status.code(), Some(2), "{}", r.describe());
        assert!(
            r.stderr().contains(&format!("`{option}`")),
            "{}",
            r.describe()
        );
        assert!(files_in(dir.path()).is_empty(), "{}", r.describe());
    }
    for args in [
        &["--manifest", "gone.o"][..],
        &["--manifest", "--stdout", "gone.o"],
    ] {
        let r = run_klp_cc(dir.path(), args);
        assert_eq!(r.output.status.code(), Some(1), "{}", r.describe());
        assert!(r.stderr().contains("gone.o"), "{}", r.describe());
        assert!(files_in(dir.path()).is_empty(), "{}", r.describe());
    }
}

#[test]
fn klp_link_names_itself_in_version() {
    let r = run_klp_link(Path::new("."), ["--version"]).assert_success();
    assert_eq!(
        r.stdout(),
        format!("klp-link {}\n", env!("CARGO_PKG_VERSION")),
        "{}",
        r.describe()
    );
}
