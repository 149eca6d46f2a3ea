//! `kubeharden audit` end to end: the real binary on real files in a throw-away node (a temp
//! dir holding a manifests dir, a kubernetes dir and an etcd data dir), and fake running
//! components (a shell whose argv[0] is the component's name) for the running-process checks.
//!
//! The expected verdict tables were derived by hand from kube-bench's rules (the TSV in
//! /work/shared/reference/cis) applied to the stock kubeadm manifests, with kubeadm's file
//! modes and owners (manifests, kubeconfigs and keys 0600, certificates 0644, etcd data dir
//! 0700, everything root:root).

use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kubeharden");
const MANIFESTS: [&str; 4] = [
    "etcd.yaml",
    "kube-apiserver.yaml",
    "kube-controller-manager.yaml",
    "kube-scheduler.yaml",
];
/// A uid/gid with no name on the test host (ownership checks must fail).
const OTHER: u32 = 4321;

/// Tests that start fake components, or that need none running, take turns.
static PROCS: Mutex<()> = Mutex::new(());

fn procs_lock() -> std::sync::MutexGuard<'static, ()> {
    PROCS.lock().unwrap_or_else(|e| e.into_inner())
}

/// kube-bench's verdicts for the stock kubeadm v1.30.14 manifests (benchmark cis-1.11, chosen
/// from the image) on a node with kubeadm's modes and owners and no CNI files.
const EXPECTED_1_30: &str = "
1.1.1 PASS   manifest 0600 (bitmask 600)
1.1.2 PASS   root:root
1.1.3 PASS
1.1.4 PASS
1.1.5 PASS
1.1.6 PASS
1.1.7 PASS
1.1.8 PASS
1.1.9 WARN   manual; no CNI files -> empty output -> unscored fail
1.1.10 WARN  same
1.1.11 PASS  data dir 0700
1.1.12 FAIL  data dir root:root, rule wants etcd:etcd (kubeadm runs etcd as root)
1.1.13 PASS  admin.conf + super-admin.conf 0600
1.1.14 PASS
1.1.15 PASS
1.1.16 PASS
1.1.17 PASS
1.1.18 PASS
1.1.19 PASS  pki/ all root:root
1.1.20 PASS  *.crt 0644 (mask 644)
1.1.21 PASS  *.key 0600
1.2.1 WARN   --anonymous-auth absent (eq false needs the flag); manual
1.2.2 PASS   --token-auth-file absent (set: false)
1.2.3 WARN   NodeRestriction has no DenyServiceExternalIPs; manual
1.2.4 PASS   kubelet client cert+key present
1.2.5 FAIL   --kubelet-certificate-authority absent
1.2.6 PASS   Node,RBAC nothave AlwaysAllow
1.2.7 PASS   has Node
1.2.8 PASS   has RBAC
1.2.9 WARN   no EventRateLimit; manual
1.2.10 PASS  nothave AlwaysAdmit
1.2.11 WARN  no AlwaysPullImages; manual
1.2.12 PASS  --disable-admission-plugins absent
1.2.13 PASS  same
1.2.14 PASS  has NodeRestriction
1.2.15 FAIL  --profiling absent
1.2.16 FAIL  --audit-log-path absent
1.2.17 FAIL  --audit-log-maxage absent
1.2.18 FAIL  --audit-log-maxbackup absent
1.2.19 FAIL  --audit-log-maxsize absent
1.2.20 WARN  type: manual
1.2.21 PASS  --service-account-lookup absent (or-ed set: false)
1.2.22 PASS  --service-account-key-file present
1.2.23 PASS  etcd cert+key present
1.2.24 PASS  tls cert+key present
1.2.25 PASS  --client-ca-file present
1.2.26 PASS  --etcd-cafile present
1.2.27 WARN  --encryption-provider-config absent; manual
1.2.28 WARN  no encryption config -> empty output; manual
1.2.29 WARN  --tls-cipher-suites absent; manual
1.2.30 FAIL  --service-account-extend-token-expiration absent
1.3.1 WARN   --terminated-pod-gc-threshold absent; manual
1.3.2 FAIL   --profiling absent
1.3.3 PASS   --use-service-account-credentials=true (noteq false)
1.3.4 PASS   --service-account-private-key-file present
1.3.5 PASS   --root-ca-file present
1.3.6 PASS   --feature-gates absent
1.3.7 PASS   --bind-address=127.0.0.1
1.4.1 FAIL   --profiling absent
1.4.2 PASS   --bind-address=127.0.0.1
2.1 PASS     --cert-file and --key-file present
2.2 PASS     --client-cert-auth=true
2.3 PASS     --auto-tls absent
2.4 PASS     peer cert+key present
2.5 PASS     --peer-client-cert-auth=true
2.6 PASS     --peer-auto-tls absent
2.7 PASS     --trusted-ca-file present (manual, but tested)
";

/// The same for v1.33.0 (cis-1.12): kubeadm's flags did not change in between, and the two
/// benchmarks differ only in 1.2.29's allowlist, which the absent flag fails either way.
const EXPECTED_1_33: &str = "
1.1.1 PASS
1.1.2 PASS
1.1.3 PASS
1.1.4 PASS
1.1.5 PASS
1.1.6 PASS
1.1.7 PASS
1.1.8 PASS
1.1.9 WARN
1.1.10 WARN
1.1.11 PASS
1.1.12 FAIL
1.1.13 PASS
1.1.14 PASS
1.1.15 PASS
1.1.16 PASS
1.1.17 PASS
1.1.18 PASS
1.1.19 PASS
1.1.20 PASS
1.1.21 PASS
1.2.1 WARN
1.2.2 PASS
1.2.3 WARN
1.2.4 PASS
1.2.5 FAIL
1.2.6 PASS
1.2.7 PASS
1.2.8 PASS
1.2.9 WARN
1.2.10 PASS
1.2.11 WARN
1.2.12 PASS
1.2.13 PASS
1.2.14 PASS
1.2.15 FAIL
1.2.16 FAIL
1.2.17 FAIL
1.2.18 FAIL
1.2.19 FAIL
1.2.20 WARN
1.2.21 PASS
1.2.22 PASS
1.2.23 PASS
1.2.24 PASS
1.2.25 PASS
1.2.26 PASS
1.2.27 WARN
1.2.28 WARN
1.2.29 WARN
1.2.30 FAIL
1.3.1 WARN
1.3.2 FAIL
1.3.3 PASS
1.3.4 PASS
1.3.5 PASS
1.3.6 PASS
1.3.7 PASS
1.4.1 FAIL
1.4.2 PASS
2.1 PASS
2.2 PASS
2.3 PASS
2.4 PASS
2.5 PASS
2.6 PASS
2.7 PASS
";

fn table(s: &str) -> BTreeMap<String, String> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut w = l.split_whitespace();
            (w.next().unwrap().to_string(), w.next().unwrap().to_string())
        })
        .collect()
}

fn reference(version: &str) -> PathBuf {
    let local = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/manifests")
        .join(version);
    if MANIFESTS.iter().all(|m| local.join(m).is_file()) {
        return local;
    }
    PathBuf::from("/work/shared/reference/manifests").join(version)
}

fn set_mode(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn cni_networks_in_use() -> bool {
    Path::new("/var/lib/cni/networks").exists()
}

/// A throw-away control-plane node laid out as kubeadm does.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new(version: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let n = Node { dir };
        fs::create_dir_all(n.manifests()).unwrap();
        let src = reference(version);
        for m in MANIFESTS {
            let mut text = fs::read_to_string(src.join(m)).unwrap();
            if m == "etcd.yaml" {
                // Only the host side of the data volume moves; the argv stays stock.
                let host = format!(" path: {}\n", n.data().display());
                assert!(text.contains(" path: /var/lib/etcd\n"));
                text = text.replace(" path: /var/lib/etcd\n", &host);
            }
            n.write_manifest(m, &text);
        }
        let k = n.kube();
        fs::create_dir_all(k.join("pki/etcd")).unwrap();
        for f in [
            "admin.conf",
            "super-admin.conf",
            "scheduler.conf",
            "controller-manager.conf",
        ] {
            fs::write(k.join(f), "apiVersion: v1\nkind: Config\n").unwrap();
            set_mode(&k.join(f), 0o600);
        }
        for f in [
            "ca",
            "apiserver",
            "front-proxy-ca",
            "etcd/ca",
            "etcd/server",
            "etcd/peer",
        ] {
            fs::write(k.join(format!("pki/{f}.crt")), "cert").unwrap();
            set_mode(&k.join(format!("pki/{f}.crt")), 0o644);
            fs::write(k.join(format!("pki/{f}.key")), "key").unwrap();
            set_mode(&k.join(format!("pki/{f}.key")), 0o600);
        }
        fs::write(k.join("pki/sa.pub"), "pub").unwrap();
        fs::create_dir_all(n.data()).unwrap();
        set_mode(&n.data(), 0o700);
        n
    }

    fn manifests(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }

    fn kube(&self) -> PathBuf {
        self.dir.path().join("kubernetes")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("etcd-data")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn write_manifest(&self, name: &str, text: &str) {
        let p = self.manifests().join(name);
        fs::write(&p, text).unwrap();
        set_mode(&p, 0o600);
    }

    fn edit(&self, name: &str, f: impl FnOnce(String) -> String) {
        let text = fs::read_to_string(self.manifests().join(name)).unwrap();
        self.write_manifest(name, &f(text));
    }

    /// Adds command-line items to the kube-apiserver container (first and last).
    fn apiserver_flags(&self, first: &[&str], last: &[&str]) {
        self.edit("kube-apiserver.yaml", |t| {
            let items = |v: &[&str]| v.iter().map(|i| format!("    - {i}\n")).collect::<String>();
            let t = t.replacen(
                "    - kube-apiserver\n",
                &format!("    - kube-apiserver\n{}", items(first)),
                1,
            );
            let anchor = "    - --tls-private-key-file=/etc/kubernetes/pki/apiserver.key\n";
            assert!(t.contains(anchor));
            t.replacen(anchor, &format!("{anchor}{}", items(last)), 1)
        });
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(BIN)
            .args(["--state-dir", self.state().to_str().unwrap()])
            .args(["--manifests-dir", self.manifests().to_str().unwrap()])
            .args(["--kubernetes-dir", self.kube().to_str().unwrap()])
            .args(args)
            .env_remove("KUBEHARDEN_STATE_DIR")
            .env_remove("KUBEHARDEN_MANIFESTS_DIR")
            .env_remove("KUBEHARDEN_KUBERNETES_DIR")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    fn audit_json(&self, args: &[&str]) -> (i32, Value) {
        let mut a = vec!["-o", "json", "audit"];
        a.extend_from_slice(args);
        let (code, out, err) = self.run(&a);
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
        (code, v)
    }
}

fn statuses(v: &Value) -> BTreeMap<String, String> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn check<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id}"))
}

fn notes(c: &Value) -> String {
    c["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_table(v: &Value, expected: &str) {
    let mut want = table(expected);
    let got = statuses(v);
    if cni_networks_in_use() {
        // This host has CNI files: 1.1.9/1.1.10 depend on their modes.
        for id in ["1.1.9", "1.1.10"] {
            want.remove(id);
        }
    }
    let diff: Vec<String> = want
        .iter()
        .filter(|(id, s)| got.get(*id) != Some(*s))
        .map(|(id, s)| format!("{id}: want {s}, got {:?}", got.get(id)))
        .collect();
    assert!(diff.is_empty(), "verdicts differ:\n{}", diff.join("\n"));
    assert_eq!(got.len(), 67);
}

#[test]
fn stock_kubeadm_1_30_is_cis_1_11_with_kube_bench_verdicts() {
    let n = Node::new("kubeadm-v1.30.14");
    let (code, v) = n.audit_json(&[]);
    assert_eq!(v["benchmark"], "cis-1.11");
    assert_table(&v, EXPECTED_1_30);
    assert_eq!(code, 1, "FAILs give exit 1");
    let s = &v["summary"];
    let total: u64 = ["pass", "fail", "warn", "info"]
        .iter()
        .map(|k| s[k].as_u64().unwrap())
        .sum();
    assert_eq!(total, 67);
    if !cni_networks_in_use() {
        assert_eq!(
            (s["pass"].as_u64(), s["fail"].as_u64(), s["warn"].as_u64()),
            (Some(46), Some(10), Some(11))
        );
    }
    // Audit changes nothing and keeps no state.
    assert!(!n.state().exists());
}

#[test]
fn stock_kubeadm_1_33_is_cis_1_12_with_kube_bench_verdicts() {
    let n = Node::new("kubeadm-v1.33.0");
    let (code, v) = n.audit_json(&[]);
    assert_eq!(v["benchmark"], "cis-1.12");
    assert_table(&v, EXPECTED_1_33);
    assert_eq!(code, 1);
    // The remediator's view: 1.2.15's fix, manifest and source.
    let c = check(&v, "1.2.15");
    assert_eq!(c["source"], "manifest");
    assert_eq!(
        c["manifest"],
        n.manifests().join("kube-apiserver.yaml").to_str().unwrap()
    );
    assert_eq!(
        c["fix"][0],
        serde_json::json!({"action": "set_flag", "name": "profiling", "value": "false"})
    );
    assert_eq!(c["found"], "--profiling not set");
    assert!(check(&v, "1.2.5")["dangerous"].is_string());
    assert!(check(&v, "1.1.12")["remediation"]
        .as_str()
        .unwrap()
        .contains(n.data().to_str().unwrap()));
}

#[test]
fn json_shape_and_dash_o_json_equals_format_json() {
    let n = Node::new("kubeadm-v1.33.0");
    let (code, out, _) = n.run(&["audit", "--format", "json"]);
    assert_eq!(code, 1);
    let a: Value = serde_json::from_str(&out).unwrap();
    let (_, b) = n.audit_json(&[]);
    assert_eq!(statuses(&a), statuses(&b));
    assert_eq!(a["benchmark"], b["benchmark"]);
    for k in ["benchmark", "checks", "summary"] {
        assert!(a.get(k).is_some(), "{k}");
    }
    for k in ["pass", "fail", "warn", "info"] {
        assert!(a["summary"][k].is_u64(), "{k}");
    }
    for c in a["checks"].as_array().unwrap() {
        for k in [
            "id",
            "text",
            "status",
            "type",
            "component",
            "expected",
            "found",
            "remediation",
            "notes",
            "source",
        ] {
            assert!(c.get(k).is_some(), "{} lacks {k}", c["id"]);
        }
        assert!(["PASS", "FAIL", "WARN", "INFO"].contains(&c["status"].as_str().unwrap()));
        assert!(["automated", "manual"].contains(&c["type"].as_str().unwrap()));
        assert!(["manifest", "running", "file", "none"].contains(&c["source"].as_str().unwrap()));
    }
    assert_eq!(check(&a, "1.2.15")["component"], "apiserver");
    assert_eq!(check(&a, "2.1")["component"], "etcd");
    assert_eq!(check(&a, "1.1.1")["component"], "file");
    // -o json and a different --format disagree: usage error.
    let (code, _, err) = n.run(&["-o", "json", "audit", "--format", "junit"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn text_output_groups_by_section_without_colour_in_a_pipe() {
    let n = Node::new("kubeadm-v1.30.14");
    let (code, out, _) = n.run(&["audit"]);
    assert_eq!(code, 1);
    assert!(!out.contains('\x1b'), "no colour when stdout is a pipe");
    let pos = |s: &str| out.find(s).unwrap_or_else(|| panic!("{s} missing:\n{out}"));
    assert!(
        pos("[INFO] 1 Control Plane Security Configuration")
            < pos("[INFO] 1.1 Control Plane Node Configuration Files")
    );
    assert!(
        pos("[INFO] 1.2 API Server") < pos("[FAIL] 1.2.15 Ensure that the --profiling argument")
    );
    assert!(pos("[FAIL] 1.2.15") < pos("[INFO] 1.3 Controller Manager"));
    assert!(pos("[INFO] 2 Etcd Node Configuration") < pos("[PASS] 2.1 "));
    assert!(pos("== Remediations ==") < pos("== Summary =="));
    assert!(
        out.contains("10 checks FAIL") || cni_networks_in_use(),
        "{out}"
    );
}

/// A small well-formedness check: one root, balanced tags, quoted attributes, entities only.
fn assert_well_formed_xml(x: &str) {
    let body = x
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        .expect("XML declaration");
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut rest = body;
    let check_text = |t: &str| {
        let mut s = t;
        while let Some(i) = s.find('&') {
            let end = s[i..].find(';').expect("entity ends with ;");
            let ent = &s[i + 1..i + end];
            assert!(
                ["amp", "lt", "gt", "quot", "apos"].contains(&ent) || ent.starts_with('#'),
                "bad entity &{ent};"
            );
            s = &s[i + end + 1..];
        }
    };
    while let Some(i) = rest.find('<') {
        check_text(&rest[..i]);
        if !rest[..i].trim().is_empty() {
            assert!(!stack.is_empty(), "text outside the root");
        }
        let end = rest[i..].find('>').expect("tag ends") + i;
        let tag = &rest[i + 1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.trim()),
                "mismatched </{name}>"
            );
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name: String = tag.chars().take_while(|c| !c.is_whitespace()).collect();
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "tag {name:?}"
        );
        let mut attrs = tag[name.len()..].trim();
        while !attrs.is_empty() {
            let eq = attrs.find("=\"").expect("attribute =\"");
            let close = attrs[eq + 2..].find('"').expect("closing quote") + eq + 2;
            let value = &attrs[eq + 2..close];
            assert!(!value.contains('<'));
            check_text(value);
            attrs = attrs[close + 1..].trim_start();
        }
        if stack.is_empty() {
            roots += 1;
        }
        if !self_closing {
            stack.push(name);
        }
    }
    assert!(rest.trim().is_empty());
    assert!(stack.is_empty(), "unclosed {stack:?}");
    assert_eq!(roots, 1);
}

#[test]
fn junit_is_well_formed_with_one_testcase_per_check() {
    let n = Node::new("kubeadm-v1.33.0");
    // A note with markup characters in it must be escaped.
    n.apiserver_flags(&[], &["--profiling=true", "--profiling=\"<&>\"'"]);
    let (code, x, err) = n.run(&["audit", "--format", "junit"]);
    assert_eq!(code, 1, "{err}");
    assert_well_formed_xml(&x);
    let (_, v) = n.audit_json(&[]);
    let s = &v["summary"];
    assert_eq!(x.matches("<testcase ").count(), 67);
    assert_eq!(
        x.matches("<failure ").count() as u64,
        s["fail"].as_u64().unwrap()
    );
    assert_eq!(
        x.matches("<skipped ").count() as u64,
        s["warn"].as_u64().unwrap() + s["info"].as_u64().unwrap()
    );
    assert!(x.contains(
        "testcase name=\"1.2.15 Ensure that the --profiling argument is set to false (Automated)\""
    ));
}

#[test]
fn exit_code_is_1_only_with_a_fail() {
    let n = Node::new("kubeadm-v1.33.0");
    assert_eq!(n.run(&["audit", "--check", "1.2.2"]).0, 0, "PASS");
    assert_eq!(n.run(&["audit", "--check", "1.2.1"]).0, 0, "WARN only");
    assert_eq!(n.run(&["audit", "--check", "1.2.15"]).0, 1, "FAIL");
    assert_eq!(n.run(&["audit", "--check", "1.2.2,1.2.15"]).0, 1);
    let (code, v) = n.audit_json(&["--check", "1.4", "--check", "2.1"]);
    assert_eq!(code, 1);
    assert_eq!(
        statuses(&v).keys().cloned().collect::<Vec<_>>(),
        vec!["1.4.1", "1.4.2", "2.1"]
    );
    // Fixed, the same checks pass.
    n.apiserver_flags(&[], &["--profiling=false"]);
    assert_eq!(n.run(&["audit", "--check", "1.2.15"]).0, 0);
    // An unknown check is a usage error.
    assert_eq!(n.run(&["audit", "--check", "9.9.9"]).0, 2);
}

#[test]
fn benchmark_choice_and_variants() {
    let n = Node::new("kubeadm-v1.33.0");
    assert_eq!(n.run(&["audit", "--benchmark", "cis-1.10"]).0, 2);
    let (code, _, err) = n.run(&["audit", "--benchmark", "nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown benchmark"), "{err}");
    // A CBC suite is allowed by cis-1.11 and not by cis-1.12.
    n.apiserver_flags(
        &[],
        &["--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
    );
    let (_, a) = n.audit_json(&["--benchmark", "cis-1.11"]);
    let (_, b) = n.audit_json(&["--benchmark", "cis-1.12"]);
    assert_eq!(
        (a["benchmark"].as_str(), b["benchmark"].as_str()),
        (Some("cis-1.11"), Some("cis-1.12"))
    );
    let (sa, sb) = (statuses(&a), statuses(&b));
    let differ: Vec<&String> = sa.keys().filter(|k| sa[*k] != sb[*k]).collect();
    assert_eq!(differ, vec!["1.2.29"]);
    assert_eq!(
        (sa["1.2.29"].as_str(), sb["1.2.29"].as_str()),
        ("PASS", "WARN")
    );
    let expected = |v: &Value| check(v, "1.2.29")["expected"].as_str().unwrap().to_string();
    assert!(expected(&a).contains("_CBC_SHA") && !expected(&b).contains("_CBC_SHA"));
    for c in a["checks"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        if id != "1.2.29" {
            assert_eq!(c["expected"], check(&b, id)["expected"], "{id}");
        }
    }
    // The remediation's cipher list passes both.
    let fix = check(&a, "1.2.29")["fix"][0]["value"]
        .as_str()
        .unwrap()
        .to_string();
    n.edit("kube-apiserver.yaml", |t| {
        t.replace(
            "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            &format!("--tls-cipher-suites={fix}"),
        )
    });
    for bm in ["cis-1.11", "cis-1.12"] {
        let (_, v) = n.audit_json(&["--benchmark", bm, "--check", "1.2.29"]);
        assert_eq!(check(&v, "1.2.29")["status"], "PASS", "{bm}");
    }
}

#[test]
fn default_benchmark_follows_the_apiserver_image() {
    let n = Node::new("kubeadm-v1.33.0");
    let set_image = |tag: &str| {
        n.edit("kube-apiserver.yaml", |t| {
            let at = t.find("image: registry.k8s.io/kube-apiserver:").unwrap();
            let end = at + t[at..].find('\n').unwrap();
            format!(
                "{}image: registry.k8s.io/kube-apiserver:{tag}{}",
                &t[..at],
                &t[end..]
            )
        })
    };
    for (tag, want) in [
        ("v1.29.0", "cis-1.11"),
        ("v1.31.9", "cis-1.11"),
        ("v1.32.1", "cis-1.12"),
        ("v1.36.0", "cis-1.12"),
    ] {
        set_image(tag);
        let (_, v) = n.audit_json(&["--check", "1.2.2"]);
        assert_eq!(v["benchmark"], want, "{tag}");
    }
    set_image("v1.28.3");
    let (code, _, err) = n.run(&["audit"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cis-1.10") && err.contains("--benchmark"),
        "{err}"
    );
    let (code, v) = n.audit_json(&["--benchmark", "cis-1.11", "--check", "1.2.2"]);
    assert_eq!((code, v["benchmark"].as_str()), (0, Some("cis-1.11")));
}

#[test]
fn repeated_flag_follows_kubernetes_and_notes_kube_bench() {
    let n = Node::new("kubeadm-v1.33.0");
    n.apiserver_flags(&["--profiling=true"], &["--profiling=false"]);
    let (code, v) = n.audit_json(&["--check", "1.2.15"]);
    assert_eq!(code, 0);
    let c = check(&v, "1.2.15");
    assert_eq!(c["status"], "PASS");
    assert_eq!(c["kube_bench_status"], "FAIL");
    assert_eq!(c["found"], "--profiling=false");
    let text = notes(c);
    assert!(text.contains("occurs 2 times"), "{text}");
    assert!(text.contains("kube-bench would report FAIL"), "{text}");
}

#[test]
fn two_item_form_is_read_and_noted() {
    let n = Node::new("kubeadm-v1.33.0");
    n.apiserver_flags(
        &[],
        &[
            "--audit-log-path",
            "/var/log/kubernetes/audit/audit.log",
            "--audit-log-maxage",
            "\"30\"",
        ],
    );
    let (_, v) = n.audit_json(&["--check", "1.2.16,1.2.17"]);
    let path = check(&v, "1.2.16");
    assert_eq!(path["status"], "PASS");
    assert_eq!(
        path["found"],
        "--audit-log-path=/var/log/kubernetes/audit/audit.log"
    );
    assert_eq!(
        path["kube_bench_status"], "PASS",
        "presence only: same verdict"
    );
    assert!(notes(path).contains("two items"), "{}", notes(path));
    let age = check(&v, "1.2.17");
    assert_eq!(age["status"], "PASS");
    assert_eq!(
        age["kube_bench_status"], "FAIL",
        "kube-bench reads \"true\", not a number"
    );
    assert!(
        notes(age).contains("two items") && notes(age).contains("kube-bench would report FAIL")
    );
}

#[test]
fn substring_match_of_a_longer_flag_is_noted() {
    let n = Node::new("kubeadm-v1.33.0");
    n.apiserver_flags(&[], &["--encryption-provider-config-automatic-reload=true"]);
    let (_, v) = n.audit_json(&["--check", "1.2.27"]);
    let c = check(&v, "1.2.27");
    assert_eq!(
        (c["status"].as_str(), c["kube_bench_status"].as_str()),
        (Some("WARN"), Some("PASS"))
    );
    assert!(notes(c).contains("substring"), "{}", notes(c));
}

const ENC_AESCBC: &str = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources:\n      - secrets\n    providers:\n      - aescbc:\n          keys:\n            - name: key1\n              secret: c2VjcmV0IGlzIHNlY3VyZSwgb3IgaXMgaXQ/Cg==\n      - identity: {}\n";
const ENC_IDENTITY: &str = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - identity: {}\n      - aescbc:\n          keys: [{name: k, secret: c2VjcmV0}]\n";
/// secrets stay plaintext (identity first); configmaps are encrypted: kube-bench looks only at
/// the entry after the last `providers:` line.
const ENC_MIXED: &str = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - identity: {}\n  - resources: [configmaps]\n    providers:\n      - secretbox:\n          keys: [{name: k, secret: c2VjcmV0}]\n";

#[test]
fn encryption_providers_are_read_from_the_config_file() {
    let n = Node::new("kubeadm-v1.33.0");
    let host_dir = n.dir.path().join("enc");
    fs::create_dir_all(&host_dir).unwrap();
    n.apiserver_flags(
        &[],
        &["--encryption-provider-config=/etc/kubernetes/enc/config.yaml"],
    );
    n.edit("kube-apiserver.yaml", |t| {
        let t = t.replacen(
            "    volumeMounts:\n",
            "    volumeMounts:\n    - mountPath: /etc/kubernetes/enc\n      name: enc\n      readOnly: true\n",
            1,
        );
        t.replacen(
            "  volumes:\n",
            &format!("  volumes:\n  - hostPath:\n      path: {}\n      type: DirectoryOrCreate\n    name: enc\n", host_dir.display()),
            1,
        )
    });
    let audit = |cfg: Option<&str>| {
        match cfg {
            Some(c) => fs::write(host_dir.join("config.yaml"), c).unwrap(),
            None => {
                let _ = fs::remove_file(host_dir.join("config.yaml"));
            }
        }
        let (_, v) = n.audit_json(&["--check", "1.2.27,1.2.28"]);
        assert_eq!(check(&v, "1.2.27")["status"], "PASS");
        check(&v, "1.2.28").clone()
    };
    let c = audit(Some(ENC_AESCBC));
    assert_eq!(
        (c["status"].as_str(), c["kube_bench_status"].as_str()),
        (Some("PASS"), Some("PASS"))
    );
    assert!(
        c["found"].as_str().unwrap().starts_with("provider=aescbc"),
        "{c}"
    );
    assert_eq!(
        c["targets"][0],
        host_dir.join("config.yaml").to_str().unwrap()
    );
    let c = audit(Some(ENC_IDENTITY));
    assert_eq!(
        (c["status"].as_str(), c["kube_bench_status"].as_str()),
        (Some("WARN"), Some("WARN"))
    );
    let c = audit(Some(ENC_MIXED));
    assert_eq!(
        (c["status"].as_str(), c["kube_bench_status"].as_str()),
        (Some("WARN"), Some("PASS"))
    );
    assert!(notes(&c).contains("providers:"), "{}", notes(&c));
    let c = audit(Some("{not yaml: ["));
    assert_eq!(c["status"], "WARN");
    let c = audit(None);
    assert_eq!(
        (c["status"].as_str(), c["found"].as_str()),
        (Some("WARN"), Some("not found"))
    );
}

#[test]
fn file_checks_see_modes_owners_and_missing_files() {
    let n = Node::new("kubeadm-v1.30.14");
    let k = n.kube();
    set_mode(&n.manifests().join("kube-apiserver.yaml"), 0o644);
    chown(
        n.manifests().join("kube-scheduler.yaml"),
        Some(OTHER),
        Some(OTHER),
    )
    .unwrap();
    set_mode(&k.join("admin.conf"), 0o644);
    chown(k.join("super-admin.conf"), Some(OTHER), None).unwrap();
    fs::remove_file(k.join("scheduler.conf")).unwrap();
    chown(k.join("controller-manager.conf"), None, Some(OTHER)).unwrap();
    set_mode(&k.join("controller-manager.conf"), 0o400);
    chown(k.join("pki/etcd/peer.key"), Some(OTHER), Some(OTHER)).unwrap();
    set_mode(&k.join("pki/etcd/ca.crt"), 0o664);
    set_mode(&k.join("pki/sa.pub"), 0o600);
    set_mode(&k.join("pki/etcd/server.key"), 0o640);
    set_mode(&n.data(), 0o750);
    let (code, v) = n.audit_json(&["--check", "1.1"]);
    assert_eq!(code, 1);
    let want = "
        1.1.1 FAIL
        1.1.2 PASS
        1.1.3 PASS
        1.1.4 PASS
        1.1.5 PASS
        1.1.6 FAIL
        1.1.11 FAIL
        1.1.12 FAIL
        1.1.13 FAIL
        1.1.14 FAIL
        1.1.15 WARN
        1.1.16 WARN
        1.1.17 PASS
        1.1.18 FAIL
        1.1.19 FAIL
        1.1.20 WARN
        1.1.21 WARN";
    let got = statuses(&v);
    for (id, s) in table(want) {
        assert_eq!(got[&id], s, "{id}: {}", check(&v, &id));
    }
    assert_eq!(check(&v, "1.1.1")["found"], "permissions=644");
    assert_eq!(check(&v, "1.1.15")["found"], "not found");
    let failing = |id: &str| -> Vec<String> {
        check(&v, id)["failing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect()
    };
    let p = |s: &str| k.join(s).to_str().unwrap().to_string();
    assert_eq!(failing("1.1.13"), vec![p("admin.conf")]);
    assert_eq!(failing("1.1.14"), vec![p("super-admin.conf")]);
    assert_eq!(failing("1.1.19"), vec![p("pki/etcd/peer.key")]);
    assert_eq!(failing("1.1.20"), vec![p("pki/etcd/ca.crt")]);
    assert_eq!(failing("1.1.21"), vec![p("pki/etcd/server.key")]);
    assert_eq!(
        check(&v, "1.1.6")["manifest"],
        n.manifests().join("kube-scheduler.yaml").to_str().unwrap()
    );
    assert_eq!(
        check(&v, "1.1.11")["targets"][0],
        n.data().to_str().unwrap()
    );
    assert!(
        notes(check(&v, "1.1.11")).contains("hostPath"),
        "{}",
        notes(check(&v, "1.1.11"))
    );

    // etcd:etcd passes 1.1.12 where such a user and group exist.
    let etcd = (
        nix::unistd::User::from_name("etcd"),
        nix::unistd::Group::from_name("etcd"),
    );
    if let (Ok(Some(u)), Ok(Some(g))) = etcd {
        chown(n.data(), Some(u.uid.as_raw()), Some(g.gid.as_raw())).unwrap();
        let (_, v) = n.audit_json(&["--check", "1.1.12"]);
        assert_eq!(check(&v, "1.1.12")["status"], "PASS");
    }

    // Nothing at all: every file check is WARN "not found" (cli.md), no crash; kube-bench's
    // verdict (empty output fails the test) is kept beside it.
    fs::remove_dir_all(&k).unwrap();
    let (_, v) = n.audit_json(&["--check", "1.1.13,1.1.14,1.1.15,1.1.19,1.1.20,1.1.21"]);
    for (id, kb) in [
        ("1.1.13", "FAIL"),
        ("1.1.14", "FAIL"),
        ("1.1.15", "FAIL"),
        ("1.1.19", "FAIL"),
        ("1.1.20", "WARN"),
        ("1.1.21", "WARN"),
    ] {
        let c = check(&v, id);
        assert_eq!(
            (
                c["status"].as_str(),
                c["found"].as_str(),
                c["kube_bench_status"].as_str()
            ),
            (Some("WARN"), Some("not found"), Some(kb)),
            "{id}"
        );
    }
}

#[test]
fn symlinked_file_is_judged_by_its_target_with_a_note() {
    let n = Node::new("kubeadm-v1.33.0");
    let k = n.kube();
    fs::rename(k.join("admin.conf"), k.join("admin.conf.real")).unwrap();
    std::os::unix::fs::symlink(k.join("admin.conf.real"), k.join("admin.conf")).unwrap();
    let (_, v) = n.audit_json(&["--check", "1.1.13"]);
    let c = check(&v, "1.1.13");
    assert_eq!(
        (c["status"].as_str(), c["kube_bench_status"].as_str()),
        (Some("PASS"), Some("FAIL"))
    );
    assert!(notes(c).contains("symbolic link"), "{}", notes(c));
}

/// A fake running component: `/bin/sh` with argv[0] = `name`, so /proc shows
/// `name -c <loop> FLAGS…`; the component's reading skips `-c` and the script (not flags).
struct Fake(Child);

impl Fake {
    fn start(name: &str, flags: &[&str]) -> Fake {
        let child = Command::new("/bin/sh")
            .arg0(name)
            .args(["-c", "while :; do sleep 1; done"])
            .args(flags)
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmd.starts_with(name.as_bytes()) {
                break;
            }
            assert!(Instant::now() < deadline, "fake {name} did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Fake(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// pids of live processes whose argv[0] basename is `name`.
fn processes_named(name: &str) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv0 = cmd.split(|&b| b == 0).next().unwrap_or_default();
            argv0.rsplit(|&b| b == b'/').next() == Some(name.as_bytes())
        })
        .collect()
}

#[test]
fn running_process_that_differs_from_the_manifest_is_noted() {
    let _l = procs_lock();
    let n = Node::new("kubeadm-v1.33.0");
    n.apiserver_flags(&[], &["--profiling=false"]);
    let fake = Fake::start(
        "kube-apiserver",
        &["--profiling=true", "--secure-port=6443"],
    );
    let (code, v) = n.audit_json(&["--check", "1.2.15,1.2.16"]);
    let c = check(&v, "1.2.15");
    assert_eq!(
        (c["status"].as_str(), c["source"].as_str()),
        (Some("PASS"), Some("manifest")),
        "the verdict is the manifest's"
    );
    assert_eq!(code, 1, "1.2.16 still fails");
    let text = notes(c);
    let want = format!(
        "manifest: --profiling=false, running (pid {}): --profiling=true",
        fake.pid()
    );
    assert!(text.contains(&want), "{text}");
    assert!(text.contains("kubelet has not restarted the pod"), "{text}");
    let view = c["running"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["pid"] == fake.pid())
        .expect("running view");
    assert_eq!(view["status"], "FAIL");
    // 1.2.16 reads a flag the fake does not differ on: no note about this process.
    let other = notes(check(&v, "1.2.16"));
    assert!(!other.contains(&format!("pid {}", fake.pid())), "{other}");
    // The text form says it too.
    let (_, out, _) = n.run(&["audit", "--check", "1.2.15"]);
    assert!(out.contains(&want), "{out}");
}

#[test]
fn running_process_is_read_when_there_is_no_manifest() {
    let _l = procs_lock();
    let n = Node::new("kubeadm-v1.33.0");
    fs::remove_file(n.manifests().join("kube-scheduler.yaml")).unwrap();
    let before = processes_named("kube-scheduler");
    let fake = Fake::start(
        "kube-scheduler",
        &["--profiling=false", "--bind-address=127.0.0.1"],
    );
    let (_, v) = n.audit_json(&["--check", "1.4"]);
    if !before.is_empty() && before.iter().min() < Some(&fake.pid()) {
        eprintln!("another kube-scheduler runs on this host ({before:?}); skipping the source=running assertions");
        return;
    }
    for id in ["1.4.1", "1.4.2"] {
        let c = check(&v, id);
        assert_eq!(
            (c["status"].as_str(), c["source"].as_str()),
            (Some("PASS"), Some("running")),
            "{c}"
        );
        assert!(notes(c).contains("no manifest"), "{}", notes(c));
    }
    assert_eq!(
        v["checks"].as_array().unwrap().len(),
        2,
        "only 1.4 selected"
    );
}

#[test]
fn missing_manifests_give_not_found_never_a_crash() {
    let _l = procs_lock();
    let n = Node::new("kubeadm-v1.33.0");
    // No manifests in the folder (a missing folder is an error instead: issue 12 item 8, see
    // tests/operator_safety.rs).
    for e in fs::read_dir(n.manifests()).unwrap().flatten() {
        fs::remove_file(e.path()).unwrap();
    }
    let (code, v) = n.audit_json(&["--benchmark", "cis-1.12"]);
    assert_eq!(code, 1);
    for c in v["checks"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        let scored = c["scored"].as_bool().unwrap();
        if c["source"] == "none" && id != "1.2.20" {
            let want = if scored { "FAIL" } else { "WARN" };
            assert_eq!(
                (c["status"].as_str(), c["found"].as_str()),
                (Some(want), Some("not found")),
                "{id}"
            );
        }
    }
    if processes_named("etcd").is_empty() {
        for id in ["2.1", "2.3", "2.7"] {
            let c = check(&v, id);
            assert_eq!(c["source"], "none", "{id}");
        }
        assert_eq!(
            check(&v, "2.3")["status"],
            "FAIL",
            "set: false does not pass without a process"
        );
        assert_eq!(check(&v, "1.1.11")["found"], "not found");
    }
    for id in ["1.1.1", "1.1.7"] {
        assert_eq!(check(&v, id)["found"], "not found", "{id}");
    }
    // Without a manifest the default benchmark cannot be derived: cis-1.12, said on stdout.
    let (_, v) = n.audit_json(&["--check", "1.2.2"]);
    assert_eq!(v["benchmark"], "cis-1.12");
    assert!(v["benchmark_reason"]
        .as_str()
        .unwrap()
        .contains("--benchmark"));
}

#[test]
fn etcd_env_fallback_and_go_flag_spelling() {
    let n = Node::new("kubeadm-v1.33.0");
    n.edit("etcd.yaml", |t| {
        let t = t.replace("    - --client-cert-auth=true\n", "")
            .replace("    - --peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt\n", "    - -peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt\n");
        t.replacen("    image: registry.k8s.io/etcd", "    env:\n    - name: ETCD_CLIENT_CERT_AUTH\n      value: \"true\"\n    image: registry.k8s.io/etcd", 1)
    });
    let (_, v) = n.audit_json(&["--check", "2"]);
    let c = check(&v, "2.2");
    assert_eq!(
        (c["status"].as_str(), c["found"].as_str()),
        (
            Some("PASS"),
            Some("ETCD_CLIENT_CERT_AUTH=true (environment)")
        )
    );
    let c = check(&v, "2.4");
    assert_eq!(
        (c["status"].as_str(), c["kube_bench_status"].as_str()),
        (Some("PASS"), Some("FAIL")),
        "{c}"
    );
}
