//! Target `proposal_response`: a `protos.ProposalResponse` as an endorsing peer returns it to
//! the gateway, whose payload and endorsement end up in the transaction the validator checks.
//! Models a malicious or broken endorsing peer: response status and message, the
//! `ProposalResponsePayload` (proposal hash, chaincode action, read-write set, events) and the
//! endorsement (endorser identity, signature) are all its own.
//!
//! Checks: the gateway's acceptance rule (status below 400 with an endorsement), its prepared
//! transaction, signed by an honest client, and the peer's validation of that transaction
//! (endorsement signatures, endorsement policy, proposal-hash binding, read-write set) never
//! panic; and a transaction validated VALID carries a payload bound to the client's proposal.

use gridledger_peer::gateway::prepared_transaction;
use gridledger_proto::protos::{self, TxValidationCode};
use prost::Message;

use crate::support;

/// Feeds `data` through the gateway's assembly and the validator.
pub fn run(data: &[u8]) {
    let Ok(response) = protos::ProposalResponse::decode(data) else {
        return;
    };
    let status = response.response.as_ref().map_or(500, |r| r.status);
    let Some(endorsement) = response.endorsement.clone() else {
        return;
    };
    if status >= 400 {
        return;
    }
    let net = support::synthetic();
    let mut envelope =
        prepared_transaction(&net.proposal, response.payload.clone(), vec![endorsement]);
    envelope.signature = net.client.sign(&envelope.payload);
    let validated = net
        .world
        .validate_alone(envelope.encode_to_vec())
        .expect("a well-formed block 1 is never refused as a whole");
    if validated.codes == [TxValidationCode::Valid] {
        let payload = protos::ProposalResponsePayload::decode(response.payload.as_slice())
            .expect("a VALID transaction's response payload decodes");
        assert_eq!(
            payload.proposal_hash, net.proposal.proposal_hash,
            "a VALID transaction's response is bound to its proposal"
        );
    }
}
