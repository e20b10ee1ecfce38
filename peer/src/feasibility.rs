//! The DSO's feasibility endorsement: before the DSO's peer endorses an energy trade, it runs
//! an AC power flow of the delivery period on its private feeder model and endorses only if the
//! period's trades stay within the grid's limits (`gridledger_grid::check`).
//!
//! Configured by the `[feasibility]` section of the DSO peer's peer.toml: the market channel
//! and chaincode, the feeder file, the load scale per 15-minute slot of the day (a profile file,
//! or one constant), and the map from points of delivery to the feeder's buses — the DSO's
//! private data, never on any ledger.
//!
//! For a proposal of that chaincode on that channel whose simulation succeeded, the new trades
//! are the `trade/…` records the simulation writes (the `energy` chaincode's [`Trade`]) that are
//! not in the committed state yet. The period's load is the feeder's loads times the slot's
//! scale; its trades are every trade of the period committed in the state, every trade this peer
//! endorsed that is neither committed nor expired (a reservation, so two concurrent trades that
//! are each feasible alone but not together cannot both get the DSO's endorsement), and the new
//! ones. A trade is an injection at the seller's bus and an equal load at the buyer's bus, at
//! the period's average power (energy × 4 for 15 minutes). Infeasible — or an unknown point of
//! delivery, or a power flow that does not converge — means no endorsement, and the refusal
//! names the violated limit, where, and by how much. Feasible means the new trades are reserved,
//! with the id of the transaction the endorsed proposal belongs to.
//!
//! A reservation is released as soon as one of these happens:
//! - the committer reports that its transaction committed on the channel, with any validation
//!   code ([`FeasibilityCheck::committed`]): VALID, because the trade is then in the committed
//!   state the next review reads; anything else (an MVCC conflict, an endorsement policy
//!   failure, …), because the trade will never flow;
//! - a later review finds the trade committed in the state (by whatever transaction);
//! - [`FeasibilityConfig::reservation_seconds`] pass (an endorsement the client never
//!   submitted, or whose block this peer has not committed yet).
//!
//! Reservations are kept in memory only: a restarted DSO peer has none.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gridledger_chaincode::energy::Trade;
use gridledger_grid::{Feeder, PowerFlowSettings, Trade as GridTrade, ViolationKind, check};
use gridledger_ledger::{StateSnapshot, Version};
use gridledger_proto::kvrwset::KvrwSet;
use gridledger_proto::prost::Message;
use gridledger_proto::protos::TxValidationCode;
use gridledger_proto::rwset::TxReadWriteSet;
use serde::Deserialize;

/// Slots of a day's load profile (15 minutes each).
pub const SLOTS_PER_DAY: usize = 96;
/// Length of a delivery period, seconds.
const PERIOD_SECONDS: i64 = 900;

/// `[feasibility]` in peer.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeasibilityConfig {
    /// The market channel.
    #[serde(default = "default_channel")]
    pub channel: String,
    /// The market chaincode whose trades are checked.
    #[serde(default = "default_chaincode")]
    pub chaincode: String,
    /// The feeder file (relative paths are from peer.toml's folder).
    pub feeder: PathBuf,
    /// A CSV of the load scale per 15-minute slot of the day (UTC): a header line, then 96
    /// lines `minute_of_day,load_scale`. Without it every slot uses `load_scale`.
    #[serde(default)]
    pub load_profile: Option<PathBuf>,
    /// The load scale of every slot when there is no profile.
    #[serde(default = "default_scale")]
    pub load_scale: f64,
    /// How long an endorsed trade stays reserved at most, seconds: its reservation is
    /// released earlier when its transaction commits, valid or not.
    #[serde(default = "default_reservation")]
    pub reservation_seconds: u64,
    /// Point of delivery → the feeder's bus id (`"POD-1" = 17`), or the bus and the market
    /// organization that supplies the POD (`"POD-1" = { bus = 17, supplier = "RetailerMSP" }`).
    pub pods: BTreeMap<String, PodEntry>,
}

/// Where a point of delivery connects, and optionally who supplies it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PodEntry {
    /// Just the bus: any organization may trade for it.
    Bus(usize),
    /// The bus and the supplying organization (the DSO's registry of who supplies each POD):
    /// only that organization's prosumers trade for it.
    Supplied {
        /// The feeder's bus id.
        bus: usize,
        /// The MSP id of the supplier.
        supplier: String,
    },
}

impl PodEntry {
    /// The feeder's bus id.
    pub fn bus(&self) -> usize {
        match self {
            PodEntry::Bus(bus) | PodEntry::Supplied { bus, .. } => *bus,
        }
    }

    /// The supplying organization, if registered.
    pub fn supplier(&self) -> Option<&str> {
        match self {
            PodEntry::Bus(_) => None,
            PodEntry::Supplied { supplier, .. } => Some(supplier),
        }
    }
}

fn default_channel() -> String {
    "market".to_string()
}

fn default_chaincode() -> String {
    "energy".to_string()
}

fn default_scale() -> f64 {
    1.0
}

fn default_reservation() -> u64 {
    120
}

impl FeasibilityConfig {
    /// Makes relative paths relative to `base` (peer.toml's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        if self.feeder.is_relative() {
            self.feeder = base.join(&self.feeder);
        }
        if let Some(profile) = self.load_profile.as_mut().filter(|p| p.is_relative()) {
            *profile = base.join(&*profile);
        }
    }
}

/// Why the feasibility plugin could not start.
#[derive(Debug, thiserror::Error)]
pub enum FeasibilityError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The feeder file is not valid.
    #[error("feeder {path}: {source}")]
    Feeder {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: gridledger_grid::FeederError,
    },
    /// The configuration is not valid.
    #[error("[feasibility]: {0}")]
    Invalid(String),
}

/// An endorsed trade not committed yet.
struct Reservation {
    trade: GridTrade,
    period: i64,
    expires: Instant,
    /// The transaction of the endorsed proposal: when it commits, the reservation goes.
    tx_id: String,
}

/// The DSO's feasibility check, loaded from its configuration.
pub struct FeasibilityCheck {
    config: FeasibilityConfig,
    feeder: Feeder,
    profile: Vec<f64>,
    /// Reservations by trade key.
    reservations: Mutex<BTreeMap<String, Reservation>>,
    /// The committed trades of recently reviewed periods, decoded: by period, then trade key,
    /// with the version of the state value each was decoded from. Each review still reads the
    /// period's trades from its own state snapshot (so it sees exactly the committed set) but
    /// decodes only those written since — decoding every trade's JSON again made each check
    /// cost grow with the period's trades (BENCHMARKS.md).
    decoded: Mutex<BTreeMap<i64, DecodedTrades>>,
}

/// One period's committed trades as decoded: by key, with the state version decoded.
type DecodedTrades = HashMap<String, (Version, GridTrade)>;

/// Periods whose decoded trades [`FeasibilityCheck`] keeps (the latest delivery periods):
/// a week of 15-minute periods.
const DECODED_PERIODS: usize = 7 * 96;

/// Reads a load profile file (see [`parse_load_profile`]).
fn read_profile(path: &Path) -> Result<Vec<f64>, FeasibilityError> {
    let text = std::fs::read_to_string(path).map_err(|source| FeasibilityError::Read {
        path: path.into(),
        source,
    })?;
    parse_load_profile(&text, &path.display().to_string())
}

/// Parses a load profile: a header, then `minute_of_day,load_scale` for each of the 96
/// 15-minute slots of a day; returns the 96 scales in slot order. `source` names the text in
/// errors (the file's path). Every malformed line is an [`FeasibilityError::Invalid`] naming
/// its line number.
pub fn parse_load_profile(text: &str, source: &str) -> Result<Vec<f64>, FeasibilityError> {
    let mut scales = vec![f64::NAN; SLOTS_PER_DAY];
    for (number, line) in text.lines().enumerate().skip(1) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let invalid =
            |why: &str| FeasibilityError::Invalid(format!("{source} line {}: {why}", number + 1));
        let (minute, scale) = line
            .split_once(',')
            .ok_or_else(|| invalid("expected minute_of_day,load_scale"))?;
        let minute: usize = minute
            .trim()
            .parse()
            .map_err(|_| invalid("the minute of the day is not a number"))?;
        let scale: f64 = scale
            .trim()
            .parse()
            .map_err(|_| invalid("the load scale is not a number"))?;
        if minute % 15 != 0 || minute / 15 >= SLOTS_PER_DAY {
            return Err(invalid("the minute of the day must be 0, 15, …, 1425"));
        }
        if !(scale.is_finite() && scale >= 0.0) {
            return Err(invalid("the load scale must be a non-negative number"));
        }
        scales[minute / 15] = scale;
    }
    if let Some(missing) = scales.iter().position(|s| s.is_nan()) {
        return Err(FeasibilityError::Invalid(format!(
            "{source} has no load scale for minute {}",
            missing * 15
        )));
    }
    Ok(scales)
}

/// Why a review refused: a trade the grid cannot carry, or a check that could not run.
enum Refusal {
    Infeasible(String),
    Error(String),
}

impl From<String> for Refusal {
    fn from(reason: String) -> Refusal {
        Refusal::Error(reason)
    }
}

impl FeasibilityCheck {
    /// Loads the feeder and the profile named by `config`.
    pub fn load(config: FeasibilityConfig) -> Result<FeasibilityCheck, FeasibilityError> {
        let bytes = std::fs::read(&config.feeder).map_err(|source| FeasibilityError::Read {
            path: config.feeder.clone(),
            source,
        })?;
        let feeder = Feeder::from_json(&bytes).map_err(|source| FeasibilityError::Feeder {
            path: config.feeder.clone(),
            source,
        })?;
        if let Some((pod, bus)) = config
            .pods
            .iter()
            .map(|(pod, entry)| (pod, entry.bus()))
            .find(|(_, bus)| *bus >= feeder.buses.len())
        {
            return Err(FeasibilityError::Invalid(format!(
                "point of delivery {pod} is mapped to bus {bus}, which the feeder does not have"
            )));
        }
        if !(config.load_scale.is_finite() && config.load_scale >= 0.0) {
            return Err(FeasibilityError::Invalid(
                "load_scale must be a non-negative number".to_string(),
            ));
        }
        let profile = match &config.load_profile {
            Some(path) => read_profile(path)?,
            None => vec![config.load_scale; SLOTS_PER_DAY],
        };
        Ok(FeasibilityCheck {
            config,
            feeder,
            profile,
            reservations: Mutex::new(BTreeMap::new()),
            decoded: Mutex::new(BTreeMap::new()),
        })
    }

    /// The load scale of the slot `period` (Unix seconds, UTC) falls in.
    pub fn load_scale(&self, period: i64) -> f64 {
        let slot = usize::try_from(period.rem_euclid(86_400) / PERIOD_SECONDS).unwrap_or(0);
        self.profile[slot.min(SLOTS_PER_DAY - 1)]
    }

    /// Reviews a successful simulation of `chaincode` on `channel_id` before endorsement:
    /// `Ok` to endorse, otherwise the reason for the refusal. `tx_id` is the proposal's
    /// transaction id (its new trades are reserved under it); `state` is the committed state
    /// the simulation read. Every check of new trades is counted in
    /// `dso_feasibility_checks_total` by verdict.
    pub fn review(
        &self,
        channel_id: &str,
        chaincode: &str,
        tx_id: &str,
        rwset: &TxReadWriteSet,
        state: &StateSnapshot,
    ) -> Result<(), String> {
        self.review_at(channel_id, chaincode, tx_id, rwset, state, Instant::now())
    }

    /// [`FeasibilityCheck::review`] as of `now`: reservations that expired by then are not
    /// counted, and new ones expire `reservation_seconds` after it.
    pub fn review_at(
        &self,
        channel_id: &str,
        chaincode: &str,
        tx_id: &str,
        rwset: &TxReadWriteSet,
        state: &StateSnapshot,
        now: Instant,
    ) -> Result<(), String> {
        let outcome = self.review_trades(channel_id, chaincode, tx_id, rwset, state, now);
        let verdict = match &outcome {
            Ok(false) => return Ok(()),
            Ok(true) => "feasible",
            Err(Refusal::Infeasible(_)) => "infeasible",
            Err(Refusal::Error(_)) => "error",
        };
        crate::metrics::get().dso_feasibility_checks.inc(&[verdict]);
        match outcome {
            Ok(_) => Ok(()),
            Err(Refusal::Infeasible(reason) | Refusal::Error(reason)) => Err(reason),
        }
    }

    /// [`FeasibilityCheck::review`] without the counting: `Ok(false)` when there was no new
    /// trade to check, `Ok(true)` when every new trade is feasible.
    fn review_trades(
        &self,
        channel_id: &str,
        chaincode: &str,
        tx_id: &str,
        rwset: &TxReadWriteSet,
        state: &StateSnapshot,
        now: Instant,
    ) -> Result<bool, Refusal> {
        if channel_id != self.config.channel || chaincode != self.config.chaincode {
            return Ok(false);
        }
        let namespace = self.config.chaincode.as_str();
        let mut new_trades: Vec<(String, Trade)> = Vec::new();
        for ns in rwset.ns_rwset.iter().filter(|ns| ns.namespace == namespace) {
            let kv = KvrwSet::decode(ns.rwset.as_slice())
                .map_err(|e| format!("the read-write set does not decode: {e}"))?;
            for write in kv
                .writes
                .iter()
                .filter(|w| w.key.starts_with("trade/") && !w.is_delete)
            {
                let committed = state
                    .get(namespace, &write.key)
                    .map_err(|e| format!("cannot read the committed trades: {e}"))?;
                if committed.is_some() {
                    continue; // a settlement of a committed trade: no new flow
                }
                let trade: Trade = serde_json::from_slice(&write.value)
                    .map_err(|e| format!("trade {} does not decode: {e}", write.key))?;
                new_trades.push((write.key.clone(), trade));
            }
        }
        if new_trades.is_empty() {
            return Ok(false);
        }
        let mut reservations = self
            .reservations
            .lock()
            .map_err(|_| "the reservation table is poisoned".to_string())?;
        // Drop reservations that expired or whose trade committed.
        reservations.retain(|key, r| {
            r.expires > now && state.get(namespace, key).map_or(true, |v| v.is_none())
        });
        let mut reserved = Vec::new();
        for (key, trade) in &new_trades {
            let period = trade.period;
            self.check_suppliers(trade)?;
            let grid_trade = self.to_grid(trade)?;
            let mut trades = self.committed_trades(state, namespace, period)?;
            trades.extend(
                reservations
                    .iter()
                    .filter(|(k, r)| r.period == period && *k != key)
                    .map(|(_, r)| r.trade),
            );
            trades.extend(
                reserved
                    .iter()
                    .filter(|(p, _, _)| *p == period)
                    .map(|(_, _, t)| *t),
            );
            trades.push(grid_trade);
            let scale = self.load_scale(period);
            let verdict = check(&self.feeder, scale, &trades, PowerFlowSettings::default())
                .map_err(|e| format!("grid check for period {period}: {e}"))?;
            if let Some(v) = verdict.first_blocking() {
                let (what, unit) = match v.kind {
                    ViolationKind::Undervoltage => ("undervoltage at bus", "pu"),
                    ViolationKind::Overvoltage => ("overvoltage at bus", "pu"),
                    ViolationKind::Overcurrent => ("overcurrent on line", "A"),
                };
                return Err(Refusal::Infeasible(format!(
                    "trade {} is not feasible on the DSO's grid in period {period} (load scale {scale}, {} trades): {what} {} would be {} {unit} against a limit of {} {unit} (baseline {} {unit}, {:.6} {unit} beyond)",
                    trade.id,
                    trades.len(),
                    v.element,
                    v.value,
                    v.limit,
                    v.baseline,
                    v.excess()
                )));
            }
            reserved.push((period, key.clone(), grid_trade));
        }
        let expires = now + Duration::from_secs(self.config.reservation_seconds);
        for (period, key, trade) in reserved {
            reservations.insert(
                key,
                Reservation {
                    trade,
                    period,
                    expires,
                    tx_id: tx_id.to_owned(),
                },
            );
        }
        Ok(true)
    }

    /// Told by the committer, for each transaction of a block it committed on `channel_id`,
    /// its id and validation code: releases the reservations of those transactions on the
    /// configured channel, whatever the code (see the module doc). Returns how many it
    /// released.
    pub fn committed<'a>(
        &self,
        channel_id: &str,
        txs: impl IntoIterator<Item = (&'a str, TxValidationCode)>,
    ) -> usize {
        if channel_id != self.config.channel {
            return 0;
        }
        let mut reservations = match self.reservations.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        if reservations.is_empty() {
            return 0;
        }
        let codes: HashMap<&str, TxValidationCode> = txs.into_iter().collect();
        let before = reservations.len();
        reservations.retain(|key, r| match codes.get(r.tx_id.as_str()) {
            None => true,
            Some(TxValidationCode::Valid) => false,
            Some(code) => {
                tracing::debug!(trade = %key, tx_id = %r.tx_id, code = code.as_str_name(),
                    "the trade's transaction committed invalid; its reservation is released");
                false
            }
        });
        before - reservations.len()
    }

    /// The bus of `pod`, if the DSO knows it.
    pub fn bus_of(&self, pod: &str) -> Option<usize> {
        self.config.pods.get(pod).map(PodEntry::bus)
    }

    /// Refuses a trade whose seller or buyer account (`<MSP>:<POD>`) is not of the
    /// organization the DSO has registered as the POD's supplier.
    fn check_suppliers(&self, trade: &Trade) -> Result<(), String> {
        for (account, pod) in [
            (&trade.seller, &trade.seller_pod),
            (&trade.buyer, &trade.buyer_pod),
        ] {
            let Some(supplier) = self.config.pods.get(pod).and_then(PodEntry::supplier) else {
                continue;
            };
            let msp_id = account.split_once(':').map_or("", |(msp, _)| msp);
            if msp_id != supplier {
                return Err(format!(
                    "trade {} is not certified: point of delivery {pod} is supplied by {supplier}, not {msp_id} (account {account})",
                    trade.id
                ));
            }
        }
        Ok(())
    }

    fn to_grid(&self, trade: &Trade) -> Result<GridTrade, String> {
        let bus = |pod: &str| {
            self.bus_of(pod).ok_or_else(|| {
                format!(
                    "the DSO does not know point of delivery {pod}; it cannot certify the trade"
                )
            })
        };
        Ok(GridTrade {
            seller_bus: bus(&trade.seller_pod)?,
            buyer_bus: bus(&trade.buyer_pod)?,
            // Average power over the 15-minute period.
            kw: trade.energy_wh as f64 * 4.0 / 1000.0,
        })
    }

    fn committed_trades(
        &self,
        state: &StateSnapshot,
        namespace: &str,
        period: i64,
    ) -> Result<Vec<GridTrade>, String> {
        let prefix = format!("trade/{period:012}/");
        let end = format!("trade/{period:012}0");
        let rows = state
            .range(namespace, &prefix, &end, usize::MAX)
            .map_err(|e| format!("cannot read the committed trades: {e}"))?;
        let mut decoded = self
            .decoded
            .lock()
            .map_err(|_| "the decoded-trade cache is poisoned".to_string())?;
        let known = decoded.remove(&period).unwrap_or_default();
        let mut current = HashMap::with_capacity(rows.len());
        let mut trades = Vec::with_capacity(rows.len());
        for (key, value) in rows {
            let grid_trade = match known.get(&key) {
                Some((version, grid_trade)) if *version == value.version => *grid_trade,
                _ => {
                    let trade: Trade = serde_json::from_slice(&value.value)
                        .map_err(|e| format!("committed trade {key} does not decode: {e}"))?;
                    self.to_grid(&trade)?
                }
            };
            trades.push(grid_trade);
            current.insert(key, (value.version, grid_trade));
        }
        decoded.insert(period, current);
        while decoded.len() > DECODED_PERIODS {
            decoded.pop_first();
        }
        Ok(trades)
    }
}
