//! The demo day's report: a self-contained HTML page (inline CSS and SVG, no scripts, no
//! external resources) and a standalone SVG of its three plots.
//!
//! `gridledger demo` gathers what the simulated day produced into a [`DayReport`]; this module
//! only turns that into markup, so it is a plain function of its input: the same report gives
//! the same bytes, whatever the data (empty days, days without trades, non-finite numbers) it
//! never panics and never writes `NaN` or `inf` into the markup, and every piece of text —
//! refusal reasons come from the network — is escaped.

use std::fmt::Write as _;

/// Appends formatted text to a `String`.
macro_rules! put {
    ($out:expr, $($arg:tt)*) => {
        $out.write_fmt(format_args!($($arg)*))
            .expect("formatting into a String cannot fail")
    };
}

/// What one simulated day produced, for the report.
pub(crate) struct DayReport {
    /// Title line, e.g. "GridLedger demo — 2026-12-03 (UTC), 16 prosumers on the IEEE 33-bus feeder".
    pub title: String,
    /// Unix seconds of the day's first period.
    pub day_start: i64,
    /// One per period, in order (96 for a whole day; fewer when the demo was shortened).
    pub periods: Vec<PeriodSummary>,
    /// The period whose committed trades gave the lowest minimum bus voltage, if any traded.
    pub worst_period: Option<WorstPeriod>,
    /// The summary table: (label, value) in display order.
    pub summary: Vec<(String, String)>,
    /// Why the DSO refused trades: (reason, count), most frequent first.
    pub refusals: Vec<(String, usize)>,
}

/// One settlement period of the day.
pub(crate) struct PeriodSummary {
    /// Unix seconds of the period's start.
    pub start: i64,
    /// Energy traded in committed trades, Wh.
    pub traded_wh: u64,
    /// Committed trades.
    pub trades: u32,
    /// Trades the DSO refused.
    pub refused: u32,
    /// Energy-weighted average price of the committed trades, cents/kWh (None when no trade).
    pub avg_price_cents_per_kwh: Option<f64>,
    /// E-tokens minted for the period's metered export, Wh.
    pub minted_wh: u64,
    /// E-tokens burned against the period's consumption, Wh.
    pub burned_wh: u64,
    /// E-token supply (minted − burned, cumulative since the day began) at the period's end, Wh.
    pub supply_wh: i64,
}

/// The feeder's state in the period whose committed trades brought the voltage lowest.
pub(crate) struct WorstPeriod {
    /// Unix seconds of the period's start.
    pub start: i64,
    /// The DSO's load scale for the period.
    pub load_scale: f64,
    /// Bus voltage magnitudes without the trades (the baseline), pu, by bus id 0..n.
    pub baseline_vm_pu: Vec<f64>,
    /// Bus voltage magnitudes with the committed trades, pu, by bus id.
    pub with_trades_vm_pu: Vec<f64>,
    /// The feeder's voltage band: lower limit, pu.
    pub v_min_pu: f64,
    /// The feeder's voltage band: upper limit, pu.
    pub v_max_pu: f64,
}

/// The whole report: a self-contained HTML page (inline CSS and SVG, no scripts, no external
/// resources) with the title, the summary table, the refusal reasons, and three plots:
/// (1) per-period traded energy (bars, kWh) with the average price (line, right axis, c/kWh),
/// hours of the day (UTC) on the x axis; (2) the feeder voltage profile of the worst period:
/// baseline and with-trades voltage by bus (lines with markers) and the voltage band (dashed);
/// (3) e-token supply over the day (line, kWh) with minted and burned per period (thin bars).
pub(crate) fn render_html(report: &DayReport) -> String {
    let mut out = String::new();
    let title = escape(&report.title);
    put!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
         <title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n<h1>{title}</h1>\n"
    );

    out.push_str("<section>\n<h2>Summary</h2>\n");
    if !has_trades(report) {
        out.push_str("<p class=\"note\">No trades were committed: the day had no trades.</p>\n");
    }
    if !report.summary.is_empty() {
        out.push_str("<table class=\"summary\">\n<tbody>\n");
        for (label, value) in &report.summary {
            put!(
                out,
                "<tr><th scope=\"row\">{}</th><td>{}</td></tr>\n",
                escape(label),
                escape(value)
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</section>\n");

    out.push_str("<section>\n<h2>Trades refused by the DSO</h2>\n");
    let refused_total: usize = report.refusals.iter().map(|(_, n)| *n).sum();
    if refused_total == 0 {
        out.push_str("<p class=\"note\">The DSO refused no trades.</p>\n");
    } else {
        out.push_str(
            "<table class=\"refusals\">\n<thead><tr><th scope=\"col\">Reason</th>\
             <th scope=\"col\">Trades</th><th scope=\"col\">Share</th></tr></thead>\n<tbody>\n",
        );
        for (reason, count) in &report.refusals {
            let share = *count as f64 * 100.0 / refused_total as f64;
            put!(
                out,
                "<tr><td>{}</td><td>{count}</td><td>{}&#160;%</td></tr>\n",
                escape(reason),
                num(share, 1)
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</section>\n");

    let plots = [
        (
            "Traded energy and price",
            plot_traded(report),
            traded_note(report),
        ),
        (
            "Feeder voltage in the worst period",
            plot_voltage(report),
            voltage_note(report),
        ),
        ("E-token supply", plot_supply(report), supply_note(report)),
    ];
    for (heading, plot, note) in plots {
        put!(out, "<section>\n<h2>{heading}</h2>\n<figure>\n");
        put!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" \
             width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{heading}\">\n{plot}</svg>\n",
            w = PLOT_W,
            h = PLOT_H,
        );
        put!(
            out,
            "<figcaption>{}</figcaption>\n</figure>\n</section>\n",
            escape(&note)
        );
    }

    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// The three plots side by side (or stacked) as one standalone SVG document (with a white
/// background and the title), for the README's picture of the report.
pub(crate) fn render_svg(report: &DayReport) -> String {
    let plots = [
        plot_traded(report),
        plot_voltage(report),
        plot_supply(report),
    ];
    let width = PLOT_W;
    let height = SVG_TITLE_H + PLOT_H * plots.len() as f64;
    let mut out = String::new();
    put!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" \
         width=\"{width}\" height=\"{height}\">\n\
         <rect x=\"0\" y=\"0\" width=\"{width}\" height=\"{height}\" fill=\"#ffffff\"/>\n\
         <text x=\"{x}\" y=\"30\" text-anchor=\"middle\" font-family=\"{FONT}\" font-size=\"15\" \
         font-weight=\"bold\" fill=\"{INK}\">{title}</text>\n",
        x = num(width / 2.0, 1),
        title = escape(&report.title),
    );
    for (i, plot) in plots.iter().enumerate() {
        let y = SVG_TITLE_H + PLOT_H * i as f64;
        put!(
            out,
            "<g transform=\"translate(0,{})\">\n{plot}</g>\n",
            num(y, 1)
        );
    }
    out.push_str("</svg>\n");
    out
}

// ---------------------------------------------------------------------------------------------
// Layout and styling.

/// Width of one plot, px.
const PLOT_W: f64 = 760.0;
/// Height of one plot, px.
const PLOT_H: f64 = 320.0;
/// Room for the document title above the plots in the standalone SVG, px.
const SVG_TITLE_H: f64 = 48.0;
/// Margins around a plot's data area, px (room for the title, tick labels and axis labels).
const M_LEFT: f64 = 72.0;
const M_RIGHT: f64 = 72.0;
const M_TOP: f64 = 48.0;
const M_BOTTOM: f64 = 52.0;

/// Period length assumed when the periods themselves do not tell (one period only), s.
const DEFAULT_PERIOD_S: i64 = 900;

const FONT: &str = "Helvetica, Arial, sans-serif";
const INK: &str = "#222222";
const GRID: &str = "#e4e4e4";
const AXIS: &str = "#555555";
const BLUE: &str = "#1f5fa8";
const ORANGE: &str = "#e07b00";
const RED: &str = "#c62828";
const GREEN: &str = "#2e7d32";
const GREY: &str = "#6e6e6e";

const CSS: &str = "\
body{margin:0;background:#f6f7f9;color:#222;font-family:Helvetica,Arial,sans-serif;line-height:1.4}\
main{max-width:820px;margin:0 auto;padding:24px;background:#fff}\
h1{font-size:1.45em;margin:0 0 16px}\
h2{font-size:1.1em;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}\
table{border-collapse:collapse;margin:8px 0}\
th,td{padding:4px 12px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}\
td{font-variant-numeric:tabular-nums}\
.refusals td:nth-child(n+2){text-align:right}\
.note{color:#555;font-style:italic}\
figure{margin:0}\
figure svg{max-width:100%;height:auto;display:block}\
figcaption{color:#444;font-size:.92em;margin-top:4px}";

// ---------------------------------------------------------------------------------------------
// The three plots. Each returns the elements of one PLOT_W × PLOT_H plot, without the `<svg>`
// wrapper, so the HTML page can give each its own `<svg>` and the SVG document can stack them.

/// Plot 1: traded energy per period (bars, left axis) and average price (line, right axis).
fn plot_traded(report: &DayReport) -> String {
    let mut out = String::new();
    plot_frame(&mut out, "Energy traded per period and average price");
    let time = TimeAxis::new(report);
    let kwh: Vec<f64> = report
        .periods
        .iter()
        .map(|p| wh_to_kwh(p.traded_wh))
        .collect();
    let left = Axis::covering(kwh.iter().copied().chain([0.0]), 0.08);
    let prices: Vec<Option<f64>> = report
        .periods
        .iter()
        .map(|p| p.avg_price_cents_per_kwh.filter(|v| v.is_finite()))
        .collect();
    let right = Axis::covering(prices.iter().flatten().copied().chain([0.0]), 0.08);

    let left_ticks = left.ticks(6);
    grid_lines(&mut out, &left, &left_ticks);
    y_axis(
        &mut out,
        &left,
        &left_ticks,
        Side::Left,
        1,
        "traded energy (kWh)",
    );
    y_axis(
        &mut out,
        &right,
        &right.ticks(6),
        Side::Right,
        1,
        "average price (c/kWh)",
    );
    time.draw(&mut out);

    if !has_trades(report) {
        no_data(&mut out, "no trades");
        return out;
    }
    let bar_w = (time.period_px() * 0.8).max(1.0);
    for (p, &e) in report.periods.iter().zip(&kwh) {
        if p.traded_wh == 0 {
            continue;
        }
        let x = time.center_px(p.start) - bar_w / 2.0;
        let y = left.py(e);
        let h = (left.py(0.0) - y).max(0.5);
        put!(
            out,
            "<rect class=\"bar-traded\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{BLUE}\" \
             fill-opacity=\"0.75\"><title>{} UTC: {} kWh in {} trades ({} refused)</title></rect>\n",
            num(x, 1),
            num(y, 1),
            num(bar_w, 1),
            num(h, 1),
            time.clock(p.start),
            num(e, 1),
            p.trades,
            p.refused,
        );
    }
    let points: Vec<Option<(f64, f64)>> = report
        .periods
        .iter()
        .zip(&prices)
        .map(|(p, price)| price.map(|c| (time.center_px(p.start), right.py(c))))
        .collect();
    polyline(&mut out, &points, RED, 1.8, None);
    markers(&mut out, &points, RED, 2.2);
    legend(
        &mut out,
        &[
            (LegendKey::Bar, BLUE, "traded energy (kWh)"),
            (LegendKey::Line, RED, "average price (c/kWh)"),
        ],
    );
    out
}

/// Plot 2: bus voltages of the worst period, baseline and with the trades, with the band.
fn plot_voltage(report: &DayReport) -> String {
    let mut out = String::new();
    let Some(worst) = &report.worst_period else {
        plot_frame(&mut out, "Feeder voltage profile, worst period");
        let x = Axis::covering([0.0, 1.0], 0.0);
        let y = Axis::covering([0.95, 1.05], 0.0);
        y_axis(&mut out, &y, &y.ticks(5), Side::Left, 3, "voltage (pu)");
        x_axis(&mut out, &x, &[], "bus");
        no_data(&mut out, "no trades, so no worst period");
        return out;
    };
    let time = TimeAxis::new(report);
    plot_frame(
        &mut out,
        &format!(
            "Feeder voltage profile, worst period ({} UTC, load scale {})",
            time.clock(worst.start),
            num(worst.load_scale, 2)
        ),
    );
    let buses = worst
        .baseline_vm_pu
        .len()
        .max(worst.with_trades_vm_pu.len());
    let x = Axis::covering([0.0, buses.saturating_sub(1) as f64], 0.0);
    let values = worst
        .baseline_vm_pu
        .iter()
        .chain(&worst.with_trades_vm_pu)
        .chain([&worst.v_min_pu, &worst.v_max_pu])
        .copied();
    let y = Axis::covering(values, 0.08);

    let y_ticks = y.ticks(6);
    grid_lines(&mut out, &y, &y_ticks);
    y_axis(
        &mut out,
        &y,
        &y_ticks,
        Side::Left,
        3,
        "voltage magnitude (pu)",
    );
    let x_ticks: Vec<(f64, String)> = x
        .ticks(12)
        .into_iter()
        .filter(|b| b.fract() == 0.0)
        .map(|b| (b, num(b, 0)))
        .collect();
    x_axis(&mut out, &x, &x_ticks, "bus id");

    for (limit, name) in [(worst.v_min_pu, "v min"), (worst.v_max_pu, "v max")] {
        if !limit.is_finite() {
            continue;
        }
        let py = y.py(limit);
        put!(
            out,
            "<line class=\"band\" x1=\"{}\" y1=\"{py}\" x2=\"{}\" y2=\"{py}\" stroke=\"{GREY}\" \
             stroke-width=\"1.4\" stroke-dasharray=\"6 4\"/>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-family=\"{FONT}\" font-size=\"11\" \
             fill=\"{GREY}\">{name} {} pu</text>\n",
            num(M_LEFT, 1),
            num(PLOT_W - M_RIGHT, 1),
            num(PLOT_W - M_RIGHT - 4.0, 1),
            num(y.py(limit) - 4.0, 1),
            num(limit, 3),
            py = num(py, 1),
        );
    }
    for (series, colour, what) in [
        (&worst.baseline_vm_pu, GREY, "baseline"),
        (&worst.with_trades_vm_pu, ORANGE, "with trades"),
    ] {
        let points: Vec<Option<(f64, f64)>> = series
            .iter()
            .enumerate()
            .map(|(bus, &v)| v.is_finite().then(|| (x.px(bus as f64), y.py(v))))
            .collect();
        let dash = (what == "baseline").then_some("4 2");
        polyline(&mut out, &points, colour, 1.8, dash);
        markers(&mut out, &points, colour, 2.6);
    }
    legend(
        &mut out,
        &[
            (LegendKey::Line, GREY, "baseline (no trades)"),
            (LegendKey::Line, ORANGE, "with committed trades"),
            (LegendKey::Dashed, GREY, "voltage band"),
        ],
    );
    out
}

/// Plot 3: e-token supply (line) with minted (up) and burned (down) per period (thin bars).
fn plot_supply(report: &DayReport) -> String {
    let mut out = String::new();
    plot_frame(&mut out, "E-token supply over the day");
    let time = TimeAxis::new(report);
    let supply = report.periods.iter().map(|p| p.supply_wh as f64 / 1000.0);
    let mut y = Axis::covering(supply.chain([0.0]), 0.08);
    // Minted and burned per period are far smaller than the supply they add up to, so they get
    // their own (right) axis, scaled so that both axes put zero at the same height.
    let most_minted = report
        .periods
        .iter()
        .map(|p| wh_to_kwh(p.minted_wh))
        .fold(0.0, f64::max);
    let most_burned = report
        .periods
        .iter()
        .map(|p| wh_to_kwh(p.burned_wh))
        .fold(0.0, f64::max);
    if most_burned > 0.0 && y.lo >= 0.0 {
        y.lo = -0.25 * y.hi;
    }
    if most_minted > 0.0 && y.hi <= 0.0 {
        y.hi = -0.25 * y.lo;
    }
    let scale = [(most_minted, y.hi), (most_burned, -y.lo)]
        .into_iter()
        .filter(|(_, room)| *room > 0.0)
        .map(|(flow, room)| flow / room)
        .fold(0.0, f64::max);
    let scale = if scale.is_finite() && scale > 0.0 {
        scale * 1.05
    } else {
        1.0
    };
    let flows = Axis {
        lo: y.lo * scale,
        hi: y.hi * scale,
    };
    let y_ticks = y.ticks(6);
    grid_lines(&mut out, &y, &y_ticks);
    y_axis(&mut out, &y, &y_ticks, Side::Left, 1, "supply (kWh)");
    y_axis(
        &mut out,
        &flows,
        &flows.ticks(6),
        Side::Right,
        1,
        "mint/burn per period (kWh)",
    );
    time.draw(&mut out);

    if report.periods.is_empty() {
        no_data(&mut out, "no periods");
        return out;
    }
    let zero = y.py(0.0);
    put!(
        out,
        "<line x1=\"{}\" y1=\"{z}\" x2=\"{}\" y2=\"{z}\" stroke=\"{AXIS}\" stroke-width=\"0.8\"/>\n",
        num(M_LEFT, 1),
        num(PLOT_W - M_RIGHT, 1),
        z = num(zero, 1),
    );
    let bar_w = (time.period_px() * 0.4).max(1.0);
    for p in &report.periods {
        let x = time.center_px(p.start) - bar_w / 2.0;
        for (wh, sign, colour, class) in [
            (p.minted_wh, 1.0, GREEN, "bar-minted"),
            (p.burned_wh, -1.0, RED, "bar-burned"),
        ] {
            if wh == 0 {
                continue;
            }
            let end = flows.py(sign * wh_to_kwh(wh));
            put!(
                out,
                "<rect class=\"{class}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" \
                 fill=\"{colour}\" fill-opacity=\"0.7\"/>\n",
                num(x, 1),
                num(end.min(zero), 1),
                num(bar_w, 1),
                num((end - zero).abs().max(0.5), 1),
            );
        }
    }
    let points: Vec<Option<(f64, f64)>> = report
        .periods
        .iter()
        .map(|p| {
            let end = p.start.saturating_add(time.period_s);
            Some((time.px_of(end), y.py(p.supply_wh as f64 / 1000.0)))
        })
        .collect();
    polyline(&mut out, &points, BLUE, 2.0, None);
    legend(
        &mut out,
        &[
            (LegendKey::Line, BLUE, "supply at period end (kWh)"),
            (LegendKey::Bar, GREEN, "minted per period"),
            (LegendKey::Bar, RED, "burned per period"),
        ],
    );
    out
}

// ---------------------------------------------------------------------------------------------
// Captions.

fn traded_note(report: &DayReport) -> String {
    if !has_trades(report) {
        return "No trades were committed, so there is no traded energy or price to show."
            .to_owned();
    }
    let total: u64 = report.periods.iter().map(|p| p.traded_wh).sum();
    let trades: u64 = report.periods.iter().map(|p| u64::from(p.trades)).sum();
    let refused: u64 = report.periods.iter().map(|p| u64::from(p.refused)).sum();
    format!(
        "{} kWh in {trades} committed trades ({refused} refused) over {} periods; \
         bars: energy per period, line: energy-weighted average price.",
        num(wh_to_kwh(total), 1),
        report.periods.len()
    )
}

fn voltage_note(report: &DayReport) -> String {
    let Some(worst) = &report.worst_period else {
        return "No trades were committed, so there is no worst period.".to_owned();
    };
    let lowest = |vm: &[f64]| {
        vm.iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(bus, v)| format!("{} pu at bus {bus}", num(*v, 3)))
            .unwrap_or_else(|| "no values".to_owned())
    };
    format!(
        "Lowest voltage with the trades: {}; baseline: {}; band {}–{} pu.",
        lowest(&worst.with_trades_vm_pu),
        lowest(&worst.baseline_vm_pu),
        num(worst.v_min_pu, 3),
        num(worst.v_max_pu, 3),
    )
}

fn supply_note(report: &DayReport) -> String {
    let minted: u64 = report.periods.iter().map(|p| p.minted_wh).sum();
    let burned: u64 = report.periods.iter().map(|p| p.burned_wh).sum();
    let end = report.periods.last().map_or(0, |p| p.supply_wh);
    format!(
        "Minted {} kWh, burned {} kWh; supply at the day's end {} kWh.",
        num(wh_to_kwh(minted), 1),
        num(wh_to_kwh(burned), 1),
        num(end as f64 / 1000.0, 1),
    )
}

// ---------------------------------------------------------------------------------------------
// Drawing helpers.

/// A linear map from a data range onto the plot's data area (vertical for `py`, horizontal for
/// `px`). The range is always finite and non-empty.
struct Axis {
    lo: f64,
    hi: f64,
}

impl Axis {
    /// The range covering the finite `values`, widened by `pad` of its span at the top and,
    /// unless the lowest value is exactly 0 (bars standing on the axis), at the bottom. A range
    /// the values do not span gets a width of its own; no finite values give 0–1.
    fn covering(values: impl IntoIterator<Item = f64>, pad: f64) -> Axis {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.into_iter().filter(|v| v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if lo > hi {
            return Axis { lo: 0.0, hi: 1.0 };
        }
        let span = hi - lo;
        let (lo, hi) = if span > f64::EPSILON * lo.abs().max(hi.abs()).max(1.0) {
            let pad_lo = if lo == 0.0 { 0.0 } else { span * pad };
            (lo - pad_lo, hi + span * pad)
        } else if lo == 0.0 {
            (0.0, 1.0)
        } else {
            let half = (lo.abs() * 0.05).max(1e-3);
            (lo - half, lo + half)
        };
        if lo.is_finite() && hi.is_finite() && hi > lo {
            Axis { lo, hi }
        } else {
            Axis { lo: 0.0, hi: 1.0 }
        }
    }

    fn frac(&self, v: f64) -> f64 {
        let f = (v - self.lo) / (self.hi - self.lo);
        if f.is_finite() { f } else { 0.0 }
    }

    /// Vertical pixel of `v`.
    fn py(&self, v: f64) -> f64 {
        M_TOP + (1.0 - self.frac(v)) * (PLOT_H - M_TOP - M_BOTTOM)
    }

    /// Horizontal pixel of `v`.
    fn px(&self, v: f64) -> f64 {
        M_LEFT + self.frac(v) * (PLOT_W - M_LEFT - M_RIGHT)
    }

    /// Round tick values (steps of 1, 2 or 5 times a power of ten) inside the range, about
    /// `target` of them.
    fn ticks(&self, target: usize) -> Vec<f64> {
        let step = nice_step((self.hi - self.lo) / target.max(1) as f64);
        let first = (self.lo / step).ceil();
        let mut ticks = Vec::new();
        for i in 0..=(4 * target) {
            let v = (first + i as f64) * step;
            if v > self.hi + step * 1e-9 {
                break;
            }
            // Snap values such as 0.30000000000000004 and -0.0 to what the label says.
            let v = (v / step).round() * step + 0.0;
            ticks.push(v);
        }
        ticks
    }
}

/// The smallest of 1, 2, 5 × 10^k that is at least `raw` (1 for nonsense input).
fn nice_step(raw: f64) -> f64 {
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude);
    if step.is_finite() && step > 0.0 {
        step
    } else {
        1.0
    }
}

/// The x axis of the time plots: hours since the first period, labelled with the UTC clock.
struct TimeAxis {
    day_start: i64,
    period_s: i64,
    axis: Axis,
}

impl TimeAxis {
    fn new(report: &DayReport) -> TimeAxis {
        let period_s = report
            .periods
            .windows(2)
            .map(|w| w[1].start.saturating_sub(w[0].start))
            .filter(|d| *d > 0)
            .min()
            .unwrap_or(DEFAULT_PERIOD_S);
        let hours = |t: i64| t.saturating_sub(report.day_start) as f64 / 3600.0;
        let (mut lo, mut hi) = (0.0_f64, 0.0_f64);
        for p in &report.periods {
            lo = lo.min(hours(p.start));
            hi = hi.max(hours(p.start.saturating_add(period_s)));
        }
        if report.periods.is_empty() {
            hi = 24.0;
        }
        let (lo, hi) = (lo.floor(), hi.ceil().max(lo.floor() + 1.0));
        TimeAxis {
            day_start: report.day_start,
            period_s,
            axis: Axis::covering([lo, hi], 0.0),
        }
    }

    fn px_of(&self, t: i64) -> f64 {
        self.axis
            .px(t.saturating_sub(self.day_start) as f64 / 3600.0)
    }

    fn center_px(&self, start: i64) -> f64 {
        self.px_of(start.saturating_add(self.period_s / 2))
    }

    /// Width of one period, px.
    fn period_px(&self) -> f64 {
        let w = self.axis.px(self.period_s as f64 / 3600.0) - self.axis.px(0.0);
        if w.is_finite() { w } else { 1.0 }
    }

    /// "HH:MM" of `t`, UTC.
    fn clock(&self, t: i64) -> String {
        let s = t.rem_euclid(86_400);
        format!("{:02}:{:02}", s / 3600, (s % 3600) / 60)
    }

    fn draw(&self, out: &mut String) {
        let span = self.axis.hi - self.axis.lo;
        let step = if span >= 12.0 {
            3.0
        } else if span >= 4.0 {
            1.0
        } else {
            0.25
        };
        let mut ticks = Vec::new();
        let mut h = (self.axis.lo / step).ceil() * step;
        while h <= self.axis.hi + 1e-9 && ticks.len() < 200 {
            // Minutes on the UTC clock; the day's end reads 24:00, not 00:00.
            let minutes = self.day_start.rem_euclid(86_400) / 60 + (h * 60.0).round() as i64;
            let minutes = if (0..=24 * 60).contains(&minutes) {
                minutes
            } else {
                minutes.rem_euclid(24 * 60)
            };
            ticks.push((h, format!("{:02}:{:02}", minutes / 60, minutes % 60)));
            h += step;
        }
        x_axis(out, &self.axis, &ticks, "time of day (UTC)");
    }
}

fn plot_frame(out: &mut String, title: &str) {
    put!(
        out,
        "<rect x=\"0\" y=\"0\" width=\"{PLOT_W}\" height=\"{PLOT_H}\" fill=\"#ffffff\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-family=\"{FONT}\" font-size=\"14\" \
         font-weight=\"bold\" fill=\"{INK}\">{}</text>\n\
         <rect x=\"{M_LEFT}\" y=\"{M_TOP}\" width=\"{}\" height=\"{}\" fill=\"none\" \
         stroke=\"{AXIS}\" stroke-width=\"1\"/>\n",
        num(PLOT_W / 2.0, 1),
        escape(title),
        num(PLOT_W - M_LEFT - M_RIGHT, 1),
        num(PLOT_H - M_TOP - M_BOTTOM, 1),
    );
}

fn no_data(out: &mut String, message: &str) {
    put!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-family=\"{FONT}\" font-size=\"16\" \
         fill=\"{GREY}\">{}</text>\n",
        num((M_LEFT + PLOT_W - M_RIGHT) / 2.0, 1),
        num((M_TOP + PLOT_H - M_BOTTOM) / 2.0, 1),
        escape(message),
    );
}

fn grid_lines(out: &mut String, y: &Axis, ticks: &[f64]) {
    for &v in ticks {
        // The frame draws the edges; a light line over it would hide them.
        let py = y.py(v);
        if (py - M_TOP).abs() < 0.5 || (py - (PLOT_H - M_BOTTOM)).abs() < 0.5 {
            continue;
        }
        let py = num(py, 1);
        put!(
            out,
            "<line x1=\"{}\" y1=\"{py}\" x2=\"{}\" y2=\"{py}\" stroke=\"{GRID}\" stroke-width=\"1\"/>\n",
            num(M_LEFT, 1),
            num(PLOT_W - M_RIGHT, 1),
        );
    }
}

#[derive(Clone, Copy)]
enum Side {
    Left,
    Right,
}

fn y_axis(out: &mut String, y: &Axis, ticks: &[f64], side: Side, decimals: usize, label: &str) {
    let step = match ticks {
        [a, b, ..] => b - a,
        _ => 1.0,
    };
    let decimals = decimals.max(step_decimals(step));
    let (x, dir, anchor, label_x, rotate) = match side {
        Side::Left => (M_LEFT, -1.0, "end", 18.0, -90),
        Side::Right => (PLOT_W - M_RIGHT, 1.0, "start", PLOT_W - 14.0, 90),
    };
    for &v in ticks {
        let py = y.py(v);
        put!(
            out,
            "<line x1=\"{}\" y1=\"{p}\" x2=\"{}\" y2=\"{p}\" stroke=\"{AXIS}\" stroke-width=\"1\"/>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\" font-family=\"{FONT}\" \
             font-size=\"11\" fill=\"{INK}\">{}</text>\n",
            num(x, 1),
            num(x + dir * 5.0, 1),
            num(x + dir * 8.0, 1),
            num(py + 4.0, 1),
            num(v, decimals),
            p = num(py, 1),
        );
    }
    let mid = num((M_TOP + PLOT_H - M_BOTTOM) / 2.0, 1);
    put!(
        out,
        "<text x=\"{lx}\" y=\"{mid}\" transform=\"rotate({rotate} {lx} {mid})\" \
         text-anchor=\"middle\" font-family=\"{FONT}\" font-size=\"12\" fill=\"{INK}\">{}</text>\n",
        escape(label),
        lx = num(label_x, 1),
    );
}

fn x_axis(out: &mut String, x: &Axis, ticks: &[(f64, String)], label: &str) {
    let base = PLOT_H - M_BOTTOM;
    for (v, text) in ticks {
        let px = num(x.px(*v), 1);
        put!(
            out,
            "<line x1=\"{px}\" y1=\"{}\" x2=\"{px}\" y2=\"{}\" stroke=\"{AXIS}\" stroke-width=\"1\"/>\n\
             <text x=\"{px}\" y=\"{}\" text-anchor=\"middle\" font-family=\"{FONT}\" \
             font-size=\"11\" fill=\"{INK}\">{}</text>\n",
            num(base, 1),
            num(base + 5.0, 1),
            num(base + 18.0, 1),
            escape(text),
        );
    }
    put!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-family=\"{FONT}\" font-size=\"12\" \
         fill=\"{INK}\">{}</text>\n",
        num((M_LEFT + PLOT_W - M_RIGHT) / 2.0, 1),
        num(PLOT_H - 12.0, 1),
        escape(label),
    );
}

/// Draws the runs of consecutive present points as polylines (a `None` breaks the line).
fn polyline(
    out: &mut String,
    points: &[Option<(f64, f64)>],
    colour: &str,
    width: f64,
    dash: Option<&str>,
) {
    let dash = dash
        .map(|d| format!(" stroke-dasharray=\"{d}\""))
        .unwrap_or_default();
    for run in points.split(Option::is_none) {
        if run.len() < 2 {
            continue;
        }
        let coords: Vec<String> = run
            .iter()
            .flatten()
            .map(|(x, y)| format!("{},{}", num(*x, 1), num(*y, 1)))
            .collect();
        put!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"{}\" \
             stroke-linejoin=\"round\"{dash}/>\n",
            coords.join(" "),
            num(width, 1),
        );
    }
}

fn markers(out: &mut String, points: &[Option<(f64, f64)>], colour: &str, r: f64) {
    for (x, y) in points.iter().flatten() {
        put!(
            out,
            "<circle cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"{colour}\"/>\n",
            num(*x, 1),
            num(*y, 1),
            num(r, 1),
        );
    }
}

#[derive(Clone, Copy)]
enum LegendKey {
    Bar,
    Line,
    Dashed,
}

/// A legend in one row above the data area, right-aligned.
fn legend(out: &mut String, items: &[(LegendKey, &str, &str)]) {
    // Approximate text widths: 6.2 px per character at 11 px.
    let widths: Vec<f64> = items
        .iter()
        .map(|(_, _, text)| 26.0 + 6.2 * text.chars().count() as f64)
        .collect();
    let mut x = PLOT_W - M_RIGHT - widths.iter().sum::<f64>();
    let y = M_TOP - 10.0;
    for ((key, colour, text), w) in items.iter().zip(widths) {
        match key {
            LegendKey::Bar => put!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"9\" fill=\"{colour}\" \
                 fill-opacity=\"0.75\"/>\n",
                num(x, 1),
                num(y - 8.0, 1),
            ),
            LegendKey::Line | LegendKey::Dashed => {
                let dash = if matches!(key, LegendKey::Dashed) {
                    " stroke-dasharray=\"6 4\""
                } else {
                    ""
                };
                put!(
                    out,
                    "<line x1=\"{}\" y1=\"{yl}\" x2=\"{}\" y2=\"{yl}\" stroke=\"{colour}\" \
                     stroke-width=\"2\"{dash}/>\n",
                    num(x, 1),
                    num(x + 18.0, 1),
                    yl = num(y - 3.5, 1),
                );
            }
        }
        put!(
            out,
            "<text x=\"{}\" y=\"{}\" font-family=\"{FONT}\" font-size=\"11\" fill=\"{INK}\">{}</text>\n",
            num(x + 22.0, 1),
            num(y, 1),
            escape(text),
        );
        x += w;
    }
}

// ---------------------------------------------------------------------------------------------
// Text and numbers.

/// Escapes text for HTML and XML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab and newline are not allowed in XML at all.
            c if c.is_control() && c != '\t' && c != '\n' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `v` with `decimals` decimals; non-finite values (which the markup must never contain) as 0,
/// and never "-0".
fn num(v: f64, decimals: usize) -> String {
    let v = if v.is_finite() { v } else { 0.0 };
    let text = format!("{v:.decimals$}");
    if text.starts_with('-') && text[1..].chars().all(|c| c == '0' || c == '.') {
        text[1..].to_owned()
    } else {
        text
    }
}

/// Decimals needed to tell ticks `step` apart (at most 4).
fn step_decimals(step: f64) -> usize {
    if !step.is_finite() || step <= 0.0 || step >= 1.0 {
        return 0;
    }
    ((-step.log10()).ceil().max(0.0) as usize).min(4)
}

fn wh_to_kwh(wh: u64) -> f64 {
    wh as f64 / 1000.0
}

fn has_trades(report: &DayReport) -> bool {
    report
        .periods
        .iter()
        .any(|p| p.trades > 0 || p.traded_wh > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_START: i64 = 1_796_256_000; // 2026-12-03T00:00:00Z
    const REASON: &str = "voltage at bus 17 < 0.950 pu & line 5 overloaded";

    /// A plausible whole day: PV export around noon, evening consumption, trades in daylight.
    fn full_day() -> DayReport {
        let mut supply = 0_i64;
        let periods: Vec<PeriodSummary> = (0..96_i64)
            .map(|i| {
                let hour = i as f64 / 4.0;
                let sun = ((hour - 6.5) / 11.0 * std::f64::consts::PI).sin().max(0.0);
                let evening = 0.4 + 0.6 * (-((hour - 19.0) / 2.5).powi(2)).exp();
                let traded_wh = (sun * 9_000.0) as u64;
                let trades = (traded_wh / 700) as u32;
                let minted_wh = (sun * 12_000.0) as u64;
                let burned_wh = (evening * 3_000.0) as u64;
                supply += minted_wh as i64 - burned_wh as i64;
                PeriodSummary {
                    start: DAY_START + i * 900,
                    traded_wh,
                    trades,
                    refused: u32::from(i % 7 == 0 && trades > 0),
                    avg_price_cents_per_kwh: (trades > 0)
                        .then_some(9.0 + 6.0 * (1.0 - sun) + (i % 5) as f64 * 0.3),
                    minted_wh,
                    burned_wh,
                    supply_wh: supply,
                }
            })
            .collect();
        let baseline: Vec<f64> = (0..33)
            .map(|b| 1.0 - 0.0026 * f64::from(b % 18) - 0.001 * f64::from(b / 18))
            .collect();
        let with_trades: Vec<f64> = baseline
            .iter()
            .enumerate()
            .map(|(b, v)| v - if (8..18).contains(&b) { 0.004 } else { -0.002 })
            .collect();
        DayReport {
            title: "GridLedger demo — 2026-12-03 (UTC), 16 prosumers on the IEEE 33-bus feeder"
                .to_owned(),
            day_start: DAY_START,
            periods,
            worst_period: Some(WorstPeriod {
                start: DAY_START + 50 * 900,
                load_scale: 1.18,
                baseline_vm_pu: baseline,
                with_trades_vm_pu: with_trades,
                v_min_pu: 0.95,
                v_max_pu: 1.05,
            }),
            summary: vec![
                ("Trades committed".to_owned(), "412".to_owned()),
                ("Trades refused".to_owned(), "9".to_owned()),
                ("Energy traded".to_owned(), "287.4 kWh".to_owned()),
                (
                    "Tokens minted & burned".to_owned(),
                    "392.1 / 176.3 kWh".to_owned(),
                ),
                ("Throughput".to_owned(), "38.2 tps".to_owned()),
            ],
            refusals: vec![
                (REASON.to_owned(), 7),
                ("line 12 over its rating".to_owned(), 2),
            ],
        }
    }

    fn empty_day() -> DayReport {
        DayReport {
            title: "empty".to_owned(),
            day_start: DAY_START,
            periods: Vec::new(),
            worst_period: None,
            summary: Vec::new(),
            refusals: Vec::new(),
        }
    }

    /// Checks that `xml` is well formed as far as the renderer's markup goes: tags nest and
    /// close, attribute values are quoted, and every `&` starts an entity.
    fn check_well_formed(xml: &str) -> Result<(), String> {
        let check_text = |text: &str| -> Result<(), String> {
            for (i, _) in text.match_indices('&') {
                let rest = &text[i..];
                let entity = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&#160;"]
                    .iter()
                    .any(|e| rest.starts_with(e));
                if !entity {
                    return Err(format!("bare & in {:?}", &rest[..rest.len().min(20)]));
                }
            }
            Ok(())
        };
        let mut stack: Vec<String> = Vec::new();
        let mut rest = xml;
        while let Some(open) = rest.find('<') {
            check_text(&rest[..open])?;
            rest = &rest[open..];
            let close_marker = if rest.starts_with("<?") {
                "?>"
            } else if rest.starts_with("<!--") {
                "-->"
            } else {
                ">"
            };
            let end = rest.find(close_marker).ok_or("unterminated markup")?;
            let tag = &rest[1..end];
            rest = &rest[end + close_marker.len()..];
            if tag.starts_with('?') || tag.starts_with('!') {
                continue;
            }
            if tag.contains('<') || tag.matches('"').count() % 2 != 0 {
                return Err(format!("malformed tag <{tag}>"));
            }
            check_text(tag)?;
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(open) if open == name.trim() => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
            } else if !tag.ends_with('/') {
                let name = tag
                    .split(|c: char| c.is_whitespace())
                    .next()
                    .unwrap_or_default();
                stack.push(name.to_owned());
            }
        }
        check_text(rest)?;
        if stack.is_empty() {
            Ok(())
        } else {
            Err(format!("unclosed {stack:?}"))
        }
    }

    /// The `<svg>…</svg>` parts of an HTML page.
    fn svg_parts(html: &str) -> Vec<&str> {
        let mut parts = Vec::new();
        let mut rest = html;
        while let Some(start) = rest.find("<svg") {
            let Some(len) = rest[start..].find("</svg>") else {
                parts.push(&rest[start..]);
                break;
            };
            parts.push(&rest[start..start + len + "</svg>".len()]);
            rest = &rest[start + len..];
        }
        parts
    }

    fn assert_finite_markup(markup: &str) {
        for bad in ["NaN", "nan", "inf", "Inf"] {
            assert!(!markup.contains(bad), "markup contains {bad}");
        }
    }

    #[test]
    fn full_day_html_has_title_summary_bars_band_and_escapes() {
        let report = full_day();
        let html = render_html(&report);
        assert!(html.contains(&escape(&report.title)));
        for (label, value) in &report.summary {
            assert!(
                html.contains(&escape(label)),
                "summary label {label} missing"
            );
            assert!(
                html.contains(&escape(value)),
                "summary value {value} missing"
            );
        }
        assert!(html.contains("Tokens minted &amp; burned"));
        let with_energy = report.periods.iter().filter(|p| p.traded_wh > 0).count();
        assert!(with_energy > 30, "fixture should trade in daylight");
        assert_eq!(html.matches("class=\"bar-traded\"").count(), with_energy);
        assert_eq!(html.matches("class=\"band\"").count(), 2);
        assert!(html.contains("v min 0.950 pu") && html.contains("v max 1.050 pu"));
        assert!(html.contains("voltage at bus 17 &lt; 0.950 pu &amp; line 5 overloaded"));
        assert!(!html.contains(REASON));
        assert!(!html.contains("<script"));
        for external in ["src=", "href=", "url(", "@import"] {
            assert!(!html.contains(external), "external resource via {external}");
        }

        let parts = svg_parts(&html);
        assert_eq!(parts.len(), 3);
        for part in parts {
            check_well_formed(part).unwrap();
        }
        check_well_formed(&html).unwrap();
        assert_finite_markup(&html);
    }

    #[test]
    fn full_day_svg_is_one_well_formed_document_with_three_plots() {
        let report = full_day();
        let svg = render_svg(&report);
        check_well_formed(&svg).unwrap();
        assert_finite_markup(&svg);
        assert_eq!(svg.matches("<svg").count(), 1);
        assert!(svg.contains("fill=\"#ffffff\""));
        assert!(svg.contains(&escape(&report.title)));
        assert_eq!(svg.matches("<g transform=").count(), 3);
        for label in [
            "traded energy (kWh)",
            "average price (c/kWh)",
            "voltage magnitude (pu)",
        ] {
            assert!(svg.contains(label), "axis label {label} missing");
        }
        assert!(svg.contains(">12:00<") && svg.contains(">bus id<"));

        // Where the other code and people can look at the fixture's rendering.
        if let Some(dir) = std::env::var_os("GRIDLEDGER_REPORT_FIXTURE_DIR") {
            let dir = std::path::PathBuf::from(dir);
            std::fs::write(dir.join("report-fixture.svg"), &svg).unwrap();
            std::fs::write(dir.join("report-fixture.html"), render_html(&report)).unwrap();
        }
    }

    #[test]
    fn empty_report_renders_and_says_no_trades() {
        let report = empty_day();
        let html = render_html(&report);
        let svg = render_svg(&report);
        assert!(html.contains("no trades"));
        assert!(svg.contains("no trades"));
        assert!(html.contains("The DSO refused no trades."));
        if let Some(dir) = std::env::var_os("GRIDLEDGER_REPORT_FIXTURE_DIR") {
            std::fs::write(std::path::Path::new(&dir).join("report-empty.svg"), &svg).unwrap();
        }
        assert!(!html.contains("class=\"bar-traded\""));
        check_well_formed(&html).unwrap();
        check_well_formed(&svg).unwrap();
        assert_finite_markup(&html);
        assert_finite_markup(&svg);
    }

    #[test]
    fn day_without_trades_or_with_non_finite_numbers_stays_finite() {
        let mut report = full_day();
        for p in &mut report.periods {
            p.traded_wh = 0;
            p.trades = 0;
            p.avg_price_cents_per_kwh = Some(f64::NAN);
        }
        report.worst_period = Some(WorstPeriod {
            start: DAY_START,
            load_scale: f64::INFINITY,
            baseline_vm_pu: vec![f64::NAN, 1.0, f64::NEG_INFINITY],
            with_trades_vm_pu: vec![1.0; 3],
            v_min_pu: f64::NAN,
            v_max_pu: 1.0,
        });
        let html = render_html(&report);
        let svg = render_svg(&report);
        assert!(html.contains("no trades"));
        check_well_formed(&html).unwrap();
        check_well_formed(&svg).unwrap();
        assert_finite_markup(&html);
        assert_finite_markup(&svg);
    }

    #[test]
    fn rendering_is_deterministic() {
        assert_eq!(render_html(&full_day()), render_html(&full_day()));
        assert_eq!(render_svg(&full_day()), render_svg(&full_day()));
        assert_eq!(render_html(&empty_day()), render_html(&empty_day()));
    }

    #[test]
    fn ticks_are_round_and_labels_never_negative_zero() {
        let axis = Axis::covering([-0.04, 0.26], 0.0);
        let labels: Vec<String> = axis.ticks(6).into_iter().map(|v| num(v, 2)).collect();
        assert_eq!(labels, ["0.00", "0.05", "0.10", "0.15", "0.20", "0.25"]);
        assert_eq!(num(-0.04, 1), "0.0");
        assert_eq!(num(f64::NAN, 3), "0.000");
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(f64::INFINITY), 1.0);
    }

    #[test]
    fn control_characters_are_replaced() {
        assert_eq!(escape("a\u{1}b<'\">"), "a\u{FFFD}b&lt;&#39;&quot;&gt;");
    }
}
