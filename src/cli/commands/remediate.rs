//! `remediate`: apply the fixes of failing CIS checks (see `src/remediate/`).

use super::gated;
use super::txn_output::txn_json;
use crate::cis::{self, AuditOptions, BenchmarkId};
use crate::cli::args::GateArgs;
use crate::cli::context::{absolute, stop_on_conflict, Ctx};
use crate::cli::output::{unified_diff, Outcome};
use crate::error::{Error, Result};
use crate::remediate::{self, build, CheckFate, Env, GateWithJson, Plan};
use serde_json::json;
use std::path::Path;

pub struct RemediateArgs<'a> {
    pub checks: &'a [String],
    pub all: bool,
    pub benchmark: Option<&'a str>,
    pub dry_run: bool,
    pub gate: &'a GateArgs,
    /// The hardening file: its waivers and selection decide what `--all` fixes.
    pub hardening: Option<crate::hardening::Hardening>,
}

fn audit(
    ctx: &Ctx,
    benchmark: Option<&str>,
    h: Option<&crate::hardening::Hardening>,
) -> Result<cis::AuditReport> {
    let mut opts = AuditOptions::new(ctx.manifests_dir()?, absolute(&ctx.global.kubernetes_dir)?);
    opts.benchmark = benchmark
        .map(BenchmarkId::parse)
        .transpose()
        .map_err(Error::usage)?
        .or(h.and_then(|h| h.benchmark));
    let mut r = cis::run(&opts).map_err(Error::usage)?;
    crate::hardening::honour(&mut r, h);
    Ok(r)
}

/// Under a hardening file, `--all` means its enforced, unwaived failing checks.
fn selection(a: &RemediateArgs, report: &cis::AuditReport) -> (Vec<String>, bool) {
    match &a.hardening {
        Some(h) if a.all => (crate::hardening::failing_enforced(h, report), false),
        _ => (a.checks.to_vec(), a.all),
    }
}

fn plan_json(plan: &Plan) -> serde_json::Value {
    json!({
        "batches": plan.batches.iter().map(|(c, path, items)| json!({
            "component": format!("{c:?}"), "path": path.display().to_string(),
            "checks": items.iter().map(|i| i.id).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "file_checks": plan.file_items.iter().map(|i| i.id).collect::<Vec<_>>(),
        "skipped": plan.skipped.iter().map(|(id, why)| json!({"check": id, "reason": why})).collect::<Vec<_>>(),
    })
}

fn dry_run(ctx: &Ctx, plan: &Plan) -> Result<Outcome> {
    let kd = absolute(&ctx.global.kubernetes_dir)?;
    let mut text = String::new();
    let mut entries = Vec::new();
    for (component, path, items) in &plan.batches {
        let bytes =
            std::fs::read(path).map_err(|e| Error::usage(format!("{}: {e}", path.display())))?;
        let fixes: Vec<_> = items.iter().flat_map(|i| i.fix.iter().copied()).collect();
        let built = build::build(&bytes, *component, &fixes, &kd, &|p: &Path| p.exists())
            .map_err(|e| Error::usage(format!("{}: {e}", path.display())))?;
        let ids: Vec<&str> = items.iter().map(|i| i.id).collect();
        text.push_str(&format!(
            "# {component:?}: {} (one restart)\n",
            ids.join(" ")
        ));
        text.push_str(&unified_diff(
            &bytes,
            &built.manifest,
            &path.display().to_string(),
            &format!("{} (after remediate)", path.display()),
        ));
        for f in &built.files {
            text.push_str(&format!(
                "# creates {} (mode {:o})\n",
                f.path.display(),
                f.mode
            ));
        }
        entries.push(json!({"status": "dry_run", "path": path.display().to_string(), "checks": ids, "flags": built.flags,
            "creates": built.files.iter().map(|f| f.path.display().to_string()).collect::<Vec<_>>()}));
    }
    for i in &plan.file_items {
        text.push_str(&format!(
            "# {}: {} on {}\n",
            i.id,
            i.fix
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            i.targets
                .iter()
                .map(|t| t.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        ));
        for t in &i.targets {
            for l in file_fix_preview(ctx, t, i.fix) {
                text.push_str(&format!("#   {}: {l}\n", t.display()));
            }
        }
    }
    for (id, why) in &plan.skipped {
        text.push_str(&format!("# skipped {id}: {why}\n"));
    }
    Ok(Outcome::new(
        json!({"transactions": entries, "plan": plan_json(plan)}),
        text,
    ))
}

pub fn remediate(ctx: &Ctx, a: RemediateArgs) -> Result<Outcome> {
    if a.all != a.checks.is_empty() {
        return Err(Error::usage("give either --all or --check ID (repeatable)"));
    }
    let dir = ctx.manifests_dir()?;
    if a.dry_run {
        let before = audit(ctx, a.benchmark, a.hardening.as_ref())?;
        let (checks, all) = selection(&a, &before);
        let plan = remediate::plan(&before, &checks, all, &dir)?;
        for w in &plan.warnings {
            crate::cli::output::say(format_args!("warning: {w}"));
        }
        return dry_run(ctx, &plan);
    }
    // Bad gate options and unknown check ids are refused before anything is touched (even
    // recovery): exit 2 means nothing changed.
    gated::build(a.gate, None)?;
    let early = audit(ctx, a.benchmark, a.hardening.as_ref())?;
    let (checks, all) = selection(&a, &early);
    remediate::plan(&early, &checks, all, &dir)?;
    // Recover first: the plan must see the manifests as recovery leaves them.
    let mut locked = ctx.open_mutating()?;
    stop_on_conflict(&locked.report)?;
    let before = audit(ctx, a.benchmark, a.hardening.as_ref())?;
    let (checks, all) = selection(&a, &before);
    let plan = remediate::plan(&before, &checks, all, &dir)?;
    for w in &plan.warnings {
        crate::cli::output::say(format_args!("warning: {w}"));
    }
    let gate_args = a.gate.clone();
    let make_gate = move || -> Result<Option<Box<dyn GateWithJson>>> {
        Ok(gated::build(&gate_args, None)?.map(|g| Box::new(g) as Box<dyn GateWithJson>))
    };
    let kd = absolute(&ctx.global.kubernetes_dir)?;
    let env = Env {
        kubernetes_dir: &kd,
        gate: &make_gate,
    };
    let out = remediate::run(
        &mut locked.engine,
        &env,
        &remediate::BatchOptions::default(),
        &plan,
    );
    drop(locked);

    let after = audit(ctx, Some(before.benchmark.name()), a.hardening.as_ref()).ok();
    let still_failing: Vec<&str> = after
        .as_ref()
        .map(|r| {
            out.applied
                .iter()
                .copied()
                .filter(|id| r.get(id).is_some_and(|c| c.status != cis::Status::Pass))
                .collect()
        })
        .unwrap_or_default();
    if let Some(c) = &out.critical {
        crate::cli::output::say(c);
    }
    if let Some(s) = &out.stopped {
        crate::cli::output::say(stopped_message(&out, s));
    }
    let mut json = report_json(&out, &plan);
    json["benchmark"] = json!(before.benchmark.name());
    json["still_failing"] = json!(still_failing);
    let mut text = report_text(&out, &plan);
    if !still_failing.is_empty() {
        text.push_str(&format!(
            "still failing after the change: {}\n",
            still_failing.join(" ")
        ));
    }
    Ok(Outcome::new(json, text).with_code(out.exit_code()))
}

/// The one-paragraph account of an error that stopped a run: what committed before it, what
/// did not start after it.
pub fn stopped_message(out: &remediate::Outcome, s: &remediate::outcome::Stopped) -> String {
    let committed = out.committed();
    let before = if committed.is_empty() && !out.wrote_anything() {
        "nothing was changed".to_string()
    } else if committed.is_empty() {
        "no transaction committed".to_string()
    } else {
        format!(
            "transactions {} committed before it and stay in place",
            committed
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let after = if out.not_started.is_empty() {
        String::new()
    } else {
        format!(
            "; not started: {}",
            out.not_started
                .iter()
                .map(|n| format!("{} ({})", n.path, n.checks.join(" ")))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    format!(
        "stopped at {} ({}): {}; {before}{after}",
        s.path,
        s.checks.join(" "),
        s.error
    )
}

fn txn_entry(t: &remediate::Attempt) -> serde_json::Value {
    let before = t
        .report
        .files
        .first()
        .map(|f| f.before)
        .unwrap_or(crate::journal::record::FileState::absent());
    let after = t.report.files.first().map(|f| f.after).unwrap_or(before);
    let mut e = txn_json(
        &t.report,
        t.report.status.as_str(),
        &t.path,
        (&before, &after),
        &t.flags,
        t.gate.clone(),
        &format!("CIS {}", t.checks.join(" ")),
    );
    e["checks"] = json!(t.checks);
    e
}

/// Every planned check, in plan order.
fn planned_ids(plan: &Plan) -> Vec<&'static str> {
    plan.batches
        .iter()
        .flat_map(|(_, _, items)| items.iter())
        .chain(&plan.file_items)
        .map(|i| i.id)
        .collect()
}

/// The JSON of a run: every transaction, per check what happened, what did not start, and the
/// error that stopped it (null when none).
pub fn report_json(out: &remediate::Outcome, plan: &Plan) -> serde_json::Value {
    let checks: Vec<_> = planned_ids(plan)
        .into_iter()
        .map(|id| {
            let f = out.fate(id);
            let reason = match &f {
                CheckFate::RolledBack(_, why) | CheckFate::Failed(_, why) => Some(why.clone()),
                _ => None,
            };
            json!({"check": id, "result": f.name(), "txn": f.txn(), "reason": reason})
        })
        .collect();
    json!({
        "transactions": out.attempts.iter().map(txn_entry).collect::<Vec<_>>(),
        "committed": out.committed(),
        "checks": checks,
        "applied": out.applied,
        "rolled_back": out.rolled_back.iter().map(|(id, why)| json!({"check": id, "reason": why})).collect::<Vec<_>>(),
        "skipped": plan.skipped.iter().map(|(id, why)| json!({"check": id, "reason": why})).collect::<Vec<_>>(),
        "not_started": out.not_started.iter().map(|n| json!({"path": n.path, "checks": n.checks})).collect::<Vec<_>>(),
        "error": out.stopped.as_ref().map(|s| json!({
            "message": stopped_message(out, s), "cause": s.error.to_string(),
            "path": s.path, "checks": s.checks, "txn": s.txn, "exit_code": s.error.exit_code(),
        })),
        "critical": out.critical,
        "notes": out.notes,
        // Restarts the transactions asked of the kubelet: one per gated change, one more per
        // rollback.
        "restarts": out.attempts.iter().filter(|t| !t.gate["skipped"].as_bool().unwrap_or(false)).map(|t| match t.report.status {
            crate::engine::txn::TxnStatus::Noop => 0,
            crate::engine::txn::TxnStatus::Committed => 1,
            _ => 2,
        }).sum::<usize>(),
        "exit_code": out.exit_code(),
    })
}

/// The text of a run: one line per transaction with its id, then one line per check.
pub fn report_text(out: &remediate::Outcome, plan: &Plan) -> String {
    let mut text = String::new();
    for t in &out.attempts {
        let txn = t
            .report
            .txn
            .map_or_else(|| "-".to_string(), |n| n.to_string());
        text.push_str(&format!(
            "transaction {txn} {} {}: {} ({})\n",
            t.report.status.as_str(),
            t.path,
            t.checks.join(" "),
            if t.report.reason.is_empty() {
                t.flags.join(" ")
            } else {
                t.report.reason.clone()
            }
        ));
    }
    if out.attempts.is_empty() {
        text.push_str("no transaction ran\n");
    }
    for id in planned_ids(plan) {
        let f = out.fate(id);
        let what = match &f {
            CheckFate::Committed(t) => format!("committed in transaction {t}"),
            CheckFate::Unchanged => "already so; nothing written".into(),
            CheckFate::RolledBack(t, why) => format!(
                "rolled back (transaction {}): {why}",
                t.map_or_else(|| "-".into(), |n| n.to_string())
            ),
            CheckFate::RollbackFailed(t) => format!(
                "CRITICAL: rollback failed (transaction {})",
                t.map_or_else(|| "-".into(), |n| n.to_string())
            ),
            CheckFate::Failed(None, why) => format!("failed, nothing written: {why}"),
            CheckFate::Failed(Some(t), why) => format!("failed in transaction {t}: {why}"),
            CheckFate::NotStarted => "not started (the run stopped before it)".into(),
            CheckFate::NotApplied => "not applied (see the notes)".into(),
        };
        text.push_str(&format!("{id:<8} {what}\n"));
    }
    for (id, why) in &plan.skipped {
        text.push_str(&format!("{id:<8} skipped: {why}\n"));
    }
    for n in &out.notes {
        text.push_str(&format!("note: {n}\n"));
    }
    if let Some(s) = &out.stopped {
        text.push_str(&format!("error: {}\n", stopped_message(out, s)));
    }
    text
}

/// What a chmod/chown fix would change on `path`, as `diff` shows it (`mode: 0644 -> 0600`);
/// nothing when it is already so, or the file cannot be looked at.
fn file_fix_preview(ctx: &Ctx, path: &Path, fix: &[cis::Remediation]) -> Vec<String> {
    let Ok(m) = ctx.fs.metadata(path) else {
        return Vec::new();
    };
    let before = crate::journal::record::FileState {
        hash: [0; 32],
        size: 0,
        mode: m.mode,
        uid: m.uid,
        gid: m.gid,
    };
    let mut after = before;
    for f in fix {
        match f {
            cis::Remediation::Chmod { mode } => after.mode &= mode,
            cis::Remediation::Chown { owner } => {
                if let Ok((u, g)) = remediate::owner_ids(owner) {
                    (after.uid, after.gid) = (u, g);
                }
            }
            _ => {}
        }
    }
    super::versions::meta_change(&before, &after).0
}
