//! End-to-end tests of the health gate: the real `kubeharden` binary edits the manifests of a
//! throw-away node while `examples/kubelet_sim` (tests/gate_support) runs the pods — the fake
//! kube-* components of `examples/fake_component` and the real etcd.
//!
//! Every test has its own node (temp dirs), state dir, simulator and free ports, so they run in
//! parallel. `--health-timeout` is kept small (each test well under ~20 s).

mod gate_support;

use gate_support::{
    cmdline, etcd_or_skip, free_port, http_get, manifests, pid_alive, wait_http_status,
    wait_pid_gone, wait_until, KubeDir, Manifest, Sim, SimConfig,
};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

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
    fn txn(&self) -> &Value {
        &self.json["transactions"][0]
    }
    /// `gate.checks[i]`.
    fn check(&self, i: usize) -> &Value {
        &self.txn()["gate"]["checks"][i]
    }
    fn dump(&self) -> String {
        format!(
            "exit {} after {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.code, self.wall, self.stdout, self.stderr
        )
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

    /// `kubeharden -o json --state-dir … --manifests-dir … --kubernetes-dir … ARGS`.
    fn command(&self, args: &[&str]) -> Command {
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
        c.args(["-o", "json", "--lock-timeout", "10", "--state-dir"])
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
        (self.command(args).spawn().expect("spawn kubeharden"), t0)
    }

    fn run(&self, args: &[&str]) -> Run {
        let (child, t0) = self.spawn(args);
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

fn blake3_hex(s: &str) -> String {
    blake3::hash(s.as_bytes()).to_hex().to_string()
}

fn u32_of(v: &Value) -> u32 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}")) as u32
}

fn ms_of(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The sim's `start` events of a pod: (pid, argv), oldest first.
fn starts(sim: &Sim, pod: &str) -> Vec<(u32, Vec<String>)> {
    sim.events("start", pod)
        .iter()
        .map(|l| {
            let pid = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("pid="))
                .and_then(|p| p.parse().ok())
                .expect("pid= field");
            let argv = l.split_once(" argv=").expect("argv= field").1;
            (pid, serde_json::from_str(argv).expect("argv JSON"))
        })
        .collect()
}

/// Installs `m`, starts a sim with `cfg`, and waits until the pod runs and answers `path`
/// with 200; the pod's pid.
fn boot(node: &Node, m: &Manifest, cfg: SimConfig, health_path: &str) -> (Sim, u32) {
    node.kd.install(m);
    let sim = Sim::start_with(&node.kd.manifests(), cfg);
    let pid = sim
        .wait_for_argv(&m.argv, T)
        .unwrap_or_else(|| panic!("{} did not start", m.name));
    wait_http_status(&m.probe_url(health_path), 200, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{} not healthy before the test: {e}", m.name));
    (sim, pid)
}

fn delay(restart_delay: Duration) -> SimConfig {
    SimConfig {
        restart_delay,
        ..SimConfig::default()
    }
}

/// After a rolled-back change: exit 3, the file holds its before bytes, the change's gate check
/// failed and the rollback's passed, the sim ran the bad argv and then started a NEW process
/// with the old argv, which runs now; the history ends with the rollback version.
fn assert_rolled_back(node: &Node, sim: &Sim, m: &Manifest, pid0: u32, r: &Run, bad: &str) {
    assert_eq!(r.code, 3, "{}", r.dump());
    let t = r.txn();
    assert_eq!(t["status"], "rolled_back", "{}", r.dump());
    assert_eq!(node.read(&m.file_name), m.yaml, "before bytes are back");
    let change = r.check(0);
    assert_eq!(change["phase"], "change", "{}", r.dump());
    assert_eq!(change["result"], "failed", "{}", r.dump());
    assert!(change["reason"].as_str().is_some_and(|s| !s.is_empty()));
    let back = r.check(1);
    assert_eq!(back["phase"], "rollback", "{}", r.dump());
    assert_eq!(back["result"], "healthy", "{}", r.dump());

    // The old process is gone; a new one with the old argv runs, started after a bad one.
    assert!(!pid_alive(pid0), "the original process was never replaced");
    let pid = sim
        .wait_for_argv(&m.argv, T)
        .expect("the old argv runs again");
    assert_ne!(pid, pid0);
    assert_eq!(cmdline(pid).unwrap(), m.argv);
    let s = starts(sim, &m.name);
    let bad_at = s
        .iter()
        .position(|(_, a)| a.iter().any(|x| x == bad))
        .unwrap_or_else(|| panic!("the sim never ran {bad}: {s:?}"));
    let good_at = s
        .iter()
        .rposition(|(p, _)| *p == pid)
        .expect("start event of the running pid");
    assert!(good_at > bad_at, "{s:?}");
    assert!(sim
        .children()
        .iter()
        .all(|(_, a)| a.iter().all(|x| x != bad)));

    // History: baseline, the change (no longer on disk), the rollback (on disk).
    let v = node.history(&m.file_name);
    let origins: Vec<&str> = v.iter().map(|x| x["origin"].as_str().unwrap()).collect();
    assert_eq!(origins, ["baseline", "change", "rollback"], "{v:?}");
    assert_eq!(v[2]["hash"], blake3_hex(&m.yaml));
    assert_eq!(v[1]["txn"], t["txn"]);
    assert!(!v[1]["on_disk_until"].is_null());
    assert!(v[2]["on_disk_until"].is_null());
}

// ---------------------------------------------------------------- 1. a good flag commits

#[test]
fn good_flag_commits_and_the_new_process_runs_the_new_argv() {
    let node = Node::new();
    let m = manifests::apiserver(&node.kd, free_port(), &[]);
    let (sim, pid0) = boot(&node, &m, delay(Duration::ZERO), "/livez");

    let r = node.run(&[
        "set",
        "kube-apiserver.yaml",
        "--flag",
        "profiling=false",
        "--health-timeout",
        "15",
    ]);
    assert_eq!(r.code, 0, "{}", r.dump());
    let t = r.txn();
    assert_eq!(t["status"], "committed", "{}", r.dump());
    let c = r.check(0);
    assert_eq!(c["phase"], "change");
    assert_eq!(c["result"], "healthy", "{}", r.dump());
    assert_eq!(c["restart_check"], "proc", "{}", r.dump());
    assert_eq!(c["restarts"], 0);
    assert_eq!(
        c["audit"],
        "running argv equals the manifest's command + args",
        "{}",
        r.dump()
    );
    // Both kubeadm probes (livez; readyz) were judged.
    let targets: Vec<&str> = c["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        [m.probe_url("/livez"), m.probe_url("/readyz")],
        "{}",
        r.dump()
    );
    assert!(c["probes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["successes"].as_u64().unwrap() >= 3));
    assert!(ms_of(&c["stable_after_ms"]) >= 2000, "{}", r.dump());

    // The manifest has the flag once; the running process has exactly its argv.
    let after = node.read("kube-apiserver.yaml");
    let argv = manifests::argv_of(&after);
    assert_eq!(
        argv.iter().filter(|a| a.starts_with("--profiling")).count(),
        1
    );
    assert!(argv.contains(&"--profiling=false".to_string()));
    let mut expected: Vec<String> = m.argv.clone();
    expected.push("--profiling=false".into());
    let mut got = argv.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "only the flag was added");
    let pid = u32_of(&c["pid"]);
    assert_ne!(pid, pid0);
    assert!(!pid_alive(pid0));
    assert_eq!(cmdline(pid).expect("gate's pid runs"), argv);
    assert_eq!(sim.children(), vec![(pid, argv.clone())]);

    // History: the baseline and the change, which is on disk now.
    let v = node.history("kube-apiserver.yaml");
    let origins: Vec<&str> = v.iter().map(|x| x["origin"].as_str().unwrap()).collect();
    assert_eq!(origins, ["baseline", "change"], "{v:?}");
    assert_eq!(v[0]["hash"], blake3_hex(&m.yaml));
    assert_eq!(v[1]["hash"], blake3_hex(&after));
    assert_eq!(v[1]["txn"], t["txn"]);
    assert!(v[1]["on_disk_until"].is_null());
    assert!(!v[0]["on_disk_until"].is_null());

    // The same flag again: nothing to do, no restart.
    let again = node.run(&["set", "kube-apiserver.yaml", "--flag", "profiling=false"]);
    assert_eq!(again.code, 0, "{}", again.dump());
    assert_eq!(again.txn()["status"], "noop");
    assert!(pid_alive(pid));
}

// ---------------------------------------------------------------- 2. bad flags roll back

#[test]
fn unknown_flag_rolls_back_and_the_old_argv_runs_again() {
    let node = Node::new();
    let m = manifests::apiserver(&node.kd, free_port(), &[]);
    let (sim, pid0) = boot(&node, &m, delay(Duration::ZERO), "/livez");

    // --insecure-port was removed in 1.24: the 1.30 apiserver exits 1 on it.
    let r = node.run(&[
        "set",
        "kube-apiserver.yaml",
        "--flag",
        "insecure-port=0",
        "--health-timeout",
        "6",
    ]);
    assert_rolled_back(&node, &sim, &m, pid0, &r, "--insecure-port=0");
    assert!(sim
        .pod_log("kube-apiserver")
        .contains("Error: unknown flag: --insecure-port"));
    assert!(sim
        .events("exit", "kube-apiserver")
        .iter()
        .any(|l| l.contains("status=exit-code=1")));
}

#[test]
fn missing_file_rolls_back_and_the_old_argv_runs_again() {
    let node = Node::new();
    let m = manifests::apiserver(&node.kd, free_port(), &[]);
    let (sim, pid0) = boot(&node, &m, delay(Duration::ZERO), "/livez");

    let missing = node.kd.pki().join("no-such-audit-policy.yaml");
    let flag = format!("--audit-policy-file={}", missing.display());
    let r = node.run(&[
        "set",
        "kube-apiserver.yaml",
        "--flag",
        &flag[2..],
        "--health-timeout",
        "6",
    ]);
    assert_rolled_back(&node, &sim, &m, pid0, &r, &flag);
    assert!(sim
        .pod_log("kube-apiserver")
        .contains("no such file or directory"));
}

// ---------------------------------------------------------------- 3. 401

#[test]
fn anonymous_auth_false_rolls_back_with_a_reason_naming_401() {
    let node = Node::new();
    let m = manifests::apiserver(&node.kd, free_port(), &[]);
    let (sim, pid0) = boot(&node, &m, delay(Duration::ZERO), "/livez");

    let r = node.run(&[
        "set",
        "kube-apiserver.yaml",
        "--flag",
        "anonymous-auth=false",
        "--health-timeout",
        "5",
    ]);
    assert_rolled_back(&node, &sim, &m, pid0, &r, "--anonymous-auth=false");
    // The new process did run (and answered): the restart check passed, the probes did not.
    let c = r.check(0);
    assert!(c["restarted_after_ms"].is_u64(), "{}", r.dump());
    let why = c["reason"].as_str().unwrap();
    assert!(why.contains("401"), "{why}");
    assert!(r.txn()["reason"].as_str().unwrap().contains("401"));
}

// ---------------------------------------------------------------- 4. SIGKILL mid-gate

/// Starts `set kube-apiserver.yaml --flag profiling=false` and SIGKILLs it while its gate is
/// probing: the new pod's /readyz answers 500 for its first 4 s (behavior `ready-after-ms`),
/// so the gate cannot be done before ~6 s after the new process started; the kill comes 1.5 s
/// after that start, when the gate's restart poll (≤ 1 s apart) has seen the process.
/// Returns the manifest bytes written and the new pod's pid.
fn kill_mid_gate(node: &Node, sim: &Sim, m: &Manifest, pid0: u32) -> (String, u32) {
    sim.set_behavior("kube-apiserver", "ready-after-ms 4000\n");
    let (mut child, _) = node.spawn(&[
        "set",
        "kube-apiserver.yaml",
        "--flag",
        "profiling=false",
        "--health-timeout",
        "30",
    ]);
    assert!(
        wait_until(T, || node.read("kube-apiserver.yaml") != m.yaml),
        "the change was never written"
    );
    let after = node.read("kube-apiserver.yaml");
    let argv = manifests::argv_of(&after);
    let pid1 = sim
        .wait_for_new_argv(&argv, &[pid0], T)
        .expect("the sim restarted the pod with the new argv");
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

    // The transaction is incomplete.
    let s = node.run(&["status"]);
    assert_eq!(s.code, 0, "{}", s.dump());
    assert_eq!(
        s.json["incomplete"].as_array().map(Vec::len),
        Some(1),
        "{}",
        s.dump()
    );
    assert_eq!(node.read("kube-apiserver.yaml"), after);
    (after, pid1)
}

#[test]
fn killed_mid_gate_then_recover_revert_puts_the_old_argv_back() {
    let node = Node::new();
    let m = manifests::apiserver(&node.kd, free_port(), &[]);
    let (sim, pid0) = boot(&node, &m, delay(Duration::ZERO), "/livez");
    let (_, pid1) = kill_mid_gate(&node, &sim, &m, pid0);

    let r = node.run(&["recover", "--policy", "revert"]);
    assert_eq!(r.code, 0, "{}", r.dump());
    let res = &r.json["resolved"][0];
    assert_eq!(res["action"], "reverted", "{}", r.dump());
    assert_eq!(node.read("kube-apiserver.yaml"), m.yaml);
    let pid2 = sim
        .wait_for_new_argv(&m.argv, &[pid0, pid1], T)
        .expect("the old argv runs again");
    assert!(wait_pid_gone(pid1, T));
    assert_eq!(cmdline(pid2).unwrap(), m.argv);
    wait_http_status(&m.probe_url("/readyz"), 200, T).expect("healthy again");

    let s = node.run(&["status"]);
    assert_eq!(s.json["incomplete"].as_array().map(Vec::len), Some(0));
    let v = node.history("kube-apiserver.yaml");
    let last = v.last().unwrap();
    assert_eq!(last["hash"], blake3_hex(&m.yaml), "{v:?}");
    assert!(last["on_disk_until"].is_null());
}

#[test]
fn killed_mid_gate_then_recover_replay_gates_again_and_commits() {
    let node = Node::new();
    let m = manifests::apiserver(&node.kd, free_port(), &[]);
    let (sim, pid0) = boot(&node, &m, delay(Duration::ZERO), "/livez");
    let (after, pid1) = kill_mid_gate(&node, &sim, &m, pid0);
    let argv = manifests::argv_of(&after);

    let r = node.run(&["recover", "--policy", "replay"]);
    assert_eq!(r.code, 0, "{}", r.dump());
    assert_eq!(r.json["resolved"][0]["action"], "replayed", "{}", r.dump());
    // The gate ran again: at least its stability window (3 successes spanning 2 s).
    assert!(r.wall >= Duration::from_secs(2), "{}", r.dump());
    assert_eq!(node.read("kube-apiserver.yaml"), after);
    // The pod the sim restarted with the new argv is the one running.
    assert!(pid_alive(pid1));
    assert_eq!(cmdline(pid1).unwrap(), argv);
    assert_eq!(sim.children(), vec![(pid1, argv)]);

    let s = node.run(&["status"]);
    assert_eq!(s.json["incomplete"].as_array().map(Vec::len), Some(0));
    let v = node.history("kube-apiserver.yaml");
    let origins: Vec<&str> = v.iter().map(|x| x["origin"].as_str().unwrap()).collect();
    assert_eq!(origins, ["baseline", "change"], "{v:?}");
    assert_eq!(v[1]["hash"], blake3_hex(&after));
    assert!(v[1]["on_disk_until"].is_null());
}

// ---------------------------------------------------------------- 5./6. the real etcd

fn etcd_node() -> (Node, Manifest) {
    let node = Node::new();
    let m = manifests::etcd(&node.kd, free_port(), free_port(), free_port());
    (node, m)
}

#[test]
fn real_etcd_flag_change_commits() {
    if !etcd_or_skip("real_etcd_flag_change_commits") {
        return;
    }
    let (node, m) = etcd_node();
    let (sim, pid0) = boot(
        &node,
        &m,
        delay(Duration::ZERO),
        "/health?serializable=false",
    );

    let r = node.run(&[
        "set",
        "etcd.yaml",
        "--flag",
        "snapshot-count=10001",
        "--health-timeout",
        "15",
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.dump(), sim.pod_log("etcd"));
    assert_eq!(r.txn()["status"], "committed");
    let c = r.check(0);
    assert_eq!(c["result"], "healthy");
    assert_eq!(c["restart_check"], "proc");
    // kubeadm 1.30's etcd probes: startup /health?serializable=false, liveness
    // /health?exclude=NOSPACE&serializable=true, plain HTTP on the metrics port.
    let mut targets: Vec<String> = c["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["target"].as_str().unwrap().to_string())
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            m.probe_url("/health?exclude=NOSPACE&serializable=true"),
            m.probe_url("/health?serializable=false"),
        ]
    );
    let after = node.read("etcd.yaml");
    let argv = manifests::argv_of(&after);
    assert!(argv.contains(&"--snapshot-count=10001".to_string()));
    assert!(!argv.contains(&"--snapshot-count=10000".to_string()));
    let pid = u32_of(&c["pid"]);
    assert_ne!(pid, pid0);
    assert_eq!(cmdline(pid).unwrap(), argv);
    assert_eq!(cmdline(pid).unwrap()[0], "etcd");
    assert_eq!(sim.children(), vec![(pid, argv)]);
}

#[test]
fn real_etcd_broken_flag_rolls_back() {
    if !etcd_or_skip("real_etcd_broken_flag_rolls_back") {
        return;
    }
    let (node, m) = etcd_node();
    let (sim, pid0) = boot(
        &node,
        &m,
        delay(Duration::ZERO),
        "/health?serializable=false",
    );

    let r = node.run(&[
        "set",
        "etcd.yaml",
        "--flag",
        "quota-backend-bytes=notanumber",
        "--health-timeout",
        "8",
    ]);
    assert_rolled_back(
        &node,
        &sim,
        &m,
        pid0,
        &r,
        "--quota-backend-bytes=notanumber",
    );
    assert!(
        sim.pod_log("etcd").contains("notanumber"),
        "{}",
        sim.pod_log("etcd")
    );
    wait_http_status(
        &m.probe_url("/health?serializable=false"),
        200,
        Duration::from_secs(10),
    )
    .expect("etcd healthy again");
}

// ---------------------------------------------------------------- 7. crash loop

/// Runs kubeharden with `args` and, the moment the manifest holds `m`'s bytes again after
/// having held others (the rollback's write), removes `component`'s behavior file. Returns the
/// run and when, after the start, the rollback wrote.
fn run_clearing_behavior_at_rollback(
    node: &Node,
    sim: &Sim,
    m: &Manifest,
    args: &[&str],
) -> (Run, Duration) {
    let (child, t0) = node.spawn(args);
    let path = node.kd.manifest_path(&m.file_name);
    let mut saw_after = false;
    let mut rollback_at = None;
    while t0.elapsed() < Duration::from_secs(60) {
        let now = std::fs::read_to_string(&path).unwrap_or_default();
        if now != m.yaml && !now.is_empty() {
            saw_after = true;
        } else if saw_after && now == m.yaml {
            sim.clear_behavior(&m.name);
            rollback_at = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = finish(child, t0);
    let at = rollback_at.unwrap_or_else(|| panic!("no rollback write seen: {}", r.dump()));
    assert!(at < r.wall, "behavior removed after the run ended");
    (r, at)
}

/// The new pod serves, then crashes after 1 s, again and again (behavior `crash-after-ms`,
/// which the fake reads at each start). The behavior file cannot stay for the rollback (the old
/// argv would crash-loop too: exit 4), and it cannot go before the gate has decided (the new
/// pod would stop crashing and pass). So the sim runs with a 1 s restart delay, and a watcher
/// removes the file the moment the manifest holds its before bytes again: the sim starts the
/// old argv only 1 s after that, so it never reads the file; every new-argv start did.
#[test]
fn component_that_comes_up_then_crash_loops_is_rolled_back() {
    let node = Node::new();
    let m = manifests::scheduler(&node.kd, free_port());
    let (sim, pid0) = boot(&node, &m, delay(Duration::from_secs(1)), "/healthz");
    sim.set_behavior("kube-scheduler", "crash-after-ms 1000\n");

    let (r, _) = run_clearing_behavior_at_rollback(
        &node,
        &sim,
        &m,
        &[
            "set",
            "kube-scheduler.yaml",
            "--flag",
            "profiling=false",
            "--health-timeout",
            "10",
        ],
    );
    assert_rolled_back(&node, &sim, &m, pid0, &r, "--profiling=false");
    let c = r.check(0);
    assert!(c["restarted_after_ms"].is_u64(), "{}", r.dump());
    // The new argv came up and crashed (exit 2) at least once while the gate watched.
    let crashes = sim
        .events("exit", "kube-scheduler")
        .iter()
        .filter(|l| l.contains("status=exit-code=2"))
        .count();
    assert!(crashes >= 1, "{}", sim.log_text());
    // Exactly two old-argv starts (before, after the rollback): none crashed.
    assert_eq!(
        starts(&sim, "kube-scheduler")
            .iter()
            .filter(|(_, a)| *a == m.argv)
            .count(),
        2,
        "{}",
        sim.log_text()
    );
    assert!(pid_alive(sim.wait_for_argv(&m.argv, T).unwrap()));
}

/// SIGKILLs `pid` while the sim is stopped (SIGSTOP) for `hold`: the pod stays down for that
/// long whatever the gate's polling phase, then the sim goes on (back-off 500 ms, restart).
fn kill_while_sim_paused(sim: &Sim, pid: u32, hold: Duration) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let sim_pid = Pid::from_raw(sim.pid() as i32);
    kill(sim_pid, Signal::SIGSTOP).unwrap();
    let killed = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    std::thread::sleep(hold);
    kill(sim_pid, Signal::SIGCONT).unwrap();
    killed.unwrap();
}

/// Starts `set MANIFEST --flag profiling=false` and waits for the pod with the new argv:
/// (child, t0, new argv, its pid).
fn start_set_and_wait_for_new_pod(
    node: &Node,
    sim: &Sim,
    m: &Manifest,
    pid0: u32,
    timeout_s: &str,
) -> (Child, Instant, Vec<String>, u32) {
    let (child, t0) = node.spawn(&[
        "set",
        &m.file_name,
        "--flag",
        "profiling=false",
        "--health-timeout",
        timeout_s,
    ]);
    assert!(wait_until(T, || node.read(&m.file_name) != m.yaml));
    let argv = manifests::argv_of(&node.read(&m.file_name));
    let pid = sim
        .wait_for_new_argv(&argv, &[pid0], T)
        .expect("the new argv started");
    (child, t0, argv, pid)
}

/// RESTART_LIMIT: a pod that exits 3 times in the window is rolled back ("exited 3 times").
/// The test kills the new-argv process 3 times, each 300 ms after it started, holding the sim
/// for 1.5 s (longer than the gate's longest poll interval, 1 s) so the gate sees each death;
/// otherwise the pod is healthy.
#[test]
fn pod_that_exits_three_times_in_the_window_is_rolled_back() {
    let node = Node::new();
    let m = manifests::scheduler(&node.kd, free_port());
    let (sim, pid0) = boot(&node, &m, delay(Duration::ZERO), "/healthz");
    let (child, t0, argv, mut pid) = start_set_and_wait_for_new_pod(&node, &sim, &m, pid0, "20");
    let mut seen = vec![pid0];
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        kill_while_sim_paused(&sim, pid, Duration::from_millis(1500));
        seen.push(pid);
        match sim.wait_for_new_argv(&argv, &seen, Duration::from_secs(5)) {
            Some(next) => pid = next,
            None => break, // rolled back already
        }
    }
    let r = finish(child, t0);
    assert_eq!(r.code, 3, "{}", r.dump());
    let why = r.check(0)["reason"].as_str().unwrap_or("");
    assert!(why.contains("exited 3 times"), "{}", r.dump());
    assert_eq!(node.read(&m.file_name), m.yaml);
}

/// A pod that dies once and then runs: the report's pid is the process that passed, and the
/// final audit compares ITS argv with the manifest (not "not checked: no process visible").
#[test]
fn pod_that_dies_once_then_runs_commits_with_the_live_process_audited() {
    let node = Node::new();
    let m = manifests::scheduler(&node.kd, free_port());
    let (sim, pid0) = boot(&node, &m, delay(Duration::ZERO), "/healthz");
    let (child, t0, argv, pid1) = start_set_and_wait_for_new_pod(&node, &sim, &m, pid0, "15");
    std::thread::sleep(Duration::from_millis(300));
    kill_while_sim_paused(&sim, pid1, Duration::from_millis(1500));
    let live = sim
        .wait_for_new_argv(&argv, &[pid0, pid1], T)
        .expect("restarted");
    let r = finish(child, t0);
    assert_eq!(r.code, 0, "{}", r.dump());
    let c = r.check(0);
    assert_eq!(c["restarts"], 1, "{}", r.dump());
    assert_eq!(u32_of(&c["pid"]), live, "{}", r.dump());
    assert_eq!(
        c["audit"],
        "running argv equals the manifest's command + args",
        "{}",
        r.dump()
    );
}

// ---------------------------------------------------------------- 8. slow kubelet

/// The sim acts on a change only 4 s after it: meanwhile the old process keeps answering its
/// probes with 200. The gate must not take that for success; it waits for the restart.
#[test]
fn old_process_answering_before_the_restart_is_not_success() {
    let node = Node::new();
    let m = manifests::apiserver(&node.kd, free_port(), &[]);
    let restart_delay = Duration::from_secs(4);
    let (sim, pid0) = boot(&node, &m, delay(restart_delay), "/livez");

    let (child, t0) = node.spawn(&[
        "set",
        "kube-apiserver.yaml",
        "--flag",
        "insecure-port=0",
        "--health-timeout",
        "8",
    ]);
    // 2.5 s in, longer than the stability window: the old process still answers.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(pid_alive(pid0));
    let (st, _) = http_get(&m.probe_url("/livez"), &[], Duration::from_secs(2)).unwrap();
    assert_eq!(st, 200, "the old process answers during the delay");
    assert!(
        sim.events("kill", "kube-apiserver").is_empty(),
        "the sim acted before its delay"
    );
    let r = finish(child, t0);
    assert_rolled_back(&node, &sim, &m, pid0, &r, "--insecure-port=0");
    let c = r.check(0);
    assert_eq!(c["restart_check"], "proc", "{}", r.dump());
    // It waited for the restart: either it saw the new process, ≥ 4 s after the write, or it
    // says no process with the new argv ever ran (it exits at once).
    let why = c["reason"].as_str().unwrap();
    match c["restarted_after_ms"].as_u64() {
        Some(ms) => assert!(ms >= restart_delay.as_millis() as u64, "{}", r.dump()),
        None => assert!(
            why.contains("was not restarted with the new flags"),
            "{}",
            r.dump()
        ),
    }
    assert!(r.wall >= restart_delay, "{}", r.dump());
}

/// Same, with a bad flag whose process stays up (401 to the probes): the gate JSON shows the
/// restart check waited the sim's delay before probing at all.
#[test]
fn slow_kubelet_restart_check_waits_the_delay_then_probes_the_new_process() {
    let node = Node::new();
    let m = manifests::apiserver(&node.kd, free_port(), &[]);
    let restart_delay = Duration::from_secs(4);
    let (sim, pid0) = boot(&node, &m, delay(restart_delay), "/livez");

    let r = node.run(&[
        "set",
        "kube-apiserver.yaml",
        "--flag",
        "anonymous-auth=false",
        "--health-timeout",
        "7",
    ]);
    assert_rolled_back(&node, &sim, &m, pid0, &r, "--anonymous-auth=false");
    let c = r.check(0);
    assert_eq!(c["restart_check"], "proc", "{}", r.dump());
    let waited = ms_of(&c["restarted_after_ms"]);
    assert!(
        waited >= 4000,
        "restart seen after {waited} ms: {}",
        r.dump()
    );
    assert!(
        c["reason"].as_str().unwrap().contains("401"),
        "{}",
        r.dump()
    );
    // The rollback waited for the sim's delay too, and saw its own restart.
    let back = r.check(1);
    assert_eq!(back["restart_check"], "proc", "{}", r.dump());
    assert!(ms_of(&back["restarted_after_ms"]) >= 4000, "{}", r.dump());
}

// ---------------------------------------------------------------- 9. --restart-check none

/// `--restart-check none` with a bad flag and a short restart delay (300 ms): the gate probes
/// at once; the old process answers for ~0.3 s, less than the 2-s stability window, then the
/// new one crash-loops and nothing answers: "not healthy within 6s", rolled back (exit 3).
/// No PID is tracked or audited.
#[test]
fn restart_check_none_with_a_short_delay_rolls_back_on_the_probes_alone() {
    let node = Node::new();
    let m = manifests::apiserver(&node.kd, free_port(), &[]);
    let (sim, pid0) = boot(&node, &m, delay(Duration::from_millis(300)), "/livez");

    let r = node.run(&[
        "set",
        "kube-apiserver.yaml",
        "--flag",
        "insecure-port=0",
        "--restart-check",
        "none",
        "--health-timeout",
        "6",
    ]);
    assert_rolled_back(&node, &sim, &m, pid0, &r, "--insecure-port=0");
    let c = r.check(0);
    assert_eq!(c["restart_check"], "none", "{}", r.dump());
    assert!(c.get("pid").is_none() && c.get("restarted_after_ms").is_none());
    assert!(
        c["reason"]
            .as_str()
            .unwrap()
            .contains("not healthy within 6s"),
        "{}",
        r.dump()
    );
    assert_eq!(r.check(1)["restart_check"], "none");
}

/// Documents the hazard of `--restart-check none`: when the kubelet takes longer than the
/// stability window (here 6 s > 2 s), the old process passes the probes and a change that
/// crash-loops is COMMITTED (exit 0). This is what the option means ("probes only"); `auto` /
/// `proc` exist to prevent it (see the test above with a 4-s delay).
#[test]
fn restart_check_none_with_a_slow_kubelet_commits_a_bad_flag_documented_hazard() {
    let node = Node::new();
    let m = manifests::apiserver(&node.kd, free_port(), &[]);
    let (sim, pid0) = boot(&node, &m, delay(Duration::from_secs(6)), "/livez");

    let r = node.run(&[
        "set",
        "kube-apiserver.yaml",
        "--flag",
        "insecure-port=0",
        "--restart-check",
        "none",
        "--health-timeout",
        "10",
    ]);
    assert_eq!(r.code, 0, "{}", r.dump());
    assert_eq!(r.txn()["status"], "committed");
    let c = r.check(0);
    assert_eq!(c["restart_check"], "none");
    assert_eq!(c["audit"], "not checked: no process visible");
    assert!(r.wall < Duration::from_secs(6), "{}", r.dump());
    // …and then the kubelet applies it: the old process goes, the new argv crash-loops.
    assert!(wait_pid_gone(pid0, T));
    assert!(wait_until(T, || sim
        .events("exit", "kube-apiserver")
        .iter()
        .any(|l| l.contains("status=exit-code=1"))));
}

// ---------------------------------------------------------------- 10. --probe, --probe-ca

#[test]
fn probe_url_override_replaces_the_manifest_probes() {
    let node = Node::new();
    let m = manifests::scheduler(&node.kd, free_port());
    let (_sim, _pid0) = boot(&node, &m, delay(Duration::ZERO), "/healthz");

    let url = m.probe_url("/livez");
    let r = node.run(&[
        "set",
        "kube-scheduler.yaml",
        "--flag",
        "profiling=false",
        "--probe",
        &url,
        "--health-timeout",
        "10",
    ]);
    assert_eq!(r.code, 0, "{}", r.dump());
    let probes = r.check(0)["probes"].as_array().unwrap().clone();
    assert_eq!(probes.len(), 1, "{}", r.dump());
    assert_eq!(probes[0]["probe"], "--probe");
    assert_eq!(probes[0]["target"], url.as_str());
    assert_eq!(probes[0]["last"], "200 OK");
}

#[test]
fn probe_override_that_fails_rolls_back() {
    let node = Node::new();
    let m = manifests::scheduler(&node.kd, free_port());
    let (sim, pid0) = boot(&node, &m, delay(Duration::ZERO), "/healthz");
    // A bad flag and a probe on the right server: rolled back; the reason names the URL.
    let url = m.probe_url("/healthz");
    let r = node.run(&[
        "set",
        "kube-scheduler.yaml",
        "--flag",
        "profiling=nope",
        "--probe",
        &url,
        "--health-timeout",
        "5",
    ]);
    assert_rolled_back(&node, &sim, &m, pid0, &r, "--profiling=nope");
    assert_eq!(r.check(1)["probes"][0]["target"], url.as_str());
}

/// A CA that did not sign the server's certificate (the fake's certificate is self-signed at
/// each start; the node's etcd CA did not sign it): the probe cannot pass against the running
/// pod either, so the rollback's own check could never pass. The change is refused before any
/// write (exit 2, with a certificate reason): no restart, the old process keeps running.
#[test]
fn wrong_probe_ca_is_refused_before_any_change() {
    let node = Node::new();
    let m = manifests::scheduler(&node.kd, free_port());
    let (sim, pid0) = boot(&node, &m, delay(Duration::ZERO), "/healthz");
    let ca = node.kd.pki().join("etcd/ca.crt");
    let out = node.run(&[
        "set",
        "kube-scheduler.yaml",
        "--flag",
        "profiling=false",
        "--probe-ca",
        ca.to_str().unwrap(),
        "--health-timeout",
        "4",
    ]);
    assert_eq!(out.code, 2, "{}", out.dump());
    let why = out.dump().to_lowercase();
    assert!(
        why.contains("certificate") || why.contains("issuer"),
        "{}",
        out.dump()
    );
    assert_eq!(node.read(&m.file_name), m.yaml);
    assert_eq!(sim.wait_for_argv(&m.argv, T), Some(pid0), "no restart");
}

/// The positive side of --probe-ca (and --probe-cert/--probe-key): etcd's client port, TLS with
/// the node's etcd CA and client-certificate auth, probed with the healthcheck client cert.
#[test]
fn probe_ca_and_client_cert_verify_etcd_and_commit() {
    if !etcd_or_skip("probe_ca_and_client_cert_verify_etcd_and_commit") {
        return;
    }
    let (node, m) = etcd_node();
    let (_sim, _pid0) = boot(
        &node,
        &m,
        delay(Duration::ZERO),
        "/health?serializable=false",
    );
    let client = m
        .argv
        .iter()
        .find_map(|a| a.strip_prefix("--advertise-client-urls="))
        .unwrap()
        .to_string();
    let url = format!("{client}/health");
    let pki = node.kd.pki().join("etcd");
    let p = |f: &str| pki.join(f).display().to_string();
    let r = node.run(&[
        "set",
        "etcd.yaml",
        "--flag",
        "heartbeat-interval=150",
        "--probe",
        &url,
        "--probe-ca",
        &p("ca.crt"),
        "--probe-cert",
        &p("healthcheck-client.crt"),
        "--probe-key",
        &p("healthcheck-client.key"),
        "--health-timeout",
        "15",
    ]);
    assert_eq!(r.code, 0, "{}", r.dump());
    let probe = &r.check(0)["probes"][0];
    assert_eq!(probe["target"], url.as_str());
    assert_eq!(probe["last"], "200 OK", "{}", r.dump());
    assert!(
        manifests::argv_of(&node.read("etcd.yaml")).contains(&"--heartbeat-interval=150".into())
    );
}
