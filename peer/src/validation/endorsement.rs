//! Endorsement-policy validation of one transaction, with Fabric 2.x's rules
//! (`core/common/validation/statebased/v20.go` and the plugin dispatcher):
//!
//! - Every namespace the transaction *writes*, plus the chaincode it invoked, is validated
//!   against that namespace's chaincode definition; a namespace without a definition makes the
//!   transaction INVALID_CHAINCODE. (So a chaincode-to-chaincode call that writes another
//!   chaincode's namespace needs endorsements satisfying both policies.)
//! - Within a namespace, public writes need the chaincode's policy; writes to a private-data
//!   collection need the collection's policy instead. GridLedger knows only Fabric's implicit
//!   per-organization collections (`_implicit_org_<MSPID>`), whose policy is the org's
//!   `/Channel/Application/<Org>/Endorsement` or, when the org has none, any member of that MSP;
//!   writes to any other collection fail, as they do in Fabric for an undefined collection.
//! - If nothing in the namespace required a policy (a read-only invocation), the chaincode's
//!   policy is still checked.
//!
//! Each endorsement is a signature by `endorser` over `proposal_response_payload || endorser`.
//! Endorsers are validated at the transaction's timestamp and verified once per transaction,
//! however many policies consult them. Key-level (state-based) endorsement policies are not
//! supported: transactions that set them are rejected before this point.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use gridledger_channels::config::ChannelConfig;
use gridledger_channels::policy::{
    CompiledSignaturePolicy, SignedData, VerifiedSigners, verify_signers,
};
use gridledger_proto::protos::{self, TxValidationCode as Code};

use super::transaction::DecodedRwSet;
use super::{ChaincodeDefinition, EndorsementPolicy};

/// Prefix of Fabric's implicit per-organization collections.
pub const IMPLICIT_COLLECTION_PREFIX: &str = "_implicit_org_";

/// A policy to evaluate over the transaction's endorsers.
enum Required<'a> {
    Chaincode(&'a EndorsementPolicy),
    Channel(String),
    AnyMemberOf(&'a str),
}

/// The endorsers of one transaction, verified on first use.
struct Endorsers<'a> {
    action: &'a protos::ChaincodeEndorsedAction,
    channel: &'a ChannelConfig,
    at_unix_secs: u64,
    verified: Option<VerifiedSigners>,
}

impl Endorsers<'_> {
    fn verified(&mut self) -> &VerifiedSigners {
        self.verified.get_or_insert_with(|| {
            let prp = &self.action.proposal_response_payload;
            let signed_bytes: Vec<Vec<u8>> = self
                .action
                .endorsements
                .iter()
                .map(|e| [prp.as_slice(), e.endorser.as_slice()].concat())
                .collect();
            let signed: Vec<SignedData<'_>> = self
                .action
                .endorsements
                .iter()
                .zip(&signed_bytes)
                .map(|(e, data)| SignedData {
                    data,
                    identity: &e.endorser,
                    signature: &e.signature,
                })
                .collect();
            verify_signers(&signed, self.channel.msp_manager(), self.at_unix_secs)
        })
    }

    fn satisfy(&mut self, required: &Required<'_>) -> bool {
        let channel = self.channel;
        let signers = self.verified();
        match required {
            Required::Chaincode(EndorsementPolicy::Signature(envelope)) => {
                CompiledSignaturePolicy::compile(envelope)
                    .is_ok_and(|policy| policy.is_satisfied(signers))
            }
            Required::Chaincode(EndorsementPolicy::ChannelPolicy(path)) => channel
                .policies()
                .is_satisfied(path, signers)
                .unwrap_or(false),
            Required::Channel(path) => channel
                .policies()
                .is_satisfied(path, signers)
                .unwrap_or(false),
            Required::AnyMemberOf(msp_id) => signers
                .signers()
                .iter()
                .any(|s| s.identity.msp_id() == *msp_id),
        }
    }
}

/// The endorsement policy of a collection, or `None` when the collection is not defined.
fn collection_policy<'a>(channel: &ChannelConfig, collection: &'a str) -> Option<Required<'a>> {
    let msp_id = collection.strip_prefix(IMPLICIT_COLLECTION_PREFIX)?;
    let org = channel.organization(msp_id)?;
    let path = format!("/Channel/Application/{}/Endorsement", org.name);
    Some(if channel.policies().policy(&path).is_some() {
        Required::Channel(path)
    } else {
        Required::AnyMemberOf(msp_id)
    })
}

/// Checks the endorsement policies a transaction must satisfy; the error is the code the
/// transaction gets (INVALID_CHAINCODE or ENDORSEMENT_POLICY_FAILURE).
pub(crate) fn check(
    rwset: &DecodedRwSet,
    invoked: &str,
    action: &protos::ChaincodeEndorsedAction,
    channel: &ChannelConfig,
    chaincodes: &BTreeMap<String, ChaincodeDefinition>,
    at_unix_secs: u64,
) -> Result<(), Code> {
    // Sorted, so that when several namespaces fail the code does not depend on map order.
    let mut written: BTreeSet<&str> = BTreeSet::new();
    written.insert(invoked);
    for ns in &rwset.namespaces {
        if ns.writes_anything() {
            written.insert(&ns.namespace);
        }
    }

    let mut endorsers = Endorsers {
        action,
        channel,
        at_unix_secs,
        verified: None,
    };
    for namespace in written {
        let definition = chaincodes.get(namespace).ok_or(Code::InvalidChaincode)?;
        let chaincode_policy = Required::Chaincode(&definition.endorsement);
        let mut chaincode_checked = false;
        let mut collections_checked: HashSet<&str> = HashSet::new();

        for ns in rwset
            .namespaces
            .iter()
            .filter(|ns| ns.namespace == namespace)
        {
            if !ns.kv.writes.is_empty() && !chaincode_checked {
                if !endorsers.satisfy(&chaincode_policy) {
                    return Err(Code::EndorsementPolicyFailure);
                }
                chaincode_checked = true;
            }
            for (collection, hashed) in &ns.collections {
                if hashed.hashed_writes.is_empty() || collections_checked.contains(&**collection) {
                    continue;
                }
                let required =
                    collection_policy(channel, collection).ok_or(Code::EndorsementPolicyFailure)?;
                if !endorsers.satisfy(&required) {
                    return Err(Code::EndorsementPolicyFailure);
                }
                collections_checked.insert(collection);
            }
        }
        if !chaincode_checked
            && collections_checked.is_empty()
            && !endorsers.satisfy(&chaincode_policy)
        {
            return Err(Code::EndorsementPolicyFailure);
        }
    }
    Ok(())
}
