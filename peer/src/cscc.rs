//! The configuration system chaincode `cscc`, peer-local as in Fabric: `JoinChain` (join a
//! channel with its genesis block, while the peer runs) and `GetChannels` (the channels this
//! peer has joined, as a `protos.ChannelQueryResponse`). Both arrive as signed proposals with
//! an empty channel id through `Endorser.ProcessProposal` (`peer channel join|list` send them
//! so) and are answered by this peer alone; nothing is endorsed or ordered.
//!
//! Access follows Fabric's defaults for the local MSP: `JoinChain` needs an admin of the
//! peer's own organization, `GetChannels` a member of it. The creator is authenticated by the
//! peer's local MSP when its configuration names one (`msp_dir`), as in Fabric; without one,
//! by the definitions of the peer's organization in the channels it has joined (see
//! [`Peer::local_creator`]), so such a peer joins its first channel from `<data_dir>/join/`
//! at start-up.

use crate::endorser::{ProposalError, UnpackedProposal};
use crate::node::{JoinError, Peer, now_unix_secs};
use gridledger_identity::Identity;
use gridledger_proto::prost::Message;
use gridledger_proto::protos;
use std::sync::Arc;

/// The chaincode name clients use.
pub const NAME: &str = "cscc";

/// The cscc functions GridLedger answers.
const JOIN_CHAIN: &str = "JoinChain";
const GET_CHANNELS: &str = "GetChannels";

impl Peer {
    /// The proposal's creator, authenticated by this peer's local MSP (`msp_dir`) or, without
    /// one, by its joined channels, and checked to have signed the proposal. Fails when neither
    /// knows the creator.
    pub(crate) fn local_creator(
        &self,
        p: &UnpackedProposal,
    ) -> Result<Arc<Identity>, ProposalError> {
        let creator = &p.signature_header.creator;
        let identity = match self.local_msp() {
            Some(local) => local
                .deserialize_identity(creator, now_unix_secs())
                .map_err(|e| {
                    ProposalError::AccessDenied(format!(
                        "the creator is not a valid identity of this peer's local MSP ({}): {e}",
                        self.config().msp_id
                    ))
                })?,
            None => self.channel_creator(creator)?,
        };
        identity
            .verify(&p.signed.proposal_bytes, &p.signed.signature)
            .map_err(|e| {
                ProposalError::AccessDenied(format!(
                    "the creator's signature over the proposal is invalid: {e}"
                ))
            })?;
        Ok(identity)
    }

    /// The serialized `creator`, validated by the MSPs of the first joined channel that knows
    /// its organization (a peer without a local MSP).
    fn channel_creator(&self, creator: &[u8]) -> Result<Arc<Identity>, ProposalError> {
        let channels = self.channels();
        if channels.is_empty() {
            return Err(ProposalError::AccessDenied(
                "the peer has joined no channel and has no local MSP (msp_dir in its \
                 configuration) to authenticate an admin with (set msp_dir, or put the first \
                 channel's genesis block in <data_dir>/join/ and restart the peer)"
                    .into(),
            ));
        }
        let mut last = String::new();
        for channel in channels {
            match channel
                .config()
                .msp_manager()
                .deserialize_identity(creator, now_unix_secs())
            {
                Ok(identity) => return Ok(identity),
                Err(e) => last = e.to_string(),
            }
        }
        Err(ProposalError::AccessDenied(format!(
            "the creator is not a valid identity of any channel this peer joined: {last}"
        )))
    }

    /// Checks that the creator is of this peer's organization (and an admin of it when
    /// `admin`); `what` names the action in the refusal.
    fn check_local_role(
        &self,
        p: &UnpackedProposal,
        admin: bool,
        what: &str,
    ) -> Result<(), ProposalError> {
        let identity = self.local_creator(p)?;
        let own = identity.msp_id() == self.config().msp_id;
        if own && (!admin || identity.is_admin()) {
            return Ok(());
        }
        Err(ProposalError::AccessDenied(format!(
            "only {} of {} may {what} (the creator is {} of {})",
            if admin { "an admin" } else { "a member" },
            self.config().msp_id,
            if identity.is_admin() {
                "an admin"
            } else {
                "not an admin"
            },
            identity.msp_id()
        )))
    }

    /// Runs one peer-local cscc function. Refusals of access are errors; a failed join is a
    /// response with status 500 and the reason, as Fabric's cscc answers.
    pub fn cscc(&self, p: &UnpackedProposal) -> Result<protos::Response, ProposalError> {
        let function = p
            .input
            .args
            .first()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .unwrap_or_default();
        match function.as_str() {
            JOIN_CHAIN => {
                self.check_local_role(p, true, "join this peer to a channel")?;
                let Some(block) = p.input.args.get(1).filter(|b| !b.is_empty()) else {
                    return Ok(fail(
                        "JoinChain needs the channel's genesis block as its argument".into(),
                    ));
                };
                Ok(match self.join(block) {
                    Ok(channel) => {
                        tracing::info!(channel = %channel.id(), "channel joined through cscc JoinChain");
                        ok(Vec::new())
                    }
                    Err(e) => {
                        if !matches!(e, JoinError::AlreadyJoined { .. }) {
                            tracing::warn!(error = %e, "cscc JoinChain failed");
                        }
                        fail(format!("JoinChain failed: {e}"))
                    }
                })
            }
            GET_CHANNELS => {
                // Without a local MSP and with no channel joined there is nobody to
                // authenticate, and nothing to hide.
                if self.local_msp().is_some() || !self.channels().is_empty() {
                    self.check_local_role(p, false, "list the channels of this peer")?;
                }
                Ok(ok(channel_list(
                    self.channels().iter().map(|c| c.id().to_owned()),
                )))
            }
            other => Ok(fail(format!(
                "unknown cscc function {other:?}: this peer answers {JOIN_CHAIN} and {GET_CHANNELS}"
            ))),
        }
    }
}

/// The `protos.ChannelQueryResponse` listing `ids`.
fn channel_list(ids: impl Iterator<Item = String>) -> Vec<u8> {
    protos::ChannelQueryResponse {
        channels: ids
            .map(|channel_id| protos::ChannelInfo { channel_id })
            .collect(),
    }
    .encode_to_vec()
}

fn ok(payload: Vec<u8>) -> protos::Response {
    protos::Response {
        status: 200,
        message: String::new(),
        payload,
    }
}

fn fail(message: String) -> protos::Response {
    protos::Response {
        status: 500,
        message,
        payload: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endorser::unpack;
    use gridledger_identity::SigningIdentity;
    use gridledger_identity::material::{self, CryptoConfig};
    use gridledger_proto::common;
    use std::path::{Path, PathBuf};

    const CRYPTO: &str = r#"
seed = "gridledger-cscc-tests"

[[organizations]]
msp_id = "OrdererMSP"
orderers = [{ name = "orderer0" }]

[[organizations]]
msp_id = "DSOMSP"
peers = [{ name = "peer0.dso" }]
users = [{ name = "User1" }]

[[organizations]]
msp_id = "RetailerMSP"
peers = [{ name = "peer0.retailer" }]
"#;

    /// A folder with crypto material, the genesis blocks of `market` and `grid`, and the DSO
    /// peer's configuration (joining `market` at start-up); removed on drop.
    struct World {
        dir: PathBuf,
    }

    impl Drop for World {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    impl World {
        fn new(name: &str) -> World {
            let dir =
                std::env::temp_dir().join(format!("gridledger-cscc-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let crypto: CryptoConfig = toml::from_str(CRYPTO).expect("crypto config parses");
            let now = i64::try_from(now_unix_secs()).expect("the clock fits an i64");
            material::generate(&crypto, &dir, now - 3600).expect("generate crypto material");
            let world = World { dir };
            let data = world.dir.join("data");
            std::fs::create_dir_all(data.join("join")).expect("create the join folder");
            std::fs::write(data.join("join/market.block"), world.genesis("market"))
                .expect("write the join block");
            world
        }

        fn genesis(&self, channel: &str) -> Vec<u8> {
            let o = "organizations/OrdererMSP";
            let mut spec = format!(
                "name = \"{channel}\"\n\n[orderer]\ntype = \"etcdraft\"\n\n[[orderer.organizations]]\n\
                 msp_id = \"OrdererMSP\"\nmsp_dir = \"{o}/msp\"\nendpoints = [\"127.0.0.1:7050\"]\n\n\
                 [[orderer.consenters]]\nhost = \"127.0.0.1\"\nport = 7050\n\
                 client_tls_cert = \"{o}/orderers/orderer0/tls/server.crt\"\n\
                 server_tls_cert = \"{o}/orderers/orderer0/tls/server.crt\"\n"
            );
            for msp in ["DSOMSP", "RetailerMSP"] {
                spec.push_str(&format!(
                    "\n[[organizations]]\nmsp_id = \"{msp}\"\nmsp_dir = \"organizations/{msp}/msp\"\n"
                ));
            }
            let config = gridledger_channels::config::ChannelSpec::parse(&spec)
                .expect("channel spec parses")
                .to_config(&self.dir)
                .expect("channel config builds");
            gridledger_channels::genesis::genesis_block(
                channel,
                config,
                prost_types::Timestamp::default(),
            )
            .encode_to_vec()
        }

        fn peer(&self) -> Arc<Peer> {
            self.peer_in("data", "")
        }

        /// The DSO peer with its ledgers in `data` and `extra` appended to its configuration
        /// (relative paths there start from the world's folder).
        fn peer_in(&self, data: &str, extra: &str) -> Arc<Peer> {
            let node = self.dir.join("organizations/DSOMSP/peers/peer0.dso");
            let s = |p: &Path| p.display().to_string();
            let text = format!(
                "name = \"peer0.dso\"\nmsp_id = \"DSOMSP\"\nlisten = \"127.0.0.1:0\"\n\
                 data_dir = \"{}\"\nsigning_cert = \"{}\"\nsigning_key = \"{}\"\n\
                 tls_cert = \"{}\"\ntls_key = \"{}\"\n{extra}",
                s(&self.dir.join(data)),
                s(&node.join("msp/signcerts/cert.pem")),
                s(&node.join("msp/keystore/key.pem")),
                s(&node.join("tls/server.crt")),
                s(&node.join("tls/server.key")),
            );
            let file = self.dir.join("peer.toml");
            std::fs::write(&file, text).expect("write the peer config");
            Peer::open(crate::PeerConfig::load(&file).expect("peer config loads"))
                .expect("the peer opens")
        }

        fn user(&self, msp: &str, user: &str) -> SigningIdentity {
            let base = self
                .dir
                .join(format!("organizations/{msp}/users/{user}/msp"));
            SigningIdentity::load(
                msp,
                &base.join("signcerts/cert.pem"),
                &base.join("keystore/key.pem"),
            )
            .expect("load the identity")
        }
    }

    /// A cscc proposal with an empty channel id, signed by `signer`, as `peer channel join`
    /// sends it (a CONFIG header).
    fn proposal(signer: &SigningIdentity, args: &[&[u8]]) -> UnpackedProposal {
        let creator = signer.serialized().to_vec();
        let nonce = b"cscc-test-nonce-0123456789".to_vec();
        let chaincode_id = Some(protos::ChaincodeId {
            name: NAME.into(),
            ..Default::default()
        });
        let channel_header = common::ChannelHeader {
            r#type: common::HeaderType::Config as i32,
            tx_id: gridledger_proto::compute_tx_id(&nonce, &creator),
            extension: protos::ChaincodeHeaderExtension {
                chaincode_id: chaincode_id.clone(),
            }
            .encode_to_vec(),
            ..Default::default()
        };
        let header = common::Header {
            channel_header: channel_header.encode_to_vec(),
            signature_header: common::SignatureHeader { creator, nonce }.encode_to_vec(),
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
        let proposal_bytes = protos::Proposal {
            header: header.encode_to_vec(),
            payload: protos::ChaincodeProposalPayload {
                input: spec.encode_to_vec(),
                transient_map: Default::default(),
            }
            .encode_to_vec(),
            extension: Vec::new(),
        }
        .encode_to_vec();
        let signed = protos::SignedProposal {
            signature: signer.sign(&proposal_bytes),
            proposal_bytes,
        };
        unpack(&signed).expect("a well-formed cscc proposal")
    }

    fn channels(peer: &Peer, signer: &SigningIdentity) -> Vec<String> {
        let response = peer
            .cscc(&proposal(signer, &[b"GetChannels"]))
            .expect("GetChannels allowed");
        assert_eq!(response.status, 200, "{}", response.message);
        protos::ChannelQueryResponse::decode(response.payload.as_slice())
            .expect("a ChannelQueryResponse")
            .channels
            .into_iter()
            .map(|c| c.channel_id)
            .collect()
    }

    #[test]
    fn an_admin_joins_a_running_peer_to_a_channel_once() {
        let world = World::new("join");
        let peer = world.peer();
        let admin = world.user("DSOMSP", "Admin");
        assert_eq!(channels(&peer, &admin), ["market"]);

        let grid = world.genesis("grid");
        let joined = peer
            .cscc(&proposal(&admin, &[b"JoinChain", &grid]))
            .expect("an admin may join");
        assert_eq!(joined.status, 200, "{}", joined.message);
        let channel = peer.channel("grid").expect("grid is open");
        assert_eq!(channel.ledger().height(), 1);
        assert_eq!(channel.config().channel_id(), "grid");
        assert_eq!(channels(&peer, &admin), ["grid", "market"]);

        let again = peer
            .cscc(&proposal(&admin, &[b"JoinChain", &grid]))
            .expect("answered");
        assert_eq!(again.status, 500);
        assert!(
            again.message.contains("channel grid is already joined"),
            "{}",
            again.message
        );
        assert_eq!(peer.channel("grid").map(|c| c.ledger().height()), Some(1));

        // A restarted peer opens the channel joined at run time.
        drop((channel, peer));
        let peer = world.peer();
        assert_eq!(channels(&peer, &admin), ["grid", "market"]);
    }

    #[test]
    fn only_an_admin_of_the_peers_organization_may_join() {
        let world = World::new("access");
        let peer = world.peer();
        let grid = world.genesis("grid");
        for (msp, user, expected) in [
            ("DSOMSP", "User1", "not an admin of DSOMSP"),
            ("RetailerMSP", "Admin", "an admin of RetailerMSP"),
        ] {
            let refused = peer.cscc(&proposal(&world.user(msp, user), &[b"JoinChain", &grid]));
            match refused {
                Err(ProposalError::AccessDenied(reason)) => assert!(
                    reason.contains("only an admin of DSOMSP") && reason.contains(expected),
                    "{reason}"
                ),
                other => panic!("{user} of {msp} must be refused, got {other:?}"),
            }
        }
        assert!(peer.channel("grid").is_none());
        // A member of the peer's organization may list its channels; another org may not.
        assert_eq!(channels(&peer, &world.user("DSOMSP", "User1")), ["market"]);
        assert!(matches!(
            peer.cscc(&proposal(
                &world.user("RetailerMSP", "Admin"),
                &[b"GetChannels"]
            )),
            Err(ProposalError::AccessDenied(_))
        ));
    }

    #[test]
    fn unusable_blocks_are_refused_and_leave_no_channel() {
        let world = World::new("blocks");
        let peer = world.peer();
        let admin = world.user("DSOMSP", "Admin");
        let mut later = common::Block::decode(world.genesis("grid").as_slice()).expect("block");
        later.header.as_mut().expect("a header").number = 4;
        for (block, expected) in [
            (b"garbage".to_vec(), "not a valid genesis block"),
            (later.encode_to_vec(), "block 4 is not a genesis block"),
            (
                common::Block {
                    header: Some(common::BlockHeader::default()),
                    ..Default::default()
                }
                .encode_to_vec(),
                "not a valid config block",
            ),
            (Vec::new(), "needs the channel's genesis block"),
        ] {
            let answer = peer
                .cscc(&proposal(&admin, &[b"JoinChain", &block]))
                .expect("answered");
            assert_eq!(answer.status, 500);
            assert!(answer.message.contains(expected), "{}", answer.message);
        }
        let unknown = peer
            .cscc(&proposal(&admin, &[b"GetConfigTree"]))
            .expect("answered");
        assert!(unknown.message.contains("unknown cscc function"));
        let folders: Vec<String> = std::fs::read_dir(world.dir.join("data/channels"))
            .expect("the channels folder")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(folders, ["market"]);
    }

    #[test]
    fn an_unfinished_join_is_cleared_at_start_up() {
        let world = World::new("staging");
        drop(world.peer());
        let staging = world.dir.join("data/channels/.joining-grid");
        std::fs::create_dir_all(&staging).expect("create a staging folder");
        std::fs::write(staging.join("ledger.redb"), b"half written").expect("write");
        let peer = world.peer();
        assert!(!staging.exists(), "the unfinished join is removed");
        assert!(peer.channel("grid").is_none());
        let admin = world.user("DSOMSP", "Admin");
        let joined = peer
            .cscc(&proposal(&admin, &[b"JoinChain", &world.genesis("grid")]))
            .expect("answered");
        assert_eq!(joined.status, 200, "{}", joined.message);
    }

    #[test]
    fn a_peer_with_a_local_msp_and_no_channel_is_joined_by_its_admin() {
        let world = World::new("local-msp");
        // No local MSP and no channel: nobody can be authenticated.
        let bare = world.peer_in("bare", "");
        let admin = world.user("DSOMSP", "Admin");
        let grid = world.genesis("grid");
        match bare.cscc(&proposal(&admin, &[b"JoinChain", &grid])) {
            Err(ProposalError::AccessDenied(reason)) => {
                assert!(reason.contains("no local MSP (msp_dir"), "{reason}")
            }
            other => panic!("a peer without channels or msp_dir must refuse, got {other:?}"),
        }
        drop(bare);

        // With msp_dir (relative to the config file's folder) the folder decides.
        let peer = world.peer_in("fresh", "msp_dir = \"organizations/DSOMSP/msp\"\n");
        assert!(peer.channels().is_empty());
        assert!(peer.local_msp().is_some());
        assert_eq!(
            channels(&peer, &world.user("DSOMSP", "User1")),
            Vec::<String>::new()
        );
        for (msp, user, expected) in [
            ("DSOMSP", "User1", "only an admin of DSOMSP"),
            ("RetailerMSP", "Admin", "local MSP (DSOMSP)"),
        ] {
            let signer = world.user(msp, user);
            for args in [&[&b"JoinChain"[..], &grid][..], &[b"GetChannels"]] {
                if msp == "DSOMSP" && args.len() == 1 {
                    continue; // a member may list the channels
                }
                match peer.cscc(&proposal(&signer, args)) {
                    Err(ProposalError::AccessDenied(reason)) => {
                        assert!(reason.contains(expected), "{user} of {msp}: {reason}")
                    }
                    other => panic!("{user} of {msp} must be refused, got {other:?}"),
                }
            }
        }
        // Installed-chaincode queries follow the same rule.
        let query = gridledger_proto::lifecycle::QueryInstalledChaincodesArgs {}.encode_to_vec();
        assert!(matches!(
            peer.lifecycle_local(&proposal(
                &world.user("DSOMSP", "User1"),
                &[b"QueryInstalledChaincodes", &query]
            )),
            Err(ProposalError::AccessDenied(_))
        ));
        let installed = peer
            .lifecycle_local(&proposal(&admin, &[b"QueryInstalledChaincodes", &query]))
            .expect("the admin may query");
        assert_eq!(installed.status, 200, "{}", installed.message);
        assert!(peer.channel("grid").is_none());

        let joined = peer
            .cscc(&proposal(&admin, &[b"JoinChain", &grid]))
            .expect("the local MSP's admin may join");
        assert_eq!(joined.status, 200, "{}", joined.message);
        assert_eq!(peer.channel("grid").map(|c| c.ledger().height()), Some(1));
        assert_eq!(channels(&peer, &admin), ["grid"]);
    }
}
