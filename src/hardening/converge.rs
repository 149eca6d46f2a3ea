//! `apply`: converge the node to the hardening file with `remediate`'s machinery — audit, plan,
//! one gated transaction per component in dependency order, bisection of a refused batch.
//! The file adds three things to the CIS plan: the enforced set (selection and waivers), extra
//! flags per component, and operator-provided files in place of generated ones. What already
//! holds is left alone, so a second run plans nothing: no transaction, no restart.

use super::file::Hardening;
use super::policy::{self, Applied};
use crate::cis::rules::{Component, NeededFile, Remediation};
use crate::cis::{self, AuditOptions, AuditReport};
use crate::engine::txn::TxnStatus;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::remediate::{self, BatchOptions, Env, GateWithJson, Item, Plan};
use std::path::{Path, PathBuf};

/// Where the node is and how to gate.
pub struct Target<'a> {
    pub manifests_dir: PathBuf,
    pub kubernetes_dir: PathBuf,
    pub gate: &'a dyn Fn() -> Result<Option<Box<dyn GateWithJson>>>,
}

/// What `apply` will do.
pub struct Planned {
    pub audit: AuditReport,
    pub policy: Applied,
    pub plan: Plan,
    /// Extra-flag and operator-file items (ids `flag:NAME`, `file:KIND`), by component.
    pub extra_ids: Vec<String>,
}

impl Planned {
    pub fn nothing_to_do(&self) -> bool {
        self.plan
            .batches
            .iter()
            .all(|(_, _, items)| items.is_empty())
            && self.plan.file_items.is_empty()
    }
}

/// The audit as the file sees it (benchmark, waivers, selection).
pub fn audit(
    h: &Hardening,
    manifests_dir: &Path,
    kubernetes_dir: &Path,
) -> Result<(AuditReport, Applied)> {
    let mut opts = AuditOptions::new(manifests_dir.to_path_buf(), kubernetes_dir.to_path_buf());
    opts.benchmark = h.benchmark;
    let mut report = cis::run(&opts).map_err(Error::usage)?;
    let applied = policy::apply(h, &mut report, &policy::today());
    Ok((report, applied))
}

/// A run lives for one command: leaking the few strings an extra item needs gives them the
/// `'static` lifetime the CIS table's items have, so they go through the same batch code.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn leak_fix(v: Vec<Remediation>) -> &'static [Remediation] {
    Box::leak(v.into_boxed_slice())
}

fn current_flags(path: &Path, c: Component) -> Option<cis::flags::Flags> {
    let bytes = std::fs::read(path).ok()?;
    let a = crate::manifest::container_argv(&bytes, None).ok()?;
    let has_program = a.has_command && !a.command.is_empty();
    Some(cis::flags::Flags::parse(c, &a.argv(), has_program))
}

fn flag_of(kind: NeededFile) -> &'static str {
    match kind {
        NeededFile::AuditPolicy => "audit-policy-file",
        NeededFile::EventRateLimit => "admission-control-config-file",
        NeededFile::Encryption => "encryption-provider-config",
    }
}

fn item(id: String, c: Component, manifest: &Path, fix: Vec<Remediation>) -> Item {
    Item {
        id: leak(id),
        fix: leak_fix(fix),
        manifest: manifest.to_path_buf(),
        component: c,
        targets: Vec::new(),
    }
}

/// The items the file adds beyond CIS for component `c`: flags that differ, and operator
/// files that the flag does not name yet.
fn extra_items(h: &Hardening, c: Component, manifest: &Path, cis_items: &[Item]) -> Vec<Item> {
    let Some(flags) = current_flags(manifest, c) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(e) = h.extras.get(&c) {
        for (name, value) in &e.set {
            if flags.value(name).as_deref() != Some(value.as_str()) {
                let fix = vec![Remediation::SetFlag {
                    name: leak(name.clone()),
                    value: leak(value.clone()),
                }];
                out.push(item(format!("flag:{name}"), c, manifest, fix));
            }
        }
        for name in &e.unset {
            if flags.get(name).is_some() {
                let fix = vec![Remediation::RemoveFlag {
                    name: leak(name.clone()),
                }];
                out.push(item(format!("flag:{name}"), c, manifest, fix));
            }
        }
    }
    if c == Component::ApiServer {
        for (kind, path) in &h.files {
            let flag = flag_of(*kind);
            let named = flags.value(flag).is_some_and(|v| Path::new(&v) == path);
            let in_cis = cis_items.iter().any(|i| {
                i.fix
                    .iter()
                    .any(|f| matches!(f, Remediation::NeedsFile { kind: k } if k == kind))
            });
            if !named && !in_cis {
                // Unset first so the file step points the flag at the operator's file.
                let fix = vec![
                    Remediation::RemoveFlag { name: flag },
                    Remediation::NeedsFile { kind: *kind },
                ];
                out.push(item(format!("file:{}", kind.name()), c, manifest, fix));
            }
        }
    }
    out
}

/// Apply order: what the others depend on first.
pub const ORDER: [Component; 4] = [
    Component::Etcd,
    Component::ApiServer,
    Component::ControllerManager,
    Component::Scheduler,
];

/// Audit, then the plan: the enforced checks that fail and are not waived, plus the extras.
pub fn plan(h: &Hardening, t: &Target) -> Result<Planned> {
    for (kind, p) in &h.files {
        if !p.is_file() {
            return Err(Error::usage(format!(
                "{}: files.{}: {} does not exist (the operator provides it; kubeharden never \
                 generates it)",
                h.path.display(),
                kind.name(),
                p.display()
            )));
        }
    }
    let (report, applied) = audit(h, &t.manifests_dir, &t.kubernetes_dir)?;
    let ids = super::failing_enforced(h, &report);
    let mut plan = remediate::plan(&report, &ids, false, &t.manifests_dir)?;
    let mut extra_ids = Vec::new();
    let mut batches = Vec::new();
    for c in ORDER {
        let manifest = cis::source::manifest_path(&t.manifests_dir, c);
        let pos = plan.batches.iter().position(|(bc, _, _)| *bc == c);
        let (path, mut items) = match pos {
            Some(i) => {
                let (_, p, items) = plan.batches.remove(i);
                (p, items)
            }
            None => (manifest, Vec::new()),
        };
        let extra = extra_items(h, c, &path, &items);
        extra_ids.extend(extra.iter().map(|i| i.id.to_string()));
        items.extend(extra);
        if !items.is_empty() {
            batches.push((c, path, items));
        }
    }
    batches.append(&mut plan.batches);
    plan.batches = batches;
    Ok(Planned {
        audit: report,
        policy: applied,
        plan,
        extra_ids,
    })
}

/// Run the plan under the lock the caller holds. Errors are in the outcome (what committed
/// before them, what did not start), as for remediate.
pub fn run(engine: &mut Engine, h: &Hardening, t: &Target, p: &Planned) -> remediate::Outcome {
    let env = Env {
        kubernetes_dir: &t.kubernetes_dir,
        gate: t.gate,
    };
    let opts = BatchOptions {
        provided: h.files.clone(),
        reason_prefix: if h.path.as_os_str().is_empty() {
            "apply (defaults): ".into()
        } else {
            format!("apply {}: ", h.path.display())
        },
    };
    remediate::run(engine, &env, &opts, &p.plan)
}

/// Did the run change anything on disk?
pub fn changed(out: &remediate::Outcome) -> bool {
    out.attempts
        .iter()
        .any(|a| a.report.status == TxnStatus::Committed)
}
