//! A stand-in for kube-apiserver, kube-controller-manager and kube-scheduler (v1.30), for
//! end-to-end tests of the health gate. Which one it is comes from basename(argv[0]), so it
//! is run with `arg0` set to the component name (as `examples/kubelet_sim.rs` does).
//!
//! Like the real binaries it
//! * parses its flags as pflag does (`--name=value`, `--name value`, bare boolean `--name`,
//!   `_` = `-` in names, `-v` shorthand), knows each component's flag set (every flag kubeadm
//!   writes, every flag the CIS benchmark remediations set, and most of the rest), and exits 1
//!   with `Error: unknown flag: --x` on an unknown one (flags removed from Kubernetes, e.g.
//!   `--insecure-port`, `--port`, `--address`, are unknown), and on a malformed bool, int,
//!   duration or IP value;
//! * exits 1 with `open PATH: no such file or directory` when a flag naming an input file
//!   names a missing file (certificates, keys, kubeconfigs, config files);
//! * exits 1 on a few semantic errors kubeadm users hit when hardening: an unknown admission
//!   plugin (`PodSecurityPolicy` and `SecurityContextDeny` are gone in 1.30), `EventRateLimit`
//!   or `ImagePolicyWebhook` without an `--admission-control-config-file` that configures it,
//!   an unknown `--authorization-mode`, an unknown TLS cipher suite, a missing required
//!   kube-apiserver flag;
//! * serves HTTPS (self-signed certificate made at start-up) on `--bind-address` (default
//!   0.0.0.0) : `--secure-port` (defaults 6443, 10257, 10259): `/livez`, `/readyz`,
//!   `/healthz` (and sub-paths) answer 200 `ok`; other paths 403 for anonymous, 404 otherwise.
//!   kube-apiserver with `--anonymous-auth=false` answers 401 to every request that has
//!   neither a client certificate nor an `Authorization: Bearer` token. A plain-HTTP request
//!   gets Go's 400 "Client sent an HTTP request to an HTTPS server.".
//!
//! Test hooks are not flags (the argv must stay realistic): if `$FAKE_COMPONENT_BEHAVIOR_DIR/
//! <component>.behavior` exists at start-up, each of its lines is one of
//! ```text
//! crash-after-ms N    exit 2 N ms after start-up (after serving)
//! slow-start-ms N     do not listen for the first N ms
//! ready-after-ms N    /readyz answers 500 for the first N ms
//! fail-probes         every request gets 500
//! require-etcd        (kube-apiserver) /readyz and /livez answer 500 while no TCP
//!                     connection can be made to the first --etcd-servers URL
//! ignore-sigterm      SIGTERM is ignored (the kubelet has to SIGKILL)
//! exit-code N         exit N right after flag validation
//! refuse-flag NAME    exit 1 with `Error: unknown flag: --NAME` when the flag is given (a
//!                     flag a newer version removed; repeatable)
//! ```
//! (`#` starts a comment).

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Bool,
    Int,
    Float,
    Duration,
    Ip,
    Str,
    /// A string naming a file the component reads at start-up.
    File,
}

use Kind::*;

/// Flags every component has (component-base logs, metrics, feature gates...).
const COMMON: &[(&str, Kind)] = &[
    ("allow-metric-labels", Str),
    ("allow-metric-labels-manifest", File),
    ("disabled-metrics", Str),
    ("feature-gates", Str),
    ("help", Bool),
    ("log-flush-frequency", Duration),
    ("log-json-info-buffer-size", Str),
    ("log-json-split-stream", Bool),
    ("log-text-info-buffer-size", Str),
    ("log-text-split-stream", Bool),
    ("logging-format", Str),
    ("show-hidden-metrics-for-version", Str),
    ("v", Int),
    ("version", Str),
    ("vmodule", Str),
    // secure serving
    ("bind-address", Ip),
    ("cert-dir", Str),
    ("http2-max-streams-per-connection", Int),
    ("permit-address-sharing", Bool),
    ("permit-port-sharing", Bool),
    ("secure-port", Int),
    ("tls-cert-file", File),
    ("tls-cipher-suites", Str),
    ("tls-min-version", Str),
    ("tls-private-key-file", File),
    ("tls-sni-cert-key", Str),
    // authentication (apiserver's own, or delegated for the other two)
    ("client-ca-file", File),
    ("requestheader-allowed-names", Str),
    ("requestheader-client-ca-file", File),
    ("requestheader-extra-headers-prefix", Str),
    ("requestheader-group-headers", Str),
    ("requestheader-username-headers", Str),
    ("authentication-token-webhook-cache-ttl", Duration),
    ("authorization-webhook-cache-authorized-ttl", Duration),
    ("authorization-webhook-cache-unauthorized-ttl", Duration),
    ("contention-profiling", Bool),
    ("profiling", Bool),
];

const APISERVER: &[(&str, Kind)] = &[
    // generic
    ("advertise-address", Ip),
    ("aggregator-reject-forwarding-redirect", Bool),
    ("cloud-provider-gce-l7lb-src-cidrs", Str),
    ("cloud-provider-gce-lb-src-cidrs", Str),
    ("cors-allowed-origins", Str),
    ("debug-socket-path", Str),
    ("default-not-ready-toleration-seconds", Int),
    ("default-unreachable-toleration-seconds", Int),
    ("enable-priority-and-fairness", Bool),
    ("external-hostname", Str),
    ("goaway-chance", Float),
    ("livez-grace-period", Duration),
    ("max-mutating-requests-inflight", Int),
    ("max-requests-inflight", Int),
    ("min-request-timeout", Int),
    ("request-timeout", Duration),
    ("shutdown-delay-duration", Duration),
    ("shutdown-send-retry-after", Bool),
    ("shutdown-watch-termination-grace-period", Duration),
    ("storage-initialization-timeout", Duration),
    ("strict-transport-security-directives", Str),
    // etcd
    ("delete-collection-workers", Int),
    ("enable-garbage-collector", Bool),
    ("encryption-provider-config", File),
    ("encryption-provider-config-automatic-reload", Bool),
    ("etcd-cafile", File),
    ("etcd-certfile", File),
    ("etcd-compaction-interval", Duration),
    ("etcd-count-metric-poll-period", Duration),
    ("etcd-db-metric-poll-interval", Duration),
    ("etcd-healthcheck-timeout", Duration),
    ("etcd-keyfile", File),
    ("etcd-prefix", Str),
    ("etcd-readycheck-timeout", Duration),
    ("etcd-servers", Str),
    ("etcd-servers-overrides", Str),
    ("lease-reuse-duration-seconds", Int),
    ("storage-backend", Str),
    ("storage-media-type", Str),
    ("watch-cache", Bool),
    ("watch-cache-sizes", Str),
    // auditing
    ("audit-log-batch-buffer-size", Int),
    ("audit-log-batch-max-size", Int),
    ("audit-log-batch-max-wait", Duration),
    ("audit-log-batch-throttle-burst", Int),
    ("audit-log-batch-throttle-enable", Bool),
    ("audit-log-batch-throttle-qps", Float),
    ("audit-log-compress", Bool),
    ("audit-log-format", Str),
    ("audit-log-maxage", Int),
    ("audit-log-maxbackup", Int),
    ("audit-log-maxsize", Int),
    ("audit-log-mode", Str),
    ("audit-log-path", Str),
    ("audit-log-truncate-enabled", Bool),
    ("audit-log-truncate-max-batch-size", Int),
    ("audit-log-truncate-max-event-size", Int),
    ("audit-log-version", Str),
    ("audit-policy-file", File),
    ("audit-webhook-batch-buffer-size", Int),
    ("audit-webhook-batch-max-size", Int),
    ("audit-webhook-batch-max-wait", Duration),
    ("audit-webhook-batch-throttle-burst", Int),
    ("audit-webhook-batch-throttle-enable", Bool),
    ("audit-webhook-batch-throttle-qps", Float),
    ("audit-webhook-config-file", File),
    ("audit-webhook-initial-backoff", Duration),
    ("audit-webhook-mode", Str),
    ("audit-webhook-truncate-enabled", Bool),
    ("audit-webhook-truncate-max-batch-size", Int),
    ("audit-webhook-truncate-max-event-size", Int),
    ("audit-webhook-version", Str),
    // authentication
    ("anonymous-auth", Bool),
    ("api-audiences", Str),
    ("authentication-config", File),
    ("authentication-token-webhook-config-file", File),
    ("authentication-token-webhook-version", Str),
    ("enable-bootstrap-token-auth", Bool),
    ("oidc-ca-file", File),
    ("oidc-client-id", Str),
    ("oidc-groups-claim", Str),
    ("oidc-groups-prefix", Str),
    ("oidc-issuer-url", Str),
    ("oidc-required-claim", Str),
    ("oidc-signing-algs", Str),
    ("oidc-username-claim", Str),
    ("oidc-username-prefix", Str),
    ("service-account-extend-token-expiration", Bool),
    ("service-account-issuer", Str),
    ("service-account-jwks-uri", Str),
    ("service-account-key-file", File),
    ("service-account-lookup", Bool),
    ("service-account-max-token-expiration", Duration),
    ("token-auth-file", File),
    // authorization
    ("authorization-config", File),
    ("authorization-mode", Str),
    ("authorization-policy-file", File),
    ("authorization-webhook-config-file", File),
    ("authorization-webhook-version", Str),
    // API enablement, egress, admission
    ("runtime-config", Str),
    ("egress-selector-config-file", File),
    ("admission-control", Str),
    ("admission-control-config-file", File),
    ("disable-admission-plugins", Str),
    ("enable-admission-plugins", Str),
    // traces
    ("tracing-config-file", File),
    // misc
    ("allow-privileged", Bool),
    ("enable-aggregator-routing", Bool),
    ("endpoint-reconciler-type", Str),
    ("event-ttl", Duration),
    ("kubelet-certificate-authority", File),
    ("kubelet-client-certificate", File),
    ("kubelet-client-key", File),
    ("kubelet-preferred-address-types", Str),
    ("kubelet-timeout", Duration),
    ("kubernetes-service-node-port", Int),
    ("max-connection-bytes-per-sec", Int),
    ("peer-advertise-ip", Str),
    ("peer-advertise-port", Str),
    ("peer-ca-file", File),
    ("proxy-client-cert-file", File),
    ("proxy-client-key-file", File),
    ("service-account-signing-key-file", File),
    ("service-cluster-ip-range", Str),
    ("service-node-port-range", Str),
];

/// Flags the controller-manager and the scheduler share (generic component options).
const DELEGATED: &[(&str, Kind)] = &[
    ("authentication-kubeconfig", File),
    ("authentication-skip-lookup", Bool),
    ("authentication-tolerate-lookup-failure", Bool),
    ("authorization-always-allow-paths", Str),
    ("authorization-kubeconfig", File),
    ("kube-api-burst", Int),
    ("kube-api-content-type", Str),
    ("kube-api-qps", Float),
    ("kubeconfig", File),
    ("leader-elect", Bool),
    ("leader-elect-lease-duration", Duration),
    ("leader-elect-renew-deadline", Duration),
    ("leader-elect-resource-lock", Str),
    ("leader-elect-resource-name", Str),
    ("leader-elect-resource-namespace", Str),
    ("leader-elect-retry-period", Duration),
    ("master", Str),
];

const CONTROLLER_MANAGER: &[(&str, Kind)] = &[
    ("allocate-node-cidrs", Bool),
    ("attach-detach-reconcile-sync-period", Duration),
    ("cidr-allocator-type", Str),
    ("cloud-config", File),
    ("cloud-provider", Str),
    ("cluster-cidr", Str),
    ("cluster-name", Str),
    ("cluster-signing-cert-file", File),
    ("cluster-signing-duration", Duration),
    ("cluster-signing-key-file", File),
    ("cluster-signing-kube-apiserver-client-cert-file", File),
    ("cluster-signing-kube-apiserver-client-key-file", File),
    ("cluster-signing-kubelet-client-cert-file", File),
    ("cluster-signing-kubelet-client-key-file", File),
    ("cluster-signing-kubelet-serving-cert-file", File),
    ("cluster-signing-kubelet-serving-key-file", File),
    ("cluster-signing-legacy-unknown-cert-file", File),
    ("cluster-signing-legacy-unknown-key-file", File),
    ("concurrent-cron-job-syncs", Int),
    ("concurrent-deployment-syncs", Int),
    ("concurrent-endpoint-syncs", Int),
    ("concurrent-ephemeralvolume-syncs", Int),
    ("concurrent-gc-syncs", Int),
    ("concurrent-horizontal-pod-autoscaler-syncs", Int),
    ("concurrent-job-syncs", Int),
    ("concurrent-namespace-syncs", Int),
    ("concurrent-rc-syncs", Int),
    ("concurrent-replicaset-syncs", Int),
    ("concurrent-resource-quota-syncs", Int),
    ("concurrent-service-endpoint-syncs", Int),
    ("concurrent-service-syncs", Int),
    ("concurrent-serviceaccount-token-syncs", Int),
    ("concurrent-statefulset-syncs", Int),
    ("concurrent-ttl-after-finished-syncs", Int),
    ("concurrent-validating-admission-policy-status-syncs", Int),
    ("configure-cloud-routes", Bool),
    ("controller-start-interval", Duration),
    ("controllers", Str),
    ("disable-attach-detach-reconcile-sync", Bool),
    ("disable-force-detach-on-timeout", Bool),
    ("enable-dynamic-provisioning", Bool),
    ("enable-garbage-collector", Bool),
    ("enable-hostpath-provisioner", Bool),
    ("enable-leader-migration", Bool),
    ("endpoint-updates-batch-period", Duration),
    ("endpointslice-updates-batch-period", Duration),
    ("external-cloud-volume-plugin", Str),
    ("flex-volume-plugin-dir", Str),
    (
        "horizontal-pod-autoscaler-cpu-initialization-period",
        Duration,
    ),
    (
        "horizontal-pod-autoscaler-downscale-stabilization",
        Duration,
    ),
    (
        "horizontal-pod-autoscaler-initial-readiness-delay",
        Duration,
    ),
    ("horizontal-pod-autoscaler-sync-period", Duration),
    ("horizontal-pod-autoscaler-tolerance", Float),
    ("large-cluster-size-threshold", Int),
    ("leader-migration-config", File),
    ("legacy-service-account-token-clean-up-period", Duration),
    ("max-endpoints-per-slice", Int),
    ("min-resync-period", Duration),
    ("mirroring-concurrent-service-endpoint-syncs", Int),
    ("mirroring-endpointslice-updates-batch-period", Duration),
    ("mirroring-max-endpoints-per-subset", Int),
    ("namespace-sync-period", Duration),
    ("node-cidr-mask-size", Int),
    ("node-cidr-mask-size-ipv4", Int),
    ("node-cidr-mask-size-ipv6", Int),
    ("node-eviction-rate", Float),
    ("node-monitor-grace-period", Duration),
    ("node-monitor-period", Duration),
    ("node-startup-grace-period", Duration),
    ("pv-recycler-increment-timeout-nfs", Int),
    ("pv-recycler-minimum-timeout-hostpath", Int),
    ("pv-recycler-minimum-timeout-nfs", Int),
    ("pv-recycler-pod-template-filepath-hostpath", File),
    ("pv-recycler-pod-template-filepath-nfs", File),
    ("pv-recycler-timeout-increment-hostpath", Int),
    ("pvclaimbinder-sync-period", Duration),
    ("resource-quota-sync-period", Duration),
    ("root-ca-file", File),
    ("route-reconciliation-period", Duration),
    ("secondary-node-eviction-rate", Float),
    ("service-account-private-key-file", File),
    ("service-cluster-ip-range", Str),
    ("terminated-pod-gc-threshold", Int),
    ("unhealthy-zone-threshold", Float),
    ("use-service-account-credentials", Bool),
    ("volume-host-allow-local-loopback", Bool),
    ("volume-host-cidr-denylist", Str),
];

const SCHEDULER: &[(&str, Kind)] = &[
    ("config", File),
    ("pod-max-in-unschedulable-pods-duration", Duration),
    ("write-config-to", Str),
];

const ADMISSION_PLUGINS: &[&str] = &[
    "AlwaysAdmit",
    "AlwaysDeny",
    "AlwaysPullImages",
    "CertificateApproval",
    "CertificateSigning",
    "CertificateSubjectRestriction",
    "ClusterTrustBundleAttest",
    "DefaultIngressClass",
    "DefaultStorageClass",
    "DefaultTolerationSeconds",
    "DenyServiceExternalIPs",
    "EventRateLimit",
    "ExtendedResourceToleration",
    "ImagePolicyWebhook",
    "LimitPodHardAntiAffinityTopology",
    "LimitRanger",
    "MutatingAdmissionWebhook",
    "NamespaceAutoProvision",
    "NamespaceExists",
    "NamespaceLifecycle",
    "NodeRestriction",
    "OwnerReferencesPermissionEnforcement",
    "PersistentVolumeClaimResize",
    "PersistentVolumeLabel",
    "PodNodeSelector",
    "PodSecurity",
    "PodTolerationRestriction",
    "Priority",
    "ResourceQuota",
    "RuntimeClass",
    "ServiceAccount",
    "StorageObjectInUseProtection",
    "TaintNodesByCondition",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
];

const AUTHORIZATION_MODES: &[&str] = &[
    "AlwaysAllow",
    "AlwaysDeny",
    "ABAC",
    "Webhook",
    "RBAC",
    "Node",
];

/// Go's crypto/tls names (secure and insecure) that component-base accepts.
const CIPHER_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_RSA_WITH_RC4_128_SHA",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Component {
    ApiServer,
    ControllerManager,
    Scheduler,
}

impl Component {
    fn from_argv0(argv0: &str) -> Option<Component> {
        match Path::new(argv0).file_name()?.to_str()? {
            "kube-apiserver" => Some(Component::ApiServer),
            "kube-controller-manager" => Some(Component::ControllerManager),
            "kube-scheduler" => Some(Component::Scheduler),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Component::ApiServer => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
            Component::Scheduler => "kube-scheduler",
        }
    }
    fn default_port(self) -> u16 {
        match self {
            Component::ApiServer => 6443,
            Component::ControllerManager => 10257,
            Component::Scheduler => 10259,
        }
    }
    fn flags(self) -> BTreeMap<&'static str, Kind> {
        let own: &[&[(&str, Kind)]] = match self {
            Component::ApiServer => &[COMMON, APISERVER],
            Component::ControllerManager => &[COMMON, DELEGATED, CONTROLLER_MANAGER],
            Component::Scheduler => &[COMMON, DELEGATED, SCHEDULER],
        };
        own.iter().flat_map(|t| t.iter().copied()).collect()
    }
}

/// Prints like cobra does and exits.
fn fail(code: i32, msg: &str) -> ! {
    eprintln!("Error: {msg}");
    std::process::exit(code);
}

fn log(msg: &str) {
    eprintln!("{} {msg}", support::stamp());
}

fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn parse_go_int(v: &str) -> Option<i64> {
    let (neg, d) = match v.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, v.strip_prefix('+').unwrap_or(v)),
    };
    let d = d.replace('_', "");
    let n = if let Some(h) = d.strip_prefix("0x").or_else(|| d.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(b) = d.strip_prefix("0b").or_else(|| d.strip_prefix("0B")) {
        i64::from_str_radix(b, 2).ok()?
    } else if let Some(o) = d.strip_prefix("0o").or_else(|| d.strip_prefix("0O")) {
        i64::from_str_radix(o, 8).ok()?
    } else if d.len() > 1 && d.starts_with('0') {
        i64::from_str_radix(&d[1..], 8).ok()?
    } else {
        d.parse::<i64>().ok()?
    };
    Some(if neg { -n } else { n })
}

/// Go's time.ParseDuration syntax: "0", or [-+]? (decimal unit)+ with unit ns|us|µs|ms|s|m|h.
fn valid_go_duration(v: &str) -> bool {
    let s = v.strip_prefix(['-', '+']).unwrap_or(v);
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        if !matches!(
            &rest[..unit_len],
            "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h"
        ) {
            return false;
        }
        rest = &rest[unit_len..];
    }
    true
}

/// pflag-like parsing: returns flag name → values (in order of appearance).
fn parse_flags(component: Component, args: &[String]) -> BTreeMap<String, Vec<String>> {
    let known = component.flags();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut positional: Vec<String> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let (name, inline): (String, Option<String>) = if arg == "--" {
            positional.extend(args[i..].iter().cloned());
            break;
        } else if let Some(body) = arg.strip_prefix("--") {
            if body.starts_with('-') || body.starts_with('=') {
                fail(1, &format!("bad flag syntax: {arg}"));
            }
            match body.split_once('=') {
                Some((n, v)) => (n.replace('_', "-"), Some(v.to_string())),
                None => (body.replace('_', "-"), None),
            }
        } else if let Some(body) = arg.strip_prefix('-').filter(|b| !b.is_empty()) {
            // Shorthands: only -v (klog verbosity) and -h exist.
            let c = body.chars().next().unwrap_or('?');
            let rest = &body[c.len_utf8()..];
            match c {
                'v' => {
                    let v = if let Some(v) = rest.strip_prefix('=') {
                        v.to_string()
                    } else if !rest.is_empty() {
                        rest.to_string()
                    } else if i < args.len() {
                        i += 1;
                        args[i - 1].clone()
                    } else {
                        fail(1, "flag needs an argument: 'v' in -v");
                    };
                    ("v".to_string(), Some(v))
                }
                'h' => ("help".to_string(), Some("true".to_string())),
                _ => fail(1, &format!("unknown shorthand flag: '{c}' in {arg}")),
            }
        } else {
            positional.push(arg.clone());
            continue;
        };
        let Some(&kind) = known.get(name.as_str()) else {
            fail(1, &format!("unknown flag: --{name}"));
        };
        let value = match (inline, kind) {
            (Some(v), _) => v,
            (None, Bool) => "true".to_string(),
            (None, _) if i < args.len() => {
                i += 1;
                args[i - 1].clone()
            }
            (None, _) => fail(1, &format!("flag needs an argument: --{name}")),
        };
        let bad = |why: String| -> ! {
            fail(
                1,
                &format!("invalid argument {value:?} for \"--{name}\" flag: {why}"),
            );
        };
        match kind {
            Bool if parse_go_bool(&value).is_none() => bad(format!(
                "strconv.ParseBool: parsing {value:?}: invalid syntax"
            )),
            Int if parse_go_int(&value).is_none() => bad(format!(
                "strconv.ParseInt: parsing {value:?}: invalid syntax"
            )),
            Float if value.parse::<f64>().is_err() => bad(format!(
                "strconv.ParseFloat: parsing {value:?}: invalid syntax"
            )),
            Duration if !valid_go_duration(&value) => {
                bad(format!("time: invalid duration {value:?}"))
            }
            Ip if value.parse::<IpAddr>().is_err() => bad(format!("failed to parse IP: {value:?}")),
            _ => {}
        }
        out.entry(name).or_default().push(value);
    }
    if positional.iter().any(|a| !a.is_empty()) {
        fail(
            1,
            &format!(
                "{:?} does not take any arguments, got {:?}",
                component.name(),
                positional
            ),
        );
    }
    out
}

fn last<'a>(flags: &'a BTreeMap<String, Vec<String>>, name: &str) -> Option<&'a str> {
    flags.get(name).and_then(|v| v.last()).map(String::as_str)
}

fn list(flags: &BTreeMap<String, Vec<String>>, name: &str) -> Vec<String> {
    flags
        .get(name)
        .into_iter()
        .flatten()
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn check_file(path: &str) {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => fail(1, &format!("read {path}: is a directory")),
        Ok(_) => {
            if let Err(e) = std::fs::File::open(path) {
                fail(1, &format!("open {path}: {}", go_err(&e)));
            }
        }
        Err(e) => fail(1, &format!("open {path}: {}", go_err(&e))),
    }
}

fn go_err(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// The semantic checks of the real binaries that hardening edits typically trip.
fn validate(component: Component, flags: &BTreeMap<String, Vec<String>>) {
    let known = component.flags();
    for (name, values) in flags {
        if known.get(name.as_str()) == Some(&File) {
            for v in values.iter().filter(|v| !v.is_empty()) {
                check_file(v);
            }
        }
    }
    for suite in list(flags, "tls-cipher-suites") {
        if !CIPHER_SUITES.contains(&suite.as_str()) {
            fail(
                1,
                &format!("cipher suite {suite} not supported or doesn't exist"),
            );
        }
    }
    if let Some(p) = last(flags, "secure-port") {
        let p = parse_go_int(p).unwrap_or(-1);
        let lowest = if component == Component::ApiServer {
            1
        } else {
            0
        };
        if !(lowest..=65535).contains(&p) {
            fail(
                1,
                &format!("--secure-port {p} must be between {lowest} and 65535, inclusive"),
            );
        }
    }
    if let Some(gates) = last(flags, "feature-gates") {
        for g in gates.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            match g.split_once('=') {
                Some((_, v)) if parse_go_bool(v.trim()).is_some() => {}
                _ => fail(1, &format!("invalid argument {gates:?} for \"--feature-gates\" flag: missing bool value for {g}")),
            }
        }
    }
    if component != Component::ApiServer {
        return;
    }
    let mut missing: Vec<&str> = Vec::new();
    if list(flags, "etcd-servers").is_empty() {
        fail(1, "[--etcd-servers must be specified]");
    }
    for required in ["service-account-issuer", "service-account-signing-key-file"] {
        if last(flags, required).is_none_or(str::is_empty) {
            missing.push(required);
        }
    }
    if !missing.is_empty() {
        fail(
            1,
            &format!(
                "[{}]",
                missing
                    .iter()
                    .map(|m| format!("--{m} is required"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    let enabled = list(flags, "enable-admission-plugins");
    let disabled = list(flags, "disable-admission-plugins");
    for (flag, plugins) in [
        ("enable-admission-plugins", &enabled),
        ("disable-admission-plugins", &disabled),
    ] {
        if let Some(p) = plugins
            .iter()
            .find(|p| !ADMISSION_PLUGINS.contains(&p.as_str()))
        {
            fail(1, &format!("{flag} plugin \"{p}\" is unknown"));
        }
    }
    let both: Vec<&String> = enabled.iter().filter(|p| disabled.contains(p)).collect();
    if !both.is_empty() {
        fail(
            1,
            &format!(
                "{both:?} in enable-admission-plugins and disable-admission-plugins overlapped"
            ),
        );
    }
    let admission_config = last(flags, "admission-control-config-file")
        .filter(|p| !p.is_empty())
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    if enabled.iter().any(|p| p == "EventRateLimit") && !admission_config.contains("EventRateLimit")
    {
        fail(
            1,
            "failed to initialize admission: couldn't init admission plugin \"EventRateLimit\": limits: Invalid value: []eventratelimit.Limit(nil): must not be empty",
        );
    }
    if enabled.iter().any(|p| p == "ImagePolicyWebhook")
        && !admission_config.contains("ImagePolicyWebhook")
    {
        fail(
            1,
            "failed to initialize admission: couldn't init admission plugin \"ImagePolicyWebhook\": no config specified",
        );
    }
    let modes = list(flags, "authorization-mode");
    for m in &modes {
        if !AUTHORIZATION_MODES.contains(&m.as_str()) {
            fail(1, &format!("authorization-mode {m:?} is not a valid mode"));
        }
    }
    if modes.iter().any(|m| m == "ABAC") && last(flags, "authorization-policy-file").is_none() {
        fail(
            1,
            "authorization-mode ABAC's authorization policy file not passed",
        );
    }
    if modes.iter().any(|m| m == "Webhook")
        && last(flags, "authorization-webhook-config-file").is_none()
    {
        fail(
            1,
            "authorization-mode Webhook's authorization config file not passed",
        );
    }
    if !modes.is_empty() && last(flags, "authorization-config").is_some() {
        fail(
            1,
            "--authorization-config can not be specified when --authorization-mode is set",
        );
    }
}

// ---------------------------------------------------------------- behavior hooks

#[derive(Default, Debug)]
struct Behavior {
    crash_after: Option<Duration>,
    slow_start: Option<Duration>,
    ready_after: Option<Duration>,
    fail_probes: bool,
    require_etcd: bool,
    ignore_sigterm: bool,
    exit_code: Option<i32>,
    refuse_flags: Vec<String>,
}

fn read_behavior(component: Component) -> Behavior {
    let mut b = Behavior::default();
    let Some(dir) = std::env::var_os("FAKE_COMPONENT_BEHAVIOR_DIR") else {
        return b;
    };
    let path = Path::new(&dir).join(format!("{}.behavior", component.name()));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return b;
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        let (Some(word), arg) = (words.next(), words.next()) else {
            continue;
        };
        let ms = || Duration::from_millis(arg.and_then(|a| a.parse().ok()).unwrap_or(0));
        match word {
            "crash-after-ms" => b.crash_after = Some(ms()),
            "slow-start-ms" => b.slow_start = Some(ms()),
            "ready-after-ms" => b.ready_after = Some(ms()),
            "fail-probes" => b.fail_probes = true,
            "require-etcd" => b.require_etcd = true,
            "ignore-sigterm" => b.ignore_sigterm = true,
            "exit-code" => b.exit_code = arg.and_then(|a| a.parse().ok()),
            "refuse-flag" => b.refuse_flags.extend(arg.map(str::to_string)),
            other => log(&format!("behavior: ignoring unknown line {other:?}")),
        }
    }
    log(&format!("behavior from {}: {b:?}", path.display()));
    b
}

// ---------------------------------------------------------------- HTTPS server

/// Asks for a client certificate, accepts any (or none): enough to tell "has a client cert".
#[derive(Debug)]
struct AnyClientCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::server::danger::ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_config() -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("self-signed certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_client_cert_verifier(Arc::new(AnyClientCert(provider)))
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .expect("server certificate");
    Arc::new(config)
}

struct State {
    component: Component,
    anonymous_auth: bool,
    behavior: Behavior,
    started: Instant,
    etcd: Option<String>,
}

impl State {
    fn etcd_reachable(&self) -> bool {
        let Some(url) = &self.etcd else { return false };
        let hostport = url.split("://").nth(1).unwrap_or(url).trim_end_matches('/');
        let Ok(mut addrs) = hostport.to_socket_addrs() else {
            return false;
        };
        addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok())
    }

    /// Status and body for a request.
    fn respond(&self, path: &str, authenticated: bool) -> (u16, &'static str, String) {
        let status_json = |code: u16, reason: &str, message: &str| {
            format!(
                "{{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{{}},\"status\":\"Failure\",\"message\":{},\"reason\":\"{reason}\",\"code\":{code}}}\n",
                serde_json::to_string(message).unwrap_or_default()
            )
        };
        if !self.anonymous_auth && !authenticated {
            return (
                401,
                "application/json",
                status_json(401, "Unauthorized", "Unauthorized"),
            );
        }
        if self.behavior.fail_probes {
            return (
                500,
                "text/plain",
                "internal server error: fail-probes\n".into(),
            );
        }
        let base = path.split('?').next().unwrap_or("");
        let probe = ["/livez", "/readyz", "/healthz"]
            .iter()
            .find(|p| base == **p || base.starts_with(&format!("{p}/")));
        match probe {
            Some(&p) => {
                let elapsed = self.started.elapsed();
                if p == "/readyz" && self.behavior.ready_after.is_some_and(|d| elapsed < d) {
                    return (
                        500,
                        "text/plain",
                        "[-]fake-ready-after failed: not ready yet\nreadyz check failed\n".into(),
                    );
                }
                if self.behavior.require_etcd
                    && self.component == Component::ApiServer
                    && !self.etcd_reachable()
                {
                    let check = &p[1..];
                    return (
                        500,
                        "text/plain",
                        format!("[-]etcd failed: reason withheld\n{check} check failed\n"),
                    );
                }
                (200, "text/plain", "ok".into())
            }
            None if !authenticated => (
                403,
                "application/json",
                status_json(
                    403,
                    "Forbidden",
                    &format!("forbidden: User \"system:anonymous\" cannot get path \"{base}\""),
                ),
            ),
            None => (
                404,
                "application/json",
                status_json(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ),
            ),
        }
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Internal Server Error",
    }
}

fn handle(tcp: TcpStream, tls: Arc<rustls::ServerConfig>, state: Arc<State>) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(10)));
    // Go's server answers a plain-HTTP request on a TLS port with a 400.
    let mut first = [0u8; 1];
    match tcp.peek(&mut first) {
        Ok(1) if first[0] != 0x16 => {
            let mut tcp = tcp;
            let body = "Client sent an HTTP request to an HTTPS server.\n";
            let _ = write!(
                tcp,
                "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n{body}"
            );
            return;
        }
        Ok(1) => {}
        _ => return,
    }
    let Ok(conn) = rustls::ServerConnection::new(tls) else {
        return;
    };
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let bearer = lines.any(|l| {
        let Some((k, v)) = l.split_once(':') else {
            return false;
        };
        k.trim().eq_ignore_ascii_case("authorization")
            && v.trim()
                .strip_prefix("Bearer ")
                .is_some_and(|t| !t.trim().is_empty())
    });
    let client_cert = stream
        .conn
        .peer_certificates()
        .is_some_and(|c| !c.is_empty());
    let (code, ctype, body) = state.respond(&path, bearer || client_cert);
    let _ = write!(
        stream,
        "HTTP/1.1 {code} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-cache, private\r\nConnection: close\r\n\r\n{body}",
        reason(code),
        body.len()
    );
    let _ = stream.flush();
    stream.conn.send_close_notify();
    let _ = stream.flush();
}

fn main() {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let argv0 = argv.first().cloned().unwrap_or_default();
    let Some(component) = Component::from_argv0(&argv0) else {
        eprintln!(
            "fake_component: argv[0] {argv0:?} is not kube-apiserver, kube-controller-manager or kube-scheduler"
        );
        std::process::exit(1);
    };
    let flags = parse_flags(component, &argv[1..]);
    if last(&flags, "help").and_then(parse_go_bool) == Some(true) {
        println!("Usage of {}: (fake component)", component.name());
        std::process::exit(0);
    }
    if let Some(v) = last(&flags, "version") {
        if v != "false" {
            println!("Kubernetes v1.30.14");
            std::process::exit(0);
        }
    }
    validate(component, &flags);
    let behavior = read_behavior(component);
    if let Some(code) = behavior.exit_code {
        log(&format!("behavior: exit-code {code}"));
        std::process::exit(code);
    }
    if let Some(f) = behavior
        .refuse_flags
        .iter()
        .find(|f| last(&flags, f).is_some())
    {
        eprintln!("Error: unknown flag: --{f}");
        std::process::exit(1);
    }
    if behavior.ignore_sigterm {
        // SAFETY: installing SIG_IGN runs no code in the handler.
        unsafe {
            let _ = nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGTERM,
                nix::sys::signal::SigHandler::SigIgn,
            );
        }
    }
    log(&format!(
        "{} (fake) v1.30.14 pid {} argv {}",
        component.name(),
        std::process::id(),
        support::json_argv(&argv)
    ));
    for (k, v) in &flags {
        log(&format!("FLAG: --{k}={:?}", v.join(",")));
    }

    if let Some(path) = last(&flags, "audit-log-path").filter(|p| !p.is_empty() && *p != "-") {
        let p = Path::new(path);
        if let Some(parent) = p.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if let Err(e) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            fail(
                1,
                &format!("failed to create audit log: open {path}: {}", go_err(&e)),
            );
        }
    }

    let started = Instant::now();
    if let Some(d) = behavior.slow_start {
        log(&format!(
            "behavior: slow start, not listening for {} ms",
            d.as_millis()
        ));
        std::thread::sleep(d);
    }
    if let Some(d) = behavior.crash_after {
        let name = component.name();
        std::thread::spawn(move || {
            std::thread::sleep(d);
            eprintln!(
                "{} F {name}: behavior crash-after-ms reached, exiting 2",
                support::stamp()
            );
            std::process::exit(2);
        });
    }

    let port = last(&flags, "secure-port")
        .and_then(parse_go_int)
        .map(|p| p as u16)
        .unwrap_or(component.default_port());
    let bind: IpAddr = last(&flags, "bind-address")
        .and_then(|a| a.parse().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let anonymous_auth = component != Component::ApiServer
        || last(&flags, "anonymous-auth").and_then(parse_go_bool) != Some(false);
    let state = Arc::new(State {
        component,
        anonymous_auth,
        etcd: list(&flags, "etcd-servers").into_iter().next(),
        behavior,
        started,
    });
    if port == 0 {
        log("--secure-port=0: not serving");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    let tls = tls_config();
    let addr = SocketAddr::new(bind, port);
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| {
        fail(
            1,
            &format!("failed to create listener: failed to listen on {addr}: listen tcp {addr}: bind: {e}"),
        )
    });
    log(&format!("Serving securely on {addr}"));
    for conn in listener.incoming() {
        let Ok(tcp) = conn else { continue };
        let (tls, state) = (tls.clone(), state.clone());
        std::thread::spawn(move || handle(tcp, tls, state));
    }
}
