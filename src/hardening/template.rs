//! `hardening init [--from-history]`: a commented hardening file with the defaults, or with what
//! kubeharden's own committed transactions on this node applied (so a node hardened by
//! hand-run `set`/`remediate` can be captured declaratively).

use crate::cis::rules::{Component, Remediation};
use crate::cis::BenchmarkId;
use std::collections::BTreeMap;
use std::fmt::Write;

/// What the history says kubeharden applied.
#[derive(Debug, Default)]
pub struct Captured {
    /// Risky or manual checks whose fixes were applied: to opt in.
    pub opt_in: Vec<String>,
    /// Flags no default-enforced check explains: component → (name → value; None = unset).
    pub extras: BTreeMap<Component, BTreeMap<String, Option<String>>>,
    /// The transactions the capture read.
    pub txns: Vec<u64>,
}

fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The file's text; `c` fills the opt-ins and extra flags.
pub fn render(c: Option<&Captured>) -> String {
    let mut s = String::new();
    s.push_str(
        "# kubeharden hardening file: the declared hardening of this node.\n\
         # 'kubeharden apply' converges the node to it (idempotent); 'kubeharden audit' and\n\
         # 'kubeharden remediate' honour its waivers and selection. Reference: docs/desired-state.md\n",
    );
    if let Some(c) = c {
        let _ = writeln!(
            s,
            "# Captured from kubeharden's committed transactions on this node: {}",
            if c.txns.is_empty() {
                "none".to_string()
            } else {
                c.txns
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    }
    s.push_str(
        "apiVersion: kubeharden.io/v1alpha1\nkind: HardeningConfiguration\n\
         # auto: cis-1.11 for Kubernetes 1.29-1.31, cis-1.12 from 1.32 (from the kube-apiserver image).\n\
         benchmark: auto\n\
         checks:\n\
         \x20 # Enforced: every automated check, except the risky ones, which are enforced only\n\
         \x20 # when listed here (manual checks with a fix may be listed too):\n",
    );
    for chk in BenchmarkId::Cis112.checks() {
        if let Some(why) = chk.dangerous {
            let short: String = why.chars().take(100).collect();
            let _ = writeln!(s, "  #   {}: {short}...", chk.id);
        }
    }
    let opt: Vec<String> = c
        .map(|c| c.opt_in.iter().map(|i| quote(i)).collect())
        .unwrap_or_default();
    let _ = writeln!(s, "  optIn: [{}]", opt.join(", "));
    s.push_str(
        "  # Automated checks not to enforce (audit reports them as WARN \"not enforced\").\n\
         \x20 exclude: []\n\
         # A waived failing check is WARN \"waived: REASON (until DATE)\" and does not fail audit;\n\
         # past its date it counts as absent. Example:\n\
         # - check: \"1.2.9\"\n\
         #   reason: \"EventRateLimit is configured by our admission webhook (INC-1234)\"\n\
         #   expires: 2027-03-31\n\
         #   owner: platform-team\n\
         waivers: []\n\
         # Flags beyond CIS, per component (kube-apiserver, kube-controller-manager,\n\
         # kube-scheduler, etcd): names without dashes.\n",
    );
    let extras = c.map(|c| &c.extras).filter(|e| !e.is_empty());
    match extras {
        None => s.push_str(
            "# components:\n#   kube-apiserver:\n#     set:\n#       tls-min-version: VersionTLS13\n#     unset: []\ncomponents: {}\n",
        ),
        Some(e) => {
            s.push_str("components:\n");
            for (comp, flags) in e {
                let _ = writeln!(s, "  {}:", comp.binary());
                let sets: Vec<_> = flags.iter().filter_map(|(n, v)| v.as_ref().map(|v| (n, v))).collect();
                let unsets: Vec<_> = flags.iter().filter(|(_, v)| v.is_none()).map(|(n, _)| quote(n)).collect();
                if !sets.is_empty() {
                    s.push_str("    set:\n");
                    for (n, v) in sets {
                        let _ = writeln!(s, "      {n}: {}", quote(v));
                    }
                }
                if !unsets.is_empty() {
                    let _ = writeln!(s, "    unset: [{}]", unsets.join(", "));
                }
            }
        }
    }
    s.push_str(
        "# Operator-provided files used instead of generated ones (absolute paths; never overwritten):\n\
         # files:\n\
         #   auditPolicy: /etc/kubeharden/audit-policy.yaml\n\
         #   admissionConfig: /etc/kubeharden/admission-config.yaml\n\
         #   encryptionConfig: /etc/kubeharden/encryption-config.yaml\n\
         files: {}\n",
    );
    s
}

/// The defaults, as `hardening init` writes them.
pub fn defaults_text() -> String {
    render(None)
}

/// Does one of `fixes` set `name` to `value` (`None`: remove it)?
fn explains(fixes: &[Remediation], name: &str, value: Option<&str>) -> bool {
    fixes.iter().any(|f| match (f, value) {
        (Remediation::SetFlag { name: n, value: v }, Some(val)) => {
            *n == name
                && (*v == val
                    || v.strip_prefix("/etc/kubernetes/")
                        .is_some_and(|r| val.ends_with(r)))
        }
        (Remediation::RemoveFlag { name: n }, None) => *n == name,
        (Remediation::AddToList { flag, .. } | Remediation::RemoveFromList { flag, .. }, _) => {
            *flag == name
        }
        (Remediation::NeedsFile { kind }, Some(_)) => {
            crate::remediate::files::generate(*kind, std::path::Path::new("/"))
                .is_ok_and(|g| g.flag == name)
        }
        _ => false,
    })
}

/// Sort one flag change kubeharden made: covered by a default-enforced check (nothing to
/// declare), by a risky/manual check (opt it in), or an extra flag.
pub fn classify(c: &mut Captured, comp: Component, name: &str, value: Option<&str>) {
    let checks: Vec<_> = BenchmarkId::Cis112
        .checks()
        .into_iter()
        .filter(|k| k.component == comp && explains(k.fix, name, value))
        .collect();
    if checks
        .iter()
        .any(|k| k.dangerous.is_none() && k.kind == crate::cis::CheckType::Automated)
    {
        return;
    }
    if let Some(k) = checks.first() {
        if !c.opt_in.iter().any(|o| o == k.id) {
            c.opt_in.push(k.id.to_string());
        }
        return;
    }
    c.extras
        .entry(comp)
        .or_default()
        .insert(name.to_string(), value.map(str::to_string));
}
