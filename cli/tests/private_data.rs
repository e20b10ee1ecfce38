//! Private data collections on a real local network: `gridledger up`, the `privatedata`
//! built-in chaincode deployed with a collections file (DSO and Retailer members, member-only
//! reads and writes), a private write through the Rust SDK with the value in the transient
//! map, endorsed by DSO's peer alone, which pushes the value to Retailer's peer; Retailer's
//! peer then answers it, Community's peer (not a member) holds only the hash (its ledger
//! file never contains the value), a collection whose required_peer_count cannot be met fails
//! endorsement, a purge removes the value while the transaction keeps its hash, and a member
//! peer that was down when a value was written fetches it from another member once back.

mod support;

use gridledger_sdk::Gateway;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{POLL, UpNetwork, ok, user_gateway};

const CHANNEL: &str = "market";
const NAME: &str = "secrets";
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const VALUE: &[u8] = b"tariff-7f3a9c-confidential";

const COLLECTIONS: &str = r#"[
  {
    "name": "dsoRetail",
    "policy": "OR('DSOMSP.member', 'RetailerMSP.member')",
    "requiredPeerCount": 1,
    "maxPeerCount": 2,
    "blockToLive": 0,
    "memberOnlyRead": true,
    "memberOnlyWrite": true
  },
  {
    "name": "catchUp",
    "policy": "OR('DSOMSP.member', 'RetailerMSP.member')",
    "requiredPeerCount": 0,
    "maxPeerCount": 1
  },
  {
    "name": "needsTwo",
    "policy": "OR('DSOMSP.member', 'RetailerMSP.member')",
    "requiredPeerCount": 2,
    "maxPeerCount": 2
  }
]"#;

/// Endorses `args` (with `transient`) on `orgs`' peers through `gateway` and submits; the
/// validation code, or the endorsement error.
async fn submit(
    gateway: &Gateway,
    args: &[&str],
    transient: BTreeMap<String, Vec<u8>>,
    orgs: &[&str],
) -> Result<i32, String> {
    let tx = gateway
        .network(CHANNEL)
        .contract(NAME)
        .proposal_with(
            args.iter().map(|s| s.as_bytes().to_vec()).collect(),
            transient,
            orgs.iter().map(|s| (*s).to_string()).collect(),
        )
        .map_err(|e| e.to_string())?
        .endorse()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = tx
        .submit()
        .await
        .map_err(|e| e.to_string())?
        .status()
        .await
        .map_err(|e| e.to_string())?;
    Ok(status.code)
}

/// Evaluates on the gateway's peer until `done` accepts the outcome (the peer may lag a block).
async fn eventually(
    gateway: &Gateway,
    args: &[&str],
    done: impl Fn(&Result<String, String>) -> bool,
) -> Result<String, String> {
    let deadline = Instant::now() + CALL_TIMEOUT;
    loop {
        let outcome = gateway
            .network(CHANNEL)
            .contract(NAME)
            .evaluate(args[0], &args[1..])
            .await
            .map(|r| String::from_utf8_lossy(&r).into_owned())
            .map_err(|e| format!("{e:?}"));
        if done(&outcome) {
            return outcome;
        }
        assert!(
            Instant::now() < deadline,
            "{args:?} never gave the expected outcome: {outcome:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn ledger_file(dir: &Path, peer: &str) -> Vec<u8> {
    std::fs::read(dir.join(format!("nodes/{peer}/data/channels/{CHANNEL}/ledger.redb")))
        .expect("read a peer's ledger file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_data_reaches_member_peers_only_is_purged_and_is_pulled_after_a_restart() {
    let (mut h, network) = UpNetwork::start("private");
    let dir = h.dir.clone();
    let base = h.base_port;
    let network_path = dir.join("network.json");
    let net = network_path.to_str().expect("a UTF-8 path");
    let collections = dir.join("collections.json");
    std::fs::write(&collections, COLLECTIONS).expect("write the collections file");
    ok(&[
        "chaincode",
        "deploy",
        "--network",
        net,
        "--channel",
        CHANNEL,
        "--name",
        NAME,
        "--builtin",
        "privatedata",
        "--policy",
        "OR('DSOMSP.peer', 'RetailerMSP.peer')",
        "--collections",
        collections.to_str().expect("a UTF-8 path"),
    ]);
    let dso = user_gateway(&dir, &network, "DSOMSP").await;
    let retailer = user_gateway(&dir, &network, "RetailerMSP").await;
    let community = user_gateway(&dir, &network, "CommunityMSP").await;
    let transient = BTreeMap::from([("value".to_string(), VALUE.to_vec())]);

    // DSO's peer alone endorses; it pushes the value to Retailer's peer (required: 1).
    let code = submit(
        &dso,
        &["PutPrivate", "dsoRetail", "tariff"],
        transient.clone(),
        &["DSOMSP"],
    )
    .await
    .expect("the private write is endorsed");
    assert_eq!(code, 0, "the private write commits VALID");
    let value = std::str::from_utf8(VALUE).expect("UTF-8");
    for member in [&dso, &retailer] {
        let read = eventually(member, &["GetPrivate", "dsoRetail", "tariff"], |o| {
            o.as_deref() == Ok(value)
        })
        .await;
        assert_eq!(read.as_deref(), Ok(value));
    }
    // Community: member-only reads refuse its client; its peer knows the hash alone.
    let refused = eventually(&community, &["GetPrivate", "dsoRetail", "tariff"], |o| {
        o.is_err()
    })
    .await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("cannot read")),
        "{refused:?}"
    );
    let expected_hash = hex_sha256(VALUE);
    let hash = eventually(
        &community,
        &["GetPrivateHash", "dsoRetail", "tariff"],
        |o| o.as_deref() == Ok(expected_hash.as_str()),
    )
    .await;
    assert_eq!(hash.as_deref(), Ok(expected_hash.as_str()));
    assert!(contains(&ledger_file(&dir, "peer0.dso"), VALUE));
    assert!(contains(&ledger_file(&dir, "peer0.retailer"), VALUE));
    assert!(
        !contains(&ledger_file(&dir, "peer0.community"), VALUE),
        "a non-member peer's ledger file must not hold the private value"
    );

    // A collection needing two other member peers cannot be served by this network.
    let short = submit(
        &dso,
        &["PutPrivate", "needsTwo", "k"],
        transient.clone(),
        &["DSOMSP"],
    )
    .await;
    assert!(
        short
            .as_ref()
            .is_err_and(|e| e.contains("required_peer_count is 2")),
        "{short:?}"
    );

    // Purge: the value goes from every member peer; the hash stays in the purge's block.
    let code = submit(
        &retailer,
        &["PurgePrivate", "dsoRetail", "tariff"],
        BTreeMap::new(),
        &["RetailerMSP"],
    )
    .await
    .expect("the purge is endorsed");
    assert_eq!(code, 0, "the purge commits VALID");
    for member in [&dso, &retailer] {
        let read = eventually(member, &["GetPrivate", "dsoRetail", "tariff"], |o| {
            o.as_deref() == Ok("")
        })
        .await;
        assert_eq!(read.as_deref(), Ok(""));
    }

    // A member peer that was down fetches what it missed from another member once back:
    // the nodes run again without Retailer's peer, DSO writes to a collection that requires
    // no acknowledgement, then Retailer's peer starts, catches up and pulls the value, which
    // DSO's peer kept when it committed the block.
    drop((dso, retailer, community));
    h.stop_up();
    // `up`'s ports: orderer0, the three peers, orderer1, orderer2.
    for (name, offset) in [
        ("orderer0", 0),
        ("orderer1", 4),
        ("orderer2", 5),
        ("peer0.dso", 1),
        ("peer0.community", 3),
    ] {
        h.start_node(name, base + offset);
    }
    let dso = user_gateway(&dir, &network, "DSOMSP").await;
    let missed = b"meter-reading-missed-while-down";
    let code = submit(
        &dso,
        &["PutPrivate", "catchUp", "reading"],
        BTreeMap::from([("value".to_string(), missed.to_vec())]),
        &["DSOMSP"],
    )
    .await
    .expect("endorsed without Retailer's peer");
    assert_eq!(code, 0);
    h.start_node("peer0.retailer", base + 2);
    let retailer = user_gateway(&dir, &network, "RetailerMSP").await;
    let expected = std::str::from_utf8(missed).expect("UTF-8");
    let read = eventually(&retailer, &["GetPrivate", "catchUp", "reading"], |o| {
        o.as_deref() == Ok(expected)
    })
    .await;
    assert_eq!(read.as_deref(), Ok(expected));
    let log = std::fs::read_to_string(dir.join("logs/peer0.retailer.restarted.log"))
        .expect("read Retailer's peer log");
    assert!(
        log.contains("private data pulled from another member peer"),
        "the value must have come by pull:\n{log}"
    );
}

/// Hex SHA-256 of `bytes`, computed with the `sha256sum` tool so the test does not trust the
/// code it checks.
fn hex_sha256(bytes: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!("gridledger-private-sum-{}", std::process::id()));
    std::fs::write(&path, bytes).expect("write a temporary file");
    let out = Command::new("sha256sum")
        .arg(&path)
        .output()
        .expect("run sha256sum");
    let _ = std::fs::remove_file(&path);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_string()
}
