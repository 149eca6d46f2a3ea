//! The typed records of the write-ahead journal. The byte encoding of each one is specified in
//! `journal-format/README.md` ("Record payloads") and implemented in `format.rs`.

/// blake3 digest of exact file bytes; the object store's key.
pub type Hash = [u8; 32];

/// Transaction id: strictly increasing over the life of a state directory.
pub type TxnId = u64;

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// What a file looked like: the content (by hash) and the metadata the tool restores with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileState {
    pub hash: Hash,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The `mode` bit that marks a file that did not exist: the before state of a file a transaction
/// creates (an audit policy, an encryption config), or the after state of one it removes.
pub const ABSENT_MODE: u32 = 1 << 31;

impl FileState {
    /// "No file here": empty content, [`ABSENT_MODE`].
    pub fn absent() -> FileState {
        FileState {
            hash: *blake3::hash(b"").as_bytes(),
            size: 0,
            mode: ABSENT_MODE,
            uid: 0,
            gid: 0,
        }
    }

    pub fn is_absent(&self) -> bool {
        self.mode & ABSENT_MODE != 0
    }
}

/// One file touched by a transaction: its before and after states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIntent {
    pub path: String,
    pub before: FileState,
    pub after: FileState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TxnKind {
    Set = 1,
    Restore = 2,
    Remediate = 3,
}

/// Why a version was recorded; the `origin` field of `history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Origin {
    Baseline = 1,
    External = 2,
    Change = 3,
    Restore = 4,
    Rollback = 5,
    Recovery = 6,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    pub txn: TxnId,
    pub at: Millis,
    pub kind: TxnKind,
    pub reason: String,
    pub files: Vec<FileIntent>,
}

/// A content (and metadata) a file had on disk, from `on_disk_from` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub path: String,
    pub state: FileState,
    pub origin: Origin,
    /// The transaction that put it on disk; 0 for baseline/external sightings.
    pub txn: TxnId,
    pub recorded_at: Millis,
    pub on_disk_from: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// The write-ahead intent; fsynced before any manifest is touched.
    Begin(Begin),
    /// All files of the transaction were durably replaced with their after states.
    Applied {
        txn: TxnId,
        at: Millis,
    },
    Commit {
        txn: TxnId,
        at: Millis,
    },
    /// The gate (or the write) failed and the before states were written back.
    RolledBack {
        txn: TxnId,
        at: Millis,
        reason: String,
    },
    /// The rollback itself failed: a human must act.
    RollbackFailed {
        txn: TxnId,
        at: Millis,
        reason: String,
    },
    /// Recovery found nothing applied.
    Aborted {
        txn: TxnId,
        at: Millis,
    },
    /// Recovery wrote the before states back (policy revert, or replay that failed its gate).
    Reverted {
        txn: TxnId,
        at: Millis,
    },
    /// Recovery found a file that is neither before nor after; it touched nothing.
    Conflict {
        txn: TxnId,
        at: Millis,
        paths: Vec<String>,
    },
    Version(Version),
    /// Recovery cut an incomplete or unreadable final record off the journal.
    TruncatedTail {
        at: Millis,
        segment: u32,
        offset: u64,
        dropped: u64,
    },
    /// What the health gate saw, one line per check (`gate::summary_line`), written with the
    /// transaction's COMMIT, ROLLED_BACK or ROLLBACK_FAILED (same fsync) for `log`. Not terminal.
    GateResult {
        txn: TxnId,
        at: Millis,
        summary: String,
    },
    /// `prune` drops these objects from the store (written, and fsynced, before any is
    /// deleted). The versions whose content they are stay listed, marked pruned, until a later
    /// BEGIN or VERSION names the same content again (it is then stored again).
    Pruned {
        at: Millis,
        /// What was asked (`--keep 3 --keep-days 30`), for the log.
        reason: String,
        hashes: Vec<Hash>,
    },
}

impl Record {
    /// The transaction a record belongs to, if any.
    pub fn txn(&self) -> Option<TxnId> {
        match self {
            Record::Begin(b) => Some(b.txn),
            Record::Applied { txn, .. }
            | Record::Commit { txn, .. }
            | Record::RolledBack { txn, .. }
            | Record::RollbackFailed { txn, .. }
            | Record::Aborted { txn, .. }
            | Record::Reverted { txn, .. }
            | Record::Conflict { txn, .. }
            | Record::GateResult { txn, .. } => Some(*txn),
            Record::Version(v) if v.txn != 0 => Some(v.txn),
            Record::Version(_) | Record::TruncatedTail { .. } | Record::Pruned { .. } => None,
        }
    }

    /// A terminal record ends its transaction: nothing is left for recovery to do.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Record::Commit { .. }
                | Record::RolledBack { .. }
                | Record::RollbackFailed { .. }
                | Record::Aborted { .. }
                | Record::Reverted { .. }
                | Record::Conflict { .. }
        )
    }
}

/// Lower-case hex of a hash (64 characters), through a lookup table.
pub fn hash_hex(h: &Hash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (pair, b) in out.chunks_exact_mut(2).zip(h) {
        pair[0] = DIGITS[(b >> 4) as usize];
        pair[1] = DIGITS[(b & 0x0f) as usize];
    }
    // Only ASCII hex digits were written.
    String::from_utf8(out.to_vec()).unwrap_or_default()
}
