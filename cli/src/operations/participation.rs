//! Fabric's channel participation API (`osnadmin channel join|list`) on an orderer's operations
//! endpoint. The orderer supplies a [`ChannelParticipation`]; a peer supplies none and answers
//! 404 under `/participation/`.
//!
//! - `POST /participation/v1/channels`: join the channel of a config block, sent as the
//!   multipart form field `config-block` (what `osnadmin` sends) or as a raw
//!   `application/octet-stream` body. 201 with the channel's info; 405 when the channel is
//!   already joined; 400 when the block is not a usable join block.
//! - `GET /participation/v1/channels`: `{"systemChannel":null,"channels":[{"name","url"}]}`.
//! - `GET /participation/v1/channels/{name}`: `{"name","url","consensusRelation","status",
//!   "height"}`, or 404.
//! - `DELETE /participation/v1/channels/{name}`: 405; a channel is removed while the orderer
//!   is stopped (`gridledger orderer remove`).
//!
//! Security: these requests change the orderer, so they are served only when the endpoint
//! verifies client certificates (TLS with `tls_client_ca_certs`) or listens on a loopback
//! address; otherwise every participation request gets 403 with the reason.

use super::{Answer, Request};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

/// The collection of channels.
const CHANNELS: &str = "/participation/v1/channels";
/// Largest join request: config blocks carry every organization's certificates.
const MAX_BLOCK_BYTES: usize = 16 * 1024 * 1024;
/// The multipart form field holding the block, as `osnadmin channel join` names it.
pub const CONFIG_BLOCK_FIELD: &str = "config-block";

/// A channel an orderer serves, as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipatingChannel {
    /// The channel id.
    pub name: String,
    /// `consenter` or `follower`.
    pub consensus_relation: &'static str,
    /// `active` or `onboarding`.
    pub status: &'static str,
    /// The ledger height.
    pub height: u64,
}

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinRefused {
    /// The orderer serves the channel already (405, as Fabric answers).
    AlreadyJoined(String),
    /// The block is not a usable join block (400).
    BadBlock(String),
    /// The orderer could not store or start the channel (500).
    Failed(String),
}

/// What an orderer lets the operations endpoint do with its channels.
pub trait ChannelParticipation: Send + Sync {
    /// Joins the channel of `block` (protobuf `common.Block`) and starts serving it. Called off
    /// the async executor: it may block on disk.
    fn join(&self, block: &[u8]) -> Result<ParticipatingChannel, JoinRefused>;
    /// Every served channel, sorted by name.
    fn list(&self) -> Vec<ParticipatingChannel>;
    /// One served channel.
    fn channel(&self, name: &str) -> Option<ParticipatingChannel>;
}

/// Whether the endpoint may serve participation requests: with client certificates verified,
/// or on a loopback address (only local users reach it). The error is the reason given in the
/// 403.
pub(super) fn access(listen: SocketAddr, mutual_tls: bool) -> Result<(), String> {
    if mutual_tls || listen.ip().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "the channel participation API changes this orderer, so it is served only over mutual \
         TLS ([operations] tls_cert, tls_key and tls_client_ca_certs) or on a loopback address; \
         this endpoint listens on {listen} without verifying client certificates"
    ))
}

/// The API as the endpoint serves it.
pub(super) struct Api {
    participation: Option<Arc<dyn ChannelParticipation>>,
    access: Result<(), String>,
}

impl Api {
    pub(super) fn new(
        participation: Option<Arc<dyn ChannelParticipation>>,
        access: Result<(), String>,
    ) -> Api {
        Api {
            participation,
            access,
        }
    }

    /// Whether `path` belongs to this API.
    pub(super) fn serves(path: &str) -> bool {
        path.starts_with("/participation/")
    }

    /// The body limit for `path` when this API takes large bodies there.
    pub(super) fn max_body(&self, path: &str) -> Option<usize> {
        (self.participation.is_some() && self.access.is_ok() && Api::serves(path))
            .then_some(MAX_BLOCK_BYTES)
    }

    pub(super) async fn serve(&self, request: Request) -> Answer {
        let Some(participation) = &self.participation else {
            return Answer::error(
                404,
                "no channel participation API here: only orderers serve it",
            );
        };
        if let Err(reason) = &self.access {
            return Answer::error(403, reason.clone());
        }
        let Some(rest) = request.path.strip_prefix(CHANNELS) else {
            return Answer::error(404, format!("no such resource: {}", request.path));
        };
        match (rest.trim_end_matches('/'), request.method.as_str()) {
            ("", "GET") => Answer::json(200, &list_json(&participation.list())),
            ("", "POST") => join(participation.clone(), &request).await,
            ("", other) => Answer::error(
                405,
                format!("{CHANNELS} does not accept {other}; use GET or POST"),
            ),
            (name, method) => {
                let name = name.trim_start_matches('/');
                match method {
                    "GET" => match participation.channel(name) {
                        Some(channel) => Answer::json(200, &channel_json(&channel)),
                        None => Answer::error(404, format!("channel {name} is not joined here")),
                    },
                    "DELETE" => Answer::error(
                        405,
                        format!(
                            "a channel is removed while the orderer is stopped: \
                             gridledger orderer remove --config orderer.toml --channel {name}"
                        ),
                    ),
                    other => Answer::error(
                        405,
                        format!("{} does not accept {other}; use GET", request.path),
                    ),
                }
            }
        }
    }
}

/// `POST /participation/v1/channels`.
async fn join(participation: Arc<dyn ChannelParticipation>, request: &Request) -> Answer {
    let block = match config_block(request) {
        Ok(block) => block,
        Err(reason) => return Answer::error(400, reason),
    };
    match tokio::task::spawn_blocking(move || participation.join(&block)).await {
        Ok(Ok(channel)) => Answer::json(201, &channel_json(&channel)),
        Ok(Err(JoinRefused::AlreadyJoined(reason))) => {
            Answer::error(405, format!("cannot join: {reason}"))
        }
        Ok(Err(JoinRefused::BadBlock(reason))) => {
            Answer::error(400, format!("cannot join: {reason}"))
        }
        Ok(Err(JoinRefused::Failed(reason))) => {
            Answer::error(500, format!("cannot join: {reason}"))
        }
        Err(e) => Answer::error(500, format!("the join task failed: {e}")),
    }
}

/// The block of a join request: the `config-block` field of a multipart form, or the whole
/// body when it is `application/octet-stream`.
fn config_block(request: &Request) -> Result<Vec<u8>, String> {
    let content_type = request.content_type.as_deref().unwrap_or_default();
    let mut params = content_type.split(';');
    let media = params
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let block = match media.as_str() {
        "multipart/form-data" => {
            let boundary = params
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
                .map(|(_, v)| v.trim().trim_matches('"').to_owned())
                .filter(|b| !b.is_empty())
                .ok_or("the multipart/form-data Content-Type names no boundary")?;
            form_field(&request.body, &boundary, CONFIG_BLOCK_FIELD)?
        }
        "application/octet-stream" => request.body.clone(),
        "" => {
            return Err(format!(
                "the request has no Content-Type: send the block as the multipart/form-data \
                 field {CONFIG_BLOCK_FIELD} or as application/octet-stream"
            ));
        }
        other => {
            return Err(format!(
                "unsupported Content-Type {other}: send the block as the multipart/form-data \
                 field {CONFIG_BLOCK_FIELD} or as application/octet-stream"
            ));
        }
    };
    if block.is_empty() {
        return Err("the config block is empty".into());
    }
    Ok(block)
}

/// The content of form field `name` in a multipart body with `boundary`. As Fabric's API, a
/// form with any other part is refused.
fn form_field(body: &[u8], boundary: &str, name: &str) -> Result<Vec<u8>, String> {
    let delimiter = format!("--{boundary}");
    let next_delimiter = format!("\r\n--{boundary}");
    let mut at =
        find(body, delimiter.as_bytes()).ok_or("the multipart body has no part")? + delimiter.len();
    let mut found = None;
    loop {
        let rest = &body[at..];
        if rest.starts_with(b"--") {
            break;
        }
        let rest = rest
            .strip_prefix(b"\r\n")
            .ok_or("malformed multipart body: a delimiter is not followed by a line break")?;
        let head_len = find(rest, b"\r\n\r\n")
            .ok_or("malformed multipart body: a part has no headers' end")?;
        let headers = std::str::from_utf8(&rest[..head_len])
            .map_err(|_| "malformed multipart body: part headers are not UTF-8".to_string())?;
        let content_start = head_len + 4;
        let content_len = find(&rest[content_start..], next_delimiter.as_bytes())
            .ok_or("malformed multipart body: a part is not closed by the boundary")?;
        let part_name = part_name(headers);
        if part_name.as_deref() != Some(name) {
            return Err(format!(
                "the form may hold only the field {name}; it has {}",
                part_name.map_or_else(|| "a part without a name".to_owned(), |n| format!("{n:?}"))
            ));
        }
        if found.is_some() {
            return Err(format!("the form holds the field {name} twice"));
        }
        found = Some(rest[content_start..content_start + content_len].to_vec());
        // Past this part's content and the line break before the next delimiter.
        at += 2 + content_start + content_len + next_delimiter.len();
        if at > body.len() {
            return Err("malformed multipart body: it ends inside a delimiter".into());
        }
    }
    found.ok_or_else(|| format!("the form has no field {name}"))
}

/// The `name` parameter of a part's `Content-Disposition: form-data` header.
fn part_name(headers: &str) -> Option<String> {
    let disposition = headers.split("\r\n").find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case("content-disposition")
            .then_some(value)
    })?;
    disposition.split(';').find_map(|param| {
        let (key, value) = param.split_once('=')?;
        (key.trim() == "name").then(|| value.trim().trim_matches('"').to_owned())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn url(name: &str) -> String {
    format!("{CHANNELS}/{name}")
}

/// Fabric's `ChannelInfo`.
fn channel_json(channel: &ParticipatingChannel) -> serde_json::Value {
    json!({
        "name": channel.name,
        "url": url(&channel.name),
        "consensusRelation": channel.consensus_relation,
        "status": channel.status,
        "height": channel.height,
    })
}

/// Fabric's `ChannelList` (GridLedger has no system channel).
fn list_json(channels: &[ParticipatingChannel]) -> serde_json::Value {
    json!({
        "systemChannel": null,
        "channels": channels
            .iter()
            .map(|c| json!({ "name": c.name, "url": url(&c.name) }))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(parts: &[(&str, &[u8])]) -> Vec<u8> {
        let mut body = b"preamble\r\n".to_vec();
        for (name, content) in parts {
            body.extend_from_slice(
                format!(
                    "--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"b.block\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XyZ--\r\n");
        body
    }

    #[test]
    fn the_config_block_field_is_read_byte_for_byte() {
        // Block bytes may hold CR LF and dashes: only the full delimiter ends the part.
        let block: &[u8] = b"\x0a\x02\r\n--X\r\n\x00\xff";
        assert_eq!(
            form_field(&form(&[("config-block", block)]), "XyZ", "config-block"),
            Ok(block.to_vec())
        );
    }

    #[test]
    fn forms_with_other_missing_or_repeated_fields_are_refused() {
        let other = form_field(&form(&[("block", b"x")]), "XyZ", "config-block");
        assert!(other.is_err_and(|e| e.contains("\"block\"")));
        let extra = form(&[("config-block", b"x"), ("note", b"y")]);
        assert!(form_field(&extra, "XyZ", "config-block").is_err_and(|e| e.contains("\"note\"")));
        let twice = form(&[("config-block", b"x"), ("config-block", b"y")]);
        assert!(form_field(&twice, "XyZ", "config-block").is_err_and(|e| e.contains("twice")));
        assert!(
            form_field(&form(&[]), "XyZ", "config-block").is_err_and(|e| e.contains("no field"))
        );
        assert!(form_field(b"--XyZ\r\nno headers end", "XyZ", "config-block").is_err());
        assert!(form_field(b"garbage", "XyZ", "config-block").is_err());
    }

    #[test]
    fn the_block_comes_from_the_form_or_a_raw_body() {
        let request = |content_type: Option<&str>, body: &[u8]| Request {
            method: "POST".into(),
            path: CHANNELS.into(),
            content_type: content_type.map(str::to_owned),
            body: body.to_vec(),
        };
        let raw = request(Some("application/octet-stream"), b"\x0a\x00");
        assert_eq!(config_block(&raw), Ok(b"\x0a\x00".to_vec()));
        let multipart = request(
            Some("multipart/form-data; boundary=\"XyZ\""),
            &form(&[("config-block", b"abc")]),
        );
        assert_eq!(config_block(&multipart), Ok(b"abc".to_vec()));
        assert!(config_block(&request(Some("multipart/form-data"), b"")).is_err());
        assert!(
            config_block(&request(Some("application/json"), b"{}"))
                .is_err_and(|e| e.contains("unsupported Content-Type"))
        );
        assert!(config_block(&request(None, b"x")).is_err_and(|e| e.contains("no Content-Type")));
        assert!(
            config_block(&request(Some("application/octet-stream"), b""))
                .is_err_and(|e| e.contains("empty"))
        );
    }

    #[test]
    fn participation_needs_mutual_tls_or_a_loopback_address() {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 9443));
        let v6_loopback: SocketAddr = "[::1]:9443".parse().expect("an address");
        let any = SocketAddr::from(([0, 0, 0, 0], 9443));
        assert!(access(loopback, false).is_ok());
        assert!(access(v6_loopback, false).is_ok());
        assert!(access(any, true).is_ok());
        let refused = access(any, false).expect_err("refused without client certificates");
        assert!(
            refused.contains("mutual TLS") && refused.contains("0.0.0.0:9443"),
            "{refused}"
        );
    }
}
