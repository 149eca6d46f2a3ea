//! `verify [--repair]`: check every journal record, every object and the catalog, and report
//! every problem found (not only the first), each with what can be done about it.
//!
//! Plain `verify` writes nothing: not the journal, not the catalog (it is compared read-only,
//! up to its own checkpoint), not the object store. `--repair` salvages a journal damaged before
//! its tail (`journal::salvage`: valid prefix kept, the rest moved to `STATE/quarantine/`, what
//! was dropped reported), stores again a damaged object whose content a manifest still holds,
//! removes leftover object temps, and rebuilds the catalog. docs/storage.md has the details.

use crate::catalog::{Catalog, Checkpoint};
use crate::cli::context::Ctx;
use crate::cli::output::Outcome;
use crate::engine::observe::read_file;
use crate::engine::state::{self, ReadLock};
use crate::error::{Error, Result};
use crate::journal::format::SEGMENT_HEADER_LEN;
use crate::journal::record::{hash_hex, Hash, Record, TxnId};
use crate::journal::salvage::{self, Salvaged, QUARANTINE_DIR};
use crate::journal::wal::{self, Damage, Journal, Located, Position, Scan};
use crate::store::ObjectStore;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn journal_start() -> Position {
    Position {
        segment: 1,
        offset: SEGMENT_HEADER_LEN as u64,
    }
}

/// The journal lost records the catalog had indexed (they were durable): from `end` (where the
/// journal now ends) to `known_end`.
#[derive(Debug, Clone, Copy)]
struct Missing {
    end: Position,
    known_end: Position,
}

/// What is wrong with the journal, if anything.
enum JournalProblem {
    Damaged(Damage),
    Missing(Missing),
}

impl JournalProblem {
    fn describe(&self) -> String {
        match self {
            JournalProblem::Damaged(d) => format!(
                "journal: {} at segment {} offset {}: damaged before its tail",
                d.reason,
                wal::segment_name(d.segment),
                d.offset
            ),
            JournalProblem::Missing(m) => format!(
                "journal: ends at segment {} offset {}, but records up to segment {} offset {} \
                 were durable (the catalog indexed them): more than a torn final record is gone",
                wal::segment_name(m.end.segment),
                m.end.offset,
                wal::segment_name(m.known_end.segment),
                m.known_end.offset
            ),
        }
    }

    fn reason(&self) -> String {
        match self {
            JournalProblem::Damaged(d) => d.reason.clone(),
            JournalProblem::Missing(_) => {
                "cut before records the catalog had indexed (durable records missing)".into()
            }
        }
    }
}

/// The catalog on disk, opened only if it exists (verify creates nothing).
fn existing_catalog(ctx: &Ctx) -> Option<Result<Catalog>> {
    ctx.fs.metadata(&ctx.paths.catalog).ok()?;
    Some(Catalog::open(&ctx.paths.catalog))
}

fn checkpoint_of(old: &Option<Result<Catalog>>) -> Option<Checkpoint> {
    match old {
        Some(Ok(c)) => c.checkpoint().ok().flatten(),
        _ => None,
    }
}

/// Read the whole journal; find damage before the tail, or durable records that are gone.
fn check_journal(ctx: &Ctx, ck: Option<&Checkpoint>) -> Result<(Scan, Option<JournalProblem>)> {
    let (scan, damage) =
        wal::scan_until_damage(ctx.fs.as_ref(), &ctx.paths.journal, journal_start(), &[])?;
    if let Some(d) = damage {
        return Ok((scan, Some(JournalProblem::Damaged(d))));
    }
    if let Some(ck) = ck {
        if scan.end < ck.pos {
            let known_end = Position {
                segment: ck.pos.segment,
                offset: ck.pos.offset + ck.len,
            };
            let m = Missing {
                end: scan.end,
                known_end,
            };
            return Ok((scan, Some(JournalProblem::Missing(m))));
        }
    }
    Ok((scan, None))
}

pub fn run(ctx: &Ctx, repair: bool) -> Result<Outcome> {
    if !ctx.prepare_state(false)? {
        return Ok(Outcome::new(
            json!({"ok": true, "records": 0, "objects": 0}),
            "no state yet\n",
        ));
    }
    let lock = verify_lock(ctx, repair)?;
    let read_only = matches!(lock, ReadLock::ReadOnly { .. });
    // A state dir that cannot be written: the catalog cannot be trusted to be current (the
    // read-only commands rebuild it in memory) and is not compared.
    let old = if read_only {
        None
    } else {
        existing_catalog(ctx)
    };
    let ck = checkpoint_of(&old);
    let (mut scan, problem) = check_journal(ctx, ck.as_ref())?;
    let mut report = Report::default();
    let mut salvage_json = Value::Null;
    if let Some(p) = &problem {
        if repair {
            let old_cat = old.as_ref().and_then(|c| c.as_ref().ok());
            let done = salvage_journal(ctx, &scan, p, old_cat)?;
            report.fixed.push(done.text.clone());
            salvage_json = done.json;
            scan = wal::scan_from(ctx.fs.as_ref(), &ctx.paths.journal, journal_start())?;
        } else {
            let kept = scan.records.len();
            report.problems.push(format!(
                "{}. Nothing was changed. 'kubeharden verify --repair' keeps the {kept} valid \
                 records before it, moves the rest to {} and reports what was dropped",
                p.describe(),
                ctx.paths.root.join(QUARANTINE_DIR).display()
            ));
        }
    }
    report.line(format!(
        "journal: {} records{}",
        scan.records.len(),
        if problem.is_some() && !repair {
            " readable before the damage"
        } else {
            ", checksums ok"
        }
    ));
    if let Some(t) = &scan.torn {
        report.line(format!(
            "journal: torn tail at segment {} offset {} ({} bytes, {}); the next mutating \
             command cuts it",
            wal::segment_name(t.segment),
            t.offset,
            t.dropped,
            t.reason
        ));
    }
    let store = ObjectStore::new(ctx.fs.clone(), ctx.paths.objects.clone());
    let mut rebuilt = Catalog::open_in_memory()?;
    rebuilt.apply(&scan.records, &|h| store.stored_size(h).unwrap_or(0))?;
    let objects = check_objects(ctx, &store, &scan.records, &rebuilt, repair, &mut report)?;
    check_temps(&store, repair, &mut report)?;
    if read_only {
        report.line(
            "catalog: not compared (the state directory cannot be written; read-only commands \
             rebuild it in memory from the journal)"
                .into(),
        );
    }
    let repaired = !read_only
        && check_catalog(
            ctx,
            old,
            &scan.records,
            scan.end,
            &store,
            repair,
            problem.is_some(),
            &mut report,
        )?;
    let ok = report.problems.is_empty();
    let json = json!({
        "ok": ok, "records": scan.records.len(), "objects": objects,
        "torn_tail": scan.torn.is_some(), "catalog_repaired": repaired,
        "problems": report.problems, "repaired": report.fixed, "salvage": salvage_json,
        "read_only": read_only,
    });
    let text = report.text();
    if !ok {
        // Every problem in one message (stderr, or the JSON error document), exit 6.
        return Err(Error::integrity(text.trim_end().to_string()));
    }
    Ok(Outcome::new(json, text))
}

/// The catalog is compared (and with --repair rewritten) under the exclusive lock, waited for
/// as by any command. A state dir that cannot be written is checked without it (shared lock, or
/// none); --repair then fails opening the lock, with the reason.
fn verify_lock(ctx: &Ctx, repair: bool) -> Result<ReadLock> {
    let wait = || {
        state::lock(
            &ctx.paths,
            std::time::Duration::from_secs(ctx.global.lock_timeout),
        )
        .map(ReadLock::Exclusive)
    };
    Ok(match state::read_lock(&ctx.paths)? {
        ReadLock::Busy => wait()?,
        ReadLock::ReadOnly { .. } if repair => wait()?,
        l => l,
    })
}

#[derive(Default)]
struct Report {
    lines: Vec<String>,
    problems: Vec<String>,
    fixed: Vec<String>,
}

impl Report {
    fn line(&mut self, s: String) {
        self.lines.push(s);
    }

    fn text(&self) -> String {
        let mut t = String::new();
        for l in &self.lines {
            t.push_str(l);
            t.push('\n');
        }
        for f in &self.fixed {
            t.push_str("repaired: ");
            t.push_str(f);
            t.push('\n');
        }
        for p in &self.problems {
            t.push_str("PROBLEM: ");
            t.push_str(p);
            t.push('\n');
        }
        if !self.problems.is_empty() {
            t.push_str(&format!("{} problem(s) found\n", self.problems.len()));
        }
        t
    }
}

/// Who refers to an object: versions (path, number) and transactions.
#[derive(Default)]
struct Users {
    versions: BTreeMap<String, Vec<u64>>,
    txns: BTreeSet<TxnId>,
}

fn object_users(records: &[Located], rebuilt: &Catalog) -> Result<BTreeMap<Hash, Users>> {
    let mut users: BTreeMap<Hash, Users> = BTreeMap::new();
    for v in rebuilt.versions(None)? {
        users
            .entry(v.state.hash)
            .or_default()
            .versions
            .entry(v.path.clone())
            .or_default()
            .push(v.version);
    }
    for r in records {
        if let Record::Begin(b) = &r.decoded.record {
            for f in &b.files {
                for h in [f.before.hash, f.after.hash] {
                    users.entry(h).or_default().txns.insert(b.txn);
                }
            }
        }
    }
    // Contents `prune` dropped are gone on purpose (the PRUNED record says so).
    let pruned = rebuilt.pruned_hashes()?;
    users.retain(|h, _| !pruned.contains(&crate::journal::record::hash_hex(h)));
    Ok(users)
}

/// Every object a record names must read back to its hash. Each bad one is reported with the
/// manifests and versions that need it; `repair` stores it again from a manifest that still
/// holds that content.
fn check_objects(
    ctx: &Ctx,
    store: &ObjectStore,
    records: &[Located],
    rebuilt: &Catalog,
    repair: bool,
    report: &mut Report,
) -> Result<usize> {
    let users = object_users(records, rebuilt)?;
    let mut bad = 0;
    for (hash, u) in &users {
        let Err(e) = store.get(hash) else { continue };
        if let Error::Io { .. } = e {
            return Err(e);
        }
        let why = object_error(&e);
        let who = describe_users(u);
        if repair {
            if let Some(from) = rewrite_from_manifest(ctx, store, hash, u)? {
                report.fixed.push(format!(
                    "object {} stored again from {from} ({who})",
                    hash_hex(hash)
                ));
                continue;
            }
        }
        bad += 1;
        let remedy = if repair {
            "no manifest holds this content any more, so it cannot be rebuilt: these versions \
             can no longer be shown or restored (every other version is unaffected); if you \
             have a copy of the file, put it in place and run 'kubeharden snapshot' to record it"
        } else {
            "'kubeharden verify --repair' stores it again if a manifest still holds this \
             content; otherwise these versions can no longer be shown or restored (every other \
             version is unaffected)"
        };
        report.problems.push(format!(
            "object {} ({}): {why}; it is the content of {who}. {remedy}",
            hash_hex(hash),
            store.path_of(hash).display()
        ));
    }
    report.line(format!(
        "objects: {} checked, {}",
        users.len(),
        if bad == 0 {
            "hashes ok".to_string()
        } else {
            format!("{bad} damaged or missing")
        }
    ));
    Ok(users.len())
}

/// The store's message without its advice (which names this very command).
fn object_error(e: &Error) -> String {
    let s = e.to_string();
    match s.find("; run '") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn describe_users(u: &Users) -> String {
    let mut parts: Vec<String> = u
        .versions
        .iter()
        .map(|(p, vs)| {
            let list: Vec<String> = vs.iter().map(|v| v.to_string()).collect();
            format!("{p} version {}", list.join(", "))
        })
        .collect();
    if !u.txns.is_empty() {
        let list: Vec<String> = u.txns.iter().map(|t| t.to_string()).collect();
        parts.push(format!("transaction {}", list.join(", ")));
    }
    if parts.is_empty() {
        "no recorded version".into()
    } else {
        parts.join("; ")
    }
}

/// A manifest named by the object's versions that still holds exactly its bytes.
fn rewrite_from_manifest(
    ctx: &Ctx,
    store: &ObjectStore,
    hash: &Hash,
    u: &Users,
) -> Result<Option<String>> {
    for path in u.versions.keys() {
        let Ok((bytes, state, _)) = read_file(ctx.fs.as_ref(), Path::new(path)) else {
            continue;
        };
        if state.hash == *hash {
            store.put(&bytes)?;
            return Ok(Some(path.clone()));
        }
    }
    Ok(None)
}

fn check_temps(store: &ObjectStore, repair: bool, report: &mut Report) -> Result<()> {
    let temps = if repair {
        store.remove_leftover_temps()?
    } else {
        store.leftover_temps()?
    };
    if temps.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = temps.iter().map(|p| p.display().to_string()).collect();
    report.line(format!(
        "objects: {} leftover temp file(s) of a run cut short while storing an object{}: {}",
        temps.len(),
        if repair {
            ", removed"
        } else {
            " (harmless; the next mutating command removes them)"
        },
        list.join(", ")
    ));
    Ok(())
}

/// Compare the catalog with the journal without writing it: the on-disk catalog must equal a
/// rebuild of the journal up to the catalog's own checkpoint (it may lag: records after it are
/// indexed by the next command that holds the lock).
#[allow(clippy::too_many_arguments)]
fn check_catalog(
    ctx: &Ctx,
    old: Option<Result<Catalog>>,
    records: &[Located],
    end: Position,
    store: &ObjectStore,
    repair: bool,
    salvaged: bool,
    report: &mut Report,
) -> Result<bool> {
    let verdict = match old {
        None if records.is_empty() => Ok(0),
        None => Err("missing".to_string()),
        Some(Err(e)) => Err(format!("unreadable ({e})")),
        Some(Ok(c)) => catalog_agrees(&c, records, store, end),
    };
    let needs = salvaged || verdict.is_err();
    if needs && repair {
        Catalog::remove_files(&ctx.paths.catalog)?;
        let mut c = Catalog::open(&ctx.paths.catalog)?;
        c.apply(records, &|h| store.stored_size(h).unwrap_or(0))?;
        report.fixed.push("catalog rebuilt from the journal".into());
        return Ok(true);
    }
    match verdict {
        Ok(0) => report.line("catalog: agrees with the journal".into()),
        Ok(n) => report.line(format!(
            "catalog: agrees with the journal; the last {n} record(s) are not indexed yet (the \
             next command that holds the state lock indexes them)"
        )),
        Err(why) => report.problems.push(format!(
            "catalog: {why}: it disagrees with the journal. Nothing was changed. 'kubeharden \
             verify --repair' rebuilds it from the journal (it is derived data)"
        )),
    }
    Ok(false)
}

/// Ok(records not indexed yet) when the catalog equals a rebuild up to its checkpoint.
fn catalog_agrees(
    c: &Catalog,
    records: &[Located],
    store: &ObjectStore,
    end: Position,
) -> std::result::Result<usize, String> {
    let ck = c.checkpoint().map_err(|e| e.to_string())?;
    let upto = match &ck {
        None => 0,
        Some(ck) => {
            let i = records.iter().position(|r| {
                r.pos == ck.pos && r.decoded.len == ck.len && r.decoded.checksum == ck.checksum
            });
            match i {
                Some(i) => i + 1,
                // The final record the catalog indexed is now a torn tail (the one record a
                // torn tail may take): the next mutating command cuts it and rebuilds.
                None if ck.pos == end && records.last().map(|r| r.pos) < Some(ck.pos) => {
                    return Ok(0)
                }
                None => return Err("its checkpoint names no record of the journal".into()),
            }
        }
    };
    let mut expect = Catalog::open_in_memory().map_err(|e| e.to_string())?;
    expect
        .apply(&records[..upto], &|h| store.stored_size(h).unwrap_or(0))
        .map_err(|e| e.to_string())?;
    let same = c.dump().map_err(|e| e.to_string())? == expect.dump().map_err(|e| e.to_string())?;
    if same {
        Ok(records.len() - upto)
    } else {
        Err("its content differs from the journal's".into())
    }
}

struct SalvageDone {
    text: String,
    json: Value,
}

/// Quarantine the damaged rest, record the cut, write the report file; say what is unknown now.
fn salvage_journal(
    ctx: &Ctx,
    scan: &Scan,
    problem: &JournalProblem,
    old: Option<&Catalog>,
) -> Result<SalvageDone> {
    let fs = ctx.fs.as_ref();
    let quarantine = ctx.paths.root.join(QUARANTINE_DIR);
    let whole_from = match problem {
        JournalProblem::Damaged(d) if d.offset < SEGMENT_HEADER_LEN as u64 => d.segment,
        _ => u32::MAX,
    };
    let keep_end = scan.end;
    let s = salvage::quarantine_from(
        fs,
        &ctx.paths.journal,
        &quarantine,
        keep_end,
        whole_from,
        &problem.reason(),
    )?;
    let missing = match problem {
        JournalProblem::Missing(m) if m.known_end.segment == m.end.segment => {
            m.known_end.offset.saturating_sub(m.end.offset)
        }
        _ => 0,
    };
    let dropped = salvage::dropped_bytes(&s) + missing;
    let end = if whole_from <= keep_end.segment {
        journal_start()
    } else {
        keep_end
    };
    let mut j = Journal::open_at(ctx.fs.clone(), ctx.paths.journal.clone(), end)?;
    j.append(&Record::TruncatedTail {
        at: crate::engine::now_ms(),
        segment: end.segment,
        offset: end.offset,
        dropped,
    })?;
    j.sync()?;
    let lines = salvage_lines(ctx, scan, problem, &s, old)?;
    let name = format!(
        "{}.txt",
        salvage::quarantine_name(end.segment, end.offset).trim_end_matches(".bin")
    );
    let body = lines.join("\n") + "\n";
    salvage::write_durable(fs, &quarantine, &name, body.as_bytes())?;
    let dropped_json: Vec<Value> = s
        .dropped
        .iter()
        .map(|d| json!({"segment": d.segment, "offset": d.offset, "bytes": d.bytes, "reason": d.reason, "file": d.file.display().to_string()}))
        .collect();
    Ok(SalvageDone {
        text: format!(
            "journal salvaged, report in {}:\n  {}",
            quarantine.join(&name).display(),
            lines.join("\n  ")
        ),
        json: json!({"kept_records": scan.records.len(), "kept_until": {"segment": end.segment, "offset": end.offset},
                     "dropped": dropped_json, "missing_bytes": missing, "report": quarantine.join(&name).display().to_string(),
                     "lines": lines}),
    })
}

/// The report: what was dropped, what was kept, and what kubeharden no longer knows.
fn salvage_lines(
    ctx: &Ctx,
    scan: &Scan,
    problem: &JournalProblem,
    s: &Salvaged,
    old: Option<&Catalog>,
) -> Result<Vec<String>> {
    let mut lines = vec![problem.describe()];
    for d in &s.dropped {
        lines.push(format!(
            "dropped: segment {} offset {}: {} bytes ({}), moved to {}",
            wal::segment_name(d.segment),
            d.offset,
            d.bytes,
            d.reason,
            d.file.display()
        ));
    }
    if let JournalProblem::Missing(m) = problem {
        lines.push(format!(
            "missing: segment {} offset {} to segment {} offset {} (no longer on disk)",
            wal::segment_name(m.end.segment),
            m.end.offset,
            wal::segment_name(m.known_end.segment),
            m.known_end.offset
        ));
    }
    lines.push(format!(
        "kept: {} records, up to segment {} offset {}",
        scan.records.len(),
        wal::segment_name(scan.end.segment),
        scan.end.offset
    ));
    let store = ObjectStore::new(ctx.fs.clone(), ctx.paths.objects.clone());
    let mut kept = Catalog::open_in_memory()?;
    kept.apply(&scan.records, &|h| store.stored_size(h).unwrap_or(0))?;
    lines.extend(unknown_now(&kept, old, &s.found)?);
    Ok(lines)
}

/// Transactions and versions the old catalog or the dropped bytes knew and the kept journal
/// does not (or no longer knows how they ended).
fn unknown_now(kept: &Catalog, old: Option<&Catalog>, found: &[Record]) -> Result<Vec<String>> {
    let mut txns: BTreeMap<TxnId, String> = BTreeMap::new();
    let mut versions: BTreeSet<(String, String)> = BTreeSet::new();
    if let Some(old) = old {
        for id in 1..=old.max_txn().unwrap_or(0) {
            let (Ok(Some(was)), now) = (old.txn(id), kept.txn(id)?) else {
                continue;
            };
            if now.as_ref().map(|n| &n.status) != Some(&was.status) {
                txns.insert(
                    id,
                    format!("{} {} per the old catalog", was.kind, was.status),
                );
            }
        }
        let have: BTreeSet<(String, u64)> = kept
            .versions(None)?
            .into_iter()
            .map(|v| (v.path, v.version))
            .collect();
        for v in old.versions(None).unwrap_or_default() {
            if !have.contains(&(v.path.clone(), v.version)) {
                versions.insert((
                    v.path.clone(),
                    format!("version {} ({})", v.version, v.origin),
                ));
            }
        }
    }
    for r in found {
        if let Some(t) = r.txn() {
            if kept.txn(t)?.map(|k| k.status) != Some("committed".into()) {
                txns.entry(t)
                    .or_insert_with(|| "seen in the dropped bytes".into());
            }
        }
        if let Record::Version(v) = r {
            versions.insert((
                v.path.clone(),
                format!("content {} (in the dropped bytes)", hash_hex(&v.state.hash)),
            ));
        }
    }
    let mut lines = Vec::new();
    for (id, what) in txns {
        let now = match kept.txn(id)? {
            Some(t) if t.status == "open" || t.ended_at.is_none() => {
                "now incomplete: the next mutating command resolves it from the files' bytes"
            }
            Some(_) => "its end differs now",
            None => "no longer in the journal",
        };
        lines.push(format!("unknown now: transaction {id} ({what}): {now}"));
    }
    for (path, what) in versions {
        lines.push(format!("unknown now: {path} {what}"));
    }
    if lines.is_empty() {
        lines.push("unknown now: nothing (no transaction or version was lost)".into());
    }
    Ok(lines)
}
