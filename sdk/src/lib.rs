//! The Rust client SDK for retailers' and communities' applications: Fabric's Gateway client
//! model over gRPC/TLS, speaking the same protocol as Fabric's official Gateway SDKs — connect
//! to one gateway peer, evaluate or endorse → submit → wait for the commit status, and listen
//! to chaincode and block events from a checkpoint.
//!
//! # Connect
//!
//! A [`Gateway`] is one TLS connection to one organization's peer, signing as one identity: a
//! certificate and key on disk ([`gridledger_identity::SigningIdentity`]) or any [`Signer`],
//! such as a key held in an HSM.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use gridledger_identity::SigningIdentity;
//! use gridledger_sdk::Gateway;
//! let signer = SigningIdentity::load("RetailerMSP", "cert.pem".as_ref(), "key.pem".as_ref())?;
//! let tls_ca = std::fs::read("tlsca.pem")?;
//! let gateway = Gateway::connect("127.0.0.1:7052", &tls_ca, "peer0.retailer", signer).await?;
//! let market = gateway.network("market");
//! # Ok(()) }
//! ```
//!
//! # Submit and evaluate
//!
//! [`Contract::submit`] has the transaction endorsed, ordered and committed, and fails with
//! [`SdkError::Invalid`] when it was committed with another validation code than VALID;
//! [`Contract::evaluate`] runs a query on one peer and orders nothing.
//!
//! ```no_run
//! # async fn run(gateway: gridledger_sdk::Gateway) -> Result<(), gridledger_sdk::SdkError> {
//! use gridledger_sdk::RetryPolicy;
//! let energy = gateway
//!     .network("market")
//!     .contract("energy")
//!     .with_retry(RetryPolicy::idempotent(5));
//! let period = "1767232800"; // a delivery period's start, unix seconds
//! let (offer, block) = energy
//!     .submit("PostOffer", &["offer-17", period, "2000", "20"])
//!     .await?;
//! let balance = energy.evaluate("Balance", &["RetailerMSP:POD-R002"]).await?;
//! println!("offer in block {block}: {}", String::from_utf8_lossy(&offer));
//! # Ok(()) }
//! ```
//!
//! Transient data and the choice of endorsing organizations go through
//! [`Contract::proposal_with`]; [`Proposal`], [`Transaction`] and [`Commit`] expose each step.
//!
//! # Events with a checkpoint
//!
//! [`Network::chaincode_events`] streams the events chaincodes set in VALID transactions, and
//! [`Network::block_events`] / [`Network::filtered_block_events`] stream blocks. A
//! [`FileCheckpointer`] saves the position after each processed event, so a restarted
//! application resumes exactly after the last one: nothing lost, nothing seen twice.
//!
//! ```no_run
//! # async fn run(gateway: gridledger_sdk::Gateway) -> Result<(), gridledger_sdk::SdkError> {
//! use gridledger_sdk::{EventsOptions, FileCheckpointer};
//! let mut checkpointer = FileCheckpointer::open("trades.checkpoint")?;
//! // The first run reads from block 0; later runs resume after the checkpoint.
//! let options = EventsOptions::new()
//!     .start_block(0)
//!     .checkpoint(checkpointer.checkpoint());
//! let mut events = gateway.network("market").chaincode_events("energy", options).await?;
//! while let Some(event) = events.next().await? {
//!     if event.event_name == "Trade" {
//!         println!("trade in block {}: {}", event.block_number, String::from_utf8_lossy(&event.payload));
//!     }
//!     checkpointer.checkpoint_chaincode_event(&event)?;
//! }
//! # Ok(()) }
//! ```
//!
//! `sdk/examples/retailer.rs` is a whole application: it trades on the `energy` market of a
//! network started with `gridledger up` and watches its trade events with a checkpoint.
//!
//! Only `proto` and `identity` are dependencies: an application never links the peer.

mod checkpoint;
mod error;
mod events;
mod signer;

pub use checkpoint::{Checkpoint, FileCheckpointer};
pub use error::SdkError;
pub use events::{
    BlockEvents, ChaincodeEvent, ChaincodeEvents, EventsOptions, FilteredBlockEvents,
};
pub use signer::{SignError, Signer, sign_with};

use gridledger_proto::gateway::gateway_client::GatewayClient;
use gridledger_proto::prost::Message;
use gridledger_proto::{common, gateway, protos};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Largest message the SDK accepts from a peer (a block can be large).
const MAX_MESSAGE_BYTES: usize = 100 * 1024 * 1024;

/// Default deadline of each call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How [`Contract::submit`] retries a transaction the application marked idempotent (safe to
/// execute again: the chaincode re-reads the state each time, as Fabric's retries assume).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Submissions in all, the first included (1 = no retry).
    pub attempts: u32,
    /// The wait before the n-th retry is n times this.
    pub backoff: Duration,
}

impl RetryPolicy {
    /// `attempts` submissions in all, 100 ms more wait before each retry.
    pub fn idempotent(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts: attempts.max(1),
            backoff: Duration::from_millis(100),
        }
    }
}

/// A connection to one gateway peer with one signing identity.
#[derive(Clone)]
pub struct Gateway {
    client: GatewayClient<Channel>,
    /// The connection itself, shared with the peer's Deliver service (block events).
    channel: Channel,
    signer: Arc<dyn Signer>,
    /// The signer's serialized identity, computed once: the creator of every request.
    identity: Arc<[u8]>,
    timeout: Duration,
}

impl Gateway {
    /// Connects over TLS to `endpoint` (`host:port`), trusting `tls_ca_pem` and checking the
    /// server certificate for `server_name`; requests are signed by `signer` (a
    /// [`gridledger_identity::SigningIdentity`], any other [`Signer`], or an `Arc` of one).
    pub async fn connect(
        endpoint: &str,
        tls_ca_pem: &[u8],
        server_name: &str,
        signer: impl Signer + 'static,
    ) -> Result<Gateway, SdkError> {
        let err = |reason: String| SdkError::Connect {
            endpoint: endpoint.into(),
            reason,
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(tls_ca_pem))
            .domain_name(server_name);
        let channel = Endpoint::from_shared(format!("https://{endpoint}"))
            .map_err(|e| err(e.to_string()))?
            .tls_config(tls)
            .map_err(|e| err(e.to_string()))?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| {
                err(format!(
                    "{e}: {}",
                    std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                ))
            })?;
        Ok(Gateway::from_channel(channel, signer))
    }

    /// A gateway over an existing gRPC channel.
    pub fn from_channel(channel: Channel, signer: impl Signer + 'static) -> Gateway {
        let client =
            GatewayClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES);
        let identity = signer.serialized_identity().into();
        Gateway {
            client,
            channel,
            signer: Arc::new(signer),
            identity,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the deadline of each call.
    pub fn with_timeout(mut self, timeout: Duration) -> Gateway {
        self.timeout = timeout;
        self
    }

    /// The identity requests are signed with.
    pub fn signer(&self) -> &dyn Signer {
        self.signer.as_ref()
    }

    /// The signer's `msp.SerializedIdentity`: the creator of every request.
    pub fn serialized_identity(&self) -> &[u8] {
        &self.identity
    }

    /// Signs `message` with the gateway's signer, in Fabric's form (DER, low-S).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SdkError> {
        sign_with(self.signer.as_ref(), message)
    }

    /// A channel.
    pub fn network(&self, channel: &str) -> Network {
        Network {
            gateway: self.clone(),
            channel: channel.into(),
        }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        request
    }
}

/// A channel seen through a gateway.
#[derive(Clone)]
pub struct Network {
    gateway: Gateway,
    channel: String,
}

impl Network {
    /// A chaincode on this channel.
    pub fn contract(&self, chaincode: &str) -> Contract {
        Contract {
            network: self.clone(),
            chaincode: chaincode.into(),
            timestamp: None,
            retry: None,
        }
    }

    /// The channel name.
    pub fn name(&self) -> &str {
        &self.channel
    }
}

/// A chaincode on a channel.
#[derive(Clone)]
pub struct Contract {
    network: Network,
    chaincode: String,
    /// The time proposals carry instead of the clock's, if set.
    timestamp: Option<std::time::SystemTime>,
    /// Retries of [`Contract::submit`], for idempotent transactions.
    retry: Option<RetryPolicy>,
}

impl Contract {
    /// This contract with every proposal timestamped `time` instead of the current time.
    ///
    /// A transaction's time is its proposal's channel-header timestamp, chosen by the client
    /// as in Fabric; chaincodes with time rules read it (the `energy` market's gate closure and
    /// after-the-period attestations). Simulations and replays of a past or future day use this;
    /// everyday clients leave it unset.
    pub fn at(mut self, time: std::time::SystemTime) -> Contract {
        self.timestamp = Some(time);
        self
    }

    /// Builds and signs a proposal to call `function` with string arguments.
    pub fn proposal(&self, function: &str, args: &[&str]) -> Result<Proposal, SdkError> {
        let mut all = vec![function.as_bytes().to_vec()];
        all.extend(args.iter().map(|a| a.as_bytes().to_vec()));
        self.proposal_with(all, BTreeMap::new(), Vec::new())
    }

    /// Builds and signs the proposal that initializes a chaincode whose definition requires
    /// initialization (`ChaincodeInput.is_init`, the peer CLI's `--isInit`): the first
    /// invocation of each definition version must be this one, and only the first.
    pub fn init_proposal(&self, function: &str, args: &[&str]) -> Result<Proposal, SdkError> {
        let mut all = vec![function.as_bytes().to_vec()];
        all.extend(args.iter().map(|a| a.as_bytes().to_vec()));
        self.build_proposal(all, BTreeMap::new(), Vec::new(), true)
    }

    /// Builds and signs a proposal with raw arguments (the first is the function name),
    /// transient data, and optionally the organizations that must endorse.
    pub fn proposal_with(
        &self,
        args: Vec<Vec<u8>>,
        transient: BTreeMap<String, Vec<u8>>,
        endorsing_orgs: Vec<String>,
    ) -> Result<Proposal, SdkError> {
        self.build_proposal(args, transient, endorsing_orgs, false)
    }

    fn build_proposal(
        &self,
        args: Vec<Vec<u8>>,
        transient: BTreeMap<String, Vec<u8>>,
        endorsing_orgs: Vec<String>,
        is_init: bool,
    ) -> Result<Proposal, SdkError> {
        let gateway = &self.network.gateway;
        let (signed, tx_id) = sign_proposal(
            gateway.signer.as_ref(),
            &gateway.identity,
            &ProposalSpec {
                channel: &self.network.channel,
                chaincode: &self.chaincode,
                args,
                transient,
                is_init,
                timestamp: self.timestamp.unwrap_or_else(std::time::SystemTime::now),
            },
        )?;
        Ok(Proposal {
            contract: self.clone(),
            signed,
            tx_id,
            endorsing_orgs,
        })
    }

    /// Evaluates a query: the chaincode's result, nothing written.
    pub async fn evaluate(&self, function: &str, args: &[&str]) -> Result<Vec<u8>, SdkError> {
        self.proposal(function, args)?.evaluate().await
    }

    /// This contract with [`Contract::submit`] retrying, within `policy`, a transaction that
    /// lost an MVCC read conflict or met endorsing peers at different heights: each retry is a
    /// new proposal (new transaction id) endorsed on the current state. Only for transactions
    /// that are safe to execute again.
    ///
    /// ```no_run
    /// # async fn run(gateway: gridledger_sdk::Gateway) -> Result<(), gridledger_sdk::SdkError> {
    /// use gridledger_sdk::RetryPolicy;
    /// let contract = gateway
    ///     .network("market")
    ///     .contract("basic")
    ///     .with_retry(RetryPolicy::idempotent(5));
    /// contract.submit("UpdateAsset", &["asset1", "red", "5", "Alice", "300"]).await?;
    /// # Ok(()) }
    /// ```
    pub fn with_retry(mut self, policy: RetryPolicy) -> Contract {
        self.retry = Some(policy);
        self
    }

    /// Endorses, submits and waits for the commit; fails with [`SdkError::Invalid`] when the
    /// transaction was committed invalid (after the retries of [`Contract::with_retry`], if
    /// set). Returns the chaincode's result and the block number.
    pub async fn submit(&self, function: &str, args: &[&str]) -> Result<(Vec<u8>, u64), SdkError> {
        let policy = self.retry.unwrap_or(RetryPolicy {
            attempts: 1,
            backoff: Duration::ZERO,
        });
        let mut attempt = 1;
        loop {
            match self.submit_once(function, args).await {
                Err(e)
                    if attempt < policy.attempts
                        && (e.is_mvcc_conflict() || e.is_endorsement_mismatch()) =>
                {
                    tokio::time::sleep(policy.backoff * attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn submit_once(&self, function: &str, args: &[&str]) -> Result<(Vec<u8>, u64), SdkError> {
        let tx = self.proposal(function, args)?.endorse().await?;
        let result = tx.result().to_vec();
        let commit = tx.submit().await?;
        let status = commit.status().await?;
        if status.code != protos::TxValidationCode::Valid as i32 {
            return Err(SdkError::Invalid {
                tx_id: commit.tx_id().to_owned(),
                code: status.code,
                code_name: protos::TxValidationCode::try_from(status.code)
                    .map(|c| c.as_str_name().to_owned())
                    .unwrap_or_else(|_| format!("CODE_{}", status.code)),
            });
        }
        Ok((result, status.block_number))
    }
}

/// A signed proposal, ready to evaluate or endorse.
#[derive(Clone)]
pub struct Proposal {
    contract: Contract,
    signed: protos::SignedProposal,
    tx_id: String,
    endorsing_orgs: Vec<String>,
}

impl Proposal {
    /// The transaction id.
    pub fn tx_id(&self) -> &str {
        &self.tx_id
    }

    /// The signed proposal as sent.
    pub fn signed_proposal(&self) -> &protos::SignedProposal {
        &self.signed
    }

    /// Runs the proposal without ordering it; returns the chaincode's result.
    pub async fn evaluate(&self) -> Result<Vec<u8>, SdkError> {
        let gw = &self.contract.network.gateway;
        let request = gateway::EvaluateRequest {
            transaction_id: self.tx_id.clone(),
            channel_id: self.contract.network.channel.clone(),
            proposed_transaction: Some(self.signed.clone()),
            target_organizations: self.endorsing_orgs.clone(),
        };
        let response = gw
            .client
            .clone()
            .evaluate(gw.request(request))
            .await?
            .into_inner();
        Ok(response.result.map(|r| r.payload).unwrap_or_default())
    }

    /// Gets the proposal endorsed; returns the prepared transaction.
    pub async fn endorse(&self) -> Result<Transaction, SdkError> {
        let gw = &self.contract.network.gateway;
        let request = gateway::EndorseRequest {
            transaction_id: self.tx_id.clone(),
            channel_id: self.contract.network.channel.clone(),
            proposed_transaction: Some(self.signed.clone()),
            endorsing_organizations: self.endorsing_orgs.clone(),
        };
        let response = gw
            .client
            .clone()
            .endorse(gw.request(request))
            .await?
            .into_inner();
        let mut envelope = response
            .prepared_transaction
            .ok_or_else(|| SdkError::Response("no prepared transaction".into()))?;
        let result = transaction_result(&envelope)?;
        envelope.signature = gw.sign(&envelope.payload)?;
        Ok(Transaction {
            gateway: gw.clone(),
            channel: self.contract.network.channel.clone(),
            tx_id: self.tx_id.clone(),
            envelope,
            result,
        })
    }
}

/// The chaincode's result inside a prepared transaction (the signed `ChaincodeAction.response`).
fn transaction_result(envelope: &common::Envelope) -> Result<Vec<u8>, SdkError> {
    let bad = |what: &str| SdkError::Response(format!("prepared transaction: {what}"));
    let payload =
        common::Payload::decode(envelope.payload.as_slice()).map_err(|_| bad("payload"))?;
    let tx =
        protos::Transaction::decode(payload.data.as_slice()).map_err(|_| bad("transaction"))?;
    let action = tx.actions.first().ok_or_else(|| bad("no action"))?;
    let cap = protos::ChaincodeActionPayload::decode(action.payload.as_slice())
        .map_err(|_| bad("action payload"))?;
    let prp = cap
        .action
        .ok_or_else(|| bad("no endorsed action"))?
        .proposal_response_payload;
    let prp = protos::ProposalResponsePayload::decode(prp.as_slice())
        .map_err(|_| bad("response payload"))?;
    let cc = protos::ChaincodeAction::decode(prp.extension.as_slice())
        .map_err(|_| bad("chaincode action"))?;
    Ok(cc.response.map(|r| r.payload).unwrap_or_default())
}

/// An endorsed, signed transaction ready to submit.
pub struct Transaction {
    gateway: Gateway,
    channel: String,
    tx_id: String,
    envelope: common::Envelope,
    result: Vec<u8>,
}

impl Transaction {
    /// The chaincode's result.
    pub fn result(&self) -> &[u8] {
        &self.result
    }
    /// The transaction id.
    pub fn tx_id(&self) -> &str {
        &self.tx_id
    }
    /// The signed envelope that will be submitted.
    pub fn envelope(&self) -> &common::Envelope {
        &self.envelope
    }
    /// Replaces the envelope (tests of hostile clients use this to tamper with it).
    pub fn set_envelope(&mut self, envelope: common::Envelope) {
        self.envelope = envelope;
    }

    /// Sends the transaction to ordering; it is accepted, not yet committed.
    pub async fn submit(self) -> Result<Commit, SdkError> {
        let request = gateway::SubmitRequest {
            transaction_id: self.tx_id.clone(),
            channel_id: self.channel.clone(),
            prepared_transaction: Some(self.envelope),
        };
        self.gateway
            .client
            .clone()
            .submit(self.gateway.request(request))
            .await?;
        Ok(Commit {
            gateway: self.gateway,
            channel: self.channel,
            tx_id: self.tx_id,
        })
    }
}

/// A submitted transaction whose commit status can be awaited.
pub struct Commit {
    gateway: Gateway,
    channel: String,
    tx_id: String,
}

/// A transaction's validation code and block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitStatus {
    pub code: i32,
    pub block_number: u64,
}

impl CommitStatus {
    /// True when the transaction is VALID.
    pub fn is_valid(&self) -> bool {
        self.code == protos::TxValidationCode::Valid as i32
    }
}

impl Commit {
    /// The transaction id.
    pub fn tx_id(&self) -> &str {
        &self.tx_id
    }

    /// Waits until the transaction is committed and returns its status.
    pub async fn status(&self) -> Result<CommitStatus, SdkError> {
        commit_status(&self.gateway, &self.channel, &self.tx_id).await
    }
}

/// The commit status of any transaction id on a channel (waits for it to commit).
pub async fn commit_status(
    gateway: &Gateway,
    channel: &str,
    tx_id: &str,
) -> Result<CommitStatus, SdkError> {
    let request = gateway::CommitStatusRequest {
        transaction_id: tx_id.into(),
        channel_id: channel.into(),
        identity: gateway.identity.to_vec(),
    }
    .encode_to_vec();
    let signed = gateway::SignedCommitStatusRequest {
        signature: gateway.sign(&request)?,
        request,
    };
    let response = gateway
        .client
        .clone()
        .commit_status(gateway.request(signed))
        .await?
        .into_inner();
    Ok(CommitStatus {
        code: response.result,
        block_number: response.block_number,
    })
}

/// What a chaincode proposal asks ([`sign_proposal`]).
#[derive(Debug, Clone)]
pub struct ProposalSpec<'a> {
    /// The channel.
    pub channel: &'a str,
    /// The chaincode's name.
    pub chaincode: &'a str,
    /// The arguments, the function name first.
    pub args: Vec<Vec<u8>>,
    /// Transient data: reaches the chaincode, never the transaction.
    pub transient: BTreeMap<String, Vec<u8>>,
    /// Whether this is the chaincode's `Init` call.
    pub is_init: bool,
    /// The proposal's timestamp.
    pub timestamp: std::time::SystemTime,
}

/// Builds Fabric's `SignedProposal` for `spec`, signed by `signer` with a fresh nonce, and its
/// transaction id — what [`Contract::proposal`] sends, for tools that build transactions
/// without a gateway connection. `creator` is the signer's
/// [`Signer::serialized_identity`] (passed in so that callers compute it once).
pub fn sign_proposal(
    signer: &dyn Signer,
    creator: &[u8],
    spec: &ProposalSpec<'_>,
) -> Result<(protos::SignedProposal, String), SdkError> {
    let mut nonce = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| SdkError::Random)?;
    let creator = creator.to_vec();
    let tx_id = gridledger_proto::compute_tx_id(&nonce, &creator);
    let now = spec
        .timestamp
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let chaincode_id = protos::ChaincodeId {
        name: spec.chaincode.to_owned(),
        ..Default::default()
    };
    let channel_header = common::ChannelHeader {
        r#type: common::HeaderType::EndorserTransaction as i32,
        version: 0,
        timestamp: Some(prost_types::Timestamp {
            seconds: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(now.subsec_millis() * 1_000_000).unwrap_or(0),
        }),
        channel_id: spec.channel.to_owned(),
        tx_id: tx_id.clone(),
        epoch: 0,
        extension: protos::ChaincodeHeaderExtension {
            chaincode_id: Some(chaincode_id.clone()),
        }
        .encode_to_vec(),
        tls_cert_hash: Vec::new(),
    };
    let signature_header = common::SignatureHeader {
        creator,
        nonce: nonce.to_vec(),
    };
    let invocation = protos::ChaincodeInvocationSpec {
        chaincode_spec: Some(protos::ChaincodeSpec {
            r#type: protos::chaincode_spec::Type::Node as i32,
            chaincode_id: Some(chaincode_id),
            input: Some(protos::ChaincodeInput {
                args: spec.args.clone(),
                is_init: spec.is_init,
                ..Default::default()
            }),
            timeout: 0,
        }),
    };
    let proposal = protos::Proposal {
        header: common::Header {
            channel_header: channel_header.encode_to_vec(),
            signature_header: signature_header.encode_to_vec(),
        }
        .encode_to_vec(),
        payload: protos::ChaincodeProposalPayload {
            input: invocation.encode_to_vec(),
            transient_map: spec.transient.clone().into_iter().collect(),
        }
        .encode_to_vec(),
        extension: Vec::new(),
    };
    let proposal_bytes = proposal.encode_to_vec();
    let signed = protos::SignedProposal {
        signature: sign_with(signer, &proposal_bytes)?,
        proposal_bytes,
    };
    Ok((signed, tx_id))
}
