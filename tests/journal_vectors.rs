//! The journal's test vectors (`journal-format/vectors/`) and the properties every decoder of
//! the format must have.
//!
//! Each `NAME.wal` comes with `NAME.expect`: `#` comment lines, a `segment: N` line (the segment
//! number the file is read as), then the decoding `decode_segment` must give, one line per
//! record and a final `end: clean`, `end: torn_tail ...` or `error: corruption ...` line.
//!
//! Regenerate with `KUBEHARDEN_REGEN_VECTORS=1 cargo test --test journal_vectors -- --ignored`.
//! The generator writes each `.expect` from what it meant to build (the records it encoded and
//! the outcome it intended), not by running the decoder, so regenerating cannot hide a bug.

use std::fmt::Write as _;
use std::path::PathBuf;

use kubeharden::journal::format::{
    decode_payload, encode_record, encode_segment_header, frame_checksum, record_checksum,
    RecordType, FORMAT_VERSION, MAX_PAYLOAD, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use kubeharden::journal::reader::{decode_segment, Corruption, ReadOutcome, SegmentReader};
use kubeharden::journal::record::{
    hash_hex, Begin, FileIntent, FileState, Origin, Record, TxnKind, Version,
};
use proptest::prelude::*;

// ------------------------------------------------------------------------------------------
// Rendering a decoding as stable text
// ------------------------------------------------------------------------------------------

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn state(s: &FileState) -> String {
    format!(
        "{{hash={} size={} mode={:#o} uid={} gid={}}}",
        hash_hex(&s.hash),
        s.size,
        s.mode,
        s.uid,
        s.gid
    )
}

/// One record as `TYPE field=value ...`, strings quoted with Rust escapes.
fn describe(rec: &Record) -> String {
    let name = RecordType::of(rec).name();
    match rec {
        Record::Begin(b) => {
            let mut s = format!(
                "{name} txn={} at={} kind={:?} reason={:?} files={}",
                b.txn,
                b.at,
                b.kind,
                b.reason,
                b.files.len()
            );
            for f in &b.files {
                write!(
                    s,
                    " [path={:?} before={} after={}]",
                    f.path,
                    state(&f.before),
                    state(&f.after)
                )
                .unwrap();
            }
            s
        }
        Record::Applied { txn, at }
        | Record::Commit { txn, at }
        | Record::Aborted { txn, at }
        | Record::Reverted { txn, at } => format!("{name} txn={txn} at={at}"),
        Record::RolledBack { txn, at, reason } | Record::RollbackFailed { txn, at, reason } => {
            format!("{name} txn={txn} at={at} reason={reason:?}")
        }
        Record::Conflict { txn, at, paths } => format!("{name} txn={txn} at={at} paths={paths:?}"),
        Record::Version(v) => format!(
            "{name} path={:?} state={} origin={:?} txn={} recorded_at={} on_disk_from={}",
            v.path,
            state(&v.state),
            v.origin,
            v.txn,
            v.recorded_at,
            v.on_disk_from
        ),
        Record::TruncatedTail {
            at,
            segment,
            offset,
            dropped,
        } => format!("{name} at={at} segment={segment} offset={offset} dropped={dropped}"),
        Record::GateResult { txn, at, summary } => {
            format!("{name} txn={txn} at={at} summary={summary:?}")
        }
        Record::Pruned { at, reason, hashes } => format!(
            "{name} at={at} reason={reason:?} hashes=[{}]",
            hashes.iter().map(|h| hex(h)).collect::<Vec<_>>().join(",")
        ),
    }
}

fn record_line(offset: u64, len: u64, checksum: &[u8], rec: &Record) -> String {
    format!(
        "record offset={offset} len={len} checksum={} {}\n",
        hex(checksum),
        describe(rec)
    )
}

fn torn_line(offset: u64, dropped: u64, reason: &str) -> String {
    format!("end: torn_tail offset={offset} dropped={dropped} reason={reason}\n")
}

fn corruption_line(offset: u64, reason: &str) -> String {
    format!("error: corruption offset={offset} reason={reason}\n")
}

/// What `decode_segment` makes of `bytes`, as `.expect` text (after the `segment:` line).
fn render(bytes: &[u8], segment: u32) -> String {
    match decode_segment(bytes, segment) {
        Err(Corruption { offset, reason }) => corruption_line(offset, reason),
        Ok((records, tail)) => {
            let mut out = String::new();
            for d in &records {
                out += &record_line(d.offset, d.len, &d.checksum, &d.record);
            }
            out += &match tail {
                None => "end: clean\n".to_string(),
                Some((offset, dropped, reason)) => torn_line(offset, dropped, reason),
            };
            out
        }
    }
}

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("journal-format/vectors")
}

const REQUIRED: [&str; 6] = [
    "valid-all-types",
    "torn-tail-incomplete",
    "torn-tail-zero-filled",
    "torn-tail-checksum-at-end",
    "mid-file-corruption",
    "bad-header",
];

#[test]
fn every_vector_decodes_as_expected() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(vectors_dir()).expect("journal-format/vectors") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wal") {
            names.push(path.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    names.sort();
    for required in REQUIRED {
        assert!(
            names.iter().any(|n| n == required),
            "missing vector {required}.wal"
        );
    }
    for name in &names {
        let bytes = std::fs::read(vectors_dir().join(format!("{name}.wal"))).unwrap();
        let expect = std::fs::read_to_string(vectors_dir().join(format!("{name}.expect")))
            .unwrap_or_else(|e| panic!("{name}.expect: {e}"));
        let body: String = expect
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let (first, rest) = body.split_once('\n').unwrap_or_default();
        let segment: u32 = first
            .strip_prefix("segment: ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{name}.expect: first line must be `segment: N`"));
        assert_eq!(render(&bytes, segment), rest, "vector {name}");
    }
    for entry in std::fs::read_dir(vectors_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "expect") {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            assert!(names.contains(&stem), "{stem}.expect has no {stem}.wal");
        }
    }
}

// ------------------------------------------------------------------------------------------
// Generating the vectors
// ------------------------------------------------------------------------------------------

const AT: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn file_state(content: &[u8], mode: u32) -> FileState {
    FileState {
        hash: *blake3::hash(content).as_bytes(),
        size: content.len() as u64,
        mode,
        uid: 0,
        gid: 0,
    }
}

const APISERVER: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";

fn all_types() -> Vec<Record> {
    let before = file_state(b"before\n", 0o600);
    let after = file_state(b"after\n", 0o600);
    vec![
        Record::Begin(Begin {
            txn: 1,
            at: AT,
            kind: TxnKind::Remediate,
            reason: "CIS 1.2.16: --profiling=false".into(),
            files: vec![FileIntent {
                path: APISERVER.into(),
                before,
                after,
            }],
        }),
        Record::Applied { txn: 1, at: AT + 1 },
        Record::Commit { txn: 1, at: AT + 2 },
        Record::RolledBack {
            txn: 2,
            at: AT + 3,
            reason: "health gate: kube-apiserver not ready after 120 s".into(),
        },
        Record::RollbackFailed {
            txn: 3,
            at: AT + 4,
            reason: "rename: Input/output error (os error 5)".into(),
        },
        Record::Aborted { txn: 4, at: AT + 5 },
        Record::Reverted { txn: 5, at: AT + 6 },
        Record::Conflict {
            txn: 6,
            at: AT + 7,
            paths: vec![
                APISERVER.into(),
                "/etc/kubernetes/manifests/etcd.yaml".into(),
            ],
        },
        Record::Version(Version {
            path: APISERVER.into(),
            state: after,
            origin: Origin::Change,
            txn: 1,
            recorded_at: AT + 8,
            on_disk_from: AT + 1,
        }),
        Record::TruncatedTail {
            at: AT + 9,
            segment: 1,
            offset: 4096,
            dropped: 21,
        },
    ]
}

/// A segment being built, with the `.expect` lines of the records that will read back.
struct Builder {
    bytes: Vec<u8>,
    expect: String,
}

impl Builder {
    fn new(segment: u32) -> Self {
        Builder {
            bytes: encode_segment_header(segment).to_vec(),
            expect: String::new(),
        }
    }
    /// Append a record that must read back; returns its offset.
    fn good(&mut self, rec: &Record) -> usize {
        let off = self.bytes.len();
        let frame = encode_record(rec);
        self.expect += &record_line(
            off as u64,
            frame.len() as u64,
            &record_checksum(&frame),
            rec,
        );
        self.bytes.extend_from_slice(&frame);
        off
    }
    /// Append the frame of a record that will not read back.
    fn raw(&mut self, frame: &[u8]) -> usize {
        let off = self.bytes.len();
        self.bytes.extend_from_slice(frame);
        off
    }
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
}

struct Vector {
    name: &'static str,
    about: &'static str,
    segment: u32,
    bytes: Vec<u8>,
    /// Decoding lines after `segment: N`.
    expect: String,
}

fn vectors() -> Vec<Vector> {
    let recs = all_types();
    let commit = Record::Commit {
        txn: 9,
        at: AT + 10,
    };
    let mut v = Vec::new();
    let mut add = |name, about, segment, bytes, expect| {
        v.push(Vector {
            name,
            about,
            segment,
            bytes,
            expect,
        })
    };

    let mut b = Builder::new(1);
    for r in &recs {
        b.good(r);
    }
    let e = b.expect.clone() + "end: clean\n";
    add(
        "valid-all-types",
        "one record of every type, types 1 to 10 in order",
        1,
        b.bytes,
        e,
    );

    let b = Builder::new(1);
    add(
        "empty-segment",
        "a segment header and no record",
        1,
        b.bytes,
        "end: clean\n".into(),
    );

    let mut b = Builder::new(1);
    b.good(&recs[0]);
    b.good(&recs[1]);
    let frame = encode_record(&recs[2]);
    let off = b.raw(&frame[..frame.len() - 5]);
    let e = b.expect.clone() + &torn_line(off as u64, b.len() - off as u64, "incomplete record");
    add(
        "torn-tail-incomplete",
        "BEGIN, APPLIED, then COMMIT missing its last 5 bytes",
        1,
        b.bytes,
        e,
    );

    let mut b = Builder::new(1);
    b.good(&recs[0]);
    let frame = encode_record(&recs[1]);
    let off = b.raw(&frame[..7]);
    let e = b.expect.clone() + &torn_line(off as u64, 7, "incomplete header");
    add(
        "torn-tail-incomplete-header",
        "BEGIN, then the first 7 bytes of APPLIED",
        1,
        b.bytes,
        e,
    );

    let mut b = Builder::new(1);
    b.good(&recs[0]);
    b.good(&recs[1]);
    let off = b.raw(&[0u8; 512]);
    let e = b.expect.clone() + &torn_line(off as u64, 512, "zero-filled tail");
    add(
        "torn-tail-zero-filled",
        "BEGIN, APPLIED, then 512 zero bytes",
        1,
        b.bytes,
        e,
    );

    let mut b = Builder::new(1);
    b.good(&recs[0]);
    let mut frame = encode_record(&recs[1]);
    frame[RECORD_HEADER_LEN + 3] ^= 0x40;
    let off = b.raw(&frame);
    let e =
        b.expect.clone() + &torn_line(off as u64, frame.len() as u64, "checksum mismatch at tail");
    add(
        "torn-tail-checksum-at-end",
        "BEGIN, then APPLIED with one payload bit flipped, ending the file",
        1,
        b.bytes,
        e,
    );

    let mut b = Builder::new(1);
    b.good(&recs[0]);
    let mut frame = encode_record(&recs[1]);
    frame[RECORD_HEADER_LEN + 4..].fill(0);
    frame.extend_from_slice(
        &encode_record(&commit)
            .iter()
            .map(|_| 0)
            .collect::<Vec<u8>>(),
    );
    let off = b.raw(&frame);
    let e =
        b.expect.clone() + &torn_line(off as u64, frame.len() as u64, "checksum mismatch at tail");
    add(
        "torn-tail-partial-then-zeros",
        "BEGIN, APPLIED of which only header and 4 payload bytes survived, zeros where the rest \
         of APPLIED and a COMMIT were appended",
        1,
        b.bytes,
        e,
    );

    let mut b = Builder::new(1);
    b.good(&recs[0]);
    let mut frame = encode_record(&recs[1]);
    frame[RECORD_HEADER_LEN + 3] ^= 0x40;
    let off = b.raw(&frame);
    b.good(&recs[2]);
    let e = corruption_line(off as u64, "checksum mismatch");
    add(
        "mid-file-corruption",
        "BEGIN, APPLIED with one payload bit flipped, then a valid COMMIT",
        1,
        b.bytes,
        e,
    );

    let mut b = Builder::new(1);
    b.good(&recs[0]);
    let mut frame = encode_record(&recs[1]);
    frame[2] = 0x01; // length grows by 64 KiB: the frame now runs past the end of the file
    let off = b.raw(&frame);
    b.good(&recs[2]);
    let e = corruption_line(off as u64, "bad record length");
    add(
        "grown-length-mid-file",
        "BEGIN, APPLIED whose length field grew past the end of the file, then a valid COMMIT",
        1,
        b.bytes,
        e,
    );

    let mut b = Builder::new(1);
    b.good(&recs[0]);
    let mut frame = encode_record(&recs[1]);
    frame[..4].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
    let off = b.raw(&frame);
    let e = corruption_line(off as u64, "bad record length");
    add(
        "bad-record-length",
        "BEGIN, then a frame declaring a payload of 16 MiB + 1 (even at the tail: corruption)",
        1,
        b.bytes,
        e,
    );

    let mut b = Builder::new(1);
    b.good(&recs[0]);
    let mut payload = kubeharden::journal::format::encode_payload(&recs[1]);
    payload.push(0);
    let ty = RecordType::Applied as u8;
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.push(ty);
    frame.extend_from_slice(&frame_checksum(payload.len() as u32, ty, &payload));
    frame.extend_from_slice(&payload);
    let off = b.raw(&frame);
    let e = corruption_line(off as u64, "trailing bytes");
    add(
        "checksummed-trailing-bytes",
        "BEGIN, then an APPLIED with a correct checksum over a payload one byte too long",
        1,
        b.bytes,
        e,
    );

    let mut b = Builder::new(1);
    b.bytes[..8].copy_from_slice(b"KHJOURNX");
    b.good(&recs[0]);
    add(
        "bad-header",
        "magic KHJOURNX instead of KHJOURNL",
        1,
        b.bytes,
        corruption_line(0, "bad segment magic"),
    );

    let mut b = Builder::new(1);
    b.bytes[8] = FORMAT_VERSION + 1;
    b.good(&recs[0]);
    let e = corruption_line(8, "unsupported format version");
    add(
        "unsupported-version",
        "format version 2: refused",
        1,
        b.bytes,
        e,
    );

    let mut b = Builder::new(2);
    b.good(&recs[0]);
    let e = corruption_line(12, "segment number mismatch");
    add(
        "wrong-segment-number",
        "header says segment 2, read as segment 1",
        1,
        b.bytes,
        e,
    );

    let b = Builder::new(1);
    let bytes = b.bytes[..SEGMENT_HEADER_LEN - 6].to_vec();
    let e = torn_line(0, bytes.len() as u64, "incomplete segment header");
    add(
        "torn-segment-header",
        "the first 10 bytes of a segment header",
        1,
        bytes,
        e,
    );

    v
}

#[test]
#[ignore = "writes journal-format/vectors/; run with KUBEHARDEN_REGEN_VECTORS=1"]
fn regenerate_vectors() {
    if std::env::var_os("KUBEHARDEN_REGEN_VECTORS").is_none_or(|v| v != "1") {
        panic!("set KUBEHARDEN_REGEN_VECTORS=1 to overwrite journal-format/vectors/");
    }
    let dir = vectors_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for v in vectors() {
        std::fs::write(dir.join(format!("{}.wal", v.name)), &v.bytes).unwrap();
        let text = format!(
            "# {}\n# generated by tests/journal_vectors.rs (regenerate_vectors)\nsegment: {}\n{}",
            v.about, v.segment, v.expect
        );
        std::fs::write(dir.join(format!("{}.expect", v.name)), text).unwrap();
    }
}

#[test]
fn generator_and_decoder_agree() {
    // Catches a generator change that was not followed by a regeneration, and the reverse.
    for v in vectors() {
        assert_eq!(render(&v.bytes, v.segment), v.expect, "vector {}", v.name);
        let on_disk = std::fs::read(vectors_dir().join(format!("{}.wal", v.name)));
        assert_eq!(
            on_disk.ok().as_ref(),
            Some(&v.bytes),
            "{}.wal is stale: regenerate",
            v.name
        );
    }
}

// ------------------------------------------------------------------------------------------
// Properties
// ------------------------------------------------------------------------------------------

fn arb_state() -> impl Strategy<Value = FileState> {
    (
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(hash, size, mode, uid, gid)| FileState {
            hash,
            size,
            mode,
            uid,
            gid,
        })
}

fn arb_record() -> impl Strategy<Value = Record> {
    let s = || any::<String>();
    let kind = prop_oneof![
        Just(TxnKind::Set),
        Just(TxnKind::Restore),
        Just(TxnKind::Remediate)
    ];
    let origin = prop_oneof![
        Just(Origin::Baseline),
        Just(Origin::External),
        Just(Origin::Change),
        Just(Origin::Restore),
        Just(Origin::Rollback),
        Just(Origin::Recovery),
    ];
    let intent = (s(), arb_state(), arb_state()).prop_map(|(path, before, after)| FileIntent {
        path,
        before,
        after,
    });
    let txn_at = || (any::<u64>(), any::<i64>());
    prop_oneof![
        (txn_at(), kind, s(), prop::collection::vec(intent, 0..4)).prop_map(
            |((txn, at), kind, reason, files)| Record::Begin(Begin {
                txn,
                at,
                kind,
                reason,
                files
            })
        ),
        txn_at().prop_map(|(txn, at)| Record::Applied { txn, at }),
        txn_at().prop_map(|(txn, at)| Record::Commit { txn, at }),
        (txn_at(), s()).prop_map(|((txn, at), reason)| Record::RolledBack { txn, at, reason }),
        (txn_at(), s()).prop_map(|((txn, at), reason)| Record::RollbackFailed { txn, at, reason }),
        txn_at().prop_map(|(txn, at)| Record::Aborted { txn, at }),
        txn_at().prop_map(|(txn, at)| Record::Reverted { txn, at }),
        (txn_at(), prop::collection::vec(s(), 0..4))
            .prop_map(|((txn, at), paths)| Record::Conflict { txn, at, paths }),
        (s(), arb_state(), origin, txn_at(), any::<i64>()).prop_map(
            |(path, state, origin, (txn, recorded_at), on_disk_from)| Record::Version(Version {
                path,
                state,
                origin,
                txn,
                recorded_at,
                on_disk_from
            })
        ),
        (any::<i64>(), any::<u32>(), any::<u64>(), any::<u64>()).prop_map(
            |(at, segment, offset, dropped)| Record::TruncatedTail {
                at,
                segment,
                offset,
                dropped
            }
        ),
    ]
}

fn segment_of(recs: &[Record]) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = encode_segment_header(1).to_vec();
    let mut offsets = Vec::new();
    for r in recs {
        offsets.push(bytes.len());
        bytes.extend_from_slice(&encode_record(r));
    }
    (bytes, offsets)
}

proptest! {
    #[test]
    fn any_record_round_trips(rec in arb_record()) {
        let frame = encode_record(&rec);
        let back = decode_payload(frame[4], &frame[RECORD_HEADER_LEN..]);
        prop_assert_eq!(back.as_ref(), Ok(&rec));
    }

    #[test]
    fn any_segment_reads_back_what_was_written(recs in prop::collection::vec(arb_record(), 0..6)) {
        let (bytes, _) = segment_of(&recs);
        let (decoded, tail) = decode_segment(&bytes, 1).unwrap();
        prop_assert_eq!(tail, None);
        prop_assert_eq!(decoded.into_iter().map(|d| d.record).collect::<Vec<_>>(), recs);
    }

    #[test]
    fn a_cut_anywhere_is_a_torn_tail_or_a_clean_end(
        recs in prop::collection::vec(arb_record(), 1..5),
        cut in any::<prop::sample::Index>(),
    ) {
        let (bytes, offsets) = segment_of(&recs);
        let cut = SEGMENT_HEADER_LEN + cut.index(bytes.len() - SEGMENT_HEADER_LEN + 1);
        let (decoded, tail) = decode_segment(&bytes[..cut], 1).unwrap();
        let whole = offsets.iter().filter(|&&o| o < cut).count() - usize::from(tail.is_some());
        prop_assert_eq!(decoded.len(), whole);
        if let Some((off, dropped, _)) = tail {
            prop_assert_eq!(off as usize + dropped as usize, cut);
            prop_assert!(offsets.contains(&(off as usize)));
        }
    }

    #[test]
    fn a_changed_byte_before_the_last_record_is_corruption(
        recs in prop::collection::vec(arb_record(), 2..5),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let (mut bytes, offsets) = segment_of(&recs);
        let last = *offsets.last().unwrap();
        let at = SEGMENT_HEADER_LEN + at.index(last - SEGMENT_HEADER_LEN);
        bytes[at] ^= xor;
        let start = *offsets.iter().rev().find(|&&o| o <= at).unwrap();
        let err = decode_segment(&bytes, 1).unwrap_err();
        prop_assert_eq!(err.offset, start as u64);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_records_re_encode_exactly(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut r = SegmentReader::new(&bytes, 0);
        while let Ok(ReadOutcome::Record(d)) = r.next() {
            let frame = &bytes[d.offset as usize..(d.offset + d.len) as usize];
            prop_assert_eq!(encode_record(&d.record), frame);
        }
        let _ = decode_segment(&bytes, 1);
    }
}
