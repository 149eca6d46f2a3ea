use crate::error::{Error, IoContext, Result};
use crate::failpoint;
use crate::fsys::{Fs, Kind};
use crate::journal::record::{hash_hex, Hash};
use std::collections::HashSet;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const ZSTD_LEVEL: i32 = 3;
/// Manifests are kilobytes; anything this large is not something we stored.
const MAX_OBJECT_BYTES: usize = 64 << 20;

/// Presence rule: an object file is trusted only once it is known durable. It is when this
/// process wrote it (data fsync, rename, directory fsync all returned Ok), re-synced and checked
/// it (see [`ObjectStore::put`]), or when a durable journal record refers to it: the protocol
/// stores an object before it writes any record naming it ([`ObjectStore::put_recorded`]). A file
/// left by a run whose fsync failed is therefore never trusted as it is.
pub struct ObjectStore {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    /// Objects this process made or found durable.
    synced: Mutex<HashSet<Hash>>,
    /// `objects/` itself was fsynced by this process (after which every fan-out directory
    /// entry in it that existed then is durable).
    root_synced: AtomicBool,
}

pub fn hash_bytes(bytes: &[u8]) -> Hash {
    *blake3::hash(bytes).as_bytes()
}

impl ObjectStore {
    pub fn new(fs: Arc<dyn Fs>, dir: PathBuf) -> Self {
        ObjectStore {
            fs,
            dir,
            synced: Mutex::new(HashSet::new()),
            root_synced: AtomicBool::new(false),
        }
    }

    fn subdir(&self, hex: &str) -> PathBuf {
        self.dir.join(&hex[..2])
    }

    pub fn path_of(&self, hash: &Hash) -> PathBuf {
        let hex = hash_hex(hash);
        self.subdir(&hex).join(&hex[2..])
    }

    /// The fan-out directory must be a real directory: the store never follows a planted link.
    fn check_subdir(&self, hash: &Hash) -> Result<bool> {
        let sub = self.subdir(&hash_hex(hash));
        match self.fs.metadata(&sub) {
            Ok(m) if m.kind == Kind::Dir => Ok(true),
            Ok(m) if m.kind == Kind::Symlink => Err(Error::integrity(format!(
                "{} is a symbolic link; kubeharden never follows links in its state directory \
                 (someone planted it). Remove it and rerun",
                sub.display()
            ))),
            Ok(_) => Err(Error::integrity(format!(
                "{} is not a directory",
                sub.display()
            ))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).ctx(|| format!("stat {}", sub.display())),
        }
    }

    fn exists(&self, hash: &Hash) -> Result<bool> {
        if !self.check_subdir(hash)? {
            return Ok(false);
        }
        let path = self.path_of(hash);
        match self.fs.metadata(&path) {
            Ok(m) if m.kind == Kind::File => Ok(true),
            Ok(_) => Err(Error::integrity(format!(
                "object {} is not a regular file; run 'kubeharden verify'",
                path.display()
            ))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).ctx(|| format!("checking object {}", path.display())),
        }
    }

    fn is_synced(&self, hash: &Hash) -> bool {
        self.synced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(hash)
    }

    fn mark_synced(&self, hash: Hash) {
        self.synced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hash);
    }

    /// Store `bytes` durably (temp, fsync, rename, fsync dir) unless present; returns the key.
    /// An object file that is there but not known durable (an earlier run may have died, or
    /// seen an fsync fail, before its rename reached the disk) is checked against its hash and
    /// fsynced with its directories before it is trusted; one that does not check is rewritten.
    pub fn put(&self, bytes: &[u8]) -> Result<Hash> {
        let hash = hash_bytes(bytes);
        if self.is_synced(&hash) && self.exists(&hash)? {
            return Ok(hash);
        }
        if self.exists(&hash)? {
            if self.get(&hash).is_ok() {
                self.resync(&hash)?;
                self.mark_synced(hash);
                return Ok(hash);
            }
            let path = self.path_of(&hash);
            self.fs
                .remove_file(&path)
                .ctx(|| format!("removing damaged object {}", path.display()))?;
        }
        self.write_new(bytes, &hash)?;
        self.mark_synced(hash);
        Ok(hash)
    }

    /// [`put`](ObjectStore::put) for a content a durable journal record already names: the
    /// object was durable before that record was written, so it is trusted if it is there (and
    /// written again if it is missing).
    pub fn put_recorded(&self, bytes: &[u8]) -> Result<Hash> {
        let hash = hash_bytes(bytes);
        if self.exists(&hash)? {
            self.mark_synced(hash);
            return Ok(hash);
        }
        self.put(bytes)
    }

    /// fsync an existing object, its fan-out directory and the objects directory.
    fn resync(&self, hash: &Hash) -> Result<()> {
        let path = self.path_of(hash);
        let sub = self.subdir(&hash_hex(hash));
        self.fs
            .open_append(&path)
            .and_then(|mut f| f.sync())
            .ctx(|| format!("fsync object {}", path.display()))?;
        self.fs
            .sync_dir(&sub)
            .ctx(|| format!("fsync {}", sub.display()))?;
        self.sync_root(false)
    }

    /// fsync `objects/` if a fan-out directory was just created in it (`created`) or this
    /// process has not yet: an earlier run may have created one and failed to sync it.
    fn sync_root(&self, created: bool) -> Result<()> {
        if created || !self.root_synced.load(Ordering::Relaxed) {
            self.fs
                .sync_dir(&self.dir)
                .ctx(|| format!("fsync {}", self.dir.display()))?;
            self.root_synced.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    fn write_new(&self, bytes: &[u8], hash: &Hash) -> Result<()> {
        let hex = hash_hex(hash);
        let sub = self.subdir(&hex);
        match self.fs.create_dir(&sub, 0o700) {
            Ok(()) => self.sync_root(true)?,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => self.sync_root(false)?,
            Err(e) => return Err(e).ctx(|| format!("creating {}", sub.display())),
        }
        let compressed =
            zstd::bulk::compress(bytes, ZSTD_LEVEL).ctx(|| "compressing an object".to_string())?;
        // We hold the state lock, so a temp with this name can only be a crashed run's leftover.
        let temp = temp_path(&sub, &hex);
        let _ = self.fs.remove_file(&temp);
        let write = || -> io::Result<()> {
            let mut f = self.fs.create_new(&temp, 0o600)?;
            f.write_all(&compressed)?;
            f.sync()
        };
        if let Err(e) = write() {
            // Leave no temp behind (a later recovery would remove it too).
            let _ = self.fs.remove_file(&temp);
            return Err(e).ctx(|| format!("writing object {}", temp.display()));
        }
        failpoint::hit("store.object_temp_synced");
        let dest = self.path_of(hash);
        self.fs
            .rename(&temp, &dest)
            .ctx(|| format!("renaming object into {}", dest.display()))?;
        failpoint::hit("store.object_renamed");
        self.fs
            .sync_dir(&sub)
            .ctx(|| format!("fsync {}", sub.display()))
    }

    /// Temp files (`objects/XX/.<hash>.tmp`) a run cut short while storing an object left.
    pub fn leftover_temps(&self) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let subs = match self.fs.list_dir(&self.dir) {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).ctx(|| format!("listing {}", self.dir.display())),
        };
        for name in subs {
            let sub = self.dir.join(&name);
            match self.fs.metadata(&sub) {
                Ok(m) if m.kind == Kind::Dir => {}
                _ => continue,
            }
            let names = self
                .fs
                .list_dir(&sub)
                .ctx(|| format!("listing {}", sub.display()))?;
            out.extend(
                names
                    .into_iter()
                    .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
                    .map(|n| sub.join(n)),
            );
        }
        out.sort();
        Ok(out)
    }

    /// Remove the [`leftover_temps`](ObjectStore::leftover_temps) (under the state lock, no
    /// other run can be writing them); returns what was removed.
    pub fn remove_leftover_temps(&self) -> Result<Vec<PathBuf>> {
        let temps = self.leftover_temps()?;
        let mut dirs = Vec::new();
        for t in &temps {
            self.fs
                .remove_file(t)
                .ctx(|| format!("removing leftover temp {}", t.display()))?;
            if let Some(d) = t.parent() {
                dirs.push(d.to_path_buf());
            }
        }
        dirs.dedup();
        for d in dirs {
            self.fs
                .sync_dir(&d)
                .ctx(|| format!("fsync {}", d.display()))?;
        }
        Ok(temps)
    }

    /// Read an object back; its content must hash to its name.
    pub fn get(&self, hash: &Hash) -> Result<Vec<u8>> {
        self.check_subdir(hash)?;
        let path = self.path_of(hash);
        let raw = self
            .fs
            .read(&path)
            .ctx(|| format!("reading object {}", path.display()))?;
        let bytes = decompress(&raw).map_err(|e| {
            Error::integrity(format!(
                "object {} is not a valid zstd frame ({e}); run 'kubeharden verify'",
                path.display()
            ))
        })?;
        if hash_bytes(&bytes) != *hash {
            return Err(Error::integrity(format!(
                "object {} does not match its hash (content changed on disk); run 'kubeharden verify'",
                path.display()
            )));
        }
        Ok(bytes)
    }

    /// Delete an object (`prune`), and fsync its directory. Returns the bytes it took in the
    /// store, or `None` when it was not there (an earlier prune, cut short, already removed it).
    pub fn remove(&self, hash: &Hash) -> Result<Option<u64>> {
        if !self.exists(hash)? {
            return Ok(None);
        }
        let path = self.path_of(hash);
        let len = self.stored_size(hash)?;
        match self.fs.remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).ctx(|| format!("removing object {}", path.display())),
        }
        self.synced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(hash);
        let sub = self.subdir(&hash_hex(hash));
        self.fs
            .sync_dir(&sub)
            .ctx(|| format!("fsync {}", sub.display()))?;
        Ok(Some(len))
    }

    /// Whether the object is in the store (a regular file under its name).
    pub fn contains(&self, hash: &Hash) -> Result<bool> {
        self.exists(hash)
    }

    pub fn stored_size(&self, hash: &Hash) -> Result<u64> {
        let path = self.path_of(hash);
        Ok(self
            .fs
            .metadata(&path)
            .ctx(|| format!("stat object {}", path.display()))?
            .len)
    }
}

fn temp_path(sub: &Path, hex: &str) -> PathBuf {
    sub.join(format!(".{}.tmp", &hex[2..]))
}

fn decompress(raw: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut dec = zstd::stream::read::Decoder::new(raw)?;
    let limit = MAX_OBJECT_BYTES as u64 + 1;
    io::copy(&mut io::Read::take(&mut dec, limit), &mut out)?;
    if out.len() > MAX_OBJECT_BYTES {
        return Err(io::Error::new(ErrorKind::InvalidData, "object too large"));
    }
    Ok(out)
}
