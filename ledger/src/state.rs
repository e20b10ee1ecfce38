//! World state and key history as seen through a [`StateSnapshot`], and the write set a
//! committer hands to `Ledger::commit_block` ([`BlockUpdates`]).
//!
//! A snapshot is a redb read transaction: it sees the state exactly as of the block that was
//! last committed when it was taken, however many blocks are committed while it lives. The
//! endorser simulates against one, and the validator's MVCC check reads through one.

use prost_types::Timestamp;
use redb::{ReadOnlyTable, ReadTransaction};

use crate::error::LedgerError;
use crate::tables::{self, HistoryKey, HistoryValue, META, StateKey, StateValue};

/// The version of a key in the world state: the transaction that last wrote it, like Fabric's
/// `kvrwset.Version`. Ordered by block, then by transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Version {
    /// The number of the block holding the writing transaction.
    pub block_num: u64,
    /// The transaction's position within that block.
    pub tx_num: u64,
}

/// A world-state value with the version of the transaction that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedValue {
    /// The value bytes as the chaincode wrote them.
    pub value: Vec<u8>,
    /// The writing transaction.
    pub version: Version,
}

/// One write of the key history, as returned by [`StateSnapshot::history`].
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// The transaction that made the write.
    pub tx_id: String,
    /// The value written, or `None` when the transaction deleted the key.
    pub value: Option<Vec<u8>>,
    /// The timestamp of the transaction's channel header, when it had one.
    pub timestamp: Option<Timestamp>,
    /// Where the transaction is in the chain.
    pub version: Version,
}

/// Everything `Ledger::commit_block` records beside the block itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlockUpdates {
    /// One entry per transaction of the block that has a tx id, valid or not.
    pub txs: Vec<TxUpdates>,
}

/// The outcome of validating one transaction of a block.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TxUpdates {
    /// The transaction's position in the block's data.
    pub tx_num: u64,
    /// The transaction id from its channel header; indexed for duplicate detection and lookups.
    pub tx_id: String,
    /// Fabric's `TxValidationCode` as a byte; only `VALID` (0) transactions' writes are applied.
    pub validation_code: u8,
    /// The channel header's timestamp, kept in the key history.
    pub timestamp: Option<Timestamp>,
    /// The transaction's writes in the order to apply them (a later write of a key wins).
    pub writes: Vec<StateWrite>,
    /// The transaction's key-metadata writes, applied after `writes`.
    pub metadata_writes: Vec<MetadataWrite>,
    /// Private values of the transaction's collections (derived `ns$$pcoll` namespaces),
    /// applied after `writes` like them but without key history: private data never enters
    /// the history index. A `None` value (delete or purge) removes the key.
    pub private_writes: Vec<StateWrite>,
    /// Keys this transaction writes that expire (a collection's `block_to_live`): each is
    /// removed from the world state when block `expire_at` commits, unless a later
    /// transaction wrote it again.
    pub expiries: Vec<Expiry>,
    /// The private write sets this peer keeps of the transaction, one per collection, as the
    /// block's `pvt_rwset_hash` covers them: kept (by block, tx and derived namespace) so
    /// member peers that missed them can fetch them later. Removed when one of their keys is
    /// purged or expires.
    pub private_sets: Vec<PrivateSet>,
    /// Private keys this transaction purges (derived namespace, key): every kept private
    /// write set holding the key is removed.
    pub purges: Vec<(String, String)>,
}

/// One collection's private write set of a transaction (see [`TxUpdates::private_sets`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrivateSet {
    /// The derived private namespace `ns$$pcoll`.
    pub namespace: String,
    /// The encoded `kvrwset.KVRWSet` exactly as its hash is in the block.
    pub rwset: Vec<u8>,
    /// The keys it writes.
    pub keys: Vec<String>,
}

/// A key written by a transaction that expires when block `expire_at` commits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expiry {
    /// The (derived) namespace of the key.
    pub namespace: String,
    /// The key.
    pub key: String,
    /// The block whose commit removes the key: written at block `b` with `block_to_live`
    /// `n`, the key is readable up to block `b + n` and expires at `b + n + 1`, as in Fabric.
    pub expire_at: u64,
}

/// One key-metadata write of a transaction (Fabric's `KVMetadataWrite`).
///
/// Applied after the transaction's value writes: when the key then exists, its metadata is
/// replaced (removed when `metadata` is `None` or empty) and the key takes the transaction's
/// version with its value unchanged; a write to a key that does not exist is dropped. A value
/// write keeps the key's metadata; a delete removes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataWrite {
    /// The chaincode namespace.
    pub namespace: String,
    /// The key within the namespace.
    pub key: String,
    /// The encoded metadata; the ledger does not interpret it.
    pub metadata: Option<Vec<u8>>,
    /// For a private value (`ns$$pcoll`): the key's hash row (`ns$$hcoll`, hex key hash). The
    /// write then applies only when the value is current — its version is that of the hash
    /// row just before this transaction, or this transaction wrote the value — so a member
    /// that missed an earlier write of the key never gives a stale value the new version.
    pub current_with: Option<(String, String)>,
}

/// A valid transaction whose private data a member peer did not find when it committed the
/// block (it committed the hashes alone): kept until the data is found and stored, its
/// hashes are overwritten, expire or are purged, or the retries run out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MissingPrivateData {
    /// The block holding the transaction.
    pub block: u64,
    /// The transaction's position in the block.
    pub tx_num: u64,
    /// The transaction id (what other member peers are asked for).
    pub tx_id: String,
    /// What the data must match (the peer's encoding; opaque to the ledger).
    pub expected: Vec<u8>,
    /// How many times the data was looked for since the commit.
    pub attempts: u32,
    /// Unix seconds before which it is not looked for again.
    pub next_attempt: u64,
}

/// A private write found after its transaction committed, with the key's hash row
/// (`ns$$hcoll`, hex key hash): a value is stored only while that row still has the
/// transaction's version, so data overwritten, expired or purged since is never revived.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconciledWrite {
    /// The private value write (`ns$$pcoll`, key, value or `None` for a delete).
    pub write: StateWrite,
    /// The key's hash row.
    pub hash_row: (String, String),
}

/// The private data of one transaction found after its block committed (see
/// [`crate::Ledger::reconcile_private_data`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconciledPrivateData {
    /// Private value writes, each with its key's hash row.
    pub writes: Vec<ReconciledWrite>,
    /// Private key-metadata writes: applied to values this reconciliation stored.
    pub metadata_writes: Vec<MetadataWrite>,
    /// The collections' private write sets, each with the hash rows of the keys it puts:
    /// kept (to serve other members) only when every one of them still holds.
    pub sets: Vec<(PrivateSet, Vec<(String, String)>)>,
    /// Expiry of the stored values (`block_to_live`), applied for values stored.
    pub expiries: Vec<Expiry>,
}

/// One write of a transaction's write set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateWrite {
    /// The chaincode namespace.
    pub namespace: String,
    /// The key within the namespace.
    pub key: String,
    /// The new value, or `None` to delete the key.
    pub value: Option<Vec<u8>>,
}

/// A consistent read-only view of one channel's world state and key history.
///
/// `Send + Sync`: validation threads may share one by reference.
///
/// Holds a redb read transaction; drop it promptly, because pages it can see are not reused
/// until it is gone.
pub struct StateSnapshot {
    height: u64,
    state: ReadOnlyTable<StateKey, StateValue>,
    history: ReadOnlyTable<HistoryKey, HistoryValue>,
    metadata: ReadOnlyTable<StateKey, &'static [u8]>,
    // Declared last so the tables close before the transaction.
    _txn: ReadTransaction,
}

impl std::fmt::Debug for StateSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSnapshot")
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

impl StateSnapshot {
    /// Opens the state tables of a read transaction.
    pub(crate) fn new(txn: ReadTransaction) -> Result<Self, LedgerError> {
        let meta = txn.open_table(META)?;
        let height = tables::read_u64(&meta, tables::META_HEIGHT)?.unwrap_or(0);
        drop(meta);
        let state = txn.open_table(tables::STATE)?;
        let history = txn.open_table(tables::HISTORY)?;
        let metadata = txn.open_table(tables::STATE_METADATA)?;
        Ok(StateSnapshot {
            height,
            state,
            history,
            metadata,
            _txn: txn,
        })
    }

    /// The ledger height this view reflects: blocks `0..height` are committed in it.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The current value and version of `key` in `namespace`, or `None` if it was never
    /// written or was deleted.
    pub fn get(&self, namespace: &str, key: &str) -> Result<Option<VersionedValue>, LedgerError> {
        let Some(guard) = self.state.get((namespace, key))? else {
            return Ok(None);
        };
        let (block_num, tx_num, value) = guard.value();
        Ok(Some(VersionedValue {
            value: value.to_vec(),
            version: Version { block_num, tx_num },
        }))
    }

    /// The metadata bytes of `key` in `namespace` (see [`MetadataWrite`]), or `None` when the
    /// key does not exist or has no metadata.
    pub fn metadata(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self
            .metadata
            .get((namespace, key))?
            .map(|guard| guard.value().to_vec()))
    }

    /// The keys of `namespace` in `[start, end)` in byte order with their values, at most
    /// `limit` of them. An empty `end` means no upper bound; `limit == 0` returns nothing.
    pub fn range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, VersionedValue)>, LedgerError> {
        let mut out = Vec::new();
        if limit == 0 || (!end.is_empty() && start >= end) {
            return Ok(out);
        }
        for item in self.state.range((namespace, start)..)? {
            let (k, v) = item?;
            let (ns, key) = k.value();
            if ns != namespace || (!end.is_empty() && key >= end) {
                break;
            }
            let (block_num, tx_num, value) = v.value();
            out.push((
                key.to_owned(),
                VersionedValue {
                    value: value.to_vec(),
                    version: Version { block_num, tx_num },
                },
            ));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// The writes of `key` in `namespace` by valid transactions, newest first, at most `limit`.
    pub fn history(
        &self,
        namespace: &str,
        key: &str,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, LedgerError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let range = self
            .history
            .range((namespace, key, 0u64, 0u64)..=(namespace, key, u64::MAX, u64::MAX))?;
        for item in range.rev() {
            let (k, v) = item?;
            let (_, _, block_num, tx_num) = k.value();
            let (tx_id, value, timestamp) = v.value();
            out.push(HistoryEntry {
                tx_id: tx_id.to_owned(),
                value: value.map(<[u8]>::to_vec),
                timestamp: timestamp.map(|(seconds, nanos)| Timestamp { seconds, nanos }),
                version: Version { block_num, tx_num },
            });
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }
}
