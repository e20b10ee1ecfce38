//! A layer for GridLedger's gRPC servers that logs calls answered with an error no handler
//! reported.
//!
//! tonic refuses some requests before any handler runs: a message over the size limit, bytes
//! that do not decode as the method's message, a method the server does not have. The
//! handlers log their own refusals, with who asked and why; these would otherwise leave no
//! line in the node's log. [`CallLogLayer`] looks at the status of every response whose
//! headers already carry one (a "trailers-only" gRPC response, which is how every refusal of a
//! unary call and every refusal before a stream starts is sent) and logs the codes tonic itself
//! produces, with the method, the client's address and tonic's message.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::Service;
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower_layer::Layer;

/// gRPC status codes tonic answers with on its own: `INTERNAL` (the request does not decode),
/// `UNIMPLEMENTED` (no such method), `OUT_OF_RANGE` and `RESOURCE_EXHAUSTED` (over a size
/// limit).
const CODES_FROM_THE_FRAMEWORK: [(&str, &str); 4] = [
    ("13", "INTERNAL"),
    ("12", "UNIMPLEMENTED"),
    ("11", "OUT_OF_RANGE"),
    ("8", "RESOURCE_EXHAUSTED"),
];

/// The longest part of tonic's message put in a log line: a decode error can repeat its field
/// path a hundred times.
const MAX_LOGGED_MESSAGE_CHARS: usize = 300;

/// Wraps a gRPC server's routes with [`CallLog`]. `node` names the server in the log line
/// (`"peer"`, `"orderer"`).
#[derive(Debug, Clone, Copy)]
pub struct CallLogLayer {
    node: &'static str,
}

impl CallLogLayer {
    /// A layer whose log lines say they come from `node`.
    pub fn new(node: &'static str) -> CallLogLayer {
        CallLogLayer { node }
    }
}

impl<S> Layer<S> for CallLogLayer {
    type Service = CallLog<S>;

    fn layer(&self, inner: S) -> CallLog<S> {
        CallLog {
            inner,
            node: self.node,
        }
    }
}

/// The service [`CallLogLayer`] makes: passes every call through and logs the framework's
/// refusals.
#[derive(Debug, Clone)]
pub struct CallLog<S> {
    inner: S,
    node: &'static str,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for CallLog<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let client = client_address(request.extensions());
        let node = self.node;
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            log_framework_refusal(node, &method, &client, response.headers());
            Ok(response)
        })
    }
}

/// The client's address, as tonic records it for a TLS or a plain TCP connection.
fn client_address(extensions: &http::Extensions) -> String {
    let address = extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|tls| tls.get_ref().remote_addr())
        .or_else(|| {
            extensions
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::remote_addr)
        });
    address.map_or_else(|| "(unknown)".to_owned(), |a| a.to_string())
}

fn log_framework_refusal(node: &str, method: &str, client: &str, headers: &http::HeaderMap) {
    let Some(code) = headers.get("grpc-status").and_then(|v| v.to_str().ok()) else {
        return;
    };
    let Some((_, name)) = CODES_FROM_THE_FRAMEWORK.iter().find(|(c, _)| *c == code) else {
        return;
    };
    let message = headers
        .get("grpc-message")
        .map(|v| percent_decoded(v.as_bytes()))
        .unwrap_or_default();
    let message: String = message.chars().take(MAX_LOGGED_MESSAGE_CHARS).collect();
    tracing::warn!(
        node,
        method = %method,
        client = %client,
        code = name,
        reason = %message,
        "gRPC call refused"
    );
}

/// gRPC percent-encodes its `grpc-message` header; decode it for a readable log line (an
/// invalid escape is kept as it is).
fn percent_decoded(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decoded;

    #[test]
    fn grpc_messages_are_percent_decoded_and_bad_escapes_kept() {
        assert_eq!(
            percent_decoded(b"failed to decode%3A length 200%25"),
            "failed to decode: length 200%"
        );
        assert_eq!(percent_decoded(b"50%zz and %4"), "50%zz and %4");
    }
}
