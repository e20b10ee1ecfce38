//! The `energy` chaincode against an in-memory world state, with real identities (crypto
//! material generated like the local consortium's: admins by OU, prosumers by their `pod`
//! attribute): payment issued only by an account's own organization's admin, offers, bids with
//! their largest payment escrowed, and escrowed trades from either up to gate closure, DSO attestations minting e-tokens after the period, settlement
//! moving them against payment with refunds and imbalance, burning against consumption, and
//! conservation of both supplies throughout. Attestations are checked against the readings of
//! the `meter` chaincode on in-memory bilateral channels, as the peer's cross-channel call
//! would read them.

mod support;
use support::{fails, ok};

use std::collections::BTreeMap;

use gridledger_chaincode::energy::{Attestation, Balance, Bid, EnergyMarket, Supply, Trade};
use gridledger_chaincode::meter::MeterReadings;
use gridledger_chaincode::stub::{ChaincodeHost, ChaincodeStub};
use gridledger_chaincode::{
    Chaincode, Invocation, SimulationResult, StateReader, simulate, simulate_with_host,
};
use gridledger_proto::kvrwset::{KvrwSet, Version};
use gridledger_proto::prost::Message;
use gridledger_proto::protos::Response;

const NS: &str = "energy";
const METER_NS: &str = "meter";
/// A delivery period: 2026-11-26 13:00 UTC.
const PERIOD: i64 = 1_795_698_000;

#[derive(Default)]
struct MemState(BTreeMap<String, Vec<u8>>);

impl MemState {
    fn apply(&mut self, result: &SimulationResult) {
        for ns in &result.rwset.ns_rwset {
            let kv = KvrwSet::decode(ns.rwset.as_slice()).expect("KVRWSet");
            for w in kv.writes {
                self.0.insert(w.key, w.value);
            }
        }
    }
}

impl StateReader for MemState {
    fn get(&self, _: &str, key: &str) -> Result<Option<(Vec<u8>, Version)>, String> {
        Ok(self.0.get(key).map(|v| (v.clone(), Version::default())))
    }

    fn range(
        &self,
        _: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>, Version)>, String> {
        Ok(self
            .0
            .iter()
            .filter(|(k, _)| k.as_str() >= start && (end.is_empty() || k.as_str() < end))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone(), Version::default()))
            .collect())
    }
}

/// The bilateral channels' world states (namespace `meter`), as the peer hosts them for the
/// market's cross-channel reads.
#[derive(Default)]
struct MeterChannels(BTreeMap<String, support::World>);

impl ChaincodeHost for MeterChannels {
    fn run(&self, name: &str, stub: &mut ChaincodeStub<'_>) -> Result<Response, String> {
        if name != METER_NS {
            return Err(format!("chaincode {name} is not defined"));
        }
        Ok(meter_chaincode().invoke(stub))
    }

    fn channel_state(&self, channel_id: &str) -> Result<Box<dyn StateReader + '_>, String> {
        let state = self
            .0
            .get(channel_id)
            .ok_or_else(|| format!("channel {channel_id} is not joined"))?;
        Ok(Box::new(state.clone()))
    }
}

impl MeterChannels {
    /// Records a reading on `channel` as meter identity `meter`, after the interval.
    fn record(&mut self, channel: &str, meter: &Who, interval: i64, import: u64, export: u64) {
        let invocation = support::reading_invocation(channel, meter, interval, import, export);
        let state = self
            .0
            .entry(channel.to_owned())
            .or_insert_with(|| support::meter_channel(channel));
        let result = simulate(&meter_chaincode(), METER_NS, &invocation, state);
        ok(&result);
        state.apply(&result);
    }

    /// `GetPodReadings` on `channel`: the bytes an attestation commits to.
    fn pod_readings(&self, channel: &str, pod: &str, interval: i64) -> Vec<u8> {
        let invocation = Invocation {
            channel_id: channel.to_owned(),
            tx_id: "query".to_owned(),
            chaincode: METER_NS.to_owned(),
            args: vec![
                b"GetPodReadings".to_vec(),
                pod.as_bytes().to_vec(),
                interval.to_string().into_bytes(),
            ],
            creator_msp_id: "DSOMSP".to_owned(),
            ..Invocation::default()
        };
        ok(&simulate(
            &meter_chaincode(),
            METER_NS,
            &invocation,
            &self.0[channel],
        ))
    }
}

fn meter_chaincode() -> MeterReadings {
    MeterReadings {
        dso_msp_id: "DSOMSP".to_owned(),
    }
}

use support::{People, Who};

/// The identities of the test consortium.
fn people(test: &str) -> People {
    support::People::new(
        &format!("energy-{test}"),
        serde_json::json!([
            {"msp_id": "DSOMSP", "users": [
                {"name": "Operator"},
                {"name": "Meter-R002", "attributes": {"meter": "MTR-R002", "pod": "POD-R002"}},
                {"name": "Meter-C001", "attributes": {"meter": "MTR-C001", "pod": "POD-C001"}}
            ]},
            {"msp_id": "RetailerMSP", "users": [
                {"name": "Clerk"},
                {"name": "Prosumer-R002", "attributes": {"pod": "POD-R002"}}
            ]},
            {"msp_id": "CommunityMSP", "users": [
                {"name": "Prosumer-C001", "attributes": {"pod": "POD-C001"}}
            ]}
        ]),
    )
}

fn market() -> EnergyMarket {
    EnergyMarket {
        dso_msp_id: "DSOMSP".to_owned(),
    }
}

fn run(state: &mut MemState, who: &Who, at: i64, args: &[&str]) -> SimulationResult {
    run_with(state, &MeterChannels::default(), who, at, args, &[])
}

/// `run` with the bilateral channels' states and transient data.
fn run_with(
    state: &mut MemState,
    meters: &MeterChannels,
    who: &Who,
    at: i64,
    args: &[&str],
    transient: &[(&str, &[u8])],
) -> SimulationResult {
    let mut invocation = support::invocation("market", NS, who, at, args);
    invocation.transient = transient
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
        .collect();
    let result = simulate_with_host(&market(), NS, &invocation, state, meters);
    if result.response.status == 200 {
        state.apply(&result);
    }
    result
}

fn balance(state: &mut MemState, who: &Who, account: &str) -> Balance {
    serde_json::from_slice(&ok(&run(state, who, PERIOD, &["Balance", account]))).expect("balance")
}

/// Both conservation laws over every account in the state.
fn check_conservation(state: &MemState) {
    let mut supply = Supply::default();
    for (key, value) in &state.0 {
        if key.starts_with("supply/") {
            let s: Supply = serde_json::from_slice(value).expect("supply");
            supply.issued_cents += s.issued_cents;
            supply.minted_wh += s.minted_wh;
            supply.burned_wh += s.burned_wh;
        }
    }
    let (mut tokens, mut cents) = (0u64, 0u64);
    for (key, value) in &state.0 {
        if key.starts_with("balance/") {
            let b: Balance = serde_json::from_slice(value).expect("balance");
            tokens += b.etokens_wh;
            cents += b.payment_cents;
        } else if key.starts_with("trade/") {
            let t: Trade = serde_json::from_slice(value).expect("trade");
            if t.status == "escrowed" {
                cents += t.escrow_cents;
            }
        } else if key.starts_with("bid/") {
            let b: Bid = serde_json::from_slice(value).expect("bid");
            cents += b.escrow_cents;
        }
    }
    assert_eq!(
        tokens,
        supply.minted_wh - supply.burned_wh,
        "e-token supply"
    );
    assert_eq!(cents, supply.issued_cents, "payment supply");
}

#[test]
fn a_trade_from_offer_to_burn_conserves_tokens_and_payment() {
    let people = people("trade");
    let retailer_admin = people.user("RetailerMSP", "Admin");
    let retailer_clerk = people.user("RetailerMSP", "Clerk");
    let buyer = people.user("RetailerMSP", "Prosumer-R002");
    let seller = people.user("CommunityMSP", "Prosumer-C001");
    let dso = people.user("DSOMSP", "Operator");
    let mut state = MemState::default();
    let before = PERIOD - 3600;
    let p = PERIOD.to_string();

    // Payment: only the account's own organization's admin issues it.
    fails(
        &run(
            &mut state,
            &retailer_clerk,
            before,
            &["IssuePayment", "RetailerMSP:POD-R002", "100"],
        ),
        "only an admin",
    );
    fails(
        &run(
            &mut state,
            &retailer_admin,
            before,
            &["IssuePayment", "CommunityMSP:POD-C001", "100"],
        ),
        "own customers",
    );
    ok(&run(
        &mut state,
        &retailer_admin,
        before,
        &["IssuePayment", "RetailerMSP:POD-R002", "10000"],
    ));
    check_conservation(&state);

    // An offer, and a trade from it with the price (37.5 c → 38 c) in escrow.
    ok(&run(
        &mut state,
        &seller,
        before,
        &["PostOffer", "o1", &p, "2000", "25"],
    ));
    fails(
        &run(
            &mut state,
            &retailer_clerk,
            before,
            &["PostOffer", "o2", &p, "1", "1"],
        ),
        "no `pod` attribute",
    );
    // A meter's certificate names its POD too, but a meter does not trade for it.
    fails(
        &run(
            &mut state,
            &people.user("DSOMSP", "Meter-C001"),
            before,
            &["PostOffer", "o2", &p, "1", "1"],
        ),
        "a meter of POD-C001",
    );
    fails(
        &run(
            &mut state,
            &seller,
            before,
            &["AcceptOffer", "t0", "o1", &p, "100"],
        ),
        "its own offer",
    );
    fails(
        &run(
            &mut state,
            &buyer,
            before,
            &["AcceptOffer", "t0", "o1", &p, "2500"],
        ),
        "2000 Wh left",
    );
    let trade: Trade = serde_json::from_slice(&ok(&run(
        &mut state,
        &buyer,
        before,
        &["AcceptOffer", "t1", "o1", &p, "1500"],
    )))
    .expect("trade");
    assert_eq!(
        (
            trade.buyer.as_str(),
            trade.seller_pod.as_str(),
            trade.escrow_cents
        ),
        ("RetailerMSP:POD-R002", "POD-C001", 38)
    );
    assert_eq!(
        balance(&mut state, &buyer, "RetailerMSP:POD-R002").payment_cents,
        9962
    );
    check_conservation(&state);

    // Gate closure, five minutes before the period.
    fails(
        &run(
            &mut state,
            &buyer,
            PERIOD - 299,
            &["AcceptOffer", "t2", "o1", &p, "100"],
        ),
        "gate closure",
    );

    // After the period the DSO attests what the meters on the bilateral channels measured; the
    // market organizations' admins name those channels first.
    let community_admin = people.user("CommunityMSP", "Admin");
    let mut meters = MeterChannels::default();
    let after = PERIOD + 900;
    meters.record(
        "meter-community",
        &people.user("DSOMSP", "Meter-C001"),
        PERIOD,
        0,
        1000,
    );
    meters.record(
        "meter-retailer",
        &people.user("DSOMSP", "Meter-R002"),
        PERIOD,
        1200,
        0,
    );
    let salt: &[u8] = b"sixteen-or-more-bytes";
    let attest = |state: &mut MemState,
                  meters: &MeterChannels,
                  who: &Who,
                  at: i64,
                  account: &str,
                  export: &str,
                  import: &str,
                  salt: &[u8]| {
        let args = ["Attest", &p, account, export, import];
        let transient: Vec<(&str, &[u8])> = if salt.is_empty() {
            Vec::new()
        } else {
            vec![("salt", salt)]
        };
        run_with(state, meters, who, at, &args, &transient)
    };
    let c001 = "CommunityMSP:POD-C001";
    fails(
        &attest(&mut state, &meters, &dso, after, c001, "1000", "0", salt),
        "registered no meter channel",
    );
    fails(
        &run(
            &mut state,
            &dso,
            before,
            &["RegisterMeterChannel", "meter-dso"],
        ),
        "no customers' meters",
    );
    fails(
        &run(
            &mut state,
            &seller,
            before,
            &["RegisterMeterChannel", "meter-x"],
        ),
        "only an admin",
    );
    ok(&run(
        &mut state,
        &community_admin,
        before,
        &["RegisterMeterChannel", "meter-community"],
    ));
    ok(&run(
        &mut state,
        &retailer_admin,
        before,
        &["RegisterMeterChannel", "meter-retailer"],
    ));
    assert_eq!(
        ok(&run(
            &mut state,
            &buyer,
            before,
            &["GetMeterChannel", "RetailerMSP"]
        )),
        b"meter-retailer"
    );
    fails(
        &attest(&mut state, &meters, &seller, after, c001, "1000", "0", salt),
        "only the DSO",
    );
    // Meters are the DSO's identities, but they do not attest.
    let dso_meter = people.user("DSOMSP", "Meter-C001");
    fails(
        &attest(
            &mut state, &meters, &dso_meter, after, c001, "1000", "0", salt,
        ),
        "meter MTR-C001 may not attest",
    );
    fails(
        &attest(
            &mut state,
            &meters,
            &dso,
            PERIOD + 60,
            c001,
            "1000",
            "0",
            salt,
        ),
        "not over",
    );
    fails(
        &attest(&mut state, &meters, &dso, after, c001, "1000", "0", b""),
        "transient `salt`",
    );
    fails(
        &attest(
            &mut state, &meters, &dso, after, c001, "1000", "0", b"short",
        ),
        "16 to 64 bytes",
    );
    // Quantities other than the metered ones are refused, naming both.
    fails(
        &attest(&mut state, &meters, &dso, after, c001, "1500", "0", salt),
        "differ from the metered 1000 Wh / 0 Wh on meter-community",
    );
    // A POD without a reading for the period cannot be attested.
    fails(
        &attest(
            &mut state,
            &meters,
            &dso,
            after,
            "CommunityMSP:POD-C009",
            "0",
            "0",
            salt,
        ),
        "no meter at POD-C009",
    );
    fails(
        &run(&mut state, &dso, after, &["Settle", "t1", &p]),
        "not attested",
    );
    let attested: Attestation = serde_json::from_slice(&ok(&attest(
        &mut state, &meters, &dso, after, c001, "1000", "0", salt,
    )))
    .expect("attestation");
    // The commitment is SHA-256(salt ‖ the POD's readings as the meter channel returns them).
    let mut committed = salt.to_vec();
    committed.extend(meters.pod_readings("meter-community", "POD-C001", PERIOD));
    let digest = gridledger_proto::blockutil::sha256(&committed);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(attested.commitment, hex);
    assert_eq!((attested.export_wh, attested.import_wh), (1000, 0));
    let stored: Attestation = serde_json::from_slice(&ok(&run(
        &mut state,
        &buyer,
        after,
        &["GetAttestation", &p, c001],
    )))
    .expect("attestation");
    assert_eq!(stored, attested);
    fails(
        &attest(&mut state, &meters, &dso, after, c001, "1000", "0", salt),
        "already attested",
    );
    ok(&attest(
        &mut state,
        &meters,
        &dso,
        after,
        "RetailerMSP:POD-R002",
        "0",
        "1200",
        salt,
    ));
    check_conservation(&state);

    // Settlement: 1000 of 1500 Wh delivered, 25 c paid, 13 c refunded, 500 Wh imbalance.
    let settled: Trade =
        serde_json::from_slice(&ok(&run(&mut state, &dso, after, &["Settle", "t1", &p])))
            .expect("trade");
    assert_eq!(
        (
            settled.delivered_wh,
            settled.paid_cents,
            settled.refunded_cents,
            settled.imbalance_wh
        ),
        (1000, 25, 13, 500)
    );
    fails(
        &run(&mut state, &dso, after, &["Settle", "t1", &p]),
        "already settled",
    );
    let buyer_balance = balance(&mut state, &buyer, "RetailerMSP:POD-R002");
    assert_eq!(
        (buyer_balance.payment_cents, buyer_balance.etokens_wh),
        (9975, 1000)
    );
    assert_eq!(
        balance(&mut state, &buyer, "CommunityMSP:POD-C001").payment_cents,
        25
    );
    check_conservation(&state);

    // Burn against the buyer's metered import.
    let burned: Attestation = serde_json::from_slice(&ok(&run(
        &mut state,
        &dso,
        after,
        &["Burn", &p, "RetailerMSP:POD-R002"],
    )))
    .expect("attestation");
    assert_eq!(burned.burned_wh, 1000);
    assert_eq!(
        balance(&mut state, &buyer, "RetailerMSP:POD-R002").etokens_wh,
        0
    );
    check_conservation(&state);
    let supply: Supply =
        serde_json::from_slice(&ok(&run(&mut state, &buyer, after, &["Supply"]))).expect("supply");
    assert_eq!(
        (supply.minted_wh, supply.burned_wh, supply.issued_cents),
        (1000, 1000, 10000)
    );
    // Per account: the seller's minting, the buyer's issuance and burning.
    let of = |state: &mut MemState, account: &str| -> Supply {
        serde_json::from_slice(&ok(&run(state, &buyer, after, &["Supply", account])))
            .expect("supply")
    };
    let seller_supply = of(&mut state, "CommunityMSP:POD-C001");
    assert_eq!(
        (seller_supply.minted_wh, seller_supply.issued_cents),
        (1000, 0)
    );
    let buyer_supply = of(&mut state, "RetailerMSP:POD-R002");
    assert_eq!(
        (buyer_supply.burned_wh, buyer_supply.issued_cents),
        (1000, 10000)
    );
}

#[test]
fn bad_arguments_are_refused_with_the_reason() {
    let people = people("bad-args");
    let buyer = people.user("RetailerMSP", "Prosumer-R002");
    let mut state = MemState::default();
    let p = PERIOD.to_string();
    for (args, needle) in [
        (vec!["PostOffer", "o1", "1795698001", "10", "1"], "boundary"),
        (vec!["PostOffer", "o 1", &p, "10", "1"], "offer id"),
        (
            vec!["PostOffer", "o1", &p, "-10", "1"],
            "whole non-negative",
        ),
        (vec!["PostOffer", "o1", &p, "0", "1"], "some energy"),
        (
            vec!["PostOffer", "o1", &p, "99999999999", "1"],
            "largest allowed",
        ),
        (vec!["PostOffer", "o1", &p], "takes 4 arguments"),
        (vec!["AcceptOffer", "t1", "missing", &p, "10"], "no offer"),
        (vec!["PostBid", "b1", "1795698001", "10", "1"], "boundary"),
        (vec!["PostBid", "b 1", &p, "10", "1"], "bid id"),
        (vec!["PostBid", "b1", &p, "-10", "1"], "whole non-negative"),
        (vec!["PostBid", "b1", &p, "0", "1"], "some energy"),
        (vec!["PostBid", "b1", &p, "10", "100001"], "largest allowed"),
        (vec!["PostBid", "b1", &p], "takes 4 arguments"),
        (vec!["AcceptBid", "t 1", "b1", &p, "10"], "trade id"),
        (vec!["AcceptBid", "t1", "b1", &p, "0"], "some energy"),
        (vec!["AcceptBid", "t1", "missing", &p, "10"], "no bid"),
        (vec!["CancelBid", "missing", &p], "no bid"),
        (vec!["GetBid", "missing", &p], "no bid"),
        (vec!["Nope"], "does not exist"),
    ] {
        fails(&run(&mut state, &buyer, PERIOD - 3600, &args), needle);
    }
}

/// `args` as `who` at `at`, which must succeed, parsed as `T`.
fn parsed<T: serde::de::DeserializeOwned>(
    state: &mut MemState,
    who: &Who,
    at: i64,
    args: &[&str],
) -> T {
    serde_json::from_slice(&ok(&run(state, who, at, args))).expect("a JSON record")
}

#[test]
fn bids_escrow_their_largest_payment_and_settle_like_offers() {
    let people = people("bids");
    let retailer_admin = people.user("RetailerMSP", "Admin");
    let community_admin = people.user("CommunityMSP", "Admin");
    let buyer = people.user("RetailerMSP", "Prosumer-R002");
    let seller = people.user("CommunityMSP", "Prosumer-C001");
    let dso = people.user("DSOMSP", "Operator");
    let mut state = MemState::default();
    let before = PERIOD - 3600;
    let p = PERIOD.to_string();
    let r002 = "RetailerMSP:POD-R002";
    ok(&run(
        &mut state,
        &retailer_admin,
        before,
        &["IssuePayment", r002, "100"],
    ));

    // A bid's largest payment must be there when it is posted: 5 kWh at 30 c is 150 c.
    fails(
        &run(
            &mut state,
            &buyer,
            before,
            &["PostBid", "b1", &p, "5000", "30"],
        ),
        "RetailerMSP:POD-R002 has 100 cents, the bid costs up to 150",
    );
    let bid: Bid = parsed(
        &mut state,
        &buyer,
        before,
        &["PostBid", "b1", &p, "3000", "25"],
    );
    assert_eq!(
        (bid.buyer.as_str(), bid.buyer_pod.as_str(), bid.escrow_cents),
        (r002, "POD-R002", 75)
    );
    assert_eq!(balance(&mut state, &buyer, r002).payment_cents, 25);
    check_conservation(&state);
    fails(
        &run(
            &mut state,
            &buyer,
            before,
            &["PostBid", "b1", &p, "10", "1"],
        ),
        "bid b1 already exists",
    );
    // Who may bid: the same rules as for offers.
    fails(
        &run(
            &mut state,
            &people.user("RetailerMSP", "Clerk"),
            before,
            &["PostBid", "b9", &p, "1", "1"],
        ),
        "no `pod` attribute",
    );
    fails(
        &run(
            &mut state,
            &people.user("DSOMSP", "Meter-R002"),
            before,
            &["PostBid", "b9", &p, "1", "1"],
        ),
        "a meter of POD-R002",
    );
    fails(
        &run(
            &mut state,
            &buyer,
            PERIOD - 299,
            &["PostBid", "b9", &p, "1", "1"],
        ),
        "gate closure",
    );

    // Only its buyer cancels a bid; nobody sells to their own bid, or more than it asks.
    fails(
        &run(&mut state, &seller, before, &["CancelBid", "b1", &p]),
        "only the buyer RetailerMSP:POD-R002 cancels bid b1",
    );
    fails(
        &run(
            &mut state,
            &buyer,
            before,
            &["AcceptBid", "t0", "b1", &p, "100"],
        ),
        "cannot sell to its own bid",
    );
    fails(
        &run(
            &mut state,
            &seller,
            before,
            &["AcceptBid", "t0", "b1", &p, "4000"],
        ),
        "bid b1 has 3000 Wh left, not 4000",
    );

    // A partial acceptance: 1.1 of 3 kWh. The bid keeps the price of the 1.9 kWh left (47.5 c
    // → 48 c); the trade takes the other 27 c, and is sold by the accepting prosumer.
    let trade: Trade = parsed(
        &mut state,
        &seller,
        before,
        &["AcceptBid", "t1", "b1", &p, "1100"],
    );
    assert_eq!(
        (
            trade.seller.as_str(),
            trade.seller_pod.as_str(),
            trade.buyer.as_str(),
            trade.bid_id.as_str(),
            trade.offer_id.as_str(),
            trade.energy_wh,
            trade.price_cents_per_kwh,
            trade.escrow_cents,
            trade.status.as_str(),
        ),
        (
            "CommunityMSP:POD-C001",
            "POD-C001",
            r002,
            "b1",
            "",
            1100,
            25,
            27,
            "escrowed"
        )
    );
    // The same record under the same key as a trade from an offer.
    assert_eq!(
        state.0.get(&format!("trade/{PERIOD:012}/t1")),
        Some(&serde_json::to_vec(&trade).expect("JSON"))
    );
    let got: Trade = parsed(&mut state, &buyer, before, &["GetTrade", "t1", &p]);
    assert_eq!(got, trade);
    let bid: Bid = parsed(&mut state, &seller, before, &["GetBid", "b1", &p]);
    assert_eq!((bid.remaining_wh, bid.escrow_cents), (1900, 48));
    // Accepting the bid takes nothing from the buyer's balance.
    assert_eq!(balance(&mut state, &buyer, r002).payment_cents, 25);
    check_conservation(&state);
    fails(
        &run(
            &mut state,
            &seller,
            before,
            &["AcceptBid", "t1", "b1", &p, "100"],
        ),
        "trade t1 already exists",
    );
    fails(
        &run(
            &mut state,
            &seller,
            PERIOD - 299,
            &["AcceptBid", "t2", "b1", &p, "100"],
        ),
        "gate closure",
    );

    // A bid filled in small parts: the rounding never loses or creates a cent — 3 Wh at
    // 1 c/kWh holds 1 c, which the part that fills the bid takes.
    ok(&run(
        &mut state,
        &buyer,
        before,
        &["PostBid", "b2", &p, "3", "1"],
    ));
    let part: Trade = parsed(
        &mut state,
        &seller,
        before,
        &["AcceptBid", "t3", "b2", &p, "1"],
    );
    let last: Trade = parsed(
        &mut state,
        &seller,
        before,
        &["AcceptBid", "t4", "b2", &p, "2"],
    );
    assert_eq!((part.escrow_cents, last.escrow_cents), (0, 1));
    let filled: Bid = parsed(&mut state, &buyer, before, &["GetBid", "b2", &p]);
    assert_eq!((filled.remaining_wh, filled.escrow_cents), (0, 0));
    fails(
        &run(
            &mut state,
            &seller,
            before,
            &["AcceptBid", "t5", "b2", &p, "1"],
        ),
        "bid b2 has 0 Wh left, not 1",
    );
    check_conservation(&state);

    // Cancelling refunds what the bid still holds, once; a cancelled bid is not accepted.
    ok(&run(
        &mut state,
        &buyer,
        before,
        &["PostBid", "b3", &p, "1000", "10"],
    ));
    assert_eq!(balance(&mut state, &buyer, r002).payment_cents, 14);
    let cancelled: Bid = parsed(&mut state, &buyer, before, &["CancelBid", "b3", &p]);
    assert_eq!(
        (cancelled.status.as_str(), cancelled.escrow_cents),
        ("cancelled", 0)
    );
    assert_eq!(balance(&mut state, &buyer, r002).payment_cents, 24);
    fails(
        &run(&mut state, &buyer, before, &["CancelBid", "b3", &p]),
        "bid b3 is cancelled",
    );
    fails(
        &run(
            &mut state,
            &seller,
            before,
            &["AcceptBid", "t6", "b3", &p, "100"],
        ),
        "bid b3 is cancelled",
    );
    check_conservation(&state);
    // After gate closure the rest of b1 can no longer be bought, so its escrow goes back.
    ok(&run(
        &mut state,
        &buyer,
        PERIOD - 100,
        &["CancelBid", "b1", &p],
    ));
    assert_eq!(balance(&mut state, &buyer, r002).payment_cents, 72);
    check_conservation(&state);

    // Settlement treats trades from bids like any trade: C001 exported 1 kWh of the 1.1 kWh it
    // sold in t1 — 25 c paid, 2 c refunded, 100 Wh imbalance; t3 and t4 then find no e-token
    // left, so t4's cent goes back.
    let mut meters = MeterChannels::default();
    let after = PERIOD + 900;
    meters.record(
        "meter-community",
        &people.user("DSOMSP", "Meter-C001"),
        PERIOD,
        0,
        1000,
    );
    meters.record(
        "meter-retailer",
        &people.user("DSOMSP", "Meter-R002"),
        PERIOD,
        1200,
        0,
    );
    ok(&run(
        &mut state,
        &community_admin,
        before,
        &["RegisterMeterChannel", "meter-community"],
    ));
    ok(&run(
        &mut state,
        &retailer_admin,
        before,
        &["RegisterMeterChannel", "meter-retailer"],
    ));
    let salt: &[u8] = b"sixteen-or-more-bytes";
    for (account, export, import) in [("CommunityMSP:POD-C001", "1000", "0"), (r002, "0", "1200")] {
        ok(&run_with(
            &mut state,
            &meters,
            &dso,
            after,
            &["Attest", &p, account, export, import],
            &[("salt", salt)],
        ));
    }
    check_conservation(&state);
    let settled: Trade = parsed(&mut state, &dso, after, &["Settle", "t1", &p]);
    assert_eq!(
        (
            settled.delivered_wh,
            settled.paid_cents,
            settled.refunded_cents,
            settled.imbalance_wh
        ),
        (1000, 25, 2, 100)
    );
    for id in ["t3", "t4"] {
        let t: Trade = parsed(&mut state, &dso, after, &["Settle", id, &p]);
        assert_eq!((t.delivered_wh, t.paid_cents), (0, 0));
        assert_eq!(t.refunded_cents, t.escrow_cents);
        check_conservation(&state);
    }
    ok(&run(&mut state, &dso, after, &["Burn", &p, r002]));
    check_conservation(&state);
    let bought = balance(&mut state, &buyer, r002);
    assert_eq!((bought.payment_cents, bought.etokens_wh), (75, 0));
    assert_eq!(
        balance(&mut state, &buyer, "CommunityMSP:POD-C001").payment_cents,
        25
    );
}
