//! Shared by tests/desired_state.rs and tests/kubeadm_upgrade.rs: a throw-away kubeadm node
//! (tests/gate_support's KubeDir and v1.30 manifests on free ports), kubeharden runs against it,
//! the same node's kubeadm v1.33.0 manifests (the reference set, relocated the same way) and
//! the kubeadm stand-in (examples/kubeadm_standin.rs).
#![allow(dead_code)]

use crate::gate_support::{
    ensure_examples_built, examples_dir, free_port, manifests, wait_http_status, KubeDir, Manifest,
    Sim, SimConfig,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const T: Duration = Duration::from_secs(60);
pub const HEALTH_TIMEOUT: &str = "40";
pub const PODS: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];
pub const RISKY: [&str; 3] = ["1.2.1", "1.2.5", "1.2.11"];

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub json: Value,
    pub wall: Duration,
}

impl Run {
    pub fn dump(&self) -> String {
        format!(
            "exit {} after {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.code, self.wall, self.stdout, self.stderr
        )
    }
}

/// A node and kubeharden's state dir; `hardening` is where the test writes its file.
pub struct Node {
    pub kd: KubeDir,
    pub state: tempfile::TempDir,
    pub etc: tempfile::TempDir,
}

impl Node {
    pub fn new() -> Node {
        Node {
            kd: KubeDir::new(),
            state: tempfile::Builder::new()
                .prefix("kubeharden-state-")
                .tempdir()
                .unwrap(),
            etc: tempfile::Builder::new()
                .prefix("kubeharden-etc-")
                .tempdir()
                .unwrap(),
        }
    }

    /// `<tmp>/hardening.yaml`, the path tests pass with -f (and as the default path).
    pub fn hardening(&self) -> PathBuf {
        self.etc.path().join("hardening.yaml")
    }

    pub fn write_hardening(&self, body: &str) -> PathBuf {
        let p = self.hardening();
        std::fs::write(
            &p,
            format!("apiVersion: kubeharden.io/v1alpha1\nkind: HardeningConfiguration\n{body}"),
        )
        .unwrap();
        p
    }

    pub fn command(&self, json: bool, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kubeharden"));
        for v in [
            "KUBEHARDEN_STATE_DIR",
            "KUBEHARDEN_MANIFESTS_DIR",
            "KUBEHARDEN_KUBERNETES_DIR",
            "KUBEHARDEN_RECOVERY_POLICY",
            "KUBEHARDEN_CRASH_AT",
            "KUBEHARDEN_TODAY",
        ] {
            c.env_remove(v);
        }
        // The default hardening file path, redirected into the test's temp dir.
        c.env("KUBEHARDEN_HARDENING_FILE", self.hardening());
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

    pub fn run_cmd(&self, mut c: Command) -> Run {
        let t0 = Instant::now();
        let out = c.output().expect("run kubeharden");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        Run {
            code: out.status.code().unwrap_or(-1),
            json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            wall: t0.elapsed(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_cmd(self.command(true, args))
    }

    pub fn run_text(&self, args: &[&str]) -> Run {
        self.run_cmd(self.command(false, args))
    }

    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.kd.manifest_path(file)).expect("read manifest")
    }

    pub fn history(&self, file: &str) -> Vec<Value> {
        let h = self.run(&["history", file]);
        assert_eq!(h.code, 0, "{}", h.dump());
        h.json["versions"].as_array().unwrap().clone()
    }

    /// `audit -o json [extra]`: (exit code, id → check).
    pub fn audit(&self, extra: &[&str]) -> (i32, BTreeMap<String, Value>, Value) {
        let mut args = vec!["audit"];
        args.extend_from_slice(extra);
        let a = self.run(&args);
        assert!(matches!(a.code, 0 | 1), "{}", a.dump());
        let checks = a.json["checks"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", a.dump()))
            .iter()
            .map(|c| (c["id"].as_str().unwrap().to_string(), c.clone()))
            .collect();
        (a.code, checks, a.json)
    }
}

/// Ports of one plane, so kubeadm's "new" manifests can be rendered for the same node.
pub struct Ports {
    pub api: u16,
    pub cm: u16,
    pub sch: u16,
    pub client: u16,
    pub peer: u16,
    pub metrics: u16,
}

/// A kubeadm v1.30 control plane on free ports.
pub struct Plane {
    pub node: Node,
    pub pods: Vec<Manifest>,
    pub ports: Ports,
}

impl Plane {
    pub fn new() -> Plane {
        let node = Node::new();
        let ports = Ports {
            api: free_port(),
            cm: free_port(),
            sch: free_port(),
            client: free_port(),
            peer: free_port(),
            metrics: free_port(),
        };
        let etcd = manifests::etcd(&node.kd, ports.client, ports.peer, ports.metrics);
        let etcd_servers = format!("--etcd-servers=https://127.0.0.1:{}", ports.client);
        let api = manifests::apiserver(&node.kd, ports.api, &[&etcd_servers]);
        let cm = manifests::controller_manager(&node.kd, ports.cm);
        let sch = manifests::scheduler(&node.kd, ports.sch);
        let pods = vec![etcd, api, cm, sch];
        for m in &pods {
            node.kd.install(m);
        }
        Plane { node, pods, ports }
    }

    pub fn health_urls(m: &Manifest) -> Vec<String> {
        match m.name.as_str() {
            "etcd" => vec![m.probe_url("/health?serializable=false")],
            "kube-apiserver" => vec![m.probe_url("/livez"), m.probe_url("/readyz")],
            _ => vec![m.probe_url("/healthz")],
        }
    }

    pub fn boot(&self) -> Sim {
        let sim = Sim::start_with(&self.node.kd.manifests(), SimConfig::default());
        for m in &self.pods {
            sim.wait_for_argv(&m.argv, T)
                .unwrap_or_else(|| panic!("{} did not start:\n{}", m.name, sim.pod_log(&m.name)));
        }
        for m in &self.pods {
            for url in Plane::health_urls(m) {
                wait_http_status(&url, 200, T)
                    .unwrap_or_else(|e| panic!("{} not healthy: {e}", m.name));
            }
        }
        sim
    }

    /// kubeadm v1.33.0's manifests for this node (tests/data/manifests/kubeadm-v1.33.0),
    /// relocated as the v1.30 ones are: paths into the temp node, the node address to
    /// 127.0.0.1, the plane's ports, `--secure-port` on the controller-manager and scheduler
    /// (as a ClusterConfiguration extraArg would put it). One departure: etcd's probes keep the
    /// /health paths, because Debian's etcd (3.4) has no /livez and /readyz (etcd 3.5.11+).
    pub fn v133(&self) -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix("kubeadm-v1.33-")
            .tempdir()
            .unwrap();
        let src =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/manifests/kubeadm-v1.33.0");
        let kd = self.node.kd.root().display().to_string();
        let p = &self.ports;
        let read = |n: &str| std::fs::read_to_string(src.join(n)).unwrap();
        let client = format!("https://127.0.0.1:{}", p.client);
        let peer = format!("https://127.0.0.1:{}", p.peer);
        let etcd = rewrite(
            &read("etcd.yaml"),
            &[
                (
                    "--listen-client-urls=https://127.0.0.1:2379,https://192.168.102.134:2379",
                    format!("--listen-client-urls={client}"),
                ),
                ("https://192.168.102.134:2379", client.clone()),
                ("https://192.168.102.134:2380", peer),
                ("controlplane", "sim-node".into()),
                (
                    "http://127.0.0.1:2381",
                    format!("http://127.0.0.1:{}", p.metrics),
                ),
                ("port: 2381", format!("port: {}", p.metrics)),
                (
                    "path: /livez",
                    "path: /health?exclude=NOSPACE&serializable=true".into(),
                ),
                ("path: /readyz", "path: /health?serializable=false".into()),
                (
                    "/var/lib/etcd",
                    self.node.kd.etcd_data_dir().display().to_string(),
                ),
                ("/etc/kubernetes", kd.clone()),
            ],
        );
        let api = rewrite(
            &read("kube-apiserver.yaml"),
            &[
                ("192.168.102.134:6443", format!("127.0.0.1:{}", p.api)),
                ("192.168.102.134", "127.0.0.1".into()),
                ("--secure-port=6443", format!("--secure-port={}", p.api)),
                ("port: 6443", format!("port: {}", p.api)),
                ("https://127.0.0.1:2379", client),
                ("/etc/kubernetes", kd.clone()),
            ],
        );
        let cm = manifests::set_flags(
            &rewrite(
                &read("kube-controller-manager.yaml"),
                &[
                    ("port: 10257", format!("port: {}", p.cm)),
                    ("/etc/kubernetes", kd.clone()),
                ],
            ),
            &[&format!("--secure-port={}", p.cm)],
        );
        let sch = manifests::set_flags(
            &rewrite(
                &read("kube-scheduler.yaml"),
                &[
                    ("port: 10259", format!("port: {}", p.sch)),
                    ("/etc/kubernetes", kd),
                ],
            ),
            &[&format!("--secure-port={}", p.sch)],
        );
        for (n, y) in [
            ("etcd.yaml", etcd),
            ("kube-apiserver.yaml", api),
            ("kube-controller-manager.yaml", cm),
            ("kube-scheduler.yaml", sch),
        ] {
            assert!(!y.contains("192.168.102.134"), "{n}: address left");
            std::fs::write(dir.path().join(n), y).unwrap();
        }
        dir
    }
}

fn rewrite(template: &str, pairs: &[(&str, String)]) -> String {
    let mut s = template.to_string();
    for (from, to) in pairs {
        assert!(s.contains(from), "template lacks {from:?}");
        s = s.replace(from, to);
    }
    s
}

/// The kubeadm stand-in binary (built once per test process).
pub fn standin() -> PathBuf {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(|| {
        ensure_examples_built();
        let dir = examples_dir();
        let profile_dir = dir.parent().unwrap();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args([
            "build",
            "--quiet",
            "--example",
            "kubeadm_standin",
            "--manifest-path",
        ])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(profile_dir.parent().unwrap());
        if cfg!(feature = "failpoints") {
            cmd.args(["--features", "failpoints"]);
        }
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        assert!(cmd.status().unwrap().success(), "building kubeadm_standin");
        dir.join("kubeadm_standin")
    })
    .clone()
}

/// `kubeharden kubeadm --kubeadm STANDIN -f H [extra] -- upgrade apply v1.33.0 --yes` with
/// the stand-in's environment.
pub fn wrapper(node: &Node, new: &Path, extra: &[&str], env: &[(&str, &str)]) -> Command {
    let s = standin();
    let h = node.hardening();
    let mut args: Vec<&str> = vec![
        "kubeadm",
        "--kubeadm",
        s.to_str().unwrap(),
        "-f",
        h.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.extend(["--", "upgrade", "apply", "v1.33.0", "--yes"]);
    let mut c = node.command(true, &args);
    c.env("KUBEADM_STANDIN_NEW", new)
        .env("KUBEADM_STANDIN_KUBERNETES_DIR", node.kd.root());
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Start events per pod so far.
pub fn start_counts(sim: &Sim) -> BTreeMap<&'static str, usize> {
    PODS.iter()
        .map(|p| (*p, sim.events("start", p).len()))
        .collect()
}

/// Sections whose automated checks the manifests decide (1.1 is file modes).
pub fn is_manifest_check(id: &str) -> bool {
    ["1.2.", "1.3.", "1.4.", "2."]
        .iter()
        .any(|p| id.starts_with(p))
}
