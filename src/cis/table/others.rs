//! Sections 1.3 controller manager, 1.4 scheduler (master.yaml) and 2 etcd (etcd.yaml).

use crate::cis::rules::*;

pub(super) static OTHERS: [Check; 16] = [
    Check {
        id: "1.3.1",
        text: "Ensure that the --terminated-pod-gc-threshold argument is set as appropriate \
            (Manual)",
        kind: CheckType::Manual,
        component: Component::ControllerManager,
        audit: Audit::Flags(Component::ControllerManager),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[present("--terminated-pod-gc-threshold")],
        }),
        remediation: "--terminated-pod-gc-threshold=<n> e.g. 10",
        fix: &[Remediation::SetFlag {
            name: "terminated-pod-gc-threshold",
            value: "10",
        }],
        dangerous: None,
    },
    Check {
        id: "1.3.2",
        text: "Ensure that the --profiling argument is set to false (Automated)",
        kind: CheckType::Automated,
        component: Component::ControllerManager,
        audit: Audit::Flags(Component::ControllerManager),
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
        id: "1.3.3",
        text: "Ensure that the --use-service-account-credentials argument is set to true \
            (Automated)",
        kind: CheckType::Automated,
        component: Component::ControllerManager,
        audit: Audit::Flags(Component::ControllerManager),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("--use-service-account-credentials", Op::NotEq, "false")],
        }),
        remediation: "--use-service-account-credentials=true",
        fix: &[Remediation::SetFlag {
            name: "use-service-account-credentials",
            value: "true",
        }],
        dangerous: None,
    },
    Check {
        id: "1.3.4",
        text: "Ensure that the --service-account-private-key-file argument is set as appropriate \
            (Automated)",
        kind: CheckType::Automated,
        component: Component::ControllerManager,
        audit: Audit::Flags(Component::ControllerManager),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[present("--service-account-private-key-file")],
        }),
        remediation: "--service-account-private-key-file=<SA private key>",
        fix: &[Remediation::Manual(
            "set --service-account-private-key-file to the service account signing key (kubeadm: \
                /etc/kubernetes/pki/sa.key)",
        )],
        dangerous: None,
    },
    Check {
        id: "1.3.5",
        text: "Ensure that the --root-ca-file argument is set as appropriate (Automated)",
        kind: CheckType::Automated,
        component: Component::ControllerManager,
        audit: Audit::Flags(Component::ControllerManager),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[present("--root-ca-file")],
        }),
        remediation: "--root-ca-file=<CA bundle>",
        fix: &[Remediation::Manual(
            "set --root-ca-file to the cluster CA bundle (kubeadm: /etc/kubernetes/pki/ca.crt)",
        )],
        dangerous: None,
    },
    Check {
        id: "1.3.6",
        text: "Ensure that the RotateKubeletServerCertificate argument is set to true (Automated)",
        kind: CheckType::Automated,
        component: Component::ControllerManager,
        audit: Audit::Flags(Component::ControllerManager),
        tests: Some(Tests {
            bin_op: BinOp::Or,
            items: &[
                cmp(
                    "--feature-gates",
                    Op::NotHave,
                    "RotateKubeletServerCertificate=false",
                ),
                absent("--feature-gates"),
            ],
        }),
        remediation: "--feature-gates=RotateKubeletServerCertificate=true (or no feature-gates \
                flag)--feature-gates=RotateKubeletServerCertificate=true (or no feature-gates \
                flag)",
        fix: &[Remediation::RemoveFromList {
            flag: "feature-gates",
            item: "RotateKubeletServerCertificate=false",
        }],
        dangerous: None,
    },
    Check {
        id: "1.3.7",
        text: "Ensure that the --bind-address argument is set to 127.0.0.1 (Automated)",
        kind: CheckType::Automated,
        component: Component::ControllerManager,
        audit: Audit::Flags(Component::ControllerManager),
        tests: Some(Tests {
            bin_op: BinOp::Or,
            items: &[
                cmp("--bind-address", Op::Eq, "127.0.0.1"),
                absent("--bind-address"),
            ],
        }),
        remediation: "--bind-address=127.0.0.1",
        fix: &[Remediation::SetFlag {
            name: "bind-address",
            value: "127.0.0.1",
        }],
        dangerous: None,
    },
    Check {
        id: "1.4.1",
        text: "Ensure that the --profiling argument is set to false (Automated)",
        kind: CheckType::Automated,
        component: Component::Scheduler,
        audit: Audit::Flags(Component::Scheduler),
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
        id: "1.4.2",
        text: "Ensure that the --bind-address argument is set to 127.0.0.1 (Automated)",
        kind: CheckType::Automated,
        component: Component::Scheduler,
        audit: Audit::Flags(Component::Scheduler),
        tests: Some(Tests {
            bin_op: BinOp::Or,
            items: &[
                cmp("--bind-address", Op::Eq, "127.0.0.1"),
                absent("--bind-address"),
            ],
        }),
        remediation: "--bind-address=127.0.0.1",
        fix: &[Remediation::SetFlag {
            name: "bind-address",
            value: "127.0.0.1",
        }],
        dangerous: None,
    },
    Check {
        id: "2.1",
        text: "Ensure that the --cert-file and --key-file arguments are set as appropriate \
            (Automated)",
        kind: CheckType::Automated,
        component: Component::Etcd,
        audit: Audit::Flags(Component::Etcd),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[
                with_env(present("--cert-file"), "ETCD_CERT_FILE"),
                with_env(present("--key-file"), "ETCD_KEY_FILE"),
            ],
        }),
        remediation: "set --cert-file=<crt> and --key-file=<key>",
        fix: &[Remediation::Manual(
            "set --cert-file and --key-file to etcd's serving certificate and key (kubeadm: \
                /etc/kubernetes/pki/etcd/server.{crt,key})",
        )],
        dangerous: None,
    },
    Check {
        id: "2.2",
        text: "Ensure that the --client-cert-auth argument is set to true (Automated)",
        kind: CheckType::Automated,
        component: Component::Etcd,
        audit: Audit::Flags(Component::Etcd),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[with_env(
                cmp("--client-cert-auth", Op::Eq, "true"),
                "ETCD_CLIENT_CERT_AUTH",
            )],
        }),
        remediation: "--client-cert-auth=true",
        fix: &[Remediation::SetFlag {
            name: "client-cert-auth",
            value: "true",
        }],
        dangerous: None,
    },
    Check {
        id: "2.3",
        text: "Ensure that the --auto-tls argument is not set to true (Automated)",
        kind: CheckType::Automated,
        component: Component::Etcd,
        audit: Audit::Flags(Component::Etcd),
        tests: Some(Tests {
            bin_op: BinOp::Or,
            items: &[
                with_env(absent("--auto-tls"), "ETCD_AUTO_TLS"),
                with_env(cmp("--auto-tls", Op::Eq, "false"), "ETCD_AUTO_TLS"),
            ],
        }),
        remediation: "remove --auto-tls or set --auto-tls=false",
        fix: &[Remediation::SetFlag {
            name: "auto-tls",
            value: "false",
        }],
        dangerous: None,
    },
    Check {
        id: "2.4",
        text: "Ensure that the --peer-cert-file and --peer-key-file arguments are set as \
            appropriate (Automated)",
        kind: CheckType::Automated,
        component: Component::Etcd,
        audit: Audit::Flags(Component::Etcd),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[
                with_env(present("--peer-cert-file"), "ETCD_PEER_CERT_FILE"),
                with_env(present("--peer-key-file"), "ETCD_PEER_KEY_FILE"),
            ],
        }),
        remediation: "set --peer-cert-file=<crt> and --peer-key-file=<key>",
        fix: &[Remediation::Manual(
            "set --peer-cert-file and --peer-key-file to etcd's peer certificate and key \
                (kubeadm: /etc/kubernetes/pki/etcd/peer.{crt,key})",
        )],
        dangerous: None,
    },
    Check {
        id: "2.5",
        text: "Ensure that the --peer-client-cert-auth argument is set to true (Automated)",
        kind: CheckType::Automated,
        component: Component::Etcd,
        audit: Audit::Flags(Component::Etcd),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[with_env(
                cmp("--peer-client-cert-auth", Op::Eq, "true"),
                "ETCD_PEER_CLIENT_CERT_AUTH",
            )],
        }),
        remediation: "--peer-client-cert-auth=true",
        fix: &[Remediation::SetFlag {
            name: "peer-client-cert-auth",
            value: "true",
        }],
        dangerous: None,
    },
    Check {
        id: "2.6",
        text: "Ensure that the --peer-auto-tls argument is not set to true (Automated)",
        kind: CheckType::Automated,
        component: Component::Etcd,
        audit: Audit::Flags(Component::Etcd),
        tests: Some(Tests {
            bin_op: BinOp::Or,
            items: &[
                with_env(absent("--peer-auto-tls"), "ETCD_PEER_AUTO_TLS"),
                with_env(
                    cmp("--peer-auto-tls", Op::Eq, "false"),
                    "ETCD_PEER_AUTO_TLS",
                ),
            ],
        }),
        remediation: "remove --peer-auto-tls or set --peer-auto-tls=false",
        fix: &[Remediation::SetFlag {
            name: "peer-auto-tls",
            value: "false",
        }],
        dangerous: None,
    },
    Check {
        id: "2.7",
        text: "Ensure that a unique Certificate Authority is used for etcd (Manual)",
        kind: CheckType::Manual,
        component: Component::Etcd,
        audit: Audit::Flags(Component::Etcd),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[with_env(
                present("--trusted-ca-file"),
                "ETCD_TRUSTED_CA_FILE",
            )],
        }),
        remediation: "--trusted-ca-file=<dedicated etcd CA>",
        fix: &[Remediation::Manual(
            "set --trusted-ca-file to a CA used only for etcd (kubeadm: \
                /etc/kubernetes/pki/etcd/ca.crt)",
        )],
        dangerous: None,
    },
];
