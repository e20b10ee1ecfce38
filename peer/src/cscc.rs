//! The configuration system chaincode `cscc`, peer-local as in Fabric: `JoinChain` (join a
//! channel with its genesis block, while the peer runs) and `GetChannels` (the channels this
//! peer has joined, as a `protos.ChannelQueryResponse`). Both arrive as signed proposals with
//! an empty channel id through `Endorser.ProcessProposal` (`peer channel join|list` send them
//! so) and are answered by this peer alone; nothing is endorsed or ordered.
//!
//! Access follows Fabric's defaults for the local MSP: `JoinChain` needs an admin of the
//! peer's own organization, `GetChannels` a member of it. The peer keeps no MSP of its own
//! besides its channels', so the creator is authenticated by the definitions of the peer's
//! organization in the channels it has joined (see [`Peer::local_creator`]); a peer that has
//! joined no channel yet joins its first one from `<data_dir>/join/` at start-up.

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
    /// The proposal's creator, authenticated by this peer's joined channels and checked to
    /// have signed the proposal. Fails when no joined channel knows the creator.
    pub(crate) fn local_creator(
        &self,
        p: &UnpackedProposal,
    ) -> Result<Arc<Identity>, ProposalError> {
        let channels = self.channels();
        if channels.is_empty() {
            return Err(ProposalError::AccessDenied(
                "the peer has joined no channel, so it has no MSP to authenticate an admin with \
                 (put the first channel's genesis block in <data_dir>/join/ and restart the peer)"
                    .into(),
            ));
        }
        let mut last = String::new();
        for channel in channels {
            match channel
                .config()
                .msp_manager()
                .deserialize_identity(&p.signature_header.creator, now_unix_secs())
            {
                Ok(identity) => {
                    identity
                        .verify(&p.signed.proposal_bytes, &p.signed.signature)
                        .map_err(|e| {
                            ProposalError::AccessDenied(format!(
                                "the creator's signature over the proposal is invalid: {e}"
                            ))
                        })?;
                    return Ok(identity);
                }
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
                // With no channel joined there is nobody to authenticate, and nothing to hide.
                if !self.channels().is_empty() {
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
