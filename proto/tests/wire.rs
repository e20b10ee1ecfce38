//! Wire-compatibility tests against a real Fabric 2.5.5 ledger (81 blocks of `mychannel`).
//!
//! Every layer of every block is decoded with our generated types and re-encoded; the bytes
//! must come back identical. That proves the field numbers and types match Fabric's (a wrong
//! number or type would drop or mangle a field) and that our map encoding order matches the
//! Go encoder's on these bytes. The hashing rules are checked against the chain itself and
//! against the manifest that was produced independently of this code.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use gridledger_proto::prost::Message;
use gridledger_proto::{
    block_data_hash, block_header_bytes, block_header_hash, common, compute_tx_id, etcdraft,
    kvrwset, msp, orderer, protos, rwset,
};
use serde_json::Value;

const BLOCK_COUNT: u64 = 81;

fn fixture_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/fabric-2.5.5-chain"
    ))
}

fn block_bytes(n: u64) -> Vec<u8> {
    let path = fixture_dir().join(format!("block{n:03}.pb"));
    fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn manifest() -> Value {
    let path = fixture_dir().join("manifest.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read manifest: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse manifest: {e}"))
}

fn manifest_block(m: &Value, n: u64) -> &Value {
    let entry = &m["blocks"][n as usize];
    assert_eq!(entry["number"].as_u64(), Some(n), "manifest order");
    entry
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("manifest field {key} missing in {v}"))
}

/// Decodes `bytes` as `M` and asserts that re-encoding reproduces them exactly.
fn roundtrip<M: Message + Default>(bytes: &[u8], what: &str) -> M {
    let msg = M::decode(bytes).unwrap_or_else(|e| panic!("{what}: decode failed: {e}"));
    let again = msg.encode_to_vec();
    assert!(
        again == bytes,
        "{what}: re-encoding differs ({} bytes in, {} bytes out)",
        bytes.len(),
        again.len()
    );
    msg
}

fn decode_block(n: u64) -> (Vec<u8>, common::Block) {
    let bytes = block_bytes(n);
    let block = roundtrip::<common::Block>(&bytes, &format!("block {n}"));
    (bytes, block)
}

fn header_of(block: &common::Block) -> &common::BlockHeader {
    block.header.as_ref().expect("block has a header")
}

fn data_of(block: &common::Block) -> &common::BlockData {
    block.data.as_ref().expect("block has data")
}

// ---------------------------------------------------------------------------------------------
// Hashing test vectors (WIRE.md §3.2)
// ---------------------------------------------------------------------------------------------

fn vector_data() -> common::BlockData {
    common::BlockData {
        data: vec![b"env0".to_vec(), b"env1".to_vec()],
    }
}

const VECTOR_DATA_HASH: &str = "d06332f933847efc16b6b2eb437f9e8f6a8b54062967bc85f37f4490da2f3215";

#[test]
fn data_hash_vector() {
    assert_eq!(
        hex::encode(block_data_hash(&vector_data())),
        VECTOR_DATA_HASH
    );
    // The empty block data hashes to sha256("").
    assert_eq!(
        hex::encode(block_data_hash(&common::BlockData::default())),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn header_hash_vectors() {
    let data_hash = block_data_hash(&vector_data()).to_vec();

    let genesis = common::BlockHeader {
        number: 0,
        previous_hash: Vec::new(),
        data_hash: data_hash.clone(),
    };
    assert_eq!(
        hex::encode(block_header_bytes(&genesis)),
        "302702010004000420d06332f933847efc16b6b2eb437f9e8f6a8b54062967bc85f37f4490da2f3215"
    );
    assert_eq!(
        hex::encode(block_header_hash(&genesis)),
        "fe68c1a686a91c39a1f0f94782edad72055fdb9ec5589374a7355f019b019b04"
    );

    let one = common::BlockHeader {
        number: 1,
        previous_hash: vec![0xab; 32],
        data_hash: data_hash.clone(),
    };
    assert_eq!(
        hex::encode(block_header_hash(&one)),
        "d257d7a4e33e0ccac5247d0e707c6dbf30fd5774870ceafcd1286d3856578705"
    );

    let big = common::BlockHeader {
        number: 128,
        previous_hash: vec![0x01; 32],
        data_hash,
    };
    let der = hex::encode(block_header_bytes(&big));
    assert!(der.starts_with("3048020200800420"), "DER was {der}");
    assert_eq!(
        hex::encode(block_header_hash(&big)),
        "8e421a19025db52bdf88cf8915426bc62530c1015032da88e1220868a863c302"
    );
}

#[test]
fn header_bytes_for_max_number_pads_the_integer() {
    let header = common::BlockHeader {
        number: u64::MAX,
        previous_hash: Vec::new(),
        data_hash: Vec::new(),
    };
    assert_eq!(
        hex::encode(block_header_bytes(&header)),
        "300f020900ffffffffffffffff04000400"
    );
}

// ---------------------------------------------------------------------------------------------
// The whole chain: block bytes, hashes, links
// ---------------------------------------------------------------------------------------------

#[test]
fn every_block_roundtrips_and_the_chain_links() {
    let m = manifest();
    assert_eq!(m["height"].as_u64(), Some(BLOCK_COUNT));
    let blocks = m["blocks"].as_array().expect("manifest blocks");
    assert_eq!(blocks.len() as u64, BLOCK_COUNT);

    let mut previous_header_hash: Option<[u8; 32]> = None;
    for n in 0..BLOCK_COUNT {
        let (_, block) = decode_block(n);
        let entry = manifest_block(&m, n);
        let header = header_of(&block);
        assert_eq!(header.number, n, "block {n} number");

        let data_hash = block_data_hash(data_of(&block));
        assert_eq!(header.data_hash, data_hash, "block {n} data_hash");
        assert_eq!(hex::encode(data_hash), str_field(entry, "data_hash"));

        assert_eq!(
            hex::encode(&header.previous_hash),
            str_field(entry, "previous_hash"),
            "block {n} previous_hash vs manifest"
        );
        match previous_header_hash {
            None => assert!(header.previous_hash.is_empty(), "genesis has no previous"),
            Some(prev) => assert_eq!(header.previous_hash, prev, "block {n} links to {}", n - 1),
        }

        let hash = block_header_hash(header);
        assert_eq!(
            hex::encode(hash),
            str_field(entry, "header_hash"),
            "block {n}"
        );
        previous_header_hash = Some(hash);
    }
}

// ---------------------------------------------------------------------------------------------
// Nested layers of every transaction
// ---------------------------------------------------------------------------------------------

/// What one envelope turned out to contain, for comparison with the manifest.
struct TxFacts {
    tx_id: String,
    header_type: i32,
    creator_msp: Option<String>,
    chaincode: Option<String>,
    endorser_msps: Vec<String>,
    binding_ok: Option<bool>,
}

fn decode_identity(bytes: &[u8], what: &str) -> msp::SerializedIdentity {
    let id: msp::SerializedIdentity = roundtrip(bytes, what);
    assert!(!id.mspid.is_empty(), "{what}: empty mspid");
    assert!(
        id.id_bytes.starts_with(b"-----BEGIN"),
        "{what}: id_bytes is not PEM"
    );
    id
}

fn decode_endorser_tx(data: &[u8], channel_header: &common::ChannelHeader, facts: &mut TxFacts) {
    let what = format!("tx {}", facts.tx_id);
    let ext: protos::ChaincodeHeaderExtension = roundtrip(
        &channel_header.extension,
        &format!("{what} header extension"),
    );
    let header_cc = ext
        .chaincode_id
        .as_ref()
        .map(|id| id.name.clone())
        .unwrap_or_default();
    facts.chaincode = Some(header_cc.clone());

    let tx: protos::Transaction = roundtrip(data, &format!("{what} Transaction"));
    assert_eq!(
        tx.actions.len(),
        1,
        "{what}: Fabric clients send one action"
    );
    for (i, action) in tx.actions.iter().enumerate() {
        let what = format!("{what} action {i}");
        let _: common::SignatureHeader = roundtrip(&action.header, &format!("{what} header"));
        let cap: protos::ChaincodeActionPayload =
            roundtrip(&action.payload, &format!("{what} ChaincodeActionPayload"));

        let cpp: protos::ChaincodeProposalPayload = roundtrip(
            &cap.chaincode_proposal_payload,
            &format!("{what} ChaincodeProposalPayload"),
        );
        assert!(
            cpp.transient_map.is_empty(),
            "{what}: transient data on the ledger"
        );
        let cis: protos::ChaincodeInvocationSpec =
            roundtrip(&cpp.input, &format!("{what} ChaincodeInvocationSpec"));
        let spec = cis.chaincode_spec.as_ref().expect("invocation has a spec");
        let spec_cc = spec.chaincode_id.as_ref().map(|id| id.name.as_str());
        assert_eq!(spec_cc, Some(header_cc.as_str()), "{what}: chaincode names");
        let input = spec.input.as_ref().expect("spec has input");
        assert!(!input.args.is_empty(), "{what}: no function name");

        let action = cap.action.as_ref().expect("endorsed action");
        let prp: protos::ProposalResponsePayload = roundtrip(
            &action.proposal_response_payload,
            &format!("{what} ProposalResponsePayload"),
        );
        assert_eq!(prp.proposal_hash.len(), 32, "{what}: proposal hash");
        let cc_action: protos::ChaincodeAction =
            roundtrip(&prp.extension, &format!("{what} ChaincodeAction"));
        let response = cc_action.response.as_ref().expect("chaincode response");
        assert!(response.status < 400, "{what}: endorsed a failure");
        if !cc_action.events.is_empty() {
            let event: protos::ChaincodeEvent =
                roundtrip(&cc_action.events, &format!("{what} ChaincodeEvent"));
            assert_eq!(event.tx_id, facts.tx_id, "{what}: event tx id");
        }

        let rwset: rwset::TxReadWriteSet =
            roundtrip(&cc_action.results, &format!("{what} TxReadWriteSet"));
        for ns in &rwset.ns_rwset {
            let what = format!("{what} ns {}", ns.namespace);
            let kv: kvrwset::KvrwSet = roundtrip(&ns.rwset, &format!("{what} KVRWSet"));
            for read in &kv.reads {
                assert!(!read.key.is_empty(), "{what}: read of an empty key");
            }
            for coll in &ns.collection_hashed_rwset {
                let _: kvrwset::HashedRwSet =
                    roundtrip(&coll.hashed_rwset, &format!("{what} HashedRWSet"));
            }
        }

        for (k, endorsement) in action.endorsements.iter().enumerate() {
            let id = decode_identity(&endorsement.endorser, &format!("{what} endorser {k}"));
            facts.endorser_msps.push(id.mspid);
            assert!(!endorsement.signature.is_empty(), "{what}: unsigned");
        }
    }
}

/// Decodes one envelope down to its leaves; returns what the manifest should say about it.
fn decode_envelope(bytes: &[u8], what: &str) -> TxFacts {
    let env: common::Envelope = roundtrip(bytes, &format!("{what} Envelope"));
    let payload: common::Payload = roundtrip(&env.payload, &format!("{what} Payload"));
    let header = payload.header.as_ref().expect("payload has a header");
    let ch: common::ChannelHeader =
        roundtrip(&header.channel_header, &format!("{what} ChannelHeader"));
    let sh: common::SignatureHeader =
        roundtrip(&header.signature_header, &format!("{what} SignatureHeader"));
    assert_eq!(ch.channel_id, "mychannel", "{what}: channel");
    assert_eq!(ch.epoch, 0, "{what}: epoch");

    let mut facts = TxFacts {
        tx_id: ch.tx_id.clone(),
        header_type: ch.r#type,
        creator_msp: None,
        chaincode: None,
        endorser_msps: Vec::new(),
        binding_ok: None,
    };
    if !sh.creator.is_empty() {
        let creator = decode_identity(&sh.creator, &format!("{what} creator"));
        facts.creator_msp = Some(creator.mspid);
        facts.binding_ok = Some(compute_tx_id(&sh.nonce, &sh.creator) == ch.tx_id);
    }

    match common::HeaderType::try_from(ch.r#type) {
        Ok(common::HeaderType::EndorserTransaction) => {
            assert!(!env.signature.is_empty(), "{what}: unsigned transaction");
            decode_endorser_tx(&payload.data, &ch, &mut facts);
        }
        Ok(common::HeaderType::Config) => {
            // Go wrote the config maps unsorted; compare with the key-sorted original.
            let cfg = common::ConfigEnvelope::decode(payload.data.as_slice())
                .unwrap_or_else(|e| panic!("{what} ConfigEnvelope: {e}"));
            assert!(
                cfg.encode_to_vec() == canonical_config_envelope(&payload.data),
                "{what}: ConfigEnvelope differs from the key-sorted original"
            );
            check_config_envelope(&cfg, what);
        }
        other => panic!("{what}: unexpected header type {other:?}"),
    }
    facts
}

#[test]
fn every_transaction_decodes_layer_by_layer() {
    let m = manifest();
    let mut endorser_txs = 0;
    for n in 0..BLOCK_COUNT {
        let (_, block) = decode_block(n);
        let entry = manifest_block(&m, n);
        let txs = entry["transactions"].as_array().expect("transactions");
        let data = data_of(&block);
        assert_eq!(data.data.len(), txs.len(), "block {n} tx count");

        for (i, (bytes, expected)) in data.data.iter().zip(txs).enumerate() {
            let what = format!("block {n} tx {i}");
            let facts = decode_envelope(bytes, &what);
            assert_eq!(facts.tx_id, str_field(expected, "tx_id"), "{what}");
            assert_eq!(
                Some(i64::from(facts.header_type)),
                expected["type"].as_i64(),
                "{what}"
            );
            assert_eq!(
                facts.creator_msp.as_deref(),
                expected["creator_msp"].as_str(),
                "{what} creator"
            );
            assert_eq!(
                facts.chaincode.as_deref(),
                expected["chaincode"].as_str(),
                "{what} chaincode"
            );
            let expected_endorsers: Vec<&str> = expected["endorsements"]
                .as_array()
                .map(|a| a.iter().map(|e| str_field(e, "msp")).collect())
                .unwrap_or_default();
            assert_eq!(facts.endorser_msps, expected_endorsers, "{what} endorsers");
            if facts.header_type == common::HeaderType::EndorserTransaction as i32 {
                endorser_txs += 1;
            }
        }
    }
    assert_eq!(endorser_txs, 451, "endorser transactions in the fixture");
}

#[test]
fn tx_id_binding_holds_for_every_endorser_transaction() {
    let m = manifest();
    let mut checked = 0;
    for n in 0..BLOCK_COUNT {
        let (_, block) = decode_block(n);
        let txs = manifest_block(&m, n)["transactions"]
            .as_array()
            .expect("transactions");
        for (bytes, expected) in data_of(&block).data.iter().zip(txs) {
            let env = common::Envelope::decode(bytes.as_slice()).expect("envelope");
            let payload = common::Payload::decode(env.payload.as_slice()).expect("payload");
            let header = payload.header.expect("header");
            let ch = common::ChannelHeader::decode(header.channel_header.as_slice())
                .expect("channel header");
            if ch.r#type != common::HeaderType::EndorserTransaction as i32 {
                continue;
            }
            let sh = common::SignatureHeader::decode(header.signature_header.as_slice())
                .expect("signature header");
            assert!(!sh.nonce.is_empty(), "block {n}: empty nonce");
            let computed = compute_tx_id(&sh.nonce, &sh.creator);
            assert_eq!(computed.len(), 64);
            assert_eq!(computed, ch.tx_id, "block {n}: tx id binding");
            assert_eq!(computed, str_field(expected, "tx_id"));
            assert_eq!(expected["tx_id_binding_ok"].as_bool(), Some(true));
            // A different nonce must give a different id.
            assert_ne!(compute_tx_id(&sh.creator, &sh.nonce), computed);
            checked += 1;
        }
    }
    assert_eq!(checked, 451);
}

// ---------------------------------------------------------------------------------------------
// Block metadata
// ---------------------------------------------------------------------------------------------

#[test]
fn block_metadata_decodes_and_carries_the_validation_codes() {
    let m = manifest();
    for n in 0..BLOCK_COUNT {
        let (_, block) = decode_block(n);
        let entry = manifest_block(&m, n);
        let md = &block.metadata.as_ref().expect("metadata").metadata;
        assert_eq!(
            md.len(),
            5,
            "block {n}: Fabric allocates five metadata slots"
        );

        let sigs: common::Metadata = roundtrip(
            &md[common::BlockMetadataIndex::Signatures as usize],
            &format!("block {n} SIGNATURES"),
        );
        let obm: common::OrdererBlockMetadata =
            roundtrip(&sigs.value, &format!("block {n} OrdererBlockMetadata"));
        let last_config = obm.last_config.as_ref().map(|lc| lc.index).unwrap_or(0);
        assert_eq!(last_config, 0, "block {n}: only the genesis config exists");
        let _: common::Metadata = roundtrip(
            &obm.consenter_metadata,
            &format!("block {n} consenter metadata"),
        );
        if n == 0 {
            assert!(sigs.signatures.is_empty(), "genesis is unsigned");
        } else {
            assert_eq!(sigs.signatures.len(), 1, "block {n}: one orderer signature");
        }
        for sig in &sigs.signatures {
            let sh: common::SignatureHeader = roundtrip(
                &sig.signature_header,
                &format!("block {n} orderer sig header"),
            );
            let id = decode_identity(&sh.creator, &format!("block {n} orderer"));
            assert_eq!(id.mspid, "OrdererMSP");
            assert!(!sig.signature.is_empty());
        }

        let filter = &md[common::BlockMetadataIndex::TransactionsFilter as usize];
        let expected: Vec<u8> = entry["validation_codes"]
            .as_array()
            .expect("validation codes")
            .iter()
            .map(|c| c.as_u64().and_then(|c| u8::try_from(c).ok()).expect("code"))
            .collect();
        assert_eq!(
            filter, &expected,
            "block {n}: TRANSACTIONS_FILTER is raw codes"
        );
        for &code in filter {
            assert!(protos::TxValidationCode::try_from(i32::from(code)).is_ok());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The genesis config block
// ---------------------------------------------------------------------------------------------

/// Config value names seen in the tree; the test fails on a name it does not decode.
fn check_config_value(path: &str, key: &str, value: &common::ConfigValue, seen: &mut Vec<String>) {
    let what = format!("{path}/{key}");
    let bytes = &value.value;
    match key {
        "MSP" => {
            let cfg: msp::MspConfig = roundtrip(bytes, &what);
            assert_eq!(cfg.r#type, 0, "{what}: X.509 MSP");
            let fabric: msp::FabricMspConfig = roundtrip(&cfg.config, &format!("{what} Fabric"));
            assert!(!fabric.name.is_empty());
            assert!(!fabric.root_certs.is_empty(), "{what}: root certs");
            assert!(fabric.crypto_config.is_some(), "{what}: crypto config");
        }
        "BatchSize" => {
            let b: orderer::BatchSize = roundtrip(bytes, &what);
            assert!(b.max_message_count > 0);
            assert!(b.absolute_max_bytes >= b.preferred_max_bytes);
        }
        "BatchTimeout" => {
            let t: orderer::BatchTimeout = roundtrip(bytes, &what);
            assert!(!t.timeout.is_empty());
        }
        "ConsensusType" => {
            let ct: orderer::ConsensusType = roundtrip(bytes, &what);
            assert_eq!(ct.r#type, "etcdraft");
            let raft: etcdraft::ConfigMetadata =
                roundtrip(&ct.metadata, &format!("{what} etcdraft"));
            assert!(!raft.consenters.is_empty(), "{what}: consenters");
            for c in &raft.consenters {
                assert!(c.port > 0 && !c.host.is_empty());
                assert!(c.client_tls_cert.starts_with(b"-----BEGIN"));
            }
            let options = raft.options.as_ref().expect("raft options");
            assert!(!options.tick_interval.is_empty());
        }
        "ChannelRestrictions" => {
            let _: orderer::ChannelRestrictions = roundtrip(bytes, &what);
        }
        "Capabilities" => {
            // Go writes every map entry with both key and value, even an empty `Capability {}`
            // (`12 00`); prost leaves default values out of map entries. Same message, two
            // encodings: check the content and the exact Go form.
            let caps = common::Capabilities::decode(bytes.as_slice())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(!caps.capabilities.is_empty(), "{what}: empty");
            assert_eq!(go_encode_capabilities(&caps), *bytes, "{what}: Go form");
            let ours = caps.encode_to_vec();
            assert_eq!(ours.len() + 2 * caps.capabilities.len(), bytes.len());
            assert_eq!(
                common::Capabilities::decode(ours.as_slice()).ok(),
                Some(caps)
            );
        }
        "HashingAlgorithm" => {
            let h: common::HashingAlgorithm = roundtrip(bytes, &what);
            assert_eq!(h.name, "SHA256");
        }
        "BlockDataHashingStructure" => {
            let s: common::BlockDataHashingStructure = roundtrip(bytes, &what);
            assert_eq!(s.width, u32::MAX);
        }
        "OrdererAddresses" => {
            let _: common::OrdererAddresses = roundtrip(bytes, &what);
        }
        "Endpoints" => {
            // Per-org orderer endpoints reuse the OrdererAddresses layout.
            let e: common::OrdererAddresses = roundtrip(bytes, &what);
            assert!(!e.addresses.is_empty());
        }
        "Orderers" => {
            let _: common::Orderers = roundtrip(bytes, &what);
        }
        "Consortium" => {
            let _: common::Consortium = roundtrip(bytes, &what);
        }
        "ACLs" => {
            let acls: protos::AcLs = roundtrip(bytes, &what);
            assert!(!acls.acls.is_empty());
        }
        "AnchorPeers" => {
            let _: protos::AnchorPeers = roundtrip(bytes, &what);
        }
        other => panic!("{what}: config value {other} has no decoder in this test"),
    }
    seen.push(key.to_owned());
}

/// Encodes `Capabilities` the way Go does: each map entry carries its empty value (`12 00`).
fn go_encode_capabilities(caps: &common::Capabilities) -> Vec<u8> {
    let mut out = Vec::new();
    for name in caps.capabilities.keys() {
        let entry_len = 2 + name.len() + 2;
        assert!(entry_len < 0x80 && name.len() < 0x80, "short names only");
        out.extend_from_slice(&[0x0a, entry_len as u8, 0x0a, name.len() as u8]);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&[0x12, 0x00]);
    }
    out
}

fn check_policy(path: &str, key: &str, policy: &common::ConfigPolicy) {
    let what = format!("{path}/policies/{key}");
    let p = policy.policy.as_ref().expect("policy body");
    match common::policy::PolicyType::try_from(p.r#type) {
        Ok(common::policy::PolicyType::Signature) => {
            let env: common::SignaturePolicyEnvelope = roundtrip(&p.value, &what);
            assert!(env.rule.is_some(), "{what}: rule");
            for principal in &env.identities {
                if principal.principal_classification
                    == common::msp_principal::Classification::Role as i32
                {
                    let role: common::MspRole =
                        roundtrip(&principal.principal, &format!("{what} MSPRole"));
                    assert!(!role.msp_identifier.is_empty());
                }
            }
        }
        Ok(common::policy::PolicyType::ImplicitMeta) => {
            let imp: common::ImplicitMetaPolicy = roundtrip(&p.value, &what);
            assert!(!imp.sub_policy.is_empty());
        }
        other => panic!("{what}: unexpected policy type {other:?}"),
    }
}

fn walk_group(
    path: &str,
    group: &common::ConfigGroup,
    values: &mut Vec<String>,
    policies: &mut usize,
) {
    for (key, value) in &group.values {
        check_config_value(path, key, value, values);
    }
    for (key, policy) in &group.policies {
        check_policy(path, key, policy);
        *policies += 1;
    }
    for (key, child) in &group.groups {
        walk_group(&format!("{path}/{key}"), child, values, policies);
    }
}

fn check_config_envelope(cfg: &common::ConfigEnvelope, what: &str) {
    let config = cfg.config.as_ref().expect("config");
    let root = config.channel_group.as_ref().expect("channel group");
    let mut values = Vec::new();
    let mut policies = 0;
    walk_group("Channel", root, &mut values, &mut policies);

    let names: BTreeSet<&str> = values.iter().map(String::as_str).collect();
    for required in [
        "MSP",
        "BatchSize",
        "BatchTimeout",
        "ConsensusType",
        "Capabilities",
        "HashingAlgorithm",
        "BlockDataHashingStructure",
        "Endpoints",
    ] {
        assert!(names.contains(required), "{what}: no {required} value");
    }
    assert!(policies > 0, "{what}: no policies");
    let groups: BTreeSet<&str> = root.groups.keys().map(String::as_str).collect();
    assert!(groups.contains("Application") && groups.contains("Orderer"));

    if let Some(last_update) = &cfg.last_update {
        let _: common::Payload = roundtrip(&last_update.payload, &format!("{what} last_update"));
    }
}

#[test]
fn genesis_config_tree_roundtrips_with_sorted_maps() {
    let (_, block) = decode_block(0);
    let data = data_of(&block);
    assert_eq!(data.data.len(), 1);
    // decode_envelope walks the whole config tree and checks the ConfigEnvelope bytes.
    let facts = decode_envelope(&data.data[0], "genesis");
    assert_eq!(facts.header_type, common::HeaderType::Config as i32);
    assert_eq!(facts.tx_id.len(), 64);

    // configtxgen (Go) wrote the config maps in Go's randomised map order, so prost's
    // key-ordered encoding is a permutation of the original bytes, not a copy of them.
    let env = common::Envelope::decode(data.data[0].as_slice()).expect("envelope");
    let payload = common::Payload::decode(env.payload.as_slice()).expect("payload");
    let ours = common::ConfigEnvelope::decode(payload.data.as_slice())
        .expect("config envelope")
        .encode_to_vec();
    assert_eq!(ours.len(), payload.data.len());
    assert_ne!(
        ours, payload.data,
        "the fixture's Go map order is not sorted"
    );
    assert_eq!(ours, canonical_config_envelope(&payload.data));
    // Sorting is idempotent: canonical bytes re-encode to themselves.
    assert_eq!(canonical_config_envelope(&ours), ours);
}

// ---------------------------------------------------------------------------------------------
// Wire-level canonicalisation of config maps (test helper)
// ---------------------------------------------------------------------------------------------

/// One top-level field of an encoded message: number, tag+length prefix, and content.
struct RawField<'a> {
    number: u64,
    prefix: &'a [u8],
    content: &'a [u8],
}

fn read_varint(buf: &[u8], pos: &mut usize) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).expect("varint within bounds");
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
    }
    panic!("varint too long");
}

fn raw_fields(buf: &[u8]) -> Vec<RawField<'_>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let key = read_varint(buf, &mut pos);
        let (prefix_end, end) = match key & 7 {
            0 => {
                read_varint(buf, &mut pos);
                (pos, pos)
            }
            2 => {
                let len = usize::try_from(read_varint(buf, &mut pos)).expect("length");
                (pos, pos + len)
            }
            other => panic!("unexpected wire type {other} in a config message"),
        };
        out.push(RawField {
            number: key >> 3,
            prefix: &buf[start..prefix_end],
            content: &buf[prefix_end..end],
        });
        pos = end;
    }
    out
}

/// The string key (field 1) of an encoded map entry.
fn map_entry_key(entry: &[u8]) -> Vec<u8> {
    raw_fields(entry)
        .into_iter()
        .find(|f| f.number == 1)
        .map(|f| f.content.to_vec())
        .unwrap_or_default()
}

/// Re-emits `buf` with its fields in (number, map key) order; `fix` rewrites a field's content
/// (it must keep the length, so the original prefix stays valid).
fn reorder(
    buf: &[u8],
    is_map: impl Fn(u64) -> bool,
    fix: impl Fn(&RawField) -> Vec<u8>,
) -> Vec<u8> {
    let mut fields = raw_fields(buf);
    fields.sort_by_cached_key(|f| {
        let key = if is_map(f.number) {
            map_entry_key(f.content)
        } else {
            Vec::new()
        };
        (f.number, key)
    });
    let mut out = Vec::with_capacity(buf.len());
    for f in &fields {
        let content = fix(f);
        assert_eq!(content.len(), f.content.len(), "reordering keeps lengths");
        out.extend_from_slice(f.prefix);
        out.extend_from_slice(&content);
    }
    out
}

/// ConfigGroup with groups (2), values (3) and policies (4) sorted by key, recursively.
fn canonical_group(buf: &[u8]) -> Vec<u8> {
    reorder(
        buf,
        |n| (2..=4).contains(&n),
        |f| {
            if f.number == 2 {
                // A groups entry: key (1) and child ConfigGroup (2).
                reorder(
                    f.content,
                    |_| false,
                    |e| {
                        if e.number == 2 {
                            canonical_group(e.content)
                        } else {
                            e.content.to_vec()
                        }
                    },
                )
            } else {
                f.content.to_vec()
            }
        },
    )
}

/// ConfigEnvelope with the maps of its config tree sorted; last_update is left alone.
fn canonical_config_envelope(buf: &[u8]) -> Vec<u8> {
    reorder(
        buf,
        |_| false,
        |f| {
            if f.number == 1 {
                reorder(
                    f.content,
                    |_| false,
                    |c| {
                        if c.number == 2 {
                            canonical_group(c.content)
                        } else {
                            c.content.to_vec()
                        }
                    },
                )
            } else {
                f.content.to_vec()
            }
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Malformed input
// ---------------------------------------------------------------------------------------------

#[test]
fn truncated_blocks_fail_to_decode_without_panicking() {
    let bytes = block_bytes(1);
    let len = bytes.len();
    // Each cut lands inside a length-delimited top-level field, so decoding must fail.
    for cut in [1, 2, 10, len / 3, len / 2, len - 100, len - 1] {
        assert!(
            common::Block::decode(&bytes[..cut]).is_err(),
            "block 1 cut at {cut} of {len} decoded"
        );
    }
    // Every prefix of a whole block: decoding may succeed only at a field boundary, never panic.
    let mut failures = 0;
    for cut in 0..len {
        if common::Block::decode(&bytes[..cut]).is_err() {
            failures += 1;
        }
    }
    assert!(
        failures > len / 2,
        "only {failures} of {len} prefixes failed"
    );
}

#[test]
fn truncated_nested_layers_fail_to_decode() {
    let (_, block) = decode_block(1);
    let env_bytes = &data_of(&block).data[0];
    let env = common::Envelope::decode(env_bytes.as_slice()).expect("envelope");
    assert!(common::Envelope::decode(&env_bytes[..env_bytes.len() - 1]).is_err());
    let payload = &env.payload;
    assert!(common::Payload::decode(&payload[..payload.len() / 2]).is_err());
    let decoded = common::Payload::decode(payload.as_slice()).expect("payload");
    let data = &decoded.data;
    assert!(protos::Transaction::decode(&data[..data.len() - 1]).is_err());

    // Garbage: an invalid wire type, an over-long varint, a length past the end.
    assert!(common::Block::decode(&[0x0f][..]).is_err());
    assert!(
        common::BlockHeader::decode(
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ][..]
        )
        .is_err()
    );
    assert!(common::Envelope::decode(&[0x0a, 0x05, 0x01][..]).is_err());
}
