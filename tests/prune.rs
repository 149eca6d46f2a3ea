//! Issue 12, "Store growth": `prune` drops old versions' contents, journaled (a PRUNED record
//! fsynced before any object is deleted), and never the latest, a baseline, or what an
//! incomplete transaction needs. Real `kubeharden` processes on copies of the kubeadm manifests.

mod common;

use common::{blake3_hex, Node};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;

const SCHEDULER: &str = "kube-scheduler.yaml";
/// The PRUNED record's type byte (journal-format/README.md, "Record types").
const PRUNED: u8 = 11;

fn set(node: &Node, flag: &str) {
    node.ok(&["set", SCHEDULER, "--flag", flag, "--no-health-gate"]);
}

/// A scheduler with versions 1 (baseline) to 6: v=2 .. v=6.
fn node_with_six_versions() -> Node {
    let node = Node::new();
    node.ok(&["snapshot", SCHEDULER]);
    for v in 2..=6 {
        set(&node, &format!("v={v}"));
    }
    assert_eq!(node.history(Some(SCHEDULER)).len(), 6);
    node
}

fn pruned_flags(history: &[Value]) -> Vec<bool> {
    history
        .iter()
        .map(|v| v["pruned"].as_bool().unwrap_or(false))
        .collect()
}

fn object_files(node: &Node) -> usize {
    let mut n = 0;
    for sub in fs::read_dir(node.state.join("objects")).unwrap() {
        n += fs::read_dir(sub.unwrap().path()).unwrap().count();
    }
    n
}

#[test]
fn prune_then_verify_history_and_show() {
    let node = node_with_six_versions();
    let history = node.history(Some(SCHEDULER));
    let store_before = node.json(&["status"])["store_bytes"].as_u64().unwrap();
    let objects_before = object_files(&node);
    let j = node.json(&["prune", "--keep", "2"]);
    let pruned: Vec<u64> = j["pruned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["version"].as_u64().unwrap())
        .collect();
    // The baseline and the last two stay.
    assert_eq!(pruned, [2, 3, 4], "{j}");
    assert_eq!(j["objects_removed"], 3, "{j}");
    assert_eq!(object_files(&node), objects_before - 3);
    for v in &history[1..4] {
        assert!(!node.object_path(v["hash"].as_str().unwrap()).exists());
    }
    node.ok(&["verify"]);
    // History still lists every version, the pruned ones marked.
    let after = node.history(Some(SCHEDULER));
    assert_eq!(after.len(), 6);
    assert_eq!(
        pruned_flags(&after),
        [false, true, true, true, false, false]
    );
    let text = node.ok(&["history", SCHEDULER]).stdout_text();
    assert_eq!(text.matches("(pruned)").count(), 3, "{text}");
    // A pruned version is a clear refusal, not corruption.
    let out = node.run(&["show", SCHEDULER, "--version", "3"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(
        out.stderr.contains("version 3 was pruned"),
        "{}",
        out.describe()
    );
    let disk = node.read(SCHEDULER);
    let out = node.run(&["restore", SCHEDULER, "--version", "2", "--no-health-gate"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(out.stderr.contains("was pruned"), "{}", out.describe());
    assert_eq!(node.read(SCHEDULER), disk, "nothing changed");
    // The kept ones read back exactly.
    for v in [&after[0], &after[4], &after[5]] {
        let n = v["version"].to_string();
        let bytes = node.ok(&["show", SCHEDULER, "--version", &n]).stdout;
        assert_eq!(blake3_hex(&bytes), v["hash"].as_str().unwrap());
    }
    // The store shrank, and the journal says why.
    let store_after = node.json(&["status"])["store_bytes"].as_u64().unwrap();
    assert!(store_after < store_before, "{store_after} < {store_before}");
    let records: Vec<u8> = node.journal_records().iter().map(|r| r.ty).collect();
    assert_eq!(records.iter().filter(|t| **t == PRUNED).count(), 1);
    // A catalog rebuilt from the journal alone knows what was pruned.
    let before_rebuild = node.history_bytes();
    for f in fs::read_dir(&node.state).unwrap() {
        let p = f.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("catalog")
        {
            fs::remove_file(p).unwrap();
        }
    }
    assert_eq!(node.history_bytes(), before_rebuild);
    node.ok(&["verify"]);
    // Nothing more to do with the same rule: no second record.
    let again = node.json(&["prune", "--keep", "2"]);
    assert_eq!(again["objects_removed"], 0, "{again}");
    let n = node
        .journal_records()
        .iter()
        .filter(|r| r.ty == PRUNED)
        .count();
    assert_eq!(n, 1);
}

#[test]
fn prune_dry_run_changes_nothing() {
    let node = node_with_six_versions();
    let before = node.durable_fingerprint();
    let out = node
        .ok(&["prune", "--keep", "1", "--dry-run"])
        .stdout_text();
    assert!(out.contains("would prune versions 2, 3, 4, 5"), "{out}");
    assert_eq!(node.durable_fingerprint(), before);
    // Without a rule it refuses (exit 2) rather than guess.
    let out = node.run(&["prune"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert_eq!(node.durable_fingerprint(), before);
}

#[test]
fn prune_keep_days_keeps_recent_versions() {
    let node = node_with_six_versions();
    let j = node.json(&["prune", "--keep-days", "1"]);
    assert_eq!(j["pruned"].as_array().unwrap().len(), 0, "{j}");
    assert_eq!(j["objects_removed"], 0);
    assert!(node.journal_records().iter().all(|r| r.ty != PRUNED));
    // --keep-days 0: only what is on disk now (and the baseline) is "of the last 0 days".
    let j = node.json(&["prune", "--keep-days", "0", "--dry-run"]);
    assert_eq!(j["pruned"].as_array().unwrap().len(), 4, "{j}");
}

#[test]
fn prune_never_drops_what_an_incomplete_transaction_needs() {
    let node = node_with_six_versions();
    // Setting v=2 again would bring back version 2's content; the run dies after the rename,
    // leaving BEGIN open with after = v2's content.
    let v2 = node.history(Some(SCHEDULER))[1]["hash"].clone();
    let out = node.run_env(
        &["set", SCHEDULER, "--flag", "v=2", "--no-health-gate"],
        &[("KUBEHARDEN_CRASH_AT", "replace.renamed")],
    );
    assert_eq!(out.signal(), Some(9), "{}", out.describe());
    assert_eq!(
        node.json(&["status"])["incomplete"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let j = node.json(&["prune", "--keep", "1", "--dry-run"]);
    let hashes: Vec<&Value> = j["pruned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["hash"])
        .collect();
    assert!(
        !hashes.contains(&&v2),
        "an open transaction's after content is kept: {j}"
    );
    assert_eq!(hashes.len(), 3, "{j}");
    // A real prune recovers first (revert: the file is v6 again), then v2 may go.
    let j = node.json(&["prune", "--keep", "1"]);
    let hashes: Vec<&Value> = j["pruned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["hash"])
        .collect();
    assert!(hashes.contains(&&v2), "{j}");
    node.ok(&["verify"]);
    let last = node.history(Some(SCHEDULER)).last().unwrap().clone();
    assert_eq!(last["hash"], blake3_hex(&node.read(SCHEDULER)), "{last}");
}

#[test]
fn prune_cut_short_leaves_nothing_wrong_and_is_finished_later() {
    let node = node_with_six_versions();
    let v3 = node.history(Some(SCHEDULER))[2]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let object = node.object_path(&v3);
    let saved = fs::read(&object).unwrap();
    node.ok(&["prune", "--keep", "2"]);
    assert!(!object.exists());
    // As if the run had died after its PRUNED record and before this deletion.
    fs::write(&object, &saved).unwrap();
    fs::set_permissions(&object, fs::Permissions::from_mode(0o600)).unwrap();
    node.ok(&["verify"]);
    let j = node.json(&["prune", "--keep", "2"]);
    assert_eq!(j["leftovers"], 1, "{j}");
    assert_eq!(j["objects_removed"], 1, "{j}");
    assert!(!object.exists());
    node.ok(&["verify"]);
}

#[test]
fn pruned_content_written_again_is_stored_again() {
    let node = node_with_six_versions();
    node.ok(&["prune", "--keep", "1"]);
    let h = node.history(Some(SCHEDULER));
    assert_eq!(pruned_flags(&h), [false, true, true, true, true, false]);
    // v=3 again: the content of version 3 comes back, so version 3 is readable again.
    set(&node, "v=3");
    let h = node.history(Some(SCHEDULER));
    assert_eq!(
        pruned_flags(&h),
        [false, true, false, true, true, false, false]
    );
    let bytes = node.ok(&["show", SCHEDULER, "--version", "3"]).stdout;
    assert_eq!(blake3_hex(&bytes), h[2]["hash"].as_str().unwrap());
    node.ok(&["verify"]);
}

#[test]
fn store_objects_are_private_to_the_state_dir_owner() {
    // The store keeps every generated secret file's content (an encryption config and its key):
    // each object 0600, each directory 0700.
    let node = node_with_six_versions();
    for sub in fs::read_dir(node.state.join("objects")).unwrap() {
        let sub = sub.unwrap().path();
        assert_eq!(
            fs::metadata(&sub).unwrap().permissions().mode() & 0o777,
            0o700
        );
        for f in fs::read_dir(&sub).unwrap() {
            let m = fs::metadata(f.unwrap().path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(m & 0o777, 0o600);
        }
    }
}
