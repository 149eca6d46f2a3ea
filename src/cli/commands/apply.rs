//! `apply [-f FILE] [--dry-run] [GATE]`: converge the node to the hardening file
//! (`src/hardening/converge.rs`). The JSON is a contract for automation (Ansible's
//! `changed_when`/`failed_when`): `changed`, and one entry per component.

use super::gated;
use super::remediate as remediate_cmd;
use crate::cli::args::GateArgs;
use crate::cli::context::{absolute, stop_on_conflict, Ctx};
use crate::cli::output::{unified_diff, Outcome};
use crate::engine::txn::TxnStatus;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::hardening::converge::{self, Planned, Target};
use crate::hardening::{file, Hardening};
use crate::remediate::{self, build, GateWithJson};
use serde_json::{json, Value};
use std::path::Path;

pub struct ApplyArgs<'a> {
    pub file: Option<&'a Path>,
    pub dry_run: bool,
    pub gate: &'a GateArgs,
}

/// The file `apply` converges to: `-f`, else the default path, else the built-in defaults.
pub fn hardening_for_apply(explicit: Option<&Path>) -> Result<Hardening> {
    match file::resolve(explicit)? {
        Some(h) => Ok(h),
        None => {
            crate::cli::output::say(format_args!(
                "no hardening file at {}; applying the defaults (every automated \
                 check except the risky ones). 'kubeharden hardening init' writes the file",
                file::default_path().display()
            ));
            Ok(Hardening::defaults())
        }
    }
}

/// The hardening file's path, `null` for the built-in defaults.
pub fn file_json(h: &Hardening) -> Value {
    if h.path.as_os_str().is_empty() {
        Value::Null
    } else {
        json!(h.path.display().to_string())
    }
}

/// Gate factory for the batches: a fresh gate per attempt.
pub fn gate_factory(args: &GateArgs) -> impl Fn() -> Result<Option<Box<dyn GateWithJson>>> {
    let args = args.clone();
    move || Ok(gated::build(&args, None)?.map(|g| Box::new(g) as Box<dyn GateWithJson>))
}

pub fn apply(ctx: &Ctx, a: ApplyArgs) -> Result<Outcome> {
    let h = hardening_for_apply(a.file)?;
    let make_gate = gate_factory(a.gate);
    let t = Target {
        manifests_dir: ctx.manifests_dir()?,
        kubernetes_dir: absolute(&ctx.global.kubernetes_dir)?,
        gate: &make_gate,
    };
    if a.dry_run {
        let p = converge::plan(&h, &t)?;
        return dry_run(&h, &t, &p);
    }
    // Bad gate options and a bad file are refused before anything is touched.
    gated::build(a.gate, None)?;
    let mut locked = ctx.open_mutating()?;
    stop_on_conflict(&locked.report)?;
    let r = converge_locked(&mut locked.engine, &h, &t)?;
    drop(locked);
    Ok(Outcome::new(r.json, r.text).with_code(r.code))
}

/// One run's rendered result.
pub struct Converged {
    pub json: Value,
    pub text: String,
    pub code: i32,
    pub changed: bool,
}

/// Plan and run under the lock the caller holds (`apply`, and `kubeadm` after kubeadm ran).
pub fn converge_locked(engine: &mut Engine, h: &Hardening, t: &Target) -> Result<Converged> {
    let p = converge::plan(h, t)?;
    for w in &p.plan.warnings {
        crate::cli::output::say(format_args!("warning: {w}"));
    }
    for w in p.policy.expired() {
        crate::cli::output::say(format_args!(
            "warning: the waiver of {} expired on {}; the check is enforced again",
            w.check,
            w.expires.as_deref().unwrap_or("")
        ));
    }
    let out = if p.nothing_to_do() {
        remediate::Outcome::default()
    } else {
        converge::run(engine, h, t, &p)
    };
    let (after, _) = converge::audit(h, &t.manifests_dir, &t.kubernetes_dir)?;
    let still_failing: Vec<&str> = after
        .results
        .iter()
        .filter(|r| r.status == crate::cis::Status::Fail)
        .map(|r| r.check.id)
        .collect();
    Ok(render(h, &p, &out, &still_failing, &t.manifests_dir))
}

fn component_status(attempts: &[&remediate::Attempt]) -> &'static str {
    let has = |s: TxnStatus| attempts.iter().any(|a| a.report.status == s);
    if has(TxnStatus::RollbackFailed) {
        "rollback_failed"
    } else if has(TxnStatus::Committed) && has(TxnStatus::RolledBack) {
        "partial"
    } else if has(TxnStatus::Committed) {
        "committed"
    } else if has(TxnStatus::RolledBack) {
        "rolled_back"
    } else {
        "unchanged"
    }
}

/// One entry per control-plane component whose manifest exists (planned or not), in apply
/// order, so automation can read every component's result.
fn components_json(p: &Planned, out: &remediate::Outcome, manifests_dir: &Path) -> Vec<Value> {
    let mut v = Vec::new();
    for c in converge::ORDER {
        let batch = p.plan.batches.iter().find(|(bc, _, _)| *bc == c);
        let path = match batch {
            Some((_, path, _)) => path.clone(),
            None => crate::cis::source::manifest_path(manifests_dir, c),
        };
        if batch.is_none() && !path.exists() {
            continue;
        }
        let path_s = path.to_string_lossy().into_owned();
        let mine: Vec<&remediate::Attempt> =
            out.attempts.iter().filter(|a| a.path == path_s).collect();
        let ids: Vec<&str> = batch.map_or_else(Vec::new, |(_, _, items)| {
            items.iter().map(|i| i.id).collect()
        });
        let committed: Vec<&str> = mine
            .iter()
            .filter(|a| a.report.status == TxnStatus::Committed)
            .flat_map(|a| a.checks.iter().copied())
            .collect();
        let rolled: Vec<Value> = out
            .rolled_back
            .iter()
            .filter(|(id, _)| ids.contains(id))
            .map(|(id, why)| json!({"check": id, "reason": why}))
            .collect();
        v.push(json!({
            "component": c.binary(),
            "path": path_s,
            "status": component_status(&mine),
            "changed": !committed.is_empty(),
            "planned": ids,
            "applied": committed,
            "rolled_back": rolled,
            "flags": mine.iter().filter(|a| a.report.status == TxnStatus::Committed).flat_map(|a| a.flags.iter().cloned()).collect::<Vec<_>>(),
            "txns": mine.iter().filter_map(|a| a.report.txn).collect::<Vec<_>>(),
            "restarts": restarts(&mine),
        }));
    }
    v
}

/// Restarts the transactions asked of the kubelet: one per gated change, one more per
/// rollback (as remediate counts them).
fn restarts(attempts: &[&remediate::Attempt]) -> usize {
    attempts
        .iter()
        .filter(|t| !t.gate["skipped"].as_bool().unwrap_or(false))
        .map(|t| match t.report.status {
            TxnStatus::Noop => 0,
            TxnStatus::Committed => 1,
            _ => 2,
        })
        .sum()
}

fn render(
    h: &Hardening,
    p: &Planned,
    out: &remediate::Outcome,
    still: &[&str],
    manifests_dir: &Path,
) -> Converged {
    let changed = converge::changed(out);
    let code = out.exit_code();
    let mut text = String::new();
    if !changed && out.rolled_back.is_empty() && out.critical.is_none() && out.stopped.is_none() {
        text.push_str(if still.is_empty() {
            "nothing to do: the node matches the hardening file\n"
        } else {
            "nothing to do that kubeharden can do (see the notes)\n"
        });
    }
    if !p.nothing_to_do() {
        text.push_str(&remediate_cmd::report_text(out, &p.plan));
    }
    if !still.is_empty() {
        text.push_str(&format!("still failing: {}\n", still.join(" ")));
    }
    if let Some(c) = &out.critical {
        crate::cli::output::say(c);
    }
    if let Some(s) = &out.stopped {
        crate::cli::output::say(remediate_cmd::stopped_message(out, s));
    }
    text.push_str(&format!("changed: {changed}\n"));
    let all: Vec<&remediate::Attempt> = out.attempts.iter().collect();
    let mut json = remediate_cmd::report_json(out, &p.plan);
    json["changed"] = json!(changed);
    json["dry_run"] = json!(false);
    json["file"] = file_json(h);
    json["benchmark"] = json!(p.audit.benchmark.name());
    json["components"] = json!(components_json(p, out, manifests_dir));
    json["hardening"] = p.policy.json();
    json["still_failing"] = json!(still);
    json["restarts"] = json!(restarts(&all));
    Converged {
        json,
        text,
        code,
        changed,
    }
}

fn dry_run(h: &Hardening, t: &Target, p: &Planned) -> Result<Outcome> {
    let mut text = String::new();
    let mut comps = Vec::new();
    if p.nothing_to_do() {
        text.push_str("nothing to do: the node matches the hardening file\n");
    }
    for (component, path, items) in &p.plan.batches {
        let bytes =
            std::fs::read(path).map_err(|e| Error::usage(format!("{}: {e}", path.display())))?;
        let fixes: Vec<_> = items.iter().flat_map(|i| i.fix.iter().copied()).collect();
        let provided = |k| {
            h.files
                .iter()
                .find(|(pk, _)| *pk == k)
                .map(|(_, p)| p.clone())
        };
        let built = build::build_with(
            &bytes,
            *component,
            &fixes,
            &t.kubernetes_dir,
            &|p: &Path| p.exists(),
            &provided,
        )
        .map_err(|e| Error::usage(format!("{}: {e}", path.display())))?;
        let ids: Vec<&str> = items.iter().map(|i| i.id).collect();
        text.push_str(&format!(
            "# {}: {} (one restart)\n",
            component.binary(),
            ids.join(" ")
        ));
        text.push_str(&unified_diff(
            &bytes,
            &built.manifest,
            &path.display().to_string(),
            &format!("{} (after apply)", path.display()),
        ));
        comps.push(json!({
            "component": component.binary(), "path": path.display().to_string(),
            "status": "dry_run", "changed": built.manifest != bytes, "planned": ids,
            "flags": built.flags,
            "creates": built.files.iter().map(|f| f.path.display().to_string()).collect::<Vec<_>>(),
        }));
    }
    for i in &p.plan.file_items {
        text.push_str(&format!("# {}: chmod/chown {:?}\n", i.id, i.targets));
    }
    let changed =
        comps.iter().any(|c| c["changed"] == json!(true)) || !p.plan.file_items.is_empty();
    let json = json!({
        "changed": changed,
        "dry_run": true,
        "file": file_json(h),
        "benchmark": p.audit.benchmark.name(),
        "components": comps,
        "file_checks": p.plan.file_items.iter().map(|i| i.id).collect::<Vec<_>>(),
        "skipped": p.plan.skipped.iter().map(|(id, why)| json!({"check": id, "reason": why})).collect::<Vec<_>>(),
        "hardening": p.policy.json(),
    });
    Ok(Outcome::new(json, text))
}
