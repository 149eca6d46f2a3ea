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
    let rep = cis::run(&opts).map_err(Error::usage)?;
    let code = i32::from(rep.has_fail());
    let json = report::json(&rep);
    let text = match format {
        AuditFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        ),
        AuditFormat::Junit => report::junit(&rep),
        AuditFormat::Text => {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            report::text(&rep, colour)
        }
    };
    Ok(Outcome::new(json, text).with_code(code))
}
