//! `meter`: smart-meter readings on a bilateral channel (one market organization and the DSO).
//!
//! A reading is a 15-minute interval's imported and exported energy of one meter, in Wh
//! (integers: no rounding differences between peers). It is written by the meter itself, an
//! identity of the DSO (the metering operator): the creator's certificate carries the Fabric-CA
//! attributes `meter` (its id) and `pod` (its point of delivery), and those — not arguments —
//! say whose reading it is, so no identity can write another meter's readings, and no market
//! organization can issue meter certificates of its own. An interval's reading is written once; a correction is an explicit
//! amendment by the DSO (the metering operator) with a reason, and the previous values are kept
//! in the amendment record. Who may read is decided by the channel: only its two organizations
//! are members.
//!
//! | function | args | payload |
//! |---|---|---|
//! | `RecordReading` | interval_start, import_wh, export_wh | the reading JSON |
//! | `AmendReading` | meter, interval_start, import_wh, export_wh, reason | the reading JSON |
//! | `GetReading` | meter, interval_start | the reading JSON |
//! | `GetReadings` | meter, from, to | JSON array of readings with from ≤ interval_start < to |
//! | `GetTotals` | meter, from, to | `{"meter","from","to","intervals","import_wh","export_wh"}` |
//! | `GetPodReadings` | pod, interval_start | JSON array of the readings of every meter at the POD for that interval, by meter id |
//!
//! `interval_start` is a Unix time in seconds, a multiple of 900. Keys are plain keys
//! `reading/<meter>/<interval_start, 12 digits>`, `amendment/<meter>/<interval>/<n, 4 digits>`
//! and the POD index `pod/<pod>/<interval>/<meter>` (meter and POD ids are letters, digits,
//! `.`, `_` and `-`), so a meter's readings range-scan in time order with an ordinary range
//! query, and a POD's readings for an interval — what the DSO attests to the market — with
//! another. `GetPodReadings`' payload is the exact byte string the market's attestation
//! commits to (see [`crate::energy`]).

use serde::{Deserialize, Serialize};

use gridledger_proto::protos;

use crate::arguments::{check_name, expect_args, to_json};
use crate::stub::{ChaincodeStub, StubError};
use crate::{Chaincode, error, success};

/// Length of a metering interval, seconds.
pub const INTERVAL_SECONDS: u64 = 900;
/// The largest energy one interval may carry, Wh (10 MWh in 15 minutes is 40 MW: no meter on
/// a distribution feeder); larger values are refused as garbage.
pub const MAX_INTERVAL_WH: u64 = 10_000_000;
/// Certificate attribute naming the meter.
pub const METER_ATTRIBUTE: &str = "meter";
/// Certificate attribute naming the point of delivery.
pub const POD_ATTRIBUTE: &str = "pod";

const READING: &str = "reading";
const AMENDMENT: &str = "amendment";
const POD_INDEX: &str = "pod";

/// Meter ids name keys: letters, digits, `.`, `_`, `-`, at most 64.
fn check_meter_id(meter: &str) -> Result<(), String> {
    check_name("meter id", meter, 64, b"")
}

/// POD ids name keys too, under the same rule.
fn check_pod(pod: &str) -> Result<(), String> {
    check_name("POD", pod, 64, b"")
}

/// One interval's reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    /// The meter id.
    pub meter: String,
    /// Its point of delivery.
    pub pod: String,
    /// The MSP of the identity that recorded it.
    pub msp: String,
    /// Interval start, Unix seconds.
    pub interval_start: u64,
    /// Energy imported from the grid, Wh.
    pub import_wh: u64,
    /// Energy exported to the grid, Wh.
    pub export_wh: u64,
    /// The recording transaction.
    pub tx_id: String,
    /// The recording transaction's timestamp, Unix seconds.
    pub recorded_at: i64,
    /// How many amendments changed it.
    pub amendments: u32,
}

/// An amendment: who changed a reading, why, and the values before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amendment {
    /// The meter id.
    pub meter: String,
    /// Interval start, Unix seconds.
    pub interval_start: u64,
    /// The amendment's number (from 1).
    pub number: u32,
    /// Imported energy before, Wh.
    pub previous_import_wh: u64,
    /// Exported energy before, Wh.
    pub previous_export_wh: u64,
    /// Imported energy after, Wh.
    pub import_wh: u64,
    /// Exported energy after, Wh.
    pub export_wh: u64,
    /// Why.
    pub reason: String,
    /// The MSP that amended it.
    pub amended_by: String,
    /// The amending transaction.
    pub tx_id: String,
}

/// Totals of a meter over a time range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// The meter id.
    pub meter: String,
    /// First interval start included.
    pub from: u64,
    /// End (exclusive).
    pub to: u64,
    /// Intervals with a reading.
    pub intervals: u64,
    /// Imported energy, Wh.
    pub import_wh: u64,
    /// Exported energy, Wh.
    pub export_wh: u64,
}

/// The `meter` chaincode; `dso_msp_id` is the MSP allowed to amend readings.
#[derive(Debug, Clone)]
pub struct MeterReadings {
    /// The DSO's MSP id.
    pub dso_msp_id: String,
}

impl Chaincode for MeterReadings {
    fn invoke(&self, stub: &mut ChaincodeStub<'_>) -> protos::Response {
        let (function, args) = stub.get_function_and_parameters();
        let outcome = match function.as_str() {
            "RecordReading" => self.record(stub, &args),
            "AmendReading" => self.amend(stub, &args),
            "GetReading" => get_reading(stub, &args),
            "GetReadings" => get_readings(stub, &args).map(|r| to_json(&r)),
            "GetTotals" => get_totals(stub, &args),
            "GetPodReadings" => get_pod_readings(stub, &args).map(|r| to_json(&r)),
            other => Err(format!(
                "function {other:?} does not exist in meter (RecordReading, AmendReading, GetReading, GetReadings, GetTotals, GetPodReadings)"
            )),
        };
        match outcome {
            Ok(payload) => success(payload),
            Err(message) => error(message),
        }
    }
}

fn state(e: StubError) -> String {
    e.to_string()
}

fn energy(what: &str, text: &str) -> Result<u64, String> {
    let wh: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{what} {text:?} is not a whole number of Wh"))?;
    if wh > MAX_INTERVAL_WH {
        return Err(format!(
            "{what} {wh} Wh is more than an interval can carry ({MAX_INTERVAL_WH} Wh)"
        ));
    }
    Ok(wh)
}

fn interval(text: &str) -> Result<u64, String> {
    let start: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("interval start {text:?} is not a Unix time in seconds"))?;
    if start % INTERVAL_SECONDS != 0 {
        return Err(format!(
            "interval start {start} is not on a {INTERVAL_SECONDS}-second boundary"
        ));
    }
    Ok(start)
}

fn reading_key(meter: &str, start: u64) -> Result<String, String> {
    check_meter_id(meter)?;
    Ok(format!("{READING}/{meter}/{start:012}"))
}

fn pod_index_key(pod: &str, start: u64, meter: &str) -> String {
    format!("{POD_INDEX}/{pod}/{start:012}/{meter}")
}

fn load(stub: &mut ChaincodeStub<'_>, meter: &str, start: u64) -> Result<Option<Reading>, String> {
    let key = reading_key(meter, start)?;
    match stub.get_state(&key).map_err(state)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("the stored reading {meter}@{start} is corrupt: {e}")),
    }
}

fn timestamp_secs(stub: &ChaincodeStub<'_>) -> i64 {
    stub.timestamp().map_or(0, |t| t.seconds)
}

impl MeterReadings {
    fn record(&self, stub: &mut ChaincodeStub<'_>, args: &[String]) -> Result<Vec<u8>, String> {
        let args = expect_args(
            args,
            &["interval_start", "import_wh", "export_wh"],
            "RecordReading",
        )?;
        let meter = stub
            .attribute(METER_ATTRIBUTE)
            .map(str::to_owned)
            .ok_or("the creator is not a meter: its certificate has no `meter` attribute")?;
        let pod = stub
            .attribute(POD_ATTRIBUTE)
            .map(str::to_owned)
            .ok_or("the meter's certificate has no `pod` attribute")?;
        if stub.creator_msp_id() != self.dso_msp_id {
            return Err(format!(
                "meters are {} identities; {meter} is an identity of {}",
                self.dso_msp_id,
                stub.creator_msp_id()
            ));
        }
        check_meter_id(&meter)?;
        check_pod(&pod)?;
        let start = interval(&args[0])?;
        let import_wh = energy("import", &args[1])?;
        let export_wh = energy("export", &args[2])?;
        let recorded_at = timestamp_secs(stub);
        if i64::try_from(start).is_ok_and(|s| s + INTERVAL_SECONDS as i64 > recorded_at) {
            return Err(format!(
                "the interval starting at {start} has not ended at the transaction's time {recorded_at}"
            ));
        }
        if load(stub, &meter, start)?.is_some() {
            return Err(format!(
                "a reading for meter {meter} interval {start} is already recorded; corrections are amendments by the DSO"
            ));
        }
        let reading = Reading {
            meter: meter.clone(),
            pod,
            msp: stub.creator_msp_id().to_owned(),
            interval_start: start,
            import_wh,
            export_wh,
            tx_id: stub.tx_id().to_owned(),
            recorded_at,
            amendments: 0,
        };
        let bytes = to_json(&reading);
        stub.put_state(&reading_key(&meter, start)?, &bytes)
            .map_err(state)?;
        stub.put_state(
            &pod_index_key(&reading.pod, start, &meter),
            meter.as_bytes(),
        )
        .map_err(state)?;
        Ok(bytes)
    }

    fn amend(&self, stub: &mut ChaincodeStub<'_>, args: &[String]) -> Result<Vec<u8>, String> {
        let args = expect_args(
            args,
            &[
                "meter",
                "interval_start",
                "import_wh",
                "export_wh",
                "reason",
            ],
            "AmendReading",
        )?;
        if stub.creator_msp_id() != self.dso_msp_id {
            return Err(format!(
                "only the DSO ({}) amends readings, not {}",
                self.dso_msp_id,
                stub.creator_msp_id()
            ));
        }
        // Meters are DSO identities, but a meter never corrects readings, its own or others'.
        if let Some(meter) = stub.attribute(METER_ATTRIBUTE) {
            return Err(format!(
                "meter {meter} may not amend readings: only the DSO's operators may"
            ));
        }
        let meter = args[0].trim();
        let start = interval(&args[1])?;
        let import_wh = energy("import", &args[2])?;
        let export_wh = energy("export", &args[3])?;
        let reason = args[4].trim();
        if reason.is_empty() {
            return Err("an amendment needs a reason".to_string());
        }
        let mut reading = load(stub, meter, start)?
            .ok_or_else(|| format!("no reading of meter {meter} interval {start} to amend"))?;
        let amendment = Amendment {
            meter: meter.to_owned(),
            interval_start: start,
            number: reading.amendments + 1,
            previous_import_wh: reading.import_wh,
            previous_export_wh: reading.export_wh,
            import_wh,
            export_wh,
            reason: reason.to_owned(),
            amended_by: stub.creator_msp_id().to_owned(),
            tx_id: stub.tx_id().to_owned(),
        };
        let amendment_key = format!("{AMENDMENT}/{meter}/{start:012}/{:04}", amendment.number);
        stub.put_state(&amendment_key, &to_json(&amendment))
            .map_err(state)?;
        reading.import_wh = import_wh;
        reading.export_wh = export_wh;
        reading.amendments = amendment.number;
        let bytes = to_json(&reading);
        stub.put_state(&reading_key(meter, start)?, &bytes)
            .map_err(state)?;
        Ok(bytes)
    }
}

fn get_reading(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Result<Vec<u8>, String> {
    let args = expect_args(args, &["meter", "interval_start"], "GetReading")?;
    let meter = args[0].trim();
    let start = interval(&args[1])?;
    load(stub, meter, start)?
        .map(|r| to_json(&r))
        .ok_or_else(|| format!("no reading of meter {meter} interval {start}"))
}

fn get_readings(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Result<Vec<Reading>, String> {
    let args = expect_args(args, &["meter", "from", "to"], "GetReadings")?;
    let meter = args[0].trim();
    let from = interval(&args[1])?;
    let to = interval(&args[2])?;
    if to < from {
        return Err(format!("the range [{from}, {to}) ends before it starts"));
    }
    let start_key = reading_key(meter, from)?;
    let end_key = reading_key(meter, to)?;
    stub.get_state_by_range(&start_key, &end_key)
        .map_err(state)?
        .into_iter()
        .map(|(key, bytes)| {
            serde_json::from_slice(&bytes)
                .map_err(|e| format!("the stored reading {key:?} is corrupt: {e}"))
        })
        .collect()
}

fn get_totals(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Result<Vec<u8>, String> {
    let readings = get_readings(stub, args)?;
    let mut totals = Totals {
        meter: args[0].trim().to_owned(),
        from: interval(&args[1])?,
        to: interval(&args[2])?,
        intervals: 0,
        import_wh: 0,
        export_wh: 0,
    };
    for r in readings {
        totals.intervals += 1;
        totals.import_wh += r.import_wh;
        totals.export_wh += r.export_wh;
    }
    Ok(to_json(&totals))
}

/// The readings of every meter at a POD for one interval, by meter id (empty when none).
fn get_pod_readings(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Result<Vec<Reading>, String> {
    let args = expect_args(args, &["pod", "interval_start"], "GetPodReadings")?;
    let pod = args[0].trim();
    check_pod(pod)?;
    let start = interval(&args[1])?;
    // `/` + 1 is `0`: the range holds exactly the keys under `pod/<pod>/<start>/`.
    let from = format!("{POD_INDEX}/{pod}/{start:012}/");
    let to = format!("{POD_INDEX}/{pod}/{start:012}0");
    let meters = stub.get_state_by_range(&from, &to).map_err(state)?;
    let mut readings = Vec::with_capacity(meters.len());
    for (key, meter) in meters {
        let meter = String::from_utf8(meter)
            .map_err(|_| format!("the POD index entry {key:?} is corrupt"))?;
        let reading = load(stub, &meter, start)?.ok_or_else(|| {
            format!("the POD index names meter {meter}, which has no reading for {start}")
        })?;
        readings.push(reading);
    }
    Ok(readings)
}
