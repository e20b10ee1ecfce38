//! The ordering service end to end, in process, over real TLS: a consortium's crypto material
//! and a channel genesis block are generated, an orderer joins the channel and serves on
//! 127.0.0.1, and clients Broadcast signed envelopes and read the blocks back with Deliver —
//! checking hashes, chain links, orderer signatures, batch rules, the statuses of bad input,
//! and that a restart continues the chain without losing what was acknowledged.

use std::path::PathBuf;
use std::time::Duration;

use gridledger_channels::config::{self, ChannelConfig};
use gridledger_channels::genesis::genesis_block;
use gridledger_channels::policy::SignedData;
use gridledger_identity::SigningIdentity;
use gridledger_identity::material::{self, CryptoConfig};
use gridledger_orderer::block::{NONCE_LEN, RaftBlockMetadata};
use gridledger_orderer::participation::{JOIN_DIR, channel_dir};
use gridledger_orderer::{
    ChannelInfo, ChannelStatus, ConsensusRelation, JoinError, Orderer, OrdererConfig, OrdererError,
    join_channel, list_channels,
};
use gridledger_proto::blockutil::{block_data_hash, block_header_bytes, block_header_hash};
use gridledger_proto::common::{self, HeaderType, Status};
use gridledger_proto::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use gridledger_proto::orderer::seek_info::SeekBehavior;
use gridledger_proto::orderer::{
    BroadcastResponse, SeekInfo, SeekNewest, SeekOldest, SeekPosition, SeekSpecified,
    deliver_response, seek_position,
};
use prost::Message;
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

const CRYPTO_CONFIG: &str = r#"
seed = "gridledger-orderer-tests"

[[organizations]]
msp_id = "OrdererMSP"
orderers = [{ name = "orderer0" }]

[[organizations]]
msp_id = "DSOMSP"
peers = [{ name = "peer0.dso" }]
users = [{ name = "User1" }]

[[organizations]]
msp_id = "RetailerMSP"
users = [{ name = "User1" }]

[[organizations]]
msp_id = "OutsiderMSP"
users = [{ name = "User1" }]
"#;

/// Small batches so the rules show: 3 envelopes, 4 KiB preferred, 64 KiB absolute.
const CHANNEL: &str = r#"
name = "market"

[orderer]
max_message_count = 3
preferred_max_bytes = 4096
absolute_max_bytes = 65536
batch_timeout_ms = 700

[[orderer.organizations]]
msp_id = "OrdererMSP"
msp_dir = "organizations/OrdererMSP/msp"
endpoints = ["127.0.0.1:7050"]

[[orderer.consenters]]
host = "127.0.0.1"
port = 7050
client_tls_cert = "organizations/OrdererMSP/orderers/orderer0/tls/server.crt"
server_tls_cert = "organizations/OrdererMSP/orderers/orderer0/tls/server.crt"

[[organizations]]
msp_id = "DSOMSP"
msp_dir = "organizations/DSOMSP/msp"

[[organizations]]
msp_id = "RetailerMSP"
msp_dir = "organizations/RetailerMSP/msp"
"#;

/// How long any one wait on the orderer may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

fn now_unix_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// A folder unique to one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("gridledger-orderer-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Crypto material, the market genesis block and an orderer config over them.
struct Network {
    dir: Scratch,
    genesis: Vec<u8>,
    channel: ChannelConfig,
}

impl Network {
    fn new(test: &str) -> Network {
        let dir = Scratch::new(test);
        let crypto: CryptoConfig = toml::from_str(CRYPTO_CONFIG).expect("crypto config parses");
        material::generate(&crypto, &dir.0, now_unix_secs()).expect("generate material");
        std::fs::write(dir.0.join("market.toml"), CHANNEL).expect("write channel file");
        let (spec, channel_config) =
            config::config_from_file(&dir.0.join("market.toml")).expect("channel builds");
        let block = genesis_block(
            &spec.name,
            channel_config,
            prost_types::Timestamp {
                seconds: now_unix_secs(),
                nanos: 0,
            },
        );
        let channel = ChannelConfig::from_block(&block).expect("genesis decodes");
        Network {
            genesis: block.encode_to_vec(),
            channel,
            dir,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.0.join(rel)
    }

    fn data_dir(&self) -> PathBuf {
        self.path("orderer0-data")
    }

    /// The orderer's config; batches are cut by the channel's rules alone (no idle cut), so
    /// the tests of those rules see Fabric's blocks.
    fn orderer_config(&self) -> OrdererConfig {
        self.orderer_config_with_idle_cut(0)
    }

    fn orderer_config_with_idle_cut(&self, idle_cut_ms: u64) -> OrdererConfig {
        let text = r#"
name = "orderer0"
msp_id = "OrdererMSP"
listen_address = "127.0.0.1:0"
data_dir = "orderer0-data"
signing_cert = "organizations/OrdererMSP/orderers/orderer0/msp/signcerts/cert.pem"
signing_key = "organizations/OrdererMSP/orderers/orderer0/msp/keystore/key.pem"

[tls]
server_cert = "organizations/OrdererMSP/orderers/orderer0/tls/server.crt"
server_key = "organizations/OrdererMSP/orderers/orderer0/tls/server.key"

[raft]
tick_ms = 50
"#;
        let text = format!("{text}idle_cut_ms = {idle_cut_ms}\n");
        OrdererConfig::parse(&text, &self.dir.0).expect("orderer config is valid")
    }

    fn user(&self, msp_id: &str) -> SigningIdentity {
        let base = self.path(&format!("organizations/{msp_id}/users/User1/msp"));
        SigningIdentity::load(
            msp_id,
            &base.join("signcerts/cert.pem"),
            &base.join("keystore/key.pem"),
        )
        .expect("load user")
    }

    fn peer(&self) -> SigningIdentity {
        let base = self.path("organizations/DSOMSP/peers/peer0.dso/msp");
        SigningIdentity::load(
            "DSOMSP",
            &base.join("signcerts/cert.pem"),
            &base.join("keystore/key.pem"),
        )
        .expect("load peer")
    }

    fn join(&self) {
        join_channel(&self.data_dir(), &self.genesis).expect("join market");
    }

    async fn start(&self) -> Running {
        start(self.orderer_config()).await
    }

    async fn client(&self, running: &Running) -> AtomicBroadcastClient<Channel> {
        let ca = std::fs::read(self.path("organizations/OrdererMSP/tlsca/tlsca.pem"))
            .expect("read TLS CA");
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name("localhost");
        let channel = Endpoint::from_shared(format!("https://{}", running.addr))
            .expect("endpoint")
            .tls_config(tls)
            .expect("client TLS")
            .connect()
            .await
            .expect("connect to orderer");
        AtomicBroadcastClient::new(channel)
    }
}

/// A served orderer and the means to stop it.
struct Running {
    addr: std::net::SocketAddr,
    channels: Vec<String>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), OrdererError>>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("orderer stops in time")
            .expect("orderer task")
            .expect("orderer ran without error");
    }
}

async fn start(config: OrdererConfig) -> Running {
    let orderer = Orderer::bind(config).await.expect("orderer binds");
    let addr = orderer.local_addr();
    let channels = orderer.channels();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(orderer.serve(async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        channels,
        stop,
        task,
    }
}

fn signed(signer: &SigningIdentity, payload: common::Payload) -> common::Envelope {
    let payload = payload.encode_to_vec();
    common::Envelope {
        signature: signer.sign(&payload),
        payload,
    }
}

fn header(
    signer: &SigningIdentity,
    channel: &str,
    kind: HeaderType,
    tx_id: &str,
) -> common::Header {
    common::Header {
        channel_header: common::ChannelHeader {
            r#type: kind as i32,
            channel_id: channel.to_string(),
            tx_id: tx_id.to_string(),
            timestamp: Some(prost_types::Timestamp {
                seconds: now_unix_secs(),
                nanos: 0,
            }),
            ..Default::default()
        }
        .encode_to_vec(),
        signature_header: common::SignatureHeader {
            creator: signer.serialized().to_vec(),
            nonce: vec![7; 24],
        }
        .encode_to_vec(),
    }
}

/// An ENDORSER_TRANSACTION envelope whose data is `body` (the orderer does not look inside).
fn transaction(signer: &SigningIdentity, channel: &str, body: &[u8]) -> common::Envelope {
    transaction_of(signer, channel, HeaderType::EndorserTransaction, body)
}

fn transaction_of(
    signer: &SigningIdentity,
    channel: &str,
    kind: HeaderType,
    body: &[u8],
) -> common::Envelope {
    let tx_id = hex::encode(&body[..body.len().min(16)]);
    signed(
        signer,
        common::Payload {
            header: Some(header(signer, channel, kind, &tx_id)),
            data: body.to_vec(),
        },
    )
}

fn position(t: seek_position::Type) -> Option<SeekPosition> {
    Some(SeekPosition { r#type: Some(t) })
}

fn specified(number: u64) -> seek_position::Type {
    seek_position::Type::Specified(SeekSpecified { number })
}

fn seek(
    signer: &SigningIdentity,
    channel: &str,
    start: seek_position::Type,
    stop: seek_position::Type,
    behavior: SeekBehavior,
) -> common::Envelope {
    signed(
        signer,
        common::Payload {
            header: Some(header(signer, channel, HeaderType::DeliverSeekInfo, "")),
            data: SeekInfo {
                start: position(start),
                stop: position(stop),
                behavior: behavior as i32,
                ..Default::default()
            }
            .encode_to_vec(),
        },
    )
}

/// Sends `envelopes` on one Broadcast stream and collects the responses.
async fn broadcast(
    client: &mut AtomicBroadcastClient<Channel>,
    envelopes: Vec<common::Envelope>,
) -> Vec<BroadcastResponse> {
    let expected = envelopes.len();
    let mut stream = client
        .broadcast(tokio_stream::iter(envelopes))
        .await
        .expect("broadcast stream opens")
        .into_inner();
    let mut responses = Vec::new();
    while let Some(response) = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("broadcast answers in time")
        .expect("broadcast stream is healthy")
    {
        responses.push(response);
    }
    assert_eq!(responses.len(), expected, "one response per envelope");
    responses
}

fn statuses(responses: &[BroadcastResponse]) -> Vec<Status> {
    responses
        .iter()
        .map(|r| Status::try_from(r.status).expect("known status"))
        .collect()
}

/// Sends one seek request and collects blocks until a status arrives.
async fn deliver(
    client: &mut AtomicBroadcastClient<Channel>,
    request: common::Envelope,
) -> (Vec<common::Block>, Status) {
    let mut stream = client
        .deliver(tokio_stream::iter(vec![request]))
        .await
        .expect("deliver stream opens")
        .into_inner();
    let mut blocks = Vec::new();
    loop {
        let message = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("deliver answers in time")
            .expect("deliver stream is healthy")
            .expect("deliver ends with a status, not end of stream");
        match message.r#type {
            Some(deliver_response::Type::Block(block)) => blocks.push(block),
            Some(deliver_response::Type::Status(status)) => {
                return (blocks, Status::try_from(status).expect("known status"));
            }
            None => panic!("empty deliver response"),
        }
    }
}

/// Blocks `from..=to`, waiting for them to be written.
async fn blocks(
    client: &mut AtomicBroadcastClient<Channel>,
    reader: &SigningIdentity,
    from: u64,
    to: u64,
) -> Vec<common::Block> {
    let (blocks, status) = deliver(
        client,
        seek(
            reader,
            "market",
            specified(from),
            specified(to),
            SeekBehavior::BlockUntilReady,
        ),
    )
    .await;
    assert_eq!(status, Status::Success);
    assert_eq!(blocks.len() as u64, to - from + 1);
    blocks
}

fn envelopes_of(block: &common::Block) -> Vec<Vec<u8>> {
    block
        .data
        .as_ref()
        .map(|d| d.data.clone())
        .unwrap_or_default()
}

fn number_of(block: &common::Block) -> u64 {
    block.header.as_ref().expect("header").number
}

/// Checks a block the orderer wrote: data hash, five metadata slots, and an orderer
/// signature that verifies and satisfies `/Channel/Orderer/BlockValidation`. Returns its Raft
/// metadata.
fn check_orderer_block(channel: &ChannelConfig, block: &common::Block) -> RaftBlockMetadata {
    let header = block.header.as_ref().expect("header");
    let data = block.data.as_ref().expect("data");
    assert_eq!(
        header.data_hash,
        block_data_hash(data).to_vec(),
        "data hash"
    );
    let slots = &block.metadata.as_ref().expect("metadata").metadata;
    assert_eq!(slots.len(), 5, "Fabric's five metadata slots");
    assert!(slots[2].is_empty(), "TRANSACTIONS_FILTER is left to peers");
    assert!(slots[3].is_empty() && slots[4].is_empty());

    let signatures = common::Metadata::decode(slots[0].as_slice()).expect("SIGNATURES slot");
    assert_eq!(signatures.signatures.len(), 1);
    let signature = &signatures.signatures[0];
    let signature_header =
        common::SignatureHeader::decode(signature.signature_header.as_slice()).expect("sig header");
    assert_eq!(signature_header.nonce.len(), NONCE_LEN);
    let mut signed_bytes = signatures.value.clone();
    signed_bytes.extend_from_slice(&signature.signature_header);
    signed_bytes.extend_from_slice(&block_header_bytes(header));
    let now = now_unix_secs() as u64;
    let orderer = channel
        .msp_manager()
        .deserialize_identity(&signature_header.creator, now)
        .expect("block signer is a channel identity");
    assert_eq!(orderer.msp_id(), "OrdererMSP");
    orderer
        .verify(&signed_bytes, &signature.signature)
        .expect("orderer signature verifies");
    let evaluation = channel
        .evaluate_policy(
            "/Channel/Orderer/BlockValidation",
            &[SignedData {
                data: &signed_bytes,
                identity: &signature_header.creator,
                signature: &signature.signature,
            }],
            now,
        )
        .expect("policy evaluates");
    assert!(evaluation.satisfied, "{}", evaluation.explanation);

    let orderer_metadata = common::OrdererBlockMetadata::decode(signatures.value.as_slice())
        .expect("orderer metadata");
    // Both slots name the same last config block, which is `channel`'s.
    let last_config_index = orderer_metadata.last_config.expect("last config").index;
    let last_config = common::Metadata::decode(slots[1].as_slice()).expect("LAST_CONFIG slot");
    assert_eq!(
        common::LastConfig::decode(last_config.value.as_slice())
            .expect("LastConfig")
            .index,
        last_config_index
    );
    assert_eq!(
        last_config_index == 0,
        channel.sequence() == 0,
        "blocks of the genesis config name block 0"
    );
    let consenter = common::Metadata::decode(orderer_metadata.consenter_metadata.as_slice())
        .expect("consenter metadata");
    RaftBlockMetadata::decode(consenter.value.as_slice()).expect("etcdraft BlockMetadata")
}

/// Checks that `chain` (consecutive blocks) links header hash to previous hash.
fn check_links(chain: &[common::Block]) {
    for pair in chain.windows(2) {
        let previous = pair[0].header.as_ref().expect("header");
        let next = pair[1].header.as_ref().expect("header");
        assert_eq!(next.number, previous.number + 1);
        assert_eq!(
            next.previous_hash,
            block_header_hash(previous).to_vec(),
            "block {} links to block {}",
            next.number,
            previous.number
        );
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_envelopes_become_signed_chained_blocks_by_the_batch_rules() {
    let net = Network::new("blocks");
    net.join();
    let orderer = net.start().await;
    assert_eq!(orderer.channels, ["market"]);
    let mut client = net.client(&orderer).await;
    let dso = net.user("DSOMSP");
    let retailer = net.user("RetailerMSP");

    // e0..e2 fill a block by count; e3 is pending when e4 (larger than PreferredMaxBytes)
    // arrives, so e3 is cut alone and e4 goes in a block by itself; e5 waits for the batch
    // timeout.
    let small = |i: u8| vec![i; 100];
    let sent = vec![
        transaction(&dso, "market", &small(0)),
        transaction(&retailer, "market", &small(1)),
        transaction(&dso, "market", &small(2)),
        transaction(&retailer, "market", &small(3)),
        transaction(&dso, "market", &vec![4; 5000]),
        transaction(&retailer, "market", &small(5)),
    ];
    let responses = broadcast(&mut client, sent.clone()).await;
    assert_eq!(statuses(&responses), vec![Status::Success; 6]);

    let chain = blocks(&mut client, &dso, 0, 4).await;
    check_links(&chain);
    let bytes: Vec<Vec<u8>> = sent.iter().map(Message::encode_to_vec).collect();
    assert_eq!(
        envelopes_of(&chain[1]),
        bytes[0..3].to_vec(),
        "cut at MaxMessageCount"
    );
    assert_eq!(
        envelopes_of(&chain[2]),
        bytes[3..4].to_vec(),
        "cut before the large one"
    );
    assert_eq!(
        envelopes_of(&chain[3]),
        bytes[4..5].to_vec(),
        "large envelope alone"
    );
    assert_eq!(
        envelopes_of(&chain[4]),
        bytes[5..6].to_vec(),
        "cut by BatchTimeout"
    );

    let genesis = common::Block::decode(net.genesis.as_slice()).expect("genesis");
    assert_eq!(chain[0], genesis, "block 0 is the genesis block as joined");
    let mut last_raft_index = 0;
    for block in &chain[1..] {
        let raft = check_orderer_block(&net.channel, block);
        assert_eq!(raft.consenter_ids, [1]);
        assert!(
            raft.raft_index >= last_raft_index,
            "raft index never goes back"
        );
        last_raft_index = raft.raft_index;
    }

    // Newest alone is exactly the tip.
    let (newest, status) = deliver(
        &mut client,
        seek(
            &dso,
            "market",
            seek_position::Type::Newest(SeekNewest {}),
            seek_position::Type::Newest(SeekNewest {}),
            SeekBehavior::FailIfNotReady,
        ),
    )
    .await;
    assert_eq!(status, Status::Success);
    assert_eq!(newest.len(), 1);
    assert_eq!(number_of(&newest[0]), 4);
    orderer.stop().await;
}

/// With an idle cut, a lone envelope is ordered as soon as the intake goes quiet instead of
/// after the 700 ms BatchTimeout: two envelopes 150 ms apart land in two blocks, where the
/// channel's rules alone (the test above) would put both in one block cut by the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_leader_cuts_a_lone_envelope_without_waiting_for_the_batch_timeout() {
    for (idle_cut_ms, expected_blocks) in [(5, 2), (0, 1)] {
        let net = Network::new(&format!("idle-cut-{idle_cut_ms}"));
        net.join();
        let orderer = start(net.orderer_config_with_idle_cut(idle_cut_ms)).await;
        let mut client = net.client(&orderer).await;
        let dso = net.user("DSOMSP");
        let first = transaction(&dso, "market", &[1; 100]);
        let second = transaction(&dso, "market", &[2; 100]);
        assert_eq!(
            statuses(&broadcast(&mut client, vec![first.clone()]).await),
            [Status::Success]
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            statuses(&broadcast(&mut client, vec![second.clone()]).await),
            [Status::Success]
        );
        let chain = blocks(&mut client, &dso, 1, expected_blocks).await;
        let ordered: Vec<Vec<Vec<u8>>> = chain.iter().map(envelopes_of).collect();
        let expected: Vec<Vec<Vec<u8>>> = if expected_blocks == 2 {
            vec![vec![first.encode_to_vec()], vec![second.encode_to_vec()]]
        } else {
            vec![vec![first.encode_to_vec(), second.encode_to_vec()]]
        };
        assert_eq!(ordered, expected, "idle_cut_ms = {idle_cut_ms}");
        orderer.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_broadcasts_get_fabric_statuses_and_order_nothing() {
    let net = Network::new("bad-broadcast");
    net.join();
    let orderer = net.start().await;
    let mut client = net.client(&orderer).await;
    let dso = net.user("DSOMSP");

    let garbage = common::Envelope {
        payload: vec![0xff, 0x00, 0x13],
        signature: vec![1, 2, 3],
    };
    let mut tampered = transaction(&dso, "market", b"tampered");
    tampered.signature = dso.sign(b"something else");
    let responses = broadcast(
        &mut client,
        vec![
            garbage,
            transaction(&dso, "no-such-channel", b"lost"),
            transaction(&net.user("OutsiderMSP"), "market", b"outsider"),
            transaction(&net.peer(), "market", b"peer is no writer"),
            tampered,
            transaction_of(&dso, "market", HeaderType::ConfigUpdate, b"config"),
            transaction_of(&dso, "market", HeaderType::Message, b"message"),
            transaction(&dso, "market", &vec![9; 70_000]),
        ],
    )
    .await;
    assert_eq!(
        statuses(&responses),
        vec![
            Status::BadRequest,
            Status::NotFound,
            Status::Forbidden,
            Status::Forbidden,
            Status::Forbidden,
            Status::BadRequest,
            Status::BadRequest,
            Status::RequestEntityTooLarge,
        ]
    );
    assert!(
        responses[1].info.contains("no-such-channel"),
        "{}",
        responses[1].info
    );
    assert!(
        responses[2].info.contains("OutsiderMSP"),
        "{}",
        responses[2].info
    );
    assert!(
        responses[3].info.contains("/Channel/Writers"),
        "the policy is named: {}",
        responses[3].info
    );
    assert!(
        responses[4].info.contains("signature"),
        "{}",
        responses[4].info
    );
    assert!(
        responses[5].info.contains("ConfigUpdateEnvelope"),
        "a CONFIG_UPDATE that carries no update says so: {}",
        responses[5].info
    );
    assert!(
        responses[7].info.contains("AbsoluteMaxBytes"),
        "{}",
        responses[7].info
    );

    // Nothing was ordered: after a good envelope and its batch timeout, block 1 holds only it.
    let good = transaction(&dso, "market", b"good");
    let responses = broadcast(&mut client, vec![good.clone()]).await;
    assert_eq!(statuses(&responses), [Status::Success]);
    let chain = blocks(&mut client, &dso, 1, 1).await;
    assert_eq!(envelopes_of(&chain[0]), [good.encode_to_vec()]);
    orderer.stop().await;
}

/// The admin of `msp_id` (generated for every organization).
fn admin(net: &Network, msp_id: &str) -> SigningIdentity {
    let base = net.path(&format!("organizations/{msp_id}/users/Admin/msp"));
    SigningIdentity::load(
        msp_id,
        &base.join("signcerts/cert.pem"),
        &base.join("keystore/key.pem"),
    )
    .expect("load admin")
}

/// A CONFIG_UPDATE that sets the channel's BatchSize.MaxMessageCount, computed against
/// `current`, signed by `signers` and submitted by the first of them.
fn batch_size_update(
    current: &ChannelConfig,
    max_message_count: u32,
    signers: &[&SigningIdentity],
) -> common::Envelope {
    use gridledger_channels::config::{BATCH_SIZE_KEY, ORDERER_GROUP};
    use gridledger_channels::update;
    use gridledger_proto::orderer::BatchSize;
    let mut desired = current.config().clone();
    let orderer = desired
        .channel_group
        .as_mut()
        .and_then(|g| g.groups.get_mut(ORDERER_GROUP))
        .expect("the channel has an Orderer group");
    let value = orderer
        .values
        .get_mut(BATCH_SIZE_KEY)
        .expect("the Orderer group has a BatchSize");
    let mut batch = BatchSize::decode(value.value.as_slice()).expect("BatchSize decodes");
    batch.max_message_count = max_message_count;
    value.value = batch.encode_to_vec();
    let config_update =
        update::compute_update("market", current.config(), &desired).expect("a difference");
    let mut envelope = update::new_envelope(&config_update);
    for (i, signer) in signers.iter().enumerate() {
        update::sign(&mut envelope, signer, [i as u8 + 1; NONCE_LEN]);
    }
    update::config_update_transaction(
        "market",
        &envelope,
        signers[0],
        [42; NONCE_LEN],
        prost_types::Timestamp {
            seconds: now_unix_secs(),
            nanos: 0,
        },
    )
}

/// The config a config block carries.
fn config_of(block: &common::Block) -> ChannelConfig {
    ChannelConfig::from_block(block).expect("a config block")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_updates_are_authorized_then_ordered_alone_and_take_effect() {
    let net = Network::new("config-update");
    net.join();
    let orderer = net.start().await;
    let mut client = net.client(&orderer).await;
    let dso = net.user("DSOMSP");
    let orderer_admin = admin(&net, "OrdererMSP");
    let dso_admin = admin(&net, "DSOMSP");

    // The Orderer group's values are the orderer organization's to change: the DSO's admin
    // alone is refused, with the policy named; a garbage update is a bad request.
    let by_dso = batch_size_update(&net.channel, 1, &[&dso_admin]);
    let mut garbage = batch_size_update(&net.channel, 1, &[&orderer_admin]);
    let mut payload = common::Payload::decode(garbage.payload.as_slice()).expect("payload");
    payload.data = b"not an update".to_vec();
    garbage = signed(&orderer_admin, payload);
    let responses = broadcast(&mut client, vec![by_dso, garbage]).await;
    assert_eq!(
        statuses(&responses),
        [Status::Forbidden, Status::BadRequest]
    );
    assert!(
        responses[0].info.contains("Admins"),
        "the unmet policy is named: {}",
        responses[0].info
    );

    // A pending transaction, then the authorized update: the transaction's block is cut
    // first and the config gets a block of its own.
    let before = transaction(&dso, "market", b"before the update");
    let update = batch_size_update(&net.channel, 1, &[&orderer_admin, &dso_admin]);
    let responses = broadcast(&mut client, vec![before.clone(), update.clone()]).await;
    assert_eq!(statuses(&responses), [Status::Success, Status::Success]);
    let chain = blocks(&mut client, &dso, 0, 2).await;
    check_links(&chain);
    assert_eq!(envelopes_of(&chain[1]), [before.encode_to_vec()]);
    let config_block = &chain[2];
    assert_eq!(
        envelopes_of(config_block).len(),
        1,
        "a config block holds only its config"
    );
    let updated = config_of(config_block);
    assert_eq!(updated.sequence(), 1);
    assert_eq!(updated.orderer().batch.max_message_count, 1);
    let raft = check_orderer_block(&updated, config_block);
    assert_eq!(raft.consenter_ids, [1]);
    assert_eq!(
        gridledger_orderer::block::orderer_metadata(config_block)
            .expect("metadata")
            .last_config_index,
        2,
        "a config block is its own last config"
    );
    let config_envelope =
        common::Envelope::decode(envelopes_of(config_block)[0].as_slice()).expect("envelope");
    let config_payload =
        common::Payload::decode(config_envelope.payload.as_slice()).expect("payload");
    let carried = common::ConfigEnvelope::decode(config_payload.data.as_slice()).expect("config");
    assert_eq!(
        carried.last_update.as_ref(),
        Some(&update),
        "the client's signed update travels with the config"
    );

    // The same update again is stale: computed against sequence 0.
    let responses = broadcast(&mut client, vec![update.clone()]).await;
    assert_eq!(statuses(&responses), [Status::BadRequest]);
    assert!(
        responses[0].info.contains("config update refused"),
        "{}",
        responses[0].info
    );

    // The new batch size is in force: two transactions make two blocks naming block 2 as
    // their last config, also after a restart.
    let (a, b) = (
        transaction(&dso, "market", b"after 1"),
        transaction(&dso, "market", b"after 2"),
    );
    let responses = broadcast(&mut client, vec![a.clone(), b.clone()]).await;
    assert_eq!(statuses(&responses), [Status::Success, Status::Success]);
    let chain = blocks(&mut client, &dso, 3, 4).await;
    assert_eq!(envelopes_of(&chain[0]), [a.encode_to_vec()]);
    assert_eq!(envelopes_of(&chain[1]), [b.encode_to_vec()]);
    for block in &chain {
        let metadata = gridledger_orderer::block::orderer_metadata(block).expect("metadata");
        assert_eq!(metadata.last_config_index, 2);
    }
    orderer.stop().await;

    let orderer = net.start().await;
    let mut client = net.client(&orderer).await;
    let c = transaction(&dso, "market", b"after restart");
    let responses = broadcast(&mut client, vec![c.clone()]).await;
    assert_eq!(statuses(&responses), [Status::Success]);
    let chain = blocks(&mut client, &dso, 5, 5).await;
    assert_eq!(envelopes_of(&chain[0]), [c.encode_to_vec()]);
    orderer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deliver_requests_get_fabric_statuses() {
    let net = Network::new("bad-deliver");
    net.join();
    let orderer = net.start().await;
    let mut client = net.client(&orderer).await;
    let dso = net.user("DSOMSP");
    let oldest = || seek_position::Type::Oldest(SeekOldest {});

    let garbage = common::Envelope {
        payload: vec![0x0a, 0xff],
        signature: Vec::new(),
    };
    let cases = [
        (garbage, Status::BadRequest),
        (
            // A transaction is not a seek request.
            transaction(&dso, "market", b"not a seek"),
            Status::BadRequest,
        ),
        (
            seek(
                &dso,
                "elsewhere",
                oldest(),
                oldest(),
                SeekBehavior::BlockUntilReady,
            ),
            Status::NotFound,
        ),
        (
            seek(
                &net.user("OutsiderMSP"),
                "market",
                oldest(),
                oldest(),
                SeekBehavior::BlockUntilReady,
            ),
            Status::Forbidden,
        ),
        (
            seek(
                &dso,
                "market",
                // The stop before the start (the start itself exists: height is 1).
                specified(1),
                specified(0),
                SeekBehavior::BlockUntilReady,
            ),
            Status::BadRequest,
        ),
        (
            seek(
                &dso,
                "market",
                specified(99),
                specified(99),
                SeekBehavior::FailIfNotReady,
            ),
            Status::NotFound,
        ),
    ];
    for (request, expected) in cases {
        let (blocks, status) = deliver(&mut client, request).await;
        assert!(blocks.is_empty());
        assert_eq!(status, expected);
    }

    // A stale timestamp is refused (Fabric's 15-minute window).
    let mut payload = common::Payload::decode(
        seek(
            &dso,
            "market",
            oldest(),
            oldest(),
            SeekBehavior::BlockUntilReady,
        )
        .payload
        .as_slice(),
    )
    .expect("payload");
    let mut header = payload.header.take().expect("header");
    let mut channel_header =
        common::ChannelHeader::decode(header.channel_header.as_slice()).expect("channel header");
    channel_header.timestamp = Some(prost_types::Timestamp {
        seconds: now_unix_secs() - 3600,
        nanos: 0,
    });
    header.channel_header = channel_header.encode_to_vec();
    payload.header = Some(header);
    let (_, status) = deliver(&mut client, signed(&dso, payload)).await;
    assert_eq!(status, Status::BadRequest);

    // The genesis block itself is readable by a member.
    let (blocks, status) = deliver(
        &mut client,
        seek(
            &dso,
            "market",
            oldest(),
            oldest(),
            SeekBehavior::FailIfNotReady,
        ),
    )
    .await;
    assert_eq!(status, Status::Success);
    assert_eq!(blocks.len(), 1);
    orderer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_waits_for_blocks_not_yet_written() {
    let net = Network::new("wait");
    net.join();
    let orderer = net.start().await;
    let mut reader = net.client(&orderer).await;
    let mut writer = net.client(&orderer).await;
    let dso = net.user("DSOMSP");

    let waiting = tokio::spawn({
        let dso = net.user("DSOMSP");
        async move { blocks(&mut reader, &dso, 1, 1).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "block 1 does not exist yet");
    let sent = transaction(&dso, "market", b"awaited");
    assert_eq!(
        statuses(&broadcast(&mut writer, vec![sent.clone()]).await),
        [Status::Success]
    );
    let chain = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("deliver wakes up")
        .expect("reader task");
    assert_eq!(envelopes_of(&chain[0]), [sent.encode_to_vec()]);

    // A stream waiting for a block that never comes does not hold up shutdown; it ends.
    let mut stream = writer
        .deliver(tokio_stream::iter(vec![seek(
            &dso,
            "market",
            // The next block to be written (height is 2): awaited, not NOT_FOUND.
            specified(2),
            specified(2),
            SeekBehavior::BlockUntilReady,
        )]))
        .await
        .expect("deliver stream opens")
        .into_inner();
    let next = tokio::spawn(async move { stream.message().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!next.is_finished(), "block 2 is awaited");
    orderer.stop().await;
    let ended = tokio::time::timeout(PATIENCE, next)
        .await
        .expect("the stream ends with the orderer")
        .expect("reader task");
    assert!(
        !matches!(ended, Ok(Some(_))),
        "no block or status arrives for block 100: {ended:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_blocks_compact_the_raft_log_and_survive_a_restart() {
    let net = Network::new("compact");
    net.join();
    let dso = net.user("DSOMSP");
    let orderer = net.start().await;
    let mut client = net.client(&orderer).await;
    // 65 full blocks of 3 envelopes: past the 64 blocks after which the log is compacted.
    let sent: Vec<_> = (0..195u32)
        .map(|i| transaction(&dso, "market", &i.to_be_bytes().repeat(8)))
        .collect();
    let responses = broadcast(&mut client, sent).await;
    assert_eq!(statuses(&responses), vec![Status::Success; 195]);
    let before = blocks(&mut client, &dso, 0, 65).await;
    check_links(&before);
    drop(client);
    orderer.stop().await;

    let store = gridledger_ledger::RaftStore::open(&channel_dir(&net.data_dir(), "market"))
        .expect("raft log opens");
    let first = store.first_index().expect("first index");
    assert!(
        first > 100,
        "the raft log was compacted, it starts at {first}"
    );
    drop(store);

    let orderer = net.start().await;
    let mut client = net.client(&orderer).await;
    let after = transaction(&dso, "market", b"after compaction");
    assert_eq!(
        statuses(&broadcast(&mut client, vec![after.clone()]).await),
        [Status::Success]
    );
    let tail = blocks(&mut client, &dso, 65, 66).await;
    assert_eq!(tail[0], before[65]);
    check_links(&tail);
    assert_eq!(envelopes_of(&tail[1]), [after.encode_to_vec()]);
    check_orderer_block(&net.channel, &tail[1]);
    orderer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_chain_and_orders_what_was_acknowledged() {
    let net = Network::new("restart");
    net.join();
    let dso = net.user("DSOMSP");

    let orderer = net.start().await;
    let mut client = net.client(&orderer).await;
    let first: Vec<_> = (0..3u8)
        .map(|i| transaction(&dso, "market", &[i; 50]))
        .collect();
    assert_eq!(
        statuses(&broadcast(&mut client, first.clone()).await),
        vec![Status::Success; 3]
    );
    let before = blocks(&mut client, &dso, 0, 1).await;
    // Acknowledged but still pending in the block cutter when the orderer stops: it is in the
    // Raft log, so it must reach a block after the restart.
    let pending = transaction(&dso, "market", b"acknowledged, not yet in a block");
    assert_eq!(
        statuses(&broadcast(&mut client, vec![pending.clone()]).await),
        [Status::Success]
    );
    drop(client);
    orderer.stop().await;

    let orderer = net.start().await;
    assert_eq!(orderer.channels, ["market"]);
    let mut client = net.client(&orderer).await;
    let replayed = blocks(&mut client, &dso, 2, 2).await;
    assert_eq!(envelopes_of(&replayed[0]), [pending.encode_to_vec()]);
    let after = transaction(&dso, "market", b"after restart");
    assert_eq!(
        statuses(&broadcast(&mut client, vec![after.clone()]).await),
        [Status::Success]
    );
    let chain = blocks(&mut client, &dso, 0, 3).await;
    assert_eq!(
        chain[..2],
        before[..],
        "blocks written before the restart are unchanged"
    );
    check_links(&chain);
    assert_eq!(envelopes_of(&chain[3]), [after.encode_to_vec()]);
    let raft_indexes: Vec<u64> = chain[1..]
        .iter()
        .map(|b| check_orderer_block(&net.channel, b).raft_index)
        .collect();
    assert!(
        raft_indexes.windows(2).all(|w| w[0] < w[1]),
        "each block reflects a later raft index: {raft_indexes:?}"
    );
    // Nothing is there twice.
    let all: Vec<Vec<u8>> = chain[1..].iter().flat_map(envelopes_of).collect();
    assert_eq!(all.len(), 5);
    orderer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_are_joined_with_their_genesis_block() {
    let net = Network::new("join");
    assert_eq!(
        list_channels(&net.data_dir()).expect("list"),
        [],
        "nothing joined yet"
    );
    // Offline join, then a second join of the same block is refused.
    let joined = join_channel(&net.data_dir(), &net.genesis).expect("join");
    assert_eq!((joined.channel_id.as_str(), joined.height), ("market", 1));
    assert!(
        channel_dir(&net.data_dir(), "market")
            .join("ledger.redb")
            .exists()
    );
    assert!(matches!(
        join_channel(&net.data_dir(), &net.genesis),
        Err(JoinError::AlreadyJoined(c)) if c == "market"
    ));
    let mut not_genesis = common::Block::decode(net.genesis.as_slice()).expect("genesis");
    not_genesis.header.as_mut().expect("header").number = 1;
    assert!(matches!(
        join_channel(&net.data_dir(), &not_genesis.encode_to_vec()),
        Err(JoinError::NotAConfigBlock(1))
    ));

    // A second channel joined at runtime through the join folder.
    let orderer = net.start().await;
    assert_eq!(orderer.channels, ["market"]);
    let text = CHANNEL.replace("name = \"market\"", "name = \"grid\"");
    std::fs::write(net.path("grid.toml"), text).expect("write channel file");
    let (_, grid_config) = config::config_from_file(&net.path("grid.toml")).expect("grid builds");
    let grid = genesis_block(
        "grid",
        grid_config,
        prost_types::Timestamp {
            seconds: now_unix_secs(),
            nanos: 0,
        },
    );
    let join_dir = net.data_dir().join(JOIN_DIR);
    std::fs::write(join_dir.join("not-a-block.block"), b"garbage").expect("write junk");
    std::fs::write(join_dir.join("grid.block"), grid.encode_to_vec()).expect("write join block");

    let mut client = net.client(&orderer).await;
    let dso = net.user("DSOMSP");
    let oldest = || seek_position::Type::Oldest(SeekOldest {});
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (blocks, status) = deliver(
            &mut client,
            seek(
                &dso,
                "grid",
                oldest(),
                oldest(),
                SeekBehavior::FailIfNotReady,
            ),
        )
        .await;
        if status == Status::Success {
            assert_eq!(blocks, std::slice::from_ref(&grid));
            break;
        }
        assert_eq!(status, Status::NotFound, "unknown until joined");
        assert!(
            tokio::time::Instant::now() < deadline,
            "grid joined in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sent = transaction(&dso, "grid", b"on grid");
    assert_eq!(
        statuses(&broadcast(&mut client, vec![sent]).await),
        [Status::Success]
    );
    orderer.stop().await;

    // Stopped, the orderer's channels are listed from its data dir, with their heights.
    let listed = list_channels(&net.data_dir()).expect("list");
    let ids: Vec<&str> = listed.iter().map(|c| c.channel_id.as_str()).collect();
    assert_eq!(ids, ["grid", "market"]);
    assert_eq!(listed[1].height, 1, "market holds its genesis block only");
    assert!(
        listed[0].height >= 1,
        "grid holds at least its genesis block"
    );
}

/// The genesis block of channel `name`: market's channel file renamed, stamped `seconds`.
fn renamed_genesis(net: &Network, name: &str, seconds: i64) -> common::Block {
    let file = net.path(&format!("{name}-{seconds}.toml"));
    std::fs::write(
        &file,
        CHANNEL.replace("name = \"market\"", &format!("name = \"{name}\"")),
    )
    .expect("write channel file");
    let (_, config) = config::config_from_file(&file).expect("the channel builds");
    genesis_block(name, config, prost_types::Timestamp { seconds, nanos: 0 })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_participation_api_joins_a_channel_while_the_orderer_runs() {
    let net = Network::new("participation");
    net.join();
    let orderer = Orderer::bind(net.orderer_config())
        .await
        .expect("orderer binds");
    let participation = orderer.participation();
    let addr = orderer.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(orderer.serve(async move {
        let _ = stopped.await;
    }));
    let running = Running {
        addr,
        channels: vec!["market".into()],
        stop,
        task,
    };
    let active = |name: &str, height: u64| ChannelInfo {
        name: name.into(),
        consensus_relation: ConsensusRelation::Consenter,
        status: ChannelStatus::Active,
        height,
    };
    assert_eq!(participation.list(), [active("market", 1)]);

    let grid = renamed_genesis(&net, "grid", now_unix_secs());
    let joining = participation.clone();
    let bytes = grid.encode_to_vec();
    let joined = tokio::task::spawn_blocking(move || joining.join(&bytes))
        .await
        .expect("the join task");
    assert_eq!(joined.expect("grid joins"), active("grid", 1));
    assert_eq!(participation.channel("grid"), Some(active("grid", 1)));
    assert_eq!(participation.channel("nowhere"), None);

    // The same block again, another genesis block of the same id, and garbage are refused;
    // none of them touches the served channel.
    assert!(matches!(
        participation.join(&grid.encode_to_vec()),
        Err(JoinError::AlreadyJoined(c)) if c == "grid"
    ));
    let other = renamed_genesis(&net, "grid", now_unix_secs() + 1);
    assert!(matches!(
        participation.join(&other.encode_to_vec()),
        Err(JoinError::DifferentGenesis(c)) if c == "grid"
    ));
    assert!(matches!(
        participation.join(b"garbage"),
        Err(JoinError::Decode(_))
    ));

    // The new channel orders.
    let mut client = net.client(&running).await;
    let dso = net.user("DSOMSP");
    let sent = transaction(&dso, "grid", b"on grid");
    assert_eq!(
        statuses(&broadcast(&mut client, vec![sent]).await),
        [Status::Success]
    );
    running.stop().await;
    let ids: Vec<String> = list_channels(&net.data_dir())
        .expect("list")
        .into_iter()
        .map(|c| c.channel_id)
        .collect();
    assert_eq!(ids, ["grid", "market"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate() {
    let net = Network::new("mtls");
    net.join();
    let mut config = net.orderer_config();
    config.tls.client_ca_certs = vec![
        net.path("organizations/DSOMSP/tlsca/tlsca.pem"),
        net.path("organizations/OrdererMSP/tlsca/tlsca.pem"),
    ];
    let orderer = start(config).await;
    let ca = std::fs::read(net.path("organizations/OrdererMSP/tlsca/tlsca.pem")).expect("CA");
    let endpoint = |tls: ClientTlsConfig| {
        Endpoint::from_shared(format!("https://{}", orderer.addr))
            .expect("endpoint")
            .tls_config(tls)
            .expect("client TLS")
    };
    let dso = net.user("DSOMSP");
    let request = || {
        seek(
            &dso,
            "market",
            specified(0),
            specified(0),
            SeekBehavior::FailIfNotReady,
        )
    };

    // Without a client certificate the handshake, or the first call, fails.
    let anonymous = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.clone()))
        .domain_name("localhost");
    let refused = match endpoint(anonymous).connect().await {
        Err(_) => true,
        Ok(channel) => match AtomicBroadcastClient::new(channel)
            .deliver(tokio_stream::iter(vec![request()]))
            .await
        {
            Err(_) => true,
            // With TLS 1.3 the refusal may only show on the first read.
            Ok(response) => response.into_inner().message().await.is_err(),
        },
    };
    assert!(refused, "a client without certificate is refused");

    let user_tls = net.path("organizations/DSOMSP/users/User1/tls");
    let identity = tonic::transport::Identity::from_pem(
        std::fs::read(user_tls.join("client.crt")).expect("client cert"),
        std::fs::read(user_tls.join("client.key")).expect("client key"),
    );
    let with_cert = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost")
        .identity(identity);
    let channel = endpoint(with_cert)
        .connect()
        .await
        .expect("mutual TLS connects");
    let (blocks, status) = deliver(&mut AtomicBroadcastClient::new(channel), request()).await;
    assert_eq!(status, Status::Success);
    assert_eq!(blocks.len(), 1);
    orderer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_calls_need_a_consenters_tls_certificate_while_clients_need_none() {
    use gridledger_proto::gridledger::cluster_client::ClusterClient;
    use gridledger_proto::gridledger::{StepRequest, SubmitRequest};

    let net = Network::new("cluster-auth");
    net.join();
    let mut config = net.orderer_config();
    config.cluster.tls_ca_certs = vec![
        net.path("organizations/DSOMSP/tlsca/tlsca.pem"),
        net.path("organizations/OrdererMSP/tlsca/tlsca.pem"),
    ];
    let orderer = start(config).await;
    let ca = std::fs::read(net.path("organizations/OrdererMSP/tlsca/tlsca.pem")).expect("CA");
    let endpoint = |tls: ClientTlsConfig| {
        Endpoint::from_shared(format!("https://{}", orderer.addr))
            .expect("endpoint")
            .tls_config(tls)
            .expect("client TLS")
    };
    let anonymous = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.clone()))
        .domain_name("localhost");
    let channel = endpoint(anonymous).connect().await.expect("anonymous TLS");

    // Clients of Deliver need no certificate: client authentication is optional.
    let dso = net.user("DSOMSP");
    let request = seek(
        &dso,
        "market",
        specified(0),
        specified(0),
        SeekBehavior::FailIfNotReady,
    );
    let (blocks, status) = deliver(&mut AtomicBroadcastClient::new(channel.clone()), request).await;
    assert_eq!((status, blocks.len()), (Status::Success, 1));

    // The cluster service refuses a caller without a certificate …
    let submit = SubmitRequest {
        channel: "market".into(),
        envelope: Vec::new(),
    };
    let err = ClusterClient::new(channel.clone())
        .submit(submit.clone())
        .await
        .expect_err("anonymous cluster call");
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");

    // … and one whose certificate chains to a trusted CA but is no consenter's.
    let user_tls = net.path("organizations/DSOMSP/users/User1/tls");
    let identity = tonic::transport::Identity::from_pem(
        std::fs::read(user_tls.join("client.crt")).expect("client cert"),
        std::fs::read(user_tls.join("client.key")).expect("client key"),
    );
    let with_cert = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost")
        .identity(identity);
    let channel = endpoint(with_cert).connect().await.expect("mutual TLS");
    let mut client = ClusterClient::new(channel);
    let err = client.submit(submit).await.expect_err("not a consenter");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    let steps = tokio_stream::iter(vec![StepRequest {
        channel: "market".into(),
        message: vec![1, 2, 3],
    }]);
    let err = client.step(steps).await.expect_err("not a consenter");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    orderer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_fails_clearly_on_bad_material() {
    let net = Network::new("bad-material");
    let mut config = net.orderer_config();
    config.signing_key = net.path("organizations/DSOMSP/users/User1/msp/keystore/key.pem");
    let err = Orderer::bind(config)
        .await
        .expect_err("mismatched key refused");
    assert!(matches!(err, OrdererError::Identity(_)), "{err}");

    let mut config = net.orderer_config();
    config.tls.server_key = net.path("missing.key");
    let err = Orderer::bind(config)
        .await
        .expect_err("missing TLS key refused");
    assert!(err.to_string().contains("missing.key"), "{err}");
}
