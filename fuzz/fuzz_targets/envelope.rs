//! Target `envelope`: a `common.Envelope` as a client sends it to the orderer's Broadcast and
//! as the peer's validator finds it in a block. Models a client (or a compromised orderer) that
//! sends arbitrary envelope bytes: payload, header, channel header, signature header, creator
//! and signature are all the attacker's.
//!
//! Checks: the orderer's screening (`gridledger_orderer::screen_envelope`: parse, channel,
//! type, creator, signature, `/Channel/Writers`) and the peer's validation of a block holding
//! the envelope alone (`validate_block`) never panic; the validator gives exactly one code;
//! decoding is stable (decode ∘ encode ∘ decode = decode).
//!
//! The logic lives in `gridledger_fuzz::envelope`, shared with the stable replay test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gridledger_fuzz::envelope::run(data));
