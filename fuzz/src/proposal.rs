//! Target `proposal`: a `protos.SignedProposal` as a client sends it to the peer's Endorser
//! (`ProcessProposal`) or Gateway (`Evaluate`/`Endorse`). Models a client sending arbitrary
//! proposal bytes: proposal, header, channel header extension, invocation spec and transient
//! map, creator and signature.
//!
//! Checks: the endorser's unpacking (`gridledger_peer::endorser::unpack`) never panics, and
//! what it accepts keeps its promises (the tx id is `hex(sha256(nonce ‖ creator))`, a
//! chaincode is named, the proposal hash is a SHA-256); then the creator checks the endorser
//! makes before simulating (valid identity of the channel at the proposal's time, signature
//! over the proposal bytes, `/Channel/Application/Writers`) and the gateway's prepared
//! transaction built from it, whose header must be the proposal's.

use gridledger_channels::policy::SignedData;
use gridledger_peer::endorser::unpack;
use gridledger_peer::gateway::prepared_transaction;
use gridledger_proto::{common, compute_tx_id, protos};
use prost::Message;

use crate::support;

/// Feeds `data` to the endorser's and gateway's proposal handling.
pub fn run(data: &[u8]) {
    let Ok(signed) = protos::SignedProposal::decode(data) else {
        return;
    };
    let Ok(p) = unpack(&signed) else {
        return;
    };
    assert_eq!(
        p.channel_header.tx_id,
        compute_tx_id(&p.signature_header.nonce, &p.signature_header.creator),
        "an unpacked proposal's tx id is bound to its nonce and creator"
    );
    assert!(
        !p.chaincode_name.is_empty(),
        "an unpacked proposal names a chaincode"
    );
    assert_eq!(p.proposal_hash.len(), 32, "the proposal hash is a SHA-256");

    let world = &support::synthetic().world;
    let msps = world.channel.msp_manager();
    if let Ok(creator) = msps.deserialize_identity(&p.signature_header.creator, world.now) {
        let _ = creator.verify(&signed.proposal_bytes, &signed.signature);
    }
    let _ = world.channel.policies().check(
        "/Channel/Application/Writers",
        &[SignedData {
            data: &signed.proposal_bytes,
            identity: &p.signature_header.creator,
            signature: &signed.signature,
        }],
        msps,
        world.now,
    );

    let envelope = prepared_transaction(&p, Vec::new(), Vec::new());
    let payload = common::Payload::decode(envelope.payload.as_slice())
        .expect("a prepared transaction's payload decodes");
    assert_eq!(
        payload.header.as_ref(),
        Some(&p.header),
        "the proposal's header is kept"
    );
}
