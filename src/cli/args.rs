//! Raw command-line arguments (clap derive). `cli.md` is the contract for every name here.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "kubeharden",
    // The crate version and, when built from a git checkout, the commit (build.rs).
    version = env!("KUBEHARDEN_VERSION"),
    about = "Transactional, health-gated hardening of Kubernetes static pod manifests",
    long_about = "kubeharden edits the kubelet's static pod manifests as journaled transactions: \
every version a manifest ever had is kept (history, show, diff, restore), a crash or power loss \
mid-change is recovered at the next start, and nothing is overwritten before its exact bytes are \
stored.\n\nExit codes: 0 done, 1 audit found a failing check, 2 usage error or bad input (nothing \
changed), 3 change rolled back or recovery conflict, 4 CRITICAL rollback failed, 5 state lock busy, \
6 integrity error in the store, 7 I/O error from the operating system (the message names the file \
and the errno and says what is on disk now; see docs/errors.md), 129/130/143 interrupted by \
SIGHUP/SIGINT/SIGTERM (the change was rolled back, or after a second signal left to 'kubeharden \
recover').",
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,

    /// Print the named crash points (builds with the `failpoints` feature only) and exit.
    #[arg(long, global = false, hide = !cfg!(feature = "failpoints"))]
    pub list_crash_points: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Journal, object store, catalog and lock.
    #[arg(
        long,
        env = "KUBEHARDEN_STATE_DIR",
        default_value = "/var/lib/kubeharden",
        global = true,
        help_heading = "Global options"
    )]
    pub state_dir: PathBuf,
    /// The kubelet's static pod folder.
    #[arg(
        long,
        env = "KUBEHARDEN_MANIFESTS_DIR",
        default_value = "/etc/kubernetes/manifests",
        global = true,
        help_heading = "Global options"
    )]
    pub manifests_dir: PathBuf,
    /// Where pki/, admin.conf, scheduler.conf and controller-manager.conf live.
    #[arg(
        long,
        env = "KUBEHARDEN_KUBERNETES_DIR",
        default_value = "/etc/kubernetes",
        global = true,
        help_heading = "Global options"
    )]
    pub kubernetes_dir: PathBuf,
    /// text for people, json for scripts (exactly one JSON document on stdout).
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text, global = true, help_heading = "Global options")]
    pub output: OutputFormat,
    /// Seconds to wait for the state lock; 0 fails at once (exit 5).
    #[arg(
        long,
        default_value_t = 30,
        global = true,
        help_heading = "Global options",
        value_name = "SECS"
    )]
    pub lock_timeout: u64,
    /// Policy for the recovery every mutating command runs first.
    #[arg(long, env = "KUBEHARDEN_RECOVERY_POLICY", value_enum, default_value_t = PolicyArg::Revert, global = true, help_heading = "Global options", hide_short_help = true)]
    pub recovery_policy: PolicyArg,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

/// `status --format`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFormat {
    Text,
    Json,
    Prometheus,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyArg {
    /// Put back the before content of an incomplete transaction.
    Revert,
    /// Finish an incomplete transaction (re-apply, gate, commit; revert if unhealthy).
    Replay,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartCheck {
    Auto,
    Proc,
    None,
}

/// Health-gate options of set, restore and remediate.
#[derive(Args, Debug, Clone)]
pub struct GateArgs {
    /// Commit right after the durable write: no restart wait, probe or audit.
    #[arg(long)]
    pub no_health_gate: bool,
    /// Seconds for the change to be restarted and answer its probes; past it the change is
    /// rolled back. A streak of successes begun in time may finish its 2-s stability window
    /// after it. Worst case of a failed change: SECS + 3 + --rollback-timeout + 3 seconds.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub health_timeout: u64,
    /// Seconds to confirm a rollback (the previous content restarted and healthy again). Not
    /// waited for when the component was not healthy before the change.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub rollback_timeout: u64,
    /// Probe this URL instead of the manifest's probes (repeatable).
    #[arg(long, value_name = "URL")]
    pub probe: Vec<String>,
    /// How to prove the kubelet restarted the component with the new flags.
    #[arg(long, value_enum, default_value_t = RestartCheck::Auto)]
    pub restart_check: RestartCheck,
    /// Verify the probed server's certificate with this CA.
    #[arg(long, value_name = "FILE")]
    pub probe_ca: Option<PathBuf>,
    /// Client certificate to present to the probed server.
    #[arg(long, value_name = "FILE", requires = "probe_key")]
    pub probe_cert: Option<PathBuf>,
    /// Key of --probe-cert.
    #[arg(long, value_name = "FILE", requires = "probe_cert")]
    pub probe_key: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Set or remove command-line flags of a container, as one journaled transaction.
    Set {
        /// File name in the manifests dir (kube-apiserver.yaml) or a path.
        manifest: String,
        /// NAME=VALUE, flag name without its dashes (repeatable).
        #[arg(long = "flag", value_name = "NAME=VALUE")]
        flags: Vec<String>,
        /// Flag to remove (repeatable).
        #[arg(long = "unset", value_name = "NAME")]
        unset: Vec<String>,
        /// Container to edit (default: the one named like the pod, else the only one).
        #[arg(long)]
        container: Option<String>,
        /// Why; kept in the journal.
        #[arg(long, default_value = "")]
        reason: String,
        /// Print the diff and change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        gate: GateArgs,
    },
    /// Evaluate CIS benchmark checks against manifests, files and running processes; changes nothing.
    Audit {
        /// cis-1.12 or cis-1.11 (default: from the kube-apiserver image version).
        #[arg(long, value_name = "ID")]
        benchmark: Option<String>,
        /// Check id (1.2.15) or group (1.2); repeatable or comma-separated.
        #[arg(long = "check", value_name = "ID", value_delimiter = ',')]
        checks: Vec<String>,
        /// Output form (default: -o's; junit for CI; kube-bench-json, prometheus for fleets).
        #[arg(long, value_enum)]
        format: Option<super::commands::audit::AuditFormat>,
        /// Write Prometheus metrics to DIR/kubeharden.prom atomically (node_exporter textfile).
        #[arg(long, value_name = "DIR")]
        textfile: Option<PathBuf>,
        /// Hardening file whose waivers and selection apply (default: /etc/kubeharden/hardening.yaml if it exists).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Apply the fixes of failing CIS checks: one health-gated transaction per component.
    Remediate {
        /// Check id to fix (repeatable or comma-separated); risky checks only this way.
        #[arg(
            long = "check",
            value_name = "ID",
            value_delimiter = ',',
            conflicts_with = "all"
        )]
        checks: Vec<String>,
        /// Every failing automated check, except the risky ones (1.2.1, 1.2.5, 1.2.11).
        #[arg(long)]
        all: bool,
        /// cis-1.12 or cis-1.11 (default: from the kube-apiserver image version).
        #[arg(long, value_name = "ID")]
        benchmark: Option<String>,
        /// Print the plan with diffs; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Hardening file whose waivers and selection apply (default: /etc/kubeharden/hardening.yaml if it exists).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<PathBuf>,
        #[command(flatten)]
        gate: GateArgs,
    },
    /// Record the current content of manifests as versions (before/after kubeadm upgrade).
    Snapshot {
        /// Files to record (default: every *.yaml, *.yml, *.json in the manifests dir).
        manifests: Vec<String>,
        /// Why (e.g. "changed outside kubeharden"): echoed in this run's output (JSON "reason")
        /// and the unit's journal; the store does not keep it yet.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Every recorded version, oldest first.
    History {
        /// File name in the manifests dir or a path (default: every recorded file).
        manifest: Option<String>,
    },
    /// Print a version's exact bytes (default: the latest recorded).
    Show {
        /// File name in the manifests dir (kube-apiserver.yaml) or a path.
        manifest: String,
        /// Version number, from 1 (see `history`).
        #[arg(long, conflicts_with = "at", allow_hyphen_values = true)]
        version: Option<String>,
        /// The content the file had on disk at TIME (RFC 3339, or YYYY-MM-DD HH:MM[:SS] local).
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// Unified diff between two versions (TO defaults to the file on disk now).
    Diff {
        /// File name in the manifests dir (kube-apiserver.yaml) or a path.
        manifest: String,
        /// Version number.
        from: String,
        /// Version number, or "current" (default).
        to: Option<String>,
    },
    /// Point-in-time restore of a version, as a journaled transaction.
    Restore {
        /// File name in the manifests dir (kube-apiserver.yaml) or a path.
        manifest: String,
        /// Version number to put back (see `history`).
        #[arg(
            long,
            conflicts_with = "at",
            required_unless_present = "at",
            allow_hyphen_values = true
        )]
        version: Option<String>,
        /// The content the file had on disk at TIME (RFC 3339, or YYYY-MM-DD HH:MM[:SS] local).
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Why; kept in the journal.
        #[arg(long, default_value = "")]
        reason: String,
        /// Print the diff and change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        gate: GateArgs,
    },
    /// Resolve incomplete transactions now.
    Recover {
        /// revert puts the before content back; replay finishes the change if it proves healthy.
        #[arg(long, value_enum, default_value_t = PolicyArg::Revert)]
        policy: PolicyArg,
        /// Gate options for transactions that `replay` finishes.
        #[command(flatten)]
        gate: GateArgs,
    },
    /// Transactions: id, time, kind, reason, files, status and what the gate decided.
    Log {
        /// Only the transactions that touched this file.
        manifest: Option<String>,
        /// One transaction in full: each file's mode/owner change and diff, the gate's result.
        #[arg(long, value_name = "N")]
        txn: Option<String>,
    },
    /// Drop old versions' contents from the store (journaled): keep per file the last N
    /// versions and/or those of the last D days; never the latest, a baseline, or what an
    /// incomplete transaction needs.
    Prune {
        /// Versions to keep per file (the latest is always kept).
        #[arg(long, value_name = "N")]
        keep: Option<u64>,
        /// Keep every version that was on disk during the last D days.
        #[arg(long, value_name = "D")]
        keep_days: Option<u64>,
        /// Print what would be dropped; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Incomplete transactions, drift, last transaction, store size.
    Status {
        /// Exit 1 when a transaction is incomplete or a file drifted (changed, missing or
        /// untracked), for monitoring; 0 when all is as recorded.
        #[arg(long)]
        exit_code: bool,
        /// prometheus: node_exporter textfile lines (with the audit's check metrics).
        #[arg(long, value_enum)]
        format: Option<StatusFormat>,
        /// Write Prometheus metrics to DIR/kubeharden.prom atomically (node_exporter textfile).
        #[arg(long, value_name = "DIR")]
        textfile: Option<PathBuf>,
    },
    /// Check journal checksums, object hashes, and the catalog against the journal.
    Verify {
        /// Rebuild the catalog from the journal and objects.
        #[arg(long)]
        repair: bool,
    },
    /// Converge the node to the hardening file: enforced checks, waivers, extra flags.
    Apply {
        /// The hardening file (default /etc/kubeharden/hardening.yaml; built-in defaults if absent).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<PathBuf>,
        /// Print the plan with diffs; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        gate: GateArgs,
    },
    /// Run kubeadm under the state lock: snapshot, kubeadm, record what it wrote, re-apply, audit.
    Kubeadm {
        /// The kubeadm binary (default: kubeadm from PATH).
        #[arg(long, value_name = "PATH")]
        kubeadm: Option<PathBuf>,
        /// The hardening file to re-apply (default /etc/kubeharden/hardening.yaml; defaults if absent).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<PathBuf>,
        #[command(flatten)]
        gate: GateArgs,
        /// kubeadm's arguments, after `--` (e.g. -- upgrade apply v1.34.1 --yes).
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// The hardening file: write one with the defaults or from this node's history.
    Hardening {
        #[command(subcommand)]
        command: HardeningCommand,
    },
    /// The hardening as kubeadm configuration: ClusterConfiguration, patches, Cluster API.
    Export {
        /// The hardening file (default /etc/kubeharden/hardening.yaml; defaults if absent).
        #[arg(short = 'f', long = "file", value_name = "FILE", global = true)]
        file: Option<PathBuf>,
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// Shell completion script on stdout (source it, or save it in the shell's completion dir).
    Completion {
        /// The shell to complete for: bash, zsh or fish.
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Write kubeharden(1) and a page per subcommand into DIR (packaging).
    #[command(hide = true)]
    Man {
        /// Folder to write the pages into (created if absent).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum HardeningCommand {
    /// Write a commented hardening file (default /etc/kubeharden/hardening.yaml).
    Init {
        /// Where to write it; `-` prints it.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<PathBuf>,
        /// Capture what kubeharden's own committed transactions applied on this node.
        #[arg(long)]
        from_history: bool,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// A kubeadm ClusterConfiguration whose extraArgs/extraVolumes render the hardening.
    Kubeadm {
        /// v1beta3 (map extraArgs) or v1beta4 (list; kubeadm >= 1.31). Default: --from's, else v1beta4.
        #[arg(long, value_name = "API")]
        api: Option<String>,
        /// Merge into this kubeadm config (e.g. the kubeadm-config ConfigMap's ClusterConfiguration).
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
    },
    /// kubeadm patch files (--patches DIR) for what extraArgs cannot express.
    Patches {
        /// Directory to write the patch files to (created if absent).
        dir: PathBuf,
    },
    /// A Cluster API KubeadmControlPlane spec.kubeadmConfigSpec fragment.
    ClusterApi {
        /// Secret (key encryption-config.yaml) holding the encryption configuration.
        #[arg(
            long,
            default_value = "kubeharden-encryption-config",
            value_name = "NAME"
        )]
        encryption_secret: String,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}
