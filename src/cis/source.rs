//! Where a component's command line comes from: its static pod manifest (the container's
//! command and args, env, and the hostPath volumes that map container paths to host paths),
//! and the running processes whose argv[0] basename is the component's binary (/proc).

use crate::cis::rules::Component;
use crate::gate::procs;
use crate::manifest;
use serde_norway::Value;
use std::fs;
use std::path::{Path, PathBuf};

/// A component's static pod, as its manifest states it.
#[derive(Debug, Clone)]
pub struct Pod {
    pub path: PathBuf,
    /// `command ++ args`.
    pub argv: Vec<String>,
    /// `argv[0]` is the program (the container has a non-empty `command`).
    pub has_program: bool,
    /// The container's `env` entries with a literal `value`.
    pub env: Vec<(String, String)>,
    /// The container's image, e.g. `registry.k8s.io/kube-apiserver:v1.30.14`.
    pub image: Option<String>,
    /// (mountPath, host path) of the container's hostPath mounts.
    mounts: Vec<(String, String)>,
}

/// A running process of a component.
#[derive(Debug, Clone)]
pub struct Process {
    pub pid: i32,
    pub argv: Vec<String>,
    /// `/proc/PID/environ` (empty when unreadable).
    pub env: Vec<(String, String)>,
}

/// The manifest of a component: `NAME.yaml`, `.yml` or `.manifest` in the manifests dir
/// (kube-bench's candidates). The first that exists, else the `.yaml` name.
pub fn manifest_path(dir: &Path, c: Component) -> PathBuf {
    let name = c.binary();
    ["yaml", "yml", "manifest"]
        .iter()
        .map(|ext| dir.join(format!("{name}.{ext}")))
        .find(|p| p.exists())
        .unwrap_or_else(|| dir.join(format!("{name}.yaml")))
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn seq<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key)
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
}

impl Pod {
    /// Reads the manifest; `Err` says why it cannot be used.
    pub fn load(path: &Path) -> Result<Pod, String> {
        let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let c = manifest::container_argv(&bytes, None)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let root: Value = serde_norway::from_slice(body).unwrap_or(Value::Null);
        let spec = root.get("spec").cloned().unwrap_or(Value::Null);
        let host_paths: Vec<(String, String)> = seq(&spec, "volumes")
            .filter_map(|v| {
                let path = v.get("hostPath").and_then(|h| str_of(h, "path"))?;
                Some((str_of(v, "name")?, path))
            })
            .collect();
        let mounts = seq(&c.container, "volumeMounts")
            .filter_map(|m| {
                let name = str_of(m, "name")?;
                let (_, host) = host_paths.iter().find(|(n, _)| *n == name)?;
                let host = match str_of(m, "subPath").filter(|s| !s.is_empty()) {
                    Some(sub) => format!("{}/{sub}", host.trim_end_matches('/')),
                    None => host.clone(),
                };
                Some((str_of(m, "mountPath")?, host))
            })
            .collect();
        let env = seq(&c.container, "env")
            .filter_map(|e| Some((str_of(e, "name")?, str_of(e, "value")?)))
            .collect();
        Ok(Pod {
            path: path.to_path_buf(),
            argv: c.argv(),
            has_program: !c.command.is_empty(),
            env,
            image: str_of(&c.container, "image"),
            mounts,
        })
    }

    /// The host path of a path inside the container, through the hostPath mount that holds
    /// it (the longest mountPath prefix). `None` when no hostPath mount holds it.
    pub fn host_path(&self, container_path: &str) -> Option<PathBuf> {
        let p = Path::new(container_path);
        self.mounts
            .iter()
            .filter_map(|(mount, host)| {
                let rest = p.strip_prefix(mount).ok()?;
                let host = match rest.as_os_str().is_empty() {
                    true => PathBuf::from(host),
                    false => Path::new(host).join(rest),
                };
                Some((mount.len(), host))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, h)| h)
    }
}

fn read_environ(pid: i32) -> Vec<(String, String)> {
    let Ok(raw) = fs::read(format!("/proc/{pid}/environ")) else {
        return Vec::new();
    };
    raw.split(|&b| b == 0)
        .filter_map(|kv| {
            let s = String::from_utf8_lossy(kv);
            let (k, v) = s.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// The basename of argv[0].
fn program_name(argv0: &str) -> &str {
    argv0.rsplit('/').next().unwrap_or(argv0)
}

/// Live processes whose argv[0] basename is `binary`, oldest pid first; not this process.
pub fn find_processes(binary: &str) -> Vec<Process> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    let mut found: Vec<Process> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let argv = procs::cmdline(pid)?;
            if program_name(argv.first()?) != binary || !procs::alive(pid) {
                return None;
            }
            Some(Process {
                pid,
                env: read_environ(pid),
                argv,
            })
        })
        .collect();
    found.sort_by_key(|p| p.pid);
    found
}

/// `NAME=value` lines, as kube-bench's env audit prints `/proc/PID/environ`.
pub fn env_text(env: &[(String, String)]) -> String {
    env.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_through_mounts() {
        let dir = std::env::temp_dir().join(format!("kubeharden-cis-src-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let m = dir.join("etcd.yaml");
        fs::write(
            &m,
            "apiVersion: v1\nkind: Pod\nmetadata: {name: etcd}\nspec:\n  containers:\n  - name: etcd\n    \
             image: registry.k8s.io/etcd:3.5.21-0\n    command: [etcd, --data-dir=/var/lib/etcd]\n    \
             env: [{name: ETCD_X, value: '1'}]\n    volumeMounts:\n    - {name: d, mountPath: /var/lib/etcd}\n    \
             - {name: c, mountPath: /etc/kubernetes/pki/etcd}\n  volumes:\n  - name: d\n    hostPath: {path: /srv/etcd}\n  \
             - name: c\n    hostPath: {path: /etc/kubernetes/pki/etcd}\n",
        )
        .unwrap();
        let pod = Pod::load(&m).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(pod.argv, vec!["etcd", "--data-dir=/var/lib/etcd"]);
        assert!(pod.has_program);
        assert_eq!(pod.env, vec![("ETCD_X".to_string(), "1".to_string())]);
        assert_eq!(
            pod.host_path("/var/lib/etcd"),
            Some(PathBuf::from("/srv/etcd"))
        );
        assert_eq!(
            pod.host_path("/var/lib/etcd/member"),
            Some(PathBuf::from("/srv/etcd/member"))
        );
        assert_eq!(pod.host_path("/var/lib/etcdx"), None);
        assert_eq!(pod.host_path("/opt"), None);
        assert_eq!(pod.image.as_deref(), Some("registry.k8s.io/etcd:3.5.21-0"));
    }

    #[test]
    fn finds_processes_by_basename() {
        use std::os::unix::process::CommandExt;
        let name = format!("kh-cis-{}", std::process::id());
        let mut child = std::process::Command::new("sleep")
            .arg0(format!("/some/dir/{name}"))
            .arg("30")
            .spawn()
            .unwrap();
        let mut hit = Vec::new();
        for _ in 0..100 {
            hit = find_processes(&name);
            if !hit.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(hit.len(), 1);
        assert_eq!(hit[0].pid, child.id() as i32);
        assert_eq!(hit[0].argv[1], "30");
    }
}
