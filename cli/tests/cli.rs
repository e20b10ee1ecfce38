//! End-to-end tests of the `gridledger` binary: the quick-start flow and bad input, run as a
//! real process the way an operator runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gridledger(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridledger"))
        .args(args)
        .output()
        .expect("run gridledger")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gridledger-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[track_caller]
fn fails_with(out: &Output, needle: &str) {
    assert!(
        !out.status.success(),
        "command should fail: {}",
        text(&out.stdout)
    );
    let err = text(&out.stderr);
    assert!(
        err.contains(needle),
        "stderr should mention {needle:?}: {err}"
    );
    assert!(!err.contains("panicked"), "must not panic: {err}");
}

#[test]
fn quick_start_flow_builds_and_inspects_the_market_channel() {
    let dir = temp_dir("quickstart");
    let d = dir.to_str().expect("utf8");
    let crypto = root().join("examples/crypto-config.toml");
    let channel = root().join("examples/market-channel.toml");
    ok(&gridledger(&[
        "crypto",
        "generate",
        "--config",
        crypto.to_str().expect("utf8"),
        "--out",
        d,
    ]));
    assert!(
        dir.join("organizations/DSOMSP/users/Admin/msp/keystore/key.pem")
            .is_file()
    );
    assert!(
        dir.join("organizations/OrdererMSP/orderers/orderer0/tls/server.crt")
            .is_file()
    );

    let block = dir.join("market.block");
    let args = |out: &Path| {
        vec![
            "channel".to_owned(),
            "genesis".into(),
            "--config".into(),
            channel.display().to_string(),
            "--base-dir".into(),
            d.into(),
            "--out".into(),
            out.display().to_string(),
            "--timestamp".into(),
            "1767225600".into(),
        ]
    };
    let a: Vec<String> = args(&block);
    ok(&gridledger(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let again = dir.join("market-again.block");
    let b: Vec<String> = args(&again);
    ok(&gridledger(
        &b.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    assert_eq!(
        std::fs::read(&block).expect("block"),
        std::fs::read(&again).expect("block"),
        "seeded material + fixed timestamp must give identical genesis blocks"
    );

    let shown = ok(&gridledger(&[
        "channel",
        "inspect",
        "--block",
        block.to_str().expect("utf8"),
    ]));
    for needle in [
        "channel:       market",
        "DSOMSP",
        "RetailerMSP",
        "CommunityMSP",
        "etcdraft",
        "/Channel/Application/Endorsement",
        "OR('DSOMSP.admin')",
    ] {
        assert!(
            shown.contains(needle),
            "inspect output lacks {needle:?}:\n{shown}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn inspects_a_real_fabric_genesis_block() {
    let block = root().join("tests/fixtures/fabric-2.5.5-chain/block000.pb");
    let shown = ok(&gridledger(&[
        "channel",
        "inspect",
        "--block",
        block.to_str().expect("utf8"),
    ]));
    for needle in [
        "channel:       mychannel",
        "Org1MSP",
        "OrdererMSP",
        "/Channel/Orderer/BlockValidation",
        "V2_5",
    ] {
        assert!(
            shown.contains(needle),
            "inspect output lacks {needle:?}:\n{shown}"
        );
    }
}

#[test]
fn bad_input_gets_a_clear_error_and_no_panic() {
    let dir = temp_dir("bad");
    let d = dir.to_str().expect("utf8");
    fails_with(
        &gridledger(&[
            "crypto",
            "generate",
            "--config",
            "/nonexistent/crypto.toml",
            "--out",
            d,
        ]),
        "/nonexistent/crypto.toml",
    );
    let bad_toml = dir.join("bad.toml");
    std::fs::write(&bad_toml, "organizations = [ {").expect("write");
    fails_with(
        &gridledger(&[
            "crypto",
            "generate",
            "--config",
            bad_toml.to_str().expect("utf8"),
            "--out",
            d,
        ]),
        "parsing",
    );
    fails_with(
        &gridledger(&[
            "channel",
            "genesis",
            "--config",
            bad_toml.to_str().expect("utf8"),
            "--out",
            d,
        ]),
        "bad.toml",
    );

    let garbage = dir.join("garbage.block");
    std::fs::write(&garbage, b"\xff\xff\xff\xff not a block").expect("write");
    fails_with(
        &gridledger(&[
            "channel",
            "inspect",
            "--block",
            garbage.to_str().expect("utf8"),
        ]),
        "not a protobuf common.Block",
    );
    // A real block that carries a transaction, not a config.
    let tx_block = root().join("tests/fixtures/fabric-2.5.5-chain/block001.pb");
    fails_with(
        &gridledger(&[
            "channel",
            "inspect",
            "--block",
            tx_block.to_str().expect("utf8"),
        ]),
        "config",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["crypto", "generate", "--help"],
        vec!["channel", "genesis", "--help"],
        vec!["channel", "inspect", "--help"],
        vec!["bench", "crypto", "--help"],
        vec!["orderer", "remove", "--help"],
        vec!["grid", "check", "--help"],
    ] {
        let out = ok(&gridledger(&args));
        assert!(out.contains("Usage"), "{args:?}: {out}");
    }
}

/// `bench crypto` and `bench grid` run briefly and print the JSON reports BENCHMARKS.md quotes
/// (a smoke run: nothing about speed is asserted).
#[test]
fn bench_crypto_and_bench_grid_report_json() {
    let out = ok(&gridledger(&[
        "bench",
        "crypto",
        "--seconds",
        "0.05",
        "--repeat",
        "1",
        "--json",
    ]));
    let report: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("bench crypto printed no JSON object ({e}): {out}"));
    let medians = report["medians"].as_array().expect("medians");
    assert!(!medians.is_empty(), "{report}");
    for m in medians {
        assert!(m["verifies"].as_u64().is_some_and(|v| v > 0), "{m}");
    }

    let out = ok(&gridledger(&[
        "bench",
        "grid",
        "--seconds",
        "0.05",
        "--repeat",
        "1",
        "--trades",
        "3",
        "--json",
    ]));
    let report: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("bench grid printed no JSON object ({e}): {out}"));
    assert_eq!(report["trades"].as_u64(), Some(3), "{report}");
    assert!(
        report["median_per_check_us"]
            .as_f64()
            .is_some_and(|v| v > 0.0),
        "{report}"
    );

    let bad = gridledger(&["bench", "grid", "--seconds", "0", "--json"]);
    assert!(!bad.status.success(), "a zero-second bench ran");
}

/// Crypto material, the market genesis block and an orderer0 config under a fresh folder
/// named after `name`; returns (folder, genesis block path, orderer.toml path).
fn stopped_orderer(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = temp_dir(name);
    let d = dir.to_str().expect("utf8");
    let crypto = root().join("examples/crypto-config.toml");
    ok(&gridledger(&[
        "crypto",
        "generate",
        "--config",
        crypto.to_str().expect("utf8"),
        "--out",
        d,
    ]));
    let block = dir.join("market.block");
    let channel = root().join("examples/market-channel.toml");
    ok(&gridledger(&[
        "channel",
        "genesis",
        "--config",
        channel.to_str().expect("utf8"),
        "--base-dir",
        d,
        "--out",
        block.to_str().expect("utf8"),
    ]));
    let o = dir.join("organizations/OrdererMSP/orderers/orderer0");
    let config = dir.join("orderer.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"orderer0\"\nmsp_id = \"OrdererMSP\"\nlisten_address = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\
             signing_cert = \"{}\"\nsigning_key = \"{}\"\n\n[tls]\nserver_cert = \"{}\"\nserver_key = \"{}\"\n",
            dir.join("data").display(),
            o.join("msp/signcerts/cert.pem").display(),
            o.join("msp/keystore/key.pem").display(),
            o.join("tls/server.crt").display(),
            o.join("tls/server.key").display(),
        ),
    )
    .expect("write orderer.toml");
    (dir, block, config)
}

#[test]
fn orderer_join_and_list_work_on_a_stopped_orderer() {
    let (dir, block, config) = stopped_orderer("orderer-join");
    let c = config.to_str().expect("utf8");
    assert!(ok(&gridledger(&["orderer", "list", "--config", c])).contains("no channels joined"));
    let joined = ok(&gridledger(&[
        "orderer",
        "join",
        "--config",
        c,
        "--block",
        block.to_str().expect("utf8"),
    ]));
    assert!(
        joined.contains("joined channel 'market' (height 1)"),
        "{joined}"
    );
    let listed = ok(&gridledger(&["orderer", "list", "--config", c]));
    assert!(listed.contains("market\theight 1"), "{listed}");
    // Joining twice is refused with a reason, and a block that is not a genesis block too.
    fails_with(
        &gridledger(&[
            "orderer",
            "join",
            "--config",
            c,
            "--block",
            block.to_str().expect("utf8"),
        ]),
        "market",
    );
    let tx_block = root().join("tests/fixtures/fabric-2.5.5-chain/block001.pb");
    fails_with(
        &gridledger(&[
            "orderer",
            "join",
            "--config",
            c,
            "--block",
            tx_block.to_str().expect("utf8"),
        ]),
        "joining",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn orderer_remove_deletes_a_joined_channel_and_refuses_unknown_or_unsafe_ones() {
    let (dir, block, config) = stopped_orderer("orderer-remove");
    let c = config.to_str().expect("utf8");
    let data = dir.join("data");
    let data_dir = data.to_str().expect("utf8");
    ok(&gridledger(&[
        "orderer",
        "join",
        "--config",
        c,
        "--block",
        block.to_str().expect("utf8"),
    ]));
    let listed = ok(&gridledger(&["orderer", "list", "--config", c]));
    assert!(listed.contains("market\theight 1"), "{listed}");
    // A genesis block waiting in the join folder goes too, or the next start would rejoin.
    std::fs::create_dir_all(data.join("join")).expect("join folder");
    std::fs::copy(&block, data.join("join/market.block")).expect("pending join file");

    let removed = ok(&gridledger(&[
        "orderer",
        "remove",
        "--data-dir",
        data_dir,
        "--channel",
        "market",
    ]));
    assert!(removed.contains("removed channel 'market'"), "{removed}");
    assert!(
        !data.join("channels/market").exists(),
        "ledger and Raft log gone"
    );
    assert!(
        !data.join("join/market.block").exists(),
        "pending join file gone"
    );
    assert!(ok(&gridledger(&["orderer", "list", "--config", c])).contains("no channels joined"));

    fails_with(
        &gridledger(&["orderer", "remove", "--config", c, "--channel", "market"]),
        "channel market is not joined here",
    );
    fails_with(
        &gridledger(&[
            "orderer",
            "remove",
            "--data-dir",
            data_dir,
            "--channel",
            "../market",
        ]),
        "cannot be used as a folder name",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn grid_check_reproduces_the_ieee33_reference_and_explains_a_refusal() {
    let feeder = root().join("grid/feeders/ieee33.json");
    let feeder = feeder.to_str().expect("utf8");
    let base = ok(&gridledger(&[
        "grid", "check", "--feeder", feeder, "--json",
    ]));
    let verdict: serde_json::Value = serde_json::from_str(&base).expect("one JSON object");
    for key in [
        "feasible",
        "min_vm_pu",
        "min_vm_bus",
        "max_vm_pu",
        "max_vm_bus",
        "losses_kw",
        "max_loading_line",
        "max_loading_pct",
        "violations",
    ] {
        assert!(verdict.get(key).is_some(), "missing {key}: {base}");
    }
    let losses = verdict["losses_kw"].as_f64().expect("losses");
    assert!((losses - 202.68).abs() <= 0.1, "{losses}");
    assert_eq!(verdict["min_vm_bus"], 17);
    assert!((verdict["min_vm_pu"].as_f64().expect("min") - 0.91309).abs() <= 1e-5);

    // 3.4 MW into the 2-22-23-24 lateral at light load overloads line 21.
    let args = [
        "grid",
        "check",
        "--feeder",
        feeder,
        "--load-scale",
        "0.3",
        "--trade",
        "1:22:3400",
    ];
    let refused: serde_json::Value =
        serde_json::from_str(&ok(&gridledger(&[&args[..], &["--json"]].concat()))).expect("json");
    assert_eq!(refused["feasible"], false);
    assert_eq!(refused["max_loading_line"], 21);
    assert_eq!(refused["violations"][0]["kind"], "overcurrent");
    let text = ok(&gridledger(&args));
    assert!(text.contains("NOT FEASIBLE"), "{text}");
    assert!(text.contains("overcurrent on line 21"), "{text}");

    // Bad input: a malformed trade, a bus the feeder lacks, a file that is not a feeder.
    fails_with(
        &gridledger(&["grid", "check", "--feeder", feeder, "--trade", "1-22-5"]),
        "SELLER_BUS:BUYER_BUS:KW",
    );
    fails_with(
        &gridledger(&["grid", "check", "--feeder", feeder, "--trade", "1:99:5"]),
        "bus 99 does not exist",
    );
    let cargo_toml = root().join("Cargo.toml");
    fails_with(
        &gridledger(&[
            "grid",
            "check",
            "--feeder",
            cargo_toml.to_str().expect("utf8"),
        ]),
        "feeder",
    );
}

#[test]
fn output_cut_short_by_the_reader_ends_quietly_instead_of_panicking() {
    use std::io::Read as _;
    // Far more output than a pipe holds; the reader takes a little and goes away, as `| head`.
    let chain = root().join("tests/fixtures/fabric-2.5.5-chain");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridledger"))
        .args(["ledger", "inspect", "--blocks"])
        .arg(&chain)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start gridledger");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut first = [0u8; 512];
    stdout
        .read_exact(&mut first)
        .expect("the start of the output");
    drop(stdout);
    let out = child.wait_with_output().expect("gridledger ends");
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}
