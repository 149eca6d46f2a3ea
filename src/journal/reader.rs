//! Reading a segment's bytes record by record, telling a torn tail from corruption.
//!
//! See `../../journal-format/README.md`, "Reading a segment: torn tail or corruption". The reader
//! is handed the bytes of one segment and does not know whether it is the last one: a torn tail
//! is only acceptable in the last segment, and the caller turns a [`ReadOutcome::TornTail`] (or a
//! [`HeaderProblem::Torn`]) in any earlier segment into corruption. The reader never panics.

use std::fmt;

use super::format::{
    decode_payload, record_checksum, CHECKSUM_OFFSET, FORMAT_VERSION, LENGTH_OFFSET, MAGIC_OFFSET,
    MAX_PAYLOAD, PAYLOAD_OFFSET, RECORD_HEADER_LEN, RESERVED_OFFSET, SEGMENT_HEADER_LEN,
    SEGMENT_MAGIC, SEGMENT_NUMBER_OFFSET, TYPE_OFFSET, VERSION_OFFSET,
};
use super::record::Record;

/// A bad byte that is not part of a torn tail: the journal cannot be trusted past `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// Offset in the segment file of the record (or header field) that could not be read.
    pub offset: u64,
    /// Short fixed reason: "checksum mismatch", "bad record length", "trailing bytes", ...
    pub reason: &'static str,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.reason, self.offset)
    }
}

impl std::error::Error for Corruption {}

/// A record read back, with where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Offset of the frame's first byte in the segment file.
    pub offset: u64,
    /// Length of the whole frame, header included: the next record starts at `offset + len`.
    pub len: u64,
    /// The frame's checksum field (verified).
    pub checksum: [u8; 8],
    pub record: Record,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    Record(Decoded),
    /// The segment ends in a record that was never completely written. Acceptable only in the
    /// last segment, where recovery cuts the file to `offset` bytes and says so in a
    /// TRUNCATED_TAIL record. `dropped` is the number of bytes from `offset` to the end.
    TornTail {
        offset: u64,
        dropped: u64,
        reason: &'static str,
    },
    /// The bytes end exactly after a record.
    End,
}

/// What is wrong with a segment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderProblem {
    /// The header was never completely written (fewer than 16 bytes, or a segment that is zeros
    /// from its first byte to its last). Only acceptable in the last segment; no record follows.
    Torn { reason: &'static str },
    /// A header that was written and is wrong: magic, version, reserved bytes or number.
    Corrupt(Corruption),
}

impl fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderProblem::Torn { reason } => write!(f, "{reason} (torn segment header)"),
            HeaderProblem::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for HeaderProblem {}

fn corrupt_at(offset: usize, reason: &'static str) -> HeaderProblem {
    HeaderProblem::Corrupt(Corruption {
        offset: offset as u64,
        reason,
    })
}

/// Check the 16-byte header at the start of a segment's bytes ("Segment header").
pub fn check_segment_header(bytes: &[u8], expected_segment: u32) -> Result<(), HeaderProblem> {
    // The writer fsyncs a new segment's header (and the directory) before any record goes in,
    // so a header can only be torn if the segment holds nothing else: fewer than 16 bytes, or
    // zeros throughout. Zeros followed by anything non-zero mean a durable header was lost.
    if bytes.len() < SEGMENT_HEADER_LEN {
        return Err(HeaderProblem::Torn {
            reason: "incomplete segment header",
        });
    }
    if bytes.iter().all(|&b| b == 0) {
        return Err(HeaderProblem::Torn {
            reason: "zero-filled segment header",
        });
    }
    let h = &bytes[..SEGMENT_HEADER_LEN];
    if h[MAGIC_OFFSET..VERSION_OFFSET] != SEGMENT_MAGIC {
        return Err(corrupt_at(MAGIC_OFFSET, "bad segment magic"));
    }
    if h[VERSION_OFFSET] != FORMAT_VERSION {
        return Err(corrupt_at(VERSION_OFFSET, "unsupported format version"));
    }
    if h[RESERVED_OFFSET..SEGMENT_NUMBER_OFFSET]
        .iter()
        .any(|&b| b != 0)
    {
        return Err(corrupt_at(RESERVED_OFFSET, "nonzero reserved bytes"));
    }
    let mut n = [0u8; 4];
    n.copy_from_slice(&h[SEGMENT_NUMBER_OFFSET..SEGMENT_HEADER_LEN]);
    if u32::from_le_bytes(n) != expected_segment {
        return Err(corrupt_at(SEGMENT_NUMBER_OFFSET, "segment number mismatch"));
    }
    Ok(())
}

/// Reads records one by one from a segment's bytes.
///
/// After a `TornTail` or `End`, `next` keeps returning `End`; after a `Corruption`, it keeps
/// returning the same `Corruption`.
pub struct SegmentReader<'a> {
    bytes: &'a [u8],
    pos: u64,
    state: State,
}

enum State {
    Reading,
    Done,
    Failed(Corruption),
}

/// How many payload bytes the "is a record hiding behind this tail?" scan may look at before it
/// gives up and lets the tail rule stand (256 MiB: a fraction of a second). Only a tail region
/// of many MiB with many plausible-looking lengths in it can get there.
const TAIL_SCAN_BUDGET: u64 = 256 * 1024 * 1024;

impl<'a> SegmentReader<'a> {
    /// Read `bytes` (a whole segment file) starting at offset `start`, normally
    /// [`SEGMENT_HEADER_LEN`]. Reported offsets are offsets in `bytes`.
    pub fn new(bytes: &'a [u8], start: u64) -> Self {
        SegmentReader {
            bytes,
            pos: start,
            state: State::Reading,
        }
    }

    /// Offset of the next record to read (after a `TornTail`: the start of the torn record).
    pub fn position(&self) -> u64 {
        self.pos
    }

    // Not `Iterator::next`: the end is a value of its own (`End`), and errors are sticky.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<ReadOutcome, Corruption> {
        match &self.state {
            State::Reading => {}
            State::Done => return Ok(ReadOutcome::End),
            State::Failed(c) => return Err(c.clone()),
        }
        let out = self.read_one();
        match &out {
            Ok(ReadOutcome::Record(d)) => self.pos = d.offset + d.len,
            Ok(ReadOutcome::TornTail { .. } | ReadOutcome::End) => self.state = State::Done,
            Err(c) => self.state = State::Failed(c.clone()),
        }
        out
    }

    fn read_one(&self) -> Result<ReadOutcome, Corruption> {
        let x = self.pos;
        let rest = match usize::try_from(x).ok().and_then(|p| self.bytes.get(p..)) {
            Some(rest) => rest,
            None => {
                return Err(Corruption {
                    offset: x,
                    reason: "offset past end of segment",
                })
            }
        };
        if rest.is_empty() {
            return Ok(ReadOutcome::End);
        }
        let dropped = rest.len() as u64;
        let torn = |reason| {
            Ok(ReadOutcome::TornTail {
                offset: x,
                dropped,
                reason,
            })
        };
        let corrupt = |reason| Err(Corruption { offset: x, reason });

        // Offset X = `x` holds the first record that cannot be read. Torn tail or corruption is
        // decided here, in this order ("Reading a segment: torn tail or corruption"):
        //
        // 1. Fewer than a header's bytes remain: the writer died while appending the header.
        if rest.len() < RECORD_HEADER_LEN {
            return torn("incomplete header");
        }
        // 2. Zeros from X to the end: a file system may extend a file with zeros when the power
        //    is lost after the size was updated but before the data reached the disk. (A real
        //    frame is never all zeros: its checksum would have to be zero.)
        if rest.iter().all(|&b| b == 0) {
            return torn("zero-filled tail");
        }
        let length = length_field(rest);
        // 3. A length no writer produces is not a torn write: tearing cuts bytes off, it does not
        //    invent a length.
        if length > MAX_PAYLOAD {
            return corrupt("bad record length");
        }
        let frame_len = RECORD_HEADER_LEN + length;
        // 4. The frame runs past the end: the writer died while appending the payload, unless a
        //    complete record starts after X, which proves the length field itself is damaged.
        if frame_len > rest.len() {
            return if valid_record_after(rest) {
                corrupt("bad record length")
            } else {
                torn("incomplete record")
            };
        }
        let frame = &rest[..frame_len];
        let mut checksum = [0u8; 8];
        checksum.copy_from_slice(&frame[CHECKSUM_OFFSET..PAYLOAD_OFFSET]);
        // 5. Checksum mismatch. If the frame ends exactly at the end of the bytes, or only
        //    zeros follow it, it is the last thing the writer appended and its pages reached
        //    the disk only in part (the rest of an un-fsynced append may read back as zeros):
        //    torn. If anything else follows it, or a complete record hides inside the frame's
        //    extent, it was overwritten or decayed after the fact: corruption.
        if record_checksum(frame) != checksum {
            let only_zeros_after = rest[frame_len..].iter().all(|&b| b == 0);
            return if only_zeros_after && !valid_record_after(rest) {
                torn("checksum mismatch at tail")
            } else {
                corrupt("checksum mismatch")
            };
        }
        // 6. A record that was written in full and checksummed cannot be torn: if its payload
        //    does not decode, the writer or the disk is broken. Corruption.
        match decode_payload(frame[TYPE_OFFSET], &frame[PAYLOAD_OFFSET..]) {
            Ok(record) => Ok(ReadOutcome::Record(Decoded {
                offset: x,
                len: frame_len as u64,
                checksum,
                record,
            })),
            Err(reason) => corrupt(reason),
        }
    }
}

/// The `length` field of the frame starting at `frame[0]` (at least RECORD_HEADER_LEN bytes).
fn length_field(frame: &[u8]) -> usize {
    let mut b = [0u8; 4];
    b.copy_from_slice(&frame[LENGTH_OFFSET..TYPE_OFFSET]);
    u32::from_le_bytes(b) as usize
}

/// Does a complete, checksummed, decodable record start somewhere after the first byte of
/// `rest`? If so, whatever is wrong at the start of `rest` is not a torn tail: the writer only
/// ever appends, so nothing it wrote completely can lie beyond the point where it was cut off.
///
/// Candidates are filtered by length and then by decoding (cheap, fails fast) before their
/// checksum is computed. The scan gives up after [`TAIL_SCAN_BUDGET`] payload bytes and then
/// answers "no", leaving the plain tail rule in force.
fn valid_record_after(rest: &[u8]) -> bool {
    let mut budget = TAIL_SCAN_BUDGET;
    for y in 1..rest.len() {
        let cand = &rest[y..];
        if cand.len() < RECORD_HEADER_LEN {
            break;
        }
        let length = length_field(cand);
        if length > MAX_PAYLOAD || RECORD_HEADER_LEN + length > cand.len() {
            continue;
        }
        // Charge the payload twice at most: once for decoding, once for hashing.
        let cost = length as u64 + 1;
        if budget < cost {
            return false;
        }
        budget -= cost;
        let frame = &cand[..RECORD_HEADER_LEN + length];
        if decode_payload(frame[TYPE_OFFSET], &frame[PAYLOAD_OFFSET..]).is_err() {
            continue;
        }
        if budget < cost {
            return false;
        }
        budget -= cost;
        if record_checksum(frame) == frame[CHECKSUM_OFFSET..PAYLOAD_OFFSET] {
            return true;
        }
    }
    false
}

/// What [`decode_segment`] returns besides the records: `(offset, dropped, reason)` of a torn
/// tail (offset 0 and the whole length for a torn segment header).
pub type TornAt = (u64, u64, &'static str);

/// Check the header, then read every record of one segment.
///
/// `Ok((records, None))`: the segment ends cleanly. `Ok((records, Some(torn)))`: it ends in a
/// torn tail or is a torn (empty) segment — fine for the last segment, corruption for any other
/// (the caller decides). `Err`: corruption; the records before it are not returned.
pub fn decode_segment(
    bytes: &[u8],
    expected_segment: u32,
) -> Result<(Vec<Decoded>, Option<TornAt>), Corruption> {
    match check_segment_header(bytes, expected_segment) {
        Ok(()) => {}
        Err(HeaderProblem::Torn { reason }) => {
            return Ok((Vec::new(), Some((0, bytes.len() as u64, reason))))
        }
        Err(HeaderProblem::Corrupt(c)) => return Err(c),
    }
    let mut reader = SegmentReader::new(bytes, SEGMENT_HEADER_LEN as u64);
    let mut records = Vec::new();
    loop {
        match reader.next()? {
            ReadOutcome::Record(d) => records.push(d),
            ReadOutcome::TornTail {
                offset,
                dropped,
                reason,
            } => return Ok((records, Some((offset, dropped, reason)))),
            ReadOutcome::End => return Ok((records, None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::format::tests::one_of_each;
    use crate::journal::format::{encode_record, encode_segment_header};

    /// A segment with a header and one record of every type; also the offset of each record.
    fn segment() -> (Vec<u8>, Vec<usize>) {
        let mut bytes = encode_segment_header(1).to_vec();
        let mut offsets = Vec::new();
        for rec in one_of_each() {
            offsets.push(bytes.len());
            bytes.extend_from_slice(&encode_record(&rec));
        }
        (bytes, offsets)
    }

    fn torn(bytes: &[u8]) -> Option<TornAt> {
        decode_segment(bytes, 1).expect("not corruption").1
    }

    fn corruption(bytes: &[u8]) -> Corruption {
        decode_segment(bytes, 1).expect_err("corruption")
    }

    #[test]
    fn whole_segment_reads_back_cleanly() {
        let (bytes, offsets) = segment();
        let (recs, tail) = decode_segment(&bytes, 1).unwrap();
        assert_eq!(tail, None);
        assert_eq!(
            recs.iter().map(|d| d.record.clone()).collect::<Vec<_>>(),
            one_of_each()
        );
        for (d, off) in recs.iter().zip(&offsets) {
            assert_eq!(d.offset, *off as u64);
            let frame = &bytes[*off..*off + d.len as usize];
            assert_eq!(encode_record(&d.record), frame);
            assert_eq!(d.checksum, frame[CHECKSUM_OFFSET..PAYLOAD_OFFSET]);
        }
    }

    #[test]
    fn header_only_segment_is_clean_and_empty() {
        assert_eq!(
            decode_segment(&encode_segment_header(1), 1),
            Ok((vec![], None))
        );
    }

    #[test]
    fn truncated_trailing_record_is_torn_tail() {
        let (bytes, offsets) = segment();
        let last = *offsets.last().unwrap();
        for cut in last + 1..bytes.len() {
            let reason = if cut - last < RECORD_HEADER_LEN {
                "incomplete header"
            } else {
                "incomplete record"
            };
            let (recs, tail) = decode_segment(&bytes[..cut], 1).unwrap();
            assert_eq!(recs.len(), offsets.len() - 1);
            assert_eq!(
                tail,
                Some((last as u64, (cut - last) as u64, reason)),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn zero_filled_tail_is_torn_tail() {
        let (mut bytes, _) = segment();
        let end = bytes.len();
        bytes.resize(end + 4096, 0);
        assert_eq!(torn(&bytes), Some((end as u64, 4096, "zero-filled tail")));
    }

    #[test]
    fn record_whose_end_reads_back_as_zeros_is_torn_tail() {
        // An un-fsynced append of which only the first bytes reached the disk; the rest of the
        // file, as far as its size goes, reads back as zeros.
        let (mut bytes, offsets) = segment();
        let last = *offsets.last().unwrap();
        let keep = last + RECORD_HEADER_LEN + 3;
        bytes[keep..].fill(0);
        bytes.resize(bytes.len() + 100, 0);
        let dropped = (bytes.len() - last) as u64;
        assert_eq!(
            torn(&bytes),
            Some((last as u64, dropped, "checksum mismatch at tail"))
        );
    }

    #[test]
    fn flipped_byte_in_last_record_is_torn_tail() {
        let (mut bytes, offsets) = segment();
        let last = *offsets.last().unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0x01;
        let dropped = (n - last) as u64;
        assert_eq!(
            torn(&bytes),
            Some((last as u64, dropped, "checksum mismatch at tail"))
        );
    }

    #[test]
    fn flipped_byte_before_last_record_is_corruption() {
        let (bytes, offsets) = segment();
        let last = *offsets.last().unwrap();
        for at in SEGMENT_HEADER_LEN..last {
            for bit in [0x01, 0x80] {
                let mut b = bytes.clone();
                b[at] ^= bit;
                let start = *offsets.iter().rev().find(|&&o| o <= at).unwrap();
                let c = corruption(&b);
                assert_eq!(c.offset, start as u64, "byte {at} bit {bit:#x}: {c}");
            }
        }
    }

    #[test]
    fn grown_length_before_last_record_is_corruption_not_torn() {
        // The frame now runs past the end, which alone would look like a torn append; the
        // intact record after it proves otherwise.
        let (mut bytes, offsets) = segment();
        let at = offsets[1];
        bytes[at + 2] = 0x01; // length += 64 KiB
        assert_eq!(
            corruption(&bytes),
            Corruption {
                offset: at as u64,
                reason: "bad record length"
            }
        );
    }

    #[test]
    fn overlong_length_is_corruption() {
        let (mut bytes, offsets) = segment();
        let last = *offsets.last().unwrap();
        bytes[last + 3] = 0x02; // length > 16 MiB, even at the tail
        assert_eq!(
            corruption(&bytes),
            Corruption {
                offset: last as u64,
                reason: "bad record length"
            }
        );
    }

    #[test]
    fn checksummed_record_that_does_not_decode_is_corruption() {
        let (mut bytes, _) = segment();
        let payload = [9u8; 16];
        let off = bytes.len();
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.push(99);
        bytes.extend_from_slice(&crate::journal::format::frame_checksum(16, 99, &payload));
        bytes.extend_from_slice(&payload);
        assert_eq!(
            corruption(&bytes),
            Corruption {
                offset: off as u64,
                reason: "unknown record type"
            }
        );
    }

    #[test]
    fn segment_header_problems() {
        let good = encode_segment_header(1);
        assert_eq!(check_segment_header(&good, 1), Ok(()));
        let torn_reason = |b: &[u8]| match check_segment_header(b, 1) {
            Err(HeaderProblem::Torn { reason }) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(torn_reason(&good[..5]), "incomplete segment header");
        assert_eq!(torn_reason(&[]), "incomplete segment header");
        assert_eq!(torn_reason(&[0; 40]), "zero-filled segment header");
        let corrupt = |b: &[u8], n| match check_segment_header(b, n) {
            Err(HeaderProblem::Corrupt(c)) => (c.offset, c.reason),
            other => panic!("{other:?}"),
        };
        let mut zero_then_data = vec![0u8; 16];
        zero_then_data.push(1);
        assert_eq!(corrupt(&zero_then_data, 1), (0, "bad segment magic"));
        let mut b = good;
        b[8] = 2;
        assert_eq!(corrupt(&b, 1), (8, "unsupported format version"));
        let mut b = good;
        b[10] = 1;
        assert_eq!(corrupt(&b, 1), (9, "nonzero reserved bytes"));
        assert_eq!(corrupt(&good, 2), (12, "segment number mismatch"));
    }

    #[test]
    fn torn_segment_header_reads_as_torn_tail_at_zero() {
        assert_eq!(torn(b"KHJOU"), Some((0, 5, "incomplete segment header")));
    }

    #[test]
    fn reader_starts_anywhere_and_is_sticky() {
        let (bytes, offsets) = segment();
        let mut r = SegmentReader::new(&bytes, offsets[3] as u64);
        let mut n = 0;
        while let ReadOutcome::Record(_) = r.next().unwrap() {
            n += 1;
        }
        assert_eq!(n, offsets.len() - 3);
        assert_eq!(r.next(), Ok(ReadOutcome::End));
        assert_eq!(r.position(), bytes.len() as u64);

        let mut r = SegmentReader::new(&bytes, bytes.len() as u64 + 1);
        let e = r.next().unwrap_err();
        assert_eq!(e.reason, "offset past end of segment");
        assert_eq!(r.next(), Err(e));
    }

    #[test]
    fn corruption_displays_reason_and_offset() {
        let c = Corruption {
            offset: 4096,
            reason: "checksum mismatch",
        };
        assert_eq!(c.to_string(), "checksum mismatch at offset 4096");
    }
}
