//! Events of a channel, as Fabric's Gateway SDKs offer them: chaincode events over the
//! Gateway's `ChaincodeEvents` stream, and blocks (full or filtered) over the peer's `Deliver`
//! service, which the peer serves on the Gateway's address.
//!
//! Both start where [`EventsOptions`] says: at a [`Checkpoint`] when one is given (what makes
//! a restarted application resume exactly after the last event it processed), else at a block
//! number, else at the next block the peer commits. Chaincode events arrive only for VALID
//! transactions, in ledger order; blocks arrive in sequence, every block once (the stream fails
//! rather than skip one).
//!
//! The requests are signed by the gateway's [`crate::Signer`]: the channel's Readers policy
//! decides who may listen. A stream ends when the application drops it; the peer never ends
//! one normally, so `Ok(None)` means it went away (shutting down) and the application should
//! reconnect from its checkpoint.

use crate::{Checkpoint, Network, SdkError};
use gridledger_proto::prost::Message;
use gridledger_proto::protos::deliver_client::DeliverClient;
use gridledger_proto::{common, gateway, orderer, protos};
use std::collections::VecDeque;
use tonic::Streaming;

/// Where an event stream starts. The default is the next block the peer commits.
///
/// A checkpoint that holds a position wins over a start block, so an application can pass
/// both: the start block for its first run, the checkpoint for every run after.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsOptions {
    start_block: Option<u64>,
    checkpoint: Option<Checkpoint>,
}

impl EventsOptions {
    /// Events from the next committed block.
    pub fn new() -> EventsOptions {
        EventsOptions::default()
    }

    /// Events from block `block_number` (0 = the whole chain), unless a checkpoint is set.
    pub fn start_block(mut self, block_number: u64) -> EventsOptions {
        self.start_block = Some(block_number);
        self
    }

    /// Events after `checkpoint`; `None` (nothing saved yet) leaves the start block, or the
    /// next committed block, in effect.
    pub fn checkpoint(mut self, checkpoint: Option<Checkpoint>) -> EventsOptions {
        self.checkpoint = checkpoint;
        self
    }

    /// The start position and the transaction of that block to skip through, if any.
    fn position(&self) -> (orderer::SeekPosition, Option<String>) {
        let specified = |number| orderer::SeekPosition {
            r#type: Some(orderer::seek_position::Type::Specified(
                orderer::SeekSpecified { number },
            )),
        };
        match (&self.checkpoint, self.start_block) {
            (Some(checkpoint), _) => (
                specified(checkpoint.block_number),
                checkpoint.transaction_id.clone(),
            ),
            (None, Some(number)) => (specified(number), None),
            (None, None) => (
                orderer::SeekPosition {
                    r#type: Some(orderer::seek_position::Type::NextCommit(
                        orderer::SeekNextCommit {},
                    )),
                },
                None,
            ),
        }
    }
}

/// An event a chaincode set in a transaction committed VALID (Fabric's `SetEvent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChaincodeEvent {
    /// The block holding the transaction.
    pub block_number: u64,
    /// The transaction that set the event.
    pub tx_id: String,
    /// The event's name, chosen by the chaincode (`Trade`).
    pub event_name: String,
    /// The event's payload, as the chaincode set it.
    pub payload: Vec<u8>,
    /// The chaincode that set it.
    pub chaincode: String,
}

/// A stream of chaincode events; dropping it stops the stream on the peer.
pub struct ChaincodeEvents {
    stream: Streaming<gateway::ChaincodeEventsResponse>,
    /// Events of a received block not yet handed out.
    pending: VecDeque<ChaincodeEvent>,
}

impl ChaincodeEvents {
    /// The next event, waiting for the peer to commit one; `Ok(None)` when the peer ended the
    /// stream (reconnect from the checkpoint), `Err` when it failed.
    pub async fn next(&mut self) -> Result<Option<ChaincodeEvent>, SdkError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            let Some(response) = self.stream.message().await? else {
                return Ok(None);
            };
            let block_number = response.block_number;
            self.pending
                .extend(response.events.into_iter().map(|e| ChaincodeEvent {
                    block_number,
                    tx_id: e.tx_id,
                    event_name: e.event_name,
                    payload: e.payload,
                    chaincode: e.chaincode_id,
                }));
        }
    }
}

/// Checks that delivered blocks come one after another from where the stream started.
#[derive(Debug)]
struct Sequence {
    /// The number the next block must have; unknown before the first block when the stream
    /// started at the next commit.
    next: Option<u64>,
}

impl Sequence {
    fn check(&mut self, number: u64) -> Result<(), SdkError> {
        if let Some(expected) = self.next {
            if number != expected {
                return Err(SdkError::Response(format!(
                    "the peer delivered block {number} where block {expected} was due"
                )));
            }
        }
        self.next = Some(number.saturating_add(1));
        Ok(())
    }
}

/// What a Deliver stream yields: a delivered item, its end, or a refusal.
enum Delivered {
    Block(common::Block),
    Filtered(protos::FilteredBlock),
    End,
}

/// Reads the next item of a Deliver stream; any status but SUCCESS is an error, as in Fabric.
async fn next_delivered(
    stream: &mut Streaming<protos::DeliverResponse>,
) -> Result<Delivered, SdkError> {
    let Some(response) = stream.message().await? else {
        return Ok(Delivered::End);
    };
    match response.r#type {
        Some(protos::deliver_response::Type::Block(block)) => Ok(Delivered::Block(block)),
        Some(protos::deliver_response::Type::FilteredBlock(block)) => {
            Ok(Delivered::Filtered(block))
        }
        Some(protos::deliver_response::Type::Status(code))
            if code == common::Status::Success as i32 =>
        {
            Ok(Delivered::End)
        }
        Some(protos::deliver_response::Type::Status(code)) => Err(SdkError::Deliver {
            status: code,
            name: common::Status::try_from(code)
                .map(|s| s.as_str_name().to_owned())
                .unwrap_or_else(|_| format!("STATUS_{code}")),
        }),
        Some(protos::deliver_response::Type::BlockAndPrivateData(_)) => Err(SdkError::Response(
            "the peer delivered private data, which was not asked for".into(),
        )),
        None => Err(SdkError::Response(
            "the peer delivered an empty response".into(),
        )),
    }
}

/// A stream of committed blocks with their transactions' validation codes (in the block's
/// metadata); dropping it stops delivery.
pub struct BlockEvents {
    stream: Streaming<protos::DeliverResponse>,
    sequence: Sequence,
}

impl BlockEvents {
    /// The next block, waiting for the peer to commit it; `Ok(None)` when the peer ended the
    /// stream, `Err` when it refused (FORBIDDEN, NOT_FOUND, …) or failed.
    pub async fn next(&mut self) -> Result<Option<common::Block>, SdkError> {
        match next_delivered(&mut self.stream).await? {
            Delivered::Block(block) => {
                self.sequence
                    .check(block.header.as_ref().map_or(0, |h| h.number))?;
                Ok(Some(block))
            }
            Delivered::Filtered(_) => Err(SdkError::Response(
                "the peer delivered a filtered block on a full-block stream".into(),
            )),
            Delivered::End => Ok(None),
        }
    }
}

/// A stream of filtered blocks: per transaction its id, type, validation code and chaincode
/// events without payloads — what a listener needs to follow commits without reading data.
pub struct FilteredBlockEvents {
    stream: Streaming<protos::DeliverResponse>,
    sequence: Sequence,
}

impl FilteredBlockEvents {
    /// The next filtered block; `Ok(None)` when the peer ended the stream.
    pub async fn next(&mut self) -> Result<Option<protos::FilteredBlock>, SdkError> {
        match next_delivered(&mut self.stream).await? {
            Delivered::Filtered(block) => {
                self.sequence.check(block.number)?;
                Ok(Some(block))
            }
            Delivered::Block(_) => Err(SdkError::Response(
                "the peer delivered a full block on a filtered stream".into(),
            )),
            Delivered::End => Ok(None),
        }
    }
}

impl Network {
    /// Chaincode events of `chaincode` on this channel, from where `options` say.
    ///
    /// ```no_run
    /// # async fn run(network: gridledger_sdk::Network) -> Result<(), gridledger_sdk::SdkError> {
    /// use gridledger_sdk::EventsOptions;
    /// let mut events = network.chaincode_events("energy", EventsOptions::new().start_block(0)).await?;
    /// while let Some(event) = events.next().await? {
    ///     println!("{} {} in block {}", event.event_name, event.tx_id, event.block_number);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn chaincode_events(
        &self,
        chaincode: &str,
        options: EventsOptions,
    ) -> Result<ChaincodeEvents, SdkError> {
        let gw = &self.gateway;
        let (start, after) = options.position();
        let request = gateway::ChaincodeEventsRequest {
            channel_id: self.channel.clone(),
            chaincode_id: chaincode.to_owned(),
            identity: gw.identity.to_vec(),
            start_position: Some(start),
            after_transaction_id: after.unwrap_or_default(),
        }
        .encode_to_vec();
        let signed = gateway::SignedChaincodeEventsRequest {
            signature: gw.sign(&request)?,
            request,
        };
        // No deadline: the stream lasts as long as the application listens.
        let stream = gw
            .client
            .clone()
            .chaincode_events(tonic::Request::new(signed))
            .await?
            .into_inner();
        Ok(ChaincodeEvents {
            stream,
            pending: VecDeque::new(),
        })
    }

    /// Blocks committed on this channel, from where `options` say (a checkpoint resumes at its
    /// block).
    pub async fn block_events(&self, options: EventsOptions) -> Result<BlockEvents, SdkError> {
        let (start, stream) = self.deliver(options, false).await?;
        Ok(BlockEvents {
            stream,
            sequence: Sequence { next: start },
        })
    }

    /// Filtered blocks committed on this channel, from where `options` say.
    pub async fn filtered_block_events(
        &self,
        options: EventsOptions,
    ) -> Result<FilteredBlockEvents, SdkError> {
        let (start, stream) = self.deliver(options, true).await?;
        Ok(FilteredBlockEvents {
            stream,
            sequence: Sequence { next: start },
        })
    }

    /// Opens the peer's Deliver (or DeliverFiltered) stream with one signed seek request;
    /// returns the first block number when the request names it.
    async fn deliver(
        &self,
        options: EventsOptions,
        filtered: bool,
    ) -> Result<(Option<u64>, Streaming<protos::DeliverResponse>), SdkError> {
        let gw = &self.gateway;
        let (start, _) = options.position();
        let first = match start.r#type {
            Some(orderer::seek_position::Type::Specified(ref s)) => Some(s.number),
            _ => None,
        };
        let seek = orderer::SeekInfo {
            start: Some(start),
            stop: Some(orderer::SeekPosition {
                r#type: Some(orderer::seek_position::Type::Specified(
                    orderer::SeekSpecified { number: u64::MAX },
                )),
            }),
            behavior: orderer::seek_info::SeekBehavior::BlockUntilReady as i32,
            ..Default::default()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let channel_header = common::ChannelHeader {
            r#type: common::HeaderType::DeliverSeekInfo as i32,
            channel_id: self.channel.clone(),
            timestamp: Some(gridledger_proto::prost_types::Timestamp {
                seconds: now.as_secs() as i64,
                nanos: now.subsec_nanos() as i32,
            }),
            ..Default::default()
        };
        let signature_header = common::SignatureHeader {
            creator: gw.identity.to_vec(),
            nonce: Vec::new(),
        };
        let payload = common::Payload {
            header: Some(common::Header {
                channel_header: channel_header.encode_to_vec(),
                signature_header: signature_header.encode_to_vec(),
            }),
            data: seek.encode_to_vec(),
        }
        .encode_to_vec();
        let envelope = common::Envelope {
            signature: gw.sign(&payload)?,
            payload,
        };
        let mut client = DeliverClient::new(gw.channel.clone())
            .max_decoding_message_size(crate::MAX_MESSAGE_BYTES);
        // One request; the peer then streams until the client goes away. (The one-item
        // request stream comes from the tokio-stream that tonic re-exports for its generated
        // code, which spares the SDK a dependency of its own.)
        let request = tonic::codegen::tokio_stream::once(envelope);
        let stream = if filtered {
            client.deliver_filtered(request).await?
        } else {
            client.deliver(request).await?
        }
        .into_inner();
        Ok((first, stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_wins_over_the_start_block_and_carries_its_transaction() {
        let tx = "ab".repeat(32);
        let options = EventsOptions::new()
            .start_block(3)
            .checkpoint(Some(Checkpoint::after_transaction(9, &tx)));
        let (start, after) = options.position();
        assert_eq!(
            start.r#type,
            Some(orderer::seek_position::Type::Specified(
                orderer::SeekSpecified { number: 9 }
            ))
        );
        assert_eq!(after.as_deref(), Some(tx.as_str()));

        let (start, after) = EventsOptions::new()
            .start_block(3)
            .checkpoint(None)
            .position();
        assert_eq!(
            start.r#type,
            Some(orderer::seek_position::Type::Specified(
                orderer::SeekSpecified { number: 3 }
            ))
        );
        assert_eq!(after, None);

        let (start, _) = EventsOptions::new().position();
        assert!(matches!(
            start.r#type,
            Some(orderer::seek_position::Type::NextCommit(_))
        ));
    }

    #[test]
    fn blocks_out_of_sequence_are_an_error() {
        let mut sequence = Sequence { next: Some(5) };
        sequence.check(5).expect("the first block");
        sequence.check(6).expect("the next block");
        let err = sequence.check(8).expect_err("block 7 was skipped");
        assert!(err.to_string().contains("block 7 was due"), "{err}");

        let mut from_next_commit = Sequence { next: None };
        from_next_commit.check(41).expect("any first block");
        assert!(from_next_commit.check(41).is_err(), "a repeated block");
    }
}
