//! One transaction (transaction-protocol.md, steps 4–10): intent, durable write, gate, commit
//! or rollback.

use super::observe::{read_current, Observed};
use super::{now_ms, replace, Engine};
use crate::error::{Error, Result};
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
    /// What the checks so far saw, one line each, for the journal (`kubeharden log`).
    fn summary(&self) -> Option<String> {
        None
    }
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
        gate: Option<&mut dyn Gate>,
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

        // From here on a manifest may change: an I/O error says exactly what is on disk.
        let begun = Begun {
            txn,
            kind,
            intents: &intents,
            bodies: &bodies,
            befores: &befores,
        };
        self.write_gate_commit(&begun, gate)
            .map_err(|e| self.explain(e, &begun))
    }

    /// Journal what the gate saw (a GATE record), ahead of the terminal record whose fsync
    /// covers it: no fsync of its own.
    fn log_gate(&mut self, txn: TxnId, summary: Option<&str>) -> Result<()> {
        match summary {
            Some(s) if !s.is_empty() => self.log(Record::GateResult {
                txn,
                at: now_ms(),
                summary: s.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Steps 7–10 of a transaction whose BEGIN is durable.
    fn write_gate_commit(
        &mut self,
        b: &Begun,
        mut gate: Option<&mut dyn Gate>,
    ) -> Result<TxnReport> {
        let (txn, intents) = (b.txn, b.intents);
        if let Some(g) = gate.as_deref_mut() {
            g.before_write(&targets(intents, b.bodies, b.befores));
        }
        for (intent, body) in intents.iter().zip(b.bodies) {
            if let Err(e) =
                replace::apply_state(self.fs(), Path::new(&intent.path), body, &intent.after)
            {
                let why = format!("the write failed: {}", e.what());
                return self.roll_back(b, None, why, Some(e), gate);
            }
        }
        let applied_at = now_ms();
        if let Err(e) = self.log(Record::Applied {
            txn,
            at: applied_at,
        }) {
            let why = format!("recording APPLIED failed: {}", e.what());
            return self.roll_back(b, Some(applied_at), why, Some(e), gate);
        }
        failpoint::hit("txn.applied_appended");

        if let Some(g) = gate.as_deref_mut() {
            if let Err(why) = g.check(&targets(intents, b.bodies, b.befores)) {
                return self.roll_back(b, Some(applied_at), why, None, gate);
            }
        }

        let gate_seen = gate.as_deref().and_then(|g| g.summary());
        let committed = (|| {
            self.log_gate(txn, gate_seen.as_deref())?;
            for i in intents {
                self.log_version(
                    i.path.clone(),
                    i.after,
                    after_origin(b.kind),
                    txn,
                    now_ms(),
                    applied_at,
                )?;
            }
            self.log(Record::Commit { txn, at: now_ms() })?;
            // Only the journal can fail this: the catalog is a cache (a warning at most).
            self.sync_then("txn.commit_synced")
        })();
        if let Err(e) = committed {
            // fsyncgate: a failed fsync is not retried as if the data were safe.
            let why = format!("recording the commit failed: {}", e.what());
            return self.roll_back(b, Some(applied_at), why, Some(e), gate);
        }
        failpoint::hit("txn.catalog_updated");
        Ok(TxnReport {
            txn: Some(txn),
            status: TxnStatus::Committed,
            files: intents.to_vec(),
            reason: String::new(),
        })
    }

    /// An I/O error after BEGIN, restated with what the files hold now and what the journal
    /// records (a rolled-back transaction has said so already).
    fn explain(&self, e: Error, b: &Begun) -> Error {
        if !matches!(e, Error::Io { .. }) {
            return e;
        }
        e.with_on_disk(format!(
            "{}; transaction {} is not recorded as finished: the next kubeharden run's recovery \
             finishes it (policy revert puts the before content back)",
            self.on_disk_now(b.intents),
            b.txn
        ))
    }

    /// What each file of a transaction holds now, in words.
    pub(crate) fn on_disk_now(&self, intents: &[FileIntent]) -> String {
        intents
            .iter()
            .map(|i| match read_current(self.fs(), Path::new(&i.path)) {
                Ok((_, s)) if s == i.before && s.is_absent() => {
                    format!("{} is absent, as before", i.path)
                }
                Ok((_, s)) if s == i.before => format!("{} holds its before content", i.path),
                Ok((_, s)) if s == i.after => format!("{} holds the new content", i.path),
                Ok((_, s)) => format!(
                    "{} holds other content (blake3 {})",
                    i.path,
                    hash_hex(&s.hash)
                ),
                Err(e) => format!("{} cannot be read ({})", i.path, e.what()),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Write the before contents back where the after contents are on disk, confirm with the
    /// gate that the component recovered, and record it. The report says `RolledBack`, or
    /// `RollbackFailed` (exit 4) with the commands to run by hand in its reason. After an I/O
    /// error (`cause`), a good rollback is that error (exit 7) saying the before content is
    /// back on disk.
    fn roll_back(
        &mut self,
        b: &Begun,
        applied_at: Option<i64>,
        reason: String,
        cause: Option<Error>,
        mut gate: Option<&mut dyn Gate>,
    ) -> Result<TxnReport> {
        let txn = b.txn;
        let mut on_disk = Vec::new();
        let mut before_bytes = Vec::new();
        let mut after_bytes = Vec::new();
        for i in b.intents {
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
        for (i, bytes) in on_disk.iter().zip(&before_bytes) {
            if let Err(e) = replace::apply_state(self.fs(), Path::new(&i.path), bytes, &i.before) {
                if self.renamed_back(i) {
                    continue;
                }
                failure = Some(format!(
                    "writing the previous content of {} back failed ({}); restore it by hand: {}",
                    i.path,
                    e.what(),
                    self.manual_restore_hint(&i.path, &i.before)
                ));
                break;
            }
        }
        failpoint::hit("rollback.before_written");
        if failure.is_none() && !on_disk.is_empty() {
            if let Some(g) = gate.as_deref_mut() {
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
        let gate_seen = gate.as_deref().and_then(|g| g.summary());
        if let Some(what) = failure {
            let msg = format!(
                "CRITICAL: rolling back transaction {txn} (after: {reason}) failed: {what}"
            );
            // Exit 4 stands whatever the journal does now; if it cannot record this, the
            // transaction stays open and the next run's recovery retries the rollback.
            let recorded = self
                .log_gate(txn, gate_seen.as_deref())
                .and_then(|()| {
                    self.record_rolled_back_versions(b.kind, txn, &on_disk, at, applied_at)
                })
                .and_then(|()| {
                    self.log(Record::RollbackFailed {
                        txn,
                        at,
                        reason: msg.clone(),
                    })?;
                    self.sync_then("rollback.recorded")
                });
            let mut reason = msg;
            if let Err(e) = recorded {
                reason.push_str(&format!(
                    " (recording this failed too: {}; the next kubeharden run finds the \
                     transaction incomplete and retries the rollback)",
                    e.what()
                ));
            }
            return Ok(TxnReport {
                txn: Some(txn),
                status: TxnStatus::RollbackFailed,
                files: b.intents.to_vec(),
                reason,
            });
        }
        self.log_gate(txn, gate_seen.as_deref())?;
        self.record_rolled_back_versions(b.kind, txn, &on_disk, at, applied_at)?;
        self.log(Record::RolledBack {
            txn,
            at,
            reason: reason.clone(),
        })?;
        self.sync_then("rollback.recorded")?;
        if let Some(e) = cause.filter(Error::is_io) {
            return Err(e.with_on_disk(format!(
                "{}; transaction {txn} was rolled back and recorded as such",
                self.on_disk_now(b.intents)
            )));
        }
        Ok(TxnReport {
            txn: Some(txn),
            status: TxnStatus::RolledBack,
            files: b.intents.to_vec(),
            reason,
        })
    }

    /// After a failed rollback write: whether the before content is in place after all and
    /// durable. The rename may have landed with only its directory fsync failing; the content
    /// itself was fsynced before the rename, so one more directory fsync settles it (a file
    /// fsync is never retried: fsyncgate).
    fn renamed_back(&self, i: &FileIntent) -> bool {
        let path = Path::new(&i.path);
        let back = matches!(read_current(self.fs(), path), Ok((_, s)) if s == i.before);
        back && path
            .parent()
            .is_some_and(|dir| self.fs().sync_dir(dir).is_ok())
    }

    /// History ends at what each file rolled back holds now: its after content (recorded as
    /// the change it is) and, where the before content is back, the rollback version. A file
    /// that cannot be read is left to the next run to observe.
    fn record_rolled_back_versions(
        &mut self,
        kind: TxnKind,
        txn: TxnId,
        files: &[FileIntent],
        at: i64,
        applied_at: i64,
    ) -> Result<()> {
        for i in files {
            let now = read_current(self.fs(), Path::new(&i.path))
                .ok()
                .map(|(_, s)| s);
            if now != Some(i.before) && now != Some(i.after) {
                continue;
            }
            self.log_version(
                i.path.clone(),
                i.after,
                after_origin(kind),
                txn,
                at,
                applied_at,
            )?;
            if now == Some(i.before) {
                self.log_version(i.path.clone(), i.before, Origin::Rollback, txn, at, at)?;
            }
        }
        Ok(())
    }
}

/// A transaction whose BEGIN is durable: what it writes and what it replaces.
struct Begun<'a> {
    txn: TxnId,
    kind: TxnKind,
    intents: &'a [FileIntent],
    bodies: &'a [Vec<u8>],
    befores: &'a [Vec<u8>],
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
