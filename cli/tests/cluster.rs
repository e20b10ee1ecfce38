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
//! A frozen orderer (SIGSTOP) keeps its TCP connections open; peers must notice it through
//! their keepalive pings and the Gateway must bound its Broadcast to it, so both move on to
//! the next orderer endpoint.
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

mod support;
use support::free_base_port;

use gridledger_identity::SigningIdentity;
use gridledger_proto::prost::Message;
use gridledger_proto::{common, orderer, prost_types, protos};
use gridledger_sdk::{Gateway, commit_status};
use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpStream};
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
/// An orderer `up` generates material for but does not run, to be added as a consenter.
const SPARE_ORDERER: (&str, u16) = ("orderer3", 6);
/// A node's operations endpoint listens this far above its gRPC port (as `up` lays them out).
const OPERATIONS_PORT_OFFSET: u16 = 10;
/// Orderers by Raft id (from 1): the three of `up`, then the spare once added.
const CONSENTER_IDS: [&str; 4] = ["orderer0", "orderer1", "orderer2", "orderer3"];
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// A new leader must be known within this long (a few election timeouts of 1–2 s).
const ELECTION_TIMEOUT: Duration = Duration::from_secs(15);
const LEDGER_TIMEOUT: Duration = Duration::from_secs(60);
/// Peers and Gateways must move off a frozen orderer and commit again within this long: the
/// peers' keepalive ping (5 s, plus 5 s for its answer) and a Broadcast attempt bounded by the
/// 10 s RPC timeout, with room to spare.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(35);
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

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
    signal(child, "-CONT"); // a frozen node handles the TERM only once it runs again
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
        // `up`'s six nodes and the spare, and their operations endpoints ten ports up.
        let base_port = free_base_port(OPERATIONS_PORT_OFFSET + 7);
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
            .chain([&SPARE_ORDERER])
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

    /// Sends `sig` (`-STOP` to freeze, `-CONT` to thaw) to a running node.
    fn signal_node(&self, name: &str, sig: &str) {
        let (_, child) = self
            .nodes
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} is not running"));
        signal(child, sig);
        eprintln!("[test] sent {sig} to {name}");
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
        let line = text.lines().rev().map(plain).find(|l| {
            (l.contains("raft leader changed") && l.contains(&format!("channel={CHANNEL}")))
                || l.contains("orderer listening")
        })?;
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
            let seen: BTreeSet<Option<usize>> = CONSENTER_IDS
                .iter()
                .filter(|o| self.running(o))
                .map(|o| self.logged_leader(o))
                .collect();
            if let [Some(id)] = seen.iter().copied().collect::<Vec<_>>()[..] {
                let name = CONSENTER_IDS[id - 1];
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

    /// The last block `orderer` logged for the market channel: written after ordering it, or
    /// the last one pulled when it caught up to a Raft snapshot.
    fn orderer_tip(&self, orderer: &str) -> Option<u64> {
        let text = std::fs::read_to_string(self.log_path(orderer)).ok()?;
        let channel = format!("channel={CHANNEL} ");
        let field = |line: &str, key: &str| -> Option<u64> {
            line.split(key)
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        };
        text.lines().rev().map(plain).find_map(|l| {
            if !l.contains(&channel) {
                None
            } else if l.contains("block written") {
                field(&l, "block=")
            } else if l.contains("caught up to a raft snapshot") {
                field(&l, " to=")?.checked_sub(1)
            } else {
                None
            }
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

    /// A TLS connection to orderer `orderer_name`.
    async fn orderer_channel(&self, orderer_name: &str) -> Channel {
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
        channel
    }

    /// Blocks `0..height` of the channel as `orderer`'s Deliver serves them (encoded),
    /// waiting for blocks it has not written yet; requested as the first organization's User1.
    async fn orderer_blocks(&self, orderer_name: &str, height: u64) -> Vec<Vec<u8>> {
        let channel = self.orderer_channel(orderer_name).await;
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
    /// Transactions the ordering service acknowledged (the Gateway's Submit succeeded).
    accepted: Arc<Mutex<Vec<String>>>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(gateways: &[Gateway], tag: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let valid = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for (worker, gateway) in gateways.iter().enumerate() {
            let gateway = gateway.clone();
            let (stop, valid, failed) = (stop.clone(), valid.clone(), failed.clone());
            let accepted = accepted.clone();
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
                        accepted
                            .lock()
                            .expect("load results")
                            .push(commit.tx_id().to_owned());
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
            accepted,
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
        self.finish_with_accepted().await.0
    }

    /// Stops the load; returns the VALID transactions and every acknowledged one.
    async fn finish_with_accepted(self) -> (Vec<String>, Vec<String>) {
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
        let accepted = self.accepted.lock().expect("load results").clone();
        (valid, accepted)
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

/// Every transaction the ordering service acknowledged is in every peer's ledger, with some
/// validation code: none was dropped, not even across a leader change.
async fn check_accepted(gateways: &[Gateway], accepted: &[String]) {
    for tx_id in accepted {
        for g in gateways {
            tokio::time::timeout(CALL_TIMEOUT, commit_status(g, CHANNEL, tx_id))
                .await
                .unwrap_or_else(|_| {
                    panic!("tx {tx_id} was acknowledged by the orderers but never committed")
                })
                .unwrap_or_else(|e| panic!("commit status of {tx_id}: {e}"));
        }
    }
    eprintln!(
        "[test] all {} acknowledged transactions are on all 3 peers",
        accepted.len()
    );
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
    let (valid, accepted) = load.finish_with_accepted().await;
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
    check_accepted(&gateways, &accepted).await;
    net.check_orderers(&blocks).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_killed_and_restarted_catches_up_from_the_log() {
    let mut net = Cluster::start("follower");
    let leader = net.wait_leader(ELECTION_TIMEOUT);
    let follower = follower_of(&leader);
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

/// The OrdererMSP admin `up` generated.
fn orderer_admin(net: &Cluster) -> SigningIdentity {
    let base = net
        .dir
        .join("crypto/organizations/OrdererMSP/users/Admin/msp");
    SigningIdentity::load(
        "OrdererMSP",
        &base.join("signcerts/cert.pem"),
        &base.join("keystore/key.pem"),
    )
    .expect("load the OrdererMSP admin")
}

/// A CONFIG_UPDATE against `current` whose consenter list and orderer endpoints `edit`
/// changes, signed and submitted by `admin`.
fn consenters_update(
    current: &gridledger_channels::config::ChannelConfig,
    admin: &SigningIdentity,
    edit: impl FnOnce(&mut Vec<gridledger_proto::etcdraft::Consenter>, &mut Vec<String>),
) -> common::Envelope {
    use gridledger_channels::config::{CONSENSUS_TYPE_KEY, ENDPOINTS_KEY, ORDERER_GROUP};
    use gridledger_channels::update;
    let mut desired = current.config().clone();
    let orderer_group = desired
        .channel_group
        .as_mut()
        .and_then(|g| g.groups.get_mut(ORDERER_GROUP))
        .expect("an Orderer group");
    let consensus = orderer_group
        .values
        .get_mut(CONSENSUS_TYPE_KEY)
        .expect("a ConsensusType");
    let mut consensus_type =
        orderer::ConsensusType::decode(consensus.value.as_slice()).expect("ConsensusType");
    let mut metadata =
        gridledger_proto::etcdraft::ConfigMetadata::decode(consensus_type.metadata.as_slice())
            .expect("etcdraft metadata");
    let org = orderer_group
        .groups
        .get_mut("OrdererMSP")
        .expect("the OrdererMSP group");
    let endpoints = org.values.get_mut(ENDPOINTS_KEY).expect("Endpoints");
    let mut addresses =
        common::OrdererAddresses::decode(endpoints.value.as_slice()).expect("OrdererAddresses");
    edit(&mut metadata.consenters, &mut addresses.addresses);
    endpoints.value = addresses.encode_to_vec();
    consensus_type.metadata = metadata.encode_to_vec();
    consensus.value = consensus_type.encode_to_vec();

    let config_update =
        update::compute_update(CHANNEL, current.config(), &desired).expect("a difference");
    let mut envelope = update::new_envelope(&config_update);
    let mut nonce = [0u8; 24];
    nonce[..8].copy_from_slice(&current.sequence().to_be_bytes());
    nonce[8..16].copy_from_slice(&(config_update.encoded_len() as u64).to_be_bytes());
    update::sign(&mut envelope, admin, nonce);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    nonce[16] = 1;
    nonce[17..21].copy_from_slice(&now.subsec_nanos().to_be_bytes());
    update::config_update_transaction(
        CHANNEL,
        &envelope,
        admin,
        nonce,
        prost_types::Timestamp {
            seconds: now.as_secs() as i64,
            nanos: 0,
        },
    )
}

/// A CONFIG_UPDATE against `current` that removes the consenter listening on `port` (and
/// its endpoint from the orderer organization), signed and submitted by `admin`.
fn remove_consenter_update(
    current: &gridledger_channels::config::ChannelConfig,
    port: u16,
    admin: &SigningIdentity,
) -> common::Envelope {
    consenters_update(current, admin, |consenters, endpoints| {
        let before = consenters.len();
        consenters.retain(|c| c.port != u32::from(port));
        assert_eq!(consenters.len() + 1, before, "one consenter removed");
        endpoints.retain(|a| !a.ends_with(&format!(":{port}")));
    })
}

/// A CONFIG_UPDATE against `current` that adds orderer `name` (its TLS certificate from the
/// network's crypto material) as a consenter on `port`, and its endpoint.
fn add_consenter_update(
    net: &Cluster,
    current: &gridledger_channels::config::ChannelConfig,
    name: &str,
    port: u16,
    admin: &SigningIdentity,
) -> common::Envelope {
    let cert = std::fs::read(net.dir.join(format!(
        "crypto/organizations/OrdererMSP/orderers/{name}/tls/server.crt"
    )))
    .expect("the spare orderer's TLS certificate");
    consenters_update(current, admin, |consenters, endpoints| {
        consenters.push(gridledger_proto::etcdraft::Consenter {
            host: "127.0.0.1".into(),
            port: u32::from(port),
            client_tls_cert: cert.clone(),
            server_tls_cert: cert,
        });
        endpoints.push(format!("127.0.0.1:{port}"));
    })
}

impl Cluster {
    /// Broadcasts one envelope to `orderer_name` and returns its answer.
    async fn broadcast(
        &self,
        orderer_name: &str,
        envelope: common::Envelope,
    ) -> orderer::BroadcastResponse {
        let channel = self.orderer_channel(orderer_name).await;
        let mut client = orderer::atomic_broadcast_client::AtomicBroadcastClient::new(channel);
        let mut stream = tokio::time::timeout(
            Duration::from_secs(60),
            client.broadcast(tokio_stream::iter(vec![envelope])),
        )
        .await
        .unwrap_or_else(|_| panic!("{orderer_name} Broadcast did not answer"))
        .unwrap_or_else(|e| panic!("{orderer_name} Broadcast: {e}"))
        .into_inner();
        tokio::time::timeout(Duration::from_secs(60), stream.message())
            .await
            .unwrap_or_else(|_| panic!("{orderer_name} gave no Broadcast response"))
            .unwrap_or_else(|e| panic!("{orderer_name} Broadcast stream: {e}"))
            .unwrap_or_else(|| panic!("{orderer_name} closed Broadcast without a response"))
    }

    /// The port an orderer listens on (its consenter port).
    fn port(&self, name: &str) -> u16 {
        self.addr(name).port()
    }
}

/// The channel configuration in force at the peers (from the newest config block).
async fn current_channel_config(gateway: &Gateway) -> gridledger_channels::config::ChannelConfig {
    let height = chain_height(gateway).await;
    let mut config = None;
    for number in 0..height {
        let block =
            common::Block::decode(block_bytes(gateway, number).await.as_slice()).expect("Block");
        if let Ok(c) = gridledger_channels::config::ChannelConfig::from_block(&block) {
            config = Some(c);
        }
    }
    config.expect("the channel has a config block")
}

#[tokio::test(flavor = "multi_thread")]
async fn consenters_are_removed_by_config_update_unless_quorum_would_be_lost() {
    let mut net = Cluster::start("consenters");
    let leader = net.wait_leader(ELECTION_TIMEOUT);
    let followers: Vec<String> = ORDERERS
        .iter()
        .filter(|o| **o != leader)
        .map(|o| o.to_string())
        .collect();
    let (down, up) = (&followers[0], &followers[1]);
    let gateways = net.gateways().await;
    let admin = orderer_admin(&net);
    let load = Load::start(&gateways, "consenters");
    load.wait_progress(10, LEDGER_TIMEOUT).await;

    // One follower dies; the leader notices within an election timeout.
    net.kill_node(down);
    load.wait_progress(10, LEDGER_TIMEOUT).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let genesis_config = current_channel_config(&gateways[0]).await;
    assert_eq!(genesis_config.orderer().consenters.len(), 3);

    // Removing the *running* follower would leave the leader and a dead node: refused.
    let refused = net
        .broadcast(
            &leader,
            remove_consenter_update(&genesis_config, net.port(up), &admin),
        )
        .await;
    assert_eq!(
        refused.status,
        common::Status::BadRequest as i32,
        "{}",
        refused.info
    );
    assert!(
        refused.info.contains("quorum"),
        "the refusal explains the quorum loss: {}",
        refused.info
    );

    // Removing the dead one keeps a quorum of two: accepted, through a follower too.
    let accepted = net
        .broadcast(
            up,
            remove_consenter_update(&genesis_config, net.port(down), &admin),
        )
        .await;
    assert_eq!(
        accepted.status,
        common::Status::Success as i32,
        "{}",
        accepted.info
    );
    let deadline = Instant::now() + LEDGER_TIMEOUT;
    let updated = loop {
        let config = current_channel_config(&gateways[0]).await;
        if config.sequence() == 1 {
            break config;
        }
        assert!(
            Instant::now() < deadline,
            "the peers never received the config block"
        );
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(updated.orderer().consenters.len(), 2);
    assert!(
        updated
            .orderer()
            .consenters
            .iter()
            .all(|c| c.port != net.port(down)),
        "the removed consenter is gone"
    );
    // Two consenters keep ordering.
    load.wait_progress(20, LEDGER_TIMEOUT).await;

    // The removed orderer comes back with its old view of the channel: its Raft messages
    // are refused, so it cannot join the quorum or disturb the other two.
    net.start_node(down);
    tokio::time::sleep(Duration::from_secs(5)).await;
    load.wait_progress(20, LEDGER_TIMEOUT).await;
    // Hearing no leader, it asks the others for their newest config, finds itself removed,
    // and follows the channel's blocks instead.
    let deadline = Instant::now() + LEDGER_TIMEOUT;
    while !net.logged(down, "following the channel's blocks") {
        assert!(
            Instant::now() < deadline,
            "the removed {down} never found out it was removed"
        );
        tokio::time::sleep(POLL).await;
    }
    assert!(net.logged(down, "removed this orderer from the consenters"));
    let valid = load.finish().await;
    let height = converge(&gateways, 2).await;
    let tip = net.orderer_tip(down).unwrap_or(0);
    assert!(
        tip < height - 1,
        "the removed orderer must not take part in ordering (its tip {tip}, height {height})"
    );
    for remaining in [up.as_str(), leader.as_str()] {
        let log = std::fs::read_to_string(net.log_path(remaining)).expect("log");
        assert!(
            log.lines()
                .map(plain)
                .any(|l| l.contains("config block written")),
            "{remaining} wrote the config block"
        );
    }

    // Removing the leader itself: it hands leadership to the other consenter and asks for
    // the update again, which the new leader orders; the channel goes on with one consenter.
    let removal = remove_consenter_update(&updated, net.port(&leader), &admin);
    let first = net.broadcast(&leader, removal.clone()).await;
    assert_eq!(
        first.status,
        common::Status::ServiceUnavailable as i32,
        "{}",
        first.info
    );
    assert!(
        first.info.contains("submit the update again"),
        "{}",
        first.info
    );
    let deadline = Instant::now() + ELECTION_TIMEOUT;
    loop {
        let answer = net.broadcast(up, removal.clone()).await;
        if answer.status == common::Status::Success as i32 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the update removing the old leader was never ordered: {}",
            answer.info
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let load = Load::start(&gateways, "single");
    load.wait_progress(10, LEDGER_TIMEOUT).await;
    let mut valid = valid;
    valid.extend(load.finish().await);
    let last = current_channel_config(&gateways[0]).await;
    assert_eq!(last.sequence(), 2);
    assert_eq!(last.orderer().consenters.len(), 1);
    assert_eq!(last.orderer().consenters[0].port, net.port(up));
    // The removed leader, too, ends up following the channel.
    let deadline = Instant::now() + LEDGER_TIMEOUT;
    while !net.logged(&leader, "following the channel's blocks") {
        assert!(
            Instant::now() < deadline,
            "the removed {leader} never switched to following"
        );
        tokio::time::sleep(POLL).await;
    }
    check_ledgers(&gateways, &valid).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_orderer_is_failed_over_by_peers_and_gateways_and_catches_up_when_thawed() {
    let net = Cluster::start("frozen");
    net.wait_leader(ELECTION_TIMEOUT);
    let gateways = net.gateways().await;
    let load = Load::start(&gateways, "frozen");
    load.wait_progress(10, LEDGER_TIMEOUT).await;

    // orderer0 is the channel config's first orderer endpoint: the one every peer's committer
    // delivers from and every Gateway broadcasts to first. Frozen, it answers nothing but its
    // connections stay open.
    let frozen = ORDERERS[0];
    net.signal_node(frozen, "-STOP");
    load.wait_progress(10, FAILOVER_TIMEOUT).await;
    load.wait_progress(20, LEDGER_TIMEOUT).await;
    let before_thaw = converge(&gateways, 2).await;
    eprintln!("[test] peers at height {before_thaw} with {frozen} frozen");

    net.signal_node(frozen, "-CONT");
    load.wait_progress(10, LEDGER_TIMEOUT).await;
    let valid = load.finish().await;
    let height = converge(&gateways, before_thaw).await;
    let deadline = Instant::now() + LEDGER_TIMEOUT;
    while net.orderer_tip(frozen) != Some(height - 1) {
        assert!(
            Instant::now() < deadline,
            "thawed {frozen} did not catch up to block {}: at {:?}",
            height - 1,
            net.orderer_tip(frozen)
        );
        tokio::time::sleep(POLL).await;
    }
    let frozen_endpoint = &net
        .orderers
        .iter()
        .find(|o| o.name == frozen)
        .expect("the frozen orderer's endpoint")
        .endpoint;
    for (name, _) in &NODES[1..4] {
        let log = std::fs::read_to_string(net.log_path(name)).expect("peer log");
        assert!(
            log.lines()
                .map(plain)
                .any(|l| l.contains("block delivery interrupted") && l.contains(frozen_endpoint)),
            "{name} never left the frozen {frozen} ({frozen_endpoint})"
        );
    }
    let blocks = check_ledgers(&gateways, &valid).await;
    net.check_orderers(&blocks).await;
}
/// Waits until `orderer` logged writing the block before `height` (or a later one: the load
/// may still be running).
async fn wait_orderer_tip(net: &Cluster, orderer: &str, height: u64) {
    let deadline = Instant::now() + LEDGER_TIMEOUT;
    while net.orderer_tip(orderer).is_none_or(|tip| tip + 1 < height) {
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
    let follower = follower_of(&leader);
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
    let lost = follower_of(&leader);
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

impl Cluster {
    /// Writes the spare orderer's node config (orderer2's, renamed and on the spare port, its
    /// operations endpoint moved along) with `join_block` (the genesis block when `None`) to
    /// join.
    fn prepare_spare_orderer(&mut self, join_block: Option<&[u8]>) {
        let (spare, _) = SPARE_ORDERER;
        let template = std::fs::read_to_string(self.dir.join("nodes/orderer2/orderer.toml"))
            .expect("orderer2's config");
        let config = template
            .replace(
                &format!("127.0.0.1:{}", self.port("orderer2")),
                &format!("127.0.0.1:{}", self.port(spare)),
            )
            .replace(
                &format!(
                    "127.0.0.1:{}",
                    self.port("orderer2") + OPERATIONS_PORT_OFFSET
                ),
                &format!("127.0.0.1:{}", self.port(spare) + OPERATIONS_PORT_OFFSET),
            )
            .replace("orderer2", spare);
        let node = self.dir.join("nodes").join(spare);
        std::fs::create_dir_all(node.join("data/join")).expect("spare folders");
        std::fs::write(node.join("orderer.toml"), config).expect("spare config");
        let join_path = node.join(format!("data/join/{CHANNEL}.block"));
        match join_block {
            Some(bytes) => std::fs::write(&join_path, bytes).expect("the block to join"),
            None => {
                std::fs::copy(self.dir.join(format!("{CHANNEL}.block")), &join_path)
                    .expect("the genesis block to join");
            }
        }
        let template = self
            .orderers
            .iter()
            .find(|o| o.name == "orderer2")
            .expect("orderer2's endpoint");
        let endpoint = OrdererEndpoint {
            name: spare.to_string(),
            endpoint: format!("127.0.0.1:{}", self.port(spare)),
            tls_ca: template.tls_ca.clone(),
            server_name: template.server_name.replace("orderer2", spare),
        };
        self.orderers.push(endpoint);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consenter_added_by_config_update_follows_the_chain_then_joins_the_quorum() {
    let mut net = Cluster::start("add-consenter");
    net.wait_leader(ELECTION_TIMEOUT);
    let gateways = net.gateways().await;
    let admin = orderer_admin(&net);
    let load = Load::start(&gateways, "grow");
    load.wait_progress(20, LEDGER_TIMEOUT).await;

    // The spare orderer joins with the genesis block, not being a consenter: it follows the
    // channel's blocks from the consenters.
    let (spare, _) = SPARE_ORDERER;
    net.prepare_spare_orderer(None);
    net.start_node(spare);
    let deadline = Instant::now() + LEDGER_TIMEOUT;
    while !net.logged(spare, "following the channel's blocks") {
        assert!(Instant::now() < deadline, "{spare} never started following");
        tokio::time::sleep(POLL).await;
    }

    // Adding it: three of four consenters are reachable, a quorum of four, so it is ordered.
    let genesis_config = current_channel_config(&gateways[0]).await;
    let update = add_consenter_update(&net, &genesis_config, spare, net.port(spare), &admin);
    let answer = net.broadcast("orderer0", update).await;
    assert_eq!(
        answer.status,
        common::Status::Success as i32,
        "{}",
        answer.info
    );
    // The follower reaches the config block, becomes a consenter and writes blocks itself.
    let deadline = Instant::now() + LEDGER_TIMEOUT;
    while !net.logged(spare, "starting to order the channel") {
        assert!(
            Instant::now() < deadline,
            "{spare} never became a consenter"
        );
        tokio::time::sleep(POLL).await;
    }
    load.wait_progress(20, LEDGER_TIMEOUT).await;
    let config = current_channel_config(&gateways[0]).await;
    assert_eq!(config.orderer().consenters.len(), 4);

    spare_must_be_in_the_quorum(&mut net, &gateways, load, spare).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_orderer_joined_with_a_later_config_block_pulls_the_chain_and_joins_the_quorum() {
    let mut net = Cluster::start("join-config-block");
    net.wait_leader(ELECTION_TIMEOUT);
    let gateways = net.gateways().await;
    let admin = orderer_admin(&net);
    let load = Load::start(&gateways, "late");
    load.wait_progress(20, LEDGER_TIMEOUT).await;

    // Fabric's way to add an orderer: first the config update naming it a consenter (three
    // of four are reachable, a quorum of four), then join it with that config block.
    let (spare, _) = SPARE_ORDERER;
    let genesis_config = current_channel_config(&gateways[0]).await;
    let update = add_consenter_update(&net, &genesis_config, spare, net.port(spare), &admin);
    let answer = net.broadcast("orderer1", update).await;
    assert_eq!(
        answer.status,
        common::Status::Success as i32,
        "{}",
        answer.info
    );
    load.wait_progress(10, LEDGER_TIMEOUT).await;
    let height = converge(&gateways, 2).await;
    let blocks = net.orderer_blocks("orderer0", height).await;
    let (config_number, config_block) = blocks
        .iter()
        .enumerate()
        .rev()
        .find(|(_, bytes)| {
            let block = common::Block::decode(bytes.as_slice()).expect("Block");
            gridledger_channels::config::ChannelConfig::from_block(&block)
                .is_ok_and(|c| c.sequence() == 1)
        })
        .expect("the config block adding the spare");
    assert!(
        config_number > 1,
        "the config block is not the genesis block"
    );

    net.prepare_spare_orderer(Some(config_block));
    net.start_node(spare);
    let deadline = Instant::now() + LEDGER_TIMEOUT;
    while !net.logged(spare, "starting to order the channel") {
        assert!(
            Instant::now() < deadline,
            "{spare} never pulled the chain up to its join block and started ordering"
        );
        tokio::time::sleep(POLL).await;
    }
    assert!(net.logged(spare, "pulled every block before the join block"));

    spare_must_be_in_the_quorum(&mut net, &gateways, load, spare).await;
}

/// With four consenters the quorum is three: kills a follower of the original three, so that
/// ordering goes on only if the added `spare` votes; then `spare` must be at the tip, every
/// VALID transaction on every peer, and `spare` must serve the peers' blocks.
async fn spare_must_be_in_the_quorum(
    net: &mut Cluster,
    gateways: &[Gateway],
    load: Load,
    spare: &str,
) {
    let leader = net.wait_leader(ELECTION_TIMEOUT);
    let victim = follower_of(&leader);
    net.kill_node(&victim);
    load.wait_progress(20, LEDGER_TIMEOUT).await;
    let valid = load.finish().await;
    let height = converge(gateways, 2).await;
    let deadline = Instant::now() + LEDGER_TIMEOUT;
    while net.orderer_tip(spare) != Some(height - 1) {
        assert!(
            Instant::now() < deadline,
            "{spare} is not at the tip {}: {:?}",
            height - 1,
            net.orderer_tip(spare)
        );
        tokio::time::sleep(POLL).await;
    }
    let blocks = check_ledgers(gateways, &valid).await;
    let spare_blocks = net.orderer_blocks(spare, height).await;
    for (number, (ordered, committed)) in spare_blocks.iter().zip(&blocks).enumerate() {
        assert!(
            without_transactions_filter(ordered) == without_transactions_filter(committed),
            "block {number} from {spare} differs from the peers'"
        );
    }
}

/// One of `up`'s three orderers other than `leader`.
fn follower_of(leader: &str) -> String {
    ORDERERS
        .iter()
        .find(|o| **o != leader)
        .expect("a follower")
        .to_string()
}
