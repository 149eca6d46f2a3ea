//! audit: evaluate the CIS checks of a benchmark against the manifests, the files and the
//! running processes. Reads only: no lock, no state, nothing written (except the
//! `--textfile` metrics file, which is no part of the node's state).

use crate::cis::{self, kube_bench, prometheus, report, AuditOptions, BenchmarkId};
use crate::cli::args::OutputFormat;
use crate::cli::context::{absolute, checked_manifests_dir, Ctx};
use crate::cli::output::Outcome;
use crate::error::{Error, IoContext, Result};
use serde_json::json;
use std::io::IsTerminal;
use std::path::Path;

/// `--format`: `-o json` means `--format json`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditFormat {
    Text,
    Json,
    Junit,
    /// kube-bench's own `--json` document (docs/fleet.md has the field mapping).
    KubeBenchJson,
    /// node_exporter textfile lines (Prometheus text exposition format).
    Prometheus,
}

impl AuditFormat {
    fn name(self) -> &'static str {
        match self {
            AuditFormat::Text => "text",
            AuditFormat::Json => "json",
            AuditFormat::Junit => "junit",
            AuditFormat::KubeBenchJson => "kube-bench-json",
            AuditFormat::Prometheus => "prometheus",
        }
    }
}

/// The form asked for by `--format`, `-o` and `--textfile` together.
fn choose(ctx: &Ctx, format: Option<AuditFormat>, textfile: bool) -> Result<AuditFormat> {
    let global_json = ctx.global.output == OutputFormat::Json;
    let f = match (format, textfile) {
        (None | Some(AuditFormat::Prometheus), true) => return Ok(AuditFormat::Prometheus),
        (Some(f), true) => {
            return Err(Error::usage(format!(
                "--textfile writes Prometheus metrics; it does not go with --format {}",
                f.name()
            )))
        }
        (f, false) => f,
    };
    match (f, global_json) {
        (None, true) => Ok(AuditFormat::Json),
        (None, false) => Ok(AuditFormat::Text),
        // Both are one JSON document on stdout.
        (Some(f @ (AuditFormat::Json | AuditFormat::KubeBenchJson)), true) => Ok(f),
        (Some(f), false) => Ok(f),
        (Some(f), true) => Err(Error::usage(format!(
            "-o json and --format {} disagree; give one of them",
            f.name()
        ))),
    }
}

/// `audit`, under a hardening file when there is one: its benchmark (unless --benchmark),
/// waivers and selection.
pub fn audit(
    ctx: &Ctx,
    benchmark: Option<&str>,
    checks: &[String],
    format: Option<AuditFormat>,
    textfile: Option<&Path>,
    hardening: Option<&crate::hardening::Hardening>,
) -> Result<Outcome> {
    let format = choose(ctx, format, textfile.is_some())?;
    let manifests_dir = absolute(&ctx.global.manifests_dir)?;
    // A missing or unreadable folder is an error, not a FAIL for every check that reads it.
    checked_manifests_dir(&manifests_dir)?;
    let mut opts = AuditOptions::new(manifests_dir.clone(), absolute(&ctx.global.kubernetes_dir)?);
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
    let outcome = match format {
        AuditFormat::Json => {
            let text = format!(
                "{}\n",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            );
            Outcome::new(json, text)
        }
        AuditFormat::KubeBenchJson => {
            let doc = kube_bench::document(&rep, &kube_bench::detected_version(&manifests_dir));
            // Text: serialized from the structs, so in kube-bench's field order.
            let text = format!("{}\n", serde_json::to_string(&doc).unwrap_or_default());
            Outcome::new(serde_json::to_value(&doc).unwrap_or_default(), text)
        }
        AuditFormat::Prometheus => {
            let mut state = super::maintenance::state_metrics(ctx)?;
            state.waivers_expired = applied.as_ref().map_or(0, |a| a.expired().count());
            let text = prometheus::render(Ok(&rep), &state);
            match textfile {
                Some(dir) => write_textfile(dir, &text)?,
                None => Outcome::new(serde_json::Value::Null, text),
            }
        }
        AuditFormat::Junit => Outcome::new(json, report::junit(&rep)),
        AuditFormat::Text => {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let mut t = report::text(&rep, colour);
            if let Some(a) = &applied {
                t.push_str(&a.text());
            }
            Outcome::new(json, t)
        }
    };
    Ok(outcome.with_code(code))
}

/// `--textfile DIR` of audit and status: writes DIR/kubeharden.prom; says where.
pub fn write_textfile(dir: &Path, text: &str) -> Result<Outcome> {
    let path = prometheus::write_textfile(dir, text).ctx(|| {
        format!(
            "--textfile: writing {}",
            dir.join(prometheus::TEXTFILE_NAME).display()
        )
    })?;
    let p = path.display().to_string();
    Ok(Outcome::new(
        json!({ "textfile": p }),
        format!("wrote {p}\n"),
    ))
}
