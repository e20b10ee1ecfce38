//! The Fabric Gateway service (`/gateway.Gateway/*`, WIRE.md §1): Evaluate, Endorse, Submit,
//! CommitStatus and ChaincodeEvents, so Fabric's official Gateway SDKs work unmodified.
//!
//! Endorse works out which organizations must endorse from the chaincode's endorsement policy
//! (preferring this peer's own organization), endorses locally, asks one peer of each other
//! required organization (`Endorser.ProcessProposal`, at the org's anchor peer), checks the
//! responses are byte-identical, and assembles the prepared transaction exactly as Fabric
//! does. Failures are gRPC statuses with `gateway.ErrorDetail` details.
//!
//! Submit broadcasts the transaction to the channel's orderer endpoints in turn, each attempt
//! bounded by the RPC timeout, and stops at the first orderer that accepts it (an orderer
//! answers SUCCESS only once the envelope is committed in its Raft log on a quorum). It
//! reports failure only when no orderer accepted it. An endpoint that failed or timed out is
//! tried after the others for [`SUSPECT_PERIOD`], so a hung orderer does not cost every
//! submission a timeout.

use crate::blocks;
use crate::endorser::{ProposalError, UnpackedProposal, unpack};
use crate::node::{Channel, Peer, now_unix_secs};
use crate::validation::EndorsementPolicy;
use gridledger_channels::config::ChannelConfig;
use gridledger_channels::policy::SignedData;
use gridledger_proto::gateway::gateway_server::Gateway;
use gridledger_proto::prost::Message;
use gridledger_proto::{common, gateway, google, msp, orderer, protos};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

/// Largest number of organizations the endorsement planner searches exhaustively.
const MAX_PLANNED_ORGS: usize = 16;

/// How long an orderer endpoint whose Broadcast failed or timed out is tried after the others.
pub const SUSPECT_PERIOD: Duration = Duration::from_secs(30);

/// The Gateway service of one peer.
pub struct GatewayService {
    peer: Arc<Peer>,
    connections: Mutex<HashMap<String, tonic::transport::Channel>>,
    /// Orderer endpoints whose last Broadcast failed or timed out, with when.
    suspects: Mutex<HashMap<String, Instant>>,
}

impl GatewayService {
    pub fn new(peer: Arc<Peer>) -> GatewayService {
        GatewayService {
            peer,
            connections: Mutex::new(HashMap::new()),
            suspects: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `endpoint`'s Broadcast failed within the last [`SUSPECT_PERIOD`].
    fn is_suspect(&self, endpoint: &str) -> bool {
        self.suspects
            .lock()
            .ok()
            .and_then(|m| m.get(endpoint).copied())
            .is_some_and(|at| at.elapsed() < SUSPECT_PERIOD)
    }

    /// Records whether `endpoint` answered its last Broadcast.
    fn set_suspect(&self, endpoint: &str, suspect: bool) {
        if let Ok(mut m) = self.suspects.lock() {
            if suspect {
                m.insert(endpoint.to_owned(), Instant::now());
            } else {
                m.remove(endpoint);
            }
        }
    }

    fn detail(&self, message: impl Into<String>) -> gateway::ErrorDetail {
        gateway::ErrorDetail {
            address: self.peer.config().endpoint(),
            msp_id: self.peer.config().msp_id.clone(),
            message: message.into(),
        }
    }

    /// A (cached, lazily connecting) TLS channel to `endpoint`, trusting `ca_pems`.
    fn connection(
        &self,
        endpoint: &str,
        ca_pems: &[Vec<u8>],
        stream: bool,
    ) -> Result<tonic::transport::Channel, Status> {
        let key = format!("{endpoint}|{stream}");
        if let Some(c) = self
            .connections
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
        {
            return Ok(c);
        }
        let timeout = self.peer.rpc_timeout();
        let channel =
            crate::tls::client_channel(endpoint, ca_pems, timeout, (!stream).then_some(timeout))
                .map_err(|e| Status::unavailable(e.to_string()))?;
        if let Ok(mut m) = self.connections.lock() {
            m.insert(key, channel.clone());
        }
        Ok(channel)
    }
}

/// A gRPC status carrying `gateway.ErrorDetail`s in `grpc-status-details-bin`, as Fabric's
/// gateway sends them.
pub fn status_with_details(
    code: Code,
    message: impl Into<String>,
    details: Vec<gateway::ErrorDetail>,
) -> Status {
    let message = message.into();
    let rpc = google::rpc::Status {
        code: code as i32,
        message: message.clone(),
        details: details
            .into_iter()
            .map(|d| prost_types::Any {
                type_url: "type.googleapis.com/gateway.ErrorDetail".into(),
                value: d.encode_to_vec(),
            })
            .collect(),
    };
    Status::with_details(code, message, rpc.encode_to_vec().into())
}

fn proposal_status(e: &ProposalError) -> Status {
    let code = match e {
        ProposalError::Malformed(_) => Code::InvalidArgument,
        ProposalError::UnknownChannel(_) => Code::NotFound,
        ProposalError::AccessDenied(_) => Code::PermissionDenied,
        ProposalError::DuplicateTxId(_) => Code::AlreadyExists,
        ProposalError::UnknownChaincode { .. } => Code::NotFound,
        ProposalError::ChaincodeUnavailable { .. } => Code::Unavailable,
        ProposalError::Ledger(_) => Code::Unavailable,
        ProposalError::PrivateData(_) => Code::Unavailable,
    };
    Status::new(code, e.to_string())
}

/// TLS root certificates of an organization, from its MSP in the channel config.
pub fn tls_roots(config: &ChannelConfig, msp_id: &str) -> Vec<Vec<u8>> {
    let Some(root) = config.config().channel_group.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for section in root.groups.values() {
        for org in section.groups.values() {
            let Some(value) = org.values.get("MSP") else {
                continue;
            };
            let Ok(mspc) = msp::MspConfig::decode(value.value.as_slice()) else {
                continue;
            };
            let Ok(fabric) = msp::FabricMspConfig::decode(mspc.config.as_slice()) else {
                continue;
            };
            if fabric.name == msp_id {
                out.extend(fabric.tls_root_certs.iter().cloned());
                out.extend(fabric.tls_intermediate_certs.iter().cloned());
            }
        }
    }
    out
}

/// Would the policy be satisfied if one peer of each organization in `orgs` endorsed?
fn satisfiable(
    config: &ChannelConfig,
    policy: &EndorsementPolicy,
    orgs: &BTreeSet<String>,
) -> bool {
    match policy {
        EndorsementPolicy::Signature(env) => envelope_satisfiable(env, orgs),
        EndorsementPolicy::ChannelPolicy(path) => path_satisfiable(config, path, orgs, 0),
    }
}

fn path_satisfiable(
    config: &ChannelConfig,
    path: &str,
    orgs: &BTreeSet<String>,
    depth: usize,
) -> bool {
    if depth > 16 {
        return false;
    }
    let Some(policy) = config.policies().policy(path) else {
        return false;
    };
    match common::policy::PolicyType::try_from(policy.r#type) {
        Ok(common::policy::PolicyType::Signature) => {
            common::SignaturePolicyEnvelope::decode(policy.value.as_slice())
                .map(|env| envelope_satisfiable(&env, orgs))
                .unwrap_or(false)
        }
        Ok(common::policy::PolicyType::ImplicitMeta) => {
            let Ok(meta) = common::ImplicitMetaPolicy::decode(policy.value.as_slice()) else {
                return false;
            };
            let Some((group_path, _)) = path.rsplit_once('/') else {
                return false;
            };
            let children = child_groups(config, group_path);
            let satisfied = children
                .iter()
                .filter(|child| {
                    path_satisfiable(
                        config,
                        &format!("{group_path}/{child}/{}", meta.sub_policy),
                        orgs,
                        depth + 1,
                    )
                })
                .count();
            match common::implicit_meta_policy::Rule::try_from(meta.rule) {
                Ok(common::implicit_meta_policy::Rule::Any) => {
                    satisfied >= 1 || children.is_empty()
                }
                Ok(common::implicit_meta_policy::Rule::All) => satisfied == children.len(),
                Ok(common::implicit_meta_policy::Rule::Majority) => satisfied > children.len() / 2,
                Err(_) => false,
            }
        }
        _ => false,
    }
}

fn child_groups(config: &ChannelConfig, group_path: &str) -> Vec<String> {
    let mut group = config.config().channel_group.as_ref();
    for name in group_path.trim_start_matches('/').split('/').skip(1) {
        group = group.and_then(|g| g.groups.get(name));
    }
    group
        .map(|g| g.groups.keys().cloned().collect())
        .unwrap_or_default()
}

fn envelope_satisfiable(env: &common::SignaturePolicyEnvelope, orgs: &BTreeSet<String>) -> bool {
    // Which identities each org's single endorser could be: (msp id) for ROLE member/peer.
    let principal_org: Vec<Option<String>> = env
        .identities
        .iter()
        .map(|p| {
            let role = common::MspRole::decode(p.principal.as_slice()).ok()?;
            let ok_role = matches!(
                common::msp_role::MspRoleType::try_from(role.role),
                Ok(common::msp_role::MspRoleType::Member | common::msp_role::MspRoleType::Peer)
            );
            (p.principal_classification == common::msp_principal::Classification::Role as i32
                && ok_role)
                .then_some(role.msp_identifier)
        })
        .collect();
    let signers: Vec<&String> = orgs.iter().collect();
    let mut used = vec![false; signers.len()];
    env.rule
        .as_ref()
        .is_some_and(|rule| rule_satisfiable(rule, &principal_org, &signers, &mut used, 0))
}

fn rule_satisfiable(
    rule: &common::SignaturePolicy,
    principals: &[Option<String>],
    signers: &[&String],
    used: &mut [bool],
    depth: usize,
) -> bool {
    use common::signature_policy::Type;
    if depth > 64 {
        return false;
    }
    match &rule.r#type {
        Some(Type::SignedBy(i)) => {
            let Some(Some(org)) = usize::try_from(*i).ok().and_then(|i| principals.get(i)) else {
                return false;
            };
            match signers
                .iter()
                .enumerate()
                .find(|(j, s)| !used[*j] && **s == org)
            {
                Some((j, _)) => {
                    used[j] = true;
                    true
                }
                None => false,
            }
        }
        Some(Type::NOutOf(n)) => {
            let mut count = 0;
            for sub in &n.rules {
                let mut trial = used.to_vec();
                if rule_satisfiable(sub, principals, signers, &mut trial, depth + 1) {
                    used.copy_from_slice(&trial);
                    count += 1;
                }
            }
            count >= n.n
        }
        None => false,
    }
}

/// The smallest set of organizations whose endorsements satisfy the policy, preferring sets
/// that include `local`.
fn endorsement_plan(
    config: &ChannelConfig,
    policy: &EndorsementPolicy,
    local: &str,
) -> Option<BTreeSet<String>> {
    let orgs: Vec<String> = config
        .application()
        .organizations
        .iter()
        .map(|o| o.msp_id.clone())
        .collect();
    if orgs.len() > MAX_PLANNED_ORGS {
        return None;
    }
    let mut subsets: Vec<BTreeSet<String>> = (1u32..(1 << orgs.len()))
        .map(|mask| {
            orgs.iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, o)| o.clone())
                .collect()
        })
        .collect();
    subsets.sort_by_key(|s: &BTreeSet<String>| (s.len(), !s.contains(local)));
    subsets.into_iter().find(|s| satisfiable(config, policy, s))
}

impl GatewayService {
    /// The status for a proposal this peer refused to endorse: malformed requests and unknown
    /// channels keep their own codes; everything else is Fabric's ABORTED with the endorser's
    /// reason attached.
    fn endorse_failure(&self, e: &ProposalError) -> Status {
        match e {
            ProposalError::Malformed(_) | ProposalError::UnknownChannel(_) => proposal_status(e),
            _ => status_with_details(
                Code::Aborted,
                "failed to endorse transaction, see attached details for more info",
                vec![self.detail(e.to_string())],
            ),
        }
    }

    /// A channel this peer has joined, or NOT_FOUND.
    fn joined_channel(&self, id: &str) -> Result<Arc<Channel>, Status> {
        self.peer
            .channel(id)
            .ok_or_else(|| Status::not_found(format!("channel '{id}' is not joined by this peer")))
    }

    /// The status for a proposal this peer refused to evaluate, as Fabric's gateway reports
    /// an endorser error: FAILED_PRECONDITION with the reason attached.
    fn evaluate_failure(&self, e: &ProposalError) -> Status {
        match e {
            ProposalError::Malformed(_) | ProposalError::UnknownChannel(_) => proposal_status(e),
            _ => status_with_details(
                Code::FailedPrecondition,
                format!("evaluate call to endorser returned error: {e}"),
                vec![self.detail(e.to_string())],
            ),
        }
    }

    /// Asks `msp_id`'s anchor peer to endorse `signed`. With `min_height` (the height this
    /// gateway's ledger had when it endorsed locally), the request carries
    /// [`crate::endorser::MIN_HEIGHT_HEADER`] so a GridLedger peer that is a few blocks behind
    /// catches up before simulating, instead of returning a read set that does not match the
    /// local one; other peers ignore the header.
    async fn endorse_remote(
        &self,
        config: &ChannelConfig,
        msp_id: &str,
        signed: &protos::SignedProposal,
        min_height: Option<u64>,
    ) -> Result<protos::ProposalResponse, gateway::ErrorDetail> {
        let org = config
            .organization(msp_id)
            .ok_or_else(|| gateway::ErrorDetail {
                address: String::new(),
                msp_id: msp_id.into(),
                message: "organization is not a member of the channel".into(),
            })?;
        let anchor = org
            .anchor_peers
            .first()
            .ok_or_else(|| gateway::ErrorDetail {
                address: String::new(),
                msp_id: msp_id.into(),
                message: "organization has no anchor peer to endorse".into(),
            })?;
        let endpoint = format!("{}:{}", anchor.host, anchor.port);
        let fail = |message: String| gateway::ErrorDetail {
            address: endpoint.clone(),
            msp_id: msp_id.into(),
            message,
        };
        let channel = self
            .connection(&endpoint, &tls_roots(config, msp_id), false)
            .map_err(|s| fail(s.message().to_owned()))?;
        let mut client = protos::endorser_client::EndorserClient::new(channel);
        let mut request = tonic::Request::new(signed.clone());
        if let Some(height) = min_height {
            request.metadata_mut().insert(
                crate::endorser::MIN_HEIGHT_HEADER,
                tonic::metadata::MetadataValue::from(height),
            );
        }
        client
            .process_proposal(request)
            .await
            .map(Response::into_inner)
            .map_err(|s| fail(s.message().to_owned()))
    }

    async fn evaluate_inner(
        &self,
        req: gateway::EvaluateRequest,
    ) -> Result<gateway::EvaluateResponse, Status> {
        let signed = req
            .proposed_transaction
            .ok_or_else(|| Status::invalid_argument("a proposed transaction is required"))?;
        let peer = self.peer.clone();
        let local = self.peer.config().msp_id.clone();
        let remote_target = req
            .target_organizations
            .iter()
            .find(|o| **o != local)
            .cloned()
            .filter(|_| !req.target_organizations.contains(&local));
        let response = match remote_target {
            None => {
                let simulated = tokio::task::spawn_blocking(move || {
                    unpack(&signed).and_then(|p| peer.simulate(&p))
                })
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| self.evaluate_failure(&e))?;
                simulated.result.response
            }
            Some(org) => {
                let p = unpack(&signed).map_err(|e| proposal_status(&e))?;
                let channel = self
                    .peer
                    .channel(&p.channel_header.channel_id)
                    .ok_or_else(|| {
                        proposal_status(&ProposalError::UnknownChannel(
                            p.channel_header.channel_id.clone(),
                        ))
                    })?;
                let r = self
                    .endorse_remote(&channel.config(), &org, &signed, None)
                    .await
                    .map_err(|d| {
                        status_with_details(
                            Code::Unavailable,
                            "failed to evaluate transaction, see attached details for more info",
                            vec![d],
                        )
                    })?;
                r.response.unwrap_or_default()
            }
        };
        if response.status >= 400 {
            let message = format!(
                "chaincode response {}, {}",
                response.status, response.message
            );
            return Err(status_with_details(
                Code::Unknown,
                format!("evaluate call to endorser returned error: {message}"),
                vec![self.detail(message.clone())],
            ));
        }
        Ok(gateway::EvaluateResponse {
            result: Some(response),
        })
    }

    async fn endorse_inner(
        &self,
        req: gateway::EndorseRequest,
    ) -> Result<gateway::EndorseResponse, Status> {
        let signed = req
            .proposed_transaction
            .ok_or_else(|| Status::invalid_argument("a proposed transaction is required"))?;
        let p = unpack(&signed).map_err(|e| proposal_status(&e))?;
        let channel: Arc<Channel> =
            self.peer
                .channel(&p.channel_header.channel_id)
                .ok_or_else(|| {
                    proposal_status(&ProposalError::UnknownChannel(
                        p.channel_header.channel_id.clone(),
                    ))
                })?;
        let config = channel.config();
        let local = self.peer.config().msp_id.clone();
        let orgs: BTreeSet<String> = if req.endorsing_organizations.is_empty() {
            let policy = channel
                .chaincodes()
                .get(&p.chaincode_name)
                .map(|d| d.endorsement.clone())
                .unwrap_or_else(|| {
                    EndorsementPolicy::ChannelPolicy("/Channel/Application/Endorsement".into())
                });
            endorsement_plan(&config, &policy, &local).ok_or_else(|| {
                status_with_details(
                    Code::FailedPrecondition,
                    "no combination of the channel's organizations can satisfy the endorsement policy",
                    vec![self.detail(format!("chaincode {}", p.chaincode_name))],
                )
            })?
        } else {
            req.endorsing_organizations.iter().cloned().collect()
        };

        let mut responses: Vec<(String, protos::ProposalResponse)> = Vec::new();
        // Read before simulating locally: the remote endorsers are asked to be at least here.
        let local_height = channel.ledger().height();
        if orgs.contains(&local) {
            let peer = self.peer.clone();
            let signed_local = signed.clone();
            let (_, response) = tokio::task::spawn_blocking(move || {
                unpack(&signed_local).and_then(|p| peer.endorse(&p))
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| self.endorse_failure(&e))?;
            responses.push((local.clone(), response));
        }
        let remote: Vec<&String> = orgs.iter().filter(|o| **o != local).collect();
        let calls = remote
            .iter()
            .map(|org| self.endorse_remote(&config, org, &signed, Some(local_height)));
        let results = futures_join_all(calls).await;
        let mut details = Vec::new();
        for (org, result) in remote.into_iter().zip(results) {
            match result {
                Ok(r) => responses.push((org.clone(), r)),
                Err(d) => details.push(d),
            }
        }
        for (org, r) in &responses {
            let status = r.response.as_ref().map_or(500, |x| x.status);
            if status >= 400 || r.endorsement.is_none() {
                let message = r
                    .response
                    .as_ref()
                    .map(|x| x.message.clone())
                    .unwrap_or_default();
                details.push(gateway::ErrorDetail {
                    address: if *org == local {
                        self.peer.config().endpoint()
                    } else {
                        String::new()
                    },
                    msp_id: org.clone(),
                    message: format!("chaincode response {status}, {message}"),
                });
            }
        }
        if !details.is_empty() {
            return Err(status_with_details(
                Code::Aborted,
                "failed to endorse transaction, see attached details for more info",
                details,
            ));
        }
        let first = responses
            .first()
            .map(|(_, r)| r.payload.clone())
            .ok_or_else(|| Status::internal("no endorsements collected"))?;
        if responses.iter().any(|(_, r)| r.payload != first) {
            let details = responses
                .iter()
                .map(|(org, _)| gateway::ErrorDetail {
                    address: String::new(),
                    msp_id: org.clone(),
                    message: "ProposalResponsePayloads do not match".into(),
                })
                .collect();
            return Err(status_with_details(
                Code::Aborted,
                "failed to assemble transaction: ProposalResponsePayloads do not match",
                details,
            ));
        }
        let mut endorsements: Vec<protos::Endorsement> = Vec::new();
        for e in responses.into_iter().filter_map(|(_, r)| r.endorsement) {
            if !endorsements.iter().any(|x| x.endorser == e.endorser) {
                endorsements.push(e);
            }
        }
        Ok(gateway::EndorseResponse {
            prepared_transaction: Some(prepared_transaction(&p, first, endorsements)),
        })
    }

    async fn submit_inner(
        &self,
        req: gateway::SubmitRequest,
    ) -> Result<gateway::SubmitResponse, Status> {
        let envelope = req
            .prepared_transaction
            .ok_or_else(|| Status::invalid_argument("a prepared transaction is required"))?;
        if envelope.signature.is_empty() {
            return Err(Status::invalid_argument(
                "prepared transaction must be signed",
            ));
        }
        let payload = common::Payload::decode(envelope.payload.as_slice()).map_err(|e| {
            Status::invalid_argument(format!("cannot decode the transaction payload: {e}"))
        })?;
        let channel_header = payload
            .header
            .as_ref()
            .and_then(|h| common::ChannelHeader::decode(h.channel_header.as_slice()).ok())
            .ok_or_else(|| {
                Status::invalid_argument("the transaction has no valid channel header")
            })?;
        let channel = self.joined_channel(&channel_header.channel_id)?;
        let config = channel.config();
        let mut details = Vec::new();
        // The channel config's order, with endpoints that failed recently moved to the end.
        let mut endpoints: Vec<(&str, &str, Vec<Vec<u8>>)> = Vec::new();
        for org in &config.orderer().organizations {
            let roots = tls_roots(&config, &org.msp_id);
            for endpoint in &org.endpoints {
                endpoints.push((endpoint, &org.msp_id, roots.clone()));
            }
        }
        endpoints.sort_by_key(|(endpoint, _, _)| self.is_suspect(endpoint));
        for (endpoint, msp_id, roots) in endpoints {
            let (endpoint, msp_id) = (endpoint.to_owned(), msp_id.to_owned());
            let attempt = tokio::time::timeout(
                self.peer.rpc_timeout(),
                self.broadcast_one(&endpoint, &roots, envelope.clone()),
            )
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "the orderer did not answer within {:?}",
                    self.peer.rpc_timeout()
                ))
            });
            self.set_suspect(&endpoint, attempt.is_err());
            match attempt {
                Ok(response) if response.status == common::Status::Success as i32 => {
                    return Ok(gateway::SubmitResponse {});
                }
                Ok(response) => {
                    let message = format!(
                        "received unsuccessful response from orderer: status={} info={}",
                        response.status, response.info
                    );
                    if (400..500).contains(&response.status) {
                        return Err(status_with_details(
                            Code::Aborted,
                            message.clone(),
                            vec![gateway::ErrorDetail {
                                address: endpoint.clone(),
                                msp_id: msp_id.clone(),
                                message,
                            }],
                        ));
                    }
                    details.push(gateway::ErrorDetail {
                        address: endpoint.clone(),
                        msp_id: msp_id.clone(),
                        message,
                    });
                }
                Err(message) => details.push(gateway::ErrorDetail {
                    address: endpoint.clone(),
                    msp_id: msp_id.clone(),
                    message,
                }),
            }
        }
        Err(status_with_details(
            Code::Unavailable,
            "no orderer accepted the transaction",
            details,
        ))
    }

    async fn broadcast_one(
        &self,
        endpoint: &str,
        roots: &[Vec<u8>],
        envelope: common::Envelope,
    ) -> Result<orderer::BroadcastResponse, String> {
        let channel = self
            .connection(endpoint, roots, false)
            .map_err(|s| s.message().to_owned())?;
        let mut client = orderer::atomic_broadcast_client::AtomicBroadcastClient::new(channel);
        let mut responses = client
            .broadcast(tokio_stream::once(envelope))
            .await
            .map_err(|s| s.message().to_owned())?
            .into_inner();
        responses
            .message()
            .await
            .map_err(|s| s.message().to_owned())?
            .ok_or_else(|| "the orderer closed the stream without a response".into())
    }

    /// Checks a signed request's identity and signature against the ACL of `resource`
    /// (`gateway/CommitStatus` or `gateway/ChaincodeEvents`, default the channel's Readers).
    fn check_acl(
        &self,
        channel: &Channel,
        resource: &str,
        identity: &[u8],
        data: &[u8],
        signature: &[u8],
    ) -> Result<(), Status> {
        let signed = SignedData {
            data,
            identity,
            signature,
        };
        crate::acl::check(&channel.config(), resource, &[signed], now_unix_secs())
            .map_err(|e| Status::permission_denied(format!("access denied: {e}")))
    }
}

/// Fabric's prepared transaction: the original header bytes, one action carrying the
/// proposal payload without transient data and the endorsed response payload; the client
/// signs its payload.
pub fn prepared_transaction(
    p: &UnpackedProposal,
    response_payload: Vec<u8>,
    endorsements: Vec<protos::Endorsement>,
) -> common::Envelope {
    let action_payload = protos::ChaincodeActionPayload {
        chaincode_proposal_payload: p.payload_without_transient.clone(),
        action: Some(protos::ChaincodeEndorsedAction {
            proposal_response_payload: response_payload,
            endorsements,
        }),
    };
    let transaction = protos::Transaction {
        actions: vec![protos::TransactionAction {
            header: p.header.signature_header.clone(),
            payload: action_payload.encode_to_vec(),
        }],
    };
    let payload = common::Payload {
        header: Some(p.header.clone()),
        data: transaction.encode_to_vec(),
    };
    common::Envelope {
        payload: payload.encode_to_vec(),
        signature: Vec::new(),
    }
}

async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<F> = futures.collect();
    let mut out = Vec::with_capacity(handles.len());
    // Endorsement calls are few (one per required org); run them concurrently.
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = handles.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.extend(results.into_iter().flatten());
    out
}

/// The bodies of the Gateway methods whose outcome is counted by the trait methods.
impl GatewayService {
    async fn commit_status_inner(
        &self,
        request: Request<gateway::SignedCommitStatusRequest>,
    ) -> Result<Response<gateway::CommitStatusResponse>, Status> {
        let signed = request.into_inner();
        if signed.request.is_empty() {
            return Err(Status::invalid_argument(
                "a commit status request is required",
            ));
        }
        let req = gateway::CommitStatusRequest::decode(signed.request.as_slice()).map_err(|e| {
            Status::invalid_argument(format!("cannot decode the commit status request: {e}"))
        })?;
        if req.transaction_id.is_empty() || req.channel_id.is_empty() || req.identity.is_empty() {
            return Err(Status::invalid_argument(
                "transaction id, channel id and identity are required",
            ));
        }
        let channel = self.joined_channel(&req.channel_id)?;
        self.check_acl(
            &channel,
            crate::acl::GATEWAY_COMMIT_STATUS,
            &req.identity,
            &signed.request,
            &signed.signature,
        )?;
        let ledger = channel.ledger().clone();
        let loc = ledger
            .committed_tx(&req.transaction_id)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(gateway::CommitStatusResponse {
            result: i32::from(loc.validation_code),
            block_number: loc.block_num,
        }))
    }

    async fn chaincode_events_inner(
        &self,
        request: Request<gateway::SignedChaincodeEventsRequest>,
    ) -> Result<Response<ReceiverStream<Result<gateway::ChaincodeEventsResponse, Status>>>, Status>
    {
        let signed = request.into_inner();
        let req =
            gateway::ChaincodeEventsRequest::decode(signed.request.as_slice()).map_err(|e| {
                Status::invalid_argument(format!("cannot decode the chaincode events request: {e}"))
            })?;
        if req.channel_id.is_empty() || req.chaincode_id.is_empty() || req.identity.is_empty() {
            return Err(Status::invalid_argument(
                "channel id, chaincode id and identity are required",
            ));
        }
        let channel = self.joined_channel(&req.channel_id)?;
        self.check_acl(
            &channel,
            crate::acl::GATEWAY_CHAINCODE_EVENTS,
            &req.identity,
            &signed.request,
            &signed.signature,
        )?;
        let ledger = channel.ledger().clone();
        let mut start = match req.start_position.and_then(|p| p.r#type) {
            Some(orderer::seek_position::Type::Specified(s)) => s.number,
            Some(orderer::seek_position::Type::Oldest(_)) => 0,
            Some(orderer::seek_position::Type::Newest(_)) => ledger.height().saturating_sub(1),
            _ => ledger.height(),
        };
        let mut skip_through: Option<String> = None;
        if !req.after_transaction_id.is_empty() {
            if let Ok(Some(loc)) = ledger.tx_location(&req.after_transaction_id) {
                start = loc.block_num;
                skip_through = Some(req.after_transaction_id.clone());
            }
        }
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut number = start;
            loop {
                let block = tokio::select! {
                    block = blocks::wait_for_block(&ledger, number) => block,
                    _ = tx.closed() => return,
                };
                let Some(block) = block else { return };
                let mut events = Vec::new();
                for committed in blocks::committed_transactions(&block) {
                    if let Some(skip) = &skip_through {
                        if committed.tx_id == *skip {
                            skip_through = None;
                        }
                        continue;
                    }
                    if committed.header_type != common::HeaderType::EndorserTransaction as i32
                        || committed.validation_code != 0
                    {
                        continue;
                    }
                    events.extend(
                        committed
                            .actions
                            .iter()
                            .filter_map(blocks::chaincode_event)
                            .filter(|e| e.chaincode_id == req.chaincode_id),
                    );
                }
                skip_through = None;
                if !events.is_empty()
                    && tx
                        .send(Ok(gateway::ChaincodeEventsResponse {
                            events,
                            block_number: number,
                        }))
                        .await
                        .is_err()
                {
                    return;
                }
                number += 1;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Where a request came from, for log lines.
fn remote_of<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map_or_else(|| "an unknown address".to_owned(), |a| a.to_string())
}

/// Logs a refused Gateway request: the method, the client's address, the status and every
/// `gateway.ErrorDetail` (which organization or orderer said what). A chaincode's own error
/// answer (UNKNOWN) is an ordinary outcome and logged at info; every other refusal at warn.
fn log_refusal<T>(method: &str, remote: &str, outcome: &Result<T, Status>) {
    let Err(status) = outcome else {
        return;
    };
    let details = google::rpc::Status::decode(status.details())
        .map(|rpc| {
            rpc.details
                .iter()
                .filter_map(|any| gateway::ErrorDetail::decode(any.value.as_slice()).ok())
                .map(|d| format!("[{} {}] {}", d.msp_id, d.address, d.message))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default();
    if status.code() == Code::Unknown {
        tracing::info!(method, remote, code = ?status.code(), reason = status.message(),
            details = %details, "gateway request failed");
    } else {
        tracing::warn!(method, remote, code = ?status.code(), reason = status.message(),
            details = %details, "gateway request refused");
    }
}

#[tonic::async_trait]
impl Gateway for GatewayService {
    async fn endorse(
        &self,
        request: Request<gateway::EndorseRequest>,
    ) -> Result<Response<gateway::EndorseResponse>, Status> {
        let remote = remote_of(&request);
        let outcome = self.endorse_inner(request.into_inner()).await;
        log_refusal("Endorse", &remote, &outcome);
        crate::metrics::gateway_request("Endorse", outcome.map(Response::new))
    }

    async fn submit(
        &self,
        request: Request<gateway::SubmitRequest>,
    ) -> Result<Response<gateway::SubmitResponse>, Status> {
        let remote = remote_of(&request);
        let outcome = self.submit_inner(request.into_inner()).await;
        log_refusal("Submit", &remote, &outcome);
        crate::metrics::gateway_request("Submit", outcome.map(Response::new))
    }

    async fn commit_status(
        &self,
        request: Request<gateway::SignedCommitStatusRequest>,
    ) -> Result<Response<gateway::CommitStatusResponse>, Status> {
        let remote = remote_of(&request);
        let outcome = self.commit_status_inner(request).await;
        log_refusal("CommitStatus", &remote, &outcome);
        crate::metrics::gateway_request("CommitStatus", outcome)
    }

    async fn evaluate(
        &self,
        request: Request<gateway::EvaluateRequest>,
    ) -> Result<Response<gateway::EvaluateResponse>, Status> {
        let remote = remote_of(&request);
        let outcome = self.evaluate_inner(request.into_inner()).await;
        log_refusal("Evaluate", &remote, &outcome);
        crate::metrics::gateway_request("Evaluate", outcome.map(Response::new))
    }

    type ChaincodeEventsStream = ReceiverStream<Result<gateway::ChaincodeEventsResponse, Status>>;

    async fn chaincode_events(
        &self,
        request: Request<gateway::SignedChaincodeEventsRequest>,
    ) -> Result<Response<Self::ChaincodeEventsStream>, Status> {
        let remote = remote_of(&request);
        let outcome = self.chaincode_events_inner(request).await;
        log_refusal("ChaincodeEvents", &remote, &outcome);
        crate::metrics::gateway_request("ChaincodeEvents", outcome)
    }
}
