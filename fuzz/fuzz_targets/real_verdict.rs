//! The real segment reader's verdict in the oracle's terms (`naive::Verdict`), shared by the
//! `journal_decode` fuzz target and `tests/journal_oracle.rs`; the including crate declares
//! `mod naive`.

use crate::naive::Verdict;
use kubeharden::journal::reader::{ReadOutcome, SegmentReader};

/// The real reader's verdict, in the oracle's terms.
pub fn real_frames(bytes: &[u8], start: usize) -> Verdict {
    let mut reader = SegmentReader::new(bytes, start as u64);
    let mut ends = Vec::new();
    loop {
        match reader.next() {
            Ok(ReadOutcome::Record(d)) => ends.push((d.offset + d.len) as usize),
            Ok(ReadOutcome::End) => return Verdict::Clean { ends },
            Ok(ReadOutcome::TornTail { offset, reason, .. }) => {
                return Verdict::Torn {
                    ends,
                    offset: offset as usize,
                    reason,
                }
            }
            Err(c) => {
                return Verdict::Corrupt {
                    ends,
                    offset: c.offset as usize,
                    reason: c.reason,
                }
            }
        }
    }
}
