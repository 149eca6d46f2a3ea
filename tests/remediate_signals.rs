//! Issue 12 items 1 + 2 together: a signal during one of `remediate`'s gates rolls that batch
//! back and starts nothing after it — not the remaining batches, not the chmod/chown fixes — and
//! the report says which checks did not start (exit 130).

mod gate_support;
#[path = "gate_support/node.rs"]
mod node;

use gate_support::{free_port, manifests, wait_until};
use nix::sys::signal::Signal::SIGINT;
use node::{boot, Node, T};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

#[test]
fn item2_signal_during_remediate_gate_starts_no_file_fix_after_it() {
    let node = Node::new();
    let m = manifests::scheduler(&node.kd, free_port());
    let sim = boot(&node, &m, "/healthz");
    let path = node.kd.manifest_path(&m.file_name);
    // 1.1.5: the scheduler manifest's mode, a chmod fix planned after the flag batch.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    // The new process does not listen for 8 s: the gate is still probing when the signal comes.
    sim.set_behavior("kube-scheduler", "slow-start-ms 8000\n");
    let mut r = node.spawn(&[
        "remediate",
        "--check",
        "1.4.1,1.1.5",
        "--health-timeout",
        "60",
    ]);
    r.wait_handlers();
    assert!(
        wait_until(T, || node.read(&m.file_name) != m.yaml),
        "the change was never written"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(r.running(), "the gate ended before the signal");
    r.signal(SIGINT);
    sim.clear_behavior("kube-scheduler");
    let run = r.finish(Duration::from_secs(180));
    assert_eq!(run.code, Some(130), "{}", run.dump());
    let t = run.txn();
    assert_eq!(t["status"], "rolled_back", "{}", run.dump());
    assert_eq!(
        run.json["transactions"].as_array().map(Vec::len),
        Some(1),
        "nothing after the interrupted batch: {}",
        run.dump()
    );
    let checks = run.json["checks"].as_array().expect("checks");
    let result = |id: &str| {
        checks
            .iter()
            .find(|c| c["check"] == id)
            .map(|c| c["result"].as_str().unwrap().to_string())
    };
    assert_eq!(
        result("1.4.1").as_deref(),
        Some("rolled_back"),
        "{}",
        run.dump()
    );
    assert_eq!(
        result("1.1.5").as_deref(),
        Some("not_started"),
        "{}",
        run.dump()
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o644,
        "the chmod never ran"
    );
    assert_eq!(
        node.read(&m.file_name),
        m.yaml,
        "the before content is back"
    );
    node.assert_journal_closed();
}
