//! Many `kubeharden` processes at once on one node: transactions never interleave (the state
//! lock serializes them), every one that reports `committed` is in the history exactly once,
//! the journal and the catalog agree, and each file ends at its last committed version.

mod common;

use common::{blake3_hex, rec, Node, Out, APISERVER, CONTROLLER_MANAGER};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Barrier};
use std::time::Duration;

const TARGETS: [&str; 2] = [APISERVER, CONTROLLER_MANAGER];

/// A tiny deterministic PRNG (xorshift64*), one per worker.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Snapshot, then two outside edits of each target, each recorded: v1, v2, v3 per target.
fn node_with_three_versions_each() -> Node {
    let node = Node::new();
    node.ok(&["snapshot"]);
    for round in 1..=2 {
        for t in TARGETS {
            node.append_line(t, &format!("# outside edit {round}"));
        }
        node.ok(&["snapshot"]);
    }
    for t in TARGETS {
        assert_eq!(node.history(Some(t)).len(), 3);
    }
    node
}

/// What a worker did: (args, exit, JSON).
type Log = Vec<(Vec<String>, Out)>;

fn run_workers(
    node: &Arc<Node>,
    workers: usize,
    per_worker: usize,
    lock_timeout: &str,
) -> Vec<Log> {
    let barrier = Arc::new(Barrier::new(workers));
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let node = Arc::clone(node);
            let barrier = Arc::clone(&barrier);
            let lock_timeout = lock_timeout.to_string();
            std::thread::spawn(move || {
                let mut rng = Rng::new(w as u64 + 1);
                let mut log = Vec::new();
                barrier.wait();
                for _ in 0..per_worker {
                    let args: Vec<String> = if rng.below(5) == 0 {
                        vec!["snapshot".into()]
                    } else {
                        let t = TARGETS[rng.below(2) as usize];
                        let v = (1 + rng.below(3)).to_string();
                        vec![
                            "restore".into(),
                            t.into(),
                            "--version".into(),
                            v,
                            "--no-health-gate".into(),
                        ]
                    };
                    let mut full = args.clone();
                    full.extend(["--lock-timeout".into(), lock_timeout.clone()]);
                    full.extend(["-o".into(), "json".into()]);
                    let out = node.run(&full);
                    log.push((args, out));
                }
                log
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// The checks every concurrent run must pass. Returns the committed txn ids by path key.
fn assert_serialized(node: &Node, logs: &[Log]) -> BTreeMap<String, Vec<u64>> {
    // Committed transactions, as the processes reported them.
    let mut committed: BTreeMap<u64, String> = BTreeMap::new();
    for log in logs {
        for (args, out) in log {
            if out.code() != Some(0) {
                continue;
            }
            let j = out.json();
            if args[0] == "restore" {
                let t = &j["transactions"][0];
                match t["status"].as_str() {
                    Some("committed") => {
                        let id = t["txn"].as_u64().expect("committed txn has an id");
                        let prev = committed.insert(id, t["path"].as_str().unwrap().to_string());
                        assert!(prev.is_none(), "txn id {id} reported twice");
                    }
                    Some("noop") => assert_eq!(t["txn"], Value::Null),
                    other => panic!("unexpected status {other:?}: {}", out.describe()),
                }
            }
        }
    }

    let v = node.json(&["verify"]);
    assert_eq!(v["ok"], true, "{v}");
    let st = node.json(&["status"]);
    assert_eq!(st["incomplete"], serde_json::json!([]), "{st}");
    assert_eq!(st["drift"], serde_json::json!([]), "{st}");

    // History: every committed txn has exactly one version, on the path it reported.
    let history = node.history(None);
    let mut seen: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for v in &history {
        if let Some(t) = v["txn"].as_u64() {
            seen.entry(t).or_default().push(v);
        }
    }
    assert_eq!(
        seen.keys().copied().collect::<BTreeSet<_>>(),
        committed.keys().copied().collect::<BTreeSet<_>>(),
        "txn ids in history vs committed reports"
    );
    for (t, vs) in &seen {
        assert_eq!(vs.len(), 1, "txn {t}: {vs:?}");
        assert_eq!(vs[0]["path"], committed[t].as_str());
        assert_eq!(vs[0]["origin"], "restore");
    }
    // Nothing but the tool wrote: no external/rollback/recovery versions after the setup.
    assert!(
        history.iter().all(|v| matches!(
            v["origin"].as_str(),
            Some("baseline" | "external" | "restore")
        )),
        "{history:?}"
    );

    // Global order: txn ids strictly increase; per file: versions 1..n without gaps, on-disk
    // times never go back, txn ids strictly increase.
    let ids: Vec<u64> = history.iter().filter_map(|v| v["txn"].as_u64()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "txn ids out of order in history: {ids:?}"
    );
    let mut by_path: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for v in &history {
        by_path
            .entry(v["path"].as_str().unwrap().to_string())
            .or_default()
            .push(v);
    }
    let mut per_path_txns = BTreeMap::new();
    for (path, mut vs) in by_path {
        vs.sort_by_key(|v| v["version"].as_u64().unwrap());
        for (i, v) in vs.iter().enumerate() {
            assert_eq!(v["version"].as_u64(), Some(i as u64 + 1), "{path}: gap");
        }
        let from: Vec<&str> = vs
            .iter()
            .map(|v| v["on_disk_from"].as_str().unwrap())
            .collect();
        assert!(
            from.windows(2).all(|w| w[0] <= w[1]),
            "{path}: on_disk_from goes back: {from:?}"
        );
        for w in vs.windows(2) {
            assert_eq!(w[0]["on_disk_until"], w[1]["on_disk_from"], "{path}");
        }
        assert_eq!(vs.last().unwrap()["on_disk_until"], Value::Null);
        let txns: Vec<u64> = vs.iter().filter_map(|v| v["txn"].as_u64()).collect();
        assert!(txns.windows(2).all(|w| w[0] < w[1]), "{path}: {txns:?}");
        // The file on disk is its last version, which is its last committed transaction's.
        let key = path.clone();
        let last = vs.last().unwrap();
        let bytes = std::fs::read(&key).unwrap();
        assert_eq!(blake3_hex(&bytes), last["hash"].as_str().unwrap(), "{path}");
        let last_committed = committed
            .iter()
            .filter(|(_, p)| **p == key)
            .map(|(t, _)| *t)
            .max();
        if let Some(t) = last_committed {
            assert_eq!(last["txn"].as_u64(), Some(t), "{path}: last version");
        }
        per_path_txns.insert(path, txns);
    }

    // The journal: BEGINs in strictly increasing txn order, each transaction's records
    // contiguous (BEGIN, APPLIED, VERSION, COMMIT) with nothing of another in between.
    let records = node.journal_records();
    let mut open: Option<u64> = None;
    let mut begins = Vec::new();
    for r in &records {
        match r.ty {
            rec::BEGIN => {
                assert!(open.is_none(), "BEGIN {:?} inside txn {open:?}", r.txn);
                let t = r.txn.unwrap();
                assert!(begins.last().is_none_or(|&p| p < t), "txn ids go back: {t}");
                begins.push(t);
                open = Some(t);
            }
            rec::APPLIED | rec::VERSION if r.txn.is_some() => {
                assert_eq!(
                    r.txn, open,
                    "record of txn {:?} outside its transaction",
                    r.txn
                );
            }
            rec::COMMIT => {
                assert_eq!(r.txn, open, "COMMIT of txn {:?} outside it", r.txn);
                open = None;
            }
            rec::VERSION => assert!(open.is_none(), "a sighting inside txn {open:?}"),
            other => panic!("unexpected record type {other} in a clean concurrent run"),
        }
    }
    assert!(open.is_none(), "txn {open:?} never ended");
    assert_eq!(
        begins.iter().copied().collect::<BTreeSet<_>>(),
        committed.keys().copied().collect::<BTreeSet<_>>()
    );
    common::assert_versions_restore(node, &history);
    per_path_txns
}

#[test]
fn eight_processes_with_25_transactions_each_never_interleave() {
    let node = Arc::new(node_with_three_versions_each());
    let logs = run_workers(&node, 8, 25, "120");
    let failed: Vec<String> = logs
        .iter()
        .flatten()
        .filter(|(_, out)| out.code() != Some(0))
        .map(|(_, out)| out.describe())
        .collect();
    assert!(
        failed.is_empty(),
        "processes failed:\n{}",
        failed.join("\n\n")
    );
    assert_eq!(logs.iter().map(Vec::len).sum::<usize>(), 200);
    let txns = assert_serialized(&node, &logs);
    let total: usize = txns.values().map(Vec::len).sum();
    assert!(
        total >= 20,
        "too few transactions committed to prove anything: {total}"
    );
    for t in TARGETS {
        assert_eq!(
            common::meta_of(&node.path(t)),
            (common::MODE, common::UID, common::GID)
        );
    }
}

#[test]
fn processes_started_together_with_lock_timeout_0_either_run_or_exit_5() {
    let node = Arc::new(node_with_three_versions_each());
    let logs = run_workers(&node, 8, 4, "0");
    let mut codes = BTreeMap::new();
    for (_, out) in logs.iter().flatten() {
        assert!(
            matches!(out.code(), Some(0 | 5)),
            "exit 0 or 5 only: {}",
            out.describe()
        );
        if out.code() == Some(5) {
            let j = out.json();
            assert_eq!(j["exit_code"], 5, "{j}");
        }
        *codes.entry(out.code().unwrap()).or_insert(0) += 1;
    }
    assert!(codes.get(&0).copied().unwrap_or(0) > 0, "{codes:?}");
    assert_serialized(&node, &logs);
}

#[test]
fn readers_during_concurrent_writers_always_get_a_consistent_answer() {
    let node = Arc::new(node_with_three_versions_each());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|i| {
            let node = Arc::clone(&node);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let args: &[&str] = if i == 0 {
                        &["history", "-o", "json"]
                    } else {
                        &["status", "-o", "json"]
                    };
                    let out = node.run(args);
                    assert_eq!(out.code(), Some(0), "{}", out.describe());
                    let j = out.json();
                    if i == 0 {
                        // Versions per path stay numbered 1..n even mid-transaction.
                        let mut per: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
                        for v in j["versions"].as_array().unwrap() {
                            per.entry(v["path"].as_str().unwrap())
                                .or_default()
                                .push(v["version"].as_u64().unwrap());
                        }
                        for (p, mut vs) in per {
                            vs.sort_unstable();
                            assert!(
                                vs.iter().enumerate().all(|(i, v)| *v == i as u64 + 1),
                                "{p}: {vs:?}"
                            );
                        }
                    }
                    n += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                n
            })
        })
        .collect();
    let logs = run_workers(&node, 4, 10, "120");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let reads: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(reads > 0);
    for (_, out) in logs.iter().flatten() {
        assert_eq!(out.code(), Some(0), "{}", out.describe());
    }
    assert_serialized(&node, &logs);
}
