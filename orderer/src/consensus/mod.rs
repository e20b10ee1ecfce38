//! Consensus: one channel's Raft node, on tikv/raft-rs, wrapped so that nothing outside this
//! module sees raft-rs types.
//!
//! The orderer proposes [`Proposal`]s (an envelope to order, or a *time-to-cut* marker for a
//! block number) and receives [`Committed`] entries in log order. Only committed entries
//! become blocks, and the block cutter runs on committed entries, so every node of a channel
//! cuts the same blocks from the same log (a batch timeout is itself a log entry, as in
//! Fabric's Kafka-era time-to-cut messages).
//!
//! The Raft log is the ledger crate's [`RaftStore`]; [`Consensus::advance`] follows raft-rs's
//! `Ready` protocol: persist new entries and hard state in one durable write, then hand back
//! what committed. With a single voter the node elects itself as soon as it opens.
//!
//! Restart: the caller passes the Raft index its ledger already reflects (`applied`); raft-rs
//! then re-delivers every committed entry after it, which rebuilds the block cutter's pending
//! batch. A log that is *behind* the ledger (lost or replaced `raft.redb`) is restarted after
//! the ledger's index rather than replayed.

mod log;
mod storage;

use std::sync::Arc;

use gridledger_ledger::{HardState as StoredHardState, LedgerError, RaftSnapshotMeta, RaftStore};
use raft::eraftpb::{ConfState, Entry, EntryType};
use raft::{RawNode, StateRole};

use storage::{LogStorage, decode_conf_state, encode_conf_state, encode_entry};

/// The Raft id of this node while channels have a single consenter.
pub(crate) const NODE_ID: u64 = 1;

/// Tag byte of an envelope proposal.
const TAG_ENVELOPE: u8 = 1;
/// Tag byte of a time-to-cut proposal.
const TAG_TIME_TO_CUT: u8 = 2;

/// Consensus failures.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    /// The Raft log store failed.
    #[error("raft log storage: {0}")]
    Store(#[from] LedgerError),
    /// raft-rs refused an operation.
    #[error("raft: {0}")]
    Raft(String),
    /// This node is not the leader, so it cannot order.
    #[error("this orderer is not the Raft leader of the channel")]
    NotLeader,
    /// The leader is over its limit of uncommitted entries.
    #[error("the Raft leader is overloaded (too many uncommitted entries); retry later")]
    Overloaded,
    /// A committed entry is not one this orderer writes.
    #[error("raft entry {index} is not an orderer entry: {reason}")]
    UnknownEntry {
        /// The log index.
        index: u64,
        /// What is wrong.
        reason: String,
    },
}

impl From<raft::Error> for ConsensusError {
    fn from(e: raft::Error) -> Self {
        match e {
            raft::Error::ProposalDropped => ConsensusError::Overloaded,
            other => ConsensusError::Raft(other.to_string()),
        }
    }
}

/// What the orderer asks Raft to order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Proposal {
    /// An envelope (its bytes as they go into a block).
    Envelope(Vec<u8>),
    /// The batch timeout of block `block_number` expired on the leader.
    TimeToCut {
        /// The block the pending batch would become.
        block_number: u64,
    },
}

impl Proposal {
    fn encode(&self) -> Vec<u8> {
        match self {
            Proposal::Envelope(bytes) => {
                let mut out = Vec::with_capacity(bytes.len() + 1);
                out.push(TAG_ENVELOPE);
                out.extend_from_slice(bytes);
                out
            }
            Proposal::TimeToCut { block_number } => {
                let mut out = Vec::with_capacity(9);
                out.push(TAG_TIME_TO_CUT);
                out.extend_from_slice(&block_number.to_be_bytes());
                out
            }
        }
    }

    fn decode(index: u64, data: &[u8]) -> Result<Proposal, ConsensusError> {
        let unknown = |reason: String| ConsensusError::UnknownEntry { index, reason };
        match data.split_first() {
            Some((&TAG_ENVELOPE, rest)) => Ok(Proposal::Envelope(rest.to_vec())),
            Some((&TAG_TIME_TO_CUT, rest)) => {
                let bytes: [u8; 8] = rest
                    .try_into()
                    .map_err(|_| unknown(format!("time-to-cut of {} bytes", rest.len())))?;
                Ok(Proposal::TimeToCut {
                    block_number: u64::from_be_bytes(bytes),
                })
            }
            Some((tag, _)) => Err(unknown(format!("unknown tag {tag}"))),
            None => Err(unknown("empty data".to_string())),
        }
    }
}

/// A committed log entry, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Committed {
    /// Its log index.
    pub index: u64,
    /// The term it was proposed in.
    pub term: u64,
    /// What it orders; `None` for Raft's own entries (the empty entry a new leader appends).
    pub proposal: Option<Proposal>,
}

/// Raft parameters of one channel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RaftSettings {
    /// Ticks without a leader before an election (from the channel's etcdraft options).
    pub election_tick: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_tick: usize,
    /// Bytes of uncommitted entries the leader accepts.
    pub max_uncommitted_bytes: u64,
}

/// One channel's Raft node with its durable log.
pub(crate) struct Consensus {
    node: RawNode<LogStorage>,
    store: Arc<RaftStore>,
    hard_state: StoredHardState,
}

impl Consensus {
    /// Opens the node over `store`. `applied` is the last log index the ledger reflects.
    pub(crate) fn open(
        store: RaftStore,
        applied: u64,
        settings: RaftSettings,
        channel_id: &str,
    ) -> Result<Consensus, ConsensusError> {
        let store = Arc::new(store);
        let conf_state = match store.conf_state()? {
            Some(bytes) => decode_conf_state(&bytes)?,
            None => {
                // A new log: this node is the channel's only voter.
                let cs = ConfState {
                    voters: vec![NODE_ID],
                    ..Default::default()
                };
                store.set_conf_state(&encode_conf_state(&cs))?;
                cs
            }
        };

        let mut hard_state = store.hard_state()?;
        let last = store.last_index()?;
        if applied > last {
            // The ledger holds blocks from entries this log no longer has: start the log
            // again just after them instead of replaying.
            tracing::warn!(
                channel = channel_id,
                ledger_raft_index = applied,
                raft_last_index = last,
                "raft log is behind the ledger; restarting the log after the ledger's index"
            );
            let term = hard_state.term.max(1);
            store.apply_snapshot(
                &RaftSnapshotMeta {
                    index: applied,
                    term,
                    conf_state: encode_conf_state(&conf_state),
                },
                &[],
            )?;
            hard_state = StoredHardState {
                term,
                vote: hard_state.vote,
                commit: applied,
            };
            store.set_hard_state(&hard_state)?;
        } else if applied > hard_state.commit {
            // Blocks are only cut from committed entries, so everything up to `applied` was
            // committed even if the commit index on disk lags.
            hard_state.commit = applied;
            store.set_hard_state(&hard_state)?;
        }

        let config = raft::Config {
            id: NODE_ID,
            election_tick: settings.election_tick,
            heartbeat_tick: settings.heartbeat_tick,
            applied,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            pre_vote: true,
            max_uncommitted_size: settings.max_uncommitted_bytes,
            ..raft::Config::default()
        };
        config.validate()?;
        let single_voter = conf_state.voters == [NODE_ID];
        let storage = LogStorage::new(store.clone(), conf_state);
        let mut node = RawNode::new(&config, storage, &log::logger(channel_id))?;
        if single_voter {
            // Nobody else can be leader: take the role now instead of waiting out an
            // election timeout.
            node.campaign()?;
        }
        Ok(Consensus {
            node,
            store,
            hard_state,
        })
    }

    /// Advances Raft's logical clock by one tick.
    pub(crate) fn tick(&mut self) {
        self.node.tick();
    }

    /// Whether this node currently leads the channel.
    pub(crate) fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// Proposes `proposal`; returns the (index, term) it was appended at, which commits later
    /// or is overwritten by another leader's entry.
    pub(crate) fn propose(&mut self, proposal: &Proposal) -> Result<(u64, u64), ConsensusError> {
        if !self.is_leader() {
            return Err(ConsensusError::NotLeader);
        }
        self.node.propose(Vec::new(), proposal.encode())?;
        Ok((self.node.raft.raft_log.last_index(), self.node.raft.term))
    }

    /// Whether [`Consensus::advance`] has work to do.
    pub(crate) fn has_ready(&self) -> bool {
        self.node.has_ready()
    }

    /// Runs one `Ready` cycle: persists new entries and hard state, and returns the entries
    /// that committed, in order.
    pub(crate) fn advance(&mut self) -> Result<Vec<Committed>, ConsensusError> {
        let mut committed = Vec::new();
        if !self.node.has_ready() {
            return Ok(committed);
        }
        let mut ready = self.node.ready();
        // A single voter has nobody to message; the cluster work adds the transport.
        if !ready.messages().is_empty() {
            tracing::debug!(
                count = ready.messages().len(),
                "dropping raft messages: no peers"
            );
        }
        if !ready.snapshot().is_empty() {
            return Err(ConsensusError::Raft(
                "received a snapshot, which a single-node orderer never sends".to_string(),
            ));
        }
        decode_committed(ready.take_committed_entries(), &mut committed)?;

        let new_entries: Vec<_> = ready.entries().iter().map(encode_entry).collect();
        if let Some(hs) = ready.hs() {
            self.hard_state = StoredHardState {
                term: hs.term,
                vote: hs.vote,
                commit: hs.commit,
            };
        }
        if !new_entries.is_empty() || ready.hs().is_some() {
            self.store.persist(&new_entries, Some(&self.hard_state))?;
        }

        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            // Written with the next persist rather than in a write of its own: the commit
            // index is recoverable (the entries are durable, and a restarted leader commits
            // them again), and `open` raises it to the ledger's index, which bounds any
            // compaction from below.
            self.hard_state.commit = commit;
        }
        decode_committed(light.take_committed_entries(), &mut committed)?;
        self.node.advance_apply();
        Ok(committed)
    }

    /// Discards log entries up to and including `index`, which the ledger already reflects.
    pub(crate) fn compact(&self, index: u64) -> Result<(), ConsensusError> {
        Ok(self.store.compact(index)?)
    }
}

fn decode_committed(entries: Vec<Entry>, out: &mut Vec<Committed>) -> Result<(), ConsensusError> {
    for entry in entries {
        let proposal = match entry.get_entry_type() {
            EntryType::EntryNormal if entry.data.is_empty() => None,
            EntryType::EntryNormal => Some(Proposal::decode(entry.index, &entry.data)?),
            // Never proposed while channels have one consenter.
            EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                return Err(ConsensusError::UnknownEntry {
                    index: entry.index,
                    reason: "membership changes are not supported yet".to_string(),
                });
            }
        };
        out.push(Committed {
            index: entry.index,
            term: entry.term,
            proposal,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "gridledger-orderer-consensus-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    const SETTINGS: RaftSettings = RaftSettings {
        election_tick: 10,
        heartbeat_tick: 1,
        max_uncommitted_bytes: 1024 * 1024,
    };

    fn drain(node: &mut Consensus) -> Vec<Committed> {
        let mut all = Vec::new();
        for _ in 0..16 {
            if !node.has_ready() {
                break;
            }
            all.extend(node.advance().expect("advance"));
        }
        all
    }

    #[test]
    fn proposals_round_trip() {
        for p in [
            Proposal::Envelope(b"env".to_vec()),
            Proposal::Envelope(Vec::new()),
            Proposal::TimeToCut { block_number: 9 },
        ] {
            assert_eq!(Proposal::decode(1, &p.encode()).expect("decodes"), p);
        }
        assert!(Proposal::decode(1, &[7, 1]).is_err());
        assert!(Proposal::decode(1, &[TAG_TIME_TO_CUT, 1, 2]).is_err());
    }

    #[test]
    fn single_node_commits_proposals_and_replays_after_restart() {
        let dir = scratch("replay");
        let mut node =
            Consensus::open(RaftStore::open(&dir).expect("store"), 0, SETTINGS, "c").expect("open");
        assert!(node.is_leader(), "a single voter leads at once");
        drain(&mut node);
        let (i1, t1) = node
            .propose(&Proposal::Envelope(b"a".to_vec()))
            .expect("propose");
        let (i2, _) = node
            .propose(&Proposal::TimeToCut { block_number: 1 })
            .expect("propose");
        let committed = drain(&mut node);
        let ours: Vec<_> = committed.iter().filter(|c| c.proposal.is_some()).collect();
        assert_eq!(ours.len(), 2);
        assert_eq!((ours[0].index, ours[0].term), (i1, t1));
        assert_eq!(ours[0].proposal, Some(Proposal::Envelope(b"a".to_vec())));
        assert_eq!(ours[1].index, i2);
        drop(node);

        // Restart having applied only the first entry: the second is delivered again.
        let mut node = Consensus::open(RaftStore::open(&dir).expect("store"), i1, SETTINGS, "c")
            .expect("reopen");
        let replayed: Vec<_> = drain(&mut node)
            .into_iter()
            .filter(|c| c.proposal.is_some())
            .collect();
        assert_eq!(replayed.len(), 1);
        assert_eq!(replayed[0].index, i2);
        assert!(node.is_leader());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn log_behind_the_ledger_restarts_after_it() {
        let dir = scratch("behind");
        // A fresh log, but the ledger claims index 40 was applied.
        let mut node = Consensus::open(RaftStore::open(&dir).expect("store"), 40, SETTINGS, "c")
            .expect("open");
        drain(&mut node);
        let (index, _) = node
            .propose(&Proposal::Envelope(b"x".to_vec()))
            .expect("propose");
        assert!(
            index > 40,
            "new entries follow the ledger's index, got {index}"
        );
        let committed = drain(&mut node);
        assert!(committed.iter().any(|c| c.index == index));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
