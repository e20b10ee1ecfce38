//! Tests of [`LedgerReader`], the read-only view used by offline verification: it reads what a
//! ledger stored without writing the file, refuses a file a live ledger holds, reports a
//! missing or foreign file, scans the state in key order and hashes it deterministically.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use gridledger_ledger::{
    BlockUpdates, LEDGER_FILE, Ledger, LedgerError, LedgerReader, StateWrite, TxUpdates, Version,
};
use gridledger_proto::block_data_hash;
use gridledger_proto::common::{Block, BlockData, BlockHeader, BlockMetadata};
use gridledger_proto::prost::Message;

/// A unique directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gridledger-reader-{name}-{}-{}",
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

fn put(namespace: &str, key: &str, value: &[u8]) -> StateWrite {
    StateWrite {
        namespace: namespace.into(),
        key: key.into(),
        value: Some(value.to_vec()),
    }
}

/// Commits one block with one valid transaction making `writes`.
fn commit(ledger: &Ledger, tx_id: &str, writes: Vec<StateWrite>) {
    let info = ledger.info();
    let data = BlockData {
        data: vec![format!("envelope of {tx_id}").into_bytes()],
    };
    let block = Block {
        header: Some(BlockHeader {
            number: info.height,
            previous_hash: info.current_block_hash.clone(),
            data_hash: block_data_hash(&data).to_vec(),
        }),
        data: Some(data),
        metadata: Some(BlockMetadata {
            metadata: vec![Vec::new(); 5],
        }),
    };
    let updates = BlockUpdates {
        txs: vec![TxUpdates {
            tx_id: tx_id.into(),
            writes,
            ..TxUpdates::default()
        }],
    };
    ledger.commit_block(&block, &updates).expect("commit");
}

/// A ledger of three blocks: keys written, overwritten, and a private value.
fn build(dir: &Path, second_value: &[u8]) {
    let ledger = Ledger::open(dir, "market").expect("open");
    commit(
        &ledger,
        "t0",
        vec![put("basic", "b", b"1"), put("basic", "a", b"2")],
    );
    commit(&ledger, "t1", vec![put("basic", "a", second_value)]);
    commit(&ledger, "t2", vec![put("cc$$pcoll", "k", b"secret")]);
}

#[test]
fn reader_returns_blocks_and_state_as_stored_and_leaves_the_file_untouched() {
    let dir = TempDir::new("read");
    build(dir.path(), b"3");
    let before = std::fs::read(dir.path().join(LEDGER_FILE)).expect("file");

    let reader = LedgerReader::open(dir.path()).expect("read-only open");
    assert_eq!(reader.channel_id(), "market");
    assert_eq!(reader.height(), 3);
    assert_eq!(reader.block_numbers().expect("numbers"), vec![0, 1, 2]);
    let stored = reader.stored_block(1).expect("read").expect("block 1");
    let block = Block::decode(stored.bytes.as_slice()).expect("decodes");
    let header = block.header.expect("header");
    assert_eq!(
        stored.recorded_header_hash.as_deref(),
        Some(gridledger_proto::block_header_hash(&header).as_slice())
    );
    assert!(reader.stored_block(3).expect("read").is_none());
    assert_eq!(
        reader
            .tx_location("t1")
            .expect("index")
            .map(|l| l.block_num),
        Some(1)
    );

    let mut keys = Vec::new();
    reader
        .scan_state(|e| {
            keys.push((e.namespace, e.key, e.value, e.version));
            ControlFlow::Continue(())
        })
        .expect("scan");
    assert_eq!(
        keys,
        vec![
            (
                "basic".into(),
                "a".into(),
                b"3".to_vec(),
                Version {
                    block_num: 1,
                    tx_num: 0
                }
            ),
            (
                "basic".into(),
                "b".into(),
                b"1".to_vec(),
                Version {
                    block_num: 0,
                    tx_num: 0
                }
            ),
            (
                "cc$$pcoll".into(),
                "k".into(),
                b"secret".to_vec(),
                Version {
                    block_num: 2,
                    tx_num: 0
                }
            ),
        ]
    );
    let (_, count) = reader.state_hash().expect("hash");
    assert_eq!(count, 2, "private values are outside the state hash");
    drop(reader);
    assert_eq!(
        std::fs::read(dir.path().join(LEDGER_FILE)).expect("file"),
        before,
        "a reader must not write the file"
    );
}

#[test]
fn state_hash_is_equal_for_equal_states_and_differs_on_one_value() {
    let (a, b, c) = (TempDir::new("a"), TempDir::new("b"), TempDir::new("c"));
    build(a.path(), b"3");
    build(b.path(), b"3");
    build(c.path(), b"4");
    let hash = |d: &TempDir| {
        LedgerReader::open(d.path())
            .expect("open")
            .state_hash()
            .expect("hash")
    };
    assert_eq!(hash(&a), hash(&b));
    assert_ne!(hash(&a).0, hash(&c).0);
}

#[test]
fn reader_refuses_a_file_held_by_a_live_ledger() {
    let dir = TempDir::new("locked");
    let ledger = Ledger::open(dir.path(), "market").expect("open");
    match LedgerReader::open(dir.path()) {
        Err(LedgerError::InUse { path }) => assert!(path.ends_with(LEDGER_FILE)),
        other => panic!("expected InUse, got {other:?}"),
    }
    drop(ledger);
    LedgerReader::open(dir.path()).expect("opens once the ledger is closed");
}

#[test]
fn reader_reports_a_missing_file_and_a_file_that_is_not_a_ledger() {
    let dir = TempDir::new("bad");
    match LedgerReader::open(dir.path()) {
        Err(LedgerError::NotALedger { path }) => assert!(path.ends_with(LEDGER_FILE)),
        other => panic!("expected NotALedger, got {other:?}"),
    }
    std::fs::create_dir_all(dir.path()).expect("mkdir");
    std::fs::write(dir.path().join(LEDGER_FILE), b"this is not a database").expect("write");
    let err = LedgerReader::open(dir.path()).expect_err("garbage must not open");
    let text = err.to_string();
    assert!(text.contains(LEDGER_FILE), "{text}");
}
