//! `klp-link fix-lines` on a real patch: applied with `patch`, compiled by
//! gcc through klp-cc, the patched object differs from the original only in
//! the function the patch changes; the same patch applied as it is also
//! moves a `__LINE__` further down, and with it a second function.

use crate::support::{run, run_klp_cc, run_klp_link, Cc, CcKind, TempDir};

const ORIG: &str = "extern void warn_at(const char *file, int line);
extern int printf(const char *, ...);

int changed(int x)
{
	return x + 1;
}

int below(int x)
{
	if (x > 100)
		warn_at(__FILE__, __LINE__);
	return x;
}
";

const PATCH: &str = "--- a/f.c
+++ b/f.c
@@ -5,3 +5,5 @@
 {
+	if (x < 0)
+		return 0;
 	return x + 1;
 }
";

#[test]
fn fixed_lines_keep_unchanged_functions_unchanged() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "fix-lines") else {
        return;
    };
    let dir = TempDir::new("fix-lines");
    dir.write("fix.patch", PATCH);
    let fixed = run_klp_link(dir.path(), ["fix-lines", "fix.patch", "-o", "fixed.patch"]);
    let fixed = fixed.assert_success();
    assert!(fixed.stdout().is_empty(), "{}", fixed.describe());
    assert!(std::fs::read_to_string(dir.join("fixed.patch"))
        .unwrap()
        .contains("+#line 6\n"));
    for (tree, patch) in [
        ("orig", None),
        ("plain", Some("fix.patch")),
        ("fixed", Some("fixed.patch")),
    ] {
        dir.write(format!("{tree}/f.c"), ORIG);
        if let Some(p) = patch {
            let mut cmd = std::process::Command::new("patch");
            cmd.current_dir(dir.join(tree))
                .args(["-p1", "-s", "-i"])
                .arg(dir.join(p));
            run(cmd).assert_success();
        }
        let mut args = vec!["gcc".to_string()];
        args.extend(cc.kernel_cflags());
        args.extend(["-c", "f.c", "-o", "f.o"].map(String::from));
        run_klp_cc(&dir.join(tree), &args).assert_success();
    }
    let changed = |tree: &str| {
        let r = run_klp_link(
            dir.path(),
            ["diff-objects", "orig/f.o", &format!("{tree}/f.o"), "--json"],
        );
        let v: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap_or_else(|e| {
            panic!("{e}: {}", r.describe());
        });
        let mut names: Vec<String> = v["changed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        changed("plain"),
        ["below", "changed"],
        "the line shift shows"
    );
    assert_eq!(changed("fixed"), ["changed"], "only the patched function");
}

/// Kernel sources hold Latin-1 bytes: in context lines, added lines and file
/// names, they pass through byte for byte, and only directives are added.
#[test]
fn latin1_bytes_pass_through_byte_exact() {
    let dir = TempDir::new("fix-lines-latin1");
    let patch: &[u8] = b"--- a/caf\xe9.c\n+++ b/caf\xe9.c\n@@ -1,3 +1,4 @@\n /* Fran\xe7ois */\n+int x; /* \xe9t\xe9 */\n int y;\n int z;\n";
    let want: &[u8] = b"--- a/caf\xe9.c\n+++ b/caf\xe9.c\n@@ -1,3 +1,5 @@\n /* Fran\xe7ois */\n+int x; /* \xe9t\xe9 */\n+#line 2\n int y;\n int z;\n";
    dir.write("latin1.patch", patch);
    let r = run_klp_link(dir.path(), ["fix-lines", "latin1.patch"]).assert_success();
    assert_eq!(r.output.stdout, want, "{}", r.describe());
    run_klp_link(
        dir.path(),
        ["fix-lines", "latin1.patch", "-o", "fixed.patch"],
    )
    .assert_success();
    assert_eq!(std::fs::read(dir.join("fixed.patch")).unwrap(), want);
}
