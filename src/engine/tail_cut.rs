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
