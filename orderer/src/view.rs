//! What a channel's ordering loop shares with the gRPC handlers: the channel's current
//! configuration and its consenters. Both change only when the loop writes a config block;
//! handlers read a snapshot (`Arc`) and never hold a lock across a call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use gridledger_channels::config::ChannelConfig;

use crate::cluster::Members;
use crate::cutter::BatchSettings;

/// One channel's shared, config-derived state.
pub(crate) struct ChannelView {
    config: RwLock<Arc<ChannelConfig>>,
    members: RwLock<Arc<Members>>,
    /// DER of this node's TLS server certificate: how it finds itself among consenters.
    own_tls_cert: Vec<u8>,
    /// Set once a config block removed this orderer from the consenters.
    evicted: AtomicBool,
}

impl ChannelView {
    /// A view of `config` with `members`.
    pub(crate) fn new(
        config: ChannelConfig,
        members: Members,
        own_tls_cert: Vec<u8>,
    ) -> ChannelView {
        crate::metrics::watch_channel_certificates(&config);
        ChannelView {
            config: RwLock::new(Arc::new(config)),
            members: RwLock::new(Arc::new(members)),
            own_tls_cert,
            evicted: AtomicBool::new(false),
        }
    }

    /// The configuration in force.
    pub(crate) fn config(&self) -> Arc<ChannelConfig> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The batch rules in force (AbsoluteMaxBytes is checked at Broadcast).
    pub(crate) fn batch(&self) -> BatchSettings {
        BatchSettings::from_config(&self.config().orderer().batch)
    }

    /// The consenters in force and this node's id among them.
    pub(crate) fn members(&self) -> Arc<Members> {
        match self.members.read() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// This node's TLS server certificate (DER).
    pub(crate) fn own_tls_cert(&self) -> &[u8] {
        &self.own_tls_cert
    }

    /// Installs the configuration of a config block just written.
    pub(crate) fn set_config(&self, config: Arc<ChannelConfig>) {
        crate::metrics::watch_channel_certificates(&config);
        match self.config.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
    }

    /// Installs the consenters of a config block just written.
    pub(crate) fn set_members(&self, members: Members) {
        let members = Arc::new(members);
        match self.members.write() {
            Ok(mut m) => *m = members,
            Err(poisoned) => *poisoned.into_inner() = members,
        }
    }

    /// Records that this orderer is no longer one of the channel's consenters.
    pub(crate) fn set_evicted(&self) {
        self.evicted.store(true, Ordering::SeqCst);
    }

    /// Whether a config block removed this orderer from the consenters.
    pub(crate) fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::SeqCst)
    }
}
