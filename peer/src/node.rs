//! The peer process: its identity, the channels it has joined, and the gRPC server.
//!
//! A [`Peer`] owns one [`Channel`] per joined channel — the channel's ledger, its current
//! configuration and its chaincode definitions — and serves the Gateway, Endorser and Deliver
//! services over TLS. A committer task per channel pulls blocks from the ordering service.
//! A peer never serves a channel it has not joined: every request names its channel and an
//! unknown one is refused before anything else is looked at.
//!
//! Channels are joined with their genesis block, either at start-up (`<data_dir>/join/*.block`)
//! or while the peer runs ([`Peer::join`], behind `cscc JoinChain`). Both create the ledger the
//! same way: in a staging folder `<data_dir>/channels/.joining-<id>/` that is renamed into place
//! once block 0 is written, so a join that dies halfway leaves no channel behind.

use crate::config::PeerConfig;
use crate::validation::{ChaincodeDefinition, EndorsementPolicy};
use gridledger_chaincode::Registry;
use gridledger_channels::config::ChannelConfig;
use gridledger_identity::{Identity, Msp, MspManager, SigningIdentity};
use gridledger_ledger::Ledger;
use gridledger_proto::common;
use gridledger_proto::prost::Message;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Why the peer could not start or join a channel.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("signing identity: {0}")]
    Identity(#[from] gridledger_identity::IdentityError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("ledger of channel {channel}: {source}")]
    Ledger {
        channel: String,
        source: gridledger_ledger::LedgerError,
    },
    #[error("block {path}: {reason}")]
    JoinBlock { path: String, reason: String },
    #[error("channel {channel}: {reason}")]
    Channel { channel: String, reason: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Server(String),
    #[error(transparent)]
    Feasibility(#[from] crate::feasibility::FeasibilityError),
    #[error("local MSP {dir} (msp_dir): {source}")]
    LocalMsp {
        dir: String,
        source: gridledger_identity::IdentityError,
    },
}

/// Why a running peer could not join a channel ([`Peer::join`]).
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The bytes are not a usable genesis block.
    #[error("not a valid genesis block: {0}")]
    InvalidBlock(String),
    /// The peer has joined this channel already.
    #[error("channel {channel} is already joined by this peer (ledger height {height})")]
    AlreadyJoined { channel: String, height: u64 },
    /// The ledger could not be created or opened.
    #[error("cannot create the ledger of channel {channel}: {reason}")]
    Ledger { channel: String, reason: String },
}

/// Starts the tasks a joined channel needs while the peer serves (its committer and
/// reconciler); installed by the server, see [`Peer::set_channel_starter`].
pub type ChannelStarter = Box<dyn Fn(Arc<Channel>) + Send + Sync>;

/// Prefix of the staging folder a channel's ledger is created in (see the module doc).
const STAGING_PREFIX: &str = ".joining-";

/// One joined channel.
pub struct Channel {
    id: String,
    ledger: Arc<Ledger>,
    config: RwLock<Arc<ChannelConfig>>,
    /// Definitions from the peer's configuration file (the local bootstrap).
    bootstrap: BTreeMap<String, ChaincodeDefinition>,
    /// The definitions in force: `bootstrap`, overridden by those committed in `_lifecycle`.
    definitions: RwLock<Arc<Definitions>>,
    /// The MSP id of this peer's organization (decides which collections it keeps values of).
    local_msp_id: String,
}

/// A channel's chaincode definitions at one ledger height.
#[derive(Default)]
struct Definitions {
    /// What validation and endorsement use, `_lifecycle` included.
    validation: Arc<BTreeMap<String, ChaincodeDefinition>>,
    /// The definitions committed through the lifecycle.
    committed: Arc<BTreeMap<String, crate::lifecycle::Definition>>,
}

impl Channel {
    /// The channel id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The channel's ledger on this peer.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }
    /// The MSP id of this peer's organization.
    pub fn local_msp_id(&self) -> &str {
        &self.local_msp_id
    }
    /// Collection `collection` of chaincode `namespace`: defined in its definition, or an
    /// implicit org collection of the channel; `None` otherwise.
    pub fn collection(
        &self,
        namespace: &str,
        collection: &str,
    ) -> Option<crate::private::CollectionDefinition> {
        let chaincodes = self.chaincodes();
        let defined = chaincodes
            .get(namespace)
            .map(|d| &d.collections)
            .cloned()
            .unwrap_or_default();
        crate::private::lookup(&defined, &self.config(), collection)
    }
    /// The current channel configuration.
    pub fn config(&self) -> Arc<ChannelConfig> {
        self.config
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }
    /// Replaces the configuration after a config block commits.
    pub fn set_config(&self, config: ChannelConfig) {
        crate::metrics::watch_channel_certificates(&config);
        let config = Arc::new(config);
        match self.config.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        self.refresh_definitions();
    }

    fn definitions(&self) -> Arc<Definitions> {
        self.definitions
            .read()
            .map(|d| d.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Chaincode definitions by name (= namespace), `_lifecycle` included: the peer
    /// configuration's bootstrap definitions, overridden by those committed in `_lifecycle`.
    pub fn chaincodes(&self) -> Arc<BTreeMap<String, ChaincodeDefinition>> {
        self.definitions().validation.clone()
    }

    /// The chaincode definitions committed through the lifecycle, by name.
    pub fn committed_definitions(&self) -> Arc<BTreeMap<String, crate::lifecycle::Definition>> {
        self.definitions().committed.clone()
    }

    /// Re-reads the committed definitions from the ledger (after a block that wrote
    /// `_lifecycle`, or a config change). A committed definition whose policy does not decode
    /// is left out, on every peer alike.
    pub fn refresh_definitions(&self) {
        let committed = match self
            .ledger
            .snapshot()
            .map_err(|e| e.to_string())
            .and_then(|s| crate::lifecycle::committed_definitions(&s))
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(channel = %self.id, error = %e, "cannot read the committed chaincode definitions; keeping the previous ones");
                return;
            }
        };
        let mut validation = self.bootstrap.clone();
        for (name, def) in &committed {
            match crate::lifecycle::validation_definition(def) {
                Ok(d) => {
                    validation.insert(name.clone(), d);
                }
                Err(e) => {
                    tracing::warn!(channel = %self.id, chaincode = %name, error = %e, "ignoring a committed definition")
                }
            }
        }
        let lifecycle = ChaincodeDefinition::lifecycle(&self.config());
        validation.insert(lifecycle.name.clone(), lifecycle);
        let definitions = Arc::new(Definitions {
            validation: Arc::new(validation),
            committed: Arc::new(committed),
        });
        match self.definitions.write() {
            Ok(mut d) => *d = definitions,
            Err(poisoned) => *poisoned.into_inner() = definitions,
        }
    }
}

/// A running peer's shared state.
pub struct Peer {
    config: PeerConfig,
    signer: SigningIdentity,
    channels: RwLock<BTreeMap<String, Arc<Channel>>>,
    registry: Registry,
    /// Installed packages already parsed, by package id (packages never change once installed).
    installed: std::sync::Mutex<BTreeMap<String, Arc<crate::lifecycle::package::Package>>>,
    /// The DSO's feasibility endorsement, when configured.
    feasibility: Option<crate::feasibility::FeasibilityCheck>,
    /// The local MSP (`msp_dir`), when configured: who may call the peer-local functions.
    local_msp: Option<MspManager>,
    /// Serializes run-time joins, so two joins of one channel cannot race.
    joining: std::sync::Mutex<()>,
    /// Starts a channel's tasks; set once the server runs.
    starter: std::sync::OnceLock<ChannelStarter>,
}

impl Peer {
    /// Loads the identity and opens (or joins) every channel found in the data folder.
    pub fn open(config: PeerConfig) -> Result<Arc<Peer>, PeerError> {
        let signer =
            SigningIdentity::load(&config.msp_id, &config.signing_cert, &config.signing_key)?;
        let feasibility = config
            .feasibility
            .clone()
            .map(crate::feasibility::FeasibilityCheck::load)
            .transpose()?;
        let local_msp = config
            .msp_dir
            .as_deref()
            .map(|dir| local_msp(&config.msp_id, dir, &signer))
            .transpose()?;
        let peer = Arc::new(Peer {
            config,
            signer,
            channels: RwLock::new(BTreeMap::new()),
            registry: Registry::with_builtins(),
            installed: std::sync::Mutex::new(BTreeMap::new()),
            feasibility,
            local_msp,
            joining: std::sync::Mutex::new(()),
            starter: std::sync::OnceLock::new(),
        });
        peer.join_pending()?;
        peer.open_joined()?;
        Ok(peer)
    }

    /// The peer's configuration.
    pub fn config(&self) -> &PeerConfig {
        &self.config
    }
    /// The peer's signing identity.
    pub fn signer(&self) -> &SigningIdentity {
        &self.signer
    }
    /// The chaincodes compiled into the peer.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
    /// The local MSP (`msp_dir` in the configuration), when the peer has one.
    pub fn local_msp(&self) -> Option<&MspManager> {
        self.local_msp.as_ref()
    }
    /// The DSO's feasibility endorsement, when this peer is configured with one.
    pub fn feasibility(&self) -> Option<&crate::feasibility::FeasibilityCheck> {
        self.feasibility.as_ref()
    }
    /// An installed package, parsed once and then served from memory; `None` when it is not
    /// installed.
    pub fn installed_package(
        &self,
        package_id: &str,
    ) -> Result<
        Option<Arc<crate::lifecycle::package::Package>>,
        crate::lifecycle::package::PackageError,
    > {
        if let Some(p) = self
            .installed
            .lock()
            .ok()
            .and_then(|m| m.get(package_id).cloned())
        {
            return Ok(Some(p));
        }
        let Some(package) = self.packages().get(package_id)?.map(Arc::new) else {
            return Ok(None);
        };
        if let Ok(mut map) = self.installed.lock() {
            map.insert(package_id.to_owned(), package.clone());
        }
        Ok(Some(package))
    }

    /// Deadline for calls to other nodes.
    pub fn rpc_timeout(&self) -> Duration {
        Duration::from_millis(self.config.rpc_timeout_ms)
    }

    /// A joined channel.
    pub fn channel(&self, id: &str) -> Option<Arc<Channel>> {
        self.channels.read().ok().and_then(|c| c.get(id).cloned())
    }

    /// Joined channels, by id.
    pub fn channels(&self) -> Vec<Arc<Channel>> {
        self.channels
            .read()
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }

    fn channels_dir(&self) -> PathBuf {
        self.config.data_dir.join("channels")
    }

    /// Joins every genesis block in `<data_dir>/join/` that names a channel not joined yet.
    fn join_pending(&self) -> Result<(), PeerError> {
        let join_dir = self.config.data_dir.join("join");
        let Ok(entries) = std::fs::read_dir(&join_dir) else {
            return Ok(());
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "block"))
            .collect();
        files.sort();
        for path in files {
            let bytes = std::fs::read(&path).map_err(|source| PeerError::Io {
                path: path.display().to_string(),
                source,
            })?;
            join_channel(&self.config.data_dir, &bytes).map_err(|reason| PeerError::JoinBlock {
                path: path.display().to_string(),
                reason,
            })?;
        }
        Ok(())
    }

    fn open_joined(&self) -> Result<(), PeerError> {
        let dir = self.channels_dir();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let Some(id) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            if id.starts_with(STAGING_PREFIX) {
                // A join that died before its ledger was complete: never a joined channel.
                tracing::warn!(folder = %path.display(), "removing the folder of an unfinished join");
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            let channel = self.open_channel(&id, &path)?;
            if let Ok(mut map) = self.channels.write() {
                map.insert(id, channel);
            }
        }
        Ok(())
    }

    /// Opens the ledger of a joined channel in `path` and reads its configuration and
    /// chaincode definitions.
    fn open_channel(&self, id: &str, path: &Path) -> Result<Arc<Channel>, PeerError> {
        let ledger = Arc::new(Ledger::open(path, id).map_err(|source| PeerError::Ledger {
            channel: id.to_owned(),
            source,
        })?);
        let config = latest_config(&ledger).map_err(|reason| PeerError::Channel {
            channel: id.to_owned(),
            reason,
        })?;
        let bootstrap = self.chaincode_definitions(id)?;
        let channel = Arc::new(Channel {
            id: id.to_owned(),
            ledger,
            config: RwLock::new(Arc::new(config)),
            bootstrap,
            definitions: RwLock::new(Arc::default()),
            local_msp_id: self.signer.msp_id().to_owned(),
        });
        channel.refresh_definitions();
        crate::metrics::watch_channel_certificates(&channel.config());
        Ok(channel)
    }

    /// Installs what starts a channel's tasks (the server does, once it runs) and starts
    /// them for every channel joined so far. A second call is ignored.
    pub fn set_channel_starter(&self, starter: ChannelStarter) {
        if self.starter.set(starter).is_err() {
            tracing::warn!("the channel starter is already installed");
            return;
        }
        for channel in self.channels() {
            self.start_channel(channel);
        }
    }

    fn start_channel(&self, channel: Arc<Channel>) {
        if let Some(start) = self.starter.get() {
            start(channel);
        }
    }

    /// Joins the channel whose genesis block is `block_bytes` while the peer runs: validates
    /// the block, creates the channel's ledger with block 0 (atomically: a failure leaves no
    /// channel behind), opens the channel and starts its tasks as for a channel opened at
    /// start-up. The caller has checked that the requester may do this.
    pub fn join(&self, block_bytes: &[u8]) -> Result<Arc<Channel>, JoinError> {
        let _serial = self
            .joining
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (block, config) = genesis_config(block_bytes).map_err(JoinError::InvalidBlock)?;
        let id = config.channel_id().to_owned();
        if let Some(existing) = self.channel(&id) {
            return Err(JoinError::AlreadyJoined {
                channel: id,
                height: existing.ledger().height(),
            });
        }
        let dir = self.channels_dir().join(&id);
        if dir.exists() {
            return Err(JoinError::Ledger {
                channel: id,
                reason: format!(
                    "{} exists but the channel is not open; restart the peer to open it",
                    dir.display()
                ),
            });
        }
        create_ledger(&self.config.data_dir, &id, block).map_err(|reason| JoinError::Ledger {
            channel: id.clone(),
            reason,
        })?;
        let channel = match self.open_channel(&id, &dir) {
            Ok(channel) => channel,
            Err(e) => {
                // Leave nothing half-joined: the next join starts from scratch.
                let _ = std::fs::remove_dir_all(&dir);
                return Err(JoinError::Ledger {
                    channel: id,
                    reason: e.to_string(),
                });
            }
        };
        if let Ok(mut map) = self.channels.write() {
            map.insert(id.clone(), channel.clone());
        }
        crate::metrics::get().ledger_height.set(
            &[&id],
            i64::try_from(channel.ledger().height()).unwrap_or(i64::MAX),
        );
        tracing::info!(channel = %id, "joined channel");
        self.start_channel(channel.clone());
        Ok(channel)
    }

    fn chaincode_definitions(
        &self,
        channel: &str,
    ) -> Result<BTreeMap<String, ChaincodeDefinition>, PeerError> {
        let mut out = BTreeMap::new();
        for spec in self
            .config
            .chaincodes
            .iter()
            .filter(|c| c.channel == channel)
        {
            let endorsement = match spec.endorsement_policy.as_deref() {
                None => EndorsementPolicy::ChannelPolicy("/Channel/Application/Endorsement".into()),
                Some(path) if path.starts_with('/') => {
                    EndorsementPolicy::ChannelPolicy(path.into())
                }
                Some(rule) => EndorsementPolicy::Signature(
                    gridledger_channels::policy::parse(rule).map_err(|e| PeerError::Channel {
                        channel: channel.into(),
                        reason: format!("chaincode {}: {e}", spec.name),
                    })?,
                ),
            };
            out.insert(
                spec.name.clone(),
                ChaincodeDefinition {
                    collections: Default::default(),
                    name: spec.name.clone(),
                    version: spec.version.clone(),
                    endorsement,
                },
            );
        }
        Ok(out)
    }

    /// Validates a serialized identity against a channel's MSPs at the current time.
    pub fn validate_identity(
        &self,
        channel: &Channel,
        serialized: &[u8],
    ) -> Result<Arc<Identity>, gridledger_identity::IdentityError> {
        channel
            .config()
            .msp_manager()
            .deserialize_identity(serialized, now_unix_secs())
    }
}

/// Creates the ledger of the channel whose genesis block is `block_bytes` under
/// `<data_dir>/channels/<id>/`, unless it exists. Returns the channel id.
pub fn join_channel(data_dir: &Path, block_bytes: &[u8]) -> Result<String, String> {
    let (block, config) = genesis_config(block_bytes)?;
    let id = config.channel_id().to_owned();
    let dir = data_dir.join("channels").join(&id);
    if dir.exists() {
        // Joined before. A folder from before staged joins may lack block 0: write it.
        let ledger = Ledger::open(&dir, &id).map_err(|e| e.to_string())?;
        if ledger.height() == 0 {
            commit_genesis(&ledger, block)?;
        }
        return Ok(id);
    }
    create_ledger(data_dir, &id, block)?;
    Ok(id)
}

/// Decodes and checks a genesis block: block 0 carrying a valid channel configuration (a
/// CONFIG envelope with an Application group, as Fabric's cscc requires).
fn genesis_config(block_bytes: &[u8]) -> Result<(common::Block, ChannelConfig), String> {
    let block =
        common::Block::decode(block_bytes).map_err(|e| format!("not a common.Block: {e}"))?;
    let number = block.header.as_ref().map_or(u64::MAX, |h| h.number);
    if number != 0 {
        return Err(format!("block {number} is not a genesis block"));
    }
    let config =
        ChannelConfig::from_block(&block).map_err(|e| format!("not a valid config block: {e}"))?;
    Ok((block, config))
}

/// Writes block 0, with Fabric's all-valid transactions filter, to an empty ledger.
fn commit_genesis(ledger: &Ledger, mut block: common::Block) -> Result<(), String> {
    set_transactions_filter(&mut block, &[0]);
    ledger
        .commit_block(&block, &gridledger_ledger::BlockUpdates { txs: Vec::new() })
        .map_err(|e| format!("write genesis block: {e}"))
}

/// Creates channel `id`'s ledger with its genesis block in a staging folder, then renames it
/// to `<data_dir>/channels/<id>/`: the final folder exists only with block 0 in it.
fn create_ledger(data_dir: &Path, id: &str, block: common::Block) -> Result<(), String> {
    let channels = data_dir.join("channels");
    let staging = channels.join(format!("{STAGING_PREFIX}{id}"));
    let dir = channels.join(id);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .map_err(|e| format!("remove the unfinished join {}: {e}", staging.display()))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| format!("create {}: {e}", staging.display()))?;
    let written = Ledger::open(&staging, id)
        .map_err(|e| e.to_string())
        .and_then(|ledger| commit_genesis(&ledger, block));
    // The ledger is closed here: the folder can move.
    let moved = written.and_then(|()| {
        std::fs::rename(&staging, &dir)
            .map_err(|e| format!("move {} to {}: {e}", staging.display(), dir.display()))
    });
    if moved.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    moved
}

/// The configuration in force at the ledger's tip: the config block named by the tip's
/// last-config index (block 0 when the metadata does not say).
pub fn latest_config(ledger: &Ledger) -> Result<ChannelConfig, String> {
    let height = ledger.height();
    if height == 0 {
        return Err("ledger is empty".into());
    }
    let tip = ledger
        .block(height - 1)
        .map_err(|e| e.to_string())?
        .ok_or("tip block missing")?;
    let index = last_config_index(&tip).unwrap_or(0);
    let block = ledger
        .block(index)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("config block {index} missing"))?;
    ChannelConfig::from_block(&block).map_err(|e| format!("config block {index}: {e}"))
}

/// The last-config index from a block's SIGNATURES metadata (Fabric 2.x) or LAST_CONFIG slot.
pub fn last_config_index(block: &common::Block) -> Option<u64> {
    let slots = &block.metadata.as_ref()?.metadata;
    let from_signatures = slots
        .first()
        .and_then(|b| common::Metadata::decode(b.as_slice()).ok())
        .and_then(|m| common::OrdererBlockMetadata::decode(m.value.as_slice()).ok())
        .and_then(|o| o.last_config.map(|l| l.index));
    from_signatures.or_else(|| {
        slots
            .get(1)
            .and_then(|b| common::Metadata::decode(b.as_slice()).ok())
            .and_then(|m| common::LastConfig::decode(m.value.as_slice()).ok())
            .map(|l| l.index)
    })
}

/// Reads the local MSP of organization `msp_id` from its MSP folder `dir`. A signing
/// certificate the MSP does not accept (another organization's CA, or out of its validity
/// window) is logged, not refused: the folder still decides who administers the peer.
fn local_msp(msp_id: &str, dir: &Path, signer: &SigningIdentity) -> Result<MspManager, PeerError> {
    let err = |source| PeerError::LocalMsp {
        dir: dir.display().to_string(),
        source,
    };
    let config = gridledger_identity::load_msp_dir(msp_id, dir).map_err(err)?;
    let msp = Msp::from_fabric_config(&config).map_err(err)?;
    let manager = MspManager::new([msp]);
    if let Err(e) = manager.deserialize_identity(signer.serialized(), now_unix_secs()) {
        tracing::warn!(msp_dir = %dir.display(), error = %e, "the peer's own signing certificate is not valid in its local MSP");
    }
    Ok(manager)
}

/// Wall-clock seconds, for validating identities of incoming requests (not for block
/// validation, which uses transaction timestamps).
pub fn now_unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes the TRANSACTIONS_FILTER metadata slot (raw bytes, one validation code per
/// transaction), allocating Fabric's five metadata slots when missing.
pub fn set_transactions_filter(block: &mut common::Block, codes: &[u8]) {
    let metadata = block.metadata.get_or_insert_with(Default::default);
    if metadata.metadata.len() < 5 {
        metadata.metadata.resize(5, Vec::new());
    }
    metadata.metadata[common::BlockMetadataIndex::TransactionsFilter as usize] = codes.to_vec();
}
