//! Proves the kubelet stand-in (examples/kubelet_sim.rs) and the fake control-plane
//! components (examples/fake_component.rs) behave as the gate's end-to-end tests assume.

mod gate_support;

use gate_support::{
    cmdline, etcd_or_skip, free_port, http_get, manifests, pid_alive, wait_http_status,
    wait_pid_gone, wait_until, KubeDir, Sim, SimConfig,
};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(15);

fn ms_between(line_a: &str, line_b: &str) -> i64 {
    let t = |l: &str| {
        chrono::DateTime::parse_from_rfc3339(l.split_whitespace().next().unwrap())
            .unwrap()
            .timestamp_millis()
    };
    t(line_b) - t(line_a)
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

#[test]
fn pod_runs_with_the_manifests_exact_argv() {
    let kd = KubeDir::new();
    let m = manifests::apiserver(&kd, free_port(), &[]);
    kd.install(&m);
    let sim = Sim::start(&kd.manifests(), Duration::ZERO);
    let pid = sim
        .wait_for_argv(&m.argv, T)
        .expect("kube-apiserver started");
    assert_eq!(cmdline(pid).unwrap(), m.argv);
    assert_eq!(m.argv[0], "kube-apiserver");
    assert!(m.argv.contains(&format!("--secure-port={}", m.probe_port)));
    let starts = sim.events("start", "kube-apiserver");
    assert_eq!(starts.len(), 1, "{starts:?}");
    assert_eq!(field(&starts[0], "pid"), Some(pid.to_string().as_str()));
    // It serves its probes.
    let body = wait_http_status(&m.probe_url("/livez"), 200, T).expect("livez 200");
    assert_eq!(body, "ok");
    wait_http_status(&m.probe_url("/readyz"), 200, T).expect("readyz 200");

    // The other two components as kubeadm writes them.
    let cm = manifests::controller_manager(&kd, free_port());
    let sch = manifests::scheduler(&kd, free_port());
    kd.install(&cm);
    kd.install(&sch);
    let cm_pid = sim.wait_for_argv(&cm.argv, T).expect("controller-manager");
    let sch_pid = sim.wait_for_argv(&sch.argv, T).expect("scheduler");
    wait_http_status(&cm.probe_url("/healthz"), 200, T).expect("kcm healthz");
    wait_http_status(&sch.probe_url("/healthz"), 200, T).expect("scheduler healthz");
    assert!(pid_alive(pid) && pid_alive(cm_pid) && pid_alive(sch_pid));
}

#[test]
fn edited_manifest_restarts_the_pod_after_the_delay_with_the_new_argv() {
    let kd = KubeDir::new();
    let m1 = manifests::scheduler(&kd, free_port());
    kd.install(&m1);
    let delay = Duration::from_millis(1500);
    let sim = Sim::start(&kd.manifests(), delay);
    let pid1 = sim.wait_for_argv(&m1.argv, T).expect("first start");

    let m2 = m1.with_flags(&["--profiling=false"]);
    assert_ne!(m1.argv, m2.argv);
    let written = Instant::now();
    kd.install(&m2);
    // Not before the delay: the old process keeps running, the new one is absent.
    std::thread::sleep(delay - Duration::from_millis(500));
    assert!(pid_alive(pid1), "old pod killed before the restart delay");
    assert!(sim.children().iter().all(|(_, a)| *a != m2.argv));

    let pid2 = sim
        .wait_for_new_argv(&m2.argv, &[pid1], T)
        .expect("restarted with the new argv");
    assert!(written.elapsed() >= delay);
    assert_ne!(pid1, pid2);
    assert_eq!(cmdline(pid2).unwrap(), m2.argv);
    assert!(!pid_alive(pid1), "old process still running");
    // The old process was gone before the new one started.
    let log = sim.log_text();
    let stopped = log
        .find(&format!(
            " stopped pod=kube-system/kube-scheduler pid={pid1} "
        ))
        .expect("stopped line");
    let started = log
        .find(&format!(
            " start pod=kube-system/kube-scheduler pid={pid2} "
        ))
        .expect("start line");
    assert!(stopped < started, "{log}");
    assert!(log.contains("reason=pod-updated"), "{log}");

    // A rewrite with the same content (reformatted) is not a change: no restart.
    let same = m2.yaml.replace("  - command:", "  -   command:");
    kd.write_manifest(&m2.file_name, &format!("# comment\n{same}"));
    std::thread::sleep(delay + Duration::from_millis(700));
    assert!(pid_alive(pid2));
    assert_eq!(sim.events("start", "kube-scheduler").len(), 2);
}

#[test]
fn dot_files_are_ignored() {
    let kd = KubeDir::new();
    let m = manifests::apiserver(&kd, free_port(), &[]);
    kd.install(&m);
    let sim = Sim::start(&kd.manifests(), Duration::ZERO);
    let pid = sim.wait_for_argv(&m.argv, T).expect("started");

    let other = m.with_flags(&["--profiling=false"]);
    std::fs::write(kd.manifests().join(".kube-apiserver.yaml.tmp"), &other.yaml).unwrap();
    std::fs::write(kd.manifests().join(".swp"), "garbage: [").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert!(pid_alive(pid));
    assert_eq!(sim.children().len(), 1, "{:?}", sim.children());
    assert_eq!(sim.events("start", "kube-apiserver").len(), 1);
    let log = sim.log_text();
    assert!(!log.contains(".kube-apiserver.yaml.tmp"), "{log}");
    assert!(!log.contains("parse-error"), "{log}");
}

/// Like the kubelet (which globs DIR/[^.]*), any other file is a manifest, whatever its
/// extension; of two files holding the same pod the one sorted last wins.
#[test]
fn non_dot_backup_files_are_read_like_the_kubelet_does() {
    let kd = KubeDir::new();
    let m = manifests::scheduler(&kd, free_port());
    kd.install(&m);
    let sim = Sim::start(&kd.manifests(), Duration::ZERO);
    let pid = sim.wait_for_argv(&m.argv, T).expect("started");

    let backup = m.with_flags(&["--v=2"]);
    std::fs::write(kd.manifests().join("kube-scheduler.yaml.bak"), &backup.yaml).unwrap();
    let pid2 = sim
        .wait_for_new_argv(&backup.argv, &[pid], T)
        .expect("the .bak file's pod replaced the .yaml one");
    assert!(!pid_alive(pid));
    assert_eq!(sim.events("duplicate", "kube-scheduler").len(), 1);

    std::fs::remove_file(kd.manifests().join("kube-scheduler.yaml.bak")).unwrap();
    sim.wait_for_new_argv(&m.argv, &[pid2], T)
        .expect("back to the .yaml pod");
}

#[test]
fn unknown_flag_exits_1_and_crash_loops_with_back_off() {
    let kd = KubeDir::new();
    let m = manifests::apiserver(&kd, free_port(), &["--insecure-port=0"]);
    kd.install(&m);
    let sim = Sim::start(&kd.manifests(), Duration::ZERO);
    assert!(
        wait_until(T, || sim.events("start", "kube-apiserver").len() >= 3),
        "{}",
        sim.log_text()
    );
    let exits = sim.events("exit", "kube-apiserver");
    assert!(exits.len() >= 2, "{exits:?}");
    assert!(
        exits.iter().all(|l| l.contains("status=exit-code=1")),
        "{exits:?}"
    );
    assert!(sim
        .pod_log("kube-apiserver")
        .contains("Error: unknown flag: --insecure-port"));
    // Back-off: 500 ms, then 1000 ms, between an exit and the next start.
    let starts = sim.events("start", "kube-apiserver");
    let gap1 = ms_between(&exits[0], &starts[1]);
    let gap2 = ms_between(&exits[1], &starts[2]);
    assert!(gap1 >= 450, "first back-off {gap1} ms");
    assert!(gap2 >= 950, "second back-off {gap2} ms");
    assert!(starts[1].contains("reason=back-off"));
}

#[test]
fn missing_file_and_bad_values_fail_like_the_real_binaries() {
    let kd = KubeDir::new();
    let cm = manifests::controller_manager(&kd, free_port())
        .with_flags(&["--root-ca-file=/nonexistent/ca.crt"]);
    let sch = manifests::scheduler(&kd, free_port()).with_flags(&["--profiling=nope"]);
    kd.install(&cm);
    kd.install(&sch);
    let sim = Sim::start(&kd.manifests(), Duration::ZERO);
    assert!(wait_until(T, || {
        sim.events("exit", "kube-controller-manager").len() >= 2
            && !sim.events("exit", "kube-scheduler").is_empty()
    }));
    assert!(sim
        .pod_log("kube-controller-manager")
        .contains("open /nonexistent/ca.crt: no such file or directory"));
    assert!(sim
        .pod_log("kube-scheduler")
        .contains("invalid argument \"nope\" for \"--profiling\" flag: strconv.ParseBool"));
    assert!(sim
        .events("exit", "kube-controller-manager")
        .iter()
        .all(|l| l.contains("status=exit-code=1")));
}

#[test]
fn anonymous_auth_false_answers_401_without_credentials() {
    let kd = KubeDir::new();
    let m = manifests::apiserver(&kd, free_port(), &["--anonymous-auth=false"]);
    kd.install(&m);
    let sim = Sim::start(&kd.manifests(), Duration::ZERO);
    sim.wait_for_argv(&m.argv, T).expect("started");
    let body = wait_http_status(&m.probe_url("/livez"), 401, T).expect("401");
    assert!(body.contains("\"reason\":\"Unauthorized\""), "{body}");
    let (st, body) = http_get(
        &m.probe_url("/livez"),
        &[("Authorization", "Bearer test-token")],
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!((st, body.as_str()), (200, "ok"));
    // Plain HTTP on the TLS port: Go's 400.
    let (st, _) = http_get(
        &format!("http://127.0.0.1:{}/livez", m.probe_port),
        &[],
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(st, 400);
}

#[test]
fn behavior_file_makes_a_component_come_up_then_crash_loop() {
    let kd = KubeDir::new();
    let m = manifests::scheduler(&kd, free_port());
    let sim = Sim::start_with(
        &kd.manifests(),
        SimConfig {
            max_backoff: Duration::from_millis(1000),
            ..SimConfig::default()
        },
    );
    // Read by the fake component at start-up: set before the pod exists.
    sim.set_behavior("kube-scheduler", "crash-after-ms 1000\n");
    kd.install(&m);
    let pid = sim.wait_for_argv(&m.argv, T).expect("started");
    wait_http_status(&m.probe_url("/healthz"), 200, T).expect("serves before crashing");
    assert!(wait_pid_gone(pid, T), "crashes");
    let pid2 = sim
        .wait_for_new_argv(&m.argv, &[pid], T)
        .expect("restarted");
    assert!(wait_pid_gone(pid2, T), "crashes again");
    assert!(wait_until(T, || sim.events("exit", "kube-scheduler").len() >= 2));
    let exits = sim.events("exit", "kube-scheduler");
    assert!(
        exits.iter().all(|l| l.contains("status=exit-code=2")),
        "{exits:?}"
    );
    assert!(sim.pod_log("kube-scheduler").contains("crash-after-ms"));
}

#[test]
fn removed_manifest_kills_the_pod_and_sigkill_follows_an_ignored_sigterm() {
    let kd = KubeDir::new();
    let m = manifests::scheduler(&kd, free_port());
    let sim = Sim::start_with(
        &kd.manifests(),
        SimConfig {
            kill_grace: Duration::from_millis(800),
            ..SimConfig::default()
        },
    );
    sim.set_behavior("kube-scheduler", "ignore-sigterm\n");
    kd.install(&m);
    let pid = sim.wait_for_argv(&m.argv, T).expect("started");
    std::fs::remove_file(kd.manifest_path(&m.file_name)).unwrap();
    assert!(wait_pid_gone(pid, T));
    let kills = sim.events("kill", "kube-scheduler");
    assert!(kills[0].contains("signal=SIGTERM") && kills[0].contains("reason=pod-removed"));
    assert!(kills[1].contains("signal=SIGKILL"), "{kills:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(sim.children().is_empty());
}

#[test]
fn unparseable_manifest_keeps_the_old_pod_until_the_relist() {
    let kd = KubeDir::new();
    let m = manifests::scheduler(&kd, free_port());
    kd.install(&m);
    let sim = Sim::start_with(
        &kd.manifests(),
        SimConfig {
            relist: Some(Duration::from_millis(2500)),
            ..SimConfig::default()
        },
    );
    let pid = sim.wait_for_argv(&m.argv, T).expect("started");
    kd.write_manifest(&m.file_name, "apiVersion: v1\nkind: Pod\nspec: [unclosed\n");
    assert!(sim.wait_for_log(|l| l.contains(" parse-error "), T));
    std::thread::sleep(Duration::from_millis(1000));
    assert!(pid_alive(pid), "old pod kept while the file does not parse");
    // The kubelet's periodic relist drops it.
    assert!(wait_pid_gone(pid, T));
    assert!(sim.events("kill", "kube-scheduler")[0].contains("reason=pod-removed"));
    // A good manifest again: a new pod.
    kd.install(&m);
    sim.wait_for_new_argv(&m.argv, &[pid], T).expect("back");
}

#[test]
fn real_etcd_pod_becomes_healthy() {
    if !etcd_or_skip("real_etcd_pod_becomes_healthy") {
        return;
    }
    let kd = KubeDir::new();
    let m = manifests::etcd(&kd, free_port(), free_port(), free_port());
    kd.install(&m);
    let sim = Sim::start(&kd.manifests(), Duration::ZERO);
    let pid = sim.wait_for_argv(&m.argv, T).expect("etcd started");
    assert_eq!(cmdline(pid).unwrap()[0], "etcd");
    let body = wait_http_status(
        &m.probe_url("/health?serializable=false"),
        200,
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("etcd /health: {e}\n{}", sim.pod_log("etcd")));
    assert!(body.contains("\"health\":\"true\""), "{body}");
    let (st, _) = http_get(
        &m.probe_url("/health?exclude=NOSPACE&serializable=true"),
        &[],
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(st, 200);
    // Client port: TLS with client-cert auth (no cert: handshake refused or 4xx).
    let client_url = m
        .argv
        .iter()
        .find_map(|a| a.strip_prefix("--advertise-client-urls="))
        .unwrap()
        .to_string();
    let r = http_get(&format!("{client_url}/health"), &[], Duration::from_secs(5));
    assert!(!matches!(r, Ok((200, _))), "{r:?}");
}

#[test]
fn sigterm_to_the_sim_stops_its_pods() {
    let kd = KubeDir::new();
    let a = manifests::apiserver(&kd, free_port(), &[]);
    let s = manifests::scheduler(&kd, free_port());
    kd.install(&a);
    kd.install(&s);
    let mut sim = Sim::start(&kd.manifests(), Duration::ZERO);
    let pa = sim.wait_for_argv(&a.argv, T).expect("apiserver");
    let ps = sim.wait_for_argv(&s.argv, T).expect("scheduler");
    let st = sim.terminate(Duration::from_secs(10)).expect("status");
    assert!(st.success(), "sim exit status {st}");
    assert!(!pid_alive(pa) && !pid_alive(ps));
    let log = sim.log_text();
    assert!(log.contains(" shutdown reason=signal"), "{log}");
    assert!(log.contains(" sim-exit "), "{log}");
}

#[test]
fn pods_die_with_a_killed_sim() {
    let kd = KubeDir::new();
    let s = manifests::scheduler(&kd, free_port());
    kd.install(&s);
    let sim = Sim::start(&kd.manifests(), Duration::ZERO);
    let ps = sim.wait_for_argv(&s.argv, T).expect("scheduler");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sim.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(wait_pid_gone(ps, T), "pod survived its kubelet_sim");
}

/// Every flag the CIS remediations set is known to the fake components, so a fully hardened
/// control plane comes up (and the gate's tests can tell a bad edit from a fake's gap).
#[test]
fn cis_hardened_control_plane_comes_up() {
    let kd = KubeDir::new();
    let audit_policy = kd.write(
        "audit-policy.yaml",
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n",
    );
    let encryption = kd.write(
        "enc/encryption-config.yaml",
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n      - name: key1\n        secret: c2VjcmV0IGlzIHNlY3VyZSwgb3IgaXMgaXQ/Cg==\n  - identity: {}\n",
    );
    let admission = kd.write(
        "admission.yaml",
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: EventRateLimit\n  configuration:\n    apiVersion: eventratelimit.admission.k8s.io/v1alpha1\n    kind: Configuration\n    limits:\n    - type: Server\n      qps: 50\n      burst: 100\n",
    );
    let audit_log = kd.node_root().join("var/log/apiserver/audit.log");
    let flags = [
        "--anonymous-auth=false".to_string(),
        "--profiling=false".to_string(),
        format!("--audit-log-path={}", audit_log.display()),
        "--audit-log-maxage=30".to_string(),
        "--audit-log-maxbackup=10".to_string(),
        "--audit-log-maxsize=100".to_string(),
        format!("--audit-policy-file={}", audit_policy.display()),
        "--request-timeout=300s".to_string(),
        "--service-account-lookup=true".to_string(),
        "--service-account-extend-token-expiration=false".to_string(),
        format!("--kubelet-certificate-authority={}", kd.pki().join("ca.crt").display()),
        "--enable-admission-plugins=NodeRestriction,AlwaysPullImages,DenyServiceExternalIPs,EventRateLimit".to_string(),
        format!("--admission-control-config-file={}", admission.display()),
        format!("--encryption-provider-config={}", encryption.display()),
        "--tls-cipher-suites=TLS_AES_128_GCM_SHA256,TLS_AES_256_GCM_SHA384,TLS_CHACHA20_POLY1305_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_string(),
        "--strict-transport-security-directives=max-age=31536000,includeSubDomains,preload".to_string(),
    ];
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let api = manifests::apiserver(&kd, free_port(), &flag_refs);
    let cm = manifests::controller_manager(&kd, free_port()).with_flags(&[
        "--terminated-pod-gc-threshold=10",
        "--profiling=false",
        "--use-service-account-credentials=true",
        "--feature-gates=RotateKubeletServerCertificate=true",
        "--bind-address=127.0.0.1",
    ]);
    let sch = manifests::scheduler(&kd, free_port())
        .with_flags(&["--profiling=false", "--bind-address=127.0.0.1"]);
    for m in [&api, &cm, &sch] {
        kd.install(m);
    }
    let sim = Sim::start(&kd.manifests(), Duration::ZERO);
    for m in [&api, &cm, &sch] {
        sim.wait_for_argv(&m.argv, T)
            .unwrap_or_else(|| panic!("{} did not start", m.name));
    }
    wait_http_status(&cm.probe_url("/healthz"), 200, T).expect("kcm");
    wait_http_status(&sch.probe_url("/healthz"), 200, T).expect("scheduler");
    assert!(wait_until(T, || {
        http_get(
            &api.probe_url("/readyz"),
            &[("Authorization", "Bearer t")],
            Duration::from_secs(3),
        )
        .is_ok_and(|(s, _)| s == 200)
    }));
    assert!(audit_log.exists());
    for name in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        assert!(sim.events("exit", name).is_empty(), "{}", sim.pod_log(name));
    }

    // EventRateLimit without its admission configuration: the real apiserver refuses to start.
    let broken = api.without_flag("--admission-control-config-file");
    kd.install(&broken);
    assert!(wait_until(T, || !sim
        .events("exit", "kube-apiserver")
        .is_empty()));
    assert!(sim
        .pod_log("kube-apiserver")
        .contains("couldn't init admission plugin \"EventRateLimit\""));
}
