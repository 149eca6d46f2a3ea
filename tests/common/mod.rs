//! Shared fixture for the black-box tests (`cli_engine`, `crash_matrix`, `concurrency`): a
//! throw-away node (state dir + manifests dir in a tempdir, holding copies of the real kubeadm
//! manifests), a runner for the real `kubeharden` binary, readers for its JSON and journal, and
//! [`assert_invariants`], the six invariants of `transaction-protocol.md`.
//!
//! Every test crate uses only part of this module.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test (built with the same features as the tests).
pub const BIN: &str = env!("CARGO_BIN_EXE_kubeharden");

/// The manifests of a kubeadm v1.30.14 control-plane node.
pub const MANIFESTS: [&str; 4] = [
    "etcd.yaml",
    "kube-apiserver.yaml",
    "kube-controller-manager.yaml",
    "kube-scheduler.yaml",
];
pub const APISERVER: &str = "kube-apiserver.yaml";
pub const CONTROLLER_MANAGER: &str = "kube-controller-manager.yaml";

/// Not the defaults (0644/0600 and root:root), so that a lost chmod/chown shows.
pub const MODE: u32 = 0o640;
pub const UID: u32 = 1234;
pub const GID: u32 = 2345;

/// A process that runs longer than this is a hang: it is killed and the test fails.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(180);

/// Record types of the journal (`journal-format`, "Record types").
pub mod rec {
    pub const BEGIN: u8 = 1;
    pub const APPLIED: u8 = 2;
    pub const COMMIT: u8 = 3;
    pub const ROLLED_BACK: u8 = 4;
    pub const ROLLBACK_FAILED: u8 = 5;
    pub const ABORTED: u8 = 6;
    pub const REVERTED: u8 = 7;
    pub const CONFLICT: u8 = 8;
    pub const VERSION: u8 = 9;
    pub const TRUNCATED_TAIL: u8 = 10;
    pub const PRUNED: u8 = 11;
    pub const GATE: u8 = 12;
}
pub const SEGMENT_HEADER_LEN: usize = 16;
/// u32 length | u8 type | 8-byte checksum.
pub const RECORD_HEADER_LEN: usize = 13;

/// The kubeadm manifests: `tests/data/...` if present, else the shared reference copy.
pub fn reference_manifests_dir() -> PathBuf {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/manifests/kubeadm-v1.30.14");
    if MANIFESTS.iter().all(|m| local.join(m).is_file()) {
        return local;
    }
    PathBuf::from("/work/shared/reference/manifests/kubeadm-v1.30.14")
}

pub fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// (mode & 0o7777, uid, gid) of a path, not following a symlink.
pub fn meta_of(path: &Path) -> (u32, u32, u32) {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Revert,
    Replay,
}

impl Policy {
    pub const ALL: [Policy; 2] = [Policy::Revert, Policy::Replay];

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Revert => "revert",
            Policy::Replay => "replay",
        }
    }
}

/// What a finished process left: exit status and its output.
pub struct Out {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Out {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The signal that killed the process, if one did.
    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn describe(&self) -> String {
        format!(
            "`kubeharden {}` -> {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.status,
            truncate(&self.stdout_text(), 4000),
            truncate(&self.stderr, 4000)
        )
    }

    /// Panic unless the process exited with `code`.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Out {
        assert_eq!(
            self.code(),
            Some(code),
            "expected exit {code}: {}",
            self.describe()
        );
        self
    }

    /// Stdout as exactly one JSON document (whitespace around it allowed, nothing else).
    #[track_caller]
    pub fn json(&self) -> Value {
        let mut docs = serde_json::Deserializer::from_slice(&self.stdout).into_iter::<Value>();
        let first = match docs.next() {
            Some(Ok(v)) => v,
            other => panic!(
                "stdout is not a JSON document ({other:?}): {}",
                self.describe()
            ),
        };
        match docs.next() {
            None => first,
            Some(x) => panic!(
                "stdout holds more than one JSON document (next: {x:?}): {}",
                self.describe()
            ),
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

/// Run a prepared command to completion (killing it after [`PROCESS_TIMEOUT`]).
pub fn run_command(mut cmd: Command, args: Vec<String>) -> Out {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {BIN}: {e}"));
    let mut so = child.stdout.take().expect("piped stdout");
    let mut se = child.stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let status = loop {
        match child.try_wait().expect("waiting for kubeharden") {
            Some(s) => break s,
            None if start.elapsed() > PROCESS_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`kubeharden {}` hung for {PROCESS_TIMEOUT:?}",
                    args.join(" ")
                );
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    let stdout = t_out.join().expect("stdout reader");
    let stderr = String::from_utf8_lossy(&t_err.join().expect("stderr reader")).into_owned();
    Out {
        args,
        status,
        stdout,
        stderr,
        elapsed: start.elapsed(),
    }
}

/// A local HTTP endpoint standing in for a component's health probes: every request gets the
/// status `health()` returns at that moment (200 = healthy). Lives as long as the test process.
pub struct ProbeServer {
    pub port: u16,
}

impl ProbeServer {
    pub fn start(health: impl Fn() -> u16 + Send + 'static) -> ProbeServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind probe server");
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let code = health();
                let body = if code == 200 { "ok" } else { "unhealthy" };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {code} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        ProbeServer { port }
    }

    /// One always-healthy server shared by the whole test process.
    pub fn healthy() -> u16 {
        static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
        *PORT.get_or_init(|| ProbeServer::start(|| 200).port)
    }
}

/// The apiserver manifest with its probes (livenessProbe, readinessProbe, startupProbe: host
/// 10.0.1.171, port 6443, HTTPS) aimed at `http://127.0.0.1:PORT` instead.
pub fn aim_probes(manifest: &[u8], port: u16) -> Vec<u8> {
    let s = String::from_utf8(manifest.to_vec()).unwrap();
    assert!(s.contains("host: 10.0.1.171") && s.contains("scheme: HTTPS"));
    s.replace("host: 10.0.1.171", "host: 127.0.0.1")
        .replace("port: 6443", &format!("port: {port}"))
        .replace("scheme: HTTPS", "scheme: HTTP")
        .into_bytes()
}

/// A control-plane node in a tempdir: `root/state` (not created: the tool makes it),
/// `root/manifests` with the four kubeadm manifests, mode 0640, owner 1234:2345.
pub struct Node {
    pub root: tempfile::TempDir,
    pub state: PathBuf,
    pub manifests: PathBuf,
    pub kubernetes: PathBuf,
    /// The manifests as copied in, by file name.
    pub originals: BTreeMap<String, Vec<u8>>,
}

impl Default for Node {
    fn default() -> Self {
        Self::new()
    }
}

impl Node {
    pub fn new() -> Node {
        let root = tempfile::Builder::new()
            .prefix("kubeharden-test-")
            .tempdir()
            .expect("tempdir");
        let state = root.path().join("state");
        let manifests = root.path().join("manifests");
        let kubernetes = root.path().join("kubernetes");
        fs::create_dir(&manifests).unwrap();
        fs::create_dir(&kubernetes).unwrap();
        let src = reference_manifests_dir();
        let mut originals = BTreeMap::new();
        for m in MANIFESTS {
            let bytes = fs::read(src.join(m))
                .unwrap_or_else(|e| panic!("reading {}/{m}: {e}", src.display()));
            place_file(&manifests.join(m), &bytes);
            originals.insert(m.to_string(), bytes);
        }
        Node {
            root,
            state,
            manifests,
            kubernetes,
            originals,
        }
    }

    /// A node whose apiserver answers its probes (see [`aim_probes`]) from a local server that
    /// is always healthy, so a health gate (and `recover --policy replay`) passes in ~2 s.
    pub fn with_healthy_apiserver() -> Node {
        Self::with_apiserver_probes_at(ProbeServer::healthy())
    }

    /// A node whose apiserver probes go to `http://127.0.0.1:port`.
    pub fn with_apiserver_probes_at(port: u16) -> Node {
        let mut node = Node::new();
        node.aim_apiserver_probes(port);
        node
    }

    /// Rewrite the (not yet recorded) apiserver manifest so its probes go to 127.0.0.1:port.
    pub fn aim_apiserver_probes(&mut self, port: u16) {
        let bytes = aim_probes(&self.originals[APISERVER], port);
        place_file(&self.manifests.join(APISERVER), &bytes);
        self.originals.insert(APISERVER.to_string(), bytes);
    }

    /// A copy of a reference manifest in another directory under the node's root (made if
    /// needed), mode 0640, owner 1234:2345. Returns its absolute path.
    pub fn manifest_elsewhere(&self, dir: &str, name: &str) -> PathBuf {
        let d = self.root.path().join(dir);
        fs::create_dir_all(&d).unwrap();
        let p = d.join(name);
        place_file(&p, &self.originals[name]);
        p
    }

    /// The path of a manifest: a bare name is in the manifests dir, anything else is as given.
    pub fn path(&self, manifest: &str) -> PathBuf {
        if manifest.contains('/') {
            PathBuf::from(manifest)
        } else {
            self.manifests.join(manifest)
        }
    }

    /// The key the tool uses for a manifest: its absolute path, dirs canonicalized.
    pub fn key(&self, manifest: &str) -> String {
        let p = self.path(manifest);
        let dir = fs::canonicalize(p.parent().unwrap()).unwrap();
        dir.join(p.file_name().unwrap())
            .to_string_lossy()
            .into_owned()
    }

    pub fn command<S: AsRef<OsStr>>(
        &self,
        args: &[S],
        env: &[(&str, &str)],
    ) -> (Command, Vec<String>) {
        self.command_via(Command::new(BIN), args, env)
    }

    /// `kubeharden ARGS` run with the process umask set to `umask` (through `sh`).
    pub fn run_with_umask<S: AsRef<OsStr>>(&self, umask: u32, args: &[S]) -> Out {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!("umask {umask:03o} && exec \"$0\" \"$@\""))
            .arg(BIN);
        let (cmd, shown) = self.command_via(sh, args, &[]);
        run_command(cmd, shown)
    }

    fn command_via<S: AsRef<OsStr>>(
        &self,
        mut cmd: Command,
        args: &[S],
        env: &[(&str, &str)],
    ) -> (Command, Vec<String>) {
        for var in [
            "KUBEHARDEN_CRASH_AT",
            "KUBEHARDEN_STATE_DIR",
            "KUBEHARDEN_MANIFESTS_DIR",
            "KUBEHARDEN_KUBERNETES_DIR",
            "KUBEHARDEN_RECOVERY_POLICY",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("KUBEHARDEN_STATE_DIR", &self.state)
            .env("KUBEHARDEN_KUBERNETES_DIR", &self.kubernetes)
            .arg("--manifests-dir")
            .arg(&self.manifests)
            .args(args)
            .current_dir(self.root.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let shown = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        (cmd, shown)
    }

    /// Run `kubeharden ARGS` against this node.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Out {
        self.run_env(args, &[])
    }

    pub fn run_env<S: AsRef<OsStr>>(&self, args: &[S], env: &[(&str, &str)]) -> Out {
        let (cmd, shown) = self.command(args, env);
        run_command(cmd, shown)
    }

    /// Run and require exit 0.
    #[track_caller]
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> Out {
        self.run(args).expect_code(0)
    }

    /// Run with `-o json`, require exit 0, return the document.
    #[track_caller]
    pub fn json<S: AsRef<OsStr>>(&self, args: &[S]) -> Value {
        let mut a: Vec<String> = args
            .iter()
            .map(|s| s.as_ref().to_string_lossy().into_owned())
            .collect();
        a.extend(["-o".to_string(), "json".to_string()]);
        self.run(&a).expect_code(0).json()
    }

    /// `history [MANIFEST] -o json`, the `versions` array.
    #[track_caller]
    pub fn history(&self, manifest: Option<&str>) -> Vec<Value> {
        let mut args = vec!["history"];
        args.extend(manifest);
        let doc = self.json(&args);
        doc["versions"]
            .as_array()
            .unwrap_or_else(|| panic!("history JSON without versions: {doc}"))
            .clone()
    }

    /// `history -o json` as raw stdout bytes (for byte-identity checks).
    #[track_caller]
    pub fn history_bytes(&self) -> Vec<u8> {
        let out = self.run(&["history", "-o", "json"]).expect_code(0);
        out.json();
        out.stdout
    }

    pub fn read(&self, manifest: &str) -> Vec<u8> {
        let p = self.path(manifest);
        fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
    }

    /// An edit made by someone else: the file rewritten in place (same inode, mode, owner).
    pub fn edit_externally(&self, manifest: &str, bytes: &[u8]) {
        let p = self.path(manifest);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&p)
            .unwrap_or_else(|e| panic!("opening {}: {e}", p.display()));
        f.write_all(bytes).unwrap();
        f.sync_all().unwrap();
    }

    /// Append a line to a manifest (an external edit); returns the new bytes.
    pub fn append_line(&self, manifest: &str, line: &str) -> Vec<u8> {
        let mut b = self.read(manifest);
        b.extend_from_slice(line.as_bytes());
        b.push(b'\n');
        self.edit_externally(manifest, &b);
        b
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.state.join("journal")
    }

    /// The journal's segment files, in order.
    pub fn segments(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = match fs::read_dir(self.journal_dir()) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        };
        v.sort();
        v
    }

    pub fn last_segment(&self) -> PathBuf {
        self.segments()
            .pop()
            .expect("the journal has at least one segment")
    }

    /// Every byte of the journal, segment after segment.
    pub fn journal_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for s in self.segments() {
            all.extend(fs::read(s).unwrap());
        }
        all
    }

    /// The journal's records as framed on disk (read independently of the tool's reader).
    pub fn journal_records(&self) -> Vec<RawRecord> {
        let mut out = Vec::new();
        for (i, s) in self.segments().iter().enumerate() {
            out.extend(parse_segment(&fs::read(s).unwrap(), i as u32 + 1));
        }
        out
    }

    /// File name -> bytes of every regular file under the manifests dir, the journal and the
    /// object store: what "nothing changed" compares (the catalog is derived, and SQLite may
    /// touch its files on a read).
    pub fn durable_fingerprint(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        for d in [
            self.manifests.clone(),
            self.journal_dir(),
            self.state.join("objects"),
        ] {
            collect_files(&d, &mut out);
        }
        out
    }

    /// Names of the tool's temp files left in the manifests dir.
    pub fn leftover_temps(&self) -> Vec<String> {
        fs::read_dir(&self.manifests)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".kubeharden-"))
            .collect()
    }

    /// The object file holding content `hash` (hex).
    pub fn object_path(&self, hash: &str) -> PathBuf {
        self.state.join("objects").join(&hash[..2]).join(&hash[2..])
    }
}

/// Write a file with the test mode and owner.
pub fn place_file(p: &Path, bytes: &[u8]) {
    fs::write(p, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
    fs::set_permissions(p, fs::Permissions::from_mode(MODE)).unwrap();
    std::os::unix::fs::chown(p, Some(UID), Some(GID))
        .unwrap_or_else(|e| panic!("chown {}: {e} (tests run as root)", p.display()));
}

fn collect_files(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd {
        let e = e.unwrap();
        let p = e.path();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            collect_files(&p, out);
        } else if ft.is_file() {
            out.insert(p.clone(), fs::read(&p).unwrap());
        } else {
            out.insert(p.clone(), b"<not a regular file>".to_vec());
        }
    }
}

/// One record frame as found in a segment.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub segment: u32,
    /// Offset of the frame in its segment file.
    pub offset: usize,
    /// Length of the whole frame (header + payload).
    pub len: usize,
    pub ty: u8,
    /// The transaction the record belongs to (a VERSION's txn field, 0 = none).
    pub txn: Option<u64>,
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().unwrap())
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

/// Frames of one segment, up to the first one that does not fit (a torn tail).
pub fn parse_segment(bytes: &[u8], segment: u32) -> Vec<RawRecord> {
    let mut out = Vec::new();
    let mut off = SEGMENT_HEADER_LEN;
    while off + RECORD_HEADER_LEN <= bytes.len() {
        let len = le_u32(&bytes[off..]) as usize;
        let ty = bytes[off + 4];
        let end = off + RECORD_HEADER_LEN + len;
        if end > bytes.len() {
            break;
        }
        let payload = &bytes[off + RECORD_HEADER_LEN..end];
        let txn = match ty {
            rec::BEGIN..=rec::CONFLICT | rec::GATE if payload.len() >= 8 => Some(le_u64(payload)),
            rec::VERSION if payload.len() >= 4 => {
                let at = 4 + le_u32(payload) as usize + 52 + 1;
                payload.get(at..at + 8).map(le_u64).filter(|&t| t != 0)
            }
            _ => None,
        };
        out.push(RawRecord {
            segment,
            offset: off,
            len: RECORD_HEADER_LEN + len,
            ty,
            txn,
        });
        off = end;
    }
    out
}

/// The current (latest) version of `key` in a history listing.
pub fn current_version<'a>(versions: &'a [Value], key: &str) -> Option<&'a Value> {
    versions
        .iter()
        .filter(|v| v["path"] == key)
        .max_by_key(|v| v["version"].as_u64().unwrap())
}

/// Does the history say the transaction that wrote `after` to `key` committed? Its version
/// (origin `restore`/`change`, a txn id) is the current one and holds `after`.
pub fn history_says_committed(versions: &[Value], key: &str, after: &[u8]) -> bool {
    current_version(versions, key).is_some_and(|v| {
        matches!(v["origin"].as_str(), Some("restore" | "change"))
            && !v["txn"].is_null()
            && v["on_disk_until"].is_null()
            && v["hash"] == blake3_hex(after)
    })
}

/// The six invariants of `transaction-protocol.md`, checked after a crash and one `recover`:
///
/// 1. `manifest` is byte-identical to `before` or to `after`;
/// 2. under `revert` it is `before` unless the transaction committed (then it is `after`);
///    `committed: None` asks the history (see [`history_says_committed`]);
/// 3. no `.kubeharden-*` file is left in the manifests dir;
/// 4. `verify` exits 0 (and no transaction is left incomplete);
/// 5. every version `history` lists shows byte-identically (blake3 and size);
/// 6. mode, owner and group of the manifest are 0640, 1234:2345, as before.
#[track_caller]
pub fn assert_invariants(
    node: &Node,
    manifest: &str,
    before: &[u8],
    after: &[u8],
    committed: Option<bool>,
    policy: Policy,
) {
    let key = node.key(manifest);
    let now = node.read(manifest);
    let which = |b: &[u8]| {
        if b == before {
            "before"
        } else if b == after {
            "after"
        } else {
            "a third content"
        }
    };
    // 1.
    assert!(
        now == before || now == after,
        "invariant 1: {key} is neither the before nor the after content ({} bytes, blake3 {})",
        now.len(),
        blake3_hex(&now)
    );
    // 2.
    let history = node.history(None);
    let committed = committed.unwrap_or_else(|| history_says_committed(&history, &key, after));
    if policy == Policy::Revert && before != after {
        let want: &[u8] = if committed { after } else { before };
        assert!(
            now == want,
            "invariant 2: under revert {key} must be the {} content (committed: {committed}), it is \
             the {} content",
            which(want),
            which(&now)
        );
    }
    // 3.
    let temps = node.leftover_temps();
    assert!(
        temps.is_empty(),
        "invariant 3: temp files left in the manifests dir: {temps:?}"
    );
    // 4.
    let v = node.run(&["verify", "-o", "json"]);
    assert_eq!(v.code(), Some(0), "invariant 4: verify: {}", v.describe());
    let status = node.json(&["status"]);
    assert_eq!(
        status["incomplete"],
        serde_json::json!([]),
        "invariant 4: incomplete transactions left after recover: {status}"
    );
    // 5.
    assert_versions_restore(node, &history);
    // 6.
    let meta = meta_of(&node.path(manifest));
    assert_eq!(
        meta,
        (MODE, UID, GID),
        "invariant 6: mode/uid/gid of {key} changed (want {MODE:o} {UID}:{GID})"
    );
}

/// Invariant 5: `show --version N` of every listed version gives bytes with its blake3 and size.
#[track_caller]
pub fn assert_versions_restore(node: &Node, history: &[Value]) {
    assert!(!history.is_empty(), "invariant 5: history is empty");
    for v in history {
        let path = v["path"].as_str().unwrap();
        let n = v["version"].as_u64().unwrap().to_string();
        let out = node.run(&["show", path, "--version", &n]);
        assert_eq!(
            out.code(),
            Some(0),
            "invariant 5: show {path} v{n}: {}",
            out.describe()
        );
        assert_eq!(
            blake3_hex(&out.stdout),
            v["hash"].as_str().unwrap(),
            "invariant 5: {path} v{n} does not show byte-identically"
        );
        assert_eq!(
            out.stdout.len() as u64,
            v["size"].as_u64().unwrap(),
            "invariant 5: {path} v{n} size"
        );
    }
}
