//! The vocabulary of the rule table: what a check audits, how its tests read (kube-bench's
//! `tests:` block, item for item), and how a remediator fixes it.
//!
//! The table itself is in `table.rs`; `benchmark.rs` picks a benchmark's variant of it.

use std::fmt;

/// The component a check is about. File checks name the file's owner component where there
/// is one (`Component::File` otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Component {
    ApiServer,
    ControllerManager,
    Scheduler,
    Etcd,
    /// Files that belong to no single component (admin.conf, pki/, CNI files).
    File,
}

impl Component {
    /// The control-plane components that run as static pods, in audit order.
    pub const PODS: [Component; 4] = [
        Component::ApiServer,
        Component::ControllerManager,
        Component::Scheduler,
        Component::Etcd,
    ];

    /// kube-bench's component word, as the JSON `component` field shows it.
    pub fn name(self) -> &'static str {
        match self {
            Component::ApiServer => "apiserver",
            Component::ControllerManager => "controllermanager",
            Component::Scheduler => "scheduler",
            Component::Etcd => "etcd",
            Component::File => "file",
        }
    }

    /// The binary (argv[0] basename) and the static pod manifest's base name.
    pub fn binary(self) -> &'static str {
        match self {
            Component::ApiServer => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
            Component::Scheduler => "kube-scheduler",
            Component::Etcd => "etcd",
            Component::File => "",
        }
    }

    /// etcd parses its command line with Go's `flag` package, the others with spf13/pflag.
    pub fn go_flag_package(self) -> bool {
        self == Component::Etcd
    }
}

/// CIS label and kube-bench type, as the TSV's `type` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckType {
    /// "(Automated)", `scored: true`: a failing test is FAIL.
    Automated,
    /// "(Manual)", `scored: false`, tests still run: PASS or WARN.
    Manual,
    /// kube-bench `type: manual`: always WARN, nothing is run.
    ManualNoTests,
}

impl CheckType {
    pub fn scored(self) -> bool {
        self == CheckType::Automated
    }

    /// The JSON `type` field.
    pub fn name(self) -> &'static str {
        match self {
            CheckType::Automated => "automated",
            CheckType::Manual | CheckType::ManualNoTests => "manual",
        }
    }
}

/// kube-bench's `compare.op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    NotEq,
    Gt,
    Gte,
    Lt,
    Lte,
    Has,
    NotHave,
    Regex,
    ValidElements,
    Bitmask,
}

impl Op {
    /// kube-bench's wording of the expected result.
    pub fn describe(self) -> &'static str {
        match self {
            Op::Eq => "is equal to",
            Op::NotEq => "is not equal to",
            Op::Gt => "is greater than",
            Op::Gte => "is greater or equal to",
            Op::Lt => "is lower than",
            Op::Lte => "is lower or equal to",
            Op::Has => "has",
            Op::NotHave => "does not have",
            Op::Regex => "matches the regular expression",
            Op::ValidElements => "contains only elements of",
            Op::Bitmask => "has permissions no more permissive than",
        }
    }
}

/// One `test_items` entry. `set: true` is kube-bench's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// `--name` for a flag, or a word of a file audit's output (`permissions`, `root:root`).
    pub flag: &'static str,
    pub set: bool,
    pub compare: Option<(Op, &'static str)>,
    /// The environment variable consulted when the flag is not found (etcd).
    pub env: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    And,
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tests {
    pub bin_op: BinOp,
    pub items: &'static [Item],
}

/// The files a file check looks at (kubeadm layout; see `files.rs` for the paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileTarget {
    /// The component's static pod manifest.
    Manifest(Component),
    /// kubelet `--cni-conf-dir` (of a running kubelet) and /var/lib/cni/networks.
    Cni,
    /// etcd's `--data-dir` (host path through the pod's hostPath volumes).
    EtcdDataDir,
    /// admin.conf and super-admin.conf, each if present.
    AdminConfs,
    SchedulerConf,
    ControllerManagerConf,
    /// pki/ and everything under it.
    PkiAll,
    /// pki/**/*.crt
    PkiCrt,
    /// pki/**/*.key
    PkiKey,
}

/// What a check reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audit {
    /// The component's command line (and, for etcd, its environment).
    Flags(Component),
    /// `stat` of files; `use_multiple_values` lines, one per file.
    File(FileTarget),
    /// The providers of the file named by the API server's `--encryption-provider-config`.
    EncryptionProviders,
}

/// An extra file a remediation needs (plus its flag and a hostPath mount in the static pod).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeededFile {
    /// An audit `Policy` for `--audit-policy-file`.
    AuditPolicy,
    /// An `AdmissionConfiguration` with the EventRateLimit plugin config, for
    /// `--admission-control-config-file`.
    EventRateLimit,
    /// An `EncryptionConfiguration` whose first provider is aescbc, kms or secretbox, for
    /// `--encryption-provider-config`.
    Encryption,
}

impl NeededFile {
    pub fn name(self) -> &'static str {
        match self {
            NeededFile::AuditPolicy => "audit_policy",
            NeededFile::EventRateLimit => "event_rate_limit",
            NeededFile::Encryption => "encryption",
        }
    }
}

/// One machine-readable step of a fix. A check's steps, applied together to the check's
/// manifest (flag steps) or targets (file steps), make it PASS.
///
/// Flag steps use names without dashes. List semantics follow the component's flag types:
/// `AddToList` on an absent flag creates it with the one item; `RemoveFromList` on an absent
/// flag does nothing; a list that becomes empty is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remediation {
    SetFlag {
        name: &'static str,
        value: &'static str,
    },
    AddToList {
        flag: &'static str,
        item: &'static str,
    },
    RemoveFromList {
        flag: &'static str,
        item: &'static str,
    },
    RemoveFlag {
        name: &'static str,
    },
    /// chmod of every target file (modes are octal, e.g. 0o600).
    Chmod {
        mode: u32,
    },
    /// chown `user:group` of every target file.
    Chown {
        owner: &'static str,
    },
    /// The file (generated by the remediator), its flag, and a read-only hostPath mount of it.
    NeedsFile {
        kind: NeededFile,
    },
    /// A hostPath volume of `path` (a directory, DirectoryOrCreate), mounted at the same path
    /// in the container.
    Mount {
        path: &'static str,
        read_only: bool,
    },
    /// Needs a person: what to do, in words.
    Manual(&'static str),
}

impl fmt::Display for Remediation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Remediation::SetFlag { name, value } => write!(f, "set --{name}={value}"),
            Remediation::AddToList { flag, item } => write!(f, "add {item} to --{flag}"),
            Remediation::RemoveFromList { flag, item } => write!(f, "remove {item} from --{flag}"),
            Remediation::RemoveFlag { name } => write!(f, "remove --{name}"),
            Remediation::Chmod { mode } => write!(f, "chmod {mode:o}"),
            Remediation::Chown { owner } => write!(f, "chown {owner}"),
            Remediation::NeedsFile { kind } => write!(f, "needs a {} file", kind.name()),
            Remediation::Mount { path, read_only } => {
                write!(
                    f,
                    "mount {path} from the host{}",
                    if *read_only { " read-only" } else { "" }
                )
            }
            Remediation::Manual(s) => write!(f, "{s}"),
        }
    }
}

impl Remediation {
    /// A JSON object for scripts and the remediator's dry runs.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match *self {
            Remediation::SetFlag { name, value } => {
                json!({"action": "set_flag", "name": name, "value": value})
            }
            Remediation::AddToList { flag, item } => {
                json!({"action": "add_to_list", "flag": flag, "item": item})
            }
            Remediation::RemoveFromList { flag, item } => {
                json!({"action": "remove_from_list", "flag": flag, "item": item})
            }
            Remediation::RemoveFlag { name } => json!({"action": "remove_flag", "name": name}),
            Remediation::Chmod { mode } => json!({"action": "chmod", "mode": format!("{mode:o}")}),
            Remediation::Chown { owner } => json!({"action": "chown", "owner": owner}),
            Remediation::NeedsFile { kind } => json!({"action": "needs_file", "kind": kind.name()}),
            Remediation::Mount { path, read_only } => {
                json!({"action": "mount", "path": path, "read_only": read_only})
            }
            Remediation::Manual(s) => json!({"action": "manual", "text": s}),
        }
    }
}

/// One check of the benchmark.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    pub id: &'static str,
    /// kube-bench's text, with "(Automated)"/"(Manual)".
    pub text: &'static str,
    pub kind: CheckType,
    pub component: Component,
    pub audit: Audit,
    /// `None` for `type: manual` checks.
    pub tests: Option<Tests>,
    /// The remediation text (paths resolved to kubeadm defaults).
    pub remediation: &'static str,
    /// Machine-readable fix. Empty only where nothing can be said.
    pub fix: &'static [Remediation],
    /// Why applying `fix` may break a cluster (the remediator must not apply it silently).
    pub dangerous: Option<&'static str>,
}

impl Check {
    pub fn scored(&self) -> bool {
        self.kind.scored()
    }

    /// The group ("1.2") and section ("1") the id belongs to.
    pub fn group(&self) -> &'static str {
        match self.id.rfind('.') {
            Some(i) if self.id.matches('.').count() >= 2 => &self.id[..i],
            _ => self.section(),
        }
    }

    pub fn section(&self) -> &'static str {
        self.id.split('.').next().unwrap_or(self.id)
    }
}

/// Titles of sections and groups, as kube-bench prints them.
pub fn title(id: &str) -> &'static str {
    match id {
        "1" => "Control Plane Security Configuration",
        "1.1" => "Control Plane Node Configuration Files",
        "1.2" => "API Server",
        "1.3" => "Controller Manager",
        "1.4" => "Scheduler",
        "2" => "Etcd Node Configuration",
        _ => "",
    }
}

// Constructors that keep the table short.

pub(crate) const fn present(flag: &'static str) -> Item {
    Item {
        flag,
        set: true,
        compare: None,
        env: None,
    }
}

pub(crate) const fn absent(flag: &'static str) -> Item {
    Item {
        flag,
        set: false,
        compare: None,
        env: None,
    }
}

pub(crate) const fn cmp(flag: &'static str, op: Op, value: &'static str) -> Item {
    Item {
        flag,
        set: true,
        compare: Some((op, value)),
        env: None,
    }
}

pub(crate) const fn with_env(item: Item, env: &'static str) -> Item {
    Item {
        env: Some(env),
        ..item
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_and_sections() {
        let mut c = crate::cis::table::BASE[0];
        assert_eq!((c.group(), c.section()), ("1.1", "1"));
        c.id = "2.3";
        assert_eq!((c.group(), c.section()), ("2", "2"));
    }
}
