//! `orderer.AtomicBroadcast/Deliver`: streams a channel's blocks to a client.
//!
//! The client sends an envelope of type DELIVER_SEEK_INFO whose data is a `SeekInfo`. The
//! orderer checks it like Fabric's `common/deliver`: it parses (BAD_REQUEST), names a served
//! channel (NOT_FOUND), has a timestamp within the configured window of the orderer's clock
//! (BAD_REQUEST), and is signed by an identity satisfying `/Channel/Readers` (FORBIDDEN) —
//! checked again before the next block whenever the channel config has changed.
//!
//! Positions: start `oldest` = 0, `newest` = height − 1, `specified` = n; stop `oldest` = the
//! start, `newest` = height − 1 at request time (the start itself when start is also
//! `newest`), `specified` = n (≥ start, else BAD_REQUEST). `next_commit` is a peer-only
//! position (BAD_REQUEST here). With BLOCK_UNTIL_READY the stream waits for blocks not yet
//! written; with FAIL_IF_NOT_READY a missing block ends the request with NOT_FOUND. Each block
//! is one `DeliverResponse{block}` (header and metadata only for HEADER_WITH_SIG); reaching
//! the stop sends `status SUCCESS`, and the stream then accepts the next seek envelope.

use std::sync::Arc;

use gridledger_proto::common::{self, HeaderType, Status};
use gridledger_proto::orderer::seek_info::{SeekBehavior, SeekContentType};
use gridledger_proto::orderer::{
    DeliverResponse, SeekInfo, SeekPosition, deliver_response, seek_position,
};
use prost::Message;
use tokio::sync::{mpsc, watch};

use crate::access::{Rejection, authorize, parse_envelope};
use crate::registry::{ChannelState, Registry};

/// The policy a Deliver client must satisfy.
pub(crate) const READERS_POLICY_PATH: &str = "/Channel/Readers";

/// A checked seek request.
struct Seek {
    channel: Arc<ChannelState>,
    info: SeekInfo,
}

fn screen(
    registry: &Registry,
    envelope: &common::Envelope,
    now_unix_secs: u64,
    time_window_s: u64,
) -> Result<Seek, Rejection> {
    let parsed = parse_envelope(envelope)?;
    let header = &parsed.channel_header;
    if header.r#type != HeaderType::DeliverSeekInfo as i32 {
        return Err(Rejection::bad_request(format!(
            "a Deliver request is a DELIVER_SEEK_INFO envelope, not type {}",
            header.r#type
        )));
    }
    let channel = registry.get(&header.channel_id).ok_or_else(|| {
        Rejection::new(
            Status::NotFound,
            format!(
                "channel '{}' does not exist on this orderer",
                header.channel_id
            ),
        )
    })?;
    let timestamp = header
        .timestamp
        .as_ref()
        .ok_or_else(|| Rejection::bad_request("the channel header has no timestamp"))?;
    let now = i64::try_from(now_unix_secs).unwrap_or(i64::MAX);
    let window = i64::try_from(time_window_s).unwrap_or(i64::MAX);
    if timestamp.seconds.abs_diff(now) > window.unsigned_abs() {
        return Err(Rejection::bad_request(format!(
            "the request timestamp is more than {time_window_s} s away from the orderer's clock"
        )));
    }
    authorize(
        &channel.view.config(),
        envelope,
        &parsed,
        READERS_POLICY_PATH,
        now_unix_secs,
    )?;
    let info = SeekInfo::decode(parsed.data.as_slice())
        .map_err(|e| Rejection::bad_request(format!("the SeekInfo does not decode: {e}")))?;
    if SeekBehavior::try_from(info.behavior).is_err() {
        return Err(Rejection::bad_request(format!(
            "unknown seek behavior {}",
            info.behavior
        )));
    }
    if SeekContentType::try_from(info.content_type).is_err() {
        return Err(Rejection::bad_request(format!(
            "unknown seek content type {}",
            info.content_type
        )));
    }
    Ok(Seek { channel, info })
}

/// Resolves start and stop against the current `height` (at least 1).
fn positions(info: &SeekInfo, height: u64) -> Result<(u64, u64), Rejection> {
    let is_newest = |p: &Option<SeekPosition>| {
        matches!(
            p.as_ref().and_then(|p| p.r#type),
            Some(seek_position::Type::Newest(_))
        )
    };
    // Start and stop both `newest`: exactly the newest block, even if another is written
    // meanwhile.
    let newest_only = is_newest(&info.start) && is_newest(&info.stop);
    let newest = height.saturating_sub(1);
    let start = match info.start.as_ref().and_then(|p| p.r#type) {
        Some(seek_position::Type::Oldest(_)) => 0,
        Some(seek_position::Type::Newest(_)) => newest,
        Some(seek_position::Type::Specified(s)) => s.number,
        Some(seek_position::Type::NextCommit(_)) => {
            return Err(Rejection::bad_request(
                "next_commit is a peer position; the orderer does not support it",
            ));
        }
        None => return Err(Rejection::bad_request("the SeekInfo has no start position")),
    };
    let stop = match info.stop.as_ref().and_then(|p| p.r#type) {
        Some(seek_position::Type::Oldest(_)) => start,
        Some(seek_position::Type::Newest(_)) if newest_only => start,
        Some(seek_position::Type::Newest(_)) => newest,
        Some(seek_position::Type::Specified(s)) => s.number,
        Some(seek_position::Type::NextCommit(_)) => {
            return Err(Rejection::bad_request(
                "next_commit is a peer position; the orderer does not support it",
            ));
        }
        None => return Err(Rejection::bad_request("the SeekInfo has no stop position")),
    };
    // Fabric's ledger iterator: a start past the next block to be written does not exist.
    if start > height {
        return Err(Rejection::new(
            Status::NotFound,
            format!("block {start} is beyond the end of the chain (height {height})"),
        ));
    }
    if stop < start {
        return Err(Rejection::bad_request(format!(
            "the stop position {stop} is before the start position {start}"
        )));
    }
    Ok((start, stop))
}

/// How a seek request ended.
enum Outcome {
    /// Answer this status and wait for the next request.
    Status(Status),
    /// The client went away or the orderer is stopping: end the stream.
    Gone,
}

type Out = mpsc::Sender<Result<DeliverResponse, tonic::Status>>;

async fn handle(
    registry: &Registry,
    envelope: common::Envelope,
    out: &Out,
    time_window_s: u64,
    stopping: &mut watch::Receiver<bool>,
) -> Outcome {
    let seek = match screen(registry, &envelope, crate::now_unix_secs(), time_window_s) {
        Ok(seek) => seek,
        Err(rejection) => {
            tracing::info!(status = rejection.status.as_str_name(), info = %rejection.info,
                "deliver request rejected");
            return Outcome::Status(rejection.status);
        }
    };
    let channel = seek.channel.clone();
    let ledger = channel.ledger.clone();
    let (start, stop) = match positions(&seek.info, ledger.height()) {
        Ok(p) => p,
        Err(rejection) => {
            tracing::info!(channel = %channel.id, info = %rejection.info, "deliver request rejected");
            return Outcome::Status(rejection.status);
        }
    };
    let fail_if_not_ready = seek.info.behavior == SeekBehavior::FailIfNotReady as i32;
    let header_only = seek.info.content_type == SeekContentType::HeaderWithSig as i32;
    tracing::debug!(channel = %channel.id, start, stop, "deliver started");

    let mut heights = ledger.subscribe_height();
    // As in Fabric, a stream is authorized again whenever the channel config changes (a
    // policy or an MSP may have): a requester that no longer qualifies gets FORBIDDEN and no
    // further block.
    let mut checked_sequence = channel.view.config().sequence();
    let mut number = start;
    loop {
        // Wait until block `number` exists.
        loop {
            let height = *heights.borrow_and_update();
            if number < height {
                break;
            }
            if fail_if_not_ready {
                tracing::debug!(channel = %channel.id, block = number, height, "deliver: block not ready");
                return Outcome::Status(Status::NotFound);
            }
            tokio::select! {
                changed = heights.changed() => {
                    if changed.is_err() {
                        return Outcome::Status(Status::ServiceUnavailable);
                    }
                }
                _ = stopping.wait_for(|stop| *stop) => return Outcome::Gone,
                _ = out.closed() => return Outcome::Gone,
            }
        }
        let reader = ledger.clone();
        let read = tokio::task::spawn_blocking(move || reader.block(number)).await;
        let mut block = match read {
            Ok(Ok(Some(block))) => block,
            Ok(Ok(None)) => {
                tracing::error!(channel = %channel.id, block = number, "block below the height is missing");
                return Outcome::Status(Status::ServiceUnavailable);
            }
            Ok(Err(e)) => {
                tracing::error!(channel = %channel.id, block = number, error = %e, "cannot read block");
                return Outcome::Status(Status::ServiceUnavailable);
            }
            Err(e) => {
                tracing::error!(channel = %channel.id, block = number, error = %e, "block reader failed");
                return Outcome::Status(Status::ServiceUnavailable);
            }
        };
        let config = channel.view.config();
        if config.sequence() != checked_sequence {
            let recheck = parse_envelope(&envelope).and_then(|parsed| {
                authorize(
                    &config,
                    &envelope,
                    &parsed,
                    READERS_POLICY_PATH,
                    crate::now_unix_secs(),
                )
            });
            if let Err(rejection) = recheck {
                tracing::info!(channel = %channel.id, status = rejection.status.as_str_name(),
                    info = %rejection.info, "deliver stream ended: the channel config changed and no longer admits the requester");
                return Outcome::Status(rejection.status);
            }
            checked_sequence = config.sequence();
        }
        if header_only {
            block.data = None;
        }
        let message = DeliverResponse {
            r#type: Some(deliver_response::Type::Block(block)),
        };
        if out.send(Ok(message)).await.is_err() {
            return Outcome::Gone;
        }
        if number >= stop {
            return Outcome::Status(Status::Success);
        }
        number += 1;
    }
}

/// Serves one Deliver stream: each seek envelope in turn, until the client closes the
/// stream or the orderer stops.
pub(crate) fn serve(
    registry: Arc<Registry>,
    mut inbound: tonic::Streaming<common::Envelope>,
    out: Out,
    time_window_s: u64,
    mut stopping: watch::Receiver<bool>,
) {
    crate::metrics::get().deliver_requests.inc(&[]);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = stopping.wait_for(|stop| *stop) => break,
                next = inbound.message() => next,
            };
            let envelope = match next {
                Ok(Some(envelope)) => envelope,
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(error = %status, "deliver stream failed");
                    let _ = out.send(Err(status)).await;
                    break;
                }
            };
            match handle(&registry, envelope, &out, time_window_s, &mut stopping).await {
                Outcome::Status(status) => {
                    let message = DeliverResponse {
                        r#type: Some(deliver_response::Type::Status(status as i32)),
                    };
                    if out.send(Ok(message)).await.is_err() {
                        break;
                    }
                }
                Outcome::Gone => break,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridledger_proto::orderer::{SeekNewest, SeekOldest, SeekSpecified};
    use seek_position::Type;

    fn resolve(start: Type, stop: Type, height: u64) -> Result<(u64, u64), Status> {
        let info = SeekInfo {
            start: Some(SeekPosition {
                r#type: Some(start),
            }),
            stop: Some(SeekPosition { r#type: Some(stop) }),
            ..Default::default()
        };
        positions(&info, height).map_err(|r| r.status)
    }

    #[test]
    fn seek_positions_follow_fabric() {
        let spec = |number| Type::Specified(SeekSpecified { number });
        let oldest = Type::Oldest(SeekOldest {});
        let newest = Type::Newest(SeekNewest {});
        assert_eq!(resolve(oldest, newest, 5), Ok((0, 4)));
        assert_eq!(resolve(newest, newest, 5), Ok((4, 4)));
        assert_eq!(resolve(spec(2), spec(3), 5), Ok((2, 3)));
        // The next block to be written may be asked for (the stream waits for it); a start
        // beyond it is NOT_FOUND, as Fabric's ledger iterator answers.
        assert_eq!(resolve(spec(5), spec(9), 5), Ok((5, 9)));
        assert_eq!(resolve(spec(7), spec(9), 5), Err(Status::NotFound));
        assert_eq!(resolve(spec(3), oldest, 5), Ok((3, 3)));
        assert_eq!(resolve(spec(3), spec(2), 5), Err(Status::BadRequest));
        assert_eq!(
            resolve(Type::NextCommit(Default::default()), spec(2), 5),
            Err(Status::BadRequest)
        );
        let no_stop = SeekInfo {
            start: Some(SeekPosition {
                r#type: Some(oldest),
            }),
            ..Default::default()
        };
        assert_eq!(
            positions(&no_stop, 5).map_err(|r| r.status),
            Err(Status::BadRequest)
        );
    }
}
