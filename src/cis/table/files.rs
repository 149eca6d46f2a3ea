//! Section 1.1: control plane node configuration files (kube-bench cis-1.12 master.yaml).

use crate::cis::rules::*;

pub(super) static FILES: [Check; 21] = [
    Check {
        id: "1.1.1",
        text: "Ensure that the API server pod specification file permissions are set to 600 or \
                more restrictive (Automated)",
        kind: CheckType::Automated,
        component: Component::File,
        audit: Audit::File(FileTarget::Manifest(Component::ApiServer)),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("permissions", Op::Bitmask, "600")],
        }),
        remediation: "chmod 600 /etc/kubernetes/manifests/kube-apiserver.yaml",
        fix: &[Remediation::Chmod { mode: 0o600 }],
        dangerous: None,
    },
    Check {
        id: "1.1.2",
        text: "Ensure that the API server pod specification file ownership is set to root:root \
            (Automated)",
        kind: CheckType::Automated,
        component: Component::File,
        audit: Audit::File(FileTarget::Manifest(Component::ApiServer)),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[present("root:root")],
        }),
        remediation: "chown root:root /etc/kubernetes/manifests/kube-apiserver.yaml",
        fix: &[Remediation::Chown { owner: "root:root" }],
        dangerous: None,
    },
    Check {
        id: "1.1.3",
        text: "Ensure that the controller manager pod specification file permissions are set to \
                600 or more restrictive (Automated)",
        kind: CheckType::Automated,
        component: Component::File,
        audit: Audit::File(FileTarget::Manifest(Component::ControllerManager)),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("permissions", Op::Bitmask, "600")],
        }),
        remediation: "chmod 600 /etc/kubernetes/manifests/kube-controller-manager.yaml",
        fix: &[Remediation::Chmod { mode: 0o600 }],
        dangerous: None,
    },
    Check {
        id: "1.1.4",
        text: "Ensure that the controller manager pod specification file ownership is set to \
            root:root (Automated)",
        kind: CheckType::Automated,
        component: Component::File,
        audit: Audit::File(FileTarget::Manifest(Component::ControllerManager)),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[present("root:root")],
        }),
        remediation: "chown root:root /etc/kubernetes/manifests/kube-controller-manager.yaml",
        fix: &[Remediation::Chown { owner: "root:root" }],
        dangerous: None,
    },
    Check {
        id: "1.1.5",
        text:
            "Ensure that the scheduler pod specification file permissions are set to 600 or more \
                restrictive (Automated)",
        kind: CheckType::Automated,
        component: Component::File,
        audit: Audit::File(FileTarget::Manifest(Component::Scheduler)),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("permissions", Op::Bitmask, "600")],
        }),
        remediation: "chmod 600 /etc/kubernetes/manifests/kube-scheduler.yaml",
        fix: &[Remediation::Chmod { mode: 0o600 }],
        dangerous: None,
    },
    Check {
        id: "1.1.6",
        text: "Ensure that the scheduler pod specification file ownership is set to root:root \
            (Automated)",
        kind: CheckType::Automated,
        component: Component::File,
        audit: Audit::File(FileTarget::Manifest(Component::Scheduler)),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[present("root:root")],
        }),
        remediation: "chown root:root /etc/kubernetes/manifests/kube-scheduler.yaml",
        fix: &[Remediation::Chown { owner: "root:root" }],
        dangerous: None,
    },
    Check {
        id: "1.1.7",
        text: "Ensure that the etcd pod specification file permissions are set to 600 or more \
            restrictive (Automated)",
        kind: CheckType::Automated,
        component: Component::File,
        audit: Audit::File(FileTarget::Manifest(Component::Etcd)),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("permissions", Op::Bitmask, "600")],
        }),
        remediation: "chmod 600 /etc/kubernetes/manifests/etcd.yaml",
        fix: &[Remediation::Chmod { mode: 0o600 }],
        dangerous: None,
    },
    Check {
        id: "1.1.8",
        text: "Ensure that the etcd pod specification file ownership is set to root:root \
            (Automated)",
        kind: CheckType::Automated,
        component: Component::File,
        audit: Audit::File(FileTarget::Manifest(Component::Etcd)),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[present("root:root")],
        }),
        remediation: "chown root:root /etc/kubernetes/manifests/etcd.yaml",
        fix: &[Remediation::Chown { owner: "root:root" }],
        dangerous: None,
    },
    Check {
        id: "1.1.9",
        text:
            "Ensure that the Container Network Interface file permissions are set to 600 or more \
                restrictive (Manual)",
        kind: CheckType::Manual,
        component: Component::File,
        audit: Audit::File(FileTarget::Cni),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("permissions", Op::Bitmask, "600")],
        }),
        remediation: "chmod 600 <CNI files>",
        fix: &[Remediation::Chmod { mode: 0o600 }],
        dangerous: None,
    },
    Check {
        id: "1.1.10",
        text: "Ensure that the Container Network Interface file ownership is set to root:root \
            (Manual)",
        kind: CheckType::Manual,
        component: Component::File,
        audit: Audit::File(FileTarget::Cni),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[present("root:root")],
        }),
        remediation: "chown root:root <CNI files>",
        fix: &[Remediation::Chown { owner: "root:root" }],
        dangerous: None,
    },
    Check {
        id: "1.1.11",
        text: "Ensure that the etcd data directory permissions are set to 700 or more \
            restrictive (Automated)",
        kind: CheckType::Automated,
        component: Component::File,
        audit: Audit::File(FileTarget::EtcdDataDir),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("permissions", Op::Bitmask, "700")],
        }),
        remediation: "chmod 700 <etcd data dir>, e.g. /var/lib/etcd",
        fix: &[Remediation::Chmod { mode: 0o700 }],
        dangerous: None,
    },
    Check {
        id: "1.1.12",
        text: "Ensure that the etcd data directory ownership is set to etcd:etcd (Automated)",
        kind: CheckType::Automated,
        component: Component::File,
        audit: Audit::File(FileTarget::EtcdDataDir),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[present("etcd:etcd")],
        }),
        remediation: "chown etcd:etcd <etcd data dir>, e.g. /var/lib/etcd",
        fix: &[Remediation::Chown { owner: "etcd:etcd" }],
        dangerous: None,
    },
    Check {
        id: "1.1.13",
        text: "Ensure that the default administrative credential file permissions are set to 600 \
            (Automated)",
        kind: CheckType::Automated,
        component: Component::File,
        audit: Audit::File(FileTarget::AdminConfs),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("permissions", Op::Bitmask, "600")],
        }),
        remediation: "chmod 600 /etc/kubernetes/admin.conf (+ super-admin.conf on 1.29+)",
        fix: &[Remediation::Chmod { mode: 0o600 }],
        dangerous: None,
    },
    Check {
        id: "1.1.14",
        text: "Ensure that the default administrative credential file ownership is set to \
                root:root (Automated)",
        kind: CheckType::Automated,
        component: Component::File,
        audit: Audit::File(FileTarget::AdminConfs),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("ownership", Op::Eq, "root:root")],
        }),
        remediation: "chown root:root /etc/kubernetes/admin.conf (+ super-admin.conf)",
        fix: &[Remediation::Chown { owner: "root:root" }],
        dangerous: None,
    },
    Check {
        id: "1.1.15",
        text: "Ensure that the scheduler.conf file permissions are set to 600 or more \
            restrictive (Automated)",
        kind: CheckType::Automated,
        component: Component::File,
        audit: Audit::File(FileTarget::SchedulerConf),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("permissions", Op::Bitmask, "600")],
        }),
        remediation: "chmod 600 /etc/kubernetes/scheduler.conf",
        fix: &[Remediation::Chmod { mode: 0o600 }],
        dangerous: None,
    },
    Check {
        id: "1.1.16",
        text: "Ensure that the scheduler.conf file ownership is set to root:root (Automated)",
        kind: CheckType::Automated,
        component: Component::File,
        audit: Audit::File(FileTarget::SchedulerConf),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[present("root:root")],
        }),
        remediation: "chown root:root /etc/kubernetes/scheduler.conf",
        fix: &[Remediation::Chown { owner: "root:root" }],
        dangerous: None,
    },
    Check {
        id: "1.1.17",
        text: "Ensure that the controller-manager.conf file permissions are set to 600 or more \
            restrictive (Automated)",
        kind: CheckType::Automated,
        component: Component::File,
        audit: Audit::File(FileTarget::ControllerManagerConf),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("permissions", Op::Bitmask, "600")],
        }),
        remediation: "chmod 600 /etc/kubernetes/controller-manager.conf",
        fix: &[Remediation::Chmod { mode: 0o600 }],
        dangerous: None,
    },
    Check {
        id: "1.1.18",
        text: "Ensure that the controller-manager.conf file ownership is set to root:root \
            (Automated)",
        kind: CheckType::Automated,
        component: Component::File,
        audit: Audit::File(FileTarget::ControllerManagerConf),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[present("root:root")],
        }),
        remediation: "chown root:root /etc/kubernetes/controller-manager.conf",
        fix: &[Remediation::Chown { owner: "root:root" }],
        dangerous: None,
    },
    Check {
        id: "1.1.19",
        text: "Ensure that the Kubernetes PKI directory and file ownership is set to root:root \
            (Automated)",
        kind: CheckType::Automated,
        component: Component::File,
        audit: Audit::File(FileTarget::PkiAll),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[present("root:root")],
        }),
        remediation: "chown -R root:root /etc/kubernetes/pki/",
        fix: &[Remediation::Chown { owner: "root:root" }],
        dangerous: None,
    },
    Check {
        id: "1.1.20",
        text: "Ensure that the Kubernetes PKI certificate file permissions are set to 644 or \
            more restrictive (Manual)",
        kind: CheckType::Manual,
        component: Component::File,
        audit: Audit::File(FileTarget::PkiCrt),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("permissions", Op::Bitmask, "644")],
        }),
        remediation: "chmod 644 /etc/kubernetes/pki/*.crt",
        fix: &[Remediation::Chmod { mode: 0o644 }],
        dangerous: None,
    },
    Check {
        id: "1.1.21",
        text: "Ensure that the Kubernetes PKI key file permissions are set to 600 (Manual)",
        kind: CheckType::Manual,
        component: Component::File,
        audit: Audit::File(FileTarget::PkiKey),
        tests: Some(Tests {
            bin_op: BinOp::And,
            items: &[cmp("permissions", Op::Bitmask, "600")],
        }),
        remediation: "chmod 600 /etc/kubernetes/pki/*.key",
        fix: &[Remediation::Chmod { mode: 0o600 }],
        dangerous: None,
    },
];
