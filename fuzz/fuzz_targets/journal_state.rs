//! Whole state directories: a real 3-segment journal (the ten records of
//! `journal-format/vectors/valid-all-types.wal`, 4 + 3 + 3) with a catalog that checked it up to
//! record `k` (its checkpoint and per-segment prefix digests, as a start writes them), then the
//! input's mutations: bit flips, byte writes, truncations, zeroed ends, emptied or deleted
//! segments. What the engine's startup (`Unrecovered::open`, which reaches `wal.rs`: digests,
//! the fall-back full re-read, the tail rule) decides must equal the oracle's verdict, computed
//! from `naive.rs` and the rule of `journal-format/README.md`:
//!
//! - damage (corruption anywhere, a torn tail or torn header in a segment that is not the last,
//!   a missing segment) → exit 6;
//! - else, if the valid records now end before the start of the catalog's final record →
//!   exit 6 (durable records lost: more than a torn final record);
//! - else it opens, and `wal::scan_from` reads exactly the oracle's records.
//!
//! Input: byte 0 picks `k` (or no catalog), then 5-byte mutations `[segment, op, off, off, v]`.
//! From `fuzz/`: `cargo +nightly fuzz run journal_state corpus/journal_state seeds/journal_state`
//! (`seeds/journal_state/`, checked in: one mutation of each kind; `corpus/` is libFuzzer's own).
#![no_main]

mod naive;

use kubeharden::catalog::Catalog;
use kubeharden::engine::state::StatePaths;
use kubeharden::engine::Unrecovered;
use kubeharden::error::Error;
use kubeharden::fsys::sim::SimFs;
use kubeharden::journal::format::{encode_segment_header, segment_file_name, SEGMENT_HEADER_LEN};
use kubeharden::journal::reader::decode_segment;
use kubeharden::journal::wal::{self, Position};
use libfuzzer_sys::fuzz_target;
use naive::Verdict;
use std::path::Path;
use std::sync::{Arc, OnceLock};

const VECTOR: &[u8] = include_bytes!("../../journal-format/vectors/valid-all-types.wal");
const STATE: &str = "/s";
const JOURNAL: &str = "/s/journal";
/// Records per segment.
const SPLIT: [usize; 3] = [4, 3, 3];

struct Base {
    frames: Vec<Vec<u8>>,
}

fn base() -> &'static Base {
    static B: OnceLock<Base> = OnceLock::new();
    B.get_or_init(|| {
        let (records, tail) = decode_segment(VECTOR, 1).expect("the vector decodes");
        assert!(tail.is_none());
        let frames = records
            .iter()
            .map(|d| VECTOR[d.offset as usize..(d.offset + d.len) as usize].to_vec())
            .collect::<Vec<_>>();
        assert_eq!(frames.len(), SPLIT.iter().sum::<usize>());
        Base { frames }
    })
}

/// The segments holding the first `count` records.
fn segments(count: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    for (s, &n) in SPLIT.iter().enumerate() {
        if i >= count {
            break;
        }
        let mut seg = encode_segment_header(s as u32 + 1).to_vec();
        for f in &base().frames[i..(i + n).min(count)] {
            seg.extend_from_slice(f);
        }
        i += n;
        out.push(seg);
    }
    out
}

/// Where record `k` starts in the 3-segment layout.
fn position_of(k: usize) -> Position {
    let mut i = 0;
    for (s, &n) in SPLIT.iter().enumerate() {
        if k < i + n {
            let mut offset = SEGMENT_HEADER_LEN as u64;
            for f in &base().frames[i..k] {
                offset += f.len() as u64;
            }
            return Position {
                segment: s as u32 + 1,
                offset,
            };
        }
        i += n;
    }
    unreachable!("k < 10")
}

fn disk(segs: &[Option<Vec<u8>>]) -> SimFs {
    let sim = SimFs::new();
    sim.mkdir_p(Path::new(JOURNAL), 0o700).unwrap();
    sim.mkdir_p(Path::new("/s/objects"), 0o700).unwrap();
    for (i, s) in segs.iter().enumerate() {
        if let Some(bytes) = s {
            let p = Path::new(JOURNAL).join(segment_file_name(i as u32 + 1));
            sim.write_file_durable(&p, bytes, 0o600, 0, 0).unwrap();
        }
    }
    sim
}

/// The catalog a start wrote after reading the first `k + 1` records.
fn catalog_at(k: Option<usize>) -> Catalog {
    let mut c = Catalog::open_in_memory().unwrap();
    if let Some(k) = k {
        let segs: Vec<Option<Vec<u8>>> = segments(k + 1).into_iter().map(Some).collect();
        let sim = disk(&segs);
        let start = Position {
            segment: 1,
            offset: SEGMENT_HEADER_LEN as u64,
        };
        let scan = wal::scan_from(&sim, Path::new(JOURNAL), start).unwrap();
        c.apply(&scan.records, &|_| 0).unwrap();
        c.set_digests(&scan.digests).unwrap();
    }
    c
}

fn mutate(segs: &mut [Option<Vec<u8>>], m: &[u8]) {
    let i = m[0] as usize % 3;
    if m[1] % 6 == 5 {
        segs[i] = None;
        return;
    }
    let Some(seg) = segs[i].as_mut() else {
        return;
    };
    let off = u16::from_le_bytes([m[2], m[3]]) as usize % (seg.len() + 1);
    match m[1] % 6 {
        0 if off < seg.len() => seg[off] ^= 1 << (m[4] % 8),
        1 if off < seg.len() => seg[off] = m[4],
        2 => seg.truncate(off),
        3 => seg[off..].fill(0),
        4 => seg.clear(),
        _ => {}
    }
}

/// What the oracle expects: `Err(())` for exit 6, else where the records end and how many.
fn expected(segs: &[Option<Vec<u8>>], ck: Option<Position>) -> Result<(Position, usize), ()> {
    let present: Vec<(u32, &Vec<u8>)> = segs
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.as_ref().map(|b| (i as u32 + 1, b)))
        .collect();
    let mut end = Position {
        segment: 1,
        offset: SEGMENT_HEADER_LEN as u64,
    };
    // Numbered consecutively from 00000001.wal.
    if present
        .iter()
        .enumerate()
        .any(|(i, (n, _))| *n != i as u32 + 1)
    {
        return Err(());
    }
    let mut count = 0;
    for (i, (n, bytes)) in present.iter().enumerate() {
        let last = i == present.len() - 1;
        let v = naive::segment(bytes, *n);
        let ends = match v {
            Verdict::TornHeader { .. } if last => break,
            Verdict::Clean { ends } => ends,
            Verdict::Torn { ends, .. } if last => ends,
            _ => return Err(()),
        };
        count += ends.len();
        end = Position {
            segment: *n,
            offset: ends.last().map_or(SEGMENT_HEADER_LEN, |&e| e) as u64,
        };
    }
    match ck {
        Some(ck) if end < ck => Err(()),
        _ => Ok((end, count)),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, muts)) = data.split_first() else {
        return;
    };
    let k = match pick % 11 {
        10 => None,
        k => Some(k as usize),
    };
    let mut segs: Vec<Option<Vec<u8>>> = segments(10).into_iter().map(Some).collect();
    for m in muts.chunks_exact(5).take(8) {
        mutate(&mut segs, m);
    }
    if segs
        .iter()
        .flatten()
        .any(|s| s.len() > naive::MAX_ORACLE_LEN)
    {
        return;
    }
    let want = expected(&segs, k.map(position_of));
    let sim = disk(&segs);
    let got = Unrecovered::open(
        Arc::new(sim.clone()),
        StatePaths::new(Path::new(STATE)),
        catalog_at(k),
        false,
    );
    match (&want, &got) {
        (Ok(_), Ok(_)) | (Err(()), Err(Error::Integrity(_))) => {}
        (_, Err(e)) => panic!("oracle {want:?}, engine: {e}"),
        (Err(()), Ok(_)) => panic!("oracle: damage (exit 6), engine: accepted"),
    }
    if let Ok((end, count)) = want {
        let start = Position {
            segment: 1,
            offset: SEGMENT_HEADER_LEN as u64,
        };
        let scan = wal::scan_from(&sim, Path::new(JOURNAL), start).unwrap();
        assert_eq!(scan.records.len(), count);
        assert_eq!(scan.end, end);
    }
});
