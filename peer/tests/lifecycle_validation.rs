//! How the committer validates `_lifecycle` transactions, on a three-organization channel
//! (DSOMSP, RetailerMSP, CommunityMSP; LifecycleEndorsement = MAJORITY Endorsement) with
//! crafted, correctly signed transactions:
//!
//! - an organization's approval keys need that organization's endorsement;
//! - a commit needs LifecycleEndorsement satisfied by the endorsements of organizations whose
//!   agreement with exactly the committed definition the commit read: endorsements of
//!   organizations that approved something else, or nothing, do not count;
//! - the reads of the agreements are MVCC-checked, so a withdrawn approval invalidates the
//!   commit.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use gridledger_channels::config::{ChannelConfig, ChannelSpec};
use gridledger_identity::SigningIdentity;
use gridledger_identity::material::{self, CryptoConfig};
use gridledger_peer::lifecycle::{self, Definition};
use gridledger_peer::validation::{
    BlockContext, ChaincodeDefinition, InMemoryState, LIFECYCLE_NAMESPACE, validate_block,
};
use gridledger_proto::protos::TxValidationCode as Code;
use gridledger_proto::{block_data_hash, common, compute_tx_id, kvrwset, protos, rwset};
use prost::Message;

const CHANNEL: &str = "market";
const ORGS: [(&str, &str); 3] = [
    ("DSOMSP", "peer0.dso"),
    ("RetailerMSP", "peer0.retailer"),
    ("CommunityMSP", "peer0.community"),
];

struct Net {
    dir: PathBuf,
    channel: ChannelConfig,
    chaincodes: BTreeMap<String, ChaincodeDefinition>,
    /// Peers by MSP id.
    peers: BTreeMap<&'static str, SigningIdentity>,
    admin: SigningIdentity,
    now: i64,
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn net(name: &str) -> Net {
    let dir = std::env::temp_dir().join(format!(
        "gridledger-lifecycle-validation-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut crypto: CryptoConfig =
        toml::from_str(include_str!("../../examples/crypto-config.toml")).unwrap();
    crypto.seed = Some("lifecycle-validation".into());
    let now = now();
    material::generate(&crypto, &dir, now - 3600).unwrap();
    let org = |msp: &str| format!("organizations/{msp}");
    let mut spec = format!(
        "name = \"{CHANNEL}\"\n\n[orderer]\ntype = \"etcdraft\"\n\n[[orderer.organizations]]\nmsp_id = \"OrdererMSP\"\nmsp_dir = \"{o}/msp\"\nendpoints = [\"127.0.0.1:7050\"]\n\n[[orderer.consenters]]\nhost = \"127.0.0.1\"\nport = 7050\nclient_tls_cert = \"{o}/orderers/orderer0/tls/server.crt\"\nserver_tls_cert = \"{o}/orderers/orderer0/tls/server.crt\"\n",
        o = org("OrdererMSP")
    );
    for (msp, _) in ORGS {
        spec.push_str(&format!(
            "\n[[organizations]]\nmsp_id = \"{msp}\"\nmsp_dir = \"{}/msp\"\n",
            org(msp)
        ));
    }
    let config = ChannelSpec::parse(&spec).unwrap().to_config(&dir).unwrap();
    let channel = ChannelConfig::from_config(CHANNEL, &config).unwrap();
    let load = |msp: &str, path: String| {
        let base = dir.join(org(msp)).join(path).join("msp");
        SigningIdentity::load(
            msp,
            &base.join("signcerts/cert.pem"),
            &base.join("keystore/key.pem"),
        )
        .unwrap()
    };
    let peers = ORGS
        .iter()
        .map(|(msp, peer)| (*msp, load(msp, format!("peers/{peer}"))))
        .collect();
    let admin = load("DSOMSP", "users/Admin".into());
    let lifecycle = ChaincodeDefinition::lifecycle(&channel);
    let chaincodes = [(lifecycle.name.clone(), lifecycle)].into_iter().collect();
    Net {
        dir,
        channel,
        chaincodes,
        peers,
        admin,
        now,
    }
}

static NONCE: AtomicU64 = AtomicU64::new(1);

/// A `_lifecycle` transaction with `kv` as its read-write set, endorsed by the peers of
/// `endorsers`.
fn tx(net: &Net, kv: kvrwset::KvrwSet, endorsers: &[&str]) -> Vec<u8> {
    let nonce = NONCE
        .fetch_add(1, Ordering::Relaxed)
        .to_be_bytes()
        .repeat(3);
    let creator = net.admin.serialized().to_vec();
    let chaincode_id = protos::ChaincodeId {
        name: LIFECYCLE_NAMESPACE.into(),
        ..Default::default()
    };
    let channel_header = common::ChannelHeader {
        r#type: common::HeaderType::EndorserTransaction as i32,
        timestamp: Some(prost_types::Timestamp {
            seconds: net.now,
            nanos: 0,
        }),
        channel_id: CHANNEL.into(),
        tx_id: compute_tx_id(&nonce, &creator),
        extension: protos::ChaincodeHeaderExtension {
            chaincode_id: Some(chaincode_id.clone()),
        }
        .encode_to_vec(),
        ..Default::default()
    }
    .encode_to_vec();
    let signature_header = common::SignatureHeader { creator, nonce }.encode_to_vec();
    let proposal_payload = protos::ChaincodeProposalPayload {
        input: b"lifecycle invocation".to_vec(),
        ..Default::default()
    }
    .encode_to_vec();
    let proposal_hash = ring::digest::digest(
        &ring::digest::SHA256,
        &[
            channel_header.as_slice(),
            &signature_header,
            &proposal_payload,
        ]
        .concat(),
    )
    .as_ref()
    .to_vec();
    let results = rwset::TxReadWriteSet {
        data_model: 0,
        ns_rwset: vec![rwset::NsReadWriteSet {
            namespace: LIFECYCLE_NAMESPACE.into(),
            rwset: kv.encode_to_vec(),
            collection_hashed_rwset: Vec::new(),
        }],
    }
    .encode_to_vec();
    let response_payload = protos::ProposalResponsePayload {
        proposal_hash,
        extension: protos::ChaincodeAction {
            results,
            events: Vec::new(),
            response: Some(protos::Response {
                status: 200,
                ..Default::default()
            }),
            chaincode_id: Some(protos::ChaincodeId {
                version: lifecycle::SYSCC_VERSION.into(),
                ..chaincode_id
            }),
        }
        .encode_to_vec(),
    }
    .encode_to_vec();
    let endorsements = endorsers
        .iter()
        .map(|msp| {
            let peer = &net.peers[msp];
            protos::Endorsement {
                endorser: peer.serialized().to_vec(),
                signature: peer.sign(&[response_payload.as_slice(), peer.serialized()].concat()),
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
        signature: net.admin.sign(&payload),
        payload,
    }
    .encode_to_vec()
}

/// A chain of blocks over an in-memory state.
struct Chain<'a> {
    net: &'a Net,
    state: InMemoryState,
    height: u64,
}

impl Chain<'_> {
    /// Validates and applies the next block; its codes.
    fn codes(&mut self, data: Vec<Vec<u8>>) -> Vec<Code> {
        let previous = format!("block {}", self.height - 1).into_bytes();
        let data = common::BlockData { data };
        let block = common::Block {
            header: Some(common::BlockHeader {
                number: self.height,
                previous_hash: previous.clone(),
                data_hash: block_data_hash(&data).to_vec(),
            }),
            data: Some(data),
            metadata: None,
        };
        let ctx = BlockContext {
            channel: &self.net.channel,
            chaincodes: &self.net.chaincodes,
            expected_number: self.height,
            previous_header_hash: &previous,
        };
        let validated = validate_block(&block, &ctx, &self.state).unwrap();
        self.state.apply(self.height, &validated.updates);
        self.height += 1;
        validated.codes
    }
}

fn definition(policy: &str) -> Definition {
    Definition {
        sequence: 1,
        name: "meters".into(),
        version: "1.0".into(),
        validation_parameter: lifecycle::application_policy(policy).unwrap(),
        ..Default::default()
    }
}

fn write(key: &str, value: &[u8]) -> kvrwset::KvWrite {
    kvrwset::KvWrite {
        key: key.into(),
        is_delete: false,
        value: value.to_vec(),
    }
}

/// `msp`'s approval of `def`: the approval and its agreement marker.
fn approval(def: &Definition, msp: &str) -> kvrwset::KvrwSet {
    kvrwset::KvrwSet {
        writes: vec![
            write(
                &lifecycle::approval_key(&def.name, def.sequence, msp),
                b"approval",
            ),
            write(
                &lifecycle::agreement_key(
                    &def.name,
                    def.sequence,
                    &lifecycle::definition_hash(def),
                    msp,
                ),
                b"approved",
            ),
        ],
        ..Default::default()
    }
}

/// A commit of `def` that read the agreement markers `read` (key, version).
fn commit(def: &Definition, read: &[(String, kvrwset::Version)]) -> kvrwset::KvrwSet {
    kvrwset::KvrwSet {
        reads: read
            .iter()
            .map(|(key, version)| kvrwset::KvRead {
                key: key.clone(),
                version: Some(*version),
            })
            .collect(),
        writes: lifecycle::definition_writes(def)
            .into_iter()
            .map(|(k, v)| write(&k, &v))
            .collect(),
        ..Default::default()
    }
}

fn agreement(def: &Definition, msp: &str) -> String {
    lifecycle::agreement_key(
        &def.name,
        def.sequence,
        &lifecycle::definition_hash(def),
        msp,
    )
}

fn at(block_num: u64, tx_num: u64) -> kvrwset::Version {
    kvrwset::Version { block_num, tx_num }
}

#[test]
fn an_approval_needs_its_own_organizations_endorsement() {
    let net = net("approve");
    let mut chain = Chain {
        net: &net,
        state: InMemoryState::new(),
        height: 1,
    };
    let def = definition("/Channel/Application/Endorsement");
    let codes = chain.codes(vec![
        tx(&net, approval(&def, "DSOMSP"), &["DSOMSP"]),
        tx(
            &net,
            approval(&def, "RetailerMSP"),
            &["DSOMSP", "CommunityMSP"],
        ),
        tx(&net, approval(&def, "NobodyMSP"), &["DSOMSP"]),
    ]);
    assert_eq!(
        codes,
        vec![
            Code::Valid,
            Code::EndorsementPolicyFailure,
            Code::EndorsementPolicyFailure
        ]
    );
}

#[test]
fn a_commit_counts_only_endorsements_of_organizations_that_approved_that_definition() {
    let net = net("commit");
    let mut chain = Chain {
        net: &net,
        state: InMemoryState::new(),
        height: 1,
    };
    let def = definition("OutOf(1, 'DSOMSP.peer')");
    let other = definition("/Channel/Application/Endorsement");
    // Block 1: DSO approves the definition, Retailer a different one.
    assert_eq!(
        chain.codes(vec![
            tx(&net, approval(&def, "DSOMSP"), &["DSOMSP"]),
            tx(&net, approval(&other, "RetailerMSP"), &["RetailerMSP"]),
        ]),
        vec![Code::Valid, Code::Valid]
    );
    // Block 2: DSO and Retailer endorse a commit of DSO's definition. Two of three is a
    // majority of endorsers, but only one approving organization: not committed. Claiming
    // Retailer's agreement for the other definition does not help.
    let dso = (agreement(&def, "DSOMSP"), at(1, 0));
    let retailer_other = (agreement(&other, "RetailerMSP"), at(1, 1));
    assert_eq!(
        chain.codes(vec![
            tx(
                &net,
                commit(&def, std::slice::from_ref(&dso)),
                &["DSOMSP", "RetailerMSP"]
            ),
            tx(
                &net,
                commit(&def, &[dso.clone(), retailer_other]),
                &["DSOMSP", "RetailerMSP"]
            ),
        ]),
        vec![
            Code::EndorsementPolicyFailure,
            Code::EndorsementPolicyFailure
        ]
    );
    // Block 3: Retailer approves the definition (replacing its other approval).
    assert_eq!(
        chain.codes(vec![tx(
            &net,
            approval(&def, "RetailerMSP"),
            &["RetailerMSP"]
        )]),
        vec![Code::Valid]
    );
    let retailer = (agreement(&def, "RetailerMSP"), at(3, 0));
    // Block 4: approvals of DSO and Retailer, but endorsed by DSO and Community: Community's
    // endorsement does not count, so still no majority. Then the same commit endorsed by the
    // two approving organizations (and Community, which changes nothing) is valid.
    assert_eq!(
        chain.codes(vec![
            tx(
                &net,
                commit(&def, &[dso.clone(), retailer.clone()]),
                &["DSOMSP", "CommunityMSP"]
            ),
            tx(
                &net,
                commit(&def, &[dso.clone(), retailer.clone()]),
                &["DSOMSP", "RetailerMSP", "CommunityMSP"]
            ),
        ]),
        vec![Code::EndorsementPolicyFailure, Code::Valid]
    );
    let written = chain
        .state
        .get(LIFECYCLE_NAMESPACE, "namespaces/fields/meters/Sequence");
    assert!(written.is_some(), "the definition is committed");
}

#[test]
fn a_commit_whose_approvals_changed_since_it_was_endorsed_is_an_mvcc_conflict() {
    let net = net("mvcc");
    let mut chain = Chain {
        net: &net,
        state: InMemoryState::new(),
        height: 1,
    };
    let def = definition("OutOf(1, 'DSOMSP.peer')");
    assert_eq!(
        chain.codes(vec![
            tx(&net, approval(&def, "DSOMSP"), &["DSOMSP"]),
            tx(&net, approval(&def, "RetailerMSP"), &["RetailerMSP"]),
        ]),
        vec![Code::Valid, Code::Valid]
    );
    let reads = [
        (agreement(&def, "DSOMSP"), at(1, 0)),
        (agreement(&def, "RetailerMSP"), at(1, 1)),
    ];
    // Retailer withdraws its agreement in the same block, before the commit.
    let withdraw = kvrwset::KvrwSet {
        writes: vec![kvrwset::KvWrite {
            key: agreement(&def, "RetailerMSP"),
            is_delete: true,
            value: Vec::new(),
        }],
        ..Default::default()
    };
    assert_eq!(
        chain.codes(vec![
            tx(&net, withdraw, &["RetailerMSP"]),
            tx(&net, commit(&def, &reads), &["DSOMSP", "RetailerMSP"]),
        ]),
        vec![Code::Valid, Code::MvccReadConflict]
    );
}
