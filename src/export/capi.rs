//! A Cluster API KubeadmControlPlane `spec.kubeadmConfigSpec` fragment (bootstrap provider
//! v1beta1: extraArgs is a map, extraVolumes `{name, hostPath, mountPath, readOnly, pathType}`):
//! the hardening as clusterConfiguration extraArgs/extraVolumes, the files those flags name,
//! and postKubeadmCommands that converge and audit every machine with kubeharden.
//!
//! The encryption configuration holds a key: it is never inlined. It is a `contentFrom.secret`
//! reference to a Secret the operator creates in the management cluster.

use super::delta::Delta;
use super::{merge_cluster_configuration, patches, Api};
use serde_json::{json, Map, Value};

/// A file a flag of the desired kube-apiserver names, with its content (or a secret).
pub struct NodeFile {
    pub path: String,
    /// `None`: the encryption config, referenced from a Secret.
    pub content: Option<String>,
}

pub struct CapiInput<'a> {
    pub deltas: &'a [Delta],
    pub files: Vec<NodeFile>,
    /// The hardening file's text, installed on every machine for postKubeadmCommands.
    pub hardening: String,
    pub hardening_path: String,
    /// Name of the Secret with the encryption configuration (key `encryption-config.yaml`).
    pub secret: String,
}

const PATCH_DIR: &str = "/etc/kubeharden/kubeadm-patches";

pub fn fragment(i: &CapiInput) -> Value {
    let mut cc = Map::new();
    // CAPI's v1beta1 KubeadmConfigSpec takes kubeadm v1beta3-style maps.
    merge_cluster_configuration(&mut cc, i.deltas, Api::V1beta3);
    let mut files: Vec<Value> = Vec::new();
    for f in &i.files {
        files.push(match &f.content {
            Some(c) => {
                json!({"path": f.path, "owner": "root:root", "permissions": "0600", "content": c})
            }
            None => json!({"path": f.path, "owner": "root:root", "permissions": "0600",
                "contentFrom": {"secret": {"name": i.secret, "key": "encryption-config.yaml"}}}),
        });
    }
    files.push(json!({"path": i.hardening_path, "owner": "root:root", "permissions": "0644", "content": i.hardening}));
    let patch_files = patches(i.deltas);
    for (name, content) in &patch_files {
        files.push(json!({"path": format!("{PATCH_DIR}/{name}"), "owner": "root:root", "permissions": "0644", "content": content}));
    }
    let mut spec = json!({
        "clusterConfiguration": Value::Object(cc),
        "files": files,
        "postKubeadmCommands": [
            format!("kubeharden apply -f {}", i.hardening_path),
            format!("kubeharden audit -f {}", i.hardening_path),
        ],
    });
    if !patch_files.is_empty() {
        // Patches are not stored in the cluster: every init and join must name them.
        spec["initConfiguration"] = json!({"patches": {"directory": PATCH_DIR}});
        spec["joinConfiguration"] = json!({"patches": {"directory": PATCH_DIR}});
    }
    spec
}
