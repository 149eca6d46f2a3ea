//! `audit --format prometheus` and `status --format prometheus`: the node's hardening state in
//! the Prometheus text exposition format that node_exporter's textfile collector reads, and
//! `--textfile DIR`, which writes it to `DIR/kubeharden.prom` atomically (a temporary file in
//! DIR, fsynced, renamed over the old one, DIR fsynced) so the collector never reads half a
//! file.
//!
//! Both commands write the same families (checks from the audit, the rest from the state
//! dir), so whichever of them last wrote the file, it is complete.

use crate::cis::{AuditReport, Status};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The file name node_exporter's `--collector.textfile.directory` picks up (`*.prom`).
pub const TEXTFILE_NAME: &str = "kubeharden.prom";

/// What the state dir says (from `status`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateMetrics {
    /// Files changed outside kubeharden since their last recorded version (status `drift`).
    pub drift_files: usize,
    pub incomplete_transactions: usize,
    /// The last transaction's status (`committed`, `rolled_back`, …) and the Unix time it
    /// ended (or started, while open), in seconds.
    pub last_transaction: Option<(String, f64)>,
    /// Waivers of the hardening file whose `expires` date has passed.
    pub waivers_expired: usize,
}

impl StateMetrics {
    /// From the `status` JSON document (`incomplete`, `drift`, `last_txn`).
    pub fn from_status_json(v: &serde_json::Value) -> StateMetrics {
        let len = |k: &str| v[k].as_array().map_or(0, Vec::len);
        let last = &v["last_txn"];
        let last_transaction = last["status"].as_str().map(|s| {
            let at = last["ended_at"]
                .as_str()
                .or(last["started_at"].as_str())
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map_or(0.0, |t| t.timestamp_millis() as f64 / 1000.0);
            (s.to_string(), at)
        });
        StateMetrics {
            drift_files: len("drift"),
            incomplete_transactions: len("incomplete"),
            last_transaction,
            waivers_expired: 0,
        }
    }
}

/// A label value with `\`, `"` and newlines escaped, as the exposition format wants.
fn label(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
}

fn checks(out: &mut String, rep: &AuditReport) {
    let b = label(rep.benchmark.name());
    family(
        out,
        "kubeharden_check_status",
        "CIS check verdict of this node: 1 for the check's status (PASS, FAIL, WARN, INFO).",
    );
    for r in &rep.results {
        let _ = writeln!(
            out,
            "kubeharden_check_status{{id=\"{}\",benchmark=\"{b}\",status=\"{}\"}} 1",
            label(r.check.id),
            r.status.name()
        );
    }
    family(out, "kubeharden_checks", "Number of CIS checks per status.");
    let s = rep.summary();
    for (n, st) in [
        (s.pass, Status::Pass),
        (s.fail, Status::Fail),
        (s.warn, Status::Warn),
        (s.info, Status::Info),
    ] {
        let _ = writeln!(
            out,
            "kubeharden_checks{{benchmark=\"{b}\",status=\"{}\"}} {n}",
            st.name()
        );
    }
}

fn state(out: &mut String, st: &StateMetrics) {
    family(
        out,
        "kubeharden_drift_files",
        "Manifests changed outside kubeharden since their last recorded version.",
    );
    let _ = writeln!(out, "kubeharden_drift_files {}", st.drift_files);
    family(
        out,
        "kubeharden_incomplete_transactions",
        "Transactions begun and not resolved (the next kubeharden run recovers them).",
    );
    let _ = writeln!(
        out,
        "kubeharden_incomplete_transactions {}",
        st.incomplete_transactions
    );
    family(
        out,
        "kubeharden_last_transaction_timestamp_seconds",
        "Unix time the last transaction ended (or began, if open), labelled with its status.",
    );
    if let Some((status, at)) = &st.last_transaction {
        let _ = writeln!(
            out,
            "kubeharden_last_transaction_timestamp_seconds{{status=\"{}\"}} {at:.3}",
            label(status)
        );
    }
    family(
        out,
        "kubeharden_waivers_expired",
        "Waivers of the hardening file past their expiry date.",
    );
    let _ = writeln!(out, "kubeharden_waivers_expired {}", st.waivers_expired);
}

/// The exposition text. `audit`: `None` when the audit could not run (the reason is written
/// as a comment); `state`: `None` without a state dir yet (state families read 0).
pub fn render(audit: Result<&AuditReport, &str>, state_m: &StateMetrics) -> String {
    let mut out = String::new();
    match audit {
        Ok(rep) => checks(&mut out, rep),
        Err(why) => {
            let _ = writeln!(out, "# kubeharden: no audit: {}", why.replace('\n', " "));
        }
    }
    state(&mut out, state_m);
    out
}

/// Writes `text` to `dir/kubeharden.prom`: a temporary dot-file in `dir` (the collector
/// ignores names not ending in .prom), fsynced, renamed over the old file, `dir` fsynced.
pub fn write_textfile(dir: &Path, text: &str) -> std::io::Result<PathBuf> {
    let dst = dir.join(TEXTFILE_NAME);
    let tmp = dir.join(format!(".{TEXTFILE_NAME}.{}.tmp", std::process::id()));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        // Readable by node_exporter, which usually runs as another user.
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        f.sync_all()?;
        std::fs::rename(&tmp, &dst)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map(|()| dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_escapes() {
        assert_eq!(label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }

    #[test]
    fn state_from_status_json() {
        let v = serde_json::json!({
            "incomplete": [{"txn": 3}], "drift": [{}, {}],
            "last_txn": {"status": "committed", "started_at": "2026-01-01T00:00:00.000Z",
                         "ended_at": "2026-01-01T00:00:01.500Z"}
        });
        let s = StateMetrics::from_status_json(&v);
        assert_eq!(s.drift_files, 2);
        assert_eq!(s.incomplete_transactions, 1);
        assert_eq!(
            s.last_transaction,
            Some(("committed".to_string(), 1_767_225_601.5))
        );
        let none = StateMetrics::from_status_json(&serde_json::json!({"last_txn": null}));
        assert_eq!(none, StateMetrics::default());
    }

    #[test]
    fn textfile_replaces_atomically() {
        let d = tempfile::tempdir().unwrap();
        let p = write_textfile(d.path(), "a 1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a 1\n");
        write_textfile(d.path(), "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a 2\n");
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [TEXTFILE_NAME], "no temporary file left");
    }
}
