//! Access control on running `gridledger up` networks: Fabric's per-resource ACLs with their
//! default policies; ACLs changed by channel config updates (and changed back) taking effect on
//! the next request, and on Deliver streams already open, at the peer and at the orderer;
//! Deliver refused to organizations that are not members of a channel (on peers and orderers,
//! with nothing sent); no byte of a channel on the disk of a peer that is not its member; and
//! mutual TLS on a peer's and an orderer's gRPC and operations endpoints.
//!
//! Every refusal by an ACL must also leave a log line on the refusing node naming who was
//! refused, for which resource, and why.

mod support;

use gridledger_identity::SigningIdentity;
use gridledger_proto::prost::Message;
use gridledger_proto::{common, orderer, prost_types, protos};
use gridledger_sdk::{EventsOptions, Gateway};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{
    POLL, START_TIMEOUT, UpNetwork, contains, files, free_base_port, gridledger, ok, stderr, stdout,
};
use tonic::codegen::tokio_stream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// The channel every organization is a member of.
const MARKET: &str = "market";
/// The bilateral channel of the DSO and the retailer; the community is not a member.
const METER_RETAILER: &str = "meter-retailer";
/// The bilateral channel of the DSO and the community; the retailer is not a member.
const METER_COMMUNITY: &str = "meter-community";
/// The policy the tests move ACLs to: only an admin of the DSO satisfies it.
const DSO_ADMINS: &str = "/Channel/Application/DSOMSP/Admins";
/// How long a Deliver stream may stay silent before the test stops reading it.
const ANSWER_WAIT: Duration = Duration::from_secs(3);

/// An identity from the network's crypto material: `kind` is `users` or `peers`.
fn identity(dir: &Path, msp_id: &str, kind: &str, name: &str) -> Arc<SigningIdentity> {
    let base = dir.join(format!("crypto/organizations/{msp_id}/{kind}/{name}/msp"));
    SigningIdentity::load(
        msp_id,
        &base.join("signcerts/cert.pem"),
        &base.join("keystore/key.pem"),
    )
    .map(Arc::new)
    .unwrap_or_else(|e| panic!("loading {name} of {msp_id}: {e}"))
}

/// The network.json entry of `msp_id`'s peer.
fn peer_entry<'a>(network: &'a serde_json::Value, msp_id: &str) -> &'a serde_json::Value {
    network["organizations"]
        .as_array()
        .and_then(|orgs| orgs.iter().find(|o| o["mspId"] == msp_id))
        .map(|org| &org["peers"][0])
        .unwrap_or_else(|| panic!("network.json has no {msp_id}"))
}

/// A Gateway to `peer_msp`'s peer whose requests `signer` signs.
async fn gateway(
    dir: &Path,
    network: &serde_json::Value,
    peer_msp: &str,
    signer: Arc<SigningIdentity>,
) -> Gateway {
    let peer = peer_entry(network, peer_msp);
    let ca = std::fs::read(dir.join(peer["tlsCaCert"].as_str().expect("a path"))).expect("TLS CA");
    Gateway::connect(
        peer["endpoint"].as_str().expect("endpoint"),
        &ca,
        peer["serverName"].as_str().expect("serverName"),
        signer,
    )
    .await
    .expect("connect a gateway")
}

/// A TLS gRPC channel to a node listed in network.json (`entry` has endpoint, tlsCaCert and
/// serverName).
async fn node_channel(dir: &Path, entry: &serde_json::Value) -> Channel {
    let ca = std::fs::read(dir.join(entry["tlsCaCert"].as_str().expect("a path"))).expect("CA");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name(entry["serverName"].as_str().expect("serverName"));
    Endpoint::from_shared(format!(
        "https://{}",
        entry["endpoint"].as_str().expect("endpoint")
    ))
    .expect("an endpoint")
    .tls_config(tls)
    .expect("TLS config")
    .connect_timeout(Duration::from_secs(10))
    .connect()
    .await
    .expect("connect")
}

/// A Deliver request for blocks 0..=`stop` of `channel`, signed by `signer`.
fn seek_envelope(signer: &SigningIdentity, channel: &str, stop: u64) -> common::Envelope {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    let position = |n: u64| orderer::SeekPosition {
        r#type: Some(orderer::seek_position::Type::Specified(
            orderer::SeekSpecified { number: n },
        )),
    };
    let payload = common::Payload {
        header: Some(common::Header {
            channel_header: common::ChannelHeader {
                r#type: common::HeaderType::DeliverSeekInfo as i32,
                timestamp: Some(prost_types::Timestamp {
                    seconds: now.as_secs() as i64,
                    nanos: 0,
                }),
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
        data: orderer::SeekInfo {
            start: Some(position(0)),
            stop: Some(position(stop)),
            behavior: orderer::seek_info::SeekBehavior::BlockUntilReady as i32,
            ..Default::default()
        }
        .encode_to_vec(),
    }
    .encode_to_vec();
    common::Envelope {
        signature: signer.sign(&payload),
        payload,
    }
}

/// What a Deliver stream sent: block numbers and statuses, in order.
#[derive(Debug, PartialEq, Eq)]
enum Delivered {
    Block(u64),
    Status(common::Status),
}

/// Reads `stream` until it ends or stays silent for [`ANSWER_WAIT`].
async fn drain<T>(
    mut stream: tonic::Streaming<T>,
    convert: impl Fn(T) -> Delivered,
) -> Vec<Delivered> {
    let mut out = Vec::new();
    while let Ok(Ok(Some(message))) = tokio::time::timeout(ANSWER_WAIT, stream.message()).await {
        out.push(convert(message));
    }
    out
}

fn status(code: i32) -> Delivered {
    Delivered::Status(common::Status::try_from(code).unwrap_or(common::Status::Unknown))
}

/// Asks a peer's Deliver for blocks 0..=`stop` of `channel`, signed by `signer`.
async fn peer_deliver(
    channel: &Channel,
    signer: &SigningIdentity,
    ledger: &str,
    stop: u64,
) -> Vec<Delivered> {
    let mut client = protos::deliver_client::DeliverClient::new(channel.clone());
    let stream = client
        .deliver(tokio_stream::iter([seek_envelope(signer, ledger, stop)]))
        .await
        .expect("the peer accepts a Deliver stream")
        .into_inner();
    drain(stream, |r: protos::DeliverResponse| match r.r#type {
        Some(protos::deliver_response::Type::Block(b)) => {
            Delivered::Block(b.header.map_or(u64::MAX, |h| h.number))
        }
        Some(protos::deliver_response::Type::Status(code)) => status(code),
        _ => Delivered::Status(common::Status::Unknown),
    })
    .await
}

/// Asks an orderer's Deliver for blocks 0..=`stop` of `channel`, signed by `signer`.
async fn orderer_deliver(
    channel: &Channel,
    signer: &SigningIdentity,
    ledger: &str,
    stop: u64,
) -> Vec<Delivered> {
    let mut client = orderer::atomic_broadcast_client::AtomicBroadcastClient::new(channel.clone());
    let stream = client
        .deliver(tokio_stream::iter([seek_envelope(signer, ledger, stop)]))
        .await
        .expect("the orderer accepts a Deliver stream")
        .into_inner();
    drain(stream, |r: orderer::DeliverResponse| match r.r#type {
        Some(orderer::deliver_response::Type::Block(b)) => {
            Delivered::Block(b.header.map_or(u64::MAX, |h| h.number))
        }
        Some(orderer::deliver_response::Type::Status(code)) => status(code),
        None => Delivered::Status(common::Status::Unknown),
    })
    .await
}

/// The lines of a node's log, without terminal colour codes.
fn log_lines(dir: &Path, node: &str) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join(format!("logs/{node}.log"))).unwrap_or_default();
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequence: ESC '[' parameters, ending with a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain.lines().map(str::to_owned).collect()
}

/// Asserts that `node`'s log has a line holding every one of `needles`.
fn assert_logged(dir: &Path, node: &str, needles: &[&str]) {
    // The line is written as the refusal is answered; give the writer a moment to flush.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if log_lines(dir, node)
            .iter()
            .any(|l| needles.iter().all(|n| l.contains(n)))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no line of {node}'s log holds all of {needles:?}"
        );
        std::thread::sleep(POLL);
    }
}

/// Prepares an ACL update of `market` (`acl set|unset` arguments), has the DSO's and the
/// retailer's admins sign it (a majority of the Admins) and submits it.
fn update_acl(dir: &Path, network: &str, change: &[&str]) {
    let stem = format!("acl-{}", change.join("-").replace('/', "_"));
    let mut command = vec!["acl"];
    command.extend_from_slice(change);
    update_market(dir, network, &stem, &command);
}

/// Prepares an update of `market` with `channel COMMAND… --network … -o DIR/STEM.pb`, has the
/// DSO's and the retailer's admins sign it (a majority of the Admins) and submits it.
fn update_market(dir: &Path, network: &str, stem: &str, command: &[&str]) {
    let file = dir.join(format!("{stem}.pb"));
    let file = file.to_str().expect("a UTF-8 path");
    let mut prepare = vec!["channel"];
    prepare.extend_from_slice(command);
    prepare.extend_from_slice(&[
        "--network",
        network,
        "--channel",
        MARKET,
        "--org",
        "DSOMSP",
        "-o",
        file,
    ]);
    ok(&prepare);
    for org in ["DSOMSP", "RetailerMSP"] {
        ok(&[
            "channel",
            "update",
            "sign",
            "--network",
            network,
            "--org",
            org,
            "--file",
            file,
        ]);
    }
    let submitted = ok(&[
        "channel",
        "update",
        "submit",
        "--network",
        network,
        "--channel",
        MARKET,
        "--org",
        "DSOMSP",
        "--file",
        file,
    ]);
    assert!(submitted.contains("config block"), "{submitted}");
}

/// Waits until `probe` answers `want` (the new config reached the peer), or fails.
async fn wait_until<F, Fut>(what: &str, want: bool, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + START_TIMEOUT;
    while probe().await != want {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acls_default_to_fabric_policies_follow_config_updates_and_refuse_non_members() {
    let (net, network) = UpNetwork::start("access-control");
    let dir = net.dir.clone();
    let network_json = net.network_json();
    let dso_peer_identity = identity(&dir, "DSOMSP", "peers", "peer0.dso");
    let dso_user = identity(&dir, "DSOMSP", "users", "User1");
    let dso_admin = identity(&dir, "DSOMSP", "users", "Admin");
    let peer_channel = node_channel(&dir, peer_entry(&network, "DSOMSP")).await;

    // (a) Fabric's defaults. A peer's identity satisfies the channel's Readers (admin, peer,
    // client) but not its Writers (admin, client): it may not propose (peer/Propose) ...
    let as_peer = gateway(&dir, &network, "DSOMSP", dso_peer_identity.clone()).await;
    let refused = as_peer
        .network(MARKET)
        .contract("basic")
        .evaluate("AssetExists", &["asset1"])
        .await
        .expect_err("a peer identity may not propose");
    let message = refused.to_string();
    assert!(
        message.contains("peer/Propose") && message.contains("/Channel/Application/Writers"),
        "the refusal names the resource and the policy: {message}"
    );
    let endorse = as_peer
        .network(MARKET)
        .contract("basic")
        .proposal("CreateAsset", &["acl-asset", "blue", "1", "peer", "1"])
        .expect("a proposal")
        .endorse()
        .await;
    let endorse = endorse
        .err()
        .expect("a peer identity may not endorse")
        .to_string();
    assert!(endorse.contains("peer/Propose"), "{endorse}");
    assert_logged(
        &dir,
        "peer0.dso",
        &[
            "access denied",
            "peer/Propose",
            "/Channel/Application/Writers",
            "peer0.dso",
            "DSOMSP",
        ],
    );
    // ... but may query qscc and receive blocks, which Readers allows.
    let info = as_peer
        .network(MARKET)
        .contract("qscc")
        .evaluate("GetChainInfo", &[MARKET])
        .await
        .expect("a peer identity reads qscc/GetChainInfo");
    let info = common::BlockchainInfo::decode(info.as_slice()).expect("a BlockchainInfo");
    assert!(info.height >= 1, "{info:?}");
    let mut blocks = as_peer
        .network(MARKET)
        .block_events(EventsOptions::new().start_block(0))
        .await
        .expect("a Deliver stream");
    let first = blocks.next().await.expect("block 0").expect("a block");
    assert_eq!(first.header.expect("a header").number, 0);
    let mut filtered = as_peer
        .network(MARKET)
        .filtered_block_events(EventsOptions::new().start_block(0))
        .await
        .expect("a filtered Deliver stream");
    assert_eq!(
        filtered
            .next()
            .await
            .expect("block 0")
            .expect("a block")
            .number,
        0
    );
    // A client of the organization may propose.
    let as_user = gateway(&dir, &network, "DSOMSP", dso_user.clone()).await;
    as_user
        .network(MARKET)
        .contract("basic")
        .evaluate("AssetExists", &["asset1"])
        .await
        .expect("a client proposes");

    // (b) An update moves qscc/GetChainInfo to the DSO's Admins: the client is refused with
    // the resource and the policy, the DSO's admin is served; removing the override restores
    // the default.
    let as_admin = gateway(&dir, &network, "DSOMSP", dso_admin.clone()).await;
    let chain_info = |g: &Gateway| {
        let contract = g.network(MARKET).contract("qscc");
        async move { contract.evaluate("GetChainInfo", &[MARKET]).await }
    };
    update_acl(
        &dir,
        &network_json,
        &[
            "set",
            "--resource",
            "qscc/GetChainInfo",
            "--policy",
            DSO_ADMINS,
        ],
    );
    wait_until("the client is refused qscc/GetChainInfo", false, || async {
        chain_info(&as_user).await.is_ok()
    })
    .await;
    let message = chain_info(&as_user)
        .await
        .expect_err("the client is refused")
        .to_string();
    assert!(
        message.contains("qscc/GetChainInfo") && message.contains(DSO_ADMINS),
        "the refusal names the resource and the policy: {message}"
    );
    chain_info(&as_admin)
        .await
        .expect("the DSO's admin is served");
    // Other qscc functions keep their defaults.
    as_user
        .network(MARKET)
        .contract("qscc")
        .evaluate("GetBlockByNumber", &[MARKET, "0"])
        .await
        .expect("GetBlockByNumber keeps the Readers default");
    assert_logged(
        &dir,
        "peer0.dso",
        &[
            "access denied",
            "qscc/GetChainInfo",
            DSO_ADMINS,
            "User1",
            "DSOMSP",
        ],
    );

    // event/Block likewise: the client's Deliver is FORBIDDEN, with nothing sent; the admin's
    // is served. A stream the client opened before the change is checked again when the
    // config changes: it ends FORBIDDEN before the first block committed under the new ACL.
    let info = chain_info(&as_admin)
        .await
        .expect("the admin reads the height");
    let height = common::BlockchainInfo::decode(info.as_slice())
        .expect("a BlockchainInfo")
        .height;
    let mut open_stream = as_user
        .network(MARKET)
        .block_events(EventsOptions::new().start_block(0))
        .await
        .expect("a Deliver stream");
    for n in 0..height {
        let block = open_stream.next().await.expect("a block").expect("a block");
        assert_eq!(block.header.expect("a header").number, n);
    }
    update_acl(
        &dir,
        &network_json,
        &["set", "--resource", "event/Block", "--policy", DSO_ADMINS],
    );
    wait_until("the client is refused event/Block", true, || async {
        peer_deliver(&peer_channel, &dso_user, MARKET, 0).await
            == vec![Delivered::Status(common::Status::Forbidden)]
    })
    .await;
    assert_eq!(
        peer_deliver(&peer_channel, &dso_admin, MARKET, 0).await,
        vec![
            Delivered::Block(0),
            Delivered::Status(common::Status::Success)
        ]
    );
    assert_logged(
        &dir,
        "peer0.dso",
        &["access denied", "event/Block", DSO_ADMINS, "User1"],
    );
    // The client may still write; the block of its transaction is not sent on its old stream.
    let tx = as_user
        .network(MARKET)
        .contract("basic")
        .proposal("CreateAsset", &["acl-asset", "blue", "1", "dso", "1"])
        .expect("a proposal")
        .endorse()
        .await
        .expect("the client endorses");
    let tx_id = tx.tx_id().to_owned();
    let committed = tx
        .submit()
        .await
        .expect("the client submits")
        .status()
        .await
        .expect("a commit status");
    assert!(committed.is_valid(), "{committed:?}");
    let commit = committed.block_number;
    let ended = loop {
        match open_stream.next().await {
            Ok(Some(block)) => {
                let number = block.header.expect("a header").number;
                assert!(
                    number < commit,
                    "block {number} was sent under an ACL that refuses the client"
                );
            }
            Ok(None) => panic!("the old stream ended without a status"),
            Err(e) => break e.to_string(),
        }
    };
    assert!(ended.contains("FORBIDDEN"), "{ended}");
    // Filtered blocks are a resource of their own, still under Readers.
    let mut filtered = as_user
        .network(MARKET)
        .filtered_block_events(EventsOptions::new().start_block(0))
        .await
        .expect("a filtered Deliver stream");
    assert_eq!(
        filtered
            .next()
            .await
            .expect("block 0")
            .expect("a block")
            .number,
        0
    );

    // gateway/CommitStatus likewise.
    update_acl(
        &dir,
        &network_json,
        &[
            "set",
            "--resource",
            "gateway/CommitStatus",
            "--policy",
            DSO_ADMINS,
        ],
    );
    wait_until(
        "the client is refused gateway/CommitStatus",
        false,
        || async {
            gridledger_sdk::commit_status(&as_user, MARKET, &tx_id)
                .await
                .is_ok()
        },
    )
    .await;
    let message = gridledger_sdk::commit_status(&as_user, MARKET, &tx_id)
        .await
        .expect_err("the client is refused")
        .to_string();
    assert!(
        message.contains("gateway/CommitStatus") && message.contains(DSO_ADMINS),
        "{message}"
    );
    let status = gridledger_sdk::commit_status(&as_admin, MARKET, &tx_id)
        .await
        .expect("the DSO's admin reads the commit status");
    assert_eq!(status.block_number, commit);

    // The overrides removed: the defaults apply again.
    update_acl(
        &dir,
        &network_json,
        &["unset", "--resource", "gateway/CommitStatus"],
    );
    update_acl(
        &dir,
        &network_json,
        &["unset", "--resource", "qscc/GetChainInfo"],
    );
    update_acl(&dir, &network_json, &["unset", "--resource", "event/Block"]);
    wait_until("the client is served event/Block again", true, || async {
        peer_deliver(&peer_channel, &dso_user, MARKET, 0).await
            == vec![
                Delivered::Block(0),
                Delivered::Status(common::Status::Success),
            ]
    })
    .await;
    chain_info(&as_user)
        .await
        .expect("the client reads qscc/GetChainInfo again");
    gridledger_sdk::commit_status(&as_user, MARKET, &tx_id)
        .await
        .expect("the client reads commit statuses again");

    // A config update the CLI refuses to prepare: removing an override that is not there.
    let out = gridledger(&[
        "channel",
        "acl",
        "unset",
        "--network",
        &network_json,
        "--channel",
        MARKET,
        "--resource",
        "event/Block",
        "-o",
        dir.join("nothing.pb").to_str().expect("UTF-8"),
    ]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("no ACL override for event/Block"),
        "{}",
        stderr(&out)
    );

    // (c) The community is not a member of meter-retailer: its peer's identity and its client
    // are FORBIDDEN by the DSO's peer and by the orderer, and are sent no block.
    let community_peer = identity(&dir, "CommunityMSP", "peers", "peer0.community");
    let community_user = identity(&dir, "CommunityMSP", "users", "User1");
    let orderer_channel = node_channel(&dir, &network["orderers"][0]).await;
    for who in [&community_peer, &community_user] {
        assert_eq!(
            peer_deliver(&peer_channel, who, METER_RETAILER, 0).await,
            vec![Delivered::Status(common::Status::Forbidden)],
            "the DSO's peer refuses {}",
            who.msp_id()
        );
        assert_eq!(
            orderer_deliver(&orderer_channel, who, METER_RETAILER, 0).await,
            vec![Delivered::Status(common::Status::Forbidden)],
            "the orderer refuses {}",
            who.msp_id()
        );
    }
    // The members are served by both.
    let retailer_peer = identity(&dir, "RetailerMSP", "peers", "peer0.retailer");
    assert_eq!(
        peer_deliver(&peer_channel, &retailer_peer, METER_RETAILER, 0).await,
        vec![
            Delivered::Block(0),
            Delivered::Status(common::Status::Success)
        ]
    );
    assert_eq!(
        orderer_deliver(&orderer_channel, &retailer_peer, METER_RETAILER, 0).await,
        vec![
            Delivered::Block(0),
            Delivered::Status(common::Status::Success)
        ]
    );
    assert_logged(
        &dir,
        "peer0.dso",
        &[
            "access denied",
            "event/Block",
            METER_RETAILER,
            "CommunityMSP",
        ],
    );
    assert_logged(
        &dir,
        "orderer0",
        &["deliver request rejected", METER_RETAILER, "CommunityMSP"],
    );

    // The orderer too authorizes an open Deliver stream again when the channel config changes:
    // once the DSO's Readers are its admins and peers only, the DSO's client no longer
    // satisfies /Channel/Readers and its stream ends FORBIDDEN before the next block.
    let height = {
        let info = chain_info(&as_user).await.expect("the height");
        common::BlockchainInfo::decode(info.as_slice())
            .expect("a BlockchainInfo")
            .height
    };
    let mut grpc = orderer::atomic_broadcast_client::AtomicBroadcastClient::new(orderer_channel);
    let mut open_stream = grpc
        .deliver(tokio_stream::iter([seek_envelope(
            &dso_user,
            MARKET,
            u64::MAX,
        )]))
        .await
        .expect("the orderer accepts a Deliver stream")
        .into_inner();
    let mut delivered = 0;
    while delivered < height {
        match open_stream.message().await.expect("a message") {
            Some(orderer::DeliverResponse {
                r#type: Some(orderer::deliver_response::Type::Block(_)),
            }) => delivered += 1,
            other => panic!("the orderer answered {other:?} before the channel's height"),
        }
    }
    update_market(
        &dir,
        &network_json,
        "dso-readers-admins",
        &[
            "policy",
            "set",
            "--path",
            "/Channel/Application/DSOMSP/Readers",
            "--policy",
            "OR('DSOMSP.admin','DSOMSP.peer')",
        ],
    );
    let (_, commit) = as_admin
        .network(MARKET)
        .contract("basic")
        .submit("CreateAsset", &["acl-asset-2", "red", "2", "dso", "2"])
        .await
        .expect("the DSO's admin submits");
    loop {
        let message = tokio::time::timeout(START_TIMEOUT, open_stream.message())
            .await
            .expect("the orderer answers")
            .expect("a message");
        match message.and_then(|m| m.r#type) {
            Some(orderer::deliver_response::Type::Block(b)) => {
                let number = b.header.map_or(u64::MAX, |h| h.number);
                assert!(
                    number < commit,
                    "the orderer sent block {number} to a client /Channel/Readers refuses"
                );
            }
            Some(orderer::deliver_response::Type::Status(code)) => {
                assert_eq!(code, common::Status::Forbidden as i32);
                break;
            }
            None => panic!("the stream ended without a status"),
        }
    }
    assert_logged(
        &dir,
        "orderer0",
        &[
            "deliver stream ended",
            "no longer admits",
            "User1",
            "DSOMSP",
        ],
    );
}

/// Endorses and submits a meter reading on `channel` as `meter` with `salt` as its transient
/// salt, endorsing again while the two peers are at different heights; returns the tx id and
/// its block number.
async fn record_reading(
    dir: &Path,
    network: &serde_json::Value,
    channel: &str,
    meter: &str,
    start: u64,
    import_wh: &str,
    salt: &str,
) -> (String, u64) {
    let g = gateway(
        dir,
        network,
        "DSOMSP",
        identity(dir, "DSOMSP", "users", meter),
    )
    .await;
    let after = UNIX_EPOCH + Duration::from_secs(start + 900);
    let contract = g.network(channel).contract("meter").at(after);
    let start = start.to_string();
    let args: Vec<Vec<u8>> = ["RecordReading", &start, import_wh, "0"]
        .iter()
        .map(|a| a.as_bytes().to_vec())
        .collect();
    let transient = BTreeMap::from([("salt".to_owned(), salt.as_bytes().to_vec())]);
    let mut last = String::new();
    for _ in 0..40 {
        let proposal = contract
            .proposal_with(args.clone(), transient.clone(), Vec::new())
            .expect("a proposal");
        match proposal.endorse().await {
            Ok(tx) => {
                let tx_id = tx.tx_id().to_owned();
                let commit = tx.submit().await.expect("submitted");
                let status = commit.status().await.expect("a commit status");
                assert!(status.is_valid(), "{meter}'s reading: {status:?}");
                return (tx_id, status.block_number);
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{meter}'s reading on {channel} was refused: {last}");
}

/// The header hash of block `number` of `channel`, read through `msp_id`'s peer by its User1.
async fn block_hash(
    dir: &Path,
    network: &serde_json::Value,
    msp_id: &str,
    channel: &str,
    number: u64,
) -> Vec<u8> {
    let g = support::user_gateway(dir, network, msp_id).await;
    let bytes = g
        .network(channel)
        .contract("qscc")
        .evaluate("GetBlockByNumber", &[channel, &number.to_string()])
        .await
        .expect("the block");
    let block = common::Block::decode(bytes.as_slice()).expect("a block");
    gridledger_proto::blockutil::block_header_hash(&block.header.expect("a header")).to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_holds_no_byte_of_a_channel_its_organization_is_not_a_member_of() {
    let (mut net, network) = UpNetwork::start("access-control-disk");
    let dir = net.dir.clone();
    let period = support::quiet_period();
    let unique = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    // For each bilateral meter channel: the member that holds it, the market peer that must
    // not, and the markers of one reading recorded on it.
    let mut cases = Vec::new();
    for (channel, meter, member, outsider) in [
        (
            METER_RETAILER,
            "Meter-R001",
            "peer0.retailer",
            "peer0.community",
        ),
        (
            METER_COMMUNITY,
            "Meter-C001",
            "peer0.community",
            "peer0.retailer",
        ),
    ] {
        let salt = format!("acl-disk-salt-{channel}-{unique}");
        let salt_hex: String = salt.bytes().map(|b| format!("{b:02x}")).collect();
        // An import figure no other byte string on the nodes holds.
        let import = format!("{}", 7_000_000 + unique % 1_000_000);
        let (tx_id, block) =
            record_reading(&dir, &network, channel, meter, period, &import, &salt).await;
        let member_msp = if member == "peer0.retailer" {
            "RetailerMSP"
        } else {
            "CommunityMSP"
        };
        let hash = block_hash(&dir, &network, member_msp, channel, block).await;
        let hash_hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        cases.push((
            channel, member, outsider, tx_id, hash, hash_hex, salt, salt_hex,
        ));
    }
    net.stop_up();

    for (channel, member, outsider, tx_id, hash, hash_hex, salt, salt_hex) in &cases {
        let member_files = files(&dir.join(format!("nodes/{member}/data")));
        let outsider_files = files(&dir.join(format!("nodes/{outsider}/data")));
        assert!(!outsider_files.is_empty(), "{outsider} has files");
        // The member's disk holds each marker (so the search can find them) ...
        let markers: Vec<(&str, Vec<Vec<u8>>)> = vec![
            ("tx id", vec![tx_id.as_bytes().to_vec()]),
            (
                "block hash",
                vec![hash.clone(), hash_hex.as_bytes().to_vec()],
            ),
            (
                "private salt",
                vec![salt.as_bytes().to_vec(), salt_hex.as_bytes().to_vec()],
            ),
        ];
        for (what, forms) in &markers {
            assert!(
                member_files
                    .iter()
                    .any(|(_, bytes)| forms.iter().any(|f| contains(bytes, f))),
                "{member} holds the {what} of {channel}"
            );
        }
        // ... and the outsider's holds none, in any form.
        for (path, bytes) in &outsider_files {
            for (what, forms) in &markers {
                for form in forms {
                    assert!(
                        !contains(bytes, form),
                        "{path} holds the {what} of {channel}"
                    );
                }
            }
            // The channel's name is on `market` (each market organization registers its
            // meter channel there), and nowhere else: no folder, block or config of it.
            assert!(!path.contains(channel), "{outsider} has {path}");
            if contains(bytes, channel.as_bytes()) {
                assert!(
                    path.contains(&format!("/channels/{MARKET}/")),
                    "{path} names {channel}"
                );
            }
        }
    }
}

/// Who a TLS client is: no certificate, one from a CA the server does not trust, or one it
/// does.
#[derive(Debug, Clone, Copy)]
enum Client {
    Anonymous,
    OtherCa,
    Trusted,
}

/// The TLS client certificate and key of `client` (`None` for [`Client::Anonymous`]): the
/// server trusts CommunityMSP's TLS CA; RetailerMSP's is another CA.
fn client_cert(dir: &Path, client: Client) -> Option<(PathBuf, PathBuf)> {
    let msp_id = match client {
        Client::Anonymous => return None,
        Client::OtherCa => "RetailerMSP",
        Client::Trusted => "CommunityMSP",
    };
    let tls = dir.join(format!("crypto/organizations/{msp_id}/users/User1/tls"));
    Some((tls.join("client.crt"), tls.join("client.key")))
}

/// A gRPC channel to `127.0.0.1:port` (server name `localhost`), trusting `ca`, presenting
/// `client`'s certificate; `Err` when the handshake fails.
async fn mtls_channel(port: u16, ca: &Path, dir: &Path, client: Client) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(
            std::fs::read(ca).expect("the server CA"),
        ))
        .domain_name("localhost");
    if let Some((cert, key)) = client_cert(dir, client) {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            std::fs::read(cert).expect("client cert"),
            std::fs::read(key).expect("client key"),
        ));
    }
    Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .expect("an endpoint")
        .tls_config(tls)
        .expect("TLS config")
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// One HTTPS GET of `path` at `127.0.0.1:port` (server name `localhost`) trusting `ca`, as
/// `client`: the answer, or why the exchange failed.
fn https_get(
    port: u16,
    path: &str,
    ca: &Path,
    dir: &Path,
    client: Client,
) -> Result<String, String> {
    use std::io::{Read, Write};
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| text(&e))? {
        roots
            .add(cert.map_err(|e| text(&e))?)
            .map_err(|e| text(&e))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| text(&e))?
    .with_root_certificates(roots);
    let config = match client_cert(dir, client) {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(&cert)
                .map_err(|e| text(&e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| text(&e))?;
            let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| text(&e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| text(&e))?
        }
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from("localhost".to_owned()).map_err(|e| text(&e))?;
    let connection = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| text(&e))?;
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| text(&e))?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| text(&e))?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| text(&e))?;
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(text(&e)),
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// Whether the peer at `port` serves `client` a Gateway call (qscc `GetChainInfo` on market):
/// `Err` with the failure when the TLS handshake or the call fails.
async fn peer_serves(port: u16, ca: &Path, dir: &Path, client: Client) -> Result<(), String> {
    let channel = mtls_channel(port, ca, dir, client).await?;
    let gateway = Gateway::from_channel(channel, identity(dir, "CommunityMSP", "users", "User1"));
    gateway
        .network(MARKET)
        .contract("qscc")
        .evaluate("GetChainInfo", &[MARKET])
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Whether the orderer at `port` answers `client`'s Deliver request at all (this orderer
/// serves no channel, so a served request gets the Deliver status NOT_FOUND).
async fn orderer_serves(port: u16, ca: &Path, dir: &Path, client: Client) -> Result<(), String> {
    let channel = mtls_channel(port, ca, dir, client).await?;
    let signer = identity(dir, "CommunityMSP", "users", "User1");
    let mut grpc = orderer::atomic_broadcast_client::AtomicBroadcastClient::new(channel);
    let mut stream = grpc
        .deliver(tokio_stream::iter([seek_envelope(&signer, MARKET, 0)]))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    match stream.message().await {
        Ok(Some(orderer::DeliverResponse {
            r#type: Some(orderer::deliver_response::Type::Status(code)),
        })) if code == common::Status::NotFound as i32 => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_refuses_clients_without_a_trusted_certificate_on_every_endpoint() {
    let (mut net, _network) = UpNetwork::start("access-control-mtls");
    let dir = net.dir.clone();
    let s = |p: PathBuf| p.to_str().expect("a UTF-8 path").to_owned();
    let crypto = |rest: &str| s(dir.join("crypto/organizations").join(rest));
    let base = free_base_port(4);
    let (peer_port, peer_ops, orderer_port, orderer_ops) = (base, base + 1, base + 2, base + 3);
    let client_ca = crypto("CommunityMSP/tlsca/tlsca.pem");

    // A second CommunityMSP peer and an orderer serving no channel yet, each with mutual TLS
    // on its gRPC endpoint and its operations endpoint.
    let peer_dir = dir.join("nodes/peer1.community");
    std::fs::create_dir_all(peer_dir.join("data/join")).expect("create the peer's folders");
    std::fs::copy(
        dir.join("nodes/peer0.community/data/join/market.block"),
        peer_dir.join("data/join/market.block"),
    )
    .expect("copy the genesis block");
    let peer_tls = |f: &str| crypto(&format!("CommunityMSP/peers/peer0.community/tls/{f}"));
    let peer_msp = |f: &str| crypto(&format!("CommunityMSP/peers/peer0.community/msp/{f}"));
    std::fs::write(
        peer_dir.join("peer.toml"),
        format!(
            "name = \"peer1.community\"\nmsp_id = \"CommunityMSP\"\nlisten = \"127.0.0.1:{peer_port}\"\n\
             data_dir = \"{}\"\nsigning_cert = \"{}\"\nsigning_key = \"{}\"\n\
             tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_client_ca = \"{client_ca}\"\n\n\
             [operations]\nlisten_address = \"127.0.0.1:{peer_ops}\"\ntls_cert = \"{}\"\n\
             tls_key = \"{}\"\ntls_client_ca_certs = [\"{client_ca}\"]\n",
            s(peer_dir.join("data")),
            peer_msp("signcerts/cert.pem"),
            peer_msp("keystore/key.pem"),
            peer_tls("server.crt"),
            peer_tls("server.key"),
            peer_tls("server.crt"),
            peer_tls("server.key"),
        ),
    )
    .expect("write peer.toml");
    let orderer_dir = dir.join("nodes/orderer3");
    std::fs::create_dir_all(orderer_dir.join("data")).expect("create the orderer's folders");
    let o = |f: &str| crypto(&format!("OrdererMSP/orderers/orderer0/{f}"));
    std::fs::write(
        orderer_dir.join("orderer.toml"),
        format!(
            "name = \"orderer3\"\nmsp_id = \"OrdererMSP\"\nlisten_address = \"127.0.0.1:{orderer_port}\"\n\
             data_dir = \"{}\"\nsigning_cert = \"{}\"\nsigning_key = \"{}\"\n\n\
             [tls]\nserver_cert = \"{}\"\nserver_key = \"{}\"\nclient_ca_certs = [\"{client_ca}\"]\n\n\
             [cluster]\ntls_ca_certs = [\"{}\"]\n\n\
             [operations]\nlisten_address = \"127.0.0.1:{orderer_ops}\"\ntls_cert = \"{}\"\n\
             tls_key = \"{}\"\ntls_client_ca_certs = [\"{client_ca}\"]\n",
            s(orderer_dir.join("data")),
            o("msp/signcerts/cert.pem"),
            o("msp/keystore/key.pem"),
            o("tls/server.crt"),
            o("tls/server.key"),
            crypto("OrdererMSP/tlsca/tlsca.pem"),
            o("tls/server.crt"),
            o("tls/server.key"),
        ),
    )
    .expect("write orderer.toml");
    net.start_node("peer1.community", peer_port);
    net.start_node("orderer3", orderer_port);

    let peer_ca = dir.join("crypto/organizations/CommunityMSP/tlsca/tlsca.pem");
    let orderer_ca = dir.join("crypto/organizations/OrdererMSP/tlsca/tlsca.pem");
    // The trusted client is served by each endpoint (the peer once it has opened market) ...
    let deadline = Instant::now() + START_TIMEOUT;
    while let Err(e) = peer_serves(peer_port, &peer_ca, &dir, Client::Trusted).await {
        assert!(
            Instant::now() < deadline,
            "the peer never served a trusted client: {e}"
        );
        tokio::time::sleep(POLL).await;
    }
    orderer_serves(orderer_port, &orderer_ca, &dir, Client::Trusted)
        .await
        .expect("the orderer serves a trusted client");
    for (port, ca) in [(peer_ops, &peer_ca), (orderer_ops, &orderer_ca)] {
        let answer = https_get(port, "/healthz", ca, &dir, Client::Trusted)
            .expect("the operations endpoint serves a trusted client");
        assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    }
    // ... and refuses a client without a certificate, or with one of another CA.
    for client in [Client::Anonymous, Client::OtherCa] {
        assert!(
            peer_serves(peer_port, &peer_ca, &dir, client)
                .await
                .is_err(),
            "the peer served {client:?}"
        );
        assert!(
            orderer_serves(orderer_port, &orderer_ca, &dir, client)
                .await
                .is_err(),
            "the orderer served {client:?}"
        );
        for (port, ca) in [(peer_ops, &peer_ca), (orderer_ops, &orderer_ca)] {
            let answer = https_get(port, "/healthz", ca, &dir, client);
            assert!(
                !answer.as_ref().is_ok_and(|a| a.starts_with("HTTP/")),
                "operations endpoint {port} answered {client:?}: {answer:?}"
            );
        }
    }
}
