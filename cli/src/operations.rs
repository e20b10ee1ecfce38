//! The operations endpoint of a peer or orderer (`[operations] listen_address` in its config):
//! a small plain-HTTP/1.1 server for operators' tools, separate from the gRPC port.
//!
//! - `GET /metrics`: every metric of the process-wide registry
//!   (`gridledger_ledger::metrics`) in the Prometheus text format.
//! - `GET /healthz`: 200 `{"status":"OK"}`, or 503 `{"status":"Service Unavailable",
//!   "failed_checks":[{"component":…,"reason":…}]}` when a registered health check fails.
//! - `GET /version`: `{"version":…}`, plus `"commit"` when the binary was built with
//!   `GRIDLEDGER_COMMIT` set in the environment.
//! - `GET /logspec`, `PUT /logspec` with `{"spec":"info,gridledger_peer=debug"}`: the log
//!   filter (`RUST_LOG` syntax), changed at run time.
//!
//! Anything else is a 404, a known path with another method a 405, a bad body a 400, each
//! with a JSON `{"error":…}`. One request per connection (`Connection: close`); requests are
//! bounded in size and time, so a slow or hostile client holds one task briefly at most.

use anyhow::Context;
use gridledger_peer::metrics::Registry as Metrics;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing_subscriber::{EnvFilter, reload};

/// The handle that changes the process's log filter.
pub type LogHandle = reload::Handle<EnvFilter, tracing_subscriber::Registry>;

/// Largest request head (request line and headers).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest request body.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `listen` and serves the endpoint on a background task until the runtime stops.
/// `metrics` is the process-wide registry (`gridledger_peer::metrics::process_registry()` and
/// `gridledger_orderer::metrics_registry()` are the same one, owned by the ledger crate).
pub async fn start(
    listen: SocketAddr,
    logs: LogHandle,
    metrics: &'static Metrics,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the operations endpoint on {listen}"))?;
    tracing::info!(%listen, "operations endpoint serving");
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let logs = logs.clone();
                    tokio::spawn(async move {
                        if let Err(e) = connection(stream, &logs, metrics).await {
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
    Ok(())
}

/// A parsed request.
struct Request {
    method: String,
    path: String,
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

async fn connection(
    mut stream: TcpStream,
    logs: &LogHandle,
    metrics: &'static Metrics,
) -> std::io::Result<()> {
    let answer = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await {
        Err(_) => Answer::error(408, "the request was not received in time"),
        Ok(Err(e)) => Answer::error(400, e),
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

/// Reads one request: the head up to the blank line, then `Content-Length` bytes of body.
async fn read_request(stream: &mut TcpStream) -> Result<Request, String> {
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
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                content_length = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("invalid Content-Length {:?}", value.trim()))?;
            }
        }
    }
    if content_length > MAX_BODY_BYTES {
        return Err(format!("the body exceeds {MAX_BODY_BYTES} bytes"));
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
    let path = target.split('?').next().unwrap_or_default().to_owned();
    Ok(Request {
        method: method.to_owned(),
        path,
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

/// Runs the health checks off the executor (they may wait on TCP connects).
async fn health(metrics: &'static Metrics) -> Answer {
    let failed = tokio::task::spawn_blocking(|| metrics.check_health()).await;
    match failed {
        Ok(failed) if failed.is_empty() => Answer::json(200, &json!({ "status": "OK" })),
        Ok(failed) => Answer::json(
            503,
            &json!({
                "status": "Service Unavailable",
                "failed_checks": failed
                    .iter()
                    .map(|f| json!({ "component": f.component, "reason": f.reason }))
                    .collect::<Vec<_>>(),
            }),
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
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}
