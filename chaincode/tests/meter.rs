//! The `meter` chaincode against an in-memory world state with its private data collection:
//! readings written once by the meter itself (identified by its certificate attributes), their
//! quantities only in the collection (salted), reasoned amendments by the DSO only, range reads
//! and totals in time order, and erasure that leaves only the hash as evidence.

mod support;
use support::{fails, ok};

use gridledger_chaincode::meter::{
    AmendedValues, Amendment, MeterReadings, READINGS_COLLECTION, Reading, ReadingRecord, Totals,
};
use gridledger_chaincode::private::private_namespace;
use gridledger_chaincode::{CollectionAccess, Invocation, SimulationResult, StateReader, simulate};
use gridledger_proto::kvrwset::Version;
use gridledger_proto::prost_types::Timestamp;

const NS: &str = "meter";
/// 2026-11-26 12:00:00 UTC, on a 15-minute boundary.
const T0: u64 = 1_795_694_400;

/// The bilateral channel's world state, with the `readings` collection of the DSO and the
/// retailer.
struct MemState(support::World);

impl Default for MemState {
    fn default() -> MemState {
        MemState(support::World::default().with_collection(
            NS,
            READINGS_COLLECTION,
            &["DSOMSP", "RetailerMSP"],
        ))
    }
}

impl MemState {
    /// The state after `result`'s writes.
    fn apply(&mut self, result: &SimulationResult) {
        self.0.apply(result);
    }

    fn contains(&self, key: &str) -> bool {
        self.0
            .entries
            .contains_key(&(NS.to_owned(), key.to_owned()))
    }

    fn value(&self, key: &str) -> Option<&Vec<u8>> {
        self.0
            .entries
            .get(&(NS.to_owned(), key.to_owned()))
            .map(|(v, _)| v)
    }

    /// The private value of `key` in the readings collection, if this state holds it.
    fn private(&self, key: &str) -> Option<&Vec<u8>> {
        self.0
            .entries
            .get(&(private_namespace(NS, READINGS_COLLECTION), key.to_owned()))
            .map(|(v, _)| v)
    }
}

impl StateReader for MemState {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<(Vec<u8>, Version)>, String> {
        self.0.get(namespace, key)
    }

    fn range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>, Version)>, String> {
        self.0.range(namespace, start, end, limit)
    }

    fn collection(
        &self,
        namespace: &str,
        collection: &str,
    ) -> Result<Option<CollectionAccess>, String> {
        self.0.collection(namespace, collection)
    }
}

fn chaincode() -> MeterReadings {
    MeterReadings {
        dso_msp_id: "DSOMSP".to_owned(),
    }
}

/// An invocation by `msp` with certificate attributes `attributes`, at Unix time `now`.
fn call(msp: &str, attributes: &[(&str, &str)], now: u64, args: &[&str]) -> Invocation {
    Invocation {
        channel_id: "meter-retailer".to_owned(),
        tx_id: format!("tx-{now}-{}", args.join("-")),
        chaincode: NS.to_owned(),
        args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
        creator: b"serialized-creator".to_vec(),
        creator_msp_id: msp.to_owned(),
        creator_attributes: attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        timestamp: Some(Timestamp {
            seconds: now as i64,
            nanos: 0,
        }),
        transient: [("salt".to_owned(), SALT.to_vec())].into(),
        ..Invocation::default()
    }
}

/// The salt every test call sends.
const SALT: &[u8] = b"a-salt-of-20-bytes!!";

const METER_1: [(&str, &str); 2] = [("meter", "m-1"), ("pod", "IT001E00000001")];

fn run(state: &MemState, invocation: &Invocation) -> SimulationResult {
    simulate(&chaincode(), NS, invocation, state)
}

fn record(state: &mut MemState, start: u64, import: &str, export: &str) {
    let result = run(
        state,
        &call(
            "DSOMSP",
            &METER_1,
            start + 900,
            &["RecordReading", &start.to_string(), import, export],
        ),
    );
    ok(&result);
    state.apply(&result);
}

#[test]
fn a_meter_records_each_interval_once_under_its_own_identity() {
    let mut state = MemState::default();
    let first = run(
        &state,
        &call(
            "DSOMSP",
            &METER_1,
            T0 + 900,
            &["RecordReading", &T0.to_string(), "1250", "300"],
        ),
    );
    // The response (which goes into the block) is the public record, without quantities.
    let response: ReadingRecord = serde_json::from_slice(&ok(&first)).expect("record JSON");
    assert_eq!(
        (response.meter.as_str(), response.pod.as_str()),
        ("m-1", "IT001E00000001")
    );
    assert!(!String::from_utf8_lossy(&ok(&first)).contains("import_wh"));
    state.apply(&first);
    assert!(state.contains(&format!("reading/m-1/{T0:012}")));
    let reading: Reading = serde_json::from_slice(
        state
            .private(&format!("reading/m-1/{T0:012}"))
            .expect("the value"),
    )
    .expect("reading JSON");
    assert_eq!(
        (
            reading.meter.as_str(),
            reading.pod.as_str(),
            reading.import_wh,
            reading.export_wh
        ),
        ("m-1", "IT001E00000001", 1250, 300)
    );

    // Written once: a second reading for the interval is refused.
    let again = run(
        &state,
        &call(
            "DSOMSP",
            &METER_1,
            T0 + 1000,
            &["RecordReading", &T0.to_string(), "1", "1"],
        ),
    );
    fails(&again, "already recorded");

    // Only meters write, each for itself; intervals are aligned and over.
    let no_meter = call(
        "DSOMSP",
        &[("pod", "IT001E00000001")],
        T0 + 1800,
        &["RecordReading", &(T0 + 900).to_string(), "1", "1"],
    );
    fails(&run(&state, &no_meter), "not a meter");
    // Meters are the DSO's (the metering operator's) identities: a market organization cannot
    // issue its own meter certificates and write readings with them.
    let foreign_meter = call(
        "RetailerMSP",
        &METER_1,
        T0 + 1800,
        &["RecordReading", &(T0 + 900).to_string(), "1", "1"],
    );
    fails(&run(&state, &foreign_meter), "meters are DSOMSP identities");
    let misaligned = call(
        "DSOMSP",
        &METER_1,
        T0 + 1800,
        &["RecordReading", &(T0 + 60).to_string(), "1", "1"],
    );
    fails(&run(&state, &misaligned), "boundary");
    let early = call(
        "DSOMSP",
        &METER_1,
        T0 + 1000,
        &["RecordReading", &(T0 + 900).to_string(), "1", "1"],
    );
    fails(&run(&state, &early), "has not ended");
    let garbage = call(
        "DSOMSP",
        &METER_1,
        T0 + 1800,
        &["RecordReading", &(T0 + 900).to_string(), "-3", "1"],
    );
    fails(&run(&state, &garbage), "whole number");
    let huge = call(
        "DSOMSP",
        &METER_1,
        T0 + 1800,
        &["RecordReading", &(T0 + 900).to_string(), "99999999999", "1"],
    );
    fails(&run(&state, &huge), "more than an interval");
}

#[test]
fn only_the_dso_amends_and_only_with_a_reason() {
    let mut state = MemState::default();
    record(&mut state, T0, "1250", "300");
    let amend = |msp: &str, reason: &str| {
        call(
            msp,
            &[],
            T0 + 7200,
            &[
                "AmendReading",
                "m-1",
                &T0.to_string(),
                "1200",
                "310",
                reason,
            ],
        )
    };
    fails(
        &run(&state, &amend("RetailerMSP", "meter swap")),
        "only the DSO",
    );
    fails(&run(&state, &amend("DSOMSP", "  ")), "needs a reason");
    // A meter is a DSO identity, but it never corrects readings.
    let mut by_meter = amend("DSOMSP", "looks wrong");
    by_meter.creator_attributes = METER_1
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    fails(&run(&state, &by_meter), "meter m-1 may not amend");
    let amended = run(
        &state,
        &amend("DSOMSP", "meter swap: register read by hand"),
    );
    let response: ReadingRecord = serde_json::from_slice(&ok(&amended)).expect("record");
    assert_eq!(response.amendments, 1);
    state.apply(&amended);
    let reading: Reading = serde_json::from_slice(
        state
            .private(&format!("reading/m-1/{T0:012}"))
            .expect("the value"),
    )
    .expect("reading");
    assert_eq!(
        (reading.import_wh, reading.export_wh, reading.amendments),
        (1200, 310, 1)
    );
    let record = state
        .value(&format!("amendment/m-1/{T0:012}/0001"))
        .expect("the amendment is kept");
    let amendment: Amendment = serde_json::from_slice(record).expect("amendment");
    assert_eq!(
        (amendment.amended_by.as_str(), amendment.reason.as_str()),
        ("DSOMSP", "meter swap: register read by hand")
    );
    // The values before are kept, privately: the public record names no quantity.
    assert!(!String::from_utf8_lossy(record).contains("1250"));
    let before: AmendedValues = serde_json::from_slice(
        state
            .private(&format!("amendment/m-1/{T0:012}/0001"))
            .expect("the values before are kept in the collection"),
    )
    .expect("amended values");
    assert_eq!(
        (before.previous_import_wh, before.previous_export_wh),
        (1250, 300)
    );
    let missing = call(
        "DSOMSP",
        &[],
        T0 + 7200,
        &[
            "AmendReading",
            "m-1",
            &(T0 + 900).to_string(),
            "1",
            "1",
            "x",
        ],
    );
    fails(&run(&state, &missing), "no reading");
}

#[test]
fn readings_range_in_time_order_and_total_up() {
    let mut state = MemState::default();
    for (i, (import, export)) in [("100", "0"), ("200", "50"), ("300", "75")]
        .iter()
        .enumerate()
    {
        record(&mut state, T0 + 900 * i as u64, import, export);
    }
    let range = call(
        "DSOMSP",
        &[],
        T0 + 7200,
        &[
            "GetReadings",
            "m-1",
            &T0.to_string(),
            &(T0 + 1800).to_string(),
        ],
    );
    let readings: Vec<Reading> = serde_json::from_slice(&ok(&run(&state, &range))).expect("array");
    assert_eq!(
        readings
            .iter()
            .map(|r| r.interval_start)
            .collect::<Vec<_>>(),
        [T0, T0 + 900],
        "from is included, to is not"
    );
    let totals = call(
        "DSOMSP",
        &[],
        T0 + 7200,
        &[
            "GetTotals",
            "m-1",
            &T0.to_string(),
            &(T0 + 2700).to_string(),
        ],
    );
    let totals: Totals = serde_json::from_slice(&ok(&run(&state, &totals))).expect("totals");
    assert_eq!(
        (totals.intervals, totals.import_wh, totals.export_wh),
        (3, 600, 125)
    );
    let bad_meter = call("DSOMSP", &[], T0, &["GetReading", "m/1", &T0.to_string()]);
    fails(&run(&state, &bad_meter), "meter id");
    fails(
        &run(&state, &call("DSOMSP", &[], T0, &["Nope"])),
        "does not exist",
    );
}

#[test]
fn a_pods_readings_for_an_interval_come_from_every_meter_at_it_and_no_other() {
    let mut state = MemState::default();
    let pod = "IT001E00000001";
    let meters: [[(&str, &str); 2]; 3] = [
        [("meter", "m-2"), ("pod", pod)],
        [("meter", "m-1"), ("pod", pod)],
        [("meter", "m-3"), ("pod", "IT001E00000002")],
    ];
    for (i, attributes) in meters.iter().enumerate() {
        for start in [T0, T0 + 900] {
            let import = (100 * (i + 1) as u64 + start - T0).to_string();
            let result = run(
                &state,
                &call(
                    "DSOMSP",
                    attributes,
                    start + 900,
                    &["RecordReading", &start.to_string(), &import, "0"],
                ),
            );
            ok(&result);
            state.apply(&result);
        }
    }
    let query = |pod: &str, start: u64| {
        let result = run(
            &state,
            &call(
                "DSOMSP",
                &[],
                T0 + 7200,
                &["GetPodReadings", pod, &start.to_string()],
            ),
        );
        serde_json::from_slice::<Vec<Reading>>(&ok(&result)).expect("array")
    };
    let first = query(pod, T0);
    assert_eq!(
        first
            .iter()
            .map(|r| (r.meter.as_str(), r.interval_start, r.import_wh))
            .collect::<Vec<_>>(),
        [("m-1", T0, 200), ("m-2", T0, 100)],
        "both meters at the POD, by meter id, for that interval only"
    );
    assert_eq!(query(pod, T0 + 900).len(), 2);
    assert_eq!(query(pod, T0 + 1800), Vec::<Reading>::new());
    assert_eq!(query("IT001E00000002", T0).len(), 1);
    fails(
        &run(
            &state,
            &call(
                "DSOMSP",
                &[],
                T0,
                &["GetPodReadings", "a/b", &T0.to_string()],
            ),
        ),
        "POD",
    );
}

#[test]
fn quantities_live_only_in_the_collection_salted_and_a_salt_is_required() {
    let mut state = MemState::default();
    record(&mut state, T0, "1250", "300");
    let key = format!("reading/m-1/{T0:012}");
    let public =
        String::from_utf8_lossy(state.value(&key).expect("the public record")).into_owned();
    let record: ReadingRecord = serde_json::from_str(&public).expect("record");
    assert_eq!(
        (record.meter.as_str(), record.erased.as_ref()),
        ("m-1", None)
    );
    assert!(
        !public.contains("import_wh") && !public.contains("export_wh"),
        "the public record names no quantity: {public}"
    );
    let private: Reading =
        serde_json::from_slice(state.private(&key).expect("the value in the collection"))
            .expect("reading");
    assert_eq!((private.import_wh, private.export_wh), (1250, 300));
    let salt_hex: String = SALT.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(private.salt, salt_hex, "the value carries the meter's salt");

    let mut unsalted = call(
        "DSOMSP",
        &METER_1,
        T0 + 1800,
        &["RecordReading", &(T0 + 900).to_string(), "1", "1"],
    );
    unsalted.transient.clear();
    fails(&run(&state, &unsalted), "transient `salt`");
    unsalted.transient = [("salt".to_owned(), b"short".to_vec())].into();
    fails(&run(&state, &unsalted), "16 to 64 bytes");
}

#[test]
fn erasure_purges_the_values_and_keeps_the_hash_as_evidence() {
    let mut state = MemState::default();
    for i in 0..3 {
        record(&mut state, T0 + 900 * i, &(100 + i).to_string(), "0");
    }
    let key = |i: u64| format!("reading/m-1/{:012}", T0 + 900 * i);
    let value_hash: String =
        gridledger_chaincode::private::hash(state.private(&key(0)).expect("value"))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    let erase = |msp: &str, attributes: &[(&str, &str)], reason: &str| {
        call(
            msp,
            attributes,
            T0 + 7200,
            &[
                "EraseReadings",
                "m-1",
                &T0.to_string(),
                &(T0 + 1800).to_string(),
                reason,
            ],
        )
    };
    // Neither the meter itself nor an ordinary identity of the market organization erases.
    fails(
        &run(&state, &erase("DSOMSP", &METER_1, "request")),
        "only the DSO's operators",
    );
    fails(
        &run(&state, &erase("RetailerMSP", &[], "request")),
        "only the DSO's operators",
    );
    fails(&run(&state, &erase("DSOMSP", &[], " ")), "needs a reason");
    let erased = run(
        &state,
        &erase(
            "DSOMSP",
            &[],
            "GDPR art. 17 request of the customer at POD IT001E00000001",
        ),
    );
    let records: Vec<ReadingRecord> = serde_json::from_slice(&ok(&erased)).expect("records");
    assert_eq!(records.len(), 2, "[from, to) holds two readings");
    state.apply(&erased);

    // The values are gone from the collection; the third reading is untouched.
    assert!(state.private(&key(0)).is_none() && state.private(&key(1)).is_none());
    assert!(state.private(&key(2)).is_some());
    // The public record keeps the evidence: the value's hash, why, by whom, when.
    let record: ReadingRecord =
        serde_json::from_slice(state.value(&key(0)).expect("record")).expect("record");
    let erasure = record.erased.expect("marked erased");
    assert_eq!(erasure.value_hash, value_hash);
    assert!(erasure.reason.starts_with("GDPR art. 17"));
    assert_eq!(erasure.erased_by, "DSOMSP");

    // Reads leave erased readings out or say they were erased; nothing is erased twice.
    fails(
        &run(
            &state,
            &call(
                "DSOMSP",
                &[],
                T0 + 7200,
                &["GetReading", "m-1", &T0.to_string()],
            ),
        ),
        "was erased",
    );
    let readings = run(
        &state,
        &call(
            "DSOMSP",
            &[],
            T0 + 7200,
            &[
                "GetReadings",
                "m-1",
                &T0.to_string(),
                &(T0 + 2700).to_string(),
            ],
        ),
    );
    let readings: Vec<Reading> = serde_json::from_slice(&ok(&readings)).expect("readings");
    assert_eq!(
        readings.iter().map(|r| r.import_wh).collect::<Vec<_>>(),
        [102]
    );
    let pod = run(
        &state,
        &call(
            "DSOMSP",
            &[],
            T0 + 7200,
            &["GetPodReadings", "IT001E00000001", &T0.to_string()],
        ),
    );
    assert_eq!(ok(&pod), b"[]");
    fails(
        &run(&state, &erase("DSOMSP", &[], "again")),
        "no reading to erase",
    );
    let amend = call(
        "DSOMSP",
        &[],
        T0 + 7200,
        &["AmendReading", "m-1", &T0.to_string(), "1", "1", "fix"],
    );
    fails(&run(&state, &amend), "was erased");
}
