//! End-to-end tests of `kubeharden remediate`: the real binary hardens a throw-away kubeadm
//! v1.30 node while `examples/kubelet_sim` (tests/gate_support) runs its four static pods —
//! the fake kube-apiserver, kube-controller-manager and kube-scheduler of
//! `examples/fake_component` and the real etcd.
//!
//! Every test has its own node (temp dirs), state dir, simulator and free ports, so they run in
//! parallel. Tests that need no running pods (`--no-health-gate`, `--dry-run` checks) run no
//! simulator, or only to prove that nothing restarted.
//!
//! One side effect outside the temp dirs: CIS 1.2.16 sets kubeadm's
//! `--audit-log-path=/var/log/kubernetes/audit/audit.log` (a fixed host path, as on a real
//! node), and the fake kube-apiserver creates that file like the real one does.

mod gate_support;

use gate_support::{
    cmdline, etcd_or_skip, free_port, manifests, pid_alive, wait_http_status, wait_pid_gone,
    wait_until, KubeDir, Manifest, Sim, SimConfig,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Waits for pods and processes.
const T: Duration = Duration::from_secs(30);
/// `--health-timeout` of the gated runs.
const HEALTH_TIMEOUT: &str = "25";

// ---------------------------------------------------------------- running kubeharden

/// A node (its /etc/kubernetes and /var/lib/etcd) and kubeharden's state dir.
struct Node {
    kd: KubeDir,
    state: tempfile::TempDir,
}

/// One finished kubeharden run.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    json: Value,
    wall: Duration,
}

impl Run {
    fn dump(&self) -> String {
        format!(
            "exit {} after {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.code, self.wall, self.stdout, self.stderr
        )
    }
    fn transactions(&self) -> Vec<Value> {
        self.json["transactions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
    /// `[{"check": id, "reason": …}]` → ids.
    fn ids(&self, key: &str) -> Vec<String> {
        self.json[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        v => v["check"].as_str().unwrap_or("?").to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    fn skip_reason(&self, id: &str) -> Option<String> {
        self.json["skipped"]
            .as_array()?
            .iter()
            .find(|s| s["check"] == id)
            .map(|s| s["reason"].as_str().unwrap_or("").to_string())
    }
}

impl Node {
    fn new() -> Node {
        Node {
            kd: KubeDir::new(),
            state: tempfile::Builder::new()
                .prefix("kubeharden-state-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    /// `kubeharden [-o json] --state-dir … --manifests-dir … --kubernetes-dir … ARGS`.
    fn command(&self, json: bool, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kubeharden"));
        for v in [
            "KUBEHARDEN_STATE_DIR",
            "KUBEHARDEN_MANIFESTS_DIR",
            "KUBEHARDEN_KUBERNETES_DIR",
            "KUBEHARDEN_RECOVERY_POLICY",
            "KUBEHARDEN_CRASH_AT",
        ] {
            c.env_remove(v);
        }
        if json {
            c.args(["-o", "json"]);
        }
        c.args(["--lock-timeout", "10", "--state-dir"])
            .arg(self.state.path())
            .arg("--manifests-dir")
            .arg(self.kd.manifests())
            .arg("--kubernetes-dir")
            .arg(self.kd.root())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn spawn(&self, args: &[&str]) -> (Child, Instant) {
        let t0 = Instant::now();
        (
            self.command(true, args).spawn().expect("spawn kubeharden"),
            t0,
        )
    }

    /// With `-o json`.
    fn run(&self, args: &[&str]) -> Run {
        let (child, t0) = self.spawn(args);
        finish(child, t0)
    }

    /// Text output.
    fn run_text(&self, args: &[&str]) -> Run {
        let t0 = Instant::now();
        let child = self.command(false, args).spawn().expect("spawn kubeharden");
        finish(child, t0)
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.kd.manifest_path(file)).expect("read manifest")
    }

    /// `history FILE` versions.
    fn history(&self, file: &str) -> Vec<Value> {
        let h = self.run(&["history", file]);
        assert_eq!(h.code, 0, "{}", h.dump());
        h.json["versions"].as_array().expect("versions").clone()
    }

    /// `audit -o json`: check id → check object.
    fn audit(&self) -> BTreeMap<String, Value> {
        let a = self.run(&["audit"]);
        assert!(matches!(a.code, 0 | 1), "{}", a.dump());
        a.json["checks"]
            .as_array()
            .unwrap_or_else(|| panic!("no checks: {}", a.dump()))
            .iter()
            .map(|c| (c["id"].as_str().unwrap().to_string(), c.clone()))
            .collect()
    }
}

fn finish(child: Child, t0: Instant) -> Run {
    let out = child.wait_with_output().expect("wait kubeharden");
    let wall = t0.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout,
        stderr,
        json,
        wall,
    }
}

fn flag(argv: &[String], name: &str) -> Option<String> {
    let prefix = format!("--{name}=");
    argv.iter()
        .find_map(|a| a.strip_prefix(&prefix).map(str::to_string))
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn owner_of(p: &Path) -> (u32, u32) {
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid())
}

/// Every regular file under `dir` with its bytes (the state dir before/after a dry run).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                todo.push(p);
            } else if ft.is_file() {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

// ---------------------------------------------------------------- the node's four pods

const PODS: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// A kubeadm v1.30 control plane on free ports: the kube-apiserver's --etcd-servers is the
/// node's etcd.
struct Plane {
    node: Node,
    /// In [`PODS`] order.
    pods: Vec<Manifest>,
}

impl Plane {
    fn new() -> Plane {
        let node = Node::new();
        let client = free_port();
        let etcd = manifests::etcd(&node.kd, client, free_port(), free_port());
        let etcd_servers = format!("--etcd-servers=https://127.0.0.1:{client}");
        let api = manifests::apiserver(&node.kd, free_port(), &[&etcd_servers]);
        let cm = manifests::controller_manager(&node.kd, free_port());
        let sch = manifests::scheduler(&node.kd, free_port());
        let pods = vec![etcd, api, cm, sch];
        for m in &pods {
            node.kd.install(m);
        }
        Plane { node, pods }
    }

    fn pod(&self, name: &str) -> &Manifest {
        self.pods.iter().find(|m| m.name == name).unwrap()
    }

    /// The URLs the pod's probes use, all of which answer 200 when it is healthy.
    fn health_urls(m: &Manifest) -> Vec<String> {
        match m.name.as_str() {
            "etcd" => vec![m.probe_url("/health?serializable=false")],
            "kube-apiserver" => vec![m.probe_url("/livez"), m.probe_url("/readyz")],
            _ => vec![m.probe_url("/healthz")],
        }
    }

    /// Starts the sim and waits until every pod runs its manifest's argv and is healthy.
    fn boot(&self, cfg: SimConfig) -> Sim {
        let sim = Sim::start_with(&self.node.kd.manifests(), cfg);
        for m in &self.pods {
            sim.wait_for_argv(&m.argv, T)
                .unwrap_or_else(|| panic!("{} did not start:\n{}", m.name, sim.pod_log(&m.name)));
        }
        for m in &self.pods {
            for url in Plane::health_urls(m) {
                wait_http_status(&url, 200, T)
                    .unwrap_or_else(|e| panic!("{} not healthy before the test: {e}", m.name));
            }
        }
        sim
    }
}

fn delay(restart_delay: Duration) -> SimConfig {
    SimConfig {
        restart_delay,
        ..SimConfig::default()
    }
}

/// The number of `start` events of each pod so far.
fn start_counts(sim: &Sim) -> BTreeMap<&'static str, usize> {
    PODS.iter()
        .map(|p| (*p, sim.events("start", p).len()))
        .collect()
}

/// The live process of pod `name` (argv[0] is the component's binary): (pid, argv).
fn running(sim: &Sim, name: &str) -> Vec<(u32, Vec<String>)> {
    sim.children()
        .into_iter()
        .filter(|(_, a)| a.first().map(String::as_str) == Some(name))
        .collect()
}

/// Waits until the only process of pod `name` runs exactly `argv`; its pid.
fn wait_running(sim: &Sim, name: &str, argv: &[String]) -> u32 {
    let mut last = Vec::new();
    let ok = wait_until(T, || {
        last = running(sim, name);
        last.len() == 1 && last[0].1 == argv
    });
    assert!(
        ok,
        "{name} does not run the manifest's argv\n want {argv:?}\n have {last:?}"
    );
    last[0].0
}

/// The hostPath volume of the pod for `host_path` and the container's mount of it:
/// (volume type, mountPath, readOnly).
fn host_mount(yaml: &str, host_path: &str) -> Option<(String, String, bool)> {
    let v: serde_norway::Value = serde_norway::from_str(yaml).expect("manifest parses");
    let vol = v["spec"]["volumes"]
        .as_sequence()?
        .iter()
        .find(|vol| vol["hostPath"]["path"].as_str() == Some(host_path))?;
    let name = vol["name"].as_str()?;
    let kind = vol["hostPath"]["type"].as_str().unwrap_or("").to_string();
    let pod = v["metadata"]["name"].as_str().unwrap_or("");
    let c = v["spec"]["containers"]
        .as_sequence()?
        .iter()
        .find(|c| c["name"].as_str() == Some(pod))?;
    let m = c["volumeMounts"]
        .as_sequence()?
        .iter()
        .find(|m| m["name"].as_str() == Some(name))?;
    Some((
        kind,
        m["mountPath"].as_str()?.to_string(),
        m["readOnly"].as_bool().unwrap_or(false),
    ))
}

/// Sections whose automated checks `remediate --all` must make pass (1.1 is files).
fn is_manifest_check(id: &str) -> bool {
    ["1.2.", "1.3.", "1.4.", "2."]
        .iter()
        .any(|p| id.starts_with(p))
}

const DANGEROUS: [&str; 3] = ["1.2.1", "1.2.5", "1.2.11"];

// ---------------------------------------------------------------- 1. --all

#[test]
fn remediate_all_passes_every_automated_manifest_check_with_one_restart_per_component() {
    if !etcd_or_skip("remediate_all") {
        return;
    }
    let plane = Plane::new();
    let node = &plane.node;
    let sim = plane.boot(delay(Duration::ZERO));
    let before: BTreeMap<String, String> = plane
        .pods
        .iter()
        .map(|m| (m.name.clone(), m.yaml.clone()))
        .collect();
    let starts0 = start_counts(&sim);
    assert!(starts0.values().all(|n| *n == 1), "{starts0:?}");

    let plan = node.run(&["remediate", "--all", "--dry-run"]);
    assert_eq!(plan.code, 0, "{}", plan.dump());
    let r = node.run(&["remediate", "--all", "--health-timeout", HEALTH_TIMEOUT]);
    assert_eq!(r.code, 0, "{}", r.dump());
    assert!(r.ids("rolled_back").is_empty(), "{}", r.dump());
    assert!(
        r.json["still_failing"].as_array().unwrap().is_empty(),
        "{}",
        r.dump()
    );
    // The dry run announced exactly the flags that were applied.
    let flags_by_path = |run: &Run| -> BTreeMap<String, Value> {
        run.transactions()
            .iter()
            .filter(|t| !t["flags"].as_array().unwrap().is_empty())
            .map(|t| (t["path"].as_str().unwrap().to_string(), t["flags"].clone()))
            .collect()
    };
    assert_eq!(
        flags_by_path(&plan),
        flags_by_path(&r),
        "{}\n{}",
        plan.dump(),
        r.dump()
    );

    // Every automated manifest check passes now, except the dangerous ones.
    let audit = node.audit();
    for (id, c) in &audit {
        if !is_manifest_check(id) || c["type"] != "automated" {
            continue;
        }
        let want = if DANGEROUS.contains(&id.as_str()) {
            "FAIL"
        } else {
            "PASS"
        };
        assert_eq!(c["status"], want, "{id}: {c}\n{}", r.dump());
    }
    // The dangerous ones were not applied.
    assert_eq!(audit["1.2.5"]["status"], "FAIL");
    for id in ["1.2.1", "1.2.11"] {
        assert_ne!(audit[id]["status"], "PASS", "{id} applied by --all");
    }
    let reason = r.skip_reason("1.2.5").expect("1.2.5 in skipped");
    assert!(reason.contains("not in --all"), "{reason}");
    for id in DANGEROUS {
        assert!(!r.ids("applied").contains(&id.to_string()), "{}", r.dump());
    }
    // The manifests' file modes were fixed too (metadata transactions, no restart).
    for id in [
        "1.1.1", "1.1.3", "1.1.5", "1.1.7", "1.1.13", "1.1.15", "1.1.17",
    ] {
        assert_eq!(audit[id]["status"], "PASS", "{id}: {}", audit[id]);
    }

    // One restart per touched component, none for the others.
    let touched: BTreeSet<String> = plane
        .pods
        .iter()
        .filter(|m| node.read(&m.file_name) != before[&m.name])
        .map(|m| m.name.clone())
        .collect();
    for p in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        assert!(touched.contains(p), "{p} untouched: {}", r.dump());
    }
    let mut pids = BTreeMap::new();
    for m in &plane.pods {
        let argv = manifests::argv_of(&node.read(&m.file_name));
        pids.insert(m.name.clone(), wait_running(&sim, &m.name, &argv));
    }
    let starts1 = start_counts(&sim);
    let restarts: BTreeMap<&str, usize> =
        PODS.iter().map(|p| (*p, starts1[p] - starts0[p])).collect();
    for p in PODS {
        let want = usize::from(touched.contains(p));
        assert_eq!(
            restarts[p],
            want,
            "{p}: restarts {restarts:?}, touched {touched:?}\n{}",
            sim.log_text()
        );
    }
    let total: usize = restarts.values().sum();
    assert!(total <= touched.len());
    assert_eq!(
        r.json["restarts"].as_u64(),
        Some(touched.len() as u64),
        "{}",
        r.dump()
    );

    // One committed batch per touched component, in dependency order, each gated on a new pid
    // that runs the new argv.
    let batches: Vec<Value> = r
        .transactions()
        .into_iter()
        .filter(|t| {
            t["path"].as_str().unwrap().ends_with(".yaml")
                && !t["flags"].as_array().unwrap().is_empty()
        })
        .collect();
    let order: Vec<String> = batches
        .iter()
        .map(|t| {
            Path::new(t["path"].as_str().unwrap())
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let want_order: Vec<String> = PODS
        .iter()
        .filter(|p| touched.contains(**p))
        .map(|p| p.to_string())
        .collect();
    assert_eq!(order, want_order, "{}", r.dump());
    for t in &batches {
        assert_eq!(t["status"], "committed", "{t}");
        let c = &t["gate"]["checks"][0];
        assert_eq!(c["result"], "healthy", "{t}");
        assert_eq!(c["restart_check"], "proc", "{t}");
        let pod = c["component"].as_str().unwrap();
        assert_eq!(c["pid"].as_u64(), Some(pids[pod] as u64), "{t}");
    }
    for m in &plane.pods {
        let argv = manifests::argv_of(&node.read(&m.file_name));
        let pid = pids[&m.name];
        assert_eq!(cmdline(pid).as_deref(), Some(&argv[..]), "{}", m.name);
    }

    // The generated audit policy: under the kubernetes dir, 0600, named by the flag, mounted.
    let policy = node.kd.path("audit-policy.yaml");
    assert!(policy.is_file(), "{} missing", policy.display());
    assert_eq!(mode_of(&policy), 0o600);
    let api_yaml = node.read("kube-apiserver.yaml");
    let api_argv = manifests::argv_of(&api_yaml);
    let policy_s = policy.display().to_string();
    assert_eq!(
        flag(&api_argv, "audit-policy-file").as_deref(),
        Some(&policy_s[..])
    );
    let (kind, mount_path, ro) = host_mount(&api_yaml, &policy_s)
        .unwrap_or_else(|| panic!("no mount of the policy:\n{api_yaml}"));
    assert_eq!(
        (kind.as_str(), mount_path.as_str(), ro),
        ("File", &policy_s[..], true)
    );
    let log_dir = "/var/log/kubernetes/audit";
    let (kind, mount_path, ro) = host_mount(&api_yaml, log_dir)
        .unwrap_or_else(|| panic!("no mount of the log dir:\n{api_yaml}"));
    assert_eq!(
        (kind.as_str(), mount_path.as_str(), ro),
        ("DirectoryOrCreate", log_dir, false)
    );
    assert_eq!(
        flag(&api_argv, "audit-log-path").as_deref(),
        Some("/var/log/kubernetes/audit/audit.log")
    );
    for (name, value) in [
        ("profiling", "false"),
        ("audit-log-maxage", "30"),
        ("audit-log-maxbackup", "10"),
        ("audit-log-maxsize", "100"),
        ("service-account-extend-token-expiration", "false"),
    ] {
        assert_eq!(flag(&api_argv, name).as_deref(), Some(value), "--{name}");
    }
    for p in ["kube-controller-manager.yaml", "kube-scheduler.yaml"] {
        let argv = manifests::argv_of(&node.read(p));
        assert_eq!(flag(&argv, "profiling").as_deref(), Some("false"), "{p}");
    }
    // Nothing crashed along the way: every exit was the kubelet stopping the old process.
    for p in PODS {
        let exits = sim.events("exit", p);
        assert!(
            exits
                .iter()
                .all(|l| l.contains("signal=") || l.contains("exit-code=0")),
            "{p}: {exits:?}\n{}",
            sim.pod_log(p)
        );
    }
    eprintln!("remediate --all: {:?}, restarts {restarts:?}", r.wall);

    // Again: nothing left to do, nothing restarts.
    let again = node.run(&["remediate", "--all", "--health-timeout", HEALTH_TIMEOUT]);
    assert_eq!(again.code, 0, "{}", again.dump());
    assert!(again.ids("applied").is_empty(), "{}", again.dump());
    assert_eq!(again.json["restarts"], 0, "{}", again.dump());
    assert!(
        again.transactions().iter().all(|t| t["status"] == "noop"),
        "{}",
        again.dump()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(start_counts(&sim), starts1, "a pod restarted");
}

/// The manual-type fixes that need generated files (admission configuration for EventRateLimit,
/// encryption configuration) and the cipher list: one batch, one restart, files 0600 and mounted.
#[test]
fn generated_config_files_are_created_mounted_and_accepted_by_the_apiserver() {
    if !etcd_or_skip("generated_files") {
        return;
    }
    let plane = Plane::new();
    let node = &plane.node;
    let sim = plane.boot(delay(Duration::ZERO));
    let starts0 = start_counts(&sim);

    let r = node.run(&[
        "remediate",
        "--check",
        "1.2.9,1.2.27,1.2.28,1.2.29",
        "--health-timeout",
        HEALTH_TIMEOUT,
    ]);
    assert_eq!(r.code, 0, "{}", r.dump());
    let mut applied = r.ids("applied");
    applied.sort();
    assert_eq!(
        applied,
        ["1.2.27", "1.2.28", "1.2.29", "1.2.9"],
        "{}",
        r.dump()
    );
    assert_eq!(r.transactions().len(), 1, "one batch: {}", r.dump());
    assert_eq!(r.json["restarts"], 1);
    let notes = r.json["notes"].to_string();
    assert!(
        notes.contains("kubectl replace"),
        "re-encrypt note: {notes}"
    );

    let yaml = node.read("kube-apiserver.yaml");
    let argv = manifests::argv_of(&yaml);
    for (flag_name, file) in [
        (
            "admission-control-config-file",
            "admission-control-config.yaml",
        ),
        ("encryption-provider-config", "encryption-config.yaml"),
    ] {
        let p = node.kd.path(file);
        let ps = p.display().to_string();
        assert!(p.is_file(), "{ps} missing");
        assert_eq!(mode_of(&p), 0o600, "{ps}");
        assert_eq!(flag(&argv, flag_name).as_deref(), Some(&ps[..]));
        let (kind, mount_path, ro) =
            host_mount(&yaml, &ps).unwrap_or_else(|| panic!("{ps} not mounted:\n{yaml}"));
        assert_eq!(
            (kind.as_str(), mount_path.as_str(), ro),
            ("File", &ps[..], true)
        );
    }
    assert_eq!(
        yaml.matches("encryption-config.yaml").count(),
        3,
        "flag + volume + mount, once each:\n{yaml}"
    );
    assert_eq!(
        flag(&argv, "enable-admission-plugins").as_deref(),
        Some("NodeRestriction,EventRateLimit")
    );
    assert_eq!(
        flag(&argv, "tls-cipher-suites").as_deref(),
        Some(kubeharden::cis::STRONG_CIPHERS)
    );
    wait_running(&sim, "kube-apiserver", &argv);
    let starts1 = start_counts(&sim);
    assert_eq!(starts1["kube-apiserver"] - starts0["kube-apiserver"], 1);
    let audit = node.audit();
    for id in ["1.2.9", "1.2.27", "1.2.28", "1.2.29"] {
        assert_eq!(audit[id]["status"], "PASS", "{id}: {}", audit[id]);
    }
}

// ---------------------------------------------------------------- 2. bisection

/// The operator's own admission configuration: it configures PodSecurity only. kubeharden
/// never overwrites such a file (it is referenced as it is), so enabling EventRateLimit (1.2.9)
/// with it makes kube-apiserver refuse to start — the real one ("couldn't init admission
/// plugin \"EventRateLimit\": limits: Invalid value: …") as the fake one.
const OPERATOR_ADMISSION_CONFIG: &str = "\
# The operator's admission configuration.
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodSecurity
  configuration:
    apiVersion: pod-security.admission.config.k8s.io/v1
    kind: PodSecurityConfiguration
    defaults:
      enforce: baseline
";

#[test]
fn failing_fix_is_isolated_by_bisection_and_the_others_commit() {
    if !etcd_or_skip("bisection") {
        return;
    }
    let plane = Plane::new();
    let node = &plane.node;
    let admission = node
        .kd
        .write("admission-control-config.yaml", OPERATOR_ADMISSION_CONFIG);
    let sim = plane.boot(delay(Duration::ZERO));
    let api = plane.pod("kube-apiserver");
    let starts0 = sim.events("start", "kube-apiserver").len();

    let r = node.run(&[
        "remediate",
        "--check",
        "1.2.15,1.2.9,1.2.16,1.2.17,1.2.18",
        // A fake kube-apiserver that rejects its flags exits within milliseconds, too fast for
        // the gate's /proc poll: each failing step costs the whole timeout (3 steps here).
        "--health-timeout",
        "10",
    ]);
    assert_eq!(r.code, 3, "{}", r.dump());
    assert_eq!(r.ids("rolled_back"), ["1.2.9"], "{}", r.dump());
    let mut applied = r.ids("applied");
    applied.sort();
    assert_eq!(
        applied,
        ["1.2.15", "1.2.16", "1.2.17", "1.2.18"],
        "{}",
        r.dump()
    );

    // The bisection: all five, then [1.2.15 1.2.9] → [1.2.15] [1.2.9], then the other half.
    let steps: Vec<(String, Vec<String>)> = r
        .transactions()
        .iter()
        .map(|t| {
            (
                t["status"].as_str().unwrap().to_string(),
                t["checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    let s = |st: &str, ids: &[&str]| (st.to_string(), ids.iter().map(|i| i.to_string()).collect());
    assert_eq!(
        steps,
        vec![
            s(
                "rolled_back",
                &["1.2.15", "1.2.9", "1.2.16", "1.2.17", "1.2.18"]
            ),
            s("rolled_back", &["1.2.15", "1.2.9"]),
            s("committed", &["1.2.15"]),
            s("rolled_back", &["1.2.9"]),
            s("committed", &["1.2.16", "1.2.17", "1.2.18"]),
        ],
        "{}",
        r.dump()
    );
    for t in r.transactions() {
        let checks = t["gate"]["checks"].as_array().unwrap();
        if t["status"] == "rolled_back" {
            assert_eq!(checks.len(), 2, "{t}");
            assert_eq!(checks[0]["phase"], "change", "{t}");
            assert_eq!(checks[0]["result"], "failed", "{t}");
            assert_eq!(checks[1]["phase"], "rollback", "{t}");
            assert_eq!(checks[1]["result"], "healthy", "{t}");
        } else {
            assert_eq!(checks.len(), 1, "{t}");
            assert_eq!(checks[0]["result"], "healthy", "{t}");
        }
    }
    assert!(sim
        .pod_log("kube-apiserver")
        .contains("couldn't init admission plugin \"EventRateLimit\""));

    // The final manifest: the good flags, not the bad one; the operator's file untouched.
    let after = node.read("kube-apiserver.yaml");
    let argv = manifests::argv_of(&after);
    assert_eq!(flag(&argv, "profiling").as_deref(), Some("false"));
    assert_eq!(flag(&argv, "audit-log-maxage").as_deref(), Some("30"));
    assert_eq!(flag(&argv, "audit-log-maxbackup").as_deref(), Some("10"));
    assert!(!after.contains("EventRateLimit"), "{after}");
    assert!(!after.contains("admission-control-config"), "{after}");
    assert_eq!(
        flag(&argv, "enable-admission-plugins").as_deref(),
        Some("NodeRestriction")
    );
    let policy = node.kd.path("audit-policy.yaml");
    let mut want = api.argv.clone();
    want.extend([
        "--audit-log-maxage=30".to_string(),
        "--audit-log-maxbackup=10".to_string(),
        "--profiling=false".to_string(),
        "--audit-log-path=/var/log/kubernetes/audit/audit.log".to_string(),
        format!("--audit-policy-file={}", policy.display()),
    ]);
    let (mut a, mut w) = (argv.clone(), want);
    a.sort();
    w.sort();
    assert_eq!(a, w, "only the good flags were added");
    // The policy file the first (rolled back) attempt created and removed is there again, once
    // mounted.
    assert!(policy.is_file());
    assert_eq!(mode_of(&policy), 0o600);
    assert!(
        host_mount(&after, &policy.display().to_string()).is_some(),
        "{after}"
    );
    assert_eq!(
        after.matches("name: kubeharden-").count(),
        4,
        "two volumes + two mounts:\n{after}"
    );
    assert_eq!(
        std::fs::read_to_string(&admission).unwrap(),
        OPERATOR_ADMISSION_CONFIG
    );

    // The apiserver runs the final argv.
    let pid = wait_running(&sim, "kube-apiserver", &argv);
    assert_eq!(cmdline(pid).unwrap(), argv);
    let audit = node.audit();
    for id in ["1.2.15", "1.2.16", "1.2.17", "1.2.18"] {
        assert_eq!(audit[id]["status"], "PASS", "{id}");
    }
    assert_ne!(audit["1.2.9"]["status"], "PASS");
    eprintln!(
        "bisection: {:?}; JSON restarts {}; kube-apiserver process starts {}",
        r.wall,
        r.json["restarts"],
        sim.events("start", "kube-apiserver").len() - starts0
    );
}

// ---------------------------------------------------------------- 3. crash mid-batch

/// Starts `remediate --check 1.2.16,1.2.15` (a batch that creates the audit policy file and
/// adds two mounts) and SIGKILLs it while its gate is probing: the new kube-apiserver's /readyz
/// answers 500 for its first 6 s (behavior `ready-after-ms`), so the gate cannot be done before
/// ~8 s after the new process started; the kill comes 1.5 s after that start.
/// Returns the manifest bytes written and the new pod's pid.
fn kill_mid_batch(plane: &Plane, sim: &Sim, pid0: u32) -> (String, u32) {
    kill_mid_batch_with(plane, sim, pid0, 6000)
}

/// [`kill_mid_batch`] with the new pod not ready for its first `not_ready_ms` (≥ 2000).
fn kill_mid_batch_with(plane: &Plane, sim: &Sim, pid0: u32, not_ready_ms: u64) -> (String, u32) {
    let node = &plane.node;
    let api = plane.pod("kube-apiserver");
    sim.set_behavior(
        "kube-apiserver",
        &format!("ready-after-ms {not_ready_ms}\n"),
    );
    let (mut child, _) = node.spawn(&[
        "remediate",
        "--check",
        "1.2.16,1.2.15",
        "--health-timeout",
        "40",
    ]);
    assert!(
        wait_until(T, || node.read("kube-apiserver.yaml") != api.yaml),
        "the batch was never written"
    );
    let after = node.read("kube-apiserver.yaml");
    let argv = manifests::argv_of(&after);
    let pid1 = sim
        .wait_for_new_argv(&argv, &[pid0], T)
        .expect("the sim restarted the pod with the new argv");
    // The gate is probing: the manifest changed and a new process runs, not ready yet.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the gate finished before the kill"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let st = child.wait().unwrap();
    assert!(!st.success());
    sim.clear_behavior("kube-apiserver");

    let s = node.run(&["status"]);
    assert_eq!(s.code, 0, "{}", s.dump());
    assert_eq!(
        s.json["incomplete"].as_array().map(Vec::len),
        Some(1),
        "{}",
        s.dump()
    );
    assert_eq!(node.read("kube-apiserver.yaml"), after);
    assert!(node.kd.path("audit-policy.yaml").is_file());
    (after, pid1)
}

#[test]
fn killed_mid_batch_then_recover_reverts_manifest_and_created_files() {
    if !etcd_or_skip("killed_mid_batch_revert") {
        return;
    }
    let plane = Plane::new();
    let node = &plane.node;
    let api = plane.pod("kube-apiserver");
    let sim = plane.boot(delay(Duration::ZERO));
    let pid0 = wait_running(&sim, "kube-apiserver", &api.argv);
    let (_, pid1) = kill_mid_batch(&plane, &sim, pid0);

    // Plain `recover`: the default policy is revert.
    let r = node.run(&["recover"]);
    assert_eq!(r.code, 0, "{}", r.dump());
    let res = &r.json["resolved"];
    assert_eq!(res.as_array().map(Vec::len), Some(1), "{}", r.dump());
    assert_eq!(res[0]["action"], "reverted", "{}", r.dump());
    assert_eq!(node.read("kube-apiserver.yaml"), api.yaml, "byte-identical");
    let policy = node.kd.path("audit-policy.yaml");
    assert!(!policy.exists(), "{} left behind", policy.display());

    let pid2 = sim
        .wait_for_new_argv(&api.argv, &[pid0, pid1], T)
        .expect("the old argv runs again");
    assert!(wait_pid_gone(pid1, T));
    assert_eq!(wait_running(&sim, "kube-apiserver", &api.argv), pid2);
    for url in Plane::health_urls(api) {
        wait_http_status(&url, 200, T).expect("healthy again");
    }
    let s = node.run(&["status"]);
    assert_eq!(
        s.json["incomplete"].as_array().map(Vec::len),
        Some(0),
        "{}",
        s.dump()
    );
    // The next remediate starts from a clean state and sees both checks failing again.
    let audit = node.audit();
    assert_eq!(audit["1.2.15"]["status"], "FAIL");
    assert_eq!(audit["1.2.16"]["status"], "FAIL");
}

#[test]
fn killed_mid_batch_then_recover_replay_commits_the_batch() {
    if !etcd_or_skip("killed_mid_batch_replay") {
        return;
    }
    let plane = Plane::new();
    let node = &plane.node;
    let api = plane.pod("kube-apiserver");
    let sim = plane.boot(delay(Duration::ZERO));
    let pid0 = wait_running(&sim, "kube-apiserver", &api.argv);
    let (after, pid1) = kill_mid_batch(&plane, &sim, pid0);
    let argv = manifests::argv_of(&after);

    let r = node.run(&["recover", "--policy", "replay"]);
    assert_eq!(r.code, 0, "{}", r.dump());
    assert_eq!(r.json["resolved"][0]["action"], "replayed", "{}", r.dump());
    assert_eq!(node.read("kube-apiserver.yaml"), after);
    let policy = node.kd.path("audit-policy.yaml");
    assert!(policy.is_file());
    assert_eq!(mode_of(&policy), 0o600);
    assert!(pid_alive(pid1));
    assert_eq!(wait_running(&sim, "kube-apiserver", &argv), pid1);

    let s = node.run(&["status"]);
    assert_eq!(
        s.json["incomplete"].as_array().map(Vec::len),
        Some(0),
        "{}",
        s.dump()
    );
    let v = node.history("kube-apiserver.yaml");
    let origins: Vec<&str> = v.iter().map(|x| x["origin"].as_str().unwrap()).collect();
    assert_eq!(origins, ["baseline", "change"], "{v:?}");
    assert!(v[1]["on_disk_until"].is_null());
    let audit = node.audit();
    assert_eq!(audit["1.2.15"]["status"], "PASS");
    assert_eq!(audit["1.2.16"]["status"], "PASS");
    // Nothing left to do for these two.
    let again = node.run(&["remediate", "--check", "1.2.16,1.2.15", "--no-health-gate"]);
    assert_eq!(again.code, 0, "{}", again.dump());
    assert!(again.ids("applied").is_empty(), "{}", again.dump());
}

/// The global `--recovery-policy replay` of a mutating command: the next `remediate` first
/// finishes the killed batch, then does its own work.
#[test]
fn killed_mid_batch_then_next_remediate_with_recovery_policy_replay_commits_it() {
    if !etcd_or_skip("killed_mid_batch_policy_replay") {
        return;
    }
    let plane = Plane::new();
    let node = &plane.node;
    let api = plane.pod("kube-apiserver");
    let sim = plane.boot(delay(Duration::ZERO));
    let pid0 = wait_running(&sim, "kube-apiserver", &api.argv);
    let (after, _) = kill_mid_batch(&plane, &sim, pid0);

    let r = node.run(&[
        "--recovery-policy",
        "replay",
        "remediate",
        "--check",
        "1.2.17",
        "--health-timeout",
        HEALTH_TIMEOUT,
    ]);
    assert_eq!(r.code, 0, "{}", r.dump());
    let now = node.read("kube-apiserver.yaml");
    let argv = manifests::argv_of(&now);
    // The killed batch's flags are there, and the new one.
    for a in manifests::argv_of(&after) {
        assert!(argv.contains(&a), "{a} lost: {}", r.dump());
    }
    assert_eq!(flag(&argv, "audit-log-maxage").as_deref(), Some("30"));
    assert!(node.kd.path("audit-policy.yaml").is_file());
    wait_running(&sim, "kube-apiserver", &argv);
    let s = node.run(&["status"]);
    assert_eq!(
        s.json["incomplete"].as_array().map(Vec::len),
        Some(0),
        "{}",
        s.dump()
    );
}

/// After a killed batch, the next `remediate --all` (default policy: revert) first puts the
/// before content back, so the killed batch's checks fail again and are part of its work: at the
/// end they pass.
#[test]
fn killed_mid_batch_then_remediate_all_replans_after_the_revert() {
    if !etcd_or_skip("killed_mid_batch_all_after_revert") {
        return;
    }
    let plane = Plane::new();
    let node = &plane.node;
    let api = plane.pod("kube-apiserver");
    let sim = plane.boot(delay(Duration::ZERO));
    let pid0 = wait_running(&sim, "kube-apiserver", &api.argv);
    kill_mid_batch(&plane, &sim, pid0);

    let r = node.run(&["remediate", "--all", "--health-timeout", HEALTH_TIMEOUT]);
    assert_eq!(r.code, 0, "{}", r.dump());
    let s = node.run(&["status"]);
    assert_eq!(
        s.json["incomplete"].as_array().map(Vec::len),
        Some(0),
        "{}",
        s.dump()
    );
    let audit = node.audit();
    for id in ["1.2.15", "1.2.16", "1.2.17"] {
        assert_eq!(
            audit[id]["status"],
            "PASS",
            "{id}: {}\n{}",
            audit[id],
            r.dump()
        );
    }
    let argv = manifests::argv_of(&node.read("kube-apiserver.yaml"));
    wait_running(&sim, "kube-apiserver", &argv);
}

/// After a killed batch, the next remediate's recovery puts the before bytes back, but the
/// kubelet has not acted on that yet: the process running is the killed batch's. The gate of the
/// new batch must still prove that this process was replaced (`restart_check: proc`), or it
/// judges the killed batch's process. With a kubelet that takes 5 s to act, a fix that makes
/// kube-apiserver refuse to start (1.2.9 with the operator's admission config) must be rolled
/// back, not committed on the strength of the old process's answers.
#[test]
fn killed_mid_batch_then_next_remediate_still_proves_the_restart() {
    if !etcd_or_skip("killed_mid_batch_restart_proof") {
        return;
    }
    let plane = Plane::new();
    let node = &plane.node;
    let admission = node
        .kd
        .write("admission-control-config.yaml", OPERATOR_ADMISSION_CONFIG);
    let api = plane.pod("kube-apiserver");
    let sim = plane.boot(delay(Duration::from_secs(5)));
    let pid0 = wait_running(&sim, "kube-apiserver", &api.argv);
    let (_, pid1) = kill_mid_batch_with(&plane, &sim, pid0, 2500);

    let r = node.run(&["remediate", "--check", "1.2.9", "--health-timeout", "15"]);
    let t = r
        .transactions()
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("no transaction: {}", r.dump()));
    let change = &t["gate"]["checks"][0];
    assert_eq!(change["restart_check"], "proc", "{}", r.dump());
    if let Some(p) = change["pid"].as_u64() {
        assert_ne!(p, pid1 as u64, "the gate judged the killed batch's process");
    }
    assert_eq!(r.code, 3, "{}", r.dump());
    assert_eq!(r.ids("rolled_back"), ["1.2.9"], "{}", r.dump());
    assert_eq!(node.read("kube-apiserver.yaml"), api.yaml);
    assert_eq!(
        std::fs::read_to_string(&admission).unwrap(),
        OPERATOR_ADMISSION_CONFIG
    );
    wait_running(&sim, "kube-apiserver", &api.argv);
}

// ---------------------------------------------------------------- 4. --dry-run

#[test]
fn dry_run_changes_nothing_and_prints_the_diffs() {
    if !etcd_or_skip("dry_run") {
        return;
    }
    let plane = Plane::new();
    let node = &plane.node;
    // A journal to compare: the baseline of every manifest.
    let snap = node.run(&["snapshot"]);
    assert_eq!(snap.code, 0, "{}", snap.dump());
    let sim = plane.boot(delay(Duration::ZERO));
    let starts0 = start_counts(&sim);
    let state0 = tree(node.state.path());
    let kd0 = tree(node.kd.root());
    let modes0: Vec<u32> = plane
        .pods
        .iter()
        .map(|m| mode_of(&node.kd.manifest_path(&m.file_name)))
        .collect();

    let t = node.run_text(&["remediate", "--all", "--dry-run"]);
    assert_eq!(t.code, 0, "{}", t.dump());
    let j = node.run(&["remediate", "--all", "--dry-run"]);
    assert_eq!(j.code, 0, "{}", j.dump());

    // Nothing changed: manifests (bytes and modes), the kubernetes dir, the journal.
    for m in &plane.pods {
        assert_eq!(node.read(&m.file_name), m.yaml, "{}", m.file_name);
    }
    let modes1: Vec<u32> = plane
        .pods
        .iter()
        .map(|m| mode_of(&node.kd.manifest_path(&m.file_name)))
        .collect();
    assert_eq!(modes0, modes1);
    assert_eq!(tree(node.kd.root()), kd0, "files created or changed");
    assert!(!node.kd.path("audit-policy.yaml").exists());
    assert_eq!(tree(node.state.path()), state0, "the state dir changed");
    let v = node.history("kube-apiserver.yaml");
    assert_eq!(v.len(), 1, "{v:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(start_counts(&sim), starts0, "a pod restarted");

    // The text: a unified diff per component, the files it would create, what it skips.
    let out = &t.stdout;
    let api_path = node.kd.manifest_path("kube-apiserver.yaml");
    assert!(
        out.contains(&format!("--- {}", api_path.display())),
        "{out}"
    );
    for line in [
        "+    - --profiling=false",
        "+    - --audit-log-maxage=30",
        "+    - --audit-log-path=/var/log/kubernetes/audit/audit.log",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
    assert!(out.contains("@@"), "{out}");
    assert!(
        out.contains(&format!(
            "creates {} (mode 600)",
            node.kd.path("audit-policy.yaml").display()
        )),
        "{out}"
    );
    assert!(out.contains("skipped 1.2.5"), "{out}");
    assert!(!out.contains("anonymous-auth"), "{out}");

    // The JSON: one dry_run entry per batch, the plan.
    let txns = j.transactions();
    assert!(!txns.is_empty(), "{}", j.dump());
    assert!(
        txns.iter().all(|t| t["status"] == "dry_run"),
        "{}",
        j.dump()
    );
    let paths: Vec<&str> = txns.iter().map(|t| t["path"].as_str().unwrap()).collect();
    assert!(
        paths.iter().any(|p| p.ends_with("kube-apiserver.yaml")),
        "{paths:?}"
    );
    let batches = j.json["plan"]["batches"].as_array().expect("plan.batches");
    let ids: BTreeSet<&str> = batches
        .iter()
        .flat_map(|b| b["checks"].as_array().unwrap())
        .map(|c| c.as_str().unwrap())
        .collect();
    for id in ["1.2.15", "1.2.16", "1.3.2", "1.4.1"] {
        assert!(ids.contains(id), "{id} not planned: {}", j.dump());
    }
    for id in DANGEROUS {
        assert!(!ids.contains(id), "{id} planned by --all");
    }
}

// ---------------------------------------------------------------- 5. dangerous checks

#[test]
fn dangerous_check_by_id_warns_on_stderr_and_all_never_applies_them() {
    // --no-health-gate: no pods needed.
    let plane = Plane::new();
    let node = &plane.node;

    let r = node.run(&["remediate", "--check", "1.2.1", "--no-health-gate"]);
    assert_eq!(r.code, 0, "{}", r.dump());
    assert!(r.stderr.contains("1.2.1"), "{}", r.dump());
    assert!(r.stderr.contains("risky"), "{}", r.dump());
    assert!(r.stderr.contains("401"), "the risk is named: {}", r.dump());
    assert!(!r.stdout.contains("risky"), "stdout is the JSON only");
    assert_eq!(r.ids("applied"), ["1.2.1"], "{}", r.dump());
    let argv = manifests::argv_of(&node.read("kube-apiserver.yaml"));
    assert_eq!(flag(&argv, "anonymous-auth").as_deref(), Some("false"));

    // --all on a fresh node: 1.2.5 (the only automated one) is skipped with the reason; none of
    // the three is applied.
    let plane = Plane::new();
    let node = &plane.node;
    let r = node.run(&["remediate", "--all", "--no-health-gate"]);
    assert_eq!(r.code, 0, "{}", r.dump());
    let reason = r
        .skip_reason("1.2.5")
        .unwrap_or_else(|| panic!("{}", r.dump()));
    assert!(reason.contains("not in --all"), "{reason}");
    assert!(reason.contains("--check 1.2.5"), "{reason}");
    assert!(reason.contains("kubelet"), "the risk is named: {reason}");
    for id in DANGEROUS {
        assert!(!r.ids("applied").contains(&id.to_string()), "{}", r.dump());
        assert!(
            !r.stderr.contains(&format!("{id} is risky")),
            "--all warned about {id} as if applying it"
        );
    }
    let yaml = node.read("kube-apiserver.yaml");
    for bad in [
        "anonymous-auth",
        "kubelet-certificate-authority",
        "AlwaysPullImages",
    ] {
        assert!(!yaml.contains(bad), "{bad} applied by --all:\n{yaml}");
    }
    let audit = node.audit();
    assert_eq!(audit["1.2.5"]["status"], "FAIL");
    assert_eq!(audit["1.2.1"]["status"], "WARN");
    assert_eq!(audit["1.2.11"]["status"], "WARN");
}

/// 1.2.5's fix names the kubelet CA under the node's kubernetes dir (as the remediation text
/// the audit prints, and as the generated files), not kubeadm's default /etc/kubernetes.
#[test]
fn dangerous_fix_paths_follow_the_kubernetes_dir() {
    let plane = Plane::new();
    let node = &plane.node;
    let audit = node.audit();
    let ca = node.kd.pki().join("ca.crt").display().to_string();
    let text = audit["1.2.5"]["remediation"].as_str().unwrap().to_string();
    assert!(text.contains(&ca), "remediation text: {text}");
    let r = node.run(&["remediate", "--check", "1.2.5", "--no-health-gate"]);
    assert_eq!(r.code, 0, "{}", r.dump());
    let argv = manifests::argv_of(&node.read("kube-apiserver.yaml"));
    assert_eq!(
        flag(&argv, "kubelet-certificate-authority").as_deref(),
        Some(&ca[..]),
        "{}",
        r.dump()
    );
}

// ---------------------------------------------------------------- usage errors

#[test]
fn usage_errors_exit_2_and_change_nothing() {
    let plane = Plane::new();
    let node = &plane.node;
    for args in [
        &["remediate", "--no-health-gate"][..],
        &["remediate", "--check", "9.9.9", "--no-health-gate"],
        &["remediate", "--check", "1.2.15,9.9.9", "--no-health-gate"],
        &[
            "remediate",
            "--all",
            "--check",
            "1.2.15",
            "--no-health-gate",
        ],
        &[
            "remediate",
            "--all",
            "--benchmark",
            "cis-0.1",
            "--no-health-gate",
        ],
        &["remediate", "--all", "--probe", "not a url"],
    ] {
        let r = node.run(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.dump());
        for m in &plane.pods {
            assert_eq!(
                node.read(&m.file_name),
                m.yaml,
                "{args:?} changed {}",
                m.file_name
            );
        }
        assert!(!node.kd.path("audit-policy.yaml").exists());
    }
    // A check that already passes: nothing to do, said so.
    let r = node.run(&["remediate", "--check", "1.2.2", "--no-health-gate"]);
    assert_eq!(r.code, 0, "{}", r.dump());
    assert!(r.ids("applied").is_empty());
    assert_eq!(r.skip_reason("1.2.2").as_deref(), Some("already passes"));
    for m in &plane.pods {
        assert_eq!(node.read(&m.file_name), m.yaml);
    }
}

// ---------------------------------------------------------------- 6. file checks

#[test]
fn file_checks_chmod_and_chown_as_transactions_and_restore_brings_the_old_mode_back() {
    let plane = Plane::new();
    let node = &plane.node;
    let manifest = node.kd.manifest_path("kube-apiserver.yaml");
    let admin = node.kd.path("admin.conf");
    let super_admin = node.kd.path("super-admin.conf");
    std::fs::write(&admin, "apiVersion: v1\nkind: Config\n").unwrap();
    for p in [&manifest, &admin, &super_admin] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::os::unix::fs::chown(&admin, Some(1234), Some(1234)).unwrap();
    let admin_bytes = std::fs::read(&admin).unwrap();
    let manifest_bytes = std::fs::read(&manifest).unwrap();

    let audit = node.audit();
    for id in ["1.1.1", "1.1.13", "1.1.14"] {
        assert_eq!(audit[id]["status"], "FAIL", "{id}: {}", audit[id]);
    }

    let r = node.run(&[
        "remediate",
        "--check",
        "1.1.1,1.1.13,1.1.14",
        "--no-health-gate",
    ]);
    assert_eq!(r.code, 0, "{}", r.dump());
    let mut applied = r.ids("applied");
    applied.sort();
    assert_eq!(applied, ["1.1.1", "1.1.13", "1.1.14"], "{}", r.dump());
    assert_eq!(mode_of(&manifest), 0o600);
    assert_eq!(owner_of(&manifest), (0, 0));
    assert_eq!(mode_of(&admin), 0o600);
    assert_eq!(owner_of(&admin), (0, 0));
    assert_eq!(mode_of(&super_admin), 0o600);
    assert_eq!(std::fs::read(&admin).unwrap(), admin_bytes, "bytes kept");
    assert_eq!(
        std::fs::read(&manifest).unwrap(),
        manifest_bytes,
        "bytes kept"
    );

    // One metadata transaction per file, committed, no gate.
    let txns = r.transactions();
    let by_path: BTreeMap<String, &Value> = txns
        .iter()
        .map(|t| (t["path"].as_str().unwrap().to_string(), t))
        .collect();
    assert_eq!(
        by_path.len(),
        txns.len(),
        "one transaction per file: {}",
        r.dump()
    );
    for p in [&manifest, &admin, &super_admin] {
        let t = by_path
            .get(&p.display().to_string())
            .unwrap_or_else(|| panic!("no transaction for {}: {}", p.display(), r.dump()));
        assert_eq!(t["status"], "committed", "{t}");
        assert_eq!(
            t["files"][0]["after"]["mode"].as_u64().map(|m| m & 0o7777),
            Some(0o600),
            "{t}"
        );
        assert_eq!(t["before"], t["after"], "same bytes: {t}");
    }
    let t = by_path[&admin.display().to_string()];
    let checks: BTreeSet<&str> = t["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(checks, BTreeSet::from(["1.1.13", "1.1.14"]), "{t}");
    assert_eq!(t["files"][0]["before"]["uid"], 1234, "{t}");
    assert_eq!(t["files"][0]["after"]["uid"], 0, "{t}");

    // History: the old metadata (baseline) and the new one (change), same content.
    let admin_s = admin.display().to_string();
    let v = node.history(&admin_s);
    let origins: Vec<&str> = v.iter().map(|x| x["origin"].as_str().unwrap()).collect();
    assert_eq!(origins, ["baseline", "change"], "{v:?}");
    assert_eq!(
        (
            v[0]["mode"].as_u64(),
            v[0]["uid"].as_u64(),
            v[0]["gid"].as_u64()
        ),
        (Some(0o644), Some(1234), Some(1234)),
        "{v:?}"
    );
    assert_eq!(
        (
            v[1]["mode"].as_u64(),
            v[1]["uid"].as_u64(),
            v[1]["gid"].as_u64()
        ),
        (Some(0o600), Some(0), Some(0)),
        "{v:?}"
    );
    assert_eq!(v[0]["hash"], v[1]["hash"]);
    let audit = node.audit();
    for id in ["1.1.1", "1.1.13", "1.1.14"] {
        assert_eq!(audit[id]["status"], "PASS", "{id}: {}", audit[id]);
    }

    // Restore version 1: the old mode and owner are back.
    let back = node.run(&["restore", &admin_s, "--version", "1", "--no-health-gate"]);
    assert_eq!(back.code, 0, "{}", back.dump());
    assert_eq!(mode_of(&admin), 0o644);
    assert_eq!(owner_of(&admin), (1234, 1234));
    assert_eq!(std::fs::read(&admin).unwrap(), admin_bytes);
    let v = node.history(&admin_s);
    let origins: Vec<&str> = v.iter().map(|x| x["origin"].as_str().unwrap()).collect();
    assert_eq!(origins, ["baseline", "change", "restore"], "{v:?}");
    assert_eq!(v[2]["mode"].as_u64(), Some(0o644));

    // The manifest too, by file name.
    let back = node.run(&[
        "restore",
        "kube-apiserver.yaml",
        "--version",
        "1",
        "--no-health-gate",
    ]);
    assert_eq!(back.code, 0, "{}", back.dump());
    assert_eq!(mode_of(&manifest), 0o644);
    assert_eq!(std::fs::read(&manifest).unwrap(), manifest_bytes);
}

// ---------------------------------------------------------------- 7. true exit codes (issue 12)

/// The result of each check in `checks` of a run's JSON.
fn check_results(r: &Run) -> BTreeMap<String, Value> {
    r.json["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks: {}", r.dump()))
        .iter()
        .map(|c| (c["check"].as_str().unwrap().to_string(), c.clone()))
        .collect()
}

/// A node whose kube-scheduler.yaml is a symbolic link (kubeharden never edits through one).
fn plane_with_symlinked_scheduler() -> Plane {
    let plane = Plane::new();
    let link = plane.node.kd.manifest_path("kube-scheduler.yaml");
    let real = plane.node.kd.path("elsewhere/kube-scheduler.yaml");
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    std::fs::rename(&link, &real).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    plane
}

#[test]
fn item2_remediate_error_after_commits_reports_them() {
    let plane = plane_with_symlinked_scheduler();
    let node = &plane.node;
    let r = node.run(&["remediate", "--all", "--no-health-gate"]);
    // Not 2 ("bad input, nothing changed"): batches committed before the error.
    assert_eq!(r.code, 3, "{}", r.dump());
    let committed: Vec<u64> = r.json["committed"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", r.dump()))
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(committed.len() >= 2, "{}", r.dump());
    let txn_paths: BTreeSet<String> = r
        .transactions()
        .iter()
        .filter(|t| t["status"] == "committed")
        .map(|t| t["path"].as_str().unwrap().to_string())
        .collect();
    for f in ["kube-apiserver.yaml", "kube-controller-manager.yaml"] {
        let p = node.kd.manifest_path(f).display().to_string();
        assert!(txn_paths.contains(&p), "{f} not committed: {}", r.dump());
        assert_ne!(
            node.read(f),
            plane.pod(&f[..f.len() - 5]).yaml,
            "{f} unchanged"
        );
    }
    let err = &r.json["error"];
    let sched = node
        .kd
        .manifest_path("kube-scheduler.yaml")
        .display()
        .to_string();
    assert_eq!(err["path"], sched.as_str(), "{}", r.dump());
    assert_eq!(err["exit_code"], 2, "the cause keeps its own class: {err}");
    let msg = err["message"].as_str().unwrap();
    assert!(msg.contains("symbolic link"), "{msg}");
    assert!(msg.contains("committed before it"), "{msg}");
    assert!(!msg.contains("nothing was changed"), "{msg}");
    assert!(r.stderr.contains("stopped at"), "{}", r.dump());
    // Per check: the scheduler's failed, nothing after it started, the others committed.
    let checks = check_results(&r);
    for (id, c) in &checks {
        let res = c["result"].as_str().unwrap();
        if id.starts_with("1.4.") {
            assert_eq!(res, "failed", "{id}: {c}");
        } else if id.starts_with("1.1.") {
            assert_eq!(res, "not_started", "{id}: {c}");
        } else {
            assert!(matches!(res, "committed" | "unchanged"), "{id}: {c}");
        }
    }
    assert!(
        checks.keys().any(|id| id.starts_with("1.4.")),
        "{}",
        r.dump()
    );
    let not_started = r.json["not_started"].as_array().unwrap();
    let planned_file_fix = checks.keys().any(|id| id.starts_with("1.1."));
    assert_eq!(!not_started.is_empty(), planned_file_fix, "{}", r.dump());
    // The scheduler manifest (behind its link) is untouched.
    assert_eq!(
        std::fs::read_to_string(node.kd.path("elsewhere/kube-scheduler.yaml")).unwrap(),
        plane.pod("kube-scheduler").yaml
    );

    // Run again: now nothing is written before the error, so its own code (2) is true.
    let again = node.run(&["remediate", "--all", "--no-health-gate"]);
    assert_eq!(again.code, 2, "{}", again.dump());
    assert!(again.json["committed"].as_array().unwrap().is_empty());
    let msg = again.json["error"]["message"].as_str().unwrap();
    assert!(msg.contains("nothing was changed"), "{msg}");

    // The text output names each transaction and what happened to each check.
    let plane = plane_with_symlinked_scheduler();
    let t = plane
        .node
        .run_text(&["remediate", "--all", "--no-health-gate"]);
    assert_eq!(t.code, 3, "{}", t.dump());
    for txn in &committed {
        assert!(
            t.stdout.contains(&format!("transaction {txn} committed ")),
            "{}",
            t.dump()
        );
    }
    assert!(t.stdout.contains("failed, nothing written"), "{}", t.dump());
    assert!(
        t.stdout.contains("committed in transaction"),
        "{}",
        t.dump()
    );
    assert!(t.stdout.contains("error: stopped at"), "{}", t.dump());
}

/// Makes a file immutable (even root cannot chmod it) until dropped.
struct Immutable(PathBuf);

impl Immutable {
    fn set(p: &Path) -> Option<Immutable> {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(p)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Immutable(p.to_path_buf()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// The exit code of an operating-system error (cli.md: 7).
fn io_exit() -> i32 {
    kubeharden::error::EXIT_IO
}

#[test]
fn item3_remediate_rolled_back_transaction_never_exits_0() {
    let plane = Plane::new();
    let node = &plane.node;
    let admin = node.kd.path("admin.conf");
    std::fs::write(&admin, "apiVersion: v1\nkind: Config\n").unwrap();
    std::fs::set_permissions(&admin, std::fs::Permissions::from_mode(0o644)).unwrap();
    let Some(_guard) = Immutable::set(&admin) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chattr +i is needed in CI (root on ext4/tmpfs)"
        );
        eprintln!("SKIPPED: chattr +i failed (needs root and a file system with attributes)");
        return;
    };
    // 1.1.13 chmods admin.conf, then super-admin.conf. The first cannot be changed: its
    // transaction is rolled back, an I/O error (exit 7) that says so; the second never starts.
    let r = node.run(&["remediate", "--check", "1.1.13", "--no-health-gate"]);
    assert_eq!(r.code, io_exit(), "never 0: {}", r.dump());
    let err = &r.json["error"];
    assert_eq!(
        err["path"],
        admin.display().to_string().as_str(),
        "{}",
        r.dump()
    );
    assert_eq!(err["txn"], 1, "the transaction it began: {}", r.dump());
    assert!(
        err["cause"].as_str().unwrap().contains("rolled back"),
        "{}",
        r.dump()
    );
    assert!(r.ids("applied").is_empty(), "{}", r.dump());
    let c = &check_results(&r)["1.1.13"];
    assert_eq!(
        (c["result"].as_str(), c["txn"].as_u64()),
        (Some("failed"), Some(1)),
        "{c}"
    );
    let not_started = &r.json["not_started"][0]["path"];
    let super_admin = node.kd.path("super-admin.conf");
    assert_eq!(
        not_started,
        super_admin.display().to_string().as_str(),
        "{}",
        r.dump()
    );
    assert_eq!(mode_of(&admin), 0o644);
    let t = node.run_text(&["remediate", "--check", "1.1.13", "--no-health-gate"]);
    assert_eq!(t.code, io_exit(), "{}", t.dump());
    assert!(t.stdout.contains("failed in transaction 2"), "{}", t.dump());

    // A manifest batch whose write fails: the same, not bisected (no fix is to blame for a
    // file that cannot be written), the manifest as before.
    let manifest = node.kd.manifest_path("kube-apiserver.yaml");
    let before = std::fs::read(&manifest).unwrap();
    let _m = Immutable::set(&manifest).expect("chattr +i worked above");
    let r = node.run(&[
        "remediate",
        "--check",
        "1.2.15,1.2.16,1.2.18",
        "--no-health-gate",
    ]);
    assert_eq!(r.code, io_exit(), "{}", r.dump());
    assert!(r.transactions().is_empty(), "no bisection: {}", r.dump());
    assert_eq!(r.json["error"]["txn"], 3, "{}", r.dump());
    for id in ["1.2.15", "1.2.16", "1.2.18"] {
        assert_eq!(check_results(&r)[id]["result"], "failed", "{id}");
    }
    assert_eq!(std::fs::read(&manifest).unwrap(), before);
    // The journal says the transactions were rolled back, not left open.
    let s = node.run(&["status"]);
    assert_eq!(s.json["incomplete"], serde_json::json!([]), "{}", s.dump());
}
