//! Environment overrides of a node's config file, for containers and service managers that
//! set environment variables more easily than they edit files (Fabric's `CORE_PEER_*` and
//! `ORDERER_GENERAL_*` play this role there).
//!
//! `GRIDLEDGER_PEER_<KEY>` overrides key `<key>` of `peer.toml`, `GRIDLEDGER_ORDERER_<KEY>` of
//! `orderer.toml`. The key is lowercased; a double underscore separates a section from its
//! key: `GRIDLEDGER_PEER_DATA_DIR=/var/lib/gridledger` sets `data_dir`,
//! `GRIDLEDGER_PEER_OPERATIONS__LISTEN_ADDRESS=0.0.0.0:9443` sets `listen_address` in
//! `[operations]` (creating the section when the file has none). Entries of arrays of tables
//! (`[[chaincodes]]`) cannot be addressed.
//!
//! A value takes the type of the key it replaces: text for text, an integer for an integer,
//! `true`/`false` for a boolean, a TOML inline value (`["a.pem", "b.pem"]`) for an array or
//! table. For a key the file does not have, the value is read as a TOML integer, float, boolean
//! or array when it is one, as text otherwise. The overridden file then goes through the same
//! validation as the file itself, so an override naming an unknown key is refused like an
//! unknown key in the file, and the error names the variables that were applied.

use anyhow::{Context, bail};
use toml::Value;

/// The prefix of a peer's overrides.
pub const PEER_PREFIX: &str = "GRIDLEDGER_PEER_";
/// The prefix of an orderer's overrides.
pub const ORDERER_PREFIX: &str = "GRIDLEDGER_ORDERER_";

/// `text` (a node's TOML config) with every variable of `vars` that starts with `prefix`
/// applied, in name order; returns the new text and the names of the variables applied.
pub fn apply(
    text: &str,
    prefix: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<(String, Vec<String>)> {
    let mut overrides: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .collect();
    if overrides.is_empty() {
        return Ok((text.to_owned(), Vec::new()));
    }
    overrides.sort();
    let mut root: toml::Table = text.parse().context("the config file is not valid TOML")?;
    let mut applied = Vec::new();
    for (name, value) in overrides {
        let path: Vec<String> = name[prefix.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            bail!("environment variable {name}: empty key (use KEY or SECTION__KEY)");
        }
        set(&mut root, &path, &value).with_context(|| format!("environment variable {name}"))?;
        applied.push(name);
    }
    Ok((root.to_string(), applied))
}

/// Sets `path` in `table` to `raw`, typed as described in the module doc.
fn set(table: &mut toml::Table, path: &[String], raw: &str) -> anyhow::Result<()> {
    let (key, sections) = path.split_last().context("no key")?;
    let mut current = table;
    for section in sections {
        let entry = current
            .entry(section.clone())
            .or_insert_with(|| Value::Table(toml::Table::new()));
        current = match entry {
            Value::Table(t) => t,
            _ => bail!("`{section}` is not a section of the config"),
        };
    }
    let value = match current.get(key) {
        Some(existing) => typed_like(existing, raw)?,
        None => untyped(raw),
    };
    current.insert(key.clone(), value);
    Ok(())
}

/// `raw` as a value of the same type as `existing`.
fn typed_like(existing: &Value, raw: &str) -> anyhow::Result<Value> {
    Ok(match existing {
        Value::String(_) => Value::String(raw.to_owned()),
        Value::Integer(_) => Value::Integer(
            raw.trim()
                .parse()
                .with_context(|| format!("{raw:?} is not an integer"))?,
        ),
        Value::Float(_) => Value::Float(
            raw.trim()
                .parse()
                .with_context(|| format!("{raw:?} is not a number"))?,
        ),
        Value::Boolean(_) => Value::Boolean(match raw.trim() {
            "true" => true,
            "false" => false,
            other => bail!("{other:?} is not true or false"),
        }),
        Value::Array(_) | Value::Table(_) | Value::Datetime(_) => {
            inline(raw).with_context(|| format!("{raw:?} is not a TOML inline value"))?
        }
    })
}

/// `raw` as a TOML scalar or array when it reads as one, as text otherwise.
fn untyped(raw: &str) -> Value {
    match inline(raw) {
        Some(v @ (Value::Integer(_) | Value::Float(_) | Value::Boolean(_) | Value::Array(_))) => v,
        _ => Value::String(raw.to_owned()),
    }
}

/// `raw` parsed as the right-hand side of a TOML assignment.
fn inline(raw: &str) -> Option<Value> {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
}

/// The process's variables with `prefix`, for [`apply`].
pub fn process_vars(prefix: &str) -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with(prefix))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "name = \"peer0\"\nrpc_timeout_ms = 10000\ndata_dir = \"data\"\n\n\
                        [operations]\nlisten_address = \"127.0.0.1:9443\"\n";

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn overrides_keep_the_type_of_the_key_they_replace() {
        let (text, applied) = apply(
            FILE,
            PEER_PREFIX,
            vars(&[
                ("GRIDLEDGER_PEER_RPC_TIMEOUT_MS", "2500"),
                ("GRIDLEDGER_PEER_DATA_DIR", "/var/lib/gridledger"),
                ("GRIDLEDGER_PEER_OPERATIONS__LISTEN_ADDRESS", "0.0.0.0:9443"),
                ("GRIDLEDGER_ORDERER_DATA_DIR", "/elsewhere"),
                ("PATH", "/usr/bin"),
            ]),
        )
        .expect("applies");
        let table: toml::Table = text.parse().expect("valid TOML");
        assert_eq!(table["rpc_timeout_ms"].as_integer(), Some(2500));
        assert_eq!(table["data_dir"].as_str(), Some("/var/lib/gridledger"));
        assert_eq!(
            table["operations"]["listen_address"].as_str(),
            Some("0.0.0.0:9443")
        );
        assert_eq!(table["name"].as_str(), Some("peer0"));
        assert_eq!(
            applied,
            [
                "GRIDLEDGER_PEER_DATA_DIR",
                "GRIDLEDGER_PEER_OPERATIONS__LISTEN_ADDRESS",
                "GRIDLEDGER_PEER_RPC_TIMEOUT_MS"
            ]
        );
    }

    #[test]
    fn a_missing_section_is_created_and_new_keys_are_typed_by_their_text() {
        let (text, _) = apply(
            "name = \"o\"\n",
            ORDERER_PREFIX,
            vars(&[
                ("GRIDLEDGER_ORDERER_RAFT__TICK_MS", "100"),
                (
                    "GRIDLEDGER_ORDERER_CLUSTER__TLS_CA_CERTS",
                    "[\"a.pem\", \"b.pem\"]",
                ),
                (
                    "GRIDLEDGER_ORDERER_OPERATIONS__LISTEN_ADDRESS",
                    "127.0.0.1:9444",
                ),
            ]),
        )
        .expect("applies");
        let table: toml::Table = text.parse().expect("valid TOML");
        assert_eq!(table["raft"]["tick_ms"].as_integer(), Some(100));
        assert_eq!(
            table["cluster"]["tls_ca_certs"].as_array().map(|a| a.len()),
            Some(2)
        );
        assert_eq!(
            table["operations"]["listen_address"].as_str(),
            Some("127.0.0.1:9444")
        );
    }

    #[test]
    fn bad_overrides_are_refused_naming_the_variable() {
        let err = apply(
            FILE,
            PEER_PREFIX,
            vars(&[("GRIDLEDGER_PEER_RPC_TIMEOUT_MS", "soon")]),
        )
        .expect_err("not an integer");
        let text = format!("{err:#}");
        assert!(text.contains("GRIDLEDGER_PEER_RPC_TIMEOUT_MS"), "{text}");
        assert!(text.contains("not an integer"), "{text}");

        let err = apply(
            FILE,
            PEER_PREFIX,
            vars(&[("GRIDLEDGER_PEER_NAME__INNER", "x")]),
        )
        .expect_err("name is not a section");
        assert!(format!("{err:#}").contains("not a section"), "{err:#}");

        let err = apply(FILE, PEER_PREFIX, vars(&[("GRIDLEDGER_PEER_", "x")])).expect_err("no key");
        assert!(format!("{err:#}").contains("empty key"), "{err:#}");
    }
}
