//! Private data collections on the peer: the collections of a chaincode definition (read from
//! its `CollectionConfigPackage` and checked at approve/commit as Fabric checks them), and the
//! commit-side resolution of a valid transaction's private writes from the transient store.
//!
//! Flow: the endorser keeps a simulation's `TxPvtReadWriteSet` in the transient store of the
//! channel's ledger (and sends it to peers of the member orgs, `crate::gossip`); validation
//! treats the collection hashes like public keys (MVCC on key hashes, the collection's
//! endorsement policy); the committer then takes each valid transaction's private write set
//! from the transient store, checks it against the hashes in the block ([`resolve`]) and
//! commits the values of the collections this peer's org is a member of in the block's write
//! transaction. Non-members commit only the hashes. Keys of a collection with a
//! `block_to_live` expire (values and hashes) `block_to_live + 1` blocks after they were
//! written.

use std::collections::{BTreeMap, BTreeSet};

use gridledger_chaincode::CollectionAccess;
use gridledger_chaincode::private::{
    self as pvt, IMPLICIT_COLLECTION_PREFIX, hashed_key, hashed_namespace, private_namespace,
};
use gridledger_ledger::{Expiry, MetadataWrite, PrivateSet, StateWrite};
use gridledger_proto::kvrwset::{HashedRwSet, KvrwSet};
use gridledger_proto::prost::Message;
use gridledger_proto::protos;
use gridledger_proto::rwset::TxPvtReadWriteSet;
use thiserror::Error;

use crate::validation::EndorsementPolicy;

/// One private data collection of a chaincode definition.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionDefinition {
    /// The collection name.
    pub name: String,
    /// MSP ids of the member organizations.
    pub members: BTreeSet<String>,
    /// Member peers that must acknowledge the private data before endorsement succeeds.
    pub required_peer_count: i32,
    /// At most this many member peers receive the data at endorsement.
    pub maximum_peer_count: i32,
    /// Blocks a value lives after the block that wrote it (0 = forever).
    pub block_to_live: u64,
    /// Only clients of member organizations may read values.
    pub member_only_read: bool,
    /// Only clients of member organizations may write.
    pub member_only_write: bool,
    /// The collection's endorsement policy; `None` = the chaincode's.
    pub endorsement: Option<EndorsementPolicy>,
}

impl CollectionDefinition {
    /// Fabric's implicit collection of organization `msp_id`: that org alone, sent to at most
    /// one other peer and required by none (Fabric's default implicit dissemination policy),
    /// kept forever, its org's endorsement.
    pub fn implicit(msp_id: &str) -> CollectionDefinition {
        CollectionDefinition {
            name: format!("{IMPLICIT_COLLECTION_PREFIX}{msp_id}"),
            members: BTreeSet::from([msp_id.to_owned()]),
            required_peer_count: 0,
            maximum_peer_count: 1,
            block_to_live: 0,
            member_only_read: false,
            member_only_write: false,
            endorsement: None,
        }
    }

    /// The access rules the chaincode stub enforces.
    pub fn access(&self) -> CollectionAccess {
        CollectionAccess {
            members: self.members.clone(),
            member_only_read: self.member_only_read,
            member_only_write: self.member_only_write,
        }
    }

    /// Whether organization `msp_id` is a member.
    pub fn is_member(&self, msp_id: &str) -> bool {
        self.members.contains(msp_id)
    }
}

/// Why a collection configuration was refused (at approve or commit).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CollectionError {
    /// A collection config that is not a `StaticCollectionConfig`.
    #[error("collection config #{0} is not a static collection config")]
    NotStatic(usize),
    /// An empty or reserved name.
    #[error(
        "collection name {0:?} is invalid: it must be non-empty, must not start with {IMPLICIT_COLLECTION_PREFIX:?} and may use only letters, digits, '-' and '_'"
    )]
    BadName(String),
    /// Two collections with one name.
    #[error("collection {0:?} is defined more than once")]
    Duplicate(String),
    /// No member orgs signature policy.
    #[error("collection {0:?} has no member orgs signature policy")]
    NoMemberPolicy(String),
    /// A member policy naming an org that is not on the channel.
    #[error(
        "collection {collection:?} names {msp_id:?} as a member, which is not an organization of the channel"
    )]
    NotChannelOrg {
        /// The collection.
        collection: String,
        /// The unknown MSP id.
        msp_id: String,
    },
    /// Peer counts out of order.
    #[error(
        "collection {collection:?}: required_peer_count {required} must be between 0 and maximum_peer_count {maximum}"
    )]
    PeerCounts {
        /// The collection.
        collection: String,
        /// `required_peer_count`.
        required: i32,
        /// `maximum_peer_count`.
        maximum: i32,
    },
    /// An endorsement policy that does not decode.
    #[error("collection {collection:?} has an invalid endorsement policy: {reason}")]
    BadEndorsementPolicy {
        /// The collection.
        collection: String,
        /// Why.
        reason: String,
    },
}

/// The collections of a `CollectionConfigPackage`, checked as Fabric's lifecycle checks them:
/// static configs only, valid unique names, a member orgs signature policy naming only orgs
/// of the channel (MSP ids `channel_orgs`), `0 ≤ required_peer_count ≤ maximum_peer_count`,
/// a decodable endorsement policy. `channel_orgs = None` skips the channel-membership check
/// (reading a committed definition, which was checked when it was approved and committed).
pub fn collections(
    package: Option<&protos::CollectionConfigPackage>,
    channel_orgs: Option<&[String]>,
) -> Result<BTreeMap<String, CollectionDefinition>, CollectionError> {
    let mut out = BTreeMap::new();
    let Some(package) = package else {
        return Ok(out);
    };
    for (i, config) in package.config.iter().enumerate() {
        let Some(protos::collection_config::Payload::StaticCollectionConfig(c)) = &config.payload
        else {
            return Err(CollectionError::NotStatic(i));
        };
        let name_ok = !c.name.is_empty()
            && !c.name.starts_with(IMPLICIT_COLLECTION_PREFIX)
            && c.name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
        if !name_ok {
            return Err(CollectionError::BadName(c.name.clone()));
        }
        if out.contains_key(&c.name) {
            return Err(CollectionError::Duplicate(c.name.clone()));
        }
        let has_policy = matches!(
            c.member_orgs_policy
                .as_ref()
                .and_then(|p| p.payload.as_ref()),
            Some(protos::collection_policy_config::Payload::SignaturePolicy(
                _
            ))
        );
        if !has_policy {
            return Err(CollectionError::NoMemberPolicy(c.name.clone()));
        }
        let members = pvt::member_msp_ids(c);
        if members.is_empty() {
            return Err(CollectionError::NoMemberPolicy(c.name.clone()));
        }
        if let Some(orgs) = channel_orgs {
            if let Some(unknown) = members.iter().find(|m| !orgs.contains(m)) {
                return Err(CollectionError::NotChannelOrg {
                    collection: c.name.clone(),
                    msp_id: unknown.clone(),
                });
            }
        }
        if c.required_peer_count < 0 || c.required_peer_count > c.maximum_peer_count {
            return Err(CollectionError::PeerCounts {
                collection: c.name.clone(),
                required: c.required_peer_count,
                maximum: c.maximum_peer_count,
            });
        }
        let endorsement = match &c.endorsement_policy {
            None => None,
            Some(policy) => Some(
                crate::lifecycle::endorsement_policy(&policy.encode_to_vec()).map_err(
                    |reason| CollectionError::BadEndorsementPolicy {
                        collection: c.name.clone(),
                        reason,
                    },
                )?,
            ),
        };
        out.insert(
            c.name.clone(),
            CollectionDefinition {
                name: c.name.clone(),
                members,
                required_peer_count: c.required_peer_count,
                maximum_peer_count: c.maximum_peer_count,
                block_to_live: c.block_to_live,
                member_only_read: c.member_only_read,
                member_only_write: c.member_only_write,
                endorsement,
            },
        );
    }
    Ok(out)
}

/// Why an upgrade's collections are refused: Fabric lets an upgrade add collections and
/// change most of their settings, but never drop one nor change its `block_to_live`.
pub fn check_upgrade(
    current: &BTreeMap<String, CollectionDefinition>,
    next: &BTreeMap<String, CollectionDefinition>,
) -> Result<(), String> {
    for (name, old) in current {
        match next.get(name) {
            None => {
                return Err(format!(
                    "the new definition drops collection {name:?}; existing collections cannot be removed"
                ));
            }
            Some(new) if new.block_to_live != old.block_to_live => {
                return Err(format!(
                    "the new definition changes block_to_live of collection {name:?} from {} to {}; it cannot change",
                    old.block_to_live, new.block_to_live
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Collection `name` of a chaincode with `defined` collections on `channel`: a defined one,
/// or the implicit collection of a channel org.
pub fn lookup(
    defined: &BTreeMap<String, CollectionDefinition>,
    channel: &gridledger_channels::config::ChannelConfig,
    name: &str,
) -> Option<CollectionDefinition> {
    if let Some(def) = defined.get(name) {
        return Some(def.clone());
    }
    let msp_id = name.strip_prefix(IMPLICIT_COLLECTION_PREFIX)?;
    channel.organization(msp_id)?;
    Some(CollectionDefinition::implicit(msp_id))
}

/// The private data a valid transaction wrote, as its block carries it: per (namespace,
/// collection), the hashed read-write set and `pvt_rwset_hash`.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionWrites {
    /// The chaincode namespace.
    pub namespace: String,
    /// The collection.
    pub collection: String,
    /// The hashed writes and reads from the block.
    pub hashed: HashedRwSet,
    /// SHA-256 of the collection's encoded private `KVRWSet` (empty when nothing was written).
    pub pvt_rwset_hash: Vec<u8>,
}

/// Why a private write set does not belong to its transaction.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PrivateDataError {
    /// The transient bytes are not a `TxPvtReadWriteSet`.
    #[error("the private read-write set does not decode: {0}")]
    Decode(String),
    /// A collection's private write set does not hash to the block's `pvt_rwset_hash`.
    #[error(
        "the private write set of {namespace}/{collection} does not match the hash in the block"
    )]
    HashMismatch {
        /// The namespace.
        namespace: String,
        /// The collection.
        collection: String,
    },
    /// The private write set lacks a collection the block wrote.
    #[error("the private read-write set lacks {namespace}/{collection}")]
    Missing {
        /// The namespace.
        namespace: String,
        /// The collection.
        collection: String,
    },
}

/// What a member peer commits of one transaction's private data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    /// Private value writes (derived `ns$$pcoll` namespaces).
    pub writes: Vec<StateWrite>,
    /// The collections' private write sets, kept for peers that missed them.
    pub sets: Vec<PrivateSet>,
    /// Purged keys (derived namespace, key).
    pub purges: Vec<(String, String)>,
    /// Key-metadata writes of private keys (derived `ns$$pcoll` namespaces): they give a
    /// current private value the version its hash takes, so reads keep matching (a value this
    /// peer missed an earlier write of stays behind, `MetadataWrite::current_with`).
    pub metadata_writes: Vec<MetadataWrite>,
}

/// The private data of one transaction's collections that this peer keeps (those in
/// `member_of`), taken from an encoded `TxPvtReadWriteSet` and checked against the block:
/// each collection's encoded set must hash to `pvt_rwset_hash`. `Err` when the set does not
/// belong to the transaction — the caller then tries another copy.
pub fn resolve(
    pvt_rwset: &[u8],
    expected: &[CollectionWrites],
    member_of: &dyn Fn(&str, &str) -> bool,
) -> Result<Resolved, PrivateDataError> {
    let set = TxPvtReadWriteSet::decode(pvt_rwset)
        .map_err(|e| PrivateDataError::Decode(e.to_string()))?;
    let mut out = Resolved::default();
    for want in expected
        .iter()
        .filter(|w| !w.pvt_rwset_hash.is_empty() && member_of(&w.namespace, &w.collection))
    {
        let found = set
            .ns_pvt_rwset
            .iter()
            .filter(|ns| ns.namespace == want.namespace)
            .flat_map(|ns| ns.collection_pvt_rwset.iter())
            .find(|c| c.collection_name == want.collection)
            .ok_or_else(|| PrivateDataError::Missing {
                namespace: want.namespace.clone(),
                collection: want.collection.clone(),
            })?;
        let mismatch = || PrivateDataError::HashMismatch {
            namespace: want.namespace.clone(),
            collection: want.collection.clone(),
        };
        if pvt::hash(&found.rwset) != want.pvt_rwset_hash {
            return Err(mismatch());
        }
        let kv = KvrwSet::decode(found.rwset.as_slice()).map_err(|_| mismatch())?;
        let namespace = private_namespace(&want.namespace, &want.collection);
        let purged: BTreeSet<&[u8]> = want
            .hashed
            .hashed_writes
            .iter()
            .filter(|w| w.is_purge)
            .map(|w| w.key_hash.as_slice())
            .collect();
        let mut keys = Vec::with_capacity(kv.writes.len());
        for write in kv.writes {
            if purged.contains(pvt::hash(write.key.as_bytes()).as_slice()) {
                out.purges.push((namespace.clone(), write.key.clone()));
            }
            keys.push(write.key.clone());
            out.writes.push(StateWrite {
                namespace: namespace.clone(),
                key: write.key,
                value: (!write.is_delete).then_some(write.value),
            });
        }
        let hashed_ns = hashed_namespace(&want.namespace, &want.collection);
        for write in kv.metadata_writes {
            keys.push(write.key.clone());
            let hash_row = (
                hashed_ns.clone(),
                hashed_key(&pvt::hash(write.key.as_bytes())),
            );
            out.metadata_writes.push(MetadataWrite {
                namespace: namespace.clone(),
                key: write.key,
                metadata: Some(crate::validation::encode_metadata(&write.entries)),
                current_with: Some(hash_row),
            });
        }
        out.sets.push(PrivateSet {
            namespace,
            rwset: found.rwset.clone(),
            keys,
        });
    }
    Ok(out)
}

/// The expiry schedule of a transaction's collection writes committed in block `number`:
/// every hashed write (and, on a member, the private value) of a collection with a
/// `block_to_live` expires at `number + block_to_live + 1`.
pub fn expiries(
    number: u64,
    writes: &[CollectionWrites],
    block_to_live: &dyn Fn(&str, &str) -> u64,
    private_writes: &[StateWrite],
) -> Vec<Expiry> {
    let mut out = Vec::new();
    for w in writes {
        let btl = block_to_live(&w.namespace, &w.collection);
        if btl == 0 {
            continue;
        }
        let expire_at = number.saturating_add(btl).saturating_add(1);
        let hashed_ns = hashed_namespace(&w.namespace, &w.collection);
        for hw in w.hashed.hashed_writes.iter().filter(|hw| !hw.is_delete) {
            out.push(Expiry {
                namespace: hashed_ns.clone(),
                key: hashed_key(&hw.key_hash),
                expire_at,
            });
        }
        let private_ns = private_namespace(&w.namespace, &w.collection);
        for pw in private_writes
            .iter()
            .filter(|pw| pw.namespace == private_ns && pw.value.is_some())
        {
            out.push(Expiry {
                namespace: private_ns.clone(),
                key: pw.key.clone(),
                expire_at,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridledger_proto::kvrwset::{KvMetadataEntry, KvMetadataWrite, KvWrite, KvWriteHash};
    use gridledger_proto::rwset::{CollectionPvtReadWriteSet, NsPvtReadWriteSet};

    fn config(name: &str, members: &str, required: i32, maximum: i32) -> protos::CollectionConfig {
        protos::CollectionConfig {
            payload: Some(protos::collection_config::Payload::StaticCollectionConfig(
                protos::StaticCollectionConfig {
                    name: name.into(),
                    member_orgs_policy: Some(protos::CollectionPolicyConfig {
                        payload: Some(protos::collection_policy_config::Payload::SignaturePolicy(
                            gridledger_channels::policy::parse(members).expect("policy"),
                        )),
                    }),
                    required_peer_count: required,
                    maximum_peer_count: maximum,
                    block_to_live: 3,
                    member_only_read: true,
                    member_only_write: false,
                    endorsement_policy: None,
                },
            )),
        }
    }

    fn package(configs: Vec<protos::CollectionConfig>) -> protos::CollectionConfigPackage {
        protos::CollectionConfigPackage { config: configs }
    }

    #[test]
    fn collections_are_read_with_their_members_and_rules() {
        let p = package(vec![config(
            "deals",
            "OR('DSOMSP.member', 'RetailerMSP.peer')",
            1,
            2,
        )]);
        let defs = collections(Some(&p), None).expect("valid");
        let deals = &defs["deals"];
        assert_eq!(
            deals.members,
            BTreeSet::from(["DSOMSP".to_string(), "RetailerMSP".to_string()])
        );
        assert_eq!(
            (deals.required_peer_count, deals.maximum_peer_count),
            (1, 2)
        );
        assert_eq!(deals.block_to_live, 3);
        assert!(deals.member_only_read && !deals.member_only_write);
        assert!(deals.access().members.contains("DSOMSP"));
    }

    #[test]
    fn bad_collection_configs_are_refused_with_the_reason() {
        let dup = package(vec![
            config("c", "OR('A.member')", 0, 1),
            config("c", "OR('B.member')", 0, 1),
        ]);
        assert_eq!(
            collections(Some(&dup), None),
            Err(CollectionError::Duplicate("c".into()))
        );
        let counts = package(vec![config("c", "OR('A.member')", 3, 1)]);
        assert!(matches!(
            collections(Some(&counts), None),
            Err(CollectionError::PeerCounts {
                required: 3,
                maximum: 1,
                ..
            })
        ));
        let implicit = package(vec![config("_implicit_org_A", "OR('A.member')", 0, 1)]);
        assert!(matches!(
            collections(Some(&implicit), None),
            Err(CollectionError::BadName(_))
        ));
        let mut no_policy = config("c", "OR('A.member')", 0, 1);
        if let Some(protos::collection_config::Payload::StaticCollectionConfig(c)) =
            &mut no_policy.payload
        {
            c.member_orgs_policy = None;
        }
        assert_eq!(
            collections(Some(&package(vec![no_policy])), None),
            Err(CollectionError::NoMemberPolicy("c".into()))
        );
    }

    fn block_entry(rwset: &[u8]) -> CollectionWrites {
        CollectionWrites {
            namespace: "cc".into(),
            collection: "c".into(),
            hashed: HashedRwSet {
                hashed_writes: vec![KvWriteHash {
                    key_hash: pvt::hash(b"k"),
                    is_delete: false,
                    value_hash: pvt::hash(b"v"),
                    is_purge: false,
                }],
                ..HashedRwSet::default()
            },
            pvt_rwset_hash: pvt::hash(rwset),
        }
    }

    fn pvt_set(rwset: Vec<u8>) -> Vec<u8> {
        TxPvtReadWriteSet {
            data_model: 0,
            ns_pvt_rwset: vec![NsPvtReadWriteSet {
                namespace: "cc".into(),
                collection_pvt_rwset: vec![CollectionPvtReadWriteSet {
                    collection_name: "c".into(),
                    rwset,
                }],
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn resolve_turns_private_metadata_writes_into_metadata_of_the_private_key() {
        let entries = vec![KvMetadataEntry {
            name: "VALIDATION_PARAMETER".into(),
            value: b"policy".to_vec(),
        }];
        let kv = KvrwSet {
            metadata_writes: vec![KvMetadataWrite {
                key: "k".into(),
                entries: entries.clone(),
            }],
            ..KvrwSet::default()
        }
        .encode_to_vec();
        let resolved =
            resolve(&pvt_set(kv.clone()), &[block_entry(&kv)], &|_, _| true).expect("matches");
        assert!(resolved.writes.is_empty());
        assert_eq!(
            resolved.metadata_writes,
            vec![MetadataWrite {
                namespace: "cc$$pc".into(),
                key: "k".into(),
                metadata: Some(crate::validation::encode_metadata(&entries)),
                current_with: Some(("cc$$hc".into(), hashed_key(&pvt::hash(b"k")))),
            }]
        );
        // The kept set is indexed by the key, so a purge of the key drops it.
        assert_eq!(resolved.sets[0].keys, vec!["k".to_string()]);
    }

    #[test]
    fn resolve_takes_values_only_when_they_match_the_block_and_only_for_members() {
        let kv = KvrwSet {
            writes: vec![KvWrite {
                key: "k".into(),
                is_delete: false,
                value: b"v".to_vec(),
            }],
            ..KvrwSet::default()
        }
        .encode_to_vec();
        let expected = [block_entry(&kv)];
        let resolved = resolve(&pvt_set(kv.clone()), &expected, &|_, _| true).expect("matches");
        assert_eq!(resolved.sets[0].rwset, kv);
        assert_eq!(resolved.sets[0].keys, vec!["k".to_string()]);
        assert!(resolved.purges.is_empty());
        assert_eq!(
            resolved.writes,
            vec![StateWrite {
                namespace: "cc$$pc".into(),
                key: "k".into(),
                value: Some(b"v".to_vec())
            }]
        );
        // A non-member takes nothing, even from a matching set.
        assert!(
            resolve(&pvt_set(kv.clone()), &expected, &|_, _| false)
                .expect("nothing to check")
                .writes
                .is_empty()
        );
        // A tampered set does not match the block.
        let mut tampered = kv.clone();
        if let Some(last) = tampered.last_mut() {
            *last ^= 1;
        }
        assert!(matches!(
            resolve(&pvt_set(tampered), &expected, &|_, _| true),
            Err(PrivateDataError::HashMismatch { .. })
        ));
        assert!(matches!(
            resolve(b"\xff\xff", &expected, &|_, _| true),
            Err(PrivateDataError::Decode(_))
        ));
    }

    #[test]
    fn expiries_follow_block_to_live() {
        let entry = block_entry(b"x");
        let private = [StateWrite {
            namespace: "cc$$pc".into(),
            key: "k".into(),
            value: Some(b"v".to_vec()),
        }];
        let out = expiries(10, std::slice::from_ref(&entry), &|_, _| 2, &private);
        assert_eq!(
            out,
            vec![
                Expiry {
                    namespace: "cc$$hc".into(),
                    key: hashed_key(&pvt::hash(b"k")),
                    expire_at: 13
                },
                Expiry {
                    namespace: "cc$$pc".into(),
                    key: "k".into(),
                    expire_at: 13
                },
            ]
        );
        assert!(expiries(10, &[entry], &|_, _| 0, &private).is_empty());
    }
}
