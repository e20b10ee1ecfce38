//! The SDK's one error type: what failed, with the gateway's per-peer details when it sent
//! any, so applications branch on kinds ([`SdkError::is_mvcc_conflict`], …) and show the rest.

use gridledger_proto::prost::Message;
use gridledger_proto::{gateway, google, protos};
use std::path::PathBuf;

/// What went wrong, with the gateway's details when it sent any.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// The gateway peer could not be reached (address, TLS, certificate name).
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    /// The gateway answered with an error status, and the peers' details when it sent any.
    #[error("gateway returned {code:?}: {message}{}", details_text(.details))]
    Gateway {
        code: tonic::Code,
        message: String,
        details: Vec<gateway::ErrorDetail>,
    },
    /// The gateway's (or its Deliver service's) answer was not what the protocol allows.
    #[error("unexpected response from the gateway: {0}")]
    Response(String),
    /// The transaction was ordered and committed, but with a validation code other than VALID
    /// (`MVCC_READ_CONFLICT`, `ENDORSEMENT_POLICY_FAILURE`, …): it changed nothing.
    #[error("transaction {tx_id} was committed as {code_name} ({code}): it changed nothing")]
    Invalid {
        /// The transaction id.
        tx_id: String,
        /// The validation code.
        code: i32,
        /// Its Fabric name.
        code_name: String,
    },
    /// A certificate or key of the client identity was rejected.
    #[error(transparent)]
    Identity(#[from] gridledger_identity::IdentityError),
    /// The system's random number generator failed (nonces).
    #[error("random number generator failed")]
    Random,
    /// The [`crate::Signer`] could not sign (an HSM unreachable, a session closed, …).
    #[error("the signer could not sign: {0}")]
    Signer(#[source] crate::SignError),
    /// The [`crate::Signer`] returned bytes that are not a DER ECDSA signature.
    #[error("the signer returned a signature that is not DER ECDSA: {0}")]
    SignatureFormat(#[source] gridledger_identity::SignatureError),
    /// A checkpoint file could not be read, parsed or saved.
    #[error("checkpoint file {}: {reason}", path.display())]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The peer's Deliver service refused or ended a block stream with a status other than
    /// SUCCESS (FORBIDDEN: not a reader of the channel; NOT_FOUND: no such channel or a start
    /// past the chain's end; BAD_REQUEST; SERVICE_UNAVAILABLE).
    #[error("the peer's Deliver service answered {name} ({status})")]
    Deliver {
        /// The `common.Status` code.
        status: i32,
        /// Its Fabric name.
        name: String,
    },
}

fn details_text(details: &[gateway::ErrorDetail]) -> String {
    details
        .iter()
        .map(|d| format!("; {} ({}): {}", d.msp_id, d.address, d.message))
        .collect()
}

impl SdkError {
    /// Whether the transaction lost a read-write conflict with another one committed first
    /// (`MVCC_READ_CONFLICT`): endorsing it again, on the newer state, may well succeed.
    pub fn is_mvcc_conflict(&self) -> bool {
        matches!(self, SdkError::Invalid { code, .. }
            if *code == protos::TxValidationCode::MvccReadConflict as i32)
    }

    /// Whether the endorsing peers answered differently, as when one has not committed the
    /// latest block yet (the Gateway's "ProposalResponsePayloads do not match"): endorsing
    /// again a moment later usually succeeds.
    pub fn is_endorsement_mismatch(&self) -> bool {
        matches!(self, SdkError::Gateway { message, details, .. }
            if message.contains("do not match")
                || details.iter().any(|d| d.message.contains("do not match")))
    }
}

impl From<tonic::Status> for SdkError {
    fn from(status: tonic::Status) -> SdkError {
        let details = google::rpc::Status::decode(status.details())
            .map(|s| {
                s.details
                    .iter()
                    .filter_map(|any| gateway::ErrorDetail::decode(any.value.as_slice()).ok())
                    .collect()
            })
            .unwrap_or_default();
        SdkError::Gateway {
            code: status.code(),
            message: status.message().to_owned(),
            details,
        }
    }
}
