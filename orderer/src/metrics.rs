//! The orderer's metrics and health check, recorded into the process-wide registry
//! ([`gridledger_ledger::metrics::registry`]) that the operations endpoint serves.
//!
//! [`get`] registers every family on first use; the Broadcast, Deliver and Raft code paths
//! count through it directly (a node is one process). Ledger heights are read from the
//! served channels when the health check runs and when a block is written.

use crate::registry::Registry;
use gridledger_ledger::metrics::{Counter, FailedCheck, Gauge, check_ledger, registry};
use std::sync::{Arc, OnceLock};

/// The orderer's metric families.
pub(crate) struct OrdererMetrics {
    /// `broadcast_envelopes_total{channel,status}`: status is the Broadcast response's
    /// status name (`SUCCESS`, `BAD_REQUEST`, …).
    pub broadcast_envelopes: Arc<Counter>,
    /// `deliver_requests_total`: Deliver streams opened.
    pub deliver_requests: Arc<Counter>,
    /// `ledger_height{channel}`.
    pub ledger_height: Arc<Gauge>,
    /// `raft_leader_changes_total{channel}`: times this node saw a new leader.
    pub raft_leader_changes: Arc<Counter>,
    /// `raft_term{channel}`.
    pub raft_term: Arc<Gauge>,
}

/// The orderer's metric families (registered on the first call).
pub(crate) fn get() -> &'static OrdererMetrics {
    static METRICS: OnceLock<OrdererMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let r = registry();
        OrdererMetrics {
            broadcast_envelopes: r.counter(
                "broadcast_envelopes_total",
                "Envelopes received through Broadcast by channel and response status.",
                &["channel", "status"],
            ),
            deliver_requests: r.counter("deliver_requests_total", "Deliver streams opened.", &[]),
            ledger_height: r.gauge(
                "ledger_height",
                "Blocks in the channel's ledger.",
                &["channel"],
            ),
            raft_leader_changes: r.counter(
                "raft_leader_changes_total",
                "Raft leader changes this orderer observed.",
                &["channel"],
            ),
            raft_term: r.gauge("raft_term", "The current Raft term.", &["channel"]),
        }
    })
}

/// Records a channel ledger's height.
pub(crate) fn set_height(channel_id: &str, height: u64) {
    get()
        .ledger_height
        .set(&[channel_id], i64::try_from(height).unwrap_or(i64::MAX));
}

/// Registers the orderer's health check: every served channel's ledger must read. The check
/// holds the registry weakly, so it reports nothing once the orderer is gone.
pub(crate) fn register(channels: &Arc<Registry>) {
    get();
    let weak = Arc::downgrade(channels);
    registry().add_health_check(Box::new(move || {
        let Some(channels) = weak.upgrade() else {
            return Vec::new();
        };
        let mut failed: Vec<FailedCheck> = Vec::new();
        for id in channels.channel_ids() {
            if let Some(state) = channels.get(&id) {
                set_height(&id, state.ledger.height());
                failed.extend(check_ledger(&state.ledger));
            }
        }
        failed
    }));
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
