//! The journal as a directory of segment files: reading records across segments, appending,
//! rotating, and cutting a torn tail. The byte format is in `format.rs` / `reader.rs` and
//! `journal-format/README.md`.

use super::format::{self, SEGMENT_HEADER_LEN};
use super::reader::{check_segment_header, Decoded, HeaderProblem, ReadOutcome, SegmentReader};
use super::record::Record;
use crate::error::{Error, IoContext, Result};
use crate::fsys::{Fs, FsFile, Kind};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::SEGMENT_TARGET_LEN;

/// What every "damaged before its tail" message offers as the way out.
pub const SALVAGE_HINT: &str = "To keep the valid records and move the damaged rest aside: \
    kubeharden verify --repair (it says what was dropped; see docs/storage.md)";

/// The tail rule against what was known durable. `known_end` is where the records an earlier
/// run indexed end (the catalog indexes a record only after the journal fsync that made it
/// durable), `final_start` where the last of them starts. A torn tail may take the final record
/// with it (its pages can be lost in a power cut if it was read back before it was synced); a
/// journal that now ends before `final_start` has lost durable records: that is damage, never a
/// torn tail, whatever the reader made of the bytes that are left.
pub fn check_known_durable(scan: &Scan, known_end: Position, final_start: Position) -> Result<()> {
    if scan.end >= final_start {
        return Ok(());
    }
    let lost = if scan.end.segment == known_end.segment {
        format!("{} bytes", known_end.offset - scan.end.offset)
    } else {
        format!(
            "everything from there to segment {} offset {}",
            segment_name(known_end.segment),
            known_end.offset
        )
    };
    Err(Error::integrity(format!(
        "the journal ends at segment {} offset {}, but records up to segment {} offset {} were          durable (an earlier run indexed them): {lost} of durable records are missing, more          than a torn final record. The journal is damaged before its tail. Nothing was changed.          {SALVAGE_HINT}",
        segment_name(scan.end.segment),
        scan.end.offset,
        segment_name(known_end.segment),
        known_end.offset
    )))
}

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

/// Segment numbers present in `dir`, ascending; any other file there is corruption.
pub fn segment_numbers(fs: &dyn Fs, dir: &Path) -> Result<Vec<u32>> {
    let mut segs = Vec::new();
    for name in fs
        .list_dir(dir)
        .ctx(|| format!("listing {}", dir.display()))?
    {
        match format::parse_segment_file_name(&name) {
            Some(n) if n > 0 => segs.push(n),
            _ => {
                return Err(Error::integrity(format!(
                    "unexpected file {} in the journal directory {}; move it out of there \
                     (nothing was changed)",
                    name,
                    dir.display()
                )))
            }
        }
    }
    segs.sort_unstable();
    Ok(segs)
}

/// The first number missing from `1..=last` (segments are numbered consecutively from 1, and
/// only the last one is ever removed, when its header is torn).
pub fn first_gap(segs: &[u32]) -> Option<u32> {
    segs.iter()
        .enumerate()
        .find(|&(i, &n)| n != i as u32 + 1)
        .map(|(i, _)| i as u32 + 1)
}

fn missing_segment(n: u32) -> String {
    format!(
        "journal segment {} is missing; the journal is damaged before its tail. Nothing was \
         changed. {SALVAGE_HINT}",
        segment_name(n)
    )
}

/// Segment numbers present in `dir`, ascending: a missing one is corruption.
pub fn list_segments(fs: &dyn Fs, dir: &Path) -> Result<Vec<u32>> {
    let segs = segment_numbers(fs, dir)?;
    match first_gap(&segs) {
        Some(n) => Err(Error::integrity(missing_segment(n))),
        None => Ok(segs),
    }
}

fn read_segment(fs: &dyn Fs, dir: &Path, n: u32) -> Result<Vec<u8>> {
    let path = dir.join(segment_name(n));
    let meta = match fs.metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::integrity(missing_segment(n)))
        }
        m => m.ctx(|| format!("stat {}", path.display()))?,
    };
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
    let (scan, damage) = scan_until_damage(fs, dir, from, checked)?;
    match damage {
        None => Ok(scan),
        Some(d) if d.reason == "segment missing" => {
            Err(Error::integrity(missing_segment(d.segment)))
        }
        Some(d) => Err(Error::integrity(format!(
            "reading journal segment {}: {} at offset {}; the journal is damaged before its \
             tail. Nothing was changed. {SALVAGE_HINT}",
            segment_name(d.segment),
            d.reason,
            d.offset
        ))),
    }
}

/// Where the journal stops being readable before its tail (corruption, not a torn tail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub segment: u32,
    /// Offset in the segment of the record (or header field) that cannot be read.
    pub offset: u64,
    pub reason: String,
}

/// [`scan_checked`], stopping at damage instead of failing: the records before it are returned
/// and `Scan::end` is where they end (the start of what salvage moves aside). A segment written
/// by a newer format version is still an error: it is never salvaged, only read by a newer
/// kubeharden.
pub fn scan_until_damage(
    fs: &dyn Fs,
    dir: &Path,
    from: Position,
    checked: &[SegmentDigest],
) -> Result<(Scan, Option<Damage>)> {
    let all = segment_numbers(fs, dir)?;
    let gap = first_gap(&all);
    // Past a missing segment nothing is read: it is all damaged rest.
    let segs = &all[..gap.map_or(all.len(), |g| g as usize - 1)];
    let mut scan = Scan {
        records: Vec::new(),
        end: from,
        torn: None,
        digests: Vec::new(),
        changed: false,
    };
    let missing = |scan| {
        let d = gap.map(|g| Damage {
            segment: g,
            offset: 0,
            reason: "segment missing".into(),
        });
        Ok((scan, d))
    };
    let Some(&last) = segs.last() else {
        scan.end = Position {
            segment: 1,
            offset: SEGMENT_HEADER_LEN as u64,
        };
        scan.changed = !checked.is_empty();
        return missing(scan);
    };
    // With a segment missing after them, none of these is the last one.
    let last = if gap.is_some() { u32::MAX } else { last };
    for &n in segs.iter().filter(|&&n| n >= from.segment) {
        let bytes = read_segment(fs, dir, n)?;
        if let Some(d) = checked.iter().find(|d| d.segment == n) {
            scan.changed |= !prefix_hashes_to(&bytes, d);
        }
        let start = if n == from.segment {
            from.offset.max(SEGMENT_HEADER_LEN as u64)
        } else {
            SEGMENT_HEADER_LEN as u64
        };
        match read_one_segment(&mut scan, &bytes, n, n == last, start)? {
            Step::Next => {}
            Step::Stop => break,
            Step::Damaged(offset, reason) => {
                let damage = Damage {
                    segment: n,
                    offset,
                    reason: reason.to_string(),
                };
                return Ok((scan, Some(damage)));
            }
        }
    }
    missing(scan)
}

enum Step {
    Next,
    Stop,
    Damaged(u64, &'static str),
}

/// Read segment `n` from `start` into `scan`. A torn tail is only believable as the last thing
/// ever written: anywhere else it is damage.
fn read_one_segment(
    scan: &mut Scan,
    bytes: &[u8],
    n: u32,
    is_last: bool,
    start: u64,
) -> Result<Step> {
    match check_segment_header(bytes, n) {
        Ok(()) => {}
        Err(HeaderProblem::Torn { reason }) if is_last => {
            scan.torn = Some(TornTail {
                segment: n,
                offset: 0,
                dropped: bytes.len() as u64,
                reason,
            });
            return Ok(Step::Stop);
        }
        Err(HeaderProblem::Torn { reason }) => return Ok(Step::Damaged(0, reason)),
        Err(HeaderProblem::Corrupt(c)) if c.reason == "unsupported format version" => {
            return Err(Error::integrity(format!(
                "journal segment {} was written by a newer kubeharden (format version {}); \
                 upgrade kubeharden to read it. Nothing was changed",
                segment_name(n),
                bytes.get(format::VERSION_OFFSET).copied().unwrap_or(0)
            )))
        }
        Err(HeaderProblem::Corrupt(c)) => return Ok(Step::Damaged(c.offset, c.reason)),
    }
    if start > bytes.len() as u64 {
        // The segment is now shorter than where an earlier start stopped reading it: the
        // caller re-reads everything and decides from what was known durable (the tail rule).
        scan.changed = true;
        return Ok(Step::Stop);
    }
    let mut reader = SegmentReader::new(bytes, start);
    scan.end = Position {
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
                scan.end.offset = d.offset + d.len;
                scan.records.push(Located { pos, decoded: d });
            }
            Ok(ReadOutcome::End) => break,
            Ok(ReadOutcome::TornTail {
                offset,
                dropped,
                reason,
            }) if is_last => {
                scan.torn = Some(TornTail {
                    segment: n,
                    offset,
                    dropped,
                    reason,
                });
                break;
            }
            Ok(ReadOutcome::TornTail { offset, reason, .. }) => {
                return Ok(Step::Damaged(offset, reason))
            }
            Err(c) => return Ok(Step::Damaged(c.offset, c.reason)),
        }
    }
    scan.digests.push(SegmentDigest {
        segment: n,
        len: scan.end.offset,
        hash: *blake3::hash(&bytes[..scan.end.offset as usize]).as_bytes(),
    });
    Ok(Step::Next)
}

/// The appender. Only built by recovery, after any torn tail has been cut.
///
/// Its invariant: before anything new is appended, the segment on disk is exactly `len` bytes
/// long, and everything in it up to `synced_len` is durable; between the two are only records
/// this process wrote in full since its last fsync. A failed or short write, or a failed fsync,
/// cuts the segment back to `synced_len` (truncate + fsync) at once: no record is ever appended
/// behind bytes that were not synced, and an fsync that failed is never retried as if the data
/// were safe (fsyncgate). If even the cut fails, appending stops for the rest of the process.
pub struct Journal {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    segment: u32,
    len: u64,
    /// Length of the current segment known to be durable.
    synced_len: u64,
    /// Why appending stopped (the segment could not be cut back to `synced_len`), with the
    /// OS error of the cut.
    stopped: Option<(String, io::ErrorKind, Option<i32>)>,
    file: Option<Box<dyn FsFile>>,
    /// The segment as found at open is not fsynced yet: done before the first append, so a
    /// run that appends nothing (the recover timer every 30 s) fsyncs nothing.
    prefix_unsynced: bool,
}

impl Journal {
    /// Open for appending at `end` (from a scan with its torn tail already cut). The last
    /// segment is fsynced before the first append (`sync_prefix`).
    pub fn open_at(fs: Arc<dyn Fs>, dir: PathBuf, end: Position) -> Result<Journal> {
        let mut j = Journal {
            fs,
            dir,
            segment: end.segment,
            len: end.offset,
            synced_len: end.offset,
            stopped: None,
            file: None,
            prefix_unsynced: false,
        };
        let path = j.segment_path();
        match j.fs.metadata(&path) {
            Ok(m) if m.len != end.offset => {
                return Err(Error::integrity(format!(
                    "journal segment {} is {} bytes long where its records end at {}; it changed \
                     while kubeharden was reading it. Nothing was changed",
                    path.display(),
                    m.len,
                    end.offset
                )))
            }
            Ok(_) => j.prefix_unsynced = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => j.create_segment(end.segment)?,
            Err(e) => return Err(e).ctx(|| format!("stat {}", path.display())),
        }
        Ok(j)
    }

    fn segment_path(&self) -> PathBuf {
        self.dir.join(segment_name(self.segment))
    }

    /// A new segment is durable (header fsynced, directory fsynced) before any record goes in
    /// it. If that fails, the half-made file is removed again (or appending stops): a later
    /// segment must never exist beside the one records are appended to.
    fn create_segment(&mut self, n: u32) -> Result<()> {
        let path = self.dir.join(segment_name(n));
        let made = (|| -> io::Result<Box<dyn FsFile>> {
            let mut f = self.fs.create_new(&path, 0o600)?;
            f.write_all(&format::encode_segment_header(n))?;
            f.sync()?;
            self.fs.sync_dir(&self.dir)?;
            Ok(f)
        })();
        let f = match made {
            Ok(f) => f,
            Err(e) => {
                let err = Error::Io {
                    context: format!("creating journal segment {}", path.display()),
                    source: io::Error::new(e.kind(), e.to_string()),
                };
                if e.kind() != io::ErrorKind::AlreadyExists {
                    let removed = match self.fs.remove_file(&path) {
                        Ok(()) => self.fs.sync_dir(&self.dir),
                        Err(r) if r.kind() == io::ErrorKind::NotFound => Ok(()),
                        Err(r) => Err(r),
                    };
                    if let Err(r) = removed {
                        self.stop(
                            format!("a half-created {} could not be removed", path.display()),
                            &r,
                        );
                    }
                }
                return Err(err);
            }
        };
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

    fn stop(&mut self, why: String, cause: &io::Error) {
        self.file = None;
        self.stopped = Some((
            format!("{why}: {cause}"),
            cause.kind(),
            cause.raw_os_error(),
        ));
    }

    /// The error every append returns once appending stopped.
    fn stopped_error(&self) -> Option<Error> {
        let (why, kind, errno) = self.stopped.as_ref()?;
        let source = match errno {
            Some(n) => io::Error::from_raw_os_error(*n),
            None => io::Error::from(*kind),
        };
        Some(Error::Io {
            context: format!(
                "the journal {} takes no more records in this process ({why}); its durable \
                 records are intact and the next kubeharden run cuts what follows them",
                self.dir.display()
            ),
            source,
        })
    }

    /// After a failed or short write or a failed fsync: cut the segment back to what was
    /// durable, so that nothing is ever appended behind bytes that may not be on disk.
    fn cut_back(&mut self, failed: &io::Error) {
        self.file = None;
        let path = self.segment_path();
        match self.fs.truncate(&path, self.synced_len) {
            Ok(()) => self.len = self.synced_len,
            Err(e) => self.stop(
                format!(
                    "after `{failed}`, cutting {} back to its last durable record at offset {} \
                     failed",
                    path.display(),
                    self.synced_len
                ),
                &e,
            ),
        }
    }

    /// Append one record (not yet durable: call `sync`). Returns it as a reader would see it.
    /// On failure, every record appended since the last good `sync` is gone too.
    pub fn append(&mut self, rec: &Record) -> Result<Located> {
        if let Some(e) = self.stopped_error() {
            return Err(e);
        }
        if self.prefix_unsynced {
            self.sync_prefix()?;
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
        if let Err(e) = self.file()?.write_all(&frame) {
            self.cut_back(&e);
            return Err(self.stopped_error().unwrap_or(Error::Io {
                context: format!(
                    "appending to journal segment {} (cut back to its last durable record; \
                     nothing after it was kept)",
                    path.display()
                ),
                source: e,
            }));
        }
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

    /// The fsync `open_at` defers: what a previous process wrote may have been read back from
    /// the page cache only (its fsync failed, or it died before it), and nothing is appended
    /// behind bytes that are not durable. A failure stops appending (never retried).
    fn sync_prefix(&mut self) -> Result<()> {
        let path = self.segment_path();
        if let Err(e) = self.file()?.sync() {
            self.stop(
                format!(
                    "fsync of journal segment {} before appending",
                    path.display()
                ),
                &e,
            );
            return Err(Error::Io {
                context: format!(
                    "fsync journal segment {} before appending (nothing was appended)",
                    path.display()
                ),
                source: e,
            });
        }
        self.prefix_unsynced = false;
        Ok(())
    }

    /// fsync the current segment. A failure is final for what it covered: those records are
    /// cut off, and the caller fails the transaction.
    pub fn sync(&mut self) -> Result<()> {
        if let Some(e) = self.stopped_error() {
            return Err(e);
        }
        if self.len == self.synced_len && self.file.is_none() {
            return Ok(());
        }
        let path = self.segment_path();
        match self.file()?.sync() {
            Ok(()) => {
                self.synced_len = self.len;
                Ok(())
            }
            Err(e) => {
                self.cut_back(&e);
                Err(self.stopped_error().unwrap_or(Error::Io {
                    context: format!(
                        "fsync journal segment {} (the records it covered were cut off)",
                        path.display()
                    ),
                    source: e,
                }))
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

    /// Why appending stopped, if it did.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_ref().map(|s| s.0.as_str())
    }
}

/// fsync the last segment (records a run that died before its fsync left may be in the page
/// cache only).
pub fn sync_last_segment(fs: &dyn Fs, dir: &Path) -> Result<()> {
    let Some(&last) = list_segments(fs, dir)?.last() else {
        return Ok(());
    };
    let path = dir.join(segment_name(last));
    fs.open_append(&path)
        .and_then(|mut f| f.sync())
        .ctx(|| format!("fsync journal segment {}", path.display()))
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
