//! klp-link: compares the manifests of an original and a patched kernel build
//! and builds a livepatch module from the changed functions. For now it only
//! says what each step will do.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Build a kernel livepatch module from two klp-cc builds of the same tree.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Step,
}

#[derive(Subcommand)]
enum Step {
    /// Capture the original build's manifests, object lists and symbol tables.
    Snapshot,
    /// Report which functions changed between the snapshot and the patched tree.
    Diff,
    /// Compare two single objects directly.
    DiffObjects,
    /// Extract the changed functions into a livepatch .ko.
    Build,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let plan = match cli.command {
        Step::Snapshot => {
            "snapshot: will copy every manifest of the original build, kbuild's object \
             lists (modules.order, *.mod, .*.cmd), Module.symvers and the vmlinux and \
             module symbol tables into one snapshot that survives an in-place rebuild"
        }
        Step::Diff => {
            "diff: will correlate the snapshot's symbols with the patched tree's manifests \
             and list changed, new and removed functions per target (vmlinux or module)"
        }
        Step::DiffObjects => {
            "diff-objects: will checksum two objects in-process and report changed and new \
             functions (exit 0: changes, 3: no functional change)"
        }
        Step::Build => {
            "build: will copy the changed functions into a patch object with klp \
             relocations and link it into a livepatch module with the kernel's own kbuild"
        }
    };
    eprintln!("klp-link: not implemented yet; {plan}");
    ExitCode::from(2)
}
