//! A command line read two ways: as the component reads it (our verdicts), and as kube-bench
//! reads `ps -ef` output (to say where kube-bench would disagree).
//!
//! The component's reading (spf13/pflag for the Kubernetes binaries, Go's `flag` for etcd):
//! - `--name=value`; `--name value` for a non-boolean flag (pflag takes the next item whatever
//!   it is); a bare `--name` is `true` for a boolean flag, and a boolean never takes the next
//!   item; `--` ends the flags;
//! - the last occurrence wins, except that list flags (`StringSlice`) append and
//!   `--feature-gates` merges its `key=value` pairs;
//! - Kubernetes binaries normalise `_` to `-` in names; etcd also accepts `-name`, and stops
//!   at the first argument that is not a flag;
//! - boolean values are Go's `strconv.ParseBool` forms (`1`, `t`, `TRUE`, …), shown as
//!   `true`/`false`.
//!
//! kube-bench's reading (check/test.go `flagTestItem.findValue`): a plain substring test for
//! the flag, then the regex `(<flag>)(=|: *)*([^\s]*) *` on the whole text: first occurrence,
//! and an empty capture is `"true"` for a `--` flag.

use crate::cis::rules::Component;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    List,
    Map,
    Value,
    Unknown,
}

const K8S_BOOLS: &[&str] = &[
    "allocate-node-cidrs",
    "allow-privileged",
    "anonymous-auth",
    "audit-log-compress",
    "contention-profiling",
    "enable-aggregator-routing",
    "enable-bootstrap-token-auth",
    "enable-garbage-collector",
    "enable-priority-and-fairness",
    "encryption-provider-config-automatic-reload",
    "leader-elect",
    "profiling",
    "service-account-extend-token-expiration",
    "service-account-lookup",
    "use-service-account-credentials",
];

const ETCD_BOOLS: &[&str] = &[
    "auto-tls",
    "client-cert-auth",
    "enable-pprof",
    "experimental-initial-corrupt-check",
    "peer-auto-tls",
    "peer-client-cert-auth",
    "strict-reconfig-check",
];

/// pflag `StringSlice`/`StringArray` flags: repeated occurrences append.
const K8S_LISTS: &[&str] = &[
    "admission-control",
    "api-audiences",
    "authorization-mode",
    "controllers",
    "disable-admission-plugins",
    "enable-admission-plugins",
    "etcd-servers",
    "kubelet-preferred-address-types",
    "requestheader-allowed-names",
    "requestheader-extra-headers-prefix",
    "requestheader-group-headers",
    "requestheader-username-headers",
    "service-account-issuer",
    "service-account-key-file",
    "tls-cipher-suites",
];

fn kind(component: Component, name: &str) -> Kind {
    if component.go_flag_package() {
        return if ETCD_BOOLS.contains(&name) {
            Kind::Bool
        } else {
            Kind::Unknown
        };
    }
    if K8S_BOOLS.contains(&name) {
        Kind::Bool
    } else if K8S_LISTS.contains(&name) {
        Kind::List
    } else if name == "feature-gates" {
        Kind::Map
    } else if name.contains("-file") || name.contains("-dir") || name.contains("-path") {
        Kind::Value
    } else {
        Kind::Unknown
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// One flag as the component sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagValue {
    /// The effective value (lists joined with `,`).
    pub value: String,
    /// How often the flag occurs.
    pub occurrences: usize,
    /// Some occurrence used the two-item `--name value` form.
    pub two_item: bool,
    /// Some occurrence spelled the name differently (`_` for `-`, one dash for etcd).
    pub respelled: bool,
}

/// A component's flags, and what it would refuse.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    values: BTreeMap<String, FlagValue>,
    /// Problems the component would report at start-up (bad boolean, missing value).
    pub problems: Vec<String>,
}

impl Flags {
    /// Reads `argv`; `has_program` says whether `argv[0]` is the program (and not a flag).
    pub fn parse(component: Component, argv: &[String], has_program: bool) -> Flags {
        let mut f = Flags::default();
        let go = component.go_flag_package();
        let mut i = usize::from(has_program);
        while i < argv.len() {
            let item = argv[i].as_str();
            i += 1;
            if item == "--" {
                break;
            }
            let body = match item.strip_prefix("--") {
                Some(b) => b,
                None if go && item.len() > 1 && item.starts_with('-') => &item[1..],
                // A pflag shorthand (-v=2) or a positional argument.
                None if !go => continue,
                None => break,
            };
            let respelled = !item.starts_with("--") || (!go && body.contains('_'));
            let (raw_name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let name = if go {
                raw_name.to_string()
            } else {
                raw_name.replace('_', "-")
            };
            let k = kind(component, &name);
            let mut two_item = false;
            let value = match inline {
                Some(v) => v,
                None if k == Kind::Bool => "true".to_string(),
                None => match argv.get(i) {
                    Some(next) if k != Kind::Unknown || !next.starts_with('-') => {
                        i += 1;
                        two_item = true;
                        next.clone()
                    }
                    Some(_) => "true".to_string(),
                    None if k == Kind::Unknown => "true".to_string(),
                    None => {
                        f.problems.push(format!("--{name} needs a value"));
                        continue;
                    }
                },
            };
            f.set(k, &name, value, two_item, respelled);
        }
        f
    }

    fn set(&mut self, k: Kind, name: &str, value: String, two_item: bool, respelled: bool) {
        let value = if k == Kind::Bool {
            match parse_bool(&value) {
                Some(b) => b.to_string(),
                None => {
                    self.problems.push(format!(
                        "--{name}={value} is not a boolean; the component would not start"
                    ));
                    value
                }
            }
        } else {
            value
        };
        let e = self.values.entry(name.to_string()).or_insert(FlagValue {
            value: String::new(),
            occurrences: 0,
            two_item: false,
            respelled: false,
        });
        e.value = match k {
            _ if e.occurrences == 0 => value,
            Kind::List if value.is_empty() => e.value.clone(),
            Kind::List if e.value.is_empty() => value,
            Kind::List => format!("{},{value}", e.value),
            Kind::Map => merge_map(&e.value, &value),
            _ => value,
        };
        e.occurrences += 1;
        e.two_item |= two_item;
        e.respelled |= respelled;
    }

    /// The flag named `--name` (or `name`), if given.
    pub fn get(&self, flag: &str) -> Option<&FlagValue> {
        self.values.get(flag.trim_start_matches('-'))
    }

    pub fn value(&self, flag: &str) -> Option<String> {
        self.get(flag).map(|v| v.value.clone())
    }
}

/// `--feature-gates=A=true,B=false` given twice: later keys replace earlier ones.
fn merge_map(old: &str, new: &str) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for part in old.split(',').chain(new.split(',')) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        match pairs.iter_mut().find(|(pk, _)| pk == k) {
            Some(p) => p.1 = v.to_string(),
            None => pairs.push((k.to_string(), v.to_string())),
        }
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// What `ps -ef` shows of a command line (the fields before it hold no flags).
pub fn ps_text(argv: &[String]) -> String {
    argv.join(" ")
}

/// kube-bench's `flagTestItem.findValue` on an audit's output: `None` when `flag` is not a
/// substring of `output`.
pub fn kube_bench_find(output: &str, flag: &str) -> Option<String> {
    if output.is_empty() || flag.is_empty() {
        return None;
    }
    let at = output.find(flag)?;
    let mut rest = &output[at + flag.len()..];
    // (=|: *)*
    loop {
        if let Some(r) = rest.strip_prefix('=') {
            rest = r;
        } else if let Some(r) = rest.strip_prefix(':') {
            rest = r.trim_start_matches(' ');
        } else {
            break;
        }
    }
    // ([^\s]*) with RE2's \s = [\t\n\f\r ]
    let end = rest
        .find(['\t', '\n', '\x0c', '\r', ' '])
        .unwrap_or(rest.len());
    let value = &rest[..end];
    Some(if !value.is_empty() {
        value.to_string()
    } else if flag.starts_with("--") {
        "true".to_string()
    } else {
        flag.to_string()
    })
}

/// kube-bench's `envTestItem.findValue`: regex `<ENV>=.*(?:$|\n)` on `NAME=value` lines.
pub fn kube_bench_env(env_text: &str, var: &str) -> Option<String> {
    let key = format!("{var}=");
    let at = env_text.find(&key)?;
    let rest = &env_text[at + key.len()..];
    let value = rest.split('\n').next().unwrap_or("");
    (!value.is_empty()).then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn last_wins_and_two_item_form() {
        let a = v(&[
            "kube-apiserver",
            "--profiling=true",
            "--audit-log-path",
            "/x",
            "--profiling=false",
        ]);
        let f = Flags::parse(Component::ApiServer, &a, true);
        let p = f.get("--profiling").unwrap();
        assert_eq!((p.value.as_str(), p.occurrences), ("false", 2));
        let l = f.get("audit-log-path").unwrap();
        assert_eq!((l.value.as_str(), l.two_item), ("/x", true));
        assert_eq!(
            kube_bench_find(&ps_text(&a), "--profiling").as_deref(),
            Some("true")
        );
        assert_eq!(
            kube_bench_find(&ps_text(&a), "--audit-log-path").as_deref(),
            Some("true")
        );
    }

    #[test]
    fn booleans_lists_maps() {
        let a = v(&[
            "x",
            "--profiling",
            "false",
            "--anonymous_auth=0",
            "--enable-admission-plugins=A,B",
            "--enable-admission-plugins=C",
            "--feature-gates=X=true,Y=false",
            "--feature-gates=Y=true",
        ]);
        let f = Flags::parse(Component::ApiServer, &a, true);
        assert_eq!(f.value("profiling").as_deref(), Some("true"));
        assert_eq!(f.value("anonymous-auth").as_deref(), Some("false"));
        assert!(f.get("anonymous-auth").unwrap().respelled);
        assert_eq!(
            f.value("enable-admission-plugins").as_deref(),
            Some("A,B,C")
        );
        assert_eq!(f.value("feature-gates").as_deref(), Some("X=true,Y=true"));
        let f = Flags::parse(Component::ApiServer, &v(&["--profiling=yes"]), false);
        assert_eq!(f.problems.len(), 1);
    }

    #[test]
    fn etcd_go_flags() {
        let a = v(&[
            "etcd",
            "-cert-file=/c",
            "--client-cert-auth",
            "--data-dir",
            "/d",
            "pos",
            "--key-file=/k",
        ]);
        let f = Flags::parse(Component::Etcd, &a, true);
        assert_eq!(f.value("cert-file").as_deref(), Some("/c"));
        assert_eq!(f.value("client-cert-auth").as_deref(), Some("true"));
        assert_eq!(f.value("data-dir").as_deref(), Some("/d"));
        assert_eq!(f.value("key-file"), None);
    }

    #[test]
    fn kube_bench_reading() {
        let s = "kube-apiserver --encryption-provider-config-automatic-reload=true --a=1 --a=2";
        assert_eq!(
            kube_bench_find(s, "--encryption-provider-config").as_deref(),
            Some("-automatic-reload=true")
        );
        assert_eq!(kube_bench_find(s, "--a").as_deref(), Some("1"));
        assert_eq!(kube_bench_find(s, "--b"), None);
        assert_eq!(
            kube_bench_find("root:root", "root:root").as_deref(),
            Some("root:root")
        );
        assert_eq!(
            kube_bench_find("permissions=600 /x", "permissions").as_deref(),
            Some("600")
        );
        assert_eq!(kube_bench_find("flag: v", "flag").as_deref(), Some("v"));
        assert_eq!(
            kube_bench_env("A=1\nETCD_X=y\n", "ETCD_X").as_deref(),
            Some("y")
        );
        assert_eq!(kube_bench_env("ETCD_X=\n", "ETCD_X"), None);
    }
}
