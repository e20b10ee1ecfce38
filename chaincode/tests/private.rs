//! Private data through the Rust stub: hashed read-write sets as Fabric builds them, the
//! private write set, membership rules, and reads on a peer that holds only hashes.

mod support;

use std::collections::BTreeMap;

use gridledger_chaincode::private::{hash, hashed_key, hashed_namespace, private_namespace};
use gridledger_chaincode::{
    Chaincode, ChaincodeStub, CollectionAccess, Invocation, Metadata, SimulationResult,
    StateReader, StubError, VALIDATION_PARAMETER, simulate, success,
};
use gridledger_proto::kvrwset::{
    HashedRwSet, KvMetadataEntry, KvMetadataWrite, KvMetadataWriteHash, KvReadHash, KvWrite,
    KvWriteHash, KvrwSet, Version,
};
use gridledger_proto::prost::Message;
use gridledger_proto::protos::Response;

const NS: &str = "cc";
const COLL: &str = "secrets";

/// World state in memory plus one defined collection, members DSOMSP and RetailerMSP.
#[derive(Default)]
struct MemState {
    entries: BTreeMap<(String, String), (Vec<u8>, Version)>,
    metadata: BTreeMap<(String, String), Metadata>,
    member_only: bool,
}

impl MemState {
    /// A committed private key as a member peer holds it: value and hash at one version.
    fn with_private(mut self, key: &str, value: &[u8], version: Version, member: bool) -> Self {
        self.entries.insert(
            (
                hashed_namespace(NS, COLL),
                hashed_key(&hash(key.as_bytes())),
            ),
            (hash(value), version),
        );
        if member {
            self.entries.insert(
                (private_namespace(NS, COLL), key.to_owned()),
                (value.to_vec(), version),
            );
        }
        self
    }
}

impl StateReader for MemState {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<(Vec<u8>, Version)>, String> {
        Ok(support::get(&self.entries, namespace, key))
    }

    fn range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>, Version)>, String> {
        Ok(support::range(&self.entries, namespace, start, end, limit))
    }

    fn metadata(&self, namespace: &str, key: &str) -> Result<Metadata, String> {
        Ok(self
            .metadata
            .get(&(namespace.to_owned(), key.to_owned()))
            .cloned()
            .unwrap_or_default())
    }

    fn collection(
        &self,
        _namespace: &str,
        collection: &str,
    ) -> Result<Option<CollectionAccess>, String> {
        Ok((collection == COLL).then(|| CollectionAccess {
            members: ["DSOMSP".to_owned(), "RetailerMSP".to_owned()].into(),
            member_only_read: self.member_only,
            member_only_write: self.member_only,
        }))
    }
}

struct FnChaincode<F>(F);

impl<F> Chaincode for FnChaincode<F>
where
    F: Fn(&mut ChaincodeStub<'_>) -> Response + Send + Sync,
{
    fn invoke(&self, stub: &mut ChaincodeStub<'_>) -> Response {
        (self.0)(stub)
    }
}

fn invocation(msp_id: &str) -> Invocation {
    Invocation {
        channel_id: "market".to_owned(),
        tx_id: "tx1".to_owned(),
        chaincode: NS.to_owned(),
        creator_msp_id: msp_id.to_owned(),
        ..Invocation::default()
    }
}

fn run(
    state: &MemState,
    msp_id: &str,
    f: impl Fn(&mut ChaincodeStub<'_>) -> Result<Vec<u8>, StubError> + Send + Sync,
) -> SimulationResult {
    let cc = FnChaincode(move |stub: &mut ChaincodeStub<'_>| match f(stub) {
        Ok(payload) => success(payload),
        Err(e) => gridledger_chaincode::error(e.to_string()),
    });
    simulate(&cc, NS, &invocation(msp_id), state)
}

fn hashed(result: &SimulationResult) -> HashedRwSet {
    let ns = &result.rwset.ns_rwset[0];
    assert_eq!(ns.collection_hashed_rwset[0].collection_name, COLL);
    HashedRwSet::decode(ns.collection_hashed_rwset[0].hashed_rwset.as_slice()).expect("decodes")
}

#[test]
fn writes_produce_fabric_hashes_and_a_private_rwset() {
    let state = MemState::default();
    let result = run(&state, "DSOMSP", |stub| {
        stub.put_private_data(COLL, "k2", b"v2")?;
        stub.put_private_data(COLL, "k1", b"v1")?;
        stub.del_private_data(COLL, "k3")?;
        Ok(Vec::new())
    });
    assert_eq!(result.response.status, 200, "{}", result.response.message);
    let hashed = hashed(&result);
    let mut expected = vec![
        KvWriteHash {
            key_hash: hash(b"k1"),
            is_delete: false,
            value_hash: hash(b"v1"),
            is_purge: false,
        },
        KvWriteHash {
            key_hash: hash(b"k2"),
            is_delete: false,
            value_hash: hash(b"v2"),
            is_purge: false,
        },
        KvWriteHash {
            key_hash: hash(b"k3"),
            is_delete: true,
            value_hash: Vec::new(),
            is_purge: false,
        },
    ];
    expected.sort_by(|a, b| a.key_hash.cmp(&b.key_hash));
    assert_eq!(hashed.hashed_writes, expected);
    // The public KV set of the namespace is empty: no value or key in clear text.
    let public = KvrwSet::decode(result.rwset.ns_rwset[0].rwset.as_slice()).expect("decodes");
    assert_eq!(public, KvrwSet::default());
    assert!(!result.rwset_bytes.windows(2).any(|w| w == b"v1"));

    let pvt = result.pvt_rwset.expect("private writes");
    let coll = &pvt.ns_pvt_rwset[0].collection_pvt_rwset[0];
    let kv = KvrwSet::decode(coll.rwset.as_slice()).expect("decodes");
    assert_eq!(
        kv.writes,
        vec![
            KvWrite {
                key: "k1".into(),
                is_delete: false,
                value: b"v1".to_vec()
            },
            KvWrite {
                key: "k2".into(),
                is_delete: false,
                value: b"v2".to_vec()
            },
            KvWrite {
                key: "k3".into(),
                is_delete: true,
                value: Vec::new()
            },
        ]
    );
    // pvt_rwset_hash binds the private set to the public one.
    assert_eq!(
        result.rwset.ns_rwset[0].collection_hashed_rwset[0].pvt_rwset_hash,
        hash(&coll.rwset)
    );
}

#[test]
fn reads_record_the_hash_version_and_need_the_matching_value() {
    let version = Version {
        block_num: 4,
        tx_num: 1,
    };
    let member = MemState::default().with_private("k", b"secret", version, true);
    let result = run(&member, "DSOMSP", |stub| {
        Ok(stub.get_private_data(COLL, "k")?.unwrap_or_default())
    });
    assert_eq!(result.response.payload, b"secret");
    assert_eq!(
        hashed(&result).hashed_reads,
        vec![KvReadHash {
            key_hash: hash(b"k"),
            version: Some(version)
        }]
    );
    assert!(result.pvt_rwset.is_none());
    assert!(
        result.rwset.ns_rwset[0].collection_hashed_rwset[0]
            .pvt_rwset_hash
            .is_empty()
    );

    // A peer holding only the hash cannot answer with a value, but knows the hash.
    let non_member = MemState::default().with_private("k", b"secret", version, false);
    let result = run(&non_member, "DSOMSP", |stub| {
        Ok(stub.get_private_data(COLL, "k")?.unwrap_or_default())
    });
    assert_eq!(result.response.status, 500);
    assert!(result.response.message.contains("not available"));
    let result = run(&non_member, "DSOMSP", |stub| {
        Ok(stub.get_private_data_hash(COLL, "k")?.unwrap_or_default())
    });
    assert_eq!(result.response.payload, hash(b"secret"));

    // A missing key is None and records a read without version.
    let result = run(&member, "DSOMSP", |stub| {
        Ok(stub
            .get_private_data(COLL, "absent")?
            .map_or(b"none".to_vec(), |v| v))
    });
    assert_eq!(result.response.payload, b"none");
    assert_eq!(hashed(&result).hashed_reads[0].version, None);
}

#[test]
fn member_only_read_and_write_refuse_other_organizations() {
    let version = Version {
        block_num: 1,
        tx_num: 0,
    };
    let state = MemState {
        member_only: true,
        ..MemState::default()
    }
    .with_private("k", b"v", version, true);
    let read = run(&state, "TraderMSP", |stub| {
        Ok(stub.get_private_data(COLL, "k")?.unwrap_or_default())
    });
    assert_eq!(read.response.status, 500);
    assert!(
        read.response.message.contains("cannot read"),
        "{}",
        read.response.message
    );
    let write = run(&state, "TraderMSP", |stub| {
        stub.put_private_data(COLL, "k", b"x")?;
        Ok(Vec::new())
    });
    assert!(write.response.message.contains("cannot write"));
    // The hash stays readable to anyone.
    let hash_read = run(&state, "TraderMSP", |stub| {
        Ok(stub.get_private_data_hash(COLL, "k")?.unwrap_or_default())
    });
    assert_eq!(hash_read.response.payload, hash(b"v"));
    // Members may do both.
    let ok = run(&state, "RetailerMSP", |stub| {
        stub.put_private_data(COLL, "k", b"x")?;
        Ok(stub.get_private_data(COLL, "k")?.unwrap_or_default())
    });
    assert_eq!(ok.response.payload, b"v");
    // Without the flags a non-member client may write (Fabric's default).
    let open = MemState::default();
    let write = run(&open, "TraderMSP", |stub| {
        stub.put_private_data(COLL, "k", b"x")?;
        Ok(Vec::new())
    });
    assert_eq!(write.response.status, 200);
}

#[test]
fn undefined_collections_are_refused_and_implicit_ones_exist() {
    struct NoDefinitions;
    impl StateReader for NoDefinitions {
        fn get(&self, _: &str, _: &str) -> Result<Option<(Vec<u8>, Version)>, String> {
            Ok(None)
        }
        fn range(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: usize,
        ) -> Result<Vec<(String, Vec<u8>, Version)>, String> {
            Ok(Vec::new())
        }
    }
    let cc = FnChaincode(|stub: &mut ChaincodeStub<'_>| {
        match stub.put_private_data("_implicit_org_DSOMSP", "k", b"v") {
            Ok(()) => {}
            Err(e) => return gridledger_chaincode::error(e.to_string()),
        }
        match stub.put_private_data("nope", "k", b"v") {
            Ok(()) => success(Vec::new()),
            Err(e) => gridledger_chaincode::error(e.to_string()),
        }
    });
    let result = simulate(&cc, NS, &invocation("DSOMSP"), &NoDefinitions);
    assert_eq!(result.response.status, 500);
    assert!(
        result.response.message.contains("\"nope\" is not defined"),
        "{}",
        result.response.message
    );
}

#[test]
fn purge_records_is_purge_and_a_private_delete() {
    let result = run(&MemState::default(), "DSOMSP", |stub| {
        stub.purge_private_data(COLL, "k")?;
        Ok(Vec::new())
    });
    assert_eq!(
        hashed(&result).hashed_writes,
        vec![KvWriteHash {
            key_hash: hash(b"k"),
            is_delete: true,
            value_hash: Vec::new(),
            is_purge: true,
        }]
    );
    let pvt = result.pvt_rwset.expect("private set");
    let kv = KvrwSet::decode(pvt.ns_pvt_rwset[0].collection_pvt_rwset[0].rwset.as_slice())
        .expect("decodes");
    assert!(kv.writes[0].is_delete);
}

#[test]
fn private_range_queries_return_values_and_forbid_later_writes() {
    let v = Version {
        block_num: 1,
        tx_num: 0,
    };
    let state = MemState::default()
        .with_private("a", b"1", v, true)
        .with_private("b", b"2", v, true);
    let result = run(&state, "DSOMSP", |stub| {
        let rows = stub.get_private_data_by_range(COLL, "", "")?;
        Ok(rows
            .into_iter()
            .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(&v)))
            .collect::<Vec<_>>()
            .join(",")
            .into_bytes())
    });
    assert_eq!(result.response.payload, b"a=1,b=2");
    let result = run(&state, "DSOMSP", |stub| {
        stub.get_private_data_by_range(COLL, "a", "c")?;
        stub.put_private_data(COLL, "c", b"3")?;
        Ok(Vec::new())
    });
    assert!(
        result.response.message.contains("read-only transaction"),
        "{}",
        result.response.message
    );
}

#[test]
fn the_privatedata_builtin_stores_transient_values_and_answers_hashes() {
    use gridledger_chaincode::privatedata::PrivateData;
    let state = MemState::default();
    let mut inv = invocation("DSOMSP");
    inv.args = vec![b"PutPrivate".to_vec(), COLL.into(), b"k".to_vec()];
    inv.transient.insert("value".into(), b"v4lu3-x".to_vec());
    let result = simulate(&PrivateData, NS, &inv, &state);
    assert_eq!(result.response.status, 200, "{}", result.response.message);
    assert_eq!(
        hashed(&result).hashed_writes[0].value_hash,
        hash(b"v4lu3-x")
    );
    // The value is not in the public read-write set.
    assert!(!result.rwset_bytes.windows(7).any(|w| w == b"v4lu3-x"));

    let stored = MemState::default().with_private(
        "k",
        b"v4lu3-x",
        Version {
            block_num: 2,
            tx_num: 0,
        },
        true,
    );
    let mut read = invocation("DSOMSP");
    read.args = vec![b"GetPrivateHash".to_vec(), COLL.into(), b"k".to_vec()];
    let result = simulate(&PrivateData, NS, &read, &stored);
    assert_eq!(
        result.response.payload,
        hashed_key(&hash(b"v4lu3-x")).into_bytes()
    );
    let mut missing = invocation("DSOMSP");
    missing.args = vec![b"PutPrivate".to_vec(), COLL.into(), b"k".to_vec()];
    let result = simulate(&PrivateData, NS, &missing, &state);
    assert!(result.response.message.contains("transient"));
}

#[test]
fn private_validation_parameter_is_read_from_the_key_hash_and_written_to_both_sets() {
    let version = Version {
        block_num: 2,
        tx_num: 0,
    };
    // A non-member peer: only the hash, with its metadata, is committed.
    let mut state = MemState::default().with_private("k", b"secret", version, false);
    state.metadata.insert(
        (hashed_namespace(NS, COLL), hashed_key(&hash(b"k"))),
        Metadata::from([(VALIDATION_PARAMETER.to_owned(), b"old policy".to_vec())]),
    );
    let result = run(&state, "DSOMSP", |stub| {
        let old = stub.get_private_data_validation_parameter(COLL, "k")?;
        assert_eq!(old.as_deref(), Some(&b"old policy"[..]));
        assert_eq!(
            stub.get_private_data_validation_parameter(COLL, "missing")?,
            None
        );
        stub.set_private_data_validation_parameter(COLL, "k", b"new policy")?;
        Ok(Vec::new())
    });
    assert_eq!(result.response.status, 200, "{}", result.response.message);
    let hashed = hashed(&result);
    let entry = KvMetadataEntry {
        name: VALIDATION_PARAMETER.to_owned(),
        value: b"new policy".to_vec(),
    };
    assert_eq!(
        hashed.metadata_writes,
        vec![KvMetadataWriteHash {
            key_hash: hash(b"k"),
            entries: vec![entry.clone()],
        }]
    );
    assert!(hashed.hashed_writes.is_empty());
    // Both keys read, at their hash versions.
    let mut reads = vec![
        KvReadHash {
            key_hash: hash(b"k"),
            version: Some(version),
        },
        KvReadHash {
            key_hash: hash(b"missing"),
            version: None,
        },
    ];
    reads.sort_by(|a, b| a.key_hash.cmp(&b.key_hash));
    assert_eq!(hashed.hashed_reads, reads);
    // The key in clear text goes only to the private set, bound by pvt_rwset_hash.
    let pvt = result.pvt_rwset.expect("private metadata write");
    let coll = &pvt.ns_pvt_rwset[0].collection_pvt_rwset[0];
    let kv = KvrwSet::decode(coll.rwset.as_slice()).expect("decodes");
    assert_eq!(
        kv.metadata_writes,
        vec![KvMetadataWrite {
            key: "k".to_owned(),
            entries: vec![entry],
        }]
    );
    assert_eq!(
        result.rwset.ns_rwset[0].collection_hashed_rwset[0].pvt_rwset_hash,
        hash(&coll.rwset)
    );
}

#[test]
fn private_metadata_writes_need_collection_write_access() {
    let state = MemState {
        member_only: true,
        ..MemState::default()
    };
    let result = run(&state, "OtherMSP", |stub| {
        stub.set_private_data_validation_parameter(COLL, "k", b"policy")?;
        Ok(Vec::new())
    });
    assert_eq!(result.response.status, 500);
    assert!(
        result.response.message.contains("OtherMSP"),
        "{}",
        result.response.message
    );
}
