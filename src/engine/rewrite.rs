//! Rewriting the journal's last segment at startup when it holds records no run indexed.
//!
//! A run whose journal fsync failed, and whose cut back to the last durable record failed too
//! (a dead disk), leaves records that read back from the page cache but will never reach the
//! disk: after a failed fsync the kernel may drop those pages' dirty state, and a later fsync
//! does not write them ("fsyncgate"). The next run cannot tell them from records that are
//! durable, so before anything trusts them it makes them durable the only sure way: a copy of
//! the segment, fsynced, renamed over it. The rename is atomic, so a crash in between leaves
//! the old segment or the new one, with the same bytes.

use crate::error::{IoContext, Result};
use crate::fsys::Fs;
use crate::journal::wal::{self, Position};
use std::path::Path;

/// The copy is made in the state dir, not the journal dir (any other file there is damage).
const TEMP: &str = ".journal-rewrite.tmp";

/// Rewrite segment `end.segment` of the journal in `root/journal` if it is exactly
/// `end.offset` bytes long (anything else is left to `Journal::open_at` to report).
pub fn rewrite_last_segment(fs: &dyn Fs, root: &Path, journal: &Path, end: Position) -> Result<()> {
    let path = journal.join(wal::segment_name(end.segment));
    let bytes = fs
        .read(&path)
        .ctx(|| format!("reading journal segment {}", path.display()))?;
    if bytes.len() as u64 != end.offset {
        return Ok(());
    }
    let temp = root.join(TEMP);
    let _ = fs.remove_file(&temp);
    let written = (|| {
        let mut f = fs.create_new(&temp, 0o600)?;
        f.write_all(&bytes)?;
        f.sync()
    })();
    if let Err(e) = written {
        let _ = fs.remove_file(&temp);
        return Err(e).ctx(|| {
            format!(
                "rewriting journal segment {} ({})",
                path.display(),
                temp.display()
            )
        });
    }
    fs.rename(&temp, &path)
        .ctx(|| format!("renaming {} over {}", temp.display(), path.display()))?;
    fs.sync_dir(journal)
        .ctx(|| format!("fsync {}", journal.display()))?;
    fs.sync_dir(root)
        .ctx(|| format!("fsync {}", root.display()))
}
