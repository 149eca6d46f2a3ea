//! `log`: the transaction log, read from the catalog (which is rebuilt from the journal): every
//! transaction with its kind, reason, files, status and what its gate decided; `--txn N` one of
//! them with the diff of each file.

use super::versions::meta_change;
use crate::catalog::{Catalog, TxnFile, TxnRow};
use crate::cli::context::Ctx;
use crate::cli::output::{unified_diff, Outcome};
use crate::cli::time::fmt_time;
use crate::error::{Error, Result};
use crate::journal::record::{hash_hex, FileState};
use crate::store::ObjectStore;
use serde_json::{json, Value};

pub fn log(ctx: &Ctx, manifest: Option<&str>, txn: Option<&str>) -> Result<Outcome> {
    let id = txn.map(parse_txn).transpose()?;
    let path = manifest.map(|m| ctx.manifest_path(m)).transpose()?;
    let key = path.as_ref().map(|p| p.to_string_lossy().into_owned());
    let Some(view) = ctx.open_read_only()? else {
        return match id {
            Some(n) => Err(no_such_txn(n)),
            None => Ok(Outcome::new(
                json!({"transactions": []}),
                "no transactions recorded\n",
            )),
        };
    };
    let catalog = view.unrecovered.catalog();
    if let Some(n) = id {
        let t = catalog.txn(n)?.ok_or_else(|| no_such_txn(n))?;
        return one(catalog, view.unrecovered.store(), &t);
    }
    let mut entries = Vec::new();
    let mut text = String::new();
    for t in catalog.txns(key.as_deref())? {
        let files = catalog.txn_files(t.txn)?;
        let seen = catalog.txn_gate(t.txn)?;
        text.push_str(&block(&t, &files, seen.as_deref()));
        entries.push(txn_json(&t, &files, seen.as_deref()));
    }
    if entries.is_empty() {
        text.push_str(if key.is_some() {
            "no transaction touched this file\n"
        } else {
            "no transactions recorded\n"
        });
    }
    Ok(Outcome::new(json!({ "transactions": entries }), text))
}

fn parse_txn(s: &str) -> Result<u64> {
    s.trim()
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            Error::usage(format!(
                "--txn {s:?}: a transaction id is a number from 1 (see 'kubeharden log')"
            ))
        })
}

fn no_such_txn(n: u64) -> Error {
    Error::usage(format!(
        "no transaction {n} (see 'kubeharden log' for the recorded ones)"
    ))
}

/// What the journal says the gate (or recovery) decided, in one line. The journal keeps the
/// outcome and its reason, and when the write and the end were. A gate never passes before its
/// stability window has elapsed, so a commit sooner than that after the write was not gated
/// (`--no-health-gate`, or a change with no component to watch).
pub fn gate_summary(t: &TxnRow) -> String {
    let after_write = t.applied_at.zip(t.ended_at).map(|(a, e)| e - a);
    let detail = t.detail.as_deref().unwrap_or("");
    let window = crate::gate::stability::MIN_SPAN.as_millis() as i64;
    match t.status.as_str() {
        "committed" => match after_write {
            Some(ms) if ms >= window => format!(
                "passed; committed {} after the write (restart, probes, stable)",
                secs(ms)
            ),
            Some(ms) => format!("not gated; committed {} after the write", secs(ms)),
            None => "committed".to_string(),
        },
        "rolled_back" => format!("failed: {detail}; the before content was written back"),
        "rollback_failed" => format!("CRITICAL: the rollback failed: {detail}"),
        "aborted" => "not applied; recovery aborted it (the file was never changed)".to_string(),
        "reverted" => "interrupted; recovery wrote the before content back".to_string(),
        "conflict" => format!(
            "conflict: changed by someone else meanwhile ({}); recovery touched nothing",
            detail.replace('\n', ", ")
        ),
        "open" => "incomplete; the next kubeharden command (or 'kubeharden recover') resolves it"
            .to_string(),
        other => other.to_string(),
    }
}

/// Milliseconds as seconds with one decimal (`12.3 s`), or `850 ms` below one second.
fn secs(ms: i64) -> String {
    if ms.abs() < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

fn state_json(s: &FileState) -> Value {
    json!({
        "hash": hash_hex(&s.hash), "size": s.size, "mode": s.mode & 0o7777,
        "uid": s.uid, "gid": s.gid, "absent": s.is_absent(),
    })
}

fn txn_json(t: &TxnRow, files: &[TxnFile], seen: Option<&str>) -> Value {
    json!({
        "txn": t.txn,
        "kind": t.kind,
        "reason": t.reason,
        "status": t.status,
        "started_at": fmt_time(t.started_at),
        "applied_at": t.applied_at.map(fmt_time),
        "ended_at": t.ended_at.map(fmt_time),
        "paths": files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
        "gate": {
            "summary": gate_summary(t),
            // One line per check the gate ran (GATE record), as the command printed them.
            "checks": seen.map(|s| s.lines().collect::<Vec<_>>()).unwrap_or_default(),
            "detail": t.detail,
            "ms_after_write": t.applied_at.zip(t.ended_at).map(|(a, e)| e - a),
        },
    })
}

/// One transaction as a block of the text log: what the gate saw (when it ran), then the
/// outcome.
fn block(t: &TxnRow, files: &[TxnFile], seen: Option<&str>) -> String {
    let mut s = format!(
        "transaction {}  {}  {}  {}\n",
        t.txn,
        t.status,
        t.kind,
        fmt_time(t.started_at)
    );
    if !t.reason.is_empty() {
        s.push_str(&format!("  reason: {}\n", t.reason));
    }
    for f in files {
        s.push_str(&format!("  file:   {}\n", f.path));
    }
    for line in seen.into_iter().flat_map(str::lines) {
        s.push_str(&format!("  gate:   {line}\n"));
    }
    s.push_str(&format!("  result: {}\n\n", gate_summary(t)));
    s
}

/// A file's content at one side of a transaction; `None` when the store no longer has it
/// (pruned), with the reason.
fn side(
    store: &ObjectStore,
    catalog: &Catalog,
    s: &FileState,
) -> Result<std::result::Result<Vec<u8>, String>> {
    if s.is_absent() {
        return Ok(Ok(Vec::new()));
    }
    if let Some(at) = catalog.pruned_at(&s.hash)? {
        return Ok(Err(format!(
            "content {} was pruned at {} ('kubeharden prune')",
            &hash_hex(&s.hash)[..16],
            fmt_time(at)
        )));
    }
    store.get(&s.hash).map(Ok)
}

/// `log --txn N`: the transaction, each file's metadata change and diff, the gate's result.
fn one(catalog: &Catalog, store: &ObjectStore, t: &TxnRow) -> Result<Outcome> {
    let files = catalog.txn_files(t.txn)?;
    let seen = catalog.txn_gate(t.txn)?;
    let mut text = block(t, &files, seen.as_deref());
    text.pop(); // the blank line that separates blocks
    if let Some(d) = &t.detail {
        text.push_str(&format!("  detail: {}\n", d.replace('\n', "\n          ")));
    }
    let mut json_files = Vec::new();
    for f in &files {
        let (meta_lines, meta) = meta_change(&f.before, &f.after);
        text.push('\n');
        for l in &meta_lines {
            text.push_str(&format!("{}: {l}\n", f.path));
        }
        let before = side(store, catalog, &f.before)?;
        let after = side(store, catalog, &f.after)?;
        let mut entry = json!({
            "path": f.path, "before": state_json(&f.before), "after": state_json(&f.after),
            "metadata": meta,
        });
        match (&before, &after) {
            (Ok(a), Ok(b)) => {
                let diff = unified_diff(
                    a,
                    b,
                    &format!("{} (before txn {})", f.path, t.txn),
                    &format!("{} (after txn {})", f.path, t.txn),
                );
                text.push_str(&diff);
                entry["diff"] = json!(diff);
            }
            _ => {
                for why in [&before, &after]
                    .into_iter()
                    .filter_map(|r| r.as_ref().err())
                {
                    text.push_str(&format!("{}: no diff: {why}\n", f.path));
                }
                entry["diff"] = Value::Null;
            }
        }
        json_files.push(entry);
    }
    let mut json = txn_json(t, &files, seen.as_deref());
    json["files"] = json!(json_files);
    Ok(Outcome::new(json!({ "transaction": json }), text))
}
