//! Why a manifest changed outside kubeharden, and what hardening that change removed.
//!
//! The journal's VERSION records carry no reason, so `kubeharden kubeadm` keeps its own
//! append-only log beside the journal, `external-reasons.jsonl`: one line per version kubeadm
//! wrote (path, version, hash, reason naming the kubeadm command and its backup dir). It is a
//! note for people (`status`), never needed for recovery: a missing or torn line loses a reason,
//! not a version.

use crate::cis::rules::{Component, Remediation};
use crate::cis::BenchmarkId;
use crate::error::{IoContext, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const LOG_NAME: &str = "external-reasons.jsonl";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reason {
    pub path: String,
    pub version: u64,
    pub hash: String,
    pub reason: String,
    pub at_ms: i64,
}

pub fn log_path(state_root: &Path) -> PathBuf {
    state_root.join(LOG_NAME)
}

/// Append `entries` and fsync (the caller holds the state lock).
pub fn append(state_root: &Path, entries: &[Reason]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let p = log_path(state_root);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .ctx(|| format!("opening {}", p.display()))?;
    let mut buf = String::new();
    for e in entries {
        buf.push_str(&serde_json::to_string(e).unwrap_or_default());
        buf.push('\n');
    }
    f.write_all(buf.as_bytes())
        .and_then(|_| f.sync_all())
        .ctx(|| format!("writing {}", p.display()))
}

/// Every readable line (a torn last line is skipped).
pub fn read(state_root: &Path) -> Vec<Reason> {
    let Ok(text) = std::fs::read_to_string(log_path(state_root)) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The reason recorded for version `version` of `path`, if any.
pub fn reason_of<'a>(log: &'a [Reason], path: &str, version: u64) -> Option<&'a Reason> {
    log.iter()
        .rev()
        .find(|r| r.path == path && r.version == version)
}

fn argv_flags(bytes: &[u8]) -> Vec<(String, String)> {
    let Ok(c) = crate::manifest::container_argv(bytes, None) else {
        return Vec::new();
    };
    c.argv()
        .iter()
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| match a.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => (a.to_string(), String::new()),
        })
        .collect()
}

/// The CIS checks of `component` (all when `None`) whose fix sets flag `name`.
fn checks_for_flag(component: Option<Component>, name: &str) -> Vec<&'static str> {
    let mut ids: Vec<&'static str> = BenchmarkId::Cis112
        .checks()
        .into_iter()
        .filter(|c| component.is_none_or(|k| c.component == k))
        .filter(|c| {
            c.fix.iter().any(|f| match f {
                Remediation::SetFlag { name: n, .. } | Remediation::RemoveFlag { name: n } => {
                    *n == name
                }
                Remediation::AddToList { flag, .. } | Remediation::RemoveFromList { flag, .. } => {
                    *flag == name
                }
                Remediation::NeedsFile { kind } => {
                    crate::remediate::files::generate(*kind, Path::new("/etc/kubernetes"))
                        .map(|g| g.flag == name)
                        .unwrap_or(false)
                }
                _ => false,
            })
        })
        .map(|c| c.id)
        .collect();
    ids.dedup();
    ids
}

/// Flags of `before` that `after` no longer has with the same value: `--name=value (ids)`.
/// Only flags some CIS fix (or `extra`, the hardening file's own flags) sets count.
pub fn removed_items(before: &[u8], after: &[u8], extra: &[String]) -> Vec<String> {
    let component = crate::manifest::container_argv(before, None)
        .ok()
        .and_then(|c| super::file::component_of(&c.pod));
    let now = argv_flags(after);
    let mut out = Vec::new();
    for (name, value) in argv_flags(before) {
        if now.iter().any(|(n, v)| *n == name && *v == value) {
            continue;
        }
        let ids = checks_for_flag(component, &name);
        if ids.is_empty() && !extra.contains(&name) {
            continue;
        }
        let item = if value.is_empty() {
            format!("--{name}")
        } else {
            format!("--{name}={value}")
        };
        out.push(if ids.is_empty() {
            format!("{item} (hardening file)")
        } else {
            format!("{item} ({})", ids.join(", "))
        });
    }
    out
}

/// One external change that removed hardening, for `status`.
pub struct Removal {
    pub path: String,
    pub version: u64,
    pub at_ms: i64,
    pub reason: Option<String>,
    pub removed: Vec<String>,
    /// A later kubeharden version of the file (re-hardened), if any.
    pub rehardened_in: Option<u64>,
}

impl Removal {
    pub fn line(&self) -> String {
        let name = Path::new(&self.path)
            .file_name()
            .map_or(self.path.clone(), |n| n.to_string_lossy().into_owned());
        let when = chrono::DateTime::from_timestamp_millis(self.at_ms)
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_default();
        format!(
            "{name} changed outside kubeharden at {when}{} (v{}): removed {}{}",
            self.reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
            self.version,
            self.removed.join(", "),
            match self.rehardened_in {
                Some(v) => format!("; re-hardened in v{v}"),
                None => "; not re-applied yet: run 'kubeharden apply'".to_string(),
            }
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "path": self.path, "version": self.version,
            "at": chrono::DateTime::from_timestamp_millis(self.at_ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            "reason": self.reason, "removed": self.removed, "rehardened_in": self.rehardened_in,
        })
    }
}

/// The latest external version of `path` that removed hardening items of the version before
/// it. `extra`: flag names the hardening file sets.
pub fn last_removal(
    catalog: &crate::catalog::Catalog,
    store: &crate::store::objects::ObjectStore,
    state_root: &Path,
    path: &str,
    extra: &[String],
) -> Result<Option<Removal>> {
    let versions = catalog.versions(Some(path))?;
    let Some(i) = versions.iter().rposition(|v| v.origin == "external") else {
        return Ok(None);
    };
    if i == 0 {
        return Ok(None);
    }
    let (prev, ext) = (&versions[i - 1], &versions[i]);
    let before = store.get(&prev.state.hash)?;
    let after = store.get(&ext.state.hash)?;
    let removed = removed_items(&before, &after, extra);
    if removed.is_empty() {
        return Ok(None);
    }
    let log = read(state_root);
    Ok(Some(Removal {
        path: path.to_string(),
        version: ext.version,
        at_ms: ext.on_disk_from,
        reason: reason_of(&log, path, ext.version).map(|r| r.reason.clone()),
        removed,
        rehardened_in: versions[i + 1..]
            .iter()
            .rev()
            .find(|v| v.origin == "change")
            .map(|v| v.version),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const API: &[u8] =
        include_bytes!("../../tests/data/manifests/kubeadm-v1.30.14/kube-apiserver.yaml");

    #[test]
    fn removed_hardening_flags_are_named_with_their_checks() {
        let text = String::from_utf8(API.to_vec()).unwrap();
        let hardened = text.replace(
            "    - --advertise-address",
            "    - --profiling=false\n    - --tls-min-version=VersionTLS13\n    - --advertise-address",
        );
        let r = removed_items(hardened.as_bytes(), API, &["tls-min-version".into()]);
        assert_eq!(
            r,
            [
                "--profiling=false (1.2.15)",
                "--tls-min-version=VersionTLS13 (hardening file)"
            ]
        );
        assert!(removed_items(API, hardened.as_bytes(), &[]).is_empty());
    }
}
