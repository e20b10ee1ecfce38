//! Writes the seed corpus of every fuzz target into `corpus/<target>/`, built from the
//! project's own fixtures (the Fabric 2.5.5 chain, the grid feeder and profiles) and from
//! messages signed by the synthetic world of `gridledger_fuzz::support`. Deterministic: the
//! same files on every run. Run with
//! `cargo run --manifest-path fuzz/Cargo.toml --no-default-features --example seeds`.

use std::path::Path;

use gridledger_channels::update;
use gridledger_fuzz::support::{self, FABRIC_GENESIS};
use gridledger_fuzz::{TARGETS, shim};
use gridledger_proto::protos::chaincode_message::Type;
use gridledger_proto::{common, kvrwset, orderer, protos, rwset};
use prost::Message;

const FIXTURE: &str = "../tests/fixtures/fabric-2.5.5-chain";
/// Fixture blocks used as seeds: genesis, a lifecycle transaction, an asset transaction and
/// a block of six conflicting updates.
const BLOCKS: [u64; 4] = [0, 1, 20, 37];

fn fixture_block(number: u64) -> Vec<u8> {
    std::fs::read(format!("{FIXTURE}/block{number:03}.pb")).expect("a fixture block")
}

fn envelopes(number: u64) -> Vec<Vec<u8>> {
    common::Block::decode(fixture_block(number).as_slice())
        .expect("a fixture block decodes")
        .data
        .expect("data")
        .data
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("the corpus directory can be made");
    std::fs::write(dir.join(name), bytes).expect("a seed can be written");
}

fn select(selector: u8, input: &[u8]) -> Vec<u8> {
    [&[selector][..], input].concat()
}

/// A valid response of the synthetic peer to the synthetic proposal, writing `key`.
fn proposal_response(key: &str) -> protos::ProposalResponse {
    let net = support::synthetic();
    let kv = kvrwset::KvrwSet {
        writes: vec![kvrwset::KvWrite {
            key: key.to_string(),
            is_delete: false,
            value: b"v".to_vec(),
        }],
        ..Default::default()
    };
    let results = rwset::TxReadWriteSet {
        data_model: rwset::tx_read_write_set::DataModel::Kv as i32,
        ns_rwset: vec![rwset::NsReadWriteSet {
            namespace: "basic".to_string(),
            rwset: kv.encode_to_vec(),
            collection_hashed_rwset: Vec::new(),
        }],
    };
    let action = protos::ChaincodeAction {
        results: results.encode_to_vec(),
        events: Vec::new(),
        response: Some(protos::Response {
            status: 200,
            ..Default::default()
        }),
        chaincode_id: Some(protos::ChaincodeId {
            name: "basic".to_string(),
            version: "1.0".to_string(),
            ..Default::default()
        }),
    };
    let payload = protos::ProposalResponsePayload {
        proposal_hash: net.proposal.proposal_hash.clone(),
        extension: action.encode_to_vec(),
    }
    .encode_to_vec();
    let endorser = net.peer.serialized().to_vec();
    let signature = net.peer.sign(&[payload.as_slice(), &endorser].concat());
    protos::ProposalResponse {
        version: 1,
        response: Some(protos::Response {
            status: 200,
            ..Default::default()
        }),
        payload,
        endorsement: Some(protos::Endorsement {
            endorser,
            signature,
        }),
        ..Default::default()
    }
}

/// Config updates of the synthetic channel: a batch size change signed by the orderer admin,
/// and the same unsigned.
fn config_updates() -> Vec<(String, Vec<u8>)> {
    let net = support::synthetic();
    let current = net.world.channel.config();
    let mut desired = current.clone();
    let batch = desired
        .channel_group
        .as_mut()
        .and_then(|g| g.groups.get_mut("Orderer"))
        .and_then(|g| g.values.get_mut("BatchSize"))
        .expect("the orderer group has a BatchSize");
    let mut size = orderer::BatchSize::decode(batch.value.as_slice()).expect("a BatchSize");
    size.max_message_count += 1;
    batch.value = size.encode_to_vec();
    let change = update::compute_update(net.world.channel.channel_id(), current, &desired)
        .expect("a changed config yields an update");
    let unsigned = update::new_envelope(&change);
    let mut signed = unsigned.clone();
    update::sign(&mut signed, &net.orderer_admin, [7; 24]);
    vec![
        ("batch-size-signed".to_string(), signed.encode_to_vec()),
        ("batch-size-unsigned".to_string(), unsigned.encode_to_vec()),
    ]
}

fn shim_messages() -> Vec<(&'static str, Vec<protos::ChaincodeMessage>)> {
    let msg = |kind: Type, payload: Vec<u8>| protos::ChaincodeMessage {
        r#type: kind as i32,
        payload,
        txid: "fuzz-tx".to_string(),
        channel_id: "mychannel".to_string(),
        ..Default::default()
    };
    let get = |key: &str, collection: &str| protos::GetState {
        key: key.to_string(),
        collection: collection.to_string(),
    };
    vec![
        (
            "get-put-del",
            vec![
                msg(Type::GetState, get("a", "").encode_to_vec()),
                msg(
                    Type::PutState,
                    protos::PutState {
                        key: "z".to_string(),
                        value: b"1".to_vec(),
                        collection: String::new(),
                    }
                    .encode_to_vec(),
                ),
                msg(
                    Type::DelState,
                    protos::DelState {
                        key: "b".to_string(),
                        collection: String::new(),
                    }
                    .encode_to_vec(),
                ),
            ],
        ),
        (
            "range-next-close",
            vec![
                msg(
                    Type::GetStateByRange,
                    protos::GetStateByRange {
                        start_key: "a".to_string(),
                        end_key: "meter~9".to_string(),
                        ..Default::default()
                    }
                    .encode_to_vec(),
                ),
                msg(
                    Type::QueryStateNext,
                    protos::QueryStateNext {
                        id: "0".to_string(),
                    }
                    .encode_to_vec(),
                ),
                msg(
                    Type::QueryStateClose,
                    protos::QueryStateClose {
                        id: "0".to_string(),
                    }
                    .encode_to_vec(),
                ),
            ],
        ),
        (
            "private-metadata-history",
            vec![
                msg(
                    Type::GetState,
                    get("a", "_implicit_org_Org1MSP").encode_to_vec(),
                ),
                msg(
                    Type::GetPrivateDataHash,
                    get("a", "_implicit_org_Org1MSP").encode_to_vec(),
                ),
                msg(
                    Type::GetStateMetadata,
                    protos::GetStateMetadata {
                        key: "a".to_string(),
                        collection: String::new(),
                    }
                    .encode_to_vec(),
                ),
                msg(
                    Type::PutStateMetadata,
                    protos::PutStateMetadata {
                        key: "a".to_string(),
                        collection: String::new(),
                        metadata: Some(protos::StateMetadata {
                            metakey: "VALIDATION_PARAMETER".to_string(),
                            value: b"x".to_vec(),
                        }),
                    }
                    .encode_to_vec(),
                ),
                msg(
                    Type::GetHistoryForKey,
                    protos::GetHistoryForKey {
                        key: "a".to_string(),
                    }
                    .encode_to_vec(),
                ),
                msg(
                    Type::InvokeChaincode,
                    protos::ChaincodeSpec {
                        chaincode_id: Some(protos::ChaincodeId {
                            name: "other/mychannel".to_string(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }
                    .encode_to_vec(),
                ),
                msg(Type::Completed, Vec::new()),
            ],
        ),
    ]
}

fn main() {
    for target in TARGETS {
        let _ = std::fs::remove_dir_all(Path::new("corpus").join(target));
    }
    let net = support::synthetic();

    // Envelopes and blocks: the fixture chain.
    for number in BLOCKS {
        write(
            "block",
            &format!("fabric-block{number:03}"),
            &fixture_block(number),
        );
        if let Some(envelope) = envelopes(number).first() {
            write(
                "envelope",
                &format!("fabric-block{number:03}-tx0"),
                envelope,
            );
        }
    }

    // Proposals: signed by the synthetic client, and one from another channel.
    let channel = net.world.channel.channel_id();
    let proposals = [
        (
            "basic-put",
            support::signed_proposal(&net.client, channel, "basic", &[b"put", b"k", b"v"], 1),
        ),
        (
            "strict-get",
            support::signed_proposal(&net.admin, channel, "strict", &[b"get", b"k"], 2),
        ),
        (
            "qscc",
            support::signed_proposal(
                &net.client,
                channel,
                "qscc",
                &[b"GetChainInfo", channel.as_bytes()],
                3,
            ),
        ),
        (
            "other-channel",
            support::signed_proposal(&net.client, "other", "basic", &[b"get"], 4),
        ),
    ];
    for (name, signed) in proposals {
        write("proposal", name, &signed.encode_to_vec());
    }

    // Proposal responses: a valid endorsement, and one from a client (not a peer).
    let valid = proposal_response("k");
    let outcome = net.world.validate_alone({
        let mut envelope = gridledger_peer::gateway::prepared_transaction(
            &net.proposal,
            valid.payload.clone(),
            valid.endorsement.clone().into_iter().collect(),
        );
        envelope.signature = net.client.sign(&envelope.payload);
        envelope.encode_to_vec()
    });
    println!(
        "the valid proposal response seed validates as {:?}",
        outcome.map(|v| v.codes)
    );
    write("proposal_response", "valid", &valid.encode_to_vec());
    let mut by_client = valid.clone();
    if let Some(e) = by_client.endorsement.as_mut() {
        e.endorser = net.client.serialized().to_vec();
        e.signature = net
            .client
            .sign(&[valid.payload.as_slice(), &e.endorser].concat());
    }
    write(
        "proposal_response",
        "endorsed-by-client",
        &by_client.encode_to_vec(),
    );

    // Config updates of the synthetic channel.
    for (name, bytes) in config_updates() {
        write("config_update", &name, &bytes);
    }

    // Shim message sequences.
    for (name, messages) in shim_messages() {
        write("shim", name, &shim::frame(&messages));
    }

    // Policies: text, implicit meta text, and their encodings.
    let texts = [
        "AND('Org1MSP.peer', 'Org1MSP.admin')",
        "OutOf(2, 'Org1MSP.member', OR('OrdererMSP.orderer', 'Org1MSP.client'), 'Org1MSP.peer')",
        "OR('Org1MSP.member')",
    ];
    for (i, text) in texts.iter().enumerate() {
        write("policy", &format!("text-{i}"), &select(0, text.as_bytes()));
        let envelope = gridledger_channels::policy::parse(text).expect("a seed policy parses");
        write(
            "policy",
            &format!("envelope-{i}"),
            &select(2, &envelope.encode_to_vec()),
        );
    }
    for (i, text) in ["MAJORITY Endorsement", "ANY Readers", "ALL Admins"]
        .iter()
        .enumerate()
    {
        write(
            "policy",
            &format!("meta-text-{i}"),
            &select(1, text.as_bytes()),
        );
        let meta = gridledger_channels::policy::parse_implicit_meta(text).expect("it parses");
        write(
            "policy",
            &format!("meta-{i}"),
            &select(3, &meta.encode_to_vec()),
        );
    }

    // Certificates, CRLs, identities, signatures, MSP configs.
    let client_pem = net.client.cert_pem();
    let client_der = pem_der(client_pem);
    write("certificate", "client-der", &select(0, &client_der));
    write("certificate", "client-pem", &select(1, client_pem));
    let fixture_ca = std::fs::read(format!("{FIXTURE}/msp/org1-ca.pem")).expect("the fixture CA");
    write("certificate", "fabric-ca-pem", &select(1, &fixture_ca));
    let crl = net
        .org1_ca
        .revocation_list(&[vec![1, 2, 3]], support::NOW)
        .expect("a CRL can be made");
    write("certificate", "crl-pem", &select(2, crl.as_bytes()));
    write(
        "certificate",
        "identity-client",
        &select(3, net.client.serialized()),
    );
    write(
        "certificate",
        "identity-orderer",
        &select(3, net.orderer.serialized()),
    );
    write(
        "certificate",
        "signature",
        &select(4, &net.client.sign(b"message")),
    );
    let genesis = common::Block::decode(FABRIC_GENESIS).expect("the genesis block");
    let (_, config) = gridledger_channels::genesis::config_from_block(&genesis).expect("config");
    let msp_value =
        &config.channel_group.as_ref().expect("a root").groups["Application"].groups["Org1MSP"]
            .values["MSP"]
            .value;
    let msp_config = gridledger_proto::msp::MspConfig::decode(msp_value.as_slice()).expect("msp");
    write(
        "certificate",
        "fabric-msp-config",
        &select(5, &msp_config.config),
    );

    // Grid files.
    let feeder = std::fs::read("../grid/feeders/ieee33.json").expect("the IEEE 33-bus feeder");
    write("feeder", "ieee33", &select(0, &feeder));
    for name in ["household-h25-winter", "prosumer-summer-day"] {
        let profile = std::fs::read(format!("../grid/profiles/{name}.csv")).expect("a profile");
        write("feeder", name, &select(1, &profile));
    }
    println!("seed corpora written under corpus/");
}

/// The DER inside a PEM certificate.
fn pem_der(pem: &[u8]) -> Vec<u8> {
    let cert = gridledger_identity::Certificate::from_pem(pem).expect("a PEM certificate");
    cert.der
}
