//! The peer: endorser, Gateway, Deliver and committer (validation + commit).
//!
//! Empty until the execute–order–validate work (issue 3) lands; present so the dependency
//! directions in ARCHITECTURE.md are enforced from the first commit.
