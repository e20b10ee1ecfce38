//! What validation needs to know about the committed ledger, as a trait, with its two
//! implementations: [`InMemoryState`] (a model for tests and simulations) and [`LedgerState`]
//! (a redb [`StateSnapshot`] plus the ledger's tx-id index, for the committer).
//!
//! Validation only ever asks four questions of the committed state: the version of a key, the
//! versions of the keys in a range (for phantom-read checks), a key's metadata (for key-level
//! endorsement policies), and whether a transaction id was already committed. Values never
//! matter to validation, so they are not part of the trait.
//!
//! Key metadata is stored as an encoded `kvrwset.KVMetadataWrite` with an empty key and its
//! entries sorted by name ([`encode_metadata`]); the ledger keeps those bytes next to the value.
//!
//! Private-data hashes live in *derived namespaces*, as Fabric keeps them: the hashed key
//! `key_hash` of collection `coll` in namespace `ns` is the key `hex(key_hash)` of namespace
//! `ns$$hcoll` (see [`hashed_namespace`]). Chaincode names cannot contain `$`, so derived
//! namespaces never collide with a chaincode's own.

use std::collections::{BTreeMap, HashSet};

use gridledger_ledger::{BlockUpdates, Ledger, StateSnapshot};
use gridledger_proto::kvrwset;
use prost::Message;

use super::ValidationError;

/// The committed world state and transaction index as of the last committed block.
///
/// Implementations must answer from one consistent view for the duration of a
/// [`validate_block`](super::validate_block) call, and may be asked from several threads.
pub trait CommittedState: Sync {
    /// The version of `key` in `namespace`, or `None` when the key does not exist.
    fn version(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<kvrwset::Version>, ValidationError>;

    /// The keys of `namespace` in `[start, end)` (`end == ""` means no upper bound) with their
    /// versions, in byte order.
    fn range_versions(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
    ) -> Result<Vec<(String, kvrwset::Version)>, ValidationError>;

    /// The first `limit` keys of [`range_versions`](Self::range_versions). Validation pages
    /// through long ranges with this (doubling the page each time); the default reads the
    /// whole range and truncates it, so a store with large namespaces should override it.
    fn range_versions_up_to(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, kvrwset::Version)>, ValidationError> {
        let mut keys = self.range_versions(namespace, start, end)?;
        keys.truncate(limit);
        Ok(keys)
    }

    /// Whether a transaction with this id is already in a committed block (valid or not).
    fn tx_id_exists(&self, tx_id: &str) -> Result<bool, ValidationError>;

    /// The stored metadata of `key` in `namespace` ([`encode_metadata`]'s format), or `None`
    /// when the key does not exist or has no metadata.
    fn metadata(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, ValidationError>;
}

/// The stored form of a key's metadata: a `KVMetadataWrite` with an empty key and the entries
/// sorted by name (a later entry of the same name wins). No entries, or only empty values,
/// give empty bytes, which the ledger stores as "no metadata".
pub fn encode_metadata(entries: &[kvrwset::KvMetadataEntry]) -> Vec<u8> {
    let sorted: BTreeMap<&str, &[u8]> = entries
        .iter()
        .filter(|e| !e.value.is_empty())
        .map(|e| (e.name.as_str(), e.value.as_slice()))
        .collect();
    if sorted.is_empty() {
        return Vec::new();
    }
    kvrwset::KvMetadataWrite {
        key: String::new(),
        entries: sorted
            .into_iter()
            .map(|(name, value)| kvrwset::KvMetadataEntry {
                name: name.to_owned(),
                value: value.to_vec(),
            })
            .collect(),
    }
    .encode_to_vec()
}

/// The entries of stored metadata, by name; `None` when the bytes do not decode.
pub fn decode_metadata(bytes: &[u8]) -> Option<BTreeMap<String, Vec<u8>>> {
    let write = kvrwset::KvMetadataWrite::decode(bytes).ok()?;
    Some(
        write
            .entries
            .into_iter()
            .map(|e| (e.name, e.value))
            .collect(),
    )
}

/// The derived namespace holding the hashes of collection `collection` of `namespace`
/// (Fabric's `ns$$hcoll`).
pub fn hashed_namespace(namespace: &str, collection: &str) -> String {
    format!("{namespace}$$h{collection}")
}

/// The key under which a private-data key hash is kept in its derived namespace.
pub fn hashed_key(key_hash: &[u8]) -> String {
    hex::encode(key_hash)
}

/// A committed state held in memory: the reference model of the ledger's world state for
/// tests and simulations. Apply each block's [`BlockUpdates`] with [`InMemoryState::apply`],
/// as `Ledger::commit_block` does.
#[derive(Debug, Clone, Default)]
pub struct InMemoryState {
    keys: BTreeMap<String, BTreeMap<String, (Vec<u8>, kvrwset::Version)>>,
    metadata: BTreeMap<(String, String), Vec<u8>>,
    tx_ids: HashSet<String>,
}

impl InMemoryState {
    /// An empty state (a channel with only its genesis block).
    pub fn new() -> InMemoryState {
        InMemoryState::default()
    }

    /// Records a committed block: every transaction id (valid or not) and the writes of the
    /// VALID transactions at version `(block_number, tx_num)`, deletes removing the key (and
    /// its metadata), then their metadata writes with the ledger's rules
    /// (`gridledger_ledger::MetadataWrite`).
    pub fn apply(&mut self, block_number: u64, updates: &BlockUpdates) {
        for tx in &updates.txs {
            self.tx_ids.insert(tx.tx_id.clone());
            if tx.validation_code != 0 {
                continue;
            }
            let version = kvrwset::Version {
                block_num: block_number,
                tx_num: tx.tx_num,
            };
            for write in &tx.writes {
                let ns = self.keys.entry(write.namespace.clone()).or_default();
                match &write.value {
                    Some(value) => {
                        ns.insert(write.key.clone(), (value.clone(), version));
                    }
                    None => {
                        ns.remove(&write.key);
                        self.metadata
                            .remove(&(write.namespace.clone(), write.key.clone()));
                    }
                }
            }
            for write in &tx.metadata_writes {
                let Some(entry) = self
                    .keys
                    .get_mut(&write.namespace)
                    .and_then(|ns| ns.get_mut(&write.key))
                else {
                    continue;
                };
                entry.1 = version;
                let id = (write.namespace.clone(), write.key.clone());
                match write.metadata.clone().filter(|m| !m.is_empty()) {
                    Some(metadata) => {
                        self.metadata.insert(id, metadata);
                    }
                    None => {
                        self.metadata.remove(&id);
                    }
                }
            }
        }
    }

    /// The committed value and version of a key.
    pub fn get(&self, namespace: &str, key: &str) -> Option<(&[u8], kvrwset::Version)> {
        self.keys
            .get(namespace)
            .and_then(|ns| ns.get(key))
            .map(|(value, version)| (value.as_slice(), *version))
    }

    /// Every key in (namespace, key) byte order with its value and version (the order of the
    /// ledger's state table, so a stored state can be walked beside it).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str, &[u8], kvrwset::Version)> + '_ {
        self.keys.iter().flat_map(|(namespace, keys)| {
            keys.iter().map(move |(key, (value, version))| {
                (namespace.as_str(), key.as_str(), value.as_slice(), *version)
            })
        })
    }

    /// Removes a key and its metadata outside any transaction, as the ledger does when a
    /// private-data key's `block_to_live` ends.
    pub fn remove(&mut self, namespace: &str, key: &str) {
        if let Some(keys) = self.keys.get_mut(namespace) {
            keys.remove(key);
        }
        self.metadata
            .remove(&(namespace.to_owned(), key.to_owned()));
    }

    /// How many keys `namespace` holds.
    pub fn len(&self, namespace: &str) -> usize {
        self.keys.get(namespace).map_or(0, BTreeMap::len)
    }

    /// Whether `namespace` holds no key.
    pub fn is_empty(&self, namespace: &str) -> bool {
        self.len(namespace) == 0
    }
}

impl CommittedState for InMemoryState {
    fn version(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<kvrwset::Version>, ValidationError> {
        Ok(self.get(namespace, key).map(|(_, version)| version))
    }

    fn range_versions(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
    ) -> Result<Vec<(String, kvrwset::Version)>, ValidationError> {
        self.range_versions_up_to(namespace, start, end, usize::MAX)
    }

    fn range_versions_up_to(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, kvrwset::Version)>, ValidationError> {
        let Some(ns) = self.keys.get(namespace) else {
            return Ok(Vec::new());
        };
        Ok(ns
            .range(start.to_string()..)
            .take_while(|(key, _)| end.is_empty() || key.as_str() < end)
            .take(limit)
            .map(|(key, (_, version))| (key.clone(), *version))
            .collect())
    }

    fn tx_id_exists(&self, tx_id: &str) -> Result<bool, ValidationError> {
        Ok(self.tx_ids.contains(tx_id))
    }

    fn metadata(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, ValidationError> {
        Ok(self
            .metadata
            .get(&(namespace.to_owned(), key.to_owned()))
            .cloned())
    }
}

/// The committed state of a real ledger: world state from one [`StateSnapshot`], duplicate
/// detection from the ledger's tx-id index.
///
/// Take the snapshot and validate before committing anything else to the ledger: the tx-id
/// index is read live, so the two agree only while no other block is being committed, which
/// the committer (the ledger's only writer on a peer) guarantees.
pub struct LedgerState<'a> {
    snapshot: &'a StateSnapshot,
    ledger: &'a Ledger,
}

impl<'a> LedgerState<'a> {
    /// Reads world state through `snapshot` and transaction ids through `ledger`.
    pub fn new(snapshot: &'a StateSnapshot, ledger: &'a Ledger) -> LedgerState<'a> {
        LedgerState { snapshot, ledger }
    }
}

impl std::fmt::Debug for LedgerState<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerState")
            .field("channel", &self.ledger.channel_id())
            .field("height", &self.snapshot.height())
            .finish()
    }
}

fn to_proto(version: gridledger_ledger::Version) -> kvrwset::Version {
    kvrwset::Version {
        block_num: version.block_num,
        tx_num: version.tx_num,
    }
}

impl CommittedState for LedgerState<'_> {
    fn version(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<kvrwset::Version>, ValidationError> {
        Ok(self
            .snapshot
            .get(namespace, key)?
            .map(|value| to_proto(value.version)))
    }

    fn range_versions(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
    ) -> Result<Vec<(String, kvrwset::Version)>, ValidationError> {
        self.range_versions_up_to(namespace, start, end, usize::MAX)
    }

    fn range_versions_up_to(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, kvrwset::Version)>, ValidationError> {
        Ok(self
            .snapshot
            .range(namespace, start, end, limit)?
            .into_iter()
            .map(|(key, value)| (key, to_proto(value.version)))
            .collect())
    }

    fn tx_id_exists(&self, tx_id: &str) -> Result<bool, ValidationError> {
        Ok(self.ledger.tx_location(tx_id)?.is_some())
    }

    fn metadata(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, ValidationError> {
        Ok(self.snapshot.metadata(namespace, key)?)
    }
}
