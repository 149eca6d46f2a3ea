//! The hardening as a declared state: the hardening file (`file`), what it means for an audit
//! (`policy`: enforced checks, waivers), converging a node to it (`converge`, the engine of
//! `apply`), and capturing what kubeharden already applied (`capture`, `hardening init`).

pub mod converge;
pub mod external;
pub mod file;
pub mod policy;
pub mod template;

pub use file::{Hardening, Waiver};

use crate::cis::AuditReport;
use std::path::Path;

/// For `audit` and `remediate`: the hardening file (`-f`, else the default path when it
/// exists) applied to `report`; `None` when there is no file (behaviour as without one).
pub fn honour(report: &mut AuditReport, h: Option<&Hardening>) -> Option<policy::Applied> {
    let h = h?;
    let applied = policy::apply(h, report, &policy::today());
    for w in applied.expired() {
        crate::cli::output::say(format_args!(
            "warning: {}: the waiver of {} expired on {}; it no longer counts",
            h.path.display(),
            w.check,
            w.expires.as_deref().unwrap_or("")
        ));
    }
    Some(applied)
}

/// The file for a reading command: `-f FILE`, else the default path if it exists.
pub fn for_reading(explicit: Option<&Path>) -> crate::error::Result<Option<Hardening>> {
    file::resolve(explicit)
}

/// What the file asks to fix, after [`honour`] rewrote the verdicts: every FAIL left (enforced
/// and not waived), plus opted-in manual checks that do not pass (kube-bench keeps them WARN).
/// `remediate --all` under a file and `apply` both fix exactly these.
pub fn failing_enforced(h: &Hardening, report: &AuditReport) -> Vec<String> {
    let today = policy::today();
    report
        .results
        .iter()
        .filter(|r| {
            r.status == crate::cis::Status::Fail
                || (r.status == crate::cis::Status::Warn
                    && h.opt_in.iter().any(|o| o == r.check.id)
                    && policy::active_waiver(h, r.check.id, &today).is_none())
        })
        .map(|r| r.check.id.to_string())
        .collect()
}
