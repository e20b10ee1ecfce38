//! `basic`: Fabric's asset-transfer-basic sample (fabric-samples `asset-transfer-basic`,
//! chaincode-go), the standard benchmark workload, plus a chaincode event on every change.
//!
//! Assets are JSON objects stored under their ID with the sample's field names in the sample's
//! fixed (alphabetical) order, `{"AppraisedValue","Color","ID","Owner","Size"}`, so the bytes
//! equal what the Go and JavaScript samples write. Functions and results:
//!
//! | function | args | payload on success | event |
//! |---|---|---|---|
//! | `InitLedger` | – | – | – |
//! | `CreateAsset` | id, color, size, owner, appraisedValue | – | `CreateAsset` |
//! | `ReadAsset` | id | asset JSON | – |
//! | `UpdateAsset` | id, color, size, owner, appraisedValue | – | `UpdateAsset` |
//! | `DeleteAsset` | id | – | `DeleteAsset` |
//! | `AssetExists` | id | `true` / `false` | – |
//! | `TransferAsset` | id, newOwner | the old owner | `TransferAsset` |
//! | `GetAllAssets` | – | JSON array of assets | – |
//! | `CreateAssets` | prefix, first, count | – | `CreateAssets` |
//!
//! Event payloads are the asset JSON (after the change; for a delete, the deleted asset).
//! Every failure is a status-500 response whose message says what was wrong.
//!
//! `CreateAssets` is not in the sample: it is GridLedger's bulk loader for benchmarks that
//! need a large world state (`gridledger bench --workload basic-update`). One transaction
//! creates the `count` assets `{prefix}{first}` … `{prefix}{first + count - 1}` (decimal
//! numbers, no padding) with the deterministic fields of [`bulk_asset`], after checking like
//! `CreateAsset` that none exists; `count` is 1 to [`MAX_BULK_ASSETS`], so a transaction stays
//! under about 1.5 MB. Its event carries `{"prefix","first","count"}`, not the assets.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use gridledger_proto::protos;

use crate::stub::{ChaincodeStub, StubError, split_contract_function};
use crate::{Chaincode, error, success};

/// The most assets one `CreateAssets` call creates (about 110 bytes of write set and a read
/// each, so about 1.5 MB per transaction at most).
pub const MAX_BULK_ASSETS: u64 = 10_000;

/// The colours `CreateAssets` gives its assets in turn.
const BULK_COLORS: [&str; 6] = ["blue", "red", "green", "yellow", "black", "white"];

/// The contract name `args[0]` may carry as `"SmartContract:Function"` (the Go sample's
/// contract struct, its only and so default contract).
pub const CONTRACT_NAME: &str = "SmartContract";

/// One asset, as the sample stores it. Field order is the JSON order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Asset {
    /// Appraised value.
    #[serde(rename = "AppraisedValue")]
    pub appraised_value: i64,
    /// Colour.
    #[serde(rename = "Color")]
    pub color: String,
    /// Asset id, also its world-state key.
    #[serde(rename = "ID")]
    pub id: String,
    /// Current owner.
    #[serde(rename = "Owner")]
    pub owner: String,
    /// Size.
    #[serde(rename = "Size")]
    pub size: i64,
}

impl Asset {
    /// The stored form: compact JSON in the fixed field order.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an Asset of strings and integers always serializes")
    }
}

/// Why a `basic` function failed (the text becomes the response message).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BasicError {
    /// `CreateAsset` for an ID that is already in the world state.
    #[error("the asset {0} already exists")]
    AssetExists(String),
    /// An operation on an ID that is not in the world state.
    #[error("the asset {0} does not exist")]
    AssetNotFound(String),
    /// Wrong number of arguments.
    #[error(
        "Incorrect number of params for {function}. Expected {expected} ({signature}), received {received}"
    )]
    ArgumentCount {
        /// The function called.
        function: &'static str,
        /// How many parameters it takes.
        expected: usize,
        /// Their names.
        signature: &'static str,
        /// How many were given.
        received: usize,
    },
    /// A numeric parameter that is not a decimal integer.
    #[error(
        "Error managing parameter {name}. Conversion error. Cannot convert passed value {value:?} to int"
    )]
    NotAnInteger {
        /// The parameter name.
        name: &'static str,
        /// The value given.
        value: String,
    },
    /// The stored value of an asset is not valid asset JSON.
    #[error("failed to parse asset {key}: {reason}")]
    CorruptAsset {
        /// The world-state key.
        key: String,
        /// The JSON error.
        reason: String,
    },
    /// A `CreateAssets` parameter that is not a non-negative decimal integer.
    #[error("Error managing parameter {name}. {value:?} is not a non-negative integer")]
    NotACount {
        /// The parameter name.
        name: &'static str,
        /// The value given.
        value: String,
    },
    /// `CreateAssets` asked for no assets or for more than one transaction may create.
    #[error("CreateAssets creates 1 to {MAX_BULK_ASSETS} assets per call, not {0}")]
    BulkCount(u64),
    /// `CreateAssets` numbers that run past the largest 64-bit number.
    #[error("CreateAssets numbers from {first} for {count} assets run past {max}", max = u64::MAX)]
    BulkOverflow {
        /// The first number asked for.
        first: u64,
        /// How many were asked for.
        count: u64,
    },
    /// `args[0]` names a function the contract does not have.
    #[error("Function {0} not found in contract SmartContract")]
    UnknownFunction(String),
    /// `args[0]` is missing or has an empty function name.
    #[error("Blank function name passed")]
    BlankFunction,
    /// `args[0]` names a contract other than this one.
    #[error("Contract not found with name {0}")]
    UnknownContract(String),
    /// A stub operation failed.
    #[error(transparent)]
    Stub(#[from] StubError),
}

/// The assets `InitLedger` writes (the sample's six).
fn initial_assets() -> Vec<Asset> {
    [
        ("asset1", "blue", 5, "Tomoko", 300),
        ("asset2", "red", 5, "Brad", 400),
        ("asset3", "green", 10, "Jin Soo", 500),
        ("asset4", "yellow", 10, "Max", 600),
        ("asset5", "black", 15, "Adriana", 700),
        ("asset6", "white", 15, "Michel", 800),
    ]
    .into_iter()
    .map(|(id, color, size, owner, appraised_value)| Asset {
        appraised_value,
        color: color.to_owned(),
        id: id.to_owned(),
        owner: owner.to_owned(),
        size,
    })
    .collect()
}

/// Asset number `n` of a `CreateAssets` set with `prefix`: ID `{prefix}{n}`, and fields that
/// depend on `n` alone (colour `n mod 6` of blue, red, green, yellow, black, white; size
/// `1 + n mod 20`; owner `Owner{n mod 100}`; appraised value `100 + 10 × (n mod 100)`), so
/// every peer writes the same bytes.
pub fn bulk_asset(prefix: &str, n: u64) -> Asset {
    let small = |m: u64| i64::try_from(n % m).expect("a remainder below 100 fits in i64");
    Asset {
        appraised_value: 100 + 10 * small(100),
        color: BULK_COLORS[usize::try_from(n % 6).expect("a remainder below 6 fits in usize")]
            .to_owned(),
        id: format!("{prefix}{n}"),
        owner: format!("Owner{}", n % 100),
        size: 1 + small(20),
    }
}

/// The event payload of `CreateAssets`.
#[derive(Serialize)]
struct BulkEvent<'a> {
    prefix: &'a str,
    first: u64,
    count: u64,
}

/// Fabric's asset-transfer-basic chaincode.
#[derive(Debug, Clone, Copy, Default)]
pub struct AssetTransferBasic;

impl Chaincode for AssetTransferBasic {
    fn invoke(&self, stub: &mut ChaincodeStub<'_>) -> protos::Response {
        match dispatch(stub) {
            Ok(payload) => success(payload),
            Err(err) => error(err.to_string()),
        }
    }
}

/// Checks the parameter count of `function`.
fn expect_params<'p>(
    function: &'static str,
    signature: &'static str,
    params: &'p [String],
    expected: usize,
) -> Result<&'p [String], BasicError> {
    if params.len() == expected {
        Ok(params)
    } else {
        Err(BasicError::ArgumentCount {
            function,
            expected,
            signature,
            received: params.len(),
        })
    }
}

/// Parses an integer parameter.
fn parse_int(name: &'static str, value: &str) -> Result<i64, BasicError> {
    value.parse().map_err(|_| BasicError::NotAnInteger {
        name,
        value: value.to_owned(),
    })
}

/// The parameters of `CreateAsset` and `UpdateAsset`, as an asset.
fn asset_from_params(function: &'static str, params: &[String]) -> Result<Asset, BasicError> {
    let p = expect_params(
        function,
        "id, color, size, owner, appraisedValue",
        params,
        5,
    )?;
    Ok(Asset {
        id: p[0].clone(),
        color: p[1].clone(),
        size: parse_int("size", &p[2])?,
        owner: p[3].clone(),
        appraised_value: parse_int("appraisedValue", &p[4])?,
    })
}

/// Parses a `CreateAssets` number.
fn parse_count(name: &'static str, value: &str) -> Result<u64, BasicError> {
    // `u64::from_str` takes a leading `+`; only digits are a count here.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BasicError::NotACount {
            name,
            value: value.to_owned(),
        });
    }
    value.parse().map_err(|_| BasicError::NotACount {
        name,
        value: value.to_owned(),
    })
}

/// `CreateAssets(prefix, first, count)`: see the module documentation.
fn create_assets(stub: &mut ChaincodeStub<'_>, params: &[String]) -> Result<(), BasicError> {
    let p = expect_params("CreateAssets", "prefix, first, count", params, 3)?;
    let prefix = &p[0];
    let first = parse_count("first", &p[1])?;
    let count = parse_count("count", &p[2])?;
    if !(1..=MAX_BULK_ASSETS).contains(&count) {
        return Err(BasicError::BulkCount(count));
    }
    let last = first
        .checked_add(count - 1)
        .ok_or(BasicError::BulkOverflow { first, count })?;
    let assets: Vec<Asset> = (first..=last).map(|n| bulk_asset(prefix, n)).collect();
    for asset in &assets {
        if asset_exists(stub, &asset.id)? {
            return Err(BasicError::AssetExists(asset.id.clone()));
        }
    }
    for asset in &assets {
        stub.put_state(&asset.id, &asset.to_json())?;
    }
    let event = BulkEvent {
        prefix,
        first,
        count,
    };
    stub.set_event(
        "CreateAssets",
        &serde_json::to_vec(&event).expect("a string and two integers serialize"),
    )?;
    Ok(())
}

/// Routes `args[0]` to its function.
fn dispatch(stub: &mut ChaincodeStub<'_>) -> Result<Vec<u8>, BasicError> {
    let (name, params) = stub.get_function_and_parameters();
    let (contract, function) = split_contract_function(&name);
    match contract {
        Some(contract) if contract != CONTRACT_NAME => {
            return Err(BasicError::UnknownContract(contract));
        }
        _ => {}
    }
    if function.is_empty() {
        return Err(BasicError::BlankFunction);
    }
    // fabric-contract-api-go exposes exported (capitalised) methods and upper-cases the first
    // letter of the requested name, so `createAsset` reaches `CreateAsset`.
    let mut chars = function.chars();
    let routed: String = chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    match routed.as_str() {
        "InitLedger" => {
            expect_params("InitLedger", "no parameters", &params, 0)?;
            for asset in initial_assets() {
                stub.put_state(&asset.id, &asset.to_json())?;
            }
            Ok(Vec::new())
        }
        "CreateAsset" => {
            let asset = asset_from_params("CreateAsset", &params)?;
            if asset_exists(stub, &asset.id)? {
                return Err(BasicError::AssetExists(asset.id));
            }
            write_asset(stub, &asset, "CreateAsset")?;
            Ok(Vec::new())
        }
        "ReadAsset" => {
            let p = expect_params("ReadAsset", "id", &params, 1)?;
            Ok(read_asset(stub, &p[0])?.to_json())
        }
        "UpdateAsset" => {
            let asset = asset_from_params("UpdateAsset", &params)?;
            if !asset_exists(stub, &asset.id)? {
                return Err(BasicError::AssetNotFound(asset.id));
            }
            write_asset(stub, &asset, "UpdateAsset")?;
            Ok(Vec::new())
        }
        "DeleteAsset" => {
            let p = expect_params("DeleteAsset", "id", &params, 1)?;
            let id = &p[0];
            // The sample only checks existence before deleting; the event carries the value
            // that was deleted.
            let stored = match stub.get_state(id)? {
                Some(value) if !value.is_empty() => value,
                _ => return Err(BasicError::AssetNotFound(id.clone())),
            };
            stub.del_state(id)?;
            stub.set_event("DeleteAsset", &stored)?;
            Ok(Vec::new())
        }
        "AssetExists" => {
            let p = expect_params("AssetExists", "id", &params, 1)?;
            Ok(asset_exists(stub, &p[0])?.to_string().into_bytes())
        }
        "TransferAsset" => {
            let p = expect_params("TransferAsset", "id, newOwner", &params, 2)?;
            let mut asset = read_asset(stub, &p[0])?;
            let old_owner = std::mem::replace(&mut asset.owner, p[1].clone());
            write_asset(stub, &asset, "TransferAsset")?;
            Ok(old_owner.into_bytes())
        }
        "GetAllAssets" => {
            expect_params("GetAllAssets", "no parameters", &params, 0)?;
            let assets = stub
                .get_state_by_range("", "")?
                .into_iter()
                .map(|(key, value)| parse_asset(&key, &value))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(serde_json::to_vec(&assets).expect("assets of strings and integers serialize"))
        }
        "CreateAssets" => {
            create_assets(stub, &params)?;
            Ok(Vec::new())
        }
        _ => Err(BasicError::UnknownFunction(function)),
    }
}

/// Whether `id` has a (non-deleted) value in the world state.
fn asset_exists(stub: &mut ChaincodeStub<'_>, id: &str) -> Result<bool, BasicError> {
    Ok(stub.get_state(id)?.is_some_and(|value| !value.is_empty()))
}

/// Reads and parses asset `id`.
fn read_asset(stub: &mut ChaincodeStub<'_>, id: &str) -> Result<Asset, BasicError> {
    match stub.get_state(id)? {
        Some(value) if !value.is_empty() => parse_asset(id, &value),
        _ => Err(BasicError::AssetNotFound(id.to_owned())),
    }
}

/// Parses a stored asset.
fn parse_asset(key: &str, value: &[u8]) -> Result<Asset, BasicError> {
    serde_json::from_slice(value).map_err(|err| BasicError::CorruptAsset {
        key: key.to_owned(),
        reason: err.to_string(),
    })
}

/// Writes `asset` under its ID and sets the event `event` with its JSON.
fn write_asset(stub: &mut ChaincodeStub<'_>, asset: &Asset, event: &str) -> Result<(), BasicError> {
    let json = asset.to_json();
    stub.put_state(&asset.id, &json)?;
    stub.set_event(event, &json)?;
    Ok(())
}
