//! The operations endpoint against a real network: `gridledger up` gives every node an
//! `[operations]` section and lists it in `network.json`; the test scrapes a peer's `/metrics`
//! before and after a transaction, reads `/healthz`, `/version` and `/logspec`, and checks
//! that `/healthz` turns 503, naming the orderers, once the peer runs without them.

mod support;
use support::{POLL, UpNetwork};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long a metric or health change may take to show.
const WAIT: Duration = Duration::from_secs(30);

/// One HTTP/1.1 exchange: the status code and body.
fn http(endpoint: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(endpoint)
        .unwrap_or_else(|e| panic!("connect to the operations endpoint {endpoint}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("set a read timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {endpoint}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// The samples of a Prometheus text exposition, keyed by series (`name{labels}`); every line
/// must be a comment or a sample with a numeric value.
fn parse_metrics(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut samples = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("not a number in {line:?}")),
        };
        samples.insert(series.to_owned(), value);
    }
    samples
}

fn scrape(endpoint: &str) -> std::collections::BTreeMap<String, f64> {
    let (status, body) = http(endpoint, "GET", "/metrics", "");
    assert_eq!(status, 200, "{body}");
    parse_metrics(&body)
}

const BLOCKS: &str = "ledger_blocks_committed_total{channel=\"market\"}";
const VALID_TXS: &str = "ledger_transactions_total{channel=\"market\",validation_code=\"VALID\"}";

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_reports_commits_health_version_and_log_spec_and_fails_health_without_orderers() {
    let (mut net, json) = UpNetwork::start("operations");
    let retailer = json["organizations"]
        .as_array()
        .and_then(|orgs| orgs.iter().find(|o| o["mspId"] == "RetailerMSP"))
        .map(|org| org["peers"][0].clone())
        .expect("network.json lists the retailer's peer");
    let ops = retailer["operationsEndpoint"]
        .as_str()
        .expect("the peer's operationsEndpoint")
        .to_owned();
    for orderer in json["orderers"].as_array().expect("orderers") {
        assert!(
            orderer["operationsEndpoint"].is_string(),
            "an orderer without operationsEndpoint: {orderer}"
        );
    }

    let before = scrape(&ops);
    for family in [
        "ledger_block_commit_seconds_count{channel=\"market\"}",
        "ledger_height{channel=\"market\"}",
    ] {
        assert!(before.contains_key(family), "no {family} in {before:?}");
    }
    let blocks_before = before.get(BLOCKS).copied().unwrap_or(0.0);
    let valid_before = before.get(VALID_TXS).copied().unwrap_or(0.0);

    let gateway = support::user_gateway(&net.dir, &json, "RetailerMSP").await;
    gateway
        .network("market")
        .contract("basic")
        .submit("CreateAsset", &["asset-ops", "blue", "5", "Alice", "300"])
        .await
        .unwrap_or_else(|e| panic!("submit: {e}"));
    // The commit status can answer a moment before the committer counts the block.
    let deadline = Instant::now() + WAIT;
    let after = loop {
        let after = scrape(&ops);
        if after.get(VALID_TXS).copied().unwrap_or(0.0) > valid_before {
            break after;
        }
        assert!(
            Instant::now() < deadline,
            "{VALID_TXS} did not move: {after:?}"
        );
        std::thread::sleep(POLL);
    };
    assert!(after[BLOCKS] > blocks_before, "{BLOCKS} did not move");
    for series in [
        "gateway_requests_total{method=\"Submit\",status=\"Ok\"}",
        "endorser_proposal_duration_seconds_count{channel=\"market\",chaincode=\"basic\"}",
    ] {
        assert!(
            after.get(series).is_some_and(|v| *v >= 1.0),
            "{series} missing or 0: {after:?}"
        );
    }
    let bucket_inf = "ledger_block_commit_seconds_bucket{channel=\"market\",le=\"+Inf\"}";
    assert_eq!(
        after[bucket_inf], after["ledger_block_commit_seconds_count{channel=\"market\"}"],
        "the +Inf bucket counts every observation"
    );

    let (status, body) = http(&ops, "GET", "/healthz", "");
    assert_eq!((status, body.as_str()), (200, "{\"status\":\"OK\"}"));

    // Every orderer counts Broadcast, Deliver and Raft; the envelope reached one of them.
    let mut successes = 0.0;
    for orderer in json["orderers"].as_array().expect("orderers") {
        let samples = scrape(orderer["operationsEndpoint"].as_str().expect("endpoint"));
        for series in [
            "raft_term{channel=\"market\"}",
            "ledger_height{channel=\"market\"}",
        ] {
            assert!(
                samples.get(series).is_some_and(|v| *v >= 1.0),
                "{series} missing or 0 on {orderer}"
            );
        }
        successes += samples
            .get("broadcast_envelopes_total{channel=\"market\",status=\"SUCCESS\"}")
            .copied()
            .unwrap_or(0.0);
    }
    assert!(
        successes >= 1.0,
        "no orderer counted a successful Broadcast"
    );

    let (status, body) = http(&ops, "GET", "/version", "");
    assert_eq!(status, 200, "{body}");
    let version: serde_json::Value = serde_json::from_str(&body).expect("JSON version");
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));

    let spec = "info,gridledger_peer=debug";
    let (status, body) = http(&ops, "PUT", "/logspec", &format!("{{\"spec\":\"{spec}\"}}"));
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(&ops, "GET", "/logspec", "");
    assert_eq!(status, 200, "{body}");
    let current: serde_json::Value = serde_json::from_str(&body).expect("JSON log spec");
    let current = current["spec"].as_str().expect("a spec");
    assert!(
        current.contains("gridledger_peer=debug") && current.contains("info"),
        "{current}"
    );
    let (status, body) = http(&ops, "PUT", "/logspec", "{\"level\":\"debug\"}");
    assert_eq!(status, 400, "{body}");
    let (status, body) = http(&ops, "GET", "/nothing", "");
    assert_eq!(status, 404, "{body}");

    // The peer alone, without its orderers.
    drop(gateway);
    net.stop_up();
    let port: u16 = retailer["endpoint"]
        .as_str()
        .and_then(|e| e.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("the peer's port");
    net.start_node("peer0.retailer", port);
    let deadline = Instant::now() + WAIT;
    let body = loop {
        let (status, body) = http(&ops, "GET", "/healthz", "");
        if status == 503 {
            break body;
        }
        assert!(Instant::now() < deadline, "healthz stayed {status}: {body}");
        std::thread::sleep(POLL);
    };
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON health");
    assert_eq!(health["status"], "Service Unavailable");
    let failed = health["failed_checks"].as_array().expect("failed_checks");
    let orderer0 = json["orderers"][0]["endpoint"].as_str().expect("endpoint");
    assert!(
        failed.iter().any(|c| c["component"] == "orderers:market"
            && c["reason"].as_str().is_some_and(|r| r.contains(orderer0))),
        "no failed check naming the orderers of market: {body}"
    );
}

/// The operations endpoint of `org`'s first peer in network.json.
fn peer_operations(json: &serde_json::Value, org: &str) -> String {
    json["organizations"]
        .as_array()
        .and_then(|orgs| orgs.iter().find(|o| o["mspId"] == org))
        .and_then(|org| org["peers"][0]["operationsEndpoint"].as_str())
        .unwrap_or_else(|| panic!("network.json lists {org}'s peer with its operations endpoint"))
        .to_owned()
}

/// Certificate expiry: every peer publishes its own and its channels' certificates with their
/// `notAfter`, and reports itself degraded (but serving) when one expires within the window —
/// here a window of a century, set for the peers only through an environment override of
/// their config files. Orderers, not overridden, stay OK. An override naming an unknown key
/// stops a node from starting, naming the variable.
#[test]
fn certificates_near_expiry_degrade_health_and_env_overrides_reach_the_peers_only() {
    let (net, json) = UpNetwork::start_with_env(
        "operations-certs",
        &[(
            "GRIDLEDGER_PEER_OPERATIONS__CERTIFICATE_EXPIRY_WARNING_DAYS",
            "36500",
        )],
    );
    let ops = peer_operations(&json, "DSOMSP");
    let (status, body) = http(&ops, "GET", "/healthz", "");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON health");
    assert_eq!(health["status"], "Degraded", "{body}");
    let checks = health["degraded_checks"]
        .as_array()
        .expect("degraded_checks");
    for scope in [
        "certificate:local",
        "certificate:market",
        "certificate:meter-retailer",
    ] {
        assert!(
            checks.iter().any(|c| c["component"] == scope
                && c["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("expires at"))),
            "no {scope} finding in {body}"
        );
    }

    // The peer's own TLS certificate, with the notAfter the file holds.
    let tls_pem = std::fs::read(net.dir.join("nodes/peer0.dso/peer.toml"))
        .ok()
        .and_then(|text| {
            let config: toml::Table = String::from_utf8(text).ok()?.parse().ok()?;
            let path = config.get("tls_cert")?.as_str()?.to_owned();
            let path = net.dir.join("nodes/peer0.dso").join(path);
            std::fs::read(path).ok()
        })
        .expect("the DSO peer's TLS certificate");
    let tls = gridledger_identity::Certificate::from_pem(&tls_pem).expect("a PEM certificate");
    let samples = scrape(&ops);
    let local_tls: Vec<(&String, &f64)> = samples
        .iter()
        .filter(|(k, _)| {
            k.starts_with("certificate_expiry_timestamp_seconds{scope=\"local\",msp_id=\"DSOMSP\",role=\"tls\"")
        })
        .collect();
    assert_eq!(local_tls.len(), 1, "{samples:?}");
    assert_eq!(*local_tls[0].1, tls.not_after as f64);
    for series in [
        "scope=\"market\",msp_id=\"RetailerMSP\",role=\"ca\"",
        "scope=\"market\",msp_id=\"CommunityMSP\",role=\"tls_ca\"",
        "scope=\"market\",msp_id=\"\",role=\"consenter_server_tls\"",
    ] {
        assert!(
            samples.keys().any(|k| k.contains(series)),
            "no certificate series with {series}: {samples:?}"
        );
    }

    for orderer in json["orderers"].as_array().expect("orderers") {
        let endpoint = orderer["operationsEndpoint"].as_str().expect("endpoint");
        let (status, body) = http(endpoint, "GET", "/healthz", "");
        assert_eq!((status, body.as_str()), (200, "{\"status\":\"OK\"}"));
    }

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gridledger"))
        .args(["peer", "start", "--config"])
        .arg(net.dir.join("nodes/peer0.dso/peer.toml"))
        .env("GRIDLEDGER_PEER_NO_SUCH_KEY", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run gridledger peer start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("GRIDLEDGER_PEER_NO_SUCH_KEY") && stderr.contains("unknown field"),
        "{stderr}"
    );
}
