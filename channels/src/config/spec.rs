//! The declarative channel file: what a channel admin writes to describe a channel.
//!
//! A TOML file names the channel, its member organizations (MSP id, MSP folder, anchor peers),
//! the ordering service (organizations, Raft consenters, batch settings) and optional policy and
//! capability overrides. Defaults follow `configtxgen`'s sample profile, so a minimal file only
//! lists organizations and orderers. Paths are relative to the folder holding the file.
//!
//! ```toml
//! name = "market"
//!
//! [orderer]
//! batch_timeout_ms = 2000
//! [[orderer.organizations]]
//! msp_id = "OrdererMSP"
//! msp_dir = "organizations/OrdererMSP/msp"
//! endpoints = ["127.0.0.1:7050"]
//! [[orderer.consenters]]
//! host = "127.0.0.1"
//! port = 7050
//! client_tls_cert = "organizations/OrdererMSP/orderers/orderer0/tls/server.crt"
//! server_tls_cert = "organizations/OrdererMSP/orderers/orderer0/tls/server.crt"
//!
//! [[organizations]]
//! msp_id = "DSOMSP"
//! msp_dir = "organizations/DSOMSP/msp"
//! anchor_peers = ["127.0.0.1:7051"]
//! ```
//!
//! Policy strings are either implicit-meta rules ("ANY Readers", "MAJORITY Admins") or Fabric
//! signature-policy expressions ("OR('DSOMSP.admin', 'RetailerMSP.admin')"); a rule starting
//! with ANY, ALL or MAJORITY, or without parentheses, is read as implicit-meta. Every field name is checked (`deny_unknown_fields`), so a typo is an error
//! rather than a silently ignored setting.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gridledger_identity::IdentityError;
use gridledger_proto::common;
use serde::Deserialize;
use thiserror::Error;

use super::{
    ADMINS_POLICY, BLOCK_VALIDATION_POLICY, ENDORSEMENT_POLICY, ETCDRAFT,
    LIFECYCLE_ENDORSEMENT_POLICY, MAX_CHANNEL_NAME_LEN, READERS_POLICY, V2_0, WRITERS_POLICY,
    validate_channel_name, validate_config_key,
};
use crate::policy::{self, PolicyParseError};

/// Why a channel file could not be read, validated or turned into a config tree.
#[derive(Debug, Error)]
pub enum SpecError {
    /// The channel file itself could not be read.
    #[error("cannot read channel file {path}: {source}")]
    ReadFile {
        /// The file named by the caller.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// Not valid TOML, a wrong type, a missing field or an unknown field (with line and column).
    #[error("malformed channel file: {0}")]
    Toml(#[from] toml::de::Error),
    /// The channel name breaks Fabric's naming rule.
    #[error("invalid channel name: {0}")]
    ChannelName(String),
    /// No `[[organizations]]`: a channel without members cannot do anything.
    #[error("the channel has no organizations; add at least one [[organizations]] entry")]
    NoOrganizations,
    /// No `[[orderer.organizations]]`.
    #[error("[orderer] has no organizations; add at least one [[orderer.organizations]] entry")]
    NoOrdererOrganizations,
    /// No `[[orderer.consenters]]`: Raft needs at least one node.
    #[error("[orderer] has no consenters; add at least one [[orderer.consenters]] entry")]
    NoConsenters,
    /// An MSP id is not a valid config key.
    #[error("{section}: invalid MSP id {msp_id:?}: {reason}")]
    InvalidMspId {
        /// Where the id appears.
        section: &'static str,
        /// The id as written.
        msp_id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The same MSP id is listed twice in one section.
    #[error("{section}: MSP id {msp_id:?} is listed more than once")]
    DuplicateMspId {
        /// Where the duplicate appears.
        section: &'static str,
        /// The repeated id.
        msp_id: String,
    },
    /// An MSP id is both an orderer and an application organization but with different folders.
    #[error(
        "MSP {msp_id:?} is listed as orderer organization with msp_dir {orderer_dir} and as \
         organization with msp_dir {application_dir}; one MSP id must have one MSP"
    )]
    ConflictingMspDir {
        /// The MSP id.
        msp_id: String,
        /// Its folder under `[[orderer.organizations]]`.
        orderer_dir: PathBuf,
        /// Its folder under `[[organizations]]`.
        application_dir: PathBuf,
    },
    /// `[orderer] type` is not one GridLedger runs.
    #[error("[orderer] type {0:?} is not supported; GridLedger orders with \"etcdraft\"")]
    UnsupportedOrdererType(String),
    /// Inconsistent batch settings.
    #[error("[orderer] batch settings: {0}")]
    BatchSize(String),
    /// Invalid Raft options.
    #[error("[orderer.etcdraft]: {0}")]
    EtcdRaft(String),
    /// A consenter entry is unusable.
    #[error("[[orderer.consenters]] #{index} ({host}:{port}): {reason}")]
    Consenter {
        /// Position in the list, from 1.
        index: usize,
        /// Its host.
        host: String,
        /// Its port.
        port: u16,
        /// What is wrong.
        reason: String,
    },
    /// An anchor peer or orderer endpoint is not `host:port`.
    #[error("{location}: invalid address {address:?}: {reason}")]
    Address {
        /// Where it appears, e.g. `organizations[DSOMSP].anchor_peers`.
        location: String,
        /// The address as written.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A policy string does not parse; the parser's message carries the position.
    #[error("{location}: invalid policy {rule:?}: {source}")]
    Policy {
        /// Where it appears, e.g. `organizations[DSOMSP].policies.Endorsement`.
        location: String,
        /// The rule as written.
        rule: String,
        /// The parser's error.
        source: PolicyParseError,
    },
    /// A policy string parses but cannot be used where it is written.
    #[error("{location}: policy {rule:?} cannot be used here: {reason}")]
    PolicyPlacement {
        /// Where it appears.
        location: String,
        /// The rule as written.
        rule: String,
        /// Why it does not fit.
        reason: String,
    },
    /// A capability name is empty, malformed or repeated.
    #[error("{location}: invalid capability {name:?}: {reason}")]
    Capability {
        /// The section, e.g. `application.capabilities`.
        location: String,
        /// The capability as written.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An ACL entry is malformed.
    #[error("application.acls: {resource:?} = {policy:?}: {reason}")]
    Acl {
        /// The resource name.
        resource: String,
        /// The policy reference.
        policy: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file or folder named in the channel file does not exist.
    #[error("{what}: {path} does not exist")]
    MissingFile {
        /// What the path is for, e.g. `organizations[DSOMSP].msp_dir`.
        what: String,
        /// The path after resolving it against the channel file's folder.
        path: PathBuf,
    },
    /// A file named in the channel file exists but could not be read.
    #[error("{what}: cannot read {path}: {source}")]
    ReadInput {
        /// What the path is for.
        what: String,
        /// The resolved path.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// A TLS certificate file does not hold a PEM certificate.
    #[error("{what}: {path} does not contain a PEM certificate")]
    NotPemCertificate {
        /// What the path is for.
        what: String,
        /// The resolved path.
        path: PathBuf,
    },
    /// An MSP folder could not be loaded.
    #[error("cannot load the MSP of {msp_id} from {dir}: {source}")]
    Msp {
        /// The organization.
        msp_id: String,
        /// The resolved folder.
        dir: PathBuf,
        /// The identity crate's error.
        source: Box<IdentityError>,
    },
}

/// A whole channel file. See the [module documentation](self) for an example.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// The channel id: `[a-z][a-z0-9.-]*`, at most 249 characters.
    pub name: String,
    /// Channel-wide policies and capabilities (`/Channel`).
    #[serde(default)]
    pub channel: ChannelSection,
    /// The ordering service (`/Channel/Orderer`).
    pub orderer: OrdererSpec,
    /// Application-wide policies, capabilities and ACLs (`/Channel/Application`).
    #[serde(default)]
    pub application: ApplicationSpec,
    /// The member organizations (`/Channel/Application/<MSPID>`).
    #[serde(default)]
    pub organizations: Vec<OrganizationSpec>,
}

/// `[channel]`: the root group's policies and capabilities.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSection {
    /// Channel capabilities; default `["V2_0"]`.
    #[serde(default = "default_capabilities")]
    pub capabilities: Vec<String>,
    /// Policy overrides.
    #[serde(default)]
    pub policies: ChannelPolicies,
}

impl Default for ChannelSection {
    fn default() -> Self {
        ChannelSection {
            capabilities: default_capabilities(),
            policies: ChannelPolicies::default(),
        }
    }
}

/// `[channel.policies]`; unset entries take configtxgen's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelPolicies {
    /// Default "ANY Readers".
    #[serde(rename = "Readers", alias = "readers")]
    pub readers: Option<String>,
    /// Default "ANY Writers".
    #[serde(rename = "Writers", alias = "writers")]
    pub writers: Option<String>,
    /// Default "MAJORITY Admins".
    #[serde(rename = "Admins", alias = "admins")]
    pub admins: Option<String>,
}

/// `[orderer]`: the ordering service of the channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdererSpec {
    /// Consensus type; only "etcdraft" is supported (the default).
    #[serde(rename = "type", default = "default_orderer_type")]
    pub orderer_type: String,
    /// Organizations running orderers (`/Channel/Orderer/<MSPID>`).
    #[serde(default)]
    pub organizations: Vec<OrdererOrganizationSpec>,
    /// The Raft nodes.
    #[serde(default)]
    pub consenters: Vec<ConsenterSpec>,
    /// Most transactions in one block; default 500.
    #[serde(default = "default_max_message_count")]
    pub max_message_count: u32,
    /// No block may be larger than this (serialized envelopes); default 10 MiB.
    #[serde(default = "default_absolute_max_bytes")]
    pub absolute_max_bytes: u32,
    /// A block is cut once it reaches this size; default 2 MiB.
    #[serde(default = "default_preferred_max_bytes")]
    pub preferred_max_bytes: u32,
    /// A block is cut this long after its first transaction arrived; default 2000 ms.
    #[serde(default = "default_batch_timeout_ms")]
    pub batch_timeout_ms: u64,
    /// Raft options.
    #[serde(default)]
    pub etcdraft: EtcdRaftSpec,
    /// Orderer capabilities; default `["V2_0"]`.
    #[serde(default = "default_capabilities")]
    pub capabilities: Vec<String>,
    /// Policy overrides.
    #[serde(default)]
    pub policies: OrdererPolicies,
}

/// `[orderer.policies]`; unset entries take configtxgen's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdererPolicies {
    /// Default "ANY Readers".
    #[serde(rename = "Readers", alias = "readers")]
    pub readers: Option<String>,
    /// Default "ANY Writers".
    #[serde(rename = "Writers", alias = "writers")]
    pub writers: Option<String>,
    /// Default "MAJORITY Admins".
    #[serde(rename = "Admins", alias = "admins")]
    pub admins: Option<String>,
    /// Who must sign blocks; default "ANY Writers".
    #[serde(rename = "BlockValidation", alias = "block_validation")]
    pub block_validation: Option<String>,
}

/// `[[orderer.organizations]]`: an organization that runs orderers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdererOrganizationSpec {
    /// The MSP id; also the organization's group name.
    pub msp_id: String,
    /// Its MSP folder (cacerts/, tlscacerts/, …), relative to the channel file.
    pub msp_dir: PathBuf,
    /// Its orderers' client-facing addresses, `host:port`.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Policy overrides.
    #[serde(default)]
    pub policies: OrdererOrgPolicies,
}

/// `[orderer.organizations.policies]`; defaults are configtxgen's sample orderer org.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdererOrgPolicies {
    /// Default `OR('<MSPID>.member')`.
    #[serde(rename = "Readers", alias = "readers")]
    pub readers: Option<String>,
    /// Default `OR('<MSPID>.member')`.
    #[serde(rename = "Writers", alias = "writers")]
    pub writers: Option<String>,
    /// Default `OR('<MSPID>.admin')`.
    #[serde(rename = "Admins", alias = "admins")]
    pub admins: Option<String>,
}

/// `[[orderer.consenters]]`: one Raft node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsenterSpec {
    /// Host other consenters dial.
    pub host: String,
    /// Its cluster port.
    pub port: u16,
    /// PEM certificate the node presents as a TLS client, relative to the channel file.
    pub client_tls_cert: PathBuf,
    /// PEM certificate the node presents as a TLS server, relative to the channel file.
    pub server_tls_cert: PathBuf,
}

/// `[orderer.etcdraft]`: Raft options, defaults as Fabric's sample.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdRaftSpec {
    /// Raft tick; default 500 ms.
    #[serde(default = "default_tick_interval_ms")]
    pub tick_interval_ms: u64,
    /// Ticks without a heartbeat before a follower campaigns; default 10.
    #[serde(default = "default_election_tick")]
    pub election_tick: u32,
    /// Ticks between leader heartbeats; default 1.
    #[serde(default = "default_heartbeat_tick")]
    pub heartbeat_tick: u32,
    /// Most in-flight append messages during optimistic replication; default 5.
    #[serde(default = "default_max_inflight_blocks")]
    pub max_inflight_blocks: u32,
    /// Bytes of blocks between Raft snapshots; default 16 MiB.
    #[serde(default = "default_snapshot_interval_size_bytes")]
    pub snapshot_interval_size_bytes: u32,
}

impl Default for EtcdRaftSpec {
    fn default() -> Self {
        EtcdRaftSpec {
            tick_interval_ms: default_tick_interval_ms(),
            election_tick: default_election_tick(),
            heartbeat_tick: default_heartbeat_tick(),
            max_inflight_blocks: default_max_inflight_blocks(),
            snapshot_interval_size_bytes: default_snapshot_interval_size_bytes(),
        }
    }
}

/// `[application]`: application-wide policies, capabilities and ACLs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationSpec {
    /// Application capabilities; default `["V2_0"]`.
    #[serde(default = "default_capabilities")]
    pub capabilities: Vec<String>,
    /// Policy overrides.
    #[serde(default)]
    pub policies: ApplicationPolicies,
    /// Resource → policy reference, e.g. `"_lifecycle/CommitChaincodeDefinition" =
    /// "/Channel/Application/Writers"`; the `ACLs` value is written only when this is not empty.
    #[serde(default)]
    pub acls: BTreeMap<String, String>,
}

impl Default for ApplicationSpec {
    fn default() -> Self {
        ApplicationSpec {
            capabilities: default_capabilities(),
            policies: ApplicationPolicies::default(),
            acls: BTreeMap::new(),
        }
    }
}

/// `[application.policies]`; unset entries take configtxgen's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationPolicies {
    /// Default "ANY Readers".
    #[serde(rename = "Readers", alias = "readers")]
    pub readers: Option<String>,
    /// Default "ANY Writers".
    #[serde(rename = "Writers", alias = "writers")]
    pub writers: Option<String>,
    /// Default "MAJORITY Admins".
    #[serde(rename = "Admins", alias = "admins")]
    pub admins: Option<String>,
    /// Default "MAJORITY Endorsement".
    #[serde(rename = "Endorsement", alias = "endorsement")]
    pub endorsement: Option<String>,
    /// Default "MAJORITY Endorsement".
    #[serde(rename = "LifecycleEndorsement", alias = "lifecycle_endorsement")]
    pub lifecycle_endorsement: Option<String>,
}

/// `[[organizations]]`: a member organization of the channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganizationSpec {
    /// The MSP id; also the organization's group name.
    pub msp_id: String,
    /// Its MSP folder (cacerts/, tlscacerts/, …), relative to the channel file.
    pub msp_dir: PathBuf,
    /// Peers other organizations' peers gossip with, `host:port`.
    #[serde(default)]
    pub anchor_peers: Vec<String>,
    /// Policy overrides.
    #[serde(default)]
    pub policies: OrgPolicies,
}

/// `[organizations.policies]`; defaults are configtxgen's sample peer org.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgPolicies {
    /// Default `OR('<MSPID>.admin', '<MSPID>.peer', '<MSPID>.client')`.
    #[serde(rename = "Readers", alias = "readers")]
    pub readers: Option<String>,
    /// Default `OR('<MSPID>.admin', '<MSPID>.client')`.
    #[serde(rename = "Writers", alias = "writers")]
    pub writers: Option<String>,
    /// Default `OR('<MSPID>.admin')`.
    #[serde(rename = "Admins", alias = "admins")]
    pub admins: Option<String>,
    /// Default `OR('<MSPID>.peer')`.
    #[serde(rename = "Endorsement", alias = "endorsement")]
    pub endorsement: Option<String>,
}

fn default_capabilities() -> Vec<String> {
    vec![V2_0.to_string()]
}
fn default_orderer_type() -> String {
    ETCDRAFT.to_string()
}
fn default_max_message_count() -> u32 {
    500
}
fn default_absolute_max_bytes() -> u32 {
    10 * 1024 * 1024
}
fn default_preferred_max_bytes() -> u32 {
    2 * 1024 * 1024
}
fn default_batch_timeout_ms() -> u64 {
    2_000
}
fn default_tick_interval_ms() -> u64 {
    500
}
fn default_election_tick() -> u32 {
    10
}
fn default_heartbeat_tick() -> u32 {
    1
}
fn default_max_inflight_blocks() -> u32 {
    5
}
fn default_snapshot_interval_size_bytes() -> u32 {
    16 * 1024 * 1024
}

/// A policy string after parsing: which kind of `common.Policy` it becomes.
#[derive(Debug, Clone)]
pub(crate) enum ParsedPolicy {
    /// "ANY Readers", "MAJORITY Admins", …
    ImplicitMeta(common::ImplicitMetaPolicy),
    /// "OR('DSOMSP.admin', …)", …
    Signature(common::SignaturePolicyEnvelope),
}

impl ParsedPolicy {
    /// Parses `rule`, choosing the grammar as the module docs describe; errors name `location`.
    pub(crate) fn parse(location: &str, rule: &str) -> Result<ParsedPolicy, SpecError> {
        // Signature policies always have parentheses; implicit-meta rules never do.
        let first_word = rule.split_whitespace().next().unwrap_or("");
        let is_implicit_meta = ["ANY", "ALL", "MAJORITY"]
            .iter()
            .any(|w| first_word.eq_ignore_ascii_case(w))
            || (!rule.trim().is_empty() && !rule.contains('('));
        let result = if is_implicit_meta {
            policy::parse_implicit_meta(rule).map(ParsedPolicy::ImplicitMeta)
        } else {
            policy::parse(rule).map(ParsedPolicy::Signature)
        };
        result.map_err(|source| SpecError::Policy {
            location: location.to_string(),
            rule: rule.to_string(),
            source,
        })
    }

    /// The `common.Policy` a `ConfigPolicy` carries.
    pub(crate) fn to_policy(&self) -> common::Policy {
        use prost::Message;
        match self {
            ParsedPolicy::ImplicitMeta(p) => common::Policy {
                r#type: common::policy::PolicyType::ImplicitMeta as i32,
                value: p.encode_to_vec(),
            },
            ParsedPolicy::Signature(p) => common::Policy {
                r#type: common::policy::PolicyType::Signature as i32,
                value: p.encode_to_vec(),
            },
        }
    }
}

/// One policy of a group after defaults were applied: (name, rule, location for errors).
pub(crate) struct PolicyEntry {
    pub(crate) name: &'static str,
    pub(crate) rule: String,
    pub(crate) location: String,
}

fn entry(section: &str, name: &'static str, set: &Option<String>, default: &str) -> PolicyEntry {
    PolicyEntry {
        name,
        rule: set.clone().unwrap_or_else(|| default.to_string()),
        location: format!("{section}.{name}"),
    }
}

impl ChannelPolicies {
    pub(crate) fn entries(&self) -> Vec<PolicyEntry> {
        let s = "channel.policies";
        vec![
            entry(s, READERS_POLICY, &self.readers, "ANY Readers"),
            entry(s, WRITERS_POLICY, &self.writers, "ANY Writers"),
            entry(s, ADMINS_POLICY, &self.admins, "MAJORITY Admins"),
        ]
    }
}

impl OrdererPolicies {
    pub(crate) fn entries(&self) -> Vec<PolicyEntry> {
        let s = "orderer.policies";
        vec![
            entry(s, READERS_POLICY, &self.readers, "ANY Readers"),
            entry(s, WRITERS_POLICY, &self.writers, "ANY Writers"),
            entry(s, ADMINS_POLICY, &self.admins, "MAJORITY Admins"),
            entry(
                s,
                BLOCK_VALIDATION_POLICY,
                &self.block_validation,
                "ANY Writers",
            ),
        ]
    }
}

impl ApplicationPolicies {
    pub(crate) fn entries(&self) -> Vec<PolicyEntry> {
        let s = "application.policies";
        vec![
            entry(s, READERS_POLICY, &self.readers, "ANY Readers"),
            entry(s, WRITERS_POLICY, &self.writers, "ANY Writers"),
            entry(s, ADMINS_POLICY, &self.admins, "MAJORITY Admins"),
            entry(
                s,
                ENDORSEMENT_POLICY,
                &self.endorsement,
                "MAJORITY Endorsement",
            ),
            entry(
                s,
                LIFECYCLE_ENDORSEMENT_POLICY,
                &self.lifecycle_endorsement,
                "MAJORITY Endorsement",
            ),
        ]
    }
}

impl OrdererOrgPolicies {
    pub(crate) fn entries(&self, msp_id: &str) -> Vec<PolicyEntry> {
        let s = format!("orderer.organizations[{msp_id}].policies");
        vec![
            entry(
                &s,
                READERS_POLICY,
                &self.readers,
                &format!("OR('{msp_id}.member')"),
            ),
            entry(
                &s,
                WRITERS_POLICY,
                &self.writers,
                &format!("OR('{msp_id}.member')"),
            ),
            entry(
                &s,
                ADMINS_POLICY,
                &self.admins,
                &format!("OR('{msp_id}.admin')"),
            ),
        ]
    }
}

impl OrgPolicies {
    pub(crate) fn entries(&self, msp_id: &str) -> Vec<PolicyEntry> {
        let s = format!("organizations[{msp_id}].policies");
        vec![
            entry(
                &s,
                READERS_POLICY,
                &self.readers,
                &format!("OR('{msp_id}.admin', '{msp_id}.peer', '{msp_id}.client')"),
            ),
            entry(
                &s,
                WRITERS_POLICY,
                &self.writers,
                &format!("OR('{msp_id}.admin', '{msp_id}.client')"),
            ),
            entry(
                &s,
                ADMINS_POLICY,
                &self.admins,
                &format!("OR('{msp_id}.admin')"),
            ),
            entry(
                &s,
                ENDORSEMENT_POLICY,
                &self.endorsement,
                &format!("OR('{msp_id}.peer')"),
            ),
        ]
    }
}

/// Parses the policies of a group; organization groups have no sub-groups, so an implicit-meta
/// rule there could never be satisfied and is rejected.
pub(crate) fn parse_policies(
    entries: &[PolicyEntry],
    organization: bool,
) -> Result<Vec<(&'static str, ParsedPolicy)>, SpecError> {
    entries
        .iter()
        .map(|e| {
            let parsed = ParsedPolicy::parse(&e.location, &e.rule)?;
            if organization && matches!(parsed, ParsedPolicy::ImplicitMeta(_)) {
                return Err(SpecError::PolicyPlacement {
                    location: e.location.clone(),
                    rule: e.rule.clone(),
                    reason: "an organization has no sub-groups for an implicit-meta policy to \
                             combine; write a signature policy such as OR('Org.admin')"
                        .to_string(),
                });
            }
            Ok((e.name, parsed))
        })
        .collect()
}

/// Splits `host:port` (IPv6 hosts in brackets); the port must be 1–65535.
pub(crate) fn parse_host_port(address: &str) -> Result<(String, u16), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| "expected host:port".to_string())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err("the host is empty".to_string());
    }
    if host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(format!("host {host:?} contains a space or '/'"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port {port:?} is not a number from 1 to 65535"))?;
    if port == 0 {
        return Err("port 0 is not a usable port".to_string());
    }
    Ok((host.to_string(), port))
}

fn check_capabilities(location: &str, capabilities: &[String]) -> Result<(), SpecError> {
    let mut seen = BTreeSet::new();
    for name in capabilities {
        let fail = |reason: String| SpecError::Capability {
            location: location.to_string(),
            name: name.clone(),
            reason,
        };
        check_capability_name(name).map_err(fail)?;
        if !seen.insert(name.as_str()) {
            return Err(fail("listed twice".to_string()));
        }
    }
    Ok(())
}

/// Capability names are keys inside a `Capabilities` value, not config element keys, and
/// Fabric's own are written with underscores (`V2_0`, `V1_4_2`): letters, digits, '.', '-' and
/// '_', at most 249 characters.
fn check_capability_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".to_string());
    }
    if name.len() > MAX_CHANNEL_NAME_LEN {
        return Err(format!(
            "name {name:?} is longer than {MAX_CHANNEL_NAME_LEN} characters"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "name {name:?} contains {bad:?}; only letters, digits, '.', '-' and '_' are allowed"
        ));
    }
    Ok(())
}

fn check_msp_id(section: &'static str, msp_id: &str) -> Result<(), SpecError> {
    validate_config_key(msp_id).map_err(|reason| SpecError::InvalidMspId {
        section,
        msp_id: msp_id.to_string(),
        reason,
    })
}

fn check_addresses(location: String, addresses: &[String]) -> Result<(), SpecError> {
    for address in addresses {
        parse_host_port(address).map_err(|reason| SpecError::Address {
            location: location.clone(),
            address: address.clone(),
            reason,
        })?;
    }
    Ok(())
}

impl ChannelSpec {
    /// Parses a channel file's text and validates it (files are not touched).
    pub fn parse(text: &str) -> Result<ChannelSpec, SpecError> {
        let spec: ChannelSpec = toml::from_str(text)?;
        spec.validate()?;
        Ok(spec)
    }

    /// Reads and validates a channel file (the files it names are checked by
    /// [`ChannelSpec::to_config`], relative to `path`'s folder).
    pub fn load(path: &Path) -> Result<ChannelSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        ChannelSpec::parse(&text)
    }

    /// Checks everything that does not need the file system: names, duplicate MSP ids, the
    /// orderer (type, consenters, batch sizes, Raft options), addresses, capabilities, ACLs,
    /// and that every policy string (including the defaults) parses.
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_channel_name(&self.name).map_err(SpecError::ChannelName)?;

        if self.organizations.is_empty() {
            return Err(SpecError::NoOrganizations);
        }
        let mut application_dirs: BTreeMap<&str, &Path> = BTreeMap::new();
        for org in &self.organizations {
            check_msp_id("organizations", &org.msp_id)?;
            if application_dirs
                .insert(org.msp_id.as_str(), org.msp_dir.as_path())
                .is_some()
            {
                return Err(SpecError::DuplicateMspId {
                    section: "organizations",
                    msp_id: org.msp_id.clone(),
                });
            }
            check_addresses(
                format!("organizations[{}].anchor_peers", org.msp_id),
                &org.anchor_peers,
            )?;
            parse_policies(&org.policies.entries(&org.msp_id), true)?;
        }

        let orderer = &self.orderer;
        if orderer.orderer_type != ETCDRAFT {
            return Err(SpecError::UnsupportedOrdererType(
                orderer.orderer_type.clone(),
            ));
        }
        if orderer.organizations.is_empty() {
            return Err(SpecError::NoOrdererOrganizations);
        }
        let mut orderer_ids = BTreeSet::new();
        for org in &orderer.organizations {
            check_msp_id("orderer.organizations", &org.msp_id)?;
            if !orderer_ids.insert(org.msp_id.as_str()) {
                return Err(SpecError::DuplicateMspId {
                    section: "orderer.organizations",
                    msp_id: org.msp_id.clone(),
                });
            }
            if let Some(dir) = application_dirs.get(org.msp_id.as_str()) {
                if *dir != org.msp_dir.as_path() {
                    return Err(SpecError::ConflictingMspDir {
                        msp_id: org.msp_id.clone(),
                        orderer_dir: org.msp_dir.clone(),
                        application_dir: dir.to_path_buf(),
                    });
                }
            }
            check_addresses(
                format!("orderer.organizations[{}].endpoints", org.msp_id),
                &org.endpoints,
            )?;
            parse_policies(&org.policies.entries(&org.msp_id), true)?;
        }
        self.validate_consenters()?;
        self.validate_batch()?;
        self.validate_etcdraft()?;

        check_capabilities("channel.capabilities", &self.channel.capabilities)?;
        check_capabilities("orderer.capabilities", &orderer.capabilities)?;
        check_capabilities("application.capabilities", &self.application.capabilities)?;
        parse_policies(&self.channel.policies.entries(), false)?;
        parse_policies(&orderer.policies.entries(), false)?;
        parse_policies(&self.application.policies.entries(), false)?;
        for (resource, policy) in &self.application.acls {
            let fail = |reason: &str| SpecError::Acl {
                resource: resource.clone(),
                policy: policy.clone(),
                reason: reason.to_string(),
            };
            if resource.trim().is_empty() {
                return Err(fail("the resource name is empty"));
            }
            if policy.trim().is_empty() {
                return Err(fail("the policy reference is empty"));
            }
        }
        Ok(())
    }

    fn validate_consenters(&self) -> Result<(), SpecError> {
        let consenters = &self.orderer.consenters;
        if consenters.is_empty() {
            return Err(SpecError::NoConsenters);
        }
        let mut seen = BTreeSet::new();
        for (i, c) in consenters.iter().enumerate() {
            let fail = |reason: &str| SpecError::Consenter {
                index: i + 1,
                host: c.host.clone(),
                port: c.port,
                reason: reason.to_string(),
            };
            if c.host.trim().is_empty() {
                return Err(fail("the host is empty"));
            }
            if c.port == 0 {
                return Err(fail("port 0 is not a usable port"));
            }
            if !seen.insert((c.host.as_str(), c.port)) {
                return Err(fail("another consenter has the same host and port"));
            }
        }
        Ok(())
    }

    fn validate_batch(&self) -> Result<(), SpecError> {
        let o = &self.orderer;
        if o.max_message_count == 0 {
            return Err(SpecError::BatchSize(
                "max_message_count must be at least 1".to_string(),
            ));
        }
        if o.absolute_max_bytes == 0 {
            return Err(SpecError::BatchSize(
                "absolute_max_bytes must be at least 1".to_string(),
            ));
        }
        if o.preferred_max_bytes == 0 {
            return Err(SpecError::BatchSize(
                "preferred_max_bytes must be at least 1".to_string(),
            ));
        }
        if o.preferred_max_bytes > o.absolute_max_bytes {
            return Err(SpecError::BatchSize(format!(
                "preferred_max_bytes ({}) is larger than absolute_max_bytes ({})",
                o.preferred_max_bytes, o.absolute_max_bytes
            )));
        }
        if o.batch_timeout_ms == 0 {
            return Err(SpecError::BatchSize(
                "batch_timeout_ms must be at least 1".to_string(),
            ));
        }
        Ok(())
    }

    fn validate_etcdraft(&self) -> Result<(), SpecError> {
        let r = &self.orderer.etcdraft;
        if r.tick_interval_ms == 0 {
            return Err(SpecError::EtcdRaft(
                "tick_interval_ms must be at least 1".to_string(),
            ));
        }
        if r.heartbeat_tick == 0 {
            return Err(SpecError::EtcdRaft(
                "heartbeat_tick must be at least 1".to_string(),
            ));
        }
        if r.election_tick <= r.heartbeat_tick {
            return Err(SpecError::EtcdRaft(format!(
                "election_tick ({}) must be greater than heartbeat_tick ({})",
                r.election_tick, r.heartbeat_tick
            )));
        }
        if r.max_inflight_blocks == 0 {
            return Err(SpecError::EtcdRaft(
                "max_inflight_blocks must be at least 1".to_string(),
            ));
        }
        if r.snapshot_interval_size_bytes == 0 {
            return Err(SpecError::EtcdRaft(
                "snapshot_interval_size_bytes must be at least 1".to_string(),
            ));
        }
        Ok(())
    }

    /// Checks that every file and folder the spec names exists under `base_dir`.
    pub fn check_files(&self, base_dir: &Path) -> Result<(), SpecError> {
        let mut wanted: Vec<(String, &Path)> = Vec::new();
        for org in &self.organizations {
            wanted.push((
                format!("organizations[{}].msp_dir", org.msp_id),
                &org.msp_dir,
            ));
        }
        for org in &self.orderer.organizations {
            wanted.push((
                format!("orderer.organizations[{}].msp_dir", org.msp_id),
                &org.msp_dir,
            ));
        }
        for (i, c) in self.orderer.consenters.iter().enumerate() {
            wanted.push((
                format!("orderer.consenters #{} client_tls_cert", i + 1),
                &c.client_tls_cert,
            ));
            wanted.push((
                format!("orderer.consenters #{} server_tls_cert", i + 1),
                &c.server_tls_cert,
            ));
        }
        for (what, path) in wanted {
            let resolved = base_dir.join(path);
            if !resolved.exists() {
                return Err(SpecError::MissingFile {
                    what,
                    path: resolved,
                });
            }
        }
        Ok(())
    }
}

/// Reads a channel file and builds its config tree, resolving paths against the file's folder.
pub fn config_from_file(path: &Path) -> Result<(ChannelSpec, common::Config), SpecError> {
    let spec = ChannelSpec::load(path)?;
    let base_dir = path.parent().unwrap_or_else(|| Path::new("."));
    let config = spec.to_config(base_dir)?;
    Ok((spec, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parsing() {
        assert_eq!(
            parse_host_port("127.0.0.1:7051"),
            Ok(("127.0.0.1".to_string(), 7051))
        );
        assert_eq!(parse_host_port("[::1]:7051"), Ok(("::1".to_string(), 7051)));
        assert!(parse_host_port("peer0").is_err());
        assert!(parse_host_port(":7051").is_err());
        assert!(parse_host_port("peer0:0").is_err());
        assert!(parse_host_port("peer0:70510").is_err());
        assert!(parse_host_port("peer 0:7051").is_err());
    }
}
