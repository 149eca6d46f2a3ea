//! audit: evaluate the CIS checks of a benchmark against the manifests, the files and the
//! running processes. Reads only: no lock, no state, nothing written.

use crate::cis::{self, report, AuditOptions, BenchmarkId};
use crate::cli::args::OutputFormat;
use crate::cli::context::{absolute, checked_manifests_dir, Ctx};
use crate::cli::output::Outcome;
use crate::error::{Error, Result};
use std::io::IsTerminal;

/// `--format`: `-o json` means `--format json`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditFormat {
    Text,
    Json,
    Junit,
}

pub fn audit(
    ctx: &Ctx,
    benchmark: Option<&str>,
    checks: &[String],
    format: Option<AuditFormat>,
) -> Result<Outcome> {
    audit_with(ctx, benchmark, checks, format, None)
}

/// [`audit`] under a hardening file: its benchmark (unless --benchmark), waivers and selection.
pub fn audit_with(
    ctx: &Ctx,
    benchmark: Option<&str>,
    checks: &[String],
    format: Option<AuditFormat>,
    hardening: Option<&crate::hardening::Hardening>,
) -> Result<Outcome> {
    let global_json = ctx.global.output == OutputFormat::Json;
    let format = match (format, global_json) {
        (Some(AuditFormat::Json) | None, true) => AuditFormat::Json,
        (Some(f), false) => f,
        (None, false) => AuditFormat::Text,
        (Some(f), true) => {
            return Err(Error::usage(format!(
                "-o json and --format {} disagree; give one of them",
                if f == AuditFormat::Text {
                    "text"
                } else {
                    "junit"
                }
            )))
        }
    };
    let manifests_dir = absolute(&ctx.global.manifests_dir)?;
    // A missing or unreadable folder is an error, not a FAIL for every check that reads it.
    checked_manifests_dir(&manifests_dir)?;
    let mut opts = AuditOptions::new(manifests_dir, absolute(&ctx.global.kubernetes_dir)?);
    opts.benchmark = benchmark
        .map(BenchmarkId::parse)
        .transpose()
        .map_err(Error::usage)?;
    opts.checks = checks
        .iter()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect();
    if opts.benchmark.is_none() {
        opts.benchmark = hardening.and_then(|h| h.benchmark);
    }
    let mut rep = cis::run(&opts).map_err(Error::usage)?;
    let applied = crate::hardening::honour(&mut rep, hardening);
    let code = i32::from(rep.has_fail());
    let mut json = report::json(&rep);
    if let Some(a) = &applied {
        json["hardening"] = a.json();
    }
    let text = match format {
        AuditFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        ),
        AuditFormat::Junit => report::junit(&rep),
        AuditFormat::Text => {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let mut t = report::text(&rep, colour);
            if let Some(a) = &applied {
                t.push_str(&a.text());
            }
            t
        }
    };
    Ok(Outcome::new(json, text).with_code(code))
}
