//! `gridledger demo` end to end: with no network running it starts `gridledger up` itself,
//! simulates a window of the day (bids and offers, trades from both certified by the DSO,
//! meter readings, attestations, settlement, guarantees of origin and the demand-response event
//! at 18:00 with an aggregator's pool), checks payment conservation, prints the
//! summary, writes the HTML and SVG report, and stops the network it started. A second run on
//! the same folder picks another day, since the first one's readings are on the ledger. And,
//! as the README's two terminals do, against a `gridledger up` already running: the demo uses
//! that network, starts none and leaves it running.

mod support;
use support::{UpNetwork, free_base_port};

use std::process::Command;

fn demo(dir: &std::path::Path, port: u16, from: &str, periods: &str) -> (bool, String, String) {
    demo_with(dir, port, "3", from, periods)
}

/// `gridledger demo` with `prosumers` per market organization.
fn demo_with(
    dir: &std::path::Path,
    port: u16,
    prosumers: &str,
    from: &str,
    periods: &str,
) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gridledger"))
        .args(["demo", "--dir"])
        .arg(dir)
        .args([
            "--base-port",
            &port.to_string(),
            "--prosumers",
            prosumers,
            "--from-period",
            from,
            "--periods",
            periods,
            "--concurrency",
            "16",
        ])
        .output()
        .expect("run gridledger demo");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of summary row `label`.
fn row<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .map(|l| l.trim_start()[label.len()..].trim())
        .unwrap_or_else(|| panic!("no summary row {label:?} in:\n{stdout}"))
}

/// The number before `word` in `text` (e.g. `12` in "12 issued").
fn count_before(text: &str, word: &str) -> u64 {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[1].trim_end_matches(',') == word)
        .and_then(|w| w[0].parse().ok())
        .unwrap_or_else(|| panic!("no number before {word:?} in {text:?}"))
}

/// The number just before `phrase` in `text` (e.g. `4` in "…, 4 from bids; …").
fn count_before_phrase(text: &str, phrase: &str) -> u64 {
    text.find(phrase)
        .and_then(|i| text[..i].split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number before {phrase:?} in {text:?}"))
}

/// Checks that the summary's payment conservation row holds (issued = balances + escrow of
/// trades and bids, over what the run moved).
fn assert_payment_conserved(stdout: &str) {
    let conservation = row(stdout, "Payment conservation");
    assert!(conservation.ends_with("holds"), "{stdout}");
}

/// Checks the bids and trades rows of a window where trades happen: bids posted and accepted,
/// trades from both offers and bids.
fn assert_both_sides_traded(stdout: &str) {
    let bids = row(stdout, "Bids");
    assert!(count_before(bids, "posted") > 0, "bids posted: {stdout}");
    assert!(
        count_before(bids, "accepted") > 0,
        "bids accepted: {stdout}"
    );
    let trades = row(stdout, "Trades");
    assert!(count_before_phrase(trades, "from bids") > 0, "{stdout}");
    assert!(count_before_phrase(trades, "from offers") > 0, "{stdout}");
}

/// Checks the demand-response row and lines of a window with the 18:00 event: two prosumers
/// and an aggregator committed, energy delivered and remuneration paid, one line each — the
/// aggregator's naming the member PODs it committed for, attested and paid.
fn assert_demand_response_delivered_and_paid(stdout: &str) {
    let dr = row(stdout, "Demand response");
    assert!(dr.contains("2 prosumers and aggregator"), "{dr}");
    assert!(count_before(dr, "Wh") > 0, "energy delivered: {dr}");
    assert!(count_before(dr, "c") > 0, "remuneration paid: {dr}");
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("demand response: "))
        .collect();
    assert_eq!(lines.len(), 3, "one line per commitment: {stdout}");
    let aggregator = lines
        .iter()
        .find(|l| l.contains(":AGG-") && l.contains("(aggregator of POD-"))
        .unwrap_or_else(|| panic!("no line of the aggregator: {stdout}"));
    assert!(
        aggregator.contains("→ paid") && count_before_phrase(aggregator, "Wh →") > 0,
        "the aggregator's pool delivered and was paid: {aggregator}"
    );
}

#[test]
fn the_demo_simulates_a_window_of_the_day_and_writes_its_report() {
    let dir = std::env::temp_dir().join(format!("gridledger-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_base_port(16);

    // Noon: prosumers with PV sell, the others buy, the DSO certifies or refuses each trade.
    let (ok, stdout, stderr) = demo(&dir, port, "46", "4");
    assert!(ok, "the demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("starting `gridledger up"), "{stdout}");
    let trades = row(&stdout, "Trades");
    let committed: u32 = trades
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("Trades row {trades:?}"));
    assert!(committed > 0, "some trades commit at noon: {stdout}");
    assert_both_sides_traded(&stdout);
    assert_payment_conserved(&stdout);
    assert!(
        count_before(row(&stdout, "Guarantees of origin"), "issued") > 0,
        "certificates are issued for the noon export: {stdout}"
    );
    let day = row(&stdout, "Day (UTC)").to_owned();
    let html = std::fs::read_to_string(dir.join("demo-report.html")).expect("the HTML report");
    assert!(
        html.contains("GridLedger demo") && html.contains("<svg"),
        "an HTML report with plots"
    );
    let svg = std::fs::read_to_string(dir.join("demo-report.svg")).expect("the SVG plots");
    assert!(
        svg.starts_with("<svg") || svg.starts_with("<?xml"),
        "a standalone SVG"
    );
    // The network the demo started is stopped again.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port + 1)).is_err(),
        "the DSO's peer still serves after the demo"
    );

    // The evening with the demand-response event, on another day (the noon window's readings
    // are on the ledger now).
    let (ok, stdout, stderr) = demo(&dir, port, "71", "2");
    assert!(ok, "the second demo failed:\n{stdout}\n{stderr}");
    assert_ne!(row(&stdout, "Day (UTC)"), day, "a fresh day");
    assert_demand_response_delivered_and_paid(&stdout);
    assert_payment_conserved(&stdout);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_demo_uses_a_network_already_up_and_reports_refusals_certificates_and_demand_response() {
    // The first terminal: `gridledger up --dir DIR`.
    let (net, _) = UpNetwork::start("demo-running");
    let dso_peer = ("127.0.0.1", net.base_port + 1);
    // Were the demo to start a network of its own, it would be on this other port range.
    let unused = free_base_port(16);
    let started_by_demo = |stdout: &str| {
        stdout.contains("starting `gridledger up") || net.dir.join("logs/demo-up.log").exists()
    };

    // The second terminal: `gridledger demo --dir DIR`, 16 prosumers (the default 8 per
    // organization) over 10:45 and 11:00 UTC, when the feeder is at its limits at noon.
    let (ok, stdout, stderr) = demo_with(&net.dir, unused, "8", "43", "2");
    assert!(ok, "the demo failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "using the network running under {}",
            net.dir.canonicalize().expect("the folder").display()
        )),
        "{stdout}"
    );
    assert!(
        !started_by_demo(&stdout),
        "the demo started a network: {stdout}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", unused + 1)).is_err(),
        "something serves on the port range the demo was given"
    );
    // Trades refused by the DSO, with the violated limit.
    let trades = row(&stdout, "Trades");
    assert!(count_before(trades, "refused") > 0, "{stdout}");
    assert_both_sides_traded(&stdout);
    assert_payment_conserved(&stdout);
    let reasons: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("trades refused, by reason:"))
        .skip(1)
        .take_while(|l| !l.contains("demand response: "))
        .filter(|l| l.contains("the DSO: "))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|l| l.contains("voltage at bus") || l.contains("overcurrent on line")),
        "refusals name the DSO's violated limit: {stdout}"
    );
    assert!(
        count_before(row(&stdout, "Guarantees of origin"), "issued") > 0,
        "{stdout}"
    );
    let report = stdout
        .lines()
        .find_map(|l| {
            l.split_whitespace()
                .find(|w| w.ends_with("demo-report.html"))
        })
        .unwrap_or_else(|| panic!("the summary names no report: {stdout}"));
    let html = std::fs::read_to_string(report).expect("the HTML report the summary names");
    assert!(html.contains("<svg"), "a report with plots");

    // The evening with the demand-response event, on the same running network.
    let (ok, stdout, stderr) = demo_with(&net.dir, unused, "3", "71", "2");
    assert!(ok, "the second demo failed:\n{stdout}\n{stderr}");
    assert!(
        !started_by_demo(&stdout),
        "the demo started a network: {stdout}"
    );
    assert_demand_response_delivered_and_paid(&stdout);
    assert_payment_conserved(&stdout);
    // The network the demo did not start is still running.
    assert!(
        std::net::TcpStream::connect(dso_peer).is_ok(),
        "the demo stopped a network it did not start"
    );
}
