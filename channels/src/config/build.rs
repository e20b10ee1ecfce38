//! Builds the `common.Config` tree of a [`ChannelSpec`], laid out exactly as Fabric's
//! `configtxgen` encoder lays out a channel profile.
//!
//! The layout (every element at version 0 with `mod_policy` "Admins"):
//!
//! ```text
//! /Channel   values HashingAlgorithm, BlockDataHashingStructure, Capabilities
//!            policies Readers, Writers, Admins
//!   /Orderer values ConsensusType, BatchSize, BatchTimeout, ChannelRestrictions, Capabilities
//!            policies Readers, Writers, Admins, BlockValidation
//!     /<MSPID>  values MSP, Endpoints      policies Readers, Writers, Admins
//!   /Application values Capabilities, ACLs (if any)
//!            policies Readers, Writers, Admins, Endorsement, LifecycleEndorsement
//!     /<MSPID>  values MSP, AnchorPeers (if any)   policies Readers, Writers, Admins, Endorsement
//! ```
//!
//! Config maps are `BTreeMap`s, so the encoding is deterministic: the same spec and the same
//! MSP folders always give the same bytes.

use std::path::Path;

use gridledger_proto::{common, etcdraft, msp, orderer, protos};
use prost::Message;

use super::duration::format_go_duration_ms;
use super::spec::{
    ChannelSpec, OrdererOrganizationSpec, OrganizationSpec, ParsedPolicy, SpecError,
    parse_host_port, parse_policies,
};
use super::{
    ACLS_KEY, ADMINS_POLICY, ANCHOR_PEERS_KEY, APPLICATION_GROUP, BATCH_SIZE_KEY,
    BATCH_TIMEOUT_KEY, BLOCK_DATA_HASHING_STRUCTURE_KEY, BLOCK_DATA_HASHING_WIDTH,
    CAPABILITIES_KEY, CHANNEL_RESTRICTIONS_KEY, CONSENSUS_TYPE_KEY, ENDPOINTS_KEY, ETCDRAFT,
    HASHING_ALGORITHM_KEY, MSP_KEY, ORDERER_GROUP, SHA256,
};

/// `msp.MSPConfig.type` of an X.509 (Fabric) MSP.
const FABRIC_MSP_TYPE: i32 = 0;
/// The first line of a PEM certificate.
const PEM_CERTIFICATE_HEADER: &[u8] = b"-----BEGIN CERTIFICATE-----";

/// An empty group guarded by "Admins".
fn new_group() -> common::ConfigGroup {
    common::ConfigGroup {
        mod_policy: ADMINS_POLICY.to_string(),
        ..Default::default()
    }
}

fn add_value(group: &mut common::ConfigGroup, key: &str, value: &impl Message) {
    group.values.insert(
        key.to_string(),
        common::ConfigValue {
            version: 0,
            value: value.encode_to_vec(),
            mod_policy: ADMINS_POLICY.to_string(),
        },
    );
}

fn add_policies(group: &mut common::ConfigGroup, policies: Vec<(&'static str, ParsedPolicy)>) {
    for (name, parsed) in policies {
        group.policies.insert(
            name.to_string(),
            common::ConfigPolicy {
                version: 0,
                policy: Some(parsed.to_policy()),
                mod_policy: ADMINS_POLICY.to_string(),
            },
        );
    }
}

fn capabilities(names: &[String]) -> common::Capabilities {
    common::Capabilities {
        capabilities: names
            .iter()
            .map(|n| (n.clone(), common::Capability {}))
            .collect(),
    }
}

/// Loads an MSP folder into the `MSP` config value.
fn msp_value(msp_id: &str, dir: &Path) -> Result<msp::MspConfig, SpecError> {
    let fabric =
        gridledger_identity::load_msp_dir(msp_id, dir).map_err(|source| SpecError::Msp {
            msp_id: msp_id.to_string(),
            dir: dir.to_path_buf(),
            source: Box::new(source),
        })?;
    Ok(msp::MspConfig {
        r#type: FABRIC_MSP_TYPE,
        config: fabric.encode_to_vec(),
    })
}

fn read_certificate(what: String, path: &Path) -> Result<Vec<u8>, SpecError> {
    let bytes = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            SpecError::MissingFile {
                what: what.clone(),
                path: path.to_path_buf(),
            }
        } else {
            SpecError::ReadInput {
                what: what.clone(),
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    if !bytes
        .windows(PEM_CERTIFICATE_HEADER.len())
        .any(|w| w == PEM_CERTIFICATE_HEADER)
    {
        return Err(SpecError::NotPemCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

impl OrganizationSpec {
    /// The organization's group under `/Channel/Application`, keyed by its MSP id: its MSP,
    /// anchor peers and policies. Use it to add an organization to an existing channel.
    pub fn to_config_group(&self, base_dir: &Path) -> Result<common::ConfigGroup, SpecError> {
        let mut group = new_group();
        add_policies(
            &mut group,
            parse_policies(&self.policies.entries(&self.msp_id), true)?,
        );
        add_value(
            &mut group,
            MSP_KEY,
            &msp_value(&self.msp_id, &base_dir.join(&self.msp_dir))?,
        );
        if !self.anchor_peers.is_empty() {
            let mut anchor_peers = Vec::with_capacity(self.anchor_peers.len());
            for address in &self.anchor_peers {
                let (host, port) =
                    parse_host_port(address).map_err(|reason| SpecError::Address {
                        location: format!("organizations[{}].anchor_peers", self.msp_id),
                        address: address.clone(),
                        reason,
                    })?;
                anchor_peers.push(protos::AnchorPeer {
                    host,
                    port: i32::from(port),
                });
            }
            add_value(
                &mut group,
                ANCHOR_PEERS_KEY,
                &protos::AnchorPeers { anchor_peers },
            );
        }
        Ok(group)
    }
}

impl OrdererOrganizationSpec {
    /// The organization's group under `/Channel/Orderer`, keyed by its MSP id: its MSP,
    /// orderer endpoints and policies.
    pub fn to_config_group(&self, base_dir: &Path) -> Result<common::ConfigGroup, SpecError> {
        let mut group = new_group();
        add_policies(
            &mut group,
            parse_policies(&self.policies.entries(&self.msp_id), true)?,
        );
        add_value(
            &mut group,
            MSP_KEY,
            &msp_value(&self.msp_id, &base_dir.join(&self.msp_dir))?,
        );
        if !self.endpoints.is_empty() {
            add_value(
                &mut group,
                ENDPOINTS_KEY,
                &common::OrdererAddresses {
                    addresses: self.endpoints.clone(),
                },
            );
        }
        Ok(group)
    }
}

impl ChannelSpec {
    /// Validates the spec, reads the MSP folders and TLS certificates it names (relative to
    /// `base_dir`, normally the channel file's folder) and builds the channel's config tree at
    /// sequence 0.
    pub fn to_config(&self, base_dir: &Path) -> Result<common::Config, SpecError> {
        self.validate()?;
        self.check_files(base_dir)?;

        let mut root = new_group();
        add_policies(
            &mut root,
            parse_policies(&self.channel.policies.entries(), false)?,
        );
        add_value(
            &mut root,
            HASHING_ALGORITHM_KEY,
            &common::HashingAlgorithm {
                name: SHA256.to_string(),
            },
        );
        add_value(
            &mut root,
            BLOCK_DATA_HASHING_STRUCTURE_KEY,
            &common::BlockDataHashingStructure {
                width: BLOCK_DATA_HASHING_WIDTH,
            },
        );
        if !self.channel.capabilities.is_empty() {
            add_value(
                &mut root,
                CAPABILITIES_KEY,
                &capabilities(&self.channel.capabilities),
            );
        }
        root.groups
            .insert(ORDERER_GROUP.to_string(), self.orderer_group(base_dir)?);
        root.groups.insert(
            APPLICATION_GROUP.to_string(),
            self.application_group(base_dir)?,
        );
        Ok(common::Config {
            sequence: 0,
            channel_group: Some(root),
        })
    }

    fn orderer_group(&self, base_dir: &Path) -> Result<common::ConfigGroup, SpecError> {
        let spec = &self.orderer;
        let mut group = new_group();
        add_policies(&mut group, parse_policies(&spec.policies.entries(), false)?);
        add_value(
            &mut group,
            BATCH_SIZE_KEY,
            &orderer::BatchSize {
                max_message_count: spec.max_message_count,
                absolute_max_bytes: spec.absolute_max_bytes,
                preferred_max_bytes: spec.preferred_max_bytes,
            },
        );
        add_value(
            &mut group,
            BATCH_TIMEOUT_KEY,
            &orderer::BatchTimeout {
                timeout: format_go_duration_ms(spec.batch_timeout_ms),
            },
        );
        // configtxgen always writes ChannelRestrictions; max_count 0 means unlimited.
        add_value(
            &mut group,
            CHANNEL_RESTRICTIONS_KEY,
            &orderer::ChannelRestrictions { max_count: 0 },
        );
        if !spec.capabilities.is_empty() {
            add_value(
                &mut group,
                CAPABILITIES_KEY,
                &capabilities(&spec.capabilities),
            );
        }

        let mut consenters = Vec::with_capacity(spec.consenters.len());
        for (i, c) in spec.consenters.iter().enumerate() {
            consenters.push(etcdraft::Consenter {
                host: c.host.clone(),
                port: u32::from(c.port),
                client_tls_cert: read_certificate(
                    format!("orderer.consenters #{} client_tls_cert", i + 1),
                    &base_dir.join(&c.client_tls_cert),
                )?,
                server_tls_cert: read_certificate(
                    format!("orderer.consenters #{} server_tls_cert", i + 1),
                    &base_dir.join(&c.server_tls_cert),
                )?,
            });
        }
        let raft = &spec.etcdraft;
        let metadata = etcdraft::ConfigMetadata {
            consenters,
            options: Some(etcdraft::Options {
                tick_interval: format_go_duration_ms(raft.tick_interval_ms),
                election_tick: raft.election_tick,
                heartbeat_tick: raft.heartbeat_tick,
                max_inflight_blocks: raft.max_inflight_blocks,
                snapshot_interval_size: raft.snapshot_interval_size_bytes,
            }),
        };
        add_value(
            &mut group,
            CONSENSUS_TYPE_KEY,
            &orderer::ConsensusType {
                r#type: ETCDRAFT.to_string(),
                metadata: metadata.encode_to_vec(),
                state: orderer::consensus_type::State::Normal as i32,
            },
        );

        for org in &spec.organizations {
            group
                .groups
                .insert(org.msp_id.clone(), org.to_config_group(base_dir)?);
        }
        Ok(group)
    }

    fn application_group(&self, base_dir: &Path) -> Result<common::ConfigGroup, SpecError> {
        let spec = &self.application;
        let mut group = new_group();
        add_policies(&mut group, parse_policies(&spec.policies.entries(), false)?);
        if !spec.acls.is_empty() {
            add_value(
                &mut group,
                ACLS_KEY,
                &protos::AcLs {
                    acls: spec
                        .acls
                        .iter()
                        .map(|(resource, policy)| {
                            (
                                resource.clone(),
                                protos::ApiResource {
                                    policy_ref: policy.clone(),
                                },
                            )
                        })
                        .collect(),
                },
            );
        }
        if !spec.capabilities.is_empty() {
            add_value(
                &mut group,
                CAPABILITIES_KEY,
                &capabilities(&spec.capabilities),
            );
        }
        for org in &self.organizations {
            group
                .groups
                .insert(org.msp_id.clone(), org.to_config_group(base_dir)?);
        }
        Ok(group)
    }
}
