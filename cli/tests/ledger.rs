//! `gridledger ledger inspect` and `gridledger ledger verify`, run as the real binary on the
//! real Fabric 2.5.5 chain in `tests/fixtures/fabric-2.5.5-chain` (81 blocks no one here
//! wrote) and on tampered copies of it.
//!
//! The untampered chain must decode as its manifest records and verify completely: every hash
//! and link, 451 creator, 451 endorser and 80 orderer signatures, and every validation code
//! reproduced by re-running validation in block order. Each tampering test changes one thing
//! in a copy and checks that `verify` names the block, the transaction and what broke, and
//! exits non-zero.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gridledger_proto::common;
use gridledger_proto::prost::Message;
use gridledger_proto::{kvrwset, protos, rwset};
use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/fabric-2.5.5-chain")
}

fn msp_dir() -> PathBuf {
    fixture().join("msp")
}

fn gridledger(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridledger"))
        .args(args)
        .output()
        .expect("run gridledger")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Parses the JSON a command printed, failing with its output when it is not JSON.
fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

fn manifest() -> Value {
    let bytes = std::fs::read(fixture().join("manifest.json")).expect("manifest");
    serde_json::from_slice(&bytes).expect("manifest JSON")
}

fn inspect_json(args: &[&str]) -> Value {
    let blocks = fixture();
    let mut all = vec!["ledger", "inspect", "--blocks", path_str(&blocks), "--json"];
    all.extend_from_slice(args);
    let out = gridledger(&all);
    assert!(
        out.status.success(),
        "inspect failed: {}",
        text(&out.stderr)
    );
    json_of(&out)
}

fn verify_json(blocks: &Path) -> (Output, Value) {
    let msp = msp_dir();
    let out = gridledger(&[
        "ledger",
        "verify",
        "--blocks",
        path_str(blocks),
        "--msp-dir",
        path_str(&msp),
        "--json",
    ]);
    let json = json_of(&out);
    (out, json)
}

// ---------------------------------------------------------------------------------------------
// Tampered copies.

/// A fresh copy of the fixture's block files in a temp folder of its own.
struct ChainCopy {
    dir: PathBuf,
}

impl ChainCopy {
    fn new(name: &str) -> ChainCopy {
        let dir =
            std::env::temp_dir().join(format!("gridledger-ledger-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        for entry in std::fs::read_dir(fixture()).expect("fixture") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "pb") {
                let file = path.file_name().expect("file name");
                std::fs::copy(&path, dir.join(file)).expect("copy block");
            }
        }
        ChainCopy { dir }
    }

    fn file(&self, number: u64) -> PathBuf {
        self.dir.join(format!("block{number:03}.pb"))
    }

    fn read(&self, number: u64) -> common::Block {
        let bytes = std::fs::read(self.file(number)).expect("read block");
        common::Block::decode(bytes.as_slice()).expect("decode block")
    }

    fn write(&self, number: u64, block: &common::Block) {
        std::fs::write(self.file(number), block.encode_to_vec()).expect("write block");
    }

    /// Rewrites envelope `tx` of block `number` with `change` applied to its bytes.
    fn change_envelope(&self, number: u64, tx: usize, change: impl FnOnce(&mut Vec<u8>)) {
        let mut block = self.read(number);
        let data = block.data.as_mut().expect("block data");
        change(&mut data.data[tx]);
        self.write(number, &block);
    }
}

impl Drop for ChainCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The problems of a verify report, as (block, tx, check, message).
fn problems(report: &Value) -> Vec<(u64, Option<u64>, String, String)> {
    report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| {
            (
                p["block"].as_u64().expect("block"),
                p["tx"].as_u64(),
                p["check"].as_str().expect("check").to_string(),
                p["message"].as_str().expect("message").to_string(),
            )
        })
        .collect()
}

/// Asserts that the orderer signatures of every block still check: what was changed lies
/// under the data hash, which the orderer does not sign directly.
#[track_caller]
fn orderer_signatures_intact(report: &Value, problems: &[(u64, Option<u64>, String, String)]) {
    assert_eq!(report["signatures"]["orderer"]["valid"], 80);
    assert!(
        !problems.iter().any(|(_, _, check, _)| check.contains("orderer")
            || check == "block_validation_policy"),
        "{problems:#?}"
    );
}

/// Asserts that verification failed (exit code and report) and returns the problems.
#[track_caller]
fn failed(out: &Output, report: &Value) -> Vec<(u64, Option<u64>, String, String)> {
    assert!(
        !out.status.success(),
        "verify must fail on a tampered chain: {}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("ledger verification failed"),
        "stderr: {}",
        text(&out.stderr)
    );
    assert!(!text(&out.stderr).contains("panicked"));
    assert_eq!(report["ok"], false);
    problems(report)
}

#[track_caller]
fn has_problem(
    problems: &[(u64, Option<u64>, String, String)],
    block: u64,
    tx: Option<u64>,
    check: &str,
    message_part: &str,
) {
    assert!(
        problems
            .iter()
            .any(|(b, t, c, m)| *b == block && *t == tx && c == check && m.contains(message_part)),
        "expected a {check} problem at block {block} tx {tx:?} mentioning {message_part:?}; got:\n{problems:#?}"
    );
}

fn tx_id_of(envelope: &[u8]) -> String {
    let env = common::Envelope::decode(envelope).expect("envelope");
    let payload = common::Payload::decode(env.payload.as_slice()).expect("payload");
    let header = payload.header.expect("header");
    common::ChannelHeader::decode(header.channel_header.as_slice())
        .expect("channel header")
        .tx_id
}

/// Where, in the bytes of an endorser transaction envelope, the value of the first write of its
/// read-write set lies (the same value may also appear in the chaincode's response).
fn first_write_value_offset(envelope: &[u8]) -> usize {
    let env = common::Envelope::decode(envelope).expect("envelope");
    let payload = common::Payload::decode(env.payload.as_slice()).expect("payload");
    let tx = protos::Transaction::decode(payload.data.as_slice()).expect("transaction");
    let cap = protos::ChaincodeActionPayload::decode(tx.actions[0].payload.as_slice())
        .expect("action payload");
    let prp = protos::ProposalResponsePayload::decode(
        cap.action
            .expect("endorsed action")
            .proposal_response_payload
            .as_slice(),
    )
    .expect("proposal response payload");
    let action = protos::ChaincodeAction::decode(prp.extension.as_slice()).expect("action");
    let set = rwset::TxReadWriteSet::decode(action.results.as_slice()).expect("rwset");
    let value = set
        .ns_rwset
        .iter()
        .map(|ns| kvrwset::KvrwSet::decode(ns.rwset.as_slice()).expect("kv rwset"))
        .find_map(|kv| kv.writes.into_iter().next())
        .expect("a write")
        .value;
    let [results_at] = find(envelope, &action.results)[..] else {
        panic!("the read-write set appears once in the envelope");
    };
    let [value_at] = find(&action.results, &value)[..] else {
        panic!("the value appears once in the read-write set");
    };
    results_at + value_at + value.len() / 2
}

fn find(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// inspect

#[test]
fn inspect_decodes_every_block_as_the_manifest_records() {
    let report = inspect_json(&[]);
    let manifest = manifest();
    let blocks = report["blocks"].as_array().expect("blocks");
    let expected = manifest["blocks"].as_array().expect("manifest blocks");
    assert_eq!(blocks.len(), 81);
    assert_eq!(expected.len(), 81);
    for (got, want) in blocks.iter().zip(expected) {
        let n = want["number"].as_u64().expect("number");
        assert_eq!(got["number"], want["number"]);
        for field in [
            "header_hash",
            "previous_hash",
            "data_hash",
            "validation_codes",
        ] {
            assert_eq!(got[field], want[field], "block {n} {field}");
        }
        assert_eq!(got["data_hash_matches"], true, "block {n}");
        let txs = got["transactions"].as_array().expect("transactions");
        let want_txs = want["transactions"].as_array().expect("manifest txs");
        assert_eq!(txs.len(), want_txs.len(), "block {n}");
        assert_eq!(got["tx_count"].as_u64(), Some(want_txs.len() as u64));
        for (tx, want_tx) in txs.iter().zip(want_txs) {
            assert_eq!(tx["tx_id"], want_tx["tx_id"], "block {n}");
            let header_type = match want_tx["type"].as_u64() {
                Some(1) => "CONFIG",
                Some(3) => "ENDORSER_TRANSACTION",
                other => panic!("unexpected header type {other:?}"),
            };
            assert_eq!(tx["header_type"], header_type, "block {n}");
            match want_tx["creator_msp"].as_str() {
                Some(msp) => assert_eq!(tx["creator"]["msp_id"], msp, "block {n}"),
                None => assert!(tx["creator"].is_null(), "block {n}: genesis is unsigned"),
            }
            if let Some(chaincode) = want_tx["chaincode"].as_str() {
                assert_eq!(tx["chaincode"]["name"], chaincode, "block {n}");
            }
            let endorsers: Vec<&Value> = tx["endorsers"]
                .as_array()
                .expect("endorsers")
                .iter()
                .map(|e| &e["msp_id"])
                .collect();
            let want_endorsers: Vec<&Value> = want_tx["endorsements"]
                .as_array()
                .map(|a| a.iter().map(|e| &e["msp"]).collect())
                .unwrap_or_default();
            assert_eq!(endorsers, want_endorsers, "block {n}");
        }
    }
    // The conflicting blocks, with their per-transaction codes by name.
    for n in [37, 56, 63] {
        assert_eq!(
            blocks[n]["validation_codes"],
            serde_json::json!([0, 11, 11, 11, 11, 11])
        );
        let names: Vec<&Value> = blocks[n]["transactions"]
            .as_array()
            .expect("transactions")
            .iter()
            .map(|t| &t["validation_code"]["name"])
            .collect();
        assert_eq!(names[0], "VALID");
        assert!(names[1..].iter().all(|name| *name == "MVCC_READ_CONFLICT"));
    }
    assert_eq!(blocks[79]["validation_codes"], serde_json::json!([0, 11]));
    // Read and write keys of an update: basic/<key> read at a version, then written.
    let tx = &blocks[79]["transactions"][0];
    assert_eq!(tx["function"], "UpdateAsset");
    let read = tx["reads"]
        .as_array()
        .expect("reads")
        .iter()
        .find(|r| r["namespace"] == "basic")
        .expect("a basic read");
    assert_eq!(read["version"], "78:0");
    let write = &tx["writes"][0];
    assert_eq!(write["namespace"], "basic");
    assert_eq!(write["key"], read["key"]);
    assert_eq!(write["is_delete"], false);
}

#[test]
fn inspect_decodes_the_genesis_configuration() {
    let report = inspect_json(&["--to", "0"]);
    let blocks = report["blocks"].as_array().expect("blocks");
    assert_eq!(blocks.len(), 1);
    let config = &blocks[0]["config"];
    assert_eq!(config["channel_id"], "mychannel");
    assert_eq!(config["sequence"], 0);
    assert!(config.get("not_usable_by_gridledger").is_none());
    let orderer = &config["orderer"];
    assert_eq!(orderer["consensus_type"], "etcdraft");
    assert_eq!(orderer["batch_timeout"], "2s");
    assert!(orderer["batch_size"]["max_message_count"].as_u64() > Some(0));
    assert!(
        !orderer["consenters"]
            .as_array()
            .expect("consenters")
            .is_empty()
    );
    let orderer_org = &orderer["organizations"][0];
    assert_eq!(orderer_org["msp_id"], "OrdererMSP");
    let org1 = &config["application"]["organizations"][0];
    assert_eq!(org1["msp_id"], "Org1MSP");
    assert!(
        org1["root_certs"][0]
            .as_str()
            .expect("root subject")
            .contains("CN=ca.org1.example.com")
    );
    assert_eq!(org1["node_ous"]["enable"], true);
    assert_eq!(
        org1["node_ous"]["peer"]["organizational_unit_identifier"],
        "peer"
    );
    assert!(
        !config["capabilities"]
            .as_array()
            .expect("capabilities")
            .is_empty()
    );
    let policies = config["policies"].as_array().expect("policies");
    let rule = |path: &str| {
        policies
            .iter()
            .find(|p| p["path"] == path)
            .map(|p| p["rule"].as_str().expect("rule").to_string())
            .unwrap_or_else(|| panic!("no policy {path}"))
    };
    assert_eq!(rule("/Channel/Orderer/BlockValidation"), "ANY Writers");
    assert_eq!(
        rule("/Channel/Application/Org1MSP/Endorsement"),
        "OR('Org1MSP.peer')"
    );
    assert_eq!(
        rule("/Channel/Application/Endorsement"),
        "MAJORITY Endorsement"
    );

    // The same in text.
    let out = gridledger(&[
        "ledger",
        "inspect",
        "--blocks",
        path_str(&fixture().join("block000.pb")),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    for needle in [
        "channel config mychannel (sequence 0)",
        "etcdraft",
        "BatchTimeout 2s",
        "org OrdererOrg (MSP OrdererMSP)",
        "org Org1MSP (MSP Org1MSP)",
        "NodeOUs        enabled",
        "/Channel/Application/Org1MSP/Endorsement",
    ] {
        assert!(shown.contains(needle), "text lacks {needle:?}:\n{shown}");
    }
}

#[test]
fn inspect_refuses_what_is_not_a_block_and_an_empty_range() {
    let out = gridledger(&[
        "ledger",
        "inspect",
        "--blocks",
        path_str(&fixture().join("manifest.json")),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not a protobuf common.Block"),
        "{}",
        text(&out.stderr)
    );
    let out = gridledger(&[
        "ledger",
        "inspect",
        "--blocks",
        path_str(&fixture()),
        "--from",
        "100",
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no block numbered 100"));
}

// ---------------------------------------------------------------------------------------------
// verify

#[test]
fn verify_checks_every_hash_signature_and_code_of_the_fabric_chain() {
    let (out, report) = verify_json(&fixture());
    assert!(
        out.status.success(),
        "verify failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(report["ok"], true);
    assert_eq!(report["problems"], serde_json::json!([]));
    assert_eq!(report["channel"], "mychannel");
    assert_eq!(report["blocks"], 81);
    assert_eq!(report["last_block"], 80);
    let count = |path: &str| {
        let v = report.pointer(path).unwrap_or_else(|| panic!("no {path}"));
        (v["checked"].as_u64(), v["valid"].as_u64())
    };
    assert_eq!(count("/signatures/creator"), (Some(451), Some(451)));
    assert_eq!(count("/signatures/endorser"), (Some(451), Some(451)));
    assert_eq!(count("/signatures/orderer"), (Some(80), Some(80)));
    assert_eq!(count("/tx_id_bindings"), (Some(451), Some(451)));
    assert_eq!(count("/hash_chain/data_hashes"), (Some(81), Some(81)));
    assert_eq!(
        count("/hash_chain/previous_hash_links"),
        (Some(80), Some(80))
    );
    assert_eq!(
        count("/validation_codes/transactions"),
        (Some(452), Some(452))
    );
    assert_eq!(count("/validation_codes/blocks"), (Some(81), Some(81)));
    assert_eq!(report["endorser_roles"]["Org1MSP.peer"], 451);

    // Each MSP of the genesis config is matched to the CA file that holds its root.
    let msps = report["trust"]["msps"].as_array().expect("msps");
    let trusted_by = |msp: &str| {
        msps.iter()
            .find(|m| m["msp_id"] == msp)
            .map(|m| m["roots"][0]["trusted_by"].clone())
            .unwrap_or_else(|| panic!("no MSP {msp}"))
    };
    assert_eq!(trusted_by("Org1MSP"), "org1-ca.pem");
    assert_eq!(trusted_by("OrdererMSP"), "orderer-ca.pem");
    // Endorsement policies come from the chain's own _lifecycle definitions.
    let chaincodes = report["chaincodes"].as_array().expect("chaincodes");
    for name in ["asset", "basic", "hcc"] {
        let cc = chaincodes
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no chaincode {name}"));
        assert_eq!(cc["endorsement"], "/Channel/Application/Endorsement");
        assert!(
            cc["source"]
                .as_str()
                .expect("source")
                .starts_with("_lifecycle")
        );
    }

    // The text summary says the same.
    let msp = msp_dir();
    let out = gridledger(&[
        "ledger",
        "verify",
        "--blocks",
        path_str(&fixture()),
        "--msp-dir",
        path_str(&msp),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    for needle in [
        "creator 451/451 valid, endorser 451/451 valid, orderer 80/80 valid",
        "452/452 transactions reproduced (81/81 blocks)",
        "org1-tlsca.pem: TLS CA of Org1MSP",
        "OK:",
    ] {
        assert!(shown.contains(needle), "text lacks {needle:?}:\n{shown}");
    }
}

#[test]
fn verify_refuses_a_config_whose_cas_are_not_trusted_unless_told_to_trust_it() {
    let only_org1 =
        std::env::temp_dir().join(format!("gridledger-ledger-msp-org1-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&only_org1);
    std::fs::create_dir_all(&only_org1).expect("temp dir");
    std::fs::copy(msp_dir().join("org1-ca.pem"), only_org1.join("org1-ca.pem")).expect("copy");
    let blocks = fixture();
    let out = gridledger(&[
        "ledger",
        "verify",
        "--blocks",
        path_str(&blocks),
        "--msp-dir",
        path_str(&only_org1),
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("OrdererMSP root CA") && err.contains("--trust-config"),
        "{err}"
    );

    let out = gridledger(&[
        "ledger",
        "verify",
        "--blocks",
        path_str(&blocks),
        "--msp-dir",
        path_str(&only_org1),
        "--trust-config",
        "--json",
    ]);
    let _ = std::fs::remove_dir_all(&only_org1);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = json_of(&out);
    let from_config = report["trusted_from_config"].as_array().expect("list");
    assert_eq!(from_config.len(), 1);
    assert!(
        from_config[0]
            .as_str()
            .expect("text")
            .starts_with("OrdererMSP")
    );
}

#[test]
fn verify_names_the_transaction_whose_envelope_was_changed() {
    let chain = ChainCopy::new("envelope");
    let original = chain.read(12).data.expect("data").data[0].clone();
    let tx_id = tx_id_of(&original);
    // One byte of the envelope's payload, inside the chaincode's response.
    let at = find(&original, b"hcc")
        .into_iter()
        .last()
        .expect("chaincode name in the envelope");
    chain.change_envelope(12, 0, |env| env[at] ^= 0x01);

    let (out, report) = verify_json(&chain.dir);
    let problems = failed(&out, &report);
    has_problem(
        &problems,
        12,
        None,
        "data_hash",
        "block 12: data hash mismatch",
    );
    has_problem(
        &problems,
        12,
        Some(0),
        "creator_signature",
        &format!(
            "block 12 tx 0 ({}…): creator signature does not verify",
            &tx_id[..8]
        ),
    );
    has_problem(
        &problems,
        12,
        Some(0),
        "validation_code",
        "recorded VALID (0), recomputed BAD_CREATOR_SIGNATURE (4)",
    );
    // Nothing outside block 12 is affected.
    assert!(problems.iter().all(|(b, ..)| *b == 12), "{problems:#?}");
    assert_eq!(report["signatures"]["creator"]["valid"], 450);
    orderer_signatures_intact(&report, &problems);
}

#[test]
fn verify_names_the_transaction_whose_creator_signature_was_changed() {
    let chain = ChainCopy::new("signature");
    let mut tx_id = String::new();
    chain.change_envelope(12, 0, |bytes| {
        tx_id = tx_id_of(bytes);
        let mut env = common::Envelope::decode(bytes.as_slice()).expect("envelope");
        // A byte inside the DER `r` integer of the ECDSA signature.
        env.signature[10] ^= 0x01;
        *bytes = env.encode_to_vec();
    });

    let (out, report) = verify_json(&chain.dir);
    let problems = failed(&out, &report);
    has_problem(
        &problems,
        12,
        Some(0),
        "creator_signature",
        &format!(
            "block 12 tx 0 ({}…): creator signature does not verify",
            &tx_id[..8]
        ),
    );
    has_problem(&problems, 12, None, "data_hash", "data hash mismatch");
    has_problem(
        &problems,
        12,
        Some(0),
        "validation_code",
        "recorded VALID (0), recomputed BAD_CREATOR_SIGNATURE (4)",
    );
    assert_eq!(report["signatures"]["creator"]["valid"], 450);
    assert_eq!(report["signatures"]["endorser"]["valid"], 451);
    assert!(problems.iter().all(|(b, ..)| *b == 12), "{problems:#?}");
    orderer_signatures_intact(&report, &problems);
}

#[test]
fn verify_names_the_block_whose_header_was_changed() {
    let chain = ChainCopy::new("header");
    let mut block = chain.read(40);
    block.header.as_mut().expect("header").previous_hash[0] ^= 0x01;
    chain.write(40, &block);

    let (out, report) = verify_json(&chain.dir);
    let problems = failed(&out, &report);
    has_problem(
        &problems,
        40,
        None,
        "previous_hash",
        "block 40: previous hash",
    );
    has_problem(
        &problems,
        40,
        None,
        "orderer_signature",
        "block 40: orderer signature #0 by OrdererMSP",
    );
    has_problem(
        &problems,
        40,
        None,
        "block_validation_policy",
        "/Channel/Orderer/BlockValidation",
    );
    // The changed header no longer hashes to what block 41 links to.
    has_problem(
        &problems,
        41,
        None,
        "previous_hash",
        "does not match block 40's header hash",
    );
    assert!(
        problems
            .iter()
            .all(|(b, tx, ..)| (*b == 40 || *b == 41) && tx.is_none()),
        "{problems:#?}"
    );
    assert_eq!(report["signatures"]["orderer"]["valid"], 79);
    // The transactions themselves are untouched: every code is still reproduced.
    assert_eq!(report["validation_codes"]["transactions"]["valid"], 452);
}

#[test]
fn verify_names_the_transaction_whose_write_set_was_changed() {
    let chain = ChainCopy::new("writeset");
    let original = chain.read(79).data.expect("data").data[0].clone();
    let tx_id = tx_id_of(&original);
    let at = first_write_value_offset(&original);
    chain.change_envelope(79, 0, |env| env[at] ^= 0x01);

    let (out, report) = verify_json(&chain.dir);
    let problems = failed(&out, &report);
    let tx = format!("block 79 tx 0 ({}…)", &tx_id[..8]);
    has_problem(&problems, 79, None, "data_hash", "data hash mismatch");
    has_problem(
        &problems,
        79,
        Some(0),
        "creator_signature",
        &format!("{tx}: creator signature does not verify"),
    );
    has_problem(
        &problems,
        79,
        Some(0),
        "endorser_signature",
        &format!("{tx}: endorsement #0 by Org1MSP"),
    );
    has_problem(
        &problems,
        79,
        Some(0),
        "validation_code",
        "recorded VALID (0), recomputed BAD_CREATOR_SIGNATURE (4)",
    );
    assert_eq!(report["signatures"]["endorser"]["valid"], 450);
    // Block 80 was validated against the ledger as recorded, so it is unaffected.
    assert!(problems.iter().all(|(b, ..)| *b == 79), "{problems:#?}");
    orderer_signatures_intact(&report, &problems);
}

#[test]
fn verify_reports_a_recorded_code_that_replaying_mvcc_does_not_reproduce() {
    let chain = ChainCopy::new("filter");
    let mut block = chain.read(37);
    let tx_id = tx_id_of(&block.data.as_ref().expect("data").data[3]);
    // Claim that the fourth of the six conflicting updates was the valid one.
    block.metadata.as_mut().expect("metadata").metadata[2][3] = 0;
    chain.write(37, &block);

    let (out, report) = verify_json(&chain.dir);
    let problems = failed(&out, &report);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    has_problem(
        &problems,
        37,
        Some(3),
        "validation_code",
        &format!(
            "block 37 tx 3 ({}…): recorded VALID (0), recomputed MVCC_READ_CONFLICT (11)",
            &tx_id[..8]
        ),
    );
    // TRANSACTIONS_FILTER is outside every hash and signature.
    assert_eq!(report["signatures"]["orderer"]["valid"], 80);
    assert_eq!(report["hash_chain"]["data_hashes"]["valid"], 81);
}

#[test]
fn verify_needs_the_genesis_block() {
    let chain = ChainCopy::new("nogenesis");
    std::fs::remove_file(chain.file(0)).expect("remove block 0");
    let msp = msp_dir();
    let out = gridledger(&[
        "ledger",
        "verify",
        "--blocks",
        path_str(&chain.dir),
        "--msp-dir",
        path_str(&msp),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("the first block in"),
        "{}",
        text(&out.stderr)
    );
}
