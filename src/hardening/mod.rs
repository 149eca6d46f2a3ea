//! The hardening as a declared state: the hardening file (`file`), what it means for an audit
//! (`policy`: enforced checks, waivers), converging a node to it (`converge`, the engine of
//! `apply`), and capturing what kubeharden already applied (`capture`, `hardening init`).

pub mod converge;
pub mod file;
pub mod policy;

pub use file::{Hardening, Waiver};

use crate::cis::AuditReport;
use std::path::Path;

/// For `audit` and `remediate`: the hardening file (`-f`, else the default path when it
/// exists) applied to `report`; `None` when there is no file (behaviour as without one).
pub fn honour(report: &mut AuditReport, h: Option<&Hardening>) -> Option<policy::Applied> {
    let h = h?;
    let applied = policy::apply(h, report, &policy::today());
    for w in applied.expired() {
        eprintln!(
            "kubeharden: warning: {}: the waiver of {} expired on {}; it no longer counts",
            h.path.display(),
            w.check,
            w.expires.as_deref().unwrap_or("")
        );
    }
    Some(applied)
}

/// The file for a reading command: `-f FILE`, else the default path if it exists.
pub fn for_reading(explicit: Option<&Path>) -> crate::error::Result<Option<Hardening>> {
    file::resolve(explicit)
}

/// `remediate --all` under a hardening file: exactly the enforced, unwaived checks that fail
/// (risky ones included when opted in), after [`honour`] rewrote the verdicts.
pub fn failing_enforced(report: &AuditReport) -> Vec<String> {
    report
        .results
        .iter()
        .filter(|r| r.status == crate::cis::Status::Fail)
        .map(|r| r.check.id.to_string())
        .collect()
}
