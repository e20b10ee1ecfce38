//! Fault tests of the three-orderer Raft cluster with real processes: `gridledger up` lays out
//! the network (crypto, channel, node configs) and is stopped, then the test starts every node
//! itself (three orderers, three peers) so it can `kill -9` and restart single orderers.
//! A steady load of CreateAsset transactions goes through the peers' Gateways while orderers
//! die; every transaction whose commit status was VALID must then be in the ledger of every
//! peer, and all peers must hold byte-identical blocks (the leader's block signature is part
//! of consensus, so every orderer writes the same metadata); after a leader kill every
//! orderer's Deliver must also serve the same bytes as every other, equal to the peers' blocks
//! except for the TRANSACTIONS_FILTER the peers fill in.
//!
//! Two tests make the orderers snapshot their Raft log every few blocks
//! (`[raft] snapshot_interval_blocks` in orderer.toml) so that a follower that was down, or
//! lost its channel folder, is behind every other orderer's compacted log and must catch up
//! by a Raft snapshot, pulling the blocks from the other orderers' Deliver.
//!
//! Which orderer leads is read from the orderers' logs ("raft leader changed … leader=N",
//! N being the consenter's position in the channel config, from 1). Every process is owned
//! by a [`Cluster`], which kills it on drop; on failure the logs' tails are printed and the
//! folder is kept. Every wait is bounded.

use gridledger_identity::SigningIdentity;
use gridledger_proto::prost::Message;
use gridledger_proto::{common, orderer, prost_types, protos};
use gridledger_sdk::{Gateway, commit_status};
use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::codegen::tokio_stream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

const CHANNEL: &str = "market";
const ORGS: [&str; 3] = ["DSOMSP", "RetailerMSP", "CommunityMSP"];
/// Nodes and their port offsets from the base port, as `up` lays them out.
const NODES: [(&str, u16); 6] = [
    ("orderer0", 0),
    ("peer0.dso", 1),
    ("peer0.retailer", 2),
    ("peer0.community", 3),
    ("orderer1", 4),
    ("orderer2", 5),
];
const ORDERERS: [&str; 3] = ["orderer0", "orderer1", "orderer2"];
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// A new leader must be known within this long (a few election timeouts of 1–2 s).
const ELECTION_TIMEOUT: Duration = Duration::from_secs(15);
const LEDGER_TIMEOUT: Duration = Duration::from_secs(60);
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

/// Six consecutive free loopback ports below the ephemeral range.
fn free_base_port() -> u16 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos() as u64
        ^ (u64::from(std::process::id()) << 20);
    for attempt in 0..500u64 {
        let base = 20_000 + ((seed.wrapping_add(attempt.wrapping_mul(7_919))) % 12_000) as u16;
        let listeners: Vec<_> = (0..6u16)
            .map_while(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if listeners.len() == 6 {
            return base;
        }
    }
    panic!("no six consecutive free loopback ports in 20000..32000");
}

fn signal(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status();
}

fn stop_process(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    signal(child, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
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

/// Strips ANSI colour sequences from a log line.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
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

struct Org {
    msp_id: String,
    endpoint: String,
    tls_ca: Vec<u8>,
    server_name: String,
    cert: PathBuf,
    key: PathBuf,
}

/// How the test reaches one orderer.
struct OrdererEndpoint {
    name: String,
    endpoint: String,
    tls_ca: Vec<u8>,
    server_name: String,
}

/// The network's folder and the processes the test runs.
struct Cluster {
    dir: PathBuf,
    base_port: u16,
    nodes: Vec<(String, Child)>,
    orgs: Vec<Org>,
    orderers: Vec<OrdererEndpoint>,
}

impl Cluster {
    /// Lays the network out with `gridledger up`, stops it, and starts all six nodes.
    fn start(name: &str) -> Cluster {
        Cluster::start_with(name, None)
    }

    /// [`Cluster::start`], the orderers snapshotting their Raft log every
    /// `snapshot_interval_blocks` blocks when given.
    fn start_with(name: &str, snapshot_interval_blocks: Option<u64>) -> Cluster {
        let dir =
            std::env::temp_dir().join(format!("gridledger-cluster-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test folder");
        let base_port = free_base_port();
        let (out, err) = log_sink(&dir.join("up.log"));
        let mut up = Command::new(env!("CARGO_BIN_EXE_gridledger"))
            .args(["up", "--dir"])
            .arg(&dir)
            .arg("--base-port")
            .arg(base_port.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start gridledger up");
        let deadline = Instant::now() + START_TIMEOUT;
        let network_json = dir.join("network.json");
        let json = loop {
            if let Ok(bytes) = std::fs::read(&network_json) {
                break bytes;
            }
            if let Ok(Some(status)) = up.try_wait() {
                panic!("gridledger up exited before writing network.json ({status})");
            }
            assert!(Instant::now() < deadline, "up wrote no network.json");
            std::thread::sleep(POLL);
        };
        stop_process(&mut up);
        let value: serde_json::Value = serde_json::from_slice(&json).expect("network.json");
        assert_eq!(
            value["orderers"].as_array().map(Vec::len),
            Some(3),
            "up lists three orderers"
        );
        let orgs = value["organizations"]
            .as_array()
            .expect("organizations")
            .iter()
            .map(|org| {
                let peer = &org["peers"][0];
                let user = &org["users"][0];
                let s = |v: &serde_json::Value| v.as_str().expect("string").to_owned();
                Org {
                    msp_id: s(&org["mspId"]),
                    endpoint: s(&peer["endpoint"]),
                    tls_ca: std::fs::read(dir.join(s(&peer["tlsCaCert"]))).expect("tls ca"),
                    server_name: s(&peer["serverName"]),
                    cert: dir.join(s(&user["cert"])),
                    key: dir.join(s(&user["key"])),
                }
            })
            .collect();
        let orderers = value["orderers"]
            .as_array()
            .expect("orderers")
            .iter()
            .map(|o| {
                let s = |v: &serde_json::Value| v.as_str().expect("string").to_owned();
                OrdererEndpoint {
                    name: s(&o["name"]),
                    endpoint: s(&o["endpoint"]),
                    tls_ca: std::fs::read(dir.join(s(&o["tlsCaCert"]))).expect("orderer tls ca"),
                    server_name: s(&o["serverName"]),
                }
            })
            .collect();
        if let Some(interval) = snapshot_interval_blocks {
            for name in ORDERERS {
                let path = dir.join("nodes").join(name).join("orderer.toml");
                let mut text = std::fs::read_to_string(&path).expect("orderer.toml");
                text.push_str(&format!(
                    "\n[raft]\nsnapshot_interval_blocks = {interval}\n"
                ));
                std::fs::write(&path, text).expect("write orderer.toml");
            }
        }
        let mut cluster = Cluster {
            dir,
            base_port,
            nodes: Vec::new(),
            orgs,
            orderers,
        };
        for (node, _) in NODES {
            cluster.start_node(node);
        }
        cluster
    }

    fn addr(&self, name: &str) -> SocketAddr {
        let offset = NODES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, o)| *o)
            .unwrap_or_else(|| panic!("unknown node {name}"));
        SocketAddr::from(([127, 0, 0, 1], self.base_port + offset))
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }

    fn start_node(&mut self, name: &str) {
        let (kind, file) = if name.starts_with("orderer") {
            ("orderer", "orderer.toml")
        } else {
            ("peer", "peer.toml")
        };
        let config = self.dir.join("nodes").join(name).join(file);
        let (out, err) = log_sink(&self.log_path(name));
        let mut child = Command::new(env!("CARGO_BIN_EXE_gridledger"))
            .args([kind, "start", "--config"])
            .arg(&config)
            .arg("--exit-on-stdin-close")
            .env("RUST_LOG", "info,gridledger_orderer::broadcast=debug")
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let addr = self.addr(name);
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{name} exited during start-up ({status})");
            }
            assert!(Instant::now() < deadline, "{name} did not serve on {addr}");
            std::thread::sleep(POLL);
        }
        self.nodes.push((name.to_owned(), child));
    }

    fn kill_node(&mut self, name: &str) {
        let index = self
            .nodes
            .iter()
            .position(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} is not running"));
        let (_, mut child) = self.nodes.remove(index);
        signal(&child, "-KILL");
        let status = child.wait().expect("reap a killed node");
        assert!(!status.success(), "{name} should have died of SIGKILL");
        eprintln!("[test] killed {name}");
    }

    /// Whether `name`'s log has a line containing `text`.
    fn logged(&self, name: &str, text: &str) -> bool {
        std::fs::read_to_string(self.log_path(name))
            .is_ok_and(|log| log.lines().map(plain).any(|l| l.contains(text)))
    }

    fn running(&self, name: &str) -> bool {
        self.nodes.iter().any(|(n, _)| n == name)
    }

    /// The leader a running orderer last logged (consenter position from 1), if any.
    fn logged_leader(&self, orderer: &str) -> Option<usize> {
        let text = std::fs::read_to_string(self.log_path(orderer)).ok()?;
        let line = text
            .lines()
            .rev()
            .map(plain)
            .find(|l| l.contains("raft leader changed") || l.contains("orderer listening"))?;
        if line.contains("orderer listening") {
            return None; // restarted since it last saw a leader
        }
        let value = line.split("leader=").nth(1)?.split_whitespace().next()?;
        value.parse::<usize>().ok().filter(|&l| l > 0)
    }

    /// Waits until every running orderer names the same running leader; returns its name.
    fn wait_leader(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let seen: BTreeSet<Option<usize>> = ORDERERS
                .iter()
                .filter(|o| self.running(o))
                .map(|o| self.logged_leader(o))
                .collect();
            if let [Some(id)] = seen.iter().copied().collect::<Vec<_>>()[..] {
                let name = ORDERERS[id - 1];
                if self.running(name) {
                    return name.to_owned();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader among the running orderers within {timeout:?}: {seen:?}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// The highest block number an orderer logged writing.
    fn orderer_tip(&self, orderer: &str) -> Option<u64> {
        let text = std::fs::read_to_string(self.log_path(orderer)).ok()?;
        text.lines()
            .rev()
            .map(plain)
            .find(|l| l.contains("block written"))
            .and_then(|l| {
                l.split("block=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
    }

    async fn gateway(&self, index: usize) -> Gateway {
        let org = &self.orgs[index];
        let signer = SigningIdentity::load(&org.msp_id, &org.cert, &org.key).expect("User1");
        Gateway::connect(&org.endpoint, &org.tls_ca, &org.server_name, signer)
            .await
            .expect("connect a gateway")
            .with_timeout(CALL_TIMEOUT)
    }

    /// Blocks `0..height` of the channel as `orderer`'s Deliver serves them (encoded),
    /// waiting for blocks it has not written yet; requested as the first organization's User1.
    async fn orderer_blocks(&self, orderer_name: &str, height: u64) -> Vec<Vec<u8>> {
        let o = self
            .orderers
            .iter()
            .find(|o| o.name == orderer_name)
            .unwrap_or_else(|| panic!("unknown orderer {orderer_name}"));
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&o.tls_ca))
            .domain_name(&o.server_name);
        let channel: Channel = Endpoint::from_shared(format!("https://{}", o.endpoint))
            .expect("endpoint")
            .tls_config(tls)
            .expect("tls config")
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect to {orderer_name}: {e:?}"));
        let org = &self.orgs[0];
        let signer = SigningIdentity::load(&org.msp_id, &org.cert, &org.key).expect("User1");
        let envelope = seek_envelope(&signer, 0, height - 1);
        let mut client = orderer::atomic_broadcast_client::AtomicBroadcastClient::new(channel)
            .max_decoding_message_size(100 * 1024 * 1024);
        let mut stream = tokio::time::timeout(
            CALL_TIMEOUT,
            client.deliver(tokio_stream::iter(vec![envelope])),
        )
        .await
        .unwrap_or_else(|_| panic!("{orderer_name} Deliver did not answer"))
        .unwrap_or_else(|e| panic!("{orderer_name} Deliver: {e}"))
        .into_inner();
        let mut blocks = Vec::new();
        while (blocks.len() as u64) < height {
            let response = tokio::time::timeout(LEDGER_TIMEOUT, stream.message())
                .await
                .unwrap_or_else(|_| panic!("{orderer_name} did not deliver block {}", blocks.len()))
                .unwrap_or_else(|e| panic!("{orderer_name} Deliver stream: {e}"))
                .unwrap_or_else(|| panic!("{orderer_name} ended Deliver early"));
            match response.r#type {
                Some(orderer::deliver_response::Type::Block(block)) => {
                    blocks.push(block.encode_to_vec());
                }
                other => panic!("{orderer_name} Deliver answered {other:?} before the blocks"),
            }
        }
        blocks
    }

    /// Every orderer serves the same bytes for blocks `0..height`, and they equal the peers'
    /// blocks (`peer_blocks`) once the peers' TRANSACTIONS_FILTER is left out.
    async fn check_orderers(&self, peer_blocks: &[Vec<u8>]) {
        let height = peer_blocks.len() as u64;
        let first = self.orderer_blocks(ORDERERS[0], height).await;
        for name in &ORDERERS[1..] {
            let blocks = self.orderer_blocks(name, height).await;
            for (number, (a, b)) in first.iter().zip(&blocks).enumerate() {
                assert!(
                    a == b,
                    "block {number} from {name} differs from {}'s",
                    ORDERERS[0]
                );
            }
        }
        for (number, (ordered, committed)) in first.iter().zip(peer_blocks).enumerate() {
            assert!(
                without_transactions_filter(ordered) == without_transactions_filter(committed),
                "block {number}: the orderers' copy differs from the peers' beyond the \
                 transactions filter"
            );
        }
        eprintln!("[test] {height} blocks byte-identical on all 3 orderers");
    }

    async fn gateways(&self) -> Vec<Gateway> {
        let mut out = Vec::new();
        for i in 0..ORGS.len() {
            out.push(self.gateway(i).await);
        }
        out
    }

    fn print_logs(&self) {
        for (name, _) in NODES {
            let Ok(text) = std::fs::read_to_string(self.log_path(name)) else {
                continue;
            };
            let lines: Vec<String> = text.lines().map(plain).collect();
            let tail = &lines[lines.len().saturating_sub(20)..];
            eprintln!("----- {name} (last {} lines)", tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, child) in self.nodes.iter_mut() {
            stop_process(child);
        }
        if std::thread::panicking() {
            self.print_logs();
            eprintln!("[test] cluster folder kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A steady load of CreateAsset submissions through the three Gateways.
struct Load {
    stop: Arc<AtomicBool>,
    valid: Arc<Mutex<Vec<String>>>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(gateways: &[Gateway], tag: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let valid = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for (worker, gateway) in gateways.iter().enumerate() {
            let gateway = gateway.clone();
            let (stop, valid, failed) = (stop.clone(), valid.clone(), failed.clone());
            let tag = tag.to_owned();
            tasks.push(tokio::spawn(async move {
                let contract = gateway.network(CHANNEL).contract("basic");
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let id = format!("{tag}-{worker}-{n}");
                    let outcome = async {
                        let tx = contract
                            .proposal("CreateAsset", &[&id, "blue", "5", "Alice", "10"])?
                            .endorse()
                            .await?;
                        let commit = tx.submit().await?;
                        let status = commit.status().await?;
                        Ok::<_, gridledger_sdk::SdkError>((commit.tx_id().to_owned(), status))
                    }
                    .await;
                    match outcome {
                        Ok((tx_id, status)) if status.is_valid() => {
                            valid.lock().expect("load results").push(tx_id);
                        }
                        Ok(_) | Err(_) => {
                            failed.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }));
        }
        Load {
            stop,
            valid,
            failed,
            tasks,
        }
    }

    fn valid_count(&self) -> usize {
        self.valid.lock().expect("load results").len()
    }

    /// Waits until at least `more` further transactions were VALID.
    async fn wait_progress(&self, more: usize, timeout: Duration) {
        let target = self.valid_count() + more;
        let deadline = Instant::now() + timeout;
        while self.valid_count() < target {
            assert!(
                Instant::now() < deadline,
                "submissions did not progress: {} valid, wanted {target}, {} failed",
                self.valid_count(),
                self.failed.load(Ordering::SeqCst)
            );
            tokio::time::sleep(POLL).await;
        }
    }

    async fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
        }
        let valid = self.valid.lock().expect("load results").clone();
        eprintln!(
            "[test] load: {} valid, {} failed or retried",
            valid.len(),
            self.failed.load(Ordering::SeqCst)
        );
        valid
    }
}

async fn chain_height(gateway: &Gateway) -> u64 {
    let bytes = gateway
        .network(CHANNEL)
        .contract("qscc")
        .evaluate("GetChainInfo", &[CHANNEL])
        .await
        .unwrap_or_else(|e| panic!("qscc GetChainInfo: {e}"));
    common::BlockchainInfo::decode(bytes.as_slice())
        .expect("BlockchainInfo")
        .height
}

/// A block as a peer stores it (encoded, TRANSACTIONS_FILTER filled in).
async fn block_bytes(gateway: &Gateway, number: u64) -> Vec<u8> {
    gateway
        .network(CHANNEL)
        .contract("qscc")
        .evaluate("GetBlockByNumber", &[CHANNEL, &number.to_string()])
        .await
        .unwrap_or_else(|e| panic!("qscc GetBlockByNumber {number}: {e}"))
}

/// An encoded block with its TRANSACTIONS_FILTER slot emptied (the slot a committing peer
/// fills in).
fn without_transactions_filter(bytes: &[u8]) -> Vec<u8> {
    let mut block = common::Block::decode(bytes).expect("Block");
    let slot = common::BlockMetadataIndex::TransactionsFilter as usize;
    if let Some(entry) = block
        .metadata
        .as_mut()
        .and_then(|m| m.metadata.get_mut(slot))
    {
        entry.clear();
    }
    block.encode_to_vec()
}

/// A signed Deliver request for blocks `start..=stop`, waiting for blocks not yet written.
fn seek_envelope(signer: &SigningIdentity, start: u64, stop: u64) -> common::Envelope {
    let position = |number| orderer::SeekPosition {
        r#type: Some(orderer::seek_position::Type::Specified(
            orderer::SeekSpecified { number },
        )),
    };
    let info = orderer::SeekInfo {
        start: Some(position(start)),
        stop: Some(position(stop)),
        behavior: orderer::seek_info::SeekBehavior::BlockUntilReady as i32,
        error_response: 0,
        content_type: 0,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let payload = common::Payload {
        header: Some(common::Header {
            channel_header: common::ChannelHeader {
                r#type: common::HeaderType::DeliverSeekInfo as i32,
                timestamp: Some(prost_types::Timestamp {
                    seconds: now.as_secs() as i64,
                    nanos: 0,
                }),
                channel_id: CHANNEL.into(),
                ..Default::default()
            }
            .encode_to_vec(),
            signature_header: common::SignatureHeader {
                creator: signer.serialized().to_vec(),
                nonce: Vec::new(),
            }
            .encode_to_vec(),
        }),
        data: info.encode_to_vec(),
    }
    .encode_to_vec();
    common::Envelope {
        signature: signer.sign(&payload),
        payload,
    }
}

/// Waits until all peers have the same height (at least `at_least`); returns it.
async fn converge(gateways: &[Gateway], at_least: u64) -> u64 {
    let deadline = Instant::now() + LEDGER_TIMEOUT;
    loop {
        let mut heights = Vec::new();
        for g in gateways {
            heights.push(chain_height(g).await);
        }
        if heights.iter().all(|&h| h == heights[0] && h >= at_least) {
            return heights[0];
        }
        assert!(
            Instant::now() < deadline,
            "peers did not converge: heights {heights:?}, wanted at least {at_least}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Every VALID transaction is VALID in every peer's ledger and all peers hold byte-identical
/// blocks; returns the first peer's blocks.
async fn check_ledgers(gateways: &[Gateway], valid: &[String]) -> Vec<Vec<u8>> {
    let height = converge(gateways, 2).await;
    let mut blocks = Vec::new();
    for number in 0..height {
        let first = block_bytes(&gateways[0], number).await;
        for g in &gateways[1..] {
            assert!(
                block_bytes(g, number).await == first,
                "block {number} differs between peers"
            );
        }
        blocks.push(first);
    }
    for tx_id in valid {
        for g in gateways {
            let status = tokio::time::timeout(CALL_TIMEOUT, commit_status(g, CHANNEL, tx_id))
                .await
                .unwrap_or_else(|_| panic!("tx {tx_id} is missing from a peer's ledger"))
                .unwrap_or_else(|e| panic!("commit status of {tx_id}: {e}"));
            assert_eq!(
                status.code,
                protos::TxValidationCode::Valid as i32,
                "tx {tx_id} acknowledged VALID is not VALID on every peer"
            );
        }
    }
    eprintln!(
        "[test] {} valid transactions on all 3 peers, {height} identical blocks",
        valid.len()
    );
    blocks
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_raft_leader_under_load_elects_another_and_loses_no_valid_transaction() {
    let mut net = Cluster::start("leader");
    let leader = net.wait_leader(ELECTION_TIMEOUT);
    let gateways = net.gateways().await;
    let load = Load::start(&gateways, "leader");
    load.wait_progress(20, LEDGER_TIMEOUT).await;

    net.kill_node(&leader);
    let killed_at = Instant::now();
    let new_leader = net.wait_leader(ELECTION_TIMEOUT);
    assert_ne!(new_leader, leader, "a killed node cannot lead");
    eprintln!(
        "[test] {new_leader} leads {:?} after {leader} was killed",
        killed_at.elapsed()
    );
    load.wait_progress(20, LEDGER_TIMEOUT).await;

    // The old leader comes back as a follower and catches up from the log.
    net.start_node(&leader);
    load.wait_progress(10, LEDGER_TIMEOUT).await;
    let valid = load.finish().await;
    let height = converge(&gateways, 2).await;
    let deadline = Instant::now() + LEDGER_TIMEOUT;
    while net.orderer_tip(&leader) != Some(height - 1) {
        assert!(
            Instant::now() < deadline,
            "restarted {leader} did not catch up to block {}: at {:?}",
            height - 1,
            net.orderer_tip(&leader)
        );
        tokio::time::sleep(POLL).await;
    }
    let blocks = check_ledgers(&gateways, &valid).await;
    net.check_orderers(&blocks).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_killed_and_restarted_catches_up_from_the_log() {
    let mut net = Cluster::start("follower");
    let leader = net.wait_leader(ELECTION_TIMEOUT);
    let follower = ORDERERS
        .iter()
        .find(|o| **o != leader)
        .expect("a follower")
        .to_string();
    let gateways = net.gateways().await;
    let load = Load::start(&gateways, "follower");
    load.wait_progress(10, LEDGER_TIMEOUT).await;
    net.kill_node(&follower);
    load.wait_progress(30, LEDGER_TIMEOUT).await;
    net.start_node(&follower);
    load.wait_progress(10, LEDGER_TIMEOUT).await;
    let valid = load.finish().await;
    let height = converge(&gateways, 2).await;
    let deadline = Instant::now() + LEDGER_TIMEOUT;
    while net.orderer_tip(&follower) != Some(height - 1) {
        assert!(
            Instant::now() < deadline,
            "restarted {follower} did not catch up to block {}: at {:?}",
            height - 1,
            net.orderer_tip(&follower)
        );
        tokio::time::sleep(POLL).await;
    }
    let blocks = check_ledgers(&gateways, &valid).await;
    net.check_orderers(&blocks).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_of_three_orderers_down_orders_nothing_and_one_back_resumes() {
    let mut net = Cluster::start("minority");
    net.wait_leader(ELECTION_TIMEOUT);
    let gateways = net.gateways().await;
    let load = Load::start(&gateways, "minority");
    load.wait_progress(10, LEDGER_TIMEOUT).await;
    let valid_before = load.finish().await;
    let height = converge(&gateways, 2).await;

    net.kill_node("orderer0");
    net.kill_node("orderer1");
    // The lone orderer has no quorum: nothing is acknowledged and no block is written.
    let contract = gateways[0].network(CHANNEL).contract("basic");
    let refused = tokio::time::timeout(Duration::from_secs(30), async {
        let tx = contract
            .proposal("CreateAsset", &["minority-lost", "red", "1", "Bob", "1"])?
            .endorse()
            .await?;
        tx.submit().await.map(|_| ())
    })
    .await;
    assert!(
        !matches!(refused, Ok(Ok(()))),
        "a minority of orderers acknowledged a submission"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    for g in &gateways {
        assert_eq!(
            chain_height(g).await,
            height,
            "a block was written without quorum"
        );
    }

    net.start_node("orderer1");
    net.wait_leader(ELECTION_TIMEOUT);
    let load = Load::start(&gateways, "restored");
    load.wait_progress(10, LEDGER_TIMEOUT).await;
    let mut valid = load.finish().await;
    valid.extend(valid_before);
    check_ledgers(&gateways, &valid).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restarting_every_node_loses_nothing_committed() {
    let mut net = Cluster::start("restart");
    net.wait_leader(ELECTION_TIMEOUT);
    let gateways = net.gateways().await;
    let load = Load::start(&gateways, "before");
    load.wait_progress(30, LEDGER_TIMEOUT).await;
    let mut valid = load.finish().await;
    drop(gateways);

    for (name, _) in NODES {
        net.kill_node(name);
    }
    for (name, _) in NODES {
        net.start_node(name);
    }
    net.wait_leader(ELECTION_TIMEOUT);
    let gateways = net.gateways().await;
    let load = Load::start(&gateways, "after");
    load.wait_progress(10, LEDGER_TIMEOUT).await;
    valid.extend(load.finish().await);
    let blocks = check_ledgers(&gateways, &valid).await;
    net.check_orderers(&blocks).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_forwards_broadcast_to_the_leader() {
    let mut net = Cluster::start("forward");
    // Make orderer0, the first endpoint every gateway tries, a follower.
    if net.wait_leader(ELECTION_TIMEOUT) == "orderer0" {
        net.kill_node("orderer0");
        net.wait_leader(ELECTION_TIMEOUT);
        net.start_node("orderer0");
    }
    let leader = net.wait_leader(ELECTION_TIMEOUT);
    assert_ne!(leader, "orderer0");
    let gateways = net.gateways().await;
    let load = Load::start(&gateways, "forward");
    load.wait_progress(10, LEDGER_TIMEOUT).await;
    let valid = load.finish().await;
    let log = std::fs::read_to_string(net.log_path("orderer0")).expect("orderer0 log");
    let forwarded = log
        .lines()
        .map(plain)
        .filter(|l| l.contains("envelope forwarded to the raft leader") && l.contains("status=200"))
        .count();
    assert!(
        forwarded >= 10,
        "orderer0 (a follower) forwarded only {forwarded} envelopes to {leader}"
    );
    check_ledgers(&gateways, &valid).await;
}

/// Waits until `orderer` logged writing the block before `height`.
async fn wait_orderer_tip(net: &Cluster, orderer: &str, height: u64) {
    let deadline = Instant::now() + LEDGER_TIMEOUT;
    while net.orderer_tip(orderer) != Some(height - 1) {
        assert!(
            Instant::now() < deadline,
            "{orderer} did not catch up to block {}: at {:?}",
            height - 1,
            net.orderer_tip(orderer)
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_down_past_every_compaction_catches_up_by_snapshot() {
    let mut net = Cluster::start_with("snapshot", Some(4));
    let leader = net.wait_leader(ELECTION_TIMEOUT);
    let follower = ORDERERS
        .iter()
        .find(|o| **o != leader)
        .expect("a follower")
        .to_string();
    let gateways = net.gateways().await;
    let load = Load::start(&gateways, "snapshot");
    load.wait_progress(10, LEDGER_TIMEOUT).await;
    net.kill_node(&follower);
    let height_at_kill = converge(&gateways, 2).await;
    // Enough blocks that the other orderers snapshot and compact several times past it.
    load.wait_progress(60, LEDGER_TIMEOUT).await;
    let height_while_down = converge(&gateways, height_at_kill + 12).await;
    eprintln!(
        "[test] {follower} down from height {height_at_kill} to at least {height_while_down}"
    );
    net.start_node(&follower);
    load.wait_progress(10, LEDGER_TIMEOUT).await;
    let valid = load.finish().await;
    let height = converge(&gateways, 2).await;
    wait_orderer_tip(&net, &follower, height).await;
    assert!(
        net.logged(&follower, "caught up to a raft snapshot"),
        "{follower} caught up without a raft snapshot: the log was not compacted past it"
    );
    let blocks = check_ledgers(&gateways, &valid).await;
    net.check_orderers(&blocks).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_orderer_that_lost_its_channel_rejoins_catches_up_and_votes_again() {
    let mut net = Cluster::start_with("rejoin", Some(4));
    let leader = net.wait_leader(ELECTION_TIMEOUT);
    let lost = ORDERERS
        .iter()
        .find(|o| **o != leader)
        .expect("a follower")
        .to_string();
    let gateways = net.gateways().await;
    let load = Load::start(&gateways, "rejoin");
    load.wait_progress(10, LEDGER_TIMEOUT).await;
    net.kill_node(&lost);
    // The orderer loses its whole channel folder (ledger and Raft log) and its join folder.
    let data = net.dir.join("nodes").join(&lost).join("data");
    std::fs::remove_dir_all(data.join("channels").join(CHANNEL)).expect("delete the channel");
    let _ = std::fs::remove_dir_all(data.join("join"));
    load.wait_progress(40, LEDGER_TIMEOUT).await;

    // Re-joined with the genesis block while stopped, as an operator would.
    let joined = Command::new(env!("CARGO_BIN_EXE_gridledger"))
        .args(["orderer", "join", "--config"])
        .arg(net.dir.join("nodes").join(&lost).join("orderer.toml"))
        .arg("--block")
        .arg(net.dir.join(format!("{CHANNEL}.block")))
        .output()
        .expect("run gridledger orderer join");
    assert!(
        joined.status.success(),
        "orderer join failed: {}",
        String::from_utf8_lossy(&joined.stderr)
    );
    net.start_node(&lost);
    load.wait_progress(10, LEDGER_TIMEOUT).await;
    let height = converge(&gateways, 2).await;
    wait_orderer_tip(&net, &lost, height).await;
    assert!(
        net.logged(&lost, "caught up to a raft snapshot"),
        "{lost} caught up without a raft snapshot"
    );

    // It votes again: with the leader gone, it and the remaining orderer are the quorum.
    let leader = net.wait_leader(ELECTION_TIMEOUT);
    let victim = if leader == lost {
        ORDERERS
            .iter()
            .find(|o| **o != lost)
            .expect("another orderer")
            .to_string()
    } else {
        leader
    };
    net.kill_node(&victim);
    net.wait_leader(ELECTION_TIMEOUT);
    load.wait_progress(20, LEDGER_TIMEOUT).await;
    let valid = load.finish().await;
    let blocks = check_ledgers(&gateways, &valid).await;
    net.start_node(&victim);
    net.check_orderers(&blocks).await;
}
