//! [`RaftStore`]: the orderer's durable Raft log in `<dir>/raft.redb`, a file of its own
//! beside the channel's `ledger.redb`.
//!
//! Entries, the conf state and snapshot data are opaque bytes so that this crate does not
//! depend on the Raft implementation the orderer wraps. The log follows the usual Raft storage
//! contract: entries have consecutive indexes; everything up to a compaction point (the
//! *boundary*, `first_index() - 1`) has been discarded, and only the boundary's term is kept so
//! that `term(first_index() - 1)` can still be answered. A new log has boundary (0, 0).

use std::path::{Path, PathBuf};

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};

use crate::error::LedgerError;
use crate::tables::{read_bytes, read_u64};

/// Name of the Raft log file inside a channel's directory.
pub const RAFT_FILE: &str = "raft.redb";

/// The on-disk layout version of `raft.redb`.
const RAFT_SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
/// index → (term, entry bytes).
const ENTRIES: TableDefinition<u64, (u64, &[u8])> = TableDefinition::new("raft_entries");

const META_SCHEMA: &str = "schema_version";
/// 24 bytes: term, vote, commit (big-endian).
const META_HARD_STATE: &str = "hard_state";
const META_CONF_STATE: &str = "conf_state";
/// 16 bytes: index and term of the last discarded entry.
const META_BOUNDARY: &str = "boundary";
/// 16 bytes: index and term of the stored snapshot.
const META_SNAPSHOT: &str = "snapshot";
const META_SNAPSHOT_CONF: &str = "snapshot_conf_state";
const META_SNAPSHOT_DATA: &str = "snapshot_data";

/// One Raft log entry: its position, the term it was proposed in and its opaque payload
/// (the Raft crate's encoded entry).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RaftEntry {
    /// The log index (first entry is 1).
    pub index: u64,
    /// The term of the leader that created it.
    pub term: u64,
    /// Opaque entry bytes.
    pub data: Vec<u8>,
}

/// Raft's persistent vote state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HardState {
    /// The current term.
    pub term: u64,
    /// The node voted for in `term` (0 = none).
    pub vote: u64,
    /// The highest index known to be committed.
    pub commit: u64,
}

/// Describes a stored Raft snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RaftSnapshotMeta {
    /// The last log index the snapshot covers.
    pub index: u64,
    /// The term of that entry.
    pub term: u64,
    /// The opaque cluster configuration as of `index`.
    pub conf_state: Vec<u8>,
}

/// The durable Raft log of one channel on one orderer.
///
/// Every mutating call is one redb transaction with immediate durability: when it returns,
/// the change survives a crash.
pub struct RaftStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RaftStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RaftStore {
    /// Opens (creating if needed) `<dir>/raft.redb`; fails with
    /// [`LedgerError::SchemaVersion`] if the file has another layout version.
    pub fn open(dir: &Path) -> Result<RaftStore, LedgerError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            LedgerError::Storage(format!(
                "cannot create raft directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(RAFT_FILE);
        let db = redb::Builder::new()
            .set_cache_size(crate::RAFT_CACHE_BYTES)
            .create(&path)
            .map_err(|e| match LedgerError::from(e) {
                LedgerError::Corrupt { what } => LedgerError::Corrupt {
                    what: format!("{}: {what}", path.display()),
                },
                LedgerError::Storage(msg) => {
                    LedgerError::Storage(format!("cannot open {}: {msg}", path.display()))
                }
                other => other,
            })?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            match read_u64(&meta, META_SCHEMA)? {
                Some(found) if found != RAFT_SCHEMA_VERSION => {
                    return Err(LedgerError::SchemaVersion {
                        path,
                        found,
                        expected: RAFT_SCHEMA_VERSION,
                    });
                }
                Some(_) => {}
                None => {
                    if !meta.is_empty()? {
                        return Err(LedgerError::corrupt(format!(
                            "{} has raft metadata but no schema version",
                            path.display()
                        )));
                    }
                    meta.insert(META_SCHEMA, RAFT_SCHEMA_VERSION.to_be_bytes().as_slice())?;
                }
            }
        }
        txn.open_table(ENTRIES)?;
        txn.commit()?;
        Ok(RaftStore { db, path })
    }

    /// Appends `entries`, first discarding any stored entries at or after the first new index
    /// (a conflicting suffix from an older leader). The entries must have consecutive indexes
    /// starting no later than `last_index() + 1` and after the compaction boundary.
    pub fn append(&self, entries: &[RaftEntry]) -> Result<(), LedgerError> {
        self.persist(entries, None)
    }

    /// [`RaftStore::append`] and, if given, [`RaftStore::set_hard_state`] in one durable
    /// transaction (what a Raft `Ready` needs persisted before messages are sent).
    pub fn persist(
        &self,
        entries: &[RaftEntry],
        hard_state: Option<&HardState>,
    ) -> Result<(), LedgerError> {
        let txn = self.db.begin_write()?;
        if let Some(first) = entries.first() {
            for pair in entries.windows(2) {
                if pair[1].index != pair[0].index + 1 {
                    return Err(LedgerError::RaftLog {
                        reason: format!(
                            "entries are not consecutive: index {} follows {}",
                            pair[1].index, pair[0].index
                        ),
                    });
                }
            }
            let meta = txn.open_table(META)?;
            let (boundary, _) = read_pair(&meta, META_BOUNDARY)?.unwrap_or((0, 0));
            drop(meta);
            let mut table = txn.open_table(ENTRIES)?;
            let last = table.last()?.map_or(boundary, |(k, _)| k.value());
            if first.index <= boundary {
                return Err(LedgerError::RaftLog {
                    reason: format!(
                        "cannot append at index {}: the log is compacted up to {boundary}",
                        first.index
                    ),
                });
            }
            if first.index > last + 1 {
                return Err(LedgerError::RaftLog {
                    reason: format!(
                        "cannot append at index {}: the log ends at {last}, which would leave a gap",
                        first.index
                    ),
                });
            }
            table.retain_in(first.index.., |_, _| false)?;
            for e in entries {
                table.insert(e.index, (e.term, e.data.as_slice()))?;
            }
        }
        if let Some(hs) = hard_state {
            write_hard_state(&txn, hs)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The entries with indexes in `[lo, hi)`. Fails if `lo` is at or before the compaction
    /// boundary; stops early at the end of the log.
    pub fn entries(&self, lo: u64, hi: u64) -> Result<Vec<RaftEntry>, LedgerError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let (boundary, _) = read_pair(&meta, META_BOUNDARY)?.unwrap_or((0, 0));
        if lo <= boundary && lo < hi {
            return Err(LedgerError::RaftLog {
                reason: format!(
                    "entries from {lo} are compacted (log starts at {})",
                    boundary + 1
                ),
            });
        }
        let mut out = Vec::new();
        if lo >= hi {
            return Ok(out);
        }
        let table = txn.open_table(ENTRIES)?;
        for item in table.range(lo..hi)? {
            let (k, v) = item?;
            let (term, data) = v.value();
            out.push(RaftEntry {
                index: k.value(),
                term,
                data: data.to_vec(),
            });
        }
        Ok(out)
    }

    /// The term of the entry at `index`: from the log, or the boundary's term when `index` is
    /// the compaction boundary; `None` when the log does not know it.
    pub fn term(&self, index: u64) -> Result<Option<u64>, LedgerError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let (boundary, boundary_term) = read_pair(&meta, META_BOUNDARY)?.unwrap_or((0, 0));
        if index == boundary {
            return Ok(Some(boundary_term));
        }
        let table = txn.open_table(ENTRIES)?;
        Ok(table.get(index)?.map(|g| g.value().0))
    }

    /// The index of the first entry still stored (boundary + 1, even if the log is empty).
    pub fn first_index(&self) -> Result<u64, LedgerError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(read_pair(&meta, META_BOUNDARY)?.map_or(0, |(i, _)| i) + 1)
    }

    /// The index of the last entry (the boundary when no entry is stored).
    pub fn last_index(&self) -> Result<u64, LedgerError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        if let Some((k, _)) = table.last()? {
            return Ok(k.value());
        }
        let meta = txn.open_table(META)?;
        Ok(read_pair(&meta, META_BOUNDARY)?.map_or(0, |(i, _)| i))
    }

    /// Removes every entry after `index`. Fails if `index` is before the compaction boundary.
    pub fn truncate_after(&self, index: u64) -> Result<(), LedgerError> {
        let txn = self.db.begin_write()?;
        let meta = txn.open_table(META)?;
        let (boundary, _) = read_pair(&meta, META_BOUNDARY)?.unwrap_or((0, 0));
        drop(meta);
        if index < boundary {
            return Err(LedgerError::RaftLog {
                reason: format!(
                    "cannot truncate after {index}: the log is compacted up to {boundary}"
                ),
            });
        }
        if let Some(from) = index.checked_add(1) {
            txn.open_table(ENTRIES)?.retain_in(from.., |_, _| false)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Discards every entry up to and including `upto`, keeping its term as the new boundary.
    /// A no-op when `upto` is at or before the current boundary; fails if `upto` is past the
    /// last entry.
    pub fn compact(&self, upto: u64) -> Result<(), LedgerError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let (boundary, _) = read_pair(&meta, META_BOUNDARY)?.unwrap_or((0, 0));
            if upto <= boundary {
                return Ok(());
            }
            let mut table = txn.open_table(ENTRIES)?;
            let term =
                table
                    .get(upto)?
                    .map(|g| g.value().0)
                    .ok_or_else(|| LedgerError::RaftLog {
                        reason: format!("cannot compact up to {upto}: no entry with that index"),
                    })?;
            table.retain_in(..=upto, |_, _| false)?;
            meta.insert(META_BOUNDARY, pair_bytes(upto, term).as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The stored hard state (all zero on a new log).
    pub fn hard_state(&self) -> Result<HardState, LedgerError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let Some(bytes) = read_bytes(&meta, META_HARD_STATE)? else {
            return Ok(HardState::default());
        };
        let Ok(words) = <[u8; 24]>::try_from(bytes.as_slice()) else {
            return Err(LedgerError::corrupt(format!(
                "raft hard state is {} bytes long, expected 24",
                bytes.len()
            )));
        };
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&words[i * 8..i * 8 + 8]);
            u64::from_be_bytes(w)
        };
        Ok(HardState {
            term: word(0),
            vote: word(1),
            commit: word(2),
        })
    }

    /// Stores the hard state.
    pub fn set_hard_state(&self, hard_state: &HardState) -> Result<(), LedgerError> {
        let txn = self.db.begin_write()?;
        write_hard_state(&txn, hard_state)?;
        txn.commit()?;
        Ok(())
    }

    /// The stored conf state bytes, if any were set.
    pub fn conf_state(&self) -> Result<Option<Vec<u8>>, LedgerError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        read_bytes(&meta, META_CONF_STATE)
    }

    /// Stores the conf state bytes.
    pub fn set_conf_state(&self, conf_state: &[u8]) -> Result<(), LedgerError> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert(META_CONF_STATE, conf_state)?;
        txn.commit()?;
        Ok(())
    }

    /// The stored snapshot and its description, if one was saved.
    pub fn snapshot(&self) -> Result<Option<(RaftSnapshotMeta, Vec<u8>)>, LedgerError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let Some((index, term)) = read_pair(&meta, META_SNAPSHOT)? else {
            return Ok(None);
        };
        let conf_state = read_bytes(&meta, META_SNAPSHOT_CONF)?.unwrap_or_default();
        let data = read_bytes(&meta, META_SNAPSHOT_DATA)?
            .ok_or_else(|| LedgerError::corrupt("raft snapshot metadata without data"))?;
        Ok(Some((
            RaftSnapshotMeta {
                index,
                term,
                conf_state,
            },
            data,
        )))
    }

    /// Stores a snapshot this node made of its own applied state, replacing any older one.
    /// The log is untouched; call [`RaftStore::compact`] to discard what it covers.
    pub fn save_snapshot(&self, meta: &RaftSnapshotMeta, data: &[u8]) -> Result<(), LedgerError> {
        let txn = self.db.begin_write()?;
        write_snapshot(&txn, meta, data)?;
        txn.commit()?;
        Ok(())
    }

    /// Installs a snapshot received from the leader: stores it, makes its conf state current,
    /// and replaces the log with an empty one whose boundary is the snapshot's (index, term).
    /// Fails if the snapshot is older than the current boundary.
    pub fn apply_snapshot(&self, meta: &RaftSnapshotMeta, data: &[u8]) -> Result<(), LedgerError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(META)?;
            let (boundary, _) = read_pair(&table, META_BOUNDARY)?.unwrap_or((0, 0));
            if meta.index < boundary {
                return Err(LedgerError::RaftLog {
                    reason: format!(
                        "snapshot at index {} is older than the log's boundary {boundary}",
                        meta.index
                    ),
                });
            }
            table.insert(META_BOUNDARY, pair_bytes(meta.index, meta.term).as_slice())?;
            table.insert(META_CONF_STATE, meta.conf_state.as_slice())?;
        }
        txn.open_table(ENTRIES)?.retain(|_, _| false)?;
        write_snapshot(&txn, meta, data)?;
        txn.commit()?;
        Ok(())
    }
}

fn write_hard_state(txn: &WriteTransaction, hs: &HardState) -> Result<(), LedgerError> {
    let mut bytes = Vec::with_capacity(24);
    bytes.extend_from_slice(&hs.term.to_be_bytes());
    bytes.extend_from_slice(&hs.vote.to_be_bytes());
    bytes.extend_from_slice(&hs.commit.to_be_bytes());
    txn.open_table(META)?
        .insert(META_HARD_STATE, bytes.as_slice())?;
    Ok(())
}

fn write_snapshot(
    txn: &WriteTransaction,
    meta: &RaftSnapshotMeta,
    data: &[u8],
) -> Result<(), LedgerError> {
    let mut table = txn.open_table(META)?;
    table.insert(META_SNAPSHOT, pair_bytes(meta.index, meta.term).as_slice())?;
    table.insert(META_SNAPSHOT_CONF, meta.conf_state.as_slice())?;
    table.insert(META_SNAPSHOT_DATA, data)?;
    Ok(())
}

fn pair_bytes(a: u64, b: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_be_bytes());
    out[8..].copy_from_slice(&b.to_be_bytes());
    out
}

/// Reads two big-endian u64s stored under `key`.
fn read_pair(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<(u64, u64)>, LedgerError> {
    let Some(bytes) = read_bytes(table, key)? else {
        return Ok(None);
    };
    let (Ok(a), Ok(b)) = (
        <[u8; 8]>::try_from(bytes.get(..8).unwrap_or_default()),
        <[u8; 8]>::try_from(bytes.get(8..).unwrap_or_default()),
    ) else {
        return Err(LedgerError::corrupt(format!(
            "raft meta entry {key:?} is {} bytes long, expected 16",
            bytes.len()
        )));
    };
    Ok(Some((u64::from_be_bytes(a), u64::from_be_bytes(b))))
}
