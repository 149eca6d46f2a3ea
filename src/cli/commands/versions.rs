//! history, show, diff: reading the time machine.

use crate::catalog::{Catalog, VersionRow};
use crate::cli::context::Ctx;
use crate::cli::output::{
    unified_diff, version_json, Body, Out, Outcome, VersionView, VERSION_HEADER,
};
use crate::cli::time::{fmt_time, parse_time};
use crate::engine::observe::read_file;
use crate::error::{Error, Result};
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
        let ms = parse_time(t)?;
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
                });
                Ok(())
            })?;
    }
    Ok(Outcome::rendered(History { rows }))
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
        s.collect_seq(self.0.iter().map(|r| r.view().json()))
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
        let mut current: Option<&str> = None;
        for r in &self.rows {
            if current != Some(&*r.path) {
                if current.is_some() {
                    out.write_all(b"\n")?;
                }
                writeln!(out, "{}\n{VERSION_HEADER}", r.path)?;
                current = Some(&r.path);
            }
            r.view().write_line(out)?;
        }
        if self.rows.is_empty() {
            out.write_all(b"no versions recorded\n")?;
        }
        Ok(())
    }
}

fn content(store: &ObjectStore, v: &VersionRow) -> Result<Vec<u8>> {
    store.get(&v.state.hash)
}

pub fn show(ctx: &Ctx, manifest: &str, version: Option<&str>, at: Option<&str>) -> Result<Outcome> {
    if let Some(v) = version {
        parse_version_number(v)?;
    }
    if let Some(t) = at {
        parse_time(t)?;
    }
    let path = ctx.manifest_path(manifest)?;
    let key = path.to_string_lossy().into_owned();
    let view = ctx.open_read_only()?.ok_or_else(|| no_state(&key))?;
    let row = select(view.unrecovered.catalog(), &key, version, at)?;
    let bytes = content(view.unrecovered.store(), &row)?;
    let mut json = version_json(&row);
    json["content"] = json!(String::from_utf8_lossy(&bytes));
    Ok(Outcome::new(json, bytes))
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
    let a = content(store, &a_row)?;
    let (b, b_name) = match to_n {
        Some(n) => {
            let row = select(catalog, &key, Some(&n.to_string()), None)?;
            (content(store, &row)?, format!("{key}@v{n}"))
        }
        None => {
            let (bytes, _, _) = read_file(ctx.fs.as_ref(), &path)?;
            (bytes, format!("{key} (on disk)"))
        }
    };
    let text = unified_diff(&a, &b, &format!("{key}@v{from_n}"), &b_name);
    let json = json!({
        "path": key,
        "from": from_n,
        "to": to_n,
        "identical": a == b,
        "diff": text,
    });
    Ok(Outcome::new(json, text))
}
