//! Channel configuration end to end, on real crypto material and a real Fabric genesis block:
//! channel file → config tree → genesis block → decoded view; config updates computed, signed
//! by organization admins, authorized against `mod_policy` and applied; and the errors a channel
//! admin sees for a bad channel file.

use std::path::{Path, PathBuf};

use gridledger_channels::config::{
    self, ChannelConfig, ChannelSpec, ConfigError, ConsensusState, SpecError,
};
use gridledger_channels::genesis::{self, genesis_block};
use gridledger_channels::update::{self, Change, ElementKind, UpdateError};
use gridledger_identity::SigningIdentity;
use gridledger_identity::material::{self, CryptoConfig, SEEDED_NOT_BEFORE};
use gridledger_proto::blockutil::{block_data_hash, block_header_hash, compute_tx_id};
use gridledger_proto::common;
use prost::Message;

/// A validation time inside the seeded material's validity window.
const NOW: u64 = SEEDED_NOT_BEFORE as u64 + 30 * 86_400;

/// Crypto material of the test consortium: the three market members, an aggregator that joins
/// later, and the orderer organization.
const CRYPTO_CONFIG: &str = r#"
seed = "gridledger-channels-config-tests"

[[organizations]]
msp_id = "OrdererMSP"
orderers = [{ name = "orderer0" }, { name = "orderer1" }, { name = "orderer2" }]

[[organizations]]
msp_id = "DSOMSP"
peers = [{ name = "peer0.dso" }]
users = [{ name = "User1" }]

[[organizations]]
msp_id = "RetailerMSP"
peers = [{ name = "peer0.retailer" }]
users = [{ name = "User1" }]

[[organizations]]
msp_id = "CommunityMSP"
peers = [{ name = "peer0.community" }]
users = [{ name = "User1" }]

[[organizations]]
msp_id = "AggregatorMSP"
peers = [{ name = "peer0.aggregator" }]
"#;

/// The market channel over the material above, with one consenter per orderer.
const MARKET_CHANNEL: &str = r#"
name = "market"

[orderer]
batch_timeout_ms = 1500
max_message_count = 100

[[orderer.organizations]]
msp_id = "OrdererMSP"
msp_dir = "organizations/OrdererMSP/msp"
endpoints = ["127.0.0.1:7050", "127.0.0.1:7051", "127.0.0.1:7052"]

[[orderer.consenters]]
host = "127.0.0.1"
port = 7050
client_tls_cert = "organizations/OrdererMSP/orderers/orderer0/tls/server.crt"
server_tls_cert = "organizations/OrdererMSP/orderers/orderer0/tls/server.crt"

[[orderer.consenters]]
host = "127.0.0.1"
port = 7051
client_tls_cert = "organizations/OrdererMSP/orderers/orderer1/tls/server.crt"
server_tls_cert = "organizations/OrdererMSP/orderers/orderer1/tls/server.crt"

[[orderer.consenters]]
host = "127.0.0.1"
port = 7052
client_tls_cert = "organizations/OrdererMSP/orderers/orderer2/tls/server.crt"
server_tls_cert = "organizations/OrdererMSP/orderers/orderer2/tls/server.crt"

[application.acls]
"_lifecycle/CommitChaincodeDefinition" = "/Channel/Application/Admins"

[[organizations]]
msp_id = "DSOMSP"
msp_dir = "organizations/DSOMSP/msp"
anchor_peers = ["127.0.0.1:9051"]

[[organizations]]
msp_id = "RetailerMSP"
msp_dir = "organizations/RetailerMSP/msp"
anchor_peers = ["127.0.0.1:10051"]

[[organizations]]
msp_id = "CommunityMSP"
msp_dir = "organizations/CommunityMSP/msp"
[organizations.policies]
Endorsement = "OR('CommunityMSP.peer', 'CommunityMSP.admin')"
"#;

/// The aggregator as a member organization, to be added by a config update.
const AGGREGATOR_ORG: &str = r#"
[[organizations]]
msp_id = "AggregatorMSP"
msp_dir = "organizations/AggregatorMSP/msp"
anchor_peers = ["127.0.0.1:12051"]
"#;

/// A fresh folder under the system temp dir, unique to this test and process, removed when
/// dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "gridledger-channels-config-{test}-{}",
            std::process::id()
        ));
        // Left over only if an earlier run with the same pid crashed.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Generates the test consortium's material and writes the market channel file next to it.
fn consortium(test: &str) -> Scratch {
    let dir = Scratch::new(test);
    let crypto: CryptoConfig = toml::from_str(CRYPTO_CONFIG).expect("crypto config parses");
    material::generate(&crypto, &dir, NOW as i64).expect("generate material");
    std::fs::write(dir.join("market.toml"), MARKET_CHANNEL).expect("write channel file");
    dir
}

fn market_config(dir: &Path) -> (ChannelSpec, common::Config) {
    config::config_from_file(&dir.join("market.toml")).expect("market channel builds")
}

fn signer(dir: &Path, msp_id: &str, user: &str) -> SigningIdentity {
    let base = dir
        .join("organizations")
        .join(msp_id)
        .join("users")
        .join(user)
        .join("msp");
    SigningIdentity::load(
        msp_id,
        &base.join("signcerts/cert.pem"),
        &base.join("keystore/key.pem"),
    )
    .expect("load signing identity")
}

fn fixture_block(n: usize) -> common::Block {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/fabric-2.5.5-chain")
        .join(format!("block{n:03}.pb"));
    let bytes = std::fs::read(&path).expect("read fixture block");
    common::Block::decode(bytes.as_slice()).expect("fixture block decodes")
}

fn root(config: &common::Config) -> &common::ConfigGroup {
    config
        .channel_group
        .as_ref()
        .expect("config has a root group")
}

/// The market config with the aggregator added as a member, plus the current view.
fn add_aggregator(dir: &Path) -> (ChannelConfig, common::ConfigUpdate) {
    let (spec, current) = market_config(dir);
    let current_view = ChannelConfig::from_config(&spec.name, &current).expect("valid config");
    let mut with_aggregator: ChannelSpec =
        toml::from_str(&format!("{MARKET_CHANNEL}{AGGREGATOR_ORG}")).expect("spec parses");
    with_aggregator
        .validate()
        .expect("spec with aggregator is valid");
    let org = with_aggregator
        .organizations
        .pop()
        .expect("aggregator is last");
    let mut desired = current.clone();
    desired
        .channel_group
        .as_mut()
        .expect("root")
        .groups
        .get_mut(config::APPLICATION_GROUP)
        .expect("application group")
        .groups
        .insert(
            "AggregatorMSP".to_string(),
            org.to_config_group(dir).expect("aggregator group"),
        );
    let update = update::compute_update("market", &current, &desired).expect("update computes");
    (current_view, update)
}

// ---------------------------------------------------------------------------------------------
// Fabric's own genesis block.

#[test]
fn fabric_2_5_genesis_config_decodes() {
    let channel = ChannelConfig::from_block(&fixture_block(0)).expect("Fabric genesis decodes");
    assert_eq!(channel.channel_id(), "mychannel");
    assert_eq!(channel.sequence(), 0);
    assert_eq!(channel.capabilities(), ["V2_0".to_string()]);

    let orgs: Vec<&str> = channel
        .organizations()
        .iter()
        .map(|o| o.msp_id.as_str())
        .collect();
    assert_eq!(orgs, ["Org1MSP"]);
    assert_eq!(channel.application().capabilities, ["V2_5".to_string()]);

    let orderer = channel.orderer();
    assert_eq!(orderer.consensus_type, "etcdraft");
    assert_eq!(orderer.state, ConsensusState::Normal);
    assert_eq!(orderer.organizations.len(), 1);
    // configtxgen keys org groups by organization name, which differs from the MSP id here.
    assert_eq!(orderer.organizations[0].name, "OrdererOrg");
    assert_eq!(orderer.organizations[0].msp_id, "OrdererMSP");
    assert_eq!(orderer.endpoints(), ["127.0.0.1:7050".to_string()]);
    assert_eq!(orderer.consenters.len(), 1);
    assert_eq!(orderer.consenters[0].host, "127.0.0.1");
    assert_eq!(orderer.consenters[0].port, 7050);
    assert!(
        orderer.consenters[0]
            .server_tls_cert
            .starts_with(b"-----BEGIN CERTIFICATE-----")
    );
    assert_eq!(orderer.batch.max_message_count, 500);
    assert_eq!(orderer.batch.absolute_max_bytes, 10 * 1024 * 1024);
    assert_eq!(orderer.batch.preferred_max_bytes, 2 * 1024 * 1024);
    assert_eq!(orderer.batch.batch_timeout_ms, 2_000);
    let options = orderer.options.as_ref().expect("etcdraft options");
    assert_eq!(options.tick_interval_ms, 500);
    assert_eq!(options.election_tick, 10);
    assert_eq!(options.snapshot_interval_size_bytes, 16 * 1024 * 1024);

    assert!(channel.msp_manager().msp("Org1MSP").is_some());
    assert!(channel.msp_manager().msp("OrdererMSP").is_some());
    let paths = channel.policies().paths();
    for expected in [
        "/Channel/Admins",
        "/Channel/Application/LifecycleEndorsement",
        "/Channel/Application/Org1MSP/Endorsement",
        "/Channel/Orderer/BlockValidation",
        "/Channel/Orderer/OrdererOrg/Admins",
    ] {
        assert!(paths.iter().any(|p| p == expected), "missing {expected}");
    }
}

#[test]
fn genesis_block_has_fabric_layout() {
    let fabric = fixture_block(0);
    let (channel_id, config) = genesis::config_from_block(&fabric).expect("config block");
    let fabric_payload = payload_of(&fabric);
    let fabric_channel_header = channel_header_of(&fabric_payload);
    let ours = genesis_block(
        &channel_id,
        config,
        fabric_channel_header.timestamp.expect("timestamp"),
    );

    // The metadata slots are byte-identical to what Fabric wrote (TRANSACTIONS_FILTER as filled
    // by the peer that served the fixture: one VALID code).
    assert_eq!(
        ours.metadata.as_ref().expect("metadata").metadata,
        fabric.metadata.as_ref().expect("metadata").metadata
    );
    let header = ours.header.as_ref().expect("header");
    assert_eq!(header.number, 0);
    assert!(header.previous_hash.is_empty());
    let data = ours.data.as_ref().expect("data");
    assert_eq!(data.data.len(), 1);
    assert_eq!(header.data_hash, block_data_hash(data).to_vec());

    let payload = payload_of(&ours);
    let ours_channel_header = channel_header_of(&payload);
    assert_eq!(ours_channel_header.r#type, fabric_channel_header.r#type);
    assert_eq!(ours_channel_header.version, fabric_channel_header.version);
    assert_eq!(ours_channel_header.channel_id, "mychannel");
    assert_eq!(ours_channel_header.epoch, 0);
    assert_eq!(
        ours_channel_header.timestamp,
        fabric_channel_header.timestamp
    );

    // Both signature headers have no creator and a 24-byte nonce, and both tx ids follow
    // Fabric's rule hex(sha256(nonce ‖ creator)).
    for (p, ch) in [
        (&payload, &ours_channel_header),
        (&fabric_payload, &fabric_channel_header),
    ] {
        let sh = common::SignatureHeader::decode(
            p.header
                .as_ref()
                .expect("header")
                .signature_header
                .as_slice(),
        )
        .expect("signature header");
        assert!(sh.creator.is_empty());
        assert_eq!(sh.nonce.len(), 24);
        assert_eq!(ch.tx_id, compute_tx_id(&sh.nonce, &sh.creator));
    }
    let envelope = common::Envelope::decode(data.data[0].as_slice()).expect("envelope decodes");
    assert!(envelope.signature.is_empty());
}

fn payload_of(block: &common::Block) -> common::Payload {
    let data = block.data.as_ref().expect("data");
    let envelope = common::Envelope::decode(data.data[0].as_slice()).expect("envelope");
    common::Payload::decode(envelope.payload.as_slice()).expect("payload")
}

fn channel_header_of(payload: &common::Payload) -> common::ChannelHeader {
    common::ChannelHeader::decode(
        payload
            .header
            .as_ref()
            .expect("header")
            .channel_header
            .as_slice(),
    )
    .expect("channel header")
}

#[test]
fn genesis_block_is_deterministic() {
    let (channel_id, config) = genesis::config_from_block(&fixture_block(0)).expect("config");
    let timestamp = prost_types::Timestamp {
        seconds: 1_795_679_141,
        nanos: 0,
    };
    let first = genesis_block(&channel_id, config.clone(), timestamp);
    let second = genesis_block(&channel_id, config, timestamp);
    assert_eq!(first.encode_to_vec(), second.encode_to_vec());
    let first_hash = block_header_hash(first.header.as_ref().expect("header"));
    assert_eq!(
        first_hash,
        block_header_hash(second.header.as_ref().expect("header"))
    );
    // Computed once from this code; any change to the genesis layout changes it.
    assert_eq!(
        hex::encode(first_hash),
        "18820d4f7110b8a15e160e88e2617cfd8380f8a4ef8003804731485250d47582",
        "the genesis block's bytes changed"
    );
    // A different channel id gives a different nonce and tx id.
    assert_ne!(
        genesis::genesis_nonce("mychannel"),
        genesis::genesis_nonce("market")
    );
}

// ---------------------------------------------------------------------------------------------
// Our channel file → config → genesis block → view.

#[test]
fn market_channel_from_toml_round_trips_through_genesis() {
    let dir = consortium("roundtrip");
    let (spec, config) = market_config(&dir);
    assert_eq!(spec.name, "market");
    let block = genesis_block(
        "market",
        config.clone(),
        prost_types::Timestamp {
            seconds: NOW as i64,
            nanos: 0,
        },
    );
    let header = block.header.as_ref().expect("header");
    assert_eq!(
        header.data_hash,
        block_data_hash(block.data.as_ref().expect("data")).to_vec()
    );
    // Bytes survive an encode/decode round trip (what a peer receives).
    let received = common::Block::decode(block.encode_to_vec().as_slice()).expect("decode");
    assert_eq!(received, block);

    let channel = ChannelConfig::from_block(&received).expect("our genesis decodes");
    assert_eq!(channel.channel_id(), "market");
    assert_eq!(channel.config(), &config);
    let members: Vec<(&str, &str)> = channel
        .organizations()
        .iter()
        .map(|o| (o.name.as_str(), o.msp_id.as_str()))
        .collect();
    assert_eq!(
        members,
        [
            ("CommunityMSP", "CommunityMSP"),
            ("DSOMSP", "DSOMSP"),
            ("RetailerMSP", "RetailerMSP")
        ]
    );
    let dso = channel.organization("DSOMSP").expect("DSO is a member");
    assert_eq!(dso.anchor_peers.len(), 1);
    assert_eq!(dso.anchor_peers[0].host, "127.0.0.1");
    assert_eq!(dso.anchor_peers[0].port, 9051);
    assert!(
        channel
            .organization("CommunityMSP")
            .expect("member")
            .anchor_peers
            .is_empty()
    );

    let orderer = channel.orderer();
    assert_eq!(orderer.consenters.len(), 3);
    assert_eq!(orderer.consenters[2].port, 7052);
    assert_eq!(orderer.batch.max_message_count, 100);
    assert_eq!(orderer.batch.absolute_max_bytes, 10 * 1024 * 1024);
    assert_eq!(orderer.batch.preferred_max_bytes, 2 * 1024 * 1024);
    assert_eq!(orderer.batch.batch_timeout_ms, 1_500);
    assert_eq!(orderer.endpoints().len(), 3);
    assert_eq!(channel.capabilities(), ["V2_0".to_string()]);
    assert_eq!(orderer.capabilities, ["V2_0".to_string()]);
    assert_eq!(channel.application().capabilities, ["V2_0".to_string()]);
    assert_eq!(
        channel.application().acls["_lifecycle/CommitChaincodeDefinition"],
        "/Channel/Application/Admins"
    );
    for msp_id in ["DSOMSP", "RetailerMSP", "CommunityMSP", "OrdererMSP"] {
        assert!(channel.msp_manager().msp(msp_id).is_some(), "{msp_id}");
    }

    // The values configtxgen writes, with its encodings.
    let root = root(&config);
    let batch_timeout = gridledger_proto::orderer::BatchTimeout::decode(
        root.groups["Orderer"].values["BatchTimeout"]
            .value
            .as_slice(),
    )
    .expect("batch timeout");
    assert_eq!(batch_timeout.timeout, "1.5s");
    let hashing = common::BlockDataHashingStructure::decode(
        root.values["BlockDataHashingStructure"].value.as_slice(),
    )
    .expect("hashing structure");
    assert_eq!(hashing.width, u32::MAX);
    assert_eq!(
        root.groups["Orderer"].policies.keys().collect::<Vec<_>>(),
        ["Admins", "BlockValidation", "Readers", "Writers"]
    );
    assert_eq!(
        root.groups["Application"]
            .policies
            .keys()
            .collect::<Vec<_>>(),
        [
            "Admins",
            "Endorsement",
            "LifecycleEndorsement",
            "Readers",
            "Writers"
        ]
    );
    assert_eq!(
        root.groups["Application"].groups["DSOMSP"]
            .values
            .keys()
            .collect::<Vec<_>>(),
        ["AnchorPeers", "MSP"]
    );
    assert_eq!(
        root.groups["Application"].values.keys().collect::<Vec<_>>(),
        ["ACLs", "Capabilities"]
    );
    // Every element at version 0 and guarded by "Admins", as configtxgen writes them.
    assert_all_admins_v0(root);

    // The override took effect and the defaults follow configtxgen's sample.
    let signature_policy = |rule: &str| common::Policy {
        r#type: common::policy::PolicyType::Signature as i32,
        value: gridledger_channels::policy::parse(rule)
            .expect("rule parses")
            .encode_to_vec(),
    };
    assert_eq!(
        channel
            .policies()
            .policy("/Channel/Application/CommunityMSP/Endorsement"),
        Some(&signature_policy(
            "OR('CommunityMSP.peer', 'CommunityMSP.admin')"
        ))
    );
    assert_eq!(
        channel
            .policies()
            .policy("/Channel/Application/DSOMSP/Readers"),
        Some(&signature_policy(
            "OR('DSOMSP.admin', 'DSOMSP.peer', 'DSOMSP.client')"
        ))
    );
    assert_eq!(
        channel
            .policies()
            .policy("/Channel/Orderer/OrdererMSP/Writers"),
        Some(&signature_policy("OR('OrdererMSP.member')"))
    );
}

fn assert_all_admins_v0(group: &common::ConfigGroup) {
    assert_eq!(group.version, 0);
    assert_eq!(group.mod_policy, "Admins");
    for v in group.values.values() {
        assert_eq!((v.version, v.mod_policy.as_str()), (0, "Admins"));
    }
    for p in group.policies.values() {
        assert_eq!((p.version, p.mod_policy.as_str()), (0, "Admins"));
    }
    for g in group.groups.values() {
        assert_all_admins_v0(g);
    }
}

#[test]
fn policies_of_the_market_channel_evaluate_with_real_signatures() {
    let dir = consortium("policies");
    let (_, config) = market_config(&dir);
    let channel = ChannelConfig::from_config("market", &config).expect("valid");
    let admin = signer(&dir, "DSOMSP", "Admin");
    let user = signer(&dir, "DSOMSP", "User1");
    let data = b"some bytes";
    let admin_sig = admin.sign(data);
    let user_sig = user.sign(data);
    fn signed<'a>(
        data: &'a [u8],
        id: &'a SigningIdentity,
        sig: &'a [u8],
    ) -> gridledger_channels::policy::SignedData<'a> {
        gridledger_channels::policy::SignedData {
            data,
            identity: id.serialized(),
            signature: sig,
        }
    }
    let admins = "/Channel/Application/DSOMSP/Admins";
    let writers = "/Channel/Application/DSOMSP/Writers";
    assert!(
        channel
            .evaluate_policy(admins, &[signed(data, &admin, &admin_sig)], NOW)
            .expect("evaluates")
            .satisfied
    );
    assert!(
        !channel
            .evaluate_policy(admins, &[signed(data, &user, &user_sig)], NOW)
            .expect("evaluates")
            .satisfied
    );
    assert!(
        channel
            .evaluate_policy(writers, &[signed(data, &user, &user_sig)], NOW)
            .expect("evaluates")
            .satisfied
    );
    // The request paths' check: nothing to say when granted, the explanation when refused.
    let check = |path: &str, id: &SigningIdentity, sig: &[u8]| {
        channel
            .policies()
            .check(path, &[signed(data, id, sig)], channel.msp_manager(), NOW)
            .expect("evaluates")
    };
    assert!(check(writers, &user, &user_sig).is_none());
    let refused = check(admins, &user, &user_sig).expect("a user is not an admin");
    assert!(!refused.satisfied);
    assert!(refused.to_string().contains("DSOMSP.admin"), "{refused}");
    assert!(
        check(admins, &user, &admin_sig).is_some(),
        "a signature by someone else"
    );
}

// ---------------------------------------------------------------------------------------------
// Config updates.

#[test]
fn adding_an_org_with_two_of_three_admins_is_authorized_and_applied() {
    let dir = consortium("add-org");
    let (current, config_update) = add_aggregator(&dir);

    // configtxlator's shape: /Channel/Application is rewritten at version 1 listing every
    // member; the new org and everything in it are at version 0; the rest is read at version 0.
    let write = config_update.write_set.as_ref().expect("write set");
    let read = config_update.read_set.as_ref().expect("read set");
    let app_write = &write.groups["Application"];
    assert_eq!(app_write.version, 1);
    assert_eq!(app_write.mod_policy, "Admins");
    assert_eq!(app_write.groups.len(), 4);
    assert_eq!(app_write.groups["DSOMSP"].version, 0);
    assert!(app_write.groups["DSOMSP"].values.is_empty());
    let new_org = &app_write.groups["AggregatorMSP"];
    assert_eq!(new_org.version, 0);
    assert!(new_org.values.contains_key("MSP"));
    assert_eq!(read.groups["Application"].version, 0);
    assert!(!read.groups.contains_key("Orderer"));
    assert!(!write.groups.contains_key("Orderer"));

    let mut envelope = update::new_envelope(&config_update);
    update::sign(&mut envelope, &signer(&dir, "DSOMSP", "Admin"), [1; 24]);
    update::sign(
        &mut envelope,
        &signer(&dir, "RetailerMSP", "Admin"),
        [2; 24],
    );

    let authorization = update::authorize(&current, &envelope, NOW).expect("authorized");
    assert!(authorization.is_authorized());
    let app_change = authorization
        .changes
        .iter()
        .find(|c| c.element.kind == ElementKind::Group && c.element.path == "/Channel/Application")
        .expect("the application group changes");
    assert_eq!(app_change.change, Change::Modified { from: 0, to: 1 });
    let (policy, evaluation) = app_change.authorization.as_ref().expect("policy checked");
    assert_eq!(policy, "/Channel/Application/Admins");
    assert!(evaluation.satisfied);
    // The new org's own elements are additions, covered by the application group's policy.
    assert!(
        authorization
            .changes
            .iter()
            .filter(|c| c
                .element
                .path
                .starts_with("/Channel/Application/AggregatorMSP"))
            .all(|c| c.change == Change::Added && c.authorization.is_none())
    );

    let next = update::apply(current.config(), &config_update).expect("applies");
    assert_eq!(next, authorization.next_config);
    assert_eq!(next.sequence, 1);
    let next_view = ChannelConfig::from_config("market", &next).expect("next config is valid");
    let members: Vec<&str> = next_view
        .organizations()
        .iter()
        .map(|o| o.msp_id.as_str())
        .collect();
    assert_eq!(
        members,
        ["AggregatorMSP", "CommunityMSP", "DSOMSP", "RetailerMSP"]
    );
    assert_eq!(
        next_view
            .organization("AggregatorMSP")
            .expect("member")
            .anchor_peers[0]
            .port,
        12051
    );
    assert!(next_view.msp_manager().msp("AggregatorMSP").is_some());
    assert_eq!(root(&next).groups["Application"].version, 1);

    // Removing the org again is the reverse update, at the new versions.
    let back = update::compute_update("market", &next, current.config()).expect("removal");
    let removed = update::apply(&next, &back).expect("removal applies");
    assert_eq!(removed.sequence, 2);
    assert!(
        !root(&removed).groups["Application"]
            .groups
            .contains_key("AggregatorMSP")
    );
    assert_eq!(root(&removed).groups["Application"].version, 2);
}

#[test]
fn one_admin_of_three_is_rejected_naming_the_missing_admins() {
    let dir = consortium("one-admin");
    let (current, config_update) = add_aggregator(&dir);
    let mut envelope = update::new_envelope(&config_update);
    update::sign(&mut envelope, &signer(&dir, "DSOMSP", "Admin"), [1; 24]);

    let err = update::authorize(&current, &envelope, NOW).expect_err("one admin is not enough");
    let UpdateError::Unauthorized {
        element,
        policy,
        explanation,
    } = &err
    else {
        panic!("expected Unauthorized, got {err}");
    };
    assert_eq!(element.path, "/Channel/Application");
    assert_eq!(policy, "/Channel/Application/Admins");
    assert!(explanation.contains("RetailerMSP"), "{explanation}");
    assert!(explanation.contains("CommunityMSP"), "{explanation}");
    assert!(err.to_string().contains("/Channel/Application/Admins"));

    // A dry run shows the same verdict without failing.
    let dry = update::check(&current, &envelope, NOW).expect("dry run");
    assert!(!dry.is_authorized());
    assert_eq!(
        dry.first_unsatisfied().expect("unsatisfied").element.path,
        "/Channel/Application"
    );
}

#[test]
fn a_client_signature_does_not_count_as_an_admin() {
    let dir = consortium("client-sig");
    let (current, config_update) = add_aggregator(&dir);
    let mut envelope = update::new_envelope(&config_update);
    update::sign(&mut envelope, &signer(&dir, "DSOMSP", "Admin"), [1; 24]);
    update::sign(
        &mut envelope,
        &signer(&dir, "RetailerMSP", "User1"),
        [2; 24],
    );

    let err = update::authorize(&current, &envelope, NOW).expect_err("User1 is no admin");
    assert!(matches!(err, UpdateError::Unauthorized { .. }), "{err}");

    let who = update::signers(&envelope, Some(current.msp_manager()), NOW);
    assert_eq!(who.len(), 2);
    assert_eq!(who[0].msp_id, "DSOMSP");
    assert_eq!(who[0].is_admin, Some(true));
    assert_eq!(who[0].problem, None);
    assert_eq!(who[1].msp_id, "RetailerMSP");
    assert_eq!(who[1].is_admin, Some(false));
    assert!(
        who[1]
            .subject
            .as_deref()
            .is_some_and(|s| s.contains("User1"))
    );
    let unchecked = update::signers(&envelope, None, NOW);
    assert_eq!(unchecked[1].msp_id, "RetailerMSP");
    assert_eq!(unchecked[1].subject, None);
}

#[test]
fn a_tampered_update_invalidates_the_signatures() {
    let dir = consortium("tampered");
    let (current, config_update) = add_aggregator(&dir);
    let mut envelope = update::new_envelope(&config_update);
    update::sign(&mut envelope, &signer(&dir, "DSOMSP", "Admin"), [1; 24]);
    update::sign(
        &mut envelope,
        &signer(&dir, "RetailerMSP", "Admin"),
        [2; 24],
    );
    // Change the update after it was signed: drop the new org's anchor peers.
    let mut changed = config_update.clone();
    changed
        .write_set
        .as_mut()
        .expect("write set")
        .groups
        .get_mut("Application")
        .expect("application")
        .groups
        .get_mut("AggregatorMSP")
        .expect("new org")
        .values
        .remove("AnchorPeers");
    envelope.config_update = changed.encode_to_vec();

    let err = update::authorize(&current, &envelope, NOW).expect_err("signatures are void");
    assert!(matches!(err, UpdateError::Unauthorized { .. }), "{err}");
    let who = update::signers(&envelope, Some(current.msp_manager()), NOW);
    assert!(who.iter().all(|s| s.problem.is_some()));
}

#[test]
fn an_update_for_another_channel_is_rejected() {
    let dir = consortium("wrong-channel");
    let (current, mut config_update) = add_aggregator(&dir);
    config_update.channel_id = "meter-retailer".to_string();
    let mut envelope = update::new_envelope(&config_update);
    update::sign(&mut envelope, &signer(&dir, "DSOMSP", "Admin"), [1; 24]);
    update::sign(
        &mut envelope,
        &signer(&dir, "RetailerMSP", "Admin"),
        [2; 24],
    );
    let err = update::authorize(&current, &envelope, NOW).expect_err("wrong channel");
    assert!(
        matches!(&err, UpdateError::WrongChannel { update, channel }
            if update == "meter-retailer" && channel == "market"),
        "{err}"
    );
}

#[test]
fn a_stale_update_is_rejected() {
    let dir = consortium("stale");
    let (current, config_update) = add_aggregator(&dir);
    let mut envelope = update::new_envelope(&config_update);
    update::sign(&mut envelope, &signer(&dir, "DSOMSP", "Admin"), [1; 24]);
    update::sign(
        &mut envelope,
        &signer(&dir, "CommunityMSP", "Admin"),
        [3; 24],
    );
    let authorization = update::authorize(&current, &envelope, NOW).expect("authorized");
    let next =
        ChannelConfig::from_config("market", &authorization.next_config).expect("next is valid");

    // The same envelope against the updated channel: it was computed against version 0 of
    // /Channel/Application, which is now at version 1.
    let err = update::authorize(&next, &envelope, NOW).expect_err("stale");
    assert!(
        matches!(&err, UpdateError::StaleReadSet { element, read: 0, current: 1 }
            if element.path == "/Channel/Application"),
        "{err}"
    );
    assert!(err.to_string().contains("recompute"));
}

#[test]
fn changing_the_batch_size_needs_the_orderer_admins() {
    let dir = consortium("batch");
    let (spec, current) = market_config(&dir);
    let view = ChannelConfig::from_config(&spec.name, &current).expect("valid");
    let mut desired = current.clone();
    let batch = gridledger_proto::orderer::BatchSize {
        max_message_count: 50,
        absolute_max_bytes: 10 * 1024 * 1024,
        preferred_max_bytes: 1024 * 1024,
    };
    desired
        .channel_group
        .as_mut()
        .expect("root")
        .groups
        .get_mut("Orderer")
        .expect("orderer")
        .values
        .get_mut("BatchSize")
        .expect("batch size")
        .value = batch.encode_to_vec();
    let config_update = update::compute_update("market", &current, &desired).expect("update");

    // Application admins cannot change the orderer's settings ...
    let mut by_members = update::new_envelope(&config_update);
    update::sign(&mut by_members, &signer(&dir, "DSOMSP", "Admin"), [1; 24]);
    update::sign(
        &mut by_members,
        &signer(&dir, "RetailerMSP", "Admin"),
        [2; 24],
    );
    let err = update::authorize(&view, &by_members, NOW).expect_err("not orderer admins");
    assert!(
        matches!(&err, UpdateError::Unauthorized { element, policy, .. }
            if element.path == "/Channel/Orderer/BatchSize" && policy == "/Channel/Orderer/Admins"),
        "{err}"
    );

    // ... the orderer organization's admin can.
    let mut by_orderer = update::new_envelope(&config_update);
    update::sign(
        &mut by_orderer,
        &signer(&dir, "OrdererMSP", "Admin"),
        [4; 24],
    );
    let authorization = update::authorize(&view, &by_orderer, NOW).expect("authorized");
    assert_eq!(authorization.changes.len(), 1);
    let next = ChannelConfig::from_config("market", &authorization.next_config).expect("valid");
    assert_eq!(next.orderer().batch.max_message_count, 50);
    assert_eq!(next.orderer().batch.preferred_max_bytes, 1024 * 1024);
}

#[test]
fn an_update_producing_an_invalid_config_is_rejected() {
    let dir = consortium("invalid-result");
    let (spec, current) = market_config(&dir);
    let view = ChannelConfig::from_config(&spec.name, &current).expect("valid");
    let mut desired = current.clone();
    desired
        .channel_group
        .as_mut()
        .expect("root")
        .groups
        .get_mut("Orderer")
        .expect("orderer")
        .values
        .get_mut("BatchTimeout")
        .expect("batch timeout")
        .value = gridledger_proto::orderer::BatchTimeout {
        timeout: "soon".to_string(),
    }
    .encode_to_vec();
    let config_update = update::compute_update("market", &current, &desired).expect("update");
    let mut envelope = update::new_envelope(&config_update);
    update::sign(&mut envelope, &signer(&dir, "OrdererMSP", "Admin"), [4; 24]);
    let err = update::authorize(&view, &envelope, NOW).expect_err("invalid result");
    assert!(
        matches!(&err, UpdateError::InvalidResult(ConfigError::Invalid { path, .. })
            if path == "/Channel/Orderer/BatchTimeout"),
        "{err}"
    );
}

/// `config` with the MSP id inside the `MSP` value of the organization group at
/// `section/group` replaced by `msp_id` (the certificates stay the same).
fn with_msp_id(
    config: &common::Config,
    section: &str,
    group: &str,
    msp_id: &str,
) -> common::Config {
    let mut out = config.clone();
    let value = out
        .channel_group
        .as_mut()
        .expect("root")
        .groups
        .get_mut(section)
        .expect("section")
        .groups
        .get_mut(group)
        .expect("organization group")
        .values
        .get_mut("MSP")
        .expect("MSP value");
    let mut msp_config =
        gridledger_proto::msp::MspConfig::decode(value.value.as_slice()).expect("MSPConfig");
    let mut fabric = gridledger_proto::msp::FabricMspConfig::decode(msp_config.config.as_slice())
        .expect("FabricMSPConfig");
    fabric.name = msp_id.to_string();
    msp_config.config = fabric.encode_to_vec();
    value.value = msp_config.encode_to_vec();
    out
}

#[test]
fn an_update_may_not_change_an_organizations_msp_id() {
    let dir = consortium("msp-id");
    let (spec, current) = market_config(&dir);
    let view = ChannelConfig::from_config(&spec.name, &current).expect("valid");
    for (section, group, admin) in [
        ("Application", "DSOMSP", "DSOMSP"),
        ("Orderer", "OrdererMSP", "OrdererMSP"),
    ] {
        // The group's own admin may change its MSP value, but not the MSP id in it.
        let desired = with_msp_id(&current, section, group, "GridOperatorMSP");
        let config_update =
            update::compute_update("market", &current, &desired).expect("update computes");
        let mut envelope = update::new_envelope(&config_update);
        update::sign(&mut envelope, &signer(&dir, admin, "Admin"), [5; 24]);
        let err = update::authorize(&view, &envelope, NOW).expect_err("MSP id changes");
        assert!(
            matches!(&err, UpdateError::MspIdChanged { group: path, from, to }
                if *path == format!("/Channel/{section}/{group}")
                    && from == group
                    && to == "GridOperatorMSP"),
            "{err}"
        );
        assert!(
            matches!(
                update::check(&view, &envelope, NOW),
                Err(UpdateError::MspIdChanged { .. })
            ),
            "a dry run refuses it too"
        );
    }
}

#[test]
fn an_update_may_not_remove_the_application_or_orderer_group() {
    let dir = consortium("sections");
    let (spec, current) = market_config(&dir);
    let view = ChannelConfig::from_config(&spec.name, &current).expect("valid");
    for section in ["Application", "Orderer"] {
        let mut desired = current.clone();
        desired
            .channel_group
            .as_mut()
            .expect("root")
            .groups
            .remove(section);
        let config_update =
            update::compute_update("market", &current, &desired).expect("update computes");
        // /Channel/Admins: a majority of the Application and Orderer admins policies.
        let mut envelope = update::new_envelope(&config_update);
        for (i, org) in ["DSOMSP", "RetailerMSP", "OrdererMSP"]
            .into_iter()
            .enumerate()
        {
            update::sign(
                &mut envelope,
                &signer(&dir, org, "Admin"),
                [i as u8 + 1; 24],
            );
        }
        let err = update::authorize(&view, &envelope, NOW).expect_err("section removed");
        assert!(
            matches!(&err, UpdateError::SectionRemoved { group } if *group == format!("/Channel/{section}")),
            "{err}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Channel file errors.

/// A valid channel file whose paths need no material (for errors found before files are read).
const MINIMAL: &str = r#"
name = "market"
[[orderer.organizations]]
msp_id = "OrdererMSP"
msp_dir = "organizations/OrdererMSP/msp"
[[orderer.consenters]]
host = "127.0.0.1"
port = 7050
client_tls_cert = "tls/server.crt"
server_tls_cert = "tls/server.crt"
[[organizations]]
msp_id = "DSOMSP"
msp_dir = "organizations/DSOMSP/msp"
"#;

fn parse_err(text: &str) -> SpecError {
    ChannelSpec::parse(text).expect_err("the channel file must be rejected")
}

#[test]
fn minimal_channel_file_takes_fabric_defaults() {
    let spec = ChannelSpec::parse(MINIMAL).expect("valid");
    assert_eq!(spec.orderer.orderer_type, "etcdraft");
    assert_eq!(spec.orderer.max_message_count, 500);
    assert_eq!(spec.orderer.absolute_max_bytes, 10 * 1024 * 1024);
    assert_eq!(spec.orderer.preferred_max_bytes, 2 * 1024 * 1024);
    assert_eq!(spec.orderer.batch_timeout_ms, 2_000);
    assert_eq!(spec.orderer.etcdraft.tick_interval_ms, 500);
    assert_eq!(spec.channel.capabilities, ["V2_0".to_string()]);
    assert_eq!(spec.application.capabilities, ["V2_0".to_string()]);
}

#[test]
fn malformed_toml_is_reported_with_its_line() {
    let err = parse_err("name = \"market\"\n[orderer\n");
    assert!(matches!(err, SpecError::Toml(_)), "{err}");
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn unknown_fields_are_rejected() {
    let err = parse_err(&MINIMAL.replace("port = 7050", "port = 7050\ntls = true"));
    assert!(matches!(err, SpecError::Toml(_)), "{err}");
    assert!(err.to_string().contains("unknown field `tls`"), "{err}");

    let err = parse_err(&format!(
        "{MINIMAL}[organizations.policies]\nAdmin = \"OR('DSOMSP.admin')\"\n"
    ));
    assert!(err.to_string().contains("unknown field `Admin`"), "{err}");
}

#[test]
fn bad_policy_strings_carry_the_parser_position() {
    let err = parse_err(&format!(
        "{MINIMAL}[organizations.policies]\nEndorsement = \"OR('DSOMSP.peer', 'DSOMSP.pear')\"\n"
    ));
    assert!(
        matches!(&err, SpecError::Policy { location, .. }
            if location == "organizations[DSOMSP].policies.Endorsement"),
        "{err}"
    );
    assert!(err.to_string().contains("column"), "{err}");

    let err = parse_err(&format!(
        "{MINIMAL}[application.policies]\nAdmins = \"MOST Admins\"\n"
    ));
    assert!(
        matches!(&err, SpecError::Policy { location, .. } if location == "application.policies.Admins"),
        "{err}"
    );

    let err = parse_err(&format!(
        "{MINIMAL}[organizations.policies]\nAdmins = \"ANY Admins\"\n"
    ));
    assert!(matches!(err, SpecError::PolicyPlacement { .. }), "{err}");
}

#[test]
fn invalid_channel_names_are_rejected() {
    for bad in ["", "Market", "9market", "market_1", &"m".repeat(250)] {
        let err = parse_err(&MINIMAL.replace("name = \"market\"", &format!("name = {bad:?}")));
        assert!(matches!(err, SpecError::ChannelName(_)), "{bad:?}: {err}");
    }
}

#[test]
fn inconsistent_orderer_settings_are_rejected() {
    let with_orderer = |extra: &str| {
        MINIMAL.replace(
            "name = \"market\"",
            &format!("name = \"market\"\n[orderer]\n{extra}"),
        )
    };
    let err = parse_err(&with_orderer("preferred_max_bytes = 20971520"));
    assert!(matches!(err, SpecError::BatchSize(_)), "{err}");
    assert!(
        err.to_string().contains("preferred_max_bytes (20971520)"),
        "{err}"
    );
    assert!(matches!(
        parse_err(&with_orderer("max_message_count = 0")),
        SpecError::BatchSize(_)
    ));
    assert!(matches!(
        parse_err(&with_orderer("batch_timeout_ms = 0")),
        SpecError::BatchSize(_)
    ));
    assert!(matches!(
        parse_err(&with_orderer("type = \"solo\"")),
        SpecError::UnsupportedOrdererType(_)
    ));

    let mut spec = ChannelSpec::parse(MINIMAL).expect("valid");
    spec.orderer.consenters.clear();
    assert!(matches!(spec.validate(), Err(SpecError::NoConsenters)));
    let mut spec = ChannelSpec::parse(MINIMAL).expect("valid");
    spec.orderer.etcdraft.election_tick = 1;
    assert!(matches!(spec.validate(), Err(SpecError::EtcdRaft(_))));
}

#[test]
fn duplicate_msp_ids_are_rejected() {
    let err = parse_err(&format!(
        "{MINIMAL}[[organizations]]\nmsp_id = \"DSOMSP\"\nmsp_dir = \"elsewhere\"\n"
    ));
    assert!(
        matches!(&err, SpecError::DuplicateMspId { msp_id, .. } if msp_id == "DSOMSP"),
        "{err}"
    );
}

#[test]
fn bad_addresses_are_rejected() {
    let err = parse_err(&format!("{MINIMAL}anchor_peers = [\"peer0.dso\"]\n"));
    assert!(
        matches!(&err, SpecError::Address { location, .. } if location == "organizations[DSOMSP].anchor_peers"),
        "{err}"
    );
}

#[test]
fn missing_files_are_named() {
    let dir = Scratch::new("missing-files");
    let spec = ChannelSpec::parse(MINIMAL).expect("valid");
    let err = spec.to_config(&dir).expect_err("no material there");
    assert!(
        matches!(&err, SpecError::MissingFile { what, path }
            if what == "organizations[DSOMSP].msp_dir" && path.ends_with("organizations/DSOMSP/msp")),
        "{err}"
    );
    let err = config::config_from_file(&dir.join("nope.toml")).expect_err("no file");
    assert!(matches!(err, SpecError::ReadFile { .. }), "{err}");
}

#[test]
fn example_market_channel_builds_on_the_example_material() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let spec = ChannelSpec::load(&examples.join("market-channel.toml")).expect("example is valid");
    let crypto: CryptoConfig = toml::from_str(
        &std::fs::read_to_string(examples.join("crypto-config.toml")).expect("read example"),
    )
    .expect("example crypto config parses");
    let dir = Scratch::new("example");
    material::generate(&crypto, &dir, NOW as i64).expect("generate");
    let config = spec
        .to_config(&dir)
        .expect("example builds on its material");
    let channel = ChannelConfig::from_config(&spec.name, &config).expect("valid");
    assert_eq!(channel.channel_id(), "market");
    assert_eq!(channel.organizations().len(), 3);
    assert_eq!(channel.orderer().consenters.len(), 3);
    assert_eq!(
        channel.orderer().endpoints(),
        ["127.0.0.1:7050", "127.0.0.1:7051", "127.0.0.1:7052"]
    );
}

#[test]
fn a_fabric_channel_config_lists_its_certificates_with_their_expiry() {
    let channel = ChannelConfig::from_block(&fixture_block(0)).expect("Fabric genesis decodes");
    let certificates = channel.certificates();
    let listed: Vec<(&str, &str)> = certificates
        .iter()
        .map(|c| (c.msp_id.as_str(), c.role))
        .collect();
    assert_eq!(
        listed,
        [
            ("OrdererMSP", "ca"),
            ("OrdererMSP", "tls_ca"),
            ("Org1MSP", "ca"),
            ("Org1MSP", "tls_ca"),
            ("", "consenter_client_tls"),
            ("", "consenter_server_tls"),
        ]
    );
    // `openssl x509 -enddate` on the fixture's CA certificates: notAfter=Nov 23 07:41:00 2036 GMT.
    assert!(certificates.iter().all(|c| c.not_after == 2_111_038_860));
    assert!(certificates[2].subject.contains("CN=ca.org1.example.com"));
    assert!(
        certificates[4].subject.ends_with("(127.0.0.1:7050)"),
        "{:?}",
        certificates[4]
    );
}
