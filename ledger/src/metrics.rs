//! A node's metrics and health checks, served by the operations endpoint (`/metrics`,
//! `/healthz`): counters, gauges and fixed-bucket histograms with label sets, rendered in the
//! Prometheus text exposition format.
//!
//! It lives here because both the peer and the orderer depend on this crate and both record
//! ledger metrics. There is one process-wide [`Registry`] ([`registry`]): a node is one
//! process, and the code paths that count (commit, Broadcast, Deliver, Raft) reach it without
//! a handle threaded through every constructor. A metric family is registered by name on
//! first use; registering the same name again returns the same family, so the peer and the
//! orderer can both declare `ledger_height`. Tests encode their own `Registry::default()`.
//!
//! Values are atomics; the per-family map from label values to those atomics is behind a
//! mutex that is only taken to find a series (a short critical section, no I/O).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The process-wide registry every node records into.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

/// Histogram buckets for durations in seconds: 1 ms to 10 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One failed health check: the component and why it failed (Fabric's `failed_checks` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedCheck {
    /// What failed, e.g. `ledger:market` or `orderers:market`.
    pub component: String,
    /// Why, in words.
    pub reason: String,
}

/// A health check: returns the checks that failed (empty when healthy). It may block for a
/// short while (a TCP connect with a timeout), so callers run it off the async executor.
pub type HealthCheck = Box<dyn Fn() -> Vec<FailedCheck> + Send + Sync>;

/// Metric families and health checks, in registration order.
#[derive(Default)]
pub struct Registry {
    families: Mutex<Vec<Family>>,
    checks: Mutex<Vec<Arc<HealthCheck>>>,
    /// Checks whose findings degrade the node without making it unavailable (a certificate
    /// about to expire): `/healthz` still answers 200, with the findings listed.
    warnings: Mutex<Vec<Arc<HealthCheck>>>,
}

#[derive(Clone)]
enum Family {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
    Histogram(Arc<Histogram>),
}

impl Family {
    fn name(&self) -> &str {
        match self {
            Family::Counter(c) => &c.meta.name,
            Family::Gauge(g) => &g.meta.name,
            Family::Histogram(h) => &h.meta.name,
        }
    }
}

/// A family's name, help text and label names.
struct Meta {
    name: String,
    help: String,
    labels: Vec<String>,
}

impl Meta {
    fn new(name: &str, help: &str, labels: &[&str]) -> Meta {
        Meta {
            name: name.to_owned(),
            help: help.to_owned(),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        }
    }

    /// `values` checked against the label names: a missing value is empty, an extra one
    /// dropped, so a miscounted call site never panics.
    fn key(&self, values: &[&str]) -> Vec<String> {
        (0..self.labels.len())
            .map(|i| values.get(i).map_or_else(String::new, |v| (*v).to_owned()))
            .collect()
    }

    fn header(&self, out: &mut String, kind: &str) {
        let _ = writeln!(out, "# HELP {} {}", self.name, escape_help(&self.help));
        let _ = writeln!(out, "# TYPE {} {kind}", self.name);
    }
}

/// A monotonically increasing count per label set.
pub struct Counter {
    meta: Meta,
    series: Mutex<BTreeMap<Vec<String>, Arc<AtomicU64>>>,
}

impl Counter {
    /// Adds one to the series with these label values (in the family's label order).
    pub fn inc(&self, labels: &[&str]) {
        self.add(labels, 1);
    }

    /// Adds `n` to the series with these label values.
    pub fn add(&self, labels: &[&str], n: u64) {
        let key = self.meta.key(labels);
        let value = lock(&self.series).entry(key).or_default().clone();
        value.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value of a series (0 if never counted).
    pub fn get(&self, labels: &[&str]) -> u64 {
        let key = self.meta.key(labels);
        lock(&self.series)
            .get(&key)
            .map_or(0, |v| v.load(Ordering::Relaxed))
    }

    fn encode(&self, out: &mut String) {
        self.meta.header(out, "counter");
        for (key, value) in lock(&self.series).iter() {
            sample(out, &self.meta.name, &self.meta.labels, key, None);
            let _ = writeln!(out, " {}", value.load(Ordering::Relaxed));
        }
    }
}

/// A value that goes up and down per label set.
pub struct Gauge {
    meta: Meta,
    series: Mutex<BTreeMap<Vec<String>, Arc<AtomicI64>>>,
}

impl Gauge {
    /// Sets the series with these label values.
    pub fn set(&self, labels: &[&str], value: i64) {
        let key = self.meta.key(labels);
        lock(&self.series)
            .entry(key)
            .or_default()
            .store(value, Ordering::Relaxed);
    }

    /// Drops every series whose label values `matches` accepts (a certificate no longer in a
    /// channel's configuration, say).
    pub fn remove_where(&self, matches: impl Fn(&[String]) -> bool) {
        lock(&self.series).retain(|key, _| !matches(key));
    }

    /// The current value of a series (0 if never set).
    pub fn get(&self, labels: &[&str]) -> i64 {
        let key = self.meta.key(labels);
        lock(&self.series)
            .get(&key)
            .map_or(0, |v| v.load(Ordering::Relaxed))
    }

    fn encode(&self, out: &mut String) {
        self.meta.header(out, "gauge");
        for (key, value) in lock(&self.series).iter() {
            sample(out, &self.meta.name, &self.meta.labels, key, None);
            let _ = writeln!(out, " {}", value.load(Ordering::Relaxed));
        }
    }
}

/// Observations counted into fixed buckets per label set, with their sum and count.
pub struct Histogram {
    meta: Meta,
    bounds: Vec<f64>,
    series: Mutex<BTreeMap<Vec<String>, Arc<HistogramSeries>>>,
}

/// One label set's buckets (not cumulative: bucket i counts observations in
/// `(bounds[i-1], bounds[i]]`, the last one those above every bound), sum and count.
struct HistogramSeries {
    buckets: Vec<AtomicU64>,
    /// The sum's `f64` bits.
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one observation in the series with these label values.
    pub fn observe(&self, labels: &[&str], value: f64) {
        let key = self.meta.key(labels);
        let series = lock(&self.series)
            .entry(key)
            .or_insert_with(|| {
                Arc::new(HistogramSeries {
                    buckets: (0..=self.bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                    sum: AtomicU64::new(0f64.to_bits()),
                    count: AtomicU64::new(0),
                })
            })
            .clone();
        let index = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        series.buckets[index].fetch_add(1, Ordering::Relaxed);
        let _ = series
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
        series.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the seconds elapsed since `start`.
    pub fn observe_since(&self, labels: &[&str], start: std::time::Instant) {
        self.observe(labels, start.elapsed().as_secs_f64());
    }

    /// The number of observations of a series.
    pub fn count(&self, labels: &[&str]) -> u64 {
        let key = self.meta.key(labels);
        lock(&self.series)
            .get(&key)
            .map_or(0, |s| s.count.load(Ordering::Relaxed))
    }

    fn encode(&self, out: &mut String) {
        self.meta.header(out, "histogram");
        let bucket_name = format!("{}_bucket", self.meta.name);
        let mut labels = self.meta.labels.clone();
        labels.push("le".to_owned());
        for (key, series) in lock(&self.series).iter() {
            let mut cumulative = 0u64;
            for (i, bucket) in series.buckets.iter().enumerate() {
                cumulative += bucket.load(Ordering::Relaxed);
                let le = self
                    .bounds
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), |b| format_float(*b));
                sample(out, &bucket_name, &labels, key, Some(&le));
                let _ = writeln!(out, " {cumulative}");
            }
            let sum = f64::from_bits(series.sum.load(Ordering::Relaxed));
            sample(
                out,
                &format!("{}_sum", self.meta.name),
                &self.meta.labels,
                key,
                None,
            );
            let _ = writeln!(out, " {}", format_float(sum));
            sample(
                out,
                &format!("{}_count", self.meta.name),
                &self.meta.labels,
                key,
                None,
            );
            let _ = writeln!(out, " {}", series.count.load(Ordering::Relaxed));
        }
    }
}

impl Registry {
    /// The counter family `name` (registered now, or the one registered before).
    pub fn counter(&self, name: &str, help: &str, labels: &[&str]) -> Arc<Counter> {
        let mut families = lock(&self.families);
        if let Some(Family::Counter(c)) = families.iter().find(|f| f.name() == name) {
            return c.clone();
        }
        let counter = Arc::new(Counter {
            meta: Meta::new(name, help, labels),
            series: Mutex::default(),
        });
        families.push(Family::Counter(counter.clone()));
        counter
    }

    /// The gauge family `name` (registered now, or the one registered before).
    pub fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> Arc<Gauge> {
        let mut families = lock(&self.families);
        if let Some(Family::Gauge(g)) = families.iter().find(|f| f.name() == name) {
            return g.clone();
        }
        let gauge = Arc::new(Gauge {
            meta: Meta::new(name, help, labels),
            series: Mutex::default(),
        });
        families.push(Family::Gauge(gauge.clone()));
        gauge
    }

    /// The histogram family `name` with these upper bounds (ascending; registered now, or the
    /// one registered before).
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        bounds: &[f64],
    ) -> Arc<Histogram> {
        let mut families = lock(&self.families);
        if let Some(Family::Histogram(h)) = families.iter().find(|f| f.name() == name) {
            return h.clone();
        }
        let histogram = Arc::new(Histogram {
            meta: Meta::new(name, help, labels),
            bounds: bounds.to_vec(),
            series: Mutex::default(),
        });
        families.push(Family::Histogram(histogram.clone()));
        histogram
    }

    /// Every family in the Prometheus text exposition format (version 0.0.4).
    pub fn encode(&self) -> String {
        let families: Vec<Family> = lock(&self.families).clone();
        let mut out = String::new();
        for family in families {
            match family {
                Family::Counter(c) => c.encode(&mut out),
                Family::Gauge(g) => g.encode(&mut out),
                Family::Histogram(h) => h.encode(&mut out),
            }
        }
        out
    }

    /// Adds a health check, run on every `/healthz`.
    pub fn add_health_check(&self, check: HealthCheck) {
        lock(&self.checks).push(Arc::new(check));
    }

    /// Runs every health check; the failed ones (empty when healthy).
    pub fn check_health(&self) -> Vec<FailedCheck> {
        let checks: Vec<Arc<HealthCheck>> = lock(&self.checks).clone();
        checks.iter().flat_map(|check| check()).collect()
    }

    /// Adds a check whose findings degrade the node (see [`Registry::check_warnings`]).
    pub fn add_warning_check(&self, check: HealthCheck) {
        lock(&self.warnings).push(Arc::new(check));
    }

    /// Runs every warning check; what they found (empty when nothing is amiss).
    pub fn check_warnings(&self) -> Vec<FailedCheck> {
        let checks: Vec<Arc<HealthCheck>> = lock(&self.warnings).clone();
        checks.iter().flat_map(|check| check()).collect()
    }
}

/// The health of one channel's ledger: its last block write must not have failed, and its tip
/// block must read back (a failed check `ledger:<channel>` otherwise).
pub fn check_ledger(ledger: &crate::Ledger) -> Option<FailedCheck> {
    if let Some(failure) = ledger.write_failure() {
        return Some(FailedCheck {
            component: format!("ledger:{}", ledger.channel_id()),
            reason: format!("{failure}; committing is paused and retried"),
        });
    }
    let height = ledger.height();
    let reason = match height.checked_sub(1).map(|tip| ledger.block_bytes(tip)) {
        None | Some(Ok(Some(_))) => return None,
        Some(Ok(None)) => format!("block {} of height {height} is missing", height - 1),
        Some(Err(e)) => format!("cannot read the ledger: {e}"),
    };
    Some(FailedCheck {
        component: format!("ledger:{}", ledger.channel_id()),
        reason,
    })
}

/// A poisoned lock still holds consistent data here (only map inserts happen under it).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes `name{l1="v1",…}` (no value); `le` is appended as the last label's value when given.
fn sample(out: &mut String, name: &str, names: &[String], values: &[String], le: Option<&str>) {
    out.push_str(name);
    let pairs: Vec<(&String, &str)> = names
        .iter()
        .zip(values.iter().map(String::as_str).chain(le))
        .collect();
    if pairs.is_empty() {
        return;
    }
    out.push('{');
    for (i, (label, value)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{label}=\"{}\"", escape_label(value));
    }
    out.push('}');
}

/// A label value escaped as the text format requires: backslash, double quote, line feed.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Help text escaped: backslash and line feed.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A float as Prometheus writes it (`+Inf`, `-Inf`, `NaN`, else Rust's shortest form).
fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let registry = Registry::default();
        let counter = registry.counter("requests_total", "Requests.", &["path"]);
        counter.inc(&["a\"b\\c\nd"]);
        let text = registry.encode();
        assert!(
            text.contains("requests_total{path=\"a\\\"b\\\\c\\nd\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_sum_and_count() {
        let registry = Registry::default();
        let h = registry.histogram("commit_seconds", "Commit time.", &["channel"], &[0.1, 1.0]);
        for v in [0.05, 0.5, 0.5, 3.0] {
            h.observe(&["market"], v);
        }
        let text = registry.encode();
        for line in [
            "# TYPE commit_seconds histogram",
            "commit_seconds_bucket{channel=\"market\",le=\"0.1\"} 1",
            "commit_seconds_bucket{channel=\"market\",le=\"1\"} 3",
            "commit_seconds_bucket{channel=\"market\",le=\"+Inf\"} 4",
            "commit_seconds_sum{channel=\"market\"} 4.05",
            "commit_seconds_count{channel=\"market\"} 4",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn families_carry_help_and_type_and_are_registered_once() {
        let registry = Registry::default();
        registry
            .gauge("ledger_height", "Blocks in the ledger.", &["channel"])
            .set(&["market"], 7);
        // A second registration of the name is the same family.
        registry
            .gauge("ledger_height", "ignored", &["channel"])
            .set(&["meter"], 2);
        let unlabelled = registry.counter("deliver_requests_total", "Deliver requests.", &[]);
        unlabelled.add(&[], 3);
        let text = registry.encode();
        assert_eq!(
            text.matches("# TYPE ledger_height gauge").count(),
            1,
            "{text}"
        );
        assert!(
            text.contains("# HELP ledger_height Blocks in the ledger.\n"),
            "{text}"
        );
        assert!(
            text.contains("ledger_height{channel=\"market\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains("ledger_height{channel=\"meter\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("deliver_requests_total 3\n"), "{text}");
    }

    #[test]
    fn health_checks_report_their_failures() {
        let registry = Registry::default();
        assert!(registry.check_health().is_empty());
        registry.add_health_check(Box::new(|| {
            vec![FailedCheck {
                component: "ledger:market".into(),
                reason: "cannot read".into(),
            }]
        }));
        let failed = registry.check_health();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].component, "ledger:market");
    }
}
