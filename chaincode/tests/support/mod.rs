//! The in-memory world state the chaincode tests read through: entries by (namespace, key),
//! with the point and range reads a `StateReader` answers. Each test binary compiles this
//! module on its own.
#![allow(dead_code)]

use std::collections::BTreeMap;

use gridledger_proto::kvrwset::Version;

/// (namespace, key) → (value, version).
pub type Entries = BTreeMap<(String, String), (Vec<u8>, Version)>;

/// The value and version of `key` in `namespace`.
pub fn get(entries: &Entries, namespace: &str, key: &str) -> Option<(Vec<u8>, Version)> {
    entries
        .get(&(namespace.to_owned(), key.to_owned()))
        .cloned()
}

/// The keys of `namespace` in `[start, end)` (an empty `end`: no bound), at most `limit`.
pub fn range(
    entries: &Entries,
    namespace: &str,
    start: &str,
    end: &str,
    limit: usize,
) -> Vec<(String, Vec<u8>, Version)> {
    entries
        .iter()
        .filter(|((ns, key), _)| {
            ns == namespace && key.as_str() >= start && (end.is_empty() || key.as_str() < end)
        })
        .take(limit)
        .map(|((_, key), (value, version))| (key.clone(), value.clone(), *version))
        .collect()
}

/// A world state that applies simulation results the way a member peer commits them: public
/// writes, and for private data collections the values and their hashes. Every result applied
/// is one block (versions `(n, 0)`).
#[derive(Default, Clone)]
pub struct World {
    /// The entries, private and hashed namespaces included.
    pub entries: Entries,
    /// Defined collections: (chaincode, collection) → access rules.
    pub collections: BTreeMap<(String, String), gridledger_chaincode::CollectionAccess>,
    blocks: u64,
}

impl World {
    /// Defines `collection` of `namespace` with member organizations `members`, member-only
    /// reads and writes.
    pub fn with_collection(mut self, namespace: &str, collection: &str, members: &[&str]) -> World {
        self.collections.insert(
            (namespace.to_owned(), collection.to_owned()),
            gridledger_chaincode::CollectionAccess {
                members: members.iter().map(|m| (*m).to_owned()).collect(),
                member_only_read: true,
                member_only_write: true,
            },
        );
        self
    }

    /// Commits `result`'s writes (public, hashed and private) as the next block.
    pub fn apply(&mut self, result: &gridledger_chaincode::SimulationResult) {
        use gridledger_chaincode::private::{hashed_key, hashed_namespace, private_namespace};
        use gridledger_proto::kvrwset::{HashedRwSet, KvrwSet};
        use gridledger_proto::prost::Message;
        self.blocks += 1;
        let version = Version {
            block_num: self.blocks,
            tx_num: 0,
        };
        let set = |entries: &mut Entries, ns: String, key: String, value: Option<Vec<u8>>| {
            match value {
                Some(v) => entries.insert((ns, key), (v, version)),
                None => entries.remove(&(ns, key)),
            };
        };
        for ns in &result.rwset.ns_rwset {
            let kv = KvrwSet::decode(ns.rwset.as_slice()).expect("KVRWSet");
            for w in kv.writes {
                set(
                    &mut self.entries,
                    ns.namespace.clone(),
                    w.key,
                    (!w.is_delete).then_some(w.value),
                );
            }
            for coll in &ns.collection_hashed_rwset {
                let hashed =
                    HashedRwSet::decode(coll.hashed_rwset.as_slice()).expect("HashedRWSet");
                for w in hashed.hashed_writes {
                    set(
                        &mut self.entries,
                        hashed_namespace(&ns.namespace, &coll.collection_name),
                        hashed_key(&w.key_hash),
                        (!w.is_delete).then_some(w.value_hash),
                    );
                }
            }
        }
        for ns in result.pvt_rwset.iter().flat_map(|p| &p.ns_pvt_rwset) {
            for coll in &ns.collection_pvt_rwset {
                let kv = KvrwSet::decode(coll.rwset.as_slice()).expect("private KVRWSet");
                for w in kv.writes {
                    set(
                        &mut self.entries,
                        private_namespace(&ns.namespace, &coll.collection_name),
                        w.key,
                        (!w.is_delete).then_some(w.value),
                    );
                }
            }
        }
    }
}

impl gridledger_chaincode::StateReader for World {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<(Vec<u8>, Version)>, String> {
        Ok(get(&self.entries, namespace, key))
    }

    fn range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>, Version)>, String> {
        Ok(range(&self.entries, namespace, start, end, limit))
    }

    fn collection(
        &self,
        namespace: &str,
        collection: &str,
    ) -> Result<Option<gridledger_chaincode::CollectionAccess>, String> {
        Ok(self
            .collections
            .get(&(namespace.to_owned(), collection.to_owned()))
            .cloned())
    }
}

/// (MSP, serialized identity, certificate attributes) of a test identity.
pub type Who = (String, Vec<u8>, BTreeMap<String, String>);

/// Real identities for a test: crypto material generated into a temporary folder (removed on
/// drop) from a list of organizations in the crypto config's JSON shape.
pub struct People {
    dir: std::path::PathBuf,
}

impl People {
    /// Generates the identities of `organizations` under a folder named after `name`.
    pub fn new(name: &str, organizations: serde_json::Value) -> People {
        let dir = std::env::temp_dir().join(format!("gridledger-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config: gridledger_identity::material::CryptoConfig =
            serde_json::from_value(serde_json::json!({
                "seed": format!("gridledger-{name}"),
                "organizations": organizations,
            }))
            .expect("crypto config");
        gridledger_identity::material::generate(&config, &dir, 0).expect("generate material");
        People { dir }
    }

    /// User `name` of `msp`.
    pub fn user(&self, msp: &str, name: &str) -> Who {
        let base = self
            .dir
            .join(format!("organizations/{msp}/users/{name}/msp"));
        let identity = gridledger_identity::SigningIdentity::load(
            msp,
            &base.join("signcerts/cert.pem"),
            &base.join("keystore/key.pem"),
        )
        .expect("load identity");
        let cert = gridledger_identity::Certificate::from_pem(
            &std::fs::read(base.join("signcerts/cert.pem")).expect("cert"),
        )
        .expect("parse cert");
        (
            msp.to_owned(),
            identity.serialized().to_vec(),
            cert.attributes,
        )
    }
}

impl Drop for People {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The payload of a successful simulation (panics with the chaincode's message otherwise).
pub fn ok(result: &gridledger_chaincode::SimulationResult) -> Vec<u8> {
    assert_eq!(result.response.status, 200, "{}", result.response.message);
    result.response.payload.clone()
}

/// Asserts that a simulation was refused with a message containing `needle`.
pub fn fails(result: &gridledger_chaincode::SimulationResult, needle: &str) {
    assert_eq!(
        result.response.status, 500,
        "expected a refusal mentioning {needle:?}, got success"
    );
    assert!(
        result.response.message.contains(needle),
        "{:?} does not mention {needle:?}",
        result.response.message
    );
}

/// An invocation of `chaincode` on `channel` by `who` at Unix time `at`, with string
/// arguments (the tx id is made from the time and arguments).
pub fn invocation(
    channel: &str,
    chaincode: &str,
    who: &Who,
    at: i64,
    args: &[&str],
) -> gridledger_chaincode::Invocation {
    gridledger_chaincode::Invocation {
        channel_id: channel.to_owned(),
        tx_id: format!("tx-{at}-{}", args.join("-")),
        chaincode: chaincode.to_owned(),
        args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
        creator: who.1.clone(),
        creator_msp_id: who.0.clone(),
        creator_attributes: who.2.clone(),
        timestamp: Some(gridledger_proto::prost_types::Timestamp {
            seconds: at,
            nanos: 0,
        }),
        ..gridledger_chaincode::Invocation::default()
    }
}

/// A bilateral meter channel's state with the `meter` chaincode's `readings` collection of
/// the DSO and the channel's market organization (from the channel's name).
pub fn meter_channel(channel: &str) -> World {
    let org = if channel.ends_with("retailer") {
        "RetailerMSP"
    } else {
        "CommunityMSP"
    };
    World::default().with_collection("meter", "readings", &["DSOMSP", org])
}

/// `RecordReading` of `interval` by `meter` on `channel`, just after the interval, salted.
pub fn reading_invocation(
    channel: &str,
    meter: &Who,
    interval: i64,
    import: u64,
    export: u64,
) -> gridledger_chaincode::Invocation {
    let mut inv = invocation(
        channel,
        "meter",
        meter,
        interval + 900,
        &[
            "RecordReading",
            &interval.to_string(),
            &import.to_string(),
            &export.to_string(),
        ],
    );
    inv.transient = [("salt".to_owned(), b"salt-of-the-meter-0001".to_vec())].into();
    inv
}
