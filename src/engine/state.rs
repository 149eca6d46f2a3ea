//! The state directory (transaction-protocol.md, "The state directory"): its layout, its
//! permissions, its lock. Nothing under it is ever followed through a symlink.

use crate::error::{Error, IoContext, Result};
use crate::fsys::{Fs, Kind};
use std::fs::{File, TryLockError};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct StatePaths {
    pub root: PathBuf,
    pub lock: PathBuf,
    pub journal: PathBuf,
    pub objects: PathBuf,
    pub catalog: PathBuf,
}

impl StatePaths {
    pub fn new(root: &Path) -> StatePaths {
        StatePaths {
            root: root.to_path_buf(),
            lock: root.join("lock"),
            journal: root.join("journal"),
            objects: root.join("objects"),
            catalog: root.join("catalog.sqlite"),
        }
    }
}

fn planted(path: &Path) -> Error {
    Error::integrity(format!(
        "{} is a symbolic link; kubeharden never follows links in its state directory \
         (someone planted it). Remove it and rerun",
        path.display()
    ))
}

/// Make sure `path` is a real directory (creating it 0700 if `create`); refuse a symlink.
fn ensure_dir(fs: &dyn Fs, path: &Path, create: bool) -> Result<bool> {
    match fs.metadata(path) {
        Ok(m) if m.kind == Kind::Dir => Ok(true),
        Ok(m) if m.kind == Kind::Symlink => Err(planted(path)),
        Ok(_) => Err(Error::integrity(format!(
            "{} should be a directory",
            path.display()
        ))),
        Err(e) if e.kind() == ErrorKind::NotFound && create => {
            fs.create_dir(path, 0o700)
                .ctx(|| format!("creating {}", path.display()))?;
            if let Some(parent) = path.parent() {
                fs.sync_dir(parent)
                    .ctx(|| format!("fsync {}", parent.display()))?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).ctx(|| format!("stat {}", path.display())),
    }
}

/// Check (and with `create`, build) the layout. Returns false when there is no state yet.
pub fn prepare(fs: &dyn Fs, paths: &StatePaths, create: bool) -> Result<bool> {
    if !ensure_dir(fs, &paths.root, create)? {
        return Ok(false);
    }
    for d in [&paths.journal, &paths.objects] {
        if !ensure_dir(fs, d, create)? {
            return Ok(false);
        }
    }
    for f in [&paths.catalog, &paths.lock] {
        if let Ok(m) = fs.metadata(f) {
            if m.kind == Kind::Symlink {
                return Err(planted(f));
            }
        }
    }
    Ok(true)
}

/// The exclusive state lock; released when dropped (or when the process dies).
pub struct StateLock {
    _file: File,
}

/// Take the lock, waiting up to `timeout` (zero: fail at once). Exit 5 when busy.
pub fn lock(paths: &StatePaths, timeout: Duration) -> Result<StateLock> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(&paths.lock)
        .ctx(|| format!("opening lock {}", paths.lock.display()))?;
    let deadline = Instant::now() + timeout;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(StateLock { _file: file }),
            Err(TryLockError::WouldBlock) => {
                if Instant::now() >= deadline {
                    return Err(Error::LockBusy(format!(
                        "the state lock {} is held by another kubeharden process \
                         (waited {}s; raise --lock-timeout to wait longer)",
                        paths.lock.display(),
                        timeout.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).ctx(|| format!("locking {}", paths.lock.display()))
            }
        }
    }
}

/// Take the lock only if nobody holds it (read-only commands never wait).
pub fn try_lock(paths: &StatePaths) -> Result<Option<StateLock>> {
    match lock(paths, Duration::ZERO) {
        Ok(l) => Ok(Some(l)),
        Err(Error::LockBusy(_)) => Ok(None),
        Err(e) => Err(e),
    }
}
