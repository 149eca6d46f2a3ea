//! What kubeharden adds to kubeadm's rendering of each component: flags to set (kubeadm
//! `extraArgs`), flags to remove (only a patch can), and hostPath mounts (`extraVolumes`).
//!
//! "kubeadm's rendering" is the last content of the manifest that kubeharden did not write
//! (its `baseline` or latest `external` version: what kubeadm, or anyone outside kubeharden,
//! put there), else the file as it is. "Desired" is the file as `apply` would leave it.

use crate::cis::rules::Component;
use serde_norway::Value;
use std::collections::BTreeMap;

/// A hostPath mount, in kubeadm's `extraVolumes` shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub host_path: String,
    pub mount_path: String,
    pub read_only: bool,
    pub path_type: String,
}

#[derive(Debug, Clone)]
pub struct Delta {
    pub component: Component,
    /// name → value (no dashes), for extraArgs.
    pub set: BTreeMap<String, String>,
    /// Flags of kubeadm's rendering the desired manifest does not have (`--name=value` items).
    pub removed: Vec<String>,
    pub volumes: Vec<Volume>,
    /// kubeadm's rendering with `set` applied the way kubeadm does it: `command[0]` then the
    /// flags sorted; the indices JSON patches address.
    pub rendered: Vec<String>,
}

/// `--name=value` flags of the pod's container (argv[0] excluded), as (name, value).
pub fn flags(bytes: &[u8]) -> (String, Vec<(String, String)>) {
    let Ok(c) = crate::manifest::container_argv(bytes, None) else {
        return (String::new(), Vec::new());
    };
    let argv = c.argv();
    let program = argv
        .first()
        .filter(|a| !a.starts_with('-'))
        .cloned()
        .unwrap_or_default();
    let flags = argv
        .iter()
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| match a.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => (a.to_string(), String::new()),
        })
        .collect();
    (program, flags)
}

fn item(name: &str, value: &str) -> String {
    if value.is_empty() {
        format!("--{name}")
    } else {
        format!("--{name}={value}")
    }
}

/// The pod's hostPath volumes with the container's mount of each.
pub fn volumes(bytes: &[u8]) -> Vec<Volume> {
    let Ok(doc) = serde_norway::from_slice::<Value>(bytes) else {
        return Vec::new();
    };
    let pod = doc["metadata"]["name"].as_str().unwrap_or("").to_string();
    let containers = doc["spec"]["containers"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    let Some(c) = containers
        .iter()
        .find(|c| c["name"].as_str() == Some(pod.as_str()))
        .or(containers.first())
    else {
        return Vec::new();
    };
    let mounts = c["volumeMounts"].as_sequence().cloned().unwrap_or_default();
    let mut out = Vec::new();
    for v in doc["spec"]["volumes"].as_sequence().into_iter().flatten() {
        let (Some(name), Some(host)) = (v["name"].as_str(), v["hostPath"]["path"].as_str()) else {
            continue;
        };
        let Some(m) = mounts.iter().find(|m| m["name"].as_str() == Some(name)) else {
            continue;
        };
        out.push(Volume {
            name: name.to_string(),
            host_path: host.to_string(),
            mount_path: m["mountPath"].as_str().unwrap_or(host).to_string(),
            read_only: m["readOnly"].as_bool().unwrap_or(false),
            path_type: v["hostPath"]["type"].as_str().unwrap_or("").to_string(),
        });
    }
    out
}

/// The delta from kubeadm's rendering `stock` to the `desired` manifest.
pub fn delta(component: Component, stock: &[u8], desired: &[u8]) -> Delta {
    let (program, sf) = flags(stock);
    let (_, df) = flags(desired);
    let last = |v: &[(String, String)], n: &str| {
        v.iter().rev().find(|(k, _)| k == n).map(|(_, x)| x.clone())
    };
    let mut set = BTreeMap::new();
    for (n, v) in &df {
        if last(&sf, n).as_deref() != Some(v.as_str()) {
            set.insert(n.clone(), last(&df, n).unwrap_or_default());
        }
    }
    let removed: Vec<String> = sf
        .iter()
        .filter(|(n, _)| last(&df, n).is_none())
        .map(|(n, v)| item(n, v))
        .collect();
    let stock_vols = volumes(stock);
    let vols = volumes(desired)
        .into_iter()
        .filter(|v| !stock_vols.contains(v))
        .collect();
    // kubeadm: defaults, then extraArgs replace by name, rendered sorted.
    let mut merged: BTreeMap<String, String> = sf.iter().cloned().collect();
    for (n, v) in &set {
        merged.insert(n.clone(), v.clone());
    }
    // Sorted by flag name (kubeadmutil.ArgumentsToCommand sorts the names).
    let mut rendered: Vec<String> = merged.iter().map(|(n, v)| item(n, v)).collect();
    if !program.is_empty() {
        rendered.insert(0, program);
    }
    Delta {
        component,
        set,
        removed,
        volumes: vols,
        rendered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const API: &[u8] =
        include_bytes!("../../tests/data/manifests/kubeadm-v1.30.14/kube-apiserver.yaml");

    #[test]
    fn set_removed_and_volumes_are_the_difference() {
        let t = String::from_utf8(API.to_vec()).unwrap();
        let desired = t
            .replace(
                "    - --allow-privileged=true\n",
                "    - --allow-privileged=true\n    - --profiling=false\n",
            )
            .replace("    - --enable-bootstrap-token-auth=true\n", "")
            .replace(
                "    - --authorization-mode=Node,RBAC\n",
                "    - --authorization-mode=Node,RBAC,Webhook\n",
            );
        let d = delta(Component::ApiServer, API, desired.as_bytes());
        assert_eq!(
            d.set
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
            ["authorization-mode=Node,RBAC,Webhook", "profiling=false"]
        );
        assert_eq!(d.removed, ["--enable-bootstrap-token-auth=true"]);
        assert!(d.volumes.is_empty());
        assert_eq!(d.rendered[0], "kube-apiserver");
        assert!(d
            .rendered
            .contains(&"--enable-bootstrap-token-auth=true".to_string()));
        let names: Vec<&str> = d.rendered[1..]
            .iter()
            .map(|a| a.trim_start_matches("--").split('=').next().unwrap())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, names);
    }
}
