//! The client of this node's kubelet: `GET /pods` over HTTPS, with a bearer token read afresh
//! for every request (service account tokens rotate) and the kubelet's certificate checked
//! against a CA file, or explicitly not checked at all.
//!
//! Blocking, with a short overall timeout: it runs on the window thread, and a kubelet that
//! does not answer must not hold up a window for long. Every failure is a [`KubeletError`] that
//! names what went wrong and what to change; none of them is fatal to the caller.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use super::pod_list::PodDirectory;

/// The kubelet's HTTPS port.
pub const KUBELET_PORT: u16 = 10250;
/// Where Kubernetes mounts a pod's service account token.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// Where Kubernetes mounts the cluster CA beside the token.
pub const SERVICE_ACCOUNT_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
/// How long one request may take in all, connection and TLS included.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// Largest pod list read: a full node (110 pods with long specs) answers a few MiB.
const BODY_LIMIT: u64 = 64 << 20;

/// How the kubelet's serving certificate is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Against the CA certificates (PEM) in this file.
    Ca(PathBuf),
    /// Not at all: `--kubelet-insecure-skip-verify`, never a default.
    InsecureSkipVerify,
}

/// Where the kubelet is and how to talk to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeletOptions {
    /// `https://host:port`, without a trailing slash.
    pub url: String,
    /// The bearer token's file, read at every request; `None` sends no token.
    pub token: Option<PathBuf>,
    pub verify: Verify,
    pub timeout: Duration,
}

/// A kubelet that cannot be used as configured: the user must change a flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupError(pub String);

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SetupError {}

/// One request that failed: what happened and what to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeletError(pub String);

impl fmt::Display for KubeletError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KubeletError {}

/// A configured kubelet client.
pub struct Kubelet {
    agent: ureq::Agent,
    options: KubeletOptions,
    pods_url: String,
}

impl fmt::Debug for Kubelet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kubelet")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// `https://host[:port]` as given, checked and without a trailing slash; the port defaults to
/// the kubelet's.
pub fn parse_url(text: &str) -> Result<String, String> {
    let fix = "give the kubelet as https://HOST:10250, e.g. https://10.0.0.11:10250";
    let uri: ureq::http::Uri = text
        .parse()
        .map_err(|e| format!("{text:?} is not a URL ({e}); {fix}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!(
            "{text:?} is not an https:// URL; the kubelet serves its API over TLS only, and the \
             token must not travel in clear; {fix}"
        ));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{text:?} names no host; {fix}"))?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "{text:?} has a path; the agent asks for /pods itself, so give the kubelet's \
             address alone; {fix}"
        ));
    }
    Ok(match authority.port_u16() {
        Some(_) => format!("https://{authority}"),
        None => format!("https://{authority}:{KUBELET_PORT}"),
    })
}

/// The kubelet of the node whose address is `node_ip` (`status.hostIP` in a pod).
pub fn url_of_node(node_ip: &str) -> Result<String, String> {
    let ip: std::net::IpAddr = node_ip.trim().parse().map_err(|_| {
        format!(
            "NODE_IP={node_ip:?} is not an IP address; set it from the pod's status.hostIP (as \
             deploy/kubernetes/20-daemonset.yaml does), or give --kubelet"
        )
    })?;
    Ok(match ip {
        std::net::IpAddr::V4(v4) => format!("https://{v4}:{KUBELET_PORT}"),
        std::net::IpAddr::V6(v6) => format!("https://[{v6}]:{KUBELET_PORT}"),
    })
}

impl Kubelet {
    /// A client for `options`; reads and checks the CA file now, so that a wrong file is said
    /// once, at start, rather than at every poll.
    pub fn new(options: KubeletOptions) -> Result<Kubelet, SetupError> {
        // ring is the one provider built in; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = match &options.verify {
            Verify::Ca(path) => TlsConfig::builder()
                .root_certs(RootCerts::Specific(Arc::new(read_ca(path)?)))
                .build(),
            Verify::InsecureSkipVerify => TlsConfig::builder().disable_verification(true).build(),
        };
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(options.timeout))
            // Statuses are answers to explain, not transport errors.
            .http_status_as_error(false)
            // The token goes to the kubelet and nowhere else: no proxy, no redirect.
            .proxy(None)
            .max_redirects(0)
            .user_agent(concat!("meshmark-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let pods_url = format!("{}/pods", options.url);
        Ok(Kubelet {
            agent,
            options,
            pods_url,
        })
    }

    /// The kubelet's URL, for logs.
    pub fn url(&self) -> &str {
        &self.options.url
    }

    /// The node's pod list, read now.
    pub fn pods(&self) -> Result<PodDirectory, KubeletError> {
        let mut request = self.agent.get(&self.pods_url);
        if let Some(path) = &self.options.token {
            request = request.header("Authorization", format!("Bearer {}", read_token(path)?));
        }
        let mut response = request.call().map_err(|e| self.transport_error(&e))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_vec()
            .map_err(|e| self.transport_error(&e))?;
        if status != 200 {
            return Err(self.refusal(status, &body));
        }
        PodDirectory::parse(&body).map_err(|e| {
            KubeletError(format!(
                "the answer of {} is not a pod list ({e}); is --kubelet this node's kubelet?",
                self.pods_url
            ))
        })
    }

    /// Explains a status other than 200.
    fn refusal(&self, status: u16, body: &[u8]) -> KubeletError {
        let said = String::from_utf8_lossy(body);
        let said: String = said.trim().chars().take(200).collect();
        let url = &self.pods_url;
        KubeletError(match (status, &self.options.token) {
            (401, Some(path)) => format!(
                "{url} refused the token in {} (401 Unauthorized: {said}); it must be a service \
                 account token of this cluster",
                path.display()
            ),
            (401, None) => format!(
                "{url} asks for a token (401 Unauthorized); name a service account token with \
                 --kubelet-token (in a pod: automountServiceAccountToken)"
            ),
            (403, _) => format!(
                "{url} forbids this service account to read pods (403 Forbidden: {said}); it \
                 needs `get` on nodes/proxy and nodes/pods, as deploy/kubernetes/10-rbac.yaml \
                 grants"
            ),
            _ => format!("{url} answered {status} ({said})"),
        })
    }

    /// Explains a request that got no answer.
    fn transport_error(&self, error: &ureq::Error) -> KubeletError {
        let url = &self.options.url;
        if let Some(tls) = rustls_error(error) {
            return KubeletError(match (tls, &self.options.verify) {
                (
                    rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
                    Verify::Ca(ca),
                ) => format!(
                    "the certificate of the kubelet at {url} is not signed by a CA in {} (a \
                     kubelet's own serving certificate is usually self-signed, not signed by \
                     the cluster CA); give the CA that signed it with --kubelet-ca, or skip the \
                     check with --kubelet-insecure-skip-verify",
                    ca.display()
                ),
                (rustls::Error::InvalidCertificate(why), _) => format!(
                    "the certificate of the kubelet at {url} was refused ({why:?}); give the \
                     address its certificate names with --kubelet and its CA with --kubelet-ca, \
                     or skip the check with --kubelet-insecure-skip-verify"
                ),
                (other, _) => format!("TLS with the kubelet at {url} failed: {other}"),
            });
        }
        KubeletError(match error {
            ureq::Error::Timeout(_) => format!(
                "the kubelet at {url} did not answer within {}; is it this node's kubelet, and \
                 reachable from here?",
                humantime::format_duration(self.options.timeout)
            ),
            ureq::Error::HostNotFound => {
                format!("the kubelet's host in {url} is not known to the resolver")
            }
            ureq::Error::Io(io) => format!("cannot reach the kubelet at {url}: {io}"),
            ureq::Error::BodyExceedsLimit(limit) => {
                format!("the pod list of {url} is larger than {limit} bytes; it is not read")
            }
            other => format!("cannot read pods from the kubelet at {url}: {other}"),
        })
    }
}

/// The TLS error inside a failed request, if that is what it was: handshake errors arrive
/// wrapped in an I/O error.
fn rustls_error(error: &ureq::Error) -> Option<&rustls::Error> {
    match error {
        ureq::Error::Rustls(tls) => Some(tls),
        ureq::Error::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>(),
        _ => None,
    }
}

/// Most bytes read from the kubelet CA or token file: a CA bundle of a thousand certificates
/// or a token is far smaller, and the token is read again at every request.
const MAX_CREDENTIAL_FILE: crate::bounded::Limit = crate::bounded::Limit {
    bytes: 1 << 20,
    flag: None,
};

/// The CA certificates of a PEM file, each checked to be usable as a trust anchor.
fn read_ca(path: &Path) -> Result<Vec<Certificate<'static>>, SetupError> {
    let shown = path.display();
    let fix = "give a PEM file of CA certificates with --kubelet-ca, or skip the check \
               explicitly with --kubelet-insecure-skip-verify";
    let pem = crate::bounded::read(path, MAX_CREDENTIAL_FILE).map_err(|e| match e {
        crate::bounded::ReadError::Io { error, .. } => SetupError(format!(
            "cannot read the kubelet CA {shown}: {error}; {fix}"
        )),
        too_large => SetupError(format!("the kubelet CA: {too_large}; {fix}")),
    })?;
    let mut certificates = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(certificate)) => certificates.push(certificate),
            Ok(_) => {}
            Err(e) => {
                return Err(SetupError(format!(
                    "the kubelet CA {shown} is not valid PEM ({e}); {fix}"
                )))
            }
        }
    }
    if certificates.is_empty() {
        return Err(SetupError(format!(
            "the kubelet CA {shown} holds no certificate; {fix}"
        )));
    }
    let mut store = rustls::RootCertStore::empty();
    for (n, certificate) in certificates.iter().enumerate() {
        store
            .add(CertificateDer::from(certificate.der().to_vec()))
            .map_err(|e| {
                SetupError(format!(
                    "certificate {} in the kubelet CA {shown} cannot be a trust anchor ({e}); \
                     {fix}",
                    n.saturating_add(1)
                ))
            })?;
    }
    Ok(certificates)
}

/// The bearer token in `path`, without surrounding white space.
fn read_token(path: &Path) -> Result<String, KubeletError> {
    let shown = path.display();
    let fix = "in a pod the service account token is mounted there \
               (automountServiceAccountToken), or name another with --kubelet-token";
    let bytes = crate::bounded::read(path, MAX_CREDENTIAL_FILE).map_err(|e| match e {
        crate::bounded::ReadError::Io { error, .. } => KubeletError(format!(
            "cannot read the kubelet token {shown}: {error}; {fix}"
        )),
        too_large => KubeletError(format!("the kubelet token: {too_large}; {fix}")),
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| KubeletError(format!("the kubelet token {shown} is not UTF-8 text")))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(KubeletError(format!("the kubelet token {shown} is empty")));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_https_addresses_with_the_kubelet_port_by_default() {
        assert_eq!(
            parse_url("https://10.0.0.11:10250").as_deref(),
            Ok("https://10.0.0.11:10250")
        );
        assert_eq!(
            parse_url("https://node-1/").as_deref(),
            Ok("https://node-1:10250")
        );
        assert_eq!(
            parse_url("https://[fd00::1]:1234").as_deref(),
            Ok("https://[fd00::1]:1234")
        );
        for (bad, says) in [
            ("http://10.0.0.11:10255", "not an https:// URL"),
            ("10.0.0.11:10250", "not an https:// URL"),
            ("https://10.0.0.11:10250/pods", "has a path"),
            ("https://", "not a URL"),
            ("not a url", "not a URL"),
        ] {
            let got = parse_url(bad).unwrap_err();
            assert!(
                got.contains(says) && got.contains("https://HOST:10250"),
                "{bad}: {got}"
            );
        }
    }

    #[test]
    fn the_node_ip_names_the_kubelet() {
        assert_eq!(
            url_of_node("10.0.0.11").as_deref(),
            Ok("https://10.0.0.11:10250")
        );
        assert_eq!(
            url_of_node("fd00::11").as_deref(),
            Ok("https://[fd00::11]:10250")
        );
        let err = url_of_node("node-1").unwrap_err();
        assert!(
            err.contains("status.hostIP") && err.contains("--kubelet"),
            "{err}"
        );
    }

    #[test]
    fn a_ca_file_must_hold_a_usable_certificate() {
        let dir = std::env::temp_dir().join(format!("meshmark-kubelet-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let check = |name: &str, content: &[u8], says: &str| {
            let path = dir.join(name);
            std::fs::write(&path, content).unwrap();
            let err = read_ca(&path).unwrap_err().0;
            assert!(
                err.contains(says) && err.contains("--kubelet-insecure-skip-verify"),
                "{name}: {err}"
            );
        };
        check("empty.pem", b"", "holds no certificate");
        check(
            "key.pem",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "holds no certificate",
        );
        check(
            "garbage.pem",
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
            "cannot be a trust anchor",
        );
        let missing = read_ca(&dir.join("absent.pem")).unwrap_err().0;
        assert!(missing.contains("cannot read the kubelet CA"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tokens_are_trimmed_and_must_not_be_empty() {
        let dir =
            std::env::temp_dir().join(format!("meshmark-kubelet-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "eyJhbGciOi.token\n").unwrap();
        assert_eq!(read_token(&path).unwrap(), "eyJhbGciOi.token");
        std::fs::write(&path, " \n").unwrap();
        assert!(read_token(&path).unwrap_err().0.contains("is empty"));
        let missing = read_token(&dir.join("absent")).unwrap_err().0;
        assert!(missing.contains("--kubelet-token"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
