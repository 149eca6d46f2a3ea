//! `restore`: point-in-time restore of a version, as a journaled transaction.

use super::gated;
use super::txn_output::{exit_code, outcome, summary, txn_json};
use super::versions::{parse_version_number, select};
use crate::cli::args::GateArgs;
use crate::cli::context::{stop_on_conflict, Ctx};
use crate::cli::output::{unified_diff, Outcome};
use crate::cli::time::parse_time;
use crate::engine::txn::{Change, TxnReport, TxnStatus};
use crate::error::Result;
use crate::journal::record::{FileState, TxnKind};
use crate::store::objects::hash_bytes;
use serde_json::json;

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
        parse_time(t)?;
    }
    let gate = if a.dry_run {
        None
    } else {
        gated::build(a.gate, None)?
    };
    let path = ctx.manifest_path(a.manifest)?;
    let key = path.to_string_lossy().into_owned();
    let mut locked = ctx.open_mutating()?;
    stop_on_conflict(&locked.report)?;
    let engine = &mut locked.engine;
    let row = select(&engine.catalog, &key, a.version, a.at)?;
    let target = engine.store.get(&row.state.hash)?;
    let observed = engine.observe(&path)?;
    let reason = if a.reason.is_empty() {
        format!("restore version {}", row.version)
    } else {
        a.reason.to_string()
    };
    let before = observed.state;
    if a.dry_run {
        let after = FileState {
            hash: hash_bytes(&target),
            ..row.state
        };
        let diff = unified_diff(
            &observed.bytes,
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
        let entry = txn_json(
            &report,
            status,
            &key,
            &before,
            &after,
            &[],
            json!({"skipped": true}),
            &reason,
        );
        return Ok(outcome(vec![entry], diff, 0));
    }
    let change = Change {
        observed,
        after_bytes: target,
        after_meta: Some((row.state.mode, row.state.uid, row.state.gid)),
    };
    let gated::Gated { report, gate } =
        gated::transact(engine, TxnKind::Restore, &reason, vec![change], gate)?;
    let after = report.files.first().map_or(before, |f| f.after);
    let entry = txn_json(
        &report,
        report.status.as_str(),
        &key,
        &before,
        &after,
        &[],
        gate,
        &reason,
    );
    let text = summary(&report, &key);
    Ok(outcome(vec![entry], text, exit_code(report.status)))
}
