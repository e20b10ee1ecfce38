//! The `energy` chaincode against an in-memory world state, with real identities (crypto
//! material generated like the local consortium's: admins by OU, prosumers by their `pod`
//! attribute): payment issued only by an account's own organization's admin, offers and escrowed
//! trades up to gate closure, DSO attestations minting e-tokens after the period, settlement
//! moving them against payment with refunds and imbalance, burning against consumption, and
//! conservation of both supplies throughout. Attestations are checked against the readings of
//! the `meter` chaincode on in-memory bilateral channels, as the peer's cross-channel call
//! would read them.

mod support;
use support::{fails, ok};

use std::collections::BTreeMap;

use gridledger_chaincode::energy::{Attestation, Balance, EnergyMarket, Supply, Trade};
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
        (vec!["Nope"], "does not exist"),
    ] {
        fails(&run(&mut state, &buyer, PERIOD - 3600, &args), needle);
    }
}
