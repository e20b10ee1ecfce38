//! Argument checks shared by the built-in energy-domain chaincodes: how many arguments a
//! function takes, names that become parts of world-state keys, and the JSON of stored records
//! (written and read back with one encoding and one message for a corrupt record).

use serde::{Deserialize, Serialize};

use crate::stub::{ChaincodeStub, StubError};

/// A function's answer: the payload, or why it was refused.
pub(crate) type Outcome = Result<Vec<u8>, String>;

/// A stub error as a refusal message.
pub(crate) fn state(e: StubError) -> String {
    e.to_string()
}

/// The record stored at `key`, if any.
pub(crate) fn get<T: for<'de> Deserialize<'de>>(
    stub: &mut ChaincodeStub<'_>,
    key: &str,
) -> Result<Option<T>, String> {
    match stub.get_state(key).map_err(state)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("the stored record {key} is corrupt: {e}")),
    }
}

/// Stores `value` at `key` as JSON.
pub(crate) fn put<T: Serialize>(
    stub: &mut ChaincodeStub<'_>,
    key: &str,
    value: &T,
) -> Result<(), String> {
    stub.put_state(key, &to_json(value)).map_err(state)
}

/// `args` when it has exactly the arguments `names` lists; otherwise a message naming them.
pub(crate) fn expect_args<'a>(
    args: &'a [String],
    names: &[&str],
    function: &str,
) -> Result<&'a [String], String> {
    if args.len() != names.len() {
        return Err(format!(
            "{function} takes {} arguments ({}), not {}",
            names.len(),
            names.join(", "),
            args.len()
        ));
    }
    Ok(args)
}

/// Checks that `text` may be part of a key: 1 to `max_len` ASCII letters, digits, `.`, `_`,
/// `-`, or one of `extra`.
pub(crate) fn check_name(
    what: &str,
    text: &str,
    max_len: usize,
    extra: &[u8],
) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= max_len
        && text.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') || extra.contains(&b)
        });
    if ok {
        return Ok(());
    }
    let extra: String = extra
        .iter()
        .map(|b| format!(", '{}'", *b as char))
        .collect();
    Err(format!(
        "{what} {text:?} must be 1-{max_len} letters, digits, '.', '_' or '-'{extra}"
    ))
}

/// The stored form of a record: compact JSON.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records of strings and integers always serialize")
}
