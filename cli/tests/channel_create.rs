//! A new channel on a running network, as Fabric 2.5 makes one: `gridledger up`, a genesis
//! block of channel `grid` (the three organizations, the three orderers as consenters) from
//! `channel genesis`, `channel create` joining the running orderers through the channel
//! participation API on their operations endpoints, `channel join` joining the running peers
//! through cscc `JoinChain`, and `channel list` on a peer and an orderer. The channel then
//! works: `basic` is deployed on it through the lifecycle and a transaction commits. Refused
//! along the way, each with its reason: a second join of a peer or an orderer, a peer join
//! signed by a non-admin, and a participation request whose body is not a block.

mod support;

use gridledger_proto::common;
use gridledger_proto::prost::Message;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;
use support::{POLL, START_TIMEOUT, UpNetwork, gridledger, ok, stderr, stdout};

const CHANNEL: &str = "grid";
const ORGS: [&str; 3] = ["DSOMSP", "RetailerMSP", "CommunityMSP"];

/// Sends one HTTP request to `address` and returns the whole answer.
fn http(address: &str, method: &str, path: &str, content_type: &str, body: &[u8]) -> String {
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the endpoint");
    stream
        .set_read_timeout(Some(START_TIMEOUT))
        .expect("set a read timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("send");
    stream.write_all(body).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    answer
}

/// The operations endpoints of the orderers network.json lists.
fn orderer_admins(description: &serde_json::Value) -> Vec<String> {
    description["orderers"]
        .as_array()
        .expect("orderers")
        .iter()
        .map(|o| {
            o["operationsEndpoint"]
                .as_str()
                .expect("an operations endpoint")
                .to_owned()
        })
        .collect()
}

/// `channel join` of the DSO's peer signed by `user` of DSOMSP, with the explicit flags.
fn join_dso_as(dir: &Path, description: &serde_json::Value, block: &str, user: &str) -> String {
    let org = &description["organizations"][0];
    assert_eq!(org["mspId"], "DSOMSP");
    let peer = &org["peers"][0];
    let s = |p: &Path| p.to_str().expect("UTF-8 path").to_owned();
    let msp = dir.join(format!("crypto/organizations/DSOMSP/users/{user}/msp"));
    let out = gridledger(&[
        "channel",
        "join",
        "--block",
        block,
        "--peer",
        peer["endpoint"].as_str().expect("endpoint"),
        "--tls-ca",
        &s(&dir.join(peer["tlsCaCert"].as_str().expect("tlsCaCert"))),
        "--msp-id",
        "DSOMSP",
        "--cert",
        &s(&msp.join("signcerts/cert.pem")),
        "--key",
        &s(&msp.join("keystore/key.pem")),
    ]);
    assert!(
        !out.status.success(),
        "the join by {user} must be refused:\n{}",
        stdout(&out)
    );
    stderr(&out)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_channel_is_created_on_running_orderers_and_joined_by_running_peers() {
    let (net, description) = UpNetwork::start("channel-create");
    support::keep_panic_messages_in(&net.dir);
    let network = net.network_json();
    let dir = net.dir.clone();
    let path = |name: &str| dir.join(name).to_str().expect("UTF-8 path").to_owned();

    // The genesis block of `grid`: market's channel file, renamed.
    let market = std::fs::read_to_string(dir.join("market.toml")).expect("read market.toml");
    std::fs::write(
        dir.join("grid.toml"),
        market.replace("name = \"market\"", &format!("name = \"{CHANNEL}\"")),
    )
    .expect("write grid.toml");
    let block = path("grid.block");
    ok(&[
        "channel",
        "genesis",
        "--config",
        &path("grid.toml"),
        "--out",
        &block,
    ]);

    // A participation request whose body is no block is refused with the reason.
    let admins = orderer_admins(&description);
    assert_eq!(admins.len(), 3);
    let garbage = http(
        &admins[0],
        "POST",
        "/participation/v1/channels",
        "application/octet-stream",
        b"not a block",
    );
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    assert!(garbage.contains("{\"error\":\"cannot join: "), "{garbage}");

    // Every orderer joins and reports the channel active.
    let mut create = vec!["channel", "create", "--channel", CHANNEL, "--block", &block];
    for admin in &admins {
        create.extend(["--orderer-admin", admin.as_str()]);
    }
    let created = ok(&create);
    assert!(
        created.contains("channel 'grid' created on 3 orderer(s)"),
        "{created}"
    );
    for admin in &admins {
        let listed = ok(&["channel", "list", "--orderer-admin", admin]);
        assert!(
            listed
                .lines()
                .any(|l| l.starts_with("grid\tconsenter\tactive\theight ")),
            "{listed}"
        );
        assert!(
            listed.lines().any(|l| l.starts_with("market\t")),
            "{listed}"
        );
    }
    // Joining an orderer twice is refused (as Fabric: 405), and `create` says so and goes on.
    let mut form = b"--b0undary\r\nContent-Disposition: form-data; name=\"config-block\"; filename=\"grid.block\"\r\n\r\n".to_vec();
    form.extend(std::fs::read(&block).expect("read the block"));
    form.extend(b"\r\n--b0undary--\r\n");
    let twice = http(
        &admins[1],
        "POST",
        "/participation/v1/channels",
        "multipart/form-data; boundary=b0undary",
        &form,
    );
    assert!(twice.starts_with("HTTP/1.1 405 "), "{twice}");
    assert!(twice.contains("channel grid already exists"), "{twice}");
    let again = ok(&create);
    assert!(again.contains("already exists"), "{again}");
    let single = http(
        &admins[2],
        "GET",
        "/participation/v1/channels/grid",
        "",
        b"",
    );
    assert!(single.starts_with("HTTP/1.1 200 "), "{single}");
    assert!(
        single.contains("\"consensusRelation\":\"consenter\""),
        "{single}"
    );

    // A non-admin of the peer's organization may not join it.
    let refused = join_dso_as(&dir, &description, &block, "User1");
    assert!(
        refused.contains("only an admin of DSOMSP may join this peer to a channel"),
        "{refused}"
    );

    // Each organization's admin joins its peer.
    for org in ORGS {
        let joined = ok(&[
            "channel",
            "join",
            "--block",
            &block,
            "--network",
            &network,
            "--org",
            org,
        ]);
        assert!(joined.contains("joined channel 'grid'"), "{joined}");
    }
    let refused = join_dso_as(&dir, &description, &block, "Admin");
    assert!(
        refused.contains("channel grid is already joined by this peer"),
        "{refused}"
    );
    let listed = ok(&[
        "channel",
        "list",
        "--network",
        &network,
        "--org",
        "RetailerMSP",
    ]);
    let channels: Vec<&str> = listed.lines().skip(1).collect();
    assert_eq!(channels, ["grid", "market", "meter-retailer"], "{listed}");

    // Block 0 on every peer is the genesis block.
    let genesis = common::Block::decode(std::fs::read(&block).expect("read").as_slice())
        .expect("the genesis block");
    for org in ORGS {
        let out = path(&format!("grid-0-{org}.block"));
        ok(&[
            "channel",
            "fetch",
            "--network",
            &network,
            "--channel",
            CHANNEL,
            "--org",
            org,
            "--block",
            "0",
            "-o",
            &out,
        ]);
        let fetched =
            common::Block::decode(std::fs::read(&out).expect("read").as_slice()).expect("a block");
        assert_eq!(fetched.header, genesis.header, "{org}");
        assert_eq!(fetched.data, genesis.data, "{org}");
    }

    // The channel works: `basic` is defined through the lifecycle (its transactions are
    // ordered on `grid` and committed by every peer) and a transaction commits.
    ok(&[
        "chaincode",
        "deploy",
        "--network",
        &network,
        "--channel",
        CHANNEL,
        "--name",
        "basic",
        "--builtin",
        "basic",
    ]);
    let gateway = support::user_gateway(&dir, &description, "RetailerMSP").await;
    let contract = gateway.network(CHANNEL).contract("basic");
    contract
        .submit("CreateAsset", &["asset-grid", "green", "1", "Grid", "7"])
        .await
        .unwrap_or_else(|e| panic!("submit on grid: {e}"));
    let community = support::user_gateway(&dir, &description, "CommunityMSP").await;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let read = community
            .network(CHANNEL)
            .contract("basic")
            .evaluate("ReadAsset", &["asset-grid"])
            .await;
        match read {
            Ok(asset) if String::from_utf8_lossy(&asset).contains("Grid") => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "the community's peer never saw the asset: {other:?}"
                );
                tokio::time::sleep(POLL).await;
            }
        }
    }
    for org in ORGS {
        let info = ok(&[
            "channel",
            "info",
            "--network",
            &network,
            "--channel",
            CHANNEL,
            "--org",
            org,
        ]);
        let height: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("height:"))
            .and_then(|h| h.trim().parse().ok())
            .unwrap_or_else(|| panic!("no height in {info}"));
        assert!(height > 1, "{org}: {info}");
    }
}
