//! Errors of the identity layer: one enum for identities and MSPs, one for signatures.
//!
//! Callers branch on [`SignatureError`] (a bad signature is an expected, per-request outcome) and
//! report [`IdentityError`] with its message, which says what was wrong and with which input.

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The bytes are not a strict DER `SEQUENCE { INTEGER r, INTEGER s }`.
    #[error("signature is not a DER-encoded ECDSA signature: {0}")]
    Malformed(&'static str),
    /// `s` is in the upper half of the curve order; Fabric rejects these (malleability).
    #[error("signature has a high S value (s > n/2); only low-S signatures are accepted")]
    HighS,
    /// The signature is well formed but does not match the message and key.
    #[error("signature does not verify against the signer's public key")]
    Invalid,
    /// The public key is not an uncompressed P-256 point.
    #[error("public key is not a P-256 point")]
    BadPublicKey,
}

/// Why an identity, certificate, key or MSP was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// PEM text could not be parsed, or held the wrong kind of block.
    #[error("malformed PEM ({what}): {reason}")]
    Pem { what: String, reason: String },
    /// DER bytes of a certificate, CRL or key could not be parsed.
    #[error("malformed {what}: {reason}")]
    Der { what: String, reason: String },
    /// `msp.SerializedIdentity` bytes did not decode.
    #[error("malformed serialized identity: {0}")]
    SerializedIdentity(String),
    /// The identity names an MSP that is not a member of this channel.
    #[error("unknown MSP '{0}': not a member of this channel")]
    UnknownMsp(String),
    /// Only ECDSA P-256 keys and ecdsa-with-SHA256 certificate signatures are supported.
    #[error("unsupported algorithm in {what}: {detail}")]
    UnsupportedAlgorithm { what: String, detail: String },
    /// The certificate is a CA certificate but was presented as a signer.
    #[error("certificate '{subject}' is a CA certificate and cannot be used as an identity")]
    CaAsLeaf { subject: String },
    /// No chain from the certificate to one of the MSP's root CAs.
    #[error("certificate '{subject}' does not chain to a root CA of MSP '{msp_id}': {reason}")]
    UntrustedChain {
        subject: String,
        msp_id: String,
        reason: String,
    },
    /// The certificate (or one in its chain) is outside its validity period at the given time.
    #[error(
        "certificate '{subject}' is not valid at {at_unix_secs} (valid from {not_before} to {not_after}, unix seconds)"
    )]
    OutsideValidity {
        subject: String,
        at_unix_secs: u64,
        not_before: i64,
        not_after: i64,
    },
    /// The certificate (or one in its chain) is on its issuer's revocation list.
    #[error("certificate '{subject}' (serial {serial}) is revoked by MSP '{msp_id}'")]
    Revoked {
        subject: String,
        serial: String,
        msp_id: String,
    },
    /// NodeOUs are enabled and the certificate carries none of the role OUs the MSP names.
    #[error(
        "certificate '{subject}' carries no role OU (client, peer, admin or orderer) recognised by MSP '{msp_id}'"
    )]
    NoRole { subject: String, msp_id: String },
    /// NodeOUs are enabled and the certificate carries more than one role OU (Fabric: "not a
    /// combination of them").
    #[error(
        "certificate '{subject}' carries several role OUs ({roles}) of MSP '{msp_id}'; an identity must be exactly one of client, peer, admin or orderer"
    )]
    SeveralRoles {
        subject: String,
        msp_id: String,
        roles: String,
    },
    /// The certificate's role OU is reserved to identities issued by a given CA, and another
    /// CA issued it.
    #[error(
        "certificate '{subject}' carries the {role} OU of MSP '{msp_id}', but was issued by '{issuer}', not by the CA that MSP's {role} NodeOU identifier names"
    )]
    RoleNotCertified {
        subject: String,
        msp_id: String,
        role: crate::msp::Role,
        issuer: String,
    },
    /// An MSP configuration is unusable (no root CA, a CRL signed by nobody known, …).
    #[error("invalid MSP configuration for '{msp_id}': {reason}")]
    MspConfig { msp_id: String, reason: String },
    /// The certificate's attribute extension is not Fabric-CA style JSON.
    #[error("certificate '{subject}' has a malformed attribute extension: {reason}")]
    Attributes { subject: String, reason: String },
    /// A private key could not be used for signing.
    #[error("unusable private key: {0}")]
    Key(String),
    /// Reading or writing crypto material failed.
    #[error("{action} {path}: {reason}")]
    Io {
        action: &'static str,
        path: String,
        reason: String,
    },
    /// Crypto material configuration is invalid.
    #[error("invalid crypto configuration: {0}")]
    Config(String),
    /// A certificate could not be issued.
    #[error("cannot issue certificate for '{name}': {reason}")]
    Issue { name: String, reason: String },
}

impl IdentityError {
    pub(crate) fn io(action: &'static str, path: &std::path::Path, err: std::io::Error) -> Self {
        IdentityError::Io {
            action,
            path: path.display().to_string(),
            reason: err.to_string(),
        }
    }
}
