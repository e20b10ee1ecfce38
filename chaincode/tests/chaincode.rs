//! Tests of the chaincode API against an in-memory world state: the read-write set layout
//! (Fabric's conventions), the stub's accessors and range/composite-key rules, events, panic
//! containment, and every function of the built-in `basic` chaincode.

mod support;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use gridledger_chaincode::basic::{Asset, AssetTransferBasic, MAX_BULK_ASSETS, bulk_asset};
use gridledger_chaincode::stub::{
    EMPTY_KEY_SUBSTITUTE, TOTAL_QUERY_LIMIT, split_contract_function,
};
use gridledger_chaincode::{
    Chaincode, ChaincodeStub, CompositeKeyError, Invocation, Registry, SimulationResult,
    StateReader, StubError, complete, create_composite_key, error, failed, simulate,
    split_composite_key, success, tx_rwset,
};
use gridledger_proto::kvrwset::{
    KvRead, KvWrite, KvrwSet, RangeQueryInfo, Version, range_query_info::ReadsInfo,
};
use gridledger_proto::prost::Message;
use gridledger_proto::prost_types::Timestamp;
use gridledger_proto::protos::{self, Response};
use gridledger_proto::rwset::{NsReadWriteSet, TxReadWriteSet};

const NS: &str = "basic";
const TX_ID: &str = "6f1c0ab0a2f9d5e3c1b7e8a4d2c6f0b9a1e3d5c7b9f1a3c5e7d9b1f3a5c7e9d1";

/// An in-memory world state: (namespace, key) → (value, version). Counts `get` calls.
#[derive(Default)]
struct MemState {
    entries: BTreeMap<(String, String), (Vec<u8>, Version)>,
    gets: AtomicUsize,
}

impl MemState {
    fn with(mut self, ns: &str, key: &str, value: &[u8], block_num: u64, tx_num: u64) -> Self {
        self.entries.insert(
            (ns.to_owned(), key.to_owned()),
            (value.to_vec(), Version { block_num, tx_num }),
        );
        self
    }
}

impl StateReader for MemState {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<(Vec<u8>, Version)>, String> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        Ok(support::get(&self.entries, namespace, key))
    }

    fn range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>, Version)>, String> {
        Ok(support::range(&self.entries, namespace, start, end, limit))
    }
}

/// A state whose every read fails.
struct BrokenState;

impl StateReader for BrokenState {
    fn get(&self, _: &str, _: &str) -> Result<Option<(Vec<u8>, Version)>, String> {
        Err("disk on fire".to_owned())
    }

    fn range(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: usize,
    ) -> Result<Vec<(String, Vec<u8>, Version)>, String> {
        Err("disk on fire".to_owned())
    }
}

/// A state that answers every range with as many generated keys as asked for.
struct EndlessState;

impl StateReader for EndlessState {
    fn get(&self, _: &str, _: &str) -> Result<Option<(Vec<u8>, Version)>, String> {
        Ok(None)
    }

    fn range(
        &self,
        _: &str,
        _: &str,
        _: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>, Version)>, String> {
        Ok((0..limit)
            .map(|i| (format!("k{i:07}"), b"v".to_vec(), Version::default()))
            .collect())
    }
}

/// A chaincode made of a closure.
struct FnChaincode<F>(F);

impl<F> Chaincode for FnChaincode<F>
where
    F: Fn(&mut ChaincodeStub<'_>) -> Response + Send + Sync,
{
    fn invoke(&self, stub: &mut ChaincodeStub<'_>) -> Response {
        (self.0)(stub)
    }
}

fn invocation(args: &[&str]) -> Invocation {
    Invocation {
        channel_id: "market".to_owned(),
        tx_id: TX_ID.to_owned(),
        chaincode: NS.to_owned(),
        args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
        creator: b"serialized-creator".to_vec(),
        creator_msp_id: "DSOMSP".to_owned(),
        ..Invocation::default()
    }
}

fn run(cc: &dyn Chaincode, args: &[&str], state: &dyn StateReader) -> SimulationResult {
    simulate(cc, NS, &invocation(args), state)
}

fn run_basic(args: &[&str], state: &dyn StateReader) -> SimulationResult {
    run(&AssetTransferBasic, args, state)
}

/// The KVRWSet of the only namespace.
fn kv(result: &SimulationResult) -> KvrwSet {
    assert_eq!(result.rwset.ns_rwset.len(), 1, "{:?}", result.rwset);
    assert_eq!(result.rwset.ns_rwset[0].namespace, NS);
    KvrwSet::decode(result.rwset.ns_rwset[0].rwset.as_slice()).expect("KVRWSet decodes")
}

fn read(key: &str, version: Option<(u64, u64)>) -> KvRead {
    KvRead {
        key: key.to_owned(),
        version: version.map(|(block_num, tx_num)| Version { block_num, tx_num }),
    }
}

fn write(key: &str, value: &[u8]) -> KvWrite {
    KvWrite {
        key: key.to_owned(),
        is_delete: value.is_empty(),
        value: value.to_vec(),
    }
}

fn asset_json(id: &str, color: &str, size: i64, owner: &str, value: i64) -> Vec<u8> {
    format!(
        r#"{{"AppraisedValue":{value},"Color":"{color}","ID":"{id}","Owner":"{owner}","Size":{size}}}"#
    )
    .into_bytes()
}

fn assert_ok(result: &SimulationResult) {
    assert_eq!(
        result.response.status, 200,
        "message: {}",
        result.response.message
    );
}

fn assert_fails(result: &SimulationResult, message: &str) {
    assert_eq!(result.response.status, 500);
    assert_eq!(result.response.message, message);
}

fn state_with_asset1() -> MemState {
    MemState::default().with(
        NS,
        "asset1",
        &asset_json("asset1", "blue", 5, "Tomoko", 300),
        3,
        1,
    )
}

// ---------------------------------------------------------------------------------------------
// basic

#[test]
fn init_ledger_writes_the_six_sample_assets_with_sample_json() {
    let result = run_basic(&["InitLedger"], &MemState::default());
    assert_ok(&result);
    let kv = kv(&result);
    assert!(kv.reads.is_empty());
    let keys: Vec<_> = kv.writes.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(
        keys,
        ["asset1", "asset2", "asset3", "asset4", "asset5", "asset6"]
    );
    assert_eq!(
        kv.writes[0].value,
        br#"{"AppraisedValue":300,"Color":"blue","ID":"asset1","Owner":"Tomoko","Size":5}"#
    );
    assert_eq!(
        kv.writes[2].value,
        asset_json("asset3", "green", 10, "Jin Soo", 500)
    );
    assert_eq!(
        kv.writes[5].value,
        asset_json("asset6", "white", 15, "Michel", 800)
    );
    assert!(result.event.is_none());
}

#[test]
fn create_asset_reads_missing_key_writes_json_and_emits_stamped_event() {
    let result = run_basic(
        &["CreateAsset", "meter7", "green", "12", "Retailer", "1500"],
        &MemState::default(),
    );
    assert_ok(&result);
    assert!(result.response.payload.is_empty());
    let json = asset_json("meter7", "green", 12, "Retailer", 1500);
    let kv = kv(&result);
    assert_eq!(kv.reads, [read("meter7", None)]);
    assert_eq!(kv.writes, [write("meter7", &json)]);
    assert_eq!(
        result.event,
        Some(protos::ChaincodeEvent {
            chaincode_id: NS.to_owned(),
            tx_id: TX_ID.to_owned(),
            event_name: "CreateAsset".to_owned(),
            payload: json,
        })
    );
}

#[test]
fn create_asset_that_exists_fails_with_the_sample_message_and_keeps_the_read() {
    let result = run_basic(
        &["CreateAsset", "asset1", "red", "1", "Bob", "2"],
        &state_with_asset1(),
    );
    assert_fails(&result, "the asset asset1 already exists");
    assert!(result.event.is_none());
    let kv = kv(&result);
    assert_eq!(kv.reads, [read("asset1", Some((3, 1)))]);
    assert!(kv.writes.is_empty());
}

#[test]
fn read_asset_returns_the_asset_json() {
    let result = run_basic(&["ReadAsset", "asset1"], &state_with_asset1());
    assert_ok(&result);
    assert_eq!(
        result.response.payload,
        asset_json("asset1", "blue", 5, "Tomoko", 300)
    );
    assert_eq!(kv(&result).reads, [read("asset1", Some((3, 1)))]);
    assert!(result.event.is_none());
}

#[test]
fn read_missing_asset_fails_with_the_sample_message() {
    let result = run_basic(&["ReadAsset", "nope"], &MemState::default());
    assert_fails(&result, "the asset nope does not exist");
}

#[test]
fn update_asset_overwrites_and_emits_update_event() {
    let result = run_basic(
        &["UpdateAsset", "asset1", "purple", "6", "Jin Soo", "350"],
        &state_with_asset1(),
    );
    assert_ok(&result);
    let json = asset_json("asset1", "purple", 6, "Jin Soo", 350);
    let kv = kv(&result);
    assert_eq!(kv.reads, [read("asset1", Some((3, 1)))]);
    assert_eq!(kv.writes, [write("asset1", &json)]);
    let event = result.event.expect("update emits an event");
    assert_eq!(event.event_name, "UpdateAsset");
    assert_eq!(event.payload, json);
}

#[test]
fn update_missing_asset_fails() {
    let result = run_basic(
        &["UpdateAsset", "ghost", "purple", "6", "Jin Soo", "350"],
        &MemState::default(),
    );
    assert_fails(&result, "the asset ghost does not exist");
    assert!(kv(&result).writes.is_empty());
}

#[test]
fn delete_asset_writes_a_delete_and_emits_the_deleted_asset() {
    let result = run_basic(&["DeleteAsset", "asset1"], &state_with_asset1());
    assert_ok(&result);
    let kv = kv(&result);
    assert_eq!(kv.reads, [read("asset1", Some((3, 1)))]);
    assert_eq!(
        kv.writes,
        [KvWrite {
            key: "asset1".to_owned(),
            is_delete: true,
            value: Vec::new(),
        }]
    );
    let event = result.event.expect("delete emits an event");
    assert_eq!(event.event_name, "DeleteAsset");
    assert_eq!(
        event.payload,
        asset_json("asset1", "blue", 5, "Tomoko", 300)
    );
}

#[test]
fn delete_missing_asset_fails() {
    let result = run_basic(&["DeleteAsset", "ghost"], &MemState::default());
    assert_fails(&result, "the asset ghost does not exist");
    assert!(result.event.is_none());
}

#[test]
fn asset_exists_answers_true_or_false() {
    let state = state_with_asset1();
    let yes = run_basic(&["AssetExists", "asset1"], &state);
    assert_ok(&yes);
    assert_eq!(yes.response.payload, b"true");
    let no = run_basic(&["AssetExists", "asset9"], &state);
    assert_ok(&no);
    assert_eq!(no.response.payload, b"false");
    assert_eq!(kv(&no).reads, [read("asset9", None)]);
}

#[test]
fn transfer_asset_returns_old_owner_and_emits_the_updated_asset() {
    let result = run_basic(
        &["TransferAsset", "asset1", "Christopher"],
        &state_with_asset1(),
    );
    assert_ok(&result);
    assert_eq!(result.response.payload, b"Tomoko");
    let json = asset_json("asset1", "blue", 5, "Christopher", 300);
    let kv = kv(&result);
    assert_eq!(kv.reads, [read("asset1", Some((3, 1)))]);
    assert_eq!(kv.writes, [write("asset1", &json)]);
    let event = result.event.expect("transfer emits an event");
    assert_eq!(event.event_name, "TransferAsset");
    assert_eq!(event.payload, json);
}

#[test]
fn transfer_missing_asset_fails() {
    let result = run_basic(&["TransferAsset", "ghost", "Bob"], &MemState::default());
    assert_fails(&result, "the asset ghost does not exist");
}

#[test]
fn create_assets_writes_a_numbered_set_with_deterministic_fields_and_one_summary_event() {
    let result = run_basic(&["CreateAssets", "pre-", "8", "3"], &MemState::default());
    assert_ok(&result);
    assert!(result.response.payload.is_empty());
    let kv = kv(&result);
    // Every id is checked like CreateAsset checks its one id.
    assert_eq!(
        kv.reads,
        [
            read("pre-10", None),
            read("pre-8", None),
            read("pre-9", None)
        ]
    );
    // Fields depend on the number alone: colour n mod 6, size 1 + n mod 20, owner
    // Owner{n mod 100}, value 100 + 10 (n mod 100).
    assert_eq!(
        kv.writes,
        [
            write("pre-10", &asset_json("pre-10", "black", 11, "Owner10", 200)),
            write("pre-8", &asset_json("pre-8", "green", 9, "Owner8", 180)),
            write("pre-9", &asset_json("pre-9", "yellow", 10, "Owner9", 190)),
        ]
    );
    let event = result.event.expect("CreateAssets emits an event");
    assert_eq!(event.event_name, "CreateAssets");
    assert_eq!(event.payload, br#"{"prefix":"pre-","first":8,"count":3}"#);
    assert_eq!(
        bulk_asset("pre-", 8).to_json(),
        asset_json("pre-8", "green", 9, "Owner8", 180)
    );
    // The same call on another peer writes the same bytes.
    let again = run_basic(&["CreateAssets", "pre-", "8", "3"], &MemState::default());
    assert_eq!(again.rwset, result.rwset);
}

#[test]
fn create_assets_takes_up_to_the_limit_in_one_transaction_and_reaches_the_last_number() {
    let max = MAX_BULK_ASSETS.to_string();
    let result = run_basic(&["CreateAssets", "k", "0", &max], &MemState::default());
    assert_ok(&result);
    let kv = kv(&result);
    assert_eq!(kv.writes.len(), 10_000);
    assert_eq!(kv.reads.len(), 10_000);
    assert!(kv.writes.iter().any(|w| w.key == "k9999"));
    assert!(!kv.writes.iter().any(|w| w.key == "k10000"));
    // The largest number is reachable; one past it is refused.
    let top = u64::MAX.to_string();
    let result = run_basic(&["CreateAssets", "k", &top, "1"], &MemState::default());
    assert_ok(&result);
    assert_eq!(kv_keys(&result), [format!("k{top}")]);
    assert_fails(
        &run_basic(&["CreateAssets", "k", &top, "2"], &MemState::default()),
        "CreateAssets numbers from 18446744073709551615 for 2 assets run past 18446744073709551615",
    );
}

fn kv_keys(result: &SimulationResult) -> Vec<String> {
    kv(result).writes.into_iter().map(|w| w.key).collect()
}

#[test]
fn create_assets_over_an_existing_asset_fails_and_writes_nothing() {
    let state = MemState::default().with(NS, "k6", b"{}", 2, 0);
    let result = run_basic(&["CreateAssets", "k", "5", "3"], &state);
    assert_fails(&result, "the asset k6 already exists");
    assert!(result.event.is_none());
    assert!(kv(&result).writes.is_empty());
}

#[test]
fn create_assets_refuses_counts_out_of_bounds_and_numbers_that_are_not_counts() {
    let empty = MemState::default();
    assert_fails(
        &run_basic(&["CreateAssets", "k", "0", "0"], &empty),
        "CreateAssets creates 1 to 10000 assets per call, not 0",
    );
    assert_fails(
        &run_basic(&["CreateAssets", "k", "0", "10001"], &empty),
        "CreateAssets creates 1 to 10000 assets per call, not 10001",
    );
    for (first, count, name, bad) in [
        ("-1", "5", "first", "-1"),
        ("+1", "5", "first", "+1"),
        ("", "5", "first", ""),
        ("1", "ten", "count", "ten"),
        ("1", "99999999999999999999", "count", "99999999999999999999"),
    ] {
        let result = run_basic(&["CreateAssets", "k", first, count], &empty);
        assert_fails(
            &result,
            &format!("Error managing parameter {name}. {bad:?} is not a non-negative integer"),
        );
        assert!(result.rwset.ns_rwset.is_empty());
    }
    assert_fails(
        &run_basic(&["CreateAssets", "k", "1"], &empty),
        "Incorrect number of params for CreateAssets. Expected 3 (prefix, first, count), received 2",
    );
}

#[test]
fn get_all_assets_returns_a_json_array_and_records_the_range_query() {
    let composite = create_composite_key("owner~id", &["Tomoko", "asset1"]).unwrap();
    let state = state_with_asset1()
        .with(
            NS,
            "asset2",
            &asset_json("asset2", "red", 5, "Brad", 400),
            4,
            0,
        )
        .with(NS, &composite, b"\x00", 4, 1)
        .with(
            "other",
            "asset3",
            &asset_json("asset3", "x", 1, "y", 2),
            4,
            2,
        );
    let result = run_basic(&["GetAllAssets"], &state);
    assert_ok(&result);
    let expected = [
        asset_json("asset1", "blue", 5, "Tomoko", 300),
        asset_json("asset2", "red", 5, "Brad", 400),
    ]
    .map(|a| String::from_utf8(a).unwrap())
    .join(",");
    assert_eq!(
        String::from_utf8(result.response.payload.clone()).unwrap(),
        format!("[{expected}]")
    );
    let kv = kv(&result);
    assert!(kv.reads.is_empty(), "range reads are not plain reads");
    assert_eq!(
        kv.range_queries_info,
        [RangeQueryInfo {
            start_key: "\u{1}".to_owned(),
            end_key: String::new(),
            itr_exhausted: true,
            reads_info: Some(ReadsInfo::RawReads(gridledger_proto::kvrwset::QueryReads {
                kv_reads: vec![read("asset1", Some((3, 1))), read("asset2", Some((4, 0)))],
            })),
        }]
    );
}

#[test]
fn get_all_assets_on_empty_state_returns_empty_array_and_a_range_without_reads() {
    let result = run_basic(&["GetAllAssets"], &MemState::default());
    assert_ok(&result);
    assert_eq!(result.response.payload, b"[]");
    let kv = kv(&result);
    assert_eq!(kv.range_queries_info.len(), 1);
    assert!(kv.range_queries_info[0].itr_exhausted);
    assert_eq!(kv.range_queries_info[0].reads_info, None);
}

#[test]
fn get_all_assets_reports_a_value_that_is_not_an_asset() {
    let state = MemState::default().with(NS, "junk", b"not json", 1, 0);
    let result = run_basic(&["GetAllAssets"], &state);
    assert_eq!(result.response.status, 500);
    assert!(
        result
            .response
            .message
            .starts_with("failed to parse asset junk: "),
        "{}",
        result.response.message
    );
}

#[test]
fn wrong_argument_count_fails_with_a_clear_message() {
    let result = run_basic(
        &["CreateAsset", "a1", "blue", "5", "Tomoko"],
        &MemState::default(),
    );
    assert_fails(
        &result,
        "Incorrect number of params for CreateAsset. Expected 5 (id, color, size, owner, \
         appraisedValue), received 4",
    );
    assert!(result.rwset.ns_rwset.is_empty());
    let result = run_basic(&["ReadAsset"], &MemState::default());
    assert_fails(
        &result,
        "Incorrect number of params for ReadAsset. Expected 1 (id), received 0",
    );
    let result = run_basic(&["GetAllAssets", "extra"], &MemState::default());
    assert_fails(
        &result,
        "Incorrect number of params for GetAllAssets. Expected 0 (no parameters), received 1",
    );
}

#[test]
fn non_numeric_size_or_value_fails_with_a_clear_message() {
    let result = run_basic(
        &["CreateAsset", "a1", "blue", "five", "Tomoko", "300"],
        &MemState::default(),
    );
    assert_fails(
        &result,
        "Error managing parameter size. Conversion error. Cannot convert passed value \"five\" to int",
    );
    assert!(result.rwset.ns_rwset.is_empty());
    let result = run_basic(
        &["UpdateAsset", "a1", "blue", "5", "Tomoko", "3.5"],
        &MemState::default(),
    );
    assert_fails(
        &result,
        "Error managing parameter appraisedValue. Conversion error. Cannot convert passed value \
         \"3.5\" to int",
    );
}

#[test]
fn functions_route_like_fabric_contract_api() {
    let state = state_with_asset1();
    let qualified = run_basic(&["SmartContract:ReadAsset", "asset1"], &state);
    assert_ok(&qualified);
    let lower = run_basic(&["readAsset", "asset1"], &state);
    assert_ok(&lower);
    assert_eq!(lower.response.payload, qualified.response.payload);
    assert_fails(
        &run_basic(&["Other:ReadAsset", "asset1"], &state),
        "Contract not found with name Other",
    );
    assert_fails(
        &run_basic(&["Burn", "asset1"], &state),
        "Function Burn not found in contract SmartContract",
    );
    assert_fails(&run_basic(&[], &state), "Blank function name passed");
    assert_fails(
        &run_basic(&["SmartContract:"], &state),
        "Blank function name passed",
    );
}

#[test]
fn asset_json_has_the_sample_field_order() {
    let asset = Asset {
        appraised_value: 1,
        color: "c".to_owned(),
        id: "i".to_owned(),
        owner: "o".to_owned(),
        size: 2,
    };
    assert_eq!(
        asset.to_json(),
        br#"{"AppraisedValue":1,"Color":"c","ID":"i","Owner":"o","Size":2}"#
    );
}

// ---------------------------------------------------------------------------------------------
// read-write set layout

#[test]
fn reads_are_sorted_by_key_and_a_missing_key_has_no_version() {
    let state = MemState::default()
        .with(NS, "b", b"B", 7, 2)
        .with(NS, "a", b"A", 5, 0);
    let cc = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        assert_eq!(stub.get_state("b").unwrap(), Some(b"B".to_vec()));
        assert_eq!(stub.get_state("missing").unwrap(), None);
        assert_eq!(stub.get_state("a").unwrap(), Some(b"A".to_vec()));
        success("ok")
    });
    let result = run(&cc, &["f"], &state);
    assert_ok(&result);
    let kv = kv(&result);
    assert_eq!(
        kv.reads,
        [
            read("a", Some((5, 0))),
            read("b", Some((7, 2))),
            read("missing", None)
        ]
    );
    assert!(kv.writes.is_empty());
    assert!(kv.range_queries_info.is_empty());
}

#[test]
fn writes_are_sorted_last_write_wins_and_empty_value_is_a_delete() {
    let cc = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        stub.put_state("z", b"1").unwrap();
        stub.put_state("a", b"first").unwrap();
        stub.put_state("a", b"second").unwrap();
        stub.del_state("m").unwrap();
        stub.put_state("e", b"").unwrap();
        stub.del_state("q").unwrap();
        stub.put_state("q", b"back").unwrap();
        success("")
    });
    let result = run(&cc, &["f"], &MemState::default());
    assert_ok(&result);
    assert_eq!(
        kv(&result).writes,
        [
            write("a", b"second"),
            write("e", b""),
            write("m", b""),
            write("q", b"back"),
            write("z", b"1"),
        ]
    );
    assert!(kv(&result).writes[1].is_delete && kv(&result).writes[2].is_delete);
}

#[test]
fn empty_key_is_rejected_by_put_and_del() {
    let cc = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        assert_eq!(stub.put_state("", b"v"), Err(StubError::EmptyKey));
        assert_eq!(stub.del_state(""), Err(StubError::EmptyKey));
        success("")
    });
    let result = run(&cc, &["f"], &MemState::default());
    assert_ok(&result);
    assert!(result.rwset.ns_rwset.is_empty());
}

#[test]
fn read_after_write_returns_the_committed_value_like_fabric() {
    // Fabric's simulator reads committed state only: a PutState is not visible to a later
    // GetState in the same transaction, and the read is recorded with the committed version.
    let state = MemState::default().with(NS, "k", b"committed", 2, 0);
    let cc = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        stub.put_state("k", b"pending").unwrap();
        stub.put_state("new", b"pending").unwrap();
        assert_eq!(stub.get_state("k").unwrap(), Some(b"committed".to_vec()));
        assert_eq!(stub.get_state("new").unwrap(), None);
        success("")
    });
    let result = run(&cc, &["f"], &state);
    assert_ok(&result);
    let kv = kv(&result);
    assert_eq!(kv.reads, [read("k", Some((2, 0))), read("new", None)]);
    assert_eq!(
        kv.writes,
        [write("k", b"pending"), write("new", b"pending")]
    );
}

#[test]
fn repeated_reads_hit_the_state_once_and_record_one_read() {
    let state = MemState::default().with(NS, "k", b"v", 2, 0);
    let cc = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        for _ in 0..3 {
            assert_eq!(stub.get_state("k").unwrap(), Some(b"v".to_vec()));
            assert_eq!(stub.get_state("gone").unwrap(), None);
        }
        success("")
    });
    let result = run(&cc, &["f"], &state);
    assert_ok(&result);
    assert_eq!(state.gets.load(Ordering::SeqCst), 2);
    assert_eq!(
        kv(&result).reads,
        [read("gone", None), read("k", Some((2, 0)))]
    );
}

#[test]
fn a_chaincode_that_touches_no_state_has_no_namespace() {
    let cc = FnChaincode(|_: &mut ChaincodeStub<'_>| success("pure"));
    let result = run(&cc, &["f"], &MemState::default());
    assert_ok(&result);
    assert_eq!(result.response.payload, b"pure");
    assert_eq!(result.rwset.data_model, 0);
    assert!(result.rwset.ns_rwset.is_empty());
    assert!(result.event.is_none());
}

#[test]
fn rwset_bytes_are_the_encoded_rwset() {
    let result = run_basic(
        &["CreateAsset", "a1", "blue", "5", "Tomoko", "300"],
        &MemState::default(),
    );
    assert_eq!(
        TxReadWriteSet::decode(result.rwset_bytes.as_slice()).unwrap(),
        result.rwset
    );
    assert_eq!(result.rwset_bytes, result.rwset.encode_to_vec());
}

#[test]
fn failed_response_still_returns_the_rwset() {
    let cc = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        stub.get_state("k").unwrap();
        stub.put_state("k", b"v").unwrap();
        error("refused")
    });
    let result = run(&cc, &["f"], &MemState::default());
    assert_fails(&result, "refused");
    let kv = kv(&result);
    assert_eq!(kv.reads, [read("k", None)]);
    assert_eq!(kv.writes, [write("k", b"v")]);
}

#[test]
fn tx_rwset_sorts_namespaces() {
    let ns = |name: &str| NsReadWriteSet {
        namespace: name.to_owned(),
        rwset: Vec::new(),
        collection_hashed_rwset: Vec::new(),
    };
    let rwset = tx_rwset(vec![ns("basic"), ns("_lifecycle"), ns("Zeta")]);
    let names: Vec<_> = rwset
        .ns_rwset
        .iter()
        .map(|n| n.namespace.as_str())
        .collect();
    assert_eq!(names, ["Zeta", "_lifecycle", "basic"]);
}

// ---------------------------------------------------------------------------------------------
// range queries

fn range_state() -> MemState {
    MemState::default()
        .with(NS, "a", b"1", 1, 0)
        .with(NS, "b", b"2", 1, 1)
        .with(NS, "c", b"3", 2, 0)
        .with(NS, "d", b"4", 2, 1)
}

#[test]
fn range_is_half_open_in_byte_order_and_recorded_in_execution_order() {
    let cc = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        let keys = |rows: Vec<(String, Vec<u8>)>| rows.into_iter().map(|(k, _)| k).collect();
        let got: Vec<String> = keys(stub.get_state_by_range("b", "d").unwrap());
        assert_eq!(got, ["b", "c"]);
        let got: Vec<String> = keys(stub.get_state_by_range("c", "").unwrap());
        assert_eq!(got, ["c", "d"]);
        let got: Vec<String> = keys(stub.get_state_by_range("a", "b").unwrap());
        assert_eq!(got, ["a"]);
        success("")
    });
    let result = run(&cc, &["f"], &range_state());
    assert_ok(&result);
    let ranges = kv(&result).range_queries_info;
    let summary: Vec<_> = ranges
        .iter()
        .map(|r| (r.start_key.as_str(), r.end_key.as_str(), r.itr_exhausted))
        .collect();
    assert_eq!(
        summary,
        [("b", "d", true), ("c", "", true), ("a", "b", true)]
    );
    assert_eq!(
        ranges[0].reads_info,
        Some(ReadsInfo::RawReads(gridledger_proto::kvrwset::QueryReads {
            kv_reads: vec![read("b", Some((1, 1))), read("c", Some((2, 0)))],
        }))
    );
    assert!(kv(&result).reads.is_empty());
}

#[test]
fn identical_range_queries_are_recorded_once() {
    let cc = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        stub.get_state_by_range("a", "c").unwrap();
        stub.get_state_by_range("b", "c").unwrap();
        stub.get_state_by_range("a", "c").unwrap();
        success("")
    });
    let result = run(&cc, &["f"], &range_state());
    let starts: Vec<_> = kv(&result)
        .range_queries_info
        .into_iter()
        .map(|r| r.start_key)
        .collect();
    assert_eq!(starts, ["a", "b"]);
}

#[test]
fn range_over_the_query_limit_is_cut_and_not_exhausted() {
    let cc = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        let rows = stub.get_state_by_range("", "").unwrap();
        assert_eq!(rows.len(), TOTAL_QUERY_LIMIT);
        success("")
    });
    let result = run(&cc, &["f"], &EndlessState);
    let info = &kv(&result).range_queries_info[0];
    assert!(!info.itr_exhausted);
    assert_eq!(info.start_key, EMPTY_KEY_SUBSTITUTE);
    assert_eq!(info.end_key, format!("k{:07}", TOTAL_QUERY_LIMIT - 1));
}

#[test]
fn composite_key_bounds_are_refused_by_the_simple_range_query() {
    let cc = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        let key = create_composite_key("t", &["x"]).unwrap();
        assert_eq!(
            stub.get_state_by_range(&key, ""),
            Err(StubError::CompositeKeyInSimpleRange(key.clone()))
        );
        assert_eq!(
            stub.get_state_by_range("a", &key),
            Err(StubError::CompositeKeyInSimpleRange(key))
        );
        success("")
    });
    let result = run(&cc, &["f"], &range_state());
    assert_ok(&result);
    assert!(result.rwset.ns_rwset.is_empty());
}

// ---------------------------------------------------------------------------------------------
// composite keys

#[test]
fn composite_keys_have_fabric_layout_and_split_back() {
    let key = create_composite_key("owner~id", &["Tomoko", "asset1"]).unwrap();
    assert_eq!(key, "\u{0}owner~id\u{0}Tomoko\u{0}asset1\u{0}");
    assert_eq!(
        split_composite_key(&key).unwrap(),
        (
            "owner~id".to_owned(),
            vec!["Tomoko".to_owned(), "asset1".to_owned()]
        )
    );
    let bare = create_composite_key::<&str>("t", &[]).unwrap();
    assert_eq!(bare, "\u{0}t\u{0}");
    assert_eq!(
        split_composite_key(&bare).unwrap(),
        ("t".to_owned(), Vec::new())
    );
    let empty_attr = create_composite_key("t", &[""]).unwrap();
    assert_eq!(
        split_composite_key(&empty_attr).unwrap(),
        ("t".to_owned(), vec![String::new()])
    );
}

#[test]
fn composite_keys_refuse_forbidden_characters_and_non_composite_input() {
    assert_eq!(
        create_composite_key("a\u{0}b", &["x"]),
        Err(CompositeKeyError::ForbiddenCharacter {
            input: "a\u{0}b".to_owned(),
            forbidden: '\u{0}',
            position: 1,
        })
    );
    assert!(matches!(
        create_composite_key("t", &["ok", "x\u{10FFFF}"]),
        Err(CompositeKeyError::ForbiddenCharacter {
            forbidden: '\u{10FFFF}',
            position: 1,
            ..
        })
    ));
    for key in ["plain", "", "\u{0}no-terminator", "tail\u{0}"] {
        assert_eq!(
            split_composite_key(key),
            Err(CompositeKeyError::NotComposite(key.to_owned()))
        );
    }
}

#[test]
fn partial_composite_key_query_scans_prefix_to_max_rune() {
    let k = |attrs: &[&str]| create_composite_key("owner~id", attrs).unwrap();
    let state = MemState::default()
        .with(NS, &k(&["Brad", "asset2"]), b"\x00", 1, 0)
        .with(NS, &k(&["Tomoko", "asset1"]), b"\x00", 1, 1)
        .with(NS, &k(&["Tomoko", "asset7"]), b"\x00", 1, 2)
        .with(NS, &k(&["Tomokox", "asset9"]), b"\x00", 1, 3)
        .with(NS, "asset1", b"{}", 1, 4);
    let cc = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        let rows = stub
            .get_state_by_partial_composite_key("owner~id", &["Tomoko"])
            .unwrap();
        let ids: Vec<String> = rows
            .iter()
            .map(|(key, _)| split_composite_key(key).unwrap().1[1].clone())
            .collect();
        assert_eq!(ids, ["asset1", "asset7"]);
        let all = stub
            .get_state_by_partial_composite_key::<&str>("owner~id", &[])
            .unwrap();
        assert_eq!(all.len(), 4);
        success("")
    });
    let result = run(&cc, &["f"], &state);
    assert_ok(&result);
    let info = &kv(&result).range_queries_info[0];
    assert_eq!(info.start_key, "\u{0}owner~id\u{0}Tomoko\u{0}");
    assert_eq!(
        info.end_key.as_bytes(),
        b"\x00owner~id\x00Tomoko\x00\xF4\x8F\xBF\xBF"
    );
    assert!(info.itr_exhausted);
}

// ---------------------------------------------------------------------------------------------
// stub accessors and events

#[test]
fn stub_exposes_the_invocation() {
    let mut inv = invocation(&["Market:Bid", "10", "kWh"]);
    inv.creator_attributes
        .insert("pod".to_owned(), "POD-17".to_owned());
    inv.transient.insert("price".to_owned(), b"secret".to_vec());
    inv.timestamp = Some(Timestamp {
        seconds: 1_700_000_000,
        nanos: 5,
    });
    let seen = Mutex::new(false);
    let cc = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        assert_eq!(stub.tx_id(), TX_ID);
        assert_eq!(stub.channel_id(), "market");
        assert_eq!(stub.namespace(), NS);
        assert_eq!(stub.creator(), b"serialized-creator");
        assert_eq!(stub.creator_msp_id(), "DSOMSP");
        assert_eq!(stub.attribute("pod"), Some("POD-17"));
        assert_eq!(stub.attribute("meter"), None);
        assert_eq!(stub.transient().get("price"), Some(&b"secret".to_vec()));
        assert_eq!(stub.timestamp().map(|t| t.seconds), Some(1_700_000_000));
        assert!(stub.signed_proposal().is_none());
        assert_eq!(stub.get_args().len(), 3);
        assert_eq!(stub.get_string_args(), ["Market:Bid", "10", "kWh"]);
        assert_eq!(
            stub.get_function_and_parameters(),
            (
                "Market:Bid".to_owned(),
                vec!["10".to_owned(), "kWh".to_owned()]
            )
        );
        assert_eq!(
            stub.get_contract_and_function(),
            (Some("Market".to_owned()), "Bid".to_owned())
        );
        *seen.lock().unwrap() = true;
        success("")
    });
    assert_ok(&simulate(&cc, NS, &inv, &MemState::default()));
    assert!(*seen.lock().unwrap());
}

#[test]
fn contract_function_split_uses_the_last_colon() {
    assert_eq!(split_contract_function("Fn"), (None, "Fn".to_owned()));
    assert_eq!(
        split_contract_function("org.example:v2:Fn"),
        (Some("org.example:v2".to_owned()), "Fn".to_owned())
    );
    assert_eq!(
        split_contract_function(":Fn"),
        (Some(String::new()), "Fn".to_owned())
    );
}

#[test]
fn last_event_wins_and_empty_event_name_is_refused() {
    let cc = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        assert_eq!(stub.set_event("", b"x"), Err(StubError::EmptyEventName));
        stub.set_event("First", b"1").unwrap();
        stub.set_event("Second", b"2").unwrap();
        success("")
    });
    let result = run(&cc, &["f"], &MemState::default());
    let event = result.event.expect("an event was set");
    assert_eq!(event.event_name, "Second");
    assert_eq!(event.payload, b"2");
    assert_eq!(event.chaincode_id, NS);
    assert_eq!(event.tx_id, TX_ID);
}

// ---------------------------------------------------------------------------------------------
// failure containment

#[test]
fn panic_in_chaincode_becomes_status_500_without_rwset_or_event() {
    let cc = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        stub.put_state("k", b"v").unwrap();
        stub.set_event("E", b"").unwrap();
        panic!("boom at {}", 42);
    });
    let result = run(&cc, &["f"], &MemState::default());
    assert_fails(&result, "chaincode panicked: boom at 42");
    assert!(result.rwset.ns_rwset.is_empty());
    assert!(result.event.is_none());

    let literal = FnChaincode(|_: &mut ChaincodeStub<'_>| panic!("static text"));
    assert_fails(
        &run(&literal, &["f"], &MemState::default()),
        "chaincode panicked: static text",
    );
}

#[test]
fn state_failure_fails_the_simulation_even_if_the_chaincode_ignores_it() {
    let cc = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        let _ = stub.get_state("k");
        success("pretending all is well")
    });
    let result = run(&cc, &["f"], &BrokenState);
    assert_fails(
        &result,
        "failed to read key \"k\" of namespace \"basic\" from world state: disk on fire",
    );
    let result = run_basic(&["GetAllAssets"], &BrokenState);
    assert_eq!(result.response.status, 500);
    assert!(result.response.message.contains("disk on fire"));
}

// ---------------------------------------------------------------------------------------------
// registry

#[test]
fn registry_with_builtins_runs_basic() {
    let registry = Registry::with_builtins();
    assert_eq!(
        registry.names().collect::<Vec<_>>(),
        ["basic", "certs", "energy", "flex", "meter", "privatedata"]
    );
    assert!(registry.contains("basic"));
    assert!(registry.get("qscc").is_none());
    let basic = registry.get("basic").expect("basic is built in");
    let result = simulate(
        basic.as_ref(),
        NS,
        &invocation(&["AssetExists", "asset1"]),
        &state_with_asset1(),
    );
    assert_eq!(result.response.payload, b"true");
}

#[test]
fn registry_register_replaces_and_returns_the_previous_chaincode() {
    let mut registry = Registry::new();
    assert!(registry.names().next().is_none());
    let pure = std::sync::Arc::new(FnChaincode(|_: &mut ChaincodeStub<'_>| success("v1")));
    assert!(registry.register("cc", pure).is_none());
    let v2 = std::sync::Arc::new(FnChaincode(|_: &mut ChaincodeStub<'_>| success("v2")));
    let previous = registry.register("cc", v2).expect("v1 was registered");
    let old = simulate(
        previous.as_ref(),
        "cc",
        &invocation(&["f"]),
        &MemState::default(),
    );
    assert_eq!(old.response.payload, b"v1");
    let cc = registry.get("cc").expect("registered");
    let new = simulate(cc.as_ref(), "cc", &invocation(&["f"]), &MemState::default());
    assert_eq!(new.response.payload, b"v2");
}

// ---------------------------------------------------------------------------------------------
// Recording for chaincode that runs elsewhere (external chaincode servers)
// ---------------------------------------------------------------------------------------------

#[test]
fn complete_builds_the_same_result_as_simulate_for_the_same_operations() {
    let state = state_with_asset1();
    let inv = invocation(&["any"]);
    let ops = |stub: &mut ChaincodeStub<'_>| {
        stub.get_state("asset1").unwrap();
        stub.get_state_by_range("a", "z").unwrap();
        stub.put_state("asset2", b"two").unwrap();
        stub.set_event("Made", b"p").unwrap();
    };
    let in_process = simulate(
        &FnChaincode(move |stub: &mut ChaincodeStub<'_>| {
            ops(stub);
            success(b"done".to_vec())
        }),
        NS,
        &inv,
        &state,
    );
    let mut stub = ChaincodeStub::new(NS, &inv, &state);
    ops(&mut stub);
    let external = complete(stub, success(b"done".to_vec()));
    assert_eq!(external, in_process);
    let event = external.event.unwrap();
    assert_eq!(
        (event.chaincode_id.as_str(), event.tx_id.as_str()),
        (NS, TX_ID)
    );
}

#[test]
fn complete_turns_a_state_failure_into_status_500() {
    let inv = invocation(&["any"]);
    let mut stub = ChaincodeStub::new(NS, &inv, &BrokenState);
    assert!(stub.get_state("k").is_err());
    let result = complete(stub, success(b"ignored the error".to_vec()));
    assert_eq!(result.response.status, 500);
    assert!(result.response.message.contains("disk on fire"));
}

#[test]
fn failed_is_status_500_with_an_empty_rwset() {
    let result = failed("chaincode timed out");
    assert_eq!(result.response.status, 500);
    assert_eq!(result.response.message, "chaincode timed out");
    assert!(result.rwset.ns_rwset.is_empty());
    assert!(result.event.is_none());
}

#[test]
fn key_range_takes_bounds_as_given_including_composite_keys() {
    let composite = create_composite_key("meter", &["m1"]).unwrap();
    let state = MemState::default()
        .with(NS, &composite, b"c", 1, 0)
        .with(NS, "plain", b"p", 1, 1);
    let inv = invocation(&["any"]);
    let mut stub = ChaincodeStub::new(NS, &inv, &state);
    let rows = stub.get_state_by_key_range("", "").unwrap();
    assert_eq!(rows.len(), 2, "an empty start is not replaced here");
    let mut stub = ChaincodeStub::new(NS, &inv, &state);
    let rows = stub.get_state_by_key_range(&composite, "").unwrap();
    assert_eq!(rows[0].0, composite);
    let result = complete(stub, success(Vec::new()));
    let info = &kv(&result).range_queries_info[0];
    assert_eq!(info.start_key, composite);
    assert!(info.itr_exhausted);
}

#[test]
fn history_from_a_reader_without_history_is_an_error_not_a_panic() {
    let state = MemState::default();
    let inv = invocation(&["any"]);
    let mut stub = ChaincodeStub::new(NS, &inv, &state);
    let err = stub.get_history_for_key("k", 10).unwrap_err();
    assert!(
        err.to_string().contains("history is not available"),
        "{err}"
    );
}
