//! `remediate`: the failing CIS checks' fixes, applied as ONE health-gated transaction per
//! component (one restart each) in dependency order — etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler. A batch that fails its gate is bisected: rolled back,
//! split, the halves retried, until the offending fix is isolated; the rest commit.
//! File checks (1.1.x) become chmod/chown transactions (metadata versions, restorable).

pub mod build;
pub mod files;
pub mod outcome;

pub use outcome::{Attempt, CheckFate, NotStarted, Outcome};

use crate::cis::rules::{Component, Remediation};
use crate::cis::{AuditReport, CheckResult, Status};
use crate::engine::txn::{Change, Gate, TxnStatus};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::journal::record::TxnKind;
use std::path::{Path, PathBuf};

/// One check's fix, ready to batch.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: &'static str,
    pub fix: &'static [Remediation],
    pub manifest: PathBuf,
    pub component: Component,
    /// File checks: the files to chmod/chown.
    pub targets: Vec<PathBuf>,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Per component, in apply order: the flag/file/mount fixes of its manifest.
    pub batches: Vec<(Component, PathBuf, Vec<Item>)>,
    /// chmod/chown fixes.
    pub file_items: Vec<Item>,
    /// (check id, why it is not applied).
    pub skipped: Vec<(String, String)>,
    /// Warnings printed before applying (dangerous checks asked for by id).
    pub warnings: Vec<String>,
}

const ORDER: [Component; 4] = [
    Component::Etcd,
    Component::ApiServer,
    Component::ControllerManager,
    Component::Scheduler,
];

fn actionable(fix: &[Remediation]) -> bool {
    fix.iter().any(|f| !matches!(f, Remediation::Manual(_)))
}

fn is_file_fix(fix: &[Remediation]) -> bool {
    fix.iter().all(|f| {
        matches!(
            f,
            Remediation::Chmod { .. } | Remediation::Chown { .. } | Remediation::Manual(_)
        )
    })
}

/// Why a component's manifest cannot be edited: missing, unreadable (with the OS error) or
/// unparsable (with the parser's error and line).
fn no_manifest_reason(dir: &Path, c: Component) -> String {
    let path = crate::cis::source::manifest_path(dir, c);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return format!("no manifest {} for its component", path.display())
        }
        Err(e) => return format!("cannot read the manifest {}: {e}", path.display()),
        Ok(_) => {}
    }
    match std::fs::read(&path) {
        Err(e) => format!("cannot read the manifest {}: {e}", path.display()),
        Ok(bytes) => match crate::manifest::container_argv(&bytes, None) {
            Err(e) => format!("cannot parse the manifest {}: {e}", path.display()),
            Ok(_) => format!(
                "the manifest {} could not be used by the audit",
                path.display()
            ),
        },
    }
}

/// Which checks to fix. `--all`: failing automated checks, dangerous ones excluded. `--check`:
/// exactly those (dangerous ones with a warning), if they do not already pass.
/// `manifests_dir` is where a component's manifest is looked for, to say why one that the audit
/// could not use is skipped.
pub fn plan(
    report: &AuditReport,
    checks: &[String],
    all: bool,
    manifests_dir: &Path,
) -> Result<Plan> {
    let mut p = Plan::default();
    let chosen: Vec<&CheckResult> = if all {
        report.failing_automated().collect()
    } else {
        let mut v = Vec::new();
        for id in checks {
            let r = report.get(id).ok_or_else(|| {
                Error::usage(format!(
                    "--check {id}: no such check in {}",
                    report.benchmark.name()
                ))
            })?;
            v.push(r);
        }
        v
    };
    let mut by_component: Vec<(Component, PathBuf, Vec<Item>)> = Vec::new();
    for r in chosen {
        let id = r.check.id;
        if r.status == Status::Pass {
            p.skipped.push((id.into(), "already passes".into()));
            continue;
        }
        if let Some(why) = r.check.dangerous {
            if all {
                p.skipped.push((
                    id.into(),
                    format!("not in --all: {why}; apply it with --check {id} if you accept that"),
                ));
                continue;
            }
            p.warnings.push(format!("{id} is risky: {why}"));
        }
        if !actionable(r.check.fix) {
            p.skipped
                .push((id.into(), format!("needs a person: {}", r.remediation)));
            continue;
        }
        if is_file_fix(r.check.fix) {
            if r.failing.is_empty() {
                p.skipped
                    .push((id.into(), format!("nothing to change: {}", r.found)));
                continue;
            }
            p.file_items.push(Item {
                id,
                fix: r.check.fix,
                manifest: PathBuf::new(),
                component: r.check.component,
                targets: r.failing.clone(),
            });
            continue;
        }
        let Some(manifest) = r.manifest.clone() else {
            p.skipped.push((
                id.into(),
                no_manifest_reason(manifests_dir, r.check.component),
            ));
            continue;
        };
        let item = Item {
            id,
            fix: r.check.fix,
            manifest: manifest.clone(),
            component: r.check.component,
            targets: Vec::new(),
        };
        match by_component
            .iter_mut()
            .find(|(c, _, _)| *c == r.check.component)
        {
            Some((_, _, items)) => items.push(item),
            None => by_component.push((r.check.component, manifest, vec![item])),
        }
    }
    for c in ORDER {
        if let Some(i) = by_component.iter().position(|(bc, _, _)| *bc == c) {
            p.batches.push(by_component.remove(i));
        }
    }
    p.batches.extend(by_component);
    Ok(p)
}

/// Everything a batch needs besides the engine.
pub struct Env<'a> {
    pub kubernetes_dir: &'a Path,
    /// A fresh gate for each attempt (`None` with --no-health-gate).
    pub gate: &'a dyn Fn() -> Result<Option<Box<dyn GateWithJson>>>,
}

/// A gate that can describe what it saw.
pub trait GateWithJson: Gate {
    fn json(&self) -> serde_json::Value;
    /// Refuse (before any change) probe options that cannot pass against what runs now.
    fn preflight(&self, _current: &[u8]) -> std::result::Result<(), String> {
        Ok(())
    }
}

impl GateWithJson for crate::gate::HealthGate {
    fn json(&self) -> serde_json::Value {
        crate::gate::HealthGate::json(self)
    }
    fn preflight(&self, current: &[u8]) -> std::result::Result<(), String> {
        crate::gate::HealthGate::preflight(self, current)
    }
}

/// Apply a plan: its batches in order, then its file fixes. Never returns early with an error:
/// an error stops the run and is recorded in the outcome with what committed before it and
/// what did not start after it (see [`Outcome::exit_code`]).
pub fn run(engine: &mut Engine, env: &Env, opts: &BatchOptions, plan: &Plan) -> Outcome {
    let mut out = Outcome::default();
    let mut batches = plan.batches.iter();
    let mut stopped = false;
    for (component, path, items) in batches.by_ref() {
        let first = engine.next_txn_id().ok();
        if let Err(e) = apply_batch_with(engine, env, opts, *component, path, items, &mut out) {
            let txn = begun_by_failed_step(engine, first, &out);
            let ids = items.iter().map(|i| i.id).collect();
            out.stop(&path.to_string_lossy(), ids, txn, e);
            stopped = true;
            break;
        }
        if out.critical.is_some() {
            // Nothing more is changed on a node whose rollback failed.
            stopped = true;
            break;
        }
    }
    if stopped {
        for (_, path, items) in batches {
            out.skip_rest(&path.to_string_lossy(), items);
        }
        for (path, items) in file_groups(&plan.file_items) {
            let owned: Vec<Item> = items.into_iter().cloned().collect();
            out.skip_rest(&path.to_string_lossy(), &owned);
        }
    } else {
        apply_file_fixes(engine, &plan.file_items, &mut out);
    }
    out.applied.sort_unstable();
    out.applied.dedup();
    // A check whose change was rolled back on one of its files is not applied.
    let rolled: Vec<&str> = out.rolled_back.iter().map(|(id, _)| *id).collect();
    out.applied.retain(|id| !rolled.contains(id));
    out
}

/// The transaction a step that failed with an error had begun: the last id handed out since
/// `first`, unless it is one the outcome already reports.
fn begun_by_failed_step(engine: &Engine, first: Option<u64>, out: &Outcome) -> Option<u64> {
    let (first, next) = (first?, engine.next_txn_id().ok()?);
    let last = next.checked_sub(1).filter(|&t| t >= first)?;
    (!out.attempts.iter().any(|a| a.report.txn == Some(last))).then_some(last)
}

/// How the engine's report begins when the durable write itself failed (engine/txn.rs).
const WRITE_FAILED: &str = "the write failed";

fn fixes_of(items: &[Item]) -> Vec<Remediation> {
    items.iter().flat_map(|i| i.fix.iter().copied()).collect()
}

/// Apply a component's batch; on a failed gate, bisect.
pub fn apply_batch(
    engine: &mut Engine,
    env: &Env,
    component: Component,
    manifest: &Path,
    items: &[Item],
    out: &mut Outcome,
) -> Result<()> {
    let opts = BatchOptions::default();
    apply_batch_with(engine, env, &opts, component, manifest, items, out)
}

/// What `apply` (the hardening file) adds to a batch: operator-provided files instead of
/// generated ones, and a reason prefix naming the file.
#[derive(Default)]
pub struct BatchOptions {
    pub provided: Vec<(crate::cis::rules::NeededFile, PathBuf)>,
    pub reason_prefix: String,
}

/// [`apply_batch`] with [`BatchOptions`].
pub fn apply_batch_with(
    engine: &mut Engine,
    env: &Env,
    opts: &BatchOptions,
    component: Component,
    manifest: &Path,
    items: &[Item],
    out: &mut Outcome,
) -> Result<()> {
    if items.is_empty() || out.critical.is_some() {
        return Ok(());
    }
    let ids: Vec<&'static str> = items.iter().map(|i| i.id).collect();
    let observed = engine.observe(manifest)?;
    let exists = |p: &Path| p.exists();
    let provided = |k| {
        opts.provided
            .iter()
            .find(|(pk, _)| *pk == k)
            .map(|(_, p)| p.clone())
    };
    let built = build::build_with(
        &observed.bytes,
        component,
        &fixes_of(items),
        env.kubernetes_dir,
        &exists,
        &provided,
    )
    .map_err(|e| {
        Error::usage(format!(
            "{}: cannot apply {}: {e}",
            manifest.display(),
            ids.join(", ")
        ))
    })?;
    out.notes.extend(built.notes.iter().cloned());
    let mut changes = vec![Change {
        observed,
        after_bytes: built.manifest,
        after_meta: None,
    }];
    for f in &built.files {
        if let Some(dir) = f.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::Io {
                context: format!("creating {}", dir.display()),
                source: e,
            })?;
        }
        changes.push(Change {
            observed: engine.observe_or_absent(&f.path)?,
            after_bytes: f.content.clone(),
            after_meta: Some((f.mode, 0, 0)),
        });
    }
    let mut gate = (env.gate)()?;
    if let Some(g) = &gate {
        g.preflight(&changes[0].observed.bytes)
            .map_err(Error::usage)?;
    }
    // A signal during the health probe before the change: stop before writing anything.
    crate::signals::checkpoint()?;
    let reason = format!("{}CIS {}", opts.reason_prefix, ids.join(" "));
    let report = engine.transact(
        TxnKind::Remediate,
        &reason,
        changes,
        gate.as_deref_mut().map(|g| g as &mut dyn Gate),
    )?;
    let gate_json = gate.as_ref().map_or_else(
        || serde_json::json!({"skipped": true, "reason": "--no-health-gate"}),
        |g| g.json(),
    );
    let status = report.status;
    let why = report.reason.clone();
    out.attempts.push(Attempt {
        report,
        path: manifest.to_string_lossy().into_owned(),
        checks: ids.clone(),
        flags: built.flags,
        gate: gate_json,
    });
    match status {
        TxnStatus::Committed | TxnStatus::Noop => {
            out.applied.extend(&ids);
            for f in &built.files {
                if let Some(n) = &f.after_note {
                    out.notes.push(n.clone());
                }
            }
        }
        TxnStatus::RollbackFailed => out.critical = Some(why),
        TxnStatus::RolledBack if items.len() == 1 => out.rolled_back.push((ids[0], why)),
        // The manifest could not be written at all: no fix is to blame, and bisecting would
        // only fail the same way again.
        TxnStatus::RolledBack if why.starts_with(WRITE_FAILED) => {
            out.rolled_back
                .extend(ids.iter().map(|id| (*id, why.clone())));
        }
        TxnStatus::RolledBack => {
            let (a, b) = items.split_at(items.len() / 2);
            apply_batch_with(engine, env, opts, component, manifest, a, out)?;
            apply_batch_with(engine, env, opts, component, manifest, b, out)?;
        }
    }
    Ok(())
}

pub(crate) fn owner_ids(owner: &str) -> std::result::Result<(u32, u32), String> {
    let (u, g) = owner.split_once(':').unwrap_or((owner, owner));
    let uid = nix::unistd::User::from_name(u)
        .ok()
        .flatten()
        .ok_or_else(|| format!("no user {u:?} on this node"))?
        .uid
        .as_raw();
    let gid = nix::unistd::Group::from_name(g)
        .ok()
        .flatten()
        .ok_or_else(|| format!("no group {g:?} on this node"))?
        .gid
        .as_raw();
    Ok((uid, gid))
}

/// The file fixes grouped by target path (sorted): one transaction per file.
fn file_groups(items: &[Item]) -> Vec<(PathBuf, Vec<&Item>)> {
    let mut paths: Vec<PathBuf> = items
        .iter()
        .flat_map(|i| i.targets.iter().cloned())
        .collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .map(|p| {
            let mine = items.iter().filter(|i| i.targets.contains(&p)).collect();
            (p, mine)
        })
        .collect()
}

fn dir_note(path: &Path, mine: &[&Item], ids: &[&str]) -> String {
    let cmds: Vec<String> = mine
        .iter()
        .flat_map(|i| i.fix.iter())
        .filter_map(|f| match f {
            Remediation::Chmod { mode } => Some(format!("chmod {mode:o} {}", path.display())),
            Remediation::Chown { owner } => Some(format!("chown {owner} {}", path.display())),
            _ => None,
        })
        .collect();
    format!(
        "{}: {} is a directory (not versioned); run by hand: {}",
        ids.join(", "),
        path.display(),
        cmds.join("; ")
    )
}

/// chmod/chown fixes: one transaction per file (same bytes, new metadata), no restart needed.
/// An error stops them; the files not reached are recorded as not started.
pub fn apply_file_fixes(engine: &mut Engine, items: &[Item], out: &mut Outcome) {
    let groups = file_groups(items);
    let mut rest = groups.iter();
    for (path, mine) in rest.by_ref() {
        let ids: Vec<&'static str> = mine.iter().map(|i| i.id).collect();
        if path.is_dir() {
            out.notes.push(dir_note(path, mine, &ids));
            continue;
        }
        let first = engine.next_txn_id().ok();
        if let Err(e) = file_fix(engine, path, mine, &ids, out) {
            let txn = begun_by_failed_step(engine, first, out);
            out.stop(&path.to_string_lossy(), ids, txn, e);
            break;
        }
    }
    for (path, mine) in rest {
        let owned: Vec<Item> = mine.iter().map(|i| (*i).clone()).collect();
        out.skip_rest(&path.to_string_lossy(), &owned);
    }
}

/// One file's chmod/chown transaction.
fn file_fix(
    engine: &mut Engine,
    path: &Path,
    mine: &[&Item],
    ids: &[&'static str],
    out: &mut Outcome,
) -> Result<()> {
    // After a signal no further change is started (the run stops with it).
    crate::signals::checkpoint()?;
    let observed = match engine.observe(path) {
        Ok(o) => o,
        Err(e) => {
            out.notes.push(format!("{}: {e}", ids.join(", ")));
            return Ok(());
        }
    };
    let (mut mode, mut uid, mut gid) =
        (observed.state.mode, observed.state.uid, observed.state.gid);
    for f in mine.iter().flat_map(|i| i.fix.iter()) {
        match f {
            // "600 or more restrictive": keep only the allowed bits.
            Remediation::Chmod { mode: allowed } => mode &= allowed,
            Remediation::Chown { owner } => match owner_ids(owner) {
                Ok((u, g)) => (uid, gid) = (u, g),
                Err(e) => {
                    out.notes
                        .push(format!("{}: {}: {e}", ids.join(", "), path.display()));
                    return Ok(());
                }
            },
            _ => {}
        }
    }
    let bytes = observed.bytes.clone();
    let report = engine.transact(
        TxnKind::Remediate,
        &format!("CIS {}", ids.join(" ")),
        vec![Change {
            observed,
            after_bytes: bytes,
            after_meta: Some((mode, uid, gid)),
        }],
        None,
    )?;
    match report.status {
        TxnStatus::Committed | TxnStatus::Noop => out.applied.extend(ids),
        TxnStatus::RolledBack => out
            .rolled_back
            .extend(ids.iter().map(|id| (*id, report.reason.clone()))),
        TxnStatus::RollbackFailed => out.critical = Some(report.reason.clone()),
    }
    out.attempts.push(Attempt {
        report,
        path: path.to_string_lossy().into_owned(),
        checks: ids.to_vec(),
        flags: Vec::new(),
        gate: serde_json::json!({"skipped": true, "reason": "metadata only: no restart"}),
    });
    Ok(())
}
