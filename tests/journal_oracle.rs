//! The fuzz oracle (`fuzz/fuzz_targets/naive.rs`, a segment reader written from
//! `journal-format/README.md` alone) run in the ordinary test suite: on every journal vector and
//! on deterministic mutations of them (bit flips, byte writes, cuts, zeroed ends, appended
//! garbage), its verdict — records, then clean end, torn tail or corruption, with offset and
//! reason — must equal the real reader's.

#[path = "../fuzz/fuzz_targets/naive.rs"]
mod naive;
#[path = "../fuzz/fuzz_targets/real_verdict.rs"]
mod real_verdict;

use kubeharden::journal::format::SEGMENT_HEADER_LEN;
use kubeharden::journal::reader::{check_segment_header, HeaderProblem};
use naive::Verdict;
use real_verdict::real_frames;
use std::path::Path;

fn real_segment(bytes: &[u8]) -> Verdict {
    match check_segment_header(bytes, 1) {
        Ok(()) => real_frames(bytes, SEGMENT_HEADER_LEN),
        Err(HeaderProblem::Torn { reason }) => Verdict::TornHeader { reason },
        Err(HeaderProblem::Corrupt(c)) => Verdict::CorruptHeader {
            offset: c.offset as usize,
            reason: c.reason,
        },
    }
}

fn vectors() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("journal-format/vectors");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    assert!(out.len() >= 10, "journal vectors in {}", dir.display());
    out
}

/// splitmix64: deterministic mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(bytes: &mut Vec<u8>, rng: &mut Rng) {
    let at = rng.below(bytes.len() + 1);
    match rng.below(5) {
        0 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
        1 if at < bytes.len() => bytes[at] = rng.next() as u8,
        2 => bytes.truncate(at),
        3 => bytes[at..].fill(0),
        _ => bytes.extend((0..rng.below(40)).map(|_| rng.next() as u8)),
    }
}

#[track_caller]
fn agree(bytes: &[u8], what: &str) {
    assert_eq!(real_segment(bytes), naive::segment(bytes, 1), "{what}");
    if bytes.len() >= SEGMENT_HEADER_LEN {
        assert_eq!(
            real_frames(bytes, SEGMENT_HEADER_LEN),
            naive::frames(bytes, SEGMENT_HEADER_LEN),
            "{what} (frames)"
        );
    }
}

#[test]
fn the_naive_reader_agrees_with_the_reader_on_every_vector() {
    for (name, bytes) in vectors() {
        agree(&bytes, &name);
    }
}

#[test]
fn the_naive_reader_agrees_with_the_reader_on_mutated_vectors() {
    let mut rng = Rng(0x6b68_6a6f_7572_6e6c);
    let mut verdicts = std::collections::BTreeMap::new();
    for (name, bytes) in vectors() {
        for i in 0..400 {
            let mut b = bytes.clone();
            for _ in 0..=rng.below(3) {
                mutate(&mut b, &mut rng);
            }
            // Small enough that the reader's search budget never cuts in (see naive.rs).
            assert!(b.len() <= naive::MAX_ORACLE_LEN);
            agree(&b, &format!("{name} mutation {i}"));
            let kind = match naive::segment(&b, 1) {
                Verdict::Clean { .. } => "clean",
                Verdict::Torn { .. } | Verdict::TornHeader { .. } => "torn",
                Verdict::Corrupt { .. } | Verdict::CorruptHeader { .. } => "corrupt",
            };
            *verdicts.entry(kind).or_insert(0) += 1;
        }
    }
    // The mutations reach all three verdicts (the comparison is not vacuous).
    assert!(
        verdicts.len() == 3 && verdicts.values().all(|&n| n > 5),
        "{verdicts:?}"
    );
}
