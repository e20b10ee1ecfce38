//! The peer's configuration file (TOML), with optional bootstrap chaincode definitions.
//!
//! Chaincode definitions come from the ledger: the `_lifecycle` namespace (see
//! `crate::lifecycle`), so every peer of a channel agrees on them. `[[chaincodes]]` entries here
//! are a local bootstrap for hand-written setups without the lifecycle: every member peer must
//! then carry the same ones (validation depends on them), and a definition committed through
//! the lifecycle replaces an entry of the same name. `gridledger up` writes none.

use gridledger_channels::policy;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// `gridledger peer start --config peer.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Node name, e.g. `peer0.dso` (logs, error details).
    pub name: String,
    /// The organization this peer belongs to.
    pub msp_id: String,
    /// gRPC listen address (Gateway, Endorser, Deliver).
    pub listen: SocketAddr,
    /// Address clients and other peers use to reach this peer (error details); default `listen`.
    #[serde(default)]
    pub external_endpoint: Option<String>,
    /// Where the ledgers live: `<data_dir>/channels/<channel>/`; genesis blocks to join are
    /// read from `<data_dir>/join/*.block` at start (while running, a peer joins through cscc
    /// `JoinChain`: `gridledger channel join`).
    pub data_dir: PathBuf,
    /// The peer's signing identity (endorsements, Deliver requests).
    pub signing_cert: PathBuf,
    pub signing_key: PathBuf,
    /// TLS server certificate and key.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// When set, clients must present a certificate issued by this CA (mutual TLS).
    #[serde(default)]
    pub tls_client_ca: Option<PathBuf>,
    /// The peer's local MSP: its organization's MSP folder as `gridledger crypto generate`
    /// writes it (`organizations/<MSP>/msp/`: `cacerts/`, `tlscacerts/`, optional
    /// `intermediatecerts/`, `crls/`). When set, it alone decides who is a member or an admin
    /// of the peer's organization for the peer-local functions (cscc `JoinChain` and
    /// `GetChannels`, chaincode install), as Fabric's local MSP does, so a peer that has
    /// joined no channel can be joined at run time. Default none: the definitions of the
    /// peer's organization in the channels it has joined decide.
    #[serde(default)]
    pub msp_dir: Option<PathBuf>,
    /// Bootstrap chaincode definitions per channel (see the module doc); the lifecycle's
    /// committed definitions take precedence.
    #[serde(default)]
    pub chaincodes: Vec<ChaincodeSpec>,
    /// Deadline for calls to other peers and orderers, milliseconds.
    #[serde(default = "default_rpc_timeout_ms")]
    pub rpc_timeout_ms: u64,
    /// The DSO's feasibility endorsement of energy trades (the DSO's peer only).
    #[serde(default)]
    pub feasibility: Option<crate::feasibility::FeasibilityConfig>,
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
    pub listen_address: SocketAddr,
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

fn default_rpc_timeout_ms() -> u64 {
    10_000
}

/// A chaincode definition on one channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaincodeSpec {
    pub channel: String,
    pub name: String,
    #[serde(default = "default_version")]
    pub version: String,
    /// Fabric signature-policy syntax, or a channel policy path such as
    /// `/Channel/Application/Endorsement` (the default).
    #[serde(default)]
    pub endorsement_policy: Option<String>,
    /// `host:port` of an external chaincode server (chaincode-as-a-service, plaintext HTTP/2):
    /// when set, the endorser dials it and speaks Fabric's shim protocol instead of running a
    /// chaincode compiled into the peer.
    #[serde(default)]
    pub address: Option<String>,
    /// Deadline of one execution on the external server, milliseconds (default 30 000).
    #[serde(default)]
    pub execute_timeout_ms: Option<u64>,
    /// With `address`: dial the server over TLS, trusting this CA certificate (PEM); the
    /// address's host is the server name checked.
    #[serde(default)]
    pub tls_ca_cert: Option<PathBuf>,
}

impl ChaincodeSpec {
    /// The external chaincode server this definition names, if any.
    pub fn external(&self) -> Option<crate::external::ExternalChaincode> {
        self.address
            .as_ref()
            .map(|address| crate::external::ExternalChaincode {
                address: address.clone(),
                execute_timeout: self
                    .execute_timeout_ms
                    .map(std::time::Duration::from_millis)
                    .unwrap_or(crate::external::DEFAULT_EXECUTE_TIMEOUT),
                dial_timeout: crate::external::DEFAULT_DIAL_TIMEOUT,
                tls_ca_cert: self.tls_ca_cert.clone(),
            })
    }
}

fn default_version() -> String {
    "1.0".into()
}

/// Why a peer configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid peer config {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid peer config: {0}")]
    Invalid(String),
}

impl PeerConfig {
    /// Reads and validates a config file; relative paths are resolved against its folder.
    pub fn load(path: &Path) -> Result<PeerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        PeerConfig::parse(&text, base).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.into(),
                source,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<PeerConfig, ConfigError> {
        let mut config: PeerConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: PathBuf::from("(text)"),
            source,
        })?;
        for p in [
            &mut config.data_dir,
            &mut config.signing_cert,
            &mut config.signing_key,
            &mut config.tls_cert,
            &mut config.tls_key,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        for p in [config.tls_client_ca.as_mut(), config.msp_dir.as_mut()]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        for cc in &mut config.chaincodes {
            if let Some(ca) = cc.tls_ca_cert.as_mut().filter(|p| p.is_relative()) {
                *ca = base.join(&*ca);
            }
        }
        if let Some(feasibility) = config.feasibility.as_mut() {
            feasibility.resolve_paths(base);
        }
        if let Some(ops) = config.operations.as_mut() {
            for p in [&mut ops.tls_cert, &mut ops.tls_key]
                .into_iter()
                .flatten()
                .chain(ops.tls_client_ca_certs.iter_mut())
            {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks names and policies.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() || self.msp_id.is_empty() {
            return Err(ConfigError::Invalid(
                "name and msp_id must not be empty".into(),
            ));
        }
        if let Some(ops) = &self.operations {
            if ops.tls_cert.is_some() != ops.tls_key.is_some() {
                return Err(ConfigError::Invalid(
                    "operations: tls_cert and tls_key go together".into(),
                ));
            }
            if !ops.tls_client_ca_certs.is_empty() && ops.tls_cert.is_none() {
                return Err(ConfigError::Invalid(
                    "operations: tls_client_ca_certs needs tls_cert and tls_key".into(),
                ));
            }
        }
        if self.rpc_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "rpc_timeout_ms must be at least 1".into(),
            ));
        }
        for cc in &self.chaincodes {
            if cc.address.as_deref().is_some_and(|a| a.trim().is_empty()) {
                return Err(ConfigError::Invalid(format!(
                    "chaincode {} on {}: address must be host:port",
                    cc.name, cc.channel
                )));
            }
            if cc.address.is_none() && (cc.tls_ca_cert.is_some() || cc.execute_timeout_ms.is_some())
            {
                return Err(ConfigError::Invalid(format!(
                    "chaincode {} on {}: tls_ca_cert and execute_timeout_ms need an address",
                    cc.name, cc.channel
                )));
            }
            if cc.execute_timeout_ms == Some(0) {
                return Err(ConfigError::Invalid(format!(
                    "chaincode {} on {}: execute_timeout_ms must be at least 1",
                    cc.name, cc.channel
                )));
            }
            if let Some(rule) = cc
                .endorsement_policy
                .as_deref()
                .filter(|r| !r.starts_with('/'))
            {
                policy::parse(rule).map_err(|e| {
                    ConfigError::Invalid(format!(
                        "chaincode {} on {}: endorsement policy {rule:?}: {e}",
                        cc.name, cc.channel
                    ))
                })?;
            }
        }
        Ok(())
    }

    /// The address other nodes and clients see in error details.
    pub fn endpoint(&self) -> String {
        self.external_endpoint
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "peer0.dso"
msp_id = "DSOMSP"
listen = "127.0.0.1:7051"
data_dir = "data"
signing_cert = "cert.pem"
signing_key = "key.pem"
tls_cert = "tls/server.crt"
tls_key = "tls/server.key"
"#;

    #[test]
    fn operations_section_is_optional_and_refuses_unknown_keys() {
        let config: PeerConfig = toml::from_str(MINIMAL).expect("valid");
        assert_eq!(config.operations, None);
        let text = format!("{MINIMAL}\n[operations]\nlisten_address = \"127.0.0.1:9443\"\n");
        let config: PeerConfig = toml::from_str(&text).expect("valid");
        assert_eq!(
            config.operations.map(|o| o.listen_address),
            Some(SocketAddr::from(([127, 0, 0, 1], 9443)))
        );
        let half: PeerConfig =
            toml::from_str(&format!("{text}tls_cert = \"ops.crt\"\n")).expect("parses");
        let err = half.validate().expect_err("a certificate without a key");
        assert!(err.to_string().contains("tls_key"), "{err}");
        let typo = format!("{text}tls_crt = \"ops.crt\"\n");
        let err = toml::from_str::<PeerConfig>(&typo).expect_err("unknown key refused");
        assert!(err.to_string().contains("tls_crt"), "{err}");
    }

    #[test]
    fn msp_dir_is_optional_and_resolved_against_the_config_folder() {
        let base = Path::new("/etc/gridledger");
        let config = PeerConfig::parse(MINIMAL, base).expect("valid");
        assert_eq!(config.msp_dir, None);
        let relative = MINIMAL.replace(
            "tls_key = \"tls/server.key\"\n",
            "tls_key = \"tls/server.key\"\nmsp_dir = \"org/msp\"\n",
        );
        let config = PeerConfig::parse(&relative, base).expect("valid");
        assert_eq!(config.msp_dir, Some(base.join("org/msp")));
        let absolute = relative.replace("\"org/msp\"", "\"/srv/dso/msp\"");
        let config = PeerConfig::parse(&absolute, base).expect("valid");
        assert_eq!(config.msp_dir, Some(PathBuf::from("/srv/dso/msp")));
    }
}
