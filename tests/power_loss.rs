//! Simulated power loss at every operation, proving the six invariants of
//! `transaction-protocol.md` ("Invariants") on the in-memory [`SimFs`].
//!
//! The scenario: a kubeadm kube-apiserver manifest with a recorded baseline and one committed
//! change; then a process that opens and recovers, observes the manifest and runs one
//! transaction adding a flag line (mode 0600, uid 0, gid 0 kept). The power is cut after each
//! of its operations in turn; on what survives (the exact durable state, and states where
//! un-synced appends are torn at seeded random points) recovery runs under both policies, and
//! `harness::recover_and_check` checks every invariant. The catalog is treated as lost at each
//! cut (see the harness's module comment).
//!
//! Also: a transaction whose health gate fails (its rollback is cut too), power loss during
//! recovery itself, torn journal tails, a deliberately broken protocol (no directory fsync) that
//! the simulator must catch, and failing fsyncs ("fsyncgate").

#[path = "power_loss/harness.rs"]
mod harness;
#[path = "power_loss/invariants.rs"]
mod invariants;
#[path = "power_loss/wrappers.rs"]
mod wrappers;

use harness::*;
use invariants::{recover_and_check, Findings};
use kubeharden::engine::recovery::Policy;
use kubeharden::engine::replace::{temp_path_for, TEMP_PREFIX};
use kubeharden::engine::txn::{TxnReport, TxnStatus};
use kubeharden::engine::Engine;
use kubeharden::fsys::sim::SimFs;
use kubeharden::journal::record::Record;
use kubeharden::journal::wal;
use std::path::{Path, PathBuf};
use wrappers::{no_manifest_dir_sync, TraceSyncs};

/// Seeds for the torn survivors of each cut point (plus the exact survivor).
const SEEDS: [u64; 3] = [1, 2, 3];

fn assert_none(what: &str, violations: &[String]) {
    assert!(
        violations.is_empty(),
        "{what}: {} violation(s), first ones:\n{}",
        violations.len(),
        violations
            .iter()
            .take(12)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The cut-point matrix of one plan, checked for coverage.
fn matrix(plan: Plan) -> MatrixRun {
    let run = run_matrix(plain, &SEEDS, plan);
    eprintln!(
        "{plan:?}: {} cut points, {} recoveries checked, journal fates at the cut {:?}; \
         {} history disagreement(s)",
        run.cut_points,
        run.checked,
        run.fates,
        run.findings.history.len()
    );
    // The matrix really went through every phase of the transaction.
    let end = match plan {
        Plan::Commits => Fate::Committed,
        Plan::GateRejects => Fate::RolledBack,
    };
    for fate in [Fate::NotBegun, Fate::Open, end] {
        assert!(
            run.fates.contains_key(&fate),
            "no cut left the txn {fate:?}"
        );
    }
    run
}

#[test]
fn power_loss_at_every_operation_of_a_transaction_keeps_all_invariants() {
    let run = matrix(Plan::Commits);
    assert_none("invariants", &run.findings.invariants);
    assert_none("history", &run.findings.history);
}

#[test]
fn power_loss_at_every_operation_of_a_rolled_back_transaction_keeps_all_invariants() {
    let run = matrix(Plan::GateRejects);
    assert_none("invariants", &run.findings.invariants);
}

#[test]
fn power_loss_during_a_rollback_keeps_history_in_step_with_the_disk() {
    let run = matrix(Plan::GateRejects);
    assert_none("invariants", &run.findings.invariants);
    assert_none("history", &run.findings.history);
}

/// Survivors of the scenario where the manifest is durably at its after content but the
/// journal has no COMMIT: the transaction was interrupted after its rename. With the versions
/// durable before the scenario.
fn interrupted_after_rename() -> Vec<(u64, SimFs, Vec<VersionKey>)> {
    let w = world();
    let total = scenario_ops(w, plain, Plan::Commits);
    let mut found = Vec::new();
    for k in 0..=total {
        let sim = setup(w);
        let base = durable_versions(&sim);
        sim.set_fail_after(Some(w.setup_ops + k));
        let _ = scenario(plain(&sim), w, Plan::Commits);
        let survivor = sim.power_cut_exact();
        let fs = plain(&survivor);
        let at_after = fs.read(Path::new(MANIFEST)).ok().as_ref() == Some(&w.after);
        let open = journal_facts(fs.as_ref()).unwrap().fate == Fate::Open;
        if at_after && open {
            found.push((k, survivor, base));
        }
    }
    found
}

/// Cut the power at every operation of a recovery of each interrupted state, under each
/// policy; then recover fully (under each policy) and check.
fn recovery_matrix() -> Findings {
    let states = interrupted_after_rename();
    assert!(
        !states.is_empty(),
        "some cut leaves after content, no COMMIT"
    );
    let mut findings = Findings::default();
    let mut cut_points = Vec::new();
    for (k, state, base) in &states {
        for first in POLICIES {
            // How many operations the interrupted recovery does when it runs to the end.
            let probe = copy(state);
            let (_, report) = recover_fs(plain(&probe), first).expect("recovery runs");
            assert_eq!(report.resolved.len(), 1, "the interrupted txn is resolved");
            let total = probe.ops_done();
            cut_points.push(format!("txn cut at {k}, {first:?}: {}", total + 1));
            for j in 0..=total {
                let sim = copy(state);
                sim.set_fail_after(Some(j));
                let _ = recover_fs(plain(&sim), first);
                assert_eq!(sim.ops_done(), j);
                for (name, survivor) in survivors(&sim, &SEEDS) {
                    for then in POLICIES {
                        let label = format!(
                            "txn cut after {k} ops; {first:?} recovery cut after {j}/{total} ops, \
                             {name}"
                        );
                        let survivor = copy(&survivor);
                        findings.extend(recover_and_check(&survivor, plain, then, base, &label));
                    }
                }
            }
        }
    }
    eprintln!("recovery cut points: {cut_points:?}");
    findings
}

#[test]
fn power_loss_during_recovery_keeps_all_invariants() {
    let findings = recovery_matrix();
    if !findings.history.is_empty() {
        eprintln!(
            "history disagrees with the disk in {} case(s), see \
             power_loss_during_recovery_keeps_history_in_step_with_the_disk",
            findings.history.len()
        );
    }
    assert_none("power loss during recovery", &findings.invariants);
}

#[test]
fn power_loss_during_recovery_keeps_history_in_step_with_the_disk() {
    let findings = recovery_matrix();
    assert_none("power loss during recovery", &findings.invariants);
    assert_none(
        "history after power loss during recovery",
        &findings.history,
    );
}

#[test]
fn torn_journal_tail_is_cut_and_recorded_by_recovery() {
    let w = world();
    let total = scenario_ops(w, plain, Plan::Commits);
    let mut torn_found = 0;
    for k in 0..=total {
        let sim = setup(w);
        let base = durable_versions(&sim);
        sim.set_fail_after(Some(w.setup_ops + k));
        let _ = scenario(plain(&sim), w, Plan::Commits);
        for seed in 0..12 {
            let survivor = sim.power_cut(seed);
            let fs = plain(&survivor);
            let before = journal_facts(fs.as_ref()).expect("only the tail can be damaged");
            let Some(torn) = before.torn else { continue };
            torn_found += 1;
            let label = format!("cut after {k} ops, seed {seed}, {torn:?}");
            // All invariants hold (the checker also looks for the TRUNCATED_TAIL record).
            let findings =
                recover_and_check(&copy(&survivor), plain, Policy::Revert, &base, &label);
            assert!(findings.is_empty(), "{findings:#?}");

            let (engine, report) = recover_fs(fs.clone(), Policy::Revert).unwrap();
            assert_eq!(report.torn_tail, Some(torn), "{label}");
            let after = journal_facts(fs.as_ref()).unwrap();
            assert!(after.torn.is_none(), "{label}: the tail was cut");
            // Every record before the torn one is kept; the cut is recorded where it was.
            for (a, b) in after.records.iter().zip(&before.records) {
                let same = (a.pos, a.decoded.checksum) == (b.pos, b.decoded.checksum);
                assert!(same, "{label}: record at {:?} changed", b.pos);
            }
            let cut = &after.records[before.records.len()];
            assert_eq!(cut.pos.offset, torn.offset, "{label}");
            match cut.decoded.record {
                Record::TruncatedTail {
                    segment,
                    offset,
                    dropped,
                    ..
                } => assert_eq!(
                    (segment, offset, dropped),
                    (torn.segment, torn.offset, torn.dropped),
                    "{label}"
                ),
                ref other => panic!("{label}: expected TRUNCATED_TAIL, found {other:?}"),
            }
            let dump = engine.catalog.dump().unwrap();
            assert!(dump.lines().any(|l| l.starts_with("tail_cuts|")), "{label}");
        }
    }
    eprintln!("torn tails found and checked: {torn_found}");
    assert!(torn_found > 0, "no seed produced a torn journal tail");
}

#[test]
fn simulator_catches_a_protocol_without_the_directory_fsync() {
    let run = run_matrix(no_manifest_dir_sync, &SEEDS, Plan::Commits);
    let violations = &run.findings.invariants;
    eprintln!(
        "without the manifests-dir fsync: {} cut points, {} of {} recoveries violate an \
         invariant",
        run.cut_points, run.failed, run.checked
    );
    // A COMMIT that is durable while the rename was undone: the committed change is gone.
    let lost_commit = violations
        .iter()
        .find(|v| v.contains("journal: Committed") && v.contains("is before, expected after"));
    eprintln!("e.g. {lost_commit:?}");
    assert!(
        lost_commit.is_some(),
        "the simulator did not catch the missing directory fsync: {violations:#?}"
    );
}

// ------------------------------------------------------------------------------------------
// fsync failures ("fsyncgate")
// ------------------------------------------------------------------------------------------

/// The paths of the file fsyncs of setup and then of the scenario, in order: the n-th (1-based)
/// is what `SimFs::fail_sync_on(n)` fails. Returns how many setup does, and all of them.
fn traced_syncs() -> (usize, Vec<PathBuf>) {
    let w = world();
    let sim = installed(w);
    let trace = TraceSyncs::new(sim.clone());
    setup_on(w, &sim, trace.clone());
    let in_setup = trace.syncs().len();
    let (_, report) = scenario(trace.clone(), w, Plan::Commits).unwrap();
    assert_eq!(report.status, TxnStatus::Committed);
    (in_setup, trace.syncs())
}

struct FailedSyncRun {
    sim: SimFs,
    base: Vec<VersionKey>,
    result: kubeharden::error::Result<(Engine, TxnReport)>,
}

/// Fresh setup whose `n`-th file fsync fails with EIO, then the scenario.
fn scenario_with_failing_sync(n: usize) -> FailedSyncRun {
    let w = world();
    let sim = installed(w);
    sim.fail_sync_on(n as u64);
    setup_on(w, &sim, plain(&sim));
    let base = durable_versions(&sim);
    let result = scenario(plain(&sim), w, Plan::Commits);
    FailedSyncRun { sim, base, result }
}

/// Fail the `n`-th fsync: a commit may be reported only if durable, otherwise the manifest must
/// be at its before content; then cut the power and check recovery.
fn failing_sync_findings(n: usize, path: &Path) -> Findings {
    let w = world();
    let FailedSyncRun { sim, base, result } = scenario_with_failing_sync(n);
    let outcome = match &result {
        Ok((_, r)) => format!("{:?}", r.status),
        Err(e) => format!("error: {e}"),
    };
    let what = format!("fsync #{n} ({}) failed, txn {outcome}", path.display());
    let mut findings = Findings::default();
    let live = plain(&sim).read(Path::new(MANIFEST)).unwrap();
    if matches!(&result, Ok((_, r)) if r.status == TxnStatus::Committed) {
        let durable = plain(&sim.power_cut_exact());
        let fate = journal_facts(durable.as_ref()).map(|f| f.fate);
        if fate != Ok(Fate::Committed)
            || durable.read(Path::new(MANIFEST)).ok() != Some(w.after.clone())
        {
            findings.invariants.push(format!(
                "{what}: reported committed, not durably ({fate:?})"
            ));
        }
    } else if live != w.before {
        findings.invariants.push(format!(
            "{what}: not committed, but the manifest is not before"
        ));
    }
    drop(result);
    for (name, survivor) in survivors(&sim, &SEEDS) {
        for policy in POLICIES {
            let label = format!("{what}, then power cut, {name}");
            findings.extend(recover_and_check(
                &copy(&survivor),
                plain,
                policy,
                &base,
                &label,
            ));
        }
    }
    findings
}

fn is_journal(p: &Path) -> bool {
    p.starts_with(paths().journal)
}

#[test]
fn failed_fsync_of_the_manifest_temp_file_rolls_back() {
    let w = world();
    let (in_setup, syncs) = traced_syncs();
    let temp = temp_path_for(Path::new(MANIFEST));
    let n = 1
        + in_setup
        + syncs[in_setup..]
            .iter()
            .position(|p| *p == temp)
            .expect("the scenario fsyncs the manifest's temp file");
    let FailedSyncRun { sim, base, result } = scenario_with_failing_sync(n);
    // Rolled back, and reported as the I/O error it is (exit 7, issue 11 item 9), saying that
    // the before content is back on disk.
    let err = match result {
        Err(e) => e,
        Ok((_, report)) => panic!("a failed fsync must not end in success: {report:?}"),
    };
    assert_eq!(err.exit_code(), 7, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("holds its before content"), "{msg}");
    assert!(msg.contains("rolled back and recorded"), "{msg}");
    let fs = plain(&sim);
    assert_eq!(fs.read(Path::new(MANIFEST)).unwrap(), w.before);
    let m = fs.metadata(Path::new(MANIFEST)).unwrap();
    assert_eq!((m.mode, m.uid, m.gid), META);
    let names = fs.list_dir(Path::new(MANIFESTS)).unwrap();
    assert!(
        !names.iter().any(|n| n.starts_with(TEMP_PREFIX)),
        "{names:?}"
    );
    let facts = journal_facts(fs.as_ref()).unwrap();
    assert_eq!(facts.fate, Fate::RolledBack, "the journal says ROLLED_BACK");
    let (engine, _) = recover_fs(plain(&sim), Policy::Revert).unwrap();
    let row = engine.catalog.txn(SCENARIO_TXN).unwrap().unwrap();
    assert_eq!(row.status, "rolled_back");
    drop(engine);

    let mut findings = Findings::default();
    for (name, survivor) in survivors(&sim, &SEEDS) {
        let facts = journal_facts(plain(&survivor).as_ref()).unwrap();
        assert_eq!(
            facts.fate,
            Fate::RolledBack,
            "{name}: ROLLED_BACK was synced"
        );
        for policy in POLICIES {
            let label = format!("temp fsync failed, then power cut, {name}");
            findings.extend(recover_and_check(
                &copy(&survivor),
                plain,
                policy,
                &base,
                &label,
            ));
        }
    }
    assert_none("failed temp-file fsync", &findings.invariants);
    assert_none("failed temp-file fsync (history)", &findings.history);
}

#[test]
fn failed_fsync_of_an_object_or_manifest_file_keeps_all_invariants() {
    let (in_setup, syncs) = traced_syncs();
    let mut findings = Findings::default();
    let mut tried = 0;
    for (i, path) in syncs.iter().enumerate().skip(in_setup) {
        if !is_journal(path) {
            tried += 1;
            findings.extend(failing_sync_findings(i + 1, path));
        }
    }
    assert!(tried >= 2, "the object and the manifest temp are fsynced");
    assert_none("fsync failures", &findings.invariants);
    assert_none("fsync failures (history)", &findings.history);
}

#[test]
fn failed_fsync_of_the_journal_keeps_all_invariants() {
    let (in_setup, syncs) = traced_syncs();
    let mut findings = Findings::default();
    let mut tried = 0;
    for (i, path) in syncs.iter().enumerate().skip(in_setup) {
        if is_journal(path) {
            tried += 1;
            findings.extend(failing_sync_findings(i + 1, path));
        }
    }
    assert!(tried >= 2, "BEGIN and COMMIT are fsynced");
    assert_none("journal fsync failures", &findings.invariants);
    assert_none("journal fsync failures (history)", &findings.history);
}

#[test]
fn setup_alone_is_durable_and_needs_no_recovery() {
    // Sanity of the harness: setup leaves a clean journal and nothing to recover.
    let w = world();
    let sim = setup(w);
    let base = durable_versions(&sim);
    let survivor = sim.power_cut_exact();
    let fs = plain(&survivor);
    let scan = wal::scan_from(fs.as_ref(), &paths().journal, journal_start()).unwrap();
    assert!(scan.torn.is_none());
    assert_eq!(fs.read(Path::new(MANIFEST)).unwrap(), w.before);
    let findings = recover_and_check(&survivor, plain, Policy::Revert, &base, "setup only");
    assert!(findings.is_empty(), "{findings:#?}");
}
