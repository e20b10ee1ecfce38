//! Starting and stopping a peer: open its channels, start a committer per channel, serve the
//! Gateway, Endorser and Deliver services over TLS until shutdown.
//!
//! A channel's tasks (committer and private-data reconciler) are started by one closure, the
//! peer's channel starter, for the channels opened at start-up and for every channel joined
//! later through `cscc JoinChain` alike; the services look channels up per request.

use crate::config::PeerConfig;
use crate::deliver::DeliverService;
use crate::endorser::EndorserService;
use crate::gateway::GatewayService;
use crate::node::{Channel, ChannelStarter};
use crate::node::{Peer, PeerError};
use gridledger_proto::gateway::gateway_server::GatewayServer;
use gridledger_proto::protos::deliver_server::DeliverServer;
use gridledger_proto::protos::endorser_server::EndorserServer;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::task::JoinHandle;

/// Largest gRPC message the peer accepts or sends (a block can hold many transactions).
pub const MAX_MESSAGE_BYTES: usize = 100 * 1024 * 1024;

/// Runs a peer until `shutdown` completes.
pub async fn run(
    config: PeerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), PeerError> {
    let tls = crate::tls::server_config(
        &config.tls_cert,
        &config.tls_key,
        config.tls_client_ca.as_deref(),
    )?;
    let listen = config.listen;
    let peer = Peer::open(config)?;
    crate::metrics::register(&peer);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks = Arc::new(Mutex::new(Vec::new()));
    peer.set_channel_starter(channel_starter(&peer, tasks.clone(), stop_rx));
    tracing::info!(peer = %peer.config().name, msp = %peer.config().msp_id, %listen, "peer serving");
    let result = tonic::transport::Server::builder()
        .tls_config(tls)
        .map_err(|e| PeerError::Server(e.to_string()))?
        .layer(gridledger_proto::call_log::CallLogLayer::new("peer"))
        .add_service(
            GatewayServer::new(GatewayService::new(peer.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            EndorserServer::new(EndorserService(peer.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            gridledger_proto::gridledger::private_data_server::PrivateDataServer::new(
                crate::gossip::PrivateDataService(peer.clone()),
            )
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            DeliverServer::new(DeliverService(peer.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_shutdown(listen, shutdown)
        .await
        .map_err(|e| PeerError::Server(e.to_string()));
    let _ = stop_tx.send(true);
    let running = std::mem::take(&mut *tasks.lock().unwrap_or_else(PoisonError::into_inner));
    for task in running {
        let _ = task.await;
    }
    tracing::info!("peer stopped");
    result
}

/// The closure that starts a joined channel's committer and reconciler on the current
/// runtime, keeping their handles in `tasks` so shutdown can wait for them. It holds the peer
/// weakly: the peer owns the closure.
fn channel_starter(
    peer: &Arc<Peer>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> ChannelStarter {
    let weak = Arc::downgrade(peer);
    let runtime = tokio::runtime::Handle::current();
    Box::new(move |channel: Arc<Channel>| {
        let Some(peer) = weak.upgrade() else {
            return;
        };
        tracing::info!(channel = %channel.id(), height = channel.ledger().height(), "channel opened");
        let reconciler = runtime.spawn(crate::reconciler::run(
            peer.clone(),
            channel.clone(),
            stop.clone(),
        ));
        let committer = runtime.spawn(crate::committer::run(peer, channel, stop.clone()));
        tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend([reconciler, committer]);
    })
}
