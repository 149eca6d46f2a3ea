//! The invariants of transaction-protocol.md ("Invariants"), checked on the file system a
//! recovery leaves behind. Each check appends what it finds wrong to a [`Findings`].

use crate::harness::{
    journal_facts, journal_start, paths, rebuilt_catalog, recover_fs, versions_of, world, Facts,
    Fate, VersionKey, World, Wrap, MANIFEST, MANIFESTS, META,
};
use kubeharden::engine::recovery::{Policy, RecoveryReport};
use kubeharden::engine::replace::TEMP_PREFIX;
use kubeharden::engine::Engine;
use kubeharden::fsys::sim::SimFs;
use kubeharden::fsys::{Fs, Meta};
use kubeharden::journal::record::{Hash, Record};
use kubeharden::journal::wal::{self, Scan};
use std::path::Path;
use std::sync::Arc;

/// What [`recover_and_check`] found wrong.
#[derive(Debug, Default)]
pub struct Findings {
    /// Violations of the six invariants, of "no open transaction after recovery", and of
    /// "recovery is idempotent and durable".
    pub invariants: Vec<String>,
    /// History disagreeing with the disk: the last recorded version of the manifest is not
    /// what is on disk (so `status` reports drift the tool itself caused, and the next observe
    /// records the tool's own content as an `external` version). Not one of the six.
    pub history: Vec<String>,
}

impl Findings {
    pub fn extend(&mut self, other: Findings) {
        self.invariants.extend(other.invariants);
        self.history.extend(other.history);
    }

    pub fn is_empty(&self) -> bool {
        self.invariants.is_empty() && self.history.is_empty()
    }
}

/// One recovery under check: where it ran and what it returned.
struct Recovered<'a> {
    fs: Arc<dyn Fs>,
    engine: Engine,
    report: RecoveryReport,
    /// The journal as it was when the power came back, before recovery touched it.
    at_cut: &'a Facts,
    w: &'static World,
}

fn content_name(w: &World, bytes: &[u8]) -> String {
    if bytes == w.before.as_slice() {
        "before".into()
    } else if bytes == w.after.as_slice() {
        "after".into()
    } else if bytes == w.original.as_slice() {
        "original (pre-setup)".into()
    } else {
        format!("a third content ({} bytes)", bytes.len())
    }
}

/// What the manifest must hold after recovery, from the journal as it survived the cut:
/// committed → after; open (BEGIN, no terminal record) → before under `revert`, after under
/// `replay` (recovery runs without a gate); not begun, rolled back, reverted, aborted → before.
fn expected_content(w: &World, fate: Fate, policy: Policy) -> Result<&[u8], String> {
    match (fate, policy) {
        (Fate::Committed, _) | (Fate::Open, Policy::Replay) => Ok(&w.after),
        (Fate::Open, Policy::Revert)
        | (Fate::NotBegun | Fate::RolledBack | Fate::Reverted | Fate::Aborted, _) => Ok(&w.before),
        (Fate::RollbackFailed | Fate::Conflict, _) => Err(format!("the journal says {fate:?}")),
    }
}

/// On a surviving file system `sim` (the power just came back), run one recovery with `policy`
/// and check every invariant. `base` are the versions durable before the scenario: none may be
/// lost, nor may any version the journal held when the power came back.
pub fn recover_and_check(
    sim: &SimFs,
    wrap: Wrap,
    policy: Policy,
    base: &[VersionKey],
    label: &str,
) -> Findings {
    let w = world();
    let mut out = Findings::default();
    let fs = wrap(sim);
    let at_cut = match journal_facts(fs.as_ref()) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!("{label}: the journal does not scan after the cut: {e}");
            out.invariants.push(msg);
            return out;
        }
    };
    let survived = versions_of(&fs, &at_cut);
    let expected = expected_content(w, at_cut.fate, policy);
    let (engine, report) = match recover_fs(fs.clone(), policy) {
        Ok(x) => x,
        Err(e) => {
            out.invariants
                .push(format!("{label}: recovery failed: {e}"));
            return out;
        }
    };
    let r = Recovered {
        fs,
        engine,
        report,
        at_cut: &at_cut,
        w,
    };
    let mut bad = Vec::new();
    if let Err(e) = &expected {
        bad.push(e.clone());
    }
    check_resolved(&r, &mut bad);
    let on_disk = check_manifest(&r, expected.ok(), &mut bad);
    check_no_temps(&r, &mut bad);
    check_journal_and_catalog(&r, &mut bad);
    check_versions(&r, base, &survived, &mut bad);
    let history = check_history(&r, on_disk.as_deref());
    drop(r);
    check_recovery_is_done(sim, wrap, policy, on_disk, &mut bad);

    let label = format!("{label} [journal: {:?}, {policy:?}]", at_cut.fate);
    out.invariants
        .extend(bad.into_iter().map(|b| format!("{label}: {b}")));
    out.history
        .extend(history.into_iter().map(|h| format!("{label}: {h}")));
    out
}

/// Every incomplete transaction is resolved, none as a conflict.
fn check_resolved(r: &Recovered, bad: &mut Vec<String>) {
    let conflicts = r.report.conflicts();
    if !conflicts.is_empty() {
        bad.push(format!("recovery reported conflicts: {conflicts:?}"));
    }
    match r.engine.catalog.open_txns() {
        Ok(open) if open.is_empty() => {}
        other => bad.push(format!("open transactions after recovery: {other:?}")),
    }
}

/// (1) before or after, never anything else; (2) which one; (6) mode, owner, group.
/// Returns what the manifest holds.
fn check_manifest(
    r: &Recovered,
    expected: Option<&[u8]>,
    bad: &mut Vec<String>,
) -> Option<Vec<u8>> {
    let w = r.w;
    let on_disk = r.fs.read(Path::new(MANIFEST));
    match &on_disk {
        Ok(bytes) if bytes != &w.before && bytes != &w.after => {
            bad.push(format!("(1) the manifest holds {}", content_name(w, bytes)));
        }
        Ok(bytes) => match expected {
            Some(exp) if bytes.as_slice() != exp => bad.push(format!(
                "(2) the manifest is {}, expected {}",
                content_name(w, bytes),
                content_name(w, exp)
            )),
            _ => {}
        },
        Err(e) => bad.push(format!("(1) the manifest cannot be read: {e}")),
    }
    match r.fs.metadata(Path::new(MANIFEST)) {
        Ok(Meta { mode, uid, gid, .. }) if (mode, uid, gid) == META => {}
        other => bad.push(format!(
            "(6) manifest metadata {other:?}, expected {META:?}"
        )),
    }
    on_disk.ok()
}

/// (3) no temp file of the tool in the manifests dir.
fn check_no_temps(r: &Recovered, bad: &mut Vec<String>) {
    match r.fs.list_dir(Path::new(MANIFESTS)) {
        Ok(names) => {
            let temps: Vec<_> = names
                .iter()
                .filter(|n| n.starts_with(TEMP_PREFIX))
                .collect();
            if !temps.is_empty() {
                bad.push(format!("(3) temp files left: {temps:?}"));
            }
        }
        Err(e) => bad.push(format!("(3) cannot list the manifests dir: {e}")),
    }
}

/// (4) what `verify` checks: the journal scans cleanly from the start, a catalog rebuilt from
/// it equals the recovered one, and every object a record names reads back. Also: a torn tail
/// found at the cut was cut and recorded.
fn check_journal_and_catalog(r: &Recovered, bad: &mut Vec<String>) {
    let scan = match wal::scan_from(r.fs.as_ref(), &paths().journal, journal_start()) {
        Ok(scan) => scan,
        Err(e) => {
            bad.push(format!("(4) the journal does not scan after recovery: {e}"));
            return;
        }
    };
    if let Some(t) = scan.torn {
        bad.push(format!("(4) torn tail after recovery: {t:?}"));
    }
    match (
        rebuilt_catalog(&r.fs, &scan.records),
        r.engine.catalog.dump(),
    ) {
        (Ok(rebuilt), Ok(dump)) => {
            if rebuilt.dump().ok().as_ref() != Some(&dump) {
                bad.push("(4) the catalog disagrees with the journal".into());
            }
        }
        (a, b) => bad.push(format!(
            "(4) catalog: {:?} / {:?}",
            a.err().map(|e| e.to_string()),
            b.err().map(|e| e.to_string())
        )),
    }
    for h in named_objects(&scan) {
        if let Err(e) = r.engine.store.get(&h) {
            bad.push(format!("(4) object named by the journal: {e}"));
        }
    }
    if let Some(t) = r.at_cut.torn {
        if r.report.torn_tail != Some(t) {
            bad.push(format!(
                "torn tail {t:?} reported as {:?}",
                r.report.torn_tail
            ));
        }
        let recorded = scan.records.iter().any(|rec| {
            matches!(rec.decoded.record, Record::TruncatedTail { segment, offset, dropped, .. }
                if (segment, offset, dropped) == (t.segment, t.offset, t.dropped))
        });
        if !recorded {
            bad.push(format!("no TRUNCATED_TAIL record for {t:?}"));
        }
    }
}

/// Every object a VERSION or BEGIN record names.
fn named_objects(scan: &Scan) -> Vec<Hash> {
    let mut hashes = Vec::new();
    for r in &scan.records {
        match &r.decoded.record {
            Record::Version(v) => hashes.push(v.state.hash),
            Record::Begin(b) => {
                for f in &b.files {
                    hashes.extend([f.before.hash, f.after.hash]);
                }
            }
            _ => {}
        }
    }
    hashes
}

/// (5) every version restores byte-identically, and none durable before the scenario or at
/// the cut is lost.
fn check_versions(
    r: &Recovered,
    base: &[VersionKey],
    survived: &[VersionKey],
    bad: &mut Vec<String>,
) {
    let versions = match r.engine.catalog.versions(None) {
        Ok(v) => v,
        Err(e) => {
            bad.push(format!("(5) versions: {e}"));
            return;
        }
    };
    for v in &versions {
        match r.engine.store.get(&v.state.hash) {
            Ok(bytes) if *blake3::hash(&bytes).as_bytes() == v.state.hash => {}
            Ok(_) => bad.push(format!("(5) version {} does not hash back", v.version)),
            Err(e) => bad.push(format!("(5) version {} does not restore: {e}", v.version)),
        }
    }
    let keys: Vec<VersionKey> = versions.iter().map(VersionKey::of).collect();
    for (when, list) in [
        ("before the scenario", base),
        ("durable at the cut", survived),
    ] {
        for v in list.iter().filter(|v| !keys.contains(v)) {
            bad.push(format!("(5) version {} ({when}) was lost", v.version));
        }
    }
}

/// History's last version of the manifest is what is on disk.
fn check_history(r: &Recovered, on_disk: Option<&[u8]>) -> Vec<String> {
    let (Ok(versions), Some(bytes)) = (r.engine.catalog.versions(Some(MANIFEST)), on_disk) else {
        return Vec::new();
    };
    let Some(last) = versions.iter().max_by_key(|v| v.version) else {
        return vec!["no version of the manifest recorded".into()];
    };
    if *blake3::hash(bytes).as_bytes() == last.state.hash {
        return Vec::new();
    }
    let recorded = r.engine.store.get(&last.state.hash).unwrap_or_default();
    vec![format!(
        "history's last version {} ({}, {}) is not what is on disk ({})",
        last.version,
        last.origin,
        content_name(r.w, &recorded),
        content_name(r.w, bytes)
    )]
}

/// Recovery is idempotent, and what it did is durable: running it again — on the live file
/// system, and after cutting the power right after it — finds nothing to do and leaves the
/// manifest as it was.
fn check_recovery_is_done(
    sim: &SimFs,
    wrap: Wrap,
    policy: Policy,
    on_disk: Option<Vec<u8>>,
    bad: &mut Vec<String>,
) {
    for (when, sim) in [
        ("second recovery", sim.clone()),
        ("power cut after recovery", sim.power_cut_exact()),
    ] {
        match recover_fs(wrap(&sim), policy) {
            Err(e) => bad.push(format!("{when}: recovery failed: {e}")),
            Ok((_, r)) => {
                if !r.resolved.is_empty() || r.torn_tail.is_some() || !r.temps_removed.is_empty() {
                    bad.push(format!("{when}: recovery had work left: {r:?}"));
                }
                if wrap(&sim).read(Path::new(MANIFEST)).ok() != on_disk {
                    bad.push(format!("{when}: the manifest changed"));
                }
            }
        }
    }
}
