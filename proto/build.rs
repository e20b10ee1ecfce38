//! Compiles the Fabric-compatible `.proto` files under `protos/` into prost messages.
//!
//! protox parses the files in pure Rust, so no `protoc` binary is needed. tonic's generator
//! adds client and server stubs for the services (Gateway, Deliver, Endorser, AtomicBroadcast,
//! ChaincodeSupport, Chaincode). Clients are built with `XxxClient::new(channel)`: the transport
//! constructor `connect(dst)` is not generated, because it collides with the `Chaincode.Connect`
//! rpc's method name.

use std::error::Error;

/// Every file we compile, relative to `protos/` (imports are resolved against that root).
const PROTOS: &[&str] = &[
    "common/common.proto",
    "common/ledger.proto",
    "common/policies.proto",
    "common/configtx.proto",
    "common/configuration.proto",
    "msp/msp_principal.proto",
    "msp/identities.proto",
    "msp/msp_config.proto",
    "orderer/ab.proto",
    "orderer/configuration.proto",
    "orderer/etcdraft/configuration.proto",
    "peer/proposal.proto",
    "peer/proposal_response.proto",
    "peer/transaction.proto",
    "peer/chaincode.proto",
    "peer/chaincode_event.proto",
    "peer/chaincode_shim.proto",
    "peer/events.proto",
    "peer/peer.proto",
    "peer/configuration.proto",
    "peer/policy.proto",
    "peer/collection.proto",
    "peer/query.proto",
    "peer/lifecycle/lifecycle.proto",
    "gateway/gateway.proto",
    "ledger/rwset/rwset.proto",
    "ledger/rwset/kvrwset/kv_rwset.proto",
    "ledger/queryresult/kv_query_result.proto",
    "google/rpc/status.proto",
    "gridledger/cluster.proto",
    "gridledger/privdata.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=protos");
    let fds = protox::compile(PROTOS, ["protos"])?;
    tonic_prost_build::configure()
        // Maps encode in key order: config groups are hashed, so the bytes must be deterministic.
        .btree_map(".")
        .build_transport(false)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)?;
    Ok(())
}
