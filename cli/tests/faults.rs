//! The fault campaign: the local network of `gridledger up` (three Raft orderers, the peers of
//! DSOMSP, RetailerMSP and CommunityMSP) under a steady load of the `energy` market — payment
//! issued by the organizations' admins, offers posted and accepted by prosumers in a ring,
//! every trade certified by the DSO's peer — while faults chosen from a seeded random schedule
//! hit the nodes one at a time:
//!
//! - `kill -9` of any orderer or peer, restarted after a few seconds;
//! - a frozen process (SIGSTOP, SIGCONT a few seconds later);
//! - a full disk on one peer, whose data folder is a small tmpfs mounted before it starts: a
//!   filler file takes every free byte, the peer must stay up, stop committing (its block
//!   store rolls back to the last durable commit) and say so in `/healthz`; once the filler
//!   is deleted it must commit again and report healthy;
//! - a torn last write of a peer's block store: the peer is killed with `kill -9`, then the
//!   second half of the commit slot redb wrote last (the 128-byte record at the head of the
//!   file that makes a commit current, checksummed) is zeroed, as when a power cut leaves a
//!   sector half-written. redb then falls back to the previous commit: the peer must come back
//!   with an intact chain, missing at most that block, and catch up from the orderers.
//!
//! Every transaction submitted is recorded with the commit status its client saw (VALID, an
//! invalid code, or unknown when the client lost its peer or orderer on the way). A monitor
//! records every peer's tip block hash as it goes. Once every fault is healed and the load
//! stopped the peers must converge, and then: every VALID transaction is VALID in the same
//! block on every peer; every peer holds byte-identical blocks (validation codes included, they
//! are in the blocks' TRANSACTIONS_FILTER) and the same `energy` balances; no block a peer
//! held during the run changed; both conservation laws of the `energy` chaincode hold after
//! every block; and the offline ledger checks of [`offline_ledger_checks`] pass.
//!
//! The campaign runs `GRIDLEDGER_FAULTS_SECONDS` seconds ([`DEFAULT_SECONDS`] unless set) from
//! the seed `GRIDLEDGER_FAULTS_SEED` (else one from the clock). The seed is printed at the
//! start and after every failure; the same seed replays the same schedule: fault times
//! relative to the start, kinds, targets and durations. The disk-full fault needs root (it
//! mounts a tmpfs); without it the test fails saying so. Every process the campaign starts is
//! stopped and the tmpfs unmounted when it ends, also on failure (then the folder is kept, the
//! tmpfs content copied next to it, and the logs' tails printed).

mod support;
use support::energy::{ENERGY, Replay, json, transactions_filter};
use support::{free_base_port, gateway_as, gridledger, stderr, stdout};

use gridledger_proto::prost::Message;
use gridledger_proto::{common, protos};
use gridledger_sdk::{Contract, Gateway, commit_status};
use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CHANNEL: &str = "market";
/// Nodes and their port offsets from the base port, as `up` lays them out.
const NODES: [(&str, u16); 6] = [
    ("orderer0", 0),
    ("peer0.dso", 1),
    ("peer0.retailer", 2),
    ("peer0.community", 3),
    ("orderer1", 4),
    ("orderer2", 5),
];
/// The peers and their organizations.
const PEERS: [(&str, &str); 3] = [
    ("peer0.dso", "DSOMSP"),
    ("peer0.retailer", "RetailerMSP"),
    ("peer0.community", "CommunityMSP"),
];
/// A node's operations endpoint listens this far above its gRPC port.
const OPERATIONS_PORT_OFFSET: u16 = 10;
/// Campaign length without `GRIDLEDGER_FAULTS_SECONDS`.
const DEFAULT_SECONDS: u64 = 200;
const SECONDS_VAR: &str = "GRIDLEDGER_FAULTS_SECONDS";
const SEED_VAR: &str = "GRIDLEDGER_FAULTS_SEED";
/// The size of the tmpfs holding the disk-full peer's data folder.
const TMPFS_SIZE: &str = "size=512m";
/// The filler written to fill the tmpfs, in chunks of this many bytes.
const FILL_CHUNK: usize = 1 << 20;
/// Linux's "no space left on device".
const ENOSPC: i32 = 28;

const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound of one client call (endorse, submit, commit status, query).
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a full disk may take to show in the peer's `/healthz`, and a freed one to clear.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the peers may take to agree on one height once the faults are healed.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(240);
const POLL: Duration = Duration::from_millis(250);

/// The prosumers of the load, in a ring: each buys from the next, so every bus sells about
/// as much as it buys and the DSO's power flow stays near its baseline. (MSP id, user,
/// account.)
const RING: [(&str, &str, &str); 4] = [
    ("RetailerMSP", "Prosumer-R003", "RetailerMSP:POD-R003"),
    ("CommunityMSP", "Prosumer-C003", "CommunityMSP:POD-C003"),
    ("RetailerMSP", "Prosumer-R004", "RetailerMSP:POD-R004"),
    ("CommunityMSP", "Prosumer-C004", "CommunityMSP:POD-C004"),
];
/// Delivery periods the ring trades in, 15 minutes each.
const PERIODS: u64 = 4;
/// Energy of each setup offer (the chaincode's largest), Wh.
const OFFER_WH: &str = "10000000";
/// Energy of each trade, Wh: one cent at [`PRICE`].
const TRADE_WH: &str = "100";
/// Price of every offer, cents per kWh.
const PRICE: &str = "10";
/// Payment issued to each buyer before the load, cents.
const SETUP_CENTS: &str = "100000000";

// ---------------------------------------------------------------------------------------------
// The schedule.
// ---------------------------------------------------------------------------------------------

/// A small deterministic generator (SplitMix64): the schedule must replay from the seed alone.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// `kill -9`, restarted after the hold.
    Kill,
    /// SIGSTOP, SIGCONT after the hold.
    Freeze,
    /// The peer's tmpfs filled; freed after the hold (counted from when `/healthz` reports it).
    DiskFull,
    /// `kill -9`, the last commit slot of the peer's block store torn, restarted after the hold.
    TornWrite,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Kill, Kind::Freeze, Kind::DiskFull, Kind::TornWrite];

    fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill -9 + restart",
            Kind::Freeze => "freeze (SIGSTOP/SIGCONT)",
            Kind::DiskFull => "full disk",
            Kind::TornWrite => "torn last write",
        }
    }
}

/// One fault of the schedule.
#[derive(Debug, Clone)]
struct Fault {
    /// When it is injected, from the start of the load.
    at: Duration,
    kind: Kind,
    /// The node it hits.
    target: &'static str,
    /// How long the node stays down, frozen or full.
    hold: Duration,
}

/// The schedule of a campaign of `length` from `seed`, and the peer whose data folder is the
/// tmpfs. Faults come one at a time, each kind once in every four in a shuffled order, with
/// a pause after each for the network to heal.
fn schedule(seed: u64, length: Duration) -> (Vec<Fault>, &'static str) {
    let mut rng = Rng(seed);
    let disk_peer = rng.pick(&PEERS).0;
    let nodes: Vec<&'static str> = NODES.iter().map(|(n, _)| *n).collect();
    let peers: Vec<&'static str> = PEERS.iter().map(|(n, _)| *n).collect();
    let mut faults = Vec::new();
    let mut at = Duration::from_secs(rng.between(10, 20));
    let mut bag: Vec<Kind> = Vec::new();
    while at < length {
        if bag.is_empty() {
            bag = Kind::ALL.to_vec();
            // Fisher–Yates, from the seed.
            for i in (1..bag.len()).rev() {
                bag.swap(i, rng.between(0, i as u64) as usize);
            }
        }
        let kind = bag.pop().expect("refilled above");
        let (target, hold, heal) = match kind {
            Kind::Kill => (*rng.pick(&nodes), rng.between(1, 8), 10),
            Kind::Freeze => (*rng.pick(&nodes), rng.between(3, 8), 5),
            Kind::DiskFull => (disk_peer, rng.between(10, 20), 25),
            Kind::TornWrite => (*rng.pick(&peers), rng.between(1, 4), 10),
        };
        let hold = Duration::from_secs(hold);
        faults.push(Fault {
            at,
            kind,
            target,
            hold,
        });
        at += hold + Duration::from_secs(heal + rng.between(5, 15));
    }
    (faults, disk_peer)
}

// ---------------------------------------------------------------------------------------------
// The processes.
// ---------------------------------------------------------------------------------------------

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

/// Stops a node: thawed, SIGTERM, and SIGKILL if it has not exited within 20 s.
fn stop_process(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    signal(child.id(), "-CONT");
    signal(child.id(), "-TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Strips ANSI colour sequences from a log line.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The network's folder, its nodes (started by the campaign itself so it can kill and freeze
/// them) and the tmpfs of the disk-full peer. Dropping it stops every node, then unmounts.
struct Campaign {
    dir: PathBuf,
    base_port: u16,
    nodes: BTreeMap<String, Child>,
    /// The mounted tmpfs (the disk-full peer's data folder), until unmounted.
    mount: Option<PathBuf>,
}

impl Campaign {
    /// Lays the network out with `gridledger up` (crypto, channels, chaincodes), stops it,
    /// mounts the tmpfs for `disk_peer`'s data and starts the six nodes.
    fn start(disk_peer: &str) -> (Campaign, serde_json::Value) {
        unmount_stale_tmpfs();
        let dir = std::env::temp_dir().join(format!("gridledger-faults-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the campaign folder");
        let base_port = free_base_port(16);
        let mut campaign = Campaign {
            dir: dir.clone(),
            base_port,
            nodes: BTreeMap::new(),
            mount: None,
        };
        let log = std::fs::File::create(dir.join("up.log")).expect("create up.log");
        let mut up = Command::new(env!("CARGO_BIN_EXE_gridledger"))
            .args(["up", "--dir"])
            .arg(&dir)
            .args(["--base-port", &base_port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone a file handle"))
            .stderr(log)
            .spawn()
            .expect("start gridledger up");
        let deadline = Instant::now() + START_TIMEOUT * 2;
        let json = loop {
            if let Some(v) = std::fs::read(dir.join("network.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            {
                break v;
            }
            if let Ok(Some(status)) = up.try_wait() {
                panic!("gridledger up exited before serving ({status})");
            }
            if Instant::now() > deadline {
                stop_process(&mut up);
                panic!("gridledger up did not serve");
            }
            std::thread::sleep(POLL);
        };
        stop_process(&mut up);
        campaign.mount_tmpfs(disk_peer);
        for (name, _) in NODES {
            campaign.start_node(name);
        }
        (campaign, json)
    }

    fn data_dir(&self, node: &str) -> PathBuf {
        self.dir.join("nodes").join(node).join("data")
    }

    /// Moves `peer`'s data folder onto a fresh tmpfs of [`TMPFS_SIZE`].
    fn mount_tmpfs(&mut self, peer: &str) {
        let data = self.data_dir(peer);
        let before = self.dir.join("nodes").join(peer).join("data.before-tmpfs");
        std::fs::rename(&data, &before).expect("move the peer's data folder aside");
        std::fs::create_dir(&data).expect("create the mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", TMPFS_SIZE, "tmpfs"])
            .arg(&data)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs on {} failed ({}): {}{}\nThe fault campaign simulates a full disk \
             on one peer with a small tmpfs, which needs root and a system that allows tmpfs \
             mounts; it cannot run without them.",
            data.display(),
            out.status,
            stdout(&out),
            stderr(&out)
        );
        self.mount = Some(data.clone());
        let copied = Command::new("cp")
            .arg("-a")
            .arg(before.join("."))
            .arg(&data)
            .status()
            .expect("run cp");
        assert!(
            copied.success(),
            "copying {peer}'s data onto the tmpfs failed"
        );
        std::fs::remove_dir_all(&before).expect("remove the data copied onto the tmpfs");
        eprintln!("[faults] {peer}'s data folder is a {TMPFS_SIZE} tmpfs");
    }

    fn addr(&self, name: &str) -> SocketAddr {
        let offset = NODES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, o)| *o)
            .unwrap_or_else(|| panic!("unknown node {name}"));
        SocketAddr::from(([127, 0, 0, 1], self.base_port + offset))
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }

    /// Starts `name` from the config `up` wrote (its log appended to logs/NAME.log) and waits
    /// until it serves.
    fn start_node(&mut self, name: &str) {
        let (kind, file) = if name.starts_with("orderer") {
            ("orderer", "orderer.toml")
        } else {
            ("peer", "peer.toml")
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))
            .expect("open a log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_gridledger"))
            .args([kind, "start", "--config"])
            .arg(self.dir.join("nodes").join(name).join(file))
            .arg("--exit-on-stdin-close")
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("clone a file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let addr = self.addr(name);
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{name} exited during start-up ({status}); see its log below");
            }
            if Instant::now() > deadline {
                stop_process(&mut child);
                panic!("{name} did not serve on {addr} within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.nodes.insert(name.to_owned(), child);
    }

    fn pid(&self, name: &str) -> u32 {
        self.nodes
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not running"))
            .id()
    }

    /// `kill -9`, reaped.
    fn kill_node(&mut self, name: &str) {
        let mut child = self
            .nodes
            .remove(name)
            .unwrap_or_else(|| panic!("{name} is not running"));
        signal(child.id(), "-KILL");
        let status = child.wait().expect("reap a killed node");
        assert!(!status.success(), "{name} should have died of SIGKILL");
    }

    /// Whether `name` is running (it has not exited by itself).
    fn alive(&mut self, name: &str) -> bool {
        self.nodes
            .get_mut(name)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Whether `name`'s log has a line containing `text`.
    fn logged(&self, name: &str, text: &str) -> bool {
        std::fs::read_to_string(self.log_path(name))
            .is_ok_and(|log| log.lines().map(plain).any(|l| l.contains(text)))
    }

    /// Stops every node gracefully.
    fn stop_all(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.nodes) {
            stop_process(&mut child);
        }
    }

    fn print_logs(&self) {
        for (name, _) in NODES {
            let Ok(text) = std::fs::read_to_string(self.log_path(name)) else {
                continue;
            };
            let lines: Vec<String> = text.lines().map(plain).collect();
            let tail = &lines[lines.len().saturating_sub(25)..];
            eprintln!("----- {name} (last {} lines)", tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for Campaign {
    fn drop(&mut self) {
        self.stop_all();
        let failed = std::thread::panicking();
        if let Some(mount) = self.mount.take() {
            let _ = std::fs::remove_file(mount.join("filler"));
            if failed {
                // Keep what the peer had on the tmpfs next to the other nodes' folders.
                let _ = Command::new("cp")
                    .arg("-a")
                    .arg(mount.join("."))
                    .arg(mount.with_file_name("data-from-tmpfs"))
                    .status();
            }
            let mut unmounted = false;
            for _ in 0..20 {
                if Command::new("umount")
                    .arg(&mount)
                    .status()
                    .is_ok_and(|s| s.success())
                {
                    unmounted = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            if !unmounted {
                // Still busy: detach it now, the kernel frees it when the last user is gone.
                let _ = Command::new("umount").arg("-l").arg(&mount).status();
            }
        }
        if failed {
            self.print_logs();
            eprintln!("[faults] folder kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Unmounts the tmpfs of an earlier campaign whose test process is gone without having
/// unmounted it (killed by a test runner's timeout before its cleanup could run).
fn unmount_stale_tmpfs() {
    let prefix = std::env::temp_dir().join("gridledger-faults-");
    let prefix = prefix.to_str().expect("a UTF-8 temporary folder");
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return;
    };
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some("tmpfs"), Some(point)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some(pid) = point
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('/').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("[faults] unmounting {point}, left by an earlier campaign");
            let _ = Command::new("umount").arg("-l").arg(point).status();
        }
    }
}

/// `GET /healthz` of the operations endpoint at `port`: the HTTP status and the body.
fn healthz(port: u16) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    Some((status, body))
}

/// Writes a filler file in `dir` until the file system is full; returns the bytes written.
fn fill(dir: &Path) -> u64 {
    let mut file = std::fs::File::create(dir.join("filler")).expect("create the filler");
    let chunk = vec![0xa5u8; FILL_CHUNK];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => panic!("the tmpfs took no more bytes without reporting it full"),
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(ENOSPC) => break,
            Err(e) => panic!("filling the tmpfs failed with {e}, not ENOSPC"),
        }
    }
    // What is left is less than a chunk: fill it byte-exactly.
    let mut small = vec![0u8; 4096];
    while !small.is_empty() {
        match file.write(&small) {
            Ok(n) => written += n as u64,
            Err(_) => small.truncate(small.len() / 2),
        }
    }
    written
}

/// Tears the last commit of the redb file at `path` (its writer killed): zeroes the second
/// half of the primary commit slot, the half holding the slot's checksum. Returns the slot.
fn tear_last_commit(path: &Path) -> usize {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut header = [0u8; 320];
    file.read_exact_at(&mut header, 0)
        .expect("read the redb header");
    assert_eq!(
        &header[..4],
        b"redb",
        "{} is not a redb file",
        path.display()
    );
    // The god byte: bit 0 the primary slot, bit 1 "recovery required" (set while a writer has
    // the file open, so a killed writer leaves it set).
    let god = header[9];
    assert!(
        god & 2 != 0,
        "{}: a killed writer should leave recovery required",
        path.display()
    );
    let slot = usize::from(god & 1);
    let offset = 64 + 128 * slot as u64;
    file.write_all_at(&[0u8; 64], offset + 64)
        .expect("tear the commit slot");
    file.sync_all().expect("sync the torn file");
    slot
}

// ---------------------------------------------------------------------------------------------
// The load.
// ---------------------------------------------------------------------------------------------

/// What the client saw of one submitted transaction.
#[derive(Debug, Clone)]
enum Outcome {
    /// Committed VALID in this block.
    Valid(u64),
    /// Committed with this validation code.
    Invalid(i32),
    /// The client could not learn its fate (its peer or orderer failed on the way).
    Unknown(String),
}

/// Every transaction submitted, and how many proposals were refused before submission.
#[derive(Default)]
struct Books {
    records: Mutex<Vec<(String, &'static str, Outcome)>>,
    refused: AtomicU64,
}

impl Books {
    fn records(&self) -> Vec<(String, &'static str, Outcome)> {
        self.records.lock().expect("the books").clone()
    }
}

/// Endorses and submits `function(args)` through `contract`, records the outcome, and
/// returns it (`None`: refused before submission). A commit status lost with the client's
/// peer is asked of the other peers.
async fn submit(
    contract: &Contract,
    function: &'static str,
    args: &[&str],
    others: &[Gateway],
    books: &Books,
) -> Option<Outcome> {
    let endorsed = match contract.proposal(function, args) {
        Ok(p) => p.endorse().await,
        Err(e) => Err(e),
    };
    let Ok(tx) = endorsed else {
        books.refused.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let tx_id = tx.tx_id().to_owned();
    let outcome = match tx.submit().await {
        Err(e) => Outcome::Unknown(format!("submit: {e}")),
        Ok(commit) => match commit.status().await {
            Ok(s) if s.is_valid() => Outcome::Valid(s.block_number),
            Ok(s) => Outcome::Invalid(s.code),
            Err(e) => {
                let mut outcome = Outcome::Unknown(format!("commit status: {e}"));
                for g in others {
                    if let Ok(Ok(s)) =
                        tokio::time::timeout(CALL_TIMEOUT, commit_status(g, CHANNEL, &tx_id)).await
                    {
                        outcome = if s.is_valid() {
                            Outcome::Valid(s.block_number)
                        } else {
                            Outcome::Invalid(s.code)
                        };
                        break;
                    }
                }
                outcome
            }
        },
    };
    books
        .records
        .lock()
        .expect("the books")
        .push((tx_id, function, outcome.clone()));
    Some(outcome)
}

/// Submits until VALID (setup, before any fault).
async fn setup_commit(contract: &Contract, function: &'static str, args: &[&str], books: &Books) {
    for _ in 0..40 {
        if let Some(Outcome::Valid(_)) = submit(contract, function, args, &[], books).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("setup: {function} {args:?} did not commit");
}

/// The delivery periods the ring trades in: 15-minute periods starting two hours after the
/// campaign's end, so none reaches gate closure while it runs.
fn periods(length: Duration) -> Vec<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let first = (now + length.as_secs() + 7200) / 900 * 900 + 900;
    (0..PERIODS)
        .map(|j| (first + j * 900).to_string())
        .collect()
}

fn offer_id(seller: usize, period: usize) -> String {
    format!("fo-{seller}-{period}")
}

// ---------------------------------------------------------------------------------------------
// Reading the peers.
// ---------------------------------------------------------------------------------------------

async fn chain_info(gateway: &Gateway) -> Option<common::BlockchainInfo> {
    let bytes = gateway
        .network(CHANNEL)
        .contract("qscc")
        .evaluate("GetChainInfo", &[CHANNEL])
        .await
        .ok()?;
    common::BlockchainInfo::decode(bytes.as_slice()).ok()
}

async fn block_bytes(gateway: &Gateway, peer: &str, number: u64) -> Vec<u8> {
    gateway
        .network(CHANNEL)
        .contract("qscc")
        .evaluate("GetBlockByNumber", &[CHANNEL, &number.to_string()])
        .await
        .unwrap_or_else(|e| panic!("{peer}: qscc GetBlockByNumber {number}: {e}"))
}

/// Every peer's tip block hash, recorded about once a second by a task per peer: no block a
/// peer ever served may change.
#[derive(Default)]
struct Seen {
    /// (peer, block number) → header hash.
    hashes: Mutex<BTreeMap<(String, u64), Vec<u8>>>,
}

/// Waits until the three peers report the same height twice in a row; returns it.
async fn converge(gateways: &[Gateway]) -> u64 {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let mut last = None;
    loop {
        let mut heights = Vec::new();
        for g in gateways {
            heights.push(chain_info(g).await.map(|i| i.height));
        }
        let agreed = heights
            .iter()
            .all(|h| h.is_some() && *h == heights[0])
            .then(|| heights[0])
            .flatten();
        if let Some(height) = agreed.filter(|_| agreed == last) {
            return height;
        }
        last = agreed;
        assert!(
            Instant::now() < deadline,
            "the peers did not converge within {CONVERGE_TIMEOUT:?}: heights {heights:?}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The offline checks of the stopped network's ledgers: `gridledger ledger verify --dir DIR`
/// over every node under the network folder (hash chains, data hashes, orderer signatures,
/// state recomputed from the blocks against the stored state), then `gridledger ledger
/// compare` of every two peers (blocks, validation codes, state); returns what it checked.
fn offline_ledger_checks(dir: &Path) -> Vec<String> {
    let mut checked = Vec::new();
    let dir_arg = dir.to_str().expect("a UTF-8 path");
    let out = gridledger(&["ledger", "verify", "--dir", dir_arg]);
    assert!(
        out.status.success(),
        "gridledger ledger verify --dir {dir_arg} failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    checked.push("ledger verify --dir (every node)".to_owned());
    for (i, (a, _)) in PEERS.iter().enumerate() {
        for (b, _) in &PEERS[i + 1..] {
            let path = |p: &str| {
                dir.join("nodes")
                    .join(p)
                    .join("data")
                    .to_str()
                    .expect("a UTF-8 path")
                    .to_owned()
            };
            let (pa, pb) = (path(a), path(b));
            let out = gridledger(&["ledger", "compare", &pa, &pb]);
            assert!(
                out.status.success(),
                "gridledger ledger compare {a} {b} failed:\n{}{}",
                stdout(&out),
                stderr(&out)
            );
            checked.push(format!("ledger compare {a} {b}"));
        }
    }
    checked
}

// ---------------------------------------------------------------------------------------------
// The campaign.
// ---------------------------------------------------------------------------------------------

/// The seed and length from the environment, and a panic hook that prints how to replay.
fn campaign_parameters() -> (u64, Duration) {
    let seconds = match std::env::var(SECONDS_VAR) {
        Ok(v) => v
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("{SECONDS_VAR}={v:?} is not a whole number of seconds")),
        Err(_) => DEFAULT_SECONDS,
    };
    let seed = match std::env::var(SEED_VAR) {
        Ok(v) => v
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("{SEED_VAR}={v:?} is not a whole number")),
        Err(_) => {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64
                ^ u64::from(std::process::id())
        }
    };
    let replay =
        format!("[faults] seed {seed}; replay with {SEED_VAR}={seed} {SECONDS_VAR}={seconds}");
    eprintln!("{replay}");
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        eprintln!("{replay}");
    }));
    (seed, Duration::from_secs(seconds))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_network_under_load_survives_random_faults_and_loses_nothing_committed() {
    let (seed, length) = campaign_parameters();
    let (faults, disk_peer) = schedule(seed, length);
    eprintln!(
        "[faults] {} faults planned over {length:?}; {disk_peer} has the small disk",
        faults.len()
    );
    for f in &faults {
        eprintln!(
            "[faults]   t={:>5}s {:<26} {:<16} hold {:?}",
            f.at.as_secs(),
            f.kind.name(),
            f.target,
            f.hold
        );
    }
    let (mut net, network) = tokio::task::block_in_place(|| Campaign::start(disk_peer));
    let dir = net.dir.clone();
    let gw = |msp: &'static str, user: &'static str| {
        let (dir, network) = (dir.clone(), network.clone());
        async move {
            gateway_as(&dir, &network, msp, user)
                .await
                .with_timeout(CALL_TIMEOUT)
        }
    };
    // One User1 gateway per peer (queries, commit statuses), the ring's prosumers, the
    // market organizations' admins.
    let mut users = Vec::new();
    for (_, msp) in PEERS {
        users.push(gw(msp, "User1").await);
    }
    let mut ring = Vec::new();
    for (msp, user, _) in RING {
        ring.push(gw(msp, user).await);
    }
    let admin_r = gw("RetailerMSP", "Admin").await;
    let admin_c = gw("CommunityMSP", "Admin").await;
    let energy = |g: &Gateway| g.network(CHANNEL).contract(ENERGY);
    let books = Arc::new(Books::default());
    let periods = periods(length);

    // Setup: payment for every buyer, offers for every seller and period.
    for (i, (msp, _, account)) in RING.iter().enumerate() {
        let admin = if *msp == "RetailerMSP" {
            &admin_r
        } else {
            &admin_c
        };
        setup_commit(
            &energy(admin),
            "IssuePayment",
            &[account, SETUP_CENTS],
            &books,
        )
        .await;
        for (j, period) in periods.iter().enumerate() {
            setup_commit(
                &energy(&ring[i]),
                "PostOffer",
                &[&offer_id(i, j), period, OFFER_WH, PRICE],
                &books,
            )
            .await;
        }
    }
    eprintln!("[faults] setup committed; load and faults start");

    // The load: each ring member buys from the next; an admin issues payment and sellers
    // post offers now and then.
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, buyer) in ring.iter().enumerate() {
        let contract = energy(buyer);
        let (stop, books, periods) = (stop.clone(), books.clone(), periods.clone());
        let others = users.clone();
        let seller = (i + 1) % RING.len();
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let j = n % periods.len();
                let (id, offer) = (format!("ft-{i}-{n}"), offer_id(seller, j));
                let args = [id.as_str(), offer.as_str(), periods[j].as_str(), TRADE_WH];
                if !matches!(
                    submit(&contract, "AcceptOffer", &args, &others, &books).await,
                    Some(Outcome::Valid(_))
                ) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }));
    }
    {
        let admins = [energy(&admin_r), energy(&admin_c)];
        let sellers: Vec<Contract> = ring.iter().map(energy).collect();
        let (stop, books, periods) = (stop.clone(), books.clone(), periods.clone());
        let others = users.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let k = n % RING.len();
                let admin = &admins[usize::from(RING[k].0 != "RetailerMSP")];
                submit(admin, "IssuePayment", &[RING[k].2, "100"], &others, &books).await;
                let id = format!("fx-{n}");
                let period = &periods[n % periods.len()];
                let args = [id.as_str(), period.as_str(), "1000", PRICE];
                submit(&sellers[k], "PostOffer", &args, &others, &books).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    // The monitor: every peer's tip hash, about once a second.
    let seen = Arc::new(Seen::default());
    for (g, (peer, _)) in users.iter().zip(PEERS) {
        let (g, stop, seen) = (g.clone(), stop.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if let Some(info) = chain_info(&g).await {
                    if let Some(tip) = info.height.checked_sub(1) {
                        seen.hashes
                            .lock()
                            .expect("seen hashes")
                            .insert((peer.to_owned(), tip), info.current_block_hash);
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }

    // The faults, one at a time, each healed before the next.
    let started = Instant::now();
    let mut injected: BTreeMap<Kind, u64> = BTreeMap::new();
    let mut torn_blocks_lost = 0u64;
    for (index, fault) in faults.iter().enumerate() {
        let due = started + fault.at;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let target = fault.target;
        eprintln!(
            "[faults] #{index} at t={:.1}s (planned {}s): {} of {target}, hold {:?}",
            started.elapsed().as_secs_f64(),
            fault.at.as_secs(),
            fault.kind.name(),
            fault.hold
        );
        match fault.kind {
            Kind::Kill => {
                net.kill_node(target);
                tokio::time::sleep(fault.hold).await;
                tokio::task::block_in_place(|| net.start_node(target));
            }
            Kind::Freeze => {
                signal(net.pid(target), "-STOP");
                tokio::time::sleep(fault.hold).await;
                signal(net.pid(target), "-CONT");
            }
            Kind::DiskFull => {
                let mount = net.mount.clone().expect("the tmpfs is mounted");
                let port = net.addr(target).port() + OPERATIONS_PORT_OFFSET;
                let bytes = fill(&mount);
                let filled = Instant::now();
                // The peer must notice (its next block write fails) and say so.
                let reported = loop {
                    assert!(
                        net.alive(target),
                        "{target} exited while its disk was full (seed {seed})"
                    );
                    if let Some((503, body)) = tokio::task::block_in_place(|| healthz(port)) {
                        if body.contains("ledger:") {
                            break body;
                        }
                    }
                    assert!(
                        filled.elapsed() < HEALTH_TIMEOUT,
                        "{target}'s /healthz did not report its full disk within \
                         {HEALTH_TIMEOUT:?} (seed {seed})"
                    );
                    tokio::time::sleep(POLL).await;
                };
                eprintln!(
                    "[faults]   {bytes} filler bytes; /healthz reported it after {:.1}s: {reported}",
                    filled.elapsed().as_secs_f64()
                );
                tokio::time::sleep(fault.hold).await;
                assert!(
                    net.alive(target),
                    "{target} exited while its disk was full (seed {seed})"
                );
                std::fs::remove_file(mount.join("filler")).expect("delete the filler");
                let freed = Instant::now();
                loop {
                    if let Some((200, _)) = tokio::task::block_in_place(|| healthz(port)) {
                        break;
                    }
                    assert!(
                        freed.elapsed() < HEALTH_TIMEOUT,
                        "{target} did not report healthy within {HEALTH_TIMEOUT:?} of its disk \
                         being freed (seed {seed})"
                    );
                    tokio::time::sleep(POLL).await;
                }
                eprintln!(
                    "[faults]   healthy again {:.1}s after the disk was freed",
                    freed.elapsed().as_secs_f64()
                );
                // What happened is in the peer's log, for whoever looks after it.
                for line in [
                    "ledger write failed",
                    "ledger file opened again after a failed write",
                ] {
                    assert!(
                        net.logged(target, line),
                        "{target}'s log has no line \"{line}\" after its full disk (seed {seed})"
                    );
                }
            }
            Kind::TornWrite => {
                net.kill_node(target);
                let file = net
                    .data_dir(target)
                    .join("channels")
                    .join(CHANNEL)
                    .join(gridledger_ledger::LEDGER_FILE);
                // The heights before and after the tear, read from copies so that the peer
                // itself does the recovery of the original.
                let height_of_copy = |tag: &str| {
                    let scratch = dir.join(format!("torn-{index}-{tag}"));
                    std::fs::create_dir_all(&scratch).expect("create a scratch folder");
                    std::fs::copy(&file, scratch.join(gridledger_ledger::LEDGER_FILE))
                        .expect("copy the ledger file");
                    let height = gridledger_ledger::Ledger::open(&scratch, CHANNEL)
                        .unwrap_or_else(|e| {
                            panic!(
                                "{target}'s ledger ({tag} the torn write) does not open: {e} \
                                 (seed {seed})"
                            )
                        })
                        .height();
                    let _ = std::fs::remove_dir_all(&scratch);
                    height
                };
                let before = height_of_copy("before");
                let slot = tear_last_commit(&file);
                let after = height_of_copy("after");
                assert!(
                    after + 1 >= before && after <= before,
                    "{target}'s ledger went from height {before} to {after} through a torn last \
                     write: more than the torn block changed (seed {seed})"
                );
                torn_blocks_lost += before - after;
                eprintln!(
                    "[faults]   tore commit slot {slot}: the ledger at height {before} opens at \
                     {after}"
                );
                tokio::time::sleep(fault.hold).await;
                tokio::task::block_in_place(|| net.start_node(target));
            }
        }
        *injected.entry(fault.kind).or_default() += 1;
    }
    if let Some(rest) = (started + length).checked_duration_since(Instant::now()) {
        tokio::time::sleep(rest).await;
    }
    let campaign_time = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(90), task).await;
    }
    for (name, _) in NODES {
        assert!(
            net.alive(name),
            "{name} is not running at the end of the campaign (seed {seed})"
        );
    }

    // The checks.
    let height = converge(&users).await;
    eprintln!("[faults] the peers converged at height {height}");
    let mut checks = Vec::new();
    // Identical blocks (validation codes included) on every peer.
    // Each peer's chain read by a task of its own, the three at once.
    let mut readers = Vec::new();
    for (g, (peer, _)) in users.iter().zip(PEERS) {
        let g = g.clone();
        readers.push(tokio::spawn(async move {
            let mut chain = Vec::new();
            for number in 0..height {
                chain.push(block_bytes(&g, peer, number).await);
            }
            chain
        }));
    }
    let mut chains = Vec::new();
    for reader in readers {
        chains.push(reader.await.expect("a chain reader"));
    }
    for (chain, (peer, _)) in chains.iter().zip(PEERS).skip(1) {
        for (number, (a, b)) in chains[0].iter().zip(chain).enumerate() {
            assert!(
                a == b,
                "block {number} differs between {} and {peer} (seed {seed})",
                PEERS[0].0
            );
        }
    }
    let blocks: Vec<common::Block> = chains[0]
        .iter()
        .map(|bytes| common::Block::decode(bytes.as_slice()).expect("a stored block decodes"))
        .collect();
    drop(chains);
    checks.push(format!(
        "{height} blocks byte-identical on all 3 peers (validation codes included)"
    ));
    // No block a peer served during the run changed.
    let hashes = seen.hashes.lock().expect("seen hashes").clone();
    for ((peer, number), hash) in &hashes {
        let block = &blocks[usize::try_from(*number).expect("a block number")];
        let header = block.header.as_ref().expect("a block header");
        assert!(
            gridledger_proto::block_header_hash(header).as_slice() == hash.as_slice(),
            "block {number} as {peer} served it during the campaign differs from block \
             {number} now (seed {seed})"
        );
    }
    checks.push(format!(
        "{} block hashes seen during the run unchanged",
        hashes.len()
    ));
    // Every transaction's code, from the blocks.
    let mut codes: BTreeMap<String, (u64, u8)> = BTreeMap::new();
    for block in &blocks {
        let number = block.header.as_ref().map_or(0, |h| h.number);
        let filter = transactions_filter(block);
        for (i, envelope) in block.data.iter().flat_map(|d| d.data.iter()).enumerate() {
            let tx_id = common::Envelope::decode(envelope.as_slice())
                .ok()
                .and_then(|e| common::Payload::decode(e.payload.as_slice()).ok())
                .and_then(|p| p.header)
                .and_then(|h| common::ChannelHeader::decode(h.channel_header.as_slice()).ok())
                .map(|c| c.tx_id)
                .unwrap_or_default();
            if !tx_id.is_empty() {
                let code = filter.get(i).copied().unwrap_or(u8::MAX);
                codes.entry(tx_id).or_insert((number, code));
            }
        }
    }
    let records = books.records();
    let (mut valid, mut invalid, mut unknown) = (0u64, 0u64, 0u64);
    let mut invalid_codes: BTreeMap<String, u64> = BTreeMap::new();
    let (mut unknown_valid, mut unknown_invalid) = (0u64, 0u64);
    let valid_code = protos::TxValidationCode::Valid as u8;
    for (tx_id, function, outcome) in &records {
        let found = codes.get(tx_id).copied();
        match outcome {
            Outcome::Valid(block) => {
                valid += 1;
                assert_eq!(
                    found,
                    Some((*block, valid_code)),
                    "{function} {tx_id} was reported VALID in block {block}; the peers hold \
                     (block, code) {found:?} (seed {seed})"
                );
            }
            Outcome::Invalid(code) => {
                invalid += 1;
                let name = protos::TxValidationCode::try_from(*code)
                    .map_or_else(|_| code.to_string(), |c| c.as_str_name().to_owned());
                *invalid_codes.entry(name).or_default() += 1;
                assert_eq!(
                    found.map(|(_, c)| i32::from(c)),
                    Some(*code),
                    "{function} {tx_id} was reported with code {code}; the peers hold {found:?} \
                     (seed {seed})"
                );
            }
            Outcome::Unknown(_) => {
                unknown += 1;
                match found {
                    Some((_, c)) if c == valid_code => unknown_valid += 1,
                    Some(_) => unknown_invalid += 1,
                    None => {}
                }
            }
        }
    }
    assert!(valid > 0, "no transaction committed VALID (seed {seed})");
    checks.push(format!(
        "{valid} VALID transactions VALID in the same block on all 3 peers; {invalid} invalid \
         ones with the same code"
    ));
    // Conservation after every block.
    let mut replay = Replay::default();
    for block in &blocks {
        replay.apply(block);
    }
    let state = replay.state;
    checks.push(format!(
        "energy supply and payment conserved at all {height} heights"
    ));
    // Every peer's world state agrees with the blocks for the ring's balances.
    for (_, _, account) in RING {
        let from_blocks = state
            .iter()
            .find(|(k, _)| k.starts_with("balance/") && k.ends_with(account))
            .map(|(_, v)| json(v));
        for (g, (peer, _)) in users.iter().zip(PEERS) {
            let bytes = energy(g)
                .evaluate("Balance", &[account])
                .await
                .unwrap_or_else(|e| panic!("{peer}: Balance {account}: {e}"));
            let on_peer = json(&bytes);
            if let Some(expected) = &from_blocks {
                for field in ["payment_cents", "etokens_wh"] {
                    assert_eq!(
                        on_peer[field], expected[field],
                        "{peer}'s {field} of {account} differs from the blocks' (seed {seed})"
                    );
                }
            }
        }
    }
    checks.push("the ring's balances on every peer equal the blocks' replay".to_owned());
    drop(users);
    drop(ring);
    drop((admin_r, admin_c));
    tokio::task::block_in_place(|| net.stop_all());
    checks.extend(offline_ledger_checks(&net.dir));

    eprintln!("[faults] ===== summary =====");
    eprintln!(
        "[faults] seed {seed}, campaign {:.0}s",
        campaign_time.as_secs_f64()
    );
    for kind in Kind::ALL {
        eprintln!(
            "[faults] injected {:<26} {}",
            kind.name(),
            injected.get(&kind).copied().unwrap_or(0)
        );
    }
    eprintln!(
        "[faults] torn writes rolled back {torn_blocks_lost} block(s) in all, each fetched again"
    );
    eprintln!(
        "[faults] transactions submitted {}: VALID {valid}, invalid {invalid}, unknown {unknown} \
         (of which found VALID {unknown_valid}, invalid {unknown_invalid}, never ordered {}); \
         {} proposals refused before submission",
        records.len(),
        unknown - unknown_valid - unknown_invalid,
        books.refused.load(Ordering::Relaxed)
    );
    eprintln!("[faults] invalid by code: {invalid_codes:?}");
    for (tx_id, function, outcome) in records
        .iter()
        .filter(|(_, _, o)| matches!(o, Outcome::Unknown(_)))
        .take(3)
    {
        if let Outcome::Unknown(why) = outcome {
            let why: String = why.chars().take(240).collect();
            eprintln!("[faults] e.g. unknown {function} {tx_id}: {why}…");
        }
    }
    for check in &checks {
        eprintln!("[faults] passed: {check}");
    }
}
