//! The fleet formats of `audit` and `status`, read by independent means:
//!
//! * `--format kube-bench-json` of a stock kubeadm v1.30 node and of the same node after
//!   `remediate --all`, validated against kube-bench's field list (aquasecurity/kube-bench
//!   check/controls.go and check/check.go: names, JSON types, counts that add up) and against
//!   the node's own `audit -o json`;
//! * `--format prometheus` parsed by a text-exposition-format parser written here (always
//!   runs) and checked by Prometheus's own `promtool check metrics` (skips, saying why, when
//!   promtool is not installed; `KUBEHARDEN_REQUIRE_PROMTOOL=1` makes that a failure);
//! * `--textfile DIR` writes exactly DIR/kubeharden.prom, the same text, no temporary left.

mod gate_support;

use gate_support::{free_port, manifests, KubeDir};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};

/// A kubeadm v1.30 node's files (no pods run: these formats read files only) and a state dir.
struct Node {
    kd: KubeDir,
    state: tempfile::TempDir,
}

impl Node {
    fn stock() -> Node {
        let kd = KubeDir::new();
        let client = free_port();
        let servers = format!("--etcd-servers=https://127.0.0.1:{client}");
        for m in [
            manifests::etcd(&kd, client, free_port(), free_port()),
            manifests::apiserver(&kd, free_port(), &[&servers]),
            manifests::controller_manager(&kd, free_port()),
            manifests::scheduler(&kd, free_port()),
        ] {
            kd.install(&m);
        }
        Node {
            kd,
            state: tempfile::tempdir().unwrap(),
        }
    }

    /// `kubeharden --state-dir … --manifests-dir … --kubernetes-dir … ARGS`: (exit, stdout).
    fn run(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_kubeharden"))
            .env_remove("KUBEHARDEN_STATE_DIR")
            .env_remove("KUBEHARDEN_MANIFESTS_DIR")
            .env_remove("KUBEHARDEN_KUBERNETES_DIR")
            .arg("--state-dir")
            .arg(self.state.path())
            .arg("--manifests-dir")
            .arg(self.kd.manifests())
            .arg("--kubernetes-dir")
            .arg(self.kd.root())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubeharden");
        let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
        let code = out.status.code().unwrap_or(-1);
        assert!(
            matches!(code, 0 | 1),
            "kubeharden {args:?} exited {code}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (code, stdout)
    }

    fn hardened() -> Node {
        let n = Node::stock();
        let (code, out) = n.run(&["-o", "json", "remediate", "--all", "--no-health-gate"]);
        assert_eq!(code, 0, "{out}");
        n
    }

    /// `audit -o json`.
    fn audit(&self) -> Value {
        serde_json::from_str(&self.run(&["-o", "json", "audit"]).1).unwrap()
    }
}

// ---------------------------------------------------------------- kube-bench's field list

/// JSON types, as Go's encoding/json writes the struct fields.
#[derive(Clone, Copy, Debug)]
enum Ty {
    Str,
    Int,
    Bool,
    StrList,
    List,
}

fn is(v: &Value, t: Ty) -> bool {
    match t {
        Ty::Str => v.is_string(),
        Ty::Int => v.as_u64().is_some(),
        Ty::Bool => v.is_boolean(),
        Ty::StrList => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        Ty::List => v.is_array(),
    }
}

use Ty::*;

/// `Controls` (check/controls.go): `detected_version` is `omitempty`; the embedded `Summary`'s
/// fields are inlined.
const CONTROLS: &[(&str, Ty)] = &[
    ("id", Str),
    ("version", Str),
    ("text", Str),
    ("node_type", Str),
    ("tests", List),
    ("total_pass", Int),
    ("total_fail", Int),
    ("total_warn", Int),
    ("total_info", Int),
];
const CONTROLS_OPTIONAL: &[(&str, Ty)] = &[("detected_version", Str)];
/// `Group`.
const GROUP: &[(&str, Ty)] = &[
    ("section", Str),
    ("type", Str),
    ("pass", Int),
    ("fail", Int),
    ("warn", Int),
    ("info", Int),
    ("desc", Str),
    ("results", List),
];
/// `Check` (check/check.go); `AuditEnv`, `AuditConfig`, `IsMultiple` have no JSON tag and
/// appear under their Go names; `reason` is `omitempty`.
const CHECK: &[(&str, Ty)] = &[
    ("test_number", Str),
    ("test_desc", Str),
    ("audit", Str),
    ("AuditEnv", Str),
    ("AuditConfig", Str),
    ("type", Str),
    ("remediation", Str),
    ("test_info", StrList),
    ("status", Str),
    ("actual_value", Str),
    ("scored", Bool),
    ("IsMultiple", Bool),
    ("expected_result", Str),
];
const CHECK_OPTIONAL: &[(&str, Ty)] = &[("reason", Str)];
const SUMMARY: &[(&str, Ty)] = &[
    ("total_pass", Int),
    ("total_fail", Int),
    ("total_warn", Int),
    ("total_info", Int),
];

/// Exactly the fields of `required` (+ `optional`), each of its type.
fn fields(what: &str, v: &Value, required: &[(&str, Ty)], optional: &[(&str, Ty)]) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {v}"));
    for (k, t) in required {
        let f = obj
            .get(*k)
            .unwrap_or_else(|| panic!("{what}: no field {k:?}: {v}"));
        assert!(is(f, *t), "{what}.{k}: not {t:?}: {f}");
    }
    for (k, f) in obj {
        let known = required.iter().chain(optional).find(|(n, _)| n == k);
        let (_, t) = known.unwrap_or_else(|| panic!("{what}: field {k:?} kube-bench has not"));
        assert!(is(f, *t), "{what}.{k}: not {t:?}: {f}");
    }
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap()
}

/// Validates a kube-bench document: field names and types; every status one of kube-bench's;
/// group counts = its results; controls totals = its groups; Totals = the controls.
/// Returns test_number → status.
fn validate_kube_bench(doc: &Value) -> BTreeMap<String, String> {
    let top = doc.as_object().expect("document is an object");
    let keys: Vec<&str> = top.keys().map(String::as_str).collect();
    assert_eq!(keys, ["Controls", "Totals"]);
    fields("Totals", &doc["Totals"], SUMMARY, &[]);
    let mut statuses = BTreeMap::new();
    let mut totals = [0u64; 4];
    for c in doc["Controls"].as_array().expect("Controls[]") {
        fields("Controls", c, CONTROLS, CONTROLS_OPTIONAL);
        assert!(
            ["master", "etcd"].contains(&c["node_type"].as_str().unwrap()),
            "{}",
            c["node_type"]
        );
        let mut ctl = [0u64; 4];
        for g in c["tests"].as_array().unwrap() {
            fields("Group", g, GROUP, &[]);
            let mut grp = [0u64; 4];
            for r in g["results"].as_array().unwrap() {
                fields("Check", r, CHECK, CHECK_OPTIONAL);
                let st = r["status"].as_str().unwrap();
                let i = ["PASS", "FAIL", "WARN", "INFO"]
                    .iter()
                    .position(|s| *s == st)
                    .unwrap_or_else(|| panic!("status {st:?}"));
                grp[i] += 1;
                let id = r["test_number"].as_str().unwrap();
                assert!(
                    id.starts_with(&format!("{}.", g["section"].as_str().unwrap()))
                        || c["id"] == "2",
                    "{id} in group {}",
                    g["section"]
                );
                assert_eq!(r["test_info"][0], r["remediation"], "{id}");
                assert!(
                    statuses.insert(id.to_string(), st.to_string()).is_none(),
                    "{id} twice"
                );
            }
            assert_eq!(
                [n(g, "pass"), n(g, "fail"), n(g, "warn"), n(g, "info")],
                grp,
                "group {}",
                g["section"]
            );
            for i in 0..4 {
                ctl[i] += grp[i];
            }
        }
        assert_eq!(
            [
                n(c, "total_pass"),
                n(c, "total_fail"),
                n(c, "total_warn"),
                n(c, "total_info")
            ],
            ctl
        );
        for i in 0..4 {
            totals[i] += ctl[i];
        }
    }
    let t = &doc["Totals"];
    assert_eq!(
        [
            n(t, "total_pass"),
            n(t, "total_fail"),
            n(t, "total_warn"),
            n(t, "total_info")
        ],
        totals
    );
    statuses
}

fn kube_bench_of(node: &Node) -> Value {
    let (_, text) = node.run(&["audit", "--format", "kube-bench-json"]);
    let doc: Value = serde_json::from_str(&text).expect("kube-bench-json is JSON");
    // -o json gives the same document.
    let (_, j) = node.run(&["-o", "json", "audit", "--format", "kube-bench-json"]);
    let again: Value = serde_json::from_str(&j).unwrap();
    assert!(
        same_but_for_processes(&again, &doc),
        "-o json differs from --format kube-bench-json:\n{again}\n{doc}"
    );
    doc
}

/// Equal, except for texts that describe running processes: other tests run stand-in
/// components on the same machine, which the audit sees in /proc and may start or stop between
/// the two runs.
fn same_but_for_processes(a: &Value, b: &Value) -> bool {
    let about_processes = |s: &str| s.contains("(pid ") || s.contains("/proc");
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_but_for_processes(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_but_for_processes(v, w))
        }
        (Value::String(x), Value::String(y)) => x == y || about_processes(x) || about_processes(y),
        _ => a == b,
    }
}

fn assert_matches_audit(doc: &Value, audit: &Value) {
    let statuses = validate_kube_bench(doc);
    let ours: BTreeMap<String, String> = audit["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().into(),
                c["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        statuses, ours,
        "per check, the same verdicts as audit -o json"
    );
    let s = &audit["summary"];
    let t = &doc["Totals"];
    for k in ["pass", "fail", "warn", "info"] {
        assert_eq!(t[format!("total_{k}")], s[k], "{k}");
    }
    for c in doc["Controls"].as_array().unwrap() {
        assert_eq!(c["version"], audit["benchmark"]);
        assert_eq!(c["detected_version"], "1.30");
    }
}

#[test]
fn kube_bench_json_of_a_stock_and_a_hardened_node_has_kube_benchs_fields() {
    let stock = Node::stock();
    let doc = kube_bench_of(&stock);
    assert_matches_audit(&doc, &stock.audit());
    assert!(
        n(&doc["Totals"], "total_fail") > 0,
        "a stock node fails checks"
    );
    assert_eq!(doc["Controls"][0]["id"], "1");
    assert_eq!(
        doc["Controls"][0]["text"],
        "Control Plane Security Configuration"
    );
    assert_eq!(doc["Controls"][1]["node_type"], "etcd");

    let hard = Node::hardened();
    let hdoc = kube_bench_of(&hard);
    assert_matches_audit(&hdoc, &hard.audit());
    assert!(
        n(&hdoc["Totals"], "total_pass") > n(&doc["Totals"], "total_pass"),
        "hardening turns checks to PASS"
    );
    // A manual check without tests reads as kube-bench writes it.
    let manual = hdoc["Controls"][0]["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["results"].as_array().unwrap())
        .find(|r| r["type"] == "manual")
        .expect("a type: manual check");
    assert_eq!(manual["status"], "WARN");
    assert_eq!(manual["scored"], false);
}

// ---------------------------------------------------------------- the exposition format

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn valid_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

fn valid_label_name(s: &str) -> bool {
    valid_metric_name(s) && !s.contains(':') && !s.starts_with("__")
}

/// `{a="x",b="y\"z"}` → labels; the rest of the line after `}`.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("no {")?;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = rest[..eq].trim();
        if !valid_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut chars = rest[eq + 1..].char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err("label value not quoted".into());
        }
        let mut value = String::new();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((i, '"')) => break eq + 1 + i + 1,
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &rest[end..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// A strict parser of the text exposition format (version 0.0.4) as node_exporter's textfile
/// collector reads it: HELP/TYPE at most once per family and before its samples, a family's
/// samples together, valid names, escaped label values, float values, no duplicate series.
fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = BTreeSet::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut series = BTreeSet::new();
    let mut out = Vec::new();
    if !text.ends_with('\n') {
        return Err("no final newline".into());
    }
    for (i, line) in text.lines().enumerate() {
        let err = |m: String| format!("line {}: {m}: {line:?}", i + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            let words: Vec<&str> = c.trim_start().splitn(3, ' ').collect();
            match words.as_slice() {
                ["HELP", name, _] | ["TYPE", name, _] => {
                    if !valid_metric_name(name) {
                        return Err(err("bad name".into()));
                    }
                    if done.contains(*name) || out.iter().any(|s: &Sample| s.name == *name) {
                        return Err(err("HELP/TYPE after the family's samples".into()));
                    }
                    if words[0] == "TYPE" {
                        if !["counter", "gauge", "histogram", "summary", "untyped"]
                            .contains(&words[2])
                        {
                            return Err(err("bad type".into()));
                        }
                        if typed.insert(name.to_string(), words[2].into()).is_some() {
                            return Err(err("TYPE twice".into()));
                        }
                    } else if !helped.insert(name.to_string()) {
                        return Err(err("HELP twice".into()));
                    }
                }
                _ => {} // a comment
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err("no value".into()))?;
        let name = &line[..name_end];
        if !valid_metric_name(name) {
            return Err(err("bad metric name".into()));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(err)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut vals = rest.split_whitespace();
        let v = vals.next().ok_or_else(|| err("no value".into()))?;
        let value: f64 = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| err(format!("bad value {v:?}")))?,
        };
        if let Some(ts) = vals.next() {
            ts.parse::<i64>().map_err(|_| err("bad timestamp".into()))?;
        }
        if vals.next().is_some() {
            return Err(err("trailing text".into()));
        }
        if current.as_deref() != Some(name) {
            if let Some(c) = current.take() {
                done.insert(c);
            }
            if done.contains(name) {
                return Err(err("family's samples not together".into()));
            }
            current = Some(name.to_string());
        }
        if !series.insert((name.to_string(), labels.clone())) {
            return Err(err("duplicate series".into()));
        }
        out.push(Sample {
            name: name.into(),
            labels,
            value,
        });
    }
    Ok(out)
}

#[test]
fn the_parser_refuses_what_the_collector_refuses() {
    let ok = "# HELP a x\n# TYPE a gauge\na{l=\"q\\\"\\\\\\n\"} 1\na{l=\"r\"} 2.5\n";
    let s = parse_exposition(ok).unwrap();
    assert_eq!(s[0].labels["l"], "q\"\\\n");
    for bad in [
        "a 1",                                   // no newline
        "a{l=\"x} 1\n",                          // unterminated
        "a{l=x} 1\n",                            // unquoted
        "a 1\na 2\n",                            // duplicate series
        "a 1\nb 1\na{x=\"1\"} 1\n",              // family split
        "a 1\n# TYPE a gauge\n",                 // TYPE after samples
        "# TYPE a gauge\n# TYPE a gauge\na 1\n", // TYPE twice
        "1a 1\n",                                // bad name
        "a one\n",                               // bad value
        "a{l=\"\\x\"} 1\n",                      // bad escape
        "a{__l=\"x\"} 1\n",                      // reserved label name
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}

/// The samples of `name`, by the values of `label`.
fn by_label(samples: &[Sample], name: &str, label: &str) -> BTreeMap<String, f64> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| (s.labels[label].clone(), s.value))
        .collect()
}

fn single(samples: &[Sample], name: &str) -> f64 {
    let v: Vec<&Sample> = samples.iter().filter(|s| s.name == name).collect();
    assert_eq!(v.len(), 1, "{name}: {v:?}");
    v[0].value
}

/// The metrics say what the audit and status say.
fn assert_metrics(text: &str, audit: &Value, status: &Value) {
    let samples = parse_exposition(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for name in [
        "kubeharden_check_status",
        "kubeharden_checks",
        "kubeharden_drift_files",
        "kubeharden_incomplete_transactions",
        "kubeharden_last_transaction_timestamp_seconds",
        "kubeharden_waivers_expired",
    ] {
        assert!(text.contains(&format!("# HELP {name} ")), "{name} HELP");
        assert!(
            text.contains(&format!("# TYPE {name} gauge\n")),
            "{name} TYPE"
        );
    }
    let checks: BTreeMap<String, (String, String)> = samples
        .iter()
        .filter(|s| s.name == "kubeharden_check_status")
        .map(|s| {
            assert_eq!(s.value, 1.0);
            (
                s.labels["id"].clone(),
                (s.labels["status"].clone(), s.labels["benchmark"].clone()),
            )
        })
        .collect();
    let want: BTreeMap<String, (String, String)> = audit["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().into(),
                (
                    c["status"].as_str().unwrap().into(),
                    audit["benchmark"].as_str().unwrap().into(),
                ),
            )
        })
        .collect();
    assert_eq!(checks, want);
    let counts = by_label(&samples, "kubeharden_checks", "status");
    for (k, st) in [
        ("pass", "PASS"),
        ("fail", "FAIL"),
        ("warn", "WARN"),
        ("info", "INFO"),
    ] {
        assert_eq!(
            counts[st],
            audit["summary"][k].as_u64().unwrap() as f64,
            "{st}"
        );
    }
    let len = |k: &str| status[k].as_array().map_or(0, Vec::len) as f64;
    assert_eq!(single(&samples, "kubeharden_drift_files"), len("drift"));
    assert_eq!(
        single(&samples, "kubeharden_incomplete_transactions"),
        len("incomplete")
    );
    assert_eq!(single(&samples, "kubeharden_waivers_expired"), 0.0);
    let last = by_label(
        &samples,
        "kubeharden_last_transaction_timestamp_seconds",
        "status",
    );
    match status["last_txn"]["status"].as_str() {
        None => assert!(last.is_empty()),
        Some(st) => {
            let at = chrono::DateTime::parse_from_rfc3339(
                status["last_txn"]["ended_at"].as_str().unwrap(),
            )
            .unwrap();
            assert_eq!(last.len(), 1);
            assert!((last[st] - at.timestamp_millis() as f64 / 1000.0).abs() < 0.001);
        }
    }
}

/// `promtool check metrics` on `text`: None when promtool is not installed (and not required).
fn promtool(text: &str) -> Option<()> {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        if std::env::var("KUBEHARDEN_REQUIRE_PROMTOOL").as_deref() == Ok("1") {
            panic!("KUBEHARDEN_REQUIRE_PROMTOOL=1 but promtool is not installed (apt-get install prometheus)");
        }
        eprintln!("SKIPPED promtool check: promtool not installed (apt-get install prometheus); the parser test ran");
        return None;
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(())
}

#[test]
fn prometheus_metrics_of_audit_and_status_parse_and_say_what_audit_and_status_say() {
    for node in [Node::stock(), Node::hardened()] {
        let audit = node.audit();
        let status: Value = serde_json::from_str(&node.run(&["-o", "json", "status"]).1).unwrap();
        let (acode, from_audit) = node.run(&["audit", "--format", "prometheus"]);
        assert_eq!(
            acode,
            i32::from(audit["summary"]["fail"].as_u64() != Some(0))
        );
        let (scode, from_status) = node.run(&["status", "--format", "prometheus"]);
        assert_eq!(scode, 0, "status exits 0 whatever the audit says");
        assert_eq!(
            from_audit, from_status,
            "either command writes the whole file"
        );
        assert_metrics(&from_audit, &audit, &status);
        promtool(&from_audit);

        // --textfile: DIR/kubeharden.prom, nothing else left in DIR.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let (_, said) = node.run(&["status", "--textfile", d]);
        let file = dir.path().join("kubeharden.prom");
        assert_eq!(said, format!("wrote {}\n", file.display()));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), from_status);
        node.run(&["audit", "--textfile", d]);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), from_audit);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["kubeharden.prom"]);
    }
}

/// `kubeharden_waivers_expired` counts the hardening file's waivers past their date; a waiver
/// still in force turns its FAIL into WARN in `kubeharden_check_status`.
#[test]
fn prometheus_counts_expired_waivers_of_the_hardening_file() {
    let node = Node::stock();
    let file = node.kd.node_root().join("hardening.yaml");
    let metrics = |expires: &str| {
        std::fs::write(
            &file,
            format!(
                "apiVersion: kubeharden.io/v1alpha1\nkind: HardeningConfiguration\nwaivers:\n\
                 - check: \"1.2.15\"\n  reason: profiling is scraped by our tooling\n  expires: \"{expires}\"\n\
                 - check: \"1.3.2\"\n  reason: same for the controller manager\n  expires: \"{expires}\"\n"
            ),
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let (_, text) = node.run(&["audit", "-f", f, "--format", "prometheus"]);
        let samples = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        promtool(&text);
        let status = by_label(
            &samples
                .iter()
                .filter(|s| s.labels.get("id").is_some_and(|i| i == "1.2.15"))
                .cloned()
                .collect::<Vec<_>>(),
            "kubeharden_check_status",
            "status",
        );
        (single(&samples, "kubeharden_waivers_expired"), status)
    };
    let (expired, status) = metrics("2001-01-01");
    assert_eq!(expired, 2.0);
    assert_eq!(
        status.keys().collect::<Vec<_>>(),
        ["FAIL"],
        "an expired waiver does not count"
    );
    let (expired, status) = metrics("2099-12-31");
    assert_eq!(expired, 0.0);
    assert_eq!(status.keys().collect::<Vec<_>>(), ["WARN"], "waived");
}

#[test]
fn formats_that_cannot_be_one_json_document_refuse_o_json() {
    let node = Node::stock();
    for args in [
        &["-o", "json", "audit", "--format", "prometheus"][..],
        &["-o", "json", "status", "--format", "prometheus"],
        &["audit", "--format", "junit", "--textfile", "/tmp"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kubeharden"))
            .arg("--state-dir")
            .arg(node.state.path())
            .arg("--manifests-dir")
            .arg(node.kd.manifests())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
