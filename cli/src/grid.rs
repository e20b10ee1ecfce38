//! `gridledger grid check`: the DSO's feasibility check on a feeder file, without a network —
//! so a DSO can test its model, and anyone can see why a trade would be refused.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use gridledger_grid::{Feeder, PowerFlowSettings, Trade, Verdict, ViolationKind, check};

/// Grid commands.
#[derive(Debug, Subcommand)]
pub enum GridCommand {
    /// Run the DSO's feasibility check for trades in one period: an AC power flow of the
    /// feeder's loads scaled by --load-scale, with and without the trades.
    Check(CheckArgs),
}

/// Arguments of `grid check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The feeder file (JSON; the layout of grid/feeders/ieee33.json).
    #[arg(long, value_name = "FILE")]
    feeder: PathBuf,
    /// Factor applied to every load of the feeder for the period (1.0 = the file's loads).
    #[arg(long, value_name = "S", default_value_t = 1.0)]
    load_scale: f64,
    /// A trade: KW injected at the seller's bus and drawn at the buyer's bus (0-based bus ids
    /// of the feeder file), unity power factor. Repeat for several trades.
    #[arg(long = "trade", value_name = "SELLER_BUS:BUYER_BUS:KW", value_parser = parse_trade)]
    trades: Vec<Trade>,
    /// Power-flow convergence tolerance (largest voltage change per iteration), pu.
    #[arg(long, value_name = "PU", default_value_t = 1e-10)]
    tolerance: f64,
    /// Power-flow iteration cap.
    #[arg(long, value_name = "N", default_value_t = 100)]
    max_iterations: u32,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_trade(text: &str) -> Result<Trade, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let [seller, buyer, kw] = parts[..] else {
        return Err(format!(
            "{text:?} is not SELLER_BUS:BUYER_BUS:KW (for example 17:1:250)"
        ));
    };
    let bus = |what: &str, value: &str| {
        value
            .trim()
            .parse::<usize>()
            .map_err(|_| format!("the {what} bus {value:?} is not a bus id (0, 1, 2, …)"))
    };
    let kw: f64 = kw
        .trim()
        .parse()
        .map_err(|_| format!("the power {kw:?} is not a number of kW"))?;
    if !(kw.is_finite() && kw >= 0.0) {
        return Err(format!("the power {kw} kW must be a non-negative number"));
    }
    Ok(Trade {
        seller_bus: bus("seller", seller)?,
        buyer_bus: bus("buyer", buyer)?,
        kw,
    })
}

/// Runs a grid command.
pub fn run(command: GridCommand) -> anyhow::Result<()> {
    match command {
        GridCommand::Check(args) => run_check(&args),
    }
}

fn run_check(args: &CheckArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.feeder)
        .with_context(|| format!("reading the feeder file {}", args.feeder.display()))?;
    let feeder = Feeder::from_json(&bytes)
        .with_context(|| format!("loading the feeder {}", args.feeder.display()))?;
    let settings = PowerFlowSettings {
        tolerance_pu: args.tolerance,
        max_iterations: args.max_iterations,
    };
    if !(args.load_scale.is_finite() && args.load_scale >= 0.0) {
        bail!(
            "--load-scale {} must be a non-negative number",
            args.load_scale
        );
    }
    let verdict = check(&feeder, args.load_scale, &args.trades, settings)
        .context("running the feasibility check")?;
    if args.json {
        let mut value = serde_json::to_value(&verdict).context("encoding the verdict")?;
        if let Some(object) = value.as_object_mut() {
            object.insert("feeder".into(), feeder.name.clone().into());
            object.insert("load_scale".into(), args.load_scale.into());
            object.insert(
                "trades".into(),
                args.trades
                    .iter()
                    .map(|t| {
                        serde_json::json!({"seller_bus": t.seller_bus, "buyer_bus": t.buyer_bus, "kw": t.kw})
                    })
                    .collect::<Vec<_>>()
                    .into(),
            );
        }
        crate::print_out(&format!("{value}\n"))?;
    } else {
        crate::print_out(&describe(&feeder, args, &verdict))?;
    }
    Ok(())
}

/// The verdict as text for a human.
fn describe(feeder: &Feeder, args: &CheckArgs, verdict: &Verdict) -> String {
    let mut out = String::new();
    let in_service = feeder.lines.iter().filter(|l| l.in_service).count();
    out.push_str(&format!(
        "feeder: {} ({} buses, {in_service} lines in service), load scale {}, {} trade(s)\n",
        if feeder.name.is_empty() {
            "unnamed"
        } else {
            &feeder.name
        },
        feeder.buses.len(),
        args.load_scale,
        args.trades.len()
    ));
    for trade in &args.trades {
        out.push_str(&format!(
            "  trade: {} kW from bus {} to bus {}\n",
            trade.kw, trade.seller_bus, trade.buyer_bus
        ));
    }
    out.push_str(&format!(
        "verdict: {}\n",
        if verdict.feasible {
            "FEASIBLE"
        } else {
            "NOT FEASIBLE"
        }
    ));
    out.push_str(&format!(
        "voltage: min {:.6} pu at bus {}, max {:.6} pu at bus {} (allowed {}–{} pu)\n",
        verdict.min_vm_pu,
        verdict.min_vm_bus,
        verdict.max_vm_pu,
        verdict.max_vm_bus,
        feeder.v_min_pu,
        feeder.v_max_pu
    ));
    if let (Some(line), Some(pct), Some(current)) = (
        verdict.max_loading_line,
        verdict.max_loading_pct,
        verdict.max_loading_current_a,
    ) {
        let l = &feeder.lines[line];
        out.push_str(&format!(
            "most loaded line: {line} (bus {}–{}) {current:.3} A, {pct:.3} % of its {} A limit\n",
            l.from,
            l.to,
            l.i_max_a.unwrap_or(f64::NAN)
        ));
    }
    out.push_str(&format!(
        "losses: {:.3} kW (baseline {:.3} kW)\n",
        verdict.losses_kw, verdict.baseline_losses_kw
    ));
    if verdict.violations.is_empty() {
        out.push_str("violations: none\n");
    } else {
        out.push_str("violations:\n");
        for v in &verdict.violations {
            let (what, unit, digits) = match v.kind {
                ViolationKind::Undervoltage => ("undervoltage at bus", "pu", 6),
                ViolationKind::Overvoltage => ("overvoltage at bus", "pu", 6),
                ViolationKind::Overcurrent => ("overcurrent on line", "A", 3),
            };
            out.push_str(&format!(
                "  {what} {}: {:.digits$} {unit} (limit {}, baseline {:.digits$}, {:.digits$} {unit} beyond) — {}\n",
                v.element,
                v.value,
                v.limit,
                v.baseline,
                v.excess(),
                if v.tolerated {
                    "already beyond in the baseline and not made worse: tolerated"
                } else {
                    "caused or worsened by the trades: blocks them"
                }
            ));
        }
    }
    out
}
