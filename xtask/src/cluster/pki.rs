//! The node's certificates, made with openssl at every `up` (a second or two): one cluster CA
//! signs the API server's serving certificate, the kubelet's serving certificate (so a pod that
//! trusts the service account's `ca.crt`, as the agent does, can check the kubelet), and the
//! client certificates of the admin, the kubelet, the controller manager, the scheduler and the
//! API server's calls to the kubelet. Service-account tokens are signed with their own key pair.

use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, Result};

use crate::exec;

/// A certificate to make: file stem, subject, and (for serving certificates) the IP addresses
/// and DNS names it is valid for.
struct Cert<'a> {
    stem: &'a str,
    subject: String,
    ips: &'a [&'a str],
    dns: &'a [&'a str],
    server: bool,
}

/// Client identities: (file stem, common name, organisation).
pub const CLIENTS: &[(&str, &str, &str)] = &[
    ("admin", "meshmark-admin", "system:masters"),
    ("controller-manager", "system:kube-controller-manager", ""),
    ("scheduler", "system:kube-scheduler", ""),
    (
        "apiserver-kubelet-client",
        "kube-apiserver-kubelet-client",
        "system:masters",
    ),
];

/// Writes `ca.{crt,key}`, `sa.{key,pub}`, `apiserver`, `kubelet` (serving), `kubelet-client`
/// and one pair per [`CLIENTS`] entry into `dir`.
pub fn make(dir: &Path, node_name: &str, node_ip: &str, service_ip: &str) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let openssl = |args: &[&str]| {
        let mut cmd = Command::new("openssl");
        cmd.args(args).current_dir(dir);
        exec::output(&mut cmd).context("openssl (Debian package openssl)")
    };
    openssl(&["genrsa", "-out", "ca.key", "2048"])?;
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-days",
        "2",
        "-subj",
        "/CN=meshmark-cluster-ca",
        "-out",
        "ca.crt",
    ])?;
    openssl(&["genrsa", "-out", "sa.key", "2048"])?;
    openssl(&["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;

    let node_client = format!("/O=system:nodes/CN=system:node:{node_name}");
    let apiserver_ips = [node_ip, "127.0.0.1", service_ip];
    let node_ips = [node_ip];
    let node_names = [node_name];
    let mut certs = vec![
        Cert {
            stem: "apiserver",
            subject: "/CN=kube-apiserver".into(),
            ips: &apiserver_ips,
            dns: &[
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "localhost",
            ],
            server: true,
        },
        Cert {
            stem: "kubelet",
            subject: format!("/CN={node_name}"),
            ips: &node_ips,
            dns: &node_names,
            server: true,
        },
        Cert {
            stem: "kubelet-client",
            subject: node_client,
            ips: &[],
            dns: &[],
            server: false,
        },
    ];
    certs.extend(CLIENTS.iter().map(|(stem, cn, org)| Cert {
        stem,
        subject: if org.is_empty() {
            format!("/CN={cn}")
        } else {
            format!("/O={org}/CN={cn}")
        },
        ips: &[],
        dns: &[],
        server: false,
    }));
    for cert in &certs {
        let key = format!("{}.key", cert.stem);
        let csr = format!("{}.csr", cert.stem);
        let ext = format!("{}.ext", cert.stem);
        openssl(&["genrsa", "-out", &key, "2048"])?;
        openssl(&[
            "req",
            "-new",
            "-key",
            &key,
            "-subj",
            &cert.subject,
            "-out",
            &csr,
        ])?;
        fs::write(dir.join(&ext), extensions(cert)).context("writing an openssl extension file")?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &format!("{}.crt", cert.stem),
        ])?;
        let _ = fs::remove_file(dir.join(&csr));
        let _ = fs::remove_file(dir.join(&ext));
    }
    Ok(())
}

fn extensions(cert: &Cert) -> String {
    let usage = if cert.server {
        "serverAuth"
    } else {
        "clientAuth"
    };
    let mut text = format!(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage={usage}\n"
    );
    let names: Vec<String> = cert
        .ips
        .iter()
        .map(|ip| format!("IP:{ip}"))
        .chain(cert.dns.iter().map(|dns| format!("DNS:{dns}")))
        .collect();
    if !names.is_empty() {
        text.push_str(&format!("subjectAltName={}\n", names.join(",")));
    }
    text
}
