//! A transaction that creates a file beside editing a manifest (as the CIS remediations that need
//! an audit policy or an encryption config do): at every power cut, recovery leaves either both
//! changes or neither — the created file exists only together with the edited manifest.

use kubeharden::catalog::Catalog;
use kubeharden::engine::recovery::Policy;
use kubeharden::engine::replace::TEMP_PREFIX;
use kubeharden::engine::state::{self, StatePaths};
use kubeharden::engine::txn::{Change, Gate, GateTarget, TxnStatus};
use kubeharden::engine::{Engine, Unrecovered};
use kubeharden::fsys::sim::SimFs;
use kubeharden::fsys::Fs;
use kubeharden::journal::record::TxnKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MANIFESTS: &str = "/etc/kubernetes/manifests";
const MANIFEST: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";
const POLICY: &str = "/etc/kubernetes/audit-policy.yaml";
const BEFORE: &[u8] = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n  - name: kube-apiserver\n    command:\n    - kube-apiserver\n";
const AFTER: &[u8] = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n  - name: kube-apiserver\n    command:\n    - kube-apiserver\n    - --audit-policy-file=/etc/kubernetes/audit-policy.yaml\n";
const POLICY_BYTES: &[u8] =
    b"apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n";

fn paths() -> StatePaths {
    StatePaths::new(Path::new("/var/lib/kubeharden"))
}

fn installed() -> SimFs {
    let sim = SimFs::new();
    sim.mkdir_p(Path::new(MANIFESTS), 0o755).unwrap();
    sim.mkdir_p(Path::new("/var/lib"), 0o755).unwrap();
    sim.write_file_durable(Path::new(MANIFEST), BEFORE, 0o600, 0, 0)
        .unwrap();
    sim
}

fn start(fs: Arc<dyn Fs>) -> kubeharden::error::Result<Engine> {
    state::prepare(fs.as_ref(), &paths(), true)?;
    let un = Unrecovered::open(fs, paths(), Catalog::open_in_memory()?, true)?;
    Ok(un
        .recover(Policy::Revert, &[PathBuf::from(MANIFESTS)], None)?
        .0)
}

struct Rejects;
impl Gate for Rejects {
    fn check(&mut self, t: &[GateTarget]) -> Result<(), String> {
        if t.iter().any(|t| t.bytes == AFTER) {
            Err("rejected by the test gate".into())
        } else {
            Ok(())
        }
    }
}

fn scenario(fs: Arc<dyn Fs>, reject: bool) -> kubeharden::error::Result<TxnStatus> {
    let mut engine = start(fs)?;
    let manifest = engine.observe(Path::new(MANIFEST))?;
    let policy = engine.observe_or_absent(Path::new(POLICY))?;
    let changes = vec![
        Change {
            observed: manifest,
            after_bytes: AFTER.to_vec(),
            after_meta: None,
        },
        Change {
            observed: policy,
            after_bytes: POLICY_BYTES.to_vec(),
            after_meta: Some((0o600, 0, 0)),
        },
    ];
    let mut gate = Rejects;
    let gate: Option<&mut dyn Gate> = if reject { Some(&mut gate) } else { None };
    Ok(engine
        .transact(TxnKind::Remediate, "audit policy", changes, gate)?
        .status)
}

/// (manifest bytes, policy bytes or None)
fn on_disk(sim: &SimFs) -> (Vec<u8>, Option<Vec<u8>>) {
    (
        sim.read_live(Path::new(MANIFEST)).unwrap(),
        sim.read_live(Path::new(POLICY)).ok(),
    )
}

fn assert_all_or_nothing(sim: &SimFs, committed: bool, what: &str) {
    let (m, p) = on_disk(sim);
    if committed {
        assert_eq!(
            (m.as_slice(), p.as_deref()),
            (AFTER, Some(POLICY_BYTES)),
            "{what}"
        );
    } else {
        assert_eq!((m.as_slice(), p.as_deref()), (BEFORE, None), "{what}");
    }
    let temps: Vec<String> = sim
        .list_dir(Path::new(MANIFESTS))
        .unwrap()
        .into_iter()
        .chain(sim.list_dir(Path::new("/etc/kubernetes")).unwrap())
        .filter(|n| n.starts_with(TEMP_PREFIX))
        .collect();
    assert!(temps.is_empty(), "{what}: temps left {temps:?}");
}

#[test]
fn created_file_and_edited_manifest_commit_together() {
    let sim = installed();
    assert_eq!(
        scenario(Arc::new(sim.clone()), false).unwrap(),
        TxnStatus::Committed
    );
    assert_all_or_nothing(&sim, true, "committed");
}

#[test]
fn rollback_removes_the_created_file() {
    let sim = installed();
    assert_eq!(
        scenario(Arc::new(sim.clone()), true).unwrap(),
        TxnStatus::RolledBack
    );
    assert_all_or_nothing(&sim, false, "rolled back");
}

#[test]
fn power_cut_anywhere_leaves_both_changes_or_neither() {
    for reject in [false, true] {
        let probe = installed();
        scenario(Arc::new(probe.clone()), reject).unwrap();
        let total = probe.ops_done();
        for k in 0..=total {
            let sim = installed();
            sim.set_fail_after(Some(k));
            let finished = scenario(Arc::new(sim.clone()), reject).is_ok();
            for seed in [None, Some(1), Some(2)] {
                let cut = match seed {
                    None => sim.power_cut_exact(),
                    Some(s) => sim.power_cut(s),
                };
                let engine = start(Arc::new(cut.clone()))
                    .unwrap_or_else(|e| panic!("recovery after cut {k} failed: {e}"));
                // Committed iff the journal says so: the last transaction's status.
                let committed = engine
                    .catalog
                    .last_txn()
                    .unwrap()
                    .is_some_and(|t| t.status == "committed");
                if finished && k == total && !reject {
                    assert!(committed, "a finished commit survives");
                }
                assert!(engine.catalog.open_txns().unwrap().is_empty());
                assert_all_or_nothing(
                    &cut,
                    committed,
                    &format!("reject={reject} cut={k} seed={seed:?}"),
                );
            }
        }
    }
}
