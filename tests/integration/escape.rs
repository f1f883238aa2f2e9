//! A changed local constant may travel as a copy only while its address
//! never escapes the functions that read it: `klp-link diff-objects` on real
//! gcc and clang objects, for a value-only table (carried) and for each way
//! an address escapes (refused, naming the constant and the use).

use crate::support::{run_klp_cc, run_klp_link, Cc, CcKind, Run, TempDir};

const OPS: &str = "struct ops { int (*f)(int); int x; };\n\
    static int f1(int a) { return a + 1; }\n";

/// Compiles `orig` and `patched` with kernel flags and compares them.
fn diff(kind: CcKind, test: &str, orig: &str, patched: &str) -> Option<Run> {
    diff_with(kind, test, orig, patched, &[])
}

/// [`diff`] with `patches` given to `diff-objects --patch`.
fn diff_with(kind: CcKind, test: &str, orig: &str, patched: &str, patches: &[&str]) -> Option<Run> {
    let cc = Cc::find_or_skip(kind, test)?;
    let dir = TempDir::new("escape");
    for (name, text) in [("orig", orig), ("patched", patched)] {
        dir.write(format!("{name}.c"), text);
        let mut args = vec![cc.program().to_string()];
        args.extend(cc.kernel_cflags());
        args.extend([
            "-c".into(),
            format!("{name}.c"),
            "-o".into(),
            format!("{name}.o"),
        ]);
        run_klp_cc(dir.path(), &args).assert_success();
    }
    let mut args: Vec<String> = ["diff-objects", "orig.o", "patched.o"]
        .map(String::from)
        .into();
    for (i, text) in patches.iter().enumerate() {
        dir.write(format!("{i}.patch"), text);
        args.extend(["--patch".into(), format!("{i}.patch")]);
    }
    Some(run_klp_link(dir.path(), args))
}

#[track_caller]
fn assert_refused(r: &Run, name: &str, says: &str) {
    let out = r.stdout();
    assert_eq!(r.output.status.code(), Some(1), "{}", r.describe());
    assert!(
        out.contains(&format!("constant `{name}`")) && out.contains(says),
        "the refusal names `{name}` and says `{says}`\n{}",
        r.describe()
    );
}

const KINDS: [CcKind; 2] = [CcKind::Gcc, CcKind::Clang];

#[test]
fn a_value_only_table_is_carried() {
    let orig = "static const char *const names[] = { \"zero\", \"one\", \"two\" };\n\
        const char *name_of(unsigned i) { return names[i % 3]; }\n";
    for kind in KINDS {
        let Some(r) = diff(
            kind,
            "a_value_only_table_is_carried",
            orig,
            &orig.replace("\"two\"", "\"deux\""),
        ) else {
            continue;
        };
        assert_eq!(r.output.status.code(), Some(0), "{}", r.describe());
        assert!(r.stdout().contains("name_of"), "{}", r.describe());
    }
}

#[test]
fn an_ops_struct_passed_to_a_function_is_refused() {
    let orig = format!(
        "{OPS}static const struct ops my_ops = {{ f1, 1 }};\n\
         extern void register_ops(const struct ops *);\n\
         void setup(void) {{ register_ops(&my_ops); }}\n"
    );
    for kind in KINDS {
        let Some(r) = diff(
            kind,
            "an_ops_struct_passed_to_a_function_is_refused",
            &orig,
            &orig.replace("f1, 1", "f1, 2"),
        ) else {
            continue;
        };
        assert_refused(&r, "my_ops", "address is taken");
    }
}

#[test]
fn an_ops_struct_stored_in_data_is_refused() {
    let orig = format!(
        "{OPS}static const struct ops my_ops = {{ f1, 1 }};\n\
         const struct ops *const all_ops[] = {{ &my_ops }};\n\
         int call(int a) {{ return my_ops.f(a) + my_ops.x; }}\n"
    );
    for kind in KINDS {
        let Some(r) = diff(
            kind,
            "an_ops_struct_stored_in_data_is_refused",
            &orig,
            &orig.replace("f1, 1", "f1, 2"),
        ) else {
            continue;
        };
        assert_eq!(r.output.status.code(), Some(1), "{}", r.describe());
        // The global table holding its address is data that changed too,
        // or the constant's own escape is named.
        assert!(r.stdout().contains("my_ops"), "{}", r.describe());
    }
}

#[test]
fn a_small_constant_named_by_a_relative_table_entry_is_refused() {
    // The kernel's tables hold `.long sym - .`: the reader adds the entry's
    // own address back, so the entry names the constant's first byte even
    // though its relocation is PC-relative and, the constant being local,
    // is against the section symbol.
    let orig = "static const unsigned char lim[4] __attribute__((used)) = { 1, 2, 3, 4 };\n\
        int get(unsigned i) { return lim[i & 3]; }\n\
        asm(\".pushsection .data.rel_table,\\\"aw\\\"\\n.long lim - .\\n.popsection\");\n";
    for kind in KINDS {
        let Some(r) = diff(
            kind,
            "a_small_constant_named_by_a_relative_table_entry_is_refused",
            orig,
            &orig.replace("3, 4", "3, 5"),
        ) else {
            continue;
        };
        assert_refused(&r, "lim", "stored in data");
    }
}

#[test]
fn an_address_compared_is_refused() {
    let orig = format!(
        "{OPS}static const struct ops my_ops = {{ f1, 1 }};\n\
         int is_mine(const struct ops *o) {{ return o == &my_ops && my_ops.x; }}\n"
    );
    for kind in KINDS {
        let Some(r) = diff(
            kind,
            "an_address_compared_is_refused",
            &orig,
            &orig.replace("f1, 1", "f1, 2"),
        ) else {
            continue;
        };
        assert_refused(&r, "my_ops", "address is taken");
    }
}

/// A dynamic-debug descriptor the way Linux 6.1's `DEFINE_DYNAMIC_DEBUG_METADATA`
/// lays it out: four pointers, then the line and flags.
const DYNDBG: &str = "struct _ddebug { const char *modname, *function, *filename, *format;\n\
    unsigned int lineno:18; unsigned int flags:8; } __attribute__((aligned(8)));\n\
    extern void __dynamic_pr_debug(struct _ddebug *, const char *, ...);\n\
    #define pr_debug_at(line, fmt, ...) do { \\\n\
    static struct _ddebug __attribute__((used, section(\"__dyndbg\"))) __UNIQUE_ID_ddebug1 = \\\n\
    { \"m\", __func__, \"f.c\", fmt, line, 0 }; \\\n\
    __dynamic_pr_debug(&__UNIQUE_ID_ddebug1, fmt, ##__VA_ARGS__); } while (0)\n";

/// `show()`, with a `pr_debug()` at line 10, and `other()` beside it.
fn show_with_pr_debug() -> String {
    format!(
        "{DYNDBG}int show(int x) {{ pr_debug_at(10, \"x=%d\\n\", x); return x; }}\n\
         int other(int x) {{ return x * 2; }}\n"
    )
}

#[test]
fn a_changed_descriptor_travels_with_its_function() {
    let orig = show_with_pr_debug();
    for kind in KINDS {
        let Some(r) = diff(
            kind,
            "a_changed_descriptor_travels_with_its_function",
            &orig,
            &orig.replace("x=%d", "x is %d"),
        ) else {
            continue;
        };
        let out = r.stdout();
        assert_eq!(r.output.status.code(), Some(0), "{}", r.describe());
        assert!(
            out.contains("changed  show") && !out.contains("other"),
            "{}",
            r.describe()
        );
        assert!(out.contains("carries its own copy"), "{}", r.describe());
    }
}

#[test]
fn a_changed_ratelimit_state_travels_with_its_function() {
    let orig = "struct rs { int interval, burst; };\n\
        extern int ___ratelimit(struct rs *, const char *);\n\
        int warn(void) { static struct rs _rs = { 5, 10 }; return ___ratelimit(&_rs, \"warn\"); }\n";
    for kind in KINDS {
        let Some(r) = diff(
            kind,
            "a_changed_ratelimit_state_travels_with_its_function",
            orig,
            &orig.replace("{ 5, 10 }", "{ 5, 20 }"),
        ) else {
            continue;
        };
        assert_eq!(r.output.status.code(), Some(0), "{}", r.describe());
        assert!(r.stdout().contains("changed  warn"), "{}", r.describe());
    }
}

#[test]
fn a_descriptor_whose_line_moved_is_line_only() {
    let orig = show_with_pr_debug();
    for kind in KINDS {
        let Some(r) = diff(
            kind,
            "a_descriptor_whose_line_moved_is_line_only",
            &orig,
            &orig.replace("pr_debug_at(10,", "pr_debug_at(12,"),
        ) else {
            continue;
        };
        let out = r.stdout();
        assert_eq!(r.output.status.code(), Some(3), "{}", r.describe());
        let listed = out
            .split("line-only, ignored:")
            .nth(1)
            .is_some_and(|rest| rest.contains("__UNIQUE_ID_ddebug1"));
        assert!(
            listed,
            "the descriptor is listed as line-only\n{}",
            r.describe()
        );
        assert!(!out.contains("changed  show"), "{}", r.describe());
    }
}

/// With the patch given, the descriptor's new line must be where the
/// patch moved the old one, in the descriptor's own file.
#[test]
fn a_descriptor_whose_line_moved_is_checked_against_the_patch() {
    let orig = show_with_pr_debug();
    let patched = orig.replace("pr_debug_at(10,", "pr_debug_at(12,");
    let two_above = "--- a/f.c\n+++ b/f.c\n@@ -1,1 +1,3 @@\n a\n+b\n+c\n";
    let one_above = "--- a/f.c\n+++ b/f.c\n@@ -1,1 +1,2 @@\n a\n+b\n";
    for kind in KINDS {
        let test = "a_descriptor_whose_line_moved_is_checked_against_the_patch";
        let Some(r) = diff_with(kind, test, &orig, &patched, &[two_above]) else {
            continue;
        };
        assert_eq!(r.output.status.code(), Some(3), "{}", r.describe());
        assert!(r.stdout().contains("patch's line map"), "{}", r.describe());
        let Some(r) = diff_with(kind, test, &orig, &patched, &[one_above]) else {
            continue;
        };
        let out = r.stdout();
        assert_eq!(r.output.status.code(), Some(0), "{}", r.describe());
        assert!(
            out.contains("changed  show") && out.contains("line 10 of f.c is 12 now"),
            "{}",
            r.describe()
        );
    }
}

#[test]
fn a_descriptor_of_an_init_function_changes_nothing() {
    let orig = format!(
        "{DYNDBG}__attribute__((section(\".init.text\"))) int setup(int x)\n\
         {{ pr_debug_at(10, \"x=%d\\n\", x); return x; }}\n"
    );
    for kind in KINDS {
        let Some(r) = diff(
            kind,
            "a_descriptor_of_an_init_function_changes_nothing",
            &orig,
            // Only the descriptor holds the file name.
            &orig.replace("\"f.c\"", "\"g.c\""),
        ) else {
            continue;
        };
        assert_eq!(r.output.status.code(), Some(3), "{}", r.describe());
        assert!(r.stdout().contains("no longer runs"), "{}", r.describe());
    }
}
