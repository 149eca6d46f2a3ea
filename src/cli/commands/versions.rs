//! history, show, diff: reading the time machine.

use crate::catalog::{Catalog, VersionRow};
use crate::cli::context::Ctx;
use crate::cli::output::{
    unified_diff, version_header, version_json, Body, OnDisk, Out, Outcome, VersionView,
};
use crate::cli::time::{fmt_time, parse_time};
use crate::engine::observe::read_file;
use crate::error::{Error, Result};
use crate::journal::record::FileState;
use crate::store::ObjectStore;
use serde::{Serialize, Serializer};
use serde_json::json;
use std::collections::HashSet;
use std::io::{self, Write};
use std::sync::Arc;

pub fn parse_version_number(s: &str) -> Result<u64> {
    s.trim()
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            Error::usage(format!(
                "--version {s:?}: a version is a number from 1 (see 'kubeharden history')"
            ))
        })
}

/// The version chosen by `--version N`, `--at TIME`, or (neither) the latest.
pub fn select(
    catalog: &Catalog,
    path: &str,
    version: Option<&str>,
    at: Option<&str>,
) -> Result<VersionRow> {
    if let Some(v) = version {
        let n = parse_version_number(v)?;
        return catalog.version(path, n)?.ok_or_else(|| {
            Error::usage(format!(
                "{path}: no version {n} (see 'kubeharden history {path}')"
            ))
        });
    }
    if let Some(t) = at {
        let ms = parse_at(t)?;
        return catalog.version_at(path, ms)?.ok_or_else(|| {
            Error::usage(format!(
                "{path}: no version was on disk at {} (nothing recorded that early)",
                fmt_time(ms)
            ))
        });
    }
    catalog.last_version(path)?.ok_or_else(|| {
        Error::usage(format!(
            "{path}: no version recorded (run 'kubeharden snapshot')"
        ))
    })
}

/// `--at TIME`, refused when it lies in the future: what a file will hold then is not known,
/// and the version on disk now would be a silent guess.
pub fn parse_at(t: &str) -> Result<i64> {
    let ms = parse_time(t)?;
    let now = crate::engine::now_ms();
    if ms > now {
        return Err(Error::usage(format!(
            "--at {t:?} is in the future ({}; it is {} now): choose a time that has passed, \
             or leave --at out for the latest version",
            fmt_time(ms),
            fmt_time(now)
        )));
    }
    Ok(ms)
}

/// How a version's mode and owner differ from another state's, as lines for people
/// (`mode: 0600 -> 0644`), and as JSON fields. Empty when they are the same, or when either side
/// is a file that does not exist (its creation or removal is the content change itself).
pub fn meta_change(from: &FileState, to: &FileState) -> (Vec<String>, serde_json::Value) {
    let mut lines = Vec::new();
    let mut json = serde_json::Map::new();
    if from.is_absent() || to.is_absent() {
        if from.is_absent() != to.is_absent() {
            let (what, s) = if to.is_absent() {
                ("the file would be removed", from)
            } else {
                ("the file would be created", to)
            };
            lines.push(format!(
                "{what} (mode {:04o}, owner {}:{})",
                s.mode & 0o7777,
                s.uid,
                s.gid
            ));
        }
        return (lines, serde_json::Value::Object(json));
    }
    if from.mode != to.mode {
        lines.push(format!(
            "mode: {:04o} -> {:04o}",
            from.mode & 0o7777,
            to.mode & 0o7777
        ));
        json.insert(
            "mode".into(),
            json!({"from": from.mode & 0o7777, "to": to.mode & 0o7777}),
        );
    }
    if (from.uid, from.gid) != (to.uid, to.gid) {
        lines.push(format!(
            "owner: {}:{} -> {}:{}",
            from.uid, from.gid, to.uid, to.gid
        ));
        json.insert(
            "owner".into(),
            json!({"from": {"uid": from.uid, "gid": from.gid}, "to": {"uid": to.uid, "gid": to.gid}}),
        );
    }
    (lines, serde_json::Value::Object(json))
}

fn no_state(path: &str) -> Error {
    Error::usage(format!(
        "{path}: no version recorded (no state yet; run 'kubeharden snapshot')"
    ))
}

pub fn history(ctx: &Ctx, manifest: Option<&str>) -> Result<Outcome> {
    let path = manifest.map(|m| ctx.manifest_path(m)).transpose()?;
    let key = path.as_ref().map(|p| p.to_string_lossy().into_owned());
    let mut rows = Vec::new();
    // The rows are copied out so the state (and its lock) is let go before anything is printed
    // (to a pager, a slow pipe).
    if let Some(view) = ctx.open_read_only()? {
        let (mut paths, mut origins) = (Interner::default(), Interner::default());
        let pruned = view.unrecovered.catalog().pruned_hashes()?;
        view.unrecovered
            .catalog()
            .scan_versions(key.as_deref(), |v| {
                rows.push(HistRow {
                    path: paths.get(v.path),
                    version: v.version,
                    hash_hex: lower_hex(v.hash_hex),
                    size: v.size,
                    mode: v.mode,
                    uid: v.uid,
                    gid: v.gid,
                    origin: origins.get(v.origin),
                    txn: v.txn,
                    recorded_at: v.recorded_at,
                    on_disk_from: v.on_disk_from,
                    on_disk_until: v.on_disk_until,
                    disk: OnDisk::Unknown,
                    pruned: pruned.contains(v.hash_hex),
                });
                Ok(())
            })?;
    }
    for r in rows.iter_mut().filter(|r| r.on_disk_until.is_none()) {
        r.disk = on_disk(ctx, &r.path, &r.hash_hex, (r.mode, r.uid, r.gid));
    }
    Ok(Outcome::rendered(History { rows }))
}

/// Whether the file holds exactly a file's last recorded version now: content, mode, owner.
fn on_disk(
    ctx: &Ctx,
    path: &str,
    hash_hex: &[u8; 64],
    (mode, uid, gid): (u32, u32, u32),
) -> OnDisk {
    match crate::engine::observe::read_current(ctx.fs.as_ref(), std::path::Path::new(path)) {
        Ok((_, now)) => {
            let was_absent = mode & crate::journal::record::ABSENT_MODE != 0;
            let same = if now.is_absent() || was_absent {
                now.is_absent() && was_absent
            } else {
                crate::journal::record::hash_hex(&now.hash).as_bytes() == hash_hex
                    && (now.mode, now.uid, now.gid) == (mode, uid, gid)
            };
            if same {
                OnDisk::Matches
            } else {
                OnDisk::Changed
            }
        }
        Err(_) => OnDisk::Unreadable,
    }
}

/// One version of `history`, kept after the catalog is closed.
struct HistRow {
    path: Arc<str>,
    version: u64,
    /// Lower-case hex digits, as the catalog holds them.
    hash_hex: [u8; 64],
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    origin: Arc<str>,
    txn: Option<u64>,
    recorded_at: i64,
    on_disk_from: i64,
    on_disk_until: Option<i64>,
    /// For a file's last version: how the disk compares now.
    disk: OnDisk,
    /// Its content was dropped by `prune`.
    pruned: bool,
}

/// Paths and origins repeat on almost every row: each distinct one is allocated once.
#[derive(Default)]
struct Interner {
    last: Option<Arc<str>>,
    seen: HashSet<Arc<str>>,
}

impl Interner {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(l) = self.last.as_ref().filter(|l| ***l == *s) {
            return l.clone();
        }
        let shared = match self.seen.get(s) {
            Some(known) => known.clone(),
            None => {
                let new: Arc<str> = Arc::from(s);
                self.seen.insert(new.clone());
                new
            }
        };
        self.last = Some(shared.clone());
        shared
    }
}

/// A catalog hash (64 hex digits, checked by `scan_versions`) in lower case, as
/// `hash_hex` writes it.
fn lower_hex(hex: &str) -> [u8; 64] {
    let mut out = [b'0'; 64];
    for (o, b) in out.iter_mut().zip(hex.as_bytes()) {
        *o = b.to_ascii_lowercase();
    }
    out
}

impl HistRow {
    fn view(&self) -> VersionView<'_> {
        VersionView {
            path: &self.path,
            version: self.version,
            hash_hex: std::str::from_utf8(&self.hash_hex).unwrap_or_default(),
            size: self.size,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            origin: &self.origin,
            txn: self.txn,
            recorded_at: self.recorded_at,
            on_disk_from: self.on_disk_from,
            on_disk_until: self.on_disk_until,
        }
    }
}

/// `history`'s output: `{"versions": [...]}` or the per-path tables, streamed.
struct History {
    rows: Vec<HistRow>,
}

struct Rows<'a>(&'a [HistRow]);

impl Serialize for Rows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|r| {
            let mut j = r.view().json();
            j.pruned = r.pruned;
            j
        }))
    }
}

#[derive(Serialize)]
struct HistoryJson<'a> {
    versions: Rows<'a>,
}

impl Body for History {
    fn write_json(&self, out: &mut Out<'_>) -> io::Result<()> {
        let doc = HistoryJson {
            versions: Rows(&self.rows),
        };
        Ok(serde_json::to_writer(out, &doc)?)
    }

    fn write_text(&self, out: &mut Out<'_>) -> io::Result<()> {
        // One block per file (the JSON keeps cli.md's order: every version, oldest first). The
        // sort is stable, so each file's versions stay in their order.
        let mut rows: Vec<&HistRow> = self.rows.iter().collect();
        rows.sort_by(|a, b| a.path.cmp(&b.path));
        let mut current: Option<&str> = None;
        for r in rows {
            if current != Some(&*r.path) {
                if current.is_some() {
                    out.write_all(b"\n")?;
                }
                write!(out, "{}\n{}", r.path, version_header())?;
                current = Some(&r.path);
            }
            r.view().write_line_full(out, r.disk, r.pruned)?;
        }
        if self.rows.is_empty() {
            out.write_all(b"no versions recorded\n")?;
        }
        Ok(())
    }
}

/// A version's exact bytes from the store; a version `prune` dropped is a clear error (exit 2),
/// not a missing object (which would be damage).
pub fn content(catalog: &Catalog, store: &ObjectStore, v: &VersionRow) -> Result<Vec<u8>> {
    if let Some(at) = catalog.pruned_at(&v.state.hash)? {
        return Err(Error::usage(format!(
            "{}: version {} was pruned at {} ('kubeharden prune'): its content is no longer \
             stored; 'kubeharden history {}' lists the versions that are",
            v.path,
            v.version,
            fmt_time(at),
            v.path
        )));
    }
    store.get(&v.state.hash)
}

pub fn show(ctx: &Ctx, manifest: &str, version: Option<&str>, at: Option<&str>) -> Result<Outcome> {
    if let Some(v) = version {
        parse_version_number(v)?;
    }
    if let Some(t) = at {
        parse_at(t)?;
    }
    let path = ctx.manifest_path(manifest)?;
    let key = path.to_string_lossy().into_owned();
    let view = ctx.open_read_only()?.ok_or_else(|| no_state(&key))?;
    let row = select(view.unrecovered.catalog(), &key, version, at)?;
    let bytes = content(view.unrecovered.catalog(), view.unrecovered.store(), &row)?;
    let mut json = version_json(&row);
    content_json(&mut json, &bytes);
    Ok(Outcome::new(json, bytes))
}

/// The exact bytes in JSON: `content` holds them when they are UTF-8; otherwise `content` is
/// null and `content_base64` holds them (standard alphabet, padded). `encoding` says which.
pub fn content_json(json: &mut serde_json::Value, bytes: &[u8]) {
    use base64::Engine as _;
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            json["content"] = json!(text);
            json["encoding"] = json!("utf-8");
        }
        Err(_) => {
            json["content"] = serde_json::Value::Null;
            json["content_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
            json["encoding"] = json!("base64");
        }
    }
}

pub fn diff(ctx: &Ctx, manifest: &str, from: &str, to: Option<&str>) -> Result<Outcome> {
    let from_n = parse_version_number(from)?;
    let to_n = match to {
        None | Some("current") => None,
        Some(t) => Some(parse_version_number(t)?),
    };
    let path = ctx.manifest_path(manifest)?;
    let key = path.to_string_lossy().into_owned();
    let view = ctx.open_read_only()?.ok_or_else(|| no_state(&key))?;
    let catalog = view.unrecovered.catalog();
    let store = view.unrecovered.store();
    let a_row = select(catalog, &key, Some(from), None)?;
    let a = content(catalog, store, &a_row)?;
    let (b, b_state, b_name) = match to_n {
        Some(n) => {
            let row = select(catalog, &key, Some(&n.to_string()), None)?;
            (
                content(catalog, store, &row)?,
                row.state,
                format!("{key}@v{n}"),
            )
        }
        None => {
            let (bytes, state, _) = read_file(ctx.fs.as_ref(), &path)?;
            (bytes, state, format!("{key} (on disk)"))
        }
    };
    let (meta_lines, meta) = meta_change(&a_row.state, &b_state);
    let body = unified_diff(&a, &b, &format!("{key}@v{from_n}"), &b_name);
    let mut text = String::new();
    for l in &meta_lines {
        text.push_str(&format!("{key}: {l}\n"));
    }
    text.push_str(&body);
    let json = json!({
        "path": key,
        "from": from_n,
        "to": to_n,
        "identical": a == b && meta_lines.is_empty(),
        "content_identical": a == b,
        "metadata": meta,
        "diff": body,
    });
    Ok(Outcome::new(json, text))
}
