//! The command line and the engine behind it, end to end: real processes of the `kubeharden`
//! binary on real files (copies of the kubeadm v1.30.14 manifests in a tempdir). Each test is
//! named after the property it checks (`cli.md` and `transaction-protocol.md` are the contract).

mod common;

use common::{blake3_hex, meta_of, rec, Node, Out, APISERVER, GID, MANIFESTS, MODE, UID};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

/// A flag of the apiserver manifest flipped (an edit a human would make).
fn flip_privileged(bytes: &[u8]) -> Vec<u8> {
    let s = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(s.contains("--allow-privileged=true"));
    s.replacen("--allow-privileged=true", "--allow-privileged=false", 1)
        .into_bytes()
}

/// Node with the apiserver at: v1 baseline (A), v2 external (B), file on disk = B.
fn node_with_two_versions() -> (Node, Vec<u8>, Vec<u8>) {
    let node = Node::new();
    node.ok(&["snapshot"]);
    let a = node.read(APISERVER);
    let b = flip_privileged(&a);
    node.edit_externally(APISERVER, &b);
    node.ok(&["snapshot", APISERVER]);
    (node, a, b)
}

#[track_caller]
fn assert_unchanged(
    node: &Node,
    before: &std::collections::BTreeMap<std::path::PathBuf, Vec<u8>>,
    what: &str,
) {
    let after = node.durable_fingerprint();
    let changed: Vec<_> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(
        changed.is_empty(),
        "{what}: files changed although nothing may change: {changed:?}"
    );
}

#[track_caller]
fn assert_error_json(out: &Out, code: i32) {
    let j = out.json();
    assert_eq!(j["exit_code"], code, "{}", out.describe());
    assert!(
        j["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{}",
        out.describe()
    );
}

// ---------------------------------------------------------------------------------------------
// The time machine: snapshot, history, show, diff, restore
// ---------------------------------------------------------------------------------------------

#[test]
fn demo_flow_snapshot_external_edit_diff_restore_gives_back_v1_byte_for_byte() {
    let node = Node::new();
    let snap = node.json(&["snapshot"]);
    assert_eq!(snap["snapshot"].as_array().unwrap().len(), MANIFESTS.len());
    let v1 = node.read(APISERVER);
    let key = node.key(APISERVER);

    let edited = flip_privileged(&v1);
    node.edit_externally(APISERVER, &edited);
    let status = node.json(&["status"]);
    let drift = status["drift"].as_array().unwrap();
    assert!(
        drift
            .iter()
            .any(|d| d["path"] == key.as_str() && d["state"] == "changed"),
        "status shows the outside edit as drift: {status}"
    );
    node.ok(&["snapshot"]);

    let h = node.history(Some(APISERVER));
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h[0]["origin"], "baseline");
    assert_eq!(h[0]["hash"], blake3_hex(&v1));
    assert_eq!(h[1]["origin"], "external");
    assert_eq!(h[1]["hash"], blake3_hex(&edited));
    assert_eq!(h[1]["on_disk_until"], Value::Null);
    assert_eq!(h[0]["on_disk_until"], h[1]["on_disk_from"]);

    let d = node.json(&["diff", APISERVER, "1"]);
    assert_eq!(d["identical"], false);
    let text = d["diff"].as_str().unwrap();
    assert!(text.contains("-    - --allow-privileged=true"), "{text}");
    assert!(text.contains("+    - --allow-privileged=false"), "{text}");
    let plain = node.ok(&["diff", APISERVER, "1", "2"]).stdout_text();
    assert!(plain.contains("+    - --allow-privileged=false"), "{plain}");

    let r = node.json(&["restore", APISERVER, "--version", "1", "--no-health-gate"]);
    let t = &r["transactions"][0];
    assert_eq!(t["status"], "committed", "{r}");
    assert_eq!(t["before"], blake3_hex(&edited));
    assert_eq!(t["after"], blake3_hex(&v1));
    assert!(
        node.read(APISERVER) == v1,
        "restored file is byte-identical to v1"
    );
    assert_eq!(meta_of(&node.path(APISERVER)), (MODE, UID, GID));

    let h = node.history(Some(APISERVER));
    assert_eq!(h.len(), 3, "{h:?}");
    assert_eq!(h[2]["origin"], "restore");
    assert_eq!(h[2]["txn"], t["txn"]);
    assert_eq!(h[2]["hash"], blake3_hex(&v1));
    assert_eq!(h[2]["on_disk_until"], Value::Null);
    assert!(node.json(&["diff", APISERVER, "1"])["identical"] == true);
    assert_eq!(node.json(&["status"])["drift"], serde_json::json!([]));
    node.ok(&["verify"]);
    common::assert_versions_restore(&node, &node.history(None));
}

fn set_mtime(p: &Path, secs: u64) {
    let f = fs::OpenOptions::new().write(true).open(p).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

/// 2020-01-01T00:00:00Z and 2021-06-01T12:00:00Z.
const T2020: u64 = 1_577_836_800;
const T2021: u64 = 1_622_548_800;
/// UTC+05:30 as a POSIX TZ string (no tz database needed).
const TZ_PLUS_0530: &str = "IST-5:30";

#[test]
fn show_at_rfc3339_and_local_time_pick_the_version_on_disk_then() {
    let node = Node::new();
    let a = node.read(APISERVER);
    set_mtime(&node.path(APISERVER), T2020);
    node.ok(&["snapshot", APISERVER]);
    let b = flip_privileged(&a);
    node.edit_externally(APISERVER, &b);
    set_mtime(&node.path(APISERVER), T2021);
    node.ok(&["snapshot", APISERVER]);
    let c = node.append_line(APISERVER, "# third");
    node.ok(&["snapshot", APISERVER]);

    let h = node.history(Some(APISERVER));
    assert_eq!(h[0]["on_disk_from"], "2020-01-01T00:00:00.000Z", "{h:?}");
    assert_eq!(h[1]["on_disk_from"], "2021-06-01T12:00:00.000Z", "{h:?}");

    let tz = [("TZ", TZ_PLUS_0530)];
    let show_at = |at: &str| node.run_env(&["show", APISERVER, "--at", at], &tz);
    let cases: [(&str, &[u8]); 10] = [
        ("2020-01-01T00:00:00Z", &a),
        ("2020-06-01T00:00:00Z", &a),
        ("2021-06-01T11:59:59Z", &a),
        ("2021-06-01T12:00:00Z", &b),
        ("2021-06-01T13:59:59+02:00", &a),
        ("2021-06-01T14:00:00+02:00", &b),
        // Local time, TZ=UTC+05:30: 17:30 local is 12:00Z.
        ("2021-06-01 17:29:59", &a),
        ("2021-06-01 17:30:00", &b),
        ("2021-06-01 17:29", &a),
        ("2021-06-01 17:30", &b),
    ];
    for (at, want) in cases {
        let out = show_at(at).expect_code(0);
        assert!(
            out.stdout == want,
            "show --at {at:?} picked the wrong version (blake3 {})",
            blake3_hex(&out.stdout)
        );
    }
    // Now is the latest version; the future is refused (issue 12 item 7), exit 2.
    let now = chrono::Utc::now().to_rfc3339();
    assert!(show_at(&now).expect_code(0).stdout == c);
    let fp = node.durable_fingerprint();
    show_at("2099-01-01T00:00:00Z").expect_code(2);
    show_at("2099-01-01 00:00:00").expect_code(2);
    // Before anything was recorded: no such version, exit 2.
    show_at("2019-12-31T23:59:59Z").expect_code(2);
    show_at("2020-01-01 05:29:59").expect_code(2);
    assert_unchanged(&node, &fp, "show --at before the first version");

    // restore --at uses the same selection.
    let r = node.run_env(
        &[
            "restore",
            APISERVER,
            "--at",
            "2021-06-01 17:30:00",
            "--no-health-gate",
            "-o",
            "json",
        ],
        &tz,
    );
    let j = r.expect_code(0).json();
    assert_eq!(j["transactions"][0]["status"], "committed", "{j}");
    assert!(node.read(APISERVER) == b);
}

#[test]
fn bad_version_numbers_are_usage_errors_and_change_nothing() {
    let (node, _a, _b) = node_with_two_versions();
    node.append_line(APISERVER, "# unrecorded edit");
    let fp = node.durable_fingerprint();
    for v in ["0", "-1", "abc", "999", "", "1.5", "+"] {
        let eq = format!("--version={v}");
        let runs: Vec<Vec<&str>> = vec![
            vec!["show", APISERVER, &eq],
            vec!["restore", APISERVER, &eq, "--no-health-gate"],
            vec!["diff", APISERVER, v],
            vec!["diff", APISERVER, "1", v],
        ];
        for args in runs {
            let out = node.run(&args);
            assert_eq!(out.code(), Some(2), "{}", out.describe());
        }
    }
    // The two-word form of a negative number is refused by the parser: also exit 2.
    node.run(&["restore", APISERVER, "--version", "-1", "--no-health-gate"])
        .expect_code(2);
    node.run(&["show", APISERVER, "--version", "-1"])
        .expect_code(2);
    assert_unchanged(&node, &fp, "bad --version");
}

#[test]
fn bad_at_times_are_usage_errors_and_change_nothing() {
    let (node, _a, _b) = node_with_two_versions();
    node.append_line(APISERVER, "# unrecorded edit");
    let fp = node.durable_fingerprint();
    for at in [
        "garbage",
        "yesterday",
        "",
        "2026-13-01 10:00",
        "2026-11-20T25:00:00Z",
        "2026-11-20",
        "1700000000",
    ] {
        let eq = format!("--at={at}");
        for args in [
            vec!["show", APISERVER, eq.as_str()],
            vec!["restore", APISERVER, eq.as_str(), "--no-health-gate"],
        ] {
            let out = node.run(&args);
            assert_eq!(out.code(), Some(2), "{}", out.describe());
        }
    }
    assert_unchanged(&node, &fp, "bad --at");
}

#[test]
fn restore_with_bad_gate_options_exits_2_and_writes_nothing() {
    let (node, _a, _b) = node_with_two_versions();
    node.append_line(APISERVER, "# unrecorded edit");
    let fp = node.durable_fingerprint();
    let missing_ca = node.root.path().join("no-such-ca.pem");
    for extra in [
        vec!["--probe", "not-a-url"],
        vec!["--probe", "ftp://127.0.0.1/"],
        vec!["--probe-cert", "/x.pem"],
        vec!["--probe-ca", missing_ca.to_str().unwrap()],
        vec!["--restart-check", "sometimes"],
        vec!["--health-timeout", "soon"],
    ] {
        let mut args = vec![
            "restore",
            APISERVER,
            "--version",
            "1",
            "--health-timeout",
            "1",
        ];
        args.extend(extra);
        let out = node.run(&args);
        assert_eq!(out.code(), Some(2), "{}", out.describe());
    }
    assert_unchanged(&node, &fp, "bad gate options");
}

#[test]
fn restore_with_a_probe_url_without_host_exits_2_and_writes_nothing() {
    let (node, _a, _b) = node_with_two_versions();
    let fp = node.durable_fingerprint();
    let out = node.run(&[
        "restore",
        APISERVER,
        "--version",
        "1",
        "--probe",
        "http://",
        "--health-timeout",
        "1",
        "--restart-check",
        "none",
    ]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert_unchanged(&node, &fp, "--probe http://");
}

#[test]
fn restore_through_a_healthy_gate_commits() {
    let node = Node::with_healthy_apiserver();
    node.ok(&["snapshot"]);
    let a = node.read(APISERVER);
    node.edit_externally(APISERVER, &flip_privileged(&a));
    let r = node.json(&[
        "restore",
        APISERVER,
        "--version",
        "1",
        "--restart-check",
        "none",
        "--health-timeout",
        "30",
    ]);
    let t = &r["transactions"][0];
    assert_eq!(t["status"], "committed", "{r}");
    assert_eq!(t["gate"]["checks"][0]["result"], "healthy", "{r}");
    assert!(node.read(APISERVER) == a);
    assert_eq!(meta_of(&node.path(APISERVER)), (MODE, UID, GID));
    node.ok(&["verify"]);
}

/// A component that is healthy exactly when its manifest still says
/// `--allow-privileged=true`: restoring a version that says `false` breaks it.
fn node_with_picky_apiserver() -> Node {
    let mut node = Node::new();
    let path = node.path(APISERVER);
    let server = common::ProbeServer::start(move || {
        let now = fs::read(&path).unwrap_or_default();
        let s = String::from_utf8_lossy(&now);
        if s.contains("--allow-privileged=true") {
            200
        } else {
            500
        }
    });
    node.aim_apiserver_probes(server.port);
    node
}

#[test]
fn restore_that_fails_its_gate_is_rolled_back_with_exit_3_to_the_exact_before_bytes() {
    let node = node_with_picky_apiserver();
    node.ok(&["snapshot"]);
    let a = node.read(APISERVER);
    node.edit_externally(APISERVER, &flip_privileged(&a));
    node.ok(&["snapshot", APISERVER]);
    let c = node.json(&["restore", APISERVER, "--version", "1", "--no-health-gate"]);
    assert_eq!(c["transactions"][0]["status"], "committed");
    let before = node.append_line(APISERVER, "# healthy, edited by hand");
    let out = node.run(&[
        "restore",
        APISERVER,
        "--version",
        "2",
        "--restart-check",
        "none",
        "--health-timeout",
        "4",
        "-o",
        "json",
    ]);
    assert_eq!(out.code(), Some(3), "{}", out.describe());
    let j = out.json();
    let t = &j["transactions"][0];
    assert_eq!(t["status"], "rolled_back", "{j}");
    let checks = t["gate"]["checks"].as_array().unwrap();
    assert_eq!(checks[0]["result"], "failed", "{j}");
    assert!(node.read(APISERVER) == before, "the before bytes are back");
    assert_eq!(meta_of(&node.path(APISERVER)), (MODE, UID, GID));
    assert_eq!(node.leftover_temps(), Vec::<String>::new());
    let h = node.history(Some(APISERVER));
    let n = h.len();
    assert_eq!(h[n - 2]["origin"], "restore", "{h:?}");
    assert_eq!(h[n - 1]["origin"], "rollback", "{h:?}");
    assert_eq!(h[n - 1]["hash"], blake3_hex(&before));
    assert_eq!(h[n - 1]["txn"], t["txn"]);
    node.ok(&["verify"]);
    common::assert_versions_restore(&node, &node.history(None));
}

#[test]
fn rollback_failed_json_names_the_transaction_and_its_after_content() {
    let mut node = Node::new();
    // Healthy before the change (the gate probes first), broken for good once the manifest
    // changes: the rollback cannot bring it back, so it fails (a component that was already
    // down before would only be held to that, exit 3).
    let path = node.path(APISERVER);
    let first: std::sync::Mutex<Option<Vec<u8>>> = std::sync::Mutex::new(None);
    let broken = std::sync::atomic::AtomicBool::new(false);
    let sick = common::ProbeServer::start(move || {
        let now = fs::read(&path).unwrap_or_default();
        let mut seen = first.lock().unwrap();
        if *seen.get_or_insert_with(|| now.clone()) != now {
            broken.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        if broken.load(std::sync::atomic::Ordering::SeqCst) {
            500
        } else {
            200
        }
    });
    node.aim_apiserver_probes(sick.port);
    node.ok(&["snapshot"]);
    let a = node.read(APISERVER);
    let b = node.append_line(APISERVER, "# edit");
    let out = node.run(&[
        "restore",
        APISERVER,
        "--version",
        "1",
        "--restart-check",
        "none",
        "--health-timeout",
        "1",
        "--rollback-timeout",
        "1",
        "-o",
        "json",
    ]);
    assert_eq!(out.code(), Some(4), "{}", out.describe());
    assert!(
        node.read(APISERVER) == b,
        "the before content is back on disk"
    );
    let j = out.json();
    let t = &j["transactions"][0];
    assert_eq!(t["status"], "rollback_failed", "{j}");
    assert!(t["txn"].as_u64().is_some(), "txn id missing: {j}");
    assert_eq!(t["before"], blake3_hex(&b), "{j}");
    assert_eq!(t["after"], blake3_hex(&a), "{j}");
}

#[test]
fn restore_to_the_version_already_on_disk_is_a_noop_that_writes_nothing() {
    let (node, _a, b) = node_with_two_versions();
    let ino = fs::metadata(node.path(APISERVER)).unwrap().ino();
    let fp = node.durable_fingerprint();
    let history = node.history_bytes();
    let r = node.json(&["restore", APISERVER, "--version", "2", "--no-health-gate"]);
    let t = &r["transactions"][0];
    assert_eq!(t["status"], "noop", "{r}");
    assert_eq!(t["txn"], Value::Null, "{r}");
    assert_eq!(t["before"], t["after"]);
    assert_eq!(t["after"], blake3_hex(&b));
    assert_unchanged(&node, &fp, "noop restore");
    assert_eq!(node.history_bytes(), history, "no new version");
    assert_eq!(
        fs::metadata(node.path(APISERVER)).unwrap().ino(),
        ino,
        "the file was not replaced"
    );

    // Restoring v1 twice: the second time is a no-op.
    let r = node.json(&["restore", APISERVER, "--version", "1", "--no-health-gate"]);
    assert_eq!(r["transactions"][0]["status"], "committed");
    let n = node.history(None).len();
    let fp = node.durable_fingerprint();
    let r = node.json(&["restore", APISERVER, "--version", "1", "--no-health-gate"]);
    assert_eq!(r["transactions"][0]["status"], "noop");
    assert_eq!(node.history(None).len(), n);
    assert_unchanged(&node, &fp, "second restore of v1");
}

#[test]
fn restore_brings_back_mode_and_owner_of_the_version() {
    let node = Node::new();
    node.ok(&["snapshot", APISERVER]);
    let p = node.path(APISERVER);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&p, Some(0), Some(0)).unwrap();
    node.ok(&["snapshot", APISERVER]);
    let h = node.history(Some(APISERVER));
    assert_eq!(h.len(), 2, "a metadata-only change is a version: {h:?}");
    assert_eq!(h[1]["mode"], 0o600);
    assert_eq!(h[1]["uid"], 0);
    node.json(&["restore", APISERVER, "--version", "1", "--no-health-gate"]);
    assert_eq!(meta_of(&p), (MODE, UID, GID));
    let h = node.history(Some(APISERVER));
    assert_eq!(h[2]["mode"], MODE);
    assert_eq!(h[2]["uid"], UID);
    assert_eq!(h[2]["gid"], GID);
}

#[test]
fn failed_durable_write_rolls_back_with_exit_7_and_keeps_the_file() {
    let node = Node::new();
    let target = node.manifest_elsewhere("elsewhere", APISERVER);
    let t = target.to_str().unwrap();
    node.ok(&["snapshot", t]);
    let b = node.append_line(t, "# edit");
    // A directory squats the temp file's name: the write fails before the rename.
    let blocker = target.with_file_name(format!(".kubeharden-{APISERVER}.tmp"));
    fs::create_dir(&blocker).unwrap();
    let out = node.run(&[
        "restore",
        t,
        "--version",
        "1",
        "--no-health-gate",
        "-o",
        "json",
    ]);
    // An I/O error (exit 7, issue 11 item 9), not a failed gate: the message names the file
    // and the errno and says the before content is back.
    assert_eq!(out.code(), Some(7), "{}", out.describe());
    let j = out.json();
    let msg = j["error"].as_str().unwrap_or_default();
    assert!(msg.contains(&*blocker.to_string_lossy()), "{j}");
    assert!(msg.contains("(EISDIR)"), "{j}");
    assert!(msg.contains("holds its before content"), "{j}");
    assert!(msg.contains("rolled back and recorded"), "{j}");
    assert!(node.read(t) == b, "the file is as before");
    assert_eq!(meta_of(&target), (MODE, UID, GID));
    fs::remove_dir(&blocker).unwrap();
    node.ok(&["verify"]);
    let st = node.json(&["status"]);
    assert_eq!(st["incomplete"], serde_json::json!([]), "{st}");
    assert_eq!(st["last_txn"]["status"], "rolled_back", "{st}");
    // And once the cause is gone, the same restore goes through.
    node.json(&["restore", t, "--version", "1", "--no-health-gate"]);
    assert!(node.read(t) == node.originals[APISERVER]);
}

#[test]
fn show_defaults_to_the_latest_recorded_version_and_unknown_files_are_usage_errors() {
    let (node, _a, b) = node_with_two_versions();
    node.append_line(APISERVER, "# not recorded");
    let out = node.ok(&["show", APISERVER]);
    assert!(
        out.stdout == b,
        "show without --version prints the latest recorded"
    );
    let j = node.json(&["show", APISERVER]);
    assert_eq!(j["version"], 2);
    assert_eq!(j["hash"], blake3_hex(&b));
    node.run(&["show", "no-such.yaml"]).expect_code(2);
    node.run(&[
        "restore",
        "no-such.yaml",
        "--version",
        "1",
        "--no-health-gate",
    ])
    .expect_code(2);
}

#[test]
fn read_only_commands_on_a_fresh_node_create_no_state() {
    let node = Node::new();
    let h = node.json(&["history"]);
    assert_eq!(h["versions"], serde_json::json!([]));
    node.json(&["status"]);
    node.json(&["verify"]);
    node.run(&["show", APISERVER]).expect_code(2);
    assert!(!node.state.exists(), "a read created the state dir");
}

// ---------------------------------------------------------------------------------------------
// Integrity: journal, objects, catalog
// ---------------------------------------------------------------------------------------------

/// Flip one payload byte of the second record of segment 1 (records follow it).
fn corrupt_early_record(node: &Node) {
    let seg = node.segments()[0].clone();
    let mut bytes = fs::read(&seg).unwrap();
    let recs = common::parse_segment(&bytes, 1);
    assert!(recs.len() >= 4, "need records after the corrupted one");
    let r = &recs[1];
    let at = r.offset + common::RECORD_HEADER_LEN + (r.len - common::RECORD_HEADER_LEN) / 2;
    bytes[at] ^= 0x5a;
    fs::write(&seg, &bytes).unwrap();
}

/// A node with history (a committed restore too), then an early journal record damaged.
fn node_with_mid_journal_corruption() -> Node {
    let (node, _a, _b) = node_with_two_versions();
    node.json(&["restore", APISERVER, "--version", "1", "--no-health-gate"]);
    node.append_line(APISERVER, "# unrecorded edit");
    corrupt_early_record(&node);
    node
}

#[track_caller]
fn assert_refused_with_6(node: &Node, args: &[&str]) {
    let fp = node.durable_fingerprint();
    let out = node.run(args);
    assert_eq!(
        out.code(),
        Some(6),
        "a journal damaged before its tail must be refused: {}",
        out.describe()
    );
    assert_unchanged(node, &fp, &args.join(" "));
    let mut json_args = args.to_vec();
    json_args.extend(["-o", "json"]);
    assert_error_json(&node.run(&json_args), 6);
    assert_unchanged(node, &fp, &args.join(" "));
}

#[test]
fn mid_journal_corruption_makes_verify_exit_6_and_changes_nothing() {
    let node = node_with_mid_journal_corruption();
    assert_refused_with_6(&node, &["verify"]);
    // `verify --repair` salvages such a journal (issue 11): tests/journal_salvage.rs.
}

#[test]
fn mid_journal_corruption_is_refused_by_every_command_when_the_catalog_is_rebuilt() {
    // Without a catalog checkpoint the whole journal is read, so every command sees the damage.
    let node = node_with_mid_journal_corruption();
    for args in [
        vec!["history"],
        vec!["restore", APISERVER, "--version", "2", "--no-health-gate"],
        vec!["recover"],
        vec!["snapshot"],
    ] {
        for suffix in ["", "-wal", "-shm"] {
            let _ = fs::remove_file(node.state.join(format!("catalog.sqlite{suffix}")));
        }
        assert_refused_with_6(&node, &args);
    }
}

#[test]
fn mid_journal_corruption_makes_history_exit_6() {
    let node = node_with_mid_journal_corruption();
    assert_refused_with_6(&node, &["history"]);
}

#[test]
fn mid_journal_corruption_makes_restore_exit_6_and_write_nothing() {
    let node = node_with_mid_journal_corruption();
    assert_refused_with_6(
        &node,
        &["restore", APISERVER, "--version", "2", "--no-health-gate"],
    );
}

#[test]
fn mid_journal_corruption_makes_recover_exit_6() {
    let node = node_with_mid_journal_corruption();
    assert_refused_with_6(&node, &["recover"]);
}

#[test]
fn mid_journal_corruption_makes_snapshot_exit_6_and_write_nothing() {
    let node = node_with_mid_journal_corruption();
    assert_refused_with_6(&node, &["snapshot"]);
}

#[test]
fn corrupt_object_makes_show_restore_and_verify_exit_6() {
    let (node, a, _b) = node_with_two_versions();
    let obj = node.object_path(&blake3_hex(&a));
    let mut bytes = fs::read(&obj).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    // Objects are read-only to the tool; write through a fresh file of the same mode.
    let mode = fs::metadata(&obj).unwrap().mode();
    fs::write(&obj, &bytes).unwrap();
    fs::set_permissions(&obj, fs::Permissions::from_mode(mode)).unwrap();
    let fp = node.durable_fingerprint();
    for args in [
        vec!["show", APISERVER, "--version", "1"],
        vec!["restore", APISERVER, "--version", "1", "--no-health-gate"],
        vec!["diff", APISERVER, "1"],
        vec!["verify"],
        vec!["verify", "--repair"],
    ] {
        let out = node.run(&args);
        assert_eq!(out.code(), Some(6), "{}", out.describe());
    }
    assert_unchanged(&node, &fp, "corrupt object");
    // The intact version still shows.
    node.ok(&["show", APISERVER, "--version", "2"]);
}

#[test]
fn deleted_catalog_is_rebuilt_by_verify_repair_with_byte_identical_history() {
    let (node, _a, _b) = node_with_two_versions();
    node.json(&["restore", APISERVER, "--version", "1", "--no-health-gate"]);
    let before = node.history_bytes();
    let remove_catalog = || {
        for suffix in ["", "-wal", "-shm"] {
            let p = node.state.join(format!("catalog.sqlite{suffix}"));
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("{}: {e}", p.display()),
            }
        }
    };
    remove_catalog();
    let r = node.json(&["verify", "--repair"]);
    assert_eq!(r["ok"], true, "{r}");
    assert!(
        node.history_bytes() == before,
        "history differs after the rebuild"
    );
    node.ok(&["verify"]);
    // A read-only command rebuilds a missing catalog on its own, identically.
    remove_catalog();
    assert!(
        node.history_bytes() == before,
        "history differs after a bare rebuild"
    );
    let st = fs::metadata(node.state.join("catalog.sqlite")).unwrap();
    assert_eq!(st.mode() & 0o777, 0o600, "rebuilt catalog mode");
}

#[test]
fn tampered_catalog_fails_verify_with_6_and_repair_restores_identical_history() {
    for tamper in [
        "DELETE FROM versions WHERE version = 2",
        "UPDATE versions SET origin = 'change' WHERE version = 1",
        "DELETE FROM transactions",
    ] {
        let (node, _a, _b) = node_with_two_versions();
        node.json(&["restore", APISERVER, "--version", "1", "--no-health-gate"]);
        let before = node.history_bytes();
        {
            let c = rusqlite::Connection::open(node.state.join("catalog.sqlite")).unwrap();
            let n = c.execute(tamper, []).unwrap();
            assert!(n > 0, "{tamper} changed nothing");
        }
        let out = node.run(&["verify"]);
        assert_eq!(out.code(), Some(6), "{tamper}: {}", out.describe());
        assert!(
            out.stderr.contains("verify --repair"),
            "the message suggests the repair: {}",
            out.describe()
        );
        let r = node.json(&["verify", "--repair"]);
        assert_eq!(r["catalog_repaired"], true, "{tamper}: {r}");
        assert!(
            node.history_bytes() == before,
            "{tamper}: history differs after the repair"
        );
        node.ok(&["verify"]);
    }
}

// ---------------------------------------------------------------------------------------------
// The state directory: lock, symlinks, permissions
// ---------------------------------------------------------------------------------------------

fn hold_lock(node: &Node) -> fs::File {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(node.state.join("lock"))
        .unwrap();
    f.lock().unwrap();
    f
}

#[test]
fn busy_lock_with_timeout_0_exits_5_at_once_and_changes_nothing() {
    let (node, _a, _b) = node_with_two_versions();
    node.append_line(APISERVER, "# unrecorded edit");
    let lock = hold_lock(&node);
    let fp = node.durable_fingerprint();
    for args in [
        vec![
            "restore",
            APISERVER,
            "--version",
            "1",
            "--no-health-gate",
            "--lock-timeout",
            "0",
        ],
        vec!["snapshot", "--lock-timeout", "0"],
        vec!["recover", "--lock-timeout", "0"],
        vec!["verify", "--lock-timeout", "0"],
    ] {
        let out = node.run(&args);
        assert_eq!(out.code(), Some(5), "{}", out.describe());
        assert!(
            out.elapsed < Duration::from_secs(3),
            "--lock-timeout 0 fails at once, took {:?}",
            out.elapsed
        );
        let mut j = args.clone();
        j.extend(["-o", "json"]);
        assert_error_json(&node.run(&j), 5);
    }
    // A timeout is waited out, then exit 5.
    let out = node.run(&["snapshot", "--lock-timeout", "1"]);
    assert_eq!(out.code(), Some(5), "{}", out.describe());
    assert!(
        out.elapsed >= Duration::from_millis(900),
        "{:?}",
        out.elapsed
    );
    // Readers never wait for the lock.
    node.json(&["history"]);
    node.json(&["status"]);
    assert_unchanged(&node, &fp, "lock busy");
    drop(lock);
    node.json(&[
        "restore",
        APISERVER,
        "--version",
        "1",
        "--no-health-gate",
        "--lock-timeout",
        "0",
    ]);
}

#[test]
fn a_waiting_command_proceeds_once_the_lock_is_released() {
    let (node, a, _b) = node_with_two_versions();
    let lock = hold_lock(&node);
    let (cmd, shown) = node.command(
        &[
            "restore",
            APISERVER,
            "--version",
            "1",
            "--no-health-gate",
            "--lock-timeout",
            "30",
        ],
        &[],
    );
    let waiter = std::thread::spawn(move || common::run_command(cmd, shown));
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        node.read(APISERVER) != a,
        "restored while the lock was held"
    );
    drop(lock);
    let out = waiter.join().unwrap().expect_code(0);
    assert!(
        out.elapsed >= Duration::from_millis(600),
        "{:?}",
        out.elapsed
    );
    assert!(node.read(APISERVER) == a);
}

/// Replace `STATE/name` with a symlink to a moved copy of it.
fn plant_symlink(node: &Node, name: &str) {
    let p = node.state.join(name);
    let real = node
        .root
        .path()
        .join(format!("moved-{}", name.replace('/', "_")));
    fs::rename(&p, &real).unwrap();
    std::os::unix::fs::symlink(&real, &p).unwrap();
}

#[test]
fn symlink_planted_in_the_state_dir_is_refused_with_exit_6() {
    for name in [
        "objects",
        "journal",
        "catalog.sqlite",
        "lock",
        "journal/00000001.wal",
    ] {
        for args in [
            vec!["history"],
            vec!["snapshot"],
            vec!["restore", APISERVER, "--version", "1", "--no-health-gate"],
            vec!["verify"],
        ] {
            let (node, _a, _b) = node_with_two_versions();
            node.append_line(APISERVER, "# unrecorded edit");
            plant_symlink(&node, name);
            let fp = node.durable_fingerprint();
            let out = node.run(&args);
            assert_eq!(out.code(), Some(6), "{name}: {}", out.describe());
            assert!(
                out.stderr.contains("symbolic link") || out.stderr.contains("symlink"),
                "{name}: the message says why: {}",
                out.describe()
            );
            assert_unchanged(&node, &fp, name);
        }
    }
}

#[test]
fn symlinked_object_file_is_refused_with_exit_6() {
    let (node, a, _b) = node_with_two_versions();
    let obj = node.object_path(&blake3_hex(&a));
    let real = node.root.path().join("moved-object");
    fs::rename(&obj, &real).unwrap();
    std::os::unix::fs::symlink(&real, &obj).unwrap();
    for args in [
        vec!["show", APISERVER, "--version", "1"],
        vec!["restore", APISERVER, "--version", "1", "--no-health-gate"],
        vec!["verify"],
    ] {
        let out = node.run(&args);
        assert_eq!(out.code(), Some(6), "{}", out.describe());
        assert!(out.stderr.contains("symbolic link"), "{}", out.describe());
    }
}

#[test]
fn symlinked_object_subdir_is_refused_with_exit_6() {
    let (node, a, _b) = node_with_two_versions();
    let hex = blake3_hex(&a);
    let sub = node.state.join("objects").join(&hex[..2]);
    let real = node.root.path().join("moved-subdir");
    fs::rename(&sub, &real).unwrap();
    std::os::unix::fs::symlink(&real, &sub).unwrap();
    for args in [vec!["show", APISERVER, "--version", "1"], vec!["verify"]] {
        let out = node.run(&args);
        assert_eq!(out.code(), Some(6), "{}", out.describe());
    }
}

#[test]
fn manifest_that_is_a_symlink_is_refused_with_exit_2_and_a_reason() {
    let (node, _a, b) = node_with_two_versions();
    let p = node.path(APISERVER);
    let real = node.manifest_elsewhere("real", APISERVER);
    fs::write(&real, &b).unwrap();
    fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink(&real, &p).unwrap();
    let fp = node.durable_fingerprint();
    let out = node.run(&["restore", APISERVER, "--version", "1", "--no-health-gate"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(
        out.stderr.contains("symbolic link"),
        "the message says why: {}",
        out.describe()
    );
    node.run(&["snapshot", APISERVER]).expect_code(2);
    assert_unchanged(&node, &fp, "symlinked manifest");
    assert!(fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
    assert!(
        fs::read(&real).unwrap() == b,
        "the link's target is untouched"
    );
    // A whole-dir snapshot skips it and records the others.
    node.ok(&["snapshot"]);
}

#[test]
fn state_dir_is_created_0700_objects_and_catalog_0600_even_with_umask_0() {
    let node = Node::new();
    node.run_with_umask(0, &["snapshot"]).expect_code(0);
    node.append_line(APISERVER, "# edit");
    node.run_with_umask(
        0,
        &["restore", APISERVER, "--version", "1", "--no-health-gate"],
    )
    .expect_code(0);
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&node.state), 0o700, "state dir");
    for d in ["journal", "objects"] {
        assert_eq!(mode(&node.state.join(d)), 0o700, "{d}");
    }
    let mut objects = 0;
    for sub in fs::read_dir(node.state.join("objects")).unwrap() {
        let sub = sub.unwrap().path();
        assert_eq!(mode(&sub), 0o700, "{}", sub.display());
        for f in fs::read_dir(&sub).unwrap() {
            let f = f.unwrap().path();
            assert_eq!(mode(&f), 0o600, "{}", f.display());
            objects += 1;
        }
    }
    assert!(
        objects > MANIFESTS.len(),
        "baselines plus the edit: {objects}"
    );
    for seg in node.segments() {
        assert_eq!(mode(&seg), 0o600, "{}", seg.display());
    }
    for f in [
        "catalog.sqlite",
        "catalog.sqlite-wal",
        "catalog.sqlite-shm",
        "lock",
    ] {
        let p = node.state.join(f);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{f}");
        }
    }
    assert_eq!(meta_of(&node.path(APISERVER)), (MODE, UID, GID));
}

// ---------------------------------------------------------------------------------------------
// Output and housekeeping
// ---------------------------------------------------------------------------------------------

#[test]
fn json_output_is_exactly_one_document_for_every_command_including_errors() {
    let fresh = Node::new();
    let out = fresh.run(&["history", "-o", "json"]).expect_code(0);
    out.json();

    let (node, _a, _b) = node_with_two_versions();
    let ok: Vec<Vec<&str>> = vec![
        vec!["snapshot"],
        vec!["snapshot", APISERVER],
        vec!["history"],
        vec!["history", APISERVER],
        vec!["show", APISERVER],
        vec!["show", APISERVER, "--version", "1"],
        vec!["diff", APISERVER, "1"],
        vec!["diff", APISERVER, "1", "2"],
        vec!["restore", APISERVER, "--version", "1", "--dry-run"],
        vec!["restore", APISERVER, "--version", "1", "--no-health-gate"],
        vec!["restore", APISERVER, "--version", "1", "--no-health-gate"],
        vec!["recover"],
        vec!["recover", "--policy", "replay"],
        vec!["status"],
        vec!["verify"],
        vec!["verify", "--repair"],
    ];
    for args in ok {
        let mut a = args.clone();
        a.extend(["-o", "json"]);
        let out = node.run(&a).expect_code(0);
        out.json();
    }
    let errors: Vec<(Vec<&str>, i32)> = vec![
        (vec!["show", APISERVER, "--version", "999"], 2),
        (vec!["show", APISERVER, "--version=0"], 2),
        (vec!["show", APISERVER, "--at", "garbage"], 2),
        (vec!["diff", APISERVER, "abc"], 2),
        (
            vec!["restore", APISERVER, "--version", "1", "--probe", "nope"],
            2,
        ),
        (
            vec![
                "restore",
                "missing.yaml",
                "--version",
                "1",
                "--no-health-gate",
            ],
            2,
        ),
    ];
    for (args, code) in errors {
        let mut a = args.clone();
        a.extend(["-o", "json"]);
        let out = node.run(&a);
        assert_eq!(out.code(), Some(code), "{}", out.describe());
        assert_error_json(&out, code);
    }
    let lock = hold_lock(&node);
    assert_error_json(
        &node.run(&["snapshot", "--lock-timeout", "0", "-o", "json"]),
        5,
    );
    drop(lock);
    corrupt_early_record(&node);
    assert_error_json(&node.run(&["verify", "-o", "json"]), 6);
}

#[test]
fn json_output_is_one_document_for_argument_parser_errors_too() {
    let (node, _a, _b) = node_with_two_versions();
    for args in [
        vec![
            "restore",
            APISERVER,
            "--version",
            "-1",
            "--no-health-gate",
            "-o",
            "json",
        ],
        vec!["restore", APISERVER, "-o", "json"],
        vec!["history", "--no-such-flag", "-o", "json"],
        vec!["no-such-command", "-o", "json"],
    ] {
        let out = node.run(&args);
        assert_eq!(out.code(), Some(2), "{}", out.describe());
        assert_error_json(&out, 2);
    }
}

#[test]
fn leftover_dot_temp_in_manifests_dir_is_removed_by_the_next_mutating_command() {
    let node = Node::new();
    node.ok(&["snapshot"]);
    let plant = |name: &str| {
        fs::write(node.manifests.join(name), b"half-written junk").unwrap();
    };
    fs::write(node.manifests.join(".keep"), b"not ours").unwrap();
    fs::write(node.manifests.join("notes.txt"), b"not ours").unwrap();

    plant(".kubeharden-kube-apiserver.yaml.tmp");
    plant(".kubeharden-etcd.yaml.tmp");
    node.ok(&["snapshot"]);
    assert_eq!(node.leftover_temps(), Vec::<String>::new());

    plant(".kubeharden-kube-apiserver.yaml.tmp");
    node.append_line(APISERVER, "# edit");
    node.json(&["restore", APISERVER, "--version", "1", "--no-health-gate"]);
    assert_eq!(node.leftover_temps(), Vec::<String>::new());

    plant(".kubeharden-kube-apiserver.yaml.tmp");
    let r = node.json(&["recover"]);
    assert_eq!(r["temps_removed"].as_array().map(Vec::len), Some(1), "{r}");
    assert_eq!(node.leftover_temps(), Vec::<String>::new());

    assert!(
        node.manifests.join(".keep").exists(),
        "foreign dotfile kept"
    );
    assert!(node.manifests.join("notes.txt").exists());
    let h = node.history(None);
    assert!(
        h.iter()
            .all(|v| !v["path"].as_str().unwrap().contains(".kubeharden-")),
        "a temp was recorded as a manifest: {h:?}"
    );
    node.ok(&["verify"]);
}

#[test]
fn journal_records_of_a_restore_follow_the_protocol_order() {
    let (node, _a, _b) = node_with_two_versions();
    let n = node.journal_records().len();
    let r = node.json(&["restore", APISERVER, "--version", "1", "--no-health-gate"]);
    let txn = r["transactions"][0]["txn"].as_u64().unwrap();
    let new: Vec<_> = node.journal_records().into_iter().skip(n).collect();
    let types: Vec<u8> = new.iter().map(|r| r.ty).collect();
    assert_eq!(
        types,
        vec![rec::BEGIN, rec::APPLIED, rec::VERSION, rec::COMMIT],
        "{new:?}"
    );
    assert!(new.iter().all(|r| r.txn == Some(txn)), "{new:?}");
}

#[test]
fn read_only_commands_leave_the_state_as_it_is() {
    let (node, _a, _b) = node_with_two_versions();
    node.append_line(APISERVER, "# unrecorded edit");
    let fp = node.durable_fingerprint();
    for args in [
        vec!["history"],
        vec!["show", APISERVER, "--version", "1"],
        vec!["diff", APISERVER, "1"],
        vec!["status"],
    ] {
        node.ok(&args);
    }
    assert_unchanged(&node, &fp, "read-only commands");
}

#[test]
fn restore_dry_run_prints_the_diff_and_changes_nothing() {
    let (node, _a, _b) = node_with_two_versions();
    let fp = node.durable_fingerprint();
    let out = node.ok(&["restore", APISERVER, "--version", "1", "--dry-run"]);
    assert!(
        out.stdout_text().contains("+    - --allow-privileged=true"),
        "{}",
        out.describe()
    );
    let j = node.json(&["restore", APISERVER, "--version", "1", "--dry-run"]);
    assert_eq!(j["transactions"][0]["status"], "dry_run", "{j}");
    assert_unchanged(&node, &fp, "restore --dry-run");
}

#[test]
fn restore_dry_run_over_an_outside_edit_changes_nothing() {
    let (node, _a, _b) = node_with_two_versions();
    node.append_line(APISERVER, "# unrecorded edit");
    let fp = node.durable_fingerprint();
    node.ok(&["restore", APISERVER, "--version", "1", "--dry-run"]);
    assert_unchanged(&node, &fp, "restore --dry-run");
}
