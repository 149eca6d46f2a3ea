//! The health gate: after a manifest is written, prove that the kubelet restarted the component
//! with the new argv (not that the old process still answers), that its probes succeed steadily
//! as the kubelet would judge them, and that the running argv is the intended one. Any failure
//! is a reason to roll back.

pub mod probe;
pub mod procs;
pub mod progress;
pub mod stability;

use crate::engine::txn::{Gate, GateTarget};
use crate::manifest;
use probe::{ProbeResult, ProbeSpec, Prober, TlsOptions};
use progress::Progress;
use serde_json::{json, Value};
use stability::Stability;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartCheck {
    Auto,
    Proc,
    None,
}

#[derive(Debug, Clone)]
pub struct GateConfig {
    pub timeout: Duration,
    pub probe_urls: Vec<String>,
    pub restart_check: RestartCheck,
    pub tls: TlsOptions,
    pub container: Option<String>,
}

/// What was running before a write.
struct Before {
    path: String,
    write_at: f64,
    written: Instant,
    old_pids: Vec<i32>,
    /// Processes already running the new argv before the write.
    current: Vec<i32>,
}

pub struct HealthGate {
    cfg: GateConfig,
    prober: Prober,
    before: Vec<Before>,
    /// One report per checked manifest per check, in order ("change", then "rollback").
    pub reports: Vec<Value>,
    failed_once: bool,
}

const RESTART_LIMIT: u32 = 3;
/// /proc start times have clock-tick resolution (10 ms).
const START_SLACK: f64 = 0.02;

/// Polling back-off: from 50 ms, growing by half, never more than `cap` — a restart or a first
/// answer is seen within `cap` of when it happens.
fn backoff(step: u32, cap: Duration) -> Duration {
    Duration::from_millis((50.0 * 1.5f64.powi(step.min(10) as i32)) as u64).min(cap)
}

/// How long after the old process is gone a process with the new argv must have appeared.
const NOT_STARTING_GRACE: Duration = Duration::from_secs(15);
const RESTART_POLL_CAP: Duration = Duration::from_millis(200);
const PROBE_POLL_CAP: Duration = Duration::from_millis(500);

impl HealthGate {
    pub fn new(cfg: GateConfig) -> Result<HealthGate, String> {
        probe::from_urls(&cfg.probe_urls)?;
        Ok(HealthGate {
            prober: Prober::new(&cfg.tls)?,
            cfg,
            before: Vec::new(),
            reports: Vec::new(),
            failed_once: false,
        })
    }

    /// Before any change: probe options the user gave (`--probe`, `--probe-ca`, `--probe-cert`)
    /// must work against what runs now — else the rollback's own check could never pass, and a
    /// harmless rollback would end in exit 4. Manifest probes with default TLS need no check.
    pub fn preflight(&self, current: &[u8]) -> Result<(), String> {
        let custom = !self.cfg.probe_urls.is_empty()
            || self.cfg.tls.ca.is_some()
            || self.cfg.tls.cert.is_some();
        if !custom {
            return Ok(());
        }
        let Ok(c) = manifest::container_argv(current, self.cfg.container.as_deref()) else {
            return Ok(());
        };
        let specs = if self.cfg.probe_urls.is_empty() {
            probe::from_container(&c.container)?
        } else {
            probe::from_urls(&self.cfg.probe_urls)?
        };
        for s in &specs {
            let r = self.prober.probe(s, Duration::from_secs(5));
            if !r.ok {
                return Err(format!(
                    "the probe {} fails against the running {} before any change ({}); check \
                     --probe / --probe-ca / --probe-cert, or use --no-health-gate. Nothing was changed",
                    s.describe(),
                    c.name,
                    r.detail
                ));
            }
        }
        Ok(())
    }

    /// The `gate` object of the transaction JSON.
    pub fn json(&self) -> Value {
        json!({ "checks": self.reports })
    }
}

impl Gate for HealthGate {
    fn before_write(&mut self, targets: &[GateTarget]) {
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
        let phase = if self.failed_once {
            "rollback"
        } else {
            "change"
        };
        for t in targets {
            // Files that are not pods (a policy file of a multi-file change) have no process.
            let Ok(c) = manifest::container_argv(t.bytes, self.cfg.container.as_deref()) else {
                continue;
            };
            let before = self.before.iter().find(|b| b.path == t.path);
            let mut report = json!({"phase": phase, "path": t.path, "component": c.name});
            let result = self.check_one(&c, before, &mut report);
            report["result"] = json!(if result.is_ok() { "healthy" } else { "failed" });
            if let Err(why) = &result {
                report["reason"] = json!(why);
                self.failed_once = true;
            }
            self.reports.push(report);
            result?;
        }
        Ok(())
    }
}

impl HealthGate {
    fn check_one(
        &self,
        c: &manifest::ContainerArgv,
        before: Option<&Before>,
        report: &mut Value,
    ) -> Result<(), String> {
        let name = c.name.as_str();
        let argv = c.argv();
        let started = before.map_or_else(Instant::now, |b| b.written);
        let deadline = started + self.cfg.timeout;
        let progress = Progress::new(name);
        let old_pids: Vec<i32> = before.map(|b| b.old_pids.clone()).unwrap_or_default();
        let write_at = before.map_or(0.0, |b| b.write_at);
        let current: Vec<i32> = before.map(|b| b.current.clone()).unwrap_or_default();

        let use_proc = match self.cfg.restart_check {
            RestartCheck::Proc => true,
            RestartCheck::None => false,
            RestartCheck::Auto => {
                let visible = !old_pids.is_empty() || !current.is_empty();
                if !visible {
                    let note = format!(
                        "restart check skipped: no process running the previous {name} argv was \
                         visible in /proc before the write (other PID namespace?); probes may \
                         reach a process that has not restarted"
                    );
                    crate::cli::output::say(format_args!("warning: {note}"));
                    report["restart_check_note"] = json!(note);
                }
                visible
            }
        };
        report["restart_check"] = json!(if use_proc { "proc" } else { "none" });

        // 1. The kubelet has replaced the old process with one running the new argv.
        let mut pid = None;
        let mut restarts = 0u32;
        if use_proc {
            let mut step = 0;
            let mut old_gone_at: Option<Instant> = None;
            loop {
                let old_alive: Vec<i32> = old_pids
                    .iter()
                    .copied()
                    .filter(|p| procs::alive(*p))
                    .collect();
                let fresh = procs::find_by_argv(&argv).into_iter().find(|p| {
                    (p.started >= write_at - START_SLACK || current.contains(&p.pid))
                        && !old_pids.contains(&p.pid)
                });
                if let (Some(p), true) = (fresh, old_alive.is_empty()) {
                    pid = Some(p.pid);
                    report["pid"] = json!(p.pid);
                    report["process_started_after_ms"] =
                        json!(((p.started - write_at).max(0.0) * 1000.0) as u64);
                    report["restarted_after_ms"] = json!(started.elapsed().as_millis() as u64);
                    break;
                }
                // The old process is gone but nothing runs the new argv: a component that exits
                // at start is restarted with back-off and may never be seen alive. Do not wait
                // out the whole timeout for it.
                if old_alive.is_empty() {
                    let gone = *old_gone_at.get_or_insert_with(Instant::now);
                    if gone.elapsed() >= NOT_STARTING_GRACE {
                        return Err(format!(
                            "{name} was stopped by the kubelet but no process with the new argv \
                             has stayed up for {}s: it is probably exiting at start (bad flag or \
                             missing file; see 'crictl ps -a' and the container log)",
                            NOT_STARTING_GRACE.as_secs()
                        ));
                    }
                }
                if Instant::now() >= deadline {
                    let why = if !old_alive.is_empty() {
                        format!("the old process (PID {}) is still running: has the kubelet seen the change?", old_alive[0])
                    } else {
                        "no process with the new argv is running (it may be exiting at start; see 'crictl ps -a')".to_string()
                    };
                    return Err(format!(
                        "{name} was not restarted with the new flags within {}s: {why}",
                        self.cfg.timeout.as_secs()
                    ));
                }
                progress.update(
                    "waiting for restart",
                    started.elapsed(),
                    self.cfg.timeout,
                    "",
                );
                std::thread::sleep(backoff(step, RESTART_POLL_CAP));
                step += 1;
            }
        }

        // 2. Every probe succeeds steadily, and the process does not change under us.
        let specs: Vec<ProbeSpec> = if self.cfg.probe_urls.is_empty() {
            probe::from_container(&c.container).map_err(|e| format!("{name}: {e}"))?
        } else {
            probe::from_urls(&self.cfg.probe_urls)?
        };
        let mut stable = Stability::new(specs.len());
        let mut last: Vec<Option<ProbeResult>> = vec![None; specs.len()];
        let mut seen: Vec<i32> = pid.into_iter().collect();
        let mut step = 0;
        loop {
            let now = Instant::now();
            if use_proc {
                let running = pid.is_some_and(|p| {
                    procs::alive(p) && procs::cmdline(p).as_deref() == Some(&argv[..])
                });
                if !running {
                    // The process we watched is gone: the kubelet restarts it (crash loop).
                    if pid.take().is_some() {
                        restarts += 1;
                        stable.reset();
                        if restarts >= RESTART_LIMIT {
                            return Err(format!(
                                "{name} exited {restarts} times; last probe {}",
                                last_probe(&specs, &last)
                            ));
                        }
                    }
                    let successor = procs::find_by_argv(&argv)
                        .into_iter()
                        .find(|q| q.started >= write_at - START_SLACK && !seen.contains(&q.pid));
                    match successor {
                        Some(q) => {
                            pid = Some(q.pid);
                            seen.push(q.pid);
                            report["pid"] = json!(q.pid);
                        }
                        None if now >= deadline => {
                            return Err(format!(
                                "{name} exited and was not running again within {}s; last probe {}",
                                self.cfg.timeout.as_secs(),
                                last_probe(&specs, &last)
                            ));
                        }
                        None => {
                            std::thread::sleep(backoff(step, RESTART_POLL_CAP));
                            step += 1;
                            continue;
                        }
                    }
                }
            }
            if specs.is_empty() {
                stable.record(0, true, now);
            }
            for (i, s) in specs.iter().enumerate() {
                let r = self
                    .prober
                    .probe(s, deadline.saturating_duration_since(now));
                stable.record(i, r.ok, Instant::now());
                last[i] = Some(r);
            }
            if stable.stable(Instant::now()) {
                if let Some(t) = stable.window_start() {
                    report["window_started_after_ms"] =
                        json!(t.saturating_duration_since(started).as_millis() as u64);
                }
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{name} not healthy within {}s; last probe {}",
                    self.cfg.timeout.as_secs(),
                    last_probe(&specs, &last)
                ));
            }
            progress.update(
                "probing",
                started.elapsed(),
                self.cfg.timeout,
                &last_probe(&specs, &last),
            );
            // Enough successes already: wake when the window is long enough, not a back-off later.
            let nap = backoff(step, PROBE_POLL_CAP);
            std::thread::sleep(stable.wait_hint(Instant::now()).map_or(nap, |w| w.min(nap)));
            step += 1;
        }
        report["probes"] = json!(specs
            .iter()
            .zip(&last)
            .enumerate()
            .map(|(i, (s, r))| json!({
                "probe": s.source, "target": s.describe(),
                "successes": stable.successes(i),
                "last": r.as_ref().map(|r| r.detail.clone()),
            }))
            .collect::<Vec<_>>());
        report["restarts"] = json!(restarts);
        report["stable_after_ms"] = json!(started.elapsed().as_millis() as u64);

        // 3. Audit: the process that passed runs exactly the manifest's argv.
        if let Some(p) = pid {
            if procs::cmdline(p).as_deref() != Some(&argv[..]) {
                return Err(format!("{name}: PID {p} no longer runs the new argv"));
            }
            report["audit"] = json!("running argv equals the manifest's command + args");
        } else {
            report["audit"] = json!("not checked: no process visible");
        }
        Ok(())
    }
}

/// "https://127.0.0.1:6443/livez → 401 Unauthorized" for the first failing (else last) probe.
fn last_probe(specs: &[ProbeSpec], last: &[Option<ProbeResult>]) -> String {
    let pick = specs
        .iter()
        .zip(last)
        .find(|(_, r)| r.as_ref().is_some_and(|r| !r.ok))
        .or_else(|| specs.iter().zip(last).next_back());
    match pick {
        Some((s, Some(r))) => format!("{} → {}", s.describe(), r.detail),
        Some((s, None)) => format!("{} → (not probed yet)", s.describe()),
        None => "(no probes declared)".to_string(),
    }
}
