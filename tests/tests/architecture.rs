//! The dependency directions of ARCHITECTURE.md, checked on every member's Cargo.toml.
//!
//! Peer and orderer meet only over gRPC (the trust boundary), so neither may depend on the
//! other; a retailer's application links the SDK, which must never pull in the peer.

use gridledger_tests::workspace_root;
use std::collections::{BTreeMap, BTreeSet};

/// Allowed workspace-internal dependencies per crate (normal, build and dev dependencies).
/// `None` = may depend on any member (the binary and the whole-workspace tests).
fn allowed() -> BTreeMap<&'static str, Option<Vec<&'static str>>> {
    BTreeMap::from([
        ("gridledger-proto", Some(vec![])),
        ("gridledger-identity", Some(vec!["gridledger-proto"])),
        (
            "gridledger-channels",
            Some(vec!["gridledger-proto", "gridledger-identity"]),
        ),
        ("gridledger-ledger", Some(vec!["gridledger-proto"])),
        ("gridledger-grid", Some(vec![])),
        (
            "gridledger-chaincode",
            Some(vec!["gridledger-proto", "gridledger-identity"]),
        ),
        (
            "gridledger-peer",
            Some(vec![
                "gridledger-proto",
                "gridledger-identity",
                "gridledger-channels",
                "gridledger-ledger",
                "gridledger-chaincode",
                "gridledger-grid",
            ]),
        ),
        (
            "gridledger-orderer",
            Some(vec![
                "gridledger-proto",
                "gridledger-identity",
                "gridledger-channels",
                "gridledger-ledger",
            ]),
        ),
        (
            "gridledger-sdk",
            Some(vec!["gridledger-proto", "gridledger-identity"]),
        ),
        ("gridledger", None),
        ("gridledger-tests", None),
    ])
}

fn members() -> Vec<(String, toml::Table)> {
    let root = workspace_root();
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.join("Cargo.toml")).expect("root manifest"))
            .expect("toml");
    let list = manifest["workspace"]["members"]
        .as_array()
        .expect("members")
        .clone();
    list.iter()
        .map(|m| {
            let dir = m.as_str().expect("member path");
            let text = std::fs::read_to_string(root.join(dir).join("Cargo.toml"))
                .expect("member manifest");
            (dir.to_owned(), toml::from_str(&text).expect("member toml"))
        })
        .collect()
}

fn internal_deps(manifest: &toml::Table) -> BTreeSet<String> {
    ["dependencies", "build-dependencies", "dev-dependencies"]
        .iter()
        .filter_map(|section| manifest.get(*section).and_then(|s| s.as_table()))
        .flat_map(|t| t.keys().cloned())
        .filter(|name| name.starts_with("gridledger"))
        .collect()
}

#[test]
fn every_member_has_a_rule() {
    let rules = allowed();
    for (dir, manifest) in members() {
        let name = manifest["package"]["name"].as_str().expect("name");
        assert!(
            rules.contains_key(name),
            "{dir}: crate {name} has no entry in the dependency rules (ARCHITECTURE.md)"
        );
    }
}

#[test]
fn dependency_directions_hold() {
    let rules = allowed();
    let mut violations = Vec::new();
    for (_, manifest) in members() {
        let name = manifest["package"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        let Some(Some(ok)) = rules.get(name.as_str()) else {
            continue;
        };
        for dep in internal_deps(&manifest) {
            if !ok.contains(&dep.as_str()) {
                violations.push(format!("{name} → {dep}"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "forbidden dependency edges (see ARCHITECTURE.md): {violations:?}"
    );
}

#[test]
fn peer_and_orderer_never_depend_on_each_other() {
    let rules = allowed();
    let peer = rules["gridledger-peer"].as_ref().expect("rule");
    let orderer = rules["gridledger-orderer"].as_ref().expect("rule");
    assert!(!peer.contains(&"gridledger-orderer") && !orderer.contains(&"gridledger-peer"));
    let sdk = rules["gridledger-sdk"].as_ref().expect("rule");
    assert!(
        sdk.iter()
            .all(|d| ["gridledger-proto", "gridledger-identity"].contains(d))
    );
}
