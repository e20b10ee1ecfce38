//! The query system chaincode `qscc`, reachable through `Gateway.Evaluate` as in Fabric:
//! `GetChainInfo`, `GetBlockByNumber`, `GetBlockByHash`, `GetTransactionByID`,
//! `GetBlockByTxID`, each with the channel name as its first argument and Fabric's result
//! messages (`common.BlockchainInfo`, `common.Block`, `protos.ProcessedTransaction`).

use crate::node::Channel;
use gridledger_chaincode::SimulationResult;
use gridledger_proto::prost::Message;
use gridledger_proto::{common, protos};

/// The chaincode name clients use.
pub const NAME: &str = "qscc";

fn ok(payload: Vec<u8>) -> protos::Response {
    protos::Response {
        status: 200,
        message: String::new(),
        payload,
    }
}

fn fail(message: String) -> protos::Response {
    protos::Response {
        status: 500,
        message,
        payload: Vec::new(),
    }
}

/// Runs one qscc function on `channel`; qscc reads nothing through the world state, so the
/// read-write set is empty.
pub fn invoke(channel: &Channel, args: &[Vec<u8>]) -> SimulationResult {
    let response = query(channel, args).unwrap_or_else(fail);
    SimulationResult {
        response,
        rwset: Default::default(),
        rwset_bytes: Vec::new(),
        event: None,
        pvt_rwset: None,
    }
}

fn arg(args: &[Vec<u8>], i: usize, what: &str) -> Result<String, String> {
    let raw = args
        .get(i)
        .ok_or_else(|| format!("missing argument {i} ({what})"))?;
    String::from_utf8(raw.clone()).map_err(|_| format!("argument {i} ({what}) is not UTF-8"))
}

fn query(channel: &Channel, args: &[Vec<u8>]) -> Result<protos::Response, String> {
    let function = arg(args, 0, "function")?;
    let channel_arg = arg(args, 1, "channel name")?;
    if channel_arg != channel.id() {
        return Err(format!(
            "channel name {channel_arg:?} does not match the proposal's channel {:?}",
            channel.id()
        ));
    }
    let ledger = channel.ledger();
    let storage = |e: gridledger_ledger::LedgerError| e.to_string();
    match function.as_str() {
        "GetChainInfo" => {
            let info = ledger.info();
            Ok(ok(common::BlockchainInfo {
                height: info.height,
                current_block_hash: info.current_block_hash,
                previous_block_hash: info.previous_block_hash,
                bootstrapping_snapshot_info: None,
            }
            .encode_to_vec()))
        }
        "GetBlockByNumber" => {
            let n: u64 = arg(args, 2, "block number")?
                .parse()
                .map_err(|_| "block number is not an unsigned integer".to_string())?;
            let bytes = ledger
                .block_bytes(n)
                .map_err(storage)?
                .ok_or_else(|| format!("block {n} not found"))?;
            Ok(ok(bytes))
        }
        "GetBlockByHash" => {
            let hash = args.get(2).ok_or("missing argument 2 (block hash)")?;
            let n = ledger
                .block_number_by_hash(hash)
                .map_err(storage)?
                .ok_or("no block with that hash")?;
            Ok(ok(ledger
                .block_bytes(n)
                .map_err(storage)?
                .ok_or("block missing")?))
        }
        "GetTransactionByID" | "GetBlockByTxID" => {
            let tx_id = arg(args, 2, "transaction id")?;
            let loc = ledger
                .tx_location(&tx_id)
                .map_err(storage)?
                .ok_or_else(|| format!("transaction {tx_id} not found"))?;
            let bytes = ledger
                .block_bytes(loc.block_num)
                .map_err(storage)?
                .ok_or("block missing")?;
            if function == "GetBlockByTxID" {
                return Ok(ok(bytes));
            }
            let block = common::Block::decode(bytes.as_slice()).map_err(|e| e.to_string())?;
            let envelope_bytes = block
                .data
                .as_ref()
                .and_then(|d| d.data.get(loc.tx_num as usize))
                .ok_or("transaction missing from its block")?;
            let envelope =
                common::Envelope::decode(envelope_bytes.as_slice()).map_err(|e| e.to_string())?;
            Ok(ok(protos::ProcessedTransaction {
                transaction_envelope: Some(envelope),
                validation_code: i32::from(loc.validation_code),
            }
            .encode_to_vec()))
        }
        other => Err(format!("unknown qscc function {other:?}")),
    }
}
