//! Chaincode packages in Fabric's install format, and the peer's store of installed ones.
//!
//! A package is a gzip-compressed tar holding two files:
//!
//! - `metadata.json`: `{"type": "...", "label": "..."}`;
//! - `code.tar.gz`: another gzip-compressed tar with what the type needs.
//!
//! GridLedger builds no chaincode, so it accepts two types:
//!
//! - `ccaas` (Fabric's chaincode-as-a-service): `code.tar.gz` holds `connection.json`
//!   `{"address": "host:port", "dial_timeout": "10s", "tls_required": false,
//!   "client_auth_required": false, "root_cert": "<PEM>", …}` naming the chaincode server the
//!   peer dials;
//! - `gridledger-builtin` (GridLedger's own): `code.tar.gz` holds `builtin.json`
//!   `{"chaincode": "basic"}` naming a chaincode compiled into the peer, so that a builtin can
//!   be deployed under any chaincode name.
//!
//! The package id is `label:hex(sha256(package bytes))`, as in Fabric. Installed packages are
//! kept verbatim under `<data_dir>/lifecycle/chaincodes/<label>.<hash>.tar.gz`.

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use ring::digest;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The package type of a chaincode-as-a-service package.
pub const CCAAS_TYPE: &str = "ccaas";
/// The package type of a chaincode compiled into the peer (GridLedger's own type).
pub const BUILTIN_TYPE: &str = "gridledger-builtin";
/// Largest package accepted, bytes (a ccaas or builtin package is a few hundred bytes).
pub const MAX_PACKAGE_BYTES: usize = 16 * 1024 * 1024;
/// Largest single file read out of a package, bytes.
const MAX_ENTRY_BYTES: u64 = 1024 * 1024;

/// Why a package is unusable.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("the package is larger than {MAX_PACKAGE_BYTES} bytes")]
    TooLarge,
    #[error("the package is not a gzip-compressed tar: {0}")]
    Archive(String),
    #[error("the package has no {0}")]
    Missing(&'static str),
    #[error("{file} is invalid: {reason}")]
    Invalid { file: &'static str, reason: String },
    #[error(
        "package label {0:?} is invalid: it must start with a letter or digit and contain only letters, digits, '_', '.', '+' and '-'"
    )]
    Label(String),
    #[error(
        "package type {0:?} cannot run here: GridLedger builds no chaincode, so packages must be of type \"ccaas\" or \"gridledger-builtin\""
    )]
    UnsupportedType(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// `metadata.json` of a package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// The package type (`ccaas`, `gridledger-builtin`, or Fabric's `golang`, `node`, `java`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The label chosen by whoever packaged it; the first half of the package id.
    pub label: String,
}

/// `connection.json` of a ccaas package (Fabric's field names).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Connection {
    /// `host:port` of the chaincode server.
    pub address: String,
    /// How long a dial may take, Go duration syntax (`"10s"`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dial_timeout: String,
    /// Whether the server speaks TLS (then `root_cert` is the CA certificate to trust).
    #[serde(default)]
    pub tls_required: bool,
    /// Whether the server wants a client certificate (not supported: refused at install).
    #[serde(default)]
    pub client_auth_required: bool,
    /// PEM of the CA that issued the server's TLS certificate.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub root_cert: String,
    /// PEM of the client key (with `client_auth_required`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_key: String,
    /// PEM of the client certificate (with `client_auth_required`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_cert: String,
}

/// `builtin.json` of a `gridledger-builtin` package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Builtin {
    /// The name the chaincode is registered under in the peer (e.g. `basic`).
    pub chaincode: String,
}

/// What a package makes the peer run.
#[derive(Debug, Clone, PartialEq)]
pub enum Code {
    /// Dial an external chaincode server.
    Ccaas(Connection),
    /// Run a chaincode compiled into the peer.
    Builtin(Builtin),
}

/// A parsed package.
#[derive(Debug, Clone, PartialEq)]
pub struct Package {
    /// `label:hash`.
    pub package_id: String,
    /// The label.
    pub label: String,
    /// What it runs.
    pub code: Code,
}

/// `label:hex(sha256(bytes))`.
pub fn package_id(label: &str, bytes: &[u8]) -> String {
    format!(
        "{label}:{}",
        hex::encode(digest::digest(&digest::SHA256, bytes))
    )
}

/// Fabric's label rule: `^[[:alnum:]][[:alnum:]_.+-]*$`.
pub fn valid_label(label: &str) -> bool {
    let mut chars = label.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c))
}

/// One file of a tar archive, compressed with gzip.
fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for (name, contents) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        // Names are short constants, so set_path cannot fail on length.
        if header.set_path(name).is_err() {
            continue;
        }
        header.set_cksum();
        // Writing into a Vec cannot fail.
        let _ = builder.append(&header, *contents);
    }
    builder
        .into_inner()
        .and_then(|gz| gz.finish())
        .unwrap_or_default()
}

/// Reads the named regular files out of a tar.gz (others are skipped).
fn read_tar_gz(bytes: &[u8], wanted: &[&str]) -> Result<Vec<(String, Vec<u8>)>, PackageError> {
    let archive_err = |e: std::io::Error| PackageError::Archive(e.to_string());
    let mut archive = tar::Archive::new(GzDecoder::new(bytes).take(MAX_PACKAGE_BYTES as u64 * 4));
    let mut out = Vec::new();
    for entry in archive.entries().map_err(archive_err)? {
        let entry = entry.map_err(archive_err)?;
        let path = entry
            .path()
            .map_err(archive_err)?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if !wanted.contains(&path.as_str()) || !entry.header().entry_type().is_file() {
            continue;
        }
        if entry.size() > MAX_ENTRY_BYTES {
            return Err(PackageError::Archive(format!(
                "{path} is larger than {MAX_ENTRY_BYTES} bytes"
            )));
        }
        let mut contents = Vec::new();
        entry
            .take(MAX_ENTRY_BYTES)
            .read_to_end(&mut contents)
            .map_err(archive_err)?;
        out.push((path, contents));
    }
    Ok(out)
}

fn file<'a>(files: &'a [(String, Vec<u8>)], name: &'static str) -> Result<&'a [u8], PackageError> {
    files
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, c)| c.as_slice())
        .ok_or(PackageError::Missing(name))
}

fn json<T: for<'de> Deserialize<'de>>(file: &'static str, bytes: &[u8]) -> Result<T, PackageError> {
    serde_json::from_slice(bytes).map_err(|e| PackageError::Invalid {
        file,
        reason: e.to_string(),
    })
}

/// Builds a package file: `metadata.json` and `code.tar.gz` with `code_file`.
fn build(kind: &str, label: &str, code_file: &str, code: &[u8]) -> Result<Vec<u8>, PackageError> {
    if !valid_label(label) {
        return Err(PackageError::Label(label.into()));
    }
    let metadata = serde_json::to_vec(&Metadata {
        kind: kind.into(),
        label: label.into(),
    })
    .map_err(|e| PackageError::Archive(e.to_string()))?;
    let code = tar_gz(&[(code_file, code)]);
    Ok(tar_gz(&[
        ("metadata.json", &metadata),
        ("code.tar.gz", &code),
    ]))
}

/// A `ccaas` package naming `connection`.
pub fn build_ccaas(label: &str, connection: &Connection) -> Result<Vec<u8>, PackageError> {
    let json =
        serde_json::to_vec_pretty(connection).map_err(|e| PackageError::Archive(e.to_string()))?;
    build(CCAAS_TYPE, label, "connection.json", &json)
}

/// A `gridledger-builtin` package naming the compiled-in chaincode `chaincode`.
pub fn build_builtin(label: &str, chaincode: &str) -> Result<Vec<u8>, PackageError> {
    let json = serde_json::to_vec(&Builtin {
        chaincode: chaincode.into(),
    })
    .map_err(|e| PackageError::Archive(e.to_string()))?;
    build(BUILTIN_TYPE, label, "builtin.json", &json)
}

/// Parses and checks a package file.
pub fn parse(bytes: &[u8]) -> Result<Package, PackageError> {
    if bytes.len() > MAX_PACKAGE_BYTES {
        return Err(PackageError::TooLarge);
    }
    let outer = read_tar_gz(bytes, &["metadata.json", "code.tar.gz"])?;
    let metadata: Metadata = json("metadata.json", file(&outer, "metadata.json")?)?;
    if !valid_label(&metadata.label) {
        return Err(PackageError::Label(metadata.label));
    }
    let code_bytes = file(&outer, "code.tar.gz")?;
    let code = match metadata.kind.as_str() {
        CCAAS_TYPE => {
            let inner = read_tar_gz(code_bytes, &["connection.json"])?;
            let connection: Connection = json("connection.json", file(&inner, "connection.json")?)?;
            let invalid = |reason: &str| PackageError::Invalid {
                file: "connection.json",
                reason: reason.into(),
            };
            if !connection.address.contains(':') {
                return Err(invalid("address must be host:port"));
            }
            if connection.client_auth_required {
                return Err(invalid(
                    "client_auth_required is not supported: the peer presents no client certificate to chaincode servers",
                ));
            }
            if connection.tls_required && connection.root_cert.trim().is_empty() {
                return Err(invalid("tls_required needs root_cert"));
            }
            Code::Ccaas(connection)
        }
        BUILTIN_TYPE => {
            let inner = read_tar_gz(code_bytes, &["builtin.json"])?;
            let builtin: Builtin = json("builtin.json", file(&inner, "builtin.json")?)?;
            if builtin.chaincode.is_empty() {
                return Err(PackageError::Invalid {
                    file: "builtin.json",
                    reason: "chaincode must name a builtin chaincode".into(),
                });
            }
            Code::Builtin(builtin)
        }
        other => return Err(PackageError::UnsupportedType(other.into())),
    };
    Ok(Package {
        package_id: package_id(&metadata.label, bytes),
        label: metadata.label,
        code,
    })
}

impl Connection {
    /// The connect timeout for dialing this server: `dial_timeout` when set, else
    /// `default`. A value that does not parse is an error naming it (Fabric refuses such a
    /// connection too), so a typo never silently becomes the default.
    pub fn dial_timeout(&self, default: Duration) -> Result<Duration, String> {
        if self.dial_timeout.trim().is_empty() {
            return Ok(default);
        }
        parse_duration_ms(&self.dial_timeout)
            .map(Duration::from_millis)
            .ok_or_else(|| {
                format!(
                    "dial_timeout {:?} of chaincode server {} is not a duration such as \"10s\"",
                    self.dial_timeout, self.address
                )
            })
    }
}

/// Fabric's `dial_timeout` (`"10s"`, `"500ms"`, `"1m"`) in milliseconds, if it parses.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let n: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(n),
        "s" | "" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        _ => None,
    }
}

/// The installed packages of one peer: `<data_dir>/lifecycle/chaincodes/`.
#[derive(Debug, Clone)]
pub struct PackageStore {
    dir: PathBuf,
}

impl PackageStore {
    /// The store under a peer's data folder.
    pub fn new(data_dir: &Path) -> PackageStore {
        PackageStore {
            dir: data_dir.join("lifecycle").join("chaincodes"),
        }
    }

    fn io(path: &Path) -> impl Fn(std::io::Error) -> PackageError + '_ {
        move |source| PackageError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    fn file_name(package_id: &str) -> Option<String> {
        let (label, hash) = package_id.rsplit_once(':')?;
        (valid_label(label) && hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| format!("{label}.{hash}.tar.gz"))
    }

    /// Installs a package (idempotent: installing the same bytes again is fine).
    pub fn install(&self, bytes: &[u8]) -> Result<Package, PackageError> {
        let package = parse(bytes)?;
        let name = Self::file_name(&package.package_id)
            .ok_or_else(|| PackageError::Label(package.label.clone()))?;
        std::fs::create_dir_all(&self.dir).map_err(Self::io(&self.dir))?;
        let path = self.dir.join(name);
        if !path.exists() {
            let tmp = path.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp).map_err(Self::io(&tmp))?;
            f.write_all(bytes).map_err(Self::io(&tmp))?;
            f.sync_all().map_err(Self::io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(Self::io(&path))?;
        }
        Ok(package)
    }

    /// The bytes of an installed package, or `None`.
    pub fn bytes(&self, package_id: &str) -> Result<Option<Vec<u8>>, PackageError> {
        let Some(name) = Self::file_name(package_id) else {
            return Ok(None);
        };
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::io(&path)(e)),
        }
    }

    /// An installed package, parsed, or `None`.
    pub fn get(&self, package_id: &str) -> Result<Option<Package>, PackageError> {
        self.bytes(package_id)?.map(|b| parse(&b)).transpose()
    }

    /// Every installed package, by package id. Files that no longer parse are skipped.
    pub fn list(&self) -> Result<Vec<Package>, PackageError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::io(&self.dir)(e)),
        };
        let mut out: Vec<Package> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
            .filter_map(|p| std::fs::read(p).ok())
            .filter_map(|b| parse(&b).ok())
            .collect();
        out.sort_by(|a, b| a.package_id.cmp(&b.package_id));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_id_is_label_and_sha256_of_the_file() {
        let bytes = build_builtin("mycc_1.0", "basic").expect("build");
        let package = parse(&bytes).expect("parse");
        let expected = format!(
            "mycc_1.0:{}",
            hex::encode(digest::digest(&digest::SHA256, &bytes))
        );
        assert_eq!(package.package_id, expected);
        assert_eq!(package_id("mycc_1.0", &bytes), expected);
        assert_eq!(
            package.code,
            Code::Builtin(Builtin {
                chaincode: "basic".into()
            })
        );
    }

    #[test]
    fn ccaas_package_round_trips_its_connection() {
        let connection = Connection {
            address: "127.0.0.1:9999".into(),
            dial_timeout: "10s".into(),
            ..Default::default()
        };
        let bytes = build_ccaas("assets", &connection).expect("build");
        let package = parse(&bytes).expect("parse");
        assert_eq!(package.label, "assets");
        assert_eq!(package.code, Code::Ccaas(connection));
        // A different address is a different package.
        let other = build_ccaas(
            "assets",
            &Connection {
                address: "127.0.0.1:9998".into(),
                ..Default::default()
            },
        )
        .expect("build");
        assert_ne!(parse(&other).expect("parse").package_id, package.package_id);
    }

    #[test]
    fn bad_packages_are_refused_with_the_reason() {
        assert!(matches!(parse(b"not gzip"), Err(PackageError::Archive(_))));
        let golang = build("golang", "cc", "src/main.go", b"package main").expect("build");
        assert!(matches!(
            parse(&golang),
            Err(PackageError::UnsupportedType(t)) if t == "golang"
        ));
        assert!(matches!(
            build_builtin("-bad label", "basic"),
            Err(PackageError::Label(_))
        ));
        let no_address = build(
            CCAAS_TYPE,
            "cc",
            "connection.json",
            b"{\"address\":\"nohost\"}",
        )
        .expect("build");
        assert!(matches!(
            parse(&no_address),
            Err(PackageError::Invalid {
                file: "connection.json",
                ..
            })
        ));
        let no_code = tar_gz(&[("metadata.json", b"{\"type\":\"ccaas\",\"label\":\"x\"}")]);
        assert!(matches!(
            parse(&no_code),
            Err(PackageError::Missing("code.tar.gz"))
        ));
    }

    #[test]
    fn the_store_installs_once_and_lists_and_finds_packages() {
        let dir = std::env::temp_dir().join(format!(
            "gridledger-pkgstore-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let store = PackageStore::new(&dir);
        assert!(store.list().expect("list").is_empty());
        let bytes = build_builtin("mycc", "basic").expect("build");
        let installed = store.install(&bytes).expect("install");
        assert_eq!(store.install(&bytes).expect("again"), installed);
        assert_eq!(store.list().expect("list"), vec![installed.clone()]);
        assert_eq!(
            store.get(&installed.package_id).expect("get"),
            Some(installed)
        );
        assert_eq!(store.get("mycc:00").expect("get"), None);
        assert_eq!(store.get("../../etc:passwd").expect("get"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn dial_timeouts_parse_in_go_syntax() {
        assert_eq!(parse_duration_ms("10s"), Some(10_000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("2m"), Some(120_000));
        assert_eq!(parse_duration_ms("soon"), None);
    }

    #[test]
    fn dial_timeout_of_a_connection_is_its_own_or_the_default() {
        let default = Duration::from_secs(5);
        let with = |text: &str| Connection {
            address: "cc:9999".into(),
            dial_timeout: text.into(),
            ..Default::default()
        };
        assert_eq!(
            with("750ms").dial_timeout(default),
            Ok(Duration::from_millis(750))
        );
        assert_eq!(with("2s").dial_timeout(default), Ok(Duration::from_secs(2)));
        assert_eq!(with("").dial_timeout(default), Ok(default));
        let err = with("ten seconds")
            .dial_timeout(default)
            .expect_err("not a duration");
        assert!(
            err.contains("\"ten seconds\"") && err.contains("cc:9999"),
            "{err}"
        );
    }
}
