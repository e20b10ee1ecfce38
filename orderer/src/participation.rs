//! Channel participation: how an orderer comes to serve a channel.
//!
//! As in Fabric ≥ 2.3 there is no system channel: an orderer joins a channel with the
//! channel's genesis block, which creates the channel's ledger at
//! `<data_dir>/channels/<channel_id>/` with block 0 appended. Two ways in:
//!
//! - [`join_channel`], for `gridledger orderer join` while the orderer is stopped (the ledger
//!   file is locked while the orderer runs);
//! - a `*.block` file dropped into `<data_dir>/join/`: the orderer joins every such genesis
//!   block of a channel it has not joined, when it starts and while it runs (the folder is
//!   checked every second). The file is left in place; a block of a channel already joined
//!   with the same genesis block is skipped.
//!
//! A runtime admin API (Fabric's channel participation REST API) comes with the cluster work.

use std::path::{Path, PathBuf};

use gridledger_channels::config::{ChannelConfig, ConfigError};
use gridledger_ledger::{Ledger, LedgerError};
use gridledger_proto::blockutil::block_header_hash;
use gridledger_proto::common;
use prost::Message;

/// Folder of `<data_dir>` holding one folder per joined channel.
pub const CHANNELS_DIR: &str = "channels";
/// Folder of `<data_dir>` scanned for genesis blocks to join.
pub const JOIN_DIR: &str = "join";
/// Extension of the genesis-block files in [`JOIN_DIR`].
pub const JOIN_FILE_EXTENSION: &str = "block";

/// Why a channel could not be joined.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The bytes are not a block.
    #[error("the genesis block does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The block is not block 0.
    #[error("a channel is joined with its genesis block (number 0), not block {0}")]
    NotGenesis(u64),
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
    if number != 0 {
        return Err(JoinError::NotGenesis(number));
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
    let ledger =
        Ledger::open(&channel_dir(data_dir, &channel_id), &channel_id).map_err(ledger_err)?;
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
            Err(JoinError::NotGenesis(3))
        ));
        assert!(matches!(
            join_channel(&dir, &common::Block::default().encode_to_vec()),
            Err(JoinError::Config(_))
        ));
        assert!(!dir.exists(), "nothing is created for a refused block");
    }
}
