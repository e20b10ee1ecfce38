//! The peer: endorser, Gateway, Deliver, and the committer that validates and commits blocks.
//!
//! - [`acl`]: per-resource access control (Fabric's channel ACLs and their defaults).
//! - [`config`]: the peer's configuration file and chaincode definitions.
//! - [`node`]: the running peer — identity, joined channels (ledger + config), join.
//! - [`endorser`]: proposal checks, simulation on a snapshot, signed responses; the Endorser
//!   service for peer-to-peer endorsement.
//! - [`external`]: chaincode-as-a-service — the shim protocol client for external chaincode
//!   servers.
//! - [`gateway`]: Fabric's Gateway service (Evaluate, Endorse, Submit, CommitStatus,
//!   ChaincodeEvents).
//! - [`deliver`]: Fabric's Deliver service for block events.
//! - [`gossip`]: private data between peers — push at endorsement, pull when missing.
//! - [`committer`]: pulls blocks from the orderers, validates, commits.
//! - [`validation`]: the validation core — a plain function of (block, channel config,
//!   chaincode definitions, committed state) that yields Fabric's validation codes and the
//!   state updates of the valid transactions. No I/O, no clock.
//! - [`lifecycle`]: the chaincode lifecycle system chaincode `_lifecycle` — packages,
//!   install, approve, commit — with definitions committed in the ledger.
//! - [`private`]: private data collections — definitions, checks, commit-side resolution.
//! - [`qscc`]: the query system chaincode.
//! - [`cscc`]: the configuration system chaincode — join a channel while running, list the
//!   joined channels.
//! - [`metrics`]: the peer's metrics and health checks, served by the operations endpoint.
//! - [`server`]: start and stop.

pub mod acl;
pub mod blocks;
pub mod committer;
pub mod config;
pub mod cscc;
pub mod deliver;
pub mod endorser;
pub mod external;
pub mod feasibility;
pub mod gateway;
pub mod gossip;
pub mod lifecycle;
pub mod metrics;
pub mod node;
pub mod private;
pub mod qscc;
pub mod reconciler;
pub mod server;
pub mod tls;
pub mod validation;

pub use config::PeerConfig;
pub use server::run;
