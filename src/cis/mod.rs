//! CIS Kubernetes Benchmark audit of a control-plane node: kube-bench's rules (cis-1.12 and
//! cis-1.11, sections 1.1–1.4 and 2) as data, evaluated against the static pod manifests,
//! the files kubeadm lays out, and (where visible) the running processes.
//!
//! Verdicts have kube-bench's meaning (PASS; FAIL for a scored check that fails; WARN for an
//! unscored one or a `type: manual` check). Values are read as the components read their
//! command lines; where kube-bench would read the same input differently, the check carries
//! kube-bench's verdict too and a note saying why (`flags.rs`).
//!
//! Modules: `rules` (vocabulary) and `table` (the checks), `benchmark` (selection and
//! variants), `flags` (command-line readings), `eval` (ops), `files` (stat), `source`
//! (manifests and /proc), `check` (one check's evaluation; `encryption` for 1.2.28),
//! `report` (text/json/junit).
//!
//! The entry point is [`run`]; [`AuditReport`] is what a remediator consumes: per check id the
//! status, the manifest it reads, what was found, the notes, and the rule's `fix` steps.

pub mod benchmark;
mod check;
mod encryption;
pub mod eval;
pub mod files;
pub mod flags;
pub mod kube_bench;
pub mod prometheus;
mod regex;
pub mod report;
pub mod rules;
pub mod source;
mod table;

pub use benchmark::BenchmarkId;
pub use rules::{Audit, Check, CheckType, Component, FileTarget, NeededFile, Remediation};
pub use table::{CIPHERS_1_11, CIPHERS_1_12, STRONG_CIPHERS};

use source::{Pod, Process};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// kube-bench's verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Pass,
    Fail,
    Warn,
    Info,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Warn => "WARN",
            Status::Info => "INFO",
        }
    }

    /// The verdict of tests that failed (or could not run): FAIL if scored, else WARN.
    pub fn failed(scored: bool) -> Status {
        if scored {
            Status::Fail
        } else {
            Status::Warn
        }
    }

    fn of(pass: bool, scored: bool) -> Status {
        if pass {
            Status::Pass
        } else {
            Status::failed(scored)
        }
    }
}

/// What a verdict was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The static pod manifest's command line.
    Manifest,
    /// A running process's command line (there is no usable manifest).
    Running,
    /// `stat` of files.
    File,
    /// Nothing to read: no manifest and no process.
    None,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Manifest => "manifest",
            Source::Running => "running",
            Source::File => "file",
            Source::None => "none",
        }
    }
}

/// What to audit.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub manifests_dir: PathBuf,
    pub kubernetes_dir: PathBuf,
    /// `None`: chosen from the kube-apiserver image version.
    pub benchmark: Option<BenchmarkId>,
    /// Check ids, or group/section ids (`1.2`, `2`); empty: all.
    pub checks: Vec<String>,
    /// Look at running processes in /proc.
    pub processes: bool,
    /// Where CNI network files live (kube-bench: /var/lib/cni/networks).
    pub cni_networks: PathBuf,
}

impl AuditOptions {
    pub fn new(manifests_dir: PathBuf, kubernetes_dir: PathBuf) -> AuditOptions {
        AuditOptions {
            manifests_dir,
            kubernetes_dir,
            benchmark: None,
            checks: Vec::new(),
            processes: true,
            cni_networks: PathBuf::from("/var/lib/cni/networks"),
        }
    }
}

/// A running process's verdict on a check, when it differs from the manifest in the values
/// the check reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningView {
    pub pid: i32,
    pub status: Status,
    pub found: String,
}

/// One check's result.
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// The rule (id, text, component, tests, remediation text, `fix`, `dangerous`).
    pub check: Check,
    pub status: Status,
    pub source: Source,
    /// The manifest the check reads (flag checks) or stats (1.1.1–1.1.8).
    pub manifest: Option<PathBuf>,
    /// kube-bench's expected result, in words.
    pub expected: String,
    /// The rule's remediation text with this node's paths in place of kubeadm's defaults.
    pub remediation: String,
    /// What was found ("not found" for a missing file or component).
    pub found: String,
    /// kube-bench's verdict on the same input (differs from `status` only with a note).
    pub kube_bench_status: Status,
    pub notes: Vec<String>,
    /// Running processes whose reading differs from the manifest's.
    pub running: Vec<RunningView>,
    /// File checks: every file examined (missing named files included) and those that fail.
    pub targets: Vec<PathBuf>,
    pub failing: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub pass: usize,
    pub fail: usize,
    pub warn: usize,
    pub info: usize,
}

/// The audit's result.
#[derive(Debug, Clone)]
pub struct AuditReport {
    pub benchmark: BenchmarkId,
    /// Why this benchmark (e.g. "kube-apiserver image v1.30 → cis-1.11").
    pub benchmark_reason: String,
    pub results: Vec<CheckResult>,
}

impl AuditReport {
    pub fn get(&self, id: &str) -> Option<&CheckResult> {
        self.results.iter().find(|r| r.check.id == id)
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for r in &self.results {
            match r.status {
                Status::Pass => s.pass += 1,
                Status::Fail => s.fail += 1,
                Status::Warn => s.warn += 1,
                Status::Info => s.info += 1,
            }
        }
        s
    }

    /// What `remediate` works on: automated checks that FAIL.
    pub fn failing_automated(&self) -> impl Iterator<Item = &CheckResult> {
        self.results
            .iter()
            .filter(|r| r.status == Status::Fail && r.check.kind == CheckType::Automated)
    }

    pub fn has_fail(&self) -> bool {
        self.results.iter().any(|r| r.status == Status::Fail)
    }
}

/// A component's manifest as found.
#[derive(Debug, Clone)]
pub(crate) enum PodState {
    Missing(PathBuf),
    Broken(PathBuf, String),
    Ok(Box<Pod>),
}

/// Everything the checks read, gathered once.
pub(crate) struct Node {
    pub manifests_dir: PathBuf,
    pub pods: BTreeMap<Component, PodState>,
    pub procs: BTreeMap<Component, Vec<Process>>,
    pub files: files::FileEnv,
    /// Notes about the etcd data dir's path (mapping, kube-bench's path).
    pub data_dir_notes: Vec<String>,
}

/// `--check` ids: a check id, or a group/section id selecting its checks.
fn select(checks: Vec<Check>, wanted: &[String]) -> Result<Vec<Check>, String> {
    if wanted.is_empty() {
        return Ok(checks);
    }
    for w in wanted {
        if !checks
            .iter()
            .any(|c| c.id == w || c.group() == w || c.section() == w)
        {
            return Err(format!(
                "unknown check {w:?} (ids look like 1.2.15; groups like 1.2)"
            ));
        }
    }
    Ok(checks
        .into_iter()
        .filter(|c| {
            wanted
                .iter()
                .any(|w| c.id == w || c.group() == w || c.section() == w)
        })
        .collect())
}

fn choose_benchmark(opts: &AuditOptions, node: &Node) -> Result<(BenchmarkId, String), String> {
    if let Some(b) = opts.benchmark {
        return Ok((b, format!("{} (--benchmark)", b.name())));
    }
    let image = match node.pods.get(&Component::ApiServer) {
        Some(PodState::Ok(p)) => p.image.clone(),
        _ => None,
    };
    let fallback = BenchmarkId::Cis112;
    let Some(image) = image else {
        return Ok((
            fallback,
            format!(
                "{} (no readable kube-apiserver manifest to take the Kubernetes version from; use --benchmark)",
                fallback.name()
            ),
        ));
    };
    match benchmark::image_version(&image) {
        Some((maj, min)) => {
            let b = BenchmarkId::for_version(maj, min)?;
            Ok((
                b,
                format!(
                    "{} (kube-apiserver image {image}: Kubernetes v{maj}.{min})",
                    b.name()
                ),
            ))
        }
        None => Ok((
            fallback,
            format!(
                "{} (no version in the kube-apiserver image {image:?}; use --benchmark)",
                fallback.name()
            ),
        )),
    }
}

fn gather(opts: &AuditOptions) -> Node {
    let mut pods = BTreeMap::new();
    let mut procs = BTreeMap::new();
    let mut fenv = files::FileEnv {
        kubernetes_dir: opts.kubernetes_dir.clone(),
        cni_networks: opts.cni_networks.clone(),
        ..Default::default()
    };
    for c in Component::PODS {
        let path = source::manifest_path(&opts.manifests_dir, c);
        fenv.manifests.insert(c, path.clone());
        let state = if path.symlink_metadata().is_err() {
            PodState::Missing(path)
        } else {
            match Pod::load(&path) {
                Ok(p) => PodState::Ok(Box::new(p)),
                Err(e) => PodState::Broken(path, e),
            }
        };
        pods.insert(c, state);
        let found = if opts.processes {
            source::find_processes(c.binary())
        } else {
            Vec::new()
        };
        procs.insert(c, found);
    }
    if opts.processes {
        // 1.1.9/1.1.10 read a running kubelet's --cni-conf-dir (pflag, as the API server's).
        for k in source::find_processes("kubelet") {
            let f = flags::Flags::parse(Component::ApiServer, &k.argv, true);
            fenv.cni_conf_dirs
                .extend(f.value("--cni-conf-dir").map(PathBuf::from));
        }
    }
    let mut node = Node {
        manifests_dir: opts.manifests_dir.clone(),
        pods,
        procs,
        files: fenv,
        data_dir_notes: Vec::new(),
    };
    check::locate_data_dir(&mut node);
    node
}

/// Runs the audit. `Err` is a usage error: an unknown `--check` id, or a Kubernetes version
/// whose benchmark this tool does not carry.
pub fn run(opts: &AuditOptions) -> Result<AuditReport, String> {
    let node = gather(opts);
    let (benchmark, benchmark_reason) = choose_benchmark(opts, &node)?;
    let checks = select(benchmark.checks(), &opts.checks)?;
    let results = checks.iter().map(|c| check::evaluate(c, &node)).collect();
    Ok(AuditReport {
        benchmark,
        benchmark_reason,
        results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_by_id_group_section() {
        let all = BenchmarkId::Cis112.checks();
        let n = |w: &[&str]| {
            select(
                all.clone(),
                &w.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .map(|v| v.len())
        };
        assert_eq!(n(&[]), Ok(67));
        assert_eq!(n(&["1.2.15"]), Ok(1));
        assert_eq!(n(&["1.2"]), Ok(30));
        assert_eq!(n(&["2"]), Ok(7));
        assert_eq!(n(&["1"]), Ok(60));
        assert_eq!(n(&["1.4", "2.1"]), Ok(3));
        assert!(n(&["9.9"]).is_err());
        assert!(n(&["1.2.1 "]).is_err());
    }

    #[test]
    fn status_words() {
        assert_eq!(Status::of(false, true), Status::Fail);
        assert_eq!(Status::of(false, false), Status::Warn);
        assert_eq!(Status::of(true, false).name(), "PASS");
    }
}
