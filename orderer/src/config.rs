//! The orderer's node configuration (`orderer.toml`): who it is, where it listens, where it
//! keeps its data, its TLS material and its limits.
//!
//! Batch rules (block size and timeout) are not here: they belong to each channel's
//! configuration (`Orderer/BatchSize`, `Orderer/BatchTimeout`) so every orderer of a channel
//! cuts the same blocks. Relative paths in the file are resolved against the file's folder.
//!
//! ```toml
//! name = "orderer0"
//! msp_id = "OrdererMSP"
//! listen_address = "127.0.0.1:7050"
//! data_dir = "data/orderer0"
//! signing_cert = "organizations/OrdererMSP/orderers/orderer0/msp/signcerts/cert.pem"
//! signing_key = "organizations/OrdererMSP/orderers/orderer0/msp/keystore/key.pem"
//!
//! [tls]
//! server_cert = "organizations/OrdererMSP/orderers/orderer0/tls/server.crt"
//! server_key = "organizations/OrdererMSP/orderers/orderer0/tls/server.key"
//! # Set to require client certificates issued by these CAs (mutual TLS).
//! client_ca_certs = []
//!
//! [limits]            # all optional; defaults shown
//! max_message_bytes = 104857600
//! submit_queue_depth = 1024
//! broadcast_pipeline_depth = 64
//! deliver_buffer_blocks = 16
//! max_concurrent_streams = 1024
//! deliver_time_window_s = 900
//!
//! [cluster]           # optional: other orderers of the channels' consenter sets
//! # CAs that issued the other consenters' TLS certificates; Raft messages and forwarded
//! # envelopes travel over mutual TLS checked against them (and against the channel config).
//! tls_ca_certs = ["organizations/OrdererMSP/tlsca/tlsca.pem"]
//!
//! [raft]              # optional
//! tick_ms = 100
//! max_uncommitted_bytes = 67108864
//! # Every this many written blocks, each orderer stores a Raft snapshot naming its tip block
//! # and discards its Raft log up to the tip; a consenter that lags behind the discarded part
//! # is sent the snapshot and pulls the blocks from the other consenters' Deliver.
//! snapshot_interval_blocks = 64
//! # The leader cuts a batch once no envelope arrived for this long (0: wait for the channel's
//! # BatchTimeout, as Fabric does).
//! idle_cut_ms = 5
//! ```

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why an orderer configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read orderer config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown or missing fields.
    #[error("orderer config {origin} is not valid TOML for an orderer: {message}")]
    Parse {
        /// The file, or "(text)" when parsed from a string.
        origin: String,
        /// The parser's message.
        message: String,
    },
    /// A field has a value outside what the orderer accepts.
    #[error("orderer config field `{field}` {problem}")]
    Invalid {
        /// The field, e.g. `limits.max_message_bytes`.
        field: &'static str,
        /// What is wrong, e.g. "must be at least 1".
        problem: String,
    },
}

/// The orderer node's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdererConfig {
    /// The node's name (logs, thread names), e.g. `orderer0`.
    pub name: String,
    /// The MSP the orderer's signing identity belongs to; it signs blocks as this MSP.
    pub msp_id: String,
    /// Where the gRPC server listens, `host:port` (port 0 picks a free port).
    pub listen_address: String,
    /// The node's data: `channels/<channel_id>/` (ledger and Raft log) and `join/`.
    pub data_dir: PathBuf,
    /// PEM certificate of the orderer's signing identity.
    pub signing_cert: PathBuf,
    /// PKCS#8 PEM P-256 private key of the signing identity.
    pub signing_key: PathBuf,
    /// TLS of the gRPC server.
    pub tls: TlsConfig,
    /// Bounds on messages, queues and streams.
    #[serde(default)]
    pub limits: Limits,
    /// Local Raft timing.
    #[serde(default)]
    pub raft: RaftConfig,
    /// The orderer-to-orderer transport.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// The operations endpoint (`/metrics`, `/healthz`, `/version`, `/logspec`); none
    /// without this section.
    #[serde(default)]
    pub operations: Option<OperationsConfig>,
}

/// `[operations]`: where the operations endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationsConfig {
    /// HTTP listen address, e.g. `127.0.0.1:9443` (required in the section; no default).
    pub listen_address: std::net::SocketAddr,
    /// TLS server certificate (PEM, chain first) and key; both or neither. Default none:
    /// plain HTTP.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM files) that clients' TLS certificates must chain to: when set
    /// (with `tls_cert`), every client must present one (mutual TLS). Default none. An
    /// orderer serves its channel participation API only with mutual TLS or on a loopback
    /// address.
    #[serde(default)]
    pub tls_client_ca_certs: Vec<PathBuf>,
    /// `/healthz` reports the node degraded once one of its certificates (its own, or one in
    /// the configuration of a channel it serves) expires within this many days. Default 30.
    #[serde(default = "default_certificate_expiry_warning_days")]
    pub certificate_expiry_warning_days: u32,
}

fn default_certificate_expiry_warning_days() -> u32 {
    30
}

/// The orderer-to-orderer transport's TLS trust.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// PEM CA certificates the other consenters' TLS certificates (server and client) chain
    /// to. Empty: this orderer can only serve channels with a single consenter.
    pub tls_ca_certs: Vec<PathBuf>,
}

/// The gRPC server's TLS material.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM server certificate (issued by the org's TLS CA).
    pub server_cert: PathBuf,
    /// PKCS#8 PEM key of the server certificate.
    pub server_key: PathBuf,
    /// PEM CA certificates client certificates must chain to; when any is set, clients must
    /// present a certificate (mutual TLS).
    #[serde(default)]
    pub client_ca_certs: Vec<PathBuf>,
}

/// Bounds that keep one client from exhausting the orderer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest gRPC message received or sent, in bytes (Fabric's default is 100 MiB). Keep it
    /// above every channel's AbsoluteMaxBytes.
    pub max_message_bytes: u32,
    /// Envelopes that may wait for consensus per channel; past it Broadcast answers
    /// SERVICE_UNAVAILABLE.
    pub submit_queue_depth: u32,
    /// Envelopes of one Broadcast stream that may be in flight before the orderer stops
    /// reading from the stream.
    pub broadcast_pipeline_depth: u32,
    /// Blocks buffered per Deliver stream ahead of a slow client.
    pub deliver_buffer_blocks: u32,
    /// Concurrent gRPC streams per connection.
    pub max_concurrent_streams: u32,
    /// How far a Deliver request's timestamp may be from the orderer's clock, in seconds
    /// (Fabric's `General.Authentication.TimeWindow`, 15 minutes).
    pub deliver_time_window_s: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_bytes: 100 * 1024 * 1024,
            submit_queue_depth: 1024,
            broadcast_pipeline_depth: 64,
            deliver_buffer_blocks: 16,
            max_concurrent_streams: 1024,
            deliver_time_window_s: 15 * 60,
        }
    }
}

/// Local Raft settings (election and heartbeat ticks come from the channel's etcdraft options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftConfig {
    /// Length of one Raft tick, in milliseconds.
    pub tick_ms: u64,
    /// Bytes of proposed but not yet committed entries the leader accepts before it refuses
    /// new proposals (answered SERVICE_UNAVAILABLE).
    pub max_uncommitted_bytes: u64,
    /// Written blocks between two Raft snapshots (each followed by a compaction of the Raft
    /// log up to the snapshot).
    pub snapshot_interval_blocks: u64,
    /// The leader cuts the pending batch once no envelope has reached it for this long, in
    /// milliseconds, instead of waiting for the channel's BatchTimeout: a lone transaction is
    /// ordered at once, while a steady stream still fills blocks up to BatchSize. 0 waits for
    /// BatchTimeout as Fabric does.
    pub idle_cut_ms: u64,
}

impl Default for RaftConfig {
    fn default() -> RaftConfig {
        RaftConfig {
            tick_ms: 100,
            max_uncommitted_bytes: 64 * 1024 * 1024,
            snapshot_interval_blocks: 64,
            idle_cut_ms: 5,
        }
    }
}

impl OrdererConfig {
    /// Reads, parses and validates `path`; relative paths inside are taken relative to the
    /// file's folder.
    pub fn load(path: &Path) -> Result<OrdererConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        OrdererConfig::parse(&text, base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                origin: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text; relative paths are resolved against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<OrdererConfig, ConfigError> {
        let mut config: OrdererConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: "(text)".to_string(),
            message: e.message().to_string(),
        })?;
        config.resolve_paths(base_dir);
        config.validate()?;
        Ok(config)
    }

    /// Makes every relative path absolute against `base_dir`.
    pub fn resolve_paths(&mut self, base_dir: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base_dir.join(&*p);
            }
        };
        resolve(&mut self.data_dir);
        resolve(&mut self.signing_cert);
        resolve(&mut self.signing_key);
        resolve(&mut self.tls.server_cert);
        resolve(&mut self.tls.server_key);
        self.tls.client_ca_certs.iter_mut().for_each(resolve);
        self.cluster.tls_ca_certs.iter_mut().for_each(resolve);
        if let Some(ops) = self.operations.as_mut() {
            ops.tls_cert.iter_mut().for_each(resolve);
            ops.tls_key.iter_mut().for_each(resolve);
            ops.tls_client_ca_certs.iter_mut().for_each(resolve);
        }
    }

    /// Checks every field without touching the files it names.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, problem: &str| ConfigError::Invalid {
            field,
            problem: problem.to_string(),
        };
        if self.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        if self.msp_id.trim().is_empty() {
            return Err(invalid("msp_id", "must not be empty"));
        }
        check_listen_address(&self.listen_address)?;
        if let Some(ops) = &self.operations {
            if ops.tls_cert.is_some() != ops.tls_key.is_some() {
                return Err(invalid("operations.tls_cert", "goes together with tls_key"));
            }
            if !ops.tls_client_ca_certs.is_empty() && ops.tls_cert.is_none() {
                return Err(invalid(
                    "operations.tls_client_ca_certs",
                    "needs tls_cert and tls_key",
                ));
            }
        }
        for (field, path) in [
            ("data_dir", &self.data_dir),
            ("signing_cert", &self.signing_cert),
            ("signing_key", &self.signing_key),
            ("tls.server_cert", &self.tls.server_cert),
            ("tls.server_key", &self.tls.server_key),
        ] {
            if path.as_os_str().is_empty() {
                return Err(invalid(field, "must name a path"));
            }
        }
        if self
            .tls
            .client_ca_certs
            .iter()
            .any(|p| p.as_os_str().is_empty())
        {
            return Err(invalid(
                "tls.client_ca_certs",
                "must not contain an empty path",
            ));
        }
        let l = &self.limits;
        if l.max_message_bytes < 1024 {
            return Err(invalid(
                "limits.max_message_bytes",
                "must be at least 1024 bytes",
            ));
        }
        for (field, value, max) in [
            ("limits.submit_queue_depth", l.submit_queue_depth, 1_000_000),
            (
                "limits.broadcast_pipeline_depth",
                l.broadcast_pipeline_depth,
                100_000,
            ),
            (
                "limits.deliver_buffer_blocks",
                l.deliver_buffer_blocks,
                10_000,
            ),
            (
                "limits.max_concurrent_streams",
                l.max_concurrent_streams,
                1_000_000,
            ),
        ] {
            if value == 0 || value > max {
                return Err(ConfigError::Invalid {
                    field,
                    problem: format!("must be between 1 and {max}, not {value}"),
                });
            }
        }
        if l.deliver_time_window_s == 0 {
            return Err(invalid(
                "limits.deliver_time_window_s",
                "must be at least 1",
            ));
        }
        if !(1..=60_000).contains(&self.raft.tick_ms) {
            return Err(ConfigError::Invalid {
                field: "raft.tick_ms",
                problem: format!("must be between 1 and 60000, not {}", self.raft.tick_ms),
            });
        }
        if self.raft.max_uncommitted_bytes < 1024 {
            return Err(invalid(
                "raft.max_uncommitted_bytes",
                "must be at least 1024 bytes",
            ));
        }
        if self.raft.snapshot_interval_blocks == 0 {
            return Err(invalid(
                "raft.snapshot_interval_blocks",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// `host:port` with a numeric port; the host is resolved later, when binding.
fn check_listen_address(address: &str) -> Result<(), ConfigError> {
    let invalid = |problem: String| ConfigError::Invalid {
        field: "listen_address",
        problem,
    };
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(invalid(format!("'{address}' is not host:port")));
    };
    if host.is_empty() {
        return Err(invalid(format!("'{address}' has no host")));
    }
    if port.parse::<u16>().is_err() {
        return Err(invalid(format!("'{address}' has no valid port (0-65535)")));
    }
    // A literal address must parse; a name is checked for shape only.
    if host.starts_with('[') || host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        (host.trim_start_matches('[').trim_end_matches(']'), 0u16)
            .to_socket_addrs()
            .map_err(|e| invalid(format!("'{address}': {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "orderer0"
msp_id = "OrdererMSP"
listen_address = "127.0.0.1:7050"
data_dir = "data"
signing_cert = "cert.pem"
signing_key = "key.pem"
[tls]
server_cert = "tls/server.crt"
server_key = "tls/server.key"
"#;

    #[test]
    fn minimal_config_takes_defaults_and_resolves_paths() {
        let config = OrdererConfig::parse(MINIMAL, Path::new("/etc/gl")).expect("valid");
        assert_eq!(config.data_dir, Path::new("/etc/gl/data"));
        assert_eq!(config.tls.server_key, Path::new("/etc/gl/tls/server.key"));
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.raft.tick_ms, 100);
        assert_eq!(config.raft.snapshot_interval_blocks, 64);
        assert!(config.tls.client_ca_certs.is_empty());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = format!("{MINIMAL}\n[limits]\nmax_mesage_bytes = 10\n");
        let err = OrdererConfig::parse(&text, Path::new(".")).expect_err("typo refused");
        assert!(err.to_string().contains("max_mesage_bytes"), "{err}");
    }

    #[test]
    fn operations_section_is_optional_and_strict() {
        let config = OrdererConfig::parse(MINIMAL, Path::new(".")).expect("valid");
        assert_eq!(config.operations, None);
        let text = format!("{MINIMAL}\n[operations]\nlisten_address = \"127.0.0.1:9443\"\n");
        let config = OrdererConfig::parse(&text, Path::new(".")).expect("valid");
        assert_eq!(
            config.operations.map(|o| o.listen_address.to_string()),
            Some("127.0.0.1:9443".to_owned())
        );
        let half = format!("{text}tls_cert = \"ops.crt\"\n");
        match OrdererConfig::parse(&half, Path::new(".")) {
            Err(ConfigError::Invalid { field, .. }) => assert_eq!(field, "operations.tls_cert"),
            other => panic!("a certificate without a key must be refused, got {other:?}"),
        }
        let tls = format!("{half}tls_key = \"ops.key\"\n");
        let config = OrdererConfig::parse(&tls, Path::new("/etc/gl")).expect("valid");
        assert_eq!(
            config.operations.and_then(|o| o.tls_key),
            Some(PathBuf::from("/etc/gl/ops.key"))
        );
        let mtls = format!("{tls}tls_client_ca_certs = [\"clients.pem\"]\n");
        let config = OrdererConfig::parse(&mtls, Path::new("/etc/gl")).expect("valid");
        assert_eq!(
            config.operations.map(|o| o.tls_client_ca_certs),
            Some(vec![PathBuf::from("/etc/gl/clients.pem")])
        );
        let no_tls = format!("{text}tls_client_ca_certs = [\"clients.pem\"]\n");
        match OrdererConfig::parse(&no_tls, Path::new(".")) {
            Err(ConfigError::Invalid { field, .. }) => {
                assert_eq!(field, "operations.tls_client_ca_certs")
            }
            other => panic!("client CAs without TLS must be refused, got {other:?}"),
        }
        let text = format!("{text}listen_adress = \"127.0.0.1:9444\"\n");
        let err = OrdererConfig::parse(&text, Path::new(".")).expect_err("typo refused");
        assert!(err.to_string().contains("listen_adress"), "{err}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            (
                MINIMAL.replace("127.0.0.1:7050", "127.0.0.1"),
                "listen_address",
            ),
            (
                MINIMAL.replace("127.0.0.1:7050", "127.0.0.1:99999"),
                "listen_address",
            ),
            (MINIMAL.replace("\"orderer0\"", "\"  \""), "name"),
            (format!("{MINIMAL}\n[raft]\ntick_ms = 0\n"), "raft.tick_ms"),
            (
                format!("{MINIMAL}\n[raft]\nsnapshot_interval_blocks = 0\n"),
                "raft.snapshot_interval_blocks",
            ),
            (
                format!("{MINIMAL}\n[limits]\nsubmit_queue_depth = 0\n"),
                "limits.submit_queue_depth",
            ),
        ];
        for (text, field) in cases {
            match OrdererConfig::parse(&text, Path::new(".")) {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected {field} to be refused, got {other:?}"),
            }
        }
    }
}
