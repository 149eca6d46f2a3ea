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
    /// An operating-system error before any manifest was touched (or in a command that touches
    /// none). Exit 7.
    #[error("{context}: {}; no manifest was changed", errno_text(.source))]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// An operating-system error after a transaction began writing: `on_disk` says exactly what
    /// the files hold now and what the journal records. Exit 7.
    #[error("{context}: {}; {on_disk}", errno_text(.source))]
    IoChanged {
        context: String,
        #[source]
        source: io::Error,
        on_disk: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The exit code of an operating-system error (cli.md): 7, apart from bad input.
pub const EXIT_IO: i32 = 7;

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::RolledBack(_) => 3,
            Error::Critical(_) => 4,
            Error::LockBusy(_) => 5,
            Error::Integrity(_) => 6,
            Error::Io { .. } | Error::IoChanged { .. } => EXIT_IO,
            Error::Interrupted { signal, .. } => 128 + signal,
        }
    }

    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    pub fn integrity(msg: impl Into<String>) -> Self {
        Error::Integrity(msg.into())
    }

    /// Whether this is an operating-system error (exit 7).
    pub fn is_io(&self) -> bool {
        matches!(self, Error::Io { .. } | Error::IoChanged { .. })
    }

    /// The error without what it means for the manifests (for a warning about the catalog,
    /// whose failure changes nothing).
    pub fn what(&self) -> String {
        match self {
            Error::Io { context, source }
            | Error::IoChanged {
                context, source, ..
            } => {
                format!("{context}: {}", errno_text(source))
            }
            other => other.to_string(),
        }
    }

    /// An I/O error restated with what is on disk now; other errors unchanged.
    pub fn with_on_disk(self, on_disk: String) -> Error {
        match self {
            Error::Io { context, source }
            | Error::IoChanged {
                context, source, ..
            } => Error::IoChanged {
                context,
                source,
                on_disk,
            },
            other => other,
        }
    }
}

/// "No space left on device (ENOSPC)": the text and the errno's name, so a message can be
/// searched for either.
pub fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            let text = e.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_string();
            format!("{text} ({:?})", nix::errno::Errno::from_raw(n))
        }
        None => e.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item9_io_errors_exit_7_and_name_the_errno() {
        let e = Error::Io {
            context: "writing /etc/kubernetes/manifests/x.yaml".into(),
            source: io::Error::from_raw_os_error(nix::libc::ENOSPC),
        };
        assert_eq!(e.exit_code(), 7);
        let msg = e.to_string();
        assert!(msg.contains("/etc/kubernetes/manifests/x.yaml"), "{msg}");
        assert!(msg.contains("ENOSPC"), "{msg}");
        assert!(msg.contains("No space left on device"), "{msg}");
        assert!(msg.contains("no manifest was changed"), "{msg}");
        let changed = e.with_on_disk("x.yaml holds its before content".into());
        assert_eq!(changed.exit_code(), 7);
        assert!(changed
            .to_string()
            .ends_with("x.yaml holds its before content"));
        assert_eq!(Error::usage("bad flag").exit_code(), 2);
    }
}
