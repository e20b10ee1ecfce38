//! Starting and stopping a peer: open its channels, start a committer per channel, serve the
//! Gateway, Endorser and Deliver services over TLS until shutdown.

use crate::config::PeerConfig;
use crate::deliver::DeliverService;
use crate::endorser::EndorserService;
use crate::gateway::GatewayService;
use crate::node::{Peer, PeerError};
use gridledger_proto::gateway::gateway_server::GatewayServer;
use gridledger_proto::protos::deliver_server::DeliverServer;
use gridledger_proto::protos::endorser_server::EndorserServer;
use std::future::Future;

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
    let mut committers = Vec::new();
    for channel in peer.channels() {
        tracing::info!(channel = %channel.id(), height = channel.ledger().height(), "channel opened");
        committers.push(tokio::spawn(crate::reconciler::run(
            peer.clone(),
            channel.clone(),
            stop_rx.clone(),
        )));
        committers.push(tokio::spawn(crate::committer::run(
            peer.clone(),
            channel,
            stop_rx.clone(),
        )));
    }
    tracing::info!(peer = %peer.config().name, msp = %peer.config().msp_id, %listen, "peer serving");
    let result = tonic::transport::Server::builder()
        .tls_config(tls)
        .map_err(|e| PeerError::Server(e.to_string()))?
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
    for c in committers {
        let _ = c.await;
    }
    tracing::info!("peer stopped");
    result
}
