//! Hostile clients against a real network started by `gridledger up`.
//!
//! Every service a node serves — the peer's Gateway (Evaluate, Endorse, Submit, CommitStatus,
//! ChaincodeEvents), Endorser.ProcessProposal and Deliver/DeliverFiltered, the orderer's
//! Broadcast and Deliver — is sent garbage bytes where nested messages belong, requests with
//! fields missing, unknown channels, wrong and high-S signatures, identities from outside the
//! channel, expired or not-yet-valid identities, identities whose role the channel's policies
//! do not admit, certificates revoked through a CRL added to the channel config, messages
//! nested far deeper than any legitimate input, replays of committed proposals and oversized
//! messages. Each must be refused
//! with the status a Fabric client expects (WIRE.md §1.8, §3.3–3.4); where GridLedger's answer
//! is a defensible choice that differs from Fabric's, the assertion says so in a comment.
//! Bytes that are not the expected message at all, and unknown methods, are covered too.
//!
//! Where a node logs its refusals, a test checks (for a representative request of its group)
//! that the node's log has a line naming the request, who sent it and what was wrong
//! ([`Session::check_logged`]), and that the refused transaction is unknown to every peer's
//! qscc `GetTransactionByID` ([`Session::check_unknown_tx`]).
//!
//! Every test ends with the same check ([`Session::finish`]): a valid transaction still
//! commits through the Gateway, every peer commits it at the same height with the same block
//! hash, the orderer's chain has the same height, the new blocks hold exactly the test's own
//! transactions (with the validation codes the test expects) and no node logged a panic. A
//! test records every wrong answer it gets ([`Findings`]) and fails after that check, listing
//! them all, so one wrong answer does not hide the next.
//!
//! One network per test process, started by the first test that needs it and shared through a
//! `OnceLock`: nextest runs each test in its own process, so each test gets a fresh network;
//! `cargo test` runs the tests as threads of one process, which then share one network and
//! take turns (a lock held for the whole test), so the height checks stay exact. The network
//! is run by a small `sh` wrapper that stops `gridledger up` (and so every node) as soon as
//! the test process exits, however it exits, and then removes the network's folder (set
//! `GRIDLEDGER_KEEP_NETWORK=1` to keep it for debugging).

use gridledger_identity::material::{self, CertificateAuthority, CryptoConfig, LeafSpec, Seed};
use gridledger_identity::{Role, SigningIdentity, signature::to_high_s};
use gridledger_proto::prost::Message;
use gridledger_proto::prost::bytes::{Buf, BufMut};
use gridledger_proto::{common, gateway, google, orderer, prost_types, protos};
use gridledger_sdk::{Gateway, SdkError};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::tokio_stream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

/// The channel `gridledger up` creates.
const CHANNEL: &str = "market";
/// The chaincode deployed on it.
const CHAINCODE: &str = "basic";
/// The seed of the network's crypto material, so the tests can re-create an organization's CA
/// and issue identities it never handed out (expired, not yet valid).
const SEED: &str = "gridledger-hostile-tests";
/// A channel no node has joined.
const NO_SUCH_CHANNEL: &str = "no-such-channel";
/// Larger than every node's gRPC message limit (100 MiB).
const OVERSIZED: usize = 200 * 1024 * 1024;
/// Larger than the channel's AbsoluteMaxBytes (10 MiB), smaller than the gRPC limit.
const OVER_ABSOLUTE_MAX_BYTES: usize = 11 * 1024 * 1024;
/// Bytes that no protobuf message decodes from: field 1, length 5, then only 3 bytes.
const GARBAGE: &[u8] = b"\x0a\x05abc";
/// How long any single call may take before the test calls it hung.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// The network
// ---------------------------------------------------------------------------------------------

/// A network started by `gridledger up` for this test process.
struct Network {
    dir: PathBuf,
    json: serde_json::Value,
    /// The `sh` wrapper's standard input: the network stops when it closes, which the
    /// operating system does when this process exits.
    _stop: ChildStdin,
}

static NETWORK: OnceLock<Network> = OnceLock::new();
/// Tests sharing one network (under `cargo test`) take turns.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `gridledger up` in the background; when the test process goes away (its end of our
/// standard input closes) stops it, waits for it, and removes the network's folder.
const WRAPPER: &str = r#"
exec 3<&0
"$0" up --dir "$1" --base-port "$2" >"$1/up.log" 2>&1 </dev/null &
up=$!
{ cat >/dev/null; [ -e "$1/up.exit" ] || kill -TERM "$up" 2>/dev/null; } <&3 &
exec 3<&-
wait "$up"
echo "$?" >"$1/up.exit"
wait
[ -n "$GRIDLEDGER_KEEP_NETWORK" ] || rm -rf "$1"
"#;

/// Now, in unix seconds.
fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// How many ports from the base port `gridledger up` uses: orderers and peers on the first six,
/// their operations endpoints ten above.
const PORT_SPAN: u16 = 16;

/// A base port whose next [`PORT_SPAN`] ports are free, below the kernel's ephemeral range.
fn free_base_port(attempt: u32) -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed =
        u64::from(std::process::id()) * 7919 + u64::from(nanos) + u64::from(attempt) * 104_729;
    let mut candidate = 20_000 + seed % 12_000;
    loop {
        let base = candidate as u16;
        let free =
            (0..PORT_SPAN).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
        candidate = 20_000 + (candidate + u64::from(PORT_SPAN) - 20_000) % 12_000;
    }
}

impl Network {
    /// Starts `gridledger up` on free ports (retrying on others if it cannot bind them) and
    /// waits until it has written network.json.
    fn start() -> Network {
        let mut failures = Vec::new();
        for attempt in 0..4 {
            let dir = std::env::temp_dir().join(format!(
                "gridledger-hostile-{}-{attempt}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create the network folder");
            write_crypto(&dir.join("crypto"));
            let base = free_base_port(attempt);
            let mut wrapper: Child = Command::new("sh")
                .arg("-c")
                .arg(WRAPPER)
                .arg(env!("CARGO_BIN_EXE_gridledger"))
                .arg(&dir)
                .arg(base.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start sh");
            let stop = wrapper.stdin.take().expect("the wrapper's piped stdin");
            // Reaps the wrapper whenever it ends.
            let reaper = std::thread::spawn(move || wrapper.wait());
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                // `up` writes network.json once every node serves (it may be caught half
                // written: read it again then).
                let json = std::fs::read(dir.join("network.json"))
                    .ok()
                    .and_then(|text| serde_json::from_slice(&text).ok());
                if let Some(json) = json {
                    return Network {
                        dir,
                        json,
                        _stop: stop,
                    };
                }
                if dir.join("up.exit").exists() || Instant::now() > deadline {
                    let log = std::fs::read_to_string(dir.join("up.log")).unwrap_or_default();
                    failures.push(format!("base port {base}: {log}"));
                    // Closing its input makes the wrapper stop `up` and clean up.
                    drop(stop);
                    let _ = reaper.join();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("gridledger up did not start: {failures:#?}");
    }

    /// A path inside the network's folder.
    fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// An organization's entry in network.json.
    fn org(&self, msp_id: &str) -> &serde_json::Value {
        self.json["organizations"]
            .as_array()
            .and_then(|orgs| orgs.iter().find(|o| o["mspId"] == msp_id))
            .unwrap_or_else(|| panic!("{msp_id} in network.json"))
    }

    /// A user (`"users"`) or admin (`"admins"`) of an organization, from network.json.
    fn member(&self, msp_id: &str, kind: &str) -> SigningIdentity {
        let entry = &self.org(msp_id)[kind][0];
        let cert = self.path(entry["cert"].as_str().expect("cert path"));
        let key = self.path(entry["key"].as_str().expect("key path"));
        SigningIdentity::load(msp_id, &cert, &key).expect("load identity")
    }

    /// The signing identity of an organization's peer (a `peer` role, not a client).
    fn peer_identity(&self, msp_id: &str, peer: &str) -> SigningIdentity {
        let base = self.path(&format!("crypto/organizations/{msp_id}/peers/{peer}/msp"));
        SigningIdentity::load(
            msp_id,
            &base.join("signcerts/cert.pem"),
            &base.join("keystore/key.pem"),
        )
        .expect("load the peer's identity")
    }

    /// `(name, msp id, endpoint, tls ca pem, server name)` of every peer.
    fn peers(&self) -> Vec<(String, String, String, Vec<u8>, String)> {
        let orgs = self.json["organizations"]
            .as_array()
            .expect("organizations");
        orgs.iter()
            .map(|o| {
                let p = &o["peers"][0];
                let text = |v: &serde_json::Value| v.as_str().expect("string").to_owned();
                let ca = std::fs::read(self.path(&text(&p["tlsCaCert"]))).expect("tls ca");
                (
                    text(&p["name"]),
                    text(&o["mspId"]),
                    text(&p["endpoint"]),
                    ca,
                    text(&p["serverName"]),
                )
            })
            .collect()
    }

    /// Every node's log, with its file name.
    fn logs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.path("logs")) {
            for entry in entries.flatten() {
                let mut text = String::new();
                if let Ok(mut f) = std::fs::File::open(entry.path()) {
                    let _ = f.read_to_string(&mut text);
                }
                out.push((entry.file_name().to_string_lossy().into_owned(), text));
            }
        }
        out
    }
}

/// The consortium `gridledger up` creates (examples/crypto-config.toml), from [`SEED`].
fn crypto_config() -> CryptoConfig {
    let mut config: CryptoConfig =
        toml::from_str(include_str!("../../examples/crypto-config.toml")).expect("crypto config");
    config.seed = Some(SEED.into());
    config
}

/// The consortium's crypto material, as `gridledger up` would create it but from a known seed,
/// so [`dso_ca`] can issue more DSOMSP identities. (`up` keeps crypto material it finds.)
fn write_crypto(out: &Path) {
    material::generate(&crypto_config(), out, now_secs()).expect("generate crypto material");
}

/// DSOMSP's signing CA, re-created from the seed (same key, name and identifiers as the one
/// `write_crypto` wrote, so what it issues chains to DSOMSP's root).
fn dso_ca(net: &Network) -> CertificateAuthority {
    let not_before = material::SEEDED_NOT_BEFORE;
    let validity_days = i64::from(crypto_config().validity_days);
    let ca = CertificateAuthority::new_root(
        &Seed::from_text(SEED),
        "DSOMSP",
        "ca.DSOMSP",
        not_before,
        not_before + validity_days * 86_400,
    )
    .expect("re-create DSOMSP's CA");
    let on_disk = std::fs::read_to_string(net.path("crypto/organizations/DSOMSP/ca/ca.pem"))
        .expect("DSOMSP ca.pem");
    assert_eq!(ca.cert_pem(), on_disk, "the re-created CA is DSOMSP's CA");
    ca
}

/// A DSOMSP client identity valid from `not_before` to `not_after`.
fn dso_client(
    ca: &CertificateAuthority,
    name: &str,
    not_before: i64,
    not_after: i64,
) -> SigningIdentity {
    let issued = ca
        .issue(
            "DSOMSP",
            &LeafSpec::new(
                &format!("{name}@DSOMSP"),
                Some(Role::Client),
                not_before,
                not_after,
            ),
        )
        .expect("issue a DSOMSP identity");
    SigningIdentity::from_pem(
        "DSOMSP",
        issued.cert_pem.as_bytes(),
        issued.key_pem.as_bytes(),
    )
    .expect("DSOMSP signer")
}

/// A client of an organization that is not in the channel: its own fresh root CA. With
/// `claimed_msp` it claims to belong to that (member) organization instead.
fn outsider(claimed_msp: Option<&str>) -> SigningIdentity {
    let now = now_secs();
    let ca = CertificateAuthority::new_root(
        &Seed::random().expect("seed"),
        "OutsiderMSP",
        "ca.OutsiderMSP",
        now - 3600,
        now + 86_400,
    )
    .expect("outsider CA");
    let issued = ca
        .issue(
            "OutsiderMSP",
            &LeafSpec::new(
                "Mallory@OutsiderMSP",
                Some(Role::Client),
                now - 3600,
                now + 86_400,
            ),
        )
        .expect("outsider identity");
    SigningIdentity::from_pem(
        claimed_msp.unwrap_or("OutsiderMSP"),
        issued.cert_pem.as_bytes(),
        issued.key_pem.as_bytes(),
    )
    .expect("outsider signer")
}

/// The identities the tests sign with.
struct Identities {
    /// DSOMSP's User1 (a client: a Writer and Reader of the channel).
    user: SigningIdentity,
    /// A client of an organization outside the channel.
    outsider: SigningIdentity,
    /// A certificate from a foreign CA that claims to be DSOMSP's.
    impostor: SigningIdentity,
    /// RetailerMSP's User1 — a real member of the channel — claiming to be of DSOMSP.
    cross_org: SigningIdentity,
    /// A DSOMSP client whose certificate expired yesterday.
    expired: SigningIdentity,
    /// A DSOMSP client whose certificate becomes valid tomorrow.
    not_yet_valid: SigningIdentity,
    /// peer0.dso's own signing identity: a Reader, but not a Writer (Writers are admins and
    /// clients).
    peer: SigningIdentity,
}

impl Identities {
    /// Loads or issues every identity.
    fn new(net: &Network) -> Identities {
        let ca = dso_ca(net);
        let now = now_secs();
        Identities {
            user: net.member("DSOMSP", "users"),
            outsider: outsider(None),
            impostor: outsider(Some("DSOMSP")),
            cross_org: {
                let entry = &net.org("RetailerMSP")["users"][0];
                let path = |key: &str| net.path(entry[key].as_str().expect("a path"));
                SigningIdentity::load("DSOMSP", &path("cert"), &path("key"))
                    .expect("RetailerMSP's User1, claiming DSOMSP")
            },
            expired: dso_client(&ca, "Expired", now - 30 * 86_400, now - 86_400),
            not_yet_valid: dso_client(&ca, "Future", now + 86_400, now + 30 * 86_400),
            peer: net.peer_identity("DSOMSP", "peer0.dso"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Connections and a test session
// ---------------------------------------------------------------------------------------------

/// A TLS channel to `endpoint`, trusting `ca_pem`, checking the certificate for `server_name`.
async fn connect(endpoint: &str, ca_pem: &[u8], server_name: &str) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(server_name);
    Endpoint::from_shared(format!("https://{endpoint}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls config")
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {server_name} at {endpoint}: {e:?}"))
}

/// One peer: its gRPC channel and a Gateway client signing as its organization's User1.
struct PeerConn {
    name: String,
    msp_id: String,
    channel: Channel,
    gateway: Gateway,
}

/// What one test works with: the network (its turn on it), connections, identities and the
/// height the test started from.
struct Session {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    net: &'static Network,
    peers: Vec<PeerConn>,
    /// Every orderer, by name.
    orderers: Vec<(String, Channel)>,
    /// The first orderer, the one the tests talk to.
    orderer: Channel,
    ids: Identities,
    start_height: u64,
    /// `(tx id, validation code)` of every transaction this test expects in the new blocks.
    expected: Vec<(String, i32)>,
}

impl Session {
    /// Waits for this test's turn, starts the network if no test has, and connects.
    async fn open() -> Session {
        let turn = TURN.lock().await;
        let net = NETWORK.get_or_init(Network::start);
        let mut peers = Vec::new();
        for (name, msp_id, endpoint, ca, server_name) in net.peers() {
            let channel = connect(&endpoint, &ca, &server_name).await;
            let gateway = Gateway::from_channel(channel.clone(), net.member(&msp_id, "users"))
                .with_timeout(CALL_TIMEOUT);
            peers.push(PeerConn {
                name,
                msp_id,
                channel,
                gateway,
            });
        }
        let mut orderers = Vec::new();
        for o in net.json["orderers"].as_array().expect("orderers") {
            let text = |key: &str| o[key].as_str().expect("network.json string").to_owned();
            let ca = std::fs::read(net.path(&text("tlsCaCert"))).expect("orderer tls ca");
            let channel = connect(&text("endpoint"), &ca, &text("serverName")).await;
            orderers.push((text("name"), channel));
        }
        let orderer = orderers.first().expect("an orderer").1.clone();
        let mut session = Session {
            _turn: turn,
            net,
            peers,
            orderers,
            orderer,
            ids: Identities::new(net),
            start_height: 0,
            expected: Vec::new(),
        };
        session.start_height = session.height().await;
        session
    }

    /// peer0.dso (DSOMSP), the gateway most tests talk to.
    fn dso(&self) -> &PeerConn {
        self.peers
            .iter()
            .find(|p| p.msp_id == "DSOMSP")
            .expect("DSOMSP's peer in network.json")
    }

    /// A raw Gateway client on peer0.dso.
    fn gateway_client(&self) -> gateway::gateway_client::GatewayClient<Channel> {
        gateway::gateway_client::GatewayClient::new(self.dso().channel.clone())
    }

    /// A raw Endorser client on peer0.dso.
    fn endorser_client(&self) -> protos::endorser_client::EndorserClient<Channel> {
        protos::endorser_client::EndorserClient::new(self.dso().channel.clone())
    }

    /// `basic` on `market`, through peer0.dso as DSOMSP's User1.
    fn contract(&self) -> gridledger_sdk::Contract {
        self.dso().gateway.network(CHANNEL).contract(CHAINCODE)
    }

    /// A gateway on peer0.dso that signs as `signer`.
    fn gateway_as(&self, signer: SigningIdentity) -> Gateway {
        Gateway::from_channel(self.dso().channel.clone(), signer).with_timeout(CALL_TIMEOUT)
    }

    /// The ledger height of peer0.dso (qscc GetChainInfo).
    async fn height(&self) -> u64 {
        let info = self
            .dso()
            .gateway
            .network(CHANNEL)
            .contract("qscc")
            .evaluate("GetChainInfo", &[CHANNEL])
            .await
            .unwrap_or_else(|e| panic!("GetChainInfo on {}: {e}", self.dso().name));
        common::BlockchainInfo::decode(info.as_slice())
            .expect("BlockchainInfo")
            .height
    }

    /// Submits a valid CreateAsset through peer0.dso and waits for it to commit VALID; the
    /// transaction is one the final check expects.
    async fn submit_valid(&mut self, asset: &str) -> (String, u64) {
        let tx = self
            .contract()
            .proposal("CreateAsset", &[asset, "blue", "5", "Hostile", "100"])
            .expect("proposal")
            .endorse()
            .await
            .unwrap_or_else(|e| panic!("endorse CreateAsset {asset}: {e}"));
        let tx_id = tx.tx_id().to_owned();
        let commit = tx.submit().await.expect("submit a valid transaction");
        let status = commit.status().await.expect("commit status");
        assert!(status.is_valid(), "{asset}: {status:?}");
        self.expected.push((tx_id.clone(), 0));
        (tx_id, status.block_number)
    }

    /// Expects the transaction `tx_id` in the new blocks with `code`.
    fn expect_in_block(&mut self, tx_id: &str, code: protos::TxValidationCode) {
        self.expected.push((tx_id.to_owned(), code as i32));
    }

    /// The final check of every test: a valid transaction still commits; every peer commits it
    /// at one height with one block hash; the orderer's chain has that height; the blocks
    /// since the test started hold exactly the expected transactions; no node panicked. Then
    /// fails the test if anything it recorded in `findings` was wrong, listing it all.
    async fn finish(mut self, mut findings: Findings) {
        let marker = format!("hostile-marker-{}", unique());
        let (marker_tx, _) = self.submit_valid(&marker).await;
        let mut heights = Vec::new();
        let mut hashes = Vec::new();
        for peer in &self.peers {
            // CommitStatus blocks until this peer has committed the marker.
            let status = gridledger_sdk::commit_status(&peer.gateway, CHANNEL, &marker_tx)
                .await
                .unwrap_or_else(|e| panic!("{} still serves CommitStatus: {e}", peer.name));
            assert!(status.is_valid(), "{}: {status:?}", peer.name);
            let asset = peer
                .gateway
                .network(CHANNEL)
                .contract(CHAINCODE)
                .evaluate("ReadAsset", &[&marker])
                .await
                .unwrap_or_else(|e| panic!("{} ({}) still evaluates: {e}", peer.name, peer.msp_id));
            assert!(!asset.is_empty(), "{} reads the marker asset", peer.name);
            let info = peer
                .gateway
                .network(CHANNEL)
                .contract("qscc")
                .evaluate("GetChainInfo", &[CHANNEL])
                .await
                .expect("GetChainInfo");
            let info = common::BlockchainInfo::decode(info.as_slice()).expect("BlockchainInfo");
            heights.push(info.height);
            hashes.push(info.current_block_hash);
        }
        findings.check(
            heights.iter().all(|h| *h == heights[0]) && hashes.iter().all(|h| *h == hashes[0]),
            format!("every peer is at the same block: heights {heights:?}"),
        );
        let height = heights[0];

        // Every orderer still serves Deliver, and its chain ends where the peers' does (an
        // orderer that is not the one the peers pull from may take a moment to get there).
        let expected_newest = vec![
            Delivered::Block(height - 1),
            Delivered::Status(common::Status::Success),
        ];
        for (name, channel) in &self.orderers {
            let deadline = Instant::now() + Duration::from_secs(10);
            let newest = loop {
                let newest = orderer_deliver(
                    channel,
                    vec![seek_envelope(
                        &self.ids.user,
                        CHANNEL,
                        seek(newest(), newest()),
                    )],
                )
                .await;
                if newest == expected_newest || Instant::now() > deadline {
                    break newest;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            findings.equal(
                &format!("{name}'s newest block"),
                newest,
                expected_newest.clone(),
            );
        }

        // Exactly the expected transactions were ordered since the test started, on every peer.
        self.expected.sort();
        for peer in &self.peers {
            let mut found = Vec::new();
            for number in self.start_height..height {
                let bytes = peer
                    .gateway
                    .network(CHANNEL)
                    .contract("qscc")
                    .evaluate("GetBlockByNumber", &[CHANNEL, &number.to_string()])
                    .await
                    .unwrap_or_else(|e| panic!("{}: block {number}: {e}", peer.name));
                let block = common::Block::decode(bytes.as_slice()).expect("block");
                found.extend(block_transactions(&block));
            }
            found.sort();
            findings.equal(
                &format!(
                    "{}: transactions committed since the test started (tx id, validation code)",
                    peer.name
                ),
                found,
                self.expected.clone(),
            );
        }

        for (name, text) in self.net.logs() {
            if let Some(at) = text.find("panicked") {
                let end = text[at..]
                    .char_indices()
                    .nth(2000)
                    .map_or(text.len(), |(i, _)| at + i);
                findings
                    .0
                    .push(format!("{name} logged a panic: {}", &text[at..end]));
            }
        }
        assert!(
            findings.0.is_empty(),
            "{} mismatch(es):\n- {}",
            findings.0.len(),
            findings.0.join("\n- ")
        );
    }
}

/// `(tx id, validation code)` of each transaction of a committed block.
fn block_transactions(block: &common::Block) -> Vec<(String, i32)> {
    let codes = block
        .metadata
        .as_ref()
        .and_then(|m| m.metadata.get(2))
        .cloned()
        .unwrap_or_default();
    let data = block
        .data
        .as_ref()
        .map(|d| d.data.clone())
        .unwrap_or_default();
    data.iter()
        .enumerate()
        .map(|(i, bytes)| {
            let envelope = common::Envelope::decode(bytes.as_slice()).unwrap_or_default();
            let payload = common::Payload::decode(envelope.payload.as_slice()).unwrap_or_default();
            let header = payload.header.unwrap_or_default();
            let channel_header =
                common::ChannelHeader::decode(header.channel_header.as_slice()).unwrap_or_default();
            (
                channel_header.tx_id,
                codes.get(i).map_or(-1, |c| i32::from(*c)),
            )
        })
        .collect()
}

/// A string no other call returns, in this process or another (nonces, asset names).
fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Now, as a protobuf timestamp (whole seconds).
fn timestamp_now() -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: now_secs(),
        nanos: 0,
    }
}

// ---------------------------------------------------------------------------------------------
// Building (bad) requests
// ---------------------------------------------------------------------------------------------

/// A signed proposal taken apart, to be changed and signed again.
#[derive(Clone)]
struct ProposalParts {
    channel_header: common::ChannelHeader,
    signature_header: common::SignatureHeader,
    payload: Vec<u8>,
}

impl ProposalParts {
    /// Takes a well-formed signed proposal apart.
    fn of(signed: &protos::SignedProposal) -> ProposalParts {
        let proposal =
            protos::Proposal::decode(signed.proposal_bytes.as_slice()).expect("proposal");
        let header = common::Header::decode(proposal.header.as_slice()).expect("header");
        ProposalParts {
            channel_header: common::ChannelHeader::decode(header.channel_header.as_slice())
                .expect("channel header"),
            signature_header: common::SignatureHeader::decode(header.signature_header.as_slice())
                .expect("signature header"),
            payload: proposal.payload,
        }
    }

    /// Makes `signer` the creator, with the tx id bound to it as a client would compute it.
    fn created_by(mut self, signer: &SigningIdentity) -> ProposalParts {
        self.signature_header.creator = signer.serialized().to_vec();
        self.rebind_tx_id()
    }

    /// Sets the tx id to hex(sha256(nonce || creator)).
    fn rebind_tx_id(mut self) -> ProposalParts {
        self.channel_header.tx_id = gridledger_proto::compute_tx_id(
            &self.signature_header.nonce,
            &self.signature_header.creator,
        );
        self
    }

    /// The `Proposal` bytes.
    fn bytes(&self) -> Vec<u8> {
        protos::Proposal {
            header: common::Header {
                channel_header: self.channel_header.encode_to_vec(),
                signature_header: self.signature_header.encode_to_vec(),
            }
            .encode_to_vec(),
            payload: self.payload.clone(),
            extension: Vec::new(),
        }
        .encode_to_vec()
    }

    /// The proposal signed by `signer`.
    fn signed_by(&self, signer: &SigningIdentity) -> protos::SignedProposal {
        signed(self.bytes(), signer)
    }
}

/// `proposal_bytes` (whatever they are) signed by `signer`.
fn signed(proposal_bytes: Vec<u8>, signer: &SigningIdentity) -> protos::SignedProposal {
    protos::SignedProposal {
        signature: signer.sign(&proposal_bytes),
        proposal_bytes,
    }
}

/// Who refuses a bad proposal, which decides the gRPC status the Gateway answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The gateway cannot decode what it needs to route the proposal: INVALID_ARGUMENT, in
    /// Fabric too.
    Undecodable,
    /// A malformed header, or no signature. Fabric's gateway leaves these to its endorser and
    /// reports the endorser's error as FAILED_PRECONDITION (Evaluate) or ABORTED (Endorse);
    /// GridLedger checks them up front and answers INVALID_ARGUMENT, on purpose (see
    /// `endorse_failure` in peer/src/gateway.rs).
    Malformed,
    /// A channel this peer has not joined: NOT_FOUND (WIRE.md §1.8). Fabric says UNAVAILABLE
    /// or FAILED_PRECONDITION (discovery knows no peers of the channel), and INVALID_ARGUMENT
    /// for an empty channel id in Evaluate.
    UnknownChannel,
    /// The endorser refuses it (signature, creator, ACL, duplicate tx id). Fabric's endorser
    /// returns an error; its gateway answers Evaluate with FAILED_PRECONDITION ("evaluate call
    /// to endorser returned error: …") and Endorse with ABORTED ("failed to endorse
    /// transaction, see attached details…"), the endorser's reason in an ErrorDetail.
    Endorser,
    /// No chaincode id in the invocation spec: Fabric's gateway routes on it, so Evaluate is
    /// INVALID_ARGUMENT and Endorse FAILED_PRECONDITION (no endorser has chaincode "").
    NoChaincodeInSpec,
}

impl Refusal {
    /// The codes Evaluate may answer with.
    fn evaluate(self) -> &'static [Code] {
        match self {
            Refusal::Undecodable | Refusal::Malformed | Refusal::NoChaincodeInSpec => {
                &[Code::InvalidArgument]
            }
            Refusal::UnknownChannel => &[Code::NotFound],
            Refusal::Endorser => &[Code::FailedPrecondition],
        }
    }

    /// The codes Endorse may answer with.
    fn endorse(self) -> &'static [Code] {
        match self {
            Refusal::Undecodable | Refusal::Malformed => &[Code::InvalidArgument],
            Refusal::UnknownChannel => &[Code::NotFound],
            Refusal::Endorser => &[Code::Aborted],
            Refusal::NoChaincodeInSpec => &[Code::InvalidArgument, Code::FailedPrecondition],
        }
    }
}

/// A bad proposal, and who must refuse it.
struct BadProposal {
    what: &'static str,
    proposal: Option<protos::SignedProposal>,
    refusal: Refusal,
}

/// Every way a proposal can be bad that is not about the ledger's state.
fn bad_proposals(s: &Session) -> Vec<BadProposal> {
    let ids = &s.ids;
    let user = &ids.user;
    let good = s
        .contract()
        .proposal("AssetExists", &["nothing"])
        .expect("proposal")
        .signed_proposal()
        .clone();
    let parts = ProposalParts::of(&good);
    let with = |f: &dyn Fn(&mut ProposalParts)| {
        let mut p = parts.clone();
        f(&mut p);
        p.signed_by(user)
    };
    let mut out = vec![
        BadProposal {
            what: "no proposal at all",
            proposal: None,
            refusal: Refusal::Undecodable,
        },
        BadProposal {
            what: "empty proposal bytes",
            proposal: Some(protos::SignedProposal {
                proposal_bytes: Vec::new(),
                signature: user.sign(b""),
            }),
            refusal: Refusal::Undecodable,
        },
        BadProposal {
            what: "garbage proposal bytes",
            proposal: Some(signed(GARBAGE.to_vec(), user)),
            refusal: Refusal::Undecodable,
        },
        BadProposal {
            what: "garbage header",
            proposal: Some(signed(
                protos::Proposal {
                    header: GARBAGE.to_vec(),
                    payload: parts.payload.clone(),
                    extension: Vec::new(),
                }
                .encode_to_vec(),
                user,
            )),
            refusal: Refusal::Undecodable,
        },
        BadProposal {
            what: "garbage channel header",
            proposal: Some(signed(
                protos::Proposal {
                    header: common::Header {
                        channel_header: GARBAGE.to_vec(),
                        signature_header: parts.signature_header.encode_to_vec(),
                    }
                    .encode_to_vec(),
                    payload: parts.payload.clone(),
                    extension: Vec::new(),
                }
                .encode_to_vec(),
                user,
            )),
            refusal: Refusal::Undecodable,
        },
        BadProposal {
            what: "garbage proposal payload",
            proposal: Some(with(&|p| p.payload = GARBAGE.to_vec())),
            refusal: Refusal::Undecodable,
        },
        BadProposal {
            what: "no signature",
            proposal: Some(protos::SignedProposal {
                proposal_bytes: parts.bytes(),
                signature: Vec::new(),
            }),
            refusal: Refusal::Malformed,
        },
        BadProposal {
            what: "garbage chaincode header extension",
            proposal: Some(with(&|p| p.channel_header.extension = GARBAGE.to_vec())),
            refusal: Refusal::Malformed,
        },
        BadProposal {
            what: "no nonce",
            proposal: Some(with(&|p| {
                p.signature_header.nonce.clear();
                p.channel_header.tx_id =
                    gridledger_proto::compute_tx_id(&[], &p.signature_header.creator);
            })),
            refusal: Refusal::Malformed,
        },
        BadProposal {
            what: "no creator",
            proposal: Some(with(&|p| {
                p.signature_header.creator.clear();
                p.channel_header.tx_id =
                    gridledger_proto::compute_tx_id(&p.signature_header.nonce, &[]);
            })),
            refusal: Refusal::Malformed,
        },
        BadProposal {
            what: "tx id not bound to nonce and creator",
            proposal: Some(with(&|p| p.channel_header.tx_id = "0".repeat(64))),
            refusal: Refusal::Malformed,
        },
        BadProposal {
            what: "header type CONFIG_UPDATE",
            proposal: Some(with(&|p| {
                p.channel_header.r#type = common::HeaderType::ConfigUpdate as i32;
            })),
            refusal: Refusal::Malformed,
        },
        BadProposal {
            what: "epoch 1",
            proposal: Some(with(&|p| p.channel_header.epoch = 1)),
            refusal: Refusal::Malformed,
        },
        BadProposal {
            what: "no chaincode name",
            proposal: Some(with(&|p| p.channel_header.extension = Vec::new())),
            refusal: Refusal::Malformed,
        },
        BadProposal {
            what: "unknown channel",
            proposal: Some(with(&|p| {
                p.channel_header.channel_id = NO_SUCH_CHANNEL.into()
            })),
            refusal: Refusal::UnknownChannel,
        },
        BadProposal {
            what: "signature over other bytes",
            proposal: Some(protos::SignedProposal {
                proposal_bytes: parts.bytes(),
                signature: user.sign(b"something else"),
            }),
            refusal: Refusal::Endorser,
        },
        BadProposal {
            what: "high-S signature",
            proposal: Some(protos::SignedProposal {
                proposal_bytes: parts.bytes(),
                signature: to_high_s(&user.sign(&parts.bytes())).expect("high-S twin"),
            }),
            refusal: Refusal::Endorser,
        },
        BadProposal {
            what: "garbage signature",
            proposal: Some(protos::SignedProposal {
                proposal_bytes: parts.bytes(),
                signature: GARBAGE.to_vec(),
            }),
            refusal: Refusal::Endorser,
        },
        BadProposal {
            what: "garbage creator bytes",
            proposal: Some(with(&|p| {
                p.signature_header.creator = GARBAGE.to_vec();
                p.channel_header.tx_id =
                    gridledger_proto::compute_tx_id(&p.signature_header.nonce, GARBAGE);
            })),
            refusal: Refusal::Endorser,
        },
    ];
    // Identities the channel does not accept, each signing its own, well-formed proposal. The
    // peer identity fails the `peer/Propose` ACL, /Channel/Application/Writers (clients and
    // admins).
    for (what, signer) in [
        (
            "creator from an organization outside the channel",
            &ids.outsider,
        ),
        (
            "creator claims DSOMSP with a foreign certificate",
            &ids.impostor,
        ),
        (
            "creator is RetailerMSP's client claiming DSOMSP",
            &ids.cross_org,
        ),
        ("creator's certificate expired", &ids.expired),
        ("creator's certificate not yet valid", &ids.not_yet_valid),
        ("creator is a peer, not a Writer", &ids.peer),
    ] {
        out.push(BadProposal {
            what,
            proposal: Some(parts.clone().created_by(signer).signed_by(signer)),
            refusal: Refusal::Endorser,
        });
    }
    out
}

/// Proposals a gateway refuses although an endorser could process them (Fabric's endorser
/// takes the channel and chaincode from the header, its gateway from where it routes).
fn gateway_only_bad_proposals(s: &Session) -> Vec<BadProposal> {
    let user = &s.ids.user;
    let good = s
        .contract()
        .proposal("AssetExists", &["nothing"])
        .expect("proposal")
        .signed_proposal()
        .clone();
    let parts = ProposalParts::of(&good);
    let mut no_channel = parts.clone();
    no_channel.channel_header.channel_id.clear();
    let mut no_spec_name = parts.clone();
    let mut cpp =
        protos::ChaincodeProposalPayload::decode(parts.payload.as_slice()).expect("payload");
    let mut spec = protos::ChaincodeInvocationSpec::decode(cpp.input.as_slice()).expect("spec");
    if let Some(cs) = spec.chaincode_spec.as_mut() {
        cs.chaincode_id = None;
    }
    cpp.input = spec.encode_to_vec();
    no_spec_name.payload = cpp.encode_to_vec();
    vec![
        BadProposal {
            what: "no channel id",
            proposal: Some(no_channel.signed_by(user)),
            refusal: Refusal::UnknownChannel,
        },
        BadProposal {
            what: "no chaincode id in the invocation spec",
            proposal: Some(no_spec_name.signed_by(user)),
            refusal: Refusal::NoChaincodeInSpec,
        },
    ]
}

/// `value`'s debug form, cut to a readable length.
fn short(value: &impl std::fmt::Debug) -> String {
    let text = format!("{value:?}");
    match text.char_indices().nth(300) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// What a test found wrong. Tests record every mismatch and fail once, at the end of
/// [`Session::finish`], listing them all, so one wrong answer does not hide the others.
#[derive(Debug, Default)]
struct Findings(Vec<String>);

impl Findings {
    /// Records `what` unless `ok`.
    fn check(&mut self, ok: bool, what: String) {
        if !ok {
            self.0.push(what);
        }
    }

    /// Records a mismatch unless `got == expected`.
    fn equal<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: T, expected: T) {
        if got != expected {
            self.0.push(format!(
                "{what}: got {}, expected {}",
                short(&got),
                short(&expected)
            ));
        }
    }

    /// The call must fail with `code`.
    fn refused<T: std::fmt::Debug>(&mut self, what: &str, result: Result<T, Status>, code: Code) {
        self.refused_with(what, result, &[code]);
    }

    /// The call must fail with one of `codes`.
    fn refused_with<T: std::fmt::Debug>(
        &mut self,
        what: &str,
        result: Result<T, Status>,
        codes: &[Code],
    ) {
        match result {
            Ok(ok) => self.0.push(format!(
                "{what}: accepted ({}), expected {codes:?}",
                short(&ok)
            )),
            Err(status) if !codes.contains(&status.code()) => self.0.push(format!(
                "{what}: got {:?} ({}), expected {codes:?}",
                status.code(),
                status.message()
            )),
            Err(_) => {}
        }
    }

    /// How the Gateway answered a bad proposal: with one of the refusal's codes and, for an
    /// endorser's refusal, the endorser's reason as a `gateway.ErrorDetail` (as Fabric
    /// attaches it).
    fn refused_proposal<T: std::fmt::Debug>(
        &mut self,
        what: &str,
        result: Result<T, Status>,
        refusal: Refusal,
        codes: &[Code],
    ) {
        if let Err(status) = &result {
            if refusal == Refusal::Endorser && codes.contains(&status.code()) {
                let details: Vec<gateway::ErrorDetail> =
                    google::rpc::Status::decode(status.details())
                        .map(|rpc| {
                            rpc.details
                                .iter()
                                .filter_map(|any| {
                                    gateway::ErrorDetail::decode(any.value.as_slice()).ok()
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                self.check(
                    details.iter().any(|d| !d.message.is_empty()),
                    format!("{what}: no ErrorDetail giving the endorser's reason"),
                );
            }
        }
        self.refused_with(what, result, codes);
    }

    /// The SDK call must fail with a gateway status, one of `codes`.
    fn sdk_refused<T: std::fmt::Debug>(
        &mut self,
        what: &str,
        result: Result<T, SdkError>,
        codes: &[Code],
    ) {
        match result {
            Err(SdkError::Gateway { code, .. }) if codes.contains(&code) => {}
            other => self
                .0
                .push(format!("{what}: got {}, expected {codes:?}", short(&other))),
        }
    }

    /// The call must fail because the message is over the node's limit. tonic says
    /// OUT_OF_RANGE; grpc-go (Fabric) says RESOURCE_EXHAUSTED. Either is a clean refusal.
    fn too_large<T: std::fmt::Debug>(&mut self, what: &str, result: Result<T, Status>) {
        match result {
            Err(status) if matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted) => {}
            Err(status) => self.0.push(format!(
                "{what}: got {:?} ({}), expected OUT_OF_RANGE or RESOURCE_EXHAUSTED",
                status.code(),
                status.message()
            )),
            Ok(ok) => self.0.push(format!(
                "{what}: accepted ({}), expected OUT_OF_RANGE or RESOURCE_EXHAUSTED",
                short(&ok)
            )),
        }
    }
}

/// Runs `f`, failing the test if it takes longer than [`CALL_TIMEOUT`].
async fn timed<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {CALL_TIMEOUT:?}"))
}

/// An EvaluateRequest on `market` carrying `proposal`.
fn evaluate_request(proposal: Option<protos::SignedProposal>) -> gateway::EvaluateRequest {
    gateway::EvaluateRequest {
        transaction_id: String::new(),
        channel_id: CHANNEL.into(),
        proposed_transaction: proposal,
        target_organizations: Vec::new(),
    }
}

/// An EndorseRequest on `market` carrying `proposal`.
fn endorse_request(proposal: Option<protos::SignedProposal>) -> gateway::EndorseRequest {
    gateway::EndorseRequest {
        transaction_id: String::new(),
        channel_id: CHANNEL.into(),
        proposed_transaction: proposal,
        endorsing_organizations: Vec::new(),
    }
}

/// An envelope with a header of `header_type` on `channel` created by `signer` (tx id bound to
/// the nonce and creator), carrying `data`, signed by `signer`.
fn envelope(
    signer: &SigningIdentity,
    channel: &str,
    header_type: common::HeaderType,
    data: Vec<u8>,
) -> common::Envelope {
    let nonce = unique().into_bytes();
    let creator = signer.serialized().to_vec();
    let payload = common::Payload {
        header: Some(common::Header {
            channel_header: common::ChannelHeader {
                r#type: header_type as i32,
                version: 0,
                timestamp: Some(timestamp_now()),
                channel_id: channel.into(),
                tx_id: gridledger_proto::compute_tx_id(&nonce, &creator),
                epoch: 0,
                extension: Vec::new(),
                tls_cert_hash: Vec::new(),
            }
            .encode_to_vec(),
            signature_header: common::SignatureHeader { creator, nonce }.encode_to_vec(),
        }),
        data,
    }
    .encode_to_vec();
    common::Envelope {
        signature: signer.sign(&payload),
        payload,
    }
}

/// The tx id in an envelope's channel header, if it decodes and has one.
fn envelope_tx_id(envelope: &common::Envelope) -> Option<String> {
    let payload = common::Payload::decode(envelope.payload.as_slice()).ok()?;
    let header = common::ChannelHeader::decode(payload.header?.channel_header.as_slice()).ok()?;
    Some(header.tx_id).filter(|id| !id.is_empty())
}

/// The tx id in a signed proposal's channel header, if it decodes and has one.
fn proposal_tx_id(signed: &protos::SignedProposal) -> Option<String> {
    let proposal = protos::Proposal::decode(signed.proposal_bytes.as_slice()).ok()?;
    let header = common::Header::decode(proposal.header.as_slice()).ok()?;
    let channel_header = common::ChannelHeader::decode(header.channel_header.as_slice()).ok()?;
    Some(channel_header.tx_id).filter(|id| !id.is_empty())
}

/// The tx id in an envelope's channel header.
fn tx_id_of(envelope: &common::Envelope) -> String {
    let payload = common::Payload::decode(envelope.payload.as_slice()).expect("payload");
    let header = payload.header.expect("header");
    common::ChannelHeader::decode(header.channel_header.as_slice())
        .expect("channel header")
        .tx_id
}

/// The envelope's payload with its header's channel header changed, signed by `signer`.
fn with_channel_header(
    envelope: &common::Envelope,
    signer: &SigningIdentity,
    f: impl FnOnce(&mut common::ChannelHeader),
) -> common::Envelope {
    let mut payload = common::Payload::decode(envelope.payload.as_slice()).expect("payload");
    let header = payload.header.as_mut().expect("header");
    let mut channel_header =
        common::ChannelHeader::decode(header.channel_header.as_slice()).expect("channel header");
    f(&mut channel_header);
    header.channel_header = channel_header.encode_to_vec();
    let payload = payload.encode_to_vec();
    common::Envelope {
        signature: signer.sign(&payload),
        payload,
    }
}

/// A seek position of type `t`.
fn seek_position(t: orderer::seek_position::Type) -> orderer::SeekPosition {
    orderer::SeekPosition { r#type: Some(t) }
}

/// Block `number`.
fn specified(number: u64) -> orderer::SeekPosition {
    seek_position(orderer::seek_position::Type::Specified(
        orderer::SeekSpecified { number },
    ))
}

/// The newest block.
fn newest() -> orderer::SeekPosition {
    seek_position(orderer::seek_position::Type::Newest(orderer::SeekNewest {}))
}

/// The next block to be committed (peer Deliver only).
fn next_commit() -> orderer::SeekPosition {
    seek_position(orderer::seek_position::Type::NextCommit(
        orderer::SeekNextCommit {},
    ))
}

/// A SeekInfo from `start` to `stop` that fails rather than waits for missing blocks.
fn seek(start: orderer::SeekPosition, stop: orderer::SeekPosition) -> orderer::SeekInfo {
    orderer::SeekInfo {
        start: Some(start),
        stop: Some(stop),
        behavior: orderer::seek_info::SeekBehavior::FailIfNotReady as i32,
        error_response: 0,
        content_type: 0,
    }
}

/// A Deliver request as Fabric's clients build it: DELIVER_SEEK_INFO header (no tx id),
/// SeekInfo data, signed by `signer`.
fn seek_envelope(
    signer: &SigningIdentity,
    channel: &str,
    info: orderer::SeekInfo,
) -> common::Envelope {
    let payload = common::Payload {
        header: Some(common::Header {
            channel_header: common::ChannelHeader {
                r#type: common::HeaderType::DeliverSeekInfo as i32,
                timestamp: Some(timestamp_now()),
                channel_id: channel.into(),
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

/// One response of a Deliver stream, or how the stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Delivered {
    Status(common::Status),
    Block(u64),
    Other,
    /// The stream ended with this gRPC error.
    Error(Code),
    /// Nothing came within [`ANSWER_WAIT`].
    NoAnswer,
}

/// How long a Deliver stream may stay silent before the test calls it waiting.
const ANSWER_WAIT: Duration = Duration::from_secs(3);

/// A Deliver status response.
fn status_of(code: i32) -> Delivered {
    Delivered::Status(common::Status::try_from(code).unwrap_or(common::Status::Unknown))
}

/// Every response of `stream` until it ends, fails, or stays silent for [`ANSWER_WAIT`].
async fn drain<T>(
    stream: Result<tonic::Response<tonic::Streaming<T>>, Status>,
    convert: impl Fn(T) -> Delivered,
) -> Vec<Delivered> {
    let mut stream = match stream {
        Ok(s) => s.into_inner(),
        Err(status) => return vec![Delivered::Error(status.code())],
    };
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(ANSWER_WAIT, stream.message()).await {
            Ok(Ok(Some(message))) => out.push(convert(message)),
            Ok(Ok(None)) => return out,
            Ok(Err(status)) => {
                out.push(Delivered::Error(status.code()));
                return out;
            }
            Err(_) => {
                out.push(Delivered::NoAnswer);
                return out;
            }
        }
    }
}

/// Sends `envelopes` on one peer Deliver (or DeliverFiltered) stream, half-closes it, and
/// returns what comes back (see [`drain`]).
async fn peer_deliver(
    channel: &Channel,
    filtered: bool,
    envelopes: Vec<common::Envelope>,
) -> Vec<Delivered> {
    let mut client = protos::deliver_client::DeliverClient::new(channel.clone())
        .max_decoding_message_size(100 * 1024 * 1024);
    let requests = tokio_stream::iter(envelopes);
    let stream = timed("peer Deliver", async {
        if filtered {
            client.deliver_filtered(requests).await
        } else {
            client.deliver(requests).await
        }
    })
    .await;
    drain(stream, |response: protos::DeliverResponse| {
        match response.r#type {
            Some(protos::deliver_response::Type::Status(code)) => status_of(code),
            Some(protos::deliver_response::Type::Block(b)) => {
                Delivered::Block(b.header.map_or(u64::MAX, |h| h.number))
            }
            Some(protos::deliver_response::Type::FilteredBlock(b)) => Delivered::Block(b.number),
            _ => Delivered::Other,
        }
    })
    .await
}

/// Like [`peer_deliver`], against the orderer.
async fn orderer_deliver(channel: &Channel, envelopes: Vec<common::Envelope>) -> Vec<Delivered> {
    let mut client = orderer::atomic_broadcast_client::AtomicBroadcastClient::new(channel.clone())
        .max_decoding_message_size(100 * 1024 * 1024);
    let stream = timed(
        "orderer Deliver",
        client.deliver(tokio_stream::iter(envelopes)),
    )
    .await;
    drain(
        stream,
        |response: orderer::DeliverResponse| match response.r#type {
            Some(orderer::deliver_response::Type::Status(code)) => status_of(code),
            Some(orderer::deliver_response::Type::Block(b)) => {
                Delivered::Block(b.header.map_or(u64::MAX, |h| h.number))
            }
            None => Delivered::Other,
        },
    )
    .await
}

/// Sends `envelopes` on one Broadcast stream; returns the status of each response.
async fn broadcast(
    channel: &Channel,
    envelopes: Vec<common::Envelope>,
) -> Vec<(common::Status, String)> {
    let mut client = orderer::atomic_broadcast_client::AtomicBroadcastClient::new(channel.clone());
    let mut stream = timed("Broadcast", client.broadcast(tokio_stream::iter(envelopes)))
        .await
        .expect("the orderer accepts a Broadcast stream")
        .into_inner();
    let mut out = Vec::new();
    while let Some(response) = timed("Broadcast response", stream.message())
        .await
        .expect("the Broadcast stream ends cleanly")
    {
        out.push((
            common::Status::try_from(response.status).unwrap_or(common::Status::Unknown),
            response.info,
        ));
    }
    out
}

/// Deliver requests that must be refused, and the status each gets, for peer and orderer
/// alike (Fabric's peer and orderer share one handler, `common/deliver`).
fn bad_seeks(s: &Session) -> Vec<(&'static str, common::Envelope, common::Status)> {
    let ids = &s.ids;
    let user = &ids.user;
    let good = seek_envelope(user, CHANNEL, seek(specified(0), specified(0)));
    let resign = |payload: Vec<u8>| common::Envelope {
        signature: user.sign(&payload),
        payload,
    };
    let mut out = vec![
        (
            "empty envelope",
            common::Envelope::default(),
            common::Status::BadRequest,
        ),
        (
            "garbage payload",
            resign(GARBAGE.to_vec()),
            common::Status::BadRequest,
        ),
        (
            "payload without a header",
            resign(
                common::Payload {
                    header: None,
                    data: seek(specified(0), specified(0)).encode_to_vec(),
                }
                .encode_to_vec(),
            ),
            common::Status::BadRequest,
        ),
        (
            "garbage channel header",
            resign(
                common::Payload {
                    header: Some(common::Header {
                        channel_header: GARBAGE.to_vec(),
                        signature_header: Vec::new(),
                    }),
                    data: Vec::new(),
                }
                .encode_to_vec(),
            ),
            common::Status::BadRequest,
        ),
        // Fabric's deliver handler does not look at the header type; GridLedger insists on
        // DELIVER_SEEK_INFO.
        (
            "header type ENDORSER_TRANSACTION",
            with_channel_header(&good, user, |h| {
                h.r#type = common::HeaderType::EndorserTransaction as i32;
            }),
            common::Status::BadRequest,
        ),
        (
            "no timestamp",
            with_channel_header(&good, user, |h| h.timestamp = None),
            common::Status::BadRequest,
        ),
        (
            "timestamp an hour old",
            with_channel_header(&good, user, |h| {
                h.timestamp = Some(prost_types::Timestamp {
                    seconds: now_secs() - 3600,
                    nanos: 0,
                });
            }),
            common::Status::BadRequest,
        ),
        (
            "unknown channel",
            seek_envelope(user, NO_SUCH_CHANNEL, seek(specified(0), specified(0))),
            common::Status::NotFound,
        ),
        (
            "no signature",
            common::Envelope {
                payload: good.payload.clone(),
                signature: Vec::new(),
            },
            common::Status::Forbidden,
        ),
        (
            "signature over other bytes",
            common::Envelope {
                payload: good.payload.clone(),
                signature: user.sign(b"something else"),
            },
            common::Status::Forbidden,
        ),
        (
            "high-S signature",
            common::Envelope {
                payload: good.payload.clone(),
                signature: to_high_s(&good.signature).expect("high-S twin"),
            },
            common::Status::Forbidden,
        ),
        (
            "garbage creator",
            {
                let mut payload =
                    common::Payload::decode(good.payload.as_slice()).expect("payload");
                if let Some(header) = payload.header.as_mut() {
                    header.signature_header = common::SignatureHeader {
                        creator: GARBAGE.to_vec(),
                        nonce: Vec::new(),
                    }
                    .encode_to_vec();
                }
                resign(payload.encode_to_vec())
            },
            common::Status::Forbidden,
        ),
        (
            "garbage SeekInfo",
            {
                let mut payload =
                    common::Payload::decode(good.payload.as_slice()).expect("payload");
                payload.data = GARBAGE.to_vec();
                resign(payload.encode_to_vec())
            },
            common::Status::BadRequest,
        ),
        (
            "stop before start",
            seek_envelope(user, CHANNEL, seek(specified(1), specified(0))),
            common::Status::BadRequest,
        ),
        // Fabric's handler requires both positions.
        (
            "SeekInfo without a start",
            seek_envelope(
                user,
                CHANNEL,
                orderer::SeekInfo {
                    start: None,
                    ..seek(specified(0), specified(1_000))
                },
            ),
            common::Status::BadRequest,
        ),
        (
            "SeekInfo without a stop",
            seek_envelope(
                user,
                CHANNEL,
                orderer::SeekInfo {
                    stop: None,
                    ..seek(specified(0), specified(0))
                },
            ),
            common::Status::BadRequest,
        ),
        (
            "start beyond the chain, FAIL_IF_NOT_READY",
            seek_envelope(
                user,
                CHANNEL,
                seek(specified(1_000_000), specified(1_000_000)),
            ),
            common::Status::NotFound,
        ),
        // WIRE.md §3.3: a specified start above the height is NOT_FOUND, whatever the
        // behavior (Fabric's ledger iterator fails at once; only the next block is waited for).
        (
            "start beyond the chain, BLOCK_UNTIL_READY",
            seek_envelope(
                user,
                CHANNEL,
                orderer::SeekInfo {
                    behavior: orderer::seek_info::SeekBehavior::BlockUntilReady as i32,
                    ..seek(specified(1_000_000), specified(1_000_000))
                },
            ),
            common::Status::NotFound,
        ),
    ];
    for (what, signer) in [
        (
            "creator from an organization outside the channel",
            &ids.outsider,
        ),
        (
            "creator claims DSOMSP with a foreign certificate",
            &ids.impostor,
        ),
        (
            "creator is RetailerMSP's client claiming DSOMSP",
            &ids.cross_org,
        ),
        ("creator's certificate expired", &ids.expired),
        ("creator's certificate not yet valid", &ids.not_yet_valid),
    ] {
        out.push((
            what,
            seek_envelope(signer, CHANNEL, seek(specified(0), specified(0))),
            common::Status::Forbidden,
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Gateway
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn gateway_evaluate_refuses_bad_proposals() {
    let s = Session::open().await;
    let mut found = Findings::default();
    let mut client = s.gateway_client();
    for case in bad_proposals(&s)
        .into_iter()
        .chain(gateway_only_bad_proposals(&s))
    {
        let result = timed(case.what, client.evaluate(evaluate_request(case.proposal))).await;
        found.refused_proposal(
            &format!("Evaluate: {}", case.what),
            result,
            case.refusal,
            case.refusal.evaluate(),
        );
    }
    // An unknown chaincode: Fabric's discovery finds no peer that has it (FAILED_PRECONDITION);
    // WIRE.md §1.8 also allows ABORTED (the endorser's "chaincode not found").
    let unknown = s
        .dso()
        .gateway
        .network(CHANNEL)
        .contract("no-such-chaincode")
        .evaluate("AssetExists", &["x"])
        .await;
    found.sdk_refused(
        "Evaluate: unknown chaincode",
        unknown,
        &[Code::FailedPrecondition, Code::Aborted],
    );
    // A target organization outside the channel: no peer can evaluate. Fabric answers
    // FAILED_PRECONDITION ("no endorsing peers found"); WIRE.md §1.8 allows UNAVAILABLE too.
    let targeted = s
        .contract()
        .proposal_with(
            vec![b"AssetExists".to_vec(), b"x".to_vec()],
            Default::default(),
            vec!["OutsiderMSP".into()],
        )
        .expect("proposal")
        .evaluate()
        .await;
    found.sdk_refused(
        "Evaluate: target organization outside the channel",
        targeted,
        &[Code::FailedPrecondition, Code::Unavailable],
    );
    // A DSOMSP client freshly issued by DSOMSP's CA is accepted: the refusals of the expired
    // and not-yet-valid identities above are about their validity, not their issuer.
    let ca = dso_ca(s.net);
    let fresh = dso_client(&ca, "Fresh", now_secs() - 3600, now_secs() + 86_400);
    let answer = s
        .gateway_as(fresh)
        .network(CHANNEL)
        .contract(CHAINCODE)
        .evaluate("AssetExists", &["nothing"])
        .await;
    found.equal(
        "Evaluate by a valid DSOMSP client issued for the test",
        answer.map_err(|e| e.to_string()),
        Ok(b"false".to_vec()),
    );
    // A human can tell from the log who was refused and why; nothing reached a ledger.
    s.check_logged(
        &mut found,
        "peer0.dso",
        &["proposal refused", "Expired@DSOMSP", "is not valid at"],
    )
    .await;
    s.check_logged(
        &mut found,
        "peer0.dso",
        &["gateway request refused", "Evaluate"],
    )
    .await;
    s.finish(found).await;
}

#[tokio::test]
async fn gateway_endorse_refuses_bad_proposals() {
    let s = Session::open().await;
    let mut found = Findings::default();
    let mut client = s.gateway_client();
    for case in bad_proposals(&s)
        .into_iter()
        .chain(gateway_only_bad_proposals(&s))
    {
        let result = timed(case.what, client.endorse(endorse_request(case.proposal))).await;
        found.refused_proposal(
            &format!("Endorse: {}", case.what),
            result,
            case.refusal,
            case.refusal.endorse(),
        );
    }
    // An unknown chaincode, as for Evaluate.
    let unknown = s
        .dso()
        .gateway
        .network(CHANNEL)
        .contract("no-such-chaincode")
        .proposal("AssetExists", &["x"])
        .expect("proposal")
        .endorse()
        .await
        .map(|t| t.tx_id().to_owned());
    found.sdk_refused(
        "Endorse: unknown chaincode",
        unknown,
        &[Code::FailedPrecondition, Code::Aborted],
    );
    // An endorsing organization outside the channel. Fabric's gateway finds no such endorser
    // (UNAVAILABLE); GridLedger reports the failed endorsement as ABORTED with a detail naming
    // the organization.
    let proposal = s
        .contract()
        .proposal_with(
            vec![b"AssetExists".to_vec(), b"x".to_vec()],
            Default::default(),
            vec!["OutsiderMSP".into()],
        )
        .expect("proposal");
    found.sdk_refused(
        "Endorse: endorsing organization outside the channel",
        proposal.endorse().await.map(|t| t.tx_id().to_owned()),
        &[Code::Aborted],
    );
    s.check_logged(
        &mut found,
        "peer0.dso",
        &["gateway request refused", "Endorse"],
    )
    .await;
    for case in bad_proposals(&s) {
        if let Some(tx_id) = case.proposal.as_ref().and_then(proposal_tx_id) {
            s.check_unknown_tx(&mut found, case.what, &tx_id).await;
        }
    }
    s.finish(found).await;
}

#[tokio::test]
async fn committed_proposals_and_transactions_cannot_be_replayed() {
    let mut s = Session::open().await;
    let mut found = Findings::default();
    let asset = format!("replayed-{}", unique());
    let proposal = s
        .contract()
        .proposal("CreateAsset", &[&asset, "red", "3", "Alice", "10"])
        .expect("proposal");
    let tx = proposal.endorse().await.expect("endorse");
    let tx_id = tx.tx_id().to_owned();
    let replayed_envelope = tx.envelope().clone();
    let first = tx
        .submit()
        .await
        .expect("submit")
        .status()
        .await
        .expect("status");
    assert!(first.is_valid(), "{first:?}");
    s.expected.push((tx_id.clone(), 0));

    // The same signed proposal again, now that its tx id is committed: Fabric's endorser
    // refuses it ("duplicate transaction found"), which its gateway reports as it reports
    // every endorser refusal (see `Refusal::Endorser`).
    found.sdk_refused(
        "Evaluate of a committed proposal",
        proposal.evaluate().await,
        Refusal::Endorser.evaluate(),
    );
    found.sdk_refused(
        "Endorse of a committed proposal",
        proposal.endorse().await.map(|t| t.tx_id().to_owned()),
        Refusal::Endorser.endorse(),
    );
    let response = timed(
        "ProcessProposal of a committed proposal",
        s.endorser_client()
            .process_proposal(proposal.signed_proposal().clone()),
    )
    .await
    .expect("ProcessProposal answers with a ProposalResponse")
    .into_inner();
    let r = response.response.clone().unwrap_or_default();
    found.check(
        r.status == 500 && r.message.contains("duplicate") && response.endorsement.is_none(),
        format!("ProcessProposal of a committed proposal: 500 \"duplicate…\", no endorsement; got {response:?}"),
    );

    // The same signed transaction envelope again. Like Fabric's, the orderer does not look for
    // duplicates: it is ordered, and every peer records it as DUPLICATE_TXID without touching
    // the state; the tx id's commit status stays the first, VALID one.
    let mut client = s.gateway_client();
    timed(
        "Submit of a committed transaction",
        client.submit(gateway::SubmitRequest {
            transaction_id: tx_id.clone(),
            channel_id: CHANNEL.into(),
            prepared_transaction: Some(replayed_envelope),
        }),
    )
    .await
    .expect("ordering accepts a replayed envelope (the peers refuse it)");
    s.expect_in_block(&tx_id, protos::TxValidationCode::DuplicateTxid);
    // The next valid transaction is ordered after the replay, so this waits for it.
    s.submit_valid(&format!("after-replay-{}", unique())).await;
    let status = gridledger_sdk::commit_status(&s.dso().gateway, CHANNEL, &tx_id)
        .await
        .expect("commit status");
    found.equal("commit status after the replay", status, first);
    s.check_logged(
        &mut found,
        "peer0.dso",
        &["proposal refused", &tx_id, "duplicate transaction"],
    )
    .await;
    s.finish(found).await;
}

#[tokio::test]
async fn gateway_submit_refuses_bad_envelopes() {
    let mut s = Session::open().await;
    let mut found = Findings::default();
    let ids = &s.ids;
    let user = &ids.user;
    let mut client = s.gateway_client();
    let endorsed = s
        .contract()
        .proposal("CreateAsset", &["never-committed", "b", "1", "o", "1"])
        .expect("proposal")
        .endorse()
        .await
        .expect("endorse")
        .envelope()
        .clone();
    let payload = endorsed.payload.clone();
    let submit = |envelope: Option<common::Envelope>| gateway::SubmitRequest {
        transaction_id: String::new(),
        channel_id: CHANNEL.into(),
        prepared_transaction: envelope,
    };
    let resign = |payload: Vec<u8>, signer: &SigningIdentity| common::Envelope {
        signature: signer.sign(&payload),
        payload,
    };
    let transaction = |signer: &SigningIdentity| {
        Some(envelope(
            signer,
            CHANNEL,
            common::HeaderType::EndorserTransaction,
            Vec::new(),
        ))
    };
    let mut tampered = common::Payload::decode(payload.as_slice()).expect("payload");
    tampered.data.extend_from_slice(b"tampered");
    let cases: Vec<(&str, Option<common::Envelope>, Code)> = vec![
        ("no prepared transaction", None, Code::InvalidArgument),
        (
            "unsigned transaction",
            Some(common::Envelope {
                payload: payload.clone(),
                signature: Vec::new(),
            }),
            Code::InvalidArgument,
        ),
        // Fabric's gateway does not decode the envelope: it forwards it, and the orderer's
        // BAD_REQUEST comes back as ABORTED. GridLedger refuses it up front.
        (
            "garbage payload",
            Some(resign(GARBAGE.to_vec(), user)),
            Code::InvalidArgument,
        ),
        (
            "payload without a header",
            Some(resign(common::Payload::default().encode_to_vec(), user)),
            Code::InvalidArgument,
        ),
        // Fabric's gateway looks up the orderers of SubmitRequest.channel_id and answers
        // FAILED_PRECONDITION for an unknown one; GridLedger goes by the envelope's channel
        // header and answers NOT_FOUND (WIRE.md §1.8).
        (
            "unknown channel",
            Some(envelope(
                user,
                NO_SUCH_CHANNEL,
                common::HeaderType::EndorserTransaction,
                Vec::new(),
            )),
            Code::NotFound,
        ),
        // Refused by the orderer (a 4xx status): ABORTED, as in Fabric.
        (
            "signature over other bytes",
            Some(common::Envelope {
                payload: payload.clone(),
                signature: user.sign(b"something else"),
            }),
            Code::Aborted,
        ),
        (
            "high-S signature",
            Some(common::Envelope {
                payload: payload.clone(),
                signature: to_high_s(&user.sign(&payload)).expect("high-S twin"),
            }),
            Code::Aborted,
        ),
        (
            "tampered payload, original signature",
            Some(common::Envelope {
                payload: tampered.encode_to_vec(),
                signature: user.sign(&payload),
            }),
            Code::Aborted,
        ),
        (
            "creator from an organization outside the channel",
            transaction(&ids.outsider),
            Code::Aborted,
        ),
        (
            "creator claims DSOMSP with a foreign certificate",
            transaction(&ids.impostor),
            Code::Aborted,
        ),
        (
            "creator is RetailerMSP's client claiming DSOMSP",
            transaction(&ids.cross_org),
            Code::Aborted,
        ),
        (
            "creator's certificate expired",
            transaction(&ids.expired),
            Code::Aborted,
        ),
        (
            "creator's certificate not yet valid",
            transaction(&ids.not_yet_valid),
            Code::Aborted,
        ),
        (
            "creator is a peer, not a Writer",
            transaction(&ids.peer),
            Code::Aborted,
        ),
        (
            "larger than the channel's AbsoluteMaxBytes",
            Some(envelope(
                user,
                CHANNEL,
                common::HeaderType::EndorserTransaction,
                vec![0x2a; OVER_ABSOLUTE_MAX_BYTES],
            )),
            Code::Aborted,
        ),
    ];
    let mut refused_tx_ids = Vec::new();
    for (what, envelope, code) in cases {
        refused_tx_ids.extend(envelope.as_ref().and_then(envelope_tx_id));
        let result = timed(what, client.submit(submit(envelope))).await;
        found.refused(&format!("Submit: {what}"), result, code);
    }

    // A well-formed, properly signed envelope whose transaction is garbage passes ordering (the
    // orderer reads headers only, in Fabric too); the peers record it as
    // INVALID_ENDORSER_TRANSACTION (Fabric's ValidateTransaction) and CommitStatus says so.
    let garbage_tx = envelope(
        user,
        CHANNEL,
        common::HeaderType::EndorserTransaction,
        GARBAGE.to_vec(),
    );
    let garbage_tx_id = tx_id_of(&garbage_tx);
    timed(
        "Submit: garbage transaction",
        client.submit(submit(Some(garbage_tx))),
    )
    .await
    .expect("ordering accepts a well-signed envelope");
    let status = gridledger_sdk::commit_status(&s.dso().gateway, CHANNEL, &garbage_tx_id)
        .await
        .expect("commit status of the garbage transaction");
    found.equal(
        "commit status of a garbage transaction",
        status.code,
        protos::TxValidationCode::InvalidEndorserTransaction as i32,
    );
    s.expect_in_block(
        &garbage_tx_id,
        protos::TxValidationCode::InvalidEndorserTransaction,
    );
    s.check_logged(
        &mut found,
        "peer0.dso",
        &["gateway request refused", "Submit"],
    )
    .await;
    s.check_logged(&mut found, "orderer0", &["broadcast rejected", "FORBIDDEN"])
        .await;
    for tx_id in refused_tx_ids {
        s.check_unknown_tx(&mut found, "a refused Submit", &tx_id)
            .await;
    }
    s.finish(found).await;
}

#[tokio::test]
async fn gateway_commit_status_refuses_bad_requests() {
    let mut s = Session::open().await;
    let mut found = Findings::default();
    let (tx_id, block) = s.submit_valid(&format!("status-{}", unique())).await;
    let ids = &s.ids;
    let user = &ids.user;
    let mut client = s.gateway_client();
    let request = |signer: &SigningIdentity, channel: &str, tx_id: &str| {
        gateway::CommitStatusRequest {
            transaction_id: tx_id.into(),
            channel_id: channel.into(),
            identity: signer.serialized().to_vec(),
        }
        .encode_to_vec()
    };
    let signed = |request: Vec<u8>, signer: &SigningIdentity| gateway::SignedCommitStatusRequest {
        signature: signer.sign(&request),
        request,
    };
    let with_identity = |identity: Vec<u8>| {
        signed(
            gateway::CommitStatusRequest {
                transaction_id: tx_id.clone(),
                channel_id: CHANNEL.into(),
                identity,
            }
            .encode_to_vec(),
            user,
        )
    };
    let good = request(user, CHANNEL, &tx_id);
    let unsigned = |signature: Vec<u8>| gateway::SignedCommitStatusRequest {
        request: good.clone(),
        signature,
    };
    let mut cases: Vec<(&str, gateway::SignedCommitStatusRequest, Code)> = vec![
        (
            "empty request",
            gateway::SignedCommitStatusRequest::default(),
            Code::InvalidArgument,
        ),
        (
            "garbage request bytes",
            signed(GARBAGE.to_vec(), user),
            Code::InvalidArgument,
        ),
        (
            "no transaction id",
            signed(request(user, CHANNEL, ""), user),
            Code::InvalidArgument,
        ),
        (
            "no channel id",
            signed(request(user, "", &tx_id), user),
            Code::InvalidArgument,
        ),
        (
            "no identity",
            with_identity(Vec::new()),
            Code::InvalidArgument,
        ),
        // Fabric checks the ACL before looking at the channel, and the ACL of a channel it
        // does not know fails: PERMISSION_DENIED. GridLedger answers NOT_FOUND (WIRE.md §1.8).
        (
            "unknown channel",
            signed(request(user, NO_SUCH_CHANNEL, &tx_id), user),
            Code::NotFound,
        ),
        ("no signature", unsigned(Vec::new()), Code::PermissionDenied),
        (
            "signature over other bytes",
            unsigned(user.sign(b"something else")),
            Code::PermissionDenied,
        ),
        (
            "high-S signature",
            unsigned(to_high_s(&user.sign(&good)).expect("high-S twin")),
            Code::PermissionDenied,
        ),
        (
            "garbage identity",
            with_identity(GARBAGE.to_vec()),
            Code::PermissionDenied,
        ),
    ];
    for (what, signer) in [
        (
            "identity from an organization outside the channel",
            &ids.outsider,
        ),
        (
            "identity claims DSOMSP with a foreign certificate",
            &ids.impostor,
        ),
        ("identity's certificate expired", &ids.expired),
        ("identity's certificate not yet valid", &ids.not_yet_valid),
    ] {
        cases.push((
            what,
            signed(request(signer, CHANNEL, &tx_id), signer),
            Code::PermissionDenied,
        ));
    }
    for (what, request, code) in cases {
        let result = timed(what, client.commit_status(request)).await;
        found.refused(&format!("CommitStatus: {what}"), result, code);
    }
    // A peer identity is a Reader: it may ask.
    let response = timed(
        "CommitStatus by a peer identity",
        client.commit_status(signed(request(&ids.peer, CHANNEL, &tx_id), &ids.peer)),
    )
    .await
    .map(|r| {
        let r = r.into_inner();
        (r.result, r.block_number)
    })
    .map_err(|e| e.code());
    found.equal("CommitStatus by a peer identity", response, Ok((0, block)));
    // An unknown tx id is never answered with a default (VALID at block 0) response: the call
    // waits for the transaction until the client's deadline. A grpc-js client (Fabric's Node
    // SDK) reports its deadline as DEADLINE_EXCEEDED; tonic's client reports its own as
    // CANCELLED ("Timeout expired").
    let mut unknown = tonic::Request::new(signed(request(user, CHANNEL, &"f".repeat(64)), user));
    unknown.set_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let result = timed(
        "CommitStatus of an unknown tx id",
        client.commit_status(unknown),
    )
    .await;
    found.check(
        matches!(&result, Err(e) if matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled))
            && started.elapsed() >= Duration::from_millis(450),
        format!("CommitStatus of an unknown tx id waits for the deadline: got {result:?}"),
    );
    s.check_logged(
        &mut found,
        "peer0.dso",
        &["gateway request refused", "CommitStatus"],
    )
    .await;
    s.finish(found).await;
}

#[tokio::test]
async fn gateway_chaincode_events_refuses_bad_requests() {
    let s = Session::open().await;
    let mut found = Findings::default();
    let ids = &s.ids;
    let user = &ids.user;
    let mut client = s.gateway_client();
    let request = |signer: &SigningIdentity, channel: &str, chaincode: &str| {
        gateway::ChaincodeEventsRequest {
            channel_id: channel.into(),
            chaincode_id: chaincode.into(),
            identity: signer.serialized().to_vec(),
            start_position: Some(specified(0)),
            after_transaction_id: String::new(),
        }
        .encode_to_vec()
    };
    let signed =
        |request: Vec<u8>, signer: &SigningIdentity| gateway::SignedChaincodeEventsRequest {
            signature: signer.sign(&request),
            request,
        };
    let with = |f: &dyn Fn(&mut gateway::ChaincodeEventsRequest)| {
        let mut r =
            gateway::ChaincodeEventsRequest::decode(request(user, CHANNEL, CHAINCODE).as_slice())
                .expect("request");
        f(&mut r);
        signed(r.encode_to_vec(), user)
    };
    let good = request(user, CHANNEL, CHAINCODE);
    let unsigned = |signature: Vec<u8>| gateway::SignedChaincodeEventsRequest {
        request: good.clone(),
        signature,
    };
    let mut cases: Vec<(&str, gateway::SignedChaincodeEventsRequest, Code)> = vec![
        (
            "empty request",
            gateway::SignedChaincodeEventsRequest::default(),
            Code::InvalidArgument,
        ),
        (
            "garbage request bytes",
            signed(GARBAGE.to_vec(), user),
            Code::InvalidArgument,
        ),
        // Fabric checks no field itself: a missing identity or channel fails its ACL check
        // (PERMISSION_DENIED) and a missing chaincode name is a stream that never matches.
        // GridLedger answers INVALID_ARGUMENT, as Fabric does for CommitStatus.
        (
            "no chaincode",
            with(&|r| r.chaincode_id.clear()),
            Code::InvalidArgument,
        ),
        (
            "no channel",
            with(&|r| r.channel_id.clear()),
            Code::InvalidArgument,
        ),
        (
            "no identity",
            with(&|r| r.identity.clear()),
            Code::InvalidArgument,
        ),
        // WIRE.md §1.8: NOT_FOUND. (Fabric's ACL check comes first and fails for a channel it
        // does not know: PERMISSION_DENIED.)
        (
            "unknown channel",
            signed(request(user, NO_SUCH_CHANNEL, CHAINCODE), user),
            Code::NotFound,
        ),
        ("no signature", unsigned(Vec::new()), Code::PermissionDenied),
        (
            "signature over other bytes",
            unsigned(user.sign(b"something else")),
            Code::PermissionDenied,
        ),
        (
            "high-S signature",
            unsigned(to_high_s(&user.sign(&good)).expect("high-S twin")),
            Code::PermissionDenied,
        ),
        (
            "garbage identity",
            with(&|r| r.identity = GARBAGE.to_vec()),
            Code::PermissionDenied,
        ),
    ];
    for (what, signer) in [
        (
            "identity from an organization outside the channel",
            &ids.outsider,
        ),
        (
            "identity claims DSOMSP with a foreign certificate",
            &ids.impostor,
        ),
        ("identity's certificate expired", &ids.expired),
        ("identity's certificate not yet valid", &ids.not_yet_valid),
    ] {
        cases.push((
            what,
            signed(request(signer, CHANNEL, CHAINCODE), signer),
            Code::PermissionDenied,
        ));
    }
    for (what, request, code) in cases {
        let result = timed(what, client.chaincode_events(request)).await;
        found.refused(
            &format!("ChaincodeEvents: {what}"),
            result.map(|_| ()),
            code,
        );
    }
    // Fabric refuses the start positions oldest and newest (INVALID_ARGUMENT: only next_commit
    // and specified); GridLedger serves them (from block 0, from the newest block). No Fabric
    // client sends them, and serving them harms nothing.
    for (what, position) in [
        (
            "oldest",
            seek_position(orderer::seek_position::Type::Oldest(orderer::SeekOldest {})),
        ),
        ("newest", newest()),
    ] {
        let result = timed(
            what,
            client.chaincode_events(with(&|r| r.start_position = Some(position))),
        )
        .await;
        found.check(
            result.is_ok(),
            format!("ChaincodeEvents from {what}: {:?}", result.map(|_| ())),
        );
    }
    s.check_logged(
        &mut found,
        "peer0.dso",
        &["gateway request refused", "ChaincodeEvents"],
    )
    .await;
    s.finish(found).await;
}

// ---------------------------------------------------------------------------------------------
// Endorser
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn endorser_refuses_bad_proposals_with_a_500_response() {
    let s = Session::open().await;
    let mut found = Findings::default();
    let mut client = s.endorser_client();
    // Every refusal is a ProposalResponse with status 500, the reason as its message, and
    // neither endorsement nor payload. (Fabric's endorser answers so for an unknown channel
    // and a failed simulation; a proposal that does not unpack or fails its checks —
    // signature, creator, ACL, duplicate — it answers with a gRPC error instead, UNKNOWN
    // carrying the same message. GridLedger's one form for all refusals is its choice.)
    for case in bad_proposals(&s) {
        let proposal = case.proposal.unwrap_or_default();
        let result = timed(case.what, client.process_proposal(proposal)).await;
        match result {
            Err(status) => found.0.push(format!(
                "ProcessProposal: {}: gRPC error {:?} ({}), expected a 500 response",
                case.what,
                status.code(),
                status.message()
            )),
            Ok(response) => {
                let response = response.into_inner();
                let r = response.response.clone().unwrap_or_default();
                found.check(
                    r.status == 500
                        && !r.message.is_empty()
                        && response.endorsement.is_none()
                        && response.payload.is_empty(),
                    format!(
                        "ProcessProposal: {}: expected 500 with a reason, nothing endorsed; got {response:?}",
                        case.what
                    ),
                );
            }
        }
    }
    // A chaincode error is a response too, without an endorsement.
    let failing = s
        .contract()
        .proposal("ReadAsset", &["no-such-asset"])
        .expect("proposal");
    let response = timed(
        "ProcessProposal of a failing chaincode call",
        client.process_proposal(failing.signed_proposal().clone()),
    )
    .await
    .expect("ProcessProposal answers")
    .into_inner();
    found.check(
        response.response.as_ref().is_some_and(|r| r.status >= 400)
            && response.endorsement.is_none(),
        format!("ProcessProposal of a failing chaincode call: {response:?}"),
    );
    s.check_logged(
        &mut found,
        "peer0.dso",
        &["ProcessProposal refused with status 500", "access denied"],
    )
    .await;
    s.finish(found).await;
}

// ---------------------------------------------------------------------------------------------
// Deliver, peer and orderer
// ---------------------------------------------------------------------------------------------

/// The bad seek requests, one stream each, then what a stream does after a refusal.
/// `deliver` sends envelopes on one stream of the service under test.
async fn check_deliver<F, Fut>(s: &Session, service: &str, found: &mut Findings, deliver: F)
where
    F: Fn(Vec<common::Envelope>) -> Fut,
    Fut: std::future::Future<Output = Vec<Delivered>>,
{
    for (what, envelope, status) in bad_seeks(s) {
        found.equal(
            &format!("{service}: {what}"),
            deliver(vec![envelope]).await,
            vec![Delivered::Status(status)],
        );
    }
    // After a refusal GridLedger reads the next request on the stream and serves it; Fabric's
    // handler ends the stream after any status but SUCCESS. Either way, the refusal harms
    // nothing: here the third request — by a peer identity, which is a Reader — is served.
    let responses = deliver(vec![
        common::Envelope::default(),
        seek_envelope(&s.ids.outsider, CHANNEL, seek(specified(0), specified(0))),
        seek_envelope(&s.ids.peer, CHANNEL, seek(specified(0), specified(0))),
    ])
    .await;
    found.equal(
        &format!("{service}: one stream, two refusals, then a served request"),
        responses,
        vec![
            Delivered::Status(common::Status::BadRequest),
            Delivered::Status(common::Status::Forbidden),
            Delivered::Block(0),
            Delivered::Status(common::Status::Success),
        ],
    );
}

#[tokio::test]
async fn peer_deliver_refuses_bad_seek_requests() {
    let s = Session::open().await;
    let mut found = Findings::default();
    let channel = s.dso().channel.clone();
    for filtered in [false, true] {
        let service = if filtered {
            "peer DeliverFiltered"
        } else {
            "peer Deliver"
        };
        check_deliver(&s, service, &mut found, |envelopes| {
            peer_deliver(&channel, filtered, envelopes)
        })
        .await;
        // next_commit is a peer position: with FAIL_IF_NOT_READY the next block is not ready.
        let responses = peer_deliver(
            &channel,
            filtered,
            vec![seek_envelope(
                &s.ids.user,
                CHANNEL,
                seek(next_commit(), next_commit()),
            )],
        )
        .await;
        found.equal(
            &format!("{service}: next_commit, FAIL_IF_NOT_READY"),
            responses,
            vec![Delivered::Status(common::Status::NotFound)],
        );
    }
    s.check_logged(
        &mut found,
        "peer0.dso",
        &[
            "deliver request refused",
            "FORBIDDEN",
            "Mallory@OutsiderMSP",
        ],
    )
    .await;
    s.finish(found).await;
}

#[tokio::test]
async fn orderer_deliver_refuses_bad_seek_requests() {
    let s = Session::open().await;
    let mut found = Findings::default();
    check_deliver(&s, "orderer Deliver", &mut found, |envelopes| {
        orderer_deliver(&s.orderer, envelopes)
    })
    .await;
    // next_commit is a peer-only position.
    let responses = orderer_deliver(
        &s.orderer,
        vec![seek_envelope(
            &s.ids.user,
            CHANNEL,
            seek(next_commit(), next_commit()),
        )],
    )
    .await;
    found.equal(
        "orderer Deliver: next_commit",
        responses,
        vec![Delivered::Status(common::Status::BadRequest)],
    );
    s.check_logged(
        &mut found,
        "orderer0",
        &["deliver request rejected", "FORBIDDEN"],
    )
    .await;
    s.finish(found).await;
}

// ---------------------------------------------------------------------------------------------
// Orderer Broadcast
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn orderer_broadcast_refuses_bad_envelopes() {
    let mut s = Session::open().await;
    let mut found = Findings::default();
    let ids = &s.ids;
    let user = &ids.user;
    let tx = |signer: &SigningIdentity| {
        envelope(
            signer,
            CHANNEL,
            common::HeaderType::EndorserTransaction,
            GARBAGE.to_vec(),
        )
    };
    let good = tx(user);
    let resign = |payload: Vec<u8>| common::Envelope {
        signature: user.sign(&payload),
        payload,
    };
    let header_only = |channel_header: common::ChannelHeader, creator: Vec<u8>| {
        resign(
            common::Payload {
                header: Some(common::Header {
                    channel_header: channel_header.encode_to_vec(),
                    signature_header: common::SignatureHeader {
                        creator,
                        nonce: b"nonce".to_vec(),
                    }
                    .encode_to_vec(),
                }),
                data: Vec::new(),
            }
            .encode_to_vec(),
        )
    };
    let endorser_header = |channel: &str| common::ChannelHeader {
        r#type: common::HeaderType::EndorserTransaction as i32,
        channel_id: channel.into(),
        timestamp: Some(timestamp_now()),
        ..Default::default()
    };
    let unsigned = |signature: Vec<u8>| common::Envelope {
        payload: good.payload.clone(),
        signature,
    };
    let mut cases: Vec<(&str, common::Envelope, common::Status)> = vec![
        (
            "empty envelope",
            common::Envelope::default(),
            common::Status::BadRequest,
        ),
        (
            "garbage payload",
            resign(GARBAGE.to_vec()),
            common::Status::BadRequest,
        ),
        (
            "payload without a header",
            resign(common::Payload::default().encode_to_vec()),
            common::Status::BadRequest,
        ),
        (
            "garbage channel header",
            resign(
                common::Payload {
                    header: Some(common::Header {
                        channel_header: GARBAGE.to_vec(),
                        signature_header: Vec::new(),
                    }),
                    data: Vec::new(),
                }
                .encode_to_vec(),
            ),
            common::Status::BadRequest,
        ),
        (
            "no channel id",
            header_only(endorser_header(""), user.serialized().to_vec()),
            common::Status::BadRequest,
        ),
        (
            "unknown channel",
            envelope(
                user,
                NO_SUCH_CHANNEL,
                common::HeaderType::EndorserTransaction,
                Vec::new(),
            ),
            common::Status::NotFound,
        ),
        (
            "unknown header type 42",
            header_only(
                common::ChannelHeader {
                    r#type: 42,
                    ..endorser_header(CHANNEL)
                },
                user.serialized().to_vec(),
            ),
            common::Status::BadRequest,
        ),
        // Fabric's orderer orders any type it does not treat as config (the peers then mark it
        // invalid); GridLedger orders ENDORSER_TRANSACTIONs only.
        (
            "header type DELIVER_SEEK_INFO",
            seek_envelope(user, CHANNEL, seek(specified(0), specified(0))),
            common::Status::BadRequest,
        ),
        // Fabric's signature filter fails to deserialize an empty creator: FORBIDDEN. GridLedger
        // calls a missing creator malformed: BAD_REQUEST.
        (
            "no creator",
            header_only(endorser_header(CHANNEL), Vec::new()),
            common::Status::BadRequest,
        ),
        (
            "garbage creator",
            header_only(endorser_header(CHANNEL), GARBAGE.to_vec()),
            common::Status::Forbidden,
        ),
        (
            "no signature",
            unsigned(Vec::new()),
            common::Status::Forbidden,
        ),
        (
            "signature over other bytes",
            unsigned(user.sign(b"something else")),
            common::Status::Forbidden,
        ),
        (
            "high-S signature",
            unsigned(to_high_s(&good.signature).expect("high-S twin")),
            common::Status::Forbidden,
        ),
        (
            "creator from an organization outside the channel",
            tx(&ids.outsider),
            common::Status::Forbidden,
        ),
        (
            "creator claims DSOMSP with a foreign certificate",
            tx(&ids.impostor),
            common::Status::Forbidden,
        ),
        // Fabric's expiration rule runs first and answers BAD_REQUEST ("broadcast client
        // identity expired"); GridLedger's MSP refuses the identity: FORBIDDEN.
        (
            "creator's certificate expired",
            tx(&ids.expired),
            common::Status::Forbidden,
        ),
        (
            "creator's certificate not yet valid",
            tx(&ids.not_yet_valid),
            common::Status::Forbidden,
        ),
        // /Channel/Writers: clients and admins of the application organizations, members of
        // OrdererMSP; not peers.
        (
            "creator is a peer, not a Writer",
            tx(&ids.peer),
            common::Status::Forbidden,
        ),
        // Fabric's size filter answers BAD_REQUEST; GridLedger REQUEST_ENTITY_TOO_LARGE.
        (
            "larger than the channel's AbsoluteMaxBytes",
            envelope(
                user,
                CHANNEL,
                common::HeaderType::EndorserTransaction,
                vec![0x2a; OVER_ABSOLUTE_MAX_BYTES],
            ),
            common::Status::RequestEntityTooLarge,
        ),
    ];
    // All on one stream, as Fabric's clients use it: one response per envelope, in order, and
    // a refusal does not end the stream. The last envelope is a real endorsed transaction: it
    // is ordered and commits.
    let valid = s
        .contract()
        .proposal(
            "CreateAsset",
            &[&format!("broadcast-{}", unique()), "b", "1", "o", "1"],
        )
        .expect("proposal")
        .endorse()
        .await
        .expect("endorse");
    let valid_tx_id = valid.tx_id().to_owned();
    cases.push((
        "a valid endorsed transaction",
        valid.envelope().clone(),
        common::Status::Success,
    ));
    let envelopes = cases.iter().map(|(_, e, _)| e.clone()).collect();
    let responses = broadcast(&s.orderer, envelopes).await;
    assert_eq!(
        responses.len(),
        cases.len(),
        "one response per envelope: {responses:?}"
    );
    for ((what, _, status), (got, info)) in cases.iter().zip(&responses) {
        found.check(
            got == status && (*status == common::Status::Success || !info.is_empty()),
            format!("Broadcast: {what}: got {got:?} ({info}), expected {status:?} with a reason"),
        );
    }
    s.expected.push((valid_tx_id.clone(), 0));
    let status = gridledger_sdk::commit_status(&s.dso().gateway, CHANNEL, &valid_tx_id)
        .await
        .expect("commit status");
    found.check(
        status.is_valid(),
        format!("the valid broadcast transaction: {status:?}"),
    );
    s.check_logged(
        &mut found,
        "orderer0",
        &["broadcast rejected", "BAD_REQUEST"],
    )
    .await;
    s.finish(found).await;
}

// ---------------------------------------------------------------------------------------------
// Oversized messages
// ---------------------------------------------------------------------------------------------

/// A 200 MiB envelope (the signature does not matter: it is never read).
fn huge_envelope() -> common::Envelope {
    common::Envelope {
        payload: vec![0x2a; OVERSIZED],
        signature: b"sig".to_vec(),
    }
}

#[tokio::test]
async fn oversized_messages_are_refused_cleanly() {
    let s = Session::open().await;
    let mut found = Findings::default();
    let huge_proposal = protos::SignedProposal {
        proposal_bytes: vec![0x2a; OVERSIZED],
        signature: b"sig".to_vec(),
    };
    let result = timed(
        "Evaluate of 200 MiB",
        s.gateway_client()
            .evaluate(evaluate_request(Some(huge_proposal.clone()))),
    )
    .await;
    found.too_large("Evaluate of 200 MiB", result);
    let result = timed(
        "ProcessProposal of 200 MiB",
        s.endorser_client().process_proposal(huge_proposal),
    )
    .await;
    found.too_large("ProcessProposal of 200 MiB", result);
    let result = timed(
        "Submit of 200 MiB",
        s.gateway_client().submit(gateway::SubmitRequest {
            transaction_id: String::new(),
            channel_id: CHANNEL.into(),
            prepared_transaction: Some(huge_envelope()),
        }),
    )
    .await;
    found.too_large("Submit of 200 MiB", result);
    let result = timed(
        "ChaincodeEvents of 200 MiB",
        s.gateway_client()
            .chaincode_events(gateway::SignedChaincodeEventsRequest {
                request: vec![0x2a; OVERSIZED],
                signature: b"sig".to_vec(),
            }),
    )
    .await;
    found.too_large("ChaincodeEvents of 200 MiB", result.map(|_| ()));
    for path in [
        "/orderer.AtomicBroadcast/Broadcast",
        "/orderer.AtomicBroadcast/Deliver",
    ] {
        let result = timed(
            path,
            raw_call(&s.orderer, path, Kind::Bidi, vec![0x2a; OVERSIZED]),
        )
        .await;
        found.too_large(&format!("{path} of 200 MiB"), result);
    }
    // Refused by the framework before any handler ran: still a line with the method and the
    // client's address.
    s.check_logged(
        &mut found,
        "peer0.dso",
        &[
            "gRPC call refused",
            "/protos.Endorser/ProcessProposal",
            "client=127.0.0.1:",
        ],
    )
    .await;
    s.finish(found).await;
}

// ---------------------------------------------------------------------------------------------
// Bytes that are not the request message at all
// ---------------------------------------------------------------------------------------------

/// Sends and receives message bytes as they are, so a test can put bytes on the wire that do
/// not decode as the message the method expects.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
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

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// How a gRPC method is called.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Unary,
    ServerStreaming,
    Bidi,
}

/// Calls `path` on `channel` with `message` as the (only) request message, raw; returns the
/// first response message (`None` when a stream ends without one) or the error status.
async fn raw_call(
    channel: &Channel,
    path: &'static str,
    kind: Kind,
    message: Vec<u8>,
) -> Result<Option<Vec<u8>>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = PathAndQuery::from_static(path);
    let mut stream = match kind {
        Kind::Unary => {
            return grpc
                .unary(tonic::Request::new(message), path, RawCodec)
                .await
                .map(|r| Some(r.into_inner()));
        }
        Kind::ServerStreaming => {
            grpc.server_streaming(tonic::Request::new(message), path, RawCodec)
                .await?
        }
        Kind::Bidi => {
            grpc.streaming(
                tonic::Request::new(tokio_stream::iter(vec![message])),
                path,
                RawCodec,
            )
            .await?
        }
    }
    .into_inner();
    stream.message().await
}

#[tokio::test]
async fn requests_that_are_not_the_expected_message_are_refused() {
    let s = Session::open().await;
    let mut found = Findings::default();
    let peer = &s.dso().channel;
    // tonic, like grpc-go (Fabric), answers a request message that does not decode with
    // INTERNAL.
    let calls = [
        (peer, "/gateway.Gateway/Evaluate", Kind::Unary),
        (peer, "/gateway.Gateway/Endorse", Kind::Unary),
        (peer, "/gateway.Gateway/Submit", Kind::Unary),
        (peer, "/gateway.Gateway/CommitStatus", Kind::Unary),
        (
            peer,
            "/gateway.Gateway/ChaincodeEvents",
            Kind::ServerStreaming,
        ),
        (peer, "/protos.Endorser/ProcessProposal", Kind::Unary),
        (&s.orderer, "/orderer.AtomicBroadcast/Broadcast", Kind::Bidi),
        (&s.orderer, "/orderer.AtomicBroadcast/Deliver", Kind::Bidi),
    ];
    for (channel, path, kind) in calls {
        let result = timed(path, raw_call(channel, path, kind, GARBAGE.to_vec())).await;
        found.refused(
            &format!("{path} of bytes that do not decode"),
            result,
            Code::Internal,
        );
    }
    // A method no node serves.
    let result = timed(
        "unknown method",
        raw_call(
            peer,
            "/gateway.Gateway/NoSuchMethod",
            Kind::Unary,
            Vec::new(),
        ),
    )
    .await;
    found.refused("/gateway.Gateway/NoSuchMethod", result, Code::Unimplemented);
    for needles in [
        ["gRPC call refused", "/gateway.Gateway/Evaluate", "INTERNAL"],
        [
            "gRPC call refused",
            "/gateway.Gateway/NoSuchMethod",
            "UNIMPLEMENTED",
        ],
    ] {
        s.check_logged(&mut found, "peer0.dso", &needles).await;
    }
    s.finish(found).await;
}

/// The peer's Deliver must end a stream whose request cannot be read — it does not decode, or
/// it is larger than the peer accepts — with that error status, as the orderer's Deliver and
/// every other service do (Fabric's handler returns its Recv error the same way). Ending the
/// stream as if it had been served leaves the client without a reason.
#[tokio::test]
async fn peer_deliver_ends_unreadable_request_streams_with_an_error() {
    let s = Session::open().await;
    let mut found = Findings::default();
    let peer = &s.dso().channel;
    for path in ["/protos.Deliver/Deliver", "/protos.Deliver/DeliverFiltered"] {
        let result = timed(path, raw_call(peer, path, Kind::Bidi, GARBAGE.to_vec())).await;
        found.refused(
            &format!("{path} of bytes that do not decode"),
            result,
            Code::Internal,
        );
        let result = timed(
            path,
            raw_call(peer, path, Kind::Bidi, vec![0x2a; OVERSIZED]),
        )
        .await;
        found.too_large(&format!("{path} of 200 MiB"), result);
    }
    s.finish(found).await;
}

// ---------------------------------------------------------------------------------------------
// Revoked certificates
// ---------------------------------------------------------------------------------------------

/// Runs `gridledger ARGS`, which must succeed; its standard output.
fn gridledger_ok(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gridledger"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run gridledger");
    assert!(
        out.status.success(),
        "gridledger {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A path as a `&str` argument.
fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// The channel's current config, from its latest config block on DSOMSP's peer
/// (`gridledger channel fetch --config`).
fn current_config(net: &Network) -> common::Config {
    let file = net.path(&format!("config-{}.block", unique()));
    let network = net.path("network.json");
    gridledger_ok(&[
        "channel",
        "fetch",
        "--network",
        arg(&network),
        "--channel",
        CHANNEL,
        "--org",
        "DSOMSP",
        "--config",
        "-o",
        arg(&file),
    ]);
    let bytes = std::fs::read(&file).expect("read the config block");
    let block = common::Block::decode(bytes.as_slice()).expect("a block");
    let data = block.data.expect("block data").data;
    let envelope = common::Envelope::decode(data[0].as_slice()).expect("an envelope");
    let payload = common::Payload::decode(envelope.payload.as_slice()).expect("a payload");
    common::ConfigEnvelope::decode(payload.data.as_slice())
        .expect("a config envelope")
        .config
        .expect("a config")
}

/// Every message a refused call carries: the status message and each `gateway.ErrorDetail`.
fn status_text(status: &Status) -> String {
    let mut text = status.message().to_owned();
    if let Ok(rpc) = google::rpc::Status::decode(status.details()) {
        for any in &rpc.details {
            if let Ok(detail) = gateway::ErrorDetail::decode(any.value.as_slice()) {
                text.push_str(" | ");
                text.push_str(&detail.message);
            }
        }
    }
    text
}

impl Session {
    /// Block `number` of peer0.dso's ledger (qscc GetBlockByNumber).
    async fn block(&self, number: u64) -> common::Block {
        let bytes = self
            .dso()
            .gateway
            .network(CHANNEL)
            .contract("qscc")
            .evaluate("GetBlockByNumber", &[CHANNEL, &number.to_string()])
            .await
            .unwrap_or_else(|e| panic!("block {number}: {e}"));
        common::Block::decode(bytes.as_slice()).expect("a block")
    }

    /// Records a finding unless no peer knows `tx_id` (qscc GetTransactionByID fails on
    /// every one): a refused request left no transaction behind.
    async fn check_unknown_tx(&self, found: &mut Findings, what: &str, tx_id: &str) {
        for peer in &self.peers {
            let answer = peer
                .gateway
                .network(CHANNEL)
                .contract("qscc")
                .evaluate("GetTransactionByID", &[CHANNEL, tx_id])
                .await;
            found.check(
                answer.is_err(),
                format!("{what}: {} knows transaction {tx_id}", peer.name),
            );
        }
    }

    /// Records a finding unless `node`'s log gets a line holding every one of `needles`
    /// within a few seconds (log lines are written as they happen, but the test may be a
    /// moment ahead of the node).
    async fn check_logged(&self, found: &mut Findings, node: &str, needles: &[&str]) {
        let file = self.net.path(&format!("logs/{node}.log"));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if text.lines().any(|l| needles.iter().all(|n| l.contains(n))) {
                return;
            }
            if Instant::now() > deadline {
                let near: Vec<&str> = text
                    .lines()
                    .filter(|l| needles.first().is_some_and(|n| l.contains(n)))
                    .take(5)
                    .collect();
                found.0.push(format!(
                    "{node} logged no line holding all of {needles:?}; lines with the first: {near:#?}"
                ));
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Puts `crl_pem` on `msp_id`'s revocation list in the channel config: computes the
    /// update from the current config, has the organization's admin sign it (an
    /// organization's MSP value is changed under its own Admins policy) and submit it, and
    /// waits for the config block on its peer, whose transaction the final check expects.
    async fn add_revocation_list(&mut self, msp_id: &str, crl_pem: &str) {
        let current = current_config(self.net);
        let mut desired = current.clone();
        let value = desired
            .channel_group
            .as_mut()
            .and_then(|g| g.groups.get_mut("Application"))
            .and_then(|a| a.groups.get_mut(msp_id))
            .and_then(|o| o.values.get_mut("MSP"))
            .expect("the organization's MSP value");
        let mut msp_config =
            gridledger_proto::msp::MspConfig::decode(value.value.as_slice()).expect("MSPConfig");
        let mut fabric =
            gridledger_proto::msp::FabricMspConfig::decode(msp_config.config.as_slice())
                .expect("FabricMSPConfig");
        fabric.revocation_list.push(crl_pem.as_bytes().to_vec());
        msp_config.config = fabric.encode_to_vec();
        value.value = msp_config.encode_to_vec();
        let update = gridledger_channels::update::compute_update(CHANNEL, &current, &desired)
            .expect("compute the config update");
        let file = self.net.path(&format!("crl-{}.pb", unique()));
        std::fs::write(
            &file,
            gridledger_channels::update::new_envelope(&update).encode_to_vec(),
        )
        .expect("write the update file");
        let network = self.net.path("network.json");
        gridledger_ok(&[
            "channel",
            "update",
            "sign",
            "--network",
            arg(&network),
            "--org",
            msp_id,
            "--file",
            arg(&file),
        ]);
        let before = self.height().await;
        gridledger_ok(&[
            "channel",
            "update",
            "submit",
            "--network",
            arg(&network),
            "--channel",
            CHANNEL,
            "--org",
            msp_id,
            "--file",
            arg(&file),
        ]);
        let after = self.height().await;
        for number in before..after {
            for (tx_id, code) in block_transactions(&self.block(number).await) {
                assert_eq!(code, 0, "the config transaction {tx_id} is VALID");
                self.expected.push((tx_id, code));
            }
        }
    }
}

/// A client's certificate revoked by its organization's CA, once the CRL is in the
/// organization's MSP in the channel config, is refused everywhere it shows up: its proposals
/// by the Gateway (Evaluate FAILED_PRECONDITION, Endorse ABORTED, the reason naming the
/// revocation in an ErrorDetail) and by the endorser (a 500 response), and a transaction it
/// signed (endorsed before the revocation) by the ordering service (FORBIDDEN; the Gateway's
/// Submit ABORTED). Fabric refuses at the same points; a revoked creator's transaction that
/// reached a block anyway would be BAD_CREATOR_SIGNATURE (the validation unit tests cover
/// that). None of it leaves a transaction on any peer; the refusals are logged with the
/// identity and the reason; another client of the same organization keeps working.
#[tokio::test]
async fn revoked_certificates_are_refused_once_the_channel_config_lists_them() {
    let mut s = Session::open().await;
    let mut found = Findings::default();
    let ca = dso_ca(s.net);
    let now = now_secs();
    let issued = ca
        .issue(
            "DSOMSP",
            &LeafSpec::new(
                "Revoked@DSOMSP",
                Some(Role::Client),
                now - 3600,
                now + 86_400,
            ),
        )
        .expect("issue the client to revoke");
    let revoked = || {
        SigningIdentity::from_pem(
            "DSOMSP",
            issued.cert_pem.as_bytes(),
            issued.key_pem.as_bytes(),
        )
        .expect("the revoked client's signer")
    };
    let colleague = dso_client(&ca, "Colleague", now - 3600, now + 86_400);

    // Before the revocation the client is a Writer like any other: it endorses a transaction
    // (kept, and submitted after the revocation).
    let early = s
        .gateway_as(revoked())
        .network(CHANNEL)
        .contract(CHAINCODE)
        .proposal(
            "CreateAsset",
            &[&format!("revoked-early-{}", unique()), "red", "1", "R", "1"],
        )
        .expect("proposal")
        .endorse()
        .await
        .expect("the client endorses before its revocation");
    let early_tx_id = early.tx_id().to_owned();
    let early_envelope = early.envelope().clone();

    let crl = ca
        .revocation_list(std::slice::from_ref(&issued.serial), now - 60)
        .expect("a CRL");
    s.add_revocation_list("DSOMSP", &crl).await;

    // Its proposals, through the Gateway and the endorser.
    let proposal = s
        .gateway_as(revoked())
        .network(CHANNEL)
        .contract(CHAINCODE)
        .proposal(
            "CreateAsset",
            &[&format!("revoked-late-{}", unique()), "red", "1", "R", "1"],
        )
        .expect("proposal");
    let late_tx_id = proposal.tx_id().to_owned();
    let signed = proposal.signed_proposal().clone();
    let mut client = s.gateway_client();
    let evaluated = timed(
        "Evaluate by a revoked client",
        client.evaluate(evaluate_request(Some(signed.clone()))),
    )
    .await;
    if let Err(status) = &evaluated {
        found.check(
            status_text(status).contains("revoked"),
            format!("Evaluate by a revoked client: the reason names the revocation: {status:?}"),
        );
    }
    found.refused_proposal(
        "Evaluate by a revoked client",
        evaluated,
        Refusal::Endorser,
        Refusal::Endorser.evaluate(),
    );
    let endorsed = timed(
        "Endorse by a revoked client",
        client.endorse(endorse_request(Some(signed.clone()))),
    )
    .await;
    if let Err(status) = &endorsed {
        found.check(
            status_text(status).contains("revoked"),
            format!("Endorse by a revoked client: the reason names the revocation: {status:?}"),
        );
    }
    found.refused_proposal(
        "Endorse by a revoked client",
        endorsed,
        Refusal::Endorser,
        Refusal::Endorser.endorse(),
    );
    let response = timed(
        "ProcessProposal by a revoked client",
        s.endorser_client().process_proposal(signed),
    )
    .await
    .expect("ProcessProposal answers with a ProposalResponse")
    .into_inner();
    let r = response.response.clone().unwrap_or_default();
    found.check(
        r.status == 500 && r.message.contains("revoked") && response.endorsement.is_none(),
        format!("ProcessProposal by a revoked client: 500 naming the revocation, no endorsement; got {response:?}"),
    );

    // The transaction it had endorsed before: through the Gateway, and straight to the
    // ordering service.
    let submitted = timed(
        "Submit of a revoked client's transaction",
        client.submit(gateway::SubmitRequest {
            transaction_id: early_tx_id.clone(),
            channel_id: CHANNEL.into(),
            prepared_transaction: Some(early_envelope.clone()),
        }),
    )
    .await;
    found.refused(
        "Submit of a revoked client's transaction",
        submitted,
        Code::Aborted,
    );
    let answers = broadcast(&s.orderer, vec![early_envelope]).await;
    found.check(
        answers.len() == 1 && answers[0].0 == common::Status::Forbidden,
        format!("Broadcast of a revoked client's transaction: FORBIDDEN; got {answers:?}"),
    );

    // Nothing of it reached a ledger; the refusals are logged with who and why.
    s.check_unknown_tx(
        &mut found,
        "revoked client's endorsed transaction",
        &early_tx_id,
    )
    .await;
    s.check_unknown_tx(&mut found, "revoked client's proposal", &late_tx_id)
        .await;
    s.check_logged(
        &mut found,
        "peer0.dso",
        &[
            "proposal refused",
            &late_tx_id,
            "Revoked@DSOMSP",
            "revoked by MSP",
        ],
    )
    .await;
    s.check_logged(
        &mut found,
        "peer0.dso",
        &["gateway request refused", "Endorse", "revoked"],
    )
    .await;
    s.check_logged(
        &mut found,
        "orderer0",
        &["broadcast rejected", &early_tx_id],
    )
    .await;

    // Another client of the same organization is unaffected.
    let asset = format!("colleague-{}", unique());
    let tx = s
        .gateway_as(colleague)
        .network(CHANNEL)
        .contract(CHAINCODE)
        .proposal("CreateAsset", &[&asset, "green", "2", "C", "2"])
        .expect("proposal")
        .endorse()
        .await;
    match tx {
        Ok(tx) => {
            let tx_id = tx.tx_id().to_owned();
            let status = tx.submit().await.expect("submit").status().await;
            found.check(
                matches!(&status, Ok(st) if st.is_valid()),
                format!("a non-revoked DSOMSP client's transaction commits VALID: {status:?}"),
            );
            s.expected.push((tx_id, 0));
        }
        Err(e) => found.0.push(format!(
            "a non-revoked DSOMSP client is refused after the revocation: {e}"
        )),
    }
    s.finish(found).await;
}

// ---------------------------------------------------------------------------------------------
// Deep nesting
// ---------------------------------------------------------------------------------------------

/// Far deeper than any legitimate message, and than the protobuf decoder's recursion limit
/// (100).
const ABSURD_DEPTH: usize = 10_000;

/// Appends a protobuf field key.
fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u32) {
    gridledger_proto::prost::encoding::encode_varint(u64::from(field << 3 | wire_type), out);
}

/// A length-delimited field holding `inner`.
fn length_delimited(field: u32, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(inner.len() + 8);
    put_key(&mut out, field, 2);
    gridledger_proto::prost::encoding::encode_varint(inner.len() as u64, &mut out);
    out.extend_from_slice(inner);
    out
}

/// A `SignaturePolicy` that is `n_out_of{1, [...]}` `depth` times around `signed_by: 0`, built
/// byte by byte from the inside out (encoding such a message as a struct would recurse as
/// deep).
fn deep_signature_policy(depth: usize) -> Vec<u8> {
    // signed_by (field 1) = 0
    let mut inner = vec![0x08, 0x00];
    for _ in 0..depth {
        // NOutOf{n (field 1) = 1, rules (field 2) = [inner]}
        let mut n_out_of = vec![0x08, 0x01];
        n_out_of.extend(length_delimited(2, &inner));
        // SignaturePolicy{n_out_of (field 2)}
        inner = length_delimited(2, &n_out_of);
    }
    inner
}

/// A `SignaturePolicyEnvelope` over `DSOMSP.member` whose rule is [`deep_signature_policy`].
fn deep_policy_envelope(depth: usize) -> Vec<u8> {
    let mut envelope = gridledger_channels::policy::parse("OR('DSOMSP.member')").expect("a policy");
    envelope.rule = None;
    let mut bytes = envelope.encode_to_vec();
    bytes.extend(length_delimited(2, &deep_signature_policy(depth)));
    bytes
}

/// A `ConfigGroup` whose only child group `g` has a child group `g`, `depth` times.
fn deep_config_group(depth: usize) -> Vec<u8> {
    let mut inner = Vec::new();
    for _ in 0..depth {
        // A groups (field 2) map entry {key (1) = "g", value (2) = inner}.
        let mut entry = length_delimited(1, b"g");
        entry.extend(length_delimited(2, &inner));
        inner = length_delimited(2, &entry);
    }
    inner
}

/// `depth` nested start-groups of an unknown field (15), closed again: valid protobuf that
/// every decoder must skip, recursing once per level.
fn deep_unknown_groups(depth: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(depth * 2);
    for _ in 0..depth {
        put_key(&mut out, 15, 3);
    }
    for _ in 0..depth {
        put_key(&mut out, 15, 4);
    }
    out
}

/// A CONFIG_UPDATE envelope for `market` carrying `config_update` (bytes, whatever they are),
/// signed by the admins of `signers` and submitted by the first.
fn config_update_envelope(
    s: &Session,
    config_update: Vec<u8>,
    signers: &[&str],
) -> common::Envelope {
    let mut envelope = common::ConfigUpdateEnvelope {
        config_update,
        signatures: Vec::new(),
    };
    let nonce = || {
        let mut nonce = [0u8; gridledger_channels::update::NONCE_LEN];
        let fresh = unique();
        for (i, b) in fresh.bytes().enumerate() {
            nonce[i % nonce.len()] ^= b;
        }
        nonce
    };
    for msp_id in signers {
        gridledger_channels::update::sign(&mut envelope, &s.net.member(msp_id, "admins"), nonce());
    }
    gridledger_channels::update::config_update_transaction(
        CHANNEL,
        &envelope,
        &s.net.member(signers[0], "admins"),
        nonce(),
        timestamp_now(),
    )
}

/// A config update setting /Channel/Application/Writers to a signature policy whose rule
/// nests `depth` levels, signed by a majority of the application organizations' admins (so
/// it is refused for its content, not its signatures).
fn deep_writers_update(s: &Session, depth: usize) -> common::Envelope {
    let current = current_config(s.net);
    let mut desired = current.clone();
    let writers = desired
        .channel_group
        .as_mut()
        .and_then(|g| g.groups.get_mut("Application"))
        .and_then(|a| a.policies.get_mut("Writers"))
        .and_then(|p| p.policy.as_mut())
        .expect("/Channel/Application/Writers");
    writers.r#type = common::policy::PolicyType::Signature as i32;
    writers.value = deep_policy_envelope(depth);
    let update = gridledger_channels::update::compute_update(CHANNEL, &current, &desired)
        .expect("compute the update");
    config_update_envelope(s, update.encode_to_vec(), &["DSOMSP", "RetailerMSP"])
}

/// Messages nested far deeper than any legitimate input — a chaincode input carrying unknown
/// groups 10,000 deep, config updates with a ConfigGroup tree or a signature policy 10,000
/// deep, a chaincode definition whose endorsement policy nests 10,000 deep — are refused with
/// a clear error, not a stack overflow: Evaluate and Endorse INVALID_ARGUMENT, ProcessProposal
/// 500, Broadcast BAD_REQUEST, the lifecycle's refusal ABORTED. The nodes stay up, log what
/// they refused and commit nothing of it.
///
/// The protobuf decoder refuses messages nested more than 100 deep, so every tree the nodes
/// walk after decoding (config groups, signature policies: two messages per level) is at most
/// about 50 levels deep; policy text, which does not go through the decoder, is bounded by
/// the policy parser's own 64-level limit.
#[tokio::test]
async fn deeply_nested_messages_are_refused_cleanly() {
    let s = Session::open().await;
    let mut found = Findings::default();

    // A chaincode input with unknown groups nested 10,000 deep.
    let proposal = s
        .contract()
        .proposal("AssetExists", &["deep"])
        .expect("proposal");
    let mut parts = ProposalParts::of(proposal.signed_proposal());
    let mut payload =
        protos::ChaincodeProposalPayload::decode(parts.payload.as_slice()).expect("payload");
    let mut spec =
        protos::ChaincodeInvocationSpec::decode(payload.input.as_slice()).expect("invocation");
    let input = spec
        .chaincode_spec
        .as_mut()
        .and_then(|c| c.input.take())
        .expect("a chaincode input");
    let mut input_bytes = input.encode_to_vec();
    input_bytes.extend(deep_unknown_groups(ABSURD_DEPTH));
    // ChaincodeInvocationSpec{chaincode_spec (1): ChaincodeSpec{..., input (3): bytes}}.
    let mut spec_bytes = spec
        .chaincode_spec
        .clone()
        .expect("a chaincode spec")
        .encode_to_vec();
    spec_bytes.extend(length_delimited(3, &input_bytes));
    payload.input = length_delimited(1, &spec_bytes);
    parts.payload = payload.encode_to_vec();
    let deep_proposal = parts.signed_by(&s.ids.user);
    let deep_tx_id = parts.channel_header.tx_id.clone();
    let mut client = s.gateway_client();
    let evaluated = timed(
        "Evaluate: chaincode input nested 10,000 deep",
        client.evaluate(evaluate_request(Some(deep_proposal.clone()))),
    )
    .await;
    found.refused(
        "Evaluate: chaincode input nested 10,000 deep",
        evaluated,
        Code::InvalidArgument,
    );
    let endorsed = timed(
        "Endorse: chaincode input nested 10,000 deep",
        client.endorse(endorse_request(Some(deep_proposal.clone()))),
    )
    .await;
    found.refused(
        "Endorse: chaincode input nested 10,000 deep",
        endorsed,
        Code::InvalidArgument,
    );
    let response = timed(
        "ProcessProposal: chaincode input nested 10,000 deep",
        s.endorser_client().process_proposal(deep_proposal),
    )
    .await
    .expect("ProcessProposal answers with a ProposalResponse")
    .into_inner();
    let r = response.response.clone().unwrap_or_default();
    found.check(
        r.status == 500 && response.endorsement.is_none(),
        format!("ProcessProposal: chaincode input nested 10,000 deep: 500; got {response:?}"),
    );
    s.check_unknown_tx(
        &mut found,
        "chaincode input nested 10,000 deep",
        &deep_tx_id,
    )
    .await;
    s.check_logged(
        &mut found,
        "peer0.dso",
        &["gateway request refused", "Evaluate", "recursion limit"],
    )
    .await;

    // Config updates, straight to the ordering service.
    let deep_groups = {
        let mut update = length_delimited(1, CHANNEL.as_bytes());
        update.extend(length_delimited(3, &deep_config_group(ABSURD_DEPTH)));
        update
    };
    let cases: Vec<(&str, common::Envelope)> = vec![
        (
            "config update whose write set nests groups 10,000 deep",
            config_update_envelope(&s, deep_groups, &["DSOMSP", "RetailerMSP"]),
        ),
        (
            "config update whose Writers policy nests 10,000 deep",
            deep_writers_update(&s, ABSURD_DEPTH),
        ),
    ];
    for (what, envelope) in cases {
        let tx_id = tx_id_of(&envelope);
        let answers = broadcast(&s.orderer, vec![envelope]).await;
        found.check(
            answers.len() == 1 && answers[0].0 == common::Status::BadRequest,
            format!("Broadcast: {what}: BAD_REQUEST; got {answers:?}"),
        );
        s.check_unknown_tx(&mut found, what, &tx_id).await;
        s.check_logged(&mut found, "orderer0", &["rejected", &tx_id])
            .await;
    }

    // A chaincode definition whose endorsement policy nests 10,000 deep, approved by DSOMSP's
    // admin.
    let args = gridledger_proto::lifecycle::ApproveChaincodeDefinitionForMyOrgArgs {
        sequence: 1,
        name: format!("deep-{}", unique()).chars().take(40).collect(),
        version: "1.0".into(),
        validation_parameter: {
            // ApplicationPolicy{signature_policy (1): the envelope}
            length_delimited(1, &deep_policy_envelope(ABSURD_DEPTH))
        },
        ..Default::default()
    };
    let admin = s.gateway_as(s.net.member("DSOMSP", "admins"));
    let approve = admin
        .network(CHANNEL)
        .contract("_lifecycle")
        .proposal_with(
            vec![
                b"ApproveChaincodeDefinitionForMyOrg".to_vec(),
                args.encode_to_vec(),
            ],
            Default::default(),
            Vec::new(),
        )
        .expect("proposal");
    let approve_tx_id = approve.tx_id().to_owned();
    let approved = timed(
        "Endorse: chaincode definition with a policy nested 10,000 deep",
        client.endorse(gateway::EndorseRequest {
            endorsing_organizations: vec!["DSOMSP".into()],
            ..endorse_request(Some(approve.signed_proposal().clone()))
        }),
    )
    .await;
    if let Err(status) = &approved {
        found.check(
            status_text(status).contains("validation parameter")
                && status_text(status).contains("recursion limit"),
            format!("the lifecycle's refusal names the policy and its depth: {status:?}"),
        );
    }
    found.refused(
        "Endorse: chaincode definition with a policy nested 10,000 deep",
        approved,
        Code::Aborted,
    );
    s.check_unknown_tx(&mut found, "deep chaincode definition", &approve_tx_id)
        .await;
    s.finish(found).await;
}
