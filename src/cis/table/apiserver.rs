//! Section 1.2: API server (kube-bench cis-1.12 master.yaml).

use super::{CIPHERS_1_12, STRONG_CIPHERS};
use crate::cis::rules::*;

pub(super) static API_SERVER: [Check; 30] = [
    Check {
        id: "1.2.1",
        text: "Ensure that the --anonymous-auth argument is set to false (Manual)",
        kind: CheckType::Manual,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("--anonymous-auth", Op::Eq, "false")],
        }),
        remediation: "--anonymous-auth=false",
        fix: &[Remediation::SetFlag {
            name: "anonymous-auth",
            value: "false",
        }],
        dangerous: Some(
            "anonymous requests get 401: the kubeadm liveness/readiness/startup \
            probes of kube-apiserver fail and the pod restarts in a loop, and kubeadm join \
            discovery (anonymous read of kube-public/cluster-info) fails. On Kubernetes >= 1.32 \
            prefer, instead of this flag, an AuthenticationConfiguration \
            (--authentication-config=FILE, mounted into the pod) that allows anonymous \
            requests only to the health endpoints: `apiVersion: \
            apiserver.config.k8s.io/v1beta1`, `kind: AuthenticationConfiguration`, \
            `anonymous: {enabled: true, conditions: [{path: /livez}, {path: /readyz}, \
            {path: /healthz}]}`",
        ),
    },
    Check {
        id: "1.2.2",
        text: "Ensure that the --token-auth-file parameter is not set (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[absent("--token-auth-file")],
        }),
        remediation: "remove --token-auth-file",
        fix: &[Remediation::RemoveFlag {
            name: "token-auth-file",
        }],
        dangerous: None,
    },
    Check {
        id: "1.2.3",
        text: "Ensure that the --DenyServiceExternalIPs is set (Manual)",
        kind: CheckType::Manual,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::Or,
            items: &[cmp(
                "--enable-admission-plugins",
                Op::Has,
                "DenyServiceExternalIPs",
            )],
        }),
        remediation: "add DenyServiceExternalIPs to --enable-admission-plugins",
        fix: &[Remediation::AddToList {
            flag: "enable-admission-plugins",
            item: "DenyServiceExternalIPs",
        }],
        dangerous: None,
    },
    Check {
        id: "1.2.4",
        text: "Ensure that the --kubelet-client-certificate and --kubelet-client-key arguments \
            are set as appropriate (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[
                present("--kubelet-client-certificate"),
                present("--kubelet-client-key"),
            ],
        }),
        remediation: "set --kubelet-client-certificate=<crt> and --kubelet-client-key=<key>",
        fix: &[Remediation::Manual(
            "set --kubelet-client-certificate and --kubelet-client-key to \
                the API server's kubelet client certificate and key (kubeadm: \
                /etc/kubernetes/pki/apiserver-kubelet-client.{crt,key})",
        )],
        dangerous: None,
    },
    Check {
        id: "1.2.5",
        text: "Ensure that the --kubelet-certificate-authority argument is set as appropriate \
            (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[present("--kubelet-certificate-authority")],
        }),
        remediation: "--kubelet-certificate-authority=<CA that signed the kubelet serving \
            certificates>, e.g. /etc/kubernetes/pki/ca.crt once kubelets use serverTLSBootstrap \
            and their CSRs are approved",
        fix: &[Remediation::SetFlag {
            name: "kubelet-certificate-authority",
            value: "/etc/kubernetes/pki/ca.crt",
        }],
        dangerous: Some(
            "kubeadm kubelet serving certificates are self-signed unless \
            serverTLSBootstrap is on and their CSRs are approved; otherwise logs, exec, attach \
            and port-forward fail with x509 errors",
        ),
    },
    Check {
        id: "1.2.6",
        text: "Ensure that the --authorization-mode argument is not set to AlwaysAllow (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("--authorization-mode", Op::NotHave, "AlwaysAllow")],
        }),
        remediation: "--authorization-mode without AlwaysAllow (e.g. Node,RBAC)",
        fix: &[
            Remediation::RemoveFromList {
                flag: "authorization-mode",
                item: "AlwaysAllow",
            },
            Remediation::AddToList {
                flag: "authorization-mode",
                item: "Node",
            },
            Remediation::AddToList {
                flag: "authorization-mode",
                item: "RBAC",
            },
        ],
        dangerous: None,
    },
    Check {
        id: "1.2.7",
        text: "Ensure that the --authorization-mode argument includes Node (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("--authorization-mode", Op::Has, "Node")],
        }),
        remediation: "--authorization-mode includes Node (Node,RBAC)",
        fix: &[Remediation::AddToList {
            flag: "authorization-mode",
            item: "Node",
        }],
        dangerous: None,
    },
    Check {
        id: "1.2.8",
        text: "Ensure that the --authorization-mode argument includes RBAC (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("--authorization-mode", Op::Has, "RBAC")],
        }),
        remediation: "--authorization-mode includes RBAC (Node,RBAC)",
        fix: &[Remediation::AddToList {
            flag: "authorization-mode",
            item: "RBAC",
        }],
        dangerous: None,
    },
    Check {
        id: "1.2.9",
        text: "Ensure that the admission control plugin EventRateLimit is set (Manual)",
        kind: CheckType::Manual,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("--enable-admission-plugins", Op::Has, "EventRateLimit")],
        }),
        remediation: "--enable-admission-plugins=...,EventRateLimit + \
            --admission-control-config-file=<file>",
        fix: &[
            Remediation::NeedsFile {
                kind: NeededFile::EventRateLimit,
            },
            Remediation::AddToList {
                flag: "enable-admission-plugins",
                item: "EventRateLimit",
            },
        ],
        dangerous: None,
    },
    Check {
        id: "1.2.10",
        text: "Ensure that the admission control plugin AlwaysAdmit is not set (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::Or,
            items: &[
                cmp("--enable-admission-plugins", Op::NotHave, "AlwaysAdmit"),
                absent("--enable-admission-plugins"),
            ],
        }),
        remediation: "remove --enable-admission-plugins or drop AlwaysAdmit from it",
        fix: &[Remediation::RemoveFromList {
            flag: "enable-admission-plugins",
            item: "AlwaysAdmit",
        }],
        dangerous: None,
    },
    Check {
        id: "1.2.11",
        text: "Ensure that the admission control plugin AlwaysPullImages is set (Manual)",
        kind: CheckType::Manual,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp(
                "--enable-admission-plugins",
                Op::Has,
                "AlwaysPullImages",
            )],
        }),
        remediation: "--enable-admission-plugins=...,AlwaysPullImages",
        fix: &[Remediation::AddToList {
            flag: "enable-admission-plugins",
            item: "AlwaysPullImages",
        }],
        dangerous: Some(
            "every pod start pulls its image: air-gapped nodes and preloaded images \
            stop working, and pod starts depend on the registry",
        ),
    },
    Check {
        id: "1.2.12",
        text: "Ensure that the admission control plugin ServiceAccount is set (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::Or,
            items: &[
                cmp("--disable-admission-plugins", Op::NotHave, "ServiceAccount"),
                absent("--disable-admission-plugins"),
            ],
        }),
        remediation: "keep ServiceAccount out of --disable-admission-plugins",
        fix: &[Remediation::RemoveFromList {
            flag: "disable-admission-plugins",
            item: "ServiceAccount",
        }],
        dangerous: None,
    },
    Check {
        id: "1.2.13",
        text: "Ensure that the admission control plugin NamespaceLifecycle is set (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::Or,
            items: &[
                cmp(
                    "--disable-admission-plugins",
                    Op::NotHave,
                    "NamespaceLifecycle",
                ),
                absent("--disable-admission-plugins"),
            ],
        }),
        remediation: "keep NamespaceLifecycle out of --disable-admission-plugins",
        fix: &[Remediation::RemoveFromList {
            flag: "disable-admission-plugins",
            item: "NamespaceLifecycle",
        }],
        dangerous: None,
    },
    Check {
        id: "1.2.14",
        text: "Ensure that the admission control plugin NodeRestriction is set (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp(
                "--enable-admission-plugins",
                Op::Has,
                "NodeRestriction",
            )],
        }),
        remediation: "--enable-admission-plugins=...,NodeRestriction",
        fix: &[Remediation::AddToList {
            flag: "enable-admission-plugins",
            item: "NodeRestriction",
        }],
        dangerous: None,
    },
    Check {
        id: "1.2.15",
        text: "Ensure that the --profiling argument is set to false (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("--profiling", Op::Eq, "false")],
        }),
        remediation: "--profiling=false",
        fix: &[Remediation::SetFlag {
            name: "profiling",
            value: "false",
        }],
        dangerous: None,
    },
    Check {
        id: "1.2.16",
        text: "Ensure that the --audit-log-path argument is set (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[present("--audit-log-path")],
        }),
        remediation: "--audit-log-path=<file>, e.g. /var/log/kubernetes/audit/audit.log, with a \
            hostPath volume for its directory; without an audit policy (--audit-policy-file) no \
            events are written",
        fix: &[
            Remediation::SetFlag {
                name: "audit-log-path",
                value: "/var/log/kubernetes/audit/audit.log",
            },
            Remediation::Mount {
                path: "/var/log/kubernetes/audit",
                read_only: false,
            },
            Remediation::NeedsFile {
                kind: NeededFile::AuditPolicy,
            },
        ],
        dangerous: None,
    },
    Check {
        id: "1.2.17",
        text: "Ensure that the --audit-log-maxage argument is set to 30 or as appropriate \
            (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("--audit-log-maxage", Op::Gte, "30")],
        }),
        remediation: "--audit-log-maxage=30 (or more)",
        fix: &[Remediation::SetFlag {
            name: "audit-log-maxage",
            value: "30",
        }],
        dangerous: None,
    },
    Check {
        id: "1.2.18",
        text: "Ensure that the --audit-log-maxbackup argument is set to 10 or as appropriate \
            (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("--audit-log-maxbackup", Op::Gte, "10")],
        }),
        remediation: "--audit-log-maxbackup=10 (or more)",
        fix: &[Remediation::SetFlag {
            name: "audit-log-maxbackup",
            value: "10",
        }],
        dangerous: None,
    },
    Check {
        id: "1.2.19",
        text: "Ensure that the --audit-log-maxsize argument is set to 100 or as appropriate \
            (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("--audit-log-maxsize", Op::Gte, "100")],
        }),
        remediation: "--audit-log-maxsize=100 (MB, or more)",
        fix: &[Remediation::SetFlag {
            name: "audit-log-maxsize",
            value: "100",
        }],
        dangerous: None,
    },
    Check {
        id: "1.2.20",
        text: "Ensure that the --request-timeout argument is set as appropriate (Manual)",
        kind: CheckType::ManualNoTests,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: None,
        remediation: "--request-timeout=<as appropriate> e.g. 300s, only if needed",
        fix: &[Remediation::Manual(
            "set --request-timeout only if the default (60s) does not suit, \
                e.g. --request-timeout=300s",
        )],
        dangerous: None,
    },
    Check {
        id: "1.2.21",
        text: "Ensure that the --service-account-lookup argument is set to true (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::Or,
            items: &[
                absent("--service-account-lookup"),
                cmp("--service-account-lookup", Op::Eq, "true"),
            ],
        }),
        remediation: "--service-account-lookup=true or remove the flag (default true)",
        fix: &[Remediation::SetFlag {
            name: "service-account-lookup",
            value: "true",
        }],
        dangerous: None,
    },
    Check {
        id: "1.2.22",
        text: "Ensure that the --service-account-key-file argument is set as appropriate \
            (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[present("--service-account-key-file")],
        }),
        remediation: "--service-account-key-file=<SA public key>",
        fix: &[Remediation::Manual(
            "set --service-account-key-file to the public key of the service \
                account signing key (kubeadm: /etc/kubernetes/pki/sa.pub)",
        )],
        dangerous: None,
    },
    Check {
        id: "1.2.23",
        text: "Ensure that the --etcd-certfile and --etcd-keyfile arguments are set as \
            appropriate (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[present("--etcd-certfile"), present("--etcd-keyfile")],
        }),
        remediation: "set --etcd-certfile=<crt> and --etcd-keyfile=<key>",
        fix: &[Remediation::Manual(
            "set --etcd-certfile and --etcd-keyfile to the API server's etcd \
                client certificate and key (kubeadm: \
                /etc/kubernetes/pki/apiserver-etcd-client.{crt,key})",
        )],
        dangerous: None,
    },
    Check {
        id: "1.2.24",
        text: "Ensure that the --tls-cert-file and --tls-private-key-file arguments are set as \
            appropriate (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[
                present("--tls-cert-file"),
                present("--tls-private-key-file"),
            ],
        }),
        remediation: "set --tls-cert-file=<crt> and --tls-private-key-file=<key>",
        fix: &[Remediation::Manual(
            "set --tls-cert-file and --tls-private-key-file to the API \
                server's serving certificate and key (kubeadm: \
                /etc/kubernetes/pki/apiserver.{crt,key})",
        )],
        dangerous: None,
    },
    Check {
        id: "1.2.25",
        text: "Ensure that the --client-ca-file argument is set as appropriate (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[present("--client-ca-file")],
        }),
        remediation: "--client-ca-file=<CA>",
        fix: &[Remediation::Manual(
            "set --client-ca-file to the client CA (kubeadm: \
                /etc/kubernetes/pki/ca.crt)",
        )],
        dangerous: None,
    },
    Check {
        id: "1.2.26",
        text: "Ensure that the --etcd-cafile argument is set as appropriate (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[present("--etcd-cafile")],
        }),
        remediation: "--etcd-cafile=<etcd CA>",
        fix: &[Remediation::Manual(
            "set --etcd-cafile to the etcd CA (kubeadm: \
                /etc/kubernetes/pki/etcd/ca.crt)",
        )],
        dangerous: None,
    },
    Check {
        id: "1.2.27",
        text: "Ensure that the --encryption-provider-config argument is set as appropriate \
            (Manual)",
        kind: CheckType::Manual,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[present("--encryption-provider-config")],
        }),
        remediation: "--encryption-provider-config=<EncryptionConfiguration file>",
        fix: &[Remediation::NeedsFile {
            kind: NeededFile::Encryption,
        }],
        dangerous: None,
    },
    Check {
        id: "1.2.28",
        text: "Ensure that encryption providers are appropriately configured (Manual)",
        kind: CheckType::Manual,
        component: Component::ApiServer,
        audit: Audit::EncryptionProviders,
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("provider", Op::ValidElements, "aescbc,kms,secretbox")],
        }),
        remediation: "in the EncryptionConfiguration use aescbc, kms or secretbox as provider",
        fix: &[Remediation::NeedsFile {
            kind: NeededFile::Encryption,
        }],
        dangerous: None,
    },
    Check {
        id: "1.2.29",
        text: "Ensure that the API Server only makes use of Strong Cryptographic Ciphers (Manual)",
        kind: CheckType::Manual,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("--tls-cipher-suites", Op::ValidElements, CIPHERS_1_12)],
        }),
        remediation: "--tls-cipher-suites=<a subset of the benchmark's allowlist>, e.g. \
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,\
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,\
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,\
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 (may break old clients, webhooks or \
            load balancers that need other suites)",
        fix: &[Remediation::SetFlag {
            name: "tls-cipher-suites",
            value: STRONG_CIPHERS,
        }],
        dangerous: None,
    },
    Check {
        id: "1.2.30",
        text: "Ensure that the --service-account-extend-token-expiration parameter is set to \
            false (Automated)",
        kind: CheckType::Automated,
        component: Component::ApiServer,
        audit: Audit::Flags(Component::ApiServer),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp(
                "--service-account-extend-token-expiration",
                Op::Eq,
                "false",
            )],
        }),
        remediation: "--service-account-extend-token-expiration=false",
        fix: &[Remediation::SetFlag {
            name: "service-account-extend-token-expiration",
            value: "false",
        }],
        dangerous: None,
    },
];
