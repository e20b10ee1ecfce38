//! `gridledger channel …`: genesis blocks, creating a channel on the ordering service and
//! joining peers to it while they run (`create`, `join`, `list`), inspection of channel
//! configuration, and the channel admin's config-update workflow — fetch and info,
//! declarative changes written to an update file (`org add|remove`, `policy set`, `batch
//! set`), signatures collected on that file by each organization's admin, the dry run
//! (`update check`) and `update submit`.

mod admin;
mod change;
mod join;

use anyhow::Context;
use change::Change;
use clap::{Args, Subcommand};
use gridledger_channels::config::OrganizationSpec;
use gridledger_channels::config::{ChannelConfig, ChannelSpec};
use gridledger_channels::genesis;
use gridledger_proto::common;
use gridledger_proto::prost::Message;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Write a channel's genesis block (a Fabric `common.Block` with a CONFIG envelope) from a
    /// declarative channel file (TOML; see examples/market-channel.toml).
    Genesis {
        /// Channel file.
        #[arg(long)]
        config: PathBuf,
        /// Folder the channel file's relative paths (MSP folders, TLS certificates) start from;
        /// defaults to the channel file's own folder.
        #[arg(long)]
        base_dir: Option<PathBuf>,
        /// Where to write the block (protobuf bytes).
        #[arg(long)]
        out: PathBuf,
        /// Channel-header timestamp, unix seconds (default: now). Fix it for byte-identical output.
        #[arg(long)]
        timestamp: Option<i64>,
    },
    /// Create a channel: join every listed orderer to it with its genesis block through the
    /// channel participation API on the orderers' operations endpoints (as `osnadmin channel
    /// join` does), then wait until each reports the channel active. The block comes from
    /// --block, or is made from a channel file with --config (as `channel genesis` makes it).
    #[command(group(clap::ArgGroup::new("genesis").required(true).args(["block", "config"])))]
    Create {
        /// The channel's name; the block must be its genesis block.
        #[arg(long)]
        channel: String,
        /// The channel's genesis block (`gridledger channel genesis`).
        #[arg(long)]
        block: Option<PathBuf>,
        /// Or: a channel file to make the genesis block from.
        #[arg(long)]
        config: Option<PathBuf>,
        /// With --config: the folder its relative paths start from (default: its own folder).
        #[arg(long, requires = "config")]
        base_dir: Option<PathBuf>,
        /// With --config: where to write the genesis block, for the peers to join with
        /// (default: <channel>.block in the current folder).
        #[arg(long, requires = "config")]
        out: Option<PathBuf>,
        #[command(flatten)]
        orderers: join::OrdererAdminArgs,
        /// How long to wait for every orderer to report the channel active, seconds.
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
    },
    /// Join a running peer to a channel with the channel's genesis block (cscc JoinChain, as
    /// `peer channel join` sends it), signed by an admin of the peer's organization. The peer
    /// then pulls the channel's blocks from its orderers.
    Join {
        /// The channel's genesis block.
        #[arg(long)]
        block: PathBuf,
        #[command(flatten)]
        peer: join::PeerAdminArgs,
    },
    /// List the channels a peer has joined (cscc GetChannels, as its organization's admin), or
    /// those orderers serve (the participation API, with --orderer-admin).
    List {
        #[command(flatten)]
        peer: join::PeerAdminArgs,
        #[command(flatten)]
        orderers: join::OrdererAdminArgs,
    },
    /// Print the channel configuration carried by a config block (GridLedger's or Fabric's).
    Inspect {
        /// A config block file (protobuf `common.Block`).
        #[arg(long)]
        block: PathBuf,
    },
    /// Write a block of the channel (by default the newest), or its latest config block, read
    /// from the organization's peer (or an orderer's Deliver) and verified.
    Fetch {
        #[command(flatten)]
        at: OrgChannel,
        /// The latest config block instead of a numbered one.
        #[arg(long, conflicts_with = "block")]
        config: bool,
        /// A block number, or `newest`.
        #[arg(long, value_name = "NUM|newest")]
        block: Option<String>,
        /// Read from this orderer's Deliver (a name network.json lists) instead of the
        /// organization's peer.
        #[arg(long)]
        orderer: Option<String>,
        /// Where to write the block (protobuf `common.Block`).
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
    },
    /// The channel's height and its current and previous block hashes, from the
    /// organization's peer.
    Info {
        #[command(flatten)]
        at: OrgChannel,
    },
    /// Prepare an update adding or removing an application organization.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Prepare an update setting a policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Prepare an update setting or removing a resource's ACL (e.g. `qscc/GetChainInfo`).
    #[command(subcommand)]
    Acl(AclCommand),
    /// Prepare an update changing the orderer's batch parameters.
    #[command(subcommand)]
    Batch(BatchCommand),
    /// Prepare an update adding or removing a Raft consenter (one at a time).
    #[command(subcommand)]
    Consenter(ConsenterCommand),
    /// Sign, check (dry run) and submit a prepared update file.
    #[command(subcommand)]
    Update(UpdateCommand),
}

/// A network, one of its channels and the organization acting.
#[derive(Debug, Args)]
pub struct OrgChannel {
    /// The network description (network.json).
    #[arg(long)]
    network: PathBuf,
    /// The channel.
    #[arg(long)]
    channel: String,
    /// The organization (MSP id) whose peer is asked, as its admin.
    #[arg(long)]
    org: String,
}

/// Where a prepared update comes from and goes to.
#[derive(Debug, Args)]
pub struct UpdateTarget {
    /// The network description (network.json).
    #[arg(long)]
    network: PathBuf,
    /// The channel.
    #[arg(long)]
    channel: String,
    /// The organization whose peer the current config is read from (default: the first one
    /// network.json lists for the channel).
    #[arg(long)]
    org: Option<String>,
    /// Where to write the update (a `ConfigUpdateEnvelope` with no signatures yet).
    #[arg(short = 'o', long = "out")]
    out: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Add an application organization (its MSP, anchor peers and the default policies).
    Add {
        #[command(flatten)]
        target: UpdateTarget,
        /// The organization's MSP folder (cacerts/, tlscacerts/, …).
        #[arg(long)]
        msp_dir: PathBuf,
        /// Its MSP id.
        #[arg(long)]
        msp_id: String,
        /// An anchor peer, HOST:PORT (repeatable).
        #[arg(long = "anchor-peer", value_name = "HOST:PORT")]
        anchor_peers: Vec<String>,
    },
    /// Remove an application organization.
    Remove {
        #[command(flatten)]
        target: UpdateTarget,
        /// Its MSP id.
        #[arg(long)]
        msp_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Set the policy at a path: a signature policy (`OR('A.member','B.member')`) or an
    /// implicit-meta one (`ANY|ALL|MAJORITY <SubPolicy>`).
    Set {
        #[command(flatten)]
        target: UpdateTarget,
        /// The policy's absolute path, e.g. /Channel/Application/Writers.
        #[arg(long)]
        path: String,
        /// The policy.
        #[arg(long)]
        policy: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Map a resource (`peer/Propose`, `qscc/GetChainInfo`, `event/Block`, …) to a policy in
    /// the channel's Application `ACLs` value, overriding the peer's default.
    Set {
        #[command(flatten)]
        target: UpdateTarget,
        /// The resource.
        #[arg(long)]
        resource: String,
        /// The policy reference: absolute (/Channel/Application/Admins) or relative to
        /// /Channel/Application (Admins).
        #[arg(long)]
        policy: String,
    },
    /// Remove a resource's override: the peer's default policy applies again.
    Unset {
        #[command(flatten)]
        target: UpdateTarget,
        /// The resource.
        #[arg(long)]
        resource: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Set some of the orderer's batch parameters (the others keep their values).
    Set {
        #[command(flatten)]
        target: UpdateTarget,
        /// Most transactions per block.
        #[arg(long)]
        max_message_count: Option<u32>,
        /// Time after the first pending transaction at which a block is cut, milliseconds.
        #[arg(long)]
        batch_timeout_ms: Option<u64>,
        /// Size at which a block is cut, bytes.
        #[arg(long)]
        preferred_max_bytes: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConsenterCommand {
    /// Add a consenter, and its address to an orderer organization's endpoints.
    Add {
        #[command(flatten)]
        target: UpdateTarget,
        /// The consenter's host, as the other consenters reach it.
        #[arg(long)]
        host: String,
        /// Its port.
        #[arg(long)]
        port: u16,
        /// Its TLS certificate (PEM), used as both client and server certificate unless
        /// --server-tls-cert is given.
        #[arg(long)]
        tls_cert: PathBuf,
        /// Its TLS server certificate (PEM), when it differs from the client one.
        #[arg(long)]
        server_tls_cert: Option<PathBuf>,
        /// The orderer organization whose endpoints get HOST:PORT (default: the only one).
        #[arg(long)]
        orderer_org: Option<String>,
    },
    /// Remove the consenter at HOST:PORT, and that address from the orderer endpoints.
    Remove {
        #[command(flatten)]
        target: UpdateTarget,
        /// The consenter's host.
        #[arg(long)]
        host: String,
        /// Its port.
        #[arg(long)]
        port: u16,
    },
}

/// Who signs: an admin network.json lists, or one given by certificate and key.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct SignerArgs {
    /// The network description (network.json), with --org.
    #[arg(long, requires = "org")]
    network: Option<PathBuf>,
    /// The organization (MSP id) whose admin network.json lists.
    #[arg(long, requires = "network", conflicts_with_all = ["msp_id", "cert", "key"])]
    org: Option<String>,
    /// Or: the signer's MSP id (e.g. OrdererMSP for consenter changes), with --cert and --key.
    #[arg(long, requires_all = ["cert", "key"])]
    msp_id: Option<String>,
    /// The signer's certificate (PEM).
    #[arg(long, requires = "msp_id")]
    cert: Option<PathBuf>,
    /// The signer's private key (PEM).
    #[arg(long, requires = "msp_id")]
    key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum UpdateCommand {
    /// Add an organization admin's signature to an update file, in place.
    Sign {
        #[command(flatten)]
        signer: SignerArgs,
        /// The update file.
        #[arg(long)]
        file: PathBuf,
    },
    /// Dry run: the changed elements, their mod_policy, who signed and whether each policy is
    /// satisfied, explained. Exit status 0 when the update would be accepted.
    Check {
        /// The network description (network.json).
        #[arg(long)]
        network: PathBuf,
        /// The channel.
        #[arg(long)]
        channel: String,
        /// The organization whose peer the current config is read from (default: the first
        /// one network.json lists for the channel).
        #[arg(long)]
        org: Option<String>,
        /// The update file.
        #[arg(long)]
        file: PathBuf,
    },
    /// Submit a signed update (refused here, with the check's explanation, when its signatures
    /// do not satisfy the policies) and wait for the config block on the organization's peer.
    Submit {
        #[command(flatten)]
        at: OrgChannel,
        /// The update file.
        #[arg(long)]
        file: PathBuf,
    },
}

/// `gridledger channel genesis`: builds the genesis block of the channel file `config`,
/// checks it as every node will, writes it to `out` and returns the channel's name.
fn write_genesis(
    config: &Path,
    base_dir: Option<PathBuf>,
    out: &Path,
    timestamp: Option<i64>,
) -> anyhow::Result<String> {
    let spec = ChannelSpec::load(config)
        .with_context(|| format!("loading channel file {}", config.display()))?;
    let base = base_dir.unwrap_or_else(|| config.parent().unwrap_or(Path::new(".")).to_path_buf());
    let tree = spec.to_config(&base).with_context(|| {
        format!(
            "building the config of channel '{}' (paths relative to {})",
            spec.name,
            base.display()
        )
    })?;
    let seconds = timestamp.unwrap_or_else(crate::now_unix_secs);
    let block = genesis::genesis_block(
        &spec.name,
        tree,
        gridledger_proto::prost_types::Timestamp { seconds, nanos: 0 },
    );
    // Read the block back through the same checks every node applies before writing it.
    ChannelConfig::from_block(&block).context("validating the genesis block just built")?;
    let bytes = block.encode_to_vec();
    std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    let hash = block
        .header
        .as_ref()
        .map(gridledger_proto::block_header_hash)
        .unwrap_or_default();
    println!(
        "wrote genesis block of channel '{}' to {} ({} bytes, header hash {})",
        spec.name,
        out.display(),
        bytes.len(),
        hex::encode(hash)
    );
    Ok(spec.name)
}

/// Runs a network command on a small runtime.
fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(future: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

fn load(path: &Path) -> anyhow::Result<crate::chaincode::Network> {
    crate::chaincode::Network::load(path)
}

/// Prepares the update making `change` and writes it to the target's file.
fn prepare(target: UpdateTarget, change: Change) -> anyhow::Result<()> {
    let network = load(&target.network)?;
    block_on(admin::prepare(
        &network,
        &target.channel,
        target.org.as_deref(),
        &change,
        &target.out,
    ))
}

pub fn run(cmd: ChannelCommand) -> anyhow::Result<()> {
    match cmd {
        ChannelCommand::Genesis {
            config,
            base_dir,
            out,
            timestamp,
        } => write_genesis(&config, base_dir, &out, timestamp).map(|_| ()),
        ChannelCommand::Create {
            channel,
            block,
            config,
            base_dir,
            out,
            orderers,
            timeout_s,
        } => {
            let block = match (block, config) {
                (Some(block), _) => block,
                (None, Some(config)) => {
                    let out = out.unwrap_or_else(|| PathBuf::from(format!("{channel}.block")));
                    let name = write_genesis(&config, base_dir, &out, None)?;
                    anyhow::ensure!(
                        name == channel,
                        "{} describes channel '{name}', not '{channel}'",
                        config.display()
                    );
                    out
                }
                (None, None) => anyhow::bail!("give --block or --config"),
            };
            block_on(join::create(
                &orderers,
                &channel,
                &block,
                std::time::Duration::from_secs(timeout_s),
            ))
        }
        ChannelCommand::Join { block, peer } => block_on(join::join_peer(&peer, &block)),
        ChannelCommand::List { peer, orderers } => block_on(join::list(&peer, &orderers)),
        ChannelCommand::Inspect { block } => {
            let bytes =
                std::fs::read(&block).with_context(|| format!("reading {}", block.display()))?;
            let decoded = common::Block::decode(bytes.as_slice())
                .with_context(|| format!("{} is not a protobuf common.Block", block.display()))?;
            let config = ChannelConfig::from_block(&decoded)
                .with_context(|| format!("reading the channel config in {}", block.display()))?;
            crate::print_out(&describe(&decoded, &config))?;
            Ok(())
        }
        ChannelCommand::Fetch {
            at,
            config,
            block,
            orderer,
            out,
        } => {
            let network = load(&at.network)?;
            block_on(admin::fetch(
                &network,
                &at.channel,
                &at.org,
                orderer.as_deref(),
                block.as_deref(),
                config,
                &out,
            ))
        }
        ChannelCommand::Info { at } => {
            let network = load(&at.network)?;
            block_on(admin::info(&network, &at.channel, &at.org))
        }
        ChannelCommand::Org(OrgCommand::Add {
            target,
            msp_dir,
            msp_id,
            anchor_peers,
        }) => {
            let spec = OrganizationSpec {
                msp_id: msp_id.clone(),
                msp_dir,
                anchor_peers,
                policies: Default::default(),
            };
            let group = spec
                .to_config_group(Path::new("."))
                .with_context(|| format!("building the config group of {msp_id}"))?;
            prepare(target, Change::OrgAdd { msp_id, group })
        }
        ChannelCommand::Org(OrgCommand::Remove { target, msp_id }) => {
            prepare(target, Change::OrgRemove { msp_id })
        }
        ChannelCommand::Policy(PolicyCommand::Set {
            target,
            path,
            policy,
        }) => {
            let policy = change::policy_from_text(&policy)?;
            prepare(target, Change::PolicySet { path, policy })
        }
        ChannelCommand::Acl(AclCommand::Set {
            target,
            resource,
            policy,
        }) => prepare(
            target,
            Change::AclSet {
                resource,
                policy: Some(policy),
            },
        ),
        ChannelCommand::Acl(AclCommand::Unset { target, resource }) => prepare(
            target,
            Change::AclSet {
                resource,
                policy: None,
            },
        ),
        ChannelCommand::Batch(BatchCommand::Set {
            target,
            max_message_count,
            batch_timeout_ms,
            preferred_max_bytes,
        }) => prepare(
            target,
            Change::BatchSet {
                max_message_count,
                batch_timeout_ms,
                preferred_max_bytes,
            },
        ),
        ChannelCommand::Consenter(ConsenterCommand::Add {
            target,
            host,
            port,
            tls_cert,
            server_tls_cert,
            orderer_org,
        }) => {
            let read =
                |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            let client_tls_cert = read(&tls_cert)?;
            let server_tls_cert = match server_tls_cert {
                Some(p) => read(&p)?,
                None => client_tls_cert.clone(),
            };
            let consenter = gridledger_proto::etcdraft::Consenter {
                host,
                port: u32::from(port),
                client_tls_cert,
                server_tls_cert,
            };
            prepare(
                target,
                Change::ConsenterAdd {
                    consenter,
                    orderer_org,
                },
            )
        }
        ChannelCommand::Consenter(ConsenterCommand::Remove { target, host, port }) => prepare(
            target,
            Change::ConsenterRemove {
                host,
                port: u32::from(port),
            },
        ),
        ChannelCommand::Update(UpdateCommand::Sign { signer, file }) => {
            let (identity, label) = match (signer.network, signer.org, signer.msp_id) {
                (Some(network), Some(org), _) => {
                    (load(&network)?.org_admin(&org)?, format!("{org}'s admin"))
                }
                (_, _, Some(msp_id)) => {
                    let (Some(cert), Some(key)) = (signer.cert, signer.key) else {
                        anyhow::bail!("--msp-id needs --cert and --key");
                    };
                    let identity = gridledger_identity::SigningIdentity::load(&msp_id, &cert, &key)
                        .with_context(|| format!("loading the signer {}", cert.display()))?;
                    (identity, format!("{msp_id}'s {}", cert.display()))
                }
                _ => anyhow::bail!("give --network and --org, or --msp-id, --cert and --key"),
            };
            admin::sign(&identity, &label, &file)
        }
        ChannelCommand::Update(UpdateCommand::Check {
            network,
            channel,
            org,
            file,
        }) => {
            let network = load(&network)?;
            block_on(admin::check(&network, &channel, org.as_deref(), &file))
        }
        ChannelCommand::Update(UpdateCommand::Submit { at, file }) => {
            let network = load(&at.network)?;
            block_on(admin::submit(&network, &at.channel, &at.org, &file))
        }
    }
}

/// A readable summary of a config block.
fn describe(block: &common::Block, config: &ChannelConfig) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let number = block.header.as_ref().map_or(0, |h| h.number);
    let hash = block
        .header
        .as_ref()
        .map(gridledger_proto::block_header_hash)
        .unwrap_or_default();
    let _ = writeln!(out, "channel:       {}", config.channel_id());
    let _ = writeln!(
        out,
        "block:         {number} (header hash {})",
        hex::encode(hash)
    );
    let _ = writeln!(out, "sequence:      {}", config.sequence());
    let _ = writeln!(out, "capabilities:  {}", config.capabilities().join(", "));
    let orderer = config.orderer();
    let _ = writeln!(
        out,
        "orderer:       {} ({:?}), capabilities {}",
        orderer.consensus_type,
        orderer.state,
        orderer.capabilities.join(", ")
    );
    let b = orderer.batch;
    let _ = writeln!(
        out,
        "  batch:       max_message_count {}, absolute_max_bytes {}, preferred_max_bytes {}, batch_timeout_ms {}",
        b.max_message_count, b.absolute_max_bytes, b.preferred_max_bytes, b.batch_timeout_ms
    );
    for c in &orderer.consenters {
        let _ = writeln!(out, "  consenter:   {}:{}", c.host, c.port);
    }
    for org in &orderer.organizations {
        let _ = writeln!(
            out,
            "  org:         {} endpoints [{}]",
            org.msp_id,
            org.endpoints.join(", ")
        );
    }
    let app = config.application();
    let _ = writeln!(
        out,
        "application:   capabilities {}",
        app.capabilities.join(", ")
    );
    for org in &app.organizations {
        let anchors: Vec<String> = org
            .anchor_peers
            .iter()
            .map(|a| format!("{}:{}", a.host, a.port))
            .collect();
        let _ = writeln!(
            out,
            "  org:         {} anchor peers [{}]",
            org.msp_id,
            anchors.join(", ")
        );
    }
    let _ = writeln!(out, "policies:");
    for path in config.policies().paths() {
        let rule = config
            .policies()
            .policy(&path)
            .map(render_policy)
            .unwrap_or_default();
        let _ = writeln!(out, "  {path:<48} {rule}");
    }
    out
}

/// A policy in Fabric's text forms: `OR('A.admin', …)` or `MAJORITY Admins`.
pub(crate) fn render_policy(policy: &common::Policy) -> String {
    use common::policy::PolicyType;
    use gridledger_channels::policy::{implicit_meta_to_string, to_policy_string};
    match PolicyType::try_from(policy.r#type) {
        Ok(PolicyType::Signature) => {
            common::SignaturePolicyEnvelope::decode(policy.value.as_slice())
                .map_err(|e| e.to_string())
                .and_then(|env| to_policy_string(&env).map_err(|e| e.to_string()))
                .unwrap_or_else(|e| format!("<signature policy: {e}>"))
        }
        Ok(PolicyType::ImplicitMeta) => common::ImplicitMetaPolicy::decode(policy.value.as_slice())
            .map(|p| implicit_meta_to_string(&p))
            .unwrap_or_else(|e| format!("<implicit-meta policy: {e}>")),
        _ => format!("<policy type {}>", policy.r#type),
    }
}
