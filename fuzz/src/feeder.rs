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

use gridledger_grid::{Feeder, PowerFlowSettings, Trade, check, solve};
use gridledger_peer::feasibility::parse_load_profile;

/// Feeds `data` to the feeder or load-profile parser.
pub fn run(data: &[u8]) {
    let Some((selector, input)) = data.split_first() else {
        return;
    };
    if selector % 2 == 0 {
        let Ok(feeder) = Feeder::from_json(input) else {
            return;
        };
        let settings = PowerFlowSettings {
            tolerance_pu: 1e-8,
            max_iterations: 50,
        };
        let _ = solve(&feeder, 1.0, &[], settings);
        let last = feeder.buses.len().saturating_sub(1);
        let trade = Trade {
            seller_bus: last,
            buyer_bus: 0,
            kw: 10.0,
        };
        let _ = check(&feeder, 0.5, &[trade], settings);
    } else {
        let Ok(text) = std::str::from_utf8(input) else {
            return;
        };
        if let Ok(scales) = parse_load_profile(text, "fuzz input") {
            assert_eq!(scales.len(), 96, "one scale per 15-minute slot");
            assert!(
                scales.iter().all(|s| s.is_finite() && *s >= 0.0),
                "valid scales"
            );
        }
    }
}
