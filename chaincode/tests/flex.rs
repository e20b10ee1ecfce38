//! The `flex` chaincode and `energy`'s `PayFlex` against an in-memory market channel, with real
//! identities (the local consortium's kind: admins by OU, prosumers by their `pod` attribute,
//! meters by `meter` and `pod`): only the DSO's operators publish requests and attest delivery,
//! commitments close at gate closure and stay within the requested reduction, delivery is
//! attested only after the period and with enough meter history, the baseline and the amounts
//! follow the documented method for a hand-computed case, and payment needs an attested
//! delivery, happens once, and conserves the payment token. Aggregators (by their `aggregator`
//! attribute) commit for the prosumers that joined them, a POD counts once per request, and an
//! aggregate's delivery is its members' sum, paid to and penalised from the aggregator. The host runs `energy` and `flex`
//! for same-channel calls on the market's state and `meter` for cross-channel reads of
//! in-memory bilateral channels, as the peer would.

mod support;
use support::{fails, ok};

use std::collections::BTreeMap;

use gridledger_chaincode::energy::{Balance, EnergyMarket, FlexPayment, Supply, Trade};
use gridledger_chaincode::flex::{
    Commitment, Delivery, DemandResponse, MemberDelivery, Membership, Request,
};
use gridledger_chaincode::meter::MeterReadings;
use gridledger_chaincode::stub::{ChaincodeHost, ChaincodeStub};
use gridledger_chaincode::{
    Chaincode, SimulationResult, StateReader, simulate, simulate_with_host,
};
use gridledger_proto::kvrwset::{KvrwSet, Version};
use gridledger_proto::prost::Message;
use gridledger_proto::protos::Response;

/// A delivery period: 2026-11-26 13:00 UTC.
const PERIOD: i64 = 1_795_698_000;
const DAY: i64 = 86_400;
const BEFORE: i64 = PERIOD - 3600;
const AFTER: i64 = PERIOD + 900;
const R002: &str = "RetailerMSP:POD-R002";
const R003: &str = "RetailerMSP:POD-R003";
const C001: &str = "CommunityMSP:POD-C001";
const AGG_R: &str = "RetailerMSP:AGG-R";

/// One channel's world state, by (namespace, key).
#[derive(Default, Clone)]
struct MemState(BTreeMap<(String, String), Vec<u8>>);

impl MemState {
    fn apply(&mut self, result: &SimulationResult) {
        for ns in &result.rwset.ns_rwset {
            let kv = KvrwSet::decode(ns.rwset.as_slice()).expect("KVRWSet");
            for w in kv.writes {
                if w.is_delete {
                    self.0.remove(&(ns.namespace.clone(), w.key));
                } else {
                    self.0.insert((ns.namespace.clone(), w.key), w.value);
                }
            }
        }
    }

    /// The records of namespace `ns` under `prefix`.
    fn under<'a>(&'a self, ns: &'a str, prefix: &'a str) -> impl Iterator<Item = &'a Vec<u8>> + 'a {
        self.0
            .iter()
            .filter(move |((n, k), _)| n == ns && k.starts_with(prefix))
            .map(|(_, v)| v)
    }
}

impl StateReader for MemState {
    fn get(&self, ns: &str, key: &str) -> Result<Option<(Vec<u8>, Version)>, String> {
        Ok(self
            .0
            .get(&(ns.to_owned(), key.to_owned()))
            .map(|v| (v.clone(), Version::default())))
    }

    fn range(
        &self,
        ns: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>, Version)>, String> {
        Ok(self
            .0
            .iter()
            .filter(|((n, k), _)| {
                n == ns && k.as_str() >= start && (end.is_empty() || k.as_str() < end)
            })
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone(), Version::default()))
            .collect())
    }
}

fn market() -> EnergyMarket {
    EnergyMarket {
        dso_msp_id: "DSOMSP".to_owned(),
    }
}

fn flex() -> DemandResponse {
    DemandResponse {
        dso_msp_id: "DSOMSP".to_owned(),
    }
}

fn meter_chaincode() -> MeterReadings {
    MeterReadings {
        dso_msp_id: "DSOMSP".to_owned(),
    }
}

/// What the peer provides for chaincode-to-chaincode calls: `energy` and `flex` on the market
/// channel (the stub is already in the callee's namespace), `meter` on the bilateral channels.
#[derive(Default)]
struct Host {
    meter_channels: BTreeMap<String, support::World>,
}

impl ChaincodeHost for Host {
    fn run(&self, name: &str, stub: &mut ChaincodeStub<'_>) -> Result<Response, String> {
        match name {
            "energy" => Ok(market().invoke(stub)),
            "flex" => Ok(flex().invoke(stub)),
            "meter" => Ok(meter_chaincode().invoke(stub)),
            other => Err(format!("chaincode {other} is not defined")),
        }
    }

    fn channel_state(&self, channel_id: &str) -> Result<Box<dyn StateReader + '_>, String> {
        let state = self
            .meter_channels
            .get(channel_id)
            .ok_or_else(|| format!("channel {channel_id} is not joined"))?;
        Ok(Box::new(state.clone()))
    }
}

use support::{People, Who};

/// The identities of the test consortium.
fn people(test: &str) -> People {
    support::People::new(
        &format!("flex-{test}"),
        serde_json::json!([
            {"msp_id": "DSOMSP", "users": [
                {"name": "Operator"},
                {"name": "Meter-R002", "attributes": {"meter": "MTR-R002", "pod": "POD-R002"}},
                {"name": "Meter-R003", "attributes": {"meter": "MTR-R003", "pod": "POD-R003"}},
                {"name": "Meter-C001", "attributes": {"meter": "MTR-C001", "pod": "POD-C001"}}
            ]},
            {"msp_id": "RetailerMSP", "users": [
                {"name": "Clerk"},
                {"name": "Prosumer-R002", "attributes": {"pod": "POD-R002"}},
                {"name": "Prosumer-R003", "attributes": {"pod": "POD-R003"}},
                {"name": "Prosumer-R004", "attributes": {"pod": "POD-R004"}},
                {"name": "Aggregator-R", "attributes": {"aggregator": "AGG-R"}},
                {"name": "Aggregator-R2", "attributes": {"aggregator": "AGG-R2"}}
            ]},
            {"msp_id": "CommunityMSP", "users": [
                {"name": "Prosumer-C001", "attributes": {"pod": "POD-C001"}},
                {"name": "Aggregator-C", "attributes": {"aggregator": "AGG-C"}}
            ]}
        ]),
    )
}

/// The market channel's state and the bilateral channels the DSO's peer has joined.
#[derive(Default)]
struct World {
    market: MemState,
    host: Host,
}

impl World {
    /// Runs `args` of chaincode `cc` on `market` as `who` at time `at`; applies the writes of a
    /// successful run.
    fn run(&mut self, cc: &str, who: &Who, at: i64, args: &[&str]) -> SimulationResult {
        let invocation = support::invocation("market", cc, who, at, args);
        let result = match cc {
            "energy" => simulate_with_host(&market(), cc, &invocation, &self.market, &self.host),
            "flex" => simulate_with_host(&flex(), cc, &invocation, &self.market, &self.host),
            other => panic!("no chaincode {other} on market"),
        };
        if result.response.status == 200 {
            self.market.apply(&result);
        }
        result
    }

    fn flex(&mut self, who: &Who, at: i64, args: &[&str]) -> SimulationResult {
        self.run("flex", who, at, args)
    }

    fn energy(&mut self, who: &Who, at: i64, args: &[&str]) -> SimulationResult {
        self.run("energy", who, at, args)
    }

    /// Records a reading on bilateral channel `channel` as meter identity `meter`.
    fn reading(&mut self, channel: &str, meter: &Who, interval: i64, import: u64, export: u64) {
        let invocation = support::reading_invocation(channel, meter, interval, import, export);
        let state = self
            .host
            .meter_channels
            .entry(channel.to_owned())
            .or_insert_with(|| support::meter_channel(channel));
        let result = simulate(&meter_chaincode(), "meter", &invocation, state);
        ok(&result);
        state.apply(&result);
    }

    fn balance(&self, account: &str) -> u64 {
        self.market
            .0
            .get(&("energy".to_owned(), format!("balance/{account}")))
            .map(|b| {
                serde_json::from_slice::<Balance>(b)
                    .expect("balance")
                    .payment_cents
            })
            .unwrap_or(0)
    }

    /// Payment in balances plus escrow of unsettled trades equals the issued total.
    fn check_payment_conservation(&self) {
        let issued: u64 = self
            .market
            .under("energy", "supply/")
            .map(|b| {
                serde_json::from_slice::<Supply>(b)
                    .expect("supply")
                    .issued_cents
            })
            .sum();
        let supply = Supply {
            issued_cents: issued,
            ..Supply::default()
        };
        let balances: u64 = self
            .market
            .under("energy", "balance/")
            .map(|b| {
                serde_json::from_slice::<Balance>(b)
                    .expect("balance")
                    .payment_cents
            })
            .sum();
        let escrow: u64 = self
            .market
            .under("energy", "trade/")
            .map(|t| serde_json::from_slice::<Trade>(t).expect("trade"))
            .filter(|t| t.status == "escrowed")
            .map(|t| t.escrow_cents)
            .sum();
        assert_eq!(balances + escrow, supply.issued_cents, "payment supply");
    }
}

fn p() -> String {
    PERIOD.to_string()
}

/// The DSO publishes `dr1`: 10 kW in zone `lateral-25-32` at 25 c/kWh, penalty 33 c/kWh.
fn publish(world: &mut World, people: &People) {
    ok(&world.flex(
        &people.user("DSOMSP", "Operator"),
        BEFORE,
        &[
            "PublishRequest",
            "dr1",
            "lateral-25-32",
            &p(),
            "10",
            "25",
            "33",
        ],
    ));
}

/// `dr1` published and the market organizations' meter channels registered; nothing committed.
fn registered(people: &People) -> World {
    let mut world = World::default();
    publish(&mut world, people);
    ok(&world.energy(
        &people.user("RetailerMSP", "Admin"),
        BEFORE,
        &["RegisterMeterChannel", "meter-retailer"],
    ));
    ok(&world.energy(
        &people.user("CommunityMSP", "Admin"),
        BEFORE,
        &["RegisterMeterChannel", "meter-community"],
    ));
    world
}

/// The market organizations register their meter channels; R002 and C001 commit 4 kW each.
fn setup(people: &People) -> World {
    let mut world = registered(people);
    for who in [
        people.user("RetailerMSP", "Prosumer-R002"),
        people.user("CommunityMSP", "Prosumer-C001"),
    ] {
        ok(&world.flex(&who, BEFORE, &["CommitCapacity", "dr1", &p(), "4"]));
    }
    world
}

/// The hand-computed case's readings (import, export Wh by days before the period).
///
/// R002: days 1, 2, 3, 5, 6 (day 4 missing) net 2000, 1800, 2200, 2000, 2000 → baseline 2000;
/// day 7 (9000) is beyond the five most recent and unused. Period: 900 → delivered 1100 Wh,
/// more than its 1000 committed. C001: days 1-3 net 3000, 3001, −1500 → 4501 / 3 = 1500.33,
/// baseline 1500 (rounded down). Period: 1000 → delivered 500 of 1000 committed.
fn record_history(world: &mut World, people: &People) {
    let r002 = people.user("DSOMSP", "Meter-R002");
    for (day, import, export) in [
        (1, 2000, 0),
        (2, 1800, 0),
        (3, 2200, 0),
        (5, 2100, 100),
        (6, 2500, 500),
        (7, 9000, 0),
    ] {
        world.reading("meter-retailer", &r002, PERIOD - day * DAY, import, export);
    }
    world.reading("meter-retailer", &r002, PERIOD, 900, 0);
    let c001 = people.user("DSOMSP", "Meter-C001");
    for (day, import, export) in [(1, 3000, 0), (2, 3001, 0), (3, 0, 1500)] {
        world.reading("meter-community", &c001, PERIOD - day * DAY, import, export);
    }
    world.reading("meter-community", &c001, PERIOD, 1000, 0);
}

fn attest(world: &mut World, people: &People, account: &str) -> Delivery {
    let dso = people.user("DSOMSP", "Operator");
    serde_json::from_slice(&ok(&world.flex(
        &dso,
        AFTER,
        &["AttestDelivery", "dr1", &p(), account],
    )))
    .expect("delivery")
}

#[test]
fn only_the_dsos_operators_publish_requests_and_attest_delivery() {
    let people = people("dso-only");
    let mut world = setup(&people);
    record_history(&mut world, &people);
    let args = [
        "PublishRequest",
        "dr2",
        "lateral-25-32",
        &p(),
        "10",
        "25",
        "33",
    ];
    fails(
        &world.flex(&people.user("RetailerMSP", "Prosumer-R002"), BEFORE, &args),
        "only the DSO (DSOMSP) may publish",
    );
    fails(
        &world.flex(&people.user("RetailerMSP", "Admin"), BEFORE, &args),
        "only the DSO (DSOMSP) may publish",
    );
    fails(
        &world.flex(&people.user("DSOMSP", "Meter-R002"), BEFORE, &args),
        "meter MTR-R002 may not publish",
    );
    ok(&world.flex(&people.user("DSOMSP", "Operator"), BEFORE, &args));
    fails(
        &world.flex(&people.user("DSOMSP", "Operator"), BEFORE, &args),
        "already exists",
    );

    let attest_args = ["AttestDelivery", "dr1", &p(), R002];
    fails(
        &world.flex(
            &people.user("RetailerMSP", "Prosumer-R002"),
            AFTER,
            &attest_args,
        ),
        "only the DSO (DSOMSP) may attest",
    );
    fails(
        &world.flex(&people.user("DSOMSP", "Meter-R002"), AFTER, &attest_args),
        "meter MTR-R002 may not attest",
    );
    ok(&world.flex(&people.user("DSOMSP", "Operator"), AFTER, &attest_args));
}

#[test]
fn commitments_close_at_gate_closure_and_stay_within_the_request() {
    let people = people("commit");
    let mut world = setup(&people);
    let r003 = people.user("RetailerMSP", "Prosumer-R003");
    let dso = people.user("DSOMSP", "Operator");

    // 8 of 10 kW are committed: 3 more are refused, 2 fit.
    fails(
        &world.flex(&r003, BEFORE, &["CommitCapacity", "dr1", &p(), "3"]),
        "above the 2 kW still open",
    );
    // Gate closure, five minutes before the period, for commitments and requests alike.
    fails(
        &world.flex(&r003, PERIOD - 299, &["CommitCapacity", "dr1", &p(), "2"]),
        "gate closure",
    );
    fails(
        &world.flex(
            &dso,
            PERIOD - 299,
            &[
                "PublishRequest",
                "late",
                "lateral-25-32",
                &p(),
                "5",
                "25",
                "33",
            ],
        ),
        "gate closure",
    );
    // Only a prosumer commits, and once per request.
    fails(
        &world.flex(
            &people.user("RetailerMSP", "Clerk"),
            BEFORE,
            &["CommitCapacity", "dr1", &p(), "1"],
        ),
        "no `pod` attribute",
    );
    fails(
        &world.flex(
            &people.user("DSOMSP", "Meter-R003"),
            BEFORE,
            &["CommitCapacity", "dr1", &p(), "1"],
        ),
        "a meter of POD-R003",
    );
    fails(
        &world.flex(
            &people.user("RetailerMSP", "Prosumer-R002"),
            BEFORE,
            &["CommitCapacity", "dr1", &p(), "1"],
        ),
        "already committed",
    );
    fails(
        &world.flex(&r003, BEFORE, &["CommitCapacity", "dr9", &p(), "1"]),
        "no flexibility request dr9",
    );
    let commitment: Commitment = serde_json::from_slice(&ok(&world.flex(
        &r003,
        PERIOD - 300,
        &["CommitCapacity", "dr1", &p(), "2"],
    )))
    .expect("commitment");
    assert_eq!((commitment.account.as_str(), commitment.kw), (R003, 2));

    let request: Request = serde_json::from_slice(&ok(&world.flex(
        &r003,
        BEFORE,
        &["GetRequest", "dr1", &p()],
    )))
    .expect("request");
    assert_eq!((request.reduction_kw, request.committed_kw), (10, 10));
    let commitments: Vec<Commitment> = serde_json::from_slice(&ok(&world.flex(
        &r003,
        BEFORE,
        &["GetCommitments", "dr1", &p()],
    )))
    .expect("commitments");
    let listed: Vec<(&str, u64)> = commitments
        .iter()
        .map(|c| (c.account.as_str(), c.kw))
        .collect();
    assert_eq!(listed, [(C001, 4), (R002, 4), (R003, 2)]);
}

#[test]
fn delivery_is_attested_after_the_period_with_enough_history_and_once() {
    let people = people("attest");
    let mut world = setup(&people);
    let dso = people.user("DSOMSP", "Operator");
    ok(&world.flex(
        &people.user("RetailerMSP", "Prosumer-R003"),
        BEFORE,
        &["CommitCapacity", "dr1", &p(), "2"],
    ));
    let meter = people.user("DSOMSP", "Meter-R003");
    let args = ["AttestDelivery", "dr1", &p(), R003];

    fails(
        &world.flex(&dso, PERIOD + 899, &args),
        "is not over at the transaction's time",
    );
    fails(
        &world.flex(
            &dso,
            AFTER,
            &["AttestDelivery", "dr1", &p(), "RetailerMSP:POD-R009"],
        ),
        "committed no capacity",
    );
    // No reading for the period itself.
    world.reading("meter-retailer", &meter, PERIOD - DAY, 1000, 0);
    fails(
        &world.flex(&dso, AFTER, &args),
        "no meter at POD-R003 has a reading for period",
    );
    // Two days in the last ten (day 11 is beyond the look-back): not enough for a baseline.
    world.reading("meter-retailer", &meter, PERIOD, 800, 0);
    world.reading("meter-retailer", &meter, PERIOD - 2 * DAY, 1000, 0);
    world.reading("meter-retailer", &meter, PERIOD - 11 * DAY, 1000, 0);
    fails(
        &world.flex(&dso, AFTER, &args),
        "at least 3 of the last 10 days; meter-retailer has 2",
    );
    world.reading("meter-retailer", &meter, PERIOD - 9 * DAY, 1000, 0);
    let delivery: Delivery =
        serde_json::from_slice(&ok(&world.flex(&dso, AFTER, &args))).expect("delivery");
    assert_eq!(
        delivery.baseline_days,
        [PERIOD - DAY, PERIOD - 2 * DAY, PERIOD - 9 * DAY]
    );
    assert_eq!((delivery.baseline_wh, delivery.delivered_wh), (1000, 200));
    fails(&world.flex(&dso, AFTER, &args), "already attested");
    // Nothing of the meter channel is in the market's state: only flex's and energy's records.
    assert!(
        world
            .market
            .0
            .keys()
            .all(|(ns, _)| ns == "flex" || ns == "energy")
    );
}

#[test]
fn baseline_delivery_remuneration_and_penalty_are_as_documented() {
    let people = people("figures");
    let mut world = setup(&people);
    record_history(&mut world, &people);

    let full = attest(&mut world, &people, R002);
    assert_eq!(
        full,
        Delivery {
            request_id: "dr1".to_owned(),
            period: PERIOD,
            account: R002.to_owned(),
            meter_channel: "meter-retailer".to_owned(),
            committed_kw: 4,
            committed_wh: 1000,
            baseline_days: vec![
                PERIOD - DAY,
                PERIOD - 2 * DAY,
                PERIOD - 3 * DAY,
                PERIOD - 5 * DAY,
                PERIOD - 6 * DAY
            ],
            baseline_wh: 2000,
            actual_wh: 900,
            members: vec![],
            delivered_wh: 1100,
            credited_wh: 1000,
            shortfall_wh: 0,
            price_cents_per_kwh: 25,
            penalty_cents_per_kwh: 33,
            remuneration_cents: 25,
            penalty_cents: 0,
        }
    );

    let half = attest(&mut world, &people, C001);
    assert_eq!(
        (
            half.baseline_days.len(),
            half.baseline_wh,
            half.actual_wh,
            half.delivered_wh
        ),
        (3, 1500, 1000, 500)
    );
    // 500 Wh × 25 c/kWh = 12.5 c → 12; 500 Wh × 33 c/kWh = 16.5 c → 16.
    assert_eq!(
        (
            half.credited_wh,
            half.shortfall_wh,
            half.remuneration_cents,
            half.penalty_cents
        ),
        (500, 500, 12, 16)
    );
    // Anyone on the market channel reads the same record.
    let read: Delivery = serde_json::from_slice(&ok(&world.flex(
        &people.user("RetailerMSP", "Prosumer-R002"),
        AFTER,
        &["GetDelivery", "dr1", &p(), C001],
    )))
    .expect("delivery");
    assert_eq!(read, half);
}

#[test]
fn flex_payment_needs_an_attested_delivery_is_made_once_and_conserves_payment() {
    let people = people("pay");
    let mut world = setup(&people);
    record_history(&mut world, &people);
    let dso = people.user("DSOMSP", "Operator");
    let treasury = "DSOMSP:treasury";

    fails(
        &world.energy(&dso, AFTER, &["PayFlex", "dr1", &p(), R002]),
        "no attested delivery to pay",
    );
    attest(&mut world, &people, R002);
    attest(&mut world, &people, C001);
    fails(
        &world.energy(
            &people.user("RetailerMSP", "Prosumer-R002"),
            AFTER,
            &["PayFlex", "dr1", &p(), R002],
        ),
        "only the DSO (DSOMSP) may pay",
    );
    fails(
        &world.energy(&dso, AFTER, &["PayFlex", "dr1", &p(), R002]),
        "the treasury DSOMSP:treasury has 0 cents, the remuneration is 25",
    );
    // A DSO admin funds the treasury with IssuePayment, like any organization its accounts.
    ok(&world.energy(
        &people.user("DSOMSP", "Admin"),
        BEFORE,
        &["IssuePayment", treasury, "1000"],
    ));
    world.check_payment_conservation();

    let paid: FlexPayment = serde_json::from_slice(&ok(&world.energy(
        &dso,
        AFTER,
        &["PayFlex", "dr1", &p(), R002],
    )))
    .expect("payment");
    assert_eq!((paid.remuneration_cents, paid.penalty_cents), (25, 0));
    assert_eq!((world.balance(R002), world.balance(treasury)), (25, 975));
    fails(
        &world.energy(&dso, AFTER, &["PayFlex", "dr1", &p(), R002]),
        "already paid",
    );
    assert_eq!(world.balance(R002), 25);
    world.check_payment_conservation();

    // C001 delivered half: 12 c paid, then the 16 c penalty takes all it holds, 4 c unpaid.
    let penalised: FlexPayment = serde_json::from_slice(&ok(&world.energy(
        &dso,
        AFTER,
        &["PayFlex", "dr1", &p(), C001],
    )))
    .expect("payment");
    assert_eq!(
        (
            penalised.remuneration_cents,
            penalised.penalty_cents,
            penalised.penalty_paid_cents,
            penalised.penalty_unpaid_cents
        ),
        (12, 16, 12, 4)
    );
    assert_eq!((world.balance(C001), world.balance(treasury)), (0, 975));
    world.check_payment_conservation();
    let stored: FlexPayment = serde_json::from_slice(&ok(&world.energy(
        &people.user("CommunityMSP", "Prosumer-C001"),
        AFTER,
        &["GetFlexPayment", "dr1", &p(), C001],
    )))
    .expect("payment");
    assert_eq!(stored, penalised);
}

#[test]
fn bad_flex_arguments_are_refused_with_the_reason() {
    let people = people("bad-args");
    let mut world = setup(&people);
    let dso = people.user("DSOMSP", "Operator");
    let prosumer = people.user("RetailerMSP", "Prosumer-R003");
    let p = p();
    for (who, args, needle) in [
        (
            &dso,
            vec!["PublishRequest", "dr 2", "z", &p, "1", "1", "1"],
            "request id",
        ),
        (
            &dso,
            vec!["PublishRequest", "dr2", "zone/1", &p, "1", "1", "1"],
            "zone",
        ),
        (
            &dso,
            vec!["PublishRequest", "dr2", "z", "1795698001", "1", "1", "1"],
            "boundary",
        ),
        (
            &dso,
            vec!["PublishRequest", "dr2", "z", &p, "0", "1", "1"],
            "some reduction",
        ),
        (
            &dso,
            vec!["PublishRequest", "dr2", "z", &p, "40001", "1", "1"],
            "largest allowed",
        ),
        (
            &dso,
            vec!["PublishRequest", "dr2", "z", &p, "1", "-1", "1"],
            "whole non-negative",
        ),
        (&dso, vec!["PublishRequest", "dr2"], "takes 6 arguments"),
        (
            &prosumer,
            vec!["CommitCapacity", "dr1", &p, "0"],
            "some capacity",
        ),
        (
            &prosumer,
            vec!["CommitCapacity", "dr1", &p, "x"],
            "whole non-negative",
        ),
        (
            &dso,
            vec!["AttestDelivery", "dr1", &p, "bad account"],
            "account",
        ),
        (
            &prosumer,
            vec!["GetDelivery", "dr1", &p, R002],
            "not attested",
        ),
        (&prosumer, vec!["GetRequest", "dr1", "soon"], "Unix time"),
        (&prosumer, vec!["Nope"], "does not exist in flex"),
    ] {
        fails(&world.flex(who, BEFORE, &args), needle);
    }
}

/// `who` joins aggregator `aggregator`.
fn join(world: &mut World, who: &Who, aggregator: &str) -> Membership {
    serde_json::from_slice(&ok(&world.flex(
        who,
        BEFORE,
        &["JoinAggregator", aggregator],
    )))
    .expect("membership")
}

#[test]
fn an_aggregator_commits_for_the_members_that_joined_it_and_a_pod_counts_once() {
    let people = people("aggregate");
    let mut world = setup(&people);
    let (r002, r003, r004) = (
        people.user("RetailerMSP", "Prosumer-R002"),
        people.user("RetailerMSP", "Prosumer-R003"),
        people.user("RetailerMSP", "Prosumer-R004"),
    );
    let agg = people.user("RetailerMSP", "Aggregator-R");
    let commit = |members: &str, kw: &str| {
        vec![
            "CommitAggregate".to_owned(),
            "dr1".to_owned(),
            p(),
            kw.to_owned(),
            members.to_owned(),
        ]
    };
    let run = |world: &mut World, who: &Who, args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        world.flex(who, BEFORE, &args)
    };

    // Membership is the prosumer's own transaction, with an aggregator of its organization.
    let joined = join(&mut world, &r003, AGG_R);
    assert_eq!(
        (joined.account.as_str(), joined.aggregator.as_str()),
        (R003, AGG_R)
    );
    join(&mut world, &r004, AGG_R);
    join(&mut world, &r002, AGG_R);
    fails(
        &world.flex(
            &people.user("CommunityMSP", "Prosumer-C001"),
            BEFORE,
            &["JoinAggregator", AGG_R],
        ),
        "only an aggregator of its own organization (CommunityMSP)",
    );
    fails(
        &world.flex(&agg, BEFORE, &["JoinAggregator", AGG_R]),
        "no `pod` attribute",
    );

    // Only an aggregator identity commits an aggregate, and only for PODs that joined it.
    fails(
        &run(&mut world, &r003, &commit("POD-R003", "1")),
        "no `aggregator` attribute",
    );
    fails(
        &run(&mut world, &agg, &commit("POD-R003,POD-R009", "1")),
        "RetailerMSP:POD-R009 is not a member of RetailerMSP:AGG-R",
    );
    fails(
        &run(
            &mut world,
            &people.user("CommunityMSP", "Aggregator-C"),
            &commit("POD-C001", "1"),
        ),
        "CommunityMSP:POD-C001 is not a member of CommunityMSP:AGG-C",
    );
    fails(
        &run(&mut world, &agg, &commit("POD-R003,POD-R003", "1")),
        "listed twice",
    );
    // R002 committed on its own already: it is not counted again in the aggregate.
    fails(
        &run(&mut world, &agg, &commit("POD-R003,POD-R004,POD-R002", "2")),
        "RetailerMSP:POD-R002 is already counted in RetailerMSP:POD-R002's commitment to request dr1",
    );
    fails(
        &run(&mut world, &agg, &commit("POD-R003,POD-R004", "3")),
        "above the 2 kW still open",
    );
    let commitment: Commitment = serde_json::from_slice(&ok(&run(
        &mut world,
        &agg,
        &commit("POD-R003,POD-R004", "2"),
    )))
    .expect("commitment");
    assert_eq!(
        (
            commitment.account.as_str(),
            commitment.kw,
            commitment.members.clone()
        ),
        (AGG_R, 2, vec!["POD-R003".to_owned(), "POD-R004".to_owned()])
    );
    fails(
        &run(&mut world, &agg, &commit("POD-R003", "1")),
        "already committed",
    );

    // The other direction: a member counted in the aggregate cannot commit on its own, nor be
    // counted by another aggregator it moves to.
    fails(
        &world.flex(&r003, BEFORE, &["CommitCapacity", "dr1", &p(), "1"]),
        "RetailerMSP:POD-R003 is already counted in RetailerMSP:AGG-R's commitment to request dr1",
    );
    ok(&world.flex(&r004, BEFORE, &["LeaveAggregator"]));
    fails(
        &world.flex(
            &people.user("DSOMSP", "Operator"),
            BEFORE,
            &["GetMembership", "RetailerMSP:POD-R004"],
        ),
        "has joined no aggregator",
    );
    join(&mut world, &r004, "RetailerMSP:AGG-R2");
    fails(
        &run(
            &mut world,
            &people.user("RetailerMSP", "Aggregator-R2"),
            &commit("POD-R004", "1"),
        ),
        "RetailerMSP:POD-R004 is already counted in RetailerMSP:AGG-R's commitment to request dr1",
    );

    let request: Request =
        serde_json::from_slice(&ok(&world.flex(&agg, BEFORE, &["GetRequest", "dr1", &p()])))
            .expect("request");
    assert_eq!(request.committed_kw, 10);
    let commitments: Vec<Commitment> = serde_json::from_slice(&ok(&world.flex(
        &agg,
        BEFORE,
        &["GetCommitments", "dr1", &p()],
    )))
    .expect("commitments");
    let listed: Vec<(&str, u64, usize)> = commitments
        .iter()
        .map(|c| (c.account.as_str(), c.kw, c.members.len()))
        .collect();
    assert_eq!(listed, [(C001, 4, 0), (AGG_R, 2, 2), (R002, 4, 0)]);
}

#[test]
fn an_aggregates_delivery_sums_its_members_and_is_paid_and_penalised_on_its_account() {
    let people = people("aggregate-delivery");
    let mut world = registered(&people);
    let dso = people.user("DSOMSP", "Operator");
    let agg = people.user("RetailerMSP", "Aggregator-R");
    let treasury = "DSOMSP:treasury";
    join(
        &mut world,
        &people.user("RetailerMSP", "Prosumer-R002"),
        AGG_R,
    );
    join(
        &mut world,
        &people.user("RetailerMSP", "Prosumer-R003"),
        AGG_R,
    );
    ok(&world.flex(
        &agg,
        BEFORE,
        &["CommitAggregate", "dr1", &p(), "8", "POD-R002, POD-R003"],
    ));
    // R002 as in the prosumer case: baseline 2000, actual 900. R003: baseline 1000 on days
    // 1-3 and 1200 in the period, above its baseline.
    record_history(&mut world, &people);
    let r003 = people.user("DSOMSP", "Meter-R003");
    for day in 1..=3 {
        world.reading("meter-retailer", &r003, PERIOD - day * DAY, 1000, 0);
    }
    let args = ["AttestDelivery", "dr1", &p(), AGG_R];
    fails(
        &world.energy(&dso, AFTER, &["PayFlex", "dr1", &p(), AGG_R]),
        "no attested delivery to pay",
    );
    // Every member needs its own reading for the period.
    fails(
        &world.flex(&dso, AFTER, &args),
        "no meter at POD-R003 has a reading for period",
    );
    world.reading("meter-retailer", &r003, PERIOD, 1200, 0);
    let delivery: Delivery =
        serde_json::from_slice(&ok(&world.flex(&dso, AFTER, &args))).expect("delivery");
    assert_eq!(
        delivery.members,
        [
            MemberDelivery {
                pod: "POD-R002".to_owned(),
                baseline_days: vec![
                    PERIOD - DAY,
                    PERIOD - 2 * DAY,
                    PERIOD - 3 * DAY,
                    PERIOD - 5 * DAY,
                    PERIOD - 6 * DAY
                ],
                baseline_wh: 2000,
                actual_wh: 900,
            },
            MemberDelivery {
                pod: "POD-R003".to_owned(),
                baseline_days: vec![PERIOD - DAY, PERIOD - 2 * DAY, PERIOD - 3 * DAY],
                baseline_wh: 1000,
                actual_wh: 1200,
            },
        ]
    );
    // Pool: baseline 3000, actual 2100, delivered 900 of 2000 committed (8 kW × 250).
    // 900 Wh × 25 c/kWh = 22.5 → 22 c; 1100 Wh × 33 c/kWh = 36.3 → 36 c.
    assert_eq!(
        (
            delivery.account.as_str(),
            delivery.baseline_wh,
            delivery.actual_wh,
            delivery.delivered_wh,
            delivery.committed_wh,
            delivery.credited_wh,
            delivery.shortfall_wh,
            delivery.remuneration_cents,
            delivery.penalty_cents
        ),
        (AGG_R, 3000, 2100, 900, 2000, 900, 1100, 22, 36)
    );
    // Recomputable from the record alone: the pool's figures are the members' sums.
    let baseline: i64 = delivery.members.iter().map(|m| m.baseline_wh).sum();
    let actual: i64 = delivery.members.iter().map(|m| m.actual_wh).sum();
    assert_eq!(
        u64::try_from(baseline - actual).expect("a reduction"),
        delivery.delivered_wh
    );
    fails(&world.flex(&dso, AFTER, &args), "already attested");

    // Paid to, and penalised from, the aggregator's payment account.
    ok(&world.energy(
        &people.user("DSOMSP", "Admin"),
        BEFORE,
        &["IssuePayment", treasury, "1000"],
    ));
    ok(&world.energy(
        &people.user("RetailerMSP", "Admin"),
        BEFORE,
        &["IssuePayment", AGG_R, "100"],
    ));
    let paid: FlexPayment = serde_json::from_slice(&ok(&world.energy(
        &dso,
        AFTER,
        &["PayFlex", "dr1", &p(), AGG_R],
    )))
    .expect("payment");
    assert_eq!(
        (
            paid.remuneration_cents,
            paid.penalty_cents,
            paid.penalty_paid_cents,
            paid.penalty_unpaid_cents
        ),
        (22, 36, 36, 0)
    );
    assert_eq!(
        (world.balance(AGG_R), world.balance(treasury)),
        (100 + 22 - 36, 1000 - 22 + 36)
    );
    assert_eq!((world.balance(R002), world.balance(R003)), (0, 0));
    fails(
        &world.energy(&dso, AFTER, &["PayFlex", "dr1", &p(), AGG_R]),
        "already paid",
    );
    world.check_payment_conservation();
}
