//! The journal as a directory of segment files: reading records across segments, appending,
//! rotating, and cutting a torn tail. The byte format is in `format.rs` / `reader.rs` and
//! `journal-format/README.md`.

use super::format::{self, SEGMENT_HEADER_LEN};
use super::reader::{check_segment_header, Decoded, HeaderProblem, ReadOutcome, SegmentReader};
use super::record::Record;
use crate::error::{Error, IoContext, Result};
use crate::fsys::{Fs, FsFile, Kind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::SEGMENT_TARGET_LEN;

/// Where a record starts: segment number and byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u32,
    pub offset: u64,
}

/// A decoded record and where it was found.
#[derive(Debug, Clone)]
pub struct Located {
    pub pos: Position,
    pub decoded: Decoded,
}

/// An incomplete or unreadable final record at the end of the last segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    pub segment: u32,
    pub offset: u64,
    pub dropped: u64,
    pub reason: &'static str,
}

#[derive(Debug)]
pub struct Scan {
    pub records: Vec<Located>,
    /// Where the next record would go, if the tail were cut.
    pub end: Position,
    pub torn: Option<TornTail>,
    /// For every segment read: the blake3 of its bytes up to the end of its last whole record.
    pub digests: Vec<SegmentDigest>,
    /// A segment read no longer matches its digest from an earlier start.
    pub changed: bool,
}

/// A checked prefix of a segment: its first `len` bytes hash to `hash`. Kept in the catalog so
/// that the next start re-hashes what it already checked (one fast blake3 over the bytes) instead
/// of decoding every record again, and decodes only what was appended since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentDigest {
    pub segment: u32,
    pub len: u64,
    pub hash: [u8; 32],
}

/// Whether the first `d.len` bytes of segment `d.segment` still hash to `d.hash`.
pub fn digest_holds(fs: &dyn Fs, dir: &Path, d: &SegmentDigest) -> Result<bool> {
    Ok(prefix_hashes_to(&read_segment(fs, dir, d.segment)?, d))
}

fn prefix_hashes_to(bytes: &[u8], d: &SegmentDigest) -> bool {
    bytes.len() as u64 >= d.len && *blake3::hash(&bytes[..d.len as usize]).as_bytes() == d.hash
}

pub fn segment_name(n: u32) -> String {
    format::segment_file_name(n)
}

/// Segment numbers present in `dir`, ascending; anything else there is corruption.
pub fn list_segments(fs: &dyn Fs, dir: &Path) -> Result<Vec<u32>> {
    let mut segs = Vec::new();
    for name in fs
        .list_dir(dir)
        .ctx(|| format!("listing {}", dir.display()))?
    {
        let num = format::parse_segment_file_name(&name);
        match num {
            Some(n) if n > 0 => segs.push(n),
            _ => {
                return Err(Error::integrity(format!(
                    "unexpected file {} in the journal directory {}",
                    name,
                    dir.display()
                )))
            }
        }
    }
    segs.sort_unstable();
    for w in segs.windows(2) {
        if w[1] != w[0] + 1 {
            return Err(Error::integrity(format!(
                "journal segment {} is missing (found {} and {})",
                segment_name(w[0] + 1),
                segment_name(w[0]),
                segment_name(w[1])
            )));
        }
    }
    Ok(segs)
}

fn read_segment(fs: &dyn Fs, dir: &Path, n: u32) -> Result<Vec<u8>> {
    let path = dir.join(segment_name(n));
    let meta = fs
        .metadata(&path)
        .ctx(|| format!("stat {}", path.display()))?;
    if meta.kind != Kind::File {
        return Err(Error::integrity(format!(
            "{} is not a regular file (symlink planted?)",
            path.display()
        )));
    }
    fs.read(&path)
        .ctx(|| format!("reading journal segment {}", path.display()))
}

/// Read every record from `from` (a record start, or a segment start) to the end of the journal.
/// A torn record is tolerated only at the very end of the last segment; anything else that fails
/// to decode is corruption (exit 6).
pub fn scan_from(fs: &dyn Fs, dir: &Path, from: Position) -> Result<Scan> {
    scan_checked(fs, dir, from, &[])
}

/// [`scan_from`], also checking each segment it reads against `checked` (digests of prefixes an
/// earlier start verified): a prefix that no longer hashes the same sets `Scan::changed`.
pub fn scan_checked(
    fs: &dyn Fs,
    dir: &Path,
    from: Position,
    checked: &[SegmentDigest],
) -> Result<Scan> {
    let segs = list_segments(fs, dir)?;
    let mut records = Vec::new();
    let Some(&last) = segs.last() else {
        return Ok(Scan {
            records,
            end: Position {
                segment: 1,
                offset: SEGMENT_HEADER_LEN as u64,
            },
            torn: None,
            digests: Vec::new(),
            changed: !checked.is_empty(),
        });
    };
    let mut changed = false;
    let mut end = from;
    let mut torn = None;
    let mut digests = Vec::new();
    for &n in segs.iter().filter(|&&n| n >= from.segment) {
        let bytes = read_segment(fs, dir, n)?;
        if let Some(d) = checked.iter().find(|d| d.segment == n) {
            changed |= !prefix_hashes_to(&bytes, d);
        }
        let is_last = n == last;
        let corrupt = |offset: u64, reason: &str| {
            Error::integrity(format!(
                "reading journal segment {}: {reason} at offset {offset}; the journal is damaged \
                 before its tail. Nothing was changed. Run 'kubeharden verify' for details",
                segment_name(n)
            ))
        };
        match check_segment_header(&bytes, n) {
            Ok(()) => {}
            Err(HeaderProblem::Torn { reason }) if is_last => {
                torn = Some(TornTail {
                    segment: n,
                    offset: 0,
                    dropped: bytes.len() as u64,
                    reason,
                });
                break;
            }
            Err(HeaderProblem::Torn { reason }) => return Err(corrupt(0, reason)),
            Err(HeaderProblem::Corrupt(c)) if c.reason == "unsupported format version" => {
                return Err(Error::integrity(format!(
                    "journal segment {} was written by a newer kubeharden (format version {}); \
                     upgrade kubeharden to read it. Nothing was changed",
                    segment_name(n),
                    bytes.get(format::VERSION_OFFSET).copied().unwrap_or(0)
                )))
            }
            Err(HeaderProblem::Corrupt(c)) => return Err(corrupt(c.offset, c.reason)),
        }
        let start = if n == from.segment {
            from.offset.max(SEGMENT_HEADER_LEN as u64)
        } else {
            SEGMENT_HEADER_LEN as u64
        };
        let mut reader = SegmentReader::new(&bytes, start);
        end = Position {
            segment: n,
            offset: start,
        };
        loop {
            match reader.next() {
                Ok(ReadOutcome::Record(d)) => {
                    let pos = Position {
                        segment: n,
                        offset: d.offset,
                    };
                    end.offset = d.offset + d.len;
                    records.push(Located { pos, decoded: d });
                }
                Ok(ReadOutcome::End) => break,
                // A torn record is only believable as the last thing ever written.
                Ok(ReadOutcome::TornTail {
                    offset,
                    dropped,
                    reason,
                }) if is_last => {
                    torn = Some(TornTail {
                        segment: n,
                        offset,
                        dropped,
                        reason,
                    });
                    break;
                }
                Ok(ReadOutcome::TornTail { offset, reason, .. }) => {
                    return Err(corrupt(offset, reason));
                }
                Err(c) => return Err(corrupt(c.offset, c.reason)),
            }
        }
        digests.push(SegmentDigest {
            segment: n,
            len: end.offset,
            hash: *blake3::hash(&bytes[..end.offset as usize]).as_bytes(),
        });
    }
    Ok(Scan {
        records,
        end,
        torn,
        digests,
        changed,
    })
}

/// The appender. Only built by recovery, after any torn tail has been cut.
pub struct Journal {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    segment: u32,
    len: u64,
    /// Length of the current segment known to be durable.
    synced_len: u64,
    /// An fsync failed: the bytes after `synced_len` may be gone from the file while later
    /// writes land after them. They are cut off before anything else is appended, so the
    /// journal never holds a hole before valid records (fsyncgate).
    poisoned: bool,
    file: Option<Box<dyn FsFile>>,
}

impl Journal {
    /// Open for appending at `end` (from a scan with its torn tail already cut).
    pub fn open_at(fs: Arc<dyn Fs>, dir: PathBuf, end: Position) -> Result<Journal> {
        let mut j = Journal {
            fs,
            dir,
            segment: end.segment,
            len: end.offset,
            synced_len: end.offset,
            poisoned: false,
            file: None,
        };
        let exists = j.fs.metadata(&j.segment_path()).is_ok();
        if !exists {
            j.create_segment(end.segment)?;
        }
        Ok(j)
    }

    fn segment_path(&self) -> PathBuf {
        self.dir.join(segment_name(self.segment))
    }

    /// A new segment is durable (header fsynced, directory fsynced) before any record goes in it.
    fn create_segment(&mut self, n: u32) -> Result<()> {
        let path = self.dir.join(segment_name(n));
        let mut f = self
            .fs
            .create_new(&path, 0o600)
            .ctx(|| format!("creating journal segment {}", path.display()))?;
        f.write_all(&format::encode_segment_header(n))
            .and_then(|_| f.sync())
            .ctx(|| format!("writing journal segment header {}", path.display()))?;
        self.fs
            .sync_dir(&self.dir)
            .ctx(|| format!("fsync {}", self.dir.display()))?;
        self.segment = n;
        self.len = SEGMENT_HEADER_LEN as u64;
        self.synced_len = self.len;
        self.file = Some(f);
        Ok(())
    }

    fn file(&mut self) -> Result<&mut Box<dyn FsFile>> {
        if self.file.is_none() {
            let path = self.segment_path();
            let f = self
                .fs
                .open_append(&path)
                .ctx(|| format!("opening journal segment {}", path.display()))?;
            self.file = Some(f);
        }
        Ok(self.file.as_mut().expect("just opened"))
    }

    /// Append one record (not yet durable: call `sync`). Returns it as a reader would see it.
    pub fn append(&mut self, rec: &Record) -> Result<Located> {
        if self.poisoned {
            self.file = None;
            let path = self.segment_path();
            self.fs
                .truncate(&path, self.synced_len)
                .ctx(|| format!("cutting unsynced records off {}", path.display()))?;
            self.len = self.synced_len;
            self.poisoned = false;
        }
        let frame = format::encode_record(rec);
        if self.len > SEGMENT_HEADER_LEN as u64
            && self.len + frame.len() as u64 > SEGMENT_TARGET_LEN
        {
            // Seal the full segment before starting the next: it is never written again.
            self.sync()?;
            self.file = None;
            self.create_segment(self.segment + 1)?;
        }
        let pos = Position {
            segment: self.segment,
            offset: self.len,
        };
        let path = self.segment_path();
        self.file()?
            .write_all(&frame)
            .ctx(|| format!("appending to journal segment {}", path.display()))?;
        self.len += frame.len() as u64;
        Ok(Located {
            pos,
            decoded: Decoded {
                offset: pos.offset,
                len: frame.len() as u64,
                checksum: format::record_checksum(&frame),
                record: rec.clone(),
            },
        })
    }

    /// fsync the current segment. A failure is final: the caller fails the transaction.
    pub fn sync(&mut self) -> Result<()> {
        let path = self.segment_path();
        match self.file()?.sync() {
            Ok(()) => {
                self.synced_len = self.len;
                Ok(())
            }
            Err(e) => {
                self.poisoned = true;
                Err(e).ctx(|| format!("fsync journal segment {}", path.display()))
            }
        }
    }

    /// Where durable records end: nothing at or after it survived a failed fsync.
    pub fn synced_end(&self) -> Position {
        Position {
            segment: self.segment,
            offset: self.synced_len,
        }
    }
}

/// Cut a torn tail off (durably). A segment whose header itself is torn is removed.
pub fn cut_torn_tail(fs: &dyn Fs, dir: &Path, torn: &TornTail) -> Result<Position> {
    let path = dir.join(segment_name(torn.segment));
    if torn.offset == 0 {
        fs.remove_file(&path)
            .ctx(|| format!("removing torn segment {}", path.display()))?;
        fs.sync_dir(dir)
            .ctx(|| format!("fsync {}", dir.display()))?;
        let prev = torn.segment - 1;
        if prev == 0 {
            return Ok(Position {
                segment: 1,
                offset: SEGMENT_HEADER_LEN as u64,
            });
        }
        let len = fs
            .metadata(&dir.join(segment_name(prev)))
            .ctx(|| format!("stat segment {}", segment_name(prev)))?
            .len;
        return Ok(Position {
            segment: prev,
            offset: len,
        });
    }
    fs.truncate(&path, torn.offset)
        .ctx(|| format!("truncating journal segment {}", path.display()))?;
    Ok(Position {
        segment: torn.segment,
        offset: torn.offset,
    })
}
