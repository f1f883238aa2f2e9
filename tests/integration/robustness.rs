//! Malformed input never panics: objects and manifests of real compiles,
//! mutated thousands of ways (bytes flipped, ranges zeroed or filled,
//! truncated), give either a result or an error. Mutations come from a
//! fixed-seed generator, so a failure reproduces.

use klp_cc::checksum::{checksum_object, fingerprint_object};
use klp_cc::manifest::Manifest;

use crate::support::{mutate, read_manifest, run_klp_cc, Cc, CcKind, Rng, TempDir};

/// A real object with the features the checksum code walks: strings,
/// constants, a jump table, static locals, a `.cold` part, `asm goto`.
const SOURCE: &str = r#"
extern void sink(const char *, int);
static int hits;
static const int table[] = { 3, 5, 7, 11, 13 };
__attribute__((cold, noinline)) static void oops(int x) { sink("oops", x); }
int pick(int x)
{
    static int last;
    switch (x) {
    case 0: return 10; case 1: return 21; case 2: return 32; case 3: return 43;
    case 4: return 54; case 5: return 65; case 6: return 76; default: break;
    }
    if (__builtin_expect(x < 0, 0))
        oops(x);
    last = x;
    hits++;
    sink("pick", table[x % 5]);
    return last + hits;
}
int branch(void)
{
    asm goto("1: jmp %l[yes]\n.pushsection __jump_table, \"aw\"\n.long 1b - ., %l[yes] - .\n.quad hits - .\n.popsection" : : : : yes);
    return 0;
yes:
    return 1;
}
"#;

#[test]
fn mutated_objects_and_manifests_never_panic() {
    let Some(cc) = Cc::find_or_skip(CcKind::Gcc, "mutated_objects_and_manifests_never_panic")
    else {
        return;
    };
    let dir = TempDir::new("mutate");
    dir.write("m.c", SOURCE);
    let mut args = vec!["gcc".to_string()];
    args.extend(cc.kernel_cflags());
    args.extend(["-c", "m.c", "-o", "m.o"].map(String::from));
    run_klp_cc(dir.path(), &args).assert_success();
    let object = std::fs::read(dir.join("m.o")).unwrap();
    let manifest = read_manifest(&dir.join("m.o")).to_text();
    assert!(checksum_object(&object).is_ok());

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..3000 {
        let bad = mutate(&mut rng, &object);
        match checksum_object(&bad) {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                refused += 1;
            }
        }
        let _ = fingerprint_object(&bad);
    }
    // Both outcomes must have been exercised, or the mutations test nothing.
    assert!(ok > 100 && refused > 100, "ok {ok}, refused {refused}");

    let path = dir.join("manifest");
    let mut parsed = 0;
    for _ in 0..3000 {
        let bad = mutate(&mut rng, manifest.as_bytes());
        let text = String::from_utf8_lossy(&bad);
        if Manifest::parse(&text, &path).is_ok() {
            parsed += 1;
        }
    }
    assert!(parsed < 3000, "every mutated manifest parsed");
}
