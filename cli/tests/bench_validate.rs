//! `gridledger bench validate` run as a process, as BENCHMARKS.md runs it: it builds its own
//! scratch network in a temporary folder (no ports, no other process) and replays its blocks
//! through the committer. Speed is not asserted, only that the run completes and every replayed
//! transaction was validated VALID.

use std::process::Command;

#[test]
fn bench_validate_replays_every_transaction_as_valid_and_reports_json() {
    let dir = std::env::temp_dir().join(format!(
        "gridledger-bench-validate-test-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("create the test folder");
    let out = Command::new(env!("CARGO_BIN_EXE_gridledger"))
        .args([
            "bench",
            "validate",
            "--blocks",
            "2",
            "--block-size",
            "50",
            "--repeat",
            "1",
            "--json",
            "--dir",
        ])
        .arg(&dir)
        .output()
        .expect("run gridledger");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench validate failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(stdout.trim()).expect("one JSON object on stdout");
    assert!(
        report["tx_per_s"].as_f64().is_some_and(|t| t > 0.0),
        "tx_per_s in {report}"
    );
    assert_eq!(report["codes"], serde_json::json!({ "VALID": 100 }));
    assert_eq!(report["repeats"].as_array().map(Vec::len), Some(1));
    assert_eq!(report["transactions"], 100);
    // The scratch network and ledgers are removed afterwards.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .expect("read the test folder")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
