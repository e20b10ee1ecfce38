//! AC power flow on a radial feeder by backward/forward sweep (see the crate doc).
//!
//! Per-unit on the feeder's bases. Loads are constant power: at voltage `V` a load `S` draws
//! `conj(S / V)`. Backward: the current of the line feeding a bus is that bus's load current
//! plus the currents of the lines it feeds. Forward: a bus's voltage is its upstream bus's
//! minus the line's impedance times its current, from the substation (fixed voltage, angle 0)
//! outward. Converged when no bus voltage moved by more than the tolerance in an iteration.

use thiserror::Error;

use crate::complex::Complex;
use crate::feeder::Feeder;

/// How the sweep iterates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerFlowSettings {
    /// Converged when no bus voltage changes by more than this (pu) in one iteration.
    pub tolerance_pu: f64,
    /// Iterations before giving up.
    pub max_iterations: u32,
}

impl Default for PowerFlowSettings {
    fn default() -> PowerFlowSettings {
        PowerFlowSettings {
            tolerance_pu: 1e-10,
            max_iterations: 100,
        }
    }
}

/// Power drawn at a bus in addition to its (scaled) loads; consumption positive, so an
/// injection is negative.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BusPower {
    /// The bus.
    pub bus: usize,
    /// Active power, kW.
    pub p_kw: f64,
    /// Reactive power, kvar.
    pub q_kvar: f64,
}

/// Why there is no power-flow answer.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PowerFlowError {
    /// The sweep did not settle within the iteration cap.
    #[error(
        "the power flow did not converge in {iterations} iterations (last voltage change {mismatch_pu:e} pu, tolerance {tolerance_pu:e} pu); the loading is probably beyond what the feeder can carry"
    )]
    NotConverged {
        /// Iterations run.
        iterations: u32,
        /// The largest voltage change of the last iteration.
        mismatch_pu: f64,
        /// The tolerance asked for.
        tolerance_pu: f64,
    },
    /// Voltages collapsed (or became non-finite): no operating point exists near this one.
    #[error(
        "the power flow diverged at iteration {iteration}: bus {bus} voltage {vm_pu} pu (voltage collapse)"
    )]
    Diverged {
        /// The iteration.
        iteration: u32,
        /// The first bus found collapsed.
        bus: usize,
        /// Its voltage magnitude.
        vm_pu: f64,
    },
    /// The input is unusable.
    #[error("{0}")]
    Input(String),
}

/// A solved operating point.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerFlow {
    /// Voltage magnitude per bus, pu.
    pub vm_pu: Vec<f64>,
    /// Voltage angle per bus, degrees.
    pub va_deg: Vec<f64>,
    /// Current per line, A per phase (0 for lines out of service).
    pub line_current_a: Vec<f64>,
    /// Active power loss per line, kW.
    pub line_loss_kw: Vec<f64>,
    /// Total active losses, kW.
    pub losses_kw: f64,
    /// Total reactive losses, kvar.
    pub losses_kvar: f64,
    /// Active power the substation supplies, kW.
    pub slack_p_kw: f64,
    /// Reactive power the substation supplies, kvar.
    pub slack_q_kvar: f64,
    /// Iterations the sweep took.
    pub iterations: u32,
}

/// A voltage below this is a collapse, not an operating point.
const COLLAPSE_PU: f64 = 0.3;

/// Solves the power flow of `feeder` with every load scaled by `load_scale` and `extra`
/// powers added.
pub fn solve(
    feeder: &Feeder,
    load_scale: f64,
    extra: &[BusPower],
    settings: PowerFlowSettings,
) -> Result<PowerFlow, PowerFlowError> {
    if !load_scale.is_finite() || load_scale < 0.0 {
        return Err(PowerFlowError::Input(format!(
            "the load scale must be a non-negative number, not {load_scale}"
        )));
    }
    if !(settings.tolerance_pu.is_finite() && settings.tolerance_pu > 0.0)
        || settings.max_iterations == 0
    {
        return Err(PowerFlowError::Input(
            "the tolerance must be positive and at least one iteration allowed".to_string(),
        ));
    }
    let n = feeder.buses.len();
    let s_base_kva = feeder.base_mva * 1000.0;
    // Complex power drawn per bus, pu.
    let mut demand = vec![Complex::default(); n];
    for load in &feeder.loads {
        demand[load.bus] += Complex::new(
            load.p_kw * load_scale / s_base_kva,
            load.q_kvar * load_scale / s_base_kva,
        );
    }
    for power in extra {
        if power.bus >= n {
            return Err(PowerFlowError::Input(format!(
                "bus {} does not exist (the feeder has buses 0..{})",
                power.bus,
                n - 1
            )));
        }
        if !(power.p_kw.is_finite() && power.q_kvar.is_finite()) {
            return Err(PowerFlowError::Input(format!(
                "the power at bus {} is not a finite number",
                power.bus
            )));
        }
        demand[power.bus] += Complex::new(power.p_kw / s_base_kva, power.q_kvar / s_base_kva);
    }
    let z_base = feeder.base_impedance_ohm();
    let impedance: Vec<Complex> = feeder
        .lines
        .iter()
        .map(|l| Complex::new(l.r_ohm / z_base, l.x_ohm / z_base))
        .collect();

    let slack = Complex::new(feeder.slack_vm_pu, 0.0);
    let mut voltage = vec![slack; n];
    // Current into each bus through its feeding line, pu.
    let mut branch = vec![Complex::default(); n];
    let mut iterations = 0;
    let mut mismatch = f64::INFINITY;
    while iterations < settings.max_iterations {
        iterations += 1;
        sweep_backward(feeder, &demand, &voltage, &mut branch);
        mismatch = 0.0;
        for &bus in &feeder.order[1..] {
            let (line, up) = feeder.parent[bus].expect("every bus but the slack has a parent");
            let updated = voltage[up] - impedance[line] * branch[bus];
            let vm = updated.abs();
            if !updated.is_finite() || vm < COLLAPSE_PU {
                return Err(PowerFlowError::Diverged {
                    iteration: iterations,
                    bus,
                    vm_pu: vm,
                });
            }
            mismatch = mismatch.max((updated - voltage[bus]).abs());
            voltage[bus] = updated;
        }
        if mismatch <= settings.tolerance_pu {
            break;
        }
    }
    if mismatch > settings.tolerance_pu {
        return Err(PowerFlowError::NotConverged {
            iterations,
            mismatch_pu: mismatch,
            tolerance_pu: settings.tolerance_pu,
        });
    }
    // Currents consistent with the final voltages.
    sweep_backward(feeder, &demand, &voltage, &mut branch);

    let base_current = feeder.base_current_a();
    let mut line_current_a = vec![0.0; feeder.lines.len()];
    let mut line_loss_kw = vec![0.0; feeder.lines.len()];
    let mut losses = Complex::default();
    for &bus in &feeder.order[1..] {
        let (line, _) = feeder.parent[bus].expect("every bus but the slack has a parent");
        let current = branch[bus];
        line_current_a[line] = current.abs() * base_current;
        let loss = impedance[line] * Complex::new(current.norm_sqr(), 0.0);
        line_loss_kw[line] = loss.re * s_base_kva;
        losses += loss;
    }
    // The substation supplies what flows out of it: V·conj(I) over its lines, plus its own
    // demand.
    let mut out_of_slack = demand[feeder.slack_bus];
    for &bus in &feeder.order[1..] {
        if let Some((_, up)) = feeder.parent[bus] {
            if up == feeder.slack_bus {
                out_of_slack += voltage[up] * branch[bus].conj();
            }
        }
    }
    Ok(PowerFlow {
        vm_pu: voltage.iter().map(|v| v.abs()).collect(),
        va_deg: voltage.iter().map(|v| v.arg_deg()).collect(),
        line_current_a,
        line_loss_kw,
        losses_kw: losses.re * s_base_kva,
        losses_kvar: losses.im * s_base_kva,
        slack_p_kw: out_of_slack.re * s_base_kva,
        slack_q_kvar: out_of_slack.im * s_base_kva,
        iterations,
    })
}

/// Backward sweep: `branch[bus]` = the current into `bus` through its feeding line.
fn sweep_backward(
    feeder: &Feeder,
    demand: &[Complex],
    voltage: &[Complex],
    branch: &mut [Complex],
) {
    for (bus, current) in branch.iter_mut().enumerate() {
        *current = (demand[bus] / voltage[bus]).conj();
    }
    for &bus in feeder.order[1..].iter().rev() {
        let (_, up) = feeder.parent[bus].expect("every bus but the slack has a parent");
        let flowing = branch[bus];
        branch[up] += flowing;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IEEE33: &[u8] = include_bytes!("../feeders/ieee33.json");

    fn reference() -> serde_json::Value {
        let file: serde_json::Value = serde_json::from_slice(IEEE33).expect("json");
        file["reference_ac_powerflow"].clone()
    }

    #[test]
    fn the_ieee33_base_case_reproduces_the_reference_solution() {
        let feeder = Feeder::from_json(IEEE33).expect("feeder");
        let flow = solve(&feeder, 1.0, &[], PowerFlowSettings::default()).expect("converges");
        let reference = reference();
        let losses = reference["total_losses_kw"].as_f64().expect("losses");
        assert!(
            (flow.losses_kw - losses).abs() <= 0.1,
            "losses {} kW, reference {losses}",
            flow.losses_kw
        );
        assert!((flow.losses_kw - 202.68).abs() <= 0.1);
        for (bus, expected) in reference["bus_vm_pu"]
            .as_array()
            .expect("voltages")
            .iter()
            .enumerate()
        {
            let expected = expected.as_f64().expect("number");
            assert!(
                (flow.vm_pu[bus] - expected).abs() <= 1e-5,
                "bus {bus}: {} pu, reference {expected}",
                flow.vm_pu[bus]
            );
        }
        for (bus, expected) in reference["bus_va_deg"]
            .as_array()
            .expect("angles")
            .iter()
            .enumerate()
        {
            let expected = expected.as_f64().expect("number");
            assert!(
                (flow.va_deg[bus] - expected).abs() <= 1e-3,
                "bus {bus}: {}°, reference {expected}°",
                flow.va_deg[bus]
            );
        }
        for line in reference["lines"].as_array().expect("lines") {
            let id = line["line"].as_u64().expect("id") as usize;
            let current = line["i_a"].as_f64().expect("current");
            assert!(
                (flow.line_current_a[id] - current).abs() <= 0.01,
                "line {id}: {} A, reference {current}",
                flow.line_current_a[id]
            );
        }
        let slack_p = reference["slack_p_kw"].as_f64().expect("slack p");
        assert!(
            (flow.slack_p_kw - slack_p).abs() <= 0.1,
            "{}",
            flow.slack_p_kw
        );
        let slack_q = reference["slack_q_kvar"].as_f64().expect("slack q");
        assert!(
            (flow.slack_q_kvar - slack_q).abs() <= 0.1,
            "{}",
            flow.slack_q_kvar
        );
        // Supply = demand + losses.
        assert!((flow.slack_p_kw - 3715.0 - flow.losses_kw).abs() < 1e-6);
    }

    #[test]
    fn an_impossible_loading_is_reported_not_answered() {
        let feeder = Feeder::from_json(IEEE33).expect("feeder");
        let err = solve(&feeder, 8.0, &[], PowerFlowSettings::default())
            .expect_err("eight times the load cannot be supplied");
        assert!(
            matches!(
                err,
                PowerFlowError::Diverged { .. } | PowerFlowError::NotConverged { .. }
            ),
            "{err}"
        );
        let few = PowerFlowSettings {
            tolerance_pu: 1e-12,
            max_iterations: 2,
        };
        assert!(matches!(
            solve(&feeder, 1.0, &[], few),
            Err(PowerFlowError::NotConverged { iterations: 2, .. })
        ));
        assert!(matches!(
            solve(&feeder, f64::NAN, &[], PowerFlowSettings::default()),
            Err(PowerFlowError::Input(_))
        ));
        let nowhere = BusPower {
            bus: 99,
            p_kw: 1.0,
            q_kvar: 0.0,
        };
        assert!(matches!(
            solve(&feeder, 1.0, &[nowhere], PowerFlowSettings::default()),
            Err(PowerFlowError::Input(_))
        ));
    }

    #[test]
    fn no_load_means_flat_voltages_and_no_losses() {
        let feeder = Feeder::from_json(IEEE33).expect("feeder");
        let flow = solve(&feeder, 0.0, &[], PowerFlowSettings::default()).expect("converges");
        assert!(flow.vm_pu.iter().all(|v| (v - 1.0).abs() < 1e-12));
        assert!(flow.losses_kw.abs() < 1e-12);
        assert_eq!(flow.iterations, 1);
    }
}
