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
    let file = match open_lock_rw(paths) {
        Ok(f) => f,
        Err(e) if is_not_writable(&e) => return Err(not_writable(paths, e)),
        Err(e) => return Err(e).ctx(|| format!("opening lock {}", paths.lock.display())),
    };
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

// ---------------------------------------------------------------- trust

/// Who must own the state and how: the effective user (or root), no write bits for group or
/// others.
#[derive(Debug, Clone, Copy)]
pub struct Trust {
    pub euid: u32,
    pub egid: u32,
}

impl Trust {
    pub fn of_process() -> Trust {
        Trust {
            euid: nix::unistd::geteuid().as_raw(),
            egid: nix::unistd::getegid().as_raw(),
        }
    }
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(
            || format!("uid {uid}"),
            |u| format!("uid {uid} ({})", u.name),
        )
}

fn untrusted(root: &Path, t: Trust, what: String) -> Error {
    Error::integrity(format!(
        "the state directory {root} is not trusted: {what}; whoever can write there can rewrite \
         or hide the recorded history. Nothing was read or changed. Check who changed it, then \
         fix it with: chown -R {u}:{g} {root} && chmod -R go-w {root} && chmod 700 {root}",
        root = root.display(),
        u = t.euid,
        g = t.egid,
    ))
}

/// One entry of the state: owned by the effective user (or root), not group/world-writable,
/// no link.
fn check_entry(fs: &dyn Fs, root: &Path, path: &Path, t: Trust) -> Result<()> {
    let m = match fs.metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).ctx(|| format!("stat {}", path.display())),
    };
    if m.kind == Kind::Symlink {
        return Err(planted(path));
    }
    // Root's files are as trusted as our own (root can do anything anyway).
    if m.uid != t.euid && m.uid != 0 {
        return Err(untrusted(
            root,
            t,
            format!(
                "{} is owned by {}, not by {} that runs kubeharden",
                path.display(),
                user_name(m.uid),
                user_name(t.euid)
            ),
        ));
    }
    if m.mode & 0o022 != 0 {
        return Err(untrusted(
            root,
            t,
            format!(
                "{} is writable by {} (mode {:04o})",
                path.display(),
                if m.mode & 0o002 != 0 {
                    "everyone"
                } else {
                    "its group"
                },
                m.mode
            ),
        ));
    }
    Ok(())
}

/// The directories above the state dir: a user who can rename entries in one of them can swap
/// the whole state dir. Each must be owned by root or the effective user and not writable by
/// others, unless sticky (as /tmp is: nobody may rename what they do not own there).
fn check_ancestors(fs: &dyn Fs, root: &Path, t: Trust) -> Result<()> {
    for dir in root.ancestors().skip(1) {
        let Ok(m) = fs.metadata(dir) else { continue };
        let sticky = m.mode & 0o1000 != 0;
        if m.kind == Kind::Symlink {
            // An absolute path with a link in it: the link's owner could re-point it.
            if m.uid != 0 && m.uid != t.euid {
                return Err(untrusted(
                    root,
                    t,
                    format!(
                        "{} is a symbolic link owned by {}",
                        dir.display(),
                        user_name(m.uid)
                    ),
                ));
            }
            continue;
        }
        if (m.uid != 0 && m.uid != t.euid) || (m.mode & 0o022 != 0 && !sticky) {
            return Err(untrusted(
                root,
                t,
                format!(
                    "its parent {} is owned by {} with mode {:04o}, so another user can replace \
                     the state directory",
                    dir.display(),
                    user_name(m.uid),
                    m.mode
                ),
            ));
        }
    }
    Ok(())
}

/// Refuse (exit 6) a state dir that another user could have written: the root, every entry in
/// it, the journal's segments and the object store's fan-out directories must be owned by the
/// effective user and not group/world-writable. Object files themselves are not listed (there
/// may be many): each is read back only if its content matches its hash, and the directories
/// that hold them are checked. A missing root is fine (nothing to trust yet).
pub fn check_trusted(fs: &dyn Fs, paths: &StatePaths, t: Trust) -> Result<()> {
    let root = &paths.root;
    check_ancestors(fs, root, t)?;
    if fs.metadata(root).is_err() {
        return Ok(());
    }
    check_entry(fs, root, root, t)?;
    let list = |dir: &Path| -> Result<Vec<PathBuf>> {
        match fs.list_dir(dir) {
            Ok(names) => Ok(names.into_iter().map(|n| dir.join(n)).collect()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).ctx(|| format!("listing {}", dir.display())),
        }
    };
    for entry in list(root)? {
        check_entry(fs, root, &entry, t)?;
    }
    for d in [&paths.journal, &paths.objects] {
        if fs.metadata(d).is_ok_and(|m| m.kind == Kind::Dir) {
            for entry in list(d)? {
                check_entry(fs, root, &entry, t)?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- reading without writing

/// How a read-only command holds the state.
pub enum ReadLock {
    /// The exclusive lock: nobody else is writing, and the catalog may be caught up in place.
    Exclusive(StateLock),
    /// Someone else holds the lock right now (a transaction may be in progress).
    Busy,
    /// The state dir cannot be written (read-only mount, immutable files, no permission): a
    /// shared lock where the lock file exists and can be opened, else none. Reading without it
    /// is safe: the journal is append-only and a torn tail is tolerated by every reader. The
    /// catalog is then rebuilt in memory, never written.
    ReadOnly { shared: Option<File>, why: String },
}

/// Errors that mean "this state dir is not writable by us".
fn is_not_writable(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EROFS) | Some(nix::libc::EACCES) | Some(nix::libc::EPERM)
    )
}

fn open_lock_rw(paths: &StatePaths) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(&paths.lock)
}

/// The lock for a read-only command; never waits, never fails for a read-only state dir.
pub fn read_lock(paths: &StatePaths) -> Result<ReadLock> {
    match open_lock_rw(paths) {
        Ok(file) => match file.try_lock() {
            Ok(()) => Ok(ReadLock::Exclusive(StateLock { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(ReadLock::Busy),
            Err(TryLockError::Error(e)) => {
                Err(e).ctx(|| format!("locking {}", paths.lock.display()))
            }
        },
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => Err(planted(&paths.lock)),
        Err(e) if is_not_writable(&e) => {
            let why = format!("{}: {e}", paths.lock.display());
            let shared = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
                .open(&paths.lock)
                .ok()
                .filter(|f| f.try_lock_shared().is_ok());
            Ok(ReadLock::ReadOnly { shared, why })
        }
        Err(e) => Err(e).ctx(|| format!("opening lock {}", paths.lock.display())),
    }
}

/// The error of a mutating command on a state dir it cannot write (exit 7, nothing changed).
fn not_writable(paths: &StatePaths, e: std::io::Error) -> Error {
    Error::Io {
        context: format!(
            "the state directory {} cannot be written (opening its lock {}); this command \
             records a transaction and needs it writable, while the read-only commands (history, \
             show, diff, log, status, verify, audit) work as they are",
            paths.root.display(),
            paths.lock.display()
        ),
        source: e,
    }
}
