//! `privatedata`: a small built-in chaincode over private data collections, for networks that
//! want private values without writing chaincode, and for testing collections end to end.
//!
//! Functions (arguments are strings; values come from the transient map so they never
//! appear in the proposal that reaches the ordering service):
//! - `PutPrivate(collection, key)` — writes transient `value` to `key` of `collection`.
//! - `GetPrivate(collection, key)` — the value (empty when the key does not exist).
//! - `GetPrivateHash(collection, key)` — the hex SHA-256 of the value (empty when missing).
//! - `DelPrivate(collection, key)` — deletes the key.
//! - `PurgePrivate(collection, key)` — purges the key: values go, hashes stay in blocks.
//! - `RangePrivate(collection, start, end)` — `key=value` lines of the keys in `[start, end)`.

use crate::private::hashed_key;
use crate::{Chaincode, ChaincodeStub, error, success};
use gridledger_proto::protos;

/// The transient map entry `PutPrivate` writes.
pub const TRANSIENT_VALUE: &str = "value";

/// The `privatedata` chaincode.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrivateData;

impl Chaincode for PrivateData {
    fn invoke(&self, stub: &mut ChaincodeStub<'_>) -> protos::Response {
        let (function, args) = stub.get_function_and_parameters();
        let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
        let expect = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "{function} takes {n} arguments, got {}",
                    args.len()
                ))
            }
        };
        let outcome: Result<Vec<u8>, String> = match function.as_str() {
            "PutPrivate" => expect(2).and_then(|()| {
                let value = stub
                    .transient()
                    .get(TRANSIENT_VALUE)
                    .cloned()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        format!(
                            "PutPrivate needs a non-empty {TRANSIENT_VALUE:?} in the transient map"
                        )
                    })?;
                stub.put_private_data(arg(0), arg(1), &value)
                    .map(|()| Vec::new())
                    .map_err(|e| e.to_string())
            }),
            "GetPrivate" => expect(2).and_then(|()| {
                stub.get_private_data(arg(0), arg(1))
                    .map(Option::unwrap_or_default)
                    .map_err(|e| e.to_string())
            }),
            "GetPrivateHash" => expect(2).and_then(|()| {
                stub.get_private_data_hash(arg(0), arg(1))
                    .map(|h| h.map(|h| hashed_key(&h)).unwrap_or_default().into_bytes())
                    .map_err(|e| e.to_string())
            }),
            "DelPrivate" => expect(2).and_then(|()| {
                stub.del_private_data(arg(0), arg(1))
                    .map(|()| Vec::new())
                    .map_err(|e| e.to_string())
            }),
            "PurgePrivate" => expect(2).and_then(|()| {
                stub.purge_private_data(arg(0), arg(1))
                    .map(|()| Vec::new())
                    .map_err(|e| e.to_string())
            }),
            "RangePrivate" => expect(3).and_then(|()| {
                stub.get_private_data_by_range(arg(0), arg(1), arg(2))
                    .map(|rows| {
                        rows.into_iter()
                            .map(|(k, v)| format!("{k}={}\n", String::from_utf8_lossy(&v)))
                            .collect::<String>()
                            .into_bytes()
                    })
                    .map_err(|e| e.to_string())
            }),
            other => Err(format!("unknown function {other:?}")),
        };
        match outcome {
            Ok(payload) => success(payload),
            Err(message) => error(message),
        }
    }
}
