//! The committer: pulls a channel's blocks from the ordering service (failing over between
//! orderer endpoints), validates each one and commits it with its validation codes in one
//! atomic ledger transaction. Waiters (CommitStatus, Deliver, ChaincodeEvents) wake on the
//! ledger's height.
//!
//! Invariant: a block is committed only after its orderer signatures, hash chain and every
//! transaction were validated against the state it extends; a block that fails block-level
//! checks is refused and fetched again (from another orderer if need be), never skipped.

use crate::gateway::tls_roots;
use crate::node::{Channel, Peer, now_unix_secs};
use crate::validation::{self, BlockContext, LedgerState};
use gridledger_channels::config::ChannelConfig;
use gridledger_proto::prost::Message;
use gridledger_proto::{common, orderer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Delay before retrying after an orderer failed or refused us.
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// Validates and commits one block; returns an error naming what was wrong when the block is
/// refused.
pub fn commit_block(channel: &Channel, block: common::Block) -> Result<(), String> {
    let ledger = channel.ledger().clone();
    let config = channel.config();
    let info = ledger.info();
    let ctx = BlockContext {
        channel: &config,
        chaincodes: channel.chaincodes(),
        expected_number: info.height,
        previous_header_hash: &info.current_block_hash,
    };
    validation::verify_block_signatures(&block, &ctx).map_err(|e| e.to_string())?;
    let snapshot = ledger.snapshot().map_err(|e| e.to_string())?;
    let validated = validation::validate_block(&block, &ctx, &LedgerState::new(&snapshot, &ledger))
        .map_err(|e| e.to_string())?;
    let with_codes = validated.with_codes(&block);
    ledger
        .commit_block(&with_codes, &validated.updates)
        .map_err(|e| e.to_string())?;
    if let Some((channel_id, new_config)) = validated.config {
        match ChannelConfig::from_config(&channel_id, &new_config) {
            Ok(c) => channel.set_config(c),
            Err(e) => {
                tracing::error!(channel = %channel.id(), error = %e, "committed config block does not decode; keeping the previous config")
            }
        }
    }
    Ok(())
}

/// The signed Deliver request for blocks from `start` on.
fn seek_envelope(peer: &Peer, channel_id: &str, start: u64) -> common::Envelope {
    let now = now_unix_secs() as i64;
    let channel_header = common::ChannelHeader {
        r#type: common::HeaderType::DeliverSeekInfo as i32,
        channel_id: channel_id.into(),
        timestamp: Some(prost_types::Timestamp {
            seconds: now,
            nanos: 0,
        }),
        ..Default::default()
    };
    let signature_header = common::SignatureHeader {
        creator: peer.signer().serialized().to_vec(),
        nonce: Vec::new(),
    };
    let specified = |number| orderer::SeekPosition {
        r#type: Some(orderer::seek_position::Type::Specified(
            orderer::SeekSpecified { number },
        )),
    };
    let seek = orderer::SeekInfo {
        start: Some(specified(start)),
        stop: Some(specified(u64::MAX)),
        ..Default::default()
    };
    let payload = common::Payload {
        header: Some(common::Header {
            channel_header: channel_header.encode_to_vec(),
            signature_header: signature_header.encode_to_vec(),
        }),
        data: seek.encode_to_vec(),
    }
    .encode_to_vec();
    common::Envelope {
        signature: peer.signer().sign(&payload),
        payload,
    }
}

/// Pulls and commits blocks of `channel` until `shutdown` turns true.
pub async fn run(peer: Arc<Peer>, channel: Arc<Channel>, mut shutdown: watch::Receiver<bool>) {
    let mut next_endpoint = 0usize;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let config = channel.config();
        let endpoints: Vec<(String, Vec<Vec<u8>>)> = config
            .orderer()
            .organizations
            .iter()
            .flat_map(|o| {
                let roots = tls_roots(&config, &o.msp_id);
                o.endpoints.iter().map(move |e| (e.clone(), roots.clone()))
            })
            .collect();
        if endpoints.is_empty() {
            tracing::error!(channel = %channel.id(), "the channel config names no orderer endpoint");
            return;
        }
        let (endpoint, roots) = &endpoints[next_endpoint % endpoints.len()];
        next_endpoint += 1;
        tokio::select! {
            outcome = pull(&peer, &channel, endpoint, roots) => {
                if let Err(e) = outcome {
                    tracing::warn!(channel = %channel.id(), orderer = %endpoint, error = %e, "block delivery interrupted; retrying");
                }
            }
            _ = shutdown.changed() => return,
        }
        tokio::time::sleep(RETRY_DELAY).await;
    }
}

async fn pull(
    peer: &Arc<Peer>,
    channel: &Arc<Channel>,
    endpoint: &str,
    roots: &[Vec<u8>],
) -> Result<(), String> {
    let connection = crate::tls::client_channel(endpoint, roots, peer.rpc_timeout(), None)
        .map_err(|e| e.to_string())?;
    let mut client = orderer::atomic_broadcast_client::AtomicBroadcastClient::new(connection);
    // Keep the request stream open for the life of the delivery.
    let (request_tx, request_rx) = tokio::sync::mpsc::channel(1);
    request_tx
        .send(seek_envelope(peer, channel.id(), channel.ledger().height()))
        .await
        .map_err(|e| e.to_string())?;
    let mut responses = client
        .deliver(tokio_stream::wrappers::ReceiverStream::new(request_rx))
        .await
        .map_err(|s| s.message().to_owned())?
        .into_inner();
    while let Some(response) = responses
        .message()
        .await
        .map_err(|s| s.message().to_owned())?
    {
        match response.r#type {
            Some(orderer::deliver_response::Type::Block(block)) => {
                let number = block.header.as_ref().map_or(0, |h| h.number);
                if number < channel.ledger().height() {
                    continue; // already committed (a re-sent block after a reconnect)
                }
                let channel = channel.clone();
                tokio::task::spawn_blocking(move || commit_block(&channel, block))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("block {number} refused: {e}"))?;
            }
            Some(orderer::deliver_response::Type::Status(s)) => {
                return Err(format!("orderer ended delivery with status {s}"));
            }
            None => return Err("empty deliver response".into()),
        }
    }
    drop(request_tx);
    Err("the orderer closed the delivery stream".into())
}
