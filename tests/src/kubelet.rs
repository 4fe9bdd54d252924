//! A kubelet for tests: `GET /pods` over real TLS on loopback, with a certificate signed by a
//! CA made for the run, a bearer token checked against a file at every request (as the API
//! server would check a rotating service account token), and a record of every request.
//!
//! The pod list it serves is the recorded one in `tests/fixtures/kubelet-pods.json`, or any
//! other the test sets, and can be changed while it runs (a pod appearing on the node).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The recorded pod list of a node: an Istio pod with init, sidecar and debug containers
/// (containerd), a Linkerd pod (CRI-O), a native Istio sidecar and a pending pod.
pub fn recorded_pods() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kubelet-pods.json");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// The CA certificate in PEM, as `--kubelet-ca` reads it.
    pub fn pem(&self) -> String {
        self.issuer.as_ref().pem()
    }

    /// Writes [`TestCa::pem`] to `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.pem()).unwrap();
    }

    /// A serving certificate for `names` and its key, both in PEM, as a web configuration's
    /// cert_file and key_file hold them.
    pub fn serving_pem(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        self.signed_pem(CertificateParams::new(names).unwrap(), "test server")
    }

    /// A client certificate (for TLS client authentication) and its key, in PEM.
    pub fn client_pem(&self, name: &str) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        self.signed_pem(params, name)
    }

    fn signed_pem(&self, mut params: CertificateParams, name: &str) -> (String, String) {
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &*self.issuer).unwrap();
        (certificate.pem(), key.serialize_pem())
    }

    /// A serving certificate for `names` (IP addresses or host names) and its key.
    fn serving(&self, names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "test kubelet");
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &*self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (certificate.der().clone(), key)
    }
}

/// One request the kubelet received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The status it was answered with.
    pub status: u16,
}

#[derive(Default)]
struct State {
    pods: String,
    seen: Vec<Seen>,
}

/// The running kubelet; stops on drop.
pub struct TestKubelet {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How long the kubelet waits for a client's bytes before it drops the connection.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

impl TestKubelet {
    /// Serves `pods` on a free loopback port with a certificate for `names` signed by `ca`.
    /// With a `token` file, a request must carry `Authorization: Bearer <its content>`, read at
    /// that request; else 401.
    pub fn start(ca: &TestCa, names: &[&str], token: Option<PathBuf>, pods: String) -> TestKubelet {
        let (certificate, key) = ca.serving(names);
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate], key)
        .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            pods,
            seen: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::Builder::new()
                .name("test-kubelet".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        // One connection at a time is all the agent makes.
                        if let Ok(stream) = stream {
                            serve(stream, &config, token.as_deref(), &state);
                        }
                    }
                })
                .unwrap()
        };
        TestKubelet {
            address,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves `pods` from the next request on.
    pub fn set_pods(&self, pods: String) {
        self.state.lock().unwrap().pods = pods;
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

impl Drop for TestKubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers one connection: TLS, one request, one response, close. A client that refuses the
/// certificate ends the handshake, which is not the server's failure.
fn serve(
    stream: TcpStream,
    config: &Arc<rustls::ServerConfig>,
    token: Option<&Path>,
    state: &Mutex<State>,
) {
    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
    let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
    let Ok(connection) = rustls::ServerConnection::new(config.clone()) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let Some((path, authorization)) = read_request(&mut tls) else {
        return;
    };
    let expected = token.map(|file| {
        let token = std::fs::read_to_string(file).unwrap_or_default();
        format!("Bearer {}", token.trim())
    });
    let (status, body) = if path != "/pods" {
        (404, "404 page not found".to_owned())
    } else if expected.is_some() && authorization != expected {
        (401, "Unauthorized".to_owned())
    } else {
        (200, state.lock().unwrap().pods.clone())
    };
    state.lock().unwrap().seen.push(Seen {
        path,
        authorization,
        status,
    });
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let content_type = if status == 200 {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let _ = write!(
        tls,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

/// The path and `Authorization` header of a request, read up to its blank line.
fn read_request(tls: &mut impl std::io::Read) -> Option<(String, Option<String>)> {
    let mut reader = BufReader::new(tls);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?, parts.next()?.to_owned());
    if method != "GET" {
        return None;
    }
    let mut authorization = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            return Some((path, authorization));
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_list_is_a_pod_list() {
        let pods: serde_json::Value = serde_json::from_str(&recorded_pods()).unwrap();
        assert_eq!(pods["kind"], "PodList");
        assert_eq!(pods["items"].as_array().map(Vec::len), Some(4));
    }
}
