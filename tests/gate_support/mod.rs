//! Helpers for end-to-end tests of the health gate (`tests/gate_e2e.rs`) and for the
//! simulator's own tests (`tests/sim_selftest.rs`).
//!
//! * [`KubeDir`]: a throw-away "/etc/kubernetes" (manifests/, pki/ with placeholder files,
//!   real TLS certificates for etcd, *.conf kubeconfigs) in a temp dir.
//! * [`manifests`]: kubeadm v1.30.14 manifests (from `tests/data/manifests`) rewritten to free
//!   ports, 127.0.0.1 and the [`KubeDir`]'s paths.
//! * [`Sim`]: a running `examples/kubelet_sim` (which runs `examples/fake_component` for the
//!   kube-* components and the real `/usr/bin/etcd` for etcd) watching a manifests dir;
//!   dropping it stops the sim and its pods.
//! * Process and HTTP helpers: [`cmdline`], [`pid_alive`], [`wait_pid_gone`], [`http_get`],
//!   [`wait_http_status`], [`free_port`], [`etcd_or_skip`].
//!
//! Every test crate uses only part of this module.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// The etcd binary (Debian's etcd-server package); `KUBEHARDEN_ETCD_BIN` overrides.
pub fn etcd_bin() -> PathBuf {
    std::env::var_os("KUBEHARDEN_ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"))
}

/// Whether the real etcd can be run.
pub fn etcd_available() -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(etcd_bin()).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// For tests that need the real etcd: true = go on. Without etcd it panics when
/// `KUBEHARDEN_REQUIRE_ETCD=1` (CI), else prints a note and returns false (the test returns).
pub fn etcd_or_skip(test: &str) -> bool {
    if etcd_available() {
        return true;
    }
    let bin = etcd_bin();
    if std::env::var("KUBEHARDEN_REQUIRE_ETCD").as_deref() == Ok("1") {
        panic!(
            "{test}: KUBEHARDEN_REQUIRE_ETCD=1 but {} is missing (apt-get install etcd-server)",
            bin.display()
        );
    }
    eprintln!(
        "SKIPPED {test}: {} not found (apt-get install etcd-server; KUBEHARDEN_REQUIRE_ETCD=1 makes this a failure)",
        bin.display()
    );
    false
}

/// A TCP port free on 127.0.0.1 now, never handed out twice by this process.
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        // Also free on 0.0.0.0 (the fake kube-apiserver's default bind address).
        if TcpListener::bind(("0.0.0.0", port)).is_err() {
            continue;
        }
        if given.lock().unwrap().insert(port) {
            return port;
        }
    }
}

// ---------------------------------------------------------------- example binaries

/// `target/<profile>/examples`, found from the test executable (`target/<profile>/deps/x-…`).
pub fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").join("examples")
}

/// Makes sure `kubelet_sim` and `fake_component` exist and are newer than their sources.
/// A plain `cargo test` builds them (examples are built by `cargo test`); `cargo test --test
/// NAME` does not, so then this runs `cargo build --example …` once per test process.
pub fn ensure_examples_built() -> PathBuf {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = examples_dir();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut newest_src = SystemTime::UNIX_EPOCH;
        let mut sources = vec![src.join("kubelet_sim.rs"), src.join("fake_component.rs")];
        if let Ok(rd) = fs::read_dir(src.join("support")) {
            sources.extend(rd.flatten().map(|e| e.path()));
        }
        for s in &sources {
            if let Ok(t) = fs::metadata(s).and_then(|m| m.modified()) {
                newest_src = newest_src.max(t);
            }
        }
        let fresh = ["kubelet_sim", "fake_component"].iter().all(|b| {
            fs::metadata(dir.join(b))
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= newest_src)
        });
        if !fresh {
            let profile_dir = dir.parent().expect("profile dir");
            let target_dir = profile_dir.parent().expect("target dir");
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "--quiet", "--example", "kubelet_sim"])
                .args(["--example", "fake_component", "--manifest-path"])
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
                .arg("--target-dir")
                .arg(target_dir);
            if cfg!(feature = "failpoints") {
                // Same features as this test build: the library is not rebuilt.
                cmd.args(["--features", "failpoints"]);
            }
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let st = cmd.status().expect("run cargo build --example");
            assert!(
                st.success(),
                "cargo build of the example binaries failed: {st}"
            );
        }
        dir
    })
    .clone()
}

// ---------------------------------------------------------------- /proc

/// The argv of a process (None when it is gone or a zombie).
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None; // zombie or kernel thread
    }
    let raw = raw.strip_suffix(&[0]).unwrap_or(&raw);
    Some(
        raw.split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// (state, ppid) from /proc/PID/stat.
fn stat(pid: u32) -> Option<(char, u32)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Running (exists and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(st, _)| st != 'Z' && st != 'X')
}

pub fn wait_pid_gone(pid: u32, timeout: Duration) -> bool {
    wait_until(timeout, || !pid_alive(pid))
}

/// Live children of `parent`, with their argv.
pub fn children_of(parent: u32) -> Vec<(u32, Vec<String>)> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if stat(pid).is_some_and(|(st, pp)| pp == parent && st != 'Z' && st != 'X') {
            if let Some(argv) = cmdline(pid) {
                out.push((pid, argv));
            }
        }
    }
    out.sort();
    out
}

/// Polls `f` every 50 ms until it is true or `timeout` passed.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------- HTTP

/// GET without certificate verification (as the kubelet probes): (status, body). Any status
/// is Ok; Err is a transport error (refused, TLS, timeout).
pub fn http_get(
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<(u16, String), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build(),
        )
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut req = agent.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.call().map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    Ok((status, body))
}

/// Polls `url` until it answers `status`; returns the last answer (or transport error).
pub fn wait_http_status(url: &str, status: u16, timeout: Duration) -> Result<String, String> {
    let mut last = Err("never probed".to_string());
    wait_until(timeout, || {
        last = http_get(url, &[], Duration::from_secs(3));
        matches!(&last, Ok((s, _)) if *s == status)
    });
    match last {
        Ok((s, body)) if s == status => Ok(body),
        Ok((s, body)) => Err(format!("status {s}: {body}")),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------- kubernetes dir

/// A throw-away kubeadm node layout: `<tmp>/etc/kubernetes/{manifests,pki,*.conf}` and
/// `<tmp>/var/lib/etcd` (not created: etcd makes it 0700 itself).
pub struct KubeDir {
    tmp: tempfile::TempDir,
    root: PathBuf,
}

/// Files kubeadm's control-plane manifests name; empty placeholders (the fake components
/// only check that they exist), except pki/etcd/* which are real (see [`KubeDir::new`]).
const PLACEHOLDERS: &[&str] = &[
    "admin.conf",
    "super-admin.conf",
    "controller-manager.conf",
    "scheduler.conf",
    "kubelet.conf",
    "pki/ca.crt",
    "pki/ca.key",
    "pki/apiserver.crt",
    "pki/apiserver.key",
    "pki/apiserver-etcd-client.crt",
    "pki/apiserver-etcd-client.key",
    "pki/apiserver-kubelet-client.crt",
    "pki/apiserver-kubelet-client.key",
    "pki/front-proxy-ca.crt",
    "pki/front-proxy-ca.key",
    "pki/front-proxy-client.crt",
    "pki/front-proxy-client.key",
    "pki/sa.key",
    "pki/sa.pub",
];

impl KubeDir {
    /// Creates the layout. pki/etcd/ holds a real CA (ca.crt, ca.key) and server, peer and
    /// healthcheck-client certificates for 127.0.0.1/localhost signed by it (ECDSA P-256,
    /// server+client auth, as kubeadm makes them), so the real etcd can serve TLS.
    pub fn new() -> KubeDir {
        let tmp = tempfile::Builder::new()
            .prefix("kubeharden-node-")
            .tempdir()
            .expect("tempdir");
        let root = tmp.path().join("etc/kubernetes");
        fs::create_dir_all(root.join("manifests")).unwrap();
        fs::create_dir_all(root.join("pki/etcd")).unwrap();
        fs::create_dir_all(tmp.path().join("var/lib")).unwrap();
        for p in PLACEHOLDERS {
            fs::write(root.join(p), "").unwrap();
        }
        write_etcd_pki(&root.join("pki/etcd"));
        KubeDir { tmp, root }
    }
    /// `<tmp>` (the node's "/").
    pub fn node_root(&self) -> &Path {
        self.tmp.path()
    }
    /// `<tmp>/etc/kubernetes`.
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn manifests(&self) -> PathBuf {
        self.root.join("manifests")
    }
    pub fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }
    /// `<tmp>/var/lib/etcd`.
    pub fn etcd_data_dir(&self) -> PathBuf {
        self.tmp.path().join("var/lib/etcd")
    }
    /// A path under `<tmp>/etc/kubernetes`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
    /// Writes a file under `<tmp>/etc/kubernetes` (parents created); returns its path.
    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        p
    }
    /// Writes `m` as `manifests/<m.file_name>` (atomically: dot-file + rename, so the sim
    /// never reads half a file); returns the path.
    pub fn install(&self, m: &Manifest) -> PathBuf {
        self.write_manifest(&m.file_name, &m.yaml)
    }
    /// Writes `manifests/<file_name>` atomically; returns the path.
    pub fn write_manifest(&self, file_name: &str, yaml: &str) -> PathBuf {
        let dir = self.manifests();
        let tmp = dir.join(format!(".{file_name}.helper-tmp"));
        fs::write(&tmp, yaml).unwrap();
        let dst = dir.join(file_name);
        fs::rename(&tmp, &dst).unwrap();
        dst
    }
    pub fn manifest_path(&self, file_name: &str) -> PathBuf {
        self.manifests().join(file_name)
    }
}

impl Default for KubeDir {
    fn default() -> Self {
        Self::new()
    }
}

fn write_etcd_pki(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, "etcd-ca");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    fs::write(dir.join("ca.key"), ca_key.serialize_pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    for (name, cn) in [
        ("server", "sim-node"),
        ("peer", "sim-node"),
        ("healthcheck-client", "kube-etcd-healthcheck-client"),
    ] {
        let mut p = CertificateParams::new(vec![
            "localhost".to_string(),
            "sim-node".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])
        .unwrap();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &issuer).unwrap();
        fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
        fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

// ---------------------------------------------------------------- manifests

/// A static pod manifest and what the kubelet will run for it.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// e.g. `kube-apiserver.yaml`.
    pub file_name: String,
    /// The pod (and container) name, e.g. `kube-apiserver`.
    pub name: String,
    pub yaml: String,
    /// `command ++ args` of the container: the argv the sim's process will have.
    pub argv: Vec<String>,
    /// The probes' port.
    pub probe_port: u16,
}

impl Manifest {
    fn new(file_name: &str, name: &str, yaml: String, probe_port: u16) -> Manifest {
        let argv = manifests::argv_of(&yaml);
        Manifest {
            file_name: file_name.into(),
            name: name.into(),
            yaml,
            argv,
            probe_port,
        }
    }
    /// With `flags` set (`--name=value` or bare `--name`): a flag already in the command is
    /// replaced in place, a new one is inserted where kubeadm's sorted order puts it.
    pub fn with_flags(&self, flags: &[&str]) -> Manifest {
        let yaml = manifests::set_flags(&self.yaml, flags);
        Manifest::new(&self.file_name, &self.name, yaml, self.probe_port)
    }
    /// Without the flag `--name` (given without `=`).
    pub fn without_flag(&self, name: &str) -> Manifest {
        let yaml = manifests::remove_flag(&self.yaml, name);
        Manifest::new(&self.file_name, &self.name, yaml, self.probe_port)
    }
    /// Every probe's initialDelaySeconds / periodSeconds / failureThreshold set (kubeadm
    /// writes 10 / 10 (readiness: 1) / 24 (startup), 8 (liveness), 3 (readiness)).
    pub fn with_probe_timing(
        &self,
        initial_delay_s: u32,
        period_s: u32,
        failure_threshold: u32,
    ) -> Manifest {
        let mut out = String::new();
        for line in self.yaml.lines() {
            let t = line.trim_start();
            let indent = &line[..line.len() - t.len()];
            if t.starts_with("initialDelaySeconds:") {
                out.push_str(&format!("{indent}initialDelaySeconds: {initial_delay_s}"));
            } else if t.starts_with("periodSeconds:") {
                out.push_str(&format!("{indent}periodSeconds: {period_s}"));
            } else if t.starts_with("failureThreshold:") {
                out.push_str(&format!("{indent}failureThreshold: {failure_threshold}"));
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        Manifest::new(&self.file_name, &self.name, out, self.probe_port)
    }
    /// `scheme://127.0.0.1:probe_port/path`.
    pub fn probe_url(&self, path: &str) -> String {
        let scheme = if self.name == "etcd" { "http" } else { "https" };
        format!("{scheme}://127.0.0.1:{}{path}", self.probe_port)
    }
}

pub mod manifests {
    //! kubeadm v1.30.14 manifests (tests/data/manifests/kubeadm-v1.30.14), rewritten for a
    //! [`KubeDir`]: `/etc/kubernetes` and `/var/lib/etcd` → the temp node, the node address
    //! 10.0.1.171 → 127.0.0.1, ports → the given (free) ports. Probe shapes and timings stay
    //! kubeadm's (see [`Manifest::with_probe_timing`]).
    use super::{KubeDir, Manifest};

    const APISERVER: &str = include_str!("../data/manifests/kubeadm-v1.30.14/kube-apiserver.yaml");
    const CONTROLLER_MANAGER: &str =
        include_str!("../data/manifests/kubeadm-v1.30.14/kube-controller-manager.yaml");
    const SCHEDULER: &str = include_str!("../data/manifests/kubeadm-v1.30.14/kube-scheduler.yaml");
    const ETCD: &str = include_str!("../data/manifests/kubeadm-v1.30.14/etcd.yaml");

    /// Replaces each `from` (which must occur) by `to`, in order.
    fn rewrite(template: &str, pairs: &[(&str, String)]) -> String {
        let mut s = template.to_string();
        for (from, to) in pairs {
            assert!(s.contains(from), "template lacks {from:?}");
            s = s.replace(from, to);
        }
        s
    }

    fn paths(kd: &KubeDir) -> Vec<(&'static str, String)> {
        vec![("/etc/kubernetes", kd.root().display().to_string())]
    }

    /// kube-apiserver serving on `port` (probes https://127.0.0.1:port/{livez,readyz}), with
    /// `extra_flags` set as by [`Manifest::with_flags`] (e.g. `--anonymous-auth=false`).
    /// `--etcd-servers` stays https://127.0.0.1:2379 unless `extra_flags` sets it.
    pub fn apiserver(kd: &KubeDir, port: u16, extra_flags: &[&str]) -> Manifest {
        let mut pairs = vec![
            ("10.0.1.171:6443", format!("127.0.0.1:{port}")),
            ("10.0.1.171", "127.0.0.1".to_string()),
            ("--secure-port=6443", format!("--secure-port={port}")),
            ("port: 6443", format!("port: {port}")),
        ];
        pairs.extend(paths(kd));
        let yaml = set_flags(&rewrite(APISERVER, &pairs), extra_flags);
        Manifest::new("kube-apiserver.yaml", "kube-apiserver", yaml, port)
    }

    /// kube-controller-manager with `--secure-port=port` added (kubeadm relies on the default
    /// 10257, which parallel tests cannot share); probes https://127.0.0.1:port/healthz.
    pub fn controller_manager(kd: &KubeDir, port: u16) -> Manifest {
        let mut pairs = vec![("port: 10257", format!("port: {port}"))];
        pairs.extend(paths(kd));
        let yaml = set_flags(
            &rewrite(CONTROLLER_MANAGER, &pairs),
            &[&format!("--secure-port={port}")],
        );
        Manifest::new(
            "kube-controller-manager.yaml",
            "kube-controller-manager",
            yaml,
            port,
        )
    }

    /// kube-scheduler with `--secure-port=port` added; probes https://127.0.0.1:port/healthz.
    pub fn scheduler(kd: &KubeDir, port: u16) -> Manifest {
        let mut pairs = vec![("port: 10259", format!("port: {port}"))];
        pairs.extend(paths(kd));
        let yaml = set_flags(
            &rewrite(SCHEDULER, &pairs),
            &[&format!("--secure-port={port}")],
        );
        Manifest::new("kube-scheduler.yaml", "kube-scheduler", yaml, port)
    }

    /// The real etcd, kubeadm 1.30 shape: TLS client and peer URLs on 127.0.0.1 with the
    /// KubeDir's pki/etcd certificates and client-cert auth, data dir `<tmp>/var/lib/etcd`,
    /// metrics (plain http) on `metrics_port`, probes http://127.0.0.1:metrics_port
    /// /health?exclude=NOSPACE&serializable=true (liveness), /health?serializable=false
    /// (startup).
    pub fn etcd(kd: &KubeDir, client_port: u16, peer_port: u16, metrics_port: u16) -> Manifest {
        let client = format!("https://127.0.0.1:{client_port}");
        let peer = format!("https://127.0.0.1:{peer_port}");
        let pairs = vec![
            (
                "--listen-client-urls=https://127.0.0.1:2379,https://10.0.1.171:2379",
                format!("--listen-client-urls={client}"),
            ),
            ("https://10.0.1.171:2379", client.clone()),
            ("https://10.0.1.171:2380", peer.clone()),
            ("ip-10-0-1-171", "sim-node".to_string()),
            (
                "http://127.0.0.1:2381",
                format!("http://127.0.0.1:{metrics_port}"),
            ),
            ("port: 2381", format!("port: {metrics_port}")),
            ("/var/lib/etcd", kd.etcd_data_dir().display().to_string()),
            ("/etc/kubernetes", kd.root().display().to_string()),
        ];
        let yaml = rewrite(ETCD, &pairs);
        assert!(!yaml.contains("10.0.1.171"), "etcd template: address left");
        Manifest::new("etcd.yaml", "etcd", yaml, metrics_port)
    }

    /// `command ++ args` of the container named like the pod (else the first one).
    pub fn argv_of(yaml: &str) -> Vec<String> {
        let v: serde_norway::Value = serde_norway::from_str(yaml).expect("manifest parses");
        let name = v["metadata"]["name"].as_str().unwrap_or("");
        let containers = v["spec"]["containers"].as_sequence().expect("containers");
        let c = containers
            .iter()
            .find(|c| c["name"].as_str() == Some(name))
            .unwrap_or(&containers[0]);
        let strs = |k: &str| -> Vec<String> {
            c[k].as_sequence()
                .map(|s| {
                    s.iter()
                        .map(|a| a.as_str().expect("string arg").to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut argv = strs("command");
        argv.extend(strs("args"));
        argv
    }

    /// The line range of the `command:` list of the first container: (first item, end).
    fn command_lines(lines: &[String]) -> (usize, usize, String) {
        let start = lines
            .iter()
            .position(|l| l.trim_start() == "- command:" || l.trim_start() == "command:")
            .expect("command list");
        let first = start + 1;
        let indent: String = lines[first]
            .chars()
            .take_while(|c| *c == ' ')
            .collect::<String>();
        let mut end = first;
        while end < lines.len() && lines[end].starts_with(&format!("{indent}- ")) {
            end += 1;
        }
        (first, end, indent)
    }

    fn flag_name(arg: &str) -> &str {
        arg.split('=').next().unwrap_or(arg)
    }

    /// Sets each flag: replaces `--name[=…]` in place, else inserts in sorted position.
    pub fn set_flags(yaml: &str, flags: &[&str]) -> String {
        let mut lines: Vec<String> = yaml.lines().map(str::to_string).collect();
        for flag in flags {
            let (first, end, indent) = command_lines(&lines);
            let name = flag_name(flag);
            let item = format!("{indent}- {flag}");
            let args: Vec<String> = lines[first..end]
                .iter()
                .map(|l| l.trim_start()[2..].to_string())
                .collect();
            if let Some(i) = args.iter().position(|a| flag_name(a) == name) {
                lines[first + i] = item;
            } else {
                // After command[0], before the first flag sorting after it.
                let pos = args
                    .iter()
                    .enumerate()
                    .skip(1)
                    .find(|(_, a)| a.as_str() > *flag)
                    .map(|(i, _)| first + i)
                    .unwrap_or(end);
                lines.insert(pos, item);
            }
        }
        let mut out = lines.join("\n");
        out.push('\n');
        out
    }

    /// Removes every `--name` / `--name=…` item of the command list.
    pub fn remove_flag(yaml: &str, name: &str) -> String {
        let mut lines: Vec<String> = yaml.lines().map(str::to_string).collect();
        let (first, end, _) = command_lines(&lines);
        let keep: Vec<bool> = (0..lines.len())
            .map(|i| !(i >= first && i < end && flag_name(&lines[i].trim_start()[2..]) == name))
            .collect();
        let mut i = 0;
        lines.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        let mut out = lines.join("\n");
        out.push('\n');
        out
    }
}

// ---------------------------------------------------------------- the simulator

/// Options of [`Sim::start_with`]; `Default` = what [`Sim::start`] uses.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub restart_delay: Duration,
    pub poll: Duration,
    pub max_backoff: Duration,
    /// How long the last good pod of a manifest that stopped parsing keeps running
    /// (`None`: forever; the kubelet's relist drops it within 20 s).
    pub relist: Option<Duration>,
    pub kill_grace: Duration,
    /// More `kubelet_sim` arguments, e.g. `["--bin", "kube-apiserver=/path"]`.
    pub extra_args: Vec<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            restart_delay: Duration::from_millis(0),
            poll: Duration::from_millis(100),
            max_backoff: Duration::from_millis(4000),
            relist: Some(Duration::from_secs(20)),
            kill_grace: Duration::from_secs(2),
            extra_args: Vec::new(),
        }
    }
}

/// A running `kubelet_sim`. Its log, the pods' output and the behavior dir live in a temp
/// dir; Drop stops it (SIGTERM: it stops its pods; SIGKILL after 10 s) and kills any pod
/// process left. If the test is panicking, Drop prints the sim's log to stderr.
///
/// The sim also exits when its parent process (the test binary) exits, and its pods get
/// SIGKILL when the sim dies, so nothing outlives a killed test run.
pub struct Sim {
    child: Option<Child>,
    work: tempfile::TempDir,
    manifests_dir: PathBuf,
    seen_children: Mutex<Vec<(u32, Vec<String>)>>,
}

impl Sim {
    /// Starts the sim on `manifests_dir` with the given restart delay (poll 100 ms, back-off
    /// 500 ms doubling to 4 s, kill grace 2 s, fake components, etcd from [`etcd_bin`]).
    pub fn start(manifests_dir: &Path, restart_delay: Duration) -> Sim {
        Sim::start_with(
            manifests_dir,
            SimConfig {
                restart_delay,
                ..SimConfig::default()
            },
        )
    }

    pub fn start_with(manifests_dir: &Path, cfg: SimConfig) -> Sim {
        let examples = ensure_examples_built();
        let work = tempfile::Builder::new()
            .prefix("kubelet-sim-")
            .tempdir()
            .expect("tempdir");
        fs::create_dir_all(work.path().join("behavior")).unwrap();
        let stderr = fs::File::create(work.path().join("sim.stderr")).unwrap();
        let ms = |d: Duration| d.as_millis().to_string();
        let mut cmd = Command::new(examples.join("kubelet_sim"));
        cmd.arg("--manifests-dir")
            .arg(manifests_dir)
            .arg("--log")
            .arg(work.path().join("sim.log"))
            .arg("--component-bin")
            .arg(examples.join("fake_component"))
            .arg("--etcd-bin")
            .arg(etcd_bin())
            .args(["--restart-delay-ms", &ms(cfg.restart_delay)])
            .args(["--poll-ms", &ms(cfg.poll)])
            .args(["--max-backoff-ms", &ms(cfg.max_backoff)])
            .args([
                "--relist-ms",
                &cfg.relist.map(ms).unwrap_or_else(|| "0".into()),
            ])
            .args(["--kill-grace-ms", &ms(cfg.kill_grace)])
            .args(&cfg.extra_args)
            .env("FAKE_COMPONENT_BEHAVIOR_DIR", work.path().join("behavior"))
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().unwrap())
            .stderr(stderr);
        let child = cmd.spawn().expect("spawn kubelet_sim");
        let sim = Sim {
            child: Some(child),
            work,
            manifests_dir: manifests_dir.to_path_buf(),
            seen_children: Mutex::new(Vec::new()),
        };
        assert!(
            sim.wait_for_log(|l| l.contains(" sim-start "), Duration::from_secs(10)),
            "kubelet_sim did not start: {}",
            sim.stderr_text()
        );
        sim
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }
    pub fn manifests_dir(&self) -> &Path {
        &self.manifests_dir
    }
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }
    pub fn log_path(&self) -> PathBuf {
        self.work.path().join("sim.log")
    }
    /// The sim's event log (`TIMESTAMP EVENT key=value…` lines).
    pub fn log_text(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }
    /// The log lines of one event (`start`, `exit`, `kill`, `stopped`, `back-off`, `sync`,
    /// `parse-error`, `duplicate`, …) about pod `pod` (`kube-system/NAME`, or just NAME).
    pub fn events(&self, event: &str, pod: &str) -> Vec<String> {
        let pod = if pod.contains('/') {
            pod.to_string()
        } else {
            format!("kube-system/{pod}")
        };
        let ev = format!(" {event} ");
        let field = format!(" pod={pod}");
        self.log_text()
            .lines()
            .filter(|l| {
                l.contains(&ev) && (l.contains(&format!("{field} ")) || l.ends_with(&field))
            })
            .map(str::to_string)
            .collect()
    }
    fn stderr_text(&self) -> String {
        fs::read_to_string(self.work.path().join("sim.stderr")).unwrap_or_default()
    }
    /// stdout+stderr of a pod's processes (all its starts), e.g. `pod_log("kube-apiserver")`.
    pub fn pod_log(&self, pod_name: &str) -> String {
        fs::read_to_string(self.work.path().join(format!("{pod_name}.pod.log"))).unwrap_or_default()
    }
    /// `$FAKE_COMPONENT_BEHAVIOR_DIR` of the fake components this sim runs.
    pub fn behavior_dir(&self) -> PathBuf {
        self.work.path().join("behavior")
    }
    /// Sets the behavior of `component`'s next starts (see examples/fake_component.rs), e.g.
    /// `sim.set_behavior("kube-apiserver", "crash-after-ms 1500")`.
    pub fn set_behavior(&self, component: &str, text: &str) {
        fs::write(
            self.behavior_dir().join(format!("{component}.behavior")),
            text,
        )
        .unwrap();
    }
    pub fn clear_behavior(&self, component: &str) {
        let _ = fs::remove_file(self.behavior_dir().join(format!("{component}.behavior")));
    }

    /// The sim's live pod processes (pid, argv).
    pub fn children(&self) -> Vec<(u32, Vec<String>)> {
        let kids = children_of(self.pid());
        let mut seen = self.seen_children.lock().unwrap();
        for k in &kids {
            if !seen.contains(k) {
                seen.push(k.clone());
            }
        }
        kids
    }

    /// Waits for a pod process of this sim whose argv is exactly `argv`; its pid.
    pub fn wait_for_argv(&self, argv: &[String], timeout: Duration) -> Option<u32> {
        self.wait_for_new_argv(argv, &[], timeout)
    }

    /// Like [`Sim::wait_for_argv`], ignoring the pids in `not` (e.g. the previous process).
    /// Returns once the sim has also logged the `start` line of that pid.
    pub fn wait_for_new_argv(
        &self,
        argv: &[String],
        not: &[u32],
        timeout: Duration,
    ) -> Option<u32> {
        let mut found = None;
        wait_until(timeout, || {
            found = self
                .children()
                .into_iter()
                .find(|(pid, a)| a == argv && !not.contains(pid))
                .map(|(pid, _)| pid);
            found.is_some()
        });
        let pid = found?;
        let tag = format!(" pid={pid} ");
        self.wait_for_log(|l| l.contains(" start ") && l.contains(&tag), timeout);
        Some(pid)
    }

    /// Waits for a line of the sim's log that satisfies `pred`.
    pub fn wait_for_log(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> bool {
        wait_until(timeout, || self.log_text().lines().any(&pred))
    }

    /// Stops the sim with SIGTERM (it stops its pods first) and returns its exit status;
    /// SIGKILL after `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        self.children();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let end = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(st)) = child.try_wait() {
                break st;
            }
            if Instant::now() >= end {
                let _ = child.kill();
                break child.wait().expect("wait kubelet_sim");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Pods outliving the sim (cannot happen with PR_SET_DEATHSIG, but be sure).
        for (pid, argv) in self.seen_children.lock().unwrap().iter() {
            if cmdline(*pid).as_ref() == Some(argv) && pid_alive(*pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        Some(status)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(10));
        if std::thread::panicking() {
            let _ = writeln!(
                std::io::stderr(),
                "---- kubelet_sim log ({}):\n{}---- sim stderr:\n{}",
                self.log_path().display(),
                self.log_text(),
                self.stderr_text()
            );
        }
    }
}
