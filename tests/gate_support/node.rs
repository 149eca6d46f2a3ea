//! A node under the kubelet simulator and the real `kubeharden` binary run against it, for
//! the signal and pre-change health tests (`tests/signals.rs`, `tests/gate_preflight.rs`):
//! spawn a command, watch its stderr as it runs, send it real signals, and check afterwards
//! that the journal is closed (`verify`, `status`).
#![allow(dead_code)]

use crate::gate_support::{wait_http_status, wait_until, KubeDir, Manifest, Sim, SimConfig};
use serde_json::Value;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const T: Duration = Duration::from_secs(30);

/// A node (its /etc/kubernetes) and kubeharden's state dir.
pub struct Node {
    pub kd: KubeDir,
    pub state: tempfile::TempDir,
}

/// One finished kubeharden run.
pub struct Run {
    /// Exit code (None: killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub json: Value,
}

impl Run {
    pub fn txn(&self) -> &Value {
        &self.json["transactions"][0]
    }
    pub fn check(&self, i: usize) -> &Value {
        &self.txn()["gate"]["checks"][i]
    }
    pub fn dump(&self) -> String {
        format!(
            "exit {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A running kubeharden whose stderr is collected as it comes.
pub struct Running {
    pub child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }
    pub fn stderr_so_far(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
    /// Waits until stderr contains `what`.
    pub fn wait_stderr(&self, what: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.stderr_so_far().contains(what))
    }
    /// Waits until the process catches SIGINT, SIGTERM and SIGHUP (its handlers are in).
    pub fn wait_handlers(&self) {
        // Bit N-1 for signal N: SIGHUP 1, SIGINT 2, SIGTERM 15.
        let mask: u64 = 0b1 | 0b10 | (1 << 14);
        let pid = self.child.id();
        let ok = wait_until(T, || {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("SigCgt:"))
                        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
                })
                .is_some_and(|c| c & mask == mask)
        });
        assert!(ok, "kubeharden never installed its signal handlers");
    }
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).expect("kill");
    }
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
    /// Waits for the exit (SIGKILL after `timeout`, failing the test).
    pub fn finish(mut self, timeout: Duration) -> Run {
        let end = Instant::now() + timeout;
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "kubeharden did not exit within {timeout:?}; stderr:\n{}",
                    self.stderr_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut stdout);
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let stderr = self.stderr_so_far();
        Run {
            code: status.code(),
            json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
            stdout,
            stderr,
        }
    }
}

impl Node {
    pub fn new() -> Node {
        Node {
            kd: KubeDir::new(),
            state: tempfile::Builder::new()
                .prefix("kubeharden-state-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    /// `kubeharden -o json --state-dir … --manifests-dir … --kubernetes-dir … ARGS`.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kubeharden"));
        for v in [
            "KUBEHARDEN_STATE_DIR",
            "KUBEHARDEN_MANIFESTS_DIR",
            "KUBEHARDEN_KUBERNETES_DIR",
            "KUBEHARDEN_RECOVERY_POLICY",
            "KUBEHARDEN_CRASH_AT",
            "KUBEHARDEN_PAUSE_AT",
        ] {
            c.env_remove(v);
        }
        c.envs(env.iter().copied())
            .args(["-o", "json", "--state-dir"])
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

    pub fn spawn_env(&self, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut child = self.command(args, env).spawn().expect("spawn kubeharden");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Running {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    pub fn spawn(&self, args: &[&str]) -> Running {
        self.spawn_env(args, &[])
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.spawn(args).finish(Duration::from_secs(300))
    }

    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.kd.manifest_path(file)).expect("read manifest")
    }

    /// The journal is closed: `verify` exits 0 and `status` lists no incomplete transaction.
    pub fn assert_journal_closed(&self) {
        let v = self.run(&["verify"]);
        assert_eq!(v.code, Some(0), "verify: {}", v.dump());
        let s = self.run(&["status"]);
        assert_eq!(s.code, Some(0), "status: {}", s.dump());
        assert_eq!(
            s.json["incomplete"].as_array().map(Vec::len),
            Some(0),
            "incomplete transactions: {}",
            s.dump()
        );
    }

    /// `status`'s incomplete transactions.
    pub fn incomplete(&self) -> usize {
        let s = self.run(&["status"]);
        assert_eq!(s.code, Some(0), "status: {}", s.dump());
        s.json["incomplete"].as_array().map_or(0, Vec::len)
    }

    /// `history FILE` versions.
    pub fn history(&self, file: &str) -> Vec<Value> {
        let h = self.run(&["history", file]);
        assert_eq!(h.code, Some(0), "{}", h.dump());
        h.json["versions"].as_array().expect("versions").clone()
    }
}

/// Installs `m`, starts a sim, and waits until the pod runs and answers `path` with 200.
pub fn boot(node: &Node, m: &Manifest, path: &str) -> Sim {
    node.kd.install(m);
    let sim = Sim::start_with(&node.kd.manifests(), SimConfig::default());
    sim.wait_for_argv(&m.argv, T)
        .unwrap_or_else(|| panic!("{} did not start", m.name));
    wait_http_status(&m.probe_url(path), 200, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{} not healthy before the test: {e}", m.name));
    sim
}
