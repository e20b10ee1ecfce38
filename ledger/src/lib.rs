//! Per-channel ledger of a node: block store, world state, history and tx-id index on redb.
//!
//! This crate is the only user of redb. It is empty until the execute–order–validate work
//! (issue 3) lands; it exists now so the dependency directions in ARCHITECTURE.md are enforced
//! from the first commit.
