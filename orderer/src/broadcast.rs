//! `orderer.AtomicBroadcast/Broadcast`: clients stream envelopes in, and get one
//! `BroadcastResponse{status, info}` per envelope, in the order they were sent.
//!
//! Each envelope is screened, in Fabric's order:
//!
//! 1. it parses (payload, header, channel header, signature header) — else BAD_REQUEST;
//! 2. its channel is served here — else NOT_FOUND;
//! 3. it is no larger than the channel's AbsoluteMaxBytes — else REQUEST_ENTITY_TOO_LARGE;
//! 4. it is an ENDORSER_TRANSACTION — CONFIG_UPDATE is NOT_IMPLEMENTED (channel config
//!    updates are not ordered yet), any other type BAD_REQUEST;
//! 5. its creator is a valid identity of the channel, its signature over the payload verifies
//!    and the creator satisfies `/Channel/Writers` — else FORBIDDEN with the explanation.
//!
//! An accepted envelope goes to the channel's ordering loop; SUCCESS is answered once its
//! Raft entry has committed, SERVICE_UNAVAILABLE when the queue or Raft is over its bound.
//! Screening and waiting are pipelined: up to `broadcast_pipeline_depth` envelopes of one
//! stream are in flight, and responses still leave in order.

use std::sync::Arc;

use gridledger_proto::common::{self, HeaderType, Status};
use gridledger_proto::orderer::BroadcastResponse;
use prost::Message;
use tokio::sync::{mpsc, oneshot, watch};

use crate::access::{Rejection, authorize, parse_envelope};
use crate::chain::SubmitError;
use crate::registry::{ChannelState, Registry};

/// The policy a broadcaster must satisfy.
pub(crate) const WRITERS_POLICY_PATH: &str = "/Channel/Writers";

/// One envelope's response, possibly still waiting for consensus.
enum Pending {
    Done(BroadcastResponse),
    Ordering {
        channel: String,
        outcome: oneshot::Receiver<Result<(), SubmitError>>,
    },
}

fn response(status: Status, info: impl Into<String>) -> BroadcastResponse {
    BroadcastResponse {
        status: status as i32,
        info: info.into(),
    }
}

/// Screens one envelope (steps 1–5 above) at `now_unix_secs`.
fn screen(
    registry: &Registry,
    envelope: &common::Envelope,
    now_unix_secs: u64,
) -> Result<Arc<ChannelState>, Rejection> {
    let parsed = parse_envelope(envelope)?;
    let channel_id = &parsed.channel_header.channel_id;
    let channel = registry.get(channel_id).ok_or_else(|| {
        Rejection::new(
            Status::NotFound,
            format!("channel '{channel_id}' does not exist on this orderer"),
        )
    })?;
    let size = envelope.encoded_len();
    let limit = channel.batch.absolute_max_bytes as usize;
    if size > limit {
        return Err(Rejection::new(
            Status::RequestEntityTooLarge,
            format!(
                "the envelope is {size} bytes, more than channel '{channel_id}' allows (AbsoluteMaxBytes {limit})"
            ),
        ));
    }
    match HeaderType::try_from(parsed.channel_header.r#type) {
        Ok(HeaderType::EndorserTransaction) => {}
        Ok(HeaderType::ConfigUpdate) => {
            return Err(Rejection::new(
                Status::NotImplemented,
                "CONFIG_UPDATE is not supported yet: this orderer does not order channel configuration updates",
            ));
        }
        Ok(other) => {
            return Err(Rejection::bad_request(format!(
                "envelopes of type {} cannot be broadcast; only ENDORSER_TRANSACTION is ordered",
                other.as_str_name()
            )));
        }
        Err(_) => {
            return Err(Rejection::bad_request(format!(
                "unknown channel header type {}",
                parsed.channel_header.r#type
            )));
        }
    }
    authorize(
        &channel.config,
        envelope,
        &parsed,
        WRITERS_POLICY_PATH,
        now_unix_secs,
    )?;
    Ok(channel)
}

/// Screens an envelope and hands it to its channel's ordering loop.
fn accept(registry: &Registry, envelope: common::Envelope) -> Pending {
    let tx_id = tx_id_of(&envelope);
    match screen(registry, &envelope, crate::now_unix_secs()) {
        Err(rejection) => {
            tracing::info!(tx_id = %tx_id, status = rejection.status.as_str_name(),
                info = %rejection.info, "broadcast rejected");
            Pending::Done(response(rejection.status, rejection.info))
        }
        Ok(channel) => match channel.chain.submit(envelope.encode_to_vec()) {
            Ok(outcome) => Pending::Ordering {
                channel: channel.id.clone(),
                outcome,
            },
            Err(e) => {
                tracing::warn!(channel = %channel.id, tx_id = %tx_id, error = %e, "broadcast not ordered");
                Pending::Done(response(Status::ServiceUnavailable, e.to_string()))
            }
        },
    }
}

/// The tx id of an envelope for logs (empty when it does not parse).
fn tx_id_of(envelope: &common::Envelope) -> String {
    parse_envelope(envelope)
        .map(|p| p.channel_header.tx_id)
        .unwrap_or_default()
}

async fn resolve(pending: Pending) -> BroadcastResponse {
    match pending {
        Pending::Done(response) => response,
        Pending::Ordering { channel, outcome } => match outcome.await {
            Ok(Ok(())) => response(Status::Success, ""),
            Ok(Err(e)) => {
                tracing::warn!(channel = %channel, error = %e, "broadcast not ordered");
                response(Status::ServiceUnavailable, e.to_string())
            }
            Err(_) => response(Status::ServiceUnavailable, SubmitError::Stopped.to_string()),
        },
    }
}

/// Serves one Broadcast stream: reads envelopes from `inbound` until it ends, the client
/// goes away or the orderer stops, and writes one response per envelope to `out`.
pub(crate) fn serve(
    registry: Arc<Registry>,
    mut inbound: tonic::Streaming<common::Envelope>,
    out: mpsc::Sender<Result<BroadcastResponse, tonic::Status>>,
    pipeline_depth: usize,
    mut stopping: watch::Receiver<bool>,
) {
    let (pending_tx, mut pending_rx) =
        mpsc::channel::<Result<Pending, tonic::Status>>(pipeline_depth.max(1));
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = stopping.wait_for(|stop| *stop) => break,
                next = inbound.message() => next,
            };
            let item = match next {
                Ok(Some(envelope)) => Ok(accept(&registry, envelope)),
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
                Ok(pending) => Ok(resolve(pending).await),
                Err(status) => Err(status),
            };
            if out.send(message).await.is_err() {
                break;
            }
        }
    });
}
