//! Target `shim`: the `protos.ChaincodeMessage`s an external chaincode (chaincode-as-a-service)
//! sends the peer during a transaction. Models a malicious or broken chaincode: message types,
//! tx ids, and the GetState / PutState / DelState / range / iterator / history / metadata /
//! private data / InvokeChaincode payloads are all its own.
//!
//! Input framing: a sequence of `u16` little-endian lengths, each followed by that many bytes
//! of one `ChaincodeMessage` (frames that do not decode are skipped; at most 64 messages).
//!
//! Checks: the peer's request handling (`gridledger_peer::external::answer_requests`) and the
//! read-write set the stub then builds (`gridledger_chaincode::complete`) never panic; there
//! is one answer per message; the read-write set's bytes decode to the read-write set.

use std::collections::BTreeMap;

use gridledger_chaincode::{ChaincodeStub, Invocation, StateReader, complete};
use gridledger_peer::external::answer_requests;
use gridledger_proto::{kvrwset, protos, rwset};
use prost::Message;

/// Most messages one input carries.
const MAX_MESSAGES: usize = 64;

/// A small committed world state of namespace `basic`.
struct State(BTreeMap<String, Vec<u8>>);

impl State {
    fn new() -> State {
        State(
            ["a", "b", "c", "meter~1", "meter~2"]
                .iter()
                .map(|k| (k.to_string(), format!("value of {k}").into_bytes()))
                .collect(),
        )
    }
}

fn version() -> kvrwset::Version {
    kvrwset::Version {
        block_num: 1,
        tx_num: 0,
    }
}

impl StateReader for State {
    fn get(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<(Vec<u8>, kvrwset::Version)>, String> {
        Ok((namespace == "basic")
            .then(|| self.0.get(key).map(|v| (v.clone(), version())))
            .flatten())
    }

    fn range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>, kvrwset::Version)>, String> {
        if namespace != "basic" {
            return Ok(Vec::new());
        }
        Ok(self
            .0
            .iter()
            .filter(|(k, _)| k.as_str() >= start && (end.is_empty() || k.as_str() < end))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone(), version()))
            .collect())
    }
}

/// The messages framed in `data`.
pub fn messages(mut data: &[u8]) -> Vec<protos::ChaincodeMessage> {
    let mut out = Vec::new();
    while out.len() < MAX_MESSAGES {
        let [lo, hi, rest @ ..] = data else {
            break;
        };
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(rest.len());
        let (frame, tail) = rest.split_at(len);
        if let Ok(msg) = protos::ChaincodeMessage::decode(frame) {
            out.push(msg);
        }
        data = tail;
    }
    out
}

/// Frames `messages` as this target reads them (for seed inputs).
pub fn frame(messages: &[protos::ChaincodeMessage]) -> Vec<u8> {
    let mut out = Vec::new();
    for msg in messages {
        let bytes = msg.encode_to_vec();
        let len = u16::try_from(bytes.len()).expect("seed messages are small");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

/// Feeds the messages framed in `data` to the peer's handling of chaincode requests.
pub fn run(data: &[u8]) {
    let messages = messages(data);
    let state = State::new();
    let invocation = Invocation {
        channel_id: "mychannel".to_string(),
        tx_id: "fuzz-tx".to_string(),
        chaincode: "basic".to_string(),
        args: vec![b"invoke".to_vec()],
        creator_msp_id: "Org1MSP".to_string(),
        ..Default::default()
    };
    let mut stub = ChaincodeStub::new("basic", &invocation, &state);
    let answers = answer_requests(&mut stub, &messages);
    assert_eq!(answers.len(), messages.len(), "one answer per message");
    let result = complete(
        stub,
        protos::Response {
            status: 200,
            ..Default::default()
        },
    );
    let decoded = rwset::TxReadWriteSet::decode(result.rwset_bytes.as_slice());
    assert_eq!(
        decoded.as_ref(),
        Ok(&result.rwset),
        "the rwset bytes are the rwset"
    );
}
