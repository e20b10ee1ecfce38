//! [`ChannelConfig`]: a decoded, validated view of a channel's `common.Config`.
//!
//! Peers, orderers and the CLI need typed answers from the config tree — which organizations
//! are members, their MSPs, anchor peers, the Raft consenters, the batch settings, the
//! capabilities — and the policy tree to evaluate. This module decodes every value it knows
//! once, checks what Fabric's `channelconfig` checks (hashing algorithm, batch sizes, MSPs,
//! consensus metadata), and refuses a tree that would leave a node guessing. It reads trees
//! written by GridLedger and by Fabric's own tools alike; organizations are found by their MSP
//! value, so a group may be named after the organization rather than its MSP id.

use std::collections::BTreeMap;
use std::fmt;

use gridledger_identity::{IdentityError, Msp, MspManager};
use gridledger_proto::{common, etcdraft, msp, orderer, protos};
use prost::Message;
use thiserror::Error;

use super::duration::parse_go_duration_ms;
use super::{
    ACLS_KEY, ANCHOR_PEERS_KEY, APPLICATION_GROUP, BATCH_SIZE_KEY, BATCH_TIMEOUT_KEY,
    BLOCK_DATA_HASHING_STRUCTURE_KEY, BLOCK_DATA_HASHING_WIDTH, CAPABILITIES_KEY, CHANNEL_GROUP,
    CONSENSUS_TYPE_KEY, ENDPOINTS_KEY, ETCDRAFT, HASHING_ALGORITHM_KEY, MSP_KEY,
    ORDERER_ADDRESSES_KEY, ORDERER_GROUP, SHA256, validate_channel_name,
};
use crate::genesis::{self, ConfigBlockError};
use crate::policy::{Evaluation, PolicyError, PolicyTree, SignedData};

/// Why a config tree is not a usable channel configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The block does not carry a config transaction.
    #[error("not a config block: {0}")]
    Block(#[from] ConfigBlockError),
    /// The channel id breaks Fabric's naming rule.
    #[error("invalid channel id: {0}")]
    ChannelId(String),
    /// `Config.channel_group` is absent.
    #[error("the config has no channel group")]
    NoChannelGroup,
    /// A group every channel needs is absent.
    #[error("the config has no group {0}")]
    MissingGroup(String),
    /// A value every channel needs is absent.
    #[error("the config has no value {0}")]
    MissingValue(String),
    /// A value's bytes are not the message its key names.
    #[error("value {path} is not a valid {message}: {source}")]
    Decode {
        /// Path of the value, e.g. `/Channel/Orderer/BatchSize`.
        path: String,
        /// The protobuf message expected there.
        message: &'static str,
        /// The decoder's error.
        source: prost::DecodeError,
    },
    /// A value decodes but its content is not acceptable.
    #[error("value {path}: {reason}")]
    Invalid {
        /// Path of the value.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An organization's MSP could not be set up.
    #[error("MSP of organization {path}: {source}")]
    Msp {
        /// Path of the organization group.
        path: String,
        /// The identity crate's error.
        source: Box<IdentityError>,
    },
    /// Two organization groups claim the same MSP id with different MSP definitions.
    #[error("MSP id {msp_id:?} is defined differently by {first} and {second}")]
    ConflictingMsp {
        /// The MSP id.
        msp_id: String,
        /// The first group defining it.
        first: String,
        /// The group that disagrees.
        second: String,
    },
    /// The ordering service runs a consensus type GridLedger does not implement.
    #[error("consensus type {0:?} is not supported; GridLedger orders with etcdraft")]
    UnsupportedConsensusType(String),
    /// The policies of the tree could not be built.
    #[error("policies: {0}")]
    Policy(#[from] PolicyError),
}

/// A member organization (`/Channel/Application/<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationConfig {
    /// The group key (configtxgen uses the organization's name; GridLedger its MSP id).
    pub name: String,
    /// The MSP id its identities carry.
    pub msp_id: String,
    /// Its anchor peers, in config order.
    pub anchor_peers: Vec<AnchorPeer>,
}

/// An anchor peer address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorPeer {
    /// Host name or IP.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// An organization running orderers (`/Channel/Orderer/<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrdererOrganizationConfig {
    /// The group key.
    pub name: String,
    /// The MSP id its identities carry.
    pub msp_id: String,
    /// Its orderers' client-facing addresses (`host:port`).
    pub endpoints: Vec<String>,
}

/// One Raft node of the ordering service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsenterConfig {
    /// Host other nodes dial.
    pub host: String,
    /// Cluster port.
    pub port: u16,
    /// PEM certificate it presents as TLS client.
    pub client_tls_cert: Vec<u8>,
    /// PEM certificate it presents as TLS server.
    pub server_tls_cert: Vec<u8>,
}

/// Raft options of the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdRaftOptions {
    /// Raft tick.
    pub tick_interval_ms: u64,
    /// Ticks before a follower campaigns.
    pub election_tick: u32,
    /// Ticks between heartbeats.
    pub heartbeat_tick: u32,
    /// Most in-flight append messages.
    pub max_inflight_blocks: u32,
    /// Bytes of blocks between snapshots.
    pub snapshot_interval_size_bytes: u32,
}

/// When the block cutter closes a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most transactions per block.
    pub max_message_count: u32,
    /// Hard limit on the serialized envelopes of one block.
    pub absolute_max_bytes: u32,
    /// Size at which a block is cut.
    pub preferred_max_bytes: u32,
    /// Time after the first pending transaction at which a block is cut.
    pub batch_timeout_ms: u64,
}

/// `orderer.ConsensusType.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsensusState {
    /// Ordering transactions.
    Normal,
    /// Only config transactions from orderer admins are accepted.
    Maintenance,
}

/// The ordering service of the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrdererConfig {
    /// `ConsensusType.type` ("etcdraft").
    pub consensus_type: String,
    /// `ConsensusType.state`.
    pub state: ConsensusState,
    /// The Raft nodes, in config order.
    pub consenters: Vec<ConsenterConfig>,
    /// Raft options, when the metadata carries them.
    pub options: Option<EtcdRaftOptions>,
    /// Block cutting.
    pub batch: BatchConfig,
    /// Orderer capabilities.
    pub capabilities: Vec<String>,
    /// Orderer organizations, by group key.
    pub organizations: Vec<OrdererOrganizationConfig>,
    /// Legacy `/Channel/OrdererAddresses` (empty in Fabric 2.x channels).
    pub global_addresses: Vec<String>,
}

impl OrdererConfig {
    /// Where clients reach the ordering service: the organizations' endpoints, or the legacy
    /// channel-wide addresses when no organization lists any.
    pub fn endpoints(&self) -> Vec<String> {
        let per_org: Vec<String> = self
            .organizations
            .iter()
            .flat_map(|o| o.endpoints.iter().cloned())
            .collect();
        if per_org.is_empty() {
            self.global_addresses.clone()
        } else {
            per_org
        }
    }
}

/// The application part of the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationConfig {
    /// Application capabilities.
    pub capabilities: Vec<String>,
    /// Member organizations, by group key.
    pub organizations: Vec<OrganizationConfig>,
    /// Resource → policy reference overrides (`ACLs` value).
    pub acls: BTreeMap<String, String>,
}

/// A decoded, validated channel configuration. See the [module documentation](self).
pub struct ChannelConfig {
    channel_id: String,
    config: common::Config,
    capabilities: Vec<String>,
    orderer: OrdererConfig,
    application: ApplicationConfig,
    msps: MspManager,
    policies: PolicyTree,
}

impl fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelConfig")
            .field("channel_id", &self.channel_id)
            .field("sequence", &self.config.sequence)
            .field("capabilities", &self.capabilities)
            .field("orderer", &self.orderer)
            .field("application", &self.application)
            .finish_non_exhaustive()
    }
}

/// Path of a child element, for messages.
fn child(path: &str, key: &str) -> String {
    format!("{path}/{key}")
}

fn decode_value<M: Message + Default>(
    group: &common::ConfigGroup,
    group_path: &str,
    key: &str,
    message: &'static str,
) -> Result<Option<M>, ConfigError> {
    match group.values.get(key) {
        None => Ok(None),
        Some(value) => M::decode(value.value.as_slice())
            .map(Some)
            .map_err(|source| ConfigError::Decode {
                path: child(group_path, key),
                message,
                source,
            }),
    }
}

fn require_value<M: Message + Default>(
    group: &common::ConfigGroup,
    group_path: &str,
    key: &str,
    message: &'static str,
) -> Result<M, ConfigError> {
    decode_value(group, group_path, key, message)?
        .ok_or_else(|| ConfigError::MissingValue(child(group_path, key)))
}

fn require_group<'a>(
    group: &'a common::ConfigGroup,
    group_path: &str,
    key: &str,
) -> Result<&'a common::ConfigGroup, ConfigError> {
    group
        .groups
        .get(key)
        .ok_or_else(|| ConfigError::MissingGroup(child(group_path, key)))
}

fn capability_names(
    group: &common::ConfigGroup,
    group_path: &str,
) -> Result<Vec<String>, ConfigError> {
    let caps: Option<common::Capabilities> =
        decode_value(group, group_path, CAPABILITIES_KEY, "common.Capabilities")?;
    Ok(caps
        .map(|c| c.capabilities.into_keys().collect())
        .unwrap_or_default())
}

/// The MSPs found so far, to build one `MspManager` and to catch conflicting definitions.
#[derive(Default)]
struct MspCollector {
    /// msp id → (group path that defined it, `MSPConfig` bytes).
    seen: BTreeMap<String, (String, Vec<u8>)>,
    msps: Vec<Msp>,
}

impl MspCollector {
    /// Decodes the `MSP` value of an organization group and returns its MSP id.
    fn add(&mut self, group: &common::ConfigGroup, path: &str) -> Result<String, ConfigError> {
        let raw = group
            .values
            .get(MSP_KEY)
            .ok_or_else(|| ConfigError::MissingValue(child(path, MSP_KEY)))?;
        let config =
            msp::MspConfig::decode(raw.value.as_slice()).map_err(|source| ConfigError::Decode {
                path: child(path, MSP_KEY),
                message: "msp.MSPConfig",
                source,
            })?;
        if config.r#type != 0 {
            return Err(ConfigError::Invalid {
                path: child(path, MSP_KEY),
                reason: format!(
                    "MSP type {} is not supported; only X.509 (FABRIC, type 0) MSPs are",
                    config.r#type
                ),
            });
        }
        let fabric = msp::FabricMspConfig::decode(config.config.as_slice()).map_err(|source| {
            ConfigError::Decode {
                path: child(path, MSP_KEY),
                message: "msp.FabricMSPConfig",
                source,
            }
        })?;
        let msp_id = fabric.name.clone();
        if msp_id.is_empty() {
            return Err(ConfigError::Invalid {
                path: child(path, MSP_KEY),
                reason: "the MSP has no name (MSP id)".to_string(),
            });
        }
        if let Some((first, bytes)) = self.seen.get(&msp_id) {
            if *bytes != raw.value {
                return Err(ConfigError::ConflictingMsp {
                    msp_id,
                    first: first.clone(),
                    second: path.to_string(),
                });
            }
            return Ok(msp_id);
        }
        let msp = Msp::from_fabric_config(&fabric).map_err(|source| ConfigError::Msp {
            path: path.to_string(),
            source: Box::new(source),
        })?;
        self.seen
            .insert(msp_id.clone(), (path.to_string(), raw.value.clone()));
        self.msps.push(msp);
        Ok(msp_id)
    }
}

fn batch_config(group: &common::ConfigGroup, path: &str) -> Result<BatchConfig, ConfigError> {
    let size: orderer::BatchSize = require_value(group, path, BATCH_SIZE_KEY, "orderer.BatchSize")?;
    let invalid = |reason: String| ConfigError::Invalid {
        path: child(path, BATCH_SIZE_KEY),
        reason,
    };
    if size.max_message_count == 0 {
        return Err(invalid("max_message_count is 0".to_string()));
    }
    if size.absolute_max_bytes == 0 {
        return Err(invalid("absolute_max_bytes is 0".to_string()));
    }
    if size.preferred_max_bytes > size.absolute_max_bytes {
        return Err(invalid(format!(
            "preferred_max_bytes ({}) is larger than absolute_max_bytes ({})",
            size.preferred_max_bytes, size.absolute_max_bytes
        )));
    }
    let timeout: orderer::BatchTimeout =
        require_value(group, path, BATCH_TIMEOUT_KEY, "orderer.BatchTimeout")?;
    let batch_timeout_ms =
        parse_go_duration_ms(&timeout.timeout).map_err(|e| ConfigError::Invalid {
            path: child(path, BATCH_TIMEOUT_KEY),
            reason: e.to_string(),
        })?;
    if batch_timeout_ms == 0 {
        return Err(ConfigError::Invalid {
            path: child(path, BATCH_TIMEOUT_KEY),
            reason: format!("timeout {:?} is not positive", timeout.timeout),
        });
    }
    Ok(BatchConfig {
        max_message_count: size.max_message_count,
        absolute_max_bytes: size.absolute_max_bytes,
        preferred_max_bytes: size.preferred_max_bytes,
        batch_timeout_ms,
    })
}

/// Decodes `ConsensusType` and its etcdraft metadata.
#[allow(clippy::type_complexity)]
fn consensus(
    group: &common::ConfigGroup,
    path: &str,
) -> Result<
    (
        String,
        ConsensusState,
        Vec<ConsenterConfig>,
        Option<EtcdRaftOptions>,
    ),
    ConfigError,
> {
    let value_path = child(path, CONSENSUS_TYPE_KEY);
    let ct: orderer::ConsensusType =
        require_value(group, path, CONSENSUS_TYPE_KEY, "orderer.ConsensusType")?;
    if ct.r#type != ETCDRAFT {
        return Err(ConfigError::UnsupportedConsensusType(ct.r#type));
    }
    let state = match orderer::consensus_type::State::try_from(ct.state) {
        Ok(orderer::consensus_type::State::Normal) => ConsensusState::Normal,
        Ok(orderer::consensus_type::State::Maintenance) => ConsensusState::Maintenance,
        Err(_) => {
            return Err(ConfigError::Invalid {
                path: value_path,
                reason: format!("unknown consensus state {}", ct.state),
            });
        }
    };
    let metadata = etcdraft::ConfigMetadata::decode(ct.metadata.as_slice()).map_err(|source| {
        ConfigError::Decode {
            path: value_path.clone(),
            message: "etcdraft.ConfigMetadata",
            source,
        }
    })?;
    if metadata.consenters.is_empty() {
        return Err(ConfigError::Invalid {
            path: value_path,
            reason: "the etcdraft metadata lists no consenters".to_string(),
        });
    }
    let mut consenters = Vec::with_capacity(metadata.consenters.len());
    for c in metadata.consenters {
        let port = u16::try_from(c.port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| ConfigError::Invalid {
                path: value_path.clone(),
                reason: format!("consenter {} has invalid port {}", c.host, c.port),
            })?;
        if c.host.is_empty() {
            return Err(ConfigError::Invalid {
                path: value_path,
                reason: "a consenter has an empty host".to_string(),
            });
        }
        consenters.push(ConsenterConfig {
            host: c.host,
            port,
            client_tls_cert: c.client_tls_cert,
            server_tls_cert: c.server_tls_cert,
        });
    }
    let options = match metadata.options {
        None => None,
        Some(o) => Some(EtcdRaftOptions {
            tick_interval_ms: parse_go_duration_ms(&o.tick_interval).map_err(|e| {
                ConfigError::Invalid {
                    path: value_path.clone(),
                    reason: format!("tick_interval: {e}"),
                }
            })?,
            election_tick: o.election_tick,
            heartbeat_tick: o.heartbeat_tick,
            max_inflight_blocks: o.max_inflight_blocks,
            snapshot_interval_size_bytes: o.snapshot_interval_size,
        }),
    };
    Ok((ct.r#type, state, consenters, options))
}

impl ChannelConfig {
    /// Decodes and validates `config` as the configuration of channel `channel_id` (the id
    /// comes from the config block's channel header; the tree itself does not hold it).
    pub fn from_config(
        channel_id: &str,
        config: &common::Config,
    ) -> Result<ChannelConfig, ConfigError> {
        validate_channel_name(channel_id).map_err(ConfigError::ChannelId)?;
        let root = config
            .channel_group
            .as_ref()
            .ok_or(ConfigError::NoChannelGroup)?;
        let root_path = format!("/{CHANNEL_GROUP}");

        let hashing: common::HashingAlgorithm = require_value(
            root,
            &root_path,
            HASHING_ALGORITHM_KEY,
            "common.HashingAlgorithm",
        )?;
        if hashing.name != SHA256 {
            return Err(ConfigError::Invalid {
                path: child(&root_path, HASHING_ALGORITHM_KEY),
                reason: format!("hashing algorithm {:?} is not SHA256", hashing.name),
            });
        }
        let structure: common::BlockDataHashingStructure = require_value(
            root,
            &root_path,
            BLOCK_DATA_HASHING_STRUCTURE_KEY,
            "common.BlockDataHashingStructure",
        )?;
        if structure.width != BLOCK_DATA_HASHING_WIDTH {
            return Err(ConfigError::Invalid {
                path: child(&root_path, BLOCK_DATA_HASHING_STRUCTURE_KEY),
                reason: format!(
                    "width {} is not {BLOCK_DATA_HASHING_WIDTH} (flat data hash)",
                    structure.width
                ),
            });
        }
        let capabilities = capability_names(root, &root_path)?;
        let global_addresses: Option<common::OrdererAddresses> = decode_value(
            root,
            &root_path,
            ORDERER_ADDRESSES_KEY,
            "common.OrdererAddresses",
        )?;

        let mut msps = MspCollector::default();

        let orderer_path = child(&root_path, ORDERER_GROUP);
        let orderer_group = require_group(root, &root_path, ORDERER_GROUP)?;
        let (consensus_type, state, consenters, options) = consensus(orderer_group, &orderer_path)?;
        let batch = batch_config(orderer_group, &orderer_path)?;
        let mut orderer_orgs = Vec::with_capacity(orderer_group.groups.len());
        for (name, group) in &orderer_group.groups {
            let path = child(&orderer_path, name);
            let msp_id = msps.add(group, &path)?;
            let endpoints: Option<common::OrdererAddresses> =
                decode_value(group, &path, ENDPOINTS_KEY, "common.OrdererAddresses")?;
            orderer_orgs.push(OrdererOrganizationConfig {
                name: name.clone(),
                msp_id,
                endpoints: endpoints.map(|e| e.addresses).unwrap_or_default(),
            });
        }
        let orderer = OrdererConfig {
            consensus_type,
            state,
            consenters,
            options,
            batch,
            capabilities: capability_names(orderer_group, &orderer_path)?,
            organizations: orderer_orgs,
            global_addresses: global_addresses.map(|a| a.addresses).unwrap_or_default(),
        };

        let app_path = child(&root_path, APPLICATION_GROUP);
        let app_group = require_group(root, &root_path, APPLICATION_GROUP)?;
        let mut organizations = Vec::with_capacity(app_group.groups.len());
        for (name, group) in &app_group.groups {
            let path = child(&app_path, name);
            let msp_id = msps.add(group, &path)?;
            let anchors: Option<protos::AnchorPeers> =
                decode_value(group, &path, ANCHOR_PEERS_KEY, "protos.AnchorPeers")?;
            let mut anchor_peers = Vec::new();
            for a in anchors.map(|a| a.anchor_peers).unwrap_or_default() {
                let port = u16::try_from(a.port)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| ConfigError::Invalid {
                        path: child(&path, ANCHOR_PEERS_KEY),
                        reason: format!("anchor peer {} has invalid port {}", a.host, a.port),
                    })?;
                anchor_peers.push(AnchorPeer { host: a.host, port });
            }
            organizations.push(OrganizationConfig {
                name: name.clone(),
                msp_id,
                anchor_peers,
            });
        }
        let acls: Option<protos::AcLs> =
            decode_value(app_group, &app_path, ACLS_KEY, "protos.ACLs")?;
        let application = ApplicationConfig {
            capabilities: capability_names(app_group, &app_path)?,
            organizations,
            acls: acls
                .map(|a| {
                    a.acls
                        .into_iter()
                        .map(|(resource, r)| (resource, r.policy_ref))
                        .collect()
                })
                .unwrap_or_default(),
        };

        let policies = PolicyTree::from_config_group(root)?;
        Ok(ChannelConfig {
            channel_id: channel_id.to_string(),
            config: config.clone(),
            capabilities,
            orderer,
            application,
            msps: MspManager::new(msps.msps),
            policies,
        })
    }

    /// Decodes the config carried by a config block (the genesis block or a later one).
    pub fn from_block(block: &common::Block) -> Result<ChannelConfig, ConfigError> {
        let (channel_id, config) = genesis::config_from_block(block)?;
        ChannelConfig::from_config(&channel_id, &config)
    }

    /// The channel id.
    pub fn channel_id(&self) -> &str {
        &self.channel_id
    }

    /// `Config.sequence`: how many config updates have been applied since genesis.
    pub fn sequence(&self) -> u64 {
        self.config.sequence
    }

    /// The tree this view was decoded from.
    pub fn config(&self) -> &common::Config {
        &self.config
    }

    /// Channel capabilities (`/Channel/Capabilities`).
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    /// The ordering service.
    pub fn orderer(&self) -> &OrdererConfig {
        &self.orderer
    }

    /// The application part: capabilities, member organizations, ACLs.
    pub fn application(&self) -> &ApplicationConfig {
        &self.application
    }

    /// Member (application) organizations.
    pub fn organizations(&self) -> &[OrganizationConfig] {
        &self.application.organizations
    }

    /// The member organization with this MSP id.
    pub fn organization(&self, msp_id: &str) -> Option<&OrganizationConfig> {
        self.application
            .organizations
            .iter()
            .find(|o| o.msp_id == msp_id)
    }

    /// The MSPs of every organization (application and orderer).
    pub fn msp_manager(&self) -> &MspManager {
        &self.msps
    }

    /// The channel's policies.
    pub fn policies(&self) -> &PolicyTree {
        &self.policies
    }

    /// Evaluates the policy at `path` (e.g. "/Channel/Application/Writers") over `signers`,
    /// validating identities with this channel's MSPs at `now_unix_secs`.
    pub fn evaluate_policy(
        &self,
        path: &str,
        signers: &[SignedData<'_>],
        now_unix_secs: u64,
    ) -> Result<Evaluation, PolicyError> {
        self.policies
            .evaluate(path, signers, &self.msps, now_unix_secs)
    }
}
