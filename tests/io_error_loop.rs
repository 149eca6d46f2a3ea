//! The I/O-error loop (SQLite's pattern, issue 11): for each operation — snapshot, set,
//! restore, a rolled-back set, and recovery of each incomplete shape a power cut leaves — and
//! each file operation N of it, fail the Nth with EIO, ENOSPC, a short write then ENOSPC, and
//! a dead disk (every operation from N on), through `FaultFs` over the simulator. Then:
//!
//! - the operation's result is what an I/O error may give: exit 0, 3, 4 or 7 (never 2 "bad
//!   input", never 6 "damaged" for an error of our own making, never a panic);
//! - a failed fsync never ends in success, and a reported commit is durable;
//! - recovery without faults keeps the six invariants of transaction-protocol.md (the checks
//!   of `tests/power_loss/invariants.rs`, under both policies), and after an exit 4 history
//!   ends at what is on disk (item 5);
//! - the tool is usable afterwards: a clean `set` commits and the journal and catalog verify.
//!
//! Also the regression tests of items 3, 4, 5 and 7 that run in-process.

#[path = "power_loss/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "power_loss/invariants.rs"]
#[allow(dead_code)]
mod invariants;

use harness::*;
use invariants::recover_and_check;
use kubeharden::catalog::Catalog;
use kubeharden::engine::recovery::Policy;
use kubeharden::engine::state;
use kubeharden::engine::txn::{Change, TxnStatus};
use kubeharden::engine::Unrecovered;
use kubeharden::fsys::fault::{Fault, FaultFs, Op};
use kubeharden::fsys::sim::SimFs;
use kubeharden::fsys::Fs;
use kubeharden::journal::record::{Origin, Record, TxnKind};
use kubeharden::journal::wal;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const ETCD: &str = "/etc/kubernetes/manifests/etcd.yaml";

fn etcd_bytes() -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/manifests/kubeadm-v1.30.14/etcd.yaml"),
    )
    .expect("the kubeadm etcd manifest")
}

#[derive(Debug, Clone, Copy)]
enum Operation {
    /// Open, recover, and record a manifest seen for the first time.
    Snapshot,
    /// The power-loss scenario's set, committed (no gate).
    Set,
    /// A restore transaction: new bytes and the mode/owner to give them.
    Restore,
    /// The scenario's set, rejected by the gate and rolled back.
    RolledBackSet,
    /// Recovery (policy revert) of an incomplete transaction.
    Recover,
}

/// Exit code the CLI would give: 0 success, 3 rolled back/conflict, 4 rollback failed, or the
/// error's.
fn run(op: Operation, fs: Arc<dyn Fs>) -> (i32, String) {
    let w = world();
    let txn_code = |s: TxnStatus| match s {
        TxnStatus::Committed | TxnStatus::Noop => 0,
        TxnStatus::RolledBack => 3,
        TxnStatus::RollbackFailed => 4,
    };
    let result: kubeharden::error::Result<(i32, String)> = (|| match op {
        Operation::Snapshot => {
            let (mut engine, _) = recover_fs(fs, Policy::Revert)?;
            let o = engine.observe(Path::new(ETCD))?;
            Ok((0, format!("snapshot recorded {:?}", o.recorded)))
        }
        Operation::Set | Operation::RolledBackSet => {
            let plan = match op {
                Operation::Set => Plan::Commits,
                _ => Plan::GateRejects,
            };
            let (_, r) = scenario(fs, w, plan)?;
            Ok((txn_code(r.status), format!("{:?}: {}", r.status, r.reason)))
        }
        Operation::Restore => {
            let (mut engine, _) = recover_fs(fs, Policy::Revert)?;
            let observed = engine.observe(Path::new(MANIFEST))?;
            let change = Change {
                observed,
                after_bytes: w.after.clone(),
                after_meta: Some(META),
            };
            let r = engine.transact(TxnKind::Restore, "restore", vec![change], None)?;
            Ok((txn_code(r.status), format!("{:?}: {}", r.status, r.reason)))
        }
        Operation::Recover => {
            let (_, r) = recover_fs(fs, Policy::Revert)?;
            let code = if r.conflicts().is_empty() { 0 } else { 3 };
            Ok((code, format!("{:?}", r.resolved)))
        }
    })();
    result.unwrap_or_else(|e| (e.exit_code(), e.to_string()))
}

/// The incomplete transactions a power cut leaves, one sim per distinct shape (what the
/// manifest holds × which records follow BEGIN).
fn incomplete_shapes() -> Vec<(String, SimFs)> {
    let w = world();
    let mut shapes: BTreeMap<String, SimFs> = BTreeMap::new();
    for plan in [Plan::Commits, Plan::GateRejects] {
        let total = scenario_ops(w, plain, plan);
        for k in 0..total {
            let sim = setup(w);
            sim.set_fail_after(Some(w.setup_ops + k));
            let _ = scenario(plain(&sim), w, plan);
            let survivor = sim.power_cut_exact();
            let Ok(facts) = journal_facts(plain(&survivor).as_ref()) else {
                continue;
            };
            if facts.fate != Fate::Open {
                continue;
            }
            let content = match plain(&survivor).read(Path::new(MANIFEST)) {
                Ok(b) if b == w.before => "before",
                Ok(b) if b == w.after => "after",
                _ => "other",
            };
            let after_begin: Vec<&str> = facts
                .records
                .iter()
                .skip_while(
                    |r| !matches!(r.decoded.record, Record::Begin(ref b) if b.txn == SCENARIO_TXN),
                )
                .skip(1)
                .map(|r| match &r.decoded.record {
                    Record::Applied { .. } => "APPLIED",
                    Record::Version(v) if v.origin == Origin::Rollback => "VERSION(rollback)",
                    Record::Version(_) => "VERSION",
                    _ => "other",
                })
                .collect();
            let key = format!("{content} on disk, BEGIN {}", after_begin.join(" "));
            shapes.entry(key).or_insert(survivor);
        }
    }
    shapes.into_iter().collect()
}

/// The state an operation starts from (settled: live and durable agree).
fn start_state(op: Operation, shape: Option<&SimFs>) -> SimFs {
    match (op, shape) {
        (Operation::Recover, Some(s)) => copy(s),
        _ => {
            let sim = setup(world());
            sim.write_file_durable(Path::new(ETCD), &etcd_bytes(), 0o600, 0, 0)
                .unwrap();
            sim
        }
    }
}

#[derive(Default)]
struct LoopRun {
    cases: usize,
    outcomes: BTreeMap<i32, usize>,
    violations: Vec<String>,
}

/// A clean `set` commits and the journal and catalog verify (what `verify` checks).
fn usable(sim: &SimFs) -> Result<(), String> {
    let w = world();
    let fs = plain(sim);
    let (mut engine, _) = recover_fs(fs.clone(), Policy::Revert).map_err(|e| e.to_string())?;
    let observed = engine
        .observe(Path::new(MANIFEST))
        .map_err(|e| e.to_string())?;
    let target = if observed.bytes == w.after {
        w.before.clone()
    } else {
        w.after.clone()
    };
    let change = Change {
        observed,
        after_bytes: target.clone(),
        after_meta: None,
    };
    let r = engine
        .transact(TxnKind::Set, "clean set", vec![change], None)
        .map_err(|e| e.to_string())?;
    if r.status != TxnStatus::Committed || fs.read(Path::new(MANIFEST)).ok() != Some(target) {
        return Err(format!("a clean set did not commit: {r:?}"));
    }
    let scan = wal::scan_from(fs.as_ref(), &paths().journal, journal_start())
        .map_err(|e| e.to_string())?;
    if scan.torn.is_some() {
        return Err(format!("verify: torn tail {:?}", scan.torn));
    }
    let rebuilt = rebuilt_catalog(&fs, &scan.records).map_err(|e| e.to_string())?;
    if rebuilt.dump().ok() != engine.catalog.dump().ok() {
        return Err("verify: the catalog disagrees with the journal".into());
    }
    Ok(())
}

fn check_case(
    op: Operation,
    start: &SimFs,
    base: &[VersionKey],
    n: u64,
    fault: Fault,
) -> (i32, Vec<String>) {
    let sim = copy(start);
    let ffs = FaultFs::over_sim(sim.clone());
    ffs.fail_at(n, fault);
    let (code, what) = run(op, Arc::new(ffs.clone()));
    let injected = ffs.injected();
    let label = format!(
        "{op:?}, op {n} {fault:?} ({:?}) -> exit {code}: {what}",
        injected.first().map(|i| (i.op, i.path.clone()))
    );
    let mut bad = Vec::new();
    if !matches!(code, 0 | 3 | 4 | 7) {
        bad.push(format!("{label}: exit {code} for an injected I/O error"));
    }
    let fsync_failed = injected
        .iter()
        .any(|i| matches!(i.op, Op::Sync | Op::SyncDir | Op::Truncate));
    // (Exit 3 of a rolled-back set may follow a failed directory fsync of the rollback's
    // rename: the rollback then fsyncs the directory once more, and the power-cut check of
    // `recover_and_check` proves the result durable.)
    if code == 0 && fsync_failed && !matches!(op, Operation::Recover) {
        bad.push(format!("{label}: a failed fsync ended in success"));
    }
    if code == 0 && fsync_failed && matches!(op, Operation::Recover) {
        // Recovery that reports success must have made its resolution durable.
        let durable = journal_facts(plain(&sim.power_cut_exact()).as_ref()).map(|f| f.fate);
        if durable == Ok(Fate::Open) {
            bad.push(format!(
                "{label}: recovery reported success after a failed fsync, not durable"
            ));
        }
    }
    if code == 0 && matches!(op, Operation::Set | Operation::Restore) {
        let durable = journal_facts(plain(&sim.power_cut_exact()).as_ref()).map(|f| f.fate);
        if durable != Ok(Fate::Committed) {
            bad.push(format!(
                "{label}: commit reported but the journal says {durable:?}"
            ));
        }
    }
    if matches!(op, Operation::Snapshot)
        && plain(&sim).read(Path::new(ETCD)).ok() != Some(etcd_bytes())
    {
        bad.push(format!("{label}: snapshot changed the file"));
    }
    for policy in POLICIES {
        // The process ended with its error; the power stayed on: recover from the live state.
        let found = recover_and_check(&sim.fork(), plain, policy, base, &label);
        for v in found.invariants {
            // Exit 4 is a legitimate end of a rolled-back set whose rollback write failed: the
            // journal says so, and history must then end at what is on disk (item 5).
            if code == 4 && v.contains("the journal says RollbackFailed") {
                continue;
            }
            bad.push(v);
        }
        if code == 4 {
            bad.extend(found.history);
        }
    }
    if let Err(e) = usable(&sim.fork()) {
        bad.push(format!("{label}: not usable afterwards: {e}"));
    }
    (code, bad)
}

fn io_error_loop(op: Operation) -> LoopRun {
    let shapes: Vec<(String, Option<SimFs>)> = match op {
        Operation::Recover => incomplete_shapes()
            .into_iter()
            .map(|(k, s)| (k, Some(s)))
            .collect(),
        _ => vec![(String::new(), None)],
    };
    let mut result = LoopRun::default();
    for (shape, sim) in &shapes {
        let start = start_state(op, sim.as_ref());
        let base = durable_versions(&start);
        // The operation once without a fault: how many file operations it makes.
        let counter = FaultFs::over_sim(copy(&start));
        let (code, what) = run(op, Arc::new(counter.clone()));
        let clean = if matches!(op, Operation::RolledBackSet) {
            3
        } else {
            0
        };
        assert_eq!(
            code, clean,
            "{op:?} {shape}: runs as planned without faults: {what}"
        );
        let total = counter.ops();
        for n in 1..=total {
            for fault in Fault::ALL {
                let (code, bad) = check_case(op, &start, &base, n, fault);
                result.cases += 1;
                *result.outcomes.entry(code).or_default() += 1;
                result
                    .violations
                    .extend(bad.into_iter().map(|b| format!("[{shape}] {b}")));
            }
        }
        eprintln!(
            "io_error_loop {op:?} {shape}: {total} file operations x {} faults",
            Fault::ALL.len()
        );
    }
    eprintln!(
        "io_error_loop {op:?}: {} shape(s), {} cases, exit codes {:?}, {} violation(s)",
        shapes.len(),
        result.cases,
        result.outcomes,
        result.violations.len()
    );
    result
}

/// Violations where a dead disk failed the journal's fsync and then its cut back to the last
/// durable record: the bytes that fsync covered are lost for good (fsyncgate) but still read
/// back from the page cache, and the next run trusts them. The journal appender's part of
/// issue 11 (items 1-2), listed apart so the failure says whose it is.
fn journal_dead_disk(v: &str) -> bool {
    v.contains("DeadDisk (Some((Sync, \"/var/lib/kubeharden/journal/")
}

fn assert_clean(op: Operation) {
    let run = io_error_loop(op);
    assert!(run.cases > 0);
    let journal = run
        .violations
        .iter()
        .filter(|v| journal_dead_disk(v))
        .count();
    assert!(
        run.violations.is_empty(),
        "{op:?}: {} violation(s) in {} cases ({journal} of them after a dead disk failed a \
         journal fsync and its cut-back: the next run trusts bytes that fsync covered), first \
         ones:\n{}",
        run.violations.len(),
        run.cases,
        run.violations
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn io_error_loop_snapshot() {
    assert_clean(Operation::Snapshot);
}

#[test]
fn io_error_loop_set() {
    assert_clean(Operation::Set);
}

#[test]
fn io_error_loop_restore() {
    assert_clean(Operation::Restore);
}

#[test]
fn io_error_loop_rolled_back_set() {
    assert_clean(Operation::RolledBackSet);
}

#[test]
fn io_error_loop_recover_each_incomplete_shape() {
    assert_clean(Operation::Recover);
}

// ------------------------------------------------------------------------------------------
// Regression tests of issue 11's items, in-process
// ------------------------------------------------------------------------------------------

/// Open and recover `fs` with the catalog file `catalog` (a real SQLite file in a temp dir;
/// the journal, objects and manifests are on the simulator).
fn recover_with_file(
    fs: Arc<dyn Fs>,
    catalog: &Path,
) -> kubeharden::error::Result<(
    kubeharden::engine::Engine,
    kubeharden::engine::recovery::RecoveryReport,
)> {
    state::prepare(fs.as_ref(), &paths(), true)?;
    let un = Unrecovered::open(fs, paths(), Catalog::open(catalog)?, true)?;
    un.recover(Policy::Revert, &[PathBuf::from(MANIFESTS)], None)
}

fn set_after(engine: &mut kubeharden::engine::Engine) -> kubeharden::engine::txn::TxnReport {
    let observed = engine.observe(Path::new(MANIFEST)).unwrap();
    let change = Change {
        observed,
        after_bytes: world().after.clone(),
        after_meta: None,
    };
    engine
        .transact(TxnKind::Set, "item test", vec![change], None)
        .unwrap()
}

fn rebuilt_dump(sim: &SimFs) -> String {
    let fs = plain(sim);
    let scan = wal::scan_from(fs.as_ref(), &paths().journal, journal_start()).unwrap();
    rebuilt_catalog(&fs, &scan.records).unwrap().dump().unwrap()
}

#[test]
fn item3_catalog_write_failure_after_commit_is_committed() {
    let w = world();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("catalog.sqlite");
    let sim = setup(w);
    let (mut engine, _) = recover_with_file(plain(&sim), &file).unwrap();
    // The catalog now fails every write (a full or failing disk: see tests/full_disk.rs for
    // the real thing).
    engine.catalog.refuse_writes().unwrap();
    let _ = kubeharden::cli::output::take_warnings();
    let report = set_after(&mut engine);
    assert_eq!(report.status, TxnStatus::Committed, "{}", report.reason);
    assert_eq!(plain(&sim).read(Path::new(MANIFEST)).unwrap(), w.after);
    let durable = journal_facts(plain(&sim.power_cut_exact()).as_ref()).unwrap();
    assert_eq!(durable.fate, Fate::Committed);
    let warnings = kubeharden::cli::output::take_warnings();
    assert!(
        warnings.iter().any(
            |w| w.contains("catalog (derived index, rebuilt from the journal)")
                && w.contains("EROFS")
        ),
        "a warning names the catalog and the errno: {warnings:?}"
    );
    // The run went on with a catalog rebuilt in memory: history says committed, once.
    let row = engine.catalog.txn(SCENARIO_TXN).unwrap().unwrap();
    assert_eq!(row.status, "committed");
    assert_eq!(engine.catalog.dump().unwrap(), rebuilt_dump(&sim));
    drop(engine);
    // The next start catches the file up from its checkpoint: the change is there once.
    let (engine, _) = recover_with_file(plain(&sim), &file).unwrap();
    assert_eq!(engine.catalog.dump().unwrap(), rebuilt_dump(&sim));
    let afters = engine
        .catalog
        .versions(Some(MANIFEST))
        .unwrap()
        .into_iter()
        .filter(|v| v.txn == Some(SCENARIO_TXN))
        .count();
    assert_eq!(afters, 1, "the change is recorded exactly once");
    assert!(kubeharden::cli::output::take_warnings().is_empty());
}

#[test]
fn item3_catalog_that_lost_its_last_writes_is_caught_up_from_the_journal() {
    let w = world();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("catalog.sqlite");
    let sim = setup(w);
    drop(recover_with_file(plain(&sim), &file).unwrap());
    // What a power cut can leave of a catalog written without fsync: an older state.
    let saved = tmp.path().join("saved");
    std::fs::create_dir(&saved).unwrap();
    let side_files = ["catalog.sqlite", "catalog.sqlite-wal"];
    for f in side_files {
        std::fs::copy(tmp.path().join(f), saved.join(f)).unwrap();
    }
    let (mut engine, _) = recover_with_file(plain(&sim), &file).unwrap();
    assert_eq!(set_after(&mut engine).status, TxnStatus::Committed);
    drop(engine);
    for f in side_files {
        std::fs::copy(saved.join(f), tmp.path().join(f)).unwrap();
    }
    let (engine, _) = recover_with_file(plain(&sim), &file).unwrap();
    assert_eq!(
        engine.catalog.txn(SCENARIO_TXN).unwrap().unwrap().status,
        "committed"
    );
    assert_eq!(engine.catalog.dump().unwrap(), rebuilt_dump(&sim));
}

#[test]
fn item7_catalog_has_no_shared_memory_file_and_no_mapping() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("catalog.sqlite");
    let sim = setup(world());
    let (mut engine, _) = recover_with_file(plain(&sim), &file).unwrap();
    assert_eq!(set_after(&mut engine).status, TxnStatus::Committed);
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with("-shm")),
        "no memory-mapped -shm file: {names:?}"
    );
    // Nothing of the catalog is mapped into the process, so a full disk cannot SIGBUS it.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mapped: Vec<&str> = maps
        .lines()
        .filter(|l| l.contains(&*tmp.path().to_string_lossy()))
        .collect();
    assert!(mapped.is_empty(), "catalog mapped: {mapped:?}");
    drop(engine);
}

/// A power cut right after APPLIED of the scenario: an incomplete transaction with the after
/// content on disk.
fn incomplete_with_after_on_disk() -> SimFs {
    let (_, sim) = incomplete_shapes()
        .into_iter()
        .find(|(k, _)| k.starts_with("after on disk"))
        .expect("a shape with the after content on disk");
    sim
}

#[test]
fn item4_recovery_read_error_is_an_io_error_not_a_conflict() {
    let w = world();
    let start = incomplete_with_after_on_disk();
    // Which operation of recovery reads the manifest.
    let counter = FaultFs::over_sim(copy(&start));
    recover_fs(Arc::new(counter.clone()), Policy::Revert).unwrap();
    let n = counter
        .trace()
        .iter()
        .position(|(op, p)| *op == Op::Read && p == Path::new(MANIFEST))
        .expect("recovery reads the manifest") as u64
        + 1;
    let sim = copy(&start);
    let ffs = FaultFs::over_sim(sim.clone());
    ffs.fail_at(n, Fault::Eio);
    let err = match recover_fs(Arc::new(ffs), Policy::Revert) {
        Err(e) => e,
        Ok((_, r)) => panic!("a failed read must not resolve anything: {r:?}"),
    };
    assert_eq!(err.exit_code(), 7, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(MANIFEST) && msg.contains("EIO"), "{msg}");
    assert!(msg.contains("nothing was marked"), "{msg}");
    assert!(!msg.contains("external"), "{msg}");
    // Nothing was marked: the transaction is still open, no external version was recorded.
    let facts = journal_facts(plain(&sim).as_ref()).unwrap();
    assert_eq!(facts.fate, Fate::Open);
    assert!(!facts.records.iter().any(|r| matches!(&r.decoded.record,
        Record::Version(v) if v.origin == Origin::External)));
    assert_eq!(plain(&sim).read(Path::new(MANIFEST)).unwrap(), w.after);
    // Once the disk reads, recovery reverts it, without a conflict.
    let (_, report) = recover_fs(plain(&sim), Policy::Revert).unwrap();
    assert!(report.conflicts().is_empty(), "{report:?}");
    assert_eq!(report.resolved[0].action, "reverted");
    assert_eq!(plain(&sim).read(Path::new(MANIFEST)).unwrap(), w.before);
}

#[test]
fn item4_conflict_message_says_recorded_only_when_it_was() {
    let start = incomplete_with_after_on_disk();
    let sim = copy(&start);
    // Someone else puts a third content in place.
    sim.write_file_durable(Path::new(MANIFEST), b"someone else's\n", 0o600, 0, 0)
        .unwrap();
    let (engine, report) = recover_fs(plain(&sim), Policy::Revert).unwrap();
    let c = report.conflicts();
    assert_eq!(c.len(), 1);
    assert!(
        c[0].note.contains("recorded as an external version"),
        "{}",
        c[0].note
    );
    let last = engine.catalog.last_version(MANIFEST).unwrap().unwrap();
    assert_eq!(last.origin, "external", "it really was recorded");
}

#[test]
fn item5_rollback_failed_records_the_after_content_that_is_on_disk() {
    let w = world();
    let start = start_state(Operation::RolledBackSet, None);
    // The rollback's write: the second creation of the manifest's temp file.
    let counter = FaultFs::over_sim(copy(&start));
    run(Operation::RolledBackSet, Arc::new(counter.clone()));
    let temp = kubeharden::engine::replace::temp_path_for(Path::new(MANIFEST));
    let creates: Vec<usize> = counter
        .trace()
        .iter()
        .enumerate()
        .filter(|(_, (op, p))| *op == Op::CreateNew && *p == temp)
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(creates.len(), 2, "the write and the rollback's write");
    let sim = copy(&start);
    let ffs = FaultFs::over_sim(sim.clone());
    ffs.fail_at(creates[1] as u64, Fault::Enospc);
    let (engine, report) = scenario(Arc::new(ffs), w, Plan::GateRejects).unwrap();
    assert_eq!(
        report.status,
        TxnStatus::RollbackFailed,
        "{}",
        report.reason
    );
    assert_eq!(plain(&sim).read(Path::new(MANIFEST)).unwrap(), w.after);
    // History ends at what is on disk: `show --at now` gives the after content.
    let now = engine
        .catalog
        .version_at(MANIFEST, chrono::Utc::now().timestamp_millis() + 1)
        .unwrap()
        .unwrap();
    assert_eq!(now.state.hash, *blake3::hash(&w.after).as_bytes());
    assert_eq!(now.origin, "change");
    drop(engine);
    // The next snapshot does not take the tool's own content for an external edit.
    let (mut engine, _) = recover_fs(plain(&sim), Policy::Revert).unwrap();
    let o = engine.observe(Path::new(MANIFEST)).unwrap();
    assert_eq!(o.recorded, None, "recorded again as {:?}", o.recorded);
}
