//! `set`: set or remove command-line flags of a container, as one journaled transaction.

use super::gated;
use super::txn_output::{exit_code, outcome, summary, txn_json};
use crate::cli::args::GateArgs;
use crate::cli::context::{stop_on_conflict, Ctx};
use crate::cli::output::{unified_diff, Outcome};
use crate::engine::observe::read_file;
use crate::engine::txn::{Change, TxnReport, TxnStatus};
use crate::error::{Error, Result};
use crate::journal::record::{FileState, TxnKind};
use crate::manifest::{self, FlagEdit, ManifestError};
use crate::store::objects::hash_bytes;
use serde_json::json;

pub struct SetArgs<'a> {
    pub manifest: &'a str,
    pub flags: &'a [String],
    pub unset: &'a [String],
    pub container: Option<&'a str>,
    pub reason: &'a str,
    pub dry_run: bool,
    pub gate: &'a GateArgs,
}

fn bad_manifest(path: &str, e: ManifestError) -> Error {
    Error::usage(format!("{path}: {e}; nothing was changed"))
}

/// The edits, validated: `--flag NAME=VALUE` and `--unset NAME` (leading dashes allowed).
fn parse_edits(flags: &[String], unset: &[String]) -> Result<Vec<FlagEdit>> {
    if flags.is_empty() && unset.is_empty() {
        return Err(Error::usage(
            "nothing to do: give --flag NAME=VALUE and/or --unset NAME",
        ));
    }
    let mut edits = Vec::new();
    for f in flags {
        edits.push(manifest::parse_flag_arg(f).map_err(|e| Error::usage(e.to_string()))?);
    }
    for u in unset {
        let name = u.trim_start_matches('-').to_string();
        manifest::validate_flag_name(&name).map_err(|e| Error::usage(e.to_string()))?;
        edits.push(FlagEdit::Unset { name });
    }
    Ok(edits)
}

/// The flags as they read after the change, for JSON (`--name=value`, or `--name` removed).
fn flag_words(edits: &[FlagEdit]) -> Vec<String> {
    edits
        .iter()
        .map(|e| match e {
            FlagEdit::Set { name, value } => format!("--{name}={value}"),
            FlagEdit::Unset { name } => format!("--{name} (unset)"),
        })
        .collect()
}

pub fn set(ctx: &Ctx, a: SetArgs) -> Result<Outcome> {
    let edits = parse_edits(a.flags, a.unset)?;
    let words = flag_words(&edits);
    let path = ctx.manifest_path(a.manifest)?;
    let key = path.to_string_lossy().into_owned();
    let reason = if a.reason.is_empty() {
        format!("set {}", words.join(" "))
    } else {
        a.reason.to_string()
    };

    if a.dry_run {
        // A dry run reads the file and nothing else: no lock, no recovery, no version recorded.
        let (bytes, before, _) = read_file(ctx.fs.as_ref(), &path)?;
        let edited =
            manifest::edit_flags(&bytes, a.container, &edits).map_err(|e| bad_manifest(&key, e))?;
        let after = FileState {
            hash: hash_bytes(&edited.bytes),
            size: edited.bytes.len() as u64,
            ..before
        };
        let diff = unified_diff(&bytes, &edited.bytes, &key, &format!("{key} (after set)"));
        let report = TxnReport {
            txn: None,
            status: TxnStatus::Noop,
            files: Vec::new(),
            reason: String::new(),
        };
        let status = if edited.changed { "dry_run" } else { "noop" };
        let entry = txn_json(
            &report,
            status,
            &key,
            (&before, &after),
            &edited.changed_flags,
            json!({"skipped": true, "reason": "--dry-run"}),
            &reason,
        );
        let text = if edited.changed {
            diff
        } else {
            format!("{key}: already as requested; nothing would change\n")
        };
        return Ok(outcome(vec![entry], text, 0));
    }

    let gate = gated::build(a.gate, a.container)?;
    let mut locked = ctx.open_mutating()?;
    stop_on_conflict(&locked.report)?;
    let engine = &mut locked.engine;
    let observed = engine.observe(&path)?;
    let edited = manifest::edit_flags(&observed.bytes, a.container, &edits)
        .map_err(|e| bad_manifest(&key, e))?;
    let before = observed.state;
    let gated::Gated {
        report,
        gate,
        summary: gate_summary,
    } = gated::transact(
        engine,
        TxnKind::Set,
        &reason,
        vec![Change {
            observed,
            after_bytes: edited.bytes,
            after_meta: None,
        }],
        gate,
    )?;
    let after = report.files.first().map_or(before, |f| f.after);
    let entry = txn_json(
        &report,
        report.status.as_str(),
        &key,
        (&before, &after),
        &edited.changed_flags,
        gate,
        &reason,
    );
    let text = summary(&report, &key) + &gate_summary;
    Ok(outcome(vec![entry], text, exit_code(report.status)))
}
