//! The tail rule, salvage of a journal damaged before its tail, and what `verify` reports
//! (issue 11 "A way out of every state" and "Also found"; issue 12 item 10), on the real binary.

mod common;

use common::{blake3_hex, Node, APISERVER};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A node with history: baseline snapshot, an external edit recorded, three committed `set`s.
fn node_with_history() -> Node {
    let node = Node::new();
    node.ok(&["snapshot"]);
    let a = node.read(APISERVER);
    let s = String::from_utf8(a).unwrap();
    node.edit_externally(
        APISERVER,
        s.replacen("--allow-privileged=true", "--allow-privileged=false", 1)
            .as_bytes(),
    );
    node.ok(&["snapshot", APISERVER]);
    for flag in [
        "profiling=false",
        "audit-log-maxage=30",
        "audit-log-maxbackup=10",
    ] {
        node.ok(&["set", APISERVER, "--flag", flag, "--no-health-gate"]);
    }
    node
}

/// Every file under the state dir with its bytes (the lock file excluded: it is only locked).
fn state_files(node: &Node) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(d: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.file_name().unwrap() != "lock" && !p.to_string_lossy().ends_with("-shm") {
                // (SQLite's shared-memory index of its WAL is rewritten by any reader.)
                out.insert(p.clone(), fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&node.state, &mut out);
    out
}

#[track_caller]
fn assert_same_files(before: &BTreeMap<PathBuf, Vec<u8>>, node: &Node, what: &str) {
    let after = state_files(node);
    let changed: Vec<_> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(
        changed.is_empty(),
        "{what} wrote to the state dir: {changed:?}"
    );
}

/// A message may point to another command, never to the one just run.
#[track_caller]
fn assert_no_self_remedy(stderr: &str, args: &[&str]) {
    let cmd = format!("'kubeharden {}'", args.join(" "));
    assert!(
        !stderr.contains(&cmd),
        "the message names {cmd} as the remedy: {stderr}"
    );
    assert!(!stderr.contains("run 'kubeharden verify'"), "{stderr}");
}

/// The node is usable: recover, verify, a clean set and history all work.
#[track_caller]
fn assert_usable(node: &Node) {
    // A transaction whose end was dropped is incomplete now; recovery resolves it from the
    // file's bytes (a conflict, exit 3, when a later, now unknown change is on disk) once.
    let out = node.run(&["recover"]);
    assert!(matches!(out.code(), Some(0 | 3)), "{}", out.describe());
    node.ok(&["recover"]);
    node.ok(&["verify"]);
    node.ok(&[
        "set",
        APISERVER,
        "--flag",
        "request-timeout=61s",
        "--no-health-gate",
    ]);
    node.ok(&["history"]);
    node.ok(&["verify"]);
}

fn commits(node: &Node) -> Vec<u64> {
    node.journal_records()
        .iter()
        .filter(|r| r.ty == common::rec::COMMIT)
        .filter_map(|r| r.txn)
        .collect()
}

#[test]
fn salvage_of_mid_journal_corruption_quarantines_the_rest_and_reports_what_was_dropped() {
    let node = node_with_history();
    let seg = node.last_segment();
    let recs = node.journal_records();
    let r = &recs[3];
    let mut bytes = fs::read(&seg).unwrap();
    bytes[r.offset + r.len - 2] ^= 0x5a;
    fs::write(&seg, &bytes).unwrap();
    let before = state_files(&node);
    // Plain verify: exit 6, every command refuses, and nothing is written.
    let out = node.run(&["verify"]);
    assert_eq!(out.code(), Some(6), "{}", out.describe());
    assert!(out.stderr.contains("verify --repair"), "{}", out.describe());
    assert_no_self_remedy(&out.stderr, &["verify"]);
    assert_same_files(&before, &node, "verify");
    let out = node.run(&["history"]);
    assert_eq!(out.code(), Some(6), "{}", out.describe());
    assert_same_files(&before, &node, "history");
    // The salvage.
    let out = node
        .run(&["verify", "--repair", "-o", "json"])
        .expect_code(0);
    let j: Value = out.json();
    let s = &j["salvage"];
    assert_eq!(s["kept_records"], 3, "{j}");
    let dropped = s["dropped"].as_array().unwrap();
    assert_eq!(dropped.len(), 1, "{j}");
    assert_eq!(dropped[0]["offset"], r.offset as u64, "{j}");
    assert_eq!(dropped[0]["bytes"], (bytes.len() - r.offset) as u64, "{j}");
    assert_eq!(dropped[0]["reason"], "checksum mismatch", "{j}");
    let q = PathBuf::from(dropped[0]["file"].as_str().unwrap());
    assert!(
        q.starts_with(node.state.join("quarantine")),
        "{}",
        q.display()
    );
    assert_eq!(
        fs::read(&q).unwrap(),
        bytes[r.offset..],
        "quarantined bytes"
    );
    let report = fs::read_to_string(s["report"].as_str().unwrap()).unwrap();
    assert!(
        report.contains("dropped: segment 00000001.wal offset"),
        "{report}"
    );
    assert!(report.contains("unknown now: transaction 1"), "{report}");
    // The kept prefix ends where the damaged record started, then the TRUNCATED_TAIL record.
    let now = node.journal_records();
    assert_eq!(now.len(), 4);
    assert_eq!(now[3].ty, common::rec::TRUNCATED_TAIL);
    assert_eq!(now[3].offset, r.offset);
    assert_usable(&node);
}

/// The mutation: a cut of the last segment before the offset the catalog indexed.
/// It used to give `recover` exit 6 "offset past end of segment" (after a check) or be taken
/// for a torn tail, silently dropping committed transactions (without one).
#[test]
fn tail_rule_a_cut_before_the_checked_offset_is_damage_never_silent() {
    for zero in [false, true] {
        let node = node_with_history();
        let seg = node.last_segment();
        let committed = commits(&node);
        assert!(committed.len() >= 3, "{committed:?}");
        let recs = node.journal_records();
        // Cut (or zero) in the middle of a record well before the last one.
        let r = &recs[recs.len() - 6];
        let at = r.offset + r.len / 2;
        let mut bytes = fs::read(&seg).unwrap();
        if zero {
            bytes[at..].fill(0);
        } else {
            bytes.truncate(at);
        }
        fs::write(&seg, &bytes).unwrap();
        let before = state_files(&node);
        for args in [
            vec!["recover"],
            vec!["status"],
            vec!["history"],
            vec!["verify"],
        ] {
            let out = node.run(&args);
            assert_eq!(
                out.code(),
                Some(6),
                "zero={zero} {args:?}: {}",
                out.describe()
            );
            assert!(
                !out.stderr.contains("offset past end"),
                "{}",
                out.describe()
            );
            assert!(out.stderr.contains("verify --repair"), "{}", out.describe());
            assert_no_self_remedy(&out.stderr, &args);
            assert_same_files(&before, &node, &args.join(" "));
        }
        let out = node
            .run(&["verify", "--repair", "-o", "json"])
            .expect_code(0);
        let j = out.json();
        let lines: Vec<String> = j["salvage"]["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect();
        let lost_txn = format!("unknown now: transaction {}", committed.last().unwrap());
        assert!(
            lines.iter().any(|l| l.starts_with(&lost_txn)),
            "zero={zero}: {lines:?}"
        );
        assert_usable(&node);
    }
}

/// A real torn final record is cut, whatever an earlier check saw: the catalog indexed the
/// final record and its digest covers it, yet losing it alone is a torn tail.
#[test]
fn tail_rule_a_torn_final_record_is_cut_even_after_a_check() {
    let node = node_with_history();
    node.ok(&["status"]);
    let seg = node.last_segment();
    let recs = node.journal_records();
    let last = recs.last().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    assert_eq!(len as usize, last.offset + last.len);
    let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len((last.offset + last.len / 2) as u64).unwrap();
    drop(f);
    // verify says so and writes nothing; the next mutating command cuts it.
    let before = state_files(&node);
    let out = node.run(&["verify"]).expect_code(0);
    assert!(
        out.stdout_text().contains("torn tail"),
        "{}",
        out.describe()
    );
    assert_same_files(&before, &node, "verify");
    let j = node.json(&["recover"]);
    assert_eq!(j["torn_tail"]["offset"], last.offset as u64, "{j}");
    assert_usable(&node);
}

fn corrupt_file(p: &Path) {
    let mut bytes = fs::read(p).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    let mode = fs::metadata(p).unwrap().permissions().mode();
    fs::write(p, &bytes).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn verify_reports_every_damaged_object_with_its_manifest_and_versions() {
    let node = node_with_history();
    let baseline = node.originals[APISERVER].clone();
    let current = node.read(APISERVER);
    let key = node.path(APISERVER).display().to_string();
    for c in [&baseline, &current] {
        corrupt_file(&node.object_path(&blake3_hex(c)));
    }
    let before = state_files(&node);
    let out = node.run(&["verify"]);
    assert_eq!(out.code(), Some(6), "{}", out.describe());
    for c in [&baseline, &current] {
        assert!(out.stderr.contains(&blake3_hex(c)), "{}", out.describe());
    }
    assert!(
        out.stderr.contains(&format!("{key} version 1")),
        "{}",
        out.describe()
    );
    assert!(out.stderr.contains("2 problem(s)"), "{}", out.describe());
    assert_no_self_remedy(&out.stderr, &["verify"]);
    assert_same_files(&before, &node, "verify");
    // --repair stores the current content again from the manifest; the baseline is gone.
    let out = node.run(&["verify", "--repair"]);
    assert_eq!(out.code(), Some(6), "{}", out.describe());
    assert!(
        out.stderr.contains("stored again from"),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains(&blake3_hex(&baseline)),
        "{}",
        out.describe()
    );
    assert!(out.stderr.contains("1 problem(s)"), "{}", out.describe());
    assert_no_self_remedy(&out.stderr, &["verify", "--repair"]);
    node.ok(&["show", APISERVER]);
}

#[test]
fn verify_reports_object_temps_and_recover_removes_them() {
    let node = node_with_history();
    let temp = node.state.join("objects/ab/.cdef0123.tmp");
    fs::create_dir_all(temp.parent().unwrap()).unwrap();
    fs::write(&temp, b"half an object").unwrap();
    let out = node.ok(&["verify"]);
    assert!(
        out.stdout_text().contains(".cdef0123.tmp"),
        "{}",
        out.describe()
    );
    assert!(temp.exists(), "plain verify removes nothing");
    let j = node.json(&["recover"]);
    let removed = j["temps_removed"].to_string();
    assert!(removed.contains(".cdef0123.tmp"), "{j}");
    assert!(!temp.exists());
}

/// A missing segment (here 00000002.wal, with 00000003.wal present) is damage; salvage keeps
/// segment 1 and moves the later ones aside.
#[test]
fn salvage_of_a_missing_segment_moves_the_later_ones_aside() {
    let node = node_with_history();
    let mut third = b"KHJOURNL\x01\0\0\0".to_vec();
    third.extend_from_slice(&3u32.to_le_bytes());
    fs::write(node.journal_dir().join("00000003.wal"), &third).unwrap();
    let out = node.run(&["history"]);
    assert_eq!(out.code(), Some(6), "{}", out.describe());
    assert!(
        out.stderr.contains("00000002.wal is missing"),
        "{}",
        out.describe()
    );
    let j = node.json(&["verify", "--repair"]);
    let dropped = j["salvage"]["dropped"].as_array().unwrap().clone();
    assert_eq!(dropped.len(), 1, "{j}");
    assert_eq!(dropped[0]["segment"], 3, "{j}");
    assert_eq!(
        fs::read(node.state.join("quarantine/journal-00000003-0.bin")).unwrap(),
        third
    );
    assert_eq!(node.segments().len(), 1);
    assert_usable(&node);
}
