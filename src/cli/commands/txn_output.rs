//! The `transactions` JSON shared by set, restore and remediate (cli.md).

use crate::cli::output::Outcome;
use crate::engine::txn::{TxnReport, TxnStatus};
use crate::journal::record::{hash_hex, FileState};
use serde_json::{json, Value};

fn state_json(s: &FileState) -> Value {
    json!({"hash": hash_hex(&s.hash), "size": s.size, "mode": s.mode, "uid": s.uid, "gid": s.gid})
}

/// One entry of `transactions`. `status` overrides the report's (for `dry_run`).
pub fn txn_json(
    report: &TxnReport,
    status: &str,
    path: &str,
    (before, after): (&FileState, &FileState),
    flags: &[String],
    gate: Value,
    txn_reason: &str,
) -> Value {
    json!({
        "txn": report.txn,
        "status": status,
        "path": path,
        "before": hash_hex(&before.hash),
        "after": hash_hex(&after.hash),
        "files": report.files.iter().map(|f| json!({
            "path": f.path, "before": state_json(&f.before), "after": state_json(&f.after)
        })).collect::<Vec<_>>(),
        "flags": flags,
        "gate": gate,
        // Why it was rolled back when it was; else why it was made.
        "reason": if report.reason.is_empty() { txn_reason } else { &report.reason },
    })
}

pub fn exit_code(status: TxnStatus) -> i32 {
    match status {
        TxnStatus::Committed | TxnStatus::Noop => 0,
        TxnStatus::RolledBack => 3,
        TxnStatus::RollbackFailed => 4,
    }
}

/// The text line for a finished transaction.
pub fn summary(report: &TxnReport, path: &str) -> String {
    match report.status {
        TxnStatus::Noop => format!("{path}: already as requested; nothing written (no restart)\n"),
        TxnStatus::Committed => format!(
            "{path}: committed transaction {}\n",
            report.txn.unwrap_or_default()
        ),
        TxnStatus::RolledBack => format!(
            "{path}: transaction {} rolled back: {}\n",
            report.txn.unwrap_or_default(),
            report.reason
        ),
        TxnStatus::RollbackFailed => format!("{path}: CRITICAL: {}\n", report.reason),
    }
}

pub fn outcome(entries: Vec<Value>, text: String, code: i32) -> Outcome {
    Outcome::new(json!({ "transactions": entries }), text).with_code(code)
}
