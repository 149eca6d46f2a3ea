//! `kubeharden kubeadm -- upgrade apply v1.33.0`: a hardened kubeadm v1.30 node (the kubelet
//! simulator running the fake components and the real etcd) is "upgraded" by the kubeadm
//! stand-in (examples/kubeadm_standin.rs: kubeadm's backup/rename dance with the reference
//! v1.33.0 manifests as its output), and must come out hardened again: every enforced check
//! passes, at most one restart per component for the re-hardening, each file's history reads
//! hardened → kubeadm's → re-hardened. Also: a flag the new version refuses is isolated; kubeadm
//! failing applies nothing; SIGKILL at each step of the wrapper, then `recover`, leaves a
//! consistent state; and the two-command hooks (`snapshot` before, `apply` after) work too.

mod desired_support;
mod gate_support;

use desired_support::{
    is_manifest_check, start_counts, wrapper, Node, Plane, HEALTH_TIMEOUT, PODS, RISKY,
};
use gate_support::etcd_or_skip;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

const HARDENING: &str =
    "components:\n  kube-apiserver:\n    set:\n      tls-min-version: VersionTLS12\n";

fn origins(node: &Node, file: &str) -> Vec<String> {
    node.history(file)
        .iter()
        .map(|v| v["origin"].as_str().unwrap().to_string())
        .collect()
}

/// Every enforced (automated, not risky) manifest check passes, and audit -f exits 0.
fn assert_enforced_pass(node: &Node, ctx: &str) {
    let (code, checks, _) = node.audit(&[]);
    for (id, c) in &checks {
        if !is_manifest_check(id) || c["type"] != "automated" || RISKY.contains(&id.as_str()) {
            continue;
        }
        assert_eq!(c["status"], "PASS", "{ctx}: {id}: {c}");
    }
    // audit -f exits 0 unless an enforced check fails; only file ownership checks (1.1.x) may
    // still fail, where the node lacks the user they want (etcd:etcd).
    let failing: Vec<&String> = checks
        .iter()
        .filter(|(_, c)| c["status"] == "FAIL")
        .map(|(id, _)| id)
        .collect();
    assert!(
        code == 0 || failing.iter().all(|id| id.starts_with("1.1.")),
        "{ctx}: audit exit {code}, failing {failing:?}"
    );
}

/// Harden with `apply`, then prove a second `apply` changes nothing.
fn harden(plane: &Plane, sim: &gate_support::Sim) {
    let node = &plane.node;
    let r = node.run(&["apply", "--health-timeout", HEALTH_TIMEOUT]);
    assert_eq!(r.code, 0, "first apply: {}", r.dump());
    assert_eq!(r.json["changed"], true, "{}", r.dump());
    let s0 = start_counts(sim);
    let again = node.run(&["apply", "--health-timeout", HEALTH_TIMEOUT]);
    assert_eq!(again.code, 0, "{}", again.dump());
    assert_eq!(again.json["changed"], false, "{}", again.dump());
    assert_eq!(
        again.json["transactions"],
        serde_json::json!([]),
        "{}",
        again.dump()
    );
    assert_eq!(again.json["restarts"], 0);
    for c in again.json["components"].as_array().unwrap() {
        assert_eq!(c["status"], "unchanged", "{c}");
    }
    let text = node.run_text(&["apply"]);
    assert!(text.stdout.contains("nothing to do"), "{}", text.dump());
    assert_eq!(
        start_counts(sim),
        s0,
        "a converged apply restarted something"
    );
}

#[test]
fn upgrade_through_the_wrapper_rehardens_every_enforced_check_with_one_restart_per_component() {
    if !etcd_or_skip("upgrade_through_the_wrapper") {
        return;
    }
    let plane = Plane::new();
    let node = &plane.node;
    node.write_hardening(HARDENING);
    let sim = plane.boot();
    harden(&plane, &sim);
    assert_enforced_pass(node, "after hardening");
    let hardened: BTreeMap<&str, String> = PODS
        .iter()
        .map(|p| (*p, node.read(&format!("{p}.yaml"))))
        .collect();
    let new = plane.v133();
    let s0 = start_counts(&sim);
    let r = node.run_cmd(wrapper(
        node,
        new.path(),
        &["--health-timeout", HEALTH_TIMEOUT],
        &[],
    ));
    assert_eq!(r.code, 0, "{}", r.dump());
    eprintln!(
        "MEASURED wrapper wall time {:?}: kubeadm stand-in {} ms, re-hardening (apply, gated) {} ms",
        r.wall, r.json["kubeadm"]["wall_ms"], r.json["apply"]["wall_ms"]
    );
    let apply = &r.json["apply"];
    assert_eq!(apply["changed"], true, "{}", r.dump());
    // Only what kubeharden cannot fix (a directory's owner, 1.1.x) may still fail.
    let failing = r.json["audit"]["failing"].as_array().unwrap();
    assert!(
        failing
            .iter()
            .all(|f| f.as_str().unwrap().starts_with("1.1.")),
        "{}",
        r.dump()
    );
    assert_enforced_pass(node, "after the upgrade");
    assert!(node
        .read("kube-apiserver.yaml")
        .contains("image: registry.k8s.io/kube-apiserver:v1.33.0"));
    assert!(node
        .read("kube-apiserver.yaml")
        .contains("--tls-min-version=VersionTLS12"));
    // The re-hardening restarted each component at most once (kubeadm's own restarts aside).
    let mut rehardening_restarts = 0;
    for c in apply["components"].as_array().unwrap() {
        let n = c["restarts"].as_u64().unwrap();
        assert!(n <= 1, "{c}");
        rehardening_restarts += n;
    }
    let s1 = start_counts(&sim);
    for p in PODS {
        let kubeadm = u64::from(
            hardened[p] != std::fs::read_to_string(new.path().join(format!("{p}.yaml"))).unwrap(),
        );
        let total = (s1[p] - s0[p]) as u64;
        assert!(
            total <= kubeadm + 1,
            "{p}: {total} starts ({s0:?} → {s1:?})"
        );
    }
    eprintln!(
        "MEASURED re-hardening restarts: {rehardening_restarts} (per component {:?}); kubeharden's share of wall time: see apply transactions",
        apply["components"].as_array().unwrap().iter().map(|c| (c["component"].clone(), c["restarts"].clone())).collect::<Vec<_>>()
    );
    // History: hardened (change) → kubeadm's (external, its bytes) → re-hardened (change).
    for p in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        let file = format!("{p}.yaml");
        let o = origins(node, &file);
        let ext = o
            .iter()
            .rposition(|x| x == "external")
            .unwrap_or_else(|| panic!("{file}: {o:?}"));
        assert!(o[..ext].contains(&"change".to_string()), "{file}: {o:?}");
        assert_eq!(o.last().unwrap(), "change", "{file}: {o:?}");
        let h = node.history(&file);
        let kubeadm_bytes = std::fs::read(new.path().join(&file)).unwrap();
        let shown = node.run_text(&["show", &file, "--version", &h[ext]["version"].to_string()]);
        assert_eq!(
            shown.stdout.as_bytes(),
            &kubeadm_bytes[..],
            "{file}: the external version is kubeadm's output"
        );
    }
    // The recorded reason names the command and the backup dir.
    let rec = r.json["kubeadm"]["recorded"].as_array().unwrap();
    assert!(!rec.is_empty());
    let reason = rec[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("kubeadm upgrade apply v1.33.0")
            && reason.contains("kubeadm-backup-manifests-"),
        "{reason}"
    );
    // status names what kubeadm removed and that it was re-hardened.
    let st = node.run_text(&["status"]);
    assert!(
        st.stdout.contains("kubeadm upgrade apply v1.33.0")
            && st.stdout.contains("kubeadm-backup-manifests-")
            && st.stdout.contains("re-hardened in v"),
        "{}",
        st.dump()
    );
    assert!(
        st.stdout.contains("changed outside kubeharden")
            && st.stdout.contains("--profiling=false (1.2.15)"),
        "{}",
        st.dump()
    );
}

#[test]
fn a_flag_the_new_version_refuses_is_isolated_and_the_rest_commits() {
    if !etcd_or_skip("refused_flag") {
        return;
    }
    let plane = Plane::new();
    let node = &plane.node;
    node.write_hardening(HARDENING);
    let sim = plane.boot();
    harden(&plane, &sim);
    let new = plane.v133();
    // "v1.33" no longer knows --tls-min-version (the stand-in component refuses it).
    sim.set_behavior("kube-apiserver", "refuse-flag tls-min-version\n");
    let r = node.run_cmd(wrapper(
        node,
        new.path(),
        &["--health-timeout", HEALTH_TIMEOUT],
        &[],
    ));
    assert_eq!(r.code, 3, "{}", r.dump());
    let apply = &r.json["apply"];
    let rolled: Vec<&str> = apply["rolled_back"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["check"].as_str().unwrap())
        .collect();
    assert_eq!(rolled, ["flag:tls-min-version"], "{}", r.dump());
    let api = apply["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == "kube-apiserver")
        .unwrap()
        .clone();
    assert_eq!(api["status"], "partial", "{api}");
    let y = node.read("kube-apiserver.yaml");
    assert!(
        !y.contains("tls-min-version"),
        "the refused flag is not on disk"
    );
    assert!(y.contains("--profiling=false"), "the rest committed");
    let (_, checks, _) = node.audit(&[]);
    for id in ["1.2.15", "1.2.16", "1.2.30"] {
        assert_eq!(checks[id]["status"], "PASS", "{id}");
    }
}

#[test]
fn kubeadm_failing_applies_nothing_and_its_status_is_reported() {
    let plane = Plane::new();
    let node = &plane.node;
    node.write_hardening(HARDENING);
    let r = node.run(&["apply", "--no-health-gate"]);
    assert_eq!(r.code, 0, "{}", r.dump());
    let before: Vec<String> = PODS
        .iter()
        .map(|p| node.read(&format!("{p}.yaml")))
        .collect();
    let log0 = node.run(&["log"]).stdout;
    let new = plane.v133();
    let r = node.run_cmd(wrapper(
        node,
        new.path(),
        &["--no-health-gate"],
        &[
            ("KUBEADM_STANDIN_FAIL_AT", "kube-controller-manager"),
            ("KUBEADM_STANDIN_WAIT_SECS", "0"),
        ],
    ));
    assert_eq!(r.code, 8, "{}", r.dump());
    assert_eq!(r.json["kubeadm"]["status"]["exit_code"], 1, "{}", r.dump());
    assert_eq!(r.json["apply"], Value::Null);
    let after: Vec<String> = PODS
        .iter()
        .map(|p| node.read(&format!("{p}.yaml")))
        .collect();
    assert_eq!(
        before, after,
        "kubeadm moved its backups back; kubeharden applied nothing"
    );
    assert_eq!(node.run(&["log"]).stdout, log0, "no transaction");
    // kubeadm left its backup dir (never pruned), and the stderr says it ran.
    assert!(r.stderr.contains("Rolling back"), "{}", r.dump());
}

#[test]
fn the_two_command_hooks_snapshot_then_apply_reharden_and_status_names_what_was_removed() {
    let plane = Plane::new();
    let node = &plane.node;
    node.write_hardening(HARDENING);
    assert_eq!(node.run(&["apply", "--no-health-gate"]).code, 0);
    let new = plane.v133();
    assert_eq!(node.run(&["snapshot"]).code, 0);
    // kubeadm run by existing automation, outside kubeharden.
    let st = std::process::Command::new(desired_support::standin())
        .args(["upgrade", "apply", "v1.33.0", "--yes"])
        .env("KUBEADM_STANDIN_NEW", new.path())
        .env("KUBEADM_STANDIN_KUBERNETES_DIR", node.kd.root())
        .env("KUBEADM_STANDIN_WAIT_SECS", "0")
        .output()
        .unwrap();
    assert!(st.status.success());
    assert_eq!(node.run(&["snapshot"]).code, 0);
    let s = node.run_text(&["status"]);
    assert!(
        s.stdout
            .contains("kube-apiserver.yaml changed outside kubeharden"),
        "{}",
        s.dump()
    );
    assert!(
        s.stdout.contains(": removed --") && s.stdout.contains("--profiling=false (1.2.15)"),
        "{}",
        s.dump()
    );
    assert!(
        s.stdout
            .contains("--tls-min-version=VersionTLS12 (hardening file)"),
        "{}",
        s.dump()
    );
    let r = node.run(&["apply", "--no-health-gate"]);
    assert_eq!(r.code, 0, "{}", r.dump());
    assert_eq!(r.json["changed"], true);
    assert_enforced_pass(node, "after snapshot + apply");
}

/// The manifests dir holds no kubeharden temp file.
fn no_temps(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".kubeharden"))
        .collect()
}

#[test]
fn sigkill_at_each_step_of_the_wrapper_then_recover_leaves_a_consistent_state() {
    // Every kubeadm.* point the binary lists, and the transaction points around them.
    let listed = Node::new().run_text(&["--list-crash-points"]);
    assert_eq!(listed.code, 0, "{}", listed.dump());
    let mut points: Vec<String> = listed
        .stdout
        .lines()
        .filter(|l| l.starts_with("kubeadm."))
        .map(String::from)
        .collect();
    assert!(points.len() >= 5, "{points:?}");
    points.extend(
        [
            "txn.external_version_recorded",
            "txn.begin_synced",
            "replace.renamed",
            "txn.applied_appended",
        ]
        .map(String::from),
    );
    for point in &points {
        let point = point.as_str();
        let plane = Plane::new();
        let node = &plane.node;
        node.write_hardening(HARDENING);
        assert_eq!(node.run(&["apply", "--no-health-gate"]).code, 0);
        let hardened: Vec<Vec<u8>> = PODS
            .iter()
            .map(|p| std::fs::read(node.kd.manifest_path(&format!("{p}.yaml"))).unwrap())
            .collect();
        let new = plane.v133();
        let kubeadm: Vec<Vec<u8>> = PODS
            .iter()
            .map(|p| std::fs::read(new.path().join(format!("{p}.yaml"))).unwrap())
            .collect();
        let r = node.run_cmd(wrapper(
            node,
            new.path(),
            &["--no-health-gate"],
            &[
                ("KUBEHARDEN_CRASH_AT", point),
                ("KUBEADM_STANDIN_WAIT_SECS", "0"),
            ],
        ));
        assert_eq!(r.code, -1, "{point}: killed: {}", r.dump());
        let rec = node.run(&["recover"]);
        assert_eq!(rec.code, 0, "{point}: {}", rec.dump());
        // Each manifest is the hardened content, kubeadm's, or a version kubeharden committed
        // (no half-written file), and every content on disk is a recorded version after a
        // snapshot.
        let snap = node.run(&["snapshot"]);
        assert_eq!(snap.code, 0, "{point}: {}", snap.dump());
        for (i, p) in PODS.iter().enumerate() {
            let file = format!("{p}.yaml");
            let now = std::fs::read(node.kd.manifest_path(&file)).unwrap();
            let h = node.history(&file);
            let cur = h.last().unwrap();
            assert!(
                now == hardened[i] || now == kubeadm[i] || cur["origin"] == "change",
                "{point}: {file} is a third content"
            );
            assert_eq!(
                cur["hash"],
                blake3::hash(&now).to_hex().to_string(),
                "{point}: {file}"
            );
        }
        // Killed inside the first re-hardening transaction (kube-apiserver's, before its
        // commit): recovery (revert) put back its before content, kubeadm's output.
        if point.starts_with("txn.") || point.starts_with("replace.") {
            let now = std::fs::read(node.kd.manifest_path("kube-apiserver.yaml")).unwrap();
            assert!(
                now == kubeadm[1],
                "{point}: kube-apiserver.yaml is not kubeadm's output after revert"
            );
        }
        assert!(
            no_temps(&node.kd.manifests()).is_empty(),
            "{point}: temps left"
        );
        let v = node.run(&["verify"]);
        assert_eq!(v.code, 0, "{point}: {}", v.dump());
        let st = node.run(&["status"]);
        assert_eq!(st.json["incomplete"], serde_json::json!([]), "{point}");
        // Every version shows byte-identically.
        for p in PODS {
            let file = format!("{p}.yaml");
            for ver in node.history(&file) {
                let s = node.run_text(&["show", &file, "--version", &ver["version"].to_string()]);
                assert_eq!(s.code, 0, "{point}");
                assert_eq!(
                    blake3::hash(s.stdout.as_bytes()).to_hex().to_string(),
                    ver["hash"].as_str().unwrap(),
                    "{point}: {file} v{}",
                    ver["version"]
                );
            }
        }
        // Rerunning the hook converges: every enforced check passes.
        let a = node.run(&["apply", "--no-health-gate"]);
        assert_eq!(a.code, 0, "{point}: {}", a.dump());
        assert_enforced_pass(node, point);
    }
}
