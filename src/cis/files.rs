//! File checks (1.1.x): which files a check stats, and what `stat` says of each.
//!
//! Paths follow kubeadm's layout: manifests in the manifests dir; admin.conf, super-admin.conf,
//! scheduler.conf, controller-manager.conf and pki/ in the kubernetes dir; etcd's data dir
//! from its `--data-dir` through the pod's hostPath volume; CNI files from a running kubelet's
//! `--cni-conf-dir` and /var/lib/cni/networks (as kube-bench looks, see 1.1.9).
//!
//! Each file gives one line of output, under two readings: kube-bench's (`stat` without `-L`,
//! `%U:%G` names, substring tests) and ours (the file a symlink points to, exact owner).

use crate::cis::eval::Lookup;
use crate::cis::flags::kube_bench_find;
use crate::cis::rules::{Component, FileTarget, Item};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where the file checks look.
#[derive(Debug, Clone, Default)]
pub struct FileEnv {
    pub manifests: BTreeMap<Component, PathBuf>,
    pub kubernetes_dir: PathBuf,
    /// etcd's data dir on the host, if known.
    pub etcd_data_dir: Option<PathBuf>,
    /// `--cni-conf-dir` of running kubelets.
    pub cni_conf_dirs: Vec<PathBuf>,
    /// /var/lib/cni/networks (a field so that tests can point elsewhere).
    pub cni_networks: PathBuf,
}

/// What `stat` says of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFact {
    pub path: PathBuf,
    /// Mode bits (& 0o7777) and `user:group` of the file itself (`stat` without `-L`).
    pub lmode: u32,
    pub lowner: String,
    /// The same of the file a symlink points to (equal to the above for other files).
    pub mode: u32,
    pub owner: String,
    pub symlink: bool,
}

fn user(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
}

fn group(gid: u32) -> Option<String> {
    nix::unistd::Group::from_gid(gid.into())
        .ok()
        .flatten()
        .map(|g| g.name)
}

fn owner(m: &fs::Metadata, unknown: &str) -> String {
    let u = user(m.uid()).unwrap_or_else(|| {
        if unknown.is_empty() {
            m.uid().to_string()
        } else {
            unknown.into()
        }
    });
    let g = group(m.gid()).unwrap_or_else(|| {
        if unknown.is_empty() {
            m.gid().to_string()
        } else {
            unknown.into()
        }
    });
    format!("{u}:{g}")
}

/// `stat` of one path; `None` when it does not exist.
pub fn fact(path: &Path) -> Option<FileFact> {
    let l = fs::symlink_metadata(path).ok()?;
    let t = fs::metadata(path).unwrap_or_else(|_| l.clone());
    Some(FileFact {
        path: path.to_path_buf(),
        lmode: l.mode() & 0o7777,
        // GNU stat prints UNKNOWN for an id without a name.
        lowner: owner(&l, "UNKNOWN"),
        mode: t.mode() & 0o7777,
        owner: owner(&t, ""),
        symlink: l.file_type().is_symlink(),
    })
}

/// `find DIR` (no symlinks followed below DIR), sorted.
fn walk(dir: &Path, include_root: bool, out: &mut Vec<PathBuf>) {
    if include_root && dir.exists() {
        out.push(dir.to_path_buf());
    }
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        out.push(p.clone());
        if is_dir {
            walk(&p, false, out);
        }
    }
}

fn ends_with(p: &Path, suffix: &str) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(suffix))
}

/// The paths a target names: named files (reported "not found" when missing), or what a
/// `find` lists (only what exists).
pub fn paths(target: FileTarget, env: &FileEnv) -> Vec<PathBuf> {
    let k = &env.kubernetes_dir;
    let pki = k.join("pki");
    match target {
        FileTarget::Manifest(c) => env.manifests.get(&c).cloned().into_iter().collect(),
        FileTarget::SchedulerConf => vec![k.join("scheduler.conf")],
        FileTarget::ControllerManagerConf => vec![k.join("controller-manager.conf")],
        FileTarget::EtcdDataDir => env.etcd_data_dir.clone().into_iter().collect(),
        FileTarget::AdminConfs => ["admin.conf", "super-admin.conf"]
            .iter()
            .map(|n| k.join(n))
            .filter(|p| p.symlink_metadata().is_ok())
            .collect(),
        FileTarget::PkiAll | FileTarget::PkiCrt | FileTarget::PkiKey => {
            let mut all = Vec::new();
            walk(&pki, true, &mut all);
            match target {
                FileTarget::PkiCrt => all.retain(|p| ends_with(p, ".crt")),
                FileTarget::PkiKey => all.retain(|p| ends_with(p, ".key")),
                _ => {}
            }
            all
        }
        FileTarget::Cni => {
            let mut all = Vec::new();
            for d in &env.cni_conf_dirs {
                walk(d, false, &mut all);
            }
            let mut nets = Vec::new();
            walk(&env.cni_networks, false, &mut nets);
            all.extend(
                nets.into_iter()
                    .filter(|p| p.symlink_metadata().is_ok_and(|m| m.is_file())),
            );
            all
        }
    }
}

/// One line of kube-bench's output for a file, in the form its audit prints for `flag`.
pub fn kube_bench_line(f: &FileFact, flag: &str, with_name: bool) -> String {
    let name = if with_name {
        format!(" {}", f.path.display())
    } else {
        String::new()
    };
    match flag {
        "permissions" => format!("permissions={:o}{name}", f.lmode),
        "ownership" => format!("ownership={}{name}", f.lowner),
        _ => format!("{}{name}", f.lowner),
    }
}

/// Our reading of a file for an item: the target's mode, its exact owner.
pub struct OurLine<'a>(pub &'a FileFact);

impl Lookup for OurLine<'_> {
    fn find(&self, item: &Item) -> Option<String> {
        match item.flag {
            "permissions" => Some(format!("{:o}", self.0.mode)),
            "ownership" => Some(self.0.owner.clone()),
            owner => (self.0.owner == owner).then(|| owner.to_string()),
        }
    }
}

/// kube-bench's reading of a file's `stat` line.
pub struct KubeBenchLine(pub String);

impl Lookup for KubeBenchLine {
    fn find(&self, item: &Item) -> Option<String> {
        kube_bench_find(&self.0, item.flag)
    }
}

/// `found` text for a file check: the value per file, failing files first.
pub fn describe(facts: &[(FileFact, bool)], flag: &str) -> String {
    let value = |f: &FileFact| match flag {
        "permissions" => format!("permissions={:o}", f.mode),
        _ => format!("ownership={}", f.owner),
    };
    if facts.len() == 1 {
        return value(&facts[0].0);
    }
    let failing: Vec<String> = facts
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(f, _)| format!("{} {}", f.path.display(), value(f)))
        .collect();
    if failing.is_empty() {
        let mut values: Vec<String> = facts.iter().map(|(f, _)| value(f)).collect();
        values.sort();
        values.dedup();
        return format!("{} ({} files)", values.join(", "), facts.len());
    }
    let shown = failing
        .iter()
        .take(5)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    match failing.len() {
        n if n > 5 => format!("{shown}; and {} more of {} files", n - 5, facts.len()),
        _ => format!("{shown} ({} of {} files fail)", failing.len(), facts.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn pki_walk_and_lines() {
        let d = std::env::temp_dir().join(format!("kubeharden-cis-files-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("pki/etcd")).unwrap();
        for (n, m) in [
            ("pki/ca.crt", 0o644),
            ("pki/ca.key", 0o600),
            ("pki/etcd/ca.key", 0o640),
        ] {
            fs::write(d.join(n), "x").unwrap();
            fs::set_permissions(d.join(n), fs::Permissions::from_mode(m)).unwrap();
        }
        let env = FileEnv {
            kubernetes_dir: d.clone(),
            ..Default::default()
        };
        let all = paths(FileTarget::PkiAll, &env);
        assert_eq!(all.len(), 5, "{all:?}");
        let keys = paths(FileTarget::PkiKey, &env);
        assert_eq!(keys, vec![d.join("pki/ca.key"), d.join("pki/etcd/ca.key")]);
        assert!(paths(FileTarget::AdminConfs, &env).is_empty());
        let f = fact(&keys[1]).unwrap();
        assert_eq!(kube_bench_line(&f, "permissions", false), "permissions=640");
        assert_eq!(kube_bench_line(&f, "root:root", false), "root:root");
        assert_eq!(
            OurLine(&f)
                .find(&crate::cis::rules::present("root:root"))
                .as_deref(),
            Some("root:root")
        );
        assert!(fact(&d.join("nope")).is_none());
        fs::remove_dir_all(&d).unwrap();
    }
}
