//! [`Fs`] on the real file system.

use super::{Fs, FsFile, Kind, Meta};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

struct RealFile(File);

impl FsFile for RealFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_all()
    }
    fn set_mode(&mut self, mode: u32) -> io::Result<()> {
        self.0
            .set_permissions(std::fs::Permissions::from_mode(mode))
    }
    fn set_owner(&mut self, uid: u32, gid: u32) -> io::Result<()> {
        std::os::unix::fs::fchown(&self.0, Some(uid), Some(gid))
    }
}

fn nofollow_open(path: &Path, flags: OFlag, mode: u32) -> io::Result<File> {
    let fd = nix::fcntl::open(
        path,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )
    .map_err(io::Error::from)?;
    // SAFETY: `open` just returned this descriptor and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

impl Fs for RealFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut f = nofollow_open(path, OFlag::O_RDONLY, 0)?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn metadata(&self, path: &Path) -> io::Result<Meta> {
        let m = std::fs::symlink_metadata(path)?;
        let ft = m.file_type();
        let kind = if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else {
            Kind::Other
        };
        Ok(Meta {
            kind,
            len: m.len(),
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime_ms: m.mtime() * 1000 + m.mtime_nsec() / 1_000_000,
        })
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(dir)? {
            names.push(e?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn create_dir(&self, path: &Path, mode: u32) -> io::Result<()> {
        std::fs::DirBuilder::new().mode(mode).create(path)?;
        // The umask may have masked bits off; the state dir must be exactly 0700.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }

    fn create_new(&self, path: &Path, mode: u32) -> io::Result<Box<dyn FsFile>> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc_nofollow())
            .open(path)?;
        // The umask may have masked bits off.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        Ok(Box::new(RealFile(f)))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let f = nofollow_open(path, OFlag::O_WRONLY | OFlag::O_APPEND, 0)?;
        Ok(Box::new(RealFile(f)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let f = nofollow_open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)?;
        f.sync_all()
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let f = nofollow_open(path, OFlag::O_WRONLY, 0)?;
        f.set_len(len)?;
        f.sync_all()
    }
}

fn libc_nofollow() -> i32 {
    OFlag::O_NOFOLLOW.bits() | OFlag::O_CLOEXEC.bits()
}
