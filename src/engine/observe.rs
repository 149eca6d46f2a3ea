//! Step 3 of the protocol: before anything is overwritten, its exact bytes are in the store.
//! Also what `snapshot` does for each file.

use super::{now_ms, replace, Engine};
use crate::error::{Error, IoContext, Result};
use crate::failpoint;
use crate::journal::record::{FileState, Origin};
use crate::store::objects::hash_bytes;
use std::path::Path;

/// A file as it is on disk now, already recorded as a version.
#[derive(Debug, Clone)]
pub struct Observed {
    pub path: String,
    pub bytes: Vec<u8>,
    pub state: FileState,
    /// The version number the catalog gives the current content.
    pub version: u64,
    /// Whether this observation recorded a new version (baseline or external).
    pub recorded: Option<Origin>,
}

/// Read a manifest and its metadata. Symlinks and missing files are bad input (exit 2).
pub fn read_file(fs: &dyn crate::fsys::Fs, path: &Path) -> Result<(Vec<u8>, FileState, i64)> {
    if !replace::check_target(fs, path)? {
        return Err(Error::usage(format!("{}: no such file", path.display())));
    }
    let meta = fs
        .metadata(path)
        .ctx(|| format!("stat {}", path.display()))?;
    let bytes = fs
        .read(path)
        .ctx(|| format!("reading {}", path.display()))?;
    let state = FileState {
        hash: hash_bytes(&bytes),
        size: bytes.len() as u64,
        mode: meta.mode,
        uid: meta.uid,
        gid: meta.gid,
    };
    Ok((bytes, state, meta.mtime_ms))
}

/// A file's content and state now; a missing file is [`FileState::absent`].
pub fn read_current(fs: &dyn crate::fsys::Fs, path: &Path) -> Result<(Vec<u8>, FileState)> {
    match fs.metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Vec::new(), FileState::absent())),
        _ => read_file(fs, path).map(|(b, s, _)| (b, s)),
    }
}

impl Engine {
    /// Like [`Engine::observe`], but a missing file is observed as absent (nothing recorded):
    /// for transactions that create a file.
    pub fn observe_or_absent(&mut self, path: &Path) -> Result<Observed> {
        if let Err(e) = self.fs().metadata(path) {
            if e.kind() == std::io::ErrorKind::NotFound {
                return Ok(Observed {
                    path: path.to_string_lossy().into_owned(),
                    bytes: Vec::new(),
                    state: FileState::absent(),
                    version: 0,
                    recorded: None,
                });
            }
        }
        self.observe(path)
    }

    /// Read `path` and, if it differs from its last recorded version (or has none), record it
    /// durably as `baseline`/`external` before anyone may overwrite it.
    pub fn observe(&mut self, path: &Path) -> Result<Observed> {
        let (bytes, state, mtime) = read_file(self.fs(), path)?;
        let key = path.to_string_lossy().into_owned();
        let last = self.catalog.last_version(&key)?;
        if let Some(last) = &last {
            if last.state == state {
                return Ok(Observed {
                    path: key,
                    bytes,
                    state,
                    version: last.version,
                    recorded: None,
                });
            }
        }
        let now = now_ms();
        let origin = if last.is_some() {
            Origin::External
        } else {
            Origin::Baseline
        };
        // The file's mtime tells when an outside edit landed better than "now" does; clamp it so
        // versions stay in order and nothing is dated in the future.
        let floor = last.as_ref().map_or(i64::MIN, |l| l.on_disk_from);
        let on_disk_from = mtime.clamp(floor, now);
        self.store.put(&bytes)?;
        self.log_version(key.clone(), state, origin, 0, now, on_disk_from)?;
        self.sync()?;
        failpoint::hit(if origin == Origin::External {
            "txn.external_version_recorded"
        } else {
            "snapshot.version_recorded"
        });
        let version = last.map_or(1, |l| l.version + 1);
        Ok(Observed {
            path: key,
            bytes,
            state,
            version,
            recorded: Some(origin),
        })
    }
}
