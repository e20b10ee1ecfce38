//! `gridledger ledger …`: read, inspect and verify ledgers kept in Fabric's block format —
//! Fabric's own (blocks fetched with `peer channel fetch` or qscc `GetBlockByNumber`) and
//! GridLedger's.
//!
//! - `inspect` decodes block files (`common.Block` bytes) into what an operator wants to see:
//!   per block its hashes, orderer signers and validation codes; per transaction its id, type,
//!   creator, chaincode, endorsers, validation code and read and write keys; for a config block
//!   the channel configuration it carries, read from Fabric's configtx tree as it is (so a
//!   config GridLedger would refuse still shows). A transaction that does not decode is shown
//!   with what did not decode; inspection never stops at one.
//! - `verify` replays a chain from its genesis block with nothing but the blocks and the CA
//!   certificates the user trusts: every data hash, header hash and previous-hash link is
//!   recomputed; every orderer signature (metadata slot 0, `/Channel/Orderer/BlockValidation`),
//!   creator signature and endorsement is verified with the channel's MSPs (NodeOU roles
//!   included); every tx-id binding is checked; and the transactions are re-validated in block
//!   order by the peer's validation core over an in-memory world state, so the recomputed
//!   validation codes can be compared with the recorded TRANSACTIONS_FILTER. `--blocks` reads
//!   block files; `--dir` reads the stored ledgers of stopped nodes and adds the checks only a
//!   stored ledger allows (its recorded hashes, tx-id index and world state): see [`stored`],
//!   which also holds `compare`. Both go through the one verifier, [`Replay`].
//!
//! Trust: the genesis config is authoritative for MSP ids, NodeOUs and policies; the
//! certificates in `--msp-dir` are what the user trusts. Each config MSP's root CAs are matched
//! by DER against them; a root missing from `--msp-dir` is an error unless `--trust-config`
//! says to trust the config's own CAs. The same rule applies to every later config block.
//!
//! Replay: each block is validated against the state the *recorded* codes produced, so one
//! tampered transaction is reported once, where it is, instead of making every later reader
//! of its keys look conflicting. Chaincode endorsement policies come from the `_lifecycle`
//! definitions committed in the chain (`namespaces/fields/<name>/ValidationInfo`), or from
//! `--chaincode NAME=POLICY` for chaincodes the chain does not define (GridLedger's peers
//! commit their definitions in `_lifecycle` in Fabric's layout too; only a `peer.toml`
//! bootstrap definition is missing from the chain); their private data collections are read
//! from the replayed `_lifecycle` state as a peer reads them, and private-data hashes expire
//! with their collection's `block_to_live` as on a peer. A transaction recorded invalid that
//! re-validation finds invalid with the same code is no fault of the chain: the authenticity
//! findings about it (signatures, tx-id binding) are notes, not problems.
//!
//! Not done here: reading a block range from a running peer or orderer; key-level endorsement
//! policies of private data (the validation core's limits, which then show as code
//! differences).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use gridledger_channels::config::{
    ACLS_KEY, ANCHOR_PEERS_KEY, APPLICATION_GROUP, BATCH_SIZE_KEY, BATCH_TIMEOUT_KEY,
    CAPABILITIES_KEY, CHANNEL_GROUP, CONSENSUS_TYPE_KEY, ChannelConfig, ConfigError, ENDPOINTS_KEY,
    ETCDRAFT, HASHING_ALGORITHM_KEY, MSP_KEY, ORDERER_GROUP,
};
use gridledger_channels::genesis::config_from_block;
use gridledger_channels::policy::{VerifiedSigners, parse, to_policy_string};
use gridledger_identity::Certificate;
use gridledger_peer::lifecycle::validation_definition;
use gridledger_peer::validation::{
    BLOCK_VALIDATION_POLICY, BlockContext, BlockRejected, ChaincodeDefinition, EndorsementPolicy,
    InMemoryState, LIFECYCLE_NAMESPACE, StateWrite, TxUpdates, hashed_key, hashed_namespace,
    validate_block, verify_block_signatures,
};
use gridledger_proto::common::{self, BlockMetadataIndex, HeaderType};
use gridledger_proto::prost::Message;
use gridledger_proto::prost_types::Timestamp;
use gridledger_proto::protos::{self, TxValidationCode};
use gridledger_proto::{
    block_data_hash, block_header_bytes, block_header_hash, compute_tx_id, etcdraft, kvrwset, msp,
    orderer, rwset,
};
use serde::Serialize;

mod stored;

// ---------------------------------------------------------------------------------------------
// Command line.

/// `gridledger ledger …`.
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Decode Fabric blocks: hashes, transactions, read and write keys, channel configuration.
    ///
    /// Per block its number, hashes, orderer signers and validation codes; per transaction its
    /// id, type, creator, chaincode, endorsers, validation code and read and write keys; for a
    /// config block the channel configuration. Reads block files (`*.pb`, `*.block`:
    /// `common.Block` bytes); reading a block range from a running peer or orderer is not
    /// supported yet.
    Inspect(InspectArgs),
    /// Verify a chain from its genesis block: hashes, signatures, tx ids, validation codes.
    ///
    /// Recomputes every data hash, header hash and previous-hash link, verifies every orderer,
    /// creator and endorser signature against the trusted CA certificates (NodeOU roles
    /// included), checks every tx-id binding, re-runs validation (MVCC included) in block
    /// order and compares the codes with the recorded ones. Exits non-zero when anything does
    /// not check.
    Verify(VerifyArgs),
    /// Compare two peers' stored ledgers: blocks, validation codes and world state.
    ///
    /// For every channel both hold, compares block by block up to the lower height (header
    /// hash, data, validation codes) and, at equal heights, the world state (a state hash,
    /// and the first differing key). A peer that is only behind is reported as lagging, not
    /// as diverging. The nodes must be stopped. Exits non-zero on divergence.
    Compare(stored::CompareArgs),
}

/// Arguments of `gridledger ledger inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A block file, or a folder of block files (`*.pb`, `*.block`), taken in block-number order.
    #[arg(long, value_name = "DIR_OR_FILE")]
    pub blocks: PathBuf,
    /// First block number to show.
    #[arg(long, value_name = "N")]
    pub from: Option<u64>,
    /// Last block number to show.
    #[arg(long, value_name = "N")]
    pub to: Option<u64>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `gridledger ledger verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A folder of block files (`*.pb`, `*.block`) holding the chain from block 0.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "dir",
        conflicts_with = "dir"
    )]
    pub blocks: Option<PathBuf>,
    /// Stored ledgers of stopped nodes: a network directory made by `gridledger up` (every
    /// node, every channel), one node's data directory (holding `channels/`), or one channel's
    /// directory (holding `ledger.redb`). Checks the hash chain, data hashes, orderer
    /// signatures, recorded validation codes and, on peers, the world state recomputed from
    /// the blocks. Trust: `--msp-dir` if given; else a network directory's `crypto/` CAs;
    /// else the genesis block's own configuration.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// A folder of trusted CA certificates (PEM; searched recursively, so a flat folder and a
    /// Fabric MSP folder both work). Which MSP each CA belongs to is read from the genesis
    /// config, whose root CAs are matched against these by DER.
    #[arg(long, value_name = "DIR", required_unless_present_any = ["trust_config", "dir"])]
    pub msp_dir: Option<PathBuf>,
    /// Trust the root CAs the channel config carries even when they are not in --msp-dir.
    #[arg(long)]
    pub trust_config: bool,
    /// Endorsement policy of a chaincode, for ledgers whose chaincodes are not defined through
    /// `_lifecycle` (e.g. GridLedger's): `basic="OutOf(1,'DSOMSP.peer','RetailerMSP.peer')"`
    /// or a channel policy path such as `basic=/Channel/Application/Endorsement`. Overrides a
    /// `_lifecycle` definition of the same name. Repeatable.
    #[arg(long, value_name = "NAME=POLICY")]
    pub chaincode: Vec<String>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `gridledger ledger` command.
pub fn run(cmd: LedgerCommand) -> anyhow::Result<()> {
    match cmd {
        LedgerCommand::Inspect(args) => inspect(&args)?,
        LedgerCommand::Verify(args) => match &args.dir {
            Some(dir) => stored::verify_dir(&args, dir)?,
            None => verify(&args)?,
        },
        LedgerCommand::Compare(args) => stored::compare(&args)?,
    }
    Ok(())
}

/// Writes a command's output to standard output.
fn stdout(text: &str) -> Result<(), LedgerToolError> {
    crate::print_out(text).map_err(|source| LedgerToolError::Io {
        path: PathBuf::from("<standard output>"),
        source,
    })
}

/// Why a ledger command could not do its work (as opposed to the problems `verify` reports
/// about the chain, which are its output). `Display` and `Error` are written by hand: the CLI
/// crate does not depend on `thiserror`.
#[derive(Debug)]
pub enum LedgerToolError {
    /// A file or folder could not be read.
    Io {
        /// What was being read.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The folder holds no block file.
    NoBlockFiles(PathBuf),
    /// A block file is not a `common.Block`.
    NotABlock {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        source: gridledger_proto::prost::DecodeError,
    },
    /// A block has no header, so it has no number.
    NoHeader(PathBuf),
    /// Two files hold the same block number.
    DuplicateBlock {
        /// The block number.
        number: u64,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// `--from`/`--to` select nothing.
    EmptyRange {
        /// The folder or file.
        path: PathBuf,
        /// First number asked for.
        from: u64,
        /// Last number asked for.
        to: u64,
    },
    /// `verify` needs the chain from block 0.
    NoGenesis {
        /// The folder.
        path: PathBuf,
        /// The lowest block number found.
        first: u64,
    },
    /// The genesis block does not carry a configuration GridLedger can validate against.
    Genesis(ConfigError),
    /// `--msp-dir` holds no certificate.
    EmptyMspDir(PathBuf),
    /// Config MSP roots are not among the trusted certificates.
    Untrusted(String),
    /// A `--chaincode` argument is malformed.
    ChaincodeArg {
        /// The argument as given.
        arg: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The validation core could not read its state (cannot happen with the in-memory state).
    Validation {
        /// The block number.
        number: u64,
        /// The core's error.
        source: BlockRejected,
    },
    /// Printing JSON failed.
    Json(serde_json::Error),
    /// `verify` found problems (they are in its output).
    Failed(usize),
    /// `verify --dir` or `compare` was given a folder that holds no ledger.
    NotALedgerDir(PathBuf),
    /// A network directory's `network.json` is unusable.
    NetworkFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `compare` found the ledgers diverging (the details are in its output).
    Diverged(usize),
}

impl std::fmt::Display for LedgerToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LedgerToolError::Io { path, source } => {
                write!(f, "reading {}: {source}", path.display())
            }
            LedgerToolError::NoBlockFiles(path) => {
                write!(
                    f,
                    "{} holds no block files (*.pb or *.block)",
                    path.display()
                )
            }
            LedgerToolError::NotABlock { path, source } => {
                write!(
                    f,
                    "{} is not a protobuf common.Block: {source}",
                    path.display()
                )
            }
            LedgerToolError::NoHeader(path) => {
                write!(f, "{} holds a block without a header", path.display())
            }
            LedgerToolError::DuplicateBlock {
                number,
                first,
                second,
            } => write!(
                f,
                "block {number} appears twice: in {} and in {}",
                first.display(),
                second.display()
            ),
            LedgerToolError::EmptyRange { path, from, to } => {
                write!(f, "no block numbered {from}..={to} in {}", path.display())
            }
            LedgerToolError::NoGenesis { path, first } => write!(
                f,
                "verify replays the chain from its genesis block, but the first block in {} is block {first}",
                path.display()
            ),
            LedgerToolError::Genesis(e) => {
                write!(
                    f,
                    "block 0 does not carry a usable channel configuration: {e}"
                )
            }
            LedgerToolError::EmptyMspDir(path) => {
                write!(f, "--msp-dir {} holds no PEM certificate", path.display())
            }
            LedgerToolError::Untrusted(roots) => write!(
                f,
                "the channel config trusts CAs that are not in --msp-dir ({roots}); add their certificates to --msp-dir, or pass --trust-config to trust the config's own CAs"
            ),
            LedgerToolError::ChaincodeArg { arg, reason } => {
                write!(f, "--chaincode {arg:?}: {reason}")
            }
            LedgerToolError::Validation { number, source } => {
                write!(f, "validating block {number}: {source}")
            }
            LedgerToolError::Json(e) => write!(f, "writing JSON: {e}"),
            LedgerToolError::Failed(n) => {
                write!(f, "ledger verification failed: {n} problem(s) found")
            }
            LedgerToolError::NotALedgerDir(path) => write!(
                f,
                "{} is not a ledger directory: expected a network directory made by `gridledger up` (network.json), a node's data directory (channels/<channel>/ledger.redb) or a channel directory (ledger.redb)",
                path.display()
            ),
            LedgerToolError::NetworkFile { path, reason } => {
                write!(f, "{}: {reason}", path.display())
            }
            LedgerToolError::Diverged(n) => {
                write!(f, "the ledgers diverge on {n} channel(s)")
            }
        }
    }
}

impl std::error::Error for LedgerToolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LedgerToolError::Io { source, .. } => Some(source),
            LedgerToolError::NotABlock { source, .. } => Some(source),
            LedgerToolError::Genesis(e) => Some(e),
            LedgerToolError::Validation { source, .. } => Some(source),
            LedgerToolError::Json(e) => Some(e),
            _ => None,
        }
    }
}

impl From<serde_json::Error> for LedgerToolError {
    fn from(e: serde_json::Error) -> LedgerToolError {
        LedgerToolError::Json(e)
    }
}

// ---------------------------------------------------------------------------------------------
// Loading blocks.

/// A block file and the number in its header; the block itself is read when it is needed, so
/// a long chain is never held in memory at once.
struct BlockFile {
    path: PathBuf,
    number: u64,
}

/// A block file and its decoded block.
struct LoadedBlock {
    path: PathBuf,
    block: common::Block,
}

/// `common.Block` with only its header decoded: the other fields are skipped, not copied.
#[derive(Clone, PartialEq, Message)]
struct BlockHeaderOnly {
    #[prost(message, optional, tag = "1")]
    header: Option<common::BlockHeader>,
}

fn is_block_file(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("pb") || e.eq_ignore_ascii_case("block"))
}

fn read_file(path: &Path) -> Result<Vec<u8>, LedgerToolError> {
    std::fs::read(path).map_err(|source| LedgerToolError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Lists one block file, or every block file of a folder, sorted by block number.
fn index_blocks(path: &Path) -> Result<Vec<BlockFile>, LedgerToolError> {
    let io = |source| LedgerToolError::Io {
        path: path.to_path_buf(),
        source,
    };
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| is_block_file(p))
            .collect();
        files.sort();
        files
    } else {
        std::fs::metadata(path).map_err(io)?;
        vec![path.to_path_buf()]
    };
    if files.is_empty() {
        return Err(LedgerToolError::NoBlockFiles(path.to_path_buf()));
    }
    let mut blocks = Vec::with_capacity(files.len());
    for file in files {
        let bytes = read_file(&file)?;
        let header = BlockHeaderOnly::decode(bytes.as_slice()).map_err(|source| {
            LedgerToolError::NotABlock {
                path: file.clone(),
                source,
            }
        })?;
        let number = header
            .header
            .ok_or_else(|| LedgerToolError::NoHeader(file.clone()))?
            .number;
        blocks.push(BlockFile { path: file, number });
    }
    blocks.sort_by_key(|b| b.number);
    for pair in blocks.windows(2) {
        if let [a, b] = pair {
            if a.number == b.number {
                return Err(LedgerToolError::DuplicateBlock {
                    number: a.number,
                    first: a.path.clone(),
                    second: b.path.clone(),
                });
            }
        }
    }
    Ok(blocks)
}

impl BlockFile {
    /// Reads and decodes the block.
    fn load(&self) -> Result<LoadedBlock, LedgerToolError> {
        let bytes = read_file(&self.path)?;
        let block = common::Block::decode(bytes.as_slice()).map_err(|source| {
            LedgerToolError::NotABlock {
                path: self.path.clone(),
                source,
            }
        })?;
        Ok(LoadedBlock {
            path: self.path.clone(),
            block,
        })
    }
}

fn block_header(block: &common::Block) -> common::BlockHeader {
    // `index_blocks` refuses headerless blocks; the default only keeps this total.
    block.header.clone().unwrap_or_default()
}

fn block_data(block: &common::Block) -> &[Vec<u8>] {
    block.data.as_ref().map_or(&[][..], |d| d.data.as_slice())
}

fn metadata_slot(block: &common::Block, index: BlockMetadataIndex) -> Option<&[u8]> {
    block
        .metadata
        .as_ref()
        .and_then(|m| m.metadata.get(index as usize))
        .map(Vec::as_slice)
}

/// The recorded validation codes (metadata slot 2, one byte per transaction).
fn recorded_codes(block: &common::Block) -> Vec<u8> {
    metadata_slot(block, BlockMetadataIndex::TransactionsFilter)
        .unwrap_or_default()
        .to_vec()
}

// ---------------------------------------------------------------------------------------------
// Decoding one transaction.

/// One namespace of a read-write set, decoded.
struct NsView {
    namespace: String,
    kv: kvrwset::KvrwSet,
    collections: Vec<(String, kvrwset::HashedRwSet)>,
}

/// The parts of an endorser transaction's single action.
struct EndorserView {
    endorsed: protos::ChaincodeEndorsedAction,
    chaincode: Option<protos::ChaincodeId>,
    function: Option<String>,
    rwset: Option<Vec<NsView>>,
}

/// A transaction decoded as far as its bytes allow.
#[derive(Default)]
struct TxView {
    envelope: Option<common::Envelope>,
    channel_header: Option<common::ChannelHeader>,
    signature_header: Option<common::SignatureHeader>,
    endorser: Option<EndorserView>,
    config: Option<common::Config>,
    /// The first part that did not decode.
    undecodable: Option<String>,
}

impl TxView {
    fn tx_id(&self) -> &str {
        self.channel_header
            .as_ref()
            .map_or("", |h| h.tx_id.as_str())
    }

    fn header_type(&self) -> Option<i32> {
        self.channel_header.as_ref().map(|h| h.r#type)
    }

    fn timestamp_secs(&self) -> u64 {
        self.channel_header
            .as_ref()
            .and_then(|h| h.timestamp.as_ref())
            .map_or(0, |t| u64::try_from(t.seconds).unwrap_or(0))
    }
}

fn decode_rwset(results: &[u8]) -> Result<Vec<NsView>, String> {
    let tx = rwset::TxReadWriteSet::decode(results).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(tx.ns_rwset.len());
    for ns in tx.ns_rwset {
        let kv = kvrwset::KvrwSet::decode(ns.rwset.as_slice())
            .map_err(|e| format!("namespace {}: {e}", ns.namespace))?;
        let mut collections = Vec::with_capacity(ns.collection_hashed_rwset.len());
        for coll in ns.collection_hashed_rwset {
            let hashed =
                kvrwset::HashedRwSet::decode(coll.hashed_rwset.as_slice()).map_err(|e| {
                    format!("collection {}/{}: {e}", ns.namespace, coll.collection_name)
                })?;
            collections.push((coll.collection_name, hashed));
        }
        out.push(NsView {
            namespace: ns.namespace,
            kv,
            collections,
        });
    }
    Ok(out)
}

/// The invoked function: the first argument of the chaincode input, when it is text.
fn invoked_function(chaincode_proposal_payload: &[u8]) -> Option<String> {
    let payload = protos::ChaincodeProposalPayload::decode(chaincode_proposal_payload).ok()?;
    let spec = protos::ChaincodeInvocationSpec::decode(payload.input.as_slice()).ok()?;
    let first = spec.chaincode_spec?.input?.args.into_iter().next()?;
    String::from_utf8(first).ok()
}

fn decode_endorser(data: &[u8], view: &mut TxView) {
    let fail = |view: &mut TxView, what: String| view.undecodable = Some(what);
    let tx = match protos::Transaction::decode(data) {
        Ok(tx) => tx,
        Err(e) => return fail(view, format!("transaction does not decode: {e}")),
    };
    let Some(action) = tx.actions.first() else {
        return fail(view, "the transaction has no action".to_string());
    };
    if tx.actions.len() > 1 {
        view.undecodable = Some(format!(
            "the transaction has {} actions (Fabric allows one); showing the first",
            tx.actions.len()
        ));
    }
    let payload = match protos::ChaincodeActionPayload::decode(action.payload.as_slice()) {
        Ok(p) => p,
        Err(e) => {
            return fail(
                view,
                format!("chaincode action payload does not decode: {e}"),
            );
        }
    };
    let Some(endorsed) = payload.action else {
        return fail(
            view,
            "the chaincode action payload has no action".to_string(),
        );
    };
    let mut endorser = EndorserView {
        chaincode: None,
        function: invoked_function(&payload.chaincode_proposal_payload),
        rwset: None,
        endorsed,
    };
    let response = protos::ProposalResponsePayload::decode(
        endorser.endorsed.proposal_response_payload.as_slice(),
    );
    let problem = match response {
        Err(e) => Some(format!("proposal response payload does not decode: {e}")),
        Ok(response) => match protos::ChaincodeAction::decode(response.extension.as_slice()) {
            Err(e) => Some(format!("chaincode action does not decode: {e}")),
            Ok(action) => {
                endorser.chaincode = action.chaincode_id;
                match decode_rwset(&action.results) {
                    Ok(rwset) => {
                        endorser.rwset = Some(rwset);
                        None
                    }
                    Err(e) => Some(format!("read-write set does not decode: {e}")),
                }
            }
        },
    };
    if endorser.chaincode.is_none() {
        // Fall back to the chaincode the proposal invoked (the header extension).
        endorser.chaincode = view.channel_header.as_ref().and_then(|h| {
            protos::ChaincodeHeaderExtension::decode(h.extension.as_slice())
                .ok()
                .and_then(|ext| ext.chaincode_id)
        });
    }
    view.endorser = Some(endorser);
    if problem.is_some() {
        view.undecodable = problem;
    }
}

/// Decodes one envelope of a block's data, as far as it goes.
fn decode_tx(bytes: &[u8]) -> TxView {
    let mut view = TxView::default();
    let envelope = match common::Envelope::decode(bytes) {
        Ok(e) => e,
        Err(e) => {
            view.undecodable = Some(format!("envelope does not decode: {e}"));
            return view;
        }
    };
    let payload = match common::Payload::decode(envelope.payload.as_slice()) {
        Ok(p) => p,
        Err(e) => {
            view.envelope = Some(envelope);
            view.undecodable = Some(format!("payload does not decode: {e}"));
            return view;
        }
    };
    view.envelope = Some(envelope);
    let Some(header) = payload.header else {
        view.undecodable = Some("the payload has no header".to_string());
        return view;
    };
    match common::ChannelHeader::decode(header.channel_header.as_slice()) {
        Ok(h) => view.channel_header = Some(h),
        Err(e) => {
            view.undecodable = Some(format!("channel header does not decode: {e}"));
            return view;
        }
    }
    match common::SignatureHeader::decode(header.signature_header.as_slice()) {
        Ok(h) => view.signature_header = Some(h),
        Err(e) => {
            view.undecodable = Some(format!("signature header does not decode: {e}"));
            return view;
        }
    }
    match view.header_type().map(HeaderType::try_from) {
        Some(Ok(HeaderType::EndorserTransaction)) => decode_endorser(&payload.data, &mut view),
        Some(Ok(HeaderType::Config)) => {
            match common::ConfigEnvelope::decode(payload.data.as_slice()) {
                Ok(env) => match env.config {
                    Some(config) => view.config = Some(config),
                    None => {
                        view.undecodable = Some("the config envelope has no config".to_string())
                    }
                },
                Err(e) => view.undecodable = Some(format!("config envelope does not decode: {e}")),
            }
        }
        _ => {}
    }
    view
}

/// The world-state writes of a decoded read-write set, exactly as the validation core applies
/// them: public writes under their namespace, private-data hashes under the collection's
/// derived namespace; a delete (or purge) has no value.
fn state_writes(rwset: &[NsView]) -> Vec<StateWrite> {
    let mut out = Vec::new();
    for ns in rwset {
        for write in &ns.kv.writes {
            out.push(StateWrite {
                namespace: ns.namespace.clone(),
                key: write.key.clone(),
                value: (!write.is_delete).then(|| write.value.clone()),
            });
        }
        for (collection, hashed) in &ns.collections {
            let namespace = hashed_namespace(&ns.namespace, collection);
            for write in &hashed.hashed_writes {
                out.push(StateWrite {
                    namespace: namespace.clone(),
                    key: hashed_key(&write.key_hash),
                    value: (!write.is_delete && !write.is_purge).then(|| write.value_hash.clone()),
                });
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Small renderings.

/// An identity as the bytes name it (not validated).
#[derive(Debug, Clone, Serialize)]
struct IdentityView {
    msp_id: String,
    subject: String,
}

impl std::fmt::Display for IdentityView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.msp_id, self.subject)
    }
}

fn identity_view(serialized: &[u8]) -> IdentityView {
    match msp::SerializedIdentity::decode(serialized) {
        Ok(id) => IdentityView {
            subject: Certificate::from_pem(&id.id_bytes)
                .map(|c| c.subject)
                .unwrap_or_else(|e| format!("<certificate does not parse: {e}>")),
            msp_id: id.mspid,
        },
        Err(e) => IdentityView {
            msp_id: String::new(),
            subject: format!("<not a serialized identity: {e}>"),
        },
    }
}

/// The subject of a PEM certificate carried in a config, or why it has none.
fn cert_subject(pem: &[u8]) -> String {
    Certificate::from_pem(pem)
        .map(|c| c.subject)
        .unwrap_or_else(|e| format!("<not a certificate: {e}>"))
}

fn header_type_name(header_type: i32) -> String {
    HeaderType::try_from(header_type)
        .map(|t| t.as_str_name().to_string())
        .unwrap_or_else(|_| format!("UNKNOWN({header_type})"))
}

fn code_name(code: u8) -> &'static str {
    TxValidationCode::try_from(i32::from(code)).map_or("UNKNOWN", |c| c.as_str_name())
}

/// A validation code with its name, e.g. `MVCC_READ_CONFLICT (11)`.
#[derive(Debug, Clone, Copy, Serialize)]
struct CodeView {
    code: u8,
    name: &'static str,
}

impl CodeView {
    fn new(code: u8) -> CodeView {
        CodeView {
            code,
            name: code_name(code),
        }
    }
}

impl std::fmt::Display for CodeView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.code)
    }
}

/// RFC 3339 in UTC with milliseconds, e.g. `2024-05-01T12:00:00.123Z`.
fn rfc3339(ts: &Timestamp) -> String {
    let (year, month, day) = gridledger_ledger::utc::civil_date(ts.seconds.div_euclid(86_400));
    let secs = ts.seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60,
        ts.nanos.clamp(0, 999_999_999) / 1_000_000
    )
}

/// `basic/asset1@5:0` (block 5, tx 0), or `@-` for a key read while absent.
fn version_text(version: Option<&kvrwset::Version>) -> String {
    version.map_or("-".to_string(), |v| format!("{}:{}", v.block_num, v.tx_num))
}

/// A tx id shortened for messages: its first 8 characters and an ellipsis.
fn short_id(tx_id: &str) -> String {
    if tx_id.chars().count() > 8 {
        format!("{}…", tx_id.chars().take(8).collect::<String>())
    } else {
        tx_id.to_string()
    }
}

/// A policy in Fabric's text forms: `OR('A.admin', …)` or `MAJORITY Admins`.
use crate::channel::render_policy;

fn policy_type_name(policy_type: i32) -> String {
    common::policy::PolicyType::try_from(policy_type)
        .map(|t| t.as_str_name().to_string())
        .unwrap_or_else(|_| format!("UNKNOWN({policy_type})"))
}

// ---------------------------------------------------------------------------------------------
// The channel configuration, read from the configtx tree as it is.

/// A channel configuration as `inspect` shows it.
#[derive(Debug, Serialize)]
struct ConfigReport {
    channel_id: String,
    sequence: u64,
    /// Why GridLedger's channel view refuses this config, when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    not_usable_by_gridledger: Option<String>,
    hashing_algorithm: Option<String>,
    capabilities: Vec<String>,
    orderer: Option<OrdererReport>,
    application: Option<ApplicationReport>,
    policies: Vec<PolicyReport>,
}

#[derive(Debug, Serialize)]
struct OrdererReport {
    consensus_type: String,
    consensus_state: String,
    consenters: Vec<String>,
    etcdraft_options: Option<RaftOptionsReport>,
    batch_size: Option<BatchSizeReport>,
    batch_timeout: Option<String>,
    capabilities: Vec<String>,
    organizations: Vec<OrgReport>,
}

#[derive(Debug, Serialize)]
struct RaftOptionsReport {
    tick_interval: String,
    election_tick: u32,
    heartbeat_tick: u32,
    max_inflight_blocks: u32,
    snapshot_interval_size: u32,
}

#[derive(Debug, Serialize)]
struct BatchSizeReport {
    max_message_count: u32,
    absolute_max_bytes: u32,
    preferred_max_bytes: u32,
}

#[derive(Debug, Serialize)]
struct ApplicationReport {
    capabilities: Vec<String>,
    organizations: Vec<OrgReport>,
    acls: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize)]
struct OrgReport {
    /// The group key under `/Channel/Orderer` or `/Channel/Application`.
    name: String,
    msp_id: String,
    root_certs: Vec<String>,
    intermediate_certs: Vec<String>,
    tls_root_certs: Vec<String>,
    admins: Vec<String>,
    revocation_lists: usize,
    node_ous: Option<NodeOusReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    endpoints: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    anchor_peers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct NodeOusReport {
    enable: bool,
    client: Option<OuReport>,
    peer: Option<OuReport>,
    admin: Option<OuReport>,
    orderer: Option<OuReport>,
}

#[derive(Debug, Serialize)]
struct OuReport {
    organizational_unit_identifier: String,
    /// Subject of the CA that must have issued identities with this OU, when one is named.
    certificate: Option<String>,
}

#[derive(Debug, Serialize)]
struct PolicyReport {
    path: String,
    r#type: String,
    rule: String,
    mod_policy: String,
}

fn capabilities_of(group: &common::ConfigGroup) -> Vec<String> {
    group
        .values
        .get(CAPABILITIES_KEY)
        .and_then(|v| common::Capabilities::decode(v.value.as_slice()).ok())
        .map(|c| c.capabilities.into_keys().collect())
        .unwrap_or_default()
}

fn value<M: Message + Default>(group: &common::ConfigGroup, key: &str) -> Option<M> {
    group
        .values
        .get(key)
        .and_then(|v| M::decode(v.value.as_slice()).ok())
}

/// The `FabricMSPConfig` of an organization group.
fn fabric_msp(group: &common::ConfigGroup) -> Result<msp::FabricMspConfig, String> {
    let raw = group
        .values
        .get(MSP_KEY)
        .ok_or_else(|| "the group has no MSP value".to_string())?;
    let config = msp::MspConfig::decode(raw.value.as_slice())
        .map_err(|e| format!("MSP value is not an msp.MSPConfig: {e}"))?;
    if config.r#type != 0 {
        return Err(format!("MSP type {} is not X.509 (FABRIC)", config.r#type));
    }
    msp::FabricMspConfig::decode(config.config.as_slice())
        .map_err(|e| format!("MSP config is not an msp.FabricMSPConfig: {e}"))
}

fn ou_report(id: Option<&msp::FabricOuIdentifier>) -> Option<OuReport> {
    id.map(|id| OuReport {
        organizational_unit_identifier: id.organizational_unit_identifier.clone(),
        certificate: (!id.certificate.is_empty()).then(|| cert_subject(&id.certificate)),
    })
}

fn org_report(name: &str, group: &common::ConfigGroup) -> OrgReport {
    let mut report = OrgReport {
        name: name.to_string(),
        ..OrgReport::default()
    };
    match fabric_msp(group) {
        Ok(fabric) => {
            let subjects = |certs: &[Vec<u8>]| certs.iter().map(|c| cert_subject(c)).collect();
            report.msp_id = fabric.name.clone();
            report.root_certs = subjects(&fabric.root_certs);
            report.intermediate_certs = subjects(&fabric.intermediate_certs);
            report.tls_root_certs = subjects(&fabric.tls_root_certs);
            report.admins = subjects(&fabric.admins);
            report.revocation_lists = fabric.revocation_list.len();
            report.node_ous = fabric.fabric_node_ous.as_ref().map(|n| NodeOusReport {
                enable: n.enable,
                client: ou_report(n.client_ou_identifier.as_ref()),
                peer: ou_report(n.peer_ou_identifier.as_ref()),
                admin: ou_report(n.admin_ou_identifier.as_ref()),
                orderer: ou_report(n.orderer_ou_identifier.as_ref()),
            });
        }
        Err(e) => report.error = Some(e),
    }
    if let Some(endpoints) = value::<common::OrdererAddresses>(group, ENDPOINTS_KEY) {
        report.endpoints = endpoints.addresses;
    }
    if let Some(anchors) = value::<protos::AnchorPeers>(group, ANCHOR_PEERS_KEY) {
        report.anchor_peers = anchors
            .anchor_peers
            .iter()
            .map(|a| format!("{}:{}", a.host, a.port))
            .collect();
    }
    report
}

fn orderer_report(group: &common::ConfigGroup) -> OrdererReport {
    let consensus = value::<orderer::ConsensusType>(group, CONSENSUS_TYPE_KEY).unwrap_or_default();
    let raft = (consensus.r#type == ETCDRAFT)
        .then(|| etcdraft::ConfigMetadata::decode(consensus.metadata.as_slice()).ok())
        .flatten()
        .unwrap_or_default();
    OrdererReport {
        consensus_state: orderer::consensus_type::State::try_from(consensus.state)
            .map(|s| s.as_str_name().to_string())
            .unwrap_or_else(|_| format!("UNKNOWN({})", consensus.state)),
        consensus_type: consensus.r#type,
        consenters: raft
            .consenters
            .iter()
            .map(|c| format!("{}:{}", c.host, c.port))
            .collect(),
        etcdraft_options: raft.options.map(|o| RaftOptionsReport {
            tick_interval: o.tick_interval,
            election_tick: o.election_tick,
            heartbeat_tick: o.heartbeat_tick,
            max_inflight_blocks: o.max_inflight_blocks,
            snapshot_interval_size: o.snapshot_interval_size,
        }),
        batch_size: value::<orderer::BatchSize>(group, BATCH_SIZE_KEY).map(|b| BatchSizeReport {
            max_message_count: b.max_message_count,
            absolute_max_bytes: b.absolute_max_bytes,
            preferred_max_bytes: b.preferred_max_bytes,
        }),
        batch_timeout: value::<orderer::BatchTimeout>(group, BATCH_TIMEOUT_KEY).map(|t| t.timeout),
        capabilities: capabilities_of(group),
        organizations: group
            .groups
            .iter()
            .map(|(name, org)| org_report(name, org))
            .collect(),
    }
}

fn collect_policies(group: &common::ConfigGroup, path: &str, out: &mut Vec<PolicyReport>) {
    for (name, policy) in &group.policies {
        let (rule, kind) = policy.policy.as_ref().map_or_else(
            || ("<no policy>".to_string(), String::new()),
            |p| (render_policy(p), policy_type_name(p.r#type)),
        );
        out.push(PolicyReport {
            path: format!("{path}/{name}"),
            r#type: kind,
            rule,
            mod_policy: policy.mod_policy.clone(),
        });
    }
    for (name, child) in &group.groups {
        collect_policies(child, &format!("{path}/{name}"), out);
    }
}

fn config_report(channel_id: &str, config: &common::Config) -> ConfigReport {
    let root = config.channel_group.clone().unwrap_or_default();
    let mut policies = Vec::new();
    collect_policies(&root, &format!("/{CHANNEL_GROUP}"), &mut policies);
    ConfigReport {
        channel_id: channel_id.to_string(),
        sequence: config.sequence,
        not_usable_by_gridledger: ChannelConfig::from_config(channel_id, config)
            .err()
            .map(|e| e.to_string()),
        hashing_algorithm: value::<common::HashingAlgorithm>(&root, HASHING_ALGORITHM_KEY)
            .map(|h| h.name),
        capabilities: capabilities_of(&root),
        orderer: root.groups.get(ORDERER_GROUP).map(orderer_report),
        application: root
            .groups
            .get(APPLICATION_GROUP)
            .map(|app| ApplicationReport {
                capabilities: capabilities_of(app),
                organizations: app
                    .groups
                    .iter()
                    .map(|(name, org)| org_report(name, org))
                    .collect(),
                acls: value::<protos::AcLs>(app, ACLS_KEY)
                    .map(|a| {
                        a.acls
                            .into_iter()
                            .map(|(resource, acl)| (resource, acl.policy_ref))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
        policies,
    }
}

/// The MSPs of a config's organizations: (group path, FabricMSPConfig).
fn config_msps(config: &common::Config) -> Vec<(String, msp::FabricMspConfig)> {
    let mut out = Vec::new();
    let Some(root) = config.channel_group.as_ref() else {
        return out;
    };
    for section in [ORDERER_GROUP, APPLICATION_GROUP] {
        for (name, group) in root
            .groups
            .get(section)
            .map(|g| &g.groups)
            .into_iter()
            .flatten()
        {
            if let Ok(fabric) = fabric_msp(group) {
                out.push((format!("/{CHANNEL_GROUP}/{section}/{name}"), fabric));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// inspect

/// A block as `inspect` shows it.
#[derive(Debug, Serialize)]
struct BlockReport {
    number: u64,
    file: String,
    header_hash: String,
    previous_hash: String,
    data_hash: String,
    /// Whether the header's data hash is the hash of the block's data.
    data_hash_matches: bool,
    tx_count: usize,
    validation_codes: Vec<u8>,
    orderer_signers: Vec<IdentityView>,
    last_config: Option<u64>,
    transactions: Vec<TxReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<ConfigReport>,
}

/// A transaction as `inspect` shows it.
#[derive(Debug, Serialize)]
struct TxReport {
    index: usize,
    tx_id: String,
    header_type: String,
    channel_id: String,
    timestamp: Option<String>,
    creator: Option<IdentityView>,
    chaincode: Option<ChaincodeView>,
    function: Option<String>,
    endorsers: Vec<IdentityView>,
    validation_code: Option<CodeView>,
    reads: Vec<ReadView>,
    writes: Vec<WriteView>,
    range_queries: Vec<RangeView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    undecodable: Option<String>,
}

#[derive(Debug, Serialize)]
struct ChaincodeView {
    name: String,
    version: String,
}

/// A read key. For private data, `collection` is set and `key` is the hex key hash.
#[derive(Debug, Serialize)]
struct ReadView {
    namespace: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    collection: Option<String>,
    key: String,
    /// `block:tx` of the version read, or `None` when the key was absent.
    version: Option<String>,
}

/// A written key. For private data, `collection` is set and `key` is the hex key hash.
#[derive(Debug, Serialize)]
struct WriteView {
    namespace: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    collection: Option<String>,
    key: String,
    is_delete: bool,
    value_len: usize,
}

#[derive(Debug, Serialize)]
struct RangeView {
    namespace: String,
    start_key: String,
    end_key: String,
    itr_exhausted: bool,
}

fn tx_report(index: usize, view: &TxView, code: Option<u8>) -> TxReport {
    let header = view.channel_header.as_ref();
    let mut report = TxReport {
        index,
        tx_id: view.tx_id().to_string(),
        header_type: view.header_type().map(header_type_name).unwrap_or_default(),
        channel_id: header.map(|h| h.channel_id.clone()).unwrap_or_default(),
        timestamp: header.and_then(|h| h.timestamp.as_ref()).map(rfc3339),
        creator: view
            .signature_header
            .as_ref()
            .filter(|s| !s.creator.is_empty())
            .map(|s| identity_view(&s.creator)),
        chaincode: None,
        function: None,
        endorsers: Vec::new(),
        validation_code: code.map(CodeView::new),
        reads: Vec::new(),
        writes: Vec::new(),
        range_queries: Vec::new(),
        undecodable: view.undecodable.clone(),
    };
    let Some(endorser) = view.endorser.as_ref() else {
        return report;
    };
    report.chaincode = endorser.chaincode.as_ref().map(|c| ChaincodeView {
        name: c.name.clone(),
        version: c.version.clone(),
    });
    report.function = endorser.function.clone();
    report.endorsers = endorser
        .endorsed
        .endorsements
        .iter()
        .map(|e| identity_view(&e.endorser))
        .collect();
    for ns in endorser.rwset.iter().flatten() {
        for read in &ns.kv.reads {
            report.reads.push(ReadView {
                namespace: ns.namespace.clone(),
                collection: None,
                key: read.key.clone(),
                version: read.version.as_ref().map(|v| version_text(Some(v))),
            });
        }
        for write in &ns.kv.writes {
            report.writes.push(WriteView {
                namespace: ns.namespace.clone(),
                collection: None,
                key: write.key.clone(),
                is_delete: write.is_delete,
                value_len: write.value.len(),
            });
        }
        for range in &ns.kv.range_queries_info {
            report.range_queries.push(RangeView {
                namespace: ns.namespace.clone(),
                start_key: range.start_key.clone(),
                end_key: range.end_key.clone(),
                itr_exhausted: range.itr_exhausted,
            });
        }
        for (collection, hashed) in &ns.collections {
            for read in &hashed.hashed_reads {
                report.reads.push(ReadView {
                    namespace: ns.namespace.clone(),
                    collection: Some(collection.clone()),
                    key: hex::encode(&read.key_hash),
                    version: read.version.as_ref().map(|v| version_text(Some(v))),
                });
            }
            for write in &hashed.hashed_writes {
                report.writes.push(WriteView {
                    namespace: ns.namespace.clone(),
                    collection: Some(collection.clone()),
                    key: hex::encode(&write.key_hash),
                    is_delete: write.is_delete,
                    value_len: write.value_hash.len(),
                });
            }
        }
    }
    report
}

fn block_report(file: &LoadedBlock) -> BlockReport {
    let block = &file.block;
    let header = block_header(block);
    let data = block_data(block);
    let codes = recorded_codes(block);
    let signatures = metadata_slot(block, BlockMetadataIndex::Signatures)
        .and_then(|raw| common::Metadata::decode(raw).ok())
        .unwrap_or_default();
    let orderer_signers = signatures
        .signatures
        .iter()
        .map(|s| {
            common::SignatureHeader::decode(s.signature_header.as_slice()).map_or_else(
                |e| IdentityView {
                    msp_id: String::new(),
                    subject: format!("<signature header does not decode: {e}>"),
                },
                |h| identity_view(&h.creator),
            )
        })
        .collect();
    let last_config = common::OrdererBlockMetadata::decode(signatures.value.as_slice())
        .ok()
        .and_then(|m| m.last_config)
        .map(|l| l.index);
    let mut transactions = Vec::with_capacity(data.len());
    let mut config = None;
    for (index, bytes) in data.iter().enumerate() {
        let view = decode_tx(bytes);
        if let (Some(cfg), Some(h)) = (view.config.as_ref(), view.channel_header.as_ref()) {
            config = Some(config_report(&h.channel_id, cfg));
        }
        transactions.push(tx_report(index, &view, codes.get(index).copied()));
    }
    BlockReport {
        number: header.number,
        file: file.path.display().to_string(),
        header_hash: hex::encode(block_header_hash(&header)),
        previous_hash: hex::encode(&header.previous_hash),
        data_hash: hex::encode(&header.data_hash),
        data_hash_matches: block
            .data
            .as_ref()
            .is_some_and(|d| block_data_hash(d).as_slice() == header.data_hash.as_slice()),
        tx_count: data.len(),
        validation_codes: codes,
        orderer_signers,
        last_config,
        transactions,
        config,
    }
}

fn inspect(args: &InspectArgs) -> Result<(), LedgerToolError> {
    let from = args.from.unwrap_or(0);
    let to = args.to.unwrap_or(u64::MAX);
    let blocks: Vec<BlockFile> = index_blocks(&args.blocks)?
        .into_iter()
        .filter(|b| (from..=to).contains(&b.number))
        .collect();
    if blocks.is_empty() {
        return Err(LedgerToolError::EmptyRange {
            path: args.blocks.clone(),
            from,
            to,
        });
    }
    if args.json {
        #[derive(Serialize)]
        struct Inspection {
            blocks: Vec<BlockReport>,
        }
        let mut reports = Vec::with_capacity(blocks.len());
        for file in &blocks {
            reports.push(block_report(&file.load()?));
        }
        stdout(&format!(
            "{}\n",
            serde_json::to_string_pretty(&Inspection { blocks: reports })?
        ))?;
    } else {
        for file in &blocks {
            let mut out = String::new();
            render_block(&block_report(&file.load()?), &mut out);
            stdout(&out)?;
        }
    }
    Ok(())
}

fn render_block(b: &BlockReport, out: &mut String) {
    let _ = writeln!(out, "block {} ({})", b.number, b.file);
    let _ = writeln!(out, "  header hash    {}", b.header_hash);
    let _ = writeln!(
        out,
        "  previous hash  {}",
        if b.previous_hash.is_empty() {
            "(none)"
        } else {
            &b.previous_hash
        }
    );
    let _ = writeln!(
        out,
        "  data hash      {}{}",
        b.data_hash,
        if b.data_hash_matches {
            ""
        } else {
            "  (DOES NOT MATCH the data)"
        }
    );
    let _ = writeln!(
        out,
        "  transactions   {}, validation codes {:?}",
        b.tx_count, b.validation_codes
    );
    for signer in &b.orderer_signers {
        let _ = writeln!(out, "  signed by      {signer}");
    }
    if let Some(last) = b.last_config {
        let _ = writeln!(out, "  last config    block {last}");
    }
    for tx in &b.transactions {
        render_tx(tx, out);
    }
    if let Some(config) = &b.config {
        render_config(config, out);
    }
    out.push('\n');
}

fn render_tx(tx: &TxReport, out: &mut String) {
    let code = tx
        .validation_code
        .map_or("no recorded code".to_string(), |c| c.to_string());
    let _ = writeln!(
        out,
        "  tx {} {}  {}  {}  {code}",
        tx.index,
        if tx.tx_id.is_empty() {
            "(no tx id)"
        } else {
            &tx.tx_id
        },
        tx.header_type,
        tx.timestamp.as_deref().unwrap_or("-"),
    );
    if let Some(creator) = &tx.creator {
        let _ = writeln!(out, "    creator    {creator}");
    }
    if let Some(cc) = &tx.chaincode {
        let _ = write!(out, "    chaincode  {}", cc.name);
        if !cc.version.is_empty() {
            let _ = write!(out, " {}", cc.version);
        }
        if let Some(function) = &tx.function {
            let _ = write!(out, "  function {function}");
        }
        out.push('\n');
    }
    for endorser in &tx.endorsers {
        let _ = writeln!(out, "    endorser   {endorser}");
    }
    for read in &tx.reads {
        let collection = read
            .collection
            .as_ref()
            .map_or(String::new(), |c| format!("{c}#"));
        let _ = writeln!(
            out,
            "    read       {}/{collection}{}@{}",
            read.namespace,
            read.key,
            read.version.as_deref().unwrap_or("-")
        );
    }
    for range in &tx.range_queries {
        let _ = writeln!(
            out,
            "    range      {}/[{:?}, {:?})",
            range.namespace, range.start_key, range.end_key
        );
    }
    for write in &tx.writes {
        let collection = write
            .collection
            .as_ref()
            .map_or(String::new(), |c| format!("{c}#"));
        let _ = writeln!(
            out,
            "    write      {}/{collection}{}{}",
            write.namespace,
            write.key,
            if write.is_delete { " (delete)" } else { "" }
        );
    }
    if let Some(what) = &tx.undecodable {
        let _ = writeln!(out, "    undecodable {what}");
    }
}

fn render_org(org: &OrgReport, out: &mut String) {
    let _ = writeln!(out, "      org {} (MSP {})", org.name, org.msp_id);
    if let Some(e) = &org.error {
        let _ = writeln!(out, "        error          {e}");
    }
    for (label, certs) in [
        ("root CA", &org.root_certs),
        ("intermediate CA", &org.intermediate_certs),
        ("TLS root CA", &org.tls_root_certs),
        ("admin", &org.admins),
    ] {
        for subject in certs {
            let _ = writeln!(out, "        {label:<15}{subject}");
        }
    }
    if let Some(ous) = &org.node_ous {
        let _ = writeln!(
            out,
            "        NodeOUs        {}",
            if ous.enable { "enabled" } else { "disabled" }
        );
        for (role, ou) in [
            ("client", &ous.client),
            ("peer", &ous.peer),
            ("admin", &ous.admin),
            ("orderer", &ous.orderer),
        ] {
            if let Some(ou) = ou {
                let certifier = ou
                    .certificate
                    .as_ref()
                    .map_or(String::new(), |c| format!(", issued by {c}"));
                let _ = writeln!(
                    out,
                    "          {role:<13}OU {}{certifier}",
                    ou.organizational_unit_identifier
                );
            }
        }
    }
    if !org.endpoints.is_empty() {
        let _ = writeln!(out, "        endpoints      {}", org.endpoints.join(", "));
    }
    if !org.anchor_peers.is_empty() {
        let _ = writeln!(
            out,
            "        anchor peers   {}",
            org.anchor_peers.join(", ")
        );
    }
}

fn render_config(c: &ConfigReport, out: &mut String) {
    let _ = writeln!(
        out,
        "  channel config {} (sequence {})",
        c.channel_id, c.sequence
    );
    if let Some(reason) = &c.not_usable_by_gridledger {
        let _ = writeln!(out, "    NOT USABLE BY GRIDLEDGER: {reason}");
    }
    if let Some(h) = &c.hashing_algorithm {
        let _ = writeln!(out, "    hashing        {h}");
    }
    let _ = writeln!(out, "    capabilities   {}", c.capabilities.join(", "));
    if let Some(o) = &c.orderer {
        let _ = writeln!(
            out,
            "    orderer        {} ({}), capabilities {}",
            o.consensus_type,
            o.consensus_state,
            o.capabilities.join(", ")
        );
        for consenter in &o.consenters {
            let _ = writeln!(out, "      consenter    {consenter}");
        }
        if let Some(t) = &o.batch_timeout {
            let _ = writeln!(out, "      BatchTimeout {t}");
        }
        if let Some(b) = &o.batch_size {
            let _ = writeln!(
                out,
                "      BatchSize    max_message_count {}, absolute_max_bytes {}, preferred_max_bytes {}",
                b.max_message_count, b.absolute_max_bytes, b.preferred_max_bytes
            );
        }
        if let Some(r) = &o.etcdraft_options {
            let _ = writeln!(
                out,
                "      etcdraft     tick_interval {}, election_tick {}, heartbeat_tick {}, max_inflight_blocks {}, snapshot_interval_size {}",
                r.tick_interval,
                r.election_tick,
                r.heartbeat_tick,
                r.max_inflight_blocks,
                r.snapshot_interval_size
            );
        }
        for org in &o.organizations {
            render_org(org, out);
        }
    }
    if let Some(a) = &c.application {
        let _ = writeln!(
            out,
            "    application    capabilities {}, {} ACLs",
            a.capabilities.join(", "),
            a.acls.len()
        );
        for org in &a.organizations {
            render_org(org, out);
        }
    }
    let _ = writeln!(out, "    policies");
    let width = c.policies.iter().map(|p| p.path.len()).max().unwrap_or(0);
    for p in &c.policies {
        let _ = writeln!(
            out,
            "      {:<width$}  {}  (mod_policy {})",
            p.path,
            p.rule,
            if p.mod_policy.is_empty() {
                "-"
            } else {
                &p.mod_policy
            }
        );
    }
}

// ---------------------------------------------------------------------------------------------
// verify: trust

/// A certificate found in `--msp-dir`.
#[derive(Clone)]
struct TrustedCert {
    file: String,
    cert: Certificate,
}

/// Every PEM certificate under `dir` (recursively, files sorted), with the file it came from
/// relative to `dir`. Files without a certificate (keys, READMEs) are skipped.
fn load_msp_dir(dir: &Path) -> Result<(Vec<TrustedCert>, Vec<String>), LedgerToolError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut certs = Vec::new();
    let mut unreadable = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    let mut files = Vec::new();
    while let Some(folder) = pending.pop() {
        let entries = std::fs::read_dir(&folder).map_err(|source| LedgerToolError::Io {
            path: folder.clone(),
            source,
        })?;
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    for path in files {
        let bytes = std::fs::read(&path).map_err(|source| LedgerToolError::Io {
            path: path.clone(),
            source,
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let name = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        let mut rest = text.as_ref();
        while let Some(start) = rest.find(BEGIN) {
            let Some(len) = rest[start..].find(END) else {
                break;
            };
            let block = &rest[start..start + len + END.len()];
            match Certificate::from_pem(block.as_bytes()) {
                Ok(cert) => certs.push(TrustedCert {
                    file: name.clone(),
                    cert,
                }),
                Err(e) => unreadable.push(format!("{name}: {e}")),
            }
            rest = &rest[start + len + END.len()..];
        }
    }
    if certs.is_empty() {
        return Err(LedgerToolError::EmptyMspDir(dir.to_path_buf()));
    }
    Ok((certs, unreadable))
}

/// How the trusted certificates map onto a config's MSPs.
#[derive(Debug, Default, Serialize)]
struct TrustReport {
    msps: Vec<MspTrust>,
    /// What each `--msp-dir` certificate was used as.
    msp_dir: Vec<CertUse>,
}

#[derive(Debug, Serialize)]
struct MspTrust {
    msp_id: String,
    group: String,
    roots: Vec<RootTrust>,
    node_ous: bool,
}

#[derive(Debug, Serialize)]
struct RootTrust {
    subject: String,
    /// The `--msp-dir` file holding this root, or `None` when it is trusted only because of
    /// `--trust-config`.
    trusted_by: Option<String>,
}

#[derive(Debug, Serialize)]
struct CertUse {
    file: String,
    subject: String,
    used_as: String,
}

/// Matches the roots of every MSP of `config` against the trusted certificates. Returns the
/// report and the roots that are not trusted (as "MSP 'subject'" strings).
fn match_trust(config: &common::Config, trusted: &[TrustedCert]) -> (TrustReport, Vec<String>) {
    let mut report = TrustReport::default();
    let mut untrusted = Vec::new();
    let mut uses: Vec<Vec<String>> = vec![Vec::new(); trusted.len()];
    for (group, fabric) in config_msps(config) {
        let mut roots = Vec::new();
        for pem in &fabric.root_certs {
            let parsed = Certificate::from_pem(pem);
            let subject = parsed.as_ref().map_or_else(
                |e| format!("<not a certificate: {e}>"),
                |c| c.subject.clone(),
            );
            let found = parsed
                .ok()
                .and_then(|c| trusted.iter().position(|t| t.cert.der == c.der));
            if let Some(i) = found {
                uses[i].push(format!("root CA of {}", fabric.name));
            } else {
                untrusted.push(format!("{} root CA '{subject}'", fabric.name));
            }
            roots.push(RootTrust {
                subject,
                trusted_by: found.map(|i| trusted[i].file.clone()),
            });
        }
        for pem in fabric
            .tls_root_certs
            .iter()
            .chain(&fabric.tls_intermediate_certs)
        {
            if let Ok(c) = Certificate::from_pem(pem) {
                if let Some(i) = trusted.iter().position(|t| t.cert.der == c.der) {
                    uses[i].push(format!(
                        "TLS CA of {} (not used for signatures)",
                        fabric.name
                    ));
                }
            }
        }
        for pem in &fabric.intermediate_certs {
            if let Ok(c) = Certificate::from_pem(pem) {
                if let Some(i) = trusted.iter().position(|t| t.cert.der == c.der) {
                    uses[i].push(format!("intermediate CA of {}", fabric.name));
                }
            }
        }
        report.msps.push(MspTrust {
            msp_id: fabric.name.clone(),
            group,
            roots,
            node_ous: fabric.fabric_node_ous.as_ref().is_some_and(|n| n.enable),
        });
    }
    for (t, used) in trusted.iter().zip(uses) {
        let used_as = if !used.is_empty() {
            used.join(", ")
        } else if t.cert.is_ca {
            "CA not named by the channel config (unused)".to_string()
        } else {
            "not a CA certificate (ignored)".to_string()
        };
        report.msp_dir.push(CertUse {
            file: t.file.clone(),
            subject: t.cert.subject.clone(),
            used_as,
        });
    }
    (report, untrusted)
}

// ---------------------------------------------------------------------------------------------
// verify: chaincode definitions

/// `lifecycle.StateData` (Fabric's `_lifecycle` field encoding); only its bytes case is read.
#[derive(Clone, PartialEq, Message)]
struct LifecycleStateData {
    #[prost(bytes = "vec", tag = "2")]
    bytes: Vec<u8>,
}

/// `lifecycle.ChaincodeEndorsementInfo`.
#[derive(Clone, PartialEq, Message)]
struct ChaincodeEndorsementInfo {
    #[prost(string, tag = "1")]
    version: String,
    #[prost(bool, tag = "2")]
    init_required: bool,
}

/// `lifecycle.ChaincodeValidationInfo`.
#[derive(Clone, PartialEq, Message)]
struct ChaincodeValidationInfo {
    #[prost(string, tag = "1")]
    validation_plugin: String,
    #[prost(bytes = "vec", tag = "2")]
    validation_parameter: Vec<u8>,
}

/// Prefix of the `_lifecycle` keys holding committed chaincode definitions' fields.
const LIFECYCLE_FIELDS_PREFIX: &str = "namespaces/fields/";

/// A chaincode definition and where it came from.
#[derive(Debug, Clone)]
struct KnownChaincode {
    version: String,
    endorsement: Option<EndorsementPolicy>,
    source: String,
    /// The private data collections of its definition (implicit ones are not listed).
    collections: BTreeMap<String, gridledger_peer::private::CollectionDefinition>,
}

fn application_policy(bytes: &[u8]) -> Result<EndorsementPolicy, String> {
    use protos::application_policy::Type;
    let policy = protos::ApplicationPolicy::decode(bytes)
        .map_err(|e| format!("validation parameter is not a protos.ApplicationPolicy: {e}"))?;
    match policy.r#type {
        Some(Type::SignaturePolicy(env)) => Ok(EndorsementPolicy::Signature(env)),
        Some(Type::ChannelConfigPolicyReference(path)) if path.starts_with('/') => {
            Ok(EndorsementPolicy::ChannelPolicy(path))
        }
        Some(Type::ChannelConfigPolicyReference(name)) => Ok(EndorsementPolicy::ChannelPolicy(
            format!("/{CHANNEL_GROUP}/{APPLICATION_GROUP}/{name}"),
        )),
        None => Err("the application policy is empty".to_string()),
    }
}

/// Records the `_lifecycle` writes of a committed transaction into `known`.
fn learn_lifecycle(
    writes: &[StateWrite],
    number: u64,
    known: &mut BTreeMap<String, KnownChaincode>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for write in writes.iter().filter(|w| w.namespace == LIFECYCLE_NAMESPACE) {
        let Some((name, field)) = write
            .key
            .strip_prefix(LIFECYCLE_FIELDS_PREFIX)
            .and_then(|rest| rest.split_once('/'))
        else {
            continue;
        };
        let Some(value) = write.value.as_deref() else {
            continue;
        };
        let bytes = match LifecycleStateData::decode(value) {
            Ok(data) => data.bytes,
            Err(e) => {
                problems.push(format!("_lifecycle {}: {e}", write.key));
                continue;
            }
        };
        let entry = known
            .entry(name.to_string())
            .or_insert_with(|| KnownChaincode {
                version: String::new(),
                endorsement: None,
                source: String::new(),
                collections: BTreeMap::new(),
            });
        entry.source = format!("_lifecycle, block {number}");
        match field {
            "EndorsementInfo" => match ChaincodeEndorsementInfo::decode(bytes.as_slice()) {
                Ok(info) => entry.version = info.version,
                Err(e) => problems.push(format!("_lifecycle {}: {e}", write.key)),
            },
            "ValidationInfo" => {
                match ChaincodeValidationInfo::decode(bytes.as_slice())
                    .map_err(|e| e.to_string())
                    .and_then(|info| application_policy(&info.validation_parameter))
                {
                    Ok(policy) => entry.endorsement = Some(policy),
                    Err(e) => problems.push(format!("_lifecycle {}: {e}", write.key)),
                }
            }
            _ => {}
        }
    }
    problems
}

fn parse_chaincode_arg(arg: &str) -> Result<(String, EndorsementPolicy), LedgerToolError> {
    let bad = |reason: String| LedgerToolError::ChaincodeArg {
        arg: arg.to_string(),
        reason,
    };
    let (name, policy) = arg
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=POLICY".to_string()))?;
    let (name, policy) = (name.trim(), policy.trim());
    if name.is_empty() || policy.is_empty() {
        return Err(bad("expected NAME=POLICY".to_string()));
    }
    let endorsement = if policy.starts_with('/') {
        EndorsementPolicy::ChannelPolicy(policy.to_string())
    } else {
        EndorsementPolicy::Signature(parse(policy).map_err(|e| bad(e.render(policy)))?)
    };
    Ok((name.to_string(), endorsement))
}

/// The definitions validation uses: `_lifecycle` by the channel's rule, every chaincode
/// defined in `_lifecycle` so far, and the `--chaincode` ones on top.
fn chaincode_definitions(
    channel: &ChannelConfig,
    known: &BTreeMap<String, KnownChaincode>,
) -> BTreeMap<String, ChaincodeDefinition> {
    let mut out = BTreeMap::new();
    let lifecycle = ChaincodeDefinition::lifecycle(channel);
    out.insert(lifecycle.name.clone(), lifecycle);
    for (name, cc) in known {
        if let Some(endorsement) = &cc.endorsement {
            out.insert(
                name.clone(),
                ChaincodeDefinition {
                    collections: cc.collections.clone(),
                    name: name.clone(),
                    version: cc.version.clone(),
                    endorsement: endorsement.clone(),
                },
            );
        }
    }
    out
}

fn endorsement_text(policy: &EndorsementPolicy) -> String {
    match policy {
        EndorsementPolicy::ChannelPolicy(path) => path.clone(),
        EndorsementPolicy::Signature(env) => {
            to_policy_string(env).unwrap_or_else(|e| format!("<signature policy: {e}>"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// verify: the report

/// Which check a problem comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Check {
    BlockNumber,
    PreviousHash,
    DataHash,
    OrdererSignature,
    BlockValidationPolicy,
    TransactionsFilter,
    Envelope,
    CreatorIdentity,
    CreatorSignature,
    TxIdBinding,
    EndorserIdentity,
    EndorserSignature,
    ValidationCode,
    Config,
    Trust,
    Lifecycle,
}

/// One thing that did not check.
#[derive(Debug, Serialize)]
struct Problem {
    block: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tx: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tx_id: Option<String>,
    check: Check,
    message: String,
}

#[derive(Debug, Default, Serialize)]
struct Count {
    checked: usize,
    valid: usize,
}

impl Count {
    fn record(&mut self, ok: bool) {
        self.checked += 1;
        if ok {
            self.valid += 1;
        }
    }
}

#[derive(Debug, Default, Serialize)]
struct SignatureCounts {
    creator: Count,
    endorser: Count,
    orderer: Count,
}

#[derive(Debug, Default, Serialize)]
struct ChainCounts {
    data_hashes: Count,
    previous_hash_links: Count,
}

#[derive(Debug, Default, Serialize)]
struct CodeCounts {
    transactions: Count,
    blocks: Count,
}

#[derive(Debug, Serialize)]
struct ChaincodeReport {
    name: String,
    version: String,
    endorsement: String,
    source: String,
}

/// What `verify` found.
#[derive(Debug, Default, Serialize)]
struct VerifyReport {
    ok: bool,
    channel: String,
    blocks: usize,
    first_block: u64,
    last_block: u64,
    transactions: usize,
    hash_chain: ChainCounts,
    signatures: SignatureCounts,
    endorser_roles: BTreeMap<String, usize>,
    tx_id_bindings: Count,
    validation_codes: CodeCounts,
    trust: TrustReport,
    trusted_from_config: Vec<String>,
    unreadable_certificates: Vec<String>,
    chaincodes: Vec<ChaincodeReport>,
    problems: Vec<Problem>,
    /// What did not check in transactions that were recorded invalid and that re-validation
    /// finds invalid with the same code: expected, not a fault of the ledger.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<Problem>,
}

impl VerifyReport {
    fn block_problem(&mut self, block: u64, check: Check, what: String) {
        self.problems.push(Problem {
            block,
            tx: None,
            tx_id: None,
            check,
            message: format!("block {block}: {what}"),
        });
    }

    fn tx_problem(&mut self, block: u64, tx: usize, tx_id: &str, check: Check, what: String) {
        let id = if tx_id.is_empty() {
            String::new()
        } else {
            format!(" ({})", short_id(tx_id))
        };
        self.problems.push(Problem {
            block,
            tx: Some(tx),
            tx_id: (!tx_id.is_empty()).then(|| tx_id.to_string()),
            check,
            message: format!("block {block} tx {tx}{id}: {what}"),
        });
    }
}

// ---------------------------------------------------------------------------------------------
// verify: the replay

/// Time at which an orderer identity is validated: one second into its certificate's
/// validity, as the validation core (and Fabric's MSP) does for block signers.
fn orderer_validation_time(serialized: &[u8]) -> u64 {
    msp::SerializedIdentity::decode(serialized)
        .ok()
        .and_then(|id| Certificate::from_pem(&id.id_bytes).ok())
        .and_then(|cert| u64::try_from(cert.not_before).ok())
        .map_or(0, |t| t.saturating_add(1))
}

/// Everything carried from one block to the next: the one chain verifier behind both
/// `verify --blocks` (block files) and `verify --dir` (stored ledgers). Feed it the blocks in
/// order with [`Replay::verify_block`], starting with the genesis block, then take the report
/// and the recomputed world state with [`Replay::finish`].
struct Replay {
    channel: ChannelConfig,
    known: BTreeMap<String, KnownChaincode>,
    explicit: BTreeMap<String, EndorsementPolicy>,
    state: InMemoryState,
    /// Number and recomputed header hash of the last block seen.
    previous: Option<(u64, [u8; 32])>,
    trusted: Vec<TrustedCert>,
    trust_config: bool,
    /// The blocks carry the committing peer's TRANSACTIONS_FILTER to compare with the
    /// recomputed codes; an orderer's blocks do not (their slot 2 is empty), and the replay
    /// then follows the recomputed codes.
    recorded_codes: bool,
    /// Private-data hash rows due to expire (a collection's `block_to_live`), by the block
    /// whose commit removes them: (namespace, key, version that scheduled it).
    expiries: BTreeMap<u64, Vec<(String, String, kvrwset::Version)>>,
    report: VerifyReport,
}

impl Replay {
    /// Sets up the replay from the chain's genesis block: its configuration is the trust
    /// anchor, and its MSPs' root CAs must be in `trust` (unless `trust.trust_config`).
    fn start(
        genesis: &common::Block,
        trust: ChainTrust,
        explicit: BTreeMap<String, EndorsementPolicy>,
        recorded_codes: bool,
    ) -> Result<Replay, LedgerToolError> {
        let (channel_id, config) = config_from_block(genesis)
            .map_err(|e| LedgerToolError::Genesis(ConfigError::Block(e)))?;
        let channel =
            ChannelConfig::from_config(&channel_id, &config).map_err(LedgerToolError::Genesis)?;
        let (report, untrusted) = match_trust(&config, &trust.trusted);
        if !untrusted.is_empty() && !trust.trust_config {
            return Err(LedgerToolError::Untrusted(untrusted.join(", ")));
        }
        Ok(Replay {
            channel,
            known: BTreeMap::new(),
            explicit,
            state: InMemoryState::new(),
            previous: None,
            trusted: trust.trusted,
            trust_config: trust.trust_config,
            recorded_codes,
            expiries: BTreeMap::new(),
            report: VerifyReport {
                channel: channel_id,
                first_block: 0,
                trust: report,
                trusted_from_config: if trust.trust_config {
                    untrusted
                } else {
                    Vec::new()
                },
                unreadable_certificates: trust.unreadable,
                ..VerifyReport::default()
            },
        })
    }

    /// The report (with the chaincodes the chain defined) and the world state recomputed from
    /// the blocks seen.
    fn finish(self) -> (VerifyReport, InMemoryState) {
        let mut report = self.report;
        let mut chaincodes: Vec<ChaincodeReport> = self
            .known
            .iter()
            .filter(|(name, _)| !self.explicit.contains_key(*name))
            .map(|(name, cc)| ChaincodeReport {
                name: name.clone(),
                version: cc.version.clone(),
                endorsement: cc
                    .endorsement
                    .as_ref()
                    .map_or("<no validation info>".to_string(), endorsement_text),
                source: cc.source.clone(),
            })
            .collect();
        chaincodes.extend(self.explicit.iter().map(|(name, policy)| ChaincodeReport {
            name: name.clone(),
            version: String::new(),
            endorsement: endorsement_text(policy),
            source: "--chaincode".to_string(),
        }));
        report.chaincodes = chaincodes;
        report.ok = report.problems.is_empty();
        (report, self.state)
    }

    fn definitions(&self) -> BTreeMap<String, ChaincodeDefinition> {
        let mut defs = chaincode_definitions(&self.channel, &self.known);
        for (name, endorsement) in &self.explicit {
            defs.insert(
                name.clone(),
                ChaincodeDefinition {
                    collections: Default::default(),
                    name: name.clone(),
                    version: String::new(),
                    endorsement: endorsement.clone(),
                },
            );
        }
        defs
    }

    /// Verifies the next block of the chain and applies it to the replayed state.
    fn verify_block(&mut self, block: &common::Block) -> Result<(), LedgerToolError> {
        let header = block_header(block);
        let number = header.number;
        let problems_before = self.report.problems.len();
        self.report.blocks += 1;
        self.report.last_block = number;

        // The chain: numbering and previous-hash link.
        match self.previous {
            None => {
                if !header.previous_hash.is_empty() {
                    self.report.block_problem(
                        number,
                        Check::PreviousHash,
                        "the genesis block has a previous hash".to_string(),
                    );
                }
            }
            Some((prev_number, prev_hash)) if number == prev_number + 1 => {
                let ok = header.previous_hash == prev_hash;
                self.report.hash_chain.previous_hash_links.record(ok);
                if !ok {
                    self.report.block_problem(
                        number,
                        Check::PreviousHash,
                        format!(
                            "previous hash {} does not match block {prev_number}'s header hash {}",
                            hex::encode(&header.previous_hash),
                            hex::encode(prev_hash)
                        ),
                    );
                }
            }
            Some((prev_number, _)) => {
                self.report.block_problem(
                    number,
                    Check::BlockNumber,
                    format!(
                        "blocks {}..={} are missing; the link to block {prev_number} is not checked",
                        prev_number + 1,
                        number - 1
                    ),
                );
            }
        }

        // The header commits to the data.
        let data = block.data.clone().unwrap_or_default();
        let computed = block_data_hash(&data);
        let data_ok = header.data_hash == computed;
        self.report.hash_chain.data_hashes.record(data_ok);
        if !data_ok {
            self.report.block_problem(
                number,
                Check::DataHash,
                format!(
                    "data hash mismatch: the header has {}, the data hashes to {}",
                    hex::encode(&header.data_hash),
                    hex::encode(computed)
                ),
            );
        }
        // A copy whose header agrees with its data, so that the validation core still judges
        // every transaction of a block whose data no longer matches its header (reported
        // above).
        let mut probe = block.clone();
        if let Some(h) = probe.header.as_mut() {
            h.data_hash = computed.to_vec();
        }
        probe.data = Some(data.clone());

        let stored_codes = recorded_codes(block);
        if self.recorded_codes && stored_codes.len() != data.data.len() {
            self.report.block_problem(
                number,
                Check::TransactionsFilter,
                format!(
                    "TRANSACTIONS_FILTER has {} codes for {} transactions",
                    stored_codes.len(),
                    data.data.len()
                ),
            );
        }

        let definitions = self.definitions();
        let ctx = BlockContext {
            channel: &self.channel,
            chaincodes: &definitions,
            expected_number: number,
            previous_header_hash: &header.previous_hash,
        };
        if number > 0 {
            check_orderer_signatures(&mut self.report, block, &header, &ctx);
        }

        let views: Vec<TxView> = data.data.iter().map(|d| decode_tx(d)).collect();
        let mut all_authentic = true;
        for (index, view) in views.iter().enumerate() {
            all_authentic &=
                check_transaction(&mut self.report, &self.channel, number, index, view);
        }

        // Re-validation by the validation core, against the replayed state of the blocks
        // before this one.
        let (recomputed, mut updates, new_config) = if number == 0 {
            // The genesis config was decoded to set up the replay; it is valid by definition.
            (vec![TxValidationCode::Valid as u8], Vec::new(), None)
        } else {
            match validate_block(&probe, &ctx, &self.state) {
                Ok(validated) => (
                    validated.transactions_filter(),
                    validated.updates.txs,
                    validated.config,
                ),
                Err(source @ BlockRejected::State { .. }) => {
                    return Err(LedgerToolError::Validation { number, source });
                }
                Err(e) => {
                    self.report.block_problem(
                        number,
                        Check::ValidationCode,
                        format!("the validation core refused the block: {e}"),
                    );
                    (Vec::new(), Vec::new(), None)
                }
            }
        };
        // Without recorded codes (an orderer's blocks) the recomputed ones are the verdict.
        let recorded = if self.recorded_codes {
            stored_codes
        } else {
            recomputed.clone()
        };
        let mut block_ok = recorded.len() == recomputed.len();
        for (index, view) in views.iter().enumerate() {
            let (Some(&rec), Some(&re)) = (recorded.get(index), recomputed.get(index)) else {
                continue;
            };
            let ok = rec == re;
            if self.recorded_codes {
                self.report.validation_codes.transactions.record(ok);
            }
            if ok {
                continue;
            }
            block_ok = false;
            self.report.tx_problem(
                number,
                index,
                view.tx_id(),
                Check::ValidationCode,
                format!(
                    "recorded {}, recomputed {}",
                    CodeView::new(rec),
                    CodeView::new(re)
                ),
            );
            // Which verdict the replayed state follows. A transaction whose bytes are authentic
            // was judged correctly now, so a differing recorded code is itself the fault (a
            // forged TRANSACTIONS_FILTER). When a transaction of the block fails
            // authentication, its bytes changed after the peer judged them: the recorded codes
            // of that block are what later blocks were validated against.
            if all_authentic {
                continue;
            }
            let writes = if rec == TxValidationCode::Valid as u8 {
                view.endorser
                    .as_ref()
                    .and_then(|e| e.rwset.as_deref())
                    .map(state_writes)
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            let tx_num = index as u64;
            match updates.iter_mut().find(|t| t.tx_num == tx_num) {
                Some(tx) => {
                    tx.validation_code = rec;
                    tx.writes = writes;
                }
                None if rec == TxValidationCode::Valid as u8 => updates.push(TxUpdates {
                    tx_num,
                    tx_id: view.tx_id().to_string(),
                    validation_code: rec,
                    timestamp: view.channel_header.as_ref().and_then(|h| h.timestamp),
                    writes,
                    metadata_writes: Vec::new(),
                    private_writes: Vec::new(),
                    expiries: Vec::new(),
                    private_sets: Vec::new(),
                    purges: Vec::new(),
                }),
                None => {}
            }
        }
        if self.recorded_codes {
            self.report.validation_codes.blocks.record(block_ok);
        }
        self.demote_invalid_transactions(problems_before, &recorded, &recomputed);
        updates.sort_by_key(|t| t.tx_num);
        for tx in updates.iter().filter(|t| t.validation_code == 0) {
            for problem in learn_lifecycle(&tx.writes, number, &mut self.known) {
                self.report.tx_problem(
                    number,
                    usize::try_from(tx.tx_num).unwrap_or(usize::MAX),
                    &tx.tx_id,
                    Check::Lifecycle,
                    problem,
                );
            }
        }
        let updates = gridledger_peer::validation::BlockUpdates { txs: updates };
        self.expire(number);
        self.state.apply(number, &updates);
        self.schedule_expiries(number, &updates);
        self.learn_collections(&updates);

        // A valid config block (as recorded) replaces the channel config for later blocks.
        if let Some((channel_id, config)) = new_config {
            if recorded.first() == Some(&(TxValidationCode::Valid as u8)) {
                self.switch_config(number, &channel_id, &config);
            }
        }
        self.previous = Some((number, block_header_hash(&header)));
        Ok(())
    }

    /// Moves the authenticity problems (envelope, creator, tx-id binding, endorsement) of this
    /// block's transactions that were recorded invalid, and that re-validation also finds
    /// invalid with the same code, to the notes: such a transaction was refused as it should
    /// have been and changed nothing, so it is no fault of the ledger.
    fn demote_invalid_transactions(&mut self, from: usize, recorded: &[u8], recomputed: &[u8]) {
        let consistent_invalid = |tx: usize| {
            matches!(
                (recorded.get(tx), recomputed.get(tx)),
                (Some(rec), Some(re)) if rec == re && *rec != TxValidationCode::Valid as u8
            )
        };
        let block_problems = self
            .report
            .problems
            .split_off(from.min(self.report.problems.len()));
        for problem in block_problems {
            let authenticity = matches!(
                problem.check,
                Check::Envelope
                    | Check::CreatorIdentity
                    | Check::CreatorSignature
                    | Check::TxIdBinding
                    | Check::EndorserIdentity
                    | Check::EndorserSignature
            );
            if authenticity && problem.tx.is_some_and(consistent_invalid) {
                self.report.notes.push(problem);
            } else {
                self.report.problems.push(problem);
            }
        }
    }

    /// Removes the private-data hash rows whose `block_to_live` ends with block `number`,
    /// unless a later transaction wrote them again (the ledger does this before applying the
    /// block's writes).
    fn expire(&mut self, number: u64) {
        let due: Vec<u64> = self.expiries.range(..=number).map(|(at, _)| *at).collect();
        for at in due {
            for (namespace, key, version) in self.expiries.remove(&at).unwrap_or_default() {
                if self.state.get(&namespace, &key).map(|(_, v)| v) == Some(version) {
                    self.state.remove(&namespace, &key);
                }
            }
        }
    }

    /// Schedules the expiry of the hash rows the block's valid transactions wrote to
    /// collections with a `block_to_live` (as of the definitions before the block): they go
    /// when block `number + block_to_live + 1` commits.
    fn schedule_expiries(
        &mut self,
        number: u64,
        updates: &gridledger_peer::validation::BlockUpdates,
    ) {
        for tx in updates
            .txs
            .iter()
            .filter(|t| t.validation_code == TxValidationCode::Valid as u8)
        {
            for write in tx.writes.iter().filter(|w| w.value.is_some()) {
                let Some((chaincode, collection)) = write.namespace.split_once("$$h") else {
                    continue;
                };
                let block_to_live = self
                    .known
                    .get(chaincode)
                    .and_then(|cc| cc.collections.get(collection))
                    .map_or(0, |c| c.block_to_live);
                if block_to_live == 0 {
                    continue;
                }
                let at = number.saturating_add(block_to_live).saturating_add(1);
                self.expiries.entry(at).or_default().push((
                    write.namespace.clone(),
                    write.key.clone(),
                    kvrwset::Version {
                        block_num: number,
                        tx_num: tx.tx_num,
                    },
                ));
            }
        }
    }

    /// Reads the private data collections of every chaincode whose `_lifecycle` definition
    /// the block's valid transactions wrote, from the replayed state, as a peer refreshes its
    /// definitions after such a block.
    fn learn_collections(&mut self, updates: &gridledger_peer::validation::BlockUpdates) {
        let names: std::collections::BTreeSet<String> = updates
            .txs
            .iter()
            .filter(|t| t.validation_code == TxValidationCode::Valid as u8)
            .flat_map(|t| &t.writes)
            .filter(|w| w.namespace == LIFECYCLE_NAMESPACE)
            .filter_map(|w| {
                w.key
                    .strip_prefix(LIFECYCLE_FIELDS_PREFIX)
                    .and_then(|rest| rest.split_once('/'))
                    .map(|(name, _)| name.to_string())
            })
            .collect();
        for name in names {
            let state = &self.state;
            let mut get = |key: &str| -> Result<Option<Vec<u8>>, String> {
                Ok(state
                    .get(LIFECYCLE_NAMESPACE, key)
                    .map(|(value, _)| value.to_vec()))
            };
            let collections = gridledger_peer::lifecycle::read_definition(&name, &mut get)
                .and_then(|def| def.map(|d| validation_definition(&d)).transpose());
            if let (Ok(Some(def)), Some(known)) = (collections, self.known.get_mut(&name)) {
                known.collections = def.collections;
            }
        }
    }

    fn switch_config(&mut self, number: u64, channel_id: &str, config: &common::Config) {
        let (trust, untrusted) = match_trust(config, &self.trusted);
        if !untrusted.is_empty() {
            if self.trust_config {
                self.report.trusted_from_config.extend(untrusted);
            } else {
                self.report.block_problem(
                    number,
                    Check::Trust,
                    format!(
                        "the new channel config trusts CAs that are not in --msp-dir: {}",
                        untrusted.join(", ")
                    ),
                );
            }
        }
        self.report.trust = trust;
        match ChannelConfig::from_config(channel_id, config) {
            Ok(channel) => self.channel = channel,
            Err(e) => self.report.block_problem(
                number,
                Check::Config,
                format!("the new channel config is not usable: {e}"),
            ),
        }
    }
}

/// Verifies every orderer signature of `block` (metadata slot 0) and, through the validation
/// core, that the signers satisfy `/Channel/Orderer/BlockValidation`.
fn check_orderer_signatures(
    report: &mut VerifyReport,
    block: &common::Block,
    header: &common::BlockHeader,
    ctx: &BlockContext<'_>,
) {
    let number = header.number;
    let metadata =
        match metadata_slot(block, BlockMetadataIndex::Signatures).map(common::Metadata::decode) {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                report.block_problem(
                    number,
                    Check::OrdererSignature,
                    format!("metadata slot 0 (orderer signatures) does not decode: {e}"),
                );
                return;
            }
            None => {
                report.block_problem(
                    number,
                    Check::OrdererSignature,
                    "the block has no orderer signature metadata".to_string(),
                );
                return;
            }
        };
    if metadata.signatures.is_empty() {
        report.block_problem(
            number,
            Check::OrdererSignature,
            "the block carries no orderer signature".to_string(),
        );
    }
    let header_bytes = block_header_bytes(header);
    let mut verified = Vec::with_capacity(metadata.signatures.len());
    for (k, sig) in metadata.signatures.iter().enumerate() {
        let signature_header =
            match common::SignatureHeader::decode(sig.signature_header.as_slice()) {
                Ok(h) => h,
                Err(e) => {
                    report.signatures.orderer.record(false);
                    report.block_problem(
                        number,
                        Check::OrdererSignature,
                        format!("orderer signature #{k}: signature header does not decode: {e}"),
                    );
                    continue;
                }
            };
        let creator = &signature_header.creator;
        let identity = match ctx
            .channel
            .msp_manager()
            .deserialize_identity(creator, orderer_validation_time(creator))
        {
            Ok(identity) => identity,
            Err(e) => {
                report.signatures.orderer.record(false);
                report.block_problem(
                    number,
                    Check::OrdererSignature,
                    format!("orderer signature #{k}: the signer is not a valid identity: {e}"),
                );
                continue;
            }
        };
        let signed = [
            metadata.value.as_slice(),
            sig.signature_header.as_slice(),
            header_bytes.as_slice(),
        ]
        .concat();
        let result = identity.verify(&signed, &sig.signature);
        report.signatures.orderer.record(result.is_ok());
        if result.is_ok() {
            verified.push(identity.clone());
        }
        if let Err(e) = result {
            report.block_problem(
                number,
                Check::OrdererSignature,
                format!(
                    "orderer signature #{k} by {} {} does not verify: {e}",
                    identity.msp_id(),
                    identity.subject()
                ),
            );
        }
    }
    // The policy verdict, from the validation core, which checks the header against the data
    // first. When the data hash is broken (reported by the caller) the core stops there, so
    // the policy is evaluated here over the signers verified above against the header as it
    // is, which is what the orderer signed.
    let failure = match verify_block_signatures(block, ctx) {
        Ok(()) => None,
        Err(
            e @ (BlockRejected::BadOrdererSignature { .. }
            | BlockRejected::BadSignatureMetadata { .. }),
        ) => {
            let text = e.to_string();
            Some(
                text.strip_prefix(&format!("block {number}: "))
                    .unwrap_or(&text)
                    .to_string(),
            )
        }
        Err(BlockRejected::BadDataHash { .. }) => {
            let signers = VerifiedSigners::from_identities(verified);
            match ctx
                .channel
                .policies()
                .evaluate_verified(BLOCK_VALIDATION_POLICY, &signers)
            {
                Ok(evaluation) if evaluation.satisfied => None,
                Ok(evaluation) => Some(format!(
                    "orderer signatures do not satisfy {BLOCK_VALIDATION_POLICY}: {}",
                    evaluation.explanation.to_string().trim_end()
                )),
                Err(e) => Some(format!(
                    "{BLOCK_VALIDATION_POLICY} cannot be evaluated: {e}"
                )),
            }
        }
        // Chain problems are reported by the caller.
        Err(_) => None,
    };
    if let Some(text) = failure {
        report.block_problem(number, Check::BlockValidationPolicy, text);
    }
}

/// Verifies the creator signature, the tx-id binding and every endorsement of one
/// transaction. Returns whether its bytes are authentic: the creator signature (which covers
/// the whole payload, read-write set included) verifies, or it is the genesis block's unsigned
/// config envelope.
fn check_transaction(
    report: &mut VerifyReport,
    channel: &ChannelConfig,
    number: u64,
    index: usize,
    view: &TxView,
) -> bool {
    report.transactions += 1;
    let tx_id = view.tx_id().to_string();
    if let Some(what) = &view.undecodable {
        report.tx_problem(number, index, &tx_id, Check::Envelope, what.clone());
    }
    let (Some(envelope), Some(channel_header), Some(signature_header)) = (
        view.envelope.as_ref(),
        view.channel_header.as_ref(),
        view.signature_header.as_ref(),
    ) else {
        return false;
    };
    let at = view.timestamp_secs();
    let msps = channel.msp_manager();

    // The creator signed the payload.
    let mut authentic = false;
    if signature_header.creator.is_empty() {
        authentic = number == 0;
        // Fabric's genesis block carries an unsigned config envelope.
        if number != 0 {
            report.tx_problem(
                number,
                index,
                &tx_id,
                Check::CreatorIdentity,
                "the transaction has no creator".to_string(),
            );
        }
    } else {
        match msps.deserialize_identity(&signature_header.creator, at) {
            Err(e) => {
                report.signatures.creator.record(false);
                report.tx_problem(
                    number,
                    index,
                    &tx_id,
                    Check::CreatorIdentity,
                    format!("creator is not a valid identity of the channel: {e}"),
                );
            }
            Ok(creator) => {
                let result = creator.verify(&envelope.payload, &envelope.signature);
                report.signatures.creator.record(result.is_ok());
                authentic = result.is_ok();
                if let Err(e) = result {
                    report.tx_problem(
                        number,
                        index,
                        &tx_id,
                        Check::CreatorSignature,
                        format!(
                            "creator signature does not verify ({} {}): {e}",
                            creator.msp_id(),
                            creator.subject()
                        ),
                    );
                }
            }
        }
    }

    if channel_header.r#type != HeaderType::EndorserTransaction as i32 {
        return authentic;
    }
    // The tx id is bound to the nonce and creator.
    let expected = compute_tx_id(&signature_header.nonce, &signature_header.creator);
    let bound = expected == channel_header.tx_id;
    report.tx_id_bindings.record(bound);
    if !bound {
        report.tx_problem(
            number,
            index,
            &tx_id,
            Check::TxIdBinding,
            format!("tx id is not sha256(nonce ‖ creator), which is {expected}"),
        );
    }

    // Every endorser signed the proposal response payload.
    let Some(endorser) = view.endorser.as_ref() else {
        return authentic;
    };
    let prp = &endorser.endorsed.proposal_response_payload;
    for (k, endorsement) in endorser.endorsed.endorsements.iter().enumerate() {
        match msps.deserialize_identity(&endorsement.endorser, at) {
            Err(e) => {
                report.signatures.endorser.record(false);
                report.tx_problem(
                    number,
                    index,
                    &tx_id,
                    Check::EndorserIdentity,
                    format!("endorser #{k} is not a valid identity of the channel: {e}"),
                );
            }
            Ok(identity) => {
                let signed = [prp.as_slice(), endorsement.endorser.as_slice()].concat();
                let result = identity.verify(&signed, &endorsement.signature);
                report.signatures.endorser.record(result.is_ok());
                let role = identity
                    .role()
                    .map_or("no NodeOU role".to_string(), |r| r.to_string());
                *report
                    .endorser_roles
                    .entry(format!("{}.{role}", identity.msp_id()))
                    .or_default() += 1;
                if let Err(e) = result {
                    report.tx_problem(
                        number,
                        index,
                        &tx_id,
                        Check::EndorserSignature,
                        format!(
                            "endorsement #{k} by {} {} does not verify: {e}",
                            identity.msp_id(),
                            identity.subject()
                        ),
                    );
                }
            }
        }
    }
    authentic
}

/// The certificates a chain's configuration is checked against (see the module
/// documentation's "Trust").
#[derive(Clone)]
struct ChainTrust {
    /// Trusted CA certificates; every root CA of every config must be among them unless
    /// `trust_config`.
    trusted: Vec<TrustedCert>,
    /// Certificates found but not readable, for the report.
    unreadable: Vec<String>,
    /// Trust the CAs a config names even when they are not in `trusted`.
    trust_config: bool,
}

/// The chaincode policies given with `--chaincode`.
fn explicit_chaincodes(
    args: &VerifyArgs,
) -> Result<BTreeMap<String, EndorsementPolicy>, LedgerToolError> {
    let mut explicit = BTreeMap::new();
    for arg in &args.chaincode {
        let (name, policy) = parse_chaincode_arg(arg)?;
        explicit.insert(name, policy);
    }
    Ok(explicit)
}

fn verify(args: &VerifyArgs) -> Result<(), LedgerToolError> {
    let Some(folder) = &args.blocks else {
        return Err(LedgerToolError::NoBlockFiles(PathBuf::from("--blocks")));
    };
    let blocks = index_blocks(folder)?;
    let first = blocks.first().map_or(0, |b| b.number);
    let Some(genesis) = blocks.first().filter(|b| b.number == 0) else {
        return Err(LedgerToolError::NoGenesis {
            path: folder.clone(),
            first,
        });
    };
    let (trusted, unreadable) = match &args.msp_dir {
        Some(dir) => load_msp_dir(dir)?,
        None => (Vec::new(), Vec::new()),
    };
    let trust = ChainTrust {
        trusted,
        unreadable,
        trust_config: args.trust_config,
    };
    let mut replay = Replay::start(
        &genesis.load()?.block,
        trust,
        explicit_chaincodes(args)?,
        true,
    )?;
    for file in &blocks {
        replay.verify_block(&file.load()?.block)?;
    }
    let (report, _) = replay.finish();

    if args.json {
        stdout(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        stdout(&render_verify(&report))?;
    }
    if report.ok {
        Ok(())
    } else {
        Err(LedgerToolError::Failed(report.problems.len()))
    }
}

fn render_count(count: &Count) -> String {
    format!("{}/{} valid", count.valid, count.checked)
}

fn render_verify(r: &VerifyReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "channel {}: blocks {}..={} ({} blocks, {} transactions)",
        r.channel, r.first_block, r.last_block, r.blocks, r.transactions
    );
    let _ = writeln!(out, "trust");
    for m in &r.trust.msps {
        for root in &m.roots {
            let _ = writeln!(
                out,
                "  {:<14} root CA {}  [{}]",
                m.msp_id,
                root.subject,
                root.trusted_by
                    .as_deref()
                    .unwrap_or("trusted from the config (--trust-config)")
            );
        }
        let _ = writeln!(
            out,
            "  {:<14} NodeOUs {}",
            m.msp_id,
            if m.node_ous { "enabled" } else { "disabled" }
        );
    }
    for cert in &r.trust.msp_dir {
        let _ = writeln!(out, "  {}: {} ({})", cert.file, cert.used_as, cert.subject);
    }
    for e in &r.unreadable_certificates {
        let _ = writeln!(out, "  unreadable certificate {e}");
    }
    let _ = writeln!(out, "chaincodes");
    for cc in &r.chaincodes {
        let _ = writeln!(
            out,
            "  {} {}  endorsement {}  ({})",
            cc.name, cc.version, cc.endorsement, cc.source
        );
    }
    let _ = writeln!(
        out,
        "hash chain        data hashes {}, previous-hash links {}",
        render_count(&r.hash_chain.data_hashes),
        render_count(&r.hash_chain.previous_hash_links)
    );
    let _ = writeln!(
        out,
        "signatures        creator {}, endorser {}, orderer {}",
        render_count(&r.signatures.creator),
        render_count(&r.signatures.endorser),
        render_count(&r.signatures.orderer)
    );
    let roles: Vec<String> = r
        .endorser_roles
        .iter()
        .map(|(role, n)| format!("{role} {n}"))
        .collect();
    let _ = writeln!(out, "endorser roles    {}", roles.join(", "));
    let _ = writeln!(out, "tx-id bindings    {}", render_count(&r.tx_id_bindings));
    let _ = writeln!(
        out,
        "validation codes  {}/{} transactions reproduced ({}/{} blocks)",
        r.validation_codes.transactions.valid,
        r.validation_codes.transactions.checked,
        r.validation_codes.blocks.valid,
        r.validation_codes.blocks.checked
    );
    if r.problems.is_empty() {
        let _ = writeln!(
            out,
            "OK: every hash, link, signature and validation code checks"
        );
    } else {
        let _ = writeln!(out, "{} problem(s):", r.problems.len());
        for p in &r.problems {
            let _ = writeln!(out, "  {}", p.message.replace('\n', "\n      "));
        }
    }
    if !r.notes.is_empty() {
        let _ = writeln!(
            out,
            "{} note(s) on transactions recorded invalid, as re-validation also finds them:",
            r.notes.len()
        );
        for p in &r.notes {
            let _ = writeln!(out, "  {}", p.message.replace('\n', "\n      "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_renders_utc_with_milliseconds() {
        let ts = Timestamp {
            seconds: 1_714_564_800,
            nanos: 123_456_789,
        };
        assert_eq!(rfc3339(&ts), "2024-05-01T12:00:00.123Z");
    }

    #[test]
    fn authenticity_findings_on_consistently_invalid_transactions_are_notes() {
        let genesis = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/fabric-2.5.5-chain/block000.pb"),
        )
        .expect("the fixture genesis block");
        let genesis = common::Block::decode(genesis.as_slice()).expect("a block");
        let trust = ChainTrust {
            trusted: Vec::new(),
            unreadable: Vec::new(),
            trust_config: true,
        };
        let mut replay =
            Replay::start(&genesis, trust, BTreeMap::new(), true).expect("the genesis config");
        let before = replay.report.problems.len();
        let report = &mut replay.report;
        // tx 0: recorded and recomputed ENDORSEMENT_POLICY_FAILURE — refused as it should be.
        report.tx_problem(5, 0, "", Check::EndorserSignature, "tx0".into());
        // tx 1: recorded VALID with a bad endorsement — a fault.
        report.tx_problem(5, 1, "", Check::EndorserSignature, "tx1".into());
        // tx 2: recorded and recomputed codes differ — a fault.
        report.tx_problem(5, 2, "", Check::CreatorSignature, "tx2".into());
        // A block-level finding is never a note.
        report.block_problem(5, Check::DataHash, "block".into());
        replay.demote_invalid_transactions(before, &[10, 0, 10], &[10, 0, 2]);
        let messages =
            |list: &[Problem]| -> Vec<String> { list.iter().map(|p| p.message.clone()).collect() };
        assert_eq!(
            messages(&replay.report.problems[before..]),
            ["block 5 tx 1: tx1", "block 5 tx 2: tx2", "block 5: block"]
        );
        assert_eq!(messages(&replay.report.notes), ["block 5 tx 0: tx0"]);
    }

    #[test]
    fn short_id_keeps_eight_characters() {
        assert_eq!(short_id("d680abcdef"), "d680abcd…");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn chaincode_args_take_signature_policies_and_channel_paths() {
        let (name, policy) = parse_chaincode_arg("basic=/Channel/Application/Endorsement").unwrap();
        assert_eq!(name, "basic");
        assert_eq!(
            policy,
            EndorsementPolicy::ChannelPolicy("/Channel/Application/Endorsement".to_string())
        );
        let (_, policy) = parse_chaincode_arg("basic=OR('A.peer','B.peer')").unwrap();
        assert!(matches!(policy, EndorsementPolicy::Signature(_)));
        assert!(parse_chaincode_arg("basic").is_err());
        assert!(parse_chaincode_arg("basic=OR('A.peer'").is_err());
    }

    #[test]
    fn lifecycle_validation_info_defines_the_endorsement_policy() {
        let parameter = protos::ApplicationPolicy {
            r#type: Some(
                protos::application_policy::Type::ChannelConfigPolicyReference(
                    "/Channel/Application/Endorsement".to_string(),
                ),
            ),
        }
        .encode_to_vec();
        let info = ChaincodeValidationInfo {
            validation_plugin: "vscc".to_string(),
            validation_parameter: parameter,
        }
        .encode_to_vec();
        let endorsement = ChaincodeEndorsementInfo {
            version: "1.0".to_string(),
            init_required: false,
        }
        .encode_to_vec();
        let write = |field: &str, bytes: Vec<u8>| StateWrite {
            namespace: LIFECYCLE_NAMESPACE.to_string(),
            key: format!("namespaces/fields/basic/{field}"),
            value: Some(LifecycleStateData { bytes }.encode_to_vec()),
        };
        let mut known = BTreeMap::new();
        let problems = learn_lifecycle(
            &[
                write("EndorsementInfo", endorsement),
                write("ValidationInfo", info),
            ],
            7,
            &mut known,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let basic = &known["basic"];
        assert_eq!(basic.version, "1.0");
        assert_eq!(
            basic.endorsement,
            Some(EndorsementPolicy::ChannelPolicy(
                "/Channel/Application/Endorsement".to_string()
            ))
        );
        assert_eq!(basic.source, "_lifecycle, block 7");
    }
}
