//! Test-only stand-in for `kubeadm upgrade apply VERSION` / `kubeadm upgrade node`: does to a
//! manifests dir what kubeadm's static pod upgrade does (cmd/kubeadm/app/phases/upgrade/
//! staticpods.go), with the new manifests taken from a directory instead of rendered:
//!
//! 1. write the new manifests to `<kd>/tmp/kubeadm-upgraded-manifestsNNN/`;
//! 2. make `<kd>/tmp/kubeadm-backup-manifests-<date>-<time>/`;
//! 3. per component (etcd, kube-apiserver, kube-controller-manager, kube-scheduler): skip it when
//!    the new manifest equals the current one; else rename the current one into the backup dir,
//!    rename the new one into place, and wait until a process runs the new command line (the
//!    mirror pod's config hash changing, for kubeadm);
//! 4. on failure (a component that does not come up, or `KUBEADM_STANDIN_FAIL_AT`), move every
//!    backup back into place and exit 1; backup dirs are never pruned.
//!
//! Environment: `KUBEADM_STANDIN_NEW` (dir with the new `<component>.yaml` files, required),
//! `KUBEADM_STANDIN_KUBERNETES_DIR` (default /etc/kubernetes; manifests in `manifests/`),
//! `KUBEADM_STANDIN_FAIL_AT` (component name: fail when its turn comes),
//! `KUBEADM_STANDIN_WAIT_SECS` (default 60; 0 = do not wait for the new process).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const COMPONENTS: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

fn fail(msg: &str) -> ! {
    eprintln!("error execution phase upgrade: {msg}");
    std::process::exit(1)
}

fn argv_of(bytes: &[u8]) -> Option<Vec<String>> {
    kubeharden::manifest::container_argv(bytes, None)
        .ok()
        .map(|c| c.argv())
}

/// Some process whose argv is exactly `argv`.
fn running(argv: &[String]) -> bool {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return false;
    };
    rd.filter_map(|e| e.ok()).any(|e| {
        std::fs::read(e.path().join("cmdline")).is_ok_and(|raw| {
            let have: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect();
            have == argv
        })
    })
}

fn wait_for(argv: &[String], secs: u64) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        if running(argv) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn rollback(moved: &[(PathBuf, PathBuf)]) {
    for (current, backup) in moved.iter().rev() {
        println!(
            "[upgrade/rollback] Rolling back {} from {}",
            current.display(),
            backup.display()
        );
        if let Err(e) = std::fs::rename(backup, current) {
            eprintln!("[upgrade/rollback] FATAL: {e}");
        }
    }
}

fn fresh_dir(base: &Path, prefix: &str) -> PathBuf {
    for n in 0.. {
        let p = base.join(format!("{prefix}{n:03}"));
        if std::fs::create_dir(&p).is_ok() {
            return p;
        }
    }
    unreachable!()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["upgrade", "apply", v, ..] => println!("[upgrade] Upgrading your cluster to {v}"),
        ["upgrade", "node", ..] => {
            println!("[upgrade] Upgrading your Static Pod-hosted control plane instance")
        }
        _ => fail(&format!("kubeadm stand-in: unsupported command {args:?}")),
    }
    let new = PathBuf::from(
        std::env::var("KUBEADM_STANDIN_NEW")
            .unwrap_or_else(|_| fail("KUBEADM_STANDIN_NEW not set")),
    );
    let kd = PathBuf::from(
        std::env::var("KUBEADM_STANDIN_KUBERNETES_DIR")
            .unwrap_or_else(|_| "/etc/kubernetes".into()),
    );
    let fail_at = std::env::var("KUBEADM_STANDIN_FAIL_AT").ok();
    let wait: u64 = std::env::var("KUBEADM_STANDIN_WAIT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let manifests = kd.join("manifests");
    let tmp = kd.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap_or_else(|e| fail(&e.to_string()));
    let upgraded = fresh_dir(&tmp, "kubeadm-upgraded-manifests");
    let stamp = chrono::Local::now().format("%Y-%m-%d-%H-%M-%S");
    let backup = tmp.join(format!("kubeadm-backup-manifests-{stamp}"));
    std::fs::create_dir_all(&backup).unwrap_or_else(|e| fail(&e.to_string()));
    println!(
        "[upgrade/staticpods] Writing new Static Pod manifests to {:?}",
        upgraded
    );
    let mut moved: Vec<(PathBuf, PathBuf)> = Vec::new();
    for c in COMPONENTS {
        let src = new.join(format!("{c}.yaml"));
        let Ok(bytes) = std::fs::read(&src) else {
            continue;
        };
        let staged = upgraded.join(format!("{c}.yaml"));
        std::fs::write(&staged, &bytes).unwrap_or_else(|e| fail(&e.to_string()));
        let current = manifests.join(format!("{c}.yaml"));
        if fail_at.as_deref() == Some(c) {
            rollback(&moved);
            fail(&format!("[upgrade/apply] FATAL: couldn't upgrade control plane: static Pod hash for component {c} on Node sim-node did not change after 5m0s: timed out waiting for the condition"));
        }
        if std::fs::read(&current).is_ok_and(|cur| cur == bytes) {
            println!(
                "[upgrade/staticpods] Current and new manifests of {c} are equal, skipping upgrade"
            );
            continue;
        }
        let bak = backup.join(format!("{c}.yaml"));
        println!(
            "[upgrade/staticpods] Moving new manifest to {:?} and backing up old manifest to {:?}",
            current, bak
        );
        if let Err(e) = std::fs::rename(&current, &bak) {
            rollback(&moved);
            fail(&format!("backing up {}: {e}", current.display()));
        }
        moved.push((current.clone(), bak));
        if let Err(e) = std::fs::rename(&staged, &current) {
            rollback(&moved);
            fail(&format!("moving {}: {e}", staged.display()));
        }
        println!("[upgrade/staticpods] Waiting for the kubelet to restart the component");
        let argv = argv_of(&bytes).unwrap_or_default();
        if wait > 0 && !wait_for(&argv, wait) {
            rollback(&moved);
            fail(&format!("[upgrade/apply] FATAL: static Pod hash for component {c} did not change after {wait}s"));
        }
        println!("[upgrade/staticpods] Component {c:?} upgraded successfully!");
    }
    println!("[upgrade/successful] SUCCESS! Your cluster was upgraded. Enjoy!");
}
