//! snapshot, recover, status, verify: recording, resolving and checking the state.

use crate::cis::prometheus::{self, StateMetrics};
use crate::cis::AuditOptions;
use crate::cli::args::{OutputFormat, StatusFormat};
use crate::cli::context::{absolute, stop_on_conflict, Ctx};
use crate::cli::output::Outcome;
use crate::cli::time::fmt_time;
use crate::engine::observe::read_file;
use crate::engine::recovery::Policy;
use crate::error::{Error, IoContext, Result};
use crate::fsys::Kind;
use crate::journal::record::hash_hex;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn is_manifest_name(name: &str) -> bool {
    !name.starts_with('.') && [".yaml", ".yml", ".json"].iter().any(|s| name.ends_with(s))
}

/// Every manifest in the manifests dir: regular files named *.yaml, *.yml, *.json.
fn manifests_in_dir(ctx: &Ctx) -> Result<Vec<PathBuf>> {
    let dir = ctx.manifests_dir()?;
    let mut names = ctx
        .fs
        .list_dir(&dir)
        .ctx(|| format!("listing {}", dir.display()))?;
    names.sort();
    Ok(names
        .into_iter()
        .filter(|n| is_manifest_name(n))
        .map(|n| dir.join(n))
        .collect())
}

pub fn snapshot(ctx: &Ctx, manifests: &[String], reason: &str) -> Result<Outcome> {
    let explicit = !manifests.is_empty();
    let paths: Vec<PathBuf> = if explicit {
        manifests
            .iter()
            .map(|m| ctx.manifest_path(m))
            .collect::<Result<_>>()?
    } else {
        manifests_in_dir(ctx)?
    };
    let mut locked = ctx.open_mutating()?;
    stop_on_conflict(&locked.report)?;
    let mut entries = Vec::new();
    let mut text = String::new();
    for p in paths {
        if !explicit {
            // A symlink or directory in the folder is reported, not fatal, for a whole-dir snapshot.
            if let Ok(m) = ctx.fs.metadata(&p) {
                if m.kind != Kind::File {
                    crate::cli::output::say(format_args!(
                        "skipping {} (not a regular file)",
                        p.display()
                    ));
                    continue;
                }
            }
        }
        let o = locked.engine.observe(&p)?;
        let what = o
            .recorded
            .map(crate::catalog::origin_name)
            .unwrap_or("unchanged");
        if o.recorded.is_some() || explicit {
            text.push_str(&format!("{:<9}  v{:<4} {}", what, o.version, o.path));
            // The drift unit's reason lands in the system journal beside the recorded version.
            if o.recorded.is_some() && !reason.is_empty() {
                text.push_str(&format!("  ({reason})"));
            }
            text.push('\n');
        }
        entries.push(json!({
            "path": o.path, "version": o.version, "hash": hash_hex(&o.state.hash),
            "recorded": o.recorded.is_some(), "origin": o.recorded.map(crate::catalog::origin_name),
        }));
    }
    if entries.is_empty() {
        text.push_str("no manifests found\n");
    } else if text.is_empty() {
        // The drift-capture unit runs this on every change of the folder, kubeharden's own
        // writes included: one line, and (tests/unattended.rs) nothing written.
        text.push_str(&format!(
            "nothing new: {} manifests as recorded\n",
            entries.len()
        ));
    }
    let mut doc = json!({ "snapshot": entries });
    if !reason.is_empty() {
        doc["reason"] = json!(reason);
    }
    Ok(Outcome::new(doc, text))
}

pub fn recover(ctx: &Ctx, policy: Policy, gate: &crate::cli::args::GateArgs) -> Result<Outcome> {
    let gate = match policy {
        Policy::Replay => super::gated::build(gate, None)?,
        Policy::Revert => None,
    };
    let locked = ctx.open_mutating_with(policy, gate)?;
    let r = &locked.report;
    let resolved: Vec<Value> = r
        .resolved
        .iter()
        .map(|x| json!({"txn": x.txn, "action": x.action, "paths": x.paths, "note": x.note}))
        .collect();
    let mut text = String::new();
    if r.resolved.is_empty() && r.torn_tail.is_none() && r.temps_removed.is_empty() {
        text.push_str("nothing to recover\n");
    }
    for x in &r.resolved {
        text.push_str(&format!(
            "transaction {}: {} ({})\n",
            x.txn,
            x.action,
            x.paths.join(", ")
        ));
    }
    let json = json!({
        "resolved": resolved,
        "torn_tail": r.torn_tail.map(|t| json!({"segment": t.segment, "offset": t.offset, "dropped": t.dropped, "reason": t.reason})),
        "temps_removed": r.temps_removed.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "gate": locked.gate,
    });
    let code = if r.conflicts().is_empty() { 0 } else { 3 };
    Ok(Outcome::new(json, text).with_code(code))
}

/// `status`; with `exit_code`, exit 1 when a transaction is incomplete or a file drifted.
pub fn status(ctx: &Ctx, exit_code: bool) -> Result<Outcome> {
    let Some(view) = ctx.open_read_only()? else {
        let json = json!({"incomplete": [], "drift": [], "last_txn": null, "store_bytes": 0, "versions": 0});
        return Ok(Outcome::new(json, "no state yet (nothing recorded)\n"));
    };
    let catalog = view.unrecovered.catalog();
    let mut incomplete = Vec::new();
    for t in catalog.open_txns()? {
        let paths: Vec<String> = catalog
            .txn_files(t.txn)?
            .into_iter()
            .map(|f| f.path)
            .collect();
        incomplete.push(json!({"txn": t.txn, "kind": t.kind, "started_at": fmt_time(t.started_at), "paths": paths}));
    }
    let mut known: BTreeSet<String> = catalog.paths()?.into_iter().collect();
    if let Ok(list) = manifests_in_dir(ctx) {
        known.extend(list.into_iter().map(|p| p.to_string_lossy().into_owned()));
    }
    let mut drift = Vec::new();
    for path in &known {
        let last = catalog.last_version(path)?;
        let now = read_file(ctx.fs.as_ref(), std::path::Path::new(path)).ok();
        let state = match (&last, &now) {
            (None, Some(_)) => "untracked",
            (Some(_), None) => "missing",
            (Some(l), Some((_, s, _))) if l.state != *s => "changed",
            _ => continue,
        };
        drift.push(json!({
            "path": path, "state": state,
            "recorded_version": last.as_ref().map(|l| l.version),
            "recorded_hash": last.as_ref().map(|l| hash_hex(&l.state.hash)),
            "current_hash": now.as_ref().map(|(_, s, _)| hash_hex(&s.hash)),
        }));
    }
    // External changes (a kubeadm upgrade, a hand edit) that removed hardening items.
    let extra = crate::hardening::file::resolve(None)
        .ok()
        .flatten()
        .map(|h| h.extra_flag_names())
        .unwrap_or_default();
    let mut removals = Vec::new();
    for path in &known {
        if let Some(r) = crate::hardening::external::last_removal(
            catalog,
            view.unrecovered.store(),
            &ctx.paths.root,
            path,
            &extra,
        )? {
            removals.push(r);
        }
    }
    let last_txn = catalog.last_txn()?.map(|t| {
        json!({"txn": t.txn, "kind": t.kind, "status": t.status, "reason": t.reason,
               "started_at": fmt_time(t.started_at), "ended_at": t.ended_at.map(fmt_time)})
    });
    let store_bytes = catalog.store_bytes()?;
    let versions = catalog.version_count()?;
    let mut text = format!("versions: {versions}\nstore: {store_bytes} bytes\n");
    match &last_txn {
        Some(t) => text.push_str(&format!(
            "last transaction: {} {} {}\n",
            t["txn"],
            t["kind"].as_str().unwrap_or(""),
            t["status"].as_str().unwrap_or("")
        )),
        None => text.push_str("last transaction: none\n"),
    }
    text.push_str(&format!("incomplete transactions: {}\n", incomplete.len()));
    for i in &incomplete {
        text.push_str(&format!("  txn {} ({})\n", i["txn"], i["paths"]));
    }
    text.push_str(&format!("drift: {}\n", drift.len()));
    for d in &drift {
        text.push_str(&format!(
            "  {} {}\n",
            d["state"].as_str().unwrap_or(""),
            d["path"].as_str().unwrap_or("")
        ));
    }
    for r in &removals {
        text.push_str(&format!("{}\n", r.line()));
    }
    if !view.fresh {
        text.push_str("(another kubeharden holds the lock: a transaction may be in progress)\n");
    }
    let json = json!({"incomplete": incomplete, "drift": drift, "last_txn": last_txn, "store_bytes": store_bytes, "versions": versions,
        "external_changes": removals.iter().map(|r| r.json()).collect::<Vec<_>>()});
    let attention = !incomplete.is_empty() || !drift.is_empty();
    Ok(Outcome::new(json, text).with_code(i32::from(exit_code && attention)))
}

/// `status [--format text|json|prometheus] [--textfile DIR]`.
pub fn status_as(
    ctx: &Ctx,
    exit_code: bool,
    format: Option<StatusFormat>,
    textfile: Option<&Path>,
) -> Result<Outcome> {
    let global_json = ctx.global.output == OutputFormat::Json;
    // --exit-code: the status's own code, whatever the form.
    let code = || -> Result<i32> {
        Ok(if exit_code {
            status(ctx, true)?.code
        } else {
            0
        })
    };
    let out = match (format, textfile) {
        (None | Some(StatusFormat::Prometheus), Some(dir)) => {
            super::audit::write_textfile(dir, &node_metrics(ctx)?)
        }
        (Some(f), Some(_)) => Err(Error::usage(format!(
            "--textfile writes Prometheus metrics; it does not go with --format {}",
            if f == StatusFormat::Json {
                "json"
            } else {
                "text"
            }
        ))),
        (Some(StatusFormat::Prometheus), None) if global_json => Err(Error::usage(
            "-o json and --format prometheus disagree; give one of them",
        )),
        (Some(StatusFormat::Prometheus), None) => Ok(Outcome::new(Value::Null, node_metrics(ctx)?)),
        (Some(StatusFormat::Json), None) => {
            let o = status(ctx, exit_code)?;
            let text = format!(
                "{}\n",
                serde_json::to_string_pretty(&o.json).unwrap_or_default()
            );
            return Ok(Outcome::new(o.json, text).with_code(o.code));
        }
        (Some(StatusFormat::Text) | None, None) => return status(ctx, exit_code),
    }?;
    Ok(out.with_code(code()?))
}

/// The Prometheus families of `status` (drift, incomplete transactions, last transaction,
/// expired waivers), from the status document.
pub fn state_metrics(ctx: &Ctx) -> Result<StateMetrics> {
    Ok(StateMetrics::from_status_json(&status(ctx, false)?.json))
}

/// Every family: the audit's checks (default benchmark, all checks) and the state's.
fn node_metrics(ctx: &Ctx) -> Result<String> {
    let mut opts = AuditOptions::new(
        absolute(&ctx.global.manifests_dir)?,
        absolute(&ctx.global.kubernetes_dir)?,
    );
    let mut state = state_metrics(ctx)?;
    // As `audit` reads it: under the default hardening file, when there is one. A broken file
    // does not hide the state families: the audit part says why it is missing.
    let rep = match crate::hardening::for_reading(None) {
        Ok(h) => {
            opts.benchmark = h.as_ref().and_then(|h| h.benchmark);
            crate::cis::run(&opts).map(|mut rep| {
                let applied = crate::hardening::honour(&mut rep, h.as_ref());
                state.waivers_expired = applied.as_ref().map_or(0, |a| a.expired().count());
                rep
            })
        }
        Err(e) => Err(e.to_string()),
    };
    Ok(prometheus::render(
        rep.as_ref().map_err(String::as_str),
        &state,
    ))
}

/// `verify [--repair]`: see `verify.rs`.
pub fn verify(ctx: &Ctx, repair: bool) -> Result<Outcome> {
    super::verify::run(ctx, repair)
}
