//! The Rust client SDK for retailers' and communities' applications (Gateway client).
//!
//! Empty until the Gateway exists (issue 3) and the SDK work (issue 8) lands. It may depend only
//! on `proto` and `identity`: a retailer's application must never pull in the peer.
