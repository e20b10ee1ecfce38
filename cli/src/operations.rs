//! The operations endpoint of a peer or orderer (`[operations] listen_address` in its config):
//! a small HTTP/1.1 server for operators' tools, separate from the gRPC port; over TLS when
//! the section names `tls_cert` and `tls_key` (rustls with ring, as the gRPC server), plain
//! HTTP otherwise.
//!
//! - `GET /metrics`: every metric of the process-wide registry
//!   (`gridledger_ledger::metrics`) in the Prometheus text format.
//! - `GET /healthz`: 200 `{"status":"OK"}`, or 503 `{"status":"Service Unavailable",
//!   "failed_checks":[{"component":…,"reason":…}]}` when a registered health check fails (the
//!   ledger unreadable, no orderer reachable, a certificate expired), or 200
//!   `{"status":"Degraded","degraded_checks":[…]}` when a certificate expires within the
//!   `[operations] certificate_expiry_warning_days` window.
//! - `GET /version`: `{"version":…}`, plus `"commit"` when the binary was built with
//!   `GRIDLEDGER_COMMIT` set in the environment.
//! - `GET /logspec`, `PUT /logspec` with `{"spec":"info,gridledger_peer=debug"}`: the log
//!   filter (`RUST_LOG` syntax), changed at run time.
//!
//! - `/participation/v1/channels…` on an orderer: Fabric's channel participation API (see
//!   [`participation`]), served only with mutual TLS or on a loopback address.
//!
//! With `tls_client_ca_certs` as well, every client must present a TLS certificate chaining to
//! one of those CAs (mutual TLS), for every path.
//!
//! Anything else is a 404, a known path with another method a 405, a bad body a 400, each
//! with a JSON `{"error":…}`. One request per connection (`Connection: close`); requests are
//! bounded in size and time, so a slow or hostile client holds one task briefly at most.

mod participation;

pub use participation::{ChannelParticipation, JoinRefused, ParticipatingChannel};

use anyhow::Context;
use gridledger_peer::metrics::Registry as Metrics;
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tracing_subscriber::{EnvFilter, reload};

/// The handle that changes the process's log filter.
pub type LogHandle = reload::Handle<EnvFilter, tracing_subscriber::Registry>;

/// Largest request head (request line and headers).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest request body.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What a node adds to the common endpoint: the CAs of mutual TLS and, on an orderer, the
/// channel participation API.
#[derive(Clone, Default)]
pub struct Extras {
    /// With TLS: client certificates must chain to one of these CA files (PEM).
    pub client_cas: Vec<PathBuf>,
    /// The orderer's channel participation.
    pub participation: Option<Arc<dyn ChannelParticipation>>,
}

/// Binds `listen` and serves the endpoint on a background task until the runtime stops.
/// `metrics` is the process-wide registry (`gridledger_peer::metrics::process_registry()` and
/// `gridledger_orderer::metrics_registry()` are the same one, owned by the ledger crate).
/// With `tls` (certificate chain and key, PEM) the endpoint speaks HTTPS.
pub async fn start(
    listen: SocketAddr,
    tls: Option<(PathBuf, PathBuf)>,
    extras: Extras,
    logs: LogHandle,
    metrics: &'static Metrics,
) -> anyhow::Result<SocketAddr> {
    let mutual_tls = tls.is_some() && !extras.client_cas.is_empty();
    anyhow::ensure!(
        tls.is_some() || extras.client_cas.is_empty(),
        "client CAs for the operations endpoint need its TLS certificate and key"
    );
    let acceptor = match tls {
        Some((cert, key)) => Some(tls_acceptor(&cert, &key, &extras.client_cas)?),
        None => None,
    };
    let admin = Arc::new(participation::Api::new(
        extras.participation,
        participation::access(listen, mutual_tls),
    ));
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the operations endpoint on {listen}"))?;
    let bound = listener
        .local_addr()
        .context("reading the operations endpoint's address")?;
    tracing::info!(listen = %bound, tls = acceptor.is_some(), "operations endpoint serving");
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let logs = logs.clone();
                    let acceptor = acceptor.clone();
                    let admin = admin.clone();
                    tokio::spawn(async move {
                        let outcome = match acceptor {
                            Some(acceptor) => {
                                match tokio::time::timeout(READ_TIMEOUT, acceptor.accept(stream))
                                    .await
                                {
                                    Ok(Ok(tls)) => connection(tls, &logs, metrics, &admin).await,
                                    Ok(Err(e)) => Err(e),
                                    Err(_) => Err(std::io::Error::new(
                                        std::io::ErrorKind::TimedOut,
                                        "TLS handshake timed out",
                                    )),
                                }
                            }
                            None => connection(stream, &logs, metrics, &admin).await,
                        };
                        if let Err(e) = outcome {
                            tracing::debug!(error = %e, "operations request failed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "operations endpoint cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(bound)
}

/// The TLS server side from a PEM certificate chain and private key; with `client_cas`, a
/// client certificate chaining to one of them is required.
fn tls_acceptor(cert: &Path, key: &Path, client_cas: &[PathBuf]) -> anyhow::Result<TlsAcceptor> {
    let cert_pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .with_context(|| format!("{} is not a PEM private key", key.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("choosing TLS versions")?;
    let builder = if client_cas.is_empty() {
        builder.with_no_client_auth()
    } else {
        builder.with_client_cert_verifier(client_verifier(client_cas)?)
    };
    let config = builder
        .with_single_cert(chain, key_der)
        .context("the operations TLS certificate and key do not form a usable pair")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Mutual TLS: client certificates must chain to one of the CA certificates in `files`.
fn client_verifier(
    files: &[PathBuf],
) -> anyhow::Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    let mut roots = rustls::RootCertStore::empty();
    for file in files {
        let pem = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let mut found = false;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert =
                cert.with_context(|| format!("{} is not a PEM certificate", file.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("{} is not a usable CA certificate", file.display()))?;
            found = true;
        }
        anyhow::ensure!(found, "{} holds no certificate", file.display());
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .context("building the client certificate verifier")
}

/// A parsed request.
struct Request {
    method: String,
    path: String,
    /// The `Content-Type` header, if any.
    content_type: Option<String>,
    body: Vec<u8>,
}

/// An answer: status code, content type, body.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Answer {
    fn json(status: u16, value: &serde_json::Value) -> Answer {
        Answer {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
        }
    }

    fn error(status: u16, message: impl Into<String>) -> Answer {
        Answer::json(status, &json!({ "error": message.into() }))
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    logs: &LogHandle,
    metrics: &'static Metrics,
    admin: &participation::Api,
) -> std::io::Result<()> {
    let max_body = |path: &str| admin.max_body(path).unwrap_or(MAX_BODY_BYTES);
    let answer = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream, max_body)).await
    {
        Err(_) => Answer::error(408, "the request was not received in time"),
        Ok(Err(e)) => Answer::error(400, e),
        Ok(Ok(request)) if participation::Api::serves(&request.path) => admin.serve(request).await,
        Ok(Ok(request)) => route(request, logs, metrics).await,
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.status,
        reason_phrase(answer.status),
        answer.content_type,
        answer.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&answer.body).await?;
    stream.shutdown().await
}

/// Reads one request: the head up to the blank line, then `Content-Length` bytes of body (at
/// most `max_body(path)`), answering `Expect: 100-continue` first.
async fn read_request<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    max_body: impl Fn(&str) -> usize,
) -> Result<Request, String> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(format!("the request head exceeds {MAX_HEAD_BYTES} bytes"));
        }
        let mut chunk = [0u8; 4096];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading the request: {e}"))?;
        if n == 0 {
            return Err("the connection closed before the request ended".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| "the request head is not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(_version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("malformed request line {request_line:?}"));
    };
    let mut content_length = 0usize;
    let (mut content_type, mut expect_continue) = (None, false);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value
                    .parse()
                    .map_err(|_| format!("invalid Content-Length {value:?}"))?;
            } else if name.eq_ignore_ascii_case("content-type") {
                content_type = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err("chunked bodies are not accepted; send Content-Length".into());
            } else if name.eq_ignore_ascii_case("expect") {
                expect_continue = value.eq_ignore_ascii_case("100-continue");
            }
        }
    }
    let path = target.split('?').next().unwrap_or_default().to_owned();
    let limit = max_body(&path);
    if content_length > limit {
        return Err(format!("the body exceeds {limit} bytes"));
    }
    if expect_continue && content_length > buf.len().saturating_sub(head_end + 4) {
        stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|e| format!("answering Expect: {e}"))?;
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < content_length {
        let mut chunk = [0u8; 4096];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading the request body: {e}"))?;
        if n == 0 {
            return Err("the connection closed before the body ended".into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(content_length);
    Ok(Request {
        method: method.to_owned(),
        path,
        content_type,
        body,
    })
}

async fn route(request: Request, logs: &LogHandle, metrics: &'static Metrics) -> Answer {
    let allowed: &[&str] = match request.path.as_str() {
        "/metrics" | "/healthz" | "/version" => &["GET"],
        "/logspec" => &["GET", "PUT"],
        other => return Answer::error(404, format!("no such resource: {other}")),
    };
    if !allowed.contains(&request.method.as_str()) {
        return Answer::error(
            405,
            format!(
                "{} does not accept {}; use {}",
                request.path,
                request.method,
                allowed.join(" or ")
            ),
        );
    }
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/metrics") => Answer {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics.encode().into_bytes(),
        },
        ("GET", "/healthz") => health(metrics).await,
        ("GET", "/version") => Answer::json(200, &version()),
        ("GET", "/logspec") => match logs.with_current(ToString::to_string) {
            Ok(spec) => Answer::json(200, &json!({ "spec": spec })),
            Err(e) => Answer::error(500, format!("cannot read the log filter: {e}")),
        },
        _ => set_logspec(&request.body, logs),
    }
}

/// Runs the health checks off the executor (they may wait on TCP connects): 503 with the
/// failed checks when one fails; otherwise 200, `OK`, or `Degraded` with what the warning
/// checks found (a certificate expiring within the configured window).
async fn health(metrics: &'static Metrics) -> Answer {
    let checked =
        tokio::task::spawn_blocking(|| (metrics.check_health(), metrics.check_warnings())).await;
    let list = |checks: &[gridledger_ledger::metrics::FailedCheck]| {
        checks
            .iter()
            .map(|f| json!({ "component": f.component, "reason": f.reason }))
            .collect::<Vec<_>>()
    };
    match checked {
        Ok((failed, _)) if !failed.is_empty() => Answer::json(
            503,
            &json!({ "status": "Service Unavailable", "failed_checks": list(&failed) }),
        ),
        Ok((_, warnings)) if warnings.is_empty() => Answer::json(200, &json!({ "status": "OK" })),
        Ok((_, warnings)) => Answer::json(
            200,
            &json!({ "status": "Degraded", "degraded_checks": list(&warnings) }),
        ),
        Err(e) => Answer::error(500, format!("the health checks failed to run: {e}")),
    }
}

/// The binary's version, and its commit when known at build time.
fn version() -> serde_json::Value {
    let mut value = json!({ "version": env!("CARGO_PKG_VERSION") });
    if let Some(commit) = option_env!("GRIDLEDGER_COMMIT") {
        value["commit"] = json!(commit);
    }
    value
}

/// `PUT /logspec`: `{"spec": "<RUST_LOG directives>"}`.
fn set_logspec(body: &[u8], logs: &LogHandle) -> Answer {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct LogSpec {
        spec: String,
    }
    let spec = match serde_json::from_slice::<LogSpec>(body) {
        Ok(s) => s.spec,
        Err(e) => return Answer::error(400, format!("the body must be {{\"spec\": \"…\"}}: {e}")),
    };
    let filter = match EnvFilter::try_new(&spec) {
        Ok(f) => f,
        Err(e) => return Answer::error(400, format!("invalid log spec {spec:?}: {e}")),
    };
    match logs.reload(filter) {
        Ok(()) => {
            tracing::info!(%spec, "log spec changed");
            Answer::json(200, &json!({ "spec": spec }))
        }
        Err(e) => Answer::error(500, format!("cannot change the log filter: {e}")),
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Generates crypto material (the example consortium) and returns its folder.
    fn material(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("gridledger-ops-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config: gridledger_identity::material::CryptoConfig =
            toml::from_str(include_str!("../../examples/crypto-config.toml"))
                .expect("the example crypto config parses");
        gridledger_identity::material::generate(&config, &dir, crate::now_unix_secs())
            .expect("generate crypto material");
        dir
    }

    #[tokio::test]
    async fn tls_endpoint_answers_https_with_the_configured_certificate() {
        let dir = material("tls");
        let node = dir.join("organizations/DSOMSP/peers/peer0.dso/tls");
        let metrics: &'static Metrics = Box::leak(Box::default());
        let (_layer, logs) = reload::Layer::new(EnvFilter::new("info"));
        let addr = start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Some((node.join("server.crt"), node.join("server.key"))),
            Extras::default(),
            logs,
            metrics,
        )
        .await
        .expect("start the endpoint");

        let ca_pem = std::fs::read(dir.join("organizations/DSOMSP/tlsca/tlsca.pem"))
            .expect("read the TLS CA");
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca_pem) {
            roots.add(cert.expect("a PEM certificate")).expect("a CA");
        }
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(
                rustls::pki_types::ServerName::try_from("localhost").expect("a name"),
                tcp,
            )
            .await
            .expect("TLS handshake with the configured certificate");
        tls.write_all(b"GET /version HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("send");
        let mut response = String::new();
        tls.read_to_string(&mut response).await.expect("read");
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(
            response.ends_with(&format!(
                "{{\"version\":\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )) || response.contains("\"commit\""),
            "{response}"
        );

        // Plain HTTP on the TLS port gets no HTTP answer.
        let mut plain = tokio::net::TcpStream::connect(addr).await.expect("connect");
        plain
            .write_all(b"GET /version HTTP/1.1\r\n\r\n")
            .await
            .expect("send");
        let mut bytes = Vec::new();
        let _ = plain.read_to_end(&mut bytes).await;
        assert!(
            !bytes.starts_with(b"HTTP/1.1 200"),
            "plain HTTP was answered"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An orderer's participation that serves channel `grid` and joins the block `ok`.
    struct Fake;

    impl ChannelParticipation for Fake {
        fn join(&self, block: &[u8]) -> Result<ParticipatingChannel, JoinRefused> {
            match block {
                b"ok" => Ok(grid()),
                _ => Err(JoinRefused::BadBlock("not a block".into())),
            }
        }
        fn list(&self) -> Vec<ParticipatingChannel> {
            vec![grid()]
        }
        fn channel(&self, name: &str) -> Option<ParticipatingChannel> {
            (name == "grid").then(grid)
        }
    }

    fn grid() -> ParticipatingChannel {
        ParticipatingChannel {
            name: "grid".into(),
            consensus_relation: "consenter",
            status: "active",
            height: 1,
        }
    }

    /// One HTTPS exchange with `addr`, trusting `ca`, presenting `client` (certificate and
    /// key files) when given; what the server sent, or why the exchange failed.
    async fn https(
        addr: SocketAddr,
        ca: &Path,
        client: Option<(PathBuf, PathBuf)>,
        request: &[u8],
    ) -> Result<String, String> {
        let ca_pem = std::fs::read(ca).map_err(|e| e.to_string())?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca_pem) {
            roots
                .add(cert.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
        let config = match client {
            Some((cert, key)) => {
                let cert_pem = std::fs::read(cert).map_err(|e| e.to_string())?;
                let key_pem = std::fs::read(key).map_err(|e| e.to_string())?;
                let chain = CertificateDer::pem_slice_iter(&cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| e.to_string())?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| e.to_string())?
            }
            None => builder.with_no_client_auth(),
        };
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name =
            rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(request).await.map_err(|e| e.to_string())?;
        let mut response = String::new();
        tls.read_to_string(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        Ok(response)
    }

    #[tokio::test]
    async fn with_client_cas_only_certified_clients_reach_the_participation_api() {
        let dir = material("mtls");
        let org = |msp: &str| dir.join(format!("organizations/{msp}"));
        let node = org("DSOMSP").join("peers/peer0.dso/tls");
        let metrics: &'static Metrics = Box::leak(Box::default());
        let (_layer, logs) = reload::Layer::new(EnvFilter::new("info"));
        let extras = Extras {
            client_cas: vec![org("DSOMSP").join("tlsca/tlsca.pem")],
            participation: Some(Arc::new(Fake)),
        };
        let addr = start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Some((node.join("server.crt"), node.join("server.key"))),
            extras,
            logs,
            metrics,
        )
        .await
        .expect("start the endpoint");
        let ca = org("DSOMSP").join("tlsca/tlsca.pem");
        let client = |msp: &str| {
            let tls = org(msp).join("users/Admin/tls");
            Some((tls.join("client.crt"), tls.join("client.key")))
        };
        let list = b"GET /participation/v1/channels HTTP/1.1\r\nHost: localhost\r\n\r\n";

        let certified = https(addr, &ca, client("DSOMSP"), list)
            .await
            .expect("a certified client is served");
        assert!(certified.starts_with("HTTP/1.1 200 OK\r\n"), "{certified}");
        assert!(
            certified.ends_with(
                "{\"channels\":[{\"name\":\"grid\",\"url\":\"/participation/v1/channels/grid\"}],\"systemChannel\":null}"
            ),
            "{certified}"
        );
        let join = b"POST /participation/v1/channels HTTP/1.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 2\r\n\r\nok";
        let joined = https(addr, &ca, client("DSOMSP"), join)
            .await
            .expect("a certified client is served");
        assert!(joined.starts_with("HTTP/1.1 201 Created\r\n"), "{joined}");
        assert!(
            joined.contains("\"consensusRelation\":\"consenter\""),
            "{joined}"
        );

        for (who, client) in [
            ("no certificate", None),
            ("another CA's certificate", client("RetailerMSP")),
        ] {
            let refused = https(addr, &ca, client, list).await;
            assert!(
                !refused.as_ref().is_ok_and(|r| r.starts_with("HTTP/1.1")),
                "a client with {who} was answered: {refused:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_node_without_participation_answers_404_there() {
        let metrics: &'static Metrics = Box::leak(Box::default());
        let (_layer, logs) = reload::Layer::new(EnvFilter::new("info"));
        let addr = start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            None,
            Extras::default(),
            logs,
            metrics,
        )
        .await
        .expect("start the endpoint");
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /participation/v1/channels HTTP/1.1\r\n\r\n")
            .await
            .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        assert!(response.starts_with("HTTP/1.1 404 "), "{response}");
        assert!(response.contains("only orderers serve it"), "{response}");
    }
}
