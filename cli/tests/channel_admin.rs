//! The channel admin's workflow on a real local network: `gridledger up`, crypto material for a
//! fourth organization, `channel org add` writing the update that makes it a member of
//! `market`, admins of different organizations signing the same file in turn, the dry run
//! (`update check`) and `update submit`. The channel's Admins policy is MAJORITY Admins over
//! DSOMSP, RetailerMSP and CommunityMSP: with one admin signature the update is refused by both
//! `check` and `submit`, with the policy, who signed and who is missing; with two it is ordered,
//! and the config block the organization's peer commits carries the new organization. Then the
//! new organization's peer joins `market` with the genesis block and catches up with the
//! others, which its own admin sees through `channel info`.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;
use support::{POLL, START_TIMEOUT, UpNetwork, free_base_port, gridledger, ok, stderr, stdout};

const CHANNEL: &str = "market";
const NEW_ORG: &str = "AggregatorMSP";

/// Writes crypto material for the new organization under `dir/aggregator`; returns its MSP
/// folder.
fn new_org_material(dir: &Path) -> String {
    let config = dir.join("aggregator-crypto.toml");
    std::fs::write(
        &config,
        format!(
            "seed = \"channel-admin-test\"\nvalidity_days = 3650\n\n[[organizations]]\n\
             msp_id = \"{NEW_ORG}\"\npeers = [{{ name = \"peer0.aggregator\" }}]\n"
        ),
    )
    .expect("write the crypto config");
    let out = dir.join("aggregator");
    ok(&[
        "crypto",
        "generate",
        "--config",
        config.to_str().expect("UTF-8 path"),
        "--out",
        out.to_str().expect("UTF-8 path"),
    ]);
    let msp = out.join(format!("organizations/{NEW_ORG}/msp"));
    assert!(
        msp.join("cacerts").is_dir(),
        "no MSP folder at {}",
        msp.display()
    );
    msp.to_str().expect("UTF-8 path").to_owned()
}

/// A peer the test started; it exits when its standard input closes.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// Starts the new organization's peer on `port`, joining `market` with `genesis`; returns it
/// and a network.json that lists its organization (its admin, its peer, the orderers).
fn start_new_peer(
    dir: &Path,
    network: &serde_json::Value,
    genesis: &Path,
    port: u16,
) -> (Peer, String) {
    let org = dir.join(format!("aggregator/organizations/{NEW_ORG}"));
    let node = org.join("peers/peer0.aggregator");
    let data = dir.join("nodes/peer0.aggregator/data");
    std::fs::create_dir_all(data.join("join")).expect("create the peer's folders");
    std::fs::copy(genesis, data.join(format!("join/{CHANNEL}.block"))).expect("copy the block");
    let s = |p: &Path| p.to_str().expect("UTF-8 path").to_owned();
    let config = format!(
        "name = \"peer0.aggregator\"\nmsp_id = \"{NEW_ORG}\"\nlisten = \"127.0.0.1:{port}\"\n\
         data_dir = \"{}\"\nsigning_cert = \"{}\"\nsigning_key = \"{}\"\ntls_cert = \"{}\"\n\
         tls_key = \"{}\"\n",
        s(&data),
        s(&node.join("msp/signcerts/cert.pem")),
        s(&node.join("msp/keystore/key.pem")),
        s(&node.join("tls/server.crt")),
        s(&node.join("tls/server.key")),
    );
    let config_path = dir.join("nodes/peer0.aggregator/peer.toml");
    std::fs::write(&config_path, config).expect("write peer.toml");
    let log = std::fs::File::create(dir.join("logs/peer0.aggregator.log")).expect("create a log");
    let child = Command::new(env!("CARGO_BIN_EXE_gridledger"))
        .args(["peer", "start", "--config"])
        .arg(&config_path)
        .arg("--exit-on-stdin-close")
        .stdin(Stdio::piped())
        .stdout(log.try_clone().expect("clone a file handle"))
        .stderr(log)
        .spawn()
        .expect("start the new peer");
    let mut peer = Peer(child);
    let deadline = Instant::now() + START_TIMEOUT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = peer.0.try_wait() {
            panic!("the new peer exited during start-up ({status})");
        }
        assert!(
            Instant::now() < deadline,
            "the new peer did not serve on {port}"
        );
        std::thread::sleep(POLL);
    }
    let admin = format!("aggregator/organizations/{NEW_ORG}/users/Admin/msp");
    let description = serde_json::json!({
        "orderers": network["orderers"],
        "organizations": [{
            "mspId": NEW_ORG,
            "peers": [{
                "name": "peer0.aggregator",
                "endpoint": format!("127.0.0.1:{port}"),
                "tlsCaCert": format!("aggregator/organizations/{NEW_ORG}/tlsca/tlsca.pem"),
                "serverName": "peer0.aggregator",
            }],
            "admins": [{
                "cert": format!("{admin}/signcerts/cert.pem"),
                "key": format!("{admin}/keystore/key.pem"),
            }],
        }],
        "channels": [{"name": CHANNEL, "organizations": [NEW_ORG]}],
    });
    let path = dir.join("aggregator-network.json");
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&description).expect("JSON"),
    )
    .expect("write the new organization's network.json");
    (peer, s(&path))
}

/// The `height:` and `current block hash:` lines of `channel info`.
fn tip(network: &str, org: &str) -> (u64, String) {
    let info = ok(&[
        "channel",
        "info",
        "--network",
        network,
        "--channel",
        CHANNEL,
        "--org",
        org,
    ]);
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in:\n{info}"))
    };
    let height = field("height:").parse().expect("a height");
    (height, field("current block hash:"))
}

fn sign(network: &str, org: &str, file: &str) {
    let out = ok(&[
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
    assert!(out.contains(org), "{out}");
}

#[test]
fn an_org_is_added_to_market_by_a_majority_of_admins_and_one_signature_short_is_refused() {
    let (net, description) = UpNetwork::start("channel-admin");
    let network = net.network_json();
    let dir = net.dir.clone();
    let path = |name: &str| dir.join(name).to_str().expect("UTF-8 path").to_owned();

    let info = ok(&[
        "channel",
        "info",
        "--network",
        &network,
        "--channel",
        CHANNEL,
        "--org",
        "DSOMSP",
    ]);
    assert!(info.contains("height:"), "{info}");

    let msp_dir = new_org_material(&dir);
    let update = path("add-aggregator.pb");
    let prepared = ok(&[
        "channel",
        "org",
        "add",
        "--network",
        &network,
        "--channel",
        CHANNEL,
        "--org",
        "DSOMSP",
        "--msp-dir",
        &msp_dir,
        "--msp-id",
        NEW_ORG,
        "--anchor-peer",
        "127.0.0.1:7999",
        "-o",
        &update,
    ]);
    assert!(prepared.contains("/Channel/Application"), "{prepared}");

    // One signature: a third of the admins, short of the majority.
    sign(&network, "DSOMSP", &update);
    let short = path("add-aggregator-short.pb");
    std::fs::copy(&update, &short).expect("copy the update file");
    let check = gridledger(&[
        "channel",
        "update",
        "check",
        "--network",
        &network,
        "--channel",
        CHANNEL,
        "--file",
        &short,
    ]);
    let report = stdout(&check);
    assert!(
        !check.status.success(),
        "one signature passed the check:\n{report}"
    );
    assert!(
        report.contains("/Channel/Application/Admins") && report.contains("NOT satisfied"),
        "the check names the unsatisfied policy:\n{report}"
    );
    assert!(report.contains("DSOMSP (admin)"), "who signed:\n{report}");
    assert!(
        report.contains("RetailerMSP") && report.contains("CommunityMSP"),
        "who is missing:\n{report}"
    );
    let submit = gridledger(&[
        "channel",
        "update",
        "submit",
        "--network",
        &network,
        "--channel",
        CHANNEL,
        "--org",
        "DSOMSP",
        "--file",
        &short,
    ]);
    assert!(!submit.status.success(), "{}", stdout(&submit));
    let refused = stderr(&submit);
    assert!(
        refused.contains("not submitted")
            && refused.contains("/Channel/Application/Admins")
            && refused.contains("RetailerMSP"),
        "submit refuses with the explanation:\n{refused}"
    );

    // A second admin signs the same file: a majority.
    sign(&network, "RetailerMSP", &update);
    let check = ok(&[
        "channel",
        "update",
        "check",
        "--network",
        &network,
        "--channel",
        CHANNEL,
        "--file",
        &update,
    ]);
    assert!(check.contains("would be accepted"), "{check}");
    let submitted = ok(&[
        "channel",
        "update",
        "submit",
        "--network",
        &network,
        "--channel",
        CHANNEL,
        "--org",
        "RetailerMSP",
        "--file",
        &update,
    ]);
    assert!(submitted.contains("config block"), "{submitted}");

    // Every member's peer serves the new config block, and it carries the organization.
    let block = path("market-config.pb");
    for org in ["DSOMSP", "CommunityMSP"] {
        let deadline = std::time::Instant::now() + support::START_TIMEOUT;
        loop {
            ok(&[
                "channel",
                "fetch",
                "--network",
                &network,
                "--channel",
                CHANNEL,
                "--org",
                org,
                "--config",
                "-o",
                &block,
            ]);
            let inspected = ok(&["channel", "inspect", "--block", &block]);
            if inspected.contains(NEW_ORG) {
                assert!(inspected.contains("127.0.0.1:7999"), "{inspected}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{org}'s peer never served a config with {NEW_ORG}:\n{inspected}"
            );
            std::thread::sleep(support::POLL);
        }
    }

    // The same update again is stale: it was computed against the previous config.
    let again = gridledger(&[
        "channel",
        "update",
        "check",
        "--network",
        &network,
        "--channel",
        CHANNEL,
        "--file",
        &update,
    ]);
    assert!(!again.status.success(), "{}", stdout(&again));

    // An orderer change is the orderer admins' (signing by certificate and key, as an admin
    // network.json does not list does).
    let batch = path("batch.pb");
    ok(&[
        "channel",
        "batch",
        "set",
        "--network",
        &network,
        "--channel",
        CHANNEL,
        "--max-message-count",
        "50",
        "-o",
        &batch,
    ]);
    let orderer_admin = dir.join("crypto/organizations/OrdererMSP/users/Admin/msp");
    let file = |p: &str| {
        orderer_admin
            .join(p)
            .to_str()
            .expect("UTF-8 path")
            .to_owned()
    };
    ok(&[
        "channel",
        "update",
        "sign",
        "--msp-id",
        "OrdererMSP",
        "--cert",
        &file("signcerts/cert.pem"),
        "--key",
        &file("keystore/key.pem"),
        "--file",
        &batch,
    ]);
    let submitted = ok(&[
        "channel",
        "update",
        "submit",
        "--network",
        &network,
        "--channel",
        CHANNEL,
        "--org",
        "DSOMSP",
        "--file",
        &batch,
    ]);
    assert!(submitted.contains("config sequence 2"), "{submitted}");
    ok(&[
        "channel",
        "fetch",
        "--network",
        &network,
        "--channel",
        CHANNEL,
        "--org",
        "DSOMSP",
        "--orderer",
        "orderer1",
        "--config",
        "-o",
        &block,
    ]);
    // Read from an orderer's Deliver this time: the newest config has both changes.
    let inspected = ok(&["channel", "inspect", "--block", &block]);
    assert!(
        inspected.contains("max_message_count 50") && inspected.contains(NEW_ORG),
        "{inspected}"
    );

    // The new organization's peer joins with the genesis block and catches up.
    let genesis = dir.join("market-genesis.pb");
    ok(&[
        "channel",
        "fetch",
        "--network",
        &network,
        "--channel",
        CHANNEL,
        "--org",
        "DSOMSP",
        "--block",
        "0",
        "-o",
        genesis.to_str().expect("UTF-8 path"),
    ]);
    let (_peer, own_network) = start_new_peer(&dir, &description, &genesis, free_base_port(1));
    let (height, hash) = tip(&network, "DSOMSP");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let out = gridledger(&[
            "channel",
            "info",
            "--network",
            &own_network,
            "--channel",
            CHANNEL,
            "--org",
            NEW_ORG,
        ]);
        if out.status.success() {
            let (own_height, own_hash) = tip(&own_network, NEW_ORG);
            if own_height >= height {
                if own_height == height {
                    assert_eq!(own_hash, hash, "the new peer's chain differs");
                }
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the new peer did not catch up to height {height}:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        std::thread::sleep(POLL);
    }
}
