//! The ordering service: Broadcast, block cutter, Raft consensus, Deliver.
//!
//! Empty until the execute–order–validate work (issue 3) lands; present so the dependency
//! directions in ARCHITECTURE.md are enforced from the first commit.
