//! Identities of a GridLedger consortium: X.509 certificates, MSPs, signatures, crypto material.
//!
//! - [`signature`]: ECDSA P-256 / SHA-256 in Fabric's form (DER, low-S), verified with `ring`.
//! - [`certificate`]: X.509 certificates and revocation lists, parsed once into owned facts.
//! - [`msp`]: an organization's MSP turns a certificate into a validated [`Identity`] with a
//!   NodeOU [`Role`] and an [`IdentityId`] (MSP id + low-S certificate hash, the same for every
//!   encoding); a channel's [`MspManager`] caches validations.
//! - [`signer`]: a local [`SigningIdentity`].
//! - [`material`]: CAs and identities for `gridledger crypto generate` and for tests.
//! - [`bench`]: the verification micro-benchmark behind `gridledger bench crypto`.

pub mod bench;
pub mod certificate;
pub mod error;
pub mod material;
pub mod msp;
pub mod signature;
pub mod signer;

pub use certificate::Certificate;
pub use error::{IdentityError, SignatureError};
pub use msp::{
    Identity, IdentityId, Msp, MspManager, NodeOuIdentifier, NodeOus, Role, load_msp_dir,
    serialize_identity,
};
pub use signer::SigningIdentity;
