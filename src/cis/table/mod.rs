//! The rule table: the control-plane checks of kube-bench's cis-1.12 (sections 1.1–1.4 of
//! master.yaml and 2 of etcd.yaml), one `Check` each, as data. Texts, types, tests and bin_ops
//! are kube-bench's; remediation texts are its remediations with kubeadm paths filled in;
//! `fix` and `dangerous` are ours.
//!
//! cis-1.11 differs from cis-1.12 in one place only: the cipher allowlist of 1.2.29
//! (`benchmark.rs` applies that variant).

mod apiserver;
mod files;
mod others;

use crate::cis::rules::{cmp, Check, Item, Op};

/// cis-1.12's 1.2.29 allowlist (no CBC suites).
pub const CIPHERS_1_12: &str = "TLS_AES_128_GCM_SHA256,TLS_AES_256_GCM_SHA384,\
TLS_CHACHA20_POLY1305_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,\
TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,\
TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,\
TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,\
TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256";

/// cis-1.11's 1.2.29 allowlist: cis-1.12's plus the four `*_CBC_SHA` suites.
pub const CIPHERS_1_11: &str = "TLS_AES_128_GCM_SHA256,TLS_AES_256_GCM_SHA384,\
TLS_CHACHA20_POLY1305_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,\
TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,\
TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,\
TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,\
TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,\
TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,\
TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256";

/// The value 1.2.29's remediation sets: the TLS 1.2 AEAD suites with forward secrecy, under
/// the names Go and every Kubernetes release since 1.19 accept. A subset of both allowlists,
/// so it passes both benchmarks. (TLS 1.3 suites are not configurable in Go and are left out.)
pub const STRONG_CIPHERS: &str = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,\
TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,\
TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,\
TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256";

/// 1.2.29's test item in cis-1.11.
pub static CIPHER_ITEMS_1_11: [Item; 1] =
    [cmp("--tls-cipher-suites", Op::ValidElements, CIPHERS_1_11)];

/// The cis-1.12 checks, in benchmark order.
pub fn base() -> impl Iterator<Item = &'static Check> {
    files::FILES
        .iter()
        .chain(apiserver::API_SERVER.iter())
        .chain(others::OTHERS.iter())
}

#[cfg(test)]
pub(crate) static BASE: &[Check] = &files::FILES;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cis::rules::{CheckType, Remediation};
    use std::collections::HashSet;

    fn split(s: &str) -> HashSet<&str> {
        s.split(',').collect()
    }

    #[test]
    fn ids_are_unique_and_complete() {
        let ids: Vec<&str> = base().map(|c| c.id).collect();
        assert_eq!(ids.len(), 67);
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 67);
        assert_eq!(ids.iter().filter(|i| i.starts_with("1.1.")).count(), 21);
        assert_eq!(ids.iter().filter(|i| i.starts_with("1.2.")).count(), 30);
        assert_eq!(ids.iter().filter(|i| i.starts_with("1.3.")).count(), 7);
        assert_eq!(ids.iter().filter(|i| i.starts_with("1.4.")).count(), 2);
        assert_eq!(ids.iter().filter(|i| i.starts_with("2.")).count(), 7);
    }

    #[test]
    fn labels_match_types() {
        for c in base() {
            let automated = c.text.ends_with("(Automated)");
            assert_eq!(automated, c.kind == CheckType::Automated, "{}", c.id);
            assert_eq!(
                c.tests.is_none(),
                c.kind == CheckType::ManualNoTests,
                "{}",
                c.id
            );
            assert!(!c.fix.is_empty(), "{} has no fix", c.id);
        }
    }

    #[test]
    fn cipher_lists() {
        let (a, b, s) = (
            split(CIPHERS_1_12),
            split(CIPHERS_1_11),
            split(STRONG_CIPHERS),
        );
        assert_eq!((a.len(), b.len()), (11, 15));
        assert!(a.is_subset(&b));
        assert!(b.difference(&a).all(|c| c.ends_with("_CBC_SHA")));
        assert!(s.is_subset(&a) && s.is_subset(&b));
        let r = base().find(|c| c.id == "1.2.29").unwrap().remediation;
        assert!(r.contains(STRONG_CIPHERS), "{r}");
    }

    #[test]
    fn fixes_pass_their_own_tests() {
        use crate::cis::eval::{eval_tests, Lookup};
        // Apply each flag fix to an empty command line and evaluate the check on it.
        for c in base() {
            let crate::cis::rules::Audit::Flags(_) = c.audit else {
                continue;
            };
            let Some(tests) = c.tests else { continue };
            let mut flags: Vec<(String, String)> = Vec::new();
            let mut manual = false;
            for f in c.fix {
                match *f {
                    Remediation::SetFlag { name, value } => flags.push((name.into(), value.into())),
                    Remediation::AddToList { flag, item } => {
                        match flags.iter_mut().find(|(n, _)| n == flag) {
                            Some((_, v)) => v.push_str(&format!(",{item}")),
                            None => flags.push((flag.into(), item.into())),
                        }
                    }
                    Remediation::RemoveFromList { .. } | Remediation::RemoveFlag { .. } => {}
                    _ => manual = true,
                }
            }
            if manual {
                continue;
            }
            let lookup = |item: &Item| {
                let name = item.flag.trim_start_matches('-');
                flags
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            };
            let out = eval_tests(&tests, &[&lookup as &dyn Lookup]);
            assert!(out.pass, "{}: fix {:?} does not pass", c.id, c.fix);
        }
    }
}
