//! `meter`: smart-meter readings on a bilateral channel (one market organization and the DSO).
//!
//! A reading is a 15-minute interval's imported and exported energy of one meter, in Wh
//! (integers: no rounding differences between peers). It is written by the meter itself, an
//! identity of the DSO (the metering operator): the creator's certificate carries the Fabric-CA
//! attributes `meter` (its id) and `pod` (its point of delivery), and those — not arguments —
//! say whose reading it is, so no identity can write another meter's readings, and no market
//! organization can issue meter certificates of its own. An interval's reading is written once;
//! a correction is an explicit amendment by the DSO's operators (not a meter) with a reason.
//!
//! **Readings are personal data, kept so that they can be erased.** The quantities live only in
//! the private data collection [`READINGS_COLLECTION`] (defined with the chaincode: the DSO
//! and the channel's market organization, member-only reads and writes), whose values stay on
//! the two organizations' peers; blocks and the public state carry the SHA-256 of each value,
//! and each value includes a salt the meter sends as the transient `salt` (16–64 bytes), so its
//! hash cannot be found by trying plausible readings. The public record of a reading says only
//! that meter M reported interval T in transaction X (and whether it was amended or erased).
//! `EraseReadings` purges the values (Fabric's `PurgePrivateData`: gone from every member peer's
//! state and private store — the peers also compact their ledger files, so no freed page keeps
//! the bytes) and keeps, in the public record, the value's hash as evidence, the reason and the
//! erasing transaction. Responses of writing functions carry only public records, because a
//! response is part of the transaction in the block. An attestation made earlier (the market's salted commitment to the
//! readings) stays verifiable by whoever kept the readings. Not erased: that a reading existed
//! (meter id, POD, interval, transaction), amendment reasons, the hashes in the blocks.
//!
//! | function | who | args | payload |
//! |---|---|---|---|
//! | `RecordReading` | the meter; transient `salt` | interval_start, import_wh, export_wh | the public record JSON |
//! | `AmendReading` | a DSO operator; transient `salt` | meter, interval_start, import_wh, export_wh, reason | the public record JSON |
//! | `EraseReadings` | a DSO operator or an admin | meter, from, to, reason | JSON array of the erased public records |
//! | `GetReading` | members | meter, interval_start | the reading JSON |
//! | `GetRecord` | members | meter, interval_start | the public record JSON |
//! | `GetReadings` | members | meter, from, to | JSON array of readings with from ≤ interval_start < to (erased ones left out) |
//! | `GetTotals` | members | meter, from, to | `{"meter","from","to","intervals","import_wh","export_wh"}` |
//! | `GetPodReadings` | members | pod, interval_start | JSON array of the readings of every meter at the POD for that interval, by meter id (erased ones left out) |
//!
//! `interval_start` is a Unix time in seconds, a multiple of 900. Public keys:
//! `reading/<meter>/<interval_start, 12 digits>` (the record), `amendment/<meter>/<interval>/<n,
//! 4 digits>` (who amended and why) and the POD index `pod/<pod>/<interval>/<meter>`; private
//! keys in [`READINGS_COLLECTION`]: `reading/<meter>/<interval>` (the reading) and
//! `amendment/<meter>/<interval>/<n>` (the values before an amendment). Meter and POD ids are
//! letters, digits, `.`, `_` and `-`. `GetPodReadings`' payload is the exact byte string the
//! market's attestation commits to (see [`crate::energy`]).

use serde::{Deserialize, Serialize};

use gridledger_identity::Certificate;
use gridledger_proto::msp;
use gridledger_proto::prost::Message;
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
/// The private data collection holding the readings' values.
pub const READINGS_COLLECTION: &str = "readings";
/// Transient key of the salt a reading's value is stored with.
pub const SALT_TRANSIENT_KEY: &str = "salt";
/// Salts are at least this long (bytes)…
pub const MIN_SALT_BYTES: usize = 16;
/// …and at most this long.
pub const MAX_SALT_BYTES: usize = 64;
/// The most intervals one `EraseReadings` may erase (a year of one meter's readings), so that
/// a transaction stays of reasonable size.
pub const MAX_ERASE_INTERVALS: usize = 35_040;

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

/// One interval's reading: the private value.
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
    /// The salt (hex) that makes the value's hash unguessable.
    pub salt: String,
}

/// What the public state says of a reading: that it exists, never its quantities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadingRecord {
    /// The meter id.
    pub meter: String,
    /// Its point of delivery.
    pub pod: String,
    /// Interval start, Unix seconds.
    pub interval_start: u64,
    /// The recording transaction.
    pub tx_id: String,
    /// The recording transaction's timestamp, Unix seconds.
    pub recorded_at: i64,
    /// How many amendments changed it.
    pub amendments: u32,
    /// Set when the reading was erased.
    pub erased: Option<Erasure>,
}

/// The evidence an erasure leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    /// SHA-256 (hex) of the erased value, as the ledger held it.
    pub value_hash: String,
    /// Why.
    pub reason: String,
    /// The MSP of the identity that erased it.
    pub erased_by: String,
    /// The erasing transaction.
    pub tx_id: String,
    /// Its timestamp, Unix seconds.
    pub erased_at: i64,
}

/// An amendment's public record: who changed a reading and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amendment {
    /// The meter id.
    pub meter: String,
    /// Interval start, Unix seconds.
    pub interval_start: u64,
    /// The amendment's number (from 1).
    pub number: u32,
    /// Why.
    pub reason: String,
    /// The MSP that amended it.
    pub amended_by: String,
    /// The amending transaction.
    pub tx_id: String,
}

/// An amendment's private part: the values before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmendedValues {
    /// Imported energy before, Wh.
    pub previous_import_wh: u64,
    /// Exported energy before, Wh.
    pub previous_export_wh: u64,
    /// Imported energy after, Wh.
    pub import_wh: u64,
    /// Exported energy after, Wh.
    pub export_wh: u64,
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

/// The `meter` chaincode; `dso_msp_id` is the metering operator's MSP.
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
            "EraseReadings" => self.erase(stub, &args),
            "GetReading" => get_reading(stub, &args),
            "GetRecord" => get_record(stub, &args),
            "GetReadings" => get_readings(stub, &args).map(|r| to_json(&r)),
            "GetTotals" => get_totals(stub, &args),
            "GetPodReadings" => get_pod_readings(stub, &args).map(|r| to_json(&r)),
            other => Err(format!(
                "function {other:?} does not exist in meter (RecordReading, AmendReading, EraseReadings, GetReading, GetRecord, GetReadings, GetTotals, GetPodReadings)"
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

/// `[from, to)` of two interval arguments.
fn interval_range(from: &str, to: &str) -> Result<(u64, u64), String> {
    let (from, to) = (interval(from)?, interval(to)?);
    if to < from {
        return Err(format!("the range [{from}, {to}) ends before it starts"));
    }
    Ok((from, to))
}

fn reading_key(meter: &str, start: u64) -> Result<String, String> {
    check_meter_id(meter)?;
    Ok(format!("{READING}/{meter}/{start:012}"))
}

fn pod_index_key(pod: &str, start: u64, meter: &str) -> String {
    format!("{POD_INDEX}/{pod}/{start:012}/{meter}")
}

fn timestamp_secs(stub: &ChaincodeStub<'_>) -> i64 {
    stub.timestamp().map_or(0, |t| t.seconds)
}

/// The transient salt, hex.
fn salt(stub: &ChaincodeStub<'_>) -> Result<String, String> {
    let salt = stub
        .transient()
        .get(SALT_TRANSIENT_KEY)
        .ok_or("a reading needs the transient `salt` its stored value is made unguessable with")?;
    if !(MIN_SALT_BYTES..=MAX_SALT_BYTES).contains(&salt.len()) {
        return Err(format!(
            "the salt must be {MIN_SALT_BYTES} to {MAX_SALT_BYTES} bytes, not {}",
            salt.len()
        ));
    }
    Ok(salt.iter().map(|b| format!("{b:02x}")).collect())
}

fn load_record(
    stub: &mut ChaincodeStub<'_>,
    meter: &str,
    start: u64,
) -> Result<Option<ReadingRecord>, String> {
    let key = reading_key(meter, start)?;
    match stub.get_state(&key).map_err(state)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("the stored record {meter}@{start} is corrupt: {e}")),
    }
}

/// The private value of a reading that is not erased.
fn load_value(stub: &mut ChaincodeStub<'_>, meter: &str, start: u64) -> Result<Reading, String> {
    let key = reading_key(meter, start)?;
    let bytes = stub
        .get_private_data(READINGS_COLLECTION, &key)
        .map_err(state)?
        .ok_or_else(|| format!("the value of reading {meter}@{start} is not on this peer"))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("the stored reading {meter}@{start} is corrupt: {e}"))
}

/// Whether the creator may act for the DSO: its MSP, and not one of its meters.
fn is_dso_operator(stub: &ChaincodeStub<'_>, dso_msp_id: &str) -> bool {
    stub.creator_msp_id() == dso_msp_id && stub.attribute(METER_ATTRIBUTE).is_none()
}

/// Whether the creator's certificate has the `admin` organizational unit.
fn is_admin(stub: &ChaincodeStub<'_>) -> bool {
    msp::SerializedIdentity::decode(stub.creator())
        .ok()
        .and_then(|id| Certificate::from_pem(&id.id_bytes).ok())
        .is_some_and(|cert| {
            cert.organizational_units
                .iter()
                .any(|ou| ou.eq_ignore_ascii_case("admin"))
        })
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
        let salt = salt(stub)?;
        let recorded_at = timestamp_secs(stub);
        if i64::try_from(start).is_ok_and(|s| s + INTERVAL_SECONDS as i64 > recorded_at) {
            return Err(format!(
                "the interval starting at {start} has not ended at the transaction's time {recorded_at}"
            ));
        }
        if load_record(stub, &meter, start)?.is_some() {
            return Err(format!(
                "a reading for meter {meter} interval {start} is already recorded; corrections are amendments by the DSO"
            ));
        }
        let reading = Reading {
            meter: meter.clone(),
            pod: pod.clone(),
            msp: stub.creator_msp_id().to_owned(),
            interval_start: start,
            import_wh,
            export_wh,
            tx_id: stub.tx_id().to_owned(),
            recorded_at,
            amendments: 0,
            salt,
        };
        let record = ReadingRecord {
            meter: meter.clone(),
            pod: pod.clone(),
            interval_start: start,
            tx_id: reading.tx_id.clone(),
            recorded_at,
            amendments: 0,
            erased: None,
        };
        let key = reading_key(&meter, start)?;
        stub.put_private_data(READINGS_COLLECTION, &key, &to_json(&reading))
            .map_err(state)?;
        // The response goes into the block: it is the public record, never the quantities.
        let public = to_json(&record);
        stub.put_state(&key, &public).map_err(state)?;
        stub.put_state(&pod_index_key(&pod, start, &meter), meter.as_bytes())
            .map_err(state)?;
        Ok(public)
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
        let salt = salt(stub)?;
        let mut record = load_record(stub, meter, start)?
            .ok_or_else(|| format!("no reading of meter {meter} interval {start} to amend"))?;
        if record.erased.is_some() {
            return Err(format!(
                "reading {meter}@{start} was erased; it cannot be amended"
            ));
        }
        let mut reading = load_value(stub, meter, start)?;
        let number = record.amendments + 1;
        let amendment = Amendment {
            meter: meter.to_owned(),
            interval_start: start,
            number,
            reason: reason.to_owned(),
            amended_by: stub.creator_msp_id().to_owned(),
            tx_id: stub.tx_id().to_owned(),
        };
        let values = AmendedValues {
            previous_import_wh: reading.import_wh,
            previous_export_wh: reading.export_wh,
            import_wh,
            export_wh,
        };
        let amendment_key = format!("{AMENDMENT}/{meter}/{start:012}/{number:04}");
        stub.put_state(&amendment_key, &to_json(&amendment))
            .map_err(state)?;
        stub.put_private_data(READINGS_COLLECTION, &amendment_key, &to_json(&values))
            .map_err(state)?;
        reading.import_wh = import_wh;
        reading.export_wh = export_wh;
        reading.amendments = number;
        reading.salt = salt;
        record.amendments = number;
        let key = reading_key(meter, start)?;
        stub.put_private_data(READINGS_COLLECTION, &key, &to_json(&reading))
            .map_err(state)?;
        let public = to_json(&record);
        stub.put_state(&key, &public).map_err(state)?;
        Ok(public)
    }

    fn erase(&self, stub: &mut ChaincodeStub<'_>, args: &[String]) -> Result<Vec<u8>, String> {
        let args = expect_args(args, &["meter", "from", "to", "reason"], "EraseReadings")?;
        if !is_dso_operator(stub, &self.dso_msp_id) && !is_admin(stub) {
            return Err(format!(
                "only the DSO's operators or an organization's admin erase readings, not this {} identity",
                stub.creator_msp_id()
            ));
        }
        let meter = args[0].trim();
        let (from, to) = interval_range(&args[1], &args[2])?;
        let reason = args[3].trim();
        if reason.is_empty() || reason.len() > 512 {
            return Err("an erasure needs a reason of at most 512 bytes".to_string());
        }
        let records = stub
            .get_state_by_range(&reading_key(meter, from)?, &reading_key(meter, to)?)
            .map_err(state)?;
        if records.len() > MAX_ERASE_INTERVALS {
            return Err(format!(
                "{} readings in the range; erase at most {MAX_ERASE_INTERVALS} at once",
                records.len()
            ));
        }
        let erased_at = timestamp_secs(stub);
        let mut erased = Vec::new();
        for (key, bytes) in records {
            let mut record: ReadingRecord = serde_json::from_slice(&bytes)
                .map_err(|e| format!("the stored record {key:?} is corrupt: {e}"))?;
            if record.erased.is_some() {
                continue;
            }
            let hash = stub
                .get_private_data_hash(READINGS_COLLECTION, &key)
                .map_err(state)?
                .unwrap_or_default();
            stub.purge_private_data(READINGS_COLLECTION, &key)
                .map_err(state)?;
            for n in 1..=record.amendments {
                let amendment_key =
                    format!("{AMENDMENT}/{meter}/{:012}/{n:04}", record.interval_start);
                stub.purge_private_data(READINGS_COLLECTION, &amendment_key)
                    .map_err(state)?;
            }
            record.erased = Some(Erasure {
                value_hash: hash.iter().map(|b| format!("{b:02x}")).collect(),
                reason: reason.to_owned(),
                erased_by: stub.creator_msp_id().to_owned(),
                tx_id: stub.tx_id().to_owned(),
                erased_at,
            });
            stub.put_state(&key, &to_json(&record)).map_err(state)?;
            erased.push(record);
        }
        if erased.is_empty() {
            return Err(format!(
                "meter {meter} has no reading to erase in [{from}, {to})"
            ));
        }
        Ok(to_json(&erased))
    }
}

fn get_reading(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Result<Vec<u8>, String> {
    let args = expect_args(args, &["meter", "interval_start"], "GetReading")?;
    let meter = args[0].trim();
    let start = interval(&args[1])?;
    let record = load_record(stub, meter, start)?
        .ok_or_else(|| format!("no reading of meter {meter} interval {start}"))?;
    if record.erased.is_some() {
        return Err(format!("reading {meter}@{start} was erased"));
    }
    load_value(stub, meter, start).map(|r| to_json(&r))
}

fn get_record(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Result<Vec<u8>, String> {
    let args = expect_args(args, &["meter", "interval_start"], "GetRecord")?;
    let meter = args[0].trim();
    let start = interval(&args[1])?;
    load_record(stub, meter, start)?
        .map(|r| to_json(&r))
        .ok_or_else(|| format!("no reading of meter {meter} interval {start}"))
}

fn get_readings(stub: &mut ChaincodeStub<'_>, args: &[String]) -> Result<Vec<Reading>, String> {
    let args = expect_args(args, &["meter", "from", "to"], "GetReadings")?;
    let meter = args[0].trim();
    let (from, to) = interval_range(&args[1], &args[2])?;
    let records = stub
        .get_state_by_range(&reading_key(meter, from)?, &reading_key(meter, to)?)
        .map_err(state)?;
    let mut readings = Vec::with_capacity(records.len());
    for (key, bytes) in records {
        let record: ReadingRecord = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the stored record {key:?} is corrupt: {e}"))?;
        if record.erased.is_none() {
            readings.push(load_value(stub, meter, record.interval_start)?);
        }
    }
    Ok(readings)
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

/// The readings of every meter at a POD for one interval, by meter id (empty when none; erased
/// readings left out).
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
        let record = load_record(stub, &meter, start)?.ok_or_else(|| {
            format!("the POD index names meter {meter}, which has no reading for {start}")
        })?;
        if record.erased.is_none() {
            readings.push(load_value(stub, &meter, start)?);
        }
    }
    Ok(readings)
}
