//! What one check of the gate saw (the objects of the `gate.checks` JSON array), and its
//! one-line summary for people (`summary_line`, also used by `kubeharden log`).

use serde::{Deserialize, Serialize};

/// The health a component had before the change, probed as the gate will probe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthBefore {
    pub healthy: bool,
    /// The first failing probe and its answer, else the last one ("… → 200 OK").
    pub detail: String,
}

/// One probe's outcome in a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// `startupProbe`, `livenessProbe`, `readinessProbe` or `--probe`.
    pub probe: String,
    pub target: String,
    /// Successes in the final streak.
    pub successes: u32,
    pub last: Option<String>,
}

/// One check of one component: `phase` "change" (the new content) or "rollback" (the
/// previous content, written back).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateReport {
    pub phase: String,
    pub path: String,
    pub component: String,
    /// `healthy`, `failed`, or `not_required` (a rollback to a component that was not healthy
    /// before the change either).
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The bound of this check in seconds (`--health-timeout` or `--rollback-timeout`).
    pub timeout_s: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_before: Option<HealthBefore>,
    /// `proc` or `none`.
    pub restart_check: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_check_note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_started_after_ms: Option<u64>,
    /// When the gate saw the process with the new argv, from the write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_after_ms: Option<u64>,
    /// When the final streak of successes began, from the write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_started_after_ms: Option<u64>,
    #[serde(default)]
    pub probes: Vec<ProbeReport>,
    /// Probe requests sent in this check.
    #[serde(default)]
    pub probe_requests: u32,
    #[serde(default)]
    pub restarts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_after_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<String>,
    /// Stopped by SIGINT/SIGTERM/SIGHUP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

/// "kube-scheduler healthy: restart seen after 850 ms, 7 probes, stable after 2.4 s".
pub fn summary_line(r: &GateReport) -> String {
    let who = format!("{} ({})", r.component, r.phase);
    match r.result.as_str() {
        "healthy" => {
            let restart = match r.restarted_after_ms {
                Some(ms) => format!("restart seen after {ms} ms"),
                None => "restart not checked".to_string(),
            };
            let stable = r.stable_after_ms.map_or_else(String::new, |ms| {
                format!(", stable after {:.1} s", ms as f64 / 1000.0)
            });
            let probes = if r.probes.is_empty() {
                "no probes (process watched)".to_string()
            } else {
                format!("{} probes", r.probe_requests)
            };
            format!("{who} healthy: {restart}, {probes}{stable}")
        }
        "not_required" => format!(
            "{who}: previous content back on disk; health not required ({})",
            r.reason
                .as_deref()
                .unwrap_or("not healthy before the change")
        ),
        other => format!(
            "{who} {other}: {}",
            r.reason.as_deref().unwrap_or("(no reason recorded)")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_healthy_check_says_restart_probes_and_stability() {
        let r = GateReport {
            phase: "change".into(),
            component: "kube-scheduler".into(),
            result: "healthy".into(),
            restarted_after_ms: Some(850),
            probes: vec![ProbeReport {
                probe: "livenessProbe".into(),
                target: "https://127.0.0.1:10259/healthz".into(),
                successes: 5,
                last: Some("200 OK".into()),
            }],
            probe_requests: 7,
            stable_after_ms: Some(2430),
            ..GateReport::default()
        };
        assert_eq!(
            summary_line(&r),
            "kube-scheduler (change) healthy: restart seen after 850 ms, 7 probes, stable after 2.4 s"
        );
    }

    #[test]
    fn the_json_keeps_the_documented_keys_and_reads_back() {
        let r = GateReport {
            phase: "rollback".into(),
            result: "failed".into(),
            reason: Some("x".into()),
            ..GateReport::default()
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["phase"], "rollback");
        assert_eq!(v["reason"], "x");
        assert!(v.get("pid").is_none());
        assert!(v.get("interrupted").is_none());
        let back: GateReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }
}
