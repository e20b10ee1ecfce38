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
//!
//! The logic lives in `gridledger_fuzz::proposal_response`, shared with the stable replay test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gridledger_fuzz::proposal_response::run(data));
