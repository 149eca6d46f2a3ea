//! `export kubeadm [--api v1beta3|v1beta4] [--from FILE]`, `export patches DIR`,
//! `export cluster-api`: the node's hardening (what `apply` leaves, minus kubeadm's own
//! rendering) as configuration kubeadm renders itself (`src/export/`). Reads only (the
//! patches are the one thing written, into DIR).

use super::apply::hardening_for_apply;
use crate::cis::rules::{Component, NeededFile};
use crate::cli::context::{absolute, Ctx};
use crate::cli::output::Outcome;
use crate::error::{Error, IoContext, Result};
use crate::export::capi::{self, CapiInput, NodeFile};
use crate::export::delta::{self, Delta};
use crate::export::{self, Api};
use crate::hardening::converge::{self, Target};
use crate::hardening::Hardening;
use crate::remediate::build;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// What the node has, what kubeadm rendered, what apply would leave: per component.
struct Node {
    deltas: Vec<Delta>,
    /// The desired kube-apiserver manifest (for the files its flags name).
    api_desired: Option<Vec<u8>>,
    hardening: Hardening,
    kubernetes_dir: PathBuf,
}

/// The last content of `path` kubeharden did not write (baseline/external), if recorded.
fn kubeadm_rendering(ctx: &Ctx, path: &Path) -> Result<Option<Vec<u8>>> {
    let Some(view) = ctx.open_read_only()? else {
        return Ok(None);
    };
    let key = path.to_string_lossy();
    let versions = view.unrecovered.catalog().versions(Some(&key))?;
    match versions
        .iter()
        .rev()
        .find(|v| v.origin == "baseline" || v.origin == "external")
    {
        Some(v) => Ok(Some(view.unrecovered.store().get(&v.state.hash)?)),
        None => Ok(None),
    }
}

fn node(ctx: &Ctx, file: Option<&Path>) -> Result<Node> {
    let h = hardening_for_apply(file)?;
    let no_gate = || Ok(None);
    let t = Target {
        manifests_dir: ctx.manifests_dir()?,
        kubernetes_dir: absolute(&ctx.global.kubernetes_dir)?,
        gate: &no_gate,
    };
    let p = converge::plan(&h, &t)?;
    let mut deltas = Vec::new();
    let mut api_desired = None;
    for c in converge::ORDER {
        let path = crate::cis::source::manifest_path(&t.manifests_dir, c);
        let Ok(current) = std::fs::read(&path) else {
            continue;
        };
        let desired = match p.plan.batches.iter().find(|(bc, _, _)| *bc == c) {
            Some((_, _, items)) => {
                let fixes: Vec<_> = items.iter().flat_map(|i| i.fix.iter().copied()).collect();
                let provided = |k| {
                    h.files
                        .iter()
                        .find(|(pk, _)| *pk == k)
                        .map(|(_, p)| p.clone())
                };
                build::build_with(
                    &current,
                    c,
                    &fixes,
                    &t.kubernetes_dir,
                    &|p: &Path| p.exists(),
                    &provided,
                )
                .map_err(|e| Error::usage(format!("{}: {e}", path.display())))?
                .manifest
            }
            None => current.clone(),
        };
        let stock = kubeadm_rendering(ctx, &path)?.unwrap_or(current);
        if c == Component::ApiServer {
            api_desired = Some(desired.clone());
        }
        deltas.push(delta::delta(c, &stock, &desired));
    }
    Ok(Node {
        deltas,
        api_desired,
        hardening: h,
        kubernetes_dir: t.kubernetes_dir,
    })
}

fn header(n: &Node, api: Api) -> String {
    let mut s = format!(
        "# kubeharden export kubeadm ({}): this node's hardening as ClusterConfiguration\n\
         # extraArgs/extraVolumes. Put it in ConfigMap kube-system/kubeadm-config (key\n\
         # ClusterConfiguration), then on each control-plane node:\n\
         #   kubeadm init phase control-plane all --config FILE   (or: kubeharden kubeadm -- ...)\n",
        api.api_version()
    );
    let p = export::needs_patches(&n.deltas);
    if p.is_empty() {
        s.push_str("# Everything is expressed here: no kubeadm patches needed.\n");
    } else {
        s.push_str("# NOT expressible as extraArgs/extraVolumes (use 'kubeharden export patches DIR' and\n# pass --patches DIR to every kubeadm init/join/upgrade apply/upgrade node):\n");
        for l in p {
            s.push_str(&format!("#   {l}\n"));
        }
    }
    s
}

/// The documents of a kubeadm config file, as JSON values.
fn documents(text: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).map_err(|e| Error::usage(format!("--from: {e}")))?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

pub fn kubeadm(
    ctx: &Ctx,
    file: Option<&Path>,
    api: Option<&str>,
    from: Option<&Path>,
) -> Result<Outcome> {
    let api = api
        .map(|a| {
            Api::parse(a).ok_or_else(|| Error::usage(format!("--api {a}: v1beta3 or v1beta4")))
        })
        .transpose()?;
    let mut docs = match from {
        Some(p) => documents(
            &std::fs::read_to_string(p)
                .map_err(|e| Error::usage(format!("--from {}: {e}", p.display())))?,
        )?,
        None => Vec::new(),
    };
    let pos = docs
        .iter()
        .position(|d| d["kind"] == "ClusterConfiguration");
    let from_api = pos.and_then(|i| docs[i]["apiVersion"].as_str().and_then(Api::parse));
    let api = match (api, from_api) {
        (Some(a), Some(f)) if a != f => {
            return Err(Error::usage(format!(
                "--api {} but --from is {}; convert it with 'kubeadm config migrate' first",
                a.api_version(),
                f.api_version()
            )))
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => Api::V1beta4,
    };
    let n = node(ctx, file)?;
    let i = match pos {
        Some(i) => i,
        None => {
            docs.push(json!({"apiVersion": api.api_version(), "kind": "ClusterConfiguration"}));
            docs.len() - 1
        }
    };
    let mut cc: Map<String, Value> = docs[i].as_object().cloned().unwrap_or_default();
    export::merge_cluster_configuration(&mut cc, &n.deltas, api);
    docs[i] = Value::Object(cc);
    let mut text = header(&n, api);
    for (k, d) in docs.iter().enumerate() {
        if k > 0 {
            text.push_str("---\n");
        }
        text.push_str(&export::yaml(d));
    }
    let json = json!({"documents": docs, "needs_patches": export::needs_patches(&n.deltas)});
    Ok(Outcome::new(json, text))
}

pub fn patches(ctx: &Ctx, file: Option<&Path>, dir: &Path) -> Result<Outcome> {
    let n = node(ctx, file)?;
    let files = export::patches(&n.deltas);
    let mut text = String::new();
    if files.is_empty() {
        text.push_str("nothing needs a patch: 'kubeharden export kubeadm' expresses all of it\n");
    } else {
        std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        for (name, content) in &files {
            let p = dir.join(name);
            std::fs::write(&p, content).ctx(|| format!("writing {}", p.display()))?;
            text.push_str(&format!("wrote {}\n", p.display()));
        }
        text.push_str(&format!(
            "pass --patches {} to every kubeadm init, join, upgrade apply and upgrade node \
             (patches are not stored in the cluster)\n",
            dir.display()
        ));
    }
    let json = json!({"dir": dir.display().to_string(), "files": files.iter().map(|(n, _)| n).collect::<Vec<_>>()});
    Ok(Outcome::new(json, text))
}

/// The files the desired kube-apiserver's flags name: audit policy and admission config with
/// their content (the node's file, else what kubeharden would generate), the encryption
/// config as a secret reference.
fn node_files(n: &Node) -> Vec<NodeFile> {
    let Some(api) = &n.api_desired else {
        return Vec::new();
    };
    let (_, flags) = delta::flags(api);
    let mut out = Vec::new();
    for kind in [
        NeededFile::AuditPolicy,
        NeededFile::EventRateLimit,
        NeededFile::Encryption,
    ] {
        let Ok(g) = crate::remediate::files::generate(kind, &n.kubernetes_dir) else {
            continue;
        };
        let Some((_, path)) = flags.iter().rev().find(|(f, _)| f == g.flag) else {
            continue;
        };
        let content = if kind == NeededFile::Encryption {
            None
        } else {
            Some(
                std::fs::read_to_string(path)
                    .unwrap_or_else(|_| String::from_utf8_lossy(&g.content).into_owned()),
            )
        };
        out.push(NodeFile {
            path: path.clone(),
            content,
        });
    }
    out
}

pub fn cluster_api(ctx: &Ctx, file: Option<&Path>, secret: &str) -> Result<Outcome> {
    let n = node(ctx, file)?;
    // The machines read it from the default path, whatever this node's copy is called.
    let hardening = if n.hardening.path.as_os_str().is_empty() {
        crate::hardening::template::defaults_text()
    } else {
        std::fs::read_to_string(&n.hardening.path).unwrap_or_default()
    };
    let hardening_path = crate::hardening::file::DEFAULT_PATH.to_string();
    let spec = capi::fragment(&CapiInput {
        deltas: &n.deltas,
        files: node_files(&n),
        hardening,
        hardening_path,
        secret: secret.to_string(),
    });
    let text = format!(
        "# kubeharden export cluster-api: merge under KubeadmControlPlane spec.kubeadmConfigSpec\n\
         # (bootstrap.cluster.x-k8s.io/v1beta1 shapes). The encryption configuration is read from\n\
         # Secret {secret:?} (key encryption-config.yaml) in the cluster's namespace: create it first.\n\
         # kubeharden must be installed on the machine image (postKubeadmCommands run it).\n{}",
        export::yaml(&json!({ "kubeadmConfigSpec": spec }))
    );
    Ok(Outcome::new(json!({ "kubeadmConfigSpec": spec }), text))
}
