//! What the hardening file means for an audit: which checks are enforced, and the waivers'
//! effect on verdicts. A waived failing check is WARN ("waived: REASON (until DATE)") and does
//! not make `audit` exit 1; an expired waiver counts as absent and is flagged; a waiver on a
//! passing check is unused. A failing check the file does not enforce is WARN too, with a note
//! saying why, so `audit`'s exit code answers "does this node meet its declared policy".

use super::file::{Hardening, Waiver};
use crate::cis::{AuditReport, CheckResult, CheckType, Status};
use serde_json::{json, Value};

/// What became of one waiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaiverState {
    /// It covers a check that does not pass.
    Active,
    /// Past its date: not honoured.
    Expired,
    /// The check passes (or is not in this benchmark): the waiver can go.
    Unused,
}

impl WaiverState {
    pub fn name(self) -> &'static str {
        match self {
            WaiverState::Active => "active",
            WaiverState::Expired => "expired",
            WaiverState::Unused => "unused",
        }
    }
}

/// The hardening file's effect on one audit.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub file: String,
    pub waivers: Vec<(Waiver, WaiverState)>,
    /// Failing checks the file does not enforce (id, why).
    pub not_enforced: Vec<(String, String)>,
}

/// Today as `YYYY-MM-DD` (UTC); `KUBEHARDEN_TODAY` overrides it so expiry can be tested.
pub fn today() -> String {
    std::env::var("KUBEHARDEN_TODAY")
        .ok()
        .filter(|d| super::file::valid_date(d))
        .unwrap_or_else(|| chrono::Utc::now().format("%Y-%m-%d").to_string())
}

/// Is `check` enforced by `h` (before waivers)? Automated checks are, except the risky ones
/// unless opted in, and the excluded ones.
pub fn enforced(h: &Hardening, r: &CheckResult) -> Result<(), String> {
    let id = r.check.id;
    let opted = h.opt_in.iter().any(|o| o == id);
    if r.check.kind != CheckType::Automated && !opted {
        return Err(format!(
            "manual check: add {id} to checks.optIn to apply its fix"
        ));
    }
    if h.exclude.iter().any(|e| e == id) {
        return Err("excluded by checks.exclude".into());
    }
    if r.check.dangerous.is_some() && !opted {
        return Err(format!("risky: add {id} to checks.optIn to enforce it"));
    }
    Ok(())
}

/// The waiver in force for `id` today, if any.
pub fn active_waiver<'a>(h: &'a Hardening, id: &str, today: &str) -> Option<&'a Waiver> {
    h.waivers
        .iter()
        .find(|w| w.check == id && w.expires.as_deref().is_none_or(|d| d >= today))
}

fn waived_text(w: &Waiver) -> String {
    match &w.expires {
        Some(d) => format!("waived: {} (until {d})", w.reason),
        None => format!("waived: {}", w.reason),
    }
}

/// Apply the file to an audit report in place: waivers and selection change verdicts (FAIL →
/// WARN) with a note; `kube_bench_status` keeps kube-bench's own verdict.
pub fn apply(h: &Hardening, report: &mut AuditReport, today: &str) -> Applied {
    let mut out = Applied {
        file: h.path.display().to_string(),
        ..Default::default()
    };
    for w in &h.waivers {
        // A check outside this audit (--check, another benchmark) says nothing about it.
        let state = match report.get(&w.check) {
            None => continue,
            Some(r) if r.status == Status::Pass => WaiverState::Unused,
            Some(_) if w.expires.as_deref().is_some_and(|d| d < today) => WaiverState::Expired,
            Some(_) => WaiverState::Active,
        };
        out.waivers.push((w.clone(), state));
    }
    for r in &mut report.results {
        if matches!(r.status, Status::Pass | Status::Info) {
            continue;
        }
        let id = r.check.id;
        if let Some(w) = active_waiver(h, id, today) {
            r.notes.push(waived_text(w));
            r.status = Status::Warn;
            continue;
        }
        if let Some((w, _)) = out
            .waivers
            .iter()
            .find(|(w, s)| w.check == id && *s == WaiverState::Expired)
        {
            r.notes.push(format!(
                "waiver expired on {} ({}); it no longer counts",
                w.expires.as_deref().unwrap_or(""),
                w.reason
            ));
        }
        if r.status == Status::Fail {
            if let Err(why) = enforced(h, r) {
                r.notes.push(format!("not enforced by {}: {why}", out.file));
                r.status = Status::Warn;
                out.not_enforced.push((id.to_string(), why));
            }
        }
    }
    out
}

impl Applied {
    pub fn json(&self) -> Value {
        json!({
            "file": self.file,
            "waivers": self.waivers.iter().map(|(w, s)| json!({
                "check": w.check, "reason": w.reason, "expires": w.expires, "owner": w.owner,
                "state": s.name(),
            })).collect::<Vec<_>>(),
            "not_enforced": self.not_enforced.iter().map(|(id, why)| json!({"check": id, "reason": why})).collect::<Vec<_>>(),
        })
    }

    /// Lines for the text report (and stderr warnings for expired waivers).
    pub fn text(&self) -> String {
        let mut s = format!("\n== Hardening file {} ==\n", self.file);
        for (w, st) in &self.waivers {
            let until = w
                .expires
                .as_deref()
                .map(|d| format!(" (until {d})"))
                .unwrap_or_default();
            let line = match st {
                WaiverState::Active => format!("waiver {}: active{until}: {}", w.check, w.reason),
                WaiverState::Expired => {
                    format!(
                        "waiver {}: EXPIRED{until}, not honoured: {}",
                        w.check, w.reason
                    )
                }
                WaiverState::Unused => format!(
                    "waiver {}: unused (the check passes); remove it from the file",
                    w.check
                ),
            };
            s.push_str(&line);
            s.push('\n');
        }
        if !self.not_enforced.is_empty() {
            s.push_str(&format!(
                "not enforced: {}\n",
                self.not_enforced
                    .iter()
                    .map(|(id, _)| id.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        s
    }

    /// Expired waivers, for a warning on stderr.
    pub fn expired(&self) -> impl Iterator<Item = &Waiver> {
        self.waivers
            .iter()
            .filter(|(_, s)| *s == WaiverState::Expired)
            .map(|(w, _)| w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cis::{AuditOptions, BenchmarkId};
    use std::path::{Path, PathBuf};

    /// An audit of the stock kubeadm v1.30 manifests (no processes, no files).
    fn stock() -> AuditReport {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/manifests/kubeadm-v1.30.14");
        let mut o = AuditOptions::new(dir, PathBuf::from("/nonexistent/kubernetes"));
        o.processes = false;
        o.benchmark = Some(BenchmarkId::Cis111);
        crate::cis::run(&o).unwrap()
    }

    fn file(body: &str) -> Hardening {
        super::super::file::parse(
            &format!("apiVersion: kubeharden.io/v1alpha1\nkind: HardeningConfiguration\n{body}"),
            Path::new("h.yaml"),
        )
        .unwrap()
    }

    #[test]
    fn waivers_turn_fail_into_warn_until_they_expire_and_unused_ones_are_named() {
        let h = file(
            "waivers:\n- check: \"1.2.15\"\n  reason: kept\n  expires: 2030-01-31\n\
             - check: \"1.2.7\"\n  reason: never needed\n",
        );
        let mut r = stock();
        assert_eq!(r.get("1.2.15").unwrap().status, Status::Fail);
        let a = apply(&h, &mut r, "2030-01-31");
        let c = r.get("1.2.15").unwrap();
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.notes
                .iter()
                .any(|n| n == "waived: kept (until 2030-01-31)"),
            "{:?}",
            c.notes
        );
        let states: Vec<_> = a
            .waivers
            .iter()
            .map(|(w, s)| (w.check.as_str(), *s))
            .collect();
        assert_eq!(
            states,
            [
                ("1.2.15", WaiverState::Active),
                ("1.2.7", WaiverState::Unused)
            ]
        );

        let mut r = stock();
        let a = apply(&h, &mut r, "2030-02-01");
        assert_eq!(
            r.get("1.2.15").unwrap().status,
            Status::Fail,
            "expired: enforced again"
        );
        assert_eq!(a.expired().count(), 1);
    }

    #[test]
    fn not_enforced_checks_are_warn_and_opt_in_enforces_a_risky_one() {
        let mut r = stock();
        let a = apply(&Hardening::defaults(), &mut r, "2030-01-01");
        let ids: Vec<&str> = a.not_enforced.iter().map(|(i, _)| i.as_str()).collect();
        assert!(ids.contains(&"1.2.5"), "{ids:?}");
        assert_eq!(r.get("1.2.5").unwrap().status, Status::Warn);
        assert_eq!(r.get("1.2.5").unwrap().kube_bench_status, Status::Fail);

        let mut r = stock();
        apply(
            &file("checks:\n  optIn: [\"1.2.5\"]\n  exclude: [\"1.2.15\"]\n"),
            &mut r,
            "2030-01-01",
        );
        assert_eq!(r.get("1.2.5").unwrap().status, Status::Fail, "opted in");
        assert_eq!(r.get("1.2.15").unwrap().status, Status::Warn, "excluded");
    }
}
