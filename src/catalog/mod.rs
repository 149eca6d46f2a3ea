//! The catalog: an SQLite index of versions and transactions for history and point-in-time
//! queries. It is derived data: everything in it comes from journal records, applied in order,
//! and `verify --repair` rebuilds it from the journal alone.

mod apply;
mod pruned;
mod query;

pub use apply::{kind_name, origin_name};
pub use query::{parse_hash, TxnFile, TxnRow, VersionRef, VersionRow};

use crate::error::{Error, Result};
use crate::journal::wal::{Position, SegmentDigest};
use rusqlite::{Connection, OptionalExtension};
use std::path::Path;

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value ANY) STRICT;
CREATE TABLE IF NOT EXISTS versions (
    path TEXT NOT NULL, version INTEGER NOT NULL, hash TEXT NOT NULL, size INTEGER NOT NULL,
    mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL, origin TEXT NOT NULL,
    txn INTEGER, recorded_at INTEGER NOT NULL, on_disk_from INTEGER NOT NULL,
    on_disk_until INTEGER, PRIMARY KEY (path, version)) STRICT;
CREATE INDEX IF NOT EXISTS versions_by_hash ON versions (hash);
CREATE TABLE IF NOT EXISTS objects (hash TEXT PRIMARY KEY, stored_size INTEGER NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS transactions (
    txn INTEGER PRIMARY KEY, kind TEXT NOT NULL, reason TEXT NOT NULL, started_at INTEGER NOT NULL,
    applied_at INTEGER, ended_at INTEGER, status TEXT NOT NULL, detail TEXT) STRICT;
CREATE TABLE IF NOT EXISTS txn_files (
    txn INTEGER NOT NULL, path TEXT NOT NULL,
    before_hash TEXT NOT NULL, before_size INTEGER NOT NULL, before_mode INTEGER NOT NULL,
    before_uid INTEGER NOT NULL, before_gid INTEGER NOT NULL,
    after_hash TEXT NOT NULL, after_size INTEGER NOT NULL, after_mode INTEGER NOT NULL,
    after_uid INTEGER NOT NULL, after_gid INTEGER NOT NULL,
    PRIMARY KEY (txn, path)) STRICT;
CREATE INDEX IF NOT EXISTS transactions_open ON transactions (txn) WHERE status = 'open';
CREATE TABLE IF NOT EXISTS segment_digests (
    segment INTEGER PRIMARY KEY, len INTEGER NOT NULL, hash BLOB NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS pruned (hash TEXT PRIMARY KEY, at INTEGER NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS txn_gate (txn INTEGER PRIMARY KEY, summary TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS tail_cuts (
    at INTEGER NOT NULL, segment INTEGER NOT NULL, offset INTEGER NOT NULL,
    dropped INTEGER NOT NULL) STRICT;
";

/// The last journal record applied to the catalog: where it starts, its length and checksum,
/// so a catalog that ran ahead of a journal cut back by a power loss is detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub pos: Position,
    pub len: u64,
    pub checksum: [u8; 8],
}

pub struct Catalog {
    conn: Connection,
    /// The file, or `None` in memory.
    path: Option<std::path::PathBuf>,
}

/// What a catalog error is called in messages: it is a cache, not the record.
pub const CATALOG: &str = "catalog (derived index, rebuilt from the journal)";

/// A catalog error reported as what it is: a full disk or an I/O error is exit 7 with its
/// errno; a damaged file is exit 6 and says that it is rebuilt from the journal.
pub(crate) fn db_err(e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode as C;
    let Some(code) = e.sqlite_error_code() else {
        return Error::integrity(format!("{CATALOG}: {e}"));
    };
    let errno = match code {
        C::DiskFull => Some(nix::libc::ENOSPC),
        C::SystemIoFailure => Some(nix::libc::EIO),
        C::ReadOnly => Some(nix::libc::EROFS),
        C::PermissionDenied => Some(nix::libc::EACCES),
        C::CannotOpen => Some(nix::libc::ENOENT),
        C::OutOfMemory => Some(nix::libc::ENOMEM),
        _ => None,
    };
    match (code, errno) {
        (_, Some(n)) => Error::Io {
            context: format!("{CATALOG}: {e}"),
            source: std::io::Error::from_raw_os_error(n),
        },
        (C::DatabaseBusy | C::DatabaseLocked, _) => Error::LockBusy(format!(
            "{CATALOG}: {e}: another process has it open without holding the state lock"
        )),
        _ => Error::integrity(format!(
            "{CATALOG}: {e}; the next mutating command rebuilds it from the journal (or run \
             'kubeharden verify --repair')"
        )),
    }
}

impl Catalog {
    pub fn open(path: &Path) -> Result<Catalog> {
        // Created 0600 and never through a link, before SQLite opens it (its -wal file takes
        // the database's mode).
        use std::os::unix::fs::OpenOptionsExt;
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path);
        match created {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(Error::Io {
                    context: format!("{CATALOG}: creating {}", path.display()),
                    source: e,
                })
            }
        }
        let conn = Connection::open(path).map_err(db_err)?;
        // The catalog is a cache of the journal, off the durable path:
        // - exclusive locking mode, set before WAL: SQLite keeps the WAL index in the heap
        //   instead of a memory-mapped `-shm` file, and no mmap of the database either, so a
        //   full disk is an error code, never a SIGBUS. The state lock already serializes
        //   writers; readers without the lock read the journal into memory instead.
        // - synchronous=OFF: no fsync on a transaction's path. A power loss may lose the last
        //   catalog writes (or, rarely, damage the file); the checkpoint is written in the same
        //   SQLite transaction as the rows, so what survives is a prefix that the next start
        //   catches up from the journal, and a damaged file is rebuilt from it.
        for (pragma, value) in [
            ("locking_mode", "EXCLUSIVE"),
            ("mmap_size", "0"),
            ("temp_store", "MEMORY"),
            ("journal_mode", "WAL"),
            ("synchronous", "OFF"),
        ] {
            conn.pragma_update(None, pragma, value).map_err(db_err)?;
        }
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_err)?;
        // Keep the WAL file between runs: recreating it costs every command a create in the
        // state directory, and deleting it an unlink.
        let mut persist: std::os::raw::c_int = 1;
        // SAFETY: the handle is valid for the life of `conn`; SQLITE_FCNTL_PERSIST_WAL reads and
        // writes one int through the pointer, which outlives the call.
        unsafe {
            rusqlite::ffi::sqlite3_file_control(
                conn.handle(),
                c"main".as_ptr(),
                rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
                (&mut persist as *mut std::os::raw::c_int).cast(),
            );
        }
        // The last connection's close checkpoints the WAL into the database and then, with a
        // size limit, truncates it: at rest the WAL is empty, so a command with nothing to do
        // (the recover timer every 30 s, a snapshot that finds no news) copies and syncs nothing
        // at close, instead of re-checkpointing every frame the WAL still holds.
        conn.pragma_update(None, "journal_size_limit", 0i64)
            .map_err(db_err)?;
        let mut c = Self::init(conn)?;
        c.path = Some(path.to_path_buf());
        Ok(c)
    }

    /// Refuse every later write (SQLite's `query_only`), as a catalog on a read-only or
    /// failing disk would: for tests of the catalog being off the durable path.
    #[doc(hidden)]
    pub fn refuse_writes(&self) -> Result<()> {
        self.conn
            .pragma_update(None, "query_only", "ON")
            .map_err(db_err)
    }

    /// The file this catalog lives in (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Delete the catalog at `path` with SQLite's side files (derived data: rebuilt from the
    /// journal on the next open).
    pub fn remove_files(path: &Path) -> Result<()> {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let p = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::Io {
                        context: format!("removing {}", p.display()),
                        source: e,
                    })
                }
            }
        }
        Ok(())
    }

    pub fn open_in_memory() -> Result<Catalog> {
        Self::init(Connection::open_in_memory().map_err(db_err)?)
    }

    fn init(conn: Connection) -> Result<Catalog> {
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        let v: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key='schema'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_err)?;
        match v {
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?1)",
                    [SCHEMA_VERSION],
                )
                .map_err(db_err)?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(other) => {
                return Err(Error::integrity(format!(
                "catalog schema {other} is not the one this kubeharden knows ({SCHEMA_VERSION}); \
                     run 'kubeharden verify --repair' to rebuild it"
            )))
            }
        }
        Ok(Catalog { conn, path: None })
    }

    /// Forget everything (before a rebuild from the journal).
    pub fn clear(&mut self) -> Result<()> {
        self.conn
            .execute_batch(
                "DELETE FROM versions; DELETE FROM objects; DELETE FROM transactions;
                 DELETE FROM txn_files; DELETE FROM tail_cuts; DELETE FROM pruned; DELETE FROM txn_gate; DELETE FROM segment_digests; DELETE FROM meta WHERE key <> 'schema';",
            )
            .map_err(db_err)
    }

    /// The journal prefixes already checked, by segment.
    pub fn digests(&self) -> Result<Vec<SegmentDigest>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT segment, len, hash FROM segment_digests ORDER BY segment")
            .map_err(db_err)?;
        let rows: Vec<(i64, i64, Vec<u8>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(db_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, l, h)| {
                Some(SegmentDigest {
                    segment: u32::try_from(s).ok()?,
                    len: u64::try_from(l).ok()?,
                    hash: h.try_into().ok()?,
                })
            })
            .collect())
    }

    pub fn set_digests(&mut self, digests: &[SegmentDigest]) -> Result<()> {
        let tx = self.conn.transaction().map_err(db_err)?;
        for d in digests {
            tx.execute(
                "INSERT INTO segment_digests (segment, len, hash) VALUES (?1, ?2, ?3)
                 ON CONFLICT(segment) DO UPDATE SET len = excluded.len, hash = excluded.hash",
                rusqlite::params![d.segment as i64, d.len as i64, d.hash.to_vec()],
            )
            .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    pub fn checkpoint(&self) -> Result<Option<Checkpoint>> {
        let row: Option<(i64, i64, i64, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT (SELECT value FROM meta WHERE key='ck_segment'),
                        (SELECT value FROM meta WHERE key='ck_offset'),
                        (SELECT value FROM meta WHERE key='ck_len'),
                        (SELECT value FROM meta WHERE key='ck_checksum')",
                [],
                |r| {
                    let seg: Option<i64> = r.get(0)?;
                    match seg {
                        None => Ok(None),
                        Some(seg) => Ok(Some((seg, r.get(1)?, r.get(2)?, r.get(3)?))),
                    }
                },
            )
            .map_err(db_err)?;
        Ok(row.and_then(|(seg, off, len, ck)| {
            Some(Checkpoint {
                pos: Position {
                    segment: u32::try_from(seg).ok()?,
                    offset: u64::try_from(off).ok()?,
                },
                len: u64::try_from(len).ok()?,
                checksum: ck.try_into().ok()?,
            })
        }))
    }
}
