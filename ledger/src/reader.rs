//! [`LedgerReader`]: a read-only view of a stopped node's channel ledger file, for offline
//! verification and comparison (`gridledger ledger verify --dir`, `gridledger ledger compare`).
//!
//! Unlike [`crate::Ledger`], a reader never writes: it does not create or upgrade the file, and
//! it returns blocks exactly as stored *without* checking them against the chain, so that a
//! verifier sees (and reports) what a damaged or edited file holds instead of stopping at the
//! first error. It reads through one redb read transaction taken at open, so everything it
//! returns is one consistent view.
//!
//! A node that is running holds its ledger file locked: opening it fails with
//! [`LedgerError::InUse`]. A file whose writer did not close it cleanly (`kill -9`) needs
//! redb's repair before it can be read; the reader never repairs the original, it copies the
//! file beside the system's temporary files, repairs and reads the copy, and says so
//! ([`LedgerReader::repaired_copy`]).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use gridledger_proto::blockutil::sha256;
use redb::{ReadTransaction, ReadableDatabase, ReadableTable};

use crate::error::LedgerError;
use crate::store::{ChainInfo, LEDGER_FILE};
use crate::tables::{
    self, BLOCK_HASHES, BLOCKS, META, META_CHANNEL, META_HEIGHT, META_PREVIOUS_HASH, META_SCHEMA,
    META_TIP_HASH, SCHEMA_VERSION, STATE, STATE_METADATA, TX_INDEX,
};

/// The marker of a private-value namespace (`ns$$pcoll`): values a peer keeps only when its
/// organization is a member of the collection, so two correct peers may differ there.
pub const PRIVATE_NAMESPACE_MARKER: &str = "$$p";

/// Whether `namespace` is a private-value namespace (`ns$$pcoll`).
pub fn is_private_namespace(namespace: &str) -> bool {
    namespace.contains(PRIVATE_NAMESPACE_MARKER)
}

/// One key of the world state as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    /// The namespace (a chaincode, or a derived `ns$$hcoll` / `ns$$pcoll` namespace).
    pub namespace: String,
    /// The key.
    pub key: String,
    /// The value bytes.
    pub value: Vec<u8>,
    /// The transaction that last wrote the key.
    pub version: crate::Version,
    /// The key's metadata bytes (empty when it has none).
    pub metadata: Vec<u8>,
}

/// A block as stored, unchecked, with the header hash the ledger recorded for its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlock {
    /// The block's protobuf bytes as appended.
    pub bytes: Vec<u8>,
    /// The header hash recorded for this number in the hash table, if any.
    pub recorded_header_hash: Option<Vec<u8>>,
}

/// A read-only view of one channel's `ledger.redb` (see the module documentation).
pub struct LedgerReader {
    path: PathBuf,
    channel_id: String,
    info: ChainInfo,
    repaired_copy: Option<PathBuf>,
    // Declared before the database so it is dropped first.
    txn: ReadTransaction,
    _db: Handle,
}

/// The open database behind a reader: the original file read-only, or a repaired copy.
enum Handle {
    ReadOnly(redb::ReadOnlyDatabase),
    Repaired(redb::Database),
}

impl std::fmt::Debug for LedgerReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerReader")
            .field("path", &self.path)
            .field("channel_id", &self.channel_id)
            .field("height", &self.info.height)
            .finish_non_exhaustive()
    }
}

impl Drop for LedgerReader {
    fn drop(&mut self) {
        if let Some(copy) = &self.repaired_copy {
            // Best effort: the copy is in the temporary directory either way.
            let _ = std::fs::remove_file(copy);
        }
    }
}

impl LedgerReader {
    /// Opens `<dir>/ledger.redb` read-only.
    ///
    /// Fails with [`LedgerError::NotALedger`] when the file does not exist, with
    /// [`LedgerError::InUse`] when a running node holds it, with [`LedgerError::Corrupt`] when
    /// it is not a redb file or lacks the ledger's metadata, and with
    /// [`LedgerError::SchemaVersion`] when it was written with another layout.
    pub fn open(dir: &Path) -> Result<LedgerReader, LedgerError> {
        let path = dir.join(LEDGER_FILE);
        if !path.is_file() {
            return Err(LedgerError::NotALedger { path });
        }
        let (db, repaired_copy) = match redb::ReadOnlyDatabase::open(&path) {
            Ok(db) => (Handle::ReadOnly(db), None),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(LedgerError::InUse { path });
            }
            Err(redb::DatabaseError::RepairAborted) => {
                let copy = repair_copy(&path)?;
                match redb::Database::open(&copy) {
                    Ok(db) => (Handle::Repaired(db), Some(copy)),
                    Err(e) => {
                        let _ = std::fs::remove_file(&copy);
                        return Err(named(&path, e.into()));
                    }
                }
            }
            Err(e) => return Err(named(&path, e.into())),
        };
        let txn = match &db {
            Handle::ReadOnly(db) => db.begin_read(),
            Handle::Repaired(db) => db.begin_read(),
        };
        let cleanup = |e: LedgerError| {
            if let Some(copy) = &repaired_copy {
                let _ = std::fs::remove_file(copy);
            }
            named(&path, e)
        };
        let txn = txn.map_err(|e| cleanup(e.into()))?;
        let (channel_id, info) = read_meta(&txn, &path).map_err(cleanup)?;
        Ok(LedgerReader {
            path,
            channel_id,
            info,
            repaired_copy,
            txn,
            _db: db,
        })
    }

    /// The file this reader reads (the original, even when a repaired copy is read).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the repaired copy read instead of the original is, when the original was not
    /// closed cleanly by its writer.
    pub fn repaired_copy(&self) -> Option<&Path> {
        self.repaired_copy.as_deref()
    }

    /// The channel the file belongs to, as recorded in it.
    pub fn channel_id(&self) -> &str {
        &self.channel_id
    }

    /// The recorded height and tip hashes.
    pub fn info(&self) -> &ChainInfo {
        &self.info
    }

    /// The recorded height: the number of blocks the ledger says it holds.
    pub fn height(&self) -> u64 {
        self.info.height
    }

    /// Block `number` as stored, not checked against anything, with the header hash recorded
    /// for it; `None` when no block is stored under that number.
    pub fn stored_block(&self, number: u64) -> Result<Option<StoredBlock>, LedgerError> {
        let blocks = self.txn.open_table(BLOCKS)?;
        let Some(guard) = blocks.get(number)? else {
            return Ok(None);
        };
        let bytes = guard.value().to_vec();
        drop(guard);
        let hashes = self.txn.open_table(BLOCK_HASHES)?;
        let recorded_header_hash = hashes.get(number)?.map(|g| g.value().to_vec());
        Ok(Some(StoredBlock {
            bytes,
            recorded_header_hash,
        }))
    }

    /// The numbers of every stored block, ascending (a healthy ledger holds `0..height`).
    pub fn block_numbers(&self) -> Result<Vec<u64>, LedgerError> {
        let blocks = self.txn.open_table(BLOCKS)?;
        let mut out = Vec::new();
        for entry in blocks.iter()? {
            out.push(entry?.0.value());
        }
        Ok(out)
    }

    /// Where the tx-id index says transaction `tx_id` is, with its recorded validation code.
    pub fn tx_location(&self, tx_id: &str) -> Result<Option<crate::TxLocation>, LedgerError> {
        let table = self.txn.open_table(TX_INDEX)?;
        Ok(table.get(tx_id)?.map(|g| {
            let (block_num, tx_num, validation_code) = g.value();
            crate::TxLocation {
                block_num,
                tx_num,
                validation_code,
            }
        }))
    }

    /// Calls `visit` with every world-state key in (namespace, key) byte order, with its value,
    /// version and metadata, until it returns [`ControlFlow::Break`]. Private-value namespaces
    /// are included; see [`is_private_namespace`].
    pub fn scan_state(
        &self,
        mut visit: impl FnMut(StateEntry) -> ControlFlow<()>,
    ) -> Result<(), LedgerError> {
        let state = self.txn.open_table(STATE)?;
        let metadata = self.txn.open_table(STATE_METADATA)?;
        for entry in state.iter()? {
            let (k, v) = entry?;
            let (namespace, key) = k.value();
            let (block_num, tx_num, value) = v.value();
            let meta = metadata
                .get((namespace, key))?
                .map(|g| g.value().to_vec())
                .unwrap_or_default();
            let entry = StateEntry {
                namespace: namespace.to_owned(),
                key: key.to_owned(),
                value: value.to_vec(),
                version: crate::Version { block_num, tx_num },
                metadata: meta,
            };
            if visit(entry).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// A deterministic hash of the world state outside the private-value namespaces (which
    /// legitimately differ between peers of different organizations), and how many keys it
    /// covers. Two ledgers holding the same keys with the same values, versions and metadata
    /// have the same hash, whatever order they were written in.
    pub fn state_hash(&self) -> Result<([u8; 32], u64), LedgerError> {
        let mut hasher = StateHasher::default();
        self.scan_state(|entry| {
            if !is_private_namespace(&entry.namespace) {
                hasher.add(&entry);
            }
            ControlFlow::Continue(())
        })?;
        Ok(hasher.finish())
    }
}

/// The running hash behind [`LedgerReader::state_hash`], exposed so that a verifier can hash a
/// state it recomputed the same way: add entries in (namespace, key) byte order.
///
/// Each entry is encoded as the length-prefixed namespace, key, value and metadata with the
/// version's block and transaction numbers (all lengths and numbers 8-byte big-endian), and
/// the hash is `h = sha256(h ‖ sha256(entry))` from 32 zero bytes.
#[derive(Debug, Clone, Default)]
pub struct StateHasher {
    running: [u8; 32],
    count: u64,
}

impl StateHasher {
    /// Adds one entry; call in (namespace, key) byte order.
    pub fn add(&mut self, entry: &StateEntry) {
        let mut buf = Vec::with_capacity(
            48 + entry.namespace.len() + entry.key.len() + entry.value.len() + entry.metadata.len(),
        );
        for part in [
            entry.namespace.as_bytes(),
            entry.key.as_bytes(),
            entry.value.as_slice(),
            entry.metadata.as_slice(),
        ] {
            buf.extend_from_slice(&(part.len() as u64).to_be_bytes());
            buf.extend_from_slice(part);
        }
        buf.extend_from_slice(&entry.version.block_num.to_be_bytes());
        buf.extend_from_slice(&entry.version.tx_num.to_be_bytes());
        let mut chained = [0u8; 64];
        chained[..32].copy_from_slice(&self.running);
        chained[32..].copy_from_slice(&sha256(&buf));
        self.running = sha256(&chained);
        self.count += 1;
    }

    /// The hash and the number of entries added.
    pub fn finish(&self) -> ([u8; 32], u64) {
        (self.running, self.count)
    }
}

/// Reads and checks the file's schema version, channel id, height and tip hashes.
fn read_meta(txn: &ReadTransaction, path: &Path) -> Result<(String, ChainInfo), LedgerError> {
    let meta = txn.open_table(META).map_err(|e| match e {
        redb::TableError::TableDoesNotExist(_) => {
            LedgerError::corrupt("the file holds no ledger metadata table")
        }
        other => other.into(),
    })?;
    let version = tables::read_u64(&meta, META_SCHEMA)?
        .ok_or_else(|| LedgerError::corrupt("meta has no schema version"))?;
    if version != SCHEMA_VERSION {
        return Err(LedgerError::SchemaVersion {
            path: path.to_owned(),
            found: version,
            expected: SCHEMA_VERSION,
        });
    }
    let channel = tables::read_bytes(&meta, META_CHANNEL)?
        .ok_or_else(|| LedgerError::corrupt("meta has no channel id"))?;
    let channel_id = String::from_utf8(channel)
        .map_err(|_| LedgerError::corrupt("the recorded channel id is not UTF-8"))?;
    let info = ChainInfo {
        height: tables::read_u64(&meta, META_HEIGHT)?
            .ok_or_else(|| LedgerError::corrupt("meta has no height"))?,
        current_block_hash: tables::read_bytes(&meta, META_TIP_HASH)?
            .ok_or_else(|| LedgerError::corrupt("meta has no tip hash"))?,
        previous_block_hash: tables::read_bytes(&meta, META_PREVIOUS_HASH)?
            .ok_or_else(|| LedgerError::corrupt("meta has no previous hash"))?,
    };
    Ok((channel_id, info))
}

/// Copies a file that needs repair to a fresh name in the temporary directory.
fn repair_copy(path: &Path) -> Result<PathBuf, LedgerError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let copy = std::env::temp_dir().join(format!(
        "gridledger-ledger-{}-{}.redb",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::copy(path, &copy).map_err(|e| {
        LedgerError::Storage(format!(
            "{} was not closed cleanly and could not be copied for repair to {}: {e}",
            path.display(),
            copy.display()
        ))
    })?;
    Ok(copy)
}

/// Names the file in a corruption or storage error.
fn named(path: &Path, e: LedgerError) -> LedgerError {
    match e {
        LedgerError::Corrupt { what } if !what.contains(&path.display().to_string()) => {
            LedgerError::Corrupt {
                what: format!("{}: {what}", path.display()),
            }
        }
        LedgerError::Storage(msg) if !msg.contains(&path.display().to_string()) => {
            LedgerError::Storage(format!("{}: {msg}", path.display()))
        }
        other => other,
    }
}

#[cfg(feature = "testing")]
pub use testing::*;

/// Deliberate damage to a stopped node's ledger file, for tests of the verifier: compiled only
/// with the `testing` feature, never in a node.
#[cfg(feature = "testing")]
mod testing {
    use super::*;

    fn open_rw(dir: &Path) -> Result<redb::Database, LedgerError> {
        let path = dir.join(LEDGER_FILE);
        redb::Database::open(&path).map_err(|e| named(&path, e.into()))
    }

    /// Replaces the stored value of `key` in `namespace` (keeping its version), or inserts it
    /// at version (0, 0) when absent.
    pub fn tamper_state_value(
        dir: &Path,
        namespace: &str,
        key: &str,
        value: &[u8],
    ) -> Result<(), LedgerError> {
        let db = open_rw(dir)?;
        let txn = db.begin_write()?;
        {
            let mut state = txn.open_table(STATE)?;
            let version = state
                .get((namespace, key))?
                .map_or((0, 0), |g| (g.value().0, g.value().1));
            state.insert((namespace, key), (version.0, version.1, value))?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Overwrites the stored bytes of block `number` (nothing else changes).
    pub fn tamper_block_bytes(dir: &Path, number: u64, bytes: &[u8]) -> Result<(), LedgerError> {
        let db = open_rw(dir)?;
        let txn = db.begin_write()?;
        txn.open_table(BLOCKS)?.insert(number, bytes)?;
        txn.commit()?;
        Ok(())
    }

    /// Drops every block from `height` on, as a peer that stopped there would hold them (the
    /// world state is left as it is).
    pub fn truncate_blocks(dir: &Path, height: u64) -> Result<(), LedgerError> {
        let db = open_rw(dir)?;
        let txn = db.begin_write()?;
        {
            let mut blocks = txn.open_table(BLOCKS)?;
            let mut hashes = txn.open_table(BLOCK_HASHES)?;
            let mut index = txn.open_table(crate::tables::HASH_INDEX)?;
            let numbers: Vec<u64> = blocks
                .range(height..)?
                .map(|e| e.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?;
            for n in numbers {
                blocks.remove(n)?;
                if let Some(hash) = hashes.remove(n)?.map(|g| g.value().to_vec()) {
                    index.remove(hash.as_slice())?;
                }
            }
            let tip = match height.checked_sub(1) {
                Some(last) => hashes.get(last)?.map(|g| g.value().to_vec()),
                None => None,
            }
            .unwrap_or_default();
            let previous = match height.checked_sub(2) {
                Some(before) => hashes.get(before)?.map(|g| g.value().to_vec()),
                None => None,
            }
            .unwrap_or_default();
            let mut meta = txn.open_table(META)?;
            meta.insert(META_HEIGHT, height.to_be_bytes().as_slice())?;
            meta.insert(META_TIP_HASH, tip.as_slice())?;
            meta.insert(META_PREVIOUS_HASH, previous.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }
}
