//! Whole-network integration tests with real processes: each test starts `gridledger up` (or
//! the six nodes itself) on free loopback ports in a temporary folder, drives it through the
//! Rust SDK with the users `up` lists in `network.json`, and reads every peer's ledger through
//! `qscc`. They check execute–order–validate end to end: one org's endorsement committed
//! identically on all three peers, MVCC conflicts, duplicate tx ids, tampered envelopes
//! (refused by the ordering service's Writers check, as Fabric's orderer refuses them, so they
//! never reach a block), endorsements that miss the policy, a peer killed with `kill -9` in the
//! middle of commits, and a restart of `up` on the same folder — and that the load generator
//! (`gridledger bench gateway`) runs every workload against `up`: energy-trade, and
//! basic-update, basic-read and basic-create over preloaded keys.
//!
//! Every process a test starts is owned by a [`TestNetwork`], which stops it on drop (SIGTERM,
//! then SIGKILL), so a failing test leaves nothing running; on failure it prints the tail of
//! each node's log and keeps the folder for inspection. Every wait is bounded.

mod support;
use support::free_base_port;

use gridledger_identity::SigningIdentity;
use gridledger_proto::prost::Message;
use gridledger_proto::{common, msp, protos};
use gridledger_sdk::{Contract, Gateway, SdkError, Signer, commit_status};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CHANNEL: &str = "market";
const CHAINCODE: &str = "basic";
/// The three member organizations, in `up`'s port order (base + 1, + 2, + 3).
const ORGS: [&str; 3] = ["DSOMSP", "RetailerMSP", "CommunityMSP"];
/// The nodes `up` starts, in port order (base, base + 1, …): orderer0, the three peers, then
/// orderer1 and orderer2 (the channel's three Raft consenters).
const NODES: [&str; 6] = [
    "orderer0",
    "peer0.dso",
    "peer0.retailer",
    "peer0.community",
    "orderer1",
    "orderer2",
];
/// How long `up` or a node may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopped process may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long peers may take to reach a height, or a transaction to appear in a block.
const LEDGER_TIMEOUT: Duration = Duration::from_secs(30);
/// The deadline of each SDK call.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How often waits poll.
const POLL: Duration = Duration::from_millis(50);

const VALID: i32 = protos::TxValidationCode::Valid as i32;
const DUPLICATE_TXID: i32 = protos::TxValidationCode::DuplicateTxid as i32;
const ENDORSEMENT_POLICY_FAILURE: i32 = protos::TxValidationCode::EndorsementPolicyFailure as i32;
const MVCC_READ_CONFLICT: i32 = protos::TxValidationCode::MvccReadConflict as i32;
/// gRPC ABORTED, the gateway's code for a transaction the orderer refused with a 4xx status.
const ABORTED: i32 = 10;

// ---------------------------------------------------------------------------------------------
// Harness: processes, ports, network.json
// ---------------------------------------------------------------------------------------------

/// One member organization as `network.json` describes it: its peer and its User1.
struct OrgInfo {
    msp_id: String,
    endpoint: String,
    tls_ca: Vec<u8>,
    server_name: String,
    user_cert: PathBuf,
    user_key: PathBuf,
}

/// A network in a temporary folder and every process the test started for it.
struct TestNetwork {
    dir: PathBuf,
    base_port: u16,
    /// The running `gridledger up`, when the network runs under it.
    up: Option<Child>,
    /// Nodes the test started itself (`orderer start` / `peer start`), by name.
    nodes: Vec<(String, Child)>,
    orgs: Vec<OrgInfo>,
}

/// Sends `signal` (a `kill` option such as `-TERM`) to a process.
fn signal(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status();
}

/// Asks a process to stop with SIGTERM, waits for it, and kills it when it does not stop.
fn stop_process(name: &str, child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    signal(child, "-TERM");
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
            _ => {
                eprintln!("[test] {name} did not stop within {STOP_TIMEOUT:?}; killing it");
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
        }
    }
}

/// A log file opened for appending, as a child's stdout and stderr.
fn log_sink(path: &Path) -> (Stdio, Stdio) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open a log file in the test folder");
    let err = file.try_clone().expect("duplicate a log file handle");
    (Stdio::from(file), Stdio::from(err))
}

/// Waits until something accepts connections on `addr`; fails when `child` exits first.
fn wait_listening(name: &str, addr: SocketAddr, child: &mut Child) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited during start-up ({status})");
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not serve on {addr} within {START_TIMEOUT:?}"
        );
        std::thread::sleep(POLL);
    }
}

fn json_str<'a>(value: &'a serde_json::Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("network.json: {what} is not a string: {value}"))
}

/// The member organizations in `network.json`, with paths resolved against `dir`.
fn parse_network_json(dir: &Path, bytes: &[u8]) -> Option<Vec<OrgInfo>> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let orgs = value["organizations"].as_array()?;
    let mut out = Vec::new();
    for org in orgs {
        let msp_id = json_str(&org["mspId"], "mspId").to_owned();
        let peer = &org["peers"][0];
        let user = org["users"]
            .as_array()?
            .iter()
            .find(|u| u["name"] == "User1")?;
        let tls_ca_path = dir.join(json_str(&peer["tlsCaCert"], "tlsCaCert"));
        out.push(OrgInfo {
            endpoint: json_str(&peer["endpoint"], "endpoint").to_owned(),
            server_name: json_str(&peer["serverName"], "serverName").to_owned(),
            tls_ca: std::fs::read(&tls_ca_path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", tls_ca_path.display())),
            user_cert: dir.join(json_str(&user["cert"], "user cert")),
            user_key: dir.join(json_str(&user["key"], "user key")),
            msp_id,
        });
    }
    Some(out)
}

impl TestNetwork {
    /// A fresh folder and free ports, with `gridledger up` running on them.
    fn up(name: &str) -> TestNetwork {
        let dir =
            std::env::temp_dir().join(format!("gridledger-network-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test folder");
        support::keep_panic_messages_in(&dir);
        let mut net = TestNetwork {
            dir,
            base_port: free_base_port(16),
            up: None,
            nodes: Vec::new(),
            orgs: Vec::new(),
        };
        net.start_up();
        net
    }

    /// Starts `gridledger up` on the folder and waits for its `network.json`.
    fn start_up(&mut self) {
        assert!(self.up.is_none(), "up is already running");
        let network_json = self.dir.join("network.json");
        // `up` rewrites it once every node serves; a stale copy must not count.
        let _ = std::fs::remove_file(&network_json);
        let (out, err) = log_sink(&self.dir.join("up.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_gridledger"))
            .arg("up")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--base-port")
            .arg(self.base_port.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start gridledger up");
        let up = self.up.insert(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let orgs = std::fs::read(&network_json)
                .ok()
                .and_then(|bytes| parse_network_json(&self.dir, &bytes));
            if let Some(orgs) = orgs {
                self.orgs = orgs;
                return;
            }
            if let Ok(Some(status)) = up.try_wait() {
                panic!("gridledger up exited before writing network.json ({status})");
            }
            assert!(
                Instant::now() < deadline,
                "gridledger up wrote no network.json within {START_TIMEOUT:?}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// Stops `gridledger up` (and so every node it started) with SIGTERM.
    fn stop_up(&mut self) {
        let mut up = self.up.take().expect("up is running");
        stop_process("gridledger up", &mut up);
        let status = up.wait().expect("reap gridledger up");
        assert!(status.success(), "gridledger up stopped with {status}");
    }

    fn node_addr(&self, name: &str) -> SocketAddr {
        let index = NODES
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("unknown node {name}"));
        SocketAddr::from(([127, 0, 0, 1], self.base_port + index as u16))
    }

    /// Starts one node from the config `up` wrote (it keeps its ledger) and waits until it
    /// serves. The node stops when its standard input closes, so it never outlives the test.
    fn start_node(&mut self, name: &str) {
        let (kind, file) = if name.starts_with("orderer") {
            ("orderer", "orderer.toml")
        } else {
            ("peer", "peer.toml")
        };
        let config = self.dir.join("nodes").join(name).join(file);
        let (out, err) = log_sink(&self.dir.join("logs").join(format!("{name}.log")));
        let mut child = Command::new(env!("CARGO_BIN_EXE_gridledger"))
            .args([kind, "start", "--config"])
            .arg(&config)
            .arg("--exit-on-stdin-close")
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let addr = self.node_addr(name);
        wait_listening(name, addr, &mut child);
        self.nodes.push((name.to_owned(), child));
    }

    /// `kill -9` of a node the test started, and waits until it is gone.
    fn kill_node(&mut self, name: &str) {
        let index = self
            .nodes
            .iter()
            .position(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} was not started by the test"));
        let (_, mut child) = self.nodes.remove(index);
        signal(&child, "-KILL");
        let status = child.wait().expect("reap a killed node");
        assert!(!status.success(), "{name} should have died of SIGKILL");
    }

    fn org(&self, msp_id: &str) -> &OrgInfo {
        self.orgs
            .iter()
            .find(|o| o.msp_id == msp_id)
            .unwrap_or_else(|| panic!("network.json has no organization {msp_id}"))
    }

    /// User1 of `msp_id`, connected to its own organization's peer.
    async fn gateway(&self, msp_id: &str) -> Gateway {
        let org = self.org(msp_id);
        let signer = SigningIdentity::load(msp_id, &org.user_cert, &org.user_key)
            .unwrap_or_else(|e| panic!("loading User1 of {msp_id}: {e}"));
        Gateway::connect(&org.endpoint, &org.tls_ca, &org.server_name, signer)
            .await
            .unwrap_or_else(|e| panic!("connecting User1 of {msp_id}: {e}"))
            .with_timeout(CALL_TIMEOUT)
    }

    /// One gateway per organization, each to its own peer, in [`ORGS`] order.
    /// A gateway to `msp_id`'s peer as its user `user` (a prosumer or the Admin, from the
    /// crypto material `up` generated).
    async fn gateway_as(&self, msp_id: &str, user: &str) -> Gateway {
        let org = self.org(msp_id);
        let base = self
            .dir
            .join(format!("crypto/organizations/{msp_id}/users/{user}/msp"));
        let signer = SigningIdentity::load(
            msp_id,
            &base.join("signcerts/cert.pem"),
            &base.join("keystore/key.pem"),
        )
        .unwrap_or_else(|e| panic!("loading {user} of {msp_id}: {e}"));
        Gateway::connect(&org.endpoint, &org.tls_ca, &org.server_name, signer)
            .await
            .unwrap_or_else(|e| panic!("connecting {user} of {msp_id}: {e}"))
    }

    async fn gateways(&self) -> Vec<Gateway> {
        let mut out = Vec::new();
        for msp_id in ORGS {
            out.push(self.gateway(msp_id).await);
        }
        out
    }

    fn print_logs(&self) {
        let mut files = vec![self.dir.join("up.log")];
        files.extend(
            NODES
                .iter()
                .map(|n| self.dir.join("logs").join(format!("{n}.log"))),
        );
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(25)..];
            eprintln!("----- {} (last {} lines)", file.display(), tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        for (name, child) in self.nodes.iter_mut() {
            stop_process(name, child);
        }
        self.nodes.clear();
        if let Some(mut up) = self.up.take() {
            stop_process("gridledger up", &mut up);
        }
        if std::thread::panicking() {
            self.print_logs();
            eprintln!("[test] network folder kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ledger reads through qscc, and envelope surgery
// ---------------------------------------------------------------------------------------------

fn basic(gateway: &Gateway) -> Contract {
    gateway.network(CHANNEL).contract(CHAINCODE)
}

fn qscc(gateway: &Gateway) -> Contract {
    gateway.network(CHANNEL).contract("qscc")
}

/// Waits until every peer has committed block `number`: a client of another organization
/// may endorse on it next, and a peer that is a block behind would not see its writes yet.
async fn wait_committed_everywhere(net: &TestNetwork, number: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for gateway in net.gateways().await {
        while chain_info(&gateway).await.height <= number {
            assert!(
                Instant::now() < deadline,
                "a peer did not commit block {number}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn chain_info(gateway: &Gateway) -> common::BlockchainInfo {
    let bytes = qscc(gateway)
        .evaluate("GetChainInfo", &[CHANNEL])
        .await
        .unwrap_or_else(|e| panic!("qscc GetChainInfo: {e}"));
    common::BlockchainInfo::decode(bytes.as_slice()).expect("GetChainInfo returns a BlockchainInfo")
}

async fn block_bytes(gateway: &Gateway, number: u64) -> Vec<u8> {
    qscc(gateway)
        .evaluate("GetBlockByNumber", &[CHANNEL, &number.to_string()])
        .await
        .unwrap_or_else(|e| panic!("qscc GetBlockByNumber {number}: {e}"))
}

fn decode_block(bytes: &[u8]) -> common::Block {
    common::Block::decode(bytes).expect("GetBlockByNumber returns a Block")
}

/// The block's TRANSACTIONS_FILTER: one validation code per transaction.
fn transactions_filter(block: &common::Block) -> Vec<u8> {
    block
        .metadata
        .as_ref()
        .and_then(|m| {
            m.metadata
                .get(common::BlockMetadataIndex::TransactionsFilter as usize)
                .cloned()
        })
        .unwrap_or_default()
}

/// The tx id in an envelope's channel header.
fn envelope_tx_id(envelope_bytes: &[u8]) -> Option<String> {
    let envelope = common::Envelope::decode(envelope_bytes).ok()?;
    let payload = common::Payload::decode(envelope.payload.as_slice()).ok()?;
    let header = payload.header?;
    let channel_header = common::ChannelHeader::decode(header.channel_header.as_slice()).ok()?;
    Some(channel_header.tx_id)
}

/// The block a transaction was found in, and its recorded validation code.
#[derive(Debug)]
struct Found {
    block: u64,
    code: i32,
}

/// Scans blocks from `from` on (waiting for new ones) for the first envelope carrying
/// `tx_id`; `None` when none appeared within `timeout`.
async fn find_transaction(
    gateway: &Gateway,
    from: u64,
    tx_id: &str,
    timeout: Duration,
) -> Option<Found> {
    let deadline = Instant::now() + timeout;
    let mut next = from;
    loop {
        let height = chain_info(gateway).await.height;
        while next < height {
            let block = decode_block(&block_bytes(gateway, next).await);
            let data = block
                .data
                .as_ref()
                .map(|d| d.data.as_slice())
                .unwrap_or(&[]);
            let filter = transactions_filter(&block);
            if let Some(index) = data
                .iter()
                .position(|e| envelope_tx_id(e).as_deref() == Some(tx_id))
            {
                let code = *filter
                    .get(index)
                    .unwrap_or_else(|| panic!("block {next} has no filter entry for tx {index}"));
                return Some(Found {
                    block: next,
                    code: i32::from(code),
                });
            }
            next += 1;
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until every peer reports the same height, at least `at_least`; returns each peer's
/// chain info in the gateways' order.
async fn converge(gateways: &[Gateway], at_least: u64) -> Vec<common::BlockchainInfo> {
    let deadline = Instant::now() + LEDGER_TIMEOUT;
    loop {
        let mut infos = Vec::new();
        for gateway in gateways {
            infos.push(chain_info(gateway).await);
        }
        let first = infos[0].height;
        if first >= at_least && infos.iter().all(|i| i.height == first) {
            return infos;
        }
        assert!(
            Instant::now() < deadline,
            "peers did not converge on a height ≥ {at_least} within {LEDGER_TIMEOUT:?}: {:?}",
            infos.iter().map(|i| i.height).collect::<Vec<_>>()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits for a submitted transaction's commit status.
async fn wait_status(gateway: &Gateway, tx_id: &str) -> gridledger_sdk::CommitStatus {
    commit_status(gateway, CHANNEL, tx_id)
        .await
        .unwrap_or_else(|e| panic!("commit status of {tx_id}: {e}"))
}

/// The asset as `basic` stores it (compact JSON, fixed field order).
fn asset_json(id: &str, color: &str, size: u32, owner: &str, value: u32) -> String {
    format!(
        r#"{{"AppraisedValue":{value},"Color":"{color}","ID":"{id}","Owner":"{owner}","Size":{size}}}"#
    )
}

/// The envelope's `ChaincodeActionPayload`, decoded through Payload → Transaction.
fn action_payload(envelope: &common::Envelope) -> protos::ChaincodeActionPayload {
    let payload = common::Payload::decode(envelope.payload.as_slice()).expect("payload");
    let tx = protos::Transaction::decode(payload.data.as_slice()).expect("transaction");
    let action = tx.actions.first().expect("one action");
    protos::ChaincodeActionPayload::decode(action.payload.as_slice()).expect("action payload")
}

/// The envelope with its ChaincodeActionPayload replaced and the payload re-signed by
/// `signer` (the client may sign its own payload again). Header bytes are kept verbatim.
fn with_action_payload(
    envelope: &common::Envelope,
    action_payload: &protos::ChaincodeActionPayload,
    signer: &dyn Signer,
) -> common::Envelope {
    let mut payload = common::Payload::decode(envelope.payload.as_slice()).expect("payload");
    let mut tx = protos::Transaction::decode(payload.data.as_slice()).expect("transaction");
    tx.actions[0].payload = action_payload.encode_to_vec();
    payload.data = tx.encode_to_vec();
    let payload = payload.encode_to_vec();
    common::Envelope {
        signature: signer.sign(&payload).expect("the client signs"),
        payload,
    }
}

/// The MSP ids of an envelope's endorsers.
fn endorser_msp_ids(envelope: &common::Envelope) -> Vec<String> {
    action_payload(envelope)
        .action
        .expect("an endorsed action")
        .endorsements
        .iter()
        .map(|e| {
            msp::SerializedIdentity::decode(e.endorser.as_slice())
                .expect("endorser is a SerializedIdentity")
                .mspid
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_endorsed_by_one_org_commits_with_identical_blocks_on_all_three_peers() {
    let net = TestNetwork::up("identical");
    let retailer = net.gateway("RetailerMSP").await;

    let tx = basic(&retailer)
        .proposal(
            "CreateAsset",
            &["asset-identical", "blue", "5", "Alice", "300"],
        )
        .expect("proposal")
        .endorse()
        .await
        .unwrap_or_else(|e| panic!("endorse: {e}"));
    assert_eq!(
        endorser_msp_ids(tx.envelope()),
        vec!["RetailerMSP".to_owned()],
        "OutOf(1, …) through the retailer's gateway needs only the retailer's endorsement"
    );
    let commit = tx.submit().await.unwrap_or_else(|e| panic!("submit: {e}"));
    let status = commit
        .status()
        .await
        .unwrap_or_else(|e| panic!("status: {e}"));
    assert_eq!(status.code, VALID, "{status:?}");
    let block = status.block_number;

    let gateways = net.gateways().await;
    let infos = converge(&gateways, block + 1).await;
    for (msp_id, info) in ORGS.iter().zip(&infos) {
        assert_eq!(
            info.current_block_hash, infos[0].current_block_hash,
            "{msp_id}'s current block hash differs from DSOMSP's"
        );
        assert_eq!(
            info.previous_block_hash, infos[0].previous_block_hash,
            "{msp_id}'s previous block hash differs from DSOMSP's"
        );
    }

    let mut blocks = Vec::new();
    for gateway in &gateways {
        blocks.push(block_bytes(gateway, block).await);
    }
    for (msp_id, bytes) in ORGS.iter().zip(&blocks) {
        assert!(
            *bytes == blocks[0],
            "block {block} on {msp_id}'s peer differs from DSOMSP's"
        );
    }
    let decoded = decode_block(&blocks[0]);
    let data = decoded.data.as_ref().expect("block data");
    let index = data
        .data
        .iter()
        .position(|e| envelope_tx_id(e).as_deref() == Some(commit.tx_id()))
        .expect("the committed block holds the transaction");
    assert_eq!(transactions_filter(&decoded)[index], VALID as u8);
    // Nothing else was submitted, so the transaction's block is the last one.
    assert_eq!(infos[0].height, block + 1, "no other block was cut");
    let header = decoded.header.as_ref().expect("block header");
    assert_eq!(
        infos[0].current_block_hash,
        gridledger_proto::block_header_hash(header).to_vec(),
        "GetChainInfo's current hash is the hash of the last block's header"
    );

    let expected = asset_json("asset-identical", "blue", 5, "Alice", 300);
    for (msp_id, gateway) in ORGS.iter().zip(&gateways) {
        let asset = basic(gateway)
            .evaluate("ReadAsset", &["asset-identical"])
            .await
            .unwrap_or_else(|e| panic!("ReadAsset on {msp_id}'s peer: {e}"));
        assert_eq!(String::from_utf8_lossy(&asset), expected, "on {msp_id}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_updates_endorsed_on_the_same_version_commit_one_valid_one_mvcc_read_conflict() {
    let net = TestNetwork::up("mvcc");
    let retailer = net.gateway("RetailerMSP").await;
    let contract = basic(&retailer);
    contract
        .submit("CreateAsset", &["asset-mvcc", "blue", "5", "Alice", "300"])
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));

    // Both updates are simulated against the same committed version of the asset.
    let first = contract
        .proposal("UpdateAsset", &["asset-mvcc", "red", "6", "Bob", "400"])
        .expect("proposal");
    let second = contract
        .proposal("UpdateAsset", &["asset-mvcc", "green", "7", "Carol", "500"])
        .expect("proposal");
    let (first, second) = tokio::join!(first.endorse(), second.endorse());
    let first = first.unwrap_or_else(|e| panic!("endorse first: {e}"));
    let second = second.unwrap_or_else(|e| panic!("endorse second: {e}"));

    let first = first
        .submit()
        .await
        .unwrap_or_else(|e| panic!("submit first: {e}"));
    let second = second
        .submit()
        .await
        .unwrap_or_else(|e| panic!("submit second: {e}"));
    let first_status = first.status().await.expect("first status");
    let second_status = second.status().await.expect("second status");

    let mut codes = [first_status.code, second_status.code];
    codes.sort();
    assert_eq!(
        codes,
        [VALID, MVCC_READ_CONFLICT],
        "first {first_status:?}, second {second_status:?}"
    );
    let expected = if first_status.code == VALID {
        asset_json("asset-mvcc", "red", 6, "Bob", 400)
    } else {
        asset_json("asset-mvcc", "green", 7, "Carol", 500)
    };
    let asset = contract
        .evaluate("ReadAsset", &["asset-mvcc"])
        .await
        .expect("read");
    assert_eq!(
        String::from_utf8_lossy(&asset),
        expected,
        "only the VALID update is applied"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_tx_id_is_refused_at_endorsement_and_recorded_duplicate_txid_when_reordered() {
    let net = TestNetwork::up("duplicate");
    let retailer = net.gateway("RetailerMSP").await;
    let contract = basic(&retailer);

    let proposal = contract
        .proposal("CreateAsset", &["asset-dup", "blue", "5", "Alice", "300"])
        .expect("proposal");
    let tx_id = proposal.tx_id().to_owned();
    // A second prepared transaction for the same proposal, to carry the replayed envelope.
    let mut replay = proposal
        .endorse()
        .await
        .unwrap_or_else(|e| panic!("endorse: {e}"));
    let original = proposal
        .endorse()
        .await
        .unwrap_or_else(|e| panic!("endorse: {e}"));
    let envelope = original.envelope().clone();
    let status = original
        .submit()
        .await
        .unwrap_or_else(|e| panic!("submit: {e}"))
        .status()
        .await
        .expect("status");
    assert_eq!(status.code, VALID, "{status:?}");

    // The endorser refuses the same signed proposal once its tx id is in the ledger.
    match proposal.endorse().await {
        Ok(_) => panic!("endorsing a committed tx id again must be refused"),
        Err(e @ SdkError::Gateway { .. }) => {
            let text = e.to_string().to_lowercase();
            assert!(
                text.contains("duplicate") && text.contains(&tx_id),
                "the refusal should name the duplicate tx id: {e}"
            );
        }
        Err(e) => panic!("expected a gateway error, got {e}"),
    }

    // The same signed envelope ordered again is recorded DUPLICATE_TXID in a later block.
    let height = chain_info(&retailer).await.height;
    replay.set_envelope(envelope);
    replay
        .submit()
        .await
        .unwrap_or_else(|e| panic!("the ordering service accepts a replayed envelope: {e}"));
    let found = find_transaction(&retailer, height, &tx_id, LEDGER_TIMEOUT)
        .await
        .expect("the replayed envelope appears in a block");
    assert!(found.block > status.block_number, "{found:?} vs {status:?}");
    assert_eq!(found.code, DUPLICATE_TXID, "{found:?}");

    let again = wait_status(&retailer, &tx_id).await;
    assert_eq!(
        again, status,
        "CommitStatus still reports the first, VALID, commit"
    );
    let asset = contract
        .evaluate("ReadAsset", &["asset-dup"])
        .await
        .expect("read");
    assert_eq!(
        String::from_utf8_lossy(&asset),
        asset_json("asset-dup", "blue", 5, "Alice", 300)
    );
}

/// Submits a tampered envelope and checks that the ordering service refuses it with
/// FORBIDDEN, reported by the gateway as ABORTED with the orderer's detail.
async fn submit_refused_by_orderer(
    mut tx: gridledger_sdk::Transaction,
    envelope: common::Envelope,
) {
    let tx_id = tx.tx_id().to_owned();
    tx.set_envelope(envelope);
    match tx.submit().await {
        Ok(_) => panic!("the ordering service accepted tampered envelope {tx_id}"),
        Err(SdkError::Gateway {
            code,
            message,
            details,
        }) => {
            assert_eq!(i32::from(code), ABORTED, "{code:?}: {message}");
            assert!(
                details
                    .iter()
                    .any(|d| d.msp_id == "OrdererMSP" && d.message.contains("status=403")),
                "the orderer's FORBIDDEN is in the details: {message} {details:?}"
            );
        }
        Err(e) => panic!("expected a gateway error, got {e}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_envelope_is_refused_by_the_ordering_service_and_never_committed() {
    let net = TestNetwork::up("tampered");
    let retailer = net.gateway("RetailerMSP").await;
    let contract = basic(&retailer);
    let height = chain_info(&retailer).await.height;

    // One byte of the client's signature changed: the last DER byte is the low byte of S, so
    // the signature still parses but no longer verifies.
    let tx = contract
        .proposal(
            "CreateAsset",
            &["asset-badsig", "blue", "5", "Alice", "300"],
        )
        .expect("proposal")
        .endorse()
        .await
        .unwrap_or_else(|e| panic!("endorse: {e}"));
    let bad_signature = tx.tx_id().to_owned();
    let mut envelope = tx.envelope().clone();
    *envelope.signature.last_mut().expect("a signature") ^= 0x01;
    submit_refused_by_orderer(tx, envelope).await;

    // One byte of the signed payload changed (the asset's colour in the proposal payload,
    // so everything still decodes), signature left as it was.
    let tx = contract
        .proposal(
            "CreateAsset",
            &["asset-badpayload", "tampercolour", "5", "Alice", "300"],
        )
        .expect("proposal")
        .endorse()
        .await
        .unwrap_or_else(|e| panic!("endorse: {e}"));
    let bad_payload = tx.tx_id().to_owned();
    let mut envelope = tx.envelope().clone();
    let at = envelope
        .payload
        .windows(b"tampercolour".len())
        .position(|w| w == b"tampercolour")
        .expect("the colour is in the payload");
    envelope.payload[at] = b'T';
    assert!(common::Payload::decode(envelope.payload.as_slice()).is_ok());
    submit_refused_by_orderer(tx, envelope).await;

    // Nothing of either reached a block: a transaction submitted afterwards commits, and no
    // block up to it holds the tampered tx ids.
    let (_, marker) = contract
        .submit("CreateAsset", &["asset-marker", "red", "6", "Bob", "400"])
        .await
        .unwrap_or_else(|e| panic!("a later transaction commits: {e}"));
    for number in height..=marker {
        let block = decode_block(&block_bytes(&retailer, number).await);
        for envelope in block.data.iter().flat_map(|d| d.data.iter()) {
            let tx_id = envelope_tx_id(envelope).unwrap_or_default();
            assert!(
                tx_id != bad_signature && tx_id != bad_payload,
                "tampered transaction {tx_id} is in block {number}"
            );
        }
    }
    for id in ["asset-badsig", "asset-badpayload"] {
        let exists = contract
            .evaluate("AssetExists", &[id])
            .await
            .expect("AssetExists");
        assert_eq!(exists, b"false", "{id} must not have been created");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn endorsements_that_do_not_satisfy_the_policy_commit_as_endorsement_policy_failure() {
    let net = TestNetwork::up("policy");
    let retailer = net.gateway("RetailerMSP").await;
    let contract = basic(&retailer);
    let client = retailer.signer();

    // No endorsements at all.
    let mut stripped = contract
        .proposal(
            "CreateAsset",
            &["asset-unendorsed", "blue", "5", "Alice", "300"],
        )
        .expect("proposal")
        .endorse()
        .await
        .unwrap_or_else(|e| panic!("endorse: {e}"));
    let mut cap = action_payload(stripped.envelope());
    cap.action
        .as_mut()
        .expect("endorsed action")
        .endorsements
        .clear();
    let envelope = with_action_payload(stripped.envelope(), &cap, client);
    stripped.set_envelope(envelope);

    // One endorsement, by the client itself: a valid signature from an identity that is not a
    // peer of any organization.
    let mut forged = contract
        .proposal(
            "CreateAsset",
            &["asset-self-endorsed", "red", "6", "Bob", "400"],
        )
        .expect("proposal")
        .endorse()
        .await
        .unwrap_or_else(|e| panic!("endorse: {e}"));
    let mut cap = action_payload(forged.envelope());
    let action = cap.action.as_mut().expect("endorsed action");
    let endorser = client.serialized_identity();
    let mut signed = action.proposal_response_payload.clone();
    signed.extend_from_slice(&endorser);
    action.endorsements = vec![protos::Endorsement {
        signature: client.sign(&signed).expect("the client signs"),
        endorser,
    }];
    let envelope = with_action_payload(forged.envelope(), &cap, client);
    forged.set_envelope(envelope);

    let stripped = stripped
        .submit()
        .await
        .unwrap_or_else(|e| panic!("submit without endorsements: {e}"));
    let forged = forged
        .submit()
        .await
        .unwrap_or_else(|e| panic!("submit with the client's own endorsement: {e}"));
    for commit in [&stripped, &forged] {
        let status = commit.status().await.expect("status");
        assert_eq!(
            status.code,
            ENDORSEMENT_POLICY_FAILURE,
            "tx {}: {status:?}",
            commit.tx_id()
        );
    }
    for id in ["asset-unendorsed", "asset-self-endorsed"] {
        let exists = contract
            .evaluate("AssetExists", &[id])
            .await
            .expect("AssetExists");
        assert_eq!(exists, b"false", "{id} must not have been created");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_killed_in_the_middle_of_commits_catches_up_to_the_same_state() {
    let mut net = TestNetwork::up("kill9");
    // `up` only creates the network; the test runs the six nodes itself so it can kill one.
    net.stop_up();
    for node in NODES {
        net.start_node(node);
    }
    let retailer = net.gateway("RetailerMSP").await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..6 {
        let contract = basic(&retailer);
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut created = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let id = format!("stream-{worker}-{}", created.len());
                contract
                    .submit("CreateAsset", &[&id, "yellow", "1", "Dora", "10"])
                    .await
                    .map_err(|e| format!("{id}: {e}"))?;
                created.push(id);
            }
            Ok::<Vec<String>, String>(created)
        }));
    }

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed_at = chain_info(&retailer).await.height;
    net.kill_node("peer0.community");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let restarted_at = chain_info(&retailer).await.height;
    net.start_node("peer0.community");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);

    let mut created = Vec::new();
    for worker in workers {
        let ids = tokio::time::timeout(LEDGER_TIMEOUT, worker)
            .await
            .expect("a submitter finishes its last transaction in time")
            .expect("a submitter task does not panic")
            .unwrap_or_else(|e| panic!("every submission commits VALID: {e}"));
        created.extend(ids);
    }
    assert!(
        restarted_at > killed_at,
        "blocks must have been committed while peer0.community was down ({killed_at} → {restarted_at})"
    );

    let height = chain_info(&retailer).await.height;
    let gateways = net.gateways().await;
    let infos = converge(&gateways, height).await;
    eprintln!(
        "[test] {} transactions committed VALID; peer0.community was down from height {killed_at} \
         to {restarted_at}; all peers at {}",
        created.len(),
        infos[0].height
    );
    for (msp_id, info) in ORGS.iter().zip(&infos) {
        assert_eq!(
            info.current_block_hash, infos[0].current_block_hash,
            "{msp_id}'s current block hash differs after catch-up"
        );
    }
    // Same blocks, byte for byte, including each peer's validation codes.
    for number in 0..infos[0].height {
        let reference = block_bytes(&gateways[0], number).await;
        for (msp_id, gateway) in ORGS.iter().zip(&gateways).skip(1) {
            assert!(
                block_bytes(gateway, number).await == reference,
                "block {number} on {msp_id}'s peer differs from DSOMSP's"
            );
        }
    }
    let mut states = Vec::new();
    for gateway in &gateways {
        states.push(
            basic(gateway)
                .evaluate("GetAllAssets", &[])
                .await
                .expect("GetAllAssets"),
        );
    }
    for (msp_id, state) in ORGS.iter().zip(&states) {
        assert!(
            *state == states[0],
            "{msp_id}'s world state differs from DSOMSP's"
        );
    }
    let assets: Vec<serde_json::Value> =
        serde_json::from_slice(&states[0]).expect("GetAllAssets returns a JSON array");
    for id in &created {
        assert!(
            assets.iter().any(|a| a["ID"] == id.as_str()),
            "{id} was committed VALID but is missing from the world state"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn restarting_up_on_the_same_dir_keeps_the_ledger() {
    let mut net = TestNetwork::up("restart");
    let retailer = net.gateway("RetailerMSP").await;
    let (_, block) = basic(&retailer)
        .submit("CreateAsset", &["asset-kept", "blue", "5", "Alice", "300"])
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    let before = converge(&net.gateways().await, block + 1).await;
    drop(retailer);

    net.stop_up();
    net.start_up();

    let gateways = net.gateways().await;
    let expected = asset_json("asset-kept", "blue", 5, "Alice", 300);
    for ((msp_id, gateway), old) in ORGS.iter().zip(&gateways).zip(&before) {
        let info = chain_info(gateway).await;
        assert!(
            info.height >= old.height,
            "{msp_id}'s height went back from {} to {}",
            old.height,
            info.height
        );
        let asset = basic(gateway)
            .evaluate("ReadAsset", &["asset-kept"])
            .await
            .unwrap_or_else(|e| panic!("ReadAsset on {msp_id}'s peer after restart: {e}"));
        assert_eq!(String::from_utf8_lossy(&asset), expected, "on {msp_id}");
    }
    // The restarted network extends the same chain.
    let (_, next) = basic(&gateways[1])
        .submit("CreateAsset", &["asset-after", "red", "6", "Bob", "400"])
        .await
        .unwrap_or_else(|e| panic!("create after restart: {e}"));
    assert!(
        next >= before[1].height,
        "new block {next} reuses a number below the old height"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dso_certifies_energy_trades_on_its_grid_model_and_its_endorsement_is_required() {
    let net = TestNetwork::up("energy");
    let admin = net.gateway_as("RetailerMSP", "Admin").await;
    let buyer = net.gateway_as("RetailerMSP", "Prosumer-R002").await;
    let seller = net.gateway_as("CommunityMSP", "Prosumer-C001").await;
    let energy = |g: &Gateway| g.network(CHANNEL).contract("energy");
    // A quiet delivery period (so the verdicts do not depend on the time of day the test runs).
    let period = support::quiet_period();
    let p = period.to_string();

    submit_agreed(
        &energy(&admin),
        "IssuePayment",
        &["RetailerMSP:POD-R002", "1000000"],
    )
    .await
    .expect("the retailer's admin issues payment to its customer");
    // POD-C001 is at the far end of a lateral (bus 32), POD-R002 next to the substation (bus 1).
    let (_, offered) = submit_agreed(&energy(&seller), "PostOffer", &["o1", &p, "2000000", "20"])
        .await
        .expect("the prosumer offers energy");
    // The buyer's peer endorses next: it must have the offer.
    wait_committed_everywhere(&net, offered).await;
    let small = submit_agreed(&energy(&buyer), "AcceptOffer", &["t1", "o1", &p, "10000"])
        .await
        .expect("a 40 kW trade is feasible and commits");
    eprintln!(
        "[test] small trade in block {}: {}",
        small.1,
        String::from_utf8_lossy(&small.0)
    );

    // 7.6 MW back from the end of the lateral: the DSO's power flow refuses it, and the
    // client hears why, from the DSO.
    let refused = submit_agreed(&energy(&buyer), "AcceptOffer", &["t2", "o1", &p, "1900000"])
        .await
        .expect_err("the DSO does not certify an infeasible trade");
    let text = refused.to_string();
    assert!(
        text.contains("DSOMSP"),
        "the refusal comes from the DSO: {text}"
    );
    assert!(text.contains("not feasible on the DSO's grid"), "{text}");
    assert!(
        text.contains("overvoltage") || text.contains("overcurrent"),
        "the violated limit is named: {text}"
    );

    // A trade endorsed by the buyer's organization alone lacks the DSO's endorsement: every
    // peer marks it ENDORSEMENT_POLICY_FAILURE.
    let tx = energy(&buyer)
        .proposal_with(
            ["AcceptOffer", "t3", "o1", &p, "10000"]
                .iter()
                .map(|a| a.as_bytes().to_vec())
                .collect(),
            std::collections::BTreeMap::new(),
            vec!["RetailerMSP".to_string()],
        )
        .expect("build the proposal")
        .endorse()
        .await
        .expect("the retailer's peer endorses");
    let commit = tx.submit().await.expect("submit");
    let tx_id = commit.tx_id().to_owned();
    let status = commit.status().await.expect("commit status");
    assert_eq!(
        status.code,
        protos::TxValidationCode::EndorsementPolicyFailure as i32,
        "{status:?}"
    );
    for g in net.gateways().await {
        let on_peer = wait_status(&g, &tx_id).await;
        assert_eq!(
            on_peer.code,
            protos::TxValidationCode::EndorsementPolicyFailure as i32
        );
    }
}

/// `contract.submit(function, args)`, endorsed again while the endorsing peers disagree because
/// one of them has not committed the latest block yet (the Gateway's "ProposalResponsePayloads
/// do not match"), as a client would.
async fn submit_agreed(
    contract: &Contract,
    function: &str,
    args: &[&str],
) -> Result<(Vec<u8>, u64), SdkError> {
    let mut attempts = 0;
    loop {
        match contract.submit(function, args).await {
            Err(e) if attempts < 20 && e.to_string().contains("do not match") => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// Accepts `energy_wh` of offer `offer` for `period` as `buyer` under trade id `id`, endorsing
/// again after an MVCC conflict; `Ok(true)` once VALID, `Ok(false)` when the DSO refuses to
/// certify it, `Err` for anything else.
async fn accept_until_decided(
    buyer: &Gateway,
    id: &str,
    offer: &str,
    period: &str,
    energy_wh: &str,
) -> Result<bool, String> {
    let contract = buyer.network(CHANNEL).contract("energy");
    for _ in 0..20 {
        let endorsed = contract
            .proposal("AcceptOffer", &[id, offer, period, energy_wh])
            .map_err(|e| e.to_string())?
            .endorse()
            .await;
        let tx = match endorsed {
            Ok(tx) => tx,
            Err(e) if e.to_string().contains("not feasible on the DSO's grid") => return Ok(false),
            // The endorsing peers had not all committed the latest block: endorse again.
            Err(e) if e.to_string().contains("do not match") => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        let status = tx
            .submit()
            .await
            .map_err(|e| e.to_string())?
            .status()
            .await
            .map_err(|e| e.to_string())?;
        if status.is_valid() {
            return Ok(true);
        }
        if status.code != protos::TxValidationCode::MvccReadConflict as i32 {
            return Err(format!("trade {id} committed as {status:?}"));
        }
    }
    Err(format!("trade {id} kept conflicting"))
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_trades_near_the_feeder_limit_commit_only_a_feasible_set() {
    let net = TestNetwork::up("energy-limit");
    let admin_r = net.gateway_as("RetailerMSP", "Admin").await;
    let admin_c = net.gateway_as("CommunityMSP", "Admin").await;
    let sellers = [
        net.gateway_as("CommunityMSP", "Prosumer-C001").await,
        net.gateway_as("RetailerMSP", "Prosumer-R001").await,
    ];
    let buyers = [
        (
            "RetailerMSP:POD-R002",
            net.gateway_as("RetailerMSP", "Prosumer-R002").await,
        ),
        (
            "CommunityMSP:POD-C002",
            net.gateway_as("CommunityMSP", "Prosumer-C002").await,
        ),
    ];
    let period = support::quiet_period();
    let p = period.to_string();
    for (account, admin) in [
        ("RetailerMSP:POD-R002", &admin_r),
        ("CommunityMSP:POD-C002", &admin_c),
    ] {
        submit_agreed(
            &admin.network(CHANNEL).contract("energy"),
            "IssuePayment",
            &[account, "100000000"],
        )
        .await
        .expect("payment issued");
    }
    // Two far-end sellers (buses 32 and 17) each offer 6 MWh; twelve trades of 150 kWh (600 kW
    // for the quarter hour) towards buses 1 and 24 push reverse power up both laterals until
    // the DSO stops certifying.
    let mut last_block = 0;
    for (i, seller) in sellers.iter().enumerate() {
        let (_, block) = submit_agreed(
            &seller.network(CHANNEL).contract("energy"),
            "PostOffer",
            &[&format!("o{i}"), &p, "6000000", "15"],
        )
        .await
        .expect("offer posted");
        last_block = last_block.max(block);
    }
    wait_committed_everywhere(&net, last_block).await;
    let mut tasks = Vec::new();
    for (b, (_, buyer)) in buyers.iter().enumerate() {
        for (o, _) in sellers.iter().enumerate() {
            for n in 0..3 {
                let buyer = buyer.clone();
                let p = p.clone();
                let id = format!("t{b}{o}{n}");
                tasks.push(tokio::spawn(async move {
                    let outcome =
                        accept_until_decided(&buyer, &id, &format!("o{o}"), &p, "150000").await;
                    (id, outcome)
                }));
            }
        }
    }
    let mut committed = Vec::new();
    let mut refused = 0;
    for task in tasks {
        let (id, outcome) = task.await.expect("trade task");
        match outcome.unwrap_or_else(|e| panic!("{e}")) {
            true => committed.push(id),
            false => refused += 1,
        }
    }
    eprintln!(
        "[test] {} trades committed, {refused} refused by the DSO",
        committed.len()
    );
    assert!(!committed.is_empty(), "some trades fit on the feeder");
    assert!(
        refused > 0,
        "the trades were meant to reach the feeder's limit"
    );

    // Recomputed from the ledger with the DSO's own model, the committed set is feasible.
    let dso_config =
        gridledger_peer::config::PeerConfig::load(&net.dir.join("nodes/peer0.dso/peer.toml"))
            .expect("the DSO peer's config");
    let feasibility = dso_config.feasibility.expect("the DSO checks feasibility");
    let feeder = gridledger_grid::Feeder::from_json(
        &std::fs::read(&feasibility.feeder).expect("read the feeder"),
    )
    .expect("the feeder");
    let dso_check = gridledger_peer::feasibility::FeasibilityCheck::load(feasibility.clone())
        .expect("the DSO's check");
    let scale = dso_check.load_scale(period as i64);
    let reader = &buyers[0].1;
    let mut trades = Vec::new();
    for id in &committed {
        let bytes = reader
            .network(CHANNEL)
            .contract("energy")
            .evaluate("GetTrade", &[id, &p])
            .await
            .expect("a committed trade");
        let trade: serde_json::Value = serde_json::from_slice(&bytes).expect("trade JSON");
        let bus = |pod: &serde_json::Value| {
            dso_check
                .bus_of(pod.as_str().expect("pod"))
                .expect("a POD the DSO knows")
        };
        trades.push(gridledger_grid::Trade {
            seller_bus: bus(&trade["seller_pod"]),
            buyer_bus: bus(&trade["buyer_pod"]),
            kw: trade["energy_wh"].as_f64().expect("energy") * 4.0 / 1000.0,
        });
    }
    let verdict = gridledger_grid::check(
        &feeder,
        scale,
        &trades,
        gridledger_grid::PowerFlowSettings::default(),
    )
    .expect("the power flow converges");
    assert!(
        verdict.feasible,
        "the committed trades overload the feeder: {:?}",
        verdict.first_blocking()
    );
}

#[test]
fn bench_energy_trade_runs_against_up() {
    let (net, _) = support::UpNetwork::start("bench-energy");
    let network = net.network_json();
    let out = support::ok(&[
        "bench",
        "gateway",
        "--network",
        &network,
        "--workload",
        "energy-trade",
        "--seconds",
        "2",
        "--concurrency",
        "2",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("the report is not one JSON object ({e}): {out}"));
    eprintln!("[test] energy-trade report: {report}");
    assert_eq!(report["workload"], "energy-trade");
    for key in ["tps", "p50_ms", "p95_ms", "p99_ms"] {
        assert!(report[key].is_f64(), "{key} missing or not a number");
    }
    // Every client buys as its own prosumer from its own offers: trades commit VALID, none
    // MVCC-conflicts, and the DSO certifies them all.
    let codes = report["codes"].as_object().expect("validation code counts");
    let valid = codes.get("VALID").and_then(|v| v.as_u64()).unwrap_or(0);
    assert!(valid > 0, "no trade committed VALID: {report}");
    assert_eq!(codes.len(), 1, "trades committed invalid: {codes:?}");
    assert_eq!(report["committed"].as_u64(), Some(valid));
    assert_eq!(report["dso_refused"].as_u64(), Some(0), "{report}");
    let energy = &report["energy"];
    assert_eq!(energy["buyers"].as_array().map(Vec::len), Some(2));
    assert_eq!(energy["trade_wh"].as_u64(), Some(100));
    assert_eq!(energy["offers_posted"].as_u64(), Some(2 * 16));

    // Asking for more clients than there are prosumers says so.
    let too_many = support::gridledger(&[
        "bench",
        "gateway",
        "--network",
        &network,
        "--workload",
        "energy-trade",
        "--seconds",
        "1",
        "--concurrency",
        "1000",
    ]);
    assert!(!too_many.status.success());
    let err = support::stderr(&too_many);
    assert!(err.contains("its own buyer"), "{err}");
}

/// `gridledger bench gateway ARGS --json` against `network`, parsed; its stderr (progress)
/// is returned too.
fn bench_json(network: &str, args: &[&str]) -> (serde_json::Value, String) {
    let mut all = vec!["bench", "gateway", "--network", network];
    all.extend_from_slice(args);
    all.push("--json");
    let out = support::gridledger(&all);
    let (stdout, stderr) = (support::stdout(&out), support::stderr(&out));
    assert!(
        out.status.success(),
        "gridledger {all:?} failed:\n{stdout}{stderr}"
    );
    let report = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the report is not one JSON object ({e}): {stdout}"));
    (report, stderr)
}

#[test]
fn bench_basic_update_read_and_create_run_against_up() {
    let (net, _) = support::UpNetwork::start("bench-basic");
    let network = net.network_json();
    let common = ["--keys", "2000", "--seconds", "2", "--concurrency", "8"];

    // basic-update preloads the 2,000 assets, then transfers random ones.
    let (update, progress) = bench_json(
        &network,
        &[&["--workload", "basic-update"][..], &common[..]].concat(),
    );
    eprintln!("[test] basic-update report: {update}");
    assert!(
        progress.contains("preload"),
        "no preload progress: {progress}"
    );
    assert_eq!(update["workload"], "basic-update");
    let keys = &update["keys"];
    assert_eq!(keys["keys"].as_u64(), Some(2000));
    assert_eq!(keys["prefix"], "bench-n2000-");
    assert_eq!(keys["already_present"], false);
    assert_eq!(keys["transactions"].as_u64(), Some(2), "{keys}");
    let committed = update["committed"].as_u64().expect("committed");
    assert!(committed > 0, "nothing committed: {update}");
    let codes = update["codes"].as_object().expect("validation code counts");
    for (code, _) in codes {
        assert!(
            code == "VALID" || code == "MVCC_READ_CONFLICT",
            "unexpected validation code {code}: {update}"
        );
    }
    let count = |code: &str| codes.get(code).and_then(|v| v.as_u64()).unwrap_or(0);
    assert_eq!(count("VALID") + count("MVCC_READ_CONFLICT"), committed);
    let rate = update["conflict_rate"]
        .as_f64()
        .expect("conflict_rate is reported");
    let expected = count("MVCC_READ_CONFLICT") as f64 / committed as f64;
    assert!((rate - expected).abs() < 1e-12, "{rate} != {expected}");
    assert!(
        update["errors"].as_object().is_some_and(|e| e.is_empty()),
        "{update}"
    );

    // basic-read finds the set already there and evaluates random keys.
    let (read, progress) = bench_json(
        &network,
        &[&["--workload", "basic-read"][..], &common[..]].concat(),
    );
    eprintln!("[test] basic-read report: {read}");
    assert!(progress.contains("already there"), "{progress}");
    assert_eq!(read["keys"]["already_present"], true);
    assert_eq!(read["keys"]["transactions"].as_u64(), Some(0));
    for key in ["tps", "p50_ms", "p95_ms", "p99_ms"] {
        assert!(read[key].is_f64(), "{key} missing or not a number: {read}");
    }
    assert!(read["tps"].as_f64().is_some_and(|tps| tps > 0.0), "{read}");
    assert!(read["evaluated"].as_u64().is_some_and(|n| n > 0), "{read}");
    assert_eq!(read["committed"].as_u64(), Some(0));
    assert!(
        read["codes"].as_object().is_some_and(|c| c.is_empty()),
        "{read}"
    );
    assert!(
        read["note"]
            .as_str()
            .is_some_and(|n| n.contains("nothing is ordered"))
    );
    assert!(
        read["errors"].as_object().is_some_and(|e| e.is_empty()),
        "{read}"
    );

    // basic-create, briefly: the smoke every workload gets.
    let (create, _) = bench_json(
        &network,
        &[
            "--workload",
            "basic-create",
            "--seconds",
            "1",
            "--concurrency",
            "8",
        ],
    );
    eprintln!("[test] basic-create report: {create}");
    assert!(
        create["tps"].as_f64().is_some_and(|tps| tps > 0.0),
        "{create}"
    );
    assert_eq!(create["conflict_rate"].as_f64(), Some(0.0), "{create}");
    assert!(create["keys"].is_null());
}

/// `n` concurrent read-modify-writes of the asset `hot` through `contract`.
async fn concurrent_updates(
    contract: &Contract,
    n: usize,
) -> Vec<Result<(Vec<u8>, u64), SdkError>> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let contract = contract.clone();
        tasks.push(tokio::spawn(async move {
            let size = (i + 2).to_string();
            contract
                .submit("UpdateAsset", &["hot", "red", &size, "Bob", "200"])
                .await
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("update task"));
    }
    results
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotent_submissions_are_retried_after_mvcc_conflicts() {
    let net = TestNetwork::up("sdk-retry");
    let gateway = net.gateway("RetailerMSP").await;
    let basic = gateway.network(CHANNEL).contract(CHAINCODE);
    basic
        .submit("CreateAsset", &["hot", "blue", "1", "Alice", "100"])
        .await
        .expect("create the asset");
    // Without retries, concurrent updates of one key lose MVCC conflicts, and say so.
    let plain = concurrent_updates(&basic, 12).await;
    let conflicts = plain
        .iter()
        .filter(|r| matches!(r, Err(e) if e.is_mvcc_conflict()))
        .count();
    assert!(
        conflicts > 0,
        "12 concurrent updates of one key all committed: {plain:?}"
    );
    for r in &plain {
        if let Err(e) = r {
            assert!(e.is_mvcc_conflict(), "only MVCC conflicts expected: {e}");
            assert!(e.to_string().contains("MVCC_READ_CONFLICT"), "{e}");
        }
    }
    // Marked idempotent, every one of them commits after bounded retries.
    let retrying = basic
        .clone()
        .with_retry(gridledger_sdk::RetryPolicy::idempotent(40));
    for r in concurrent_updates(&retrying, 12).await {
        r.expect("an idempotent update commits after retries");
    }
}

/// `bench order` drives the ordering service of `gridledger up` directly and reports acks and
/// delivered envelopes (a smoke run for CI: nothing about speed is asserted).
#[test]
fn bench_order_runs_against_up() {
    let (net, _) = support::UpNetwork::start("bench-order");
    let out = support::ok(&[
        "bench",
        "order",
        "--network",
        &net.network_json(),
        "--seconds",
        "1",
        "--warmup-seconds",
        "0.5",
        "--concurrency",
        "4",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("the report is not one JSON object ({e}): {out}"));
    eprintln!("[test] order report: {report}");
    let acked = report["acked"].as_u64().expect("acked");
    assert!(acked > 0, "no envelope was acknowledged: {report}");
    let statuses = report["statuses"].as_object().expect("statuses");
    assert_eq!(
        statuses.keys().collect::<Vec<_>>(),
        ["SUCCESS"],
        "envelopes were refused: {report}"
    );
    assert!(
        report["delivered"].as_u64().is_some_and(|d| d > 0),
        "no envelope reached a delivered block: {report}"
    );
    assert_eq!(report["orderers"].as_array().map(Vec::len), Some(3));

    // `up` starts its nodes with glibc's malloc arenas bounded (docs/configuration.md).
    let marker = format!("{}/nodes/orderer0/", net.dir.display());
    let pids = std::process::Command::new("pgrep")
        .args(["-f", &marker])
        .output()
        .expect("run pgrep");
    let pid = String::from_utf8_lossy(&pids.stdout)
        .lines()
        .next()
        .expect("orderer0's process")
        .trim()
        .to_owned();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("orderer0's environment");
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|var| var == b"MALLOC_ARENA_MAX=2"),
        "orderer0 runs without MALLOC_ARENA_MAX=2"
    );
}

/// The asset `id`'s `Size` in a `ReadAsset` endorsement's response payload.
fn endorsed_size(response: &protos::ProposalResponse) -> i64 {
    let payload = &response.response.as_ref().expect("a response").payload;
    let asset: serde_json::Value = serde_json::from_slice(payload)
        .unwrap_or_else(|e| panic!("ReadAsset answered no asset ({e}): {response:?}"));
    asset["Size"].as_i64().expect("Size")
}

/// A gateway asks other organizations' peers to endorse at no lower a height than its own
/// ledger's (the `gridledger-min-ledger-height` request header): a peer that is behind waits
/// for the block before simulating, so both endorsements read the same versions. Without
/// the wait, the read below would answer the asset as it was before the update.
#[tokio::test(flavor = "multi_thread")]
async fn a_remote_endorser_waits_for_the_gateways_ledger_height_before_simulating() {
    let net = TestNetwork::up("min-height");
    let dso = net.gateway("DSOMSP").await;
    let basic = dso.network(CHANNEL).contract(CHAINCODE);
    basic
        .submit("CreateAsset", &["lagging", "blue", "1", "Alice", "100"])
        .await
        .expect("create the asset");
    let info = dso
        .network(CHANNEL)
        .contract("qscc")
        .evaluate("GetChainInfo", &[CHANNEL])
        .await
        .expect("chain info");
    let height = common::BlockchainInfo::decode(info.as_slice())
        .expect("BlockchainInfo")
        .height;

    let org = net.org("DSOMSP");
    let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{}", org.endpoint))
        .expect("endpoint")
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&org.tls_ca))
                .domain_name(org.server_name.clone()),
        )
        .expect("TLS config");
    let endorser =
        protos::endorser_client::EndorserClient::new(endpoint.connect().await.expect("connect"));
    let ask = |min_height: u64| {
        let mut endorser = endorser.clone();
        let proposal = basic.proposal("ReadAsset", &["lagging"]).expect("proposal");
        async move {
            let mut request = tonic::Request::new(proposal.signed_proposal().clone());
            request.metadata_mut().insert(
                "gridledger-min-ledger-height",
                tonic::metadata::MetadataValue::from(min_height),
            );
            endorser
                .process_proposal(request)
                .await
                .expect("ProcessProposal")
                .into_inner()
        }
    };

    // Asked for the next block's height, the peer answers only once the update is in it.
    let waiting = tokio::spawn(ask(height + 1));
    let retailer = net.gateway("RetailerMSP").await;
    retailer
        .network(CHANNEL)
        .contract(CHAINCODE)
        .submit("UpdateAsset", &["lagging", "blue", "2", "Alice", "100"])
        .await
        .expect("update the asset");
    let response = waiting.await.expect("the endorsement task");
    assert_eq!(
        endorsed_size(&response),
        2,
        "the endorsement did not wait for block {height}"
    );
    assert!(response.endorsement.is_some(), "{response:?}");

    // A height the channel does not reach soon is waited for only a bounded time: the peer
    // then endorses at the height it has.
    let response = ask(height + 1_000).await;
    assert_eq!(endorsed_size(&response), 2);
    assert!(response.endorsement.is_some(), "{response:?}");
}
