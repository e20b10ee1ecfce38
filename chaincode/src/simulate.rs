//! Running one chaincode invocation to what an endorser signs: the response, the
//! `rwset.TxReadWriteSet` (and its bytes) and the chaincode event.
//!
//! The read-write set follows Fabric's layout so a Fabric validator would accept it:
//! `data_model = KV`, one `NsReadWriteSet` per namespace touched (sorted by namespace), each
//! holding the encoded `kvrwset.KVRWSet`. A chaincode that touched no state contributes no
//! namespace. A panic inside the chaincode is caught and becomes a status-500 response with an
//! empty read-write set, so a faulty chaincode cannot take the peer down.
//!
//! Private data: each namespace lists its collections' `CollectionHashedReadWriteSet`s
//! (sorted by collection name; `pvt_rwset_hash` = SHA-256 of the collection's encoded private
//! `KVRWSet`, empty for a collection only read), and the private values go to a separate
//! `rwset.TxPvtReadWriteSet` that never enters the proposal response.

use std::panic::{AssertUnwindSafe, catch_unwind};

use gridledger_proto::prost::Message;
use gridledger_proto::protos;
use gridledger_proto::rwset::{
    CollectionHashedReadWriteSet, CollectionPvtReadWriteSet, NsPvtReadWriteSet, NsReadWriteSet,
    TxPvtReadWriteSet, TxReadWriteSet, tx_read_write_set::DataModel,
};

use crate::stub::{ChaincodeHost, ChaincodeStub, Invocation, StateReader};
use crate::{Chaincode, error};

/// The outcome of simulating one proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulationResult {
    /// The chaincode's response; status ≥ 400 ([`crate::ERROR_THRESHOLD`]) means the proposal
    /// must not be endorsed (the read-write set is still returned).
    pub response: protos::Response,
    /// The read-write set in Fabric's layout.
    pub rwset: TxReadWriteSet,
    /// `rwset` encoded (what goes into `ChaincodeAction.results`).
    pub rwset_bytes: Vec<u8>,
    /// The chaincode event, with `chaincode_id` = namespace and `tx_id` stamped.
    pub event: Option<protos::ChaincodeEvent>,
    /// The private writes, by namespace and collection; `None` when there are none. Kept by
    /// the endorsing peer (transient store) and sent only to member peers.
    pub pvt_rwset: Option<TxPvtReadWriteSet>,
}

/// Runs `inv` through chaincode `cc` as namespace `namespace` over the committed `state`.
///
/// Never panics because of the chaincode: a panic becomes `Response{500, "chaincode panicked:
/// …"}`. A world-state failure seen by the chaincode fails the simulation with status 500 even
/// if the chaincode ignored the error, since its results would rest on a partial read.
pub fn simulate(
    cc: &dyn Chaincode,
    namespace: &str,
    inv: &Invocation,
    state: &dyn StateReader,
) -> SimulationResult {
    run(cc, ChaincodeStub::new(namespace, inv, state))
}

/// [`simulate()`] with `host` running the chaincodes `cc` calls (`invoke_chaincode`).
pub fn simulate_with_host(
    cc: &dyn Chaincode,
    namespace: &str,
    inv: &Invocation,
    state: &dyn StateReader,
    host: &dyn ChaincodeHost,
) -> SimulationResult {
    run(
        cc,
        ChaincodeStub::new(namespace, inv, state).with_host(host),
    )
}

/// Runs `cc` in `stub`, catching a panic.
fn run(cc: &dyn Chaincode, mut stub: ChaincodeStub<'_>) -> SimulationResult {
    let outcome = catch_unwind(AssertUnwindSafe(|| cc.invoke(&mut stub)));
    let response = match outcome {
        Ok(response) => response,
        Err(panic) => {
            let reason = panic_message(panic.as_ref());
            return finish(
                error(format!("chaincode panicked: {reason}")),
                Vec::new(),
                None,
                None,
            );
        }
    };
    complete(stub, response)
}

/// Finishes a simulation whose chaincode ran elsewhere — an external chaincode server driven
/// through the shim protocol — and recorded its reads, range queries, writes and event in
/// `stub`: the same read-write set, failure rule and event stamping as [`simulate()`].
pub fn complete(stub: ChaincodeStub<'_>, response: protos::Response) -> SimulationResult {
    let namespace = stub.namespace().to_owned();
    let tx_id = stub.tx_id().to_owned();
    let output = stub.finish();
    let response = match output.state_failure {
        Some(failure) => error(failure.to_string()),
        None => response,
    };
    let mut ns_rwsets = Vec::with_capacity(output.kv_rwsets.len());
    let mut ns_pvt_rwsets = Vec::new();
    for (namespace, kv, collections) in output.kv_rwsets {
        let mut hashed_sets = Vec::with_capacity(collections.len());
        let mut pvt_sets = Vec::new();
        for (collection_name, hashed, private) in collections {
            let pvt_rwset_hash = match private {
                Some(private) => {
                    let rwset = private.encode_to_vec();
                    let hash = crate::private::hash(&rwset);
                    pvt_sets.push(CollectionPvtReadWriteSet {
                        collection_name: collection_name.clone(),
                        rwset,
                    });
                    hash
                }
                None => Vec::new(),
            };
            hashed_sets.push(CollectionHashedReadWriteSet {
                collection_name,
                hashed_rwset: hashed.encode_to_vec(),
                pvt_rwset_hash,
            });
        }
        if !pvt_sets.is_empty() {
            ns_pvt_rwsets.push(NsPvtReadWriteSet {
                namespace: namespace.clone(),
                collection_pvt_rwset: pvt_sets,
            });
        }
        ns_rwsets.push(NsReadWriteSet {
            namespace,
            rwset: kv.encode_to_vec(),
            collection_hashed_rwset: hashed_sets,
        });
    }
    let pvt_rwset = (!ns_pvt_rwsets.is_empty()).then_some(TxPvtReadWriteSet {
        data_model: DataModel::Kv as i32,
        ns_pvt_rwset: ns_pvt_rwsets,
    });
    let event = output
        .event
        .map(|(event_name, payload)| protos::ChaincodeEvent {
            chaincode_id: namespace,
            tx_id,
            event_name,
            payload,
        });
    finish(response, ns_rwsets, event, pvt_rwset)
}

/// The outcome of a simulation that failed before the chaincode produced anything usable
/// (an external chaincode that timed out or broke the protocol): status 500 with `message`
/// and an empty read-write set.
pub fn failed(message: impl Into<String>) -> SimulationResult {
    finish(error(message), Vec::new(), None, None)
}

/// A `TxReadWriteSet` (data model KV) of `ns_rwsets` in Fabric's order: sorted by namespace.
///
/// For callers that add namespaces of their own next to a simulation's, such as the peer's
/// `_lifecycle` read of the chaincode definition.
pub fn tx_rwset(mut ns_rwsets: Vec<NsReadWriteSet>) -> TxReadWriteSet {
    ns_rwsets.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    TxReadWriteSet {
        data_model: DataModel::Kv as i32,
        ns_rwset: ns_rwsets,
    }
}

/// Assembles the result.
fn finish(
    response: protos::Response,
    ns_rwsets: Vec<NsReadWriteSet>,
    event: Option<protos::ChaincodeEvent>,
    pvt_rwset: Option<TxPvtReadWriteSet>,
) -> SimulationResult {
    let rwset = tx_rwset(ns_rwsets);
    let rwset_bytes = rwset.encode_to_vec();
    SimulationResult {
        response,
        rwset,
        rwset_bytes,
        event,
        pvt_rwset,
    }
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic payload is not a string".to_owned()
    }
}
