//! A stand-in for the kubelet's static pod handling, for end-to-end tests of the health gate.
//!
//! ```text
//! kubelet_sim --manifests-dir DIR --log FILE [--restart-delay-ms N] [--poll-ms 200]
//!             [--component-bin PATH] [--etcd-bin /usr/bin/etcd] [--bin NAME=PATH]...
//!             [--max-backoff-ms 4000] [--relist-ms 20000] [--kill-grace-ms 2000]
//!             [--record-reads DIR]
//! ```
//!
//! What it does, like the kubelet's file source (pkg/kubelet/config/file.go) and pod workers:
//!
//! * Lists DIR every `--poll-ms`: every regular file whose name does not start with `.`,
//!   whatever its extension (the kubelet globs `DIR/[^.]*`; a `kube-apiserver.yaml.bak` IS a
//!   manifest to it), in sorted order, not recursing into directories.
//! * Parses each as a v1 Pod (YAML or JSON). Pods are keyed by namespace/name; when two files
//!   hold the same pod, the one sorted last wins (the kubelet's store.Replace) and a
//!   `duplicate` line is logged.
//! * Runs, per pod, the container named like the pod (else the first container) as a real
//!   process whose `/proc/PID/cmdline` is exactly `command ++ args` (argv[0] = command[0]).
//!   The program executed: `--bin NAME=PATH` for basename(command[0]) == NAME, else
//!   `--etcd-bin` for `etcd`, else `--component-bin` (default: `fake_component` next to this
//!   executable). Container `env` entries with a literal `value` are set.
//! * A pod's identity is the hash of its parsed content plus its file path (the kubelet's
//!   static pod UID): reformatting or reordering keys changes nothing, any real change, a
//!   rename or a move to another file is a new pod. Every change of the directory (create,
//!   update, delete) is acted upon `--restart-delay-ms` after the sim first saw it: the old
//!   process gets SIGTERM, SIGKILL after `--kill-grace-ms`, and only once it is gone does the
//!   new one start (a static pod update removes the old pod first).
//! * A process that exits by itself is restarted after a back-off of 500 ms, doubling up to
//!   `--max-backoff-ms` (CrashLoopBackOff); the back-off resets when the pod changes or after
//!   the process ran for 2 × max-backoff.
//! * A file that stops parsing: logged, and its last good pod keeps running — for
//!   `--relist-ms` (the kubelet's 20 s periodic relist drops pods whose file does not parse;
//!   0 = keep it forever).
//! * The directory missing = no pods.
//! * With `--record-reads DIR`, every content it reads for the first time (a file's first read,
//!   and each read that finds new bytes) is saved, before it acts on it, as
//!   `DIR/NNNN-<file name>` with NNNN counting from 0001; a `read-recorded` event gives the
//!   saved name and `mono_us`, CLOCK_MONOTONIC in microseconds (the clock of systemd's journal
//!   timestamps, so a boot test can order the reads after other units' work).
//!
//! Every event is a line `TIMESTAMP EVENT key=value...` in `--log` (argv as a JSON array).
//! Each pod's stdout/stderr go to `<dir of --log>/<pod name>.pod.log`. Children get
//! PR_SET_DEATHSIG=SIGKILL so they die with the sim; SIGTERM/SIGINT to the sim stop all pods
//! (SIGTERM, SIGKILL after the grace) and exit 0; so does the sim's parent exiting.

#[path = "support/mod.rs"]
mod support;

use clap::Parser;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Kubelet static pod stand-in for tests")]
struct Opts {
    /// The static pod manifests directory to watch.
    #[arg(long)]
    manifests_dir: PathBuf,
    /// Delay between seeing a change of the directory and acting on it.
    #[arg(long, default_value_t = 0)]
    restart_delay_ms: u64,
    /// Event log (appended to).
    #[arg(long)]
    log: PathBuf,
    /// Program run for every command[0] other than etcd (default: fake_component next to
    /// this executable).
    #[arg(long)]
    component_bin: Option<PathBuf>,
    /// Program run for command[0] == "etcd".
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd_bin: PathBuf,
    /// NAME=PATH: run PATH when basename(command[0]) == NAME (repeatable, wins over the rest).
    #[arg(long = "bin", value_parser = parse_bin)]
    bins: Vec<(String, PathBuf)>,
    /// Directory listing period.
    #[arg(long, default_value_t = 200)]
    poll_ms: u64,
    /// Cap of the crash-loop back-off (which starts at 500 ms and doubles).
    #[arg(long, default_value_t = 4000)]
    max_backoff_ms: u64,
    /// How long the last good pod of a file that no longer parses keeps running (0 = forever).
    #[arg(long, default_value_t = 20_000)]
    relist_ms: u64,
    /// Time between SIGTERM and SIGKILL when stopping a pod.
    #[arg(long, default_value_t = 2000)]
    kill_grace_ms: u64,
    /// Save every newly read manifest content in this directory (see the module docs).
    #[arg(long, value_name = "DIR")]
    record_reads: Option<PathBuf>,
}

fn parse_bin(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => Err(format!("expected NAME=PATH, got {s:?}")),
    }
}

const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
const TICK: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------- event log

struct Log {
    file: File,
}

impl Log {
    fn event(&mut self, event: &str, fields: &[(&str, String)]) {
        let mut line = format!("{} {event}", support::stamp());
        for (k, v) in fields {
            line.push(' ');
            line.push_str(k);
            line.push('=');
            line.push_str(v);
        }
        line.push('\n');
        // One write of the whole line to an O_APPEND file: readers never see half a line.
        let _ = self.file.write_all(line.as_bytes());
    }
}

/// A value for a log field: bare when it has no blanks/quotes, else JSON-quoted.
fn q(s: &str) -> String {
    if !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c == '"' || c == '=') {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

fn status_text(st: &ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit-code={c}"),
        (None, Some(s)) => format!(
            "signal={}",
            Signal::try_from(s)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| s.to_string())
        ),
        _ => format!("status={st:?}"),
    }
}

// ---------------------------------------------------------------- manifests

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodDoc {
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<Meta>,
    spec: Option<PodSpec>,
}

#[derive(Deserialize)]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
}

#[derive(Deserialize)]
struct PodSpec {
    #[serde(default)]
    containers: Vec<Container>,
}

#[derive(Deserialize)]
struct Container {
    name: Option<String>,
    command: Option<Vec<String>>,
    args: Option<Vec<String>>,
    env: Option<Vec<EnvVar>>,
}

#[derive(Deserialize)]
struct EnvVar {
    name: String,
    value: Option<String>,
}

/// One pod as the directory describes it.
#[derive(Clone, Debug)]
struct Spec {
    key: String,
    name: String,
    file: PathBuf,
    hash: u64,
    container: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
}

fn parse_pod(path: &Path, text: &str) -> Result<Spec, String> {
    let value: serde_json::Value =
        serde_norway::from_str(text).map_err(|e| format!("yaml: {e}"))?;
    if !value.is_object() {
        return Err("couldn't parse as pod: not an object".into());
    }
    let doc: PodDoc = serde_json::from_value(value.clone()).map_err(|e| format!("pod: {e}"))?;
    match (doc.api_version.as_deref(), doc.kind.as_deref()) {
        (Some("v1"), Some("Pod")) => {}
        (_, None) => return Err("Object 'Kind' is missing".into()),
        (a, Some(k)) => return Err(format!("invalid pod: apiVersion {a:?} kind {k:?}")),
    }
    let meta = doc.metadata.ok_or("metadata: Required value")?;
    let name = meta
        .name
        .filter(|n| !n.is_empty())
        .ok_or("metadata.name: Required value")?;
    let namespace = meta
        .namespace
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    let spec = doc.spec.ok_or("spec: Required value")?;
    if spec.containers.is_empty() {
        return Err("spec.containers: Required value".into());
    }
    if spec
        .containers
        .iter()
        .any(|c| c.name.as_deref().unwrap_or("").is_empty())
    {
        return Err("spec.containers[].name: Required value".into());
    }
    let c = spec
        .containers
        .iter()
        .find(|c| c.name.as_deref() == Some(name.as_str()))
        .unwrap_or(&spec.containers[0]);
    let mut argv = c.command.clone().unwrap_or_default();
    argv.extend(c.args.clone().unwrap_or_default());
    if argv.is_empty() || argv[0].is_empty() {
        return Err(format!(
            "container {:?}: no command (the sim cannot run an image's entrypoint)",
            c.name.as_deref().unwrap_or("")
        ));
    }
    let env = c
        .env
        .iter()
        .flatten()
        .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
        .collect();
    // serde_json's Map is a BTreeMap here: key order and formatting do not change the hash.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.to_string().hash(&mut h);
    path.hash(&mut h);
    Ok(Spec {
        key: format!("{namespace}/{name}"),
        name,
        file: path.to_path_buf(),
        hash: h.finish(),
        container: c.name.clone().unwrap_or_default(),
        argv,
        env,
    })
}

/// What the sim remembers of one file of the directory.
struct FileState {
    bytes_hash: u64,
    parsed: Result<Spec, String>,
    /// The file's last pod that parsed, and since when the file no longer parses.
    last_good: Option<Spec>,
    bad_since: Option<Instant>,
}

// ---------------------------------------------------------------- pods

struct Proc {
    child: Child,
    pid: u32,
    hash: u64,
    started: Instant,
}

struct Stopping {
    child: Child,
    pid: u32,
    since: Instant,
    killed: bool,
}

struct PodState {
    /// What the directory says now (None = no file holds the pod).
    desired: Option<Spec>,
    /// What the sim acts on: `desired` as it was `restart_delay` after a change was seen.
    applied: Option<Spec>,
    change_seen: Option<Instant>,
    proc: Option<Proc>,
    stopping: Option<Stopping>,
    backoff: Duration,
    next_start: Option<Instant>,
    /// Why the next start happens: new-pod, pod-updated or back-off.
    start_reason: &'static str,
}

impl PodState {
    fn new() -> Self {
        PodState {
            desired: None,
            applied: None,
            change_seen: None,
            proc: None,
            stopping: None,
            backoff: INITIAL_BACKOFF,
            next_start: None,
            start_reason: "new-pod",
        }
    }
    fn idle(&self) -> bool {
        self.desired.is_none()
            && self.applied.is_none()
            && self.proc.is_none()
            && self.stopping.is_none()
    }
}

fn hash_of(s: &Option<Spec>) -> Option<u64> {
    s.as_ref().map(|s| s.hash)
}

struct Sim {
    opts: Opts,
    log: Log,
    log_dir: PathBuf,
    component_bin: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    pods: BTreeMap<String, PodState>,
    dir_missing_logged: bool,
    /// Contents saved by `--record-reads` so far.
    reads_recorded: u64,
    duplicates_logged: BTreeSet<(String, PathBuf)>,
}

impl Sim {
    fn max_backoff(&self) -> Duration {
        Duration::from_millis(self.opts.max_backoff_ms).max(INITIAL_BACKOFF)
    }

    fn program_for(&self, argv0: &str) -> PathBuf {
        let base = Path::new(argv0)
            .file_name()
            .map(|b| b.to_string_lossy().into_owned())
            .unwrap_or_else(|| argv0.to_string());
        if let Some((_, p)) = self.opts.bins.iter().rev().find(|(n, _)| *n == base) {
            return p.clone();
        }
        if base == "etcd" {
            return self.opts.etcd_bin.clone();
        }
        self.component_bin.clone()
    }

    /// `--record-reads`: keep these bytes, as read, under the next number.
    fn record_read(&mut self, path: &Path, bytes: &[u8]) {
        let Some(dir) = self.opts.record_reads.clone() else {
            return;
        };
        self.reads_recorded += 1;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let saved = dir.join(format!("{:04}-{name}", self.reads_recorded));
        let mono_us = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() * 1_000_000 + t.tv_nsec() / 1000)
            .unwrap_or(0);
        let outcome = fs::create_dir_all(&dir).and_then(|_| fs::write(&saved, bytes));
        let mut fields = vec![
            ("file", q(&path.to_string_lossy())),
            ("saved", q(&saved.to_string_lossy())),
            ("mono_us", mono_us.to_string()),
        ];
        if let Err(e) = outcome {
            fields.push(("error", q(&e.to_string())));
        }
        self.log.event("read-recorded", &fields);
    }

    /// Lists the directory and recomputes every pod's `desired` spec.
    fn scan(&mut self, now: Instant) {
        let dir = self.opts.manifests_dir.clone();
        let mut names: Vec<PathBuf> = Vec::new();
        match fs::read_dir(&dir) {
            Ok(rd) => {
                self.dir_missing_logged = false;
                for entry in rd.flatten() {
                    let name = entry.file_name();
                    if name.to_string_lossy().starts_with('.') {
                        continue;
                    }
                    let path = entry.path();
                    match fs::metadata(&path) {
                        Ok(m) if m.is_file() => names.push(path),
                        _ => {} // directories are not recursed into; dangling links skipped
                    }
                }
            }
            Err(e) => {
                if !self.dir_missing_logged {
                    self.log.event(
                        "dir-error",
                        &[
                            ("dir", q(&dir.to_string_lossy())),
                            ("error", q(&e.to_string())),
                        ],
                    );
                    self.dir_missing_logged = true;
                }
            }
        }
        names.sort();

        // Forget files that are gone.
        let present: BTreeSet<PathBuf> = names.iter().cloned().collect();
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !present.contains(*p))
            .cloned()
            .collect();
        for p in gone {
            self.files.remove(&p);
            self.log
                .event("file-removed", &[("file", q(&p.to_string_lossy()))]);
        }

        let mut desired: BTreeMap<String, Spec> = BTreeMap::new();
        for path in &names {
            let Ok(bytes) = fs::read(path) else { continue };
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            let bytes_hash = h.finish();
            let changed = self.files.get(path).map(|f| f.bytes_hash) != Some(bytes_hash);
            if changed {
                self.record_read(path, &bytes);
                let parsed = match std::str::from_utf8(&bytes) {
                    Ok(text) => parse_pod(path, text),
                    Err(e) => Err(format!("not UTF-8: {e}")),
                };
                let fname = q(&path.to_string_lossy());
                match &parsed {
                    Ok(spec) => self.log.event(
                        "manifest",
                        &[
                            ("file", fname),
                            ("pod", q(&spec.key)),
                            ("hash", format!("{:016x}", spec.hash)),
                        ],
                    ),
                    Err(e) => self
                        .log
                        .event("parse-error", &[("file", fname), ("error", q(e))]),
                }
                let prev = self.files.remove(path);
                let (last_good, bad_since) = match (&parsed, prev) {
                    (Ok(s), _) => (Some(s.clone()), None),
                    (Err(_), Some(p)) => (p.last_good, p.bad_since.or(Some(now))),
                    (Err(_), None) => (None, Some(now)),
                };
                self.files.insert(
                    path.clone(),
                    FileState {
                        bytes_hash,
                        parsed,
                        last_good,
                        bad_since,
                    },
                );
            }
            let st = &self.files[path];
            let spec = match &st.parsed {
                Ok(s) => Some(s.clone()),
                Err(_) => {
                    let within = self.opts.relist_ms == 0
                        || st.bad_since.is_some_and(|t| {
                            now.duration_since(t) < Duration::from_millis(self.opts.relist_ms)
                        });
                    if within {
                        st.last_good.clone()
                    } else {
                        None
                    }
                }
            };
            if let Some(spec) = spec {
                if let Some(prev) = desired.get(&spec.key) {
                    let k = (spec.key.clone(), spec.file.clone());
                    if !self.duplicates_logged.contains(&k) {
                        self.log.event(
                            "duplicate",
                            &[
                                ("pod", q(&spec.key)),
                                ("ignored", q(&prev.file.to_string_lossy())),
                                ("wins", q(&spec.file.to_string_lossy())),
                            ],
                        );
                        self.duplicates_logged.insert(k);
                    }
                }
                desired.insert(spec.key.clone(), spec);
            }
        }

        for key in desired.keys() {
            self.pods.entry(key.clone()).or_insert_with(PodState::new);
        }
        for (key, pod) in self.pods.iter_mut() {
            let d = desired.get(key).cloned();
            if hash_of(&d) != hash_of(&pod.desired) {
                pod.desired = d;
            }
            if hash_of(&pod.desired) != hash_of(&pod.applied) {
                pod.change_seen.get_or_insert(now);
            } else {
                pod.change_seen = None;
            }
        }
    }

    /// Advances every pod's processes towards its applied spec.
    fn step(&mut self, now: Instant) {
        let delay = Duration::from_millis(self.opts.restart_delay_ms);
        let grace = Duration::from_millis(self.opts.kill_grace_ms);
        let max_backoff = self.max_backoff();
        let keys: Vec<String> = self.pods.keys().cloned().collect();
        for key in keys {
            let mut pod = self.pods.remove(&key).expect("pod");

            // 1. A change seen `delay` ago becomes the applied spec.
            if let Some(seen) = pod.change_seen {
                if now.duration_since(seen) >= delay {
                    pod.change_seen = None;
                    let what = match (&pod.applied, &pod.desired) {
                        (None, Some(_)) => "create",
                        (Some(_), None) => "remove",
                        _ => "update",
                    };
                    self.log.event(
                        "sync",
                        &[
                            ("pod", q(&key)),
                            ("op", what.into()),
                            (
                                "hash",
                                hash_of(&pod.desired)
                                    .map(|h| format!("{h:016x}"))
                                    .unwrap_or_else(|| "none".into()),
                            ),
                        ],
                    );
                    pod.start_reason = if pod.applied.is_none() {
                        "new-pod"
                    } else {
                        "pod-updated"
                    };
                    pod.applied = pod.desired.clone();
                    pod.backoff = INITIAL_BACKOFF;
                    pod.next_start = None;
                }
            }

            // 2. A process that exited by itself: crash-loop back-off.
            if let Some(p) = pod.proc.as_mut() {
                if let Ok(Some(st)) = p.child.try_wait() {
                    let ran = now.duration_since(p.started);
                    if ran >= 2 * max_backoff {
                        pod.backoff = INITIAL_BACKOFF;
                    }
                    let wait = pod.backoff;
                    pod.backoff = (pod.backoff * 2).min(max_backoff);
                    pod.next_start = Some(now + wait);
                    pod.start_reason = "back-off";
                    self.log.event(
                        "exit",
                        &[
                            ("pod", q(&key)),
                            ("pid", p.pid.to_string()),
                            ("status", status_text(&st)),
                            ("ran_ms", ran.as_millis().to_string()),
                        ],
                    );
                    self.log.event(
                        "back-off",
                        &[("pod", q(&key)), ("delay_ms", wait.as_millis().to_string())],
                    );
                    pod.proc = None;
                }
            }

            // 3. A process whose spec is no longer the applied one is stopped.
            if let Some(p) = pod.proc.take() {
                if Some(p.hash) == hash_of(&pod.applied) {
                    pod.proc = Some(p);
                } else {
                    let reason = if pod.applied.is_none() {
                        "pod-removed"
                    } else {
                        "pod-updated"
                    };
                    let _ = kill(Pid::from_raw(p.pid as i32), Signal::SIGTERM);
                    self.log.event(
                        "kill",
                        &[
                            ("pod", q(&key)),
                            ("pid", p.pid.to_string()),
                            ("signal", "SIGTERM".into()),
                            ("reason", reason.into()),
                        ],
                    );
                    pod.stopping = Some(Stopping {
                        child: p.child,
                        pid: p.pid,
                        since: now,
                        killed: false,
                    });
                }
            }

            // 4. A stopping process: SIGKILL after the grace period; note when it is gone.
            if let Some(s) = pod.stopping.as_mut() {
                match s.child.try_wait() {
                    Ok(Some(st)) => {
                        self.log.event(
                            "stopped",
                            &[
                                ("pod", q(&key)),
                                ("pid", s.pid.to_string()),
                                ("status", status_text(&st)),
                            ],
                        );
                        pod.stopping = None;
                    }
                    Ok(None) if !s.killed && now.duration_since(s.since) >= grace => {
                        let _ = s.child.kill();
                        s.killed = true;
                        self.log.event(
                            "kill",
                            &[
                                ("pod", q(&key)),
                                ("pid", s.pid.to_string()),
                                ("signal", "SIGKILL".into()),
                                ("reason", "grace-period-expired".into()),
                            ],
                        );
                    }
                    _ => {}
                }
            }

            // 5. Nothing running, nothing stopping, a spec applied: start (after back-off).
            if pod.proc.is_none() && pod.stopping.is_none() {
                if let Some(spec) = pod.applied.clone() {
                    if pod.next_start.is_none_or(|t| now >= t) {
                        pod.next_start = None;
                        self.start(&mut pod, &spec, now);
                    }
                }
            }

            if !pod.idle() {
                self.pods.insert(key, pod);
            }
        }
    }

    fn start(&mut self, pod: &mut PodState, spec: &Spec, now: Instant) {
        let program = self.program_for(&spec.argv[0]);
        let out_path = self.log_dir.join(format!("{}.pod.log", spec.name));
        let key = q(&spec.key);
        let reason = pod.start_reason;
        let spawned = (|| -> std::io::Result<Child> {
            let mut out = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&out_path)?;
            writeln!(
                out,
                "==== {} start {} reason={reason} argv={}",
                support::stamp(),
                spec.key,
                support::json_argv(&spec.argv)
            )?;
            let err = out.try_clone()?;
            let mut cmd = Command::new(&program);
            cmd.arg0(&spec.argv[0])
                .args(&spec.argv[1..])
                .envs(spec.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err);
            // SAFETY: only async-signal-safe prctl(2) between fork and exec.
            unsafe {
                cmd.pre_exec(|| support::die_with_parent(Signal::SIGKILL));
            }
            cmd.spawn()
        })();
        match spawned {
            Ok(child) => {
                let pid = child.id();
                self.log.event(
                    "start",
                    &[
                        ("pod", key),
                        ("pid", pid.to_string()),
                        ("reason", reason.into()),
                        ("container", q(&spec.container)),
                        ("program", q(&program.to_string_lossy())),
                        ("hash", format!("{:016x}", spec.hash)),
                        ("argv", support::json_argv(&spec.argv)),
                    ],
                );
                pod.proc = Some(Proc {
                    child,
                    pid,
                    hash: spec.hash,
                    started: now,
                });
            }
            Err(e) => {
                let wait = pod.backoff;
                pod.backoff = (pod.backoff * 2).min(self.max_backoff());
                pod.next_start = Some(now + wait);
                pod.start_reason = "back-off";
                self.log.event(
                    "spawn-error",
                    &[
                        ("pod", key.clone()),
                        ("program", q(&program.to_string_lossy())),
                        ("error", q(&e.to_string())),
                    ],
                );
                self.log.event(
                    "back-off",
                    &[("pod", key), ("delay_ms", wait.as_millis().to_string())],
                );
            }
        }
    }

    /// Stops every process: SIGTERM, SIGKILL after the grace period.
    fn shutdown(&mut self, why: &str) {
        self.log.event("shutdown", &[("reason", why.into())]);
        let mut procs: Vec<(String, Child, u32)> = Vec::new();
        for (key, pod) in std::mem::take(&mut self.pods) {
            if let Some(p) = pod.proc {
                procs.push((key.clone(), p.child, p.pid));
            }
            if let Some(s) = pod.stopping {
                procs.push((key, s.child, s.pid));
            }
        }
        for (key, _, pid) in &procs {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGTERM);
            self.log.event(
                "kill",
                &[
                    ("pod", q(key)),
                    ("pid", pid.to_string()),
                    ("signal", "SIGTERM".into()),
                    ("reason", "shutdown".into()),
                ],
            );
        }
        let deadline = Instant::now() + Duration::from_millis(self.opts.kill_grace_ms);
        let mut killed = false;
        while !procs.is_empty() {
            let mut i = 0;
            while i < procs.len() {
                if let Ok(Some(st)) = procs[i].1.try_wait() {
                    let (key, _, pid) = procs.remove(i);
                    self.log.event(
                        "stopped",
                        &[
                            ("pod", q(&key)),
                            ("pid", pid.to_string()),
                            ("status", status_text(&st)),
                        ],
                    );
                } else {
                    i += 1;
                }
            }
            if !killed && Instant::now() >= deadline {
                for (key, child, pid) in procs.iter_mut() {
                    let _ = child.kill();
                    self.log.event(
                        "kill",
                        &[
                            ("pod", q(key)),
                            ("pid", pid.to_string()),
                            ("signal", "SIGKILL".into()),
                            ("reason", "grace-period-expired".into()),
                        ],
                    );
                }
                killed = true;
            }
            std::thread::sleep(TICK);
        }
        self.log
            .event("sim-exit", &[("pid", std::process::id().to_string())]);
    }
}

fn main() {
    let opts = Opts::parse();
    support::install_termination_flag();
    let parent = nix::unistd::getppid();

    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&opts.log)
        .unwrap_or_else(|e| {
            eprintln!("kubelet_sim: cannot open log {}: {e}", opts.log.display());
            std::process::exit(2);
        });
    let log_dir = opts
        .log
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let component_bin = opts.component_bin.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("fake_component")))
            .unwrap_or_else(|| PathBuf::from("fake_component"))
    });
    let mut sim = Sim {
        log: Log { file },
        log_dir,
        component_bin,
        files: BTreeMap::new(),
        pods: BTreeMap::new(),
        dir_missing_logged: false,
        duplicates_logged: BTreeSet::new(),
        reads_recorded: 0,
        opts,
    };
    sim.log.event(
        "sim-start",
        &[
            ("pid", std::process::id().to_string()),
            ("dir", q(&sim.opts.manifests_dir.to_string_lossy())),
            ("restart_delay_ms", sim.opts.restart_delay_ms.to_string()),
            ("poll_ms", sim.opts.poll_ms.to_string()),
            ("component_bin", q(&sim.component_bin.to_string_lossy())),
            ("etcd_bin", q(&sim.opts.etcd_bin.to_string_lossy())),
        ],
    );

    // The pods present at start-up run at once (no restart delay), as after a kubelet restart.
    let t0 = Instant::now();
    sim.scan(t0);
    for pod in sim.pods.values_mut() {
        if pod.change_seen.is_some() {
            pod.change_seen = None;
            pod.applied = pod.desired.clone();
        }
    }
    let poll = Duration::from_millis(sim.opts.poll_ms.max(1));
    let mut last_scan = t0;
    loop {
        if support::terminating() {
            sim.shutdown("signal");
            break;
        }
        if nix::unistd::getppid() != parent {
            sim.shutdown("parent-exited");
            break;
        }
        let now = Instant::now();
        if now.duration_since(last_scan) >= poll {
            sim.scan(now);
            last_scan = now;
        }
        sim.step(now);
        std::thread::sleep(TICK.min(poll));
    }
}
