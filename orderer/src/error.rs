//! [`OrdererError`]: why the orderer could not start or had to stop.
//!
//! Errors about one envelope or one Deliver request are not here: those are answered to the
//! client as Fabric statuses (see `access`), and the orderer goes on.

use std::path::PathBuf;

use crate::chain::ChainError;
use crate::config::ConfigError;
use crate::participation::JoinError;

/// Everything that stops the orderer from serving.
#[derive(Debug, thiserror::Error)]
pub enum OrdererError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The orderer's signing identity cannot be loaded.
    #[error("cannot load the orderer's signing identity: {0}")]
    Identity(#[from] gridledger_identity::IdentityError),
    /// A file or folder operation failed.
    #[error("cannot {what} {path}: {source}")]
    Io {
        /// What was being done, e.g. "read TLS certificate".
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS material is unusable.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The listen address cannot be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The configured address.
        address: String,
        /// The error.
        source: std::io::Error,
    },
    /// A joined channel cannot be served.
    #[error("channel {channel}: {source}")]
    Channel {
        /// The channel id.
        channel: String,
        /// What failed.
        source: ChainError,
    },
    /// A channel cannot be joined.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// A start-up or shutdown task died (a bug: it panicked).
    #[error("internal error: {0}")]
    Internal(String),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}
