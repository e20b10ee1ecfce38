//! Reading committed blocks for the streaming services (Deliver, ChaincodeEvents): waiting for
//! a block to commit, and picking apart its transactions.

use gridledger_ledger::Ledger;
use gridledger_proto::prost::Message;
use gridledger_proto::{common, protos};

/// Waits until block `number` is committed, then returns it; `None` if the ledger stopped
/// (the peer is shutting down) or the block cannot be read.
pub async fn wait_for_block(ledger: &Ledger, number: u64) -> Option<common::Block> {
    let mut height = ledger.subscribe_height();
    loop {
        if ledger.height() > number {
            return ledger.block(number).ok().flatten();
        }
        if height.changed().await.is_err() {
            return None;
        }
    }
}

/// One transaction of a committed block, as the event services see it.
pub struct CommittedTx {
    pub tx_id: String,
    pub header_type: i32,
    pub validation_code: i32,
    /// For endorser transactions: the chaincode actions (normally one).
    pub actions: Vec<protos::ChaincodeAction>,
}

/// The transactions of a committed block with their validation codes (from the
/// TRANSACTIONS_FILTER metadata; a missing code reads as INVALID_OTHER_REASON).
pub fn committed_transactions(block: &common::Block) -> Vec<CommittedTx> {
    let codes = block
        .metadata
        .as_ref()
        .and_then(|m| {
            m.metadata
                .get(common::BlockMetadataIndex::TransactionsFilter as usize)
        })
        .cloned()
        .unwrap_or_default();
    let data = block
        .data
        .as_ref()
        .map(|d| d.data.as_slice())
        .unwrap_or_default();
    data.iter()
        .enumerate()
        .map(|(i, bytes)| {
            let validation_code = codes
                .get(i)
                .map(|&c| i32::from(c))
                .unwrap_or(protos::TxValidationCode::InvalidOtherReason as i32);
            let (tx_id, header_type, actions) = parse_envelope(bytes).unwrap_or_default();
            CommittedTx {
                tx_id,
                header_type,
                validation_code,
                actions,
            }
        })
        .collect()
}

fn parse_envelope(bytes: &[u8]) -> Option<(String, i32, Vec<protos::ChaincodeAction>)> {
    let envelope = common::Envelope::decode(bytes).ok()?;
    let payload = common::Payload::decode(envelope.payload.as_slice()).ok()?;
    let header = payload.header?;
    let channel_header = common::ChannelHeader::decode(header.channel_header.as_slice()).ok()?;
    let mut actions = Vec::new();
    if channel_header.r#type == common::HeaderType::EndorserTransaction as i32 {
        if let Ok(tx) = protos::Transaction::decode(payload.data.as_slice()) {
            for action in tx.actions {
                let action = protos::ChaincodeActionPayload::decode(action.payload.as_slice())
                    .ok()
                    .and_then(|p| p.action)
                    .and_then(|a| {
                        protos::ProposalResponsePayload::decode(
                            a.proposal_response_payload.as_slice(),
                        )
                        .ok()
                    })
                    .and_then(|prp| protos::ChaincodeAction::decode(prp.extension.as_slice()).ok());
                actions.extend(action);
            }
        }
    }
    Some((channel_header.tx_id, channel_header.r#type, actions))
}

/// The chaincode event of an action, if it carries a complete one.
pub fn chaincode_event(action: &protos::ChaincodeAction) -> Option<protos::ChaincodeEvent> {
    if action.events.is_empty() {
        return None;
    }
    let event = protos::ChaincodeEvent::decode(action.events.as_slice()).ok()?;
    (!event.chaincode_id.is_empty() && !event.event_name.is_empty() && !event.tx_id.is_empty())
        .then_some(event)
}
