//! The Ansible playbooks of deploy/ansible run for real (ansible-core from PyPI, pinned in
//! deploy/ansible/requirements.txt, in a venv) against three simulated control-plane nodes on
//! this machine. Each node has its own /etc/kubernetes (manifests, pki with a real etcd CA),
//! state dir, hardening file, copy of the kubeharden binary and kubelet simulator running the
//! real etcd and the stand-in kube-apiserver, kube-controller-manager and kube-scheduler
//! (tests/gate_support).
//!
//! Hosts are reached with `ansible_connection: local` and per-host variables for the paths:
//! three SSH daemons or network namespaces would need root-only setup (sshd keys, `ip netns`)
//! that CI machines need not allow, and would test OpenSSH rather than the playbooks; what the
//! playbooks promise (order, serial, stop on failure, health checks, changed) does not depend
//! on the transport.
//!
//! The venv: `KUBEHARDEN_ANSIBLE_PLAYBOOK` names ansible-playbook, else
//! `$CARGO_TARGET_DIR/fleet-venv` (default target/fleet-venv), which `.ci/run` creates. Without
//! it the tests print SKIPPED and return; `KUBEHARDEN_REQUIRE_ANSIBLE=1` (CI) makes that a
//! failure. The etcd tests follow `KUBEHARDEN_REQUIRE_ETCD` as the others do.

mod gate_support;

use gate_support::{
    etcd_or_skip, free_port, manifests, wait_http_status, KubeDir, Manifest, Sim, SimConfig,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);
/// The fleet tests each run 12 pods and ansible; one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------- ansible

fn ansible_playbook() -> Option<PathBuf> {
    let p = std::env::var_os("KUBEHARDEN_ANSIBLE_PLAYBOOK")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
            target.join("fleet-venv/bin/ansible-playbook")
        });
    p.is_file().then_some(p)
}

fn ansible_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(p) = ansible_playbook() {
        return Some(p);
    }
    let how = "python3 -m venv target/fleet-venv && target/fleet-venv/bin/pip install -r deploy/ansible/requirements.txt";
    if std::env::var("KUBEHARDEN_REQUIRE_ANSIBLE").as_deref() == Ok("1") {
        panic!("{test}: KUBEHARDEN_REQUIRE_ANSIBLE=1 but ansible-playbook is missing ({how})");
    }
    eprintln!(
        "SKIPPED {test}: ansible-playbook not found ({how}; or set KUBEHARDEN_ANSIBLE_PLAYBOOK)"
    );
    None
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/ansible")
}

/// One ansible-playbook run.
struct Play {
    code: i32,
    out: String,
    wall: Duration,
}

/// `host : ok=N changed=N unreachable=N failed=N …` of the PLAY RECAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Recap {
    ok: u32,
    changed: u32,
    failed: u32,
}

impl Play {
    fn recap(&self) -> BTreeMap<String, Recap> {
        let mut out = BTreeMap::new();
        let Some(at) = self.out.rfind("PLAY RECAP") else {
            return out;
        };
        for line in self.out[at..].lines().skip(1) {
            let Some((host, rest)) = line.split_once(" : ") else {
                continue;
            };
            let get = |k: &str| {
                rest.split_whitespace()
                    .find_map(|w| w.strip_prefix(&format!("{k}=")))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            out.insert(
                host.trim().to_string(),
                Recap {
                    ok: get("ok"),
                    changed: get("changed"),
                    failed: get("failed"),
                },
            );
        }
        out
    }
}

// ---------------------------------------------------------------- the nodes

const PODS: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// A simulated control-plane node.
struct Node {
    name: String,
    kd: KubeDir,
    pods: Vec<Manifest>,
    sim: Sim,
    api_port: u16,
    /// Lines of the sim's log when the node was up: later lines are the playbooks' doing.
    boot_lines: usize,
}

/// A restart-log event: (time, event, pod).
type Event = (chrono::DateTime<chrono::FixedOffset>, String, String);

impl Node {
    fn boot(name: &str) -> Node {
        let kd = KubeDir::new();
        let client = free_port();
        let servers = format!("--etcd-servers=https://127.0.0.1:{client}");
        let api_port = free_port();
        let pods = vec![
            manifests::etcd(&kd, client, free_port(), free_port()),
            manifests::apiserver(&kd, api_port, &[&servers]),
            manifests::controller_manager(&kd, free_port()),
            manifests::scheduler(&kd, free_port()),
        ];
        for m in &pods {
            kd.install(m);
        }
        let sim = Sim::start_with(&kd.manifests(), SimConfig::default());
        for m in &pods {
            sim.wait_for_argv(&m.argv, T).unwrap_or_else(|| {
                panic!("{name} {} did not start:\n{}", m.name, sim.pod_log(&m.name))
            });
        }
        wait_http_status(&pods[1].probe_url("/readyz"), 200, T)
            .unwrap_or_else(|e| panic!("{name} kube-apiserver not ready: {e}"));
        let boot_lines = sim.log_text().lines().count();
        Node {
            name: name.into(),
            kd,
            pods,
            sim,
            api_port,
            boot_lines,
        }
    }

    fn root(&self) -> &Path {
        self.kd.node_root()
    }
    fn state_dir(&self) -> PathBuf {
        self.root().join("var/lib/kubeharden")
    }
    fn bin(&self) -> PathBuf {
        self.root().join("usr/local/bin/kubeharden")
    }
    fn config(&self) -> PathBuf {
        self.root().join("etc/kubeharden/hardening.yaml")
    }

    fn host_vars(&self) -> Value {
        json!({
            "ansible_connection": "local",
            "kubeharden_bin": self.bin(),
            "kubeharden_state_dir": self.state_dir(),
            "kubeharden_manifests_dir": self.kd.manifests(),
            "kubeharden_kubernetes_dir": self.kd.root(),
            "kubeharden_config": self.config(),
            "kubeharden_api_url": format!("https://127.0.0.1:{}", self.api_port),
            "kubeharden_api_ca": self.kd.pki().join("ca.crt"),
        })
    }

    /// start/kill events of the sim since boot.
    fn events(&self) -> Vec<Event> {
        self.sim
            .log_text()
            .lines()
            .skip(self.boot_lines)
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let at = chrono::DateTime::parse_from_rfc3339(w.next()?).ok()?;
                let ev = w.next()?.to_string();
                let pod = w
                    .find_map(|f| f.strip_prefix("pod=kube-system/"))?
                    .to_string();
                matches!(ev.as_str(), "start" | "kill").then_some((at, ev, pod))
            })
            .collect()
    }

    /// Restarts per pod since boot: the kubelet's `pod-updated` starts, i.e. those a manifest
    /// change caused (a crash's `back-off` start is the component's doing, counted apart).
    fn restarts(&self) -> BTreeMap<String, usize> {
        self.starts_with(" reason=pod-updated ")
    }

    /// Crash-loop starts per pod since boot.
    fn crash_restarts(&self) -> BTreeMap<String, usize> {
        self.starts_with(" reason=back-off ")
    }

    fn starts_with(&self, reason: &str) -> BTreeMap<String, usize> {
        let log = self.sim.log_text();
        let lines: Vec<&str> = log.lines().skip(self.boot_lines).collect();
        PODS.iter()
            .map(|p| {
                let pod = format!(" start pod=kube-system/{p} ");
                let n = lines
                    .iter()
                    .filter(|l| l.contains(&pod) && l.contains(reason))
                    .count();
                (p.to_string(), n)
            })
            .collect()
    }

    /// Every file of the node's /etc/kubernetes with its bytes and mode.
    fn files(&self) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
        use std::os::unix::fs::PermissionsExt;
        let mut out = BTreeMap::new();
        let mut todo = vec![self.kd.root().to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                let m = std::fs::symlink_metadata(&p).unwrap();
                if m.is_dir() {
                    todo.push(p);
                } else {
                    let bytes = std::fs::read(&p).unwrap_or_default();
                    out.insert(p, (bytes, m.permissions().mode()));
                }
            }
        }
        out
    }

    fn manifest(&self, file: &str) -> String {
        std::fs::read_to_string(self.kd.manifest_path(file)).unwrap()
    }

    /// `kubeharden … ARGS` against this node (the test's binary).
    fn kubeharden(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_kubeharden"))
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--manifests-dir")
            .arg(self.kd.manifests())
            .arg("--kubernetes-dir")
            .arg(self.kd.root())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// `audit -o json`, under the node's hardening file once the role wrote it (as
    /// audit-fleet.yml audits).
    fn audit(&self) -> Value {
        let config = self.config();
        let mut args = vec!["-o", "json", "audit"];
        if config.exists() {
            args.extend(["-f", config.to_str().unwrap()]);
        }
        let (code, out) = self.kubeharden(&args);
        assert!(
            matches!(code, 0 | 1),
            "{}: audit exit {code}: {out}",
            self.name
        );
        serde_json::from_str(&out).unwrap()
    }
}

/// Three nodes, an inventory, a reports dir.
struct Fleet {
    nodes: Vec<Node>,
    work: tempfile::TempDir,
    playbook: PathBuf,
    /// Group variables of every inventory this fleet writes (the hardening file's content).
    vars: Value,
}

impl Fleet {
    fn new(playbook: PathBuf, vars: Value) -> Fleet {
        let nodes: Vec<Node> = ["node1", "node2", "node3"]
            .iter()
            .map(|n| Node::boot(n))
            .collect();
        let work = tempfile::Builder::new()
            .prefix("kubeharden-fleet-")
            .tempdir()
            .unwrap();
        let f = Fleet {
            nodes,
            work,
            playbook,
            vars,
        };
        f.write_inventory(json!({}));
        f
    }

    fn reports(&self) -> PathBuf {
        self.work.path().join("reports")
    }

    /// The inventory: every node a host of `control_plane`, with the fleet's variables and
    /// `group_vars` added.
    fn write_inventory(&self, group_vars: Value) {
        let python = self.playbook.with_file_name("python");
        let hosts: serde_json::Map<String, Value> = self
            .nodes
            .iter()
            .map(|n| {
                let mut v = n.host_vars();
                v["ansible_python_interpreter"] = json!(python);
                (n.name.clone(), v)
            })
            .collect();
        let mut vars = json!({
            "kubeharden_become": false,
            "kubeharden_binary_src": env!("CARGO_BIN_EXE_kubeharden"),
            // The stand-in kube-apiserver serves a self-signed certificate it makes at
            // start-up, which no cluster CA signed; a real inventory keeps this true.
            "kubeharden_api_validate_certs": false,
            "kubeharden_health_retries": 20,
            "kubeharden_health_delay": 1,
            // A stand-in that refuses its flags exits at once, too fast for the gate's /proc
            // poll, so each failing bisection step costs the whole timeout: keep it short.
            "kubeharden_gate_args": ["--health-timeout", "20"],
            "kubeharden_report_dir": self.reports(),
            "kubeharden_fleet_report_dir": self.reports(),
        });
        let fleet_vars = self.vars.as_object().unwrap();
        for (k, v) in fleet_vars.iter().chain(group_vars.as_object().unwrap()) {
            vars[k] = v.clone();
        }
        let inv = json!({"all": {"children": {"control_plane": {"hosts": hosts, "vars": vars}}}});
        std::fs::create_dir_all(self.reports()).unwrap();
        std::fs::write(
            self.work.path().join("inventory.yml"),
            serde_json::to_string_pretty(&inv).unwrap(),
        )
        .unwrap();
    }

    /// The file a running play writes its output to (read by tests while it runs).
    fn play_log(&self) -> PathBuf {
        self.work.path().join("play.log")
    }

    fn play(&self, playbook: &str, extra: &[&str]) -> Play {
        let tmp = self.work.path().join("ansible-tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let log = std::fs::File::create(self.play_log()).unwrap();
        let t0 = Instant::now();
        let status = Command::new(&self.playbook)
            .current_dir(deploy_dir())
            .env("ANSIBLE_CONFIG", deploy_dir().join("ansible.cfg"))
            .env("ANSIBLE_HOME", self.work.path().join("ansible-home"))
            .env("ANSIBLE_LOCAL_TEMP", &tmp)
            .env("ANSIBLE_REMOTE_TEMP", &tmp)
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .env_remove("KUBEHARDEN_STATE_DIR")
            .env_remove("KUBEHARDEN_MANIFESTS_DIR")
            .env_remove("KUBEHARDEN_KUBERNETES_DIR")
            .arg("-i")
            .arg(self.work.path().join("inventory.yml"))
            .arg(playbook)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .status()
            .expect("run ansible-playbook");
        Play {
            code: status.code().unwrap_or(-1),
            out: std::fs::read_to_string(self.play_log()).unwrap_or_default(),
            wall: t0.elapsed(),
        }
    }

    fn report(&self, name: &str) -> Value {
        let p = self.reports().join(name);
        serde_json::from_str(
            &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }
}

// ---------------------------------------------------------------- audit-fleet

/// The gathered report says what the node's own audit says, check by check. `running` and
/// the notes about it are left out: the three "nodes" share this machine's /proc (and other
/// tests' pods run there too), so each audit also sees processes that come and go elsewhere.
fn assert_same_audit(name: &str, got: &Value, want: &Value) {
    let by_id = |v: &Value| -> BTreeMap<String, Value> {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let keep: serde_json::Map<String, Value> = c
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "running" | "notes"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                (c["id"].as_str().unwrap().to_string(), Value::Object(keep))
            })
            .collect()
    };
    let (g, w) = (by_id(got), by_id(want));
    assert_eq!(
        g.keys().collect::<Vec<_>>(),
        w.keys().collect::<Vec<_>>(),
        "{name}"
    );
    for (id, c) in &g {
        assert_eq!(c, &w[id], "{name} {id}: gathered vs the node's audit");
    }
    assert_eq!(got["summary"], want["summary"], "{name}");
    assert_eq!(got["benchmark"], want["benchmark"], "{name}");
}

/// audit-fleet.yml gathers one report per node (JSON = the node's own audit, JUnit) and a
/// summary whose per-check counts are those of the per-node audits.
fn check_audit_fleet(fleet: &Fleet) {
    let _ = std::fs::remove_dir_all(fleet.reports().join("nodes"));
    let play = fleet.play("audit-fleet.yml", &[]);
    assert_eq!(play.code, 0, "{}", play.out);
    let audits: BTreeMap<String, Value> = fleet
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.audit()))
        .collect();
    for (name, a) in &audits {
        let rep = fleet.report(&format!("nodes/{name}.json"));
        assert_same_audit(name, &rep, a);
        let xml =
            std::fs::read_to_string(fleet.reports().join(format!("nodes/{name}.xml"))).unwrap();
        assert!(
            xml.starts_with("<?xml") && xml.contains("<testsuites"),
            "{xml}"
        );
    }
    let summary = fleet.report("fleet-summary.json");
    assert_eq!(summary["totals"]["nodes"], 3, "{summary}");
    assert_eq!(summary["missing"], json!([]));
    let checks = summary["checks"].as_array().unwrap();
    let ids: Vec<&str> = audits["node1"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(checks.len(), ids.len());
    for c in checks {
        let id = c["id"].as_str().unwrap();
        for st in ["PASS", "FAIL", "WARN", "INFO"] {
            let want: Vec<&String> = audits
                .iter()
                .filter(|(_, a)| {
                    a["checks"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|x| x["id"] == id && x["status"] == st)
                })
                .map(|(n, _)| n)
                .collect();
            assert_eq!(
                c[st].as_u64().unwrap() as usize,
                want.len(),
                "{id} {st}: {c}"
            );
            assert_eq!(c["nodes"][st], json!(want), "{id} {st}");
        }
    }
    let junit = std::fs::read_to_string(fleet.reports().join("fleet-summary.xml")).unwrap();
    let failing = checks
        .iter()
        .filter(|c| c["FAIL"].as_u64() != Some(0))
        .count();
    assert!(
        junit.contains(&format!(
            "tests=\"{}\" failures=\"{failing}\"",
            checks.len()
        )),
        "{junit}"
    );
    eprintln!("audit-fleet.yml: {:?} for 3 nodes", play.wall);
}

// ---------------------------------------------------------------- the tests

/// The time span of a node's restart-log events.
fn span(
    n: &Node,
) -> Option<(
    chrono::DateTime<chrono::FixedOffset>,
    chrono::DateTime<chrono::FixedOffset>,
)> {
    let ev = n.events();
    Some((ev.first()?.0, ev.last()?.0))
}

#[test]
fn ansible_hardens_the_control_plane_one_node_at_a_time_and_is_idempotent() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(playbook) = ansible_or_skip("fleet hardening") else {
        return;
    };
    if !etcd_or_skip("fleet hardening") {
        return;
    }
    // The hardening file: the defaults plus a waiver and an extra flag.
    let fleet = Fleet::new(
        playbook,
        json!({
            "kubeharden_waivers": [{"check": "1.2.19", "reason": "audit log size is managed by logrotate",
                                    "expires": "2099-12-31", "owner": "platform"}],
            "kubeharden_extra_flags": {"kube-apiserver": {"set": {"tls-min-version": "VersionTLS13"}}},
        }),
    );
    let before: Vec<_> = fleet.nodes.iter().map(Node::files).collect();

    // --check: apply --dry-run on every node; the diffs shown, nothing changed anywhere.
    let check = fleet.play("harden-control-plane.yml", &["--check", "--diff"]);
    assert_eq!(check.code, 0, "{}", check.out);
    assert!(
        check.out.contains("--tls-min-version=VersionTLS13"),
        "the extra flag in the diffs:\n{}",
        check.out
    );
    assert!(
        check.out.contains("--profiling=false"),
        "diffs shown:\n{}",
        check.out
    );
    for (n, b) in fleet.nodes.iter().zip(&before) {
        assert_eq!(&n.files(), b, "{}: --check changed files", n.name);
        assert!(
            n.events().is_empty(),
            "{}: --check restarted {:?}",
            n.name,
            n.events()
        );
        assert!(
            !n.config().exists(),
            "{}: --check wrote the hardening file",
            n.name
        );
        assert!(
            !n.bin().exists(),
            "{}: --check installed the binary",
            n.name
        );
        assert!(
            !n.state_dir().exists(),
            "{}: --check made a state dir",
            n.name
        );
    }

    // Stock nodes: the fleet's reports.
    check_audit_fleet(&fleet);

    // Harden: in inventory order, one node at a time.
    let run = fleet.play("harden-control-plane.yml", &[]);
    assert_eq!(run.code, 0, "{}", run.out);
    let recap = run.recap();
    for n in &fleet.nodes {
        let r = recap[&n.name];
        assert_eq!(r.failed, 0, "{}: {r:?}\n{}", n.name, run.out);
        assert!(r.changed >= 1, "{}: {r:?}", n.name);
        let apply = fleet.report(&format!("{}-apply.json", n.name));
        assert_eq!(apply["changed"], true, "{}: {apply}", n.name);
    }
    let spans: Vec<_> = fleet
        .nodes
        .iter()
        .map(|n| span(n).unwrap_or_else(|| panic!("{} never restarted", n.name)))
        .collect();
    for i in 1..spans.len() {
        assert!(
            spans[i - 1].1 < spans[i].0,
            "node{} restarted before node{} was done: {spans:?}",
            i + 1,
            i
        );
    }
    // One restart per changed component per node, none for the others.
    let mut counts = Vec::new();
    for (n, b) in fleet.nodes.iter().zip(&before) {
        let restarts = n.restarts();
        for m in &n.pods {
            let changed = n.manifest(&m.file_name).as_bytes()
                != b[&n.kd.manifest_path(&m.file_name)].0.as_slice();
            assert_eq!(
                restarts[&m.name],
                usize::from(changed),
                "{} {}: {restarts:?}\n{}",
                n.name,
                m.name,
                n.sim.pod_log(&m.name)
            );
        }
        assert!(restarts["kube-apiserver"] == 1, "{}: {restarts:?}", n.name);
        let crashes = n.crash_restarts();
        if crashes.values().any(|c| *c > 0) {
            eprintln!(
                "note: {} crash-loop starts {crashes:?} (a stand-in that exited by itself):\n{}",
                n.name,
                n.sim.pod_log("kube-apiserver")
            );
        }
        let a = n.audit();
        let check = |id: &str| {
            a["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["id"] == id)
                .unwrap()
                .clone()
        };
        for id in ["1.2.15", "1.3.2", "1.4.1"] {
            assert_eq!(
                check(id)["status"],
                "PASS",
                "{} {id}: {}",
                n.name,
                check(id)
            );
        }
        // The hardening file's waiver and extra flag.
        let api = n.manifest("kube-apiserver.yaml");
        assert!(api.contains("--tls-min-version=VersionTLS13"), "{api}");
        assert!(
            !api.contains("--audit-log-maxsize"),
            "1.2.19 is waived:\n{api}"
        );
        assert_eq!(check("1.2.19")["status"], "WARN", "{}", check("1.2.19"));
        assert!(
            check("1.2.19")["notes"]
                .to_string()
                .contains("waived: audit log size is managed by logrotate"),
            "{}",
            check("1.2.19")
        );
        counts.push((n.name.clone(), restarts));
    }
    eprintln!(
        "harden-control-plane.yml: {:?} for 3 nodes; restarts per node: {counts:?}",
        run.wall
    );

    // Again: nothing to do anywhere.
    let again = fleet.play("harden-control-plane.yml", &[]);
    assert_eq!(again.code, 0, "{}", again.out);
    for n in &fleet.nodes {
        assert_eq!(
            again.recap()[&n.name].changed,
            0,
            "{}\n{}",
            n.name,
            again.out
        );
        assert_eq!(
            fleet.report(&format!("{}-apply.json", n.name))["changed"],
            false
        );
    }
    for (n, (_, first)) in fleet.nodes.iter().zip(&counts) {
        assert_eq!(
            &n.restarts(),
            first,
            "{}: the second run restarted a pod",
            n.name
        );
    }
    eprintln!("second run: {:?}", again.wall);

    // Exit 5 (state lock busy) is retried a bounded number of times, then fails saying so.
    let n1 = &fleet.nodes[0];
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(n1.state_dir().join("lock"))
        .unwrap();
    lock.lock().unwrap();
    fleet.write_inventory(json!({
        "kubeharden_lock_timeout": 0, "kubeharden_lock_retries": 2, "kubeharden_lock_delay": 1,
    }));
    let busy = fleet.play("harden-control-plane.yml", &["--limit", "node1"]);
    assert_ne!(busy.code, 0, "{}", busy.out);
    assert_eq!(busy.recap()["node1"].failed, 1, "{}", busy.out);
    assert!(
        busy.out.contains("state lock stayed busy (3 attempts"),
        "{}",
        busy.out
    );
    assert_eq!(
        busy.out.matches("FAILED - RETRYING").count(),
        2,
        "{}",
        busy.out
    );
    // Released while the role retries: the run goes through.
    fleet.write_inventory(json!({
        "kubeharden_lock_timeout": 0, "kubeharden_lock_retries": 30, "kubeharden_lock_delay": 1,
    }));
    let play_log = fleet.play_log();
    std::fs::remove_file(&play_log).unwrap(); // the busy run's log says RETRYING too
    let release = std::thread::spawn(move || {
        // Once the role has seen exit 5 and is waiting to retry.
        let seen = gate_support::wait_until(Duration::from_secs(120), || {
            std::fs::read_to_string(&play_log).is_ok_and(|t| t.contains("FAILED - RETRYING"))
        });
        drop(lock);
        seen
    });
    let retried = fleet.play("harden-control-plane.yml", &["--limit", "node1"]);
    assert!(release.join().unwrap(), "no retry seen:\n{}", retried.out);
    assert_eq!(retried.code, 0, "{}", retried.out);
    assert!(retried.out.contains("FAILED - RETRYING"), "{}", retried.out);
    assert_eq!(retried.recap()["node1"].changed, 0, "{}", retried.out);
    fleet.write_inventory(json!({}));

    // Hardened nodes: the fleet's reports again.
    check_audit_fleet(&fleet);
}

#[test]
fn ansible_rollout_stops_at_the_node_that_rolls_back_and_leaves_the_rest_untouched() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(playbook) = ansible_or_skip("fleet rollback") else {
        return;
    };
    if !etcd_or_skip("fleet rollback") {
        return;
    }
    let fleet = Fleet::new(playbook, json!({}));
    // node2's kube-apiserver refuses --profiling (CIS 1.2.15) at its next start.
    fleet.nodes[1]
        .sim
        .set_behavior("kube-apiserver", "refuse-flag profiling\n");
    let before: Vec<_> = fleet.nodes.iter().map(Node::files).collect();

    let run = fleet.play("harden-control-plane.yml", &[]);
    assert_ne!(run.code, 0, "{}", run.out);
    let recap = run.recap();
    assert_eq!(recap["node1"].failed, 0, "{:?}\n{}", recap, run.out);
    assert!(recap["node1"].changed >= 1);
    assert_eq!(recap["node2"].failed, 1, "{:?}\n{}", recap, run.out);
    assert!(
        recap
            .get("node3")
            .is_none_or(|r| r.ok == 0 && r.changed == 0),
        "node3 ran: {recap:?}"
    );
    assert!(
        run.out.contains("ROLLED BACK on node2") && run.out.contains("1.2.15"),
        "{}",
        run.out
    );

    // node2: the batch was bisected, 1.2.15 rolled back, the rest committed.
    let n2 = &fleet.nodes[1];
    let apply = fleet.report("node2-apply.json");
    let rolled: Vec<&str> = apply["rolled_back"]
        .as_array()
        .unwrap_or_else(|| panic!("{apply}"))
        .iter()
        .map(|r| r["check"].as_str().unwrap())
        .collect();
    assert_eq!(rolled, ["1.2.15"], "{apply}");
    let api_result = apply["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == "kube-apiserver")
        .unwrap_or_else(|| panic!("{apply}"));
    assert_eq!(api_result["status"], "partial", "bisected: {api_result}");
    let steps: Vec<(String, usize)> = apply["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| {
            t["path"]
                .as_str()
                .unwrap_or("")
                .ends_with("kube-apiserver.yaml")
        })
        .map(|t| {
            (
                t["status"].as_str().unwrap().to_string(),
                t["checks"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert!(
        steps.len() >= 3
            && steps[0].0 == "rolled_back"
            && steps.iter().any(|(s, _)| s == "committed")
            && steps
                .last()
                .is_some_and(|(s, _)| s == "committed" || s == "rolled_back"),
        "whole batch rolled back, then halves: {steps:?}"
    );
    for l in run.out.lines().filter(|l| l.contains("ROLLED BACK")) {
        eprintln!("ansible: {}", l.trim());
    }
    eprintln!("node2 kube-apiserver transactions (status, checks): {steps:?}");
    let api = n2.manifest("kube-apiserver.yaml");
    assert!(!api.contains("--profiling=false"), "{api}");
    assert!(
        api.contains("--audit-log-maxage=30"),
        "the rest committed:\n{api}"
    );
    assert!(n2
        .sim
        .pod_log("kube-apiserver")
        .contains("unknown flag: --profiling"));
    let a = n2.audit();
    let status = |id: &str| {
        a["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()["status"]
            .clone()
    };
    assert_ne!(status("1.2.15"), "PASS");
    assert_eq!(status("1.2.17"), "PASS");

    // node3: never touched.
    let n3 = &fleet.nodes[2];
    assert_eq!(n3.files(), before[2], "node3's files changed");
    assert!(n3.events().is_empty(), "node3 restarted: {:?}", n3.events());
    assert!(!n3.state_dir().exists() && !n3.config().exists() && !n3.bin().exists());
    eprintln!("rollout stopped at node2 after {:?}", run.wall);

    // CRITICAL: from now on node3's kube-apiserver exits at every start, the new command
    // line's and the restored one's, so the rollback does not come back healthy (exit 4).
    n3.sim.set_behavior("kube-apiserver", "exit-code 1\n");
    let crit = fleet.play("harden-control-plane.yml", &["--limit", "node3"]);
    assert_ne!(crit.code, 0, "{}", crit.out);
    assert_eq!(crit.recap()["node3"].failed, 1, "{}", crit.out);
    let line = crit
        .out
        .lines()
        .find(|l| l.contains("CRITICAL on node3"))
        .unwrap_or_else(|| panic!("{}", crit.out));
    assert!(line.contains("restore it by hand"), "{line}");
    let apply = fleet.report("node3-apply.json");
    let api = apply["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == "kube-apiserver")
        .unwrap_or_else(|| panic!("{apply}"));
    assert_eq!(api["status"], "rollback_failed", "{api}");
    eprintln!("ansible: {}", line.trim());
}
