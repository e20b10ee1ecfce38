//! `gridledger peer start` and `gridledger orderer start`: run one node in the foreground until
//! Ctrl-C / SIGTERM (or, when started by `gridledger up`, until its standard input closes, so a
//! node never outlives the `up` that started it).

use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum PeerCommand {
    /// Start a peer with a config file (TOML; `gridledger up` writes examples under DIR/nodes/).
    Start {
        #[arg(long)]
        config: PathBuf,
        /// Stop when standard input reaches end of file (used by `gridledger up`).
        #[arg(long, hide = true)]
        exit_on_stdin_close: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum OrdererCommand {
    /// Start an orderer with a config file (TOML).
    Start {
        #[arg(long)]
        config: PathBuf,
        /// Stop when standard input reaches end of file (used by `gridledger up`).
        #[arg(long, hide = true)]
        exit_on_stdin_close: bool,
    },
    /// Join the orderer to a channel with its genesis block or a later config block (run while
    /// the orderer is stopped; while it runs, copy the block into <data_dir>/join/ instead).
    /// Joined with a config block, the orderer pulls the blocks before it from the consenters.
    Join {
        #[arg(long)]
        config: PathBuf,
        /// The channel's genesis block (`gridledger channel genesis`) or its latest config block.
        #[arg(long)]
        block: PathBuf,
    },
    /// List the channels the orderer has joined, with their heights (orderer stopped).
    List {
        #[arg(long)]
        config: PathBuf,
    },
    /// Remove a channel from the orderer: its ledger, Raft log and any pending join file
    /// (orderer stopped).
    #[command(group(clap::ArgGroup::new("orderer").required(true).args(["config", "data_dir"])))]
    Remove {
        /// The orderer's config file (its data_dir is used).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The orderer's data folder, instead of --config.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The channel to remove.
        #[arg(long)]
        channel: String,
    },
}

/// Logs to stderr, in colour only when stderr is a terminal (a log file or a collector gets
/// plain text to search); `RUST_LOG` overrides the default level (info). Returns the handle
/// that changes the filter at run time (the operations endpoint's `/logspec`).
pub fn init_logging() -> crate::operations::LogHandle {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .try_init();
    handle
}

/// The operations endpoint a node's `[operations]` section asks for: address, TLS files and
/// the client CAs of mutual TLS.
type OperationsSpec = (
    std::net::SocketAddr,
    Option<(std::path::PathBuf, std::path::PathBuf)>,
    Vec<PathBuf>,
);

/// Starts the operations endpoint when the node's config has an `[operations]` section; an
/// orderer passes its channel participation.
async fn start_operations(
    spec: Option<OperationsSpec>,
    participation: Option<std::sync::Arc<dyn crate::operations::ChannelParticipation>>,
    logs: crate::operations::LogHandle,
    metrics: &'static gridledger_peer::metrics::Registry,
) -> anyhow::Result<()> {
    if let Some((listen, tls, client_cas)) = spec {
        let extras = crate::operations::Extras {
            client_cas,
            participation,
        };
        crate::operations::start(listen, tls, extras, logs, metrics).await?;
    }
    Ok(())
}

/// The `[operations]` section of either node kind, borrowed.
struct OperationsSection<'a> {
    listen: std::net::SocketAddr,
    tls_cert: Option<&'a PathBuf>,
    tls_key: Option<&'a PathBuf>,
    client_cas: &'a [PathBuf],
    warning_days: u32,
}

/// Watches the node's own certificates (`certificates` plus the operations endpoint's) and
/// returns what the operations endpoint, if configured, is to serve.
fn prepare_operations(
    msp_id: &str,
    certificates: &[(&str, &std::path::Path)],
    section: Option<OperationsSection<'_>>,
) -> anyhow::Result<Option<OperationsSpec>> {
    let mut local = certificates.to_vec();
    if let Some(cert) = section.as_ref().and_then(|o| o.tls_cert) {
        local.push(("operations_tls", cert));
    }
    watch_local_certificates(msp_id, &local, section.as_ref().map(|o| o.warning_days))?;
    Ok(section.map(|o| {
        (
            o.listen,
            o.tls_cert.cloned().zip(o.tls_key.cloned()),
            o.client_cas.to_vec(),
        )
    }))
}

/// Publishes the expiry of the node's own certificates (`scope="local"`) and sets the
/// window in which an expiring certificate degrades `/healthz`. A certificate that cannot be
/// read here fails the start with the reason: the node could not use it either.
fn watch_local_certificates(
    msp_id: &str,
    certificates: &[(&str, &std::path::Path)],
    warning_days: Option<u32>,
) -> anyhow::Result<()> {
    use gridledger_ledger::certificate_expiry::{
        DEFAULT_WARNING_SECONDS, LOCAL_SCOPE, WatchedCertificate, certificate_watch,
    };
    let mut watched = Vec::new();
    for (role, path) in certificates {
        let pem = std::fs::read(path)
            .with_context(|| format!("reading the {role} certificate {}", path.display()))?;
        let cert = gridledger_identity::Certificate::from_pem(&pem)
            .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
        watched.push(WatchedCertificate {
            msp_id: msp_id.to_owned(),
            role: (*role).to_owned(),
            subject: cert.subject,
            not_after: cert.not_after,
        });
    }
    let watch = certificate_watch();
    watch.set_warning_seconds(
        warning_days.map_or(DEFAULT_WARNING_SECONDS, |days| i64::from(days) * 86_400),
    );
    watch.set_scope(LOCAL_SCOPE, watched);
    Ok(())
}

/// A peer's config file with the `GRIDLEDGER_PEER_*` environment overrides applied
/// (see [`crate::config_env`]).
pub fn load_peer_config(path: &std::path::Path) -> anyhow::Result<gridledger_peer::PeerConfig> {
    let (text, base, applied) = overridden(path, crate::config_env::PEER_PREFIX)?;
    if applied.is_empty() {
        return Ok(gridledger_peer::PeerConfig::load(path)?);
    }
    gridledger_peer::PeerConfig::parse(&text, &base)
        .map_err(anyhow::Error::from)
        .with_context(|| source_of(path, &applied))
}

/// An orderer's config file with the `GRIDLEDGER_ORDERER_*` environment overrides applied.
pub fn load_orderer_config(
    path: &std::path::Path,
) -> anyhow::Result<gridledger_orderer::OrdererConfig> {
    let (text, base, applied) = overridden(path, crate::config_env::ORDERER_PREFIX)?;
    if applied.is_empty() {
        return Ok(gridledger_orderer::OrdererConfig::load(path)?);
    }
    gridledger_orderer::OrdererConfig::parse(&text, &base)
        .map_err(anyhow::Error::from)
        .with_context(|| source_of(path, &applied))
}

/// The text of the config file at `path` with the overrides of `prefix` applied, the folder
/// its relative paths are resolved against, and the variables applied.
fn overridden(
    path: &std::path::Path,
    prefix: &str,
) -> anyhow::Result<(String, PathBuf, Vec<String>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (text, applied) =
        crate::config_env::apply(&text, prefix, crate::config_env::process_vars(prefix))
            .with_context(|| format!("config {}", path.display()))?;
    let base = path
        .parent()
        .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf);
    Ok((text, base, applied))
}

/// `config FILE with VAR, VAR`, for error messages.
fn source_of(path: &std::path::Path, applied: &[String]) -> String {
    format!("config {} with {}", path.display(), applied.join(", "))
}

/// The orderer's channel participation, as the operations endpoint serves it.
struct OrdererParticipation(gridledger_orderer::Participation);

impl OrdererParticipation {
    fn report(channel: gridledger_orderer::ChannelInfo) -> crate::operations::ParticipatingChannel {
        crate::operations::ParticipatingChannel {
            name: channel.name,
            consensus_relation: channel.consensus_relation.as_str(),
            status: channel.status.as_str(),
            height: channel.height,
        }
    }
}

impl crate::operations::ChannelParticipation for OrdererParticipation {
    fn join(
        &self,
        block: &[u8],
    ) -> Result<crate::operations::ParticipatingChannel, crate::operations::JoinRefused> {
        use crate::operations::JoinRefused;
        use gridledger_orderer::JoinError;
        self.0.join(block).map(Self::report).map_err(|e| match e {
            JoinError::AlreadyJoined(channel) => JoinRefused::AlreadyJoined(format!(
                "channel {channel} already exists (joined with this block)"
            )),
            e if e.is_bad_request() => JoinRefused::BadBlock(e.to_string()),
            e => JoinRefused::Failed(e.to_string()),
        })
    }

    fn list(&self) -> Vec<crate::operations::ParticipatingChannel> {
        self.0.list().into_iter().map(Self::report).collect()
    }

    fn channel(&self, name: &str) -> Option<crate::operations::ParticipatingChannel> {
        self.0.channel(name).map(Self::report)
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Completes on Ctrl-C, SIGTERM, or (optionally) end of standard input.
pub async fn shutdown_signal(watch_stdin: bool) {
    {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        let stdin_closed = async move {
            if !watch_stdin {
                return std::future::pending::<()>().await;
            }
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::spawn(move || {
                let mut sink = [0u8; 64];
                let mut stdin = std::io::stdin();
                while matches!(std::io::Read::read(&mut stdin, &mut sink), Ok(n) if n > 0) {}
                let _ = tx.send(());
            });
            let _ = rx.await;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
            _ = stdin_closed => {}
        }
        tracing::info!("shutting down");
    }
}

pub fn run_peer(cmd: PeerCommand) -> anyhow::Result<()> {
    let PeerCommand::Start {
        config,
        exit_on_stdin_close,
    } = cmd;
    let logs = init_logging();
    let parsed = load_peer_config(&config)?;
    let operations = prepare_operations(
        &parsed.msp_id,
        &[("signing", &parsed.signing_cert), ("tls", &parsed.tls_cert)],
        parsed.operations.as_ref().map(|o| OperationsSection {
            listen: o.listen_address,
            tls_cert: o.tls_cert.as_ref(),
            tls_key: o.tls_key.as_ref(),
            client_cas: &o.tls_client_ca_certs,
            warning_days: o.certificate_expiry_warning_days,
        }),
    )?;
    runtime()?.block_on(async move {
        start_operations(
            operations,
            None,
            logs,
            gridledger_peer::metrics::process_registry(),
        )
        .await?;
        gridledger_peer::run(parsed, shutdown_signal(exit_on_stdin_close))
            .await
            .context("running the peer")
    })
}

pub fn run_orderer(cmd: OrdererCommand) -> anyhow::Result<()> {
    let (config, exit_on_stdin_close) = match cmd {
        OrdererCommand::Start {
            config,
            exit_on_stdin_close,
        } => (config, exit_on_stdin_close),
        OrdererCommand::Join { config, block } => {
            let parsed = load_orderer_config(&config)?;
            let bytes =
                std::fs::read(&block).with_context(|| format!("reading {}", block.display()))?;
            let joined = gridledger_orderer::join_channel(&parsed.data_dir, &bytes)
                .with_context(|| format!("joining the channel of {}", block.display()))?;
            println!(
                "joined channel '{}' (height {})",
                joined.channel_id, joined.height
            );
            return Ok(());
        }
        OrdererCommand::List { config } => {
            let parsed = load_orderer_config(&config)?;
            let channels =
                gridledger_orderer::list_channels(&parsed.data_dir).context("listing channels")?;
            if channels.is_empty() {
                println!("no channels joined");
            }
            for c in channels {
                println!("{}\theight {}", c.channel_id, c.height);
            }
            return Ok(());
        }
        OrdererCommand::Remove {
            config,
            data_dir,
            channel,
        } => {
            let data_dir = match (data_dir, config) {
                (Some(dir), _) => dir,
                (None, Some(config)) => load_orderer_config(&config)?.data_dir,
                (None, None) => anyhow::bail!("give --config or --data-dir"),
            };
            let removed = gridledger_orderer::remove_channel(&data_dir, &channel)
                .with_context(|| format!("removing channel '{channel}'"))?;
            println!("removed channel '{}'", removed.channel_id);
            return Ok(());
        }
    };
    let logs = init_logging();
    let parsed = load_orderer_config(&config)?;
    let operations = prepare_operations(
        &parsed.msp_id,
        &[
            ("signing", &parsed.signing_cert),
            ("tls", &parsed.tls.server_cert),
        ],
        parsed.operations.as_ref().map(|o| OperationsSection {
            listen: o.listen_address,
            tls_cert: o.tls_cert.as_ref(),
            tls_key: o.tls_key.as_ref(),
            client_cas: &o.tls_client_ca_certs,
            warning_days: o.certificate_expiry_warning_days,
        }),
    )?;
    runtime()?.block_on(async move {
        // Bound first: the operations endpoint serves the participation of the running orderer.
        let orderer = gridledger_orderer::Orderer::bind(parsed)
            .await
            .context("starting the orderer")?;
        let participation = std::sync::Arc::new(OrdererParticipation(orderer.participation()));
        start_operations(
            operations,
            Some(participation),
            logs,
            gridledger_orderer::metrics_registry(),
        )
        .await?;
        orderer
            .serve(shutdown_signal(exit_on_stdin_close))
            .await
            .context("running the orderer")
    })
}
