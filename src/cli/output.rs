//! What a command hands back: a JSON document and its human form, plus the exit code.

use super::time::fmt_time;
use crate::catalog::VersionRow;
use crate::journal::record::hash_hex;
use serde_json::{json, Value};

pub struct Outcome {
    pub json: Value,
    /// Written to stdout as is in text mode.
    pub text: Vec<u8>,
    pub code: i32,
}

impl Outcome {
    pub fn new(json: Value, text: impl Into<Vec<u8>>) -> Outcome {
        Outcome {
            json,
            text: text.into(),
            code: 0,
        }
    }

    pub fn with_code(mut self, code: i32) -> Outcome {
        self.code = code;
        self
    }
}

pub fn version_json(v: &VersionRow) -> Value {
    json!({
        "path": v.path,
        "version": v.version,
        "hash": hash_hex(&v.state.hash),
        "size": v.state.size,
        "mode": v.state.mode & 0o7777,
        // The file did not exist (created by the next version, or removed by a rollback).
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

pub fn version_line(v: &VersionRow) -> String {
    format!(
        "{:>4}  {:<24}  {:<24}  {:<9}  {:>5}  {:04o}  {:>5}:{:<5}  {:>7}  {}",
        v.version,
        fmt_time(v.on_disk_from),
        v.on_disk_until
            .map(fmt_time)
            .unwrap_or_else(|| "(current)".into()),
        v.origin,
        v.txn.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
        v.state.mode,
        v.state.uid,
        v.state.gid,
        v.state.size,
        &hash_hex(&v.state.hash)[..16],
    )
}

pub const VERSION_HEADER: &str =
    "   V  ON DISK FROM                UNTIL                     ORIGIN       TXN  MODE    UID:GID       SIZE  BLAKE3";

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
