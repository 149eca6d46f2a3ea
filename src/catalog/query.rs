//! Reading the catalog: history, point-in-time lookups, open transactions, totals.

use super::{db_err, Catalog};
use crate::error::{Error, Result};
use crate::journal::record::{FileState, Hash, TxnId};
use rusqlite::{params, OptionalExtension, Row};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub path: String,
    pub version: u64,
    pub state: FileState,
    pub origin: String,
    pub txn: Option<TxnId>,
    pub recorded_at: i64,
    pub on_disk_from: i64,
    pub on_disk_until: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnFile {
    pub path: String,
    pub before: FileState,
    pub after: FileState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRow {
    pub txn: TxnId,
    pub kind: String,
    pub reason: String,
    pub started_at: i64,
    pub applied_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub status: String,
    pub detail: Option<String>,
}

pub fn parse_hash(hex: &str) -> Result<Hash> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return Err(Error::integrity(format!(
            "catalog holds a bad hash {hex:?}"
        )));
    }
    let mut out = [0u8; 32];
    for (i, chunk) in bytes.chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).map_err(|_| Error::integrity("bad hash"))?;
        out[i] = u8::from_str_radix(s, 16)
            .map_err(|_| Error::integrity(format!("catalog holds a bad hash {hex:?}")))?;
    }
    Ok(out)
}

fn state_at(r: &Row, first: usize) -> rusqlite::Result<RawState> {
    Ok((
        r.get(first)?,
        r.get::<_, i64>(first + 1)? as u64,
        r.get(first + 2)?,
        r.get(first + 3)?,
        r.get(first + 4)?,
    ))
}

fn to_state(s: RawState) -> Result<FileState> {
    Ok(FileState {
        hash: parse_hash(&s.0)?,
        size: s.1,
        mode: s.2,
        uid: s.3,
        gid: s.4,
    })
}

const VERSION_COLS: &str = "path, version, hash, size, mode, uid, gid, origin, txn, recorded_at, \
                            on_disk_from, on_disk_until";

type RawState = (String, u64, u32, u32, u32);

type RawVersion = (
    String,
    u64,
    RawState,
    String,
    Option<i64>,
    i64,
    i64,
    Option<i64>,
);

fn raw_version(r: &Row) -> rusqlite::Result<RawVersion> {
    Ok((
        r.get(0)?,
        r.get::<_, i64>(1)? as u64,
        state_at(r, 2)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
    ))
}

fn to_version(v: RawVersion) -> Result<VersionRow> {
    Ok(VersionRow {
        path: v.0,
        version: v.1,
        state: to_state(v.2)?,
        origin: v.3,
        txn: v.4.map(|t| t as u64),
        recorded_at: v.5,
        on_disk_from: v.6,
        on_disk_until: v.7,
    })
}

const TXN_COLS: &str = "txn, kind, reason, started_at, applied_at, ended_at, status, detail";

fn to_txn(r: &Row) -> rusqlite::Result<TxnRow> {
    Ok(TxnRow {
        txn: r.get::<_, i64>(0)? as u64,
        kind: r.get(1)?,
        reason: r.get(2)?,
        started_at: r.get(3)?,
        applied_at: r.get(4)?,
        ended_at: r.get(5)?,
        status: r.get(6)?,
        detail: r.get(7)?,
    })
}

impl Catalog {
    fn versions_where(&self, clause: &str, p: impl rusqlite::Params) -> Result<Vec<VersionRow>> {
        let sql = format!("SELECT {VERSION_COLS} FROM versions {clause}");
        let mut stmt = self.conn.prepare_cached(&sql).map_err(db_err)?;
        let raw: Vec<RawVersion> = stmt
            .query_map(p, raw_version)
            .map_err(db_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(db_err)?;
        raw.into_iter().map(to_version).collect()
    }

    /// Every version, oldest first (by path when `path` is None).
    pub fn versions(&self, path: Option<&str>) -> Result<Vec<VersionRow>> {
        match path {
            Some(p) => self.versions_where("WHERE path = ?1 ORDER BY version", [p]),
            None => self.versions_where("ORDER BY recorded_at, path, version", []),
        }
    }

    pub fn version(&self, path: &str, n: u64) -> Result<Option<VersionRow>> {
        Ok(self
            .versions_where("WHERE path = ?1 AND version = ?2", params![path, n as i64])?
            .pop())
    }

    pub fn last_version(&self, path: &str) -> Result<Option<VersionRow>> {
        Ok(self
            .versions_where("WHERE path = ?1 ORDER BY version DESC LIMIT 1", [path])?
            .pop())
    }

    pub fn latest_version_with_hash(&self, path: &str, hash: &Hash) -> Result<Option<VersionRow>> {
        Ok(self
            .versions_where(
                "WHERE path = ?1 AND hash = ?2 ORDER BY version DESC LIMIT 1",
                params![path, crate::journal::record::hash_hex(hash)],
            )?
            .pop())
    }

    /// The version that was on disk at `ms`: the last one whose `on_disk_from` is not after it.
    pub fn version_at(&self, path: &str, ms: i64) -> Result<Option<VersionRow>> {
        Ok(self
            .versions_where(
                "WHERE path = ?1 AND on_disk_from <= ?2 ORDER BY version DESC LIMIT 1",
                params![path, ms],
            )?
            .pop())
    }

    pub fn paths(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT DISTINCT path FROM versions ORDER BY path")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .map_err(db_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(db_err)?;
        Ok(rows)
    }

    fn txns_where(&self, clause: &str, p: impl rusqlite::Params) -> Result<Vec<TxnRow>> {
        let sql = format!("SELECT {TXN_COLS} FROM transactions {clause}");
        let mut stmt = self.conn.prepare_cached(&sql).map_err(db_err)?;
        let rows = stmt
            .query_map(p, to_txn)
            .map_err(db_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(db_err)?;
        Ok(rows)
    }

    pub fn open_txns(&self) -> Result<Vec<TxnRow>> {
        self.txns_where("WHERE status = 'open' ORDER BY txn", [])
    }

    pub fn last_txn(&self) -> Result<Option<TxnRow>> {
        Ok(self.txns_where("ORDER BY txn DESC LIMIT 1", [])?.pop())
    }

    pub fn txn(&self, id: TxnId) -> Result<Option<TxnRow>> {
        Ok(self.txns_where("WHERE txn = ?1", [id as i64])?.pop())
    }

    pub fn txn_files(&self, id: TxnId) -> Result<Vec<TxnFile>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT path, before_hash, before_size, before_mode, before_uid, before_gid,
                        after_hash, after_size, after_mode, after_uid, after_gid
                 FROM txn_files WHERE txn = ?1 ORDER BY path",
            )
            .map_err(db_err)?;
        let raw: Vec<(String, RawState, RawState)> = stmt
            .query_map([id as i64], |r| {
                Ok((r.get(0)?, state_at(r, 1)?, state_at(r, 6)?))
            })
            .map_err(db_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(db_err)?;
        raw.into_iter()
            .map(|(path, b, a)| {
                Ok(TxnFile {
                    path,
                    before: to_state(b)?,
                    after: to_state(a)?,
                })
            })
            .collect()
    }

    pub fn has_tail_cut(&self, segment: u32, offset: u64, dropped: u64) -> Result<bool> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM tail_cuts WHERE segment = ?1 AND offset = ?2 AND dropped = ?3",
                params![segment as i64, offset as i64, dropped as i64],
                |r| r.get(0),
            )
            .map_err(db_err)?;
        Ok(n > 0)
    }

    pub fn max_txn(&self) -> Result<TxnId> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT MAX(txn) FROM transactions", [], |r| r.get(0))
            .optional()
            .map_err(db_err)?
            .flatten();
        Ok(v.unwrap_or(0) as u64)
    }

    pub fn version_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM versions", [], |r| r.get(0))
            .map_err(db_err)?;
        Ok(n as u64)
    }

    pub fn store_bytes(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COALESCE(SUM(stored_size), 0) FROM objects",
                [],
                |r| r.get(0),
            )
            .map_err(db_err)?;
        Ok(n as u64)
    }

    /// Every row of every table in a fixed order: two catalogs built from the same journal
    /// give the same dump (`verify` compares them).
    pub fn dump(&self) -> Result<String> {
        let mut out = String::new();
        for (table, order) in [
            ("versions", "path, version"),
            ("objects", "hash"),
            ("transactions", "txn"),
            ("txn_files", "txn, path"),
            ("tail_cuts", "segment, offset, at"),
            ("meta", "key"),
        ] {
            let sql = format!("SELECT * FROM {table} ORDER BY {order}");
            let mut stmt = self.conn.prepare(&sql).map_err(db_err)?;
            let cols = stmt.column_count();
            let mut rows = stmt.query([]).map_err(db_err)?;
            while let Some(r) = rows.next().map_err(db_err)? {
                out.push_str(table);
                for i in 0..cols {
                    let v: rusqlite::types::Value = r.get(i).map_err(db_err)?;
                    out.push_str(&format!("|{v:?}"));
                }
                out.push('\n');
            }
        }
        Ok(out)
    }
}
