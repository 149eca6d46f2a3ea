//! The transactional engine: the state directory, recording versions, transactions with
//! rollback, and recovery of incomplete ones. `transaction-protocol.md` is the contract.

pub mod observe;
pub mod recovery;
pub mod replace;
pub mod state;
mod tail_cut;
pub mod txn;

use crate::catalog::{Catalog, Checkpoint};
use crate::cli::output::warn;
use crate::error::{Error, Result};
use crate::fsys::Fs;
use crate::journal::format::SEGMENT_HEADER_LEN;
use crate::journal::record::{Hash, Record};
use crate::journal::wal::{self, Journal, Located, Position, Scan};
use crate::store::ObjectStore;
use state::StatePaths;
use std::sync::Arc;

/// Milliseconds since the epoch, from the wall clock.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An engine whose journal has not been checked for incomplete transactions or a torn tail
/// yet. Read-only commands may look at its catalog; only [`Unrecovered::recover`] turns it into
/// an [`Engine`] that can append.
pub struct Unrecovered {
    fs: Arc<dyn Fs>,
    paths: StatePaths,
    store: ObjectStore,
    catalog: Catalog,
    /// Records in the journal that the catalog has not seen yet.
    pending: Vec<Located>,
    scan_end: Position,
    torn: Option<wal::TornTail>,
    /// Prefixes checked by this scan, for the catalog once it is caught up.
    digests: Vec<wal::SegmentDigest>,
    /// The caller holds the lock: a damaged catalog file may be rebuilt in place.
    writable: bool,
}

/// Said when the catalog file cannot be used this run.
pub const IN_MEMORY_NOTE: &str = "this run uses an index rebuilt in memory from the journal (the \
     journal is the record: nothing is lost); the catalog file is caught up by the next run that \
     can write it";

pub struct Engine {
    pub(crate) fs: Arc<dyn Fs>,
    pub paths: StatePaths,
    pub store: ObjectStore,
    pub catalog: Catalog,
    journal: Journal,
    /// Appended (and possibly synced) but not yet in the catalog.
    unapplied: Vec<Located>,
    /// Appended since the last fsync.
    unsynced: usize,
    /// Set when the catalog could not take durable records and could not be rebuilt either:
    /// nothing more is appended in this process (history read from it would be wrong).
    catalog_lost: Option<String>,
}

fn journal_start() -> Position {
    Position {
        segment: 1,
        offset: SEGMENT_HEADER_LEN as u64,
    }
}

/// The catalog rebuilt from the whole journal: into the file `file` when given (after removing
/// what is there), else (or if that fails) in memory.
fn rebuilt_catalog(
    fs: &dyn Fs,
    paths: &StatePaths,
    store: &ObjectStore,
    file: Option<&std::path::Path>,
) -> Result<Catalog> {
    let scan = wal::scan_from(fs, &paths.journal, journal_start())?;
    let size = |h: &Hash| store.stored_size(h).unwrap_or(0);
    if let Some(path) = file {
        // A file's checkpoint must name a durable record (the tail rule trusts it): the run
        // that appended the last ones may have died before its fsync.
        wal::sync_last_segment(fs, &paths.journal)?;
        let on_disk = Catalog::remove_files(path)
            .and_then(|()| Catalog::open(path))
            .and_then(|mut c| c.apply(&scan.records, &size).map(|()| c));
        match on_disk {
            Ok(c) => return Ok(c),
            Err(e) => warn(format_args!("{}; {IN_MEMORY_NOTE}", e.what())),
        }
    }
    let mut c = Catalog::open_in_memory()?;
    c.apply(&scan.records, &size)?;
    Ok(c)
}

/// How far the catalog says it got, read before the journal.
struct CatalogFacts {
    ck: Option<Checkpoint>,
    digests: Vec<wal::SegmentDigest>,
    /// Rows without a checkpoint: a catalog from elsewhere, stale.
    rows_without_checkpoint: bool,
}

impl CatalogFacts {
    fn of(catalog: &Catalog) -> Result<CatalogFacts> {
        let ck = catalog.checkpoint()?;
        let rows_without_checkpoint =
            ck.is_none() && (catalog.version_count()? > 0 || catalog.max_txn()? > 0);
        Ok(CatalogFacts {
            ck,
            digests: catalog.digests()?,
            rows_without_checkpoint,
        })
    }
}

/// Read the journal at startup. What earlier starts already checked is re-hashed in one pass
/// against the digests in the catalog (any changed byte is caught, so damage before the tail is
/// refused with exit 6 by every command); only what was appended since is decoded. Returns the
/// records the catalog has not seen, and whether the catalog is stale: a checkpoint that does not
/// name the record found at its position means the catalog ran ahead of (or away from) the
/// journal, and the scan is then the whole journal, to rebuild it from (it is derived data).
fn scan_after_checkpoint(
    fs: &dyn Fs,
    paths: &StatePaths,
    facts: &CatalogFacts,
) -> Result<(Scan, bool)> {
    let Some(ck) = &facts.ck else {
        let scan = wal::scan_from(fs, &paths.journal, journal_start())?;
        return Ok((scan, facts.rows_without_checkpoint));
    };
    // Whatever path the scan takes, the tail rule is checked against the checkpoint: the
    // catalog indexed that record after the fsync that made it durable (a catalog that lost
    // its last writes only knows less).
    let known_end = Position {
        segment: ck.pos.segment,
        offset: ck.pos.offset + ck.len,
    };
    let full = |stale: bool| -> Result<(Scan, bool)> {
        let scan = wal::scan_from(fs, &paths.journal, journal_start())?;
        wal::check_known_durable(&scan, known_end, ck.pos)?;
        Ok((scan, stale))
    };
    let digests = &facts.digests;
    let Some(checked) = digests.last().map(|d| Position {
        segment: d.segment,
        offset: d.len,
    }) else {
        return full(false).map(|(scan, _)| after_checkpoint(scan, ck));
    };
    let from = checked.min(ck.pos);
    // Sealed segments before the one the scan starts in are re-hashed here; the rest while read.
    for d in digests.iter().filter(|d| d.segment < from.segment) {
        if !wal::digest_holds(fs, &paths.journal, d)? {
            // Something before the tail changed: the full scan says where (exit 6), or, if every
            // record still reads, the digests themselves were wrong and the catalog is rebuilt.
            return full(true);
        }
    }
    let scan = wal::scan_checked(fs, &paths.journal, from, digests)?;
    if scan.changed {
        return full(true);
    }
    wal::check_known_durable(&scan, known_end, ck.pos)?;
    let (scan, stale) = after_checkpoint(scan, ck);
    if stale {
        return full(true);
    }
    Ok((scan, false))
}

/// Drop the records up to and including the checkpoint; stale if it is not among them.
fn after_checkpoint(mut scan: Scan, ck: &crate::catalog::Checkpoint) -> (Scan, bool) {
    let at = scan.records.iter().position(|r| {
        r.pos == ck.pos && r.decoded.len == ck.len && r.decoded.checksum == ck.checksum
    });
    match at {
        Some(i) => {
            scan.records.drain(..=i);
            (scan, false)
        }
        None => (scan, true),
    }
}

impl Unrecovered {
    /// Open an existing or new state directory with the given catalog. `writable`: the caller
    /// holds the lock, so a stale catalog may be rebuilt in place; otherwise a stale catalog is
    /// replaced by an in-memory one rebuilt from the journal.
    pub fn open(
        fs: Arc<dyn Fs>,
        paths: StatePaths,
        mut catalog: Catalog,
        writable: bool,
    ) -> Result<Unrecovered> {
        let store = ObjectStore::new(fs.clone(), paths.objects.clone());
        let facts = match CatalogFacts::of(&catalog) {
            Ok(f) => f,
            Err(e) => {
                // A cache that cannot be read is rebuilt, neither trusted nor fatal.
                warn(format_args!("{}; rebuilding it from the journal", e.what()));
                let file = catalog.path().filter(|_| writable).map(|p| p.to_path_buf());
                drop(catalog);
                catalog = rebuilt_catalog(fs.as_ref(), &paths, &store, file.as_deref())?;
                CatalogFacts::of(&catalog)?
            }
        };
        let (scan, stale) = scan_after_checkpoint(fs.as_ref(), &paths, &facts)?;
        if stale {
            let cleared = if writable {
                catalog.clear()
            } else {
                Err(Error::usage("read-only"))
            };
            if let Err(e) = cleared {
                if writable {
                    warn(format_args!("{}; {IN_MEMORY_NOTE}", e.what()));
                }
                catalog = Catalog::open_in_memory()?;
            }
        }
        let in_memory = catalog.path().is_none();
        let mut un = Unrecovered {
            fs,
            paths,
            store,
            catalog,
            pending: scan.records,
            scan_end: scan.end,
            torn: scan.torn,
            digests: scan.digests,
            writable,
        };
        if stale && in_memory {
            un.catch_up_catalog()?;
        }
        Ok(un)
    }

    /// The catalog as it is, for read-only commands that do not hold the lock.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn store(&self) -> &ObjectStore {
        &self.store
    }

    /// Bring the catalog up to the journal without touching manifests (needs the lock, unless
    /// the catalog is an in-memory rebuild).
    pub fn catch_up_catalog(&mut self) -> Result<()> {
        self.sync_pending()?;
        self.index_pending()
    }

    /// Make the records no run indexed durable before anything indexes them.
    fn sync_pending(&self) -> Result<()> {
        if !self.pending.is_empty() {
            // Records no run indexed: the run that appended them may have died before its
            // fsync, and the catalog must only ever know durable records (the tail rule trusts
            // its checkpoint). A failed fsync may have dropped those very bytes (fsyncgate):
            // nothing is indexed then. Without the lock the index is in memory and dies with
            // the process, so a reader on read-only media goes on.
            if let Err(e) = wal::sync_last_segment(self.fs.as_ref(), &self.paths.journal) {
                if self.writable {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Apply the pending records and the checked digests to the catalog (catalog work only).
    fn index_pending(&mut self) -> Result<()> {
        let store = &self.store;
        self.catalog
            .apply(&self.pending, &|h| store.stored_size(h).unwrap_or(0))?;
        self.pending.clear();
        // Written only when something new was checked: read-only commands stay read-only.
        let known = self.catalog.digests()?;
        if self.digests.iter().any(|d| !known.contains(d)) {
            self.catalog.set_digests(&self.digests)?;
        }
        self.digests.clear();
        Ok(())
    }

    /// [`Unrecovered::catch_up_catalog`]; if the catalog cannot take it (a full disk, a
    /// damaged file), a warning, and the catalog rebuilt from the journal (in place when the
    /// file is damaged and the lock is held, else in memory): it is a cache, never the reason
    /// a command fails.
    pub fn catch_up_or_fall_back(&mut self) -> Result<()> {
        // A journal that cannot be made durable is an error; only the catalog falls back.
        self.sync_pending()?;
        let Err(e) = self.index_pending() else {
            return Ok(());
        };
        let file = match (&e, self.catalog.path()) {
            (Error::Integrity(_), Some(p)) if self.writable => Some(p.to_path_buf()),
            _ => None,
        };
        warn(format_args!(
            "{}; {}",
            e.what(),
            if file.is_some() {
                "rebuilding it from the journal"
            } else {
                IN_MEMORY_NOTE
            }
        ));
        // The old connection is closed first: it must not write the new file's WAL.
        drop(std::mem::replace(
            &mut self.catalog,
            Catalog::open_in_memory()?,
        ));
        self.catalog =
            rebuilt_catalog(self.fs.as_ref(), &self.paths, &self.store, file.as_deref())?;
        self.pending.clear();
        self.digests.clear();
        Ok(())
    }

    /// Cut a torn tail (recording that it did) and open the journal for appending.
    fn into_engine(mut self) -> Result<(Engine, Option<wal::TornTail>)> {
        self.catch_up_or_fall_back()?;
        crate::failpoint::hit("recover.catalog_caught_up");
        let mut end = self.scan_end;
        let marker = self.paths.root.join(tail_cut::MARKER);
        if let Some(t) = &self.torn {
            // The cut is noted durably first: once the bytes are gone, nothing else would tell
            // a later start that there was a tail to record.
            tail_cut::write(self.fs.as_ref(), &marker, t)?;
            end = wal::cut_torn_tail(self.fs.as_ref(), &self.paths.journal, t)?;
            crate::failpoint::hit("recover.tail_truncated");
        }
        let cut = match self.torn {
            Some(t) => Some(t),
            None => tail_cut::read(self.fs.as_ref(), &marker)?,
        };
        let journal = Journal::open_at(self.fs.clone(), self.paths.journal.clone(), end)?;
        let mut engine = Engine {
            fs: self.fs,
            paths: self.paths,
            store: self.store,
            catalog: self.catalog,
            journal,
            unapplied: Vec::new(),
            unsynced: 0,
            catalog_lost: None,
        };
        if let Some(t) = &cut {
            if !engine
                .catalog
                .has_tail_cut(t.segment, t.offset, t.dropped)?
            {
                engine.log(Record::TruncatedTail {
                    at: now_ms(),
                    segment: t.segment,
                    offset: t.offset,
                    dropped: t.dropped,
                })?;
                engine.sync()?;
                crate::failpoint::hit("recover.tail_recorded");
            }
            tail_cut::remove(engine.fs(), &marker)?;
        }
        Ok((engine, cut))
    }
}

impl Engine {
    pub fn fs(&self) -> &dyn Fs {
        self.fs.as_ref()
    }

    /// Append a VERSION record (see `log`).
    pub(crate) fn log_version(
        &mut self,
        path: impl Into<String>,
        state: crate::journal::record::FileState,
        origin: crate::journal::record::Origin,
        txn: crate::journal::record::TxnId,
        recorded_at: i64,
        on_disk_from: i64,
    ) -> Result<()> {
        self.log(Record::Version(crate::journal::record::Version {
            path: path.into(),
            state,
            origin,
            txn,
            recorded_at,
            on_disk_from,
        }))
    }

    /// Append a record; it reaches the catalog after the next `sync`.
    pub(crate) fn log(&mut self, rec: Record) -> Result<()> {
        if let Some(why) = &self.catalog_lost {
            return Err(Error::Io {
                context: format!(
                    "not recording more in this run ({why}; the next run rebuilds the catalog \
                     from the journal)"
                ),
                source: std::io::Error::from_raw_os_error(nix::libc::EIO),
            });
        }
        let located = match self.journal.append(&rec) {
            Ok(l) => l,
            Err(e) => {
                // The appender cut the segment back to its last fsync: what it appended since
                // is gone, so it must never reach the catalog.
                self.forget_unsynced();
                return Err(e);
            }
        };
        self.unapplied.push(located);
        self.unsynced += 1;
        Ok(())
    }

    /// fsync the journal, then index what is now durable.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.sync_then("")
    }

    /// `sync`, with a crash point between the journal fsync and the catalog update. Only the
    /// journal can fail it: once the records are durable they are done, and a catalog that
    /// cannot take them is a warning (see [`Engine::apply_to_catalog`]).
    pub(crate) fn sync_then(&mut self, crash_point: &'static str) -> Result<()> {
        self.sync_journal(crash_point)?;
        self.apply_to_catalog();
        Ok(())
    }

    /// fsync the journal only; the records reach the catalog with the next `sync` (a
    /// transaction indexes its BEGIN together with its end, one catalog write instead of two;
    /// a crash in between is caught up from the journal at the next start).
    pub(crate) fn sync_journal(&mut self, crash_point: &'static str) -> Result<()> {
        if self.unsynced > 0 {
            if let Err(e) = self.journal.sync() {
                // What the failed fsync covered is not in the journal: never index it.
                self.forget_unsynced();
                return Err(e);
            }
            self.unsynced = 0;
        }
        if !crash_point.is_empty() {
            crate::failpoint::hit(crash_point);
        }
        Ok(())
    }

    fn forget_unsynced(&mut self) {
        let end = self.journal.synced_end();
        self.unapplied.retain(|l| l.pos < end);
        self.unsynced = 0;
    }

    /// Index what the journal holds durably. The catalog is a cache: if it cannot take the
    /// records (full disk, I/O error), the process goes on with a catalog rebuilt in memory
    /// from the journal, and the file, whose checkpoint still names the last record it took,
    /// is caught up at the next start. A failed catalog write is never retried on the same
    /// connection (a write reported failed may have landed: the same change twice).
    fn apply_to_catalog(&mut self) {
        if self.unapplied.is_empty() || self.catalog_lost.is_some() {
            return;
        }
        let store = &self.store;
        let Err(e) = self
            .catalog
            .apply(&self.unapplied, &|h| store.stored_size(h).unwrap_or(0))
        else {
            self.unapplied.clear();
            return;
        };
        warn(format_args!(
            "{} (the journal holds every record: nothing is lost); {IN_MEMORY_NOTE}",
            e.what()
        ));
        let rebuilt = Catalog::open_in_memory().and_then(|empty| {
            drop(std::mem::replace(&mut self.catalog, empty));
            rebuilt_catalog(self.fs.as_ref(), &self.paths, &self.store, None)
        });
        match rebuilt {
            Ok(c) => {
                self.catalog = c;
                self.unapplied.clear();
            }
            Err(e) => {
                let why = format!(
                    "the catalog could not be rebuilt from the journal: {}",
                    e.what()
                );
                warn(&why);
                self.catalog_lost = Some(why);
            }
        }
    }

    pub fn next_txn_id(&self) -> Result<u64> {
        Ok(self.catalog.max_txn()? + 1)
    }
}
