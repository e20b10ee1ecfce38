//! The ledger's one error type, [`LedgerError`], and its conversions from redb's errors.
//!
//! Callers branch on the variants: a committer that gets [`LedgerError::WrongNumber`] knows it
//! is behind or ahead, one that gets [`LedgerError::BrokenChain`] knows the block does not
//! belong on this chain, and [`LedgerError::Corrupt`] means a human must look at the file.

use std::path::PathBuf;

/// Everything that can go wrong opening, reading or writing a channel ledger or a Raft log.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The ledger was closed while a caller waited for a transaction to commit.
    #[error("the ledger was closed while waiting for the transaction to commit")]
    Closed,
    /// The block's number is not the ledger height (the next number to append).
    #[error("block number {got} cannot be appended: the ledger expects block {expected} next")]
    WrongNumber {
        /// The ledger height: the only number that may be appended.
        expected: u64,
        /// The number in the block header.
        got: u64,
    },
    /// The block's `previous_hash` is not the header hash of the block before it (on write), or
    /// a stored block no longer matches the header hashes recorded for the chain (on read).
    #[error(
        "block {block} does not chain: its previous_hash or header hash does not match the chain"
    )]
    BrokenChain {
        /// The number of the block that does not chain.
        block: u64,
    },
    /// The block's `data_hash` is not the SHA-256 of its envelopes.
    #[error("block {block} has a data_hash that is not the hash of its data")]
    BadDataHash {
        /// The number of the offending block.
        block: u64,
    },
    /// The block has no header, so it has no number or hashes to check.
    #[error("block has no header")]
    MissingHeader,
    /// The `BlockUpdates` passed to `commit_block` do not fit the block.
    #[error("updates for block {block} are invalid: {reason}")]
    InvalidUpdates {
        /// The block being committed.
        block: u64,
        /// What is wrong with the updates.
        reason: String,
    },
    /// The ledger file was created for another channel.
    #[error("the ledger at {path} belongs to channel {found:?}, not {expected:?}")]
    WrongChannel {
        /// The file that was opened.
        path: PathBuf,
        /// The channel the caller asked for.
        expected: String,
        /// The channel recorded in the file.
        found: String,
    },
    /// The file was written with a different on-disk layout than this build reads.
    #[error(
        "{path} has schema version {found}, this build reads version {expected}; \
         it was written by another GridLedger version"
    )]
    SchemaVersion {
        /// The file that was opened.
        path: PathBuf,
        /// The version recorded in the file.
        found: u64,
        /// The version this build writes and reads.
        expected: u64,
    },
    /// Stored data is not what this crate wrote: undecodable bytes, a missing record, a bad
    /// length. The file was damaged or edited outside GridLedger.
    #[error("ledger data is corrupt: {what}")]
    Corrupt {
        /// What was found to be wrong, naming the record.
        what: String,
    },
    /// Raft log entries passed to `RaftStore::append` do not extend the log.
    #[error("raft log: {reason}")]
    RaftLog {
        /// Why the entries were refused.
        reason: String,
    },
    /// There is no ledger file where one was expected.
    #[error("{path} does not exist: this is not a channel ledger directory")]
    NotALedger {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// A running node holds the ledger file (it is locked), so it cannot be opened read-only.
    #[error("{path} is in use by a running node: stop the node first")]
    InUse {
        /// The locked file.
        path: PathBuf,
    },
    /// The storage engine or the file system failed (I/O, locking, a file that is not a redb
    /// database).
    #[error("ledger storage failed: {0}")]
    Storage(String),
}

impl LedgerError {
    /// A [`LedgerError::Corrupt`] with the given description.
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        LedgerError::Corrupt { what: what.into() }
    }
}

impl From<redb::StorageError> for LedgerError {
    fn from(e: redb::StorageError) -> Self {
        match e {
            redb::StorageError::Corrupted(msg) => LedgerError::corrupt(format!("redb: {msg}")),
            // redb reports a file that is not one of its databases as invalid data.
            redb::StorageError::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
                LedgerError::corrupt(io.to_string())
            }
            other => LedgerError::Storage(other.to_string()),
        }
    }
}

impl From<redb::DatabaseError> for LedgerError {
    fn from(e: redb::DatabaseError) -> Self {
        match e {
            redb::DatabaseError::Storage(s) => s.into(),
            other => LedgerError::Storage(other.to_string()),
        }
    }
}

impl From<redb::TransactionError> for LedgerError {
    fn from(e: redb::TransactionError) -> Self {
        match e {
            redb::TransactionError::Storage(s) => s.into(),
            other => LedgerError::Storage(other.to_string()),
        }
    }
}

impl From<redb::TableError> for LedgerError {
    fn from(e: redb::TableError) -> Self {
        match e {
            redb::TableError::Storage(s) => s.into(),
            other => LedgerError::Storage(other.to_string()),
        }
    }
}

impl From<redb::CommitError> for LedgerError {
    fn from(e: redb::CommitError) -> Self {
        match e {
            redb::CommitError::Storage(s) => s.into(),
            other => LedgerError::Storage(other.to_string()),
        }
    }
}
