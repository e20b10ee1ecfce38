//! The Rust chaincode API (contract trait and stub) and the built-in chaincodes.
//!
//! Empty until the execute–order–validate work (issue 3) lands; present so the dependency
//! directions in ARCHITECTURE.md are enforced from the first commit.
