//! The Rust chaincode API (the `Chaincode` trait and its `ChaincodeStub`), transaction
//! simulation into a Fabric read-write set, and the built-in chaincodes.
//!
//! Chaincode here runs in-process and must be deterministic: everything it may observe comes
//! from the [`Invocation`] (arguments, creator, transient data, the proposal's timestamp) and
//! from a consistent [`StateReader`] view of the world state. [`simulate()`] runs one invocation
//! and returns what an endorser signs: the chaincode's response, the `rwset.TxReadWriteSet`
//! laid out by Fabric's conventions, and the chaincode event.
//!
//! Module map:
//! - [`stub`]: `ChaincodeStub`, the chaincode's view of one transaction, and the recording of
//!   reads, range queries and writes.
//! - [`composite`]: Fabric's composite keys.
//! - [`private`]: private data collections — derived namespaces, hashing, access rules.
//! - [`statebased`]: building key-level endorsement policies (`KeyEndorsementPolicy`).
//! - [`simulate`](mod@simulate): running a chaincode and building the read-write set; [`complete`]
//!   builds the same result for a chaincode that ran elsewhere (an external chaincode server
//!   whose requests the peer recorded in a stub).
//! - [`registry`]: chaincode name → implementation.
//! - [`basic`]: Fabric's asset-transfer-basic sample.
//! - [`certs`]: guarantees of origin issued against the DSO's attested renewable export,
//!   transferred between account holders and cancelled once for a beneficiary.
//! - [`energy`]: the market's payment balances, offers, escrowed trades, and e-token
//!   mint/move/burn on DSO attestations.
//! - [`flex`]: demand response — the DSO's flexibility requests, prosumers' commitments, and
//!   delivery attested against a baseline from the meter channel's history.
//! - [`meter`]: smart-meter readings on a bilateral (market organization + DSO) channel.
//! - [`privatedata`]: a built-in chaincode storing transient values in collections.

mod arguments;
pub mod basic;
pub mod certs;
pub mod composite;
pub mod energy;
pub mod flex;
pub mod meter;
pub mod private;
pub mod privatedata;
pub mod registry;
pub mod simulate;
pub mod statebased;
pub mod stub;

pub use composite::{
    COMPOSITE_KEY_NAMESPACE, CompositeKeyError, MAX_UNICODE_RUNE, create_composite_key,
    split_composite_key,
};
pub use private::{CollectionAccess, IMPLICIT_COLLECTION_PREFIX};
pub use registry::Registry;
pub use simulate::{SimulationResult, complete, failed, simulate, simulate_with_host, tx_rwset};
pub use statebased::{KeyEndorsementPolicy, KeyPolicyError, RoleType};
pub use stub::{
    ChaincodeHost, ChaincodeStub, Invocation, MAX_CALL_DEPTH, Metadata, Page, StateReader,
    StubError, VALIDATION_PARAMETER,
};

use gridledger_proto::protos;

/// A response status below this is success (Fabric's `shim.ERRORTHRESHOLD`); at or above it
/// an endorser does not endorse.
pub const ERROR_THRESHOLD: i32 = 400;
/// The status of a successful invocation (`shim.OK`).
pub const OK: i32 = 200;
/// The status of a failed invocation (`shim.ERROR`).
pub const ERROR: i32 = 500;

/// A chaincode: a deterministic function from an invocation and the world state to a
/// response, with its reads, writes and event recorded through the stub.
///
/// Implementations must not read clocks, randomness or anything outside the stub, so that every
/// endorsing peer computes the same read-write set. A panic is caught by [`simulate()`] and turned
/// into a status-500 response.
pub trait Chaincode: Send + Sync {
    /// Runs one transaction proposal.
    fn invoke(&self, stub: &mut ChaincodeStub<'_>) -> protos::Response;
}

/// A successful response carrying `payload` (Fabric's `shim.Success`).
pub fn success(payload: impl Into<Vec<u8>>) -> protos::Response {
    protos::Response {
        status: OK,
        message: String::new(),
        payload: payload.into(),
    }
}

/// A failed response with status 500 and `message` (Fabric's `shim.Error`).
pub fn error(message: impl Into<String>) -> protos::Response {
    protos::Response {
        status: ERROR,
        message: message.into(),
        payload: Vec::new(),
    }
}
