//! Target `feeder`: the grid files a DSO peer loads from disk — a feeder model (JSON, e.g.
//! `grid/feeders/ieee33.json`) and a load profile (CSV, e.g.
//! `grid/profiles/household-h25-winter.csv`). Models an operator or a tampered file: any
//! bytes where these files are expected.
//!
//! The first byte selects the decoder: even bytes the feeder, odd bytes the load profile; the
//! rest is its input.
//!
//! Checks: `Feeder::from_json`, the power flow (`solve`) and the feasibility check of a trade
//! on what parses, and `parse_load_profile` never panic; a parsed profile has one finite,
//! non-negative scale per 15-minute slot.
//!
//! The logic lives in `gridledger_fuzz::feeder`, shared with the stable replay test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gridledger_fuzz::feeder::run(data));
