//! Property test of the manifest flag editor: random argv lists, written in random YAML styles
//! (block/flow, quoting, comments, blank lines, CRLF, indentation, final newline or not) inside
//! a pod, get random set/unset edits. Checks that
//! (a) the edit succeeds and the result parses to what an independent model of the edit says;
//! (b) every line that holds no edited item is byte-identical (flow lists: also the brackets'
//!     lines and the neighbours of edited items may change, for commas).

use std::collections::BTreeSet;

use kubeharden::manifest::{container_argv, edit_flags, FlagEdit};
use proptest::prelude::*;

// ---------------------------------------------------------------- the independent model

#[derive(Debug, Clone, PartialEq)]
struct Tok {
    list: usize,
    orig: Option<usize>,
    text: String,
}

fn norm(n: &str) -> String {
    n.replace('_', "-")
}

/// Flag occurrences: (normalized name, token positions), in order.
fn occurrences(toks: &[Tok], has_prog: bool) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    let mut i = usize::from(has_prog);
    while i < toks.len() {
        if let Some(rest) = toks[i].text.strip_prefix("--") {
            let name = norm(rest.split('=').next().unwrap());
            if !rest.contains('=') && i + 1 < toks.len() && !toks[i + 1].text.starts_with('-') {
                out.push((name, vec![i, i + 1]));
                i += 2;
                continue;
            }
            out.push((name, vec![i]));
        }
        i += 1;
    }
    out
}

struct Reference {
    toks: Vec<Tok>,
    /// (list, original index) of items removed or rewritten.
    touched: BTreeSet<(usize, usize)>,
    /// Lists that get a new item, with the original item it follows (if any).
    inserted: Vec<(usize, Option<(usize, usize)>)>,
}

fn reference(lists: &[Option<Vec<String>>; 2], edits: &[FlagEdit]) -> Reference {
    let mut toks: Vec<Tok> = Vec::new();
    for (l, items) in lists.iter().enumerate() {
        for (i, t) in items.iter().flatten().enumerate() {
            toks.push(Tok {
                list: l,
                orig: Some(i),
                text: t.clone(),
            });
        }
    }
    let has_prog = lists[0].as_ref().is_some_and(|c| !c.is_empty());
    for e in edits {
        let occ = occurrences(&toks, has_prog);
        let (name, value) = match e {
            FlagEdit::Set { name, value } => (name, Some(value)),
            FlagEdit::Unset { name } => (name, None),
        };
        let matched: Vec<&Vec<usize>> = occ
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, p)| p)
            .collect();
        let mut remove: Vec<usize> = Vec::new();
        match value {
            None => matched.iter().for_each(|p| remove.extend(p.iter())),
            Some(v) => {
                let text = format!("--{name}={v}");
                if let Some((last, rest)) = matched.split_last() {
                    rest.iter().for_each(|p| remove.extend(p.iter()));
                    remove.extend(last.iter().skip(1));
                    toks[last[0]].text = text;
                } else {
                    let (at, list) = match occ.last() {
                        Some((_, p)) => (p[p.len() - 1] + 1, toks[p[p.len() - 1]].list),
                        None if lists[1].is_some() => (toks.len(), 1),
                        None => (toks.iter().filter(|t| t.list == 0).count(), 0),
                    };
                    toks.insert(
                        at,
                        Tok {
                            list,
                            orig: None,
                            text,
                        },
                    );
                }
            }
        }
        remove.sort_unstable();
        for i in remove.into_iter().rev() {
            toks.remove(i);
        }
    }
    // New items that survive, with the original item they end up after.
    let mut inserted = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        if t.orig.is_none() {
            let anchor = toks[..i]
                .iter()
                .rev()
                .find(|a| a.list == t.list && a.orig.is_some());
            inserted.push((t.list, anchor.map(|a| (a.list, a.orig.unwrap()))));
        }
    }
    let mut touched = BTreeSet::new();
    for (l, items) in lists.iter().enumerate() {
        for (i, t) in items.iter().flatten().enumerate() {
            match toks.iter().find(|k| k.list == l && k.orig == Some(i)) {
                Some(k) if k.text == *t => {}
                _ => {
                    touched.insert((l, i));
                }
            }
        }
    }
    Reference {
        toks,
        touched,
        inserted,
    }
}

// ---------------------------------------------------------------- rendering the source

#[derive(Debug, Clone)]
enum Group {
    Inline(String, String),
    Bare(String),
    Two(String, String),
}

#[derive(Debug, Clone, Copy)]
enum Q {
    Plain,
    Single,
    Double,
}

#[derive(Debug, Clone, Copy)]
enum Layout {
    Block { extra: usize, gap: usize },
    FlowLine { tight: bool },
    FlowLines { indent: usize, trailing: bool },
    FlowHanging,
}

#[derive(Debug, Clone, Copy)]
struct Deco {
    q: Q,
    comment: bool,
    own_comment: bool,
    blank: bool,
}

fn plain_ok(s: &str, flow: bool) -> bool {
    (s.starts_with("--") || s.starts_with('/'))
        && !s.starts_with("---")
        && !s.ends_with(':')
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || "-_./=@%+".contains(c) || (!flow && ":,".contains(c))
        })
}

fn quote(s: &str, q: Q, flow: bool) -> String {
    match q {
        Q::Plain if plain_ok(s, flow) => s.to_string(),
        Q::Plain | Q::Single if !s.chars().any(|c| c.is_control()) => {
            format!("'{}'", s.replace('\'', "''"))
        }
        _ => {
            let mut o = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => o.push_str("\\\""),
                    '\\' => o.push_str("\\\\"),
                    c if c.is_control() => o.push_str(&format!("\\x{:02x}", c as u32)),
                    c => o.push(c),
                }
            }
            o.push('"');
            o
        }
    }
}

/// One source line and what it holds.
#[derive(Default, Clone)]
struct Line {
    text: String,
    items: Vec<(usize, usize)>,
    bracket_of: Option<usize>,
    key_of: Option<usize>,
    /// Set on every line of a flow list.
    flow_of: Option<usize>,
}

fn line(text: impl Into<String>) -> Line {
    Line {
        text: text.into(),
        ..Line::default()
    }
}

fn render_list(
    list: usize,
    key: &str,
    items: &[String],
    layout: Layout,
    decos: &[Deco],
    out: &mut Vec<Line>,
) {
    let deco = |i: usize| decos[i % decos.len()];
    let layout = if items.is_empty() {
        Layout::FlowLine { tight: false }
    } else {
        layout
    };
    let flow = !matches!(layout, Layout::Block { .. });
    let q = |i: usize| quote(&items[i], deco(i).q, flow);
    match layout {
        Layout::Block { extra, gap } => {
            out.push(Line {
                key_of: Some(list),
                ..line(format!("    {key}:"))
            });
            let ind = " ".repeat(4 + extra);
            for i in 0..items.len() {
                let d = deco(i);
                if d.blank {
                    out.push(line(""));
                }
                if d.own_comment {
                    out.push(line(format!("{ind}# about item {i}")));
                }
                let c = if d.comment {
                    "   # trailing, with: colon"
                } else {
                    ""
                };
                out.push(Line {
                    items: vec![(list, i)],
                    ..line(format!("{ind}-{}{}{c}", " ".repeat(gap), q(i)))
                });
            }
        }
        Layout::FlowLine { tight } => {
            let sep = if tight { "," } else { ", " };
            let body: Vec<String> = (0..items.len()).map(q).collect();
            let c = if decos[0].comment { " # after" } else { "" };
            out.push(Line {
                items: (0..items.len()).map(|i| (list, i)).collect(),
                bracket_of: Some(list),
                key_of: Some(list),
                flow_of: Some(list),
                ..line(format!("    {key}: [{}]{c}", body.join(sep)))
            });
        }
        Layout::FlowLines { indent, trailing } => {
            out.push(Line {
                bracket_of: Some(list),
                key_of: Some(list),
                flow_of: Some(list),
                ..line(format!("    {key}: ["))
            });
            let ind = " ".repeat(indent);
            for i in 0..items.len() {
                let d = deco(i);
                if d.blank {
                    out.push(line(""));
                }
                if d.own_comment {
                    out.push(line(format!("{ind}# about item {i}")));
                }
                let comma = if i + 1 < items.len() || trailing {
                    ","
                } else {
                    ""
                };
                let c = if d.comment { "  # trailing" } else { "" };
                out.push(Line {
                    items: vec![(list, i)],
                    flow_of: Some(list),
                    ..line(format!("{ind}{}{comma}{c}", q(i)))
                });
            }
            out.push(Line {
                bracket_of: Some(list),
                flow_of: Some(list),
                ..line("    ]")
            });
        }
        Layout::FlowHanging => {
            let n = items.len();
            let pad = " ".repeat(key.len() + 7);
            for i in 0..n {
                let head = if i == 0 {
                    format!("    {key}: [")
                } else {
                    pad.clone()
                };
                let tail = if i + 1 < n { "," } else { "]" };
                let c = if i + 1 < n && deco(i).comment {
                    " # c"
                } else {
                    ""
                };
                out.push(Line {
                    items: vec![(list, i)],
                    bracket_of: (i == 0 || i + 1 == n).then_some(list),
                    key_of: (i == 0).then_some(list),
                    flow_of: Some(list),
                    ..line(format!("{head}{}{tail}{c}", q(i)))
                });
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Spec {
    has_command: bool,
    has_args: bool,
    groups: Vec<Group>,
    split: usize,
    layouts: [Layout; 2],
    decos: Vec<Deco>,
    crlf: bool,
    final_newline: bool,
    sidecar: bool,
    args_first: bool,
    lists_last: bool,
    edits: Vec<FlagEdit>,
}

fn tokens(groups: &[Group]) -> Vec<String> {
    let mut out = Vec::new();
    for g in groups {
        match g {
            Group::Inline(n, v) => out.push(format!("--{n}={v}")),
            Group::Bare(n) => out.push(format!("--{n}")),
            Group::Two(n, v) => {
                out.push(format!("--{n}"));
                out.push(v.clone());
            }
        }
    }
    out
}

fn build(spec: &Spec) -> (String, Vec<Line>, [Option<Vec<String>>; 2]) {
    // The split is by item, so a two-item flag may start in command and end in args.
    let all = tokens(&spec.groups);
    let split = if !spec.has_args {
        all.len()
    } else if !spec.has_command {
        0
    } else {
        spec.split.min(all.len())
    };
    let command = spec.has_command.then(|| {
        let mut c = vec!["/usr/local/bin/kube-apiserver".to_string()];
        c.extend_from_slice(&all[..split]);
        c
    });
    let args = spec.has_args.then(|| all[split..].to_vec());
    let mut lines: Vec<Line> = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n  namespace: kube-system\nspec:\n  containers:"
        .lines()
        .map(line)
        .collect();
    if spec.sidecar {
        lines.extend(
            [
                "  - name: sidecar",
                "    command: [sidecar, --a=1]",
                "    args:",
                "    - --b=2",
            ]
            .map(line),
        );
    }
    lines.push(line("  - name: kube-apiserver"));
    if !spec.lists_last {
        lines.push(line("    image: registry.k8s.io/kube-apiserver:v1.33.0"));
    }
    let mut order = vec![(0, "command", &command), (1, "args", &args)];
    if spec.args_first {
        order.reverse();
    }
    for (l, key, items) in order {
        if let Some(items) = items {
            render_list(l, key, items, spec.layouts[l], &spec.decos, &mut lines);
        }
    }
    if !spec.lists_last {
        lines.extend(
            [
                "    volumeMounts:",
                "    - mountPath: /etc/ssl/certs",
                "      name: ca-certs",
                "  hostNetwork: true",
            ]
            .map(line),
        );
    }
    let eol = if spec.crlf { "\r\n" } else { "\n" };
    let mut doc = lines
        .iter()
        .map(|l| format!("{}{eol}", l.text))
        .collect::<String>();
    if !spec.final_newline {
        doc.truncate(doc.len() - eol.len());
    }
    (doc, lines, [command, args])
}

// ---------------------------------------------------------------- strategies

const FILE_NAMES: &[&str] = &["a", "b", "cc", "d-e", "d_e", "g"];
const EDIT_NAMES: &[&str] = &["a", "b", "cc", "d-e", "f"];

fn value() -> impl Strategy<Value = String> {
    // Characters that need YAML quoting in some context, plus ordinary ones.
    prop::collection::vec(
        prop::sample::select(vec![
            'a', 'z', '0', '9', '/', '.', ':', '=', ',', '@', '%', '+', '*', '&', '!', '#', ' ',
            '"', '\'', '\\', '\t', '[', ']', '{', '}', '|', '>', '-', 'é', '\u{1}', '?', '`',
        ]),
        0..8,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn two_item_value() -> impl Strategy<Value = String> {
    value().prop_map(|v| v.trim_start_matches('-').to_string())
}

fn group() -> impl Strategy<Value = Group> {
    let name = prop::sample::select(FILE_NAMES);
    prop_oneof![
        4 => (name.clone(), value()).prop_map(|(n, v)| Group::Inline(n.to_string(), v)),
        1 => name.clone().prop_map(|n| Group::Bare(n.to_string())),
        1 => (name, two_item_value()).prop_map(|(n, v)| Group::Two(n.to_string(), v)),
    ]
}

fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        3 => (0usize..=4, 1usize..=3).prop_map(|(extra, gap)| Layout::Block { extra, gap }),
        1 => any::<bool>().prop_map(|tight| Layout::FlowLine { tight }),
        1 => (6usize..=10, any::<bool>()).prop_map(|(indent, trailing)| Layout::FlowLines { indent, trailing }),
        1 => Just(Layout::FlowHanging),
    ]
}

fn deco() -> impl Strategy<Value = Deco> {
    (
        prop::sample::select(vec![Q::Plain, Q::Plain, Q::Single, Q::Double]),
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(q, comment, own_comment, blank)| Deco {
            q,
            comment,
            own_comment,
            blank,
        })
}

fn edit() -> impl Strategy<Value = FlagEdit> {
    let name = prop::sample::select(EDIT_NAMES).prop_map(str::to_string);
    prop_oneof![
        3 => (name.clone(), value()).prop_map(|(name, value)| FlagEdit::Set { name, value }),
        1 => name.prop_map(|name| FlagEdit::Unset { name }),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(group(), 0..8),
            0usize..12,
        ),
        (layout(), layout(), prop::collection::vec(deco(), 1..6)),
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
        prop::collection::vec(edit(), 1..5),
    )
        .prop_map(
            |(
                (has_command, has_args, groups, split),
                (l0, l1, decos),
                (crlf, final_newline, sidecar, args_first, lists_last),
                edits,
            )| Spec {
                // A container with neither list cannot get flags; that refusal has its own test.
                has_command: has_command || !has_args,
                has_args,
                groups,
                split,
                layouts: [l0, l1],
                decos,
                crlf,
                final_newline,
                sidecar,
                args_first,
                lists_last,
                edits,
            },
        )
}

// ---------------------------------------------------------------- the property

/// Original lines that may change: lines of edited items; the key line of an edited list
/// (a block list becomes `key: []` when emptied); for flow lists also the bracket lines and
/// the lines of items next to an edited item or an insertion point (commas move); a last line
/// without a line break (a line added after it gives it one).
fn changeable(lines: &[Line], r: &Reference, final_newline: bool) -> Vec<bool> {
    let mut lists = BTreeSet::new();
    let mut near: BTreeSet<(usize, usize)> = BTreeSet::new();
    for &(l, i) in &r.touched {
        lists.insert(l);
        near.extend([(l, i), (l, i + 1), (l, i.saturating_sub(1))]);
    }
    for &(l, anchor) in &r.inserted {
        lists.insert(l);
        if let Some((al, ai)) = anchor {
            near.extend([(al, ai), (al, ai + 1)]);
        }
        // Appending to a flow list adds a comma after its last item.
        if let Some(last) = lines
            .iter()
            .rev()
            .flat_map(|ln| ln.items.iter().rev())
            .find(|it| it.0 == l)
        {
            near.insert(*last);
        }
    }
    lines
        .iter()
        .enumerate()
        .map(|(k, ln)| {
            let edited = ln.items.iter().any(|it| r.touched.contains(it));
            let key = ln.key_of.is_some_and(|l| lists.contains(&l));
            let flow = ln.flow_of.is_some_and(|l| {
                lists.contains(&l)
                    && (ln.bracket_of.is_some() || ln.items.iter().any(|it| near.contains(it)))
            });
            edited || key || flow || (!final_newline && k + 1 == lines.len())
        })
        .collect()
}

fn check(spec: &Spec) -> Result<(), TestCaseError> {
    let (doc, lines, lists) = build(spec);
    let before = container_argv(doc.as_bytes(), None)
        .map_err(|e| TestCaseError::fail(format!("generated manifest unreadable: {e}\n{doc}")))?;
    let want_before: Vec<String> = lists.iter().flatten().flatten().cloned().collect();
    prop_assert_eq!(
        before.argv(),
        want_before,
        "generator and parser disagree:\n{}",
        doc
    );

    let r = reference(&lists, &spec.edits);
    let out = edit_flags(doc.as_bytes(), None, &spec.edits)
        .map_err(|e| TestCaseError::fail(format!("edit refused: {e}\n{doc}")))?;
    let text = String::from_utf8(out.bytes.clone()).unwrap();

    // (a) the result parses to the model.
    let after = container_argv(&out.bytes, None)
        .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
    let want: Vec<String> = r.toks.iter().map(|t| t.text.clone()).collect();
    prop_assert_eq!(&after.argv(), &want, "input:\n{}\noutput:\n{}", doc, text);
    prop_assert_eq!(&out.argv_after, &want);
    let want_cmd: Vec<String> = r
        .toks
        .iter()
        .filter(|t| t.list == 0)
        .map(|t| t.text.clone())
        .collect();
    prop_assert_eq!(
        &after.command,
        &want_cmd,
        "input:\n{}\noutput:\n{}",
        doc,
        text
    );
    prop_assert_eq!(out.changed, out.bytes != doc.as_bytes());
    prop_assert_eq!(out.changed, !r.touched.is_empty() || !r.inserted.is_empty());

    // (b) lines that hold no edited item are untouched: they all appear in the output,
    // byte for byte and in order (a greedy subsequence match finds an embedding whenever one
    // exists), and the output has no more lines than the input plus the new items.
    let allowed = changeable(&lines, &r, spec.final_newline);
    let old: Vec<&str> = doc.split_inclusive('\n').collect();
    let new: Vec<&str> = text.split_inclusive('\n').collect();
    let mut at = 0;
    for (k, l) in old.iter().enumerate() {
        if allowed[k] {
            continue;
        }
        // Without a final newline the output's last line has none either: removing the last
        // item leaves the line before it last, without its line break.
        let last = new.len().saturating_sub(1);
        let same = |j: usize, n: &str| {
            n == *l
                || (!spec.final_newline
                    && j == last
                    && !n.ends_with('\n')
                    && (l.strip_suffix("\r\n") == Some(n) || l.strip_suffix('\n') == Some(n)))
        };
        // A blank line that ends up last, losing its break, is gone: only changeable lines
        // (the removed last item and edited ones) may follow it.
        let vanished = !spec.final_newline
            && l.trim_end_matches(['\r', '\n']).is_empty()
            && allowed[k + 1..].iter().all(|a| *a);
        match new[at..]
            .iter()
            .enumerate()
            .position(|(j, n)| same(at + j, n))
        {
            Some(p) => at += p + 1,
            None if vanished => {}
            None => prop_assert!(
                false,
                "line {} {:?} changed but holds no edited item\ninput:\n{}\noutput:\n{}",
                k + 1,
                l,
                doc,
                text
            ),
        }
    }
    prop_assert!(
        new.len() <= old.len() + r.inserted.len(),
        "extra lines:\n{}",
        text
    );
    // (c) nothing is left behind: no blank-but-indented line, no trailing comment of a
    // removed item on a line of its own.
    for l in text.lines() {
        let t = l.trim();
        let indented_blank = t.is_empty() && !l.is_empty();
        let orphan_comment = t.starts_with("# trailing") || t == "# c";
        // The generator never writes two blanks after a comma except before a comment, nor a
        // blank after `[` (values with blanks are always quoted, so skip lines with quotes, and block items).
        let quoted = l.contains(['\'', '"']) || t.starts_with("- ");
        let double_blank = l
            .match_indices(",  ")
            .any(|(i, _)| !l[i..].trim_start_matches([',', ' ']).starts_with('#'));
        let blank_after_bracket = l.contains("[ ") && !l.contains("[ #");
        prop_assert!(
            quoted || (!double_blank && !blank_after_bracket),
            "untidy line {:?}\noutput:\n{}",
            l,
            text
        );
        prop_assert!(
            !indented_blank && !orphan_comment,
            "leftover line {:?}\ninput:\n{}\noutput:\n{}",
            l,
            doc,
            text
        );
    }
    if spec.crlf {
        let body = text.strip_suffix("\r\n").unwrap_or(&text);
        prop_assert!(
            !body.split("\r\n").any(|l| l.contains('\n')),
            "a new line without CRLF:\n{:?}",
            text
        );
    }
    Ok(())
}

proptest! {
    // 256 cases, or PROPTEST_CASES. Failures are reported (shrunk) but not persisted to a file.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn random_manifests_random_edits(spec in spec()) {
        check(&spec)?;
    }
}
