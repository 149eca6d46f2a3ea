//! The manifest's meaning, read with serde_norway: exactly one document, a v1 Pod, the
//! container chosen per cli.md, and its `command`/`args` as strings.

use serde::Deserialize;
use serde_norway::Value;

use super::scan::Src;
use super::ManifestError;

/// Parses the one YAML (or JSON) document of `input`.
pub(crate) fn parse_single(input: &[u8]) -> Result<Value, ManifestError> {
    // libyaml as bundled mis-tracks columns after a byte order mark (it then splits a
    // mapping into bogus documents), so the mark is left out of what it reads; it is not
    // content, and the editor keeps it in the file.
    let body = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    if let Some(v) = parse_json(body) {
        return Ok(v);
    }
    let mut docs = serde_norway::Deserializer::from_slice(body);
    // The iterator repeats a parse error forever, so it is advanced at most twice.
    let Some(first) = docs.next() else {
        return Err(ManifestError::NotAPod(
            "the file holds no yaml document".into(),
        ));
    };
    let v = Value::deserialize(first).map_err(yaml_error)?;
    if let Some(second) = docs.next() {
        // A syntax error after the first document is reported as what it is.
        Value::deserialize(second).map_err(yaml_error)?;
        return Err(ManifestError::MultipleDocuments {
            line: second_doc_line(input),
        });
    }
    Ok(v)
}

/// A JSON manifest, read as JSON. The kubelet reads a manifest that starts with `{` as JSON,
/// and JSON allows what libyaml refuses (a `\ud83d\ude00` surrogate-pair escape), so such a
/// file is parsed with serde_json; anything serde_json refuses is left to the YAML parser
/// (which also reads JSON, and gives the error with its line).
fn parse_json(body: &[u8]) -> Option<Value> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    Value::deserialize(json).ok()
}

pub(crate) fn yaml_error(e: serde_norway::Error) -> ManifestError {
    let loc = e.location();
    let message = e.to_string();
    // serde_norway appends " at line L column C"; the line is reported separately.
    let message = match message.find(" at line ") {
        Some(i) if loc.is_some() => message[..i].to_string(),
        _ => message,
    };
    ManifestError::Yaml {
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
        message,
    }
}

/// The line of the `---` that starts a second document (best effort, for the message).
fn second_doc_line(input: &[u8]) -> usize {
    let src = Src::new(input);
    let mut ls = src.start();
    let mut seen = false;
    while ls < src.len() {
        if src.is_doc_marker(ls) && src.at(ls) == b'-' {
            if seen {
                return src.line_of(ls);
            }
            seen = true;
        } else if !src.is_trivia_line(ls) && !src.is_doc_marker(ls) {
            seen = true;
        }
        ls = src.next_line(ls);
    }
    src.line_of(src.len())
}

/// The container an edit applies to, with its argv.
#[derive(Debug, Clone)]
pub(crate) struct Selected<'v> {
    /// `containers` or `initContainers`.
    pub field: &'static str,
    pub index: usize,
    pub name: String,
    pub pod: String,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub value: &'v Value,
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

fn mapping<'v>(v: &'v Value, path: &str) -> Result<&'v serde_norway::Mapping, ManifestError> {
    let m = v.as_mapping().ok_or_else(|| {
        ManifestError::NotAPod(format!("{path} is {}, not a mapping", describe(v)))
    })?;
    // YAML merge keys are resolved by the kubelet's parser but not by serde_norway, so the
    // two would disagree on what the container holds.
    if m.contains_key("<<") {
        return Err(ManifestError::Unsupported {
            line: None,
            what: format!("a merge key (<<) in {path} is not supported"),
        });
    }
    Ok(m)
}

fn strings(v: Option<&Value>, path: &str) -> Result<Option<Vec<String>>, ManifestError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .map(|(i, it)| match it {
                Value::String(s) => Ok(s.clone()),
                other => Err(ManifestError::BadArgv {
                    path: format!("{path}[{i}]"),
                    detail: format!("is {}, not a string", describe(other)),
                }),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(ManifestError::BadArgv {
            path: path.to_string(),
            detail: format!("is {}, not a list", describe(other)),
        }),
    }
}

/// Checks that `root` is a v1 Pod and picks the container: the one named `wanted`, else the
/// one named like the pod, else the only one.
pub(crate) fn select<'v>(
    root: &'v Value,
    wanted: Option<&str>,
) -> Result<Selected<'v>, ManifestError> {
    let m = mapping(root, "the document")?;
    let field = |k: &str| m.get(k).and_then(Value::as_str);
    match field("kind") {
        Some("Pod") => {}
        _ => {
            let kind = m.get("kind").map_or("missing".to_string(), describe);
            return Err(ManifestError::NotAPod(format!(
                "kind is {kind}, not \"Pod\""
            )));
        }
    }
    if field("apiVersion") != Some("v1") {
        let v = m.get("apiVersion").map_or("missing".to_string(), describe);
        return Err(ManifestError::NotAPod(format!(
            "apiVersion is {v}, not \"v1\""
        )));
    }
    let pod = m
        .get("metadata")
        .and_then(|md| md.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let spec = mapping(m.get("spec").unwrap_or(&Value::Null), "spec")?;
    let mut lists: Vec<(&'static str, Vec<(String, &Value)>)> = Vec::new();
    for f in ["containers", "initContainers"] {
        let mut named = Vec::new();
        match spec.get(f) {
            None | Some(Value::Null) => {}
            Some(Value::Sequence(cs)) => {
                for (i, c) in cs.iter().enumerate() {
                    let cm = mapping(c, &format!("spec.{f}[{i}]"))?;
                    let name = cm.get("name").and_then(Value::as_str).ok_or_else(|| {
                        ManifestError::NotAPod(format!("spec.{f}[{i}] has no name"))
                    })?;
                    named.push((name.to_string(), c));
                }
            }
            Some(other) => {
                return Err(ManifestError::NotAPod(format!(
                    "spec.{f} is {}, not a list",
                    describe(other)
                )))
            }
        }
        lists.push((f, named));
    }
    let containers = &lists[0].1;
    let names = || {
        containers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let found = match wanted {
        Some(w) => lists
            .iter()
            .find_map(|(f, cs)| cs.iter().position(|(n, _)| n == w).map(|i| (*f, i))),
        None => containers
            .iter()
            .position(|(n, _)| *n == pod)
            .or((containers.len() == 1).then_some(0))
            .map(|i| ("containers", i)),
    };
    let Some((f, index)) = found else {
        return Err(match wanted {
            Some(w) => ManifestError::NoSuchContainer {
                wanted: w.to_string(),
                pod,
                available: names(),
            },
            None if containers.is_empty() => {
                ManifestError::NotAPod("spec.containers is empty".into())
            }
            None => ManifestError::AmbiguousContainer {
                pod,
                count: containers.len(),
                available: names(),
            },
        });
    };
    let (name, c) = &lists.iter().find(|(g, _)| *g == f).expect("listed").1[index];
    let path = format!("spec.{f}[{index}]");
    Ok(Selected {
        field: f,
        index,
        name: name.clone(),
        pod,
        command: strings(c.get("command"), &format!("{path}.command"))?,
        args: strings(c.get("args"), &format!("{path}.args"))?,
        value: c,
    })
}

/// Puts `lists` (`command`, `args`; `None` leaves that key alone) into the selected
/// container of `v` and returns what was there; `None` when `v` has no such container.
/// Swapping in place lets the check compare whole documents without copying one.
pub(crate) fn swap_lists(
    v: &mut Value,
    sel: &Selected,
    lists: [Option<Value>; 2],
) -> Option<[Option<Value>; 2]> {
    let c = v
        .get_mut("spec")?
        .get_mut(sel.field)?
        .get_mut(sel.index)?
        .as_mapping_mut()?;
    let mut old = [None, None];
    for ((key, new), slot) in ["command", "args"].into_iter().zip(lists).zip(&mut old) {
        if let Some(new) = new {
            *slot = Some(
                c.insert(Value::String(key.into()), new)
                    .unwrap_or(Value::Null),
            );
        }
    }
    Some(old)
}
