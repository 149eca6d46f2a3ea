//! snapshot, recover, status, verify: recording, resolving and checking the state.

use crate::catalog::Catalog;
use crate::cli::context::{stop_on_conflict, Ctx};
use crate::cli::output::Outcome;
use crate::cli::time::fmt_time;
use crate::engine::observe::read_file;
use crate::engine::recovery::Policy;
use crate::engine::Unrecovered;
use crate::error::{Error, IoContext, Result};
use crate::fsys::Kind;
use crate::journal::format::SEGMENT_HEADER_LEN;
use crate::journal::record::{hash_hex, Hash};
use crate::journal::wal;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn is_manifest_name(name: &str) -> bool {
    !name.starts_with('.') && [".yaml", ".yml", ".json"].iter().any(|s| name.ends_with(s))
}

/// Every manifest in the manifests dir: regular files named *.yaml, *.yml, *.json.
fn manifests_in_dir(ctx: &Ctx) -> Result<Vec<PathBuf>> {
    let dir = ctx.manifests_dir()?;
    let mut names = ctx
        .fs
        .list_dir(&dir)
        .ctx(|| format!("listing {}", dir.display()))?;
    names.sort();
    Ok(names
        .into_iter()
        .filter(|n| is_manifest_name(n))
        .map(|n| dir.join(n))
        .collect())
}

pub fn snapshot(ctx: &Ctx, manifests: &[String]) -> Result<Outcome> {
    let explicit = !manifests.is_empty();
    let paths: Vec<PathBuf> = if explicit {
        manifests
            .iter()
            .map(|m| ctx.manifest_path(m))
            .collect::<Result<_>>()?
    } else {
        manifests_in_dir(ctx)?
    };
    let mut locked = ctx.open_mutating()?;
    stop_on_conflict(&locked.report)?;
    let mut entries = Vec::new();
    let mut text = String::new();
    for p in paths {
        if !explicit {
            // A symlink or directory in the folder is reported, not fatal, for a whole-dir snapshot.
            if let Ok(m) = ctx.fs.metadata(&p) {
                if m.kind != Kind::File {
                    crate::cli::output::say(format_args!(
                        "skipping {} (not a regular file)",
                        p.display()
                    ));
                    continue;
                }
            }
        }
        let o = locked.engine.observe(&p)?;
        let what = o
            .recorded
            .map(crate::catalog::origin_name)
            .unwrap_or("unchanged");
        text.push_str(&format!("{:<9}  v{:<4} {}\n", what, o.version, o.path));
        entries.push(json!({
            "path": o.path, "version": o.version, "hash": hash_hex(&o.state.hash),
            "recorded": o.recorded.is_some(), "origin": o.recorded.map(crate::catalog::origin_name),
        }));
    }
    if entries.is_empty() {
        text.push_str("no manifests found\n");
    }
    Ok(Outcome::new(json!({ "snapshot": entries }), text))
}

pub fn recover(ctx: &Ctx, policy: Policy, gate: &crate::cli::args::GateArgs) -> Result<Outcome> {
    let gate = match policy {
        Policy::Replay => super::gated::build(gate, None)?,
        Policy::Revert => None,
    };
    let locked = ctx.open_mutating_with(policy, gate)?;
    let r = &locked.report;
    let resolved: Vec<Value> = r
        .resolved
        .iter()
        .map(|x| json!({"txn": x.txn, "action": x.action, "paths": x.paths, "note": x.note}))
        .collect();
    let mut text = String::new();
    if r.resolved.is_empty() && r.torn_tail.is_none() && r.temps_removed.is_empty() {
        text.push_str("nothing to recover\n");
    }
    for x in &r.resolved {
        text.push_str(&format!(
            "transaction {}: {} ({})\n",
            x.txn,
            x.action,
            x.paths.join(", ")
        ));
    }
    let json = json!({
        "resolved": resolved,
        "torn_tail": r.torn_tail.map(|t| json!({"segment": t.segment, "offset": t.offset, "dropped": t.dropped, "reason": t.reason})),
        "temps_removed": r.temps_removed.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "gate": locked.gate,
    });
    let code = if r.conflicts().is_empty() { 0 } else { 3 };
    Ok(Outcome::new(json, text).with_code(code))
}

/// `status`; with `exit_code`, exit 1 when a transaction is incomplete or a file drifted.
pub fn status(ctx: &Ctx, exit_code: bool) -> Result<Outcome> {
    let Some(view) = ctx.open_read_only()? else {
        let json = json!({"incomplete": [], "drift": [], "last_txn": null, "store_bytes": 0, "versions": 0});
        return Ok(Outcome::new(json, "no state yet (nothing recorded)\n"));
    };
    let catalog = view.unrecovered.catalog();
    let mut incomplete = Vec::new();
    for t in catalog.open_txns()? {
        let paths: Vec<String> = catalog
            .txn_files(t.txn)?
            .into_iter()
            .map(|f| f.path)
            .collect();
        incomplete.push(json!({"txn": t.txn, "kind": t.kind, "started_at": fmt_time(t.started_at), "paths": paths}));
    }
    let mut known: BTreeSet<String> = catalog.paths()?.into_iter().collect();
    if let Ok(list) = manifests_in_dir(ctx) {
        known.extend(list.into_iter().map(|p| p.to_string_lossy().into_owned()));
    }
    let mut drift = Vec::new();
    for path in &known {
        let last = catalog.last_version(path)?;
        let now = read_file(ctx.fs.as_ref(), std::path::Path::new(path)).ok();
        let state = match (&last, &now) {
            (None, Some(_)) => "untracked",
            (Some(_), None) => "missing",
            (Some(l), Some((_, s, _))) if l.state != *s => "changed",
            _ => continue,
        };
        drift.push(json!({
            "path": path, "state": state,
            "recorded_version": last.as_ref().map(|l| l.version),
            "recorded_hash": last.as_ref().map(|l| hash_hex(&l.state.hash)),
            "current_hash": now.as_ref().map(|(_, s, _)| hash_hex(&s.hash)),
        }));
    }
    // External changes (a kubeadm upgrade, a hand edit) that removed hardening items.
    let extra = crate::hardening::file::resolve(None)
        .ok()
        .flatten()
        .map(|h| h.extra_flag_names())
        .unwrap_or_default();
    let mut removals = Vec::new();
    for path in &known {
        if let Some(r) = crate::hardening::external::last_removal(
            catalog,
            view.unrecovered.store(),
            &ctx.paths.root,
            path,
            &extra,
        )? {
            removals.push(r);
        }
    }
    let last_txn = catalog.last_txn()?.map(|t| {
        json!({"txn": t.txn, "kind": t.kind, "status": t.status, "reason": t.reason,
               "started_at": fmt_time(t.started_at), "ended_at": t.ended_at.map(fmt_time)})
    });
    let store_bytes = catalog.store_bytes()?;
    let versions = catalog.version_count()?;
    let mut text = format!("versions: {versions}\nstore: {store_bytes} bytes\n");
    match &last_txn {
        Some(t) => text.push_str(&format!(
            "last transaction: {} {} {}\n",
            t["txn"],
            t["kind"].as_str().unwrap_or(""),
            t["status"].as_str().unwrap_or("")
        )),
        None => text.push_str("last transaction: none\n"),
    }
    text.push_str(&format!("incomplete transactions: {}\n", incomplete.len()));
    for i in &incomplete {
        text.push_str(&format!("  txn {} ({})\n", i["txn"], i["paths"]));
    }
    text.push_str(&format!("drift: {}\n", drift.len()));
    for d in &drift {
        text.push_str(&format!(
            "  {} {}\n",
            d["state"].as_str().unwrap_or(""),
            d["path"].as_str().unwrap_or("")
        ));
    }
    for r in &removals {
        text.push_str(&format!("{}\n", r.line()));
    }
    if !view.fresh {
        text.push_str("(another kubeharden holds the lock: a transaction may be in progress)\n");
    }
    let json = json!({"incomplete": incomplete, "drift": drift, "last_txn": last_txn, "store_bytes": store_bytes, "versions": versions,
        "external_changes": removals.iter().map(|r| r.json()).collect::<Vec<_>>()});
    let attention = !incomplete.is_empty() || !drift.is_empty();
    Ok(Outcome::new(json, text).with_code(i32::from(exit_code && attention)))
}

pub fn verify(ctx: &Ctx, repair: bool) -> Result<Outcome> {
    if !ctx.prepare_state(false)? {
        return Ok(Outcome::new(
            json!({"ok": true, "records": 0, "objects": 0}),
            "no state yet\n",
        ));
    }
    // The catalog is compared (and with --repair rewritten) under the exclusive lock, waited
    // for as before. A state dir that cannot be written is checked without it (shared lock, or
    // none); --repair then fails opening the lock, with the reason.
    let wait = || {
        crate::engine::state::lock(
            &ctx.paths,
            std::time::Duration::from_secs(ctx.global.lock_timeout),
        )
        .map(crate::engine::state::ReadLock::Exclusive)
    };
    let lock = match crate::engine::state::read_lock(&ctx.paths)? {
        crate::engine::state::ReadLock::Busy => wait()?,
        crate::engine::state::ReadLock::ReadOnly { .. } if repair => wait()?,
        l => l,
    };
    let read_only = matches!(lock, crate::engine::state::ReadLock::ReadOnly { .. });
    let start = wal::Position {
        segment: 1,
        offset: SEGMENT_HEADER_LEN as u64,
    };
    // Every record's checksum, from the first segment on; corruption is exit 6 here.
    let scan = wal::scan_from(ctx.fs.as_ref(), &ctx.paths.journal, start)?;
    let store = crate::store::ObjectStore::new(ctx.fs.clone(), ctx.paths.objects.clone());
    let mut rebuilt = Catalog::open_in_memory()?;
    rebuilt.apply(&scan.records, &|h| store.stored_size(h).unwrap_or(0))?;
    // Every object any version or transaction names must read back to its hash.
    let mut hashes: BTreeSet<Hash> = BTreeSet::new();
    for r in &scan.records {
        match &r.decoded.record {
            crate::journal::record::Record::Version(v) => {
                hashes.insert(v.state.hash);
            }
            crate::journal::record::Record::Begin(b) => {
                for f in &b.files {
                    hashes.insert(f.before.hash);
                    hashes.insert(f.after.hash);
                }
            }
            _ => {}
        }
    }
    for h in &hashes {
        store.get(h)?;
    }
    let mut text = format!(
        "journal: {} records, checksums ok\nobjects: {} checked, hashes ok\n",
        scan.records.len(),
        hashes.len()
    );
    if let Some(t) = &scan.torn {
        text.push_str(&format!(
            "journal: torn tail at segment {} offset {} ({} bytes, {}); the next mutating command cuts it\n",
            t.segment, t.offset, t.dropped, t.reason
        ));
    }
    if read_only {
        text.push_str(
            "catalog: not compared (the state directory cannot be written; read-only commands \
             rebuild it in memory from the journal)\n",
        );
        let json = json!({
            "ok": true, "records": scan.records.len(), "objects": hashes.len(),
            "torn_tail": scan.torn.is_some(), "catalog_repaired": false, "read_only": true,
        });
        return Ok(Outcome::new(json, text));
    }
    let expected = rebuilt.dump()?;
    let on_disk = (|| {
        let catalog = Catalog::open(&ctx.paths.catalog)?;
        let mut un = Unrecovered::open(ctx.fs.clone(), ctx.paths.clone(), catalog, true)?;
        un.catch_up_catalog()?;
        un.catalog().dump()
    })();
    let agrees = matches!(&on_disk, Ok(d) if *d == expected);
    let mut repaired = false;
    if !agrees {
        if !repair {
            return Err(Error::integrity(format!(
                "{text}catalog: disagrees with the journal; run 'kubeharden verify --repair' to rebuild it"
            )));
        }
        rebuild_catalog(ctx, &scan.records, &store)?;
        repaired = true;
        text.push_str("catalog: rebuilt from the journal\n");
    } else {
        text.push_str("catalog: agrees with the journal\n");
    }
    let json = json!({
        "ok": true, "records": scan.records.len(), "objects": hashes.len(),
        "torn_tail": scan.torn.is_some(), "catalog_repaired": repaired,
    });
    Ok(Outcome::new(json, text))
}

fn rebuild_catalog(
    ctx: &Ctx,
    records: &[wal::Located],
    store: &crate::store::ObjectStore,
) -> Result<()> {
    Catalog::remove_files(&ctx.paths.catalog)?;
    let mut c = Catalog::open(&ctx.paths.catalog)?;
    c.apply(records, &|h| store.stored_size(h).unwrap_or(0))
}
