//! `ChaincodeStub`: a chaincode's view of one transaction, and the recorder of everything the
//! transaction read and wrote.
//!
//! Semantics follow Fabric's transaction simulator (`lockbased_txmgr`) and its shims:
//! - `get_state` reads the committed world state. Like Fabric, it does **not** see the
//!   transaction's own pending writes ("GetState doesn't consider data modified by PutState that
//!   has not been committed"); the first read of a key records a `KVRead` with the committed
//!   version (none if the key is missing), later reads come from the read cache and record
//!   nothing new, so the read set stays one entry per key.
//! - `put_state(k, v)` records `KVWrite{k, is_delete: v.is_empty(), v}`; the last write of a key
//!   wins; `del_state(k)` is `put_state(k, "")`.
//! - `get_state_by_range(start, end)` scans committed keys in `[start, end)` in byte order
//!   (empty `end` = unbounded, empty `start` → `"\x01"` so composite keys are excluded) and
//!   records a `RangeQueryInfo` with the raw reads, so the validator can detect phantoms.
//!   Range reads are not added to the plain read set, as in Fabric.
//! - Paginated range queries return one page and a bookmark (the first key of the next page).
//!   As in Fabric's transaction simulator, they are for read-only transactions: a paginated
//!   query after a write, or a write after a paginated query, is refused.
//! - Key metadata (`get_state_metadata`, `set_state_metadata`): reading it records a `KVRead`
//!   of the key with its committed version, like `get_state`; setting an entry records a
//!   `KVMetadataWrite` of the key holding that entry alone (last call wins), as Fabric's peer
//!   does for the shim's PUT_STATE_METADATA. The [`VALIDATION_PARAMETER`] entry is the key's
//!   endorsement policy, enforced at validation.
//! - `invoke_chaincode` runs another chaincode through a [`ChaincodeHost`]. On the same
//!   channel the callee runs inside this stub: its reads and writes are recorded under its own
//!   namespace in the same read-write set, and its event is discarded (only the invoked
//!   chaincode's event reaches the transaction). On another channel the callee runs over that
//!   channel's state in a read-only stub whose reads are not recorded; its writes are refused.
//!   Calls nest at most [`MAX_CALL_DEPTH`] deep.
//! - Private data (`get_private_data`, `put_private_data`, …; layout in [`crate::private`]):
//!   a read of a private key records a `KVReadHash` (key hash, committed version of the hash)
//!   in the collection's hashed read set and fails when this peer's private value is not at
//!   the version of the committed hash (Fabric: "private data matching public hash version is
//!   not available" — a non-member peer holds only hashes). Writes record the value in the
//!   private read-write set and `KVWriteHash{sha256(key), sha256(value)}` in the public one;
//!   a purge records `is_delete` and `is_purge`. The collection must be defined for the
//!   chaincode (or be an implicit org collection); `member_only_read`/`member_only_write`
//!   refuse clients of other organizations. Private range queries record nothing, and, as in
//!   Fabric, a transaction that ran one may not write.
//! - Private key metadata (`get_private_data_metadata`, `set_private_data_metadata`, and the
//!   `VALIDATION_PARAMETER` wrappers): read from the committed metadata of the key's hash (on
//!   every peer), recording a `KVReadHash`; a write records `KVMetadataWriteHash` in the
//!   collection's hashed set and `KVMetadataWrite` in its private set, as Fabric's simulator
//!   does for the shim's PUT_STATE_METADATA with a collection.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use gridledger_proto::kvrwset::{
    self, KvMetadataEntry, KvMetadataWrite, KvRead, KvWrite, KvrwSet, QueryReads, RangeQueryInfo,
};
use gridledger_proto::queryresult::KeyModification;
use gridledger_proto::{prost_types, protos};
use thiserror::Error;

use crate::composite::{self, COMPOSITE_KEY_NAMESPACE, CompositeKeyError};
use crate::private::{
    self, CollectionAccess, IMPLICIT_COLLECTION_PREFIX, hashed_key, hashed_namespace,
    private_namespace,
};

/// Substitute for an empty range start key, as Fabric's shims do: it sorts after every
/// composite key (which start with U+0000) and before every other non-empty key.
pub const EMPTY_KEY_SUBSTITUTE: &str = "\u{1}";

/// The most results one range query returns (Fabric's `ledger.state.totalQueryLimit`); a scan
/// that hits it stops there, with `itr_exhausted = false` in its `RangeQueryInfo`.
pub const TOTAL_QUERY_LIMIT: usize = 100_000;

/// The metadata entry holding a key's endorsement policy (Fabric's
/// `MetaDataKeys.VALIDATION_PARAMETER`): a marshalled `common.SignaturePolicyEnvelope`.
pub const VALIDATION_PARAMETER: &str = "VALIDATION_PARAMETER";

/// How deep chaincode-to-chaincode calls may nest: the invoked chaincode is depth 0, a chaincode
/// it calls depth 1, and a call that would run at a greater depth than this is refused.
pub const MAX_CALL_DEPTH: usize = 8;

/// One page of a paginated query: the (key, value) rows and Fabric's `QueryResponseMetadata`
/// (records fetched, bookmark of the next page — empty after the last page).
pub type Page = (Vec<(String, Vec<u8>)>, protos::QueryResponseMetadata);

/// (key, value) rows of a range query.
type Rows = Vec<(String, Vec<u8>)>;

/// A key's metadata: entry name → value.
pub type Metadata = BTreeMap<String, Vec<u8>>;

/// A consistent, read-only view of the committed world state, per chaincode namespace.
///
/// The peer adapts its ledger snapshot to this; tests use an in-memory map. Errors are plain
/// text because the chaincode can do nothing but report them.
pub trait StateReader: Send + Sync {
    /// The committed value and version of `key`, or `None` if it does not exist.
    fn get(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<(Vec<u8>, kvrwset::Version)>, String>;

    /// Committed keys in `[start, end)` in byte order (`end == ""` = unbounded), at most `limit`.
    fn range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>, kvrwset::Version)>, String>;

    /// The writes of `key` by valid transactions, newest first, at most `limit` (Fabric's
    /// `GetHistoryForKey`). History is not part of the read-write set. Readers without a
    /// history index keep this default, which reports that history is unavailable.
    fn history(
        &self,
        namespace: &str,
        key: &str,
        limit: usize,
    ) -> Result<Vec<KeyModification>, String> {
        let _ = (namespace, key, limit);
        Err("key history is not available from this state reader".to_owned())
    }

    /// The committed metadata of `key` (empty when the key does not exist or has none).
    /// Readers of a state without metadata keep this default, which reports none.
    fn metadata(&self, namespace: &str, key: &str) -> Result<Metadata, String> {
        let _ = (namespace, key);
        Ok(Metadata::new())
    }

    /// The access rules of private data collection `collection` of chaincode `namespace`, or
    /// `None` when the chaincode's definition has no such collection. Readers that know no
    /// definitions keep this default: only the implicit per-organization collections exist.
    fn collection(
        &self,
        namespace: &str,
        collection: &str,
    ) -> Result<Option<CollectionAccess>, String> {
        let _ = namespace;
        Ok(collection
            .strip_prefix(IMPLICIT_COLLECTION_PREFIX)
            .filter(|msp_id| !msp_id.is_empty())
            .map(CollectionAccess::implicit))
    }
}

/// What runs the chaincodes a chaincode calls (`invoke_chaincode`): the peer, or a test.
pub trait ChaincodeHost: Send + Sync {
    /// Runs chaincode `name` of channel `stub.channel_id()` in `stub`, whose namespace and
    /// arguments are already the callee's; `Err` explains why it could not run (not defined
    /// on the channel, not installed, unreachable). The stub records what it reads and writes.
    fn run(&self, name: &str, stub: &mut ChaincodeStub<'_>) -> Result<protos::Response, String>;

    /// A view of channel `channel_id`'s committed state, for read-only calls across channels;
    /// `Err` when this peer has not joined that channel.
    fn channel_state(&self, channel_id: &str) -> Result<Box<dyn StateReader + '_>, String>;
}

/// Everything about one proposal that a chaincode may observe, besides the world state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Invocation {
    /// The channel the proposal is for.
    pub channel_id: String,
    /// The transaction id (`hex(sha256(nonce || creator))`).
    pub tx_id: String,
    /// The chaincode name the proposal targets.
    pub chaincode: String,
    /// `ChaincodeInput.args`; `args[0]` is the function (optionally `contract:function`).
    pub args: Vec<Vec<u8>>,
    /// The proposal's transient map (never written to the ledger).
    pub transient: BTreeMap<String, Vec<u8>>,
    /// The creator's serialized identity (`msp.SerializedIdentity` bytes).
    pub creator: Vec<u8>,
    /// The creator's MSP id.
    pub creator_msp_id: String,
    /// Fabric-CA attributes from the creator's certificate (e.g. `pod`, `meter`).
    pub creator_attributes: BTreeMap<String, String>,
    /// The channel header's timestamp (the transaction's time; never the local clock).
    pub timestamp: Option<prost_types::Timestamp>,
    /// The client's signed proposal, when the invocation came from one.
    pub signed_proposal: Option<protos::SignedProposal>,
    /// Whether this is the chaincode's initialization (`ChaincodeInput.is_init` of a
    /// definition that requires it; the peer checks it runs once per definition version).
    pub is_init: bool,
}

/// Why a stub operation failed. The chaincode usually turns it into a status-500 response.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StubError {
    /// The world state could not be read (a peer-side failure, not the chaincode's fault).
    #[error("failed to read key {key:?} of namespace {namespace:?} from world state: {reason}")]
    State {
        /// The namespace read.
        namespace: String,
        /// The key or range read.
        key: String,
        /// What the state reader reported.
        reason: String,
    },
    /// `put_state` or `del_state` was given an empty key.
    #[error("key must not be an empty string")]
    EmptyKey,
    /// A simple-key API (a range bound) was given a key in the composite-key namespace.
    #[error(
        "first character of the key {0:?} is U+0000, which is reserved for composite keys; \
         use the partial composite key query instead"
    )]
    CompositeKeyInSimpleRange(String),
    /// A composite key could not be built.
    #[error(transparent)]
    CompositeKey(#[from] CompositeKeyError),
    /// `set_event` was given an empty event name.
    #[error("event name can not be empty string")]
    EmptyEventName,
    /// A paginated query in a transaction that has written (Fabric's rule).
    #[error(
        "txid [{0}]: unsupported transaction. Paginated queries are supported only in a read-only transaction"
    )]
    PaginatedQueryAfterWrite(String),
    /// A write in a transaction that has run a paginated query (Fabric's rule).
    #[error(
        "txid [{0}]: unsupported transaction. Transaction has already performed a paginated query. Writes are not allowed"
    )]
    WriteAfterPaginatedQuery(String),
    /// A paginated query with a page size that is not positive.
    #[error("page size must be positive, got {0}")]
    InvalidPageSize(i32),
    /// A private-data operation named a collection the chaincode's definition lacks.
    #[error("collection {collection:?} is not defined for chaincode {namespace:?}")]
    UndefinedCollection {
        /// The chaincode.
        namespace: String,
        /// The collection named.
        collection: String,
    },
    /// `member_only_read`/`member_only_write` refused a client of a non-member organization.
    #[error(
        "tx from client of organization {msp_id:?} cannot {action} private data of collection {collection:?}: only members ({members}) may"
    )]
    NotCollectionMember {
        /// The client's MSP id.
        msp_id: String,
        /// "read" or "write".
        action: &'static str,
        /// The collection.
        collection: String,
        /// The member MSP ids, comma-separated.
        members: String,
    },
    /// This peer's private value is not the one whose hash is committed (a non-member peer,
    /// or one that has not received the data yet).
    #[error(
        "private data of key {key:?} in collection {collection:?} matching the public hash version is not available on this peer"
    )]
    PrivateDataUnavailable {
        /// The collection.
        collection: String,
        /// The key.
        key: String,
    },
    /// A write after a private-data range query (Fabric's rule).
    #[error(
        "txid [{0}]: unsupported transaction. Queries on private data are supported only in a read-only transaction"
    )]
    WriteAfterPrivateQuery(String),
    /// A write by a chaincode called from another channel.
    #[error(
        "chaincode {namespace:?} on channel {channel:?} was called from channel {caller_channel:?} and may only read: writes across channels are not allowed"
    )]
    ReadOnlyCall {
        /// The callee's namespace.
        namespace: String,
        /// The callee's channel.
        channel: String,
        /// The caller's channel.
        caller_channel: String,
    },
    /// `invoke_chaincode` without a host to run chaincodes.
    #[error("calling another chaincode is not available in this simulation")]
    NoChaincodeHost,
    /// `invoke_chaincode` would nest deeper than [`MAX_CALL_DEPTH`].
    #[error("calling chaincode {name:?} would nest chaincode calls deeper than {MAX_CALL_DEPTH}")]
    CallDepth {
        /// The chaincode that was to be called.
        name: String,
    },
    /// The called chaincode could not be run.
    #[error("cannot call chaincode {name:?} on channel {channel:?}: {reason}")]
    Invoke {
        /// The chaincode called.
        name: String,
        /// Its channel.
        channel: String,
        /// Why it could not run.
        reason: String,
    },
}

/// The committed value and version of a key as first read in this transaction.
type CachedRead = Option<(Vec<u8>, kvrwset::Version)>;

/// What one namespace of the transaction read and wrote.
#[derive(Default, Clone)]
struct NsRecord {
    /// Read set and read cache: key → committed value and version at first read.
    reads: BTreeMap<String, CachedRead>,
    /// Range queries in execution order.
    range_queries: Vec<RangeQueryInfo>,
    /// Write set: key → value (empty = delete); last write wins.
    writes: BTreeMap<String, Vec<u8>>,
    /// Metadata write set: key → the key's new metadata; last write wins.
    metadata_writes: BTreeMap<String, Metadata>,
    /// Private data by collection name.
    collections: BTreeMap<String, CollectionRecord>,
}

impl NsRecord {
    fn is_empty(&self) -> bool {
        self.reads.is_empty()
            && self.range_queries.is_empty()
            && self.writes.is_empty()
            && self.metadata_writes.is_empty()
            && self.collections.is_empty()
    }
}

/// What one transaction read and wrote in one private data collection.
#[derive(Default, Clone)]
struct CollectionRecord {
    /// Hashed read set: key hash → committed version of the hash at first read.
    hashed_reads: BTreeMap<Vec<u8>, Option<kvrwset::Version>>,
    /// Private write set: key → write; last write wins.
    writes: BTreeMap<String, PrivateWrite>,
    /// Private key metadata writes: key → the key's new metadata; last write wins.
    metadata_writes: BTreeMap<String, Metadata>,
}

/// One private write.
#[derive(Clone)]
enum PrivateWrite {
    /// A new value.
    Put(Vec<u8>),
    /// A delete.
    Delete,
    /// A purge: the value goes from the state of every member peer, the hash stays in blocks.
    Purge,
}

/// One collection's share of a finished transaction: the hashed read-write set (public) and
/// the private write set (`None` when the transaction only read the collection).
pub(crate) type CollectionOutput = (String, kvrwset::HashedRwSet, Option<KvrwSet>);

/// The callee side of a call across channels: the caller's channel.
#[derive(Debug, Clone)]
struct ReadOnly {
    caller_channel: String,
}

/// A chaincode's handle on one transaction being simulated.
pub struct ChaincodeStub<'a> {
    /// The namespace of the chaincode running now (the callee's during a call).
    namespace: String,
    /// The arguments of the chaincode running now.
    args: Vec<Vec<u8>>,
    invocation: &'a Invocation,
    state: &'a dyn StateReader,
    host: Option<&'a dyn ChaincodeHost>,
    /// The call depth of the chaincode running now (0 = the invoked chaincode).
    depth: usize,
    /// Set for a chaincode called from another channel: writes are refused.
    read_only: Option<ReadOnly>,
    /// Reads and writes by namespace.
    records: BTreeMap<String, NsRecord>,
    /// The event set by the chaincode (name, payload); last call wins.
    event: Option<(String, Vec<u8>)>,
    /// The first world-state failure, if any: it fails the whole simulation.
    state_failure: Option<StubError>,
    /// Whether anything was written (for the pagination rule).
    write_performed: bool,
    /// Whether a paginated query ran (for the pagination rule).
    paginated_query_performed: bool,
    /// Whether a private-data range query ran (writes are then refused).
    private_query_performed: bool,
}

/// What a finished simulation leaves behind (used by `simulate`).
pub(crate) struct StubOutput {
    /// The KV read-write set of every namespace touched, by namespace, with its collections.
    pub(crate) kv_rwsets: Vec<(String, KvrwSet, Vec<CollectionOutput>)>,
    /// The event (name, payload), if one was set.
    pub(crate) event: Option<(String, Vec<u8>)>,
    /// The first world-state failure, if any.
    pub(crate) state_failure: Option<StubError>,
}

impl<'a> ChaincodeStub<'a> {
    /// A stub for running `invocation` as chaincode `namespace` over `state`.
    pub fn new(namespace: &str, invocation: &'a Invocation, state: &'a dyn StateReader) -> Self {
        ChaincodeStub {
            namespace: namespace.to_owned(),
            args: invocation.args.clone(),
            invocation,
            state,
            host: None,
            depth: 0,
            read_only: None,
            records: BTreeMap::new(),
            event: None,
            state_failure: None,
            write_performed: false,
            paginated_query_performed: false,
            private_query_performed: false,
        }
    }

    /// This stub with `host` running the chaincodes it calls (`invoke_chaincode`).
    pub fn with_host(mut self, host: &'a dyn ChaincodeHost) -> Self {
        self.host = Some(host);
        self
    }

    /// The record of the current namespace.
    fn record(&mut self) -> &mut NsRecord {
        self.records.entry(self.namespace.clone()).or_default()
    }

    /// Records a world-state failure (the first one is kept) and returns it.
    fn state_error(&mut self, key: &str, reason: String) -> StubError {
        let err = StubError::State {
            namespace: self.namespace.clone(),
            key: key.to_owned(),
            reason,
        };
        self.state_failure.get_or_insert_with(|| err.clone());
        err
    }

    /// The committed value of `key`, or `None` if it does not exist (Fabric's `GetState`).
    ///
    /// Pending writes of this transaction are not visible, as in Fabric. The first read records
    /// a `KVRead` with the committed version; repeated reads are served from the cache.
    pub fn get_state(&mut self, key: &str) -> Result<Option<Vec<u8>>, StubError> {
        Ok(self.read(key)?.map(|(value, _)| value))
    }

    /// The committed value and version of `key`, recording a `KVRead` on first read.
    fn read(&mut self, key: &str) -> Result<CachedRead, StubError> {
        if let Some(cached) = self.record().reads.get(key) {
            return Ok(cached.clone());
        }
        let read = match self.state.get(&self.namespace, key) {
            Ok(read) => read,
            Err(reason) => return Err(self.state_error(key, reason)),
        };
        self.record().reads.insert(key.to_owned(), read.clone());
        Ok(read)
    }

    /// Checks that the running chaincode may write: not called from another channel, and no
    /// paginated query in this transaction. Marks the transaction as writing.
    fn check_write(&mut self, key: &str) -> Result<(), StubError> {
        if key.is_empty() {
            return Err(StubError::EmptyKey);
        }
        if let Some(read_only) = &self.read_only {
            return Err(StubError::ReadOnlyCall {
                namespace: self.namespace.clone(),
                channel: self.invocation.channel_id.clone(),
                caller_channel: read_only.caller_channel.clone(),
            });
        }
        if self.paginated_query_performed {
            return Err(StubError::WriteAfterPaginatedQuery(self.tx_id().to_owned()));
        }
        if self.private_query_performed {
            return Err(StubError::WriteAfterPrivateQuery(self.tx_id().to_owned()));
        }
        self.write_performed = true;
        Ok(())
    }

    /// Writes `value` to `key` (Fabric's `PutState`); an empty value is a delete.
    pub fn put_state(&mut self, key: &str, value: &[u8]) -> Result<(), StubError> {
        self.check_write(key)?;
        self.record().writes.insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    /// The committed metadata of `key` (Fabric's `GetStateMetadata`); empty when the key does
    /// not exist or has none. Records a `KVRead` of the key with its committed version.
    pub fn get_state_metadata(&mut self, key: &str) -> Result<Metadata, StubError> {
        if self.read(key)?.is_none() {
            return Ok(Metadata::new());
        }
        match self.state.metadata(&self.namespace, key) {
            Ok(metadata) => Ok(metadata),
            Err(reason) => Err(self.state_error(key, reason)),
        }
    }

    /// Sets metadata entry `name` of `key` to `value` (the shim's `SetStateMetadata`): records
    /// a `KVMetadataWrite` of `key` holding this entry alone, replacing an earlier metadata
    /// write of the key in this transaction. At commit it replaces the key's metadata, if the
    /// key then exists. An empty `value` removes the entry.
    pub fn set_state_metadata(
        &mut self,
        key: &str,
        name: &str,
        value: &[u8],
    ) -> Result<(), StubError> {
        self.check_write(key)?;
        let mut metadata = Metadata::new();
        metadata.insert(name.to_owned(), value.to_vec());
        self.record()
            .metadata_writes
            .insert(key.to_owned(), metadata);
        Ok(())
    }

    /// The committed endorsement policy of `key` (Fabric's `GetStateValidationParameter`):
    /// a marshalled `SignaturePolicyEnvelope`, or `None` when the key has none.
    pub fn get_state_validation_parameter(
        &mut self,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StubError> {
        Ok(self
            .get_state_metadata(key)?
            .remove(VALIDATION_PARAMETER)
            .filter(|policy| !policy.is_empty()))
    }

    /// Sets the endorsement policy of `key` (Fabric's `SetStateValidationParameter`): from the
    /// next block on, writes of the key must satisfy `policy` (a marshalled
    /// `SignaturePolicyEnvelope`, see [`crate::KeyEndorsementPolicy`]) instead of the
    /// chaincode's endorsement policy. An empty `policy` removes it.
    pub fn set_state_validation_parameter(
        &mut self,
        key: &str,
        policy: &[u8],
    ) -> Result<(), StubError> {
        self.set_state_metadata(key, VALIDATION_PARAMETER, policy)
    }

    /// Deletes `key` (Fabric's `DelState`): a `KVWrite` with `is_delete = true`.
    pub fn del_state(&mut self, key: &str) -> Result<(), StubError> {
        self.put_state(key, &[])
    }

    /// Committed keys in `[start, end)` with their values, in byte order (Fabric's
    /// `GetStateByRange`). An empty `end` is unbounded; an empty `start` becomes `"\x01"`, so
    /// composite keys are never returned. At most [`TOTAL_QUERY_LIMIT`] results.
    pub fn get_state_by_range(
        &mut self,
        start: &str,
        end: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StubError> {
        let start = if start.is_empty() {
            EMPTY_KEY_SUBSTITUTE
        } else {
            start
        };
        for key in [start, end] {
            if key.starts_with(COMPOSITE_KEY_NAMESPACE) {
                return Err(StubError::CompositeKeyInSimpleRange(key.to_owned()));
            }
        }
        self.range_scan(start, end, TOTAL_QUERY_LIMIT)
            .map(|(rows, _)| rows)
    }

    /// One page of [`get_state_by_range`](Self::get_state_by_range) (Fabric's
    /// `GetStateByRangeWithPagination`): at most `page_size` keys from `bookmark` (or `start`
    /// when the bookmark is empty), with the page's metadata — the number of records fetched
    /// and the bookmark of the next page (empty after the last page). Only in read-only
    /// transactions.
    pub fn get_state_by_range_with_pagination(
        &mut self,
        start: &str,
        end: &str,
        page_size: i32,
        bookmark: &str,
    ) -> Result<Page, StubError> {
        let start = if start.is_empty() {
            EMPTY_KEY_SUBSTITUTE
        } else {
            start
        };
        for key in [start, end] {
            if key.starts_with(COMPOSITE_KEY_NAMESPACE) {
                return Err(StubError::CompositeKeyInSimpleRange(key.to_owned()));
            }
        }
        self.get_state_by_key_range_with_pagination(start, end, page_size, bookmark)
    }

    /// One page of [`get_state_by_partial_composite_key`](Self::get_state_by_partial_composite_key)
    /// (Fabric's `GetStateByPartialCompositeKeyWithPagination`), as
    /// [`get_state_by_range_with_pagination`](Self::get_state_by_range_with_pagination) pages.
    pub fn get_state_by_partial_composite_key_with_pagination<S: AsRef<str>>(
        &mut self,
        object_type: &str,
        attributes: &[S],
        page_size: i32,
        bookmark: &str,
    ) -> Result<Page, StubError> {
        let (start, end) = composite::partial_composite_key_range(object_type, attributes)?;
        self.get_state_by_key_range_with_pagination(&start, &end, page_size, bookmark)
    }

    /// One page of `[start, end)` exactly as given — the peer side of a shim's paginated
    /// `GET_STATE_BY_RANGE`. A non-empty `bookmark` replaces `start`. The page is recorded as a
    /// range query that stops at its last key unless the range is exhausted.
    pub fn get_state_by_key_range_with_pagination(
        &mut self,
        start: &str,
        end: &str,
        page_size: i32,
        bookmark: &str,
    ) -> Result<Page, StubError> {
        if page_size <= 0 {
            return Err(StubError::InvalidPageSize(page_size));
        }
        if self.write_performed {
            return Err(StubError::PaginatedQueryAfterWrite(self.tx_id().to_owned()));
        }
        self.paginated_query_performed = true;
        let start = if bookmark.is_empty() { start } else { bookmark };
        let size = usize::try_from(page_size)
            .unwrap_or(usize::MAX)
            .min(TOTAL_QUERY_LIMIT);
        let (rows, next) = self.range_scan(start, end, size)?;
        let metadata = protos::QueryResponseMetadata {
            fetched_records_count: i32::try_from(rows.len()).unwrap_or(i32::MAX),
            bookmark: next.unwrap_or_default(),
        };
        Ok((rows, metadata))
    }

    /// Committed keys in `[start, end)` exactly as given, recorded like any range query — the
    /// peer side of a shim's `GET_STATE_BY_RANGE`, where the shim has already substituted an
    /// empty start key and built partial composite-key bounds. At most [`TOTAL_QUERY_LIMIT`].
    pub fn get_state_by_key_range(
        &mut self,
        start: &str,
        end: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StubError> {
        self.range_scan(start, end, TOTAL_QUERY_LIMIT)
            .map(|(rows, _)| rows)
    }

    /// The history of `key` (newest first, at most `limit` entries) from the state reader.
    /// Nothing is recorded in the read-write set, as in Fabric.
    pub fn get_history_for_key(
        &mut self,
        key: &str,
        limit: usize,
    ) -> Result<Vec<KeyModification>, StubError> {
        match self.state.history(&self.namespace, key, limit) {
            Ok(entries) => Ok(entries),
            Err(reason) => Err(self.state_error(key, reason)),
        }
    }

    /// Committed composite keys of `object_type` whose leading attributes equal `attributes`
    /// (Fabric's `GetStateByPartialCompositeKey`): the range `[prefix, prefix + U+10FFFF)`.
    pub fn get_state_by_partial_composite_key<S: AsRef<str>>(
        &mut self,
        object_type: &str,
        attributes: &[S],
    ) -> Result<Vec<(String, Vec<u8>)>, StubError> {
        let (start, end) = composite::partial_composite_key_range(object_type, attributes)?;
        self.range_scan(&start, &end, TOTAL_QUERY_LIMIT)
            .map(|(rows, _)| rows)
    }

    /// Scans `[start, end)` for at most `limit` keys and records the `RangeQueryInfo` like
    /// Fabric's `resultsItr`: a scan that ran to the end records the requested end key and
    /// `itr_exhausted = true`; a scan cut at the limit records the last key returned and
    /// `itr_exhausted = false` (the validator then re-checks `[start, end_key]` inclusive).
    /// Also returns the first key after the cut, if any.
    fn range_scan(
        &mut self,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<(Rows, Option<String>), StubError> {
        let mut rows = match self
            .state
            .range(&self.namespace, start, end, limit.saturating_add(1))
        {
            Ok(rows) => rows,
            Err(reason) => return Err(self.state_error(&format!("[{start:?}, {end:?})"), reason)),
        };
        let exhausted = rows.len() <= limit;
        let next = if exhausted {
            None
        } else {
            rows.get(limit).map(|(key, _, _)| key.clone())
        };
        rows.truncate(limit);
        let end_key = match (exhausted, rows.last()) {
            (false, Some((last, _, _))) => last.clone(),
            _ => end.to_owned(),
        };
        let kv_reads: Vec<KvRead> = rows
            .iter()
            .map(|(key, _, version)| KvRead {
                key: key.clone(),
                version: Some(*version),
            })
            .collect();
        // Fabric leaves the oneof unset when the scan returned nothing.
        let reads_info = (!kv_reads.is_empty()).then_some(
            kvrwset::range_query_info::ReadsInfo::RawReads(QueryReads { kv_reads }),
        );
        // Fabric records a repeated identical query (same start, end, exhaustion) once.
        let record = self.record();
        let repeated = record.range_queries.iter().any(|info| {
            info.start_key == start && info.end_key == end_key && info.itr_exhausted == exhausted
        });
        if !repeated {
            record.range_queries.push(RangeQueryInfo {
                start_key: start.to_owned(),
                end_key,
                itr_exhausted: exhausted,
                reads_info,
            });
        }
        let rows = rows
            .into_iter()
            .map(|(key, value, _)| (key, value))
            .collect();
        Ok((rows, next))
    }

    /// Runs chaincode `name` with `args` in this transaction (Fabric's `InvokeChaincode`) and
    /// returns its response. `channel` empty or this channel: the callee's reads and writes
    /// join this transaction's read-write set under its namespace (whatever status it answers,
    /// as in Fabric; the caller decides), unless it could not run to completion or panicked,
    /// in which case nothing it recorded is kept. Another channel: the callee
    /// runs read-only over that channel's state and nothing it reads is recorded. `Err` when
    /// no host can run chaincodes here, the call would nest deeper than [`MAX_CALL_DEPTH`], or
    /// the callee cannot be run; a callee that panics answers status 500.
    pub fn invoke_chaincode(
        &mut self,
        name: &str,
        args: &[Vec<u8>],
        channel: &str,
    ) -> Result<protos::Response, StubError> {
        let host = self.host.ok_or(StubError::NoChaincodeHost)?;
        if self.depth >= MAX_CALL_DEPTH {
            return Err(StubError::CallDepth {
                name: name.to_owned(),
            });
        }
        let same_channel = channel.is_empty() || channel == self.invocation.channel_id;
        let target_channel = if same_channel {
            self.invocation.channel_id.clone()
        } else {
            channel.to_owned()
        };
        let invoke_error = |reason: String| StubError::Invoke {
            name: name.to_owned(),
            channel: target_channel.clone(),
            reason,
        };
        if name.is_empty() {
            return Err(invoke_error("no chaincode name given".to_owned()));
        }
        let outcome = if same_channel {
            let saved_namespace = std::mem::replace(&mut self.namespace, name.to_owned());
            let saved_args = std::mem::replace(&mut self.args, args.to_vec());
            let saved_event = self.event.take();
            // A callee that could not run to completion (or panicked) leaves nothing behind.
            let saved_records = self.records.clone();
            let saved_flags = (
                self.write_performed,
                self.paginated_query_performed,
                self.private_query_performed,
            );
            self.depth += 1;
            let outcome = catch_unwind(AssertUnwindSafe(|| host.run(name, self)));
            self.depth -= 1;
            self.namespace = saved_namespace;
            self.args = saved_args;
            self.event = saved_event;
            if !matches!(outcome, Ok(Ok(_))) {
                self.records = saved_records;
                (
                    self.write_performed,
                    self.paginated_query_performed,
                    self.private_query_performed,
                ) = saved_flags;
            }
            outcome
        } else {
            let reader = host.channel_state(channel).map_err(&invoke_error)?;
            let invocation = Invocation {
                channel_id: channel.to_owned(),
                chaincode: name.to_owned(),
                args: args.to_vec(),
                is_init: false,
                ..self.invocation.clone()
            };
            let mut callee = ChaincodeStub::new(name, &invocation, reader.as_ref()).with_host(host);
            callee.depth = self.depth + 1;
            callee.read_only = Some(ReadOnly {
                caller_channel: self.invocation.channel_id.clone(),
            });
            let outcome = catch_unwind(AssertUnwindSafe(|| host.run(name, &mut callee)));
            // The callee's reads are not part of this transaction, but a read that failed
            // means its answer rests on a partial view.
            if let Some(failure) = callee.state_failure {
                self.state_failure.get_or_insert(failure);
            }
            outcome
        };
        match outcome {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(reason)) => Err(invoke_error(reason)),
            Err(panic) => Ok(crate::error(format!(
                "chaincode {name} panicked: {}",
                crate::simulate::panic_message(panic.as_ref())
            ))),
        }
    }

    /// The access rules of `collection` of the running chaincode; refuses an undefined one.
    fn collection_access(&mut self, collection: &str) -> Result<CollectionAccess, StubError> {
        match self.state.collection(&self.namespace, collection) {
            Ok(Some(access)) => Ok(access),
            Ok(None) => Err(StubError::UndefinedCollection {
                namespace: self.namespace.clone(),
                collection: collection.to_owned(),
            }),
            Err(reason) => Err(self.state_error(collection, reason)),
        }
    }

    /// Checks `member_only_read` (`write = false`) or `member_only_write` against the
    /// client's organization.
    fn check_member(
        &mut self,
        collection: &str,
        write: bool,
    ) -> Result<CollectionAccess, StubError> {
        let access = self.collection_access(collection)?;
        let limited = if write {
            access.member_only_write
        } else {
            access.member_only_read
        };
        if limited && !access.members.contains(self.creator_msp_id()) {
            return Err(StubError::NotCollectionMember {
                msp_id: self.creator_msp_id().to_owned(),
                action: if write { "write" } else { "read" },
                collection: collection.to_owned(),
                members: access
                    .members
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(access)
    }

    /// The committed hash (value hash, version) of `key` in `collection`, recording a
    /// `KVReadHash` on first read.
    fn read_hash(
        &mut self,
        collection: &str,
        key: &str,
    ) -> Result<Option<(Vec<u8>, kvrwset::Version)>, StubError> {
        let key_hash = private::hash(key.as_bytes());
        let namespace = hashed_namespace(&self.namespace, collection);
        let read = match self.state.get(&namespace, &hashed_key(&key_hash)) {
            Ok(read) => read,
            Err(reason) => return Err(self.state_error(key, reason)),
        };
        self.record()
            .collections
            .entry(collection.to_owned())
            .or_default()
            .hashed_reads
            .entry(key_hash)
            .or_insert(read.as_ref().map(|(_, version)| *version));
        Ok(read)
    }

    /// The committed private value of `key` in `collection` (Fabric's `GetPrivateData`), or
    /// `None` when the key does not exist. Records a hashed read; fails when this peer does
    /// not hold the value whose hash is committed.
    pub fn get_private_data(
        &mut self,
        collection: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StubError> {
        self.check_member(collection, false)?;
        let hash = self.read_hash(collection, key)?;
        let namespace = private_namespace(&self.namespace, collection);
        let value = match self.state.get(&namespace, key) {
            Ok(value) => value,
            Err(reason) => return Err(self.state_error(key, reason)),
        };
        match (hash, value) {
            (None, _) => Ok(None),
            (Some((_, hash_version)), Some((value, version))) if version == hash_version => {
                Ok(Some(value))
            }
            _ => Err(StubError::PrivateDataUnavailable {
                collection: collection.to_owned(),
                key: key.to_owned(),
            }),
        }
    }

    /// The committed SHA-256 of the private value of `key` in `collection` (Fabric's
    /// `GetPrivateDataHash`), available on every peer and to every client. Records a hashed
    /// read.
    pub fn get_private_data_hash(
        &mut self,
        collection: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StubError> {
        self.collection_access(collection)?;
        Ok(self.read_hash(collection, key)?.map(|(hash, _)| hash))
    }

    /// The committed metadata of private `key` in `collection` (Fabric's
    /// `GetPrivateDataMetadata`), kept with the key's hash on every peer; empty when the key
    /// does not exist or has none. Records a hashed read.
    pub fn get_private_data_metadata(
        &mut self,
        collection: &str,
        key: &str,
    ) -> Result<Metadata, StubError> {
        self.collection_access(collection)?;
        if self.read_hash(collection, key)?.is_none() {
            return Ok(Metadata::new());
        }
        let namespace = hashed_namespace(&self.namespace, collection);
        let key_hash = hashed_key(&private::hash(key.as_bytes()));
        match self.state.metadata(&namespace, &key_hash) {
            Ok(metadata) => Ok(metadata),
            Err(reason) => Err(self.state_error(key, reason)),
        }
    }

    /// Sets metadata entry `name` of private `key` in `collection` (the shim's
    /// `SetPrivateDataMetadata`, PUT_STATE_METADATA with a collection): the key's metadata
    /// becomes this entry alone at commit, if the key then exists; an empty `value` removes
    /// it. Needs write access to the collection.
    pub fn set_private_data_metadata(
        &mut self,
        collection: &str,
        key: &str,
        name: &str,
        value: &[u8],
    ) -> Result<(), StubError> {
        self.check_write(key)?;
        self.check_member(collection, true)?;
        let mut metadata = Metadata::new();
        metadata.insert(name.to_owned(), value.to_vec());
        self.record()
            .collections
            .entry(collection.to_owned())
            .or_default()
            .metadata_writes
            .insert(key.to_owned(), metadata);
        Ok(())
    }

    /// The committed endorsement policy of private `key` in `collection` (Fabric's
    /// `GetPrivateDataValidationParameter`), or `None` when it has none.
    pub fn get_private_data_validation_parameter(
        &mut self,
        collection: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StubError> {
        Ok(self
            .get_private_data_metadata(collection, key)?
            .remove(VALIDATION_PARAMETER)
            .filter(|policy| !policy.is_empty()))
    }

    /// Sets the endorsement policy of private `key` in `collection` (Fabric's
    /// `SetPrivateDataValidationParameter`): from the next block on, writes of the key must
    /// satisfy `policy` instead of the collection's (or chaincode's) endorsement policy. An
    /// empty `policy` removes it.
    pub fn set_private_data_validation_parameter(
        &mut self,
        collection: &str,
        key: &str,
        policy: &[u8],
    ) -> Result<(), StubError> {
        self.set_private_data_metadata(collection, key, VALIDATION_PARAMETER, policy)
    }

    /// Records a private write after the write checks.
    fn private_write(
        &mut self,
        collection: &str,
        key: &str,
        write: PrivateWrite,
    ) -> Result<(), StubError> {
        self.check_write(key)?;
        self.check_member(collection, true)?;
        self.record()
            .collections
            .entry(collection.to_owned())
            .or_default()
            .writes
            .insert(key.to_owned(), write);
        Ok(())
    }

    /// Writes `value` to `key` of `collection` (Fabric's `PutPrivateData`); an empty value is
    /// a delete. Only hashes reach the block; the value goes to the collection's member peers.
    pub fn put_private_data(
        &mut self,
        collection: &str,
        key: &str,
        value: &[u8],
    ) -> Result<(), StubError> {
        let write = if value.is_empty() {
            PrivateWrite::Delete
        } else {
            PrivateWrite::Put(value.to_vec())
        };
        self.private_write(collection, key, write)
    }

    /// Deletes `key` of `collection` (Fabric's `DelPrivateData`).
    pub fn del_private_data(&mut self, collection: &str, key: &str) -> Result<(), StubError> {
        self.private_write(collection, key, PrivateWrite::Delete)
    }

    /// Purges `key` of `collection` (Fabric's `PurgePrivateData`): the value is removed from
    /// the state of every member peer; the hashes in blocks remain as evidence.
    pub fn purge_private_data(&mut self, collection: &str, key: &str) -> Result<(), StubError> {
        self.private_write(collection, key, PrivateWrite::Purge)
    }

    /// Committed private keys of `collection` in `[start, end)` with their values (Fabric's
    /// `GetPrivateDataByRange`; an empty `start` becomes `"\x01"`). Nothing is recorded, and
    /// the transaction may no longer write.
    pub fn get_private_data_by_range(
        &mut self,
        collection: &str,
        start: &str,
        end: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StubError> {
        let start = if start.is_empty() {
            EMPTY_KEY_SUBSTITUTE
        } else {
            start
        };
        for key in [start, end] {
            if key.starts_with(COMPOSITE_KEY_NAMESPACE) {
                return Err(StubError::CompositeKeyInSimpleRange(key.to_owned()));
            }
        }
        self.get_private_data_by_key_range(collection, start, end)
    }

    /// Committed private keys of `collection` in `[start, end)` exactly as given — the peer
    /// side of a shim's `GET_STATE_BY_RANGE` with a collection.
    pub fn get_private_data_by_key_range(
        &mut self,
        collection: &str,
        start: &str,
        end: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StubError> {
        self.check_member(collection, false)?;
        self.private_query_performed = true;
        let namespace = private_namespace(&self.namespace, collection);
        match self.state.range(&namespace, start, end, TOTAL_QUERY_LIMIT) {
            Ok(rows) => Ok(rows.into_iter().map(|(k, v, _)| (k, v)).collect()),
            Err(reason) => Err(self.state_error(&format!("[{start:?}, {end:?})"), reason)),
        }
    }

    /// Committed private composite keys of `object_type` in `collection` whose leading
    /// attributes equal `attributes` (Fabric's `GetPrivateDataByPartialCompositeKey`).
    pub fn get_private_data_by_partial_composite_key<S: AsRef<str>>(
        &mut self,
        collection: &str,
        object_type: &str,
        attributes: &[S],
    ) -> Result<Vec<(String, Vec<u8>)>, StubError> {
        let (start, end) = composite::partial_composite_key_range(object_type, attributes)?;
        self.get_private_data_by_key_range(collection, &start, &end)
    }

    /// The current call depth: 0 for the invoked chaincode, 1 for a chaincode it calls, ….
    pub fn call_depth(&self) -> usize {
        self.depth
    }

    /// The invocation's arguments (`ChaincodeInput.args`).
    pub fn get_args(&self) -> &[Vec<u8>] {
        &self.args
    }

    /// The arguments as text (invalid UTF-8 is replaced with U+FFFD).
    pub fn get_string_args(&self) -> Vec<String> {
        self.args
            .iter()
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect()
    }

    /// `args[0]` as the function and the rest as parameters (Fabric's
    /// `GetFunctionAndParameters`); an invocation without arguments gives `("", [])`.
    pub fn get_function_and_parameters(&self) -> (String, Vec<String>) {
        let mut args = self.get_string_args().into_iter();
        let function = args.next().unwrap_or_default();
        (function, args.collect())
    }

    /// `args[0]` split the way fabric-contract-api routes it: `"contract:function"` at the last
    /// `':'`; without a `':'` the contract is `None` (the chaincode's default contract).
    pub fn get_contract_and_function(&self) -> (Option<String>, String) {
        let (function, _) = self.get_function_and_parameters();
        split_contract_function(&function)
    }

    /// The transaction id.
    pub fn tx_id(&self) -> &str {
        &self.invocation.tx_id
    }

    /// The channel id.
    pub fn channel_id(&self) -> &str {
        &self.invocation.channel_id
    }

    /// The chaincode namespace this transaction runs in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The creator's serialized identity (Fabric's `GetCreator`).
    pub fn creator(&self) -> &[u8] {
        &self.invocation.creator
    }

    /// The creator's MSP id.
    pub fn creator_msp_id(&self) -> &str {
        &self.invocation.creator_msp_id
    }

    /// A Fabric-CA attribute of the creator's certificate (`cid.GetAttributeValue`).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.invocation
            .creator_attributes
            .get(name)
            .map(String::as_str)
    }

    /// The proposal's transient map.
    pub fn transient(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.invocation.transient
    }

    /// The transaction timestamp from the channel header (Fabric's `GetTxTimestamp`).
    pub fn timestamp(&self) -> Option<&prost_types::Timestamp> {
        self.invocation.timestamp.as_ref()
    }

    /// The client's signed proposal, if the invocation came from one.
    pub fn signed_proposal(&self) -> Option<&protos::SignedProposal> {
        self.invocation.signed_proposal.as_ref()
    }

    /// Whether this invocation is the chaincode's initialization (never for a called
    /// chaincode).
    pub fn is_init(&self) -> bool {
        self.depth == 0 && self.invocation.is_init
    }

    /// Sets the transaction's chaincode event (Fabric's `SetEvent`); a later call replaces it.
    pub fn set_event(&mut self, name: &str, payload: &[u8]) -> Result<(), StubError> {
        if name.is_empty() {
            return Err(StubError::EmptyEventName);
        }
        self.event = Some((name.to_owned(), payload.to_vec()));
        Ok(())
    }

    /// Finishes the transaction: the KV read-write set of every namespace touched, with
    /// Fabric's layout (reads sorted by key, range queries in execution order, writes and
    /// metadata writes sorted by key, metadata entries sorted by name), the event, the failure.
    pub(crate) fn finish(self) -> StubOutput {
        let kv_rwsets = self
            .records
            .into_iter()
            .filter(|(_, record)| !record.is_empty())
            .map(|(namespace, record)| {
                let kv = KvrwSet {
                    reads: record
                        .reads
                        .into_iter()
                        .map(|(key, read)| KvRead {
                            key,
                            version: read.map(|(_, version)| version),
                        })
                        .collect(),
                    range_queries_info: record.range_queries,
                    writes: record
                        .writes
                        .into_iter()
                        .map(|(key, value)| KvWrite {
                            key,
                            is_delete: value.is_empty(),
                            value,
                        })
                        .collect(),
                    metadata_writes: record
                        .metadata_writes
                        .into_iter()
                        .map(|(key, entries)| KvMetadataWrite {
                            key,
                            entries: entries
                                .into_iter()
                                .map(|(name, value)| KvMetadataEntry { name, value })
                                .collect(),
                        })
                        .collect(),
                };
                let collections = record
                    .collections
                    .into_iter()
                    .map(|(name, coll)| finish_collection(name, coll))
                    .collect();
                (namespace, kv, collections)
            })
            .collect();
        StubOutput {
            kv_rwsets,
            event: self.event,
            state_failure: self.state_failure,
        }
    }
}

/// A collection's hashed read-write set (reads and writes sorted by key hash, as Fabric's
/// builder orders them) and its private write set (writes sorted by key).
fn finish_collection(name: String, record: CollectionRecord) -> CollectionOutput {
    let hashed_reads = record
        .hashed_reads
        .into_iter()
        .map(|(key_hash, version)| kvrwset::KvReadHash { key_hash, version })
        .collect();
    let mut hashed_writes: Vec<kvrwset::KvWriteHash> = record
        .writes
        .iter()
        .map(|(key, write)| {
            let key_hash = private::hash(key.as_bytes());
            match write {
                PrivateWrite::Put(value) => kvrwset::KvWriteHash {
                    key_hash,
                    is_delete: false,
                    value_hash: private::hash(value),
                    is_purge: false,
                },
                PrivateWrite::Delete => kvrwset::KvWriteHash {
                    key_hash,
                    is_delete: true,
                    value_hash: Vec::new(),
                    is_purge: false,
                },
                PrivateWrite::Purge => kvrwset::KvWriteHash {
                    key_hash,
                    is_delete: true,
                    value_hash: Vec::new(),
                    is_purge: true,
                },
            }
        })
        .collect();
    hashed_writes.sort_by(|a, b| a.key_hash.cmp(&b.key_hash));
    let entries = |metadata: &Metadata| -> Vec<KvMetadataEntry> {
        metadata
            .iter()
            .map(|(name, value)| KvMetadataEntry {
                name: name.clone(),
                value: value.clone(),
            })
            .collect()
    };
    let mut hashed_metadata_writes: Vec<kvrwset::KvMetadataWriteHash> = record
        .metadata_writes
        .iter()
        .map(|(key, metadata)| kvrwset::KvMetadataWriteHash {
            key_hash: private::hash(key.as_bytes()),
            entries: entries(metadata),
        })
        .collect();
    hashed_metadata_writes.sort_by(|a, b| a.key_hash.cmp(&b.key_hash));
    let metadata_writes: Vec<KvMetadataWrite> = record
        .metadata_writes
        .iter()
        .map(|(key, metadata)| KvMetadataWrite {
            key: key.clone(),
            entries: entries(metadata),
        })
        .collect();
    let written = !record.writes.is_empty() || !metadata_writes.is_empty();
    let private = written.then(|| KvrwSet {
        writes: record
            .writes
            .into_iter()
            .map(|(key, write)| match write {
                PrivateWrite::Put(value) => KvWrite {
                    key,
                    is_delete: false,
                    value,
                },
                PrivateWrite::Delete | PrivateWrite::Purge => KvWrite {
                    key,
                    is_delete: true,
                    value: Vec::new(),
                },
            })
            .collect(),
        metadata_writes,
        ..KvrwSet::default()
    });
    let hashed = kvrwset::HashedRwSet {
        hashed_reads,
        hashed_writes,
        metadata_writes: hashed_metadata_writes,
    };
    (name, hashed, private)
}

/// Splits `"contract:function"` at the last `':'` (fabric-contract-api's routing); without a
/// `':'` the contract is `None`, meaning the default contract. `":f"` names the contract `""`.
pub fn split_contract_function(name: &str) -> (Option<String>, String) {
    match name.rfind(':') {
        Some(at) => (Some(name[..at].to_owned()), name[at + 1..].to_owned()),
        None => (None, name.to_owned()),
    }
}
