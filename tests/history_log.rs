//! Issue 12 item 7 (history and diff) and the transaction log: real `kubeharden` processes on
//! copies of the kubeadm manifests in a tempdir.

mod common;

use base64::Engine as _;
use common::{blake3_hex, meta_of, Node, APISERVER, GID, MODE, UID};
use std::fs;
use std::os::unix::fs::PermissionsExt;

const SCHEDULER: &str = "kube-scheduler.yaml";
const ETCD: &str = "etcd.yaml";

fn set(node: &Node, manifest: &str, flag: &str) {
    node.ok(&["set", manifest, "--flag", flag, "--no-health-gate"]);
}

fn history_text(node: &Node, manifest: Option<&str>) -> String {
    let mut args = vec!["history"];
    args.extend(manifest);
    node.ok(&args).stdout_text()
}

fn chmod(node: &Node, manifest: &str, mode: u32) {
    fs::set_permissions(node.path(manifest), fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn item7_history_one_block_per_file() {
    let node = Node::new();
    node.ok(&["snapshot"]);
    // Interleaved in time: scheduler, etcd, scheduler.
    set(&node, SCHEDULER, "v=2");
    set(&node, ETCD, "x=1");
    set(&node, SCHEDULER, "v=3");
    let text = history_text(&node, None);
    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with('/')).collect();
    let mut sorted = headers.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(headers, sorted, "each file once, in order:\n{text}");
    assert_eq!(headers.len(), 4, "{text}");
    // Each block holds its file's versions 1..n in order, and nothing else.
    for block in text.split("\n\n") {
        let mut lines = block.lines();
        let path = lines.next().unwrap();
        let numbers: Vec<u64> = lines
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
            .collect();
        let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
        assert_eq!(numbers, expected, "{path}:\n{text}");
        let want = if path.ends_with(SCHEDULER) {
            3
        } else if path.ends_with(ETCD) {
            2
        } else {
            1
        };
        assert_eq!(numbers.len(), want, "{path}:\n{text}");
    }
    // The JSON keeps cli.md's order: every version, oldest first (scripts rely on it).
    let json = node.history(None);
    assert_eq!(json.len(), 4 + 2 + 1, "{json:?}");
    let txns: Vec<u64> = json.iter().filter_map(|v| v["txn"].as_u64()).collect();
    assert_eq!(txns, [1, 2, 3]);
}

/// The byte column where `word` starts in `line`.
fn col(line: &str, word: &str) -> usize {
    line.find(word)
        .unwrap_or_else(|| panic!("{word:?} not in {line:?}"))
}

#[test]
fn item7_history_header_aligned() {
    let node = Node::new();
    node.ok(&["snapshot", SCHEDULER]);
    set(&node, SCHEDULER, "v=2");
    chmod(&node, SCHEDULER, 0o600);
    let text = history_text(&node, Some(SCHEDULER));
    let lines: Vec<&str> = text.lines().collect();
    let header = lines[1];
    for row in &lines[2..] {
        let fields: Vec<&str> = row.split_whitespace().collect();
        // Left-aligned columns start under their header word.
        assert_eq!(col(row, fields[1]), col(header, "ON DISK FROM"), "{text}");
        assert_eq!(col(row, fields[2]), col(header, "UNTIL"), "{text}");
        let origin_at = row[col(header, "ORIGIN")..]
            .split_whitespace()
            .next()
            .unwrap();
        assert!(["baseline", "change"].contains(&origin_at), "{text}");
        let mode_at = &row[col(header, "MODE")..col(header, "MODE") + 4];
        assert!(mode_at == "0640" || mode_at == "0600", "{text}");
        let hash = fields.last().unwrap();
        assert_eq!(col(row, hash), col(header, "BLAKE3"), "{text}");
        // Right-aligned columns end under theirs.
        let end = |word: &str| col(header, word) + word.len();
        let size = &row[..end("SIZE")];
        assert!(size.ends_with(|c: char| c.is_ascii_digit()), "{text}");
        assert!(row.as_bytes()[end("SIZE")] == b' ', "{text}");
        assert!(
            row[..end("UID:GID")].ends_with(&format!("{UID}:{GID}")),
            "{text}"
        );
    }
}

#[test]
fn item7_history_current_only_when_the_disk_matches() {
    let node = Node::new();
    node.ok(&["snapshot"]);
    let last = |node: &Node| node.history(Some(SCHEDULER)).last().unwrap().clone();
    assert!(history_text(&node, Some(SCHEDULER)).contains("(current)"));
    // The JSON is the catalog's alone (cli.md): on_disk_until null for the last version.
    assert!(last(&node)["on_disk_until"].is_null());
    // Content changed behind the tool's back.
    let original = node.read(SCHEDULER);
    node.edit_externally(SCHEDULER, b"# not a manifest any more\n");
    let text = history_text(&node, Some(SCHEDULER));
    assert!(text.contains("(changed on disk since)"), "{text}");
    assert!(!text.contains("(current)"), "{text}");
    assert!(last(&node)["on_disk_until"].is_null());
    assert_eq!(node.json(&["status"])["drift"][0]["state"], "changed");
    // Only the mode changed: still not what the version says.
    node.edit_externally(SCHEDULER, &original);
    assert!(history_text(&node, Some(SCHEDULER)).contains("(current)"));
    chmod(&node, SCHEDULER, 0o600);
    assert!(history_text(&node, Some(SCHEDULER)).contains("(changed on disk since)"));
    chmod(&node, SCHEDULER, MODE);
    assert!(history_text(&node, Some(SCHEDULER)).contains("(current)"));
    // Gone from disk.
    fs::remove_file(node.path(SCHEDULER)).unwrap();
    assert!(history_text(&node, Some(SCHEDULER)).contains("(changed on disk since)"));
}

#[test]
fn item7_diff_shows_mode_and_owner_changes() {
    let node = Node::new();
    node.ok(&["snapshot", SCHEDULER]);
    chmod(&node, SCHEDULER, 0o600);
    nix::unistd::chown(
        &node.path(SCHEDULER),
        Some(nix::unistd::Uid::from_raw(0)),
        Some(nix::unistd::Gid::from_raw(0)),
    )
    .unwrap();
    let out = node.ok(&["diff", SCHEDULER, "1"]).stdout_text();
    assert!(out.contains("mode: 0640 -> 0600"), "{out}");
    assert!(out.contains(&format!("owner: {UID}:{GID} -> 0:0")), "{out}");
    let j = node.json(&["diff", SCHEDULER, "1"]);
    assert_eq!(j["content_identical"], true, "{j}");
    assert_eq!(j["identical"], false, "{j}");
    assert_eq!(j["metadata"]["mode"]["from"], 0o640, "{j}");
    assert_eq!(j["metadata"]["mode"]["to"], 0o600, "{j}");
    assert_eq!(j["metadata"]["owner"]["to"]["uid"], 0, "{j}");
    // Between two versions as well.
    node.ok(&["snapshot", SCHEDULER]);
    let out = node.ok(&["diff", SCHEDULER, "1", "2"]).stdout_text();
    assert!(out.contains("mode: 0640 -> 0600"), "{out}");
    // Same content and metadata: nothing to say.
    let j = node.json(&["diff", SCHEDULER, "2"]);
    assert_eq!(j["identical"], true, "{j}");
}

#[test]
fn item7_restore_says_it_changes_the_mode() {
    let node = Node::new();
    node.ok(&["snapshot", SCHEDULER]);
    // The CIS fix: chmod 600, recorded.
    chmod(&node, SCHEDULER, 0o600);
    node.ok(&["snapshot", SCHEDULER]);
    node.append_line(SCHEDULER, "# later edit");
    let dry = node
        .ok(&["restore", SCHEDULER, "--version", "1", "--dry-run"])
        .stdout_text();
    assert!(dry.contains("mode: 0600 -> 0640"), "{dry}");
    let j = node.json(&["restore", SCHEDULER, "--version", "1", "--dry-run"]);
    assert_eq!(j["transactions"][0]["metadata"]["mode"]["to"], 0o640, "{j}");
    assert_eq!(
        meta_of(&node.path(SCHEDULER)).0,
        0o600,
        "dry-run changed nothing"
    );
    let out = node
        .ok(&["restore", SCHEDULER, "--version", "1", "--no-health-gate"])
        .stdout_text();
    assert!(out.contains("mode: 0600 -> 0640 (restored)"), "{out}");
    assert_eq!(meta_of(&node.path(SCHEDULER)), (MODE, UID, GID));
    // The version restored carries no mode change: nothing said.
    let out = node
        .ok(&["restore", SCHEDULER, "--version", "2", "--dry-run"])
        .stdout_text();
    assert!(out.contains("mode: 0640 -> 0600"), "{out}");
}

#[test]
fn item7_show_json_is_exact_for_any_bytes() {
    let node = Node::new();
    let mut bytes = node.read(SCHEDULER);
    bytes.extend_from_slice(b"# latin-1 \xe9t\xe9, a NUL \x00 and \xff\xfe\n");
    node.edit_externally(SCHEDULER, &bytes);
    node.ok(&["snapshot", SCHEDULER]);
    let j = node.json(&["show", SCHEDULER]);
    assert_eq!(j["encoding"], "base64", "{j}");
    assert!(j["content"].is_null(), "{j}");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(j["content_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, bytes);
    assert_eq!(j["hash"], blake3_hex(&bytes));
    // Text mode prints the bytes themselves.
    assert_eq!(node.ok(&["show", SCHEDULER]).stdout, bytes);
    // UTF-8 (with a NUL and non-ASCII) stays in `content`, exactly.
    let utf8 = "apiVersion: v1\n# caf\u{e9} \u{1f600} \u{0}\n"
        .as_bytes()
        .to_vec();
    node.edit_externally(ETCD, &utf8);
    node.ok(&["snapshot", ETCD]);
    let j = node.json(&["show", ETCD]);
    assert_eq!(j["encoding"], "utf-8", "{j}");
    assert_eq!(j["content"].as_str().unwrap().as_bytes(), &utf8[..]);
    assert!(j.get("content_base64").is_none(), "{j}");
}

#[test]
fn item7_at_in_the_future_is_refused() {
    let node = Node::new();
    node.ok(&["snapshot", SCHEDULER]);
    let out = node.run(&["show", SCHEDULER, "--at", "2999-01-01T00:00:00Z"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(out.stderr.contains("in the future"), "{}", out.describe());
    let before = node.read(SCHEDULER);
    node.append_line(SCHEDULER, "# edit");
    let edited = node.read(SCHEDULER);
    let out = node.run(&[
        "restore",
        SCHEDULER,
        "--at",
        "2999-01-01 00:00",
        "--no-health-gate",
    ]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(out.stderr.contains("in the future"), "{}", out.describe());
    assert_eq!(node.read(SCHEDULER), edited, "nothing changed");
    // A time in the past still works.
    let now = chrono::Utc::now().to_rfc3339();
    assert_eq!(node.ok(&["show", SCHEDULER, "--at", &now]).stdout, before);
}

/// A node whose apiserver is healthy exactly while its manifest does not say
/// `--profiling=false`: setting that flag is rolled back by the gate.
fn node_with_sick_apiserver() -> (Node, common::ProbeServer) {
    let mut node = Node::new();
    let path = node.path(APISERVER);
    let server = common::ProbeServer::start(move || {
        let now = fs::read(&path).unwrap_or_default();
        if String::from_utf8_lossy(&now).contains("--profiling=false") {
            500
        } else {
            200
        }
    });
    node.aim_apiserver_probes(server.port);
    (node, server)
}

#[test]
fn log_lists_transactions_with_status_and_gate_summary() {
    let (node, _sick) = node_with_sick_apiserver();
    node.ok(&["snapshot"]);
    node.ok(&[
        "set",
        SCHEDULER,
        "--flag",
        "v=2",
        "--reason",
        "more logs",
        "--no-health-gate",
    ]);
    let out = node.run(&[
        "set",
        APISERVER,
        "--flag",
        "profiling=false",
        "--restart-check",
        "none",
        "--health-timeout",
        "4",
    ]);
    assert_eq!(out.code(), Some(3), "{}", out.describe());
    set(&node, ETCD, "x=1");
    // A gated change that passes.
    node.ok(&[
        "set",
        APISERVER,
        "--flag",
        "v=3",
        "--restart-check",
        "none",
        "--health-timeout",
        "60",
    ]);
    let j = node.json(&["log"]);
    let t = j["transactions"].as_array().unwrap();
    assert_eq!(t.len(), 4, "{j}");
    let passed = t[3]["gate"]["summary"].as_str().unwrap();
    assert!(passed.starts_with("passed; committed "), "{passed}");
    assert!(
        t[3]["gate"]["ms_after_write"].as_i64().unwrap() >= 2000,
        "{j}"
    );
    assert_eq!(t[0]["txn"], 1);
    assert_eq!(t[0]["kind"], "set");
    assert_eq!(t[0]["reason"], "more logs");
    assert_eq!(t[0]["status"], "committed");
    assert_eq!(t[0]["paths"][0], node.key(SCHEDULER));
    assert!(t[0]["started_at"].as_str().unwrap().ends_with('Z'));
    let summary = t[0]["gate"]["summary"].as_str().unwrap();
    assert!(summary.starts_with("not gated; committed "), "{j}");
    assert_eq!(t[1]["status"], "rolled_back", "{j}");
    let why = t[1]["gate"]["summary"].as_str().unwrap();
    assert!(why.starts_with("failed: ") && why.contains("500"), "{why}");
    assert!(t[1]["gate"]["ms_after_write"].as_i64().unwrap() >= 0, "{j}");
    // Text: one block per transaction, with its id, status, kind, file and gate line.
    let text = node.ok(&["log"]).stdout_text();
    assert!(text.contains("transaction 2  rolled_back  set  "), "{text}");
    assert!(
        text.contains(&format!("  file:   {}", node.key(APISERVER))),
        "{text}"
    );
    assert!(text.contains("  reason: more logs"), "{text}");
    assert_eq!(text.matches("  result: ").count(), 4, "{text}");
    // What the gate saw, journaled with the outcome: the change's check, and the rollback's.
    assert!(
        text.contains("  gate:   kube-apiserver (change) healthy: "),
        "{text}"
    );
    assert!(
        text.contains("  gate:   kube-apiserver (change) failed: "),
        "{text}"
    );
    assert!(
        text.contains("  gate:   kube-apiserver (rollback) healthy: "),
        "{text}"
    );
    let checks = t[3]["gate"]["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1, "{j}");
    assert!(checks[0].as_str().unwrap().contains("stable after"), "{j}");
    assert!(
        t[0]["gate"]["checks"].as_array().unwrap().is_empty(),
        "not gated: {j}"
    );
    // Filtered by file.
    let j = node.json(&["log", ETCD]);
    let ids: Vec<u64> = j["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["txn"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [3]);
}

#[test]
fn log_txn_shows_one_transaction_with_its_diffs_and_gate_result() {
    let (node, _sick) = node_with_sick_apiserver();
    node.ok(&["snapshot"]);
    set(&node, SCHEDULER, "v=7");
    let out = node.ok(&["log", "--txn", "1"]).stdout_text();
    assert!(out.starts_with("transaction 1  committed  set  "), "{out}");
    assert!(out.contains("+    - --v=7"), "{out}");
    assert!(
        out.contains(&format!("--- {} (before txn 1)", node.key(SCHEDULER))),
        "{out}"
    );
    let out = node.run(&[
        "set",
        APISERVER,
        "--flag",
        "profiling=false",
        "--restart-check",
        "none",
        "--health-timeout",
        "4",
    ]);
    assert_eq!(out.code(), Some(3), "{}", out.describe());
    let j = node.json(&["log", "--txn", "2"]);
    let t = &j["transaction"];
    assert_eq!(t["status"], "rolled_back", "{j}");
    assert!(t["gate"]["detail"].as_str().unwrap().contains("500"), "{j}");
    let f = &t["files"][0];
    assert_eq!(f["path"], node.key(APISERVER));
    assert!(
        f["diff"]
            .as_str()
            .unwrap()
            .contains("+    - --profiling=false"),
        "{j}"
    );
    assert_eq!(f["before"]["mode"], MODE);
    let text = node.ok(&["log", "--txn", "2"]).stdout_text();
    assert!(text.contains("  detail: "), "{text}");
    // No such transaction: bad input.
    let out = node.run(&["log", "--txn", "99"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(out.stderr.contains("no transaction 99"));
    let out = node.run(&["log", "--txn", "x"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
}
