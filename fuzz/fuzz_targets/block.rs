//! Target `block`: a `common.Block` as the peer receives it from the orderer's Deliver (or
//! gossip) and reads it back from its block store. Models a malicious orderer or a corrupted
//! disk: header, data and every metadata slot are arbitrary.
//!
//! Checks: header and data hashing, the peer's orderer-signature check
//! (`verify_block_signatures`), its validation of every transaction (`validate_block`, with the
//! header's data hash corrected so the transactions are reached), the committed-transaction
//! reader, the orderer's metadata reader and the config-block reader never panic; decoding is
//! stable; a validated block gets one code per transaction, which the TRANSACTIONS_FILTER
//! written from them reports back.
//!
//! The logic lives in `gridledger_fuzz::block`, shared with the stable replay test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gridledger_fuzz::block::run(data));
