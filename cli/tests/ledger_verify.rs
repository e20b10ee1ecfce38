//! `gridledger ledger verify --dir` and `gridledger ledger compare` on the stored ledgers of a
//! real network made by `gridledger up`: a stopped network verifies on every node and channel,
//! a running one is refused as in use, copies damaged through the ledger crate's `testing`
//! functions fail naming the node, channel, block or key, two peers compare identical, a
//! damaged or truncated copy compares as diverged or lagging, and input that is not a ledger
//! is refused with a message instead of a panic.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use gridledger_ledger::LedgerReader;
use gridledger_proto::common;
use gridledger_proto::prost::Message;
use gridledger_sdk::Gateway;
use serde_json::Value;
use support::{POLL, UpNetwork, gateway_as, gridledger, stderr, stdout, user_gateway};

const CHANNEL: &str = "market";

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", stdout(out), stderr(out)))
}

/// Exit code 1: a reported failure, not a panic (101) or a signal.
fn assert_failed_cleanly(out: &Output, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: expected exit code 1\n{}\n{}",
        stdout(out),
        stderr(out)
    );
    assert!(
        !stderr(out).contains("panicked"),
        "{what} panicked: {}",
        stderr(out)
    );
}

/// Copies a folder tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("list the folder") {
        let entry = entry.expect("a folder entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

/// A copy of node `name`'s data directory under `<network>/copies/<copy>/data`.
fn copy_node(network: &Path, name: &str, copy: &str) -> PathBuf {
    let data = network.join("copies").join(copy).join("data");
    copy_tree(&network.join("nodes").join(name).join("data"), &data);
    data
}

/// Waits until `gateway`'s peer has committed asset `id`.
async fn wait_for_asset(gateway: &Gateway, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let read = gateway
            .network(CHANNEL)
            .contract("basic")
            .evaluate("ReadAsset", &[id])
            .await;
        if read.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "asset {id} never committed");
        tokio::time::sleep(POLL).await;
    }
}

/// A meter reading on `meter-retailer`: private data (the `readings` collection defined in
/// `_lifecycle`) whose values the DSO's and the retailer's peers keep, with its hash in the
/// block. Returns the interval's start once both peers committed it.
async fn record_reading(dir: &Path, network: &Value) -> u64 {
    let meter = gateway_as(dir, network, "DSOMSP", "Meter-R001").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let interval = (now / 900 - 2) * 900;
    let start = interval.to_string();
    let transient = [("salt".to_string(), b"sixteen-byte-salt-1".to_vec())].into();
    let proposal = meter
        .network("meter-retailer")
        .contract("meter")
        .proposal_with(
            ["RecordReading", start.as_str(), "1200", "0"]
                .iter()
                .map(|a| a.as_bytes().to_vec())
                .collect(),
            transient,
            Vec::new(),
        )
        .expect("proposal");
    let status = proposal
        .endorse()
        .await
        .unwrap_or_else(|e| panic!("endorse the reading: {e}"))
        .submit()
        .await
        .expect("submit the reading")
        .status()
        .await
        .expect("status");
    assert!(status.is_valid(), "the reading committed as {status:?}");
    let retailer = user_gateway(dir, network, "RetailerMSP").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while retailer
        .network("meter-retailer")
        .contract("meter")
        .evaluate("GetRecord", &["M-R001", &start])
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the retailer's peer never committed the reading"
        );
        tokio::time::sleep(POLL).await;
    }
    interval
}

/// A private value of a collection with `blockToLive = 1` on `market`: its hash row expires
/// two blocks later, which the recomputed state must follow.
async fn write_short_lived_private_value(dir: &Path, network: &Value) {
    let collections = dir.join("short-lived.json");
    std::fs::write(
        &collections,
        r#"[{"name": "shortLived", "policy": "OR('DSOMSP.member', 'RetailerMSP.member')",
            "requiredPeerCount": 0, "maxPeerCount": 1, "blockToLive": 1,
            "memberOnlyRead": true, "memberOnlyWrite": true}]"#,
    )
    .expect("write the collections file");
    let out = gridledger(&[
        "chaincode",
        "deploy",
        "--network",
        path_str(&dir.join("network.json")),
        "--channel",
        CHANNEL,
        "--name",
        "secrets",
        "--builtin",
        "privatedata",
        "--policy",
        "OR('DSOMSP.peer', 'RetailerMSP.peer')",
        "--collections",
        path_str(&collections),
    ]);
    assert!(
        out.status.success(),
        "deploy: {}{}",
        stdout(&out),
        stderr(&out)
    );
    let dso = user_gateway(dir, network, "DSOMSP").await;
    let status = dso
        .network(CHANNEL)
        .contract("secrets")
        .proposal_with(
            vec![
                b"PutPrivate".to_vec(),
                b"shortLived".to_vec(),
                b"tariff".to_vec(),
            ],
            [("value".to_string(), b"expires-soon".to_vec())].into(),
            vec!["DSOMSP".to_string()],
        )
        .expect("proposal")
        .endorse()
        .await
        .unwrap_or_else(|e| panic!("endorse the private write: {e}"))
        .submit()
        .await
        .expect("submit")
        .status()
        .await
        .expect("status");
    assert!(
        status.is_valid(),
        "the private write committed as {status:?}"
    );
}

/// Some valid transactions (creates, an update, a delete) and one MVCC_READ_CONFLICT, then
/// every peer has the last block. Returns the meter reading's interval.
async fn submit_transactions(dir: &Path, network: &Value) -> u64 {
    let interval = record_reading(dir, network).await;
    write_short_lived_private_value(dir, network).await;
    let retailer = user_gateway(dir, network, "RetailerMSP").await;
    let dso = user_gateway(dir, network, "DSOMSP").await;
    let community = user_gateway(dir, network, "CommunityMSP").await;
    let basic = retailer.network(CHANNEL).contract("basic");
    for (id, owner) in [
        ("asset-v1", "Alice"),
        ("asset-v2", "Bob"),
        ("asset-v3", "Carol"),
    ] {
        basic
            .submit("CreateAsset", &[id, "blue", "5", owner, "300"])
            .await
            .unwrap_or_else(|e| panic!("create {id}: {e}"));
    }
    basic
        .submit("UpdateAsset", &["asset-v1", "red", "6", "Dave", "400"])
        .await
        .unwrap_or_else(|e| panic!("update: {e}"));
    basic
        .submit("DeleteAsset", &["asset-v2"])
        .await
        .unwrap_or_else(|e| panic!("delete: {e}"));
    // Two updates endorsed on the same version: one commits VALID, the other is recorded as
    // an MVCC_READ_CONFLICT that verification must reproduce.
    let first = basic
        .proposal("UpdateAsset", &["asset-v3", "red", "6", "Eve", "400"])
        .expect("proposal");
    let second = basic
        .proposal("UpdateAsset", &["asset-v3", "green", "7", "Frank", "500"])
        .expect("proposal");
    let (first, second) = tokio::join!(first.endorse(), second.endorse());
    let first = first.expect("endorse").submit().await.expect("submit");
    let second = second.expect("endorse").submit().await.expect("submit");
    first.status().await.expect("status");
    second.status().await.expect("status");
    basic
        .submit("CreateAsset", &["asset-last", "blue", "5", "Zoe", "300"])
        .await
        .unwrap_or_else(|e| panic!("create the last asset: {e}"));
    for gateway in [&dso, &retailer, &community] {
        wait_for_asset(gateway, "asset-last").await;
    }
    interval
}

fn verify_dir(dir: &Path) -> Output {
    gridledger(&["ledger", "verify", "--dir", path_str(dir), "--json"])
}

/// The verify report's ledgers as (node, channel, ok).
fn ledgers(report: &Value) -> Vec<(String, String, bool)> {
    report["ledgers"]
        .as_array()
        .expect("ledgers")
        .iter()
        .map(|l| {
            (
                l["node"].as_str().expect("node").to_string(),
                l["channel"].as_str().expect("channel").to_string(),
                l["ok"].as_bool().expect("ok"),
            )
        })
        .collect()
}

fn problems_of<'a>(report: &'a Value, channel: &str) -> &'a Vec<Value> {
    report["ledgers"]
        .as_array()
        .expect("ledgers")
        .iter()
        .find(|l| l["channel"] == channel)
        .and_then(|l| l["problems"].as_array())
        .unwrap_or_else(|| panic!("no ledger of {channel} in {report}"))
}

fn channel_of<'a>(report: &'a Value, channel: &str) -> &'a Value {
    report["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .find(|c| c["channel"] == channel)
        .unwrap_or_else(|| panic!("no {channel} in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_ledgers_verify_and_compare_and_damage_is_named() {
    let (mut net, network) = UpNetwork::start("ledger-verify");
    let dir = net.dir.clone();
    let interval = submit_transactions(&dir, &network).await;

    // Running nodes hold their files: refused, with what to do.
    let out = verify_dir(&dir);
    assert_failed_cleanly(&out, "verify of a running network");
    assert!(
        stdout(&out).contains("is in use: stop the node first"),
        "{}",
        stdout(&out)
    );

    net.stop_up();

    // The whole network: every node, every channel it holds.
    let out = verify_dir(&dir);
    let report = json_of(&out);
    assert!(out.status.success(), "verify --dir failed:\n{report:#}");
    let found = ledgers(&report);
    for node in [
        "orderer0",
        "orderer1",
        "orderer2",
        "peer0.dso",
        "peer0.retailer",
        "peer0.community",
    ] {
        assert!(
            found
                .iter()
                .any(|(n, c, ok)| n == node && c == CHANNEL && *ok),
            "{node} not verified on {CHANNEL}: {found:?}"
        );
    }
    // The DSO's and the retailer's peers keep the reading's private value, checked against
    // its hash.
    for node in ["peer0.dso", "peer0.retailer"] {
        let meter = report["ledgers"]
            .as_array()
            .expect("ledgers")
            .iter()
            .find(|l| l["node"] == node && l["channel"] == "meter-retailer")
            .unwrap_or_else(|| panic!("{node} holds meter-retailer"));
        assert_eq!(meter["ok"], true, "{meter:#}");
        assert!(
            meter["state"]["private_values"].as_u64().unwrap_or(0) > 0,
            "{meter:#}"
        );
    }
    let market = report["ledgers"]
        .as_array()
        .expect("ledgers")
        .iter()
        .find(|l| l["node"] == "peer0.retailer" && l["channel"] == CHANNEL)
        .expect("the retailer's market ledger");
    assert!(
        market["state"]["keys"].as_u64().unwrap_or(0) > 0,
        "{market:#}"
    );
    assert!(
        market["chain"]["validation_codes"]["transactions"]["checked"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{market:#}"
    );
    // The text form: one line per node × channel and a summary.
    let out = gridledger(&["ledger", "verify", "--dir", path_str(&dir)]);
    assert!(out.status.success(), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("peer0.community") && l.contains(CHANNEL) && l.contains("OK")),
        "{text}"
    );
    assert!(text.contains("0 FAILED"), "{text}");

    // One node's data directory.
    let dso_data = dir.join("nodes/peer0.dso/data");
    let out = verify_dir(&dso_data);
    let report = json_of(&out);
    assert!(
        out.status.success(),
        "verify of one node failed:\n{report:#}"
    );
    assert!(
        ledgers(&report)
            .iter()
            .all(|(n, _, ok)| n == "peer0.dso" && *ok)
    );

    // Two peers hold identical ledgers.
    let retailer_data = dir.join("nodes/peer0.retailer/data");
    let out = gridledger(&[
        "ledger",
        "compare",
        path_str(&dso_data),
        path_str(&retailer_data),
        "--json",
    ]);
    let report = json_of(&out);
    assert!(out.status.success(), "compare failed:\n{report:#}");
    assert_eq!(channel_of(&report, CHANNEL)["relation"], "identical");
    assert_eq!(
        channel_of(&report, "meter-retailer")["relation"],
        "identical"
    );
    assert_eq!(
        channel_of(&report, "meter-community")["relation"],
        "not_shared"
    );
    let out = gridledger(&[
        "ledger",
        "compare",
        "--dir",
        path_str(&dir),
        "--nodes",
        "peer0.dso,peer0.community",
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("IDENTICAL"), "{}", stdout(&out));

    // A forged state value: verify names the node, channel and key; compare names the key.
    let forged = copy_node(&dir, "peer0.retailer", "forged-state");
    gridledger_ledger::tamper_state_value(
        &forged.join("channels").join(CHANNEL),
        "basic",
        "asset-v1",
        b"{\"forged\":true}",
    )
    .expect("tamper the state");
    let out = verify_dir(&forged);
    assert_failed_cleanly(&out, "verify of a forged state");
    let report = json_of(&out);
    assert_eq!(
        ledgers(&report),
        vec![
            ("forged-state".to_string(), "market".to_string(), false),
            (
                "forged-state".to_string(),
                "meter-retailer".to_string(),
                true
            ),
        ]
    );
    let problems = problems_of(&report, CHANNEL);
    assert!(
        problems
            .iter()
            .any(|p| p["check"] == "state" && p["key"] == "basic/asset-v1"),
        "{problems:#?}"
    );
    let text = stdout(&gridledger(&[
        "ledger",
        "verify",
        "--dir",
        path_str(&forged),
    ]));
    assert!(
        text.lines().any(|l| l.starts_with("forged-state")
            && l.contains(CHANNEL)
            && l.contains("FAILED")
            && l.contains("asset-v1")),
        "{text}"
    );
    let out = gridledger(&[
        "ledger",
        "compare",
        path_str(&dso_data),
        path_str(&forged),
        "--json",
    ]);
    assert_failed_cleanly(&out, "compare with a forged state");
    let report = json_of(&out);
    let market = channel_of(&report, CHANNEL);
    assert_eq!(market["relation"], "diverged");
    assert!(
        market["details"].to_string().contains("asset-v1"),
        "{market:#}"
    );

    // A private value that no longer matches the hash in the blocks.
    let forged = copy_node(&dir, "peer0.retailer", "forged-private");
    let key = format!("reading/M-R001/{interval:012}");
    gridledger_ledger::tamper_state_value(
        &forged.join("channels").join("meter-retailer"),
        "meter$$preadings",
        &key,
        b"{\"import_wh\":1}",
    )
    .expect("tamper the private value");
    let out = verify_dir(&forged);
    assert_failed_cleanly(&out, "verify of a forged private value");
    let report = json_of(&out);
    let problems = problems_of(&report, "meter-retailer");
    assert!(
        problems.iter().any(|p| p["check"] == "private_data"
            && p["key"] == format!("meter$$preadings/{key}").as_str()),
        "{problems:#?}"
    );

    // One changed byte in a stored block: verify and compare name the block.
    let damaged = copy_node(&dir, "peer0.retailer", "damaged-block");
    let channel_dir = damaged.join("channels").join(CHANNEL);
    let (number, mut block) = {
        let reader = LedgerReader::open(&channel_dir).expect("open the copy");
        let number = reader.height() - 1;
        let stored = reader
            .stored_block(number)
            .expect("read")
            .expect("the last block");
        (
            number,
            common::Block::decode(stored.bytes.as_slice()).expect("decode"),
        )
    };
    let data = block.data.as_mut().expect("data");
    let envelope = data.data.last_mut().expect("an envelope");
    let middle = envelope.len() / 2;
    envelope[middle] ^= 0x01;
    gridledger_ledger::tamper_block_bytes(&channel_dir, number, &block.encode_to_vec())
        .expect("tamper the block");
    let out = verify_dir(&damaged);
    assert_failed_cleanly(&out, "verify of a damaged block");
    let report = json_of(&out);
    let problems = problems_of(&report, CHANNEL);
    assert!(
        problems
            .iter()
            .any(|p| p["check"] == "data_hash" && p["block"] == number),
        "{problems:#?}"
    );
    let out = gridledger(&[
        "ledger",
        "compare",
        path_str(&dso_data),
        path_str(&damaged),
        "--json",
    ]);
    assert_failed_cleanly(&out, "compare with a damaged block");
    let market = channel_of(&json_of(&out), CHANNEL).clone();
    assert_eq!(market["relation"], "diverged");
    assert!(
        market["details"]
            .to_string()
            .contains(&format!("block {number}: data differs")),
        "{market:#}"
    );

    // A copy two blocks behind is lagging, not diverging.
    let behind = copy_node(&dir, "peer0.retailer", "behind");
    let channel_dir = behind.join("channels").join(CHANNEL);
    let height = LedgerReader::open(&channel_dir).expect("open").height();
    gridledger_ledger::truncate_blocks(&channel_dir, height - 2).expect("truncate");
    let out = gridledger(&[
        "ledger",
        "compare",
        path_str(&dso_data),
        path_str(&behind),
        "--json",
    ]);
    let report = json_of(&out);
    assert!(
        out.status.success(),
        "a lagging peer is no divergence:\n{report:#}"
    );
    let market = channel_of(&report, CHANNEL);
    assert_eq!(market["relation"], "lagging");
    assert_eq!(market["height_b"], height - 2);
    assert!(
        market["details"]
            .to_string()
            .contains("behind lags peer0.dso"),
        "{market:#}"
    );

    // A ledger file that is not a database: a clear failure for that ledger.
    let corrupt = copy_node(&dir, "peer0.retailer", "corrupt");
    std::fs::write(
        corrupt.join("channels").join(CHANNEL).join("ledger.redb"),
        b"not a redb file at all",
    )
    .expect("overwrite the file");
    let out = verify_dir(&corrupt);
    assert_failed_cleanly(&out, "verify of a corrupt file");
    let problems = problems_of(&json_of(&out), CHANNEL).clone();
    assert!(
        problems
            .iter()
            .any(|p| p["check"] == "open"
                && p["message"].as_str().unwrap_or("").contains("ledger.redb")),
        "{problems:#?}"
    );
}

#[test]
fn verify_and_compare_refuse_what_is_not_a_ledger() {
    let missing = std::env::temp_dir().join(format!("gridledger-no-such-{}", std::process::id()));
    let out = gridledger(&["ledger", "verify", "--dir", path_str(&missing)]);
    assert_failed_cleanly(&out, "verify of a missing folder");
    assert!(stderr(&out).contains("No such file"), "{}", stderr(&out));

    let empty =
        std::env::temp_dir().join(format!("gridledger-not-a-ledger-{}", std::process::id()));
    std::fs::create_dir_all(empty.join("some-folder")).expect("mkdir");
    let out = gridledger(&["ledger", "verify", "--dir", path_str(&empty)]);
    assert_failed_cleanly(&out, "verify of a folder that is not a ledger");
    assert!(
        stderr(&out).contains("is not a ledger directory"),
        "{}",
        stderr(&out)
    );

    let out = gridledger(&["ledger", "compare", path_str(&empty), path_str(&missing)]);
    assert_failed_cleanly(&out, "compare of folders that are not ledgers");
    assert!(
        stderr(&out).contains("is not a ledger directory"),
        "{}",
        stderr(&out)
    );

    // A node folder whose channel holds garbage in place of its ledger file.
    let channel = empty.join("data/channels/market");
    std::fs::create_dir_all(&channel).expect("mkdir");
    std::fs::write(channel.join("ledger.redb"), [0u8; 4096]).expect("write");
    let out = gridledger(&["ledger", "verify", "--dir", path_str(&empty)]);
    assert_failed_cleanly(&out, "verify of a corrupt ledger file");
    assert!(
        stdout(&out).contains("FAILED") && stdout(&out).contains("ledger.redb"),
        "{}",
        stdout(&out)
    );
    let _ = std::fs::remove_dir_all(&empty);
}
