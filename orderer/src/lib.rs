//! The ordering service: `orderer.AtomicBroadcast` (Broadcast and Deliver), the block cutter,
//! Raft consensus on tikv/raft-rs among each channel's consenters (`cluster`: mutual-TLS
//! orderer-to-orderer transport, Broadcast forwarding to the leader), signed blocks, and
//! channel participation.
//!
//! Flow of one envelope: Broadcast screens it (parse, channel, size, type, creator, signature,
//! `/Channel/Writers`; `broadcast`) and hands it to its channel's ordering loop (`chain`),
//! which proposes it to Raft (`consensus`). Once the entry commits the client hears SUCCESS
//! and the envelope enters the [`cutter`]; every batch the cutter closes becomes a block
//! ([`block`]); the Raft leader signs it and orders the signature through Raft, and once that
//! commits every consenter appends the block, with that signature, to the channel's ledger. Deliver streams
//! those blocks to peers and clients (`deliver`).
//!
//! Module map:
//! - [`config`]: `orderer.toml` ([`OrdererConfig`]).
//! - `server`: the gRPC server ([`Orderer`], [`run`]); TLS, limits, shutdown.
//! - [`participation`]: joining channels with a genesis block ([`join_channel`]), listing
//!   and removing them ([`list_channels`], [`remove_channel`]); while running, through
//!   [`Participation`] ([`Orderer::participation`]), which the operations endpoint serves.
//! - [`cutter`]: the block cutter, a plain state machine.
//! - [`block`]: block assembly, orderer signature and metadata.
//! - `cluster`: membership from the consenter list, the `gridledger.Cluster` service and its
//!   client side.
//! - `metrics`: the orderer's metrics and health check, served by the operations endpoint.
//! - `consensus`, `chain`, `registry`, `access`, `broadcast`, `deliver`: internals.
//!
//! # Use from the CLI
//!
//! - `gridledger orderer start --config orderer.toml`: `let config =
//!   OrdererConfig::load(path)?;` then `gridledger_orderer::run(config, ctrl_c_or_sigterm).await`
//!   (or [`Orderer::bind`] then [`Orderer::serve`] to learn the bound address first).
//! - A channel with several consenters (the channel config's `Orderer/ConsensusType` metadata,
//!   numbered from 1 in list order) needs `[cluster] tls_ca_certs` in every consenter's
//!   `orderer.toml`: the CAs of the consenters' TLS certificates. Consenters reach each other
//!   on the host and port the consenter list names (the orderer's own listen address serves
//!   the cluster service too); a node finds itself by its TLS server certificate.
//! - `gridledger orderer join --config orderer.toml --block market.block` (orderer stopped):
//!   `join_channel(&config.data_dir, &std::fs::read(block)?)`. While the orderer runs, post
//!   the block to the channel participation API ([`Orderer::participation`], served by the
//!   operations endpoint; `gridledger channel create`), or copy it into `<data_dir>/join/`,
//!   where it is joined within a second.
//! - `gridledger orderer list` / `gridledger orderer remove --channel C` (orderer stopped):
//!   [`list_channels`] / [`remove_channel`]`(&data_dir, "C")`, which deletes the channel's
//!   ledger, Raft log and pending join file.
//!
//! Invariant: only entries committed in the channel's Raft log become blocks, and only the
//! channel's ordering loop writes its ledger.
//! Invariant: raft-rs types never leave the `consensus` module.
//! Invariant: a Raft message is accepted only from a TLS client certificate that is one of the
//! channel's consenters', and only as coming from that consenter's node id.
//! Invariant: Broadcast answers SUCCESS only once the envelope's entry committed in the Raft
//! log (on a quorum's disks), whichever orderer the client reached.
//! Invariant: every block records the Raft index it reflects, so a restart resumes from the
//! ledger and the log without losing or repeating a block.
//! Invariant: a block is written only when its signature entry commits, with exactly that
//! entry's metadata, so every consenter's copy of block N is byte-identical.

mod access;
pub mod block;
mod broadcast;
mod catchup;
mod chain;
mod cluster;
pub mod config;
mod configtx;
mod consensus;
pub mod cutter;
mod deliver;
mod error;
mod follower;
mod metrics;
pub mod participation;
mod registry;
mod server;
mod view;

pub use broadcast::screen_envelope;
pub use chain::{ChainError, SubmitError};
pub use cluster::ClusterError;
pub use config::{
    ClusterConfig, ConfigError, Limits, OperationsConfig, OrdererConfig, RaftConfig, TlsConfig,
};
pub use consensus::ConsensusError;
pub use cutter::{BatchSettings, BlockCutter};
pub use error::OrdererError;
/// The process-wide metrics registry the orderer records into, for the binary that serves it.
pub use gridledger_ledger::metrics::registry as metrics_registry;
pub use participation::{
    ChannelInfo, ChannelStatus, ConsensusRelation, JoinError, JoinedChannel, ListChannelsError,
    Participation, RemoveError, RemovedChannel, join_channel, list_channels, remove_channel,
};
pub use server::{Orderer, run};

/// Seconds since the Unix epoch by the local clock: the validation time of identities on the
/// service path (0 if the clock is before 1970).
pub(crate) fn now_unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
