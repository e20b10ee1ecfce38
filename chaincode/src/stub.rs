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

use std::collections::BTreeMap;

use gridledger_proto::kvrwset::{self, KvRead, KvWrite, KvrwSet, QueryReads, RangeQueryInfo};
use gridledger_proto::queryresult::KeyModification;
use gridledger_proto::{prost_types, protos};
use thiserror::Error;

use crate::composite::{self, COMPOSITE_KEY_NAMESPACE, CompositeKeyError};

/// Substitute for an empty range start key, as Fabric's shims do: it sorts after every
/// composite key (which start with U+0000) and before every other non-empty key.
pub const EMPTY_KEY_SUBSTITUTE: &str = "\u{1}";

/// The most results one range query returns (Fabric's `ledger.state.totalQueryLimit`); a scan
/// that hits it stops there, with `itr_exhausted = false` in its `RangeQueryInfo`.
pub const TOTAL_QUERY_LIMIT: usize = 100_000;

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
}

/// The committed value and version of a key as first read in this transaction.
type CachedRead = Option<(Vec<u8>, kvrwset::Version)>;

/// A chaincode's handle on one transaction being simulated.
pub struct ChaincodeStub<'a> {
    namespace: &'a str,
    invocation: &'a Invocation,
    state: &'a dyn StateReader,
    /// Read set and read cache: key → committed value and version at first read.
    reads: BTreeMap<String, CachedRead>,
    /// Range queries in execution order.
    range_queries: Vec<RangeQueryInfo>,
    /// Write set: key → value (empty = delete); last write wins.
    writes: BTreeMap<String, Vec<u8>>,
    /// The event set by the chaincode (name, payload); last call wins.
    event: Option<(String, Vec<u8>)>,
    /// The first world-state failure, if any: it fails the whole simulation.
    state_failure: Option<StubError>,
}

/// What a finished simulation leaves behind (used by `simulate`).
pub(crate) struct StubOutput {
    /// The namespace's KV read-write set, or `None` if the chaincode touched no state.
    pub(crate) kv_rwset: Option<KvrwSet>,
    /// The event (name, payload), if one was set.
    pub(crate) event: Option<(String, Vec<u8>)>,
    /// The first world-state failure, if any.
    pub(crate) state_failure: Option<StubError>,
}

impl<'a> ChaincodeStub<'a> {
    /// A stub for running `invocation` as chaincode `namespace` over `state`.
    pub fn new(namespace: &'a str, invocation: &'a Invocation, state: &'a dyn StateReader) -> Self {
        ChaincodeStub {
            namespace,
            invocation,
            state,
            reads: BTreeMap::new(),
            range_queries: Vec::new(),
            writes: BTreeMap::new(),
            event: None,
            state_failure: None,
        }
    }

    /// Records a world-state failure (the first one is kept) and returns it.
    fn state_error(&mut self, key: &str, reason: String) -> StubError {
        let err = StubError::State {
            namespace: self.namespace.to_owned(),
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
        if let Some(cached) = self.reads.get(key) {
            return Ok(cached.as_ref().map(|(value, _)| value.clone()));
        }
        let read = match self.state.get(self.namespace, key) {
            Ok(read) => read,
            Err(reason) => return Err(self.state_error(key, reason)),
        };
        let value = read.as_ref().map(|(value, _)| value.clone());
        self.reads.insert(key.to_owned(), read);
        Ok(value)
    }

    /// Writes `value` to `key` (Fabric's `PutState`); an empty value is a delete.
    pub fn put_state(&mut self, key: &str, value: &[u8]) -> Result<(), StubError> {
        if key.is_empty() {
            return Err(StubError::EmptyKey);
        }
        self.writes.insert(key.to_owned(), value.to_vec());
        Ok(())
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
        self.range_scan(start, end)
    }

    /// Committed keys in `[start, end)` exactly as given, recorded like any range query — the
    /// peer side of a shim's `GET_STATE_BY_RANGE`, where the shim has already substituted an
    /// empty start key and built partial composite-key bounds. At most [`TOTAL_QUERY_LIMIT`].
    pub fn get_state_by_key_range(
        &mut self,
        start: &str,
        end: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StubError> {
        self.range_scan(start, end)
    }

    /// The history of `key` (newest first, at most `limit` entries) from the state reader.
    /// Nothing is recorded in the read-write set, as in Fabric.
    pub fn get_history_for_key(
        &mut self,
        key: &str,
        limit: usize,
    ) -> Result<Vec<KeyModification>, StubError> {
        match self.state.history(self.namespace, key, limit) {
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
        self.range_scan(&start, &end)
    }

    /// Scans `[start, end)` and records the `RangeQueryInfo` like Fabric's `resultsItr`: a scan
    /// that ran to the end records the requested end key and `itr_exhausted = true`; a scan
    /// cut at the query limit records the last key returned and `itr_exhausted = false` (the
    /// validator then re-checks `[start, end_key]` inclusive).
    fn range_scan(&mut self, start: &str, end: &str) -> Result<Vec<(String, Vec<u8>)>, StubError> {
        let mut rows = match self
            .state
            .range(self.namespace, start, end, TOTAL_QUERY_LIMIT + 1)
        {
            Ok(rows) => rows,
            Err(reason) => return Err(self.state_error(&format!("[{start:?}, {end:?})"), reason)),
        };
        let exhausted = rows.len() <= TOTAL_QUERY_LIMIT;
        rows.truncate(TOTAL_QUERY_LIMIT);
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
        let repeated = self.range_queries.iter().any(|info| {
            info.start_key == start && info.end_key == end_key && info.itr_exhausted == exhausted
        });
        if !repeated {
            self.range_queries.push(RangeQueryInfo {
                start_key: start.to_owned(),
                end_key,
                itr_exhausted: exhausted,
                reads_info,
            });
        }
        Ok(rows
            .into_iter()
            .map(|(key, value, _)| (key, value))
            .collect())
    }

    /// The invocation's arguments (`ChaincodeInput.args`).
    pub fn get_args(&self) -> &[Vec<u8>] {
        &self.invocation.args
    }

    /// The arguments as text (invalid UTF-8 is replaced with U+FFFD).
    pub fn get_string_args(&self) -> Vec<String> {
        self.invocation
            .args
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
        self.namespace
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

    /// Sets the transaction's chaincode event (Fabric's `SetEvent`); a later call replaces it.
    pub fn set_event(&mut self, name: &str, payload: &[u8]) -> Result<(), StubError> {
        if name.is_empty() {
            return Err(StubError::EmptyEventName);
        }
        self.event = Some((name.to_owned(), payload.to_vec()));
        Ok(())
    }

    /// Finishes the transaction: the KV read-write set with Fabric's layout (reads sorted by
    /// key, range queries in execution order, writes sorted by key), the event, the failure.
    pub(crate) fn finish(self) -> StubOutput {
        let touched =
            !(self.reads.is_empty() && self.range_queries.is_empty() && self.writes.is_empty());
        let kv_rwset = touched.then(|| KvrwSet {
            reads: self
                .reads
                .into_iter()
                .map(|(key, read)| KvRead {
                    key,
                    version: read.map(|(_, version)| version),
                })
                .collect(),
            range_queries_info: self.range_queries,
            writes: self
                .writes
                .into_iter()
                .map(|(key, value)| KvWrite {
                    key,
                    is_delete: value.is_empty(),
                    value,
                })
                .collect(),
            metadata_writes: Vec::new(),
        });
        StubOutput {
            kv_rwset,
            event: self.event,
            state_failure: self.state_failure,
        }
    }
}

/// Splits `"contract:function"` at the last `':'` (fabric-contract-api's routing); without a
/// `':'` the contract is `None`, meaning the default contract. `":f"` names the contract `""`.
pub fn split_contract_function(name: &str) -> (Option<String>, String) {
    match name.rfind(':') {
        Some(at) => (Some(name[..at].to_owned()), name[at + 1..].to_owned()),
        None => (None, name.to_owned()),
    }
}
