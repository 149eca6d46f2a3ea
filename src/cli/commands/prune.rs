//! `prune`: drop old versions' contents from the object store, as a journaled step.
//!
//! Per file it keeps the last `--keep N` versions and/or those on disk during the last
//! `--keep-days D` days, and always the latest, every baseline, and whatever an incomplete
//! transaction names. An object goes only when no kept version (of any file) and no incomplete
//! transaction names it. The PRUNED record is fsynced before the first object is deleted: a crash
//! in between leaves objects the journal calls pruned, which the next `prune` removes; never a
//! version the journal says is stored without its object.

use crate::catalog::{Catalog, VersionRow};
use crate::cli::context::{stop_on_conflict, Ctx};
use crate::cli::output::Outcome;
use crate::engine::now_ms;
use crate::error::{Error, Result};
use crate::journal::record::{hash_hex, FileState, Hash, Record};
use crate::store::ObjectStore;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashSet};

pub struct PruneArgs {
    pub keep: Option<u64>,
    pub keep_days: Option<u64>,
    pub dry_run: bool,
}

const DAY_MS: i64 = 86_400_000;

/// What a prune drops, decided from the catalog alone.
struct Plan {
    /// Contents to remove, in a fixed order (the PRUNED record's).
    hashes: Vec<Hash>,
    /// The versions whose content goes, by path.
    pruned: BTreeMap<String, Vec<VersionRow>>,
    /// The version numbers kept, by path.
    kept: BTreeMap<String, Vec<u64>>,
    /// Contents an earlier prune recorded as dropped but that are still in the store (it was
    /// cut short between its record and the deletions).
    leftovers: Vec<Hash>,
}

fn reason(a: &PruneArgs) -> String {
    let mut parts = Vec::new();
    if let Some(n) = a.keep {
        parts.push(format!("--keep {n}"));
    }
    if let Some(d) = a.keep_days {
        parts.push(format!("--keep-days {d}"));
    }
    parts.join(" ")
}

/// Whether version `i` (0-based) of `n` is kept.
fn kept(v: &VersionRow, i: usize, n: usize, a: &PruneArgs, cutoff: Option<i64>) -> bool {
    i + 1 == n
        || v.origin == "baseline"
        || a.keep.is_some_and(|k| (i as u64) + k >= n as u64)
        || cutoff.is_some_and(|c| v.on_disk_until.is_none_or(|u| u >= c))
}

fn plan(catalog: &Catalog, store: &ObjectStore, a: &PruneArgs) -> Result<Plan> {
    let cutoff = a
        .keep_days
        .map(|d| now_ms().saturating_sub((d as i64).saturating_mul(DAY_MS)));
    let already = catalog.pruned_hashes()?;
    let empty = FileState::absent().hash;
    let mut keep: HashSet<Hash> = HashSet::from([empty]);
    let mut candidates: BTreeMap<String, Vec<VersionRow>> = BTreeMap::new();
    let mut kept_numbers: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for path in catalog.paths()? {
        let versions = catalog.versions(Some(&path))?;
        let n = versions.len();
        for (i, v) in versions.into_iter().enumerate() {
            if kept(&v, i, n, a, cutoff) {
                keep.insert(v.state.hash);
                kept_numbers
                    .entry(path.clone())
                    .or_default()
                    .push(v.version);
            } else {
                candidates.entry(path.clone()).or_default().push(v);
            }
        }
    }
    // An incomplete transaction may need either side to finish or undo it.
    let mut txn_only = BTreeSet::new();
    for t in catalog.txns(None)? {
        for f in catalog.txn_files(t.txn)? {
            if t.status == "open" {
                keep.extend([f.before.hash, f.after.hash]);
            } else {
                txn_only.extend([f.before.hash, f.after.hash]);
            }
        }
    }
    let gone = |h: &Hash| keep.contains(h) || already.contains(&hash_hex(h));
    let mut hashes: BTreeSet<Hash> = candidates
        .values()
        .flatten()
        .map(|v| v.state.hash)
        .filter(|h| !gone(h))
        .collect();
    // Contents only a finished transaction names (an aborted change's after, say): nothing
    // restores them, they only feed `log --txn`'s diff.
    for h in txn_only.into_iter().filter(|h| !gone(h)) {
        if store.contains(&h)? {
            hashes.insert(h);
        }
    }
    let pruned = candidates
        .into_iter()
        .map(|(p, vs)| {
            let vs: Vec<VersionRow> = vs
                .into_iter()
                .filter(|v| hashes.contains(&v.state.hash))
                .collect();
            (p, vs)
        })
        .filter(|(_, vs)| !vs.is_empty())
        .collect();
    let mut leftovers = Vec::new();
    for hex in &already {
        let h = crate::catalog::parse_hash(hex)?;
        if store.contains(&h)? {
            leftovers.push(h);
        }
    }
    leftovers.sort();
    Ok(Plan {
        hashes: hashes.into_iter().collect(),
        pruned,
        kept: kept_numbers,
        leftovers,
    })
}

pub fn prune(ctx: &Ctx, a: PruneArgs) -> Result<Outcome> {
    if a.keep.is_none() && a.keep_days.is_none() {
        return Err(Error::usage(
            "prune needs --keep N (versions per file) and/or --keep-days D (versions on disk \
             during the last D days); the latest and the baseline are always kept",
        ));
    }
    if a.dry_run {
        let Some(view) = ctx.open_read_only()? else {
            return Ok(report(&a, &empty_plan(), 0, 0));
        };
        let p = plan(view.unrecovered.catalog(), view.unrecovered.store(), &a)?;
        let bytes = p
            .hashes
            .iter()
            .chain(&p.leftovers)
            .map(|h| view.unrecovered.store().stored_size(h).unwrap_or(0))
            .sum();
        let n = p.hashes.len() + p.leftovers.len();
        return Ok(report(&a, &p, n, bytes));
    }
    let mut locked = ctx.open_mutating()?;
    stop_on_conflict(&locked.report)?;
    let engine = &mut locked.engine;
    let p = plan(&engine.catalog, &engine.store, &a)?;
    if !p.hashes.is_empty() {
        // Write-ahead: the journal says these contents are dropped before any of them is.
        engine.log(Record::Pruned {
            at: now_ms(),
            reason: reason(&a),
            hashes: p.hashes.clone(),
        })?;
        engine.sync()?;
    }
    let (mut removed, mut bytes) = (0, 0);
    for h in p.hashes.iter().chain(&p.leftovers) {
        if let Some(len) = engine.store.remove(h)? {
            removed += 1;
            bytes += len;
        }
    }
    Ok(report(&a, &p, removed, bytes))
}

fn empty_plan() -> Plan {
    Plan {
        hashes: Vec::new(),
        pruned: BTreeMap::new(),
        kept: BTreeMap::new(),
        leftovers: Vec::new(),
    }
}

fn numbers(vs: &[u64]) -> String {
    vs.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

fn report(a: &PruneArgs, p: &Plan, removed: usize, bytes: u64) -> Outcome {
    let verb = if a.dry_run { "would prune" } else { "pruned" };
    let mut text = String::new();
    let mut pruned = Vec::<Value>::new();
    for (path, vs) in &p.pruned {
        let ns: Vec<u64> = vs.iter().map(|v| v.version).collect();
        let kept = p.kept.get(path).map(|k| numbers(k)).unwrap_or_default();
        text.push_str(&format!(
            "{path}: {verb} version{} {} (kept {kept})\n",
            if ns.len() == 1 { "" } else { "s" },
            numbers(&ns)
        ));
        for v in vs {
            pruned
                .push(json!({"path": path, "version": v.version, "hash": hash_hex(&v.state.hash)}));
        }
    }
    if p.hashes.is_empty() && p.leftovers.is_empty() {
        text.push_str("nothing to prune\n");
    } else {
        let what = if a.dry_run { "would remove" } else { "removed" };
        text.push_str(&format!(
            "{what} {removed} object{} ({bytes} bytes) from the store{}\n",
            if removed == 1 { "" } else { "s" },
            if a.dry_run || p.hashes.is_empty() {
                ""
            } else {
                "; journaled as PRUNED"
            }
        ));
    }
    let kept: Vec<Value> = p
        .kept
        .iter()
        .map(|(path, vs)| json!({"path": path, "versions": vs}))
        .collect();
    let json = json!({
        "dry_run": a.dry_run,
        "reason": reason(a),
        "pruned": pruned,
        "kept": kept,
        "objects_removed": removed,
        "bytes_freed": bytes,
        "leftovers": p.leftovers.len(),
    });
    Outcome::new(json, text)
}
