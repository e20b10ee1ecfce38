//! Target `shim`: the `protos.ChaincodeMessage`s an external chaincode (chaincode-as-a-service)
//! sends the peer during a transaction. Models a malicious or broken chaincode: message types,
//! tx ids, and the GetState / PutState / DelState / range / iterator / history / metadata /
//! private data / InvokeChaincode payloads are all its own.
//!
//! Input framing: a sequence of `u16` little-endian lengths, each followed by that many bytes
//! of one `ChaincodeMessage` (frames that do not decode are skipped; at most 64 messages).
//!
//! Checks: the peer's request handling (`gridledger_peer::external::answer_requests`) and the
//! read-write set the stub then builds (`gridledger_chaincode::complete`) never panic; there
//! is one answer per message; the read-write set's bytes decode to the read-write set.
//!
//! The logic lives in `gridledger_fuzz::shim`, shared with the stable replay test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gridledger_fuzz::shim::run(data));
