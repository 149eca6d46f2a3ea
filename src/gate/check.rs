//! One component's check, phase by phase: the restart wait (the kubelet replaced the old
//! process with one running the new argv), probing until the stability rule holds (following
//! a crash-looping process), and the audit of the running argv.
//!
//! Timing: `timeout` bounds *becoming* healthy — the restart and the first success of the
//! final streak of every probe. A streak that began in time may finish its stability window
//! ([`stability::MIN_SPAN`]) past the timeout: a change that became healthy is judged on that,
//! never failed by a short timeout (the verdict comes at most `MIN_SPAN + STREAK_SLACK` late).

use super::probe::{self, ProbeResult, ProbeSpec};
use super::procs;
use super::progress::Progress;
use super::report::{GateReport, ProbeReport};
use super::stability::{Stability, MIN_SPAN};
use super::HealthGate;
use crate::manifest::ContainerArgv;
use crate::signals;
use std::time::{Duration, Instant};

const RESTART_LIMIT: u32 = 3;
/// /proc start times have clock-tick resolution (10 ms).
const START_SLACK: f64 = 0.02;
/// How long after the old process is gone a process with the new argv must have appeared.
const NOT_STARTING_GRACE: Duration = Duration::from_secs(15);
const RESTART_POLL_CAP: Duration = Duration::from_millis(200);
const PROBE_POLL_CAP: Duration = Duration::from_millis(500);
/// Past `MIN_SPAN`, how long a streak begun in time may take to show its last success.
pub const STREAK_SLACK: Duration = Duration::from_secs(1);

/// Polling back-off: from 50 ms, growing by half, never more than `cap` — a restart or a first
/// answer is seen within `cap` of when it happens.
fn backoff(step: u32, cap: Duration) -> Duration {
    Duration::from_millis((50.0 * 1.5f64.powi(step.min(10) as i32)) as u64).min(cap)
}

/// What ran before the write, as the gate noted it.
pub struct Before {
    pub path: String,
    pub write_at: f64,
    pub written: Instant,
    pub old_pids: Vec<i32>,
    /// Processes already running the new argv before the write.
    pub current: Vec<i32>,
}

/// The running state of one check.
pub struct Check<'a> {
    pub gate: &'a HealthGate,
    pub c: &'a ContainerArgv,
    pub argv: Vec<String>,
    pub started: Instant,
    pub deadline: Instant,
    pub timeout: Duration,
    /// The change (not the rollback): a signal stops it.
    pub abortable: bool,
    pub old_pids: Vec<i32>,
    pub current: Vec<i32>,
    pub write_at: f64,
    /// The component did not answer before the change.
    pub down_before: bool,
    pub progress: Progress,
}

impl<'a> Check<'a> {
    pub fn new(
        gate: &'a HealthGate,
        c: &'a ContainerArgv,
        before: Option<&Before>,
        timeout: Duration,
        abortable: bool,
        down_before: bool,
    ) -> Check<'a> {
        let started = before.map_or_else(Instant::now, |b| b.written);
        Check {
            gate,
            c,
            argv: c.argv(),
            started,
            deadline: started + timeout,
            timeout,
            abortable,
            old_pids: before.map(|b| b.old_pids.clone()).unwrap_or_default(),
            current: before.map(|b| b.current.clone()).unwrap_or_default(),
            write_at: before.map_or(0.0, |b| b.write_at),
            down_before,
            progress: Progress::new(&c.name),
        }
    }

    fn name(&self) -> &str {
        &self.c.name
    }

    fn ms_since_write(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A signal stops the change's check (never the rollback's: that one is confirmed).
    fn stop_if_interrupted(&self, report: &mut GateReport) -> Result<(), String> {
        if !self.abortable {
            return Ok(());
        }
        match signals::interrupted_reason() {
            Some(why) => {
                report.interrupted = true;
                Err(why)
            }
            None => Ok(()),
        }
    }

    /// All phases; fills `report` as it goes.
    pub fn run(&self, report: &mut GateReport) -> Result<(), String> {
        report.timeout_s = self.timeout.as_secs();
        self.stop_if_interrupted(report)?;
        let use_proc = self.restart_mode(report);
        let pid = if use_proc {
            Some(self.wait_for_restart(report)?)
        } else {
            None
        };
        let specs = self.specs()?;
        let pid = self.probe_until_stable(&specs, pid, use_proc, report)?;
        self.audit(pid, report)
    }

    /// `proc` or `none`, and why (`auto`: only where the old process was visible in /proc,
    /// or nothing answered before the change, so an answer must come from a new process).
    fn restart_mode(&self, report: &mut GateReport) -> bool {
        use super::RestartCheck;
        let name = self.name();
        let running = !self.old_pids.is_empty() || !self.current.is_empty();
        let visible = running || self.gate.proc_visible;
        let use_proc = match self.gate.cfg.restart_check {
            RestartCheck::Proc => {
                if !running {
                    report.restart_check_note = Some(format!(
                        "no process ran {name} before the change: the check waits for one \
                         with the new argv, started after the write"
                    ));
                }
                true
            }
            RestartCheck::None => false,
            RestartCheck::Auto if visible => true,
            RestartCheck::Auto if self.down_before => {
                report.restart_check_note = Some(format!(
                    "restart check not needed: no process ran {name} and nothing answered its \
                     probes before the change, so a healthy answer comes from a process started since"
                ));
                false
            }
            RestartCheck::Auto => {
                let note = format!(
                    "restart check skipped: no process running the previous {name} argv was \
                     visible in /proc before the write (other PID namespace?); probes may \
                     reach a process that has not restarted"
                );
                super::warn(&note);
                report.restart_check_note = Some(note);
                false
            }
        };
        report.restart_check = if use_proc { "proc" } else { "none" }.into();
        use_proc
    }

    /// A process with the new argv that started after the write (or ran it already).
    fn fresh_process(&self) -> Option<procs::Proc> {
        procs::find_by_argv(&self.argv).into_iter().find(|p| {
            (p.started >= self.write_at - START_SLACK || self.current.contains(&p.pid))
                && !self.old_pids.contains(&p.pid)
        })
    }

    /// Phase 1: the kubelet has replaced the old process with one running the new argv.
    fn wait_for_restart(&self, report: &mut GateReport) -> Result<i32, String> {
        let name = self.name();
        let mut step = 0;
        let mut old_gone_at: Option<Instant> = None;
        loop {
            self.stop_if_interrupted(report)?;
            let old_alive: Vec<i32> = self
                .old_pids
                .iter()
                .copied()
                .filter(|p| procs::alive(*p))
                .collect();
            if let (Some(p), true) = (self.fresh_process(), old_alive.is_empty()) {
                report.pid = Some(p.pid);
                report.process_started_after_ms =
                    Some(((p.started - self.write_at).max(0.0) * 1000.0) as u64);
                report.restarted_after_ms = Some(self.ms_since_write());
                return Ok(p.pid);
            }
            // The old process is gone (or there was none) but nothing runs the new argv: a
            // component that exits at start is restarted with back-off and may never be seen
            // alive. Do not wait out the whole timeout for it.
            if old_alive.is_empty() {
                let gone = *old_gone_at.get_or_insert_with(Instant::now);
                if gone.elapsed() >= NOT_STARTING_GRACE {
                    return Err(self.not_starting());
                }
            }
            if Instant::now() >= self.deadline {
                let why = match old_alive.first() {
                    Some(p) => format!(
                        "the old process (PID {p}) is still running: has the kubelet seen the change?"
                    ),
                    None => "no process with the new argv is running (it may be exiting at start; see 'crictl ps -a')".to_string(),
                };
                return Err(format!(
                    "{name} was not restarted with the new flags within {}s: {why}",
                    self.timeout.as_secs()
                ));
            }
            self.progress.update(
                "waiting for restart",
                self.started.elapsed(),
                self.timeout,
                "",
            );
            signals::nap(backoff(step, RESTART_POLL_CAP));
            step += 1;
        }
    }

    /// The reason when nothing with the new argv stays up: true to what ran before.
    fn not_starting(&self) -> String {
        let name = self.name();
        let grace = NOT_STARTING_GRACE.as_secs();
        let what = if self.old_pids.is_empty() {
            format!("no process ran {name} before the change, and none with the new argv")
        } else {
            format!("{name} was stopped by the kubelet but no process with the new argv")
        };
        format!(
            "{what} has stayed up for {grace}s: it is probably exiting at start (bad flag or \
             missing file; see 'crictl ps -a' and the container log)"
        )
    }

    fn specs(&self) -> Result<Vec<ProbeSpec>, String> {
        if self.gate.cfg.probe_urls.is_empty() {
            probe::from_container(&self.c.container).map_err(|e| format!("{}: {e}", self.name()))
        } else {
            probe::from_urls(&self.gate.cfg.probe_urls)
        }
    }

    /// The end of probing: the deadline, or, when every probe's streak began before it, the
    /// end of that streak's stability window.
    fn end(&self, stable: &Stability) -> Instant {
        probing_end(self.deadline, stable.window_start())
    }

    /// Phase 2: every probe succeeds steadily, following the process as it is restarted.
    /// Returns the process that passed (when the restart check watched one).
    fn probe_until_stable(
        &self,
        specs: &[ProbeSpec],
        mut pid: Option<i32>,
        use_proc: bool,
        report: &mut GateReport,
    ) -> Result<Option<i32>, String> {
        let mut stable = Stability::new(specs.len());
        let mut last: Vec<Option<ProbeResult>> = vec![None; specs.len()];
        let mut seen: Vec<i32> = pid.into_iter().collect();
        let mut step = 0;
        loop {
            self.stop_if_interrupted(report)?;
            if use_proc && !self.follow(&mut pid, &mut seen, &mut stable, specs, &last, report)? {
                signals::nap(backoff(step, RESTART_POLL_CAP));
                step += 1;
                continue;
            }
            let now = Instant::now();
            if specs.is_empty() {
                stable.record(0, true, now);
            }
            for (i, s) in specs.iter().enumerate() {
                let r = self
                    .gate
                    .prober
                    .probe(s, self.end(&stable).saturating_duration_since(now));
                report.probe_requests += 1;
                stable.record(i, r.ok, Instant::now());
                last[i] = Some(r);
            }
            if stable.stable(Instant::now()) {
                self.record_stable(specs, &stable, &last, report);
                return Ok(pid);
            }
            if Instant::now() >= self.end(&stable) {
                return Err(format!(
                    "{} not healthy within {}s; last probe {}",
                    self.name(),
                    self.timeout.as_secs(),
                    last_probe(specs, &last)
                ));
            }
            self.progress.update(
                "probing",
                self.started.elapsed(),
                self.timeout,
                &last_probe(specs, &last),
            );
            // Enough successes already: wake when the window is long enough, not a back-off later.
            let nap = backoff(step, PROBE_POLL_CAP);
            signals::nap(stable.wait_hint(Instant::now()).map_or(nap, |w| w.min(nap)));
            step += 1;
        }
    }

    /// The watched process still runs the new argv, or a successor does (crash loop): true to
    /// probe now; false to wait for a successor. Err past the restart limit or the deadline.
    fn follow(
        &self,
        pid: &mut Option<i32>,
        seen: &mut Vec<i32>,
        stable: &mut Stability,
        specs: &[ProbeSpec],
        last: &[Option<ProbeResult>],
        report: &mut GateReport,
    ) -> Result<bool, String> {
        let running = pid.is_some_and(|p| {
            procs::alive(p) && procs::cmdline(p).as_deref() == Some(&self.argv[..])
        });
        if running {
            return Ok(true);
        }
        let name = self.name();
        if pid.take().is_some() {
            report.restarts += 1;
            stable.reset();
            if report.restarts >= RESTART_LIMIT {
                return Err(format!(
                    "{name} exited {} times; last probe {}",
                    report.restarts,
                    last_probe(specs, last)
                ));
            }
        }
        let successor = procs::find_by_argv(&self.argv)
            .into_iter()
            .find(|q| q.started >= self.write_at - START_SLACK && !seen.contains(&q.pid));
        match successor {
            Some(q) => {
                *pid = Some(q.pid);
                seen.push(q.pid);
                report.pid = Some(q.pid);
                Ok(true)
            }
            None if Instant::now() >= self.deadline => Err(format!(
                "{name} exited and was not running again within {}s; last probe {}",
                self.timeout.as_secs(),
                last_probe(specs, last)
            )),
            None => Ok(false),
        }
    }

    fn record_stable(
        &self,
        specs: &[ProbeSpec],
        stable: &Stability,
        last: &[Option<ProbeResult>],
        report: &mut GateReport,
    ) {
        if let Some(t) = stable.window_start() {
            report.window_started_after_ms =
                Some(t.saturating_duration_since(self.started).as_millis() as u64);
        }
        report.probes = specs
            .iter()
            .zip(last)
            .enumerate()
            .map(|(i, (s, r))| ProbeReport {
                probe: s.source.clone(),
                target: s.describe(),
                successes: stable.successes(i),
                last: r.as_ref().map(|r| r.detail.clone()),
            })
            .collect();
        report.stable_after_ms = Some(self.ms_since_write());
    }

    /// Phase 3: the process that passed runs exactly the manifest's argv. Without a restart
    /// check, a visible process with the new argv started after the write is audited.
    fn audit(&self, pid: Option<i32>, report: &mut GateReport) -> Result<(), String> {
        let pid = pid.or_else(|| {
            let p = self.fresh_process()?;
            report.pid = Some(p.pid);
            Some(p.pid)
        });
        match pid {
            Some(p) if procs::cmdline(p).as_deref() != Some(&self.argv[..]) => Err(format!(
                "{}: PID {p} no longer runs the new argv",
                self.name()
            )),
            Some(_) => {
                report.audit = Some("running argv equals the manifest's command + args".into());
                Ok(())
            }
            None => {
                report.audit = Some("not checked: no process visible".into());
                Ok(())
            }
        }
    }
}

/// The timing floor: past `deadline`, a streak that every probe began by then may still finish
/// its stability window.
fn probing_end(deadline: Instant, window_start: Option<Instant>) -> Instant {
    match window_start {
        Some(w) if w <= deadline => deadline.max(w + MIN_SPAN + STREAK_SLACK),
        _ => deadline,
    }
}

/// "https://127.0.0.1:6443/livez → 401 Unauthorized" for the first failing (else last) probe.
pub fn last_probe(specs: &[ProbeSpec], last: &[Option<ProbeResult>]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streak_begun_before_a_short_timeout_may_finish_its_window() {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(1);
        // Healthy from 0.2 s: judged until 0.2 + 2 + 1 s, past the 1-s timeout.
        let w = t0 + Duration::from_millis(200);
        assert_eq!(probing_end(deadline, Some(w)), w + MIN_SPAN + STREAK_SLACK);
        // Not healthy in time (no streak, or one begun after the deadline): the deadline.
        assert_eq!(probing_end(deadline, None), deadline);
        let late = t0 + Duration::from_millis(1500);
        assert_eq!(probing_end(deadline, Some(late)), deadline);
        // A long timeout is never shortened.
        let long = t0 + Duration::from_secs(60);
        assert_eq!(probing_end(long, Some(w)), long);
    }
}
