//! One channel's ordering loop: Raft, the block cutter and the block writer, on a thread of
//! its own.
//!
//! The loop owns everything that changes the channel's chain, so nothing else writes its
//! ledger. Its inputs are a closed enum ([`ChainInput`]) on a bounded queue, plus time (Raft
//! ticks and the batch timeout). Per iteration it:
//!
//! 1. takes queued inputs: Raft messages from the other consenters are stepped into Raft;
//!    submissions are proposed to Raft on the leader, and answered [`SubmitError::NotLeader`]
//!    (naming the leader, so Broadcast forwards them) on a follower;
//! 2. ticks Raft and, when the pending batch's timeout has passed on the leader, proposes a
//!    time-to-cut for the next block number;
//! 3. runs Raft's `Ready` cycle and applies what committed, in log order: an envelope goes to
//!    the block cutter (and its submitter hears SUCCESS), a time-to-cut for the current block
//!    number cuts the pending batch; every cut batch becomes a signed block appended to the
//!    ledger.
//!
//! Raft messages to other consenters go to the [`RaftOutbound`] (the cluster transport),
//! which never blocks: a message it cannot queue is lost, and Raft retransmits.
//! Every consenter cuts the same blocks from the same committed log; only the leader
//! decides when a batch times out (a logged time-to-cut entry), and no node writes a block
//! before the entries it holds are committed.
//!
//! Each block records (in its consenter metadata) the last Raft index the chain reflects, so a
//! restarted loop resumes from the ledger and the log without losing or repeating a block.
//! Ledger and log writes are blocking redb transactions, which is why this is a thread and not
//! a task.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gridledger_identity::SigningIdentity;
use gridledger_ledger::{Ledger, LedgerError, RaftStore};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::oneshot;

use crate::block::{
    BlockMetadataError, NONCE_LEN, RaftBlockMetadata, assemble_block, orderer_metadata, sign_block,
};
use crate::consensus::{Committed, Consensus, ConsensusError, Proposal, RaftSettings};
use crate::cutter::{Batch, BatchSettings, BlockCutter};

/// Submissions taken from the queue per loop iteration, so ticks and commits keep flowing
/// under load.
const MAX_SUBMISSIONS_PER_ROUND: usize = 1024;
/// Ready cycles run per loop iteration.
const MAX_READY_ROUNDS: usize = 16;
/// The Raft log is compacted every this many blocks, up to the index the ledger reflects.
const COMPACT_EVERY_BLOCKS: u64 = 64;

/// Why a channel's ordering loop could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The channel's ledger failed.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// Raft failed.
    #[error("consensus: {0}")]
    Consensus(#[from] ConsensusError),
    /// The tip block's orderer metadata is unreadable.
    #[error("{0}")]
    Metadata(#[from] BlockMetadataError),
    /// The config block the tip names is not in the ledger.
    #[error("the last config block {0} is missing from the ledger")]
    MissingConfigBlock(u64),
    /// The channel's configuration does not decode or validate.
    #[error("channel configuration: {0}")]
    Config(gridledger_channels::config::ConfigError),
    /// The ledger has no blocks (the channel was never joined).
    #[error("the channel ledger is empty; join the channel with its genesis block first")]
    EmptyLedger,
    /// The system random generator failed to produce a block-signature nonce.
    #[error("cannot draw a random nonce for the block signature")]
    Random,
    /// The channel's consenter set does not include this orderer, or is unreadable.
    #[error("cluster membership: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The loop thread could not be started.
    #[error("cannot start the ordering thread: {0}")]
    Thread(std::io::Error),
}

/// Why an envelope was not ordered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full or Raft refused more uncommitted entries.
    #[error("the ordering service is overloaded: {0}")]
    Overloaded(String),
    /// This node cannot order right now (not leader, or leadership changed).
    #[error("the ordering service cannot order now: {0}")]
    Unavailable(String),
    /// This node is a follower; the envelope must be ordered by the leader (`None` while no
    /// leader is known).
    #[error("this orderer is not the channel's Raft leader (leader: {})", leader.map_or("unknown".to_string(), |l| format!("node {l}")))]
    NotLeader {
        /// The leader's Raft node id, if known.
        leader: Option<u64>,
    },
    /// The channel's ordering loop stopped (shutdown or a fatal error).
    #[error("ordering of this channel has stopped")]
    Stopped,
}

/// What the loop is asked to do.
pub(crate) enum ChainInput {
    /// Order an envelope; the reply is sent once its Raft entry commits (or fails).
    Submit {
        /// The envelope bytes as they go into a block.
        envelope: Vec<u8>,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<(), SubmitError>>,
    },
    /// A Raft message from consenter `from` (already authenticated by the transport).
    Step {
        /// The sender's Raft node id.
        from: u64,
        /// The encoded Raft message.
        message: Vec<u8>,
    },
}

/// Where the loop sends Raft messages for the other consenters. Must not block.
pub(crate) trait RaftOutbound: Send + Sync {
    /// Queues `message` for node `to`; false when it could not be queued (the node is
    /// unknown or its queue is full), so Raft is told the node is unreachable.
    fn send(&self, to: u64, message: Vec<u8>) -> bool;
}

/// The outbound of a channel with a single consenter: nobody to talk to.
pub(crate) struct NoPeers;

impl RaftOutbound for NoPeers {
    fn send(&self, _to: u64, _message: Vec<u8>) -> bool {
        false
    }
}

/// Raft messages that may wait in a channel's queue beside the submissions.
const STEP_QUEUE_DEPTH: usize = 1024;

/// Everything a chain needs to start.
pub(crate) struct ChainSetup {
    /// The channel id.
    pub channel_id: String,
    /// The channel's folder (`<data_dir>/channels/<channel_id>`), holding `raft.redb`.
    pub dir: std::path::PathBuf,
    /// The channel's ledger, shared with Deliver.
    pub ledger: Arc<Ledger>,
    /// The orderer's signing identity.
    pub signer: Arc<SigningIdentity>,
    /// Batch rules from the channel config.
    pub batch: BatchSettings,
    /// Raft parameters.
    pub raft: RaftSettings,
    /// Length of one Raft tick.
    pub tick: Duration,
    /// Capacity of the submission queue.
    pub queue_depth: usize,
    /// This node's Raft id (its position in the consenter list, from 1).
    pub node_id: u64,
    /// The consenters' Raft ids.
    pub voters: Vec<u64>,
    /// Where Raft messages for other consenters go.
    pub outbound: Arc<dyn RaftOutbound>,
}

/// The handle the server holds on a running chain.
pub(crate) struct ChainHandle {
    sender: SyncSender<ChainInput>,
    /// Submissions queued and not yet taken by the loop.
    queued: Arc<AtomicUsize>,
    queue_depth: usize,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl ChainHandle {
    /// Queues `envelope` for ordering; the receiver yields the outcome. Never blocks: a full
    /// queue is [`SubmitError::Overloaded`].
    pub(crate) fn submit(
        &self,
        envelope: Vec<u8>,
    ) -> Result<oneshot::Receiver<Result<(), SubmitError>>, SubmitError> {
        let (reply, outcome) = oneshot::channel();
        if self.queued.load(Ordering::SeqCst) >= self.queue_depth {
            return Err(SubmitError::Overloaded(
                "the channel's submission queue is full".to_string(),
            ));
        }
        self.queued.fetch_add(1, Ordering::SeqCst);
        match self.sender.try_send(ChainInput::Submit { envelope, reply }) {
            Ok(()) => Ok(outcome),
            Err(TrySendError::Full(_)) => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                Err(SubmitError::Overloaded(
                    "the channel's submission queue is full".to_string(),
                ))
            }
            Err(TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                Err(SubmitError::Stopped)
            }
        }
    }

    /// Queues a Raft message from consenter `from`; dropped when the queue is full (Raft
    /// retransmits).
    pub(crate) fn step(&self, from: u64, message: Vec<u8>) {
        if self
            .sender
            .try_send(ChainInput::Step { from, message })
            .is_err()
        {
            tracing::debug!(from, "raft message dropped: the channel's queue is full");
        }
    }

    /// Asks the loop to stop and waits for its thread (blocking).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if handle.is_some_and(|h| h.join().is_err()) {
            tracing::error!("an ordering thread panicked");
        }
    }
}

/// Starts the loop of a joined channel on its own thread.
pub(crate) fn start(setup: ChainSetup) -> Result<ChainHandle, ChainError> {
    let height = setup.ledger.height();
    let tip_number = height.checked_sub(1).ok_or(ChainError::EmptyLedger)?;
    let tip = setup
        .ledger
        .block(tip_number)?
        .ok_or(ChainError::EmptyLedger)?;
    let tip_metadata = orderer_metadata(&tip)?;
    let store = RaftStore::open(&setup.dir)?;
    let consensus = Consensus::open(
        store,
        tip_metadata.raft_index,
        setup.raft,
        &setup.channel_id,
        setup.node_id,
        &setup.voters,
    )?;
    tracing::info!(
        channel = %setup.channel_id,
        height,
        raft_index = tip_metadata.raft_index,
        "channel ordering started"
    );

    let queue_depth = setup.queue_depth.max(1);
    let (sender, receiver) = std::sync::mpsc::sync_channel(queue_depth + STEP_QUEUE_DEPTH);
    let queued = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut chain = Chain {
        channel_id: setup.channel_id.clone(),
        ledger: setup.ledger,
        signer: setup.signer,
        rng: SystemRandom::new(),
        cutter: BlockCutter::new(setup.batch),
        consensus,
        waiting: BTreeMap::new(),
        last_config_index: tip_metadata.last_config_index,
        time_to_cut: None,
        tick: setup.tick,
        next_tick: Instant::now() + setup.tick,
        blocks_since_compaction: 0,
        last_block_raft_index: tip_metadata.raft_index,
        outbound: setup.outbound,
        queued: queued.clone(),
        known_leader: None,
    };
    let stop_flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("order-{}", setup.channel_id))
        .spawn(move || chain.run(&receiver, &stop_flag))
        .map_err(ChainError::Thread)?;
    Ok(ChainHandle {
        sender,
        queued,
        queue_depth,
        stop,
        thread: Mutex::new(Some(thread)),
    })
}

struct Chain {
    channel_id: String,
    ledger: Arc<Ledger>,
    signer: Arc<SigningIdentity>,
    rng: SystemRandom,
    cutter: BlockCutter,
    consensus: Consensus,
    /// Submitters waiting for their entry: index → (term, reply).
    waiting: BTreeMap<u64, (u64, oneshot::Sender<Result<(), SubmitError>>)>,
    last_config_index: u64,
    /// The time-to-cut this leader proposed: (block number, when).
    time_to_cut: Option<(u64, Instant)>,
    tick: Duration,
    next_tick: Instant,
    blocks_since_compaction: u64,
    last_block_raft_index: u64,
    outbound: Arc<dyn RaftOutbound>,
    queued: Arc<AtomicUsize>,
    /// The leader last logged, to log changes once.
    known_leader: Option<u64>,
}

impl Chain {
    fn run(&mut self, inputs: &Receiver<ChainInput>, stop: &AtomicBool) {
        let outcome = self.run_until_stopped(inputs, stop);
        if let Err(e) = &outcome {
            tracing::error!(channel = %self.channel_id, error = %e, "channel ordering stopped");
        }
        for (_, (_, reply)) in std::mem::take(&mut self.waiting) {
            let _ = reply.send(Err(SubmitError::Stopped));
        }
        // Submissions still queued are answered by dropping their reply senders.
    }

    fn run_until_stopped(
        &mut self,
        inputs: &Receiver<ChainInput>,
        stop: &AtomicBool,
    ) -> Result<(), ChainError> {
        // Replay what committed before a restart and let the single voter take leadership.
        self.step()?;
        while !stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            let wake = self.next_wake().max(now);
            match inputs.recv_timeout(wake - now) {
                Ok(input) => {
                    self.handle(input);
                    for _ in 1..MAX_SUBMISSIONS_PER_ROUND {
                        match inputs.try_recv() {
                            Ok(input) => self.handle(input),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            if now >= self.next_tick {
                self.consensus.tick();
                self.next_tick = now + self.tick;
            }
            self.propose_time_to_cut(now);
            self.step()?;
        }
        Ok(())
    }

    /// The next time the loop must wake without input: a tick or the batch deadline.
    fn next_wake(&self) -> Instant {
        match self.batch_deadline() {
            Some(deadline) => deadline.min(self.next_tick),
            None => self.next_tick,
        }
    }

    /// When the leader should propose a time-to-cut, if it has not already done so for the
    /// current block (a proposal that got lost is retried one batch timeout later).
    fn batch_deadline(&self) -> Option<Instant> {
        if !self.consensus.is_leader() {
            return None;
        }
        let deadline = self.cutter.deadline()?;
        match self.time_to_cut {
            Some((block, at)) if block == self.ledger.height() => {
                Some(at + self.cutter.settings().batch_timeout)
            }
            _ => Some(deadline),
        }
    }

    fn propose_time_to_cut(&mut self, now: Instant) {
        let Some(deadline) = self.batch_deadline() else {
            return;
        };
        if now < deadline {
            return;
        }
        let block_number = self.ledger.height();
        match self
            .consensus
            .propose(&Proposal::TimeToCut { block_number })
        {
            Ok(_) => self.time_to_cut = Some((block_number, now)),
            Err(e) => {
                tracing::warn!(channel = %self.channel_id, block = block_number, error = %e,
                    "cannot propose the batch timeout");
                // Retry after another timeout rather than spinning.
                self.time_to_cut = Some((block_number, now));
            }
        }
    }

    fn handle(&mut self, input: ChainInput) {
        match input {
            ChainInput::Step { from, message } => {
                if let Err(e) = self.consensus.step(from, &message) {
                    tracing::warn!(channel = %self.channel_id, from, error = %e, "raft message refused");
                }
            }
            ChainInput::Submit { envelope, reply } => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                if reply.is_closed() {
                    // The broadcaster went away before its turn; nothing to order for it.
                    return;
                }
                if !self.consensus.is_leader() {
                    let _ = reply.send(Err(SubmitError::NotLeader {
                        leader: self.consensus.leader(),
                    }));
                    return;
                }
                match self.consensus.propose(&Proposal::Envelope(envelope)) {
                    Ok((index, term)) => {
                        self.waiting.insert(index, (term, reply));
                    }
                    Err(ConsensusError::Overloaded) => {
                        let _ = reply.send(Err(SubmitError::Overloaded(
                            "too many envelopes are waiting for consensus".to_string(),
                        )));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(SubmitError::Unavailable(e.to_string())));
                    }
                }
            }
        }
    }

    /// Runs Ready cycles and applies what committed.
    fn step(&mut self) -> Result<(), ChainError> {
        for _ in 0..MAX_READY_ROUNDS {
            if !self.consensus.has_ready() {
                break;
            }
            let advanced = self.consensus.advance()?;
            for (to, message) in advanced.messages {
                if !self.outbound.send(to, message) {
                    self.consensus.report_unreachable(to);
                }
            }
            for committed in advanced.committed {
                self.apply(committed)?;
            }
        }
        let leader = self.consensus.leader();
        if leader != self.known_leader {
            self.known_leader = leader;
            tracing::info!(channel = %self.channel_id, node = self.consensus.id(),
                leader = leader.unwrap_or(0), "raft leader changed");
        }
        if !self.consensus.is_leader() && !self.waiting.is_empty() {
            for (_, (_, reply)) in std::mem::take(&mut self.waiting) {
                let _ = reply.send(Err(SubmitError::Unavailable(
                    "this orderer lost Raft leadership before the envelope committed".to_string(),
                )));
            }
        }
        Ok(())
    }

    fn apply(&mut self, committed: Committed) -> Result<(), ChainError> {
        let Committed {
            index,
            term,
            proposal,
        } = committed;
        if let Some((wanted_term, reply)) = self.waiting.remove(&index) {
            let outcome = if wanted_term == term {
                Ok(())
            } else {
                Err(SubmitError::Unavailable(
                    "another Raft leader's entry replaced the envelope".to_string(),
                ))
            };
            let _ = reply.send(outcome);
        }
        match proposal {
            None => Ok(()),
            Some(Proposal::Envelope(envelope)) => {
                let batches = self.cutter.ordered(envelope, Instant::now());
                // The entry is inside the last batch unless it is still pending; batches cut
                // before it reflect the log only up to the previous index.
                let entry_in_last = self.cutter.pending_count() == 0;
                let count = batches.len();
                for (i, batch) in batches.into_iter().enumerate() {
                    let reflects = if entry_in_last && i + 1 == count {
                        index
                    } else {
                        index.saturating_sub(1)
                    };
                    self.write_block(batch, reflects)?;
                }
                Ok(())
            }
            Some(Proposal::Compact { index }) => {
                self.compact(index.min(self.last_block_raft_index));
                Ok(())
            }
            Some(Proposal::TimeToCut { block_number }) => {
                // A time-to-cut for a block already cut by size is stale.
                if block_number != self.ledger.height() {
                    return Ok(());
                }
                match self.cutter.cut() {
                    Some(batch) => self.write_block(batch, index),
                    None => Ok(()),
                }
            }
        }
    }

    /// Discards the Raft log up to `index`; a failure only means the log stays longer.
    fn compact(&self, index: u64) {
        if let Err(e) = self.consensus.compact(index) {
            tracing::warn!(channel = %self.channel_id, error = %e, "cannot compact the raft log");
        }
    }

    fn write_block(&mut self, batch: Batch, raft_index: u64) -> Result<(), ChainError> {
        let info = self.ledger.info();
        let number = info.height;
        let count = batch.len();
        let mut block = assemble_block(number, info.current_block_hash, batch);
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| ChainError::Random)?;
        let consenter_metadata = RaftBlockMetadata {
            consenter_ids: self.consensus.voters().to_vec(),
            next_consenter_id: self.consensus.voters().iter().max().copied().unwrap_or(0) + 1,
            raft_index,
        };
        sign_block(
            &mut block,
            &self.signer,
            self.last_config_index,
            &consenter_metadata,
            &nonce,
        );
        self.ledger.append_block(&block)?;
        self.last_block_raft_index = raft_index;
        tracing::info!(channel = %self.channel_id, block = number, txs = count, raft_index, "block written");

        self.blocks_since_compaction += 1;
        if self.blocks_since_compaction >= COMPACT_EVERY_BLOCKS {
            self.blocks_since_compaction = 0;
            if self.consensus.is_single_voter() {
                self.compact(self.last_block_raft_index);
            } else if self.consensus.is_leader() {
                // Several consenters: discard only what every voter holds, so a lagging
                // follower always catches up from the log (no Raft snapshots are sent), and
                // do it everywhere at the same point by logging it.
                let upto = self.consensus.min_matched().min(self.last_block_raft_index);
                if upto > 0 {
                    if let Err(e) = self.consensus.propose(&Proposal::Compact { index: upto }) {
                        tracing::debug!(channel = %self.channel_id, error = %e, "cannot propose a log compaction");
                    }
                }
            }
        }
        Ok(())
    }
}
