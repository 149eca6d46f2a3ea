//! Probes as the kubelet runs them: read from the container's startupProbe, livenessProbe and
//! readinessProbe (httpGet, tcpSocket; exec is reported as not checked), or given as URLs.
//! Success is HTTP 200–399, as in the kubelet's prober; HTTPS is not verified unless a CA is
//! given, as the kubelet's probes are not.

use serde_norway::Value;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Http {
        url: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: String,
        port: u16,
    },
    /// An exec probe runs inside the container; the gate cannot run it and says so.
    Exec(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// `startupProbe`, `livenessProbe`, `readinessProbe`, or `--probe`.
    pub source: String,
    pub target: Target,
    pub timeout: Duration,
}

impl ProbeSpec {
    pub fn describe(&self) -> String {
        match &self.target {
            Target::Http { url, .. } => url.clone(),
            Target::Tcp { host, port } => format!("tcp://{host}:{port}"),
            Target::Exec(cmd) => format!("exec {cmd}"),
        }
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

fn as_port(v: &Value, container: &Value) -> Result<u16, String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("probe port {n} is not a port number")),
        // A named port (kubeadm >= 1.34 uses `probe-port`) is looked up in the container's ports.
        Value::String(name) => container
            .get("ports")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|p| p.get("containerPort"))
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("probe port {name:?} names no port of the container")),
        _ => Err("probe port is neither a number nor a name".into()),
    }
}

fn host_of(v: &Value) -> String {
    // The kubelet probes the pod IP; control-plane static pods use the host network, where the
    // node's loopback reaches the same sockets.
    v.get("host")
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
        .unwrap_or("127.0.0.1")
        .to_string()
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// The probes a container declares, deduplicated (kubeadm's startup and liveness probes are
/// often the same URL).
pub fn from_container(container: &Value) -> Result<Vec<ProbeSpec>, String> {
    let mut out: Vec<ProbeSpec> = Vec::new();
    for source in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let Some(p) = container.get(source) else {
            continue;
        };
        let timeout = p
            .get("timeoutSeconds")
            .and_then(Value::as_u64)
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        let target = if let Some(h) = p.get("httpGet") {
            let port = as_port(h.get("port").unwrap_or(&Value::Null), container)?;
            let scheme = h
                .get("scheme")
                .and_then(Value::as_str)
                .unwrap_or("HTTP")
                .to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                return Err(format!("{source}: unknown scheme {scheme:?}"));
            }
            let mut path = h
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or("/")
                .to_string();
            if !path.starts_with('/') {
                path.insert(0, '/');
            }
            let headers = h
                .get("httpHeaders")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(|kv| {
                    Some((
                        kv.get("name")?.as_str()?.to_string(),
                        kv.get("value")?.as_str().unwrap_or("").to_string(),
                    ))
                })
                .collect();
            Target::Http {
                url: format!("{scheme}://{}:{port}{path}", bracket(&host_of(h))),
                headers,
            }
        } else if let Some(t) = p.get("tcpSocket") {
            Target::Tcp {
                host: host_of(t),
                port: as_port(t.get("port").unwrap_or(&Value::Null), container)?,
            }
        } else if let Some(e) = p.get("exec") {
            let cmd = e
                .get("command")
                .and_then(Value::as_sequence)
                .map(|c| {
                    c.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            Target::Exec(cmd)
        } else {
            continue;
        };
        if !out.iter().any(|o| o.target == target) {
            out.push(ProbeSpec {
                source: source.to_string(),
                target,
                timeout,
            });
        }
    }
    Ok(out)
}

/// `--probe URL` overrides.
pub fn from_urls(urls: &[String]) -> Result<Vec<ProbeSpec>, String> {
    urls.iter()
        .map(|u| {
            let uri: ureq::http::Uri = u
                .parse()
                .map_err(|e| format!("--probe {u:?}: not a URL ({e})"))?;
            let scheme_ok = matches!(uri.scheme_str(), Some("http") | Some("https"));
            let host_ok = uri.host().is_some_and(|h| !h.is_empty());
            if !scheme_ok || !host_ok {
                return Err(format!(
                    "--probe {u:?}: expected an http:// or https:// URL with a host, \
                     e.g. https://127.0.0.1:6443/livez"
                ));
            }
            Ok(ProbeSpec {
                source: "--probe".into(),
                target: Target::Http {
                    url: u.clone(),
                    headers: Vec::new(),
                },
                timeout: Duration::from_secs(5),
            })
        })
        .collect()
}

/// TLS settings of the prober (`--probe-ca`, `--probe-cert`, `--probe-key`).
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

pub struct Prober {
    agent: ureq::Agent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub ok: bool,
    /// `200 OK`, `401 Unauthorized`, `connection refused`, `not checked (exec)`.
    pub detail: String,
}

fn read_pem(path: &PathBuf, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

impl Prober {
    pub fn new(tls: &TlsOptions) -> Result<Prober, String> {
        use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
        let mut t = TlsConfig::builder();
        match &tls.ca {
            Some(ca) => {
                let pem = read_pem(ca, "--probe-ca")?;
                let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                    .filter_map(|i| match i {
                        Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                        _ => None,
                    })
                    .collect();
                if certs.is_empty() {
                    return Err(format!("--probe-ca {}: no certificate in it", ca.display()));
                }
                t = t.root_certs(RootCerts::Specific(Arc::new(certs)));
            }
            None => t = t.disable_verification(true),
        }
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            let chain_pem = read_pem(cert, "--probe-cert")?;
            let chain: Vec<Certificate<'static>> = ureq::tls::parse_pem(&chain_pem)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            let key_pem = read_pem(key, "--probe-key")?;
            let key = PrivateKey::from_pem(&key_pem)
                .map_err(|e| format!("--probe-key {}: {e}", key.display()))?;
            t = t.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        let config = ureq::Agent::config_builder()
            .tls_config(t.build())
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .build();
        Ok(Prober {
            agent: ureq::Agent::new_with_config(config),
        })
    }

    pub fn probe(&self, spec: &ProbeSpec, budget: Duration) -> ProbeResult {
        let timeout = spec.timeout.min(budget).max(Duration::from_millis(100));
        match &spec.target {
            Target::Exec(_) => ProbeResult {
                ok: true,
                detail: "not checked (exec probe)".into(),
            },
            Target::Tcp { host, port } => {
                let addr = (host.as_str(), *port)
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next());
                match addr.map(|a| TcpStream::connect_timeout(&a, timeout)) {
                    Some(Ok(_)) => ProbeResult {
                        ok: true,
                        detail: "connected".into(),
                    },
                    Some(Err(e)) => ProbeResult {
                        ok: false,
                        detail: e.to_string(),
                    },
                    None => ProbeResult {
                        ok: false,
                        detail: format!("cannot resolve {host}"),
                    },
                }
            }
            Target::Http { url, headers } => {
                let mut req = self
                    .agent
                    .get(url)
                    .config()
                    .timeout_global(Some(timeout))
                    .build();
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                match req.call() {
                    Ok(resp) => {
                        let s = resp.status();
                        ProbeResult {
                            ok: (200..400).contains(&s.as_u16()),
                            detail: format!(
                                "{} {}",
                                s.as_u16(),
                                s.canonical_reason().unwrap_or("")
                            )
                            .trim_end()
                            .to_string(),
                        }
                    }
                    Err(e) => ProbeResult {
                        ok: false,
                        detail: e.to_string(),
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(yaml: &str) -> Value {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn kubeadm_134_named_probe_port_resolves_to_the_container_port() {
        let c = container(
            "ports: [{containerPort: 6443, name: probe-port}]\n\
             livenessProbe: {httpGet: {host: 10.0.0.1, path: /livez, port: probe-port, scheme: HTTPS}}\n\
             readinessProbe: {httpGet: {host: 10.0.0.1, path: /readyz, port: probe-port, scheme: HTTPS}}\n\
             startupProbe: {httpGet: {host: 10.0.0.1, path: /livez, port: probe-port, scheme: HTTPS}}\n",
        );
        let p = from_container(&c).unwrap();
        let urls: Vec<String> = p.iter().map(ProbeSpec::describe).collect();
        assert_eq!(
            urls,
            [
                "https://10.0.0.1:6443/livez",
                "https://10.0.0.1:6443/readyz"
            ]
        );
    }

    #[test]
    fn etcd_probe_keeps_its_query_and_defaults_host_and_scheme() {
        let c = container(
            "livenessProbe: {httpGet: {path: '/health?exclude=NOSPACE&serializable=true', port: 2381}}\n\
             startupProbe: {tcpSocket: {port: 2379}}\nreadinessProbe: {exec: {command: [etcdctl, endpoint, health]}}\n",
        );
        let p = from_container(&c).unwrap();
        assert_eq!(p[0].describe(), "tcp://127.0.0.1:2379");
        assert_eq!(
            p[1].describe(),
            "http://127.0.0.1:2381/health?exclude=NOSPACE&serializable=true"
        );
        assert_eq!(p[2].target, Target::Exec("etcdctl endpoint health".into()));
    }

    #[test]
    fn probe_urls_need_a_scheme_and_a_host() {
        for bad in [
            "http://",
            "https://:6443/livez",
            "127.0.0.1:6443/livez",
            "ftp://h/x",
            "not a url",
        ] {
            assert!(from_urls(&[bad.to_string()]).is_err(), "{bad}");
        }
        assert!(from_urls(&["https://127.0.0.1:6443/livez".to_string()]).is_ok());
    }

    #[test]
    fn an_unknown_named_port_is_an_error_not_a_guess() {
        let c = container("livenessProbe: {httpGet: {path: /livez, port: nope}}\n");
        assert!(from_container(&c).unwrap_err().contains("nope"));
    }

    #[test]
    fn status_codes_are_judged_as_the_kubelet_does() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for status in [
                "200 OK",
                "302 Found",
                "401 Unauthorized",
                "500 Internal Server Error",
            ] {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = write!(s, "HTTP/1.1 {status}\r\nLocation: http://elsewhere/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        let prober = Prober::new(&TlsOptions::default()).unwrap();
        let spec = from_urls(&[format!("http://127.0.0.1:{port}/livez")])
            .unwrap()
            .remove(0);
        let got: Vec<(bool, String)> = (0..4)
            .map(|_| {
                let r = prober.probe(&spec, Duration::from_secs(5));
                (r.ok, r.detail)
            })
            .collect();
        server.join().unwrap();
        assert_eq!(
            got,
            [
                (true, "200 OK".to_string()),
                (true, "302 Found".to_string()),
                (false, "401 Unauthorized".to_string()),
                (false, "500 Internal Server Error".to_string())
            ]
        );
    }
}
