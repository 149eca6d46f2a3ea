//! Salvage of a journal damaged before its tail (`verify --repair`): keep the valid prefix,
//! move everything after it into `STATE/quarantine/`, and say what was dropped (LevelDB's
//! `Reporter` style: where, how many bytes, why). `journal-format/README.md`, "Salvage".
//!
//! The steps, each durable before the next, so that a crash anywhere leaves either the damaged
//! journal (salvage runs again) or the cut one with the dropped bytes kept aside:
//!
//! 1. the bytes of the damaged segment from the cut on are copied to
//!    `quarantine/journal-SSSSSSSS-OFFSET.bin` (dot-temp, fsync, rename, fsync `quarantine/`);
//! 2. every later segment is renamed to `quarantine/journal-SSSSSSSS-0.bin`, then `quarantine/`
//!    and `journal/` are fsynced;
//! 3. the damaged segment is truncated at the cut (and fsynced), or removed if its header itself
//!    is damaged.
//!
//! The caller then appends a TRUNCATED_TAIL record for the cut and rebuilds the catalog.

use super::format::{
    decode_payload, record_checksum, CHECKSUM_OFFSET, LENGTH_OFFSET, MAX_PAYLOAD, PAYLOAD_OFFSET,
    RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, TYPE_OFFSET,
};
use super::record::Record;
use super::wal::{segment_name, segment_numbers, Position};
use crate::error::{IoContext, Result};
use crate::fsys::Fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

pub const QUARANTINE_DIR: &str = "quarantine";

/// Bytes moved out of the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub segment: u32,
    pub offset: u64,
    pub bytes: u64,
    pub reason: String,
    /// Where they are now.
    pub file: PathBuf,
}

#[derive(Debug, Default)]
pub struct Salvaged {
    pub dropped: Vec<Dropped>,
    /// Records that still read in the dropped bytes: what they say is no longer in the journal.
    pub found: Vec<Record>,
}

/// Total bytes dropped.
pub fn dropped_bytes(s: &Salvaged) -> u64 {
    s.dropped.iter().map(|d| d.bytes).sum()
}

pub fn quarantine_name(segment: u32, offset: u64) -> String {
    let seg = segment_name(segment);
    let stem = seg.trim_end_matches(".wal");
    format!("journal-{stem}-{offset}.bin")
}

/// Move everything from `keep_end` on out of `journal` into `quarantine`. `whole_from`: the
/// first segment to move as a whole (its header is damaged); the segment of `keep_end` is cut
/// at `keep_end.offset` otherwise.
pub fn quarantine_from(
    fs: &dyn Fs,
    journal: &Path,
    quarantine: &Path,
    keep_end: Position,
    whole_from: u32,
    reason: &str,
) -> Result<Salvaged> {
    let segs = segment_numbers(fs, journal)?;
    ensure_dir(fs, quarantine)?;
    let mut out = Salvaged::default();
    let cut = keep_end.segment;
    let mut truncate = false;
    if cut < whole_from && segs.contains(&cut) {
        let bytes = read(fs, &journal.join(segment_name(cut)))?;
        let at = keep_end.offset.max(SEGMENT_HEADER_LEN as u64) as usize;
        if bytes.len() > at {
            let name = quarantine_name(cut, at as u64);
            write_durable(fs, quarantine, &name, &bytes[at..])?;
            out.found.extend(readable_records(&bytes[at..]));
            out.dropped.push(Dropped {
                segment: cut,
                offset: at as u64,
                bytes: (bytes.len() - at) as u64,
                reason: reason.to_string(),
                file: quarantine.join(name),
            });
            truncate = true;
        }
    }
    for &n in segs.iter().filter(|&&n| n > cut || n >= whole_from) {
        let from = journal.join(segment_name(n));
        let bytes = read(fs, &from)?;
        let to = quarantine.join(quarantine_name(n, 0));
        fs.rename(&from, &to)
            .ctx(|| format!("moving {} to {}", from.display(), to.display()))?;
        out.found.extend(readable_records(&bytes));
        out.dropped.push(Dropped {
            segment: n,
            offset: 0,
            bytes: bytes.len() as u64,
            reason: if n == whole_from {
                reason.to_string()
            } else {
                "after the damage".to_string()
            },
            file: to,
        });
    }
    for d in [quarantine, journal] {
        fs.sync_dir(d).ctx(|| format!("fsync {}", d.display()))?;
    }
    if truncate {
        let path = journal.join(segment_name(cut));
        fs.truncate(&path, keep_end.offset.max(SEGMENT_HEADER_LEN as u64))
            .ctx(|| format!("truncating {}", path.display()))?;
    }
    Ok(out)
}

fn read(fs: &dyn Fs, path: &Path) -> Result<Vec<u8>> {
    fs.read(path).ctx(|| format!("reading {}", path.display()))
}

fn ensure_dir(fs: &dyn Fs, dir: &Path) -> Result<()> {
    match fs.create_dir(dir, 0o700) {
        Ok(()) => {
            let parent = dir.parent().unwrap_or(Path::new("/"));
            fs.sync_dir(parent)
                .ctx(|| format!("fsync {}", parent.display()))
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).ctx(|| format!("creating {}", dir.display())),
    }
}

/// `dir/name` holding `bytes`, durably (dot-temp, fsync, rename, fsync dir).
pub fn write_durable(fs: &dyn Fs, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let temp = dir.join(format!(".{name}.tmp"));
    let dest = dir.join(name);
    let _ = fs.remove_file(&temp);
    let mut f = fs
        .create_new(&temp, 0o600)
        .ctx(|| format!("creating {}", temp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync())
        .ctx(|| format!("writing {}", temp.display()))?;
    fs.rename(&temp, &dest)
        .ctx(|| format!("renaming {}", dest.display()))?;
    fs.sync_dir(dir).ctx(|| format!("fsync {}", dir.display()))
}

/// Payload bytes examined at most when looking for records in dropped bytes.
const RESYNC_BUDGET: u64 = 256 * 1024 * 1024;

/// Every complete, checksummed record in `bytes`, found by trying each offset (LevelDB's resync
/// after a corrupt block): what the dropped bytes still say, for the report.
pub fn readable_records(bytes: &[u8]) -> Vec<Record> {
    let mut found = Vec::new();
    let mut budget = RESYNC_BUDGET;
    let mut y = 0usize;
    while y + RECORD_HEADER_LEN <= bytes.len() {
        let cand = &bytes[y..];
        let mut len = [0u8; 4];
        len.copy_from_slice(&cand[LENGTH_OFFSET..TYPE_OFFSET]);
        let length = u32::from_le_bytes(len) as usize;
        if length <= MAX_PAYLOAD && RECORD_HEADER_LEN + length <= cand.len() {
            let cost = 2 * (length as u64 + 1);
            if budget < cost {
                break;
            }
            budget -= cost;
            let frame = &cand[..RECORD_HEADER_LEN + length];
            if let Ok(rec) = decode_payload(frame[TYPE_OFFSET], &frame[PAYLOAD_OFFSET..]) {
                if record_checksum(frame) == frame[CHECKSUM_OFFSET..PAYLOAD_OFFSET] {
                    found.push(rec);
                    y += frame.len();
                    continue;
                }
            }
        }
        y += 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::format::encode_record;

    #[test]
    fn resync_finds_the_records_around_garbage() {
        let a = encode_record(&Record::Commit { txn: 7, at: 1 });
        let b = encode_record(&Record::Aborted { txn: 8, at: 2 });
        let mut bytes = b"garbage!".to_vec();
        bytes.extend_from_slice(&a);
        let mut broken = a.clone();
        broken[PAYLOAD_OFFSET] ^= 1;
        bytes.extend_from_slice(&broken);
        bytes.extend_from_slice(&b);
        let found = readable_records(&bytes);
        assert_eq!(
            found,
            vec![
                Record::Commit { txn: 7, at: 1 },
                Record::Aborted { txn: 8, at: 2 }
            ]
        );
        assert!(readable_records(&[0u8; 100]).is_empty());
    }

    #[test]
    fn quarantine_names() {
        assert_eq!(quarantine_name(3, 4096), "journal-00000003-4096.bin");
    }
}
