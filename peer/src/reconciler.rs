//! Reconciliation of missing private data: a member peer that committed a transaction's
//! hashes alone (no copy of its private data in the transient store or at any reachable
//! member peer, see `committer::attach_private_data`) records it in the ledger
//! (`Ledger::missing_private_data`), and this task looks for it again later.
//!
//! Per channel, every [`RECONCILE_INTERVAL`] the recorded entries that are due are tried:
//! an entry whose hashes no longer have the transaction's version (overwritten, expired by
//! `block_to_live`, or purged) is dropped, since the data could no longer be used; otherwise
//! the other member peers are asked for the transaction's private read-write set, each copy
//! is checked against the hashes of the block (`private::resolve`) and the first that
//! matches is stored (`Ledger::reconcile_private_data`: only values whose hash row still has
//! the transaction's version). An entry not found is retried with a back-off doubling from
//! the interval up to [`MAX_BACKOFF`], and given up after [`MAX_ATTEMPTS`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use gridledger_chaincode::private::{hash, hashed_key, hashed_namespace};
use gridledger_ledger::{
    Ledger, LedgerError, MissingPrivateData, ReconciledPrivateData, ReconciledWrite,
};
use gridledger_proto::kvrwset::HashedRwSet;
use gridledger_proto::prost::Message;
use gridledger_proto::rwset;
use tokio::sync::watch;

use crate::node::{Channel, Peer, now_unix_secs};
use crate::private::{CollectionDefinition, CollectionWrites};

/// How often a channel's missing private data is looked at, and the first retry delay.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(30);
/// The longest delay between two attempts at one transaction's private data.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Attempts after which a transaction's private data is given up.
pub const MAX_ATTEMPTS: u32 = 12;

/// Asks peers of the given member orgs for a transaction's private read-write sets.
pub type Fetch<'a> = dyn FnMut(&str, &BTreeSet<String>) -> Vec<Vec<u8>> + 'a;

/// What one pass over a channel's missing private data did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Transactions whose private data was found and stored.
    pub reconciled: usize,
    /// Transactions not found this time, to be retried.
    pub retried: usize,
    /// Transactions dropped: no longer needed, unreadable, or out of attempts.
    pub dropped: usize,
}

/// Encodes what a transaction's private data must match (its collections' hashed sets and
/// `pvt_rwset_hash`es), as recorded in `MissingPrivateData::expected`.
pub fn encode_expected(collections: &[CollectionWrites]) -> Vec<u8> {
    rwset::TxReadWriteSet {
        data_model: 0,
        ns_rwset: collections
            .iter()
            .map(|c| rwset::NsReadWriteSet {
                namespace: c.namespace.clone(),
                rwset: Vec::new(),
                collection_hashed_rwset: vec![rwset::CollectionHashedReadWriteSet {
                    collection_name: c.collection.clone(),
                    hashed_rwset: c.hashed.encode_to_vec(),
                    pvt_rwset_hash: c.pvt_rwset_hash.clone(),
                }],
            })
            .collect(),
    }
    .encode_to_vec()
}

/// Decodes [`encode_expected`]'s bytes; `None` when they do not decode.
pub fn decode_expected(bytes: &[u8]) -> Option<Vec<CollectionWrites>> {
    let set = rwset::TxReadWriteSet::decode(bytes).ok()?;
    let mut out = Vec::new();
    for ns in set.ns_rwset {
        for c in ns.collection_hashed_rwset {
            out.push(CollectionWrites {
                namespace: ns.namespace.clone(),
                collection: c.collection_name,
                hashed: HashedRwSet::decode(c.hashed_rwset.as_slice()).ok()?,
                pvt_rwset_hash: c.pvt_rwset_hash,
            });
        }
    }
    Some(out)
}

/// The delay before attempt `attempts + 1`: the interval doubled per failed attempt, at most
/// [`MAX_BACKOFF`].
pub fn backoff(interval: Duration, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(20);
    interval.saturating_mul(factor).min(MAX_BACKOFF)
}

/// The hash row (`ns$$hcoll`, hex key hash) of private key `key` of derived namespace
/// `ns$$pcoll`.
fn hash_row(private_namespace: &str, key: &str) -> (String, String) {
    (
        private_namespace.replacen("$$p", "$$h", 1),
        hashed_key(&hash(key.as_bytes())),
    )
}

/// One pass over `ledger`'s missing private data that is due at `now` (unix seconds).
/// `collections` names a chaincode's collections, `local_msp_id` is this peer's org, and
/// `fetch(tx_id, member_orgs)` asks peers of those orgs for the transaction's private
/// read-write sets.
pub fn reconcile_once(
    ledger: &Ledger,
    collections: &dyn Fn(&str, &str) -> Option<CollectionDefinition>,
    local_msp_id: &str,
    now: u64,
    interval: Duration,
    fetch: &mut Fetch<'_>,
) -> Result<Progress, LedgerError> {
    let member_of = |namespace: &str, collection: &str| {
        collections(namespace, collection).is_some_and(|c| c.is_member(local_msp_id))
    };
    let block_to_live = |namespace: &str, collection: &str| {
        collections(namespace, collection).map_or(0, |c| c.block_to_live)
    };
    let mut progress = Progress::default();
    for entry in ledger.missing_private_data()? {
        if entry.next_attempt > now {
            continue;
        }
        let MissingPrivateData { block, tx_num, .. } = entry;
        let Some(expected) = decode_expected(&entry.expected) else {
            tracing::warn!(
                block,
                tx_num,
                "recorded missing private data does not decode; dropping it"
            );
            ledger.forget_missing_private_data(block, tx_num)?;
            progress.dropped += 1;
            continue;
        };
        let needed: Vec<&CollectionWrites> = expected
            .iter()
            .filter(|c| !c.pvt_rwset_hash.is_empty() && member_of(&c.namespace, &c.collection))
            .collect();
        if needed.is_empty() || !still_current(ledger, &needed, block, tx_num)? {
            tracing::info!(tx_id = %entry.tx_id, block, "missing private data no longer needed (overwritten, expired or purged)");
            ledger.forget_missing_private_data(block, tx_num)?;
            progress.dropped += 1;
            continue;
        }
        let member_orgs: BTreeSet<String> = needed
            .iter()
            .filter_map(|c| collections(&c.namespace, &c.collection))
            .flat_map(|c| c.members)
            .collect();
        let found = fetch(&entry.tx_id, &member_orgs)
            .iter()
            .find_map(|copy| crate::private::resolve(copy, &expected, &member_of).ok());
        match found {
            Some(resolved) => {
                let data = reconciled(block, &expected, &block_to_live, resolved);
                let stored = ledger.reconcile_private_data(block, tx_num, &data)?;
                tracing::info!(tx_id = %entry.tx_id, block, values = stored, "missing private data reconciled from another member peer");
                progress.reconciled += 1;
            }
            None => {
                let attempts = entry.attempts.saturating_add(1);
                if attempts >= MAX_ATTEMPTS {
                    tracing::warn!(tx_id = %entry.tx_id, block, attempts, "giving up on missing private data");
                    ledger.forget_missing_private_data(block, tx_num)?;
                    progress.dropped += 1;
                } else {
                    let next = now.saturating_add(backoff(interval, attempts).as_secs().max(1));
                    ledger.retry_missing_private_data(block, tx_num, attempts, next)?;
                    progress.retried += 1;
                }
            }
        }
    }
    Ok(progress)
}

/// Whether any hash the transaction wrote in `needed` still has its version (so the private
/// data would still be used).
fn still_current(
    ledger: &Ledger,
    needed: &[&CollectionWrites],
    block: u64,
    tx_num: u64,
) -> Result<bool, LedgerError> {
    let snapshot = ledger.snapshot()?;
    for c in needed {
        let namespace = hashed_namespace(&c.namespace, &c.collection);
        let hashes = c
            .hashed
            .hashed_writes
            .iter()
            .filter(|w| !w.is_delete)
            .map(|w| w.key_hash.as_slice())
            .chain(
                c.hashed
                    .metadata_writes
                    .iter()
                    .map(|m| m.key_hash.as_slice()),
            );
        for key_hash in hashes {
            if let Some(found) = snapshot.get(&namespace, &hashed_key(key_hash))? {
                if (found.version.block_num, found.version.tx_num) == (block, tx_num) {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// What the ledger stores of a transaction's private data found late.
fn reconciled(
    block: u64,
    expected: &[CollectionWrites],
    block_to_live: &dyn Fn(&str, &str) -> u64,
    resolved: crate::private::Resolved,
) -> ReconciledPrivateData {
    let expiries = crate::private::expiries(block, expected, block_to_live, &resolved.writes);
    let sets = resolved
        .sets
        .into_iter()
        .map(|set| {
            let rows = resolved
                .writes
                .iter()
                .filter(|w| w.namespace == set.namespace && w.value.is_some())
                .map(|w| hash_row(&w.namespace, &w.key))
                .collect();
            (set, rows)
        })
        .collect();
    ReconciledPrivateData {
        writes: resolved
            .writes
            .into_iter()
            .map(|write| ReconciledWrite {
                hash_row: hash_row(&write.namespace, &write.key),
                write,
            })
            .collect(),
        metadata_writes: resolved.metadata_writes,
        sets,
        expiries,
    }
}

/// The reconciler of one channel: a pass every [`RECONCILE_INTERVAL`] until `shutdown`.
pub async fn run(peer: Arc<Peer>, channel: Arc<Channel>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RECONCILE_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
        let (peer, channel) = (peer.clone(), channel.clone());
        let pass = tokio::task::spawn_blocking(move || {
            let ledger = channel.ledger().clone();
            let collections =
                |namespace: &str, collection: &str| channel.collection(namespace, collection);
            let mut fetch = |tx_id: &str, orgs: &BTreeSet<String>| {
                crate::gossip::pull(&peer, &channel, tx_id, orgs)
            };
            let result = reconcile_once(
                &ledger,
                &collections,
                channel.local_msp_id(),
                now_unix_secs(),
                RECONCILE_INTERVAL,
                &mut fetch,
            );
            (channel.id().to_owned(), result)
        })
        .await;
        match pass {
            Ok((_, Ok(_))) => {}
            Ok((channel_id, Err(e))) => {
                tracing::error!(channel = %channel_id, error = %e, "private data reconciliation failed")
            }
            Err(e) => tracing::error!(error = %e, "private data reconciliation task failed"),
        }
    }
}

/// The record of a transaction whose private data is missing at commit, first retried one
/// [`RECONCILE_INTERVAL`] after `now`.
pub fn missing(
    block: u64,
    tx_num: u64,
    tx_id: &str,
    collections: &[CollectionWrites],
    now: u64,
) -> MissingPrivateData {
    MissingPrivateData {
        block,
        tx_num,
        tx_id: tx_id.to_owned(),
        expected: encode_expected(collections),
        attempts: 0,
        next_attempt: now.saturating_add(RECONCILE_INTERVAL.as_secs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridledger_chaincode::private::private_namespace;
    use gridledger_ledger::{BlockUpdates, StateWrite, TxUpdates};
    use gridledger_proto::common::{Block, BlockData, BlockHeader, BlockMetadata};
    use gridledger_proto::kvrwset::{KvWrite, KvWriteHash, KvrwSet};
    use gridledger_proto::rwset::{
        CollectionPvtReadWriteSet, NsPvtReadWriteSet, TxPvtReadWriteSet,
    };

    const NS: &str = "cc";
    const COLL: &str = "deals";

    /// A ledger in a fresh folder, removed when dropped.
    struct TempLedger(std::path::PathBuf, Ledger);

    impl TempLedger {
        fn new(name: &str) -> TempLedger {
            let dir = std::env::temp_dir().join(format!(
                "gridledger-reconcile-{name}-{}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create the ledger folder");
            let ledger = Ledger::open(&dir, "market").expect("open the ledger");
            TempLedger(dir, ledger)
        }
    }

    impl Drop for TempLedger {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn collection(name: &str, _: &str) -> Option<CollectionDefinition> {
        (name == NS).then(|| CollectionDefinition {
            name: COLL.into(),
            members: ["DSOMSP".to_owned(), "RetailerMSP".to_owned()].into(),
            required_peer_count: 0,
            maximum_peer_count: 1,
            block_to_live: 0,
            member_only_read: false,
            member_only_write: false,
            endorsement: None,
        })
    }

    /// The private `KVRWSet` writing `key = value`, and what the block carries of it.
    fn private_write(key: &str, value: &[u8]) -> (Vec<u8>, CollectionWrites) {
        let kv = KvrwSet {
            writes: vec![KvWrite {
                key: key.into(),
                is_delete: false,
                value: value.to_vec(),
            }],
            ..KvrwSet::default()
        }
        .encode_to_vec();
        let expected = CollectionWrites {
            namespace: NS.into(),
            collection: COLL.into(),
            hashed: HashedRwSet {
                hashed_writes: vec![KvWriteHash {
                    key_hash: hash(key.as_bytes()),
                    is_delete: false,
                    value_hash: hash(value),
                    is_purge: false,
                }],
                ..HashedRwSet::default()
            },
            pvt_rwset_hash: hash(&kv),
        };
        (kv, expected)
    }

    fn tx_pvt_rwset(kv: Vec<u8>) -> Vec<u8> {
        TxPvtReadWriteSet {
            data_model: 0,
            ns_pvt_rwset: vec![NsPvtReadWriteSet {
                namespace: NS.into(),
                collection_pvt_rwset: vec![CollectionPvtReadWriteSet {
                    collection_name: COLL.into(),
                    rwset: kv,
                }],
            }],
        }
        .encode_to_vec()
    }

    /// Commits a block of one valid transaction writing `key`'s hash; its private data is
    /// recorded missing when `missing_at` gives the commit time.
    fn commit_hash_only(
        ledger: &Ledger,
        tx_id: &str,
        key: &str,
        value: &[u8],
        missing_at: Option<u64>,
    ) {
        let info = ledger.info();
        let data = BlockData {
            data: vec![format!("envelope of {tx_id}").into_bytes()],
        };
        let block = Block {
            header: Some(BlockHeader {
                number: info.height,
                previous_hash: info.current_block_hash.clone(),
                data_hash: gridledger_proto::block_data_hash(&data).to_vec(),
            }),
            data: Some(data),
            metadata: Some(BlockMetadata {
                metadata: vec![Vec::new(); 5],
            }),
        };
        let (_, expected) = private_write(key, value);
        let updates = BlockUpdates {
            txs: vec![TxUpdates {
                tx_num: 0,
                tx_id: tx_id.into(),
                writes: vec![StateWrite {
                    namespace: hashed_namespace(NS, COLL),
                    key: hashed_key(&hash(key.as_bytes())),
                    value: Some(hash(value)),
                }],
                ..TxUpdates::default()
            }],
        };
        let missing: Vec<MissingPrivateData> = missing_at
            .map(|now| missing(info.height, 0, tx_id, &[expected], now))
            .into_iter()
            .collect();
        ledger
            .commit_block_with_missing(&block, &updates, &missing)
            .expect("commit");
    }

    #[test]
    fn a_member_missing_data_gets_it_once_a_member_that_has_it_is_reachable() {
        let t = TempLedger::new("found");
        let ledger = &t.1;
        commit_hash_only(ledger, "tx-a", "tariff", b"0.21", Some(1_000));
        let (kv, _) = private_write("tariff", b"0.21");
        let (forged, _) = private_write("tariff", b"0.99");
        let interval = RECONCILE_INTERVAL;
        let first_try = 1_000 + interval.as_secs();
        let mut asked = Vec::new();

        // Not yet due: nobody is asked.
        let mut fetch = |tx_id: &str, orgs: &BTreeSet<String>| {
            asked.push((tx_id.to_owned(), orgs.clone()));
            Vec::new()
        };
        let progress = reconcile_once(
            ledger,
            &collection,
            "RetailerMSP",
            1_001,
            interval,
            &mut fetch,
        )
        .expect("pass");
        assert_eq!(progress, Progress::default());
        // Due, but no member peer answers: retried later, with a back-off.
        let progress = reconcile_once(
            ledger,
            &collection,
            "RetailerMSP",
            first_try,
            interval,
            &mut fetch,
        )
        .expect("pass");
        assert_eq!(progress.retried, 1);
        assert_eq!(
            asked,
            vec![(
                "tx-a".to_owned(),
                BTreeSet::from(["DSOMSP".to_owned(), "RetailerMSP".to_owned()])
            )]
        );
        let entry = &ledger.missing_private_data().expect("read")[0];
        assert_eq!(entry.attempts, 1);
        assert_eq!(entry.next_attempt, first_try + interval.as_secs());
        let private = private_namespace(NS, COLL);
        assert!(
            ledger
                .snapshot()
                .expect("snapshot")
                .get(&private, "tariff")
                .expect("get")
                .is_none()
        );

        // The member that has it is reachable: a forged copy is ignored, the matching one is
        // stored at the version of its hash and kept to serve others.
        let copies = vec![tx_pvt_rwset(forged), tx_pvt_rwset(kv.clone())];
        let mut fetch = |_: &str, _: &BTreeSet<String>| copies.clone();
        let progress = reconcile_once(
            ledger,
            &collection,
            "RetailerMSP",
            entry.next_attempt,
            interval,
            &mut fetch,
        )
        .expect("pass");
        assert_eq!(progress.reconciled, 1);
        let value = ledger
            .snapshot()
            .expect("snapshot")
            .get(&private, "tariff")
            .expect("get")
            .expect("the value is stored");
        assert_eq!(value.value, b"0.21");
        assert_eq!((value.version.block_num, value.version.tx_num), (0, 0));
        assert!(ledger.missing_private_data().expect("read").is_empty());
        assert_eq!(
            ledger.private_data("tx-a").expect("read"),
            vec![(private, kv)]
        );
    }

    #[test]
    fn overwritten_data_is_no_longer_looked_for_and_retries_run_out() {
        let t = TempLedger::new("stale");
        let ledger = &t.1;
        commit_hash_only(ledger, "tx-old", "tariff", b"0.21", Some(1_000));
        // A later transaction overwrites the key (this peer had that one).
        commit_hash_only(ledger, "tx-new", "tariff", b"0.25", None);
        let (old, _) = private_write("tariff", b"0.21");
        let copies = vec![tx_pvt_rwset(old)];
        let mut fetch = |_: &str, _: &BTreeSet<String>| copies.clone();
        let progress = reconcile_once(
            ledger,
            &collection,
            "RetailerMSP",
            u64::MAX,
            RECONCILE_INTERVAL,
            &mut fetch,
        )
        .expect("pass");
        assert_eq!(progress.dropped, 1);
        assert!(ledger.missing_private_data().expect("read").is_empty());
        assert!(
            ledger
                .snapshot()
                .expect("snapshot")
                .get(&private_namespace(NS, COLL), "tariff")
                .expect("get")
                .is_none(),
            "an overwritten value is never revived"
        );

        // Never found: given up after MAX_ATTEMPTS.
        commit_hash_only(ledger, "tx-lost", "meter", b"7", Some(1_000));
        let mut nobody = |_: &str, _: &BTreeSet<String>| Vec::new();
        let mut passes = 0;
        while !ledger.missing_private_data().expect("read").is_empty() {
            reconcile_once(
                ledger,
                &collection,
                "RetailerMSP",
                u64::MAX,
                RECONCILE_INTERVAL,
                &mut nobody,
            )
            .expect("pass");
            passes += 1;
            assert!(passes <= MAX_ATTEMPTS, "retries must be bounded");
        }
        assert_eq!(passes, MAX_ATTEMPTS);
    }

    #[test]
    fn back_off_doubles_up_to_the_maximum() {
        let base = Duration::from_secs(30);
        assert_eq!(backoff(base, 1), base);
        assert_eq!(backoff(base, 2), base * 2);
        assert_eq!(backoff(base, 4), base * 8);
        assert_eq!(backoff(base, 40), MAX_BACKOFF);
    }

    #[test]
    fn expected_collections_round_trip() {
        let (_, expected) = private_write("k", b"v");
        assert_eq!(
            decode_expected(&encode_expected(std::slice::from_ref(&expected))),
            Some(vec![expected])
        );
        assert_eq!(decode_expected(b"\xff\xff"), None);
    }
}
