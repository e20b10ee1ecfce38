//! The in-memory world state the chaincode tests read through: entries by (namespace, key),
//! with the point and range reads a `StateReader` answers. Each test binary compiles this
//! module on its own.
#![allow(dead_code)]

use std::collections::BTreeMap;

use gridledger_proto::kvrwset::Version;

/// (namespace, key) → (value, version).
pub type Entries = BTreeMap<(String, String), (Vec<u8>, Version)>;

/// The value and version of `key` in `namespace`.
pub fn get(entries: &Entries, namespace: &str, key: &str) -> Option<(Vec<u8>, Version)> {
    entries
        .get(&(namespace.to_owned(), key.to_owned()))
        .cloned()
}

/// The keys of `namespace` in `[start, end)` (an empty `end`: no bound), at most `limit`.
pub fn range(
    entries: &Entries,
    namespace: &str,
    start: &str,
    end: &str,
    limit: usize,
) -> Vec<(String, Vec<u8>, Version)> {
    entries
        .iter()
        .filter(|((ns, key), _)| {
            ns == namespace && key.as_str() >= start && (end.is_empty() || key.as_str() < end)
        })
        .take(limit)
        .map(|((_, key), (value, version))| (key.clone(), value.clone(), *version))
        .collect()
}
