//! history, show, diff: reading the time machine.

use crate::catalog::{Catalog, VersionRow};
use crate::cli::context::Ctx;
use crate::cli::output::{unified_diff, version_json, version_line, Outcome, VERSION_HEADER};
use crate::cli::time::{fmt_time, parse_time};
use crate::engine::observe::read_file;
use crate::error::{Error, Result};
use crate::store::ObjectStore;
use serde_json::json;

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
    let rows = match ctx.open_read_only()? {
        Some(view) => view.unrecovered.catalog().versions(key.as_deref())?,
        None => Vec::new(),
    };
    let mut text = String::new();
    let mut current = None;
    for r in &rows {
        if current.as_deref() != Some(r.path.as_str()) {
            if current.is_some() {
                text.push('\n');
            }
            text.push_str(&format!("{}\n{VERSION_HEADER}\n", r.path));
            current = Some(r.path.clone());
        }
        text.push_str(&version_line(r));
        text.push('\n');
    }
    if rows.is_empty() {
        text.push_str("no versions recorded\n");
    }
    let json = json!({ "versions": rows.iter().map(version_json).collect::<Vec<_>>() });
    Ok(Outcome::new(json, text))
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
