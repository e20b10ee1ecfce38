//! The DSO's grid model: the feeder it operates, an AC power flow on it, and the rule that
//! decides whether energy trades are feasible.
//!
//! This crate is what the DSO peer runs before it endorses a trade, and what
//! `gridledger grid check` runs without a network. It does no I/O: a feeder is parsed from
//! the bytes of a feeder file ([`Feeder::from_json`], the JSON layout of the IEEE 33-bus case
//! in `feeders/ieee33.json`), a power flow is [`solve`]d for a load scale and extra bus powers,
//! and [`check`] compares a period's baseline with the same period plus trades.
//!
//! The power flow is a backward/forward sweep, the standard method for radial distribution
//! feeders: loads are constant power; each iteration computes load currents from the present
//! voltages, sums them towards the substation (backward), then recomputes voltages outward from
//! the substation's fixed voltage (forward), until no voltage moves by more than the tolerance.
//! It either converges or says it did not ([`PowerFlowError`]); it never returns an answer it
//! did not converge to.
//!
//! Determinism: buses and lines are visited in a fixed order (breadth-first from the
//! substation, children by line id), and everything [`check`] reports — and decides on — is
//! rounded first (voltages to 1e-6 pu, currents to 1e-3 A, powers to 1e-3 kW), so every DSO
//! peer signs the same verdict.

mod complex;
mod feasibility;
mod feeder;
mod powerflow;

pub use feasibility::{
    CURRENT_TOLERANCE_A, Trade, VOLTAGE_TOLERANCE_PU, Verdict, Violation, ViolationKind, check,
};
pub use feeder::{Bus, Feeder, FeederError, Line, Load};
pub use powerflow::{BusPower, PowerFlow, PowerFlowError, PowerFlowSettings, solve};
