//! `gridledger demo [--dir DIR]`: one simulated day of the energy market on the network that
//! `gridledger up --dir DIR` runs (started here when none is running).
//!
//! The day is a future UTC day far enough ahead that the five days before it (the demand-
//! response baseline's history) also lie after the network's certificates were issued: every
//! transaction carries its simulated time as its timestamp (the SDK's `Contract::at`), which is
//! what the chaincodes' time rules read — trading closes before each period, readings and
//! attestations come after it. Prosumers (the first N of each market organization) have a
//! household load and a PV roof of their own size, from one summer day's 15-minute profiles
//! (grid/profiles/prosumer-summer-day.csv), with deterministic deviations between what they
//! forecast when trading and what their meters then measure.
//!
//! Stages, each run with many transactions in flight (retried after MVCC conflicts and while
//! endorsing peers are at different heights): payment issued by the organizations' admins and
//! the DSO's treasury funded; a demand-response request published for the evening peak, a few
//! prosumers joining an aggregator, and capacity committed by two prosumers for their own POD
//! and by the aggregator for its members' pool (each POD counted once); both sides of the book —
//! bids for forecast deficits (payment escrowed) filled by sellers from half their forecast
//! surplus, offers of the rest, the other deficits bought from the cheapest offers, each trade
//! certified by the DSO's power flow, some refused with the violated limit, and the bids still
//! open at gate closure cancelled and refunded; meter readings on the bilateral channels; the
//! DSO's attestations against them; settlement and burning; guarantees of origin for whole kWh
//! of export, some transferred to the organization's portfolio and cancelled for its fuel-mix
//! disclosure; the demand response attested against its baseline and paid. Then payment
//! conservation over what the run moved (issued = balances + escrow of unsettled trades and
//! open bids), a summary, and an HTML report (report.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use gridledger_identity::SigningIdentity;
use gridledger_proto::protos::TxValidationCode;
use gridledger_sdk::{Contract, Gateway};
use serde_json::Value;

use crate::report::{DayReport, PeriodSummary, WorstPeriod};

/// One summer day of a household prosumer: load and 5 kWp PV, kW per 15-minute slot (UTC).
const PROFILE: &str = include_str!("../../grid/profiles/prosumer-summer-day.csv");
/// The PV size the profile's output is for, kWp.
const PROFILE_KWP: f64 = 5.0;
const MARKET: &str = "market";
const PERIOD: i64 = 900;
const DAY: i64 = 86_400;
/// The evening period the DSO asks flexibility for (18:00 UTC).
const DR_SLOT: usize = 72;
/// The days of history the demand-response baseline reads.
const DR_HISTORY_DAYS: i64 = 5;
/// How often one transaction is endorsed again before the demo gives up on it.
const ATTEMPTS: usize = 30;
/// How long `up` may take to serve.
const UP_TIMEOUT: Duration = Duration::from_secs(240);

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The network's folder (as given to `gridledger up --dir`).
    #[arg(long, default_value = "network")]
    pub dir: PathBuf,
    /// The base port `gridledger up` is started with when no network is running.
    #[arg(long, default_value_t = 7050)]
    pub base_port: u16,
    /// Prosumers of each market organization taking part (at most the 32 `up` creates).
    #[arg(long, default_value_t = 8)]
    pub prosumers: usize,
    /// Periods simulated (96 = the whole day; fewer for a quick look).
    #[arg(long, default_value_t = 96)]
    pub periods: usize,
    /// The first period simulated, counted from midnight UTC (0–95).
    #[arg(long, default_value_t = 0)]
    pub from_period: usize,
    /// Transactions in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Where the HTML report is written (default DIR/demo-report.html; its plots also go to
    /// the same path with the extension .svg).
    #[arg(long)]
    pub report: Option<PathBuf>,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=32).contains(&args.prosumers),
        "--prosumers must be 1 to 32 (up creates 32 per organization)"
    );
    anyhow::ensure!(
        (1..=96).contains(&args.periods) && args.from_period + args.periods <= 96,
        "--from-period and --periods must stay within the day's 96 periods"
    );
    anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("resolving {}", args.dir.display()))?;
    let mut started = ensure_network(&dir, args.base_port)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = runtime.block_on(simulate_day(&dir, &args));
    if let Some(up) = started.as_mut() {
        println!("[demo] stopping the network the demo started");
        let _ = Command::new("kill")
            .args(["-TERM", &up.id().to_string()])
            .status();
        let _ = up.wait();
    }
    outcome
}

/// The running network under DIR, or a `gridledger up` started for the demo (returned, to be
/// stopped at the end).
fn ensure_network(dir: &Path, base_port: u16) -> anyhow::Result<Option<Child>> {
    let network_json = dir.join("network.json");
    if let Ok(bytes) = std::fs::read(&network_json) {
        let network: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a network description", network_json.display()))?;
        let endpoints: Vec<String> = network["organizations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["peers"][0]["endpoint"].as_str().map(str::to_owned))
            .collect();
        let serving = !endpoints.is_empty()
            && endpoints.iter().all(|e| {
                e.parse().is_ok_and(|addr| {
                    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
                })
            });
        if serving {
            println!("[demo] using the network running under {}", dir.display());
            return Ok(None);
        }
    }
    println!(
        "[demo] no network is running under {}: starting `gridledger up --dir {} --base-port {base_port}`",
        dir.display(),
        dir.display()
    );
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let log_path = logs.join("demo-up.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let _ = std::fs::remove_file(&network_json);
    let exe = std::env::current_exe().context("locating the gridledger binary")?;
    let mut up = Command::new(exe)
        .args(["up", "--dir"])
        .arg(dir)
        .args(["--base-port", &base_port.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("duplicating a file handle")?)
        .stderr(log)
        .spawn()
        .context("starting gridledger up")?;
    let start = Instant::now();
    while !network_json.exists() {
        if let Some(status) = up.try_wait().context("checking gridledger up")? {
            bail!(
                "gridledger up exited ({status}) before the network served; see {}",
                log_path.display()
            );
        }
        if start.elapsed() > UP_TIMEOUT {
            let _ = up.kill();
            bail!(
                "gridledger up did not serve within {UP_TIMEOUT:?}; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "[demo] network serving after {:.0} s (log: {})",
        start.elapsed().as_secs_f64(),
        log_path.display()
    );
    Ok(Some(up))
}

// ---------------------------------------------------------------------------------------------
// The network as network.json describes it

struct Network {
    dir: PathBuf,
    json: Value,
}

impl Network {
    fn load(dir: &Path) -> anyhow::Result<Network> {
        let path = dir.join("network.json");
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let json = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a network description", path.display()))?;
        Ok(Network {
            dir: dir.to_path_buf(),
            json,
        })
    }

    /// A Gateway to `msp_id`'s peer signing as its identity `user`.
    async fn gateway(&self, msp_id: &str, user: &str) -> anyhow::Result<Gateway> {
        let org = self.json["organizations"]
            .as_array()
            .and_then(|orgs| orgs.iter().find(|o| o["mspId"] == msp_id))
            .with_context(|| format!("network.json has no organization {msp_id}"))?;
        let peer = &org["peers"][0];
        let field = |name: &str| {
            peer[name]
                .as_str()
                .with_context(|| format!("network.json: {msp_id}'s peer has no {name}"))
        };
        let base = self
            .dir
            .join(format!("crypto/organizations/{msp_id}/users/{user}/msp"));
        let signer = SigningIdentity::load(
            msp_id,
            &base.join("signcerts/cert.pem"),
            &base.join("keystore/key.pem"),
        )
        .with_context(|| format!("loading {user} of {msp_id}"))?;
        let tls_ca = std::fs::read(self.dir.join(field("tlsCaCert")?))
            .with_context(|| format!("reading {msp_id}'s TLS CA"))?;
        Ok(
            Gateway::connect(field("endpoint")?, &tls_ca, field("serverName")?, signer)
                .await
                .with_context(|| format!("connecting {user} of {msp_id}"))?
                .with_timeout(Duration::from_secs(60)),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Prosumers and their day

/// One household slot of the profile.
#[derive(Clone, Copy)]
struct Slot {
    load_kw: f64,
    pv_kw: f64,
}

fn profile() -> anyhow::Result<Vec<Slot>> {
    let mut slots = Vec::with_capacity(96);
    for line in PROFILE
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("minute"))
    {
        let cols: Vec<&str> = line.split(',').collect();
        anyhow::ensure!(
            cols.len() == 3,
            "profile line {line:?} is not minute,load,pv"
        );
        slots.push(Slot {
            load_kw: cols[1].parse().context("profile load")?,
            pv_kw: cols[2].parse().context("profile pv")?,
        });
    }
    anyhow::ensure!(
        slots.len() == 96,
        "the profile has {} slots, not 96",
        slots.len()
    );
    Ok(slots)
}

/// A prosumer of the demo: who, where it connects, its size.
struct Prosumer {
    msp: &'static str,
    letter: char,
    n: usize,
    gateway: Gateway,
    meter: Gateway,
    /// PV size, kWp.
    kwp: f64,
    /// Households behind the meter (the load is the profile's times this).
    households: f64,
}

impl Prosumer {
    fn account(&self) -> String {
        format!("{}:{}", self.msp, self.pod())
    }

    fn pod(&self) -> String {
        format!("POD-{}{:03}", self.letter, self.n)
    }

    fn channel(&self) -> &'static str {
        if self.letter == 'R' {
            "meter-retailer"
        } else {
            "meter-community"
        }
    }

    /// Forecast (when trading) and measured net import of a slot, kW (negative: export).
    fn net_kw(&self, slots: &[Slot], slot: usize, measured: bool, seed: usize) -> f64 {
        net_kw(self.kwp, self.households, slots, slot, measured, seed)
    }
}

/// Forecast (when trading) or measured net import, kW, of a site with `kwp` of PV and
/// `households` behind its meter, in `slot`; `seed` varies the measured deviations.
fn net_kw(
    kwp: f64,
    households: f64,
    slots: &[Slot],
    slot: usize,
    measured: bool,
    seed: usize,
) -> f64 {
    let s = slots[slot % slots.len()];
    let (load_dev, sky) = if measured {
        let x = (slot * 7 + seed * 13) as f64;
        (
            1.0 + 0.12 * (x * 0.37).sin(),
            0.78 + 0.12 * (x * 0.53).cos(),
        )
    } else {
        (1.0, 0.85)
    };
    s.load_kw * households * load_dev - s.pv_kw / PROFILE_KWP * kwp * sky
}

/// Sizes by position: big PV roofs and no-PV households alternate so both sellers and buyers
/// exist at noon; the first retailer prosumer (at the far end of the main feeder) is a large
/// consumer without PV.
fn sizes(index: usize) -> (f64, f64) {
    const KWP: [f64; 8] = [0.0, 150.0, 8.0, 60.0, 0.0, 250.0, 12.0, 30.0];
    const HOUSEHOLDS: [f64; 8] = [60.0, 4.0, 6.0, 10.0, 25.0, 8.0, 3.0, 15.0];
    (KWP[index % 8], HOUSEHOLDS[(index * 5 + 3) % 8])
}

fn wh(kw: f64) -> u64 {
    (kw * 250.0).round().max(0.0) as u64
}

fn at(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0))
}

// ---------------------------------------------------------------------------------------------
// Running many transactions

/// One transaction the demo submits.
struct Op {
    contract: Contract,
    args: Vec<String>,
    transient: BTreeMap<String, Vec<u8>>,
    orgs: Vec<String>,
    /// Ops of one lane run one after another (they write the same keys); lanes run in
    /// parallel.
    lane: Option<String>,
}

impl Op {
    fn new(contract: Contract, args: &[&str]) -> Op {
        Op {
            contract,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            transient: BTreeMap::new(),
            orgs: Vec::new(),
            lane: None,
        }
    }

    fn lane(mut self, lane: String) -> Op {
        self.lane = Some(lane);
        self
    }

    fn transient(mut self, key: &str, value: &[u8]) -> Op {
        self.transient.insert(key.to_owned(), value.to_vec());
        self
    }

    fn endorsed_by(mut self, orgs: &[&str]) -> Op {
        self.orgs = orgs.iter().map(|o| (*o).to_owned()).collect();
        self
    }
}

/// What became of one transaction.
#[derive(Debug, Clone)]
enum Outcome {
    /// Committed VALID; the chaincode's response payload.
    Committed(Vec<u8>),
    /// Refused at endorsement (the chaincode or the DSO said no), with the error.
    Refused(String),
    /// Committed invalid, or it kept conflicting.
    Failed(String),
}

/// Counts for the progress line and the tps figure.
struct Progress {
    stage: String,
    total: usize,
    done: AtomicUsize,
    tty: bool,
    last_print: std::sync::Mutex<Instant>,
}

impl Progress {
    fn new(stage: &str, total: usize) -> Arc<Progress> {
        let p = Arc::new(Progress {
            stage: stage.to_owned(),
            total,
            done: AtomicUsize::new(0),
            tty: std::io::stderr().is_terminal(),
            last_print: std::sync::Mutex::new(Instant::now()),
        });
        p.print(true);
        p
    }

    fn step(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.print(false);
    }

    fn print(&self, force: bool) {
        let done = self.done.load(Ordering::Relaxed);
        let finished = done >= self.total;
        {
            let mut last = self
                .last_print
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let every = if self.tty {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(5)
            };
            if !force && !finished && last.elapsed() < every {
                return;
            }
            *last = Instant::now();
        }
        let width = 30;
        let filled = (done * width).checked_div(self.total).unwrap_or(width);
        let bar: String = "#".repeat(filled) + &".".repeat(width - filled.min(width));
        let line = format!("[demo] [{bar}] {done:>5}/{:<5} {}", self.total, self.stage);
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r{line}");
            if finished {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "{line}");
        }
    }
}

/// Runs `ops` with at most `concurrency` lanes in flight (an op without a lane is a lane of
/// its own); outcomes in the order of `ops`.
async fn run_ops(stage: &str, ops: Vec<Op>, concurrency: usize, stats: &Stats) -> Vec<Outcome> {
    let progress = Progress::new(stage, ops.len());
    let count = ops.len();
    let mut lanes: Vec<Vec<(usize, Op)>> = Vec::new();
    let mut lane_of: BTreeMap<String, usize> = BTreeMap::new();
    for (i, op) in ops.into_iter().enumerate() {
        match op.lane.clone() {
            Some(name) => {
                let at = *lane_of.entry(name).or_insert_with(|| {
                    lanes.push(Vec::new());
                    lanes.len() - 1
                });
                lanes[at].push((i, op));
            }
            None => lanes.push(vec![(i, op)]),
        }
    }
    let mut outcomes: Vec<Option<Outcome>> = vec![None; count];
    let mut pending = lanes.into_iter();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        while tasks.len() < concurrency {
            let Some(lane) = pending.next() else { break };
            let progress = progress.clone();
            tasks.spawn(async move {
                let mut done = Vec::with_capacity(lane.len());
                for (i, op) in lane {
                    let outcome = run_op(op).await;
                    progress.step();
                    done.push((i, outcome));
                }
                done
            });
        }
        match tasks.join_next().await {
            Some(Ok(done)) => {
                for (i, outcome) in done {
                    if matches!(outcome, Outcome::Committed(_)) {
                        stats.committed.fetch_add(1, Ordering::Relaxed);
                    }
                    outcomes[i] = Some(outcome);
                }
            }
            Some(Err(e)) => {
                // A task that panicked: its ops are reported failed below.
                eprintln!("[demo] a transaction task failed: {e}");
            }
            None => break,
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Failed("the task did not finish".into())))
        .collect()
}

/// Runs the demo's stages: each waits until every peer has the previous stage's blocks.
struct Runner<'a> {
    concurrency: usize,
    stats: &'a Stats,
    /// A gateway per organization's peer: DSO, retailer, community.
    peers: [&'a Gateway; 3],
}

impl Runner<'_> {
    async fn run(&self, stage: &str, ops: Vec<Op>) -> Vec<Outcome> {
        self.run_lanes(stage, ops).await
    }

    async fn run_lanes(&self, stage: &str, ops: Vec<Op>) -> Vec<Outcome> {
        let [dso, retailer, community] = self.peers;
        for (channel, peers) in [
            (MARKET, vec![dso, retailer, community]),
            ("meter-retailer", vec![dso, retailer]),
            ("meter-community", vec![dso, community]),
        ] {
            if let Err(e) = sync_peers(&peers, channel).await {
                eprintln!("[demo] {e:#}; going on");
            }
        }
        run_ops(stage, ops, self.concurrency, self.stats).await
    }
}

/// Waits until the peers behind `gateways` hold the same number of blocks of `channel`, so the
/// next stage's endorsers all see the last one's transactions.
async fn sync_peers(gateways: &[&Gateway], channel: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut heights = BTreeSet::new();
        for g in gateways {
            let bytes = g
                .network(channel)
                .contract("qscc")
                .evaluate("GetChainInfo", &[channel])
                .await
                .with_context(|| format!("the height of {channel}"))?;
            let info = <gridledger_proto::common::BlockchainInfo as gridledger_proto::prost::Message>::decode(
                bytes.as_slice(),
            )
            .context("qscc GetChainInfo's answer")?;
            heights.insert(info.height);
        }
        if heights.len() == 1 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the peers of {channel} stay at different heights: {heights:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run_op(op: Op) -> Outcome {
    let args: Vec<Vec<u8>> = op.args.iter().map(|a| a.as_bytes().to_vec()).collect();
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        let proposal =
            match op
                .contract
                .proposal_with(args.clone(), op.transient.clone(), op.orgs.clone())
            {
                Ok(p) => p,
                Err(e) => return Outcome::Failed(e.to_string()),
            };
        let tx = match proposal.endorse().await {
            Ok(tx) => tx,
            Err(e) if e.to_string().contains("do not match") => {
                last = e.to_string();
                tokio::time::sleep(Duration::from_millis(150)).await;
                continue;
            }
            Err(e) => return Outcome::Refused(e.to_string()),
        };
        let payload = tx.result().to_vec();
        let status = match tx.submit().await {
            Ok(commit) => commit.status().await,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        match status {
            Ok(s) if s.is_valid() => return Outcome::Committed(payload),
            Ok(s) if s.code == TxValidationCode::MvccReadConflict as i32 => {
                last = "MVCC_READ_CONFLICT".into();
                // Another transaction of the stage took the keys first: let it settle.
                let jitter = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::from(d.subsec_nanos() % 200));
                tokio::time::sleep(Duration::from_millis(100 + jitter)).await;
            }
            Ok(s) => {
                let code = TxValidationCode::try_from(s.code)
                    .map(|c| c.as_str_name().to_owned())
                    .unwrap_or_else(|_| s.code.to_string());
                return Outcome::Failed(format!("committed as {code}"));
            }
            Err(e) => return Outcome::Failed(e.to_string()),
        }
    }
    Outcome::Failed(format!("still failing after {ATTEMPTS} attempts: {last}"))
}

#[derive(Default)]
struct Stats {
    committed: AtomicUsize,
}

/// The violated limit named in a DSO refusal ("undervoltage at bus 17"), or the refusal's
/// last clause.
fn refusal_reason(message: &str) -> String {
    for kind in [
        "undervoltage at bus",
        "overvoltage at bus",
        "overcurrent on line",
    ] {
        if let Some(i) = message.find(kind) {
            let rest = &message[i..];
            let end = rest
                .find(" would be")
                .unwrap_or(rest.len().min(kind.len() + 4));
            return format!("the DSO: {}", &rest[..end]);
        }
    }
    let tail = message
        .rsplit("chaincode response 500, ")
        .next()
        .unwrap_or(message);
    tail.chars().take(120).collect()
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------------------------
// The day

/// A committed or refused trade of the day.
struct TradeRecord {
    period: usize,
    id: String,
    seller: usize,
    buyer: usize,
    energy_wh: u64,
    price: u64,
    /// The bid it sells to (an index into the day's bids); `None` for a trade from an offer.
    bid: Option<usize>,
    committed: bool,
}

/// A bid of the day and what became of it.
struct BidRecord {
    period: usize,
    buyer: usize,
    id: String,
    price: u64,
    /// Energy not bought yet, Wh (what committed trades left of it).
    remaining_wh: u64,
    posted: bool,
    /// Committed trades that sold to it.
    trades: usize,
    cancelled: bool,
}

/// What `PostBid` escrows for `energy_wh` at `price` (and `CancelBid` refunds of what remains):
/// the price rounded up to a cent, as the `energy` chaincode computes it.
fn cost_cents(energy_wh: u64, price_cents_per_kwh: u64) -> u64 {
    (energy_wh * price_cents_per_kwh).div_ceil(1000)
}

/// The payment issued in total and held by a set of accounts, at one moment.
struct PaymentSnapshot {
    issued_cents: u64,
    balances_cents: u64,
}

/// `energy`'s `Supply` (issued over every account) and the sum of `accounts`' balances, read
/// on the DSO's peer.
async fn payment_snapshot(dso: &Gateway, accounts: &[String]) -> anyhow::Result<PaymentSnapshot> {
    let energy = dso.network(MARKET).contract("energy");
    let supply = energy
        .evaluate("Supply", &[])
        .await
        .context("reading the payment supply")?;
    let mut balances_cents = 0;
    for account in accounts {
        let balance = energy
            .evaluate("Balance", &[account])
            .await
            .with_context(|| format!("reading the balance of {account}"))?;
        balances_cents += json(&balance)["payment_cents"].as_u64().unwrap_or(0);
    }
    Ok(PaymentSnapshot {
        issued_cents: json(&supply)["issued_cents"].as_u64().unwrap_or(0),
        balances_cents,
    })
}

/// The reduction the DSO asks for at the demand-response event, kW.
const DR_REDUCTION_KW: u64 = 30;
/// What each prosumer committing for its own POD commits, kW.
const DR_INDIVIDUAL_KW: u64 = 4;
/// The share of its load an aggregator's member sheds at the event.
const DR_MEMBER_CUT: f64 = 0.4;

/// Who answers the demand-response request: up to two prosumers (small PV) for their own POD,
/// and one aggregator for a pool of up to three other prosumers of its organization, who join
/// it first. The two sets are disjoint: a POD counts once per request.
struct DrPlan {
    individuals: Vec<usize>,
    pool: Option<Pool>,
}

/// An aggregator's pool.
struct Pool {
    msp: &'static str,
    letter: char,
    members: Vec<usize>,
    /// Its commitment, kW: a quarter of its members' expected load at the event.
    kw: u64,
}

impl Pool {
    /// The aggregator's account (`gridledger up` names it `AGG-<letter>`).
    fn account(&self) -> String {
        format!("{}:AGG-{}", self.msp, self.letter)
    }
}

impl DrPlan {
    /// The plan for prosumers given as (organization, PV kWp, households).
    fn new(prosumers: &[(&'static str, f64, f64)], slots: &[Slot]) -> DrPlan {
        let individuals: Vec<usize> = (0..prosumers.len())
            .filter(|&i| prosumers[i].1 < 20.0)
            .take(2)
            .collect();
        let free = |msp: &str| -> Vec<usize> {
            (0..prosumers.len())
                .filter(|i| prosumers[*i].0 == msp && !individuals.contains(i))
                .take(3)
                .collect()
        };
        // The organization with more prosumers left (the community's on a tie).
        let (msp, letter, members) = [("RetailerMSP", 'R'), ("CommunityMSP", 'C')]
            .into_iter()
            .map(|(msp, letter)| (msp, letter, free(msp)))
            .max_by_key(|(_, _, members)| members.len())
            .expect("two market organizations");
        let load: f64 = members
            .iter()
            .map(|&i| slots[DR_SLOT].load_kw * prosumers[i].2)
            .sum();
        let open = DR_REDUCTION_KW - DR_INDIVIDUAL_KW * individuals.len() as u64;
        let pool = (!members.is_empty()).then(|| Pool {
            msp,
            letter,
            members,
            kw: ((load / 4.0).floor() as u64).clamp(1, open),
        });
        DrPlan { individuals, pool }
    }

    /// The PODs behind the commitments (prosumer indices).
    fn pods(&self) -> Vec<usize> {
        let members = self.pool.iter().flat_map(|p| p.members.iter().copied());
        self.individuals.iter().copied().chain(members).collect()
    }

    /// How much prosumer `i` cuts its load at the event, kW: the first individual participant
    /// more than it committed, the second half of it; each member of the pool a share of its
    /// load (`households` behind its meter).
    fn cut_kw(&self, i: usize, households: f64, slots: &[Slot]) -> f64 {
        match self.individuals.iter().position(|&d| d == i) {
            Some(0) => 6.0,
            Some(_) => 2.0,
            None if self.pool.as_ref().is_some_and(|p| p.members.contains(&i)) => {
                DR_MEMBER_CUT * slots[DR_SLOT].load_kw * households
            }
            None => 0.0,
        }
    }
}

async fn simulate_day(dir: &Path, args: &DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let network = Network::load(dir)?;
    let slots = profile()?;
    let stats = Stats::default();
    let c = args.concurrency;

    // Identities.
    let mut prosumers = Vec::new();
    for i in 0..args.prosumers {
        for (msp, letter) in [("RetailerMSP", 'R'), ("CommunityMSP", 'C')] {
            let n = i + 1;
            let (kwp, households) = sizes(prosumers.len());
            prosumers.push(Prosumer {
                msp,
                letter,
                n,
                gateway: network
                    .gateway(msp, &format!("Prosumer-{letter}{n:03}"))
                    .await?,
                meter: network
                    .gateway("DSOMSP", &format!("Meter-{letter}{n:03}"))
                    .await?,
                kwp,
                households,
            });
        }
    }
    let dso = network.gateway("DSOMSP", "User1").await?;
    let dso_admin = network.gateway("DSOMSP", "Admin").await?;
    let admins = [
        (
            "RetailerMSP",
            network.gateway("RetailerMSP", "Admin").await?,
        ),
        (
            "CommunityMSP",
            network.gateway("CommunityMSP", "Admin").await?,
        ),
    ];
    let admin_of = |msp: &str| {
        &admins
            .iter()
            .find(|(m, _)| *m == msp)
            .expect("a market org")
            .1
    };
    let runner = Runner {
        concurrency: c,
        stats: &stats,
        peers: [&dso, &admins[0].1, &admins[1].1],
    };
    let run_id = format!(
        "{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
    );

    // The day: a week ahead, later still if an earlier demo already simulated it.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("clock before 1970")?
        .as_secs() as i64;
    let mut day = now / DAY * DAY + 7 * DAY;
    let probe = prosumers[0]
        .meter
        .network(prosumers[0].channel())
        .contract("meter");
    let first_meter = format!("M-{}{:03}", prosumers[0].letter, prosumers[0].n);
    // The first prosumer's meter reports every simulated period (and the demand-response
    // history): a day where it already did was simulated by an earlier demo.
    let first = args.from_period;
    for _ in 0..60 {
        let mut intervals: Vec<i64> = (first..first + args.periods)
            .map(|p| day + p as i64 * PERIOD)
            .collect();
        intervals.push(day - DR_HISTORY_DAYS * DAY + DR_SLOT as i64 * PERIOD);
        let mut taken = false;
        for interval in intervals {
            if probe
                .evaluate("GetRecord", &[&first_meter, &interval.to_string()])
                .await
                .is_ok()
            {
                taken = true;
                break;
            }
        }
        if !taken {
            break;
        }
        day += 7 * DAY;
    }
    let day_name = date_of(day);
    println!(
        "[demo] simulating {day_name} (UTC): {} prosumers of RetailerMSP and CommunityMSP on the IEEE 33-bus feeder, {} periods",
        prosumers.len(),
        args.periods
    );
    let energy = |g: &Gateway, t: i64| g.network(MARKET).contract("energy").at(at(t));
    let setup_time = day - 3600;

    // Payment, and the DSO's treasury for demand-response remuneration. Every account this run
    // moves payment between, and their balances and the issued total before it starts: the
    // conservation check at the end compares against them.
    let mut payment_accounts: Vec<String> = prosumers.iter().map(Prosumer::account).collect();
    payment_accounts.push("DSOMSP:treasury".into());
    for (msp, letter) in [("RetailerMSP", 'R'), ("CommunityMSP", 'C')] {
        payment_accounts.push(format!("{msp}:AGG-{letter}"));
    }
    let before = payment_snapshot(&dso, &payment_accounts).await?;
    let mut ops = Vec::new();
    for p in &prosumers {
        ops.push(Op::new(
            energy(admin_of(p.msp), setup_time),
            &["IssuePayment", &p.account(), "2000000"],
        ));
    }
    ops.push(Op::new(
        energy(&dso_admin, setup_time),
        &["IssuePayment", "DSOMSP:treasury", "100000"],
    ));
    expect_committed("payment", runner.run("payment issued", ops).await)?;

    // Demand response: the DSO asks the evening peak for a reduction. Two prosumers commit
    // for their own POD; a few prosumers of one organization join its aggregator, which
    // commits their pooled capacity (each POD counted once: the pool and the individual
    // participants are disjoint, as flex requires). Every POD behind a commitment has five
    // days of meter history at that slot.
    let sites: Vec<(&'static str, f64, f64)> = prosumers
        .iter()
        .map(|p| (p.msp, p.kwp, p.households))
        .collect();
    let dr = DrPlan::new(&sites, &slots);
    let dr_period = day + DR_SLOT as i64 * PERIOD;
    let dr_id = format!("dr-{run_id}");
    let dr_in_day = (first..first + args.periods).contains(&DR_SLOT);
    let aggregator = match &dr.pool {
        Some(pool) => Some(
            network
                .gateway(pool.msp, &format!("Aggregator-{}", pool.letter))
                .await?,
        ),
        None => None,
    };
    if dr_in_day {
        let flex = |g: &Gateway| g.network(MARKET).contract("flex").at(at(setup_time));
        let mut ops = vec![Op::new(
            flex(&dso),
            &[
                "PublishRequest",
                &dr_id,
                "lateral-25-32",
                &dr_period.to_string(),
                &DR_REDUCTION_KW.to_string(),
                "40",
                "20",
            ],
        )];
        if let Some(pool) = &dr.pool {
            for &i in &pool.members {
                ops.push(Op::new(
                    flex(&prosumers[i].gateway),
                    &["JoinAggregator", &pool.account()],
                ));
            }
        }
        expect_committed(
            "the flexibility request and the aggregator's members",
            runner
                .run("flexibility request and aggregator membership", ops)
                .await,
        )?;
        let mut ops = Vec::new();
        for &i in &dr.individuals {
            ops.push(Op::new(
                flex(&prosumers[i].gateway),
                &[
                    "CommitCapacity",
                    &dr_id,
                    &dr_period.to_string(),
                    &DR_INDIVIDUAL_KW.to_string(),
                ],
            ));
        }
        if let (Some(pool), Some(aggregator)) = (&dr.pool, &aggregator) {
            let members: Vec<String> = pool.members.iter().map(|&i| prosumers[i].pod()).collect();
            ops.push(Op::new(
                flex(aggregator),
                &[
                    "CommitAggregate",
                    &dr_id,
                    &dr_period.to_string(),
                    &pool.kw.to_string(),
                    &members.join(","),
                ],
            ));
        }
        for i in dr.pods() {
            let p = &prosumers[i];
            for d in 1..=DR_HISTORY_DAYS {
                let start = dr_period - d * DAY;
                let net = p.net_kw(&slots, DR_SLOT, true, d as usize);
                ops.push(reading_op(p, start, net, &run_id));
            }
        }
        expect_committed(
            "demand-response commitments and history",
            runner
                .run("flexibility commitments and meter history", ops)
                .await,
        )?;
    }

    // Trading, both sides of the book. In each period every other buyer posts a bid for its
    // forecast deficit, its payment escrowed; sellers fill the highest bids first with up to
    // half their forecast surplus (each trade certified by the DSO's power flow, some refused
    // with the violated limit) and offer what they did not sell; the other buyers, and bidders
    // whose bids were not filled, buy from the cheapest offers. Bids still open at gate closure
    // are cancelled and their escrow refunded.
    let periods: Vec<i64> = (0..args.periods)
        .map(|p| day + (first + p) as i64 * PERIOD)
        .collect();
    let surplus = |p: usize, i: usize| wh(-prosumers[i].net_kw(&slots, first + p, false, i));
    let deficit = |p: usize, i: usize| wh(prosumers[i].net_kw(&slots, first + p, false, i));
    let evening = |p: usize| u64::from((64..88).contains(&(first + p)));
    let mut bids: Vec<BidRecord> = Vec::new();
    let mut ops = Vec::new();
    for (p, &start) in periods.iter().enumerate() {
        let buyers = (0..prosumers.len()).filter(|&i| deficit(p, i) >= 100);
        for (position, i) in buyers.enumerate() {
            if (position + p) % 2 != 0 {
                continue;
            }
            let energy_wh = deficit(p, i);
            let price = 8 + (i as u64 % 3) + evening(p) * 8;
            let id = format!("b{run_id}-{p}-{i}");
            ops.push(
                Op::new(
                    energy(&prosumers[i].gateway, start - 720),
                    &[
                        "PostBid",
                        &id,
                        &start.to_string(),
                        &energy_wh.to_string(),
                        &price.to_string(),
                    ],
                )
                // A buyer's bids all escrow from its balance: one after another.
                .lane(format!("buyer-{i}")),
            );
            bids.push(BidRecord {
                period: p,
                buyer: i,
                id,
                price,
                remaining_wh: energy_wh,
                posted: false,
                trades: 0,
                cancelled: false,
            });
        }
    }
    let posted = runner.run("bids (payment escrowed)", ops).await;
    for (bid, outcome) in bids.iter_mut().zip(&posted) {
        bid.posted = matches!(outcome, Outcome::Committed(_));
    }
    let mut trades: Vec<TradeRecord> = Vec::new();
    let mut ops = Vec::new();
    for (p, &start) in periods.iter().enumerate() {
        let mut book: Vec<usize> = (0..bids.len())
            .filter(|&b| bids[b].period == p && bids[b].posted)
            .collect();
        book.sort_by(|&a, &b| bids[b].price.cmp(&bids[a].price).then(a.cmp(&b)));
        let mut left: Vec<u64> = book.iter().map(|&b| bids[b].remaining_wh).collect();
        for (i, pr) in prosumers.iter().enumerate() {
            let mut to_sell = surplus(p, i) / 2;
            for (k, &b) in book.iter().enumerate() {
                if to_sell < 100 {
                    break;
                }
                if left[k] < 100 || bids[b].buyer == i {
                    continue;
                }
                let take = to_sell.min(left[k]);
                left[k] -= take;
                to_sell -= take;
                let id = format!("tb{run_id}-{p}-{}-{i}", bids[b].buyer);
                ops.push(
                    Op::new(
                        energy(&pr.gateway, start - 690),
                        &[
                            "AcceptBid",
                            &id,
                            &bids[b].id,
                            &start.to_string(),
                            &take.to_string(),
                        ],
                    )
                    // The sellers filling one bid all write it: one after another.
                    .lane(format!("bid-{b}")),
                );
                trades.push(TradeRecord {
                    period: p,
                    id,
                    seller: i,
                    buyer: bids[b].buyer,
                    energy_wh: take,
                    price: bids[b].price,
                    bid: Some(b),
                    committed: false,
                });
            }
        }
    }
    let bid_trades = trades.len();
    let accepted = runner
        .run(
            "bids accepted (each certified by the DSO's power flow)",
            ops,
        )
        .await;
    let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused_per_period = vec![0u32; args.periods];
    // Energy sold to and bought from bids, by (period, prosumer).
    let mut sold_to_bids: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    let mut bought_by_bids: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    for (trade, outcome) in trades.iter_mut().zip(&accepted) {
        match outcome {
            Outcome::Committed(_) => {
                trade.committed = true;
                *sold_to_bids
                    .entry((trade.period, trade.seller))
                    .or_default() += trade.energy_wh;
                *bought_by_bids
                    .entry((trade.period, trade.buyer))
                    .or_default() += trade.energy_wh;
                if let Some(b) = trade.bid {
                    bids[b].remaining_wh -= trade.energy_wh;
                    bids[b].trades += 1;
                }
            }
            Outcome::Refused(e) | Outcome::Failed(e) => {
                *refusals.entry(refusal_reason(e)).or_default() += 1;
                refused_per_period[trade.period] += 1;
            }
        }
    }

    let mut offers: Vec<(usize, usize, String, u64, u64)> = Vec::new(); // (period, seller, id, wh, price)
    let mut ops = Vec::new();
    for (p, &start) in periods.iter().enumerate() {
        for (i, pr) in prosumers.iter().enumerate() {
            let left =
                surplus(p, i).saturating_sub(sold_to_bids.get(&(p, i)).copied().unwrap_or(0));
            if left >= 100 {
                let price = 6 + (i as u64 % 5) + evening(p) * 8;
                let id = format!("o{run_id}-{p}-{i}");
                ops.push(Op::new(
                    energy(&pr.gateway, start - 600),
                    &[
                        "PostOffer",
                        &id,
                        &start.to_string(),
                        &left.to_string(),
                        &price.to_string(),
                    ],
                ));
                offers.push((p, i, id, left, price));
            }
        }
    }
    let posted = runner.run("offers", ops).await;
    let offers: Vec<_> = offers
        .into_iter()
        .zip(&posted)
        .filter(|(_, o)| matches!(o, Outcome::Committed(_)))
        .map(|(offer, _)| offer)
        .collect();
    let mut ops = Vec::new();
    for (p, &start) in periods.iter().enumerate() {
        let mut book: Vec<(u64, usize, String, u64)> = offers
            .iter()
            .filter(|o| o.0 == p)
            .map(|o| (o.4, o.1, o.2.clone(), o.3))
            .collect();
        book.sort();
        for (i, pr) in prosumers.iter().enumerate() {
            let mut deficit =
                deficit(p, i).saturating_sub(bought_by_bids.get(&(p, i)).copied().unwrap_or(0));
            for (price, seller, offer_id, left) in book.iter_mut() {
                if deficit < 100 {
                    break;
                }
                if *left < 100 || *seller == i {
                    continue;
                }
                let take = deficit.min(*left);
                *left -= take;
                deficit -= take;
                let id = format!("t{run_id}-{p}-{i}-{seller}");
                ops.push(
                    Op::new(
                        energy(&pr.gateway, start - 540),
                        &[
                            "AcceptOffer",
                            &id,
                            offer_id,
                            &start.to_string(),
                            &take.to_string(),
                        ],
                    )
                    // A buyer's trades all spend its balance: one after another.
                    .lane(format!("buyer-{i}")),
                );
                trades.push(TradeRecord {
                    period: p,
                    id,
                    seller: *seller,
                    buyer: i,
                    energy_wh: take,
                    price: *price,
                    bid: None,
                    committed: false,
                });
            }
        }
    }
    let accepted = runner
        .run(
            "offers accepted (each certified by the DSO's power flow)",
            ops,
        )
        .await;
    for (trade, outcome) in trades[bid_trades..].iter_mut().zip(&accepted) {
        match outcome {
            Outcome::Committed(_) => trade.committed = true,
            Outcome::Refused(e) | Outcome::Failed(e) => {
                *refusals.entry(refusal_reason(e)).or_default() += 1;
                refused_per_period[trade.period] += 1;
            }
        }
    }

    // After gate closure the bids not filled are cancelled: their buyers get the escrow back.
    let open: Vec<usize> = (0..bids.len())
        .filter(|&b| bids[b].posted && bids[b].remaining_wh > 0)
        .collect();
    let ops: Vec<Op> = open
        .iter()
        .map(|&b| {
            let bid = &bids[b];
            Op::new(
                energy(&prosumers[bid.buyer].gateway, periods[bid.period] - 240),
                &["CancelBid", &bid.id, &periods[bid.period].to_string()],
            )
            .lane(format!("buyer-{}", bid.buyer))
        })
        .collect();
    let cancelled = runner
        .run("open bids cancelled (escrow refunded)", ops)
        .await;
    let mut refunded_cents = 0u64;
    for (&b, outcome) in open.iter().zip(&cancelled) {
        if matches!(outcome, Outcome::Committed(_)) {
            bids[b].cancelled = true;
            refunded_cents += cost_cents(bids[b].remaining_wh, bids[b].price);
        }
    }

    // After each period: the meters report, then the DSO attests, settles and burns.
    let mut ops = Vec::new();
    let mut measured: BTreeMap<(usize, usize), (u64, u64)> = BTreeMap::new(); // (period, prosumer) → (import, export)
    for (p, &start) in periods.iter().enumerate() {
        for (i, pr) in prosumers.iter().enumerate() {
            let cut = if dr_in_day && first + p == DR_SLOT {
                dr.cut_kw(i, pr.households, &slots)
            } else {
                0.0
            };
            let net = pr.net_kw(&slots, first + p, true, i) - cut;
            measured.insert((p, i), (wh(net), wh(-net)));
            ops.push(reading_op(pr, start, net, &run_id));
        }
    }
    expect_committed(
        "readings",
        runner
            .run("meter readings (private, on the meter channels)", ops)
            .await,
    )?;
    let traded: BTreeSet<(usize, usize)> = trades
        .iter()
        .filter(|t| t.committed)
        .flat_map(|t| [(t.period, t.seller), (t.period, t.buyer)])
        .collect();
    let mut ops = Vec::new();
    let mut attested: Vec<(usize, usize)> = Vec::new();
    for (p, &start) in periods.iter().enumerate() {
        for (i, pr) in prosumers.iter().enumerate() {
            let (import, export) = measured[&(p, i)];
            if export == 0 && !traded.contains(&(p, i)) {
                continue;
            }
            let salt = format!("attestation-{run_id}-{p}-{i}");
            ops.push(
                Op::new(
                    energy(&dso, start + PERIOD + 120),
                    &[
                        "Attest",
                        &start.to_string(),
                        &pr.account(),
                        &export.to_string(),
                        &import.to_string(),
                    ],
                )
                .transient("salt", salt.as_bytes())
                .endorsed_by(&["DSOMSP", pr.msp]),
            );
            attested.push((p, i));
        }
    }
    let attestations = runner.run("attestations against the meters", ops).await;
    let mut minted = vec![0u64; args.periods];
    for (&(p, _), outcome) in attested.iter().zip(&attestations) {
        if let Outcome::Committed(payload) = outcome {
            minted[p] += json(payload)["export_wh"].as_u64().unwrap_or(0);
        }
    }
    let mut ops = Vec::new();
    let committed_trades: Vec<&TradeRecord> = trades.iter().filter(|t| t.committed).collect();
    for t in &committed_trades {
        ops.push(
            Op::new(
                energy(&dso, periods[t.period] + PERIOD + 180),
                &["Settle", &t.id, &periods[t.period].to_string()],
            )
            .lane(format!("seller-{}", t.seller)),
        );
    }
    let settled = runner.run("settlement", ops).await;
    let mut delivered_wh = 0u64;
    let mut paid_cents = 0u64;
    for outcome in &settled {
        if let Outcome::Committed(payload) = outcome {
            let t = json(payload);
            delivered_wh += t["delivered_wh"].as_u64().unwrap_or(0);
            paid_cents += t["paid_cents"].as_u64().unwrap_or(0);
        }
    }
    let buyers: BTreeSet<(usize, usize)> = committed_trades
        .iter()
        .map(|t| (t.period, t.buyer))
        .collect();
    let mut ops = Vec::new();
    let burn_keys: Vec<(usize, usize)> = buyers.iter().copied().collect();
    for &(p, i) in &burn_keys {
        ops.push(Op::new(
            energy(&dso, periods[p] + PERIOD + 240),
            &["Burn", &periods[p].to_string(), &prosumers[i].account()],
        ));
    }
    let burns = runner.run("burning against consumption", ops).await;
    let mut burned = vec![0u64; args.periods];
    for (&(p, _), outcome) in burn_keys.iter().zip(&burns) {
        if let Outcome::Committed(payload) = outcome {
            // The attestation after the burn: what was burned for this period in total.
            burned[p] += json(payload)["burned_wh"].as_u64().unwrap_or(0);
        }
    }

    // Guarantees of origin for whole kWh of attested export.
    let mut ops = Vec::new();
    let mut cert_keys = Vec::new();
    for (&(p, i), outcome) in attested.iter().zip(&attestations) {
        if matches!(outcome, Outcome::Committed(_)) && measured[&(p, i)].1 >= 1000 {
            let pr = &prosumers[i];
            ops.push(Op::new(
                pr_certs(&dso, periods[p] + PERIOD + 300),
                &[
                    "IssueCertificates",
                    &periods[p].to_string(),
                    &pr.account(),
                    &format!("PV-{}", pr.pod()),
                    "solar-pv",
                ],
            ));
            cert_keys.push(i);
        }
    }
    let issued = runner.run("guarantees of origin", ops).await;
    let mut issued_ids: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (&i, outcome) in cert_keys.iter().zip(&issued) {
        if let Outcome::Committed(payload) = outcome {
            let ids = json(payload)["issued"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            issued_ids.entry(i).or_default().extend(ids);
        }
    }
    let certificates_issued: usize = issued_ids.values().map(Vec::len).sum();
    // Each organization's biggest producer hands five certificates to its organization's
    // portfolio, whose admin cancels three of them for the fuel-mix disclosure.
    let end_of_day = day + DAY + 3600;
    let mut transfers = Vec::new();
    let mut cancellations = Vec::new();
    for msp in ["RetailerMSP", "CommunityMSP"] {
        let top = issued_ids
            .iter()
            .filter(|(i, _)| prosumers[**i].msp == msp)
            .max_by_key(|(_, ids)| ids.len());
        if let Some((&i, ids)) = top {
            for (k, id) in ids.iter().take(5).enumerate() {
                transfers.push(Op::new(
                    pr_certs(&prosumers[i].gateway, end_of_day),
                    &["Transfer", id, msp],
                ));
                if k < 3 {
                    cancellations.push(Op::new(
                        pr_certs(admin_of(msp), end_of_day + 60),
                        &[
                            "Cancel",
                            id,
                            &format!("{msp} customers"),
                            &format!("{msp} fuel-mix disclosure {}", &day_name[..4]),
                        ],
                    ));
                }
            }
        }
    }
    let transferred = runner.run("certificates transferred", transfers).await;
    let cancelled = runner.run("certificates cancelled", cancellations).await;
    let count = |v: &[Outcome]| {
        v.iter()
            .filter(|o| matches!(o, Outcome::Committed(_)))
            .count()
    };

    // Demand response: attested against the baseline, then paid — the prosumers for their own
    // POD, the aggregator for its pool.
    let mut dr_lines = Vec::new();
    let (mut dr_delivered, mut dr_paid, mut dr_penalties) = (0u64, 0u64, 0u64);
    if dr_in_day {
        let flex = |t: i64| dso.network(MARKET).contract("flex").at(at(t));
        let mut committers: Vec<(String, &str, String)> = dr
            .individuals
            .iter()
            .map(|&i| {
                let p = &prosumers[i];
                (p.account(), p.msp, p.account())
            })
            .collect();
        if let Some(pool) = &dr.pool {
            let members: Vec<String> = pool.members.iter().map(|&i| prosumers[i].pod()).collect();
            committers.push((
                pool.account(),
                pool.msp,
                format!("{} (aggregator of {})", pool.account(), members.join(", ")),
            ));
        }
        let ops: Vec<Op> = committers
            .iter()
            .map(|(account, msp, _)| {
                Op::new(
                    flex(dr_period + PERIOD + 400),
                    &["AttestDelivery", &dr_id, &dr_period.to_string(), account],
                )
                .endorsed_by(&["DSOMSP", msp])
            })
            .collect();
        let deliveries = runner.run("demand response attested", ops).await;
        let ops: Vec<Op> = committers
            .iter()
            .map(|(account, _, _)| {
                Op::new(
                    energy(&dso, dr_period + PERIOD + 460),
                    &["PayFlex", &dr_id, &dr_period.to_string(), account],
                )
                .lane("treasury".into())
            })
            .collect();
        let payments = runner.run_lanes("demand response paid", ops).await;
        for (((_, _, label), d), pay) in committers.iter().zip(&deliveries).zip(&payments) {
            match (d, pay) {
                (Outcome::Committed(d), Outcome::Committed(pay)) => {
                    let (d, pay) = (json(d), json(pay));
                    let delivered = d["delivered_wh"].as_u64().unwrap_or(0);
                    let remuneration = pay["remuneration_cents"].as_u64().unwrap_or(0);
                    let penalty = pay["penalty_cents"].as_u64().unwrap_or(0);
                    dr_delivered += delivered;
                    dr_paid += remuneration;
                    dr_penalties += penalty;
                    dr_lines.push(format!(
                        "{label}: committed {} Wh, baseline {} Wh, metered {} Wh, delivered {delivered} Wh → paid {remuneration} c, penalty {penalty} c",
                        d["committed_wh"], d["baseline_wh"], d["actual_wh"]
                    ));
                }
                (Outcome::Refused(e) | Outcome::Failed(e), _)
                | (_, Outcome::Refused(e) | Outcome::Failed(e)) => {
                    dr_lines.push(format!("{label}: {}", refusal_reason(e)));
                }
            }
        }
    }

    // Payment conservation over what this run moved: what it issued is in the accounts'
    // balances or still escrowed by its trades (unsettled) and bids (neither filled nor
    // cancelled).
    let conservation = {
        if let Err(e) = sync_peers(&[&dso, &admins[0].1, &admins[1].1], MARKET).await {
            eprintln!("[demo] {e:#}; going on");
        }
        let after = payment_snapshot(&dso, &payment_accounts).await?;
        let mut trade_escrow = 0u64;
        for (t, outcome) in committed_trades.iter().zip(&settled) {
            if !matches!(outcome, Outcome::Committed(_)) {
                let payload = energy(&dso, end_of_day)
                    .evaluate("GetTrade", &[&t.id, &periods[t.period].to_string()])
                    .await
                    .with_context(|| format!("reading trade {}", t.id))?;
                trade_escrow += json(&payload)["escrow_cents"].as_u64().unwrap_or(0);
            }
        }
        let mut bid_escrow = 0u64;
        for bid in bids.iter().filter(|b| b.posted && !b.cancelled) {
            let payload = energy(&dso, end_of_day)
                .evaluate("GetBid", &[&bid.id, &periods[bid.period].to_string()])
                .await
                .with_context(|| format!("reading bid {}", bid.id))?;
            bid_escrow += json(&payload)["escrow_cents"].as_u64().unwrap_or(0);
        }
        let issued = i128::from(after.issued_cents) - i128::from(before.issued_cents);
        let balances = i128::from(after.balances_cents) - i128::from(before.balances_cents);
        let holds = issued == balances + i128::from(trade_escrow) + i128::from(bid_escrow);
        format!(
            "{issued} c issued = {balances} c into balances + {trade_escrow} c in trade escrow + {bid_escrow} c in bid escrow: {}",
            if holds { "holds" } else { "VIOLATED" }
        )
    };
    // Summary.
    let elapsed = started.elapsed().as_secs_f64();
    let committed_tx = stats.committed.load(Ordering::Relaxed);
    let traded_wh: u64 = committed_trades.iter().map(|t| t.energy_wh).sum();
    let refused_total: usize = refusals.values().sum();
    let from_bids = committed_trades.iter().filter(|t| t.bid.is_some()).count();
    let from_offers = committed_trades.len() - from_bids;
    let mut refusal_list: Vec<(String, usize)> = refusals.into_iter().collect();
    refusal_list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let summary: Vec<(String, String)> = vec![
        (
            "Day (UTC)".into(),
            format!("{day_name}, {} periods", args.periods),
        ),
        (
            "Prosumers".into(),
            format!("{} (RetailerMSP and CommunityMSP)", prosumers.len()),
        ),
        ("Offers posted".into(), offers.len().to_string()),
        (
            "Bids".into(),
            format!(
                "{} posted, {} accepted, {} cancelled ({refunded_cents} c of escrow refunded)",
                bids.iter().filter(|b| b.posted).count(),
                bids.iter().filter(|b| b.trades > 0).count(),
                bids.iter().filter(|b| b.cancelled).count()
            ),
        ),
        (
            "Trades".into(),
            format!(
                "{} committed: {from_offers} from offers, {from_bids} from bids; {refused_total} refused",
                committed_trades.len()
            ),
        ),
        (
            "Energy traded".into(),
            format!("{:.1} kWh", traded_wh as f64 / 1000.0),
        ),
        (
            "Energy delivered against trades".into(),
            format!(
                "{:.1} kWh, {paid_cents} c paid to sellers",
                delivered_wh as f64 / 1000.0
            ),
        ),
        (
            "E-tokens".into(),
            format!(
                "{:.1} kWh minted, {:.1} kWh burned",
                minted.iter().sum::<u64>() as f64 / 1000.0,
                burned.iter().sum::<u64>() as f64 / 1000.0
            ),
        ),
        (
            "Guarantees of origin".into(),
            format!(
                "{certificates_issued} issued (1 kWh each), {} transferred, {} cancelled",
                count(&transferred),
                count(&cancelled)
            ),
        ),
        (
            "Demand response".into(),
            if dr_in_day {
                format!(
                    "request {dr_id} at {}: {} prosumers and {}, {dr_delivered} Wh delivered, {dr_paid} c paid, {dr_penalties} c penalties",
                    time_of(dr_period),
                    dr.individuals.len(),
                    dr.pool.as_ref().map_or_else(
                        || "no aggregator".to_owned(),
                        |pool| format!(
                            "aggregator {} ({} members)",
                            pool.account(),
                            pool.members.len()
                        )
                    )
                )
            } else {
                "not in the simulated periods".into()
            },
        ),
        ("Payment conservation".into(), conservation),
        (
            "Transactions".into(),
            format!(
                "{committed_tx} committed in {elapsed:.0} s ({:.1} tps)",
                committed_tx as f64 / elapsed.max(0.001)
            ),
        ),
    ];
    println!();
    println!("[demo] summary");
    for (label, value) in &summary {
        println!("  {label:<34} {value}");
    }
    if !refusal_list.is_empty() {
        println!("  trades refused, by reason:");
        for (reason, n) in &refusal_list {
            println!("    {n:>5}  {reason}");
        }
    }
    for line in &dr_lines {
        println!("  demand response: {line}");
    }

    // The report.
    let mut per_period = Vec::with_capacity(args.periods);
    let mut supply = 0i64;
    for (p, &start) in periods.iter().enumerate() {
        let in_period: Vec<&&TradeRecord> =
            committed_trades.iter().filter(|t| t.period == p).collect();
        let energy: u64 = in_period.iter().map(|t| t.energy_wh).sum();
        let value: u64 = in_period.iter().map(|t| t.energy_wh * t.price).sum();
        supply += minted[p] as i64 - burned[p] as i64;
        per_period.push(PeriodSummary {
            start,
            traded_wh: energy,
            trades: u32::try_from(in_period.len()).unwrap_or(u32::MAX),
            refused: refused_per_period[p],
            avg_price_cents_per_kwh: (energy > 0).then(|| value as f64 / energy as f64),
            minted_wh: minted[p],
            burned_wh: burned[p],
            supply_wh: supply,
        });
    }
    let worst = worst_period(dir, &prosumers, &committed_trades, &periods)?;
    let report = DayReport {
        title: format!(
            "GridLedger demo — {day_name} (UTC), {} prosumers on the IEEE 33-bus feeder",
            prosumers.len()
        ),
        day_start: day,
        periods: per_period,
        worst_period: worst,
        summary,
        refusals: refusal_list,
    };
    let html_path = args
        .report
        .clone()
        .unwrap_or_else(|| dir.join("demo-report.html"));
    let svg_path = html_path.with_extension("svg");
    std::fs::write(&html_path, crate::report::render_html(&report))
        .with_context(|| format!("writing {}", html_path.display()))?;
    std::fs::write(&svg_path, crate::report::render_svg(&report))
        .with_context(|| format!("writing {}", svg_path.display()))?;
    println!();
    println!(
        "[demo] report: {} (plots: {})",
        html_path.display(),
        svg_path.display()
    );
    Ok(())
}

fn pr_certs(g: &Gateway, t: i64) -> Contract {
    g.network(MARKET).contract("certs").at(at(t))
}

/// A meter's reading of the period starting at `start` with net import `net_kw`.
fn reading_op(p: &Prosumer, start: i64, net_kw: f64, run_id: &str) -> Op {
    let salt = format!("reading-{run_id}-{}-{start}", p.pod());
    Op::new(
        p.meter
            .network(p.channel())
            .contract("meter")
            .at(at(start + PERIOD + 60)),
        &[
            "RecordReading",
            &start.to_string(),
            &wh(net_kw).to_string(),
            &wh(-net_kw).to_string(),
        ],
    )
    .transient("salt", salt.as_bytes())
}

fn expect_committed(what: &str, outcomes: Vec<Outcome>) -> anyhow::Result<()> {
    if let Some(problem) = outcomes.iter().find_map(|o| match o {
        Outcome::Committed(_) => None,
        Outcome::Refused(e) | Outcome::Failed(e) => Some(e.clone()),
    }) {
        bail!("{what}: {problem}");
    }
    Ok(())
}

/// The period whose committed trades give the lowest minimum voltage on the DSO's model.
fn worst_period(
    dir: &Path,
    prosumers: &[Prosumer],
    trades: &[&TradeRecord],
    periods: &[i64],
) -> anyhow::Result<Option<WorstPeriod>> {
    let dso_config = dir.join("nodes/peer0.dso/peer.toml");
    let config = gridledger_peer::config::PeerConfig::load(&dso_config)
        .with_context(|| format!("reading {}", dso_config.display()))?;
    let Some(feasibility) = config.feasibility else {
        return Ok(None);
    };
    let feeder = gridledger_grid::Feeder::from_json(
        &std::fs::read(&feasibility.feeder)
            .with_context(|| format!("reading {}", feasibility.feeder.display()))?,
    )
    .context("the DSO's feeder")?;
    let check = gridledger_peer::feasibility::FeasibilityCheck::load(feasibility)
        .context("the DSO's feasibility configuration")?;
    let settings = gridledger_grid::PowerFlowSettings::default();
    let mut worst: Option<WorstPeriod> = None;
    for (p, &start) in periods.iter().enumerate() {
        let mut extra = Vec::new();
        for t in trades.iter().filter(|t| t.period == p) {
            let (Some(seller), Some(buyer)) = (
                check.bus_of(&prosumers[t.seller].pod()),
                check.bus_of(&prosumers[t.buyer].pod()),
            ) else {
                continue;
            };
            let kw = t.energy_wh as f64 * 4.0 / 1000.0;
            extra.push(gridledger_grid::BusPower {
                bus: seller,
                p_kw: -kw,
                q_kvar: 0.0,
            });
            extra.push(gridledger_grid::BusPower {
                bus: buyer,
                p_kw: kw,
                q_kvar: 0.0,
            });
        }
        if extra.is_empty() {
            continue;
        }
        let scale = check.load_scale(start);
        let baseline = gridledger_grid::solve(&feeder, scale, &[], settings)
            .context("the baseline power flow")?;
        let with = gridledger_grid::solve(&feeder, scale, &extra, settings)
            .context("the power flow with the trades")?;
        let min = with.vm_pu.iter().copied().fold(f64::INFINITY, f64::min);
        let lower = worst.as_ref().is_none_or(|w| {
            min < w
                .with_trades_vm_pu
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min)
        });
        if lower {
            worst = Some(WorstPeriod {
                start,
                load_scale: scale,
                baseline_vm_pu: baseline.vm_pu,
                with_trades_vm_pu: with.vm_pu,
                v_min_pu: feeder.v_min_pu,
                v_max_pu: feeder.v_max_pu,
            });
        }
    }
    Ok(worst)
}

/// `YYYY-MM-DD` of a Unix time (UTC).
fn date_of(unix: i64) -> String {
    let (y, m, d) = gridledger_ledger::utc::civil_date(unix.div_euclid(DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `HH:MM` (UTC) of a Unix time.
fn time_of(unix: i64) -> String {
    let s = unix.rem_euclid(DAY);
    format!("{:02}:{:02}", s / 3600, s % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_are_utc_civil() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(1_795_698_000), "2026-11-26");
        assert_eq!(date_of(951_782_400), "2000-02-29");
        assert_eq!(time_of(1_795_698_000), "13:00");
    }

    #[test]
    fn the_profile_has_a_day_of_slots_with_sun_at_noon() {
        let slots = profile().expect("the built-in profile");
        assert_eq!(slots.len(), 96);
        assert_eq!(slots[0].pv_kw, 0.0, "no sun at midnight");
        assert!(slots[48].pv_kw > 3.0, "noon (UTC) is sunny in June");
    }

    #[test]
    fn dso_refusals_are_summarised_by_the_violated_limit() {
        let message = "gateway returned Aborted: failed to endorse transaction; DSOMSP (127.0.0.1:7051): chaincode response 500, trade t1 is not feasible on the DSO's grid in period 1 (load scale 0.9, 3 trades): undervoltage at bus 17 would be 0.91 pu against a limit of 0.95 pu";
        assert_eq!(refusal_reason(message), "the DSO: undervoltage at bus 17");
        assert_eq!(
            refusal_reason("x; chaincode response 500, offer o1 has 0 Wh left, not 100"),
            "offer o1 has 0 Wh left, not 100"
        );
    }

    /// The sites of `per_org` prosumers of each organization, in the demo's order.
    fn sites(per_org: usize) -> Vec<(&'static str, f64, f64)> {
        (0..2 * per_org)
            .map(|i| {
                let (kwp, households) = sizes(i);
                let msp = if i % 2 == 0 {
                    "RetailerMSP"
                } else {
                    "CommunityMSP"
                };
                (msp, kwp, households)
            })
            .collect()
    }

    /// A slot's net import in Wh as a meter reports it (import − export).
    fn net_wh(kw: f64) -> i64 {
        wh(kw) as i64 - wh(-kw) as i64
    }

    #[test]
    fn the_demand_response_pool_is_disjoint_from_the_prosumers_and_delivers() {
        let slots = profile().expect("profile");
        for per_org in [1, 3, 8] {
            let sites = sites(per_org);
            let plan = DrPlan::new(&sites, &slots);
            let pool = plan.pool.as_ref().expect("an aggregator's pool");
            assert!(!pool.members.is_empty() && pool.members.len() <= 3);
            assert!(
                pool.members.iter().all(|m| !plan.individuals.contains(m)),
                "a POD counts once per request"
            );
            assert!(pool.members.iter().all(|&m| sites[m].0 == pool.msp));
            let committed = DR_INDIVIDUAL_KW * plan.individuals.len() as u64 + pool.kw;
            assert!(committed <= DR_REDUCTION_KW, "within the request");
            // The pool's delivery as flex attests it: Σ baseline − Σ actual, each member's
            // baseline the average of its five days of history, rounded down.
            let (mut baseline, mut actual) = (0i64, 0i64);
            for &m in &pool.members {
                let (_, kwp, households) = sites[m];
                let history: i64 = (1..=DR_HISTORY_DAYS as usize)
                    .map(|d| net_wh(net_kw(kwp, households, &slots, DR_SLOT, true, d)))
                    .sum();
                baseline += history.div_euclid(DR_HISTORY_DAYS);
                let cut = plan.cut_kw(m, households, &slots);
                actual += net_wh(net_kw(kwp, households, &slots, DR_SLOT, true, m) - cut);
            }
            let delivered = baseline - actual;
            assert!(
                delivered > 0,
                "{per_org} per organization: the pool delivers ({baseline} Wh baseline, {actual} Wh metered)"
            );
        }
    }

    #[test]
    fn prosumers_sell_at_noon_and_buy_at_night() {
        let slots = profile().expect("profile");
        let (kwp, households) = sizes(1);
        assert!(kwp > 0.0 && households > 0.0);
        let seller = |kwp: f64, households: f64, slot: usize| {
            let s = slots[slot];
            s.load_kw * households - s.pv_kw / PROFILE_KWP * kwp * 0.85
        };
        assert!(seller(150.0, 4.0, 48) < 0.0, "a big roof exports at noon");
        assert!(seller(150.0, 4.0, 0) > 0.0, "and imports at midnight");
        assert_eq!(wh(4.0), 1000, "4 kW for a quarter hour is 1 kWh");
        assert_eq!(wh(-1.0), 0);
    }
}
