//! `completion bash|zsh|fish` (kubectl's habit) and the hidden `man DIR`: both generated from
//! the same clap definitions as the parser, so they can never disagree with it. The packages
//! ship their output (dist/build-packages.sh).

use crate::cli::args::{Cli, CompletionShell};
use crate::error::{IoContext, Result};
use clap::CommandFactory;
use std::io::Write;
use std::path::Path;

/// Write the completion script for `shell` to stdout.
pub fn completion(shell: CompletionShell) -> Result<i32> {
    let mut cmd = without_hidden_subcommands(Cli::command());
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "kubeharden", &mut buf);
    // A closed pipe (`| head`) is not an error, as for every other command.
    let _ = std::io::stdout().lock().write_all(&buf);
    Ok(0)
}

/// The same command line minus hidden subcommands (`man`): clap_complete would offer them.
fn without_hidden_subcommands(full: clap::Command) -> clap::Command {
    let visible: Vec<clap::Command> = full
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let mut cmd = clap::Command::new("kubeharden")
        .args(full.get_arguments().cloned())
        .subcommands(visible);
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    cmd
}

/// Write kubeharden(1) and one page per (visible) subcommand, kubeharden-NAME(1), into `dir`.
pub fn man(dir: &Path) -> Result<i32> {
    std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .ctx(|| format!("writing man pages into {}", dir.display()))?;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ctx(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".1"))
        .collect();
    names.sort();
    let mut out = std::io::stdout().lock();
    for n in names {
        let _ = writeln!(out, "{}", dir.join(n).display());
    }
    Ok(0)
}
