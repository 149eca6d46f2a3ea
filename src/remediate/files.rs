//! The files some remediations need, with sensible defaults. Each is created only if absent: an
//! operator's own policy or config is referenced, never overwritten.

use crate::cis::rules::NeededFile;
use std::path::{Path, PathBuf};

/// A file to create, the flag that names it, and the mount that makes it visible in the pod.
pub struct Generated {
    pub path: PathBuf,
    pub flag: &'static str,
    pub content: Vec<u8>,
    pub mode: u32,
    /// Printed after the change (e.g. rewrite existing Secrets after enabling encryption).
    pub after_note: Option<String>,
}

/// An audit policy that records request metadata for everything and skips the noisiest
/// read-only traffic; Secrets and ConfigMaps are logged at Metadata so their content never lands
/// in the log.
const AUDIT_POLICY: &str = "\
# Written by kubeharden for CIS 1.2.16-1.2.19. Edit freely: kubeharden never overwrites it.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages:
- RequestReceived
rules:
- level: None
  users: [\"system:kube-proxy\"]
  verbs: [\"watch\"]
  resources:
  - group: \"\"
    resources: [\"endpoints\", \"services\", \"services/status\"]
- level: None
  nonResourceURLs: [\"/healthz*\", \"/livez*\", \"/readyz*\", \"/version\"]
- level: Metadata
  resources:
  - group: \"\"
    resources: [\"secrets\", \"configmaps\"]
  - group: authentication.k8s.io
    resources: [\"tokenreviews\"]
- level: Metadata
";

const ADMISSION_CONFIG: &str = "\
# Written by kubeharden for CIS 1.2.9 (EventRateLimit). Edit freely: kubeharden never overwrites it.
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: EventRateLimit
  configuration:
    apiVersion: eventratelimit.admission.k8s.io/v1alpha1
    kind: Configuration
    limits:
    - type: Server
      qps: 5000
      burst: 20000
    - type: Namespace
      qps: 500
      burst: 1000
      cacheSize: 2000
";

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// 32 random bytes from the kernel, for the aescbc key.
fn random_key() -> std::io::Result<[u8; 32]> {
    use std::io::Read;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    Ok(key)
}

pub fn generate(kind: NeededFile, kubernetes_dir: &Path) -> std::io::Result<Generated> {
    Ok(match kind {
        NeededFile::AuditPolicy => Generated {
            path: kubernetes_dir.join("audit-policy.yaml"),
            flag: "audit-policy-file",
            content: AUDIT_POLICY.as_bytes().to_vec(),
            mode: 0o600,
            after_note: None,
        },
        NeededFile::EventRateLimit => Generated {
            path: kubernetes_dir.join("admission-control-config.yaml"),
            flag: "admission-control-config-file",
            content: ADMISSION_CONFIG.as_bytes().to_vec(),
            mode: 0o600,
            after_note: None,
        },
        NeededFile::Encryption => Generated {
            path: kubernetes_dir.join("encryption-config.yaml"),
            flag: "encryption-provider-config",
            content: format!(
                "# Written by kubeharden for CIS 1.2.27/1.2.28. The key below encrypts Secrets at rest:\n\
                 # back it up with the etcd backups, or the Secrets cannot be read after a restore.\n\
                 apiVersion: apiserver.config.k8s.io/v1\n\
                 kind: EncryptionConfiguration\n\
                 resources:\n\
                 - resources:\n\
                 \x20 - secrets\n\
                 \x20 providers:\n\
                 \x20 - aescbc:\n\
                 \x20     keys:\n\
                 \x20     - name: key1\n\
                 \x20       secret: {}\n\
                 \x20 - identity: {{}}\n",
                base64(&random_key()?)
            )
            .into_bytes(),
            mode: 0o600,
            after_note: Some(
                "existing Secrets stay unencrypted until rewritten: run \
                 'kubectl get secrets --all-namespaces -o json | kubectl replace -f -'"
                    .into(),
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn generated_files_parse_and_the_encryption_key_is_32_fresh_bytes() {
        let kd = Path::new("/etc/kubernetes");
        let mut keys = Vec::new();
        for kind in [
            NeededFile::AuditPolicy,
            NeededFile::EventRateLimit,
            NeededFile::Encryption,
        ] {
            let g = generate(kind, kd).unwrap();
            let v: serde_norway::Value = serde_norway::from_slice(&g.content).unwrap();
            if kind == NeededFile::Encryption {
                let secret = v["resources"][0]["providers"][0]["aescbc"]["keys"][0]["secret"]
                    .as_str()
                    .unwrap()
                    .to_string();
                assert_eq!(secret.len(), 44, "32 bytes in base64");
                keys.push(secret);
                assert_eq!(g.mode, 0o600);
            }
        }
        let again = generate(NeededFile::Encryption, kd).unwrap();
        assert!(!String::from_utf8(again.content).unwrap().contains(&keys[0]));
    }
}
