//! The peer's Deliver service (`/protos.Deliver/Deliver` and `DeliverFiltered`): committed
//! blocks, with their validation codes, streamed from a seek position, for block-event
//! listeners such as the Gateway SDKs' `getBlockEvents`.
//!
//! The request is one signed envelope (DELIVER_SEEK_INFO header, `orderer.SeekInfo` data); the
//! signer must satisfy the channel's `event/Block` ACL (`event/FilteredBlock` for filtered
//! blocks; both default to `/Channel/Application/Readers`, see [`crate::acl`]) — checked again
//! whenever the channel config changes during the stream — and the header timestamp must be
//! within 15 minutes of this peer's clock, as in Fabric. Only errors end a stream with a
//! status.

use crate::blocks;
use crate::node::{Peer, now_unix_secs};
use gridledger_channels::policy::SignedData;
use gridledger_proto::prost::Message;
use gridledger_proto::{common, orderer, protos};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Largest allowed distance between a request's timestamp and the peer's clock.
const MAX_CLOCK_SKEW_SECS: i64 = 15 * 60;

/// The Deliver service of one peer.
pub struct DeliverService(pub Arc<Peer>);

/// A checked seek request: channel, start and stop block numbers (inclusive stop).
struct Seek {
    channel: Arc<crate::node::Channel>,
    /// The creator of the request, checked again when the channel config changes.
    creator: Vec<u8>,
    start: u64,
    stop: u64,
    fail_if_not_ready: bool,
}

type DeliverItem = Result<protos::DeliverResponse, Status>;

fn status(s: common::Status) -> protos::DeliverResponse {
    protos::DeliverResponse {
        r#type: Some(protos::deliver_response::Type::Status(s as i32)),
    }
}

/// The channel a Deliver request names and who signed it, as far as they decode, for the log
/// line of a refusal.
fn who_asked(envelope: &common::Envelope) -> (String, String) {
    let header = common::Payload::decode(envelope.payload.as_slice())
        .ok()
        .and_then(|p| p.header);
    let Some(header) = header else {
        return ("(undecodable)".into(), "(undecodable)".into());
    };
    let channel = common::ChannelHeader::decode(header.channel_header.as_slice())
        .map_or_else(|_| "(undecodable)".into(), |h| h.channel_id);
    let creator = common::SignatureHeader::decode(header.signature_header.as_slice()).map_or_else(
        |_| "(undecodable)".into(),
        |h| crate::endorser::describe_creator(&h.creator),
    );
    (channel, creator)
}

/// The ACL of `resource` on `channel` over the request's signed payload: FORBIDDEN when refused
/// (the refusal is logged by [`crate::acl::check`]).
fn authorize(
    channel: &crate::node::Channel,
    envelope: &common::Envelope,
    creator: &[u8],
    resource: &str,
) -> Result<(), common::Status> {
    let signed = SignedData {
        data: &envelope.payload,
        identity: creator,
        signature: &envelope.signature,
    };
    crate::acl::check(&channel.config(), resource, &[signed], now_unix_secs())
        .map_err(|_| common::Status::Forbidden)
}

impl DeliverService {
    fn check(&self, envelope: &common::Envelope, filtered: bool) -> Result<Seek, common::Status> {
        let payload = common::Payload::decode(envelope.payload.as_slice())
            .map_err(|_| common::Status::BadRequest)?;
        let header = payload.header.ok_or(common::Status::BadRequest)?;
        let channel_header = common::ChannelHeader::decode(header.channel_header.as_slice())
            .map_err(|_| common::Status::BadRequest)?;
        let signature_header = common::SignatureHeader::decode(header.signature_header.as_slice())
            .map_err(|_| common::Status::BadRequest)?;
        if channel_header.r#type != common::HeaderType::DeliverSeekInfo as i32 {
            return Err(common::Status::BadRequest);
        }
        let now = now_unix_secs() as i64;
        let ts = channel_header.timestamp.map_or(0, |t| t.seconds);
        if (ts - now).abs() > MAX_CLOCK_SKEW_SECS {
            return Err(common::Status::BadRequest);
        }
        let channel = self
            .0
            .channel(&channel_header.channel_id)
            .ok_or(common::Status::NotFound)?;
        let resource = if filtered {
            crate::acl::EVENT_FILTERED_BLOCK
        } else {
            crate::acl::EVENT_BLOCK
        };
        authorize(&channel, envelope, &signature_header.creator, resource)?;
        let seek = orderer::SeekInfo::decode(payload.data.as_slice())
            .map_err(|_| common::Status::BadRequest)?;
        let height = channel.ledger().height();
        // Fabric's seek rules: both positions are required; a specified start past the
        // chain's end is NOT_FOUND at once (start == height waits for the next block).
        let position = |p: Option<orderer::SeekPosition>| -> Result<u64, common::Status> {
            match p.and_then(|p| p.r#type) {
                Some(orderer::seek_position::Type::Oldest(_)) => Ok(0),
                Some(orderer::seek_position::Type::Newest(_)) => Ok(height.saturating_sub(1)),
                Some(orderer::seek_position::Type::Specified(s)) => Ok(s.number),
                Some(orderer::seek_position::Type::NextCommit(_)) => Ok(height),
                None => Err(common::Status::BadRequest),
            }
        };
        let start = position(seek.start)?;
        let stop = position(seek.stop)?;
        if start > height {
            return Err(common::Status::NotFound);
        }
        if start > stop {
            return Err(common::Status::BadRequest);
        }
        Ok(Seek {
            channel,
            creator: signature_header.creator,
            start,
            stop,
            fail_if_not_ready: seek.behavior
                == orderer::seek_info::SeekBehavior::FailIfNotReady as i32,
        })
    }

    fn serve(
        &self,
        mut requests: Streaming<common::Envelope>,
        filtered: bool,
    ) -> ReceiverStream<DeliverItem> {
        crate::metrics::get().deliver_requests.inc(&[]);
        let (tx, rx) = mpsc::channel::<DeliverItem>(8);
        let this = DeliverService(self.0.clone());
        tokio::spawn(async move {
            loop {
                let envelope = match requests.message().await {
                    Ok(Some(envelope)) => envelope,
                    Ok(None) => return,
                    Err(status) => {
                        // An unreadable request (bad bytes, too large) ends the stream with
                        // its error rather than looking served.
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                let seek = match this.check(&envelope, filtered) {
                    Ok(seek) => seek,
                    Err(s) => {
                        let (channel, creator) = who_asked(&envelope);
                        tracing::warn!(status = s.as_str_name(), channel = %channel,
                            creator = %creator, filtered, "deliver request refused");
                        let _ = tx.send(Ok(status(s))).await;
                        continue;
                    }
                };
                let ledger = seek.channel.ledger().clone();
                let resource = if filtered {
                    crate::acl::EVENT_FILTERED_BLOCK
                } else {
                    crate::acl::EVENT_BLOCK
                };
                // As in Fabric, a stream is checked again when the channel config changes
                // (an ACL, a policy or an MSP may have), and ends FORBIDDEN when the
                // requester no longer satisfies it.
                let mut checked_sequence = seek.channel.config().sequence();
                let mut number = seek.start;
                while number <= seek.stop {
                    if seek.fail_if_not_ready && ledger.height() <= number {
                        let _ = tx.send(Ok(status(common::Status::NotFound))).await;
                        break;
                    }
                    // Stop waiting as soon as the client goes away.
                    let block = tokio::select! {
                        block = blocks::wait_for_block(&ledger, number) => block,
                        _ = tx.closed() => return,
                    };
                    let Some(block) = block else {
                        let _ = tx
                            .send(Ok(status(common::Status::ServiceUnavailable)))
                            .await;
                        return;
                    };
                    let sequence = seek.channel.config().sequence();
                    if sequence != checked_sequence {
                        if let Err(s) = authorize(&seek.channel, &envelope, &seek.creator, resource)
                        {
                            let _ = tx.send(Ok(status(s))).await;
                            return;
                        }
                        checked_sequence = sequence;
                    }
                    let item = if filtered {
                        protos::deliver_response::Type::FilteredBlock(filter_block(
                            seek.channel.id(),
                            &block,
                        ))
                    } else {
                        protos::deliver_response::Type::Block(block)
                    };
                    if tx
                        .send(Ok(protos::DeliverResponse { r#type: Some(item) }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    number += 1;
                }
                if number > seek.stop && tx.send(Ok(status(common::Status::Success))).await.is_err()
                {
                    return;
                }
            }
        });
        ReceiverStream::new(rx)
    }
}

/// Fabric's filtered block: per transaction its id, type and validation code, and the
/// chaincode events without their payloads.
pub fn filter_block(channel_id: &str, block: &common::Block) -> protos::FilteredBlock {
    let number = block.header.as_ref().map_or(0, |h| h.number);
    let filtered_transactions = blocks::committed_transactions(block)
        .into_iter()
        .map(|tx| {
            let chaincode_actions = tx
                .actions
                .iter()
                .map(|a| protos::FilteredChaincodeAction {
                    chaincode_event: blocks::chaincode_event(a).map(|e| protos::ChaincodeEvent {
                        payload: Vec::new(),
                        ..e
                    }),
                })
                .collect();
            protos::FilteredTransaction {
                txid: tx.tx_id,
                r#type: tx.header_type,
                tx_validation_code: tx.validation_code,
                data: (tx.header_type == common::HeaderType::EndorserTransaction as i32).then_some(
                    protos::filtered_transaction::Data::TransactionActions(
                        protos::FilteredTransactionActions { chaincode_actions },
                    ),
                ),
            }
        })
        .collect();
    protos::FilteredBlock {
        channel_id: channel_id.into(),
        number,
        filtered_transactions,
    }
}

#[tonic::async_trait]
impl protos::deliver_server::Deliver for DeliverService {
    type DeliverStream = ReceiverStream<DeliverItem>;
    type DeliverFilteredStream = ReceiverStream<DeliverItem>;
    type DeliverWithPrivateDataStream = ReceiverStream<DeliverItem>;

    async fn deliver(
        &self,
        request: Request<Streaming<common::Envelope>>,
    ) -> Result<Response<Self::DeliverStream>, Status> {
        Ok(Response::new(self.serve(request.into_inner(), false)))
    }

    async fn deliver_filtered(
        &self,
        request: Request<Streaming<common::Envelope>>,
    ) -> Result<Response<Self::DeliverFilteredStream>, Status> {
        Ok(Response::new(self.serve(request.into_inner(), true)))
    }

    async fn deliver_with_private_data(
        &self,
        _request: Request<Streaming<common::Envelope>>,
    ) -> Result<Response<Self::DeliverWithPrivateDataStream>, Status> {
        Err(Status::unimplemented(
            "DeliverWithPrivateData is not served: blocks carry only private-data hashes; member peers read values through chaincode",
        ))
    }
}
