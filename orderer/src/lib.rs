//! The ordering service: `orderer.AtomicBroadcast` (Broadcast and Deliver), the block cutter,
//! single-node Raft consensus on tikv/raft-rs, signed blocks, and channel participation.
//!
//! Flow of one envelope: Broadcast screens it (parse, channel, size, type, creator, signature,
//! `/Channel/Writers`; `broadcast`) and hands it to its channel's ordering loop (`chain`),
//! which proposes it to Raft (`consensus`). Once the entry commits the client hears SUCCESS
//! and the envelope enters the [`cutter`]; every batch the cutter closes becomes a block
//! ([`block`]) signed by the orderer and appended to the channel's ledger. Deliver streams
//! those blocks to peers and clients (`deliver`).
//!
//! Module map:
//! - [`config`]: `orderer.toml` ([`OrdererConfig`]).
//! - `server`: the gRPC server ([`Orderer`], [`run`]); TLS, limits, shutdown.
//! - [`participation`]: joining channels with a genesis block ([`join_channel`]).
//! - [`cutter`]: the block cutter, a plain state machine.
//! - [`block`]: block assembly, orderer signature and metadata.
//! - `consensus`, `chain`, `registry`, `access`, `broadcast`, `deliver`: internals.
//!
//! # Use from the CLI
//!
//! - `gridledger orderer start --config orderer.toml`: `let config =
//!   OrdererConfig::load(path)?;` then `gridledger_orderer::run(config, ctrl_c_or_sigterm).await`
//!   (or [`Orderer::bind`] then [`Orderer::serve`] to learn the bound address first).
//! - `gridledger orderer join --config orderer.toml --block market.block` (orderer stopped):
//!   `join_channel(&config.data_dir, &std::fs::read(block)?)`. While the orderer runs, copy
//!   the block into `<data_dir>/join/` instead; it is joined within a second.
//!
//! Invariant: only entries committed in the channel's Raft log become blocks, and only the
//! channel's ordering loop writes its ledger.
//! Invariant: raft-rs types never leave the `consensus` module.
//! Invariant: every block records the Raft index it reflects, so a restart resumes from the
//! ledger and the log without losing or repeating a block.

mod access;
pub mod block;
mod broadcast;
mod chain;
pub mod config;
mod consensus;
pub mod cutter;
mod deliver;
mod error;
pub mod participation;
mod registry;
mod server;

pub use chain::{ChainError, SubmitError};
pub use config::{ConfigError, Limits, OrdererConfig, RaftConfig, TlsConfig};
pub use consensus::ConsensusError;
pub use cutter::{BatchSettings, BlockCutter};
pub use error::OrdererError;
pub use participation::{JoinError, JoinedChannel, join_channel};
pub use server::{Orderer, run};

/// Seconds since the Unix epoch by the local clock: the validation time of identities on the
/// service path (0 if the clock is before 1970).
pub(crate) fn now_unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
