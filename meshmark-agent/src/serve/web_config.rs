//! `run --web-config FILE`: TLS, basic authentication and response headers, in the format of
//! the Prometheus exporter-toolkit's web configuration file (node_exporter's
//! `--web.config.file`), so a file written for an exporter works here unchanged.
//!
//! As the toolkit does, the file (and the certificate, key and CA files it names) is read again
//! for every new connection, so a renewed certificate or a changed password applies without a
//! restart; here only when one of those files changed (size, modification time or inode; a
//! Kubernetes Secret volume swaps a symlink, which changes the inode). A file that became
//! invalid refuses new connections, with the reason logged and counted, until it is fixed: a
//! server that kept the old credentials would not do what the file says.
//!
//! Unknown keys and bad values are errors that name the key; keys of the toolkit that meshmark
//! does not implement (`client_allowed_sans`, `rate_limit`) are refused rather than ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderName, HeaderValue};
use rustls::crypto::{ring as provider, CryptoProvider};
use rustls::pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use serde::Deserialize;

/// Largest web configuration file, certificate, key or CA file read: far above any real one,
/// and a file named by mistake (a log, /dev/zero) is refused instead of read whole.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The file as the toolkit defines it; every level refuses keys it does not know.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tls_server_config: Option<TlsFile>,
    #[serde(default)]
    http_server_config: Option<HttpFile>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<String>,
    key_file: Option<String>,
    /// The certificate itself (PEM), instead of `cert_file`.
    cert: Option<String>,
    /// The key itself (PEM), instead of `key_file`.
    key: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    /// The client CA itself (PEM), instead of `client_ca_file`.
    client_ca: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    /// The toolkit's switch for HTTP/2; meshmark serves HTTP/1.1 either way (what Prometheus
    /// scrapes with by default).
    #[allow(dead_code)]
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// A checked web configuration, ready to serve with.
#[derive(Debug, Default)]
pub struct WebConfig {
    /// `None`: plain HTTP.
    pub tls: Option<Arc<ServerConfig>>,
    /// User name -> bcrypt hash; empty: no authentication.
    pub users: BTreeMap<String, String>,
    /// Added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// The headers the toolkit lets a file set, and the values some of them must have.
const ALLOWED_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// The toolkit's `client_auth_type` values (Go's tls.ClientAuthType names).
const CLIENT_AUTH_TYPES: [&str; 5] = [
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
];

/// Reads and checks the file at `path`; the error names the file and what to fix.
pub fn load(path: &Path) -> Result<WebConfig, String> {
    let text = read_bounded(path)?;
    parse(&text, path.parent().unwrap_or(Path::new(".")))
        .map_err(|why| format!("invalid web configuration {}: {why}", path.display()))
}

/// Reads at most [`MAX_FILE_BYTES`] of a file; a larger one is an error.
fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_FILE_BYTES {
        return Err(format!(
            "{} is larger than {MAX_FILE_BYTES} bytes; name the web configuration, certificate, key or CA file itself",
            path.display()
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "{} is not UTF-8 text (byte {}); PEM and YAML files are text",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// Parses the file's text; relative paths in it are taken from `base` (the file's directory,
/// as the toolkit does).
pub fn parse(text: &str, base: &Path) -> Result<WebConfig, String> {
    let file: File = if text.trim().is_empty() {
        File::default()
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?
    };
    let mut config = WebConfig::default();
    if let Some(users) = file.basic_auth_users {
        for (user, hash) in &users {
            if user.contains(':') {
                return Err(format!(
                    "basic_auth_users: user name {user:?} holds ':', which basic authentication cannot carry"
                ));
            }
            // Checked now, not at the first request: a hash that cannot be parsed would
            // otherwise refuse that user forever, silently.
            hash.parse::<bcrypt::HashParts>().map_err(|e| {
                format!(
                    "basic_auth_users: {user}: not a bcrypt hash ({e}); make one with `htpasswd -nbBC 10 USER PASSWORD` and keep the part after the colon"
                )
            })?;
        }
        config.users = users;
    }
    if let Some(http) = file.http_server_config {
        for (name, value) in http.headers.unwrap_or_default() {
            config.headers.push(header(&name, &value)?);
        }
    }
    if let Some(tls) = file.tls_server_config {
        config.tls = tls_config(&tls, base)?;
    }
    Ok(config)
}

/// A header the toolkit allows, with a value it allows.
fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let Some(canonical) = ALLOWED_HEADERS
        .iter()
        .find(|allowed| allowed.eq_ignore_ascii_case(name))
    else {
        return Err(format!(
            "http_server_config.headers: {name:?} cannot be set; the headers that can are {}",
            ALLOWED_HEADERS.join(", ")
        ));
    };
    let fixed = match *canonical {
        "X-Content-Type-Options" => Some(&["nosniff"][..]),
        "X-Frame-Options" => Some(&["deny", "sameorigin"][..]),
        _ => None,
    };
    if let Some(allowed) = fixed {
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(value)) {
            return Err(format!(
                "http_server_config.headers: {canonical}: {value:?} is not allowed; use {}",
                allowed.join(" or ")
            ));
        }
    }
    let value = HeaderValue::from_str(value).map_err(|_| {
        format!(
            "http_server_config.headers: {canonical}: {value:?} holds characters a header cannot"
        )
    })?;
    let name = HeaderName::from_bytes(canonical.as_bytes())
        .expect("the allowed header names are valid header names");
    Ok((name, value))
}

fn tls_config(tls: &TlsFile, base: &Path) -> Result<Option<Arc<ServerConfig>>, String> {
    let cert = pem_source("cert", tls.cert.as_deref(), tls.cert_file.as_deref(), base)?;
    let key = pem_source("key", tls.key.as_deref(), tls.key_file.as_deref(), base)?;
    let (cert, key) = match (cert, key) {
        (None, None) => {
            // The toolkit treats an empty tls_server_config as no TLS; anything else set in it
            // without a certificate would be a silent mistake.
            let stray = tls.client_auth_type.is_some()
                || tls.client_ca_file.is_some()
                || tls.client_ca.is_some()
                || tls.min_version.is_some()
                || tls.max_version.is_some()
                || tls.cipher_suites.is_some()
                || tls.curve_preferences.is_some();
            if stray {
                return Err("tls_server_config: cert_file and key_file are missing; TLS options without a certificate would serve plain HTTP".into());
            }
            return Ok(None);
        }
        (Some(_), None) => return Err("tls_server_config: key_file (or key) is missing".into()),
        (None, Some(_)) => return Err("tls_server_config: cert_file (or cert) is missing".into()),
        (Some(cert), Some(key)) => (cert, key),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.1.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_server_config: {}: {e}", cert.0))?;
    if certs.is_empty() {
        return Err(format!(
            "tls_server_config: {}: no PEM certificate in it",
            cert.0
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key.1.as_bytes()).map_err(|e| {
        format!(
            "tls_server_config: {}: no PEM private key in it ({e})",
            key.0
        )
    })?;

    let mut crypto = provider::default_provider();
    if let Some(names) = &tls.cipher_suites {
        crypto.cipher_suites = cipher_suites(&crypto, names)?;
    }
    if let Some(names) = &tls.curve_preferences {
        crypto.kx_groups = curves(names)?;
    }
    let crypto = Arc::new(crypto);
    let min = version("min_version", tls.min_version.as_deref().unwrap_or("TLS12"))?;
    let max = version("max_version", tls.max_version.as_deref().unwrap_or("TLS13"))?;
    if min > max {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, v)| v)
            .collect();

    let client_ca = pem_source(
        "client_ca",
        tls.client_ca.as_deref(),
        tls.client_ca_file.as_deref(),
        base,
    )?;
    let auth = tls.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let verifier = client_verifier(auth, client_ca, &crypto)?;
    let mut config = ServerConfig::builder_with_provider(crypto)
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!("tls_server_config: the certificate and key do not go together: {e}")
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = tls.prefer_server_cipher_suites.unwrap_or(false);
    Ok(Some(Arc::new(config)))
}

/// PEM text given inline or by a file: (where it came from, the text).
fn pem_source(
    key: &str,
    inline: Option<&str>,
    file: Option<&str>,
    base: &Path,
) -> Result<Option<(String, String)>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!(
            "tls_server_config: {key} and {key}_file are both set; keep one"
        )),
        (Some(text), None) => Ok(Some((key.to_owned(), text.to_owned()))),
        (None, Some(file)) => {
            let path = resolve(base, file);
            let text =
                read_bounded(&path).map_err(|e| format!("tls_server_config: {key}_file: {e}"))?;
            Ok(Some((path.display().to_string(), text)))
        }
        (None, None) => Ok(None),
    }
}

/// Paths named in the file, relative to its directory.
fn resolve(base: &Path, file: &str) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

/// `TLS12` -> 12. rustls speaks TLS 1.2 and 1.3 only.
fn version(key: &str, text: &str) -> Result<u8, String> {
    match text {
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        "TLS10" | "TLS11" => Err(format!(
            "tls_server_config.{key}: {text} is not offered (TLS 1.0 and 1.1 are broken, and meshmark speaks TLS 1.2 and 1.3 only); use TLS12 or TLS13"
        )),
        other => Err(format!(
            "tls_server_config.{key}: {other:?} is not a TLS version; use TLS12 or TLS13"
        )),
    }
}

/// The TLS 1.2 suites named (Go's names, which are the IANA names rustls uses), in the file's
/// order; TLS 1.3 suites are not configurable, as in Go.
fn cipher_suites(
    crypto: &CryptoProvider,
    names: &[String],
) -> Result<Vec<rustls::SupportedCipherSuite>, String> {
    let tls12: Vec<(String, rustls::SupportedCipherSuite)> = crypto
        .cipher_suites
        .iter()
        .filter(|s| s.version().version == rustls::ProtocolVersion::TLSv1_2)
        .map(|s| (format!("{:?}", s.suite()), *s))
        .collect();
    let mut chosen = Vec::new();
    for name in names {
        let Some((_, suite)) = tls12.iter().find(|(n, _)| n == name) else {
            let known: Vec<&str> = tls12.iter().map(|(n, _)| n.as_str()).collect();
            return Err(format!(
                "tls_server_config.cipher_suites: {name:?} is not offered; the TLS 1.2 suites are {}",
                known.join(", ")
            ));
        };
        chosen.push(*suite);
    }
    chosen.extend(
        crypto
            .cipher_suites
            .iter()
            .filter(|s| s.version().version == rustls::ProtocolVersion::TLSv1_3),
    );
    Ok(chosen)
}

/// Go's curve names -> key exchange groups.
fn curves(names: &[String]) -> Result<Vec<&'static dyn rustls::crypto::SupportedKxGroup>, String> {
    names
        .iter()
        .map(|name| match name.as_str() {
            "X25519" => Ok(provider::kx_group::X25519),
            "CurveP256" => Ok(provider::kx_group::SECP256R1),
            "CurveP384" => Ok(provider::kx_group::SECP384R1),
            other => Err(format!(
                "tls_server_config.curve_preferences: {other:?} is not offered; use X25519, CurveP256 or CurveP384"
            )),
        })
        .collect()
}

fn client_verifier(
    auth: &str,
    client_ca: Option<(String, String)>,
    crypto: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    if !CLIENT_AUTH_TYPES.contains(&auth) {
        return Err(format!(
            "tls_server_config.client_auth_type: {auth:?} is not one of {}",
            CLIENT_AUTH_TYPES.join(", ")
        ));
    }
    let verifies = matches!(
        auth,
        "VerifyClientCertIfGiven" | "RequireAndVerifyClientCert"
    );
    match (verifies, client_ca) {
        (false, Some(_)) => Err(format!(
            "tls_server_config: client_ca_file is set but client_auth_type {auth} does not verify client certificates; use RequireAndVerifyClientCert (or VerifyClientCertIfGiven), or drop the CA"
        )),
        (true, None) => Err(format!(
            "tls_server_config: client_auth_type {auth} needs client_ca_file, the CA that signs the clients' certificates"
        )),
        (false, None) => Ok(match auth {
            "NoClientCert" => Arc::new(rustls::server::NoClientAuth),
            _ => Arc::new(AnyClientCert {
                mandatory: auth == "RequireAnyClientCert",
                algorithms: crypto.signature_verification_algorithms,
            }),
        }),
        (true, Some((from, pem))) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("tls_server_config: {from}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("tls_server_config: {from}: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("tls_server_config: {from}: no PEM certificate in it"));
            }
            let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crypto.clone());
            let builder = if auth == "VerifyClientCertIfGiven" {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            builder
                .build()
                .map_err(|e| format!("tls_server_config: {from}: {e}"))
        }
    }
}

/// Go's RequestClientCert and RequireAnyClientCert: a client certificate is asked for (and,
/// with `mandatory`, required) and its handshake signature checked, but no CA vouches for it.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The web configuration as of the latest connection: read again when the file, or a file it
/// names, changed since.
#[derive(Debug)]
pub struct WebConfigSource {
    path: PathBuf,
    cached: Mutex<Cached>,
}

/// The stamps the configuration was read at, and what reading it gave.
type Cached = (Vec<Stamp>, Result<Arc<WebConfig>, String>);

/// What tells that a file changed: (inode, size, modification time); `None` if unreadable.
type Stamp = Option<(u64, u64, std::time::SystemTime)>;

impl WebConfigSource {
    /// Loads the file once; an invalid file is an error for the caller to report.
    pub fn open(path: &Path) -> Result<WebConfigSource, String> {
        let config = load(path)?;
        let stamps = stamps(path);
        Ok(WebConfigSource {
            path: path.to_owned(),
            cached: Mutex::new((stamps, Ok(Arc::new(config)))),
        })
    }

    /// The configuration to serve a new connection with; `Err` while the file is invalid.
    pub fn current(&self) -> Result<Arc<WebConfig>, String> {
        let now = stamps(&self.path);
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if cached.0 != now {
            let reloaded = load(&self.path).map(Arc::new);
            match &reloaded {
                Ok(_) => tracing::info!(file = %self.path.display(), "web configuration reloaded"),
                Err(why) => {
                    tracing::error!(error = %why, "web configuration invalid; refusing connections until it is fixed")
                }
            }
            *cached = (now, reloaded);
        }
        cached.1.clone()
    }
}

/// Stamps of the file and of every file it names (read leniently: a file that cannot be
/// parsed is stamped alone, and loading it reports why).
fn stamps(path: &Path) -> Vec<Stamp> {
    let mut out = vec![stamp(path)];
    let named = read_bounded(path)
        .ok()
        .and_then(|text| serde_yaml_ng::from_str::<File>(&text).ok())
        .and_then(|file| file.tls_server_config);
    if let Some(tls) = named {
        let base = path.parent().unwrap_or(Path::new("."));
        for file in [&tls.cert_file, &tls.key_file, &tls.client_ca_file]
            .into_iter()
            .flatten()
        {
            out.push(stamp(&resolve(base, file)));
        }
    }
    out
}

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.size(), meta.modified().ok()?))
}

#[cfg(test)]
mod tests;
