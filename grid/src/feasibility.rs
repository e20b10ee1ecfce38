//! The DSO's feasibility rule for energy trades.
//!
//! A trade of `kw` from a seller's bus to a buyer's bus is modelled as an injection of `kw` at
//! the seller's bus and an equal extra load at the buyer's bus, at unity power factor. The
//! period's baseline is the feeder's loads scaled by the period's load scale. With the trades
//! applied:
//!
//! - every bus voltage must lie within `[v_min, v_max]` and every line current within its
//!   limit; except that
//! - a bus or line already outside its limit in the baseline may stay outside, as long as the
//!   trades move it further out by no more than [`VOLTAGE_TOLERANCE_PU`] or
//!   [`CURRENT_TOLERANCE_A`]: the trades must not create a violation nor worsen one.
//!
//! Everything is decided on rounded values (voltages 1e-6 pu, currents 1e-3 A), which are
//! also what the verdict reports, so every DSO peer reaches and signs the same verdict.

use serde::Serialize;

use crate::feeder::Feeder;
use crate::powerflow::{BusPower, PowerFlow, PowerFlowError, PowerFlowSettings, solve};

/// How far trades may push an already low (or high) bus voltage further out, pu.
pub const VOLTAGE_TOLERANCE_PU: f64 = 1e-4;
/// How far trades may push an already overloaded line's current further up, A.
pub const CURRENT_TOLERANCE_A: f64 = 0.1;

/// One trade: `kw` flowing from the seller's bus to the buyer's bus.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trade {
    /// The seller's bus (the injection).
    pub seller_bus: usize,
    /// The buyer's bus (the extra load).
    pub buyer_bus: usize,
    /// Active power, kW (non-negative).
    pub kw: f64,
}

/// What limit a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// A bus voltage below `v_min`.
    Undervoltage,
    /// A bus voltage above `v_max`.
    Overvoltage,
    /// A line current above its limit.
    Overcurrent,
}

/// A bus or line outside its limit with the trades applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// Which limit.
    pub kind: ViolationKind,
    /// The bus (voltage) or line (current) id.
    pub element: usize,
    /// Its value with the trades: pu for voltages, A for currents.
    pub value: f64,
    /// The limit it breaks.
    pub limit: f64,
    /// Its value in the baseline.
    pub baseline: f64,
    /// Whether the baseline already broke the limit and the trades worsen it by no more than
    /// the tolerance (then it does not make the trades infeasible).
    pub tolerated: bool,
}

impl Violation {
    /// How far beyond its limit it is (positive), in pu or A.
    pub fn excess(&self) -> f64 {
        match self.kind {
            ViolationKind::Undervoltage => self.limit - self.value,
            ViolationKind::Overvoltage | ViolationKind::Overcurrent => self.value - self.limit,
        }
    }
}

/// The verdict on a set of trades for one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Whether the trades may go ahead.
    pub feasible: bool,
    /// Lowest bus voltage with the trades, pu, and its bus.
    pub min_vm_pu: f64,
    /// The bus of the lowest voltage.
    pub min_vm_bus: usize,
    /// Highest bus voltage with the trades, pu.
    pub max_vm_pu: f64,
    /// The bus of the highest voltage.
    pub max_vm_bus: usize,
    /// Total active losses with the trades, kW.
    pub losses_kw: f64,
    /// Total active losses of the baseline, kW.
    pub baseline_losses_kw: f64,
    /// The line with the highest current relative to its limit (`None` when no line has a
    /// limit).
    pub max_loading_line: Option<usize>,
    /// Its loading, % of its limit.
    pub max_loading_pct: Option<f64>,
    /// Its current, A.
    pub max_loading_current_a: Option<f64>,
    /// Every bus and line outside its limit with the trades, buses first, each by id.
    pub violations: Vec<Violation>,
    /// Power-flow iterations (baseline, with trades).
    pub iterations: [u32; 2],
}

impl Verdict {
    /// The first violation that makes the trades infeasible, if any.
    pub fn first_blocking(&self) -> Option<&Violation> {
        self.violations.iter().find(|v| !v.tolerated)
    }
}

/// `value` rounded to a multiple of `step` (a power of ten below 1), as the nearest double to
/// the decimal, so it also prints as that decimal.
fn round_to(value: f64, step: f64) -> f64 {
    let per_unit = (1.0 / step).round();
    (value * per_unit).round() / per_unit
}

fn rounded_vm(flow: &PowerFlow) -> Vec<f64> {
    flow.vm_pu.iter().map(|v| round_to(*v, 1e-6)).collect()
}

fn rounded_current(flow: &PowerFlow) -> Vec<f64> {
    flow.line_current_a
        .iter()
        .map(|i| round_to(*i, 1e-3))
        .collect()
}

/// Decides whether `trades` are feasible in a period whose loads are the feeder's scaled by
/// `load_scale` (see the module doc).
pub fn check(
    feeder: &Feeder,
    load_scale: f64,
    trades: &[Trade],
    settings: PowerFlowSettings,
) -> Result<Verdict, PowerFlowError> {
    let mut extra = Vec::with_capacity(trades.len() * 2);
    for trade in trades {
        if !(trade.kw.is_finite() && trade.kw >= 0.0) {
            return Err(PowerFlowError::Input(format!(
                "a trade's power must be a non-negative number of kW, not {}",
                trade.kw
            )));
        }
        extra.push(BusPower {
            bus: trade.seller_bus,
            p_kw: -trade.kw,
            q_kvar: 0.0,
        });
        extra.push(BusPower {
            bus: trade.buyer_bus,
            p_kw: trade.kw,
            q_kvar: 0.0,
        });
    }
    let baseline = solve(feeder, load_scale, &[], settings)?;
    let with = solve(feeder, load_scale, &extra, settings)?;
    let (vm_before, vm_after) = (rounded_vm(&baseline), rounded_vm(&with));
    let (i_before, i_after) = (rounded_current(&baseline), rounded_current(&with));

    let mut violations = Vec::new();
    for bus in 0..feeder.buses.len() {
        let (before, after) = (vm_before[bus], vm_after[bus]);
        if after < feeder.v_min_pu {
            violations.push(Violation {
                kind: ViolationKind::Undervoltage,
                element: bus,
                value: after,
                limit: feeder.v_min_pu,
                baseline: before,
                tolerated: before < feeder.v_min_pu && before - after <= VOLTAGE_TOLERANCE_PU,
            });
        } else if after > feeder.v_max_pu {
            violations.push(Violation {
                kind: ViolationKind::Overvoltage,
                element: bus,
                value: after,
                limit: feeder.v_max_pu,
                baseline: before,
                tolerated: before > feeder.v_max_pu && after - before <= VOLTAGE_TOLERANCE_PU,
            });
        }
    }
    let mut max_loading: Option<(usize, f64, f64)> = None;
    for line in feeder.lines.iter().filter(|l| l.in_service) {
        let Some(limit) = line.i_max_a else {
            continue;
        };
        let (before, after) = (i_before[line.id], i_after[line.id]);
        let loading = after / limit * 100.0;
        if max_loading.is_none_or(|(_, best, _)| loading > best) {
            max_loading = Some((line.id, loading, after));
        }
        if after > limit {
            violations.push(Violation {
                kind: ViolationKind::Overcurrent,
                element: line.id,
                value: after,
                limit,
                baseline: before,
                tolerated: before > limit && after - before <= CURRENT_TOLERANCE_A,
            });
        }
    }
    let (min_vm_bus, min_vm_pu) = extreme(&vm_after, |a, b| a < b);
    let (max_vm_bus, max_vm_pu) = extreme(&vm_after, |a, b| a > b);
    Ok(Verdict {
        feasible: violations.iter().all(|v| v.tolerated),
        min_vm_pu,
        min_vm_bus,
        max_vm_pu,
        max_vm_bus,
        losses_kw: round_to(with.losses_kw, 1e-3),
        baseline_losses_kw: round_to(baseline.losses_kw, 1e-3),
        max_loading_line: max_loading.map(|(line, _, _)| line),
        max_loading_pct: max_loading.map(|(_, pct, _)| round_to(pct, 1e-3)),
        max_loading_current_a: max_loading.map(|(_, _, current)| current),
        violations,
        iterations: [baseline.iterations, with.iterations],
    })
}

/// The first index whose value beats every other by `better` (ties: the lowest index).
fn extreme(values: &[f64], better: impl Fn(f64, f64) -> bool) -> (usize, f64) {
    let mut best = (0, values[0]);
    for (index, &value) in values.iter().enumerate().skip(1) {
        if better(value, best.1) {
            best = (index, value);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const IEEE33: &[u8] = include_bytes!("../feeders/ieee33.json");

    fn feeder() -> Feeder {
        Feeder::from_json(IEEE33).expect("feeder")
    }

    fn trade(seller_bus: usize, buyer_bus: usize, kw: f64) -> Trade {
        Trade {
            seller_bus,
            buyer_bus,
            kw,
        }
    }

    fn verdict(scale: f64, trades: &[Trade]) -> Verdict {
        check(&feeder(), scale, trades, PowerFlowSettings::default()).expect("converges")
    }

    #[test]
    fn the_base_case_reports_the_reference_extremes() {
        let v = verdict(1.0, &[]);
        assert_eq!((v.min_vm_bus, v.max_vm_bus), (17, 0));
        assert!((v.min_vm_pu - 0.91309).abs() <= 1e-5, "{}", v.min_vm_pu);
        assert!((v.losses_kw - 202.677).abs() <= 0.01, "{}", v.losses_kw);
        assert_eq!(v.max_loading_line, Some(0), "the trunk's first line");
        assert!((v.max_loading_pct.expect("pct") - 70.121).abs() <= 0.01);
        // The heavy-load baseline is already under voltage at the far ends: those violations
        // exist but no trade made them, so the (empty) set of trades is feasible.
        assert!(v.feasible);
        assert!(!v.violations.is_empty());
        assert!(v.violations.iter().all(|x| x.tolerated));
    }

    #[test]
    fn light_load_local_trade_is_feasible_and_changes_little() {
        let v = verdict(0.5, &[trade(24, 23, 100.0)]);
        assert!(v.feasible, "{:?}", v.violations);
        assert!(v.violations.is_empty());
    }

    #[test]
    fn a_far_end_seller_lowers_losses_and_a_far_end_buyer_raises_them() {
        let base = verdict(0.5, &[]);
        let lowers = verdict(0.5, &[trade(17, 1, 200.0)]);
        assert!(lowers.feasible, "{:?}", lowers.violations);
        assert!(
            lowers.losses_kw < base.losses_kw,
            "{} vs {}",
            lowers.losses_kw,
            base.losses_kw
        );
        let raises = verdict(0.5, &[trade(1, 17, 200.0)]);
        assert!(raises.losses_kw > base.losses_kw);
        // At half load the far end starts within limits (0.958 pu); pulling 200 kW more there
        // pushes it below v_min: a new violation, so infeasible.
        assert!(base.violations.is_empty(), "{:?}", base.violations);
        assert!(!raises.feasible);
        let blocking = raises.first_blocking().expect("a violation");
        assert_eq!(blocking.kind, ViolationKind::Undervoltage);
    }

    #[test]
    fn a_large_pv_export_at_the_far_end_over_voltages_it() {
        let v = verdict(0.2, &[trade(17, 0, 2500.0)]);
        assert!(!v.feasible);
        let blocking = v.first_blocking().expect("a violation");
        assert_eq!(blocking.kind, ViolationKind::Overvoltage);
        assert_eq!(v.max_vm_bus, 17);
        assert!(v.max_vm_pu > 1.05);
    }

    #[test]
    fn a_large_transfer_overloads_a_line() {
        // 3.4 MW from near the substation into the 2-22-23-24 lateral: line 21 (150 A)
        // carries about 173 A while every voltage stays within the band.
        let v = verdict(0.3, &[trade(1, 22, 3400.0)]);
        assert!(!v.feasible);
        assert_eq!(v.violations.len(), 1, "{:?}", v.violations);
        let blocking = v.first_blocking().expect("a violation");
        assert_eq!(
            (blocking.kind, blocking.element),
            (ViolationKind::Overcurrent, 21)
        );
        assert!(blocking.excess() > 20.0);
        assert_eq!(v.max_loading_line, Some(21));
        assert!(v.max_loading_pct.expect("loading") > 100.0);
    }

    #[test]
    fn under_heavy_load_a_trade_may_not_worsen_an_existing_violation() {
        // At full load bus 17 is already at 0.913 pu. Relief is fine; more load there is not.
        let relief = verdict(1.0, &[trade(17, 1, 100.0)]);
        assert!(relief.feasible);
        let worse = verdict(1.0, &[trade(1, 17, 20.0)]);
        assert!(!worse.feasible);
        let blocking = worse.first_blocking().expect("a worsened violation");
        assert_eq!(blocking.kind, ViolationKind::Undervoltage);
        assert!(blocking.baseline < 0.95 && blocking.baseline - blocking.value > 1e-4);
        // A tiny one moves it by less than the tolerance: tolerated.
        let tiny = verdict(1.0, &[trade(1, 17, 0.1)]);
        assert!(tiny.feasible, "{:?}", tiny.first_blocking());
    }

    #[test]
    fn verdicts_are_deterministic_and_refuse_bad_trades() {
        let trades = [trade(32, 22, 400.0), trade(17, 1, 50.0)];
        assert_eq!(verdict(0.8, &trades), verdict(0.8, &trades));
        let feeder = feeder();
        for bad in [
            trade(1, 2, -5.0),
            trade(1, 2, f64::INFINITY),
            trade(1, 40, 5.0),
        ] {
            assert!(matches!(
                check(&feeder, 1.0, &[bad], PowerFlowSettings::default()),
                Err(PowerFlowError::Input(_))
            ));
        }
    }
}
