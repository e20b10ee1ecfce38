//! `gridledger bench validate`: a committing peer's validation and commit alone, measured by
//! replaying pre-built blocks of `basic` CreateAsset transactions through the committer.
//!
//! Everything happens in a scratch folder, with no network and no process but this one:
//!
//! 1. Crypto material as `gridledger up` makes it (`material::generate`): OrdererMSP with
//!    `orderer0`, RetailerMSP with `peer0.retailer`, its `Admin` and its client `User1`.
//! 2. The genesis block of channel `bench` (RetailerMSP the one application organization,
//!    orderer0 its consenter), built from a channel file as `up` builds `market`'s.
//! 3. A peer (`gridledger_peer::node::Peer`, the peer process's own type) joins the channel.
//!    `basic` is defined through the lifecycle as the organization's admin does it with
//!    `gridledger chaincode deploy`: the builtin package installed with `InstallChaincode`,
//!    then `ApproveChaincodeDefinitionForMyOrg` and `CommitChaincodeDefinition` (policy
//!    `OutOf(1, 'RetailerMSP.peer')`), each endorsed by the peer, ordered into its own block
//!    signed by orderer0 and committed. Validation then reads the definition from `_lifecycle`
//!    in the ledger, as on every peer.
//! 4. Not timed: `--blocks` × `--block-size` transactions, each a proposal signed by User1 for
//!    `CreateAsset` of a fresh asset id, endorsed by that peer's endorser (simulation and
//!    signature), assembled into a transaction exactly as the Gateway assembles it and signed
//!    by User1; then cut into blocks that orderer0 signs, chained after the lifecycle blocks.
//! 5. Timed, `--repeat` times, each on a fresh ledger (a new peer data folder that joins the
//!    genesis block and commits the lifecycle blocks untimed): every block through
//!    `gridledger_peer::committer::commit_block_timed`, the committer's own path for a block
//!    the ordering service delivered — orderer signatures and hash chain, each transaction's
//!    creator signature, endorsement signatures and policy (in parallel across the block),
//!    MVCC, then one durable redb write of the block, its state updates and indexes.
//!
//! Reported: transactions and blocks per second per run and their medians, the per-block
//! validation and commit times (medians), the validation codes of the replayed blocks (all
//! must be VALID; any other code is reported and fails the command), and the process's peak
//! resident memory (VmHWM, which includes building the blocks).

use anyhow::{Context, anyhow, bail, ensure};
use gridledger_identity::SigningIdentity;
use gridledger_identity::material::{self, CryptoConfig};
use gridledger_orderer::block::{NONCE_LEN, RaftBlockMetadata, assemble_block, sign_block};
use gridledger_peer::PeerConfig;
use gridledger_peer::committer::{self, CommitPhases};
use gridledger_peer::endorser::{self, UnpackedProposal};
use gridledger_peer::gateway;
use gridledger_peer::lifecycle;
use gridledger_peer::node::{Channel, Peer};
use gridledger_proto::lifecycle as lc;
use gridledger_proto::protos::TxValidationCode;
use gridledger_proto::{block_header_hash, common, prost_types, protos};
use prost::Message;
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The channel the blocks belong to.
const CHANNEL: &str = "bench";
/// The chaincode the transactions invoke, and its definition.
const CHAINCODE: &str = "basic";
const CHAINCODE_VERSION: &str = "1.0";
const ENDORSEMENT_POLICY: &str = "OutOf(1, 'RetailerMSP.peer')";
/// The organizations and identities of the scratch network.
const ORDERER_MSP: &str = "OrdererMSP";
const ORDERER: &str = "orderer0";
const PEER_MSP: &str = "RetailerMSP";
const PEER: &str = "peer0.retailer";
const CLIENT: &str = "User1";
const ADMIN: &str = "Admin";
/// Most transactions the command builds (memory: a few KiB each, twice over while replaying).
const MAX_TRANSACTIONS: usize = 1_000_000;

/// `gridledger bench validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Blocks replayed in each run.
    #[arg(long, default_value_t = 20)]
    pub blocks: usize,
    /// Transactions in each block.
    #[arg(long, default_value_t = 500)]
    pub block_size: usize,
    /// Runs, each on a fresh ledger (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Folder to create the scratch network and ledgers in (removed afterwards); default the
    /// system's temporary folder. Its file system decides what the ledger's fsync costs: a
    /// tmpfs makes it free, unlike a peer's disk.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark.
pub fn run(args: &ValidateArgs) -> anyhow::Result<()> {
    ensure!(args.blocks >= 1, "--blocks must be at least 1");
    ensure!(args.block_size >= 1, "--block-size must be at least 1");
    ensure!(args.repeat >= 1, "--repeat must be at least 1");
    let transactions = args
        .blocks
        .checked_mul(args.block_size)
        .filter(|&n| n <= MAX_TRANSACTIONS)
        .with_context(|| {
            format!("--blocks × --block-size must be at most {MAX_TRANSACTIONS} transactions")
        })?;
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let scratch = Scratch::create(&parent)?;

    let build_started = Instant::now();
    let mut bench = Workbench::create(scratch.path(), args.block_size)?;
    let envelopes = bench.endorse_creates(transactions)?;
    let blocks = bench.seal(envelopes, args.block_size)?;
    bench.close_builder();
    let build_seconds = build_started.elapsed().as_secs_f64();
    if !args.json {
        eprintln!(
            "[bench validate] built {} blocks of {} transactions in {build_seconds:.1} s; replaying",
            blocks.len(),
            args.block_size
        );
    }

    let mut runs = Vec::with_capacity(args.repeat);
    for run in 0..args.repeat {
        let replay = bench.replay(&blocks, run)?;
        if !args.json {
            let (validate, commit) = replay.phase_medians_ms();
            eprintln!(
                "[bench validate] run {}: {} tx in {:.3} s = {:.0} tx/s ({:.1} blocks/s); per block: validate {validate:.1} ms, commit {commit:.1} ms (medians)",
                run + 1,
                transactions,
                replay.elapsed.as_secs_f64(),
                replay.tx_per_s(transactions),
                replay.blocks_per_s(),
            );
        }
        runs.push(replay);
    }
    let report = Report::new(args, transactions, build_seconds, &runs)?;
    if args.json {
        println!("{}", serde_json::to_string(&report.json())?);
    } else {
        report.print();
    }
    let invalid: u64 = report
        .codes
        .iter()
        .filter(|(code, _)| code.as_str() != TxValidationCode::Valid.as_str_name())
        .map(|(_, n)| n)
        .sum();
    ensure!(
        invalid == 0,
        "{invalid} replayed transactions were not VALID: {:?}",
        report.codes
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The scratch network

/// A folder removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn create(parent: &Path) -> anyhow::Result<Scratch> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = parent.join(format!(
            "gridledger-bench-validate-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The crypto material's folder of organization `msp_id`, relative to the scratch folder.
fn org_dir(msp_id: &str) -> String {
    format!("crypto/organizations/{msp_id}")
}

/// The scratch network, the peer that endorses while the blocks are built, and the chain
/// built so far.
struct Workbench {
    root: PathBuf,
    genesis: Vec<u8>,
    /// The lifecycle blocks that define `basic` (numbers 1 and 2), replayed untimed.
    setup: Vec<common::Block>,
    client: SigningIdentity,
    orderer: SigningIdentity,
    /// The peer that endorses (and committed the setup blocks); `None` once closed.
    builder: Option<(Arc<Peer>, Arc<Channel>)>,
    /// Number and previous header hash of the next block to seal.
    next_number: u64,
    previous_hash: Vec<u8>,
}

impl Workbench {
    /// Generates the crypto material and the genesis block in `root`, opens the building peer
    /// and defines `basic` through the lifecycle. `block_size` becomes the channel's
    /// `max_message_count`, as an orderer cutting such blocks would have it.
    fn create(root: &Path, block_size: usize) -> anyhow::Result<Workbench> {
        let crypto: CryptoConfig = toml::from_str(&format!(
            "validity_days = 30\n\n\
             [[organizations]]\nmsp_id = \"{ORDERER_MSP}\"\norderers = [{{ name = \"{ORDERER}\" }}]\n\n\
             [[organizations]]\nmsp_id = \"{PEER_MSP}\"\npeers = [{{ name = \"{PEER}\" }}]\n\
             admins = [\"{ADMIN}\"]\nusers = [{{ name = \"{CLIENT}\" }}]\n"
        ))
        .context("the scratch network's crypto config")?;
        material::generate(&crypto, &root.join("crypto"), crate::now_unix_secs())
            .context("generating crypto material")?;
        let genesis = genesis_block(root, block_size)?;

        let identity = |msp_id: &str, dir: String| {
            let base = root.join(org_dir(msp_id)).join(dir);
            SigningIdentity::load(
                msp_id,
                &base.join("msp/signcerts/cert.pem"),
                &base.join("msp/keystore/key.pem"),
            )
            .with_context(|| format!("loading the identity in {}", base.display()))
        };
        let client = identity(PEER_MSP, format!("users/{CLIENT}"))?;
        let admin = identity(PEER_MSP, format!("users/{ADMIN}"))?;
        let orderer = identity(ORDERER_MSP, format!("orderers/{ORDERER}"))?;

        let (peer, channel) = open_peer(root, &root.join("builder"), &genesis)?;
        let genesis_block = common::Block::decode(genesis.as_slice())
            .context("decoding the genesis block just built")?;
        let genesis_header = genesis_block
            .header
            .as_ref()
            .context("the genesis block has no header")?;
        let mut bench = Workbench {
            root: root.to_path_buf(),
            previous_hash: block_header_hash(genesis_header).to_vec(),
            next_number: 1,
            genesis,
            setup: Vec::new(),
            client,
            orderer,
            builder: Some((peer, channel)),
        };
        bench.define_chaincode(&admin)?;
        Ok(bench)
    }

    fn builder(&self) -> anyhow::Result<&(Arc<Peer>, Arc<Channel>)> {
        self.builder
            .as_ref()
            .context("the building peer is already closed")
    }

    /// Defines `basic` through the lifecycle, as `gridledger chaincode deploy` does: install
    /// the builtin package on the peer, approve for RetailerMSP, commit — each ordered into its
    /// own block, committed on the building peer and kept for the replays.
    fn define_chaincode(&mut self, admin: &SigningIdentity) -> anyhow::Result<()> {
        let label = format!("{CHAINCODE}_{CHAINCODE_VERSION}");
        let package = lifecycle::package::build_builtin(&label, CHAINCODE)
            .context("building the builtin package")?;
        let (peer, _) = self.builder()?.clone();
        let install = lc::InstallChaincodeArgs {
            chaincode_install_package: package,
        };
        let proposal = signed_proposal(
            admin,
            "",
            lifecycle_name(),
            vec![b"InstallChaincode".to_vec(), install.encode_to_vec()],
        )?;
        let unpacked = endorser::unpack(&proposal).map_err(|e| anyhow!("{e}"))?;
        let response = peer
            .lifecycle_local(&unpacked)
            .map_err(|e| anyhow!("InstallChaincode: {e}"))?;
        ensure!(
            response.status < 400,
            "InstallChaincode failed: {}",
            response.message
        );
        let installed = lc::InstallChaincodeResult::decode(response.payload.as_slice())
            .context("decoding InstallChaincodeResult")?;

        let definition = lifecycle::Definition {
            sequence: 1,
            name: CHAINCODE.into(),
            version: CHAINCODE_VERSION.into(),
            endorsement_plugin: "escc".into(),
            validation_plugin: "vscc".into(),
            validation_parameter: lifecycle::application_policy(ENDORSEMENT_POLICY)
                .map_err(|e| anyhow!("endorsement policy {ENDORSEMENT_POLICY:?}: {e}"))?,
            collections: None,
            init_required: false,
        };
        let approval = lc::ApproveChaincodeDefinitionForMyOrgArgs {
            sequence: definition.sequence,
            name: definition.name.clone(),
            version: definition.version.clone(),
            endorsement_plugin: definition.endorsement_plugin.clone(),
            validation_plugin: definition.validation_plugin.clone(),
            validation_parameter: definition.validation_parameter.clone(),
            collections: definition.collections.clone(),
            init_required: definition.init_required,
            source: Some(lc::ChaincodeSource {
                r#type: Some(lc::chaincode_source::Type::LocalPackage(
                    lc::chaincode_source::Local {
                        package_id: installed.package_id,
                    },
                )),
            }),
        };
        for (function, arg) in [
            (
                "ApproveChaincodeDefinitionForMyOrg",
                approval.encode_to_vec(),
            ),
            ("CommitChaincodeDefinition", definition.encode_to_vec()),
        ] {
            let envelope = self.endorsed_transaction(
                admin,
                lifecycle_name(),
                vec![function.as_bytes().to_vec(), arg],
            )?;
            let block = self.seal_block(vec![envelope]);
            let (_, channel) = self.builder()?;
            committer::commit_block(channel, block.clone())
                .map_err(|e| anyhow!("committing the {function} block: {e}"))?;
            let code = committed_codes(channel, block_number(&block)?)?;
            ensure!(
                code.get(TxValidationCode::Valid.as_str_name()) == Some(&1),
                "the {function} transaction was not valid: {code:?}"
            );
            self.setup.push(block);
        }
        let (_, channel) = self.builder()?;
        ensure!(
            channel.chaincodes().contains_key(CHAINCODE),
            "{CHAINCODE} is not defined on the channel after its lifecycle commit"
        );
        Ok(())
    }

    /// A transaction envelope of `signer` invoking `chaincode` with `args`, endorsed by the
    /// building peer, assembled as the Gateway does and signed by `signer`.
    fn endorsed_transaction(
        &self,
        signer: &SigningIdentity,
        chaincode: &str,
        args: Vec<Vec<u8>>,
    ) -> anyhow::Result<Vec<u8>> {
        let (peer, _) = self.builder()?;
        endorse(peer, signer, chaincode, args)
    }

    /// `count` CreateAsset transactions of User1 with asset ids `asset-0000000` …, endorsed on
    /// every core.
    fn endorse_creates(&self, count: usize) -> anyhow::Result<Vec<Vec<u8>>> {
        let (peer, _) = self.builder()?;
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .clamp(1, count.max(1));
        let chunk = count.div_ceil(threads).max(1);
        let client = &self.client;
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..count)
                .step_by(chunk)
                .map(|start| {
                    let end = (start + chunk).min(count);
                    scope.spawn(move || {
                        (start..end)
                            .map(|i| {
                                let id = format!("asset-{i:07}");
                                let args = ["CreateAsset", &id, "blue", "5", "bench", "100"]
                                    .iter()
                                    .map(|a| a.as_bytes().to_vec())
                                    .collect();
                                endorse(peer, client, CHAINCODE, args)
                                    .with_context(|| format!("endorsing CreateAsset {id}"))
                            })
                            .collect::<anyhow::Result<Vec<_>>>()
                    })
                })
                .collect();
            let mut out = Vec::with_capacity(count);
            for worker in workers {
                match worker.join() {
                    Ok(envelopes) => out.extend(envelopes?),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            Ok(out)
        })
    }

    /// Cuts `envelopes` into blocks of `block_size`, each signed by orderer0 and chained after
    /// the blocks sealed before.
    fn seal(
        &mut self,
        envelopes: Vec<Vec<u8>>,
        block_size: usize,
    ) -> anyhow::Result<Vec<common::Block>> {
        ensure!(block_size >= 1, "a block holds at least one transaction");
        let mut blocks = Vec::with_capacity(envelopes.len().div_ceil(block_size));
        let mut envelopes = envelopes.into_iter().peekable();
        while envelopes.peek().is_some() {
            let batch: Vec<Vec<u8>> = envelopes.by_ref().take(block_size).collect();
            blocks.push(self.seal_block(batch));
        }
        Ok(blocks)
    }

    /// The next block of the chain with `envelopes`, signed by orderer0 as its orderer does
    /// (last config: the genesis block).
    fn seal_block(&mut self, envelopes: Vec<Vec<u8>>) -> common::Block {
        let mut block = assemble_block(
            self.next_number,
            std::mem::take(&mut self.previous_hash),
            envelopes,
        );
        let mut nonce = [0u8; NONCE_LEN];
        // A nonce only makes the signature header unique; a failed draw leaves zeros, which
        // validation accepts just the same.
        let _ = SystemRandom::new().fill(&mut nonce);
        sign_block(
            &mut block,
            &self.orderer,
            0,
            &RaftBlockMetadata::default(),
            &nonce,
        );
        let header = block.header.clone().unwrap_or_default();
        self.previous_hash = block_header_hash(&header).to_vec();
        self.next_number += 1;
        block
    }

    /// Closes the building peer (its ledger and endorser are not needed for the replays).
    fn close_builder(&mut self) {
        self.builder = None;
        let _ = std::fs::remove_dir_all(self.root.join("builder"));
    }

    /// Replays `blocks` on a fresh ledger: a new peer data folder joins the genesis block and
    /// commits the setup blocks untimed, then every block of `blocks` goes through the
    /// committer, timed.
    fn replay(&self, blocks: &[common::Block], run: usize) -> anyhow::Result<Replay> {
        let data_dir = self.root.join(format!("replay-{run}"));
        let (peer, channel) = open_peer(&self.root, &data_dir, &self.genesis)?;
        for block in &self.setup {
            committer::commit_block(&channel, block.clone())
                .map_err(|e| anyhow!("committing a lifecycle block: {e}"))?;
        }
        let first = channel.ledger().height();
        // Copied before the clock starts: the committer takes each block by value.
        let owned = blocks.to_vec();
        let mut phases = Vec::with_capacity(owned.len());
        let started = Instant::now();
        for block in owned {
            let number = block_number(&block)?;
            phases.push(
                committer::commit_block_timed(&channel, block)
                    .map_err(|e| anyhow!("block {number} refused: {e}"))?,
            );
        }
        let elapsed = started.elapsed();
        let mut codes = BTreeMap::new();
        for number in first..channel.ledger().height() {
            for (code, n) in committed_codes(&channel, number)? {
                *codes.entry(code).or_insert(0) += n;
            }
        }
        drop(channel);
        drop(peer);
        let _ = std::fs::remove_dir_all(&data_dir);
        Ok(Replay {
            elapsed,
            phases,
            codes,
        })
    }
}

/// `_lifecycle`, the chaincode name of lifecycle proposals.
fn lifecycle_name() -> &'static str {
    gridledger_peer::validation::LIFECYCLE_NAMESPACE
}

/// Writes the channel file of `bench` in `root` and returns its genesis block.
fn genesis_block(root: &Path, block_size: usize) -> anyhow::Result<Vec<u8>> {
    let o = org_dir(ORDERER_MSP);
    let p = org_dir(PEER_MSP);
    // The addresses are never dialled: nothing here runs a server or a committer task.
    let text = format!(
        r#"name = "{CHANNEL}"

[orderer]
type = "etcdraft"
max_message_count = {block_size}

[[orderer.organizations]]
msp_id = "{ORDERER_MSP}"
msp_dir = "{o}/msp"
endpoints = ["127.0.0.1:7050"]

[[orderer.consenters]]
host = "127.0.0.1"
port = 7050
client_tls_cert = "{o}/orderers/{ORDERER}/tls/server.crt"
server_tls_cert = "{o}/orderers/{ORDERER}/tls/server.crt"

[[organizations]]
msp_id = "{PEER_MSP}"
msp_dir = "{p}/msp"
anchor_peers = ["127.0.0.1:7051"]
"#
    );
    std::fs::write(root.join(format!("{CHANNEL}.toml")), &text)
        .context("writing the channel file")?;
    let spec = gridledger_channels::config::ChannelSpec::parse(&text)
        .context("the scratch channel file")?;
    let config = spec
        .to_config(root)
        .context("building the channel config")?;
    let block = gridledger_channels::genesis::genesis_block(
        CHANNEL,
        config,
        prost_types::Timestamp {
            seconds: crate::now_unix_secs(),
            nanos: 0,
        },
    );
    Ok(block.encode_to_vec())
}

/// Opens peer0.retailer with its data in `data_dir` and joins it to the channel of `genesis`,
/// as a peer joins at run time (cscc `JoinChain`).
fn open_peer(
    root: &Path,
    data_dir: &Path,
    genesis: &[u8],
) -> anyhow::Result<(Arc<Peer>, Arc<Channel>)> {
    let p = root.join(org_dir(PEER_MSP));
    let node = p.join("peers").join(PEER);
    let abs = |path: PathBuf| path.display().to_string();
    // The listen address is never bound: the peer's server is not started.
    let text = format!(
        "name = \"{PEER}\"\nmsp_id = \"{PEER_MSP}\"\nlisten = \"127.0.0.1:7051\"\n\
         data_dir = \"{}\"\nsigning_cert = \"{}\"\nsigning_key = \"{}\"\n\
         tls_cert = \"{}\"\ntls_key = \"{}\"\nmsp_dir = \"{}\"\n",
        abs(data_dir.to_path_buf()),
        abs(node.join("msp/signcerts/cert.pem")),
        abs(node.join("msp/keystore/key.pem")),
        abs(node.join("tls/server.crt")),
        abs(node.join("tls/server.key")),
        abs(p.join("msp")),
    );
    let config = PeerConfig::parse(&text, root).context("the scratch peer's config")?;
    let peer = Peer::open(config).context("opening the peer")?;
    let channel = peer
        .join(genesis)
        .map_err(|e| anyhow!("joining channel {CHANNEL}: {e}"))?;
    Ok((peer, channel))
}

/// A proposal of `args` to `chaincode` on `channel`, signed by `signer`, built as the SDK's
/// clients build theirs.
fn signed_proposal(
    signer: &SigningIdentity,
    channel: &str,
    chaincode: &str,
    args: Vec<Vec<u8>>,
) -> anyhow::Result<protos::SignedProposal> {
    let creator = gridledger_sdk::Signer::serialized_identity(signer);
    let (signed, _) = gridledger_sdk::sign_proposal(
        signer,
        &creator,
        &gridledger_sdk::ProposalSpec {
            channel,
            chaincode,
            args,
            transient: BTreeMap::new(),
            is_init: false,
            timestamp: std::time::SystemTime::now(),
        },
    )
    .map_err(|e| anyhow!("{e}"))?;
    Ok(signed)
}

/// Proposes `args` to `chaincode` on the channel as `signer`, has `peer` endorse it, and
/// returns the transaction envelope `signer` would submit.
fn endorse(
    peer: &Peer,
    signer: &SigningIdentity,
    chaincode: &str,
    args: Vec<Vec<u8>>,
) -> anyhow::Result<Vec<u8>> {
    let proposal = signed_proposal(signer, CHANNEL, chaincode, args)?;
    let unpacked = endorser::unpack(&proposal).map_err(|e| anyhow!("{e}"))?;
    let (_, response) = peer.endorse(&unpacked).map_err(|e| anyhow!("{e}"))?;
    let status = response.response.as_ref().map_or(0, |r| r.status);
    let endorsement = response.endorsement.clone().with_context(|| {
        format!(
            "the peer did not endorse (status {status}: {})",
            response
                .response
                .as_ref()
                .map_or("", |r| r.message.as_str())
        )
    })?;
    Ok(
        transaction_envelope(signer, &unpacked, response.payload, vec![endorsement])
            .encode_to_vec(),
    )
}

/// The transaction for an endorsed proposal, prepared as the Gateway prepares it and signed
/// by its client.
fn transaction_envelope(
    signer: &SigningIdentity,
    p: &UnpackedProposal,
    response_payload: Vec<u8>,
    endorsements: Vec<protos::Endorsement>,
) -> common::Envelope {
    let mut envelope = gateway::prepared_transaction(p, response_payload, endorsements);
    envelope.signature = signer.sign(&envelope.payload);
    envelope
}

fn block_number(block: &common::Block) -> anyhow::Result<u64> {
    Ok(block
        .header
        .as_ref()
        .context("a block has no header")?
        .number)
}

/// The validation codes of committed block `number`, counted by Fabric name.
fn committed_codes(channel: &Channel, number: u64) -> anyhow::Result<BTreeMap<String, u64>> {
    let block = channel
        .ledger()
        .block(number)
        .with_context(|| format!("reading committed block {number}"))?
        .with_context(|| format!("committed block {number} is missing"))?;
    let mut codes = BTreeMap::new();
    for tx in gridledger_peer::blocks::committed_transactions(&block) {
        let name = TxValidationCode::try_from(tx.validation_code).map_or_else(
            |_| format!("CODE_{}", tx.validation_code),
            |c| c.as_str_name().to_owned(),
        );
        *codes.entry(name).or_insert(0) += 1;
    }
    Ok(codes)
}

// ---------------------------------------------------------------------------------------------
// Results

/// One timed replay.
struct Replay {
    elapsed: Duration,
    phases: Vec<CommitPhases>,
    codes: BTreeMap<String, u64>,
}

impl Replay {
    fn tx_per_s(&self, transactions: usize) -> f64 {
        transactions as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    fn blocks_per_s(&self) -> f64 {
        self.phases.len() as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Median per-block validation and commit times, in milliseconds.
    fn phase_medians_ms(&self) -> (f64, f64) {
        let ms = |f: fn(&CommitPhases) -> Duration| {
            median(
                self.phases
                    .iter()
                    .map(|p| f(p).as_secs_f64() * 1e3)
                    .collect(),
            )
        };
        (ms(|p| p.validate), ms(|p| p.commit))
    }
}

/// The median of `values` (the upper one of an even count); 0 when empty.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// One run's figures.
struct RunSummary {
    tx_per_s: f64,
    blocks_per_s: f64,
    seconds: f64,
    /// Median per-block times, milliseconds.
    validate_ms: f64,
    commit_ms: f64,
}

/// What the command reports.
struct Report {
    blocks: usize,
    block_size: usize,
    transactions: usize,
    threads: usize,
    build_seconds: f64,
    runs: Vec<RunSummary>,
    codes: BTreeMap<String, u64>,
    peak_rss_mib: Option<f64>,
}

impl Report {
    fn new(
        args: &ValidateArgs,
        transactions: usize,
        build_seconds: f64,
        runs: &[Replay],
    ) -> anyhow::Result<Report> {
        let Some(first) = runs.first() else {
            bail!("no run to report");
        };
        // Validation is deterministic: every run of the same blocks must give the same codes.
        if let Some(other) = runs.iter().find(|r| r.codes != first.codes) {
            bail!(
                "runs over the same blocks gave different validation codes: {:?} and {:?}",
                first.codes,
                other.codes
            );
        }
        Ok(Report {
            blocks: args.blocks,
            block_size: args.block_size,
            transactions,
            threads: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            build_seconds,
            runs: runs
                .iter()
                .map(|r| {
                    let (validate_ms, commit_ms) = r.phase_medians_ms();
                    RunSummary {
                        tx_per_s: r.tx_per_s(transactions),
                        blocks_per_s: r.blocks_per_s(),
                        seconds: r.elapsed.as_secs_f64(),
                        validate_ms,
                        commit_ms,
                    }
                })
                .collect(),
            codes: first.codes.clone(),
            peak_rss_mib: peak_rss_kib().map(|k| k as f64 / 1024.0),
        })
    }

    fn column(&self, f: fn(&RunSummary) -> f64) -> Vec<f64> {
        self.runs.iter().map(f).collect()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "blocks": self.blocks,
            "block_size": self.block_size,
            "transactions": self.transactions,
            "threads": self.threads,
            "build_s": self.build_seconds,
            "repeats": self.column(|r| r.tx_per_s),
            "tx_per_s": median(self.column(|r| r.tx_per_s)),
            "blocks_per_s": median(self.column(|r| r.blocks_per_s)),
            "seconds": self.column(|r| r.seconds),
            "validate_ms_median": median(self.column(|r| r.validate_ms)),
            "commit_ms_median": median(self.column(|r| r.commit_ms)),
            "validate_ms_per_run": self.column(|r| r.validate_ms),
            "commit_ms_per_run": self.column(|r| r.commit_ms),
            "codes": self.codes,
            "peak_rss_mib": self.peak_rss_mib,
        })
    }

    fn print(&self) {
        println!(
            "bench validate: {} blocks × {} basic CreateAsset transactions (1 endorsement each), {} run(s) on a fresh ledger, {} validation thread(s)",
            self.blocks,
            self.block_size,
            self.runs.len(),
            self.threads
        );
        println!(
            "{:>4} {:>10} {:>9} {:>9} {:>16} {:>14}",
            "run", "tx/s", "blocks/s", "seconds", "validate ms/blk", "commit ms/blk"
        );
        for (i, r) in self.runs.iter().enumerate() {
            println!(
                "{:>4} {:>10.0} {:>9.1} {:>9.3} {:>16.1} {:>14.1}",
                i + 1,
                r.tx_per_s,
                r.blocks_per_s,
                r.seconds,
                r.validate_ms,
                r.commit_ms
            );
        }
        println!(
            "median: {:.0} tx/s, {:.1} blocks/s; per block: validate {:.1} ms, commit {:.1} ms",
            median(self.column(|r| r.tx_per_s)),
            median(self.column(|r| r.blocks_per_s)),
            median(self.column(|r| r.validate_ms)),
            median(self.column(|r| r.commit_ms)),
        );
        let codes: Vec<String> = self.codes.iter().map(|(c, n)| format!("{c}={n}")).collect();
        println!("validation codes per run: {}", codes.join(", "));
        match self.peak_rss_mib {
            Some(mib) => println!(
                "peak RSS of this process (building included): {mib:.1} MiB; building took {:.1} s (not timed)",
                self.build_seconds
            ),
            None => println!("building took {:.1} s (not timed)", self.build_seconds),
        }
    }
}

/// This process's peak resident memory (VmHWM), in KiB; `None` where /proc does not say.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix("VmHWM:")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `envelope` with one bit of its first endorsement's signature flipped (inside `r`, so
    /// the DER stays well formed), then signed again by `client` — what a client submits when
    /// an endorser returned a bad signature. The envelope stays well formed and its creator
    /// signature valid.
    fn with_bad_endorsement(envelope: &[u8], client: &SigningIdentity) -> Vec<u8> {
        let envelope = common::Envelope::decode(envelope).unwrap();
        let mut payload = common::Payload::decode(envelope.payload.as_slice()).unwrap();
        let mut transaction = protos::Transaction::decode(payload.data.as_slice()).unwrap();
        let action = &mut transaction.actions[0];
        let mut action_payload =
            protos::ChaincodeActionPayload::decode(action.payload.as_slice()).unwrap();
        let endorsed = action_payload.action.as_mut().unwrap();
        endorsed.endorsements[0].signature[8] ^= 0x01;
        action.payload = action_payload.encode_to_vec();
        payload.data = transaction.encode_to_vec();
        let payload = payload.encode_to_vec();
        common::Envelope {
            signature: client.sign(&payload),
            payload,
        }
        .encode_to_vec()
    }

    #[test]
    fn a_replay_validates_every_transaction_and_reports_a_bad_endorsement() {
        let scratch = Scratch::create(&std::env::temp_dir()).unwrap();
        let mut bench = Workbench::create(scratch.path(), 4).unwrap();
        let mut envelopes = bench.endorse_creates(6).unwrap();
        envelopes[4] = with_bad_endorsement(&envelopes[4], &bench.client);
        let blocks = bench.seal(envelopes, 4).unwrap();
        assert_eq!(blocks.len(), 2);
        bench.close_builder();

        let replay = bench.replay(&blocks, 0).unwrap();
        assert_eq!(
            replay.codes,
            BTreeMap::from([
                ("ENDORSEMENT_POLICY_FAILURE".to_owned(), 1),
                ("VALID".to_owned(), 5),
            ])
        );
        assert_eq!(replay.phases.len(), 2);

        // A second run starts from a fresh ledger: the same blocks commit again.
        let again = bench.replay(&blocks, 1).unwrap();
        assert_eq!(again.codes, replay.codes);
    }
}
