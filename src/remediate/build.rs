//! From a batch of CIS fixes to the new manifest bytes (flags set through the byte-preserving
//! editor, hostPath mounts added) and the files to create beside it.

use super::files::{self, Generated};
use crate::cis::flags::Flags;
use crate::cis::rules::{Component, NeededFile, Remediation};
use crate::manifest::volumes::{add_host_mount, HostMount};
use crate::manifest::{self, FlagEdit};
use std::collections::BTreeMap;
use std::path::Path;

pub struct Built {
    pub manifest: Vec<u8>,
    /// Files to create (absent now) in the same transaction.
    pub files: Vec<Generated>,
    /// `--name=value` / `--name (removed)` for the report.
    pub flags: Vec<String>,
    pub notes: Vec<String>,
}

/// A volume name the pod does not already use for something else: `kubeharden-` + the path.
/// A volume name is a DNS label (at most 63 characters): a longer one is cut and ends in 8 hex
/// digits of the full path's hash, so two long paths sharing a prefix stay apart.
fn volume_name(path: &str) -> String {
    let body: String = path
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = format!("kubeharden-{body}");
    if name.len() <= 63 {
        return name.trim_end_matches('-').to_string();
    }
    let hash = blake3::hash(path.as_bytes()).to_hex();
    let keep = &name[..63 - 9];
    format!("{}-{}", keep.trim_end_matches('-'), &hash[..8])
}

fn container_index(bytes: &[u8], name: &str) -> Option<usize> {
    let doc: serde_norway::Value = serde_norway::from_slice(bytes).ok()?;
    doc.get("spec")?
        .get("containers")?
        .as_sequence()?
        .iter()
        .position(|c| c.get("name").and_then(|n| n.as_str()) == Some(name))
}

/// Apply `fixes` (flag, file and mount steps) to a component's manifest.
pub fn build(
    bytes: &[u8],
    component: Component,
    fixes: &[Remediation],
    kubernetes_dir: &Path,
    exists: &dyn Fn(&Path) -> bool,
) -> Result<Built, String> {
    build_with(bytes, component, fixes, kubernetes_dir, exists, &|_| None)
}

/// [`build`], with operator-provided files: `provided(kind)` names a file the operator wrote
/// (hardening file `files:`) to use instead of generating one; it is referenced and mounted,
/// never created or overwritten.
pub fn build_with(
    bytes: &[u8],
    component: Component,
    fixes: &[Remediation],
    kubernetes_dir: &Path,
    exists: &dyn Fn(&Path) -> bool,
    provided: &dyn Fn(NeededFile) -> Option<std::path::PathBuf>,
) -> Result<Built, String> {
    let c = manifest::container_argv(bytes, None).map_err(|e| e.to_string())?;
    let argv = c.argv();
    let has_program = c.has_command && !c.command.is_empty();
    let current = Flags::parse(component, &argv, has_program);
    let mut state: BTreeMap<String, Option<String>> = BTreeMap::new();
    let value = |state: &BTreeMap<String, Option<String>>, name: &str| -> Option<String> {
        match state.get(name) {
            Some(v) => v.clone(),
            None => current.value(name),
        }
    };
    let mut mounts: Vec<HostMount> = Vec::new();
    let mut files_out: Vec<Generated> = Vec::new();
    let mut notes = Vec::new();
    for fix in fixes {
        match *fix {
            Remediation::SetFlag { name, value } => {
                // The table speaks kubeadm's paths; this node's kubernetes dir may differ.
                let value = match value.strip_prefix("/etc/kubernetes/") {
                    Some(rest) => kubernetes_dir.join(rest).to_string_lossy().into_owned(),
                    None => value.to_string(),
                };
                state.insert(name.into(), Some(value));
            }
            Remediation::AddToList { flag, item } => {
                let mut items: Vec<String> = value(&state, flag)
                    .unwrap_or_default()
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| s.trim().to_string())
                    .collect();
                if !items.iter().any(|i| i == item) {
                    items.push(item.to_string());
                }
                state.insert(flag.into(), Some(items.join(",")));
            }
            Remediation::RemoveFromList { flag, item } => {
                if let Some(v) = value(&state, flag) {
                    let items: Vec<&str> = v
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty() && *s != item)
                        .collect();
                    state.insert(flag.into(), (!items.is_empty()).then(|| items.join(",")));
                }
            }
            Remediation::RemoveFlag { name } => {
                state.insert(name.into(), None);
            }
            Remediation::NeedsFile { kind } => {
                let mut g = files::generate(kind, kubernetes_dir)
                    .map_err(|e| format!("generating the {} file: {e}", kind.name()))?;
                let operator_file = provided(kind);
                if let Some(p) = &operator_file {
                    g.path = p.clone();
                }
                if let Some(mine) = value(&state, g.flag) {
                    notes.push(format!("--{} already names {mine}; kept as it is", g.flag));
                    continue;
                }
                let path = g.path.to_string_lossy().into_owned();
                state.insert(g.flag.into(), Some(path.clone()));
                mounts.push(HostMount {
                    name: volume_name(&path),
                    path,
                    kind: "File".into(),
                    read_only: true,
                });
                if operator_file.is_some() {
                    // The operator's own file: never generated, even when absent (apply checks).
                } else if exists(&g.path) {
                    notes.push(format!(
                        "{} exists; kubeharden uses it as it is",
                        g.path.display()
                    ));
                } else {
                    files_out.push(g);
                }
            }
            Remediation::Mount { path, read_only } => mounts.push(HostMount {
                name: volume_name(path),
                path: path.into(),
                kind: "DirectoryOrCreate".into(),
                read_only,
            }),
            Remediation::Chmod { .. } | Remediation::Chown { .. } => {}
            Remediation::Manual(what) => notes.push(what.to_string()),
        }
    }
    let edits: Vec<FlagEdit> = state
        .iter()
        .map(|(name, v)| match v {
            Some(value) => FlagEdit::Set {
                name: name.clone(),
                value: value.clone(),
            },
            None => FlagEdit::Unset { name: name.clone() },
        })
        .collect();
    let flags = edits
        .iter()
        .map(|e| match e {
            FlagEdit::Set { name, value } => format!("--{name}={value}"),
            FlagEdit::Unset { name } => format!("--{name} (removed)"),
        })
        .collect();
    let mut out = manifest::edit_flags(bytes, None, &edits)
        .map_err(|e| e.to_string())?
        .bytes;
    if !mounts.is_empty() {
        let index = container_index(&out, &c.name)
            .ok_or_else(|| format!("container {:?} not found in spec.containers", c.name))?;
        for m in &mounts {
            out = add_host_mount(&out, index, m).map_err(|e| e.to_string())?;
        }
    }
    Ok(Built {
        manifest: out,
        files: files_out,
        flags,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item9_long_volume_names_stay_unique_with_a_hash_suffix() {
        let base = "/var/log/kubernetes/a-very-long-directory-name-for-audit-logs-of-the-cluster";
        let (a, b) = (format!("{base}/one"), format!("{base}/two"));
        let (na, nb) = (volume_name(&a), volume_name(&b));
        assert_eq!(na[..54], nb[..54], "the test paths share the kept prefix");
        assert_ne!(na, nb);
        for n in [&na, &nb] {
            assert!(n.len() <= 63, "{n}");
            assert!(n
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            assert!(n.ends_with(|c: char| c.is_ascii_alphanumeric()), "{n}");
        }
        assert_eq!(volume_name(&a), na, "deterministic");
        // Short names are as before.
        assert_eq!(
            volume_name("/etc/kubernetes/audit/"),
            "kubeharden-etc-kubernetes-audit"
        );
    }

    const KUBEADM: &[u8] = include_bytes!("../../demo/kube-apiserver.yaml");

    #[test]
    fn audit_log_fix_sets_flags_mounts_the_log_dir_and_creates_the_policy() {
        let fixes = [
            Remediation::SetFlag {
                name: "audit-log-path",
                value: "/var/log/kubernetes/audit/audit.log",
            },
            Remediation::Mount {
                path: "/var/log/kubernetes/audit",
                read_only: false,
            },
            Remediation::NeedsFile {
                kind: crate::cis::rules::NeededFile::AuditPolicy,
            },
            Remediation::AddToList {
                flag: "enable-admission-plugins",
                item: "NodeRestriction",
            },
            Remediation::AddToList {
                flag: "enable-admission-plugins",
                item: "DenyServiceExternalIPs",
            },
        ];
        let b = build(
            KUBEADM,
            Component::ApiServer,
            &fixes,
            Path::new("/etc/kubernetes"),
            &|_| false,
        )
        .unwrap();
        let c = manifest::container_argv(&b.manifest, None).unwrap();
        let argv = c.argv();
        for want in [
            "--audit-log-path=/var/log/kubernetes/audit/audit.log",
            "--audit-policy-file=/etc/kubernetes/audit-policy.yaml",
            "--enable-admission-plugins=NodeRestriction,DenyServiceExternalIPs",
        ] {
            assert!(argv.iter().any(|a| a == want), "{want} in {argv:?}");
        }
        let text = String::from_utf8(b.manifest).unwrap();
        assert!(text.contains("name: kubeharden-var-log-kubernetes-audit"));
        assert!(text.contains("mountPath: /etc/kubernetes/audit-policy.yaml"));
        assert_eq!(b.files.len(), 1);
    }
}
