//! The patched rebuild: kbuild-snippets/klp-rebuild.sh's plan (which
//! objects depend on a patched file, which folders to make), the build
//! outputs saved before make overwrites them, and make itself.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use super::journal::{is_build_output, walk_into, FileState, Journal, JournalError};
use super::settings::MakeSettings;
use super::signals;

/// The rebuild script, built in so that an installed klp-link needs no
/// checkout; `kbuild-snippets/` ships the same file for those who run
/// the steps by hand.
const SCRIPT: &str = include_str!("../../../kbuild-snippets/klp-rebuild.sh");

/// What the rebuild will do.
#[derive(Debug, Default)]
pub struct Plan {
    /// Each object that depends on a patched file, with that file.
    pub dependents: Vec<(PathBuf, PathBuf)>,
    /// The folders to make (`./` for all of the tree), or `M=DIR` for an
    /// external module.
    pub goals: Vec<String>,
}

impl Plan {
    /// The folders the goals write.
    fn folders(&self, objtree: &Path) -> Vec<PathBuf> {
        self.goals
            .iter()
            .map(|g| match g.strip_prefix("M=") {
                Some(dir) => PathBuf::from(dir),
                // `./` (the whole tree) would show in every path named.
                None => objtree.join(g.trim_start_matches("./")),
            })
            .collect()
    }
}

#[derive(Debug)]
pub enum RebuildError {
    Script {
        status: String,
        stderr: String,
    },
    Run {
        error: std::io::Error,
    },
    Journal(JournalError),
    Make {
        status: ExitStatus,
        log: PathBuf,
        tail: String,
    },
}

impl std::fmt::Display for RebuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RebuildError::Script { status, stderr } => {
                write!(
                    f,
                    "klp-rebuild.sh --plan failed ({status}): {}",
                    stderr.trim()
                )
            }
            RebuildError::Run { error } => write!(f, "cannot run the rebuild: {error}"),
            RebuildError::Journal(e) => write!(f, "saving a build output: {e}"),
            RebuildError::Make { status, log, tail } => write!(
                f,
                "the patched tree does not build ({status}); the last lines of {}:\n{}",
                log.display(),
                tail.trim_end()
            ),
        }
    }
}

/// Asks klp-rebuild.sh what a rebuild for `patches` (to the kernel, or to
/// the `external` module folder) would make.
pub fn plan(
    objtree: &Path,
    external: Option<&Path>,
    patches: &[PathBuf],
) -> Result<Plan, RebuildError> {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(SCRIPT)
        .arg("klp-rebuild.sh")
        .arg("--plan");
    if let Some(dir) = external {
        cmd.arg("--external").arg(dir);
    }
    let out = cmd
        .arg(objtree)
        .args(patches)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| RebuildError::Run { error })?;
    if !out.status.success() {
        return Err(RebuildError::Script {
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let mut plan = Plan::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(rest) = line.strip_prefix("object ") {
            if let Some((obj, file)) = rest.split_once(' ') {
                plan.dependents.push((obj.into(), file.into()));
            }
        } else if let Some(goal) = line.strip_prefix("goal ") {
            plan.goals.push(goal.to_owned());
        }
    }
    Ok(plan)
}

/// Saves in `journal` what the rebuild will overwrite: each dependent
/// object with its `.cmd`, manifest and dependency file, and kbuild's lists
/// in the goal folders (in an external module's, every build output: its
/// make links the module too); then the state of every file there, so
/// that a restore can tell what else the rebuild wrote. Returns that
/// state.
pub fn save_outputs(
    objtree: &Path,
    plan: &Plan,
    journal: &mut Journal,
) -> Result<BTreeMap<PathBuf, FileState>, RebuildError> {
    for (obj, _) in &plan.dependents {
        let dir = objtree.join(obj.parent().unwrap_or(Path::new("")));
        let name = obj.file_name().unwrap_or_default().to_string_lossy();
        for path in [
            objtree.join(obj),
            dir.join(format!(".{name}.cmd")),
            crate::manifest::path_for(&objtree.join(obj)),
            // The preprocessor's dependency file, which 6.1's fixdep
            // leaves behind for some objects.
            dir.join(format!(".{name}.d")),
        ] {
            journal.save(&path).map_err(RebuildError::Journal)?;
        }
    }
    let dirs = plan.folders(objtree);
    let mut files = BTreeMap::new();
    for d in &dirs {
        walk_into(d, &mut files).map_err(|error| {
            RebuildError::Journal(JournalError {
                path: d.clone(),
                error,
            })
        })?;
    }
    let external = plan.goals.iter().any(|g| g.starts_with("M="));
    for path in files
        .keys()
        .filter(|p| is_kbuild_list(p) || (external && is_build_output(p)))
    {
        journal.save(path).map_err(RebuildError::Journal)?;
    }
    journal
        .walked(&dirs, &files)
        .map_err(RebuildError::Journal)?;
    Ok(files)
}

/// kbuild's per-folder lists, rewritten by every folder make: the thin
/// archives, module orders and `.mod` files, and their `.cmd` records.
fn is_kbuild_list(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let name = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(".cmd"))
        .unwrap_or(&name);
    matches!(name, "built-in.a" | "lib.a" | "modules.order") || name.ends_with(".mod")
}

/// Runs make for the plan's goals with the tree's settings, its output
/// in `log`.
pub fn make(
    objtree: &Path,
    settings: &MakeSettings,
    jobs: usize,
    plan: &Plan,
    log: &Path,
) -> Result<(), RebuildError> {
    let out = File::create(log).map_err(|error| RebuildError::Run { error })?;
    let err = out
        .try_clone()
        .map_err(|error| RebuildError::Run { error })?;
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(objtree)
        .arg(format!("-j{jobs}"))
        .args(settings.make_args())
        .args(&plan.goals)
        .envs(settings.make_env())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let status = signals::run(&mut cmd).map_err(|error| RebuildError::Run { error })?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(25)..].join("\n");
    Err(RebuildError::Make {
        status,
        log: log.to_owned(),
        tail,
    })
}
