//! kubeharden: transactional, health-gated hardening of Kubernetes static pod manifests.
//!
//! Where things are:
//! - `journal/`  the write-ahead journal (format spec: `journal-format/README.md`)
//! - `store/`    the content-addressed object store (blake3 keys, zstd values)
//! - `catalog/`  the SQLite index of versions and transactions, derived from the journal
//! - `engine/`   state directory, transactions, recovery, durable replace
//! - `manifest/` the byte-preserving flag editor (and hostPath mounts)
//! - `gate/`     the health gate: restart check in /proc, kubelet-style probes, stability
//! - `cis/`      the CIS benchmark rules as data and the auditor
//! - `hardening/` the hardening file (desired state), waivers, `apply`
//! - `export/`    the hardening as kubeadm extraArgs/patches and a Cluster API fragment
//! - `remediate/` CIS fixes as one gated transaction per component, with bisection
//! - `fsys/`     the file-system trait, its real implementation and the power-loss simulator
//! - `cli/`      argument parsing and the commands

pub mod catalog;
pub mod cis;
pub mod cli;
pub mod engine;
pub mod error;
pub mod export;
pub mod failpoint;
pub mod fsys;
pub mod gate;
pub mod hardening;
pub mod journal;
pub mod manifest;
pub mod remediate;
pub mod signals;
pub mod store;
