//! The hardening file (`kind: HardeningConfiguration`), parsed strictly: an unknown field, a
//! check id no benchmark has, a bad flag name or a wrong type is refused with its line, so a
//! typo never silently weakens what a node enforces.

use crate::cis::rules::{Component, NeededFile};
use crate::cis::BenchmarkId;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const API_VERSION: &str = "kubeharden.io/v1alpha1";
pub const KIND: &str = "HardeningConfiguration";
pub const DEFAULT_PATH: &str = "/etc/kubeharden/hardening.yaml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Raw {
    api_version: String,
    kind: String,
    #[serde(default)]
    benchmark: Option<String>,
    #[serde(default)]
    checks: RawChecks,
    #[serde(default)]
    waivers: Vec<RawWaiver>,
    #[serde(default)]
    components: BTreeMap<String, RawComponent>,
    #[serde(default)]
    files: RawFiles,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawChecks {
    #[serde(default)]
    opt_in: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWaiver {
    check: String,
    reason: String,
    #[serde(default)]
    expires: Option<String>,
    #[serde(default)]
    owner: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    #[serde(default)]
    set: BTreeMap<String, serde_norway::Value>,
    #[serde(default)]
    unset: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFiles {
    #[serde(default)]
    audit_policy: Option<PathBuf>,
    #[serde(default)]
    admission_config: Option<PathBuf>,
    #[serde(default)]
    encryption_config: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiver {
    pub check: String,
    pub reason: String,
    /// `YYYY-MM-DD`: the waiver holds through that day (UTC).
    pub expires: Option<String>,
    pub owner: Option<String>,
}

/// Flags beyond CIS for one component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extra {
    pub set: BTreeMap<String, String>,
    pub unset: Vec<String>,
}

/// A parsed, validated hardening file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardening {
    /// Where it was read from ("" for the built-in defaults).
    pub path: PathBuf,
    /// `None`: auto (from the kube-apiserver image version).
    pub benchmark: Option<BenchmarkId>,
    pub opt_in: Vec<String>,
    pub exclude: Vec<String>,
    pub waivers: Vec<Waiver>,
    pub extras: BTreeMap<Component, Extra>,
    pub files: Vec<(NeededFile, PathBuf)>,
}

/// A refusal with the line it is about (1-based; 0 when unknown).
#[derive(Debug, Clone)]
pub struct ParseError {
    pub line: usize,
    pub what: String,
}

fn err(line: usize, what: impl Into<String>) -> ParseError {
    ParseError {
        line,
        what: what.into(),
    }
}

/// The component a `components:` key names (the manifest's base name).
pub fn component_of(name: &str) -> Option<Component> {
    Component::PODS.into_iter().find(|c| c.binary() == name)
}

/// Every check id of every benchmark kubeharden carries.
fn known_check(id: &str) -> bool {
    BenchmarkId::ALL
        .iter()
        .any(|b| b.checks().iter().any(|c| c.id == id))
}

/// The first line (1-based) at or after `from` holding `needle` as a whole token.
pub fn line_of(text: &str, needle: &str) -> usize {
    for (i, l) in text.lines().enumerate() {
        let code = l.split(" #").next().unwrap_or(l);
        let tokens = code.split(|c: char| {
            c.is_whitespace() || matches!(c, ':' | ',' | '[' | ']' | '"' | '\'' | '{' | '}')
        });
        if tokens.into_iter().any(|t| t == needle) {
            return i + 1;
        }
    }
    0
}

fn scalar(v: &serde_norway::Value) -> Option<String> {
    match v {
        serde_norway::Value::String(s) => Some(s.clone()),
        serde_norway::Value::Bool(b) => Some(b.to_string()),
        serde_norway::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `YYYY-MM-DD`, a real date.
pub fn valid_date(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() && s.len() == 10
}

fn check_ids(text: &str, ids: &[String], field: &str) -> Result<(), ParseError> {
    for id in ids {
        if !known_check(id) {
            return Err(err(
                line_of(text, id),
                format!("{field}: unknown check id {id:?} (ids look like 1.2.15)"),
            ));
        }
    }
    Ok(())
}

fn extra(text: &str, comp: &str, raw: RawComponent) -> Result<Extra, ParseError> {
    let mut e = Extra::default();
    for (name, v) in raw.set {
        crate::manifest::validate_flag_name(&name).map_err(|_| {
            err(
                line_of(text, &name),
                format!(
                    "components.{comp}.set: bad flag name {name:?} (write it without dashes, \
                     lower case: tls-min-version)"
                ),
            )
        })?;
        let value = scalar(&v).ok_or_else(|| {
            err(
                line_of(text, &name),
                format!("components.{comp}.set.{name}: the value must be a string"),
            )
        })?;
        crate::manifest::validate_flag_value(&value)
            .map_err(|m| err(line_of(text, &name), format!("{comp}.set.{name}: {m}")))?;
        e.set.insert(name, value);
    }
    for name in raw.unset {
        let line = line_of(text, &name);
        crate::manifest::validate_flag_name(&name).map_err(|_| {
            err(
                line,
                format!("components.{comp}.unset: bad flag name {name:?} (no dashes, lower case)"),
            )
        })?;
        if e.set.contains_key(&name) {
            return Err(err(
                line,
                format!("components.{comp}: {name} is both in set and in unset"),
            ));
        }
        e.unset.push(name);
    }
    Ok(e)
}

fn files(raw: RawFiles) -> Result<Vec<(NeededFile, PathBuf)>, ParseError> {
    let mut out = Vec::new();
    for (kind, p, field) in [
        (NeededFile::AuditPolicy, raw.audit_policy, "auditPolicy"),
        (
            NeededFile::EventRateLimit,
            raw.admission_config,
            "admissionConfig",
        ),
        (
            NeededFile::Encryption,
            raw.encryption_config,
            "encryptionConfig",
        ),
    ] {
        if let Some(p) = p {
            if !p.is_absolute() {
                return Err(err(
                    0,
                    format!("files.{field}: {} must be an absolute path", p.display()),
                ));
            }
            out.push((kind, p));
        }
    }
    Ok(out)
}

/// Parse and validate the text of a hardening file.
pub fn parse(text: &str, path: &Path) -> Result<Hardening, ParseError> {
    let raw: Raw = serde_norway::from_str(text).map_err(|e| {
        let line = e.location().map_or(0, |l| l.line());
        // serde's message ends with " at line N column M"; the line is reported separately.
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        err(line, msg)
    })?;
    if raw.api_version != API_VERSION {
        return Err(err(
            line_of(text, "apiVersion"),
            format!(
                "apiVersion must be {API_VERSION}, not {:?}",
                raw.api_version
            ),
        ));
    }
    if raw.kind != KIND {
        return Err(err(
            line_of(text, "kind"),
            format!("kind must be {KIND}, not {:?}", raw.kind),
        ));
    }
    let benchmark = match raw.benchmark.as_deref().map(str::trim) {
        None | Some("auto") | Some("") => None,
        Some(b) => Some(BenchmarkId::parse(b).map_err(|m| err(line_of(text, "benchmark"), m))?),
    };
    check_ids(text, &raw.checks.opt_in, "checks.optIn")?;
    check_ids(text, &raw.checks.exclude, "checks.exclude")?;
    let mut waivers = Vec::new();
    for w in raw.waivers {
        check_ids(text, std::slice::from_ref(&w.check), "waivers")?;
        if w.reason.trim().is_empty() {
            return Err(err(
                line_of(text, &w.check),
                format!("waiver of {}: reason must say why", w.check),
            ));
        }
        if let Some(d) = &w.expires {
            if !valid_date(d) {
                return Err(err(
                    line_of(text, d),
                    format!(
                        "waiver of {}: expires {d:?} is not a YYYY-MM-DD date",
                        w.check
                    ),
                ));
            }
        }
        waivers.push(Waiver {
            check: w.check,
            reason: w.reason,
            expires: w.expires,
            owner: w.owner,
        });
    }
    let mut extras = BTreeMap::new();
    for (name, c) in raw.components {
        let comp = component_of(&name).ok_or_else(|| {
            err(
                line_of(text, &name),
                format!(
                    "components: unknown component {name:?} (kube-apiserver, \
                     kube-controller-manager, kube-scheduler, etcd)"
                ),
            )
        })?;
        extras.insert(comp, extra(text, &name, c)?);
    }
    Ok(Hardening {
        path: path.to_path_buf(),
        benchmark,
        opt_in: raw.checks.opt_in,
        exclude: raw.checks.exclude,
        waivers,
        extras,
        files: files(raw.files)?,
    })
}

/// Read and parse a hardening file; every refusal is a usage error naming the file and line.
pub fn load(path: &Path) -> crate::error::Result<Hardening> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        crate::error::Error::usage(format!("hardening file {}: {e}", path.display()))
    })?;
    parse(&text, path).map_err(|e| {
        crate::error::Error::usage(if e.line > 0 {
            format!("{}:{}: {}", path.display(), e.line, e.what)
        } else {
            format!("{}: {}", path.display(), e.what)
        })
    })
}

/// The file a command uses: `-f FILE` (must exist), else the default path if it exists, else
/// none (behaviour as without a hardening file).
pub fn resolve(explicit: Option<&Path>) -> crate::error::Result<Option<Hardening>> {
    if let Some(p) = explicit {
        return load(p).map(Some);
    }
    let default = default_path();
    if default.exists() {
        load(&default).map(Some)
    } else {
        Ok(None)
    }
}

/// The default path: `KUBEHARDEN_HARDENING_FILE` (tests, odd layouts), else [`DEFAULT_PATH`].
pub fn default_path() -> PathBuf {
    std::env::var_os("KUBEHARDEN_HARDENING_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

impl Hardening {
    /// Every flag name the file sets or unsets, for naming what an external change removed.
    pub fn extra_flag_names(&self) -> Vec<String> {
        self.extras
            .values()
            .flat_map(|e| e.set.keys().chain(e.unset.iter()).cloned())
            .collect()
    }

    /// The defaults: every automated check except the risky ones, no waivers, no extras.
    pub fn defaults() -> Hardening {
        Hardening {
            path: PathBuf::new(),
            benchmark: None,
            opt_in: Vec::new(),
            exclude: Vec::new(),
            waivers: Vec::new(),
            extras: BTreeMap::new(),
            files: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "apiVersion: kubeharden.io/v1alpha1\nkind: HardeningConfiguration\n";

    fn p(body: &str) -> Result<Hardening, ParseError> {
        parse(&format!("{HEAD}{body}"), Path::new("h.yaml"))
    }

    #[test]
    fn a_full_file_parses() {
        let h = p("benchmark: cis-1.12\nchecks:\n  optIn: [\"1.2.1\"]\n  exclude: [1.2.9]\n\
                   waivers:\n- check: 1.2.15\n  reason: profiling needed\n  expires: 2030-01-31\n  owner: sre\n\
                   components:\n  kube-apiserver:\n    set:\n      tls-min-version: VersionTLS13\n      profiling: false\n    unset: [insecure-port]\n\
                   files:\n  auditPolicy: /etc/kubeharden/audit.yaml\n")
            .unwrap();
        assert_eq!(h.benchmark, Some(BenchmarkId::Cis112));
        assert_eq!(h.opt_in, ["1.2.1"]);
        assert_eq!(h.exclude, ["1.2.9"]);
        assert_eq!(h.waivers[0].expires.as_deref(), Some("2030-01-31"));
        let e = &h.extras[&Component::ApiServer];
        assert_eq!(e.set["tls-min-version"], "VersionTLS13");
        assert_eq!(e.set["profiling"], "false");
        assert_eq!(e.unset, ["insecure-port"]);
        assert_eq!(h.files[0].0, NeededFile::AuditPolicy);
    }

    #[test]
    fn refusals_name_the_line() {
        let cases = [
            ("bogus: 1\n", 3, "unknown field"),
            ("checks:\n  optIn: [9.9.9]\n", 4, "unknown check id"),
            (
                "waivers:\n- check: 1.2.15\n  reason: x\n  until: 2030-01-01\n",
                6,
                "unknown field",
            ),
            (
                "components:\n  kube-apiserver:\n    set:\n      --tls-min-version: x\n",
                6,
                "bad flag name",
            ),
            (
                "components:\n  kubelet:\n    set: {}\n",
                4,
                "unknown component",
            ),
            (
                "waivers:\n- check: 1.2.15\n  reason: x\n  expires: 2030-02-30\n",
                6,
                "not a YYYY-MM-DD",
            ),
            ("benchmark: cis-9\n", 3, "unknown benchmark"),
        ];
        for (body, line, what) in cases {
            let e = p(body).unwrap_err();
            assert_eq!(e.line, line, "{body}: {e:?}");
            assert!(e.what.contains(what), "{body}: {e:?}");
        }
        let e = parse(
            "apiVersion: v1\nkind: HardeningConfiguration\n",
            Path::new("x"),
        )
        .unwrap_err();
        assert_eq!(e.line, 1);
    }
}
