//! `certs`: guarantees of origin on the market channel — certificates that a unit of renewable
//! energy was produced, issued by the DSO against the export it attested in `energy`, moved
//! between account holders, and cancelled once for a named beneficiary and purpose.
//!
//! One certificate stands for [`WH_PER_CERTIFICATE`] (1 kWh) of attested export. The DSO issues
//! floor((attested export − Wh already certified) / 1000) certificates for an account and
//! period; what is left below 1 kWh stays uncertified, recorded as a number in the account's
//! `certified` record and never certified later, so the same metered energy is never certified
//! twice. The attestation is read with a same-channel call to `energy`'s `GetAttestation`, so
//! its key is in the issuing transaction's read set.
//!
//! | function | who | args |
//! |---|---|---|
//! | `IssueCertificates` | the DSO's operators (DSO MSP, no `meter` attribute) | period, account, device, technology |
//! | `Transfer` | the certificate's owner | id, to_account |
//! | `Cancel` | the certificate's owner | id, beneficiary, purpose |
//! | `GetCertificate` | anyone | id |
//! | `ByOwner` | anyone | account |
//! | `ByDevice` | anyone | device |
//! | `ByPeriod` | anyone | from, to (period starts in `[from, to)`) |
//! | `GetCertified` | anyone | period, account |
//!
//! Accounts: a prosumer holds `<MSP>:<POD>` (its MSP and its certificate's `pod` attribute, as
//! in `energy`); an admin (OU `admin`) of an organization holds `<MSP>`, the organization's own
//! portfolio (a retailer's, for its fuel-mix disclosure). A meter — an identity with a `meter`
//! attribute — holds no account. Certificates are issued to the producer's `<MSP>:<POD>`.
//!
//! Rules: a certificate covers the 15-minute period `[period_start, period_end)` and expires
//! [`LIFETIME_SECONDS`] (365 days, the EU's 12-month lifetime of a guarantee of origin) after
//! `period_end`; from its expiry (by the transaction's timestamp) it can be neither transferred
//! nor cancelled, and certificates that would already be expired are not issued. Only the
//! current owner transfers or cancels; a cancelled certificate is never transferred or cancelled
//! again (its record keeps the beneficiary, purpose, time and transaction). A production device
//! is bound on its first issue to its account and technology; later issues naming it must agree.
//! One issue writes at most [`MAX_CERTIFICATES_PER_ISSUE`] certificates (a bounded transaction);
//! a larger attested export is certified by further calls, each issuing what is left.
//! Concurrent issues for one account and period read and write the same `certified` record, and
//! concurrent transfers or cancellations of one certificate its record, so MVCC lets only the
//! first of them commit.
//!
//! Ids are `GO-<period start, 12 digits>-<MSP>:<POD>-<n, 5 digits>`, `n` counting the account's
//! certificates of that period from 1: unique, and readable back to what they certify.
//!
//! Keys (plain keys; ids, accounts and devices hold no `/`):
//! - `cert/<id>` → the certificate; ids start with the period, so certificates sort by period
//!   and `ByPeriod` is one range scan;
//! - `owner/<account>/<id>` → id, the index `ByOwner` scans, moved on transfer;
//! - `device/<device>/<id>` → id, the index `ByDevice` scans;
//! - `certified/<period, 12 digits>/<account>` → what was attested, certified and left;
//! - `devicebinding/<device>` → the account and technology a device was first issued for.

use serde::{Deserialize, Serialize};

use gridledger_proto::msp;
use gridledger_proto::prost::Message;
use gridledger_proto::protos;

use crate::arguments::{Outcome, check_name, expect_args, get, put, state, to_json};
use crate::energy::{Attestation, PERIOD_SECONDS};
use crate::meter::{METER_ATTRIBUTE, POD_ATTRIBUTE};
use crate::stub::ChaincodeStub;
use crate::{Chaincode, OK, error, success};

/// Energy one certificate certifies, Wh.
pub const WH_PER_CERTIFICATE: u64 = 1_000;
/// A certificate expires this long after the end of its period (365 days).
pub const LIFETIME_SECONDS: i64 = 365 * 86_400;
/// The most certificates one `IssueCertificates` writes.
pub const MAX_CERTIFICATES_PER_ISSUE: u64 = 1_000;
/// The chaincode on the same channel whose attestations certificates are issued against.
pub const ENERGY_CHAINCODE: &str = "energy";
/// Status of a certificate that may be transferred and cancelled (until it expires).
pub const ACTIVE: &str = "active";
/// Status of a cancelled certificate.
pub const CANCELLED: &str = "cancelled";
/// The longest beneficiary name, bytes.
pub const MAX_BENEFICIARY_BYTES: usize = 256;
/// The longest cancellation purpose, bytes.
pub const MAX_PURPOSE_BYTES: usize = 512;
/// The longest technology name, bytes.
pub const MAX_TECHNOLOGY_BYTES: usize = 32;
/// Periods are written with 12 digits in keys and ids, so they must be below this.
const PERIOD_LIMIT: i64 = 1_000_000_000_000;

const CERT: &str = "cert";
const OWNER_INDEX: &str = "owner";
const DEVICE_INDEX: &str = "device";
const CERTIFIED: &str = "certified";
const DEVICE_BINDING: &str = "devicebinding";

/// The `certs` chaincode; `dso_msp_id` is the issuing body.
#[derive(Debug, Clone)]
pub struct GuaranteesOfOrigin {
    /// The DSO's MSP id.
    pub dso_msp_id: String,
}

/// A guarantee of origin for [`WH_PER_CERTIFICATE`] of renewable energy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// Its id, `GO-<period>-<MSP>:<POD>-<n>`.
    pub id: String,
    /// The energy it certifies, Wh.
    pub energy_wh: u64,
    /// The production device.
    pub device: String,
    /// The producer's point of delivery.
    pub pod: String,
    /// The producer's account, `<MSP>:<POD>`.
    pub account: String,
    /// Start of the production period, Unix seconds.
    pub period_start: i64,
    /// End of the production period (exclusive), Unix seconds.
    pub period_end: i64,
    /// The production technology, e.g. `solar-pv`.
    pub technology: String,
    /// The issuing body (the DSO's MSP id).
    pub issuer: String,
    /// The issuing transaction's timestamp, Unix seconds.
    pub issued_at: i64,
    /// The issuing transaction.
    pub issue_tx_id: String,
    /// From this time (Unix seconds) it can be neither transferred nor cancelled.
    pub expires_at: i64,
    /// The account holding it.
    pub owner: String,
    /// [`ACTIVE`] or [`CANCELLED`].
    pub status: String,
    /// The cancellation, once cancelled.
    pub cancellation: Option<Cancellation>,
}

/// Who a certificate was cancelled for, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    /// The consumer the energy is claimed for.
    pub beneficiary: String,
    /// What the claim is for (e.g. a supply contract or a disclosure year).
    pub purpose: String,
    /// The cancelling transaction's timestamp, Unix seconds.
    pub cancelled_at: i64,
    /// The cancelling transaction.
    pub tx_id: String,
}

/// What was certified of an account's attested export in a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certified {
    /// The account, `<MSP>:<POD>`.
    pub account: String,
    /// Period start.
    pub period: i64,
    /// Attested export, Wh.
    pub export_wh: u64,
    /// Export covered by certificates, Wh (a multiple of [`WH_PER_CERTIFICATE`]).
    pub certified_wh: u64,
    /// Export not covered, Wh; below [`WH_PER_CERTIFICATE`] once everything is issued.
    pub uncertified_wh: u64,
    /// Certificates issued for it.
    pub certificates: u64,
}

/// The account and technology a production device was first issued for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceBinding {
    /// The device.
    pub device: String,
    /// Its producer's account.
    pub account: String,
    /// Its technology.
    pub technology: String,
}

/// The answer of `IssueCertificates`: the account's record after the issue and the new ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issuance {
    /// The record of the account and period after this issue.
    pub certified: Certified,
    /// The certificates this issue created, in order.
    pub issued: Vec<String>,
}

fn now(stub: &ChaincodeStub<'_>) -> Result<i64, String> {
    stub.timestamp()
        .map(|t| t.seconds)
        .ok_or_else(|| "the transaction carries no timestamp".to_string())
}

/// A period start (or a range bound): Unix seconds on a 15-minute boundary, 12 digits at most.
fn period(what: &str, text: &str) -> Result<i64, String> {
    let p: i64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{what} {text:?} is not a Unix time in seconds"))?;
    if p < 0 || p % PERIOD_SECONDS != 0 {
        return Err(format!(
            "{what} {p} does not start on a {PERIOD_SECONDS}-second boundary"
        ));
    }
    if p >= PERIOD_LIMIT {
        return Err(format!(
            "{what} {p} is beyond the last period (before {PERIOD_LIMIT})"
        ));
    }
    Ok(p)
}

fn check_msp(msp: &str) -> Result<(), String> {
    check_name("MSP id", msp, 64, b"")
}

fn check_pod(pod: &str) -> Result<(), String> {
    check_name("POD", pod, 64, b"")
}

fn check_device(device: &str) -> Result<(), String> {
    check_name("device", device, 64, b"")
}

/// An account: `<MSP>` (an organization's) or `<MSP>:<POD>` (a prosumer's); the POD if any.
fn parse_account(text: &str) -> Result<Option<&str>, String> {
    match text.split_once(':') {
        None => check_msp(text).map(|()| None),
        Some((msp, pod)) => {
            check_msp(msp).map_err(|e| format!("account {text:?}: {e}"))?;
            check_pod(pod).map_err(|e| format!("account {text:?}: {e}"))?;
            Ok(Some(pod))
        }
    }
}

/// A technology name: lower-case letters, digits and `-`, starting with a letter.
fn check_technology(technology: &str) -> Result<(), String> {
    let ok = technology.len() <= MAX_TECHNOLOGY_BYTES
        && technology.starts_with(|c: char| c.is_ascii_lowercase())
        && technology
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        return Ok(());
    }
    Err(format!(
        "technology {technology:?} must be 1-{MAX_TECHNOLOGY_BYTES} lower-case letters, digits or '-', starting with a letter (e.g. solar-pv)"
    ))
}

/// Free text of a cancellation: trimmed, non-empty, at most `max` bytes, no control characters.
fn free_text<'a>(what: &str, text: &'a str, max: usize) -> Result<&'a str, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("a cancellation needs a {what}"));
    }
    if text.len() > max {
        return Err(format!(
            "the {what} is {} bytes, more than the {max} allowed",
            text.len()
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(format!("the {what} {text:?} contains control characters"));
    }
    Ok(text)
}

fn check_id(id: &str) -> Result<(), String> {
    check_name("certificate id", id, 200, b":")
}

fn certificate_id(period: i64, account: &str, n: u64) -> String {
    format!("GO-{period:012}-{account}-{n:05}")
}

fn cert_key(id: &str) -> String {
    format!("{CERT}/{id}")
}

fn owner_key(account: &str, id: &str) -> String {
    format!("{OWNER_INDEX}/{account}/{id}")
}

fn device_key(device: &str, id: &str) -> String {
    format!("{DEVICE_INDEX}/{device}/{id}")
}

fn certified_key(period: i64, account: &str) -> String {
    format!("{CERTIFIED}/{period:012}/{account}")
}

fn device_binding_key(device: &str) -> String {
    format!("{DEVICE_BINDING}/{device}")
}

/// The keys under `<prefix>/<name>/`: `/` + 1 is `0`, so `[…/, …0)` holds exactly them.
fn index_range(prefix: &str, name: &str) -> (String, String) {
    (format!("{prefix}/{name}/"), format!("{prefix}/{name}0"))
}

fn load(stub: &mut ChaincodeStub<'_>, id: &str) -> Result<Certificate, String> {
    check_id(id)?;
    get(stub, &cert_key(id))?.ok_or_else(|| format!("no certificate {id}"))
}

/// The certificates an index range names.
fn by_index(stub: &mut ChaincodeStub<'_>, prefix: &str, name: &str) -> Outcome {
    let (from, to) = index_range(prefix, name);
    let entries = stub.get_state_by_range(&from, &to).map_err(state)?;
    let mut certificates = Vec::with_capacity(entries.len());
    for (key, id) in entries {
        let id =
            String::from_utf8(id).map_err(|_| format!("the index entry {key:?} is corrupt"))?;
        let certificate: Certificate = get(stub, &cert_key(&id))?
            .ok_or_else(|| format!("the index entry {key:?} names {id}, which does not exist"))?;
        certificates.push(certificate);
    }
    Ok(to_json(&certificates))
}

fn by_period(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
    let args = expect_args(args, &["from", "to"], "ByPeriod")?;
    let from = period("from", &args[0])?;
    let to = period("to", &args[1])?;
    if to < from {
        return Err(format!("the range [{from}, {to}) ends before it starts"));
    }
    // Ids start with `GO-<period, 12 digits>-`, so the period orders the keys.
    let rows = stub
        .get_state_by_range(
            &cert_key(&format!("GO-{from:012}")),
            &cert_key(&format!("GO-{to:012}")),
        )
        .map_err(state)?;
    let certificates = rows
        .into_iter()
        .map(|(key, bytes)| {
            serde_json::from_slice::<Certificate>(&bytes)
                .map_err(|e| format!("the stored record {key} is corrupt: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(to_json(&certificates))
}

/// Whether the creator's certificate has the `admin` organizational unit.
fn creator_is_admin(stub: &ChaincodeStub<'_>) -> Result<bool, String> {
    let identity = msp::SerializedIdentity::decode(stub.creator())
        .map_err(|e| format!("the creator does not decode: {e}"))?;
    let certificate = gridledger_identity::Certificate::from_pem(&identity.id_bytes)
        .map_err(|e| format!("the creator's certificate does not parse: {e}"))?;
    Ok(certificate
        .organizational_units
        .iter()
        .any(|ou| ou.eq_ignore_ascii_case("admin")))
}

/// Checks that the creator holds `account`: a prosumer its `<MSP>:<POD>`, an organization's
/// admin its `<MSP>`; a meter holds nothing. `what` names the action for the message.
fn require_holder(stub: &ChaincodeStub<'_>, account: &str, what: &str) -> Result<(), String> {
    if let Some(meter) = stub.attribute(METER_ATTRIBUTE) {
        return Err(format!(
            "meter {meter} holds no certificates and may not {what}"
        ));
    }
    let msp_id = stub.creator_msp_id();
    let prosumer = stub
        .attribute(POD_ATTRIBUTE)
        .map(|pod| format!("{msp_id}:{pod}"));
    if prosumer.as_deref() == Some(account) {
        return Ok(());
    }
    let admin = creator_is_admin(stub)?;
    if admin && account == msp_id {
        return Ok(());
    }
    let held: Vec<String> = prosumer
        .into_iter()
        .chain(admin.then(|| msp_id.to_owned()))
        .collect();
    let held = if held.is_empty() {
        "no account".to_string()
    } else {
        held.join(" and ")
    };
    Err(format!(
        "only the owner {account} may {what}; the creator holds {held}"
    ))
}

/// Checks that `certificate` is active and unexpired at the transaction's time.
fn require_live(
    stub: &ChaincodeStub<'_>,
    certificate: &Certificate,
    what: &str,
) -> Result<(), String> {
    if let Some(c) = &certificate.cancellation {
        return Err(format!(
            "certificate {} was cancelled at {} for {} (tx {}) and cannot {what}",
            certificate.id, c.cancelled_at, c.beneficiary, c.tx_id
        ));
    }
    if certificate.status != ACTIVE {
        return Err(format!(
            "certificate {} is {} and cannot {what}",
            certificate.id, certificate.status
        ));
    }
    let at = now(stub)?;
    if at >= certificate.expires_at {
        return Err(format!(
            "certificate {} expired at {}; the transaction is at {at}, too late to {what}",
            certificate.id, certificate.expires_at
        ));
    }
    Ok(())
}

impl Chaincode for GuaranteesOfOrigin {
    fn invoke(&self, stub: &mut ChaincodeStub<'_>) -> protos::Response {
        let (function, args) = stub.get_function_and_parameters();
        let outcome: Outcome = match function.as_str() {
            "IssueCertificates" => self.issue(stub, &args),
            "Transfer" => transfer(stub, &args),
            "Cancel" => cancel(stub, &args),
            "GetCertificate" => expect_args(&args, &["id"], "GetCertificate")
                .and_then(|a| load(stub, a[0].trim()))
                .map(|c| to_json(&c)),
            "ByOwner" => expect_args(&args, &["account"], "ByOwner").and_then(|a| {
                let account = a[0].trim();
                parse_account(account)?;
                by_index(stub, OWNER_INDEX, account)
            }),
            "ByDevice" => expect_args(&args, &["device"], "ByDevice").and_then(|a| {
                let device = a[0].trim();
                check_device(device)?;
                by_index(stub, DEVICE_INDEX, device)
            }),
            "ByPeriod" => by_period(stub, &args),
            "GetCertified" => {
                expect_args(&args, &["period", "account"], "GetCertified").and_then(|a| {
                    let period = period("period", &a[0])?;
                    let account = a[1].trim();
                    parse_account(account)?;
                    get::<Certified>(stub, &certified_key(period, account))?
                        .map(|c| to_json(&c))
                        .ok_or_else(|| {
                            format!("nothing is certified for {account} in period {period}")
                        })
                })
            }
            other => Err(format!(
                "function {other:?} does not exist in certs (IssueCertificates, Transfer, Cancel, GetCertificate, ByOwner, ByDevice, ByPeriod, GetCertified)"
            )),
        };
        match outcome {
            Ok(payload) => success(payload),
            Err(message) => error(message),
        }
    }
}

impl GuaranteesOfOrigin {
    /// Only the DSO's operators issue: its MSP, and not one of its meters.
    fn require_dso(&self, stub: &ChaincodeStub<'_>) -> Result<(), String> {
        if stub.creator_msp_id() != self.dso_msp_id {
            return Err(format!(
                "only the DSO ({}) may issue certificates, not {}",
                self.dso_msp_id,
                stub.creator_msp_id()
            ));
        }
        if let Some(meter) = stub.attribute(METER_ATTRIBUTE) {
            return Err(format!(
                "meter {meter} may not issue certificates: only the DSO's operators may"
            ));
        }
        Ok(())
    }

    fn issue(&self, stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
        let args = expect_args(
            args,
            &["period", "account", "device", "technology"],
            "IssueCertificates",
        )?;
        self.require_dso(stub)?;
        let period = period("period", &args[0])?;
        let account = args[1].trim();
        let pod = parse_account(account)?.ok_or_else(|| {
            format!(
                "certificates are issued to a producer's account <MSP>:<POD>, not to {account:?}"
            )
        })?;
        let device = args[2].trim();
        check_device(device)?;
        let technology = args[3].trim();
        check_technology(technology)?;
        let issued_at = now(stub)?;
        let period_end = period + PERIOD_SECONDS;
        let expires_at = period_end + LIFETIME_SECONDS;
        if issued_at >= expires_at {
            return Err(format!(
                "certificates for period {period} would have expired at {expires_at}; the transaction is at {issued_at}"
            ));
        }
        let binding_key = device_binding_key(device);
        match get::<DeviceBinding>(stub, &binding_key)? {
            Some(binding) if binding.account != account => {
                return Err(format!(
                    "device {device} produces for {}, not {account}",
                    binding.account
                ));
            }
            Some(binding) if binding.technology != technology => {
                return Err(format!(
                    "device {device} is {}, not {technology}",
                    binding.technology
                ));
            }
            Some(_) => {}
            None => put(
                stub,
                &binding_key,
                &DeviceBinding {
                    device: device.to_owned(),
                    account: account.to_owned(),
                    technology: technology.to_owned(),
                },
            )?,
        }
        let attestation = attestation(stub, period, account)?;
        let key = certified_key(period, account);
        let mut record = get::<Certified>(stub, &key)?.unwrap_or_else(|| Certified {
            account: account.to_owned(),
            period,
            export_wh: attestation.export_wh,
            certified_wh: 0,
            uncertified_wh: attestation.export_wh,
            certificates: 0,
        });
        record.export_wh = attestation.export_wh;
        let left = attestation
            .export_wh
            .checked_sub(record.certified_wh)
            .ok_or_else(|| {
                format!(
                    "{account} has {} Wh certified in period {period}, more than the {} Wh attested",
                    record.certified_wh, attestation.export_wh
                )
            })?;
        let certifiable = left / WH_PER_CERTIFICATE;
        if certifiable == 0 {
            return Err(format!(
                "nothing left to certify for {account} in period {period}: {} Wh attested, {} Wh certified, {left} Wh left (a certificate is {WH_PER_CERTIFICATE} Wh)",
                attestation.export_wh, record.certified_wh
            ));
        }
        let count = certifiable.min(MAX_CERTIFICATES_PER_ISSUE);
        let issuer = self.dso_msp_id.clone();
        let tx_id = stub.tx_id().to_owned();
        let mut issued = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for n in record.certificates + 1..=record.certificates + count {
            let certificate = Certificate {
                id: certificate_id(period, account, n),
                energy_wh: WH_PER_CERTIFICATE,
                device: device.to_owned(),
                pod: pod.to_owned(),
                account: account.to_owned(),
                period_start: period,
                period_end,
                technology: technology.to_owned(),
                issuer: issuer.clone(),
                issued_at,
                issue_tx_id: tx_id.clone(),
                expires_at,
                owner: account.to_owned(),
                status: ACTIVE.to_string(),
                cancellation: None,
            };
            let id = certificate.id.as_bytes();
            stub.put_state(&owner_key(account, &certificate.id), id)
                .map_err(state)?;
            stub.put_state(&device_key(device, &certificate.id), id)
                .map_err(state)?;
            put(stub, &cert_key(&certificate.id), &certificate)?;
            issued.push(certificate.id);
        }
        record.certificates += count;
        record.certified_wh += count * WH_PER_CERTIFICATE;
        record.uncertified_wh = attestation.export_wh - record.certified_wh;
        put(stub, &key, &record)?;
        let payload = to_json(&Issuance {
            certified: record,
            issued,
        });
        stub.set_event("CertificatesIssued", &payload)
            .map_err(state)?;
        Ok(payload)
    }
}

/// `energy`'s attestation of `account` for `period`, read on this channel.
fn attestation(
    stub: &mut ChaincodeStub<'_>,
    period: i64,
    account: &str,
) -> Result<Attestation, String> {
    let response = stub
        .invoke_chaincode(
            ENERGY_CHAINCODE,
            &[
                b"GetAttestation".to_vec(),
                period.to_string().into_bytes(),
                account.as_bytes().to_vec(),
            ],
            "",
        )
        .map_err(|e| format!("reading the attestation of {account} for period {period}: {e}"))?;
    if response.status != OK {
        return Err(format!(
            "certificates are issued only against attested export: {}",
            response.message
        ));
    }
    let attestation: Attestation = serde_json::from_slice(&response.payload)
        .map_err(|e| format!("{ENERGY_CHAINCODE} answered no attestation: {e}"))?;
    if attestation.account != account || attestation.period != period {
        return Err(format!(
            "{ENERGY_CHAINCODE} answered the attestation of {} for period {}, not of {account} for {period}",
            attestation.account, attestation.period
        ));
    }
    Ok(attestation)
}

fn transfer(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
    let args = expect_args(args, &["id", "to_account"], "Transfer")?;
    let id = args[0].trim();
    let to = args[1].trim();
    parse_account(to)?;
    let mut certificate = load(stub, id)?;
    require_holder(stub, &certificate.owner, &format!("transfer {id}"))?;
    require_live(stub, &certificate, "be transferred")?;
    if certificate.owner == to {
        return Err(format!("certificate {id} is already held by {to}"));
    }
    stub.del_state(&owner_key(&certificate.owner, id))
        .map_err(state)?;
    stub.put_state(&owner_key(to, id), id.as_bytes())
        .map_err(state)?;
    certificate.owner = to.to_owned();
    put(stub, &cert_key(id), &certificate)?;
    Ok(to_json(&certificate))
}

fn cancel(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
    let args = expect_args(args, &["id", "beneficiary", "purpose"], "Cancel")?;
    let id = args[0].trim();
    let beneficiary = free_text("beneficiary", &args[1], MAX_BENEFICIARY_BYTES)?;
    let purpose = free_text("purpose", &args[2], MAX_PURPOSE_BYTES)?;
    let mut certificate = load(stub, id)?;
    require_holder(stub, &certificate.owner, &format!("cancel {id}"))?;
    require_live(stub, &certificate, "be cancelled")?;
    certificate.status = CANCELLED.to_string();
    certificate.cancellation = Some(Cancellation {
        beneficiary: beneficiary.to_owned(),
        purpose: purpose.to_owned(),
        cancelled_at: now(stub)?,
        tx_id: stub.tx_id().to_owned(),
    });
    put(stub, &cert_key(id), &certificate)?;
    Ok(to_json(&certificate))
}
