//! Durable replace of a manifest (transaction-protocol.md, step 7).
//!
//! The temp file is dot-prefixed and lives in the same directory: the kubelet ignores dot-files,
//! while a `*.yaml.bak` there would start a second static pod; and `rename` is only atomic
//! within one file system. An fsync error is never retried (fsyncgate): it fails the write and
//! the caller rolls back.

use crate::error::{Error, IoContext, Result};
use crate::failpoint;
use crate::fsys::{Fs, Kind};
use crate::journal::record::FileState;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Prefix of every temp file the tool creates in a manifests dir; recovery removes leftovers.
pub const TEMP_PREFIX: &str = ".kubeharden-";

pub fn temp_path_for(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!("{TEMP_PREFIX}{name}.tmp"))
}

/// Refuse to write through a symlink: the link would be replaced by a file, silently changing
/// what the kubelet reads. Returns whether the target exists.
pub fn check_target(fs: &dyn Fs, target: &Path) -> Result<bool> {
    match fs.metadata(target) {
        Ok(m) if m.kind == Kind::File => Ok(true),
        Ok(m) if m.kind == Kind::Symlink => Err(Error::usage(format!(
            "{} is a symbolic link; kubeharden edits only regular files (replacing the link would \
             change what the kubelet reads); edit the file it points to instead",
            target.display()
        ))),
        Ok(_) => Err(Error::usage(format!(
            "{} is not a regular file",
            target.display()
        ))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).ctx(|| format!("stat {}", target.display())),
    }
}

/// Replace `target` with `bytes` carrying `state`'s mode and owner, durably.
pub fn durable_replace(fs: &dyn Fs, target: &Path, bytes: &[u8], state: &FileState) -> Result<()> {
    check_target(fs, target)?;
    let dir = target
        .parent()
        .ok_or_else(|| Error::usage(format!("{} has no parent directory", target.display())))?;
    let temp = temp_path_for(target);
    // Under the state lock a temp of ours can only be a leftover of a killed run.
    match fs.remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).ctx(|| format!("removing stale {}", temp.display())),
    }
    let mut f = fs
        .create_new(&temp, 0o600)
        .ctx(|| format!("creating {}", temp.display()))?;
    failpoint::hit("replace.temp_created");
    let written = (|| {
        f.write_all(bytes)?;
        failpoint::hit("replace.temp_written");
        f.set_owner(state.uid, state.gid)?;
        f.set_mode(state.mode)?;
        f.sync()
    })();
    drop(f);
    if let Err(e) = written {
        let _ = fs.remove_file(&temp);
        return Err(e).ctx(|| format!("writing {}", temp.display()));
    }
    failpoint::hit("replace.temp_synced");
    if let Err(e) = fs.rename(&temp, target) {
        let _ = fs.remove_file(&temp);
        return Err(e).ctx(|| format!("renaming {} over {}", temp.display(), target.display()));
    }
    failpoint::hit("replace.renamed");
    fs.sync_dir(dir)
        .ctx(|| format!("fsync directory {}", dir.display()))?;
    failpoint::hit("replace.dir_synced");
    Ok(())
}

/// Put `target` in `state`: durably replaced with `bytes`, or removed (durably) when `state` is
/// absent — the rollback of a transaction that created the file.
pub fn apply_state(fs: &dyn Fs, target: &Path, bytes: &[u8], state: &FileState) -> Result<()> {
    if !state.is_absent() {
        return durable_replace(fs, target, bytes, state);
    }
    if check_target(fs, target)? {
        fs.remove_file(target)
            .ctx(|| format!("removing {}", target.display()))?;
        let dir = target.parent().unwrap_or(Path::new("/"));
        fs.sync_dir(dir)
            .ctx(|| format!("fsync directory {}", dir.display()))?;
    }
    Ok(())
}

/// Remove every leftover temp of ours from a manifests dir (and make the removal durable).
pub fn remove_leftover_temps(fs: &dyn Fs, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let names = match fs.list_dir(dir) {
        Ok(n) => n,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e).ctx(|| format!("listing {}", dir.display())),
    };
    for name in names {
        if name.starts_with(TEMP_PREFIX) && name.ends_with(".tmp") {
            let p = dir.join(&name);
            fs.remove_file(&p)
                .ctx(|| format!("removing leftover {}", p.display()))?;
            removed.push(p);
        }
    }
    if !removed.is_empty() {
        fs.sync_dir(dir)
            .ctx(|| format!("fsync directory {}", dir.display()))?;
    }
    Ok(removed)
}
