//! The peer's chaincode-as-a-service client (`peer::external`) against an in-process fake
//! chaincode server that follows Fabric's shim protocol: REGISTER first, requests multiplexed by
//! (channel, tx id), COMPLETED with a response and an event. Also the ways a chaincode can
//! misbehave — hanging, unknown message types, wrong tx ids, disconnecting, not registering —
//! each of which must fail only the transaction concerned.

#![allow(clippy::unwrap_used)] // a panic is how a test (and its fake chaincode) reports failure

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridledger_chaincode::{Chaincode, ChaincodeStub, Invocation, StateReader};
use gridledger_peer::external::{self, ExternalChaincode};
use gridledger_proto::prost::Message;
use gridledger_proto::protos::chaincode_message::Type;
use gridledger_proto::protos::chaincode_server::{self, ChaincodeServer};
use gridledger_proto::protos::{self, ChaincodeMessage};
use gridledger_proto::{kvrwset, prost_types, queryresult};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};

const CHANNEL: &str = "market";
const NAME: &str = "assets";

/// How the fake chaincode behaves after the handshake.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Follows the protocol; the transaction's `args[0]` picks a script.
    Scripted,
    /// Never sends REGISTER.
    Silent,
    /// Sends TRANSACTION-type garbage instead of REGISTER.
    WrongFirst,
}

/// Pending requests of the fake's transactions, by tx id.
type Waiting = Arc<Mutex<BTreeMap<String, oneshot::Sender<ChaincodeMessage>>>>;

#[derive(Clone)]
struct FakeShim {
    mode: Mode,
    /// Messages the peer sent, by type, to check it never sends KEEPALIVE.
    seen: Arc<Mutex<Vec<i32>>>,
}

#[tonic::async_trait]
impl chaincode_server::Chaincode for FakeShim {
    type ConnectStream = ReceiverStream<Result<ChaincodeMessage, tonic::Status>>;

    async fn connect(
        &self,
        request: tonic::Request<tonic::Streaming<ChaincodeMessage>>,
    ) -> Result<tonic::Response<Self::ConnectStream>, tonic::Status> {
        let mut inbound = request.into_inner();
        let (out, out_rx) = mpsc::channel(64);
        let shim = self.clone();
        tokio::spawn(async move {
            match shim.mode {
                Mode::Silent => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                }
                Mode::WrongFirst => {
                    let _ = out
                        .send(Ok(msg(Type::PutState, "", b"junk".to_vec())))
                        .await;
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                }
                Mode::Scripted => {}
            }
            let id = protos::ChaincodeId {
                name: "assets_1.0:0000".into(),
                ..Default::default()
            };
            let _ = out
                .send(Ok(msg(Type::Register, "", id.encode_to_vec())))
                .await;
            // Handshake: REGISTERED then READY, nothing else.
            for expected in [Type::Registered, Type::Ready] {
                match inbound.message().await {
                    Ok(Some(m)) if m.r#type == expected as i32 => {}
                    other => panic!("fake shim expected {expected:?}, got {other:?}"),
                }
            }
            let waiting: Waiting = Arc::default();
            while let Ok(Some(m)) = inbound.message().await {
                shim.seen.lock().unwrap().push(m.r#type);
                if m.r#type == Type::Transaction as i32 {
                    let out = out.clone();
                    let waiting = waiting.clone();
                    tokio::spawn(async move { run_script(m, out, waiting).await });
                } else if let Some(reply) = waiting.lock().unwrap().remove(&m.txid) {
                    let _ = reply.send(m);
                }
            }
        });
        Ok(tonic::Response::new(ReceiverStream::new(out_rx)))
    }
}

fn msg(kind: Type, txid: &str, payload: Vec<u8>) -> ChaincodeMessage {
    ChaincodeMessage {
        r#type: kind as i32,
        payload,
        txid: txid.into(),
        channel_id: if txid.is_empty() {
            String::new()
        } else {
            CHANNEL.into()
        },
        ..Default::default()
    }
}

/// One transaction of the fake: sends requests and awaits their answers like the Node shim.
struct Tx {
    txid: String,
    out: mpsc::Sender<Result<ChaincodeMessage, tonic::Status>>,
    waiting: Waiting,
}

impl Tx {
    async fn ask(&self, kind: Type, payload: Vec<u8>) -> ChaincodeMessage {
        self.ask_as(&self.txid.clone(), kind, payload).await
    }

    async fn ask_as(&self, txid: &str, kind: Type, payload: Vec<u8>) -> ChaincodeMessage {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap().insert(txid.to_owned(), tx);
        let _ = self.out.send(Ok(msg(kind, txid, payload))).await;
        rx.await.expect("the peer answers every request")
    }

    async fn complete(&self, status: i32, message: &str, payload: &[u8], event: Option<&str>) {
        let response = protos::Response {
            status,
            message: message.into(),
            payload: payload.to_vec(),
        };
        let mut m = msg(Type::Completed, &self.txid, response.encode_to_vec());
        m.chaincode_event = event.map(|name| protos::ChaincodeEvent {
            event_name: name.into(),
            payload: b"event-payload".to_vec(),
            ..Default::default()
        });
        let _ = self.out.send(Ok(m)).await;
    }
}

fn query_response(m: &ChaincodeMessage) -> protos::QueryResponse {
    assert_eq!(m.r#type, Type::Response as i32, "expected RESPONSE: {m:?}");
    protos::QueryResponse::decode(m.payload.as_slice()).unwrap()
}

async fn run_script(
    m: ChaincodeMessage,
    out: mpsc::Sender<Result<ChaincodeMessage, tonic::Status>>,
    waiting: Waiting,
) {
    assert_eq!(m.channel_id, CHANNEL);
    let input = protos::ChaincodeInput::decode(m.payload.as_slice()).unwrap();
    let function = String::from_utf8(input.args[0].clone()).unwrap();
    let tx = Tx {
        txid: m.txid.clone(),
        out,
        waiting,
    };
    match function.as_str() {
        // Same operations as `InProcess` below.
        "create" => {
            let got = tx.ask(Type::GetState, get_state("asset1")).await;
            assert_eq!(got.r#type, Type::Response as i32);
            let existing = tx.ask(Type::GetState, get_state("asset9")).await;
            assert_eq!(existing.payload, b"nine");
            let put = protos::PutState {
                key: "asset1".into(),
                value: b"one".to_vec(),
                collection: String::new(),
            };
            tx.ask(Type::PutState, put.encode_to_vec()).await;
            let del = protos::DelState {
                key: "asset9".into(),
                collection: String::new(),
            };
            tx.ask(Type::DelState, del.encode_to_vec()).await;
            tx.complete(200, "", b"created", Some("AssetCreated")).await;
        }
        "range" => {
            let req = protos::GetStateByRange {
                start_key: "\u{1}".into(),
                end_key: String::new(),
                ..Default::default()
            };
            let mut batch =
                query_response(&tx.ask(Type::GetStateByRange, req.encode_to_vec()).await);
            let mut keys = Vec::new();
            let mut batches = 0;
            loop {
                batches += 1;
                assert!(batch.results.len() <= 100);
                for r in &batch.results {
                    keys.push(
                        queryresult::Kv::decode(r.result_bytes.as_slice())
                            .unwrap()
                            .key,
                    );
                }
                if !batch.has_more {
                    break;
                }
                let next = protos::QueryStateNext {
                    id: batch.id.clone(),
                };
                batch = query_response(&tx.ask(Type::QueryStateNext, next.encode_to_vec()).await);
            }
            let close = protos::QueryStateClose {
                id: batch.id.clone(),
            };
            let closed =
                query_response(&tx.ask(Type::QueryStateClose, close.encode_to_vec()).await);
            assert!(!closed.has_more);
            // CLOSE of an unknown id is still answered.
            let close = protos::QueryStateClose { id: "nope".into() };
            query_response(&tx.ask(Type::QueryStateClose, close.encode_to_vec()).await);
            let text = format!(
                "{} keys in {batches} batches, last {}",
                keys.len(),
                keys.last().unwrap()
            );
            tx.complete(200, "", text.as_bytes(), None).await;
        }
        "history" => {
            let req = protos::GetHistoryForKey {
                key: "asset9".into(),
            };
            let batch = query_response(&tx.ask(Type::GetHistoryForKey, req.encode_to_vec()).await);
            let mods: Vec<_> = batch
                .results
                .iter()
                .map(|r| queryresult::KeyModification::decode(r.result_bytes.as_slice()).unwrap())
                .collect();
            assert!(
                mods.iter().all(|m| m.timestamp.is_some()),
                "timestamps must be set"
            );
            let text = mods
                .iter()
                .map(|m| m.tx_id.clone())
                .collect::<Vec<_>>()
                .join(",");
            tx.complete(200, "", text.as_bytes(), None).await;
        }
        "private" => {
            // Org1's implicit collection: a write, then its hash read and a purge of another
            // key, all through the shim's private-data messages.
            let coll = "_implicit_org_Org1MSP".to_string();
            let put = protos::PutState {
                key: "p1".into(),
                value: b"hidden-value".to_vec(),
                collection: coll.clone(),
            };
            let a = tx.ask(Type::PutState, put.encode_to_vec()).await;
            let hash = protos::GetState {
                key: "p1".into(),
                collection: coll.clone(),
            };
            let b = tx.ask(Type::GetPrivateDataHash, hash.encode_to_vec()).await;
            let purge = protos::DelState {
                key: "p2".into(),
                collection: coll.clone(),
            };
            let c = tx.ask(Type::PurgePrivateData, purge.encode_to_vec()).await;
            // The Node shim's setPrivateDataValidationParameter and its getter.
            let set = protos::PutStateMetadata {
                key: "p3".into(),
                collection: coll.clone(),
                metadata: Some(protos::StateMetadata {
                    metakey: "VALIDATION_PARAMETER".into(),
                    value: b"p3-policy".to_vec(),
                }),
            };
            let d = tx.ask(Type::PutStateMetadata, set.encode_to_vec()).await;
            let get = protos::GetStateMetadata {
                key: "p3".into(),
                collection: coll,
            };
            let e = tx.ask(Type::GetStateMetadata, get.encode_to_vec()).await;
            for m in [&a, &b, &c, &d, &e] {
                assert_eq!(m.r#type, Type::Response as i32, "{m:?}");
            }
            let read = protos::StateMetadataResult::decode(e.payload.as_slice()).unwrap();
            assert!(read.entries.is_empty(), "p3 is not committed: {read:?}");
            tx.complete(200, "", b"", None).await;
        }
        "unsupported" => {
            let rich = protos::GetQueryResult {
                query: "{}".into(),
                ..Default::default()
            };
            let a = tx.ask(Type::GetQueryResult, rich.encode_to_vec()).await;
            let invoke = protos::ChaincodeSpec::default();
            let b = tx.ask(Type::InvokeChaincode, invoke.encode_to_vec()).await;
            let private = protos::GetState {
                key: "k".into(),
                collection: "secret".into(),
            };
            let c = tx.ask(Type::GetState, private.encode_to_vec()).await;
            let text = [a, b, c]
                .iter()
                .map(|m| {
                    assert_eq!(m.r#type, Type::Error as i32);
                    String::from_utf8_lossy(&m.payload).into_owned()
                })
                .collect::<Vec<_>>()
                .join("|");
            tx.complete(500, &text, b"", None).await;
        }
        "whoami" => {
            let proposal = m
                .proposal
                .expect("the TRANSACTION carries the client's proposal");
            tx.complete(200, "", &proposal.signature, None).await;
        }
        "page" => {
            let mut pages = Vec::new();
            let mut bookmark = String::new();
            loop {
                let meta = protos::QueryMetadata {
                    page_size: 2,
                    bookmark: bookmark.clone(),
                };
                let req = protos::GetStateByRange {
                    start_key: "bulk".into(),
                    end_key: "bulkz".into(),
                    collection: String::new(),
                    metadata: meta.encode_to_vec(),
                };
                let page =
                    query_response(&tx.ask(Type::GetStateByRange, req.encode_to_vec()).await);
                let meta = protos::QueryResponseMetadata::decode(page.metadata.as_slice()).unwrap();
                assert_eq!(meta.fetched_records_count as usize, page.results.len());
                let keys: Vec<String> = page
                    .results
                    .iter()
                    .map(|r| {
                        queryresult::Kv::decode(r.result_bytes.as_slice())
                            .unwrap()
                            .key
                    })
                    .collect();
                pages.push(keys.join(","));
                let close = protos::QueryStateClose { id: page.id };
                tx.ask(Type::QueryStateClose, close.encode_to_vec()).await;
                if meta.bookmark.is_empty() {
                    break;
                }
                bookmark = meta.bookmark;
            }
            tx.complete(200, "", pages.join("|").as_bytes(), None).await;
        }
        "metadata" => {
            let get = protos::GetStateMetadata {
                key: "asset9".into(),
                collection: String::new(),
            };
            let got = tx.ask(Type::GetStateMetadata, get.encode_to_vec()).await;
            assert_eq!(got.r#type, Type::Response as i32, "{got:?}");
            let result = protos::StateMetadataResult::decode(got.payload.as_slice()).unwrap();
            assert!(result.entries.is_empty());
            let put = protos::PutStateMetadata {
                key: "asset9".into(),
                collection: String::new(),
                metadata: Some(protos::StateMetadata {
                    metakey: "VALIDATION_PARAMETER".into(),
                    value: b"policy".to_vec(),
                }),
            };
            let put = tx.ask(Type::PutStateMetadata, put.encode_to_vec()).await;
            assert_eq!(put.r#type, Type::Response as i32, "{put:?}");
            // Having written, a paginated query is refused (Fabric's rule).
            let meta = protos::QueryMetadata {
                page_size: 2,
                bookmark: String::new(),
            };
            let req = protos::GetStateByRange {
                start_key: "a".into(),
                end_key: "z".into(),
                collection: String::new(),
                metadata: meta.encode_to_vec(),
            };
            let page = tx.ask(Type::GetStateByRange, req.encode_to_vec()).await;
            assert_eq!(page.r#type, Type::Error as i32);
            tx.complete(200, "", &page.payload, None).await;
        }
        "invoke" => {
            let call = |name: &str, function: &str| protos::ChaincodeSpec {
                chaincode_id: Some(protos::ChaincodeId {
                    name: name.into(),
                    ..Default::default()
                }),
                input: Some(protos::ChaincodeInput {
                    args: vec![function.as_bytes().to_vec()],
                    ..Default::default()
                }),
                ..Default::default()
            };
            let mut answers = Vec::new();
            for (name, function) in [
                ("ledger", "credit"),
                ("assets2", "create"),
                ("ledger/settlement", "credit"),
                ("nobody", "x"),
            ] {
                let answer = tx
                    .ask(Type::InvokeChaincode, call(name, function).encode_to_vec())
                    .await;
                let text = if answer.r#type == Type::Response as i32 {
                    // The payload is the callee's COMPLETED message, as the shims expect.
                    let inner = ChaincodeMessage::decode(answer.payload.as_slice()).unwrap();
                    assert_eq!(inner.r#type, Type::Completed as i32);
                    let response = protos::Response::decode(inner.payload.as_slice()).unwrap();
                    format!(
                        "{}:{}{}",
                        response.status,
                        String::from_utf8_lossy(&response.payload),
                        response.message
                    )
                } else {
                    format!("ERROR:{}", String::from_utf8_lossy(&answer.payload))
                };
                answers.push(text);
            }
            tx.complete(200, "", answers.join("|").as_bytes(), None)
                .await;
        }
        "bad-completed" => {
            let m = msg(Type::Completed, &tx.txid, vec![0xff, 0xff, 0xff]);
            let _ = tx.out.send(Ok(m)).await;
        }
        "fail" => {
            tx.complete(500, "asset asset7 does not exist", b"", None)
                .await
        }
        "hang" => {}
        "unknown-type" => {
            let mut bad = msg(Type::GetState, &tx.txid, Vec::new());
            bad.r#type = 99;
            let _ = tx.out.send(Ok(bad)).await;
        }
        "wrong-txid" => {
            let answer = tx
                .ask_as("not-a-running-tx", Type::GetState, get_state("a"))
                .await;
            assert_eq!(answer.r#type, Type::Error as i32);
            assert_eq!(
                answer.txid, "not-a-running-tx",
                "the answer echoes the tx id"
            );
            tx.complete(200, "", b"survived", None).await;
        }
        "error" => {
            let _ = tx
                .out
                .send(Ok(msg(
                    Type::Error,
                    &tx.txid,
                    b"cannot parse input".to_vec(),
                )))
                .await;
        }
        "crash" => {
            let _ = tx
                .out
                .send(Err(tonic::Status::unavailable("chaincode crashed")))
                .await;
        }
        other => panic!("fake shim has no script {other}"),
    }
}

fn get_state(key: &str) -> Vec<u8> {
    protos::GetState {
        key: key.into(),
        collection: String::new(),
    }
    .encode_to_vec()
}

/// An in-memory world state with history.
#[derive(Default)]
struct MemState {
    rows: BTreeMap<String, (Vec<u8>, kvrwset::Version)>,
}

impl StateReader for MemState {
    fn get(&self, _ns: &str, key: &str) -> Result<Option<(Vec<u8>, kvrwset::Version)>, String> {
        Ok(self.rows.get(key).cloned())
    }
    fn range(
        &self,
        _ns: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>, kvrwset::Version)>, String> {
        Ok(self
            .rows
            .range(start.to_owned()..)
            .take_while(|(k, _)| end.is_empty() || k.as_str() < end)
            .take(limit)
            .map(|(k, (v, ver))| (k.clone(), v.clone(), *ver))
            .collect())
    }
    fn history(
        &self,
        _ns: &str,
        key: &str,
        _limit: usize,
    ) -> Result<Vec<queryresult::KeyModification>, String> {
        Ok(vec![
            queryresult::KeyModification {
                tx_id: format!("{key}-tx2"),
                value: Vec::new(),
                timestamp: None,
                is_delete: true,
            },
            queryresult::KeyModification {
                tx_id: format!("{key}-tx1"),
                value: b"v".to_vec(),
                timestamp: Some(prost_types::Timestamp {
                    seconds: 5,
                    nanos: 0,
                }),
                is_delete: false,
            },
        ])
    }
}

fn state(extra: usize) -> MemState {
    let mut s = MemState::default();
    s.rows.insert(
        "asset9".into(),
        (
            b"nine".to_vec(),
            kvrwset::Version {
                block_num: 3,
                tx_num: 1,
            },
        ),
    );
    for i in 0..extra {
        s.rows.insert(
            format!("bulk{i:04}"),
            (
                b"x".to_vec(),
                kvrwset::Version {
                    block_num: 4,
                    tx_num: 0,
                },
            ),
        );
    }
    // A composite key, which a simple range query must not return.
    s.rows.insert(
        "\u{0}asset\u{0}1\u{0}".into(),
        (b"c".to_vec(), kvrwset::Version::default()),
    );
    s
}

fn invocation(tx_id: &str, function: &str) -> Invocation {
    Invocation {
        channel_id: CHANNEL.into(),
        tx_id: tx_id.into(),
        chaincode: NAME.into(),
        args: vec![function.as_bytes().to_vec()],
        signed_proposal: Some(protos::SignedProposal {
            proposal_bytes: b"proposal".to_vec(),
            signature: b"client-signature".to_vec(),
        }),
        ..Default::default()
    }
}

/// The in-process twin of the fake's "create" script.
struct InProcess;

impl Chaincode for InProcess {
    fn invoke(&self, stub: &mut ChaincodeStub<'_>) -> protos::Response {
        stub.get_state("asset1").unwrap();
        stub.get_state("asset9").unwrap();
        stub.put_state("asset1", b"one").unwrap();
        stub.del_state("asset9").unwrap();
        stub.set_event("AssetCreated", b"event-payload").unwrap();
        gridledger_chaincode::success(b"created".to_vec())
    }
}

async fn start(mode: Mode) -> (ExternalChaincode, Arc<Mutex<Vec<i32>>>) {
    start_with(mode, None).await
}

/// Starts a fake chaincode server, over TLS with `tls = (cert PEM, key PEM)`.
async fn start_with(
    mode: Mode,
    tls: Option<(String, String)>,
) -> (ExternalChaincode, Arc<Mutex<Vec<i32>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let shim = FakeShim {
        mode,
        seen: seen.clone(),
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some((cert, key)) = tls {
        let identity = tonic::transport::Identity::from_pem(cert, key);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .unwrap();
    }
    tokio::spawn(
        builder
            .add_service(ChaincodeServer::new(shim))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let cc = ExternalChaincode {
        address,
        execute_timeout: Duration::from_secs(10),
        dial_timeout: external::DEFAULT_DIAL_TIMEOUT,
        tls_ca_cert: None,
    };
    (cc, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_chaincode_builds_the_same_rwset_and_event_as_in_process_chaincode() {
    let (cc, seen) = start(Mode::Scripted).await;
    let state = state(0);
    let inv = invocation("tx-create", "create");
    let external = external::execute(&cc, NAME, &inv, &state).await;
    let local = gridledger_chaincode::simulate(&InProcess, NAME, &inv, &state);
    assert_eq!(external.response.status, 200, "{:?}", external.response);
    assert_eq!(external.response.payload, b"created");
    assert_eq!(external.rwset_bytes, local.rwset_bytes);
    let event = external.event.expect("the chaincode set an event");
    assert_eq!(event.chaincode_id, NAME, "stamped with the chaincode name");
    assert_eq!(event.tx_id, "tx-create", "stamped with the tx id");
    assert_eq!(Some(event), local.event);
    assert!(!seen.lock().unwrap().contains(&(Type::Keepalive as i32)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_queries_come_in_batches_of_at_most_100_and_are_recorded_for_phantom_checks() {
    let (cc, _) = start(Mode::Scripted).await;
    let state = state(250);
    let result = external::execute(&cc, NAME, &invocation("tx-range", "range"), &state).await;
    assert_eq!(result.response.status, 200, "{:?}", result.response);
    // 250 bulk keys + asset9; the composite key is excluded by the "\x01" start.
    assert_eq!(
        String::from_utf8_lossy(&result.response.payload),
        "251 keys in 3 batches, last bulk0249"
    );
    let kv = kvrwset::KvrwSet::decode(result.rwset.ns_rwset[0].rwset.as_slice()).unwrap();
    assert_eq!(kv.range_queries_info.len(), 1);
    assert!(kv.range_queries_info[0].itr_exhausted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paginated_range_queries_return_one_page_and_a_bookmark_to_resume_from() {
    let (cc, _) = start(Mode::Scripted).await;
    let state = state(5);
    let result = external::execute(&cc, NAME, &invocation("tx-page", "page"), &state).await;
    assert_eq!(result.response.status, 200, "{:?}", result.response);
    assert_eq!(
        String::from_utf8_lossy(&result.response.payload),
        "bulk0000,bulk0001|bulk0002,bulk0003|bulk0004"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_served_newest_first_with_timestamps_and_the_proposal_is_forwarded() {
    let (cc, _) = start(Mode::Scripted).await;
    let state = state(0);
    let history = external::execute(&cc, NAME, &invocation("tx-h", "history"), &state).await;
    assert_eq!(history.response.payload, b"asset9-tx2,asset9-tx1");
    assert!(
        history.rwset.ns_rwset.is_empty(),
        "history reads are not in the rwset"
    );
    let whoami = external::execute(&cc, NAME, &invocation("tx-w", "whoami"), &state).await;
    assert_eq!(whoami.response.payload, b"client-signature");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_data_messages_produce_hashes_in_public_and_values_in_the_private_rwset() {
    let (cc, _) = start(Mode::Scripted).await;
    let state = state(0);
    let r = external::execute(&cc, NAME, &invocation("tx-p", "private"), &state).await;
    assert_eq!(r.response.status, 200, "{:?}", r.response);
    let ns = &r.rwset.ns_rwset[0];
    let coll = &ns.collection_hashed_rwset[0];
    assert_eq!(coll.collection_name, "_implicit_org_Org1MSP");
    let hashed = kvrwset::HashedRwSet::decode(coll.hashed_rwset.as_slice()).unwrap();
    assert_eq!(hashed.hashed_writes.len(), 2);
    assert!(hashed.hashed_writes.iter().any(|w| w.is_purge));
    assert_eq!(hashed.hashed_reads.len(), 2, "p1's hash and p3's metadata");
    assert_eq!(hashed.metadata_writes.len(), 1);
    assert_eq!(
        hashed.metadata_writes[0].key_hash,
        gridledger_chaincode::private::hash(b"p3")
    );
    assert_eq!(hashed.metadata_writes[0].entries[0].value, b"p3-policy");
    assert!(
        !r.rwset_bytes
            .windows(b"hidden-value".len())
            .any(|w| w == b"hidden-value")
    );
    let pvt = r.pvt_rwset.expect("a private rwset");
    let kv = kvrwset::KvrwSet::decode(pvt.ns_pvt_rwset[0].collection_pvt_rwset[0].rwset.as_slice())
        .unwrap();
    assert_eq!(kv.writes[0].value, b"hidden-value");
    assert_eq!(kv.metadata_writes[0].key, "p3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_requests_are_answered_with_errors_and_chaincode_errors_pass_through() {
    let (cc, _) = start(Mode::Scripted).await;
    let state = state(0);
    let r = external::execute(&cc, NAME, &invocation("tx-u", "unsupported"), &state).await;
    assert_eq!(r.response.status, 500);
    assert!(
        r.response
            .message
            .contains("rich queries are not supported"),
        "{}",
        r.response.message
    );
    assert!(
        r.response.message.contains("another chaincode"),
        "{}",
        r.response.message
    );
    assert!(
        r.response
            .message
            .contains("collection \"secret\" is not defined"),
        "{}",
        r.response.message
    );
    let r = external::execute(&cc, NAME, &invocation("tx-f", "fail"), &state).await;
    assert_eq!(r.response.status, 500);
    assert_eq!(r.response.message, "asset asset7 does not exist");
    let r = external::execute(&cc, NAME, &invocation("tx-e", "error"), &state).await;
    assert_eq!(r.response.status, 500);
    assert!(
        r.response.message.contains("cannot parse input"),
        "{}",
        r.response.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transactions_are_multiplexed_on_one_connection() {
    let (cc, _) = start(Mode::Scripted).await;
    let state = Arc::new(state(120));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (cc, state) = (cc.clone(), state.clone());
        tasks.push(tokio::spawn(async move {
            let function = if i % 2 == 0 { "create" } else { "range" };
            let r = external::execute(
                &cc,
                NAME,
                &invocation(&format!("tx-{i}"), function),
                &*state,
            )
            .await;
            (function, r)
        }));
    }
    for task in tasks {
        let (function, r) = task.await.unwrap();
        assert_eq!(r.response.status, 200, "{function}: {:?}", r.response);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_chaincode_times_out_and_the_connection_stays_usable() {
    let (mut cc, _) = start(Mode::Scripted).await;
    cc.execute_timeout = Duration::from_millis(300);
    let state = state(0);
    let started = std::time::Instant::now();
    let r = external::execute(&cc, NAME, &invocation("tx-hang", "hang"), &state).await;
    assert_eq!(r.response.status, 500);
    assert!(
        r.response.message.contains("did not complete"),
        "{}",
        r.response.message
    );
    assert!(r.rwset.ns_rwset.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
    cc.execute_timeout = Duration::from_secs(10);
    let r = external::execute(&cc, NAME, &invocation("tx-after", "create"), &state).await;
    assert_eq!(r.response.status, 200, "{:?}", r.response);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_chaincode_fails_only_its_transaction() {
    let (cc, _) = start(Mode::Scripted).await;
    let state = state(0);
    let r = external::execute(&cc, NAME, &invocation("tx-x", "unknown-type"), &state).await;
    assert_eq!(r.response.status, 500);
    assert!(
        r.response.message.contains("message type 99"),
        "{}",
        r.response.message
    );
    let r = external::execute(&cc, NAME, &invocation("tx-z", "bad-completed"), &state).await;
    assert_eq!(r.response.status, 500);
    assert!(
        r.response.message.contains("not a Response"),
        "{}",
        r.response.message
    );
    let r = external::execute(&cc, NAME, &invocation("tx-y", "wrong-txid"), &state).await;
    assert_eq!(r.response.payload, b"survived", "{:?}", r.response);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_chaincode_fails_the_call_and_is_redialled_on_the_next() {
    let (cc, _) = start(Mode::Scripted).await;
    let state = state(0);
    let r = external::execute(&cc, NAME, &invocation("tx-c", "crash"), &state).await;
    assert_eq!(r.response.status, 500);
    assert!(
        r.response.message.contains("disconnected"),
        "{}",
        r.response.message
    );
    let r = external::execute(&cc, NAME, &invocation("tx-next", "create"), &state).await;
    assert_eq!(r.response.status, 200, "{:?}", r.response);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_register_properly_is_refused() {
    let state = state(0);
    let (cc, _) = start(Mode::WrongFirst).await;
    let r = external::execute(&cc, NAME, &invocation("tx-1", "create"), &state).await;
    assert_eq!(r.response.status, 500);
    assert!(
        r.response.message.contains("expected REGISTER first"),
        "{}",
        r.response.message
    );
    let (cc, _) = start(Mode::Silent).await;
    let r = external::execute(&cc, NAME, &invocation("tx-2", "create"), &state).await;
    assert!(
        r.response.message.contains("did not register"),
        "{}",
        r.response.message
    );
    // The connect gives up after the definition's dial timeout, which the error names.
    let cc = ExternalChaincode {
        address: "127.0.0.1:1".into(),
        execute_timeout: Duration::from_secs(10),
        dial_timeout: Duration::from_millis(1250),
        tls_ca_cert: None,
    };
    let r = external::execute(&cc, NAME, &invocation("tx-3", "create"), &state).await;
    assert!(
        r.response.message.contains("cannot reach")
            && r.response.message.contains("dial timeout 1.25s"),
        "{}",
        r.response.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocking_entry_point_runs_from_the_endorsers_blocking_threads() {
    let (cc, _) = start(Mode::Scripted).await;
    let r = tokio::task::spawn_blocking(move || {
        external::execute_blocking(&cc, NAME, &invocation("tx-b", "create"), &state(0))
    })
    .await
    .unwrap();
    assert_eq!(r.response.status, 200, "{:?}", r.response);
    let outside = std::thread::spawn(|| {
        let cc = ExternalChaincode {
            address: "127.0.0.1:1".into(),
            execute_timeout: Duration::from_secs(1),
            dial_timeout: external::DEFAULT_DIAL_TIMEOUT,
            tls_ca_cert: None,
        };
        external::execute_blocking(&cc, NAME, &invocation("tx-o", "create"), &state(0))
    })
    .join()
    .unwrap();
    assert!(outside.response.message.contains("async runtime"));
}

#[test]
fn a_chaincode_definition_with_an_address_names_an_external_server() {
    let spec: gridledger_peer::config::ChaincodeSpec = toml::from_str(
        "channel = \"market\"\nname = \"assets\"\naddress = \"127.0.0.1:9999\"\nexecute_timeout_ms = 1500\n",
    )
    .unwrap();
    assert_eq!(
        spec.external(),
        Some(ExternalChaincode {
            address: "127.0.0.1:9999".into(),
            execute_timeout: Duration::from_millis(1500),
            dial_timeout: external::DEFAULT_DIAL_TIMEOUT,
            tls_ca_cert: None,
        })
    );
    let builtin: gridledger_peer::config::ChaincodeSpec =
        toml::from_str("channel = \"market\"\nname = \"basic\"\n").unwrap();
    assert_eq!(builtin.external(), None);
    let default_timeout: gridledger_peer::config::ChaincodeSpec =
        toml::from_str("channel = \"market\"\nname = \"a\"\naddress = \"h:1\"\n").unwrap();
    assert_eq!(
        default_timeout.external().map(|e| e.execute_timeout),
        Some(external::DEFAULT_EXECUTE_TIMEOUT)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_chaincode_server_is_dialled_over_tls_trusting_the_configured_ca() {
    use gridledger_identity::material::{CertificateAuthority, LeafSpec, Seed};
    let seed = Seed::from_text("external chaincode tls");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ca =
        CertificateAuthority::new_root(&seed, "DSOMSP", "tlsca", now - 60, now + 3600).unwrap();
    let mut leaf = LeafSpec::new("chaincode", None, now - 60, now + 3600);
    leaf.tls_hosts = vec!["127.0.0.1".into()];
    let server = ca.issue("DSOMSP", &leaf).unwrap();
    let dir = std::env::temp_dir().join(format!("gridledger-ext-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.cert_pem()).unwrap();
    let (mut cc, _) = start_with(Mode::Scripted, Some((server.cert_pem, server.key_pem))).await;
    cc.tls_ca_cert = Some(ca_path);
    let r = external::execute(&cc, NAME, &invocation("tx-tls", "create"), &state(0)).await;
    assert_eq!(r.response.status, 200, "{:?}", r.response);
    // Another CA is not trusted.
    let other =
        CertificateAuthority::new_root(&Seed::from_text("other"), "X", "x", now - 60, now + 3600)
            .unwrap();
    let (mut cc2, _) = {
        let mut leaf = LeafSpec::new("chaincode", None, now - 60, now + 3600);
        leaf.tls_hosts = vec!["127.0.0.1".into()];
        let id = other.issue("X", &leaf).unwrap();
        start_with(Mode::Scripted, Some((id.cert_pem, id.key_pem))).await
    };
    cc2.tls_ca_cert = cc.tls_ca_cert.clone();
    let r = external::execute(&cc2, NAME, &invocation("tx-tls2", "create"), &state(0)).await;
    assert_eq!(r.response.status, 500);
    assert!(
        r.response.message.contains("cannot reach"),
        "{}",
        r.response.message
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `ledger` (compiled in) on every channel and `assets2` (the external fake) on
/// `market`; `settlement` is another channel with an empty state.
struct Host {
    assets2: ExternalChaincode,
}

/// The compiled-in callee: credits on its own channel, refuses to write elsewhere.
struct Ledger;

impl Chaincode for Ledger {
    fn invoke(&self, stub: &mut ChaincodeStub<'_>) -> protos::Response {
        match stub.put_state("balance", b"15") {
            Ok(()) => gridledger_chaincode::success(b"credited".to_vec()),
            Err(e) => gridledger_chaincode::error(e.to_string()),
        }
    }
}

impl gridledger_chaincode::ChaincodeHost for Host {
    fn run(&self, name: &str, stub: &mut ChaincodeStub<'_>) -> Result<protos::Response, String> {
        match name {
            "ledger" => Ok(Ledger.invoke(stub)),
            "assets2" => external::run_blocking(&self.assets2, stub),
            other => Err(format!("chaincode {other} is not defined")),
        }
    }

    fn channel_state(&self, channel_id: &str) -> Result<Box<dyn StateReader + '_>, String> {
        match channel_id {
            "settlement" => Ok(Box::new(MemState::default())),
            other => Err(format!("channel {other} is not joined")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_metadata_is_served_and_recorded_and_pagination_needs_a_read_only_transaction() {
    let (cc, _) = start(Mode::Scripted).await;
    let state = state(0);
    let r = external::execute(&cc, NAME, &invocation("tx-md", "metadata"), &state).await;
    assert_eq!(r.response.status, 200, "{:?}", r.response);
    assert!(
        String::from_utf8_lossy(&r.response.payload).contains("read-only transaction"),
        "{:?}",
        r.response
    );
    let kv = kvrwset::KvrwSet::decode(r.rwset.ns_rwset[0].rwset.as_slice()).unwrap();
    assert_eq!(
        kv.reads,
        vec![kvrwset::KvRead {
            key: "asset9".into(),
            version: Some(kvrwset::Version {
                block_num: 3,
                tx_num: 1
            }),
        }],
        "the metadata read is a read of the key at its version"
    );
    assert_eq!(
        kv.metadata_writes,
        vec![kvrwset::KvMetadataWrite {
            key: "asset9".into(),
            entries: vec![kvrwset::KvMetadataEntry {
                name: "VALIDATION_PARAMETER".into(),
                value: b"policy".to_vec(),
            }],
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_chaincode_runs_compiled_and_external_callees_in_the_same_transaction() {
    let (cc, _) = start(Mode::Scripted).await;
    let (assets2, _) = start(Mode::Scripted).await;
    let r = tokio::task::spawn_blocking(move || {
        let host = Host { assets2 };
        external::execute_blocking_with_host(
            &cc,
            NAME,
            &invocation("tx-inv", "invoke"),
            &state(0),
            &host,
        )
    })
    .await
    .unwrap();
    assert_eq!(r.response.status, 200, "{:?}", r.response);
    let answers = String::from_utf8_lossy(&r.response.payload).into_owned();
    let answers: Vec<&str> = answers.split('|').collect();
    assert_eq!(answers[0], "200:credited");
    assert_eq!(answers[1], "200:created", "the external callee answered");
    assert!(
        answers[2].starts_with("500:") && answers[2].contains("may only read"),
        "a write on another channel is refused: {}",
        answers[2]
    );
    assert!(
        answers[3].starts_with("ERROR:") && answers[3].contains("not defined"),
        "{}",
        answers[3]
    );
    let namespaces: Vec<&str> = r
        .rwset
        .ns_rwset
        .iter()
        .map(|ns| ns.namespace.as_str())
        .collect();
    // The caller touched no state itself; both same-channel callees are recorded.
    assert_eq!(namespaces, ["assets2", "ledger"]);
    let callee = kvrwset::KvrwSet::decode(r.rwset.ns_rwset[0].rwset.as_slice()).unwrap();
    assert_eq!(callee.writes.len(), 2, "asset1 put and asset9 delete");
    assert!(
        r.event.is_none(),
        "the callee's event is not the transaction's"
    );
}
