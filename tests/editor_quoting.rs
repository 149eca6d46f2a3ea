//! Issue 11, "Editor, cross-parser quoting": what the editor writes must mean the same to every
//! YAML parser (serde_norway here, PyYAML as a second, independent one), a JSON manifest is read
//! as JSON, and a file without a final line break keeps that shape.

use kubeharden::manifest::{container_argv, edit_flags, FlagEdit};
use std::path::{Path, PathBuf};
use std::process::Command;

fn set(name: &str, value: &str) -> FlagEdit {
    FlagEdit::Set {
        name: name.into(),
        value: value.into(),
    }
}

fn unset(name: &str) -> FlagEdit {
    FlagEdit::Unset { name: name.into() }
}

fn pod_with(lists: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n  namespace: kube-system\n\
         spec:\n  containers:\n  - name: kube-apiserver\n{lists}    image: registry.k8s.io/kube-apiserver:v1.33.0\n"
    )
}

/// A python3 that can `import yaml`: the system one, or a venv under target/ with PyYAML
/// installed from PyPI. `None` (with the reason) when neither can be had.
fn pyyaml() -> Result<PathBuf, String> {
    let works = |py: &Path| {
        Command::new(py)
            .args(["-c", "import yaml"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    let system = PathBuf::from("python3");
    if works(&system) {
        return Ok(system);
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pyyaml-venv");
    let py = venv.join("bin/python3");
    if !works(&py) {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .map_err(|e| format!("no python3 ({e})"))?;
        if !made.success() {
            return Err("python3 -m venv failed".into());
        }
        let pip = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "pyyaml==6.0.2"])
            .status()
            .map_err(|e| format!("pip: {e}"))?;
        if !pip.success() || !works(&py) {
            return Err("pip install pyyaml failed".into());
        }
    }
    Ok(py)
}

/// Skips with a printed reason, or fails where CI makes the cross-check mandatory.
fn skip(reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("PyYAML cross-check is mandatory under CI: {reason}");
    }
    eprintln!("SKIPPED: PyYAML cross-check: {reason}");
}

/// Every container's `command ++ args` as PyYAML reads the document, as JSON; or PyYAML's error.
fn pyyaml_argvs(py: &Path, doc: &[u8]) -> Result<serde_json::Value, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.yaml");
    std::fs::write(&file, doc).unwrap();
    let script = "import json, sys, yaml\n\
        d = yaml.safe_load(open(sys.argv[1], 'rb'))\n\
        out = [(c.get('command') or []) + (c.get('args') or []) for c in d['spec']['containers']]\n\
        print(json.dumps(out))\n";
    let o = Command::new(py)
        .args(["-c", script])
        .arg(&file)
        .output()
        .unwrap();
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&o.stdout).unwrap())
}

/// The same, as kubeharden (serde_norway) reads it.
fn own_argvs(doc: &[u8]) -> serde_json::Value {
    let v: serde_norway::Value = serde_norway::from_slice(doc).unwrap();
    let containers = v["spec"]["containers"].as_sequence().unwrap();
    let names: Vec<String> = containers
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    serde_json::json!(names
        .iter()
        .map(|n| container_argv(doc, Some(n)).unwrap().argv())
        .collect::<Vec<_>>())
}

const INDICATOR_VALUES: &[&str] = &[
    "x?y", "?", "x#y", "a,b", "[x]", "{x}", "x:y", "x: y", "a]b", "a}b", "&x", "*x", "!x", "%x",
    "@x", "`x", "|x", ">x", "'x'", "\"x\"", "x y",
];

#[test]
fn also_found_flow_item_with_a_flow_indicator_is_quoted() {
    let doc = pod_with("    command: [kube-apiserver, --a=1]\n");
    let out = edit_flags(doc.as_bytes(), None, &[set("b", "x?y")]).unwrap();
    let text = String::from_utf8(out.bytes.clone()).unwrap();
    assert!(
        text.contains("    command: [kube-apiserver, --a=1, '--b=x?y']\n"),
        "{text}"
    );
    // Each flow indicator, `:` `?` `#` and a space must be quoted in a flow list.
    for v in INDICATOR_VALUES
        .iter()
        .filter(|v| v.contains(['?', '#', ',', '[', ']', '{', '}', ':', ' ']))
    {
        let out = edit_flags(doc.as_bytes(), None, &[set("b", v)]).unwrap();
        let text = String::from_utf8(out.bytes).unwrap();
        let line = text.lines().find(|l| l.contains("command:")).unwrap();
        let item = line.rsplit(", ").next().unwrap().trim_end_matches(']');
        assert!(
            item.starts_with('\'') || item.starts_with('"'),
            "{v:?} left plain in a flow list: {line}"
        );
    }
}

#[test]
fn also_found_pyyaml_and_serde_norway_read_the_edits_alike() {
    let py = match pyyaml() {
        Ok(p) => p,
        Err(reason) => return skip(&reason),
    };
    let flow = pod_with("    command: [kube-apiserver, --a=1]\n");
    let block = pod_with("    command:\n    - kube-apiserver\n    - --a=1\n");
    let mut checked = 0;
    for doc in [&flow, &block] {
        for v in INDICATOR_VALUES {
            let out = edit_flags(doc.as_bytes(), None, &[set("b", v)]).unwrap();
            let theirs = pyyaml_argvs(&py, &out.bytes).unwrap_or_else(|e| {
                panic!(
                    "PyYAML refuses what we wrote for {v:?}: {e}\n{}",
                    String::from_utf8_lossy(&out.bytes)
                )
            });
            assert_eq!(theirs, own_argvs(&out.bytes), "value {v:?}");
            assert_eq!(theirs[0][2], format!("--b={v}"));
            checked += 1;
        }
    }
    // The reference manifests, with a flag that holds every indicator set on each.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/manifests");
    for dir in std::fs::read_dir(root).unwrap() {
        for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let input = std::fs::read(f.unwrap().path()).unwrap();
            let out = edit_flags(&input, None, &[set("b", "x?y,#z:[1]{2}")]).unwrap();
            assert_eq!(
                pyyaml_argvs(&py, &out.bytes).unwrap(),
                own_argvs(&out.bytes)
            );
            checked += 1;
        }
    }
    eprintln!("PyYAML agreed on {checked} edited manifests");
}

/// A kubeadm-like JSON manifest whose annotation (and one command item) hold a character above
/// U+FFFF written as a JSON surrogate-pair escape.
const JSON_POD: &str = r#"{
  "apiVersion": "v1",
  "kind": "Pod",
  "metadata": {
    "name": "kube-apiserver",
    "namespace": "kube-system",
    "annotations": {"note": "smile \ud83d\ude00"}
  },
  "spec": {
    "containers": [
      {
        "name": "kube-apiserver",
        "image": "registry.k8s.io/kube-apiserver:v1.33.0",
        "command": ["kube-apiserver", "--a=1", "--motd=\ud83d\ude00"]
      }
    ]
  }
}
"#;

#[test]
fn also_found_json_manifest_with_a_surrogate_pair_escape_is_accepted() {
    let argv = container_argv(JSON_POD.as_bytes(), None).unwrap();
    assert_eq!(argv.argv()[2], "--motd=\u{1f600}");
    let out = edit_flags(JSON_POD.as_bytes(), None, &[set("b", "x?y")]).unwrap();
    let text = String::from_utf8(out.bytes).unwrap();
    // Still JSON, and only the command line changed.
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["spec"]["containers"][0]["command"],
        serde_json::json!(["kube-apiserver", "--a=1", "--motd=\u{1f600}", "--b=x?y"])
    );
    assert_eq!(v["metadata"]["annotations"]["note"], "smile \u{1f600}");
    assert!(text.contains(r#""note": "smile \ud83d\ude00""#), "{text}");
    // The escaped item was not rewritten.
    assert!(text.contains(r#""--motd=\ud83d\ude00""#), "{text}");
    // Removing the item that holds the escape works as well.
    let out = edit_flags(JSON_POD.as_bytes(), None, &[unset("motd")]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.bytes).unwrap();
    assert_eq!(
        v["spec"]["containers"][0]["command"],
        serde_json::json!(["kube-apiserver", "--a=1"])
    );
}

#[test]
fn also_found_removing_the_last_item_keeps_a_missing_final_newline() {
    for eol in ["\n", "\r\n"] {
        let doc = format!(
            "apiVersion: v1{eol}kind: Pod{eol}metadata:{eol}  name: kube-apiserver{eol}spec:{eol}  containers:{eol}  - name: kube-apiserver{eol}    image: k8s/x{eol}    command:{eol}    - kube-apiserver{eol}    - --a=1{eol}    - --b=2"
        );
        let out = edit_flags(doc.as_bytes(), None, &[unset("b")]).unwrap();
        let text = String::from_utf8(out.bytes).unwrap();
        assert_eq!(text, doc[..doc.len() - format!("{eol}    - --b=2").len()]);
        assert!(text.ends_with("- --a=1"), "{text:?}");
        // Removing the last two items, and then a flag added at the end, keep it too.
        let out = edit_flags(doc.as_bytes(), None, &[unset("a"), unset("b")]).unwrap();
        let text = String::from_utf8(out.bytes).unwrap();
        assert!(text.ends_with("- kube-apiserver"), "{text:?}");
        let out = edit_flags(doc.as_bytes(), None, &[unset("b"), set("c", "3")]).unwrap();
        let text = String::from_utf8(out.bytes).unwrap();
        assert!(
            text.ends_with(&format!("- --a=1{eol}    - --c=3")),
            "{text:?}"
        );
    }
    // A file that ends with a line break keeps it.
    let doc = pod_with("    command:\n    - kube-apiserver\n    - --a=1\n");
    let out = edit_flags(doc.as_bytes(), None, &[unset("a")]).unwrap();
    assert!(out.bytes.ends_with(b"\n"));
}

/// The fuzz oracle's idea on the reference manifests: the bytes outside the edited list's lines
/// (from `inspect::lists`) are the input's, and no item written into a flow list is a plain
/// scalar holding a flow indicator.
#[test]
fn also_found_edits_keep_every_byte_outside_the_edited_lists() {
    use kubeharden::manifest::inspect;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/manifests");
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for dir in std::fs::read_dir(root).unwrap() {
        for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            inputs.push(std::fs::read(f.unwrap().path()).unwrap());
        }
    }
    inputs.push(pod_with("    command: [kube-apiserver, --a=1]  # flow\n").into_bytes());
    inputs.push(JSON_POD.as_bytes().to_vec());
    let edits = [
        vec![set("b", "x?y")],
        vec![set("profiling", "false")],
        vec![unset("a"), set("c", "{1}")],
    ];
    for input in &inputs {
        let lists = inspect::lists(input, None).unwrap();
        let command = lists.iter().find(|l| l.key == "command").unwrap();
        for e in &edits {
            let out = edit_flags(input, None, e).unwrap();
            if !out.changed {
                continue;
            }
            let r = &command.lines;
            assert!(out.bytes.starts_with(&input[..r.start]));
            assert!(out.bytes.ends_with(&input[r.end..]));
            let after = inspect::lists(&out.bytes, None).unwrap();
            for l in after.iter().filter(|l| l.flow) {
                for i in l.items.iter().filter(|i| i.plain) {
                    assert!(
                        !i.raw.bytes().any(|c| b",[]{}:?#".contains(&c)),
                        "{:?}",
                        i.raw
                    );
                }
            }
        }
    }
}
