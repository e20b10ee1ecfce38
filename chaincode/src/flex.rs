//! `flex`: demand response on the market channel — the DSO's flexibility requests, the
//! capacity prosumers and aggregators commit to them, and the DSO's attestation of what each
//! delivered, measured against a baseline computed from the meter history of the PODs behind
//! the commitment.
//!
//! A request asks for a reduction of the load in one of the DSO's feeder zones (a name such as
//! `lateral-25-32`) during one delivery period (15 minutes, as in [`crate::energy`]), at a
//! price per kWh delivered and a penalty per kWh committed but not delivered. Prosumers commit
//! capacity in kW for their own POD, aggregators for a pool of member PODs; after the period
//! the DSO attests each commitment's delivery. Remuneration
//! and penalties move in the payment token of `energy` (its `PayFlex`), which reads the
//! delivery record from here.
//!
//! | function | who | args |
//! |---|---|---|
//! | `PublishRequest` | the DSO's operators, before gate closure | request_id, zone, period, reduction_kw, price_cents_per_kwh, penalty_cents_per_kwh |
//! | `CommitCapacity` | a prosumer (its `pod`), before gate closure | request_id, period, kw |
//! | `JoinAggregator` | a prosumer (its `pod`) | aggregator_account |
//! | `LeaveAggregator` | a prosumer (its `pod`) | — |
//! | `CommitAggregate` | an aggregator (its `aggregator`), before gate closure | request_id, period, kw, member PODs (comma-separated) |
//! | `AttestDelivery` | the DSO's operators, after the period | request_id, period, account |
//! | `GetRequest` | anyone | request_id, period |
//! | `GetCommitments` | anyone | request_id, period |
//! | `GetDelivery` | anyone | request_id, period, account |
//! | `GetMembership` | anyone | prosumer account |
//!
//! Rules. Units are integers: power in kW, energy in Wh, money in cents. A request is named by
//! its id and period. Publishing, and committing to it, close
//! [`GATE_CLOSURE_SECONDS`](crate::energy::GATE_CLOSURE_SECONDS) before the period starts, by
//! the transaction's timestamp. The DSO's operators are identities of the DSO's MSP without a
//! `meter` attribute. A prosumer's account is `<MSP>:<POD>`, from its
//! certificate's `pod` attribute, as in `energy`. An account commits to a request once (a
//! second commitment is refused, not added); the commitments' total never exceeds the
//! requested reduction — the total is kept in the request record, so concurrent commitments to
//! one request conflict under MVCC and the cap holds. `AttestDelivery` is possible from the
//! end of the period (timestamp ≥ period + [`PERIOD_SECONDS`]), once per request and account,
//! and only for an account that committed. Whether a committing POD lies in the request's zone
//! is the DSO's knowledge (its feeder model is private), not the chaincode's: a commitment from
//! outside the zone is recorded, and its baseline delivery counts like any other.
//!
//! ## Aggregators
//!
//! An aggregator is an identity of a market organization whose certificate carries an
//! [`AGGREGATOR_ATTRIBUTE`] attribute (`aggregator=<name>`) and neither a `pod` nor a `meter`
//! attribute; `gridledger up` issues one per market organization (`Aggregator-R` with
//! `aggregator=AGG-R`, `Aggregator-C` with `AGG-C`). Its account — where remuneration is paid
//! and penalties are taken — is `<MSP>:<name>`. The ledger cannot tell which PODs an
//! aggregator represents, so each member says so itself: a prosumer signs `JoinAggregator`
//! naming an aggregator account of its own organization (the organization that supplies the POD
//! and whose meter channel holds its readings), recorded under `member/<prosumer account>`; a
//! prosumer has at most one aggregator at a time (joining another replaces the first), and
//! `LeaveAggregator` ends it. `CommitAggregate` lists the member PODs (at most
//! [`MAX_MEMBERS`], each once); each must have joined this aggregator when it commits — a
//! later change of membership does not alter a commitment made. A POD counts once per
//! request: the first commitment that includes it, its own or an aggregate, claims it
//! (`claim/<period>/<request_id>/<prosumer account>`), and any later commitment including it —
//! its own `CommitCapacity` or another aggregate — is refused.
//!
//! ## Baseline and delivery
//!
//! All in Wh, over the period's 15-minute slot. A slot's *net import* is the sum over every
//! meter at the POD of import − export (negative when the POD exports). It is read from the
//! POD's readings on its organization's meter channel (the channel registered in `energy`,
//! `GetMeterChannel`), with `meter`'s `GetPodReadings` — a read-only cross-channel call, so
//! nothing of the meter channel enters the market's read-write set and only the figures below
//! are stored.
//!
//! - **baseline**: the same slot on the last [`BASELINE_DAYS`] days with a reading — looking back
//!   at most [`BASELINE_LOOKBACK_DAYS`] days, a day without a reading for the slot is skipped —
//!   at least [`MIN_BASELINE_DAYS`] needed, else the attestation is refused. The baseline is
//!   the average of their net imports rounded down to a whole Wh (towards −∞).
//! - **actual**: the net import of the period's slot; refused when the POD has no reading.
//! - **delivered** = max(0, baseline − actual).
//! - **committed** Wh = committed kW × 250 (a kW held for 15 minutes).
//! - **credited** = min(delivered, committed); **shortfall** = committed − credited.
//! - **remuneration** = credited × price / 1000 cents, **penalty** = shortfall × penalty price
//!   / 1000 cents, both rounded down: the DSO never pays more than the credited energy is
//!   worth, and never charges more than the shortfall costs.
//!
//! For an aggregate, each member's baseline (rounded down per member) and actual are computed
//! as above, each member needing its own reading and its own three days, else the attestation
//! is refused; the pool's baseline and actual are their sums, and delivered = max(0, Σ
//! baseline − Σ actual): a member that uses more than its baseline offsets the others, since
//! the aggregator answers for its pool as a whole. The rest follows as for a prosumer, with
//! the aggregator's commitment.
//!
//! The delivery record keeps the baseline, the slot starts of the days it used (per member for
//! an aggregate), the actual, and every derived figure, so anyone on the market channel sees the amounts, and the two
//! organizations of the meter channel (the DSO and the account's) can recompute them from the
//! readings. The endorsers of an attestation run the computation on their own copy of the meter
//! channel, so it is endorsed by the DSO's peer and the account's organization's peer, the
//! meter channel's members. A reading amended after the attestation leaves its amendment record
//! (with the previous values) on the meter channel, so a recomputation can use the values the
//! attestation saw.
//!
//! Keys: `request/<period, 12 digits>/<request_id>`,
//! `commitment/<period>/<request_id>/<account>`, `delivery/<period>/<request_id>/<account>`,
//! `claim/<period>/<request_id>/<prosumer account>` and `member/<prosumer account>`.

use serde::{Deserialize, Serialize};

use gridledger_proto::protos;

use crate::arguments::{Outcome, check_name, expect_args, get, put, state, to_json};
use crate::energy::{
    MAX_PRICE_CENTS_PER_KWH, METER_CHAINCODE, PERIOD_SECONDS, before_gate_closure, check_id, now,
    number, period, prosumer_account, require_dso,
};
use crate::meter::Reading;
use crate::stub::ChaincodeStub;
use crate::{Chaincode, error, success};

/// The `energy` chaincode's name on the market channel (where the meter channels are
/// registered).
pub const ENERGY_CHAINCODE: &str = "energy";
/// The baseline averages the same slot on this many days with a reading.
pub const BASELINE_DAYS: usize = 5;
/// An attestation needs at least this many of them.
pub const MIN_BASELINE_DAYS: usize = 3;
/// Days without a reading are skipped, looking back at most this many days.
pub const BASELINE_LOOKBACK_DAYS: i64 = 10;
/// Seconds in a day: the baseline's slots are this far apart.
pub const DAY_SECONDS: i64 = 86_400;
/// Wh per kW over one period (15 minutes).
pub const WH_PER_KW: u64 = 250;
/// The largest reduction one request asks for, or one commitment offers, kW (40 MW: what
/// 10 MWh in 15 minutes is, no distribution feeder's load).
pub const MAX_KW: u64 = 40_000;
/// The certificate attribute naming an aggregator identity.
pub const AGGREGATOR_ATTRIBUTE: &str = "aggregator";
/// The most member PODs one aggregate commitment lists (its attestation reads up to
/// 1 + [`BASELINE_LOOKBACK_DAYS`] slots of each).
pub const MAX_MEMBERS: usize = 64;

/// The `flex` chaincode; `dso_msp_id` is the organization that requests and attests.
#[derive(Debug, Clone)]
pub struct DemandResponse {
    /// The DSO's MSP id.
    pub dso_msp_id: String,
}

/// A flexibility request: a load reduction in a zone during a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Its id.
    pub id: String,
    /// The DSO that published it (its MSP id).
    pub dso: String,
    /// The feeder zone.
    pub zone: String,
    /// Delivery period start.
    pub period: i64,
    /// Reduction asked for, kW.
    pub reduction_kw: u64,
    /// Remuneration, cents per kWh delivered.
    pub price_cents_per_kwh: u64,
    /// Penalty, cents per kWh committed and not delivered.
    pub penalty_cents_per_kwh: u64,
    /// Capacity committed so far, kW.
    pub committed_kw: u64,
}

/// A prosumer's or an aggregator's commitment to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commitment {
    /// The request.
    pub request_id: String,
    /// Delivery period start.
    pub period: i64,
    /// The committing account, `<MSP>:<POD>` or `<MSP>:<aggregator>`.
    pub account: String,
    /// Its point of delivery; empty for an aggregator's commitment.
    #[serde(default)]
    pub pod: String,
    /// Capacity committed, kW.
    pub kw: u64,
    /// An aggregator's member PODs (of its organization); empty for a prosumer's commitment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

/// A prosumer's authorisation of an aggregator to commit its POD's flexibility.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The prosumer's account, `<MSP>:<POD>`.
    pub account: String,
    /// Its POD.
    pub pod: String,
    /// The aggregator's account, `<MSP>:<aggregator>`.
    pub aggregator: String,
    /// The transaction that recorded it.
    pub tx_id: String,
    /// Its timestamp, Unix seconds.
    pub joined_at: i64,
}

/// One member POD's figures in an aggregate's delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDelivery {
    /// The POD.
    pub pod: String,
    /// Slot starts of the days its baseline averages, newest first.
    pub baseline_days: Vec<i64>,
    /// Its baseline net import, Wh (rounded down).
    pub baseline_wh: i64,
    /// Its net import in the period, Wh.
    pub actual_wh: i64,
}

/// The DSO's attestation of one commitment's delivery, and the amounts due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The request.
    pub request_id: String,
    /// Delivery period start.
    pub period: i64,
    /// The account.
    pub account: String,
    /// The meter channel the readings were read on.
    pub meter_channel: String,
    /// Capacity committed, kW.
    pub committed_kw: u64,
    /// The same in energy over the period, Wh (kW × 250).
    pub committed_wh: u64,
    /// Slot starts of the days the baseline averages, newest first (empty for an aggregate:
    /// see `members`).
    pub baseline_days: Vec<i64>,
    /// Baseline net import, Wh (rounded down; for an aggregate the sum of its members').
    pub baseline_wh: i64,
    /// Net import in the period, Wh (for an aggregate the sum of its members').
    pub actual_wh: i64,
    /// An aggregate's members' figures; empty for a prosumer's commitment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberDelivery>,
    /// max(0, baseline − actual), Wh.
    pub delivered_wh: u64,
    /// min(delivered, committed), Wh: what is remunerated.
    pub credited_wh: u64,
    /// committed − credited, Wh: what is penalised.
    pub shortfall_wh: u64,
    /// The request's price, cents per kWh.
    pub price_cents_per_kwh: u64,
    /// The request's penalty, cents per kWh.
    pub penalty_cents_per_kwh: u64,
    /// credited × price / 1000, rounded down, cents.
    pub remuneration_cents: u64,
    /// shortfall × penalty / 1000, rounded down, cents.
    pub penalty_cents: u64,
}

fn request_key(period: i64, id: &str) -> String {
    format!("request/{period:012}/{id}")
}

fn commitment_key(period: i64, id: &str, account: &str) -> String {
    format!("commitment/{period:012}/{id}/{account}")
}

fn delivery_key(period: i64, id: &str, account: &str) -> String {
    format!("delivery/{period:012}/{id}/{account}")
}

fn claim_key(period: i64, id: &str, prosumer: &str) -> String {
    format!("claim/{period:012}/{id}/{prosumer}")
}

fn member_key(prosumer: &str) -> String {
    format!("member/{prosumer}")
}

/// Request ids and zones name keys: letters, digits, `.`, `_`, `-`, at most 128.
fn check_plain(what: &str, text: &str) -> Result<(), String> {
    check_name(what, text, 128, b"")
}

fn load_request(stub: &mut ChaincodeStub<'_>, id: &str, period: i64) -> Result<Request, String> {
    get(stub, &request_key(period, id))?
        .ok_or_else(|| format!("no flexibility request {id} for period {period}"))
}

impl Chaincode for DemandResponse {
    fn invoke(&self, stub: &mut ChaincodeStub<'_>) -> protos::Response {
        let (function, args) = stub.get_function_and_parameters();
        let outcome: Outcome = match function.as_str() {
            "PublishRequest" => self.publish_request(stub, &args),
            "CommitCapacity" => commit_capacity(stub, &args),
            "JoinAggregator" => join_aggregator(stub, &args),
            "LeaveAggregator" => leave_aggregator(stub, &args),
            "CommitAggregate" => commit_aggregate(stub, &args),
            "AttestDelivery" => self.attest_delivery(stub, &args),
            "GetRequest" => expect_args(&args, &["request_id", "period"], "GetRequest")
                .and_then(|a| load_request(stub, a[0].trim(), period(&a[1])?))
                .map(|r| to_json(&r)),
            "GetCommitments" => get_commitments(stub, &args).map(|c| to_json(&c)),
            "GetDelivery" => get_delivery(stub, &args),
            "GetMembership" => get_membership(stub, &args),
            other => Err(format!(
                "function {other:?} does not exist in flex (PublishRequest, CommitCapacity, JoinAggregator, LeaveAggregator, CommitAggregate, AttestDelivery, GetRequest, GetCommitments, GetDelivery, GetMembership)"
            )),
        };
        match outcome {
            Ok(payload) => success(payload),
            Err(message) => error(message),
        }
    }
}

impl DemandResponse {
    fn publish_request(&self, stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
        let args = expect_args(
            args,
            &[
                "request_id",
                "zone",
                "period",
                "reduction_kw",
                "price_cents_per_kwh",
                "penalty_cents_per_kwh",
            ],
            "PublishRequest",
        )?;
        let id = args[0].trim();
        check_plain("request id", id)?;
        let zone = args[1].trim();
        check_plain("zone", zone)?;
        let period = period(&args[2])?;
        let reduction_kw = number("reduction", &args[3], MAX_KW)?;
        if reduction_kw == 0 {
            return Err("a request must ask for some reduction".to_string());
        }
        let price = number("price", &args[4], MAX_PRICE_CENTS_PER_KWH)?;
        let penalty = number("penalty", &args[5], MAX_PRICE_CENTS_PER_KWH)?;
        require_dso(&self.dso_msp_id, stub, "publish flexibility requests")?;
        before_gate_closure(stub, period)?;
        let key = request_key(period, id);
        if get::<Request>(stub, &key)?.is_some() {
            return Err(format!(
                "flexibility request {id} for period {period} already exists"
            ));
        }
        let request = Request {
            id: id.to_owned(),
            dso: self.dso_msp_id.clone(),
            zone: zone.to_owned(),
            period,
            reduction_kw,
            price_cents_per_kwh: price,
            penalty_cents_per_kwh: penalty,
            committed_kw: 0,
        };
        put(stub, &key, &request)?;
        let payload = to_json(&request);
        stub.set_event("FlexRequest", &payload).map_err(state)?;
        Ok(payload)
    }

    fn attest_delivery(&self, stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
        let args = expect_args(args, &["request_id", "period", "account"], "AttestDelivery")?;
        let id = args[0].trim();
        check_plain("request id", id)?;
        let period = period(&args[1])?;
        let account = args[2].trim();
        check_id("account", account)?;
        require_dso(&self.dso_msp_id, stub, "attest demand-response delivery")?;
        let at = now(stub)?;
        if at < period + PERIOD_SECONDS {
            return Err(format!(
                "period {period} is not over at the transaction's time {at}"
            ));
        }
        let request = load_request(stub, id, period)?;
        let commitment: Commitment =
            get(stub, &commitment_key(period, id, account))?.ok_or_else(|| {
                format!("{account} committed no capacity to request {id} for period {period}")
            })?;
        let key = delivery_key(period, id, account);
        if get::<Delivery>(stub, &key)?.is_some() {
            return Err(format!(
                "the delivery of {account} for request {id} in period {period} is already attested"
            ));
        }
        let (msp_id, pod) = account
            .split_once(':')
            .ok_or_else(|| format!("account {account:?} is not <MSP>:<POD>"))?;
        let channel = meter_channel(stub, msp_id)?;
        let (baseline_days, baseline_wh, actual_wh, members) = if commitment.members.is_empty() {
            let figures = pod_figures(stub, &channel, pod, period)?;
            (
                figures.baseline_days,
                figures.baseline_wh,
                figures.actual_wh,
                Vec::new(),
            )
        } else {
            let mut members = Vec::with_capacity(commitment.members.len());
            let (mut baseline_wh, mut actual_wh) = (0i64, 0i64);
            for member in &commitment.members {
                let figures = pod_figures(stub, &channel, member, period)?;
                baseline_wh = baseline_wh
                    .checked_add(figures.baseline_wh)
                    .ok_or_else(|| format!("the baselines of {account}'s members overflow"))?;
                actual_wh = actual_wh
                    .checked_add(figures.actual_wh)
                    .ok_or_else(|| format!("the readings of {account}'s members overflow"))?;
                members.push(figures);
            }
            (Vec::new(), baseline_wh, actual_wh, members)
        };
        let delivered_wh = u64::try_from(baseline_wh.saturating_sub(actual_wh)).unwrap_or(0);
        let committed_wh = commitment.kw * WH_PER_KW;
        let credited_wh = delivered_wh.min(committed_wh);
        let shortfall_wh = committed_wh - credited_wh;
        let delivery = Delivery {
            request_id: id.to_owned(),
            period,
            account: account.to_owned(),
            meter_channel: channel,
            committed_kw: commitment.kw,
            committed_wh,
            baseline_days,
            baseline_wh,
            actual_wh,
            members,
            delivered_wh,
            credited_wh,
            shortfall_wh,
            price_cents_per_kwh: request.price_cents_per_kwh,
            penalty_cents_per_kwh: request.penalty_cents_per_kwh,
            remuneration_cents: credited_wh * request.price_cents_per_kwh / 1000,
            penalty_cents: shortfall_wh * request.penalty_cents_per_kwh / 1000,
        };
        put(stub, &key, &delivery)?;
        let payload = to_json(&delivery);
        stub.set_event("FlexDelivery", &payload).map_err(state)?;
        Ok(payload)
    }
}

fn commit_capacity(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
    let args = expect_args(args, &["request_id", "period", "kw"], "CommitCapacity")?;
    let id = args[0].trim();
    check_plain("request id", id)?;
    let period = period(&args[1])?;
    let kw = number("capacity", &args[2], MAX_KW)?;
    if kw == 0 {
        return Err("a commitment must offer some capacity".to_string());
    }
    let (account, pod) = prosumer_account(stub)?;
    before_gate_closure(stub, period)?;
    let mut request = load_request(stub, id, period)?;
    let key = commitment_key(period, id, &account);
    if get::<Commitment>(stub, &key)?.is_some() {
        return Err(format!(
            "{account} has already committed capacity to request {id}; one commitment per account"
        ));
    }
    claim(stub, period, id, &account, &account)?;
    reserve(&mut request, kw)?;
    let commitment = Commitment {
        request_id: id.to_owned(),
        period,
        account,
        pod,
        kw,
        members: Vec::new(),
    };
    put(stub, &request_key(period, id), &request)?;
    put(stub, &key, &commitment)?;
    Ok(to_json(&commitment))
}

/// Adds `kw` to the request's committed capacity, refusing more than is still open.
fn reserve(request: &mut Request, kw: u64) -> Result<(), String> {
    let open_kw = request.reduction_kw - request.committed_kw.min(request.reduction_kw);
    if kw > open_kw {
        return Err(format!(
            "request {} asks for {} kW and has {} kW committed: {kw} kW is above the {open_kw} kW still open",
            request.id, request.reduction_kw, request.committed_kw
        ));
    }
    request.committed_kw += kw;
    Ok(())
}

/// Records that `committer`'s commitment to request `id` counts the POD of `prosumer`, refusing
/// a POD another commitment already counts.
fn claim(
    stub: &mut ChaincodeStub<'_>,
    period: i64,
    id: &str,
    prosumer: &str,
    committer: &str,
) -> Result<(), String> {
    let key = claim_key(period, id, prosumer);
    if let Some(by) = stub.get_state(&key).map_err(state)? {
        let by = String::from_utf8_lossy(&by);
        return Err(format!(
            "{prosumer} is already counted in {by}'s commitment to request {id}; a POD counts once per request"
        ));
    }
    stub.put_state(&key, committer.as_bytes()).map_err(state)
}

/// The account of an aggregator creator: `<MSP>:<aggregator attribute>`.
fn aggregator_account(stub: &ChaincodeStub<'_>) -> Result<String, String> {
    let name = stub.attribute(AGGREGATOR_ATTRIBUTE).ok_or(
        "only an aggregator may commit for members: the creator's certificate has no `aggregator` attribute",
    )?;
    if stub.attribute("pod").is_some() || stub.attribute(crate::meter::METER_ATTRIBUTE).is_some() {
        return Err(format!(
            "aggregator {name}'s certificate also names a POD or a meter; an aggregator identity names neither"
        ));
    }
    check_plain("aggregator", name)?;
    Ok(format!("{}:{name}", stub.creator_msp_id()))
}

fn join_aggregator(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
    let args = expect_args(args, &["aggregator_account"], "JoinAggregator")?;
    let aggregator = args[0].trim();
    check_id("aggregator account", aggregator)?;
    let (account, pod) = prosumer_account(stub)?;
    let (msp_id, name) = aggregator
        .split_once(':')
        .ok_or_else(|| format!("aggregator account {aggregator:?} is not <MSP>:<aggregator>"))?;
    check_plain("aggregator", name)?;
    if msp_id != stub.creator_msp_id() {
        return Err(format!(
            "{account} may join only an aggregator of its own organization ({}), not {aggregator}: its readings are on that organization's meter channel",
            stub.creator_msp_id()
        ));
    }
    if name == pod {
        return Err(format!("{account} cannot be its own aggregator"));
    }
    let membership = Membership {
        account: account.clone(),
        pod,
        aggregator: aggregator.to_owned(),
        tx_id: stub.tx_id().to_owned(),
        joined_at: now(stub)?,
    };
    put(stub, &member_key(&account), &membership)?;
    Ok(to_json(&membership))
}

fn leave_aggregator(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
    expect_args(args, &[], "LeaveAggregator")?;
    let (account, _) = prosumer_account(stub)?;
    let key = member_key(&account);
    let membership: Membership =
        get(stub, &key)?.ok_or_else(|| format!("{account} has joined no aggregator"))?;
    stub.del_state(&key).map_err(state)?;
    Ok(to_json(&membership))
}

fn commit_aggregate(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
    let args = expect_args(
        args,
        &["request_id", "period", "kw", "members"],
        "CommitAggregate",
    )?;
    let id = args[0].trim();
    check_plain("request id", id)?;
    let period = period(&args[1])?;
    let kw = number("capacity", &args[2], MAX_KW)?;
    if kw == 0 {
        return Err("a commitment must offer some capacity".to_string());
    }
    let mut members: Vec<String> = Vec::new();
    for pod in args[3].split(',').map(str::trim) {
        check_id("member POD", pod)?;
        if pod.contains(':') {
            return Err(format!(
                "member {pod:?} should be a POD of the aggregator's organization, without its MSP"
            ));
        }
        if members.iter().any(|m| m == pod) {
            return Err(format!("member {pod} is listed twice"));
        }
        members.push(pod.to_owned());
    }
    if members.len() > MAX_MEMBERS {
        return Err(format!(
            "an aggregate lists at most {MAX_MEMBERS} member PODs, not {}",
            members.len()
        ));
    }
    let account = aggregator_account(stub)?;
    before_gate_closure(stub, period)?;
    let mut request = load_request(stub, id, period)?;
    let key = commitment_key(period, id, &account);
    if get::<Commitment>(stub, &key)?.is_some() {
        return Err(format!(
            "{account} has already committed capacity to request {id}; one commitment per account"
        ));
    }
    let msp_id = stub.creator_msp_id().to_owned();
    for pod in &members {
        let prosumer = format!("{msp_id}:{pod}");
        match get::<Membership>(stub, &member_key(&prosumer))? {
            Some(m) if m.aggregator == account => {}
            Some(m) => {
                return Err(format!(
                    "{prosumer} is a member of {}, not of {account}",
                    m.aggregator
                ));
            }
            None => {
                return Err(format!(
                    "{prosumer} is not a member of {account}: it has joined no aggregator (JoinAggregator)"
                ));
            }
        }
        claim(stub, period, id, &prosumer, &account)?;
    }
    reserve(&mut request, kw)?;
    let commitment = Commitment {
        request_id: id.to_owned(),
        period,
        account,
        pod: String::new(),
        kw,
        members,
    };
    put(stub, &request_key(period, id), &request)?;
    put(stub, &key, &commitment)?;
    Ok(to_json(&commitment))
}

fn get_membership(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
    let args = expect_args(args, &["account"], "GetMembership")?;
    let account = args[0].trim();
    check_id("account", account)?;
    get::<Membership>(stub, &member_key(account))?
        .map(|m| to_json(&m))
        .ok_or_else(|| format!("{account} has joined no aggregator"))
}

/// The baseline and actual of one POD for the slot at `period`, read on `channel` (the method in
/// the module doc).
fn pod_figures(
    stub: &mut ChaincodeStub<'_>,
    channel: &str,
    pod: &str,
    period: i64,
) -> Result<MemberDelivery, String> {
    let actual_wh = net_import(stub, channel, pod, period)?.ok_or_else(|| {
        format!("no meter at {pod} has a reading for period {period} on {channel}")
    })?;
    let mut baseline_days = Vec::with_capacity(BASELINE_DAYS);
    let mut baseline_sum: i64 = 0;
    for day in 1..=BASELINE_LOOKBACK_DAYS {
        if baseline_days.len() == BASELINE_DAYS {
            break;
        }
        let slot = period - day * DAY_SECONDS;
        if slot <= 0 {
            break;
        }
        if let Some(net) = net_import(stub, channel, pod, slot)? {
            baseline_days.push(slot);
            baseline_sum = baseline_sum
                .checked_add(net)
                .ok_or_else(|| format!("the readings of {pod} on {channel} overflow"))?;
        }
    }
    if baseline_days.len() < MIN_BASELINE_DAYS {
        return Err(format!(
            "the baseline of {pod} needs readings of the same slot on at least {MIN_BASELINE_DAYS} of the last {BASELINE_LOOKBACK_DAYS} days; {channel} has {}",
            baseline_days.len()
        ));
    }
    let days = i64::try_from(baseline_days.len()).expect("at most BASELINE_DAYS days");
    Ok(MemberDelivery {
        pod: pod.to_owned(),
        baseline_days,
        baseline_wh: baseline_sum.div_euclid(days),
        actual_wh,
    })
}

fn get_commitments(
    stub: &mut ChaincodeStub<'_>,
    args: &[String],
) -> Result<Vec<Commitment>, String> {
    let args = expect_args(args, &["request_id", "period"], "GetCommitments")?;
    let id = args[0].trim();
    check_plain("request id", id)?;
    let period = period(&args[1])?;
    load_request(stub, id, period)?;
    // `/` + 1 is `0`: the range holds exactly the keys under `commitment/<period>/<id>/`.
    let from = format!("commitment/{period:012}/{id}/");
    let to = format!("commitment/{period:012}/{id}0");
    stub.get_state_by_range(&from, &to)
        .map_err(state)?
        .into_iter()
        .map(|(key, bytes)| {
            serde_json::from_slice(&bytes)
                .map_err(|e| format!("the stored commitment {key:?} is corrupt: {e}"))
        })
        .collect()
}

fn get_delivery(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
    let args = expect_args(args, &["request_id", "period", "account"], "GetDelivery")?;
    let id = args[0].trim();
    check_plain("request id", id)?;
    let period = period(&args[1])?;
    let account = args[2].trim();
    check_id("account", account)?;
    get::<Delivery>(stub, &delivery_key(period, id, account))?
        .map(|d| to_json(&d))
        .ok_or_else(|| {
            format!("the delivery of {account} for request {id} in period {period} is not attested")
        })
}

/// The meter channel `energy` has registered for `msp_id` (a same-channel call).
fn meter_channel(stub: &mut ChaincodeStub<'_>, msp_id: &str) -> Result<String, String> {
    let response = stub
        .invoke_chaincode(
            ENERGY_CHAINCODE,
            &[b"GetMeterChannel".to_vec(), msp_id.as_bytes().to_vec()],
            "",
        )
        .map_err(|e| format!("looking up the meter channel of {msp_id}: {e}"))?;
    if response.status != crate::OK {
        return Err(format!(
            "looking up the meter channel of {msp_id}: {}",
            response.message
        ));
    }
    String::from_utf8(response.payload)
        .map_err(|_| format!("the meter channel registered for {msp_id} is not UTF-8"))
}

/// The net import (Σ import − Σ export over the POD's meters) of `pod` in the slot starting at
/// `slot`, read on `channel`; `None` when no meter at the POD has a reading for it.
fn net_import(
    stub: &mut ChaincodeStub<'_>,
    channel: &str,
    pod: &str,
    slot: i64,
) -> Result<Option<i64>, String> {
    let response = stub
        .invoke_chaincode(
            METER_CHAINCODE,
            &[
                b"GetPodReadings".to_vec(),
                pod.as_bytes().to_vec(),
                slot.to_string().into_bytes(),
            ],
            channel,
        )
        .map_err(|e| format!("reading the meters of {pod} on {channel}: {e}"))?;
    if response.status != crate::OK {
        return Err(format!(
            "reading the meters of {pod} on {channel}: {}",
            response.message
        ));
    }
    let readings: Vec<Reading> = serde_json::from_slice(&response.payload)
        .map_err(|e| format!("the meter readings of {pod} on {channel} are not readings: {e}"))?;
    if readings.is_empty() {
        return Ok(None);
    }
    // Each reading is at most meter::MAX_INTERVAL_WH, far from overflowing i64; a stored value
    // beyond it is refused rather than wrapped.
    let mut net: i64 = 0;
    for r in &readings {
        let import = i64::try_from(r.import_wh)
            .map_err(|_| format!("meter {} reports an impossible import", r.meter))?;
        let export = i64::try_from(r.export_wh)
            .map_err(|_| format!("meter {} reports an impossible export", r.meter))?;
        net = net
            .checked_add(import - export)
            .ok_or_else(|| format!("the readings of {pod} on {channel} overflow"))?;
    }
    Ok(Some(net))
}
