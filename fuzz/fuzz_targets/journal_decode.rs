//! The journal reader on arbitrary bytes: it must never panic, every record it accepts must
//! re-encode to exactly the bytes it was read from (the encoding is canonical), and its verdict
//! (records, then clean end, torn tail or corruption, with offset and reason) must equal that of
//! `naive.rs`, an independent reader written from `journal-format/README.md`.
//!
//! From `fuzz/`: `cargo +nightly fuzz run journal_decode corpus/journal_decode seeds/journal_decode`
//! (`seeds/journal_decode/`, checked in: the journal vectors; `corpus/` is libFuzzer's own).
#![no_main]

mod naive;
mod real_verdict;

use kubeharden::journal::format::{
    decode_payload, encode_payload, encode_record, record_checksum, SEGMENT_HEADER_LEN,
};
use kubeharden::journal::reader::{
    check_segment_header, decode_segment, HeaderProblem, ReadOutcome, SegmentReader,
};
use libfuzzer_sys::fuzz_target;
use naive::Verdict;
use real_verdict::real_frames;

fn read_all(bytes: &[u8], start: u64) {
    let mut reader = SegmentReader::new(bytes, start);
    let mut expected_offset = start;
    loop {
        match reader.next() {
            Ok(ReadOutcome::Record(d)) => {
                assert_eq!(d.offset, expected_offset);
                let frame = &bytes[d.offset as usize..(d.offset + d.len) as usize];
                assert_eq!(encode_record(&d.record), frame, "re-encoding differs");
                assert_eq!(record_checksum(frame), d.checksum);
                expected_offset = d.offset + d.len;
            }
            Ok(ReadOutcome::TornTail {
                offset, dropped, ..
            }) => {
                assert_eq!(offset, expected_offset);
                assert_eq!(offset + dropped, bytes.len() as u64);
                break;
            }
            Ok(ReadOutcome::End) => {
                assert!(start > bytes.len() as u64 || expected_offset == bytes.len() as u64);
                break;
            }
            Err(c) => {
                assert_eq!(c.offset, expected_offset);
                break;
            }
        }
    }
}


fn real_segment(bytes: &[u8], n: u32) -> Verdict {
    match check_segment_header(bytes, n) {
        Ok(()) => real_frames(bytes, SEGMENT_HEADER_LEN),
        Err(HeaderProblem::Torn { reason }) => Verdict::TornHeader { reason },
        Err(HeaderProblem::Corrupt(c)) => Verdict::CorruptHeader {
            offset: c.offset as usize,
            reason: c.reason,
        },
    }
}

fn oracle(data: &[u8]) {
    if data.len() > naive::MAX_ORACLE_LEN {
        return;
    }
    for start in [0, SEGMENT_HEADER_LEN] {
        if start <= data.len() {
            assert_eq!(
                real_frames(data, start),
                naive::frames(data, start),
                "frames from {start}"
            );
        }
    }
    assert_eq!(real_segment(data, 1), naive::segment(data, 1), "segment 1");
}

fuzz_target!(|data: &[u8]| {
    oracle(data);
    read_all(data, 0);
    read_all(data, SEGMENT_HEADER_LEN as u64);

    for segment in [
        1,
        u32::from_le_bytes(
            data.get(12..16)
                .and_then(|b| b.try_into().ok())
                .unwrap_or([0; 4]),
        ),
    ] {
        if let Ok((records, tail)) = decode_segment(data, segment) {
            let mut end = SEGMENT_HEADER_LEN as u64;
            for d in &records {
                assert_eq!(d.offset, end);
                end += d.len;
            }
            match tail {
                Some((offset, dropped, _)) => assert_eq!(offset + dropped, data.len() as u64),
                None => assert_eq!(end, data.len() as u64),
            }
        }
    }

    if let Some((&ty, payload)) = data.split_first() {
        if let Ok(rec) = decode_payload(ty, payload) {
            assert_eq!(encode_payload(&rec), payload, "payload re-encoding differs");
        }
    }
});
