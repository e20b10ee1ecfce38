//! [`Ledger`]: one channel's block store, tx-id index, world state and key history in
//! `<dir>/ledger.redb`, with the hash chain checked when a block is written and when it is read.
//!
//! A block write that fails in the storage (a full disk, an I/O error) leaves the chain at the
//! block before: redb refuses every later operation on that database, so the file is closed
//! and opened again (redb rolls it back to its last durable commit), and
//! [`Ledger::write_failure`] says what failed until a block is written again.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use gridledger_proto::common::{
    Block, BlockData, BlockHeader, BlockMetadataIndex, ChannelHeader, Envelope, Payload,
};
use gridledger_proto::protos::TxValidationCode;
use gridledger_proto::{block_data_hash, block_header_hash};
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction};
use tokio::sync::{oneshot, watch};

use crate::error::LedgerError;
use crate::state::{BlockUpdates, MissingPrivateData, ReconciledPrivateData, StateSnapshot};
use crate::tables::{
    self, BLOCK_HASHES, BLOCKS, HASH_INDEX, HISTORY, META, META_CHANNEL, META_HEIGHT,
    META_PREVIOUS_HASH, META_SCHEMA, META_TIP_HASH, PVT_DATA, PVT_DATA_KEYS, PVT_EXPIRY,
    PVT_MISSING, SCHEMA_VERSION, SCHEMA_VERSION_WITHOUT_METADATA, SCHEMA_VERSION_WITHOUT_MISSING,
    SCHEMA_VERSION_WITHOUT_PRIVATE_DATA, STATE, STATE_METADATA, TRANSIENT, TRANSIENT_BY_HEIGHT,
    TX_INDEX,
};

/// How many blocks a transient store entry outlives its arrival when no block commits its
/// transaction (Fabric's `transientstoreMaxBlockRetention` default).
pub const TRANSIENT_RETENTION_BLOCKS: u64 = 1000;

/// Name of the ledger file inside a channel's directory.
pub const LEDGER_FILE: &str = "ledger.redb";

/// Where a transaction is in the chain and how it was validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxLocation {
    /// The number of the block holding the transaction.
    pub block_num: u64,
    /// The transaction's position in the block's data.
    pub tx_num: u64,
    /// Fabric's `TxValidationCode` recorded for it (254, `NOT_VALIDATED`, on an orderer's ledger).
    pub validation_code: u8,
}

/// The chain summary Fabric's `qscc GetChainInfo` returns (`common.BlockchainInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChainInfo {
    /// The number of blocks; the next block appended must have this number.
    pub height: u64,
    /// The header hash of the last block (empty when there is none).
    pub current_block_hash: Vec<u8>,
    /// The `previous_hash` of the last block (empty for a chain of zero or one block).
    pub previous_block_hash: Vec<u8>,
}

/// One channel's ledger on one node, in `<dir>/ledger.redb`.
///
/// `Send + Sync`: share it through an `Arc`. Writes are serialised internally; reads and
/// snapshots run concurrently with them.
pub struct Ledger {
    /// The redb file. Transactions are begun under the read lock; [`Ledger::compact`] takes
    /// the write lock (redb compacts only through `&mut Database`).
    db: RwLock<Database>,
    /// Private data was purged and the file still holds freed pages with the old bytes:
    /// compact at the next opportunity.
    compaction_pending: AtomicBool,
    path: PathBuf,
    channel_id: String,
    /// The chain summary as of the last commit. Held for the whole of a write so that two
    /// writers cannot both append the same number.
    info: Mutex<ChainInfo>,
    height_tx: watch::Sender<u64>,
    /// Callers of [`Ledger::committed_tx`] waiting for a transaction id, answered by the
    /// commit that indexes it: one map lookup per committed transaction, instead of every
    /// waiter reading the index again after every block.
    tx_waiters: Mutex<HashMap<String, Vec<oneshot::Sender<TxLocation>>>>,
    /// Why the last block write failed (see [`Ledger::write_failure`]).
    write_failure: Mutex<Option<String>>,
    /// A write failed in the storage and the file could not be opened again since: `db` is a
    /// stand-in that holds nothing, and the next write opens the file first.
    reopen_pending: AtomicBool,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.path)
            .field("channel_id", &self.channel_id)
            .field("height", &self.height())
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens the ledger of `channel_id` in `dir`, creating the directory and the file if they
    /// do not exist.
    ///
    /// Fails with [`LedgerError::SchemaVersion`] if the file has another layout version, with
    /// [`LedgerError::WrongChannel`] if it belongs to another channel, and with
    /// [`LedgerError::Corrupt`] / [`LedgerError::BrokenChain`] / [`LedgerError::BadDataHash`]
    /// if the last block does not verify against the recorded tip.
    pub fn open(dir: &Path, channel_id: &str) -> Result<Ledger, LedgerError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            LedgerError::Storage(format!(
                "cannot create ledger directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(LEDGER_FILE);
        let (db, info) = open_file(&path, channel_id)?;
        let (height_tx, _) = watch::channel(info.height);
        Ok(Ledger {
            db: RwLock::new(db),
            compaction_pending: AtomicBool::new(false),
            path,
            channel_id: channel_id.to_owned(),
            info: Mutex::new(info),
            height_tx,
            tx_waiters: Mutex::default(),
            write_failure: Mutex::default(),
            reopen_pending: AtomicBool::new(false),
        })
    }

    /// Why the last block could not be written, while no later block has been: the ledger
    /// keeps the chain as of the block before and the committer retries. `None` when the last
    /// write succeeded. The health check reports it.
    pub fn write_failure(&self) -> Option<String> {
        self.write_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The channel this ledger belongs to.
    pub fn channel_id(&self) -> &str {
        &self.channel_id
    }

    /// The number of blocks committed.
    pub fn height(&self) -> u64 {
        self.lock_info().height
    }

    /// Height and the hashes of the last block.
    pub fn info(&self) -> ChainInfo {
        self.lock_info().clone()
    }

    /// The bytes of block `number` exactly as stored when it was appended, after checking them
    /// against the chain: the header hash recorded for `number`, the header hash of block
    /// `number - 1` and the data hash. `None` if the block is not (yet) in the ledger.
    pub fn block_bytes(&self, number: u64) -> Result<Option<Vec<u8>>, LedgerError> {
        let txn = self.db().begin_read()?;
        Ok(read_verified_block(&txn, number)?.map(|(bytes, _)| bytes))
    }

    /// Block `number`, decoded, after the same checks as [`Ledger::block_bytes`].
    pub fn block(&self, number: u64) -> Result<Option<Block>, LedgerError> {
        let txn = self.db().begin_read()?;
        Ok(read_verified_block(&txn, number)?.map(|(_, block)| block))
    }

    /// The number of the block whose header hash is `header_hash`.
    pub fn block_number_by_hash(&self, header_hash: &[u8]) -> Result<Option<u64>, LedgerError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(HASH_INDEX)?;
        Ok(table.get(header_hash)?.map(|g| g.value()))
    }

    /// Where the first transaction with id `tx_id` is in the chain.
    pub fn tx_location(&self, tx_id: &str) -> Result<Option<TxLocation>, LedgerError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(TX_INDEX)?;
        Ok(table.get(tx_id)?.map(|g| {
            let (block_num, tx_num, validation_code) = g.value();
            TxLocation {
                block_num,
                tx_num,
                validation_code,
            }
        }))
    }

    /// Where transaction `tx_id` is in the chain, waiting until a block holding it commits
    /// (the Gateway's CommitStatus). Dropping the future abandons the wait; the registration
    /// is removed by a later commit.
    pub async fn committed_tx(&self, tx_id: &str) -> Result<TxLocation, LedgerError> {
        let (sender, receiver) = oneshot::channel();
        // Registered before the index is read: a commit between the two answers the waiter.
        self.lock_waiters()
            .entry(tx_id.to_owned())
            .or_default()
            .push(sender);
        if let Some(location) = self.tx_location(tx_id)? {
            return Ok(location);
        }
        receiver.await.map_err(|_| LedgerError::Closed)
    }

    fn lock_waiters(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Vec<oneshot::Sender<TxLocation>>>> {
        // Only inserts and removals happen under the lock: a poisoned map is still consistent.
        self.tx_waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Answers the waiters of the transactions block `number` indexed (the first occurrence
    /// of an id, as the index keeps), and forgets abandoned waits.
    fn notify_waiters(&self, number: u64, txs: &[(u64, Cow<'_, str>, u8)]) {
        let mut waiters = self.lock_waiters();
        if waiters.is_empty() {
            return;
        }
        for (tx_num, tx_id, validation_code) in txs {
            if let Some(senders) = waiters.remove(tx_id.as_ref()) {
                for sender in senders {
                    let _ = sender.send(TxLocation {
                        block_num: number,
                        tx_num: *tx_num,
                        validation_code: *validation_code,
                    });
                }
            }
        }
        waiters.retain(|_, senders| {
            senders.retain(|s| !s.is_closed());
            !senders.is_empty()
        });
    }

    /// Appends a block without touching the world state (the orderer's ledger).
    ///
    /// Checks that its number is the height, that its `previous_hash` is the header hash of the
    /// last block (empty for block 0) and that its `data_hash` matches its data; on any
    /// failure nothing is written. Every envelope whose channel header carries a tx id is
    /// indexed, with the code from the block's `TRANSACTIONS_FILTER` metadata, or
    /// `NOT_VALIDATED` (254) when the block has none.
    pub fn append_block(&self, block: &Block) -> Result<(), LedgerError> {
        let header = block.header.as_ref().ok_or(LedgerError::MissingHeader)?;
        let txs = envelope_tx_ids(block);
        self.write_block(block, header, &txs, None)
    }

    /// Commits a validated block (the peer's ledger) in one atomic write: the block as given
    /// (its `TRANSACTIONS_FILTER` already filled), the tx-id index for every transaction in
    /// `updates` (first occurrence of an id wins, later duplicates are not indexed), and for
    /// the `VALID` ones their writes to the world state at version (block, tx_num) plus key
    /// history entries. Same chain checks as [`Ledger::append_block`]; every `tx_num` must be
    /// a position in the block.
    pub fn commit_block(&self, block: &Block, updates: &BlockUpdates) -> Result<(), LedgerError> {
        self.commit_block_with_missing(block, updates, &[])
    }

    /// [`Ledger::commit_block`], recording in the same write the transactions whose private
    /// data this member peer lacks (`missing`), for the reconciler to look for later.
    pub fn commit_block_with_missing(
        &self,
        block: &Block,
        updates: &BlockUpdates,
        missing: &[MissingPrivateData],
    ) -> Result<(), LedgerError> {
        let header = block.header.as_ref().ok_or(LedgerError::MissingHeader)?;
        let tx_count = block.data.as_ref().map_or(0, |d| d.data.len() as u64);
        for tx in &updates.txs {
            if tx.tx_num >= tx_count {
                return Err(LedgerError::InvalidUpdates {
                    block: header.number,
                    reason: format!(
                        "tx {} has tx_num {} but the block holds {tx_count} transactions",
                        tx.tx_id, tx.tx_num
                    ),
                });
            }
        }
        let txs: Vec<(u64, Cow<'_, str>, u8)> = updates
            .txs
            .iter()
            .map(|t| (t.tx_num, Cow::Borrowed(t.tx_id.as_str()), t.validation_code))
            .collect();
        self.write_block(block, header, &txs, Some((updates, missing)))
    }

    /// The transactions whose private data this member peer still lacks, in block order.
    pub fn missing_private_data(&self) -> Result<Vec<MissingPrivateData>, LedgerError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(PVT_MISSING)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (block, tx_num) = key.value();
            let (tx_id, expected, attempts, next_attempt) = value.value();
            out.push(MissingPrivateData {
                block,
                tx_num,
                tx_id: tx_id.to_owned(),
                expected: expected.to_vec(),
                attempts,
                next_attempt,
            });
        }
        Ok(out)
    }

    /// Records another failed attempt at the missing private data of (block, tx): its attempt
    /// count and when to try next.
    pub fn retry_missing_private_data(
        &self,
        block: u64,
        tx_num: u64,
        attempts: u32,
        next_attempt: u64,
    ) -> Result<(), LedgerError> {
        let txn = self.db().begin_write()?;
        {
            let mut table = txn.open_table(PVT_MISSING)?;
            let found = table.get((block, tx_num))?.map(|g| {
                let (tx_id, expected, _, _) = g.value();
                (tx_id.to_owned(), expected.to_vec())
            });
            if let Some((tx_id, expected)) = found {
                table.insert(
                    (block, tx_num),
                    (tx_id.as_str(), expected.as_slice(), attempts, next_attempt),
                )?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Stops looking for the private data of (block, tx) (given up, or no longer needed).
    pub fn forget_missing_private_data(&self, block: u64, tx_num: u64) -> Result<(), LedgerError> {
        let txn = self.db().begin_write()?;
        txn.open_table(PVT_MISSING)?.remove((block, tx_num))?;
        txn.commit()?;
        Ok(())
    }

    /// Stores the private data of transaction (block, tx) found after the block committed,
    /// and forgets it as missing, in one write. A value is stored at the transaction's
    /// version only while its key's hash row still has that version (not overwritten,
    /// expired or purged since); a delete removes an older value. Returns how many values
    /// were stored.
    pub fn reconcile_private_data(
        &self,
        block: u64,
        tx_num: u64,
        data: &ReconciledPrivateData,
    ) -> Result<usize, LedgerError> {
        let at = (block, tx_num);
        let txn = self.db().begin_write()?;
        let mut stored = std::collections::BTreeSet::new();
        {
            let mut state = txn.open_table(STATE)?;
            let mut metadata = txn.open_table(STATE_METADATA)?;
            let mut expiry = txn.open_table(PVT_EXPIRY)?;
            let mut pvt_data = txn.open_table(PVT_DATA)?;
            let mut pvt_keys = txn.open_table(PVT_DATA_KEYS)?;
            let version_of = |state: &redb::Table<'_, tables::StateKey, tables::StateValue>,
                              ns: &str,
                              key: &str|
             -> Result<Option<(u64, u64)>, LedgerError> {
                Ok(state.get((ns, key))?.map(|g| (g.value().0, g.value().1)))
            };
            for w in &data.writes {
                let (hash_ns, hash_key) = &w.hash_row;
                let key = (w.write.namespace.as_str(), w.write.key.as_str());
                match &w.write.value {
                    Some(value) => {
                        if version_of(&state, hash_ns, hash_key)? == Some(at) {
                            state.insert(key, (block, tx_num, value.as_slice()))?;
                            stored.insert((w.write.namespace.clone(), w.write.key.clone()));
                        }
                    }
                    None => {
                        if version_of(&state, key.0, key.1)?.is_some_and(|v| v < at) {
                            state.remove(key)?;
                            metadata.remove(key)?;
                        }
                    }
                }
            }
            for m in &data.metadata_writes {
                if !stored.contains(&(m.namespace.clone(), m.key.clone())) {
                    continue;
                }
                let key = (m.namespace.as_str(), m.key.as_str());
                match m.metadata.as_deref().filter(|bytes| !bytes.is_empty()) {
                    Some(bytes) => {
                        metadata.insert(key, bytes)?;
                    }
                    None => {
                        metadata.remove(key)?;
                    }
                }
            }
            for e in &data.expiries {
                if stored.contains(&(e.namespace.clone(), e.key.clone())) {
                    expiry.insert(
                        (e.expire_at, e.namespace.as_str(), e.key.as_str()),
                        (block, tx_num),
                    )?;
                }
            }
            for (set, hash_rows) in &data.sets {
                let mut all_hold = true;
                for (ns, key) in hash_rows {
                    all_hold &= version_of(&state, ns, key)? == Some(at);
                }
                if !all_hold {
                    continue;
                }
                pvt_data.insert(
                    (block, tx_num, set.namespace.as_str()),
                    set.rwset.as_slice(),
                )?;
                for key in &set.keys {
                    pvt_keys.insert((set.namespace.as_str(), key.as_str(), block, tx_num), ())?;
                }
            }
            txn.open_table(PVT_MISSING)?.remove((block, tx_num))?;
        }
        txn.commit()?;
        Ok(stored.len())
    }

    /// Keeps the private read-write set (`rwset.TxPvtReadWriteSet` bytes) of transaction
    /// `tx_id` in the transient store until a block holding the transaction commits or
    /// [`TRANSIENT_RETENTION_BLOCKS`] blocks pass. The same bytes twice are kept once.
    pub fn persist_transient(&self, tx_id: &str, pvt_rwset: &[u8]) -> Result<(), LedgerError> {
        let digest = gridledger_proto::blockutil::sha256(pvt_rwset);
        let height = self.height();
        let txn = self.db().begin_write()?;
        {
            let mut transient = txn.open_table(TRANSIENT)?;
            if transient.get((tx_id, digest.as_slice()))?.is_none() {
                transient.insert((tx_id, digest.as_slice()), (height, pvt_rwset))?;
                txn.open_table(TRANSIENT_BY_HEIGHT)?
                    .insert((height, tx_id, digest.as_slice()), ())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The private read-write sets the transient store holds for `tx_id` (one per distinct
    /// content received), oldest arrival first.
    pub fn transient(&self, tx_id: &str) -> Result<Vec<Vec<u8>>, LedgerError> {
        let txn = self.db().begin_read()?;
        let transient = txn.open_table(TRANSIENT)?;
        let mut found = Vec::new();
        for entry in transient.range((tx_id, [].as_slice())..)? {
            let (key, value) = entry?;
            if key.value().0 != tx_id {
                break;
            }
            let (height, bytes) = value.value();
            found.push((height, bytes.to_vec()));
        }
        found.sort_by_key(|(height, _)| *height);
        Ok(found.into_iter().map(|(_, bytes)| bytes).collect())
    }

    /// The committed private write sets this peer kept of transaction `tx_id`: (derived
    /// namespace `ns$$pcoll`, encoded `KVRWSet`) — none when the transaction is unknown, kept
    /// nothing, or its sets were purged or expired.
    pub fn private_data(&self, tx_id: &str) -> Result<Vec<(String, Vec<u8>)>, LedgerError> {
        let Some(location) = self.tx_location(tx_id)? else {
            return Ok(Vec::new());
        };
        let txn = self.db().begin_read()?;
        let table = txn.open_table(PVT_DATA)?;
        let (block, tx) = (location.block_num, location.tx_num);
        let mut out = Vec::new();
        for entry in table.range((block, tx, "")..(block, tx + 1, ""))? {
            let (key, value) = entry?;
            out.push((key.value().2.to_owned(), value.value().to_vec()));
        }
        Ok(out)
    }

    /// A consistent read-only view of the world state at the current height; commits made
    /// while it lives are not visible through it.
    pub fn snapshot(&self) -> Result<StateSnapshot, LedgerError> {
        StateSnapshot::new(self.db().begin_read()?)
    }

    /// A receiver of the height, updated after every commit (for commit-status waiters and
    /// Deliver streams).
    pub fn subscribe_height(&self) -> watch::Receiver<u64> {
        self.height_tx.subscribe()
    }

    fn lock_info(&self) -> std::sync::MutexGuard<'_, ChainInfo> {
        // A panic while holding the lock cannot leave `ChainInfo` half-updated: it is replaced
        // in one assignment after the commit, so a poisoned lock still holds a valid value.
        self.info.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks `block` against the tip and writes it with its indexes in one transaction.
    fn write_block(
        &self,
        block: &Block,
        header: &BlockHeader,
        txs: &[(u64, Cow<'_, str>, u8)],
        updates: Option<(&BlockUpdates, &[MissingPrivateData])>,
    ) -> Result<(), LedgerError> {
        let mut info = self.lock_info();
        let number = header.number;
        if number != info.height {
            return Err(LedgerError::WrongNumber {
                expected: info.height,
                got: number,
            });
        }
        if header.previous_hash != info.current_block_hash {
            return Err(LedgerError::BrokenChain { block: number });
        }
        if header.data_hash != data_hash_of(block) {
            return Err(LedgerError::BadDataHash { block: number });
        }
        let header_hash = block_header_hash(header);
        // Encoded once; these bytes are what is stored and served from now on.
        let bytes = block.encode_to_vec();

        if self.reopen_pending.load(Ordering::Acquire) {
            self.reopen(&mut info)
                .map_err(|e| self.write_failed(number, e))?;
        }
        let written = (|| {
            let txn = self.db().begin_write()?;
            write_tables(&txn, number, &bytes, &header_hash, header, txs, updates)?;
            txn.commit()?;
            Ok::<(), LedgerError>(())
        })();
        if let Err(e) = written {
            let e = self.write_failed(number, e);
            if matches!(e, LedgerError::Storage(_)) {
                // redb fails every later operation on a file whose write failed (a full disk,
                // an I/O error): open it again, which rolls back to the last durable commit,
                // so the committer's retry finds a working ledger once the cause is gone.
                if let Err(reopen) = self.reopen(&mut info) {
                    tracing::error!(channel = %self.channel_id, path = %self.path.display(), error = %reopen, "the ledger file could not be opened again after a failed write; retrying at the next block");
                }
            }
            return Err(e);
        }
        *self
            .write_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;

        *info = ChainInfo {
            height: number + 1,
            current_block_hash: header_hash.to_vec(),
            previous_block_hash: header.previous_hash.clone(),
        };
        let purged = updates.is_some_and(|(u, _)| u.txs.iter().any(|t| !t.purges.is_empty()));
        if purged || self.compaction_pending.load(Ordering::Acquire) {
            // Erased private values must not survive in freed pages of the file: compact
            // while no other transaction can begin a write (the chain lock is held).
            self.compact_for_erasure();
        }
        drop(info);
        self.height_tx.send_replace(number + 1);
        self.notify_waiters(number, txs);
        Ok(())
    }
}

impl Ledger {
    /// Records and logs that block `number` could not be written; returns the error.
    fn write_failed(&self, number: u64, e: LedgerError) -> LedgerError {
        if matches!(e, LedgerError::Storage(_)) {
            let reason = format!(
                "block {number} could not be written to {}: {e}",
                self.path.display()
            );
            tracing::error!(channel = %self.channel_id, block = number, error = %e, path = %self.path.display(), "ledger write failed; the chain stays at the previous block and the write is retried");
            *self
                .write_failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason);
        }
        e
    }

    /// Closes the database and opens its file again (redb rolls it back to its last durable
    /// commit), then takes the chain summary from the file. Until it succeeds the ledger holds
    /// an empty stand-in database and every read fails; `reopen_pending` stays set.
    fn reopen(&self, info: &mut ChainInfo) -> Result<(), LedgerError> {
        let mut db = self
            .db
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.reopen_pending.store(true, Ordering::Release);
        let stand_in = redb::Builder::new()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| LedgerError::Storage(format!("creating a stand-in database: {e}")))?;
        // Dropping the failed database releases the file's lock before it is opened again.
        drop(std::mem::replace(&mut *db, stand_in));
        let (reopened, on_disk) = open_file(&self.path, &self.channel_id)?;
        *db = reopened;
        self.reopen_pending.store(false, Ordering::Release);
        if on_disk != *info {
            tracing::warn!(channel = %self.channel_id, height = on_disk.height, previous = info.height, "the reopened ledger file is at another height than the failed write left it");
            self.height_tx.send_replace(on_disk.height);
            *info = on_disk;
        }
        tracing::info!(channel = %self.channel_id, height = info.height, path = %self.path.display(), "ledger file opened again after a failed write");
        Ok(())
    }

    /// The database, for beginning a transaction.
    fn db(&self) -> RwLockReadGuard<'_, Database> {
        // A panic while compacting leaves the database as redb left it; reads go on.
        self.db
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Compacts the file until redb can shrink it no more, so that the pages freed by a purge
    /// — which still hold the purged bytes — are overwritten or cut off. Needs a moment with
    /// no live snapshot: it retries briefly, and otherwise leaves the compaction pending for
    /// after the next commit. Returns whether the file is compact now.
    pub fn compact(&self) -> Result<bool, LedgerError> {
        for attempt in 0..COMPACTION_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(COMPACTION_RETRY);
            }
            let mut db = self
                .db
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut outcome = Ok(());
            loop {
                match db.compact() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
            }
            match outcome {
                Ok(()) => {
                    self.compaction_pending.store(false, Ordering::Release);
                    return Ok(true);
                }
                Err(redb::CompactionError::TransactionInProgress) => continue,
                Err(e) => {
                    return Err(LedgerError::Storage(format!(
                        "compacting {}: {e}",
                        self.path.display()
                    )));
                }
            }
        }
        self.compaction_pending.store(true, Ordering::Release);
        Ok(false)
    }

    /// [`Ledger::compact`] after a commit that purged: a failure is logged, the commit stands.
    fn compact_for_erasure(&self) {
        match self.compact() {
            Ok(true) => {
                tracing::info!(channel = %self.channel_id, "ledger file compacted after a purge of private data")
            }
            Ok(false) => {
                tracing::warn!(channel = %self.channel_id, "ledger file busy; compaction after a purge postponed to the next block")
            }
            Err(e) => {
                self.compaction_pending.store(true, Ordering::Release);
                tracing::error!(channel = %self.channel_id, error = %e, "compaction after a purge failed; retried at the next block");
            }
        }
    }
}

/// How often [`Ledger::compact`] tries while snapshots are live, and how long it waits between.
const COMPACTION_ATTEMPTS: usize = 40;
const COMPACTION_RETRY: std::time::Duration = std::time::Duration::from_millis(25);

/// Inserts a block, its indexes, its state updates and the new tip into `txn`.
fn write_tables(
    txn: &WriteTransaction,
    number: u64,
    bytes: &[u8],
    header_hash: &[u8; 32],
    header: &BlockHeader,
    txs: &[(u64, Cow<'_, str>, u8)],
    updates: Option<(&BlockUpdates, &[MissingPrivateData])>,
) -> Result<(), LedgerError> {
    txn.open_table(BLOCKS)?.insert(number, bytes)?;
    txn.open_table(BLOCK_HASHES)?
        .insert(number, header_hash.as_slice())?;
    txn.open_table(HASH_INDEX)?
        .insert(header_hash.as_slice(), number)?;
    {
        let mut index = txn.open_table(TX_INDEX)?;
        for (tx_num, tx_id, code) in txs {
            let (tx_num, tx_id, code) = (*tx_num, tx_id.as_ref(), *code);
            if tx_id.is_empty() || index.get(tx_id)?.is_some() {
                continue;
            }
            index.insert(tx_id, (number, tx_num, code))?;
        }
    }
    if let Some((updates, missing)) = updates {
        write_private_data(txn, number, updates)?;
        let mut missing_table = txn.open_table(PVT_MISSING)?;
        for m in missing {
            missing_table.insert(
                (m.block, m.tx_num),
                (
                    m.tx_id.as_str(),
                    m.expected.as_slice(),
                    m.attempts,
                    m.next_attempt,
                ),
            )?;
        }
        drop(missing_table);
        let mut state = txn.open_table(STATE)?;
        let mut metadata = txn.open_table(STATE_METADATA)?;
        let mut history = txn.open_table(HISTORY)?;
        for tx in updates
            .txs
            .iter()
            .filter(|t| t.validation_code == TxValidationCode::Valid as u8)
        {
            let timestamp = tx.timestamp.as_ref().map(|t| (t.seconds, t.nanos));
            // Hash rows guarding private metadata writes, as they are before this transaction.
            let mut guards: Vec<Option<(u64, u64)>> = Vec::with_capacity(tx.metadata_writes.len());
            for m in &tx.metadata_writes {
                let before = match &m.current_with {
                    Some((ns, key)) => state
                        .get((ns.as_str(), key.as_str()))?
                        .map(|g| (g.value().0, g.value().1)),
                    None => None,
                };
                guards.push(before);
            }
            for w in &tx.writes {
                let key = (w.namespace.as_str(), w.key.as_str());
                match &w.value {
                    Some(value) => {
                        // A value write keeps the key's metadata, as in Fabric.
                        state.insert(key, (number, tx.tx_num, value.as_slice()))?;
                    }
                    None => {
                        state.remove(key)?;
                        metadata.remove(key)?;
                    }
                }
                history.insert(
                    (w.namespace.as_str(), w.key.as_str(), number, tx.tx_num),
                    (tx.tx_id.as_str(), w.value.as_deref(), timestamp),
                )?;
            }
            // After the value writes: a metadata write to a key that does not exist (never
            // written, or deleted by this transaction) is dropped; otherwise it replaces the
            // metadata and the key takes this transaction's version, its value unchanged.
            for (m, before) in tx.metadata_writes.iter().zip(guards) {
                let key = (m.namespace.as_str(), m.key.as_str());
                let existing = state
                    .get(key)?
                    .map(|guard| ((guard.value().0, guard.value().1), guard.value().2.to_vec()));
                let Some((version, value)) = existing else {
                    continue;
                };
                if m.current_with.is_some()
                    && version != (number, tx.tx_num)
                    && Some(version) != before
                {
                    continue;
                }
                state.insert(key, (number, tx.tx_num, value.as_slice()))?;
                match m.metadata.as_deref().filter(|bytes| !bytes.is_empty()) {
                    Some(bytes) => {
                        metadata.insert(key, bytes)?;
                    }
                    None => {
                        metadata.remove(key)?;
                    }
                }
            }
        }
    }
    let mut meta = txn.open_table(META)?;
    meta.insert(META_HEIGHT, (number + 1).to_be_bytes().as_slice())?;
    meta.insert(META_TIP_HASH, header_hash.as_slice())?;
    meta.insert(META_PREVIOUS_HASH, header.previous_hash.as_slice())?;
    Ok(())
}

/// The private-data part of a block commit: private values of valid transactions (state
/// only, no history), their expiry schedule, keys whose `block_to_live` ends with this block,
/// and the transient store entries of the block's transactions and of expired arrivals.
fn write_private_data(
    txn: &WriteTransaction,
    number: u64,
    updates: &BlockUpdates,
) -> Result<(), LedgerError> {
    let mut state = txn.open_table(STATE)?;
    let mut metadata = txn.open_table(STATE_METADATA)?;
    let mut expiry = txn.open_table(PVT_EXPIRY)?;
    // Expire first: a key this block writes again gets a fresh schedule below.
    let due: Vec<(u64, String, String, (u64, u64))> = expiry
        .range((0, "", "")..(number + 1, "", ""))?
        .map(|entry| {
            entry.map(|(k, v)| {
                let (at, ns, key) = k.value();
                (at, ns.to_owned(), key.to_owned(), v.value())
            })
        })
        .collect::<Result<_, _>>()?;
    let mut pvt_data = txn.open_table(PVT_DATA)?;
    let mut pvt_keys = txn.open_table(PVT_DATA_KEYS)?;
    for (at, ns, key, written) in due {
        let current = state
            .get((ns.as_str(), key.as_str()))?
            .map(|g| (g.value().0, g.value().1));
        if current == Some(written) {
            state.remove((ns.as_str(), key.as_str()))?;
            metadata.remove((ns.as_str(), key.as_str()))?;
        }
        // The kept sets that wrote the key up to the expiring write expire with it.
        drop_private_sets(&mut pvt_data, &mut pvt_keys, &ns, &key, Some(written))?;
        expiry.remove((at, ns.as_str(), key.as_str()))?;
    }
    for tx in updates
        .txs
        .iter()
        .filter(|t| t.validation_code == TxValidationCode::Valid as u8)
    {
        for w in &tx.private_writes {
            let key = (w.namespace.as_str(), w.key.as_str());
            match &w.value {
                Some(value) => {
                    state.insert(key, (number, tx.tx_num, value.as_slice()))?;
                }
                None => {
                    state.remove(key)?;
                    metadata.remove(key)?;
                }
            }
        }
        for e in &tx.expiries {
            expiry.insert(
                (e.expire_at, e.namespace.as_str(), e.key.as_str()),
                (number, tx.tx_num),
            )?;
        }
        for (ns, key) in &tx.purges {
            drop_private_sets(&mut pvt_data, &mut pvt_keys, ns, key, None)?;
        }
        for set in &tx.private_sets {
            pvt_data.insert(
                (number, tx.tx_num, set.namespace.as_str()),
                set.rwset.as_slice(),
            )?;
            for key in &set.keys {
                pvt_keys.insert(
                    (set.namespace.as_str(), key.as_str(), number, tx.tx_num),
                    (),
                )?;
            }
        }
    }
    drop((state, metadata, expiry, pvt_data, pvt_keys));

    // The transient store: this block's transactions are decided, valid or not.
    let mut transient = txn.open_table(TRANSIENT)?;
    let mut by_height = txn.open_table(TRANSIENT_BY_HEIGHT)?;
    let mut gone: Vec<(u64, String, Vec<u8>)> = Vec::new();
    for tx in &updates.txs {
        for entry in transient.range((tx.tx_id.as_str(), [].as_slice())..)? {
            let (key, value) = entry?;
            let (tx_id, digest) = key.value();
            if tx_id != tx.tx_id {
                break;
            }
            gone.push((value.value().0, tx_id.to_owned(), digest.to_vec()));
        }
    }
    if let Some(cutoff) = number.checked_sub(TRANSIENT_RETENTION_BLOCKS) {
        for entry in by_height.range((0, "", [].as_slice())..(cutoff + 1, "", [].as_slice()))? {
            let (key, _) = entry?;
            let (height, tx_id, digest) = key.value();
            gone.push((height, tx_id.to_owned(), digest.to_vec()));
        }
    }
    for (height, tx_id, digest) in gone {
        transient.remove((tx_id.as_str(), digest.as_slice()))?;
        by_height.remove((height, tx_id.as_str(), digest.as_slice()))?;
    }
    Ok(())
}

/// Removes every kept private write set of namespace `ns` holding `key` (those written up to
/// `upto` = (block, tx) when given, all otherwise), with the index rows of `key`.
fn drop_private_sets(
    pvt_data: &mut redb::Table<'_, tables::PvtDataKey, &'static [u8]>,
    pvt_keys: &mut redb::Table<'_, tables::PvtDataKeysKey, ()>,
    ns: &str,
    key: &str,
    upto: Option<(u64, u64)>,
) -> Result<(), LedgerError> {
    let (last_block, last_tx) = upto.unwrap_or((u64::MAX, u64::MAX));
    let mut found = Vec::new();
    for entry in pvt_keys.range((ns, key, 0, 0)..=(ns, key, last_block, last_tx))? {
        let (k, _) = entry?;
        let (_, _, block, tx) = k.value();
        found.push((block, tx));
    }
    for (block, tx) in found {
        pvt_data.remove((block, tx, ns))?;
        pvt_keys.remove((ns, key, block, tx))?;
    }
    Ok(())
}

/// Opens (creating if missing) the redb file at `path` for `channel_id`: checks its schema
/// and channel, reads the chain summary and verifies the last block against it.
fn open_file(path: &Path, channel_id: &str) -> Result<(Database, ChainInfo), LedgerError> {
    let db = redb::Builder::new()
        .set_cache_size(crate::LEDGER_CACHE_BYTES)
        .create(path)
        .map_err(|e| open_error(path, e))?;
    init_schema(&db, path, channel_id)?;
    let info = {
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        let height = tables::read_u64(&meta, META_HEIGHT)?
            .ok_or_else(|| LedgerError::corrupt("meta has no height"))?;
        let current_block_hash = tables::read_bytes(&meta, META_TIP_HASH)?
            .ok_or_else(|| LedgerError::corrupt("meta has no tip hash"))?;
        let previous_block_hash = tables::read_bytes(&meta, META_PREVIOUS_HASH)?
            .ok_or_else(|| LedgerError::corrupt("meta has no previous hash"))?;
        let info = ChainInfo {
            height,
            current_block_hash,
            previous_block_hash,
        };
        verify_tip(&txn, &info)?;
        info
    };
    Ok((db, info))
}

/// Creates the tables of a new file, or checks the schema version and channel of an existing
/// one.
fn init_schema(db: &Database, path: &Path, channel_id: &str) -> Result<(), LedgerError> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        match tables::read_u64(&meta, META_SCHEMA)? {
            Some(found)
                if found != SCHEMA_VERSION
                    && found != SCHEMA_VERSION_WITHOUT_METADATA
                    && found != SCHEMA_VERSION_WITHOUT_PRIVATE_DATA
                    && found != SCHEMA_VERSION_WITHOUT_MISSING =>
            {
                return Err(LedgerError::SchemaVersion {
                    path: path.to_owned(),
                    found,
                    expected: SCHEMA_VERSION,
                });
            }
            Some(found_version) => {
                let found = tables::read_bytes(&meta, META_CHANNEL)?
                    .ok_or_else(|| LedgerError::corrupt("meta has no channel id"))?;
                if found != channel_id.as_bytes() {
                    return Err(LedgerError::WrongChannel {
                        path: path.to_owned(),
                        expected: channel_id.to_owned(),
                        found: String::from_utf8_lossy(&found).into_owned(),
                    });
                }
                if found_version == SCHEMA_VERSION {
                    // Existing and matching: nothing to write.
                    return Ok(());
                }
                // Versions 1 to 3: add the missing tables, then record the new version.
                meta.insert(META_SCHEMA, SCHEMA_VERSION.to_be_bytes().as_slice())?;
                drop(meta);
                txn.open_table(STATE_METADATA)?;
                txn.open_table(PVT_EXPIRY)?;
                txn.open_table(TRANSIENT)?;
                txn.open_table(TRANSIENT_BY_HEIGHT)?;
                txn.open_table(PVT_DATA)?;
                txn.open_table(PVT_DATA_KEYS)?;
                txn.open_table(PVT_MISSING)?;
                txn.commit()?;
                return Ok(());
            }
            None => {
                if !meta.is_empty()? {
                    return Err(LedgerError::corrupt(format!(
                        "{} has ledger metadata but no schema version",
                        path.display()
                    )));
                }
                meta.insert(META_SCHEMA, SCHEMA_VERSION.to_be_bytes().as_slice())?;
                meta.insert(META_CHANNEL, channel_id.as_bytes())?;
                meta.insert(META_HEIGHT, 0u64.to_be_bytes().as_slice())?;
                meta.insert(META_TIP_HASH, [].as_slice())?;
                meta.insert(META_PREVIOUS_HASH, [].as_slice())?;
            }
        }
    }
    txn.open_table(BLOCKS)?;
    txn.open_table(BLOCK_HASHES)?;
    txn.open_table(HASH_INDEX)?;
    txn.open_table(TX_INDEX)?;
    txn.open_table(STATE)?;
    txn.open_table(HISTORY)?;
    txn.open_table(STATE_METADATA)?;
    txn.open_table(PVT_EXPIRY)?;
    txn.open_table(TRANSIENT)?;
    txn.open_table(TRANSIENT_BY_HEIGHT)?;
    txn.open_table(PVT_DATA)?;
    txn.open_table(PVT_DATA_KEYS)?;
    txn.open_table(PVT_MISSING)?;
    txn.commit()?;
    Ok(())
}

/// Checks that the recorded tip is the last stored block and that the block verifies.
fn verify_tip(txn: &redb::ReadTransaction, info: &ChainInfo) -> Result<(), LedgerError> {
    let blocks = txn.open_table(BLOCKS)?;
    let last_stored = blocks.last()?.map(|(k, _)| k.value());
    let expected_last = info.height.checked_sub(1);
    if last_stored != expected_last {
        return Err(LedgerError::corrupt(format!(
            "the recorded height is {} but the last stored block is {last_stored:?}",
            info.height
        )));
    }
    let Some(tip) = expected_last else {
        return Ok(());
    };
    let (_, block) = read_verified_block(txn, tip)?
        .ok_or_else(|| LedgerError::corrupt(format!("tip block {tip} is missing")))?;
    // `read_verified_block` only returns blocks that have a header.
    let matches_tip = block.header.as_ref().is_some_and(|header| {
        block_header_hash(header).as_slice() == info.current_block_hash.as_slice()
            && header.previous_hash == info.previous_block_hash
    });
    if !matches_tip {
        return Err(LedgerError::BrokenChain { block: tip });
    }
    Ok(())
}

/// Reads block `number` and checks it against the stored chain of header hashes.
fn read_verified_block(
    txn: &redb::ReadTransaction,
    number: u64,
) -> Result<Option<(Vec<u8>, Block)>, LedgerError> {
    let blocks = txn.open_table(BLOCKS)?;
    let Some(guard) = blocks.get(number)? else {
        return Ok(None);
    };
    let bytes = guard.value().to_vec();
    drop(guard);
    let block = Block::decode(bytes.as_slice())
        .map_err(|e| LedgerError::corrupt(format!("block {number} does not decode: {e}")))?;
    let header = block.header.as_ref().ok_or_else(|| {
        LedgerError::corrupt(format!("block {number} is stored without a header"))
    })?;
    if header.number != number {
        return Err(LedgerError::corrupt(format!(
            "block stored as number {number} says it is number {}",
            header.number
        )));
    }
    let hashes = txn.open_table(BLOCK_HASHES)?;
    let stored_hash = hashes
        .get(number)?
        .ok_or_else(|| LedgerError::corrupt(format!("no header hash recorded for block {number}")))?
        .value()
        .to_vec();
    if block_header_hash(header).as_slice() != stored_hash.as_slice() {
        return Err(LedgerError::BrokenChain { block: number });
    }
    let expected_previous = match number.checked_sub(1) {
        Some(prev) => hashes
            .get(prev)?
            .ok_or_else(|| {
                LedgerError::corrupt(format!("no header hash recorded for block {prev}"))
            })?
            .value()
            .to_vec(),
        None => Vec::new(),
    };
    if header.previous_hash != expected_previous {
        return Err(LedgerError::BrokenChain { block: number });
    }
    if header.data_hash != data_hash_of(&block) {
        return Err(LedgerError::BadDataHash { block: number });
    }
    Ok(Some((bytes, block)))
}

/// The data hash of a block's envelopes (of no envelopes when it has no data).
fn data_hash_of(block: &Block) -> [u8; 32] {
    match &block.data {
        Some(data) => block_data_hash(data),
        None => block_data_hash(&BlockData::default()),
    }
}

/// (position, tx id, validation code) of every envelope whose channel header carries a tx id.
///
/// Envelopes that do not decode are skipped: the orderer's ledger indexes what it can, and a
/// peer passes its validated tx ids to [`Ledger::commit_block`] instead.
fn envelope_tx_ids(block: &Block) -> Vec<(u64, Cow<'static, str>, u8)> {
    let Some(data) = &block.data else {
        return Vec::new();
    };
    let filter = block.metadata.as_ref().and_then(|m| {
        m.metadata
            .get(BlockMetadataIndex::TransactionsFilter as usize)
    });
    let mut out = Vec::new();
    for (i, env_bytes) in data.data.iter().enumerate() {
        let Some(tx_id) = tx_id_of(env_bytes) else {
            continue;
        };
        let code = filter
            .and_then(|f| f.get(i).copied())
            .unwrap_or(TxValidationCode::NotValidated as u8);
        out.push((i as u64, Cow::Owned(tx_id), code));
    }
    out
}

/// The tx id of an envelope's channel header, if it decodes and has one.
fn tx_id_of(envelope: &[u8]) -> Option<String> {
    let env = Envelope::decode(envelope).ok()?;
    let payload = Payload::decode(env.payload.as_slice()).ok()?;
    let header = payload.header?;
    let channel_header = ChannelHeader::decode(header.channel_header.as_slice()).ok()?;
    (!channel_header.tx_id.is_empty()).then_some(channel_header.tx_id)
}

/// Maps an error opening the file to a message that names the file.
fn open_error(path: &Path, e: redb::DatabaseError) -> LedgerError {
    match LedgerError::from(e) {
        LedgerError::Corrupt { what } => LedgerError::Corrupt {
            what: format!("{}: {what}", path.display()),
        },
        LedgerError::Storage(msg) => {
            LedgerError::Storage(format!("cannot open {}: {msg}", path.display()))
        }
        other => other,
    }
}
