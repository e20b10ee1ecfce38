//! Integration tests of `gridledger-ledger`: the real Fabric 2.5.5 chain appended and read
//! back, the write-time and read-time chain checks, world state / history / snapshots through
//! `commit_block`, reopen and corruption handling, and the Raft log store.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use gridledger_ledger::{
    BlockUpdates, HardState, LEDGER_FILE, Ledger, LedgerError, MetadataWrite, MissingPrivateData,
    RaftEntry, RaftSnapshotMeta, RaftStore, ReconciledPrivateData, ReconciledWrite, SCHEMA_VERSION,
    StateWrite, TxLocation, TxUpdates, Version, VersionedValue,
};
use gridledger_proto::block_data_hash;
use gridledger_proto::common::{Block, BlockData, BlockHeader, BlockMetadata};
use gridledger_proto::prost::Message;
use gridledger_proto::prost_types::Timestamp;
use redb::{Database, ReadableDatabase, TableDefinition};

const VALID: u8 = 0;
const MVCC_READ_CONFLICT: u8 = 11;
const CHANNEL: &str = "market";

/// A unique directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gridledger-ledger-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/fabric-2.5.5-chain")
}

fn fixture_bytes(number: u64) -> Vec<u8> {
    std::fs::read(fixture_dir().join(format!("block{number:03}.pb"))).expect("fixture block")
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture_dir().join("manifest.json")).expect("manifest");
    serde_json::from_str(&text).expect("manifest is JSON")
}

/// A block with the given envelopes (any bytes) chained onto `previous_hash`.
fn make_block(number: u64, previous_hash: &[u8], envelopes: Vec<Vec<u8>>) -> Block {
    let data = BlockData { data: envelopes };
    Block {
        header: Some(BlockHeader {
            number,
            previous_hash: previous_hash.to_vec(),
            data_hash: block_data_hash(&data).to_vec(),
        }),
        data: Some(data),
        metadata: Some(BlockMetadata {
            metadata: vec![Vec::new(); 5],
        }),
    }
}

/// The block that may be appended next to `ledger`, with `n_txs` distinct envelopes.
fn next_block(ledger: &Ledger, n_txs: usize) -> Block {
    let info = ledger.info();
    let envelopes = (0..n_txs)
        .map(|i| format!("envelope {} of block {}", i, info.height).into_bytes())
        .collect();
    make_block(info.height, &info.current_block_hash, envelopes)
}

fn put(namespace: &str, key: &str, value: &[u8]) -> StateWrite {
    StateWrite {
        namespace: namespace.into(),
        key: key.into(),
        value: Some(value.to_vec()),
    }
}

fn delete(namespace: &str, key: &str) -> StateWrite {
    StateWrite {
        namespace: namespace.into(),
        key: key.into(),
        value: None,
    }
}

fn tx(tx_num: u64, tx_id: &str, code: u8, seconds: i64, writes: Vec<StateWrite>) -> TxUpdates {
    TxUpdates {
        tx_num,
        tx_id: tx_id.into(),
        validation_code: code,
        timestamp: Some(Timestamp { seconds, nanos: 7 }),
        writes,
        metadata_writes: Vec::new(),
        private_writes: Vec::new(),
        expiries: Vec::new(),
        private_sets: Vec::new(),
        purges: Vec::new(),
    }
}

fn commit(ledger: &Ledger, txs: Vec<TxUpdates>) {
    let block = next_block(ledger, txs.len());
    ledger
        .commit_block(&block, &BlockUpdates { txs })
        .expect("commit");
}

fn v(block_num: u64, tx_num: u64) -> Version {
    Version { block_num, tx_num }
}

fn append_fixture_chain(ledger: &Ledger) {
    for n in 0..81 {
        let block = Block::decode(fixture_bytes(n).as_slice()).expect("fixture decodes");
        ledger.append_block(&block).expect("fixture block appends");
    }
}

/// Sets the bytes stored under `key` in the ledger file's `meta` table, outside the ledger.
fn poke_meta(dir: &Path, key: &str, value: &[u8]) {
    let db = Database::create(dir.join(LEDGER_FILE)).expect("open redb");
    let txn = db.begin_write().expect("write");
    {
        let table: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
        let mut meta = txn.open_table(table).expect("meta table");
        meta.insert(key, value).expect("insert");
    }
    txn.commit().expect("commit");
}

/// Replaces the stored bytes of block `number`, outside the ledger.
fn poke_block(dir: &Path, number: u64, bytes: &[u8]) {
    let db = Database::create(dir.join(LEDGER_FILE)).expect("open redb");
    let txn = db.begin_write().expect("write");
    {
        let table: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
        let mut blocks = txn.open_table(table).expect("blocks table");
        blocks.insert(number, bytes).expect("insert");
    }
    txn.commit().expect("commit");
}

#[test]
fn fabric_chain_is_stored_byte_identical_and_indexed() {
    let dir = TempDir::new("fabric");
    let ledger = Ledger::open(dir.path(), "mychannel").unwrap();
    append_fixture_chain(&ledger);
    let manifest = manifest();
    let blocks = manifest["blocks"].as_array().unwrap();

    let info = ledger.info();
    assert_eq!(info.height, 81);
    assert_eq!(
        hex::encode(&info.current_block_hash),
        blocks[80]["header_hash"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(&info.previous_block_hash),
        blocks[80]["previous_hash"].as_str().unwrap()
    );

    for n in 0..81u64 {
        assert_eq!(
            ledger.block_bytes(n).unwrap().unwrap(),
            fixture_bytes(n),
            "block {n} bytes"
        );
        let hash = hex::decode(blocks[n as usize]["header_hash"].as_str().unwrap()).unwrap();
        assert_eq!(ledger.block_number_by_hash(&hash).unwrap(), Some(n));
    }
    assert_eq!(ledger.block_bytes(81).unwrap(), None);
    assert_eq!(ledger.block(81).unwrap(), None);
    let block37 = ledger.block(37).unwrap().unwrap();
    assert_eq!(block37.header.unwrap().number, 37);
    assert_eq!(ledger.block_number_by_hash(&[0u8; 32]).unwrap(), None);

    // A conflicting transaction of block 37 (the recorded codes are [0, 11, 11, 11, 11, 11]).
    let tx = &blocks[37]["transactions"][2];
    let location = ledger
        .tx_location(tx["tx_id"].as_str().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        location,
        TxLocation {
            block_num: 37,
            tx_num: 2,
            validation_code: MVCC_READ_CONFLICT,
        }
    );
    let genesis_tx = blocks[0]["transactions"][0]["tx_id"].as_str().unwrap();
    assert_eq!(
        ledger.tx_location(genesis_tx).unwrap(),
        Some(TxLocation {
            block_num: 0,
            tx_num: 0,
            validation_code: VALID,
        })
    );
    assert_eq!(ledger.tx_location("no-such-tx").unwrap(), None);
}

#[test]
fn block_without_transactions_filter_is_indexed_as_not_validated() {
    let dir = TempDir::new("notvalidated");
    let ledger = Ledger::open(dir.path(), "mychannel").unwrap();
    let mut genesis = Block::decode(fixture_bytes(0).as_slice()).unwrap();
    genesis.metadata = None;
    ledger.append_block(&genesis).unwrap();
    let tx_id = manifest()["blocks"][0]["transactions"][0]["tx_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        ledger.tx_location(&tx_id).unwrap().unwrap().validation_code,
        254
    );
}

#[test]
fn wrong_number_is_rejected_and_nothing_written() {
    let dir = TempDir::new("wrongnumber");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    commit(&ledger, vec![]);
    let info = ledger.info();
    let block = make_block(5, &info.current_block_hash, vec![b"e".to_vec()]);
    let err = ledger.append_block(&block).unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::WrongNumber {
                expected: 1,
                got: 5
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("expects block 1"), "{err}");
    assert_eq!(ledger.info(), info);
    assert_eq!(ledger.block_bytes(5).unwrap(), None);
}

#[test]
fn broken_previous_hash_is_rejected_and_nothing_written() {
    let dir = TempDir::new("broken");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    commit(&ledger, vec![]);
    let block = make_block(1, &[9u8; 32], vec![b"e".to_vec()]);
    let updates = BlockUpdates {
        txs: vec![tx(0, "t1", VALID, 1, vec![put("cc", "k", b"v")])],
    };
    let err = ledger.commit_block(&block, &updates).unwrap_err();
    assert!(
        matches!(err, LedgerError::BrokenChain { block: 1 }),
        "{err}"
    );
    assert_eq!(ledger.height(), 1);
    assert_eq!(ledger.tx_location("t1").unwrap(), None);
    assert_eq!(ledger.snapshot().unwrap().get("cc", "k").unwrap(), None);

    // A genesis block must have an empty previous hash.
    let dir2 = TempDir::new("broken-genesis");
    let fresh = Ledger::open(dir2.path(), CHANNEL).unwrap();
    let err = fresh
        .append_block(&make_block(0, b"x", vec![]))
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::BrokenChain { block: 0 }),
        "{err}"
    );
    assert_eq!(fresh.height(), 0);
}

#[test]
fn bad_data_hash_is_rejected_and_nothing_written() {
    let dir = TempDir::new("datahash");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    let mut block = next_block(&ledger, 2);
    block.data.as_mut().unwrap().data[1] = b"tampered".to_vec();
    let err = ledger.append_block(&block).unwrap_err();
    assert!(
        matches!(err, LedgerError::BadDataHash { block: 0 }),
        "{err}"
    );
    assert_eq!(ledger.height(), 0);
    assert_eq!(ledger.block_bytes(0).unwrap(), None);

    let mut headless = next_block(&ledger, 1);
    headless.header = None;
    assert!(matches!(
        ledger.append_block(&headless),
        Err(LedgerError::MissingHeader)
    ));
    assert_eq!(ledger.height(), 0);
}

#[test]
fn commit_block_rejects_updates_outside_the_block() {
    let dir = TempDir::new("badupdates");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    let block = next_block(&ledger, 1);
    let updates = BlockUpdates {
        txs: vec![tx(3, "t", VALID, 1, vec![put("cc", "k", b"v")])],
    };
    let err = ledger.commit_block(&block, &updates).unwrap_err();
    assert!(
        matches!(err, LedgerError::InvalidUpdates { block: 0, .. }),
        "{err}"
    );
    assert_eq!(ledger.height(), 0);
    assert_eq!(ledger.tx_location("t").unwrap(), None);
}

#[test]
fn valid_writes_reach_state_and_history_with_versions() {
    let dir = TempDir::new("state");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    // Block 0: three keys in "basic", one in another namespace.
    commit(
        &ledger,
        vec![
            tx(
                0,
                "t0",
                VALID,
                100,
                vec![put("basic", "asset1", b"a1"), put("basic", "asset2", b"a2")],
            ),
            tx(
                1,
                "t1",
                VALID,
                101,
                vec![put("basic", "asset3", b"a3"), put("other", "asset1", b"o1")],
            ),
        ],
    );
    // Block 1: an invalid tx (ignored), then an update and a delete.
    commit(
        &ledger,
        vec![
            tx(
                0,
                "t2",
                MVCC_READ_CONFLICT,
                200,
                vec![put("basic", "asset1", b"lost")],
            ),
            tx(1, "t3", VALID, 201, vec![put("basic", "asset1", b"a1v2")]),
            tx(2, "t4", VALID, 202, vec![delete("basic", "asset2")]),
        ],
    );

    let snap = ledger.snapshot().unwrap();
    assert_eq!(snap.height(), 2);
    assert_eq!(
        snap.get("basic", "asset1").unwrap(),
        Some(VersionedValue {
            value: b"a1v2".to_vec(),
            version: v(1, 1)
        })
    );
    assert_eq!(snap.get("basic", "asset2").unwrap(), None);
    assert_eq!(
        snap.get("basic", "asset3").unwrap().unwrap().version,
        v(0, 1)
    );
    assert_eq!(snap.get("other", "asset1").unwrap().unwrap().value, b"o1");
    assert_eq!(snap.get("nobody", "asset1").unwrap(), None);

    // Range stays inside the namespace, in byte order, over [start, end).
    let keys = |r: Vec<(String, VersionedValue)>| r.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(snap.range("basic", "", "", 100).unwrap()),
        ["asset1", "asset3"]
    );
    assert_eq!(
        keys(snap.range("basic", "asset1", "asset3", 100).unwrap()),
        ["asset1"]
    );
    assert_eq!(
        keys(snap.range("basic", "asset2", "", 100).unwrap()),
        ["asset3"]
    );
    assert_eq!(keys(snap.range("basic", "", "", 1).unwrap()), ["asset1"]);
    assert!(snap.range("basic", "", "", 0).unwrap().is_empty());
    assert!(snap.range("basic", "z", "a", 10).unwrap().is_empty());
    assert_eq!(keys(snap.range("other", "", "", 10).unwrap()), ["asset1"]);

    // History: newest first, with deletes, tx ids, timestamps; the invalid tx is absent.
    let h = snap.history("basic", "asset1", 10).unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].tx_id, "t3");
    assert_eq!(h[0].value.as_deref(), Some(&b"a1v2"[..]));
    assert_eq!(h[0].version, v(1, 1));
    assert_eq!(
        h[0].timestamp,
        Some(Timestamp {
            seconds: 201,
            nanos: 7
        })
    );
    assert_eq!(h[1].tx_id, "t0");
    assert_eq!(h[1].version, v(0, 0));
    assert_eq!(snap.history("basic", "asset1", 1).unwrap().len(), 1);
    let h2 = snap.history("basic", "asset2", 10).unwrap();
    assert_eq!(h2.len(), 2);
    assert_eq!(h2[0].tx_id, "t4");
    assert_eq!(h2[0].value, None);
    assert!(snap.history("basic", "asset", 10).unwrap().is_empty());

    // Every tx is indexed with its code, valid or not.
    assert_eq!(
        ledger.tx_location("t2").unwrap(),
        Some(TxLocation {
            block_num: 1,
            tx_num: 0,
            validation_code: MVCC_READ_CONFLICT
        })
    );
}

#[test]
fn later_write_of_a_key_in_one_block_wins() {
    let dir = TempDir::new("samekey");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    commit(
        &ledger,
        vec![
            tx(0, "a", VALID, 1, vec![put("cc", "k", b"first")]),
            tx(1, "b", VALID, 2, vec![put("cc", "k", b"second")]),
        ],
    );
    let snap = ledger.snapshot().unwrap();
    let got = snap.get("cc", "k").unwrap().unwrap();
    assert_eq!(got.value, b"second");
    assert_eq!(got.version, v(0, 1));
    assert_eq!(snap.history("cc", "k", 10).unwrap().len(), 2);
}

#[test]
fn snapshot_taken_before_a_commit_does_not_see_it() {
    let dir = TempDir::new("snapshot");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    commit(
        &ledger,
        vec![tx(0, "a", VALID, 1, vec![put("cc", "k", b"old")])],
    );
    let before = ledger.snapshot().unwrap();
    commit(
        &ledger,
        vec![tx(
            0,
            "b",
            VALID,
            2,
            vec![put("cc", "k", b"new"), put("cc", "k2", b"x")],
        )],
    );
    assert_eq!(before.height(), 1);
    assert_eq!(before.get("cc", "k").unwrap().unwrap().value, b"old");
    assert_eq!(before.get("cc", "k2").unwrap(), None);
    assert_eq!(before.range("cc", "", "", 10).unwrap().len(), 1);
    assert_eq!(before.history("cc", "k", 10).unwrap().len(), 1);
    let after = ledger.snapshot().unwrap();
    assert_eq!(after.height(), 2);
    assert_eq!(after.get("cc", "k").unwrap().unwrap().value, b"new");

    // A snapshot can move to another thread while commits go on.
    let handle = std::thread::spawn(move || before.get("cc", "k").unwrap().unwrap().value);
    commit(&ledger, vec![]);
    assert_eq!(handle.join().unwrap(), b"old");
}

#[test]
fn duplicate_tx_id_keeps_the_first_location() {
    let dir = TempDir::new("duplicate");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    commit(&ledger, vec![tx(0, "dup", VALID, 1, vec![])]);
    // Same id again later in a block, and twice within one block.
    commit(
        &ledger,
        vec![
            tx(0, "x", VALID, 2, vec![]),
            tx(1, "dup", 9, 2, vec![]),
            tx(2, "x", 9, 2, vec![]),
        ],
    );
    assert_eq!(
        ledger.tx_location("dup").unwrap(),
        Some(TxLocation {
            block_num: 0,
            tx_num: 0,
            validation_code: VALID
        })
    );
    assert_eq!(
        ledger.tx_location("x").unwrap(),
        Some(TxLocation {
            block_num: 1,
            tx_num: 0,
            validation_code: VALID
        })
    );
}

#[test]
fn reopen_after_drop_keeps_everything() {
    let dir = TempDir::new("reopen");
    let info = {
        let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
        commit(
            &ledger,
            vec![tx(0, "a", VALID, 1, vec![put("cc", "k", b"v1")])],
        );
        commit(
            &ledger,
            vec![tx(0, "b", VALID, 2, vec![put("cc", "k", b"v2")])],
        );
        ledger.info()
    };
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    assert_eq!(ledger.info(), info);
    assert_eq!(ledger.channel_id(), CHANNEL);
    assert_eq!(*ledger.subscribe_height().borrow(), 2);
    let snap = ledger.snapshot().unwrap();
    assert_eq!(snap.get("cc", "k").unwrap().unwrap().version, v(1, 0));
    assert_eq!(snap.history("cc", "k", 10).unwrap().len(), 2);
    assert_eq!(ledger.tx_location("a").unwrap().unwrap().block_num, 0);
    assert_eq!(
        ledger
            .block_number_by_hash(&info.current_block_hash)
            .unwrap(),
        Some(1)
    );
    // And the chain continues from where it was.
    commit(&ledger, vec![]);
    assert_eq!(ledger.height(), 3);
}

#[test]
fn fabric_chain_survives_reopen() {
    let dir = TempDir::new("fabric-reopen");
    {
        let ledger = Ledger::open(dir.path(), "mychannel").unwrap();
        append_fixture_chain(&ledger);
    }
    let ledger = Ledger::open(dir.path(), "mychannel").unwrap();
    assert_eq!(ledger.height(), 81);
    assert_eq!(ledger.block_bytes(80).unwrap().unwrap(), fixture_bytes(80));
}

#[test]
fn height_subscribers_see_every_commit() {
    let dir = TempDir::new("watch");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    let mut rx = ledger.subscribe_height();
    assert_eq!(*rx.borrow_and_update(), 0);
    commit(&ledger, vec![]);
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), 1);
    // A rejected block does not notify.
    let _ = ledger.append_block(&make_block(7, &[], vec![]));
    assert!(!rx.has_changed().unwrap());
}

#[test]
fn schema_version_mismatch_is_a_clear_error() {
    let dir = TempDir::new("schema");
    drop(Ledger::open(dir.path(), CHANNEL).unwrap());
    poke_meta(dir.path(), "schema_version", &99u64.to_be_bytes());
    let err = Ledger::open(dir.path(), CHANNEL).unwrap_err();
    match &err {
        LedgerError::SchemaVersion {
            found, expected, ..
        } => {
            assert_eq!(*found, 99);
            assert_eq!(*expected, SCHEMA_VERSION);
        }
        other => panic!("expected SchemaVersion, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("schema version 99") && msg.contains(LEDGER_FILE),
        "{msg}"
    );
}

#[test]
fn ledger_of_another_channel_is_refused() {
    let dir = TempDir::new("channel");
    drop(Ledger::open(dir.path(), "one").unwrap());
    let err = Ledger::open(dir.path(), "two").unwrap_err();
    assert!(matches!(err, LedgerError::WrongChannel { .. }), "{err}");
    assert!(err.to_string().contains("\"one\""), "{err}");
}

#[test]
fn garbage_file_is_a_clear_error() {
    let dir = TempDir::new("garbage");
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(dir.path().join(LEDGER_FILE), vec![0xA5u8; 8192]).unwrap();
    let err = Ledger::open(dir.path(), CHANNEL).unwrap_err();
    assert!(matches!(err, LedgerError::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(LEDGER_FILE) && msg.contains("Not a redb database"),
        "{msg}"
    );
}

#[test]
fn tampered_block_is_detected_on_read() {
    let dir = TempDir::new("tamper");
    {
        let ledger = Ledger::open(dir.path(), "mychannel").unwrap();
        append_fixture_chain(&ledger);
    }
    // Block 5 with its data changed but its header kept: data hash no longer matches.
    let mut block = Block::decode(fixture_bytes(5).as_slice()).unwrap();
    block.data.as_mut().unwrap().data[0].push(0);
    poke_block(dir.path(), 5, &block.encode_to_vec());
    // Block 6 with a rewritten header whose hashes are self-consistent: the chain breaks.
    let mut block = Block::decode(fixture_bytes(6).as_slice()).unwrap();
    block.data.as_mut().unwrap().data[0].push(0);
    let data_hash = block_data_hash(block.data.as_ref().unwrap()).to_vec();
    block.header.as_mut().unwrap().data_hash = data_hash;
    poke_block(dir.path(), 6, &block.encode_to_vec());
    // Block 7 not a block at all.
    poke_block(dir.path(), 7, b"\xff\xff\xff");

    let ledger = Ledger::open(dir.path(), "mychannel").unwrap();
    assert!(matches!(
        ledger.block_bytes(5),
        Err(LedgerError::BadDataHash { block: 5 })
    ));
    assert!(matches!(
        ledger.block(6),
        Err(LedgerError::BrokenChain { block: 6 })
    ));
    let err = ledger.block(7).unwrap_err();
    assert!(matches!(err, LedgerError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("block 7"), "{err}");
    // Untouched blocks still read.
    assert_eq!(ledger.block_bytes(4).unwrap().unwrap(), fixture_bytes(4));
}

#[test]
fn tampered_tip_is_detected_on_open() {
    let dir = TempDir::new("tip");
    let tip_bytes = {
        let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
        commit(&ledger, vec![]);
        commit(&ledger, vec![]);
        ledger.block_bytes(1).unwrap().unwrap()
    };
    // The tip replaced by a different, internally consistent block 1 on the same predecessor.
    let previous_hash = Block::decode(tip_bytes.as_slice())
        .unwrap()
        .header
        .unwrap()
        .previous_hash;
    let other = make_block(1, &previous_hash, vec![b"forged".to_vec()]);
    poke_block(dir.path(), 1, &other.encode_to_vec());
    let err = Ledger::open(dir.path(), CHANNEL).unwrap_err();
    assert!(
        matches!(err, LedgerError::BrokenChain { block: 1 }),
        "{err}"
    );

    // A height that disagrees with the stored blocks.
    poke_block(dir.path(), 1, &tip_bytes);
    poke_meta(dir.path(), "height", &5u64.to_be_bytes());
    let err = Ledger::open(dir.path(), CHANNEL).unwrap_err();
    assert!(matches!(err, LedgerError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("height"), "{err}");

    // A meta number of the wrong length.
    poke_meta(dir.path(), "height", b"short");
    let err = Ledger::open(dir.path(), CHANNEL).unwrap_err();
    assert!(matches!(err, LedgerError::Corrupt { .. }), "{err}");
}

#[test]
fn concurrent_appenders_never_write_the_same_number_twice() {
    let dir = TempDir::new("race");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    let block = next_block(&ledger, 1);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| ledger.append_block(&block)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results.iter().all(|r| matches!(
        r,
        Ok(())
            | Err(LedgerError::WrongNumber {
                expected: 1,
                got: 0
            })
    )));
    assert_eq!(ledger.height(), 1);
}

/// Set in the child process of `kill_9_during_commits_loses_no_committed_block`.
const CRASH_DIR_ENV: &str = "GRIDLEDGER_LEDGER_CRASH_DIR";

#[test]
fn kill_9_during_commits_loses_no_committed_block() {
    if let Some(dir) = std::env::var_os(CRASH_DIR_ENV) {
        // Child: commit blocks as fast as possible, reporting each height once committed,
        // until the parent kills the process.
        let ledger = Ledger::open(Path::new(&dir), CHANNEL).unwrap();
        loop {
            let n = ledger.height();
            commit(
                &ledger,
                vec![tx(
                    0,
                    &format!("tx{n}"),
                    VALID,
                    n as i64,
                    vec![put("cc", "counter", n.to_string().as_bytes())],
                )],
            );
            println!("HEIGHT {}", n + 1);
        }
    }

    use std::io::BufRead;
    let dir = TempDir::new("kill9");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "kill_9_during_commits_loses_no_committed_block",
            "--exact",
            "--nocapture",
        ])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut reported = 0u64;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(h) = line.strip_prefix("HEIGHT ") {
            reported = h.parse().unwrap();
            if reported >= 30 {
                break;
            }
        }
    }
    // SIGKILL on Unix: no destructor, no flush; the child is usually mid-commit here.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        reported >= 30,
        "the child stopped early at height {reported}"
    );

    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    let height = ledger.height();
    assert!(height >= reported, "height {height} < reported {reported}");
    for n in 0..height {
        assert!(ledger.block_bytes(n).unwrap().is_some(), "block {n}");
        assert_eq!(
            ledger
                .tx_location(&format!("tx{n}"))
                .unwrap()
                .unwrap()
                .block_num,
            n
        );
    }
    let counter = ledger
        .snapshot()
        .unwrap()
        .get("cc", "counter")
        .unwrap()
        .unwrap();
    assert_eq!(counter.value, (height - 1).to_string().into_bytes());
    assert_eq!(counter.version, v(height - 1, 0));
    // The next block goes on top.
    commit(&ledger, vec![]);
    assert_eq!(ledger.height(), height + 1);
}

fn entry(index: u64, term: u64) -> RaftEntry {
    RaftEntry {
        index,
        term,
        data: format!("entry {index}@{term}").into_bytes(),
    }
}

fn indexes_and_terms(entries: &[RaftEntry]) -> Vec<(u64, u64)> {
    entries.iter().map(|e| (e.index, e.term)).collect()
}

#[test]
fn raft_log_appends_and_overwrites_a_conflicting_suffix() {
    let dir = TempDir::new("raft-append");
    let store = RaftStore::open(dir.path()).unwrap();
    assert_eq!(store.first_index().unwrap(), 1);
    assert_eq!(store.last_index().unwrap(), 0);
    assert_eq!(store.term(0).unwrap(), Some(0));

    store
        .append(&[entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 1)])
        .unwrap();
    assert_eq!(store.last_index().unwrap(), 4);
    let got = store.entries(2, 4).unwrap();
    assert_eq!(indexes_and_terms(&got), [(2, 1), (3, 1)]);
    assert_eq!(got[0].data, b"entry 2@1");

    // A new leader's entries from index 3 replace 3 and 4.
    store.append(&[entry(3, 2)]).unwrap();
    assert_eq!(store.last_index().unwrap(), 3);
    assert_eq!(
        indexes_and_terms(&store.entries(1, 100).unwrap()),
        [(1, 1), (2, 1), (3, 2)]
    );
    assert_eq!(store.term(3).unwrap(), Some(2));
    assert_eq!(store.term(4).unwrap(), None);

    // Gaps and non-consecutive batches are refused and change nothing.
    assert!(matches!(
        store.append(&[entry(6, 2)]),
        Err(LedgerError::RaftLog { .. })
    ));
    assert!(matches!(
        store.append(&[entry(4, 2), entry(6, 2)]),
        Err(LedgerError::RaftLog { .. })
    ));
    assert_eq!(store.last_index().unwrap(), 3);
}

#[test]
fn raft_log_truncates_and_compacts() {
    let dir = TempDir::new("raft-compact");
    let store = RaftStore::open(dir.path()).unwrap();
    store
        .append(&(1..=10).map(|i| entry(i, 1 + i / 5)).collect::<Vec<_>>())
        .unwrap();
    store.truncate_after(8).unwrap();
    assert_eq!(store.last_index().unwrap(), 8);

    store.compact(5).unwrap();
    assert_eq!(store.first_index().unwrap(), 6);
    assert_eq!(store.term(5).unwrap(), Some(2));
    assert_eq!(store.term(4).unwrap(), None);
    assert!(matches!(
        store.entries(3, 7),
        Err(LedgerError::RaftLog { .. })
    ));
    assert_eq!(
        indexes_and_terms(&store.entries(6, 9).unwrap()),
        [(6, 2), (7, 2), (8, 2)]
    );
    // Compacting behind the boundary is a no-op; past the end is refused.
    store.compact(3).unwrap();
    assert_eq!(store.first_index().unwrap(), 6);
    assert!(store.compact(20).is_err());
    // Appending into the compacted prefix or truncating before it is refused.
    assert!(store.append(&[entry(5, 3)]).is_err());
    assert!(store.truncate_after(4).is_err());

    // Compacting everything leaves last_index at the boundary.
    store.compact(8).unwrap();
    assert_eq!(store.first_index().unwrap(), 9);
    assert_eq!(store.last_index().unwrap(), 8);
    store.append(&[entry(9, 3)]).unwrap();
    assert_eq!(store.last_index().unwrap(), 9);
}

#[test]
fn raft_state_survives_reopen() {
    let dir = TempDir::new("raft-reopen");
    let hs = HardState {
        term: 3,
        vote: 1,
        commit: 4,
    };
    {
        let store = RaftStore::open(dir.path()).unwrap();
        assert_eq!(store.hard_state().unwrap(), HardState::default());
        assert_eq!(store.conf_state().unwrap(), None);
        assert_eq!(store.snapshot().unwrap(), None);
        store
            .persist(
                &[entry(1, 1), entry(2, 3), entry(3, 3), entry(4, 3)],
                Some(&hs),
            )
            .unwrap();
        store.set_conf_state(b"voters=1").unwrap();
        store.compact(2).unwrap();
    }
    let store = RaftStore::open(dir.path()).unwrap();
    assert_eq!(store.hard_state().unwrap(), hs);
    assert_eq!(
        store.conf_state().unwrap().as_deref(),
        Some(&b"voters=1"[..])
    );
    assert_eq!(store.first_index().unwrap(), 3);
    assert_eq!(store.term(2).unwrap(), Some(3));
    assert_eq!(
        indexes_and_terms(&store.entries(3, 5).unwrap()),
        [(3, 3), (4, 3)]
    );
    // The raft file lives beside, not inside, the ledger file.
    assert!(dir.path().join("raft.redb").exists());
    assert!(!dir.path().join(LEDGER_FILE).exists());
}

#[test]
fn raft_snapshots_are_saved_and_applied() {
    let dir = TempDir::new("raft-snapshot");
    let store = RaftStore::open(dir.path()).unwrap();
    store
        .append(&[entry(1, 1), entry(2, 1), entry(3, 1)])
        .unwrap();
    let own = RaftSnapshotMeta {
        index: 2,
        term: 1,
        conf_state: b"c1".to_vec(),
    };
    store.save_snapshot(&own, b"state@2").unwrap();
    assert_eq!(store.last_index().unwrap(), 3, "saving keeps the log");
    assert_eq!(store.snapshot().unwrap(), Some((own, b"state@2".to_vec())));

    let leader = RaftSnapshotMeta {
        index: 10,
        term: 4,
        conf_state: b"c2".to_vec(),
    };
    store.apply_snapshot(&leader, b"state@10").unwrap();
    assert_eq!(store.first_index().unwrap(), 11);
    assert_eq!(store.last_index().unwrap(), 10);
    assert_eq!(store.term(10).unwrap(), Some(4));
    assert_eq!(store.conf_state().unwrap().as_deref(), Some(&b"c2"[..]));
    assert_eq!(store.snapshot().unwrap().unwrap().1, b"state@10");
    store.append(&[entry(11, 4)]).unwrap();

    let stale = RaftSnapshotMeta {
        index: 5,
        term: 2,
        conf_state: vec![],
    };
    assert!(store.apply_snapshot(&stale, b"old").is_err());
}

#[test]
fn raft_schema_mismatch_is_a_clear_error() {
    let dir = TempDir::new("raft-schema");
    drop(RaftStore::open(dir.path()).unwrap());
    {
        let db = Database::create(dir.path().join("raft.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let table: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
            let mut meta = txn.open_table(table).unwrap();
            meta.insert("schema_version", 7u64.to_be_bytes().as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let err = RaftStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, LedgerError::SchemaVersion { found: 7, .. }),
        "{err}"
    );
}

fn metadata_write(namespace: &str, key: &str, metadata: Option<&[u8]>) -> MetadataWrite {
    MetadataWrite {
        namespace: namespace.into(),
        key: key.into(),
        metadata: metadata.map(<[u8]>::to_vec),
        current_with: None,
    }
}

#[test]
fn key_metadata_lives_next_to_the_value() {
    let dir = TempDir::new("metadata");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    // Block 0: a value, and a metadata write to a key that does not exist (dropped).
    let mut first = tx(0, "t0", VALID, 1, vec![put("cc", "a", b"1")]);
    first.metadata_writes = vec![metadata_write("cc", "ghost", Some(b"m"))];
    commit(&ledger, vec![first]);
    let snap = ledger.snapshot().unwrap();
    assert_eq!(snap.metadata("cc", "a").unwrap(), None);
    assert_eq!(snap.get("cc", "ghost").unwrap(), None);
    assert_eq!(snap.metadata("cc", "ghost").unwrap(), None);
    drop(snap);

    // Block 1: metadata only; the key keeps its value and takes the new version.
    let mut second = tx(0, "t1", VALID, 2, vec![]);
    second.metadata_writes = vec![metadata_write("cc", "a", Some(b"policy"))];
    // An invalid transaction's metadata is not applied.
    let mut invalid = tx(1, "t1x", MVCC_READ_CONFLICT, 2, vec![]);
    invalid.metadata_writes = vec![metadata_write("cc", "a", Some(b"other"))];
    commit(&ledger, vec![second, invalid]);
    let snap = ledger.snapshot().unwrap();
    assert_eq!(
        snap.get("cc", "a").unwrap(),
        Some(VersionedValue {
            value: b"1".to_vec(),
            version: v(1, 0)
        })
    );
    assert_eq!(snap.metadata("cc", "a").unwrap(), Some(b"policy".to_vec()));
    drop(snap);

    // Block 2: a value write keeps the metadata.
    commit(
        &ledger,
        vec![tx(0, "t2", VALID, 3, vec![put("cc", "a", b"2")])],
    );
    assert_eq!(
        ledger.snapshot().unwrap().metadata("cc", "a").unwrap(),
        Some(b"policy".to_vec())
    );

    // Block 3: a delete removes it; re-creating the key starts without metadata.
    commit(
        &ledger,
        vec![tx(0, "t3", VALID, 4, vec![delete("cc", "a")])],
    );
    commit(
        &ledger,
        vec![tx(0, "t4", VALID, 5, vec![put("cc", "a", b"3")])],
    );
    assert_eq!(
        ledger.snapshot().unwrap().metadata("cc", "a").unwrap(),
        None
    );

    // Empty metadata removes the row.
    let mut set = tx(0, "t5", VALID, 6, vec![]);
    set.metadata_writes = vec![metadata_write("cc", "a", Some(b"p2"))];
    commit(&ledger, vec![set]);
    let mut clear = tx(0, "t6", VALID, 7, vec![]);
    clear.metadata_writes = vec![metadata_write("cc", "a", Some(b""))];
    commit(&ledger, vec![clear]);
    assert_eq!(
        ledger.snapshot().unwrap().metadata("cc", "a").unwrap(),
        None
    );
}

#[test]
fn schema_version_1_file_is_upgraded_on_open() {
    let dir = TempDir::new("upgrade");
    {
        let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
        commit(
            &ledger,
            vec![tx(0, "t0", VALID, 1, vec![put("cc", "a", b"1")])],
        );
    }
    // Make the file look like a version-1 file: no metadata table, version 1.
    {
        let db = Database::open(dir.path().join(LEDGER_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        let table: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("state_metadata");
        txn.delete_table(table).unwrap();
        txn.commit().unwrap();
    }
    poke_meta(dir.path(), "schema_version", &1u64.to_be_bytes());
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    let snap = ledger.snapshot().unwrap();
    assert_eq!(snap.get("cc", "a").unwrap().unwrap().value, b"1".to_vec());
    assert_eq!(snap.metadata("cc", "a").unwrap(), None);
    drop(snap);
    drop(ledger);
    let db = Database::open(dir.path().join(LEDGER_FILE)).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn
        .open_table(TableDefinition::<&str, &[u8]>::new("meta"))
        .unwrap();
    let version = meta
        .get("schema_version")
        .unwrap()
        .unwrap()
        .value()
        .to_vec();
    assert_eq!(version, SCHEMA_VERSION.to_be_bytes().to_vec());
}

#[test]
fn private_writes_reach_state_but_never_history() {
    let dir = TempDir::new("pvt");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    let mut t = tx(0, "t0", VALID, 1, vec![put("cc$$hc", "ab12", b"hash")]);
    t.private_writes = vec![put("cc$$pc", "k", b"secret")];
    let mut invalid = tx(1, "t1", MVCC_READ_CONFLICT, 1, Vec::new());
    invalid.private_writes = vec![put("cc$$pc", "other", b"x")];
    commit(&ledger, vec![t, invalid]);
    let snap = ledger.snapshot().unwrap();
    assert_eq!(snap.get("cc$$pc", "k").unwrap().unwrap().version, v(0, 0));
    assert_eq!(snap.get("cc$$pc", "other").unwrap(), None);
    assert!(snap.history("cc$$pc", "k", 10).unwrap().is_empty());
    assert_eq!(snap.history("cc$$hc", "ab12", 10).unwrap().len(), 1);
    drop(snap);
    // A purge (delete) removes the value; the hash stays where it was.
    let mut purge = tx(0, "t2", VALID, 2, Vec::new());
    purge.private_writes = vec![delete("cc$$pc", "k")];
    commit(&ledger, vec![purge]);
    let snap = ledger.snapshot().unwrap();
    assert_eq!(snap.get("cc$$pc", "k").unwrap(), None);
    assert!(snap.get("cc$$hc", "ab12").unwrap().is_some());
}

#[test]
fn block_to_live_expires_keys_unless_written_again() {
    let dir = TempDir::new("btl");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    let expiring = |ns: &str, key: &str, at: u64| gridledger_ledger::Expiry {
        namespace: ns.into(),
        key: key.into(),
        expire_at: at,
    };
    // Block 0 writes a and b with block_to_live 2: readable through block 2, gone at 3.
    let mut t = tx(0, "t0", VALID, 1, vec![put("cc$$hc", "ha", b"h")]);
    t.private_writes = vec![put("cc$$pc", "a", b"1"), put("cc$$pc", "b", b"2")];
    t.expiries = vec![
        expiring("cc$$pc", "a", 3),
        expiring("cc$$hc", "ha", 3),
        expiring("cc$$pc", "b", 3),
    ];
    commit(&ledger, vec![t]);
    commit(&ledger, Vec::new());
    // Block 2 writes b again (with its own schedule): the old schedule must not remove it.
    let mut again = tx(0, "t2", VALID, 1, Vec::new());
    again.private_writes = vec![put("cc$$pc", "b", b"3")];
    again.expiries = vec![expiring("cc$$pc", "b", 5)];
    commit(&ledger, vec![again]);
    {
        let snap = ledger.snapshot().unwrap();
        assert!(snap.get("cc$$pc", "a").unwrap().is_some());
        assert!(snap.get("cc$$hc", "ha").unwrap().is_some());
    }
    commit(&ledger, Vec::new()); // block 3
    let snap = ledger.snapshot().unwrap();
    assert_eq!(snap.get("cc$$pc", "a").unwrap(), None);
    assert_eq!(snap.get("cc$$hc", "ha").unwrap(), None);
    assert_eq!(
        snap.get("cc$$pc", "b").unwrap().unwrap().value,
        b"3".to_vec()
    );
    drop(snap);
    commit(&ledger, Vec::new()); // 4
    commit(&ledger, Vec::new()); // 5
    assert_eq!(ledger.snapshot().unwrap().get("cc$$pc", "b").unwrap(), None);
}

#[test]
fn transient_store_keeps_private_rwsets_until_their_block_commits() {
    let dir = TempDir::new("transient");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    ledger.persist_transient("t0", b"first").unwrap();
    ledger.persist_transient("t0", b"first").unwrap();
    ledger.persist_transient("t0", b"second").unwrap();
    ledger.persist_transient("t1", b"other").unwrap();
    let mut got = ledger.transient("t0").unwrap();
    got.sort();
    assert_eq!(got, vec![b"first".to_vec(), b"second".to_vec()]);
    // t0 is in the block (even invalid, it is decided): its entries go; t1's stay.
    commit(
        &ledger,
        vec![tx(0, "t0", MVCC_READ_CONFLICT, 1, Vec::new())],
    );
    assert!(ledger.transient("t0").unwrap().is_empty());
    assert_eq!(ledger.transient("t1").unwrap(), vec![b"other".to_vec()]);
    // Survives a restart.
    drop(ledger);
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    assert_eq!(ledger.transient("t1").unwrap(), vec![b"other".to_vec()]);
}

#[test]
fn transient_entries_expire_after_the_retention_window() {
    let dir = TempDir::new("transient-expiry");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    ledger.persist_transient("never-ordered", b"x").unwrap(); // arrives at height 0
    for _ in 0..gridledger_ledger::TRANSIENT_RETENTION_BLOCKS {
        commit(&ledger, Vec::new());
    }
    assert_eq!(ledger.transient("never-ordered").unwrap().len(), 1);
    commit(&ledger, Vec::new()); // block number RETENTION: arrivals at height 0 expire
    assert!(ledger.transient("never-ordered").unwrap().is_empty());
}

#[test]
fn schema_version_2_file_is_upgraded_with_the_private_data_tables() {
    let dir = TempDir::new("upgrade2");
    {
        let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
        commit(
            &ledger,
            vec![tx(0, "t0", VALID, 1, vec![put("cc", "a", b"1")])],
        );
    }
    {
        let db = Database::open(dir.path().join(LEDGER_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        for name in ["pvt_expiry", "transient", "transient_by_height"] {
            txn.delete_table(TableDefinition::<&str, &[u8]>::new(name))
                .unwrap();
        }
        txn.commit().unwrap();
    }
    poke_meta(dir.path(), "schema_version", &2u64.to_be_bytes());
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    ledger.persist_transient("t1", b"x").unwrap();
    let mut t = tx(0, "t1", VALID, 1, Vec::new());
    t.private_writes = vec![put("cc$$pc", "k", b"v")];
    commit(&ledger, vec![t]);
    assert!(
        ledger
            .snapshot()
            .unwrap()
            .get("cc$$pc", "k")
            .unwrap()
            .is_some()
    );
    assert!(ledger.transient("t1").unwrap().is_empty());
}

#[test]
fn kept_private_sets_are_served_by_tx_id_until_purged_or_expired() {
    let dir = TempDir::new("pvt-sets");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    let set = |ns: &str, bytes: &[u8], keys: &[&str]| gridledger_ledger::PrivateSet {
        namespace: ns.into(),
        rwset: bytes.to_vec(),
        keys: keys.iter().map(|k| (*k).to_string()).collect(),
    };
    let mut t0 = tx(0, "t0", VALID, 1, Vec::new());
    t0.private_sets = vec![
        set("cc$$pa", b"set-a", &["k1", "k2"]),
        set("cc$$pb", b"set-b", &["k1"]),
    ];
    let mut t1 = tx(1, "t1", VALID, 1, Vec::new());
    t1.private_sets = vec![set("cc$$pb", b"set-b2", &["k9"])];
    t1.expiries = vec![gridledger_ledger::Expiry {
        namespace: "cc$$pb".into(),
        key: "k9".into(),
        expire_at: 2,
    }];
    t1.private_writes = vec![put("cc$$pb", "k9", b"v")];
    commit(&ledger, vec![t0, t1]);
    assert_eq!(
        ledger.private_data("t0").unwrap(),
        vec![
            ("cc$$pa".to_string(), b"set-a".to_vec()),
            ("cc$$pb".to_string(), b"set-b".to_vec())
        ]
    );
    assert!(ledger.private_data("unknown").unwrap().is_empty());
    // Purging k2 of collection a drops the whole set of a that held it; b's stays.
    let mut purge = tx(0, "t2", VALID, 2, Vec::new());
    purge.purges = vec![("cc$$pa".into(), "k2".into())];
    commit(&ledger, vec![purge]); // block 1
    assert_eq!(
        ledger.private_data("t0").unwrap(),
        vec![("cc$$pb".to_string(), b"set-b".to_vec())]
    );
    assert_eq!(ledger.private_data("t1").unwrap().len(), 1);
    commit(&ledger, Vec::new()); // block 2: k9 expires, and its set with it
    assert!(ledger.private_data("t1").unwrap().is_empty());
    assert_eq!(ledger.private_data("t0").unwrap().len(), 1);
}

#[test]
fn private_metadata_write_moves_only_a_current_value_to_the_new_version() {
    let dir = TempDir::new("pvt-metadata-guard");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    let hash_row = |key: &str| ("cc$$hc".to_string(), format!("hash-of-{key}"));
    let hash_put = |key: &str, value: &[u8]| put("cc$$hc", &hash_row(key).1, value);
    let guarded = |key: &str| MetadataWrite {
        current_with: Some(hash_row(key)),
        ..metadata_write("cc$$pc", key, Some(b"policy"))
    };
    // Block 0: this member has the values of `k` and `j` (value and hash at one version).
    let mut first = tx(
        0,
        "t0",
        VALID,
        1,
        vec![hash_put("k", b"h1"), hash_put("j", b"h1")],
    );
    first.private_writes = vec![put("cc$$pc", "k", b"one"), put("cc$$pc", "j", b"one")];
    commit(&ledger, vec![first]);
    // Block 1: `k` is written again, but this member missed the value: only the hash moves.
    commit(
        &ledger,
        vec![tx(0, "t1", VALID, 1, vec![hash_put("k", b"h2")])],
    );
    // Block 2: metadata of both keys (the hash's and the value's, as a member commits it).
    let mut meta = tx(0, "t2", VALID, 1, vec![]);
    meta.metadata_writes = vec![
        metadata_write("cc$$hc", &hash_row("k").1, Some(b"policy")),
        guarded("k"),
        metadata_write("cc$$hc", &hash_row("j").1, Some(b"policy")),
        guarded("j"),
    ];
    commit(&ledger, vec![meta]);
    let snap = ledger.snapshot().unwrap();
    // `j` was current: value and hash both move to (2, 0).
    assert_eq!(snap.get("cc$$pc", "j").unwrap().unwrap().version, v(2, 0));
    assert_eq!(
        snap.get("cc$$hc", &hash_row("j").1)
            .unwrap()
            .unwrap()
            .version,
        v(2, 0)
    );
    assert_eq!(
        snap.metadata("cc$$pc", "j").unwrap(),
        Some(b"policy".to_vec())
    );
    // `k` was stale: its old value must not take the new version (reads keep failing).
    assert_eq!(snap.get("cc$$pc", "k").unwrap().unwrap().version, v(0, 0));
    assert_eq!(
        snap.get("cc$$hc", &hash_row("k").1)
            .unwrap()
            .unwrap()
            .version,
        v(2, 0)
    );
    assert_eq!(snap.metadata("cc$$pc", "k").unwrap(), None);
}

#[test]
fn schema_version_3_file_gains_the_missing_private_data_table() {
    let dir = TempDir::new("upgrade3");
    {
        let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
        commit(&ledger, vec![tx(0, "t0", VALID, 1, Vec::new())]);
    }
    {
        let db = Database::open(dir.path().join(LEDGER_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(TableDefinition::<&str, &[u8]>::new("pvt_missing"))
            .unwrap();
        txn.commit().unwrap();
    }
    poke_meta(dir.path(), "schema_version", &3u64.to_be_bytes());
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    assert!(ledger.missing_private_data().unwrap().is_empty());
}

#[test]
fn missing_private_data_is_recorded_with_its_block_retried_and_reconciled() {
    let dir = TempDir::new("pvt-missing");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    let hash_row = ("cc$$hc".to_string(), "hk".to_string());
    let missing = MissingPrivateData {
        block: 0,
        tx_num: 0,
        tx_id: "t0".into(),
        expected: b"what it must match".to_vec(),
        attempts: 0,
        next_attempt: 100,
    };
    let block = next_block(&ledger, 1);
    let updates = BlockUpdates {
        txs: vec![tx(0, "t0", VALID, 1, vec![put("cc$$hc", "hk", b"hash")])],
    };
    ledger
        .commit_block_with_missing(&block, &updates, std::slice::from_ref(&missing))
        .unwrap();
    assert_eq!(
        ledger.missing_private_data().unwrap(),
        vec![missing.clone()]
    );
    ledger.retry_missing_private_data(0, 0, 1, 160).unwrap();
    assert_eq!(
        ledger.missing_private_data().unwrap(),
        vec![MissingPrivateData {
            attempts: 1,
            next_attempt: 160,
            ..missing
        }]
    );
    // Found: the value is stored at the transaction's version (its hash row still has it);
    // a write whose hash row moved on is not.
    let data = ReconciledPrivateData {
        writes: vec![
            ReconciledWrite {
                write: put("cc$$pc", "k", b"v"),
                hash_row: hash_row.clone(),
            },
            ReconciledWrite {
                write: put("cc$$pc", "gone", b"x"),
                hash_row: ("cc$$hc".into(), "no-such-hash".into()),
            },
        ],
        metadata_writes: vec![metadata_write("cc$$pc", "k", Some(b"policy"))],
        sets: vec![(
            gridledger_ledger::PrivateSet {
                namespace: "cc$$pc".into(),
                rwset: b"set".to_vec(),
                keys: vec!["k".into()],
            },
            vec![hash_row],
        )],
        expiries: Vec::new(),
    };
    assert_eq!(ledger.reconcile_private_data(0, 0, &data).unwrap(), 1);
    let snap = ledger.snapshot().unwrap();
    assert_eq!(
        snap.get("cc$$pc", "k").unwrap(),
        Some(VersionedValue {
            value: b"v".to_vec(),
            version: v(0, 0)
        })
    );
    assert_eq!(
        snap.metadata("cc$$pc", "k").unwrap(),
        Some(b"policy".to_vec())
    );
    assert_eq!(snap.get("cc$$pc", "gone").unwrap(), None);
    assert!(ledger.missing_private_data().unwrap().is_empty());
    assert_eq!(
        ledger.private_data("t0").unwrap(),
        vec![("cc$$pc".to_string(), b"set".to_vec())]
    );
}

#[test]
fn a_purge_leaves_no_byte_of_the_purged_values_in_the_file() {
    let dir = TempDir::new("purge-erases");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    let marker = |n: usize| format!("ERASE-ME-reading-{n:04}-salt-5f1c");
    let file = dir.path().join(LEDGER_FILE);
    let count = |needle: &str| {
        let bytes = std::fs::read(&file).unwrap();
        bytes
            .windows(needle.len())
            .filter(|w| *w == needle.as_bytes())
            .count()
    };
    // Many blocks of private values (with their kept sets) among public writes.
    for block in 0..20 {
        let mut t = tx(
            0,
            &format!("t{block}"),
            VALID,
            1,
            vec![put("cc", &format!("pub{block}"), &[b'p'; 700])],
        );
        let n = block;
        t.private_writes = vec![put(
            "cc$$preadings",
            &format!("r{n:04}"),
            marker(n).as_bytes(),
        )];
        t.private_sets = vec![gridledger_ledger::PrivateSet {
            namespace: "cc$$preadings".into(),
            rwset: marker(n).into_bytes(),
            keys: vec![format!("r{n:04}")],
        }];
        commit(&ledger, vec![t]);
    }
    assert!(
        count("ERASE-ME") >= 20,
        "the values are on disk before the purge"
    );
    // One block purges the first ten: their values go from the state and the kept sets, and
    // the file holds none of their bytes afterwards; the other ten are untouched.
    let mut purge = tx(0, "purge", VALID, 2, Vec::new());
    for n in 0..10 {
        purge
            .private_writes
            .push(delete("cc$$preadings", &format!("r{n:04}")));
        purge
            .purges
            .push(("cc$$preadings".into(), format!("r{n:04}")));
    }
    commit(&ledger, vec![purge]);
    for n in 0..10 {
        assert_eq!(count(&marker(n)), 0, "{} is still in the file", marker(n));
    }
    for n in 10..20 {
        assert!(count(&marker(n)) > 0, "{} was not purged", marker(n));
    }
    let snap = ledger.snapshot().unwrap();
    assert!(snap.get("cc$$preadings", "r0003").unwrap().is_none());
    assert!(snap.get("cc$$preadings", "r0013").unwrap().is_some());
    drop(snap);
    // The ledger goes on: another block commits and the chain reopens intact.
    commit(
        &ledger,
        vec![tx(0, "after", VALID, 3, vec![put("cc", "after", b"1")])],
    );
    let height = ledger.height();
    drop(ledger);
    assert_eq!(Ledger::open(dir.path(), CHANNEL).unwrap().height(), height);
}

#[test]
fn compaction_waits_for_live_snapshots_and_runs_after_the_next_commit() {
    let dir = TempDir::new("purge-busy");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    let mut t = tx(0, "t0", VALID, 1, Vec::new());
    t.private_writes = vec![put("cc$$pc", "k", b"PENDING-ERASURE-VALUE")];
    commit(&ledger, vec![t]);
    let file = dir.path().join(LEDGER_FILE);
    let on_disk = || {
        let bytes = std::fs::read(&file).unwrap();
        bytes.windows(21).any(|w| w == b"PENDING-ERASURE-VALUE")
    };
    // A snapshot held across the purge keeps the file from being compacted at once…
    let snapshot = ledger.snapshot().unwrap();
    let mut purge = tx(0, "purge", VALID, 2, Vec::new());
    purge.private_writes = vec![delete("cc$$pc", "k")];
    purge.purges = vec![("cc$$pc".into(), "k".into())];
    commit(&ledger, vec![purge]);
    assert!(on_disk(), "compaction cannot run under a live snapshot");
    drop(snapshot);
    // …and the next commit compacts.
    commit(&ledger, Vec::new());
    assert!(!on_disk(), "the purged value is gone after the next commit");
}

/// CommitStatus waits through `committed_tx`: answered at once for a committed transaction,
/// and by the commit that indexes a pending one (its first occurrence, as the index keeps),
/// while a wait abandoned by its caller is forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_hears_the_commit_of_its_transaction() {
    let dir = TempDir::new("committed-tx");
    let ledger = std::sync::Arc::new(Ledger::open(dir.path(), CHANNEL).unwrap());
    commit(
        &ledger,
        vec![tx(0, "tx-a", 0, 1, vec![put("ns", "a", b"1")])],
    );
    let found = ledger.committed_tx("tx-a").await.expect("committed");
    assert_eq!(
        (found.block_num, found.tx_num, found.validation_code),
        (0, 0, 0)
    );

    let waiter = {
        let ledger = ledger.clone();
        tokio::spawn(async move { ledger.committed_tx("tx-b").await })
    };
    let abandoned = {
        let ledger = ledger.clone();
        tokio::spawn(async move { ledger.committed_tx("tx-never").await })
    };
    // Let both register before the commits.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    abandoned.abort();
    commit(&ledger, vec![tx(0, "tx-other", 0, 2, vec![])]);
    assert!(
        !waiter.is_finished(),
        "another transaction's commit does not answer"
    );
    commit(
        &ledger,
        vec![
            tx(0, "tx-c", 0, 3, vec![]),
            tx(1, "tx-b", 11, 3, vec![]),
            tx(2, "tx-b", 12, 3, vec![]),
        ],
    );
    let heard = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
        .await
        .expect("answered")
        .expect("the task ran")
        .expect("committed");
    assert_eq!(
        (heard.block_num, heard.tx_num, heard.validation_code),
        (2, 1, 11)
    );
    assert_eq!(ledger.tx_location("tx-b").unwrap(), Some(heard));
}

/// The image a crash leaves of a ledger still open for writing (every commit is durable, the
/// file says "recovery required"), copied into `to`.
fn crash_image(ledger_dir: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's folder");
    std::fs::copy(ledger_dir.join(LEDGER_FILE), to.join(LEDGER_FILE)).expect("copy the file");
}

/// Zeroes the second half (the checksummed end) of commit slot `slot` of the redb file in `dir`
/// — the primary one when `None` — as a write torn by a power cut leaves it.
fn tear_commit_slot(dir: &Path, slot: Option<usize>) {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join(LEDGER_FILE))
        .expect("open the copy");
    let mut god = [0u8; 1];
    file.read_exact_at(&mut god, 9).expect("read the god byte");
    assert!(
        god[0] & 2 != 0,
        "an open ledger's file says recovery required"
    );
    let slot = slot.unwrap_or(usize::from(god[0] & 1));
    file.write_all_at(&[0u8; 64], 64 + 128 * slot as u64 + 64)
        .expect("tear the slot");
}

#[test]
fn a_torn_last_commit_opens_at_the_block_before_it() {
    let dir = TempDir::new("torn-live");
    let copy = TempDir::new("torn-copy");
    let intact = TempDir::new("torn-intact");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    commit(
        &ledger,
        vec![tx(0, "a", VALID, 1, vec![put("cc", "k", b"v1")])],
    );
    let before_last = ledger.info();
    commit(
        &ledger,
        vec![tx(0, "b", VALID, 2, vec![put("cc", "k", b"v2")])],
    );
    crash_image(dir.path(), intact.path());
    crash_image(dir.path(), copy.path());
    tear_commit_slot(copy.path(), None);

    // Untorn, the crash image holds both blocks.
    assert_eq!(Ledger::open(intact.path(), CHANNEL).unwrap().height(), 2);
    // Torn, it rolls back to the commit before: block 0 and its state, chain intact.
    let recovered = Ledger::open(copy.path(), CHANNEL).unwrap();
    assert_eq!(recovered.info(), before_last);
    assert!(recovered.block_bytes(0).unwrap().is_some());
    assert_eq!(recovered.tx_location("b").unwrap(), None);
    let snap = recovered.snapshot().unwrap();
    assert_eq!(snap.get("cc", "k").unwrap().unwrap().value, b"v1".to_vec());
    drop(snap);
    // And it takes the lost block again.
    commit(
        &recovered,
        vec![tx(0, "b", VALID, 2, vec![put("cc", "k", b"v2")])],
    );
    assert_eq!(recovered.info(), ledger.info());
}

#[test]
fn a_ledger_with_both_commit_slots_torn_is_reported_corrupt_naming_the_file() {
    let dir = TempDir::new("torn-both-live");
    let copy = TempDir::new("torn-both-copy");
    let ledger = Ledger::open(dir.path(), CHANNEL).unwrap();
    commit(
        &ledger,
        vec![tx(0, "a", VALID, 1, vec![put("cc", "k", b"v1")])],
    );
    commit(
        &ledger,
        vec![tx(0, "b", VALID, 2, vec![put("cc", "k", b"v2")])],
    );
    crash_image(dir.path(), copy.path());
    tear_commit_slot(copy.path(), Some(0));
    tear_commit_slot(copy.path(), Some(1));
    match Ledger::open(copy.path(), CHANNEL) {
        Err(LedgerError::Corrupt { what }) => {
            assert!(what.contains(LEDGER_FILE), "{what}");
            assert!(what.contains("commit slots are corrupted"), "{what}");
        }
        other => panic!("a ledger with no intact commit opened as {other:?}"),
    }
}
