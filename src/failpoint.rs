//! Named crash points: with cargo feature `failpoints`, `KUBEHARDEN_CRASH_AT=NAME` makes the
//! process SIGKILL itself when it reaches `NAME` (no cleanup, no flush), so tests can prove the
//! recovery invariants at every durable step; `KUBEHARDEN_PAUSE_AT=NAME:MS` pauses there instead
//! (signal tests). Without the feature, `hit` compiles to nothing.

/// Every point, in protocol order. `kubeharden --list-crash-points` prints this list.
pub const CRASH_POINTS: &[&str] = &[
    "store.object_temp_synced",
    "store.object_renamed",
    "txn.external_version_recorded",
    "txn.objects_stored",
    "txn.begin_synced",
    "replace.temp_created",
    "replace.temp_written",
    "replace.temp_synced",
    "replace.renamed",
    "replace.dir_synced",
    "txn.applied_appended",
    "txn.commit_synced",
    "txn.catalog_updated",
    "rollback.before_written",
    "rollback.recorded",
    "recover.tail_truncated",
    "recover.tail_recorded",
    "recover.reverted_written",
    "recover.resolved_recorded",
    "recover.temps_removed",
    "recover.catalog_caught_up",
    "snapshot.version_recorded",
    "kubeadm.locked",
    "kubeadm.snapshot_taken",
    "kubeadm.ran",
    "kubeadm.recorded",
    "kubeadm.applied",
];

#[cfg(feature = "failpoints")]
pub fn hit(name: &'static str) {
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    debug_assert!(CRASH_POINTS.contains(&name), "unlisted crash point {name}");
    let target = TARGET.get_or_init(|| std::env::var("KUBEHARDEN_CRASH_AT").ok());
    pause_at(name);
    if target.as_deref() == Some(name) {
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
        // SIGKILL cannot be caught; this only runs if kill itself failed.
        std::process::abort();
    }
}

/// `KUBEHARDEN_PAUSE_AT=NAME:MS` holds the process MS milliseconds at `NAME` (after saying so
/// on stderr) the first time it gets there, so a test can send a signal at exactly that step.
#[cfg(feature = "failpoints")]
fn pause_at(name: &'static str) {
    use std::io::Write;
    use std::sync::OnceLock;
    static PAUSE: OnceLock<Option<(String, u64)>> = OnceLock::new();
    let pause = PAUSE.get_or_init(|| {
        let v = std::env::var("KUBEHARDEN_PAUSE_AT").ok()?;
        let (n, ms) = v.rsplit_once(':')?;
        Some((n.to_string(), ms.parse().ok()?))
    });
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if let Some((n, ms)) = pause {
        // Once per process: a rollback through the same step is not held again.
        if n == name && !DONE.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let _ = writeln!(std::io::stderr(), "kubeharden: failpoint: paused at {name}");
            std::thread::sleep(std::time::Duration::from_millis(*ms));
        }
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &'static str) {}
