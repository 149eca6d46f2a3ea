//! The one error type the engine and the commands return, and its exit code (cli.md).

use std::io;

/// Every failure carries the exit code the contract gives it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad arguments or bad input; nothing was changed. Exit 2.
    #[error("{0}")]
    Usage(String),
    /// The change failed its gate (or recovery met a conflict) and the file is as before. Exit 3.
    #[error("{0}")]
    RolledBack(String),
    /// A rollback failed: the message says what to run by hand. Exit 4.
    #[error("{0}")]
    Critical(String),
    /// The state lock stayed busy past `--lock-timeout`. Exit 5.
    #[error("{0}")]
    LockBusy(String),
    /// Journal corruption before its tail, an object whose hash does not match, a catalog that
    /// disagrees with the journal, a symlink planted in the state dir. Exit 6.
    #[error("{0}")]
    Integrity(String),
    /// SIGINT, SIGTERM or SIGHUP stopped the command; the message says what was done.
    /// Exit 128 + the signal (130, 143, 129).
    #[error("{message}")]
    Interrupted { signal: i32, message: String },
    /// An I/O failure outside a transaction (nothing was changed). Exit 2.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Io { .. } => 2,
            Error::RolledBack(_) => 3,
            Error::Critical(_) => 4,
            Error::LockBusy(_) => 5,
            Error::Integrity(_) => 6,
            Error::Interrupted { signal, .. } => 128 + signal,
        }
    }

    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    pub fn integrity(msg: impl Into<String>) -> Self {
        Error::Integrity(msg.into())
    }
}

/// Attach what was being done to an `io::Error`.
pub trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| {
            if source.raw_os_error() == Some(nix::libc::ELOOP) {
                Error::Integrity(format!(
                    "{}: refusing to follow a symbolic link (someone planted it; remove it and rerun)",
                    what()
                ))
            } else {
                Error::Io {
                    context: what(),
                    source,
                }
            }
        })
    }
}
