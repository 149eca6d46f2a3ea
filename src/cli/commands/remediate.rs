//! `remediate`: apply the fixes of failing CIS checks (see `src/remediate/`).

use super::gated;
use super::txn_output::txn_json;
use crate::cis::{self, AuditOptions, BenchmarkId};
use crate::cli::args::GateArgs;
use crate::cli::context::{absolute, stop_on_conflict, Ctx};
use crate::cli::output::{unified_diff, Outcome};
use crate::error::{Error, Result};
use crate::remediate::{self, build, Env, GateWithJson, Plan};
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
        Some(_) if a.all => (crate::hardening::failing_enforced(report), false),
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
    if a.dry_run {
        let before = audit(ctx, a.benchmark, a.hardening.as_ref())?;
        let (checks, all) = selection(&a, &before);
        let plan = remediate::plan(&before, &checks, all)?;
        for w in &plan.warnings {
            eprintln!("kubeharden: warning: {w}");
        }
        return dry_run(ctx, &plan);
    }
    // Bad gate options and unknown check ids are refused before anything is touched (even
    // recovery): exit 2 means nothing changed.
    gated::build(a.gate, None)?;
    let early = audit(ctx, a.benchmark, a.hardening.as_ref())?;
    let (checks, all) = selection(&a, &early);
    remediate::plan(&early, &checks, all)?;
    // Recover first: the plan must see the manifests as recovery leaves them.
    let mut locked = ctx.open_mutating()?;
    stop_on_conflict(&locked.report)?;
    let before = audit(ctx, a.benchmark, a.hardening.as_ref())?;
    let (checks, all) = selection(&a, &before);
    let plan = remediate::plan(&before, &checks, all)?;
    for w in &plan.warnings {
        eprintln!("kubeharden: warning: {w}");
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
    let engine = &mut locked.engine;
    let mut out = remediate::Outcome::default();
    for (component, path, items) in &plan.batches {
        remediate::apply_batch(engine, &env, *component, path, items, &mut out)?;
    }
    if out.critical.is_none() {
        remediate::apply_file_fixes(engine, &plan.file_items, &mut out)?;
    }
    drop(locked);
    out.applied.sort_unstable();
    out.applied.dedup();

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
    let entries: Vec<_> = out
        .attempts
        .iter()
        .map(|t| {
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
        })
        .collect();
    let mut text = String::new();
    for t in &out.attempts {
        text.push_str(&format!(
            "{} {}: {} ({})\n",
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
    text.push_str(&format!(
        "applied: {}\n",
        if out.applied.is_empty() {
            "none".into()
        } else {
            out.applied.join(" ")
        }
    ));
    for (id, why) in &out.rolled_back {
        text.push_str(&format!("rolled back {id}: {why}\n"));
    }
    for (id, why) in &plan.skipped {
        text.push_str(&format!("skipped {id}: {why}\n"));
    }
    for n in &out.notes {
        text.push_str(&format!("note: {n}\n"));
    }
    if !still_failing.is_empty() {
        text.push_str(&format!(
            "still failing after the change: {}\n",
            still_failing.join(" ")
        ));
    }
    if let Some(c) = &out.critical {
        eprintln!("kubeharden: {c}");
    }
    let code = if out.critical.is_some() {
        4
    } else if out.rolled_back.is_empty() {
        0
    } else {
        3
    };
    let json = json!({
        "benchmark": before.benchmark.name(),
        "transactions": entries,
        "applied": out.applied,
        "rolled_back": out.rolled_back.iter().map(|(id, why)| json!({"check": id, "reason": why})).collect::<Vec<_>>(),
        "skipped": plan.skipped.iter().map(|(id, why)| json!({"check": id, "reason": why})).collect::<Vec<_>>(),
        "notes": out.notes,
        "still_failing": still_failing,
        // Restarts the transactions asked of the kubelet: one per gated change, one more per
        // rollback.
        "restarts": out.attempts.iter().filter(|t| !t.gate["skipped"].as_bool().unwrap_or(false)).map(|t| match t.report.status {
            crate::engine::txn::TxnStatus::Noop => 0,
            crate::engine::txn::TxnStatus::Committed => 1,
            _ => 2,
        }).sum::<usize>(),
    });
    Ok(Outcome::new(json, text).with_code(code))
}
