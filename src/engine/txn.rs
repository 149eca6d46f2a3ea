//! One transaction (transaction-protocol.md, steps 4–10): intent, durable write, gate, commit
//! or rollback.

use super::observe::{read_current, Observed};
use super::{now_ms, replace, Engine};
use crate::error::Result;
use crate::failpoint;
use crate::journal::record::{
    hash_hex, Begin, FileIntent, FileState, Origin, Record, TxnId, TxnKind,
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

/// A file as the gate sees it: the content now being written (`bytes`) and the one it replaces.
pub struct GateTarget<'a> {
    pub path: &'a str,
    pub bytes: &'a [u8],
    pub previous: &'a [u8],
}

/// Decides whether the component came back healthy with the content just written. `Err` is
/// the human-readable reason to roll back. The same gate confirms a rollback.
pub trait Gate {
    /// Called right before the durable write, so the gate can note what runs now.
    fn before_write(&mut self, _targets: &[GateTarget]) {}
    fn check(&mut self, targets: &[GateTarget]) -> std::result::Result<(), String>;
}

fn targets<'a>(
    paths: &'a [FileIntent],
    bytes: &'a [Vec<u8>],
    previous: &'a [Vec<u8>],
) -> Vec<GateTarget<'a>> {
    paths
        .iter()
        .zip(bytes.iter().zip(previous))
        .map(|(i, (b, p))| GateTarget {
            path: &i.path,
            bytes: b,
            previous: p,
        })
        .collect()
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
        mut gate: Option<&mut dyn Gate>,
    ) -> Result<TxnReport> {
        let mut intents = Vec::new();
        let mut bodies = Vec::new();
        let mut befores = Vec::new();
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
                befores.push(c.observed.bytes);
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
        // Each before content is a recorded version (observed just now), so durable already.
        for b in &befores {
            self.store.put_recorded(b)?;
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
        self.sync_journal("txn.begin_synced")?;

        if let Some(g) = gate.as_deref_mut() {
            g.before_write(&targets(&intents, &bodies, &befores));
        }
        for (intent, body) in intents.iter().zip(&bodies) {
            if let Err(e) =
                replace::apply_state(self.fs(), Path::new(&intent.path), body, &intent.after)
            {
                return self.roll_back(
                    txn,
                    kind,
                    &intents,
                    None,
                    format!("the write failed: {e}"),
                    gate,
                );
            }
        }
        let applied_at = now_ms();
        self.log(Record::Applied {
            txn,
            at: applied_at,
        })?;
        failpoint::hit("txn.applied_appended");

        if let Some(g) = gate.as_deref_mut() {
            if let Err(why) = g.check(&targets(&intents, &bodies, &befores)) {
                return self.roll_back(txn, kind, &intents, Some(applied_at), why, gate);
            }
        }

        let committed = (|| {
            for i in &intents {
                self.log_version(
                    i.path.clone(),
                    i.after,
                    after_origin(kind),
                    txn,
                    now_ms(),
                    applied_at,
                )?;
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
                gate,
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

    /// Write the before contents back where the after contents are on disk, confirm with the
    /// gate that the component recovered, and record it. The report says `RolledBack`, or
    /// `RollbackFailed` (exit 4) with the commands to run by hand in its reason.
    fn roll_back(
        &mut self,
        txn: TxnId,
        kind: TxnKind,
        intents: &[FileIntent],
        applied_at: Option<i64>,
        reason: String,
        mut gate: Option<&mut dyn Gate>,
    ) -> Result<TxnReport> {
        let mut on_disk = Vec::new();
        let mut before_bytes = Vec::new();
        let mut after_bytes = Vec::new();
        for i in intents {
            let now = read_current(self.fs(), Path::new(&i.path))
                .ok()
                .map(|(_, s)| s);
            if now != Some(i.before) {
                on_disk.push(i.clone());
                before_bytes.push(self.store.get(&i.before.hash)?);
                after_bytes.push(self.store.get(&i.after.hash).unwrap_or_default());
            }
        }
        if let Some(g) = gate.as_deref_mut() {
            g.before_write(&targets(&on_disk, &before_bytes, &after_bytes));
        }
        let mut failure = None;
        let mut written = 0;
        for (i, bytes) in on_disk.iter().zip(&before_bytes) {
            if let Err(e) = replace::apply_state(self.fs(), Path::new(&i.path), bytes, &i.before) {
                failure = Some(format!(
                    "writing the previous content of {} back failed ({e}); restore it by hand: {}",
                    i.path,
                    self.manual_restore_hint(&i.path, &i.before)
                ));
                break;
            }
            written += 1;
        }
        failpoint::hit("rollback.before_written");
        if failure.is_none() && !on_disk.is_empty() {
            if let Some(g) = gate {
                if let Err(why) = g.check(&targets(&on_disk, &before_bytes, &after_bytes)) {
                    failure = Some(format!(
                        "the previous content is back on disk, but the component did not come back healthy: {why}. Check the kubelet ('journalctl -u kubelet', 'crictl ps -a') and, if a manifest is wrong, restore it by hand: {}",
                        on_disk
                            .iter()
                            .map(|i| self.manual_restore_hint(&i.path, &i.before))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ));
                }
            }
        }
        let at = now_ms();
        let applied_at = applied_at.unwrap_or(at);
        for i in &on_disk[..written] {
            self.log_version(
                i.path.clone(),
                i.after,
                after_origin(kind),
                txn,
                at,
                applied_at,
            )?;
            self.log_version(i.path.clone(), i.before, Origin::Rollback, txn, at, at)?;
        }
        if let Some(what) = failure {
            let msg = format!(
                "CRITICAL: rolling back transaction {txn} (after: {reason}) failed: {what}"
            );
            self.log(Record::RollbackFailed {
                txn,
                at,
                reason: msg.clone(),
            })?;
            self.sync_then("rollback.recorded")?;
            return Ok(TxnReport {
                txn: Some(txn),
                status: TxnStatus::RollbackFailed,
                files: intents.to_vec(),
                reason: msg,
            });
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
             install -m {mode:04o} -o {uid} -g {gid} /tmp/kubeharden-restore {path}' \
             (content blake3 {hex})",
            hex = hash_hex(&before.hash),
            mode = before.mode,
            uid = before.uid,
            gid = before.gid,
        )
    }
}
