//! klp-link: compares an original and a patched klp-cc build of a kernel
//! tree, reports exactly which functions changed, and builds the livepatch
//! module that replaces them.
//!
//! Exit status: 0 changes a live patch can carry; 3 no functional change;
//! 1 refused or failed (the report or message says why); 2 bad usage.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use klp_cc::link::{commands, patch};

/// Build a kernel livepatch module from two klp-cc builds of the same tree.
#[derive(Parser)]
#[command(
    name = "klp-link",
    version,
    about,
    after_help = "Exit status: 0 changes found, 3 no functional change, 1 refused or failed, 2 usage."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Step(Step),
    Patch(PatchArgs),
}

#[derive(Subcommand)]
enum Step {
    /// Capture the original build: every manifest (checked against its
    /// object), kbuild's object lists, Module.symvers and the linked symbol
    /// tables, into a folder that survives an in-place rebuild.
    Snapshot {
        /// The built kernel tree (its O= folder, if it used one).
        #[arg(default_value = ".")]
        tree: PathBuf,
        /// The snapshot folder to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Also an external module's folder, built against the tree with
        /// `make -C TREE M=DIR` through klp-cc: its modules become targets.
        #[arg(long, value_name = "DIR")]
        external: Option<PathBuf>,
        /// Replace the snapshot folder if it exists. Only a folder that is
        /// a klp-link snapshot is ever replaced.
        #[arg(long)]
        force: bool,
        /// Take the snapshot even when some objects have no checksums
        /// (each is named; a later diff refuses any change to them).
        #[arg(long)]
        accept_unavailable: bool,
        /// Also keep a copy of every original object, so that `diff
        /// --explain` can show where a function changed.
        #[arg(long)]
        with_objects: bool,
    },
    /// Report which functions changed, appeared or went, per target
    /// (vmlinux or a module), between a snapshot and the rebuilt tree.
    Diff {
        /// The snapshot of the original build.
        snapshot: PathBuf,
        /// The patched tree (default: the tree the snapshot was taken of).
        tree: Option<PathBuf>,
        /// Print JSON instead of the report for people.
        #[arg(long)]
        json: bool,
        /// Show where changed function NAME first differs (needs a snapshot
        /// taken --with-objects).
        #[arg(long, value_name = "NAME")]
        explain: Option<String>,
        /// The patch as it was applied (the `fix-lines` output, if that
        /// went through `patch`); repeat for several, in order. A function
        /// that differs only in line numbers is then line-only only where
        /// each number is the one the patch moved that line to.
        #[arg(long = "patch", value_name = "PATCH")]
        patches: Vec<PathBuf>,
    },
    /// Compare two objects directly, computing their checksums in-process.
    DiffObjects {
        orig: PathBuf,
        patched: PathBuf,
        /// Print JSON: an object with arrays "changed" and "new" of function names.
        #[arg(long)]
        json: bool,
        /// Show where function NAME first differs between the two objects.
        #[arg(long, value_name = "NAME")]
        explain: Option<String>,
        /// The patch as it was applied (the `fix-lines` output, if that
        /// went through `patch`); repeat for several, in order. A function
        /// that differs only in line numbers is then line-only only where
        /// each number is the one the patch moved that line to.
        #[arg(long = "patch", value_name = "PATCH")]
        patches: Vec<PathBuf>,
    },
    /// Add `#line` directives to a source patch, so that applying it moves
    /// no line numbers below its changes (WARN/BUG tables, initcall names):
    /// only the functions it changes then differ.
    /// `klp-link fix-lines fix.patch | patch -p1`.
    FixLines {
        patch: PathBuf,
        /// The source tree the patch will be applied to (-p1): each hunk's
        /// directives then name the lines where the hunk really applies.
        /// Without it the hunk headers must be exact (a patch made against
        /// this very tree).
        #[arg(short = 'd', long)]
        tree: Option<PathBuf>,
        /// Write here instead of to standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Replace OUTPUT if it exists (never the input patch).
        #[arg(long)]
        force: bool,
    },
    /// Build the livepatch module from the changed and new functions:
    /// compares like `diff` (and refuses when it would), copies the
    /// functions out of the patched objects, builds the module with the
    /// kernel tree's kbuild and writes klp relocations into it.
    Build {
        /// The snapshot of the original build.
        snapshot: PathBuf,
        /// The patched tree (default: the tree the snapshot was taken of).
        tree: Option<PathBuf>,
        /// The running kernel's vmlinux: a normal build of the same source
        /// and .config, whose symbol order gives sympos; its release must
        /// be the snapshot's. Without it, the tree the snapshot was taken
        /// of is the running kernel, and the snapshot's vmlinux gives
        /// sympos.
        #[arg(long)]
        vmlinux: Option<PathBuf>,
        /// Where the running kernel's modules are (e.g.
        /// /lib/modules/RELEASE), searched for each patched module's .ko,
        /// whose symbol order gives sympos. Without it, the snapshot's
        /// symbol tables of the modules do.
        #[arg(long, value_name = "DIR")]
        modules: Option<PathBuf>,
        /// The module's name.
        #[arg(long, default_value = "livepatch")]
        name: String,
        /// Where to write the module (default: NAME.ko). An existing file
        /// there is replaced only if it is a livepatch module.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Do not replace earlier livepatches (atomic replace is the default).
        #[arg(long)]
        no_replace: bool,
        /// The patch as it was applied (the `fix-lines` output, if that
        /// went through `patch`); repeat for several, in order. A function
        /// that differs only in line numbers is then line-only only where
        /// each number is the one the patch moved that line to.
        #[arg(long = "patch", value_name = "PATCH")]
        patches: Vec<PathBuf>,
        #[command(flatten)]
        sign: SignArgs,
    },
}

/// From source patches to a livepatch module in one command, on a tree
/// built through klp-cc: snapshot (or reuse it), apply through
/// fix-lines, rebuild with the tree's settings, build the module, and
/// restore every file the run changed, also after a failure or a
/// signal.
#[derive(clap::Args)]
struct PatchArgs {
    /// [TREE] PATCH...: the built tree (default: the working directory;
    /// its O= folder, if it used one), then the patches, in order.
    #[arg(required = true, value_name = "TREE|PATCH")]
    paths: Vec<PathBuf>,
    /// The module's name (default: livepatch_ and the first patch's name).
    #[arg(long)]
    name: Option<String>,
    /// Where to write the module (default: NAME.ko).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// The patches are to this external module's folder (built against
    /// the tree with `make -C TREE M=DIR` through klp-cc), not to the
    /// kernel: they apply there, `make M=DIR` rebuilds it, and the module
    /// patches its objects.
    #[arg(long, value_name = "DIR")]
    external: Option<PathBuf>,
    /// The running kernel's vmlinux, as for `build`; without it the
    /// tree is the running kernel (one-build mode).
    #[arg(long)]
    vmlinux: Option<PathBuf>,
    /// Where the running kernel's modules are, as for `build`.
    #[arg(long, value_name = "DIR")]
    modules: Option<PathBuf>,
    /// make's -j for the rebuild (default: the number of CPUs).
    #[arg(short, long)]
    jobs: Option<usize>,
    /// Do not replace earlier livepatches.
    #[arg(long)]
    no_replace: bool,
    /// Keep the work folder (the patches as applied, make's log).
    #[arg(long)]
    keep_tmp: bool,
    /// Take a new snapshot although the tree changed since the last
    /// one: only when the running kernel is the tree as it is now.
    #[arg(long)]
    new_snapshot: bool,
    /// Print one JSON object on standard output instead of the report.
    #[arg(long)]
    json: bool,
    /// Print neither the phases nor the report (errors still go to
    /// standard error; the exit status tells).
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    sign: SignArgs,
}

/// Signing with a key of one's own instead of the tree's.
#[derive(clap::Args)]
struct SignArgs {
    /// Sign with this private key (a file or PKCS#11 URI) instead of the
    /// tree's; needs --sign-cert.
    #[arg(long, value_name = "KEY", requires = "sign_cert")]
    sign_key: Option<PathBuf>,
    /// The X.509 certificate of --sign-key.
    #[arg(long, value_name = "CERT", requires = "sign_key")]
    sign_cert: Option<PathBuf>,
}

impl SignArgs {
    fn pair(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        Some((self.sign_key.as_deref()?, self.sign_cert.as_deref()?))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = matches!(
        cli.command,
        Command::Step(Step::Diff { json: true, .. } | Step::DiffObjects { json: true, .. })
            | Command::Patch(PatchArgs { json: true, .. })
    );
    let result: Result<u8, String> = match cli.command {
        Command::Patch(PatchArgs {
            paths,
            name,
            output,
            external,
            vmlinux,
            modules,
            jobs,
            no_replace,
            keep_tmp,
            new_snapshot,
            json,
            quiet,
            sign,
        }) => {
            let (tree, patches) = match paths.split_first() {
                Some((first, rest)) if first.is_dir() && !rest.is_empty() => (first.clone(), rest),
                _ => (PathBuf::from("."), &paths[..]),
            };
            let opts = patch::PatchOptions {
                tree: &tree,
                patches,
                name: name.as_deref(),
                output: output.as_deref(),
                external: external.as_deref(),
                vmlinux: vmlinux.as_deref(),
                modules: modules.as_deref(),
                jobs,
                replace: !no_replace,
                keep_tmp,
                new_snapshot,
                sign_with: sign.pair(),
                progress: !quiet && !json,
                json,
            };
            patch::run(&opts)
                .map(|ran| {
                    if json {
                        println!("{:#}", ran.json);
                    } else if !quiet {
                        eprint!("{}", ran.report);
                    }
                    ran.outcome.exit_code()
                })
                .map_err(|e| e.to_string())
        }
        Command::Step(step) => run_step(step).map_err(|e| e.to_string()),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("klp-link: {e}");
            if json {
                let doc = klp_cc::link::report::json_failure(&e.to_string());
                println!("{doc:#}");
            }
            ExitCode::from(1)
        }
    }
}

/// The steps `patch` runs, one at a time.
fn run_step(step: Step) -> Result<u8, commands::CommandError> {
    match step {
        Step::Snapshot {
            tree,
            output,
            external,
            force,
            with_objects,
            accept_unavailable,
        } => commands::snapshot(
            &tree,
            external.as_deref(),
            &output,
            force,
            with_objects,
            accept_unavailable,
        )
        .map(|msg| {
            eprint!("{msg}");
            0
        }),
        Step::Diff {
            snapshot,
            tree,
            json,
            explain,
            patches,
        } => commands::diff(
            &snapshot,
            tree.as_deref(),
            &patches,
            json,
            explain.as_deref(),
        )
        .map(|(out, outcome)| {
            print!("{out}");
            outcome.exit_code()
        }),
        Step::DiffObjects {
            orig,
            patched,
            json,
            explain,
            patches,
        } => commands::diff_objects(&orig, &patched, &patches, json, explain.as_deref()).map(
            |(out, outcome)| {
                print!("{out}");
                outcome.exit_code()
            },
        ),
        Step::FixLines {
            patch,
            tree,
            output,
            force,
        } => commands::fix_lines(&patch, tree.as_deref(), output.as_deref(), force).and_then(
            |fixed| {
                std::io::stdout()
                    .write_all(&fixed)
                    .map(|()| 0)
                    .map_err(commands::CommandError::Stdout)
            },
        ),
        Step::Build {
            snapshot,
            tree,
            vmlinux,
            modules,
            name,
            output,
            no_replace,
            patches,
            sign,
        } => {
            let output = output.unwrap_or_else(|| PathBuf::from(format!("{name}.ko")));
            let opts = commands::BuildOptions {
                vmlinux: vmlinux.as_deref(),
                modules: modules.as_deref(),
                name: &name,
                output: &output,
                replace: !no_replace,
                patches: &patches,
                sign_with: sign.pair(),
            };
            commands::build(&snapshot, tree.as_deref(), &opts).map(|(out, outcome)| {
                eprint!("{out}");
                outcome.exit_code()
            })
        }
    }
}
