//! The bytes of the journal: segment header, record frame, record payloads.
//!
//! See `../../journal-format/README.md`; every item below names the section it implements, and
//! every offset is built from the size of the field before it (as LevelDB's `log_format.h`
//! writes `kHeaderSize = 4 + 2 + 1`). All integers are little-endian.
//!
//! Encoding never fails for a record the reader could read back (`try_encode_record` refuses
//! only payloads above [`MAX_PAYLOAD`]); decoding never panics and never allocates from a length
//! it has not checked against the bytes that remain.

use super::record::{Begin, FileIntent, FileState, Origin, Record, TxnKind, Version};

// ---------------------------------------------------------------------------------------------
// "Segment header"
//
//   magic: [u8; 8]     = b"KHJOURNL"
//   version: u8        = FORMAT_VERSION
//   reserved: [u8; 3]  = 0, 0, 0
//   segment: u32       the number in the file name
// ---------------------------------------------------------------------------------------------

pub const SEGMENT_MAGIC: [u8; 8] = *b"KHJOURNL";
/// The version byte of every segment header. A reader refuses any other value ("Version changes").
pub const FORMAT_VERSION: u8 = 1;

pub const MAGIC_LEN: usize = SEGMENT_MAGIC.len();
pub const VERSION_LEN: usize = 1;
pub const RESERVED_LEN: usize = 3;
pub const SEGMENT_NUMBER_LEN: usize = 4;

pub const MAGIC_OFFSET: usize = 0;
pub const VERSION_OFFSET: usize = MAGIC_OFFSET + MAGIC_LEN;
pub const RESERVED_OFFSET: usize = VERSION_OFFSET + VERSION_LEN;
pub const SEGMENT_NUMBER_OFFSET: usize = RESERVED_OFFSET + RESERVED_LEN;
pub const SEGMENT_HEADER_LEN: usize = SEGMENT_NUMBER_OFFSET + SEGMENT_NUMBER_LEN;
const _: () = assert!(SEGMENT_HEADER_LEN == 16); // 8 + 1 + 3 + 4

/// "Segment rotation": the writer starts a new segment when the next record would push the
/// current one past this many bytes (a segment that holds no record yet takes any record).
pub const SEGMENT_TARGET_LEN: u64 = 8 * 1024 * 1024;

/// "Segment files": `NNNNNNNN.wal`, the segment number in 8 decimal digits, from 00000001.
pub fn segment_file_name(segment: u32) -> String {
    format!("{segment:08}.wal")
}

/// The segment number of a file name written by [`segment_file_name`]; `None` for any other
/// name (exactly 8 ASCII digits, `.wal`, and not 0).
pub fn parse_segment_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&n| n != 0)
}

pub fn encode_segment_header(segment: u32) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[MAGIC_OFFSET..VERSION_OFFSET].copy_from_slice(&SEGMENT_MAGIC);
    h[VERSION_OFFSET] = FORMAT_VERSION;
    // RESERVED_OFFSET..SEGMENT_NUMBER_OFFSET stays zero.
    h[SEGMENT_NUMBER_OFFSET..SEGMENT_HEADER_LEN].copy_from_slice(&segment.to_le_bytes());
    h
}

// ---------------------------------------------------------------------------------------------
// "Record frame"
//
//   length: u32        payload length, at most MAX_PAYLOAD
//   type: u8           RecordType
//   checksum: [u8; 8]  first 8 bytes of blake3(length ‖ type ‖ payload)
//   payload: [u8; length]
// ---------------------------------------------------------------------------------------------

pub const LENGTH_LEN: usize = 4;
pub const TYPE_LEN: usize = 1;
pub const CHECKSUM_LEN: usize = 8;

pub const LENGTH_OFFSET: usize = 0;
pub const TYPE_OFFSET: usize = LENGTH_OFFSET + LENGTH_LEN;
pub const CHECKSUM_OFFSET: usize = TYPE_OFFSET + TYPE_LEN;
pub const PAYLOAD_OFFSET: usize = CHECKSUM_OFFSET + CHECKSUM_LEN;
pub const RECORD_HEADER_LEN: usize = LENGTH_LEN + TYPE_LEN + CHECKSUM_LEN;
const _: () = assert!(RECORD_HEADER_LEN == 4 + 1 + 8 && RECORD_HEADER_LEN == PAYLOAD_OFFSET);

/// The largest payload a frame may declare: 16 MiB. A larger length is corruption.
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;
const _: () = assert!(MAX_PAYLOAD <= u32::MAX as usize);

/// "Record types": the `type` byte of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    Begin = 1,
    Applied = 2,
    Commit = 3,
    RolledBack = 4,
    RollbackFailed = 5,
    Aborted = 6,
    Reverted = 7,
    Conflict = 8,
    Version = 9,
    TruncatedTail = 10,
    Pruned = 11,
    GateResult = 12,
}

impl RecordType {
    pub const ALL: [RecordType; 12] = [
        RecordType::Begin,
        RecordType::Applied,
        RecordType::Commit,
        RecordType::RolledBack,
        RecordType::RollbackFailed,
        RecordType::Aborted,
        RecordType::Reverted,
        RecordType::Conflict,
        RecordType::Version,
        RecordType::TruncatedTail,
        RecordType::Pruned,
        RecordType::GateResult,
    ];

    pub fn from_u8(b: u8) -> Option<RecordType> {
        RecordType::ALL.into_iter().find(|t| *t as u8 == b)
    }

    pub fn of(rec: &Record) -> RecordType {
        match rec {
            Record::Begin(_) => RecordType::Begin,
            Record::Applied { .. } => RecordType::Applied,
            Record::Commit { .. } => RecordType::Commit,
            Record::RolledBack { .. } => RecordType::RolledBack,
            Record::RollbackFailed { .. } => RecordType::RollbackFailed,
            Record::Aborted { .. } => RecordType::Aborted,
            Record::Reverted { .. } => RecordType::Reverted,
            Record::Conflict { .. } => RecordType::Conflict,
            Record::Version(_) => RecordType::Version,
            Record::TruncatedTail { .. } => RecordType::TruncatedTail,
            Record::Pruned { .. } => RecordType::Pruned,
            Record::GateResult { .. } => RecordType::GateResult,
        }
    }

    /// The name the spec uses (`BEGIN`, `ROLLED_BACK`, ...).
    pub fn name(self) -> &'static str {
        match self {
            RecordType::Begin => "BEGIN",
            RecordType::Applied => "APPLIED",
            RecordType::Commit => "COMMIT",
            RecordType::RolledBack => "ROLLED_BACK",
            RecordType::RollbackFailed => "ROLLBACK_FAILED",
            RecordType::Aborted => "ABORTED",
            RecordType::Reverted => "REVERTED",
            RecordType::Conflict => "CONFLICT",
            RecordType::Version => "VERSION",
            RecordType::TruncatedTail => "TRUNCATED_TAIL",
            RecordType::Pruned => "PRUNED",
            RecordType::GateResult => "GATE",
        }
    }
}

/// "Checksum": the first 8 bytes of blake3 over the length field, the type byte and the payload
/// (the frame minus its checksum field).
pub fn frame_checksum(length: u32, ty: u8, payload: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut h = blake3::Hasher::new();
    h.update(&length.to_le_bytes());
    h.update(&[ty]);
    h.update(payload);
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&h.finalize().as_bytes()[..CHECKSUM_LEN]);
    out
}

/// The checksum an encoded frame should carry: blake3 over its length and type fields as
/// written and every byte after its header. It does not read the frame's checksum field, and
/// does not panic on a frame shorter than a header (the reader never asks for one).
pub fn record_checksum(frame: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut h = blake3::Hasher::new();
    h.update(&frame[..frame.len().min(CHECKSUM_OFFSET)]);
    h.update(frame.get(PAYLOAD_OFFSET..).unwrap_or_default());
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&h.finalize().as_bytes()[..CHECKSUM_LEN]);
    out
}

/// The whole frame (header and payload) of a record.
///
/// # Panics
/// If the payload exceeds [`MAX_PAYLOAD`] — a record the reader would call corruption must
/// never reach the disk. Use [`try_encode_record`] where a record's size depends on input.
pub fn encode_record(rec: &Record) -> Vec<u8> {
    match try_encode_record(rec) {
        Ok(frame) => frame,
        Err(reason) => panic!("journal: {reason}: {:?} payload", RecordType::of(rec)),
    }
}

/// The whole frame of a record, or `Err("record too large")` if its payload would exceed
/// [`MAX_PAYLOAD`].
pub fn try_encode_record(rec: &Record) -> Result<Vec<u8>, &'static str> {
    let mut e = Enc(Vec::with_capacity(RECORD_HEADER_LEN + 64));
    e.0.resize(RECORD_HEADER_LEN, 0);
    encode_payload_into(rec, &mut e);
    let mut frame = e.0;
    let payload_len = frame.len() - RECORD_HEADER_LEN;
    if payload_len > MAX_PAYLOAD {
        return Err("record too large");
    }
    let length = payload_len as u32;
    let ty = RecordType::of(rec) as u8;
    frame[LENGTH_OFFSET..TYPE_OFFSET].copy_from_slice(&length.to_le_bytes());
    frame[TYPE_OFFSET] = ty;
    let sum = frame_checksum(length, ty, &frame[PAYLOAD_OFFSET..]);
    frame[CHECKSUM_OFFSET..PAYLOAD_OFFSET].copy_from_slice(&sum);
    Ok(frame)
}

/// The payload alone (no frame header), as described in "Record payloads".
pub fn encode_payload(rec: &Record) -> Vec<u8> {
    let mut e = Enc(Vec::new());
    encode_payload_into(rec, &mut e);
    e.0
}

// ---------------------------------------------------------------------------------------------
// "Field encodings" and "Record payloads"
//
//   str        = len: u32 ‖ UTF-8 bytes
//   hash       = [u8; 32]
//   FileState  = hash ‖ size: u64 ‖ mode: u32 ‖ uid: u32 ‖ gid: u32
// ---------------------------------------------------------------------------------------------

pub const HASH_LEN: usize = 32;
pub const FILE_STATE_LEN: usize = HASH_LEN + 8 + 4 + 4 + 4;
const _: () = assert!(FILE_STATE_LEN == 52);
/// The smallest `str` (an empty one): its length field.
const MIN_STR_LEN: usize = 4;
/// The smallest per-file entry of BEGIN: empty path, two FileStates.
const MIN_FILE_INTENT_LEN: usize = MIN_STR_LEN + 2 * FILE_STATE_LEN;

struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// A string longer than u32::MAX bytes cannot be framed anyway: the payload check in
    /// `try_encode_record` refuses it (its payload is far above MAX_PAYLOAD).
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn count(&mut self, n: usize) {
        self.u32(n as u32);
    }
    fn file_state(&mut self, f: &FileState) {
        self.0.extend_from_slice(&f.hash);
        self.u64(f.size);
        self.u32(f.mode);
        self.u32(f.uid);
        self.u32(f.gid);
    }
}

fn encode_payload_into(rec: &Record, e: &mut Enc) {
    match rec {
        Record::Begin(b) => {
            e.u64(b.txn);
            e.i64(b.at);
            e.u8(b.kind as u8);
            e.str(&b.reason);
            e.count(b.files.len());
            for f in &b.files {
                e.str(&f.path);
                e.file_state(&f.before);
                e.file_state(&f.after);
            }
        }
        Record::Applied { txn, at }
        | Record::Commit { txn, at }
        | Record::Aborted { txn, at }
        | Record::Reverted { txn, at } => {
            e.u64(*txn);
            e.i64(*at);
        }
        Record::RolledBack { txn, at, reason }
        | Record::RollbackFailed { txn, at, reason }
        | Record::GateResult {
            txn,
            at,
            summary: reason,
        } => {
            e.u64(*txn);
            e.i64(*at);
            e.str(reason);
        }
        Record::Conflict { txn, at, paths } => {
            e.u64(*txn);
            e.i64(*at);
            e.count(paths.len());
            for p in paths {
                e.str(p);
            }
        }
        Record::Version(v) => {
            e.str(&v.path);
            e.file_state(&v.state);
            e.u8(v.origin as u8);
            e.u64(v.txn);
            e.i64(v.recorded_at);
            e.i64(v.on_disk_from);
        }
        Record::TruncatedTail {
            at,
            segment,
            offset,
            dropped,
        } => {
            e.i64(*at);
            e.u32(*segment);
            e.u64(*offset);
            e.u64(*dropped);
        }
        Record::Pruned { at, reason, hashes } => {
            e.i64(*at);
            e.str(reason);
            e.count(hashes.len());
            for h in hashes {
                e.0.extend_from_slice(h);
            }
        }
    }
}

/// Reads fields off the front of a payload. Every read checks what remains first.
struct Dec<'a>(&'a [u8]);

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if n > self.0.len() {
            return Err("payload too short");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, &'static str> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn str(&mut self) -> Result<String, &'static str> {
        let n = self.u32()? as usize;
        if n > self.0.len() {
            return Err("string length past end of payload");
        }
        let bytes = self.take(n)?;
        let s = std::str::from_utf8(bytes).map_err(|_| "invalid utf-8 in string")?;
        Ok(s.to_owned())
    }
    /// An element count, checked against the smallest possible element so that a forged count
    /// cannot make us reserve memory the payload could not fill.
    fn count(&mut self, min_elem_len: usize) -> Result<usize, &'static str> {
        let n = self.u32()? as usize;
        match n.checked_mul(min_elem_len) {
            Some(need) if need <= self.0.len() => Ok(n),
            _ => Err("count past end of payload"),
        }
    }
    fn file_state(&mut self) -> Result<FileState, &'static str> {
        Ok(FileState {
            hash: self.array::<HASH_LEN>()?,
            size: self.u64()?,
            mode: self.u32()?,
            uid: self.u32()?,
            gid: self.u32()?,
        })
    }
    fn txn_kind(&mut self) -> Result<TxnKind, &'static str> {
        match self.u8()? {
            1 => Ok(TxnKind::Set),
            2 => Ok(TxnKind::Restore),
            3 => Ok(TxnKind::Remediate),
            _ => Err("unknown transaction kind"),
        }
    }
    fn origin(&mut self) -> Result<Origin, &'static str> {
        match self.u8()? {
            1 => Ok(Origin::Baseline),
            2 => Ok(Origin::External),
            3 => Ok(Origin::Change),
            4 => Ok(Origin::Restore),
            5 => Ok(Origin::Rollback),
            6 => Ok(Origin::Recovery),
            _ => Err("unknown origin"),
        }
    }
    fn finish(self) -> Result<(), &'static str> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err("trailing bytes")
        }
    }
}

/// Decode the payload of a frame whose type byte is `ty`. The error is a short fixed reason:
/// "unknown record type", "payload too short", "string length past end of payload",
/// "invalid utf-8 in string", "count past end of payload", "unknown transaction kind",
/// "unknown origin", "trailing bytes".
pub fn decode_payload(ty: u8, payload: &[u8]) -> Result<Record, &'static str> {
    let ty = RecordType::from_u8(ty).ok_or("unknown record type")?;
    let mut d = Dec(payload);
    let rec = match ty {
        RecordType::Begin => {
            let txn = d.u64()?;
            let at = d.i64()?;
            let kind = d.txn_kind()?;
            let reason = d.str()?;
            let n = d.count(MIN_FILE_INTENT_LEN)?;
            let mut files = Vec::with_capacity(n);
            for _ in 0..n {
                files.push(FileIntent {
                    path: d.str()?,
                    before: d.file_state()?,
                    after: d.file_state()?,
                });
            }
            Record::Begin(Begin {
                txn,
                at,
                kind,
                reason,
                files,
            })
        }
        RecordType::Applied | RecordType::Commit | RecordType::Aborted | RecordType::Reverted => {
            let txn = d.u64()?;
            let at = d.i64()?;
            match ty {
                RecordType::Applied => Record::Applied { txn, at },
                RecordType::Commit => Record::Commit { txn, at },
                RecordType::Aborted => Record::Aborted { txn, at },
                _ => Record::Reverted { txn, at },
            }
        }
        RecordType::RolledBack | RecordType::RollbackFailed => {
            let txn = d.u64()?;
            let at = d.i64()?;
            let reason = d.str()?;
            if ty == RecordType::RolledBack {
                Record::RolledBack { txn, at, reason }
            } else {
                Record::RollbackFailed { txn, at, reason }
            }
        }
        RecordType::Conflict => {
            let txn = d.u64()?;
            let at = d.i64()?;
            let n = d.count(MIN_STR_LEN)?;
            let mut paths = Vec::with_capacity(n);
            for _ in 0..n {
                paths.push(d.str()?);
            }
            Record::Conflict { txn, at, paths }
        }
        RecordType::Version => Record::Version(Version {
            path: d.str()?,
            state: d.file_state()?,
            origin: d.origin()?,
            txn: d.u64()?,
            recorded_at: d.i64()?,
            on_disk_from: d.i64()?,
        }),
        RecordType::TruncatedTail => Record::TruncatedTail {
            at: d.i64()?,
            segment: d.u32()?,
            offset: d.u64()?,
            dropped: d.u64()?,
        },
        RecordType::GateResult => Record::GateResult {
            txn: d.u64()?,
            at: d.i64()?,
            summary: d.str()?,
        },
        RecordType::Pruned => {
            let at = d.i64()?;
            let reason = d.str()?;
            let n = d.count(HASH_LEN)?;
            let mut hashes = Vec::with_capacity(n);
            for _ in 0..n {
                hashes.push(d.array::<HASH_LEN>()?);
            }
            Record::Pruned { at, reason, hashes }
        }
    };
    d.finish()?;
    Ok(rec)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn state(seed: u8) -> FileState {
        FileState {
            hash: *blake3::hash(&[seed]).as_bytes(),
            size: 1000 + seed as u64,
            mode: 0o600,
            uid: 0,
            gid: seed as u32,
        }
    }

    /// One record of every type, in type-code order.
    pub(crate) fn one_of_each() -> Vec<Record> {
        vec![
            Record::Begin(Begin {
                txn: 7,
                at: 1_700_000_000_000,
                kind: TxnKind::Remediate,
                reason: "CIS 1.2.16".into(),
                files: vec![FileIntent {
                    path: "/etc/kubernetes/manifests/kube-apiserver.yaml".into(),
                    before: state(1),
                    after: state(2),
                }],
            }),
            Record::Applied { txn: 7, at: 1 },
            Record::Commit { txn: 7, at: 2 },
            Record::RolledBack {
                txn: 8,
                at: 3,
                reason: "probe failed".into(),
            },
            Record::RollbackFailed {
                txn: 9,
                at: 4,
                reason: "EIO".into(),
            },
            Record::Aborted { txn: 10, at: 5 },
            Record::Reverted { txn: 11, at: -6 },
            Record::Conflict {
                txn: 12,
                at: 7,
                paths: vec!["/a".into(), "/b".into()],
            },
            Record::Version(Version {
                path: "/etc/kubernetes/manifests/etcd.yaml".into(),
                state: state(3),
                origin: Origin::Recovery,
                txn: 0,
                recorded_at: 8,
                on_disk_from: 9,
            }),
            Record::TruncatedTail {
                at: 10,
                segment: 3,
                offset: 4096,
                dropped: 17,
            },
            Record::Pruned {
                at: 11,
                reason: "--keep 3".into(),
                hashes: vec![state(4).hash, state(5).hash],
            },
            Record::GateResult {
                txn: 7,
                at: 12,
                summary: "kube-apiserver (change) healthy: restart seen after 850 ms".into(),
            },
        ]
    }

    fn payload_of(frame: &[u8]) -> &[u8] {
        &frame[PAYLOAD_OFFSET..]
    }

    #[test]
    fn every_record_type_round_trips() {
        for (rec, ty) in one_of_each().iter().zip(RecordType::ALL) {
            let frame = encode_record(rec);
            assert_eq!(frame[TYPE_OFFSET], ty as u8);
            let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
            assert_eq!(len + RECORD_HEADER_LEN, frame.len());
            assert_eq!(
                record_checksum(&frame),
                frame[CHECKSUM_OFFSET..PAYLOAD_OFFSET]
            );
            assert_eq!(
                decode_payload(ty as u8, payload_of(&frame)).as_ref(),
                Ok(rec)
            );
            assert_eq!(encode_payload(rec), payload_of(&frame));
        }
    }

    #[test]
    fn record_type_codes_are_the_documented_ones() {
        for (i, ty) in RecordType::ALL.into_iter().enumerate() {
            assert_eq!(ty as u8, i as u8 + 1);
            assert_eq!(RecordType::from_u8(ty as u8), Some(ty));
        }
        assert_eq!(RecordType::from_u8(0), None);
        assert_eq!(RecordType::from_u8(13), None);
    }

    #[test]
    fn checksum_is_blake3_of_length_type_and_payload() {
        let frame = encode_record(&Record::Commit { txn: 1, at: 2 });
        let mut by_hand = Vec::new();
        by_hand.extend_from_slice(&frame[..CHECKSUM_OFFSET]);
        by_hand.extend_from_slice(&frame[PAYLOAD_OFFSET..]);
        assert_eq!(
            blake3::hash(&by_hand).as_bytes()[..8],
            frame[CHECKSUM_OFFSET..PAYLOAD_OFFSET]
        );
    }

    #[test]
    fn segment_header_layout() {
        let h = encode_segment_header(0x0403_0201);
        assert_eq!(&h, b"KHJOURNL\x01\0\0\0\x01\x02\x03\x04");
    }

    #[test]
    fn segment_file_names() {
        assert_eq!(segment_file_name(1), "00000001.wal");
        assert_eq!(parse_segment_file_name("00000001.wal"), Some(1));
        assert_eq!(parse_segment_file_name("12345678.wal"), Some(12_345_678));
        for bad in [
            "00000000.wal",
            "0000001.wal",
            "000000001.wal",
            "0000000a.wal",
            "+0000001.wal",
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn payload_with_trailing_bytes_is_rejected() {
        let mut p = encode_payload(&Record::Commit { txn: 1, at: 2 });
        p.push(0);
        assert_eq!(
            decode_payload(RecordType::Commit as u8, &p),
            Err("trailing bytes")
        );
    }

    #[test]
    fn every_truncated_payload_is_rejected() {
        for rec in one_of_each() {
            let p = encode_payload(&rec);
            let ty = RecordType::of(&rec) as u8;
            for cut in 0..p.len() {
                assert!(
                    decode_payload(ty, &p[..cut]).is_err(),
                    "{rec:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn unknown_codes_are_rejected() {
        let p = encode_payload(&Record::Commit { txn: 1, at: 2 });
        assert_eq!(decode_payload(0, &p), Err("unknown record type"));
        assert_eq!(decode_payload(200, &p), Err("unknown record type"));

        let mut begin = encode_payload(&one_of_each()[0]);
        begin[16] = 4; // kind: after txn u64 and at i64
        assert_eq!(decode_payload(1, &begin), Err("unknown transaction kind"));

        let v = &one_of_each()[8];
        let mut p = encode_payload(v);
        let origin_at = 4 + "/etc/kubernetes/manifests/etcd.yaml".len() + FILE_STATE_LEN;
        p[origin_at] = 7;
        assert_eq!(decode_payload(9, &p), Err("unknown origin"));
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let mut p = encode_payload(&Record::RolledBack {
            txn: 1,
            at: 2,
            reason: "ab".into(),
        });
        let n = p.len();
        p[n - 1] = 0xff;
        assert_eq!(decode_payload(4, &p), Err("invalid utf-8 in string"));
    }

    #[test]
    fn forged_lengths_and_counts_are_checked_before_allocating() {
        let mut p = Vec::new();
        p.extend_from_slice(&1u64.to_le_bytes());
        p.extend_from_slice(&2i64.to_le_bytes());
        p.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_payload(8, &p), Err("count past end of payload"));
        assert_eq!(
            decode_payload(4, &p),
            Err("string length past end of payload")
        );
    }

    #[test]
    fn oversized_record_is_refused_by_the_encoder() {
        let reason = "x".repeat(MAX_PAYLOAD);
        let rec = Record::RolledBack {
            txn: 1,
            at: 2,
            reason,
        };
        assert_eq!(try_encode_record(&rec), Err("record too large"));
    }

    proptest! {
        #[test]
        fn decode_payload_never_panics_and_is_canonical(
            ty in any::<u8>(),
            payload in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            if let Ok(rec) = decode_payload(ty, &payload) {
                prop_assert_eq!(encode_payload(&rec), payload);
            }
        }
    }
}
