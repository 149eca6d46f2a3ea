//! The hardening as configuration kubeadm renders itself, so an upgrade or a joining node keeps
//! it: a ClusterConfiguration (`extraArgs`/`extraVolumes`, kubeadm.k8s.io v1beta3 map or v1beta4
//! list), kubeadm patch files for what extraArgs cannot express (removing a flag kubeadm
//! renders; etcd mounts), and a Cluster API KubeadmControlPlane `spec.kubeadmConfigSpec`
//! fragment. `delta` computes what kubeharden adds to kubeadm's rendering.

pub mod capi;
pub mod delta;

use crate::cis::rules::Component;
use delta::{Delta, Volume};
use serde_json::{json, Map, Value};

/// kubeadm's ClusterConfiguration API versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    V1beta3,
    V1beta4,
}

impl Api {
    pub fn parse(s: &str) -> Option<Api> {
        match s.trim_start_matches("kubeadm.k8s.io/") {
            "v1beta3" => Some(Api::V1beta3),
            "v1beta4" => Some(Api::V1beta4),
            _ => None,
        }
    }
    pub fn api_version(self) -> &'static str {
        match self {
            Api::V1beta3 => "kubeadm.k8s.io/v1beta3",
            Api::V1beta4 => "kubeadm.k8s.io/v1beta4",
        }
    }
}

/// The ClusterConfiguration key of a component's section.
fn section(c: Component) -> &'static str {
    match c {
        Component::ApiServer => "apiServer",
        Component::ControllerManager => "controllerManager",
        Component::Scheduler => "scheduler",
        _ => "etcd",
    }
}

fn volume_json(v: &Volume) -> Value {
    let mut m = json!({"name": v.name, "hostPath": v.host_path, "mountPath": v.mount_path, "readOnly": v.read_only});
    if !v.path_type.is_empty() {
        m["pathType"] = json!(v.path_type);
    }
    m
}

/// Merge `set` into an extraArgs value of the given shape (map, or list of {name, value}).
fn merge_args(
    existing: Option<&Value>,
    set: &std::collections::BTreeMap<String, String>,
    api: Api,
) -> Value {
    match api {
        Api::V1beta3 => {
            let mut m = existing
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for (k, v) in set {
                m.insert(k.clone(), json!(v));
            }
            Value::Object(m)
        }
        Api::V1beta4 => {
            let mut l: Vec<Value> = existing
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|a| a["name"].as_str().is_none_or(|n| !set.contains_key(n)))
                .collect();
            for (k, v) in set {
                l.push(json!({"name": k, "value": v}));
            }
            Value::Array(l)
        }
    }
}

/// Append `vols` to an extraVolumes list, replacing entries with the same name or mountPath.
fn merge_volumes(existing: Option<&Value>, vols: &[Volume]) -> Value {
    let mut l: Vec<Value> = existing
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            !vols.iter().any(|v| {
                e["name"].as_str() == Some(v.name.as_str())
                    || e["mountPath"].as_str() == Some(v.mount_path.as_str())
            })
        })
        .collect();
    l.extend(vols.iter().map(volume_json));
    Value::Array(l)
}

/// Put the deltas into a ClusterConfiguration (a JSON object), merging with what it has.
/// etcd's mounts are not expressible (LocalEtcd has no extraVolumes): they go to patches.
pub fn merge_cluster_configuration(cc: &mut Map<String, Value>, deltas: &[Delta], api: Api) {
    for d in deltas {
        if d.set.is_empty() && (d.volumes.is_empty() || d.component == Component::Etcd) {
            continue;
        }
        let sec = cc.entry(section(d.component)).or_insert_with(|| json!({}));
        let target = if d.component == Component::Etcd {
            let local = sec
                .as_object_mut()
                .map(|o| o.entry("local").or_insert_with(|| json!({})));
            match local {
                Some(l) => l,
                None => continue,
            }
        } else {
            sec
        };
        let Some(obj) = target.as_object_mut() else {
            continue;
        };
        if !d.set.is_empty() {
            let merged = merge_args(obj.get("extraArgs"), &d.set, api);
            obj.insert("extraArgs".into(), merged);
        }
        if !d.volumes.is_empty() && d.component != Component::Etcd {
            let merged = merge_volumes(obj.get("extraVolumes"), &d.volumes);
            obj.insert("extraVolumes".into(), merged);
        }
    }
}

/// What extraArgs/extraVolumes cannot express: (component, words) for the output's header.
pub fn needs_patches(deltas: &[Delta]) -> Vec<String> {
    let mut out = Vec::new();
    for d in deltas {
        for r in &d.removed {
            out.push(format!("{}: remove {r}", d.component.binary()));
        }
        if d.component == Component::Etcd {
            for v in &d.volumes {
                out.push(format!("etcd: mount {}", v.host_path));
            }
        }
    }
    out
}

/// kubeadm patch files (`--patches DIR`): a JSON patch per component removing flags (a `test`
/// op guards each `remove`, so a rendering that differs fails loudly instead of removing the
/// wrong item), and a strategic merge patch adding etcd's mounts. (file name, content).
pub fn patches(deltas: &[Delta]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for d in deltas {
        if !d.removed.is_empty() {
            let mut idx: Vec<(usize, &String)> = d
                .rendered
                .iter()
                .enumerate()
                .filter(|(_, a)| d.removed.contains(a))
                .collect();
            idx.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
            let ops: Vec<Value> = idx
                .iter()
                .flat_map(|(i, a)| {
                    let path = format!("/spec/containers/0/command/{i}");
                    [
                        json!({"op": "test", "path": path, "value": a}),
                        json!({"op": "remove", "path": path}),
                    ]
                })
                .collect();
            let text = serde_json::to_string_pretty(&ops).unwrap_or_default() + "\n";
            out.push((format!("{}0+json.json", d.component.binary()), text));
        }
        if d.component == Component::Etcd && !d.volumes.is_empty() {
            let vols: Vec<Value> = d
                .volumes
                .iter()
                .map(|v| json!({"name": v.name, "hostPath": {"path": v.host_path, "type": v.path_type}}))
                .collect();
            let mounts: Vec<Value> = d
                .volumes
                .iter()
                .map(
                    |v| json!({"name": v.name, "mountPath": v.mount_path, "readOnly": v.read_only}),
                )
                .collect();
            let p = json!({"spec": {"containers": [{"name": "etcd", "volumeMounts": mounts}], "volumes": vols}});
            out.push((
                "etcd1+strategic.yaml".into(),
                serde_norway::to_string(&p).unwrap_or_default(),
            ));
        }
    }
    out
}

/// A JSON value as YAML text; a Kubernetes-style object has `apiVersion` and `kind` first (the
/// rest in key order), as people expect to read it.
pub fn yaml(v: &Value) -> String {
    let Some(obj) = v.as_object() else {
        return serde_norway::to_string(v).unwrap_or_default();
    };
    let mut head = String::new();
    let mut rest = obj.clone();
    for k in ["apiVersion", "kind"] {
        if let Some(x) = rest.remove(k) {
            head.push_str(&serde_norway::to_string(&json!({ k: x })).unwrap_or_default());
        }
    }
    if rest.is_empty() {
        return head;
    }
    head + &serde_norway::to_string(&Value::Object(rest)).unwrap_or_default()
}
