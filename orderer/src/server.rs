//! The orderer process: loads its identity and TLS material, starts every joined channel,
//! and serves `orderer.AtomicBroadcast` over gRPC with TLS until told to stop.
//!
//! Shutdown: the gRPC server stops accepting, open Broadcast and Deliver streams are ended,
//! then each channel's ordering loop finishes its current step and stops. Everything that
//! was answered SUCCESS is in the Raft log and will be in a block after the next start.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gridledger_identity::SigningIdentity;
use gridledger_proto::common;
use gridledger_proto::orderer::atomic_broadcast_server::{AtomicBroadcast, AtomicBroadcastServer};
use gridledger_proto::orderer::{BroadcastResponse, DeliverResponse};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use gridledger_proto::gridledger::cluster_server::ClusterServer;

use crate::cluster::{ClientTls, ClusterService, Transport};
use crate::config::{Limits, OrdererConfig, TlsConfig};
use crate::error::OrdererError;
use crate::participation::{CHANNELS_DIR, JOIN_DIR};
use crate::registry::Registry;
use crate::{broadcast, deliver};

/// How often `<data_dir>/join/` is checked for new genesis blocks while running.
const JOIN_SCAN_INTERVAL: Duration = Duration::from_secs(1);

/// An orderer that is bound to its address with its channels started, ready to serve.
pub struct Orderer {
    registry: Arc<Registry>,
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    tls: ServerTlsConfig,
    limits: Limits,
}

impl std::fmt::Debug for Orderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orderer")
            .field("local_addr", &self.local_addr)
            .field("channels", &self.registry.channel_ids())
            .finish_non_exhaustive()
    }
}

impl Orderer {
    /// Validates `config`, loads the signing identity and TLS material, starts every joined
    /// channel (joining the genesis blocks in `<data_dir>/join/` first) and binds the listen
    /// address.
    pub async fn bind(config: OrdererConfig) -> Result<Orderer, OrdererError> {
        config.validate()?;
        let signer =
            SigningIdentity::load(&config.msp_id, &config.signing_cert, &config.signing_key)?;
        let tls = server_tls(&config.tls, &config.cluster.tls_ca_certs)?;
        let cert_pem = read("read TLS certificate", &config.tls.server_cert)?;
        let own_tls_cert = pem::parse(&cert_pem)
            .map(pem::Pem::into_contents)
            .map_err(|e| {
                OrdererError::Tls(format!(
                    "{} is not a PEM certificate: {e}",
                    config.tls.server_cert.display()
                ))
            })?;
        let mut ca_pems = Vec::new();
        for path in &config.cluster.tls_ca_certs {
            ca_pems.push(read("read cluster TLS CA", path)?);
        }
        let transport = Arc::new(Transport::new(
            tokio::runtime::Handle::current(),
            ClientTls {
                cert_pem,
                key_pem: read("read TLS key", &config.tls.server_key)?,
                ca_pems,
            },
        ));
        for folder in [CHANNELS_DIR, JOIN_DIR] {
            let path = config.data_dir.join(folder);
            std::fs::create_dir_all(&path).map_err(|source| OrdererError::Io {
                what: "create folder",
                path,
                source,
            })?;
        }
        let registry = Arc::new(Registry::new(
            config.clone(),
            Arc::new(signer),
            own_tls_cert,
            transport,
        ));
        crate::metrics::register(&registry);
        let starting = registry.clone();
        let started = tokio::task::spawn_blocking(move || {
            starting.open_joined()?;
            starting.join_from_folder();
            Ok::<(), OrdererError>(())
        })
        .await
        .unwrap_or_else(|e| {
            Err(OrdererError::Internal(format!(
                "channel start-up task failed: {e}"
            )))
        });
        if let Err(e) = started {
            stop_channels(registry).await;
            return Err(e);
        }
        let listener = match tokio::net::TcpListener::bind(&config.listen_address).await {
            Ok(listener) => listener,
            Err(source) => {
                stop_channels(registry).await;
                return Err(OrdererError::Listen {
                    address: config.listen_address.clone(),
                    source,
                });
            }
        };
        let local_addr = listener
            .local_addr()
            .map_err(|source| OrdererError::Listen {
                address: config.listen_address.clone(),
                source,
            })?;
        tracing::info!(name = %config.name, address = %local_addr,
            channels = ?registry.channel_ids(), "orderer listening");
        Ok(Orderer {
            registry,
            listener,
            local_addr,
            tls,
            limits: config.limits,
        })
    }

    /// The address the server is bound to (the real port when the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The ids of the channels being served, sorted.
    pub fn channels(&self) -> Vec<String> {
        self.registry.channel_ids()
    }

    /// The channel participation API of this orderer (join and list while it runs), for the
    /// operations endpoint.
    pub fn participation(&self) -> crate::participation::Participation {
        crate::participation::Participation(self.registry.clone())
    }

    /// Serves until `shutdown` completes, then stops every channel.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), OrdererError> {
        let Orderer {
            registry,
            listener,
            tls,
            limits,
            ..
        } = self;
        let (stop_tx, stopping) = watch::channel(false);
        let service = BroadcastService {
            registry: registry.clone(),
            stopping: stopping.clone(),
            limits,
        };
        let max_message = limits.max_message_bytes as usize;
        let grpc = AtomicBroadcastServer::new(service)
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message);
        let cluster = ClusterServer::new(ClusterService {
            registry: registry.clone(),
            stopping: stopping.clone(),
        })
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);

        let scanner = tokio::spawn(scan_join_folder(registry.clone(), stopping.clone()));
        let signal = async move {
            shutdown.await;
            tracing::info!("orderer stopping");
            let _ = stop_tx.send(true);
        };
        let served = async {
            Server::builder()
                .tls_config(tls)?
                .max_concurrent_streams(limits.max_concurrent_streams)
                .layer(gridledger_proto::call_log::CallLogLayer::new("orderer"))
                .add_service(grpc)
                .add_service(cluster)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal)
                .await
        }
        .await;
        // Dropping `signal` above dropped the sender: every stream and the scanner see it.
        let _ = scanner.await;
        stop_channels(registry).await;
        served.map_err(OrdererError::Transport)
    }
}

/// Binds and serves `config` until `shutdown` completes: what `gridledger orderer start` runs.
pub async fn run(
    config: OrdererConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), OrdererError> {
    Orderer::bind(config).await?.serve(shutdown).await
}

async fn stop_channels(registry: Arc<Registry>) {
    if let Err(e) = tokio::task::spawn_blocking(move || registry.stop_all()).await {
        tracing::error!(error = %e, "stopping the channels failed");
    }
}

async fn scan_join_folder(registry: Arc<Registry>, mut stopping: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(JOIN_SCAN_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopping.wait_for(|stop| *stop) => return,
            _ = interval.tick() => {}
        }
        let scanning = registry.clone();
        if tokio::task::spawn_blocking(move || scanning.join_from_folder())
            .await
            .is_err()
        {
            tracing::error!("the join-folder scan failed");
        }
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, OrdererError> {
    std::fs::read(path).map_err(|source| OrdererError::Io {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// The rustls server configuration: server certificate and key, and the client CAs when
/// mutual TLS is asked for. Cluster CAs make client certificates optional but checked: the
/// cluster service then demands a consenter's certificate, other services take anyone.
fn server_tls(
    config: &TlsConfig,
    cluster_cas: &[PathBuf],
) -> Result<ServerTlsConfig, OrdererError> {
    let cert = read("read TLS certificate", &config.server_cert)?;
    let key = read("read TLS key", &config.server_key)?;
    if pem_blocks(&cert, "CERTIFICATE") == 0 {
        return Err(OrdererError::Tls(format!(
            "{} holds no PEM certificate",
            config.server_cert.display()
        )));
    }
    if pem_blocks(&key, "PRIVATE KEY") == 0 {
        return Err(OrdererError::Tls(format!(
            "{} holds no PKCS#8 PEM private key",
            config.server_key.display()
        )));
    }
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if !config.client_ca_certs.is_empty() || !cluster_cas.is_empty() {
        let mut bundle = Vec::new();
        for path in config.client_ca_certs.iter().chain(cluster_cas) {
            let ca = read("read TLS client CA", path)?;
            if pem_blocks(&ca, "CERTIFICATE") == 0 {
                return Err(OrdererError::Tls(format!(
                    "{} holds no PEM certificate",
                    path.display()
                )));
            }
            bundle.extend_from_slice(&ca);
            bundle.push(b'\n');
        }
        tls = tls
            .client_ca_root(Certificate::from_pem(bundle))
            .client_auth_optional(config.client_ca_certs.is_empty());
    }
    Ok(tls)
}

/// How many PEM blocks labelled `label` the bytes hold.
fn pem_blocks(bytes: &[u8], label: &str) -> usize {
    let marker = format!("-----BEGIN {label}-----");
    String::from_utf8_lossy(bytes).matches(&marker).count()
}

/// The `orderer.AtomicBroadcast` service.
struct BroadcastService {
    registry: Arc<Registry>,
    stopping: watch::Receiver<bool>,
    limits: Limits,
}

#[tonic::async_trait]
impl AtomicBroadcast for BroadcastService {
    type BroadcastStream = ReceiverStream<Result<BroadcastResponse, tonic::Status>>;
    type DeliverStream = ReceiverStream<Result<DeliverResponse, tonic::Status>>;

    async fn broadcast(
        &self,
        request: tonic::Request<tonic::Streaming<common::Envelope>>,
    ) -> Result<tonic::Response<Self::BroadcastStream>, tonic::Status> {
        let depth = self.limits.broadcast_pipeline_depth as usize;
        let (out, responses) = mpsc::channel(depth);
        broadcast::serve(
            self.registry.clone(),
            request.into_inner(),
            out,
            depth,
            self.stopping.clone(),
        );
        Ok(tonic::Response::new(ReceiverStream::new(responses)))
    }

    async fn deliver(
        &self,
        request: tonic::Request<tonic::Streaming<common::Envelope>>,
    ) -> Result<tonic::Response<Self::DeliverStream>, tonic::Status> {
        let (out, responses) = mpsc::channel(self.limits.deliver_buffer_blocks as usize);
        deliver::serve(
            self.registry.clone(),
            request.into_inner(),
            out,
            self.limits.deliver_time_window_s,
            self.stopping.clone(),
        );
        Ok(tonic::Response::new(ReceiverStream::new(responses)))
    }
}
