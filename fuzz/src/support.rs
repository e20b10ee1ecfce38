//! The fixed world the fuzz targets check inputs against, built once per process.
//!
//! - [`fabric`]: channel `mychannel` of the real Fabric 2.5.5 chain in
//!   `tests/fixtures/fabric-2.5.5-chain` (its genesis config, its chaincodes), so that the
//!   fixture's blocks and envelopes — valid signatures included — are seeds that reach the
//!   deepest checks.
//! - [`synthetic`]: the same channel config with Org1MSP and OrdererMSP rooted at CAs
//!   generated here from fixed seeds, with signing identities of each role, so targets can
//!   sign what the fuzzer mutates (a client signs its transaction; an admin signs an update).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use gridledger_channels::config::ChannelConfig;
use gridledger_channels::genesis::config_from_block;
use gridledger_identity::material::{CertificateAuthority, LeafSpec, Seed};
use gridledger_identity::{Identity, Role, SigningIdentity};
use gridledger_peer::endorser::{UnpackedProposal, unpack};
use gridledger_peer::validation::{
    BlockContext, ChaincodeDefinition, EndorsementPolicy, InMemoryState, ValidatedBlock,
    validate_block,
};
use gridledger_proto::{block_data_hash, block_header_hash, common, compute_tx_id, msp, protos};
use prost::Message;

/// The genesis block of the Fabric fixture chain.
pub const FABRIC_GENESIS: &[u8] =
    include_bytes!("../../tests/fixtures/fabric-2.5.5-chain/block000.pb");
/// Block 1 of the Fabric fixture chain (one `_lifecycle` transaction).
pub const FABRIC_BLOCK_1: &[u8] =
    include_bytes!("../../tests/fixtures/fabric-2.5.5-chain/block001.pb");

/// The validation time of the synthetic world (June 2025), inside every certificate's validity.
pub const NOW: i64 = 1_750_000_000;
const DAY: i64 = 86_400;

/// A channel to validate against, with the chaincodes defined on it.
pub struct World {
    /// The channel's config.
    pub channel: ChannelConfig,
    /// Chaincode definitions by name, `_lifecycle` included.
    pub chaincodes: BTreeMap<String, ChaincodeDefinition>,
    /// The header hash the next block (number 1) must chain to.
    pub genesis_hash: Vec<u8>,
    /// The time identities are validated at, Unix seconds.
    pub now: u64,
}

impl World {
    /// Validates a block holding `envelope` alone as the channel's block 1 over an empty world
    /// state, as the committing peer does; `None` only if the block as a whole is refused,
    /// which a well-formed block 1 never is.
    pub fn validate_alone(&self, envelope: Vec<u8>) -> Option<ValidatedBlock> {
        let block = next_block(1, &self.genesis_hash, vec![envelope]);
        validate_block(
            &block,
            &self.context(1, &self.genesis_hash),
            &InMemoryState::new(),
        )
        .ok()
    }

    /// The block context of block `number` chaining to `previous`.
    pub fn context<'a>(&'a self, number: u64, previous: &'a [u8]) -> BlockContext<'a> {
        BlockContext {
            channel: &self.channel,
            chaincodes: &self.chaincodes,
            expected_number: number,
            previous_header_hash: previous,
        }
    }
}

/// A block with `data`, a header whose data hash is right, and no metadata.
pub fn next_block(number: u64, previous: &[u8], data: Vec<Vec<u8>>) -> common::Block {
    let data = common::BlockData { data };
    common::Block {
        header: Some(common::BlockHeader {
            number,
            previous_hash: previous.to_vec(),
            data_hash: block_data_hash(&data).to_vec(),
        }),
        data: Some(data),
        metadata: Some(common::BlockMetadata::default()),
    }
}

/// `_lifecycle` by Fabric's rule and the fixture's application chaincodes, endorsed by the
/// channel's `/Channel/Application/Endorsement`; plus `strict`, which needs a peer and an
/// admin of Org1 (an explicit signature policy).
fn chaincodes(channel: &ChannelConfig) -> BTreeMap<String, ChaincodeDefinition> {
    let mut out = BTreeMap::new();
    let lifecycle = ChaincodeDefinition::lifecycle(channel);
    out.insert(lifecycle.name.clone(), lifecycle);
    for name in ["asset", "basic", "hcc"] {
        out.insert(
            name.to_string(),
            ChaincodeDefinition {
                name: name.to_string(),
                version: "1.0".to_string(),
                endorsement: EndorsementPolicy::ChannelPolicy(
                    "/Channel/Application/Endorsement".to_string(),
                ),
                collections: BTreeMap::new(),
            },
        );
    }
    let strict = gridledger_channels::policy::parse("AND('Org1MSP.peer', 'Org1MSP.admin')")
        .expect("a fixed policy parses");
    out.insert(
        "strict".to_string(),
        ChaincodeDefinition {
            name: "strict".to_string(),
            version: "1".to_string(),
            endorsement: EndorsementPolicy::Signature(strict),
            collections: BTreeMap::new(),
        },
    );
    out
}

/// The channel of the Fabric fixture chain, at the time of its block 1.
pub fn fabric() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let genesis =
            common::Block::decode(FABRIC_GENESIS).expect("the fixture genesis block decodes");
        let channel = ChannelConfig::from_block(&genesis).expect("the fixture config is valid");
        let block_1 = common::Block::decode(FABRIC_BLOCK_1).expect("fixture block 1 decodes");
        World {
            chaincodes: chaincodes(&channel),
            channel,
            genesis_hash: block_header_hash(genesis.header.as_ref().expect("a header")).to_vec(),
            now: transaction_time(&block_1.data.expect("data").data[0]),
        }
    })
}

/// The channel header timestamp of an envelope (seconds), 0 if it has none.
fn transaction_time(envelope: &[u8]) -> u64 {
    common::Envelope::decode(envelope)
        .ok()
        .and_then(|e| common::Payload::decode(e.payload.as_slice()).ok())
        .and_then(|p| p.header)
        .and_then(|h| common::ChannelHeader::decode(h.channel_header.as_slice()).ok())
        .and_then(|c| c.timestamp)
        .map_or(0, |t| u64::try_from(t.seconds).unwrap_or(0))
}

/// The synthetic channel and its signers.
pub struct Synthetic {
    /// The channel and chaincodes, at [`NOW`].
    pub world: World,
    /// Org1MSP's root CA.
    pub org1_ca: CertificateAuthority,
    /// A client of Org1MSP.
    pub client: SigningIdentity,
    /// A peer of Org1MSP.
    pub peer: SigningIdentity,
    /// An admin of Org1MSP.
    pub admin: SigningIdentity,
    /// An orderer of OrdererMSP.
    pub orderer: SigningIdentity,
    /// An admin of OrdererMSP.
    pub orderer_admin: SigningIdentity,
    /// The validated identities of `client`, `peer`, `admin`, `orderer`, `orderer_admin`.
    pub identities: Vec<Arc<Identity>>,
    /// A proposal of `client` invoking chaincode `basic`, unpacked by the endorser.
    pub proposal: UnpackedProposal,
}

fn ca(msp_id: &str) -> CertificateAuthority {
    CertificateAuthority::new_root(
        &Seed::from_text(&format!("fuzz/{msp_id}")),
        msp_id,
        &format!("ca.{msp_id}"),
        NOW - 30 * DAY,
        NOW + 3650 * DAY,
    )
    .expect("a root CA can be generated")
}

fn issue(ca: &CertificateAuthority, msp_id: &str, name: &str, role: Role) -> SigningIdentity {
    let issued = ca
        .issue(
            msp_id,
            &LeafSpec::new(name, Some(role), NOW - DAY, NOW + 365 * DAY),
        )
        .expect("a leaf can be issued");
    SigningIdentity::from_pem(
        msp_id,
        issued.cert_pem.as_bytes(),
        issued.key_pem.as_bytes(),
    )
    .expect("an issued identity loads")
}

/// An `msp.MSPConfig` value for `msp_id` rooted at `ca`, with NodeOUs.
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

/// Replaces the `MSP` value of the group at `path` (group names from the root).
fn set_msp(root: &mut common::ConfigGroup, path: &[&str], value: Vec<u8>) {
    let mut group = root;
    for name in path {
        group = group
            .groups
            .get_mut(*name)
            .expect("the fixture has this group");
    }
    group
        .values
        .get_mut("MSP")
        .expect("an org has an MSP")
        .value = value;
}

/// The synthetic channel (see the module doc).
pub fn synthetic() -> &'static Synthetic {
    static SYNTHETIC: OnceLock<Synthetic> = OnceLock::new();
    SYNTHETIC.get_or_init(|| {
        let genesis =
            common::Block::decode(FABRIC_GENESIS).expect("the fixture genesis block decodes");
        let (channel_id, mut config) = config_from_block(&genesis).expect("a config block");
        let org1_ca = ca("Org1MSP");
        let orderer_ca = ca("OrdererMSP");
        let root = config.channel_group.as_mut().expect("a channel group");
        set_msp(
            root,
            &["Application", "Org1MSP"],
            msp_value("Org1MSP", &org1_ca),
        );
        set_msp(
            root,
            &["Orderer", "OrdererOrg"],
            msp_value("OrdererMSP", &orderer_ca),
        );
        let channel = ChannelConfig::from_config(&channel_id, &config).expect("a valid config");
        let client = issue(&org1_ca, "Org1MSP", "User1@org1", Role::Client);
        let peer = issue(&org1_ca, "Org1MSP", "peer0.org1", Role::Peer);
        let admin = issue(&org1_ca, "Org1MSP", "Admin@org1", Role::Admin);
        let orderer = issue(&orderer_ca, "OrdererMSP", "orderer0", Role::Orderer);
        let orderer_admin = issue(&orderer_ca, "OrdererMSP", "Admin@orderer", Role::Admin);
        let now = u64::try_from(NOW).expect("NOW is positive");
        let identities = [&client, &peer, &admin, &orderer, &orderer_admin]
            .iter()
            .map(|s| {
                channel
                    .msp_manager()
                    .deserialize_identity(s.serialized(), now)
                    .expect("an issued identity is valid on the channel")
            })
            .collect();
        let signed = signed_proposal(&client, &channel_id, "basic", &[b"put", b"k", b"v"], 1);
        let proposal = unpack(&signed).expect("a well-formed proposal unpacks");
        Synthetic {
            world: World {
                chaincodes: chaincodes(&channel),
                channel,
                genesis_hash: block_header_hash(genesis.header.as_ref().expect("a header"))
                    .to_vec(),
                now,
            },
            org1_ca,
            client,
            peer,
            admin,
            orderer,
            orderer_admin,
            identities,
            proposal,
        }
    })
}

/// A proposal of `creator` to invoke `chaincode` with `args` on `channel_id`, signed, with a
/// nonce made of `nonce` and a timestamp of [`NOW`].
pub fn signed_proposal(
    creator: &SigningIdentity,
    channel_id: &str,
    chaincode: &str,
    args: &[&[u8]],
    nonce: u64,
) -> protos::SignedProposal {
    let nonce = nonce.to_be_bytes().repeat(3);
    let serialized = creator.serialized().to_vec();
    let chaincode_id = Some(protos::ChaincodeId {
        name: chaincode.to_string(),
        ..Default::default()
    });
    let channel_header = common::ChannelHeader {
        r#type: common::HeaderType::EndorserTransaction as i32,
        timestamp: Some(prost_types::Timestamp {
            seconds: NOW,
            nanos: 0,
        }),
        channel_id: channel_id.to_string(),
        tx_id: compute_tx_id(&nonce, &serialized),
        extension: protos::ChaincodeHeaderExtension {
            chaincode_id: chaincode_id.clone(),
        }
        .encode_to_vec(),
        ..Default::default()
    };
    let header = common::Header {
        channel_header: channel_header.encode_to_vec(),
        signature_header: common::SignatureHeader {
            creator: serialized,
            nonce,
        }
        .encode_to_vec(),
    };
    let spec = protos::ChaincodeInvocationSpec {
        chaincode_spec: Some(protos::ChaincodeSpec {
            chaincode_id,
            input: Some(protos::ChaincodeInput {
                args: args.iter().map(|a| a.to_vec()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let proposal = protos::Proposal {
        header: header.encode_to_vec(),
        payload: protos::ChaincodeProposalPayload {
            input: spec.encode_to_vec(),
            transient_map: Default::default(),
        }
        .encode_to_vec(),
        extension: Vec::new(),
    };
    let proposal_bytes = proposal.encode_to_vec();
    protos::SignedProposal {
        signature: creator.sign(&proposal_bytes),
        proposal_bytes,
    }
}
