//! The Rust client SDK for retailers' and communities' applications: Fabric's Gateway client
//! model (connect to one gateway peer, then evaluate or endorse → submit → commit status) over
//! gRPC/TLS, speaking the same Gateway protocol as Fabric's official SDKs.
//!
//! ```no_run
//! # async fn run() -> Result<(), gridledger_sdk::SdkError> {
//! use gridledger_identity::SigningIdentity;
//! use gridledger_sdk::Gateway;
//! let signer = SigningIdentity::load("RetailerMSP", "cert.pem".as_ref(), "key.pem".as_ref())?;
//! let gateway = Gateway::connect("127.0.0.1:7052", &std::fs::read("tlsca.pem").unwrap(), "peer0.retailer", signer).await?;
//! let contract = gateway.network("market").contract("basic");
//! contract.submit("CreateAsset", &["asset1", "blue", "5", "Alice", "300"]).await?;
//! let asset = contract.evaluate("ReadAsset", &["asset1"]).await?;
//! # Ok(()) }
//! ```
//!
//! Only `proto` and `identity` are dependencies: an application never links the peer.

use gridledger_identity::SigningIdentity;
use gridledger_proto::gateway::gateway_client::GatewayClient;
use gridledger_proto::prost::Message;
use gridledger_proto::{common, gateway, google, protos};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Default deadline of each call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong, with the gateway's details when it sent any.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("gateway returned {code:?}: {message}{}", details_text(.details))]
    Gateway {
        code: tonic::Code,
        message: String,
        details: Vec<gateway::ErrorDetail>,
    },
    #[error("unexpected response from the gateway: {0}")]
    Response(String),
    /// The transaction was ordered and committed, but with a validation code other than VALID
    /// (`MVCC_READ_CONFLICT`, `ENDORSEMENT_POLICY_FAILURE`, …): it changed nothing.
    #[error("transaction {tx_id} was committed as {code_name} ({code}): it changed nothing")]
    Invalid {
        /// The transaction id.
        tx_id: String,
        /// The validation code.
        code: i32,
        /// Its Fabric name.
        code_name: String,
    },
    #[error(transparent)]
    Identity(#[from] gridledger_identity::IdentityError),
    #[error("random number generator failed")]
    Random,
}

fn details_text(details: &[gateway::ErrorDetail]) -> String {
    details
        .iter()
        .map(|d| format!("; {} ({}): {}", d.msp_id, d.address, d.message))
        .collect()
}

impl SdkError {
    /// Whether the transaction lost a read-write conflict with another one committed first
    /// (`MVCC_READ_CONFLICT`): endorsing it again, on the newer state, may well succeed.
    pub fn is_mvcc_conflict(&self) -> bool {
        matches!(self, SdkError::Invalid { code, .. }
            if *code == protos::TxValidationCode::MvccReadConflict as i32)
    }

    /// Whether the endorsing peers answered differently, as when one has not committed the
    /// latest block yet (the Gateway's "ProposalResponsePayloads do not match"): endorsing
    /// again a moment later usually succeeds.
    pub fn is_endorsement_mismatch(&self) -> bool {
        matches!(self, SdkError::Gateway { message, details, .. }
            if message.contains("do not match")
                || details.iter().any(|d| d.message.contains("do not match")))
    }
}

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

impl From<tonic::Status> for SdkError {
    fn from(status: tonic::Status) -> SdkError {
        let details = google::rpc::Status::decode(status.details())
            .map(|s| {
                s.details
                    .iter()
                    .filter_map(|any| gateway::ErrorDetail::decode(any.value.as_slice()).ok())
                    .collect()
            })
            .unwrap_or_default();
        SdkError::Gateway {
            code: status.code(),
            message: status.message().to_owned(),
            details,
        }
    }
}

/// A connection to one gateway peer with one signing identity.
#[derive(Clone)]
pub struct Gateway {
    client: GatewayClient<Channel>,
    signer: Arc<SigningIdentity>,
    timeout: Duration,
}

impl Gateway {
    /// Connects over TLS to `endpoint` (`host:port`), trusting `tls_ca_pem` and checking the
    /// server certificate for `server_name`.
    pub async fn connect(
        endpoint: &str,
        tls_ca_pem: &[u8],
        server_name: &str,
        signer: SigningIdentity,
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
    pub fn from_channel(channel: Channel, signer: SigningIdentity) -> Gateway {
        let client = GatewayClient::new(channel).max_decoding_message_size(100 * 1024 * 1024);
        Gateway {
            client,
            signer: Arc::new(signer),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the deadline of each call.
    pub fn with_timeout(mut self, timeout: Duration) -> Gateway {
        self.timeout = timeout;
        self
    }

    /// The identity requests are signed with.
    pub fn signer(&self) -> &SigningIdentity {
        &self.signer
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
        let gw = &self.network.gateway;
        let mut nonce = [0u8; 24];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| SdkError::Random)?;
        let creator = gw.signer.serialized().to_vec();
        let tx_id = gridledger_proto::compute_tx_id(&nonce, &creator);
        let now = self
            .timestamp
            .unwrap_or_else(std::time::SystemTime::now)
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let chaincode_id = protos::ChaincodeId {
            name: self.chaincode.clone(),
            ..Default::default()
        };
        let channel_header = common::ChannelHeader {
            r#type: common::HeaderType::EndorserTransaction as i32,
            version: 0,
            timestamp: Some(prost_types::Timestamp {
                seconds: now.as_secs() as i64,
                nanos: (now.subsec_millis() * 1_000_000) as i32,
            }),
            channel_id: self.network.channel.clone(),
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
        let spec = protos::ChaincodeInvocationSpec {
            chaincode_spec: Some(protos::ChaincodeSpec {
                r#type: protos::chaincode_spec::Type::Node as i32,
                chaincode_id: Some(chaincode_id),
                input: Some(protos::ChaincodeInput {
                    args,
                    is_init,
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
                input: spec.encode_to_vec(),
                transient_map: transient.into_iter().collect(),
            }
            .encode_to_vec(),
            extension: Vec::new(),
        };
        let proposal_bytes = proposal.encode_to_vec();
        let signed = protos::SignedProposal {
            signature: gw.signer.sign(&proposal_bytes),
            proposal_bytes,
        };
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
        envelope.signature = gw.signer.sign(&envelope.payload);
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
        identity: gateway.signer.serialized().to_vec(),
    }
    .encode_to_vec();
    let signed = gateway::SignedCommitStatusRequest {
        signature: gateway.signer.sign(&request),
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
