//! `energy`: the market channel's contracts — payment balances, offers, bids and trades with
//! escrowed payment, and after delivery the three contracts of the energy-blockchain
//! literature: mint e-tokens for metered export, move them to buyers against payment, burn them
//! on consumption.
//!
//! Units are integers: energy in Wh, money in cents of the payment token. Accounts are
//! `<MSP>:<POD>` — a prosumer's organization and point of delivery — so a creator's account
//! follows from its certificate: its MSP and its `pod` attribute. Nothing in the market carries a
//! meter reading: the DSO attests metered quantities with a salted commitment to the readings,
//! and the attestation is checked against the readings themselves — see "Attestations" below.
//!
//! | function | who | args |
//! |---|---|---|
//! | `RegisterMeterChannel` | an admin of a market organization | channel |
//! | `IssuePayment` | an admin of the account's organization | account, cents |
//! | `PostOffer` | a prosumer (its `pod`) | offer_id, period, energy_wh, price_cents_per_kwh |
//! | `CancelOffer` | the offer's seller | offer_id, period |
//! | `AcceptOffer` | a prosumer (its `pod`), not the seller | trade_id, offer_id, period, energy_wh |
//! | `PostBid` | a prosumer (its `pod`) | bid_id, period, energy_wh, price_cents_per_kwh |
//! | `CancelBid` | the bid's buyer | bid_id, period |
//! | `AcceptBid` | a prosumer (its `pod`), not the buyer | trade_id, bid_id, period, energy_wh |
//! | `Attest` | the DSO, after the period; transient `salt` | period, account, export_wh, import_wh |
//! | `Settle` | the DSO, once both sides are attested | trade_id, period |
//! | `Burn` | the DSO, once the account is attested | period, account |
//! | `PayFlex` | the DSO, once `flex` attested the delivery | request_id, period, account |
//! | `Balance` | anyone | account |
//! | `GetTrade` / `GetOffer` / `GetBid` | anyone | id, period |
//! | `GetAttestation` | anyone | period, account |
//! | `Supply` | anyone | – (all accounts) or account |
//! | `GetMeterChannel` | anyone | msp_id |
//! | `GetFlexPayment` | anyone | request_id, period, account |
//!
//! Rules: trading for a delivery period (a Unix time on a 15-minute boundary) closes
//! [`GATE_CLOSURE_SECONDS`] before it starts, by the transaction's timestamp. Accepting an offer
//! moves the price (rounded up to a cent) from the buyer's balance into the trade's escrow.
//! Posting a bid moves its largest payment (rounded up to a cent) from the buyer's balance into
//! the bid's escrow, so an accepted bid is always paid for; accepting it (all or part) makes the
//! same trade as accepting an offer, the seller being the accepting prosumer, and moves the
//! part of the bid's escrow that pays for it into the trade's escrow. Cancelling a bid — also
//! after gate closure, when it can no longer be accepted — refunds what its escrow still holds.
//! `Attest` mints `export_wh` e-tokens to the account, once per account and period. `Settle`
//! moves `min(traded, seller's e-tokens)` to the buyer, pays the seller for it from escrow and
//! refunds the rest to the buyer, recording the shortfall as the trade's imbalance. `Burn`
//! destroys the account's e-tokens up to its attested import not yet burned.
//!
//! `PayFlex` settles a demand-response delivery attested by the `flex` chaincode (read with a
//! same-channel call to its `GetDelivery`): it pays the delivery's remuneration from the DSO's
//! treasury account `<DSO MSP>:treasury` (funded by a DSO admin with `IssuePayment`; refused
//! while the treasury holds less), then moves the penalty from the account to the treasury —
//! at most what the account then holds, the unpaid rest recorded — exactly once per request,
//! period and account (the `flexpaid/<request>/<period>/<account>` record, which
//! `GetFlexPayment` returns). Only payment moves, so the issued total is unchanged.
//!
//! Invariants, checked by [`Supply`]: e-tokens in accounts = minted − burned; payment in
//! balances + escrow of unsettled trades + escrow of bids = issued. MVCC makes every balance single-spend. The
//! totals are kept per account (`supply/<account>`: what was issued to, minted for and burned
//! from it), so transactions for different accounts never conflict on a shared counter;
//! `Supply` with no argument sums them, `Supply account` gives one.
//!
//! ## Attestations
//!
//! Each market organization's admin registers the bilateral channel (that organization + the
//! DSO) whose `meter` chaincode holds its customers' readings. `Attest` reads, on that channel,
//! the readings of every meter at the account's POD for the period (`meter`'s
//! `GetPodReadings`, a read-only cross-channel call: nothing of the meter channel enters the
//! market's read-write set), and refuses unless the attested export and import equal their sums.
//! The stored commitment is the hex SHA-256 of the transient `salt` (16 to 64 bytes, never on
//! the ledger) followed by the exact `GetPodReadings` payload, so whoever holds the readings and
//! the salt can check it, and nobody else learns anything from it. Every endorser runs the
//! check on its own copy of the meter channel: the DSO's peer and the account's organization's
//! peer are its members, so an attestation is endorsed by those two (the client names them as
//! the endorsing organizations).

use serde::{Deserialize, Serialize};

use gridledger_identity::Certificate;
use gridledger_proto::msp;
use gridledger_proto::prost::Message;
use gridledger_proto::protos;

use crate::arguments::{Outcome, check_name, expect_args, get, put, state, to_json};
use crate::stub::ChaincodeStub;
use crate::{Chaincode, error, success};

/// Trading for a period closes this long before it starts.
pub const GATE_CLOSURE_SECONDS: i64 = 300;
/// Delivery periods are this long.
pub const PERIOD_SECONDS: i64 = 900;
/// The largest energy one offer or trade may carry, Wh (a feeder's whole load for a period).
pub const MAX_ENERGY_WH: u64 = 10_000_000;
/// The largest price, cents per kWh.
pub const MAX_PRICE_CENTS_PER_KWH: u64 = 100_000;
/// The largest payment issued at once, cents.
pub const MAX_ISSUE_CENTS: u64 = 1_000_000_000;

/// Prefix of the per-account supply records (`supply/<account>`): issuance, minting and
/// burning touch only the account's own record, so transactions for different accounts never
/// conflict on a shared counter; `Supply` sums them.
const SUPPLY_PREFIX: &str = "supply/";
/// The `meter` chaincode's name on the bilateral channels.
pub const METER_CHAINCODE: &str = "meter";
/// Transient key of the salt an attestation's commitment is made with.
pub const SALT_TRANSIENT_KEY: &str = "salt";
/// Salts are at least this long (bytes), so a commitment cannot be brute-forced from guessable
/// readings.
pub const MIN_SALT_BYTES: usize = 16;
/// And at most this long.
pub const MAX_SALT_BYTES: usize = 64;

/// The `energy` chaincode; `dso_msp_id` is the organization that attests and settles.
#[derive(Debug, Clone)]
pub struct EnergyMarket {
    /// The DSO's MSP id.
    pub dso_msp_id: String,
}

/// An account's balances.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// The account.
    pub account: String,
    /// Payment, cents.
    pub payment_cents: u64,
    /// E-tokens, Wh.
    pub etokens_wh: u64,
}

/// Totals kept to check conservation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supply {
    /// Payment issued, cents.
    pub issued_cents: u64,
    /// E-tokens minted, Wh.
    pub minted_wh: u64,
    /// E-tokens burned, Wh.
    pub burned_wh: u64,
}

/// An offer to sell energy in a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// Its id.
    pub id: String,
    /// The seller's account.
    pub seller: String,
    /// The seller's point of delivery.
    pub seller_pod: String,
    /// Delivery period start.
    pub period: i64,
    /// Energy offered, Wh.
    pub energy_wh: u64,
    /// Energy not yet sold, Wh.
    pub remaining_wh: u64,
    /// Price, cents per kWh.
    pub price_cents_per_kwh: u64,
    /// `open` or `cancelled`.
    pub status: String,
}

/// A bid to buy energy in a period, its largest payment held in escrow until it is accepted,
/// cancelled or filled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// Its id.
    pub id: String,
    /// The buyer's account.
    pub buyer: String,
    /// The buyer's point of delivery.
    pub buyer_pod: String,
    /// Delivery period start.
    pub period: i64,
    /// Energy bid for, Wh.
    pub energy_wh: u64,
    /// Energy not yet bought, Wh.
    pub remaining_wh: u64,
    /// Price, cents per kWh.
    pub price_cents_per_kwh: u64,
    /// Payment held for the remaining energy, cents: always its price rounded up to a cent
    /// (zero once cancelled).
    pub escrow_cents: u64,
    /// `open` or `cancelled`.
    pub status: String,
}

/// A trade: energy bought from an offer or sold to a bid, its payment in escrow until
/// settlement. Both kinds are the same record under the same key, so the DSO certifies and
/// `Settle` settles them alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    /// Its id.
    pub id: String,
    /// The offer it came from (`AcceptOffer`); empty for a trade from a bid.
    #[serde(default)]
    pub offer_id: String,
    /// The bid it came from (`AcceptBid`); empty, and not serialized, for a trade from an
    /// offer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bid_id: String,
    /// Seller account and point of delivery.
    pub seller: String,
    /// Seller point of delivery.
    pub seller_pod: String,
    /// Buyer account.
    pub buyer: String,
    /// Buyer point of delivery.
    pub buyer_pod: String,
    /// Delivery period start.
    pub period: i64,
    /// Energy traded, Wh.
    pub energy_wh: u64,
    /// Price, cents per kWh.
    pub price_cents_per_kwh: u64,
    /// Payment held in escrow, cents.
    pub escrow_cents: u64,
    /// `escrowed` or `settled`.
    pub status: String,
    /// Energy delivered (e-tokens moved), Wh.
    pub delivered_wh: u64,
    /// Paid to the seller, cents.
    pub paid_cents: u64,
    /// Refunded to the buyer, cents.
    pub refunded_cents: u64,
    /// Traded but not delivered, Wh.
    pub imbalance_wh: u64,
}

/// The DSO's attestation of an account's metered energy in a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// The account.
    pub account: String,
    /// Delivery period start.
    pub period: i64,
    /// Metered export, Wh (minted as e-tokens).
    pub export_wh: u64,
    /// Metered import, Wh (the most that may be burned).
    pub import_wh: u64,
    /// Import already burned, Wh.
    pub burned_wh: u64,
    /// Salted commitment to the readings the quantities come from.
    pub commitment: String,
}

/// What `PayFlex` moved for one demand-response delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlexPayment {
    /// The flexibility request.
    pub request_id: String,
    /// Delivery period start.
    pub period: i64,
    /// The account that delivered.
    pub account: String,
    /// The treasury it was paid from and penalised to.
    pub treasury: String,
    /// Paid to the account, cents.
    pub remuneration_cents: u64,
    /// The delivery's penalty, cents.
    pub penalty_cents: u64,
    /// Of it, taken from the account, cents.
    pub penalty_paid_cents: u64,
    /// Of it, not covered by the account's balance, cents.
    pub penalty_unpaid_cents: u64,
}

/// `text` as a whole number from 0 to `max`, or why not.
pub(crate) fn number(what: &str, text: &str, max: u64) -> Result<u64, String> {
    let n: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{what} {text:?} is not a whole non-negative number"))?;
    if n > max {
        return Err(format!(
            "{what} {n} is more than the largest allowed ({max})"
        ));
    }
    Ok(n)
}

/// `text` as a delivery period: a positive Unix time on a 15-minute boundary.
pub(crate) fn period(text: &str) -> Result<i64, String> {
    let p: i64 = text
        .trim()
        .parse()
        .map_err(|_| format!("period {text:?} is not a Unix time in seconds"))?;
    if p <= 0 || p % PERIOD_SECONDS != 0 {
        return Err(format!(
            "period {p} does not start on a {PERIOD_SECONDS}-second boundary"
        ));
    }
    Ok(p)
}

/// Ids and accounts name keys: letters, digits, `.`, `_`, `-`, `:`, at most 128.
pub(crate) fn check_id(what: &str, id: &str) -> Result<(), String> {
    check_name(what, id, 128, b":")
}

fn balance_key(account: &str) -> String {
    format!("balance/{account}")
}

fn offer_key(period: i64, id: &str) -> String {
    format!("offer/{period:012}/{id}")
}

fn bid_key(period: i64, id: &str) -> String {
    format!("bid/{period:012}/{id}")
}

/// The price of `energy_wh` at `price_cents_per_kwh`, rounded up to a cent: the buyer never
/// pays less than the energy costs.
fn cost_cents(energy_wh: u64, price_cents_per_kwh: u64) -> u64 {
    (energy_wh * price_cents_per_kwh).div_ceil(1000)
}

fn trade_key(period: i64, id: &str) -> String {
    format!("trade/{period:012}/{id}")
}

fn meter_channel_key(msp_id: &str) -> String {
    format!("meterchannel/{msp_id}")
}

/// The bilateral channel registered for `msp_id`'s meters.
fn meter_channel(stub: &mut ChaincodeStub<'_>, msp_id: &str) -> Outcome {
    stub.get_state(&meter_channel_key(msp_id))
        .map_err(state)?
        .ok_or_else(|| format!("{msp_id} has registered no meter channel (RegisterMeterChannel)"))
}

/// Whether the creator's certificate has the `admin` organizational unit.
fn creator_is_admin(stub: &ChaincodeStub<'_>) -> Result<bool, String> {
    Ok(creator_certificate(stub)?
        .organizational_units
        .iter()
        .any(|ou| ou.eq_ignore_ascii_case("admin")))
}

fn flex_paid_key(request_id: &str, period: i64, account: &str) -> String {
    format!("flexpaid/{request_id}/{period:012}/{account}")
}

/// The DSO's treasury account, which pays demand-response remuneration and receives penalties.
pub fn treasury_account(dso_msp_id: &str) -> String {
    format!("{dso_msp_id}:treasury")
}

fn attestation_key(period: i64, account: &str) -> String {
    format!("attestation/{period:012}/{account}")
}

fn load_balance(stub: &mut ChaincodeStub<'_>, account: &str) -> Result<Balance, String> {
    Ok(
        get(stub, &balance_key(account))?.unwrap_or_else(|| Balance {
            account: account.to_owned(),
            ..Balance::default()
        }),
    )
}

/// The transaction's timestamp, Unix seconds.
pub(crate) fn now(stub: &ChaincodeStub<'_>) -> Result<i64, String> {
    stub.timestamp()
        .map(|t| t.seconds)
        .ok_or_else(|| "the transaction carries no timestamp".to_string())
}

/// The creator's certificate (from its serialized identity).
fn creator_certificate(stub: &ChaincodeStub<'_>) -> Result<Certificate, String> {
    let identity = msp::SerializedIdentity::decode(stub.creator())
        .map_err(|e| format!("the creator does not decode: {e}"))?;
    Certificate::from_pem(&identity.id_bytes)
        .map_err(|e| format!("the creator's certificate does not parse: {e}"))
}

/// The account of a prosumer creator: `<MSP>:<pod attribute>`.
pub(crate) fn prosumer_account(stub: &ChaincodeStub<'_>) -> Result<(String, String), String> {
    let pod = stub
        .attribute("pod")
        .ok_or("only a prosumer may trade: the creator's certificate has no `pod` attribute")?
        .to_owned();
    if let Some(meter) = stub.attribute(crate::meter::METER_ATTRIBUTE) {
        return Err(format!(
            "only a prosumer may trade: {meter} is a meter of {pod}, not its prosumer"
        ));
    }
    check_id("point of delivery", &pod)?;
    Ok((format!("{}:{pod}", stub.creator_msp_id()), pod))
}

/// Refuses a transaction after `period`'s gate closure.
pub(crate) fn before_gate_closure(stub: &ChaincodeStub<'_>, period: i64) -> Result<(), String> {
    let at = now(stub)?;
    if at > period - GATE_CLOSURE_SECONDS {
        return Err(format!(
            "gate closure for period {period} was at {}; the transaction is at {at}",
            period - GATE_CLOSURE_SECONDS
        ));
    }
    Ok(())
}

/// Refuses unless the creator is one of the DSO's operators: an identity of `dso_msp_id` that
/// is not a meter.
pub(crate) fn require_dso(
    dso_msp_id: &str,
    stub: &ChaincodeStub<'_>,
    what: &str,
) -> Result<(), String> {
    if stub.creator_msp_id() != dso_msp_id {
        return Err(format!(
            "only the DSO ({dso_msp_id}) may {what}, not {}",
            stub.creator_msp_id()
        ));
    }
    // Smart meters are the DSO's identities too, but they only report readings.
    if let Some(meter) = stub.attribute(crate::meter::METER_ATTRIBUTE) {
        return Err(format!(
            "meter {meter} may not {what}: only the DSO's operators may"
        ));
    }
    Ok(())
}

impl EnergyMarket {
    fn require_dso(&self, stub: &ChaincodeStub<'_>, what: &str) -> Result<(), String> {
        require_dso(&self.dso_msp_id, stub, what)
    }

    fn after_period(stub: &ChaincodeStub<'_>, period: i64) -> Result<(), String> {
        let at = now(stub)?;
        if at < period + PERIOD_SECONDS {
            return Err(format!(
                "period {period} is not over at the transaction's time {at}"
            ));
        }
        Ok(())
    }
}

impl Chaincode for EnergyMarket {
    fn invoke(&self, stub: &mut ChaincodeStub<'_>) -> protos::Response {
        let (function, args) = stub.get_function_and_parameters();
        let outcome: Outcome = match function.as_str() {
            "RegisterMeterChannel" => self.register_meter_channel(stub, &args),
            "GetMeterChannel" => expect_args(&args, &["msp_id"], "GetMeterChannel")
                .and_then(|a| meter_channel(stub, a[0].trim())),
            "IssuePayment" => issue_payment(stub, &args),
            "PostOffer" => post_offer(stub, &args),
            "CancelOffer" => cancel_offer(stub, &args),
            "AcceptOffer" => accept_offer(stub, &args),
            "PostBid" => post_bid(stub, &args),
            "CancelBid" => cancel_bid(stub, &args),
            "AcceptBid" => accept_bid(stub, &args),
            "Attest" => self.attest(stub, &args),
            "Settle" => self.settle(stub, &args),
            "Burn" => self.burn(stub, &args),
            "PayFlex" => self.pay_flex(stub, &args),
            "GetFlexPayment" => expect_args(
                &args,
                &["request_id", "period", "account"],
                "GetFlexPayment",
            )
            .and_then(|a| {
                let key = flex_paid_key(a[0].trim(), period(&a[1])?, a[2].trim());
                get::<FlexPayment>(stub, &key)?
                    .map(|p| to_json(&p))
                    .ok_or_else(|| {
                        format!(
                            "the delivery of {} for request {} is not paid",
                            a[2].trim(),
                            a[0].trim()
                        )
                    })
            }),
            "Balance" => expect_args(&args, &["account"], "Balance")
                .and_then(|a| load_balance(stub, a[0].trim()))
                .map(|b| to_json(&b)),
            "GetOffer" => expect_args(&args, &["offer_id", "period"], "GetOffer").and_then(|a| {
                let key = offer_key(period(&a[1])?, a[0].trim());
                get::<Offer>(stub, &key)?
                    .map(|o| to_json(&o))
                    .ok_or_else(|| format!("no offer {}", a[0]))
            }),
            "GetBid" => expect_args(&args, &["bid_id", "period"], "GetBid").and_then(|a| {
                let key = bid_key(period(&a[1])?, a[0].trim());
                get::<Bid>(stub, &key)?
                    .map(|b| to_json(&b))
                    .ok_or_else(|| format!("no bid {}", a[0]))
            }),
            "GetTrade" => expect_args(&args, &["trade_id", "period"], "GetTrade").and_then(|a| {
                let key = trade_key(period(&a[1])?, a[0].trim());
                get::<Trade>(stub, &key)?
                    .map(|t| to_json(&t))
                    .ok_or_else(|| format!("no trade {}", a[0]))
            }),
            "Supply" => total_supply(stub, &args).map(|s| to_json(&s)),
            "GetAttestation" => expect_args(&args, &["period", "account"], "GetAttestation")
                .and_then(|a| {
                    let key = attestation_key(period(&a[0])?, a[1].trim());
                    get::<Attestation>(stub, &key)?
                        .map(|at| to_json(&at))
                        .ok_or_else(|| {
                            format!("{} is not attested for period {}", a[1].trim(), a[0].trim())
                        })
                }),
            other => Err(format!("function {other:?} does not exist in energy")),
        };
        match outcome {
            Ok(payload) => success(payload),
            Err(message) => error(message),
        }
    }
}

fn issue_payment(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
    let args = expect_args(args, &["account", "cents"], "IssuePayment")?;
    let account = args[0].trim();
    check_id("account", account)?;
    let cents = number("amount", &args[1], MAX_ISSUE_CENTS)?;
    let msp_id = stub.creator_msp_id().to_owned();
    if !account.starts_with(&format!("{msp_id}:")) {
        return Err(format!(
            "{msp_id} issues payment only to its own customers' accounts ({msp_id}:<pod>), not {account}"
        ));
    }
    if !creator_is_admin(stub)? {
        return Err(format!("only an admin of {msp_id} issues payment"));
    }
    let mut balance = load_balance(stub, account)?;
    balance.payment_cents = balance
        .payment_cents
        .checked_add(cents)
        .ok_or("the balance would overflow")?;
    let supply_key = format!("{SUPPLY_PREFIX}{account}");
    let mut supply: Supply = get(stub, &supply_key)?.unwrap_or_default();
    supply.issued_cents = supply
        .issued_cents
        .checked_add(cents)
        .ok_or("the issued total would overflow")?;
    put(stub, &balance_key(account), &balance)?;
    put(stub, &supply_key, &supply)?;
    Ok(to_json(&balance))
}

fn post_offer(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
    let args = expect_args(
        args,
        &["offer_id", "period", "energy_wh", "price_cents_per_kwh"],
        "PostOffer",
    )?;
    let id = args[0].trim();
    check_id("offer id", id)?;
    let period = period(&args[1])?;
    let energy_wh = number("energy", &args[2], MAX_ENERGY_WH)?;
    let price = number("price", &args[3], MAX_PRICE_CENTS_PER_KWH)?;
    if energy_wh == 0 {
        return Err("an offer must sell some energy".to_string());
    }
    let (seller, seller_pod) = prosumer_account(stub)?;
    before_gate_closure(stub, period)?;
    let key = offer_key(period, id);
    if get::<Offer>(stub, &key)?.is_some() {
        return Err(format!("offer {id} already exists"));
    }
    let offer = Offer {
        id: id.to_owned(),
        seller,
        seller_pod,
        period,
        energy_wh,
        remaining_wh: energy_wh,
        price_cents_per_kwh: price,
        status: "open".to_string(),
    };
    put(stub, &key, &offer)?;
    Ok(to_json(&offer))
}

fn cancel_offer(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
    let args = expect_args(args, &["offer_id", "period"], "CancelOffer")?;
    let key = offer_key(period(&args[1])?, args[0].trim());
    let mut offer: Offer = get(stub, &key)?.ok_or_else(|| format!("no offer {}", args[0]))?;
    let (account, _) = prosumer_account(stub)?;
    if account != offer.seller {
        return Err(format!(
            "only the seller {} cancels offer {}",
            offer.seller, offer.id
        ));
    }
    before_gate_closure(stub, offer.period)?;
    offer.status = "cancelled".to_string();
    put(stub, &key, &offer)?;
    Ok(to_json(&offer))
}

/// What `AcceptOffer` and `AcceptBid` share: the arguments `trade_id, <order>_id, period,
/// energy_wh`, checked, and the accepting prosumer's account and POD, before gate closure.
struct Acceptance {
    trade_id: String,
    /// The new trade's key; no trade may exist under it yet.
    trade_key: String,
    order_id: String,
    period: i64,
    energy_wh: u64,
    account: String,
    pod: String,
}

fn acceptance(
    stub: &mut ChaincodeStub<'_>,
    args: &[String],
    function: &str,
    order_arg: &str,
    verb: &str,
) -> Result<Acceptance, String> {
    let args = expect_args(
        args,
        &["trade_id", order_arg, "period", "energy_wh"],
        function,
    )?;
    let trade_id = args[0].trim();
    check_id("trade id", trade_id)?;
    let period = period(&args[2])?;
    let energy_wh = number("energy", &args[3], MAX_ENERGY_WH)?;
    if energy_wh == 0 {
        return Err(format!("a trade must {verb} some energy"));
    }
    let (account, pod) = prosumer_account(stub)?;
    before_gate_closure(stub, period)?;
    let trade_key = trade_key(period, trade_id);
    if get::<Trade>(stub, &trade_key)?.is_some() {
        return Err(format!("trade {trade_id} already exists"));
    }
    Ok(Acceptance {
        trade_id: trade_id.to_owned(),
        trade_key,
        order_id: args[1].trim().to_owned(),
        period,
        energy_wh,
        account,
        pod,
    })
}

impl Acceptance {
    /// The escrowed trade this acceptance makes, from `seller` to `buyer` (account and POD).
    fn trade(
        &self,
        seller: (String, String),
        buyer: (String, String),
        price_cents_per_kwh: u64,
        escrow_cents: u64,
    ) -> Trade {
        Trade {
            id: self.trade_id.clone(),
            offer_id: String::new(),
            bid_id: String::new(),
            seller: seller.0,
            seller_pod: seller.1,
            buyer: buyer.0,
            buyer_pod: buyer.1,
            period: self.period,
            energy_wh: self.energy_wh,
            price_cents_per_kwh,
            escrow_cents,
            status: "escrowed".to_string(),
            delivered_wh: 0,
            paid_cents: 0,
            refunded_cents: 0,
            imbalance_wh: 0,
        }
    }
}

/// Writes a new trade and announces it with a `Trade` event.
fn record_trade(stub: &mut ChaincodeStub<'_>, key: &str, trade: &Trade) -> Outcome {
    put(stub, key, trade)?;
    let payload = to_json(trade);
    stub.set_event("Trade", &payload).map_err(state)?;
    Ok(payload)
}

fn accept_offer(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
    let accepted = acceptance(stub, args, "AcceptOffer", "offer_id", "buy")?;
    let (period, energy_wh) = (accepted.period, accepted.energy_wh);
    let buyer = accepted.account.clone();
    let offer_key = offer_key(period, &accepted.order_id);
    let mut offer: Offer = get(stub, &offer_key)?
        .ok_or_else(|| format!("no offer {} for period {period}", accepted.order_id))?;
    if offer.status != "open" {
        return Err(format!("offer {} is {}", offer.id, offer.status));
    }
    if offer.seller == buyer {
        return Err("a prosumer cannot buy its own offer".to_string());
    }
    if offer.remaining_wh < energy_wh {
        return Err(format!(
            "offer {} has {} Wh left, not {energy_wh}",
            offer.id, offer.remaining_wh
        ));
    }
    let escrow_cents = cost_cents(energy_wh, offer.price_cents_per_kwh);
    let mut balance = load_balance(stub, &buyer)?;
    if balance.payment_cents < escrow_cents {
        return Err(format!(
            "{buyer} has {} cents, the trade costs {escrow_cents}",
            balance.payment_cents
        ));
    }
    balance.payment_cents -= escrow_cents;
    offer.remaining_wh -= energy_wh;
    let mut trade = accepted.trade(
        (offer.seller.clone(), offer.seller_pod.clone()),
        (buyer.clone(), accepted.pod.clone()),
        offer.price_cents_per_kwh,
        escrow_cents,
    );
    trade.offer_id = offer.id.clone();
    put(stub, &balance_key(&buyer), &balance)?;
    put(stub, &offer_key, &offer)?;
    record_trade(stub, &accepted.trade_key, &trade)
}

fn post_bid(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
    let args = expect_args(
        args,
        &["bid_id", "period", "energy_wh", "price_cents_per_kwh"],
        "PostBid",
    )?;
    let id = args[0].trim();
    check_id("bid id", id)?;
    let period = period(&args[1])?;
    let energy_wh = number("energy", &args[2], MAX_ENERGY_WH)?;
    let price = number("price", &args[3], MAX_PRICE_CENTS_PER_KWH)?;
    if energy_wh == 0 {
        return Err("a bid must buy some energy".to_string());
    }
    let (buyer, buyer_pod) = prosumer_account(stub)?;
    before_gate_closure(stub, period)?;
    let key = bid_key(period, id);
    if get::<Bid>(stub, &key)?.is_some() {
        return Err(format!("bid {id} already exists"));
    }
    // The bid's largest payment leaves the buyer's balance now, so a seller can always be
    // paid from it.
    let escrow_cents = cost_cents(energy_wh, price);
    let mut balance = load_balance(stub, &buyer)?;
    if balance.payment_cents < escrow_cents {
        return Err(format!(
            "{buyer} has {} cents, the bid costs up to {escrow_cents}",
            balance.payment_cents
        ));
    }
    balance.payment_cents -= escrow_cents;
    let bid = Bid {
        id: id.to_owned(),
        buyer: buyer.clone(),
        buyer_pod,
        period,
        energy_wh,
        remaining_wh: energy_wh,
        price_cents_per_kwh: price,
        escrow_cents,
        status: "open".to_string(),
    };
    put(stub, &balance_key(&buyer), &balance)?;
    put(stub, &key, &bid)?;
    Ok(to_json(&bid))
}

/// Cancels a bid and refunds what it still holds. Unlike an offer, a bid may be cancelled
/// after gate closure too: it can no longer be accepted then, and its escrow goes back.
fn cancel_bid(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
    let args = expect_args(args, &["bid_id", "period"], "CancelBid")?;
    let key = bid_key(period(&args[1])?, args[0].trim());
    let mut bid: Bid = get(stub, &key)?.ok_or_else(|| format!("no bid {}", args[0]))?;
    let (account, _) = prosumer_account(stub)?;
    if account != bid.buyer {
        return Err(format!(
            "only the buyer {} cancels bid {}",
            bid.buyer, bid.id
        ));
    }
    if bid.status != "open" {
        return Err(format!("bid {} is {}", bid.id, bid.status));
    }
    let mut balance = load_balance(stub, &bid.buyer)?;
    balance.payment_cents = balance
        .payment_cents
        .checked_add(bid.escrow_cents)
        .ok_or("the balance would overflow")?;
    bid.escrow_cents = 0;
    bid.status = "cancelled".to_string();
    put(stub, &balance_key(&bid.buyer), &balance)?;
    put(stub, &key, &bid)?;
    Ok(to_json(&bid))
}

fn accept_bid(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
    let accepted = acceptance(stub, args, "AcceptBid", "bid_id", "sell")?;
    let (period, energy_wh) = (accepted.period, accepted.energy_wh);
    let seller = accepted.account.clone();
    let bid_key = bid_key(period, &accepted.order_id);
    let mut bid: Bid = get(stub, &bid_key)?
        .ok_or_else(|| format!("no bid {} for period {period}", accepted.order_id))?;
    if bid.status != "open" {
        return Err(format!("bid {} is {}", bid.id, bid.status));
    }
    if bid.buyer == seller {
        return Err("a prosumer cannot sell to its own bid".to_string());
    }
    if bid.remaining_wh < energy_wh {
        return Err(format!(
            "bid {} has {} Wh left, not {energy_wh}",
            bid.id, bid.remaining_wh
        ));
    }
    // The bid keeps the price of what remains, rounded up; the trade takes the difference,
    // which is never less than its own price rounded down (what settlement can pay for it),
    // and the bid's last trade takes what is left — so no cent is created or lost.
    bid.remaining_wh -= energy_wh;
    let kept = cost_cents(bid.remaining_wh, bid.price_cents_per_kwh);
    let escrow_cents = bid.escrow_cents.checked_sub(kept).ok_or_else(|| {
        format!(
            "bid {} holds {} cents, less than the {kept} its remaining energy costs",
            bid.id, bid.escrow_cents
        )
    })?;
    bid.escrow_cents = kept;
    let mut trade = accepted.trade(
        (seller, accepted.pod.clone()),
        (bid.buyer.clone(), bid.buyer_pod.clone()),
        bid.price_cents_per_kwh,
        escrow_cents,
    );
    trade.bid_id = bid.id.clone();
    put(stub, &bid_key, &bid)?;
    record_trade(stub, &accepted.trade_key, &trade)
}

impl EnergyMarket {
    fn register_meter_channel(&self, stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
        let args = expect_args(args, &["channel"], "RegisterMeterChannel")?;
        let channel = args[0].trim();
        check_name("channel", channel, 249, b"")?;
        let msp_id = stub.creator_msp_id().to_owned();
        if msp_id == self.dso_msp_id {
            return Err("the DSO has no customers' meters to register".to_string());
        }
        if !creator_is_admin(stub)? {
            return Err(format!(
                "only an admin of {msp_id} registers its meter channel"
            ));
        }
        stub.put_state(&meter_channel_key(&msp_id), channel.as_bytes())
            .map_err(state)?;
        Ok(channel.as_bytes().to_vec())
    }

    fn attest(&self, stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
        let args = expect_args(
            args,
            &["period", "account", "export_wh", "import_wh"],
            "Attest",
        )?;
        self.require_dso(stub, "attest metered energy")?;
        let period = period(&args[0])?;
        let account = args[1].trim();
        check_id("account", account)?;
        let export_wh = number("export", &args[2], MAX_ENERGY_WH)?;
        let import_wh = number("import", &args[3], MAX_ENERGY_WH)?;
        let salt = stub
            .transient()
            .get(SALT_TRANSIENT_KEY)
            .cloned()
            .ok_or("an attestation needs the transient `salt` its commitment is made with")?;
        if !(MIN_SALT_BYTES..=MAX_SALT_BYTES).contains(&salt.len()) {
            return Err(format!(
                "the salt must be {MIN_SALT_BYTES} to {MAX_SALT_BYTES} bytes, not {}",
                salt.len()
            ));
        }
        Self::after_period(stub, period)?;
        let key = attestation_key(period, account);
        if get::<Attestation>(stub, &key)?.is_some() {
            return Err(format!("{account} is already attested for period {period}"));
        }
        let readings = metered(stub, account, period, export_wh, import_wh)?;
        let mut committed = salt;
        committed.extend_from_slice(&readings);
        let attestation = Attestation {
            account: account.to_owned(),
            period,
            export_wh,
            import_wh,
            burned_wh: 0,
            commitment: hex(&gridledger_proto::blockutil::sha256(&committed)),
        };
        let mut balance = load_balance(stub, account)?;
        balance.etokens_wh += export_wh;
        let supply_key = format!("{SUPPLY_PREFIX}{account}");
        let mut supply: Supply = get(stub, &supply_key)?.unwrap_or_default();
        supply.minted_wh += export_wh;
        put(stub, &key, &attestation)?;
        put(stub, &balance_key(account), &balance)?;
        put(stub, &supply_key, &supply)?;
        Ok(to_json(&attestation))
    }

    fn settle(&self, stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
        let args = expect_args(args, &["trade_id", "period"], "Settle")?;
        self.require_dso(stub, "settle trades")?;
        let period = period(&args[1])?;
        let key = trade_key(period, args[0].trim());
        let mut trade: Trade = get(stub, &key)?
            .ok_or_else(|| format!("no trade {} for period {period}", args[0].trim()))?;
        if trade.status != "escrowed" {
            return Err(format!("trade {} is already {}", trade.id, trade.status));
        }
        for account in [&trade.seller, &trade.buyer] {
            if get::<Attestation>(stub, &attestation_key(period, account))?.is_none() {
                return Err(format!("{account} is not attested for period {period} yet"));
            }
        }
        let mut seller = load_balance(stub, &trade.seller)?;
        let mut buyer = load_balance(stub, &trade.buyer)?;
        let delivered = trade.energy_wh.min(seller.etokens_wh);
        // The seller is paid for what was delivered, rounded down; the rest goes back.
        let paid = (delivered * trade.price_cents_per_kwh / 1000).min(trade.escrow_cents);
        let refunded = trade.escrow_cents - paid;
        seller.etokens_wh -= delivered;
        buyer.etokens_wh += delivered;
        seller.payment_cents += paid;
        buyer.payment_cents += refunded;
        trade.status = "settled".to_string();
        trade.delivered_wh = delivered;
        trade.paid_cents = paid;
        trade.refunded_cents = refunded;
        trade.imbalance_wh = trade.energy_wh - delivered;
        put(stub, &balance_key(&trade.seller), &seller)?;
        put(stub, &balance_key(&trade.buyer), &buyer)?;
        put(stub, &key, &trade)?;
        Ok(to_json(&trade))
    }

    fn burn(&self, stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
        let args = expect_args(args, &["period", "account"], "Burn")?;
        self.require_dso(stub, "burn e-tokens")?;
        let period = period(&args[0])?;
        let account = args[1].trim();
        let key = attestation_key(period, account);
        let mut attestation: Attestation = get(stub, &key)?
            .ok_or_else(|| format!("{account} is not attested for period {period}"))?;
        let mut balance = load_balance(stub, account)?;
        let burn = balance
            .etokens_wh
            .min(attestation.import_wh - attestation.burned_wh);
        balance.etokens_wh -= burn;
        attestation.burned_wh += burn;
        let supply_key = format!("{SUPPLY_PREFIX}{account}");
        let mut supply: Supply = get(stub, &supply_key)?.unwrap_or_default();
        supply.burned_wh += burn;
        put(stub, &balance_key(account), &balance)?;
        put(stub, &key, &attestation)?;
        put(stub, &supply_key, &supply)?;
        Ok(to_json(&attestation))
    }
}

impl EnergyMarket {
    fn pay_flex(&self, stub: &mut ChaincodeStub<'_>, args: &[String]) -> Outcome {
        let args = expect_args(args, &["request_id", "period", "account"], "PayFlex")?;
        self.require_dso(stub, "pay demand response")?;
        let request_id = args[0].trim();
        check_name("request id", request_id, 128, b"")?;
        let period = period(&args[1])?;
        let account = args[2].trim();
        check_id("account", account)?;
        let treasury = treasury_account(&self.dso_msp_id);
        if account == treasury {
            return Err(format!(
                "the treasury {treasury} cannot be paid for demand response"
            ));
        }
        let key = flex_paid_key(request_id, period, account);
        if get::<FlexPayment>(stub, &key)?.is_some() {
            return Err(format!(
                "the delivery of {account} for request {request_id} in period {period} is already paid"
            ));
        }
        let response = stub
            .invoke_chaincode(
                crate::registry::FLEX,
                &[
                    b"GetDelivery".to_vec(),
                    request_id.as_bytes().to_vec(),
                    period.to_string().into_bytes(),
                    account.as_bytes().to_vec(),
                ],
                "",
            )
            .map_err(|e| format!("reading the delivery from flex: {e}"))?;
        if response.status != crate::OK {
            return Err(format!("no attested delivery to pay: {}", response.message));
        }
        let delivery: crate::flex::Delivery = serde_json::from_slice(&response.payload)
            .map_err(|e| format!("flex's delivery record does not parse: {e}"))?;
        if (
            delivery.request_id.as_str(),
            delivery.period,
            delivery.account.as_str(),
        ) != (request_id, period, account)
        {
            return Err(format!(
                "flex answered the delivery of {} for request {} in period {}, not the one asked",
                delivery.account, delivery.request_id, delivery.period
            ));
        }
        let mut from = load_balance(stub, &treasury)?;
        let mut to = load_balance(stub, account)?;
        if from.payment_cents < delivery.remuneration_cents {
            return Err(format!(
                "the treasury {treasury} has {} cents, the remuneration is {}; issue payment to it first",
                from.payment_cents, delivery.remuneration_cents
            ));
        }
        from.payment_cents -= delivery.remuneration_cents;
        to.payment_cents += delivery.remuneration_cents;
        // The penalty is taken after the remuneration is credited, so a partial delivery's
        // penalty is first covered by its own remuneration.
        let penalty_paid = delivery.penalty_cents.min(to.payment_cents);
        to.payment_cents -= penalty_paid;
        from.payment_cents += penalty_paid;
        let payment = FlexPayment {
            request_id: request_id.to_owned(),
            period,
            account: account.to_owned(),
            treasury: treasury.clone(),
            remuneration_cents: delivery.remuneration_cents,
            penalty_cents: delivery.penalty_cents,
            penalty_paid_cents: penalty_paid,
            penalty_unpaid_cents: delivery.penalty_cents - penalty_paid,
        };
        put(stub, &balance_key(&treasury), &from)?;
        put(stub, &balance_key(account), &to)?;
        put(stub, &key, &payment)?;
        Ok(to_json(&payment))
    }
}

/// Reads the readings of `account`'s POD for `period` on its organization's meter channel and
/// checks the attested quantities against them; returns the readings' bytes (what the
/// commitment covers).
fn metered(
    stub: &mut ChaincodeStub<'_>,
    account: &str,
    period: i64,
    export_wh: u64,
    import_wh: u64,
) -> Outcome {
    let (msp_id, pod) = account
        .split_once(':')
        .ok_or_else(|| format!("account {account:?} is not <MSP>:<POD>"))?;
    let channel = String::from_utf8(meter_channel(stub, msp_id)?)
        .map_err(|_| format!("the meter channel registered for {msp_id} is not UTF-8"))?;
    let response = stub
        .invoke_chaincode(
            METER_CHAINCODE,
            &[
                b"GetPodReadings".to_vec(),
                pod.as_bytes().to_vec(),
                period.to_string().into_bytes(),
            ],
            &channel,
        )
        .map_err(|e| format!("reading the meters of {pod} on {channel}: {e}"))?;
    if response.status != 200 {
        return Err(format!(
            "reading the meters of {pod} on {channel}: {}",
            response.message
        ));
    }
    let readings: Vec<crate::meter::Reading> = serde_json::from_slice(&response.payload)
        .map_err(|e| format!("the meter readings of {pod} on {channel} are not readings: {e}"))?;
    if readings.is_empty() {
        return Err(format!(
            "no meter at {pod} has a reading for period {period} on {channel}"
        ));
    }
    let metered_export: u64 = readings.iter().map(|r| r.export_wh).sum();
    let metered_import: u64 = readings.iter().map(|r| r.import_wh).sum();
    if (metered_export, metered_import) != (export_wh, import_wh) {
        return Err(format!(
            "the attested export {export_wh} Wh / import {import_wh} Wh of {account} differ from the metered {metered_export} Wh / {metered_import} Wh on {channel}"
        ));
    }
    Ok(response.payload)
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `Supply` (the sum over every account) or `Supply account`.
fn total_supply(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Result<Supply, String> {
    match args {
        [] => {
            let end = format!("{}0", SUPPLY_PREFIX.trim_end_matches('/'));
            let mut total = Supply::default();
            for (key, bytes) in stub
                .get_state_by_range(SUPPLY_PREFIX, &end)
                .map_err(state)?
            {
                let s: Supply = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("the stored record {key} is corrupt: {e}"))?;
                total.issued_cents += s.issued_cents;
                total.minted_wh += s.minted_wh;
                total.burned_wh += s.burned_wh;
            }
            Ok(total)
        }
        [account] => {
            Ok(get(stub, &format!("{SUPPLY_PREFIX}{}", account.trim()))?.unwrap_or_default())
        }
        _ => Err(format!(
            "Supply takes no argument or an account, not {}",
            args.len()
        )),
    }
}
