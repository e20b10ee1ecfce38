//! A radial distribution feeder: buses, lines with their impedance and current limit, loads,
//! the substation's voltage and the voltage band, parsed from a feeder file and checked.
//!
//! The file is JSON (the layout of `feeders/ieee33.json`): `base{base_kv, base_mva,
//! slack_bus, slack_vm_pu}`, `limits{v_min_pu, v_max_pu}`, `buses[{id}]` with ids 0..n,
//! `lines[{id, from, to, r_ohm, x_ohm, in_service, i_max_ka_assumed | i_max_ka |
//! i_max_ka_case_file}]` and `loads[{bus, p_kw, q_kvar, model = "constant_power"}]`. Other
//! fields (such as a reference solution) are ignored. The lines in service must form a tree
//! spanning every bus from the slack bus: a feeder is operated radially, with its tie switches
//! open.

use serde::Deserialize;
use thiserror::Error;

/// Why a feeder file was refused.
#[derive(Debug, Error)]
pub enum FeederError {
    /// The file is not JSON of the expected shape.
    #[error("the feeder file is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// A value is out of range or inconsistent.
    #[error("the feeder file is not valid: {0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> FeederError {
    FeederError::Invalid(message.into())
}

/// One bus (node) of the feeder.
#[derive(Debug, Clone, PartialEq)]
pub struct Bus {
    /// Its id (0-based, its index).
    pub id: usize,
}

/// One line (branch) of the feeder.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Its id (0-based, its index).
    pub id: usize,
    /// The bus on the substation side as the file names it.
    pub from: usize,
    /// The other bus.
    pub to: usize,
    /// Series resistance in ohm.
    pub r_ohm: f64,
    /// Series reactance in ohm.
    pub x_ohm: f64,
    /// Whether the line is closed (tie switches are open).
    pub in_service: bool,
    /// Its current limit in A per phase, if it has one.
    pub i_max_a: Option<f64>,
}

/// A constant-power load at a bus (consumption positive).
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    /// The bus.
    pub bus: usize,
    /// Active power, kW.
    pub p_kw: f64,
    /// Reactive power, kvar.
    pub q_kvar: f64,
}

/// A radial feeder, checked: ids are indexes, the lines in service form a tree rooted at the
/// slack bus, and every number is finite and in range.
#[derive(Debug, Clone)]
pub struct Feeder {
    /// A name for reports.
    pub name: String,
    /// Line-to-line base voltage, kV.
    pub base_kv: f64,
    /// Three-phase power base, MVA.
    pub base_mva: f64,
    /// The substation bus, whose voltage is fixed.
    pub slack_bus: usize,
    /// The substation's voltage magnitude, pu.
    pub slack_vm_pu: f64,
    /// Lowest allowed bus voltage, pu.
    pub v_min_pu: f64,
    /// Highest allowed bus voltage, pu.
    pub v_max_pu: f64,
    /// Buses by id.
    pub buses: Vec<Bus>,
    /// Lines by id.
    pub lines: Vec<Line>,
    /// Loads, in file order.
    pub loads: Vec<Load>,
    /// Buses breadth-first from the slack bus (children in line-id order).
    pub(crate) order: Vec<usize>,
    /// For every bus but the slack: the line feeding it and the bus on its substation side.
    pub(crate) parent: Vec<Option<(usize, usize)>>,
}

/// A current limit of 99,999 kA (or more) is a placeholder for "no limit".
const NO_LIMIT_KA: f64 = 99_999.0;

#[derive(Deserialize)]
struct FileBase {
    base_kv: f64,
    base_mva: f64,
    slack_bus: usize,
    #[serde(default = "one")]
    slack_vm_pu: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Deserialize)]
struct FileLimits {
    v_min_pu: f64,
    v_max_pu: f64,
}

#[derive(Deserialize)]
struct FileBus {
    id: usize,
}

#[derive(Deserialize)]
struct FileLine {
    id: usize,
    from: usize,
    to: usize,
    r_ohm: f64,
    x_ohm: f64,
    #[serde(default = "yes")]
    in_service: bool,
    i_max_ka_assumed: Option<f64>,
    i_max_ka: Option<f64>,
    i_max_ka_case_file: Option<f64>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct FileLoad {
    bus: usize,
    p_kw: f64,
    q_kvar: f64,
    #[serde(default = "constant_power")]
    model: String,
}

fn constant_power() -> String {
    "constant_power".to_string()
}

#[derive(Deserialize)]
struct FeederFile {
    #[serde(default)]
    name: String,
    base: FileBase,
    limits: FileLimits,
    buses: Vec<FileBus>,
    lines: Vec<FileLine>,
    #[serde(default)]
    loads: Vec<FileLoad>,
}

fn finite(what: &str, value: f64) -> Result<f64, FeederError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(invalid(format!("{what} is not a finite number")))
    }
}

impl Feeder {
    /// Parses and checks a feeder file.
    pub fn from_json(bytes: &[u8]) -> Result<Feeder, FeederError> {
        let file: FeederFile = serde_json::from_slice(bytes)?;
        let base_kv = finite("base.base_kv", file.base.base_kv)?;
        let base_mva = finite("base.base_mva", file.base.base_mva)?;
        if base_kv <= 0.0 || base_mva <= 0.0 {
            return Err(invalid("base.base_kv and base.base_mva must be positive"));
        }
        let slack_vm_pu = finite("base.slack_vm_pu", file.base.slack_vm_pu)?;
        if !(0.5..=1.5).contains(&slack_vm_pu) {
            return Err(invalid(format!(
                "base.slack_vm_pu {slack_vm_pu} is outside 0.5..1.5 pu"
            )));
        }
        let v_min_pu = finite("limits.v_min_pu", file.limits.v_min_pu)?;
        let v_max_pu = finite("limits.v_max_pu", file.limits.v_max_pu)?;
        if !(0.0 < v_min_pu && v_min_pu < v_max_pu) {
            return Err(invalid(format!(
                "the voltage band [{v_min_pu}, {v_max_pu}] pu is empty or not positive"
            )));
        }

        let n = file.buses.len();
        if n == 0 {
            return Err(invalid("the feeder has no buses"));
        }
        let mut buses = Vec::with_capacity(n);
        for (index, bus) in file.buses.iter().enumerate() {
            if bus.id != index {
                return Err(invalid(format!(
                    "bus ids must be 0..{n} in order; entry {index} has id {}",
                    bus.id
                )));
            }
            buses.push(Bus { id: bus.id });
        }
        let slack_bus = file.base.slack_bus;
        if slack_bus >= n {
            return Err(invalid(format!(
                "base.slack_bus {slack_bus} is not a bus (the feeder has {n})"
            )));
        }

        let mut lines = Vec::with_capacity(file.lines.len());
        for (index, line) in file.lines.iter().enumerate() {
            if line.id != index {
                return Err(invalid(format!(
                    "line ids must be 0..{} in order; entry {index} has id {}",
                    file.lines.len(),
                    line.id
                )));
            }
            if line.from >= n || line.to >= n || line.from == line.to {
                return Err(invalid(format!(
                    "line {index} connects bus {} to bus {}, which is not a line between two buses of this feeder",
                    line.from, line.to
                )));
            }
            let r_ohm = finite(&format!("line {index} r_ohm"), line.r_ohm)?;
            let x_ohm = finite(&format!("line {index} x_ohm"), line.x_ohm)?;
            if r_ohm < 0.0 || x_ohm < 0.0 || (r_ohm == 0.0 && x_ohm == 0.0) {
                return Err(invalid(format!(
                    "line {index} has impedance {r_ohm} + j{x_ohm} ohm; both parts must be non-negative and not both zero"
                )));
            }
            let limit_ka = line
                .i_max_ka_assumed
                .or(line.i_max_ka)
                .or(line.i_max_ka_case_file);
            let i_max_a = match limit_ka {
                None => None,
                Some(ka) if ka.is_finite() && ka > 0.0 && ka < NO_LIMIT_KA => Some(ka * 1000.0),
                Some(ka) if ka >= NO_LIMIT_KA => None,
                Some(ka) => {
                    return Err(invalid(format!(
                        "line {index} has current limit {ka} kA; it must be positive"
                    )));
                }
            };
            lines.push(Line {
                id: index,
                from: line.from,
                to: line.to,
                r_ohm,
                x_ohm,
                in_service: line.in_service,
                i_max_a,
            });
        }

        let mut loads = Vec::with_capacity(file.loads.len());
        for (index, load) in file.loads.iter().enumerate() {
            if load.bus >= n {
                return Err(invalid(format!(
                    "load {index} is at bus {}, which does not exist",
                    load.bus
                )));
            }
            if load.model != "constant_power" {
                return Err(invalid(format!(
                    "load {index} has model {:?}; only constant_power is supported",
                    load.model
                )));
            }
            loads.push(Load {
                bus: load.bus,
                p_kw: finite(&format!("load {index} p_kw"), load.p_kw)?,
                q_kvar: finite(&format!("load {index} q_kvar"), load.q_kvar)?,
            });
        }

        let (order, parent) = radial_tree(n, slack_bus, &lines)?;
        Ok(Feeder {
            name: file.name,
            base_kv,
            base_mva,
            slack_bus,
            slack_vm_pu,
            v_min_pu,
            v_max_pu,
            buses,
            lines,
            loads,
            order,
            parent,
        })
    }

    /// Base current in A per phase: base power over √3 × base voltage.
    pub fn base_current_a(&self) -> f64 {
        self.base_mva * 1e6 / (3f64.sqrt() * self.base_kv * 1e3)
    }

    /// Base impedance in ohm.
    pub fn base_impedance_ohm(&self) -> f64 {
        self.base_kv * self.base_kv / self.base_mva
    }
}

/// Breadth-first order of the buses from the slack bus over the lines in service, and each
/// bus's feeding line and upstream bus; refuses a meshed or islanded feeder.
#[allow(clippy::type_complexity)]
fn radial_tree(
    n: usize,
    slack: usize,
    lines: &[Line],
) -> Result<(Vec<usize>, Vec<Option<(usize, usize)>>), FeederError> {
    let mut adjacent: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
    for line in lines.iter().filter(|l| l.in_service) {
        adjacent[line.from].push((line.id, line.to));
        adjacent[line.to].push((line.id, line.from));
    }
    let mut parent: Vec<Option<(usize, usize)>> = vec![None; n];
    let mut seen = vec![false; n];
    let mut order = Vec::with_capacity(n);
    seen[slack] = true;
    order.push(slack);
    let mut next = 0;
    while next < order.len() {
        let bus = order[next];
        next += 1;
        for &(line, other) in &adjacent[bus] {
            if parent[bus].is_some_and(|(feeding, _)| feeding == line) {
                continue;
            }
            if seen[other] {
                return Err(invalid(format!(
                    "the lines in service are meshed (line {line} closes a loop at bus {other}); a feeder must be operated radially"
                )));
            }
            seen[other] = true;
            parent[other] = Some((line, bus));
            order.push(other);
        }
    }
    if let Some(islanded) = seen.iter().position(|s| !s) {
        return Err(invalid(format!(
            "bus {islanded} is not connected to the slack bus by lines in service"
        )));
    }
    Ok((order, parent))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const IEEE33: &[u8] = include_bytes!("../feeders/ieee33.json");

    fn tiny(lines: &str) -> String {
        format!(
            r#"{{"base": {{"base_kv": 10, "base_mva": 1, "slack_bus": 0}},
                "limits": {{"v_min_pu": 0.95, "v_max_pu": 1.05}},
                "buses": [{{"id": 0}}, {{"id": 1}}, {{"id": 2}}],
                "lines": {lines},
                "loads": [{{"bus": 2, "p_kw": 10, "q_kvar": 1}}]}}"#
        )
    }

    #[test]
    fn the_ieee33_feeder_is_radial_with_its_tie_switches_open() {
        let feeder = Feeder::from_json(IEEE33).expect("ieee33 parses");
        assert_eq!(feeder.buses.len(), 33);
        assert_eq!(feeder.lines.len(), 37);
        assert_eq!(feeder.lines.iter().filter(|l| l.in_service).count(), 32);
        assert_eq!(feeder.loads.len(), 32);
        assert_eq!(feeder.order[0], 0);
        assert_eq!(feeder.parent[17], Some((16, 16)));
        assert_eq!(feeder.lines[0].i_max_a, Some(300.0));
        assert_eq!(feeder.lines[5].i_max_a, Some(150.0));
        let total: f64 = feeder.loads.iter().map(|l| l.p_kw).sum();
        assert_eq!(total, 3715.0);
    }

    #[test]
    fn meshed_islanded_or_inconsistent_feeders_are_refused() {
        let ok = r#"[{"id": 0, "from": 0, "to": 1, "r_ohm": 0.1, "x_ohm": 0.1},
                     {"id": 1, "from": 1, "to": 2, "r_ohm": 0.1, "x_ohm": 0.1}]"#;
        Feeder::from_json(tiny(ok).as_bytes()).expect("a chain of two lines");
        let cases = [
            (
                r#"[{"id": 0, "from": 0, "to": 1, "r_ohm": 0.1, "x_ohm": 0.1},
                    {"id": 1, "from": 1, "to": 2, "r_ohm": 0.1, "x_ohm": 0.1},
                    {"id": 2, "from": 2, "to": 0, "r_ohm": 0.1, "x_ohm": 0.1}]"#,
                "meshed",
            ),
            (
                r#"[{"id": 0, "from": 0, "to": 1, "r_ohm": 0.1, "x_ohm": 0.1}]"#,
                "bus 2 is not connected",
            ),
            (
                r#"[{"id": 0, "from": 0, "to": 1, "r_ohm": -0.1, "x_ohm": 0.1},
                    {"id": 1, "from": 1, "to": 2, "r_ohm": 0.1, "x_ohm": 0.1}]"#,
                "non-negative",
            ),
            (
                r#"[{"id": 0, "from": 0, "to": 7, "r_ohm": 0.1, "x_ohm": 0.1}]"#,
                "bus 7",
            ),
            (
                r#"[{"id": 1, "from": 0, "to": 1, "r_ohm": 0.1, "x_ohm": 0.1}]"#,
                "line ids",
            ),
        ];
        for (lines, expected) in cases {
            let err = Feeder::from_json(tiny(lines).as_bytes()).expect_err(expected);
            assert!(err.to_string().contains(expected), "{err}");
        }
        for garbage in [&b"not json"[..], b"{}", b"[]"] {
            assert!(Feeder::from_json(garbage).is_err());
        }
    }
}
