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
//!
//! The logic lives in `gridledger_fuzz::proposal`, shared with the stable replay test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gridledger_fuzz::proposal::run(data));
