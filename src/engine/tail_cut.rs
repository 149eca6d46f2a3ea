//! `STATE/tail-cut`: a durable note that recovery is cutting a torn journal tail, written before
//! the cut and removed once the TRUNCATED_TAIL record is in the journal. A crash between the cut
//! and the record would otherwise lose the record for good (the torn bytes are gone).

use crate::error::{Error, IoContext, Result};
use crate::fsys::Fs;
use crate::journal::wal::TornTail;
use std::io::ErrorKind;
use std::path::Path;

pub const MARKER: &str = "tail-cut";

pub fn write(fs: &dyn Fs, marker: &Path, t: &TornTail) -> Result<()> {
    let dir = marker.parent().unwrap_or(Path::new("/"));
    let temp = dir.join(format!(".{MARKER}.tmp"));
    let _ = fs.remove_file(&temp);
    let body = format!("{} {} {}\n", t.segment, t.offset, t.dropped);
    let mut f = fs
        .create_new(&temp, 0o600)
        .ctx(|| format!("creating {}", temp.display()))?;
    f.write_all(body.as_bytes())
        .and_then(|_| f.sync())
        .ctx(|| format!("writing {}", temp.display()))?;
    fs.rename(&temp, marker)
        .ctx(|| format!("renaming {}", marker.display()))?;
    fs.sync_dir(dir).ctx(|| format!("fsync {}", dir.display()))
}

/// The cut a previous run noted but may not have recorded.
pub fn read(fs: &dyn Fs, marker: &Path) -> Result<Option<TornTail>> {
    let bytes = match fs.read(marker) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).ctx(|| format!("reading {}", marker.display())),
    };
    let text = String::from_utf8_lossy(&bytes);
    let nums: Vec<u64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match nums[..] {
        [segment, offset, dropped] if segment > 0 && segment <= u32::MAX as u64 => {
            Ok(Some(TornTail {
                segment: segment as u32,
                offset,
                dropped,
                reason: "cut by an earlier recovery",
            }))
        }
        _ => Err(Error::integrity(format!(
            "{} is not a tail-cut note ({text:?}); remove it and rerun",
            marker.display()
        ))),
    }
}

pub fn remove(fs: &dyn Fs, marker: &Path) -> Result<()> {
    match fs.remove_file(marker) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).ctx(|| format!("removing {}", marker.display())),
    }
    let dir = marker.parent().unwrap_or(Path::new("/"));
    fs.sync_dir(dir).ctx(|| format!("fsync {}", dir.display()))
}

/// `STATE/tail-rewrite`: the end of the last segment that no run indexed, rewritten before
/// anything is appended behind it. Those bytes were read back, but the run that wrote them may
/// have seen its fsync fail (its cut-back failing too): the page cache then holds data the disk
/// does not, and a later fsync does not write it (fsyncgate). Writing the bytes again makes them
/// durable. The note (header line `SEGMENT OFFSET LEN`, then the LEN bytes) is durable before the
/// segment is truncated, so a crash in between loses nothing: the next start finishes it.
pub const REWRITE_NOTE: &str = "tail-rewrite";

pub fn rewrite(fs: &dyn Fs, root: &Path, segment: &Path, n: u32, from: u64) -> Result<()> {
    let bytes = fs
        .read(segment)
        .ctx(|| format!("reading {}", segment.display()))?;
    let Some(tail) = bytes.get(from as usize..).filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let mut body = format!("{n} {from} {}\n", tail.len()).into_bytes();
    body.extend_from_slice(tail);
    let note = root.join(REWRITE_NOTE);
    let temp = root.join(format!(".{REWRITE_NOTE}.tmp"));
    let _ = fs.remove_file(&temp);
    let mut f = fs
        .create_new(&temp, 0o600)
        .ctx(|| format!("creating {}", temp.display()))?;
    f.write_all(&body)
        .and_then(|_| f.sync())
        .ctx(|| format!("writing {}", temp.display()))?;
    fs.rename(&temp, &note)
        .ctx(|| format!("renaming {}", note.display()))?;
    fs.sync_dir(root)
        .ctx(|| format!("fsync {}", root.display()))?;
    put_back(fs, segment, from, tail)?;
    remove(fs, &note)
}

/// Truncate `segment` to `from` (durably), append `tail`, fsync.
fn put_back(fs: &dyn Fs, segment: &Path, from: u64, tail: &[u8]) -> Result<()> {
    fs.truncate(segment, from)
        .ctx(|| format!("truncating {}", segment.display()))?;
    let mut f = fs
        .open_append(segment)
        .ctx(|| format!("opening {}", segment.display()))?;
    f.write_all(tail)
        .and_then(|_| f.sync())
        .ctx(|| format!("rewriting the end of {}", segment.display()))
}

/// The rewrite a previous run noted and may not have finished: segment, offset, bytes.
pub fn pending_rewrite(fs: &dyn Fs, root: &Path) -> Result<Option<(u32, u64, Vec<u8>)>> {
    let note = root.join(REWRITE_NOTE);
    let body = match fs.read(&note) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).ctx(|| format!("reading {}", note.display())),
    };
    let bad = || {
        Error::integrity(format!(
            "{} is not a tail-rewrite note; remove it and rerun",
            note.display()
        ))
    };
    let nl = body.iter().position(|&b| b == b'\n').ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&body[..nl]).into_owned();
    let nums: Vec<u64> = head
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let tail = body[nl + 1..].to_vec();
    match nums[..] {
        [n, from, len] if len == tail.len() as u64 && n > 0 && n <= u32::MAX as u64 => {
            Ok(Some((n as u32, from, tail)))
        }
        _ => Err(bad()),
    }
}

/// Finish a rewrite a previous run was cut off in (before the journal is read).
pub fn finish_rewrite(fs: &dyn Fs, root: &Path, journal: &Path) -> Result<()> {
    let Some((n, from, tail)) = pending_rewrite(fs, root)? else {
        return Ok(());
    };
    let segment = journal.join(crate::journal::wal::segment_name(n));
    put_back(fs, &segment, from, &tail)?;
    remove(fs, &root.join(REWRITE_NOTE))
}
