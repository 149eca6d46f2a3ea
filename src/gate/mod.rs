//! The health gate: after a manifest is written, prove that the kubelet restarted the component
//! with the new argv (not that the old process still answers), that its probes succeed steadily
//! as the kubelet would judge them, and that the running argv is the intended one. Any failure
//! is a reason to roll back. Before the write, the component's health is probed
//! ([`preflight`]): a rollback is held only to the health the component had. docs/gate.md
//! describes the phases, the timeouts and the signals.

pub mod check;
pub mod preflight;
pub mod probe;
pub mod procs;
pub mod progress;
pub mod report;
pub mod stability;

use crate::engine::txn::{Gate, GateTarget};
use crate::manifest;
use crate::signals::{self, Phase};
use check::{Before, Check};
use probe::{Prober, TlsOptions};
pub use report::{summary_line, GateReport, HealthBefore};
use serde_json::{json, Value};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartCheck {
    Auto,
    Proc,
    None,
}

#[derive(Debug, Clone)]
pub struct GateConfig {
    /// Bounds the change: restart + every probe succeeding (`--health-timeout`).
    pub timeout: Duration,
    /// Bounds the confirmation of a rollback (`--rollback-timeout`).
    pub rollback_timeout: Duration,
    pub probe_urls: Vec<String>,
    pub restart_check: RestartCheck,
    pub tls: TlsOptions,
    pub container: Option<String>,
}

/// The default of `--rollback-timeout`: the previous content was running before the change,
/// so it is given as long to come back as a change gets by default.
pub const DEFAULT_ROLLBACK_TIMEOUT: Duration = Duration::from_secs(120);

pub struct HealthGate {
    cfg: GateConfig,
    prober: Prober,
    before: Vec<Before>,
    /// Per component, what [`HealthGate::preflight`] found.
    health_before: Mutex<Vec<(String, HealthBefore)>>,
    /// One report per checked manifest per check, in order ("change", then "rollback").
    pub reports: Vec<GateReport>,
    failed_once: bool,
    /// Some process of the component was seen in /proc at a write: this PID namespace shows
    /// them (so a rollback after a crash loop, with nothing running, still checks the restart).
    proc_visible: bool,
}

/// A warning on stderr; an unwritable stderr is not an error.
fn warn(msg: &str) {
    crate::cli::output::say(format_args!("warning: {msg}"));
}

impl HealthGate {
    pub fn new(cfg: GateConfig) -> Result<HealthGate, String> {
        probe::from_urls(&cfg.probe_urls)?;
        Ok(HealthGate {
            prober: Prober::new(&cfg.tls)?,
            cfg,
            before: Vec::new(),
            health_before: Mutex::new(Vec::new()),
            reports: Vec::new(),
            failed_once: false,
            proc_visible: false,
        })
    }

    /// The `gate` object of the transaction JSON.
    pub fn json(&self) -> Value {
        json!({ "checks": self.reports })
    }

    /// One line per check of the change and of a rollback (text output after the command).
    pub fn summary(&self) -> String {
        self.reports
            .iter()
            .map(|r| format!("gate: {}\n", summary_line(r)))
            .collect()
    }
}

impl Gate for HealthGate {
    fn before_write(&mut self, targets: &[GateTarget]) {
        signals::set_phase(if self.failed_once {
            Phase::WritingBack
        } else {
            Phase::Writing
        });
        signals::set_subject(
            targets
                .iter()
                .map(|t| t.path)
                .collect::<Vec<_>>()
                .join(", "),
        );
        self.before.clear();
        for t in targets {
            // Everything running the component's program now is "old": usually the previous
            // argv, but after a recovery the kubelet may still run a reverted change's argv.
            let mut old_pids: Vec<i32> = Vec::new();
            for bytes in [t.previous, t.bytes] {
                if let Ok(c) = manifest::container_argv(bytes, self.cfg.container.as_deref()) {
                    old_pids.extend(procs::find_same_component(&c.argv()).iter().map(|p| p.pid));
                }
            }
            old_pids.sort_unstable();
            old_pids.dedup();
            // A process already running exactly the content being written (replay of a change
            // the kubelet already picked up) is the result, not the old process.
            let current: Vec<i32> =
                manifest::container_argv(t.bytes, self.cfg.container.as_deref())
                    .map(|c| {
                        procs::find_by_argv(&c.argv())
                            .iter()
                            .map(|p| p.pid)
                            .collect()
                    })
                    .unwrap_or_default();
            old_pids.retain(|p| !current.contains(p));
            self.proc_visible |= !old_pids.is_empty() || !current.is_empty();
            self.before.push(Before {
                path: t.path.to_string(),
                write_at: procs::boot_now(),
                written: Instant::now(),
                old_pids,
                current,
            });
        }
    }

    fn check(&mut self, targets: &[GateTarget]) -> Result<(), String> {
        let rollback = self.failed_once;
        // A second signal during the write: the write is done now; exit, leaving it to recovery.
        signals::exit_if_requested(if rollback {
            "the previous content is back on disk, not yet confirmed"
        } else {
            "the new content is on disk, not yet checked"
        });
        signals::set_phase(if rollback {
            Phase::Confirm
        } else {
            Phase::Gate
        });
        let result = self.check_all(targets, rollback);
        signals::set_phase(Phase::Recording);
        result
    }

    fn summary(&self) -> Option<String> {
        let lines: Vec<String> = self.reports.iter().map(summary_line).collect();
        (!lines.is_empty()).then(|| lines.join("\n"))
    }
}

impl HealthGate {
    fn check_all(&mut self, targets: &[GateTarget], rollback: bool) -> Result<(), String> {
        for t in targets {
            // Files that are not pods (a policy file of a multi-file change) have no process.
            let Ok(c) = manifest::container_argv(t.bytes, self.cfg.container.as_deref()) else {
                continue;
            };
            let mut report = GateReport {
                phase: if rollback { "rollback" } else { "change" }.into(),
                path: t.path.to_string(),
                component: c.name.clone(),
                health_before: self.health_before(&c.name),
                ..GateReport::default()
            };
            let result = self.check_one(&c, t.path, rollback, &mut report);
            if let Err(why) = &result {
                report.reason = Some(why.clone());
                self.failed_once = true;
            }
            if report.result.is_empty() {
                report.result = if result.is_ok() { "healthy" } else { "failed" }.into();
            }
            self.reports.push(report);
            result?;
        }
        Ok(())
    }

    /// Judge one component. A rollback to a component that was not healthy before the change
    /// is not required to be healthy: the previous content is back, as it was.
    fn check_one(
        &self,
        c: &manifest::ContainerArgv,
        path: &str,
        rollback: bool,
        report: &mut GateReport,
    ) -> Result<(), String> {
        let before = self.before.iter().find(|b| b.path == path);
        let down_before = report.health_before.as_ref().is_some_and(|h| !h.healthy);
        let timeout = if rollback {
            self.cfg.rollback_timeout
        } else {
            self.cfg.timeout
        };
        if rollback && down_before {
            report.timeout_s = timeout.as_secs();
            report.result = "not_required".into();
            report.reason = Some(format!(
                "{} was not healthy before the change either ({})",
                c.name,
                report
                    .health_before
                    .as_ref()
                    .map_or("", |h| h.detail.as_str())
            ));
            return Ok(());
        }
        let check = Check::new(self, c, before, timeout, !rollback, down_before);
        let result = check.run(report);
        match (&result, down_before) {
            (Err(why), true) if !report.interrupted => {
                Err(format!(
                "{why}; {} was not healthy before the change either ({}), so the rollback only \
                 puts the previous content back",
                c.name,
                report.health_before.as_ref().map_or("", |h| h.detail.as_str())
            ))
            }
            _ => result,
        }
    }
}
