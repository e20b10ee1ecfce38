//! The channel admin's workflow on a real local network: `gridledger up`, crypto material for a
//! fourth organization, `channel org add` writing the update that makes it a member of
//! `market`, admins of different organizations signing the same file in turn, the dry run
//! (`update check`) and `update submit`. The channel's Admins policy is MAJORITY Admins over
//! DSOMSP, RetailerMSP and CommunityMSP: with one admin signature the update is refused by both
//! `check` and `submit`, with the policy, who signed and who is missing; with two it is ordered,
//! and the config block the organization's peer commits carries the new organization.

mod support;

use std::path::Path;
use support::{UpNetwork, gridledger, ok, stderr, stdout};

const CHANNEL: &str = "market";
const NEW_ORG: &str = "AggregatorMSP";

/// Writes crypto material for the new organization under `dir/aggregator`; returns its MSP
/// folder.
fn new_org_material(dir: &Path) -> String {
    let config = dir.join("aggregator-crypto.toml");
    std::fs::write(
        &config,
        format!(
            "seed = \"channel-admin-test\"\nvalidity_days = 30\n\n[[organizations]]\n\
             msp_id = \"{NEW_ORG}\"\npeers = [{{ name = \"peer0.aggregator\" }}]\n"
        ),
    )
    .expect("write the crypto config");
    let out = dir.join("aggregator");
    ok(&[
        "crypto",
        "generate",
        "--config",
        config.to_str().expect("UTF-8 path"),
        "--out",
        out.to_str().expect("UTF-8 path"),
    ]);
    let msp = out.join(format!("organizations/{NEW_ORG}/msp"));
    assert!(
        msp.join("cacerts").is_dir(),
        "no MSP folder at {}",
        msp.display()
    );
    msp.to_str().expect("UTF-8 path").to_owned()
}

fn sign(network: &str, org: &str, file: &str) {
    let out = ok(&[
        "channel",
        "update",
        "sign",
        "--network",
        network,
        "--org",
        org,
        "--file",
        file,
    ]);
    assert!(out.contains(org), "{out}");
}

#[test]
fn an_org_is_added_to_market_by_a_majority_of_admins_and_one_signature_short_is_refused() {
    let (net, _) = UpNetwork::start("channel-admin");
    let network = net.network_json();
    let dir = net.dir.clone();
    let path = |name: &str| dir.join(name).to_str().expect("UTF-8 path").to_owned();

    let info = ok(&[
        "channel",
        "info",
        "--network",
        &network,
        "--channel",
        CHANNEL,
        "--org",
        "DSOMSP",
    ]);
    assert!(info.contains("height:"), "{info}");

    let msp_dir = new_org_material(&dir);
    let update = path("add-aggregator.pb");
    let prepared = ok(&[
        "channel",
        "org",
        "add",
        "--network",
        &network,
        "--channel",
        CHANNEL,
        "--org",
        "DSOMSP",
        "--msp-dir",
        &msp_dir,
        "--msp-id",
        NEW_ORG,
        "--anchor-peer",
        "127.0.0.1:7999",
        "-o",
        &update,
    ]);
    assert!(prepared.contains("/Channel/Application"), "{prepared}");

    // One signature: a third of the admins, short of the majority.
    sign(&network, "DSOMSP", &update);
    let short = path("add-aggregator-short.pb");
    std::fs::copy(&update, &short).expect("copy the update file");
    let check = gridledger(&[
        "channel",
        "update",
        "check",
        "--network",
        &network,
        "--channel",
        CHANNEL,
        "--file",
        &short,
    ]);
    let report = stdout(&check);
    assert!(
        !check.status.success(),
        "one signature passed the check:\n{report}"
    );
    assert!(
        report.contains("/Channel/Application/Admins") && report.contains("NOT satisfied"),
        "the check names the unsatisfied policy:\n{report}"
    );
    assert!(report.contains("DSOMSP (admin)"), "who signed:\n{report}");
    assert!(
        report.contains("RetailerMSP") && report.contains("CommunityMSP"),
        "who is missing:\n{report}"
    );
    let submit = gridledger(&[
        "channel",
        "update",
        "submit",
        "--network",
        &network,
        "--channel",
        CHANNEL,
        "--org",
        "DSOMSP",
        "--file",
        &short,
    ]);
    assert!(!submit.status.success(), "{}", stdout(&submit));
    let refused = stderr(&submit);
    assert!(
        refused.contains("not submitted")
            && refused.contains("/Channel/Application/Admins")
            && refused.contains("RetailerMSP"),
        "submit refuses with the explanation:\n{refused}"
    );

    // A second admin signs the same file: a majority.
    sign(&network, "RetailerMSP", &update);
    let check = ok(&[
        "channel",
        "update",
        "check",
        "--network",
        &network,
        "--channel",
        CHANNEL,
        "--file",
        &update,
    ]);
    assert!(check.contains("would be accepted"), "{check}");
    let submitted = ok(&[
        "channel",
        "update",
        "submit",
        "--network",
        &network,
        "--channel",
        CHANNEL,
        "--org",
        "RetailerMSP",
        "--file",
        &update,
    ]);
    assert!(submitted.contains("config block"), "{submitted}");

    // Every member's peer serves the new config block, and it carries the organization.
    let block = path("market-config.pb");
    for org in ["DSOMSP", "CommunityMSP"] {
        let deadline = std::time::Instant::now() + support::START_TIMEOUT;
        loop {
            ok(&[
                "channel",
                "fetch",
                "--network",
                &network,
                "--channel",
                CHANNEL,
                "--org",
                org,
                "--config",
                "-o",
                &block,
            ]);
            let inspected = ok(&["channel", "inspect", "--block", &block]);
            if inspected.contains(NEW_ORG) {
                assert!(inspected.contains("127.0.0.1:7999"), "{inspected}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{org}'s peer never served a config with {NEW_ORG}:\n{inspected}"
            );
            std::thread::sleep(support::POLL);
        }
    }

    // The same update again is stale: it was computed against the previous config.
    let again = gridledger(&[
        "channel",
        "update",
        "check",
        "--network",
        &network,
        "--channel",
        CHANNEL,
        "--file",
        &update,
    ]);
    assert!(!again.status.success(), "{}", stdout(&again));
}
