//! `kubeadm [--kubeadm PATH] [-f FILE] [GATE] -- ARGS…`: run kubeadm (an `upgrade apply`, an
//! `upgrade node`, an `init phase control-plane`…) so the node comes out hardened.
//!
//! Under the state lock for the whole run (no other kubeharden change interleaves):
//! 1. snapshot every manifest (what was there before kubeadm is a version);
//! 2. run kubeadm, its output streamed (to stderr with `-o json`), its exit status kept;
//! 3. record what kubeadm wrote as `external` versions, with a reason naming the command and
//!    its backup dir (`<kubernetes-dir>/tmp/kubeadm-backup-manifests-*`);
//! 4. only if kubeadm succeeded: `apply` re-converges (gated; bisection isolates a flag the new
//!    version refuses, the rest commit);
//! 5. the audit summary under the hardening file.
//!
//! kubeadm failing (having moved its backups back) means nothing is applied; exit 8 with
//! kubeadm's status in the message and JSON.

use super::apply::{self, Converged};
use super::gated;
use crate::cli::args::{GateArgs, OutputFormat};
use crate::cli::context::{absolute, stop_on_conflict, Ctx};
use crate::cli::output::Outcome;
use crate::engine::Engine;
use crate::error::{Error, IoContext, Result};
use crate::failpoint;
use crate::hardening::converge::{self, Target};
use crate::hardening::external::{self, Reason};
use crate::hardening::Hardening;
use crate::journal::record::{hash_hex, Origin};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// Exit code when kubeadm itself failed (nothing applied).
pub const KUBEADM_FAILED: i32 = 8;

pub struct KubeadmArgs<'a> {
    pub kubeadm: Option<&'a Path>,
    pub file: Option<&'a Path>,
    pub args: &'a [String],
    pub gate: &'a GateArgs,
}

fn is_manifest_name(name: &str) -> bool {
    !name.starts_with('.') && [".yaml", ".yml", ".json"].iter().any(|s| name.ends_with(s))
}

/// The regular manifest files in the manifests dir, sorted.
fn manifests(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .ctx(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| is_manifest_name(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    v.sort();
    Ok(v)
}

/// kubeadm's backup dirs under `<kubernetes-dir>/tmp`.
pub fn backup_dirs(kubernetes_dir: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(kubernetes_dir.join("tmp"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("kubeadm-backup-manifests-")
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Record every manifest that differs from its last version; returns (path, version, origin).
fn record_all(engine: &mut Engine, dir: &Path) -> Result<Vec<(String, u64, String, Origin)>> {
    let mut out = Vec::new();
    for p in manifests(dir)? {
        let o = engine.observe(&p)?;
        if let Some(origin) = o.recorded {
            out.push((o.path, o.version, hash_hex(&o.state.hash), origin));
        }
    }
    Ok(out)
}

fn run_kubeadm(bin: &Path, args: &[String], json: bool) -> Result<ExitStatus> {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit());
    if json {
        // stdout carries exactly one JSON document: kubeadm's own output goes to stderr.
        let fd = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .ctx(|| "duplicating stderr".into())?;
        cmd.stdout(Stdio::from(fd));
    } else {
        cmd.stdout(Stdio::inherit());
    }
    cmd.status().map_err(|e| {
        Error::usage(format!(
            "cannot run {}: {e}; nothing was changed (give --kubeadm PATH)",
            bin.display()
        ))
    })
}

fn status_json(s: &ExitStatus) -> Value {
    use std::os::unix::process::ExitStatusExt;
    json!({"exit_code": s.code(), "signal": s.signal(), "success": s.success()})
}

pub fn kubeadm(ctx: &Ctx, a: KubeadmArgs) -> Result<Outcome> {
    if a.args.is_empty() {
        return Err(Error::usage(
            "give kubeadm's arguments after --: kubeharden kubeadm -- upgrade apply v1.34.1 --yes",
        ));
    }
    // A bad hardening file or gate option is refused before kubeadm runs.
    let h = apply::hardening_for_apply(a.file)?;
    gated::build(a.gate, None)?;
    let bin = a
        .kubeadm
        .map_or_else(|| PathBuf::from("kubeadm"), Path::to_path_buf);
    let kd = absolute(&ctx.global.kubernetes_dir)?;
    let md = ctx.manifests_dir()?;
    let mut locked = ctx.open_mutating()?;
    stop_on_conflict(&locked.report)?;
    failpoint::hit("kubeadm.locked");
    let snapshot = record_all(&mut locked.engine, &md)?;
    failpoint::hit("kubeadm.snapshot_taken");
    let before_dirs = backup_dirs(&kd);
    let command = format!("kubeadm {}", a.args.join(" "));
    crate::cli::output::say(format_args!("running {command} (state lock held)"));
    let t_kubeadm = std::time::Instant::now();
    let status = run_kubeadm(&bin, a.args, ctx.global.output == OutputFormat::Json)?;
    let kubeadm_ms = t_kubeadm.elapsed().as_millis() as u64;
    failpoint::hit("kubeadm.ran");
    let new_dirs: Vec<PathBuf> = backup_dirs(&kd).difference(&before_dirs).cloned().collect();
    let reason = format!(
        "{command} ({}; backup dir {})",
        if status.success() {
            "succeeded"
        } else {
            "failed"
        },
        new_dirs
            .last()
            .map_or_else(|| "none".to_string(), |d| d.display().to_string())
    );
    let written = record_all(&mut locked.engine, &md)?;
    let now = crate::engine::now_ms();
    let reasons: Vec<Reason> = written
        .iter()
        .map(|(path, version, hash, _)| Reason {
            path: path.clone(),
            version: *version,
            hash: hash.clone(),
            reason: reason.clone(),
            at_ms: now,
        })
        .collect();
    external::append(&ctx.paths.root, &reasons)?;
    failpoint::hit("kubeadm.recorded");
    let mut j = json!({
        "kubeadm": {
            "command": a.args, "status": status_json(&status), "wall_ms": kubeadm_ms,
            "backup_dirs": new_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
            "snapshot": snapshot.iter().map(|(p, v, _, o)| json!({"path": p, "version": v, "origin": crate::catalog::origin_name(*o)})).collect::<Vec<_>>(),
            "recorded": written.iter().map(|(p, v, hash, o)| json!({"path": p, "version": v, "hash": hash, "origin": crate::catalog::origin_name(*o), "reason": reason})).collect::<Vec<_>>(),
        },
        "apply": null,
    });
    let mut text = format!(
        "kubeadm: {} ({})\nrecorded as external: {}\n",
        if status.success() {
            "succeeded"
        } else {
            "FAILED"
        },
        status,
        if written.is_empty() {
            "nothing (kubeadm changed no manifest)".to_string()
        } else {
            written
                .iter()
                .map(|(p, v, _, _)| format!("{p} v{v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    if !status.success() {
        drop(locked);
        text.push_str("nothing applied: kubeadm failed (its backups are its own business)\n");
        return Ok(Outcome::new(j, text).with_code(KUBEADM_FAILED));
    }
    let make_gate = apply::gate_factory(a.gate);
    let t = Target {
        manifests_dir: md,
        kubernetes_dir: kd,
        gate: &make_gate,
    };
    let t_apply = std::time::Instant::now();
    let c: Converged = apply::converge_locked(&mut locked.engine, &h, &t)?;
    let apply_ms = t_apply.elapsed().as_millis() as u64;
    failpoint::hit("kubeadm.applied");
    drop(locked);
    text.push_str("re-hardening:\n");
    text.push_str(&c.text);
    let (summary_text, summary_json) = audit_summary(&h, &t)?;
    text.push_str(&summary_text);
    j["apply"] = c.json;
    j["apply"]["wall_ms"] = json!(apply_ms);
    j["audit"] = summary_json;
    // As apply: enforced checks kubeharden cannot fix (a directory's owner) are listed in the
    // summary; they do not fail the run.
    Ok(Outcome::new(j, text).with_code(c.code))
}

/// The audit after the run, under the hardening file: counts and the enforced checks failing.
fn audit_summary(h: &Hardening, t: &Target) -> Result<(String, Value)> {
    let (report, applied) = converge::audit(h, &t.manifests_dir, &t.kubernetes_dir)?;
    let s = report.summary();
    let failing: Vec<&str> = report
        .results
        .iter()
        .filter(|r| r.status == crate::cis::Status::Fail)
        .map(|r| r.check.id)
        .collect();
    let text = format!(
        "audit ({}): {} pass, {} fail, {} warn, {} info{}\n",
        report.benchmark.name(),
        s.pass,
        s.fail,
        s.warn,
        s.info,
        if failing.is_empty() {
            String::new()
        } else {
            format!("; failing: {}", failing.join(" "))
        }
    );
    let json = json!({
        "benchmark": report.benchmark.name(),
        "summary": {"pass": s.pass, "fail": s.fail, "warn": s.warn, "info": s.info},
        "failing": failing,
        "hardening": applied.json(),
    });
    Ok((text, json))
}
