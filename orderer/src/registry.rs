//! The channels this orderer serves: for each, its configuration, ledger and ordering loop.
//!
//! Channels come from `<data_dir>/channels/` (joined earlier) and from genesis blocks in
//! `<data_dir>/join/` (see [`crate::participation`]). The registry is shared by the gRPC
//! handlers, which only read it, and the join scanner, which adds to it.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use gridledger_channels::config::ChannelConfig;
use gridledger_identity::SigningIdentity;
use gridledger_ledger::Ledger;

use crate::block::orderer_metadata;
use gridledger_proto::blockutil::block_header_hash;
use gridledger_proto::orderer::BroadcastResponse;

use crate::catchup::{DeliverSource, PolicySignatures};
use crate::chain::{self, ChainError, ChainHandle, ChainSetup, NoPeers, RaftOutbound};
use crate::cluster::{ChannelOutbound, ClusterError, Members, Transport};
use crate::config::OrdererConfig;
use crate::consensus::RaftSettings;
use crate::cutter::BatchSettings;
use crate::error::OrdererError;
use crate::follower::{self, FollowerHandle, FollowerSetup};
use crate::participation::{self, JoinError};
use crate::view::ChannelView;

/// Election ticks used when the channel config carries no etcdraft options.
const DEFAULT_ELECTION_TICK: u32 = 10;
/// Heartbeat ticks used when the channel config carries no etcdraft options.
const DEFAULT_HEARTBEAT_TICK: u32 = 1;

/// One served channel.
pub(crate) struct ChannelState {
    /// The channel id.
    pub id: String,
    /// The channel's current configuration and consenters.
    pub view: Arc<ChannelView>,
    /// The channel's ledger (read by Deliver, written only by the chain).
    pub ledger: Arc<Ledger>,
    /// The ordering loop; `None` when this orderer is not one of the channel's consenters.
    pub chain: Option<ChainHandle>,
    /// Pulls the channel's blocks while this orderer is not one of its consenters.
    pub follower: Option<FollowerHandle>,
}

/// A join file already looked at: path, length and modification time.
type SeenFile = (PathBuf, u64, Option<SystemTime>);

/// All served channels.
pub(crate) struct Registry {
    channels: RwLock<BTreeMap<String, Arc<ChannelState>>>,
    config: OrdererConfig,
    signer: Arc<SigningIdentity>,
    seen_join_files: Mutex<HashSet<SeenFile>>,
    /// DER of this node's TLS server certificate: how it finds itself among consenters.
    own_tls_cert: Vec<u8>,
    /// Connections to the other orderers.
    transport: Arc<Transport>,
    /// Serializes joins (the folder scan and the participation API), so two joins of one
    /// channel never race for its ledger.
    joining: Mutex<()>,
}

impl Registry {
    pub(crate) fn new(
        config: OrdererConfig,
        signer: Arc<SigningIdentity>,
        own_tls_cert: Vec<u8>,
        transport: Arc<Transport>,
    ) -> Registry {
        Registry {
            channels: RwLock::new(BTreeMap::new()),
            config,
            signer,
            seen_join_files: Mutex::new(HashSet::new()),
            own_tls_cert,
            transport,
            joining: Mutex::new(()),
        }
    }

    /// Forwards an envelope of `channel_id` to its Raft leader, node `leader`.
    pub(crate) async fn forward(
        &self,
        channel_id: &str,
        leader: u64,
        envelope: Vec<u8>,
    ) -> Result<BroadcastResponse, ClusterError> {
        let member = self
            .get(channel_id)
            .and_then(|c| c.view.members().get(leader).cloned())
            .ok_or(ClusterError::UnknownNode(leader))?;
        self.transport.forward(channel_id, &member, envelope).await
    }

    /// This orderer's signing identity.
    pub(crate) fn signer(&self) -> &SigningIdentity {
        &self.signer
    }

    /// The channel with this id, if served.
    pub(crate) fn get(&self, channel_id: &str) -> Option<Arc<ChannelState>> {
        self.channels
            .read()
            .ok()
            .and_then(|c| c.get(channel_id).cloned())
    }

    /// The ids of the served channels, sorted.
    pub(crate) fn channel_ids(&self) -> Vec<String> {
        self.channels
            .read()
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Starts every channel joined earlier; a channel that fails to start fails the orderer
    /// (its ledger or log needs a human).
    pub(crate) fn open_joined(self: &Arc<Self>) -> Result<(), OrdererError> {
        let folders =
            participation::channel_folders(self.data_dir()).map_err(|source| OrdererError::Io {
                what: "list channel folders in",
                path: self.data_dir().join(participation::CHANNELS_DIR),
                source,
            })?;
        for channel_id in folders {
            let dir = participation::channel_dir(self.data_dir(), &channel_id);
            let ledger = Ledger::open(&dir, &channel_id).map_err(|e| OrdererError::Channel {
                channel: channel_id.clone(),
                source: ChainError::Ledger(e),
            })?;
            if ledger.height() == 0
                && participation::pending_join_block(self.data_dir(), &channel_id).is_none()
            {
                // A join that died before block 0 was written: not joined.
                tracing::warn!(channel = %channel_id, "channel folder without a genesis block; not served");
                continue;
            }
            self.start_channel(&channel_id, Arc::new(ledger))
                .map_err(|source| OrdererError::Channel {
                    channel: channel_id.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Joins the genesis blocks in `<data_dir>/join/` of channels not served yet. Problems
    /// with one file are logged and do not stop the others or the orderer.
    pub(crate) fn join_from_folder(self: &Arc<Self>) {
        let files = match participation::join_files(self.data_dir()) {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the join folder");
                return;
            }
        };
        for path in files {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let key = (path.clone(), meta.len(), meta.modified().ok());
            let fresh = self
                .seen_join_files
                .lock()
                .map(|mut seen| seen.insert(key))
                .unwrap_or(false);
            if !fresh {
                continue;
            }
            let _serial = self
                .joining
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot read join block");
                    continue;
                }
            };
            match participation::join_with_ledger(self.data_dir(), &bytes) {
                Ok((joined, ledger)) => {
                    if let Err(e) = self.start_channel(&joined.channel_id, Arc::new(ledger)) {
                        tracing::error!(channel = %joined.channel_id, error = %e,
                            "joined channel but cannot start ordering it");
                    }
                }
                Err(JoinError::AlreadyJoined(channel)) => {
                    tracing::debug!(channel = %channel, file = %path.display(), "join block of a channel already joined");
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot join channel from file");
                }
            }
        }
    }

    /// Joins a channel while the orderer runs (the channel participation API): refuses a
    /// channel already served before touching its files, joins with the block as
    /// [`participation::join_channel`] does, and starts ordering (or following) it. When the
    /// channel cannot be started, its new folder is removed again, so a failed join leaves
    /// nothing behind.
    pub(crate) fn join_now(
        self: &Arc<Self>,
        block_bytes: &[u8],
    ) -> Result<participation::ChannelInfo, JoinError> {
        let _serial = self
            .joining
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (channel_id, genesis_hash) = participation::block_channel_id(block_bytes)?;
        if let Some(served) = self.get(&channel_id) {
            // Joining again with the genesis block it was joined with is harmless; another
            // genesis block of the same channel id is a different channel.
            let same = match (&genesis_hash, served.ledger.block(0)) {
                (Some(hash), Ok(Some(block))) => block
                    .header
                    .as_ref()
                    .is_some_and(|h| block_header_hash(h) == *hash),
                _ => true,
            };
            return Err(if same {
                JoinError::AlreadyJoined(channel_id)
            } else {
                JoinError::DifferentGenesis(channel_id)
            });
        }
        let dir = participation::channel_dir(self.data_dir(), &channel_id);
        let existed = dir.exists();
        let (joined, ledger) = participation::join_with_ledger(self.data_dir(), block_bytes)?;
        if let Err(e) = self.start_channel(&joined.channel_id, Arc::new(ledger)) {
            if !existed {
                let _ = std::fs::remove_dir_all(&dir);
            }
            return Err(JoinError::Start {
                channel_id: joined.channel_id,
                reason: e.to_string(),
            });
        }
        tracing::info!(channel = %joined.channel_id, "joined channel through the participation API");
        self.channel_info(&joined.channel_id)
            .ok_or(JoinError::Start {
                channel_id: joined.channel_id,
                reason: "the channel stopped right after it started".into(),
            })
    }

    /// How this orderer serves channel `channel_id`, if it does.
    pub(crate) fn channel_info(&self, channel_id: &str) -> Option<participation::ChannelInfo> {
        let state = self.get(channel_id)?;
        let height = state.ledger.height();
        let (relation, status) = if state.chain.is_some() {
            (
                participation::ConsensusRelation::Consenter,
                participation::ChannelStatus::Active,
            )
        } else if height == 0
            || participation::pending_join_block(self.data_dir(), channel_id).is_some()
        {
            (
                participation::ConsensusRelation::Follower,
                participation::ChannelStatus::Onboarding,
            )
        } else {
            (
                participation::ConsensusRelation::Follower,
                participation::ChannelStatus::Active,
            )
        };
        Some(participation::ChannelInfo {
            name: state.id.clone(),
            consensus_relation: relation,
            status,
            height,
        })
    }

    /// Starts ordering a channel whose follower just found this orderer among the
    /// consenters of a config block it appended.
    pub(crate) fn promote(
        self: &Arc<Self>,
        channel_id: &str,
        ledger: Arc<Ledger>,
    ) -> Result<(), ChainError> {
        self.start_channel(channel_id, ledger)
    }

    /// Starts ordering a joined channel from its ledger — or following it, when this orderer
    /// is not one of its consenters.
    fn start_channel(
        self: &Arc<Self>,
        channel_id: &str,
        ledger: Arc<Ledger>,
    ) -> Result<(), ChainError> {
        if participation::pending_join_block(self.data_dir(), channel_id).is_some() {
            // Joined with a later config block whose predecessors are not all here yet.
            return self.start_following(channel_id, ledger);
        }
        let config = current_config(&ledger)?;
        let orderer = config.orderer();
        let batch = BatchSettings::from_config(&orderer.batch);
        let consenter_ids = tip_consenter_ids(&ledger)?;
        let (election, heartbeat) = orderer
            .options
            .as_ref()
            .map_or((DEFAULT_ELECTION_TICK, DEFAULT_HEARTBEAT_TICK), |o| {
                (o.election_tick, o.heartbeat_tick)
            });
        let members =
            match Members::from_consenters(&orderer.consenters, &consenter_ids, &self.own_tls_cert)
            {
                Ok(members) => members,
                Err(ClusterError::NotAConsenter(count)) => {
                    // Not (or no longer) a consenter: follow the channel's blocks until a config
                    // block makes this orderer one.
                    tracing::info!(channel = %channel_id, consenters = count,
                    "this orderer is not one of the channel's consenters");
                    return self.start_following(channel_id, ledger);
                }
                Err(e) => return Err(e.into()),
            };
        let view = Arc::new(ChannelView::new(
            config,
            members.clone(),
            self.own_tls_cert.clone(),
        ));
        let outbound: Arc<dyn RaftOutbound> = if members.members.len() == 1 {
            Arc::new(NoPeers)
        } else {
            Arc::new(ChannelOutbound {
                channel_id: channel_id.to_string(),
                view: view.clone(),
                transport: self.transport.clone(),
            })
        };
        let heartbeat = heartbeat.max(1) as usize;
        let election = (election as usize).max(heartbeat + 1);
        let handle = chain::start(ChainSetup {
            channel_id: channel_id.to_string(),
            dir: participation::channel_dir(self.data_dir(), channel_id),
            ledger: ledger.clone(),
            signer: self.signer.clone(),
            batch,
            raft: RaftSettings {
                election_tick: election,
                heartbeat_tick: heartbeat,
                max_uncommitted_bytes: self.config.raft.max_uncommitted_bytes,
                fixed_election_timeout: false,
            },
            tick: Duration::from_millis(self.config.raft.tick_ms),
            queue_depth: self.config.limits.submit_queue_depth as usize,
            node_id: members.self_id,
            voters: members.voters(),
            outbound,
            view: view.clone(),
            snapshot_interval_blocks: self.config.raft.snapshot_interval_blocks,
            idle_cut: (self.config.raft.idle_cut_ms > 0)
                .then(|| Duration::from_millis(self.config.raft.idle_cut_ms)),
            blocks: Arc::new(self.deliver_source(channel_id, &view)),
            on_evicted: {
                let registry = Arc::downgrade(self);
                let (channel_id, ledger) = (channel_id.to_string(), ledger.clone());
                Some(Box::new(move || {
                    if let Some(registry) = registry.upgrade() {
                        if let Err(e) = registry.start_following(&channel_id, ledger) {
                            tracing::error!(channel = %channel_id, error = %e,
                                "cannot follow the channel after leaving its consenters");
                        }
                    }
                }))
            },
            signatures: Arc::new(PolicySignatures::default()),
        })?;
        self.insert(Arc::new(ChannelState {
            id: channel_id.to_string(),
            view,
            ledger,
            chain: Some(handle),
            follower: None,
        }));
        Ok(())
    }

    /// Follows a channel (see [`crate::follower`]) instead of ordering it: for an orderer that
    /// is not one of its consenters, or was just removed from them (then its ledger may not
    /// hold the config block that removed it yet).
    fn start_following(
        self: &Arc<Self>,
        channel_id: &str,
        ledger: Arc<Ledger>,
    ) -> Result<(), ChainError> {
        let join_block = participation::pending_join_block(self.data_dir(), channel_id);
        let (config, consenter_ids) = match &join_block {
            Some(block) => (
                ChannelConfig::from_block(block).map_err(ChainError::Config)?,
                orderer_metadata(block)?.consenter_ids,
            ),
            None => (current_config(&ledger)?, tip_consenter_ids(&ledger)?),
        };
        let members = Members::observing(&config.orderer().consenters, &consenter_ids)?;
        let view = Arc::new(ChannelView::new(config, members, self.own_tls_cert.clone()));
        let follower = follower::start(FollowerSetup {
            channel_id: channel_id.to_string(),
            ledger: ledger.clone(),
            view: view.clone(),
            source: Box::new(self.deliver_source(channel_id, &view)),
            signatures: Box::new(PolicySignatures::default()),
            registry: Arc::downgrade(self),
            join_block: join_block.map(|block| {
                let file = participation::channel_dir(self.data_dir(), channel_id)
                    .join(participation::JOIN_BLOCK_FILE);
                (block, file)
            }),
        })
        .map_err(ChainError::Thread)?;
        self.insert(Arc::new(ChannelState {
            id: channel_id.to_string(),
            view,
            ledger,
            chain: None,
            follower: Some(follower),
        }));
        Ok(())
    }

    /// Pulls a channel's blocks from its consenters' Deliver.
    fn deliver_source(&self, channel_id: &str, view: &Arc<ChannelView>) -> DeliverSource {
        DeliverSource {
            channel_id: channel_id.to_string(),
            view: view.clone(),
            transport: self.transport.clone(),
            signer: self.signer.clone(),
            max_message_bytes: self.config.limits.max_message_bytes as usize,
        }
    }

    fn insert(&self, state: Arc<ChannelState>) {
        if let Ok(mut channels) = self.channels.write() {
            channels.insert(state.id.clone(), state);
        }
    }

    /// Stops every channel's ordering loop (blocking until the threads end).
    pub(crate) fn stop_all(&self) {
        let channels: Vec<Arc<ChannelState>> = self
            .channels
            .write()
            .map(|mut c| std::mem::take(&mut *c).into_values().collect())
            .unwrap_or_default();
        for channel in channels {
            if let Some(follower) = &channel.follower {
                follower.stop();
            }
            if let Some(chain) = &channel.chain {
                chain.stop();
                tracing::info!(channel = %channel.id, "channel ordering stopped");
            }
        }
    }
}

/// The consenters' Raft ids the tip block records (empty before any block recorded them, as
/// in a genesis block: then they are numbered by position).
fn tip_consenter_ids(ledger: &Ledger) -> Result<Vec<u64>, ChainError> {
    let tip_number = ledger
        .height()
        .checked_sub(1)
        .ok_or(ChainError::EmptyLedger)?;
    let tip = ledger.block(tip_number)?.ok_or(ChainError::EmptyLedger)?;
    Ok(orderer_metadata(&tip)?.consenter_ids)
}

/// The configuration in force at the tip: from the last config block the tip names.
fn current_config(ledger: &Ledger) -> Result<ChannelConfig, ChainError> {
    let tip_number = ledger
        .height()
        .checked_sub(1)
        .ok_or(ChainError::EmptyLedger)?;
    let tip = ledger.block(tip_number)?.ok_or(ChainError::EmptyLedger)?;
    let last_config = orderer_metadata(&tip)?.last_config_index;
    let config_block = if last_config == tip_number {
        tip
    } else {
        ledger
            .block(last_config)?
            .ok_or(ChainError::MissingConfigBlock(last_config))?
    };
    ChannelConfig::from_block(&config_block).map_err(ChainError::Config)
}
