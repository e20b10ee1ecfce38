//! Fabric-compatible protobuf messages for GridLedger, plus Fabric's block-hashing rules.
//!
//! This crate owns the wire format: every other crate speaks Fabric through these types, so
//! package names, message names and field numbers match hyperledger/fabric-protos exactly.
//! Modules are named after the proto packages. `prost` and `prost_types` are re-exported so
//! the whole workspace encodes with one version.
//!
//! Bytes fields that hold nested messages (headers, payloads, extensions, rwsets) stay opaque
//! `Vec<u8>`: decode them to inspect, but hash and sign the original bytes.

pub use prost;
pub use prost_types;

pub mod blockutil;
pub mod call_log;

pub use blockutil::{block_data_hash, block_header_bytes, block_header_hash, compute_tx_id};

/// Package `common`: envelopes, headers, blocks, channel config, policies and MSP principals.
#[allow(missing_docs, clippy::all)]
pub mod common {
    include!(concat!(env!("OUT_DIR"), "/common.rs"));
}

/// Package `msp`: serialized identities and MSP configuration.
#[allow(missing_docs, clippy::all)]
pub mod msp {
    include!(concat!(env!("OUT_DIR"), "/msp.rs"));
}

/// Package `protos`: peer messages (proposals, transactions, chaincode shim, events).
#[allow(missing_docs, clippy::all)]
pub mod protos {
    include!(concat!(env!("OUT_DIR"), "/protos.rs"));
}

/// Package `lifecycle`: arguments and results of the `_lifecycle` system chaincode.
#[allow(missing_docs, clippy::all)]
pub mod lifecycle {
    include!(concat!(env!("OUT_DIR"), "/lifecycle.rs"));
}

/// Package `gateway`: the Fabric Gateway API used by client SDKs.
#[allow(missing_docs, clippy::all)]
pub mod gateway {
    include!(concat!(env!("OUT_DIR"), "/gateway.rs"));
}

/// Package `orderer`: Broadcast/Deliver messages, seek positions, orderer config values.
#[allow(missing_docs, clippy::all)]
pub mod orderer {
    include!(concat!(env!("OUT_DIR"), "/orderer.rs"));
}

/// Package `gridledger`: GridLedger's own orderer-to-orderer cluster protocol (Raft messages
/// and forwarded Broadcast envelopes) and the peer-to-peer private data protocol.
#[allow(missing_docs, clippy::all)]
pub mod gridledger {
    include!(concat!(env!("OUT_DIR"), "/gridledger.rs"));
}

/// Package `etcdraft`: Raft consenter set and options (the `ConsensusType.metadata`).
#[allow(missing_docs, clippy::all)]
pub mod etcdraft {
    include!(concat!(env!("OUT_DIR"), "/etcdraft.rs"));
}

/// Package `rwset`: per-namespace read-write sets of a transaction.
#[allow(missing_docs, clippy::all)]
pub mod rwset {
    include!(concat!(env!("OUT_DIR"), "/rwset.rs"));
}

/// Package `kvrwset`: key-level reads, writes and range-query records.
#[allow(missing_docs, clippy::all)]
pub mod kvrwset {
    include!(concat!(env!("OUT_DIR"), "/kvrwset.rs"));
}

/// Package `queryresult`: records returned to chaincode by range and history queries.
#[allow(missing_docs, clippy::all)]
pub mod queryresult {
    include!(concat!(env!("OUT_DIR"), "/queryresult.rs"));
}

/// Google packages that are not in `prost-types`.
pub mod google {
    /// Package `google.rpc`: the rich error status carried in `grpc-status-details-bin`.
    #[allow(missing_docs, clippy::all)]
    pub mod rpc {
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
    }
}
