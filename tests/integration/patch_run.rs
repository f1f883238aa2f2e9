//! `klp-link patch` on the kbuild-like fixture of `link.rs`, given what
//! the command reads of a real tree: kbuild's `.cmd` records (the compile
//! command and the dependency list klp-rebuild.sh greps) and a Makefile
//! whose folder goals recompile their stale objects through `$(CC)`.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::link::{as_if_written_by_an_older_klp_cc, buildable, Fixture, OBJECTS};
use crate::support::{find_program, klp_cc_bin, klp_link_bin, skip};

/// The fixture, made into a tree `klp-link patch` can rebuild. The folder
/// goals sleep `delay` seconds first, for a signal to arrive during make.
fn patchable(test: &str, delay: u32) -> Option<Fixture> {
    let fx = buildable(test)?;
    if find_program("patch").is_none() || find_program("bash").is_none() {
        skip(test, "no `patch` or `bash` on PATH");
        return None;
    }
    // A kernel source tree has include/linux/, where klp-link patch puts
    // the helper headers for the patched build; the folder goals check
    // that they are there.
    fx.write("include/linux/kconfig.h", "/* empty */\n");
    let mut rules = String::from(".PHONY: modules FORCE\n");
    rules.push_str(&fx.read("Makefile"));
    let mut dirs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for obj in OBJECTS {
        let (dir, name) = obj.rsplit_once('/').unwrap();
        dirs.entry(dir).or_default().push(obj);
        let args = fx.compile_args(obj).join(" ");
        let inputs = fx.inputs_of(obj);
        let cmd = format!(
            "cmd_{obj} := {} {} {args}\n\nsource_{obj} := {}\n\ndeps_{obj} := \\\n{}\n\n{obj}: $(deps_{obj})\n",
            klp_cc_bin().display(),
            fx.compiler(),
            obj.replace(".o", ".c"),
            inputs
                .iter()
                .map(|f| format!("  {f} \\"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        fx.write(&format!("{dir}/.{name}.cmd"), &cmd);
        rules.push_str(&format!("{obj}: {}\n\t$(CC) {args}\n", inputs.join(" ")));
    }
    for (dir, objs) in dirs {
        rules.push_str(&format!(
            "{dir}/: FORCE\n\tsleep {delay}\n\ttest -f include/linux/livepatch_helpers.h\n\
             \ttest -f include/kpatch-macros.h\n\ttest -f include/kpatch-syscall.h\n\t$(MAKE) {}\n",
            objs.join(" ")
        ));
    }
    fx.write("Makefile", &rules);
    Some(fx)
}

fn patch_cmd(fx: &Fixture, args: &[&str]) -> Command {
    let mut cmd = Command::new(klp_link_bin());
    cmd.current_dir(fx.root.path())
        .arg("patch")
        .arg("tree")
        .args(args);
    cmd
}

/// Every file of the tree but klp-link's own folder, with its bytes and
/// mtime.
fn state(tree: &Path) -> BTreeMap<String, (Vec<u8>, i64, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![tree.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_name() == ".klp-link" {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                let m = e.metadata().unwrap();
                let rel = p.strip_prefix(tree).unwrap().display().to_string();
                out.insert(rel, (std::fs::read(&p).unwrap(), m.mtime(), m.mtime_nsec()));
            }
        }
    }
    out
}

#[track_caller]
fn assert_same_state(before: &BTreeMap<String, (Vec<u8>, i64, i64)>, tree: &Path) {
    let after = state(tree);
    let differ: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(
        differ.is_empty(),
        "the tree differs from before in {differ:?}"
    );
}

const FIX: &str = "--- a/mm/alloc.c\n+++ b/mm/alloc.c\n";

/// A patch of the one line of mm/alloc.c that holds `from`.
fn fix(fx: &Fixture, from: &str, to: &str) -> String {
    let text = fx.read("mm/alloc.c");
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| l.contains(from)).unwrap();
    let lo = at.saturating_sub(1);
    let hi = (at + 2).min(lines.len());
    let mut p = format!(
        "{FIX}@@ -{},{} +{},{} @@\n",
        lo + 1,
        hi - lo,
        lo + 1,
        hi - lo
    );
    for (i, l) in lines[lo..hi].iter().enumerate() {
        if lo + i == at {
            p.push_str(&format!("-{l}\n+{}\n", l.replace(from, to)));
        } else {
            p.push_str(&format!(" {l}\n"));
        }
    }
    p
}

/// Writes `name` beside the tree: [`fix`] of `from` to `to`.
fn write_patch(fx: &Fixture, name: &str, from: &str, to: &str) {
    std::fs::write(fx.root.path().join(name), fix(fx, from, to)).unwrap();
}

#[test]
fn patch_builds_the_module_and_leaves_the_tree_as_it_was() {
    let Some(fx) = patchable("patch_builds_the_module_and_leaves_the_tree_as_it_was", 0) else {
        return;
    };
    write_patch(&fx, "fix.patch", "return x + 2;", "return x + 5;");
    let before = state(&fx.tree);
    let out = patch_cmd(&fx, &["fix.patch", "--name", "lp1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("  vmlinux: tidy (sympos 2)"), "{err}");
    assert!(err.contains("klp-link: snapshot taken"), "{err}");
    assert!(fx.root.path().join("lp1.ko").is_file());
    assert_same_state(&before, &fx.tree);
    assert!(!fx.tree.join(".klp-link/journal").exists());

    // The tree is as it was, so the snapshot serves again.
    let out = patch_cmd(&fx, &["fix.patch", "--name", "lp2", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["snapshot"], "reused");
    assert_eq!(doc["outcome"], "changes");
    assert_eq!(doc["comparison"]["changed"][0], "tidy");
    let phases: Vec<&str> = doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        ["check", "snapshot", "apply", "rebuild", "build", "restore"]
    );
    assert_same_state(&before, &fx.tree);

    // A snapshot an older klp-cc wrote is not compared: the tree is as it
    // was, so it is taken anew.
    let objects = fx.tree.join(".klp-link/snapshot/objects");
    as_if_written_by_an_older_klp_cc(&objects);
    let out = patch_cmd(&fx, &["fix.patch", "--name", "lp3", "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["snapshot"], "taken anew");
    assert_eq!(doc["comparison"]["changed"][0], "tidy");
    let current = format!(
        "{} {}\n",
        klp_cc::manifest::MAGIC,
        klp_cc::manifest::VERSION
    );
    assert!(std::fs::read_to_string(&objects)
        .unwrap()
        .contains(&current));
    assert_same_state(&before, &fx.tree);
}

#[test]
fn a_patch_that_does_not_apply_changes_nothing() {
    let Some(fx) = patchable("a_patch_that_does_not_apply_changes_nothing", 0) else {
        return;
    };
    write_patch(&fx, "good.patch", "return x + 2;", "return x + 5;");
    let bad = fix(&fx, "return x + 2;", "return x + 7;").replace("return x + 2;", "return x + 3;");
    std::fs::write(fx.root.path().join("bad.patch"), bad).unwrap();
    let before = state(&fx.tree);
    let out = patch_cmd(&fx, &["good.patch", "bad.patch"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("bad.patch"), "{err}");
    assert_same_state(&before, &fx.tree);
}

#[test]
fn a_vmlinux_of_another_release_is_refused_before_anything_is_patched() {
    let test = "a_vmlinux_of_another_release_is_refused_before_anything_is_patched";
    let Some(fx) = patchable(test, 0) else {
        return;
    };
    fx.write("include/config/kernel.release", "6.1.0-klp\n");
    let banner = fx.root.path().join("banner.c");
    std::fs::write(
        &banner,
        "const char linux_banner[] = \"Linux version 6.1.0-other (cc) #1 SMP\\n\";\n",
    )
    .unwrap();
    let vmlinux = fx.root.path().join("vmlinux-other");
    let cc = Command::new(fx.compiler())
        .arg("-c")
        .arg(&banner)
        .arg("-o")
        .arg(&vmlinux)
        .status()
        .unwrap();
    assert!(cc.success());
    write_patch(&fx, "fix.patch", "return x + 2;", "return x + 5;");
    let before = state(&fx.tree);
    let out = patch_cmd(&fx, &["fix.patch", "--vmlinux", "vmlinux-other"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is Linux 6.1.0-other"), "{err}");
    assert!(err.contains("6.1.0-klp"), "{err}");
    assert!(!err.contains("apply"), "refused in the check phase: {err}");
    assert_same_state(&before, &fx.tree);
}

#[test]
fn a_patched_tree_that_does_not_build_is_restored() {
    let Some(fx) = patchable("a_patched_tree_that_does_not_build_is_restored", 0) else {
        return;
    };
    write_patch(&fx, "broken.patch", "return x + 2;", "return x +;");
    let before = state(&fx.tree);
    let out = patch_cmd(&fx, &["broken.patch"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the patched tree does not build"), "{err}");
    assert_same_state(&before, &fx.tree);
}

#[test]
fn sigterm_during_the_rebuild_restores_the_tree_then_ends_klp_link() {
    let Some(fx) = patchable(
        "sigterm_during_the_rebuild_restores_the_tree_then_ends_klp_link",
        3,
    ) else {
        return;
    };
    write_patch(&fx, "fix.patch", "return x + 2;", "return x + 5;");
    let before = state(&fx.tree);
    let log = fx.root.path().join("stderr");
    let mut child = patch_cmd(&fx, &["fix.patch"])
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("klp-link: rebuild...")
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no rebuild phase"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let err = std::fs::read_to_string(&log).unwrap();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{err}");
    assert!(
        err.contains("interrupted by signal 15; the tree is restored"),
        "{err}"
    );
    assert_same_state(&before, &fx.tree);
    assert!(!fx.tree.join(".klp-link/journal").exists());
}

#[test]
fn a_tree_built_without_klp_cc_is_refused() {
    let Some(fx) = patchable("a_tree_built_without_klp_cc_is_refused", 0) else {
        return;
    };
    for obj in OBJECTS {
        let (dir, name) = obj.rsplit_once('/').unwrap();
        let rel = format!("{dir}/.{name}.cmd");
        let text = fx
            .read(&rel)
            .replace(&klp_cc_bin().display().to_string(), "");
        fx.write(&rel, text.replacen(":=  ", ":= ", 1).as_str());
    }
    write_patch(&fx, "fix.patch", "return x + 2;", "return x + 5;");
    let before = state(&fx.tree);
    let out = patch_cmd(&fx, &["fix.patch"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the tree was not built through klp-cc"),
        "{err}"
    );
    let after = state(&fx.tree);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        fx.read("mm/alloc.c"),
        String::from_utf8(before["mm/alloc.c"].0.clone()).unwrap()
    );
}

/// In an `O=` build kbuild's `.cmd` records name sources under
/// `$(srctree)/` (6.1) or by the source tree's own path (7.x), which the
/// O= folder's `source` link gives: klp-rebuild.sh finds the objects of a
/// patched file either way, and rebuilds only their folders.
#[test]
fn the_rebuild_plan_finds_the_objects_of_an_o_build() {
    if find_program("bash").is_none() {
        skip(
            "the_rebuild_plan_finds_the_objects_of_an_o_build",
            "no bash",
        );
        return;
    }
    let root = crate::support::TempDir::new("rebuild-plan-o");
    let src = root.mkdir("src");
    let obj = root.mkdir("obj");
    std::os::unix::fs::symlink("../src", obj.join("source")).unwrap();
    root.write("obj/.config", "CONFIG_LIVEPATCH=y\n");
    let abs = src.display().to_string();
    root.write(
        "obj/fs/.new.o.cmd",
        format!(
            "savedcmd_fs/new.o := gcc -c -o fs/new.o {abs}/fs/new.c\n\n\
             source_fs/new.o := {abs}/fs/new.c\n\n\
             deps_fs/new.o := \\\n  {abs}/include/x.h \\\n  include/generated/autoconf.h\n"
        ),
    );
    root.write(
        "obj/mm/.old.o.cmd",
        "savedcmd_mm/old.o := gcc -c -o mm/old.o $(srctree)/mm/old.c\n\n\
         source_mm/old.o := $(srctree)/mm/old.c\n\n\
         deps_mm/old.o := \\\n  $(srctree)/include/x.h\n",
    );
    root.write(
        "obj/lib/.other.o.cmd",
        "source_lib/other.o := /elsewhere/fs/new.c\n",
    );
    let patch = |file: &str| format!("--- a/{file}\n+++ b/{file}\n@@ -1 +1 @@\n-a\n+b\n");
    let plan = |files: &[&str]| {
        let text: String = files.iter().map(|f| patch(f)).collect();
        let p = root.write("p.patch", text);
        let out = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("kbuild-snippets/klp-rebuild.sh"))
            .arg("--plan")
            .arg(&obj)
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // grep -r meets the folders in no set order.
        let mut lines: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines.join("\n")
    };
    assert_eq!(plan(&["fs/new.c"]), "goal fs/\nobject fs/new.o fs/new.c");
    assert_eq!(
        plan(&["include/x.h"]),
        "goal fs/\ngoal mm/\nobject fs/new.o include/x.h\nobject mm/old.o include/x.h"
    );
}
