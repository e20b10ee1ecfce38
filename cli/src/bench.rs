//! `gridledger bench …`: the benchmarks whose results are reported in BENCHMARKS.md.
//!
//! - `bench crypto`: ECDSA P-256 verification per second, `ring` against the `p256` crate.
//! - `bench gateway` (also reachable as plain `bench --network … --workload …`, issue 9's
//!   spelling): an end-to-end load generator that drives a running network through the Gateway
//!   the way real clients do (proposal → Endorse → Submit → CommitStatus), in closed-loop or
//!   fixed-rate mode after a warm-up, and reports committed tps, commit-latency percentiles,
//!   validation codes, errors by gRPC code, and CPU and memory of every node process (read from
//!   `/proc`) and of the client itself. Workloads: `basic-create` (blind writes),
//!   `basic-update` (read-modify-write of keys drawn at random from a preloaded set, with the
//!   MVCC conflict rate), `basic-read` (Evaluate of random preloaded keys: evaluations per
//!   second and their latency; see [`KeySet`] and [`preload`]) and `energy-trade`
//!   (`AcceptOffer` on the `energy` chaincode, each trade certified by the DSO's power flow;
//!   see [`EnergyPlan`] for how it avoids MVCC conflicts and stays grid-feasible).
//! - `bench order`: the ordering service alone — signed ENDORSER_TRANSACTION envelopes over
//!   concurrent Broadcast streams spread across the Raft orderers (SUCCESS acks per second and
//!   their latency), and one Deliver stream measuring envelopes per second landing in blocks
//!   and the broadcast-to-block latency.
//!
//! The load generator is Rust on purpose: a Node client costs milliseconds of CPU per
//! transaction and would saturate a 2-core box on its own. Everything it does is bounded: the
//! run length, the number of transactions in flight, and every call's deadline.

use anyhow::{Context, bail, ensure};
use clap::{ArgMatches, Args, FromArgMatches, Subcommand, ValueEnum};
use gridledger_identity::SigningIdentity;
use gridledger_identity::bench::{Corpus, Measurement, Verifier};
use gridledger_proto::protos::TxValidationCode;
use gridledger_sdk::{Contract, Gateway, RetryPolicy, SdkError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod validate;

/// `gridledger bench …`. Either a named benchmark (`crypto`, `gateway`) or, with no
/// subcommand, the gateway benchmark's options directly on `bench` (`gridledger bench
/// --network DIR/network.json --workload basic-create …`).
#[derive(Debug)]
pub struct BenchCommand(Named);

#[derive(Debug, Subcommand)]
enum Named {
    /// ECDSA P-256 signature verification per second: ring (production) against the p256
    /// crate, on 1 thread and on every core, repeated; prints medians.
    Crypto {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Repetitions of each measurement (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End to end through the Gateway of a running network (`gridledger up`): committed tps,
    /// commit latency, validation codes, CPU and memory per node process.
    Gateway(GatewayArgs),
    /// The ordering service alone: signed envelopes over concurrent Broadcast streams spread
    /// across the orderers; acks per second and ack latency, and envelopes per second landing
    /// in blocks on one orderer's Deliver stream with the broadcast-to-block latency.
    Order(OrderArgs),
    /// A committing peer alone: pre-built blocks of `basic` CreateAsset transactions (real
    /// signatures and endorsements) replayed through validation and commit on a fresh ledger,
    /// no network; transactions and blocks per second, per-block validate and commit times.
    Validate(validate::ValidateArgs),
    /// The DSO's feasibility check alone: power flows of the IEEE 33-bus feeder (baseline and
    /// with trades) per second, the time per check, repeated; prints medians.
    Grid {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Repetitions (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Trades in each check (the same number a period's committed and reserved trades
        /// would add).
        #[arg(long, default_value_t = 1)]
        trades: usize,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

impl FromArgMatches for BenchCommand {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        if matches.subcommand_name().is_some() {
            Named::from_arg_matches(matches).map(BenchCommand)
        } else {
            GatewayArgs::from_arg_matches(matches).map(|a| BenchCommand(Named::Gateway(a)))
        }
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = BenchCommand::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Subcommand for BenchCommand {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        let cmd = GatewayArgs::augment_args(Named::augment_subcommands(cmd));
        cmd.subcommand_required(false)
            .args_conflicts_with_subcommands(true)
            .subcommand_negates_reqs(true)
            .arg_required_else_help(true)
    }

    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        BenchCommand::augment_subcommands(cmd)
    }

    fn has_subcommand(name: &str) -> bool {
        Named::has_subcommand(name)
    }
}

/// Workloads of the end-to-end benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// `basic` CreateAsset with a fresh id per transaction: blind writes, no conflicts.
    BasicCreate,
    /// `energy` AcceptOffer of 100 Wh by prosumers, each client its own buyer and its own
    /// offers (posted during setup), endorsed by the buyer's organization and the DSO, whose
    /// peer runs a power flow for every trade.
    EnergyTrade,
    /// `basic` TransferAsset of a key drawn uniformly at random from `--keys` preloaded assets:
    /// read-modify-write, so two transactions in flight on the same key MVCC-conflict (the
    /// conflict rate is reported).
    BasicUpdate,
    /// `basic` ReadAsset of a key drawn uniformly at random from the preloaded assets,
    /// evaluated on the gateway peer and never ordered: evaluations per second and the
    /// latency of the Evaluate call.
    BasicRead,
}

impl Workload {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Workload::BasicCreate => "basic-create",
            Workload::EnergyTrade => "energy-trade",
            Workload::BasicUpdate => "basic-update",
            Workload::BasicRead => "basic-read",
        }
    }

    /// Whether the workload draws its keys from the preloaded set of `--keys`.
    pub fn uses_keys(self) -> bool {
        matches!(self, Workload::BasicUpdate | Workload::BasicRead)
    }

    /// Whether its transactions are only evaluated (never ordered, so never committed).
    pub fn is_read(self) -> bool {
        self == Workload::BasicRead
    }

    /// The chaincode the workload invokes unless `--chaincode` names another.
    pub fn default_chaincode(self) -> &'static str {
        match self {
            Workload::BasicCreate | Workload::BasicUpdate | Workload::BasicRead => "basic",
            Workload::EnergyTrade => "energy",
        }
    }
}

/// Options of the end-to-end Gateway benchmark.
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// The network.json written by `gridledger up`.
    #[arg(long, value_name = "FILE")]
    pub network: PathBuf,
    /// What every transaction does.
    #[arg(long, value_enum)]
    pub workload: Workload,
    /// Length of the measured window, after the warm-up.
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Closed loop: this many clients, each endorse → submit → wait for its commit status, then
    /// the next (the default mode, with 16 clients).
    #[arg(long, conflicts_with = "rate")]
    pub concurrency: Option<usize>,
    /// Open loop: start this many transactions per second, whatever the latency.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop: most transactions in flight; a start that would exceed it is shed and counted.
    #[arg(long, default_value_t = 4096)]
    pub max_in_flight: usize,
    /// Load before the measured window; excluded from every statistic.
    #[arg(long, default_value_t = 5.0)]
    pub warmup_seconds: f64,
    /// The organization whose peer is the gateway and whose user signs (default: the first).
    /// Not used by energy-trade, whose buyers sign through their own organization's peer.
    #[arg(long, value_name = "MSPID")]
    pub org: Option<String>,
    /// The user (from network.json) that signs (not used by energy-trade).
    #[arg(long, default_value = "User1")]
    pub user: String,
    /// Channel.
    #[arg(long, default_value = "market")]
    pub channel: String,
    /// Chaincode (default: the workload's, `basic` or `energy`).
    #[arg(long)]
    pub chaincode: Option<String>,
    /// gRPC connections to the gateway peer, shared round-robin by the clients (energy-trade:
    /// one per buyer, to the buyer's organization's peer, instead).
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// energy-trade: delivery periods (15 minutes each, starting about two hours ahead) the
    /// trades are spread over; setup posts one offer per buyer and period.
    #[arg(long, default_value_t = 16)]
    pub periods: usize,
    /// basic-update, basic-read: how many preloaded assets the keys are drawn from. Their ids
    /// are `bench-n{KEYS}-0` … `bench-n{KEYS}-{KEYS - 1}`; setup creates them (the `basic`
    /// chaincode's CreateAssets) unless the last one already exists.
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: u64,
    /// basic-update, basic-read: assets created by each preload transaction (at most 10,000,
    /// CreateAssets' limit).
    #[arg(long, default_value_t = DEFAULT_PRELOAD_BATCH)]
    pub preload_batch: u64,
    /// Deadline of each call (Endorse, Submit, CommitStatus).
    #[arg(long, default_value_t = 30.0)]
    pub timeout_seconds: f64,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    pub json: bool,
}

/// Runs one benchmark command.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd.0 {
        Named::Crypto {
            seconds,
            repeat,
            json,
        } => crypto(seconds, repeat.max(1), json),
        Named::Gateway(args) => gateway(&args),
        Named::Order(args) => order(&args),
        Named::Validate(args) => validate::run(&args),
        Named::Grid {
            seconds,
            repeat,
            trades,
            json,
        } => grid(seconds, repeat.max(1), trades, json),
    }
}

/// Runs `gridledger_grid::check` on the IEEE 33-bus feeder at full load with `trades` small
/// trades spread over the feeder, for `seconds`, `repeat` times; reports the median time per
/// check (two power flows: the baseline and the period with the trades).
fn grid(seconds: f64, repeat: usize, trades: usize, json: bool) -> anyhow::Result<()> {
    use gridledger_grid::{Feeder, PowerFlowSettings, Trade, check};
    anyhow::ensure!(
        seconds > 0.0 && seconds <= 600.0,
        "--seconds must be in (0, 600]"
    );
    let feeder = Feeder::from_json(include_bytes!("../../grid/feeders/ieee33.json"))
        .context("the built-in IEEE 33-bus feeder")?;
    let list: Vec<Trade> = (0..trades)
        .map(|i| Trade {
            seller_bus: 17 + (i % 16),
            buyer_bus: 1 + (i % 4),
            kw: 5.0,
        })
        .collect();
    let mut per_check_us = Vec::with_capacity(repeat);
    let mut iterations = [0u32; 2];
    for _ in 0..repeat {
        let started = Instant::now();
        let mut checks = 0u64;
        while started.elapsed().as_secs_f64() < seconds {
            let verdict = check(&feeder, 1.0, &list, PowerFlowSettings::default())
                .context("the power flow")?;
            iterations = verdict.iterations;
            checks += 1;
        }
        per_check_us.push(started.elapsed().as_secs_f64() * 1e6 / checks.max(1) as f64);
    }
    let mut sorted = per_check_us.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    if json {
        println!(
            "{}",
            serde_json::json!({
                "feeder": "ieee33",
                "trades": trades,
                "per_check_us": per_check_us,
                "median_per_check_us": median,
                "checks_per_s": 1e6 / median,
                "sweep_iterations": iterations,
            })
        );
    } else {
        println!(
            "grid check on IEEE 33-bus, {trades} trade(s): median {median:.1} µs per check ({:.0} checks/s; runs {:?} µs; sweep iterations baseline/with trades {:?})",
            1e6 / median,
            per_check_us.iter().map(|v| v.round()).collect::<Vec<_>>(),
            iterations
        );
    }
    Ok(())
}

fn crypto(seconds: f64, repeat: usize, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        seconds > 0.0 && seconds <= 600.0,
        "--seconds must be in (0, 600]"
    );
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let corpus = Corpus::new(1024)?;
    let duration = Duration::from_secs_f64(seconds);
    let mut thread_counts = vec![1];
    if cores > 1 {
        thread_counts.push(cores);
    }
    let mut medians: Vec<Measurement> = Vec::new();
    for &threads in &thread_counts {
        for verifier in [Verifier::Ring, Verifier::P256] {
            // Interleave repetitions is not needed: each run is short and the median absorbs noise.
            let mut runs: Vec<Measurement> = (0..repeat)
                .map(|_| corpus.measure(verifier, threads, duration))
                .collect();
            runs.sort_by(|a, b| a.verifies_per_sec.total_cmp(&b.verifies_per_sec));
            medians.push(runs.swap_remove(repeat / 2));
        }
    }
    let rate = |v: Verifier, t: usize| {
        medians
            .iter()
            .find(|m| m.verifier == v && m.threads == t)
            .map(|m| m.verifies_per_sec)
            .unwrap_or(0.0)
    };
    if json {
        let out = serde_json::json!({
            "cores": cores,
            "seconds_per_run": seconds,
            "repeat": repeat,
            "medians": medians,
            "ring_over_p256_1_thread": rate(Verifier::Ring, 1) / rate(Verifier::P256, 1).max(1e-9),
        });
        println!("{out}");
    } else {
        println!("ECDSA P-256 verify, median of {repeat} runs of {seconds} s ({cores} cores)");
        println!(
            "{:<8} {:>8} {:>14} {:>14}",
            "verifier", "threads", "verifies/s", "µs/verify/core"
        );
        for m in &medians {
            let per_core_us = 1e6 * m.threads as f64 / m.verifies_per_sec.max(1e-9);
            println!(
                "{:<8} {:>8} {:>14.0} {:>14.1}",
                format!("{:?}", m.verifier).to_lowercase(),
                m.threads,
                m.verifies_per_sec,
                per_core_us
            );
        }
        println!(
            "ring / p256 on 1 thread: {:.2}x",
            rate(Verifier::Ring, 1) / rate(Verifier::P256, 1).max(1e-9)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// End to end through the Gateway.
// ---------------------------------------------------------------------------------------------

/// Linux reports process CPU time in clock ticks of `USER_HZ`, which is 100 on every mainstream
/// Linux build (the value is part of the kernel's user-space ABI); the crate forbids the unsafe
/// `sysconf` call that would read it.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// How often the resident memory of every process is sampled.
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// The parts of network.json the benchmark reads (DESIGN.md's shape; other fields are ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetworkFile {
    organizations: Vec<OrgEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrgEntry {
    msp_id: String,
    #[serde(default)]
    peers: Vec<PeerEntry>,
    #[serde(default)]
    users: Vec<UserEntry>,
    /// The organization's admins (energy-trade issues payment as one).
    #[serde(default)]
    admins: Vec<UserEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PeerEntry {
    name: String,
    endpoint: String,
    tls_ca_cert: String,
    server_name: String,
}

#[derive(Debug, Clone, Deserialize)]
struct UserEntry {
    name: String,
    cert: String,
    key: String,
}

/// Where the load goes and who signs it, resolved from network.json.
#[derive(Debug)]
struct Target {
    msp_id: String,
    peer_name: String,
    endpoint: String,
    server_name: String,
    tls_ca_pem: Vec<u8>,
    cert: PathBuf,
    key: PathBuf,
    /// The folder holding network.json: node configs live under `nodes/` in it.
    network_dir: PathBuf,
}

/// Reads network.json as `T`; returns it with the file's folder (paths inside are relative to it).
fn read_network<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<(T, PathBuf)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file: T = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a network.json", path.display()))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let network_dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    Ok((file, network_dir))
}

fn resolve_target(args: &GatewayArgs) -> anyhow::Result<Target> {
    let path = &args.network;
    let (file, network_dir): (NetworkFile, PathBuf) = read_network(path)?;
    let org = match &args.org {
        Some(msp_id) => file
            .organizations
            .iter()
            .find(|o| &o.msp_id == msp_id)
            .with_context(|| format!("organization {msp_id} is not in {}", path.display()))?,
        None => file
            .organizations
            .first()
            .with_context(|| format!("{} lists no organizations", path.display()))?,
    };
    let peer = org
        .peers
        .first()
        .with_context(|| format!("organization {} has no peer", org.msp_id))?;
    let user = org
        .users
        .iter()
        .find(|u| u.name == args.user)
        .with_context(|| format!("organization {} has no user {}", org.msp_id, args.user))?;
    let tls_ca = network_dir.join(&peer.tls_ca_cert);
    let tls_ca_pem =
        std::fs::read(&tls_ca).with_context(|| format!("reading {}", tls_ca.display()))?;
    Ok(Target {
        msp_id: org.msp_id.clone(),
        peer_name: peer.name.clone(),
        endpoint: peer.endpoint.clone(),
        server_name: peer.server_name.clone(),
        tls_ca_pem,
        cert: network_dir.join(&user.cert),
        key: network_dir.join(&user.key),
        network_dir,
    })
}

// ---------------------------------------------------------------------------------------------
// The energy-trade workload: prosumers, the plan, and its setup.
// ---------------------------------------------------------------------------------------------

/// Energy bought by each trade, Wh (0.4 kW over the 15-minute period).
const TRADE_WH: u64 = 100;
/// Energy of each offer posted during setup, Wh: the `energy` chaincode's largest, so no offer
/// runs out (100 000 trades per client and period).
const OFFER_WH: u64 = 10_000_000;
/// Price of every offer, cents per kWh (a trade of [`TRADE_WH`] costs one cent).
const PRICE_CENTS_PER_KWH: u64 = 10;
/// Payment issued to a buyer whose balance is below [`MIN_BUYER_CENTS`], cents.
const ISSUE_CENTS: u64 = 100_000_000;
/// A buyer with at least this much (ten million trades) is not issued more.
const MIN_BUYER_CENTS: u64 = 10_000_000;
/// Delivery periods are this long, seconds.
const PERIOD_SECONDS: i64 = 900;
/// The first delivery period starts at least this far ahead, seconds: far from gate closure
/// (five minutes before a period) for any run the options allow.
const PERIOD_LEAD_SECONDS: i64 = 7_200;
/// Most setup transactions (offers) in flight at once.
const SETUP_IN_FLIGHT: usize = 16;
/// How often a setup submit or an endorsement is tried again while the endorsing peers are at
/// different heights.
const MISMATCH_RETRIES: u32 = 50;
/// What the Gateway says when the endorsing peers' simulations differ, typically because one of
/// them has not committed the latest block yet.
const MISMATCH_TEXT: &str = "do not match";
/// What the DSO's refusal of an infeasible trade says.
const DSO_REFUSAL_TEXT: &str = "not feasible on the DSO's grid";
/// Prosumers are the users whose name starts with this.
const PROSUMER_PREFIX: &str = "Prosumer-";

/// A prosumer listed in network.json: a client identity whose certificate carries its point of
/// delivery (`pod` attribute), with the peer of its organization.
#[derive(Debug, Clone)]
struct Prosumer {
    msp_id: String,
    name: String,
    pod: String,
    cert: PathBuf,
    key: PathBuf,
    peer: PeerEntry,
}

impl Prosumer {
    /// Its account in the `energy` chaincode: `<MSP>:<POD>`.
    fn account(&self) -> String {
        format!("{}:{}", self.msp_id, self.pod)
    }
}

/// Takes one item of each group in turn (the first of every group, then the second, …), so
/// consecutive prosumers belong to different organizations.
fn interleave<T>(groups: Vec<Vec<T>>) -> Vec<T> {
    let total = groups.iter().map(Vec::len).sum();
    let mut iters: Vec<_> = groups.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        for it in &mut iters {
            if let Some(item) = it.next() {
                out.push(item);
            }
        }
    }
    out
}

/// Every `Prosumer-*` user of every organization in network.json, its point of delivery read
/// from its certificate's `pod` attribute; organizations interleaved, names sorted within each.
fn load_prosumers(file: &NetworkFile, network_dir: &Path) -> anyhow::Result<Vec<Prosumer>> {
    let mut groups = Vec::new();
    for org in &file.organizations {
        let mut users: Vec<&UserEntry> = org
            .users
            .iter()
            .filter(|u| u.name.starts_with(PROSUMER_PREFIX))
            .collect();
        if users.is_empty() {
            continue;
        }
        users.sort_by(|a, b| a.name.cmp(&b.name));
        let peer = org.peers.first().with_context(|| {
            format!(
                "organization {} lists prosumers but no peer to reach them",
                org.msp_id
            )
        })?;
        let mut group = Vec::with_capacity(users.len());
        for user in users {
            let cert = network_dir.join(&user.cert);
            let key = network_dir.join(&user.key);
            let signer = SigningIdentity::load(&org.msp_id, &cert, &key)
                .with_context(|| format!("loading {} of {}", user.name, org.msp_id))?;
            let pod = signer
                .certificate()
                .attributes
                .get("pod")
                .with_context(|| {
                    format!(
                        "the certificate of {} of {} ({}) has no `pod` attribute",
                        user.name,
                        org.msp_id,
                        cert.display()
                    )
                })?
                .clone();
            group.push(Prosumer {
                msp_id: org.msp_id.clone(),
                name: user.name.clone(),
                pod,
                cert,
                key,
                peer: peer.clone(),
            });
        }
        groups.push(group);
    }
    let prosumers = interleave(groups);
    let mut accounts = std::collections::BTreeSet::new();
    for p in &prosumers {
        ensure!(
            accounts.insert(p.account()),
            "two prosumers share the account {} (same organization and point of delivery)",
            p.account()
        );
    }
    Ok(prosumers)
}

/// An offer posted during setup, bought from by one client only.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OfferRef {
    id: String,
    /// Its delivery period (Unix seconds on a 15-minute boundary).
    period: i64,
}

/// One way a client of the energy-trade workload trades: buy as prosumer `buyer` from the
/// offers prosumer `seller` posted for it, one per period.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Leg {
    /// Index of the buying prosumer.
    buyer: usize,
    /// Index of the selling prosumer.
    seller: usize,
    offers: Vec<OfferRef>,
}

/// What one client of the energy-trade workload does: its legs, taken in turn.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClientPlan {
    legs: Vec<Leg>,
}

/// The energy-trade workload's assignment of prosumers, offers and periods to clients (closed
/// loop: one per task; fixed rate: one per in-flight slot).
///
/// `AcceptOffer` reads and writes the buyer's balance and the offer, so two trades in flight
/// with the same buyer or the same offer would MVCC-conflict: each client has its own buyer and
/// its own offers, and runs one trade at a time. The prosumers form a ring — client `i` buys
/// as prosumer `i` from prosumer `i + 1` (the last from the first; a single client buys as
/// prosumer 0 from prosumer 1 and as 1 from 0 in turn) — so every prosumer of the ring sells
/// about as much as it buys in each period: the net power at every bus, which is all the DSO's
/// power flow sees, stays near the baseline however long the run. (Buyers and sellers in
/// disjoint sets would push power one way: where the feeder's baseline is already under its
/// voltage limit, as the IEEE 33-bus feeder is from about half load, a few hundred watts the
/// wrong way per period are refused.) Each client takes its periods in turn, all clients in the
/// same order, so the periods fill evenly.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EnergyPlan {
    /// The delivery periods, ascending.
    periods: Vec<i64>,
    /// One per client.
    clients: Vec<ClientPlan>,
}

impl EnergyPlan {
    /// Plans `clients` clients over `prosumers` prosumers and `periods` periods from
    /// `first_period`; offer ids start with `run_prefix` (unique per run).
    fn new(
        prosumers: usize,
        clients: usize,
        periods: usize,
        first_period: i64,
        run_prefix: &str,
    ) -> anyhow::Result<EnergyPlan> {
        ensure!(
            prosumers >= 2,
            "energy-trade needs at least 2 prosumers (users named {PROSUMER_PREFIX}… with a `pod` attribute) in network.json, found {prosumers}"
        );
        ensure!(clients >= 1, "energy-trade needs at least one client");
        ensure!(
            clients <= prosumers,
            "energy-trade gives every client its own buyer: network.json lists {prosumers} prosumers, so at most {prosumers} clients, not {clients} (lower --concurrency)"
        );
        ensure!(periods >= 1, "energy-trade needs at least one period");
        ensure!(
            first_period > 0 && first_period % PERIOD_SECONDS == 0,
            "the first period {first_period} is not on a {PERIOD_SECONDS}-second boundary"
        );
        let periods: Vec<i64> = (0..periods as i64)
            .map(|j| first_period + j * PERIOD_SECONDS)
            .collect();
        let leg = |buyer: usize, seller: usize| Leg {
            buyer,
            seller,
            // A buyer has one leg, so its index names its offers.
            offers: periods
                .iter()
                .enumerate()
                .map(|(j, &period)| OfferRef {
                    id: format!("{run_prefix}-o{buyer}-{j}"),
                    period,
                })
                .collect(),
        };
        let clients = if clients == 1 {
            vec![ClientPlan {
                legs: vec![leg(0, 1), leg(1, 0)],
            }]
        } else {
            (0..clients)
                .map(|i| ClientPlan {
                    legs: vec![leg(i, (i + 1) % clients)],
                })
                .collect()
        };
        Ok(EnergyPlan { periods, clients })
    }

    /// Every leg of every client.
    fn legs(&self) -> impl Iterator<Item = &Leg> {
        self.clients.iter().flat_map(|c| c.legs.iter())
    }
}

/// How many clients the energy-trade workload runs, and its mode: closed loop, one client per
/// task; fixed rate, one per in-flight slot, so `--max-in-flight` is lowered to the number of
/// prosumers (each client needs its own buyer).
fn energy_clients(mode: Mode, prosumers: usize) -> (usize, Mode) {
    match mode {
        Mode::ClosedLoop { concurrency } => (concurrency, mode),
        Mode::FixedRate {
            rate,
            max_in_flight,
        } => {
            let slots = max_in_flight.min(prosumers);
            (
                slots,
                Mode::FixedRate {
                    rate,
                    max_in_flight: slots,
                },
            )
        }
    }
}

/// The first delivery period at least [`PERIOD_LEAD_SECONDS`] after `now` (Unix seconds).
fn first_period_after(now: i64) -> i64 {
    ((now + PERIOD_LEAD_SECONDS) / PERIOD_SECONDS + 1) * PERIOD_SECONDS
}

/// Whether the Gateway refused because the endorsing peers' simulations differ.
fn is_mismatch(err: &SdkError) -> bool {
    err.to_string().contains(MISMATCH_TEXT)
}

/// `contract.submit(function, args)`, endorsed again while the endorsing peers are at different
/// heights, as a client would.
async fn submit_agreed(
    contract: &Contract,
    function: &str,
    args: &[&str],
) -> Result<(Vec<u8>, u64), SdkError> {
    let mut attempts = 0;
    loop {
        match contract.submit(function, args).await {
            Err(e) if attempts < MISMATCH_RETRIES && is_mismatch(&e) => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// What the energy-trade setup did, reported with the results.
#[derive(Debug, Serialize)]
struct EnergySetup {
    /// Prosumers listed in network.json.
    prosumers: usize,
    /// The buyers' accounts, one per leg (a client has one, or two when it is alone).
    buyers: Vec<String>,
    /// The accounts that posted the offers, one per leg.
    sellers: Vec<String>,
    /// The delivery periods traded, Unix seconds.
    periods: Vec<i64>,
    /// Energy of each trade, Wh.
    trade_wh: u64,
    /// Offers posted during setup.
    offers_posted: usize,
    /// Buyers issued payment during setup (the others had enough from an earlier run).
    payments_issued: usize,
    /// How long the setup took (not measured).
    setup_seconds: f64,
}

/// Connects a Gateway to `prosumer`'s organization's peer, signing as the prosumer.
async fn prosumer_gateway(prosumer: &Prosumer, network_dir: &Path) -> anyhow::Result<Gateway> {
    let signer = SigningIdentity::load(&prosumer.msp_id, &prosumer.cert, &prosumer.key)
        .with_context(|| format!("loading {} of {}", prosumer.name, prosumer.msp_id))?;
    connect_peer(&prosumer.peer, network_dir, signer).await
}

async fn connect_peer(
    peer: &PeerEntry,
    network_dir: &Path,
    signer: SigningIdentity,
) -> anyhow::Result<Gateway> {
    let tls_ca = network_dir.join(&peer.tls_ca_cert);
    let tls_ca_pem =
        std::fs::read(&tls_ca).with_context(|| format!("reading {}", tls_ca.display()))?;
    Gateway::connect(&peer.endpoint, &tls_ca_pem, &peer.server_name, signer)
        .await
        .with_context(|| format!("connecting to {}", peer.name))
}

/// Sets up the energy-trade workload before the warm-up: plans the clients, issues payment to
/// every buyer short of it (as an admin of its organization, one at a time: each issue writes
/// the chaincode's supply record), posts every client's offers as its seller, and returns the
/// clients, each signing as its buyer through its organization's peer.
async fn prepare_energy(args: &GatewayArgs, mode: Mode) -> anyhow::Result<Prepared> {
    let started = Instant::now();
    let call_timeout = Duration::from_secs_f64(args.timeout_seconds);
    let (file, network_dir): (NetworkFile, PathBuf) = read_network(&args.network)?;
    let prosumers = load_prosumers(&file, &network_dir)?;
    let (client_count, mode) = energy_clients(mode, prosumers.len());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let now = i64::try_from(now).context("the clock is out of range")?;
    let run = IdSource::new();
    let plan = EnergyPlan::new(
        prosumers.len(),
        client_count,
        args.periods,
        first_period_after(now),
        &run.prefix,
    )?;
    let chaincode = args
        .chaincode
        .clone()
        .unwrap_or_else(|| args.workload.default_chaincode().to_owned());
    let contract_of = |g: &Gateway| g.network(&args.channel).contract(&chaincode);

    // A gateway per prosumer in the plan (each buys, or sells, or both).
    let mut gateways: BTreeMap<usize, Gateway> = BTreeMap::new();
    for leg in plan.legs() {
        for index in [leg.buyer, leg.seller] {
            if let std::collections::btree_map::Entry::Vacant(slot) = gateways.entry(index) {
                let gateway = prosumer_gateway(&prosumers[index], &network_dir).await?;
                slot.insert(gateway.with_timeout(call_timeout));
            }
        }
    }
    let gateway_of = |index: usize| {
        gateways
            .get(&index)
            .expect("every planned prosumer has a gateway")
    };

    // Payment for every buyer, by an admin of the buyer's organization.
    let mut admins: BTreeMap<String, Gateway> = BTreeMap::new();
    let mut payments_issued = 0;
    for leg in plan.legs() {
        let buyer = &prosumers[leg.buyer];
        if !admins.contains_key(&buyer.msp_id) {
            let org = file
                .organizations
                .iter()
                .find(|o| o.msp_id == buyer.msp_id)
                .expect("a prosumer's organization is in network.json");
            let admin = org.admins.first().with_context(|| {
                format!(
                    "network.json lists no admin of {} to issue payment to its prosumers",
                    org.msp_id
                )
            })?;
            let signer = SigningIdentity::load(
                &org.msp_id,
                &network_dir.join(&admin.cert),
                &network_dir.join(&admin.key),
            )
            .with_context(|| format!("loading {} of {}", admin.name, org.msp_id))?;
            let gateway = connect_peer(&buyer.peer, &network_dir, signer).await?;
            admins.insert(buyer.msp_id.clone(), gateway.with_timeout(call_timeout));
        }
        let admin = contract_of(&admins[&buyer.msp_id]);
        let account = buyer.account();
        let bytes = admin
            .evaluate("Balance", &[&account])
            .await
            .with_context(|| format!("reading the balance of {account}"))?;
        let balance: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("the balance of {account} is not JSON"))?;
        let cents = balance["payment_cents"].as_u64().unwrap_or(0);
        if cents < MIN_BUYER_CENTS {
            submit_agreed(
                &admin,
                "IssuePayment",
                &[&account, &ISSUE_CENTS.to_string()],
            )
            .await
            .with_context(|| format!("issuing payment to {account}"))?;
            payments_issued += 1;
        }
    }

    // Every client's offers, posted by its seller.
    let limit = Arc::new(tokio::sync::Semaphore::new(SETUP_IN_FLIGHT));
    let mut posts = tokio::task::JoinSet::new();
    for leg in plan.legs() {
        let seller = contract_of(gateway_of(leg.seller));
        let who = prosumers[leg.seller].account();
        for offer in &leg.offers {
            let permit = limit
                .clone()
                .acquire_owned()
                .await
                .context("the setup's limiter closed")?;
            let (seller, who, offer) = (seller.clone(), who.clone(), offer.clone());
            posts.spawn(async move {
                let _permit = permit;
                let args = [
                    offer.id.as_str(),
                    &offer.period.to_string(),
                    &OFFER_WH.to_string(),
                    &PRICE_CENTS_PER_KWH.to_string(),
                ];
                submit_agreed(&seller, "PostOffer", &args)
                    .await
                    .with_context(|| format!("{who} posting offer {}", offer.id))
                    .map(|_| ())
            });
        }
    }
    let mut offers_posted = 0;
    while let Some(posted) = posts.join_next().await {
        posted.context("an offer's task failed")??;
        offers_posted += 1;
    }

    let clients: Vec<Client> = plan
        .clients
        .iter()
        .map(|c| Client {
            legs: c
                .legs
                .iter()
                .map(|leg| ClientLeg {
                    contract: contract_of(gateway_of(leg.buyer)),
                    offers: leg.offers.clone(),
                })
                .collect(),
            started: Arc::new(AtomicU64::new(0)),
        })
        .collect();
    let joined = |f: &dyn Fn(&Prosumer) -> String| {
        let mut seen: Vec<String> = Vec::new();
        for leg in plan.legs() {
            let v = f(&prosumers[leg.buyer]);
            if !seen.contains(&v) {
                seen.push(v);
            }
        }
        seen.join(",")
    };
    Ok(Prepared {
        mode,
        exclusive: true,
        org: joined(&|p| p.msp_id.clone()),
        gateway_peer: joined(&|p| p.peer.name.clone()),
        endpoint: joined(&|p| p.peer.endpoint.clone()),
        connections: gateways.len(),
        network_dir,
        energy: Some(EnergySetup {
            prosumers: prosumers.len(),
            buyers: plan
                .legs()
                .map(|leg| prosumers[leg.buyer].account())
                .collect(),
            sellers: plan
                .legs()
                .map(|leg| prosumers[leg.seller].account())
                .collect(),
            periods: plan.periods.clone(),
            trade_wh: TRADE_WH,
            offers_posted,
            payments_issued,
            setup_seconds: started.elapsed().as_secs_f64(),
        }),
        clients,
        keys: None,
        preloaded: None,
    })
}

// ---------------------------------------------------------------------------------------------
// The basic workloads: their clients, and the preloaded keys of basic-update and basic-read.
// ---------------------------------------------------------------------------------------------

/// Connects the basic workloads' clients: `--connections` gateways to the chosen peer, all
/// signing as `--user`; for basic-update and basic-read, makes sure the `--keys` assets are
/// there first ([`preload`]).
async fn prepare_basic(args: &GatewayArgs, mode: Mode) -> anyhow::Result<Prepared> {
    let target = resolve_target(args)?;
    let call_timeout = Duration::from_secs_f64(args.timeout_seconds);
    let chaincode = args
        .chaincode
        .clone()
        .unwrap_or_else(|| args.workload.default_chaincode().to_owned());
    let mut clients = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let signer = SigningIdentity::load(&target.msp_id, &target.cert, &target.key)
            .with_context(|| format!("loading {} of {}", args.user, target.msp_id))?;
        let gateway = Gateway::connect(
            &target.endpoint,
            &target.tls_ca_pem,
            &target.server_name,
            signer,
        )
        .await
        .with_context(|| format!("connecting to {}", target.peer_name))?
        .with_timeout(call_timeout);
        clients.push(Client {
            legs: Arc::from([ClientLeg {
                contract: gateway.network(&args.channel).contract(&chaincode),
                offers: Vec::new(),
            }]),
            started: Arc::new(AtomicU64::new(0)),
        });
    }
    let (keys, preloaded) = if args.workload.uses_keys() {
        let keys = KeySet::new(args.keys, clock_seed());
        let contracts: Vec<Contract> = clients
            .iter()
            .flat_map(|c| c.legs.iter().map(|leg| leg.contract.clone()))
            .collect();
        let report = preload(&contracts, &keys, args.preload_batch).await?;
        (Some(Arc::new(keys)), Some(report))
    } else {
        (None, None)
    };
    Ok(Prepared {
        mode,
        clients,
        exclusive: false,
        org: target.msp_id,
        gateway_peer: target.peer_name,
        endpoint: target.endpoint,
        connections: args.connections,
        network_dir: target.network_dir,
        energy: None,
        keys,
        preloaded,
    })
}

/// The most preloaded assets `--keys` accepts (each peer stores about 150 bytes per asset).
const MAX_KEYS: u64 = 10_000_000;
/// The `basic` chaincode's CreateAssets limit: the most assets one preload transaction creates.
const MAX_PRELOAD_BATCH: u64 = 10_000;
/// Assets per preload transaction unless `--preload-batch` says otherwise.
const DEFAULT_PRELOAD_BATCH: u64 = 1_000;
/// Preload transactions in flight at once.
const PRELOAD_IN_FLIGHT: usize = 8;
/// Submissions of one preload transaction in all: one that lost an MVCC conflict (with the
/// same transaction of an earlier, interrupted run) or met endorsing peers at different
/// heights is endorsed again.
const PRELOAD_ATTEMPTS: u32 = 5;
/// What the `basic` chaincode says when an asset to create is already there.
const ALREADY_EXISTS_TEXT: &str = "already exists";
/// SplitMix64's increment (2⁶⁴ divided by the golden ratio, odd).
const SPLITMIX_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// The preloaded assets of basic-update and basic-read, `{prefix}0` … `{prefix}{count - 1}`,
/// and the random source their keys are drawn from. The prefix names the count, so sets of
/// different sizes never mix and every run with the same `--keys` finds the same set.
#[derive(Debug)]
struct KeySet {
    prefix: String,
    count: u64,
    /// SplitMix64's counter: each draw adds [`SPLITMIX_GAMMA`] and mixes the sum, so draws
    /// from concurrent clients are lock-free and never repeat the same state.
    state: AtomicU64,
}

impl KeySet {
    /// The set of `count` assets, its draws seeded with `seed`.
    fn new(count: u64, seed: u64) -> KeySet {
        KeySet {
            prefix: format!("bench-n{count}-"),
            count,
            state: AtomicU64::new(seed),
        }
    }

    /// The id of asset number `n`.
    fn key(&self, n: u64) -> String {
        format!("{}{n}", self.prefix)
    }

    /// The id of the set's last asset: the preload creates it last, so its presence means the
    /// whole set's.
    fn last_key(&self) -> String {
        self.key(self.count.saturating_sub(1))
    }

    /// A number in `0..count`, uniformly at random.
    fn random_number(&self) -> u64 {
        let x = self
            .state
            .fetch_add(SPLITMIX_GAMMA, Ordering::Relaxed)
            .wrapping_add(SPLITMIX_GAMMA);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // 64 random bits times the count, keeping the high word: uniform on 0..count up to a
        // bias below count / 2⁶⁴.
        let n = (u128::from(z) * u128::from(self.count)) >> 64;
        u64::try_from(n).expect("the high word of a 64 × 64-bit product fits in 64 bits")
    }

    /// The id of an asset drawn uniformly at random.
    fn random_key(&self) -> String {
        self.key(self.random_number())
    }
}

/// A seed from the clock, different on every run.
fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The preload's transactions as `(first number, count)`: `batch` assets each, the last
/// shorter when `batch` does not divide `count`.
fn preload_batches(count: u64, batch: u64) -> Vec<(u64, u64)> {
    let batch = batch.max(1);
    (0..count.div_ceil(batch))
        .map(|i| {
            let first = i * batch;
            (first, batch.min(count - first))
        })
        .collect()
}

/// What the preload of basic-update and basic-read did, reported with the results.
#[derive(Debug, Serialize)]
struct PreloadReport {
    /// Preloaded assets the keys are drawn from.
    keys: u64,
    /// Their ids: this prefix and a number in 0 … keys − 1.
    prefix: String,
    /// The set was already there (its last asset exists), so nothing was submitted.
    already_present: bool,
    /// Assets per preload transaction.
    batch: u64,
    /// CreateAssets transactions this run committed.
    transactions: u64,
    /// Preload transactions skipped because their assets were already there (an earlier run
    /// stopped part-way).
    transactions_present: u64,
    /// How long the preload (or the check that made it unnecessary) took; not measured.
    seconds: f64,
}

/// How one preload transaction ended.
enum BatchOutcome {
    /// Committed VALID: its assets were created.
    Created(u64),
    /// Its assets were already there.
    Present(u64),
}

/// Creates the assets `first .. first + count` of `keys` in one CreateAssets transaction.
async fn create_batch(
    contract: Contract,
    prefix: String,
    first: u64,
    count: u64,
) -> anyhow::Result<BatchOutcome> {
    match contract
        .submit(
            "CreateAssets",
            &[&prefix, &first.to_string(), &count.to_string()],
        )
        .await
    {
        Ok(_) => Ok(BatchOutcome::Created(count)),
        Err(e) if e.to_string().contains(ALREADY_EXISTS_TEXT) => Ok(BatchOutcome::Present(count)),
        Err(e) => Err(e).with_context(|| {
            format!(
                "creating the assets {prefix}{first} … {prefix}{} (CreateAssets)",
                first + count - 1
            )
        }),
    }
}

/// Counts the preload's progress and reports it on stderr about every 5 %.
struct PreloadProgress {
    total: u64,
    done: u64,
    transactions: u64,
    transactions_present: u64,
    started: Instant,
    reported_step: u64,
}

impl PreloadProgress {
    fn add(&mut self, outcome: BatchOutcome) {
        let n = match outcome {
            BatchOutcome::Created(n) => {
                self.transactions += 1;
                n
            }
            BatchOutcome::Present(n) => {
                self.transactions_present += 1;
                n
            }
        };
        self.done += n;
        let step = self.done * 20 / self.total.max(1);
        if step > self.reported_step {
            self.reported_step = step;
            let elapsed = self.started.elapsed().as_secs_f64();
            eprintln!(
                "preload: {} of {} assets ({}%) after {elapsed:.1} s, {:.0} assets/s",
                self.done,
                self.total,
                self.done * 100 / self.total.max(1),
                self.done as f64 / elapsed.max(1e-9)
            );
        }
    }
}

/// Makes sure the assets of `keys` exist before the warm-up (none of this is measured). When
/// the set's last asset is there, nothing is done. Otherwise CreateAssets transactions of
/// `batch` assets go through `contracts` in turn, [`PRELOAD_IN_FLIGHT`] at once, and the one
/// holding the last asset only after every other one committed, so that the last asset's
/// presence means the whole set's; a transaction whose assets are already there (an earlier
/// run stopped part-way) is skipped. Progress goes to stderr.
async fn preload(
    contracts: &[Contract],
    keys: &KeySet,
    batch: u64,
) -> anyhow::Result<PreloadReport> {
    let started = Instant::now();
    let last_key = keys.last_key();
    let checker = contracts
        .first()
        .context("no connection to preload the keys through")?;
    let exists = checker
        .evaluate("AssetExists", &[&last_key])
        .await
        .with_context(|| format!("asking whether the preloaded asset {last_key} exists"))?;
    let mut report = PreloadReport {
        keys: keys.count,
        prefix: keys.prefix.clone(),
        already_present: exists == b"true",
        batch,
        transactions: 0,
        transactions_present: 0,
        seconds: 0.0,
    };
    if report.already_present {
        eprintln!(
            "preload: the {} assets {}0 … {last_key} are already there",
            keys.count, keys.prefix
        );
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    let mut batches = preload_batches(keys.count, batch);
    let (last_first, last_count) = batches
        .pop()
        .expect("a set of at least one asset has a batch");
    eprintln!(
        "preload: creating the {} assets {}0 … {last_key}, {} per transaction, {} transactions in flight",
        keys.count, keys.prefix, batch, PRELOAD_IN_FLIGHT
    );
    let contracts: Vec<Contract> = contracts
        .iter()
        .map(|c| {
            c.clone()
                .with_retry(RetryPolicy::idempotent(PRELOAD_ATTEMPTS))
        })
        .collect();
    let mut progress = PreloadProgress {
        total: keys.count,
        done: 0,
        transactions: 0,
        transactions_present: 0,
        started,
        reported_step: 0,
    };
    let limit = Arc::new(tokio::sync::Semaphore::new(PRELOAD_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (first, count)) in batches.into_iter().enumerate() {
        let permit = limit
            .clone()
            .acquire_owned()
            .await
            .context("the preload's limiter closed")?;
        while let Some(done) = tasks.try_join_next() {
            progress.add(done.context("a preload task failed")??);
        }
        let contract = contracts[i % contracts.len()].clone();
        let prefix = keys.prefix.clone();
        tasks.spawn(async move {
            let _permit = permit;
            create_batch(contract, prefix, first, count).await
        });
    }
    while let Some(done) = tasks.join_next().await {
        progress.add(done.context("a preload task failed")??);
    }
    let last_contract = contracts[0].clone();
    progress.add(create_batch(last_contract, keys.prefix.clone(), last_first, last_count).await?);
    report.transactions = progress.transactions;
    report.transactions_present = progress.transactions_present;
    report.seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "preload: done in {:.1} s ({} transactions, {} already there)",
        report.seconds, report.transactions, report.transactions_present
    );
    Ok(report)
}

/// One client of the load: its legs (the basic workloads: one), taken in turn.
#[derive(Clone)]
struct Client {
    legs: Arc<[ClientLeg]>,
    /// Transactions this client has started (picks its next leg and offer).
    started: Arc<AtomicU64>,
}

/// A contract bound to its signer and gateway peer and, for energy-trade, the offers only it
/// buys from, one per period, taken in turn.
struct ClientLeg {
    contract: Contract,
    offers: Vec<OfferRef>,
}

/// Everything [`measure`] needs, prepared before the warm-up.
struct Prepared {
    /// The mode, its in-flight limit lowered to the clients when they are exclusive.
    mode: Mode,
    clients: Vec<Client>,
    /// Each client runs one transaction at a time (fixed rate: each start takes a free one).
    exclusive: bool,
    /// The signing organization(s), gateway peer(s) and endpoint(s), for the report.
    org: String,
    gateway_peer: String,
    endpoint: String,
    connections: usize,
    /// The folder holding network.json: node configs live under `nodes/` in it.
    network_dir: PathBuf,
    energy: Option<EnergySetup>,
    /// basic-update, basic-read: the preloaded assets the keys are drawn from.
    keys: Option<Arc<KeySet>>,
    /// basic-update, basic-read: what the preload did.
    preloaded: Option<PreloadReport>,
}

/// How the load is offered.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// `concurrency` clients, each waits for its transaction's commit before the next.
    ClosedLoop { concurrency: usize },
    /// Starts `rate` transactions per second, at most `max_in_flight` at once.
    FixedRate { rate: f64, max_in_flight: usize },
}

/// Checks the options and picks the mode; every limit is explicit so a run is always bounded.
fn mode_of(args: &GatewayArgs) -> anyhow::Result<Mode> {
    ensure!(
        args.seconds > 0.0 && args.seconds <= 3600.0,
        "--seconds must be in (0, 3600]"
    );
    ensure!(
        (0.0..=600.0).contains(&args.warmup_seconds),
        "--warmup-seconds must be in [0, 600]"
    );
    ensure!(
        args.timeout_seconds > 0.0 && args.timeout_seconds <= 600.0,
        "--timeout-seconds must be in (0, 600]"
    );
    ensure!(
        (1..=64).contains(&args.connections),
        "--connections must be in [1, 64]"
    );
    ensure!(
        (1..=96).contains(&args.periods),
        "--periods must be in [1, 96] (a day of 15-minute periods)"
    );
    ensure!(
        (1..=MAX_KEYS).contains(&args.keys),
        "--keys must be in [1, {MAX_KEYS}]"
    );
    ensure!(
        (1..=MAX_PRELOAD_BATCH).contains(&args.preload_batch),
        "--preload-batch must be in [1, {MAX_PRELOAD_BATCH}] (the basic chaincode's CreateAssets limit)"
    );
    match (args.concurrency, args.rate) {
        (Some(_), Some(_)) => bail!("--concurrency and --rate exclude each other"),
        (_, Some(rate)) => {
            ensure!(
                rate > 0.0 && rate <= 100_000.0,
                "--rate must be in (0, 100000] transactions per second"
            );
            ensure!(
                (1..=100_000).contains(&args.max_in_flight),
                "--max-in-flight must be in [1, 100000]"
            );
            Ok(Mode::FixedRate {
                rate,
                max_in_flight: args.max_in_flight,
            })
        }
        (concurrency, None) => {
            let concurrency = concurrency.unwrap_or(16);
            ensure!(
                (1..=10_000).contains(&concurrency),
                "--concurrency must be in [1, 10000]"
            );
            Ok(Mode::ClosedLoop { concurrency })
        }
    }
}

/// The step of a transaction that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Propose,
    /// basic-read's only call.
    Evaluate,
    Endorse,
    Submit,
    CommitStatus,
    /// The whole transaction outlived its deadline.
    Deadline,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Propose => "propose",
            Phase::Evaluate => "evaluate",
            Phase::Endorse => "endorse",
            Phase::Submit => "submit",
            Phase::CommitStatus => "commit_status",
            Phase::Deadline => "deadline",
        }
    }
}

/// What became of one transaction (or one start the open loop had to shed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Committed with this `TxValidationCode`.
    Committed(i32),
    /// Evaluated (basic-read): answered by the gateway peer, never ordered.
    Evaluated,
    /// A call failed; `code` is the gRPC status name (or the SDK's kind of failure).
    Failed { phase: Phase, code: &'static str },
    /// Not started: `--max-in-flight` transactions were already in flight.
    Shed,
}

/// One transaction (or evaluation): when its proposal was created, when its outcome was known.
#[derive(Debug, Clone, Copy)]
struct Sample {
    start: Instant,
    end: Instant,
    outcome: Outcome,
    /// Endorsements tried again because the endorsing peers were at different heights.
    endorse_retries: u32,
}

/// Collects samples from every client task, plus the first message of each kind of error so a
/// failing run says why.
#[derive(Default)]
struct Recorder {
    samples: Mutex<Vec<Sample>>,
    error_examples: Mutex<BTreeMap<String, String>>,
}

impl Recorder {
    fn record(&self, sample: Sample) {
        self.samples
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(sample);
    }

    fn note_error(&self, key: String, message: String) {
        let mut examples = self
            .error_examples
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if examples.len() < 16 {
            examples.entry(key).or_insert(message);
        }
    }

    fn take(&self) -> (Vec<Sample>, BTreeMap<String, String>) {
        let samples = std::mem::take(
            &mut *self
                .samples
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        let examples = std::mem::take(
            &mut *self
                .error_examples
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        (samples, examples)
    }
}

/// Asset ids unique across runs against the same ledger: a per-run prefix plus a counter.
struct IdSource {
    prefix: String,
    next: AtomicU64,
}

impl IdSource {
    fn new() -> IdSource {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        IdSource {
            prefix: format!("bench{nanos:x}"),
            next: AtomicU64::new(0),
        }
    }

    fn next(&self) -> String {
        format!(
            "{}-{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// The canonical gRPC name of a status code number.
fn grpc_code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNRECOGNISED_CODE",
    }
}

/// How a failed step is counted: `DSO_REFUSED` for an endorsement the DSO refused because the
/// trade is not feasible on its grid, otherwise [`error_code`].
fn failure_code(phase: Phase, err: &SdkError) -> &'static str {
    if phase == Phase::Endorse && err.to_string().contains(DSO_REFUSAL_TEXT) {
        DSO_REFUSED
    } else {
        error_code(err)
    }
}

/// The error code of trades the DSO refused to endorse.
const DSO_REFUSED: &str = "DSO_REFUSED";

/// How an SDK failure is counted: the gRPC status name, or the kind of local failure.
fn error_code(err: &SdkError) -> &'static str {
    match err {
        SdkError::Gateway { code, .. } => grpc_code_name(*code as i32),
        SdkError::Connect { .. } => "CONNECT",
        SdkError::Response(_) => "BAD_RESPONSE",
        SdkError::Invalid { .. } => "INVALID",
        SdkError::Identity(_) => "IDENTITY",
        SdkError::Random => "RANDOM",
        SdkError::Signer(_) | SdkError::SignatureFormat(_) => "SIGNER",
        SdkError::Checkpoint { .. } => "CHECKPOINT",
        SdkError::Deliver { .. } => "DELIVER",
    }
}

/// Fabric's name of a validation code (`VALID`, `MVCC_READ_CONFLICT`, …).
fn validation_code_name(code: i32) -> String {
    TxValidationCode::try_from(code)
        .map(|c| c.as_str_name().to_owned())
        .unwrap_or_else(|_| format!("CODE_{code}"))
}

/// Which leg and which of its offers the `k`-th transaction of a client with `legs` legs of
/// `offers` offers each uses: the legs in turn, and each leg's offers (periods) in turn.
fn pick(k: u64, legs: usize, offers: usize) -> (usize, usize) {
    let legs = legs.max(1) as u64;
    let offers = offers.max(1) as u64;
    let leg = k % legs;
    let offer = (k / legs) % offers;
    (
        usize::try_from(leg).unwrap_or(0),
        usize::try_from(offer).unwrap_or(0),
    )
}

/// The proposal of the next transaction of `workload` by `client`; `keys` are the preloaded
/// assets of basic-update and basic-read.
fn next_proposal(
    workload: Workload,
    client: &Client,
    ids: &IdSource,
    keys: Option<&KeySet>,
) -> Result<gridledger_sdk::Proposal, SdkError> {
    let k = client.started.fetch_add(1, Ordering::Relaxed);
    let (leg, offer) = pick(
        k,
        client.legs.len(),
        client.legs.first().map_or(0, |l| l.offers.len()),
    );
    let leg = client
        .legs
        .get(leg)
        .ok_or_else(|| SdkError::Response("the client has no contract".into()))?;
    match workload {
        Workload::BasicCreate => {
            let id = ids.next();
            leg.contract
                .proposal("CreateAsset", &[&id, "blue", "5", "bench", "100"])
        }
        Workload::BasicUpdate | Workload::BasicRead => {
            let keys =
                keys.ok_or_else(|| SdkError::Response("no preloaded keys to draw from".into()))?;
            let key = keys.random_key();
            if workload == Workload::BasicRead {
                leg.contract.proposal("ReadAsset", &[&key])
            } else {
                // Read the asset, write it back with a new owner (unique, so every write
                // changes the value).
                let owner = ids.next();
                leg.contract.proposal("TransferAsset", &[&key, &owner])
            }
        }
        Workload::EnergyTrade => {
            let offer = leg
                .offers
                .get(offer)
                .ok_or_else(|| SdkError::Response("the client has no offer to buy from".into()))?;
            let id = ids.next();
            leg.contract.proposal(
                "AcceptOffer",
                &[
                    &id,
                    &offer.id,
                    &offer.period.to_string(),
                    &TRADE_WH.to_string(),
                ],
            )
        }
    }
}

/// Runs one transaction of `ctx.workload` by `client` to its commit status (basic-read: one
/// evaluation to its answer) and records it. The proposal is endorsed again (at most
/// [`MISMATCH_RETRIES`] times) while the endorsing peers are at different heights, as a client
/// would; the latency includes those tries.
async fn one_transaction(ctx: &LoadContext, client: &Client) {
    let start = Instant::now();
    let retries = AtomicU64::new(0);
    let run = async {
        let proposal = next_proposal(ctx.workload, client, &ctx.ids, ctx.keys.as_deref())
            .map_err(|e| (Phase::Propose, e))?;
        if ctx.workload.is_read() {
            proposal
                .evaluate()
                .await
                .map_err(|e| (Phase::Evaluate, e))?;
            return Ok(Outcome::Evaluated);
        }
        let transaction = loop {
            match proposal.endorse().await {
                Err(e)
                    if is_mismatch(&e)
                        && retries.load(Ordering::Relaxed) < u64::from(MISMATCH_RETRIES) =>
                {
                    let tried = retries.fetch_add(1, Ordering::Relaxed) + 1;
                    tokio::time::sleep(Duration::from_millis(5 * tried.min(20))).await;
                }
                other => break other.map_err(|e| (Phase::Endorse, e))?,
            }
        };
        let commit = transaction.submit().await.map_err(|e| (Phase::Submit, e))?;
        let status = commit
            .status()
            .await
            .map_err(|e| (Phase::CommitStatus, e))?;
        Ok::<Outcome, (Phase, SdkError)>(Outcome::Committed(status.code))
    };
    let outcome = match tokio::time::timeout(ctx.deadline, run).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err((phase, err))) => {
            let code = failure_code(phase, &err);
            ctx.recorder
                .note_error(format!("{}:{code}", phase.name()), err.to_string());
            Outcome::Failed { phase, code }
        }
        Err(_) => Outcome::Failed {
            phase: Phase::Deadline,
            code: "DEADLINE_EXCEEDED",
        },
    };
    ctx.recorder.record(Sample {
        start,
        end: Instant::now(),
        outcome,
        endorse_retries: u32::try_from(retries.load(Ordering::Relaxed)).unwrap_or(u32::MAX),
    });
}

/// Everything a client task needs.
#[derive(Clone)]
struct LoadContext {
    workload: Workload,
    ids: Arc<IdSource>,
    /// basic-update, basic-read: the preloaded assets the keys are drawn from.
    keys: Option<Arc<KeySet>>,
    recorder: Arc<Recorder>,
    /// Deadline of a whole transaction (three calls).
    deadline: Duration,
    /// No transaction starts at or after this instant.
    end: Instant,
}

/// Offers the load until `ctx.end`, then waits at most `drain` for the transactions in flight.
/// Returns how many were still in flight when it gave up on them. Closed loop: task `i` uses
/// client `i` (modulo their number). Fixed rate: starts take the clients round-robin, or, when
/// `exclusive`, the client free for the longest (a start with none free is shed).
async fn generate(
    mode: Mode,
    clients: Vec<Client>,
    exclusive: bool,
    ctx: LoadContext,
    drain: Duration,
) -> u64 {
    let mut tasks = tokio::task::JoinSet::new();
    if clients.is_empty() {
        return 0;
    }
    match mode {
        Mode::ClosedLoop { concurrency } => {
            for i in 0..concurrency {
                let client = clients[i % clients.len()].clone();
                let ctx = ctx.clone();
                tasks.spawn(async move {
                    while Instant::now() < ctx.end {
                        one_transaction(&ctx, &client).await;
                    }
                });
            }
        }
        Mode::FixedRate {
            rate,
            max_in_flight,
        } => {
            let start = Instant::now();
            let free: Arc<Mutex<std::collections::VecDeque<usize>>> =
                Arc::new(Mutex::new((0..clients.len()).collect()));
            let mut k: u64 = 0;
            loop {
                let due = start + Duration::from_secs_f64(k as f64 / rate);
                if due >= ctx.end {
                    break;
                }
                if due > Instant::now() {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
                }
                while tasks.try_join_next().is_some() {}
                let slot = if tasks.len() >= max_in_flight {
                    None
                } else if exclusive {
                    free.lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .pop_front()
                } else {
                    usize::try_from(k % clients.len() as u64).ok()
                };
                match slot {
                    None => ctx.recorder.record(Sample {
                        start: due,
                        end: due,
                        outcome: Outcome::Shed,
                        endorse_retries: 0,
                    }),
                    Some(slot) => {
                        let client = clients[slot].clone();
                        let ctx = ctx.clone();
                        let free = free.clone();
                        tasks.spawn(async move {
                            one_transaction(&ctx, &client).await;
                            if exclusive {
                                free.lock()
                                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                                    .push_back(slot);
                            }
                        });
                    }
                }
                k += 1;
            }
        }
    }
    let drained =
        tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        let abandoned = tasks.len() as u64;
        tasks.abort_all();
        abandoned
    } else {
        0
    }
}

/// A node process of the network under test.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeProcess {
    /// The node's name (its folder under `nodes/`).
    name: String,
    pid: u32,
}

/// The node processes (`gridledger peer|orderer start --config DIR/nodes/<name>/….toml`) of the
/// network in `network_dir`, found through `/proc/*/cmdline`; sorted orderers first.
fn find_node_processes(network_dir: &Path) -> Vec<NodeProcess> {
    let nodes_dir = network_dir.join("nodes");
    let own_pid = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own_pid {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cwd = std::fs::read_link(entry.path().join("cwd")).ok();
        if let Some(name) = node_name_in_cmdline(&cmdline, &nodes_dir, cwd.as_deref()) {
            found.push(NodeProcess { name, pid });
        }
    }
    found.sort_by(|a, b| {
        let rank = |p: &NodeProcess| !p.name.starts_with("orderer");
        (rank(a), &a.name).cmp(&(rank(b), &b.name))
    });
    found
}

/// The node name when a NUL-separated command line runs a node whose config is
/// `nodes_dir/<name>/{peer,orderer}.toml` (a relative path is taken from the process's `cwd`).
fn node_name_in_cmdline(cmdline: &[u8], nodes_dir: &Path, cwd: Option<&Path>) -> Option<String> {
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let is_node = args
        .iter()
        .any(|a| *a == b"peer".as_slice() || *a == b"orderer".as_slice());
    if !is_node {
        return None;
    }
    args.iter().find_map(|arg| {
        let arg = Path::new(std::str::from_utf8(arg).ok()?);
        let file = arg.file_name()?.to_str()?;
        if file != "peer.toml" && file != "orderer.toml" {
            return None;
        }
        let absolute = if arg.is_absolute() {
            arg.to_path_buf()
        } else {
            cwd?.join(arg)
        };
        let node_dir = absolute.parent()?;
        (node_dir.parent()? == nodes_dir)
            .then(|| node_dir.file_name()?.to_str().map(str::to_owned))
            .flatten()
    })
}

/// User plus system CPU ticks from the text of `/proc/<pid>/stat` (fields 14 and 15; the
/// command name in parentheses may itself contain spaces and parentheses).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` field (`VmRSS`, `VmHWM`, …) from the text of `/proc/<pid>/status`, in KiB.
fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat).map(|t| t as f64 / CLOCK_TICKS_PER_SECOND)
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&status, field)
}

/// Samples the resident memory of some processes on its own thread and keeps each maximum.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<HashMap<u32, u64>>,
}

impl RssSampler {
    fn start(pids: Vec<u32>) -> anyhow::Result<RssSampler> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                let mut peaks: HashMap<u32, u64> = HashMap::new();
                while !flag.load(Ordering::Relaxed) {
                    for &pid in &pids {
                        if let Some(kib) = status_kib(pid, "VmRSS") {
                            let peak = peaks.entry(pid).or_insert(0);
                            *peak = (*peak).max(kib);
                        }
                    }
                    std::thread::sleep(RSS_SAMPLE_INTERVAL);
                }
                peaks
            })
            .context("starting the memory sampler")?;
        Ok(RssSampler { stop, thread })
    }

    /// Peak sampled VmRSS per pid, in KiB.
    fn finish(self) -> HashMap<u32, u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// Statistics of the samples that ended inside the measured window.
#[derive(Debug, Default, PartialEq)]
struct Summary {
    /// Transactions committed, whatever their validation code.
    committed: u64,
    /// Of those, VALID.
    valid: u64,
    /// Committed transactions per validation code name.
    codes: BTreeMap<String, u64>,
    /// Evaluations answered (basic-read).
    evaluated: u64,
    /// Failed transactions per `phase:GRPC_CODE`.
    errors: BTreeMap<String, u64>,
    /// Starts shed by the open loop.
    shed: u64,
    /// Of the failures, trades the DSO refused to endorse as not feasible on its grid.
    dso_refused: u64,
    /// Endorsements tried again because the endorsing peers were at different heights.
    endorse_retries: u64,
    /// Commit latencies of the committed transactions (basic-read: latencies of the answered
    /// evaluations) in ms, ascending.
    latencies_ms: Vec<f64>,
}

impl Summary {
    /// The fraction of committed transactions that lost an MVCC read conflict; `None` when
    /// nothing committed.
    fn conflict_rate(&self) -> Option<f64> {
        let conflicts = self
            .codes
            .get(TxValidationCode::MvccReadConflict.as_str_name())
            .copied()
            .unwrap_or(0);
        (self.committed > 0).then(|| conflicts as f64 / self.committed as f64)
    }
}

fn summarize(samples: &[Sample], from: Instant, to: Instant) -> Summary {
    let mut summary = Summary::default();
    for sample in samples.iter().filter(|s| s.end >= from && s.end < to) {
        summary.endorse_retries += u64::from(sample.endorse_retries);
        match sample.outcome {
            Outcome::Committed(code) => {
                summary.committed += 1;
                if code == TxValidationCode::Valid as i32 {
                    summary.valid += 1;
                }
                *summary.codes.entry(validation_code_name(code)).or_insert(0) += 1;
                summary
                    .latencies_ms
                    .push((sample.end - sample.start).as_secs_f64() * 1e3);
            }
            Outcome::Evaluated => {
                summary.evaluated += 1;
                summary
                    .latencies_ms
                    .push((sample.end - sample.start).as_secs_f64() * 1e3);
            }
            Outcome::Failed { phase, code } => {
                if code == DSO_REFUSED {
                    summary.dso_refused += 1;
                }
                *summary
                    .errors
                    .entry(format!("{}:{code}", phase.name()))
                    .or_insert(0) += 1;
            }
            Outcome::Shed => summary.shed += 1,
        }
    }
    summary.latencies_ms.sort_by(f64::total_cmp);
    summary
}

/// The nearest-rank percentile (`p` in 0..=100) of ascending values; `None` when empty.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// CPU and memory of one process over the measured window.
#[derive(Debug, Serialize)]
struct ProcessReport {
    name: String,
    pid: u32,
    /// User + system CPU seconds spent inside the window.
    cpu_seconds: Option<f64>,
    /// `cpu_seconds` over the window length, in percent of one core.
    cpu_percent: Option<f64>,
    /// Highest VmRSS sampled every 100 ms during warm-up and window, in MiB.
    peak_rss_mib: Option<f64>,
    /// VmHWM at the end: the peak since the process started, in MiB.
    lifetime_peak_rss_mib: Option<f64>,
}

/// The benchmark's result; `--json` prints it as is.
#[derive(Debug, Serialize)]
struct Report {
    workload: Workload,
    mode: &'static str,
    concurrency: Option<usize>,
    rate: Option<f64>,
    max_in_flight: Option<usize>,
    seconds: f64,
    warmup_seconds: f64,
    org: String,
    gateway_peer: String,
    endpoint: String,
    connections: usize,
    /// Committed transactions (any validation code) that completed inside the window.
    committed: u64,
    /// basic-read: evaluations answered inside the window (nothing is committed).
    evaluated: Option<u64>,
    /// VALID transactions committed per second (basic-read: evaluations answered per second).
    tps: f64,
    /// Transactions committed (any code) per second.
    committed_tps: f64,
    /// Commit latency percentiles (basic-read: of the Evaluate call), ms.
    p50_ms: Option<f64>,
    p95_ms: Option<f64>,
    p99_ms: Option<f64>,
    mean_ms: Option<f64>,
    max_ms: Option<f64>,
    /// Committed transactions per validation code (basic-read: none, nothing is ordered).
    codes: BTreeMap<String, u64>,
    /// MVCC_READ_CONFLICT over committed transactions (`null` when nothing committed, and for
    /// basic-read).
    conflict_rate: Option<f64>,
    /// What the figures mean when they differ from the ordered workloads' (basic-read).
    note: Option<&'static str>,
    errors: BTreeMap<String, u64>,
    error_examples: BTreeMap<String, String>,
    shed: u64,
    /// Transactions still in flight when the drain deadline passed (not counted anywhere else).
    abandoned: u64,
    /// Endorsements tried again inside the window because the endorsing peers were at
    /// different heights (Gateway: ProposalResponsePayloads do not match).
    endorse_retries: u64,
    /// energy-trade: trades inside the window the DSO refused to endorse as not feasible on its
    /// grid (also counted in `errors` as `endorse:DSO_REFUSED`).
    dso_refused: Option<u64>,
    /// energy-trade: what the setup did.
    energy: Option<EnergySetup>,
    /// basic-update, basic-read: the preloaded assets and what their preload did.
    keys: Option<PreloadReport>,
    processes: Vec<ProcessReport>,
    /// CPU seconds of all node processes inside the window.
    server_cpu_seconds: f64,
    /// Node CPU per committed transaction (basic-read: per answered evaluation), ms.
    server_cpu_ms_per_tx: Option<f64>,
    client: ProcessReport,
    client_cpu_ms_per_tx: Option<f64>,
    /// The machine's 1-minute load average at the end of the window (other work on a shared
    /// box shows up here).
    load_average_1m: Option<f64>,
}

fn gateway(args: &GatewayArgs) -> anyhow::Result<()> {
    let mode = mode_of(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(async {
        let prepared = match args.workload {
            Workload::BasicCreate | Workload::BasicUpdate | Workload::BasicRead => {
                prepare_basic(args, mode).await?
            }
            Workload::EnergyTrade => prepare_energy(args, mode).await?,
        };
        measure(args, prepared).await
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

async fn measure(args: &GatewayArgs, prepared: Prepared) -> anyhow::Result<Report> {
    let call_timeout = Duration::from_secs_f64(args.timeout_seconds);
    let Prepared {
        mode,
        clients,
        exclusive,
        org,
        gateway_peer,
        endpoint,
        connections,
        network_dir,
        energy,
        keys,
        preloaded,
    } = prepared;

    let nodes = find_node_processes(&network_dir);
    if nodes.is_empty() && !args.json {
        eprintln!(
            "note: no node processes of {} found in /proc; server CPU and memory will be missing",
            network_dir.display()
        );
    }
    let own_pid = std::process::id();
    let mut sampled: Vec<u32> = nodes.iter().map(|n| n.pid).collect();
    sampled.push(own_pid);
    let sampler = RssSampler::start(sampled)?;

    let warmup = Duration::from_secs_f64(args.warmup_seconds);
    let window = Duration::from_secs_f64(args.seconds);
    let begin = Instant::now();
    let window_start = begin + warmup;
    let window_end = window_start + window;
    let recorder = Arc::new(Recorder::default());
    let ctx = LoadContext {
        workload: args.workload,
        ids: Arc::new(IdSource::new()),
        keys,
        recorder: recorder.clone(),
        deadline: call_timeout * 3 + Duration::from_secs(1),
        end: window_end,
    };
    // In-flight transactions get one whole-transaction deadline to finish after the window.
    let drain = ctx.deadline;
    let load = tokio::spawn(generate(mode, clients, exclusive, ctx, drain));

    tokio::time::sleep_until(tokio::time::Instant::from_std(window_start)).await;
    let cpu_before: Vec<Option<f64>> = nodes.iter().map(|n| cpu_seconds(n.pid)).collect();
    let client_before = cpu_seconds(own_pid);
    tokio::time::sleep_until(tokio::time::Instant::from_std(window_end)).await;
    let cpu_after: Vec<Option<f64>> = nodes.iter().map(|n| cpu_seconds(n.pid)).collect();
    let client_after = cpu_seconds(own_pid);
    let load_average_1m = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok());
    let measured = window_end.duration_since(window_start).as_secs_f64();

    let abandoned = load.await.context("the load generator failed")?;
    let peaks = sampler.finish();
    let (samples, error_examples) = recorder.take();
    let summary = summarize(&samples, window_start, window_end);

    let process_report = |name: String, pid: u32, before: Option<f64>, after: Option<f64>| {
        let cpu = before.zip(after).map(|(b, a)| (a - b).max(0.0));
        ProcessReport {
            name,
            pid,
            cpu_seconds: cpu,
            cpu_percent: cpu.map(|c| 100.0 * c / measured),
            peak_rss_mib: peaks.get(&pid).map(|&k| k as f64 / 1024.0),
            lifetime_peak_rss_mib: status_kib(pid, "VmHWM").map(|k| k as f64 / 1024.0),
        }
    };
    let processes: Vec<ProcessReport> = nodes
        .iter()
        .zip(cpu_before.iter().zip(&cpu_after))
        .map(|(n, (&b, &a))| process_report(n.name.clone(), n.pid, b, a))
        .collect();
    let client = process_report("client".into(), own_pid, client_before, client_after);
    let server_cpu_seconds: f64 = processes.iter().filter_map(|p| p.cpu_seconds).sum();
    // Per committed transaction (basic-read: per answered evaluation).
    let operations = summary.committed + summary.evaluated;
    let per_tx = |cpu: f64| (operations > 0).then(|| 1e3 * cpu / operations as f64);
    let read = args.workload.is_read();
    let lat = &summary.latencies_ms;
    let (concurrency, rate, max_in_flight, mode_name) = match mode {
        Mode::ClosedLoop { concurrency } => (Some(concurrency), None, None, "closed-loop"),
        Mode::FixedRate {
            rate,
            max_in_flight,
        } => (None, Some(rate), Some(max_in_flight), "fixed-rate"),
    };
    Ok(Report {
        workload: args.workload,
        mode: mode_name,
        concurrency,
        rate,
        max_in_flight,
        seconds: args.seconds,
        warmup_seconds: args.warmup_seconds,
        org,
        gateway_peer,
        endpoint,
        connections,
        committed: summary.committed,
        evaluated: read.then_some(summary.evaluated),
        tps: if read {
            summary.evaluated as f64 / measured
        } else {
            summary.valid as f64 / measured
        },
        committed_tps: summary.committed as f64 / measured,
        p50_ms: percentile(lat, 50.0),
        p95_ms: percentile(lat, 95.0),
        p99_ms: percentile(lat, 99.0),
        mean_ms: (!lat.is_empty()).then(|| lat.iter().sum::<f64>() / lat.len() as f64),
        max_ms: lat.last().copied(),
        conflict_rate: summary.conflict_rate(),
        note: read.then_some(READ_NOTE),
        codes: summary.codes,
        errors: summary.errors,
        error_examples,
        shed: summary.shed,
        abandoned,
        endorse_retries: summary.endorse_retries,
        dso_refused: energy.as_ref().map(|_| summary.dso_refused),
        energy,
        keys: preloaded,
        server_cpu_ms_per_tx: per_tx(server_cpu_seconds),
        server_cpu_seconds,
        client_cpu_ms_per_tx: client.cpu_seconds.and_then(per_tx),
        client,
        processes,
        load_average_1m,
    })
}

/// What basic-read's figures mean.
const READ_NOTE: &str = "basic-read evaluates ReadAsset on the gateway peer: nothing is ordered or committed, so there are no validation codes; tps is evaluations answered per second and the latencies are those of the Evaluate call";

fn print_report(r: &Report) {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1} ms"));
    let opt = |v: Option<f64>, digits: usize| {
        v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
    };
    let mode = match (r.concurrency, r.rate) {
        (Some(c), _) => format!("closed loop, {c} clients"),
        (_, Some(rate)) => format!(
            "fixed rate {rate} tx/s (at most {} in flight)",
            r.max_in_flight.unwrap_or(0)
        ),
        _ => r.mode.to_owned(),
    };
    println!(
        "{} through the Gateway: {mode}; {} s measured after {} s of warm-up",
        r.workload.name(),
        r.seconds,
        r.warmup_seconds
    );
    println!(
        "gateway {} ({}) at {}, {} connection(s)",
        r.gateway_peer, r.org, r.endpoint, r.connections
    );
    if let Some(e) = &r.energy {
        println!(
            "energy: {} buyer(s) of {} prosumers, each buying {} Wh per trade from its own offers over {} period(s) from {}; setup {:.1} s ({} offers posted, {} buyers issued payment)",
            e.buyers.len(),
            e.prosumers,
            e.trade_wh,
            e.periods.len(),
            e.periods.first().copied().unwrap_or_default(),
            e.setup_seconds,
            e.offers_posted,
            e.payments_issued
        );
    }
    if let Some(k) = &r.keys {
        let preload = if k.already_present {
            format!("already there (checked in {:.1} s)", k.seconds)
        } else {
            format!(
                "{:.1} s, {} CreateAssets transactions of {} ({} already there)",
                k.seconds, k.transactions, k.batch, k.transactions_present
            )
        };
        println!(
            "keys: drawn uniformly from {} preloaded assets {}0 … {}{}; preload {preload}",
            k.keys,
            k.prefix,
            k.prefix,
            k.keys.saturating_sub(1)
        );
    }
    if let Some(evaluated) = r.evaluated {
        println!("evaluated {evaluated} → {:.1} evaluations/s", r.tps);
    } else {
        println!(
            "committed {} → {:.1} tps VALID ({:.1} tps committed)",
            r.committed, r.tps, r.committed_tps
        );
    }
    println!(
        "{} latency: p50 {}  p95 {}  p99 {}  mean {}  max {}",
        if r.evaluated.is_some() {
            "evaluate"
        } else {
            "commit"
        },
        ms(r.p50_ms),
        ms(r.p95_ms),
        ms(r.p99_ms),
        ms(r.mean_ms),
        ms(r.max_ms)
    );
    let counts = |m: &BTreeMap<String, u64>| {
        if m.is_empty() {
            "none".to_owned()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    match (r.note, r.conflict_rate) {
        (Some(note), _) => println!("validation codes: none ({note})"),
        (None, Some(rate)) => println!(
            "validation codes: {}; conflict rate {:.3}% (MVCC_READ_CONFLICT of committed)",
            counts(&r.codes),
            100.0 * rate
        ),
        (None, None) => println!("validation codes: {}", counts(&r.codes)),
    }
    println!("errors: {}", counts(&r.errors));
    if let Some(refused) = r.dso_refused {
        println!("trades refused by the DSO (not feasible on its grid): {refused}");
    }
    if r.endorse_retries > 0 {
        println!(
            "endorsements tried again (endorsing peers at different heights): {}",
            r.endorse_retries
        );
    }
    for (key, message) in &r.error_examples {
        println!("  first {key}: {message}");
    }
    if r.rate.is_some() {
        println!("shed (over --max-in-flight): {}", r.shed);
    }
    if r.abandoned > 0 {
        println!("abandoned after the window: {}", r.abandoned);
    }
    println!(
        "{:<18} {:>8} {:>8} {:>7} {:>14} {:>14}",
        "process", "pid", "CPU s", "CPU %", "peak RSS MiB", "VmHWM MiB"
    );
    for p in r.processes.iter().chain(std::iter::once(&r.client)) {
        println!(
            "{:<18} {:>8} {:>8} {:>7} {:>14} {:>14}",
            p.name,
            p.pid,
            opt(p.cpu_seconds, 2),
            opt(p.cpu_percent, 0),
            opt(p.peak_rss_mib, 1),
            opt(p.lifetime_peak_rss_mib, 1)
        );
    }
    println!(
        "CPU per {}: server {} ms, client {} ms; load average {}",
        if r.evaluated.is_some() {
            "answered evaluation"
        } else {
            "committed transaction"
        },
        opt(r.server_cpu_ms_per_tx, 3),
        opt(r.client_cpu_ms_per_tx, 3),
        opt(r.load_average_1m, 2)
    );
}

// ---------------------------------------------------------------------------------------------
// The ordering service alone (`bench order`).
// ---------------------------------------------------------------------------------------------

/// Options of `bench order`: the 3-node Raft ordering service alone, driven by Broadcast.
#[derive(Debug, Clone, Args)]
pub struct OrderArgs {
    /// The network.json written by `gridledger up`.
    #[arg(long, value_name = "FILE")]
    pub network: PathBuf,
    /// Length of the measured window, after the warm-up.
    #[arg(long, default_value_t = 15.0)]
    pub seconds: f64,
    /// Load before the measured window; excluded from every statistic.
    #[arg(long, default_value_t = 3.0)]
    pub warmup_seconds: f64,
    /// Concurrent Broadcast streams, spread round-robin over the orderers.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Envelopes in flight per stream (each stream waits for its oldest ack beyond this).
    #[arg(long, default_value_t = 1)]
    pub window: usize,
    /// Approximate encoded size of each envelope (the transaction is padded up to it).
    #[arg(long, default_value_t = 1024)]
    pub envelope_bytes: usize,
    /// The organization whose user signs (default: the first).
    #[arg(long, value_name = "MSPID")]
    pub org: Option<String>,
    /// The user (from network.json) that signs.
    #[arg(long, default_value = "User1")]
    pub user: String,
    /// Channel.
    #[arg(long, default_value = "market")]
    pub channel: String,
    /// The orderer whose Deliver stream measures blocks (default: the first listed).
    #[arg(long, value_name = "NAME")]
    pub deliver_orderer: Option<String>,
    /// Longest wait for outstanding acks and blocks after the window.
    #[arg(long, default_value_t = 10.0)]
    pub drain_seconds: f64,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    pub json: bool,
}

/// The parts of network.json `bench order` reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderNetworkFile {
    orderers: Vec<OrdererEntry>,
    organizations: Vec<OrgEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrdererEntry {
    name: String,
    endpoint: String,
    tls_ca_cert: String,
    server_name: String,
}

/// One orderer to connect to.
#[derive(Debug, Clone)]
struct OrdererTarget {
    name: String,
    endpoint: String,
    server_name: String,
    tls_ca_pem: Vec<u8>,
}

/// Everything `bench order` resolved from network.json.
struct OrderTarget {
    orderers: Vec<OrdererTarget>,
    /// Index into `orderers` of the one whose blocks are watched.
    deliver: usize,
    signer: SigningIdentity,
    network_dir: PathBuf,
}

fn resolve_order_target(args: &OrderArgs) -> anyhow::Result<OrderTarget> {
    let path = &args.network;
    let (file, network_dir): (OrderNetworkFile, PathBuf) = read_network(path)?;
    ensure!(
        !file.orderers.is_empty(),
        "{} lists no orderers",
        path.display()
    );
    let mut orderers = Vec::with_capacity(file.orderers.len());
    for o in &file.orderers {
        let ca = network_dir.join(&o.tls_ca_cert);
        orderers.push(OrdererTarget {
            name: o.name.clone(),
            endpoint: o.endpoint.clone(),
            server_name: o.server_name.clone(),
            tls_ca_pem: std::fs::read(&ca).with_context(|| format!("reading {}", ca.display()))?,
        });
    }
    let deliver = match &args.deliver_orderer {
        Some(name) => orderers
            .iter()
            .position(|o| &o.name == name)
            .with_context(|| format!("orderer {name} is not in {}", path.display()))?,
        None => 0,
    };
    let org = match &args.org {
        Some(msp_id) => file
            .organizations
            .iter()
            .find(|o| &o.msp_id == msp_id)
            .with_context(|| format!("organization {msp_id} is not in {}", path.display()))?,
        None => file
            .organizations
            .first()
            .with_context(|| format!("{} lists no organizations", path.display()))?,
    };
    let user = org
        .users
        .iter()
        .find(|u| u.name == args.user)
        .with_context(|| format!("organization {} has no user {}", org.msp_id, args.user))?;
    let signer = SigningIdentity::load(
        &org.msp_id,
        &network_dir.join(&user.cert),
        &network_dir.join(&user.key),
    )
    .with_context(|| format!("loading {} of {}", user.name, org.msp_id))?;
    Ok(OrderTarget {
        orderers,
        deliver,
        signer,
        network_dir,
    })
}

/// A TLS gRPC channel to one orderer, checking its certificate for `serverName`.
async fn orderer_channel(o: &OrdererTarget) -> anyhow::Result<tonic::transport::Channel> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&o.tls_ca_pem))
        .domain_name(&o.server_name);
    Endpoint::from_shared(format!("https://{}", o.endpoint))
        .with_context(|| format!("orderer {} endpoint {}", o.name, o.endpoint))?
        .tls_config(tls)
        .with_context(|| format!("TLS settings for orderer {}", o.name))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to orderer {} at {}", o.name, o.endpoint))
}

/// Makes signed ENDORSER_TRANSACTION envelopes with unique tx ids (nonce = run prefix +
/// counter, tx id = SHA-256(nonce ‖ creator) as Fabric computes it). The transaction is one
/// action whose payload is filler bytes sized so the envelope is about `envelope_bytes`; the
/// orderer never looks inside it.
struct EnvelopeFactory {
    signer: SigningIdentity,
    channel: String,
    prefix: [u8; 16],
    counter: AtomicU64,
    filler: Vec<u8>,
}

impl EnvelopeFactory {
    fn new(signer: SigningIdentity, channel: &str, envelope_bytes: usize) -> EnvelopeFactory {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut prefix = [0u8; 16];
        prefix[..8].copy_from_slice(&(now.as_nanos() as u64).to_be_bytes());
        prefix[8..12].copy_from_slice(&std::process::id().to_be_bytes());
        let mut factory = EnvelopeFactory {
            signer,
            channel: channel.to_owned(),
            prefix,
            counter: AtomicU64::new(0),
            filler: Vec::new(),
        };
        let (_, probe) = factory.make();
        let base = prost::Message::encoded_len(&probe);
        factory.filler = vec![0x5a; envelope_bytes.saturating_sub(base)];
        factory
    }

    /// The next envelope and its tx id.
    fn make(&self) -> (String, gridledger_proto::common::Envelope) {
        use gridledger_proto::{common, protos};
        use prost::Message;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut nonce = self.prefix.to_vec();
        nonce.extend_from_slice(&n.to_be_bytes());
        let creator = self.signer.serialized().to_vec();
        let tx_id = gridledger_proto::compute_tx_id(&nonce, &creator);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let transaction = protos::Transaction {
            actions: vec![protos::TransactionAction {
                header: Vec::new(),
                payload: self.filler.clone(),
            }],
        };
        let payload = common::Payload {
            header: Some(common::Header {
                channel_header: common::ChannelHeader {
                    r#type: common::HeaderType::EndorserTransaction as i32,
                    timestamp: Some(gridledger_proto::prost_types::Timestamp {
                        seconds: now.as_secs() as i64,
                        nanos: now.subsec_nanos() as i32,
                    }),
                    channel_id: self.channel.clone(),
                    tx_id: tx_id.clone(),
                    ..Default::default()
                }
                .encode_to_vec(),
                signature_header: common::SignatureHeader { creator, nonce }.encode_to_vec(),
            }),
            data: transaction.encode_to_vec(),
        }
        .encode_to_vec();
        let envelope = common::Envelope {
            signature: self.signer.sign(&payload),
            payload,
        };
        (tx_id, envelope)
    }
}

/// A signed Deliver request for every block from the newest on, waiting for new ones.
fn seek_from_newest(signer: &SigningIdentity, channel: &str) -> gridledger_proto::common::Envelope {
    use gridledger_proto::{common, orderer};
    use prost::Message;
    let info = orderer::SeekInfo {
        start: Some(orderer::SeekPosition {
            r#type: Some(orderer::seek_position::Type::Newest(orderer::SeekNewest {})),
        }),
        stop: Some(orderer::SeekPosition {
            r#type: Some(orderer::seek_position::Type::Specified(
                orderer::SeekSpecified { number: u64::MAX },
            )),
        }),
        behavior: orderer::seek_info::SeekBehavior::BlockUntilReady as i32,
        error_response: 0,
        content_type: 0,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let payload = common::Payload {
        header: Some(common::Header {
            channel_header: common::ChannelHeader {
                r#type: common::HeaderType::DeliverSeekInfo as i32,
                timestamp: Some(gridledger_proto::prost_types::Timestamp {
                    seconds: now.as_secs() as i64,
                    nanos: 0,
                }),
                channel_id: channel.to_owned(),
                ..Default::default()
            }
            .encode_to_vec(),
            signature_header: common::SignatureHeader {
                creator: signer.serialized().to_vec(),
                nonce: Vec::new(),
            }
            .encode_to_vec(),
        }),
        data: info.encode_to_vec(),
    }
    .encode_to_vec();
    common::Envelope {
        signature: signer.sign(&payload),
        payload,
    }
}

/// The tx ids of a block's envelopes, in order; an envelope that does not parse yields an
/// empty id (it is still counted as an envelope in the block).
fn block_tx_ids(block: &gridledger_proto::common::Block) -> Vec<String> {
    use gridledger_proto::common;
    use prost::Message;
    let Some(data) = &block.data else {
        return Vec::new();
    };
    data.data
        .iter()
        .map(|bytes| {
            common::Envelope::decode(bytes.as_slice())
                .ok()
                .and_then(|e| common::Payload::decode(e.payload.as_slice()).ok())
                .and_then(|p| p.header)
                .and_then(|h| common::ChannelHeader::decode(h.channel_header.as_slice()).ok())
                .map(|ch| ch.tx_id)
                .unwrap_or_default()
        })
        .collect()
}

/// Latency percentiles in ms of a set of samples (nearest rank).
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
struct LatencyStats {
    count: usize,
    p50_ms: Option<f64>,
    p95_ms: Option<f64>,
    p99_ms: Option<f64>,
    mean_ms: Option<f64>,
    max_ms: Option<f64>,
}

impl LatencyStats {
    /// Sorts `values_ms` and summarizes them.
    fn of(mut values_ms: Vec<f64>) -> LatencyStats {
        values_ms.sort_by(f64::total_cmp);
        let count = values_ms.len();
        LatencyStats {
            count,
            p50_ms: percentile(&values_ms, 50.0),
            p95_ms: percentile(&values_ms, 95.0),
            p99_ms: percentile(&values_ms, 99.0),
            mean_ms: (count > 0).then(|| values_ms.iter().sum::<f64>() / count as f64),
            max_ms: values_ms.last().copied(),
        }
    }
}

/// One Broadcast ack.
#[derive(Debug, Clone, Copy)]
struct AckSample {
    sent: Instant,
    acked: Instant,
    /// `common.Status` of the response.
    status: i32,
}

/// One block seen on the Deliver stream.
#[derive(Debug, Clone)]
struct BlockSample {
    at: Instant,
    envelopes: usize,
    /// Broadcast-to-block latencies of the envelopes this run sent (others are not known).
    latencies_ms: Vec<f64>,
}

/// Acks whose response arrived in `[from, to)`: SUCCESS count, count per status name, and the
/// latencies of the SUCCESS acks.
fn summarize_acks(
    samples: &[AckSample],
    from: Instant,
    to: Instant,
) -> (u64, BTreeMap<String, u64>, LatencyStats) {
    use gridledger_proto::common::Status;
    let mut ok = 0;
    let mut statuses = BTreeMap::new();
    let mut latencies = Vec::new();
    for s in samples.iter().filter(|s| s.acked >= from && s.acked < to) {
        let name = Status::try_from(s.status)
            .map(|st| st.as_str_name().to_owned())
            .unwrap_or_else(|_| format!("STATUS_{}", s.status));
        *statuses.entry(name).or_insert(0) += 1;
        if s.status == Status::Success as i32 {
            ok += 1;
            latencies.push((s.acked - s.sent).as_secs_f64() * 1e3);
        }
    }
    (ok, statuses, LatencyStats::of(latencies))
}

/// Blocks that arrived in `[from, to)`: (blocks, envelopes, broadcast-to-block latencies).
fn summarize_blocks(
    samples: &[BlockSample],
    from: Instant,
    to: Instant,
) -> (u64, u64, LatencyStats) {
    let mut blocks = 0;
    let mut envelopes = 0;
    let mut latencies = Vec::new();
    for b in samples.iter().filter(|b| b.at >= from && b.at < to) {
        blocks += 1;
        envelopes += b.envelopes as u64;
        latencies.extend_from_slice(&b.latencies_ms);
    }
    (blocks, envelopes, LatencyStats::of(latencies))
}

/// Shared state of one `bench order` run.
struct OrderLoad {
    factory: EnvelopeFactory,
    /// Send time of each envelope not yet seen in a block.
    in_flight: Mutex<HashMap<String, Instant>>,
    acks: Mutex<Vec<AckSample>>,
    errors: Mutex<BTreeMap<String, u64>>,
    stop: AtomicBool,
}

impl OrderLoad {
    fn error(&self, what: String) {
        if let Ok(mut errors) = self.errors.lock() {
            *errors.entry(what).or_insert(0) += 1;
        }
    }
}

/// One Broadcast stream: keeps `window` envelopes in flight until told to stop, then waits for
/// the outstanding acks (the caller bounds the wait).
async fn broadcast_stream(load: Arc<OrderLoad>, channel: tonic::transport::Channel, window: usize) {
    use gridledger_proto::orderer::atomic_broadcast_client::AtomicBroadcastClient;
    let (tx, rx) = tokio::sync::mpsc::channel(window);
    let mut pending: std::collections::VecDeque<Instant> =
        std::collections::VecDeque::with_capacity(window);
    let send = |pending: &mut std::collections::VecDeque<Instant>| {
        let (tx_id, envelope) = load.factory.make();
        let now = Instant::now();
        if let Ok(mut map) = load.in_flight.lock() {
            map.insert(tx_id, now);
        }
        pending.push_back(now);
        envelope
    };
    // Fill the window before opening the stream so the first request body is ready.
    for _ in 0..window {
        let envelope = send(&mut pending);
        if tx.try_send(envelope).is_err() {
            pending.pop_back();
            break;
        }
    }
    let mut client = AtomicBroadcastClient::new(channel);
    let mut responses = match client
        .broadcast(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(status) => {
            load.error(format!("broadcast:{:?}", status.code()));
            return;
        }
    };
    while let Some(sent) = pending.pop_front() {
        match responses.message().await {
            Ok(Some(response)) => {
                let acked = Instant::now();
                if let Ok(mut acks) = load.acks.lock() {
                    acks.push(AckSample {
                        sent,
                        acked,
                        status: response.status,
                    });
                }
            }
            Ok(None) => {
                load.error("broadcast:stream ended early".into());
                return;
            }
            Err(status) => {
                load.error(format!("broadcast:{:?}", status.code()));
                return;
            }
        }
        if !load.stop.load(Ordering::Relaxed) {
            let envelope = send(&mut pending);
            if tx.send(envelope).await.is_err() {
                pending.pop_back();
            }
        }
    }
}

/// The Deliver stream on one orderer: records every block as it arrives.
async fn watch_blocks(
    load: Arc<OrderLoad>,
    channel: tonic::transport::Channel,
    seek: gridledger_proto::common::Envelope,
    blocks: Arc<Mutex<Vec<BlockSample>>>,
    ready: tokio::sync::oneshot::Sender<anyhow::Result<()>>,
) {
    use gridledger_proto::orderer::{
        atomic_broadcast_client::AtomicBroadcastClient, deliver_response,
    };
    let mut client =
        AtomicBroadcastClient::new(channel).max_decoding_message_size(256 * 1024 * 1024);
    let mut stream = match client.deliver(tokio_stream::iter(vec![seek])).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            let _ = ready.send(Err(anyhow::anyhow!("Deliver refused: {status}")));
            return;
        }
    };
    let mut ready = Some(ready);
    loop {
        match stream.message().await {
            Ok(Some(response)) => match response.r#type {
                Some(deliver_response::Type::Block(block)) => {
                    let at = Instant::now();
                    if let Some(r) = ready.take() {
                        let _ = r.send(Ok(()));
                    }
                    let ids = block_tx_ids(&block);
                    let mut latencies_ms = Vec::new();
                    if let Ok(mut map) = load.in_flight.lock() {
                        for id in &ids {
                            if let Some(sent) = map.remove(id) {
                                latencies_ms.push((at - sent).as_secs_f64() * 1e3);
                            }
                        }
                    }
                    if let Ok(mut b) = blocks.lock() {
                        b.push(BlockSample {
                            at,
                            envelopes: ids.len(),
                            latencies_ms,
                        });
                    }
                }
                other => {
                    let message = format!("Deliver answered {other:?} instead of a block");
                    match ready.take() {
                        Some(r) => {
                            let _ = r.send(Err(anyhow::anyhow!(message)));
                        }
                        None => load.error(format!("deliver:{message}")),
                    }
                    return;
                }
            },
            Ok(None) => return,
            Err(status) => {
                match ready.take() {
                    Some(r) => {
                        let _ = r.send(Err(anyhow::anyhow!("Deliver stream: {status}")));
                    }
                    None => load.error(format!("deliver:{:?}", status.code())),
                }
                return;
            }
        }
    }
}

/// The result of `bench order`; `--json` prints it as is.
#[derive(Debug, Serialize)]
struct OrderReport {
    orderers: Vec<String>,
    deliver_orderer: String,
    concurrency: usize,
    window: usize,
    envelope_bytes: usize,
    seconds: f64,
    warmup_seconds: f64,
    /// SUCCESS acks (envelopes committed by Raft on a quorum) whose ack arrived in the window.
    acked: u64,
    /// `acked` per second.
    acks_per_s: f64,
    /// Broadcast ack latency of the SUCCESS acks.
    ack_latency: LatencyStats,
    /// Acks in the window per status.
    statuses: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    /// Blocks and envelopes the Deliver stream received in the window.
    blocks: u64,
    delivered: u64,
    /// Envelopes landing in blocks per second (the ordering throughput).
    delivered_per_s: f64,
    envelopes_per_block: Option<f64>,
    /// From Broadcast send to the block holding the envelope arriving on Deliver.
    block_latency: LatencyStats,
    /// CPU of each orderer process over the window, in percent of one core.
    orderer_cpu_percent: BTreeMap<String, Option<f64>>,
    /// CPU of all peer processes (idle but following the chain) over the window.
    peers_cpu_percent: Option<f64>,
    client_cpu_percent: Option<f64>,
    load_average_1m: Option<f64>,
}

fn order(args: &OrderArgs) -> anyhow::Result<()> {
    ensure!(
        args.seconds > 0.0 && args.seconds <= 3600.0,
        "--seconds must be in (0, 3600]"
    );
    ensure!(
        args.warmup_seconds >= 0.0 && args.warmup_seconds <= 600.0,
        "--warmup-seconds must be in [0, 600]"
    );
    ensure!(
        (1..=4096).contains(&args.concurrency),
        "--concurrency must be in 1..=4096"
    );
    ensure!(
        (1..=4096).contains(&args.window),
        "--window must be in 1..=4096"
    );
    ensure!(
        args.envelope_bytes <= 64 * 1024 * 1024,
        "--envelope-bytes must be at most 64 MiB"
    );
    let target = resolve_order_target(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(measure_order(args, target))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_order_report(&report);
    }
    Ok(())
}

async fn measure_order(args: &OrderArgs, target: OrderTarget) -> anyhow::Result<OrderReport> {
    let mut channels = Vec::with_capacity(target.orderers.len());
    for o in &target.orderers {
        channels.push(orderer_channel(o).await?);
    }
    let seek = seek_from_newest(&target.signer, &args.channel);
    let deliver_channel = channels[target.deliver].clone();
    let load = Arc::new(OrderLoad {
        factory: EnvelopeFactory::new(target.signer, &args.channel, args.envelope_bytes),
        in_flight: Mutex::new(HashMap::new()),
        acks: Mutex::new(Vec::new()),
        errors: Mutex::new(BTreeMap::new()),
        stop: AtomicBool::new(false),
    });
    let envelope_bytes = prost::Message::encoded_len(&load.factory.make().1);

    let blocks = Arc::new(Mutex::new(Vec::new()));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(watch_blocks(
        load.clone(),
        deliver_channel,
        seek,
        blocks.clone(),
        ready_tx,
    ));
    // The newest block arrives at once; the load starts after it so it is not mistaken for load.
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .context("the Deliver stream sent no block within 10 s")?
        .context("the Deliver stream ended")??;

    let nodes = find_node_processes(&target.network_dir);
    let own_pid = std::process::id();
    let start = Instant::now();
    let mut streams = tokio::task::JoinSet::new();
    for i in 0..args.concurrency {
        let channel = channels[i % channels.len()].clone();
        streams.spawn(broadcast_stream(load.clone(), channel, args.window));
    }
    let window_start = start + Duration::from_secs_f64(args.warmup_seconds);
    let window_end = window_start + Duration::from_secs_f64(args.seconds);
    tokio::time::sleep_until(tokio::time::Instant::from_std(window_start)).await;
    let cpu_before: Vec<Option<f64>> = nodes.iter().map(|n| cpu_seconds(n.pid)).collect();
    let client_before = cpu_seconds(own_pid);
    tokio::time::sleep_until(tokio::time::Instant::from_std(window_end)).await;
    let cpu_after: Vec<Option<f64>> = nodes.iter().map(|n| cpu_seconds(n.pid)).collect();
    let client_after = cpu_seconds(own_pid);
    let load_average_1m = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok());
    load.stop.store(true, Ordering::Relaxed);
    let measured = window_end.duration_since(window_start).as_secs_f64();

    let drain = Duration::from_secs_f64(args.drain_seconds.clamp(0.0, 600.0));
    let drained = tokio::time::timeout(drain, async {
        while streams.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        load.error(format!("drain:{} streams still waiting", streams.len()));
        streams.abort_all();
    }
    // Blocks holding the last acked envelopes follow their acks closely.
    tokio::time::sleep(Duration::from_millis(500)).await;
    watcher.abort();

    let acks = load.acks.lock().map(|a| a.clone()).unwrap_or_default();
    let (acked, statuses, ack_latency) = summarize_acks(&acks, window_start, window_end);
    let block_samples = blocks.lock().map(|b| b.clone()).unwrap_or_default();
    let (block_count, delivered, block_latency) =
        summarize_blocks(&block_samples, window_start, window_end);
    let errors = load.errors.lock().map(|e| e.clone()).unwrap_or_default();

    let percent =
        |before: Option<f64>, after: Option<f64>| Some(100.0 * (after? - before?) / measured);
    let mut orderer_cpu_percent = BTreeMap::new();
    let mut peers_cpu: Option<f64> = None;
    for ((node, before), after) in nodes.iter().zip(&cpu_before).zip(&cpu_after) {
        let p = percent(*before, *after);
        if node.name.starts_with("orderer") {
            orderer_cpu_percent.insert(node.name.clone(), p);
        } else if let Some(p) = p {
            peers_cpu = Some(peers_cpu.unwrap_or(0.0) + p);
        }
    }
    Ok(OrderReport {
        orderers: target.orderers.iter().map(|o| o.name.clone()).collect(),
        deliver_orderer: target.orderers[target.deliver].name.clone(),
        concurrency: args.concurrency,
        window: args.window,
        envelope_bytes,
        seconds: measured,
        warmup_seconds: args.warmup_seconds,
        acked,
        acks_per_s: acked as f64 / measured,
        ack_latency,
        statuses,
        errors,
        blocks: block_count,
        delivered,
        delivered_per_s: delivered as f64 / measured,
        envelopes_per_block: (block_count > 0).then(|| delivered as f64 / block_count as f64),
        block_latency,
        orderer_cpu_percent,
        peers_cpu_percent: peers_cpu,
        client_cpu_percent: percent(client_before, client_after),
        load_average_1m,
    })
}

fn print_order_report(r: &OrderReport) {
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
    println!(
        "bench order: {} orderers, {} Broadcast streams x {} in flight, {} B envelopes, {:.1} s window after {:.1} s warm-up",
        r.orderers.len(),
        r.concurrency,
        r.window,
        r.envelope_bytes,
        r.seconds,
        r.warmup_seconds
    );
    println!(
        "acks (SUCCESS)   {:>10} {:>10.0}/s  p50 {} ms  p95 {} ms  p99 {} ms",
        r.acked,
        r.acks_per_s,
        ms(r.ack_latency.p50_ms),
        ms(r.ack_latency.p95_ms),
        ms(r.ack_latency.p99_ms)
    );
    println!(
        "in blocks ({}) {:>8} {:>10.0}/s  {} blocks, {:.1} envelopes/block; broadcast→block p50 {} ms  p99 {} ms",
        r.deliver_orderer,
        r.delivered,
        r.delivered_per_s,
        r.blocks,
        r.envelopes_per_block.unwrap_or(0.0),
        ms(r.block_latency.p50_ms),
        ms(r.block_latency.p99_ms)
    );
    println!("statuses: {:?}", r.statuses);
    if !r.errors.is_empty() {
        println!("errors: {:?}", r.errors);
    }
    let pct = |v: Option<f64>| v.map(|v| format!("{v:.0}%")).unwrap_or_else(|| "-".into());
    for (name, p) in &r.orderer_cpu_percent {
        println!("cpu {name}: {}", pct(*p));
    }
    println!(
        "cpu peers: {}  client: {}  load average (1 min): {}",
        pct(r.peers_cpu_percent),
        pct(r.client_cpu_percent),
        r.load_average_1m
            .map(|v| format!("{v:.2}"))
            .unwrap_or_else(|| "-".into())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bench_command() -> clap::Command {
        // The way the derived `gridledger` parser builds `bench` before handing it over.
        let cmd = clap::Command::new("bench")
            .subcommand_required(true)
            .arg_required_else_help(true);
        BenchCommand::augment_subcommands(cmd)
    }

    fn parse(args: &[&str]) -> Result<BenchCommand, clap::Error> {
        let matches = bench_command().try_get_matches_from(args)?;
        BenchCommand::from_arg_matches(&matches)
    }

    #[test]
    fn bench_accepts_issue_9_spelling_gateway_subcommand_and_crypto() {
        bench_command().debug_assert();
        let plain = parse(&[
            "bench",
            "--network",
            "n/network.json",
            "--workload",
            "basic-create",
            "--rate",
            "150",
            "--json",
        ])
        .expect("issue 9's spelling parses");
        let BenchCommand(Named::Gateway(args)) = plain else {
            panic!("expected the gateway benchmark, got {plain:?}");
        };
        assert_eq!(args.network, PathBuf::from("n/network.json"));
        assert_eq!(args.workload, Workload::BasicCreate);
        assert_eq!(args.rate, Some(150.0));
        assert!(args.json);

        let sub = parse(&[
            "bench",
            "gateway",
            "--network",
            "n.json",
            "--workload",
            "basic-create",
            "--concurrency",
            "64",
        ])
        .expect("bench gateway parses");
        let BenchCommand(Named::Gateway(args)) = sub else {
            panic!("expected the gateway benchmark, got {sub:?}");
        };
        assert_eq!(args.concurrency, Some(64));

        let crypto = parse(&["bench", "crypto", "--seconds", "1"]).expect("bench crypto parses");
        assert!(matches!(
            crypto,
            BenchCommand(Named::Crypto { seconds, repeat: 3, json: false }) if seconds == 1.0
        ));
    }

    #[test]
    fn bench_rejects_both_modes_and_unknown_workloads() {
        let both = parse(&[
            "bench",
            "--network",
            "n.json",
            "--workload",
            "basic-create",
            "--rate",
            "10",
            "--concurrency",
            "4",
        ]);
        assert!(both.is_err(), "--rate with --concurrency must be refused");
        let unknown = parse(&["bench", "--network", "n.json", "--workload", "mystery"]);
        assert!(unknown.is_err(), "an unknown workload must be refused");
        let missing = parse(&["bench", "gateway", "--workload", "basic-create"]);
        assert!(missing.is_err(), "--network is required");
    }

    fn gateway_args(extra: &[&str]) -> GatewayArgs {
        let mut args = vec!["bench", "--network", "n.json", "--workload", "basic-create"];
        args.extend_from_slice(extra);
        match parse(&args).expect("arguments parse") {
            BenchCommand(Named::Gateway(args)) => args,
            other => panic!("expected the gateway benchmark, got {other:?}"),
        }
    }

    #[test]
    fn mode_defaults_to_16_clients_and_bounds_every_limit() {
        assert_eq!(
            mode_of(&gateway_args(&[])).expect("defaults are valid"),
            Mode::ClosedLoop { concurrency: 16 }
        );
        assert_eq!(
            mode_of(&gateway_args(&["--rate", "500", "--max-in-flight", "100"]))
                .expect("a rate is valid"),
            Mode::FixedRate {
                rate: 500.0,
                max_in_flight: 100
            }
        );
        for bad in [
            &["--seconds", "0"][..],
            &["--seconds", "99999"],
            &["--concurrency", "0"],
            &["--rate", "0"],
            &["--rate", "10", "--max-in-flight", "0"],
            &["--connections", "0"],
            &["--timeout-seconds", "0"],
            &["--warmup-seconds=-1"],
        ] {
            assert!(
                mode_of(&gateway_args(bad)).is_err(),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 95.0), Some(95.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&values, 100.0), Some(100.0));
        assert_eq!(percentile(&values, 0.0), Some(1.0));
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&ten, 95.0), Some(10.0));
        assert_eq!(percentile(&ten, 50.0), Some(5.0));
        assert_eq!(percentile(&[42.0], 99.0), Some(42.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summarize_counts_codes_errors_and_latency_inside_the_window_only() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let sample = |start: u64, end: u64, outcome: Outcome| Sample {
            start: at(start),
            end: at(end),
            outcome,
            endorse_retries: 0,
        };
        let retried = |start: u64, end: u64, endorse_retries: u32| Sample {
            endorse_retries,
            ..sample(
                start,
                end,
                Outcome::Committed(TxValidationCode::Valid as i32),
            )
        };
        let refused = Outcome::Failed {
            phase: Phase::Endorse,
            code: DSO_REFUSED,
        };
        let valid = TxValidationCode::Valid as i32;
        let mvcc = TxValidationCode::MvccReadConflict as i32;
        let unavailable = Outcome::Failed {
            phase: Phase::Endorse,
            code: "UNAVAILABLE",
        };
        let samples = [
            sample(0, 900, Outcome::Committed(valid)), // warm-up: excluded
            sample(950, 1_030, Outcome::Committed(valid)),
            sample(1_100, 1_110, Outcome::Committed(valid)),
            sample(1_200, 1_250, Outcome::Committed(mvcc)),
            sample(1_300, 1_301, unavailable),
            sample(1_400, 1_402, unavailable),
            sample(
                1_000,
                1_500,
                Outcome::Failed {
                    phase: Phase::Deadline,
                    code: "DEADLINE_EXCEEDED",
                },
            ),
            sample(1_600, 1_600, Outcome::Shed),
            sample(1_650, 1_660, refused),
            retried(1_700, 1_720, 3),
            retried(500, 900, 7),                            // warm-up: excluded
            sample(1_900, 2_000, Outcome::Committed(valid)), // ends at the window's end: excluded
            sample(1_950, 2_500, unavailable),               // after the window: excluded
            sample(1_950, 2_500, refused),                   // after the window: excluded
        ];
        let summary = summarize(&samples, at(1_000), at(2_000));
        assert_eq!(summary.committed, 4);
        assert_eq!(summary.valid, 3);
        assert_eq!(
            summary.codes,
            BTreeMap::from([
                ("MVCC_READ_CONFLICT".to_owned(), 1),
                ("VALID".to_owned(), 3)
            ])
        );
        assert_eq!(
            summary.errors,
            BTreeMap::from([
                ("deadline:DEADLINE_EXCEEDED".to_owned(), 1),
                ("endorse:DSO_REFUSED".to_owned(), 1),
                ("endorse:UNAVAILABLE".to_owned(), 2)
            ])
        );
        assert_eq!(summary.shed, 1);
        assert_eq!(summary.dso_refused, 1);
        assert_eq!(summary.endorse_retries, 3);
        let rounded: Vec<u64> = summary
            .latencies_ms
            .iter()
            .map(|ms| ms.round() as u64)
            .collect();
        assert_eq!(rounded, vec![10, 20, 50, 80]);
    }

    #[test]
    fn evaluations_are_counted_with_their_latency_and_conflict_rate_is_over_committed() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let sample = |start: u64, end: u64, outcome: Outcome| Sample {
            start: at(start),
            end: at(end),
            outcome,
            endorse_retries: 0,
        };
        let reads = [
            sample(0, 500, Outcome::Evaluated), // warm-up: excluded
            sample(1_000, 1_004, Outcome::Evaluated),
            sample(1_100, 1_102, Outcome::Evaluated),
            sample(
                1_200,
                1_201,
                Outcome::Failed {
                    phase: Phase::Evaluate,
                    code: "NOT_FOUND",
                },
            ),
        ];
        let summary = summarize(&reads, at(1_000), at(2_000));
        assert_eq!(summary.evaluated, 2);
        assert_eq!(summary.committed, 0);
        assert!(summary.codes.is_empty());
        assert_eq!(
            summary.errors,
            BTreeMap::from([("evaluate:NOT_FOUND".to_owned(), 1)])
        );
        let rounded: Vec<u64> = summary
            .latencies_ms
            .iter()
            .map(|ms| ms.round() as u64)
            .collect();
        assert_eq!(rounded, vec![2, 4]);
        assert_eq!(summary.conflict_rate(), None, "nothing committed");

        let valid = Outcome::Committed(TxValidationCode::Valid as i32);
        let mvcc = Outcome::Committed(TxValidationCode::MvccReadConflict as i32);
        let updates = [
            sample(1_000, 1_010, valid),
            sample(1_000, 1_020, mvcc),
            sample(1_000, 1_030, valid),
            sample(1_000, 1_040, valid),
        ];
        let summary = summarize(&updates, at(1_000), at(2_000));
        assert_eq!(summary.conflict_rate(), Some(0.25));
        let summary = summarize(&updates[..1], at(1_000), at(2_000));
        assert_eq!(summary.conflict_rate(), Some(0.0));
    }

    #[test]
    fn basic_update_and_read_parse_with_a_million_keys_by_default_and_bound_them() {
        for workload in ["basic-update", "basic-read"] {
            let parsed = parse(&[
                "bench",
                "gateway",
                "--network",
                "n.json",
                "--workload",
                workload,
                "--rate",
                "100",
            ])
            .expect("the workload parses");
            let BenchCommand(Named::Gateway(args)) = parsed else {
                panic!("expected the gateway benchmark, got {parsed:?}");
            };
            assert_eq!(args.workload.name(), workload);
            assert_eq!(args.workload.default_chaincode(), "basic");
            assert!(args.workload.uses_keys());
            assert_eq!(args.keys, 1_000_000);
            assert_eq!(args.preload_batch, DEFAULT_PRELOAD_BATCH);
            assert!(mode_of(&args).is_ok());
        }
        assert!(Workload::BasicRead.is_read());
        assert!(!Workload::BasicUpdate.is_read());
        assert!(!Workload::BasicCreate.uses_keys());
        assert_eq!(
            gateway_args(&["--keys", "2000", "--preload-batch", "10000"]).keys,
            2000
        );
        for bad in [
            &["--keys", "0"][..],
            &["--keys", "10000001"],
            &["--preload-batch", "0"],
            &["--preload-batch", "10001"],
        ] {
            assert!(
                mode_of(&gateway_args(bad)).is_err(),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn the_key_set_names_its_size_and_draws_every_key_uniformly() {
        let keys = KeySet::new(1_000_000, 7);
        assert_eq!(keys.key(0), "bench-n1000000-0");
        assert_eq!(keys.last_key(), "bench-n1000000-999999");
        assert_ne!(
            KeySet::new(2000, 7).last_key(),
            KeySet::new(20000, 7).key(1999),
            "sets of different sizes do not share ids"
        );

        let small = KeySet::new(10, 42);
        let mut hits = [0u32; 10];
        for _ in 0..10_000 {
            let n = small.random_number();
            assert!(n < 10, "{n} is outside the set");
            hits[usize::try_from(n).expect("below 10")] += 1;
        }
        // Each of the 10 keys is expected 1,000 times; the bounds are over 12 standard
        // deviations away, and the draws are deterministic for the seed.
        for (n, &h) in hits.iter().enumerate() {
            assert!((600..=1_400).contains(&h), "key {n} drawn {h} times");
        }
        assert!(small.random_key().starts_with("bench-n10-"));

        let one = KeySet::new(1, 3);
        assert!((0..100).all(|_| one.random_number() == 0));
        assert_eq!(one.last_key(), "bench-n1-0");
    }

    #[test]
    fn preload_batches_cover_the_set_once_with_a_short_last_batch() {
        assert_eq!(
            preload_batches(2_500, 1_000),
            vec![(0, 1_000), (1_000, 1_000), (2_000, 500)]
        );
        assert_eq!(preload_batches(3_000, 1_000).len(), 3);
        assert_eq!(preload_batches(1, 1_000), vec![(0, 1)]);
        let million = preload_batches(1_000_000, 1_000);
        assert_eq!(million.len(), 1_000);
        assert_eq!(million.iter().map(|&(_, n)| n).sum::<u64>(), 1_000_000);
        assert!(million.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
        assert_eq!(million.last(), Some(&(999_000, 1_000)));
    }

    #[test]
    fn code_names_follow_fabric_and_grpc() {
        assert_eq!(validation_code_name(0), "VALID");
        assert_eq!(validation_code_name(11), "MVCC_READ_CONFLICT");
        assert_eq!(validation_code_name(77), "CODE_77");
        assert_eq!(grpc_code_name(14), "UNAVAILABLE");
        assert_eq!(grpc_code_name(4), "DEADLINE_EXCEEDED");
        assert_eq!(grpc_code_name(99), "UNRECOGNISED_CODE");
        let err = SdkError::Response("nothing".into());
        assert_eq!(error_code(&err), "BAD_RESPONSE");
    }

    #[test]
    fn proc_stat_and_status_are_parsed_even_with_odd_command_names() {
        // Fields after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt
        // cmajflt utime stime …
        let stat = "4242 (gridledger) (x) R 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 9 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("4242 (short) R 1 2"), None);
        assert_eq!(parse_cpu_ticks("no parenthesis at all"), None);
        let status =
            "Name:\tgridledger\nVmHWM:\t  204800 kB\nVmRSS:\t   102400 kB\nVmRSSx:\t1 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(102_400));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(204_800));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn node_processes_are_recognised_by_their_config_under_nodes() {
        let nodes = Path::new("/tmp/net/nodes");
        let cmdline = |args: &[&str]| args.join("\0").into_bytes();
        let peer = cmdline(&[
            "/bin/gridledger",
            "peer",
            "start",
            "--config",
            "/tmp/net/nodes/peer0.dso/peer.toml",
            "--exit-on-stdin-close",
        ]);
        assert_eq!(
            node_name_in_cmdline(&peer, nodes, None),
            Some("peer0.dso".to_owned())
        );
        let relative = cmdline(&[
            "gridledger",
            "orderer",
            "start",
            "--config",
            "nodes/orderer0/orderer.toml",
        ]);
        assert_eq!(
            node_name_in_cmdline(&relative, nodes, Some(Path::new("/tmp/net"))),
            Some("orderer0".to_owned())
        );
        assert_eq!(node_name_in_cmdline(&relative, nodes, None), None);
        let other_network = cmdline(&[
            "gridledger",
            "peer",
            "start",
            "--config",
            "/tmp/other/nodes/peer0.dso/peer.toml",
        ]);
        assert_eq!(node_name_in_cmdline(&other_network, nodes, None), None);
        let editor = cmdline(&["vim", "/tmp/net/nodes/peer0.dso/peer.toml"]);
        assert_eq!(node_name_in_cmdline(&editor, nodes, None), None);
    }

    fn test_signer() -> SigningIdentity {
        use gridledger_identity::material::{
            CertificateAuthority, LeafSpec, SEEDED_NOT_BEFORE, Seed,
        };
        let ca = CertificateAuthority::new_root(
            &Seed::from_text("order-bench-test"),
            "Org1MSP",
            "ca.org1",
            SEEDED_NOT_BEFORE,
            SEEDED_NOT_BEFORE + 86_400,
        )
        .expect("a test CA");
        let spec = LeafSpec::new(
            "User1",
            Some(gridledger_identity::Role::Client),
            SEEDED_NOT_BEFORE,
            SEEDED_NOT_BEFORE + 86_400,
        );
        let issued = ca.issue("Org1MSP", &spec).expect("a test user");
        SigningIdentity::from_pem(
            "Org1MSP",
            issued.cert_pem.as_bytes(),
            issued.key_pem.as_bytes(),
        )
        .expect("the test user signs")
    }

    #[test]
    fn bench_order_parses_with_defaults_and_overrides() {
        let Named::Order(defaults) = parse(&["bench", "order", "--network", "n/network.json"])
            .expect("order parses")
            .0
        else {
            panic!("`bench order` is not the order benchmark");
        };
        assert_eq!(defaults.concurrency, 8);
        assert_eq!(defaults.window, 1);
        assert_eq!(defaults.envelope_bytes, 1024);
        assert_eq!(defaults.seconds, 15.0);
        let Named::Order(set) = parse(&[
            "bench",
            "order",
            "--network",
            "n/network.json",
            "--seconds",
            "5",
            "--concurrency",
            "64",
            "--envelope-bytes",
            "3000",
            "--json",
        ])
        .expect("order parses")
        .0
        else {
            panic!("`bench order` is not the order benchmark");
        };
        assert_eq!(
            (set.seconds, set.concurrency, set.envelope_bytes, set.json),
            (5.0, 64, 3000, true)
        );
    }

    #[test]
    fn latency_stats_are_nearest_rank_over_sorted_values() {
        let stats = LatencyStats::of((1..=100).rev().map(f64::from).collect());
        assert_eq!(stats.count, 100);
        assert_eq!(stats.p50_ms, Some(50.0));
        assert_eq!(stats.p95_ms, Some(95.0));
        assert_eq!(stats.p99_ms, Some(99.0));
        assert_eq!(stats.max_ms, Some(100.0));
        assert_eq!(stats.mean_ms, Some(50.5));
        let empty = LatencyStats::of(Vec::new());
        assert_eq!(empty.count, 0);
        assert_eq!(
            (empty.p50_ms, empty.mean_ms, empty.max_ms),
            (None, None, None)
        );
    }

    #[test]
    fn summarize_acks_counts_window_and_times_only_successes() {
        use gridledger_proto::common::Status;
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let samples = [
            // Before the window: excluded.
            AckSample {
                sent: at(0),
                acked: at(5),
                status: Status::Success as i32,
            },
            AckSample {
                sent: at(10),
                acked: at(14),
                status: Status::Success as i32,
            },
            AckSample {
                sent: at(12),
                acked: at(20),
                status: Status::Success as i32,
            },
            AckSample {
                sent: at(15),
                acked: at(30),
                status: Status::ServiceUnavailable as i32,
            },
            // At the window's end: excluded.
            AckSample {
                sent: at(90),
                acked: at(100),
                status: Status::Success as i32,
            },
        ];
        let (ok, statuses, latency) = summarize_acks(&samples, at(10), at(100));
        assert_eq!(ok, 2);
        assert_eq!(statuses.get("SUCCESS"), Some(&2));
        assert_eq!(statuses.get("SERVICE_UNAVAILABLE"), Some(&1));
        assert_eq!(latency.count, 2);
        assert_eq!(latency.p99_ms, Some(8.0));
        assert_eq!(latency.p50_ms, Some(4.0));
    }

    #[test]
    fn summarize_blocks_adds_envelopes_of_blocks_inside_the_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let block = |ms, envelopes, latencies_ms: Vec<f64>| BlockSample {
            at: at(ms),
            envelopes,
            latencies_ms,
        };
        let samples = [
            block(5, 100, vec![1.0]),
            block(20, 10, vec![3.0, 7.0]),
            block(40, 30, vec![5.0]),
            block(100, 1000, vec![900.0]),
        ];
        let (blocks, envelopes, latency) = summarize_blocks(&samples, at(10), at(100));
        assert_eq!((blocks, envelopes), (2, 40));
        assert_eq!(latency.count, 3);
        assert_eq!(latency.p50_ms, Some(5.0));
        assert_eq!(latency.max_ms, Some(7.0));
    }

    #[test]
    fn envelope_factory_signs_unique_sized_endorser_transactions_that_blocks_give_back() {
        use gridledger_proto::common;
        use prost::Message;
        let signer = test_signer();
        let creator = signer.serialized().to_vec();
        let public_key = signer.certificate().public_key.clone();
        let factory = EnvelopeFactory::new(signer, "market", 2000);
        let (id_a, a) = factory.make();
        let (id_b, b) = factory.make();
        assert_ne!(id_a, id_b, "tx ids must be unique");
        let size = a.encoded_len();
        assert!(
            (1990..=2010).contains(&size),
            "envelope is {size} bytes, asked 2000"
        );
        let payload = common::Payload::decode(a.payload.as_slice()).expect("payload");
        let header = payload.header.expect("header");
        let channel_header = common::ChannelHeader::decode(header.channel_header.as_slice())
            .expect("channel header");
        assert_eq!(
            channel_header.r#type,
            common::HeaderType::EndorserTransaction as i32
        );
        assert_eq!(channel_header.channel_id, "market");
        assert_eq!(channel_header.tx_id, id_a);
        let signature_header = common::SignatureHeader::decode(header.signature_header.as_slice())
            .expect("signature header");
        assert_eq!(signature_header.creator, creator);
        assert_eq!(
            gridledger_proto::compute_tx_id(&signature_header.nonce, &signature_header.creator),
            id_a
        );
        assert!(
            gridledger_identity::signature::verify_p256(&public_key, &a.payload, &a.signature)
                .is_ok(),
            "the creator's signature over the payload must verify"
        );
        let block = common::Block {
            data: Some(common::BlockData {
                data: vec![
                    a.encode_to_vec(),
                    b"not an envelope".to_vec(),
                    b.encode_to_vec(),
                ],
            }),
            ..Default::default()
        };
        assert_eq!(block_tx_ids(&block), vec![id_a, String::new(), id_b]);
        assert!(block_tx_ids(&common::Block::default()).is_empty());
    }

    fn energy_args(extra: &[&str]) -> GatewayArgs {
        let mut args = vec![
            "bench",
            "gateway",
            "--network",
            "n.json",
            "--workload",
            "energy-trade",
        ];
        args.extend_from_slice(extra);
        match parse(&args).expect("arguments parse") {
            BenchCommand(Named::Gateway(args)) => args,
            other => panic!("expected the gateway benchmark, got {other:?}"),
        }
    }

    #[test]
    fn energy_trade_parses_with_the_energy_chaincode_and_bounded_periods() {
        let defaults = energy_args(&[]);
        assert_eq!(defaults.workload, Workload::EnergyTrade);
        assert_eq!(defaults.workload.name(), "energy-trade");
        assert_eq!(defaults.chaincode, None);
        assert_eq!(defaults.workload.default_chaincode(), "energy");
        assert_eq!(Workload::BasicCreate.default_chaincode(), "basic");
        assert_eq!(defaults.periods, 16);
        assert_eq!(defaults.channel, "market");
        let set = energy_args(&[
            "--seconds",
            "2",
            "--concurrency",
            "2",
            "--periods",
            "4",
            "--chaincode",
            "energy2",
            "--json",
        ]);
        assert_eq!(
            mode_of(&set).expect("valid options"),
            Mode::ClosedLoop { concurrency: 2 }
        );
        assert_eq!(
            (set.periods, set.chaincode.as_deref(), set.json),
            (4, Some("energy2"), true)
        );
        for bad in [&["--periods", "0"][..], &["--periods", "97"]] {
            assert!(
                mode_of(&energy_args(bad)).is_err(),
                "{bad:?} must be refused"
            );
        }
        let json = serde_json::to_value(Workload::EnergyTrade).expect("serializes");
        assert_eq!(json, "energy-trade");
    }

    #[test]
    fn energy_fixed_rate_keeps_at_most_one_trade_in_flight_per_prosumer() {
        assert_eq!(
            energy_clients(Mode::ClosedLoop { concurrency: 8 }, 4),
            (8, Mode::ClosedLoop { concurrency: 8 }),
            "closed loop asks for what it asks (the plan refuses too many)"
        );
        assert_eq!(
            energy_clients(
                Mode::FixedRate {
                    rate: 50.0,
                    max_in_flight: 4096
                },
                64
            ),
            (
                64,
                Mode::FixedRate {
                    rate: 50.0,
                    max_in_flight: 64
                }
            )
        );
        assert_eq!(
            energy_clients(
                Mode::FixedRate {
                    rate: 50.0,
                    max_in_flight: 3
                },
                64
            ),
            (
                3,
                Mode::FixedRate {
                    rate: 50.0,
                    max_in_flight: 3
                }
            )
        );
    }

    #[test]
    fn energy_plan_gives_every_client_its_own_buyer_and_offers_and_balances_each_prosumer() {
        let first = 1_800_000_000 - 1_800_000_000 % PERIOD_SECONDS;
        for (prosumers, clients, periods) in [
            (2, 1, 1),
            (2, 2, 3),
            (4, 2, 16),
            (4, 3, 16),
            (4, 4, 5),
            (64, 16, 16),
            (64, 64, 96),
        ] {
            let plan = EnergyPlan::new(prosumers, clients, periods, first, "run1")
                .expect("enough prosumers");
            let case = format!("{prosumers} prosumers, {clients} clients");
            assert_eq!(plan.clients.len(), clients, "{case}");
            assert_eq!(plan.periods.len(), periods, "{case}");
            assert!(
                plan.periods
                    .windows(2)
                    .all(|w| w[1] - w[0] == PERIOD_SECONDS)
                    && plan.periods[0] == first,
                "{case}: consecutive 15-minute periods from the first"
            );
            let mut buyers = std::collections::BTreeSet::new();
            let mut offers = std::collections::BTreeSet::new();
            for c in plan.legs() {
                assert!(c.buyer < prosumers && c.seller < prosumers, "{case}");
                assert_ne!(
                    c.buyer, c.seller,
                    "{case}: a prosumer cannot buy its own offer"
                );
                assert!(buyers.insert(c.buyer), "{case}: buyer {} shared", c.buyer);
                let own: Vec<i64> = c.offers.iter().map(|o| o.period).collect();
                assert_eq!(own, plan.periods, "{case}: one offer per period, in order");
                for o in &c.offers {
                    assert!(offers.insert(o.id.clone()), "{case}: offer {} shared", o.id);
                    assert!(o.id.starts_with("run1-"), "{case}: {}", o.id);
                }
            }
            // A ring: every buying prosumer also sells, to exactly one leg, so its net power in
            // each period stays near zero (a single client has two legs, one each way).
            let mut sellers: Vec<usize> = plan.legs().map(|c| c.seller).collect();
            sellers.sort_unstable();
            let buyers: Vec<usize> = buyers.into_iter().collect();
            assert_eq!(sellers, buyers, "{case}");
            let legs: Vec<usize> = plan.clients.iter().map(|c| c.legs.len()).collect();
            let expected = if clients == 1 {
                vec![2]
            } else {
                vec![1; clients]
            };
            assert_eq!(legs, expected, "{case}");
        }
    }

    #[test]
    fn a_client_takes_its_legs_then_its_periods_in_turn() {
        let picks: Vec<(usize, usize)> = (0..7).map(|k| pick(k, 2, 3)).collect();
        assert_eq!(
            picks,
            vec![(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2), (0, 0)]
        );
        let one_leg: Vec<(usize, usize)> = (0..4).map(|k| pick(k, 1, 3)).collect();
        assert_eq!(one_leg, vec![(0, 0), (0, 1), (0, 2), (0, 0)]);
        assert_eq!(pick(5, 1, 0), (0, 0), "basic-create has no offers");
    }

    #[test]
    fn energy_plan_refuses_too_few_prosumers_for_the_clients() {
        let first = 1_800_000_000 - 1_800_000_000 % PERIOD_SECONDS;
        let err = EnergyPlan::new(4, 5, 16, first, "r")
            .expect_err("5 clients need 5 buyers")
            .to_string();
        assert!(err.contains("at most 4 clients, not 5"), "{err}");
        let err = EnergyPlan::new(1, 1, 16, first, "r")
            .expect_err("one prosumer cannot trade with itself")
            .to_string();
        assert!(err.contains("at least 2 prosumers"), "{err}");
        assert!(EnergyPlan::new(4, 0, 16, first, "r").is_err());
        assert!(EnergyPlan::new(4, 2, 0, first, "r").is_err());
        assert!(
            EnergyPlan::new(4, 2, 16, first + 60, "r").is_err(),
            "periods start on 15-minute boundaries"
        );
    }

    #[test]
    fn the_first_period_is_on_a_boundary_at_least_two_hours_ahead() {
        for now in [1_800_000_000, 1_800_000_001, 1_800_000_899, 1_799_999_100] {
            let first = first_period_after(now);
            assert_eq!(first % PERIOD_SECONDS, 0, "{now}");
            assert!(first - now >= PERIOD_LEAD_SECONDS, "{now} → {first}");
            assert!(
                first - now <= PERIOD_LEAD_SECONDS + PERIOD_SECONDS,
                "{now} → {first}"
            );
        }
    }

    #[test]
    fn interleave_alternates_between_groups() {
        let out = interleave(vec![
            vec!["R1", "R2", "R3"],
            vec![],
            vec!["C1"],
            vec!["X1", "X2"],
        ]);
        assert_eq!(out, vec!["R1", "C1", "X1", "R2", "X2", "R3"]);
        assert!(interleave::<u8>(Vec::new()).is_empty());
    }

    #[test]
    fn dso_refusals_are_counted_apart_from_other_endorsement_failures() {
        let refusal = SdkError::Gateway {
            code: tonic::Code::Aborted,
            message: "failed to collect enough transaction endorsements".into(),
            details: vec![gridledger_proto::gateway::ErrorDetail {
                address: "127.0.0.1:7051".into(),
                msp_id: "DSOMSP".into(),
                message: "trade t1 is not feasible on the DSO's grid in period 900".into(),
            }],
        };
        assert_eq!(failure_code(Phase::Endorse, &refusal), DSO_REFUSED);
        assert_eq!(failure_code(Phase::Submit, &refusal), "ABORTED");
        let mismatch = SdkError::Gateway {
            code: tonic::Code::Aborted,
            message: "ProposalResponsePayloads do not match".into(),
            details: Vec::new(),
        };
        assert_eq!(failure_code(Phase::Endorse, &mismatch), "ABORTED");
        assert!(is_mismatch(&mismatch));
        assert!(!is_mismatch(&refusal));
    }

    /// Writes a client identity of `msp_id` issued by `ca` under `dir/name/` and returns its
    /// network.json entry (paths relative to `dir`).
    fn write_user(
        dir: &Path,
        ca: &gridledger_identity::material::CertificateAuthority,
        msp_id: &str,
        name: &str,
        pod: Option<&str>,
    ) -> serde_json::Value {
        use gridledger_identity::material::{LeafSpec, SEEDED_NOT_BEFORE};
        let mut spec = LeafSpec::new(
            name,
            Some(gridledger_identity::Role::Client),
            SEEDED_NOT_BEFORE,
            SEEDED_NOT_BEFORE + 86_400,
        );
        if let Some(pod) = pod {
            spec.attributes.insert("pod".into(), pod.into());
        }
        let issued = ca.issue(msp_id, &spec).expect("a test user");
        let folder = dir.join(msp_id).join(name);
        std::fs::create_dir_all(&folder).expect("create the user folder");
        std::fs::write(folder.join("cert.pem"), issued.cert_pem).expect("write the cert");
        std::fs::write(folder.join("key.pem"), issued.key_pem).expect("write the key");
        serde_json::json!({
            "name": name,
            "cert": format!("{msp_id}/{name}/cert.pem"),
            "key": format!("{msp_id}/{name}/key.pem"),
        })
    }

    #[test]
    fn prosumers_come_from_network_json_with_the_pod_of_their_certificate() {
        use gridledger_identity::material::{CertificateAuthority, SEEDED_NOT_BEFORE, Seed};
        let dir =
            std::env::temp_dir().join(format!("gridledger-bench-prosumers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test folder");
        let ca = |msp: &str| {
            CertificateAuthority::new_root(
                &Seed::from_text(msp),
                msp,
                "ca",
                SEEDED_NOT_BEFORE,
                SEEDED_NOT_BEFORE + 86_400,
            )
            .expect("a test CA")
        };
        let (ca_r, ca_c) = (ca("RetailerMSP"), ca("CommunityMSP"));
        let peer = |name: &str| serde_json::json!({"name": name, "endpoint": "127.0.0.1:1", "tlsCaCert": "x", "serverName": name});
        let network = |retailer_users: Vec<serde_json::Value>| {
            serde_json::json!({"organizations": [
                {"mspId": "DSOMSP", "peers": [peer("peer0.dso")], "users": []},
                {"mspId": "RetailerMSP", "peers": [peer("peer0.retailer")], "users": retailer_users},
                {"mspId": "CommunityMSP", "peers": [peer("peer0.community")], "users": [
                    write_user(&dir, &ca_c, "CommunityMSP", "Prosumer-C001", Some("POD-X")),
                    write_user(&dir, &ca_c, "CommunityMSP", "User1", None),
                ]},
            ]})
        };
        let file: NetworkFile = serde_json::from_value(network(vec![
            // The attribute, not the name, gives the point of delivery.
            write_user(&dir, &ca_r, "RetailerMSP", "Prosumer-R002", Some("POD-R9")),
            write_user(&dir, &ca_r, "RetailerMSP", "Prosumer-R001", Some("POD-R1")),
            write_user(&dir, &ca_r, "RetailerMSP", "User1", None),
        ]))
        .expect("a network.json");
        let prosumers = load_prosumers(&file, &dir).expect("the prosumers load");
        let found: Vec<(String, String, String)> = prosumers
            .iter()
            .map(|p| (p.name.clone(), p.account(), p.peer.name.clone()))
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    "Prosumer-R001".into(),
                    "RetailerMSP:POD-R1".into(),
                    "peer0.retailer".into()
                ),
                (
                    "Prosumer-C001".into(),
                    "CommunityMSP:POD-X".into(),
                    "peer0.community".into()
                ),
                (
                    "Prosumer-R002".into(),
                    "RetailerMSP:POD-R9".into(),
                    "peer0.retailer".into()
                ),
            ]
        );

        let no_pod: NetworkFile = serde_json::from_value(network(vec![write_user(
            &dir,
            &ca_r,
            "RetailerMSP",
            "Prosumer-R003",
            None,
        )]))
        .expect("a network.json");
        let err = load_prosumers(&no_pod, &dir)
            .expect_err("a prosumer without a pod cannot trade")
            .to_string();
        assert!(err.contains("no `pod` attribute"), "{err}");

        let same_pod: NetworkFile = serde_json::from_value(network(vec![
            write_user(&dir, &ca_r, "RetailerMSP", "Prosumer-R004", Some("POD-S")),
            write_user(&dir, &ca_r, "RetailerMSP", "Prosumer-R005", Some("POD-S")),
        ]))
        .expect("a network.json");
        let err = load_prosumers(&same_pod, &dir)
            .expect_err("two prosumers with one account would conflict")
            .to_string();
        assert!(err.contains("RetailerMSP:POD-S"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
