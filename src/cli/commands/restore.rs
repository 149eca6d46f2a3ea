//! `restore`: point-in-time restore of a version, as a journaled transaction.

use super::gated;
use super::txn_output::{exit_code, outcome, summary, txn_json};
use super::versions::{content, meta_change, parse_at, parse_version_number, select};
use crate::cli::args::GateArgs;
use crate::cli::context::{stop_on_conflict, Ctx};
use crate::cli::output::{unified_diff, Outcome};
use crate::engine::observe::read_file;
use crate::engine::txn::{Change, TxnReport, TxnStatus};
use crate::error::{Error, Result};
use crate::journal::record::TxnKind;
use serde_json::json;
use std::path::Path;

pub struct RestoreArgs<'a> {
    pub manifest: &'a str,
    pub version: Option<&'a str>,
    pub at: Option<&'a str>,
    pub reason: &'a str,
    pub dry_run: bool,
    pub gate: &'a GateArgs,
}

pub fn restore(ctx: &Ctx, a: RestoreArgs) -> Result<Outcome> {
    // Bad input is refused before the state is even opened: nothing may change.
    if let Some(v) = a.version {
        parse_version_number(v)?;
    }
    if let Some(t) = a.at {
        parse_at(t)?;
    }
    let path = ctx.manifest_path(a.manifest)?;
    let key = path.to_string_lossy().into_owned();
    if a.dry_run {
        return dry_run(ctx, &a, &path, &key);
    }
    let gate = gated::build(a.gate, None)?;
    let mut locked = ctx.open_mutating()?;
    stop_on_conflict(&locked.report)?;
    let engine = &mut locked.engine;
    let row = select(&engine.catalog, &key, a.version, a.at)?;
    let target = content(&engine.catalog, &engine.store, &row)?;
    let observed = engine.observe(&path)?;
    let reason = reason_for(&a, row.version);
    let before = observed.state;
    let change = Change {
        observed,
        after_bytes: target,
        after_meta: Some((row.state.mode, row.state.uid, row.state.gid)),
    };
    let gated::Gated {
        report,
        gate,
        summary: gate_summary,
    } = gated::transact(engine, TxnKind::Restore, &reason, vec![change], gate)?;
    let after = report.files.first().map_or(before, |f| f.after);
    let entry = txn_json(
        &report,
        report.status.as_str(),
        &key,
        (&before, &after),
        &[],
        gate,
        &reason,
    );
    let mut entry = entry;
    entry["metadata"] = meta_change(&before, &row.state).1;
    let mut text = summary(&report, &key) + &gate_summary;
    // A restore puts the version's mode and owner back too: say so, a chmod undone is a change.
    if report.status != TxnStatus::Noop {
        let (lines, _) = meta_change(&before, &row.state);
        let verb = if report.status == TxnStatus::Committed {
            "restored"
        } else {
            "not restored"
        };
        for l in lines {
            text.push_str(&format!("{key}: {l} ({verb})\n"));
        }
    }
    Ok(outcome(vec![entry], text, exit_code(report.status)))
}

fn reason_for(a: &RestoreArgs, version: u64) -> String {
    if a.reason.is_empty() {
        format!("restore version {version}")
    } else {
        a.reason.to_string()
    }
}

/// What a restore would do, from a read-only view: no lock, no recovery, nothing recorded.
fn dry_run(ctx: &Ctx, a: &RestoreArgs, path: &Path, key: &str) -> Result<Outcome> {
    let view = ctx
        .open_read_only()?
        .ok_or_else(|| Error::usage(format!("{key}: no version recorded (no state yet)")))?;
    let row = select(view.unrecovered.catalog(), key, a.version, a.at)?;
    let target = content(view.unrecovered.catalog(), view.unrecovered.store(), &row)?;
    let (current, before, _) = read_file(ctx.fs.as_ref(), path)?;
    let after = row.state;
    let diff = unified_diff(
        &current,
        &target,
        &format!("{key} (on disk)"),
        &format!("{key}@v{}", row.version),
    );
    let report = TxnReport {
        txn: None,
        status: TxnStatus::Noop,
        files: Vec::new(),
        reason: String::new(),
    };
    let status = if before == after { "noop" } else { "dry_run" };
    let (lines, meta) = meta_change(&before, &after);
    let mut text: String = lines.iter().map(|l| format!("{key}: {l}\n")).collect();
    text.push_str(&diff);
    if before == after {
        text.push_str(&format!(
            "{key}: already as version {}; nothing to do\n",
            row.version
        ));
    }
    let entry = txn_json(
        &report,
        status,
        key,
        (&before, &after),
        &[],
        json!({"skipped": true, "reason": "--dry-run"}),
        &reason_for(a, row.version),
    );
    let mut entry = entry;
    entry["metadata"] = meta;
    Ok(outcome(vec![entry], text, 0))
}
