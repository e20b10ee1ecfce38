//! Target `policy`: endorsement and channel policies as they arrive from the network and from
//! operators — `SignaturePolicyEnvelope` and `ImplicitMetaPolicy` bytes (chaincode
//! definitions, channel config values, key-level endorsement metadata) and the policy text
//! language (`AND('Org1MSP.peer', OutOf(1, …))`, `MAJORITY Endorsement`) of CLI flags and
//! channel specs. Models a member that writes arbitrary policies into a definition or config,
//! and a user typing arbitrary text.
//!
//! The first byte selects the decoder: 0 policy text, 1 implicit-meta text, 2
//! `SignaturePolicyEnvelope` bytes, 3 `ImplicitMetaPolicy` bytes; the rest is its input.
//!
//! Checks: parsing, compiling and evaluating against a fixed set of valid signers never panic;
//! text that parses prints back to text that parses to the same policy; a policy that prints
//! as text evaluates the same after being parsed back.
//!
//! The logic lives in `gridledger_fuzz::policy`, shared with the stable replay test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gridledger_fuzz::policy::run(data));
