//! A naive, independent reader of one journal segment, written from `journal-format/README.md`
//! ("Segment header", "Reading a segment: torn tail or corruption") and nothing else: no budget,
//! no cleverness, blake3 called directly. The fuzz targets compare its verdict with the real
//! reader's. Only the payload decoder is shared (`decode_payload`, fuzzed on its own for
//! canonical round trips): what is checked here is the torn-versus-corruption classification.
//!
//! The real reader gives up its "complete record after X" search after 256 MiB of candidate
//! payloads; inputs are kept small enough (`MAX_ORACLE_LEN`) that it never does.

use kubeharden::journal::format::decode_payload;

pub const MAX_ORACLE_LEN: usize = 8 * 1024;
const HEADER: usize = 16;
const FRAME_HEADER: usize = 13;
const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every record read; `ends` is where each one ends.
    Clean {
        ends: Vec<usize>,
    },
    /// Records up to `offset`, then a torn tail.
    Torn {
        ends: Vec<usize>,
        offset: usize,
        reason: &'static str,
    },
    Corrupt {
        ends: Vec<usize>,
        offset: usize,
        reason: &'static str,
    },
    /// Torn header: the segment holds nothing.
    TornHeader {
        reason: &'static str,
    },
    CorruptHeader {
        offset: usize,
        reason: &'static str,
    },
}

fn le32(b: &[u8]) -> usize {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
}

fn checksum_ok(frame: &[u8]) -> bool {
    let mut h = blake3::Hasher::new();
    h.update(&frame[..5]);
    h.update(&frame[FRAME_HEADER..]);
    h.finalize().as_bytes()[..8] == frame[5..FRAME_HEADER]
}

/// A complete frame at the start of `b`: fits, checksum right, payload decodes.
fn complete_frame(b: &[u8]) -> bool {
    if b.len() < FRAME_HEADER {
        return false;
    }
    let len = le32(b);
    if len > MAX_PAYLOAD || FRAME_HEADER + len > b.len() {
        return false;
    }
    let frame = &b[..FRAME_HEADER + len];
    checksum_ok(frame) && decode_payload(frame[4], &frame[FRAME_HEADER..]).is_ok()
}

fn complete_frame_after(rest: &[u8]) -> bool {
    (1..rest.len()).any(|y| complete_frame(&rest[y..]))
}

pub fn header(bytes: &[u8], segment: u32) -> Result<(), Verdict> {
    if bytes.len() < HEADER {
        return Err(Verdict::TornHeader {
            reason: "incomplete segment header",
        });
    }
    if bytes.iter().all(|&b| b == 0) {
        return Err(Verdict::TornHeader {
            reason: "zero-filled segment header",
        });
    }
    let bad = |offset, reason| Err(Verdict::CorruptHeader { offset, reason });
    if &bytes[..8] != b"KHJOURNL" {
        return bad(0, "bad segment magic");
    }
    if bytes[8] != 1 {
        return bad(8, "unsupported format version");
    }
    if bytes[9..12] != [0, 0, 0] {
        return bad(9, "nonzero reserved bytes");
    }
    if le32(&bytes[12..16]) != segment as usize {
        return bad(12, "segment number mismatch");
    }
    Ok(())
}

/// Read the frames of `bytes` from `start` (no header check).
pub fn frames(bytes: &[u8], start: usize) -> Verdict {
    let mut ends = Vec::new();
    let mut x = start;
    loop {
        let rest = &bytes[x..];
        if rest.is_empty() {
            return Verdict::Clean { ends };
        }
        let torn = |ends, reason| Verdict::Torn {
            ends,
            offset: x,
            reason,
        };
        let corrupt = |ends, reason| Verdict::Corrupt {
            ends,
            offset: x,
            reason,
        };
        if rest.len() < FRAME_HEADER {
            return torn(ends, "incomplete header");
        }
        if rest.iter().all(|&b| b == 0) {
            return torn(ends, "zero-filled tail");
        }
        let len = le32(rest);
        if len > MAX_PAYLOAD {
            return corrupt(ends, "bad record length");
        }
        if FRAME_HEADER + len > rest.len() {
            if complete_frame_after(rest) {
                return corrupt(ends, "bad record length");
            }
            return torn(ends, "incomplete record");
        }
        let frame = &rest[..FRAME_HEADER + len];
        if !checksum_ok(frame) {
            let after = &rest[frame.len()..];
            if after.iter().all(|&b| b == 0) && !complete_frame_after(rest) {
                return torn(ends, "checksum mismatch at tail");
            }
            return corrupt(ends, "checksum mismatch");
        }
        if let Err(reason) = decode_payload(frame[4], &frame[FRAME_HEADER..]) {
            return corrupt(ends, reason);
        }
        x += frame.len();
        ends.push(x);
    }
}

/// The whole segment: header, then frames from byte 16.
pub fn segment(bytes: &[u8], number: u32) -> Verdict {
    match header(bytes, number) {
        Ok(()) => frames(bytes, HEADER),
        Err(v) => v,
    }
}
