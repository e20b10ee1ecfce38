//! The peer's metrics, recorded into the process-wide registry
//! ([`gridledger_ledger::metrics::registry`]) that the operations endpoint serves.
//!
//! [`get`] registers every family on first use, so `/metrics` lists them all from the start;
//! the code paths that count call it directly (a node is one process).

use gridledger_ledger::metrics::{
    Counter, DURATION_BUCKETS, FailedCheck, Gauge, Histogram, registry,
};
use std::net::{TcpStream, ToSocketAddrs};

/// The process-wide registry and its types, for the binary that serves them.
pub use gridledger_ledger::metrics::{Registry, registry as process_registry};
use std::sync::{Arc, OnceLock};

/// The peer's metric families.
pub struct PeerMetrics {
    /// `ledger_blocks_committed_total{channel}`.
    pub blocks_committed: Arc<Counter>,
    /// `ledger_block_commit_seconds{channel}`: validation and commit of one block.
    pub block_commit_seconds: Arc<Histogram>,
    /// `ledger_transactions_total{channel,validation_code}`.
    pub transactions: Arc<Counter>,
    /// `ledger_height{channel}`.
    pub ledger_height: Arc<Gauge>,
    /// `endorser_proposal_duration_seconds{channel,chaincode}`: simulation and signing.
    pub proposal_duration: Arc<Histogram>,
    /// `gateway_requests_total{method,status}`: status is the gRPC code's name (`Ok`,
    /// `Aborted`, `InvalidArgument`, …).
    pub gateway_requests: Arc<Counter>,
    /// `deliver_requests_total`: Deliver and DeliverFiltered streams opened.
    pub deliver_requests: Arc<Counter>,
    /// `dso_feasibility_checks_total{verdict}`: feasible, infeasible or error.
    pub dso_feasibility_checks: Arc<Counter>,
}

/// The peer's metric families (registered on the first call).
pub fn get() -> &'static PeerMetrics {
    static METRICS: OnceLock<PeerMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let r = registry();
        PeerMetrics {
            blocks_committed: r.counter(
                "ledger_blocks_committed_total",
                "Blocks validated and committed to the channel's ledger.",
                &["channel"],
            ),
            block_commit_seconds: r.histogram(
                "ledger_block_commit_seconds",
                "Time to validate and commit one block, in seconds.",
                &["channel"],
                DURATION_BUCKETS,
            ),
            transactions: r.counter(
                "ledger_transactions_total",
                "Committed transactions by validation code.",
                &["channel", "validation_code"],
            ),
            ledger_height: r.gauge(
                "ledger_height",
                "Blocks in the channel's ledger.",
                &["channel"],
            ),
            proposal_duration: r.histogram(
                "endorser_proposal_duration_seconds",
                "Time to simulate and endorse one proposal, in seconds.",
                &["channel", "chaincode"],
                DURATION_BUCKETS,
            ),
            gateway_requests: r.counter(
                "gateway_requests_total",
                "Gateway requests by method and gRPC status.",
                &["method", "status"],
            ),
            deliver_requests: r.counter("deliver_requests_total", "Deliver streams opened.", &[]),
            dso_feasibility_checks: r.counter(
                "dso_feasibility_checks_total",
                "The DSO's grid feasibility checks of new energy trades by verdict.",
                &["verdict"],
            ),
        }
    })
}

/// Counts a Gateway request by its outcome and passes the outcome on.
pub fn gateway_request<T>(
    method: &str,
    outcome: Result<T, tonic::Status>,
) -> Result<T, tonic::Status> {
    let code = match &outcome {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    };
    let status = format!("{code:?}");
    get().gateway_requests.inc(&[method, &status]);
    outcome
}

/// How long a health check waits for one orderer's TCP connect.
const ORDERER_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// Registers the peer's health check and the ledger heights it opened with. The check holds
/// the peer weakly, so it reports nothing once the peer is gone.
pub fn register(peer: &Arc<crate::node::Peer>) {
    let metrics = get();
    for channel in peer.channels() {
        metrics.ledger_height.set(
            &[channel.id()],
            i64::try_from(channel.ledger().height()).unwrap_or(i64::MAX),
        );
    }
    let weak = Arc::downgrade(peer);
    registry().add_health_check(Box::new(move || {
        weak.upgrade().map_or_else(Vec::new, |peer| health(&peer))
    }));
}

/// The failed checks of a peer: for each channel, its ledger must read and at least one of
/// the channel's orderer endpoints must accept a TCP connection.
pub fn health(peer: &crate::node::Peer) -> Vec<FailedCheck> {
    let mut failed = Vec::new();
    for channel in peer.channels() {
        failed.extend(gridledger_ledger::metrics::check_ledger(channel.ledger()));
        let config = channel.config();
        let endpoints: Vec<String> = config
            .orderer()
            .organizations
            .iter()
            .flat_map(|o| o.endpoints.iter().cloned())
            .collect();
        let reachable = endpoints.iter().any(|endpoint| {
            endpoint
                .to_socket_addrs()
                .map(|mut addrs| {
                    addrs.any(|a| TcpStream::connect_timeout(&a, ORDERER_CONNECT_TIMEOUT).is_ok())
                })
                .unwrap_or(false)
        });
        if !reachable {
            failed.push(FailedCheck {
                component: format!("orderers:{}", channel.id()),
                reason: format!(
                    "no orderer of channel {} is reachable (tried {})",
                    channel.id(),
                    if endpoints.is_empty() {
                        "none: the channel config names no endpoint".to_owned()
                    } else {
                        endpoints.join(", ")
                    }
                ),
            });
        }
    }
    failed
}

/// Publishes the certificates of a channel's configuration (metrics and `/healthz`, see
/// `gridledger_ledger::certificate_expiry`), replacing those of its previous configuration.
pub(crate) fn watch_channel_certificates(config: &gridledger_channels::config::ChannelConfig) {
    use gridledger_ledger::certificate_expiry::{WatchedCertificate, certificate_watch};
    let watched = config
        .certificates()
        .into_iter()
        .map(|c| WatchedCertificate {
            msp_id: c.msp_id,
            role: c.role.to_owned(),
            subject: c.subject,
            not_after: c.not_after,
        })
        .collect();
    certificate_watch().set_scope(config.channel_id(), watched);
}
