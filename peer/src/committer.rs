//! The committer: pulls a channel's blocks from the ordering service (failing over between
//! orderer endpoints), validates each one and commits it with its validation codes in one
//! atomic ledger transaction. Waiters (CommitStatus, Deliver, ChaincodeEvents) wake on the
//! ledger's height.
//!
//! Failover: the committer pulls from one orderer endpoint at a time, in the channel config's
//! order, and moves to the next when the Deliver stream errors, ends, or is found stale, or
//! when a config block it committed removed that endpoint from the channel. An
//! orderer that hangs rather than dies is caught two ways:
//!
//! - the connection's HTTP/2 keepalive pings (`tls`) go unanswered, which drops the
//!   connection and fails the stream;
//! - while a stream stays silent, every [`SILENCE_BEFORE_PROBE`] the other endpoints are all
//!   asked at once, each with a header-only Deliver request that does not wait, for the next
//!   block this peer needs. One that has it is "ahead", and delivery moves to it. When none has
//!   it the channel is simply idle and the stream is kept; a block arriving on the stream
//!   meanwhile cancels the asking. The check costs one small request per other endpoint per
//!   silent period, and nothing while blocks flow. It catches an orderer that still answers pings but no longer receives blocks (cut
//!   off from its Raft cluster).
//!
//! A block the ledger cannot store (a full disk) is pulled and tried again after a wait that
//! doubles up to `STORAGE_RETRY_MAX`; meanwhile the ledger's failed write shows in `/healthz`
//! and in the log.
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
use tokio_stream::StreamExt;

/// Delay before retrying after an orderer failed or refused us.
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// The longest wait between attempts to commit while the ledger cannot store blocks (a full
/// disk): the wait doubles from [`RETRY_DELAY`] after each failed attempt up to this.
const STORAGE_RETRY_MAX: Duration = Duration::from_secs(8);
/// How long a Deliver stream may stay silent before the other endpoints are asked whether
/// they are ahead of it (see the module doc).
pub const SILENCE_BEFORE_PROBE: Duration = Duration::from_secs(10);

/// An orderer endpoint with the TLS roots of its organization.
type OrdererEndpoint = (String, Vec<Vec<u8>>);

/// Why a Deliver stream was given up.
#[derive(Debug, thiserror::Error)]
enum PullError {
    /// The connection, the stream or a block failed.
    #[error("{0}")]
    Failed(String),
    /// The stream stayed silent while the endpoint at this index (into the endpoint list)
    /// already had the next block.
    #[error("the orderer stayed silent while {endpoint} had block {number}")]
    Behind {
        /// Index of the endpoint that is ahead.
        index: usize,
        /// That endpoint.
        endpoint: String,
        /// The block it had.
        number: u64,
    },
}

impl From<String> for PullError {
    fn from(message: String) -> PullError {
        PullError::Failed(message)
    }
}

/// How long the two phases of one block's commit took ([`commit_block_timed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitPhases {
    /// Block checks (orderer signatures, hash chain) and the validation of every transaction,
    /// up to the block with its validation codes.
    pub validate: Duration,
    /// The ledger write (block, state updates, indexes; one durable redb transaction) and the
    /// bookkeeping after it (metrics, definitions and config refreshed).
    pub commit: Duration,
}

/// Validates and commits one block; returns an error naming what was wrong when the block is
/// refused.
pub fn commit_block(channel: &Channel, block: common::Block) -> Result<(), String> {
    commit_block_pulling(channel, block, None)
}

/// [`commit_block`], also returning how long validation and the ledger write took. This is
/// the committer's own path, not a copy: `gridledger bench validate` replays blocks through
/// it to measure what a peer does with a block the orderer delivered.
pub fn commit_block_timed(channel: &Channel, block: common::Block) -> Result<CommitPhases, String> {
    commit_block_phases(channel, block, None)
}

/// [`commit_block`], pulling private data missing from the transient store from the other
/// member peers through `peer` when given.
pub fn commit_block_pulling(
    channel: &Channel,
    block: common::Block,
    peer: Option<&Peer>,
) -> Result<(), String> {
    commit_block_phases(channel, block, peer).map(|_| ())
}

/// [`commit_block_pulling`], timing its two phases.
fn commit_block_phases(
    channel: &Channel,
    block: common::Block,
    peer: Option<&Peer>,
) -> Result<CommitPhases, String> {
    let started = std::time::Instant::now();
    let ledger = channel.ledger().clone();
    let config = channel.config();
    let info = ledger.info();
    let chaincodes = channel.chaincodes();
    let ctx = BlockContext {
        channel: &config,
        chaincodes: &chaincodes,
        expected_number: info.height,
        previous_header_hash: &info.current_block_hash,
    };
    validation::verify_block_signatures(&block, &ctx).map_err(|e| e.to_string())?;
    let snapshot = ledger.snapshot().map_err(|e| e.to_string())?;
    let mut validated =
        validation::validate_block(&block, &ctx, &LedgerState::new(&snapshot, &ledger))
            .map_err(|e| e.to_string())?;
    drop(snapshot);
    let missing = attach_private_data(channel, peer, info.height, &mut validated);
    let with_codes = validated.with_codes(&block);
    let validated_at = std::time::Instant::now();
    ledger
        .commit_block_with_missing(&with_codes, &validated.updates, &missing)
        .map_err(|e| e.to_string())?;
    if let Some(feasibility) = peer.and_then(Peer::feasibility) {
        release_reservations(feasibility, channel.id(), &validated);
    }
    let metrics = crate::metrics::get();
    let labels = [channel.id()];
    metrics.blocks_committed.inc(&labels);
    metrics.block_commit_seconds.observe_since(&labels, started);
    for code in &validated.codes {
        metrics
            .transactions
            .inc(&[channel.id(), code.as_str_name()]);
    }
    metrics
        .ledger_height
        .set(&labels, i64::try_from(ledger.height()).unwrap_or(i64::MAX));
    let defines_chaincodes = validated.updates.txs.iter().any(|tx| {
        tx.writes.iter().any(|w| {
            w.namespace == crate::validation::LIFECYCLE_NAMESPACE
                && w.key.starts_with(crate::lifecycle::METADATA_PREFIX)
        })
    });
    if defines_chaincodes {
        channel.refresh_definitions();
    }
    if let Some((channel_id, new_config)) = validated.config {
        match ChannelConfig::from_config(&channel_id, &new_config) {
            Ok(c) => channel.set_config(c),
            Err(e) => {
                tracing::error!(channel = %channel.id(), error = %e, "committed config block does not decode; keeping the previous config")
            }
        }
    }
    Ok(CommitPhases {
        validate: validated_at.duration_since(started),
        commit: validated_at.elapsed(),
    })
}

/// Tells the DSO's feasibility check which transactions a block just committed on
/// `channel_id` decided, each with its validation code, so the reservations of their trades
/// are released whether they committed valid or not. Returns how many were released.
pub fn release_reservations(
    feasibility: &crate::feasibility::FeasibilityCheck,
    channel_id: &str,
    validated: &validation::ValidatedBlock,
) -> usize {
    feasibility.committed(
        channel_id,
        validated.updates.txs.iter().map(|tx| {
            let code = usize::try_from(tx.tx_num)
                .ok()
                .and_then(|i| validated.codes.get(i))
                .copied()
                .unwrap_or(gridledger_proto::protos::TxValidationCode::InvalidOtherReason);
            (tx.tx_id.as_str(), code)
        }),
    )
}

/// Fills the private writes and expiry schedule of each valid transaction that wrote private
/// data: values of the collections this peer's org is a member of, from the transient store
/// (the first copy that matches the block's hashes), else pulled from the other member peers.
/// A member that finds no matching copy commits the hashes alone and returns the missing
/// data's record, for the reconciler (`crate::reconciler`) to look for it later; until then
/// it cannot answer reads of those keys (the stub reports the value unavailable).
fn attach_private_data(
    channel: &Channel,
    peer: Option<&Peer>,
    number: u64,
    validated: &mut validation::ValidatedBlock,
) -> Vec<gridledger_ledger::MissingPrivateData> {
    let mut missing = Vec::new();
    let member_of = |namespace: &str, collection: &str| {
        channel
            .collection(namespace, collection)
            .is_some_and(|c| c.is_member(channel.local_msp_id()))
    };
    let block_to_live = |namespace: &str, collection: &str| {
        channel
            .collection(namespace, collection)
            .map_or(0, |c| c.block_to_live)
    };
    for (index, collections) in &validated.private {
        let Some(tx) = validated.updates.txs.get_mut(*index) else {
            continue;
        };
        let needed = collections
            .iter()
            .any(|c| !c.pvt_rwset_hash.is_empty() && member_of(&c.namespace, &c.collection));
        let mut resolved = crate::private::Resolved::default();
        if needed {
            let mut copies = channel.ledger().transient(&tx.tx_id).unwrap_or_else(|e| {
                tracing::error!(channel = %channel.id(), tx_id = %tx.tx_id, error = %e, "cannot read the transient store");
                Vec::new()
            });
            let local = copies.len();
            let matches =
                |copy: &Vec<u8>| crate::private::resolve(copy, collections, &member_of).is_ok();
            if !copies.iter().any(matches) {
                if let Some(peer) = peer {
                    let member_orgs = collections
                        .iter()
                        .filter_map(|c| channel.collection(&c.namespace, &c.collection))
                        .flat_map(|c| c.members)
                        .collect();
                    copies.extend(crate::gossip::pull(peer, channel, &tx.tx_id, &member_orgs));
                }
            }
            let mut found = false;
            for (i, copy) in copies.iter().enumerate() {
                match crate::private::resolve(copy, collections, &member_of) {
                    Ok(found_data) => {
                        if i >= local {
                            tracing::info!(channel = %channel.id(), tx_id = %tx.tx_id, "private data pulled from another member peer");
                        }
                        resolved = found_data;
                        found = true;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(channel = %channel.id(), tx_id = %tx.tx_id, error = %e, "ignoring a private read-write set that does not match the block")
                    }
                }
            }
            if !found {
                tracing::warn!(channel = %channel.id(), tx_id = %tx.tx_id, block = number, "private data of a valid transaction is missing on this member peer; committing its hashes only, to be reconciled later");
                missing.push(crate::reconciler::missing(
                    number,
                    tx.tx_num,
                    &tx.tx_id,
                    collections,
                    now_unix_secs(),
                ));
            }
        }
        tx.expiries =
            crate::private::expiries(number, collections, &block_to_live, &resolved.writes);
        tx.private_writes = resolved.writes;
        tx.private_sets = resolved.sets;
        tx.purges = resolved.purges;
        tx.metadata_writes.extend(resolved.metadata_writes);
    }
    missing
}

/// The signed Deliver request for blocks from `start` on; with `probe`, for block `start`
/// alone, header only, failing instead of waiting when the orderer does not have it yet.
fn seek_envelope(peer: &Peer, channel_id: &str, start: u64, probe: bool) -> common::Envelope {
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
    let seek = if probe {
        orderer::SeekInfo {
            start: Some(specified(start)),
            stop: Some(specified(start)),
            behavior: orderer::seek_info::SeekBehavior::FailIfNotReady as i32,
            content_type: orderer::seek_info::SeekContentType::HeaderWithSig as i32,
            ..Default::default()
        }
    } else {
        orderer::SeekInfo {
            start: Some(specified(start)),
            stop: Some(specified(u64::MAX)),
            ..Default::default()
        }
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
    // The wait after the last attempt that the ledger failed to store (zero while it stores).
    let mut storage_backoff = Duration::ZERO;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let config = channel.config();
        let endpoints: Vec<OrdererEndpoint> = config
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
        let current = next_endpoint % endpoints.len();
        next_endpoint = current + 1;
        let endpoint = &endpoints[current].0;
        tokio::select! {
            outcome = pull(&peer, &channel, &endpoints, current) => {
                if let Err(e) = outcome {
                    if let PullError::Behind { index, .. } = e {
                        next_endpoint = index;
                    }
                    tracing::warn!(channel = %channel.id(), orderer = %endpoint, error = %e, "block delivery interrupted; retrying");
                }
            }
            _ = shutdown.changed() => return,
        }
        let delay = match channel.ledger().write_failure() {
            // The ledger could not store the last block (a full disk, an I/O error): wait
            // longer after each failed attempt instead of pulling the block again at once.
            Some(failure) => {
                storage_backoff = (storage_backoff * 2).clamp(RETRY_DELAY, STORAGE_RETRY_MAX);
                tracing::error!(channel = %channel.id(), error = %failure, retry_in = ?storage_backoff, "the ledger cannot store blocks; committing paused");
                storage_backoff
            }
            None => {
                storage_backoff = Duration::ZERO;
                RETRY_DELAY
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Pulls blocks from `endpoints[current]` until the stream fails, ends, or is found behind
/// another endpoint.
async fn pull(
    peer: &Arc<Peer>,
    channel: &Arc<Channel>,
    endpoints: &[OrdererEndpoint],
    current: usize,
) -> Result<(), PullError> {
    let (endpoint, roots) = &endpoints[current];
    let connection = crate::tls::client_channel(endpoint, roots, peer.rpc_timeout(), None)
        .map_err(|e| e.to_string())?;
    let mut client = orderer::atomic_broadcast_client::AtomicBroadcastClient::new(connection);
    // Keep the request stream open for the life of the delivery.
    let (request_tx, request_rx) = tokio::sync::mpsc::channel(1);
    request_tx
        .send(seek_envelope(
            peer,
            channel.id(),
            channel.ledger().height(),
            false,
        ))
        .await
        .map_err(|e| e.to_string())?;
    let mut responses = tokio::time::timeout(
        peer.rpc_timeout(),
        client.deliver(tokio_stream::wrappers::ReceiverStream::new(request_rx)),
    )
    .await
    .map_err(|_| "the orderer did not answer the Deliver request in time".to_string())?
    .map_err(|s| s.message().to_owned())?
    .into_inner();
    loop {
        // Wait for the next response; while none comes, ask the others now and then whether
        // they are ahead. A response arriving meanwhile cancels the asking.
        let next = tokio::select! {
            next = responses.next() => next,
            (index, number) = watch_for_newer(peer, channel, endpoints, current) => {
                return Err(PullError::Behind {
                    index,
                    endpoint: endpoints[index].0.clone(),
                    number,
                });
            }
        };
        let Some(response) = next.transpose().map_err(|s| s.message().to_owned())? else {
            break;
        };
        match response.r#type {
            Some(orderer::deliver_response::Type::Block(block)) => {
                let number = block.header.as_ref().map_or(0, |h| h.number);
                if number < channel.ledger().height() {
                    continue; // already committed (a re-sent block after a reconnect)
                }
                let sequence = channel.config().sequence();
                let committing = channel.clone();
                let pulling = peer.clone();
                tokio::task::spawn_blocking(move || {
                    commit_block_pulling(&committing, block, Some(&pulling))
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("block {number} refused: {e}"))?;
                let config = channel.config();
                if config.sequence() != sequence
                    && !config
                        .orderer()
                        .organizations
                        .iter()
                        .any(|o| o.endpoints.iter().any(|e| e == endpoint))
                {
                    // A config update removed this orderer: it may no longer receive blocks.
                    return Err(PullError::Failed(format!(
                        "config block {number} removed {endpoint} from the channel's orderer endpoints"
                    )));
                }
            }
            Some(orderer::deliver_response::Type::Status(s)) => {
                return Err(format!("orderer ended delivery with status {s}").into());
            }
            None => return Err(PullError::Failed("empty deliver response".into())),
        }
    }
    drop(request_tx);
    Err(PullError::Failed(
        "the orderer closed the delivery stream".into(),
    ))
}

/// Completes, with the endpoint's index and the block number, once another endpoint has the
/// block this peer needs next; checks every [`SILENCE_BEFORE_PROBE`] (see the module doc).
/// Never completes while no other endpoint is ahead.
async fn watch_for_newer(
    peer: &Arc<Peer>,
    channel: &Arc<Channel>,
    endpoints: &[OrdererEndpoint],
    current: usize,
) -> (usize, u64) {
    loop {
        tokio::time::sleep(SILENCE_BEFORE_PROBE).await;
        let number = channel.ledger().height();
        // Ask all others at once, so one hung endpoint does not delay the answer.
        let mut probes = tokio::task::JoinSet::new();
        for (index, (endpoint, roots)) in endpoints.iter().enumerate() {
            if index == current {
                continue;
            }
            let (peer, channel_id) = (peer.clone(), channel.id().to_owned());
            let (endpoint, roots) = (endpoint.clone(), roots.clone());
            probes.spawn(async move {
                let ahead = has_block(&peer, &channel_id, &endpoint, &roots, number).await;
                (index, ahead)
            });
        }
        while let Some(outcome) = probes.join_next().await {
            if let Ok((index, true)) = outcome {
                return (index, number);
            }
        }
    }
}

/// Whether the orderer at `endpoint` already has block `number` of the channel: one
/// header-only Deliver request that fails rather than waits, bounded by the RPC timeout. Any
/// failure counts as "no".
async fn has_block(
    peer: &Peer,
    channel_id: &str,
    endpoint: &str,
    roots: &[Vec<u8>],
    number: u64,
) -> bool {
    let probe = async {
        let connection = crate::tls::client_channel(endpoint, roots, peer.rpc_timeout(), None)
            .map_err(|e| e.to_string())?;
        let mut client = orderer::atomic_broadcast_client::AtomicBroadcastClient::new(connection);
        let request = seek_envelope(peer, channel_id, number, true);
        let mut responses = client
            .deliver(tokio_stream::once(request))
            .await
            .map_err(|s| s.message().to_owned())?
            .into_inner();
        let first = responses
            .message()
            .await
            .map_err(|s| s.message().to_owned())?;
        Ok::<bool, String>(matches!(
            first.and_then(|r| r.r#type),
            Some(orderer::deliver_response::Type::Block(block))
                if block.header.as_ref().is_some_and(|h| h.number == number)
        ))
    };
    match tokio::time::timeout(peer.rpc_timeout(), probe).await {
        Ok(Ok(ahead)) => ahead,
        Ok(Err(e)) => {
            tracing::debug!(orderer = %endpoint, error = %e, "probe for a newer block failed");
            false
        }
        Err(_) => false,
    }
}
