//! What a run of batches did, as a whole: every transaction, what did not start after an
//! error, and the one exit code that tells the truth about all of it. `remediate` uses it, and
//! so does any command that applies a [`super::Plan`] (such as `apply`).

use super::Item;
use crate::engine::txn::{TxnReport, TxnStatus};
use crate::error::Error;

/// What happened to one transaction of the run.
pub struct Attempt {
    pub report: TxnReport,
    pub path: String,
    pub checks: Vec<&'static str>,
    pub flags: Vec<String>,
    pub gate: serde_json::Value,
}

/// Work the run never got to, because an earlier step failed.
#[derive(Debug, Clone)]
pub struct NotStarted {
    /// The manifest, or the file a chmod/chown was for.
    pub path: String,
    pub checks: Vec<&'static str>,
}

/// The error that stopped the run, and where.
#[derive(Debug)]
pub struct Stopped {
    /// The manifest (or file) being worked on when it happened.
    pub path: String,
    pub checks: Vec<&'static str>,
    /// The transaction the failed step had begun (and, as its error says, rolled back or left
    /// to recovery), when it got that far.
    pub txn: Option<u64>,
    pub error: Error,
}

#[derive(Default)]
pub struct Outcome {
    pub attempts: Vec<Attempt>,
    pub applied: Vec<&'static str>,
    pub rolled_back: Vec<(&'static str, String)>,
    pub notes: Vec<String>,
    pub critical: Option<String>,
    /// The error that ended the run early, if one did.
    pub stopped: Option<Stopped>,
    /// What was planned after the point where the run stopped.
    pub not_started: Vec<NotStarted>,
}

/// What became of one check of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckFate {
    /// Changed, in transaction `txn`.
    Committed(u64),
    /// Already as the fix wants it; nothing written.
    Unchanged,
    /// Its transaction `txn` was rolled back for `reason`.
    RolledBack(Option<u64>, String),
    /// Its rollback failed (CRITICAL).
    RollbackFailed(Option<u64>),
    /// The error that stopped the run happened on it (in transaction `txn` if one began).
    Failed(Option<u64>, String),
    /// The run stopped before it.
    NotStarted,
    /// No transaction touched it (e.g. a file fix reported as a note).
    NotApplied,
}

/// Exit codes that keep their meaning even after other transactions committed: CRITICAL, an
/// I/O error (its message says what is on disk), an interrupting signal.
fn keeps_own_code(code: i32) -> bool {
    code == 4 || code == 7 || code >= 128
}

fn severity(s: TxnStatus) -> u8 {
    match s {
        TxnStatus::Noop => 0,
        TxnStatus::Committed => 1,
        TxnStatus::RolledBack => 2,
        TxnStatus::RollbackFailed => 3,
    }
}

impl Outcome {
    /// Transactions that committed (ids), in order.
    pub fn committed(&self) -> Vec<u64> {
        self.attempts
            .iter()
            .filter(|a| a.report.status == TxnStatus::Committed)
            .filter_map(|a| a.report.txn)
            .collect()
    }

    fn any(&self, s: TxnStatus) -> bool {
        self.attempts.iter().any(|a| a.report.status == s)
    }

    /// Whether any transaction began (committed, rolled back, or the one an error stopped).
    pub fn wrote_anything(&self) -> bool {
        self.attempts.iter().any(|a| a.report.txn.is_some())
            || self.stopped.as_ref().is_some_and(|s| s.txn.is_some())
    }

    /// 4 if a rollback failed; after an error, the error's code if nothing was written yet,
    /// else 3 (some committed or rolled back, the rest did not start: the JSON says which) unless
    /// the error's own code still holds (4, 7, signals); else 3 if any transaction rolled back;
    /// else 0.
    pub fn exit_code(&self) -> i32 {
        if self.critical.is_some() || self.any(TxnStatus::RollbackFailed) {
            return 4;
        }
        if let Some(s) = &self.stopped {
            let own = s.error.exit_code();
            return if !self.wrote_anything() || keeps_own_code(own) {
                own
            } else {
                3
            };
        }
        if self.any(TxnStatus::RolledBack) || !self.rolled_back.is_empty() {
            3
        } else {
            0
        }
    }

    /// The fate of check `id`: its last transaction decides (a bisected batch retries halves).
    pub fn fate(&self, id: &str) -> CheckFate {
        if let Some(s) = &self.stopped {
            if s.checks.contains(&id) && !self.attempts.iter().any(|a| a.checks.contains(&id)) {
                // A signal stops the run before the step: it never started.
                if matches!(s.error, Error::Interrupted { .. }) && s.txn.is_none() {
                    return CheckFate::NotStarted;
                }
                return CheckFate::Failed(s.txn, s.error.to_string());
            }
        }
        if self.not_started.iter().any(|n| n.checks.contains(&id)) {
            return CheckFate::NotStarted;
        }
        // Per file its last transaction decides (a bisected batch retries halves on the same
        // manifest); across files (a chmod of several) the worst one.
        let mine: Vec<&Attempt> = self
            .attempts
            .iter()
            .filter(|a| a.checks.contains(&id))
            .collect();
        let last_per_path = mine
            .iter()
            .enumerate()
            .filter(|(i, a)| !mine[i + 1..].iter().any(|b| b.path == a.path))
            .map(|(_, a)| *a);
        let Some(a) = last_per_path.max_by_key(|a| severity(a.report.status)) else {
            return CheckFate::NotApplied;
        };
        match a.report.status {
            TxnStatus::Committed => CheckFate::Committed(a.report.txn.unwrap_or_default()),
            TxnStatus::Noop => CheckFate::Unchanged,
            TxnStatus::RolledBack => CheckFate::RolledBack(a.report.txn, a.report.reason.clone()),
            TxnStatus::RollbackFailed => CheckFate::RollbackFailed(a.report.txn),
        }
    }

    /// Record the error that stopped the run at `path` (checks `ids`); `txn` is the
    /// transaction the failed step began, if any.
    pub fn stop(&mut self, path: &str, ids: Vec<&'static str>, txn: Option<u64>, error: Error) {
        self.stopped = Some(Stopped {
            path: path.to_string(),
            checks: ids,
            txn,
            error,
        });
    }

    /// Everything planned but never reached.
    pub fn skip_rest(&mut self, path: &str, items: &[Item]) {
        if !items.is_empty() {
            self.not_started.push(NotStarted {
                path: path.to_string(),
                checks: items.iter().map(|i| i.id).collect(),
            });
        }
    }
}

impl CheckFate {
    /// The word for JSON and text.
    pub fn name(&self) -> &'static str {
        match self {
            CheckFate::Committed(_) => "committed",
            CheckFate::Unchanged => "unchanged",
            CheckFate::RolledBack(..) => "rolled_back",
            CheckFate::RollbackFailed(_) => "rollback_failed",
            CheckFate::Failed(..) => "failed",
            CheckFate::NotStarted => "not_started",
            CheckFate::NotApplied => "not_applied",
        }
    }

    /// The transaction it ended in, if any.
    pub fn txn(&self) -> Option<u64> {
        match self {
            CheckFate::Committed(t) => Some(*t),
            CheckFate::RolledBack(t, _)
            | CheckFate::RollbackFailed(t)
            | CheckFate::Failed(t, _) => *t,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::txn::TxnReport;

    fn attempt(txn: u64, status: TxnStatus, checks: &[&'static str]) -> Attempt {
        Attempt {
            report: TxnReport {
                txn: Some(txn),
                status,
                files: Vec::new(),
                reason: if status == TxnStatus::RolledBack {
                    "not healthy".into()
                } else {
                    String::new()
                },
            },
            path: "/m/x.yaml".into(),
            checks: checks.to_vec(),
            flags: Vec::new(),
            gate: serde_json::Value::Null,
        }
    }

    #[test]
    fn item3_rolled_back_transaction_never_exits_0() {
        let mut o = Outcome::default();
        o.attempts
            .push(attempt(1, TxnStatus::RolledBack, &["1.1.13"]));
        assert_eq!(o.exit_code(), 3);
        assert_eq!(o.fate("1.1.13").name(), "rolled_back");
    }

    #[test]
    fn item2_error_after_commits_is_not_nothing_changed() {
        let mut o = Outcome::default();
        o.attempts
            .push(attempt(1, TxnStatus::Committed, &["1.2.15"]));
        o.stop("/m/s.yaml", vec!["1.4.1"], None, Error::usage("symlink"));
        assert_eq!(o.exit_code(), 3, "2 would say nothing changed");
        assert_eq!(o.fate("1.4.1"), CheckFate::Failed(None, "symlink".into()));
        assert_eq!(o.fate("1.2.15"), CheckFate::Committed(1));
        let mut io = Outcome::default();
        io.attempts
            .push(attempt(1, TxnStatus::Committed, &["1.2.15"]));
        io.stop(
            "/m/s.yaml",
            vec![],
            Some(2),
            Error::Io {
                context: "x".into(),
                source: std::io::Error::from_raw_os_error(5),
            },
        );
        // An I/O error keeps exit 7 (its message says what is on disk); while Error::Io is still
        // exit 2 ("nothing changed") the run reports 3.
        let want = if io_code() == 7 { 7 } else { 3 };
        assert_eq!(io.exit_code(), want);
        // Before anything was written the error's own code stands.
        let mut first = Outcome::default();
        first.stop("/m/s.yaml", vec![], None, Error::usage("bad"));
        assert_eq!(first.exit_code(), 2);
    }

    fn io_code() -> i32 {
        Error::Io {
            context: String::new(),
            source: std::io::Error::from_raw_os_error(5),
        }
        .exit_code()
    }
}
