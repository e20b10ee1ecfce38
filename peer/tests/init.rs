//! Fabric's initialization rule for chaincode definitions that require it: the first
//! invocation of a definition version must be an init and only the first; the init records the
//! version under the reserved key of the chaincode's namespace, read and written in the
//! transaction's read-write set so two concurrent inits conflict at validation.

use std::collections::BTreeMap;

use gridledger_chaincode::{StateReader, failed, success, tx_rwset};
use gridledger_peer::endorser::{
    INITIALIZED_KEY, InitMarker, init_decision, record_initialization,
};
use gridledger_proto::kvrwset::{KvRead, KvWrite, KvrwSet, Version};
use gridledger_proto::prost::Message;
use gridledger_proto::rwset::NsReadWriteSet;

#[derive(Default)]
struct MemState(BTreeMap<(String, String), (Vec<u8>, Version)>);

impl StateReader for MemState {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<(Vec<u8>, Version)>, String> {
        Ok(self.0.get(&(namespace.to_owned(), key.to_owned())).cloned())
    }

    fn range(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: usize,
    ) -> Result<Vec<(String, Vec<u8>, Version)>, String> {
        Ok(Vec::new())
    }
}

#[test]
fn the_first_invocation_of_a_version_must_be_the_init_and_only_the_first() {
    assert_eq!(
        INITIALIZED_KEY.as_bytes()[..5],
        [0x00, 0xf4, 0x8f, 0xbf, 0xbf]
    );
    let mut state = MemState::default();
    let err = init_decision(&state, "meters", "1.0", false).expect_err("not initialized");
    assert!(err.contains("must call as init first"), "{err}");
    let marker = init_decision(&state, "meters", "1.0", true)
        .expect("init allowed")
        .expect("this is the init");
    assert_eq!(marker.read_version, None);

    let version = Version {
        block_num: 4,
        tx_num: 1,
    };
    state.0.insert(
        ("meters".into(), INITIALIZED_KEY.into()),
        (b"1.0".to_vec(), version),
    );
    assert_eq!(init_decision(&state, "meters", "1.0", false), Ok(None));
    let err = init_decision(&state, "meters", "1.0", true).expect_err("twice");
    assert!(err.contains("already initialized"), "{err}");
    // A new definition version needs its own init, which reads the old marker's version.
    let upgrade = init_decision(&state, "meters", "2.0", true)
        .expect("allowed")
        .expect("init of 2.0");
    assert_eq!(upgrade.read_version, Some(version));
    assert!(init_decision(&state, "meters", "2.0", false).is_err());
}

#[test]
fn the_init_marker_joins_the_read_write_set_in_key_order() {
    let kv = KvrwSet {
        reads: vec![KvRead {
            key: "asset1".into(),
            version: None,
        }],
        writes: vec![KvWrite {
            key: "asset1".into(),
            is_delete: false,
            value: b"v".to_vec(),
        }],
        ..Default::default()
    };
    let mut result = gridledger_chaincode::SimulationResult {
        response: success(Vec::new()),
        rwset: tx_rwset(vec![NsReadWriteSet {
            namespace: "meters".into(),
            rwset: kv.encode_to_vec(),
            collection_hashed_rwset: Vec::new(),
        }]),
        rwset_bytes: Vec::new(),
        event: None,
        pvt_rwset: Default::default(),
    };
    let marker = InitMarker {
        read_version: None,
        version: "1.0".into(),
    };
    record_initialization(&mut result, "meters", &marker);
    let ns = &result.rwset.ns_rwset[0];
    let kv = KvrwSet::decode(ns.rwset.as_slice()).expect("kv");
    assert_eq!(
        kv.reads.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["\u{0}\u{10FFFF}initialized", "asset1"]
    );
    assert_eq!(kv.writes[0].key, INITIALIZED_KEY);
    assert_eq!(kv.writes[0].value, b"1.0");
    assert_eq!(kv.writes[1].key, "asset1");
    assert_eq!(result.rwset_bytes, result.rwset.encode_to_vec());

    // A chaincode that wrote nothing still records the marker in its own namespace.
    let mut empty = failed("placeholder");
    empty.response = success(Vec::new());
    record_initialization(&mut empty, "meters", &marker);
    assert_eq!(empty.rwset.ns_rwset.len(), 1);
    assert_eq!(empty.rwset.ns_rwset[0].namespace, "meters");
}
