//! Target `config_update`: a `common.ConfigUpdateEnvelope` as a channel admin sends it (inside
//! a CONFIG_UPDATE envelope) to the orderer, which checks and applies it to the channel's
//! config. Models an admin tool or a member that sends arbitrary updates: read set, write
//! set, versions, mod policies, values and signatures.
//!
//! Checks: the channels crate's authorization (`update::authorize`: signature headers,
//! signatures, every changed element's `mod_policy`), decoding, application
//! (`update::apply`: read-set and version rules, overlay) and the validation of the resulting
//! config (`ChannelConfig::from_config`) never panic; an applied update advances the
//! sequence by exactly one.
//!
//! The logic lives in `gridledger_fuzz::config_update`, shared with the stable replay test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gridledger_fuzz::config_update::run(data));
