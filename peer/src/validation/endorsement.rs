//! Endorsement-policy validation of one transaction, with Fabric 2.x's rules
//! (`core/common/validation/statebased/v20.go` and the plugin dispatcher):
//!
//! - Every namespace the transaction *writes*, plus the chaincode it invoked, is validated
//!   against that namespace's chaincode definition; a namespace without a definition makes the
//!   transaction INVALID_CHAINCODE. (So a chaincode-to-chaincode call that writes another
//!   chaincode's namespace needs endorsements satisfying both policies.)
//! - Within a namespace, each public write and each key-metadata write needs the key's own
//!   endorsement policy when the key's committed metadata has a non-empty
//!   `VALIDATION_PARAMETER` (a marshalled `SignaturePolicyEnvelope`; one that does not decode
//!   cannot be satisfied), and the chaincode's policy otherwise: a key-level policy replaces
//!   the chaincode's policy for that key (Fabric's state-based endorsement,
//!   `validator_keylevel.go`). The policy is read from the state as of before the block; a key
//!   whose metadata an earlier transaction of the block changed is handled by the block
//!   validation (`validate_block`), as in Fabric.
//! - Within a namespace, public writes without a key-level policy need the chaincode's
//!   policy; writes to a private-data
//!   collection need the collection's policy instead: a defined collection's own endorsement
//!   policy, else the chaincode's; for Fabric's implicit per-organization collections
//!   (`_implicit_org_<MSPID>`), the org's `/Channel/Application/<Org>/Endorsement` or, when
//!   the org has none, any member of that MSP. Writes to a collection that is neither fail, as
//!   they do in Fabric for an undefined collection. A hashed write or metadata write of a
//!   private key whose hash has a committed `VALIDATION_PARAMETER` needs that policy instead
//!   (Fabric's `SetPrivateDataValidationParameter`, looked up by key hash).
//! - If nothing in the namespace required a policy (a read-only invocation), the chaincode's
//!   policy is still checked (Fabric's `CheckCCEPIfNoEPChecked`).
//! - `_lifecycle`'s public writes follow the lifecycle's rules instead (`lifecycle_writes`):
//!   approvals need their organization's endorsement, a committed definition needs
//!   LifecycleEndorsement satisfied by organizations that approved exactly that definition.
//!
//! Each endorsement is a signature by `endorser` over `proposal_response_payload || endorser`.
//! Endorsers are validated at the transaction's timestamp and verified once per transaction,
//! however many policies consult them.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use gridledger_chaincode::VALIDATION_PARAMETER;
use gridledger_channels::config::ChannelConfig;
use gridledger_channels::policy::{
    CompiledSignaturePolicy, SignedData, VerifiedSigners, verify_signers,
};
use gridledger_proto::common;
use gridledger_proto::protos::{self, TxValidationCode as Code};
use prost::Message;

use super::state::{CommittedState, decode_metadata, hashed_key, hashed_namespace};
use super::transaction::{DecodedRwSet, NsRwSet};
use super::{ChaincodeDefinition, EndorsementPolicy, LIFECYCLE_NAMESPACE, ValidationError};
use crate::lifecycle;

/// Prefix of Fabric's implicit per-organization collections.
pub const IMPLICIT_COLLECTION_PREFIX: &str = "_implicit_org_";

/// A policy to evaluate over the transaction's endorsers.
enum Required<'a> {
    Chaincode(&'a EndorsementPolicy),
    Key(common::SignaturePolicyEnvelope),
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
        satisfied(required, channel, self.verified())
    }

    /// Whether the endorsements of the organizations in `among` alone satisfy `required`.
    fn satisfy_among(&mut self, required: &Required<'_>, among: &BTreeSet<&str>) -> bool {
        let channel = self.channel;
        let signers = VerifiedSigners::from_identities(
            self.verified()
                .signers()
                .iter()
                .filter(|s| among.contains(s.identity.msp_id()))
                .map(|s| s.identity.clone()),
        );
        satisfied(required, channel, &signers)
    }
}

fn satisfied(required: &Required<'_>, channel: &ChannelConfig, signers: &VerifiedSigners) -> bool {
    match required {
        Required::Chaincode(EndorsementPolicy::Signature(envelope)) | Required::Key(envelope) => {
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

/// The `_lifecycle` rules for a transaction's public writes to `_lifecycle` (see
/// `crate::lifecycle`): an organization's `approvals/…` and `agreements/…` keys need that
/// organization's endorsement; every other key needs the `_lifecycle` policy
/// (LifecycleEndorsement), and a committed definition needs it satisfied by the endorsements
/// of the organizations whose agreement with exactly that definition the transaction read.
/// A commit made by Fabric (no agreement read; its approvals are implicit-collection hashes
/// it read) is held to Fabric's rule: LifecycleEndorsement over all its endorsements.
fn lifecycle_writes(
    ns: &NsRwSet,
    endorsers: &mut Endorsers<'_>,
    channel: &ChannelConfig,
    policy: &Required<'_>,
) -> Result<(), Code> {
    let mut orgs: BTreeSet<&str> = BTreeSet::new();
    let mut definitions: BTreeMap<&str, BTreeMap<&str, &[u8]>> = BTreeMap::new();
    let mut other = false;
    for write in &ns.kv.writes {
        if let Some(msp_id) = lifecycle::organization_of_key(&write.key) {
            orgs.insert(msp_id);
            continue;
        }
        other = true;
        if let Some((name, field)) = lifecycle::parse_field_key(&write.key) {
            if !write.is_delete {
                definitions
                    .entry(name)
                    .or_default()
                    .insert(field, write.value.as_slice());
            }
        }
    }
    for msp_id in orgs {
        let collection = format!("{IMPLICIT_COLLECTION_PREFIX}{msp_id}");
        let required = implicit_collection_policy(channel, &collection)
            .ok_or(Code::EndorsementPolicyFailure)?;
        if !endorsers.satisfy(&required) {
            return Err(Code::EndorsementPolicyFailure);
        }
    }
    if !other {
        return Ok(());
    }
    let agreements: Vec<(&str, &str, &str, &str)> = ns
        .kv
        .reads
        .iter()
        .filter(|r| r.version.is_some())
        .filter_map(|r| lifecycle::parse_agreement_key(&r.key))
        .collect();
    let made_by_fabric = agreements.is_empty()
        && ns.collections.iter().any(|(collection, hashed)| {
            collection.starts_with(IMPLICIT_COLLECTION_PREFIX) && !hashed.hashed_reads.is_empty()
        });
    if made_by_fabric || definitions.is_empty() {
        return if endorsers.satisfy(policy) {
            Ok(())
        } else {
            Err(Code::EndorsementPolicyFailure)
        };
    }
    for (name, fields) in definitions {
        let hash = lifecycle::hash_of_fields(|field| fields.get(field).copied())
            .ok_or(Code::EndorsementPolicyFailure)?;
        let sequence = fields
            .get("Sequence")
            .and_then(|v| gridledger_proto::lifecycle::StateData::decode(*v).ok())
            .and_then(|d| match d.r#type {
                Some(gridledger_proto::lifecycle::state_data::Type::Int64(n)) => {
                    Some(n.to_string())
                }
                _ => None,
            })
            .ok_or(Code::EndorsementPolicyFailure)?;
        let approving: BTreeSet<&str> = agreements
            .iter()
            .filter(|(n, s, h, _)| *n == name && *s == sequence && *h == hash)
            .map(|(_, _, _, msp_id)| *msp_id)
            .collect();
        if !endorsers.satisfy_among(policy, &approving) {
            return Err(Code::EndorsementPolicyFailure);
        }
    }
    Ok(())
}

/// The endorsement policy of a collection, or `None` when the collection is not defined: a
/// defined collection's own policy, else the chaincode's (Fabric's rule); an implicit org
/// collection's is the org's `Endorsement` policy, else any member of the org.
fn collection_policy<'a>(
    channel: &ChannelConfig,
    definition: &'a ChaincodeDefinition,
    collection: &'a str,
) -> Option<Required<'a>> {
    if let Some(defined) = definition.collections.get(collection) {
        return Some(Required::Chaincode(
            defined
                .endorsement
                .as_ref()
                .unwrap_or(&definition.endorsement),
        ));
    }
    implicit_collection_policy(channel, collection)
}

/// The endorsement policy of an implicit org collection (`_implicit_org_<MSPID>` of a channel
/// org): the org's `Endorsement` policy, else any member of the org.
fn implicit_collection_policy<'a>(
    channel: &ChannelConfig,
    collection: &'a str,
) -> Option<Required<'a>> {
    let msp_id = collection.strip_prefix(IMPLICIT_COLLECTION_PREFIX)?;
    let org = channel.organization(msp_id)?;
    let path = format!("/Channel/Application/{}/Endorsement", org.name);
    Some(if channel.policies().policy(&path).is_some() {
        Required::Channel(path)
    } else {
        Required::AnyMemberOf(msp_id)
    })
}

/// The key-level policy of `key`: `None` when its committed metadata has no (or an empty)
/// `VALIDATION_PARAMETER`, `Some(None)` when the metadata or the policy does not decode.
fn key_policy(
    state: &dyn CommittedState,
    namespace: &str,
    key: &str,
) -> Result<Option<Option<common::SignaturePolicyEnvelope>>, ValidationError> {
    let Some(bytes) = state.metadata(namespace, key)? else {
        return Ok(None);
    };
    let Some(mut entries) = decode_metadata(&bytes) else {
        return Ok(Some(None));
    };
    Ok(entries
        .remove(VALIDATION_PARAMETER)
        .filter(|policy| !policy.is_empty())
        .map(|policy| common::SignaturePolicyEnvelope::decode(policy.as_slice()).ok()))
}

/// Checks the endorsement policies a transaction must satisfy; the inner error is the code the
/// transaction gets (INVALID_CHAINCODE or ENDORSEMENT_POLICY_FAILURE), the outer one a failure
/// to read key metadata from `state`.
pub(crate) fn check(
    rwset: &DecodedRwSet,
    invoked: &str,
    action: &protos::ChaincodeEndorsedAction,
    channel: &ChannelConfig,
    chaincodes: &BTreeMap<String, ChaincodeDefinition>,
    at_unix_secs: u64,
    state: &dyn CommittedState,
) -> Result<Result<(), Code>, ValidationError> {
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
        let Some(definition) = chaincodes.get(namespace) else {
            return Ok(Err(Code::InvalidChaincode));
        };
        let chaincode_policy = Required::Chaincode(&definition.endorsement);
        let mut chaincode_checked = false;
        let mut key_checked = false;
        let mut collections_checked: HashSet<&str> = HashSet::new();
        let failure = Ok(Err(Code::EndorsementPolicyFailure));

        for ns in rwset
            .namespaces
            .iter()
            .filter(|ns| ns.namespace == namespace)
        {
            if namespace == LIFECYCLE_NAMESPACE {
                if !ns.kv.writes.is_empty() && !chaincode_checked {
                    if let Err(code) =
                        lifecycle_writes(ns, &mut endorsers, channel, &chaincode_policy)
                    {
                        return Ok(Err(code));
                    }
                    chaincode_checked = true;
                }
            } else {
                let keys = ns
                    .kv
                    .writes
                    .iter()
                    .map(|w| w.key.as_str())
                    .chain(ns.kv.metadata_writes.iter().map(|m| m.key.as_str()));
                for key in keys {
                    match key_policy(state, namespace, key)? {
                        Some(Some(envelope)) => {
                            if !endorsers.satisfy(&Required::Key(envelope)) {
                                return failure;
                            }
                            key_checked = true;
                        }
                        Some(None) => return failure,
                        None if chaincode_checked => {}
                        None => {
                            if !endorsers.satisfy(&chaincode_policy) {
                                return failure;
                            }
                            chaincode_checked = true;
                        }
                    }
                }
            }
            for (collection, hashed) in &ns.collections {
                let key_hashes: Vec<&[u8]> = hashed
                    .hashed_writes
                    .iter()
                    .map(|w| w.key_hash.as_slice())
                    .chain(hashed.metadata_writes.iter().map(|m| m.key_hash.as_slice()))
                    .collect();
                if key_hashes.is_empty() {
                    continue;
                }
                let Some(required) = collection_policy(channel, definition, collection) else {
                    return failure;
                };
                // A private key with a key-level policy (kept with its hash) needs that
                // policy instead of the collection's, as a public key does.
                let hashed_ns = hashed_namespace(namespace, collection);
                let mut collection_needed = false;
                for key_hash in key_hashes {
                    match key_policy(state, &hashed_ns, &hashed_key(key_hash))? {
                        Some(Some(envelope)) => {
                            if !endorsers.satisfy(&Required::Key(envelope)) {
                                return failure;
                            }
                            key_checked = true;
                        }
                        Some(None) => return failure,
                        None => collection_needed = true,
                    }
                }
                if collection_needed && !collections_checked.contains(&**collection) {
                    if !endorsers.satisfy(&required) {
                        return failure;
                    }
                    collections_checked.insert(collection);
                }
            }
        }
        if !chaincode_checked
            && !key_checked
            && collections_checked.is_empty()
            && !endorsers.satisfy(&chaincode_policy)
        {
            return failure;
        }
    }
    Ok(Ok(()))
}
