//! `gridledger demo` end to end: with no network running it starts `gridledger up` itself,
//! simulates a window of the day (trades certified by the DSO, meter readings, attestations,
//! settlement, guarantees of origin and the demand-response event at 18:00), prints the
//! summary, writes the HTML and SVG report, and stops the network it started. A second run on
//! the same folder picks another day, since the first one's readings are on the ledger.

mod support;
use support::free_base_port;

use std::process::Command;

fn demo(dir: &std::path::Path, port: u16, from: &str, periods: &str) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gridledger"))
        .args(["demo", "--dir"])
        .arg(dir)
        .args([
            "--base-port",
            &port.to_string(),
            "--prosumers",
            "3",
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
    assert!(
        row(&stdout, "Guarantees of origin").contains("issued"),
        "{stdout}"
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
    let dr = row(&stdout, "Demand response");
    assert!(dr.contains("3 participants") && dr.contains("paid"), "{dr}");
    assert!(
        stdout.matches("demand response: ").count() == 3,
        "one line per participant: {stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
