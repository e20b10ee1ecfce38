//! `gridledger ledger verify --dir` and `gridledger ledger compare`: the stored ledgers of
//! stopped nodes, read offline through `gridledger_ledger::LedgerReader`.
//!
//! - `verify --dir DIR` finds every channel ledger under DIR — a network directory made by
//!   `gridledger up` (`network.json`; every orderer and peer under `nodes/<name>/data`), one
//!   node's data directory (`channels/<channel>/ledger.redb`) or one channel's directory — and
//!   runs each through the same chain verifier as `verify --blocks` ([`super::Replay`]): hash
//!   chain, data hashes, orderer signatures against the orderer organizations' CAs of the
//!   configuration in force at each block, creator and endorser signatures, and the recorded
//!   validation codes against a re-validation. On top it checks what only a stored ledger has:
//!   the header hashes the ledger recorded per block, its recorded height and tip, its tx-id
//!   index (block, position and code of each transaction), and, on
//!   a peer, that the world state recomputed from the blocks (the writes of the valid
//!   transactions, in order, private-data hashes included) equals the stored state key for key
//!   (value, version and metadata), and that every private value a member peer keeps matches
//!   its hash. An orderer's blocks carry no validation codes and its ledger no state: its
//!   chains are checked up to the signatures, and re-validation decides which config blocks
//!   apply.
//! - `compare A B` compares two peers' ledgers channel by channel: block by block up to the
//!   lower height (header hash, data, validation codes), then, at equal heights, the world
//!   state outside the private-value namespaces (a state hash, and the first differing key).
//!   A peer that is only behind is reported as lagging, not as diverging.
//!
//! Trust for `verify --dir`: `--msp-dir` when given; for a network directory, the CA
//! certificates of its `crypto/` folder, so the genesis configuration's CAs must be the
//! network's own; otherwise the genesis block's configuration is the trust anchor.
//!
//! Both commands need the nodes stopped: a running node holds its ledger file locked, which is
//! reported as "in use: stop the node first" for that ledger.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use clap::Args;
use gridledger_ledger::{LedgerError, LedgerReader, StateEntry, StateHasher, is_private_namespace};
use gridledger_peer::validation::{CommittedState, EndorsementPolicy, InMemoryState, hashed_key};
use gridledger_proto::common;
use gridledger_proto::prost::Message;
use gridledger_proto::{block_header_hash, blockutil::sha256};
use serde::Serialize;

use gridledger_proto::protos::TxValidationCode;

use super::{
    ChainTrust, LedgerToolError, Replay, TrustedCert, VerifyArgs, VerifyReport, block_data,
    code_name, decode_tx, explicit_chaincodes, load_msp_dir, metadata_slot, stdout,
};

/// The file `gridledger up` writes at the top of a network directory.
const NETWORK_FILE: &str = "network.json";
/// The folder of a node's channels inside its data directory.
const CHANNELS_DIR: &str = "channels";
/// A channel directory of an orderer holds its Raft log beside the ledger.
const RAFT_FILE: &str = "raft.redb";
/// How many problems of one ledger the text output lists.
const SHOWN_PROBLEMS: usize = 10;

/// Arguments of `gridledger ledger compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The first peer's data directory (holding `channels/`), or its node directory.
    #[arg(value_name = "A", required_unless_present = "dir")]
    pub a: Option<PathBuf>,
    /// The second peer's data directory (holding `channels/`), or its node directory.
    #[arg(value_name = "B", required_unless_present = "dir")]
    pub b: Option<PathBuf>,
    /// A network directory made by `gridledger up`; name the two peers with --nodes.
    #[arg(long, value_name = "NETWORK_DIR", conflicts_with_all = ["a", "b"], requires = "nodes")]
    pub dir: Option<PathBuf>,
    /// The two nodes of --dir to compare, e.g. `peer0.dso,peer0.retailer`.
    #[arg(
        long,
        value_name = "NODE,NODE",
        value_delimiter = ',',
        requires = "dir"
    )]
    pub nodes: Vec<String>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

// ---------------------------------------------------------------------------------------------
// Finding the ledgers.

/// What kind of node holds a ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum NodeKind {
    Peer,
    Orderer,
}

/// One node's data directory.
#[derive(Debug, Clone)]
struct NodeDir {
    name: String,
    /// Known from `network.json`; otherwise decided per channel (an orderer keeps `raft.redb`).
    kind: Option<NodeKind>,
    data: PathBuf,
}

/// One channel ledger of one node.
#[derive(Debug, Clone)]
struct Target {
    node: String,
    kind: NodeKind,
    channel: String,
    dir: PathBuf,
}

/// What a `--dir` argument turned out to be.
enum Layout {
    /// A network directory: its nodes, and the folder of its crypto material.
    Network {
        nodes: Vec<NodeDir>,
        crypto: PathBuf,
    },
    /// One node's data directory.
    Node(NodeDir),
    /// One channel's directory.
    Channel(Target),
}

/// The node and org lists of `network.json` this command reads.
#[derive(serde::Deserialize)]
struct NetworkFile {
    #[serde(default)]
    orderers: Vec<Named>,
    #[serde(default)]
    organizations: Vec<NetworkOrg>,
}

#[derive(serde::Deserialize)]
struct Named {
    name: String,
}

#[derive(serde::Deserialize)]
struct NetworkOrg {
    #[serde(default)]
    peers: Vec<Named>,
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The kind of node a channel directory belongs to, when not known otherwise.
fn kind_of(channel_dir: &Path, known: Option<NodeKind>) -> NodeKind {
    known.unwrap_or(if channel_dir.join(RAFT_FILE).exists() {
        NodeKind::Orderer
    } else {
        NodeKind::Peer
    })
}

/// Works out what `dir` is.
fn discover(dir: &Path) -> Result<Layout, LedgerToolError> {
    std::fs::metadata(dir).map_err(|source| LedgerToolError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let network_file = dir.join(NETWORK_FILE);
    if network_file.is_file() {
        let text =
            std::fs::read_to_string(&network_file).map_err(|source| LedgerToolError::Io {
                path: network_file.clone(),
                source,
            })?;
        let network: NetworkFile =
            serde_json::from_str(&text).map_err(|e| LedgerToolError::NetworkFile {
                path: network_file.clone(),
                reason: e.to_string(),
            })?;
        let node = |name: &str, kind| NodeDir {
            name: name.to_string(),
            kind: Some(kind),
            data: dir.join("nodes").join(name).join("data"),
        };
        let mut nodes: Vec<NodeDir> = network
            .orderers
            .iter()
            .map(|o| node(&o.name, NodeKind::Orderer))
            .collect();
        nodes.extend(
            network
                .organizations
                .iter()
                .flat_map(|o| &o.peers)
                .map(|p| node(&p.name, NodeKind::Peer)),
        );
        if nodes.is_empty() {
            return Err(LedgerToolError::NetworkFile {
                path: network_file,
                reason: "it lists no orderer and no peer".to_string(),
            });
        }
        return Ok(Layout::Network {
            nodes,
            crypto: dir.join("crypto"),
        });
    }
    if dir.join(CHANNELS_DIR).is_dir() {
        // A data directory is usually `nodes/<name>/data`: name it after its node.
        let name = if file_name(dir) == "data" {
            dir.parent().map_or_else(|| file_name(dir), file_name)
        } else {
            file_name(dir)
        };
        return Ok(Layout::Node(NodeDir {
            name,
            kind: None,
            data: dir.to_path_buf(),
        }));
    }
    if dir.join("data").join(CHANNELS_DIR).is_dir() {
        return Ok(Layout::Node(NodeDir {
            name: file_name(dir),
            kind: None,
            data: dir.join("data"),
        }));
    }
    if dir.join(gridledger_ledger::LEDGER_FILE).is_file() {
        let node = dir.parent().and_then(Path::parent).map_or_else(
            || "?".to_string(),
            |p| {
                // `<node>/data/channels/<channel>`: skip `data`.
                if file_name(p) == "data" {
                    p.parent().map_or_else(|| file_name(p), file_name)
                } else {
                    file_name(p)
                }
            },
        );
        return Ok(Layout::Channel(Target {
            node,
            kind: kind_of(dir, None),
            channel: file_name(dir),
            dir: dir.to_path_buf(),
        }));
    }
    Err(LedgerToolError::NotALedgerDir(dir.to_path_buf()))
}

/// The channel ledgers of a node, by channel name; an unreadable node is one failure.
fn channels_of(node: &NodeDir) -> Result<Vec<Target>, String> {
    let folder = node.data.join(CHANNELS_DIR);
    let entries =
        std::fs::read_dir(&folder).map_err(|e| format!("cannot list {}: {e}", folder.display()))?;
    let mut out: Vec<Target> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .map(|dir| Target {
            node: node.name.clone(),
            kind: kind_of(&dir, node.kind),
            channel: file_name(&dir),
            dir,
        })
        .collect();
    out.sort_by(|a, b| a.channel.cmp(&b.channel));
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// verify --dir

/// One thing that did not check in a stored ledger.
#[derive(Debug, Clone, Serialize)]
struct Finding {
    check: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    block: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tx: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    message: String,
}

impl Finding {
    fn block(check: &str, block: u64, message: String) -> Finding {
        Finding {
            check: check.to_string(),
            block: Some(block),
            tx: None,
            key: None,
            message,
        }
    }

    fn other(check: &str, message: String) -> Finding {
        Finding {
            check: check.to_string(),
            block: None,
            tx: None,
            key: None,
            message,
        }
    }
}

/// What the stored world state of a peer was found to be.
#[derive(Debug, Default, Serialize)]
struct StateSummary {
    /// Keys outside the private-value namespaces.
    keys: u64,
    /// `LedgerReader::state_hash` of the stored state.
    hash: String,
    /// Private values this peer keeps (checked against their hashes).
    private_values: u64,
    /// Keys whose stored and recomputed entries differ.
    differing_keys: u64,
}

/// The verdict on one node × channel.
#[derive(Debug, Serialize)]
struct LedgerResult {
    node: String,
    kind: NodeKind,
    channel: String,
    path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u64>,
    ok: bool,
    /// The original file needed repair (its writer did not close it): a repaired copy was read.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    repaired_copy: bool,
    problems: Vec<Finding>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<Finding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<StateSummary>,
    /// The chain verifier's full report (counts, trust, chaincodes).
    #[serde(skip_serializing_if = "Option::is_none")]
    chain: Option<VerifyReport>,
}

/// What `verify --dir` found.
#[derive(Debug, Serialize)]
struct DirReport {
    ok: bool,
    dir: PathBuf,
    /// Where trust came from.
    trust: String,
    ledgers: Vec<LedgerResult>,
    nodes: usize,
    failed: usize,
}

/// The CA certificates of a network's crypto folder, each once.
fn network_cas(crypto: &Path) -> Result<(Vec<TrustedCert>, Vec<String>), LedgerToolError> {
    let (certs, unreadable) = load_msp_dir(crypto)?;
    let mut seen = std::collections::HashSet::new();
    let cas = certs
        .into_iter()
        .filter(|t| t.cert.is_ca && seen.insert(t.cert.der.clone()))
        .collect();
    Ok((cas, unreadable))
}

pub(super) fn verify_dir(args: &VerifyArgs, dir: &Path) -> Result<(), LedgerToolError> {
    let layout = discover(dir)?;
    let explicit = explicit_chaincodes(args)?;
    let checked_against = |(trusted, unreadable): (Vec<TrustedCert>, Vec<String>)| ChainTrust {
        trusted,
        unreadable,
        trust_config: args.trust_config,
    };
    let (trust, trust_text) = match (&args.msp_dir, &layout) {
        (Some(msp_dir), _) => (
            checked_against(load_msp_dir(msp_dir)?),
            format!("--msp-dir {}", msp_dir.display()),
        ),
        (None, Layout::Network { crypto, .. }) if !args.trust_config => (
            checked_against(network_cas(crypto)?),
            format!("the network's CAs in {}", crypto.display()),
        ),
        _ => (
            ChainTrust {
                trusted: Vec::new(),
                unreadable: Vec::new(),
                trust_config: true,
            },
            "each chain's genesis configuration".to_string(),
        ),
    };
    let mut ledgers = Vec::new();
    let mut node_count = 0;
    let mut targets: Vec<Result<Target, LedgerResult>> = Vec::new();
    match layout {
        Layout::Network { nodes, .. } => {
            node_count = nodes.len();
            for node in &nodes {
                push_node(node, &mut targets);
            }
        }
        Layout::Node(node) => {
            node_count = 1;
            push_node(&node, &mut targets);
        }
        Layout::Channel(target) => {
            node_count += 1;
            targets.push(Ok(target));
        }
    }
    for target in targets {
        let result = match target {
            Ok(target) => verify_target(&target, &trust, &explicit),
            Err(failed) => failed,
        };
        ledgers.push(result);
    }
    let failed = ledgers.iter().filter(|l| !l.ok).count();
    let report = DirReport {
        ok: failed == 0 && !ledgers.is_empty(),
        dir: dir.to_path_buf(),
        trust: trust_text,
        nodes: node_count,
        failed,
        ledgers,
    };
    if args.json {
        stdout(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        stdout(&render_dir(&report))?;
    }
    if report.ok {
        Ok(())
    } else {
        Err(LedgerToolError::Failed(
            report
                .ledgers
                .iter()
                .map(|l| l.problems.len())
                .sum::<usize>()
                + usize::from(report.ledgers.is_empty()),
        ))
    }
}

/// Adds the channel ledgers of `node`, or one failure when its folder cannot be listed.
fn push_node(node: &NodeDir, targets: &mut Vec<Result<Target, LedgerResult>>) {
    match channels_of(node) {
        Ok(found) if found.is_empty() => targets.push(Err(failure(
            &node.name,
            node.kind.unwrap_or(NodeKind::Peer),
            "-",
            &node.data,
            format!(
                "{} holds no channel ledger",
                node.data.join(CHANNELS_DIR).display()
            ),
        ))),
        Ok(found) => targets.extend(found.into_iter().map(Ok)),
        Err(reason) => targets.push(Err(failure(
            &node.name,
            node.kind.unwrap_or(NodeKind::Peer),
            "-",
            &node.data,
            reason,
        ))),
    }
}

fn failure(
    node: &str,
    kind: NodeKind,
    channel: &str,
    path: &Path,
    message: String,
) -> LedgerResult {
    LedgerResult {
        node: node.to_string(),
        kind,
        channel: channel.to_string(),
        path: path.to_path_buf(),
        height: None,
        ok: false,
        repaired_copy: false,
        problems: vec![Finding::other("open", message)],
        notes: Vec::new(),
        state: None,
        chain: None,
    }
}

/// A message for a ledger that cannot be opened, telling the operator what to do.
fn open_failure(e: &LedgerError) -> String {
    match e {
        LedgerError::InUse { path } => {
            format!("{} is in use: stop the node first", path.display())
        }
        other => other.to_string(),
    }
}

/// The name the chain verifier gives a check, as in its JSON.
fn check_name(check: super::Check) -> String {
    serde_json::to_value(check)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn finding_of(p: &super::Problem) -> Finding {
    Finding {
        check: check_name(p.check),
        block: Some(p.block),
        tx: p.tx,
        key: None,
        message: p.message.clone(),
    }
}

/// Verifies one node × channel ledger.
fn verify_target(
    target: &Target,
    trust: &ChainTrust,
    explicit: &BTreeMap<String, EndorsementPolicy>,
) -> LedgerResult {
    let mut result = LedgerResult {
        node: target.node.clone(),
        kind: target.kind,
        channel: target.channel.clone(),
        path: target.dir.join(gridledger_ledger::LEDGER_FILE),
        height: None,
        ok: false,
        repaired_copy: false,
        problems: Vec::new(),
        notes: Vec::new(),
        state: None,
        chain: None,
    };
    let reader = match LedgerReader::open(&target.dir) {
        Ok(reader) => reader,
        Err(e) => {
            result
                .problems
                .push(Finding::other("open", open_failure(&e)));
            return result;
        }
    };
    result.repaired_copy = reader.repaired_copy().is_some();
    result.height = Some(reader.height());
    if let Err(e) = check_ledger(&reader, target, trust, explicit, &mut result) {
        result.problems.push(Finding::other(
            "storage",
            format!("reading the ledger failed: {e}"),
        ));
    }
    result.ok = result.problems.is_empty();
    result
}

/// The checks of [`verify_target`] on an open ledger; `Err` when the file cannot be read.
fn check_ledger(
    reader: &LedgerReader,
    target: &Target,
    trust: &ChainTrust,
    explicit: &BTreeMap<String, EndorsementPolicy>,
    result: &mut LedgerResult,
) -> Result<(), LedgerError> {
    if reader.channel_id() != target.channel {
        result.problems.push(Finding::other(
            "channel",
            format!(
                "the ledger in folder {:?} records channel {:?}",
                target.channel,
                reader.channel_id()
            ),
        ));
    }
    let height = reader.height();
    let numbers = reader.block_numbers()?;
    if let Some((i, n)) = numbers.iter().enumerate().find(|(i, n)| **n != *i as u64) {
        result.problems.push(Finding::block(
            "block_number",
            i as u64,
            format!("block {i} is not stored (the next stored block is {n})"),
        ));
    } else if numbers.len() as u64 != height {
        result.problems.push(Finding::other(
            "height",
            format!(
                "the ledger records height {height} but stores {} blocks",
                numbers.len()
            ),
        ));
    }
    if height == 0 {
        result.problems.push(Finding::other(
            "height",
            "the ledger holds no block".to_string(),
        ));
        return Ok(());
    }

    let mut replay: Option<Replay> = None;
    let mut last_hash: Option<[u8; 32]> = None;
    let mut last_previous = Vec::new();
    for number in 0..height {
        let Some(stored) = reader.stored_block(number)? else {
            // Reported above as a gap; the chain cannot be followed past it.
            break;
        };
        let block = match common::Block::decode(stored.bytes.as_slice()) {
            Ok(block) => block,
            Err(e) => {
                result.problems.push(Finding::block(
                    "block_decode",
                    number,
                    format!("block {number}: the stored bytes are not a common.Block: {e}"),
                ));
                break;
            }
        };
        let Some(header) = block.header.as_ref() else {
            result.problems.push(Finding::block(
                "block_decode",
                number,
                format!("block {number}: the stored block has no header"),
            ));
            break;
        };
        if header.number != number {
            result.problems.push(Finding::block(
                "block_number",
                number,
                format!(
                    "block stored as number {number} says it is number {}",
                    header.number
                ),
            ));
            break;
        }
        let computed = block_header_hash(header);
        if stored.recorded_header_hash.as_deref() != Some(computed.as_slice()) {
            result.problems.push(Finding::block(
                "header_hash",
                number,
                format!(
                    "block {number}: the ledger recorded header hash {} but the stored block's header hashes to {}",
                    stored
                        .recorded_header_hash
                        .as_deref()
                        .map_or("<none>".to_string(), hex::encode),
                    hex::encode(computed)
                ),
            ));
        }
        last_hash = Some(computed);
        last_previous = header.previous_hash.clone();
        check_tx_index(reader, &block, number, target.kind, result)?;
        let replaying = match replay.as_mut() {
            Some(replay) => replay,
            None => match Replay::start(
                &block,
                trust.clone(),
                explicit.clone(),
                target.kind == NodeKind::Peer,
            ) {
                Ok(started) => replay.insert(started),
                Err(e) => {
                    result
                        .problems
                        .push(Finding::block("genesis", 0, e.to_string()));
                    return Ok(());
                }
            },
        };
        if let Err(e) = replaying.verify_block(&block) {
            result
                .problems
                .push(Finding::block("validation", number, e.to_string()));
            break;
        }
    }
    let info = reader.info();
    if last_hash.is_some_and(|h| h.as_slice() != info.current_block_hash.as_slice())
        || info.previous_block_hash != last_previous
    {
        result.problems.push(Finding::other(
            "tip",
            format!(
                "the recorded tip (hash {}, previous {}) is not the last stored block",
                hex::encode(&info.current_block_hash),
                hex::encode(&info.previous_block_hash)
            ),
        ));
    }
    let Some(replay) = replay else {
        return Ok(());
    };
    let (mut chain, state) = replay.finish();
    result
        .problems
        .extend(chain.problems.iter().map(finding_of));
    result.notes.extend(chain.notes.iter().map(finding_of));
    chain.trust.msp_dir.clear();
    result.chain = Some(chain);
    if target.kind == NodeKind::Peer {
        let (summary, findings) = check_state(reader, &state)?;
        result.problems.extend(findings);
        result.state = Some(summary);
    }
    Ok(())
}

/// Checks the ledger's tx-id index (what a client's commit-status query reads) against the
/// block: an endorser transaction the block records as VALID, and on an orderer any
/// transaction, owns its tx id in the index unless an earlier one does, and the index holds
/// the code the block records (an orderer's blocks carry none: NOT_VALIDATED).
fn check_tx_index(
    reader: &LedgerReader,
    block: &common::Block,
    number: u64,
    kind: NodeKind,
    result: &mut LedgerResult,
) -> Result<(), LedgerError> {
    let codes =
        metadata_slot(block, common::BlockMetadataIndex::TransactionsFilter).unwrap_or_default();
    for (i, envelope) in block_data(block).iter().enumerate() {
        let view = decode_tx(envelope);
        let tx_id = view.tx_id();
        if tx_id.is_empty() {
            continue;
        }
        let code = match (kind, codes.get(i)) {
            (_, Some(code)) => *code,
            (NodeKind::Orderer, None) => TxValidationCode::NotValidated as u8,
            // A missing code is reported by the chain verifier.
            (NodeKind::Peer, None) => continue,
        };
        // A peer indexes the endorser transactions it validated (config transactions, the
        // genesis block's included, are not indexed by a peer).
        let endorser = view.header_type() == Some(common::HeaderType::EndorserTransaction as i32);
        let must_own =
            kind == NodeKind::Orderer || (endorser && code == TxValidationCode::Valid as u8);
        let here = (number, i as u64);
        let problem = match reader.tx_location(tx_id)? {
            Some(at) if (at.block_num, at.tx_num) == here => {
                (at.validation_code != code).then(|| {
                    format!(
                        "the tx-id index records {}, the block {}",
                        code_name(at.validation_code),
                        code_name(code)
                    )
                })
            }
            Some(at) if must_own && (at.block_num, at.tx_num) > here => Some(format!(
                "the tx-id index points to block {} tx {} instead",
                at.block_num, at.tx_num
            )),
            Some(_) => None,
            None => must_own.then(|| "the tx id is missing from the tx-id index".to_string()),
        };
        if let Some(what) = problem {
            result.problems.push(Finding {
                check: "tx_index".to_string(),
                block: Some(number),
                tx: Some(i),
                key: None,
                message: format!("block {number} tx {i} ({tx_id}): {what}"),
            });
        }
    }
    Ok(())
}

/// Walks the stored state beside the recomputed one (both in key order): every stored key
/// outside the private-value namespaces must be the recomputed key with the same value,
/// version and metadata, and every recomputed key must be stored. Private values must match
/// their hash rows. Reports the first difference of each kind and counts them.
fn check_state(
    reader: &LedgerReader,
    recomputed: &InMemoryState,
) -> Result<(StateSummary, Vec<Finding>), LedgerError> {
    let mut summary = StateSummary::default();
    let mut hasher = StateHasher::default();
    let mut findings: Vec<Finding> = Vec::new();
    let mut private_bad: Option<Finding> = None;
    let mut expected = recomputed.entries().peekable();
    let mut first_difference: Option<Finding> = None;
    let mut differ = |finding: Finding, summary: &mut StateSummary| {
        summary.differing_keys += 1;
        first_difference.get_or_insert(finding);
    };
    let metadata_of = |ns: &str, key: &str| {
        recomputed
            .metadata(ns, key)
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    reader.scan_state(|entry: StateEntry| {
        if is_private_namespace(&entry.namespace) {
            summary.private_values += 1;
            if private_bad.is_none() {
                private_bad = check_private_value(&entry, recomputed);
            }
            return ControlFlow::Continue(());
        }
        summary.keys += 1;
        hasher.add(&entry);
        let here = (entry.namespace.as_str(), entry.key.as_str());
        while let Some((ns, key, _, _)) = expected.peek() {
            if (*ns, *key) >= here {
                break;
            }
            differ(
                key_finding(
                    ns,
                    key,
                    "is written by the blocks but missing from the stored state",
                ),
                &mut summary,
            );
            expected.next();
        }
        match expected.peek() {
            Some((ns, key, value, version)) if (*ns, *key) == here => {
                let mut what = Vec::new();
                if *value != entry.value.as_slice() {
                    what.push(format!(
                        "stored value {} but the blocks give {}",
                        preview(&entry.value),
                        preview(value)
                    ));
                }
                if (version.block_num, version.tx_num)
                    != (entry.version.block_num, entry.version.tx_num)
                {
                    what.push(format!(
                        "stored version ({}, {}) but the blocks give ({}, {})",
                        entry.version.block_num,
                        entry.version.tx_num,
                        version.block_num,
                        version.tx_num
                    ));
                }
                if metadata_of(ns, key) != entry.metadata {
                    what.push("stored metadata differs from the blocks'".to_string());
                }
                if !what.is_empty() {
                    differ(key_finding(ns, key, &what.join("; ")), &mut summary);
                }
                expected.next();
            }
            _ => differ(
                key_finding(
                    &entry.namespace,
                    &entry.key,
                    "is in the stored state but no valid transaction of the blocks wrote it",
                ),
                &mut summary,
            ),
        }
        ControlFlow::Continue(())
    })?;
    for (ns, key, _, _) in expected {
        differ(
            key_finding(
                ns,
                key,
                "is written by the blocks but missing from the stored state",
            ),
            &mut summary,
        );
    }
    if let Some(mut first) = first_difference {
        if summary.differing_keys > 1 {
            first.message = format!(
                "{} (first of {} differing keys)",
                first.message, summary.differing_keys
            );
        }
        findings.push(first);
    }
    findings.extend(private_bad);
    summary.hash = hex::encode(hasher.finish().0);
    Ok((summary, findings))
}

/// A private value (`ns$$pcoll`) must have its hash row (`ns$$hcoll`, hex of the key's hash)
/// in the recomputed state, holding the hash of the value.
fn check_private_value(entry: &StateEntry, recomputed: &InMemoryState) -> Option<Finding> {
    let hashed_ns = entry
        .namespace
        .replacen(gridledger_ledger::PRIVATE_NAMESPACE_MARKER, "$$h", 1);
    let hashed = hashed_key(&sha256(entry.key.as_bytes()));
    let problem = match recomputed.get(&hashed_ns, &hashed) {
        None => "is stored but the blocks hold no hash of it (deleted, purged or expired)",
        Some((hash, _)) if hash != sha256(&entry.value).as_slice() => {
            "does not match the hash the blocks hold for it"
        }
        Some(_) => return None,
    };
    let mut finding = key_finding(
        &entry.namespace,
        &entry.key,
        &format!("private value {problem}"),
    );
    finding.check = "private_data".to_string();
    Some(finding)
}

fn key_finding(namespace: &str, key: &str, what: &str) -> Finding {
    Finding {
        check: "state".to_string(),
        block: None,
        tx: None,
        key: Some(format!("{namespace}/{key}")),
        message: format!("state key {namespace}/{key:?} {what}"),
    }
}

/// A short, printable view of a value.
fn preview(value: &[u8]) -> String {
    const MAX: usize = 48;
    let shown = &value[..value.len().min(MAX)];
    let text = match std::str::from_utf8(shown) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => format!("{s:?}"),
        _ => format!("0x{}", hex::encode(shown)),
    };
    if value.len() > MAX {
        format!("{text}… ({} bytes)", value.len())
    } else {
        text
    }
}

fn render_dir(r: &DirReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "trust: {}", r.trust);
    for l in &r.ledgers {
        let height = l.height.map_or("-".to_string(), |h| h.to_string());
        let verdict = if l.ok {
            let mut text = "OK".to_string();
            if let Some(state) = &l.state {
                let _ = write!(
                    text,
                    " (state {} keys, hash {}",
                    state.keys,
                    &state.hash[..state.hash.len().min(16)]
                );
                if state.private_values > 0 {
                    let _ = write!(text, ", {} private values", state.private_values);
                }
                text.push(')');
            }
            text
        } else {
            format!(
                "FAILED: {}",
                l.problems.first().map_or("", |p| p.message.as_str())
            )
        };
        let _ = writeln!(
            out,
            "{:<16} {:<8} {:<18} height {:<6} {verdict}",
            l.node,
            match l.kind {
                NodeKind::Peer => "peer",
                NodeKind::Orderer => "orderer",
            },
            l.channel,
            height
        );
        if l.repaired_copy {
            let _ = writeln!(
                out,
                "    note: the file was not closed cleanly; a repaired copy was verified"
            );
        }
        for p in l.problems.iter().skip(1).take(SHOWN_PROBLEMS - 1) {
            let _ = writeln!(out, "    {}", p.message.replace('\n', "\n      "));
        }
        if l.problems.len() > SHOWN_PROBLEMS {
            let _ = writeln!(
                out,
                "    … and {} more (see --json)",
                l.problems.len() - SHOWN_PROBLEMS
            );
        }
        if !l.notes.is_empty() {
            let _ = writeln!(
                out,
                "    {} note(s) on transactions recorded invalid as re-validation finds them (see --json)",
                l.notes.len()
            );
        }
    }
    let _ = writeln!(
        out,
        "{} ledger(s) on {} node(s): {} OK, {} FAILED",
        r.ledgers.len(),
        r.nodes,
        r.ledgers.len() - r.failed,
        r.failed
    );
    out
}

// ---------------------------------------------------------------------------------------------
// compare

/// How two ledgers of one channel relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Relation {
    /// Same blocks, codes and state.
    Identical,
    /// One is a prefix of the other.
    Lagging,
    /// They differ in a block or in the state.
    Diverged,
    /// Only one of the two holds the channel.
    NotShared,
    /// A ledger could not be read.
    Error,
}

/// The comparison of one channel.
#[derive(Debug, Serialize)]
struct ChannelComparison {
    channel: String,
    relation: Relation,
    #[serde(skip_serializing_if = "Option::is_none")]
    height_a: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height_b: Option<u64>,
    /// Blocks compared (the lower height).
    blocks_compared: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_hash_a: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_hash_b: Option<String>,
    /// What differs, where; or why the comparison could not be made.
    details: Vec<String>,
}

/// What `compare` found.
#[derive(Debug, Serialize)]
struct CompareReport {
    ok: bool,
    a: String,
    b: String,
    channels: Vec<ChannelComparison>,
    diverged: usize,
}

/// The two nodes to compare, from the positional arguments or `--dir` and `--nodes`.
fn compare_nodes(args: &CompareArgs) -> Result<(NodeDir, NodeDir), LedgerToolError> {
    let as_node = |path: &Path| -> Result<NodeDir, LedgerToolError> {
        match discover(path)? {
            Layout::Node(node) => Ok(node),
            Layout::Network { .. } => Err(LedgerToolError::NetworkFile {
                path: path.join(NETWORK_FILE),
                reason: format!(
                    "{} is a network directory: name two of its nodes with `gridledger ledger compare --dir {} --nodes NODE,NODE`",
                    path.display(),
                    path.display()
                ),
            }),
            Layout::Channel(_) => Err(LedgerToolError::NotALedgerDir(path.to_path_buf())),
        }
    };
    match (&args.dir, &args.a, &args.b) {
        (Some(dir), _, _) => {
            let Layout::Network { nodes, .. } = discover(dir)? else {
                return Err(LedgerToolError::NetworkFile {
                    path: dir.join(NETWORK_FILE),
                    reason: "--dir must be a network directory made by `gridledger up`".to_string(),
                });
            };
            let [a, b] = args.nodes.as_slice() else {
                return Err(LedgerToolError::NetworkFile {
                    path: dir.join(NETWORK_FILE),
                    reason: format!(
                        "--nodes must name exactly two nodes, got {}",
                        args.nodes.len()
                    ),
                });
            };
            let find = |name: &str| {
                nodes
                    .iter()
                    .find(|n| n.name == name.trim())
                    .cloned()
                    .ok_or_else(|| LedgerToolError::NetworkFile {
                        path: dir.join(NETWORK_FILE),
                        reason: format!(
                            "no node named {name:?}; the network has {}",
                            nodes
                                .iter()
                                .map(|n| n.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    })
            };
            Ok((find(a)?, find(b)?))
        }
        (None, Some(a), Some(b)) => Ok((as_node(a)?, as_node(b)?)),
        _ => Err(LedgerToolError::NotALedgerDir(PathBuf::from(
            "<compare needs A and B, or --dir and --nodes>",
        ))),
    }
}

pub(super) fn compare(args: &CompareArgs) -> Result<(), LedgerToolError> {
    let (a, b) = compare_nodes(args)?;
    let list = |node: &NodeDir| -> Result<BTreeMap<String, Target>, LedgerToolError> {
        channels_of(node)
            .map(|targets| {
                targets
                    .into_iter()
                    .map(|t| (t.channel.clone(), t))
                    .collect()
            })
            .map_err(|_| LedgerToolError::NotALedgerDir(node.data.clone()))
    };
    let (channels_a, channels_b) = (list(&a)?, list(&b)?);
    let mut names: Vec<&String> = channels_a.keys().chain(channels_b.keys()).collect();
    names.sort();
    names.dedup();
    let mut channels = Vec::new();
    for name in names {
        let comparison = match (channels_a.get(name), channels_b.get(name)) {
            (Some(ta), Some(tb)) => compare_channel(name, ta, tb),
            (only_a, _) => ChannelComparison {
                channel: name.clone(),
                relation: Relation::NotShared,
                height_a: None,
                height_b: None,
                blocks_compared: 0,
                state_hash_a: None,
                state_hash_b: None,
                details: vec![format!(
                    "only {} holds this channel",
                    if only_a.is_some() { &a.name } else { &b.name }
                )],
            },
        };
        channels.push(comparison);
    }
    let diverged = channels
        .iter()
        .filter(|c| matches!(c.relation, Relation::Diverged | Relation::Error))
        .count();
    let report = CompareReport {
        ok: diverged == 0,
        a: a.name.clone(),
        b: b.name.clone(),
        channels,
        diverged,
    };
    if args.json {
        stdout(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        stdout(&render_compare(&report))?;
    }
    if report.ok {
        Ok(())
    } else {
        Err(LedgerToolError::Diverged(diverged))
    }
}

/// The parts of a stored block that two correct peers hold identically.
struct BlockParts {
    header_hash: [u8; 32],
    data: Vec<Vec<u8>>,
    codes: Vec<u8>,
}

fn block_parts(reader: &LedgerReader, number: u64) -> Result<BlockParts, String> {
    let stored = reader
        .stored_block(number)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("block {number} is not stored"))?;
    let block = common::Block::decode(stored.bytes.as_slice())
        .map_err(|e| format!("block {number} does not decode: {e}"))?;
    let header = block
        .header
        .as_ref()
        .ok_or_else(|| format!("block {number} has no header"))?;
    Ok(BlockParts {
        header_hash: block_header_hash(header),
        data: block_data(&block).to_vec(),
        codes: metadata_slot(&block, common::BlockMetadataIndex::TransactionsFilter)
            .unwrap_or_default()
            .to_vec(),
    })
}

fn compare_channel(channel: &str, ta: &Target, tb: &Target) -> ChannelComparison {
    let mut out = ChannelComparison {
        channel: channel.to_string(),
        relation: Relation::Error,
        height_a: None,
        height_b: None,
        blocks_compared: 0,
        state_hash_a: None,
        state_hash_b: None,
        details: Vec::new(),
    };
    let open = |t: &Target| {
        LedgerReader::open(&t.dir).map_err(|e| format!("{}: {}", t.node, open_failure(&e)))
    };
    let (ra, rb) = match (open(ta), open(tb)) {
        (Ok(ra), Ok(rb)) => (ra, rb),
        (ra, rb) => {
            out.details.extend(ra.err());
            out.details.extend(rb.err());
            return out;
        }
    };
    let (ha, hb) = (ra.height(), rb.height());
    out.height_a = Some(ha);
    out.height_b = Some(hb);
    let common = ha.min(hb);
    for number in 0..common {
        let (pa, pb) = match (block_parts(&ra, number), block_parts(&rb, number)) {
            (Ok(pa), Ok(pb)) => (pa, pb),
            (pa, pb) => {
                out.details
                    .extend(pa.err().map(|e| format!("{}: {e}", ta.node)));
                out.details
                    .extend(pb.err().map(|e| format!("{}: {e}", tb.node)));
                return out;
            }
        };
        out.blocks_compared = number + 1;
        let mut what = Vec::new();
        if pa.header_hash != pb.header_hash {
            what.push(format!(
                "header hash differs ({} {}, {} {})",
                ta.node,
                hex::encode(pa.header_hash),
                tb.node,
                hex::encode(pb.header_hash)
            ));
        }
        if pa.data != pb.data {
            let at = pa
                .data
                .iter()
                .zip(&pb.data)
                .position(|(x, y)| x != y)
                .map_or_else(
                    || format!("{} vs {} transactions", pa.data.len(), pb.data.len()),
                    |i| format!("first at transaction {i}"),
                );
            what.push(format!("data differs ({at})"));
        }
        if pa.codes != pb.codes {
            let at = pa
                .codes
                .iter()
                .zip(&pb.codes)
                .position(|(x, y)| x != y)
                .map_or_else(
                    || format!("{} vs {} codes", pa.codes.len(), pb.codes.len()),
                    |i| {
                        format!(
                            "transaction {i}: {} {}, {} {}",
                            ta.node,
                            code_name(pa.codes[i]),
                            tb.node,
                            code_name(pb.codes[i])
                        )
                    },
                );
            what.push(format!("validation codes differ ({at})"));
        }
        if !what.is_empty() {
            out.relation = Relation::Diverged;
            out.details
                .push(format!("block {number}: {}", what.join("; ")));
            return out;
        }
    }
    if ha != hb {
        out.relation = Relation::Lagging;
        let (behind, ahead) = if ha < hb { (ta, tb) } else { (tb, ta) };
        out.details.push(format!(
            "{} lags {}: height {} vs {}; blocks 0..{common} are identical; the state is not compared",
            behind.node,
            ahead.node,
            ha.min(hb),
            ha.max(hb)
        ));
        return out;
    }
    match compare_state(&ra, &rb) {
        Ok((hash_a, hash_b, first)) => {
            out.state_hash_a = Some(hash_a);
            out.state_hash_b = Some(hash_b);
            match first {
                None => out.relation = Relation::Identical,
                Some(difference) => {
                    out.relation = Relation::Diverged;
                    out.details
                        .push(format!("same blocks, different world state: {difference}"));
                }
            }
        }
        Err(e) => out.details.push(format!("reading the state: {e}")),
    }
    out
}

/// The two state hashes and, when they differ, the first differing key.
fn compare_state(
    ra: &LedgerReader,
    rb: &LedgerReader,
) -> Result<(String, String, Option<String>), LedgerError> {
    let (hash_a, _) = ra.state_hash()?;
    let (hash_b, _) = rb.state_hash()?;
    let hashes = (hex::encode(hash_a), hex::encode(hash_b));
    if hash_a == hash_b {
        return Ok((hashes.0, hashes.1, None));
    }
    let public = |reader: &LedgerReader| -> Result<Vec<StateEntry>, LedgerError> {
        let mut out = Vec::new();
        reader.scan_state(|e| {
            if !is_private_namespace(&e.namespace) {
                out.push(e);
            }
            ControlFlow::Continue(())
        })?;
        Ok(out)
    };
    let (ea, eb) = (public(ra)?, public(rb)?);
    let key = |e: &StateEntry| (e.namespace.clone(), e.key.clone());
    let (mut ia, mut ib) = (ea.iter().peekable(), eb.iter().peekable());
    let first = loop {
        match (ia.peek(), ib.peek()) {
            (Some(x), Some(y)) if key(x) == key(y) => {
                if x != y {
                    break format!(
                        "key {}/{:?}: {} vs {}",
                        x.namespace,
                        x.key,
                        describe(x),
                        describe(y)
                    );
                }
                ia.next();
                ib.next();
            }
            (Some(x), Some(y)) if key(x) < key(y) => {
                break format!(
                    "key {}/{:?} is only in the first ledger",
                    x.namespace, x.key
                );
            }
            (Some(_), Some(y)) | (None, Some(y)) => {
                break format!(
                    "key {}/{:?} is only in the second ledger",
                    y.namespace, y.key
                );
            }
            (Some(x), None) => {
                break format!(
                    "key {}/{:?} is only in the first ledger",
                    x.namespace, x.key
                );
            }
            (None, None) => break "the state hashes differ".to_string(),
        }
    };
    Ok((hashes.0, hashes.1, Some(first)))
}

fn describe(e: &StateEntry) -> String {
    format!(
        "value {} at version ({}, {}){}",
        preview(&e.value),
        e.version.block_num,
        e.version.tx_num,
        if e.metadata.is_empty() {
            ""
        } else {
            " with metadata"
        }
    )
}

fn render_compare(r: &CompareReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "comparing {} with {}", r.a, r.b);
    for c in &r.channels {
        let heights = match (c.height_a, c.height_b) {
            (Some(a), Some(b)) => format!("heights {a}/{b}"),
            _ => "-".to_string(),
        };
        let verdict = match c.relation {
            Relation::Identical => format!(
                "IDENTICAL (state hash {})",
                c.state_hash_a
                    .as_deref()
                    .map_or("-", |h| &h[..h.len().min(16)])
            ),
            Relation::Lagging => "LAGGING".to_string(),
            Relation::Diverged => "DIVERGED".to_string(),
            Relation::NotShared => "NOT SHARED".to_string(),
            Relation::Error => "ERROR".to_string(),
        };
        let _ = writeln!(out, "{:<18} {:<16} {verdict}", c.channel, heights);
        for d in &c.details {
            let _ = writeln!(out, "    {d}");
        }
    }
    let _ = writeln!(
        out,
        "{} channel(s): {} diverged or unreadable",
        r.channels.len(),
        r.diverged
    );
    out
}
