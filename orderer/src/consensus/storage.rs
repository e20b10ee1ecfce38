//! raft-rs's `Storage` over the ledger crate's [`RaftStore`] (`<channel dir>/raft.redb`).
//!
//! The store keeps entries as opaque bytes; this module owns their encoding: a small protobuf
//! message with the field numbers of raft's own `eraftpb.Entry` (`entry_type` 1, `data` 4,
//! `context` 6) — index and term are the store's keys. The conf state is encoded the same way
//! with `eraftpb.ConfState`'s numbers. Reads go to redb every time: the log on disk is the
//! only copy, so a restart sees exactly what raft-rs was told is durable.
//!
//! The snapshot raft-rs asks for (to send to a follower whose next entry was compacted) is
//! the one the orderer last stored with its log compaction ([`super::Consensus::snapshot`]).

use std::sync::Arc;

use gridledger_ledger::{LedgerError, RaftEntry, RaftSnapshotMeta, RaftStore};
use prost::Message as _;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

/// `eraftpb.Entry` without index and term, as stored.
#[derive(Clone, PartialEq, prost::Message)]
struct StoredEntry {
    #[prost(int32, tag = "1")]
    entry_type: i32,
    #[prost(bytes = "vec", tag = "4")]
    data: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    context: Vec<u8>,
}

/// `eraftpb.ConfState`, as stored.
#[derive(Clone, PartialEq, prost::Message)]
struct StoredConfState {
    #[prost(uint64, repeated, tag = "1")]
    voters: Vec<u64>,
    #[prost(uint64, repeated, tag = "2")]
    learners: Vec<u64>,
    #[prost(uint64, repeated, tag = "3")]
    voters_outgoing: Vec<u64>,
    #[prost(uint64, repeated, tag = "4")]
    learners_next: Vec<u64>,
    #[prost(bool, tag = "5")]
    auto_leave: bool,
}

fn entry_type_code(t: EntryType) -> i32 {
    match t {
        EntryType::EntryNormal => 0,
        EntryType::EntryConfChange => 1,
        EntryType::EntryConfChangeV2 => 2,
    }
}

fn entry_type_from_code(code: i32) -> Option<EntryType> {
    match code {
        0 => Some(EntryType::EntryNormal),
        1 => Some(EntryType::EntryConfChange),
        2 => Some(EntryType::EntryConfChangeV2),
        _ => None,
    }
}

/// Encodes a raft entry for the store.
pub(crate) fn encode_entry(entry: &Entry) -> RaftEntry {
    RaftEntry {
        index: entry.index,
        term: entry.term,
        data: StoredEntry {
            entry_type: entry_type_code(entry.get_entry_type()),
            data: entry.data.to_vec(),
            context: entry.context.to_vec(),
        }
        .encode_to_vec(),
    }
}

/// Decodes a stored entry.
pub(crate) fn decode_entry(stored: &RaftEntry) -> Result<Entry, LedgerError> {
    let corrupt = |what: String| LedgerError::Corrupt { what };
    let decoded = StoredEntry::decode(stored.data.as_slice())
        .map_err(|e| corrupt(format!("raft entry {} does not decode: {e}", stored.index)))?;
    let entry_type = entry_type_from_code(decoded.entry_type).ok_or_else(|| {
        corrupt(format!(
            "raft entry {} has unknown type {}",
            stored.index, decoded.entry_type
        ))
    })?;
    let mut entry = Entry::default();
    entry.set_entry_type(entry_type);
    entry.index = stored.index;
    entry.term = stored.term;
    entry.data = decoded.data.into();
    entry.context = decoded.context.into();
    Ok(entry)
}

/// Encodes a conf state for the store.
pub(crate) fn encode_conf_state(cs: &ConfState) -> Vec<u8> {
    StoredConfState {
        voters: cs.voters.clone(),
        learners: cs.learners.clone(),
        voters_outgoing: cs.voters_outgoing.clone(),
        learners_next: cs.learners_next.clone(),
        auto_leave: cs.auto_leave,
    }
    .encode_to_vec()
}

/// Decodes a stored conf state.
pub(crate) fn decode_conf_state(bytes: &[u8]) -> Result<ConfState, LedgerError> {
    let stored = StoredConfState::decode(bytes).map_err(|e| LedgerError::Corrupt {
        what: format!("raft conf state does not decode: {e}"),
    })?;
    Ok(ConfState {
        voters: stored.voters,
        learners: stored.learners,
        voters_outgoing: stored.voters_outgoing,
        learners_next: stored.learners_next,
        auto_leave: stored.auto_leave,
        ..Default::default()
    })
}

fn other(e: LedgerError) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

/// The durable log as raft-rs sees it.
pub(crate) struct LogStorage {
    store: Arc<RaftStore>,
    conf_state: ConfState,
}

impl LogStorage {
    /// A storage over `store` whose membership is `conf_state`.
    pub(crate) fn new(store: Arc<RaftStore>, conf_state: ConfState) -> LogStorage {
        LogStorage { store, conf_state }
    }
}

impl Storage for LogStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let hs = self.store.hard_state().map_err(other)?;
        let hard_state = HardState {
            term: hs.term,
            vote: hs.vote,
            commit: hs.commit,
            ..Default::default()
        };
        Ok(RaftState::new(hard_state, self.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let first = self.store.first_index().map_err(other)?;
        if low < first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        let last = self.store.last_index().map_err(other)?;
        if high > last + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let stored = self.store.entries(low, high).map_err(other)?;
        let mut entries = stored
            .iter()
            .map(decode_entry)
            .collect::<Result<Vec<_>, _>>()
            .map_err(other)?;
        if entries.len() as u64 != high.saturating_sub(low) {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if let Some(term) = self.store.term(idx).map_err(other)? {
            return Ok(term);
        }
        let first = self.store.first_index().map_err(other)?;
        if idx < first {
            Err(raft::Error::Store(StorageError::Compacted))
        } else {
            Err(raft::Error::Store(StorageError::Unavailable))
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.store.first_index().map_err(other)
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.store.last_index().map_err(other)
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // raft-rs treats any other error here as fatal: whatever goes wrong, the leader tries
        // again later.
        let unavailable = || raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable);
        match self.store.snapshot() {
            Ok(Some((meta, data))) if meta.index >= request_index && meta.index > 0 => {
                let conf_state = decode_conf_state(&meta.conf_state).map_err(|e| {
                    tracing::error!(error = %e, "the stored raft snapshot is unreadable");
                    unavailable()
                })?;
                Ok(to_raft_snapshot(&meta, conf_state, data))
            }
            Ok(_) => Err(unavailable()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stored raft snapshot");
                Err(unavailable())
            }
        }
    }
}

/// A raft-rs snapshot from its stored description and data.
pub(crate) fn to_raft_snapshot(
    meta: &RaftSnapshotMeta,
    conf_state: ConfState,
    data: Vec<u8>,
) -> Snapshot {
    let mut snapshot = Snapshot {
        data: data.into(),
        ..Default::default()
    };
    let metadata = snapshot.mut_metadata();
    metadata.index = meta.index;
    metadata.term = meta.term;
    metadata.set_conf_state(conf_state);
    snapshot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_the_store_encoding() {
        let mut entry = Entry::default();
        entry.set_entry_type(EntryType::EntryConfChangeV2);
        entry.index = 42;
        entry.term = 7;
        entry.data = b"payload".to_vec().into();
        entry.context = b"ctx".to_vec().into();
        let stored = encode_entry(&entry);
        assert_eq!((stored.index, stored.term), (42, 7));
        assert_eq!(decode_entry(&stored).expect("decodes"), entry);
    }

    #[test]
    fn corrupt_entries_are_errors_not_panics() {
        let stored = RaftEntry {
            index: 3,
            term: 1,
            data: vec![0x08, 0x09], // entry_type = 9
        };
        let err = decode_entry(&stored).expect_err("unknown type");
        assert!(err.to_string().contains("unknown type 9"), "{err}");
        let garbage = RaftEntry {
            index: 4,
            term: 1,
            data: vec![0xff],
        };
        assert!(decode_entry(&garbage).is_err());
    }

    #[test]
    fn conf_state_round_trips() {
        let cs = ConfState {
            voters: vec![1, 2, 3],
            learners: vec![4],
            ..Default::default()
        };
        let bytes = encode_conf_state(&cs);
        assert_eq!(decode_conf_state(&bytes).expect("decodes"), cs);
    }

    #[test]
    fn the_stored_snapshot_is_what_raft_is_given() {
        let dir = std::env::temp_dir().join(format!(
            "gridledger-orderer-storage-snapshot-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Arc::new(RaftStore::open(&dir).expect("store"));
        let storage = LogStorage::new(store.clone(), ConfState::default());
        let unavailable = |r: raft::Result<Snapshot>| {
            matches!(
                r,
                Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable
                ))
            )
        };
        assert!(
            unavailable(storage.snapshot(0, 2)),
            "no snapshot stored yet"
        );
        let cs = ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        };
        let meta = RaftSnapshotMeta {
            index: 12,
            term: 3,
            conf_state: encode_conf_state(&cs),
        };
        store.save_snapshot(&meta, b"data").expect("save");
        let snapshot = storage.snapshot(0, 2).expect("stored snapshot");
        assert_eq!(snapshot.get_metadata().index, 12);
        assert_eq!(snapshot.get_metadata().term, 3);
        assert_eq!(snapshot.get_metadata().get_conf_state(), &cs);
        assert_eq!(&snapshot.data[..], b"data");
        assert!(
            unavailable(storage.snapshot(13, 2)),
            "a snapshot older than the one requested is not given"
        );
        store
            .save_snapshot(
                &RaftSnapshotMeta {
                    conf_state: vec![0xff],
                    ..meta
                },
                b"data",
            )
            .expect("save");
        assert!(
            unavailable(storage.snapshot(0, 2)),
            "an unreadable snapshot is unavailable, never fatal"
        );
        drop(storage);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
