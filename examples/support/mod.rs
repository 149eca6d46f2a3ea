//! Code shared by `examples/kubelet_sim.rs` and `examples/fake_component.rs` (each includes it
//! with `#[path = "support/mod.rs"] mod support;`). Not an example target of its own.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};

/// Wall-clock timestamp for log lines: RFC 3339, UTC, milliseconds.
pub fn stamp() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// An argv as a JSON array: unambiguous on a log line whatever the arguments contain.
pub fn json_argv(argv: &[String]) -> String {
    serde_json::to_string(argv).unwrap_or_else(|_| "[]".to_string())
}

/// Set by [`install_termination_flag`]'s handler on SIGTERM or SIGINT.
pub static TERMINATE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_terminate(_: nix::libc::c_int) {
    TERMINATE.store(true, Ordering::SeqCst);
}

/// SIGTERM and SIGINT set [`TERMINATE`] instead of killing the process.
pub fn install_termination_flag() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_terminate),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }.expect("sigaction");
    }
}

pub fn terminating() -> bool {
    TERMINATE.load(Ordering::SeqCst)
}

/// Arranges (in the calling thread) for this process to get `sig` when the thread that
/// created it exits. Used between fork and exec and by the processes themselves.
pub fn die_with_parent(sig: nix::sys::signal::Signal) -> std::io::Result<()> {
    nix::sys::prctl::set_pdeathsig(sig).map_err(std::io::Error::from)
}
