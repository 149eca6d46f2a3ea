//! 1.2.28: the encryption providers of the file named by the API server's
//! `--encryption-provider-config` (a container path, mapped to the host through the pod's
//! hostPath volumes). Ours: the first provider of every `resources[]` entry (the one that
//! encrypts writes) must be aescbc, kms or secretbox. kube-bench's: the first word on the line
//! after the last `providers:` line (`grep -A1 'providers:' | tail -n1`).

use crate::cis::check::{blank, running_notes, Reading, NOT_FOUND};
use crate::cis::eval::{eval_tests, Lookup, TestsOutcome};
use crate::cis::flags;
use crate::cis::rules::{Check, Component, Item, Tests};
use crate::cis::source::Pod;
use crate::cis::{CheckResult, Node, PodState, Source, Status};
use std::path::{Path, PathBuf};

/// kube-bench's 1.2.28 audit output: the words of the line after the last `providers:` line
/// (`grep -A1 'providers:' | tail -n1 | grep -o '[A-Za-z]*'`), one `provider=WORD` a line.
fn kube_bench_providers(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let Some(i) = lines.iter().rposition(|l| l.contains("providers:")) else {
        return String::new();
    };
    let line = lines.get(i + 1).unwrap_or(&lines[i]);
    line.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
        .map(|w| format!("provider={w}\n"))
        .collect()
}

/// The first provider of each `resources[]` entry: the one that encrypts new writes.
fn first_providers(text: &str) -> Result<Vec<String>, String> {
    let v: serde_norway::Value =
        serde_norway::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let resources = v
        .get("resources")
        .and_then(|r| r.as_sequence())
        .ok_or("no resources list")?;
    let mut out = Vec::new();
    for r in resources {
        let first = r
            .get("providers")
            .and_then(|p| p.as_sequence())
            .and_then(|p| p.first())
            .and_then(|p| p.as_mapping())
            .and_then(|m| m.keys().next())
            .and_then(|k| k.as_str())
            .ok_or("a resources entry without providers")?;
        out.push(first.to_string());
    }
    Ok(out)
}

/// The verdict of the encryption config at `cfg` (a container path) and its description.
fn providers_verdict(tests: &Tests, pod: Option<&Pod>, cfg: &str) -> ProvidersVerdict {
    let host = pod
        .and_then(|p| p.host_path(cfg))
        .unwrap_or_else(|| PathBuf::from(cfg));
    let text = std::fs::read_to_string(&host).map_err(|e| (host.clone(), e.to_string()))?;
    let list = first_providers(&text);
    let kb_out = kube_bench_providers(&text);
    let ours = |_: &Item| list.as_ref().ok().map(|l| l.join(","));
    let kb = |i: &Item| flags::kube_bench_find(&kb_out, i.flag);
    let (o, k) = (
        eval_tests(tests, &[&ours as &dyn Lookup]),
        eval_tests(tests, &[&kb as &dyn Lookup]),
    );
    Ok((host, o, k, list))
}

const FLAG: &str = "--encryption-provider-config";

pub(crate) fn check(check: &Check, tests: &Tests, node: &Node) -> CheckResult {
    let scored = check.scored();
    let mut res = blank(check, Status::failed(scored), Source::None);
    let (pod, reading) = match node.pods.get(&Component::ApiServer) {
        Some(PodState::Ok(p)) => (
            Some(p.as_ref()),
            Reading::new(Component::ApiServer, &p.argv, p.has_program, &p.env),
        ),
        _ => match node
            .procs
            .get(&Component::ApiServer)
            .and_then(|v| v.first())
        {
            Some(pr) => (
                None,
                Reading::new(Component::ApiServer, &pr.argv, true, &pr.env),
            ),
            None => {
                res.found = NOT_FOUND.into();
                res.notes.push(
                    "no kube-apiserver manifest and no running kube-apiserver process".into(),
                );
                return res;
            }
        },
    };
    res.source = if pod.is_some() {
        Source::Manifest
    } else {
        Source::Running
    };
    res.manifest = pod.map(|p| p.path.clone());
    let verdict = |r: &Reading| -> bool {
        r.flags
            .value(FLAG)
            .and_then(|cfg| providers_verdict(tests, pod, &cfg).ok())
            .is_some_and(|(_, o, _, _)| o.pass)
    };
    match reading
        .flags
        .value(FLAG)
        .map(|cfg| (providers_verdict(tests, pod, &cfg), cfg))
    {
        None => {
            res.found = format!("{FLAG} not set");
            if let Some(v) = flags::kube_bench_find(&reading.ps, FLAG) {
                res.notes.push(format!(
                    "kube-bench finds {FLAG} as a substring of another flag ({v:?}); its audit then reads nothing"
                ));
            }
        }
        Some((verdict, cfg)) => encryption_result(&mut res, verdict, &cfg, scored),
    }
    if res.source == Source::Manifest {
        let procs = node
            .procs
            .get(&Component::ApiServer)
            .map(Vec::as_slice)
            .unwrap_or_default();
        running_notes(
            &mut res,
            Component::ApiServer,
            &reading,
            procs,
            &[FLAG],
            verdict,
        );
    }
    res
}

type ProvidersVerdict = Result<
    (
        PathBuf,
        TestsOutcome,
        TestsOutcome,
        Result<Vec<String>, String>,
    ),
    (PathBuf, String),
>;

fn encryption_result(res: &mut CheckResult, verdict: ProvidersVerdict, cfg: &str, scored: bool) {
    match verdict {
        Err((host, e)) => {
            res.targets = vec![host.clone()];
            res.found = NOT_FOUND.into();
            res.notes.push(format!("{}: {e}", host.display()));
        }
        Ok((host, o, k, list)) => {
            res.targets = vec![host.clone()];
            if host != Path::new(cfg) {
                res.notes
                    .push(format!("{FLAG}={cfg} is {} on the host", host.display()));
            }
            res.status = Status::of(o.pass, scored);
            res.kube_bench_status = Status::of(k.pass, scored);
            res.found = match &list {
                Ok(l) => format!("provider={} ({} resource entries)", l.join(","), l.len()),
                Err(e) => {
                    res.notes.push(format!("{}: {e}", host.display()));
                    format!("unreadable: {e}")
                }
            };
            if o.pass != k.pass {
                let kb_found = k.items[0].found.clone().unwrap_or_else(|| "nothing".into());
                res.notes.push(format!(
                    "kube-bench reads only the first word after the last \"providers:\" line ({kb_found}) and would report {}",
                    res.kube_bench_status.name()
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys: [{name: k, secret: c2VjcmV0}]\n      - identity: {}\n  - resources: [configmaps]\n    providers:\n      - identity: {}\n";

    #[test]
    fn providers_two_readings() {
        assert_eq!(first_providers(CFG).unwrap(), vec!["aescbc", "identity"]);
        assert_eq!(kube_bench_providers(CFG), "provider=identity\n");
        assert_eq!(
            kube_bench_providers("providers:\n- secretbox: x\n"),
            "provider=secretbox\nprovider=x\n"
        );
        assert_eq!(kube_bench_providers("a: b\n"), "");
        assert!(first_providers("resources: [{providers: []}]").is_err());
    }
}
