//! Benchmark: what batching buys. `remediate --all` applies the failing CIS checks as ONE
//! health-gated transaction per component (one restart each); the alternative is one check per
//! transaction (`remediate --check ID`, one at a time), as a person running `kubeharden set`
//! flag by flag would. Both arms start from the same fresh kubeadm v1.30 node, run by the kubelet
//! simulator (`examples/kubelet_sim`: fake kube-* components, the real etcd) with a 5 s restart
//! delay (the kubelet's file source notices a changed manifest after up to ~20 s; 5 s keeps the
//! run short), and apply the same checks: the ids of `remediate --all --dry-run`'s plan.
//!
//! Reported: restarts (process starts the sim logged after the start of the arm, per pod),
//! transactions, wall time, and the automated manifest checks still failing afterwards (both
//! arms end at the same state). No assertions.
//!
//! `cargo bench --bench remediate`; `KUBEHARDEN_BENCH_QUICK=1` = one iteration (else 3).
//! Needs /usr/bin/etcd (or `KUBEHARDEN_ETCD_BIN`).

#[path = "../tests/gate_support/mod.rs"]
mod gate_support;

use gate_support::{free_port, manifests, wait_http_status, KubeDir, Manifest, Sim};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RESTART_DELAY: Duration = Duration::from_secs(5);
const HEALTH_TIMEOUT: &str = "90";
const PODS: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

struct Node {
    kd: KubeDir,
    state: tempfile::TempDir,
    pods: Vec<Manifest>,
}

impl Node {
    fn new() -> Node {
        let kd = KubeDir::new();
        let client = free_port();
        let etcd = manifests::etcd(&kd, client, free_port(), free_port());
        let servers = format!("--etcd-servers=https://127.0.0.1:{client}");
        let pods = vec![
            etcd,
            manifests::apiserver(&kd, free_port(), &[&servers]),
            manifests::controller_manager(&kd, free_port()),
            manifests::scheduler(&kd, free_port()),
        ];
        for m in &pods {
            kd.install(m);
        }
        Node {
            kd,
            state: tempfile::Builder::new()
                .prefix("kubeharden-bench-state-")
                .tempdir()
                .expect("tempdir"),
            pods,
        }
    }

    /// `kubeharden -o json …`: (exit code, JSON).
    fn run(&self, args: &[&str]) -> (i32, Value) {
        let out = Command::new(env!("CARGO_BIN_EXE_kubeharden"))
            .env_remove("KUBEHARDEN_CRASH_AT")
            .args(["-o", "json", "--state-dir"])
            .arg(self.state.path())
            .arg("--manifests-dir")
            .arg(self.kd.manifests())
            .arg("--kubernetes-dir")
            .arg(self.kd.root())
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .expect("run kubeharden");
        (
            out.status.code().unwrap_or(-1),
            serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        )
    }

    fn boot(&self) -> Sim {
        let sim = Sim::start(&self.kd.manifests(), RESTART_DELAY);
        for m in &self.pods {
            // The first start also waits the restart delay.
            if sim
                .wait_for_argv(&m.argv, RESTART_DELAY + Duration::from_secs(30))
                .is_none()
            {
                panic!("{} did not start: {}", m.name, sim.pod_log(&m.name));
            }
            let path = match m.name.as_str() {
                "etcd" => "/health?serializable=false",
                "kube-apiserver" => "/readyz",
                _ => "/healthz",
            };
            wait_http_status(&m.probe_url(path), 200, Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("{} not healthy: {e}", m.name));
        }
        sim
    }

    /// Automated checks of sections 1.2–2 that FAIL.
    fn failing_manifest_checks(&self) -> usize {
        let (_, a) = self.run(&["audit"]);
        a["checks"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter(|c| {
                        let id = c["id"].as_str().unwrap_or("");
                        !id.starts_with("1.1.") && c["type"] == "automated" && c["status"] == "FAIL"
                    })
                    .count()
            })
            .unwrap_or(0)
    }
}

fn starts(sim: &Sim) -> usize {
    PODS.iter().map(|p| sim.events("start", p).len()).sum()
}

#[derive(Default, Clone)]
struct Sample {
    restarts: usize,
    transactions: usize,
    wall: Duration,
    failing_after: usize,
    failed_runs: usize,
}

fn batched() -> Sample {
    let node = Node::new();
    let sim = node.boot();
    let s0 = starts(&sim);
    let t0 = Instant::now();
    let (code, j) = node.run(&["remediate", "--all", "--health-timeout", HEALTH_TIMEOUT]);
    let wall = t0.elapsed();
    Sample {
        restarts: starts(&sim) - s0,
        transactions: j["transactions"].as_array().map_or(0, Vec::len),
        wall,
        failing_after: node.failing_manifest_checks(),
        failed_runs: usize::from(code != 0),
    }
}

fn one_by_one() -> Sample {
    let node = Node::new();
    let sim = node.boot();
    // The same checks as --all: its plan.
    let (_, plan) = node.run(&["remediate", "--all", "--dry-run"]);
    let mut ids: Vec<String> = Vec::new();
    for b in plan["plan"]["batches"].as_array().into_iter().flatten() {
        for c in b["checks"].as_array().into_iter().flatten() {
            ids.push(c.as_str().unwrap_or_default().to_string());
        }
    }
    for c in plan["plan"]["file_checks"].as_array().into_iter().flatten() {
        ids.push(c.as_str().unwrap_or_default().to_string());
    }
    let s0 = starts(&sim);
    let t0 = Instant::now();
    let mut transactions = 0;
    let mut failed_runs = 0;
    for id in &ids {
        let (code, j) = node.run(&[
            "remediate",
            "--check",
            id,
            "--health-timeout",
            HEALTH_TIMEOUT,
        ]);
        transactions += j["transactions"].as_array().map_or(0, Vec::len);
        failed_runs += usize::from(code != 0);
    }
    let wall = t0.elapsed();
    Sample {
        restarts: starts(&sim) - s0,
        transactions,
        wall,
        failing_after: node.failing_manifest_checks(),
        failed_runs,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that is not ours means "not me".
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"remediate".contains(a.as_str()))
    {
        return;
    }
    if !gate_support::etcd_or_skip("bench remediate") {
        return;
    }
    let quick = std::env::var("KUBEHARDEN_BENCH_QUICK").is_ok_and(|v| v == "1");
    let iterations = if quick { 1 } else { 3 };
    eprintln!(
        "remediate bench: {iterations} iteration(s), restart delay {:?}",
        RESTART_DELAY
    );
    let mut results: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    for i in 0..iterations {
        let a = batched();
        eprintln!(
            "  #{i} batched: {} restarts, {:.1} s",
            a.restarts,
            a.wall.as_secs_f64()
        );
        results.entry("batched").or_default().push(a);
        let b = one_by_one();
        eprintln!(
            "  #{i} one check per transaction: {} restarts, {:.1} s",
            b.restarts,
            b.wall.as_secs_f64()
        );
        results.entry("single").or_default().push(b);
    }

    let row = |name: &str, s: &[Sample]| -> (f64, f64) {
        let restarts = median(s.iter().map(|x| x.restarts as f64).collect());
        let wall = median(s.iter().map(|x| x.wall.as_secs_f64()).collect());
        let min = s
            .iter()
            .map(|x| x.wall.as_secs_f64())
            .fold(f64::INFINITY, f64::min);
        let max = s.iter().map(|x| x.wall.as_secs_f64()).fold(0.0, f64::max);
        println!(
            "| {name} | {} | {restarts:.0} | {wall:.1} | {min:.1}–{max:.1} | {} | {} |",
            median(s.iter().map(|x| x.transactions as f64).collect()),
            s.iter().map(|x| x.failing_after).max().unwrap_or(0),
            s.iter().map(|x| x.failed_runs).sum::<usize>(),
        );
        (restarts, wall)
    };
    println!();
    println!(
        "### remediate: batched vs one check per transaction (kubelet sim, restart delay {} s, {iterations} iteration(s), medians)",
        RESTART_DELAY.as_secs()
    );
    println!();
    println!("| approach | transactions | restarts | wall time (s) | wall min–max (s) | automated manifest checks FAIL after | non-zero exits |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let (ra, wa) = row(
        "`remediate --all` (one txn per component)",
        &results["batched"],
    );
    let (rb, wb) = row("`remediate --check ID`, one at a time", &results["single"]);
    println!(
        "| **ratio one-at-a-time / batched** | | {:.2}× | {:.2}× | | | |",
        rb / ra.max(1.0),
        wb / wa.max(1e-9)
    );
    println!();
    println!(
        "(automated manifest checks FAIL after: 1.2.5 stays FAIL by design — dangerous, not in --all.)"
    );
}
