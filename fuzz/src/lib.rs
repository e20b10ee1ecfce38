//! GridLedger's fuzz targets as plain functions: one module per decoder that reads bytes from
//! the network or the disk, each with a `run(&[u8])` that feeds the bytes to the project's own
//! decoding and checking code and asserts what must hold of any input (no panic, and where it
//! is cheap a round trip or an invariant).
//!
//! The libFuzzer binaries in `fuzz_targets/` are one-line wrappers around these functions, so
//! the same code runs under `cargo +nightly fuzz run` and under the stable replay test
//! (`tests/replay.rs`), which feeds every committed corpus and regression input through them.
//! `support` holds the fixed world the targets check against: the real Fabric channel of
//! `tests/fixtures/fabric-2.5.5-chain` and a synthetic copy of it whose CAs are generated
//! here, so that inputs can carry valid signatures.

pub mod block;
pub mod certificate;
pub mod config_update;
pub mod envelope;
pub mod feeder;
pub mod policy;
pub mod proposal;
pub mod proposal_response;
pub mod shim;
pub mod support;

/// Every target's name, as in `fuzz_targets/` and `corpus/`.
pub const TARGETS: [&str; 9] = [
    "envelope",
    "proposal",
    "proposal_response",
    "block",
    "config_update",
    "shim",
    "policy",
    "certificate",
    "feeder",
];

/// Runs target `name` on `data`; `false` if there is no such target.
pub fn run(name: &str, data: &[u8]) -> bool {
    let run: fn(&[u8]) = match name {
        "envelope" => envelope::run,
        "proposal" => proposal::run,
        "proposal_response" => proposal_response::run,
        "block" => block::run,
        "config_update" => config_update::run,
        "shim" => shim::run,
        "policy" => policy::run,
        "certificate" => certificate::run,
        "feeder" => feeder::run,
        _ => return false,
    };
    run(data);
    true
}
