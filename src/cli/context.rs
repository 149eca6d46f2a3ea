//! Opening the state for a command: read-only (never waits for the lock) or mutating (lock,
//! then recovery with the configured policy), and resolving MANIFEST arguments.

use super::args::{Global, PolicyArg};
use super::output::{say, warn};
use crate::catalog::Catalog;
use crate::engine::recovery::{Policy, RecoveryReport};
use crate::engine::state::{self, StateLock, StatePaths};
use crate::engine::{Engine, Unrecovered};
use crate::error::{Error, IoContext, Result};
use crate::fsys::real::RealFs;
use crate::fsys::Fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub struct Ctx {
    pub global: Global,
    pub fs: Arc<dyn Fs>,
    pub paths: StatePaths,
}

/// A mutating command's view: it holds the lock until dropped.
pub struct Locked {
    pub engine: Engine,
    pub report: RecoveryReport,
    /// What the replay gate saw (policy replay only).
    pub gate: Option<serde_json::Value>,
    _lock: StateLock,
}

/// A read-only view. `fresh` is false when another process held the lock, so the catalog may
/// lag the journal by that process's transaction. `read_only` is set when the state dir cannot
/// be written: the catalog is then an in-memory rebuild from the journal.
pub struct ReadView {
    pub unrecovered: Unrecovered,
    pub fresh: bool,
    pub read_only: bool,
    _lock: state::ReadLock,
}

/// The node's own paths: changing them takes root, as kubeadm says up front.
const NODE_STATE_DIR: &str = "/var/lib/kubeharden";
const NODE_MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";

/// Whether the command records transactions (so needs a writable state, and root on the
/// node's default paths). Commands not listed read only.
pub fn is_mutating(cmd: &super::args::Command) -> bool {
    use super::args::Command as C;
    match cmd {
        C::Set { dry_run, .. } | C::Remediate { dry_run, .. } | C::Restore { dry_run, .. } => {
            !dry_run
        }
        C::Prune { dry_run, .. } => !dry_run,
        C::Snapshot { .. } | C::Recover { .. } => true,
        C::Verify { repair } => *repair,
        _ => false,
    }
}

pub fn policy(p: PolicyArg) -> Policy {
    match p {
        PolicyArg::Revert => Policy::Revert,
        PolicyArg::Replay => Policy::Replay,
    }
}

/// `p` made absolute against the current directory (symlinks not resolved).
pub fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .ctx(|| "reading the current directory".into())?
            .join(p))
    }
}

/// Refuse a manifests dir that does not exist, is not a directory, or cannot be listed.
pub fn checked_manifests_dir(d: &Path) -> Result<()> {
    match std::fs::metadata(d) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::usage(format!(
            "the manifests dir {} does not exist (set --manifests-dir or \
             KUBEHARDEN_MANIFESTS_DIR to the kubelet's static pod folder)",
            d.display()
        ))),
        Err(e) => Err(e).ctx(|| format!("manifests dir {}", d.display())),
        Ok(m) if !m.is_dir() => Err(Error::usage(format!(
            "the manifests dir {} is not a directory",
            d.display()
        ))),
        Ok(_) => std::fs::read_dir(d)
            .map(drop)
            .ctx(|| format!("cannot list the manifests dir {}", d.display())),
    }
}

impl Ctx {
    pub fn new(global: Global) -> Result<Ctx> {
        let root = absolute(&global.state_dir)?;
        Ok(Ctx {
            paths: StatePaths::new(&root),
            fs: Arc::new(RealFs),
            global,
        })
    }

    /// The manifests dir, absolute with symlinks in it resolved (so one file has one key). A
    /// missing one (or not a directory) is bad input, exit 2; one that cannot be listed is an
    /// I/O error.
    pub fn manifests_dir(&self) -> Result<PathBuf> {
        let d = absolute(&self.global.manifests_dir)?;
        checked_manifests_dir(&d)?;
        std::fs::canonicalize(&d).ctx(|| format!("manifests dir {}", d.display()))
    }

    /// A MANIFEST argument: a file name in the manifests dir, or a path. The file itself is not
    /// resolved (a symlinked manifest is refused later, with a reason).
    pub fn manifest_path(&self, arg: &str) -> Result<PathBuf> {
        if arg.is_empty() {
            return Err(Error::usage("empty MANIFEST argument"));
        }
        let p = Path::new(arg);
        let (dir, name) = if arg.contains('/') {
            let abs = absolute(p)?;
            let name = abs
                .file_name()
                .ok_or_else(|| Error::usage(format!("{arg}: not a file path")))?
                .to_owned();
            let parent = abs.parent().unwrap_or(Path::new("/")).to_path_buf();
            let dir =
                std::fs::canonicalize(&parent).map_err(|e| Error::usage(format!("{arg}: {e}")))?;
            (dir, name)
        } else {
            (self.manifests_dir()?, p.as_os_str().to_owned())
        };
        Ok(dir.join(name))
    }

    fn open_catalog(&self, allow_reset: bool) -> Result<Catalog> {
        match Catalog::open(&self.paths.catalog) {
            Ok(c) => Ok(c),
            // Derived data: a catalog that cannot be opened is rebuilt from the journal.
            Err(e) if allow_reset => {
                warn(format_args!("{e}; rebuilding it from the journal"));
                let reopened = Catalog::remove_files(&self.paths.catalog)
                    .and_then(|()| Catalog::open(&self.paths.catalog));
                reopened.or_else(|e| {
                    warn(format_args!("{e}; {}", crate::engine::IN_MEMORY_NOTE));
                    Catalog::open_in_memory()
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Refuse, before anything is read or written, a mutating command run without root on the
    /// node's default state or manifests dir (kubeadm: "this command must be run as root").
    pub fn require_root_for_node_paths(&self) -> Result<()> {
        if nix::unistd::geteuid().is_root() {
            return Ok(());
        }
        let manifests = absolute(&self.global.manifests_dir)?;
        let node: Vec<String> = [
            (self.paths.root.as_path(), NODE_STATE_DIR),
            (manifests.as_path(), NODE_MANIFESTS_DIR),
        ]
        .iter()
        .filter(|(p, d)| *p == Path::new(d))
        .map(|(_, d)| d.to_string())
        .collect();
        if node.is_empty() {
            return Ok(());
        }
        Err(Error::usage(format!(
            "this command must be run as root: it changes {} (run it with sudo; or point \
             --state-dir and --manifests-dir at directories you own); nothing was changed",
            node.join(" and ")
        )))
    }

    /// Check that the state dir is trusted (exit 6 otherwise), then its layout (creating it
    /// with `create`). False when there is no state yet.
    pub fn prepare_state(&self, create: bool) -> Result<bool> {
        let trust = state::Trust::of_process();
        state::check_trusted(self.fs.as_ref(), &self.paths, trust)?;
        let exists = state::prepare(self.fs.as_ref(), &self.paths, create)?;
        if create {
            // What was just created is checked too (a umask or a default ACL can leave it
            // group-writable); cheap: a few dozen entries.
            state::check_trusted(self.fs.as_ref(), &self.paths, trust)?;
        }
        Ok(exists)
    }

    /// Lock, recover with the configured policy, and return an engine ready for transactions.
    pub fn open_mutating(&self) -> Result<Locked> {
        let policy = policy(self.global.recovery_policy);
        // Replay finishes a transaction, so it proves health as the transaction would have.
        let gate = match policy {
            Policy::Replay => Some(
                crate::gate::HealthGate::new(crate::gate::GateConfig {
                    timeout: Duration::from_secs(120),
                    rollback_timeout: crate::gate::DEFAULT_ROLLBACK_TIMEOUT,
                    probe_urls: Vec::new(),
                    restart_check: crate::gate::RestartCheck::Auto,
                    tls: Default::default(),
                    container: None,
                })
                .map_err(Error::usage)?,
            ),
            Policy::Revert => None,
        };
        self.open_mutating_with(policy, gate)
    }

    /// Lock and recover with `policy`; `gate` proves health for replayed transactions.
    pub fn open_mutating_with(
        &self,
        policy: Policy,
        mut gate: Option<crate::gate::HealthGate>,
    ) -> Result<Locked> {
        self.require_root_for_node_paths()?;
        self.prepare_state(true)?;
        let lock = state::lock(&self.paths, Duration::from_secs(self.global.lock_timeout))?;
        // A signal from here on is not "nothing held": recovery finishes first.
        crate::signals::set_phase(crate::signals::Phase::Recovering);
        let catalog = self.open_catalog(true)?;
        let un = Unrecovered::open(self.fs.clone(), self.paths.clone(), catalog, true)?;
        let dirs: Vec<PathBuf> = self.manifests_dir().into_iter().collect();
        let recovered = un.recover(
            policy,
            &dirs,
            gate.as_mut()
                .map(|g| g as &mut dyn crate::engine::txn::Gate),
        );
        crate::signals::set_phase(crate::signals::Phase::Between);
        let (engine, report) = recovered?;
        if !report.resolved.is_empty() {
            crate::signals::set_recovered();
        }
        print_recovery_notes(&report);
        Ok(Locked {
            engine,
            report,
            gate: gate.map(|g| g.json()),
            _lock: lock,
        })
    }

    /// Open for reading; `None` when no state exists yet. Never waits for the lock and never
    /// needs to create or write anything (a read-only state dir works).
    pub fn open_read_only(&self) -> Result<Option<ReadView>> {
        if !self.prepare_state(false)? {
            return Ok(None);
        }
        let lock = state::read_lock(&self.paths)?;
        // The lock holder has the catalog file to itself (SQLite's exclusive locking mode, which
        // needs no shared-memory file): without the lock, or where nothing may be written, the
        // catalog is rebuilt in memory from the journal.
        let (catalog, writable) = match &lock {
            state::ReadLock::Exclusive(_) => (self.open_catalog(true)?, true),
            state::ReadLock::Busy | state::ReadLock::ReadOnly { .. } => {
                (Catalog::open_in_memory()?, false)
            }
        };
        let read_only = matches!(lock, state::ReadLock::ReadOnly { .. });
        let mut un = Unrecovered::open(self.fs.clone(), self.paths.clone(), catalog, writable)?;
        un.catch_up_or_fall_back()?;
        if matches!(lock, state::ReadLock::Busy) {
            say(
                "another kubeharden holds the state lock; showing the journal as it is (its \
                 transaction may not be finished yet)",
            );
        }
        Ok(Some(ReadView {
            fresh: !matches!(lock, state::ReadLock::Busy),
            read_only,
            unrecovered: un,
            _lock: lock,
        }))
    }
}

pub fn print_recovery_notes(report: &RecoveryReport) {
    if let Some(t) = &report.torn_tail {
        say(format_args!(
            "recovery cut a torn journal tail ({}: {} bytes at offset {} of segment {})",
            t.reason, t.dropped, t.offset, t.segment
        ));
    }
    for p in &report.temps_removed {
        say(format_args!(
            "recovery removed leftover temp file {}",
            p.display()
        ));
    }
    for r in &report.resolved {
        say(format_args!(
            "recovery: transaction {} {} ({}){}",
            r.txn,
            r.action,
            r.paths.join(", "),
            if r.note.is_empty() {
                String::new()
            } else {
                format!(": {}", r.note)
            }
        ));
    }
}

/// A conflict found while recovering stops a mutating command (protocol: warn and exit 3).
pub fn stop_on_conflict(report: &RecoveryReport) -> Result<()> {
    let conflicts = report.conflicts();
    if conflicts.is_empty() {
        return Ok(());
    }
    Err(Error::RolledBack(format!(
        "recovery found files changed by someone else during an incomplete transaction: {}. \
         Check them ('kubeharden history', 'kubeharden diff') and rerun",
        conflicts
            .iter()
            .map(|c| c.note.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    )))
}
