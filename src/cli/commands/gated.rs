//! Running a change through the health gate for set, restore (and remediate): gate options to
//! a gate, the transaction, and the `gate` JSON object.

use crate::cli::args::{GateArgs, RestartCheck as RestartArg};
use crate::engine::txn::{Change, Gate, TxnReport, TxnStatus};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::gate::probe::TlsOptions;
use crate::gate::{GateConfig, HealthGate, RestartCheck};
use crate::journal::record::TxnKind;
use serde_json::{json, Value};
use std::time::Duration;

pub fn config(args: &GateArgs, container: Option<&str>) -> GateConfig {
    GateConfig {
        timeout: Duration::from_secs(args.health_timeout),
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
/// refused before anything is written.
pub fn build(args: &GateArgs, container: Option<&str>) -> Result<Option<HealthGate>> {
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
}

/// Run the transaction through the gate. A failed rollback (exit 4) is a report with status
/// `rollback_failed`, so `-o json` still describes the transaction; its reason goes to stderr.
pub fn transact(
    engine: &mut Engine,
    kind: TxnKind,
    reason: &str,
    changes: Vec<Change>,
    mut gate: Option<HealthGate>,
) -> Result<Gated> {
    if let Some(g) = &gate {
        for c in &changes {
            g.preflight(&c.observed.bytes).map_err(Error::usage)?;
        }
    }
    let result = engine.transact(
        kind,
        reason,
        changes,
        gate.as_mut().map(|g| g as &mut dyn Gate),
    );
    let gate_json = match &gate {
        Some(g) => g.json(),
        None => json!({"skipped": true, "reason": "--no-health-gate"}),
    };
    let report = result?;
    if report.status == TxnStatus::RollbackFailed {
        crate::cli::output::say(&report.reason);
    }
    Ok(Gated {
        report,
        gate: gate_json,
    })
}
