//! Running a change through the health gate for set, restore (and remediate): gate options to
//! a gate, the transaction, and the `gate` JSON object.

use crate::cli::args::{GateArgs, RestartCheck as RestartArg};
use crate::engine::txn::{Change, Gate, TxnReport, TxnStatus};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::gate::probe::TlsOptions;
use crate::gate::{GateConfig, HealthGate, RestartCheck};
use crate::journal::record::TxnKind;
use crate::signals::{self, Phase};
use serde_json::{json, Value};
use std::time::Duration;

pub fn config(args: &GateArgs, container: Option<&str>) -> GateConfig {
    GateConfig {
        timeout: Duration::from_secs(args.health_timeout),
        rollback_timeout: Duration::from_secs(args.rollback_timeout),
        probe_urls: args.probe.clone(),
        restart_check: match args.restart_check {
            RestartArg::Auto => RestartCheck::Auto,
            RestartArg::Proc => RestartCheck::Proc,
            RestartArg::None => RestartCheck::None,
        },
        tls: TlsOptions {
            ca: args.probe_ca.clone(),
            cert: args.probe_cert.clone(),
            key: args.probe_key.clone(),
        },
        container: container.map(str::to_string),
    }
}

/// The gate these options ask for; `None` with `--no-health-gate`. Bad probe options are
/// refused before anything is written. After a signal no new gate (no new change) is made.
pub fn build(args: &GateArgs, container: Option<&str>) -> Result<Option<HealthGate>> {
    signals::checkpoint()?;
    if args.no_health_gate {
        return Ok(None);
    }
    HealthGate::new(config(args, container))
        .map(Some)
        .map_err(Error::usage)
}

pub struct Gated {
    pub report: TxnReport,
    pub gate: Value,
    /// One line per gate check ("gate: kube-scheduler (change) healthy: …"), for text output.
    pub summary: String,
}

/// Run the transaction through the gate: the component's health is probed first, then the
/// change is written and judged. A failed rollback (exit 4) is a report with status
/// `rollback_failed`, so `-o json` still describes the transaction; its reason goes to stderr.
/// After a signal, no transaction is started; one that is running is rolled back.
pub fn transact(
    engine: &mut Engine,
    kind: TxnKind,
    reason: &str,
    changes: Vec<Change>,
    mut gate: Option<HealthGate>,
) -> Result<Gated> {
    signals::checkpoint()?;
    if let Some(g) = &gate {
        for c in &changes {
            g.preflight(&c.observed.bytes).map_err(Error::usage)?;
        }
    }
    signals::checkpoint()?;
    signals::set_subject(
        changes
            .iter()
            .map(|c| c.observed.path.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    );
    signals::set_phase(Phase::Writing);
    let result = engine.transact(
        kind,
        reason,
        changes,
        gate.as_mut().map(|g| g as &mut dyn Gate),
    );
    signals::set_phase(Phase::Between);
    let (gate_json, summary) = match &gate {
        Some(g) => (g.json(), g.summary()),
        None => (
            json!({"skipped": true, "reason": "--no-health-gate"}),
            String::new(),
        ),
    };
    let report = result?;
    if report.status == TxnStatus::RollbackFailed {
        crate::cli::output::say(&report.reason);
    }
    if signals::received().is_some() {
        signals::note(interrupted_note(&report, gate.as_ref()));
    }
    Ok(Gated {
        report,
        gate: gate_json,
        summary,
    })
}

/// What became of a transaction a signal came into, for the final message.
fn interrupted_note(report: &TxnReport, gate: Option<&HealthGate>) -> String {
    let txn = report.txn.unwrap_or_default();
    let files = report
        .files
        .iter()
        .map(|f| f.path.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let confirm = gate
        .and_then(|g| g.reports.iter().rfind(|r| r.phase == "rollback"))
        .map(|r| match r.result.as_str() {
            "healthy" => format!(", and {} is healthy again", r.component),
            "not_required" => format!(
                " ({} was not healthy before the change, so its health was not required)",
                r.component
            ),
            _ => format!(", but {} did not come back healthy", r.component),
        })
        .unwrap_or_default();
    match report.status {
        TxnStatus::RolledBack => format!(
            "transaction {txn} was rolled back: the previous content of {files} is back on disk{confirm}"
        ),
        TxnStatus::Committed => format!(
            "transaction {txn} had already passed its gate and was committed ({files})"
        ),
        TxnStatus::Noop => "nothing needed changing".to_string(),
        TxnStatus::RollbackFailed => format!("rolling back transaction {txn} failed (CRITICAL, see above)"),
    }
}
