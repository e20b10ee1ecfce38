//! The validation core against real and crafted blocks.
//!
//! - Replays of the real Fabric 2.5.5 chain in `tests/fixtures/fabric-2.5.5-chain`: every
//!   orderer signature verifies and every validation code equals the one the Fabric peer
//!   recorded, both over the in-memory state model and over a real redb `Ledger`.
//! - Tampered copies of fixture blocks (bad creator and orderer signatures, broken hash chain,
//!   duplicates, garbage bytes).
//! - A synthetic network: the fixture's channel config with Org1MSP and OrdererMSP replaced by
//!   CAs generated here, so transactions, endorsements, config updates and blocks can be signed
//!   and every other rule exercised (endorsement policies, tx-id and proposal binding, MVCC,
//!   phantoms, namespaces, collections, config transactions).

// A panic is how a test reports failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use gridledger_chaincode::{KeyEndorsementPolicy, RoleType, VALIDATION_PARAMETER};
use gridledger_channels::config::ChannelConfig;
use gridledger_channels::genesis::config_from_block;
use gridledger_identity::material::{CertificateAuthority, LeafSpec, Seed};
use gridledger_identity::{Role, SigningIdentity};
use gridledger_ledger::Ledger;
use gridledger_peer::validation::{
    BlockContext, BlockRejected, ChaincodeDefinition, CommittedState, EndorsementPolicy,
    InMemoryState, LIFECYCLE_ENDORSEMENT_POLICY, LedgerState, ValidatedBlock, decode_metadata,
    hashed_key, hashed_namespace, validate_block, verify_block_signatures,
};
use gridledger_proto::protos::TxValidationCode as Code;
use gridledger_proto::{
    block_data_hash, block_header_bytes, block_header_hash, common, compute_tx_id, kvrwset, msp,
    protos, rwset,
};
use prost::Message;
use ring::digest;

// ---------------------------------------------------------------------------------------------
// The Fabric fixture.

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/fabric-2.5.5-chain")
}

const LAST_BLOCK: u64 = 80;

fn load_block(number: u64) -> common::Block {
    let bytes = std::fs::read(fixture_dir().join(format!("block{number:03}.pb"))).unwrap();
    common::Block::decode(bytes.as_slice()).unwrap()
}

/// The validation codes the Fabric peer recorded for every block, from manifest.json.
fn recorded_codes() -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(fixture_dir().join("manifest.json")).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    manifest["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            b["validation_codes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| u8::try_from(c.as_u64().unwrap()).unwrap())
                .collect()
        })
        .collect()
}

/// `_lifecycle` by Fabric's rule, and the three application chaincodes of the fixture with
/// the channel's default endorsement policy.
fn chaincodes(channel: &ChannelConfig) -> BTreeMap<String, ChaincodeDefinition> {
    let mut out = BTreeMap::new();
    let lifecycle = ChaincodeDefinition::lifecycle(channel);
    out.insert(lifecycle.name.clone(), lifecycle);
    for name in ["asset", "basic", "hcc"] {
        out.insert(
            name.to_string(),
            ChaincodeDefinition {
                collections: Default::default(),
                name: name.to_string(),
                version: "1.0".to_string(),
                endorsement: EndorsementPolicy::ChannelPolicy(
                    "/Channel/Application/Endorsement".to_string(),
                ),
            },
        );
    }
    out
}

fn codes_of(validated: &ValidatedBlock) -> Vec<u8> {
    validated.transactions_filter()
}

fn header_hash(block: &common::Block) -> Vec<u8> {
    block_header_hash(block.header.as_ref().unwrap()).to_vec()
}

fn ctx<'a>(
    channel: &'a ChannelConfig,
    chaincodes: &'a BTreeMap<String, ChaincodeDefinition>,
    number: u64,
    previous: &'a [u8],
) -> BlockContext<'a> {
    BlockContext {
        channel,
        chaincodes,
        expected_number: number,
        previous_header_hash: previous,
    }
}

/// The fixture chain: its channel, definitions, and the in-memory state after `upto` blocks.
struct Replay {
    channel: ChannelConfig,
    chaincodes: BTreeMap<String, ChaincodeDefinition>,
    state: InMemoryState,
    previous: Vec<u8>,
}

fn replay_fixture(upto: u64) -> Replay {
    let genesis = load_block(0);
    let channel = ChannelConfig::from_block(&genesis).unwrap();
    let chaincodes = chaincodes(&channel);
    let mut state = InMemoryState::new();
    let mut previous = header_hash(&genesis);
    for number in 1..=upto {
        let block = load_block(number);
        let validated = validate_block(
            &block,
            &ctx(&channel, &chaincodes, number, &previous),
            &state,
        )
        .unwrap();
        state.apply(number, &validated.updates);
        previous = header_hash(&block);
    }
    Replay {
        channel,
        chaincodes,
        state,
        previous,
    }
}

/// A copy of `block` whose data is replaced, with the header's data hash recomputed (so only
/// the transactions are wrong, not the block).
fn with_data(block: &common::Block, data: Vec<Vec<u8>>) -> common::Block {
    let mut out = block.clone();
    let data = common::BlockData { data };
    out.header.as_mut().unwrap().data_hash = block_data_hash(&data).to_vec();
    out.data = Some(data);
    out
}

fn envelope_of(block: &common::Block, index: usize) -> common::Envelope {
    common::Envelope::decode(block.data.as_ref().unwrap().data[index].as_slice()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Replays of the real chain.

#[test]
fn fabric_chain_replays_with_the_recorded_validation_codes() {
    let recorded = recorded_codes();
    assert_eq!(recorded.len() as u64, LAST_BLOCK + 1);
    let genesis = load_block(0);
    let channel = ChannelConfig::from_block(&genesis).unwrap();
    let chaincodes = chaincodes(&channel);
    assert_eq!(
        chaincodes["_lifecycle"].endorsement,
        EndorsementPolicy::ChannelPolicy(LIFECYCLE_ENDORSEMENT_POLICY.to_string()),
        "the fixture channel defines LifecycleEndorsement",
    );

    let mut state = InMemoryState::new();
    let mut previous = header_hash(&genesis);
    let mut conflicts = 0;
    for number in 1..=LAST_BLOCK {
        let block = load_block(number);
        let ctx = ctx(&channel, &chaincodes, number, &previous);
        verify_block_signatures(&block, &ctx).unwrap();
        let validated = validate_block(&block, &ctx, &state).unwrap();
        assert_eq!(
            codes_of(&validated),
            recorded[number as usize],
            "codes of block {number}"
        );
        // The block with our codes is exactly the block the Fabric peer committed.
        assert_eq!(validated.with_codes(&block), block, "block {number}");
        assert!(validated.config.is_none());
        // Every transaction is indexed; only valid ones write.
        assert_eq!(validated.updates.txs.len(), validated.codes.len());
        for (tx, code) in validated.updates.txs.iter().zip(&validated.codes) {
            assert_eq!(tx.validation_code, *code as u8);
            if *code != Code::Valid {
                assert!(tx.writes.is_empty(), "invalid tx {} writes", tx.tx_id);
            }
        }
        conflicts += validated
            .codes
            .iter()
            .filter(|c| **c == Code::MvccReadConflict)
            .count();
        state.apply(number, &validated.updates);
        previous = header_hash(&block);
    }
    assert_eq!(conflicts, 3 * 5 + 1, "blocks 37, 56, 63 and 79");
    // The lifecycle approvals wrote private-data hashes that the commits read back.
    let implicit = hashed_namespace("_lifecycle", "_implicit_org_Org1MSP");
    assert!(!state.is_empty(&implicit));
    // Our key hashing is Fabric's: the hash of Org1's private approval of `basic` (Fabric's
    // key `namespaces/metadata/basic#1` in the implicit collection) is where Fabric put it.
    let key_hash = gridledger_chaincode::private::hash(b"namespaces/metadata/basic#1");
    assert!(
        state
            .get(
                &implicit,
                &gridledger_chaincode::private::hashed_key(&key_hash)
            )
            .is_some(),
        "Fabric's hashed key of Org1's approval of basic"
    );
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "gridledger-peer-validation-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn fabric_chain_replays_through_a_real_ledger() {
    let recorded = recorded_codes();
    let dir = TempDir::new("ledger-replay");
    let genesis = load_block(0);
    let channel = ChannelConfig::from_block(&genesis).unwrap();
    let chaincodes = chaincodes(&channel);
    let ledger = Ledger::open(&dir.0, channel.channel_id()).unwrap();
    ledger.append_block(&genesis).unwrap();

    for number in 1..=LAST_BLOCK {
        let block = load_block(number);
        let info = ledger.info();
        let ctx = ctx(&channel, &chaincodes, info.height, &info.current_block_hash);
        verify_block_signatures(&block, &ctx).unwrap();
        let snapshot = ledger.snapshot().unwrap();
        let validated =
            validate_block(&block, &ctx, &LedgerState::new(&snapshot, &ledger)).unwrap();
        drop(snapshot);
        assert_eq!(
            codes_of(&validated),
            recorded[number as usize],
            "block {number}"
        );
        ledger
            .commit_block(&validated.with_codes(&block), &validated.updates)
            .unwrap();
    }
    assert_eq!(ledger.height(), LAST_BLOCK + 1);

    // The ledger's world state is the in-memory model's.
    let model = replay_fixture(LAST_BLOCK);
    let snapshot = ledger.snapshot().unwrap();
    let real = LedgerState::new(&snapshot, &ledger);
    for namespace in [
        "_lifecycle".to_string(),
        "basic".to_string(),
        "hcc".to_string(),
        "asset".to_string(),
        hashed_namespace("_lifecycle", "_implicit_org_Org1MSP"),
    ] {
        let in_ledger = real.range_versions(&namespace, "", "").unwrap();
        assert!(!in_ledger.is_empty(), "{namespace} has keys");
        assert_eq!(
            in_ledger,
            model.state.range_versions(&namespace, "", "").unwrap(),
            "{namespace}"
        );
        // Paging gives the same keys as one read.
        assert_eq!(
            real.range_versions_up_to(&namespace, "", "", 2).unwrap(),
            in_ledger[..in_ledger.len().min(2)]
        );
    }

    // A transaction that is already in the ledger is a duplicate in a later block.
    let replayed = envelope_of(&load_block(LAST_BLOCK), 0).encode_to_vec();
    let info = ledger.info();
    let mut next = with_data(&load_block(LAST_BLOCK), vec![replayed]);
    {
        let header = next.header.as_mut().unwrap();
        header.number = info.height;
        header.previous_hash = info.current_block_hash.clone();
    }
    let ctx = ctx(&channel, &chaincodes, info.height, &info.current_block_hash);
    let validated = validate_block(&next, &ctx, &real).unwrap();
    assert_eq!(validated.codes, vec![Code::DuplicateTxid]);
}

// ---------------------------------------------------------------------------------------------
// Tampered fixture blocks.

/// Block 38 holds one valid `basic` transaction; returns it with the state before it.
fn block_38() -> (Replay, common::Block) {
    let replay = replay_fixture(37);
    (replay, load_block(38))
}

fn validate_with(replay: &Replay, block: &common::Block) -> ValidatedBlock {
    let number = block.header.as_ref().unwrap().number;
    validate_block(
        block,
        &ctx(
            &replay.channel,
            &replay.chaincodes,
            number,
            &replay.previous,
        ),
        &replay.state,
    )
    .unwrap()
}

#[test]
fn untampered_block_38_is_valid() {
    let (replay, block) = block_38();
    assert_eq!(validate_with(&replay, &block).codes, vec![Code::Valid]);
}

#[test]
fn flipped_creator_signature_is_bad_creator_signature() {
    let (replay, block) = block_38();
    let mut envelope = envelope_of(&block, 0);
    let last = envelope.signature.len() - 1;
    envelope.signature[last] ^= 0x01;
    let tampered = with_data(&block, vec![envelope.encode_to_vec()]);
    let validated = validate_with(&replay, &tampered);
    assert_eq!(validated.codes, vec![Code::BadCreatorSignature]);
    // An unauthenticated tx id is not indexed, and nothing is written.
    assert!(validated.updates.txs.is_empty());
}

/// Re-encodes the envelope's payload after `change`; the creator's signature no longer covers
/// it (there is no key to re-sign a Fabric transaction with).
fn edit_payload(envelope: &mut common::Envelope, change: impl FnOnce(&mut common::Payload)) {
    let mut payload = common::Payload::decode(envelope.payload.as_slice()).unwrap();
    change(&mut payload);
    envelope.payload = payload.encode_to_vec();
}

#[test]
fn changed_tx_id_fails_the_creator_signature_first() {
    // Fabric checks the creator's signature before the tx-id binding, so a changed tx id in a
    // transaction nobody can re-sign is BAD_CREATOR_SIGNATURE (the synthetic network below
    // shows BAD_PROPOSAL_TXID for a signed one).
    let (replay, block) = block_38();
    let mut envelope = envelope_of(&block, 0);
    edit_payload(&mut envelope, |payload| {
        let header = payload.header.as_mut().unwrap();
        let mut channel_header =
            common::ChannelHeader::decode(header.channel_header.as_slice()).unwrap();
        channel_header.tx_id = "0".repeat(64);
        header.channel_header = channel_header.encode_to_vec();
    });
    let tampered = with_data(&block, vec![envelope.encode_to_vec()]);
    assert_eq!(
        validate_with(&replay, &tampered).codes,
        vec![Code::BadCreatorSignature]
    );
}

#[test]
fn corrupted_endorsement_in_a_fabric_block_fails_the_creator_signature_first() {
    // The endorsement lives inside the signed payload: corrupting it breaks the creator's
    // signature, which Fabric checks first.
    let (replay, block) = block_38();
    let mut envelope = envelope_of(&block, 0);
    edit_payload(&mut envelope, |payload| {
        let mut tx = protos::Transaction::decode(payload.data.as_slice()).unwrap();
        let mut cap =
            protos::ChaincodeActionPayload::decode(tx.actions[0].payload.as_slice()).unwrap();
        let endorsement = &mut cap.action.as_mut().unwrap().endorsements[0];
        let last = endorsement.signature.len() - 1;
        endorsement.signature[last] ^= 0x01;
        tx.actions[0].payload = cap.encode_to_vec();
        payload.data = tx.encode_to_vec();
    });
    let tampered = with_data(&block, vec![envelope.encode_to_vec()]);
    assert_eq!(
        validate_with(&replay, &tampered).codes,
        vec![Code::BadCreatorSignature]
    );
}

#[test]
fn repeated_transaction_in_a_block_is_duplicate_txid() {
    let (replay, block) = block_38();
    let tx = block.data.as_ref().unwrap().data[0].clone();
    let doubled = with_data(&block, vec![tx.clone(), tx]);
    let validated = validate_with(&replay, &doubled);
    assert_eq!(validated.codes, vec![Code::Valid, Code::DuplicateTxid]);
    // Both are recorded (the ledger keeps the first); only the first writes.
    assert_eq!(validated.updates.txs.len(), 2);
    assert!(!validated.updates.txs[0].writes.is_empty());
    assert!(validated.updates.txs[1].writes.is_empty());
}

#[test]
fn committed_tx_id_is_duplicate_txid() {
    let replay = replay_fixture(38);
    let again = load_block(38).data.unwrap().data[0].clone();
    let mut block = with_data(&load_block(39), vec![again]);
    block.header.as_mut().unwrap().previous_hash = replay.previous.clone();
    assert_eq!(
        validate_with(&replay, &block).codes,
        vec![Code::DuplicateTxid]
    );
}

#[test]
fn malformed_envelopes_get_fabric_codes() {
    let (replay, block) = block_38();
    let good = envelope_of(&block, 0);
    let payload = common::Payload::decode(good.payload.as_slice()).unwrap();
    let header = payload.header.clone().unwrap();

    let envelope = |payload: Vec<u8>| {
        common::Envelope {
            payload,
            signature: good.signature.clone(),
        }
        .encode_to_vec()
    };
    let with_header = |header: common::Header| {
        envelope(
            common::Payload {
                header: Some(header),
                data: payload.data.clone(),
            }
            .encode_to_vec(),
        )
    };
    let mut channel_header =
        common::ChannelHeader::decode(header.channel_header.as_slice()).unwrap();
    channel_header.r#type = common::HeaderType::Message as i32;
    let message_type = with_header(common::Header {
        channel_header: channel_header.encode_to_vec(),
        signature_header: header.signature_header.clone(),
    });

    let cases: Vec<(&str, Vec<u8>, Code)> = vec![
        ("empty entry", Vec::new(), Code::NilEnvelope),
        ("not an envelope", vec![0xff; 7], Code::InvalidOtherReason),
        (
            "payload not a payload",
            envelope(vec![0xff; 7]),
            Code::BadPayload,
        ),
        (
            "payload without header",
            envelope(Vec::new()),
            Code::BadCommonHeader,
        ),
        (
            "channel header garbage",
            with_header(common::Header {
                channel_header: vec![0xff; 3],
                signature_header: header.signature_header.clone(),
            }),
            Code::BadCommonHeader,
        ),
        (
            "no signature header",
            with_header(common::Header {
                channel_header: header.channel_header.clone(),
                signature_header: Vec::new(),
            }),
            Code::BadCommonHeader,
        ),
        ("MESSAGE header type", message_type, Code::BadCommonHeader),
    ];
    for (what, bytes, code) in cases {
        let tampered = with_data(&block, vec![bytes]);
        assert_eq!(
            validate_with(&replay, &tampered).codes,
            vec![code],
            "{what}"
        );
    }
}

#[test]
fn arbitrary_bytes_never_panic_and_never_validate() {
    let (replay, block) = block_38();
    let good = block.data.as_ref().unwrap().data[0].clone();
    // Every truncation and a spread of single-byte corruptions of a real transaction, plus
    // pseudo-random byte strings.
    let mut entries: Vec<Vec<u8>> = (0..good.len())
        .step_by(7)
        .map(|n| good[..n].to_vec())
        .collect();
    for position in (0..good.len()).step_by(13) {
        let mut corrupted = good.clone();
        corrupted[position] ^= 0x5a;
        entries.push(corrupted);
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for len in [1usize, 2, 10, 100, 1000] {
        let mut bytes = Vec::with_capacity(len);
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            bytes.push(seed as u8);
        }
        entries.push(bytes);
    }
    let count = entries.len();
    let tampered = with_data(&block, entries);
    let validated = validate_with(&replay, &tampered);
    assert_eq!(validated.codes.len(), count);
    assert!(validated.codes.iter().all(|c| *c != Code::Valid));
}

#[test]
fn broken_orderer_signature_rejects_the_block() {
    let (replay, block) = block_38();
    let ctx = ctx(&replay.channel, &replay.chaincodes, 38, &replay.previous);
    verify_block_signatures(&block, &ctx).unwrap();

    let mut tampered = block.clone();
    let slot = &mut tampered.metadata.as_mut().unwrap().metadata[0];
    let mut metadata = common::Metadata::decode(slot.as_slice()).unwrap();
    let last = metadata.signatures[0].signature.len() - 1;
    metadata.signatures[0].signature[last] ^= 0x01;
    *slot = metadata.encode_to_vec();
    let err = verify_block_signatures(&tampered, &ctx).unwrap_err();
    assert!(
        matches!(err, BlockRejected::BadOrdererSignature { number: 38, .. }),
        "{err}"
    );

    let mut unsigned = block.clone();
    unsigned.metadata.as_mut().unwrap().metadata[0] = common::Metadata::default().encode_to_vec();
    let err = verify_block_signatures(&unsigned, &ctx).unwrap_err();
    assert!(
        matches!(err, BlockRejected::BadOrdererSignature { .. }),
        "{err}"
    );

    let mut no_metadata = block;
    no_metadata.metadata = None;
    let err = verify_block_signatures(&no_metadata, &ctx).unwrap_err();
    assert!(
        matches!(err, BlockRejected::BadSignatureMetadata { .. }),
        "{err}"
    );
}

#[test]
fn wrong_number_previous_hash_or_data_hash_rejects_the_block() {
    let (replay, block) = block_38();
    let check = |ctx: &BlockContext<'_>, block: &common::Block| {
        let signed = verify_block_signatures(block, ctx).unwrap_err();
        let validated = validate_block(block, ctx, &replay.state).unwrap_err();
        (signed, validated)
    };

    let wrong_number = ctx(&replay.channel, &replay.chaincodes, 39, &replay.previous);
    let (a, b) = check(&wrong_number, &block);
    for err in [a, b] {
        assert!(
            matches!(
                err,
                BlockRejected::WrongNumber {
                    expected: 39,
                    got: 38
                }
            ),
            "{err}"
        );
    }

    let other_parent = header_hash(&load_block(36));
    let wrong_parent = ctx(&replay.channel, &replay.chaincodes, 38, &other_parent);
    let (a, b) = check(&wrong_parent, &block);
    for err in [a, b] {
        assert!(
            matches!(err, BlockRejected::BrokenHashChain { number: 38, .. }),
            "{err}"
        );
    }

    let right = ctx(&replay.channel, &replay.chaincodes, 38, &replay.previous);
    let mut swapped = block.clone();
    swapped.data = load_block(39).data;
    let (a, b) = check(&right, &swapped);
    for err in [a, b] {
        assert!(
            matches!(err, BlockRejected::BadDataHash { number: 38, .. }),
            "{err}"
        );
    }

    let mut headless = block;
    headless.header = None;
    let (a, b) = check(&right, &headless);
    for err in [a, b] {
        assert!(matches!(err, BlockRejected::MissingHeader), "{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// A synthetic network on the fixture's channel config, with keys we hold.

/// Transactions are stamped mid-2025; certificates are valid around it.
const NOW: i64 = 1_750_000_000;
const DAY: i64 = 86_400;
const CHANNEL: &str = "mychannel";

struct Net {
    channel: ChannelConfig,
    chaincodes: BTreeMap<String, ChaincodeDefinition>,
    peer: SigningIdentity,
    admin: SigningIdentity,
    client: SigningIdentity,
    orderer: SigningIdentity,
    /// A client whose certificate starts being valid a day after `NOW`.
    future_client: SigningIdentity,
}

fn ca(msp_id: &str) -> CertificateAuthority {
    let seed = Seed::from_text(&format!("validation-tests/{msp_id}"));
    CertificateAuthority::new_root(
        &seed,
        msp_id,
        &format!("ca.{msp_id}"),
        NOW - 30 * DAY,
        NOW + 3650 * DAY,
    )
    .unwrap()
}

fn issue(
    ca: &CertificateAuthority,
    msp_id: &str,
    name: &str,
    role: Role,
    not_before: i64,
) -> SigningIdentity {
    let issued = ca
        .issue(
            msp_id,
            &LeafSpec::new(name, Some(role), not_before, NOW + 365 * DAY),
        )
        .unwrap();
    SigningIdentity::from_pem(
        msp_id,
        issued.cert_pem.as_bytes(),
        issued.key_pem.as_bytes(),
    )
    .unwrap()
}

/// An `msp.MSPConfig` for `msp_id` rooted at `ca`, NodeOUs on.
fn msp_value(msp_id: &str, ca: &CertificateAuthority) -> Vec<u8> {
    let ou = |name: &str| {
        Some(msp::FabricOuIdentifier {
            certificate: Vec::new(),
            organizational_unit_identifier: name.to_string(),
        })
    };
    let fabric = msp::FabricMspConfig {
        name: msp_id.to_string(),
        root_certs: vec![ca.cert_pem().as_bytes().to_vec()],
        fabric_node_ous: Some(msp::FabricNodeOUs {
            enable: true,
            client_ou_identifier: ou("client"),
            peer_ou_identifier: ou("peer"),
            admin_ou_identifier: ou("admin"),
            orderer_ou_identifier: ou("orderer"),
        }),
        ..Default::default()
    };
    msp::MspConfig {
        r#type: 0,
        config: fabric.encode_to_vec(),
    }
    .encode_to_vec()
}

/// The fixture's config with its two organizations' MSPs rooted at our CAs.
fn synthetic_config() -> common::Config {
    let (_, mut config) = config_from_block(&load_block(0)).unwrap();
    let org1 = ca("Org1MSP");
    let orderer = ca("OrdererMSP");
    let root = config.channel_group.as_mut().unwrap();
    let set = |group: &mut common::ConfigGroup, value: Vec<u8>| {
        group.values.get_mut("MSP").unwrap().value = value;
    };
    set(
        root.groups
            .get_mut("Application")
            .unwrap()
            .groups
            .get_mut("Org1MSP")
            .unwrap(),
        msp_value("Org1MSP", &org1),
    );
    set(
        root.groups
            .get_mut("Orderer")
            .unwrap()
            .groups
            .get_mut("OrdererOrg")
            .unwrap(),
        msp_value("OrdererMSP", &orderer),
    );
    config
}

fn net() -> Net {
    let org1 = ca("Org1MSP");
    let orderer = ca("OrdererMSP");
    let channel = ChannelConfig::from_config(CHANNEL, &synthetic_config()).unwrap();
    let mut chaincodes = chaincodes(&channel);
    // A chaincode with an explicit signature policy: a peer and an admin of Org1.
    chaincodes.insert(
        "strict".to_string(),
        ChaincodeDefinition {
            collections: Default::default(),
            name: "strict".to_string(),
            version: "1".to_string(),
            endorsement: EndorsementPolicy::Signature(
                gridledger_channels::policy::parse("AND('Org1MSP.peer', 'Org1MSP.admin')").unwrap(),
            ),
        },
    );
    // Two distinct peers of Org1.
    chaincodes.insert(
        "pair".to_string(),
        ChaincodeDefinition {
            collections: Default::default(),
            name: "pair".to_string(),
            version: "1".to_string(),
            endorsement: EndorsementPolicy::Signature(
                gridledger_channels::policy::parse("OutOf(2, 'Org1MSP.peer', 'Org1MSP.peer')")
                    .unwrap(),
            ),
        },
    );
    Net {
        channel,
        chaincodes,
        peer: issue(&org1, "Org1MSP", "peer0.org1", Role::Peer, NOW - DAY),
        admin: issue(&org1, "Org1MSP", "Admin@org1", Role::Admin, NOW - DAY),
        client: issue(&org1, "Org1MSP", "User1@org1", Role::Client, NOW - DAY),
        orderer: issue(&orderer, "OrdererMSP", "orderer0", Role::Orderer, NOW - DAY),
        future_client: issue(&org1, "Org1MSP", "Later@org1", Role::Client, NOW + DAY),
    }
}

fn version(block_num: u64, tx_num: u64) -> kvrwset::Version {
    kvrwset::Version { block_num, tx_num }
}

/// One namespace's read-write set.
#[derive(Default, Clone)]
struct Ns {
    name: String,
    kv: kvrwset::KvrwSet,
    collections: Vec<(String, kvrwset::HashedRwSet)>,
}

impl Ns {
    fn new(name: &str) -> Ns {
        Ns {
            name: name.to_string(),
            ..Default::default()
        }
    }
    fn read(mut self, key: &str, at: Option<kvrwset::Version>) -> Ns {
        self.kv.reads.push(kvrwset::KvRead {
            key: key.to_string(),
            version: at,
        });
        self
    }
    fn write(mut self, key: &str, value: &[u8]) -> Ns {
        self.kv.writes.push(kvrwset::KvWrite {
            key: key.to_string(),
            is_delete: false,
            value: value.to_vec(),
        });
        self
    }
    fn delete(mut self, key: &str) -> Ns {
        self.kv.writes.push(kvrwset::KvWrite {
            key: key.to_string(),
            is_delete: true,
            value: Vec::new(),
        });
        self
    }
    fn validation_parameter(mut self, key: &str, policy: &[u8]) -> Ns {
        self.kv.metadata_writes.push(kvrwset::KvMetadataWrite {
            key: key.to_string(),
            entries: vec![kvrwset::KvMetadataEntry {
                name: VALIDATION_PARAMETER.to_string(),
                value: policy.to_vec(),
            }],
        });
        self
    }
    fn range(mut self, start: &str, end: &str, exhausted: bool, reads: Vec<kvrwset::KvRead>) -> Ns {
        self.kv.range_queries_info.push(kvrwset::RangeQueryInfo {
            start_key: start.to_string(),
            end_key: end.to_string(),
            itr_exhausted: exhausted,
            reads_info: Some(kvrwset::range_query_info::ReadsInfo::RawReads(
                kvrwset::QueryReads { kv_reads: reads },
            )),
        });
        self
    }
    /// A hashed write of private `key`, in the collection's entry.
    fn hashed_write(mut self, collection: &str, key: &str, value: &[u8]) -> Ns {
        let write = kvrwset::KvWriteHash {
            key_hash: sha256(key.as_bytes()),
            is_delete: false,
            value_hash: sha256(value),
            is_purge: false,
        };
        match self.collections.iter_mut().find(|(c, _)| c == collection) {
            Some((_, hashed)) => hashed.hashed_writes.push(write),
            None => self.collections.push((
                collection.to_string(),
                kvrwset::HashedRwSet {
                    hashed_writes: vec![write],
                    ..Default::default()
                },
            )),
        }
        self
    }
    /// A `VALIDATION_PARAMETER` metadata write of private `key`, in the collection's entry.
    fn hashed_validation_parameter(mut self, collection: &str, key: &str, policy: &[u8]) -> Ns {
        let write = kvrwset::KvMetadataWriteHash {
            key_hash: sha256(key.as_bytes()),
            entries: vec![kvrwset::KvMetadataEntry {
                name: VALIDATION_PARAMETER.to_string(),
                value: policy.to_vec(),
            }],
        };
        match self.collections.iter_mut().find(|(c, _)| c == collection) {
            Some((_, hashed)) => hashed.metadata_writes.push(write),
            None => self.collections.push((
                collection.to_string(),
                kvrwset::HashedRwSet {
                    metadata_writes: vec![write],
                    ..Default::default()
                },
            )),
        }
        self
    }
    fn hashed_read(mut self, collection: &str, key: &str, at: Option<kvrwset::Version>) -> Ns {
        let hashed = kvrwset::HashedRwSet {
            hashed_reads: vec![kvrwset::KvReadHash {
                key_hash: sha256(key.as_bytes()),
                version: at,
            }],
            ..Default::default()
        };
        self.collections.push((collection.to_string(), hashed));
        self
    }
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, bytes).as_ref().to_vec()
}

fn kv_read(key: &str, at: kvrwset::Version) -> kvrwset::KvRead {
    kvrwset::KvRead {
        key: key.to_string(),
        version: Some(at),
    }
}

fn results(namespaces: &[Ns]) -> Vec<u8> {
    rwset::TxReadWriteSet {
        data_model: 0,
        ns_rwset: namespaces
            .iter()
            .map(|ns| rwset::NsReadWriteSet {
                namespace: ns.name.clone(),
                rwset: ns.kv.encode_to_vec(),
                collection_hashed_rwset: ns
                    .collections
                    .iter()
                    .map(|(name, hashed)| rwset::CollectionHashedReadWriteSet {
                        collection_name: name.clone(),
                        hashed_rwset: hashed.encode_to_vec(),
                        pvt_rwset_hash: Vec::new(),
                    })
                    .collect(),
            })
            .collect(),
    }
    .encode_to_vec()
}

static NONCE: AtomicU64 = AtomicU64::new(1);

/// An endorser transaction as a Fabric client and peers build it, with knobs to break it.
struct Tx<'a> {
    creator: &'a SigningIdentity,
    endorsers: Vec<&'a SigningIdentity>,
    chaincode: String,
    results: Vec<u8>,
    channel_id: String,
    seconds: i64,
    tx_id: Option<String>,
    proposal_hash: Option<Vec<u8>>,
    corrupt_endorsement: bool,
    event_chaincode: Option<String>,
}

impl<'a> Tx<'a> {
    fn new(net: &'a Net, chaincode: &str, namespaces: &[Ns]) -> Tx<'a> {
        Tx {
            creator: &net.client,
            endorsers: vec![&net.peer],
            chaincode: chaincode.to_string(),
            results: results(namespaces),
            channel_id: CHANNEL.to_string(),
            seconds: NOW,
            tx_id: None,
            proposal_hash: None,
            corrupt_endorsement: false,
            event_chaincode: None,
        }
    }

    fn build(&self) -> Vec<u8> {
        let nonce = NONCE
            .fetch_add(1, Ordering::Relaxed)
            .to_be_bytes()
            .repeat(3);
        let creator = self.creator.serialized().to_vec();
        let tx_id = self
            .tx_id
            .clone()
            .unwrap_or_else(|| compute_tx_id(&nonce, &creator));
        let chaincode_id = protos::ChaincodeId {
            name: self.chaincode.clone(),
            ..Default::default()
        };
        let channel_header = common::ChannelHeader {
            r#type: common::HeaderType::EndorserTransaction as i32,
            version: 0,
            timestamp: Some(prost_types::Timestamp {
                seconds: self.seconds,
                nanos: 0,
            }),
            channel_id: self.channel_id.clone(),
            tx_id: tx_id.clone(),
            epoch: 0,
            extension: protos::ChaincodeHeaderExtension {
                chaincode_id: Some(chaincode_id.clone()),
            }
            .encode_to_vec(),
            tls_cert_hash: Vec::new(),
        }
        .encode_to_vec();
        let signature_header = common::SignatureHeader {
            creator: creator.clone(),
            nonce,
        }
        .encode_to_vec();
        let proposal_payload = protos::ChaincodeProposalPayload {
            input: b"invocation spec".to_vec(),
            ..Default::default()
        }
        .encode_to_vec();
        let proposal_hash = self.proposal_hash.clone().unwrap_or_else(|| {
            sha256(
                &[
                    channel_header.as_slice(),
                    &signature_header,
                    &proposal_payload,
                ]
                .concat(),
            )
        });
        let events = self
            .event_chaincode
            .as_ref()
            .map(|cc| {
                protos::ChaincodeEvent {
                    chaincode_id: cc.clone(),
                    tx_id: tx_id.clone(),
                    event_name: "changed".to_string(),
                    payload: Vec::new(),
                }
                .encode_to_vec()
            })
            .unwrap_or_default();
        let action = protos::ChaincodeAction {
            results: self.results.clone(),
            events,
            response: Some(protos::Response {
                status: 200,
                ..Default::default()
            }),
            chaincode_id: Some(protos::ChaincodeId {
                version: "1.0".to_string(),
                ..chaincode_id
            }),
        };
        let response_payload = protos::ProposalResponsePayload {
            proposal_hash,
            extension: action.encode_to_vec(),
        }
        .encode_to_vec();
        let endorsements = self
            .endorsers
            .iter()
            .map(|e| {
                let mut signature = e.sign(&[response_payload.as_slice(), e.serialized()].concat());
                if self.corrupt_endorsement {
                    let last = signature.len() - 1;
                    signature[last] ^= 0x01;
                }
                protos::Endorsement {
                    endorser: e.serialized().to_vec(),
                    signature,
                }
            })
            .collect();
        let transaction = protos::Transaction {
            actions: vec![protos::TransactionAction {
                header: signature_header.clone(),
                payload: protos::ChaincodeActionPayload {
                    chaincode_proposal_payload: proposal_payload,
                    action: Some(protos::ChaincodeEndorsedAction {
                        proposal_response_payload: response_payload,
                        endorsements,
                    }),
                }
                .encode_to_vec(),
            }],
        };
        let payload = common::Payload {
            header: Some(common::Header {
                channel_header,
                signature_header,
            }),
            data: transaction.encode_to_vec(),
        }
        .encode_to_vec();
        common::Envelope {
            signature: self.creator.sign(&payload),
            payload,
        }
        .encode_to_vec()
    }
}

/// A block as the ordering service cuts and signs it.
fn signed_block(
    number: u64,
    previous: &[u8],
    data: Vec<Vec<u8>>,
    orderer: &SigningIdentity,
) -> common::Block {
    let data = common::BlockData { data };
    let header = common::BlockHeader {
        number,
        previous_hash: previous.to_vec(),
        data_hash: block_data_hash(&data).to_vec(),
    };
    let value = common::LastConfig { index: 0 }.encode_to_vec();
    let signature_header = common::SignatureHeader {
        creator: orderer.serialized().to_vec(),
        nonce: b"orderer nonce".to_vec(),
    }
    .encode_to_vec();
    let signature = orderer.sign(
        &[
            value.as_slice(),
            &signature_header,
            &block_header_bytes(&header),
        ]
        .concat(),
    );
    let signatures = common::Metadata {
        value,
        signatures: vec![common::MetadataSignature {
            signature_header,
            signature,
            identifier_header: Vec::new(),
        }],
    };
    common::Block {
        header: Some(header),
        data: Some(data),
        metadata: Some(common::BlockMetadata {
            metadata: vec![
                signatures.encode_to_vec(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
            ],
        }),
    }
}

/// A chain of synthetic blocks over an in-memory state.
struct Chain<'a> {
    net: &'a Net,
    state: InMemoryState,
    height: u64,
    previous: Vec<u8>,
}

impl<'a> Chain<'a> {
    fn new(net: &'a Net) -> Chain<'a> {
        Chain {
            net,
            state: InMemoryState::new(),
            height: 1,
            previous: b"hash of block 0".to_vec(),
        }
    }

    /// Signs, verifies, validates and applies the next block; returns its outcome.
    fn commit(&mut self, data: Vec<Vec<u8>>) -> ValidatedBlock {
        let block = signed_block(self.height, &self.previous, data, &self.net.orderer);
        let ctx = ctx(
            &self.net.channel,
            &self.net.chaincodes,
            self.height,
            &self.previous,
        );
        verify_block_signatures(&block, &ctx).unwrap();
        let validated = validate_block(&block, &ctx, &self.state).unwrap();
        self.state.apply(self.height, &validated.updates);
        self.previous = header_hash(&block);
        self.height += 1;
        validated
    }

    /// Commits one block of `data` and returns its codes.
    fn codes(&mut self, data: Vec<Vec<u8>>) -> Vec<Code> {
        self.commit(data).codes
    }
}

#[test]
fn synthetic_transactions_validate_and_update_the_state() {
    let net = net();
    let mut chain = Chain::new(&net);
    let put = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic").read("a", None).write("a", b"1")],
    );
    let validated = chain.commit(vec![put.build()]);
    assert_eq!(validated.codes, vec![Code::Valid]);
    assert_eq!(
        chain.state.get("basic", "a"),
        Some((&b"1"[..], version(1, 0)))
    );

    // Read at the right version, then delete.
    let delete = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic").read("a", Some(version(1, 0))).delete("a")],
    );
    assert_eq!(chain.codes(vec![delete.build()]), vec![Code::Valid]);
    assert_eq!(chain.state.get("basic", "a"), None);
}

#[test]
fn signed_synthetic_block_with_a_broken_orderer_signature_is_rejected() {
    let net = net();
    let tx = Tx::new(&net, "basic", &[Ns::new("basic").write("a", b"1")]).build();
    let previous = b"hash of block 0".to_vec();
    let ctx = ctx(&net.channel, &net.chaincodes, 1, &previous);
    // Signed by an identity that is not an orderer org member: the policy is not met.
    let block = signed_block(1, &previous, vec![tx.clone()], &net.peer);
    let err = verify_block_signatures(&block, &ctx).unwrap_err();
    assert!(
        matches!(err, BlockRejected::BadOrdererSignature { number: 1, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("OrdererMSP"),
        "explains what is missing: {err}"
    );
    verify_block_signatures(
        &signed_block(1, &previous, vec![tx.clone()], &net.orderer),
        &ctx,
    )
    .unwrap();

    // Orderer certificates are not checked for expiry (as in Fabric's MSP): a block signed
    // with a certificate whose window ended long before the transactions' time still verifies,
    // so a peer can catch up on an old chain.
    let issued = ca("OrdererMSP")
        .issue(
            "OrdererMSP",
            &LeafSpec::new(
                "orderer-old",
                Some(Role::Orderer),
                NOW - 20 * DAY,
                NOW - 10 * DAY,
            ),
        )
        .unwrap();
    let expired = SigningIdentity::from_pem(
        "OrdererMSP",
        issued.cert_pem.as_bytes(),
        issued.key_pem.as_bytes(),
    )
    .unwrap();
    verify_block_signatures(&signed_block(1, &previous, vec![tx], &expired), &ctx).unwrap();
}

#[test]
fn corrupted_endorsement_is_endorsement_policy_failure() {
    let net = net();
    let mut chain = Chain::new(&net);
    let mut tx = Tx::new(&net, "basic", &[Ns::new("basic").write("a", b"1")]);
    tx.corrupt_endorsement = true;
    let validated = chain.commit(vec![tx.build()]);
    assert_eq!(validated.codes, vec![Code::EndorsementPolicyFailure]);
    // The tx id was authenticated, so it is indexed; the write is not applied.
    assert_eq!(validated.updates.txs.len(), 1);
    assert!(validated.updates.txs[0].writes.is_empty());
    assert_eq!(chain.state.get("basic", "a"), None);
}

#[test]
fn endorsement_policies_are_enforced() {
    let net = net();
    let mut chain = Chain::new(&net);
    let write = |cc: &str| vec![Ns::new(cc).write("k", b"v")];

    let mut by_client = Tx::new(&net, "basic", &write("basic"));
    by_client.endorsers = vec![&net.client];
    let mut unendorsed = Tx::new(&net, "basic", &write("basic"));
    unendorsed.endorsers = vec![];
    let mut peer_only = Tx::new(&net, "strict", &write("strict"));
    peer_only.endorsers = vec![&net.peer];
    let mut peer_and_admin = Tx::new(&net, "strict", &write("strict"));
    peer_and_admin.endorsers = vec![&net.peer, &net.admin];
    // The same peer twice counts once.
    let mut peer_twice = Tx::new(&net, "pair", &write("pair"));
    peer_twice.endorsers = vec![&net.peer, &net.peer];

    assert_eq!(
        chain.codes(vec![
            by_client.build(),
            unendorsed.build(),
            peer_only.build(),
            peer_and_admin.build(),
            peer_twice.build(),
        ]),
        vec![
            Code::EndorsementPolicyFailure,
            Code::EndorsementPolicyFailure,
            Code::EndorsementPolicyFailure,
            Code::Valid,
            Code::EndorsementPolicyFailure,
        ]
    );
}

#[test]
fn every_written_namespace_needs_a_definition_and_its_policy() {
    let net = net();
    let mut chain = Chain::new(&net);
    // `hcc` calling into `basic`: both are defined and the peer satisfies both policies.
    let cross = Tx::new(
        &net,
        "hcc",
        &[
            Ns::new("basic").write("b", b"1"),
            Ns::new("hcc").write("h", b"1"),
        ],
    );
    // Writing into `strict` needs strict's policy too, which a lone peer does not satisfy.
    let into_strict = Tx::new(
        &net,
        "basic",
        &[
            Ns::new("basic").write("c", b"1"),
            Ns::new("strict").write("s", b"1"),
        ],
    );
    // A namespace nobody defined.
    let undefined = Tx::new(
        &net,
        "basic",
        &[
            Ns::new("basic").write("d", b"1"),
            Ns::new("ghost").write("g", b"1"),
        ],
    );
    // Invoking an undefined chaincode.
    let unknown = Tx::new(&net, "ghost", &[Ns::new("ghost").write("g", b"1")]);
    // Reading another namespace needs nothing from it.
    let reads_other = Tx::new(
        &net,
        "basic",
        &[
            Ns::new("ghost").read("g", None),
            Ns::new("basic").write("e", b"1"),
        ],
    );
    assert_eq!(
        chain.codes(vec![
            cross.build(),
            into_strict.build(),
            undefined.build(),
            unknown.build(),
            reads_other.build(),
        ]),
        vec![
            Code::Valid,
            Code::EndorsementPolicyFailure,
            Code::InvalidChaincode,
            Code::InvalidChaincode,
            Code::Valid,
        ]
    );
    assert!(chain.state.get("basic", "b").is_some());
    assert!(chain.state.get("hcc", "h").is_some());
}

#[test]
fn tx_id_and_proposal_bindings_are_checked() {
    let net = net();
    let mut chain = Chain::new(&net);
    let ns = [Ns::new("basic").write("a", b"1")];
    let mut wrong_tx_id = Tx::new(&net, "basic", &ns);
    wrong_tx_id.tx_id = Some("ab".repeat(32));
    let mut wrong_hash = Tx::new(&net, "basic", &ns);
    wrong_hash.proposal_hash = Some(vec![0; 32]);
    let mut other_channel = Tx::new(&net, "basic", &ns);
    other_channel.channel_id = "otherchannel".to_string();
    let validated = chain.commit(vec![
        wrong_tx_id.build(),
        wrong_hash.build(),
        other_channel.build(),
    ]);
    assert_eq!(
        validated.codes,
        vec![
            Code::BadProposalTxid,
            Code::InvalidEndorserTransaction,
            Code::TargetChainNotFound,
        ]
    );
    // Only the bound tx ids are recorded.
    let indexed: Vec<u64> = validated.updates.txs.iter().map(|t| t.tx_num).collect();
    assert_eq!(indexed, vec![1, 2]);
}

#[test]
fn creator_is_validated_at_the_transaction_time() {
    let net = net();
    let mut chain = Chain::new(&net);
    let ns = [Ns::new("basic").write("a", b"1")];
    let mut early = Tx::new(&net, "basic", &ns);
    early.creator = &net.future_client;
    let mut later = Tx::new(&net, "basic", &ns);
    later.creator = &net.future_client;
    later.seconds = NOW + 2 * DAY;
    assert_eq!(
        chain.codes(vec![early.build(), later.build()]),
        vec![Code::BadCreatorSignature, Code::Valid]
    );
}

/// A client certificate its CA revoked, through a CRL in the organization's MSP in the
/// channel config: its transactions are BAD_CREATOR_SIGNATURE, as Fabric's
/// `checkSignatureFromCreator` makes them (the identity fails `Validate`); a client of the same
/// organization the CRL does not list is unaffected.
#[test]
fn revoked_creator_is_bad_creator_signature() {
    let org1 = ca("Org1MSP");
    let issued = org1
        .issue(
            "Org1MSP",
            &LeafSpec::new(
                "Revoked@org1",
                Some(Role::Client),
                NOW - DAY,
                NOW + 365 * DAY,
            ),
        )
        .unwrap();
    let revoked = SigningIdentity::from_pem(
        "Org1MSP",
        issued.cert_pem.as_bytes(),
        issued.key_pem.as_bytes(),
    )
    .unwrap();
    let crl = org1.revocation_list(&[issued.serial], NOW - DAY).unwrap();
    let mut config = synthetic_config();
    let value = config
        .channel_group
        .as_mut()
        .and_then(|g| g.groups.get_mut("Application"))
        .and_then(|a| a.groups.get_mut("Org1MSP"))
        .and_then(|o| o.values.get_mut("MSP"))
        .unwrap();
    let mut msp_config = msp::MspConfig::decode(value.value.as_slice()).unwrap();
    let mut fabric = msp::FabricMspConfig::decode(msp_config.config.as_slice()).unwrap();
    fabric.revocation_list.push(crl.into_bytes());
    msp_config.config = fabric.encode_to_vec();
    value.value = msp_config.encode_to_vec();
    let mut net = net();
    net.channel = ChannelConfig::from_config(CHANNEL, &config).unwrap();

    let mut chain = Chain::new(&net);
    let mut by_revoked = Tx::new(&net, "basic", &[Ns::new("basic").write("r", b"1")]);
    by_revoked.creator = &revoked;
    let by_client = Tx::new(&net, "basic", &[Ns::new("basic").write("c", b"1")]);
    assert_eq!(
        chain.codes(vec![by_revoked.build(), by_client.build()]),
        vec![Code::BadCreatorSignature, Code::Valid]
    );
}

#[test]
fn chaincode_ids_event_and_namespaces_are_checked() {
    let net = net();
    let mut chain = Chain::new(&net);
    let mut foreign_event = Tx::new(&net, "basic", &[Ns::new("basic").write("a", b"1")]);
    foreign_event.event_chaincode = Some("hcc".to_string());
    let mut own_event = Tx::new(&net, "basic", &[Ns::new("basic").write("b", b"1")]);
    own_event.event_chaincode = Some("basic".to_string());
    let twice = Tx::new(
        &net,
        "basic",
        &[
            Ns::new("basic").write("c", b"1"),
            Ns::new("basic").write("d", b"1"),
        ],
    );
    let mut with_metadata = Ns::new("basic").write("e", b"1");
    with_metadata
        .kv
        .metadata_writes
        .push(kvrwset::KvMetadataWrite {
            key: "e".to_string(),
            entries: vec![kvrwset::KvMetadataEntry {
                name: "VALIDATION_PARAMETER".to_string(),
                value: b"policy".to_vec(),
            }],
        });
    let metadata = Tx::new(&net, "basic", &[with_metadata]);
    let mut bad_rwset = Tx::new(&net, "basic", &[]);
    bad_rwset.results = vec![0xff; 5];
    let mut nameless = Tx::new(&net, "", &[Ns::new("basic").write("f", b"1")]);
    nameless.chaincode = String::new();
    assert_eq!(
        chain.codes(vec![
            foreign_event.build(),
            own_event.build(),
            twice.build(),
            metadata.build(),
            bad_rwset.build(),
            nameless.build(),
        ]),
        vec![
            Code::InvalidOtherReason,
            Code::Valid,
            Code::IllegalWriteset,
            Code::Valid,
            Code::BadRwset,
            Code::InvalidChaincode,
        ]
    );
}

#[test]
fn mvcc_counts_committed_versions_and_earlier_writes_of_the_block() {
    let net = net();
    let mut chain = Chain::new(&net);
    let create = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic").write("a", b"1").write("b", b"1")],
    );
    assert_eq!(chain.codes(vec![create.build()]), vec![Code::Valid]);

    let bump_a = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic")
            .read("a", Some(version(1, 0)))
            .write("a", b"2")],
    );
    // Read `a` at the committed version, but the transaction before it in the block wrote it.
    let read_a = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic")
            .read("a", Some(version(1, 0)))
            .write("c", b"1")],
    );
    // Stale: `b` exists at (1, 0), not (0, 0).
    let stale_b = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic")
            .read("b", Some(version(0, 0)))
            .write("b", b"2")],
    );
    // `b` exists, but was read as missing.
    let missing_b = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic").read("b", None).write("b", b"3")],
    );
    // Still fine: the invalid transactions above wrote nothing.
    let read_b = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic")
            .read("b", Some(version(1, 0)))
            .write("b", b"4")],
    );
    let validated = chain.commit(vec![
        bump_a.build(),
        read_a.build(),
        stale_b.build(),
        missing_b.build(),
        read_b.build(),
    ]);
    assert_eq!(
        validated.codes,
        vec![
            Code::Valid,
            Code::MvccReadConflict,
            Code::MvccReadConflict,
            Code::MvccReadConflict,
            Code::Valid,
        ]
    );
    assert_eq!(
        chain.state.get("basic", "a"),
        Some((&b"2"[..], version(2, 0)))
    );
    assert_eq!(
        chain.state.get("basic", "b"),
        Some((&b"4"[..], version(2, 4)))
    );
    assert_eq!(chain.state.get("basic", "c"), None);
}

#[test]
fn range_queries_are_re_executed_for_phantoms() {
    let net = net();
    let mut chain = Chain::new(&net);
    let create = Tx::new(
        &net,
        "hcc",
        &[Ns::new("hcc")
            .write("m1", b"1")
            .write("m2", b"1")
            .write("m4", b"1")],
    );
    assert_eq!(chain.codes(vec![create.build()]), vec![Code::Valid]);
    let v = version(1, 0);
    let seen = || vec![kv_read("m1", v), kv_read("m2", v), kv_read("m4", v)];

    // The same range as committed: valid. Then a write inside a range an earlier transaction
    // of the block did not see makes a later range query stale.
    let unchanged = Tx::new(
        &net,
        "hcc",
        &[Ns::new("hcc")
            .range("m", "n", true, seen())
            .write("x1", b"1")],
    );
    let insert = Tx::new(&net, "hcc", &[Ns::new("hcc").write("m3", b"1")]);
    let phantom = Tx::new(
        &net,
        "hcc",
        &[Ns::new("hcc")
            .range("m", "n", true, seen())
            .write("x2", b"1")],
    );
    // A query stopped at m2 (not exhausted): m2 is included, the insert at m3 is outside.
    let partial = Tx::new(
        &net,
        "hcc",
        &[Ns::new("hcc")
            .range("m", "m2", false, vec![kv_read("m1", v), kv_read("m2", v)])
            .write("x3", b"1")],
    );
    // A deleted key disappears from the results.
    let remove = Tx::new(&net, "hcc", &[Ns::new("hcc").delete("m1")]);
    let after_delete = Tx::new(
        &net,
        "hcc",
        &[Ns::new("hcc")
            .range("m", "m2", false, vec![kv_read("m1", v), kv_read("m2", v)])
            .write("x4", b"1")],
    );
    assert_eq!(
        chain.codes(vec![
            unchanged.build(),
            insert.build(),
            phantom.build(),
            partial.build(),
            remove.build(),
            after_delete.build(),
        ]),
        vec![
            Code::Valid,
            Code::Valid,
            Code::PhantomReadConflict,
            Code::Valid,
            Code::Valid,
            Code::PhantomReadConflict,
        ]
    );
}

#[test]
fn private_data_hashes_follow_collection_rules_and_mvcc() {
    let net = net();
    let mut chain = Chain::new(&net);
    let implicit = "_implicit_org_Org1MSP";
    // Org1's peer satisfies Org1's Endorsement policy, which governs its implicit collection.
    let approve = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic").hashed_write(implicit, "secret", b"42")],
    );
    let mut approve_by_client = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic").hashed_write(implicit, "other", b"1")],
    );
    approve_by_client.endorsers = vec![&net.client];
    let unknown_org = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic").hashed_write("_implicit_org_Org9MSP", "k", b"1")],
    );
    let undefined = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic").hashed_write("prices", "k", b"1")],
    );
    assert_eq!(
        chain.codes(vec![
            approve.build(),
            approve_by_client.build(),
            unknown_org.build(),
            undefined.build()
        ]),
        vec![
            Code::Valid,
            Code::EndorsementPolicyFailure,
            Code::EndorsementPolicyFailure,
            Code::EndorsementPolicyFailure,
        ]
    );
    let namespace = hashed_namespace("basic", implicit);
    let key = hashed_key(&sha256(b"secret"));
    assert_eq!(
        chain.state.get(&namespace, &key),
        Some((sha256(b"42").as_slice(), version(1, 0)))
    );

    let fresh = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic")
            .hashed_read(implicit, "secret", Some(version(1, 0)))
            .write("x", b"1")],
    );
    let stale = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic")
            .hashed_read(implicit, "secret", None)
            .write("y", b"1")],
    );
    assert_eq!(
        chain.codes(vec![fresh.build(), stale.build()]),
        vec![Code::Valid, Code::MvccReadConflict]
    );
}

#[test]
fn defined_collections_use_their_own_endorsement_policy_or_the_chaincodes() {
    let mut net = net();
    let strict = EndorsementPolicy::Signature(
        gridledger_channels::policy::parse("AND('Org1MSP.peer', 'Org1MSP.admin')").unwrap(),
    );
    let collection = |name: &str, endorsement: Option<EndorsementPolicy>| {
        gridledger_peer::private::CollectionDefinition {
            name: name.to_string(),
            members: ["Org1MSP".to_string()].into(),
            required_peer_count: 0,
            maximum_peer_count: 1,
            block_to_live: 0,
            member_only_read: false,
            member_only_write: false,
            endorsement,
        }
    };
    let deals_policy = EndorsementPolicy::Signature(
        gridledger_channels::policy::parse("OR('Org1MSP.peer')").unwrap(),
    );
    net.chaincodes.insert(
        "vault".to_string(),
        ChaincodeDefinition {
            name: "vault".to_string(),
            version: "1".to_string(),
            endorsement: strict,
            collections: [
                ("deals".to_string(), collection("deals", Some(deals_policy))),
                ("plain".to_string(), collection("plain", None)),
            ]
            .into(),
        },
    );
    let mut chain = Chain::new(&net);
    // The peer alone satisfies "deals" (its own policy) but not "plain" (the chaincode's).
    let deals = Tx::new(
        &net,
        "vault",
        &[Ns::new("vault").hashed_write("deals", "k", b"1")],
    );
    let plain = Tx::new(
        &net,
        "vault",
        &[Ns::new("vault").hashed_write("plain", "k", b"1")],
    );
    let mut plain_by_both = Tx::new(
        &net,
        "vault",
        &[Ns::new("vault").hashed_write("plain", "j", b"1")],
    );
    plain_by_both.endorsers = vec![&net.peer, &net.admin];
    assert_eq!(
        chain.codes(vec![deals.build(), plain.build(), plain_by_both.build()]),
        vec![Code::Valid, Code::EndorsementPolicyFailure, Code::Valid]
    );
    assert_eq!(
        chain.state.get(
            &hashed_namespace("vault", "deals"),
            &hashed_key(&sha256(b"k"))
        ),
        Some((sha256(b"1").as_slice(), version(1, 0)))
    );
}

/// A CONFIG envelope as the ordering service writes it, carrying `config`.
fn config_tx(net: &Net, config: common::Config) -> Vec<u8> {
    config_tx_by(&net.orderer, config)
}

/// A CONFIG envelope created and signed by `creator`.
fn config_tx_by(creator_identity: &SigningIdentity, config: common::Config) -> Vec<u8> {
    let creator = creator_identity.serialized().to_vec();
    let nonce = b"config nonce".to_vec();
    let payload = common::Payload {
        header: Some(common::Header {
            channel_header: common::ChannelHeader {
                r#type: common::HeaderType::Config as i32,
                channel_id: CHANNEL.to_string(),
                timestamp: Some(prost_types::Timestamp {
                    seconds: NOW,
                    nanos: 0,
                }),
                tx_id: compute_tx_id(&nonce, &creator),
                ..Default::default()
            }
            .encode_to_vec(),
            signature_header: common::SignatureHeader { creator, nonce }.encode_to_vec(),
        }),
        data: common::ConfigEnvelope {
            config: Some(config),
            last_update: None,
        }
        .encode_to_vec(),
    }
    .encode_to_vec();
    common::Envelope {
        signature: creator_identity.sign(&payload),
        payload,
    }
    .encode_to_vec()
}

#[test]
fn config_transactions_carry_the_next_config_alone_in_their_block() {
    let net = net();
    let mut next = synthetic_config();
    next.sequence += 1;

    let mut chain = Chain::new(&net);
    let validated = chain.commit(vec![config_tx(&net, next.clone())]);
    assert_eq!(validated.codes, vec![Code::Valid]);
    assert_eq!(validated.config, Some((CHANNEL.to_string(), next.clone())));
    assert_eq!(validated.updates.txs.len(), 1);

    // Not alone in its block.
    let tx = Tx::new(&net, "basic", &[Ns::new("basic").write("a", b"1")]).build();
    let validated = chain.commit(vec![config_tx(&net, next.clone()), tx]);
    assert_eq!(
        validated.codes,
        vec![Code::InvalidConfigTransaction, Code::Valid]
    );
    assert!(validated.config.is_none());

    // Not the next sequence number (the channel config in the context is still sequence 0).
    let mut skipped = next.clone();
    skipped.sequence += 1;
    let validated = chain.commit(vec![config_tx(&net, skipped)]);
    assert_eq!(validated.codes, vec![Code::InvalidConfigTransaction]);
    assert!(validated.config.is_none());

    // Written by a channel member rather than the ordering service.
    let validated = chain.commit(vec![config_tx_by(&net.admin, next.clone())]);
    assert_eq!(validated.codes, vec![Code::InvalidConfigTransaction]);
    assert!(validated.config.is_none());

    // A config without a channel group is refused by the channel view.
    let broken = common::Config {
        sequence: next.sequence,
        channel_group: None,
    };
    assert_eq!(
        chain.codes(vec![config_tx(&net, broken)]),
        vec![Code::InvalidConfigTransaction]
    );
}

#[test]
fn config_update_envelopes_are_unsupported() {
    let net = net();
    let mut chain = Chain::new(&net);
    let creator = net.client.serialized().to_vec();
    let payload = common::Payload {
        header: Some(common::Header {
            channel_header: common::ChannelHeader {
                r#type: common::HeaderType::ConfigUpdate as i32,
                channel_id: CHANNEL.to_string(),
                timestamp: Some(prost_types::Timestamp {
                    seconds: NOW,
                    nanos: 0,
                }),
                ..Default::default()
            }
            .encode_to_vec(),
            signature_header: common::SignatureHeader {
                creator,
                nonce: b"n".to_vec(),
            }
            .encode_to_vec(),
        }),
        data: b"config update".to_vec(),
    }
    .encode_to_vec();
    let envelope = common::Envelope {
        signature: net.client.sign(&payload),
        payload,
    };
    assert_eq!(
        chain.codes(vec![envelope.encode_to_vec()]),
        vec![Code::UnsupportedTxPayload]
    );
}

#[test]
fn lifecycle_definition_falls_back_to_a_majority_of_members() {
    let mut config = synthetic_config();
    config
        .channel_group
        .as_mut()
        .unwrap()
        .groups
        .get_mut("Application")
        .unwrap()
        .policies
        .remove("LifecycleEndorsement");
    let channel = ChannelConfig::from_config(CHANNEL, &config).unwrap();
    let definition = ChaincodeDefinition::lifecycle(&channel);
    let EndorsementPolicy::Signature(envelope) = &definition.endorsement else {
        panic!(
            "expected a signature policy, got {:?}",
            definition.endorsement
        );
    };
    assert_eq!(
        gridledger_channels::policy::to_policy_string(envelope).unwrap(),
        "OR('Org1MSP.member')"
    );
}

/// A key-level policy: a peer of each of `msp_ids`.
fn peers_of(msp_ids: &[&str]) -> Vec<u8> {
    let mut policy = KeyEndorsementPolicy::new();
    policy.add_orgs(RoleType::Peer, msp_ids);
    policy.policy()
}

/// The committed validation parameter of a key.
fn committed_policy(state: &InMemoryState, namespace: &str, key: &str) -> Option<Vec<u8>> {
    let bytes = state.metadata(namespace, key).unwrap()?;
    decode_metadata(&bytes)
        .expect("stored metadata decodes")
        .remove(VALIDATION_PARAMETER)
}

#[test]
fn key_level_policy_replaces_the_chaincode_policy_at_validation() {
    let net = net();
    let mut chain = Chain::new(&net);
    // Block 1: Org1's peer (enough for basic's policy) creates the key and hands it to Org2.
    let handover = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic")
            .write("meter", b"1")
            .validation_parameter("meter", &peers_of(&["Org2MSP"]))],
    );
    // A metadata write to a key that does not exist is dropped at commit.
    let ghost = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic").validation_parameter("ghost", &peers_of(&["Org2MSP"]))],
    );
    assert_eq!(
        chain.codes(vec![handover.build(), ghost.build()]),
        vec![Code::Valid, Code::Valid]
    );
    assert_eq!(
        committed_policy(&chain.state, "basic", "meter"),
        Some(peers_of(&["Org2MSP"]))
    );
    assert_eq!(chain.state.metadata("basic", "ghost").unwrap(), None);
    let meter_version = chain.state.get("basic", "meter").unwrap().1;

    // Block 2: endorsed only by the chaincode policy's org, a change of the key, or of its
    // policy, fails; another key of the namespace is still governed by the chaincode policy.
    let change = Tx::new(&net, "basic", &[Ns::new("basic").write("meter", b"2")]);
    let take_back = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic").validation_parameter("meter", &peers_of(&["Org1MSP"]))],
    );
    let other = Tx::new(&net, "basic", &[Ns::new("basic").write("other", b"1")]);
    let validated = chain.commit(vec![change.build(), take_back.build(), other.build()]);
    assert_eq!(
        validated.codes,
        vec![
            Code::EndorsementPolicyFailure,
            Code::EndorsementPolicyFailure,
            Code::Valid
        ]
    );
    assert_eq!(
        chain.state.get("basic", "meter"),
        Some((&b"1"[..], meter_version))
    );

    // The key-level policy replaces the chaincode's: `strict` needs a peer and an admin, but
    // a key whose policy is "Org1's peer" is changed with the peer's endorsement alone.
    let mut setup = Tx::new(
        &net,
        "strict",
        &[Ns::new("strict")
            .write("k", b"1")
            .validation_parameter("k", &peers_of(&["Org1MSP"]))],
    );
    setup.endorsers = vec![&net.peer, &net.admin];
    assert_eq!(chain.codes(vec![setup.build()]), vec![Code::Valid]);
    let by_peer = Tx::new(&net, "strict", &[Ns::new("strict").write("k", b"2")]);
    let other_by_peer = Tx::new(&net, "strict", &[Ns::new("strict").write("j", b"2")]);
    assert_eq!(
        chain.codes(vec![by_peer.build(), other_by_peer.build()]),
        vec![Code::Valid, Code::EndorsementPolicyFailure]
    );

    // A policy that does not decode cannot be satisfied.
    let mut garbage = Tx::new(
        &net,
        "strict",
        &[Ns::new("strict").validation_parameter("k", b"\xff\xff not a policy")],
    );
    garbage.endorsers = vec![&net.peer];
    assert_eq!(chain.codes(vec![garbage.build()]), vec![Code::Valid]);
    let stuck = Tx::new(&net, "strict", &[Ns::new("strict").write("k", b"3")]);
    assert_eq!(
        chain.codes(vec![stuck.build()]),
        vec![Code::EndorsementPolicyFailure]
    );
}

#[test]
fn metadata_change_earlier_in_the_block_is_honoured() {
    let net = net();
    let mut chain = Chain::new(&net);
    let create = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic").write("k", b"1").write("j", b"1")],
    );
    assert_eq!(chain.codes(vec![create.build()]), vec![Code::Valid]);
    let k_version = chain.state.get("basic", "k").unwrap().1;

    // In one block: tx 0 gives `k` a key-level policy. tx 1 writes `k` endorsed as the
    // pre-block state allows (no key-level policy), but the block changed the policy first.
    // tx 2 only reads `k` at its pre-block version: the metadata write moved the version.
    // tx 3 sets `j`'s policy with a broken endorsement, so it does not count for tx 4.
    let set_policy = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic").validation_parameter("k", &peers_of(&["Org1MSP"]))],
    );
    let write_k = Tx::new(&net, "basic", &[Ns::new("basic").write("k", b"2")]);
    let read_k = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic").read("k", Some(k_version)).write("x", b"1")],
    );
    let mut broken = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic").validation_parameter("j", &peers_of(&["Org2MSP"]))],
    );
    broken.corrupt_endorsement = true;
    let write_j = Tx::new(&net, "basic", &[Ns::new("basic").write("j", b"2")]);
    let validated = chain.commit(vec![
        set_policy.build(),
        write_k.build(),
        read_k.build(),
        broken.build(),
        write_j.build(),
    ]);
    assert_eq!(
        validated.codes,
        vec![
            Code::Valid,
            Code::EndorsementPolicyFailure,
            Code::MvccReadConflict,
            Code::EndorsementPolicyFailure,
            Code::Valid,
        ]
    );
    assert_eq!(
        committed_policy(&chain.state, "basic", "k"),
        Some(peers_of(&["Org1MSP"]))
    );
    assert_eq!(
        chain.state.get("basic", "k"),
        Some((&b"1"[..], version(2, 0))),
        "a metadata write keeps the value and moves the version"
    );
    assert_eq!(chain.state.metadata("basic", "j").unwrap(), None);
    // The next block sees the new policy: Org1's peer endorses, so `k` changes.
    let later = Tx::new(&net, "basic", &[Ns::new("basic").write("k", b"3")]);
    assert_eq!(chain.codes(vec![later.build()]), vec![Code::Valid]);
}

#[test]
fn key_level_policy_is_committed_to_and_enforced_from_a_real_ledger() {
    let net = net();
    let dir = TempDir::new("ledger-key-policy");
    let ledger = Ledger::open(&dir.0, CHANNEL).unwrap();
    ledger
        .append_block(&signed_block(0, &[], vec![], &net.orderer))
        .unwrap();
    let commit = |data: Vec<Vec<u8>>| -> Vec<Code> {
        let info = ledger.info();
        let block = signed_block(info.height, &info.current_block_hash, data, &net.orderer);
        let ctx = ctx(
            &net.channel,
            &net.chaincodes,
            info.height,
            &info.current_block_hash,
        );
        let snapshot = ledger.snapshot().unwrap();
        let validated =
            validate_block(&block, &ctx, &LedgerState::new(&snapshot, &ledger)).unwrap();
        drop(snapshot);
        ledger
            .commit_block(&validated.with_codes(&block), &validated.updates)
            .unwrap();
        validated.codes
    };
    let policy = peers_of(&["Org2MSP"]);
    let handover = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic")
            .write("meter", b"1")
            .validation_parameter("meter", &policy)],
    );
    assert_eq!(commit(vec![handover.build()]), vec![Code::Valid]);
    let snapshot = ledger.snapshot().unwrap();
    let stored = LedgerState::new(&snapshot, &ledger)
        .metadata("basic", "meter")
        .unwrap()
        .expect("the policy is stored next to the value");
    assert_eq!(
        decode_metadata(&stored)
            .unwrap()
            .remove(VALIDATION_PARAMETER),
        Some(policy)
    );
    drop(snapshot);
    let change = Tx::new(&net, "basic", &[Ns::new("basic").write("meter", b"2")]);
    assert_eq!(
        commit(vec![change.build()]),
        vec![Code::EndorsementPolicyFailure]
    );
    assert_eq!(
        ledger
            .snapshot()
            .unwrap()
            .get("basic", "meter")
            .unwrap()
            .unwrap()
            .value,
        b"1"
    );
}

#[test]
fn private_key_level_policy_is_kept_with_the_key_hash_and_enforced() {
    let mut net = net();
    let strict = EndorsementPolicy::Signature(
        gridledger_channels::policy::parse("AND('Org1MSP.peer', 'Org1MSP.admin')").unwrap(),
    );
    net.chaincodes.insert(
        "vault".to_string(),
        ChaincodeDefinition {
            name: "vault".to_string(),
            version: "1".to_string(),
            endorsement: strict,
            collections: [(
                "plain".to_string(),
                gridledger_peer::private::CollectionDefinition {
                    name: "plain".to_string(),
                    members: ["Org1MSP".to_string()].into(),
                    required_peer_count: 0,
                    maximum_peer_count: 1,
                    block_to_live: 0,
                    member_only_read: false,
                    member_only_write: false,
                    endorsement: None,
                },
            )]
            .into(),
        },
    );
    let mut chain = Chain::new(&net);
    let implicit = "_implicit_org_Org1MSP";
    let hashed_ns = hashed_namespace("basic", implicit);

    // Block 1: Org1's peer (its implicit collection's policy) writes two private keys and
    // hands `meter` to Org2.
    let handover = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic")
            .hashed_write(implicit, "meter", b"1")
            .hashed_write(implicit, "other", b"1")
            .hashed_validation_parameter(implicit, "meter", &peers_of(&["Org2MSP"]))],
    );
    assert_eq!(chain.codes(vec![handover.build()]), vec![Code::Valid]);
    let meter = hashed_key(&sha256(b"meter"));
    assert_eq!(
        committed_policy(&chain.state, &hashed_ns, &meter),
        Some(peers_of(&["Org2MSP"]))
    );

    // Block 2: the collection's policy no longer covers `meter` (value or policy); `other`
    // is still governed by it. Then, in one block, `other` gets a policy and a later write of
    // it, endorsed as the pre-block state allows, fails.
    let change = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic").hashed_write(implicit, "meter", b"2")],
    );
    let take_back =
        Tx::new(
            &net,
            "basic",
            &[Ns::new("basic").hashed_validation_parameter(
                implicit,
                "meter",
                &peers_of(&["Org1MSP"]),
            )],
        );
    let set_other =
        Tx::new(
            &net,
            "basic",
            &[Ns::new("basic").hashed_validation_parameter(
                implicit,
                "other",
                &peers_of(&["Org1MSP"]),
            )],
        );
    let write_other = Tx::new(
        &net,
        "basic",
        &[Ns::new("basic").hashed_write(implicit, "other", b"2")],
    );
    assert_eq!(
        chain.codes(vec![
            change.build(),
            take_back.build(),
            set_other.build(),
            write_other.build()
        ]),
        vec![
            Code::EndorsementPolicyFailure,
            Code::EndorsementPolicyFailure,
            Code::Valid,
            Code::EndorsementPolicyFailure,
        ]
    );
    assert_eq!(
        chain.state.get(&hashed_ns, &meter),
        Some((sha256(b"1").as_slice(), version(1, 0)))
    );
    assert_eq!(
        chain.state.get(&hashed_ns, &hashed_key(&sha256(b"other"))),
        Some((sha256(b"1").as_slice(), version(2, 2))),
        "a metadata write keeps the hash and moves its version"
    );

    // The key-level policy replaces the collection's: "plain" needs the chaincode's peer and
    // admin, but a key whose policy is "Org1's peer" changes with the peer alone.
    let mut setup = Tx::new(
        &net,
        "vault",
        &[Ns::new("vault")
            .hashed_write("plain", "k", b"1")
            .hashed_validation_parameter("plain", "k", &peers_of(&["Org1MSP"]))],
    );
    setup.endorsers = vec![&net.peer, &net.admin];
    assert_eq!(chain.codes(vec![setup.build()]), vec![Code::Valid]);
    let by_peer = Tx::new(
        &net,
        "vault",
        &[Ns::new("vault").hashed_write("plain", "k", b"2")],
    );
    let other_by_peer = Tx::new(
        &net,
        "vault",
        &[Ns::new("vault").hashed_write("plain", "j", b"2")],
    );
    assert_eq!(
        chain.codes(vec![by_peer.build(), other_by_peer.build()]),
        vec![Code::Valid, Code::EndorsementPolicyFailure]
    );
}
