//! A real Prometheus (Debian's `prometheus`) on loopback for a test: started with the scrape
//! configuration the test writes, its storage in the test's scratch directory, and asked through
//! its query API.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::daemon::Daemon;
use crate::http::free_port;

/// A running Prometheus; SIGKILLed on drop like every [`Daemon`].
pub struct Prometheus {
    pub daemon: Daemon,
    pub address: SocketAddr,
}

impl Prometheus {
    /// Starts Prometheus in `dir` (configuration, storage and log there) with `scrape_configs`,
    /// the YAML list under that key; every job scrapes and evaluates each second.
    pub fn start(dir: &Path, scrape_configs: &str) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n{scrape_configs}"
            ),
        )
        .unwrap();
        Prometheus::start_with_config(dir, &config)
    }

    /// Starts Prometheus with a whole configuration file the test wrote (storage and log in
    /// `dir`), on a free loopback port.
    pub fn start_with_config(dir: &Path, config: &Path) -> Prometheus {
        let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let daemon = Daemon::spawn(
            "prometheus",
            Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("tsdb").display()
                ))
                .arg(format!("--web.listen-address={address}")),
            &dir.join("prometheus.log"),
        );
        Prometheus { daemon, address }
    }

    /// The instant query's result, when it has at least one series.
    pub fn query(&self, expr: &str) -> Option<Value> {
        crate::http::prometheus_query(self.address, expr, None, Duration::from_secs(5))
    }
}
