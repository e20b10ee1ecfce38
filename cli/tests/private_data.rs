//! Private data collections on a real local network: `gridledger up`, the `privatedata`
//! built-in chaincode deployed with a collections file (DSO and Retailer members, member-only
//! reads and writes), a private write through the Rust SDK with the value in the transient
//! map, endorsed by DSO's peer alone, which pushes the value to Retailer's peer; Retailer's
//! peer then answers it, Community's peer (not a member) holds only the hash (its ledger
//! file never contains the value), a collection whose required_peer_count cannot be met fails
//! endorsement, a purge removes the value while the transaction keeps its hash, and a member
//! peer that was down when a value was written fetches it from another member once back.

use gridledger_identity::SigningIdentity;
use gridledger_sdk::Gateway;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const CHANNEL: &str = "market";
const NAME: &str = "secrets";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
/// `up` takes six ports: orderer0, three peers, orderer1, orderer2.
const PORTS: u16 = 6;

fn free_base_port() -> u16 {
    let seed = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos(),
    ) ^ (u64::from(std::process::id()) << 20);
    for attempt in 0..500u64 {
        let base = 20_000 + (seed.wrapping_add(attempt.wrapping_mul(7_919)) % 12_000) as u16;
        let listeners: Vec<_> = (0..PORTS)
            .map_while(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if listeners.len() == usize::from(PORTS) {
            return base;
        }
    }
    panic!("no {PORTS} consecutive free loopback ports in 20000..32000");
}

/// The network folder and `gridledger up`, stopped on drop.
struct Harness {
    dir: PathBuf,
    up: Option<Child>,
    /// Nodes the test started itself; each exits when its standard input closes.
    nodes: Vec<Child>,
}

impl Harness {
    /// Stops `gridledger up` (and so every node it started) with SIGTERM.
    fn stop_up(&mut self) {
        if let Some(mut up) = self.up.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &up.id().to_string()])
                .status();
            let status = up.wait().expect("reap gridledger up");
            assert!(status.success(), "gridledger up stopped with {status}");
        }
    }

    /// Starts node `name` from the config `up` wrote and waits until it serves on `port`.
    fn start_node(&mut self, name: &str, port: u16) {
        let (kind, file) = if name.starts_with("orderer") {
            ("orderer", "orderer.toml")
        } else {
            ("peer", "peer.toml")
        };
        let log = std::fs::File::create(self.dir.join(format!("logs/{name}.restarted.log")))
            .expect("create a log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_gridledger"))
            .args([kind, "start", "--config"])
            .arg(self.dir.join("nodes").join(name).join(file))
            .arg("--exit-on-stdin-close")
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("clone a file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{name} exited during start-up ({status})");
            }
            assert!(Instant::now() < deadline, "{name} did not serve on {port}");
            std::thread::sleep(POLL);
        }
        self.nodes.push(child);
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for mut node in self.nodes.drain(..) {
            drop(node.stdin.take());
            let _ = node.wait();
        }
        if let Some(mut up) = self.up.take() {
            if !matches!(up.try_wait(), Ok(Some(_))) {
                let _ = Command::new("kill")
                    .args(["-TERM", &up.id().to_string()])
                    .status();
                let deadline = Instant::now() + Duration::from_secs(20);
                while Instant::now() < deadline && !matches!(up.try_wait(), Ok(Some(_))) {
                    std::thread::sleep(POLL);
                }
                let _ = up.kill();
                let _ = up.wait();
            }
        }
        if std::thread::panicking() {
            for name in [
                "up.log",
                "logs/peer0.dso.log",
                "logs/peer0.retailer.log",
                "logs/peer0.community.log",
                "logs/peer0.dso.restarted.log",
                "logs/peer0.retailer.restarted.log",
            ] {
                if let Ok(text) = std::fs::read_to_string(self.dir.join(name)) {
                    let lines: Vec<&str> = text.lines().collect();
                    eprintln!("----- {name}");
                    for line in &lines[lines.len().saturating_sub(30)..] {
                        eprintln!("{line}");
                    }
                }
            }
            eprintln!("[test] folder kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs `gridledger ARGS` to completion.
fn gridledger(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridledger"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run gridledger")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `gridledger ARGS`, which must succeed; its standard output.
fn ok(args: &[&str]) -> String {
    let out = gridledger(args);
    assert!(
        out.status.success(),
        "gridledger {args:?} failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// User1 of `msp_id`, through its own peer, from `network.json`.
async fn gateway(dir: &Path, network: &serde_json::Value, msp_id: &str) -> Gateway {
    let org = network["organizations"]
        .as_array()
        .and_then(|orgs| orgs.iter().find(|o| o["mspId"] == msp_id))
        .unwrap_or_else(|| panic!("network.json has no {msp_id}"));
    let peer = &org["peers"][0];
    let user = &org["users"][0];
    let path = |v: &serde_json::Value| dir.join(v.as_str().expect("a path"));
    let signer = SigningIdentity::load(msp_id, &path(&user["cert"]), &path(&user["key"]))
        .expect("load User1");
    let tls_ca = std::fs::read(path(&peer["tlsCaCert"])).expect("read the peer's TLS CA");
    Gateway::connect(
        peer["endpoint"].as_str().expect("endpoint"),
        &tls_ca,
        peer["serverName"].as_str().expect("serverName"),
        signer,
    )
    .await
    .expect("connect to the gateway")
    .with_timeout(CALL_TIMEOUT)
}

const VALUE: &[u8] = b"tariff-7f3a9c-confidential";

const COLLECTIONS: &str = r#"[
  {
    "name": "dsoRetail",
    "policy": "OR('DSOMSP.member', 'RetailerMSP.member')",
    "requiredPeerCount": 1,
    "maxPeerCount": 2,
    "blockToLive": 0,
    "memberOnlyRead": true,
    "memberOnlyWrite": true
  },
  {
    "name": "catchUp",
    "policy": "OR('DSOMSP.member', 'RetailerMSP.member')",
    "requiredPeerCount": 0,
    "maxPeerCount": 1
  },
  {
    "name": "needsTwo",
    "policy": "OR('DSOMSP.member', 'RetailerMSP.member')",
    "requiredPeerCount": 2,
    "maxPeerCount": 2
  }
]"#;

/// Endorses `args` (with `transient`) on `orgs`' peers through `gateway` and submits; the
/// validation code, or the endorsement error.
async fn submit(
    gateway: &Gateway,
    args: &[&str],
    transient: BTreeMap<String, Vec<u8>>,
    orgs: &[&str],
) -> Result<i32, String> {
    let tx = gateway
        .network(CHANNEL)
        .contract(NAME)
        .proposal_with(
            args.iter().map(|s| s.as_bytes().to_vec()).collect(),
            transient,
            orgs.iter().map(|s| (*s).to_string()).collect(),
        )
        .map_err(|e| e.to_string())?
        .endorse()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = tx
        .submit()
        .await
        .map_err(|e| e.to_string())?
        .status()
        .await
        .map_err(|e| e.to_string())?;
    Ok(status.code)
}

/// Evaluates on the gateway's peer until `done` accepts the outcome (the peer may lag a block).
async fn eventually(
    gateway: &Gateway,
    args: &[&str],
    done: impl Fn(&Result<String, String>) -> bool,
) -> Result<String, String> {
    let deadline = Instant::now() + CALL_TIMEOUT;
    loop {
        let outcome = gateway
            .network(CHANNEL)
            .contract(NAME)
            .evaluate(args[0], &args[1..])
            .await
            .map(|r| String::from_utf8_lossy(&r).into_owned())
            .map_err(|e| format!("{e:?}"));
        if done(&outcome) {
            return outcome;
        }
        assert!(
            Instant::now() < deadline,
            "{args:?} never gave the expected outcome: {outcome:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn ledger_file(dir: &Path, peer: &str) -> Vec<u8> {
    std::fs::read(dir.join(format!("nodes/{peer}/data/channels/{CHANNEL}/ledger.redb")))
        .expect("read a peer's ledger file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_data_reaches_member_peers_only_is_purged_and_is_pulled_after_a_restart() {
    let dir = std::env::temp_dir().join(format!("gridledger-private-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test folder");
    let mut h = Harness {
        dir: dir.clone(),
        up: None,
        nodes: Vec::new(),
    };
    let log = std::fs::File::create(dir.join("up.log")).expect("create up.log");
    let base = free_base_port();
    let up = Command::new(env!("CARGO_BIN_EXE_gridledger"))
        .args(["up", "--dir"])
        .arg(&dir)
        .args(["--base-port", &base.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone a file handle"))
        .stderr(log)
        .spawn()
        .expect("start gridledger up");
    let up = h.up.insert(up);
    let network_path = dir.join("network.json");
    let deadline = Instant::now() + START_TIMEOUT;
    let network: serde_json::Value = loop {
        if let Some(v) = std::fs::read(&network_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            break v;
        }
        if let Ok(Some(status)) = up.try_wait() {
            panic!("gridledger up exited before serving ({status})");
        }
        assert!(Instant::now() < deadline, "gridledger up did not serve");
        std::thread::sleep(POLL);
    };
    let net = network_path.to_str().expect("a UTF-8 path");
    let collections = dir.join("collections.json");
    std::fs::write(&collections, COLLECTIONS).expect("write the collections file");
    ok(&[
        "chaincode",
        "deploy",
        "--network",
        net,
        "--channel",
        CHANNEL,
        "--name",
        NAME,
        "--builtin",
        "privatedata",
        "--policy",
        "OR('DSOMSP.peer', 'RetailerMSP.peer')",
        "--collections",
        collections.to_str().expect("a UTF-8 path"),
    ]);
    let dso = gateway(&dir, &network, "DSOMSP").await;
    let retailer = gateway(&dir, &network, "RetailerMSP").await;
    let community = gateway(&dir, &network, "CommunityMSP").await;
    let transient = BTreeMap::from([("value".to_string(), VALUE.to_vec())]);

    // DSO's peer alone endorses; it pushes the value to Retailer's peer (required: 1).
    let code = submit(
        &dso,
        &["PutPrivate", "dsoRetail", "tariff"],
        transient.clone(),
        &["DSOMSP"],
    )
    .await
    .expect("the private write is endorsed");
    assert_eq!(code, 0, "the private write commits VALID");
    let value = std::str::from_utf8(VALUE).expect("UTF-8");
    for member in [&dso, &retailer] {
        let read = eventually(member, &["GetPrivate", "dsoRetail", "tariff"], |o| {
            o.as_deref() == Ok(value)
        })
        .await;
        assert_eq!(read.as_deref(), Ok(value));
    }
    // Community: member-only reads refuse its client; its peer knows the hash alone.
    let refused = eventually(&community, &["GetPrivate", "dsoRetail", "tariff"], |o| {
        o.is_err()
    })
    .await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("cannot read")),
        "{refused:?}"
    );
    let expected_hash = hex_sha256(VALUE);
    let hash = eventually(
        &community,
        &["GetPrivateHash", "dsoRetail", "tariff"],
        |o| o.as_deref() == Ok(expected_hash.as_str()),
    )
    .await;
    assert_eq!(hash.as_deref(), Ok(expected_hash.as_str()));
    assert!(contains(&ledger_file(&dir, "peer0.dso"), VALUE));
    assert!(contains(&ledger_file(&dir, "peer0.retailer"), VALUE));
    assert!(
        !contains(&ledger_file(&dir, "peer0.community"), VALUE),
        "a non-member peer's ledger file must not hold the private value"
    );

    // A collection needing two other member peers cannot be served by this network.
    let short = submit(
        &dso,
        &["PutPrivate", "needsTwo", "k"],
        transient.clone(),
        &["DSOMSP"],
    )
    .await;
    assert!(
        short
            .as_ref()
            .is_err_and(|e| e.contains("required_peer_count is 2")),
        "{short:?}"
    );

    // Purge: the value goes from every member peer; the hash stays in the purge's block.
    let code = submit(
        &retailer,
        &["PurgePrivate", "dsoRetail", "tariff"],
        BTreeMap::new(),
        &["RetailerMSP"],
    )
    .await
    .expect("the purge is endorsed");
    assert_eq!(code, 0, "the purge commits VALID");
    for member in [&dso, &retailer] {
        let read = eventually(member, &["GetPrivate", "dsoRetail", "tariff"], |o| {
            o.as_deref() == Ok("")
        })
        .await;
        assert_eq!(read.as_deref(), Ok(""));
    }

    // A member peer that was down fetches what it missed from another member once back:
    // the nodes run again without Retailer's peer, DSO writes to a collection that requires
    // no acknowledgement, then Retailer's peer starts, catches up and pulls the value, which
    // DSO's peer kept when it committed the block.
    drop((dso, retailer, community));
    h.stop_up();
    // `up`'s ports: orderer0, the three peers, orderer1, orderer2.
    for (name, offset) in [
        ("orderer0", 0),
        ("orderer1", 4),
        ("orderer2", 5),
        ("peer0.dso", 1),
        ("peer0.community", 3),
    ] {
        h.start_node(name, base + offset);
    }
    let dso = gateway(&dir, &network, "DSOMSP").await;
    let missed = b"meter-reading-missed-while-down";
    let code = submit(
        &dso,
        &["PutPrivate", "catchUp", "reading"],
        BTreeMap::from([("value".to_string(), missed.to_vec())]),
        &["DSOMSP"],
    )
    .await
    .expect("endorsed without Retailer's peer");
    assert_eq!(code, 0);
    h.start_node("peer0.retailer", base + 2);
    let retailer = gateway(&dir, &network, "RetailerMSP").await;
    let expected = std::str::from_utf8(missed).expect("UTF-8");
    let read = eventually(&retailer, &["GetPrivate", "catchUp", "reading"], |o| {
        o.as_deref() == Ok(expected)
    })
    .await;
    assert_eq!(read.as_deref(), Ok(expected));
    let log = std::fs::read_to_string(dir.join("logs/peer0.retailer.restarted.log"))
        .expect("read Retailer's peer log");
    assert!(
        log.contains("private data pulled from another member peer"),
        "the value must have come by pull:\n{log}"
    );
}

/// Hex SHA-256 of `bytes`, computed with the `sha256sum` tool so the test does not trust the
/// code it checks.
fn hex_sha256(bytes: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!("gridledger-private-sum-{}", std::process::id()));
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
