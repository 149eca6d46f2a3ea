//! SIGKILL at every named crash point, under both recovery policies, then one `recover`: the
//! six invariants of `transaction-protocol.md` must hold (see `common::assert_invariants`).
//!
//! Each point is driven by the scenario that reaches it, chosen by its prefix:
//!
//! * `store.*`, `txn.*`, `replace.*` (and any new point): a `restore kube-apiserver.yaml
//!   --version 1` over a file with three versions and an external edit not recorded yet (so
//!   the restore first records it: object store, external version, then the transaction);
//! * `rollback.*`: the same restore of a manifest outside the manifests dir whose temp name is
//!   taken by a directory, so the durable write fails and the transaction rolls back;
//! * `recover.*`: a restore killed at `replace.renamed`, then `recover` killed at the point
//!   (for `recover.tail_*` a torn partial record is appended to the journal first);
//! * `snapshot.*`: the first `snapshot` of the node.
//!
//! After the kill: `recover --policy P` must exit 0, then the invariants are checked. The whole
//! matrix runs once (in parallel) and the tests below read its results.
//!
//! `recover --policy replay` runs the health gate on what it finishes, so the apiserver's probes
//! are aimed at a local, always-healthy endpoint (`Node::with_healthy_apiserver`).
#![cfg(feature = "failpoints")]

mod common;

use common::{assert_invariants, blake3_hex, rec, Node, Out, Policy, APISERVER, RECORD_HEADER_LEN};
use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

const SIGKILL: i32 = 9;

/// `kubeharden --list-crash-points`, one a line.
fn crash_points() -> Vec<String> {
    let node = Node::new();
    let out = node.run(&["--list-crash-points"]).expect_code(0);
    let points: Vec<String> = out
        .stdout_text()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        // The kubeadm wrapper's own points: tests/kubeadm_upgrade.rs kills at each of them.
        .filter(|l| !l.starts_with("kubeadm."))
        .map(String::from)
        .collect();
    assert!(!points.is_empty(), "no crash points listed");
    points
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Restore,
    Rollback,
    Recover,
    Snapshot,
}

fn phase_of(point: &str) -> Phase {
    if point.starts_with("recover.") {
        Phase::Recover
    } else if point.starts_with("rollback.") {
        Phase::Rollback
    } else if point.starts_with("snapshot.") {
        Phase::Snapshot
    } else {
        Phase::Restore
    }
}

#[derive(Debug)]
struct Outcome {
    point: String,
    policy: Policy,
    /// Some process of the scenario died by SIGKILL at the point.
    killed: bool,
    failure: Option<String>,
}

fn crash_env(point: &str) -> [(&'static str, &str); 1] {
    [("KUBEHARDEN_CRASH_AT", point)]
}

#[track_caller]
fn assert_killed(out: &Out, point: &str) {
    assert_eq!(
        out.signal(),
        Some(SIGKILL),
        "expected SIGKILL at {point} (if no point fires at all: was the binary rebuilt without \
         --features failpoints by another cargo run sharing the target dir?): {}",
        out.describe()
    );
}

/// Was the process killed at the point, or did it finish normally (exit 0)?
#[track_caller]
fn killed_or_ok(out: &Out, point: &str) -> bool {
    match (out.signal(), out.code()) {
        (Some(SIGKILL), _) => true,
        (None, Some(0)) => false,
        _ => panic!("expected SIGKILL at {point} or exit 0: {}", out.describe()),
    }
}

/// History with ≥ 3 versions of `manifest`, the file at v1's content again, then an external
/// edit not recorded yet. Returns (content now on disk = before, v1 content = after).
fn prepare_history(node: &Node, manifest: &str) -> (Vec<u8>, Vec<u8>) {
    let a = node.read(manifest);
    node.ok(&["snapshot", manifest]);
    node.append_line(manifest, "# external edit 1");
    let r = node.json(&["restore", manifest, "--version", "1", "--no-health-gate"]);
    assert_eq!(r["transactions"][0]["status"], "committed", "{r}");
    assert_eq!(node.read(manifest), a);
    let versions = node.history(Some(manifest));
    assert!(versions.len() >= 3, "history: {versions:?}");
    let c = node.append_line(manifest, "# external edit 2 (not recorded yet)");
    (c, a)
}

fn restore_v1(manifest: &str) -> [&str; 5] {
    ["restore", manifest, "--version", "1", "--no-health-gate"]
}

/// Recover with the policy; exit 0. Returns its JSON.
fn recover(node: &Node, policy: Policy) -> serde_json::Value {
    node.run(&["recover", "--policy", policy.as_str(), "-o", "json"])
        .expect_code(0)
        .json()
}

/// Under replay, a transaction whose BEGIN is durable is finished: the file ends at `after`.
fn assert_replay_finished(node: &Node, manifest: &str, after: &[u8], begin_durable: bool) {
    if begin_durable {
        assert!(
            node.read(manifest) == after,
            "replay must finish a transaction whose BEGIN was durable: {manifest} is not at \
             its after content"
        );
    }
}

fn index_of(points: &[String], name: &str) -> usize {
    points
        .iter()
        .position(|p| p == name)
        .unwrap_or_else(|| panic!("crash point {name} is not listed"))
}

fn scenario_restore(points: &[String], point: &str, policy: Policy) -> bool {
    let node = Node::with_healthy_apiserver();
    let (before, after) = prepare_history(&node, APISERVER);
    let out = node.run_env(&restore_v1(APISERVER), &crash_env(point));
    assert_killed(&out, point);
    let r = recover(&node, policy);
    let i = index_of(points, point);
    let committed = i >= index_of(points, "txn.commit_synced");
    let begin_durable = i >= index_of(points, "txn.begin_synced");
    let renamed = i >= index_of(points, "replace.renamed");
    // What recovery says it did with the incomplete transaction (txn 2), if there was one.
    let expected_action = match (begin_durable && !committed, policy) {
        (false, _) => None,
        (true, Policy::Replay) => Some("replayed"),
        (true, Policy::Revert) if renamed => Some("reverted"),
        (true, Policy::Revert) => Some("aborted"),
    };
    let resolved = r["resolved"].as_array().expect("resolved array");
    match expected_action {
        None => assert!(resolved.is_empty(), "nothing to resolve: {r}"),
        Some(action) => {
            assert_eq!(resolved.len(), 1, "{r}");
            assert_eq!(resolved[0]["txn"], 2, "{r}");
            assert_eq!(resolved[0]["action"], action, "{r}");
        }
    }
    // Cross-check the history's view of the transaction (txn 2: txn 1 made the history).
    let history = node.history(Some(APISERVER));
    let cur = common::current_version(&history, &node.key(APISERVER)).unwrap();
    if policy == Policy::Revert {
        let says = common::history_says_committed(&history, &node.key(APISERVER), &after)
            && cur["txn"] == 2;
        assert_eq!(says, committed, "history disagrees about the commit: {cur}");
    } else {
        assert_replay_finished(&node, APISERVER, &after, begin_durable);
    }
    assert_invariants(&node, APISERVER, &before, &after, Some(committed), policy);
    assert_others_untouched(&node);
    true
}

fn scenario_rollback(point: &str, policy: Policy) -> bool {
    let node = Node::with_healthy_apiserver();
    let target = node.manifest_elsewhere("elsewhere", APISERVER);
    let t = target.to_str().unwrap().to_string();
    let (before, after) = prepare_history(&node, &t);
    // A directory where the temp file must go: the durable write fails, the txn rolls back.
    let blocker = target.with_file_name(format!(".kubeharden-{APISERVER}.tmp"));
    fs::create_dir(&blocker).unwrap();
    let out = node.run_env(&restore_v1(&t), &crash_env(point));
    assert_killed(&out, point);
    // The operator removes the cause; recovery may now write there again.
    fs::remove_dir(&blocker).unwrap();
    recover(&node, policy);
    let rolled_back_durable = point == "rollback.recorded";
    if policy == Policy::Replay {
        assert_replay_finished(&node, &t, &after, !rolled_back_durable);
    }
    let leftovers: Vec<_> = fs::read_dir(target.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".kubeharden-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temps left next to {t}: {leftovers:?}"
    );
    assert_invariants(&node, &t, &before, &after, Some(false), policy);
    assert_others_untouched(&node);
    true
}

/// Append the first `len - 5` bytes of the journal's last frame: an append torn mid-record.
fn append_torn_record(node: &Node) -> usize {
    let seg = node.last_segment();
    let bytes = fs::read(&seg).unwrap();
    let last = common::parse_segment(&bytes, 0)
        .pop()
        .expect("a record to copy");
    let partial = &bytes[last.offset..last.offset + last.len - 5];
    assert!(partial.len() > RECORD_HEADER_LEN);
    let mut f = fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(partial).unwrap();
    f.sync_all().unwrap();
    partial.len()
}

fn scenario_recover(point: &str, policy: Policy) -> bool {
    let node = Node::with_healthy_apiserver();
    let (before, after) = prepare_history(&node, APISERVER);
    let first = node.run_env(&restore_v1(APISERVER), &crash_env("replace.renamed"));
    assert_killed(&first, "replace.renamed");
    assert_eq!(node.read(APISERVER), after, "killed after the rename");
    let torn = point.starts_with("recover.tail_");
    if torn {
        append_torn_record(&node);
    }
    let out = node.run_env(&["recover", "--policy", policy.as_str()], &crash_env(point));
    let killed = killed_or_ok(&out, point);
    if policy == Policy::Revert || torn {
        assert!(
            killed,
            "{point} not reached by recover --policy {}",
            policy.as_str()
        );
    }
    recover(&node, policy);
    if policy == Policy::Replay {
        assert_replay_finished(&node, APISERVER, &after, true);
    }
    assert_invariants(&node, APISERVER, &before, &after, Some(false), policy);
    // A kill right after the cut (recover.tail_truncated) loses the TRUNCATED_TAIL record:
    // see `torn_tail_cut_is_recorded_even_if_recovery_dies_right_after_the_cut`.
    if torn && point != "recover.tail_truncated" {
        let recs = node.journal_records();
        assert!(
            recs.iter().any(|r| r.ty == rec::TRUNCATED_TAIL),
            "no TRUNCATED_TAIL record after cutting a torn tail"
        );
    }
    assert_others_untouched(&node);
    killed
}

fn scenario_snapshot(point: &str, policy: Policy) -> bool {
    let node = Node::with_healthy_apiserver();
    let out = node.run_env(&["snapshot"], &crash_env(point));
    assert_killed(&out, point);
    recover(&node, policy);
    let a = node.read(APISERVER);
    assert_invariants(&node, APISERVER, &a, &a, Some(false), policy);
    assert_others_untouched(&node);
    // The next snapshot records whatever the killed one did not, each file once.
    node.ok(&["snapshot"]);
    let h = node.history(None);
    assert_eq!(h.len(), common::MANIFESTS.len(), "{h:?}");
    assert!(h
        .iter()
        .all(|v| v["origin"] == "baseline" && v["version"] == 1));
    true
}

/// The manifests no scenario targets keep their original bytes and metadata.
fn assert_others_untouched(node: &Node) {
    for m in common::MANIFESTS.iter().filter(|m| **m != APISERVER) {
        assert!(node.read(m) == node.originals[*m], "{m} changed");
        assert_eq!(
            common::meta_of(&node.path(m)),
            (common::MODE, common::UID, common::GID)
        );
    }
}

fn run_one(points: &[String], point: &str, policy: Policy) -> Outcome {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match phase_of(point) {
        Phase::Restore => scenario_restore(points, point, policy),
        Phase::Rollback => scenario_rollback(point, policy),
        Phase::Recover => scenario_recover(point, policy),
        Phase::Snapshot => scenario_snapshot(point, policy),
    }));
    match result {
        Ok(killed) => Outcome {
            point: point.to_string(),
            policy,
            killed,
            failure: None,
        },
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Outcome {
                point: point.to_string(),
                policy,
                // A failing scenario did reach its point if the panic came after the kill;
                // coverage is judged on passing scenarios only.
                killed: false,
                failure: Some(msg),
            }
        }
    }
}

/// The whole matrix, computed once for all tests of this file.
fn matrix() -> &'static [Outcome] {
    static MATRIX: OnceLock<Vec<Outcome>> = OnceLock::new();
    MATRIX.get_or_init(|| {
        let points = crash_points();
        let jobs: Vec<(String, Policy)> = points
            .iter()
            .flat_map(|p| Policy::ALL.map(|pol| (p.clone(), pol)))
            .collect();
        let next = AtomicUsize::new(0);
        let results = Mutex::new(Vec::new());
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 8)
            * 2;
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((p, pol)) = jobs.get(i) else { break };
                    let o = run_one(&points, p, *pol);
                    results.lock().unwrap().push(o);
                });
            }
        });
        let mut r = results.into_inner().unwrap();
        r.sort_by(|a, b| (&a.point, a.policy.as_str()).cmp(&(&b.point, b.policy.as_str())));
        r
    })
}

fn assert_policy_clean(policy: Policy) {
    let failures: Vec<String> = matrix()
        .iter()
        .filter(|o| o.policy == policy)
        .filter_map(|o| {
            o.failure
                .as_ref()
                .map(|f| format!("== {} / {}:\n{f}", o.point, policy.as_str()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of the crash points break an invariant under policy {}:\n{}",
        failures.len(),
        policy.as_str(),
        failures.join("\n\n")
    );
}

#[test]
fn every_crash_point_then_recover_revert_keeps_the_six_invariants() {
    assert_policy_clean(Policy::Revert);
}

#[test]
fn every_crash_point_then_recover_replay_keeps_the_six_invariants() {
    assert_policy_clean(Policy::Replay);
}

#[test]
fn every_listed_crash_point_kills_a_process_in_the_matrix() {
    let m = matrix();
    let listed: BTreeSet<&str> = m.iter().map(|o| o.point.as_str()).collect();
    let reached: BTreeSet<&str> = m
        .iter()
        .filter(|o| o.killed)
        .map(|o| o.point.as_str())
        .collect();
    let dead: Vec<&&str> = listed.difference(&reached).collect();
    assert!(
        dead.is_empty(),
        "crash points no scenario reaches (dead, or their scenario failed): {dead:?}"
    );
}

#[test]
fn crash_point_names_are_unique_and_dotted() {
    let points = crash_points();
    let unique: BTreeSet<&String> = points.iter().collect();
    assert_eq!(unique.len(), points.len(), "duplicates in {points:?}");
    for p in &points {
        assert!(
            p.split_once('.')
                .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_'),
            "odd crash point name {p:?}"
        );
    }
}

#[test]
fn unknown_crash_point_name_crashes_nothing() {
    let node = Node::new();
    node.run_env(&["snapshot"], &crash_env("no.such_point"))
        .expect_code(0);
    assert_eq!(node.history(None).len(), common::MANIFESTS.len());
}

/// A record appended in part (power lost mid-append) is cut by the next `recover`, which says
/// so in a TRUNCATED_TAIL record; the history is untouched and `verify` is happy.
#[test]
fn journal_torn_tail_is_cut_recorded_and_history_is_intact() {
    let node = Node::new();
    prepare_history(&node, APISERVER);
    node.ok(&["snapshot"]);
    let history_before = node.history_bytes();
    let seg = node.last_segment();
    let original = fs::read(&seg).unwrap();
    let len_before = original.len() as u64;
    let records_before = node.journal_records();
    let appended = append_torn_record(&node);
    assert_eq!(
        fs::metadata(&seg).unwrap().len(),
        len_before + appended as u64
    );

    // verify sees the torn tail but it is not corruption.
    let v = node.json(&["verify"]);
    assert_eq!(v["torn_tail"], true, "{v}");

    let r = node.json(&["recover"]);
    assert!(
        !r["torn_tail"].is_null(),
        "recover did not report the tail: {r}"
    );
    assert_eq!(r["torn_tail"]["dropped"], appended as u64, "{r}");

    let bytes = fs::read(&seg).unwrap();
    let records = common::parse_segment(&bytes, 1);
    assert_eq!(records.len(), records_before.len() + 1, "one record added");
    let last = records.last().unwrap();
    assert_eq!(
        last.ty,
        rec::TRUNCATED_TAIL,
        "the journal ends in TRUNCATED_TAIL"
    );
    assert_eq!(
        last.offset as u64, len_before,
        "the torn bytes are gone: TRUNCATED_TAIL starts where the torn record did"
    );
    assert_eq!(bytes.len(), last.offset + last.len, "nothing after it");
    assert!(
        bytes[..len_before as usize] == original[..],
        "the records before the tail are untouched"
    );

    let v = node.json(&["verify"]);
    assert_eq!(v["torn_tail"], false, "{v}");
    assert_eq!(node.history_bytes(), history_before, "history changed");
    let a = node.read(APISERVER);
    assert_invariants(&node, APISERVER, &a, &a, None, Policy::Revert);
}

/// A torn tail is also cut by the recovery every mutating command runs first.
#[test]
fn torn_tail_is_cut_by_the_next_mutating_command() {
    let node = Node::new();
    node.ok(&["snapshot"]);
    let history_before = node.history_bytes();
    append_torn_record(&node);
    node.append_line(APISERVER, "# edit");
    node.ok(&["snapshot"]);
    let recs = node.journal_records();
    let tt = recs
        .iter()
        .position(|r| r.ty == rec::TRUNCATED_TAIL)
        .expect("TRUNCATED_TAIL recorded");
    assert_eq!(
        tt,
        common::MANIFESTS.len(),
        "right after the four baselines"
    );
    node.ok(&["verify"]);
    let h = node.history(None);
    assert_eq!(h.len(), common::MANIFESTS.len() + 1);
    // The four baselines are as they were, except that the apiserver's now has an end.
    let old: serde_json::Value = serde_json::from_slice(&history_before).unwrap();
    let mut old = old["versions"].as_array().unwrap().clone();
    for v in &mut old {
        if v["path"] == node.key(APISERVER) {
            v["on_disk_until"] = h[4]["on_disk_from"].clone();
        }
    }
    assert_eq!(&h[..4], old.as_slice());
    assert_eq!(
        common::current_version(&h, &node.key(APISERVER)).unwrap()["hash"],
        blake3_hex(&node.read(APISERVER))
    );
}

/// "Truncate a torn journal tail and record that it did": a kill between the cut and the
/// TRUNCATED_TAIL record leaves no trace of the cut, since the next start finds no torn tail.
#[test]
fn torn_tail_cut_is_recorded_even_if_recovery_dies_right_after_the_cut() {
    let node = Node::new();
    node.ok(&["snapshot"]);
    append_torn_record(&node);
    let out = node.run_env(&["recover"], &crash_env("recover.tail_truncated"));
    assert_killed(&out, "recover.tail_truncated");
    node.ok(&["recover"]);
    assert!(
        node.journal_records()
            .iter()
            .any(|r| r.ty == rec::TRUNCATED_TAIL),
        "the cut torn tail was never recorded"
    );
}

/// `set` goes through the same transaction as `restore`: SIGKILL at every point of the
/// transaction path (store, txn, replace), recover under both policies, and the six invariants
/// hold with the editor's output as the after content.
#[test]
fn set_killed_at_every_transaction_point_then_recover_keeps_the_six_invariants() {
    let points: Vec<String> = crash_points()
        .into_iter()
        .filter(|p| matches!(phase_of(p), Phase::Restore))
        .collect();
    assert!(points.len() >= 10, "transaction points: {points:?}");
    let all = crash_points();
    let mut failures = Vec::new();
    for point in &points {
        for policy in Policy::ALL {
            let result = std::panic::catch_unwind(|| {
                let node = Node::with_healthy_apiserver();
                node.ok(&["snapshot", APISERVER]);
                let before = node.read(APISERVER);
                let after = kubeharden::manifest::edit_flags(
                    &before,
                    None,
                    &[kubeharden::manifest::FlagEdit::Set {
                        name: "profiling".into(),
                        value: "false".into(),
                    }],
                )
                .unwrap()
                .bytes;
                assert_ne!(before, after);
                let args = [
                    "set",
                    APISERVER,
                    "--flag",
                    "profiling=false",
                    "--no-health-gate",
                ];
                let out = node.run_env(&args, &crash_env(point));
                if !killed_or_ok(&out, point) {
                    // Points only on other paths (the first snapshot recorded the baseline, so
                    // e.g. snapshot.version_recorded is not reached): the set just finished.
                    return;
                }
                recover(&node, policy);
                let i = index_of(&all, point);
                let committed = i >= index_of(&all, "txn.commit_synced");
                if policy == Policy::Replay {
                    assert_replay_finished(
                        &node,
                        APISERVER,
                        &after,
                        i >= index_of(&all, "txn.begin_synced"),
                    );
                }
                assert_invariants(&node, APISERVER, &before, &after, Some(committed), policy);
                assert_others_untouched(&node);
            });
            if let Err(e) = result {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{point} / {}: {msg}", policy.as_str()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "set crash matrix:\n{}",
        failures.join("\n")
    );
}
