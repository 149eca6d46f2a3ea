//! Fuzz target for the manifest flag editor: arbitrary bytes and an arbitrary edit must never
//! panic, and an `Ok` result must
//! - parse back to exactly what an independent model of the edit says (and be the input itself
//!   when nothing changed);
//! - keep every byte outside the lists it changed: the input minus the lines of the edited
//!   `command`/`args` lists (key line to last line) appears in the output unchanged, in order;
//! - hold no plain scalar with a YAML flow indicator (`, [ ] { } : ? #`) among the items it
//!   wrote into a flow list (libyaml reads `[a, --b=x?y]`, PyYAML refuses it);
//! - stay JSON, and mean the same to serde_json, when the input is a JSON manifest.
//!
//! Input layout: byte 0 = number of edits (low 2 bits) and whether to name the container
//! (bit 2); then per edit a kind/name byte, a length byte L and L bytes of value; the rest is
//! the manifest. The seed corpus `fuzz/corpus/manifest_edit/` holds the reference manifests
//! (`tests/data/manifests`) behind such headers; `fuzz/make_manifest_corpus.sh` rebuilds it.

#![no_main]

use kubeharden::manifest::{container_argv, edit_flags, inspect, ContainerArgv, FlagEdit};
use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &[
    "profiling",
    "a",
    "b",
    "anonymous-auth",
    "etcd-servers",
    "x-y",
    "Bad_Name",
    "",
];

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(data.len());
    let (head, tail) = data.split_at(n);
    *data = tail;
    head
}

fn edits(data: &mut &[u8]) -> (Vec<FlagEdit>, bool) {
    let head = take(data, 1).first().copied().unwrap_or(0);
    let mut out = Vec::new();
    for _ in 0..(head & 3) {
        let kind = take(data, 1).first().copied().unwrap_or(0);
        let len = take(data, 1).first().copied().unwrap_or(0) as usize % 32;
        let value = String::from_utf8_lossy(take(data, len)).into_owned();
        let name = NAMES[(kind as usize >> 1) % NAMES.len()].to_string();
        out.push(if kind & 1 == 0 {
            FlagEdit::Set { name, value }
        } else {
            FlagEdit::Unset { name }
        });
    }
    (out, head & 4 != 0)
}

/// The independent model: (list, text) items; `None` where the editor must refuse.
fn model(
    command: Option<&[String]>,
    args: Option<&[String]>,
    edits: &[FlagEdit],
) -> Option<Vec<(u8, String)>> {
    let mut toks: Vec<(u8, String)> = Vec::new();
    toks.extend(command.unwrap_or_default().iter().map(|t| (0, t.clone())));
    toks.extend(args.unwrap_or_default().iter().map(|t| (1, t.clone())));
    let has_prog = command.is_some_and(|c| !c.is_empty());
    for e in edits {
        // (name, first, value position, last position, ambiguous)
        let mut occ: Vec<(String, usize, Option<usize>, usize, bool)> = Vec::new();
        let mut terminated = false;
        let mut i = usize::from(has_prog);
        while i < toks.len() {
            let t = &toks[i].1;
            if t == "--" {
                terminated = true;
                break;
            }
            if let Some(rest) = t.strip_prefix("--") {
                let name = rest.split('=').next().unwrap().replace('_', "-");
                let next = toks.get(i + 1).map(|n| n.1.as_str());
                match next {
                    Some(n) if !rest.contains('=') && (!n.starts_with('-') || n == "-") => {
                        occ.push((name, i, Some(i + 1), i + 1, false));
                        i += 1;
                    }
                    Some(n) if !rest.contains('=') && !n.starts_with("--") => {
                        occ.push((name, i, None, i + 1, true))
                    }
                    _ => occ.push((name, i, None, i, false)),
                }
            }
            i += 1;
        }
        let (name, value) = match e {
            FlagEdit::Set { name, value } => (name, Some(value)),
            FlagEdit::Unset { name } => (name, None),
        };
        let matched: Vec<_> = occ.iter().filter(|o| &o.0 == name).collect();
        if matched.iter().any(|o| o.4) {
            return None;
        }
        let mut gone: Vec<usize> = Vec::new();
        match value {
            None => matched
                .iter()
                .for_each(|o| gone.extend([Some(o.1), o.2].into_iter().flatten())),
            Some(v) => {
                let text = format!("--{name}={v}");
                if let Some((last, rest)) = matched.split_last() {
                    rest.iter()
                        .for_each(|o| gone.extend([Some(o.1), o.2].into_iter().flatten()));
                    gone.extend(last.2);
                    toks[last.1].1 = text;
                } else {
                    let (at, list) = match occ.last() {
                        Some(o) => (o.3 + 1, toks[o.3].0),
                        None if terminated => return None,
                        None if args.is_some() => (toks.len(), 1),
                        None if has_prog => (toks.iter().filter(|t| t.0 == 0).count(), 0),
                        None => return None,
                    };
                    toks.insert(at, (list, text));
                }
            }
        }
        gone.sort_unstable();
        for i in gone.into_iter().rev() {
            toks.remove(i);
        }
    }
    Some(toks)
}

/// The byte ranges the edit may change: the lines of each list whose items changed.
fn allowed(
    input: &[u8],
    container: Option<&str>,
    before: &ContainerArgv,
    after: &ContainerArgv,
) -> Vec<std::ops::Range<usize>> {
    let lists = inspect::lists(input, container).expect("the manifest's lists cannot be read");
    let changed = |key: &str| match key {
        "command" => before.command != after.command || before.has_command != after.has_command,
        _ => before.args != after.args || before.has_args != after.has_args,
    };
    for key in ["command", "args"].into_iter().filter(|k| changed(k)) {
        assert!(
            lists.iter().any(|l| l.key == key),
            "the {key} list changed but cannot be located"
        );
    }
    let mut ranges: Vec<_> = lists
        .into_iter()
        .filter(|l| changed(l.key))
        .map(|l| l.lines)
        .collect();
    ranges.sort_by_key(|r| r.start);
    ranges
}

/// The input outside `ranges` must appear in the output byte for byte and in order: the part
/// before the first range as a prefix, after the last as a suffix, between them in between.
fn check_untouched(input: &[u8], output: &[u8], ranges: &[std::ops::Range<usize>]) {
    assert!(!ranges.is_empty(), "the output changed but no list did");
    let mut keep: Vec<&[u8]> = Vec::new();
    let mut at = 0;
    for r in ranges {
        keep.push(&input[at..r.start]);
        at = r.end;
    }
    keep.push(&input[at..]);
    let (first, last) = (keep[0], keep[keep.len() - 1]);
    assert!(
        output.starts_with(first),
        "bytes before the edited lists changed"
    );
    assert!(
        output.ends_with(last),
        "bytes after the edited lists changed"
    );
    let mut pos = first.len();
    let end = output.len() - last.len();
    assert!(pos <= end, "the kept prefix and suffix overlap");
    for mid in keep[1..keep.len() - 1].iter().filter(|m| !m.is_empty()) {
        let found = output[pos..end].windows(mid.len()).position(|w| w == *mid);
        let Some(i) = found else {
            panic!("bytes between the edited lists changed");
        };
        pos += i + mid.len();
    }
}

/// What a plain scalar in a flow collection must not hold for every YAML parser to read it
/// alike: the flow indicators, the mapping indicators and `#`. Written out here, not taken from
/// the editor, so that the oracle does not share the editor's mistakes.
const FLOW_INDICATORS: &[u8] = b",[]{}:?#";

/// No item the editor wrote into a flow list is a plain scalar holding a flow indicator.
fn check_flow_plain(input: &[u8], output: &[u8], container: Option<&str>) {
    let before = inspect::lists(input, container).unwrap_or_default();
    let after = inspect::lists(output, container).expect("the edited lists cannot be located");
    for list in after.iter().filter(|l| l.flow) {
        let old = before.iter().find(|b| b.key == list.key);
        for item in list.items.iter().filter(|i| i.plain) {
            let kept = old.is_some_and(|o| o.items.contains(item));
            assert!(
                kept || !item.raw.bytes().any(|c| FLOW_INDICATORS.contains(&c)),
                "plain flow item {:?} holds a flow indicator",
                item.raw
            );
        }
    }
}

/// A JSON manifest stays JSON, and serde_json reads the container's lists as the editor says.
fn check_json(input: &[u8], output: &[u8], after: &ContainerArgv) {
    if serde_json::from_slice::<serde_json::Value>(input).is_err() {
        return;
    }
    let v: serde_json::Value =
        serde_json::from_slice(output).expect("a JSON manifest is no longer JSON");
    let containers = v["spec"]["containers"].as_array().into_iter().flatten();
    let init = v["spec"]["initContainers"].as_array().into_iter().flatten();
    let c = containers
        .chain(init)
        .find(|c| c["name"] == after.name.as_str())
        .expect("the edited container is gone from the JSON");
    let strings = |k: &str| -> Vec<String> {
        c[k].as_array()
            .into_iter()
            .flatten()
            .map(|s| s.as_str().expect("a non-string item").to_string())
            .collect()
    };
    assert_eq!(
        strings("command"),
        after.command,
        "serde_json reads another command"
    );
    assert_eq!(strings("args"), after.args, "serde_json reads other args");
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let (edits, named) = edits(&mut rest);
    let input = rest;
    let container = named.then_some("kube-apiserver");
    let before = container_argv(input, container);
    let result = edit_flags(input, container, &edits);
    let Ok(out) = result else { return };
    let before = before.expect("an edit succeeded on a manifest that cannot be read");
    if !out.changed {
        assert_eq!(out.bytes, input, "unchanged but different bytes");
    }
    let after =
        container_argv(&out.bytes, container).expect("the edited manifest does not read back");
    assert_eq!(
        after.argv(),
        out.argv_after,
        "re-parse differs from the reported argv"
    );
    assert_eq!(after.name, before.name);
    let cmd = before.has_command.then_some(before.command.as_slice());
    let args = before.has_args.then_some(before.args.as_slice());
    let want = model(cmd, args, &edits).expect("the editor accepted an edit the model refuses");
    let want_cmd: Vec<String> = want
        .iter()
        .filter(|t| t.0 == 0)
        .map(|t| t.1.clone())
        .collect();
    let want_all: Vec<String> = want.into_iter().map(|t| t.1).collect();
    assert_eq!(out.argv_after, want_all, "editor and model disagree");
    assert_eq!(after.command, want_cmd, "items landed in the wrong list");
    if out.changed {
        let ranges = allowed(input, container, &before, &after);
        check_untouched(input, &out.bytes, &ranges);
        check_flow_plain(input, &out.bytes, container);
        check_json(input, &out.bytes, &after);
    }
});
