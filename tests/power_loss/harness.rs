//! Shared machinery of the power-loss tests: the world (contents, setup, the scenario under
//! test), what the journal says, and the cut-point matrix.
//!
//! About the catalog: it is SQLite and does not go through [`Fs`], so the simulator cannot cut
//! the power under it. Every recovery here opens a fresh `Catalog::open_in_memory()`: the
//! catalog is treated as lost at the cut. That is the worst case — recovery must rebuild it from
//! the journal alone — and it is what the real code does whenever the catalog's checkpoint does
//! not match the journal (`scan_after_checkpoint` in `src/engine/mod.rs`).

use crate::invariants::{recover_and_check, Findings};
use kubeharden::catalog::{Catalog, VersionRow};
use kubeharden::engine::recovery::{Policy, RecoveryReport};
use kubeharden::engine::state::{self, StatePaths};
use kubeharden::engine::txn::{Change, Gate, GateTarget, TxnReport, TxnStatus};
use kubeharden::engine::{Engine, Unrecovered};
use kubeharden::fsys::sim::SimFs;
use kubeharden::fsys::Fs;
use kubeharden::journal::format::SEGMENT_HEADER_LEN;
use kubeharden::journal::record::{FileState, Origin, Record, TxnId, TxnKind};
use kubeharden::journal::wal::{self, Located, Position, TornTail};
use kubeharden::store::ObjectStore;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub const MANIFESTS: &str = "/etc/kubernetes/manifests";
pub const MANIFEST: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";
pub const STATE: &str = "/var/lib/kubeharden";
/// The manifest's metadata before (and after) every transaction.
pub const META: (u32, u32, u32) = (0o600, 0, 0);
/// Setup commits transaction 1; the transaction under test is number 2.
pub const SCENARIO_TXN: TxnId = 2;
pub const POLICIES: [Policy; 2] = [Policy::Revert, Policy::Replay];

pub fn paths() -> StatePaths {
    StatePaths::new(Path::new(STATE))
}

pub fn journal_start() -> Position {
    Position {
        segment: 1,
        offset: SEGMENT_HEADER_LEN as u64,
    }
}

/// Turns the simulator into the `Fs` the engine runs on (plain, or a test-only wrapper).
pub type Wrap = fn(&SimFs) -> Arc<dyn Fs>;

pub fn plain(sim: &SimFs) -> Arc<dyn Fs> {
    Arc::new(sim.clone())
}

// ------------------------------------------------------------------------------------------
// The world: contents, setup, scenario
// ------------------------------------------------------------------------------------------

/// What every scenario starts from; computed once.
pub struct World {
    /// The kubeadm manifest as installed (the baseline).
    pub original: Vec<u8>,
    /// After setup's committed change: the before content of the transaction under test.
    pub before: Vec<u8>,
    /// The after content of the transaction under test.
    pub after: Vec<u8>,
    /// Operations setup performs (the same every time: setup is deterministic).
    pub setup_ops: u64,
}

fn reference_manifest() -> Vec<u8> {
    const SHARED: &str = "/work/shared/reference/manifests/kubeadm-v1.30.14/kube-apiserver.yaml";
    let local = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/manifests/kubeadm-v1.30.14/kube-apiserver.yaml");
    std::fs::read(SHARED)
        .or_else(|_| std::fs::read(&local))
        .expect("the kubeadm v1.30.14 kube-apiserver manifest")
}

fn insert_after(bytes: &[u8], anchor: &str, line: &str) -> Vec<u8> {
    let text = std::str::from_utf8(bytes).expect("utf-8 manifest");
    let at = text.find(anchor).expect("anchor line in the manifest") + anchor.len();
    format!("{}{line}{}", &text[..at], &text[at..]).into_bytes()
}

pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let original = reference_manifest();
        let before = insert_after(
            &original,
            "    - --allow-privileged=true\n",
            "    - --profiling=false\n",
        );
        let after = insert_after(
            &before,
            "    - --advertise-address=10.0.1.171\n",
            "    - --anonymous-auth=false\n",
        );
        let mut w = World {
            original,
            before,
            after,
            setup_ops: 0,
        };
        let sim = setup(&w);
        w.setup_ops = sim.ops_done();
        assert_eq!(durable_versions(&sim).len(), 2, "baseline + setup's change");
        w
    })
}

/// A fresh file system with the manifest installed, its baseline recorded and one committed
/// change (so history has several versions). Everything setup did is durable.
pub fn setup(w: &World) -> SimFs {
    let sim = installed(w);
    setup_on(w, &sim, plain(&sim));
    sim
}

/// A fresh file system with only the manifest installed, durable.
pub fn installed(w: &World) -> SimFs {
    let sim = SimFs::new();
    sim.mkdir_p(Path::new(MANIFESTS), 0o755).unwrap();
    // The parent of the state dir exists on any real system; the state dir itself is created.
    sim.mkdir_p(Path::new(STATE).parent().unwrap(), 0o755)
        .unwrap();
    let (mode, uid, gid) = META;
    sim.write_file_durable(Path::new(MANIFEST), &w.original, mode, uid, gid)
        .unwrap();
    sim
}

/// Setup's engine work on `sim` (from [`installed`]), through `fs` (`sim`, possibly wrapped).
pub fn setup_on(w: &World, sim: &SimFs, fs: Arc<dyn Fs>) {
    let (mut engine, _) = recover_fs(fs, Policy::Revert).unwrap();
    let observed = engine.observe(Path::new(MANIFEST)).unwrap();
    assert_eq!(observed.recorded, Some(Origin::Baseline));
    let change = Change {
        observed,
        after_bytes: w.before.clone(),
        after_meta: None,
    };
    let report = engine
        .transact(TxnKind::Set, "setup: --profiling=false", vec![change], None)
        .unwrap();
    assert_eq!((report.status, report.txn), (TxnStatus::Committed, Some(1)));
    if w.setup_ops != 0 {
        assert_eq!(sim.ops_done(), w.setup_ops, "setup is deterministic");
    }
}

/// One start of the tool: lock-free stand-in for `open_mutating` (prepare, open writable with a fresh
/// catalog — see the module comment — and recover).
pub fn recover_fs(
    fs: Arc<dyn Fs>,
    policy: Policy,
) -> kubeharden::error::Result<(Engine, RecoveryReport)> {
    state::prepare(fs.as_ref(), &paths(), true)?;
    let un = Unrecovered::open(fs, paths(), Catalog::open_in_memory()?, true)?;
    un.recover(policy, &[PathBuf::from(MANIFESTS)], None)
}

/// How the transaction under test ends when nothing fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// No health gate: it commits.
    Commits,
    /// The health gate rejects the change: it is rolled back.
    GateRejects,
}

/// Rejects the after content (the component "does not come back"), accepts anything else:
/// the same gate confirms the rollback.
struct RejectingGate;

impl Gate for RejectingGate {
    fn check(&mut self, targets: &[GateTarget]) -> Result<(), String> {
        if targets.iter().any(|t| t.bytes == world().after.as_slice()) {
            return Err("kube-apiserver did not come back healthy (test gate)".into());
        }
        Ok(())
    }
}

/// The scenario under test: open+recover, observe, transact (add a flag line).
pub fn scenario(
    fs: Arc<dyn Fs>,
    w: &World,
    plan: Plan,
) -> kubeharden::error::Result<(Engine, TxnReport)> {
    let (mut engine, _) = recover_fs(fs, Policy::Revert)?;
    let observed = engine.observe(Path::new(MANIFEST))?;
    let change = Change {
        observed,
        after_bytes: w.after.clone(),
        after_meta: None,
    };
    let mut gate = RejectingGate;
    let gate: Option<&mut dyn Gate> = match plan {
        Plan::Commits => None,
        Plan::GateRejects => Some(&mut gate),
    };
    let report = engine.transact(
        TxnKind::Set,
        "scenario: --anonymous-auth=false",
        vec![change],
        gate,
    )?;
    Ok((engine, report))
}

/// What the transaction under test reports when nothing fails.
pub fn planned_status(plan: Plan) -> TxnStatus {
    match plan {
        Plan::Commits => TxnStatus::Committed,
        Plan::GateRejects => TxnStatus::RolledBack,
    }
}

/// Operations of the whole scenario when nothing fails.
pub fn scenario_ops(w: &World, wrap: Wrap, plan: Plan) -> u64 {
    let sim = setup(w);
    let (_, report) = scenario(wrap(&sim), w, plan).expect("the scenario runs to the end");
    assert_eq!(report.status, planned_status(plan));
    assert_eq!(report.txn, Some(SCENARIO_TXN));
    sim.ops_done() - w.setup_ops
}

/// The surviving file systems of one power cut: the exact durable state and `seeds` torn ones.
pub fn survivors(sim: &SimFs, seeds: &[u64]) -> Vec<(String, SimFs)> {
    let mut out = vec![("exact".to_string(), sim.power_cut_exact())];
    for &s in seeds {
        out.push((format!("seed {s}"), sim.power_cut(s)));
    }
    out
}

/// An independent copy of a settled file system (one whose live and durable states agree).
pub fn copy(sim: &SimFs) -> SimFs {
    sim.power_cut_exact()
}

/// The versions the journal of `sim` holds durably (timestamps differ from run to run, so each
/// setup has its own).
pub fn durable_versions(sim: &SimFs) -> Vec<VersionKey> {
    let fs = plain(&sim.power_cut_exact());
    let facts = journal_facts(fs.as_ref()).expect("a readable journal");
    versions_of(&fs, &facts)
}

pub fn versions_of(fs: &Arc<dyn Fs>, facts: &Facts) -> Vec<VersionKey> {
    let catalog = rebuilt_catalog(fs, &facts.records).expect("a catalog from the journal");
    let versions = catalog.versions(None).expect("versions");
    versions.iter().map(VersionKey::of).collect()
}

// ------------------------------------------------------------------------------------------
// What the journal says
// ------------------------------------------------------------------------------------------

/// The transaction under test, as the journal tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fate {
    NotBegun,
    Open,
    Committed,
    RolledBack,
    Reverted,
    Aborted,
    RollbackFailed,
    Conflict,
}

pub struct Facts {
    pub fate: Fate,
    pub torn: Option<TornTail>,
    pub records: Vec<Located>,
}

pub fn journal_facts(fs: &dyn Fs) -> Result<Facts, String> {
    let scan = wal::scan_from(fs, &paths().journal, journal_start()).map_err(|e| e.to_string())?;
    let mut fate = Fate::NotBegun;
    for r in &scan.records {
        let rec = &r.decoded.record;
        if rec.txn() != Some(SCENARIO_TXN) {
            continue;
        }
        fate = match rec {
            Record::Begin(_) => Fate::Open,
            Record::Commit { .. } => Fate::Committed,
            Record::RolledBack { .. } => Fate::RolledBack,
            Record::Reverted { .. } => Fate::Reverted,
            Record::Aborted { .. } => Fate::Aborted,
            Record::RollbackFailed { .. } => Fate::RollbackFailed,
            Record::Conflict { .. } => Fate::Conflict,
            _ => fate,
        };
    }
    Ok(Facts {
        fate,
        torn: scan.torn,
        records: scan.records,
    })
}

pub fn rebuilt_catalog(
    fs: &Arc<dyn Fs>,
    records: &[Located],
) -> kubeharden::error::Result<Catalog> {
    let store = ObjectStore::new(fs.clone(), paths().objects);
    let mut c = Catalog::open_in_memory()?;
    c.apply(records, &|h| store.stored_size(h).unwrap_or(0))?;
    Ok(c)
}

/// A version without `on_disk_until` (which a later version legitimately sets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionKey {
    pub path: String,
    pub version: u64,
    pub state: FileState,
    pub origin: String,
    pub txn: Option<TxnId>,
    pub recorded_at: i64,
    pub on_disk_from: i64,
}

impl VersionKey {
    pub fn of(v: &VersionRow) -> VersionKey {
        VersionKey {
            path: v.path.clone(),
            version: v.version,
            state: v.state,
            origin: v.origin.clone(),
            txn: v.txn,
            recorded_at: v.recorded_at,
            on_disk_from: v.on_disk_from,
        }
    }
}

// ------------------------------------------------------------------------------------------
// The cut-point matrix
// ------------------------------------------------------------------------------------------

pub struct MatrixRun {
    /// Cut points exercised: every k in 0..=total operations of the scenario.
    pub cut_points: u64,
    /// Recoveries checked (survivors × policies), and how many of them violated an invariant.
    pub checked: usize,
    pub failed: usize,
    pub findings: Findings,
    /// How the transaction under test survived, over all survivors.
    pub fates: std::collections::BTreeMap<Fate, usize>,
}

/// For every k in 0..=total: fresh setup, cut the power after k operations of the scenario,
/// take the exact survivor and one per seed, and check recovery under both policies.
pub fn run_matrix(wrap: Wrap, seeds: &[u64], plan: Plan) -> MatrixRun {
    let w = world();
    let total = scenario_ops(w, wrap, plan);
    let mut run = MatrixRun {
        cut_points: total + 1,
        checked: 0,
        failed: 0,
        findings: Findings::default(),
        fates: Default::default(),
    };
    for k in 0..=total {
        let sim = setup(w);
        let base = durable_versions(&sim);
        sim.set_fail_after(Some(w.setup_ops + k));
        let result = scenario(wrap(&sim), w, plan);
        assert_eq!(
            sim.ops_done(),
            w.setup_ops + k,
            "k={k}: the cut is where it was aimed"
        );
        let status = result.as_ref().ok().map(|r| r.1.status);
        // The planned outcome is reported only if the power never failed (a commit only once
        // it is durable).
        let planned = status == Some(planned_status(plan));
        assert_eq!(planned, k == total, "k={k}: {:?}", result.map(|r| r.1));
        for (name, survivor) in survivors(&sim, seeds) {
            let fate = journal_facts(plain(&survivor).as_ref()).map(|f| f.fate);
            *run.fates.entry(fate.unwrap_or(Fate::Conflict)).or_default() += 1;
            for policy in POLICIES {
                let label = format!("cut after {k}/{total} ops, {name}");
                let found = recover_and_check(&copy(&survivor), wrap, policy, &base, &label);
                run.failed += usize::from(!found.invariants.is_empty());
                run.findings.extend(found);
                run.checked += 1;
            }
        }
    }
    run
}
