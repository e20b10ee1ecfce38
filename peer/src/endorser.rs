//! Proposal handling shared by `Endorser.ProcessProposal`, `Gateway.Evaluate` and
//! `Gateway.Endorse`: unpack and check a signed proposal as Fabric's endorser does (WIRE.md
//! §1.4), simulate the chaincode on a consistent snapshot of the world state, and sign the
//! response.
//!
//! The header and payload bytes of the client's proposal are kept verbatim: the tx id, the
//! proposal hash and the client's signature all depend on the exact bytes.

use crate::node::{Channel, Peer};
use gridledger_chaincode::{
    ChaincodeHost, ChaincodeStub, Invocation, SimulationResult, StateReader,
};
use gridledger_identity::Identity;
use gridledger_ledger::StateSnapshot;
use gridledger_proto::prost::Message;
use gridledger_proto::{common, kvrwset, protos};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why a proposal was refused before or during simulation. Each maps to the gRPC status a
/// Fabric client expects (see `gateway`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposalError {
    #[error("malformed proposal: {0}")]
    Malformed(String),
    #[error("channel '{0}' is not joined by this peer")]
    UnknownChannel(String),
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("duplicate transaction found [{0}]; could be a replay attack")]
    DuplicateTxId(String),
    #[error("chaincode '{name}' is not defined on channel '{channel}'")]
    UnknownChaincode { name: String, channel: String },
    #[error("chaincode '{name}' on channel '{channel}' cannot run on this peer: {reason}")]
    ChaincodeUnavailable {
        name: String,
        channel: String,
        reason: String,
    },
    #[error("ledger: {0}")]
    Ledger(String),
    /// The private data could not reach the peers its collections require.
    #[error("{0}")]
    PrivateData(String),
}

/// A decoded signed proposal with its original bytes.
pub struct UnpackedProposal {
    pub signed: protos::SignedProposal,
    pub header: common::Header,
    pub channel_header: common::ChannelHeader,
    pub signature_header: common::SignatureHeader,
    pub chaincode_name: String,
    pub input: protos::ChaincodeInput,
    pub transient: BTreeMap<String, Vec<u8>>,
    /// sha256(channel_header || signature_header || ChaincodeProposalPayload without transient).
    pub proposal_hash: Vec<u8>,
    /// That payload's bytes, as they go into the transaction.
    pub payload_without_transient: Vec<u8>,
}

fn malformed(what: &str) -> impl Fn(gridledger_proto::prost::DecodeError) -> ProposalError + '_ {
    move |e| ProposalError::Malformed(format!("cannot decode {what}: {e}"))
}

/// Decodes a signed proposal and checks the header rules that need no state: type, epoch,
/// nonce, creator and the tx-id binding.
pub fn unpack(signed: &protos::SignedProposal) -> Result<UnpackedProposal, ProposalError> {
    if signed.proposal_bytes.is_empty() {
        return Err(ProposalError::Malformed("empty proposal bytes".into()));
    }
    if signed.signature.is_empty() {
        return Err(ProposalError::Malformed(
            "the proposal is not signed".into(),
        ));
    }
    let proposal = protos::Proposal::decode(signed.proposal_bytes.as_slice())
        .map_err(malformed("proposal"))?;
    let header = common::Header::decode(proposal.header.as_slice()).map_err(malformed("header"))?;
    let channel_header = common::ChannelHeader::decode(header.channel_header.as_slice())
        .map_err(malformed("channel header"))?;
    let signature_header = common::SignatureHeader::decode(header.signature_header.as_slice())
        .map_err(malformed("signature header"))?;
    if channel_header.epoch != 0 {
        return Err(ProposalError::Malformed(format!(
            "epoch is {}, must be 0",
            channel_header.epoch
        )));
    }
    if signature_header.nonce.is_empty() || signature_header.creator.is_empty() {
        return Err(ProposalError::Malformed(
            "nonce and creator must not be empty".into(),
        ));
    }
    let expected =
        gridledger_proto::compute_tx_id(&signature_header.nonce, &signature_header.creator);
    if channel_header.tx_id != expected {
        return Err(ProposalError::Malformed(format!(
            "incorrectly formed transaction id [{}]: it must be hex(sha256(nonce || creator)) = {expected}",
            channel_header.tx_id
        )));
    }
    let extension = protos::ChaincodeHeaderExtension::decode(channel_header.extension.as_slice())
        .map_err(malformed("chaincode header extension"))?;
    let chaincode_name = extension.chaincode_id.map(|c| c.name).unwrap_or_default();
    if chaincode_name.is_empty() {
        return Err(ProposalError::Malformed(
            "no chaincode name in the header extension".into(),
        ));
    }
    // Fabric's `peer channel join` sends its cscc proposal as a CONFIG header; everything
    // else is an endorser transaction.
    let config_allowed =
        chaincode_name == crate::cscc::NAME && channel_header.channel_id.is_empty();
    if channel_header.r#type != common::HeaderType::EndorserTransaction as i32
        && !(config_allowed && channel_header.r#type == common::HeaderType::Config as i32)
    {
        return Err(ProposalError::Malformed(format!(
            "invalid header type {}",
            channel_header.r#type
        )));
    }
    let payload = protos::ChaincodeProposalPayload::decode(proposal.payload.as_slice())
        .map_err(malformed("proposal payload"))?;
    let spec = protos::ChaincodeInvocationSpec::decode(payload.input.as_slice())
        .map_err(malformed("invocation spec"))?;
    let spec = spec.chaincode_spec.unwrap_or_default();
    let spec_name = spec
        .chaincode_id
        .as_ref()
        .map(|c| c.name.as_str())
        .unwrap_or_default();
    if spec_name != chaincode_name {
        return Err(ProposalError::Malformed(format!(
            "the invocation spec names chaincode {spec_name:?} but the header names {chaincode_name:?}"
        )));
    }
    let input = spec.input.unwrap_or_default();
    let payload_without_transient = protos::ChaincodeProposalPayload {
        input: payload.input.clone(),
        transient_map: Default::default(),
    }
    .encode_to_vec();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&header.channel_header);
    ctx.update(&header.signature_header);
    ctx.update(&payload_without_transient);
    Ok(UnpackedProposal {
        signed: signed.clone(),
        proposal_hash: ctx.finish().as_ref().to_vec(),
        transient: payload.transient_map.into_iter().collect(),
        header,
        channel_header,
        signature_header,
        chaincode_name,
        input,
        payload_without_transient,
    })
}

/// Names the creator of a request for a log line: its MSP id and certificate subject and
/// serial, read without validating anything (the creator may be exactly what was refused).
pub fn describe_creator(serialized: &[u8]) -> String {
    let Ok(id) = gridledger_proto::msp::SerializedIdentity::decode(serialized) else {
        return format!("undecodable identity ({} bytes)", serialized.len());
    };
    match gridledger_identity::Certificate::from_pem(&id.id_bytes) {
        Ok(cert) => format!(
            "{} '{}' (serial {})",
            id.mspid,
            cert.subject,
            cert.serial_hex()
        ),
        Err(_) => format!("{} with an unreadable certificate", id.mspid),
    }
}

/// The outcome of simulating a proposal on this peer.
pub struct Simulated {
    pub channel: Arc<Channel>,
    pub creator: Arc<Identity>,
    pub result: SimulationResult,
    /// `ProposalResponsePayload` bytes: what endorsers sign and clients compare.
    pub response_payload: Vec<u8>,
}

impl Peer {
    /// The checks Fabric's endorser makes before simulating: known channel, valid creator,
    /// signature, no duplicate tx id, and the ACL of the resource the proposal uses
    /// (`peer/Propose`, or e.g. `qscc/GetChainInfo` for a system chaincode function; see
    /// [`crate::acl`]).
    /// A refusal is logged with the channel, tx id, creator and reason, so an operator can
    /// tell who was refused and why.
    pub fn check_proposal(
        &self,
        p: &UnpackedProposal,
    ) -> Result<(Arc<Channel>, Arc<Identity>), ProposalError> {
        self.check_proposal_unlogged(p).inspect_err(|e| {
            tracing::warn!(
                channel = %p.channel_header.channel_id,
                tx_id = %p.channel_header.tx_id,
                chaincode = %p.chaincode_name,
                creator = %describe_creator(&p.signature_header.creator),
                reason = %e,
                "proposal refused"
            );
        })
    }

    /// [`Peer::check_proposal`] without the log line.
    fn check_proposal_unlogged(
        &self,
        p: &UnpackedProposal,
    ) -> Result<(Arc<Channel>, Arc<Identity>), ProposalError> {
        let channel = self
            .channel(&p.channel_header.channel_id)
            .ok_or_else(|| ProposalError::UnknownChannel(p.channel_header.channel_id.clone()))?;
        let creator = self
            .validate_identity(&channel, &p.signature_header.creator)
            .map_err(|e| {
                ProposalError::AccessDenied(format!(
                    "creator is not valid on channel {}: {e}",
                    channel.id()
                ))
            })?;
        // Committing peers validate a transaction's creator at the transaction's timestamp:
        // refuse now what they would refuse then, instead of leaving the client waiting for a
        // commit that never comes.
        let at = p
            .channel_header
            .timestamp
            .as_ref()
            .map_or(0, |t| u64::try_from(t.seconds).unwrap_or(0));
        channel
            .config()
            .msp_manager()
            .deserialize_identity(&p.signature_header.creator, at)
            .map_err(|e| {
                ProposalError::AccessDenied(format!(
                    "creator is not valid on channel {} at the proposal's timestamp {at}, when committing peers check it: {e}",
                    channel.id()
                ))
            })?;
        creator
            .verify(&p.signed.proposal_bytes, &p.signed.signature)
            .map_err(|e| {
                ProposalError::AccessDenied(format!(
                    "the creator's signature over the proposal is invalid: {e}"
                ))
            })?;
        if channel
            .ledger()
            .tx_location(&p.channel_header.tx_id)
            .map_err(|e| ProposalError::Ledger(e.to_string()))?
            .is_some()
        {
            return Err(ProposalError::DuplicateTxId(p.channel_header.tx_id.clone()));
        }
        // The ACL of the resource the proposal uses: `peer/Propose` for application
        // chaincodes, the function's own resource for the system chaincodes.
        let function = p
            .input
            .args
            .first()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .unwrap_or_default();
        let resource = crate::acl::proposal_resource(&p.chaincode_name, &function);
        let signed = gridledger_channels::policy::SignedData {
            data: &p.signed.proposal_bytes,
            identity: &p.signature_header.creator,
            signature: &p.signed.signature,
        };
        crate::acl::check(
            &channel.config(),
            &resource,
            &[signed],
            crate::node::now_unix_secs(),
        )
        .map_err(|e| ProposalError::AccessDenied(e.to_string()))?;
        Ok((channel, creator))
    }

    /// Checks and simulates a proposal against a snapshot of the world state.
    pub fn simulate(&self, p: &UnpackedProposal) -> Result<Simulated, ProposalError> {
        let (channel, creator) = self.check_proposal(p)?;
        let result = if p.chaincode_name == crate::qscc::NAME {
            crate::qscc::invoke(&channel, &p.input.args)
        } else {
            let definition = channel
                .chaincodes()
                .get(&p.chaincode_name)
                .cloned()
                .ok_or_else(|| ProposalError::UnknownChaincode {
                    name: p.chaincode_name.clone(),
                    channel: channel.id().into(),
                })?;
            let runtime = self.runtime(&channel, &creator, &p.chaincode_name)?;
            let snapshot = channel
                .ledger()
                .snapshot()
                .map_err(|e| ProposalError::Ledger(e.to_string()))?;
            let reader = SnapshotReader(snapshot, channel.clone());
            // A definition that requires initialization runs Init exactly once per version.
            let init = match channel
                .committed_definitions()
                .get(&p.chaincode_name)
                .filter(|d| d.init_required)
            {
                Some(def) => {
                    init_decision(&reader, &p.chaincode_name, &def.version, p.input.is_init)
                }
                None => Ok(None),
            };
            match init {
                Err(message) => gridledger_chaincode::failed(message),
                Ok(marker) => {
                    let invocation = Invocation {
                        channel_id: channel.id().into(),
                        tx_id: p.channel_header.tx_id.clone(),
                        chaincode: definition.name.clone(),
                        args: p.input.args.clone(),
                        transient: p.transient.clone(),
                        creator: p.signature_header.creator.clone(),
                        creator_msp_id: creator.msp_id().into(),
                        creator_attributes: creator.attributes().clone(),
                        timestamp: p.channel_header.timestamp,
                        signed_proposal: Some(p.signed.clone()),
                        is_init: marker.is_some(),
                    };
                    let host = PeerHost {
                        peer: self,
                        signed_proposal: &p.signed,
                        creator: &creator,
                    };
                    let mut result = match runtime {
                        Runtime::Compiled(chaincode) => gridledger_chaincode::simulate_with_host(
                            chaincode.as_ref(),
                            &definition.name,
                            &invocation,
                            &reader,
                            &host,
                        ),
                        Runtime::External(external) => crate::external::execute_blocking_with_host(
                            &external,
                            &definition.name,
                            &invocation,
                            &reader,
                            &host,
                        ),
                    };
                    if let Some(marker) = marker {
                        if result.response.status < gridledger_chaincode::ERROR_THRESHOLD {
                            record_initialization(&mut result, &definition.name, &marker);
                        }
                    }
                    result
                }
            }
        };
        let version = if p.chaincode_name == crate::validation::LIFECYCLE_NAMESPACE {
            crate::lifecycle::SYSCC_VERSION.to_string()
        } else {
            channel
                .chaincodes()
                .get(&p.chaincode_name)
                .map(|d| d.version.clone())
                .unwrap_or_default()
        };
        let action = protos::ChaincodeAction {
            results: result.rwset_bytes.clone(),
            events: result
                .event
                .as_ref()
                .map(Message::encode_to_vec)
                .unwrap_or_default(),
            response: Some(result.response.clone()),
            chaincode_id: Some(protos::ChaincodeId {
                path: String::new(),
                name: p.chaincode_name.clone(),
                version,
            }),
        };
        let response_payload = protos::ProposalResponsePayload {
            proposal_hash: p.proposal_hash.clone(),
            extension: action.encode_to_vec(),
        }
        .encode_to_vec();
        Ok(Simulated {
            channel,
            creator,
            result,
            response_payload,
        })
    }

    /// Endorses: simulates and, when the chaincode succeeded (status < 400), signs
    /// `response_payload || endorser`.
    pub fn endorse(
        &self,
        p: &UnpackedProposal,
    ) -> Result<(Simulated, protos::ProposalResponse), ProposalError> {
        let started = std::time::Instant::now();
        let outcome = self.endorse_timed(p);
        crate::metrics::get()
            .proposal_duration
            .observe_since(&[&p.channel_header.channel_id, &p.chaincode_name], started);
        outcome
    }

    /// [`Peer::endorse`] without the timing.
    fn endorse_timed(
        &self,
        p: &UnpackedProposal,
    ) -> Result<(Simulated, protos::ProposalResponse), ProposalError> {
        let mut simulated = self.simulate(p)?;
        if simulated.result.response.status < 400 {
            if let Some(feasibility) = self.feasibility() {
                let snapshot = simulated
                    .channel
                    .ledger()
                    .snapshot()
                    .map_err(|e| ProposalError::Ledger(e.to_string()))?;
                if let Err(reason) = feasibility.review(
                    simulated.channel.id(),
                    &p.chaincode_name,
                    &p.channel_header.tx_id,
                    &simulated.result.rwset,
                    &snapshot,
                ) {
                    tracing::info!(channel = %simulated.channel.id(), chaincode = %p.chaincode_name,
                        tx_id = %p.channel_header.tx_id, reason = %reason, "endorsement refused by the grid check");
                    simulated.result.response = gridledger_chaincode::error(reason);
                }
            }
        }
        let response = simulated.result.response.clone();
        if response.status < 400 {
            if let Some(pvt_rwset) = &simulated.result.pvt_rwset {
                // Kept until the transaction's block commits; only hashes leave this peer in
                // the proposal response.
                simulated
                    .channel
                    .ledger()
                    .persist_transient(&p.channel_header.tx_id, &pvt_rwset.encode_to_vec())
                    .map_err(|e| ProposalError::Ledger(e.to_string()))?;
                crate::gossip::disseminate(self, &simulated, &p.channel_header.tx_id)?;
            }
        }
        let endorsement = (response.status < 400).then(|| {
            let endorser = self.signer().serialized().to_vec();
            let mut signed = simulated.response_payload.clone();
            signed.extend_from_slice(&endorser);
            protos::Endorsement {
                signature: self.signer().sign(&signed),
                endorser,
            }
        });
        let proposal_response = protos::ProposalResponse {
            version: 1,
            timestamp: None,
            response: Some(response),
            payload: simulated.response_payload.clone(),
            endorsement,
            interest: None,
        };
        Ok((simulated, proposal_response))
    }
}

/// Runs the chaincodes a simulated chaincode calls, as Fabric's peer does for
/// INVOKE_CHAINCODE: the callee must be defined on its channel and is run like any chaincode
/// on this peer (compiled in, or an external server). Every call, and every read of another
/// channel, needs the client's proposal to satisfy the callee channel's
/// `peer/ChaincodeToChaincode` ACL (default `/Channel/Application/Writers`); another channel is
/// read over a fresh snapshot of its state.
struct PeerHost<'p> {
    peer: &'p Peer,
    /// The client's proposal, checked against the ACL of other channels.
    signed_proposal: &'p protos::SignedProposal,
    /// The proposal's creator.
    creator: &'p Identity,
}

impl PeerHost<'_> {
    /// The `peer/ChaincodeToChaincode` ACL of the callee's channel, over the client's signed
    /// proposal.
    fn check_call(&self, channel: &Channel) -> Result<(), String> {
        let signed = gridledger_channels::policy::SignedData {
            data: &self.signed_proposal.proposal_bytes,
            identity: self.creator.serialized(),
            signature: &self.signed_proposal.signature,
        };
        crate::acl::check(
            &channel.config(),
            crate::acl::PEER_CHAINCODE_TO_CHAINCODE,
            &[signed],
            crate::node::now_unix_secs(),
        )
        .map_err(|e| format!("access denied: {e}"))
    }
}

impl ChaincodeHost for PeerHost<'_> {
    fn run(&self, name: &str, stub: &mut ChaincodeStub<'_>) -> Result<protos::Response, String> {
        let channel_id = stub.channel_id().to_owned();
        let channel = self
            .peer
            .channel(&channel_id)
            .ok_or_else(|| format!("channel {channel_id:?} is not joined by this peer"))?;
        if name == crate::validation::LIFECYCLE_NAMESPACE {
            return Err("the chaincode lifecycle cannot be called from a chaincode".to_string());
        }
        if !channel.chaincodes().contains_key(name) {
            return Err(format!(
                "chaincode {name:?} is not defined on channel {channel_id:?}"
            ));
        }
        self.check_call(&channel)?;
        match self
            .peer
            .runtime(&channel, self.creator, name)
            .map_err(|e| e.to_string())?
        {
            Runtime::External(external) => crate::external::run_blocking(&external, stub),
            Runtime::Compiled(chaincode) => Ok(chaincode.invoke(stub)),
        }
    }

    fn channel_state(&self, channel_id: &str) -> Result<Box<dyn StateReader + '_>, String> {
        let channel = self
            .peer
            .channel(channel_id)
            .ok_or_else(|| format!("channel {channel_id:?} is not joined by this peer"))?;
        self.check_call(&channel)?;
        let snapshot = channel.ledger().snapshot().map_err(|e| e.to_string())?;
        Ok(Box::new(SnapshotReader(snapshot, channel)))
    }
}

/// The key in a chaincode's namespace recording which definition version ran its Init
/// (Fabric's `InitializedKeyName`: NUL, the largest Unicode scalar, "initialized").
pub const INITIALIZED_KEY: &str = "\u{0}\u{10FFFF}initialized";

/// The initialization a proposal performs: the marker's version as read and the value to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitMarker {
    /// The marker's committed version (`None`: never initialized).
    pub read_version: Option<gridledger_proto::kvrwset::Version>,
    /// The definition version to record.
    pub version: String,
}

/// Fabric's rule for a definition that requires initialization: the first invocation of a
/// definition version must be an init (`is_init`), and only the first. `Ok(Some)`: this is
/// the initialization; `Ok(None)`: an ordinary invocation; `Err`: refused, with Fabric's
/// message.
pub fn init_decision(
    state: &dyn StateReader,
    chaincode: &str,
    version: &str,
    is_init: bool,
) -> Result<Option<InitMarker>, String> {
    let stored = state
        .get(chaincode, INITIALIZED_KEY)
        .map_err(|e| format!("cannot read chaincode '{chaincode}' initialization state: {e}"))?;
    let initialized = stored
        .as_ref()
        .is_some_and(|(value, _)| value.as_slice() == version.as_bytes());
    match (initialized, is_init) {
        (true, true) => Err(format!(
            "chaincode '{chaincode}' is already initialized but 'init' was set"
        )),
        (true, false) => Ok(None),
        (false, false) => Err(format!(
            "chaincode '{chaincode}' has not been initialized for this version, must call as init first"
        )),
        (false, true) => Ok(Some(InitMarker {
            read_version: stored.map(|(_, v)| v),
            version: version.to_owned(),
        })),
    }
}

/// Adds the initialization marker's read and write to a successful simulation's read-write set
/// (in key order, as the stub keeps them).
pub fn record_initialization(
    result: &mut gridledger_chaincode::SimulationResult,
    chaincode: &str,
    marker: &InitMarker,
) {
    use gridledger_proto::kvrwset::{KvRead, KvWrite, KvrwSet};
    let mut namespaces = std::mem::take(&mut result.rwset.ns_rwset);
    let position = match namespaces.iter().position(|ns| ns.namespace == chaincode) {
        Some(position) => position,
        None => {
            namespaces.push(gridledger_proto::rwset::NsReadWriteSet {
                namespace: chaincode.to_owned(),
                rwset: Vec::new(),
                collection_hashed_rwset: Vec::new(),
            });
            namespaces.len() - 1
        }
    };
    let mut kv = KvrwSet::decode(namespaces[position].rwset.as_slice()).unwrap_or_default();
    if !kv.reads.iter().any(|r| r.key == INITIALIZED_KEY) {
        let at = kv
            .reads
            .partition_point(|r| r.key.as_str() < INITIALIZED_KEY);
        kv.reads.insert(
            at,
            KvRead {
                key: INITIALIZED_KEY.to_owned(),
                version: marker.read_version,
            },
        );
    }
    kv.writes.retain(|w| w.key != INITIALIZED_KEY);
    let at = kv
        .writes
        .partition_point(|w| w.key.as_str() < INITIALIZED_KEY);
    kv.writes.insert(
        at,
        KvWrite {
            key: INITIALIZED_KEY.to_owned(),
            is_delete: false,
            value: marker.version.as_bytes().to_vec(),
        },
    );
    namespaces[position].rwset = kv.encode_to_vec();
    result.rwset = gridledger_chaincode::tx_rwset(namespaces);
    result.rwset_bytes = result.rwset.encode_to_vec();
}

/// What runs a chaincode on this peer.
enum Runtime {
    /// Compiled into the peer (or `_lifecycle` itself).
    Compiled(Arc<dyn gridledger_chaincode::Chaincode>),
    /// An external chaincode server.
    External(crate::external::ExternalChaincode),
}

impl Peer {
    /// The package id this peer's organization approved for sequence `sequence` of `name`
    /// on `channel`, read from the committed state.
    pub fn approved_package(
        &self,
        channel: &Channel,
        name: &str,
        sequence: i64,
    ) -> Result<Option<String>, String> {
        let key = crate::lifecycle::approval_key(name, sequence, &self.config().msp_id);
        let Some(value) = channel
            .ledger()
            .snapshot()
            .and_then(|s| s.get(crate::validation::LIFECYCLE_NAMESPACE, &key))
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let approval = gridledger_proto::lifecycle::ApproveChaincodeDefinitionForMyOrgArgs::decode(
            value.value.as_slice(),
        )
        .map_err(|e| format!("the approval {key} does not decode: {e}"))?;
        Ok(crate::lifecycle::approved_package_id(&approval).map(str::to_owned))
    }

    /// How this peer runs chaincode `name` on `channel`: `_lifecycle` itself; a definition
    /// committed through the lifecycle runs the package this peer's organization approved
    /// for it (a compiled-in chaincode or a chaincode server); otherwise the peer
    /// configuration's bootstrap definition (an `address`, or the compiled-in chaincode of
    /// that name).
    fn runtime(
        &self,
        channel: &Channel,
        creator: &Identity,
        name: &str,
    ) -> Result<Runtime, ProposalError> {
        let unavailable = |reason: String| ProposalError::ChaincodeUnavailable {
            name: name.to_owned(),
            channel: channel.id().to_owned(),
            reason,
        };
        if name == crate::validation::LIFECYCLE_NAMESPACE {
            let config = channel.config();
            return Ok(Runtime::Compiled(Arc::new(
                crate::lifecycle::LifecycleChaincode {
                    msp_id: self.config().msp_id.clone(),
                    organizations: config
                        .organizations()
                        .iter()
                        .map(|o| o.msp_id.clone())
                        .collect(),
                    creator_is_admin: creator.is_admin(),
                },
            )));
        }
        if let Some(def) = channel.committed_definitions().get(name) {
            let package_id = self
                .approved_package(channel, name, def.sequence)
                .map_err(unavailable)?
                .ok_or_else(|| {
                    unavailable(format!(
                        "{} approved no package for sequence {} on this channel",
                        self.config().msp_id,
                        def.sequence
                    ))
                })?;
            let package = self
                .installed_package(&package_id)
                .map_err(|e| unavailable(e.to_string()))?
                .ok_or_else(|| {
                    unavailable(format!(
                        "package {package_id} is not installed on this peer"
                    ))
                })?;
            return match &package.code {
                crate::lifecycle::package::Code::Builtin(b) => {
                    self.registry().get(&b.chaincode).map(Runtime::Compiled).ok_or_else(|| {
                        unavailable(format!(
                            "package {package_id} names the builtin chaincode {:?}, which this peer does not have",
                            b.chaincode
                        ))
                    })
                }
                crate::lifecycle::package::Code::Ccaas(connection) => {
                    let tls_ca_cert = if connection.tls_required {
                        Some(self.package_root_cert(&package_id, &connection.root_cert).map_err(unavailable)?)
                    } else {
                        None
                    };
                    let dial_timeout = connection
                        .dial_timeout(crate::external::DEFAULT_DIAL_TIMEOUT)
                        .map_err(unavailable)?;
                    Ok(Runtime::External(crate::external::ExternalChaincode {
                        address: connection.address.clone(),
                        execute_timeout: crate::external::DEFAULT_EXECUTE_TIMEOUT,
                        dial_timeout,
                        tls_ca_cert,
                    }))
                }
            };
        }
        let external = self
            .config()
            .chaincodes
            .iter()
            .find(|cc| cc.channel == channel.id() && cc.name == name)
            .and_then(crate::config::ChaincodeSpec::external);
        match external {
            Some(external) => Ok(Runtime::External(external)),
            None => self
                .registry()
                .get(name)
                .map(Runtime::Compiled)
                .ok_or_else(|| ProposalError::UnknownChaincode {
                    name: name.to_owned(),
                    channel: channel.id().into(),
                }),
        }
    }

    /// The file holding a ccaas package's `root_cert` (written on first use), for the
    /// chaincode client to trust.
    fn package_root_cert(&self, package_id: &str, pem: &str) -> Result<std::path::PathBuf, String> {
        let dir = self.config().data_dir.join("lifecycle").join("tls");
        let hash = package_id.rsplit_once(':').map_or(package_id, |(_, h)| h);
        let path = dir.join(format!("{hash}.pem"));
        if !path.exists() {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            std::fs::write(&path, pem).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(path)
    }
}

/// The world-state view a simulation reads, and the channel whose chaincode definitions name
/// the private data collections.
struct SnapshotReader(StateSnapshot, Arc<Channel>);

fn to_proto(v: gridledger_ledger::Version) -> kvrwset::Version {
    kvrwset::Version {
        block_num: v.block_num,
        tx_num: v.tx_num,
    }
}

impl StateReader for SnapshotReader {
    fn get(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<(Vec<u8>, kvrwset::Version)>, String> {
        self.0
            .get(namespace, key)
            .map(|o| o.map(|vv| (vv.value, to_proto(vv.version))))
            .map_err(|e| e.to_string())
    }
    fn range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>, kvrwset::Version)>, String> {
        self.0
            .range(namespace, start, end, limit)
            .map(|rows| {
                rows.into_iter()
                    .map(|(k, vv)| (k, vv.value, to_proto(vv.version)))
                    .collect()
            })
            .map_err(|e| e.to_string())
    }
    fn history(
        &self,
        namespace: &str,
        key: &str,
        limit: usize,
    ) -> Result<Vec<gridledger_proto::queryresult::KeyModification>, String> {
        self.0
            .history(namespace, key, limit)
            .map(|entries| {
                entries
                    .into_iter()
                    .map(|e| gridledger_proto::queryresult::KeyModification {
                        tx_id: e.tx_id,
                        is_delete: e.value.is_none(),
                        value: e.value.unwrap_or_default(),
                        timestamp: e.timestamp,
                    })
                    .collect()
            })
            .map_err(|e| e.to_string())
    }

    fn collection(
        &self,
        namespace: &str,
        collection: &str,
    ) -> Result<Option<gridledger_chaincode::CollectionAccess>, String> {
        Ok(self.1.collection(namespace, collection).map(|c| c.access()))
    }

    fn metadata(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<gridledger_chaincode::Metadata, String> {
        let Some(bytes) = self.0.metadata(namespace, key).map_err(|e| e.to_string())? else {
            return Ok(gridledger_chaincode::Metadata::new());
        };
        crate::validation::decode_metadata(&bytes).ok_or_else(|| {
            format!("the stored metadata of key {key:?} in namespace {namespace:?} does not decode")
        })
    }
}

/// gRPC metadata a GridLedger gateway adds to the proposals it sends other organizations'
/// peers: the height its own ledger had when it endorsed. The receiving peer waits (at most
/// [`MIN_HEIGHT_WAIT`]) until its ledger of the proposal's channel is that high before
/// simulating, so that under load the two endorsements read the same versions instead of
/// failing as mismatched read sets. Fabric peers ignore it; a value that does not parse is
/// ignored too.
pub const MIN_HEIGHT_HEADER: &str = "gridledger-min-ledger-height";

/// The longest a proposal waits for its channel's ledger to reach [`MIN_HEIGHT_HEADER`]'s
/// height; after that the peer endorses at the height it has.
pub const MIN_HEIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits until `channel_id`'s ledger is at least `height` high, or [`MIN_HEIGHT_WAIT`].
async fn catch_up_to(peer: &Peer, channel_id: &str, height: u64) {
    let Some(channel) = peer.channel(channel_id) else {
        return; // the endorsement itself reports the unknown channel
    };
    let mut heights = channel.ledger().subscribe_height();
    let _ = tokio::time::timeout(MIN_HEIGHT_WAIT, heights.wait_for(|h| *h >= height)).await;
}

/// Endorser service for peer-to-peer use (`/protos.Endorser/ProcessProposal`). Refusals are
/// returned as a ProposalResponse with status 500 and the reason, as Fabric does.
pub struct EndorserService(pub Arc<Peer>);

#[tonic::async_trait]
impl protos::endorser_server::Endorser for EndorserService {
    async fn process_proposal(
        &self,
        request: tonic::Request<protos::SignedProposal>,
    ) -> Result<tonic::Response<protos::ProposalResponse>, tonic::Status> {
        let peer = self.0.clone();
        let min_height = request
            .metadata()
            .get(MIN_HEIGHT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let remote = request
            .remote_addr()
            .map_or_else(|| "an unknown address".to_owned(), |a| a.to_string());
        let signed = request.into_inner();
        if let Some(height) = min_height {
            if let Ok(p) = unpack(&signed) {
                catch_up_to(&peer, &p.channel_header.channel_id, height).await;
            }
        }
        let outcome = tokio::task::spawn_blocking(move || {
            unpack(&signed).and_then(|p| {
                let local = p.channel_header.channel_id.is_empty();
                if local
                    && (p.chaincode_name == crate::validation::LIFECYCLE_NAMESPACE
                        || p.chaincode_name == crate::cscc::NAME)
                {
                    // Install, join and the other peer-local functions: answered, not
                    // endorsed.
                    let answer = if p.chaincode_name == crate::cscc::NAME {
                        peer.cscc(&p)
                    } else {
                        peer.lifecycle_local(&p)
                    };
                    answer.map(|response| protos::ProposalResponse {
                        version: 1,
                        response: Some(response),
                        ..Default::default()
                    })
                } else {
                    peer.endorse(&p).map(|(_, r)| r)
                }
            })
        })
        .await
        .map_err(|e| tonic::Status::internal(format!("endorsement task failed: {e}")))?;
        let response = outcome.unwrap_or_else(|e| {
            tracing::warn!(remote = %remote, reason = %e, "ProcessProposal refused with status 500");
            protos::ProposalResponse {
            version: 1,
            response: Some(protos::Response {
                status: 500,
                message: e.to_string(),
                payload: Vec::new(),
            }),
            ..Default::default()
            }
        });
        Ok(tonic::Response::new(response))
    }

    async fn dummy_process_proposal(
        &self,
        _request: tonic::Request<protos::SignedProposal>,
    ) -> Result<tonic::Response<protos::ProposalResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "DummyProcessProposal is a Fabric test hook; GridLedger does not serve it",
        ))
    }
}
