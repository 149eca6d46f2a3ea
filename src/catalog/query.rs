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

/// One `versions` row borrowed from SQLite during [`Catalog::scan_versions`]: the hash is the
/// catalog's own hex text (checked to be 64 hex digits), not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRef<'a> {
    pub path: &'a str,
    pub version: u64,
    pub hash_hex: &'a str,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub origin: &'a str,
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

/// The value of an ASCII hex digit (either case), or 0xff.
const fn hex_table() -> [u8; 256] {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
}

static HEX_VALUE: [u8; 256] = hex_table();

fn bad_hash(hex: &str) -> Error {
    Error::integrity(format!("catalog holds a bad hash {hex:?}"))
}

/// A hash as the catalog stores it: 64 hex digits.
pub fn parse_hash(hex: &str) -> Result<Hash> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return Err(bad_hash(hex));
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let (hi, lo) = (HEX_VALUE[pair[0] as usize], HEX_VALUE[pair[1] as usize]);
        if (hi | lo) == 0xff {
            return Err(bad_hash(hex));
        }
        *o = (hi << 4) | lo;
    }
    Ok(out)
}

/// Check a catalog hash (64 hex digits) without decoding it.
pub fn check_hash_hex(hex: &str) -> Result<()> {
    let bytes = hex.as_bytes();
    if bytes.len() == 64 && bytes.iter().all(|&b| HEX_VALUE[b as usize] != 0xff) {
        Ok(())
    } else {
        Err(bad_hash(hex))
    }
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

/// `p(path)`: the distinct paths of `versions` in order (then one NULL), found by a skip-scan
/// of the primary key. Prefix of a query.
const DISTINCT_PATHS: &str = "WITH RECURSIVE p(path) AS (SELECT MIN(path) FROM versions \
     UNION ALL SELECT (SELECT MIN(path) FROM versions WHERE path > p.path) FROM p \
     WHERE p.path IS NOT NULL)";

/// A text column borrowed from the row.
fn text_at<'r>(r: &'r Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
    r.get_ref(i)?.as_str().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    })
}

/// A row of [`VERSION_COLS`], borrowed.
fn version_ref<'r>(r: &'r Row<'_>) -> rusqlite::Result<VersionRef<'r>> {
    Ok(VersionRef {
        path: text_at(r, 0)?,
        version: r.get::<_, i64>(1)? as u64,
        hash_hex: text_at(r, 2)?,
        size: r.get::<_, i64>(3)? as u64,
        mode: r.get(4)?,
        uid: r.get(5)?,
        gid: r.get(6)?,
        origin: text_at(r, 7)?,
        txn: r.get::<_, Option<i64>>(8)?.map(|t| t as u64),
        recorded_at: r.get(9)?,
        on_disk_from: r.get(10)?,
        on_disk_until: r.get(11)?,
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

    /// The rows of [`Catalog::versions`], in the same order, handed to `f` one at a time as
    /// borrowed views (no per-row allocation, hashes left as hex). For large listings.
    pub fn scan_versions(
        &self,
        path: Option<&str>,
        mut f: impl FnMut(&VersionRef<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = match path {
            Some(_) => self.conn.prepare_cached(&format!(
                "SELECT {VERSION_COLS} FROM versions WHERE path = ?1 ORDER BY version"
            )),
            None => self.conn.prepare_cached(&format!(
                "SELECT {VERSION_COLS} FROM versions ORDER BY recorded_at, path, version"
            )),
        }
        .map_err(db_err)?;
        let mut rows = match path {
            Some(p) => stmt.query([p]),
            None => stmt.query([]),
        }
        .map_err(db_err)?;
        while let Some(r) = rows.next().map_err(db_err)? {
            let v = version_ref(r).map_err(db_err)?;
            check_hash_hex(v.hash_hex)?;
            f(&v)?;
        }
        Ok(())
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

    /// Every path with a version, in order. A skip-scan of the (path, version) key: one index
    /// seek per distinct path instead of a walk over every version.
    pub fn paths(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "{DISTINCT_PATHS} SELECT path FROM p WHERE path IS NOT NULL"
            ))
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

    /// Every transaction, oldest first; with `path`, those that touched it (`log`).
    pub fn txns(&self, path: Option<&str>) -> Result<Vec<TxnRow>> {
        match path {
            None => self.txns_where("ORDER BY txn", []),
            Some(p) => self.txns_where(
                "WHERE txn IN (SELECT txn FROM txn_files WHERE path = ?1) ORDER BY txn",
                [p],
            ),
        }
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

    /// The number of versions. A path's versions are numbered 1, 2, ... without gaps (each new
    /// one is the last plus one, and none is ever deleted), so this is the sum of each path's
    /// last version number: one index seek per path instead of counting every row.
    pub fn version_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .prepare_cached(&format!(
                "{DISTINCT_PATHS} SELECT COALESCE(SUM((SELECT MAX(version) FROM versions v \
                 WHERE v.path = p.path)), 0) FROM p WHERE path IS NOT NULL"
            ))
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
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
            ("pruned", "hash"),
            ("txn_gate", "txn"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::hash_hex;

    /// The hex of a hash as it was written before the lookup table: `format!` per byte.
    fn reference_hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hex_round_trips_and_matches_the_reference() {
        let mut h = [0u8; 32];
        for seed in 0..2000u32 {
            for (i, b) in h.iter_mut().enumerate() {
                *b = (seed.wrapping_mul(2_654_435_761).rotate_left(i as u32) >> 7) as u8
                    ^ (i as u8).wrapping_mul(29);
            }
            if seed == 0 {
                h = [0; 32];
            } else if seed == 1 {
                h = [0xff; 32];
            }
            let hex = hash_hex(&h);
            assert_eq!(hex, reference_hex(&h));
            assert_eq!(parse_hash(&hex).unwrap(), h);
            assert_eq!(parse_hash(&hex.to_uppercase()).unwrap(), h);
            assert!(check_hash_hex(&hex).is_ok());
        }
    }

    #[test]
    fn bad_hashes_are_integrity_errors() {
        let good = "0123456789abcdef".repeat(4);
        for bad in [
            String::new(),
            good[..63].to_string(),
            format!("{good}0"),
            format!("{}g", &good[..63]),
            format!("x{}", &good[1..]),
            format!("{} ", &good[..63]),
            format!("{}é", &good[..62]),
        ] {
            assert!(parse_hash(&bad).is_err(), "{bad:?}");
            assert!(check_hash_hex(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn counts_and_paths_by_skip_scan_equal_the_plain_queries() {
        let c = Catalog::open_in_memory().unwrap();
        assert_eq!(c.version_count().unwrap(), 0);
        assert!(c.paths().unwrap().is_empty());
        let hex = "ab".repeat(32);
        for (path, n) in [("/m/b.yaml", 3), ("/m/a.yaml", 5), ("/m/c.yaml", 1)] {
            for v in 1..=n {
                c.conn
                    .execute(
                        "INSERT INTO versions (path, version, hash, size, mode, uid, gid, origin,
                           txn, recorded_at, on_disk_from, on_disk_until)
                         VALUES (?1, ?2, ?3, 1, 420, 0, 0, 'change', NULL, ?2, ?2, NULL)",
                        params![path, v, hex],
                    )
                    .unwrap();
            }
        }
        let count: i64 = c
            .conn
            .query_row("SELECT COUNT(*) FROM versions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(c.version_count().unwrap(), count as u64);
        assert_eq!(c.paths().unwrap(), ["/m/a.yaml", "/m/b.yaml", "/m/c.yaml"]);
        // The borrowed scan gives the rows (and order) of `versions`.
        for path in [None, Some("/m/a.yaml")] {
            let mut seen = Vec::new();
            c.scan_versions(path, |v| {
                seen.push((v.path.to_string(), v.version, v.hash_hex.to_string()));
                Ok(())
            })
            .unwrap();
            let plain: Vec<_> = c
                .versions(path)
                .unwrap()
                .into_iter()
                .map(|r| (r.path, r.version, hash_hex(&r.state.hash)))
                .collect();
            assert_eq!(seen, plain);
        }
    }
}
