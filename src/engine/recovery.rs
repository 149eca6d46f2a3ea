//! Recovery (transaction-protocol.md, "Recovery at startup"): cut a torn tail, catch the
//! catalog up, remove our leftover temps, and resolve every transaction that has a BEGIN but no
//! terminal record — deciding from the files' bytes, not from the APPLIED record.

use super::observe::read_current;
use super::txn::{after_origin, Gate, GateTarget};
use super::{now_ms, replace, Engine, Unrecovered};
use crate::catalog::{TxnFile, TxnRow};
use crate::error::{Error, IoContext, Result};
use crate::failpoint;
use crate::journal::record::{FileIntent, FileState, Origin, Record, TxnId, TxnKind};
use crate::journal::wal::TornTail;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Revert,
    Replay,
}

#[derive(Debug, Clone)]
pub struct Resolved {
    pub txn: TxnId,
    /// `reverted`, `replayed`, `aborted` or `conflict` (cli.md).
    pub action: &'static str,
    pub paths: Vec<String>,
    pub note: String,
}

#[derive(Debug, Default)]
pub struct RecoveryReport {
    pub resolved: Vec<Resolved>,
    pub torn_tail: Option<TornTail>,
    pub temps_removed: Vec<PathBuf>,
}

impl RecoveryReport {
    pub fn conflicts(&self) -> Vec<&Resolved> {
        self.resolved
            .iter()
            .filter(|r| r.action == "conflict")
            .collect()
    }
}

/// What a replay needs of the transaction being resolved.
struct Replay<'a> {
    txn: TxnId,
    kind: TxnKind,
    files: &'a [TxnFile],
    states: &'a [OnDisk],
    at_after: &'a [&'a TxnFile],
    applied_at: i64,
}

enum OnDisk {
    Before,
    After,
    Other,
}

fn kind_of(row: &TxnRow) -> TxnKind {
    match row.kind.as_str() {
        "restore" => TxnKind::Restore,
        "remediate" => TxnKind::Remediate,
        _ => TxnKind::Set,
    }
}

impl Unrecovered {
    /// Recover, then hand out an engine that can run transactions. `manifest_dirs` are swept
    /// for leftover temps; `gate` is used by policy `replay`.
    pub fn recover(
        self,
        policy: Policy,
        manifest_dirs: &[PathBuf],
        mut gate: Option<&mut dyn Gate>,
    ) -> Result<(Engine, RecoveryReport)> {
        let (mut engine, torn_tail) = self.into_engine()?;
        let mut report = RecoveryReport {
            torn_tail,
            ..Default::default()
        };
        let open = engine.catalog.open_txns()?;
        let mut dirs: Vec<PathBuf> = manifest_dirs.to_vec();
        for t in &open {
            for f in engine.catalog.txn_files(t.txn)? {
                if let Some(p) = Path::new(&f.path).parent() {
                    dirs.push(p.to_path_buf());
                }
            }
        }
        dirs.sort();
        dirs.dedup();
        for d in &dirs {
            report
                .temps_removed
                .extend(replace::remove_leftover_temps(engine.fs(), d)?);
        }
        // A run cut short while storing an object leaves `objects/XX/.<hash>.tmp`.
        report
            .temps_removed
            .extend(engine.store.remove_leftover_temps()?);
        failpoint::hit("recover.temps_removed");
        for t in open {
            let files = engine.catalog.txn_files(t.txn)?;
            let resolved = engine.resolve(&t, &files, policy, &mut gate)?;
            failpoint::hit("recover.resolved_recorded");
            report.resolved.push(resolved);
        }
        Ok((engine, report))
    }
}

impl Engine {
    /// One incomplete transaction, by phase: what each file holds now, then a conflict (third
    /// content), a replay, an abort (nothing applied) or a revert.
    fn resolve(
        &mut self,
        t: &TxnRow,
        files: &[TxnFile],
        policy: Policy,
        gate: &mut Option<&mut dyn Gate>,
    ) -> Result<Resolved> {
        let txn = t.txn;
        let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        let (states, strangers) = self.classify(txn, files)?;
        let at = now_ms();
        if !strangers.is_empty() {
            return self.conflict(txn, at, paths, strangers);
        }
        let kind = kind_of(t);
        let applied_at = t.applied_at.unwrap_or(t.started_at);
        let at_after: Vec<&TxnFile> = files
            .iter()
            .zip(&states)
            .filter(|(_, s)| matches!(s, OnDisk::After))
            .map(|(f, _)| f)
            .collect();
        if policy == Policy::Replay {
            let replay = Replay {
                txn,
                kind,
                files,
                states: &states,
                at_after: &at_after,
                applied_at,
            };
            return self.replay(replay, paths, gate);
        }
        if at_after.is_empty() {
            return self.abort(txn, at, files, paths);
        }
        self.revert(
            txn,
            kind,
            &at_after,
            applied_at,
            paths,
            "incomplete at startup (policy revert)".into(),
        )
    }

    /// What each file of `txn` holds now, once durable; the files holding neither side, with
    /// their bytes when they are a regular file.
    #[allow(clippy::type_complexity)]
    fn classify<'f>(
        &mut self,
        txn: TxnId,
        files: &'f [TxnFile],
    ) -> Result<(
        Vec<OnDisk>,
        Vec<(&'f TxnFile, Option<(Vec<u8>, FileState)>)>,
    )> {
        let mut states = Vec::new();
        let mut strangers = Vec::new();
        for f in files {
            // What the file holds is decided on only once it is durable: the run that renamed
            // it may have failed (or died) before its directory fsync.
            if let Some(dir) = Path::new(&f.path).parent() {
                self.fs()
                    .sync_dir(dir)
                    .ctx(|| format!("fsync {}", dir.display()))
                    .map_err(|e| unread(e, txn))?;
            }
            let now = match read_current(self.fs(), Path::new(&f.path)) {
                Ok(now) => Some(now),
                // A link or a directory where the manifest was: someone else's doing.
                Err(Error::Usage(_) | Error::Integrity(_)) => None,
                // A read that failed says nothing about the content: no verdict, nothing marked.
                Err(e) => return Err(unread(e, txn)),
            };
            let s = match &now {
                Some((_, st)) if *st == f.before => OnDisk::Before,
                Some((_, st)) if *st == f.after => OnDisk::After,
                _ => OnDisk::Other,
            };
            if matches!(s, OnDisk::Other) {
                strangers.push((f, now));
            }
            states.push(s);
        }
        Ok((states, strangers))
    }

    /// Neither before nor after: someone else wrote it. Keep their bytes, touch nothing.
    #[allow(clippy::type_complexity)]
    fn conflict(
        &mut self,
        txn: TxnId,
        at: i64,
        paths: Vec<String>,
        strangers: Vec<(&TxnFile, Option<(Vec<u8>, FileState)>)>,
    ) -> Result<Resolved> {
        // Neither before nor after: someone else wrote it. Keep their bytes, touch nothing.
        let mut names = Vec::new();
        let mut recorded = Vec::new();
        for (f, now) in strangers {
            names.push(f.path.clone());
            if let Some((bytes, state)) = now {
                self.store.put(&bytes)?;
                self.log_version(f.path.clone(), state, Origin::External, 0, at, at)?;
                recorded.push(f.path.clone());
            }
        }
        self.log(Record::Conflict {
            txn,
            at,
            paths: names.clone(),
        })?;
        self.sync()?;
        let kept = if recorded.len() == names.len() {
            "left untouched and recorded as an external version".to_string()
        } else if recorded.is_empty() {
            "left untouched (not a regular file: nothing recorded)".to_string()
        } else {
            format!(
                "left untouched; {} recorded as an external version",
                recorded.join(", ")
            )
        };
        Ok(Resolved {
            txn,
            action: "conflict",
            paths,
            note: format!(
                "{} changed by someone else (neither the before nor the after content of \
                 transaction {txn}); {kept}",
                names.join(", ")
            ),
        })
    }

    /// Policy `replay`: re-apply the after content where the before is on disk, gate, commit;
    /// unhealthy (or a failed write) reverts.
    fn replay(
        &mut self,
        r: Replay,
        paths: Vec<String>,
        gate: &mut Option<&mut dyn Gate>,
    ) -> Result<Resolved> {
        let Replay {
            txn,
            kind,
            files,
            states,
            at_after,
            applied_at,
        } = r;
        let mut befores = Vec::new();
        let mut afters = Vec::new();
        for f in files {
            befores.push(self.store.get(&f.before.hash)?);
            afters.push(self.store.get(&f.after.hash)?);
        }
        let intents: Vec<FileIntent> = files
            .iter()
            .map(|f| FileIntent {
                path: f.path.clone(),
                before: f.before,
                after: f.after,
            })
            .collect();
        let targets: Vec<GateTarget> = intents
            .iter()
            .zip(afters.iter().zip(&befores))
            .map(|(i, (a, b))| GateTarget {
                path: &i.path,
                bytes: a,
                previous: b,
            })
            .collect();
        if let Some(g) = gate.as_mut() {
            g.before_write(&targets);
        }
        let mut replay_err = None;
        for ((f, s), bytes) in files.iter().zip(states).zip(&afters) {
            if matches!(s, OnDisk::Before) {
                if let Err(e) = replace::apply_state(self.fs(), Path::new(&f.path), bytes, &f.after)
                {
                    replay_err = Some(format!("re-applying {} failed: {e}", f.path));
                    break;
                }
            }
        }
        let verdict = match (replay_err, gate.as_mut()) {
            (Some(e), _) => Err(e),
            (None, Some(g)) => g.check(&targets),
            (None, None) => Ok(()),
        };
        match verdict {
            Ok(()) => {
                let now = now_ms();
                for f in files {
                    self.log_version(
                        f.path.clone(),
                        f.after,
                        after_origin(kind),
                        txn,
                        now,
                        if at_after.iter().any(|a| a.path == f.path) {
                            applied_at
                        } else {
                            now
                        },
                    )?;
                }
                self.log(Record::Commit { txn, at: now })?;
                self.sync()
                    .map_err(|e| self.unrecorded(e, txn, files, "replay"))?;
                Ok(Resolved {
                    txn,
                    action: "replayed",
                    paths,
                    note: String::new(),
                })
            }
            Err(why) => {
                let all: Vec<&TxnFile> = files.iter().collect();
                self.revert(txn, kind, &all, applied_at, paths, why)
            }
        }
    }

    /// Nothing had been applied: every file holds its before content.
    fn abort(
        &mut self,
        txn: TxnId,
        at: i64,
        files: &[TxnFile],
        paths: Vec<String>,
    ) -> Result<Resolved> {
        // A rollback cut short may have recorded the after version but not the before one
        // that is back on disk: history must end at what the disk holds.
        for f in files {
            self.record_back_at_before(f, txn, at)?;
        }
        self.log(Record::Aborted { txn, at })?;
        self.sync()?;
        Ok(Resolved {
            txn,
            action: "aborted",
            paths,
            note: "nothing had been applied".into(),
        })
    }

    /// Write the before content back over every file now at its after content (or at anything
    /// but before), and record REVERTED.
    fn revert(
        &mut self,
        txn: TxnId,
        kind: TxnKind,
        files: &[&TxnFile],
        applied_at: i64,
        paths: Vec<String>,
        why: String,
    ) -> Result<Resolved> {
        let mut rewritten: Vec<&TxnFile> = Vec::new();
        for f in files {
            let path = Path::new(&f.path);
            let now = match read_current(self.fs(), path) {
                Ok((_, s)) => Some(s),
                Err(e) if e.is_io() => return Err(unread(e, txn)),
                Err(_) => None,
            };
            if now == Some(f.before) {
                continue;
            }
            let bytes = self.store.get(&f.before.hash)?;
            replace::apply_state(self.fs(), path, &bytes, &f.before).map_err(|e| {
                Error::Critical(format!(
                    "CRITICAL: reverting transaction {txn} failed on {}: {e}. Restore it by hand: {}",
                    f.path,
                    self.manual_restore_hint(&f.path, &f.before)
                ))
            })?;
            failpoint::hit("recover.reverted_written");
            rewritten.push(f);
        }
        let all: Vec<TxnFile> = files.iter().map(|f| (*f).clone()).collect();
        self.record_revert(txn, kind, files, &rewritten, applied_at)
            .map_err(|e| self.unrecorded(e, txn, &all, "revert"))?;
        Ok(Resolved {
            txn,
            action: "reverted",
            paths,
            note: why,
        })
    }

    /// The versions and REVERTED record of a revert whose writes are done.
    fn record_revert(
        &mut self,
        txn: TxnId,
        kind: TxnKind,
        files: &[&TxnFile],
        rewritten: &[&TxnFile],
        applied_at: i64,
    ) -> Result<()> {
        let at = now_ms();
        for f in files {
            if rewritten.iter().any(|r| r.path == f.path) {
                // The after content was on disk until now; record it unless a cut-short
                // rollback already did.
                let last = self.catalog.last_version(&f.path)?.map(|v| v.state);
                if last != Some(f.after) {
                    self.log_version(
                        f.path.clone(),
                        f.after,
                        after_origin(kind),
                        txn,
                        at,
                        applied_at.min(at),
                    )?;
                }
                self.log_version(f.path.clone(), f.before, Origin::Recovery, txn, at, at)?;
            } else {
                self.record_back_at_before(f, txn, at)?;
            }
        }
        self.log(Record::Reverted { txn, at })?;
        self.sync()
    }

    /// A recovery that wrote files but could not record it: the error says what is on disk.
    fn unrecorded(&self, e: Error, txn: TxnId, files: &[TxnFile], what: &str) -> Error {
        let intents: Vec<FileIntent> = files
            .iter()
            .map(|f| FileIntent {
                path: f.path.clone(),
                before: f.before,
                after: f.after,
            })
            .collect();
        e.with_on_disk(format!(
            "{}; the {what} of transaction {txn} is not recorded: the next kubeharden run's \
             recovery finds its files as they are and records it",
            self.on_disk_now(&intents)
        ))
    }

    /// The file is at its before content: if history does not end there (a rollback or revert
    /// was cut between its write and its records), record the before content again.
    fn record_back_at_before(&mut self, f: &TxnFile, txn: TxnId, at: i64) -> Result<()> {
        let last = self.catalog.last_version(&f.path)?.map(|v| v.state);
        if last.is_some() && last != Some(f.before) {
            self.log_version(f.path.clone(), f.before, Origin::Recovery, txn, at, at)?;
        }
        Ok(())
    }
}

/// A file of an incomplete transaction could not be read: an I/O error, not a conflict.
fn unread(e: Error, txn: TxnId) -> Error {
    e.with_on_disk(format!(
        "no manifest was changed and nothing was marked: transaction {txn} stays incomplete \
         until a recovery can read its files"
    ))
}
