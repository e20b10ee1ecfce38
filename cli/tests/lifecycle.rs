//! The chaincode lifecycle on a real local network: `gridledger up`, then `gridledger
//! chaincode deploy` defines the compiled-in asset chaincode under a new name through
//! `_lifecycle` (package, install on every peer, approve per org, commit), the Rust SDK
//! invokes it, too few approvals leave a commit invalid, mismatched approvals are explained by
//! `checkcommitreadiness`, and an upgrade (a new endorsement policy at sequence 2) reaches
//! every peer and is enforced by their validators.

mod support;

use gridledger_proto::protos;
use gridledger_sdk::Gateway;
use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::{POLL, UpNetwork, gridledger, ok, stderr, stdout, user_gateway};

const CHANNEL: &str = "market";
const NAME: &str = "meters";
const ORGS: [&str; 3] = ["DSOMSP", "RetailerMSP", "CommunityMSP"];
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// `querycommitted` for `NAME` as seen by `msp_id`'s peer.
fn committed_on(network: &str, msp_id: &str) -> String {
    ok(&[
        "chaincode",
        "querycommitted",
        "--network",
        network,
        "--org",
        msp_id,
        "--channel",
        CHANNEL,
        "--name",
        NAME,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaincode_is_deployed_invoked_and_upgraded_through_the_lifecycle() {
    let (h, network) = UpNetwork::start("lifecycle");
    let dir = h.dir.clone();
    let network_path = dir.join("network.json");
    let net = network_path.to_str().expect("a UTF-8 path");

    // The package id is label:sha256(package), and packaging is reproducible.
    let package_file = dir.join("meters.tar.gz");
    let packaged = ok(&[
        "chaincode",
        "package",
        "--builtin",
        "basic",
        "--label",
        "meters_1.0",
        "--output",
        package_file.to_str().expect("a UTF-8 path"),
    ]);
    let bytes = std::fs::read(&package_file).expect("read the package");
    let expected_id = format!(
        "meters_1.0:{}",
        hex_sha256(&bytes) // the file's own hash
    );
    assert_eq!(packaged.trim(), expected_id);

    // Deploy the compiled-in asset chaincode as `meters`, any one of DSO and Retailer endorsing.
    let deployed = ok(&[
        "chaincode",
        "deploy",
        "--network",
        net,
        "--channel",
        CHANNEL,
        "--name",
        NAME,
        "--builtin",
        "basic",
        "--policy",
        "OutOf(1, 'DSOMSP.peer', 'RetailerMSP.peer')",
    ]);
    assert_eq!(deployed.trim(), expected_id, "deploy prints the package id");
    let installed = ok(&[
        "chaincode",
        "queryinstalled",
        "--network",
        net,
        "--org",
        "CommunityMSP",
    ]);
    assert!(
        installed.contains(&expected_id) && installed.contains("market: meters 1.0"),
        "{installed}"
    );
    for org in ORGS {
        let seen = committed_on(net, org);
        assert!(seen.contains("Sequence: 1,"), "{org}: {seen}");
        assert!(
            seen.contains("OR('DSOMSP.peer', 'RetailerMSP.peer')"),
            "{org}: {seen}"
        );
    }

    // Invoke it through the SDK; every peer reads the same state.
    let gateways = [
        user_gateway(&dir, &network, "DSOMSP").await,
        user_gateway(&dir, &network, "RetailerMSP").await,
        user_gateway(&dir, &network, "CommunityMSP").await,
    ];
    gateways[0]
        .network(CHANNEL)
        .contract(NAME)
        .submit("CreateAsset", &["meter1", "blue", "5", "DSO", "300"])
        .await
        .expect("CreateAsset on meters");
    for g in &gateways {
        let asset = eventually(g, "ReadAsset", &["meter1"], |a| {
            a.contains("\"Owner\":\"DSO\"")
        })
        .await;
        assert!(asset.contains("\"ID\":\"meter1\""), "{asset}");
    }

    // Too few approvals: DSO alone approves sequence 2 and commits; the commit is ordered but
    // LifecycleEndorsement (a majority of the organizations) is not met, so it is invalid.
    let strict = "OutOf(2, 'DSOMSP.peer', 'RetailerMSP.peer', 'CommunityMSP.peer')";
    let definition = |org: &'static str| -> Vec<String> {
        [
            "--network",
            net,
            "--org",
            org,
            "--channel",
            CHANNEL,
            "--name",
            NAME,
            "--version",
            "2.0",
            "--sequence",
            "2",
            "--policy",
            strict,
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect()
    };
    let with = |command: &str, org: &'static str, extra: &[&str]| -> Output {
        let mut args = vec!["chaincode".to_string(), command.to_string()];
        args.extend(definition(org));
        args.extend(extra.iter().map(|s| (*s).to_string()));
        gridledger(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let approved = with("approve", "DSOMSP", &["--package-id", &expected_id]);
    assert!(approved.status.success(), "{}", stderr(&approved));
    let too_few = with("commit", "DSOMSP", &[]);
    assert!(!too_few.status.success());
    assert!(
        stderr(&too_few).contains("committed invalid (ENDORSEMENT_POLICY_FAILURE)"),
        "{}",
        stderr(&too_few)
    );
    for org in ORGS {
        assert!(committed_on(net, org).contains("Sequence: 1,"), "{org}");
    }

    // Mismatched definitions: Retailer approves sequence 2 with another policy; readiness for
    // DSO's definition says who agrees.
    let mut other = definition("RetailerMSP");
    let last = other.len() - 1;
    other[last] = "/Channel/Application/Endorsement".into();
    let mut args = vec!["chaincode".to_string(), "approve".to_string()];
    args.extend(other);
    args.extend(["--package-id".to_string(), expected_id.clone()]);
    let out = gridledger(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", stderr(&out));
    // Asked of Retailer's peer, which has committed both approvals (DSO's came first).
    let readiness = with("checkcommitreadiness", "RetailerMSP", &[]);
    let readiness = stdout(&readiness);
    let statuses: BTreeMap<&str, &str> = readiness
        .lines()
        .filter_map(|l| l.split_once(": "))
        .collect();
    assert_eq!(statuses.get("DSOMSP"), Some(&"true"), "{readiness}");
    assert_eq!(statuses.get("RetailerMSP"), Some(&"false"), "{readiness}");
    assert_eq!(statuses.get("CommunityMSP"), Some(&"false"), "{readiness}");

    // Upgrade: deploy again with the stricter policy; every org (re-)approves sequence 2.
    let upgraded = ok(&[
        "chaincode",
        "deploy",
        "--network",
        net,
        "--channel",
        CHANNEL,
        "--name",
        NAME,
        "--builtin",
        "basic",
        "--version",
        "2.0",
        "--policy",
        strict,
    ]);
    assert!(upgraded.trim().starts_with("meters_2.0:"), "{upgraded}");
    for org in ORGS {
        let seen = committed_on(net, org);
        assert!(seen.contains("Version: 2.0, Sequence: 2,"), "{org}: {seen}");
        assert!(seen.contains(strict), "{org}: {seen}");
    }

    // The validators enforce the new policy: one org's endorsement is no longer enough…
    let tx = gateways[1]
        .network(CHANNEL)
        .contract(NAME)
        .proposal_with(
            ["CreateAsset", "meter2", "red", "1", "Retailer", "10"]
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect(),
            BTreeMap::new(),
            vec!["RetailerMSP".into()],
        )
        .expect("build a proposal")
        .endorse()
        .await
        .expect("endorse by RetailerMSP alone");
    let status = tx
        .submit()
        .await
        .expect("submit")
        .status()
        .await
        .expect("commit status");
    assert_eq!(
        status.code,
        protos::TxValidationCode::EndorsementPolicyFailure as i32
    );
    // …while the gateway's own plan (two organizations) commits, and state is the same
    // everywhere, the first asset included.
    gateways[2]
        .network(CHANNEL)
        .contract(NAME)
        .submit("CreateAsset", &["meter3", "green", "2", "Community", "20"])
        .await
        .expect("CreateAsset under the upgraded definition");
    for g in &gateways {
        let all = eventually(g, "GetAllAssets", &[], |all| all.contains("meter3")).await;
        assert!(all.contains("meter1") && !all.contains("meter2"), "{all}");
    }

    // A definition that requires initialization: nothing runs before the init, the init runs
    // once.
    ok(&[
        "chaincode",
        "deploy",
        "--network",
        net,
        "--channel",
        CHANNEL,
        "--name",
        "initcc",
        "--builtin",
        "basic",
        "--policy",
        "OutOf(1, 'DSOMSP.peer', 'RetailerMSP.peer')",
        "--init-required",
    ]);
    let initcc = gateways[0].network(CHANNEL).contract("initcc");
    let deadline = Instant::now() + CALL_TIMEOUT;
    let refused = loop {
        match initcc
            .submit("CreateAsset", &["early", "red", "1", "DSO", "1"])
            .await
        {
            Err(e) if e.to_string().contains("must call as init first") => break e,
            // Until the peer has the definition, the chaincode is unknown.
            Err(e) if Instant::now() < deadline => {
                eprintln!("[test] waiting for initcc: {e}");
                tokio::time::sleep(POLL).await;
            }
            other => panic!("an invocation before the init must be refused: {other:?}"),
        }
    };
    eprintln!("[test] before the init: {refused}");
    let init = initcc
        .init_proposal("InitLedger", &[])
        .expect("build the init proposal")
        .endorse()
        .await
        .expect("endorse the init")
        .submit()
        .await
        .expect("submit the init")
        .status()
        .await
        .expect("commit status of the init");
    assert!(init.is_valid(), "the init commits VALID: {init:?}");
    initcc
        .submit("CreateAsset", &["after", "red", "1", "DSO", "1"])
        .await
        .expect("invocations run after the init");
    let again = initcc
        .init_proposal("InitLedger", &[])
        .expect("build a second init proposal")
        .endorse()
        .await;
    let Err(again) = again else {
        panic!("a second init must be refused");
    };
    assert!(again.to_string().contains("already initialized"), "{again}");
}

/// Evaluates `function` on the gateway's peer until its result satisfies `done` (the peer may
/// not have committed the latest block yet); the result.
async fn eventually(
    gateway: &Gateway,
    function: &str,
    args: &[&str],
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + CALL_TIMEOUT;
    loop {
        let result = gateway
            .network(CHANNEL)
            .contract(NAME)
            .evaluate(function, args)
            .await
            .map(|r| String::from_utf8_lossy(&r).into_owned());
        match result {
            Ok(text) if done(&text) => return text,
            other => assert!(
                Instant::now() < deadline,
                "{function} never gave the expected result: {other:?}"
            ),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Hex SHA-256 of `bytes`, computed with the `sha256sum` tool so the test does not trust the
/// code it checks.
fn hex_sha256(bytes: &[u8]) -> String {
    let path =
        std::env::temp_dir().join(format!("gridledger-lifecycle-sum-{}", std::process::id()));
    std::fs::write(&path, bytes).expect("write a temporary file");
    let out = Command::new("sha256sum")
        .arg(&path)
        .output()
        .expect("run sha256sum");
    let _ = std::fs::remove_file(&path);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_string()
}
