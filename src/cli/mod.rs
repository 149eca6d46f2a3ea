//! The command line: parse (args.rs), open the state (context.rs), run one command
//! (commands/), render (output.rs). `main.rs` only maps the result to an exit code.

pub mod args;
pub mod commands;
pub mod context;
pub mod output;
pub mod time;

use crate::error::{Error, Result};
use args::{Cli, Command, OutputFormat};
use commands::{maintenance, restore, set, versions};
use context::{policy, Ctx};
use output::Outcome;
use std::io::Write;

/// Run the parsed command line; returns the exit code.
pub fn run(cli: Cli) -> Result<i32> {
    if cli.list_crash_points {
        if !cfg!(feature = "failpoints") {
            return Err(Error::usage(
                "this kubeharden was built without the 'failpoints' feature; it has no crash points",
            ));
        }
        let mut out = std::io::stdout().lock();
        for p in crate::failpoint::CRASH_POINTS {
            let _ = writeln!(out, "{p}");
        }
        return Ok(0);
    }
    let Some(command) = cli.command else {
        return Err(Error::usage("no command given; see 'kubeharden --help'"));
    };
    let format = cli.global.output;
    if changes_manifests(&command) {
        // Ctrl-C, SIGTERM, SIGHUP roll a change back instead of killing the process mid-gate.
        crate::signals::install(format == OutputFormat::Json)
            .map_err(|e| Error::usage(format!("cannot install signal handlers: {e}")))?;
    }
    let ctx = Ctx::new(cli.global)?;
    if context::is_mutating(&command) {
        ctx.require_root_for_node_paths()?;
    }
    let outcome = match command {
        Command::Audit {
            benchmark,
            checks,
            format: form,
            textfile,
            file,
        } => {
            let h = crate::hardening::for_reading(file.as_deref())?;
            commands::audit::audit(
                &ctx,
                benchmark.as_deref(),
                &checks,
                form,
                textfile.as_deref(),
                h.as_ref(),
            )?
        }
        Command::Remediate {
            checks,
            all,
            benchmark,
            dry_run,
            file,
            gate,
        } => commands::remediate::remediate(
            &ctx,
            commands::remediate::RemediateArgs {
                checks: &checks,
                all,
                benchmark: benchmark.as_deref(),
                dry_run,
                gate: &gate,
                hardening: crate::hardening::for_reading(file.as_deref())?,
            },
        )?,
        Command::Snapshot { manifests, reason } => {
            maintenance::snapshot(&ctx, &manifests, &reason)?
        }
        Command::History { manifest } => versions::history(&ctx, manifest.as_deref())?,
        Command::Show {
            manifest,
            version,
            at,
        } => versions::show(&ctx, &manifest, version.as_deref(), at.as_deref())?,
        Command::Diff { manifest, from, to } => {
            versions::diff(&ctx, &manifest, &from, to.as_deref())?
        }
        Command::Restore {
            manifest,
            version,
            at,
            reason,
            dry_run,
            gate,
        } => restore::restore(
            &ctx,
            restore::RestoreArgs {
                manifest: &manifest,
                version: version.as_deref(),
                at: at.as_deref(),
                reason: &reason,
                dry_run,
                gate: &gate,
            },
        )?,
        Command::Recover { policy: p, gate } => maintenance::recover(&ctx, policy(p), &gate)?,
        Command::Log { manifest, txn } => {
            commands::log::log(&ctx, manifest.as_deref(), txn.as_deref())?
        }
        Command::Prune {
            keep,
            keep_days,
            dry_run,
        } => commands::prune::prune(
            &ctx,
            commands::prune::PruneArgs {
                keep,
                keep_days,
                dry_run,
            },
        )?,
        Command::Status {
            exit_code,
            format,
            textfile,
        } => maintenance::status_as(&ctx, exit_code, format, textfile.as_deref())?,
        Command::Verify { repair } => maintenance::verify(&ctx, repair)?,
        Command::Set {
            manifest,
            flags,
            unset,
            container,
            reason,
            dry_run,
            gate,
        } => set::set(
            &ctx,
            set::SetArgs {
                manifest: &manifest,
                flags: &flags,
                unset: &unset,
                container: container.as_deref(),
                reason: &reason,
                dry_run,
                gate: &gate,
            },
        )?,
        Command::Apply {
            file,
            dry_run,
            gate,
        } => commands::apply::apply(
            &ctx,
            commands::apply::ApplyArgs {
                file: file.as_deref(),
                dry_run,
                gate: &gate,
            },
        )?,
        Command::Kubeadm {
            kubeadm,
            file,
            gate,
            args,
        } => commands::kubeadm::kubeadm(
            &ctx,
            commands::kubeadm::KubeadmArgs {
                kubeadm: kubeadm.as_deref(),
                file: file.as_deref(),
                args: &args,
                gate: &gate,
            },
        )?,
        Command::Hardening {
            command:
                args::HardeningCommand::Init {
                    file,
                    from_history,
                    force,
                },
        } => commands::hardening::init(&ctx, file.as_deref(), from_history, force)?,
        Command::Export { file, command } => match command {
            args::ExportCommand::Kubeadm { api, from } => {
                commands::export::kubeadm(&ctx, file.as_deref(), api.as_deref(), from.as_deref())?
            }
            args::ExportCommand::Patches { dir } => {
                commands::export::patches(&ctx, file.as_deref(), &dir)?
            }
            args::ExportCommand::ClusterApi { encryption_secret } => {
                commands::export::cluster_api(&ctx, file.as_deref(), &encryption_secret)?
            }
        },
        // Generated from the clap definitions; no state involved, written as they are.
        Command::Completion { shell } => return commands::completion::completion(shell),
        Command::Man { dir } => return commands::completion::man(&dir),
    };
    crate::signals::set_phase(crate::signals::Phase::Recording);
    let code = outcome.code;
    emit(outcome, format);
    Ok(crate::signals::final_code(code))
}

/// The commands that write manifests (and so run a gate): signals are handled for these.
fn changes_manifests(command: &Command) -> bool {
    match command {
        Command::Set { dry_run, .. }
        | Command::Restore { dry_run, .. }
        | Command::Remediate { dry_run, .. }
        | Command::Apply { dry_run, .. } => !dry_run,
        Command::Recover { .. } => true,
        _ => false,
    }
}

/// Write the outcome to stdout, in large writes; a closed pipe (`| head`) is not an error.
/// Warnings said on stderr during the run (a catalog that could not be written) are also in
/// the JSON document, as `warnings`.
fn emit(mut outcome: Outcome, format: OutputFormat) {
    let warnings = output::take_warnings();
    if let (false, Some(doc)) = (warnings.is_empty(), outcome.json.as_object_mut()) {
        match doc.get_mut("warnings").and_then(|w| w.as_array_mut()) {
            Some(list) => list.extend(warnings.into_iter().map(Into::into)),
            None => {
                doc.insert("warnings".into(), warnings.into());
            }
        }
    }
    let _ = outcome.write(format, &mut std::io::stdout().lock());
}
