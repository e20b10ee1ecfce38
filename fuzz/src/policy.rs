//! Target `policy`: endorsement and channel policies as they arrive from the network and from
//! operators — `SignaturePolicyEnvelope` and `ImplicitMetaPolicy` bytes (chaincode
//! definitions, channel config values, key-level endorsement metadata) and the policy text
//! language (`AND('Org1MSP.peer', OutOf(1, …))`, `MAJORITY Endorsement`) of CLI flags and
//! channel specs. Models a member that writes arbitrary policies into a definition or config,
//! and a user typing arbitrary text.
//!
//! The first byte selects the decoder: 0 policy text, 1 implicit-meta text, 2
//! `SignaturePolicyEnvelope` bytes, 3 `ImplicitMetaPolicy` bytes; the rest is its input.
//!
//! Checks: parsing, compiling and evaluating against a fixed set of valid signers never panic;
//! text that parses prints back to text that parses to the same policy; a policy that prints
//! as text evaluates the same after being parsed back.

use gridledger_channels::policy::{
    CompiledSignaturePolicy, VerifiedSigners, implicit_meta_to_string, parse, parse_implicit_meta,
    to_policy_string,
};
use gridledger_proto::common;
use prost::Message;

use crate::support;

/// Whether the fixed signers (a client, peer and admin of Org1, an orderer and an admin of
/// OrdererMSP) satisfy `policy`; `None` if it does not compile.
fn verdict(policy: &common::SignaturePolicyEnvelope) -> Option<bool> {
    let compiled = CompiledSignaturePolicy::compile(policy).ok()?;
    let signers = VerifiedSigners::from_identities(support::synthetic().identities.clone());
    let evaluation = compiled.evaluate(&signers);
    assert_eq!(
        evaluation.satisfied,
        compiled.is_satisfied(&signers),
        "one verdict"
    );
    Some(evaluation.satisfied)
}

/// Feeds `data` to the policy decoders selected by its first byte.
pub fn run(data: &[u8]) {
    let Some((selector, input)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => {
            let Ok(text) = std::str::from_utf8(input) else {
                return;
            };
            if let Ok(policy) = parse(text) {
                let _ = verdict(&policy);
                let printed = to_policy_string(&policy).expect("a parsed policy prints");
                let reparsed = parse(&printed).expect("a printed policy parses");
                assert_eq!(reparsed, policy, "text round-trips: {printed}");
            }
        }
        1 => {
            let Ok(text) = std::str::from_utf8(input) else {
                return;
            };
            if let Ok(policy) = parse_implicit_meta(text) {
                let printed = implicit_meta_to_string(&policy);
                let reparsed = parse_implicit_meta(&printed).expect("a printed policy parses");
                assert_eq!(reparsed, policy, "text round-trips: {printed}");
            }
        }
        2 => {
            let Ok(policy) = common::SignaturePolicyEnvelope::decode(input) else {
                return;
            };
            let before = verdict(&policy);
            if let Ok(printed) = to_policy_string(&policy) {
                let reparsed = parse(&printed).expect("a printed policy parses");
                if let Some(before) = before {
                    assert_eq!(verdict(&reparsed), Some(before), "same verdict: {printed}");
                }
            }
        }
        _ => {
            if let Ok(policy) = common::ImplicitMetaPolicy::decode(input) {
                let _ = implicit_meta_to_string(&policy);
            }
        }
    }
}
