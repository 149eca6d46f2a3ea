//! The hardening file and `apply` without running pods (`--no-health-gate`; the gated paths
//! are in tests/kubeadm_upgrade.rs): idempotence, waivers (active, expired, unused), selection
//! (exclude, risky opt-in), extra flags, operator-provided files, strict parsing, `hardening
//! init [--from-history]`, and the exports rendered the way kubeadm renders manifests.

mod desired_support;
mod gate_support;

use desired_support::{is_manifest_check, Node, Plane, RISKY};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const NG: &str = "--no-health-gate";

fn argv(yaml: &str) -> Vec<String> {
    gate_support::manifests::argv_of(yaml)
}

/// Every regular file under `dir` with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                todo.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn manifests_of(node: &Node) -> BTreeMap<String, String> {
    [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ]
    .iter()
    .map(|p| (p.to_string(), node.read(&format!("{p}.yaml"))))
    .collect()
}

#[test]
fn apply_twice_the_second_run_changes_nothing_and_dry_run_changes_nothing() {
    let plane = Plane::new();
    let node = &plane.node;
    node.write_hardening("");
    let before = tree(node.kd.root());
    let dry = node.run(&["apply", "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.dump());
    assert_eq!(dry.json["dry_run"], true);
    assert_eq!(dry.json["changed"], true, "{}", dry.dump());
    assert_eq!(tree(node.kd.root()), before, "--dry-run wrote to the node");
    let r = node.run(&["apply", NG]);
    assert_eq!(r.code, 0, "{}", r.dump());
    assert_eq!(r.json["changed"], true);
    let api = r.json["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == "kube-apiserver")
        .unwrap()
        .clone();
    assert_eq!(api["status"], "committed", "{api}");
    assert!(
        api["applied"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == "1.2.15"),
        "{api}"
    );
    // The durable state (journal, objects); the catalog is derived data its reader may touch.
    let durable = |p: &Path| -> BTreeMap<PathBuf, Vec<u8>> {
        tree(p)
            .into_iter()
            .filter(|(k, _)| !k.to_string_lossy().contains("catalog.sqlite"))
            .collect()
    };
    let state = durable(node.state.path());
    let on_disk = tree(node.kd.root());
    let again = node.run(&["apply", NG]);
    assert_eq!(again.code, 0, "{}", again.dump());
    assert_eq!(again.json["changed"], false, "{}", again.dump());
    assert_eq!(again.json["transactions"], serde_json::json!([]));
    assert!(again.json["components"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["status"] == "unchanged"));
    assert_eq!(
        tree(node.kd.root()),
        on_disk,
        "a converged apply changed the node"
    );
    assert_eq!(
        durable(node.state.path()),
        state,
        "a converged apply wrote to the state dir"
    );
    let text = node.run_text(&["apply", NG]);
    assert!(text.stdout.contains("nothing to do"), "{}", text.dump());
    // Every enforced manifest check passes; the risky ones were left alone.
    let (_, checks, _) = node.audit(&[]);
    for (id, c) in &checks {
        if is_manifest_check(id) && c["type"] == "automated" && !RISKY.contains(&id.as_str()) {
            assert_eq!(c["status"], "PASS", "{id}: {c}");
        }
    }
    assert_ne!(checks["1.2.5"]["status"], "PASS");
}

#[test]
fn waivers_active_expired_and_unused_in_audit_and_apply() {
    let plane = Plane::new();
    let node = &plane.node;
    node.write_hardening(
        "waivers:\n- check: \"1.2.15\"\n  reason: profiling needed for INC-7\n  expires: 2030-06-30\n  owner: sre\n\
         - check: \"1.2.7\"\n  reason: not needed\n",
    );
    // Active: the failing 1.2.15 is WARN with the reason, and alone it does not fail audit.
    let (code, checks, json) = node.audit(&["--check", "1.2.15,1.2.7"]);
    assert_eq!(code, 0, "{json}");
    let c = &checks["1.2.15"];
    assert_eq!(c["status"], "WARN", "{c}");
    assert_eq!(c["kube_bench_status"], "FAIL");
    assert!(
        c["notes"]
            .to_string()
            .contains("waived: profiling needed for INC-7 (until 2030-06-30)"),
        "{c}"
    );
    let states: BTreeMap<String, String> = json["hardening"]["waivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["check"].as_str().unwrap().to_string(),
                w["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(states["1.2.15"], "active");
    assert_eq!(
        states["1.2.7"], "unused",
        "a waiver on a passing check is unused"
    );
    let text = node.run_text(&["audit", "--check", "1.2.7"]);
    assert!(
        text.stdout.contains("waiver 1.2.7: unused"),
        "{}",
        text.dump()
    );
    // apply leaves the waived check alone.
    let r = node.run(&["apply", NG]);
    assert_eq!(r.code, 0, "{}", r.dump());
    assert!(!argv(&node.read("kube-apiserver.yaml")).contains(&"--profiling=false".to_string()));
    assert!(argv(&node.read("kube-scheduler.yaml")).contains(&"--profiling=false".to_string()));
    // Expired: counts as absent, is flagged, and audit fails again.
    let mut cmd = node.command(true, &["audit", "--check", "1.2.15"]);
    cmd.env("KUBEHARDEN_TODAY", "2030-07-01");
    let a = node.run_cmd(cmd);
    assert_eq!(a.code, 1, "{}", a.dump());
    let c = &a.json["checks"][0];
    assert_eq!(c["status"], "FAIL");
    assert!(
        c["notes"]
            .to_string()
            .contains("waiver expired on 2030-06-30"),
        "{c}"
    );
    assert_eq!(a.json["hardening"]["waivers"][0]["state"], "expired");
    assert!(a.stderr.contains("expired"), "{}", a.dump());
    // ... and apply enforces it then.
    let mut cmd = node.command(true, &["apply", NG]);
    cmd.env("KUBEHARDEN_TODAY", "2030-07-01");
    let r = node.run_cmd(cmd);
    assert_eq!(r.code, 0, "{}", r.dump());
    assert!(argv(&node.read("kube-apiserver.yaml")).contains(&"--profiling=false".to_string()));
}

#[test]
fn remediate_all_honours_the_file_and_explicit_checks_still_work() {
    let plane = Plane::new();
    let node = &plane.node;
    node.write_hardening("checks:\n  exclude: [\"1.3.2\"]\n  optIn: [\"1.2.1\"]\nwaivers:\n- check: \"1.4.1\"\n  reason: scheduler profiling kept\n");
    let r = node.run(&["remediate", "--all", NG]);
    assert_eq!(r.code, 0, "{}", r.dump());
    let api = argv(&node.read("kube-apiserver.yaml"));
    assert!(
        api.contains(&"--anonymous-auth=false".to_string()),
        "risky 1.2.1 opted in: {api:?}"
    );
    assert!(
        !argv(&node.read("kube-controller-manager.yaml"))
            .contains(&"--profiling=false".to_string()),
        "excluded"
    );
    assert!(
        !argv(&node.read("kube-scheduler.yaml")).contains(&"--profiling=false".to_string()),
        "waived"
    );
    let (_, checks, _) = node.audit(&[]);
    assert_eq!(checks["1.3.2"]["status"], "WARN");
    assert!(
        checks["1.3.2"]["notes"]
            .to_string()
            .contains("not enforced"),
        "{}",
        checks["1.3.2"]
    );
}

#[test]
fn extra_flags_and_operator_files_converge_and_stay_converged() {
    let plane = Plane::new();
    let node = &plane.node;
    let policy = node.etc.path().join("my-audit-policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n",
    )
    .unwrap();
    node.write_hardening(&format!(
        "components:\n  kube-apiserver:\n    set:\n      tls-min-version: VersionTLS13\n    unset: [enable-bootstrap-token-auth]\n\
         files:\n  auditPolicy: {}\n",
        policy.display()
    ));
    let r = node.run(&["apply", NG]);
    assert_eq!(r.code, 0, "{}", r.dump());
    let y = node.read("kube-apiserver.yaml");
    let a = argv(&y);
    assert!(
        a.contains(&"--tls-min-version=VersionTLS13".to_string()),
        "{a:?}"
    );
    assert!(
        !a.iter()
            .any(|x| x.starts_with("--enable-bootstrap-token-auth")),
        "{a:?}"
    );
    assert!(
        a.contains(&format!("--audit-policy-file={}", policy.display())),
        "{a:?}"
    );
    assert!(
        y.contains(&format!("path: {}", policy.display())) && y.contains("type: File"),
        "mounted: {y}"
    );
    assert!(
        !node.kd.path("audit-policy.yaml").exists(),
        "no policy generated"
    );
    assert_eq!(
        std::fs::read_to_string(&policy).unwrap(),
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"
    );
    let again = node.run(&["apply", NG]);
    assert_eq!(again.json["changed"], false, "{}", again.dump());
    // An operator file that is missing is bad input: nothing changed.
    std::fs::remove_file(&policy).unwrap();
    let before = manifests_of(node);
    let r = node.run(&["apply", NG]);
    assert_eq!(r.code, 2, "{}", r.dump());
    assert!(r.stderr.contains("does not exist"), "{}", r.dump());
    assert_eq!(manifests_of(node), before);
}

#[test]
fn strict_parsing_refuses_with_the_line_and_changes_nothing() {
    let cases = [
        (
            "checks:\n  optin: [\"1.2.1\"]\n",
            ":4:",
            "unknown field `optin`",
        ),
        (
            "waivers:\n- check: \"9.9.9\"\n  reason: x\n",
            ":4:",
            "unknown check id",
        ),
        (
            "components:\n  kube-apiserver:\n    set:\n      TLS_MIN: x\n",
            ":6:",
            "bad flag name",
        ),
        (
            "components:\n  kube-apiserver:\n    unset: [\"--profiling\"]\n",
            ":5:",
            "bad flag name",
        ),
        ("benchmark: cis-2.0\n", ":3:", "unknown benchmark"),
    ];
    for (body, line, what) in cases {
        let plane = Plane::new();
        let node = &plane.node;
        let h = node.write_hardening(body);
        let before = manifests_of(node);
        for args in [
            vec!["apply", NG],
            vec!["audit"],
            vec!["remediate", "--all", NG],
        ] {
            let r = node.run(&args);
            assert_eq!(r.code, 2, "{body} {args:?}: {}", r.dump());
            let want = format!("{}{line}", h.display());
            assert!(
                r.stderr.contains(&want) && r.stderr.contains(what),
                "{body}: want {want} {what}: {}",
                r.dump()
            );
        }
        assert_eq!(manifests_of(node), before);
        assert!(
            !node.state.path().join("journal").exists(),
            "{body}: state touched"
        );
    }
}

#[test]
fn hardening_init_writes_the_defaults_and_from_history_captures_hand_run_changes() {
    let plane = Plane::new();
    let node = &plane.node;
    let r = node.run(&["hardening", "init"]);
    assert_eq!(r.code, 0, "{}", r.dump());
    let text = std::fs::read_to_string(node.hardening()).unwrap();
    assert!(text.starts_with("# kubeharden hardening file"), "{text}");
    assert!(
        text.contains("kind: HardeningConfiguration") && text.contains("1.2.1:"),
        "{text}"
    );
    assert_eq!(
        node.run(&["hardening", "init"]).code,
        2,
        "never overwrites without --force"
    );
    let dry = node.run(&["apply", "--dry-run"]);
    assert_eq!(dry.code, 0, "the generated file applies: {}", dry.dump());
    // Harden by hand, then capture.
    assert_eq!(
        node.run(&[
            "set",
            "kube-apiserver.yaml",
            "--flag",
            "tls-min-version=VersionTLS13",
            NG
        ])
        .code,
        0
    );
    assert_eq!(
        node.run(&["remediate", "--check", "1.2.1,1.2.15", NG]).code,
        0
    );
    assert_eq!(node.run(&["remediate", "--all", NG]).code, 0);
    let r = node.run(&["hardening", "init", "--from-history", "--force"]);
    assert_eq!(r.code, 0, "{}", r.dump());
    let captured = std::fs::read_to_string(node.hardening()).unwrap();
    assert!(captured.contains("optIn: [\"1.2.1\"]"), "{captured}");
    assert!(
        captured.contains("tls-min-version: \"VersionTLS13\""),
        "{captured}"
    );
    assert!(
        !captured.contains("profiling"),
        "1.2.15 is enforced by default, no extra: {captured}"
    );
    // The captured file reproduces the node on a fresh one.
    let fresh = Plane::new();
    std::fs::write(fresh.node.hardening(), &captured).unwrap();
    let r = fresh.node.run(&["apply", NG]);
    assert_eq!(r.code, 0, "{}", r.dump());
    // The same flags, up to the node's own paths and ports.
    let set = |n: &Node| -> BTreeSet<String> {
        argv(&n.read("kube-apiserver.yaml"))
            .into_iter()
            .map(|a| a.replace(&n.kd.root().display().to_string(), "KD"))
            .filter(|a| !a.contains("127.0.0.1") && !a.starts_with("--secure-port"))
            .collect()
    };
    assert_eq!(set(node), set(&fresh.node));
}

// ---------------------------------------------------------------- exports

/// Render a stock manifest the way kubeadm does: its flags (the defaults), extraArgs
/// replacing by name, `--name=value` sorted after the binary; extraVolumes as hostPath volumes
/// with mounts. The YAML is re-serialized, as kubeadm writes it.
fn render_kubeadm(
    stock: &str,
    args: &BTreeMap<String, String>,
    vols: &[Value],
    patch: Option<&Value>,
) -> String {
    let mut doc: serde_norway::Value = serde_norway::from_str(stock).unwrap();
    let a = argv(stock);
    let mut flags: BTreeMap<String, String> = a[1..]
        .iter()
        .map(|f| {
            let f = f.trim_start_matches("--");
            let (n, v) = f.split_once('=').unwrap_or((f, ""));
            (n.to_string(), v.to_string())
        })
        .collect();
    for (n, v) in args {
        flags.insert(n.clone(), v.clone());
    }
    // Sorted by name, as kubeadmutil.ArgumentsToCommand does.
    let mut command: Vec<String> = flags.iter().map(|(n, v)| format!("--{n}={v}")).collect();
    command.insert(0, a[0].clone());
    if let Some(ops) = patch {
        // kubeadm applies patches after rendering: RFC 6902 test + remove on the command.
        for op in ops.as_array().unwrap() {
            let i: usize = op["path"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            match op["op"].as_str().unwrap() {
                "test" => assert_eq!(command[i], op["value"].as_str().unwrap(), "patch test op"),
                "remove" => {
                    command.remove(i);
                }
                o => panic!("op {o}"),
            }
        }
    }
    doc["spec"]["containers"][0]["command"] = serde_norway::to_value(&command).unwrap();
    for v in vols {
        let mount = serde_json::json!({"name": v["name"], "mountPath": v["mountPath"], "readOnly": v["readOnly"]});
        doc["spec"]["containers"][0]["volumeMounts"]
            .as_sequence_mut()
            .unwrap()
            .push(serde_norway::to_value(&mount).unwrap());
        let vol = serde_json::json!({"name": v["name"], "hostPath": {"path": v["hostPath"], "type": v["pathType"]}});
        doc["spec"]["volumes"]
            .as_sequence_mut()
            .unwrap()
            .push(serde_norway::to_value(&vol).unwrap());
    }
    serde_norway::to_string(&doc).unwrap()
}

/// extraArgs of a section as a map, from either API shape.
fn extra_args(sec: &Value) -> BTreeMap<String, String> {
    match &sec["extraArgs"] {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect(),
        Value::Array(l) => l
            .iter()
            .map(|a| {
                (
                    a["name"].as_str().unwrap().to_string(),
                    a["value"].as_str().unwrap().to_string(),
                )
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn export_then_render(body: &str, api: &str) {
    let plane = Plane::new();
    let node = &plane.node;
    node.write_hardening(body);
    let stock = manifests_of(node);
    let e = node.run(&["export", "kubeadm", "--api", api]);
    assert_eq!(e.code, 0, "{}", e.dump());
    let cc = e.json["documents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "ClusterConfiguration")
        .unwrap()
        .clone();
    assert_eq!(cc["apiVersion"], format!("kubeadm.k8s.io/{api}"));
    if api == "v1beta4" {
        assert!(cc["apiServer"]["extraArgs"].is_array());
    } else {
        assert!(cc["apiServer"]["extraArgs"].is_object());
    }
    let pdir = node.etc.path().join("patches");
    let p = node.run(&["export", "patches", pdir.to_str().unwrap()]);
    assert_eq!(p.code, 0, "{}", p.dump());
    let r = node.run(&["apply", NG]);
    assert_eq!(r.code, 0, "{}", r.dump());
    let rendered_dir = node.etc.path().join("rendered");
    std::fs::create_dir_all(&rendered_dir).unwrap();
    for (pod, sec) in [
        ("etcd", "etcd"),
        ("kube-apiserver", "apiServer"),
        ("kube-controller-manager", "controllerManager"),
        ("kube-scheduler", "scheduler"),
    ] {
        let section = if pod == "etcd" {
            &cc["etcd"]["local"]
        } else {
            &cc[sec]
        };
        let vols = section["extraVolumes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let names: BTreeSet<&str> = vols.iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert_eq!(
            names.len(),
            vols.len(),
            "{pod}: extraVolumes names are unique"
        );
        let patch_file = pdir.join(format!("{pod}0+json.json"));
        let patch: Option<Value> = std::fs::read(&patch_file)
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap());
        let out = render_kubeadm(&stock[pod], &extra_args(section), &vols, patch.as_ref());
        // kubeadm's argv equals the hardened manifest's, as a set.
        let hardened: BTreeSet<String> = argv(&node.read(&format!("{pod}.yaml")))
            .into_iter()
            .collect();
        let rendered: BTreeSet<String> = argv(&out).into_iter().collect();
        assert_eq!(rendered, hardened, "{pod}: rendered vs hardened argv");
        std::fs::write(rendered_dir.join(format!("{pod}.yaml")), out).unwrap();
    }
    // audit of the rendered manifests passes every enforced check.
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_kubeharden"));
    c.env("KUBEHARDEN_HARDENING_FILE", node.hardening())
        .args(["-o", "json", "--state-dir"])
        .arg(node.state.path())
        .arg("--manifests-dir")
        .arg(&rendered_dir)
        .arg("--kubernetes-dir")
        .arg(node.kd.root())
        .arg("audit");
    let out = c.output().unwrap();
    let a: Value = serde_json::from_slice(&out.stdout).unwrap();
    for chk in a["checks"].as_array().unwrap() {
        let id = chk["id"].as_str().unwrap();
        if is_manifest_check(id) && chk["type"] == "automated" && !RISKY.contains(&id) {
            assert_eq!(chk["status"], "PASS", "{id}: {chk}");
        }
    }
}

#[test]
fn export_kubeadm_v1beta4_rendered_the_kubeadm_way_passes_audit_with_the_hardened_argv() {
    export_then_render(
        "components:\n  kube-apiserver:\n    set:\n      tls-min-version: VersionTLS13\n",
        "v1beta4",
    );
}

#[test]
fn export_kubeadm_v1beta3_with_a_removed_default_needs_a_patch_and_the_patch_renders_it() {
    export_then_render(
        "components:\n  kube-apiserver:\n    unset: [enable-bootstrap-token-auth]\n",
        "v1beta3",
    );
}

#[test]
fn export_from_merges_into_the_current_cluster_configuration() {
    let plane = Plane::new();
    let node = &plane.node;
    node.write_hardening("");
    let from = node.etc.path().join("current.yaml");
    std::fs::write(&from, "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.30.14\napiServer:\n  extraArgs:\n  - name: profiling\n    value: \"true\"\n  - name: oidc-issuer-url\n    value: https://id.example\n  extraVolumes:\n  - name: oidc\n    hostPath: /etc/oidc\n    mountPath: /etc/oidc\n").unwrap();
    let e = node.run(&["export", "kubeadm", "--from", from.to_str().unwrap()]);
    assert_eq!(e.code, 0, "{}", e.dump());
    let cc = &e.json["documents"][0];
    assert_eq!(cc["kubernetesVersion"], "v1.30.14");
    let args = extra_args(&cc["apiServer"]);
    assert_eq!(args["oidc-issuer-url"], "https://id.example", "theirs kept");
    assert_eq!(args["profiling"], "false", "ours replaces theirs by name");
    let n = cc["apiServer"]["extraArgs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["name"] == "profiling")
        .count();
    assert_eq!(n, 1);
    assert!(cc["apiServer"]["extraVolumes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["name"] == "oidc"));
    let bad = node.run(&[
        "export",
        "kubeadm",
        "--api",
        "v1beta3",
        "--from",
        from.to_str().unwrap(),
    ]);
    assert_eq!(bad.code, 2, "{}", bad.dump());
}

#[test]
fn export_cluster_api_has_files_unique_volumes_a_secret_reference_and_post_commands() {
    let plane = Plane::new();
    let node = &plane.node;
    let enc = node.etc.path().join("encryption.yaml");
    std::fs::write(&enc, "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n      - name: k1\n        secret: c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=\n  - identity: {}\n").unwrap();
    node.write_hardening(&format!("files:\n  encryptionConfig: {}\n", enc.display()));
    let e = node.run(&[
        "export",
        "cluster-api",
        "--encryption-secret",
        "prod-kubeharden-enc",
    ]);
    assert_eq!(e.code, 0, "{}", e.dump());
    let spec = &e.json["kubeadmConfigSpec"];
    let files = spec["files"].as_array().unwrap();
    let by_path = |suffix: &str| {
        files
            .iter()
            .find(|f| f["path"].as_str().unwrap().ends_with(suffix))
            .cloned()
    };
    let policy = by_path("audit-policy.yaml").expect("audit policy file");
    assert!(policy["content"].as_str().unwrap().contains("kind: Policy"));
    let encf = by_path("encryption.yaml").expect("encryption config file");
    assert_eq!(encf["contentFrom"]["secret"]["name"], "prod-kubeharden-enc");
    assert!(encf.get("content").is_none());
    assert!(!e.stdout.contains("c2VjcmV0"), "the key is never inlined");
    let hf =
        by_path("/etc/kubeharden/hardening.yaml").expect("the hardening file on every machine");
    assert!(hf["content"].as_str().unwrap().contains("encryptionConfig"));
    let vols = spec["clusterConfiguration"]["apiServer"]["extraVolumes"]
        .as_array()
        .unwrap();
    let names: BTreeSet<&str> = vols.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), vols.len());
    assert!(vols
        .iter()
        .any(|v| v["hostPath"] == enc.display().to_string() && v["pathType"] == "File"));
    assert!(
        spec["clusterConfiguration"]["apiServer"]["extraArgs"].is_object(),
        "CAPI v1beta1: map"
    );
    let post: Vec<&str> = spec["postKubeadmCommands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        post[0].starts_with("kubeharden apply -f ") && post[1].starts_with("kubeharden audit -f "),
        "{post:?}"
    );
}
