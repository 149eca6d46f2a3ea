//! Health before the change: the component is probed, before anything is written, as the
//! gate will probe it (the manifest's probes, or `--probe`). Healthy now: the change must keep
//! it healthy and a rollback must bring it back. Not healthy now: say so up front; the change
//! is judged by whether it makes the component healthy, and a rollback is held only to the
//! health it had (putting the previous content back is enough).
//!
//! Custom probe options (`--probe`, `--probe-ca`, `--probe-cert`) that the running server
//! refuses (a certificate it does not accept, 401/403) are an error in the options, not the
//! component's health: refused before any change (exit 2).

use super::probe::{self, ProbeResult, ProbeSpec};
use super::report::HealthBefore;
use super::HealthGate;
use crate::manifest;
use crate::signals;
use std::time::{Duration, Instant};

/// Retries a failing probe for this long before calling the component not healthy.
const SETTLE: Duration = Duration::from_millis(1500);
const RETRY_EVERY: Duration = Duration::from_millis(300);

/// A failure that says the probe options are wrong, not that the component is down.
fn options_refused(r: &ProbeResult) -> bool {
    let d = r.detail.to_ascii_lowercase();
    ["certificate", "issuer", "401 ", "403 "]
        .iter()
        .any(|w| format!("{d} ").contains(w))
}

impl HealthGate {
    fn custom_probe_options(&self) -> bool {
        !self.cfg.probe_urls.is_empty() || self.cfg.tls.ca.is_some() || self.cfg.tls.cert.is_some()
    }

    /// One probe, retried for [`SETTLE`] while it fails (a transient refusal is not "down").
    fn probe_settled(&self, s: &ProbeSpec) -> ProbeResult {
        let end = Instant::now() + SETTLE;
        loop {
            let r = self.prober.probe(s, Duration::from_secs(5));
            if r.ok || Instant::now() >= end || signals::received().is_some() {
                return r;
            }
            signals::nap(RETRY_EVERY);
        }
    }

    /// Before any change: probe what runs now (`current` is the manifest's content on disk)
    /// and remember its health for the check of the change and of a rollback. Err: probe
    /// options that cannot work (exit 2, nothing changed).
    pub fn preflight(&self, current: &[u8]) -> Result<(), String> {
        let Ok(c) = manifest::container_argv(current, self.cfg.container.as_deref()) else {
            return Ok(()); // not a pod (a policy file of a multi-file change)
        };
        let specs = if self.cfg.probe_urls.is_empty() {
            probe::from_container(&c.container)?
        } else {
            probe::from_urls(&self.cfg.probe_urls)?
        };
        let mut detail = "(no probes declared)".to_string();
        let mut healthy = true;
        for s in &specs {
            let r = self.probe_settled(s);
            if signals::received().is_some() {
                return Ok(()); // the caller's checkpoint stops the command
            }
            if !r.ok && self.custom_probe_options() && options_refused(&r) {
                return Err(format!(
                    "the probe {} fails against the running {} before any change ({}); check \
                     --probe / --probe-ca / --probe-cert, or use --no-health-gate. Nothing was changed",
                    s.describe(),
                    c.name,
                    r.detail
                ));
            }
            if healthy {
                detail = format!("{} → {}", s.describe(), r.detail);
            }
            healthy &= r.ok;
        }
        if !healthy {
            super::warn(&format!(
                "{name} is not healthy before the change ({detail}): the change is judged by \
                 whether it makes {name} healthy; if it does not, the previous content is put \
                 back and not required to be healthy, as it was not before",
                name = c.name
            ));
        }
        if let Ok(mut h) = self.health_before.lock() {
            h.retain(|(n, _)| *n != c.name);
            h.push((c.name.clone(), HealthBefore { healthy, detail }));
        }
        Ok(())
    }

    /// What [`HealthGate::preflight`] found for `component` (None: not probed, as in replay).
    pub fn health_before(&self, component: &str) -> Option<HealthBefore> {
        self.health_before
            .lock()
            .ok()?
            .iter()
            .find(|(n, _)| n == component)
            .map(|(_, h)| h.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_and_auth_refusals_are_option_errors_but_refused_connections_are_not() {
        let r = |d: &str| ProbeResult {
            ok: false,
            detail: d.into(),
        };
        assert!(options_refused(&r(
            "invalid peer certificate: UnknownIssuer"
        )));
        assert!(options_refused(&r("401 Unauthorized")));
        assert!(!options_refused(&r("Connection refused (os error 111)")));
        assert!(!options_refused(&r("500 Internal Server Error")));
    }
}
