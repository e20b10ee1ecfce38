//! The redb tables of a channel ledger file (`ledger.redb`) and small helpers to read them.
//!
//! Layout (schema version [`SCHEMA_VERSION`]):
//!
//! | table          | key                                  | value                                   |
//! |----------------|--------------------------------------|-----------------------------------------|
//! | `meta`         | name                                 | bytes (see the `META_*` names)          |
//! | `blocks`       | block number                         | the block's protobuf bytes              |
//! | `block_hashes` | block number                         | the block's header hash                 |
//! | `hash_index`   | header hash                          | block number                            |
//! | `tx_index`     | tx id                                | (block, tx number, validation code)     |
//! | `state`        | (namespace, key)                     | (block, tx number, value)               |
//! | `history`      | (namespace, key, block, tx number)   | (tx id, value or none, timestamp)       |
//! | `state_metadata` | (namespace, key)                   | the key's metadata bytes (opaque here)  |
//! | `pvt_expiry`   | (expire_at block, namespace, key)    | (block, tx number) that wrote the key   |
//! | `transient`    | (tx id, sha256 of the bytes)         | (height when received, private rwset)   |
//! | `pvt_data`     | (block, tx number, `ns$$pcoll`)      | the collection's private `KVRWSet`      |
//! | `pvt_data_keys`| (`ns$$pcoll`, key, block, tx number) | ()                                      |
//! | `transient_by_height` | (height when received, tx id, sha256) | ()                         |
//! | `pvt_missing`  | (block, tx number)                   | (tx id, expected, attempts, next try)   |
//!
//! Numbers in `meta` are 8-byte big-endian.
//!
//! `state_metadata` holds the metadata of a key that exists in `state` (Fabric's
//! `VersionedValue.Metadata`; the peer stores an encoded `kvrwset.KVMetadataWrite` whose entries
//! include `VALIDATION_PARAMETER`). A row exists only while the key exists and has non-empty
//! metadata. Schema version 2 added the table; a version-1 file is upgraded in place on open
//! (the empty table is created, nothing else changes).
//!
//! Private data (schema version 3): `pvt_expiry` schedules the removal of a private value or
//! hash written by a collection with a `block_to_live`; a row is removed when its block
//! commits, and removes the key only if the key still has the version that scheduled it.
//! `transient` is the endorsing peer's transient store: the encoded `rwset.TxPvtReadWriteSet`
//! of a transaction it endorsed or received from another member peer, kept until the block
//! holding the transaction commits or [`crate::TRANSIENT_RETENTION_BLOCKS`] blocks later;
//! `transient_by_height` indexes it by the height at which it arrived. `pvt_data` keeps the
//! committed private write sets of the collections this peer is a member of (the bytes whose
//! hash the block carries), so that member peers that missed them can fetch them;
//! `pvt_data_keys` indexes them by key so a purge or an expiry removes every set holding the
//! key (a set cut short would no longer match its hash, so sets go whole). Index rows of a
//! removed set are dropped when their own key is next purged or expires. Versions 1 and 2
//! are upgraded in place (the missing tables are created).
//!
//! Schema version 4 added `pvt_missing`: the valid transactions whose private data this
//! member peer did not have at commit (`MissingPrivateData`), retried by the peer's
//! reconciler; a row goes when the data is stored or given up. Version 3 files are upgraded
//! in place.

use redb::{ReadableTable, TableDefinition};

use crate::error::LedgerError;

/// The on-disk layout version of `ledger.redb`; bump it whenever a table or encoding changes.
pub const SCHEMA_VERSION: u64 = 4;
/// The first layout, which lacks `state_metadata` and the private-data tables; upgraded on open.
pub(crate) const SCHEMA_VERSION_WITHOUT_METADATA: u64 = 1;
/// The second layout, which lacks the private-data tables; upgraded on open.
pub(crate) const SCHEMA_VERSION_WITHOUT_PRIVATE_DATA: u64 = 2;
/// The third layout, which lacks `pvt_missing`; upgraded on open.
pub(crate) const SCHEMA_VERSION_WITHOUT_MISSING: u64 = 3;

/// Key of `meta` holding [`SCHEMA_VERSION`] of the file.
pub(crate) const META_SCHEMA: &str = "schema_version";
/// Key of `meta` holding the channel id the file belongs to.
pub(crate) const META_CHANNEL: &str = "channel_id";
/// Key of `meta` holding the height (number of blocks).
pub(crate) const META_HEIGHT: &str = "height";
/// Key of `meta` holding the header hash of the last block (empty at height 0).
pub(crate) const META_TIP_HASH: &str = "tip_hash";
/// Key of `meta` holding the `previous_hash` of the last block (empty at height 0 and 1).
pub(crate) const META_PREVIOUS_HASH: &str = "previous_hash";

pub(crate) type StateKey = (&'static str, &'static str);
pub(crate) type StateValue = (u64, u64, &'static [u8]);
pub(crate) type HistoryKey = (&'static str, &'static str, u64, u64);
pub(crate) type HistoryValue = (&'static str, Option<&'static [u8]>, Option<(i64, i32)>);

pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
pub(crate) const BLOCK_HASHES: TableDefinition<u64, &[u8]> = TableDefinition::new("block_hashes");
pub(crate) const HASH_INDEX: TableDefinition<&[u8], u64> = TableDefinition::new("hash_index");
pub(crate) const TX_INDEX: TableDefinition<&str, (u64, u64, u8)> = TableDefinition::new("tx_index");
pub(crate) const STATE: TableDefinition<StateKey, StateValue> = TableDefinition::new("state");
pub(crate) const HISTORY: TableDefinition<HistoryKey, HistoryValue> =
    TableDefinition::new("history");
pub(crate) const STATE_METADATA: TableDefinition<StateKey, &[u8]> =
    TableDefinition::new("state_metadata");
pub(crate) type ExpiryKey = (u64, &'static str, &'static str);
pub(crate) const PVT_EXPIRY: TableDefinition<ExpiryKey, (u64, u64)> =
    TableDefinition::new("pvt_expiry");
pub(crate) type TransientKey = (&'static str, &'static [u8]);
pub(crate) const TRANSIENT: TableDefinition<TransientKey, (u64, &[u8])> =
    TableDefinition::new("transient");
pub(crate) type PvtDataKey = (u64, u64, &'static str);
pub(crate) const PVT_DATA: TableDefinition<PvtDataKey, &[u8]> = TableDefinition::new("pvt_data");
pub(crate) type PvtDataKeysKey = (&'static str, &'static str, u64, u64);
pub(crate) const PVT_DATA_KEYS: TableDefinition<PvtDataKeysKey, ()> =
    TableDefinition::new("pvt_data_keys");
pub(crate) type TransientHeightKey = (u64, &'static str, &'static [u8]);
pub(crate) const TRANSIENT_BY_HEIGHT: TableDefinition<TransientHeightKey, ()> =
    TableDefinition::new("transient_by_height");
pub(crate) type MissingValue = (&'static str, &'static [u8], u32, u64);
pub(crate) const PVT_MISSING: TableDefinition<(u64, u64), MissingValue> =
    TableDefinition::new("pvt_missing");

/// Reads an 8-byte big-endian number stored under `key` in a `meta`-shaped table.
pub(crate) fn read_u64(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<u64>, LedgerError> {
    let Some(guard) = table.get(key)? else {
        return Ok(None);
    };
    let bytes: [u8; 8] = guard.value().try_into().map_err(|_| {
        LedgerError::corrupt(format!(
            "meta entry {key:?} is {} bytes long, expected 8",
            guard.value().len()
        ))
    })?;
    Ok(Some(u64::from_be_bytes(bytes)))
}

/// Reads the bytes stored under `key` in a `meta`-shaped table.
pub(crate) fn read_bytes(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<Vec<u8>>, LedgerError> {
    Ok(table.get(key)?.map(|g| g.value().to_vec()))
}
