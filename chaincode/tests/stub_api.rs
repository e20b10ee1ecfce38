//! Tests of the stub's key metadata (key-level endorsement), paginated queries and
//! chaincode-to-chaincode calls, against in-memory world states.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use gridledger_chaincode::{
    Chaincode, ChaincodeHost, ChaincodeStub, Invocation, KeyEndorsementPolicy, MAX_CALL_DEPTH,
    Metadata, RoleType, SimulationResult, StateReader, StubError, VALIDATION_PARAMETER,
    create_composite_key, error, simulate, simulate_with_host, success,
};
use gridledger_proto::kvrwset::{KvMetadataEntry, KvMetadataWrite, KvRead, KvrwSet, Version};
use gridledger_proto::prost::Message;
use gridledger_proto::protos::Response;

const CHANNEL: &str = "market";
const OTHER_CHANNEL: &str = "settlement";

/// An in-memory world state with key metadata.
#[derive(Default)]
struct MemState {
    entries: BTreeMap<(String, String), (Vec<u8>, Version)>,
    metadata: BTreeMap<(String, String), Metadata>,
}

impl MemState {
    fn with(mut self, ns: &str, key: &str, value: &[u8], block_num: u64) -> Self {
        self.entries.insert(
            (ns.to_owned(), key.to_owned()),
            (
                value.to_vec(),
                Version {
                    block_num,
                    tx_num: 0,
                },
            ),
        );
        self
    }

    fn with_metadata(mut self, ns: &str, key: &str, name: &str, value: &[u8]) -> Self {
        self.metadata
            .entry((ns.to_owned(), key.to_owned()))
            .or_default()
            .insert(name.to_owned(), value.to_vec());
        self
    }
}

impl StateReader for MemState {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<(Vec<u8>, Version)>, String> {
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

    fn metadata(&self, namespace: &str, key: &str) -> Result<Metadata, String> {
        Ok(self
            .metadata
            .get(&(namespace.to_owned(), key.to_owned()))
            .cloned()
            .unwrap_or_default())
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

fn chaincode<F>(f: F) -> Arc<dyn Chaincode>
where
    F: Fn(&mut ChaincodeStub<'_>) -> Response + Send + Sync + 'static,
{
    Arc::new(FnChaincode(f))
}

/// Runs chaincodes by name (the same set on every channel) over per-channel states.
#[derive(Default)]
struct TestHost {
    chaincodes: BTreeMap<String, Arc<dyn Chaincode>>,
    channels: BTreeMap<String, Arc<MemState>>,
}

impl ChaincodeHost for TestHost {
    fn run(&self, name: &str, stub: &mut ChaincodeStub<'_>) -> Result<Response, String> {
        let cc = self
            .chaincodes
            .get(name)
            .ok_or_else(|| format!("chaincode {name} is not defined"))?;
        Ok(cc.invoke(stub))
    }

    fn channel_state(&self, channel_id: &str) -> Result<Box<dyn StateReader + '_>, String> {
        let state = self
            .channels
            .get(channel_id)
            .ok_or_else(|| format!("channel {channel_id} is not joined"))?;
        Ok(Box::new(SharedState(state.clone())))
    }
}

struct SharedState(Arc<MemState>);

impl StateReader for SharedState {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<(Vec<u8>, Version)>, String> {
        self.0.get(namespace, key)
    }

    fn range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>, Version)>, String> {
        self.0.range(namespace, start, end, limit)
    }
}

fn invocation(chaincode: &str, args: &[&str]) -> Invocation {
    Invocation {
        channel_id: CHANNEL.to_owned(),
        tx_id: "tx1".to_owned(),
        chaincode: chaincode.to_owned(),
        args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
        creator_msp_id: "DSOMSP".to_owned(),
        ..Invocation::default()
    }
}

/// The namespace's KVRWSet of a result.
fn kv(result: &SimulationResult, namespace: &str) -> Option<KvrwSet> {
    result
        .rwset
        .ns_rwset
        .iter()
        .find(|ns| ns.namespace == namespace)
        .map(|ns| KvrwSet::decode(ns.rwset.as_slice()).expect("KVRWSet decodes"))
}

fn assert_ok(result: &SimulationResult) {
    assert_eq!(
        result.response.status, 200,
        "chaincode failed: {}",
        result.response.message
    );
}

fn v(block_num: u64) -> Option<Version> {
    Some(Version {
        block_num,
        tx_num: 0,
    })
}

#[test]
fn validation_parameter_is_written_as_key_metadata_and_read_with_the_key_version() {
    let policy = {
        let mut p = KeyEndorsementPolicy::new();
        p.add_orgs(RoleType::Peer, &["DSOMSP"]);
        p.policy()
    };
    let state = MemState::default()
        .with("cc", "meter1", b"v", 4)
        .with_metadata("cc", "meter1", VALIDATION_PARAMETER, b"old-policy");
    let new_policy = policy.clone();
    let cc = FnChaincode(move |stub: &mut ChaincodeStub<'_>| {
        let old = stub.get_state_validation_parameter("meter1").unwrap();
        assert_eq!(old.as_deref(), Some(&b"old-policy"[..]));
        assert!(stub.get_state_metadata("missing").unwrap().is_empty());
        stub.set_state_validation_parameter("meter1", &new_policy)
            .unwrap();
        stub.set_state_metadata("meter2", "note", b"x").unwrap();
        // A later metadata write of a key replaces the earlier one (Fabric's peer).
        stub.set_state_metadata("meter2", VALIDATION_PARAMETER, b"p2")
            .unwrap();
        assert_eq!(
            stub.set_state_metadata("", "note", b"x"),
            Err(StubError::EmptyKey)
        );
        success(Vec::new())
    });
    let result = simulate(&cc, "cc", &invocation("cc", &[]), &state);
    assert_ok(&result);
    let kv = kv(&result, "cc").expect("namespace recorded");
    assert_eq!(
        kv.reads,
        vec![
            KvRead {
                key: "meter1".into(),
                version: v(4)
            },
            KvRead {
                key: "missing".into(),
                version: None
            },
        ]
    );
    assert!(kv.writes.is_empty());
    assert_eq!(
        kv.metadata_writes,
        vec![
            KvMetadataWrite {
                key: "meter1".into(),
                entries: vec![KvMetadataEntry {
                    name: VALIDATION_PARAMETER.into(),
                    value: policy,
                }],
            },
            KvMetadataWrite {
                key: "meter2".into(),
                entries: vec![KvMetadataEntry {
                    name: VALIDATION_PARAMETER.into(),
                    value: b"p2".to_vec(),
                }],
            },
        ]
    );
}

fn five_keys() -> MemState {
    ["a", "b", "c", "d", "e"]
        .iter()
        .enumerate()
        .fold(MemState::default(), |state, (i, key)| {
            state.with("cc", key, key.as_bytes(), i as u64 + 1)
        })
}

#[test]
fn range_pages_follow_the_bookmark_to_the_end() {
    let state = five_keys();
    let cc = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        let mut pages = Vec::new();
        let mut bookmark = String::new();
        loop {
            let (rows, meta) = stub
                .get_state_by_range_with_pagination("", "", 2, &bookmark)
                .unwrap();
            assert_eq!(meta.fetched_records_count as usize, rows.len());
            pages.push(rows.into_iter().map(|(k, _)| k).collect::<Vec<_>>());
            if meta.bookmark.is_empty() {
                break;
            }
            bookmark = meta.bookmark;
        }
        assert_eq!(pages, [vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
        success(Vec::new())
    });
    let result = simulate(&cc, "cc", &invocation("cc", &[]), &state);
    assert_ok(&result);
    // Each page is a range query cut at its last key, the last one exhausted.
    let queries = kv(&result, "cc").unwrap().range_queries_info;
    let summary: Vec<(String, String, bool)> = queries
        .iter()
        .map(|q| (q.start_key.clone(), q.end_key.clone(), q.itr_exhausted))
        .collect();
    assert_eq!(
        summary,
        [
            ("\u{1}".to_owned(), "b".to_owned(), false),
            ("c".to_owned(), "d".to_owned(), false),
            ("e".to_owned(), String::new(), true),
        ]
    );
}

#[test]
fn composite_key_pages_stay_within_the_partial_key() {
    let mut state = MemState::default();
    for (i, (meter, reading)) in [("m1", "1"), ("m1", "2"), ("m1", "3"), ("m2", "1")]
        .iter()
        .enumerate()
    {
        let key = create_composite_key("reading", &[*meter, *reading]).unwrap();
        state = state.with("cc", &key, b"kwh", i as u64 + 1);
    }
    let cc = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        let (first, meta) = stub
            .get_state_by_partial_composite_key_with_pagination("reading", &["m1"], 2, "")
            .unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(meta.fetched_records_count, 2);
        assert_eq!(
            meta.bookmark,
            create_composite_key("reading", &["m1", "3"]).unwrap()
        );
        let (second, meta) = stub
            .get_state_by_partial_composite_key_with_pagination(
                "reading",
                &["m1"],
                2,
                &meta.bookmark,
            )
            .unwrap();
        assert_eq!(second.len(), 1, "m2's reading is outside the partial key");
        assert!(meta.bookmark.is_empty());
        success(Vec::new())
    });
    assert_ok(&simulate(&cc, "cc", &invocation("cc", &[]), &state));
}

#[test]
fn paginated_queries_are_for_read_only_transactions() {
    let state = five_keys();
    let cc = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        stub.put_state("x", b"1").unwrap();
        let err = stub
            .get_state_by_range_with_pagination("", "", 2, "")
            .unwrap_err();
        assert_eq!(err, StubError::PaginatedQueryAfterWrite("tx1".into()));
        assert!(err.to_string().contains("read-only transaction"), "{err}");
        success(Vec::new())
    });
    assert_ok(&simulate(&cc, "cc", &invocation("cc", &[]), &state));

    let cc = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        stub.get_state_by_range_with_pagination("", "", 2, "")
            .unwrap();
        assert_eq!(
            stub.put_state("x", b"1"),
            Err(StubError::WriteAfterPaginatedQuery("tx1".into()))
        );
        assert_eq!(
            stub.set_state_validation_parameter("a", b"p"),
            Err(StubError::WriteAfterPaginatedQuery("tx1".into()))
        );
        assert_eq!(
            stub.get_state_by_range_with_pagination("", "", 0, "")
                .unwrap_err(),
            StubError::InvalidPageSize(0)
        );
        success(Vec::new())
    });
    let result = simulate(&cc, "cc", &invocation("cc", &[]), &state);
    assert_ok(&result);
    assert!(kv(&result, "cc").unwrap().writes.is_empty());
}

#[test]
fn same_channel_call_records_the_callee_namespace_and_returns_its_response() {
    let state = MemState::default()
        .with("caller", "c", b"1", 1)
        .with("ledger", "balance", b"10", 2);
    let mut host = TestHost::default();
    host.chaincodes.insert(
        "ledger".into(),
        chaincode(|stub| {
            assert_eq!(stub.namespace(), "ledger");
            assert_eq!(stub.get_string_args(), ["credit", "5"]);
            assert_eq!(stub.call_depth(), 1);
            let balance = stub.get_state("balance").unwrap().unwrap();
            stub.put_state("balance", b"15").unwrap();
            stub.set_event("Credited", b"5").unwrap();
            success(balance)
        }),
    );
    let caller = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        stub.get_state("c").unwrap();
        let args = vec![b"credit".to_vec(), b"5".to_vec()];
        let response = stub.invoke_chaincode("ledger", &args, "").unwrap();
        assert_eq!(response.payload, b"10");
        // The caller's namespace, arguments and event are back.
        assert_eq!(stub.namespace(), "caller");
        assert_eq!(stub.get_string_args(), ["pay"]);
        stub.put_state("c", b"2").unwrap();
        stub.set_event("Paid", b"").unwrap();
        // Same channel named explicitly.
        let again = stub.invoke_chaincode("ledger", &args, CHANNEL).unwrap();
        assert_eq!(again.status, 200);
        let missing = stub.invoke_chaincode("nobody", &args, "").unwrap_err();
        assert!(
            matches!(&missing, StubError::Invoke { reason, .. } if reason.contains("not defined")),
            "{missing}"
        );
        success(response.payload)
    });
    let result = simulate_with_host(
        &caller,
        "caller",
        &invocation("caller", &["pay"]),
        &state,
        &host,
    );
    assert_ok(&result);
    let namespaces: Vec<&str> = result
        .rwset
        .ns_rwset
        .iter()
        .map(|ns| ns.namespace.as_str())
        .collect();
    assert_eq!(namespaces, ["caller", "ledger"]);
    let callee = kv(&result, "ledger").unwrap();
    assert_eq!(
        callee.reads,
        vec![KvRead {
            key: "balance".into(),
            version: v(2)
        }]
    );
    assert_eq!(callee.writes.len(), 1);
    assert_eq!(callee.writes[0].value, b"15");
    assert_eq!(kv(&result, "caller").unwrap().writes[0].value, b"2");
    // Only the invoked chaincode's event reaches the transaction.
    let event = result.event.expect("event");
    assert_eq!(
        (event.chaincode_id.as_str(), event.event_name.as_str()),
        ("caller", "Paid")
    );
}

#[test]
fn cross_channel_call_is_read_only_and_unrecorded() {
    let state = MemState::default();
    let other = MemState::default().with("prices", "spot", b"42", 7);
    let mut host = TestHost::default();
    host.channels.insert(OTHER_CHANNEL.into(), Arc::new(other));
    host.chaincodes.insert(
        "prices".into(),
        chaincode(|stub| {
            assert_eq!(stub.channel_id(), OTHER_CHANNEL);
            let spot = stub.get_state("spot").unwrap().unwrap_or_default();
            if stub.get_string_args().first().map(String::as_str) == Some("set") {
                return match stub.put_state("spot", b"43") {
                    Ok(()) => success(Vec::new()),
                    Err(e) => error(e.to_string()),
                };
            }
            success(spot)
        }),
    );
    let caller = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        let read = stub
            .invoke_chaincode("prices", &[b"get".to_vec()], OTHER_CHANNEL)
            .unwrap();
        assert_eq!(read.payload, b"42");
        let write = stub
            .invoke_chaincode("prices", &[b"set".to_vec()], OTHER_CHANNEL)
            .unwrap();
        assert_eq!(write.status, 500);
        assert!(
            write.message.contains("may only read"),
            "write across channels must be refused: {}",
            write.message
        );
        let unknown = stub
            .invoke_chaincode("prices", &[b"get".to_vec()], "nowhere")
            .unwrap_err();
        assert!(unknown.to_string().contains("not joined"), "{unknown}");
        success(read.payload)
    });
    let result = simulate_with_host(&caller, "caller", &invocation("caller", &[]), &state, &host);
    assert_ok(&result);
    assert!(
        result.rwset.ns_rwset.is_empty(),
        "nothing of the other channel is recorded: {:?}",
        result.rwset.ns_rwset
    );
}

#[test]
fn call_depth_is_bounded() {
    let state = MemState::default();
    let mut host = TestHost::default();
    // A chaincode that calls itself until refused, reporting the depth it reached.
    host.chaincodes.insert(
        "loop".into(),
        chaincode(|stub| match stub.invoke_chaincode("loop", &[], "") {
            Ok(inner) if inner.status == 200 => success(inner.payload),
            Ok(inner) => inner,
            Err(StubError::CallDepth { .. }) => success(stub.call_depth().to_string()),
            Err(e) => error(e.to_string()),
        }),
    );
    let cc =
        FnChaincode(
            |stub: &mut ChaincodeStub<'_>| match stub.invoke_chaincode("loop", &[], "") {
                Ok(response) => response,
                Err(e) => error(e.to_string()),
            },
        );
    let result = simulate_with_host(&cc, "entry", &invocation("entry", &[]), &state, &host);
    assert_ok(&result);
    assert_eq!(
        result.response.payload,
        MAX_CALL_DEPTH.to_string().as_bytes()
    );

    // Without a host there is nothing to call.
    let lonely = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        assert_eq!(
            stub.invoke_chaincode("loop", &[], ""),
            Err(StubError::NoChaincodeHost)
        );
        success(Vec::new())
    });
    assert_ok(&simulate(
        &lonely,
        "entry",
        &invocation("entry", &[]),
        &state,
    ));
}

#[test]
fn a_panicking_callee_answers_500_leaves_nothing_and_the_caller_goes_on() {
    let state = MemState::default();
    let mut host = TestHost::default();
    host.chaincodes.insert(
        "boom".into(),
        chaincode(|stub| {
            stub.put_state("half", b"written").unwrap();
            panic!("callee exploded")
        }),
    );
    let cc = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        let response = stub.invoke_chaincode("boom", &[], "").unwrap();
        assert_eq!(response.status, 500);
        assert!(response.message.contains("callee exploded"));
        assert_eq!(stub.namespace(), "entry");
        // Nothing of the failed call counts as a write: pagination is still allowed.
        stub.get_state_by_range_with_pagination("", "", 1, "")
            .unwrap();
        success(Vec::new())
    });
    let result = simulate_with_host(&cc, "entry", &invocation("entry", &[]), &state, &host);
    assert_ok(&result);
    assert!(
        kv(&result, "boom").is_none(),
        "the panicked callee's write is dropped"
    );
}
