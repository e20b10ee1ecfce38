//! TLS for the peer's server and its connections to other peers and orderers (rustls/ring via
//! tonic). Outgoing connections trust the TLS root CAs the channel config carries for the
//! organization being dialled.
//!
//! Every outgoing connection sends HTTP/2 keepalive pings, also while no call is open, and
//! drops the connection when a ping goes unanswered for [`KEEPALIVE_TIMEOUT`]: a node that hangs
//! (a stopped process, a dead network path) keeps its TCP connection open, and without the
//! pings a Deliver stream from it would wait forever. Dropping the connection fails the calls on
//! it, so the caller moves on to another endpoint.

use std::path::Path;
use std::time::Duration;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig,
};

/// How long an outgoing connection may go without hearing from the server before it sends a
/// keepalive ping.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// How long an outgoing connection waits for the answer to a keepalive ping before it gives
/// the connection up.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a TLS setting or connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid endpoint {endpoint}: {reason}")]
    Endpoint { endpoint: String, reason: String },
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Server TLS from PEM files; with `client_ca`, clients must present a certificate it issued.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerTlsConfig, TlsError> {
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
    if let Some(ca) = client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(tls)
}

/// A lazily connecting TLS channel to `host:port`, trusting `ca_pems`; the server name checked
/// is the host part. `connect_timeout` bounds each connection attempt; `request_timeout` bounds
/// unary calls; leave it `None` for long streams (Deliver) and bound those by their own logic.
/// The connection is given up when a keepalive ping goes unanswered (see the module doc).
pub fn client_channel(
    endpoint: &str,
    ca_pems: &[Vec<u8>],
    connect_timeout: Duration,
    request_timeout: Option<Duration>,
) -> Result<Channel, TlsError> {
    let host = endpoint
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(endpoint)
        .trim_matches(['[', ']'])
        .to_owned();
    let mut tls = ClientTlsConfig::new().domain_name(host);
    for ca in ca_pems {
        tls = tls.ca_certificate(Certificate::from_pem(ca));
    }
    let mut ep = Endpoint::from_shared(format!("https://{endpoint}"))
        .map_err(|e| TlsError::Endpoint {
            endpoint: endpoint.into(),
            reason: e.to_string(),
        })?
        .tls_config(tls)
        .map_err(|e| TlsError::Endpoint {
            endpoint: endpoint.into(),
            reason: e.to_string(),
        })?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    if let Some(t) = request_timeout {
        ep = ep.timeout(t);
    }
    Ok(ep.connect_lazy())
}
