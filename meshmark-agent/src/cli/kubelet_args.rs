//! The kubelet options of `run` and `profile`, and what they come to: a [`PodMetadata`] that
//! names the pods and containers of each window, or nothing (pod UIDs only).

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::inventory::kubelet::{
    self, Kubelet, KubeletOptions, Verify, SERVICE_ACCOUNT_CA, SERVICE_ACCOUNT_TOKEN,
};
use crate::inventory::pod_metadata::PodMetadata;

/// Where namespace, pod and container names come from: this node's kubelet (docs/deploy.md).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct KubeletArgs {
    /// This node's kubelet, whose pod list (GET /pods) names the pods and containers: an
    /// https:// URL, or `none` for pod UIDs only [default: https://$NODE_IP:10250 when NODE_IP
    /// is set, else none].
    #[arg(long, env = "MESHMARK_KUBELET", value_name = "URL", value_parser = parse_target)]
    pub kubelet: Option<KubeletTarget>,
    /// File holding the bearer token for the kubelet, read again at every request (service
    /// account tokens rotate) [default: /var/run/secrets/kubernetes.io/serviceaccount/token,
    /// where it exists; else no token].
    #[arg(long, env = "MESHMARK_KUBELET_TOKEN", value_name = "FILE")]
    pub kubelet_token: Option<PathBuf>,
    /// PEM file of the CA certificates that signed the kubelet's serving certificate [default:
    /// /var/run/secrets/kubernetes.io/serviceaccount/ca.crt, the cluster CA]. Many kubelets
    /// serve a self-signed certificate that the cluster CA did not sign: see docs/deploy.md.
    #[arg(long, env = "MESHMARK_KUBELET_CA", value_name = "FILE")]
    pub kubelet_ca: Option<PathBuf>,
    /// Do not check the kubelet's certificate, so anyone who can answer at its address gets the
    /// token. Only for kubelets whose certificate no CA file at hand has signed.
    // Not clap's `conflicts_with`: it counts MESHMARK_KUBELET_INSECURE_SKIP_VERIFY=false as
    // given, so the exclusion is checked in `options`.
    #[arg(long, env = "MESHMARK_KUBELET_INSECURE_SKIP_VERIFY")]
    pub kubelet_insecure_skip_verify: bool,
}

/// `--kubelet`: a URL, or explicitly none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KubeletTarget {
    Url(String),
    None,
}

fn parse_target(text: &str) -> Result<KubeletTarget, String> {
    if text == "none" {
        return Ok(KubeletTarget::None);
    }
    kubelet::parse_url(text)
        .map(KubeletTarget::Url)
        .map_err(|why| format!("{why}, or `none`"))
}

impl KubeletArgs {
    /// The kubelet these options name, with `node_ip` (the NODE_IP variable) for the default
    /// address and `exists` to see whether the default token is mounted; `None` for no kubelet.
    pub fn options(
        &self,
        node_ip: Option<&str>,
        exists: impl Fn(&Path) -> bool,
    ) -> Result<Option<KubeletOptions>, String> {
        let url = match (&self.kubelet, node_ip.filter(|ip| !ip.trim().is_empty())) {
            (Some(KubeletTarget::Url(url)), _) => url.clone(),
            (Some(KubeletTarget::None), _) | (None, None) => return Ok(None),
            (None, Some(ip)) => kubelet::url_of_node(ip)?,
        };
        let token = match &self.kubelet_token {
            Some(path) => Some(path.clone()),
            None => Some(PathBuf::from(SERVICE_ACCOUNT_TOKEN)).filter(|p| exists(p)),
        };
        let verify = if self.kubelet_insecure_skip_verify {
            if let Some(ca) = &self.kubelet_ca {
                return Err(format!(
                    "--kubelet-ca {} and --kubelet-insecure-skip-verify exclude each other: \
                     check the kubelet's certificate against the CA, or skip the check, not both",
                    ca.display()
                ));
            }
            Verify::InsecureSkipVerify
        } else {
            Verify::Ca(
                self.kubelet_ca
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(SERVICE_ACCOUNT_CA)),
            )
        };
        Ok(Some(KubeletOptions {
            url,
            token,
            verify,
            timeout: kubelet::TIMEOUT,
        }))
    }

    /// The pod metadata of `run` and `profile`. An option the user gave that cannot work is an
    /// error (exit 2); a default that cannot (no cluster CA mounted) is a warning, and pods keep
    /// their UIDs only.
    pub fn pod_metadata(&self, node_ip: Option<&str>) -> Result<Option<PodMetadata>, String> {
        let Some(options) = self.options(node_ip, Path::exists)? else {
            info!("no kubelet (--kubelet, or NODE_IP for its default): pods are named by UID only");
            return Ok(None);
        };
        let url = options.url.clone();
        let insecure = options.verify == Verify::InsecureSkipVerify;
        let kubelet = match Kubelet::new(options) {
            Ok(kubelet) => kubelet,
            Err(error) if self.kubelet_ca.is_none() && !insecure => {
                warn!(kubelet = %url, %error, "no pod metadata: pods are named by UID only");
                return Ok(None);
            }
            Err(error) => return Err(error.0),
        };
        if insecure {
            warn!(kubelet = %url, "the kubelet's certificate is not checked (--kubelet-insecure-skip-verify)");
        }
        info!(kubelet = %url, "pod metadata from the kubelet's pod list");
        Ok(Some(PodMetadata::new(Box::new(kubelet))))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Args {
        #[command(flatten)]
        kubelet: KubeletArgs,
    }

    fn parse(args: &[&str]) -> Result<KubeletArgs, clap::Error> {
        Args::try_parse_from(std::iter::once("test").chain(args.iter().copied())).map(|a| a.kubelet)
    }

    fn mounted(_: &Path) -> bool {
        true
    }

    #[test]
    fn node_ip_gives_the_default_kubelet_and_none_turns_it_off() {
        let defaults = parse(&[]).unwrap();
        assert_eq!(defaults.options(None, mounted), Ok(None));
        assert_eq!(defaults.options(Some(""), mounted), Ok(None));
        let options = defaults
            .options(Some("10.0.0.11"), mounted)
            .unwrap()
            .unwrap();
        assert_eq!(
            options,
            KubeletOptions {
                url: "https://10.0.0.11:10250".into(),
                token: Some(SERVICE_ACCOUNT_TOKEN.into()),
                verify: Verify::Ca(SERVICE_ACCOUNT_CA.into()),
                timeout: kubelet::TIMEOUT,
            }
        );
        let off = parse(&["--kubelet", "none"]).unwrap();
        assert_eq!(off.options(Some("10.0.0.11"), mounted), Ok(None));
        let err = defaults.options(Some("node-1"), mounted).unwrap_err();
        assert!(err.contains("NODE_IP"), "{err}");
    }

    #[test]
    fn flags_name_the_kubelet_token_and_check() {
        let args = parse(&[
            "--kubelet",
            "https://127.0.0.1:8443",
            "--kubelet-token",
            "/run/token",
            "--kubelet-insecure-skip-verify",
        ])
        .unwrap();
        let options = args.options(Some("10.0.0.11"), mounted).unwrap().unwrap();
        assert_eq!(options.url, "https://127.0.0.1:8443");
        assert_eq!(options.token, Some("/run/token".into()));
        assert_eq!(options.verify, Verify::InsecureSkipVerify);
        // No token mounted and none named: the request goes without one.
        let bare = parse(&["--kubelet", "https://node"]).unwrap();
        let options = bare.options(None, |_| false).unwrap().unwrap();
        assert_eq!(
            (options.url.as_str(), options.token),
            ("https://node:10250", None)
        );
    }

    #[test]
    fn a_ca_and_skipping_the_check_exclude_each_other() {
        let both = parse(&[
            "--kubelet",
            "https://node",
            "--kubelet-ca",
            "ca.pem",
            "--kubelet-insecure-skip-verify",
        ])
        .unwrap();
        let err = both.options(None, mounted).unwrap_err();
        assert!(
            err.contains("exclude each other") && err.contains("ca.pem"),
            "{err}"
        );
        let err = parse(&["--kubelet", "http://10.0.0.11:10255"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("not an https:// URL") && err.contains("`none`"),
            "{err}"
        );
    }
}
