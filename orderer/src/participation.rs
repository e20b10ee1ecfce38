//! Channel participation: how an orderer comes to serve a channel.
//!
//! As in Fabric ≥ 2.3 there is no system channel: an orderer joins a channel with the
//! channel's genesis block, which creates the channel's ledger at
//! `<data_dir>/channels/<channel_id>/` with block 0 appended — or with a later config block
//! of the channel (the join block, kept as `<channel_dir>/join.block` until it is in the
//! ledger): the orderer then pulls the blocks before it from the consenters the join block
//! names, and appends the join block only if they lead to it (`crate::follower`). Two ways in:
//!
//! - [`join_channel`], for `gridledger orderer join` while the orderer is stopped (the ledger
//!   file is locked while the orderer runs);
//! - a `*.block` file dropped into `<data_dir>/join/`: the orderer joins every such genesis
//!   block of a channel it has not joined, when it starts and while it runs (the folder is
//!   checked every second). The file is left in place; a block of a channel already joined
//!   with the same genesis block is skipped.
//!
//! - [`Participation::join`] while the orderer runs: the channel participation API that the
//!   operations endpoint serves (`POST /participation/v1/channels`, as `osnadmin channel
//!   join` sends it), which joins at once and answers how the channel is served.
//!
//! [`list_channels`] lists the joined channels and [`remove_channel`] removes one (Fabric's
//! channel participation "remove"): its ledger, its Raft log and any genesis block of it waiting
//! in `<data_dir>/join/`. Both run while the orderer is stopped (`gridledger orderer list` /
//! `gridledger orderer remove`); while it runs, [`Participation::list`] and
//! [`Participation::channel`] answer from the served channels.

use std::path::{Path, PathBuf};

use gridledger_channels::config::{ChannelConfig, ConfigError};
use gridledger_ledger::{LEDGER_FILE, Ledger, LedgerError, RAFT_FILE, RaftStore};
use gridledger_proto::blockutil::block_header_hash;
use gridledger_proto::common;
use prost::Message;

/// Folder of `<data_dir>` holding one folder per joined channel.
pub const CHANNELS_DIR: &str = "channels";
/// Folder of `<data_dir>` scanned for genesis blocks to join.
pub const JOIN_DIR: &str = "join";
/// The config block a channel was joined with, in its folder, until the ledger holds it.
pub const JOIN_BLOCK_FILE: &str = "join.block";
/// Extension of the genesis-block files in [`JOIN_DIR`].
pub const JOIN_FILE_EXTENSION: &str = "block";

/// Why a channel could not be joined.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The bytes are not a block.
    #[error("the genesis block does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The block is neither block 0 nor a config block.
    #[error(
        "a channel is joined with its genesis block or a later config block; block {0} is not a config block"
    )]
    NotAConfigBlock(u64),
    /// The channel is already being joined with another join block.
    #[error("channel {0} is already being joined with a different config block")]
    DifferentJoinBlock(String),
    /// The join block could not be stored.
    #[error("cannot store the join block of channel {channel_id}: {source}")]
    JoinBlockFile {
        /// The channel.
        channel_id: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The block does not carry a usable channel configuration.
    #[error("the genesis block's channel configuration is not valid: {0}")]
    Config(#[from] ConfigError),
    /// The channel id cannot name a folder.
    #[error("channel id {0:?} cannot be used as a folder name")]
    UnsafeChannelId(String),
    /// This orderer already serves the channel, from this very genesis block.
    #[error("channel {0} is already joined")]
    AlreadyJoined(String),
    /// This orderer serves a channel of this id that started from another genesis block.
    #[error("channel {0} is already joined with a different genesis block")]
    DifferentGenesis(String),
    /// The channel's ledger could not be created or written.
    #[error("ledger of channel {channel_id}: {source}")]
    Ledger {
        /// The channel.
        channel_id: String,
        /// The ledger's error.
        source: LedgerError,
    },
    /// The channel was joined but could not be started; its new folder was removed again.
    #[error("cannot start channel {channel_id}: {reason}")]
    Start {
        /// The channel.
        channel_id: String,
        /// Why it did not start.
        reason: String,
    },
}

impl JoinError {
    /// Whether the request itself is at fault (a bad or conflicting block), as opposed to
    /// this orderer's storage or start-up.
    pub fn is_bad_request(&self) -> bool {
        !matches!(
            self,
            JoinError::JoinBlockFile { .. } | JoinError::Ledger { .. } | JoinError::Start { .. }
        )
    }
}

/// An orderer's relation to a channel's consensus, as Fabric's participation API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsensusRelation {
    /// One of the channel's consenters.
    Consenter,
    /// Pulls the channel's blocks from its consenters.
    Follower,
}

impl ConsensusRelation {
    /// Fabric's JSON value: `consenter` or `follower`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsensusRelation::Consenter => "consenter",
            ConsensusRelation::Follower => "follower",
        }
    }
}

/// Whether a served channel is usable yet, as Fabric's participation API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelStatus {
    /// Ordering, or following with its ledger complete up to the join block.
    Active,
    /// Following, still pulling the blocks up to the config block it was joined with.
    Onboarding,
}

impl ChannelStatus {
    /// Fabric's JSON value: `active` or `onboarding`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelStatus::Active => "active",
            ChannelStatus::Onboarding => "onboarding",
        }
    }
}

/// How a running orderer serves one channel (Fabric's `ChannelInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The channel id.
    pub name: String,
    /// Consenter or follower.
    pub consensus_relation: ConsensusRelation,
    /// Active or onboarding.
    pub status: ChannelStatus,
    /// The ledger height.
    pub height: u64,
}

/// The channel participation of a running orderer: join a channel, list the served ones.
/// Cheap to clone; obtained from [`crate::Orderer::participation`].
#[derive(Clone)]
pub struct Participation(pub(crate) std::sync::Arc<crate::registry::Registry>);

impl std::fmt::Debug for Participation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participation")
            .field("channels", &self.0.channel_ids())
            .finish()
    }
}

impl Participation {
    /// Joins the channel of `block_bytes` (its genesis block, or a later config block to
    /// onboard from the consenters) and starts serving it. Blocks on disk I/O: call it off
    /// the async executor.
    pub fn join(&self, block_bytes: &[u8]) -> Result<ChannelInfo, JoinError> {
        self.0.join_now(block_bytes)
    }

    /// Every served channel, sorted by id.
    pub fn list(&self) -> Vec<ChannelInfo> {
        self.0
            .channel_ids()
            .iter()
            .filter_map(|id| self.0.channel_info(id))
            .collect()
    }

    /// Channel `channel_id`, if served.
    pub fn channel(&self, channel_id: &str) -> Option<ChannelInfo> {
        self.0.channel_info(channel_id)
    }
}

/// The channel id a join block names (checked as [`join_channel`] checks it), and its header
/// hash when it is a genesis block.
pub(crate) fn block_channel_id(
    block_bytes: &[u8],
) -> Result<(String, Option<[u8; 32]>), JoinError> {
    let block = common::Block::decode(block_bytes)?;
    let number = block.header.as_ref().map_or(0, |h| h.number);
    if number != 0
        && !crate::block::orderer_metadata(&block).is_ok_and(|m| m.last_config_index == number)
    {
        return Err(JoinError::NotAConfigBlock(number));
    }
    let channel_id = ChannelConfig::from_block(&block)?.channel_id().to_string();
    if !is_safe_folder_name(&channel_id) {
        return Err(JoinError::UnsafeChannelId(channel_id));
    }
    let genesis_hash = block
        .header
        .as_ref()
        .filter(|h| h.number == 0)
        .map(block_header_hash);
    Ok((channel_id, genesis_hash))
}

/// A channel this orderer now serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedChannel {
    /// The channel id from the genesis block.
    pub channel_id: String,
    /// The ledger height after joining (1 for a fresh join).
    pub height: u64,
}

/// Why the joined channels could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ListChannelsError {
    /// The channels folder could not be read.
    #[error("cannot list the channel folders in {path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A channel's ledger could not be opened (it is locked while the orderer runs).
    #[error("ledger of channel {channel_id} (is the orderer running?): {source}")]
    Ledger {
        /// The channel.
        channel_id: String,
        /// The ledger's error.
        source: LedgerError,
    },
}

/// Why a channel could not be removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    /// The channel id cannot name a folder.
    #[error("channel id {0:?} cannot be used as a folder name")]
    UnsafeChannelId(String),
    /// The orderer has neither joined the channel nor a genesis block of it waiting to be
    /// joined.
    #[error("channel {0} is not joined here and has no pending join file")]
    UnknownChannel(String),
    /// A file of the channel could not be opened, most likely because the orderer runs and
    /// holds its lock.
    #[error("cannot open {what} of channel {channel_id} (is the orderer running?): {source}")]
    InUse {
        /// The channel.
        channel_id: String,
        /// Which file: the ledger or the Raft log.
        what: &'static str,
        /// The storage error.
        source: LedgerError,
    },
    /// A folder or file could not be read or deleted.
    #[error("cannot {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The folder or file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What [`remove_channel`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedChannel {
    /// The channel id.
    pub channel_id: String,
    /// The channel's folder (ledger and Raft log), if there was one.
    pub channel_dir: Option<PathBuf>,
    /// The channel's genesis block files removed from `<data_dir>/join/`.
    pub join_files: Vec<PathBuf>,
}

/// Removes channel `channel_id` from the orderer whose data folder is `data_dir`: its folder
/// `<data_dir>/channels/<channel_id>/` (ledger and Raft log) and every genesis block of the
/// channel in `<data_dir>/join/` (so it is not joined again at the next start). Run it while the
/// orderer is stopped: the channel's ledger and Raft log are opened first, which fails while a
/// running orderer holds them. Fails with [`RemoveError::UnknownChannel`] when there is nothing
/// of the channel to remove.
pub fn remove_channel(data_dir: &Path, channel_id: &str) -> Result<RemovedChannel, RemoveError> {
    if !is_safe_folder_name(channel_id) {
        return Err(RemoveError::UnsafeChannelId(channel_id.to_string()));
    }
    let dir = channel_dir(data_dir, channel_id);
    let has_dir = dir.is_dir();
    let join_dir = data_dir.join(JOIN_DIR);
    let pending: Vec<PathBuf> = join_files(data_dir)
        .map_err(|source| RemoveError::Io {
            what: "list the join files in",
            path: join_dir,
            source,
        })?
        .into_iter()
        .filter(|path| join_file_channel(path).as_deref() == Some(channel_id))
        .collect();
    if !has_dir && pending.is_empty() {
        return Err(RemoveError::UnknownChannel(channel_id.to_string()));
    }
    if has_dir {
        ensure_not_in_use(&dir, channel_id)?;
    }
    // Join files first: a channel folder left behind by a failure stays a joined channel,
    // whereas a join file left behind would silently join the channel again.
    for path in &pending {
        std::fs::remove_file(path).map_err(|source| RemoveError::Io {
            what: "delete",
            path: path.clone(),
            source,
        })?;
    }
    if has_dir {
        std::fs::remove_dir_all(&dir).map_err(|source| RemoveError::Io {
            what: "delete",
            path: dir.clone(),
            source,
        })?;
    }
    tracing::info!(channel = %channel_id, "removed channel");
    Ok(RemovedChannel {
        channel_id: channel_id.to_string(),
        channel_dir: has_dir.then_some(dir),
        join_files: pending,
    })
}

/// Opens (and closes again) the channel's ledger and Raft log, where they exist, to make sure
/// no running orderer holds them.
fn ensure_not_in_use(dir: &Path, channel_id: &str) -> Result<(), RemoveError> {
    let in_use = |what, source| RemoveError::InUse {
        channel_id: channel_id.to_string(),
        what,
        source,
    };
    if dir.join(LEDGER_FILE).is_file() {
        drop(Ledger::open(dir, channel_id).map_err(|e| in_use("the ledger", e))?);
    }
    if dir.join(RAFT_FILE).is_file() {
        drop(RaftStore::open(dir).map_err(|e| in_use("the Raft log", e))?);
    }
    Ok(())
}

/// The channel id of the genesis block in join file `path`, if it reads and decodes.
fn join_file_channel(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let block = common::Block::decode(bytes.as_slice()).ok()?;
    ChannelConfig::from_block(&block)
        .ok()
        .map(|c| c.channel_id().to_string())
}

/// The channels joined under `data_dir`, sorted by id, each with its ledger height; for
/// `gridledger orderer channel list` while the orderer is stopped (a running orderer holds
/// its ledgers' locks). A folder whose join never wrote block 0 is not listed.
pub fn list_channels(data_dir: &Path) -> Result<Vec<JoinedChannel>, ListChannelsError> {
    let folders = channel_folders(data_dir).map_err(|source| ListChannelsError::Io {
        path: data_dir.join(CHANNELS_DIR),
        source,
    })?;
    let mut out = Vec::new();
    for channel_id in folders {
        let ledger =
            Ledger::open(&channel_dir(data_dir, &channel_id), &channel_id).map_err(|source| {
                ListChannelsError::Ledger {
                    channel_id: channel_id.clone(),
                    source,
                }
            })?;
        let height = ledger.height();
        if height > 0 {
            out.push(JoinedChannel { channel_id, height });
        }
    }
    Ok(out)
}

/// The folder of channel `channel_id`'s ledger and Raft log.
pub fn channel_dir(data_dir: &Path, channel_id: &str) -> PathBuf {
    data_dir.join(CHANNELS_DIR).join(channel_id)
}

/// Joins the channel whose genesis block is `genesis_block` (its protobuf bytes): creates
/// `<data_dir>/channels/<channel_id>/` with block 0. Run it while the orderer is stopped, or
/// put the block in `<data_dir>/join/` instead.
pub fn join_channel(data_dir: &Path, genesis_block: &[u8]) -> Result<JoinedChannel, JoinError> {
    join_with_ledger(data_dir, genesis_block).map(|(joined, _)| joined)
}

/// [`join_channel`], keeping the opened ledger for the caller.
pub(crate) fn join_with_ledger(
    data_dir: &Path,
    genesis_block: &[u8],
) -> Result<(JoinedChannel, Ledger), JoinError> {
    let block = common::Block::decode(genesis_block)?;
    let number = block.header.as_ref().map_or(0, |h| h.number);
    if number != 0
        && !crate::block::orderer_metadata(&block).is_ok_and(|m| m.last_config_index == number)
    {
        return Err(JoinError::NotAConfigBlock(number));
    }
    let config = ChannelConfig::from_block(&block)?;
    let channel_id = config.channel_id().to_string();
    if !is_safe_folder_name(&channel_id) {
        return Err(JoinError::UnsafeChannelId(channel_id));
    }
    let ledger_err = |source| JoinError::Ledger {
        channel_id: channel_id.clone(),
        source,
    };
    let dir = channel_dir(data_dir, &channel_id);
    let ledger = Ledger::open(&dir, &channel_id).map_err(ledger_err)?;
    if number > 0 {
        return join_later(&dir, &channel_id, &block, ledger);
    }
    if ledger.height() > 0 {
        let existing = ledger.block(0).map_err(ledger_err)?;
        let same = existing
            .as_ref()
            .and_then(|b| b.header.as_ref())
            .zip(block.header.as_ref())
            .is_some_and(|(a, b)| block_header_hash(a) == block_header_hash(b));
        return Err(if same {
            JoinError::AlreadyJoined(channel_id)
        } else {
            JoinError::DifferentGenesis(channel_id)
        });
    }
    ledger.append_block(&block).map_err(ledger_err)?;
    tracing::info!(channel = %channel_id, "joined channel");
    Ok((
        JoinedChannel {
            channel_id,
            height: ledger.height(),
        },
        ledger,
    ))
}

/// Joins with config block `block` (number > 0): records it as the join block of a channel
/// not joined yet; the orderer pulls the blocks before it.
fn join_later(
    dir: &Path,
    channel_id: &str,
    block: &common::Block,
    ledger: Ledger,
) -> Result<(JoinedChannel, Ledger), JoinError> {
    let bytes = block.encode_to_vec();
    if ledger.height() > 0 {
        return Err(JoinError::AlreadyJoined(channel_id.to_string()));
    }
    let path = dir.join(JOIN_BLOCK_FILE);
    let store_err = |source| JoinError::JoinBlockFile {
        channel_id: channel_id.to_string(),
        source,
    };
    match std::fs::read(&path) {
        Ok(existing) if existing == bytes => {
            return Err(JoinError::AlreadyJoined(channel_id.to_string()));
        }
        Ok(_) => return Err(JoinError::DifferentJoinBlock(channel_id.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(store_err(e)),
    }
    let partial = dir.join(format!("{JOIN_BLOCK_FILE}.partial"));
    std::fs::write(&partial, &bytes).map_err(store_err)?;
    std::fs::rename(&partial, &path).map_err(store_err)?;
    tracing::info!(channel = %channel_id, join_block = block.header.as_ref().map_or(0, |h| h.number),
        "joined channel with a config block; its earlier blocks will be pulled from the consenters");
    Ok((
        JoinedChannel {
            channel_id: channel_id.to_string(),
            height: 0,
        },
        ledger,
    ))
}

/// The join block of a channel joined with a later config block and not yet in its ledger.
pub(crate) fn pending_join_block(data_dir: &Path, channel_id: &str) -> Option<common::Block> {
    let bytes = std::fs::read(channel_dir(data_dir, channel_id).join(JOIN_BLOCK_FILE)).ok()?;
    common::Block::decode(bytes.as_slice()).ok()
}

/// Channel ids are Fabric channel names (`[a-z][a-z0-9.-]*`, checked by the channel config);
/// this is the last guard before one becomes a path component.
pub(crate) fn is_safe_folder_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
}

/// The channel folders under `<data_dir>/channels` (joined or half-joined), sorted.
pub(crate) fn channel_folders(data_dir: &Path) -> std::io::Result<Vec<String>> {
    let dir = data_dir.join(CHANNELS_DIR);
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        if let Some(name) = entry
            .file_name()
            .to_str()
            .filter(|n| is_safe_folder_name(n))
        {
            out.push(name.to_string());
        }
    }
    out.sort();
    Ok(out)
}

/// The `*.block` files in `<data_dir>/join`, sorted.
pub(crate) fn join_files(data_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = data_dir.join(JOIN_DIR);
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_file() && path.extension().and_then(|e| e.to_str()) == Some(JOIN_FILE_EXTENSION)
        {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridledger_channels::genesis::genesis_block;
    use gridledger_identity::material::{self, CryptoConfig};

    const CRYPTO: &str = r#"
seed = "gridledger-participation-tests"

[[organizations]]
msp_id = "OrdererMSP"
orderers = [{ name = "orderer0" }]

[[organizations]]
msp_id = "DSOMSP"
peers = [{ name = "peer0.dso" }]
"#;

    const CHANNEL: &str = r#"
name = "market"

[orderer]
[[orderer.organizations]]
msp_id = "OrdererMSP"
msp_dir = "organizations/OrdererMSP/msp"
endpoints = ["127.0.0.1:7050"]

[[orderer.consenters]]
host = "127.0.0.1"
port = 7050
client_tls_cert = "organizations/OrdererMSP/orderers/orderer0/tls/server.crt"
server_tls_cert = "organizations/OrdererMSP/orderers/orderer0/tls/server.crt"

[[organizations]]
msp_id = "DSOMSP"
msp_dir = "organizations/DSOMSP/msp"
"#;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "gridledger-participation-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch folder");
        dir
    }

    /// The genesis block of channel "market", with its crypto material generated under `dir`.
    fn market_genesis(dir: &Path) -> Vec<u8> {
        let crypto: CryptoConfig = toml::from_str(CRYPTO).expect("crypto config parses");
        material::generate(&crypto, dir, 0).expect("generate material");
        let file = dir.join("market.toml");
        std::fs::write(&file, CHANNEL).expect("write the channel file");
        let (spec, config) =
            gridledger_channels::config::config_from_file(&file).expect("channel builds");
        genesis_block(&spec.name, config, prost_types::Timestamp::default()).encode_to_vec()
    }

    #[test]
    fn removing_a_channel_deletes_its_ledger_raft_log_and_join_file() {
        let dir = scratch("remove");
        let genesis = market_genesis(&dir);
        let data = dir.join("data");
        join_channel(&data, &genesis).expect("join market");
        drop(RaftStore::open(&channel_dir(&data, "market")).expect("create the Raft log"));
        let join = data.join(JOIN_DIR);
        std::fs::create_dir_all(&join).expect("create the join folder");
        std::fs::write(join.join("market.block"), &genesis).expect("write a join file");
        std::fs::write(join.join("other.block"), b"not a block").expect("write a join file");
        let listed: Vec<String> = list_channels(&data)
            .expect("list")
            .into_iter()
            .map(|c| c.channel_id)
            .collect();
        assert_eq!(listed, ["market"]);

        // While something holds the ledger (a running orderer), nothing is removed.
        let held = Ledger::open(&channel_dir(&data, "market"), "market").expect("open");
        assert!(matches!(
            remove_channel(&data, "market"),
            Err(RemoveError::InUse { .. })
        ));
        assert!(join.join("market.block").exists() && channel_dir(&data, "market").exists());
        drop(held);

        let removed = remove_channel(&data, "market").expect("remove market");
        assert_eq!(removed.channel_id, "market");
        assert_eq!(removed.channel_dir, Some(channel_dir(&data, "market")));
        assert_eq!(removed.join_files, [join.join("market.block")]);
        assert!(
            !channel_dir(&data, "market").exists(),
            "ledger and Raft log gone"
        );
        assert!(!join.join("market.block").exists(), "join file gone");
        assert!(join.join("other.block").exists(), "other join files stay");
        assert!(list_channels(&data).expect("list").is_empty());
        assert!(matches!(
            remove_channel(&data, "market"),
            Err(RemoveError::UnknownChannel(c)) if c == "market"
        ));

        // A channel only waiting in the join folder is removed too.
        std::fs::write(join.join("market.block"), &genesis).expect("write a join file");
        let removed = remove_channel(&data, "market").expect("remove the pending join");
        assert_eq!(removed.channel_dir, None);
        assert_eq!(removed.join_files, [join.join("market.block")]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn removing_refuses_unsafe_and_unknown_channel_ids() {
        let dir = scratch("remove-refused");
        for bad in ["", "..", "../market", "a/b", "Market"] {
            assert!(
                matches!(
                    remove_channel(&dir, bad),
                    Err(RemoveError::UnsafeChannelId(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            remove_channel(&dir, "nowhere"),
            Err(RemoveError::UnknownChannel(_))
        ));
        assert!(!channel_dir(&dir, "nowhere").exists(), "nothing is created");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_channel_names_become_folders() {
        for ok in ["market", "a.b-c", "ch1"] {
            assert!(is_safe_folder_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "A", "x y", "ü"] {
            assert!(!is_safe_folder_name(bad), "{bad}");
        }
    }

    #[test]
    fn garbage_and_non_genesis_blocks_are_refused() {
        let dir =
            std::env::temp_dir().join(format!("gridledger-orderer-join-{}", std::process::id()));
        assert!(matches!(
            join_channel(&dir, &[0xff, 0xff, 0xff]),
            Err(JoinError::Decode(_))
        ));
        let block = common::Block {
            header: Some(common::BlockHeader {
                number: 3,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(
            join_channel(&dir, &block.encode_to_vec()),
            Err(JoinError::NotAConfigBlock(3))
        ));
        assert!(matches!(
            join_channel(&dir, &common::Block::default().encode_to_vec()),
            Err(JoinError::Config(_))
        ));
        assert!(!dir.exists(), "nothing is created for a refused block");
    }

    /// The genesis block renumbered as config block `number` (its SIGNATURES metadata names
    /// itself as the last config, as a config block's does).
    fn as_config_block(genesis: &[u8], number: u64) -> Vec<u8> {
        let mut block = common::Block::decode(genesis).expect("genesis decodes");
        block.header.as_mut().expect("header").number = number;
        let signatures = common::Metadata {
            value: common::OrdererBlockMetadata {
                last_config: Some(common::LastConfig { index: number }),
                ..Default::default()
            }
            .encode_to_vec(),
            signatures: Vec::new(),
        }
        .encode_to_vec();
        crate::block::attach_signatures(&mut block, signatures, number);
        block.encode_to_vec()
    }

    #[test]
    fn a_later_config_block_is_kept_as_the_join_block_until_the_chain_reaches_it() {
        let dir = scratch("join-later");
        let genesis = market_genesis(&dir);
        let data = dir.join("data");
        let join_block = as_config_block(&genesis, 7);
        let joined = join_channel(&data, &join_block).expect("join with a config block");
        assert_eq!((joined.channel_id.as_str(), joined.height), ("market", 0));
        let pending = pending_join_block(&data, "market").expect("kept");
        assert_eq!(pending.encode_to_vec(), join_block);
        assert!(matches!(
            join_channel(&data, &join_block),
            Err(JoinError::AlreadyJoined(c)) if c == "market"
        ));
        assert!(matches!(
            join_channel(&data, &as_config_block(&genesis, 9)),
            Err(JoinError::DifferentJoinBlock(c)) if c == "market"
        ));
        // A block that is not a config block (its metadata names block 0) is refused.
        let mut ordinary = common::Block::decode(genesis.as_slice()).expect("genesis");
        ordinary.header.as_mut().expect("header").number = 3;
        assert!(matches!(
            join_channel(&dir.join("other"), &ordinary.encode_to_vec()),
            Err(JoinError::NotAConfigBlock(3))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
