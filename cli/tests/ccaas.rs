//! Chaincode-as-a-service with Fabric's own Node chaincode libraries: the asset contract in
//! `interop/node-chaincode` (fabric-contract-api + fabric-shim 2.5, unmodified) runs as a
//! chaincode server, `gridledger up --external-chaincode assets=…` makes every peer dial it,
//! and the Rust SDK drives it through the Gateway: submit and evaluate, chaincode events in the
//! committed block, range iteration and key history, a chaincode error surfacing as the
//! gateway's error, the client identity the contract sees, paginated range queries, key-level
//! endorsement set with the shim's `KeyEndorsementPolicy` (a change of the key endorsed only by
//! another org's peer is ENDORSEMENT_POLICY_FAILURE), `InvokeChaincode` into the built-in
//! `basic` chaincode (same channel; another channel is refused), private data in the client
//! org's implicit collection (transient value, hash on another org's peer, a key-level policy
//! set with `setPrivateDataValidationParameter`, purge), and a
//! chaincode server killed
//! and restarted (one clean failure, then the peer dials it again).
//!
//! Needs `node` and `npm` (CI has them); without them the test says so and does nothing.
//! `npm ci` runs when `node_modules` is missing. Every process is stopped on drop.

mod support;
use support::free_base_port;

use gridledger_identity::SigningIdentity;
use gridledger_proto::prost::Message;
use gridledger_proto::{common, protos};
use gridledger_sdk::{Contract, Gateway};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHANNEL: &str = "market";
const CHAINCODE: &str = "assets";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
/// `up` takes six ports (orderer0, three peers, orderer1, orderer2) and their operations
/// endpoints ten above; the chaincode the seventh, so seventeen in all.
const PORTS: u16 = 17;

fn tool_available(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn log_sink(path: &Path) -> (Stdio, Stdio) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open a log file in the test folder");
    let err = file.try_clone().expect("duplicate a log file handle");
    (Stdio::from(file), Stdio::from(err))
}

fn stop(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(POLL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn wait_listening(name: &str, addr: SocketAddr, child: &mut Child) {
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited during start-up ({status})");
        }
        assert!(Instant::now() < deadline, "{name} did not listen on {addr}");
        std::thread::sleep(POLL);
    }
}

/// The network folder, the chaincode server and `gridledger up`, stopped on drop.
struct Harness {
    dir: PathBuf,
    cc_dir: PathBuf,
    cc_addr: SocketAddr,
    chaincode: Option<Child>,
    up: Option<Child>,
}

impl Harness {
    fn start_chaincode(&mut self) {
        let (out, err) = log_sink(&self.dir.join("chaincode.log"));
        let mut child = Command::new("node")
            .arg(self.cc_dir.join("node_modules/fabric-shim/cli.js"))
            .args(["server", "--chaincode-address"])
            .arg(self.cc_addr.to_string())
            .args(["--chaincode-id", "assets_1.0:0000", "--module-path"])
            .arg(&self.cc_dir)
            .env("CORE_PEER_LOCALMSPID", "DSOMSP")
            .current_dir(&self.cc_dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start the Node chaincode server");
        wait_listening("the chaincode server", self.cc_addr, &mut child);
        self.chaincode = Some(child);
    }

    fn kill_chaincode(&mut self) {
        if let Some(mut child) = self.chaincode.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn print_logs(&self) {
        for name in [
            "chaincode.log",
            "up.log",
            "logs/peer0.dso.log",
            "logs/peer0.retailer.log",
        ] {
            let Ok(text) = std::fs::read_to_string(self.dir.join(name)) else {
                continue;
            };
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("----- {name}");
            for line in &lines[lines.len().saturating_sub(30)..] {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(mut up) = self.up.take() {
            stop(&mut up);
        }
        if let Some(mut cc) = self.chaincode.take() {
            stop(&mut cc);
        }
        if std::thread::panicking() {
            self.print_logs();
            eprintln!("[test] folder kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// User1 of `msp_id`, through its own peer, from `network.json`.
async fn gateway(dir: &Path, network: &serde_json::Value, msp_id: &str) -> Gateway {
    let org = network["organizations"]
        .as_array()
        .and_then(|orgs| orgs.iter().find(|o| o["mspId"] == msp_id))
        .unwrap_or_else(|| panic!("network.json has no {msp_id}"));
    let peer = &org["peers"][0];
    let user = org["users"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["name"] == "User1"))
        .expect("User1 in network.json");
    let path = |v: &serde_json::Value| dir.join(v.as_str().expect("a path"));
    let signer = SigningIdentity::load(msp_id, &path(&user["cert"]), &path(&user["key"]))
        .expect("load User1");
    let tls_ca = std::fs::read(path(&peer["tlsCaCert"])).expect("read the peer's TLS CA");
    Gateway::connect(
        peer["endpoint"].as_str().expect("endpoint"),
        &tls_ca,
        peer["serverName"].as_str().expect("serverName"),
        signer,
    )
    .await
    .expect("connect to the gateway")
    .with_timeout(CALL_TIMEOUT)
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("UTF-8 result")
}

/// The chaincode event of transaction `tx_id` in block `number`, read back through qscc.
async fn committed_event(gateway: &Gateway, number: u64, tx_id: &str) -> protos::ChaincodeEvent {
    let bytes = gateway
        .network(CHANNEL)
        .contract("qscc")
        .evaluate("GetBlockByNumber", &[CHANNEL, &number.to_string()])
        .await
        .expect("qscc GetBlockByNumber");
    let block = common::Block::decode(bytes.as_slice()).expect("a Block");
    for envelope in block.data.expect("block data").data {
        let envelope = common::Envelope::decode(envelope.as_slice()).expect("an Envelope");
        let payload = common::Payload::decode(envelope.payload.as_slice()).expect("a Payload");
        let header = payload.header.expect("a header");
        let channel_header = common::ChannelHeader::decode(header.channel_header.as_slice())
            .expect("a ChannelHeader");
        if channel_header.tx_id != tx_id {
            continue;
        }
        let tx = protos::Transaction::decode(payload.data.as_slice()).expect("a Transaction");
        let action = protos::ChaincodeActionPayload::decode(tx.actions[0].payload.as_slice())
            .expect("a ChaincodeActionPayload");
        let prp = protos::ProposalResponsePayload::decode(
            action
                .action
                .expect("an endorsed action")
                .proposal_response_payload
                .as_slice(),
        )
        .expect("a ProposalResponsePayload");
        let cc_action =
            protos::ChaincodeAction::decode(prp.extension.as_slice()).expect("a ChaincodeAction");
        return protos::ChaincodeEvent::decode(cc_action.events.as_slice())
            .expect("a ChaincodeEvent");
    }
    panic!("transaction {tx_id} is not in block {number}");
}

fn assets(gateway: &Gateway) -> Contract {
    gateway.network(CHANNEL).contract(CHAINCODE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_contract_runs_unmodified_as_an_external_chaincode_server() {
    if !tool_available("node") || !tool_available("npm") {
        eprintln!(
            "SKIPPED: `node` and `npm` are needed to run Fabric's Node chaincode (install Node.js 18+)"
        );
        return;
    }
    let cc_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop/node-chaincode");
    let cc_dir = cc_dir
        .canonicalize()
        .expect("interop/node-chaincode exists");
    if !cc_dir.join("node_modules/fabric-shim").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&cc_dir)
            .status()
            .expect("run npm ci");
        assert!(status.success(), "npm ci in {} failed", cc_dir.display());
    }
    let dir = std::env::temp_dir().join(format!("gridledger-ccaas-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test folder");
    let base = free_base_port(PORTS);
    let mut h = Harness {
        dir: dir.clone(),
        cc_dir,
        cc_addr: SocketAddr::from(([127, 0, 0, 1], base + 6)),
        chaincode: None,
        up: None,
    };
    h.start_chaincode();
    let (out, err) = log_sink(&dir.join("up.log"));
    let up = Command::new(env!("CARGO_BIN_EXE_gridledger"))
        .args(["up", "--dir"])
        .arg(&dir)
        .args(["--base-port", &base.to_string(), "--external-chaincode"])
        .arg(format!("{CHAINCODE}={}", h.cc_addr))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start gridledger up");
    let up = h.up.insert(up);
    let deadline = Instant::now() + START_TIMEOUT;
    let network: serde_json::Value = loop {
        if let Some(v) = std::fs::read(dir.join("network.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            break v;
        }
        if let Ok(Some(status)) = up.try_wait() {
            panic!("gridledger up exited before serving ({status})");
        }
        assert!(Instant::now() < deadline, "gridledger up did not serve");
        std::thread::sleep(POLL);
    };
    let dso = gateway(&dir, &network, "DSOMSP").await;
    let retailer = gateway(&dir, &network, "RetailerMSP").await;

    // Submit: the contract sees the client's MSP and sets an event.
    let proposal = assets(&dso)
        .proposal("CreateAsset", &["meter1", "100"])
        .expect("build a proposal");
    let tx = proposal.endorse().await.expect("endorse CreateAsset");
    let tx_id = tx.tx_id().to_owned();
    let created: serde_json::Value =
        serde_json::from_slice(tx.result()).expect("CreateAsset returns JSON");
    assert_eq!(created["owner"], "DSOMSP");
    let commit = tx.submit().await.expect("submit CreateAsset");
    let status = commit.status().await.expect("commit status");
    assert_eq!(status.code, protos::TxValidationCode::Valid as i32);
    let event = committed_event(&dso, status.block_number, &tx_id).await;
    assert_eq!(event.event_name, "AssetCreated");
    assert_eq!(event.chaincode_id, CHAINCODE);
    assert_eq!(event.tx_id, tx_id);

    // Evaluate on another org's peer, which dials the same chaincode server.
    let read = text(
        assets(&retailer)
            .evaluate("ReadAsset", &["meter1"])
            .await
            .expect("ReadAsset"),
    );
    assert!(read.contains("\"value\":\"100\""), "{read}");
    let who: serde_json::Value = serde_json::from_slice(
        &assets(&retailer)
            .evaluate("WhoAmI", &[])
            .await
            .expect("WhoAmI"),
    )
    .expect("JSON");
    assert_eq!(who["mspId"], "RetailerMSP");
    assert_eq!(who["channel"], CHANNEL);
    assert_eq!(who["peerMspId"], "DSOMSP");
    assert!(
        who["id"].as_str().unwrap_or_default().starts_with("x509::"),
        "{who}"
    );

    // A chaincode error is the gateway's error.
    let err = assets(&dso)
        .submit("CreateAsset", &["meter1", "5"])
        .await
        .expect_err("a second CreateAsset must fail");
    assert!(
        err.to_string().contains("the asset meter1 already exists"),
        "{err}"
    );

    // Writes, range iteration and history.
    assets(&dso)
        .submit("UpdateAsset", &["meter1", "150"])
        .await
        .expect("UpdateAsset");
    assets(&retailer)
        .submit("CreateAsset", &["meter2", "7"])
        .await
        .expect("CreateAsset meter2");
    // On the retailer's peer, which has committed both (the DSO's may lag a block).
    let all: serde_json::Value = serde_json::from_slice(
        &assets(&retailer)
            .evaluate("GetAllAssets", &[])
            .await
            .expect("GetAllAssets"),
    )
    .expect("JSON");
    let keys: Vec<&str> = all
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|a| a["key"].as_str())
        .collect();
    assert_eq!(keys, ["meter1", "meter2"]);
    assert_eq!(all[1]["value"]["owner"], "RetailerMSP");
    let history: serde_json::Value = serde_json::from_slice(
        &assets(&dso)
            .evaluate("GetHistory", &["meter1"])
            .await
            .expect("GetHistory"),
    )
    .expect("JSON");
    assert_eq!(history.as_array().map(Vec::len), Some(2), "{history}");
    assert_eq!(history[1]["txId"], tx_id.as_str(), "newest first");

    // Paginated range queries, in an evaluation (paginated queries are for read-only
    // transactions).
    let page: serde_json::Value = serde_json::from_slice(
        &assets(&retailer)
            .evaluate("GetAssetsPage", &["1", ""])
            .await
            .expect("GetAssetsPage"),
    )
    .expect("JSON");
    assert_eq!(page["keys"], serde_json::json!(["meter1"]), "{page}");
    assert_eq!(page["fetched"], 1, "{page}");
    assert_eq!(page["bookmark"], "meter2", "{page}");
    let page: serde_json::Value = serde_json::from_slice(
        &assets(&retailer)
            .evaluate("GetAssetsPage", &["1", "meter2"])
            .await
            .expect("GetAssetsPage from the bookmark"),
    )
    .expect("JSON");
    assert_eq!(page["keys"], serde_json::json!(["meter2"]), "{page}");
    assert_eq!(page["bookmark"], "", "{page}");

    // Key-level endorsement: the DSO makes meter1 need a DSO peer's endorsement.
    assets(&dso)
        .submit("SetOwnerOrgs", &["meter1", "DSOMSP"])
        .await
        .expect("SetOwnerOrgs");
    let owners = text(
        assets(&dso)
            .evaluate("GetOwnerOrgs", &["meter1"])
            .await
            .expect("GetOwnerOrgs"),
    );
    assert_eq!(owners, r#"["DSOMSP"]"#);
    // The retailer's gateway endorses on the retailer's peer, which satisfies the chaincode's
    // policy but not meter1's own: the transaction is invalid and changes nothing.
    let update = assets(&retailer)
        .proposal("UpdateAsset", &["meter1", "999"])
        .expect("build a proposal")
        .endorse()
        .await
        .expect("endorse UpdateAsset");
    let status = update
        .submit()
        .await
        .expect("submit UpdateAsset")
        .status()
        .await
        .expect("commit status");
    assert_eq!(
        status.code,
        protos::TxValidationCode::EndorsementPolicyFailure as i32
    );
    assets(&dso)
        .submit("UpdateAsset", &["meter1", "175"])
        .await
        .expect("the owner's peer may change meter1");
    let read = text(
        assets(&dso)
            .evaluate("ReadAsset", &["meter1"])
            .await
            .expect("ReadAsset"),
    );
    assert!(read.contains("\"value\":\"175\""), "{read}");
    // meter2 has no key-level policy: the retailer still changes it alone.
    assets(&retailer)
        .submit("UpdateAsset", &["meter2", "8"])
        .await
        .expect("UpdateAsset meter2");

    // InvokeChaincode: the Node contract writes through the built-in `basic` chaincode, whose
    // namespace the same transaction writes, and reads it back.
    let called: serde_json::Value = serde_json::from_slice(
        &assets(&dso)
            .submit(
                "CallChaincode",
                &[
                    "basic",
                    "",
                    r#"["CreateAsset","pv1","green","5","dso","300"]"#,
                ],
            )
            .await
            .expect("CallChaincode basic CreateAsset")
            .0,
    )
    .expect("JSON");
    assert_eq!(called["status"], 200, "{called}");
    let called: serde_json::Value = serde_json::from_slice(
        &assets(&dso)
            .evaluate("CallChaincode", &["basic", "", r#"["ReadAsset","pv1"]"#])
            .await
            .expect("CallChaincode basic ReadAsset"),
    )
    .expect("JSON");
    assert_eq!(called["status"], 200, "{called}");
    assert!(
        called["payload"]
            .as_str()
            .unwrap_or_default()
            .contains("\"Color\":\"green\""),
        "{called}"
    );
    let direct = text(
        dso.network(CHANNEL)
            .contract("basic")
            .evaluate("ReadAsset", &["pv1"])
            .await
            .expect("basic ReadAsset"),
    );
    assert!(direct.contains("green"), "{direct}");
    let err = assets(&dso)
        .evaluate(
            "CallChaincode",
            &["basic", "elsewhere", r#"["ReadAsset","pv1"]"#],
        )
        .await
        .expect_err("a channel this peer has not joined");
    assert!(err.to_string().contains("not joined"), "{err}");

    // Private data through the Node shim, in the client org's implicit collection: the value
    // comes in the transient map; another org's peer knows only its hash; a purge removes it.
    let secret = b"node-private-6d2e";
    let tx = assets(&dso)
        .proposal_with(
            vec![b"PutSecret".to_vec(), b"s1".to_vec()],
            std::collections::BTreeMap::from([("value".to_string(), secret.to_vec())]),
            vec!["DSOMSP".into()],
        )
        .expect("build a proposal")
        .endorse()
        .await
        .expect("endorse PutSecret");
    assert!(
        !tx.envelope()
            .encode_to_vec()
            .windows(secret.len())
            .any(|w| w == secret),
        "the private value must not be in the transaction"
    );
    let status = tx
        .submit()
        .await
        .expect("submit PutSecret")
        .status()
        .await
        .expect("commit status");
    assert_eq!(status.code, protos::TxValidationCode::Valid as i32);
    let read = text(
        assets(&dso)
            .evaluate("GetSecret", &["s1"])
            .await
            .expect("GetSecret"),
    );
    assert_eq!(read.as_bytes(), secret);
    let sum = Command::new("sh")
        .args(["-c", "printf '%s' \"$0\" | sha256sum", "node-private-6d2e"])
        .output()
        .expect("run sha256sum");
    let expected_hash = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_string();
    let deadline = Instant::now() + CALL_TIMEOUT;
    loop {
        let hash = assets(&retailer)
            .evaluate("GetSecretHash", &["DSOMSP", "s1"])
            .await
            .map(text)
            .map_err(|e| e.to_string());
        if hash.as_deref() == Ok(expected_hash.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "hash on Retailer's peer: {hash:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    // A key-level policy on a private key (setPrivateDataValidationParameter): once s2 needs
    // Retailer's peer, DSO's peer alone can no longer change it.
    let put_s2 = |value: &'static [u8]| {
        assets(&dso).proposal_with(
            vec![b"PutSecret".to_vec(), b"s2".to_vec()],
            std::collections::BTreeMap::from([("value".to_string(), value.to_vec())]),
            vec!["DSOMSP".into()],
        )
    };
    let status = put_s2(b"first")
        .expect("build a proposal")
        .endorse()
        .await
        .expect("endorse PutSecret s2")
        .submit()
        .await
        .expect("submit PutSecret s2")
        .status()
        .await
        .expect("commit status");
    assert_eq!(status.code, protos::TxValidationCode::Valid as i32);
    assets(&dso)
        .submit("SetSecretOwnerOrgs", &["s2", "RetailerMSP"])
        .await
        .expect("SetSecretOwnerOrgs");
    let owners = text(
        assets(&dso)
            .evaluate("GetSecretOwnerOrgs", &["s2"])
            .await
            .expect("GetSecretOwnerOrgs"),
    );
    assert_eq!(owners, r#"["RetailerMSP"]"#);
    let status = put_s2(b"second")
        .expect("build a proposal")
        .endorse()
        .await
        .expect("endorse PutSecret s2 again")
        .submit()
        .await
        .expect("submit PutSecret s2 again")
        .status()
        .await
        .expect("commit status");
    assert_eq!(
        status.code,
        protos::TxValidationCode::EndorsementPolicyFailure as i32
    );
    let read = text(
        assets(&dso)
            .evaluate("GetSecret", &["s2"])
            .await
            .expect("GetSecret s2"),
    );
    assert_eq!(read, "first");

    assets(&dso)
        .submit("PurgeSecret", &["s1"])
        .await
        .expect("PurgeSecret");
    let read = text(
        assets(&dso)
            .evaluate("GetSecret", &["s1"])
            .await
            .expect("GetSecret after the purge"),
    );
    assert_eq!(read, "");

    // The chaincode dies: one clean failure, then the restarted server is dialled again.
    h.kill_chaincode();
    let err = assets(&dso)
        .evaluate("ReadAsset", &["meter1"])
        .await
        .expect_err("no chaincode server");
    assert!(!err.to_string().is_empty());
    h.start_chaincode();
    let read = text(
        assets(&dso)
            .evaluate("ReadAsset", &["meter1"])
            .await
            .expect("ReadAsset after the restart"),
    );
    assert!(read.contains("\"value\":\"175\""), "{read}");
}
