//! Private data collections as a chaincode sees them: where private values and their hashes
//! live in the world state, how keys and values are hashed, and who may read or write a
//! collection.
//!
//! Layout (Fabric's statedb layout): the private value of key `k` in collection `c` of
//! chaincode `ns` is key `k` of the derived namespace `ns$$pc` ([`private_namespace`]); its
//! hash is key `hex(sha256(k))` of `ns$$hc` ([`hashed_namespace`], [`hashed_key`]) holding
//! `sha256(value)`. Both carry the version of the transaction that wrote them. Every peer of
//! the channel holds the hashes; only peers of the collection's member organizations hold the
//! values. Hashes are SHA-256, as in Fabric (`util.ComputeHash`).

use std::collections::BTreeSet;

use gridledger_proto::blockutil::sha256;
use gridledger_proto::prost::Message;
use gridledger_proto::{common, protos};

/// Prefix of Fabric's implicit per-organization collections: `_implicit_org_<MSPID>`.
pub const IMPLICIT_COLLECTION_PREFIX: &str = "_implicit_org_";

/// The derived namespace holding the private values of `collection` of `namespace`
/// (Fabric's `ns$$pcoll`).
pub fn private_namespace(namespace: &str, collection: &str) -> String {
    format!("{namespace}$$p{collection}")
}

/// The derived namespace holding the hashes of `collection` of `namespace` (Fabric's
/// `ns$$hcoll`).
pub fn hashed_namespace(namespace: &str, collection: &str) -> String {
    format!("{namespace}$$h{collection}")
}

/// Whether `namespace` is a derived private-value namespace (`ns$$pcoll`), which must never
/// be served to anyone but the chaincode through the private-data API.
pub fn is_private_namespace(namespace: &str) -> bool {
    namespace.contains("$$p")
}

/// The key under which a key hash is kept in its hashed namespace: lower-case hex.
pub fn hashed_key(key_hash: &[u8]) -> String {
    key_hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a private key or value, as Fabric hashes them for the public read-write set.
pub fn hash(data: &[u8]) -> Vec<u8> {
    sha256(data).to_vec()
}

/// Who may use a collection through the chaincode API (Fabric's `memberOnlyRead` and
/// `memberOnlyWrite`, checked against the client's organization at endorsement).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectionAccess {
    /// MSP ids of the member organizations (from the collection's member orgs policy).
    pub members: BTreeSet<String>,
    /// Only clients of member organizations may read values.
    pub member_only_read: bool,
    /// Only clients of member organizations may write, delete or purge.
    pub member_only_write: bool,
}

impl CollectionAccess {
    /// The implicit collection of organization `msp_id`: that org alone, no access limits
    /// (Fabric's implicit collections set neither flag).
    pub fn implicit(msp_id: &str) -> CollectionAccess {
        CollectionAccess {
            members: BTreeSet::from([msp_id.to_owned()]),
            member_only_read: false,
            member_only_write: false,
        }
    }

    /// The access rules of a defined collection.
    pub fn of(config: &protos::StaticCollectionConfig) -> CollectionAccess {
        CollectionAccess {
            members: member_msp_ids(config),
            member_only_read: config.member_only_read,
            member_only_write: config.member_only_write,
        }
    }
}

/// The MSP ids named by a collection's member orgs policy (Fabric: an org is a member when its
/// MSP appears among the policy's role principals).
pub fn member_msp_ids(config: &protos::StaticCollectionConfig) -> BTreeSet<String> {
    let Some(protos::collection_policy_config::Payload::SignaturePolicy(envelope)) = config
        .member_orgs_policy
        .as_ref()
        .and_then(|p| p.payload.as_ref())
    else {
        return BTreeSet::new();
    };
    envelope_msp_ids(envelope)
}

/// The MSP ids of the role principals of a signature policy.
pub fn envelope_msp_ids(envelope: &common::SignaturePolicyEnvelope) -> BTreeSet<String> {
    envelope
        .identities
        .iter()
        .filter(|p| {
            p.principal_classification == common::msp_principal::Classification::Role as i32
        })
        .filter_map(|p| common::MspRole::decode(p.principal.as_slice()).ok())
        .map(|role| role.msp_identifier)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_sha256_as_fabric_computes_them() {
        // The FIPS 180-2 test vector, the bytes Go's sha256.Sum256 gives.
        assert_eq!(
            hashed_key(&hash(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hashed_namespace("cc", "c1"), "cc$$hc1");
        assert_eq!(private_namespace("cc", "c1"), "cc$$pc1");
        assert!(is_private_namespace("cc$$pc1"));
        assert!(!is_private_namespace("cc$$hc1"));
    }
}
