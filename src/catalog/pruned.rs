//! Contents dropped from the store by `prune` (PRUNED records): which, and since when.

use super::{db_err, Catalog};
use crate::error::Result;
use crate::journal::record::{hash_hex, Hash, Millis};
use rusqlite::{params, OptionalExtension, Transaction};
use std::collections::HashSet;

/// A PRUNED record: its contents are no longer in the store (nor counted in `store_bytes`).
pub(super) fn apply_pruned(tx: &Transaction, at: Millis, hashes: &[Hash]) -> rusqlite::Result<()> {
    for h in hashes {
        let hex = hash_hex(h);
        tx.prepare_cached(
            "INSERT INTO pruned (hash, at) VALUES (?1, ?2)
             ON CONFLICT(hash) DO UPDATE SET at = excluded.at",
        )?
        .execute(params![hex, at])?;
        tx.prepare_cached("DELETE FROM objects WHERE hash = ?1")?
            .execute([&hex])?;
    }
    Ok(())
}

impl Catalog {
    /// When `prune` dropped this content from the store, if it did (and nothing stored it again).
    pub fn pruned_at(&self, hash: &Hash) -> Result<Option<Millis>> {
        self.conn
            .prepare_cached("SELECT at FROM pruned WHERE hash = ?1")
            .and_then(|mut s| s.query_row([hash_hex(hash)], |r| r.get(0)).optional())
            .map_err(db_err)
    }

    /// What the gate saw in transaction `txn` (a GATE record), if it ran.
    pub fn txn_gate(&self, txn: crate::journal::record::TxnId) -> Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT summary FROM txn_gate WHERE txn = ?1")
            .and_then(|mut s| s.query_row([txn as i64], |r| r.get(0)).optional())
            .map_err(db_err)
    }

    /// Every pruned content, as the catalog's hex.
    pub fn pruned_hashes(&self) -> Result<HashSet<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT hash FROM pruned")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .map_err(db_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(db_err)?;
        Ok(rows)
    }
}
