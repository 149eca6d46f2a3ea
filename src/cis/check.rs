//! One check's evaluation: the component's reading (the verdict), kube-bench's reading of the
//! same input (a note where it differs), and the running processes (a note where they differ
//! from the manifest).

use crate::cis::encryption;
use crate::cis::eval::{self, eval_tests, Lookup, TestsOutcome};
use crate::cis::files::{self, KubeBenchLine, OurLine};
use crate::cis::flags::{self, Flags};
use crate::cis::rules::{Audit, Check, CheckType, Component, FileTarget, Item, Tests};
use crate::cis::source::{self, Process};
use crate::cis::{CheckResult, Node, PodState, RunningView, Source, Status};
use std::path::{Path, PathBuf};

pub(super) const NOT_FOUND: &str = "not found";

pub(super) fn blank(check: &Check, status: Status, source: Source) -> CheckResult {
    CheckResult {
        check: *check,
        status,
        source,
        manifest: None,
        expected: check.tests.as_ref().map(eval::describe).unwrap_or_default(),
        remediation: check.remediation.to_string(),
        found: String::new(),
        kube_bench_status: status,
        notes: Vec::new(),
        running: Vec::new(),
        targets: Vec::new(),
        failing: Vec::new(),
    }
}

pub(crate) fn evaluate(check: &Check, node: &Node) -> CheckResult {
    let mut r = evaluate_tests(check, node);
    r.remediation = resolve_paths(check.remediation, node);
    r
}

/// kubeadm's default paths in a remediation text, replaced by this node's.
fn resolve_paths(text: &str, node: &Node) -> String {
    const MARK: &str = "\u{0}manifests/";
    let manifests = format!("{}/", node.manifests_dir.display());
    let k8s = format!("{}/", node.files.kubernetes_dir.display());
    let mut t = text
        .replace("/etc/kubernetes/manifests/", MARK)
        .replace("/etc/kubernetes/", &k8s)
        .replace(MARK, &manifests);
    if let Some(d) = &node.files.etcd_data_dir {
        t = t.replace("/var/lib/etcd", &d.display().to_string());
    }
    t
}

fn evaluate_tests(check: &Check, node: &Node) -> CheckResult {
    let Some(tests) = check
        .tests
        .filter(|_| check.kind != CheckType::ManualNoTests)
    else {
        let mut r = blank(check, Status::Warn, Source::None);
        r.notes
            .push("manual check: kube-bench runs no test for it".into());
        if let (Audit::Flags(c), Some(PodState::Ok(pod))) = (check.audit, pod_of(check, node)) {
            // The flag the text names (1.2.20: --request-timeout), shown for the person.
            let named = check.text.split_whitespace().find(|w| w.starts_with("--"));
            if let Some(flag) = named {
                let f = Flags::parse(c, &pod.argv, pod.has_program);
                r.found = show(flag, f.value(flag).as_deref());
            }
            r.source = Source::Manifest;
            r.manifest = Some(pod.path.clone());
        }
        return r;
    };
    match check.audit {
        Audit::Flags(c) => flag_check(check, &tests, c, node),
        Audit::File(t) => file_check(check, &tests, t, node),
        Audit::EncryptionProviders => encryption::check(check, &tests, node),
    }
}

fn pod_of<'a>(check: &Check, node: &'a Node) -> Option<&'a PodState> {
    match check.audit {
        Audit::Flags(c) => node.pods.get(&c),
        Audit::EncryptionProviders => node.pods.get(&Component::ApiServer),
        Audit::File(_) => None,
    }
}

fn show(flag: &str, v: Option<&str>) -> String {
    match v {
        Some(v) => format!("{flag}={v}"),
        None => format!("{flag} not set"),
    }
}

/// A command line (plus environment) under both readings.
pub(super) struct Reading {
    pub flags: Flags,
    env: Vec<(String, String)>,
    pub ps: String,
    env_text: String,
}

impl Reading {
    pub fn new(
        c: Component,
        argv: &[String],
        has_program: bool,
        env: &[(String, String)],
    ) -> Reading {
        Reading {
            flags: Flags::parse(c, argv, has_program),
            env: env.to_vec(),
            ps: flags::ps_text(argv),
            env_text: source::env_text(env),
        }
    }

    fn env_value(&self, item: &Item) -> Option<String> {
        let var = item.env?;
        self.env
            .iter()
            .rev()
            .find(|(k, v)| k == var && !v.is_empty())
            .map(|(_, v)| v.clone())
    }

    /// Ours: the flag, else (etcd) its environment variable.
    fn ours(&self, item: &Item) -> Option<String> {
        self.flags.value(item.flag).or_else(|| self.env_value(item))
    }

    fn kube_bench(&self, item: &Item) -> Option<String> {
        flags::kube_bench_find(&self.ps, item.flag).or_else(|| {
            item.env
                .and_then(|e| flags::kube_bench_env(&self.env_text, e))
        })
    }

    fn found(&self, tests: &Tests) -> String {
        let mut seen: Vec<&str> = Vec::new();
        let mut parts = Vec::new();
        for item in tests.items {
            if seen.contains(&item.flag) {
                continue;
            }
            seen.push(item.flag);
            parts.push(match (self.flags.value(item.flag), self.env_value(item)) {
                (None, Some(v)) => format!("{}={v} (environment)", item.env.unwrap_or_default()),
                (v, _) => show(item.flag, v.as_deref()),
            });
        }
        parts.join("; ")
    }

    fn eval(&self, tests: &Tests) -> (TestsOutcome, TestsOutcome) {
        let ours = |i: &Item| self.ours(i);
        let kb = |i: &Item| self.kube_bench(i);
        (
            eval_tests(tests, &[&ours as &dyn Lookup]),
            eval_tests(tests, &[&kb as &dyn Lookup]),
        )
    }
}

/// Why kube-bench reads `flag` as `kb` where the component reads `ours`.
fn why_differs(r: &Reading, flag: &str, ours: Option<&str>, kb: Option<&str>) -> String {
    let name = flag.trim_start_matches('-');
    let Some(fv) = r.flags.get(flag) else {
        return match kb {
            Some(v) => format!(
                "kube-bench matches {flag} as a substring of another flag and reads {v:?}; the component does not see {flag} at all"
            ),
            None => String::new(),
        };
    };
    let ours = ours.unwrap_or_default();
    let kb_text = kb.map_or("nothing (not found)".to_string(), |v| format!("{v:?}"));
    let cause = if fv.respelled && kb.is_none() {
        format!("{flag} is spelled differently in the command line (\"_\" for \"-\" or a single dash), which the component accepts")
    } else if fv.two_item {
        format!("{flag} is given as two items (`{flag} {ours}`); kube-bench only understands `{flag}=value` and reads a bare flag as \"true\"")
    } else if fv.occurrences > 1 {
        format!(
            "{flag} occurs {} times; the component uses the last occurrence (or, for a list, all of them), kube-bench only the first",
            fv.occurrences
        )
    } else if flags::parse_bool(kb.unwrap_or_default()).is_some() {
        format!(
            "--{name} is a boolean and the component reads {:?} as {ours}",
            kb.unwrap_or_default()
        )
    } else {
        "kube-bench reads the value differently".to_string()
    };
    format!("{cause}: the component reads {ours:?}, kube-bench {kb_text}")
}

fn kube_bench_notes(
    r: &Reading,
    tests: &Tests,
    ours: &TestsOutcome,
    kb: &TestsOutcome,
    scored: bool,
) -> Vec<String> {
    let mut notes = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for item in tests.items {
        if seen.contains(&item.flag) {
            continue;
        }
        seen.push(item.flag);
        let (o, k) = (r.ours(item), r.kube_bench(item));
        if o != k {
            notes.push(why_differs(r, item.flag, o.as_deref(), k.as_deref()));
        }
        for p in r.flags.problems.iter().filter(|p| {
            p.starts_with(&format!("{}=", item.flag)) || p.starts_with(&format!("{} ", item.flag))
        }) {
            notes.push(p.clone());
        }
    }
    if ours.pass != kb.pass {
        let (s, k) = (Status::of(ours.pass, scored), Status::of(kb.pass, scored));
        notes.push(format!(
            "kube-bench would report {} on this command line; this verdict ({}) follows how the component reads its flags",
            k.name(),
            s.name()
        ));
    }
    notes
}

fn flag_check(check: &Check, tests: &Tests, c: Component, node: &Node) -> CheckResult {
    let scored = check.scored();
    let procs = node.procs.get(&c).map(Vec::as_slice).unwrap_or_default();
    let pod = node.pods.get(&c);
    let (reading, source, mut pre_notes) = match pod {
        Some(PodState::Ok(p)) => (
            Some(Reading::new(c, &p.argv, p.has_program, &p.env)),
            Source::Manifest,
            vec![],
        ),
        other => {
            let why = match other {
                Some(PodState::Broken(path, e)) => {
                    format!("the manifest {} cannot be read: {e}", path.display())
                }
                Some(PodState::Missing(path)) => format!("no manifest {}", path.display()),
                _ => "no manifest".to_string(),
            };
            match procs.first() {
                Some(p) => (
                    Some(Reading::new(c, &p.argv, true, &p.env)),
                    Source::Running,
                    vec![format!(
                        "{why}; read from the running process (pid {})",
                        p.pid
                    )],
                ),
                None => (
                    None,
                    Source::None,
                    vec![format!("{why} and no running {} process", c.binary())],
                ),
            }
        }
    };
    let Some(r) = reading else {
        let mut res = blank(check, Status::failed(scored), Source::None);
        res.found = NOT_FOUND.into();
        res.notes.append(&mut pre_notes);
        return res;
    };
    let (ours, kb) = r.eval(tests);
    let mut res = blank(check, Status::of(ours.pass, scored), source);
    res.kube_bench_status = Status::of(kb.pass, scored);
    res.found = r.found(tests);
    if let Some(PodState::Ok(p)) = pod {
        res.manifest = Some(p.path.clone());
    }
    res.notes.append(&mut pre_notes);
    res.notes
        .extend(kube_bench_notes(&r, tests, &ours, &kb, scored));
    if source == Source::Manifest {
        let flags_read: Vec<&str> = tests.items.iter().map(|i| i.flag).collect();
        running_notes(&mut res, c, &r, procs, &flags_read, |pr| {
            pr.eval(tests).0.pass
        });
    }
    res
}

/// Notes and views for running processes whose reading of `flags_read` differs from the
/// manifest's.
pub(super) fn running_notes(
    res: &mut CheckResult,
    c: Component,
    manifest: &Reading,
    procs: &[Process],
    flags_read: &[&str],
    pass: impl Fn(&Reading) -> bool,
) {
    let scored = res.check.scored();
    for p in procs {
        let pr = Reading::new(c, &p.argv, true, &p.env);
        let mut m_parts = Vec::new();
        let mut r_parts = Vec::new();
        let mut seen = Vec::new();
        for &flag in flags_read {
            if seen.contains(&flag) {
                continue;
            }
            seen.push(flag);
            let (mv, rv) = (manifest.flags.value(flag), pr.flags.value(flag));
            if mv != rv {
                m_parts.push(show(flag, mv.as_deref()));
                r_parts.push(show(flag, rv.as_deref()));
            }
        }
        if m_parts.is_empty() {
            continue;
        }
        let status = Status::of(pass(&pr), scored);
        res.notes.push(format!(
            "manifest: {}, running (pid {}): {} — kubelet has not restarted the pod since the manifest changed{}",
            m_parts.join(", "),
            p.pid,
            r_parts.join(", "),
            if status == res.status {
                String::new()
            } else {
                format!(" (the running process gets {})", status.name())
            }
        ));
        res.running.push(RunningView {
            pid: p.pid,
            status,
            found: r_parts.join("; "),
        });
    }
}

/// etcd's data dir on the host: `--data-dir` of the manifest (else of the running etcd),
/// through the pod's hostPath volumes.
pub(crate) fn locate_data_dir(node: &mut Node) {
    let (dir, pod) = match node.pods.get(&Component::Etcd) {
        Some(PodState::Ok(p)) => (
            Flags::parse(Component::Etcd, &p.argv, p.has_program).value("data-dir"),
            Some(p),
        ),
        _ => (None, None),
    };
    let running = node
        .procs
        .get(&Component::Etcd)
        .and_then(|v| v.first())
        .and_then(|p| Flags::parse(Component::Etcd, &p.argv, true).value("data-dir"));
    let Some(dir) = dir.or(running) else {
        node.data_dir_notes
            .push("etcd's --data-dir is unknown (no etcd manifest or process)".into());
        return;
    };
    let host = pod.and_then(|p| p.host_path(&dir));
    match &host {
        Some(h) if h != Path::new(&dir) => node.data_dir_notes.push(format!(
            "--data-dir={dir} is {} on the host (hostPath volume); kube-bench would stat {dir}",
            h.display()
        )),
        None if pod.is_some() => node.data_dir_notes.push(format!(
            "--data-dir={dir} is not on a hostPath volume of the etcd pod"
        )),
        _ => {}
    }
    node.files.etcd_data_dir = Some(host.unwrap_or_else(|| PathBuf::from(dir)));
}

fn file_check(check: &Check, tests: &Tests, target: FileTarget, node: &Node) -> CheckResult {
    let scored = check.scored();
    let paths = files::paths(target, &node.files);
    let facts: Vec<files::FileFact> = paths.iter().filter_map(|p| files::fact(p)).collect();
    let flag = tests.items[0].flag;
    let with_name = target == FileTarget::AdminConfs;
    let ours: Vec<OurLine> = facts.iter().map(OurLine).collect();
    let kb: Vec<KubeBenchLine> = facts
        .iter()
        .map(|f| KubeBenchLine(files::kube_bench_line(f, flag, with_name)))
        .collect();
    let ours_dyn: Vec<&dyn Lookup> = ours.iter().map(|l| l as &dyn Lookup).collect();
    let kb_dyn: Vec<&dyn Lookup> = kb.iter().map(|l| l as &dyn Lookup).collect();
    let (o, k) = (eval_tests(tests, &ours_dyn), eval_tests(tests, &kb_dyn));
    let mut res = blank(check, Status::of(o.pass, scored), Source::File);
    res.kube_bench_status = Status::of(k.pass, scored);
    res.targets = paths.clone();
    if let FileTarget::Manifest(_) = target {
        res.manifest = paths.first().cloned();
    }
    let per_file: Vec<(files::FileFact, bool)> = facts
        .iter()
        .map(|f| {
            (
                f.clone(),
                eval_tests(tests, &[&OurLine(f) as &dyn Lookup]).pass,
            )
        })
        .collect();
    res.failing = per_file
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(f, _)| f.path.clone())
        .collect();
    if facts.is_empty() {
        // cli.md: a missing file makes its check WARN "not found". kube-bench's audit prints
        // nothing for it, which fails the test (FAIL when scored); the note says so.
        res.status = Status::Warn;
        res.found = NOT_FOUND.into();
        res.notes.push(missing_note(target, &paths, node));
        res.notes.push(format!(
            "kube-bench would report {} (its audit prints nothing for a missing file)",
            res.kube_bench_status.name()
        ));
    } else {
        res.found = files::describe(&per_file, flag);
    }
    for p in paths.iter().filter(|p| p.symlink_metadata().is_err()) {
        if !facts.is_empty() {
            res.notes.push(format!("{}: not found", p.display()));
        }
    }
    if target == FileTarget::EtcdDataDir {
        res.notes.extend(node.data_dir_notes.iter().cloned());
    }
    for f in facts.iter().filter(|f| f.symlink) {
        res.notes.push(format!(
            "{} is a symbolic link: kube-bench stats the link itself (permissions={:o} ownership={}), this audit the file it points to",
            f.path.display(),
            f.lmode,
            f.lowner
        ));
    }
    if o.pass != k.pass {
        res.notes.push(format!(
            "kube-bench would report {} (it reads `stat` output: substring owner match, link not followed)",
            res.kube_bench_status.name()
        ));
    }
    res
}

fn missing_note(target: FileTarget, paths: &[PathBuf], node: &Node) -> String {
    let k = node.files.kubernetes_dir.display();
    match target {
        FileTarget::AdminConfs => format!("neither {k}/admin.conf nor {k}/super-admin.conf exists"),
        FileTarget::PkiAll => format!("{k}/pki does not exist"),
        FileTarget::PkiCrt => format!("no *.crt file under {k}/pki"),
        FileTarget::PkiKey => format!("no *.key file under {k}/pki"),
        FileTarget::Cni => format!(
            "no CNI files: no running kubelet with --cni-conf-dir and nothing in {} (kube-bench does not look at /etc/cni/net.d)",
            node.files.cni_networks.display()
        ),
        _ => match paths.first() {
            Some(p) => format!("{}: not found", p.display()),
            None => node.data_dir_notes.join("; "),
        },
    }
}
