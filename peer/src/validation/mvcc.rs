//! Multi-version concurrency control: does a transaction's read set still hold against the
//! committed state plus the writes of the earlier valid transactions of the same block?
//!
//! Fabric's rules (`core/ledger/kvledger/txmgmt/validation`), applied in block order:
//! - a key read must have the committed version it was read at (no version = the key did not
//!   exist); a key written by an earlier valid transaction of the block is a conflict whatever
//!   the versions — MVCC_READ_CONFLICT;
//! - a range query is re-executed over the committed state merged with the block's earlier
//!   writes, and must return the same keys at the same versions, checked either key by key
//!   (raw reads) or through Fabric's Merkle summary of the results — PHANTOM_READ_CONFLICT.
//!   When the simulation stopped before exhausting the iterator, `end_key` is the last key it
//!   saw and is included;
//! - hashed reads of private data are checked like public reads, in the collection's derived
//!   namespace — MVCC_READ_CONFLICT.

use std::collections::{BTreeMap, HashMap, VecDeque};

use gridledger_ledger::{MetadataWrite, StateWrite};
use gridledger_proto::kvrwset::{self, range_query_info::ReadsInfo};
use gridledger_proto::protos::TxValidationCode as Code;
use prost::Message;
use ring::digest;

use super::ValidationError;
use super::state::{CommittedState, hashed_key, hashed_namespace};
use super::transaction::DecodedRwSet;

/// How many committed keys a range re-execution reads first; each further page doubles, so
/// a range is read in O(log n) calls and at most twice the keys the check consumes.
const FIRST_PAGE_KEYS: usize = 64;

/// The writes of the block's valid transactions so far: key → new version, `None` = deleted.
#[derive(Debug, Default)]
pub(crate) struct BlockWrites {
    namespaces: HashMap<String, BTreeMap<String, Option<kvrwset::Version>>>,
}

impl BlockWrites {
    /// Records a valid transaction's writes at `version`.
    pub(crate) fn apply(&mut self, writes: &[StateWrite], version: kvrwset::Version) {
        for write in writes {
            self.namespaces
                .entry(write.namespace.clone())
                .or_default()
                .insert(write.key.clone(), write.value.as_ref().map(|_| version));
        }
    }

    /// Records a valid transaction's metadata writes at `version`: like the ledger, a write to
    /// a key that exists (in the block so far, or committed) gives the key that version.
    pub(crate) fn apply_metadata(
        &mut self,
        writes: &[MetadataWrite],
        version: kvrwset::Version,
        state: &dyn CommittedState,
    ) -> Result<(), ValidationError> {
        for write in writes {
            let exists = match self.get(&write.namespace, &write.key) {
                Some(in_block) => in_block.is_some(),
                None => state.version(&write.namespace, &write.key)?.is_some(),
            };
            if exists {
                self.namespaces
                    .entry(write.namespace.clone())
                    .or_default()
                    .insert(write.key.clone(), Some(version));
            }
        }
        Ok(())
    }

    fn get(&self, namespace: &str, key: &str) -> Option<Option<kvrwset::Version>> {
        self.namespaces.get(namespace)?.get(key).copied()
    }

    fn written(&self, namespace: &str, key: &str) -> bool {
        self.get(namespace, key).is_some()
    }
}

/// Validates one transaction's reads; VALID, MVCC_READ_CONFLICT or PHANTOM_READ_CONFLICT.
pub(crate) fn validate(
    rwset: &DecodedRwSet,
    block: &BlockWrites,
    state: &dyn CommittedState,
) -> Result<Code, ValidationError> {
    for ns in &rwset.namespaces {
        for read in &ns.kv.reads {
            if !read_holds(&ns.namespace, &read.key, read.version, block, state)? {
                return Ok(Code::MvccReadConflict);
            }
        }
        for query in &ns.kv.range_queries_info {
            if !range_holds(&ns.namespace, query, block, state)? {
                return Ok(Code::PhantomReadConflict);
            }
        }
        for (collection, hashed) in &ns.collections {
            let namespace = hashed_namespace(&ns.namespace, collection);
            for read in &hashed.hashed_reads {
                let key = hashed_key(&read.key_hash);
                if !read_holds(&namespace, &key, read.version, block, state)? {
                    return Ok(Code::MvccReadConflict);
                }
            }
        }
    }
    Ok(Code::Valid)
}

fn read_holds(
    namespace: &str,
    key: &str,
    read_version: Option<kvrwset::Version>,
    block: &BlockWrites,
    state: &dyn CommittedState,
) -> Result<bool, ValidationError> {
    if block.written(namespace, key) {
        return Ok(false);
    }
    Ok(state.version(namespace, key)? == read_version)
}

fn range_holds(
    namespace: &str,
    query: &kvrwset::RangeQueryInfo,
    block: &BlockWrites,
    state: &dyn CommittedState,
) -> Result<bool, ValidationError> {
    let mut results = CombinedRange::new(
        namespace,
        &query.start_key,
        &query.end_key,
        !query.itr_exhausted,
        block,
        state,
    );
    match &query.reads_info {
        Some(ReadsInfo::ReadsMerkleHashes(summary)) => merkle_holds(summary, &mut results),
        Some(ReadsInfo::RawReads(reads)) => raw_holds(&reads.kv_reads, &mut results),
        None => raw_holds(&[], &mut results),
    }
}

/// Fabric's `rangeQueryResultsValidator`: the same keys at the same versions, and no more.
fn raw_holds(
    reads: &[kvrwset::KvRead],
    results: &mut CombinedRange<'_>,
) -> Result<bool, ValidationError> {
    for read in reads {
        match results.next()? {
            Some((key, version)) if key == read.key && Some(version) == read.version => {}
            _ => return Ok(false),
        }
    }
    Ok(results.next()?.is_none())
}

/// Fabric's `rangeQueryHashValidator`: rebuild the Merkle summary incrementally from the
/// re-executed results and stop at the first hash that differs at the summary's level.
fn merkle_holds(
    expected: &kvrwset::QueryReadsMerkleSummary,
    results: &mut CombinedRange<'_>,
) -> Result<bool, ValidationError> {
    let Some(mut helper) = ResultsHasher::new(expected.max_degree) else {
        return Ok(false);
    };
    let mut matched = 0usize;
    loop {
        let Some((key, version)) = results.next()? else {
            return Ok(helper.done().as_ref() == Some(expected));
        };
        helper.add(kvrwset::KvRead {
            key,
            version: Some(version),
        });
        let tree = &helper.tree;
        if tree.max_level < expected.max_level {
            continue;
        }
        let hashes = tree.max_level_hashes();
        if matched == hashes.len() {
            continue;
        }
        if hashes.len() > expected.max_level_hashes.len() {
            return Ok(false);
        }
        // When the top level folds into a new one, `matched` can exceed the new level's
        // length: more results than the simulation saw, so a phantom (Fabric would index
        // out of range here).
        match (hashes.get(matched), expected.max_level_hashes.get(matched)) {
            (Some(got), Some(want)) if got == want => matched += 1,
            _ => return Ok(false),
        }
    }
}

/// Fabric's `RangeQueryResultsHelper` with hashing on: results are hashed in groups of
/// `max_degree + 1` (each group as a marshaled `kvrwset.QueryReads`) into the leaves of a
/// Merkle tree whose nodes hash the concatenation of up to `max_degree + 1` children.
struct ResultsHasher {
    pending: Vec<kvrwset::KvRead>,
    tree: MerkleTree,
}

impl ResultsHasher {
    fn new(max_degree: u32) -> Option<ResultsHasher> {
        (max_degree >= 2).then(|| ResultsHasher {
            pending: Vec::new(),
            tree: MerkleTree {
                levels: BTreeMap::new(),
                max_level: 1,
                max_degree,
            },
        })
    }

    fn add(&mut self, read: kvrwset::KvRead) {
        self.pending.push(read);
        if self.pending.len() > self.tree.max_degree as usize {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let bytes = kvrwset::QueryReads {
            kv_reads: std::mem::take(&mut self.pending),
        }
        .encode_to_vec();
        self.tree.update(sha256(&bytes));
    }

    /// The final summary, or `None` when the results were too few to be hashed at all (the
    /// simulation would then have recorded raw reads).
    fn done(mut self) -> Option<kvrwset::QueryReadsMerkleSummary> {
        if self.tree.is_empty() {
            return None;
        }
        if !self.pending.is_empty() {
            self.flush();
        }
        self.tree.done();
        Some(kvrwset::QueryReadsMerkleSummary {
            max_degree: self.tree.max_degree,
            max_level: self.tree.max_level,
            max_level_hashes: self.tree.max_level_hashes().to_vec(),
        })
    }
}

struct MerkleTree {
    levels: BTreeMap<u32, Vec<Vec<u8>>>,
    max_level: u32,
    max_degree: u32,
}

impl MerkleTree {
    fn is_empty(&self) -> bool {
        self.max_level == 1 && self.levels.get(&1).is_none_or(Vec::is_empty)
    }

    fn max_level_hashes(&self) -> &[Vec<u8>] {
        self.levels.get(&self.max_level).map_or(&[], Vec::as_slice)
    }

    /// Adds a leaf and folds every level that grew past `max_degree` into its parent.
    fn update(&mut self, leaf: Vec<u8>) {
        self.levels.entry(1).or_default().push(leaf);
        let mut level = 1;
        loop {
            let Some(hashes) = self.levels.get(&level) else {
                return;
            };
            if hashes.len() <= self.max_degree as usize {
                return;
            }
            let parent = combined_hash(hashes);
            self.levels.remove(&level);
            level += 1;
            self.levels.entry(level).or_default().push(parent);
            self.max_level = self.max_level.max(level);
        }
    }

    /// Folds the partial lower levels up to `max_level`, and one level more if the top holds
    /// more than `max_degree` hashes.
    fn done(&mut self) {
        let mut level = 1;
        while level < self.max_level {
            let hashes = self.levels.remove(&level).unwrap_or_default();
            let folded = match hashes.as_slice() {
                [] => {
                    level += 1;
                    continue;
                }
                [single] => single.clone(),
                many => combined_hash(many),
            };
            level += 1;
            self.levels.entry(level).or_default().push(folded);
        }
        let top = self.max_level_hashes();
        if top.len() > self.max_degree as usize {
            let root = combined_hash(top);
            self.levels.remove(&self.max_level);
            self.max_level += 1;
            self.levels.insert(self.max_level, vec![root]);
        }
    }
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, bytes).as_ref().to_vec()
}

fn combined_hash(hashes: &[Vec<u8>]) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for hash in hashes {
        ctx.update(hash);
    }
    ctx.finish().as_ref().to_vec()
}

/// Whether `key` is below the exclusive range end (`""` = no end).
fn in_range(key: &str, end: &str) -> bool {
    end.is_empty() || key < end
}

/// A range of one namespace as it will be once the block's earlier writes are applied:
/// committed keys (read page by page) merged with the block's writes, deletes hidden, and the
/// end key appended when the simulation did not exhaust its iterator (Fabric's
/// `combinedIterator`).
struct CombinedRange<'a> {
    namespace: &'a str,
    end: &'a str,
    include_end: bool,
    end_served: bool,
    state: &'a dyn CommittedState,
    block: &'a BlockWrites,
    /// The block's writes in the range, in key order.
    written: std::iter::Peekable<
        std::collections::btree_map::Range<'a, String, Option<kvrwset::Version>>,
    >,
    /// Committed keys read but not yet merged.
    page: VecDeque<(String, kvrwset::Version)>,
    /// Where the next page starts; `None` once the committed range is exhausted.
    next_start: Option<String>,
    /// How many keys the next page asks for (doubles each page).
    page_keys: usize,
}

impl<'a> CombinedRange<'a> {
    fn new(
        namespace: &'a str,
        start: &'a str,
        end: &'a str,
        include_end: bool,
        block: &'a BlockWrites,
        state: &'a dyn CommittedState,
    ) -> CombinedRange<'a> {
        static EMPTY: BTreeMap<String, Option<kvrwset::Version>> = BTreeMap::new();
        let written = block
            .namespaces
            .get(namespace)
            .unwrap_or(&EMPTY)
            .range::<str, _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded))
            .peekable();
        CombinedRange {
            namespace,
            end,
            include_end,
            end_served: false,
            state,
            block,
            written,
            page: VecDeque::new(),
            next_start: Some(start.to_string()),
            page_keys: FIRST_PAGE_KEYS,
        }
    }

    /// The next committed key, reading another page when the current one is used up.
    fn peek_committed(&mut self) -> Result<Option<&(String, kvrwset::Version)>, ValidationError> {
        if self.page.is_empty() {
            if let Some(start) = self.next_start.take() {
                let limit = self.page_keys;
                let page =
                    self.state
                        .range_versions_up_to(self.namespace, &start, self.end, limit)?;
                if page.len() >= limit {
                    // The smallest key after the last one read.
                    self.next_start = page.last().map(|(key, _)| format!("{key}\0"));
                    self.page_keys = limit.saturating_mul(2);
                }
                self.page = page.into();
            }
        }
        Ok(self.page.front())
    }

    fn next(&mut self) -> Result<Option<(String, kvrwset::Version)>, ValidationError> {
        loop {
            let end = self.end;
            let written = self
                .written
                .peek()
                .filter(|(key, _)| in_range(key, end))
                .map(|(key, version)| ((*key).clone(), **version));
            let committed = self.peek_committed()?.cloned();
            let (key, version) = match (committed, written) {
                (None, None) => return self.serve_end(),
                (Some(c), None) => {
                    self.page.pop_front();
                    (c.0, Some(c.1))
                }
                (None, Some(w)) => {
                    self.written.next();
                    w
                }
                (Some(c), Some(w)) => {
                    if c.0 < w.0 {
                        self.page.pop_front();
                        (c.0, Some(c.1))
                    } else {
                        // The block's write of a key shadows its committed version.
                        if c.0 == w.0 {
                            self.page.pop_front();
                        }
                        self.written.next();
                        w
                    }
                }
            };
            if let Some(version) = version {
                return Ok(Some((key, version)));
            }
            // Deleted by an earlier transaction of the block: not part of the results.
        }
    }

    fn serve_end(&mut self) -> Result<Option<(String, kvrwset::Version)>, ValidationError> {
        if !self.include_end || self.end_served {
            return Ok(None);
        }
        self.end_served = true;
        let version = match self.block.get(self.namespace, self.end) {
            Some(written) => written,
            None => self.state.version(self.namespace, self.end)?,
        };
        Ok(version.map(|v| (self.end.to_string(), v)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports failure
mod tests {
    use super::*;
    use crate::validation::state::InMemoryState;
    use gridledger_ledger::{BlockUpdates, TxUpdates};

    fn version(block_num: u64, tx_num: u64) -> kvrwset::Version {
        kvrwset::Version { block_num, tx_num }
    }

    /// A committed namespace `ns` with keys k000..k{n-1}, all written by block 1 tx 0.
    fn state_with_keys(n: usize) -> InMemoryState {
        let mut state = InMemoryState::new();
        let writes = (0..n)
            .map(|i| StateWrite {
                namespace: "ns".into(),
                key: format!("k{i:03}"),
                value: Some(b"v".to_vec()),
            })
            .collect();
        state.apply(
            1,
            &BlockUpdates {
                txs: vec![TxUpdates {
                    tx_num: 0,
                    tx_id: "t".into(),
                    validation_code: 0,
                    timestamp: None,
                    writes,
                    metadata_writes: Vec::new(),
                    private_writes: Vec::new(),
                    expiries: Vec::new(),
                    private_sets: Vec::new(),
                    purges: Vec::new(),
                }],
            },
        );
        state
    }

    fn collect(range: &mut CombinedRange<'_>) -> Vec<String> {
        let mut out = Vec::new();
        while let Some((key, _)) = range.next().unwrap() {
            out.push(key);
        }
        out
    }

    #[test]
    fn combined_range_pages_through_committed_keys_and_merges_block_writes() {
        // More keys than one page, so paging is exercised.
        let state = state_with_keys(600);
        let mut block = BlockWrites::default();
        block.apply(
            &[
                StateWrite {
                    namespace: "ns".into(),
                    key: "k005".into(),
                    value: None,
                },
                StateWrite {
                    namespace: "ns".into(),
                    key: "k005a".into(),
                    value: Some(vec![1]),
                },
            ],
            version(2, 0),
        );
        let mut range = CombinedRange::new("ns", "k003", "k300", false, &block, &state);
        let keys = collect(&mut range);
        assert_eq!(keys.first().map(String::as_str), Some("k003"));
        assert!(!keys.contains(&"k005".to_string()), "deleted key is hidden");
        assert!(keys.contains(&"k005a".to_string()), "inserted key appears");
        assert_eq!(keys.last().map(String::as_str), Some("k299"));
        assert_eq!(keys.len(), 300 - 3 - 1 + 1);

        let mut with_end = CombinedRange::new("ns", "k003", "k300", true, &block, &state);
        assert_eq!(
            collect(&mut with_end).last().map(String::as_str),
            Some("k300")
        );
    }

    /// Builds the summary a simulation over `reads` would have recorded, with Fabric's helper.
    fn summary_of(reads: &[kvrwset::KvRead], max_degree: u32) -> kvrwset::QueryReadsMerkleSummary {
        let mut helper = ResultsHasher::new(max_degree).unwrap();
        for read in reads {
            helper.add(read.clone());
        }
        helper.done().unwrap()
    }

    fn committed_reads(state: &InMemoryState, n: usize) -> Vec<kvrwset::KvRead> {
        (0..n)
            .map(|i| {
                let key = format!("k{i:03}");
                let version = state.get("ns", &key).map(|(_, v)| v);
                kvrwset::KvRead { key, version }
            })
            .collect()
    }

    #[test]
    fn merkle_summary_matches_unchanged_range_and_detects_a_phantom() {
        let state = state_with_keys(40);
        let reads = committed_reads(&state, 40);
        let summary = summary_of(&reads, 3);
        assert!(
            summary.max_level > 1,
            "40 results at degree 3 need several levels"
        );

        let empty = BlockWrites::default();
        let mut range = CombinedRange::new("ns", "", "", false, &empty, &state);
        assert!(merkle_holds(&summary, &mut range).unwrap());

        let mut phantom = BlockWrites::default();
        phantom.apply(
            &[StateWrite {
                namespace: "ns".into(),
                key: "k017x".into(),
                value: Some(vec![1]),
            }],
            version(2, 0),
        );
        let mut range = CombinedRange::new("ns", "", "", false, &phantom, &state);
        assert!(!merkle_holds(&summary, &mut range).unwrap());
    }

    #[test]
    fn merkle_summary_of_too_few_results_never_matches() {
        // Three results at degree 3 are never hashed: a simulation records raw reads then.
        let state = state_with_keys(3);
        let summary = kvrwset::QueryReadsMerkleSummary {
            max_degree: 3,
            max_level: 1,
            max_level_hashes: vec![],
        };
        let empty = BlockWrites::default();
        let mut range = CombinedRange::new("ns", "", "", false, &empty, &state);
        assert!(!merkle_holds(&summary, &mut range).unwrap());
    }
}
