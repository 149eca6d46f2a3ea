//! The narrow file-system interface every durable step of the engine goes through.
//!
//! Two implementations: [`real::RealFs`] (POSIX calls, `O_NOFOLLOW` everywhere) and
//! [`sim::SimFs`], an in-memory file system that keeps what was fsynced apart from what was
//! only written, so tests can cut the power at any operation and look at what survives
//! (the idea of SQLite's crash VFS and redb's crash backend).

pub mod fault;
pub mod real;
pub mod sim;

use std::io;
use std::path::Path;

/// What `lstat` says about a path, reduced to what the engine needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub len: u64,
    /// Permission bits only (`& 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time, milliseconds since the epoch.
    pub mtime_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// An open file handle for writing.
pub trait FsFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// fsync: once it returns Ok, everything written so far survives a power cut.
    fn sync(&mut self) -> io::Result<()>;
    fn set_mode(&mut self, mode: u32) -> io::Result<()>;
    fn set_owner(&mut self, uid: u32, gid: u32) -> io::Result<()>;
}

/// All paths are absolute. No operation follows a symlink in the last component.
pub trait Fs: Send + Sync {
    /// Read a whole regular file; a symlink is an error (`ELOOP`).
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// `lstat`.
    fn metadata(&self, path: &Path) -> io::Result<Meta>;
    /// Names of the entries of a directory, in no particular order.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// `mkdir` with this mode; `AlreadyExists` if present.
    fn create_dir(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// `open(O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW, mode)`.
    fn create_new(&self, path: &Path, mode: u32) -> io::Result<Box<dyn FsFile>>;
    /// `open(O_WRONLY|O_APPEND|O_NOFOLLOW)` of an existing file.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// `rename(2)`: atomic, but durable only after the directory is fsynced.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// fsync the directory itself, making creates, renames and removals in it durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Cut a file to `len` bytes and fsync it.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
}
