//! Engine benchmarks: `cargo bench --bench engine` prints markdown tables of measured figures,
//! each next to a baseline measured in the same run. `KUBEHARDEN_BENCH_QUICK=1` runs a reduced
//! version (fewer iterations, smaller states) as a CI smoke test. Nothing here asserts on time;
//! targets are reported as PASS/MISS.
//!
//! 1. Transaction latency of `restore --no-health-gate` (v1 <-> v2 of the 4 KB kubeadm
//!    kube-apiserver manifest): in-process with the engine opened once, in-process opening the
//!    state and recovering per transaction (as each CLI run does), and the real binary; against
//!    the bare fsync floor (4 fsyncs + a rename, the protocol's minimum).
//! 2. `status` and `history MANIFEST -o json` of the binary with 10,000 recorded versions,
//!    against the same binary's `--version` (process start).
//! 3. Storage of 1,000 one-flag edits plus 100 edits back to earlier contents: stored object
//!    bytes against the raw bytes of every version; identical contents stored once.
//!
//! Everything runs in a temp dir under `<target dir>/bench-tmp`, on the project's file system;
//! it is removed at the end unless `KUBEHARDEN_BENCH_KEEP=1` (for profiling the states by hand).

#[path = "engine/support.rs"]
mod support;

use clap::Parser;
use kubeharden::catalog::Catalog;
use kubeharden::cli::args::{Cli, Command as CliCommand};
use kubeharden::cli::commands::restore::{self, RestoreArgs};
use kubeharden::cli::commands::txn_output::{summary, txn_json};
use kubeharden::cli::commands::versions::select;
use kubeharden::cli::context::Ctx;
use kubeharden::engine::recovery::Policy;
use kubeharden::engine::state::{self, StateLock, StatePaths};
use kubeharden::engine::txn::{Change, TxnStatus};
use kubeharden::engine::{Engine, Unrecovered};
use kubeharden::fsys::real::RealFs;
use kubeharden::fsys::Fs;
use kubeharden::journal::record::TxnKind;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::fmt::Display;
use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{ms, tree_usage, InstrFs, Samples, Snapshot};

const APISERVER: &[u8] =
    include_bytes!("../tests/data/manifests/kubeadm-v1.30.14/kube-apiserver.yaml");
const OTHER_MANIFESTS: [(&str, &[u8]); 3] = [
    (
        "etcd.yaml",
        include_bytes!("../tests/data/manifests/kubeadm-v1.30.14/etcd.yaml"),
    ),
    (
        "kube-controller-manager.yaml",
        include_bytes!("../tests/data/manifests/kubeadm-v1.30.14/kube-controller-manager.yaml"),
    ),
    (
        "kube-scheduler.yaml",
        include_bytes!("../tests/data/manifests/kubeadm-v1.30.14/kube-scheduler.yaml"),
    ),
];
const MANIFEST: &str = "kube-apiserver.yaml";
const BIN: &str = env!("CARGO_BIN_EXE_kubeharden");
/// The flag line after which the edited `--audit-log-maxage` flag is inserted.
const ANCHOR: &[u8] = b"    - --allow-privileged=true\n";
/// Size of a journal record in the floor (a BEGIN of one file is about this).
const FLOOR_RECORD: usize = 200;

struct Config {
    quick: bool,
    warmup: usize,
    txn_rounds: usize,
    breakdown_iters: usize,
    versions: usize,
    read_runs: usize,
    storage_edits: usize,
    storage_reverts: usize,
}

impl Config {
    fn from_env() -> Config {
        let quick = std::env::var("KUBEHARDEN_BENCH_QUICK").is_ok_and(|v| v == "1");
        if quick {
            Config {
                quick,
                warmup: 2,
                txn_rounds: 15,
                breakdown_iters: 10,
                versions: 1_000,
                read_runs: 10,
                storage_edits: 100,
                storage_reverts: 10,
            }
        } else {
            Config {
                quick,
                warmup: 5,
                txn_rounds: 200,
                breakdown_iters: 100,
                versions: 10_000,
                read_runs: 30,
                storage_edits: 1_000,
                storage_reverts: 100,
            }
        }
    }
}

/// Unwrap with the error's message (the crate's errors read well with Display).
fn ok<T, E: Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// The apiserver manifest with `- --audit-log-maxage=N` added to its command.
fn with_maxage(n: usize) -> Vec<u8> {
    let at = APISERVER
        .windows(ANCHOR.len())
        .position(|w| w == ANCHOR)
        .expect("anchor flag in the apiserver manifest")
        + ANCHOR.len();
    let mut out = Vec::with_capacity(APISERVER.len() + 32);
    out.extend_from_slice(&APISERVER[..at]);
    out.extend_from_slice(format!("    - --audit-log-maxage={n}\n").as_bytes());
    out.extend_from_slice(&APISERVER[at..]);
    out
}

fn v2() -> Vec<u8> {
    with_maxage(30)
}

/// The 1, 5 and 15 minute load averages: fsync latency here depends on what else writes.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

/// A state dir and a manifests dir, with the apiserver manifest as `path` (key: its canonical
/// path, as the CLI resolves it).
struct Site {
    state: PathBuf,
    manifests: PathBuf,
    path: PathBuf,
    key: String,
}

fn make_site(root: &Path, name: &str, files: &[(&str, &[u8])]) -> Site {
    let base = root.join(name);
    let manifests = base.join("manifests");
    ok(
        std::fs::create_dir_all(&manifests),
        "creating manifests dir",
    );
    let manifests = ok(std::fs::canonicalize(&manifests), "canonicalize");
    for (n, bytes) in files {
        let mut f = ok(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(manifests.join(n)),
            "writing a manifest",
        );
        ok(f.write_all(bytes), "writing a manifest");
    }
    let path = manifests.join(MANIFEST);
    Site {
        state: base.join("state"),
        key: path.to_string_lossy().into_owned(),
        path,
        manifests,
    }
}

/// An engine opened as `Ctx::open_mutating` does: prepare, lock, catalog, recover (revert).
struct Opened {
    engine: Engine,
    _lock: StateLock,
}

fn open_engine(fs: Arc<dyn Fs>, site: &Site) -> Opened {
    let paths = StatePaths::new(&site.state);
    ok(state::prepare(fs.as_ref(), &paths, true), "prepare");
    let lock = ok(state::lock(&paths, Duration::from_secs(30)), "lock");
    let catalog = ok(Catalog::open(&paths.catalog), "catalog");
    let un = ok(Unrecovered::open(fs, paths, catalog, true), "open");
    let (engine, report) = ok(
        un.recover(Policy::Revert, std::slice::from_ref(&site.manifests), None),
        "recover",
    );
    assert!(report.resolved.is_empty(), "unexpected recovery work");
    Opened {
        engine,
        _lock: lock,
    }
}

/// One edit of `path` to `after` (kind `set`, metadata kept), committed without a gate.
fn edit(engine: &mut Engine, path: &Path, after: Vec<u8>) {
    let observed = ok(engine.observe(path), "observe");
    let change = Change {
        observed,
        after_bytes: after,
        after_meta: None,
    };
    let r = ok(
        engine.transact(TxnKind::Set, "bench edit", vec![change], None),
        "transact",
    );
    assert_eq!(r.status, TxnStatus::Committed);
}

/// A site whose apiserver manifest has version 1 = v1 (baseline) and version 2 = v2.
fn restore_site(root: &Path, name: &str) -> Site {
    let site = make_site(root, name, &[(MANIFEST, APISERVER)]);
    let mut o = open_engine(Arc::new(RealFs), &site);
    edit(&mut o.engine, &site.path, v2());
    site
}

/// What `restore.rs` does once the engine is open: select, fetch, observe, transact, render.
fn restore_in_engine(engine: &mut Engine, site: &Site, version: &str) {
    let row = ok(
        select(&engine.catalog, &site.key, Some(version), None),
        "select",
    );
    let target = ok(engine.store.get(&row.state.hash), "store get");
    let observed = ok(engine.observe(&site.path), "observe");
    let reason = format!("restore version {}", row.version);
    let before = observed.state;
    let change = Change {
        observed,
        after_bytes: target,
        after_meta: Some((row.state.mode, row.state.uid, row.state.gid)),
    };
    let report = ok(
        engine.transact(TxnKind::Restore, &reason, vec![change], None),
        "transact",
    );
    assert_eq!(report.status, TxnStatus::Committed);
    let after = report.files.first().map_or(before, |f| f.after);
    black_box(txn_json(
        &report,
        report.status.as_str(),
        &site.key,
        (&before, &after),
        &[],
        json!({"skipped": true, "reason": "--no-health-gate"}),
        &reason,
    ));
    black_box(summary(&report, &site.key));
}

fn restore_argv(site: &Site, version: &str) -> Vec<String> {
    [
        "--state-dir",
        &site.state.to_string_lossy(),
        "--manifests-dir",
        &site.manifests.to_string_lossy(),
        "restore",
        MANIFEST,
        "--version",
        version,
        "--no-health-gate",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The CLI's `restore` in-process: parse, `Ctx`, `restore::restore` (which locks, opens the
/// catalog, recovers, then transacts). Only process start and printing are left out.
/// `fs` replaces the `RealFs` of `Ctx::new` (for the instrumented breakdown).
fn restore_via_cli(site: &Site, version: &str, fs: Option<Arc<dyn Fs>>) {
    let argv = std::iter::once("kubeharden".to_string()).chain(restore_argv(site, version));
    let cli = ok(Cli::try_parse_from(argv), "parse");
    let Some(CliCommand::Restore {
        manifest,
        version,
        at,
        reason,
        dry_run,
        gate,
    }) = cli.command
    else {
        panic!("not a restore command");
    };
    let mut ctx = ok(Ctx::new(cli.global), "ctx");
    if let Some(fs) = fs {
        ctx.fs = fs;
    }
    let out = ok(
        restore::restore(
            &ctx,
            RestoreArgs {
                manifest: &manifest,
                version: version.as_deref(),
                at: at.as_deref(),
                reason: &reason,
                dry_run,
                gate: &gate,
            },
        ),
        "restore",
    );
    assert_eq!(out.code, 0);
    black_box(out.text);
}

fn bin_command(args: &[String]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args);
    for v in [
        "KUBEHARDEN_STATE_DIR",
        "KUBEHARDEN_MANIFESTS_DIR",
        "KUBEHARDEN_KUBERNETES_DIR",
        "KUBEHARDEN_RECOVERY_POLICY",
        "KUBEHARDEN_CRASH_AT",
    ] {
        c.env_remove(v);
    }
    c
}

/// Run the binary, wait, drain its stdout; panics on a non-zero exit. Returns (elapsed, stdout).
fn run_bin(args: &[String]) -> (Duration, Vec<u8>) {
    let t = Instant::now();
    let out = ok(
        bin_command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output(),
        "running kubeharden",
    );
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "kubeharden {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (d, out.stdout)
}

/// The bare fsync floor: what the protocol must do at least for one file.
struct Floor {
    dir: PathBuf,
    target: PathBuf,
    temp: PathBuf,
    log: File,
    record: [u8; FLOOR_RECORD],
}

impl Floor {
    fn new(root: &Path) -> Floor {
        let base = root.join("floor");
        let dir = base.join("manifests");
        let state = base.join("state");
        ok(std::fs::create_dir_all(&dir), "floor dir");
        ok(std::fs::create_dir_all(&state), "floor dir");
        let target = dir.join(MANIFEST);
        ok(std::fs::write(&target, APISERVER), "floor target");
        let log = ok(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(state.join("journal.log")),
            "floor log",
        );
        Floor {
            temp: dir.join(format!(".{MANIFEST}.tmp")),
            dir,
            target,
            log,
            record: [b'r'; FLOOR_RECORD],
        }
    }

    /// BEGIN append + fsync; temp create, write, fsync; rename; dir fsync; COMMIT append + fsync.
    fn run(&mut self, content: &[u8]) -> Duration {
        let t = Instant::now();
        ok(self.log.write_all(&self.record), "floor begin");
        ok(self.log.sync_all(), "floor begin fsync");
        let mut f = ok(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&self.temp),
            "floor temp",
        );
        ok(f.write_all(content), "floor temp write");
        ok(f.sync_all(), "floor temp fsync");
        drop(f);
        ok(std::fs::rename(&self.temp, &self.target), "floor rename");
        ok(
            File::open(&self.dir).and_then(|d| d.sync_all()),
            "floor dir fsync",
        );
        ok(self.log.write_all(&self.record), "floor commit");
        ok(self.log.sync_all(), "floor commit fsync");
        t.elapsed()
    }
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

/// Per-transaction means of an instrumented loop.
struct Breakdown {
    label: &'static str,
    n: usize,
    total: Duration,
    fs: Snapshot,
}

impl Breakdown {
    fn row(&self) -> String {
        let n = self.n as f64;
        let total = ms(self.total) / n;
        let sync = self.fs.sync_ns as f64 / 1e6 / n;
        let other = self.fs.other_ns as f64 / 1e6 / n;
        let rest = total - sync - other;
        format!(
            "| {} | {} | {:.2} | {:.1} + {:.1} | {:.2} ({:.0}%) | {:.1} / {:.2} | {:.2} ({:.0}%) |",
            self.label,
            self.n,
            total,
            self.fs.file_syncs as f64 / n,
            self.fs.dir_syncs as f64 / n,
            sync,
            100.0 * sync / total,
            self.fs.other_ops as f64 / n,
            other,
            rest,
            100.0 * rest / total,
        )
    }
}

/// The version a restore loop asks for at iteration `i`: 1, 2, 1, 2, ... (versions 1 and 2 are
/// v1 and v2, and each run starts from v2 on disk, so every restore changes the file).
fn alternate(i: usize) -> &'static str {
    if i.is_multiple_of(2) {
        "1"
    } else {
        "2"
    }
}

/// Run `run` for warm-up then measured iterations (numbered on), counting the `Fs` calls of
/// the measured ones.
fn breakdown(
    cfg: &Config,
    label: &'static str,
    fs: &InstrFs,
    run: &mut dyn FnMut(usize),
) -> Breakdown {
    for i in 0..cfg.warmup {
        run(i);
    }
    let before = fs.counters.snapshot();
    let t = Instant::now();
    for i in cfg.warmup..cfg.warmup + cfg.breakdown_iters {
        run(i);
    }
    Breakdown {
        label,
        n: cfg.breakdown_iters,
        total: t.elapsed(),
        fs: fs.counters.snapshot().minus(before),
    }
}

fn bench_transactions(cfg: &Config, root: &Path) -> Duration {
    eprintln!("[1/3] transaction latency: setting up");
    let mut floor = Floor::new(root);
    let once_site = restore_site(root, "txn-once");
    let per_open_site = restore_site(root, "txn-per-open");
    let process_site = restore_site(root, "txn-process");
    let mut once = open_engine(Arc::new(RealFs), &once_site);
    let v1 = APISERVER.to_vec();
    let v2 = v2();
    let version_args = vec!["--version".to_string()];

    const NAMES: [&str; 5] = [
        "**floor**: 200 B append+fsync, 4 KB temp write+fsync, rename, dir fsync, 200 B append+fsync",
        "engine opened once (library: select, get, observe, transact)",
        "open state + lock + recover per transaction (library: `restore::restore`, as one CLI run)",
        "`kubeharden restore --no-health-gate` process",
        "(for reference) `kubeharden --version` process start",
    ];
    let mut samples = vec![Samples::default(); NAMES.len()];
    eprintln!(
        "[1/3] transaction latency: {} warm-up + {} interleaved rounds",
        cfg.warmup, cfg.txn_rounds
    );
    for round in 0..cfg.warmup + cfg.txn_rounds {
        // Every variant flips its file each round: even rounds restore v1, odd ones v2.
        let to_v1 = round.is_multiple_of(2);
        let version = alternate(round);
        for k in 0..NAMES.len() {
            let which = (round + k) % NAMES.len();
            let d = match which {
                0 => floor.run(if to_v1 { &v1 } else { &v2 }),
                1 => {
                    let t = Instant::now();
                    restore_in_engine(&mut once.engine, &once_site, version);
                    t.elapsed()
                }
                2 => {
                    let t = Instant::now();
                    restore_via_cli(&per_open_site, version, None);
                    t.elapsed()
                }
                3 => run_bin(&restore_argv(&process_site, version)).0,
                _ => run_bin(&version_args).0,
            };
            if round >= cfg.warmup {
                samples[which].push(d);
            }
        }
    }
    drop(once);
    // The last round (index warmup + rounds - 1) restored v1 when even.
    let expected = if (cfg.warmup + cfg.txn_rounds - 1).is_multiple_of(2) {
        &v1
    } else {
        &v2
    };
    for site in [&once_site, &per_open_site, &process_site] {
        assert_eq!(&ok(std::fs::read(&site.path), "read back"), expected);
    }

    eprintln!("[1/3] transaction latency: instrumented breakdown");
    let mut breakdowns = Vec::new();
    {
        let site = restore_site(root, "txn-breakdown-once");
        let fs = Arc::new(InstrFs::new(false));
        let mut o = open_engine(fs.clone(), &site);
        let mut run = |i: usize| restore_in_engine(&mut o.engine, &site, alternate(i));
        breakdowns.push(breakdown(cfg, "engine opened once", &fs, &mut run));
    }
    {
        let site = restore_site(root, "txn-breakdown-per-open");
        let fs = Arc::new(InstrFs::new(false));
        let dynfs: Arc<dyn Fs> = fs.clone();
        let mut run = |i: usize| restore_via_cli(&site, alternate(i), Some(dynfs.clone()));
        breakdowns.push(breakdown(
            cfg,
            "open + lock + recover per transaction",
            &fs,
            &mut run,
        ));
    }

    let floor_med = samples[0].median_ms();
    println!(
        "## 1. Transaction latency: `restore --no-health-gate`, {} B <-> {} B manifest\n",
        v1.len(),
        v2.len()
    );
    println!("Variants interleaved round-robin ({} measured rounds after {} warm-up); baseline = the floor.\n", cfg.txn_rounds, cfg.warmup);
    println!("| variant | n | median ms | p90 ms | median / floor | target |");
    println!("|---|---:|---:|---:|---:|---|");
    for (i, (name, s)) in NAMES.iter().zip(&samples).enumerate() {
        let ratio = s.median_ms() / floor_med;
        let target = match i {
            0 => "baseline".to_string(),
            1 => format!("≤ 1.50×: {}", verdict(ratio <= 1.5)),
            _ => "—".to_string(),
        };
        println!(
            "| {name} | {} | {:.2} | {:.2} | {:.2}× | {target} |",
            s.len(),
            s.median_ms(),
            s.p90_ms(),
            ratio
        );
    }
    println!();
    println!("Where the time goes (separate instrumented run through a counting `Fs` over `RealFs`; means per transaction; SQLite's own I/O is not seen by the `Fs` and counts in \"rest\"):\n");
    println!("| loop | n | total ms | fsyncs file + dir | in fsync ms | other fs ops / ms | rest (CPU, SQLite) ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for b in &breakdowns {
        println!("{}", b.row());
    }
    println!();
    Duration::from_secs_f64(samples[1].median_ms() / 1e3)
}

fn bench_reads(cfg: &Config, root: &Path, txn_median: Duration) {
    let n = cfg.versions;
    eprintln!("[2/3] status/history: building a state with {n} versions of {MANIFEST}");
    let mut files: Vec<(&str, &[u8])> = vec![(MANIFEST, APISERVER)];
    files.extend(OTHER_MANIFESTS);
    let site = make_site(root, "reads", &files);
    let setup = Instant::now();
    let fs = Arc::new(InstrFs::new(true));
    {
        let mut o = open_engine(fs.clone(), &site);
        for (name, _) in &files {
            let obs = ok(o.engine.observe(&site.manifests.join(name)), "snapshot");
            assert!(obs.recorded.is_some());
        }
        for i in 1..n {
            edit(&mut o.engine, &site.path, with_maxage(i));
            if i.is_multiple_of(2000) {
                eprintln!("    {i} versions");
            }
        }
    }
    nix::unistd::sync();
    let setup = setup.elapsed();
    let total_versions = n + OTHER_MANIFESTS.len();

    let g = |v: &[&str]| -> Vec<String> {
        [
            "--state-dir",
            &site.state.to_string_lossy(),
            "--manifests-dir",
            &site.manifests.to_string_lossy(),
        ]
        .iter()
        .chain(v)
        .map(|s| s.to_string())
        .collect()
    };
    // Check the state is what it should be before timing anything.
    let (_, out) = run_bin(&g(&["status", "-o", "json"]));
    let st: Value = ok(serde_json::from_slice(&out), "status json");
    assert_eq!(st["versions"], json!(total_versions), "status: {st}");
    assert_eq!(st["drift"], json!([]), "status: {st}");
    let (_, out) = run_bin(&g(&["history", MANIFEST, "-o", "json"]));
    let hist: Value = ok(serde_json::from_slice(&out), "history json");
    let rows = hist["versions"].as_array().map_or(0, |a| a.len());
    assert_eq!(rows, n);
    let history_bytes = out.len();

    let cmds: [(&str, Vec<String>); 3] = [
        (
            "**baseline**: `kubeharden --version`",
            vec!["--version".into()],
        ),
        ("`kubeharden status`", g(&["status"])),
        (
            "`kubeharden history kube-apiserver.yaml -o json`",
            g(&["history", MANIFEST, "-o", "json"]),
        ),
    ];
    let mut samples = vec![Samples::default(); cmds.len()];
    eprintln!(
        "[2/3] status/history: {} warm-up + {} interleaved rounds",
        cfg.warmup, cfg.read_runs
    );
    for round in 0..cfg.warmup + cfg.read_runs {
        for k in 0..cmds.len() {
            let which = (round + k) % cmds.len();
            let (d, out) = run_bin(&cmds[which].1);
            black_box(out);
            if round >= cfg.warmup {
                samples[which].push(d);
            }
        }
    }

    let base = samples[0].median_ms();
    println!("## 2. `status` and `history` with {n} versions of one manifest\n");
    println!(
        "State: {total_versions} versions ({n} of {MANIFEST}: 1 baseline + {} committed `set` transactions through `Engine::transact`, plus 3 baselines), built in {:.1} s with fsync skipped (a counting `Fs` over `RealFs` returning at once from fsync); with real fsyncs it would take at least {} × {:.1} ms (the restore median; an edit also stores an object) ≈ {:.0} s. `history -o json` prints {} KB. Runs interleaved, {} measured after {} warm-up.\n",
        n - 1,
        setup.as_secs_f64(),
        n,
        ms(txn_median),
        n as f64 * txn_median.as_secs_f64(),
        history_bytes / 1024,
        cfg.read_runs,
        cfg.warmup
    );
    println!("| command | runs | median ms | p90 ms | median − baseline ms | median / baseline | target: − baseline ≤ 20 ms |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for (i, ((name, _), s)) in cmds.iter().zip(&samples).enumerate() {
        let m = s.median_ms();
        let target = if i == 0 {
            "baseline".to_string()
        } else {
            format!(
                "{} (absolute ≤ 20 ms: {})",
                verdict(m - base <= 20.0),
                verdict(m <= 20.0)
            )
        };
        println!(
            "| {name} | {} | {:.2} | {:.2} | {:+.2} | {:.2}× | {target} |",
            s.len(),
            m,
            s.p90_ms(),
            m - base,
            m / base
        );
    }
    println!();
}

fn bench_storage(cfg: &Config, root: &Path) {
    let (edits, reverts) = (cfg.storage_edits, cfg.storage_reverts);
    eprintln!("[3/3] storage: {edits} edits + {reverts} edits back to earlier contents");
    const FIRST: usize = 30;
    let site = make_site(root, "storage", &[(MANIFEST, &with_maxage(FIRST))]);
    let fs = Arc::new(InstrFs::new(true));
    let setup = Instant::now();
    {
        let mut o = open_engine(fs.clone(), &site);
        ok(o.engine.observe(&site.path), "baseline");
        for i in 1..=edits {
            edit(&mut o.engine, &site.path, with_maxage(FIRST + i));
        }
        // Back to earlier contents (edit values FIRST+1 ..= FIRST+edits), never the current one.
        for k in 0..reverts {
            let back = FIRST + 1 + (k * 7) % edits;
            edit(&mut o.engine, &site.path, with_maxage(back));
        }
    }
    nix::unistd::sync();
    let setup = setup.elapsed();

    let paths = StatePaths::new(&site.state);
    let catalog = ok(Catalog::open(&paths.catalog), "catalog");
    let versions = ok(catalog.versions(Some(&site.key)), "versions");
    assert_eq!(versions.len(), 1 + edits + reverts);
    let raw: u64 = versions.iter().map(|v| v.state.size).sum();
    let mut distinct = HashSet::new();
    let mut distinct_raw = 0;
    for v in &versions {
        if distinct.insert(v.state.hash) {
            distinct_raw += v.state.size;
        }
    }
    let catalog_store_bytes = ok(catalog.store_bytes(), "store bytes");
    let (objects, stored, allocated) = ok(tree_usage(&paths.objects), "walking objects");
    let ratio = stored as f64 / raw as f64;

    println!("## 3. Storage: {edits} one-flag edits + {reverts} edits back to earlier contents\n");
    println!(
        "Manifest: {MANIFEST} with `--audit-log-maxage=N` added ({:.0} B on average); each edit changes N (transactions through `Engine::transact`, fsync skipped, {:.1} s). Baseline = raw bytes of all versions.\n",
        raw as f64 / versions.len() as f64,
        setup.as_secs_f64()
    );
    println!("| figure | value | target |");
    println!("|---|---:|---|");
    println!(
        "| versions recorded | {} | 1 + {edits} + {reverts} |",
        versions.len()
    );
    println!("| **baseline**: raw bytes of all versions | {raw} | |");
    println!("| stored bytes (sum of object file sizes in STATE/objects) | {stored} | |");
    println!(
        "| **stored / raw** | {:.1}% | ≤ 35%: {} |",
        100.0 * ratio,
        verdict(ratio <= 0.35)
    );
    println!(
        "| distinct contents / object files | {} / {objects} | equal: {} |",
        distinct.len(),
        verdict(distinct.len() as u64 == objects)
    );
    println!(
        "| compression alone: stored / raw bytes of distinct contents | {:.1}% | |",
        100.0 * stored as f64 / distinct_raw as f64
    );
    println!(
        "| mean object file size | {:.0} B | |",
        stored as f64 / objects as f64
    );
    println!(
        "| `status` store bytes (catalog) | {catalog_store_bytes} | = stored: {} |",
        verdict(catalog_store_bytes == stored)
    );
    println!(
        "| (informational) allocated on disk, st_blocks × 512 | {allocated} ({:.0}% of raw) | |",
        100.0 * allocated as f64 / raw as f64
    );
    println!();
}

fn main() {
    let started = Instant::now();
    let cfg = Config::from_env();
    // The binary cargo built for this bench: <target>/release/kubeharden.
    let target_dir = Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .expect("target dir of the binary")
        .to_path_buf();
    let tmp_parent = target_dir.join("bench-tmp");
    ok(std::fs::create_dir_all(&tmp_parent), "creating bench-tmp");
    let tmp = ok(
        tempfile::Builder::new()
            .prefix("engine-")
            .tempdir_in(&tmp_parent),
        "temp dir",
    );
    let root = ok(std::fs::canonicalize(tmp.path()), "canonicalize temp dir");

    println!("# kubeharden engine bench\n");
    println!("| environment | |");
    println!("|---|---|");
    println!(
        "| mode | {} |",
        if cfg.quick {
            "QUICK (KUBEHARDEN_BENCH_QUICK=1)"
        } else {
            "full"
        }
    );
    println!("| temp dir | `{}` |", root.display());
    println!(
        "| file system (`stat -f -c %T`) | {} |",
        sh("stat", &["-f", "-c", "%T", &root.to_string_lossy()])
    );
    let device = sh("df", &["--output=source", &root.to_string_lossy()])
        .lines()
        .last()
        .unwrap_or("?")
        .to_string();
    println!("| device (`df`) | {device} |");
    let dev = device.trim_start_matches("/dev/");
    println!(
        "| ext4 journal (jbd2) | {} |",
        match std::fs::read_dir("/proc/fs/jbd2") {
            Ok(d) => {
                let on = d
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(dev));
                if on {
                    "present"
                } else {
                    "none for this device (fsync = data writeback, no journal commit)"
                }
            }
            Err(_) => "unknown (no /proc/fs/jbd2)",
        }
    );
    println!(
        "| device write cache | {} |",
        std::fs::read_to_string(format!("/sys/block/{dev}/queue/write_cache"))
            .map_or_else(|_| "?".to_string(), |s| s.trim().to_string())
    );
    println!("| load average at start | {} |", loadavg());
    println!("| kernel | {} |", sh("uname", &["-r"]));
    println!(
        "| CPUs | {} |",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| binary | `{BIN}` ({}) |", sh(BIN, &["--version"]));
    println!(
        "| iterations | txn: {} rounds (+{} warm-up) × 5 variants, breakdown {}; reads: {} versions, {} runs each; storage: {} + {} edits |",
        cfg.txn_rounds,
        cfg.warmup,
        cfg.breakdown_iters,
        cfg.versions,
        cfg.read_runs,
        cfg.storage_edits,
        cfg.storage_reverts
    );
    println!();

    let txn_median = bench_transactions(&cfg, &root);
    bench_reads(&cfg, &root, txn_median);
    bench_storage(&cfg, &root);

    println!("Load average at end: {}.\n", loadavg());
    println!(
        "Total bench time: {:.1} s.",
        started.elapsed().as_secs_f64()
    );
    if std::env::var("KUBEHARDEN_BENCH_KEEP").is_ok_and(|v| v == "1") {
        let kept = tmp.keep();
        eprintln!("kept the bench states in {}", kept.display());
    }
}
