//! `audit --format kube-bench-json`: the audit as kube-bench's own JSON document, so that
//! what already ingests `kube-bench --json` (Trivy/Starboard-style CIS reports,
//! policy-reporter adapters, ASFF converters) reads ours unchanged.
//!
//! The shape is kube-bench's Go structs as `encoding/json` writes them (aquasecurity/kube-bench
//! `check/controls.go`: `OverallControls`, `Controls`, `Group`, `Summary`; `check/check.go`:
//! `Check`), field for field and in their order, including the three fields that have no JSON
//! tag and so appear under their Go names (`AuditEnv`, `AuditConfig`, `IsMultiple`). The
//! mapping from kubeharden's results is in docs/fleet.md.

use crate::cis::rules::title;
use crate::cis::{AuditReport, CheckResult, CheckType, Source, Status};
use serde::Serialize;

/// `OverallControls`: what `kube-bench --json` prints.
#[derive(Serialize, Debug)]
pub struct Document {
    #[serde(rename = "Controls")]
    pub controls: Vec<Controls>,
    #[serde(rename = "Totals")]
    pub totals: Summary,
}

/// `Summary` (embedded in `Controls`, and the document's `Totals`).
#[derive(Serialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub total_pass: usize,
    pub total_fail: usize,
    pub total_warn: usize,
    pub total_info: usize,
}

/// `Controls`: one benchmark file (master.yaml → "1", etcd.yaml → "2").
#[derive(Serialize, Debug)]
pub struct Controls {
    pub id: String,
    pub version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detected_version: String,
    pub text: String,
    pub node_type: String,
    pub tests: Vec<Group>,
    #[serde(flatten)]
    pub summary: Summary,
}

/// `Group`: one group of checks ("1.2 API Server").
#[derive(Serialize, Debug)]
pub struct Group {
    pub section: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub pass: usize,
    pub fail: usize,
    pub warn: usize,
    pub info: usize,
    pub desc: String,
    pub results: Vec<Test>,
}

/// `Check`: one check's result.
#[derive(Serialize, Debug)]
pub struct Test {
    pub test_number: String,
    pub test_desc: String,
    pub audit: String,
    #[serde(rename = "AuditEnv")]
    pub audit_env: String,
    #[serde(rename = "AuditConfig")]
    pub audit_config: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub remediation: String,
    pub test_info: Vec<String>,
    pub status: String,
    pub actual_value: String,
    pub scored: bool,
    #[serde(rename = "IsMultiple")]
    pub is_multiple: bool,
    pub expected_result: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl Summary {
    fn add(&mut self, s: Status) {
        match s {
            Status::Pass => self.total_pass += 1,
            Status::Fail => self.total_fail += 1,
            Status::Warn => self.total_warn += 1,
            Status::Info => self.total_info += 1,
        }
    }

    fn plus(self, o: Summary) -> Summary {
        Summary {
            total_pass: self.total_pass + o.total_pass,
            total_fail: self.total_fail + o.total_fail,
            total_warn: self.total_warn + o.total_warn,
            total_info: self.total_info + o.total_info,
        }
    }
}

/// kube-bench's `node_type` of a benchmark section (the `type:` of its controls file).
fn node_type(section: &str) -> &'static str {
    match section {
        "2" => "etcd",
        _ => "master",
    }
}

/// What the check read, as words in kube-bench's `audit` field. kube-bench puts its shell
/// command there; kubeharden reads no shell output, so it says what it read instead.
fn audit_words(r: &CheckResult) -> String {
    let bin = r.check.component.binary();
    let list = |ps: &[std::path::PathBuf]| {
        ps.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    match (r.source, &r.manifest) {
        (Source::Manifest, Some(m)) => {
            format!(
                "kubeharden: the {bin} container's command in {}",
                m.display()
            )
        }
        (Source::Manifest, None) => format!("kubeharden: the {bin} container's command"),
        (Source::Running, _) => format!("kubeharden: /proc/PID/cmdline of the running {bin}"),
        (Source::File, _) => format!(
            "stat -c 'permissions=%a ownership=%U:%G' {}",
            list(&r.targets)
        ),
        (Source::None, _) if r.check.kind == CheckType::ManualNoTests => String::new(),
        (Source::None, _) => format!("kubeharden: no {bin} manifest or process found"),
    }
}

fn test(r: &CheckResult) -> Test {
    let c = &r.check;
    let manual = c.kind == CheckType::ManualNoTests;
    let mut reason = r.notes.join("; ");
    if manual && reason.is_empty() {
        // kube-bench's words for a `type: manual` check (check.go).
        reason = "Test marked as a manual test".to_string();
    }
    Test {
        test_number: c.id.to_string(),
        test_desc: c.text.to_string(),
        audit: audit_words(r),
        audit_env: String::new(),
        audit_config: String::new(),
        kind: if manual { "manual" } else { "" }.to_string(),
        remediation: r.remediation.clone(),
        // kube-bench appends the remediation to test_info after running a check.
        test_info: vec![r.remediation.clone()],
        status: r.status.name().to_string(),
        actual_value: r.found.clone(),
        scored: c.scored(),
        is_multiple: r.source == Source::File && r.targets.len() > 1,
        expected_result: r.expected.clone(),
        reason,
    }
}

fn group(id: &str, rs: &[&CheckResult]) -> Group {
    let mut s = Summary::default();
    for r in rs {
        s.add(r.status);
    }
    Group {
        section: id.to_string(),
        kind: String::new(),
        pass: s.total_pass,
        fail: s.total_fail,
        warn: s.total_warn,
        info: s.total_info,
        desc: title(id).to_string(),
        results: rs.iter().map(|r| test(r)).collect(),
    }
}

/// Items in first-seen order, grouped by key (results are in benchmark order already).
fn runs<'a, K: PartialEq + Copy>(
    rs: &[&'a CheckResult],
    key: impl Fn(&CheckResult) -> K,
) -> Vec<(K, Vec<&'a CheckResult>)> {
    let mut out: Vec<(K, Vec<&CheckResult>)> = Vec::new();
    for r in rs {
        let k = key(r);
        match out.iter_mut().find(|(kk, _)| *kk == k) {
            Some((_, v)) => v.push(r),
            None => out.push((k, vec![r])),
        }
    }
    out
}

/// The document. `detected_version`: the Kubernetes version ("1.30") the benchmark was
/// chosen from, as kube-bench's `detected_version`; empty leaves the field out.
pub fn document(report: &AuditReport, detected_version: &str) -> Document {
    let all: Vec<&CheckResult> = report.results.iter().collect();
    let mut controls = Vec::new();
    for (section, rs) in runs(&all, |r| r.check.section()) {
        let tests: Vec<Group> = runs(&rs, |r| r.check.group())
            .into_iter()
            .map(|(g, grs)| group(g, &grs))
            .collect();
        let mut summary = Summary::default();
        for r in &rs {
            summary.add(r.status);
        }
        controls.push(Controls {
            id: section.to_string(),
            version: report.benchmark.name().to_string(),
            detected_version: detected_version.to_string(),
            text: title(section).to_string(),
            node_type: node_type(section).to_string(),
            tests,
            summary,
        });
    }
    let totals = controls
        .iter()
        .fold(Summary::default(), |a, c| a.plus(c.summary));
    Document { controls, totals }
}

/// kube-bench's `detected_version` ("1.30"): from the kube-apiserver manifest's image tag,
/// as the benchmark is chosen; empty when there is none.
pub fn detected_version(manifests_dir: &std::path::Path) -> String {
    let path = crate::cis::source::manifest_path(manifests_dir, crate::cis::Component::ApiServer);
    crate::cis::source::Pod::load(&path)
        .ok()
        .and_then(|p| p.image)
        .and_then(|i| crate::cis::benchmark::image_version(&i))
        .map(|(maj, min)| format!("{maj}.{min}"))
        .unwrap_or_default()
}
