//! Adding a hostPath volume and its volumeMount to a static pod manifest, keeping every other
//! byte. The CIS remediations that need a file (audit policy, admission configuration,
//! encryption config) break the API server without this: the flag names a path the container
//! cannot see.
//!
//! Like the flag editor, the result is never trusted on its own: it is parsed and must equal the
//! original document with exactly the two new items appended.

use super::ManifestError;
use serde_norway::{Mapping, Value};

/// A host path made visible in the container at the same path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMount {
    pub name: String,
    pub path: String,
    /// `File`, `DirectoryOrCreate`, ...
    pub kind: String,
    pub read_only: bool,
}

impl HostMount {
    fn volume_value(&self) -> Value {
        let mut host = Mapping::new();
        host.insert("path".into(), self.path.clone().into());
        host.insert("type".into(), self.kind.clone().into());
        let mut v = Mapping::new();
        v.insert("hostPath".into(), Value::Mapping(host));
        v.insert("name".into(), self.name.clone().into());
        Value::Mapping(v)
    }

    fn mount_value(&self) -> Value {
        let mut m = Mapping::new();
        m.insert("mountPath".into(), self.path.clone().into());
        m.insert("name".into(), self.name.clone().into());
        if self.read_only {
            m.insert("readOnly".into(), true.into());
        }
        Value::Mapping(m)
    }

    /// kubeadm's layout of the two items, at item indent `i` (the column of `-`).
    fn volume_lines(&self, i: &str) -> Vec<String> {
        vec![
            format!("{i}- hostPath:"),
            format!("{i}    path: {}", scalar(&self.path)),
            format!("{i}    type: {}", scalar(&self.kind)),
            format!("{i}  name: {}", scalar(&self.name)),
        ]
    }

    fn mount_lines(&self, i: &str) -> Vec<String> {
        let mut l = vec![
            format!("{i}- mountPath: {}", scalar(&self.path)),
            format!("{i}  name: {}", scalar(&self.name)),
        ];
        if self.read_only {
            l.push(format!("{i}  readOnly: true"));
        }
        l
    }
}

/// Paths and names are emitted plain when that reads back the same, else double-quoted.
fn scalar(s: &str) -> String {
    let plain_ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
        && serde_norway::from_str::<Value>(s).ok() == Some(Value::String(s.to_string()));
    if plain_ok {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

fn parse(bytes: &[u8]) -> Result<Value, ManifestError> {
    serde_norway::from_slice(bytes).map_err(|e| ManifestError::Yaml {
        line: e.location().map(|l| l.line()),
        column: e.location().map(|l| l.column()),
        message: e.to_string(),
    })
}

fn refuse(what: impl Into<String>) -> ManifestError {
    ManifestError::Unsupported {
        line: None,
        what: what.into(),
    }
}

/// `(start, end)` byte ranges of the lines of `text`, ends excluding the line break.
fn lines(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        if b == b'\n' {
            let end = if i > start && text.as_bytes()[i - 1] == b'\r' {
                i - 1
            } else {
                i
            };
            out.push((start, end));
            start = i + 1;
        }
    }
    if start < text.len() {
        out.push((start, text.len()));
    }
    out
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Append `item` lines to every block sequence under a `key:` line, one candidate at a time,
/// and keep the first result that parses to `want`.
fn append_to_sequence(
    text: &str,
    key: &str,
    item: &dyn Fn(&str) -> Vec<String>,
    want: &Value,
) -> Result<String, ManifestError> {
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let ls = lines(text);
    for (n, &(s, e)) in ls.iter().enumerate() {
        let line = &text[s..e];
        let body = line.trim_start_matches(' ');
        let after_key = body.strip_prefix(key).and_then(|r| r.strip_prefix(':'));
        let Some(rest) = after_key else { continue };
        let rest = rest.trim();
        if !(rest.is_empty() || rest.starts_with('#')) {
            continue;
        }
        let key_indent = indent_of(line);
        // The items: `- ` lines at the first item's indent (same as the key's, or deeper).
        let mut item_indent = None;
        let mut last_content = None;
        for &(ls2, le2) in &ls[n + 1..] {
            let l = &text[ls2..le2];
            let t = l.trim_start_matches(' ');
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let ind = indent_of(l);
            match item_indent {
                None if t.starts_with("- ") || t == "-" => {
                    if ind < key_indent {
                        break;
                    }
                    item_indent = Some(ind);
                }
                None => break,
                Some(ii) if ind > ii || (ind == ii && (t.starts_with("- ") || t == "-")) => {}
                Some(_) => break,
            }
            last_content = Some(le2);
        }
        let (Some(ii), Some(end)) = (item_indent, last_content) else {
            continue;
        };
        let mut out = String::with_capacity(text.len() + 200);
        out.push_str(&text[..end]);
        for l in item(&" ".repeat(ii)) {
            out.push_str(eol);
            out.push_str(&l);
        }
        out.push_str(&text[end..]);
        if parse(out.as_bytes()).ok().as_ref() == Some(want) {
            return Ok(out);
        }
    }
    Err(refuse(format!(
        "adding to `{key}:` (only a block sequence with at least one item can be extended \
         byte-exactly; add the item by hand)"
    )))
}

/// Make `mount` visible in container `container` (index in `spec.containers`). Idempotent: a
/// volume of that name with the same path, mounted at the same path, is left as it is.
pub fn add_host_mount(
    input: &[u8],
    container: usize,
    mount: &HostMount,
) -> Result<Vec<u8>, ManifestError> {
    let text = std::str::from_utf8(input).map_err(|_| refuse("a manifest that is not UTF-8"))?;
    let doc = parse(input)?;
    let vols = doc
        .get("spec")
        .and_then(|s| s.get("volumes"))
        .and_then(Value::as_sequence)
        .ok_or_else(|| refuse("a pod without spec.volumes"))?;
    let c = doc
        .get("spec")
        .and_then(|s| s.get("containers"))
        .and_then(|c| c.get(container))
        .ok_or_else(|| refuse("that container"))?;
    let mounts = c
        .get("volumeMounts")
        .and_then(Value::as_sequence)
        .ok_or_else(|| refuse("a container without volumeMounts"))?;
    let has_vol = vols
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(&mount.name));
    let has_mount = mounts
        .iter()
        .find(|m| m.get("name").and_then(Value::as_str) == Some(&mount.name));
    match (has_vol, has_mount) {
        (Some(v), Some(m)) => {
            let same = v
                .get("hostPath")
                .and_then(|h| h.get("path"))
                .and_then(Value::as_str)
                == Some(&mount.path)
                && m.get("mountPath").and_then(Value::as_str) == Some(&mount.path);
            return if same {
                Ok(input.to_vec())
            } else {
                Err(refuse(format!(
                    "volume {:?} already exists with another path",
                    mount.name
                )))
            };
        }
        (None, None) => {}
        _ => {
            return Err(refuse(format!(
                "volume {:?} half present (volume or mount only)",
                mount.name
            )))
        }
    }
    let mut with_vol = doc.clone();
    with_vol["spec"]["volumes"]
        .as_sequence_mut()
        .expect("checked above")
        .push(mount.volume_value());
    let mut with_both = with_vol.clone();
    with_both["spec"]["containers"][container]["volumeMounts"]
        .as_sequence_mut()
        .expect("checked above")
        .push(mount.mount_value());
    let step = append_to_sequence(text, "volumes", &|i| mount.volume_lines(i), &with_vol)?;
    let done = append_to_sequence(&step, "volumeMounts", &|i| mount.mount_lines(i), &with_both)?;
    Ok(done.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBEADM: &str = include_str!("../../demo/kube-apiserver.yaml");

    fn policy() -> HostMount {
        HostMount {
            name: "audit-policy".into(),
            path: "/etc/kubernetes/audit-policy.yaml".into(),
            kind: "File".into(),
            read_only: true,
        }
    }

    #[test]
    fn kubeadm_manifest_gets_volume_and_mount_and_keeps_every_other_line() {
        let out = add_host_mount(KUBEADM.as_bytes(), 0, &policy()).unwrap();
        let out = String::from_utf8(out).unwrap();
        let diff = similar::TextDiff::from_lines(KUBEADM, out.as_str());
        let added: Vec<&str> = diff
            .iter_all_changes()
            .filter(|c| c.tag() != similar::ChangeTag::Equal)
            .map(|c| {
                assert_eq!(c.tag(), similar::ChangeTag::Insert, "only insertions");
                c.value().trim_end_matches('\n')
            })
            .collect();
        assert_eq!(
            added,
            [
                "    - mountPath: /etc/kubernetes/audit-policy.yaml",
                "      name: audit-policy",
                "      readOnly: true",
                "  - hostPath:",
                "      path: /etc/kubernetes/audit-policy.yaml",
                "      type: File",
                "    name: audit-policy",
            ]
        );
        // Every original line is still there, in order.
        let mut it = out.lines();
        for l in KUBEADM.lines() {
            assert!(it.any(|o| o == l), "lost line {l:?}");
        }
        // Idempotent.
        assert_eq!(
            add_host_mount(out.as_bytes(), 0, &policy()).unwrap(),
            out.as_bytes()
        );
    }

    #[test]
    fn crlf_files_get_crlf_lines() {
        let crlf = KUBEADM.replace('\n', "\r\n");
        let out = add_host_mount(crlf.as_bytes(), 0, &policy()).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(!out.replace("\r\n", "").contains('\n'));
    }

    #[test]
    fn a_pod_without_volumes_is_refused_not_guessed() {
        let m = "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n  - name: x\n    volumeMounts: []\n";
        assert!(add_host_mount(m.as_bytes(), 0, &policy()).is_err());
    }
}
