//! Per-channel ledger of a node: block store, world state, key history and tx-id index on
//! redb, plus the orderer's Raft log store. This crate is the only user of redb. [`metrics`]
//! holds the node's process-wide metrics and health checks, shared by the peer and the orderer.
//!
//! # Files
//!
//! A node keeps each channel in its own directory (the caller picks
//! `<node data>/channels/<channel_id>`): [`Ledger`] owns `<dir>/ledger.redb`, [`RaftStore`]
//! owns `<dir>/raft.redb`. Each file carries a schema-version key checked on open.
//! [`LedgerReader`] reads a stopped node's `ledger.redb` without writing it, for offline
//! verification and comparison.
//!
//! The `testing` feature adds functions that damage a ledger file on purpose
//! (`tamper_state_value`, `tamper_block_bytes`, `truncate_blocks`), for the verifier's
//! tests; nodes never enable it.
//!
//! # Invariants
//!
//! - Invariant: one block is one redb write transaction. The block bytes, its header hash, the
//!   hash and tx-id indexes, the world-state writes, the key history and the new height are
//!   committed together with redb's default (immediate) durability, so once `append_block` or
//!   `commit_block` returns the block survives a `kill -9`, and a block whose commit was cut
//!   short by a crash is entirely absent after restart. There is no partial block to repair:
//!   recovery is the caller fetching and committing the block at [`Ledger::height`] again.
//! - Invariant: a block is checked before it is written (number equals the height,
//!   `previous_hash` equals the tip's header hash, `data_hash` matches its data) and again
//!   when it is read (header hash equals the one recorded for its number, `previous_hash`
//!   equals the one recorded for the block before, `data_hash` matches). On open the tip block
//!   is verified against the recorded height and hashes.
//! - Invariant: blocks are served as the bytes stored at append time, never re-encoded.
//! - Invariant: the tx-id index keeps the first occurrence of an id; a later duplicate (which
//!   the validator marks `DUPLICATE_TXID`) never replaces it.
//! - Invariant: only `VALID` transactions change the world state and the key history.
//! - Invariant: private values (the `ns$$pcoll` namespaces) never enter the key history;
//!   their expiry (`block_to_live`) and the removal of a committed block's transient private
//!   data happen in the block's write transaction.

/// redb page cache of a channel's ledger file. redb's default (1 GiB) would let one busy
/// channel grow a peer far past its memory budget (DESIGN.md: peer ≤ 256 MiB).
pub const LEDGER_CACHE_BYTES: usize = 32 * 1024 * 1024;
/// redb page cache of a channel's Raft log file.
pub const RAFT_CACHE_BYTES: usize = 8 * 1024 * 1024;

pub mod certificate_expiry;
mod error;
pub mod metrics;
mod raft;
mod reader;
mod state;
mod store;
mod tables;
pub mod utc;

pub use error::LedgerError;
pub use raft::{HardState, RAFT_FILE, RaftEntry, RaftSnapshotMeta, RaftStore};
pub use reader::{
    LedgerReader, PRIVATE_NAMESPACE_MARKER, StateEntry, StateHasher, StoredBlock,
    is_private_namespace,
};
#[cfg(feature = "testing")]
pub use reader::{tamper_block_bytes, tamper_state_value, truncate_blocks};
pub use state::{
    BlockUpdates, Expiry, HistoryEntry, MetadataWrite, MissingPrivateData, PrivateSet,
    ReconciledPrivateData, ReconciledWrite, StateSnapshot, StateWrite, TxUpdates, Version,
    VersionedValue,
};
pub use store::{ChainInfo, LEDGER_FILE, Ledger, TRANSIENT_RETENTION_BLOCKS, TxLocation};
pub use tables::SCHEMA_VERSION;

// The handles are shared across tasks and threads by the peer and orderer: keep them so.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Ledger>();
    send_sync::<RaftStore>();
    send_sync::<StateSnapshot>();
};
