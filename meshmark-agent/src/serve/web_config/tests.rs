use super::*;

/// A CA and a serving certificate signed by it, as PEM: (ca, cert, key).
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &*ca)
        .unwrap();
    (ca.as_ref().pem(), cert.pem(), key.serialize_pem())
}

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("meshmark-web-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        let (ca, cert, key) = certificates();
        std::fs::write(path.join("ca.pem"), ca).unwrap();
        std::fs::write(path.join("cert.pem"), cert).unwrap();
        std::fs::write(path.join("key.pem"), key).unwrap();
        Dir(path)
    }

    fn write(&self, text: &str) -> PathBuf {
        let path = self.0.join("web.yml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn error_of(dir: &Dir, text: &str) -> String {
    load(&dir.write(text)).expect_err(text)
}

/// A bcrypt hash at the lowest cost, as htpasswd would write it.
fn hash() -> String {
    bcrypt::hash_with_result("secret", 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY)
}

#[test]
fn a_node_exporter_file_loads_with_paths_relative_to_it() {
    let dir = Dir::new("full");
    let config = load(&dir.write(&format!(
        "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  \
         min_version: TLS13\n  curve_preferences: [X25519, CurveP256]\n\
         http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    \
         Strict-Transport-Security: max-age=31536000\n\
         basic_auth_users:\n  prometheus: {}\n",
        hash()
    )))
    .unwrap();
    let tls = config.tls.expect("TLS on");
    assert_eq!(tls.alpn_protocols, [b"http/1.1".to_vec()]);
    assert_eq!(config.users.len(), 1);
    assert_eq!(config.headers.len(), 2);
    assert_eq!(config.headers[1].0.as_str(), "x-frame-options");
}

#[test]
fn empty_file_and_empty_sections_are_plain_http_without_auth() {
    let dir = Dir::new("empty");
    for text in [
        "",
        "\n# nothing\n",
        "tls_server_config: {}\nbasic_auth_users: {}\n",
    ] {
        let config = load(&dir.write(text)).unwrap();
        assert!(config.tls.is_none() && config.users.is_empty(), "{text:?}");
    }
}

#[test]
fn every_mistake_is_named() {
    let dir = Dir::new("mistakes");
    let cases: &[(&str, &str)] = &[
        ("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  client_auth: x\n", "unknown field `client_auth`"),
        ("basic_auth_user:\n  a: b\n", "unknown field `basic_auth_user`"),
        ("tls_server_config:\n  client_allowed_sans: [a]\n", "unknown field `client_allowed_sans`"),
        ("rate_limit:\n  interval: 1s\n", "unknown field `rate_limit`"),
        ("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  client_auth_type: RequireClientCert\n", "not one of NoClientCert"),
        ("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  client_auth_type: RequireAndVerifyClientCert\n", "needs client_ca_file"),
        ("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  client_ca_file: ca.pem\n", "does not verify client certificates"),
        ("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  min_version: TLS10\n", "TLS12 or TLS13"),
        ("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  min_version: TLS13\n  max_version: TLS12\n", "min_version is above max_version"),
        ("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n", "TLS_RSA_WITH_RC4_128_SHA\" is not offered"),
        ("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  curve_preferences: [CurveP521]\n", "use X25519, CurveP256 or CurveP384"),
        ("tls_server_config:\n  cert_file: cert.pem\n", "key_file (or key) is missing"),
        ("tls_server_config:\n  client_auth_type: RequireAndVerifyClientCert\n", "cert_file and key_file are missing"),
        ("tls_server_config:\n  cert_file: missing.pem\n  key_file: key.pem\n", "missing.pem"),
        ("tls_server_config:\n  cert_file: key.pem\n  key_file: key.pem\n", "no PEM certificate"),
        ("tls_server_config:\n  cert_file: cert.pem\n  key_file: cert.pem\n", "no PEM private key"),
        ("basic_auth_users:\n  prometheus: secret\n", "prometheus: not a bcrypt hash"),
        ("basic_auth_users:\n  \"a:b\": x\n", "holds ':'"),
        ("http_server_config:\n  headers:\n    Server: meshmark\n", "\"Server\" cannot be set"),
        ("http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n", "use nosniff"),
        ("tls_server_config: [\n", "line"),
    ];
    for (text, expected) in cases {
        let error = error_of(&dir, text);
        assert!(error.contains(expected), "{text:?}: {error}");
        assert!(error.contains("web.yml"), "names the file: {error}");
    }
}

#[test]
fn a_huge_file_is_refused_unread() {
    let error = load(Path::new("/dev/zero")).unwrap_err();
    assert!(error.contains("larger than 1048576 bytes"), "{error}");
}

#[test]
fn changes_apply_at_the_next_connection_and_a_broken_file_refuses() {
    let dir = Dir::new("reload");
    let path = dir.write("basic_auth_users: {}\n");
    let source = WebConfigSource::open(&path).unwrap();
    assert!(source.current().unwrap().users.is_empty());
    let first = source.current().unwrap();
    assert!(
        Arc::ptr_eq(&first, &source.current().unwrap()),
        "not read again unchanged"
    );

    std::fs::write(
        &path,
        format!("basic_auth_users:\n  prometheus: {}\n", hash()),
    )
    .unwrap();
    assert_eq!(source.current().unwrap().users.len(), 1);

    std::fs::write(&path, "basic_auth_users:\n  prometheus: plain\n").unwrap();
    let error = source.current().unwrap_err();
    assert!(error.contains("not a bcrypt hash"), "{error}");

    // A renewed certificate (same configuration file) is picked up too.
    std::fs::write(
        &path,
        "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n",
    )
    .unwrap();
    assert!(source.current().unwrap().tls.is_some());
    std::fs::write(
        dir.0.join("cert.pem"),
        "not a certificate, and longer than before\n",
    )
    .unwrap();
    let error = source.current().unwrap_err();
    assert!(error.contains("no PEM certificate"), "{error}");
}
