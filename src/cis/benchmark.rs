//! Which benchmark: by name (`--benchmark`), or from the Kubernetes version of the
//! kube-apiserver image as kube-bench's `version_mapping` does (1.29–1.31 → cis-1.11,
//! 1.32–1.34 → cis-1.12; later versions fall back to 1.34's, so cis-1.12). Versions before
//! 1.29 map to benchmarks this tool does not carry (cis-1.10 and older): that is refused, with
//! a message saying to pass `--benchmark` to audit with the nearest one anyway.

use crate::cis::rules::{Check, Tests};
use crate::cis::table::{self, CIPHER_ITEMS_1_11};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchmarkId {
    Cis111,
    Cis112,
}

impl BenchmarkId {
    pub const ALL: [BenchmarkId; 2] = [BenchmarkId::Cis112, BenchmarkId::Cis111];

    pub fn name(self) -> &'static str {
        match self {
            BenchmarkId::Cis111 => "cis-1.11",
            BenchmarkId::Cis112 => "cis-1.12",
        }
    }

    pub fn parse(s: &str) -> Result<BenchmarkId, String> {
        BenchmarkId::ALL
            .into_iter()
            .find(|b| b.name() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown benchmark {s:?}; known: {}",
                    BenchmarkId::ALL.map(|b| b.name()).join(", ")
                )
            })
    }

    /// The benchmark's checks, in order.
    pub fn checks(self) -> Vec<Check> {
        table::base()
            .map(|c| {
                let mut c = *c;
                if self == BenchmarkId::Cis111 && c.id == "1.2.29" {
                    c.tests = Some(Tests {
                        items: &CIPHER_ITEMS_1_11,
                        ..c.tests.expect("1.2.29 has tests")
                    });
                }
                c
            })
            .collect()
    }

    /// kube-bench's `version_mapping` for (major, minor); `Err` for versions before 1.29.
    pub fn for_version(major: u32, minor: u32) -> Result<BenchmarkId, String> {
        let older = |m: u32| match m {
            28 => "cis-1.10",
            27 => "cis-1.9",
            26 => "cis-1.8",
            25 => "cis-1.7",
            24 => "cis-1.24",
            22 | 23 => "cis-1.23",
            _ => "an older benchmark",
        };
        match (major, minor) {
            (1, 29..=31) => Ok(BenchmarkId::Cis111),
            (1, 32..) => Ok(BenchmarkId::Cis112),
            (m, _) if m > 1 => Ok(BenchmarkId::Cis112),
            (_, m) => Err(format!(
                "Kubernetes v{major}.{minor} maps to {} in kube-bench, which kubeharden does not carry; \
                 pass --benchmark cis-1.11 to audit with the nearest benchmark anyway",
                older(m)
            )),
        }
    }
}

/// (major, minor) of an image reference's tag: `registry.k8s.io/kube-apiserver:v1.30.14`,
/// `host:5000/kube-apiserver:v1.33.0-rc.1@sha256:…`.
pub fn image_version(image: &str) -> Option<(u32, u32)> {
    let image = image.split('@').next()?;
    let last = image.rsplit('/').next()?;
    let tag = last.split_once(':')?.1;
    let tag = tag.strip_prefix('v').unwrap_or(tag);
    let mut parts = tag.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cis::rules::Op;

    #[test]
    fn mapping() {
        let b = |maj, min| BenchmarkId::for_version(maj, min);
        assert_eq!(b(1, 29), Ok(BenchmarkId::Cis111));
        assert_eq!(b(1, 31), Ok(BenchmarkId::Cis111));
        assert_eq!(b(1, 32), Ok(BenchmarkId::Cis112));
        assert_eq!(b(1, 34), Ok(BenchmarkId::Cis112));
        assert_eq!(b(1, 40), Ok(BenchmarkId::Cis112));
        assert!(b(1, 28).unwrap_err().contains("cis-1.10"));
        assert_eq!(BenchmarkId::parse("cis-1.11"), Ok(BenchmarkId::Cis111));
        assert!(BenchmarkId::parse("cis-1.10").is_err());
    }

    #[test]
    fn image_versions() {
        assert_eq!(
            image_version("registry.k8s.io/kube-apiserver:v1.30.14"),
            Some((1, 30))
        );
        assert_eq!(
            image_version("h:5000/kube-apiserver:v1.33.0-rc.1@sha256:ab"),
            Some((1, 33))
        );
        assert_eq!(image_version("h:5000/kube-apiserver"), None);
        assert_eq!(image_version("kube-apiserver:latest"), None);
    }

    #[test]
    fn variants_differ_only_in_1_2_29() {
        let (a, b) = (BenchmarkId::Cis112.checks(), BenchmarkId::Cis111.checks());
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.id, y.id);
            if x.id == "1.2.29" {
                let (tx, ty) = (x.tests.unwrap().items[0], y.tests.unwrap().items[0]);
                assert_eq!(tx.compare.unwrap().0, Op::ValidElements);
                assert_ne!(tx, ty);
            } else {
                assert_eq!(x.tests, y.tests, "{}", x.id);
                assert_eq!((x.text, x.remediation), (y.text, y.remediation));
            }
        }
    }
}
