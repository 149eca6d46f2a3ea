use crate::error::{Error, IoContext, Result};
use crate::failpoint;
use crate::fsys::{Fs, Kind};
use crate::journal::record::{hash_hex, Hash};
use std::io::{self, ErrorKind};
use std::path::PathBuf;
use std::sync::Arc;

const ZSTD_LEVEL: i32 = 3;
/// Manifests are kilobytes; anything this large is not something we stored.
const MAX_OBJECT_BYTES: usize = 64 << 20;

pub struct ObjectStore {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
}

pub fn hash_bytes(bytes: &[u8]) -> Hash {
    *blake3::hash(bytes).as_bytes()
}

impl ObjectStore {
    pub fn new(fs: Arc<dyn Fs>, dir: PathBuf) -> Self {
        ObjectStore { fs, dir }
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

    /// Store `bytes` durably (temp, fsync, rename, fsync dir) unless present; returns the key.
    pub fn put(&self, bytes: &[u8]) -> Result<Hash> {
        let hash = hash_bytes(bytes);
        if self.exists(&hash)? {
            return Ok(hash);
        }
        let hex = hash_hex(&hash);
        let sub = self.subdir(&hex);
        match self.fs.create_dir(&sub, 0o700) {
            Ok(()) => self
                .fs
                .sync_dir(&self.dir)
                .ctx(|| format!("fsync {}", self.dir.display()))?,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).ctx(|| format!("creating {}", sub.display())),
        }
        let compressed =
            zstd::bulk::compress(bytes, ZSTD_LEVEL).ctx(|| "compressing an object".to_string())?;
        // We hold the state lock, so a temp with this name can only be a crashed run's leftover.
        let temp = sub.join(format!(".{}.tmp", &hex[2..]));
        let _ = self.fs.remove_file(&temp);
        let write = || -> io::Result<()> {
            let mut f = self.fs.create_new(&temp, 0o600)?;
            f.write_all(&compressed)?;
            f.sync()
        };
        write().ctx(|| format!("writing object {}", temp.display()))?;
        failpoint::hit("store.object_temp_synced");
        let dest = self.path_of(&hash);
        self.fs
            .rename(&temp, &dest)
            .ctx(|| format!("renaming object into {}", dest.display()))?;
        failpoint::hit("store.object_renamed");
        self.fs
            .sync_dir(&sub)
            .ctx(|| format!("fsync {}", sub.display()))?;
        Ok(hash)
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
