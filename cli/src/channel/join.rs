//! `gridledger channel create|join|list`: bringing nodes into a channel while they run, as
//! Fabric 2.5 does it.
//!
//! - Orderers: the channel participation API on each orderer's operations endpoint (what
//!   `osnadmin channel join|list` calls): `POST /participation/v1/channels` with the genesis
//!   block as the multipart field `config-block`, then `GET /participation/v1/channels/{name}`
//!   until the orderer reports the channel `active`. Plain HTTP, or HTTPS with `--ca-file`
//!   (and a client certificate for mutual TLS).
//! - Peers: the configuration system chaincode `cscc` through `Endorser.ProcessProposal`, signed
//!   by an admin of the peer's organization: `JoinChain` with the genesis block, `GetChannels`.

use anyhow::{Context, bail};
use gridledger_identity::SigningIdentity;
use gridledger_proto::prost::Message;
use gridledger_proto::{common, protos};
use gridledger_sdk::Gateway;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// The participation API's collection of channels.
const CHANNELS: &str = "/participation/v1/channels";
/// Deadline of one HTTP exchange with an orderer's operations endpoint.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read from an operations endpoint.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// How often `create` asks an orderer whether the channel is active.
const POLL: Duration = Duration::from_millis(250);
/// Deadline of one cscc call.
const PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// How to reach orderers' operations endpoints (the flags of `osnadmin`).
#[derive(Debug, Clone, clap::Args)]
pub struct OrdererAdminArgs {
    /// An orderer's operations endpoint, HOST:PORT (repeatable).
    #[arg(long = "orderer-admin", value_name = "HOST:PORT")]
    pub orderer_admin: Vec<String>,
    /// The CA certificate (PEM) of the endpoints' TLS certificates: speak HTTPS (default:
    /// plain HTTP).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for endpoints that require mutual TLS, with --client-key.
    #[arg(long, requires_all = ["client_key", "ca_file"])]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

/// A peer and an admin of its organization: from network.json (`--network`, `--org`), or
/// given directly (`--peer`, `--tls-ca`, `--msp-id`, `--cert`, `--key`).
#[derive(Debug, Clone, clap::Args)]
pub struct PeerAdminArgs {
    /// The network description (network.json), with --org: the organization's first peer,
    /// signing as its first admin.
    #[arg(long, requires = "org", conflicts_with = "peer")]
    pub network: Option<PathBuf>,
    /// The organization (MSP id) network.json lists.
    #[arg(long, requires = "network")]
    pub org: Option<String>,
    /// Or: the peer's address, HOST:PORT, with --tls-ca, --msp-id, --cert and --key.
    #[arg(long, value_name = "HOST:PORT", requires_all = ["tls_ca", "msp_id", "cert", "key"])]
    pub peer: Option<String>,
    /// The CA certificate (PEM) of the peer's TLS certificate.
    #[arg(long, requires = "peer")]
    pub tls_ca: Option<PathBuf>,
    /// The name the peer's TLS certificate must carry (default: the host of --peer).
    #[arg(long, requires = "peer")]
    pub server_name: Option<String>,
    /// The admin's MSP id (the peer's organization).
    #[arg(long, requires = "peer")]
    pub msp_id: Option<String>,
    /// The admin's certificate (PEM).
    #[arg(long, requires = "peer")]
    pub cert: Option<PathBuf>,
    /// The admin's private key (PEM).
    #[arg(long, requires = "peer")]
    pub key: Option<PathBuf>,
}

impl PeerAdminArgs {
    /// Whether a peer was named at all.
    pub fn given(&self) -> bool {
        self.network.is_some() || self.peer.is_some()
    }

    /// A connection to the peer, the admin, and the peer's name for messages.
    async fn connect(&self) -> anyhow::Result<(Channel, SigningIdentity, String)> {
        if let (Some(network), Some(org)) = (&self.network, &self.org) {
            let network = crate::chaincode::Network::load(network)?;
            return network.admin_on_peer(org).await;
        }
        let (Some(peer), Some(tls_ca), Some(msp_id), Some(cert), Some(key)) = (
            &self.peer,
            &self.tls_ca,
            &self.msp_id,
            &self.cert,
            &self.key,
        ) else {
            bail!(
                "name the peer: --network and --org, or --peer, --tls-ca, --msp-id, --cert and --key"
            );
        };
        let admin = SigningIdentity::load(msp_id, cert, key)
            .with_context(|| format!("loading the admin identity {}", cert.display()))?;
        let ca = std::fs::read(tls_ca).with_context(|| format!("reading {}", tls_ca.display()))?;
        let server_name = match &self.server_name {
            Some(name) => name.clone(),
            None => host_of(peer).to_owned(),
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name(server_name);
        let channel = Endpoint::from_shared(format!("https://{peer}"))
            .with_context(|| format!("peer address {peer}"))?
            .tls_config(tls)
            .context("TLS configuration")?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .with_context(|| format!("the peer at {peer} is unreachable"))?;
        Ok((channel, admin, format!("peer {peer}")))
    }
}

/// The host part of HOST:PORT (or [V6]:PORT).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Reads a genesis block and checks it before any node sees it: a `common.Block` numbered 0
/// carrying a valid channel configuration. Returns its bytes and channel id.
pub(crate) fn read_genesis(path: &Path) -> anyhow::Result<(Vec<u8>, String)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let block = common::Block::decode(bytes.as_slice())
        .with_context(|| format!("{} is not a protobuf common.Block", path.display()))?;
    let number = block.header.as_ref().map_or(0, |h| h.number);
    if number != 0 {
        bail!(
            "{} is block {number} of its channel, not a genesis block (make one with `gridledger channel genesis`)",
            path.display()
        );
    }
    let config = gridledger_channels::config::ChannelConfig::from_block(&block)
        .with_context(|| format!("{} carries no valid channel configuration", path.display()))?;
    Ok((bytes, config.channel_id().to_owned()))
}

// ---------------------------------------------------------------------------------------------
// Peers: cscc

/// Runs cscc `function` with `args` on the peer as its admin; the response's payload.
async fn cscc(
    peer: &PeerAdminArgs,
    function: &str,
    args: Vec<Vec<u8>>,
) -> anyhow::Result<(String, Vec<u8>)> {
    let (channel, admin, name) = peer.connect().await?;
    let mut all = vec![function.as_bytes().to_vec()];
    all.extend(args);
    let proposal = Gateway::from_channel(channel.clone(), admin)
        .network("")
        .contract(gridledger_peer::cscc::NAME)
        .proposal_with(all, BTreeMap::new(), Vec::new())?;
    let mut client = protos::endorser_client::EndorserClient::new(channel);
    let mut request = tonic::Request::new(proposal.signed_proposal().clone());
    request.set_timeout(PEER_TIMEOUT);
    let response = client
        .process_proposal(request)
        .await
        .with_context(|| format!("cscc {function} on {name}"))?
        .into_inner()
        .response
        .unwrap_or_default();
    if response.status != 200 {
        bail!("{name} refused cscc {function}: {}", response.message);
    }
    Ok((name, response.payload))
}

/// `gridledger channel join`: joins the peer to the channel of `block` (its genesis block).
pub(crate) async fn join_peer(peer: &PeerAdminArgs, block: &Path) -> anyhow::Result<()> {
    let (bytes, channel) = read_genesis(block)?;
    let (name, _) = cscc(peer, "JoinChain", vec![bytes]).await?;
    println!("{name} joined channel '{channel}'");
    Ok(())
}

/// The channels a peer has joined (cscc `GetChannels`).
async fn peer_channels(peer: &PeerAdminArgs) -> anyhow::Result<(String, Vec<String>)> {
    let (name, payload) = cscc(peer, "GetChannels", Vec::new()).await?;
    let list = protos::ChannelQueryResponse::decode(payload.as_slice())
        .with_context(|| format!("decoding the ChannelQueryResponse of {name}"))?;
    Ok((
        name,
        list.channels.into_iter().map(|c| c.channel_id).collect(),
    ))
}

/// `gridledger channel list`: a peer's channels, or each orderer's.
pub(crate) async fn list(peer: &PeerAdminArgs, orderers: &OrdererAdminArgs) -> anyhow::Result<()> {
    match (peer.given(), orderers.orderer_admin.is_empty()) {
        (true, true) => {
            let (name, channels) = peer_channels(peer).await?;
            println!("channels joined by {name}:");
            for channel in channels {
                println!("{channel}");
            }
            Ok(())
        }
        (false, false) => {
            let client = AdminClient::new(orderers)?;
            for address in &orderers.orderer_admin {
                let channels = client.list(address).await?;
                println!("channels served by the orderer at {address}:");
                for c in channels {
                    println!(
                        "{}\t{}\t{}\theight {}",
                        c.name, c.consensus_relation, c.status, c.height
                    );
                }
            }
            Ok(())
        }
        (true, false) => bail!("list a peer's channels or orderers' channels, not both"),
        (false, true) => bail!(
            "name a peer (--network and --org, or --peer …) or an orderer's operations endpoint (--orderer-admin)"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Orderers: the channel participation API

/// A channel as an orderer's participation API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OrdererChannel {
    pub name: String,
    pub consensus_relation: String,
    pub status: String,
    pub height: u64,
}

impl OrdererChannel {
    fn from_json(value: &Value) -> anyhow::Result<OrdererChannel> {
        let text = |key: &str| {
            value[key]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("the channel info has no {key:?}: {value}"))
        };
        Ok(OrdererChannel {
            name: text("name")?,
            consensus_relation: text("consensusRelation")?,
            status: text("status")?,
            height: value["height"]
                .as_u64()
                .with_context(|| format!("the channel info has no height: {value}"))?,
        })
    }
}

/// `gridledger channel create`: joins every orderer to the channel of `block` and waits until
/// each reports it active.
pub(crate) async fn create(
    orderers: &OrdererAdminArgs,
    channel: &str,
    block: &Path,
    timeout: Duration,
) -> anyhow::Result<()> {
    if orderers.orderer_admin.is_empty() {
        bail!("name the orderers' operations endpoints with --orderer-admin HOST:PORT");
    }
    let (bytes, block_channel) = read_genesis(block)?;
    if block_channel != channel {
        bail!(
            "{} is the genesis block of channel '{block_channel}', not of '{channel}'",
            block.display()
        );
    }
    let client = AdminClient::new(orderers)?;
    for address in &orderers.orderer_admin {
        match client.join(address, &bytes).await? {
            Joined::Now(c) => println!(
                "orderer {address}: joined channel '{channel}' as {} ({})",
                c.consensus_relation, c.status
            ),
            Joined::Before(reason) => {
                println!("orderer {address}: {reason}")
            }
        }
    }
    let deadline = Instant::now() + timeout;
    for address in &orderers.orderer_admin {
        loop {
            let info = client.channel(address, channel).await?;
            match info {
                Some(c) if c.status == "active" => {
                    println!(
                        "orderer {address}: channel '{channel}' active, {} at height {}",
                        c.consensus_relation, c.height
                    );
                    break;
                }
                other if Instant::now() >= deadline => bail!(
                    "the orderer at {address} did not report channel '{channel}' active within {} s (last: {})",
                    timeout.as_secs(),
                    other.map_or_else(|| "not joined".to_owned(), |c| c.status)
                ),
                _ => tokio::time::sleep(POLL).await,
            }
        }
    }
    println!(
        "channel '{channel}' created on {} orderer(s)",
        orderers.orderer_admin.len()
    );
    Ok(())
}

/// The outcome of a join request.
enum Joined {
    /// The orderer joined the channel now.
    Now(OrdererChannel),
    /// The orderer served the channel, from this block, already.
    Before(String),
}

/// An HTTP(S) client of orderers' operations endpoints.
struct AdminClient {
    tls: Option<tokio_rustls::TlsConnector>,
}

impl AdminClient {
    fn new(args: &OrdererAdminArgs) -> anyhow::Result<AdminClient> {
        let Some(ca_file) = &args.ca_file else {
            return Ok(AdminClient { tls: None });
        };
        let pem =
            std::fs::read(ca_file).with_context(|| format!("reading {}", ca_file.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots
                .add(cert.with_context(|| format!("{} is not PEM", ca_file.display()))?)
                .with_context(|| format!("{} is not a usable CA certificate", ca_file.display()))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_root_certificates(roots);
        let config = match (&args.client_cert, &args.client_key) {
            (Some(cert), Some(key)) => {
                let cert_pem =
                    std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
                let key_pem =
                    std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
                let chain = CertificateDer::pem_slice_iter(&cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("{} is not a PEM certificate", cert.display()))?;
                let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
                    .with_context(|| format!("{} is not a PEM private key", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .context("the client certificate and key do not form a usable pair")?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(AdminClient {
            tls: Some(tokio_rustls::TlsConnector::from(Arc::new(config))),
        })
    }

    /// `POST /participation/v1/channels` with the block as the form field `config-block`.
    async fn join(&self, address: &str, block: &[u8]) -> anyhow::Result<Joined> {
        let boundary = format!("gridledger-{}", hex::encode(random_bytes()?));
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"config-block\"; filename=\"config.block\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(block);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let (status, answer) = self
            .exchange(address, "POST", CHANNELS, Some(&content_type), &body)
            .await?;
        match status {
            201 => Ok(Joined::Now(OrdererChannel::from_json(&answer)?)),
            405 => Ok(Joined::Before(error_text(&answer))),
            _ => bail!(
                "the orderer at {address} refused to join the channel ({status}): {}",
                error_text(&answer)
            ),
        }
    }

    /// `GET /participation/v1/channels/{name}`; `None` when the orderer does not serve it.
    async fn channel(&self, address: &str, name: &str) -> anyhow::Result<Option<OrdererChannel>> {
        let (status, answer) = self
            .exchange(address, "GET", &format!("{CHANNELS}/{name}"), None, &[])
            .await?;
        match status {
            200 => OrdererChannel::from_json(&answer).map(Some),
            404 => Ok(None),
            _ => bail!(
                "the orderer at {address} answered {status} about channel '{name}': {}",
                error_text(&answer)
            ),
        }
    }

    /// Every channel the orderer serves, with its details.
    async fn list(&self, address: &str) -> anyhow::Result<Vec<OrdererChannel>> {
        let (status, answer) = self.exchange(address, "GET", CHANNELS, None, &[]).await?;
        if status != 200 {
            bail!(
                "the orderer at {address} answered {status} to the channel list: {}",
                error_text(&answer)
            );
        }
        let names: Vec<String> = answer["channels"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut out = Vec::new();
        for name in names {
            if let Some(c) = self.channel(address, &name).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// One request and its answer: status code and JSON body (`null` when empty).
    async fn exchange(
        &self,
        address: &str,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> anyhow::Result<(u16, Value)> {
        let unreachable =
            || format!("the orderer's operations endpoint at {address} is unreachable");
        let exchange = async {
            let tcp = tokio::net::TcpStream::connect(address)
                .await
                .with_context(unreachable)?;
            let mut head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAccept: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            if let Some(content_type) = content_type {
                head.push_str(&format!("Content-Type: {content_type}\r\n"));
            }
            head.push_str("\r\n");
            match &self.tls {
                None => http(tcp, head.as_bytes(), body).await,
                Some(connector) => {
                    let name = ServerName::try_from(host_of(address).to_owned())
                        .with_context(|| format!("{address} names no TLS server"))?;
                    let tls = connector.connect(name, tcp).await.with_context(|| {
                        format!("TLS handshake with the operations endpoint at {address}")
                    })?;
                    http(tls, head.as_bytes(), body).await
                }
            }
        };
        let raw = tokio::time::timeout(HTTP_TIMEOUT, exchange)
            .await
            .with_context(|| {
                format!("the operations endpoint at {address} did not answer in time")
            })??;
        parse_answer(&raw).with_context(|| format!("the answer of {address}"))
    }
}

/// Sends one request over `stream` and reads the whole answer (the server closes).
async fn http<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    head: &[u8],
    body: &[u8],
) -> anyhow::Result<Vec<u8>> {
    stream
        .write_all(head)
        .await
        .context("sending the request")?;
    stream
        .write_all(body)
        .await
        .context("sending the request")?;
    stream.flush().await.context("sending the request")?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            // A peer that closes without TLS close_notify has still sent its whole answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => break,
            Err(e) => return Err(e).context("reading the answer"),
        }
        if answer.len() > MAX_ANSWER_BYTES {
            bail!("the answer exceeds {MAX_ANSWER_BYTES} bytes");
        }
    }
    Ok(answer)
}

/// The status code and JSON body of an HTTP/1.1 answer.
fn parse_answer(raw: &[u8]) -> anyhow::Result<(u16, Value)> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no complete HTTP answer")?;
    let head = std::str::from_utf8(&raw[..head_end]).context("the answer head is not UTF-8")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .with_context(|| format!("malformed status line {:?}", head.lines().next()))?;
    let body = &raw[head_end + 4..];
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body).with_context(|| {
            format!(
                "the body is not JSON: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )
        })?
    };
    Ok((status, value))
}

/// The `error` of a JSON error answer, or the answer itself.
fn error_text(answer: &Value) -> String {
    answer["error"]
        .as_str()
        .map_or_else(|| answer.to_string(), str::to_owned)
}

fn random_bytes() -> anyhow::Result<[u8; 12]> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 12];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system's random generator failed"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_into_status_and_json() {
        let raw = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n\r\n{\"name\":\"c\",\"consensusRelation\":\"consenter\",\"status\":\"active\",\"height\":1}";
        let (status, body) = parse_answer(raw).expect("parses");
        assert_eq!(status, 201);
        assert_eq!(
            OrdererChannel::from_json(&body).expect("a channel"),
            OrdererChannel {
                name: "c".into(),
                consensus_relation: "consenter".into(),
                status: "active".into(),
                height: 1
            }
        );
        let (status, body) =
            parse_answer(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n{\"error\":\"exists\"}")
                .expect("parses");
        assert_eq!((status, error_text(&body)), (405, "exists".to_owned()));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n\r\nnot json").is_err());
    }

    #[test]
    fn hosts_come_from_addresses() {
        assert_eq!(host_of("127.0.0.1:7051"), "127.0.0.1");
        assert_eq!(host_of("peer0.dso:7051"), "peer0.dso");
        assert_eq!(host_of("[::1]:9443"), "::1");
    }
}
