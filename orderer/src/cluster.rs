//! The orderer-to-orderer transport: the `gridledger.Cluster` gRPC service (Raft messages in,
//! forwarded Broadcast envelopes in) and its client side (Raft messages out, envelopes
//! forwarded to the leader).
//!
//! Membership comes from each channel's configuration: the consenters, in config order, are
//! Raft nodes 1, 2, 3, … ([`Members`]). A node finds itself by its TLS server certificate.
//! Calls are over mutual TLS: the caller presents its TLS certificate (the consenter's client
//! certificate in the channel config), the server's TLS layer checks it chains to a cluster
//! CA (`[cluster] tls_ca_certs` in `orderer.toml`), and this module then accepts a call for a
//! channel only when the certificate is byte-for-byte one of that channel's consenters'; the
//! Raft sender id is the one of that consenter, whatever the message claims.
//!
//! Outbound Raft messages go through one bounded queue and one long-lived `Step` stream per
//! remote endpoint; a full queue or a broken stream loses messages, which Raft retransmits.
//! Forwarded envelopes use unary `Submit` calls with a deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridledger_channels::config::ConsenterConfig;
use gridledger_proto::common::{self, Status};
use gridledger_proto::gridledger::cluster_client::ClusterClient;
use gridledger_proto::gridledger::cluster_server::Cluster;
use gridledger_proto::gridledger::{StepRequest, StepResponse, SubmitRequest, SubmitResponse};
use gridledger_proto::orderer::BroadcastResponse;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::registry::Registry;

/// Raft messages queued per remote endpoint before new ones are dropped (each at most about
/// 1 MiB of entries, so a stalled link holds a bounded amount of memory).
const LINK_QUEUE_DEPTH: usize = 128;
/// Messages handed to the open gRPC stream and not yet sent.
const STREAM_DEPTH: usize = 32;
/// Time allowed to open a connection to another orderer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before a broken Step stream is opened again.
const RECONNECT_DELAY: Duration = Duration::from_millis(200);
/// Deadline of a forwarded envelope (it waits for the Raft commit on the leader).
pub(crate) const FORWARD_DEADLINE: Duration = Duration::from_secs(15);

/// Why a channel's cluster membership or a cluster call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A consenter's certificate in the channel config is not PEM.
    #[error(
        "consenter {index} of the channel config has an unreadable {which} certificate: {reason}"
    )]
    BadConsenterCert {
        /// Position in the consenter list (from 0).
        index: usize,
        /// "client TLS" or "server TLS".
        which: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// This orderer's TLS certificate is not one of the channel's consenters'.
    #[error("this orderer's TLS certificate is not among the channel's {0} consenters")]
    NotAConsenter(usize),
    /// The Raft node id names no consenter.
    #[error("raft node {0} is not a consenter of the channel")]
    UnknownNode(u64),
    /// The other orderer could not be reached or refused the call.
    #[error("cluster call to {endpoint}: {reason}")]
    Call {
        /// `host:port`.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
}

/// One consenter as this node sees it.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// Raft node id (position in the consenter list, from 1).
    pub id: u64,
    /// Host to dial (also the TLS server name checked).
    pub host: String,
    /// `host:port` of its cluster service.
    pub endpoint: String,
    /// DER of the TLS certificate it presents as client.
    pub client_cert: Vec<u8>,
}

/// A channel's consenters and which of them this node is.
#[derive(Debug, Clone)]
pub(crate) struct Members {
    /// This node's Raft id.
    pub self_id: u64,
    /// All consenters, this node included, by id order.
    pub members: Vec<Member>,
}

fn der_of(pem_bytes: &[u8]) -> Result<Vec<u8>, String> {
    let block = pem::parse(pem_bytes).map_err(|e| e.to_string())?;
    if block.tag() != "CERTIFICATE" {
        return Err(format!("PEM block is a {}, not a CERTIFICATE", block.tag()));
    }
    Ok(block.into_contents())
}

/// Checks that every consenter's TLS certificates are PEM certificates.
pub(crate) fn validate_consenters(consenters: &[ConsenterConfig]) -> Result<(), ClusterError> {
    for (index, c) in consenters.iter().enumerate() {
        der_of(&c.server_tls_cert).map_err(|reason| ClusterError::BadConsenterCert {
            index,
            which: "server TLS",
            reason,
        })?;
        der_of(&c.client_tls_cert).map_err(|reason| ClusterError::BadConsenterCert {
            index,
            which: "client TLS",
            reason,
        })?;
    }
    Ok(())
}

/// Whether the orderer whose TLS server certificate is `own_tls_cert` (DER) is one of
/// `consenters`.
pub(crate) fn is_consenter(consenters: &[ConsenterConfig], own_tls_cert: &[u8]) -> bool {
    consenters
        .iter()
        .any(|c| der_of(&c.server_tls_cert).is_ok_and(|der| der == own_tls_cert))
}

/// Whether two consenter entries are the same orderer: the same TLS certificates (it may
/// have moved to another host or port).
fn same_consenter(a: &ConsenterConfig, b: &ConsenterConfig) -> bool {
    a.client_tls_cert == b.client_tls_cert && a.server_tls_cert == b.server_tls_cert
}

/// How a config update changes a channel's consenters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsenterChange {
    /// The Raft id of each consenter of the new list, in its order.
    pub ids: Vec<u64>,
    /// The id the next added consenter gets.
    pub next_id: u64,
    /// Ids of consenters the update adds.
    pub added: Vec<u64>,
    /// Ids of consenters the update removes.
    pub removed: Vec<u64>,
}

/// Maps the consenter list `new` onto `old` (whose Raft ids are `old_ids`; positions from 1
/// when they do not match the list) the way the ordering service numbers consenters: one
/// that stays keeps its id, an added one gets the next unused id. Refuses what Raft cannot
/// do safely in one step: more than one consenter added or removed (a certificate rotation
/// counts as both), or no consenter left.
pub(crate) fn consenter_change(
    old: &[ConsenterConfig],
    old_ids: &[u64],
    next_id: u64,
    new: &[ConsenterConfig],
) -> Result<ConsenterChange, String> {
    let old_ids: Vec<u64> = if old_ids.len() == old.len() {
        old_ids.to_vec()
    } else {
        (1..=old.len() as u64).collect()
    };
    if new.is_empty() {
        return Err("the update leaves the channel without consenters".to_string());
    }
    let mut next_id = next_id.max(old_ids.iter().max().copied().unwrap_or(0) + 1);
    let mut ids = Vec::with_capacity(new.len());
    let mut added = Vec::new();
    for (index, c) in new.iter().enumerate() {
        if new[..index]
            .iter()
            .any(|earlier| same_consenter(earlier, c))
        {
            return Err(format!(
                "consenter {}:{} is listed twice (same TLS certificates)",
                c.host, c.port
            ));
        }
        match old.iter().position(|o| same_consenter(o, c)) {
            Some(position) => ids.push(old_ids[position]),
            None => {
                ids.push(next_id);
                added.push(next_id);
                next_id += 1;
            }
        }
    }
    let removed: Vec<u64> = old_ids
        .iter()
        .copied()
        .filter(|id| !ids.contains(id))
        .collect();
    if added.len() + removed.len() > 1 {
        return Err(format!(
            "the update adds {} and removes {} consenters; change one consenter per config \
             update (a certificate rotation is a removal and an addition: do them one at a time)",
            added.len(),
            removed.len()
        ));
    }
    Ok(ConsenterChange {
        ids,
        next_id,
        added,
        removed,
    })
}

impl Members {
    /// The members of a channel from its consenter list and their Raft ids (`ids[i]` is
    /// consenter `i`'s; when `ids` does not match the list, as before any block recorded
    /// them, consenters are numbered by position from 1), `own_tls_cert` being this node's
    /// TLS server certificate (DER). A channel with a single consenter whose certificate is
    /// not this node's is still served, as that consenter (configurations written before
    /// clusters).
    pub(crate) fn from_consenters(
        consenters: &[ConsenterConfig],
        ids: &[u64],
        own_tls_cert: &[u8],
    ) -> Result<Members, ClusterError> {
        let ids: Vec<u64> = if ids.len() == consenters.len() {
            ids.to_vec()
        } else {
            (1..=consenters.len() as u64).collect()
        };
        let mut members = Vec::with_capacity(consenters.len());
        let mut self_id = None;
        for (index, (c, &id)) in consenters.iter().zip(&ids).enumerate() {
            let server =
                der_of(&c.server_tls_cert).map_err(|reason| ClusterError::BadConsenterCert {
                    index,
                    which: "server TLS",
                    reason,
                })?;
            let client =
                der_of(&c.client_tls_cert).map_err(|reason| ClusterError::BadConsenterCert {
                    index,
                    which: "client TLS",
                    reason,
                })?;
            if server == own_tls_cert && self_id.is_none() {
                self_id = Some(id);
            }
            members.push(Member {
                id,
                host: c.host.clone(),
                endpoint: format!("{}:{}", c.host, c.port),
                client_cert: client,
            });
        }
        let self_id = match self_id {
            Some(id) => id,
            None if members.len() == 1 => members[0].id,
            None => return Err(ClusterError::NotAConsenter(members.len())),
        };
        Ok(Members { self_id, members })
    }

    /// The consenters of a channel this orderer is not one of (it follows the channel's
    /// blocks): as [`Members::from_consenters`], with no member being this node (`self_id`
    /// 0).
    pub(crate) fn observing(
        consenters: &[ConsenterConfig],
        ids: &[u64],
    ) -> Result<Members, ClusterError> {
        validate_consenters(consenters)?;
        let ids: Vec<u64> = if ids.len() == consenters.len() {
            ids.to_vec()
        } else {
            (1..=consenters.len() as u64).collect()
        };
        let mut members = Vec::with_capacity(consenters.len());
        for (c, &id) in consenters.iter().zip(&ids) {
            let client =
                der_of(&c.client_tls_cert).map_err(|reason| ClusterError::BadConsenterCert {
                    index: members.len(),
                    which: "client TLS",
                    reason,
                })?;
            members.push(Member {
                id,
                host: c.host.clone(),
                endpoint: format!("{}:{}", c.host, c.port),
                client_cert: client,
            });
        }
        Ok(Members {
            self_id: 0,
            members,
        })
    }

    /// The Raft ids of all consenters.
    pub(crate) fn voters(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.id).collect()
    }

    /// The consenter with this id.
    pub(crate) fn get(&self, id: u64) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// The id of the consenter presenting this TLS client certificate (DER), never this node.
    pub(crate) fn id_of_client(&self, cert: &[u8]) -> Option<u64> {
        self.members
            .iter()
            .find(|m| m.client_cert == cert && m.id != self.self_id)
            .map(|m| m.id)
    }
}

/// TLS material for calls to other orderers.
#[derive(Clone)]
pub(crate) struct ClientTls {
    /// This node's certificate and key (PEM), presented as client certificate.
    pub cert_pem: Vec<u8>,
    /// Its key.
    pub key_pem: Vec<u8>,
    /// CA certificates (PEM) other orderers' server certificates chain to.
    pub ca_pems: Vec<Vec<u8>>,
}

/// Connections to the other orderers, shared by every channel.
pub(crate) struct Transport {
    runtime: tokio::runtime::Handle,
    tls: ClientTls,
    links: Mutex<HashMap<String, mpsc::Sender<StepRequest>>>,
    channels: Mutex<HashMap<String, Channel>>,
}

impl Transport {
    /// A transport spawning its connection tasks on `runtime`.
    pub(crate) fn new(runtime: tokio::runtime::Handle, tls: ClientTls) -> Transport {
        Transport {
            runtime,
            tls,
            links: Mutex::new(HashMap::new()),
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The runtime the transport's connections run on.
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// A lazily connecting mutual-TLS channel to `member` (cached per endpoint); the channel
    /// carries cluster calls and, for a catch-up, the member's Deliver service.
    pub(crate) fn channel(&self, member: &Member) -> Result<Channel, ClusterError> {
        let call = |reason: String| ClusterError::Call {
            endpoint: member.endpoint.clone(),
            reason,
        };
        if let Some(ch) = self
            .channels
            .lock()
            .ok()
            .and_then(|c| c.get(&member.endpoint).cloned())
        {
            return Ok(ch);
        }
        // Called from ordering threads too: the lazy channel needs the runtime's reactor.
        let _runtime = self.runtime.enter();
        let mut tls = ClientTlsConfig::new()
            .domain_name(member.host.clone())
            .identity(Identity::from_pem(&self.tls.cert_pem, &self.tls.key_pem));
        for ca in &self.tls.ca_pems {
            tls = tls.ca_certificate(Certificate::from_pem(ca));
        }
        let channel = Endpoint::from_shared(format!("https://{}", member.endpoint))
            .map_err(|e| call(e.to_string()))?
            .tls_config(tls)
            .map_err(|e| call(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .connect_lazy();
        if let Ok(mut c) = self.channels.lock() {
            c.insert(member.endpoint.clone(), channel.clone());
        }
        Ok(channel)
    }

    /// Queues a Raft message of `channel_id` for `member`; false when it cannot be queued.
    pub(crate) fn send_step(&self, channel_id: &str, member: &Member, message: Vec<u8>) -> bool {
        let request = StepRequest {
            channel: channel_id.to_string(),
            message,
        };
        let Ok(mut links) = self.links.lock() else {
            return false;
        };
        if let Some(link) = links.get(&member.endpoint) {
            return link.try_send(request).is_ok();
        }
        let Ok(channel) = self.channel(member) else {
            return false;
        };
        let (tx, rx) = mpsc::channel(LINK_QUEUE_DEPTH);
        let queued = tx.try_send(request).is_ok();
        links.insert(member.endpoint.clone(), tx);
        self.runtime
            .spawn(run_link(member.endpoint.clone(), channel, rx));
        queued
    }

    /// Forwards an envelope to `member` (the leader) and returns its Broadcast answer.
    pub(crate) async fn forward(
        &self,
        channel_id: &str,
        member: &Member,
        envelope: Vec<u8>,
    ) -> Result<BroadcastResponse, ClusterError> {
        let channel = self.channel(member)?;
        let mut client = ClusterClient::new(channel);
        let mut request = tonic::Request::new(SubmitRequest {
            channel: channel_id.to_string(),
            envelope,
        });
        request.set_timeout(FORWARD_DEADLINE);
        let call = tokio::time::timeout(FORWARD_DEADLINE, client.submit(request));
        match call.await {
            Ok(Ok(answer)) => {
                let answer = answer.into_inner();
                Ok(BroadcastResponse {
                    status: answer.status,
                    info: answer.info,
                })
            }
            Ok(Err(status)) => Err(ClusterError::Call {
                endpoint: member.endpoint.clone(),
                reason: status.to_string(),
            }),
            Err(_) => Err(ClusterError::Call {
                endpoint: member.endpoint.clone(),
                reason: format!("no answer within {FORWARD_DEADLINE:?}"),
            }),
        }
    }
}

/// Keeps one Step stream open to `endpoint`, feeding it from `queue`, until every sender of
/// the queue is gone.
async fn run_link(endpoint: String, channel: Channel, mut queue: mpsc::Receiver<StepRequest>) {
    loop {
        let mut client = ClusterClient::new(channel.clone());
        let (tx, rx) = mpsc::channel::<StepRequest>(STREAM_DEPTH);
        let call = client.step(ReceiverStream::new(rx));
        tokio::pin!(call);
        loop {
            tokio::select! {
                outcome = &mut call => {
                    if let Err(status) = outcome {
                        tracing::debug!(endpoint = %endpoint, error = %status, "cluster stream ended");
                    }
                    break;
                }
                next = queue.recv() => match next {
                    Some(request) => {
                        if tx.try_send(request).is_err() {
                            tracing::debug!(endpoint = %endpoint, "raft message dropped: stream backlog");
                        }
                    }
                    None => return,
                },
            }
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// The `gridledger.Cluster` service.
pub(crate) struct ClusterService {
    /// The served channels.
    pub registry: Arc<Registry>,
    /// Turns true when the orderer stops: open Step streams end so shutdown does not wait.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// The DER of the caller's TLS client certificate, if it presented one.
fn caller_cert<T>(request: &tonic::Request<T>) -> Result<Vec<u8>, tonic::Status> {
    request
        .peer_certs()
        .and_then(|certs| certs.first().map(|c| c.as_ref().to_vec()))
        .ok_or_else(|| {
            tonic::Status::unauthenticated(
                "cluster calls need a TLS client certificate of a consenter",
            )
        })
}

impl ClusterService {
    /// The Raft id of the caller on `channel_id`, or the refusal.
    fn authenticate(
        &self,
        channel_id: &str,
        cert: &[u8],
    ) -> Result<(Arc<crate::registry::ChannelState>, u64), tonic::Status> {
        let channel = self.registry.get(channel_id).ok_or_else(|| {
            tonic::Status::not_found(format!("channel '{channel_id}' is not served here"))
        })?;
        let id = channel.view.members().id_of_client(cert).ok_or_else(|| {
            tonic::Status::permission_denied(format!(
                "the TLS client certificate is not one of channel '{channel_id}''s consenters"
            ))
        })?;
        Ok((channel, id))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn step(
        &self,
        request: tonic::Request<tonic::Streaming<StepRequest>>,
    ) -> Result<tonic::Response<StepResponse>, tonic::Status> {
        let cert = caller_cert(&request)?;
        let mut inbound = request.into_inner();
        let mut stopping = self.stopping.clone();
        loop {
            let next = tokio::select! {
                _ = stopping.wait_for(|stop| *stop) => break,
                next = inbound.message() => next?,
            };
            let Some(step) = next else { break };
            let (channel, from) = self.authenticate(&step.channel, &cert)?;
            if let Some(chain) = &channel.chain {
                chain.step(from, step.message);
            }
        }
        Ok(tonic::Response::new(StepResponse {}))
    }

    async fn submit(
        &self,
        request: tonic::Request<SubmitRequest>,
    ) -> Result<tonic::Response<SubmitResponse>, tonic::Status> {
        let cert = caller_cert(&request)?;
        let SubmitRequest { channel, envelope } = request.into_inner();
        self.authenticate(&channel, &cert)?;
        let answer = match common::Envelope::decode(envelope.as_slice()) {
            Ok(envelope) => crate::broadcast::order_forwarded(&self.registry, envelope).await,
            Err(e) => BroadcastResponse {
                status: Status::BadRequest as i32,
                info: format!("forwarded envelope does not decode: {e}"),
            },
        };
        Ok(tonic::Response::new(SubmitResponse {
            status: answer.status,
            info: answer.info,
        }))
    }
}

/// The Raft outbound of one channel: node ids to members, messages to the transport.
pub(crate) struct ChannelOutbound {
    /// The channel id.
    pub channel_id: String,
    /// Its consenters (they change with config blocks).
    pub view: Arc<crate::view::ChannelView>,
    /// The shared transport.
    pub transport: Arc<Transport>,
}

impl crate::chain::RaftOutbound for ChannelOutbound {
    fn send(&self, to: u64, message: Vec<u8>) -> bool {
        let members = self.view.members();
        match members.get(to) {
            Some(member) if to != members.self_id => {
                self.transport.send_step(&self.channel_id, member, message)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consenter(cert: &[u8]) -> ConsenterConfig {
        let pem = pem::encode(&pem::Pem::new("CERTIFICATE", cert.to_vec()));
        ConsenterConfig {
            host: "127.0.0.1".into(),
            port: 7050,
            client_tls_cert: pem.clone().into_bytes(),
            server_tls_cert: pem.into_bytes(),
        }
    }

    #[test]
    fn node_ids_follow_the_consenter_order_and_self_is_found_by_certificate() {
        let list = [consenter(b"a"), consenter(b"b"), consenter(b"c")];
        let members = Members::from_consenters(&list, &[], b"b").expect("members");
        assert_eq!(members.self_id, 2);
        assert_eq!(members.voters(), vec![1, 2, 3]);
        assert_eq!(members.id_of_client(b"c"), Some(3));
        assert_eq!(
            members.id_of_client(b"b"),
            None,
            "this node is never a caller"
        );
        assert_eq!(members.id_of_client(b"zz"), None);
    }

    #[test]
    fn an_orderer_outside_a_multi_node_consenter_set_is_refused() {
        let list = [consenter(b"a"), consenter(b"b")];
        let err = Members::from_consenters(&list, &[], b"x").expect_err("not a consenter");
        assert!(matches!(err, ClusterError::NotAConsenter(2)), "{err}");
        // A single-consenter channel is still served as node 1.
        let single = Members::from_consenters(&[consenter(b"a")], &[], b"x").expect("single");
        assert_eq!(single.self_id, 1);
    }

    #[test]
    fn a_consenter_certificate_that_is_not_pem_is_an_error() {
        let mut bad = consenter(b"a");
        bad.client_tls_cert = b"not pem".to_vec();
        assert!(matches!(
            Members::from_consenters(&[bad], &[], b"a"),
            Err(ClusterError::BadConsenterCert { .. })
        ));
    }

    #[test]
    fn recorded_ids_survive_a_removal_and_additions_get_fresh_ids() {
        let (a, b, c, d) = (
            consenter(b"a"),
            consenter(b"b"),
            consenter(b"c"),
            consenter(b"d"),
        );
        // Removing b keeps a and c at 1 and 3.
        let removal = consenter_change(
            &[a.clone(), b.clone(), c.clone()],
            &[],
            4,
            &[a.clone(), c.clone()],
        )
        .expect("one removal");
        assert_eq!(
            (removal.ids.clone(), removal.removed.clone()),
            (vec![1, 3], vec![2])
        );
        let members =
            Members::from_consenters(&[a.clone(), c.clone()], &removal.ids, b"c").expect("members");
        assert_eq!((members.self_id, members.voters()), (3, vec![1, 3]));
        // Adding d afterwards gives it 4, never the removed 2.
        let addition = consenter_change(
            &[a.clone(), c.clone()],
            &removal.ids,
            removal.next_id,
            &[a.clone(), c.clone(), d.clone()],
        )
        .expect("one addition");
        assert_eq!(
            (addition.ids, addition.added, addition.next_id),
            (vec![1, 3, 4], vec![4], 5)
        );
        // A consenter moving host keeps its id; nothing added or removed.
        let mut moved = a.clone();
        moved.host = "orderer.example.com".into();
        let same = consenter_change(&[a.clone(), c.clone()], &[1, 3], 5, &[moved, c.clone()])
            .expect("a move");
        assert!(same.added.is_empty() && same.removed.is_empty());
        assert_eq!(same.ids, vec![1, 3]);
    }

    #[test]
    fn more_than_one_consenter_change_or_none_left_is_refused() {
        let (a, b, c, d) = (
            consenter(b"a"),
            consenter(b"b"),
            consenter(b"c"),
            consenter(b"d"),
        );
        let only_a = std::slice::from_ref(&a);
        let two =
            consenter_change(&[a.clone(), b.clone(), c], &[], 4, only_a).expect_err("two removals");
        assert!(two.contains("removes 2"), "{two}");
        let swap = consenter_change(&[a.clone(), b], &[], 3, &[a.clone(), d])
            .expect_err("a swap is two changes");
        assert!(swap.contains("adds 1 and removes 1"), "{swap}");
        assert!(consenter_change(only_a, &[], 2, &[]).is_err());
        let twice =
            consenter_change(only_a, &[], 2, &[a.clone(), a.clone()]).expect_err("duplicate");
        assert!(twice.contains("listed twice"), "{twice}");
    }
}
