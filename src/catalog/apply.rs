//! Applying journal records to the catalog, in journal order. The same records always give the
//! same rows: this is what makes `verify --repair` a byte-identical rebuild.

use super::{db_err, Catalog};
use crate::error::Result;
use crate::journal::record::{hash_hex, Begin, Hash, Origin, Record, TxnKind, Version};
use crate::journal::wal::Located;
use rusqlite::{params, OptionalExtension, Transaction};

/// Prepared statements kept per catalog connection.
const STATEMENT_CACHE: usize = 64;

pub fn origin_name(o: Origin) -> &'static str {
    match o {
        Origin::Baseline => "baseline",
        Origin::External => "external",
        Origin::Change => "change",
        Origin::Restore => "restore",
        Origin::Rollback => "rollback",
        Origin::Recovery => "recovery",
    }
}

pub fn kind_name(k: TxnKind) -> &'static str {
    match k {
        TxnKind::Set => "set",
        TxnKind::Restore => "restore",
        TxnKind::Remediate => "remediate",
    }
}

impl Catalog {
    /// Apply records (in order) and move the checkpoint past the last one, atomically.
    /// `stored_size` gives an object's size in the store (for `status`).
    pub fn apply(&mut self, records: &[Located], stored_size: &dyn Fn(&Hash) -> u64) -> Result<()> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        // Every statement below is prepared once per connection and kept (rusqlite's cache is
        // 16 by default, which the catalog's queries and these together would overflow).
        self.conn
            .set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let tx = self.conn.transaction().map_err(db_err)?;
        for r in records {
            apply_one(&tx, &r.decoded.record, stored_size).map_err(db_err)?;
        }
        let ck = [
            (
                "ck_segment",
                rusqlite::types::Value::Integer(last.pos.segment as i64),
            ),
            (
                "ck_offset",
                rusqlite::types::Value::Integer(last.pos.offset as i64),
            ),
            (
                "ck_len",
                rusqlite::types::Value::Integer(last.decoded.len as i64),
            ),
            (
                "ck_checksum",
                rusqlite::types::Value::Blob(last.decoded.checksum.to_vec()),
            ),
        ];
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                )
                .map_err(db_err)?;
            for (k, v) in ck {
                upsert.execute(params![k, v]).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }
}

fn set_status(
    tx: &Transaction,
    txn: u64,
    status: &str,
    at: i64,
    detail: Option<&str>,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE transactions SET status = ?2, ended_at = ?3, detail = COALESCE(?4, detail)
         WHERE txn = ?1",
    )?
    .execute(params![txn as i64, status, at, detail])?;
    Ok(())
}

fn apply_one(
    tx: &Transaction,
    rec: &Record,
    stored_size: &dyn Fn(&Hash) -> u64,
) -> rusqlite::Result<()> {
    match rec {
        Record::Begin(b) => {
            for f in &b.files {
                unprune(tx, &f.before.hash)?;
                unprune(tx, &f.after.hash)?;
            }
            insert_begin(tx, b)
        }
        Record::Applied { txn, at } => {
            tx.prepare_cached("UPDATE transactions SET applied_at = ?2 WHERE txn = ?1")?
                .execute(params![*txn as i64, at])?;
            Ok(())
        }
        Record::Commit { txn, at } => set_status(tx, *txn, "committed", *at, None),
        Record::RolledBack { txn, at, reason } => {
            set_status(tx, *txn, "rolled_back", *at, Some(reason))
        }
        Record::RollbackFailed { txn, at, reason } => {
            set_status(tx, *txn, "rollback_failed", *at, Some(reason))
        }
        Record::Aborted { txn, at } => set_status(tx, *txn, "aborted", *at, None),
        Record::Reverted { txn, at } => set_status(tx, *txn, "reverted", *at, None),
        Record::Conflict { txn, at, paths } => {
            set_status(tx, *txn, "conflict", *at, Some(&paths.join("\n")))
        }
        Record::Version(v) => {
            unprune(tx, &v.state.hash)?;
            insert_version(tx, v, stored_size)
        }
        Record::GateResult { txn, summary, .. } => {
            tx.prepare_cached(
                "INSERT INTO txn_gate (txn, summary) VALUES (?1, ?2)
                 ON CONFLICT(txn) DO UPDATE SET summary = excluded.summary",
            )?
            .execute(params![*txn as i64, summary])?;
            Ok(())
        }
        Record::Pruned { at, hashes, .. } => super::pruned::apply_pruned(tx, *at, hashes),
        Record::TruncatedTail {
            at,
            segment,
            offset,
            dropped,
        } => {
            tx.prepare_cached(
                "INSERT INTO tail_cuts (at, segment, offset, dropped) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                at,
                *segment as i64,
                *offset as i64,
                *dropped as i64
            ])?;
            Ok(())
        }
    }
}

/// A content named by a BEGIN or VERSION is in the store (it is stored before either is
/// written), even if an earlier `prune` dropped it.
fn unprune(tx: &Transaction, hash: &Hash) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM pruned WHERE hash = ?1")?
        .execute([hash_hex(hash)])?;
    Ok(())
}

fn insert_begin(tx: &Transaction, b: &Begin) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO transactions (txn, kind, reason, started_at, status)
         VALUES (?1, ?2, ?3, ?4, 'open')",
    )?
    .execute(params![b.txn as i64, kind_name(b.kind), b.reason, b.at])?;
    for f in &b.files {
        tx.prepare_cached(
            "INSERT INTO txn_files (txn, path, before_hash, before_size, before_mode, before_uid,
               before_gid, after_hash, after_size, after_mode, after_uid, after_gid)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            b.txn as i64,
            f.path,
            hash_hex(&f.before.hash),
            f.before.size as i64,
            f.before.mode,
            f.before.uid,
            f.before.gid,
            hash_hex(&f.after.hash),
            f.after.size as i64,
            f.after.mode,
            f.after.uid,
            f.after.gid
        ])?;
    }
    Ok(())
}

fn insert_version(
    tx: &Transaction,
    v: &Version,
    stored_size: &dyn Fn(&Hash) -> u64,
) -> rusqlite::Result<()> {
    let prev: Option<i64> = tx
        .prepare_cached("SELECT MAX(version) FROM versions WHERE path = ?1")?
        .query_row([&v.path], |r| r.get(0))
        .optional()?
        .flatten();
    let number = prev.unwrap_or(0) + 1;
    if let Some(p) = prev {
        tx.prepare_cached(
            "UPDATE versions SET on_disk_until = ?3 WHERE path = ?1 AND version = ?2",
        )?
        .execute(params![v.path, p, v.on_disk_from])?;
    }
    let hex = hash_hex(&v.state.hash);
    tx.prepare_cached(
        "INSERT INTO versions (path, version, hash, size, mode, uid, gid, origin, txn,
           recorded_at, on_disk_from, on_disk_until)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL)",
    )?
    .execute(params![
        v.path,
        number,
        hex,
        v.state.size as i64,
        v.state.mode,
        v.state.uid,
        v.state.gid,
        origin_name(v.origin),
        (v.txn != 0).then_some(v.txn as i64),
        v.recorded_at,
        v.on_disk_from
    ])?;
    tx.prepare_cached("INSERT OR IGNORE INTO objects (hash, stored_size) VALUES (?1, ?2)")?
        .execute(params![hex, stored_size(&v.state.hash) as i64])?;
    Ok(())
}
