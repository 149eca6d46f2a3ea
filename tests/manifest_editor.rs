//! Table tests of the manifest flag editor: every reference manifest, and one variant per
//! source shape the editor must handle (or refuse).

use std::path::{Path, PathBuf};

use kubeharden::manifest::{
    container_argv, edit_flags, parse_flag_arg, validate_flag_name, validate_flag_value,
    EditOutcome, FlagEdit, ManifestError,
};

fn set(name: &str, value: &str) -> FlagEdit {
    FlagEdit::Set {
        name: name.into(),
        value: value.into(),
    }
}

fn unset(name: &str) -> FlagEdit {
    FlagEdit::Unset { name: name.into() }
}

fn run(doc: &str, container: Option<&str>, edits: &[FlagEdit]) -> EditOutcome {
    let out = edit_flags(doc.as_bytes(), container, edits)
        .unwrap_or_else(|e| panic!("edit failed: {e}\n{doc}"));
    // Independent of the editor's own check: the container now reads as the model says.
    let again = container_argv(&out.bytes, container).unwrap();
    assert_eq!(again.argv(), out.argv_after);
    out
}

fn edited(doc: &str, edits: &[FlagEdit]) -> String {
    String::from_utf8(run(doc, None, edits).bytes).unwrap()
}

fn refused(doc: &str, container: Option<&str>, edits: &[FlagEdit]) -> ManifestError {
    match edit_flags(doc.as_bytes(), container, edits) {
        Ok(o) => panic!(
            "expected a refusal, got:\n{}",
            String::from_utf8_lossy(&o.bytes)
        ),
        Err(e) => e,
    }
}

/// A pod with the given container body (lines after `- name: NAME`, indented by 4).
fn pod(body: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n  namespace: kube-system\nspec:\n  containers:\n  - name: kube-apiserver\n{body}    image: registry.k8s.io/kube-apiserver:v1.33.0\n  hostNetwork: true\n"
    )
}

fn reference_manifests() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/manifests");
    let mut files = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap() {
        for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "yaml") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert_eq!(
        files.len(),
        9,
        "all reference manifests are in tests/data/manifests"
    );
    files
}

/// Lines removed from `a` and added in `b` (a line diff).
fn line_changes(a: &str, b: &str) -> (Vec<String>, Vec<String>) {
    let diff = similar::TextDiff::from_lines(a, b);
    let mut removed = Vec::new();
    let mut added = Vec::new();
    for c in diff.iter_all_changes() {
        match c.tag() {
            similar::ChangeTag::Delete => removed.push(c.value().to_string()),
            similar::ChangeTag::Insert => added.push(c.value().to_string()),
            similar::ChangeTag::Equal => {}
        }
    }
    (removed, added)
}

#[test]
fn reference_manifests_add_replace_remove() {
    for path in reference_manifests() {
        let doc = std::fs::read_to_string(&path).unwrap();
        let name = path.display();
        let before = container_argv(doc.as_bytes(), None).unwrap();
        assert!(before.command.len() > 5, "{name}");
        let last = before.command.last().unwrap().clone();
        let (flag, _) = before.command[1]
            .trim_start_matches("--")
            .split_once('=')
            .unwrap();
        let flag = flag.to_string();

        // New flag: one new line right after the last flag, indented like it.
        let out = run(&doc, None, &[set("profiling", "false")]);
        assert!(out.changed, "{name}");
        assert_eq!(out.changed_flags, ["profiling"]);
        let text = String::from_utf8(out.bytes.clone()).unwrap();
        let (removed, added) = line_changes(&doc, &text);
        assert!(removed.is_empty(), "{name}: {removed:?}");
        assert_eq!(added, ["    - --profiling=false\n"], "{name}");
        let pos = text.find("    - --profiling=false\n").unwrap();
        assert!(text[..pos].ends_with(&format!("    - {last}\n")), "{name}");

        // Existing flag: rewritten in place.
        let out = run(&doc, None, &[set(&flag, "x")]);
        let text = String::from_utf8(out.bytes).unwrap();
        let (removed, added) = line_changes(&doc, &text);
        assert_eq!(removed.len(), 1, "{name}");
        assert!(
            removed[0].starts_with(&format!("    - --{flag}=")),
            "{name}"
        );
        assert!(added[0].starts_with(&format!("    - --{flag}=x")), "{name}");

        // Removed: exactly its line goes.
        let out = run(&doc, None, &[unset(&flag)]);
        let text = String::from_utf8(out.bytes).unwrap();
        let (removed, added) = line_changes(&doc, &text);
        assert_eq!((removed.len(), added.len()), (1, 0), "{name}");
        assert_eq!(out.argv_after.len() + 1, out.argv_before.len());

        // No-op: setting what is set, and unsetting what is absent.
        let current = before.command[1].clone();
        let value = current.split_once('=').unwrap().1;
        let out = run(&doc, None, &[set(&flag, value), unset("no-such-flag")]);
        assert!(!out.changed, "{name}");
        assert!(out.changed_flags.is_empty());
        assert_eq!(out.bytes, doc.as_bytes());

        // Round trip: add then remove gives the input back.
        let added = run(&doc, None, &[set("audit-log-maxage", "30")]);
        let back = run(
            std::str::from_utf8(&added.bytes).unwrap(),
            None,
            &[unset("audit-log-maxage")],
        );
        assert_eq!(back.bytes, doc.as_bytes(), "{name}");
    }
}

#[test]
fn reference_container_argv_and_probes() {
    for path in reference_manifests() {
        let doc = std::fs::read(&path).unwrap();
        let c = container_argv(&doc, None).unwrap();
        let stem = path.file_stem().unwrap().to_str().unwrap();
        assert_eq!(c.name, stem);
        assert_eq!(c.pod, stem);
        assert!(c.has_command && !c.has_args);
        assert!(c.container.get("livenessProbe").is_some());
        assert!(c.args.is_empty());
    }
}

#[test]
fn trailing_comment_survives_rewrite() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/manifests/kubeadm-v1.33.0/etcd.yaml");
    let doc = std::fs::read_to_string(path).unwrap();
    let text = edited(
        &doc,
        &[set("advertise-client-urls", "https://10.0.0.1:2379")],
    );
    assert_eq!(
        text,
        doc.replace(
            "- --advertise-client-urls=https://192.168.102.134:2379   # This",
            "- --advertise-client-urls=https://10.0.0.1:2379   # This"
        )
    );
}

#[test]
fn block_same_indent_and_deeper() {
    let doc = pod("    command:\n    - kube-apiserver\n    - --a=1\n");
    assert_eq!(
        edited(&doc, &[set("b", "2")]),
        pod("    command:\n    - kube-apiserver\n    - --a=1\n    - --b=2\n")
    );
    let doc = pod("    command:\n        -   kube-apiserver\n        -   --a=1\n");
    assert_eq!(
        edited(&doc, &[set("b", "2"), set("a", "3")]),
        pod("    command:\n        -   kube-apiserver\n        -   --a=3\n        -   --b=2\n")
    );
    let doc = pod("    command:\n      - kube-apiserver\n      - --a=1\n");
    assert_eq!(
        edited(&doc, &[unset("a")]),
        pod("    command:\n      - kube-apiserver\n")
    );
}

#[test]
fn flow_on_one_line_and_several() {
    let doc = pod("    command: [\"kube-apiserver\", \"--a=b\"]\n");
    assert_eq!(
        edited(&doc, &[set("c", "d")]),
        pod("    command: [\"kube-apiserver\", \"--a=b\", \"--c=d\"]\n")
    );
    assert_eq!(
        edited(&doc, &[unset("a")]),
        pod("    command: [\"kube-apiserver\"]\n")
    );
    assert_eq!(
        edited(&doc, &[set("a", "x y")]),
        pod("    command: [\"kube-apiserver\", \"--a=x y\"]\n")
    );

    let doc = pod("    command: [kube-apiserver, --a=b]\n");
    assert_eq!(
        edited(&doc, &[set("e", "https://h:1")]),
        pod("    command: [kube-apiserver, --a=b, '--e=https://h:1']\n")
    );

    let doc = pod("    command: [\n      \"kube-apiserver\",\n      \"--a=b\",   # why\n      \"--c=d\"\n    ]\n");
    assert_eq!(
        edited(&doc, &[set("e", "f")]),
        pod("    command: [\n      \"kube-apiserver\",\n      \"--a=b\",   # why\n      \"--c=d\",\n      \"--e=f\"\n    ]\n")
    );
    assert_eq!(
        edited(&doc, &[unset("a")]),
        pod("    command: [\n      \"kube-apiserver\",\n      \"--c=d\"\n    ]\n")
    );
    assert_eq!(
        edited(&doc, &[unset("c")]),
        pod("    command: [\n      \"kube-apiserver\",\n      \"--a=b\"   # why\n    ]\n")
    );
    let doc =
        pod("    command: [kube-apiserver,\n              --a=b,\n              --c=d,\n    ]\n");
    assert_eq!(
        edited(&doc, &[set("e", "f"), unset("a")]),
        pod("    command: [kube-apiserver,\n              --c=d,\n              --e=f,\n    ]\n")
    );
}

#[test]
fn quoting_styles_are_kept() {
    let doc =
        pod("    command:\n    - 'kube-apiserver'\n    - '--a=1'\n    - \"--b=2\"\n    - --c=3\n");
    assert_eq!(
        edited(&doc, &[set("a", "x"), set("b", "y"), set("c", "z"), set("d", "w")]),
        pod("    command:\n    - 'kube-apiserver'\n    - '--a=x'\n    - \"--b=y\"\n    - --c=z\n    - --d=w\n")
    );
    let doc = pod("    command:\n    - kube-apiserver\n    - \"--a=1\"\n");
    assert_eq!(
        edited(&doc, &[set("d", "w")]),
        pod("    command:\n    - kube-apiserver\n    - \"--a=1\"\n    - \"--d=w\"\n")
    );
}

#[test]
fn values_that_need_quoting() {
    for value in [
        "a: b",
        "a #b",
        "*x",
        "&x",
        "!x",
        "\"q\"",
        "'q'",
        "x:",
        "[1]",
        "{a}",
        "%x",
        "@x",
        "`x",
        "a\tb",
        "é",
        "\u{1}",
        "",
        " lead",
        "trail ",
        "a,b",
        "\\",
        "# x",
        "|",
        ">",
        "-",
        "a\u{feff}",
    ] {
        for doc in [
            pod("    command:\n    - kube-apiserver\n    - --a=1\n"),
            pod("    command: [kube-apiserver, --a=1]\n"),
            pod("    command: [\"kube-apiserver\", \"--a=1\"]\n"),
        ] {
            for edits in [vec![set("a", value)], vec![set("n", value)]] {
                let out = run(&doc, None, &edits);
                let c = container_argv(&out.bytes, None).unwrap();
                let name = edits[0].name();
                assert!(
                    c.command.contains(&format!("--{name}={value}")),
                    "{value:?}"
                );
            }
        }
    }
}

#[test]
fn comments_and_blank_lines_inside_lists() {
    let doc = pod(
        "    command:\n    # the binary\n    - kube-apiserver   # trailing\n\n    - --a=1 # one\n    # between\n\n    - --b=2\n    # after\n",
    );
    assert_eq!(
        edited(&doc, &[set("a", "9"), set("c", "3")]),
        pod("    command:\n    # the binary\n    - kube-apiserver   # trailing\n\n    - --a=9 # one\n    # between\n\n    - --b=2\n    - --c=3\n    # after\n")
    );
    assert_eq!(
        edited(&doc, &[unset("a")]),
        pod("    command:\n    # the binary\n    - kube-apiserver   # trailing\n\n    # between\n\n    - --b=2\n    # after\n")
    );
}

#[test]
fn crlf_and_no_final_newline() {
    let doc = pod("    command:\n    - kube-apiserver\n    - --a=1\n").replace('\n', "\r\n");
    assert_eq!(
        edited(&doc, &[set("b", "2")]),
        pod("    command:\n    - kube-apiserver\n    - --a=1\n    - --b=2\n").replace('\n', "\r\n")
    );
    let doc = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: p\n    command:\n    - p\n    - --a=1";
    assert_eq!(edited(doc, &[set("b", "2")]), format!("{doc}\n    - --b=2"));
    assert_eq!(
        edited(doc, &[unset("a"), set("b", "2")]),
        doc.replace("--a=1", "--b=2")
    );
    let flow = "apiVersion: v1\r\nkind: Pod\r\nmetadata: {name: p}\r\nspec:\r\n  containers:\r\n  - name: p\r\n    command: [\r\n      p,\r\n      --a=1\r\n    ]";
    assert_eq!(
        edited(flow, &[set("b", "2")]),
        flow.replace("--a=1\r\n", "--a=1,\r\n      --b=2\r\n")
    );
}

#[test]
fn duplicates_and_two_item_form_fold() {
    let doc = pod("    command:\n    - kube-apiserver\n    - --a=1\n    - --b\n    - x\n    - --a=2 # last\n    - --c\n");
    assert_eq!(
        edited(&doc, &[set("a", "3")]),
        pod("    command:\n    - kube-apiserver\n    - --b\n    - x\n    - --a=3 # last\n    - --c\n")
    );
    assert_eq!(
        edited(&doc, &[set("b", "y")]),
        pod("    command:\n    - kube-apiserver\n    - --a=1\n    - --b=y\n    - --a=2 # last\n    - --c\n")
    );
    assert_eq!(
        edited(&doc, &[unset("b"), unset("a")]),
        pod("    command:\n    - kube-apiserver\n    - --c\n")
    );
    // A bare flag gets a value; a two-item value counts as the value.
    let out = run(&doc, None, &[set("c", "true"), set("b", "x")]);
    assert_eq!(out.changed_flags, ["c"]);
    // Setting a flag that occurs twice with the final value still folds it.
    let out = run(&doc, None, &[set("a", "2")]);
    assert!(out.changed);
    assert!(out.changed_flags.is_empty());
}

#[test]
fn args_and_command_together() {
    let doc = pod("    command:\n    - kube-apiserver\n    args:\n    - --a=1\n");
    assert_eq!(
        edited(&doc, &[set("b", "2")]),
        pod("    command:\n    - kube-apiserver\n    args:\n    - --a=1\n    - --b=2\n")
    );
    assert_eq!(
        edited(&doc, &[unset("a")]),
        pod("    command:\n    - kube-apiserver\n    args: []\n")
    );
    let doc = pod("    command: [kube-apiserver, --a=1]\n    args: []\n");
    assert_eq!(
        edited(&doc, &[set("b", "2")]),
        pod("    command: [kube-apiserver, --a=1, --b=2]\n    args: []\n")
    );
    let doc = pod("    command: [kube-apiserver]\n    args: []\n");
    assert_eq!(
        edited(&doc, &[set("b", "2")]),
        pod("    command: [kube-apiserver]\n    args: [\"--b=2\"]\n")
    );
    // The two-item form across the lists.
    let doc = pod("    command: [kube-apiserver, --a]\n    args: [\"1\", --c=2]\n");
    assert_eq!(
        edited(&doc, &[set("a", "3")]),
        pod("    command: [kube-apiserver, --a=3]\n    args: [--c=2]\n")
    );
    // Only args (the image's entrypoint runs).
    let doc = pod("    args:\n    - --a=1\n");
    assert_eq!(
        edited(&doc, &[set("a", "2"), set("b", "3")]),
        pod("    args:\n    - --a=2\n    - --b=3\n")
    );
}

const TWO: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: side\n    command: [side, --a=1]\n  - name: web\n    command: [web, --a=1]\n  initContainers:\n  - name: init\n    command: [init, --a=1]\n";

#[test]
fn container_selection() {
    let out = run(TWO, None, &[set("a", "2")]);
    assert_eq!(out.container, "web");
    assert_eq!(
        String::from_utf8(out.bytes).unwrap(),
        TWO.replace("[web, --a=1]", "[web, --a=2]")
    );
    let out = run(TWO, Some("side"), &[set("a", "2")]);
    assert_eq!(
        String::from_utf8(out.bytes).unwrap(),
        TWO.replace("[side, --a=1]", "[side, --a=2]")
    );
    let out = run(TWO, Some("init"), &[set("a", "2")]);
    assert_eq!(
        String::from_utf8(out.bytes).unwrap(),
        TWO.replace("[init, --a=1]", "[init, --a=2]")
    );
    let e = refused(TWO, Some("nope"), &[set("a", "2")]);
    assert!(matches!(e, ManifestError::NoSuchContainer { .. }), "{e}");
    assert!(e.to_string().contains("side, web"), "{e}");
    let unnamed = TWO.replace("name: web\nspec", "name: other\nspec");
    let e = refused(&unnamed, None, &[set("a", "2")]);
    assert!(
        matches!(e, ManifestError::AmbiguousContainer { count: 2, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("--container"), "{e}");
    // The only container is chosen whatever its name.
    let single =
        pod("    command: [x, --a=1]\n").replace("  - name: kube-apiserver", "  - name: other");
    assert_eq!(run(&single, None, &[set("a", "2")]).container, "other");
}

#[test]
fn json_manifests_stay_json() {
    let doc = r#"{
  "apiVersion": "v1",
  "kind": "Pod",
  "metadata": {"name": "kube-apiserver"},
  "spec": {
    "containers": [
      {
        "name": "kube-apiserver",
        "command": [
          "kube-apiserver",
          "--a=1",
          "--b=2"
        ],
        "image": "x"
      }
    ]
  }
}
"#;
    for edits in [
        vec![set("c", "3")],
        vec![unset("b")],
        vec![unset("a")],
        vec![set("a", "\"quoted\"\t\\ é \u{1}\u{7f}")],
        vec![unset("a"), unset("b")],
    ] {
        let out = run(doc, None, &edits);
        let text = String::from_utf8(out.bytes).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let argv: Vec<String> = json["spec"]["containers"][0]["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(argv, out.argv_after);
    }
    let compact = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"p","command":["p","--a=1"]}]}}"#;
    let out = run(compact, None, &[set("b", "2")]);
    assert_eq!(
        String::from_utf8(out.bytes).unwrap(),
        compact.replace(r#""--a=1"]"#, r#""--a=1","--b=2"]"#)
    );
}

#[test]
fn document_markers_bom_and_other_content() {
    let doc = format!("---\n{}...\n", pod("    command: [x, --a=1]\n"));
    assert_eq!(
        edited(&doc, &[set("a", "2")]),
        doc.replace("--a=1", "--a=2")
    );
    let doc = format!("\u{feff}{}", pod("    command: [x, --a=1]\n"));
    assert_eq!(
        edited(&doc, &[set("a", "2")]),
        doc.replace("--a=1", "--a=2")
    );
    let doc = pod("    command:\n    - x\n    - --a=1\n").replace(
        "  namespace: kube-system\n",
        "  annotations:\n    note: |\n      command:\n      - --a=1\n    other: >-\n      folded\n    quoted: \"two\n      lines\"\n  namespace: kube-system\n",
    );
    assert_eq!(
        edited(&doc, &[set("a", "2")]),
        doc.replace("    - --a=1\n    image", "    - --a=2\n    image")
    );
    // The container written as a flow mapping.
    let doc = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: p, command: [p, --a=1], image: i}]\n";
    assert_eq!(
        edited(doc, &[set("b", "2")]),
        doc.replace("--a=1]", "--a=1, --b=2]")
    );
    // Anchors and aliases elsewhere are fine.
    let doc = pod("    command: [x, --a=1]\n").replace(
        "  namespace: kube-system\n",
        "  labels: &l {a: b}\n  annotations: *l\n",
    );
    assert_eq!(
        edited(&doc, &[set("a", "2")]),
        doc.replace("--a=1", "--a=2")
    );
}

fn assert_refused(doc: &str, edits: &[FlagEdit], needle: &str, line: Option<usize>) {
    let e = refused(doc, None, edits);
    let msg = e.to_string();
    assert!(msg.contains(needle), "{msg:?} should contain {needle:?}");
    assert!(
        !msg.starts_with(|c: char| c.is_uppercase()),
        "lowercase start: {msg}"
    );
    if let Some(l) = line {
        assert_eq!(e.line(), Some(l), "{msg}");
        assert!(msg.starts_with(&format!("line {l}")), "{msg}");
    }
}

#[test]
fn refusals_say_what_and_where() {
    // pod() puts the container's first body line on line 9.
    assert_refused(
        &pod("    command: &c [x, --a=1]\n"),
        &[set("a", "2")],
        "anchor",
        Some(9),
    );
    assert_refused(
        &pod("    command: !!seq [x, --a=1]\n"),
        &[set("a", "2")],
        "anchor or tag",
        Some(9),
    );
    assert_refused(
        &pod("    command:\n    - x\n    - &v --a=1\n"),
        &[set("a", "2")],
        "anchor",
        Some(11),
    );
    assert_refused(
        &pod("    command:\n    - x\n    - |\n      --a=1\n"),
        &[set("b", "2")],
        "block scalar",
        Some(11),
    );
    assert_refused(
        &pod("    command:\n    - x\n    - \"--a=1\n      b\"\n"),
        &[set("b", "2")],
        "multi-line",
        Some(11),
    );
    assert_refused(
        &pod("    command:\n    - x\n    - --a=1\n      b\n"),
        &[set("b", "2")],
        "multi-line",
        Some(11),
    );
    assert_refused(
        &pod("    command: [x, \"--a=1\n      b\"]\n"),
        &[set("b", "2")],
        "multi-line",
        Some(9),
    );
    let aliased = pod("    command: [x, --a=1]\n")
        .replace(
            "  namespace: kube-system\n",
            "  labels:\n    c: &c [x, --a=1]\n",
        )
        .replace("    command: [x, --a=1]", "    command: *c");
    assert_refused(&aliased, &[set("a", "2")], "alias", None);
    assert_refused(
        &pod("    command: [x, --a=1]\n").replace("kind: Pod", "kind: Deployment"),
        &[],
        "not a pod manifest",
        None,
    );
    assert_refused(
        &pod("    command: [x]\n").replace("apiVersion: v1", "apiVersion: v2"),
        &[],
        "apiVersion",
        None,
    );
    assert_refused("- a\n- b\n", &[], "not a pod manifest", None);
    assert_refused("", &[], "not a pod manifest", None);
    let two = format!(
        "{}---\n{}",
        pod("    command: [x]\n"),
        pod("    command: [x]\n")
    );
    assert_refused(&two, &[], "several yaml documents", Some(12));
    assert_refused(
        &format!("{}---\n", pod("    command: [x]\n")),
        &[],
        "several yaml documents",
        Some(12),
    );
    assert_refused(
        "apiVersion: v1\nkind: Pod\nspec: [\n",
        &[],
        "yaml parse error",
        None,
    );
    assert_refused("a: 1\n\tb: 2\n", &[], "line 2", Some(2));
    assert_refused(
        &pod("    command: [x, 10]\n"),
        &[],
        "spec.containers[0].command[1] is the number 10, not a string",
        None,
    );
    assert_refused(
        &pod("    command: x\n"),
        &[set("a", "1")],
        "not a list",
        None,
    );
    assert_refused(&pod(""), &[set("a", "1")], "no command or args", None);
    assert_refused(
        &pod("    command: [x, --a, \"-1\"]\n"),
        &[set("a", "1")],
        "refusing to guess",
        None,
    );
    assert_refused(
        &pod("    command: [x, --, --a=1]\n"),
        &[set("b", "1")],
        "terminator",
        None,
    );
    assert_refused(
        &pod("    command: [x]\n"),
        &[set("A", "1")],
        "invalid flag name",
        None,
    );
    assert_refused(
        &pod("    command: [x]\n"),
        &[set("a", "1\n2")],
        "line break",
        None,
    );
    assert_refused(
        &pod("    command: [x]\n"),
        &[set("a", "1\u{0}")],
        "nul",
        None,
    );
    assert_refused(
        "apiVersion: v1\rkind: Pod\n",
        &[],
        "carriage return",
        Some(1),
    );
    let merge = pod("    command: [x]\n").replace(
        "  - name: kube-apiserver\n",
        "  - name: kube-apiserver\n    <<: {a: b}\n",
    );
    assert_refused(&merge, &[set("a", "1")], "merge key", None);
    let e = edit_flags(b"\xff\xfe", None, &[]).unwrap_err();
    assert!(e.to_string().contains("utf-8"), "{e}");
}

#[test]
fn flag_argument_parsing() {
    assert_eq!(
        parse_flag_arg("profiling=false").unwrap(),
        set("profiling", "false")
    );
    assert_eq!(
        parse_flag_arg("--profiling=false").unwrap(),
        set("profiling", "false")
    );
    assert_eq!(
        parse_flag_arg("--tls-cipher-suites=A=B,C").unwrap(),
        set("tls-cipher-suites", "A=B,C")
    );
    assert_eq!(parse_flag_arg("x=").unwrap(), set("x", ""));
    for bad in [
        "profiling",
        "=x",
        "Pro=1",
        "a_b=1",
        "-a=1",
        "---a=1",
        "a b=1",
        "a=1\n",
    ] {
        assert!(parse_flag_arg(bad).is_err(), "{bad}");
    }
    assert!(validate_flag_name("a0-b").is_ok());
    assert!(validate_flag_name("0a").is_ok());
    assert!(validate_flag_name("-a").is_err());
    assert!(validate_flag_value("a b: #c").is_ok());
    assert!(validate_flag_value("a\rb").is_err());
}

#[test]
fn several_edits_in_one_call() {
    let doc = pod("    command:\n    - kube-apiserver\n    - --a=1\n    - --b=2\n");
    let out = run(
        &doc,
        None,
        &[
            set("c", "3"),
            unset("b"),
            set("a", "1"),
            set("d", "4"),
            unset("c"),
        ],
    );
    assert_eq!(out.changed_flags, ["b", "d"]);
    assert_eq!(
        String::from_utf8(out.bytes).unwrap(),
        pod("    command:\n    - kube-apiserver\n    - --a=1\n    - --d=4\n")
    );
}

#[test]
fn edit_is_fast() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/manifests/kubeadm-v1.33.0/kube-apiserver.yaml");
    let doc = std::fs::read(path).unwrap();
    let edits = [
        set("profiling", "false"),
        set("authorization-mode", "Node,RBAC"),
        unset("allow-privileged"),
    ];
    let n = 200;
    let t = std::time::Instant::now();
    for _ in 0..n {
        edit_flags(&doc, None, &edits).unwrap();
    }
    let per = t.elapsed() / n;
    eprintln!("edit + verify of {} bytes: {per:?}", doc.len());
    // Generous for unoptimized test builds; release builds take tens of microseconds.
    assert!(
        per < std::time::Duration::from_millis(20),
        "{per:?} per edit"
    );
}

#[test]
fn hand_edited_layouts() {
    // Quoted keys, comments at any column, trailing blanks after items, a comment after `[`.
    let doc = pod("    \"command\":   # the binary and its flags\n    - kube-apiserver\n# col 0\n    - --a=1   \n      # deeper\n    - '--b=2'\n");
    assert_eq!(
        edited(&doc, &[set("a", "x"), unset("b"), set("c", "y")]),
        pod("    \"command\":   # the binary and its flags\n    - kube-apiserver\n# col 0\n    - --a=x   \n    - --c=y\n      # deeper\n")
    );
    let doc = pod("    command: [ # why\n      kube-apiserver, --a=1,\n      --b=2 ]\n");
    assert_eq!(
        edited(&doc, &[unset("b")]),
        pod("    command: [ # why\n      kube-apiserver, --a=1\n      ]\n")
    );
    assert_eq!(
        edited(&doc, &[unset("a")]),
        pod("    command: [ # why\n      kube-apiserver,\n      --b=2 ]\n")
    );
    assert_eq!(
        edited(&doc, &[set("c", "3")]),
        pod("    command: [ # why\n      kube-apiserver, --a=1,\n      --b=2, --c=3 ]\n")
    );
    // A comment header before the document; tabs before a trailing comment.
    let doc = format!(
        "# managed by hand\n\n{}",
        pod("    command:\n    - kube-apiserver\n    - --a=1\t# tab\n")
    );
    assert_eq!(
        edited(&doc, &[set("a", "2")]),
        doc.replace("--a=1\t#", "--a=2\t#")
    );
}

#[test]
fn shell_wrappers_are_refused() {
    let doc = pod("    command:\n    - /bin/sh\n    - -ec\n    - exec kube-apiserver --a=1\n");
    let e = refused(&doc, None, &[set("a", "2")]);
    assert!(e.to_string().contains("shell script"), "{e}");
}
