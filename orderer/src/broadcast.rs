//! `orderer.AtomicBroadcast/Broadcast`: clients stream envelopes in, and get one
//! `BroadcastResponse{status, info}` per envelope, in the order they were sent.
//!
//! Each envelope is screened, in Fabric's order:
//!
//! 1. it parses (payload, header, channel header, signature header) — else BAD_REQUEST;
//! 2. its channel is served here — else NOT_FOUND;
//! 3. it is no larger than the channel's AbsoluteMaxBytes — else REQUEST_ENTITY_TOO_LARGE;
//! 4. it is an ENDORSER_TRANSACTION or a CONFIG_UPDATE — any other type is BAD_REQUEST;
//! 5. its creator is a valid identity of the channel, its signature over the payload verifies
//!    and the creator satisfies `/Channel/Writers` — else FORBIDDEN with the explanation;
//! 6. a CONFIG_UPDATE must moreover be authorized by its own signatures and yield a valid
//!    config (`crate::configtx`) — else FORBIDDEN or BAD_REQUEST with the reason — and is
//!    ordered as the CONFIG transaction this orderer builds from it, in a block of its own.
//!
//! An accepted envelope goes to the channel's ordering loop; SUCCESS is answered once its
//! Raft entry has committed, SERVICE_UNAVAILABLE when the queue or Raft is over its bound.
//! On a follower the envelope is forwarded to the channel's Raft leader over the cluster
//! service (`crate::cluster`), and the leader's answer is the client's; with no known leader
//! the answer is SERVICE_UNAVAILABLE, so the client retries (elsewhere or later).
//! Screening and waiting are pipelined: up to `broadcast_pipeline_depth` envelopes of one
//! stream are in flight, and responses still leave in order.

use std::sync::Arc;

use gridledger_proto::common::{self, HeaderType, Status};
use gridledger_proto::orderer::BroadcastResponse;
use prost::Message;
use tokio::sync::{mpsc, oneshot, watch};

use crate::access::{ParsedEnvelope, Rejection, authorize, parse_envelope};
use crate::block::NONCE_LEN;
use crate::chain::{Submission, SubmitError};
use crate::configtx::process_config_update;
use crate::registry::{ChannelState, Registry};
use gridledger_channels::config::ChannelConfig;
use ring::rand::{SecureRandom, SystemRandom};

/// The policy a broadcaster must satisfy.
pub(crate) const WRITERS_POLICY_PATH: &str = "/Channel/Writers";

/// One envelope's response, possibly still waiting for consensus.
enum Pending {
    Done(BroadcastResponse),
    Ordering {
        channel: String,
        outcome: oneshot::Receiver<Result<(), SubmitError>>,
        /// The client's envelope bytes, kept to forward them to the leader.
        envelope: Vec<u8>,
        /// What was submitted here, kept to submit it again while no leader is known.
        submitted: Resubmit,
        /// Whether a follower may forward it (not for envelopes that were forwarded here).
        forward: bool,
    },
}

fn response(status: Status, info: impl Into<String>) -> BroadcastResponse {
    BroadcastResponse {
        status: status as i32,
        info: info.into(),
    }
}

/// What a pending envelope was submitted as.
#[derive(Clone)]
enum Resubmit {
    Transaction,
    Config(Vec<u8>),
}

/// Screens one envelope (steps 1–6 above) at `now_unix_secs`; returns its channel and what
/// to order.
fn screen(
    registry: &Registry,
    envelope: &common::Envelope,
    now_unix_secs: u64,
) -> Result<(Arc<ChannelState>, Submission), Rejection> {
    let parsed = parse_envelope(envelope)?;
    let channel_id = &parsed.channel_header.channel_id;
    let channel = registry.get(channel_id).ok_or_else(|| {
        Rejection::new(
            Status::NotFound,
            format!("channel '{channel_id}' does not exist on this orderer"),
        )
    })?;
    if channel.view.is_evicted() {
        return Err(Rejection::new(
            Status::ServiceUnavailable,
            format!(
                "this orderer is no longer one of channel '{channel_id}''s consenters; broadcast to another orderer"
            ),
        ));
    }
    let size = envelope.encoded_len();
    let limit = channel.view.batch().absolute_max_bytes as usize;
    if size > limit {
        return Err(Rejection::new(
            Status::RequestEntityTooLarge,
            format!(
                "the envelope is {size} bytes, more than channel '{channel_id}' allows (AbsoluteMaxBytes {limit})"
            ),
        ));
    }
    let config = channel.view.config();
    match broadcast_kind(&parsed)? {
        HeaderType::EndorserTransaction => {}
        // CONFIG_UPDATE: the only other type `broadcast_kind` lets through.
        _ => {
            let members = channel.view.members();
            let ids = members.voters();
            let mut nonce = [0u8; NONCE_LEN];
            SystemRandom::new()
                .fill(&mut nonce)
                .map_err(|_| Rejection::new(Status::InternalServerError, "cannot draw a nonce"))?;
            let accepted = process_config_update(
                &config,
                &ids,
                envelope,
                &parsed,
                registry.signer(),
                nonce,
                now_unix_secs,
            )?;
            tracing::info!(channel = %channel_id, sequence = accepted.config.sequence(),
                "config update accepted for ordering");
            return Ok((channel, Submission::Config(accepted.envelope)));
        }
    }
    authorize(
        &config,
        envelope,
        &parsed,
        WRITERS_POLICY_PATH,
        now_unix_secs,
    )?;
    Ok((channel, Submission::Transaction(envelope.encode_to_vec())))
}

/// The type of a parsed envelope if Broadcast orders that type (ENDORSER_TRANSACTION or
/// CONFIG_UPDATE, step 4 above); any other type is BAD_REQUEST.
fn broadcast_kind(parsed: &ParsedEnvelope) -> Result<HeaderType, Rejection> {
    match HeaderType::try_from(parsed.channel_header.r#type) {
        Ok(kind @ (HeaderType::EndorserTransaction | HeaderType::ConfigUpdate)) => Ok(kind),
        Ok(other) => Err(Rejection::bad_request(format!(
            "envelopes of type {} cannot be broadcast; only ENDORSER_TRANSACTION is ordered",
            other.as_str_name()
        ))),
        Err(_) => Err(Rejection::bad_request(format!(
            "unknown channel header type {}",
            parsed.channel_header.r#type
        ))),
    }
}

/// Screens `envelope` against one channel's `config` at `now_unix_secs` as Broadcast does,
/// without a running orderer: it parses and names that channel (steps 1–2), has a type
/// Broadcast orders (step 4), and its creator is a valid identity whose signature over the
/// payload verifies and who satisfies `/Channel/Writers` (step 5). The config update checks
/// of step 6 are `gridledger_channels::update`'s. `Err` carries the status and `info`
/// Broadcast answers. Exists so the screening of untrusted envelopes can be tested and
/// fuzzed offline.
pub fn screen_envelope(
    config: &ChannelConfig,
    envelope: &common::Envelope,
    now_unix_secs: u64,
) -> Result<HeaderType, (Status, String)> {
    let screen = || {
        let parsed = parse_envelope(envelope)?;
        if parsed.channel_header.channel_id != config.channel_id() {
            return Err(Rejection::new(
                Status::NotFound,
                format!(
                    "channel '{}' does not exist on this orderer",
                    parsed.channel_header.channel_id
                ),
            ));
        }
        let kind = broadcast_kind(&parsed)?;
        authorize(
            config,
            envelope,
            &parsed,
            WRITERS_POLICY_PATH,
            now_unix_secs,
        )?;
        Ok(kind)
    };
    screen().map_err(|r: Rejection| (r.status, r.info))
}

/// Screens an envelope and hands it to its channel's ordering loop.
fn accept(registry: &Registry, envelope: common::Envelope, forward: bool) -> Pending {
    let tx_id = tx_id_of(&envelope);
    match screen(registry, &envelope, crate::now_unix_secs()) {
        Err(rejection) => {
            tracing::info!(tx_id = %tx_id, status = rejection.status.as_str_name(),
                info = %rejection.info, "broadcast rejected");
            Pending::Done(response(rejection.status, rejection.info))
        }
        Ok((channel, submission)) => {
            let (bytes, submitted) = match &submission {
                Submission::Transaction(bytes) => (bytes.clone(), Resubmit::Transaction),
                Submission::Config(config) => {
                    (envelope.encode_to_vec(), Resubmit::Config(config.clone()))
                }
            };
            let Some(chain) = &channel.chain else {
                return Pending::Done(response(
                    Status::ServiceUnavailable,
                    format!("this orderer does not order channel '{}'", channel.id),
                ));
            };
            match chain.submit(submission) {
                Ok(outcome) => Pending::Ordering {
                    channel: channel.id.clone(),
                    outcome,
                    envelope: bytes,
                    submitted,
                    forward,
                },
                Err(e) => {
                    tracing::warn!(channel = %channel.id, tx_id = %tx_id, error = %e, "broadcast not ordered");
                    Pending::Done(response(Status::ServiceUnavailable, e.to_string()))
                }
            }
        }
    }
}

/// Orders an envelope a follower forwarded to this node (the cluster service's Submit):
/// screened again, never forwarded further.
pub(crate) async fn order_forwarded(
    registry: &Registry,
    envelope: common::Envelope,
) -> BroadcastResponse {
    resolve(registry, accept(registry, envelope, false)).await
}

/// The channel of an envelope for metrics (empty when it does not parse).
fn channel_of(envelope: &common::Envelope) -> String {
    parse_envelope(envelope)
        .map(|p| p.channel_header.channel_id)
        .unwrap_or_default()
}

/// The tx id of an envelope for logs (empty when it does not parse).
fn tx_id_of(envelope: &common::Envelope) -> String {
    parse_envelope(envelope)
        .map(|p| p.channel_header.tx_id)
        .unwrap_or_default()
}

async fn resolve(registry: &Registry, pending: Pending) -> BroadcastResponse {
    match pending {
        Pending::Done(response) => response,
        Pending::Ordering {
            channel,
            outcome,
            envelope,
            submitted,
            forward,
        } => match wait_for_leader(registry, &channel, outcome, &envelope, &submitted).await {
            Ok(Ok(())) => response(Status::Success, ""),
            Ok(Err(SubmitError::Refused(reason))) => {
                tracing::info!(channel = %channel, reason = %reason, "config update refused");
                response(Status::BadRequest, reason)
            }
            Ok(Err(SubmitError::NotLeader {
                leader: Some(leader),
            })) if forward => match registry.forward(&channel, leader, envelope).await {
                Ok(answer) => {
                    tracing::debug!(channel = %channel, leader, status = answer.status,
                        "envelope forwarded to the raft leader");
                    answer
                }
                Err(e) => {
                    tracing::warn!(channel = %channel, leader, error = %e, "cannot forward to the raft leader");
                    response(
                        Status::ServiceUnavailable,
                        format!("cannot reach the Raft leader (node {leader}): {e}"),
                    )
                }
            },
            Ok(Err(e)) => {
                tracing::warn!(channel = %channel, error = %e, "broadcast not ordered");
                response(Status::ServiceUnavailable, e.to_string())
            }
            Err(_) => response(Status::ServiceUnavailable, SubmitError::Stopped.to_string()),
        },
    }
}

/// The outcome of a submission; while the channel has no known Raft leader (an election is
/// under way) the envelope is submitted again every [`LEADER_POLL`] until
/// [`LEADER_WAIT`] has passed, so elections are not the client's problem.
async fn wait_for_leader(
    registry: &Registry,
    channel_id: &str,
    mut outcome: oneshot::Receiver<Result<(), SubmitError>>,
    envelope: &[u8],
    submitted: &Resubmit,
) -> Result<Result<(), SubmitError>, oneshot::error::RecvError> {
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    loop {
        let Ok(result) = tokio::time::timeout(COMMIT_WAIT, &mut outcome).await else {
            return Ok(Err(SubmitError::Unavailable(format!(
                "the envelope's Raft entry did not commit within {COMMIT_WAIT:?}"
            ))));
        };
        if !matches!(result, Ok(Err(SubmitError::NotLeader { leader: None })))
            || tokio::time::Instant::now() >= deadline
        {
            return result;
        }
        tokio::time::sleep(LEADER_POLL).await;
        let Some(channel) = registry.get(channel_id) else {
            return result;
        };
        let Some(chain) = channel.chain.as_ref() else {
            return result;
        };
        let submission = match submitted {
            Resubmit::Transaction => Submission::Transaction(envelope.to_vec()),
            Resubmit::Config(config) => Submission::Config(config.clone()),
        };
        outcome = match chain.submit(submission) {
            Ok(next) => next,
            Err(e) => return Ok(Err(e)),
        };
    }
}

/// How long one envelope may wait for its Raft entry to commit.
const COMMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a Broadcast waits for a Raft leader to be elected.
const LEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How often it checks again.
const LEADER_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Serves one Broadcast stream: reads envelopes from `inbound` until it ends, the client
/// goes away or the orderer stops, and writes one response per envelope to `out`.
pub(crate) fn serve(
    registry: Arc<Registry>,
    mut inbound: tonic::Streaming<common::Envelope>,
    out: mpsc::Sender<Result<BroadcastResponse, tonic::Status>>,
    pipeline_depth: usize,
    mut stopping: watch::Receiver<bool>,
) {
    let resolving = registry.clone();
    let (pending_tx, mut pending_rx) =
        mpsc::channel::<Result<(String, Pending), tonic::Status>>(pipeline_depth.max(1));
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = stopping.wait_for(|stop| *stop) => break,
                next = inbound.message() => next,
            };
            let item = match next {
                Ok(Some(envelope)) => {
                    let channel = channel_of(&envelope);
                    Ok((channel, accept(&registry, envelope, true)))
                }
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(error = %status, "broadcast stream failed");
                    Err(status)
                }
            };
            let failed = item.is_err();
            if pending_tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(item) = pending_rx.recv().await {
            let message = match item {
                Ok((channel, pending)) => {
                    let answer = resolve(&resolving, pending).await;
                    let status =
                        Status::try_from(answer.status).map_or("UNKNOWN", |s| s.as_str_name());
                    crate::metrics::get()
                        .broadcast_envelopes
                        .inc(&[&channel, status]);
                    Ok(answer)
                }
                Err(status) => Err(status),
            };
            if out.send(message).await.is_err() {
                break;
            }
        }
    });
}
