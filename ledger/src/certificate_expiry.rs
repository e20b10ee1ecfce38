//! Certificate expiry, watched: every certificate a node relies on — its own signing and TLS
//! certificates and those in the configuration of each channel it serves — is published as the
//! gauge `certificate_expiry_timestamp_seconds` (unix seconds of its `notAfter`), and the
//! operations endpoint's `/healthz` reports it: **degraded** (200, listed under
//! `degraded_checks`) once one expires within the warning window, **failed** (503) once one has
//! expired.
//!
//! Certificates are grouped by scope: `local` for the node's own, the channel id for a
//! channel's. A scope's list is replaced whole (a config block that drops an organization drops
//! its certificates from the metrics too). One process-wide [`CertificateWatch`] lives next to
//! the metrics [`registry`](crate::metrics::registry).

use crate::metrics::{FailedCheck, Gauge, Registry, registry};
use crate::utc::format_utc;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The scope of the node's own certificates.
pub const LOCAL_SCOPE: &str = "local";
/// Warning window when the node's config names none: 30 days.
pub const DEFAULT_WARNING_SECONDS: i64 = 30 * 86_400;

/// One certificate to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedCertificate {
    /// MSP id of the organization it belongs to (empty when none applies).
    pub msp_id: String,
    /// What it is for (`signing`, `tls`, `ca`, `tls_ca`, `admin`, `consenter_server_tls`, …).
    pub role: String,
    /// Subject distinguished name.
    pub subject: String,
    /// End of its validity, unix seconds.
    pub not_after: i64,
}

/// The certificates of every scope, their gauge, and the warning window.
pub struct CertificateWatch {
    gauge: Arc<Gauge>,
    warning_seconds: AtomicI64,
    scopes: Mutex<BTreeMap<String, Vec<WatchedCertificate>>>,
}

/// The process-wide watch, registered (gauge and health checks) in the process-wide registry
/// on first use.
pub fn certificate_watch() -> &'static Arc<CertificateWatch> {
    static WATCH: OnceLock<Arc<CertificateWatch>> = OnceLock::new();
    WATCH.get_or_init(|| CertificateWatch::install(registry(), now_unix_secs))
}

fn now_unix_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl CertificateWatch {
    /// A watch publishing into `registry`, with health checks that read the time from `now`.
    pub fn install(registry: &Registry, now: fn() -> i64) -> Arc<CertificateWatch> {
        let watch = Arc::new(CertificateWatch {
            gauge: registry.gauge(
                "certificate_expiry_timestamp_seconds",
                "End of the validity of a certificate the node relies on (unix seconds), by scope (local or channel id), MSP id, role and subject.",
                &["scope", "msp_id", "role", "subject"],
            ),
            warning_seconds: AtomicI64::new(DEFAULT_WARNING_SECONDS),
            scopes: Mutex::default(),
        });
        let failed = Arc::clone(&watch);
        registry.add_health_check(Box::new(move || failed.expired(now())));
        let warned = Arc::clone(&watch);
        registry.add_warning_check(Box::new(move || warned.expiring(now())));
        watch
    }

    /// Sets the warning window: a certificate that expires within it degrades `/healthz`.
    pub fn set_warning_seconds(&self, seconds: i64) {
        self.warning_seconds
            .store(seconds.max(0), Ordering::Relaxed);
    }

    /// Replaces the certificates of `scope`.
    pub fn set_scope(&self, scope: &str, certificates: Vec<WatchedCertificate>) {
        let mut scopes = self
            .scopes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.gauge
            .remove_where(|key| key.first().map(String::as_str) == Some(scope));
        for c in &certificates {
            self.gauge
                .set(&[scope, &c.msp_id, &c.role, &c.subject], c.not_after);
        }
        scopes.insert(scope.to_owned(), certificates);
    }

    /// Findings for certificates for which `keep(not_after)` holds, soonest first.
    fn findings(&self, keep: impl Fn(i64) -> bool, what: &str) -> Vec<FailedCheck> {
        let scopes = self
            .scopes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut found: Vec<(i64, FailedCheck)> = scopes
            .iter()
            .flat_map(|(scope, certs)| certs.iter().map(move |c| (scope, c)))
            .filter(|(_, c)| keep(c.not_after))
            .map(|(scope, c)| {
                let owner = if c.msp_id.is_empty() {
                    String::new()
                } else {
                    format!(" of {}", c.msp_id)
                };
                (
                    c.not_after,
                    FailedCheck {
                        component: format!("certificate:{scope}"),
                        reason: format!(
                            "the {} certificate{owner} ({}) {what} {}",
                            c.role,
                            c.subject,
                            format_utc(c.not_after)
                        ),
                    },
                )
            })
            .collect();
        found.sort_by_key(|(at, _)| *at);
        found.into_iter().map(|(_, f)| f).collect()
    }

    /// The certificates that have expired at `now`.
    pub fn expired(&self, now: i64) -> Vec<FailedCheck> {
        self.findings(|not_after| not_after < now, "expired at")
    }

    /// The certificates that expire within the warning window after `now` (not yet expired).
    pub fn expiring(&self, now: i64) -> Vec<FailedCheck> {
        let window = self.warning_seconds.load(Ordering::Relaxed);
        self.findings(
            |not_after| not_after >= now && not_after <= now.saturating_add(window),
            "expires at",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn cert(role: &str, not_after: i64) -> WatchedCertificate {
        WatchedCertificate {
            msp_id: "DSOMSP".into(),
            role: role.into(),
            subject: format!("CN={role}"),
            not_after,
        }
    }

    #[test]
    fn expiry_is_published_per_scope_and_a_scope_is_replaced_whole() {
        let registry = Registry::default();
        let watch = CertificateWatch::install(&registry, || NOW);
        watch.set_scope(
            "market",
            vec![cert("ca", NOW + 1000), cert("admin", NOW + 5)],
        );
        watch.set_scope(LOCAL_SCOPE, vec![cert("tls", NOW + 7)]);
        let text = registry.encode();
        assert!(
            text.contains(&format!(
                "certificate_expiry_timestamp_seconds{{scope=\"market\",msp_id=\"DSOMSP\",role=\"admin\",subject=\"CN=admin\"}} {}\n",
                NOW + 5
            )),
            "{text}"
        );
        watch.set_scope("market", vec![cert("ca", NOW + 1000)]);
        let text = registry.encode();
        assert!(!text.contains("role=\"admin\""), "{text}");
        assert!(text.contains("role=\"ca\""), "{text}");
        assert!(text.contains("scope=\"local\""), "{text}");
    }

    #[test]
    fn a_certificate_within_the_window_degrades_and_an_expired_one_fails() {
        let registry = Registry::default();
        let watch = CertificateWatch::install(&registry, || NOW);
        watch.set_warning_seconds(86_400);
        watch.set_scope(LOCAL_SCOPE, vec![cert("tls", NOW + 10 * 86_400)]);
        assert!(registry.check_health().is_empty());
        assert!(registry.check_warnings().is_empty());

        watch.set_scope("market", vec![cert("ca", NOW + 3600)]);
        let warnings = registry.check_warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].component, "certificate:market");
        assert!(
            warnings[0]
                .reason
                .contains("the ca certificate of DSOMSP (CN=ca) expires at"),
            "{warnings:?}"
        );
        assert!(registry.check_health().is_empty());

        watch.set_scope("market", vec![cert("ca", NOW - 1)]);
        let failed = registry.check_health();
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(failed[0].reason.contains("expired at"), "{failed:?}");
        assert!(registry.check_warnings().is_empty());
    }
}
