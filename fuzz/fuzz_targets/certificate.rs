//! Target `certificate`: X.509 certificates, CRLs, serialized identities, MSP configs and
//! signatures as they arrive in creators, endorsements, channel config values, MSP
//! directories on disk and TLS handshakes. Models anyone who can put bytes where an identity
//! or a signature is expected.
//!
//! The first byte selects the decoder: 0 certificate DER, 1 certificate PEM, 2 CRL (PEM or
//! DER) against Org1's CA, 3 `msp.SerializedIdentity` through the channel's MSPs, 4 ECDSA DER
//! signature, 5 `msp.FabricMSPConfig`; the rest is its input.
//!
//! Checks: none of these panic; a serialized identity an MSP accepts keeps its MSP id and
//! bytes; a signature that parses re-encodes to one that parses the same, and its low-S form
//! is low-S.
//!
//! The logic lives in `gridledger_fuzz::certificate`, shared with the stable replay test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gridledger_fuzz::certificate::run(data));
