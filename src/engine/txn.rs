//! One transaction (transaction-protocol.md, steps 4–10): intent, durable write, gate, commit
//! or rollback.

use super::observe::{read_file, Observed};
use super::{now_ms, replace, Engine};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::journal::record::{
    hash_hex, Begin, FileIntent, FileState, Origin, Record, TxnId, TxnKind, Version,
};
use crate::store::objects::hash_bytes;
use std::path::Path;

/// One file's requested new content (and, for restores, metadata).
pub struct Change {
    pub observed: Observed,
    pub after_bytes: Vec<u8>,
    /// mode, uid, gid to give the file; `None` keeps the current ones.
    pub after_meta: Option<(u32, u32, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnStatus {
    Committed,
    Noop,
    RolledBack,
    RollbackFailed,
}

impl TxnStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TxnStatus::Committed => "committed",
            TxnStatus::Noop => "noop",
            TxnStatus::RolledBack => "rolled_back",
            TxnStatus::RollbackFailed => "rollback_failed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TxnReport {
    pub txn: Option<TxnId>,
    pub status: TxnStatus,
    pub files: Vec<FileIntent>,
    /// Why it was rolled back, or what a human must do after a failed rollback.
    pub reason: String,
}

/// Decides whether the component came back healthy with the new content. `Err` is the
/// human-readable reason to roll back.
pub trait Gate {
    fn check(&mut self, files: &[FileIntent]) -> std::result::Result<(), String>;
}

/// The origin of an after version put on disk by a transaction of this kind.
pub fn after_origin(kind: TxnKind) -> Origin {
    match kind {
        TxnKind::Set | TxnKind::Remediate => Origin::Change,
        TxnKind::Restore => Origin::Restore,
    }
}

impl Engine {
    /// Run one transaction over `changes`. A change identical to what is on disk is dropped;
    /// when nothing is left the result is `Noop` and nothing is written.
    pub fn transact(
        &mut self,
        kind: TxnKind,
        reason: &str,
        changes: Vec<Change>,
        gate: Option<&mut dyn Gate>,
    ) -> Result<TxnReport> {
        let mut intents = Vec::new();
        let mut bodies = Vec::new();
        for c in changes {
            let before = c.observed.state;
            let (mode, uid, gid) = c
                .after_meta
                .unwrap_or((before.mode, before.uid, before.gid));
            let after = FileState {
                hash: hash_bytes(&c.after_bytes),
                size: c.after_bytes.len() as u64,
                mode,
                uid,
                gid,
            };
            if after != before {
                intents.push(FileIntent {
                    path: c.observed.path.clone(),
                    before,
                    after,
                });
                bodies.push(c.after_bytes);
            }
        }
        if intents.is_empty() {
            return Ok(TxnReport {
                txn: None,
                status: TxnStatus::Noop,
                files: intents,
                reason: String::new(),
            });
        }
        for b in &bodies {
            self.store.put(b)?;
        }
        failpoint::hit("txn.objects_stored");

        let txn = self.next_txn_id()?;
        self.log(Record::Begin(Begin {
            txn,
            at: now_ms(),
            kind,
            reason: reason.to_string(),
            files: intents.clone(),
        }))?;
        self.sync_then("txn.begin_synced")?;

        for (intent, body) in intents.iter().zip(&bodies) {
            if let Err(e) =
                replace::durable_replace(self.fs(), Path::new(&intent.path), body, &intent.after)
            {
                return self.roll_back(txn, kind, &intents, None, format!("the write failed: {e}"));
            }
        }
        let applied_at = now_ms();
        self.log(Record::Applied {
            txn,
            at: applied_at,
        })?;
        failpoint::hit("txn.applied_appended");

        if let Some(gate) = gate {
            if let Err(why) = gate.check(&intents) {
                return self.roll_back(txn, kind, &intents, Some(applied_at), why);
            }
        }

        let committed = (|| {
            for i in &intents {
                self.log(Record::Version(Version {
                    path: i.path.clone(),
                    state: i.after,
                    origin: after_origin(kind),
                    txn,
                    recorded_at: now_ms(),
                    on_disk_from: applied_at,
                }))?;
            }
            self.log(Record::Commit { txn, at: now_ms() })?;
            self.sync_then("txn.commit_synced")
        })();
        if let Err(e) = committed {
            // fsyncgate: a failed fsync is not retried as if the data were safe.
            return self.roll_back(
                txn,
                kind,
                &intents,
                Some(applied_at),
                format!("recording the commit failed: {e}"),
            );
        }
        failpoint::hit("txn.catalog_updated");
        Ok(TxnReport {
            txn: Some(txn),
            status: TxnStatus::Committed,
            files: intents,
            reason: String::new(),
        })
    }

    /// Write the before contents back where the after contents are on disk, and record it.
    /// The report says `RolledBack`, or `RollbackFailed` with the commands to run by hand.
    fn roll_back(
        &mut self,
        txn: TxnId,
        kind: TxnKind,
        intents: &[FileIntent],
        applied_at: Option<i64>,
        reason: String,
    ) -> Result<TxnReport> {
        let mut was_on_disk = Vec::new();
        let mut failure = None;
        for i in intents {
            let path = Path::new(&i.path);
            let now = match read_file(self.fs(), path) {
                Ok((_, state, _)) => Some(state),
                Err(_) => None,
            };
            if now == Some(i.before) {
                continue;
            }
            was_on_disk.push(i);
            let restored = self
                .store
                .get(&i.before.hash)
                .and_then(|bytes| replace::durable_replace(self.fs(), path, &bytes, &i.before));
            if let Err(e) = restored {
                failure = Some((i, e));
                break;
            }
        }
        failpoint::hit("rollback.before_written");
        let at = now_ms();
        if let Some((i, e)) = failure {
            let manual = self.manual_restore_hint(&i.path, &i.before);
            let msg = format!(
                "CRITICAL: rolling back transaction {txn} failed ({e}) after: {reason}. \
                 {} may hold the new content. Restore it by hand: {manual}",
                i.path
            );
            let _ = self.log(Record::RollbackFailed {
                txn,
                at,
                reason: msg.clone(),
            });
            let _ = self.sync();
            return Err(Error::Critical(msg));
        }
        let applied_at = applied_at.unwrap_or(at);
        for i in &was_on_disk {
            self.log(Record::Version(Version {
                path: i.path.clone(),
                state: i.after,
                origin: after_origin(kind),
                txn,
                recorded_at: at,
                on_disk_from: applied_at,
            }))?;
            self.log(Record::Version(Version {
                path: i.path.clone(),
                state: i.before,
                origin: Origin::Rollback,
                txn,
                recorded_at: at,
                on_disk_from: at,
            }))?;
        }
        self.log(Record::RolledBack {
            txn,
            at,
            reason: reason.clone(),
        })?;
        self.sync_then("rollback.recorded")?;
        Ok(TxnReport {
            txn: Some(txn),
            status: TxnStatus::RolledBack,
            files: intents.to_vec(),
            reason,
        })
    }
}

impl Engine {
    /// The commands a human runs when the tool cannot put a file back itself.
    pub fn manual_restore_hint(&self, path: &str, before: &FileState) -> String {
        let version = self
            .catalog
            .latest_version_with_hash(path, &before.hash)
            .ok()
            .flatten()
            .map_or_else(|| "N".to_string(), |v| v.version.to_string());
        format!(
            "'kubeharden restore {path} --version {version} --no-health-gate', or \
             'kubeharden show {path} --version {version} > /tmp/kubeharden-restore && \
             install -m {mode:o} -o {uid} -g {gid} /tmp/kubeharden-restore {path}' \
             (content blake3 {hex})",
            hex = hash_hex(&before.hash),
            mode = before.mode,
            uid = before.uid,
            gid = before.gid,
        )
    }
}
