//! The `energy` chaincode's books read back from committed blocks: the writes of each VALID
//! transaction, and the two conservation laws every state must keep (e-tokens in accounts =
//! minted − burned; payment in balances, escrowed trades and bids = issued). Shared by the
//! market's end-to-end test and the fault campaign.

use gridledger_proto::prost::Message;
use gridledger_proto::{common, kvrwset, msp, protos, rwset};
use std::collections::BTreeMap;

/// The chaincode whose writes are read.
pub const ENERGY: &str = "energy";

/// A key and its new value (`None`: a delete).
pub type Write = (String, Option<Vec<u8>>);

/// A JSON value stored by the chaincode.
pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("JSON")
}

/// A whole-number field of a chaincode record.
pub fn number(value: &serde_json::Value, field: &str) -> u64 {
    value[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {value}"))
}

/// The `energy` writes of an endorser transaction, and the MSP ids of its endorsers.
pub fn energy_writes(envelope: &[u8]) -> (Vec<Write>, Vec<String>) {
    let envelope = common::Envelope::decode(envelope).expect("Envelope");
    let payload = common::Payload::decode(envelope.payload.as_slice()).expect("Payload");
    let header = payload.header.expect("header");
    let channel_header =
        common::ChannelHeader::decode(header.channel_header.as_slice()).expect("ChannelHeader");
    if channel_header.r#type != common::HeaderType::EndorserTransaction as i32 {
        return (Vec::new(), Vec::new());
    }
    let tx = protos::Transaction::decode(payload.data.as_slice()).expect("Transaction");
    let (mut out, mut endorsers) = (Vec::new(), Vec::new());
    for action in tx.actions {
        let cap =
            protos::ChaincodeActionPayload::decode(action.payload.as_slice()).expect("action");
        let endorsed = cap.action.expect("endorsed action");
        for endorsement in &endorsed.endorsements {
            endorsers.push(
                msp::SerializedIdentity::decode(endorsement.endorser.as_slice())
                    .expect("an endorser is a SerializedIdentity")
                    .mspid,
            );
        }
        let prp =
            protos::ProposalResponsePayload::decode(endorsed.proposal_response_payload.as_slice())
                .expect("ProposalResponsePayload");
        let cc_action =
            protos::ChaincodeAction::decode(prp.extension.as_slice()).expect("ChaincodeAction");
        let rwset = rwset::TxReadWriteSet::decode(cc_action.results.as_slice()).expect("rwset");
        for ns in rwset.ns_rwset.iter().filter(|ns| ns.namespace == ENERGY) {
            let kv = kvrwset::KvrwSet::decode(ns.rwset.as_slice()).expect("KVRWSet");
            for w in kv.writes {
                out.push((w.key, (!w.is_delete).then_some(w.value)));
            }
        }
    }
    (out, endorsers)
}

/// The validation code of each transaction of `block`, as the committing peer recorded them
/// (metadata slot TRANSACTIONS_FILTER; empty when the block has none).
pub fn transactions_filter(block: &common::Block) -> Vec<u8> {
    block
        .metadata
        .as_ref()
        .and_then(|m| {
            m.metadata
                .get(common::BlockMetadataIndex::TransactionsFilter as usize)
        })
        .cloned()
        .unwrap_or_default()
}

/// The `energy` writes of the VALID transactions of `block` (encoded, as a peer stores it,
/// TRANSACTIONS_FILTER filled in), in order.
pub fn valid_energy_writes(block: &common::Block) -> Vec<Write> {
    let filter = transactions_filter(block);
    let data = block
        .data
        .as_ref()
        .map(|d| d.data.as_slice())
        .unwrap_or_default();
    data.iter()
        .enumerate()
        .filter(|(i, _)| filter.get(*i).copied() == Some(protos::TxValidationCode::Valid as u8))
        .flat_map(|(_, envelope)| energy_writes(envelope).0)
        .collect()
}

/// Applies the `energy` writes of the VALID transactions of `block` to `state`.
pub fn apply_block(state: &mut BTreeMap<String, Vec<u8>>, block: &common::Block) {
    for (key, value) in valid_energy_writes(block) {
        match value {
            Some(v) => state.insert(key, v),
            None => state.remove(&key),
        };
    }
}

/// Both conservation laws over one state: e-tokens in accounts = minted − burned, and payment
/// in balances plus the escrow of unsettled trades and of bids = issued.
pub fn check_conservation(height: usize, state: &BTreeMap<String, Vec<u8>>) {
    let (mut issued, mut minted, mut burned) = (0, 0, 0);
    for (_, value) in state.iter().filter(|(k, _)| k.starts_with("supply/")) {
        let s = json(value);
        issued += number(&s, "issued_cents");
        minted += number(&s, "minted_wh");
        burned += number(&s, "burned_wh");
    }
    let (mut tokens, mut cents) = (0u64, 0u64);
    for (key, value) in state {
        if key.starts_with("balance/") {
            let v = json(value);
            tokens += number(&v, "etokens_wh");
            cents += number(&v, "payment_cents");
        } else if key.starts_with("trade/") {
            let v = json(value);
            if v["status"] == "escrowed" {
                cents += number(&v, "escrow_cents");
            }
        } else if key.starts_with("bid/") {
            // What a bid still holds for its remaining energy (nothing once cancelled).
            cents += number(&json(value), "escrow_cents");
        }
    }
    assert_eq!(tokens, minted - burned, "e-token supply at height {height}");
    assert_eq!(cents, issued, "payment supply at height {height}");
}

/// What one record adds to the conservation sums: (issued, minted, burned) cents and Wh from
/// `supply/` records, (e-tokens, cents) held in balances, escrowed trades and bids.
fn contribution(key: &str, value: &[u8]) -> [u64; 5] {
    if key.starts_with("supply/") {
        let s = json(value);
        [
            number(&s, "issued_cents"),
            number(&s, "minted_wh"),
            number(&s, "burned_wh"),
            0,
            0,
        ]
    } else if key.starts_with("balance/") {
        let v = json(value);
        [
            0,
            0,
            0,
            number(&v, "etokens_wh"),
            number(&v, "payment_cents"),
        ]
    } else if key.starts_with("trade/") {
        let v = json(value);
        let escrow = if v["status"] == "escrowed" {
            number(&v, "escrow_cents")
        } else {
            0
        };
        [0, 0, 0, 0, escrow]
    } else if key.starts_with("bid/") {
        [0, 0, 0, 0, number(&json(value), "escrow_cents")]
    } else {
        [0; 5]
    }
}

/// The `energy` state replayed block by block with both conservation laws checked after
/// every block, in time proportional to the writes (the sums are kept up to date as records
/// change, instead of summed over the whole state again).
#[derive(Default)]
pub struct Replay {
    /// The namespace's world state.
    pub state: BTreeMap<String, Vec<u8>>,
    /// Issued cents, minted Wh, burned Wh, e-tokens held, cents held.
    sums: [i128; 5],
    /// Blocks applied.
    pub height: usize,
}

impl Replay {
    /// Applies `block` (as a peer stores it) and checks both laws at the new height.
    pub fn apply(&mut self, block: &common::Block) {
        for (key, value) in valid_energy_writes(block) {
            let old = match &value {
                Some(v) => self.state.insert(key.clone(), v.clone()),
                None => self.state.remove(&key),
            };
            if let Some(old) = old {
                for (sum, part) in self.sums.iter_mut().zip(contribution(&key, &old)) {
                    *sum -= i128::from(part);
                }
            }
            if let Some(new) = &value {
                for (sum, part) in self.sums.iter_mut().zip(contribution(&key, new)) {
                    *sum += i128::from(part);
                }
            }
        }
        self.height += 1;
        let [issued, minted, burned, tokens, cents] = self.sums;
        assert_eq!(
            tokens,
            minted - burned,
            "e-token supply at height {}",
            self.height
        );
        assert_eq!(cents, issued, "payment supply at height {}", self.height);
    }
}
