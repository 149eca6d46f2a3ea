//! Test-only [`Fs`] wrappers around the simulator: one that breaks the protocol on purpose,
//! one that records which file every fsync is for.

use crate::harness::MANIFESTS;
use kubeharden::fsys::sim::SimFs;
use kubeharden::fsys::{Fs, FsFile, Meta};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The protocol without the directory fsync: `sync_dir` of the manifests dir does nothing.
/// Everything else goes to the simulator unchanged.
pub struct NoManifestDirSync(pub SimFs);

pub fn no_manifest_dir_sync(sim: &SimFs) -> Arc<dyn Fs> {
    Arc::new(NoManifestDirSync(sim.clone()))
}

/// Records the path of every file fsync, in order (to aim `SimFs::fail_sync_on`).
pub struct TraceSyncs {
    inner: SimFs,
    pub log: Arc<Mutex<Vec<PathBuf>>>,
}

impl TraceSyncs {
    pub fn new(inner: SimFs) -> Arc<TraceSyncs> {
        Arc::new(TraceSyncs {
            inner,
            log: Arc::default(),
        })
    }

    pub fn syncs(&self) -> Vec<PathBuf> {
        self.log.lock().unwrap().clone()
    }
}

struct TracedFile {
    inner: Box<dyn FsFile>,
    path: PathBuf,
    log: Arc<Mutex<Vec<PathBuf>>>,
}

impl FsFile for TracedFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.log.lock().unwrap().push(self.path.clone());
        self.inner.sync()
    }
    fn set_mode(&mut self, mode: u32) -> io::Result<()> {
        self.inner.set_mode(mode)
    }
    fn set_owner(&mut self, uid: u32, gid: u32) -> io::Result<()> {
        self.inner.set_owner(uid, gid)
    }
}

/// Delegates every `Fs` method to `self.inner()`, except those the caller writes itself.
macro_rules! delegate_fs {
    ($($own:item)*) => {
        fn read(&self, p: &Path) -> io::Result<Vec<u8>> { self.inner().read(p) }
        fn metadata(&self, p: &Path) -> io::Result<Meta> { self.inner().metadata(p) }
        fn list_dir(&self, d: &Path) -> io::Result<Vec<String>> { self.inner().list_dir(d) }
        fn create_dir(&self, p: &Path, m: u32) -> io::Result<()> { self.inner().create_dir(p, m) }
        fn rename(&self, f: &Path, t: &Path) -> io::Result<()> { self.inner().rename(f, t) }
        fn remove_file(&self, p: &Path) -> io::Result<()> { self.inner().remove_file(p) }
        fn truncate(&self, p: &Path, l: u64) -> io::Result<()> { self.inner().truncate(p, l) }
        $($own)*
    };
}

impl NoManifestDirSync {
    fn inner(&self) -> &SimFs {
        &self.0
    }
}

impl Fs for NoManifestDirSync {
    delegate_fs! {
        fn create_new(&self, p: &Path, m: u32) -> io::Result<Box<dyn FsFile>> {
            self.0.create_new(p, m)
        }
        fn open_append(&self, p: &Path) -> io::Result<Box<dyn FsFile>> {
            self.0.open_append(p)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            if dir == Path::new(MANIFESTS) {
                return Ok(()); // the missing fsync
            }
            self.0.sync_dir(dir)
        }
    }
}

impl TraceSyncs {
    fn inner(&self) -> &SimFs {
        &self.inner
    }

    fn traced(&self, path: &Path, f: Box<dyn FsFile>) -> Box<dyn FsFile> {
        Box::new(TracedFile {
            inner: f,
            path: path.to_path_buf(),
            log: self.log.clone(),
        })
    }
}

impl Fs for TraceSyncs {
    delegate_fs! {
        fn create_new(&self, p: &Path, m: u32) -> io::Result<Box<dyn FsFile>> {
            Ok(self.traced(p, self.inner.create_new(p, m)?))
        }
        fn open_append(&self, p: &Path) -> io::Result<Box<dyn FsFile>> {
            Ok(self.traced(p, self.inner.open_append(p)?))
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            self.inner.sync_dir(dir)
        }
    }
}
