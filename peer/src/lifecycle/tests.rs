//! `_lifecycle` as each organization's peer simulates it, over an in-memory world state:
//! approvals, commit readiness, the commit's own-approval and sequence rules, re-approval,
//! upgrades, and the field layout committed definitions are read back from.

#![allow(clippy::unwrap_used)]

use super::*;
use gridledger_chaincode::{Invocation, SimulationResult, StateReader, simulate};
use gridledger_proto::{kvrwset, queryresult};
use std::sync::Mutex;

const ORGS: [&str; 3] = ["DSOMSP", "RetailerMSP", "CommunityMSP"];

/// The `_lifecycle` namespace, applied transaction by transaction.
#[derive(Default)]
struct World {
    state: Mutex<BTreeMap<String, (Vec<u8>, kvrwset::Version)>>,
    block: Mutex<u64>,
}

impl StateReader for World {
    fn get(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<(Vec<u8>, kvrwset::Version)>, String> {
        assert_eq!(namespace, LIFECYCLE_NAMESPACE);
        Ok(self.state.lock().unwrap().get(key).cloned())
    }
    fn range(
        &self,
        _namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>, kvrwset::Version)>, String> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .range(start.to_string()..end.to_string())
            .take(limit)
            .map(|(k, (v, ver))| (k.clone(), v.clone(), *ver))
            .collect())
    }
    fn history(
        &self,
        _: &str,
        _: &str,
        _: usize,
    ) -> Result<Vec<queryresult::KeyModification>, String> {
        Ok(Vec::new())
    }
}

impl World {
    /// Simulates `function` as the peer of `peer_msp` for a creator of `creator_msp`.
    fn run(
        &self,
        peer_msp: &str,
        creator_msp: &str,
        admin: bool,
        function: &str,
        arg: Vec<u8>,
    ) -> SimulationResult {
        let cc = LifecycleChaincode {
            msp_id: peer_msp.into(),
            organizations: ORGS.iter().map(|o| (*o).to_string()).collect(),
            creator_is_admin: admin,
        };
        let invocation = Invocation {
            channel_id: "market".into(),
            tx_id: "tx".into(),
            chaincode: LIFECYCLE_NAMESPACE.into(),
            args: vec![function.as_bytes().to_vec(), arg],
            creator_msp_id: creator_msp.into(),
            ..Default::default()
        };
        simulate(&cc, LIFECYCLE_NAMESPACE, &invocation, self)
    }

    /// Runs and, on success, commits the writes; returns the response.
    fn submit(&self, peer_msp: &str, function: &str, arg: Vec<u8>) -> protos::Response {
        let result = self.run(peer_msp, peer_msp, true, function, arg);
        if result.response.status == 200 {
            let mut block = self.block.lock().unwrap();
            *block += 1;
            let mut state = self.state.lock().unwrap();
            for ns in &result.rwset.ns_rwset {
                let kv = kvrwset::KvrwSet::decode(ns.rwset.as_slice()).unwrap();
                for w in kv.writes {
                    if w.is_delete {
                        state.remove(&w.key);
                    } else {
                        state.insert(
                            w.key,
                            (
                                w.value,
                                kvrwset::Version {
                                    block_num: *block,
                                    tx_num: 0,
                                },
                            ),
                        );
                    }
                }
            }
        }
        result.response
    }

    fn approve(&self, msp: &str, def: &Definition, package: &str) -> protos::Response {
        self.submit(
            msp,
            "ApproveChaincodeDefinitionForMyOrg",
            approval(def, package).encode_to_vec(),
        )
    }

    fn commit(&self, msp: &str, def: &Definition) -> protos::Response {
        self.submit(msp, "CommitChaincodeDefinition", def.encode_to_vec())
    }

    fn readiness(&self, def: &Definition) -> BTreeMap<String, bool> {
        let args = lc::CheckCommitReadinessArgs {
            sequence: def.sequence,
            name: def.name.clone(),
            version: def.version.clone(),
            endorsement_plugin: def.endorsement_plugin.clone(),
            validation_plugin: def.validation_plugin.clone(),
            validation_parameter: def.validation_parameter.clone(),
            collections: def.collections.clone(),
            init_required: def.init_required,
        };
        let r = self.run(
            ORGS[0],
            ORGS[0],
            false,
            "CheckCommitReadiness",
            args.encode_to_vec(),
        );
        assert_eq!(r.response.status, 200, "{}", r.response.message);
        lc::CheckCommitReadinessResult::decode(r.response.payload.as_slice())
            .unwrap()
            .approvals
    }

    fn committed(&self, name: &str) -> Option<Definition> {
        let state = self.state.lock().unwrap();
        let mut get = |key: &str| Ok(state.get(key).map(|(v, _)| v.clone()));
        read_definition(name, &mut get).unwrap()
    }
}

fn approval(def: &Definition, package: &str) -> lc::ApproveChaincodeDefinitionForMyOrgArgs {
    lc::ApproveChaincodeDefinitionForMyOrgArgs {
        sequence: def.sequence,
        name: def.name.clone(),
        version: def.version.clone(),
        endorsement_plugin: def.endorsement_plugin.clone(),
        validation_plugin: def.validation_plugin.clone(),
        validation_parameter: def.validation_parameter.clone(),
        collections: def.collections.clone(),
        init_required: def.init_required,
        source: Some(lc::ChaincodeSource {
            r#type: Some(lc::chaincode_source::Type::LocalPackage(
                lc::chaincode_source::Local {
                    package_id: package.into(),
                },
            )),
        }),
    }
}

fn definition(sequence: i64, policy: &str) -> Definition {
    Definition {
        sequence,
        name: "meters".into(),
        version: format!("{sequence}.0"),
        validation_parameter: application_policy(policy).unwrap(),
        ..Default::default()
    }
}

fn approvals_of(pairs: &[(&str, bool)]) -> BTreeMap<String, bool> {
    pairs.iter().map(|(m, b)| ((*m).to_string(), *b)).collect()
}

#[test]
fn a_commit_needs_the_endorsing_orgs_own_approval_and_readiness_reports_every_org() {
    let world = World::default();
    let def = definition(1, "OutOf(1, 'DSOMSP.peer', 'RetailerMSP.peer')");
    assert_eq!(world.approve("DSOMSP", &def, "meters:aa").status, 200);
    assert_eq!(
        world.readiness(&def),
        approvals_of(&[
            ("CommunityMSP", false),
            ("DSOMSP", true),
            ("RetailerMSP", false)
        ])
    );
    // RetailerMSP's peer refuses to endorse a commit its org has not approved.
    let refused = world.commit("RetailerMSP", &def);
    assert_eq!(refused.status, 500);
    assert!(
        refused
            .message
            .contains("not agreed to by this org (RetailerMSP)"),
        "{}",
        refused.message
    );
    assert!(
        refused.message.contains("CommunityMSP, RetailerMSP"),
        "{}",
        refused.message
    );
    assert!(world.committed("meters").is_none());

    assert_eq!(world.approve("RetailerMSP", &def, "meters:bb").status, 200);
    assert_eq!(
        world.commit("RetailerMSP", &def).status,
        200,
        "approved orgs may commit"
    );
    assert_eq!(world.committed("meters"), Some(def.clone()));
    // The package each org approved stays its own.
    let stored = world
        .state
        .lock()
        .unwrap()
        .get(&approval_key("meters", 1, "RetailerMSP"))
        .cloned()
        .unwrap();
    let stored = lc::ApproveChaincodeDefinitionForMyOrgArgs::decode(stored.0.as_slice()).unwrap();
    assert_eq!(approved_package_id(&stored), Some("meters:bb"));
}

#[test]
fn only_the_next_sequence_can_be_approved_or_committed_and_upgrades_bump_it() {
    let world = World::default();
    let first = definition(1, "/Channel/Application/Endorsement");
    let skipped = definition(2, "/Channel/Application/Endorsement");
    let refused = world.approve("DSOMSP", &skipped, "p:1");
    assert!(
        refused
            .message
            .contains("new definition must be sequence 1"),
        "{}",
        refused.message
    );
    for org in ORGS {
        assert_eq!(world.approve(org, &first, "p:1").status, 200);
    }
    assert_eq!(world.commit("DSOMSP", &first).status, 200);
    // Committing the same sequence again is refused: the next must be 2.
    let again = world.commit("DSOMSP", &first);
    assert!(
        again.message.contains("new definition must be sequence 2"),
        "{}",
        again.message
    );
    // The committed sequence may be re-approved unchanged (to name another package)…
    assert_eq!(world.approve("DSOMSP", &first, "p:2").status, 200);
    // …but not with different parameters.
    let changed = Definition {
        version: "9".into(),
        ..first.clone()
    };
    let refused = world.approve("DSOMSP", &changed, "p:2");
    assert!(
        refused
            .message
            .contains("redefine the current committed sequence (1)"),
        "{}",
        refused.message
    );

    // Upgrade: a new policy at sequence 2.
    let upgrade = definition(
        2,
        "OutOf(2, 'DSOMSP.peer', 'RetailerMSP.peer', 'CommunityMSP.peer')",
    );
    assert_eq!(world.approve("DSOMSP", &upgrade, "p:3").status, 200);
    assert_eq!(world.approve("CommunityMSP", &upgrade, "p:3").status, 200);
    assert_eq!(world.commit("CommunityMSP", &upgrade).status, 200);
    let committed = world.committed("meters").unwrap();
    assert_eq!(committed.sequence, 2);
    assert_eq!(
        endorsement_policy(&committed.validation_parameter).unwrap(),
        EndorsementPolicy::Signature(
            gridledger_channels::policy::parse(
                "OutOf(2, 'DSOMSP.peer', 'RetailerMSP.peer', 'CommunityMSP.peer')"
            )
            .unwrap()
        )
    );
}

#[test]
fn re_approving_a_sequence_replaces_the_orgs_earlier_approval() {
    let world = World::default();
    let a = definition(1, "/Channel/Application/Endorsement");
    let b = definition(1, "OutOf(1, 'DSOMSP.peer')");
    assert_eq!(world.approve("DSOMSP", &a, "p:1").status, 200);
    assert!(world.readiness(&a)["DSOMSP"]);
    assert_eq!(world.approve("DSOMSP", &b, "p:1").status, 200);
    assert!(
        !world.readiness(&a)["DSOMSP"],
        "the earlier agreement is withdrawn"
    );
    assert!(world.readiness(&b)["DSOMSP"]);
    let markers = world
        .state
        .lock()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with(AGREEMENTS_PREFIX))
        .count();
    assert_eq!(markers, 1);
}

#[test]
fn only_an_admin_of_the_peers_org_may_approve_for_it() {
    let world = World::default();
    let def = definition(1, "/Channel/Application/Endorsement");
    let arg = approval(&def, "p:1").encode_to_vec();
    let not_admin = world.run(
        "DSOMSP",
        "DSOMSP",
        false,
        "ApproveChaincodeDefinitionForMyOrg",
        arg.clone(),
    );
    assert_eq!(not_admin.response.status, 500);
    assert!(
        not_admin.response.message.contains("not an admin"),
        "{}",
        not_admin.response.message
    );
    let other_org = world.run(
        "DSOMSP",
        "RetailerMSP",
        true,
        "ApproveChaincodeDefinitionForMyOrg",
        arg,
    );
    assert_eq!(other_org.response.status, 500);
    assert!(
        other_org
            .response
            .message
            .contains("only an admin of DSOMSP")
    );
}

#[test]
fn bad_definitions_are_refused_with_the_rule_they_break() {
    let world = World::default();
    for (def, needle) in [
        (
            Definition {
                name: "_sys".into(),
                ..definition(1, "/Channel/Application/Endorsement")
            },
            "invalid chaincode name",
        ),
        (
            Definition {
                version: String::new(),
                ..definition(1, "/Channel/Application/Endorsement")
            },
            "invalid chaincode version",
        ),
        (
            Definition {
                sequence: 0,
                ..definition(1, "/Channel/Application/Endorsement")
            },
            "at least 1",
        ),
        (
            Definition {
                validation_parameter: b"junk".to_vec(),
                ..definition(1, "/Channel/Application/Endorsement")
            },
            "ApplicationPolicy",
        ),
    ] {
        let r = world.approve("DSOMSP", &def, "p:1");
        assert_eq!(r.status, 500);
        assert!(r.message.contains(needle), "{needle}: {}", r.message);
    }
    let r = world.submit("DSOMSP", "InstallChaincode", Vec::new());
    assert!(r.message.contains("peer-local"), "{}", r.message);
}

#[test]
fn queries_return_committed_and_approved_definitions() {
    let world = World::default();
    let def = definition(1, "/Channel/Application/Endorsement");
    for org in ORGS {
        world.approve(org, &def, "p:1");
    }
    world.commit("DSOMSP", &def);
    let r = world.run(
        "DSOMSP",
        "DSOMSP",
        false,
        "QueryChaincodeDefinition",
        lc::QueryChaincodeDefinitionArgs {
            name: "meters".into(),
        }
        .encode_to_vec(),
    );
    let result = lc::QueryChaincodeDefinitionResult::decode(r.response.payload.as_slice()).unwrap();
    assert_eq!(result.sequence, 1);
    assert!(result.approvals.values().all(|a| *a));
    let r = world.run(
        "DSOMSP",
        "DSOMSP",
        false,
        "QueryChaincodeDefinitions",
        lc::QueryChaincodeDefinitionsArgs {}.encode_to_vec(),
    );
    let all = lc::QueryChaincodeDefinitionsResult::decode(r.response.payload.as_slice()).unwrap();
    assert_eq!(all.chaincode_definitions.len(), 1);
    assert_eq!(all.chaincode_definitions[0].name, "meters");
    let r = world.run(
        "RetailerMSP",
        "RetailerMSP",
        false,
        "QueryApprovedChaincodeDefinition",
        lc::QueryApprovedChaincodeDefinitionArgs {
            name: "meters".into(),
            sequence: 0,
        }
        .encode_to_vec(),
    );
    assert_eq!(r.response.status, 200, "{}", r.response.message);
    let approved =
        lc::QueryApprovedChaincodeDefinitionResult::decode(r.response.payload.as_slice()).unwrap();
    assert_eq!(approved.sequence, 1);
    let r = world.run(
        "DSOMSP",
        "DSOMSP",
        false,
        "QueryChaincodeDefinition",
        lc::QueryChaincodeDefinitionArgs {
            name: "nothing".into(),
        }
        .encode_to_vec(),
    );
    assert!(
        r.response
            .message
            .contains("namespace nothing is not defined")
    );
}

#[test]
fn the_hash_of_committed_fields_is_the_hash_approvals_are_recorded_under() {
    let def = definition(3, "OutOf(1, 'DSOMSP.peer')");
    let writes = definition_writes(&def);
    assert_eq!(writes.len(), 5);
    let fields: BTreeMap<&str, &[u8]> = writes
        .iter()
        .filter_map(|(k, v)| parse_field_key(k).map(|(_, f)| (f, v.as_slice())))
        .collect();
    assert_eq!(
        hash_of_fields(|f| fields.get(f).copied()),
        Some(definition_hash(&def))
    );
    assert_ne!(
        definition_hash(&def),
        definition_hash(&definition(3, "OutOf(1, 'RetailerMSP.peer')"))
    );
    let state: BTreeMap<String, Vec<u8>> = writes.into_iter().collect();
    let mut get = |key: &str| Ok(state.get(key).cloned());
    assert_eq!(read_definition("meters", &mut get).unwrap(), Some(def));
    assert_eq!(
        organization_of_key(&agreement_key("m", 1, "ab", "DSOMSP")),
        Some("DSOMSP")
    );
    assert_eq!(
        organization_of_key(&approval_key("m", 1, "DSOMSP")),
        Some("DSOMSP")
    );
    assert_eq!(
        parse_agreement_key(&agreement_key("m", 1, "ab", "X")),
        Some(("m", "1", "ab", "X"))
    );
    assert!(
        valid_chaincode_name("my-cc_2")
            && !valid_chaincode_name("my--cc")
            && !valid_chaincode_name("a/b")
    );
}

fn collection(name: &str, members: &str, btl: u64) -> protos::CollectionConfig {
    protos::CollectionConfig {
        payload: Some(protos::collection_config::Payload::StaticCollectionConfig(
            protos::StaticCollectionConfig {
                name: name.into(),
                member_orgs_policy: Some(protos::CollectionPolicyConfig {
                    payload: Some(protos::collection_policy_config::Payload::SignaturePolicy(
                        gridledger_channels::policy::parse(members).unwrap(),
                    )),
                }),
                required_peer_count: 0,
                maximum_peer_count: 1,
                block_to_live: btl,
                ..Default::default()
            },
        )),
    }
}

fn with_collections(mut def: Definition, configs: Vec<protos::CollectionConfig>) -> Definition {
    def.collections = Some(protos::CollectionConfigPackage { config: configs });
    def
}

#[test]
fn collections_must_name_channel_orgs_and_be_unique() {
    let world = World::default();
    let policy = "OR('DSOMSP.peer')";
    let outsider = with_collections(
        definition(1, policy),
        vec![collection(
            "deals",
            "OR('DSOMSP.member', 'ElsewhereMSP.member')",
            0,
        )],
    );
    let r = world.approve("DSOMSP", &outsider, "meters:aa");
    assert_eq!(r.status, 500);
    assert!(r.message.contains("ElsewhereMSP"), "{}", r.message);
    let twice = with_collections(
        definition(1, policy),
        vec![
            collection("deals", "OR('DSOMSP.member')", 0),
            collection("deals", "OR('RetailerMSP.member')", 0),
        ],
    );
    let r = world.approve("DSOMSP", &twice, "meters:aa");
    assert!(r.message.contains("more than once"), "{}", r.message);
    let good = with_collections(
        definition(1, policy),
        vec![collection(
            "deals",
            "OR('DSOMSP.member', 'RetailerMSP.member')",
            5,
        )],
    );
    assert_eq!(world.approve("DSOMSP", &good, "meters:aa").status, 200);
    assert_eq!(world.approve("RetailerMSP", &good, "meters:aa").status, 200);
    assert_eq!(world.commit("DSOMSP", &good).status, 200);
    // The committed definition's validation view carries the collection.
    let committed = world.committed("meters").unwrap();
    let view = validation_definition(&committed).unwrap();
    assert_eq!(view.collections["deals"].block_to_live, 5);
}

#[test]
fn an_upgrade_may_not_drop_a_collection_or_change_its_block_to_live() {
    let world = World::default();
    let policy = "OR('DSOMSP.peer')";
    let v1 = with_collections(
        definition(1, policy),
        vec![collection("deals", "OR('DSOMSP.member')", 5)],
    );
    for org in ["DSOMSP", "RetailerMSP"] {
        assert_eq!(world.approve(org, &v1, "meters:aa").status, 200);
    }
    assert_eq!(world.commit("DSOMSP", &v1).status, 200);
    let dropped = definition(2, policy);
    let r = world.approve("DSOMSP", &dropped, "meters:aa");
    assert!(r.message.contains("drops collection"), "{}", r.message);
    let changed = with_collections(
        definition(2, policy),
        vec![collection("deals", "OR('DSOMSP.member')", 6)],
    );
    let r = world.approve("DSOMSP", &changed, "meters:aa");
    assert!(r.message.contains("block_to_live"), "{}", r.message);
    let added = with_collections(
        definition(2, policy),
        vec![
            collection("deals", "OR('DSOMSP.member', 'RetailerMSP.member')", 5),
            collection("more", "OR('RetailerMSP.member')", 0),
        ],
    );
    assert_eq!(world.approve("DSOMSP", &added, "meters:aa").status, 200);
}
