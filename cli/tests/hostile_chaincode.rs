//! A chaincode answering with garbage, against a real network started by `gridledger up`.
//!
//! The test serves its own chaincode-as-a-service server (tonic, with a codec that sends raw
//! bytes so it can also send what is not a `ChaincodeMessage` at all) and has `up` define it
//! on `market` as `garbage`; every peer dials it and drives it with the shim protocol. What
//! the server does with a transaction is chosen by the transaction's function name, so one
//! server plays every misbehaviour: bytes that are not a ChaincodeMessage, a message of the
//! wrong type for the transaction's state, a COMPLETED whose payload is not a Response, a
//! COMPLETED for another tx id, a message over the peer's size limit, no answer at all, and
//! hanging up mid-transaction. Each bad mode first writes a key (PUT_STATE, which the peer
//! answers), so a leak of the half-done simulation into the ledger would show.
//!
//! For each, the peer must answer the client with a clear error — Evaluate UNKNOWN ("evaluate
//! call to endorser returned error: chaincode response 500, …", as Fabric's gateway reports a
//! chaincode's failure) and Endorse ABORTED with the peers' reasons in `gateway.ErrorDetail`s —
//! log what the chaincode did wrong, leave nothing in the ledger (height unchanged, the
//! written keys absent, the tx ids unknown to qscc), and keep serving: the same chaincode once
//! it behaves again (the peer dials it anew after a broken stream) and the built-in `basic`.

mod support;

use gridledger_proto::common;
use gridledger_proto::prost::Message;
use gridledger_proto::protos::{self, ChaincodeMessage, chaincode_message::Type};
use gridledger_sdk::{Gateway, SdkError};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http;
use tonic::codegen::tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Code, Status};

const CHANNEL: &str = "market";
/// The chaincode the test's server plays.
const CHAINCODE: &str = "garbage";
/// Bytes that no protobuf message decodes from: field 1, length 5, then only 3 bytes.
const GARBAGE: &[u8] = b"\x0a\x05abc";
/// Over the peer's limit for one message from a chaincode (100 MiB).
const OVERSIZED: usize = 101 * 1024 * 1024;
/// Longer than the peer's execution deadline for a chaincode (30 s) plus the call itself.
const CALL_TIMEOUT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// The garbage chaincode server
// ---------------------------------------------------------------------------------------------

/// A gRPC codec for raw message bytes both ways, so the server can send anything.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        use gridledger_proto::prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        use gridledger_proto::prost::bytes::Buf;
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

/// The `/protos.Chaincode` service: every call is a shim stream.
#[derive(Debug, Clone)]
struct GarbageServer;

impl tonic::server::NamedService for GarbageServer {
    const NAME: &'static str = "protos.Chaincode";
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for GarbageServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            Ok(grpc.streaming(ShimStream, request).await)
        })
    }
}

/// One `Connect` stream.
#[derive(Debug, Clone, Copy)]
struct ShimStream;

type Outbound = ReceiverStream<Result<Vec<u8>, Status>>;

impl tonic::codegen::Service<tonic::Request<tonic::Streaming<Vec<u8>>>> for ShimStream {
    type Response = tonic::Response<Outbound>;
    type Error = Status;
    type Future = tonic::codegen::BoxFuture<Self::Response, Status>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::Request<tonic::Streaming<Vec<u8>>>) -> Self::Future {
        Box::pin(async move {
            let (out, rx) = mpsc::channel(64);
            tokio::spawn(session(request.into_inner(), out));
            Ok(tonic::Response::new(ReceiverStream::new(rx)))
        })
    }
}

/// A shim message for `to`'s transaction.
fn reply(to: &ChaincodeMessage, kind: Type, payload: Vec<u8>) -> ChaincodeMessage {
    ChaincodeMessage {
        r#type: kind as i32,
        payload,
        txid: to.txid.clone(),
        channel_id: to.channel_id.clone(),
        ..Default::default()
    }
}

/// A COMPLETED carrying a chaincode response.
fn completed(to: &ChaincodeMessage, status: i32, payload: &[u8]) -> ChaincodeMessage {
    let response = protos::Response {
        status,
        message: String::new(),
        payload: payload.to_vec(),
    };
    reply(to, Type::Completed, response.encode_to_vec())
}

/// What the server does once the key a bad mode writes first is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Misbehaviour {
    /// Bytes that are not a ChaincodeMessage.
    GarbageBytes,
    /// REGISTER in the middle of a transaction.
    WrongType,
    /// A COMPLETED whose payload is not a Response.
    BadCompleted,
    /// A COMPLETED for another transaction; this one is never completed.
    OtherTxId,
    /// A COMPLETED larger than the peer accepts.
    Oversized,
    /// Nothing, ever.
    Silent,
    /// Closes the stream.
    HangUp,
}

impl Misbehaviour {
    /// Every bad mode, with the function name that selects it.
    const ALL: [(&'static str, Misbehaviour); 7] = [
        ("garbage-bytes", Misbehaviour::GarbageBytes),
        ("wrong-type", Misbehaviour::WrongType),
        ("bad-completed", Misbehaviour::BadCompleted),
        ("other-txid", Misbehaviour::OtherTxId),
        ("oversized", Misbehaviour::Oversized),
        ("silent", Misbehaviour::Silent),
        ("hang-up", Misbehaviour::HangUp),
    ];

    fn of(function: &str) -> Option<Misbehaviour> {
        Misbehaviour::ALL
            .iter()
            .find(|(name, _)| *name == function)
            .map(|(_, m)| *m)
    }
}

/// What a transaction waits for from the peer.
enum Waiting {
    /// `ok`: the PUT_STATE's answer, then COMPLETED 200.
    Put,
    /// `get`: the GET_STATE's answer, then COMPLETED 200 with the value.
    Get,
    /// A bad mode: the PUT_STATE's answer, then the misbehaviour.
    Then(Misbehaviour),
}

/// Plays one shim stream: REGISTER, then for each TRANSACTION what its function name says.
async fn session(
    mut inbound: tonic::Streaming<Vec<u8>>,
    out: mpsc::Sender<Result<Vec<u8>, Status>>,
) {
    let register = ChaincodeMessage {
        r#type: Type::Register as i32,
        payload: protos::ChaincodeId {
            name: format!("{CHAINCODE}:garbage-server"),
            ..Default::default()
        }
        .encode_to_vec(),
        ..Default::default()
    };
    let send = |msg: ChaincodeMessage| {
        let out = out.clone();
        async move { out.send(Ok(msg.encode_to_vec())).await.is_ok() }
    };
    if !send(register).await {
        return;
    }
    let mut waiting: std::collections::HashMap<String, Waiting> = Default::default();
    while let Ok(Some(bytes)) = inbound.message().await {
        let Ok(msg) = ChaincodeMessage::decode(bytes.as_slice()) else {
            return;
        };
        match Type::try_from(msg.r#type) {
            Ok(Type::Transaction) => {
                let input =
                    protos::ChaincodeInput::decode(msg.payload.as_slice()).unwrap_or_default();
                let arg = |i: usize| {
                    input
                        .args
                        .get(i)
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .unwrap_or_default()
                };
                let (function, key) = (arg(0), arg(1));
                let (request, next) = match function.as_str() {
                    "get" => (
                        reply(
                            &msg,
                            Type::GetState,
                            protos::GetState {
                                key,
                                collection: String::new(),
                            }
                            .encode_to_vec(),
                        ),
                        Waiting::Get,
                    ),
                    other => {
                        let put = reply(
                            &msg,
                            Type::PutState,
                            protos::PutState {
                                key,
                                value: format!("written by {other}").into_bytes(),
                                collection: String::new(),
                            }
                            .encode_to_vec(),
                        );
                        match Misbehaviour::of(other) {
                            Some(m) => (put, Waiting::Then(m)),
                            None => (put, Waiting::Put),
                        }
                    }
                };
                waiting.insert(msg.txid.clone(), next);
                if !send(request).await {
                    return;
                }
            }
            Ok(Type::Response | Type::Error) => {
                let Some(next) = waiting.remove(&msg.txid) else {
                    continue;
                };
                let answer = match next {
                    Waiting::Put => completed(&msg, 200, b"ok"),
                    Waiting::Get => completed(&msg, 200, &msg.payload),
                    Waiting::Then(Misbehaviour::GarbageBytes) => {
                        let _ = out.send(Ok(GARBAGE.to_vec())).await;
                        continue;
                    }
                    Waiting::Then(Misbehaviour::WrongType) => {
                        reply(&msg, Type::Register, Vec::new())
                    }
                    Waiting::Then(Misbehaviour::BadCompleted) => {
                        reply(&msg, Type::Completed, GARBAGE.to_vec())
                    }
                    Waiting::Then(Misbehaviour::OtherTxId) => {
                        let mut other = completed(&msg, 200, b"not yours");
                        other.txid = "someone-else".into();
                        other
                    }
                    Waiting::Then(Misbehaviour::Oversized) => {
                        completed(&msg, 200, &vec![0x2a; OVERSIZED])
                    }
                    Waiting::Then(Misbehaviour::Silent) => continue,
                    // Dropping the stream's sender ends the response stream: a hang-up.
                    Waiting::Then(Misbehaviour::HangUp) => return,
                };
                if !send(answer).await {
                    return;
                }
            }
            _ => {}
        }
    }
}

/// Serves the garbage chaincode on `port` for the rest of the test process.
async fn serve_garbage_chaincode(port: u16) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the chaincode server's port");
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(GarbageServer)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
    });
}

// ---------------------------------------------------------------------------------------------
// The network
// ---------------------------------------------------------------------------------------------

/// `gridledger up` with the garbage chaincode defined; stopped, and its folder removed (kept,
/// with the logs' tails printed, on failure), on drop.
struct Network {
    dir: PathBuf,
    json: serde_json::Value,
    up: Child,
}

impl Network {
    /// Starts `up` on `base` (its sixteen ports free) with `garbage` served at `cc_port`.
    fn start(base: u16, cc_port: u16) -> Network {
        let dir = std::env::temp_dir().join(format!(
            "gridledger-hostile-chaincode-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the network folder");
        let log = std::fs::File::create(dir.join("up.log")).expect("create up.log");
        let mut up = Command::new(env!("CARGO_BIN_EXE_gridledger"))
            .args(["up", "--dir"])
            .arg(&dir)
            .args(["--base-port", &base.to_string(), "--external-chaincode"])
            .arg(format!("{CHAINCODE}=127.0.0.1:{cc_port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone a file handle"))
            .stderr(log)
            .spawn()
            .expect("start gridledger up");
        let deadline = Instant::now() + support::START_TIMEOUT;
        let json = loop {
            if let Some(v) = std::fs::read(dir.join("network.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                break v;
            }
            if let Ok(Some(status)) = up.try_wait() {
                panic!(
                    "gridledger up exited before serving ({status}): {}",
                    std::fs::read_to_string(dir.join("up.log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "gridledger up did not serve");
            std::thread::sleep(support::POLL);
        };
        Network { dir, json, up }
    }

    /// A node's log.
    fn log(&self, node: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("logs/{node}.log"))).unwrap_or_default()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.up.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && !matches!(self.up.try_wait(), Ok(Some(_))) {
            std::thread::sleep(support::POLL);
        }
        let _ = self.up.kill();
        let _ = self.up.wait();
        if std::thread::panicking() {
            for node in ["peer0.dso", "peer0.retailer"] {
                let text = self.log(node);
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("----- {node}");
                for line in &lines[lines.len().saturating_sub(30)..] {
                    eprintln!("{line}");
                }
            }
            eprintln!("[test] folder kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/// Every wrong answer the test got; it fails once, at the end, listing them all.
#[derive(Debug, Default)]
struct Findings(Vec<String>);

impl Findings {
    fn check(&mut self, ok: bool, what: String) {
        if !ok {
            self.0.push(what);
        }
    }
}

/// The status message and every `gateway.ErrorDetail` of a gateway error, as one text.
fn error_text(e: &SdkError) -> String {
    match e {
        SdkError::Gateway {
            message, details, ..
        } => {
            let mut text = message.clone();
            for d in details {
                text.push_str(&format!(" | [{} {}] {}", d.msp_id, d.address, d.message));
            }
            text
        }
        other => other.to_string(),
    }
}

/// The gateway code of an SDK error, if it is one.
fn code_of(e: &SdkError) -> Option<Code> {
    match e {
        SdkError::Gateway { code, .. } => Some(*code),
        _ => None,
    }
}

/// The ledger height of `gateway`'s peer (qscc GetChainInfo).
async fn height(gateway: &Gateway) -> u64 {
    let info = gateway
        .network(CHANNEL)
        .contract("qscc")
        .evaluate("GetChainInfo", &[CHANNEL])
        .await
        .expect("GetChainInfo");
    common::BlockchainInfo::decode(info.as_slice())
        .expect("BlockchainInfo")
        .height
}

/// What `function` with `key` earned through Evaluate and through Endorse, with their tx ids.
struct Outcome {
    function: &'static str,
    key: String,
    evaluated: Result<Vec<u8>, SdkError>,
    evaluate_tx_id: String,
    endorsed: Result<String, SdkError>,
    endorse_tx_id: String,
}

/// Evaluates and endorses `function(key)` on the garbage chaincode, each bounded by
/// [`CALL_TIMEOUT`].
async fn try_mode(gateway: &Gateway, function: &'static str) -> Outcome {
    let key = format!("{function}-{}", std::process::id());
    let contract = gateway.network(CHANNEL).contract(CHAINCODE);
    let evaluation = contract.proposal(function, &[&key]).expect("proposal");
    let endorsement = contract.proposal(function, &[&key]).expect("proposal");
    let (evaluated, endorsed) = tokio::join!(
        tokio::time::timeout(CALL_TIMEOUT, evaluation.evaluate()),
        tokio::time::timeout(CALL_TIMEOUT, endorsement.endorse()),
    );
    Outcome {
        function,
        key,
        evaluated: evaluated.unwrap_or_else(|_| panic!("Evaluate {function}: no answer")),
        evaluate_tx_id: evaluation.tx_id().to_owned(),
        endorsed: endorsed
            .unwrap_or_else(|_| panic!("Endorse {function}: no answer"))
            .map(|tx| tx.tx_id().to_owned()),
        endorse_tx_id: endorsement.tx_id().to_owned(),
    }
}

/// The part of the peer's reason each bad mode must show.
fn expected_reason(function: &str) -> &'static str {
    match function {
        "garbage-bytes" | "hang-up" | "oversized" => "disconnected during transaction",
        "wrong-type" => "which the shim protocol does not allow",
        "bad-completed" => "COMPLETED whose payload is not a Response",
        _ => "did not complete transaction",
    }
}

/// Records a finding unless no peer knows `tx_id`.
async fn check_unknown_tx(found: &mut Findings, gateways: &[Gateway], what: &str, tx_id: &str) {
    for (i, gateway) in gateways.iter().enumerate() {
        let answer = gateway
            .network(CHANNEL)
            .contract("qscc")
            .evaluate("GetTransactionByID", &[CHANNEL, tx_id])
            .await;
        found.check(
            answer.is_err(),
            format!("{what}: peer #{i} knows transaction {tx_id}"),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chaincode_answering_with_garbage_is_contained() {
    let base = support::free_base_port(17);
    let cc_port = base + 16;
    serve_garbage_chaincode(cc_port).await;
    let net = Network::start(base, cc_port);
    let dir: &Path = &net.dir;
    let mut gateways = Vec::new();
    for msp_id in ["DSOMSP", "RetailerMSP", "CommunityMSP"] {
        gateways.push(
            support::user_gateway(dir, &net.json, msp_id)
                .await
                .with_timeout(CALL_TIMEOUT),
        );
    }
    let dso = &gateways[0];
    let mut found = Findings::default();

    // The chaincode behaves: a write commits and reads back.
    let good_key = format!("good-{}", std::process::id());
    let contract = dso.network(CHANNEL).contract(CHAINCODE);
    let committed = contract
        .submit("ok", &[&good_key])
        .await
        .unwrap_or_else(|e| panic!("the well-behaved mode commits: {e}"));
    assert_eq!(committed.0, b"ok");
    let read = contract.evaluate("get", &[&good_key]).await.expect("get");
    assert_eq!(read, b"written by ok", "a committed write reads back");
    let start = height(dso).await;

    // The peer multiplexes every transaction of a chaincode on one stream, and a broken stream
    // fails all of them (as in Fabric): the misbehaviours that break it run one at a time; the
    // two that only make the peer wait out its 30 s deadline run together.
    let mut outcomes = futures_join(
        ["silent", "other-txid"]
            .into_iter()
            .map(|function| try_mode(dso, function)),
    )
    .await;
    for function in [
        "garbage-bytes",
        "wrong-type",
        "bad-completed",
        "oversized",
        "hang-up",
    ] {
        outcomes.push(try_mode(dso, function).await);
    }
    for o in &outcomes {
        let reason = expected_reason(o.function);
        match &o.evaluated {
            Err(e) => {
                found.check(
                    code_of(e) == Some(Code::Unknown)
                        && error_text(e).contains("chaincode response 500")
                        && error_text(e).contains(reason),
                    format!(
                        "Evaluate {}: UNKNOWN with a 500 naming {reason:?}; got {}",
                        o.function,
                        error_text(e)
                    ),
                );
            }
            Ok(v) => found
                .0
                .push(format!("Evaluate {}: answered {v:?}", o.function)),
        }
        match &o.endorsed {
            Err(e) => {
                found.check(
                    code_of(e) == Some(Code::Aborted)
                        && matches!(e, SdkError::Gateway { details, .. } if details.iter().any(|d| d.message.contains(reason))),
                    format!(
                        "Endorse {}: ABORTED with a detail naming {reason:?}; got {}",
                        o.function,
                        error_text(e)
                    ),
                );
            }
            Ok(tx_id) => found
                .0
                .push(format!("Endorse {}: endorsed {tx_id}", o.function)),
        }
    }

    // The chaincode behaves again (the peer dials it anew where the stream broke), and the
    // half-done simulations left nothing: no block, no key, no transaction.
    let after_key = format!("after-{}", std::process::id());
    match contract.submit("ok", &[&after_key]).await {
        Ok((answer, _)) => {
            found.check(answer == b"ok", format!("ok after the garbage: {answer:?}"))
        }
        Err(e) => found.0.push(format!(
            "the chaincode is served again after the garbage: {e}"
        )),
    }
    found.check(
        height(dso).await == start + 1,
        format!(
            "only the well-behaved transaction was committed: height {} after {start}",
            height(dso).await
        ),
    );
    for o in &outcomes {
        match contract.evaluate("get", &[&o.key]).await {
            Ok(value) => found.check(
                value.is_empty(),
                format!("{} left its write in the state: {value:?}", o.function),
            ),
            Err(e) => found
                .0
                .push(format!("get {} after the garbage: {e}", o.key)),
        }
        check_unknown_tx(&mut found, &gateways, o.function, &o.evaluate_tx_id).await;
        check_unknown_tx(&mut found, &gateways, o.function, &o.endorse_tx_id).await;
    }

    // Other chaincodes were served throughout, on every peer.
    for gateway in &gateways {
        let asset = format!(
            "still-served-{}-{}",
            std::process::id(),
            height(gateway).await
        );
        match gateway
            .network(CHANNEL)
            .contract("basic")
            .submit("CreateAsset", &[&asset, "blue", "1", "Owner", "1"])
            .await
        {
            Ok(_) => {}
            Err(e) => found.0.push(format!("basic after the garbage: {e}")),
        }
    }

    // A human can tell from the peer's log which chaincode, transaction and fault.
    let log = strip_ansi(&net.log("peer0.dso"));
    for o in &outcomes {
        let reason = expected_reason(o.function);
        found.check(
            log.lines().any(|l| {
                l.contains("external chaincode failed the transaction")
                    && l.contains(&o.evaluate_tx_id)
                    && l.contains(CHAINCODE)
                    && l.contains(reason)
            }),
            format!(
                "peer0.dso logged no line naming {CHAINCODE}, tx {} and {reason:?}",
                o.evaluate_tx_id
            ),
        );
    }
    found.check(
        log.contains("external chaincode stream failed"),
        "peer0.dso logged the garbage bytes' broken stream".into(),
    );
    for node in ["peer0.dso", "peer0.retailer", "peer0.community"] {
        found.check(
            !net.log(node).contains("panicked"),
            format!("{node} logged a panic"),
        );
    }
    assert!(
        found.0.is_empty(),
        "{} mismatch(es):\n- {}",
        found.0.len(),
        found.0.join("\n- ")
    );
}

/// Awaits every future, concurrently.
async fn futures_join<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futures.into_iter().collect();
    let mut out = Vec::with_capacity(handles.len());
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = handles.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => results[i] = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.extend(
        results
            .into_iter()
            .map(|r| r.expect("every future finished")),
    );
    out
}

/// A log's text without terminal colour codes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
