//! Chaincode-as-a-service: the peer dials an external chaincode server and drives it with
//! Fabric's shim protocol (`/protos.Chaincode/Connect`, WIRE.md §4).
//!
//! One [`Connection`] per server address carries every transaction for that chaincode. The
//! chaincode speaks first (REGISTER with its ccid); the peer answers REGISTERED then READY and
//! from then on multiplexes TRANSACTIONs by (channel id, tx id). Each transaction is simulated
//! by [`execute`]: it answers the chaincode's requests (GET_STATE, PUT_STATE, DEL_STATE, range
//! and history iterators, …) from the same ledger snapshot the in-process chaincode would see,
//! recording reads, range queries, writes and the event in `gridledger_chaincode`'s stub, so
//! the read-write set is built by exactly the same code as for Rust chaincode. Key metadata
//! (GET_STATE_METADATA, PUT_STATE_METADATA, of public keys or, with a collection, of private
//! keys) and calls to other chaincodes (INVOKE_CHAINCODE,
//! answered with the callee's COMPLETED message) go through the same stub, so they follow
//! the Rust chaincode's rules; a callee may itself be external ([`run_blocking`]).
//!
//! Failure containment: a per-call deadline aborts only that simulation (status 500); requests
//! the chaincode later sends for an aborted transaction are answered ERROR so the shim is never
//! left waiting. A broken stream marks the connection closed, fails the transactions in
//! flight, and the next call dials again. Everything is bounded: transactions in flight per
//! connection, message sizes, bytes per transaction, open iterators per transaction, results per
//! batch. The peer never sends KEEPALIVE (the Node shim exits on it); the shim server's HTTP/2
//! pings, which h2 answers, keep the connection alive.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use gridledger_chaincode::{
    ChaincodeHost, ChaincodeStub, Invocation, SimulationResult, StateReader,
};
use gridledger_proto::prost::Message;
use gridledger_proto::protos::chaincode_client::ChaincodeClient;
use gridledger_proto::protos::chaincode_message::Type;
use gridledger_proto::protos::{self, ChaincodeMessage};
use gridledger_proto::{prost_types, queryresult};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

/// Largest message accepted from or sent to a chaincode (Fabric's default gRPC limit).
pub const MAX_MESSAGE_BYTES: usize = 100 * 1024 * 1024;
/// Most payload bytes one transaction may send the peer in all its messages together.
pub const MAX_TX_BYTES: usize = 256 * 1024 * 1024;
/// Most transactions in flight on one connection at a time.
pub const MAX_IN_FLIGHT: usize = 1024;
/// Most results in one range or history batch (Fabric's `MaxResultLimit`).
pub const MAX_BATCH: usize = 100;
/// Most iterators one transaction may hold open.
pub const MAX_OPEN_ITERATORS: usize = 64;
/// Most entries one history query returns.
pub const MAX_HISTORY: usize = 100_000;
/// Default deadline of one chaincode execution (Fabric's `chaincode.executetimeout`).
pub const DEFAULT_EXECUTE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connect timeout for a server whose definition sets none (a ccaas package's
/// `dial_timeout` replaces it).
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline for receiving the server's REGISTER once connected.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);

/// Messages queued per transaction from the connection's reader (the shim sends one request
/// at a time per transaction, so this only absorbs a misbehaving chaincode's burst).
const PER_TX_QUEUE: usize = 16;
/// Messages queued towards the chaincode.
const OUTBOUND_QUEUE: usize = 256;

/// Why a connection to a chaincode server could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid chaincode server address {address:?}: {reason}")]
    Address { address: String, reason: String },
    #[error("cannot reach chaincode server at {address} (dial timeout {timeout:?}): {reason}")]
    Dial {
        address: String,
        timeout: Duration,
        reason: String,
    },
    #[error("TLS for chaincode server {address}: {reason}")]
    Tls { address: String, reason: String },
    #[error("chaincode server at {address} did not register within {timeout:?}")]
    RegisterTimeout { address: String, timeout: Duration },
    #[error("chaincode server at {address} broke the handshake: {reason}")]
    Handshake { address: String, reason: String },
}

/// Where and how to reach one external chaincode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalChaincode {
    /// `host:port` of the chaincode server.
    pub address: String,
    /// Deadline of one execution.
    pub execute_timeout: Duration,
    /// Connect timeout when dialing the server (a ccaas package's `dial_timeout`).
    pub dial_timeout: Duration,
    /// When set, the server is dialled over TLS, trusting the CA certificate in this PEM file
    /// and checking the address's host as the server name. Plaintext HTTP/2 otherwise.
    pub tls_ca_cert: Option<std::path::PathBuf>,
}

/// Key of a transaction on a connection: (channel id, tx id), as the shim keys it.
type TxKey = (String, String);
/// Transactions in flight: key → the queue their messages go to.
type Routes = Arc<Mutex<HashMap<TxKey, mpsc::Sender<ChaincodeMessage>>>>;

/// A registered, ready connection to one chaincode server.
pub struct Connection {
    /// The ccid the chaincode registered with (e.g. `assets_1.0:0000`).
    ccid: String,
    outbound: mpsc::Sender<ChaincodeMessage>,
    routes: Routes,
    closed: Arc<AtomicBool>,
}

impl Connection {
    /// Dials `address` (over TLS when `tls_ca_cert` names a CA certificate PEM file), giving
    /// up on the connect after `dial_timeout`, waits for REGISTER and answers REGISTERED and
    /// READY.
    pub async fn dial(
        address: &str,
        tls_ca_cert: Option<&std::path::Path>,
        dial_timeout: Duration,
    ) -> Result<Arc<Connection>, ConnectError> {
        let scheme = if tls_ca_cert.is_some() {
            "https"
        } else {
            "http"
        };
        let mut endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|e| ConnectError::Address {
                address: address.into(),
                reason: e.to_string(),
            })?
            // No client pings: the shim's server pings every 110 s itself and would answer
            // more frequent pings from us with GOAWAY (too many pings).
            .connect_timeout(dial_timeout);
        if let Some(ca_path) = tls_ca_cert {
            let tls_error = |reason: String| ConnectError::Tls {
                address: address.into(),
                reason,
            };
            let ca = std::fs::read(ca_path)
                .map_err(|e| tls_error(format!("cannot read {}: {e}", ca_path.display())))?;
            let host = address
                .rsplit_once(':')
                .map_or(address, |(host, _)| host)
                .trim_matches(['[', ']']);
            let tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                .domain_name(host);
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| tls_error(error_chain(&e)))?;
        }
        let channel = endpoint.connect().await.map_err(|e| ConnectError::Dial {
            address: address.into(),
            timeout: dial_timeout,
            reason: error_chain(&e),
        })?;
        let (outbound, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let mut client = ChaincodeClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let handshake = async {
            let mut inbound = client
                .connect(ReceiverStream::new(outbound_rx))
                .await
                .map_err(|e| format!("Connect refused: {}", e.message()))?
                .into_inner();
            let first = inbound
                .message()
                .await
                .map_err(|e| format!("stream failed before REGISTER: {}", e.message()))?
                .ok_or("the chaincode closed the stream before REGISTER")?;
            if first.r#type != Type::Register as i32 {
                return Err(format!(
                    "expected REGISTER first, got message type {}",
                    first.r#type
                ));
            }
            let id = protos::ChaincodeId::decode(first.payload.as_slice())
                .map_err(|e| format!("REGISTER payload is not a ChaincodeID: {e}"))?;
            Ok((inbound, id.name))
        };
        let (inbound, ccid) = match tokio::time::timeout(REGISTER_TIMEOUT, handshake).await {
            Err(_) => {
                return Err(ConnectError::RegisterTimeout {
                    address: address.into(),
                    timeout: REGISTER_TIMEOUT,
                });
            }
            Ok(Err(reason)) => {
                return Err(ConnectError::Handshake {
                    address: address.into(),
                    reason,
                });
            }
            Ok(Ok(ok)) => ok,
        };
        for kind in [Type::Registered, Type::Ready] {
            let msg = ChaincodeMessage {
                r#type: kind as i32,
                ..Default::default()
            };
            outbound
                .send(msg)
                .await
                .map_err(|_| ConnectError::Handshake {
                    address: address.into(),
                    reason: "the stream closed during the handshake".into(),
                })?;
        }
        let connection = Arc::new(Connection {
            ccid,
            outbound,
            routes: Arc::new(Mutex::new(HashMap::new())),
            closed: Arc::new(AtomicBool::new(false)),
        });
        tracing::info!(address, ccid = %connection.ccid, "external chaincode registered");
        tokio::spawn(read_loop(
            address.to_owned(),
            inbound,
            connection.outbound.clone(),
            connection.routes.clone(),
            connection.closed.clone(),
        ));
        Ok(connection)
    }

    /// The ccid the chaincode registered with.
    pub fn ccid(&self) -> &str {
        &self.ccid
    }

    /// Whether the stream has ended (the next call must dial again).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.outbound.is_closed()
    }
}

/// Reads the chaincode's messages and routes each to its transaction. A request for a
/// transaction that is not in flight (finished, timed out, or a wrong tx id) is answered ERROR
/// so the shim does not wait forever. When the stream ends every transaction in flight sees its
/// queue close.
async fn read_loop(
    address: String,
    mut inbound: tonic::Streaming<ChaincodeMessage>,
    outbound: mpsc::Sender<ChaincodeMessage>,
    routes: Routes,
    closed: Arc<AtomicBool>,
) {
    loop {
        let msg = match inbound.message().await {
            Ok(Some(msg)) => msg,
            Ok(None) => {
                tracing::warn!(address, "external chaincode closed the stream");
                break;
            }
            Err(status) => {
                tracing::warn!(address, error = %status.message(), "external chaincode stream failed");
                break;
            }
        };
        let key = (msg.channel_id.clone(), msg.txid.clone());
        let route = lock(&routes).get(&key).cloned();
        match route {
            Some(queue) => {
                if queue.try_send(msg).is_err() {
                    tracing::warn!(address, tx_id = %key.1, "chaincode flooded a transaction; message dropped");
                }
            }
            None if is_request(msg.r#type) => {
                let answer = reply_error(
                    &msg,
                    "no transaction with this channel and tx id is running on the peer",
                );
                if outbound.try_send(answer).is_err() {
                    tracing::warn!(address, "outbound queue full; error reply dropped");
                }
            }
            None => {
                tracing::debug!(address, tx_id = %key.1, kind = msg.r#type, "message for no running transaction ignored");
            }
        }
    }
    closed.store(true, Ordering::Release);
    // Dropping the senders fails every transaction waiting on this connection.
    lock(&routes).clear();
}

/// Whether a message type is a request the chaincode waits an answer for.
fn is_request(kind: i32) -> bool {
    !matches!(
        Type::try_from(kind),
        Ok(Type::Completed | Type::Error | Type::Register | Type::Keepalive | Type::Response)
    )
}

/// Locks a mutex, recovering from poisoning (the maps stay consistent under every operation).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The text of an error and its sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// One address's slot: its live connection, if any. Dialing holds the slot's lock, so calls to
/// one server wait for a single dial while other servers are unaffected.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Connection>>>>;

/// Connection slots by address, shared by every channel of this process.
fn pool() -> &'static Mutex<BTreeMap<String, Slot>> {
    static POOL: OnceLock<Mutex<BTreeMap<String, Slot>>> = OnceLock::new();
    POOL.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// The live connection to `address`, dialing (again) if there is none or it has closed.
pub async fn connection(cc: &ExternalChaincode) -> Result<Arc<Connection>, ConnectError> {
    let address = cc.address.as_str();
    let slot = lock(pool()).entry(address.to_owned()).or_default().clone();
    let mut slot = slot.lock().await;
    if let Some(conn) = slot.as_ref().filter(|c| !c.is_closed()) {
        return Ok(conn.clone());
    }
    *slot = None;
    let conn = Connection::dial(address, cc.tls_ca_cert.as_deref(), cc.dial_timeout).await?;
    *slot = Some(conn.clone());
    Ok(conn)
}

/// Removes a transaction's route when its simulation ends, however it ends.
struct RouteGuard {
    routes: Routes,
    key: TxKey,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        lock(&self.routes).remove(&self.key);
    }
}

/// An open range or history iterator: encoded results not yet sent.
type Iterators = HashMap<String, VecDeque<Vec<u8>>>;

/// Simulates `inv` on the external chaincode `cc` as namespace `namespace` over `state`.
///
/// Never fails the peer: an unreachable server, a broken protocol, a disconnect or the
/// deadline all end as a status-500 result with an empty read-write set and a message saying
/// what happened. The chaincode cannot call other chaincodes (see [`execute_with_host`]).
pub async fn execute(
    cc: &ExternalChaincode,
    namespace: &str,
    inv: &Invocation,
    state: &dyn StateReader,
) -> SimulationResult {
    execute_stub(cc, ChaincodeStub::new(namespace, inv, state)).await
}

/// [`execute`] with `host` running the chaincodes `cc` calls (INVOKE_CHAINCODE).
pub async fn execute_with_host(
    cc: &ExternalChaincode,
    namespace: &str,
    inv: &Invocation,
    state: &dyn StateReader,
    host: &dyn ChaincodeHost,
) -> SimulationResult {
    execute_stub(
        cc,
        ChaincodeStub::new(namespace, inv, state).with_host(host),
    )
    .await
}

/// Runs `cc` in `stub` and builds the simulation result.
async fn execute_stub(cc: &ExternalChaincode, mut stub: ChaincodeStub<'_>) -> SimulationResult {
    match run(cc, &mut stub).await {
        Ok(response) => gridledger_chaincode::complete(stub, response),
        Err(message) => gridledger_chaincode::failed(message),
    }
}

/// Runs the external chaincode `cc` in `stub` — with the stub's namespace, arguments, channel
/// and tx id — recording what it reads and writes there, and returns its response. This is
/// both a top-level simulation and a chaincode called by another one. `Err` says why the
/// chaincode did not complete (unreachable, deadline, protocol broken, disconnect).
///
/// A failure is logged at warn with the chaincode, its server's address, the channel, the tx
/// id and the reason: a chaincode that breaks the protocol, times out or hangs up is an
/// operator's problem to chase.
pub async fn run(
    cc: &ExternalChaincode,
    stub: &mut ChaincodeStub<'_>,
) -> Result<protos::Response, String> {
    let (namespace, channel, tx_id) = (
        stub.namespace().to_owned(),
        stub.channel_id().to_owned(),
        stub.tx_id().to_owned(),
    );
    run_unlogged(cc, stub).await.inspect_err(|reason| {
        tracing::warn!(chaincode = %namespace, address = %cc.address, channel = %channel,
            tx_id = %tx_id, reason = %reason, "external chaincode failed the transaction");
    })
}

/// [`run`] without the log line.
async fn run_unlogged(
    cc: &ExternalChaincode,
    stub: &mut ChaincodeStub<'_>,
) -> Result<protos::Response, String> {
    let deadline = Instant::now() + cc.execute_timeout;
    let conn = match tokio::time::timeout_at(deadline, connection(cc)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => {
            return Err(format!(
                "timed out after {:?} connecting to chaincode {} at {}",
                cc.execute_timeout,
                stub.namespace(),
                cc.address
            ));
        }
    };
    drive(&conn, stub, deadline, cc.execute_timeout).await
}

/// Runs one transaction on an established connection until COMPLETED, ERROR, disconnect or
/// `deadline`.
pub async fn execute_on(
    conn: &Connection,
    namespace: &str,
    inv: &Invocation,
    state: &dyn StateReader,
    deadline: Instant,
    timeout: Duration,
) -> SimulationResult {
    let mut stub = ChaincodeStub::new(namespace, inv, state);
    match drive(conn, &mut stub, deadline, timeout).await {
        Ok(response) => gridledger_chaincode::complete(stub, response),
        Err(message) => gridledger_chaincode::failed(message),
    }
}

/// Drives the transaction of `stub` on `conn`: sends TRANSACTION, answers the chaincode's
/// requests through the stub, and returns the COMPLETED response.
async fn drive(
    conn: &Connection,
    stub: &mut ChaincodeStub<'_>,
    deadline: Instant,
    timeout: Duration,
) -> Result<protos::Response, String> {
    let namespace = stub.namespace().to_owned();
    let tx_id = stub.tx_id().to_owned();
    let key = (stub.channel_id().to_owned(), tx_id.clone());
    let (queue, mut rx) = mpsc::channel(PER_TX_QUEUE);
    {
        let mut routes = lock(&conn.routes);
        if routes.contains_key(&key) {
            return Err(format!(
                "transaction {tx_id} is already running on chaincode {namespace}"
            ));
        }
        if routes.len() >= MAX_IN_FLIGHT {
            return Err(format!(
                "chaincode {namespace} already runs {MAX_IN_FLIGHT} transactions; try again later"
            ));
        }
        routes.insert(key.clone(), queue);
    }
    // The stream may have ended between the pool's check and the route's insertion; the reader
    // has then cleared the routes already and would never close this queue.
    if conn.is_closed() {
        lock(&conn.routes).remove(&key);
        return Err(format!(
            "chaincode {namespace} disconnected before transaction {tx_id} started"
        ));
    }
    let _guard = RouteGuard {
        routes: conn.routes.clone(),
        key: key.clone(),
    };
    let is_init = stub.is_init();
    let input = protos::ChaincodeInput {
        args: stub.get_args().to_vec(),
        decorations: Default::default(),
        is_init,
    };
    let transaction = ChaincodeMessage {
        // An initialization runs as INIT (the shim calls the chaincode's Init), everything else
        // as TRANSACTION.
        r#type: if is_init {
            Type::Init
        } else {
            Type::Transaction
        } as i32,
        timestamp: None,
        payload: input.encode_to_vec(),
        txid: tx_id.clone(),
        proposal: stub.signed_proposal().cloned(),
        chaincode_event: None,
        channel_id: key.0.clone(),
    };
    let timed_out =
        || format!("chaincode {namespace} did not complete transaction {tx_id} within {timeout:?}");
    let disconnected = || format!("chaincode {namespace} disconnected during transaction {tx_id}");
    match tokio::time::timeout_at(deadline, conn.outbound.send(transaction)).await {
        Err(_) => return Err(timed_out()),
        Ok(Err(_)) => return Err(disconnected()),
        Ok(Ok(())) => {}
    }
    let mut tx = TxState {
        stub,
        iterators: HashMap::new(),
        next_iterator: 0,
    };
    let mut received = 0usize;
    loop {
        let msg = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => return Err(timed_out()),
            Ok(None) => return Err(disconnected()),
            Ok(Some(msg)) => msg,
        };
        received = received.saturating_add(msg.payload.len());
        if received > MAX_TX_BYTES {
            return Err(format!(
                "chaincode {namespace} sent more than {MAX_TX_BYTES} bytes during transaction {tx_id}"
            ));
        }
        let answer = match Type::try_from(msg.r#type) {
            Ok(Type::Completed) => {
                let response = protos::Response::decode(msg.payload.as_slice()).map_err(|e| {
                    format!(
                        "chaincode {namespace} sent a COMPLETED whose payload is not a Response: {e}"
                    )
                })?;
                if let Some(event) = msg.chaincode_event.filter(|e| !e.event_name.is_empty()) {
                    // The name is non-empty, so recording cannot fail.
                    let _ = tx.stub.set_event(&event.event_name, &event.payload);
                }
                return Ok(response);
            }
            Ok(Type::Error) => {
                return Err(format!(
                    "chaincode {namespace} failed transaction {tx_id}: {}",
                    String::from_utf8_lossy(&msg.payload)
                ));
            }
            Ok(kind) if is_request(kind as i32) => tx.answer(kind, &msg),
            _ => {
                return Err(format!(
                    "chaincode {namespace} sent message type {} during transaction {tx_id}, which the shim protocol does not allow",
                    msg.r#type
                ));
            }
        };
        let reply = match answer {
            Ok(payload) => ChaincodeMessage {
                r#type: Type::Response as i32,
                payload,
                txid: msg.txid.clone(),
                channel_id: msg.channel_id.clone(),
                ..Default::default()
            },
            Err(text) => reply_error(&msg, &text),
        };
        match tokio::time::timeout_at(deadline, conn.outbound.send(reply)).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(_)) => return Err(disconnected()),
            Ok(Ok(())) => {}
        }
    }
}

/// An ERROR answer to `msg` carrying `text`, echoing its tx id and channel.
fn reply_error(msg: &ChaincodeMessage, text: &str) -> ChaincodeMessage {
    ChaincodeMessage {
        r#type: Type::Error as i32,
        payload: text.as_bytes().to_vec(),
        txid: msg.txid.clone(),
        channel_id: msg.channel_id.clone(),
        ..Default::default()
    }
}

/// The peer's side of one transaction: the recording stub and the open iterators.
struct TxState<'s, 'a> {
    stub: &'s mut ChaincodeStub<'a>,
    iterators: Iterators,
    next_iterator: u64,
}

/// Decodes a request payload or explains why it is not one.
fn decode<M: Message + Default>(payload: &[u8], what: &str) -> Result<M, String> {
    M::decode(payload).map_err(|e| format!("malformed {what} payload: {e}"))
}

impl TxState<'_, '_> {
    /// Answers one request: `Ok(payload)` for RESPONSE, `Err(text)` for ERROR.
    fn answer(&mut self, kind: Type, msg: &ChaincodeMessage) -> Result<Vec<u8>, String> {
        let payload = msg.payload.as_slice();
        match kind {
            Type::GetState => {
                let req: protos::GetState = decode(payload, "GetState")?;
                let value = if req.collection.is_empty() {
                    self.stub.get_state(&req.key)
                } else {
                    self.stub.get_private_data(&req.collection, &req.key)
                };
                Ok(value.map_err(|e| e.to_string())?.unwrap_or_default())
            }
            Type::GetPrivateDataHash => {
                let req: protos::GetState = decode(payload, "GetState")?;
                let hash = self
                    .stub
                    .get_private_data_hash(&req.collection, &req.key)
                    .map_err(|e| e.to_string())?;
                Ok(hash.unwrap_or_default())
            }
            Type::PutState => {
                let req: protos::PutState = decode(payload, "PutState")?;
                if req.collection.is_empty() {
                    self.stub.put_state(&req.key, &req.value)
                } else {
                    self.stub
                        .put_private_data(&req.collection, &req.key, &req.value)
                }
                .map_err(|e| e.to_string())?;
                Ok(Vec::new())
            }
            Type::DelState => {
                let req: protos::DelState = decode(payload, "DelState")?;
                if req.collection.is_empty() {
                    self.stub.del_state(&req.key)
                } else {
                    self.stub.del_private_data(&req.collection, &req.key)
                }
                .map_err(|e| e.to_string())?;
                Ok(Vec::new())
            }
            Type::PurgePrivateData => {
                let req: protos::DelState = decode(payload, "DelState")?;
                self.stub
                    .purge_private_data(&req.collection, &req.key)
                    .map_err(|e| e.to_string())?;
                Ok(Vec::new())
            }
            Type::GetStateByRange => {
                let req: protos::GetStateByRange = decode(payload, "GetStateByRange")?;
                if req.collection.is_empty() {
                    self.range(req)
                } else {
                    // Private range queries are not paginated (Fabric's rule).
                    let rows = self
                        .stub
                        .get_private_data_by_key_range(
                            &req.collection,
                            &req.start_key,
                            &req.end_key,
                        )
                        .map_err(|e| e.to_string())?;
                    let results = rows
                        .into_iter()
                        .map(|(key, value)| {
                            queryresult::Kv {
                                namespace: self.stub.namespace().to_owned(),
                                key,
                                value,
                            }
                            .encode_to_vec()
                        })
                        .collect();
                    self.open(results, None)
                }
            }
            Type::QueryStateNext => {
                let req: protos::QueryStateNext = decode(payload, "QueryStateNext")?;
                if !self.iterators.contains_key(&req.id) {
                    return Err(format!("no open query with id {:?}", req.id));
                }
                Ok(self.batch(req.id, None).encode_to_vec())
            }
            Type::QueryStateClose => {
                let req: protos::QueryStateClose = decode(payload, "QueryStateClose")?;
                self.iterators.remove(&req.id);
                Ok(protos::QueryResponse {
                    results: Vec::new(),
                    has_more: false,
                    id: req.id,
                    metadata: Vec::new(),
                }
                .encode_to_vec())
            }
            Type::GetHistoryForKey => {
                let req: protos::GetHistoryForKey = decode(payload, "GetHistoryForKey")?;
                let entries = self
                    .stub
                    .get_history_for_key(&req.key, MAX_HISTORY)
                    .map_err(|e| e.to_string())?;
                let results = entries
                    .into_iter()
                    .map(|mut m| {
                        // The Node shim dereferences the timestamp unconditionally.
                        m.timestamp
                            .get_or_insert_with(prost_types::Timestamp::default);
                        m.encode_to_vec()
                    })
                    .collect();
                self.open(results, None)
            }
            Type::GetQueryResult => Err("rich queries are not supported".into()),
            Type::InvokeChaincode => {
                let spec: protos::ChaincodeSpec = decode(payload, "ChaincodeSpec")?;
                self.invoke(msg, spec)
            }
            Type::GetStateMetadata => {
                let req: protos::GetStateMetadata = decode(payload, "GetStateMetadata")?;
                let metadata = if req.collection.is_empty() {
                    self.stub.get_state_metadata(&req.key)
                } else {
                    self.stub
                        .get_private_data_metadata(&req.collection, &req.key)
                }
                .map_err(|e| e.to_string())?;
                Ok(protos::StateMetadataResult {
                    entries: metadata
                        .into_iter()
                        .map(|(metakey, value)| protos::StateMetadata { metakey, value })
                        .collect(),
                }
                .encode_to_vec())
            }
            Type::PutStateMetadata => {
                let req: protos::PutStateMetadata = decode(payload, "PutStateMetadata")?;
                let entry = req
                    .metadata
                    .ok_or("PutStateMetadata carries no metadata entry")?;
                if req.collection.is_empty() {
                    self.stub
                        .set_state_metadata(&req.key, &entry.metakey, &entry.value)
                } else {
                    self.stub.set_private_data_metadata(
                        &req.collection,
                        &req.key,
                        &entry.metakey,
                        &entry.value,
                    )
                }
                .map_err(|e| e.to_string())?;
                Ok(Vec::new())
            }
            other => Err(format!(
                "message type {} is not supported by this peer",
                other.as_str_name()
            )),
        }
    }

    /// GET_STATE_BY_RANGE: scans (recording the range query), then serves batches. A
    /// paginated query (page size > 0) returns one page and a bookmark to resume from, with
    /// Fabric's rule that paginated queries are for read-only transactions.
    fn range(&mut self, req: protos::GetStateByRange) -> Result<Vec<u8>, String> {
        let page = if req.metadata.is_empty() {
            None
        } else {
            let meta: protos::QueryMetadata = decode(&req.metadata, "QueryMetadata")?;
            (meta.page_size > 0).then_some(meta)
        };
        let (rows, metadata) = match page {
            None => (
                self.stub
                    .get_state_by_key_range(&req.start_key, &req.end_key)
                    .map_err(|e| e.to_string())?,
                None,
            ),
            Some(meta) => {
                let (rows, metadata) = self
                    .stub
                    .get_state_by_key_range_with_pagination(
                        &req.start_key,
                        &req.end_key,
                        meta.page_size,
                        &meta.bookmark,
                    )
                    .map_err(|e| e.to_string())?;
                (rows, Some(metadata))
            }
        };
        let namespace = self.stub.namespace().to_owned();
        let results = rows
            .into_iter()
            .map(|(key, value)| {
                queryresult::Kv {
                    namespace: namespace.clone(),
                    key,
                    value,
                }
                .encode_to_vec()
            })
            .collect();
        self.open(results, metadata)
    }

    /// INVOKE_CHAINCODE: runs the chaincode `spec` names — `name` on this channel or
    /// `name/channel` — through the stub, and answers with the callee's COMPLETED message
    /// (its response inside), which is what the shims unpack.
    fn invoke(
        &mut self,
        msg: &ChaincodeMessage,
        spec: protos::ChaincodeSpec,
    ) -> Result<Vec<u8>, String> {
        let target = spec.chaincode_id.map(|id| id.name).unwrap_or_default();
        let (name, channel) = target.split_once('/').unwrap_or((target.as_str(), ""));
        let args = spec.input.map(|input| input.args).unwrap_or_default();
        let response = self
            .stub
            .invoke_chaincode(name, &args, channel)
            .map_err(|e| e.to_string())?;
        Ok(ChaincodeMessage {
            r#type: Type::Completed as i32,
            payload: response.encode_to_vec(),
            txid: msg.txid.clone(),
            channel_id: msg.channel_id.clone(),
            ..Default::default()
        }
        .encode_to_vec())
    }

    /// Opens an iterator over `results` and returns its first batch.
    fn open(
        &mut self,
        results: Vec<Vec<u8>>,
        metadata: Option<protos::QueryResponseMetadata>,
    ) -> Result<Vec<u8>, String> {
        if self.iterators.len() >= MAX_OPEN_ITERATORS {
            return Err(format!(
                "a transaction may hold at most {MAX_OPEN_ITERATORS} open queries; close some first"
            ));
        }
        self.next_iterator += 1;
        let id = format!("{}", self.next_iterator);
        self.iterators.insert(id.clone(), results.into());
        Ok(self.batch(id, metadata).encode_to_vec())
    }

    /// The next batch of iterator `id` (≤ [`MAX_BATCH`] results); an exhausted iterator stays
    /// open until QUERY_STATE_CLOSE, as the shim always sends it.
    fn batch(
        &mut self,
        id: String,
        metadata: Option<protos::QueryResponseMetadata>,
    ) -> protos::QueryResponse {
        let queue = self.iterators.entry(id.clone()).or_default();
        let take = queue.len().min(MAX_BATCH);
        let results = queue
            .drain(..take)
            .map(|result_bytes| protos::QueryResultBytes { result_bytes })
            .collect();
        protos::QueryResponse {
            results,
            has_more: !queue.is_empty(),
            id,
            metadata: metadata.map(|m| m.encode_to_vec()).unwrap_or_default(),
        }
    }
}

/// Runs [`execute`] from synchronous code on a thread of the Tokio runtime's blocking pool
/// (where the endorser simulates). Outside any runtime the simulation fails cleanly.
pub fn execute_blocking(
    cc: &ExternalChaincode,
    namespace: &str,
    inv: &Invocation,
    state: &dyn StateReader,
) -> SimulationResult {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(execute(cc, namespace, inv, state)),
        Err(_) => gridledger_chaincode::failed(format!(
            "chaincode {namespace} is external and needs the peer's async runtime"
        )),
    }
}

/// Answers `messages` — requests a chaincode sent during one transaction — through `stub`,
/// exactly as a running transaction does, without a connection: one `Ok(payload)` (the
/// RESPONSE payload) or `Err(text)` (the ERROR text) per message, in order. A message that is
/// not a request (COMPLETED, ERROR, REGISTER, an unknown type, …) gets an `Err` here; on a
/// connection it would end the transaction instead. Exists so the handling of untrusted
/// chaincode messages can be tested and fuzzed offline.
pub fn answer_requests(
    stub: &mut ChaincodeStub<'_>,
    messages: &[ChaincodeMessage],
) -> Vec<Result<Vec<u8>, String>> {
    let mut tx = TxState {
        stub,
        iterators: HashMap::new(),
        next_iterator: 0,
    };
    messages
        .iter()
        .map(|msg| match Type::try_from(msg.r#type) {
            Ok(kind) if is_request(kind as i32) => tx.answer(kind, msg),
            _ => Err(format!(
                "message type {} is not a request a chaincode may send during a transaction",
                msg.r#type
            )),
        })
        .collect()
}

/// [`execute_blocking`] with `host` running the chaincodes `cc` calls.
pub fn execute_blocking_with_host(
    cc: &ExternalChaincode,
    namespace: &str,
    inv: &Invocation,
    state: &dyn StateReader,
    host: &dyn ChaincodeHost,
) -> SimulationResult {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(execute_with_host(cc, namespace, inv, state, host)),
        Err(_) => gridledger_chaincode::failed(format!(
            "chaincode {namespace} is external and needs the peer's async runtime"
        )),
    }
}

/// Runs [`run`] from synchronous code, such as a chaincode calling this one (the caller may
/// itself be an external chaincode whose request is being answered inside the runtime). The
/// call runs on a scoped thread of its own, which blocks on the runtime's handle, so it never
/// nests inside the caller's runtime context; the caller's thread waits for it.
pub fn run_blocking(
    cc: &ExternalChaincode,
    stub: &mut ChaincodeStub<'_>,
) -> Result<protos::Response, String> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| {
        format!(
            "chaincode {} is external and needs the peer's async runtime",
            stub.namespace()
        )
    })?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| handle.block_on(run(cc, stub)))
            .join()
            .unwrap_or_else(|_| Err("the call to the external chaincode panicked".to_owned()))
    })
}
