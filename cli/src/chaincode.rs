//! `gridledger chaincode …`: the chaincode lifecycle from the command line, as Fabric's
//! `peer lifecycle chaincode` does it — package, install, approve, check commit readiness,
//! commit, query — plus `deploy`, which runs every step with a local network's admins, and
//! `invoke` / `query` (Fabric's `peer chaincode invoke|query`): one transaction submitted and
//! awaited, or one function evaluated, through an organization's peer.
//!
//! Every command but `package` acts as an organization's admin on that organization's peers,
//! both taken from a `network.json` (`gridledger up` writes one; its relative paths are
//! relative to its folder). Peer-local functions (install, queryinstalled) go to the peer's
//! Endorser service with an empty channel id; channel functions go through the peer's
//! Gateway, and approvals and commits are ordered and awaited.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use gridledger_identity::SigningIdentity;
use gridledger_peer::lifecycle::{self, package};
use gridledger_proto::lifecycle as lc;
use gridledger_proto::prost::Message;
use gridledger_proto::protos;
use gridledger_sdk::Gateway;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Fabric's default endorsement and validation plugin names, recorded in definitions.
const ENDORSEMENT_PLUGIN: &str = "escc";
const VALIDATION_PLUGIN: &str = "vscc";
/// How long `deploy` waits for every peer to report the committed definition.
const AGREE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Subcommand)]
pub enum ChaincodeCommand {
    /// Write a chaincode package (tar.gz) and print its package id.
    Package(PackageArgs),
    /// Install a package on every peer of an organization; prints the package id.
    Install(InstallArgs),
    /// List the packages installed on an organization's peers.
    #[command(name = "queryinstalled")]
    QueryInstalled(OrgArgs),
    /// Approve a chaincode definition for an organization (ordered and awaited).
    #[command(alias = "approveformyorg", disable_version_flag = true)]
    Approve(ApproveArgs),
    /// Which organizations approved a definition.
    #[command(name = "checkcommitreadiness", disable_version_flag = true)]
    CheckCommitReadiness(DefinitionArgs),
    /// Commit a definition, endorsed by the organizations that approved it.
    #[command(disable_version_flag = true)]
    Commit(DefinitionArgs),
    /// The committed definition of a chaincode, or all of them.
    #[command(name = "querycommitted")]
    QueryCommitted(QueryCommittedArgs),
    /// An organization's approved definition.
    #[command(name = "queryapproved")]
    QueryApproved(QueryApprovedArgs),
    /// Package, install on every peer, approve for every organization and commit, with the
    /// network's admins; upgrades (sequence + 1) when the chaincode is already defined.
    #[command(disable_version_flag = true)]
    Deploy(DeployArgs),
    /// Submit a transaction through the organization's peer (its Gateway gathers the
    /// endorsements the chaincode's policy needs), signed by the organization's admin; waits
    /// for the commit and prints the transaction id, the block and the function's result.
    Invoke(InvokeArgs),
    /// Evaluate a function on the organization's peer, as the organization's admin, without
    /// ordering anything; prints the result.
    Query(CallArgs),
}

/// What the package runs.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct CodeArgs {
    /// A chaincode compiled into the peer (e.g. `basic`).
    #[arg(long, value_name = "NAME")]
    pub builtin: Option<String>,
    /// A chaincode server (chaincode-as-a-service) the peers dial, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub ccaas: Option<String>,
}

#[derive(Debug, Args)]
pub struct PackageArgs {
    #[command(flatten)]
    pub code: CodeArgs,
    /// The package label (letters, digits, `_ . + -`).
    #[arg(long)]
    pub label: String,
    /// For --ccaas: the CA certificate (PEM) of a chaincode server that speaks TLS.
    #[arg(long)]
    pub tls_root_cert: Option<PathBuf>,
    /// Where to write the package.
    #[arg(long, short)]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct OrgArgs {
    /// The network description (`gridledger up` writes DIR/network.json).
    #[arg(long)]
    pub network: PathBuf,
    /// The organization (MSP id) whose admin and peers act.
    #[arg(long)]
    pub org: String,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub org: OrgArgs,
    /// The package file.
    pub package: PathBuf,
}

/// A chaincode definition on a channel.
#[derive(Debug, Args)]
pub struct DefinitionArgs {
    #[command(flatten)]
    pub org: OrgArgs,
    #[arg(long)]
    pub channel: String,
    #[arg(long)]
    pub name: String,
    #[arg(long, default_value = "1.0")]
    pub version: String,
    #[arg(long)]
    pub sequence: i64,
    /// Endorsement policy: Fabric signature-policy syntax, or a channel policy path
    /// (default `/Channel/Application/Endorsement`).
    #[arg(long)]
    pub policy: Option<String>,
    /// Private data collections, Fabric's collections-config JSON.
    #[arg(long)]
    pub collections: Option<PathBuf>,
    /// Whether `Init` must be invoked before any other function.
    #[arg(long)]
    pub init_required: bool,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    pub definition: DefinitionArgs,
    /// The installed package the organization's peers run for this definition.
    #[arg(long)]
    pub package_id: String,
}

#[derive(Debug, Args)]
pub struct QueryCommittedArgs {
    #[command(flatten)]
    pub org: OrgArgs,
    #[arg(long)]
    pub channel: String,
    /// One chaincode; all when omitted.
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct QueryApprovedArgs {
    #[command(flatten)]
    pub org: OrgArgs,
    #[arg(long)]
    pub channel: String,
    #[arg(long)]
    pub name: String,
    /// The sequence; by default the next one if approved, else the committed one.
    #[arg(long, default_value_t = 0)]
    pub sequence: i64,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The network description (`gridledger up` writes DIR/network.json).
    #[arg(long)]
    pub network: PathBuf,
    #[arg(long)]
    pub channel: String,
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    pub code: CodeArgs,
    #[arg(long, default_value = "1.0")]
    pub version: String,
    /// Endorsement policy: Fabric signature-policy syntax, or a channel policy path
    /// (default `/Channel/Application/Endorsement`).
    #[arg(long)]
    pub policy: Option<String>,
    /// Private data collections, Fabric's collections-config JSON.
    #[arg(long)]
    pub collections: Option<PathBuf>,
    /// The package label (default NAME_VERSION).
    #[arg(long)]
    pub label: Option<String>,
    /// Whether `Init` must be invoked (once per definition version) before any other function.
    #[arg(long)]
    pub init_required: bool,
}

/// One chaincode function through an organization's peer.
#[derive(Debug, Args)]
pub struct CallArgs {
    #[command(flatten)]
    pub org: OrgArgs,
    #[arg(long)]
    pub channel: String,
    /// The chaincode.
    #[arg(long)]
    pub name: String,
    /// The function, then its arguments (text), e.g. `CreateAsset asset1 blue 5 Tom 100`.
    #[arg(required = true, num_args = 1.., allow_hyphen_values = true, value_name = "FUNCTION [ARGS]")]
    pub call: Vec<String>,
}

impl CallArgs {
    /// `NAME FUNCTION on CHANNEL`, for messages.
    fn describe(&self) -> String {
        let function = self.call.first().map_or("", String::as_str);
        format!("{} {function} on {}", self.name, self.channel)
    }
}

#[derive(Debug, Args)]
pub struct InvokeArgs {
    #[command(flatten)]
    pub call: CallArgs,
    /// An organization whose peers must endorse (repeatable); default: those the chaincode's
    /// endorsement policy needs, as the Gateway chooses them.
    #[arg(long = "endorsing-org", value_name = "MSP_ID")]
    pub endorsing_orgs: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// network.json

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetworkFile {
    #[serde(default)]
    orderers: Vec<PeerEntry>,
    organizations: Vec<OrgEntry>,
    #[serde(default)]
    channels: Vec<ChannelEntry>,
}

/// A channel network.json lists, with its member organizations.
#[derive(Debug, Deserialize)]
struct ChannelEntry {
    name: String,
    #[serde(default)]
    organizations: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrgEntry {
    msp_id: String,
    peers: Vec<PeerEntry>,
    admins: Vec<UserEntry>,
}

/// A peer or orderer endpoint network.json lists.
#[derive(Debug, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PeerEntry {
    pub(crate) name: String,
    pub(crate) endpoint: String,
    tls_ca_cert: PathBuf,
    server_name: String,
}

#[derive(Debug, Deserialize)]
struct UserEntry {
    cert: PathBuf,
    key: PathBuf,
}

/// A network description with its paths resolved.
pub(crate) struct Network {
    orderers: Vec<PeerEntry>,
    organizations: Vec<OrgEntry>,
    channels: Vec<ChannelEntry>,
    base: PathBuf,
}

impl Network {
    /// Reads a network.json; its relative paths are relative to its folder.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Network> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: NetworkFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a network description", path.display()))?;
        Ok(Network {
            orderers: file.orderers,
            organizations: file.organizations,
            channels: file.channels,
            base: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        })
    }

    /// A network description given as JSON, its relative paths relative to `base`.
    fn from_json(value: &serde_json::Value, base: &Path) -> anyhow::Result<Network> {
        let file = NetworkFile::deserialize(value).context("not a network description")?;
        Ok(Network {
            orderers: file.orderers,
            organizations: file.organizations,
            channels: file.channels,
            base: base.to_path_buf(),
        })
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_relative() {
            self.base.join(p)
        } else {
            p.to_path_buf()
        }
    }

    fn org(&self, msp_id: &str) -> anyhow::Result<&OrgEntry> {
        self.organizations
            .iter()
            .find(|o| o.msp_id == msp_id)
            .with_context(|| {
                format!(
                    "the network has no organization {msp_id:?} (it has {})",
                    self.msp_ids().join(", ")
                )
            })
    }

    fn msp_ids(&self) -> Vec<String> {
        self.organizations
            .iter()
            .map(|o| o.msp_id.clone())
            .collect()
    }

    /// The organizations of `channel`: those network.json lists for it, or every organization
    /// when it does not list the channel's members.
    pub(crate) fn channel_msp_ids(&self, channel: &str) -> Vec<String> {
        match self.channels.iter().find(|c| c.name == channel) {
            Some(c) if !c.organizations.is_empty() => c.organizations.clone(),
            _ => self.msp_ids(),
        }
    }

    /// The first admin network.json lists for `msp_id`.
    pub(crate) fn org_admin(&self, msp_id: &str) -> anyhow::Result<SigningIdentity> {
        self.admin(self.org(msp_id)?)
    }

    /// The orderers network.json lists.
    pub(crate) fn orderers(&self) -> &[PeerEntry] {
        &self.orderers
    }

    fn admin(&self, org: &OrgEntry) -> anyhow::Result<SigningIdentity> {
        let admin = org
            .admins
            .first()
            .with_context(|| format!("the network lists no admin of {}", org.msp_id))?;
        SigningIdentity::load(
            &org.msp_id,
            &self.resolve(&admin.cert),
            &self.resolve(&admin.key),
        )
        .with_context(|| format!("loading the admin identity of {}", org.msp_id))
    }

    /// A TLS connection to `peer`.
    pub(crate) async fn connect(&self, peer: &PeerEntry) -> anyhow::Result<Channel> {
        let ca_path = self.resolve(&peer.tls_ca_cert);
        let ca =
            std::fs::read(&ca_path).with_context(|| format!("reading {}", ca_path.display()))?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name(peer.server_name.clone());
        Endpoint::from_shared(format!("https://{}", peer.endpoint))
            .with_context(|| format!("peer endpoint {}", peer.endpoint))?
            .tls_config(tls)
            .context("TLS configuration")?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .with_context(|| format!("connecting to {} at {}", peer.name, peer.endpoint))
    }

    /// A connection to the organization's first peer, its admin and the peer's name.
    pub(crate) async fn admin_on_peer(
        &self,
        msp_id: &str,
    ) -> anyhow::Result<(Channel, SigningIdentity, String)> {
        let org = self.org(msp_id)?;
        let peer = org
            .peers
            .first()
            .with_context(|| format!("the network lists no peer of {msp_id}"))?;
        Ok((
            self.connect(peer).await?,
            self.admin(org)?,
            peer.name.clone(),
        ))
    }

    /// A Gateway on the organization's first peer, signing as its admin.
    pub(crate) async fn gateway(&self, msp_id: &str) -> anyhow::Result<Gateway> {
        let org = self.org(msp_id)?;
        let peer = org
            .peers
            .first()
            .with_context(|| format!("the network lists no peer of {msp_id}"))?;
        let channel = self.connect(peer).await?;
        Ok(Gateway::from_channel(channel, self.admin(org)?).with_timeout(Duration::from_secs(60)))
    }
}

// ---------------------------------------------------------------------------------------------
// Calls

/// Runs a peer-local `_lifecycle` function on `peer` as `admin`.
async fn local_call(
    network: &Network,
    peer: &PeerEntry,
    admin: SigningIdentity,
    function: &str,
    arg: Vec<u8>,
) -> anyhow::Result<Vec<u8>> {
    let channel = network.connect(peer).await?;
    let proposal = Gateway::from_channel(channel.clone(), admin)
        .network("")
        .contract(lifecycle_name())
        .proposal_with(
            vec![function.as_bytes().to_vec(), arg],
            BTreeMap::new(),
            Vec::new(),
        )?;
    let mut client = protos::endorser_client::EndorserClient::new(channel);
    let response = client
        .process_proposal(proposal.signed_proposal().clone())
        .await
        .with_context(|| format!("{function} on {}", peer.name))?
        .into_inner()
        .response
        .unwrap_or_default();
    if response.status >= 400 {
        bail!("{function} on {}: {}", peer.name, response.message);
    }
    Ok(response.payload)
}

fn lifecycle_name() -> &'static str {
    gridledger_peer::validation::LIFECYCLE_NAMESPACE
}

/// Evaluates a channel `_lifecycle` function on the gateway's own peer.
async fn evaluate(
    gateway: &Gateway,
    channel: &str,
    function: &str,
    arg: Vec<u8>,
) -> anyhow::Result<Vec<u8>> {
    let proposal = gateway
        .network(channel)
        .contract(lifecycle_name())
        .proposal_with(
            vec![function.as_bytes().to_vec(), arg],
            BTreeMap::new(),
            Vec::new(),
        )?;
    proposal
        .evaluate()
        .await
        .with_context(|| format!("{function} on channel {channel}"))
}

/// Endorses (by `orgs`), submits and awaits a channel `_lifecycle` transaction.
async fn submit(
    gateway: &Gateway,
    channel: &str,
    function: &str,
    arg: Vec<u8>,
    orgs: Vec<String>,
) -> anyhow::Result<u64> {
    let proposal = gateway
        .network(channel)
        .contract(lifecycle_name())
        .proposal_with(
            vec![function.as_bytes().to_vec(), arg],
            BTreeMap::new(),
            orgs,
        )?;
    let tx = proposal
        .endorse()
        .await
        .with_context(|| format!("{function}: endorsement"))?;
    let (_, block) = submit_endorsed(tx, function).await?;
    Ok(block)
}

/// Submits an endorsed transaction and waits for its commit; its id and block number. A
/// transaction committed invalid is an error naming its validation code.
async fn submit_endorsed(
    tx: gridledger_sdk::Transaction,
    what: &str,
) -> anyhow::Result<(String, u64)> {
    let commit = tx
        .submit()
        .await
        .with_context(|| format!("{what}: submit"))?;
    let status = commit
        .status()
        .await
        .with_context(|| format!("{what}: commit status"))?;
    if !status.is_valid() {
        let code = protos::TxValidationCode::try_from(status.code)
            .map(|c| c.as_str_name().to_string())
            .unwrap_or_else(|_| status.code.to_string());
        bail!(
            "{what}: transaction {} was committed invalid ({code})",
            commit.tx_id()
        );
    }
    Ok((commit.tx_id().to_owned(), status.block_number))
}

/// `invoke` and `query`: the proposal of `call` on its organization's peer, signed by the
/// organization's admin.
async fn call_proposal(
    call: &CallArgs,
    endorsing_orgs: Vec<String>,
) -> anyhow::Result<gridledger_sdk::Proposal> {
    let network = Network::load(&call.org.network)?;
    let gateway = network.gateway(&call.org.org).await?;
    let proposal = gateway
        .network(&call.channel)
        .contract(&call.name)
        .proposal_with(
            call.call.iter().map(|a| a.as_bytes().to_vec()).collect(),
            BTreeMap::new(),
            endorsing_orgs,
        )?;
    Ok(proposal)
}

/// What `invoke` and `query` print: the function's result as text, or nothing.
fn result_text(result: &[u8]) -> String {
    if result.is_empty() {
        String::new()
    } else {
        format!("{}\n", String::from_utf8_lossy(result))
    }
}

// ---------------------------------------------------------------------------------------------
// Definitions

/// Fabric's collections-config JSON entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CollectionJson {
    name: String,
    policy: String,
    #[serde(default)]
    required_peer_count: i32,
    #[serde(default)]
    max_peer_count: i32,
    #[serde(default)]
    block_to_live: u64,
    #[serde(default)]
    member_only_read: bool,
    #[serde(default)]
    member_only_write: bool,
    #[serde(default)]
    endorsement_policy: Option<CollectionEndorsementJson>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CollectionEndorsementJson {
    #[serde(default)]
    signature_policy: Option<String>,
    #[serde(default)]
    channel_config_policy: Option<String>,
}

/// Reads a collections-config JSON file into Fabric's `CollectionConfigPackage`.
fn collections(path: &Path) -> anyhow::Result<protos::CollectionConfigPackage> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let entries: Vec<CollectionJson> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a collections config (a JSON array)",
            path.display()
        )
    })?;
    let signature = |rule: &str| {
        gridledger_channels::policy::parse(rule).map_err(|e| anyhow::anyhow!(e.render(rule)))
    };
    let mut config = Vec::new();
    for c in entries {
        use protos::application_policy::Type;
        let endorsement_policy = match c.endorsement_policy {
            None => None,
            Some(CollectionEndorsementJson {
                signature_policy: Some(rule),
                channel_config_policy: None,
            }) => Some(protos::ApplicationPolicy {
                r#type: Some(Type::SignaturePolicy(signature(&rule)?)),
            }),
            Some(CollectionEndorsementJson {
                signature_policy: None,
                channel_config_policy: Some(path),
            }) => Some(protos::ApplicationPolicy {
                r#type: Some(Type::ChannelConfigPolicyReference(path)),
            }),
            Some(_) => bail!(
                "collection {}: endorsementPolicy needs exactly one of signaturePolicy and channelConfigPolicy",
                c.name
            ),
        };
        config.push(protos::CollectionConfig {
            payload: Some(protos::collection_config::Payload::StaticCollectionConfig(
                protos::StaticCollectionConfig {
                    member_orgs_policy: Some(protos::CollectionPolicyConfig {
                        payload: Some(protos::collection_policy_config::Payload::SignaturePolicy(
                            signature(&c.policy)
                                .with_context(|| format!("collection {}", c.name))?,
                        )),
                    }),
                    name: c.name,
                    required_peer_count: c.required_peer_count,
                    maximum_peer_count: c.max_peer_count,
                    block_to_live: c.block_to_live,
                    member_only_read: c.member_only_read,
                    member_only_write: c.member_only_write,
                    endorsement_policy,
                },
            )),
        });
    }
    Ok(protos::CollectionConfigPackage { config })
}

fn definition(
    name: &str,
    version: &str,
    sequence: i64,
    policy: Option<&str>,
    collections_file: Option<&Path>,
    init_required: bool,
) -> anyhow::Result<lifecycle::Definition> {
    let policy = policy.unwrap_or(lifecycle::DEFAULT_ENDORSEMENT_POLICY);
    Ok(lifecycle::Definition {
        sequence,
        name: name.into(),
        version: version.into(),
        endorsement_plugin: ENDORSEMENT_PLUGIN.into(),
        validation_plugin: VALIDATION_PLUGIN.into(),
        validation_parameter: lifecycle::application_policy(policy)
            .map_err(|e| anyhow::anyhow!("endorsement policy {policy:?}: {e}"))?,
        collections: collections_file.map(collections).transpose()?,
        init_required,
    })
}

fn approval(
    def: &lifecycle::Definition,
    package_id: &str,
) -> lc::ApproveChaincodeDefinitionForMyOrgArgs {
    lc::ApproveChaincodeDefinitionForMyOrgArgs {
        sequence: def.sequence,
        name: def.name.clone(),
        version: def.version.clone(),
        endorsement_plugin: def.endorsement_plugin.clone(),
        validation_plugin: def.validation_plugin.clone(),
        validation_parameter: def.validation_parameter.clone(),
        collections: def.collections.clone(),
        init_required: def.init_required,
        source: Some(lc::ChaincodeSource {
            r#type: Some(lc::chaincode_source::Type::LocalPackage(
                lc::chaincode_source::Local {
                    package_id: package_id.into(),
                },
            )),
        }),
    }
}

fn readiness_args(def: &lifecycle::Definition) -> lc::CheckCommitReadinessArgs {
    lc::CheckCommitReadinessArgs {
        sequence: def.sequence,
        name: def.name.clone(),
        version: def.version.clone(),
        endorsement_plugin: def.endorsement_plugin.clone(),
        validation_plugin: def.validation_plugin.clone(),
        validation_parameter: def.validation_parameter.clone(),
        collections: def.collections.clone(),
        init_required: def.init_required,
    }
}

fn policy_text(validation_parameter: &[u8]) -> String {
    match lifecycle::endorsement_policy(validation_parameter) {
        Ok(gridledger_peer::validation::EndorsementPolicy::ChannelPolicy(path)) => path,
        Ok(gridledger_peer::validation::EndorsementPolicy::Signature(env)) => {
            gridledger_channels::policy::to_policy_string(&env)
                .unwrap_or_else(|e| format!("<unprintable signature policy: {e}>"))
        }
        Err(e) => format!("<{e}>"),
    }
}

fn approvals_text(approvals: &BTreeMap<String, bool>) -> String {
    approvals
        .iter()
        .map(|(m, a)| format!("{m}: {a}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn build_package(
    code: &CodeArgs,
    label: &str,
    tls_root_cert: Option<&Path>,
) -> anyhow::Result<Vec<u8>> {
    let bytes = match (&code.builtin, &code.ccaas) {
        (Some(builtin), None) => {
            anyhow::ensure!(tls_root_cert.is_none(), "--tls-root-cert goes with --ccaas");
            package::build_builtin(label, builtin)?
        }
        (None, Some(address)) => {
            let root_cert = tls_root_cert
                .map(|p| {
                    std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
                })
                .transpose()?
                .unwrap_or_default();
            package::build_ccaas(
                label,
                &package::Connection {
                    address: address.clone(),
                    dial_timeout: "10s".into(),
                    tls_required: !root_cert.is_empty(),
                    root_cert,
                    ..Default::default()
                },
            )?
        }
        _ => bail!("give exactly one of --builtin and --ccaas"),
    };
    // Check it the way a peer will.
    package::parse(&bytes).context("the package just built")?;
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------------
// Commands

async fn install(network: &Network, msp_id: &str, bytes: &[u8]) -> anyhow::Result<String> {
    let org = network.org(msp_id)?;
    let mut package_id = String::new();
    for peer in &org.peers {
        let arg = lc::InstallChaincodeArgs {
            chaincode_install_package: bytes.to_vec(),
        }
        .encode_to_vec();
        let payload =
            local_call(network, peer, network.admin(org)?, "InstallChaincode", arg).await?;
        let result = lc::InstallChaincodeResult::decode(payload.as_slice())
            .context("decoding InstallChaincodeResult")?;
        eprintln!(
            "[chaincode] installed {} on {}",
            result.package_id, peer.name
        );
        package_id = result.package_id;
    }
    anyhow::ensure!(
        !package_id.is_empty(),
        "the network lists no peer of {msp_id}"
    );
    Ok(package_id)
}

async fn approve(
    network: &Network,
    msp_id: &str,
    channel: &str,
    def: &lifecycle::Definition,
    package_id: &str,
) -> anyhow::Result<()> {
    let gateway = network.gateway(msp_id).await?;
    let block = submit(
        &gateway,
        channel,
        "ApproveChaincodeDefinitionForMyOrg",
        approval(def, package_id).encode_to_vec(),
        vec![msp_id.to_string()],
    )
    .await
    .with_context(|| format!("approving for {msp_id}"))?;
    eprintln!(
        "[chaincode] {msp_id} approved {} sequence {} (block {block})",
        def.name, def.sequence
    );
    Ok(())
}

async fn readiness(
    gateway: &Gateway,
    channel: &str,
    def: &lifecycle::Definition,
) -> anyhow::Result<BTreeMap<String, bool>> {
    let payload = evaluate(
        gateway,
        channel,
        "CheckCommitReadiness",
        readiness_args(def).encode_to_vec(),
    )
    .await?;
    Ok(lc::CheckCommitReadinessResult::decode(payload.as_slice())
        .context("decoding CheckCommitReadinessResult")?
        .approvals)
}

/// Commits `def`, endorsed by every organization that approved it.
async fn commit(
    network: &Network,
    msp_id: &str,
    channel: &str,
    def: &lifecycle::Definition,
) -> anyhow::Result<u64> {
    let gateway = network.gateway(msp_id).await?;
    let approvals = readiness(&gateway, channel, def).await?;
    let approving: Vec<String> = approvals
        .iter()
        .filter(|(_, a)| **a)
        .map(|(m, _)| m.clone())
        .collect();
    anyhow::ensure!(
        !approving.is_empty(),
        "no organization approved {} sequence {} with these parameters ({})",
        def.name,
        def.sequence,
        approvals_text(&approvals)
    );
    let block = submit(
        &gateway,
        channel,
        "CommitChaincodeDefinition",
        def.encode_to_vec(),
        approving,
    )
    .await
    .with_context(|| {
        format!(
            "committing {} sequence {} (approvals: {})",
            def.name,
            def.sequence,
            approvals_text(&approvals)
        )
    })?;
    Ok(block)
}

/// The committed definition of `name` on the gateway's peer, if any.
async fn committed(
    gateway: &Gateway,
    channel: &str,
    name: &str,
) -> anyhow::Result<Option<lc::QueryChaincodeDefinitionResult>> {
    let arg = lc::QueryChaincodeDefinitionArgs { name: name.into() }.encode_to_vec();
    match evaluate(gateway, channel, "QueryChaincodeDefinition", arg).await {
        Ok(payload) => Ok(Some(
            lc::QueryChaincodeDefinitionResult::decode(payload.as_slice())
                .context("decoding QueryChaincodeDefinitionResult")?,
        )),
        Err(e) if format!("{e:#}").contains(&format!("namespace {name} is not defined")) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// One `deploy`: what to define on which channel.
struct Deployment<'a> {
    channel: &'a str,
    name: &'a str,
    code: &'a CodeArgs,
    version: &'a str,
    policy: Option<&'a str>,
    collections: Option<&'a Path>,
    label: Option<&'a str>,
    /// Whether the definition requires initialization.
    init_required: bool,
    /// Leave the chaincode alone when its committed definition already has these parameters
    /// and runs this package (`gridledger up` restarting a network).
    unless_current: bool,
    /// Retry approvals while the ordering service is still electing a leader.
    patient: bool,
}

/// Whether `current` (committed) already is `def` (but for the sequence) with `package_id`.
async fn is_current(
    gateway: &Gateway,
    channel: &str,
    current: &lc::QueryChaincodeDefinitionResult,
    def: &lifecycle::Definition,
    package_id: &str,
) -> anyhow::Result<bool> {
    if current.version != def.version
        || current.validation_parameter != def.validation_parameter
        || current.collections != def.collections
        || current.init_required != def.init_required
    {
        return Ok(false);
    }
    let arg = lc::QueryApprovedChaincodeDefinitionArgs {
        name: def.name.clone(),
        sequence: current.sequence,
    }
    .encode_to_vec();
    let Ok(payload) = evaluate(gateway, channel, "QueryApprovedChaincodeDefinition", arg).await
    else {
        return Ok(false);
    };
    let approved = lc::QueryApprovedChaincodeDefinitionResult::decode(payload.as_slice())
        .context("decoding QueryApprovedChaincodeDefinitionResult")?;
    Ok(matches!(
        approved.source.and_then(|s| s.r#type),
        Some(lc::chaincode_source::Type::LocalPackage(l)) if l.package_id == package_id
    ))
}

/// Packages, installs on the peer of every organization of the channel, approves for each and
/// commits (the next sequence), then waits until each organization's peer has the definition.
/// Returns the package id and whether anything was deployed.
async fn deploy_on(network: &Network, d: &Deployment<'_>) -> anyhow::Result<(String, bool)> {
    let msp_ids = network.channel_msp_ids(d.channel);
    let first = msp_ids
        .first()
        .context("the network lists no organization")?;
    let label = d
        .label
        .map_or_else(|| format!("{}_{}", d.name, d.version), str::to_owned);
    let bytes = build_package(d.code, &label, None)?;
    let package_id = package::package_id(&label, &bytes);
    let gateway = network.gateway(first).await?;
    let current = committed(&gateway, d.channel, d.name).await?;
    let def = definition(
        d.name,
        d.version,
        current.as_ref().map_or(0, |c| c.sequence) + 1,
        d.policy,
        d.collections,
        d.init_required,
    )?;
    if d.unless_current {
        if let Some(current) = &current {
            if is_current(&gateway, d.channel, current, &def, &package_id).await? {
                return Ok((package_id, false));
            }
        }
    }
    for msp_id in &msp_ids {
        install(network, msp_id, &bytes).await?;
    }
    for msp_id in &msp_ids {
        let deadline = Instant::now() + AGREE_TIMEOUT;
        loop {
            match approve(network, msp_id, d.channel, &def, &package_id).await {
                Ok(()) => break,
                Err(e) if d.patient && Instant::now() < deadline => {
                    eprintln!("[chaincode] approval for {msp_id} not done yet ({e:#}); retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    // The commit is endorsed by every organization's peer: each must see all approvals first,
    // or the peers would simulate different states.
    let deadline = Instant::now() + AGREE_TIMEOUT;
    for msp_id in &msp_ids {
        let gateway = network.gateway(msp_id).await?;
        loop {
            let approvals = readiness(&gateway, d.channel, &def).await?;
            if msp_ids.iter().all(|m| approvals.get(m) == Some(&true)) {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the peer of {msp_id} did not see every approval of {} sequence {} within {AGREE_TIMEOUT:?} ({})",
                def.name,
                def.sequence,
                approvals_text(&approvals)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let block = commit(network, first, d.channel, &def).await?;
    eprintln!(
        "[chaincode] committed {} sequence {} on {} (block {block})",
        def.name, def.sequence, d.channel
    );
    // Every peer must have the definition before the chaincode is used through any of them.
    let deadline = Instant::now() + AGREE_TIMEOUT;
    for msp_id in &msp_ids {
        let gateway = network.gateway(msp_id).await?;
        loop {
            let seen = committed(&gateway, d.channel, d.name).await?;
            if seen.is_some_and(|s| s.sequence >= def.sequence) {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the peer of {msp_id} did not commit {} sequence {} within {AGREE_TIMEOUT:?}",
                def.name,
                def.sequence
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok((package_id, true))
}

/// A Gateway on `msp_id`'s first peer signing as its admin, from a network description given
/// as JSON (relative paths from `base`).
pub(crate) async fn admin_gateway(
    network: &serde_json::Value,
    base: &Path,
    msp_id: &str,
) -> anyhow::Result<Gateway> {
    Network::from_json(network, base)?.gateway(msp_id).await
}

/// `gridledger up`'s chaincodes: each deployed through the lifecycle unless already current.
pub(crate) async fn deploy_for_up(
    network: &serde_json::Value,
    base: &Path,
    channel: &str,
    chaincodes: &[(String, CodeArgs)],
    policy: &str,
    collections: Option<&Path>,
) -> anyhow::Result<()> {
    let network = Network::from_json(network, base)?;
    for (name, code) in chaincodes {
        let (package_id, deployed) = deploy_on(
            &network,
            &Deployment {
                channel,
                name,
                code,
                version: "1.0",
                policy: Some(policy),
                collections,
                label: None,
                init_required: false,
                unless_current: true,
                patient: true,
            },
        )
        .await
        .with_context(|| format!("deploying chaincode {name} on {channel}"))?;
        if deployed {
            println!(
                "[up] deployed chaincode '{name}' on '{channel}' through the lifecycle (package {package_id})"
            );
        }
    }
    Ok(())
}

async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let network = Network::load(&args.network)?;
    let (package_id, _) = deploy_on(
        &network,
        &Deployment {
            channel: &args.channel,
            name: &args.name,
            code: &args.code,
            version: &args.version,
            policy: args.policy.as_deref(),
            collections: args.collections.as_deref(),
            label: args.label.as_deref(),
            init_required: args.init_required,
            unless_current: false,
            patient: false,
        },
    )
    .await?;
    println!("{package_id}");
    Ok(())
}

async fn run_async(cmd: ChaincodeCommand) -> anyhow::Result<()> {
    match cmd {
        ChaincodeCommand::Package(args) => {
            let bytes = build_package(&args.code, &args.label, args.tls_root_cert.as_deref())?;
            std::fs::write(&args.output, &bytes)
                .with_context(|| format!("writing {}", args.output.display()))?;
            println!("{}", package::package_id(&args.label, &bytes));
        }
        ChaincodeCommand::Install(args) => {
            let network = Network::load(&args.org.network)?;
            let bytes = std::fs::read(&args.package)
                .with_context(|| format!("reading {}", args.package.display()))?;
            println!("{}", install(&network, &args.org.org, &bytes).await?);
        }
        ChaincodeCommand::QueryInstalled(args) => {
            let network = Network::load(&args.network)?;
            let org = network.org(&args.org)?;
            for peer in &org.peers {
                let payload = local_call(
                    &network,
                    peer,
                    network.admin(org)?,
                    "QueryInstalledChaincodes",
                    lc::QueryInstalledChaincodesArgs {}.encode_to_vec(),
                )
                .await?;
                let result = lc::QueryInstalledChaincodesResult::decode(payload.as_slice())
                    .context("decoding QueryInstalledChaincodesResult")?;
                println!("Installed chaincodes on peer {}:", peer.name);
                for cc in result.installed_chaincodes {
                    let refs: Vec<String> = cc
                        .references
                        .iter()
                        .flat_map(|(ch, r)| {
                            r.chaincodes
                                .iter()
                                .map(move |c| format!("{ch}: {} {}", c.name, c.version))
                        })
                        .collect();
                    println!(
                        "Package ID: {}, Label: {}{}",
                        cc.package_id,
                        cc.label,
                        if refs.is_empty() {
                            String::new()
                        } else {
                            format!(", Used by: {}", refs.join(", "))
                        }
                    );
                }
            }
        }
        ChaincodeCommand::Approve(args) => {
            let d = &args.definition;
            let network = Network::load(&d.org.network)?;
            let def = definition(
                &d.name,
                &d.version,
                d.sequence,
                d.policy.as_deref(),
                d.collections.as_deref(),
                d.init_required,
            )?;
            approve(&network, &d.org.org, &d.channel, &def, &args.package_id).await?;
        }
        ChaincodeCommand::CheckCommitReadiness(d) => {
            let network = Network::load(&d.org.network)?;
            let def = definition(
                &d.name,
                &d.version,
                d.sequence,
                d.policy.as_deref(),
                d.collections.as_deref(),
                d.init_required,
            )?;
            let gateway = network.gateway(&d.org.org).await?;
            let approvals = readiness(&gateway, &d.channel, &def).await?;
            println!(
                "Chaincode definition for chaincode '{}', sequence '{}' on channel '{}' approval status by org:",
                def.name, def.sequence, d.channel
            );
            for (msp, approved) in approvals {
                println!("{msp}: {approved}");
            }
        }
        ChaincodeCommand::Commit(d) => {
            let network = Network::load(&d.org.network)?;
            let def = definition(
                &d.name,
                &d.version,
                d.sequence,
                d.policy.as_deref(),
                d.collections.as_deref(),
                d.init_required,
            )?;
            let block = commit(&network, &d.org.org, &d.channel, &def).await?;
            println!(
                "committed {} sequence {} on {} in block {block}",
                def.name, def.sequence, d.channel
            );
        }
        ChaincodeCommand::QueryCommitted(args) => {
            let network = Network::load(&args.org.network)?;
            let gateway = network.gateway(&args.org.org).await?;
            match &args.name {
                Some(name) => {
                    let d = committed(&gateway, &args.channel, name)
                        .await?
                        .with_context(|| {
                            format!("chaincode {name} is not defined on {}", args.channel)
                        })?;
                    println!(
                        "Committed chaincode definition for chaincode '{name}' on channel '{}':",
                        args.channel
                    );
                    println!(
                        "Version: {}, Sequence: {}, Endorsement Policy: {}, Init Required: {}, Approvals: [{}]",
                        d.version,
                        d.sequence,
                        policy_text(&d.validation_parameter),
                        d.init_required,
                        approvals_text(&d.approvals)
                    );
                }
                None => {
                    let payload = evaluate(
                        &gateway,
                        &args.channel,
                        "QueryChaincodeDefinitions",
                        lc::QueryChaincodeDefinitionsArgs {}.encode_to_vec(),
                    )
                    .await?;
                    let all = lc::QueryChaincodeDefinitionsResult::decode(payload.as_slice())
                        .context("decoding QueryChaincodeDefinitionsResult")?;
                    println!(
                        "Committed chaincode definitions on channel '{}':",
                        args.channel
                    );
                    for d in all.chaincode_definitions {
                        println!(
                            "Name: {}, Version: {}, Sequence: {}, Endorsement Policy: {}",
                            d.name,
                            d.version,
                            d.sequence,
                            policy_text(&d.validation_parameter)
                        );
                    }
                }
            }
        }
        ChaincodeCommand::QueryApproved(args) => {
            let network = Network::load(&args.org.network)?;
            let gateway = network.gateway(&args.org.org).await?;
            let arg = lc::QueryApprovedChaincodeDefinitionArgs {
                name: args.name.clone(),
                sequence: args.sequence,
            }
            .encode_to_vec();
            let payload = evaluate(
                &gateway,
                &args.channel,
                "QueryApprovedChaincodeDefinition",
                arg,
            )
            .await?;
            let a = lc::QueryApprovedChaincodeDefinitionResult::decode(payload.as_slice())
                .context("decoding QueryApprovedChaincodeDefinitionResult")?;
            let package_id = match a.source.and_then(|s| s.r#type) {
                Some(lc::chaincode_source::Type::LocalPackage(l)) => l.package_id,
                _ => "(unavailable)".into(),
            };
            println!(
                "Approved chaincode definition for chaincode '{}' on channel '{}':",
                args.name, args.channel
            );
            println!(
                "Version: {}, Sequence: {}, Endorsement Policy: {}, Init Required: {}, Package ID: {package_id}",
                a.version,
                a.sequence,
                policy_text(&a.validation_parameter),
                a.init_required
            );
        }
        ChaincodeCommand::Deploy(args) => deploy(args).await?,
        ChaincodeCommand::Invoke(args) => {
            let call = &args.call;
            let what = call.describe();
            let proposal = call_proposal(call, args.endorsing_orgs.clone()).await?;
            let tx = proposal
                .endorse()
                .await
                .with_context(|| format!("{what}: endorsement"))?;
            let result = result_text(tx.result());
            let (tx_id, block) = submit_endorsed(tx, &what).await?;
            crate::print_out(&format!(
                "transaction {tx_id} committed in block {block}\n{result}"
            ))?;
        }
        ChaincodeCommand::Query(call) => {
            let result = call_proposal(&call, Vec::new())
                .await?
                .evaluate()
                .await
                .with_context(|| call.describe())?;
            crate::print_out(&result_text(&result))?;
        }
    }
    Ok(())
}

pub fn run(cmd: ChaincodeCommand) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run_async(cmd))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn write_temp(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "gridledger-collections-{name}-{}.json",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn fabric_collections_json_becomes_a_collection_config_package() {
        let path = write_temp(
            "ok",
            r#"[{"name": "readings", "policy": "OR('DSOMSP.member', 'RetailerMSP.member')",
                 "requiredPeerCount": 1, "maxPeerCount": 2, "blockToLive": 100,
                 "memberOnlyRead": true, "memberOnlyWrite": false,
                 "endorsementPolicy": {"signaturePolicy": "OR('DSOMSP.peer')"}},
                {"name": "open", "policy": "OR('DSOMSP.member')"}]"#,
        );
        let package = collections(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(package.config.len(), 2);
        let Some(protos::collection_config::Payload::StaticCollectionConfig(c)) =
            &package.config[0].payload
        else {
            panic!("a static collection");
        };
        assert_eq!(
            (
                c.name.as_str(),
                c.required_peer_count,
                c.maximum_peer_count,
                c.block_to_live
            ),
            ("readings", 1, 2, 100)
        );
        assert!(c.member_only_read && !c.member_only_write);
        let Some(protos::collection_policy_config::Payload::SignaturePolicy(members)) = c
            .member_orgs_policy
            .as_ref()
            .and_then(|p| p.payload.clone())
        else {
            panic!("a member policy");
        };
        assert_eq!(
            gridledger_channels::policy::to_policy_string(&members).unwrap(),
            "OR('DSOMSP.member', 'RetailerMSP.member')"
        );
        assert!(matches!(
            c.endorsement_policy
                .as_ref()
                .and_then(|p| p.r#type.as_ref()),
            Some(protos::application_policy::Type::SignaturePolicy(_))
        ));
    }

    #[test]
    fn bad_collections_json_is_refused_with_the_reason() {
        for (name, text, needle) in [
            ("notarray", r#"{"name": "x"}"#, "not a collections config"),
            (
                "badpolicy",
                r#"[{"name": "x", "policy": "OR('DSOMSP.member'"}]"#,
                "collection x",
            ),
            (
                "twopolicies",
                r#"[{"name": "x", "policy": "OR('A.member')", "endorsementPolicy": {"signaturePolicy": "OR('A.peer')", "channelConfigPolicy": "/Channel/Application/Endorsement"}}]"#,
                "exactly one of",
            ),
            (
                "unknown",
                r#"[{"name": "x", "policy": "OR('A.member')", "colour": 1}]"#,
                "not a collections config",
            ),
        ] {
            let path = write_temp(name, text);
            let err = format!("{:#}", collections(&path).unwrap_err());
            let _ = std::fs::remove_file(&path);
            assert!(err.contains(needle), "{name}: {err}");
        }
    }

    #[test]
    fn definitions_default_to_the_channel_endorsement_policy() {
        let def = definition("meters", "1.0", 1, None, None, false).unwrap();
        assert_eq!(
            lifecycle::endorsement_policy(&def.validation_parameter).unwrap(),
            gridledger_peer::validation::EndorsementPolicy::ChannelPolicy(
                "/Channel/Application/Endorsement".into()
            )
        );
        assert!(definition("meters", "1.0", 1, Some("OR('A.peer'"), None, false).is_err());
    }
}
