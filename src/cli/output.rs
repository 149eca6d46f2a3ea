//! What a command hands back: a JSON document and its human form, plus the exit code; or, for
//! large outputs (`history`), a body rendered straight to stdout in the one format asked for.

use super::args::OutputFormat;
use super::time::fmt_time;
use crate::catalog::VersionRow;
use crate::journal::record::hash_hex;
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::fmt;
use std::io::{self, BufWriter, Write};

/// Where an outcome is written: a large buffer in front of stdout (or any writer), so a long
/// output goes out in a few large writes.
pub type Out<'a> = BufWriter<&'a mut dyn Write>;

const OUT_BUFFER: usize = 64 * 1024;

/// An output rendered only when it is written, and only in the format asked for.
pub trait Body {
    /// Exactly one JSON document, without the final newline.
    fn write_json(&self, out: &mut Out<'_>) -> io::Result<()>;
    /// The human form, as written to stdout.
    fn write_text(&self, out: &mut Out<'_>) -> io::Result<()>;
}

pub struct Outcome {
    /// The JSON document (`Value::Null` when `body` renders it).
    pub json: Value,
    /// Written to stdout as is in text mode (empty when `body` renders it).
    pub text: Vec<u8>,
    pub code: i32,
    /// When set, what is written instead of `json` / `text`.
    pub body: Option<Box<dyn Body + Send>>,
}

impl Outcome {
    pub fn new(json: Value, text: impl Into<Vec<u8>>) -> Outcome {
        Outcome {
            json,
            text: text.into(),
            code: 0,
            body: None,
        }
    }

    /// An outcome whose output is rendered when written, in one format only.
    pub fn rendered(body: impl Body + Send + 'static) -> Outcome {
        Outcome {
            json: Value::Null,
            text: Vec::new(),
            code: 0,
            body: Some(Box::new(body)),
        }
    }

    pub fn with_code(mut self, code: i32) -> Outcome {
        self.code = code;
        self
    }

    /// Write the output in `format` (in JSON, one document and a newline) and flush. After an
    /// error (a closed pipe) nothing more is written.
    pub fn write(&self, format: OutputFormat, out: &mut dyn Write) -> io::Result<()> {
        let mut w = BufWriter::with_capacity(OUT_BUFFER, out);
        let r = self.write_to(format, &mut w).and_then(|()| w.flush());
        if r.is_err() {
            // Drop what is still buffered instead of retrying it when `w` is dropped.
            let _ = w.into_parts();
        }
        r
    }

    fn write_to(&self, format: OutputFormat, w: &mut Out<'_>) -> io::Result<()> {
        match (format, &self.body) {
            (OutputFormat::Json, Some(b)) => b.write_json(w)?,
            (OutputFormat::Json, None) => serde_json::to_writer(&mut *w, &self.json)?,
            (OutputFormat::Text, Some(b)) => return b.write_text(w),
            (OutputFormat::Text, None) => return w.write_all(&self.text),
        }
        w.write_all(b"\n")
    }

    /// What [`Outcome::write`] writes, as bytes.
    pub fn to_bytes(&self, format: OutputFormat) -> Vec<u8> {
        let mut v = Vec::new();
        // Writing to a Vec cannot fail (a body's own JSON error aside).
        let _ = self.write(format, &mut v);
        v
    }
}

/// One line to stderr, `kubeharden: ` first. An unwritable stderr (`2>/dev/full`, a closed
/// pipe, a log on a full disk) is ignored: a message must never panic the process nor change
/// the exit code the operation earned (`eprintln!` panics on a write error).
pub fn say(msg: impl fmt::Display) {
    let _ = writeln!(io::stderr().lock(), "kubeharden: {msg}");
}

/// A warning: said on stderr, and kept for the JSON document (`warnings`) of this run.
pub fn warn(msg: impl fmt::Display) {
    let msg = msg.to_string();
    say(format_args!("warning: {msg}"));
    if let Ok(mut w) = WARNINGS.lock() {
        w.push(msg);
    }
}

/// The warnings of this run so far, taken.
pub fn take_warnings() -> Vec<String> {
    WARNINGS
        .lock()
        .map(|mut w| std::mem::take(&mut *w))
        .unwrap_or_default()
}

static WARNINGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Write `text` to stdout as is; a closed pipe or a full disk is ignored (see [`say`]).
pub fn print_out(text: impl fmt::Display) {
    let mut out = io::stdout().lock();
    let _ = write!(out, "{text}").and_then(|()| out.flush());
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds (`2026-11-26T09:09:38.860Z`),
/// without allocating: exactly what [`fmt_time`] (chrono) gives, which it falls back to outside
/// the years 0000–9999. Displays with padding (`{:<24}`) and serializes as a string.
#[derive(Clone, PartialEq, Eq)]
pub enum Rfc3339 {
    Fixed([u8; 24]),
    Other(String),
}

/// 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z: the range of the fixed-width form.
const FIXED_MIN_MS: i64 = -62_167_219_200_000;
const FIXED_MAX_MS: i64 = 253_402_300_799_999;

/// (year, month, day) of a day count from 1970-01-01 (proleptic Gregorian; H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], from March
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl Rfc3339 {
    pub fn from_ms(ms: i64) -> Rfc3339 {
        if !(FIXED_MIN_MS..=FIXED_MAX_MS).contains(&ms) {
            return Rfc3339::Other(fmt_time(ms));
        }
        let days = ms.div_euclid(86_400_000);
        let in_day = ms.rem_euclid(86_400_000) as u32;
        let (y, mo, d) = civil_from_days(days);
        let y = y as u32;
        let (secs, milli) = (in_day / 1000, in_day % 1000);
        let (h, mi, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let mut b = *b"0000-00-00T00:00:00.000Z";
        let digit = |v: u32| b'0' + v as u8;
        b[0] = digit(y / 1000);
        b[1] = digit(y / 100 % 10);
        b[2] = digit(y / 10 % 10);
        b[3] = digit(y % 10);
        for (at, v) in [(5, mo), (8, d), (11, h), (14, mi), (17, s)] {
            b[at] = digit(v / 10);
            b[at + 1] = digit(v % 10);
        }
        b[20] = digit(milli / 100);
        b[21] = digit(milli / 10 % 10);
        b[22] = digit(milli % 10);
        Rfc3339::Fixed(b)
    }

    pub fn as_str(&self) -> &str {
        match self {
            // Only ASCII digits and punctuation are ever written.
            Rfc3339::Fixed(b) => std::str::from_utf8(b).unwrap_or_default(),
            Rfc3339::Other(s) => s,
        }
    }
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One version as `history` and `show` print it, borrowed from wherever the row is kept: the
/// catalog's own borrowed row type (its `mode` includes `ABSENT_MODE`).
pub use crate::catalog::VersionRef as VersionView;

/// The JSON object of a version (fields in the alphabetical order `serde_json::Value` has).
#[derive(Serialize)]
pub struct VersionJson<'a> {
    /// The file did not exist (created by the next version, or removed by a rollback).
    pub absent: bool,
    pub gid: u32,
    pub hash: &'a str,
    pub mode: u32,
    pub on_disk_from: Rfc3339,
    pub on_disk_until: Option<Rfc3339>,
    pub origin: &'a str,
    pub path: &'a str,
    /// `prune` dropped the content from the store (the version stays listed).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pruned: bool,
    pub recorded_at: Rfc3339,
    pub size: u64,
    pub txn: Option<u64>,
    pub uid: u32,
    pub version: u64,
}

/// The TXN column: the id, or `-`.
struct TxnCell(Option<u64>);

impl fmt::Display for TxnCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(t) => fmt::Display::fmt(&t, f),
            None => f.pad("-"),
        }
    }
}

/// How the last version of a file compares with the file on disk now: only a version whose
/// content, mode and owner are what the disk holds is "(current)".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDisk {
    /// Not looked at (the row is not a file's last version, or nobody checked).
    Unknown,
    Matches,
    Changed,
    Unreadable,
}

impl OnDisk {
    fn label(self) -> &'static str {
        match self {
            OnDisk::Unknown | OnDisk::Matches => "(current)",
            OnDisk::Changed => "(changed on disk since)",
            OnDisk::Unreadable => "(cannot read it now)",
        }
    }
}

/// The UNTIL column: a time, or how the last version compares with the disk.
struct UntilCell(Option<Rfc3339>, OnDisk);

impl fmt::Display for UntilCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(t) => fmt::Display::fmt(t, f),
            None => f.pad(self.1.label()),
        }
    }
}

/// The MODE column: four octal digits, or `-` for a file that did not exist.
struct ModeCell(u32);

impl fmt::Display for ModeCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 & crate::journal::record::ABSENT_MODE != 0 {
            f.pad("-")
        } else {
            f.pad(&format!("{:04o}", self.0 & 0o7777))
        }
    }
}

/// The columns of a `history` line and of its header: one format for both, so they align.
macro_rules! history_columns {
    ($out:expr, $v:expr, $from:expr, $until:expr, $origin:expr, $txn:expr, $mode:expr,
     $owner:expr, $size:expr, $hash:expr) => {
        writeln!(
            $out,
            "{:>4}  {:<24}  {:<24}  {:<9}  {:>7}  {:<4}  {:>11}  {:>7}  {}",
            $v, $from, $until, $origin, $txn, $mode, $owner, $size, $hash
        )
    };
}

impl<'a> VersionView<'a> {
    pub fn json(&self) -> VersionJson<'a> {
        let on_disk_from = Rfc3339::from_ms(self.on_disk_from);
        // Recorded when first seen on disk, usually: the same string.
        let recorded_at = if self.recorded_at == self.on_disk_from {
            on_disk_from.clone()
        } else {
            Rfc3339::from_ms(self.recorded_at)
        };
        VersionJson {
            absent: self.mode & crate::journal::record::ABSENT_MODE != 0,
            gid: self.gid,
            hash: self.hash_hex,
            mode: self.mode & 0o7777,
            on_disk_from,
            on_disk_until: self.on_disk_until.map(Rfc3339::from_ms),
            origin: self.origin,
            path: self.path,
            pruned: false,
            recorded_at,
            size: self.size,
            txn: self.txn,
            uid: self.uid,
            version: self.version,
        }
    }

    /// One line of the `history` table (under [`version_header`]), with its newline.
    pub fn write_line(&self, out: &mut impl Write) -> io::Result<()> {
        self.write_line_on_disk(out, OnDisk::Unknown)
    }

    /// [`VersionView::write_line`], saying for a file's last version how the disk compares.
    pub fn write_line_on_disk(&self, out: &mut impl Write, disk: OnDisk) -> io::Result<()> {
        self.write_line_full(out, disk, false)
    }

    /// [`VersionView::write_line_on_disk`], marking a version whose content was pruned.
    pub fn write_line_full(
        &self,
        out: &mut impl Write,
        disk: OnDisk,
        pruned: bool,
    ) -> io::Result<()> {
        let hash = self.hash_hex.get(..16).unwrap_or(self.hash_hex);
        let hash = if pruned {
            format!("{hash} (pruned)")
        } else {
            hash.to_string()
        };
        history_columns!(
            out,
            self.version,
            Rfc3339::from_ms(self.on_disk_from),
            UntilCell(self.on_disk_until.map(Rfc3339::from_ms), disk),
            self.origin,
            TxnCell(self.txn),
            ModeCell(self.mode),
            format!("{}:{}", self.uid, self.gid),
            self.size,
            hash
        )
    }
}

/// The header line of the `history` table, with its newline, aligned with its columns.
pub fn version_header() -> String {
    let mut v = Vec::new();
    let _ = history_columns!(
        &mut v,
        "V",
        "ON DISK FROM",
        "UNTIL",
        "ORIGIN",
        "TXN",
        "MODE",
        "UID:GID",
        "SIZE",
        "BLAKE3"
    );
    String::from_utf8(v).unwrap_or_default()
}

/// A [`VersionRow`] seen as a [`VersionView`] (its hash encoded into `hex`).
fn row_view<'a>(v: &'a VersionRow, hex: &'a str) -> VersionView<'a> {
    VersionView {
        path: &v.path,
        version: v.version,
        hash_hex: hex,
        size: v.state.size,
        mode: v.state.mode,
        uid: v.state.uid,
        gid: v.state.gid,
        origin: &v.origin,
        txn: v.txn,
        recorded_at: v.recorded_at,
        on_disk_from: v.on_disk_from,
        on_disk_until: v.on_disk_until,
    }
}

pub fn version_json(v: &VersionRow) -> Value {
    let hex = hash_hex(&v.state.hash);
    serde_json::to_value(row_view(v, &hex).json()).unwrap_or(Value::Null)
}

pub fn version_line(v: &VersionRow) -> String {
    let hex = hash_hex(&v.state.hash);
    let mut line = Vec::with_capacity(128);
    let _ = row_view(v, &hex).write_line(&mut line);
    line.pop(); // the newline
    String::from_utf8(line).unwrap_or_default()
}

/// A unified diff of two byte strings (lossy UTF-8 for display).
pub fn unified_diff(a: &[u8], b: &[u8], a_name: &str, b_name: &str) -> String {
    let a = String::from_utf8_lossy(a);
    let b = String::from_utf8_lossy(b);
    similar::TextDiff::from_lines(a.as_ref(), b.as_ref())
        .unified_diff()
        .context_radius(3)
        .header(a_name, b_name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::FileState;

    /// SplitMix64: a fixed, well-spread sequence without a dependency.
    struct Mix(u64);

    impl Mix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        /// Uniform in `lo..=hi`.
        fn range(&mut self, lo: i64, hi: i64) -> i64 {
            lo + (self.next() % ((hi - lo) as u64 + 1)) as i64
        }
    }

    fn same_as_chrono(ms: i64) {
        assert_eq!(Rfc3339::from_ms(ms).as_str(), fmt_time(ms), "ms = {ms}");
    }

    #[test]
    fn time_format_equals_chrono_at_edges() {
        const DAY: i64 = 86_400_000;
        let mut edges = vec![
            0,
            -1,
            1,
            999,
            -999,
            -1000,
            DAY - 1,
            -DAY,
            -DAY - 1,
            FIXED_MIN_MS,
            FIXED_MIN_MS - 1,
            FIXED_MIN_MS + 1,
            FIXED_MAX_MS,
            FIXED_MAX_MS + 1,
            FIXED_MAX_MS - 1,
            i64::MIN,
            i64::MAX,
            i64::MIN + 1,
            8_210_266_876_799_999,
            -8_334_632_851_200_000,
            1_795_684_178_860, // 2026-11-26T09:09:38.860Z
        ];
        // Around leap days and century years (1600, 1700, 1900: 2000 is a leap year, 1900 not).
        for (y, m, d) in [
            (1600, 2, 29),
            (1700, 2, 28),
            (1700, 3, 1),
            (1900, 2, 28),
            (1900, 3, 1),
            (1969, 12, 31),
            (1970, 1, 1),
            (1972, 2, 29),
            (2000, 2, 29),
            (2000, 3, 1),
            (2024, 2, 29),
            (2100, 3, 1),
            (0, 2, 29),
            (0, 3, 1),
            (4, 2, 29),
            (9999, 12, 31),
        ] {
            let date = chrono::NaiveDate::from_ymd_opt(y, m, d).expect("a real date");
            let ms = date
                .and_hms_opt(0, 0, 0)
                .expect("midnight")
                .and_utc()
                .timestamp_millis();
            edges.extend([ms - 1, ms, ms + 1, ms + DAY - 1, ms + DAY]);
        }
        for ms in edges {
            same_as_chrono(ms);
        }
        assert_eq!(
            Rfc3339::from_ms(1_795_684_178_860).as_str(),
            "2026-11-26T09:09:38.860Z"
        );
    }

    #[test]
    fn time_format_equals_chrono_on_random_instants() {
        let mut rng = Mix(0x6b75_6265);
        for _ in 0..200_000 {
            // The whole fixed range, and around the epoch (pre-1970 too).
            same_as_chrono(rng.range(FIXED_MIN_MS - 10_000, FIXED_MAX_MS + 10_000));
            same_as_chrono(rng.range(-5_000_000_000_000, 5_000_000_000_000));
        }
        // Every day of 1896–2104 (leap years, 1900, 2000, 2100) at a random time of day.
        let start = -2_335_219_200_000; // 1896-01-01
        for day in 0..(209 * 366) {
            same_as_chrono(start + day * 86_400_000 + rng.range(0, 86_399_999));
        }
        // Far outside the fixed range, where chrono's own form is used.
        for _ in 0..10_000 {
            same_as_chrono(rng.next() as i64);
        }
    }

    #[test]
    fn time_pads_like_a_string() {
        let t = Rfc3339::from_ms(0);
        assert_eq!(format!("[{t:<26}]"), "[1970-01-01T00:00:00.000Z  ]");
        assert_eq!(format!("{}", TxnCell(None)).len(), 1);
        assert_eq!(format!("[{:>5}]", TxnCell(None)), "[    -]");
        assert_eq!(format!("[{:>5}]", TxnCell(Some(42))), "[   42]");
        assert_eq!(
            format!("[{:<10}]", UntilCell(None, OnDisk::Matches)),
            "[(current) ]"
        );
    }

    fn row(mode: u32, txn: Option<u64>, until: Option<i64>) -> VersionRow {
        let mut hash = [0u8; 32];
        for (i, b) in hash.iter_mut().enumerate() {
            *b = (i * 37 + 5) as u8;
        }
        VersionRow {
            path: "/etc/kubernetes/manifests/kube-apiserver.yaml".into(),
            version: 12,
            state: FileState {
                hash,
                size: 4053,
                mode,
                uid: 0,
                gid: 1000,
            },
            origin: "change".into(),
            txn,
            recorded_at: 1_795_684_178_860,
            on_disk_from: -86_400_001,
            on_disk_until: until,
        }
    }

    /// The line as built with format! (the reference for the fixed-width fast path), with the
    /// columns of the header.
    fn old_line(v: &VersionRow) -> String {
        let mode = if v.state.is_absent() {
            "-".to_string()
        } else {
            format!("{:04o}", v.state.mode & 0o7777)
        };
        format!(
            "{:>4}  {:<24}  {:<24}  {:<9}  {:>7}  {:<4}  {:>11}  {:>7}  {}",
            v.version,
            fmt_time(v.on_disk_from),
            v.on_disk_until
                .map(fmt_time)
                .unwrap_or_else(|| "(current)".into()),
            v.origin,
            v.txn.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
            mode,
            format!("{}:{}", v.state.uid, v.state.gid),
            v.state.size,
            &hash_hex(&v.state.hash)[..16],
        )
    }

    fn old_json(v: &VersionRow) -> Value {
        serde_json::json!({
            "path": v.path,
            "version": v.version,
            "hash": hash_hex(&v.state.hash),
            "size": v.state.size,
            "mode": v.state.mode & 0o7777,
            "absent": v.state.is_absent(),
            "uid": v.state.uid,
            "gid": v.state.gid,
            "origin": v.origin,
            "txn": v.txn,
            "recorded_at": fmt_time(v.recorded_at),
            "on_disk_from": fmt_time(v.on_disk_from),
            "on_disk_until": v.on_disk_until.map(fmt_time),
        })
    }

    #[test]
    fn version_line_and_json_are_unchanged() {
        for r in [
            row(0o600, Some(7), Some(1_795_684_178_999)),
            row(0o644 | crate::journal::record::ABSENT_MODE, None, None),
            row(0o4755, Some(123_456), None),
        ] {
            assert_eq!(version_line(&r), old_line(&r));
            assert_eq!(version_json(&r), old_json(&r));
            // Every column starts where its header does.
            assert_columns_align(&version_header(), &version_line(&r));
            // Byte for byte, as serialized.
            let hex = hash_hex(&r.state.hash);
            assert_eq!(
                serde_json::to_string(&row_view(&r, &hex).json()).unwrap(),
                old_json(&r).to_string()
            );
        }
    }

    /// Each header word starts a column: the line has a non-blank right after a blank (or at
    /// the start) there, for left-aligned columns, or the column ends where the header word
    /// ends, for right-aligned ones.
    fn assert_columns_align(header: &str, line: &str) {
        let h = header.trim_end_matches('\n').as_bytes();
        let l = line.as_bytes();
        let mut i = 0;
        while i < h.len() {
            if h[i] == b' ' {
                i += 1;
                continue;
            }
            let start = i;
            while i < h.len() && !(h[i] == b' ' && h.get(i + 1) == Some(&b' ')) {
                i += 1;
            }
            let word = &header[start..i];
            let left =
                l.get(start).is_some_and(|c| *c != b' ') && (start == 0 || l[start - 1] == b' ');
            let right =
                l.get(i - 1).is_some_and(|c| *c != b' ') && l.get(i).is_none_or(|c| *c == b' ');
            assert!(left || right, "column {word:?} misaligned:\n{header}{line}");
        }
    }

    #[test]
    fn item7_history_header_aligned() {
        let header = version_header();
        assert!(header.starts_with("   V  ON DISK FROM "), "{header}");
        for r in [
            row(0o600, Some(7), Some(1_795_684_178_999)),
            row(0o600, None, None),
            row(0o644 | crate::journal::record::ABSENT_MODE, None, None),
        ] {
            let hex = hash_hex(&r.state.hash);
            for disk in [OnDisk::Matches, OnDisk::Changed, OnDisk::Unreadable] {
                let mut line = Vec::new();
                row_view(&r, &hex)
                    .write_line_on_disk(&mut line, disk)
                    .unwrap();
                let line = String::from_utf8(line).unwrap();
                assert_columns_align(&header, &line);
                assert_eq!(line.len(), version_line(&r).len() + 1, "{line}");
                if r.on_disk_until.is_none() {
                    assert!(line.contains(disk.label()), "{line}");
                }
            }
        }
    }

    struct Fixed;

    impl Body for Fixed {
        fn write_json(&self, out: &mut Out<'_>) -> io::Result<()> {
            out.write_all(b"{\"a\":1}")
        }
        fn write_text(&self, out: &mut Out<'_>) -> io::Result<()> {
            out.write_all(b"a 1\n")
        }
    }

    /// A writer that takes `room` bytes, then fails as a closed pipe does.
    struct Pipe {
        room: usize,
        writes: usize,
        failed: usize,
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writes += 1;
            if self.room == 0 {
                self.failed += 1;
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_stops_the_output_at_once() {
        let big = Outcome::new(Value::Null, vec![b'x'; 1 << 20]);
        let mut p = Pipe {
            room: 100,
            writes: 0,
            failed: 0,
        };
        let e = big.write(OutputFormat::Text, &mut p).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(p.failed, 1, "no retry after the pipe closed");
    }

    #[test]
    fn outcomes_write_one_json_document_or_the_text() {
        let eager = Outcome::new(serde_json::json!({"b": [1, 2]}), "b\n");
        assert_eq!(eager.to_bytes(OutputFormat::Json), b"{\"b\":[1,2]}\n");
        assert_eq!(eager.to_bytes(OutputFormat::Text), b"b\n");
        let lazy = Outcome::rendered(Fixed).with_code(3);
        assert_eq!(lazy.code, 3);
        assert_eq!(lazy.to_bytes(OutputFormat::Json), b"{\"a\":1}\n");
        assert_eq!(lazy.to_bytes(OutputFormat::Text), b"a 1\n");
    }
}
