//! What the tests that run `gridledger` as real processes share: free loopback ports, a local
//! network under `gridledger up` that is stopped (and its logs shown on failure) when dropped,
//! running the binary, and a Gateway for a user `network.json` lists.
//!
//! Each test binary compiles this module on its own and uses part of it.
#![allow(dead_code)]

pub mod energy;

use gridledger_identity::SigningIdentity;
use gridledger_sdk::Gateway;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long `up` (or one node) may take to serve.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often waits poll.
pub const POLL: Duration = Duration::from_millis(50);

/// `count` consecutive loopback ports nobody listens on, below Linux's ephemeral range so that
/// outgoing connections do not take them.
pub fn free_base_port(count: u16) -> u16 {
    let seed = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos(),
    ) ^ (u64::from(std::process::id()) << 20);
    for attempt in 0..500u64 {
        let base = 20_000 + (seed.wrapping_add(attempt.wrapping_mul(7_919)) % 12_000) as u16;
        let listeners: Vec<_> = (0..count)
            .map_while(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if listeners.len() == usize::from(count) {
            return base;
        }
    }
    panic!("no {count} consecutive free loopback ports in 20000..32000");
}

/// Runs `gridledger ARGS` to completion.
pub fn gridledger(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridledger"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run gridledger")
}

/// A finished command's standard output.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A finished command's standard error.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `gridledger ARGS`, which must succeed; its standard output.
pub fn ok(args: &[&str]) -> String {
    let out = gridledger(args);
    assert!(
        out.status.success(),
        "gridledger {args:?} failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// A local network under `gridledger up` in a temporary folder, plus nodes a test started
/// itself; everything stops on drop, and on failure the logs' tails are printed and the folder
/// is kept.
pub struct UpNetwork {
    /// The network's folder.
    pub dir: PathBuf,
    /// The first of its ports.
    pub base_port: u16,
    up: Option<Child>,
    /// Nodes the test started itself; each exits when its standard input closes.
    nodes: Vec<Child>,
}

impl UpNetwork {
    /// Starts `gridledger up` in a fresh folder named after `name` and waits for its
    /// network.json, which it returns.
    pub fn start(name: &str) -> (UpNetwork, serde_json::Value) {
        UpNetwork::start_with_env(name, &[])
    }

    /// [`UpNetwork::start`] with extra environment variables for `up` (and so for every node
    /// it starts).
    pub fn start_with_env(name: &str, env: &[(&str, &str)]) -> (UpNetwork, serde_json::Value) {
        let dir = std::env::temp_dir().join(format!("gridledger-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test folder");
        // The six nodes on base..base + 5, their operations endpoints on base + 10..base + 15.
        let base_port = free_base_port(16);
        let mut network = UpNetwork {
            dir: dir.clone(),
            base_port,
            up: None,
            nodes: Vec::new(),
        };
        let log = std::fs::File::create(dir.join("up.log")).expect("create up.log");
        let up = Command::new(env!("CARGO_BIN_EXE_gridledger"))
            .args(["up", "--dir"])
            .arg(&dir)
            .args(["--base-port", &base_port.to_string()])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone a file handle"))
            .stderr(log)
            .spawn()
            .expect("start gridledger up");
        let up = network.up.insert(up);
        let path = dir.join("network.json");
        let deadline = Instant::now() + START_TIMEOUT;
        let json = loop {
            if let Some(v) = std::fs::read(&path)
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
        (network, json)
    }

    /// The path of its network.json.
    pub fn network_json(&self) -> String {
        self.dir
            .join("network.json")
            .to_str()
            .expect("a UTF-8 path")
            .to_owned()
    }

    /// Stops `gridledger up` (and so every node it started) with SIGTERM.
    pub fn stop_up(&mut self) {
        if let Some(mut up) = self.up.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &up.id().to_string()])
                .status();
            let status = up.wait().expect("reap gridledger up");
            assert!(status.success(), "gridledger up stopped with {status}");
        }
    }

    /// Starts node `name` from the config `up` wrote and waits until it serves on `port`.
    pub fn start_node(&mut self, name: &str, port: u16) {
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

impl Drop for UpNetwork {
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

/// A Gateway to `msp_id`'s peer as its first user in `network` (network.json under `dir`).
pub async fn user_gateway(dir: &Path, network: &serde_json::Value, msp_id: &str) -> Gateway {
    let first = network["organizations"]
        .as_array()
        .and_then(|orgs| orgs.iter().find(|o| o["mspId"] == msp_id))
        .and_then(|org| org["users"][0]["name"].as_str())
        .unwrap_or_else(|| panic!("network.json lists no user of {msp_id}"))
        .to_owned();
    gateway_as(dir, network, msp_id, &first).await
}

/// A Gateway to `msp_id`'s peer as its identity `user` (a user or admin under
/// `crypto/organizations/<msp_id>/users/`).
pub async fn gateway_as(
    dir: &Path,
    network: &serde_json::Value,
    msp_id: &str,
    user: &str,
) -> Gateway {
    let org = network["organizations"]
        .as_array()
        .and_then(|orgs| orgs.iter().find(|o| o["mspId"] == msp_id))
        .unwrap_or_else(|| panic!("network.json has no {msp_id}"));
    let peer = &org["peers"][0];
    let path = |v: &serde_json::Value| dir.join(v.as_str().expect("a path"));
    let base = dir.join(format!("crypto/organizations/{msp_id}/users/{user}/msp"));
    let signer = SigningIdentity::load(
        msp_id,
        &base.join("signcerts/cert.pem"),
        &base.join("keystore/key.pem"),
    )
    .unwrap_or_else(|e| panic!("loading {user} of {msp_id}: {e}"));
    let tls_ca = std::fs::read(path(&peer["tlsCaCert"])).expect("read the peer's TLS CA");
    Gateway::connect(
        peer["endpoint"].as_str().expect("endpoint"),
        &tls_ca,
        peer["serverName"].as_str().expect("serverName"),
        signer,
    )
    .await
    .expect("connect a gateway")
}

/// The start of the next delivery period at 02:00 UTC at least an hour away: a quiet hour on
/// the feeder (the local DSO's load profile is lowest at night), so the DSO's verdicts in a
/// test do not depend on the time of day it runs; gate closure is far off.
pub fn quiet_period() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let mut period = now / 86_400 * 86_400 + 7200;
    if period < now + 3600 {
        period += 86_400;
    }
    period
}

/// Also writes every panic's message and place to `dir/panic.txt`, kept with the network's
/// folder, so a failure seen only in a long CI log can be read next to the nodes' logs.
#[allow(dead_code)]
pub fn keep_panic_messages_in(dir: &Path) {
    let file = dir.join("panic.txt");
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
        {
            let _ = writeln!(f, "{info}");
        }
        default_hook(info);
    }));
}

/// Every file under `dir` (recursively), read whole, with its path.
#[allow(dead_code)]
pub fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read a folder").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push((
                path.display().to_string(),
                std::fs::read(&path).expect("read a file"),
            ));
        }
    }
    out
}

/// Whether `needle` occurs in `haystack`.
#[allow(dead_code)]
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
