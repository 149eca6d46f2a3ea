//! I/O errors injected into the journal appender and the object store (issue 11, items 1 and
//! 2), in process, on the power-loss simulator wrapped in [`FaultFs`]. Each "process" is a fresh
//! engine with a catalog rebuilt from the journal (as in `tests/power_loss.rs`); what a later
//! run or a power cut finds is checked on the same simulated disk.

use kubeharden::catalog::Catalog;
use kubeharden::engine::recovery::{Policy, RecoveryReport};
use kubeharden::engine::state::{self, StatePaths};
use kubeharden::engine::txn::{Change, TxnReport, TxnStatus};
use kubeharden::engine::{Engine, Unrecovered};
use kubeharden::error::Result;
use kubeharden::fsys::fault::{Fault, FaultFs, Op};
use kubeharden::fsys::sim::SimFs;
use kubeharden::fsys::Fs;
use kubeharden::journal::format::SEGMENT_HEADER_LEN;
use kubeharden::journal::record::{Record, TxnKind};
use kubeharden::journal::wal::{self, Journal, Position, Scan};
use kubeharden::store::objects::hash_bytes;
use kubeharden::store::ObjectStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const STATE: &str = "/var/lib/kubeharden";
const MANIFESTS: &str = "/etc/kubernetes/manifests";
const MANIFEST: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";
const JOURNAL: &str = "/var/lib/kubeharden/journal";

fn content(flag: &str) -> Vec<u8> {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n  - \
         command:\n    - kube-apiserver\n    - {flag}\n"
    )
    .into_bytes()
}

fn paths() -> StatePaths {
    StatePaths::new(Path::new(STATE))
}

/// One start of the tool (lock-free stand-in for `open_mutating`).
fn start(fs: Arc<dyn Fs>) -> Result<(Engine, RecoveryReport)> {
    state::prepare(fs.as_ref(), &paths(), true)?;
    let un = Unrecovered::open(fs, paths(), Catalog::open_in_memory()?, true)?;
    un.recover(Policy::Revert, &[PathBuf::from(MANIFESTS)], None)
}

/// One `set`: start, observe, one transaction writing `bytes` (no health gate).
fn set(fs: Arc<dyn Fs>, bytes: &[u8]) -> Result<TxnReport> {
    let (mut engine, _) = start(fs)?;
    let observed = engine.observe(Path::new(MANIFEST))?;
    let change = Change {
        observed,
        after_bytes: bytes.to_vec(),
        after_meta: None,
    };
    engine.transact(TxnKind::Set, "test", vec![change], None)
}

/// The manifest installed, a baseline and one committed change: everything durable.
fn world() -> SimFs {
    let sim = SimFs::new();
    sim.mkdir_p(Path::new(MANIFESTS), 0o755).unwrap();
    sim.mkdir_p(Path::new("/var/lib"), 0o755).unwrap();
    sim.write_file_durable(Path::new(MANIFEST), &content("--a=1"), 0o600, 0, 0)
        .unwrap();
    let r = set(Arc::new(sim.clone()), &content("--a=2")).unwrap();
    assert_eq!(r.status, TxnStatus::Committed);
    sim.power_cut_exact()
}

fn journal_start() -> Position {
    Position {
        segment: 1,
        offset: SEGMENT_HEADER_LEN as u64,
    }
}

/// The live journal, as the next run would read it: every byte must be a whole record.
fn clean_scan(fs: &dyn Fs, what: &str) -> Scan {
    let scan = wal::scan_from(fs, Path::new(JOURNAL), journal_start())
        .unwrap_or_else(|e| panic!("{what}: journal unreadable: {e}"));
    assert!(
        scan.torn.is_none(),
        "{what}: bytes after the last record: {:?}",
        scan.torn
    );
    scan
}

fn is_journal(p: &Path) -> bool {
    p.starts_with(JOURNAL)
}

/// The trace of a `set` of `bytes` on a copy of `sim`, without faults.
fn trace_of_set(sim: &SimFs, bytes: &[u8]) -> Vec<(Op, PathBuf)> {
    let fs = FaultFs::over_sim(sim.power_cut_exact());
    let r = set(Arc::new(fs.clone()), bytes).unwrap();
    assert_eq!(r.status, TxnStatus::Committed);
    fs.trace()
}

/// 1-based numbers of the operations of `trace` matching `pick`.
fn numbers(trace: &[(Op, PathBuf)], pick: impl Fn(Op, &Path) -> bool) -> Vec<u64> {
    trace
        .iter()
        .enumerate()
        .filter(|(_, (op, p))| pick(*op, p))
        .map(|(i, _)| i as u64 + 1)
        .collect()
}

/// BEGIN's write: the first journal write after the start's rewrite of the last segment (the
/// catalog of these runs is rebuilt in memory, so every record is unindexed at start).
fn begin_write(trace: &[(Op, PathBuf)]) -> u64 {
    let rewritten = numbers(trace, |_, p| p.ends_with(".journal-rewrite.tmp"))
        .last()
        .copied()
        .unwrap_or(0);
    numbers(trace, |op, p| op == Op::WriteAll && is_journal(p))
        .into_iter()
        .find(|&n| n > rewritten)
        .expect("BEGIN is written")
}

/// After the failed run: the segment holds only whole records, a later run (no fault) starts
/// and commits a change, and so does a run after a power cut.
fn assert_usable(sim: &SimFs, what: &str) {
    clean_scan(sim, what);
    let r = set(Arc::new(sim.clone()), &content("--c=3"))
        .unwrap_or_else(|e| panic!("{what}: the next run failed: {e}"));
    assert_eq!(r.status, TxnStatus::Committed, "{what}");
    let after = sim.power_cut_exact();
    let (engine, _) = start(Arc::new(after.clone()))
        .unwrap_or_else(|e| panic!("{what}: the run after a power cut failed: {e}"));
    drop(engine);
    let scan = clean_scan(&after, what);
    let store = ObjectStore::new(
        Arc::new(after.clone()),
        PathBuf::from(STATE).join("objects"),
    );
    for r in &scan.records {
        if let Record::Version(v) = &r.decoded.record {
            store
                .get(&v.state.hash)
                .unwrap_or_else(|e| panic!("{what}: version object lost: {e}"));
        }
    }
    assert_eq!(
        after.read_live(Path::new(MANIFEST)).unwrap(),
        content("--c=3")
    );
}

#[test]
fn item1_short_write_after_applied_then_usable() {
    let sim = world();
    let trace = trace_of_set(&sim, &content("--b=2"));
    // APPLIED is the first journal write after the manifest's rename; VERSION and COMMIT follow.
    let renamed = numbers(&trace, |op, p| op == Op::Rename && p.starts_with(MANIFESTS));
    let renamed = *renamed.last().expect("the manifest is renamed into place");
    let writes: Vec<u64> = numbers(&trace, |op, p| op == Op::WriteAll && is_journal(p))
        .into_iter()
        .filter(|&n| n > renamed)
        .collect();
    assert!(writes.len() >= 3, "APPLIED, VERSION, COMMIT: {writes:?}");
    let mut cases = 0;
    for &n in &writes[1..] {
        for fault in [Fault::ShortWrite, Fault::Enospc, Fault::Eio] {
            let what = format!("{fault:?} at operation {n}");
            let disk = sim.power_cut_exact();
            let fs = FaultFs::over_sim(disk.clone());
            fs.fail_at(n, fault);
            let r = set(Arc::new(fs.clone()), &content("--b=2"));
            assert!(
                !matches!(&r, Ok(r) if r.status == TxnStatus::Committed),
                "{what}: a failed journal write must not commit"
            );
            assert_eq!(fs.injected().len(), 1, "{what}");
            // The rollback recorded its records behind whole records only.
            let scan = clean_scan(&disk, &what);
            let ended = scan
                .records
                .iter()
                .any(|r| matches!(r.decoded.record, Record::RolledBack { txn: 2, .. }));
            assert!(ended, "{what}: the rollback of txn 2 is recorded");
            assert_eq!(
                disk.read_live(Path::new(MANIFEST)).unwrap(),
                content("--a=2")
            );
            assert_usable(&disk, &what);
            cases += 1;
        }
    }
    eprintln!("item1: {cases} cases");
}

#[test]
fn item2_begin_fsync_fails_then_not_trusted() {
    let sim = world();
    let trace = trace_of_set(&sim, &content("--b=2"));
    let begin = begin_write(&trace);
    let sync = numbers(&trace, |op, p| op == Op::Sync && is_journal(p))
        .into_iter()
        .find(|&n| n > begin)
        .expect("BEGIN is fsynced");
    for fault in [Fault::Eio, Fault::Enospc] {
        let what = format!("{fault:?} on BEGIN's fsync");
        let disk = sim.power_cut_exact();
        let before = clean_scan(&disk, &what).records.len();
        let fs = FaultFs::over_sim(disk.clone());
        fs.fail_at(sync, fault);
        let err = set(Arc::new(fs.clone()), &content("--b=2")).unwrap_err();
        assert!(err.to_string().contains("fsync"), "{what}: {err}");
        // The unsynced BEGIN is gone from the segment: no later run can trust it or append
        // behind it (its pages may never reach the disk: fsyncgate).
        let scan = clean_scan(&disk, &what);
        assert_eq!(scan.records.len(), before, "{what}: BEGIN was cut off");
        assert_eq!(
            disk.read_live(Path::new(MANIFEST)).unwrap(),
            content("--a=2")
        );
        // The next run on the same disk (no power cut in between), then a power cut.
        assert_usable(&disk, &what);
    }
}

#[test]
fn item2_object_dir_fsync_failed_not_trusted() {
    let sim = world();
    let new = content("--b=2");
    let hex = kubeharden::journal::record::hash_hex(&hash_bytes(&new));
    let sub = PathBuf::from(STATE).join("objects").join(&hex[..2]);
    let trace = trace_of_set(&sim, &new);
    let sync_sub = *numbers(&trace, |op, p| op == Op::SyncDir && p == sub)
        .first()
        .expect("the new object's directory is fsynced");
    let disk = sim.power_cut_exact();
    let fs = FaultFs::over_sim(disk.clone());
    fs.fail_at(sync_sub, Fault::Eio);
    let err = set(Arc::new(fs), &new).unwrap_err();
    assert!(err.to_string().contains("fsync"), "{err}");
    // The object file is there (its rename was not made durable). The next run stores the
    // same content: it must not trust the file as it is.
    let fs = FaultFs::over_sim(disk.clone());
    let r = set(Arc::new(fs.clone()), &new).unwrap();
    assert_eq!(r.status, TxnStatus::Committed);
    let synced_again = numbers(&fs.trace(), |op, p| op == Op::SyncDir && p == sub);
    assert!(
        !synced_again.is_empty(),
        "the object's directory is fsynced again"
    );
    // After a power cut, the object every version names is there and reads back.
    let after = disk.power_cut_exact();
    start(Arc::new(after.clone())).unwrap();
    let store = ObjectStore::new(
        Arc::new(after.clone()),
        PathBuf::from(STATE).join("objects"),
    );
    assert_eq!(store.get(&hash_bytes(&new)).unwrap(), new);
    assert_usable(&disk, "after the object's directory fsync failed");
}

/// Without fault injection the same run trusts an object it made or that a record names, and
/// pays no extra fsync: the re-sync is only for objects nobody vouched for.
#[test]
fn objects_named_by_records_are_not_synced_again() {
    let sim = world();
    let trace = trace_of_set(&sim, &content("--b=2"));
    let before = kubeharden::journal::record::hash_hex(&hash_bytes(&content("--a=2")));
    let obj = PathBuf::from(STATE)
        .join("objects")
        .join(&before[..2])
        .join(&before[2..]);
    let touched = numbers(&trace, |op, p| {
        p == obj && matches!(op, Op::OpenAppend | Op::Sync | Op::CreateNew)
    });
    assert!(
        touched.is_empty(),
        "the recorded before object was re-synced: {touched:?}"
    );
}

#[test]
fn journal_cut_back_after_a_short_write_and_appends_at_the_durable_end() {
    let sim = SimFs::new();
    sim.mkdir_p(Path::new(JOURNAL), 0o700).unwrap();
    let fs = FaultFs::over_sim(sim.clone());
    let mut j = Journal::open_at(Arc::new(fs.clone()), JOURNAL.into(), journal_start()).unwrap();
    j.append(&Record::Commit { txn: 1, at: 1 }).unwrap();
    j.sync().unwrap();
    let durable = j.synced_end();
    // A record written in full but not synced, then one that hits a full disk half way.
    j.append(&Record::Commit { txn: 2, at: 2 }).unwrap();
    fs.fail_at(fs.ops() + 1, Fault::ShortWrite);
    let err = j.append(&Record::Commit { txn: 3, at: 3 }).unwrap_err();
    assert!(err.to_string().contains("cut back"), "{err}");
    let seg = PathBuf::from(JOURNAL).join(wal::segment_name(1));
    assert_eq!(sim.metadata(&seg).unwrap().len, durable.offset);
    // The next record goes right after the durable one.
    let l = j.append(&Record::Commit { txn: 4, at: 4 }).unwrap();
    assert_eq!(l.pos, durable);
    j.sync().unwrap();
    let txns: Vec<String> = clean_scan(&sim, "after the cut")
        .records
        .iter()
        .map(|r| format!("{:?}", r.decoded.record))
        .collect();
    assert_eq!(txns.len(), 2, "{txns:?}");
    assert!(txns[1].contains("txn: 4"), "{txns:?}");
}

#[test]
fn journal_stops_appending_for_good_when_the_cut_back_fails() {
    let sim = SimFs::new();
    sim.mkdir_p(Path::new(JOURNAL), 0o700).unwrap();
    let fs = FaultFs::over_sim(sim.clone());
    let mut j = Journal::open_at(Arc::new(fs.clone()), JOURNAL.into(), journal_start()).unwrap();
    j.append(&Record::Commit { txn: 1, at: 1 }).unwrap();
    j.sync().unwrap();
    j.append(&Record::Commit { txn: 2, at: 2 }).unwrap();
    // The fsync fails and so does everything after it: the cut back cannot be done.
    fs.fail_at(fs.ops() + 1, Fault::DeadDisk);
    let err = j.sync().unwrap_err().to_string();
    assert!(err.contains("takes no more records"), "{err}");
    assert!(j.stopped().is_some());
    // Even with the disk back, this process appends nothing more behind those bytes.
    fs.reset();
    for _ in 0..2 {
        let e = j
            .append(&Record::Commit { txn: 3, at: 3 })
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("takes no more records") && e.contains("cutting"),
            "{e}"
        );
    }
    assert_eq!(fs.ops(), 0, "a stopped appender does not touch the file");
}

#[test]
fn object_temp_left_by_a_cut_is_removed_by_recovery() {
    let sim = world();
    let temp = PathBuf::from(STATE).join("objects/ab/.cdef0123.tmp");
    sim.write_file_durable(&temp, b"half an object", 0o600, 0, 0)
        .unwrap();
    let store = ObjectStore::new(Arc::new(sim.clone()), PathBuf::from(STATE).join("objects"));
    assert_eq!(store.leftover_temps().unwrap(), vec![temp.clone()]);
    let (_, report) = start(Arc::new(sim.clone())).unwrap();
    assert!(
        report.temps_removed.contains(&temp),
        "{:?}",
        report.temps_removed
    );
    assert!(sim.metadata(&temp).is_err(), "the temp is gone");
    // ... durably.
    assert!(sim.power_cut_exact().metadata(&temp).is_err());
    assert!(store.leftover_temps().unwrap().is_empty());
}

/// fsyncgate across processes: BEGIN's fsync fails and so does every operation after it (the
/// cut-back too), so the unsynced BEGIN stays in the page cache. The disk comes back; the next
/// run reads it back but must not trust it as durable: it rewrites the last segment (copy,
/// fsync, rename) before appending behind it. After a power cut the journal still reads
/// cleanly.
#[test]
fn item2_dead_disk_after_a_failed_fsync_then_the_next_run_rewrites_the_tail() {
    let sim = world();
    let trace = trace_of_set(&sim, &content("--b=2"));
    let begin = begin_write(&trace);
    let sync = numbers(&trace, |op, p| op == Op::Sync && is_journal(p))
        .into_iter()
        .find(|&n| n > begin)
        .expect("BEGIN is fsynced");
    let disk = sim.power_cut_exact();
    let fs = FaultFs::over_sim(disk.clone());
    fs.fail_at(sync, Fault::DeadDisk);
    let err = set(Arc::new(fs.clone()), &content("--b=2")).unwrap_err();
    assert!(err.to_string().contains("takes no more records"), "{err}");
    // The disk is back. The next run, on the same page cache, then a power cut.
    assert_usable(
        &disk,
        "after a dead disk failed BEGIN's fsync and its cut-back",
    );
    assert!(disk
        .metadata(&PathBuf::from(STATE).join(".journal-rewrite.tmp"))
        .is_err());
}
