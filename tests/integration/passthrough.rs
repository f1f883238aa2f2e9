//! klp-cc as kbuild sees it: every command that does not compile to an
//! object behaves exactly like the bare compiler and leaves no manifest;
//! compiles keep the compiler's status and output; manifests are only ever
//! complete; signals are not swallowed; the compiler is found without
//! klp-cc ever running itself.

use std::os::unix::fs::symlink;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use klp_cc::manifest::{Content, Manifest};

use crate::support::{
    foreign_object, klp_cc_bin, klp_cc_command, manifest_path, read_manifest, run, run_klp_cc, Cc,
    CcKind, TempDir,
};

const SOURCE: &str = "int global = 3;\nint twice(int x) { return 2 * x + global; }\n";

/// Every `.klp` manifest below `dir`.
fn manifests_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "klp") {
                out.push(p);
            }
        }
    }
    out
}

/// Runs `args` once through the bare compiler and once through klp-cc, in
/// two identical folders, and asserts the same status, stdout, stderr and
/// files, and no manifest.
#[track_caller]
fn same_as_bare(cc: &Cc, args: &[&str], stdin: Option<&str>) {
    let outcome = |through_klp_cc: bool| {
        let dir = TempDir::new("same");
        dir.write("t.c", SOURCE);
        dir.mkdir("out");
        let mut cmd = if through_klp_cc {
            let mut c = klp_cc_command(dir.path());
            c.arg(cc.program());
            c
        } else {
            let mut c = Command::new(&cc.path);
            c.current_dir(dir.path());
            c
        };
        cmd.args(args);
        let out = match stdin {
            Some(text) => {
                use std::io::Write;
                let mut child = cmd
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(text.as_bytes())
                    .unwrap();
                child.wait_with_output().unwrap()
            }
            None => cmd.output().unwrap(),
        };
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join("out"))
            .unwrap()
            .flatten()
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(e.path()).unwrap())
            })
            .collect();
        files.sort();
        let manifests = manifests_under(dir.path());
        (out, files, manifests)
    };
    let (bare, bare_files, _) = outcome(false);
    let (ours, our_files, manifests) = outcome(true);
    let line = args.join(" ");
    assert_eq!(ours.status.code(), bare.status.code(), "status of `{line}`");
    assert_eq!(
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&bare.stdout),
        "stdout of `{line}`"
    );
    assert_eq!(
        String::from_utf8_lossy(&ours.stderr),
        String::from_utf8_lossy(&bare.stderr),
        "stderr of `{line}`"
    );
    assert_eq!(
        our_files.iter().map(|f| &f.0).collect::<Vec<_>>(),
        bare_files.iter().map(|f| &f.0).collect::<Vec<_>>(),
        "files written by `{line}`"
    );
    for ((name, a), (_, b)) in our_files.iter().zip(&bare_files) {
        assert!(a == b, "`{line}` wrote a different {name}");
    }
    assert!(
        manifests.is_empty(),
        "`{line}` left manifests {manifests:?}"
    );
}

#[test]
fn non_compiles_behave_like_the_bare_compiler() {
    for kind in [CcKind::Gcc, CcKind::Clang] {
        let Some(cc) = Cc::find_or_skip(kind, "non_compiles_behave_like_the_bare_compiler") else {
            continue;
        };
        for args in [
            &["-E", "t.c"][..],
            &["-S", "-O2", "t.c", "-o", "out/t.s"],
            &["-M", "t.c"],
            &["-MM", "t.c"],
            &["-MM", "-MF", "out/t.d", "t.c"],
            &["--version"],
            &["-v"],
            &["-print-file-name=include"],
            &["-dumpmachine"],
            &["-fsyntax-only", "t.c"],
            // a link
            &["t.c", "-nostdlib", "-Wl,-e,twice", "-o", "out/prog"],
            // kbuild's cc-option and as-instr probes
            &["-Werror", "-c", "-x", "c", "/dev/null", "-o", "out/tmp"],
            &[
                "-Werror",
                "-mfoo-bar",
                "-c",
                "-x",
                "c",
                "/dev/null",
                "-o",
                "out/tmp",
            ],
        ] {
            same_as_bare(&cc, args, None);
        }
        same_as_bare(
            &cc,
            &["-c", "-x", "assembler-with-cpp", "-o", "out/tmp", "-"],
            Some("nop\n"),
        );
        same_as_bare(&cc, &["-c", "-x", "c", "-o", "out/tmp", "-"], Some(SOURCE));
    }
}

#[test]
fn a_failing_compile_keeps_its_status_and_output_and_leaves_no_manifest() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "failing compile") else {
        return;
    };
    let dir = TempDir::new("fail");
    dir.write("bad.c", "int f(void) { return undeclared; }\n");
    // A manifest from an earlier, successful compile of the same object.
    dir.write(".bad.o.klp", "klp-cc-manifest 4\n");
    let bare = run({
        let mut c = Command::new(&cc.path);
        c.current_dir(dir.path())
            .args(["-c", "bad.c", "-o", "bare.o"]);
        c
    });
    let ours = run_klp_cc(dir.path(), ["gcc", "-c", "bad.c", "-o", "bad.o"]);
    assert_eq!(ours.output.status.code(), bare.output.status.code());
    assert_eq!(ours.stderr().replace("bad.o", "bare.o"), bare.stderr());
    assert!(!dir.join("bad.o").exists());
    assert!(
        !manifest_path(&dir.join("bad.o")).exists(),
        "the stale manifest of a failed compile must be removed"
    );
}

#[test]
fn compile_forms_get_their_manifests() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "compile forms") else {
        return;
    };
    let dir = TempDir::new("forms");
    dir.write("a.c", SOURCE);
    dir.write("src/b.c", "int b(void) { return 1; }\n");
    dir.write("c.txt", "int c(void) { return 2; }\n");
    dir.write("d.S", ".globl d\n.type d,@function\nd: ret\n.size d, .-d\n");
    dir.write("args.rsp", "-c 'a.c' -o \"out dir/a.o\"\n");
    dir.mkdir("out dir");
    let ok = |args: &[&str]| {
        let mut all = vec![cc.program()];
        all.extend_from_slice(args);
        run_klp_cc(dir.path(), &all).assert_success();
    };
    ok(&["-c", "a.c", "-oobj1.o"]);
    ok(&["-c", "src/b.c"]); // no -o: b.o in the current folder
    ok(&["-c", "a.c", "src/b.c"]); // several sources: a.o and b.o
    ok(&["-x", "c", "-c", "c.txt", "-o", "c.o"]);
    ok(&["-c", "d.S", "-o", "d.o"]);
    ok(&["@args.rsp"]);
    ok(&["-Wp,-MMD,out dir/.e.o.d", "-c", "a.c", "-o", "out dir/e.o"]);
    for (object, symbol) in [
        ("obj1.o", "twice"),
        ("b.o", "b"),
        ("a.o", "twice"),
        ("c.o", "c"),
        ("d.o", "d"),
        ("out dir/a.o", "twice"),
        ("out dir/e.o", "twice"),
    ] {
        let m = read_manifest(&dir.join(object));
        let Content::Checksums(symbols) = &m.content else {
            panic!("{object}: {:?}", m.content)
        };
        assert!(
            symbols.iter().any(|s| s.name == symbol),
            "{object} lacks {symbol}: {symbols:?}"
        );
        assert_eq!(m.sections, Some(true));
    }
    assert!(
        dir.join("out dir/.e.o.d").exists(),
        "-Wp,-MMD still writes the dep file"
    );
}

#[test]
fn sections_flags_are_added_unless_turned_off() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "section flags") else {
        return;
    };
    let dir = TempDir::new("sections");
    dir.write("a.c", SOURCE);
    let flags = ["-O2", "-c", "a.c", "-o"];
    run_klp_cc(dir.path(), [&["gcc"][..], &flags, &["with.o"]].concat()).assert_success();
    let mut off = klp_cc_command(dir.path());
    off.env("KLP_CC_SECTIONS", "0")
        .arg("gcc")
        .args(flags)
        .arg("without.o");
    run(off).assert_success();
    let mut bare = Command::new(&cc.path);
    bare.current_dir(dir.path()).args(flags).arg("bare.o");
    run(bare).assert_success();
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    assert_eq!(
        read("without.o"),
        read("bare.o"),
        "KLP_CC_SECTIONS=0 must not change the object"
    );
    let with = read_manifest(&dir.join("with.o"));
    let without = read_manifest(&dir.join("without.o"));
    assert_eq!(with.sections, Some(true));
    assert_eq!(without.sections, Some(false));
    let section_of = |m: &Manifest| match &m.content {
        Content::Checksums(s) => s
            .iter()
            .find(|s| s.name == "twice")
            .unwrap()
            .section
            .clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(section_of(&with), ".text.twice");
    assert_eq!(section_of(&without), ".text");
}

#[test]
fn a_compiler_named_symlink_runs_the_real_compiler_and_never_itself() {
    let Some(_cc) = Cc::find_or_skip(CcKind::Gcc, "masquerade") else {
        return;
    };
    let dir = TempDir::new("masquerade");
    dir.write("a.c", SOURCE);
    let shims = dir.mkdir("shims");
    symlink(klp_cc_bin(), shims.join("gcc")).unwrap();
    // The folder twice on PATH, as a careless setup would have it.
    let path = format!(
        "{}:{}:{}",
        shims.display(),
        shims.display(),
        std::env::var("PATH").unwrap()
    );
    // Run the symlink, not klp-cc: argv[0] is `gcc`.
    let mut masq = Command::new(shims.join("gcc"));
    masq.current_dir(dir.path())
        .env("PATH", &path)
        .args(["-c", "a.c", "-o", "a.o"]);
    run(masq).assert_success();
    assert!(matches!(
        read_manifest(&dir.join("a.o")).content,
        Content::Checksums(_)
    ));

    // Only klp-cc itself on PATH under that name: a clear error, no loop.
    let mut lonely = Command::new(shims.join("gcc"));
    lonely
        .current_dir(dir.path())
        .env("PATH", &shims)
        .args(["-c", "a.c", "-o", "b.o"]);
    let r = run(lonely);
    assert_eq!(r.output.status.code(), Some(127), "{}", r.describe());
    assert!(
        r.stderr()
            .contains("cannot find compiler `gcc` on PATH (only klp-cc itself"),
        "{}",
        r.describe()
    );
}

#[test]
fn bare_klp_cc_uses_klp_cc_compiler() {
    let Some(_cc) = Cc::find_or_skip(CcKind::Gcc, "bare klp-cc") else {
        return;
    };
    let dir = TempDir::new("bare");
    dir.write("a.c", SOURCE);
    run_klp_cc(dir.path(), ["-c", "a.c", "-o", "default.o"]).assert_success();
    let mut cmd = klp_cc_command(dir.path());
    cmd.env("KLP_CC_COMPILER", "gcc -O2")
        .args(["-c", "a.c", "-o", "var.o"]);
    run(cmd).assert_success();
    for o in ["default.o", "var.o"] {
        assert!(matches!(
            read_manifest(&dir.join(o)).content,
            Content::Checksums(_)
        ));
    }
    let mut bad = klp_cc_command(dir.path());
    bad.env("KLP_CC_COMPILER", "gcc 'unterminated")
        .args(["-c", "a.c"]);
    let r = run(bad);
    assert!(
        !r.success() && r.stderr().contains("KLP_CC_COMPILER"),
        "{}",
        r.describe()
    );
}

#[test]
fn ccache_hits_get_manifests_too() {
    let Some(ccache) = crate::support::find_program("ccache") else {
        crate::support::skip("ccache_hits_get_manifests_too", "no ccache on PATH");
        return;
    };
    let dir = TempDir::new("ccache");
    dir.write("a.c", SOURCE);
    let cache = dir.mkdir("cache");
    let mut texts = Vec::new();
    for _ in 0..2 {
        let _ = std::fs::remove_file(dir.join("a.o"));
        let mut cmd = klp_cc_command(dir.path());
        cmd.env("CCACHE_DIR", &cache)
            .arg(&ccache)
            .args(["gcc", "-O2", "-c", "a.c", "-o", "a.o"]);
        run(cmd).assert_success();
        texts.push(std::fs::read_to_string(manifest_path(&dir.join("a.o"))).unwrap());
    }
    let stats = Command::new(&ccache)
        .env("CCACHE_DIR", &cache)
        .arg("--print-stats")
        .output()
        .unwrap();
    let stats = String::from_utf8_lossy(&stats.stdout);
    let hits: u64 = stats
        .lines()
        .filter(|l| l.starts_with("direct_cache_hit") || l.starts_with("preprocessed_cache_hit"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    assert!(
        hits >= 1,
        "the second compile was not a cache hit:\n{stats}"
    );
    assert_eq!(
        texts[0], texts[1],
        "a cache hit must give the same manifest"
    );
}

#[test]
fn objects_without_checksums_still_compile_and_say_why() {
    let dir = TempDir::new("unavailable");
    dir.write("a.c", SOURCE);
    // A "compiler" that writes something that is not an object.
    let fake = dir.write(
        "fakecc",
        "#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = -o ] && out=$2; shift; done\n\
         echo garbage > \"$out\"\n",
    );
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    run_klp_cc(
        dir.path(),
        [fake.to_str().unwrap(), "-c", "a.c", "-o", "g.o"],
    )
    .assert_success();
    let m = read_manifest(&dir.join("g.o"));
    assert_eq!(m.content, Content::Unavailable("not an ELF object".into()));

    for (kind, marker) in [(CcKind::Gcc, "GCC LTO"), (CcKind::Clang, "LLVM bitcode")] {
        let Some(_cc) = Cc::find_or_skip(kind, "LTO objects") else {
            continue;
        };
        let obj = format!("lto-{kind}.o");
        run_klp_cc(
            dir.path(),
            [kind.program(), "-O2", "-flto", "-c", "a.c", "-o", &obj],
        )
        .assert_success();
        match read_manifest(&dir.join(&obj)).content {
            Content::Unavailable(why) => assert!(why.contains(marker), "{why}"),
            other => panic!("{kind} -flto gave checksums: {other:?}"),
        }
    }

    // --manifest on things that are not x86-64 objects: an error, nothing written.
    let not_elf = dir.write("text.o", "hello");
    let r = run_klp_cc(dir.path(), ["--manifest", not_elf.to_str().unwrap()]);
    assert!(
        !r.success() && r.stderr().contains("not an ELF object"),
        "{}",
        r.describe()
    );
    assert!(!manifest_path(&not_elf).exists());
    let arm = dir.join("arm.o");
    std::fs::write(&arm, foreign_object()).unwrap();
    let r = run_klp_cc(dir.path(), ["--manifest", arm.to_str().unwrap()]);
    assert!(
        !r.success() && r.stderr().contains("unsupported architecture"),
        "{}",
        r.describe()
    );
}

#[test]
fn concurrent_compiles_into_one_folder_leave_only_complete_manifests() {
    let Some(_cc) = Cc::find_or_skip(CcKind::Gcc, "concurrency") else {
        return;
    };
    let dir = TempDir::new("concurrent");
    let n = 24;
    for i in 0..n {
        dir.write(
            format!("f{i}.c"),
            format!("int f{i}(int x) {{ return x * {i} + {}; }}\n", i * 7),
        );
    }
    let children: Vec<_> = (0..n)
        .flat_map(|i| {
            // Half the processes race on the same object, half write their own.
            let out = if i % 2 == 0 {
                "same.o".to_string()
            } else {
                format!("f{i}.o")
            };
            let src = if i % 2 == 0 {
                "f0.c".to_string()
            } else {
                format!("f{i}.c")
            };
            let mut cmd = klp_cc_command(dir.path());
            cmd.args(["gcc", "-O2", "-c", &src, "-o", &out]);
            Some(cmd.spawn().unwrap())
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    for m in manifests_under(dir.path()) {
        Manifest::read(&m).unwrap_or_else(|e| panic!("incomplete manifest: {e}"));
    }
    for i in (1..n).step_by(2) {
        read_manifest(&dir.join(format!("f{i}.o")));
    }
    read_manifest(&dir.join("same.o"));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".klp-manifest"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn a_signal_reaches_the_compiler_and_klp_cc_dies_of_it() {
    let dir = TempDir::new("signal");
    let pidfile = dir.join("child.pid");
    let fake = dir.write(
        "slowcc",
        format!(
            "#!/bin/sh\necho $$ > '{}'\nexec sleep 30\n",
            pidfile.display()
        ),
    );
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    dir.write("a.c", SOURCE);
    dir.write(".a.o.klp", "stale\n");
    let mut child = klp_cc_command(dir.path())
        .args([fake.to_str().unwrap(), "-c", "a.c", "-o", "a.o"])
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !pidfile.exists() || std::fs::read_to_string(&pidfile).unwrap().trim().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the compiler never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let compiler_pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: sending SIGTERM to the klp-cc child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGTERM),
        "klp-cc ended with {status}"
    );
    let gone = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        // SAFETY: signal 0 only checks whether the process exists.
        unsafe { libc::kill(compiler_pid, 0) != 0 }
    });
    assert!(gone, "the compiler (pid {compiler_pid}) outlived klp-cc");
    assert!(!manifest_path(&dir.join("a.o")).exists());
}

#[test]
fn a_signal_the_compiler_survives_still_ends_klp_cc_after_a_whole_manifest() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "signal the compiler survives") else {
        return;
    };
    let dir = TempDir::new("signal-survived");
    dir.write("a.c", SOURCE);
    // A compiler that ignores SIGTERM, asks for klp-cc's, and then compiles
    // successfully: klp-cc must neither swallow the signal nor die before
    // the manifest is written.
    let fake = dir.write(
        "stubborncc",
        format!(
            "#!/bin/sh\ntrap '' TERM\nkill -TERM $PPID\nsleep 0.2\nexec '{}' \"$@\"\n",
            cc.path.display()
        ),
    );
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let r = run_klp_cc(
        dir.path(),
        [fake.to_str().unwrap(), "-c", "a.c", "-o", "a.o"],
    );
    assert_eq!(
        r.output.status.signal(),
        Some(libc::SIGTERM),
        "{}",
        r.describe()
    );
    assert!(matches!(
        read_manifest(&dir.join("a.o")).content,
        Content::Checksums(_)
    ));
}
