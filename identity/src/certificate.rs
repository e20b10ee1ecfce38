//! X.509 certificates and CRLs, parsed once into owned facts the MSP needs.
//!
//! Parsing uses `x509-parser`; signature checks on certificates and CRLs use the same `ring`
//! verifier as transactions. Only ECDSA P-256 keys and ecdsa-with-SHA256 signatures are
//! accepted, as in a default Fabric network.

use crate::error::IdentityError;
use crate::signature::verify_p256_certificate_signature;
use std::collections::BTreeMap;
use x509_parser::prelude::*;

/// OID of Fabric CA's attribute extension: a JSON object `{"attrs": {"name": "value", …}}`.
pub const ATTRIBUTE_EXTENSION_OID: &str = "1.2.3.4.5.6.7.8.1";
const EC_PUBLIC_KEY_OID: &str = "1.2.840.10045.2.1";
const P256_CURVE_OID: &str = "1.2.840.10045.3.1.7";
const ECDSA_WITH_SHA256_OID: &str = "1.2.840.10045.4.3.2";

/// The facts of one certificate, owned, plus its DER bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The whole certificate, DER.
    pub der: Vec<u8>,
    /// Subject distinguished name as text (`CN=…, OU=…, O=…`).
    pub subject: String,
    /// Raw DER of the subject name, compared against issuers' names.
    pub subject_raw: Vec<u8>,
    /// Raw DER of the issuer name.
    pub issuer_raw: Vec<u8>,
    /// Serial number, big-endian bytes as encoded.
    pub serial: Vec<u8>,
    /// Organizational units of the subject, in order.
    pub organizational_units: Vec<String>,
    /// basicConstraints CA flag.
    pub is_ca: bool,
    /// Validity window, unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// Uncompressed P-256 public key (`04 || x || y`).
    pub public_key: Vec<u8>,
    /// The signed part (TBSCertificate) and the issuer's signature over it.
    pub tbs: Vec<u8>,
    pub signature: Vec<u8>,
    /// Fabric-CA style attributes (delivery point, meter id, …), sorted by name.
    pub attributes: BTreeMap<String, String>,
}

impl Certificate {
    /// Parses one certificate from DER.
    pub fn from_der(der: &[u8]) -> Result<Certificate, IdentityError> {
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| IdentityError::Der {
            what: "X.509 certificate".into(),
            reason: e.to_string(),
        })?;
        if !rest.is_empty() {
            return Err(IdentityError::Der {
                what: "X.509 certificate".into(),
                reason: format!("{} trailing bytes", rest.len()),
            });
        }
        let subject = cert.subject().to_string();
        let spki = cert.public_key();
        if spki.algorithm.algorithm.to_id_string() != EC_PUBLIC_KEY_OID {
            return Err(IdentityError::UnsupportedAlgorithm {
                what: format!("certificate '{subject}'"),
                detail: format!(
                    "public key algorithm {}",
                    spki.algorithm.algorithm.to_id_string()
                ),
            });
        }
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|oid| oid.to_id_string());
        if curve.as_deref() != Some(P256_CURVE_OID) {
            return Err(IdentityError::UnsupportedAlgorithm {
                what: format!("certificate '{subject}'"),
                detail: format!(
                    "curve {} (only P-256 is supported)",
                    curve.unwrap_or_else(|| "missing".into())
                ),
            });
        }
        let sig_alg = cert.signature_algorithm.algorithm.to_id_string();
        if sig_alg != ECDSA_WITH_SHA256_OID {
            return Err(IdentityError::UnsupportedAlgorithm {
                what: format!("certificate '{subject}'"),
                detail: format!(
                    "signature algorithm {sig_alg} (only ecdsa-with-SHA256 is supported)"
                ),
            });
        }
        let mut attributes = BTreeMap::new();
        for ext in cert.extensions() {
            if ext.oid.to_id_string() == ATTRIBUTE_EXTENSION_OID {
                attributes =
                    parse_attributes(ext.value).map_err(|reason| IdentityError::Attributes {
                        subject: subject.clone(),
                        reason,
                    })?;
            }
        }
        Ok(Certificate {
            der: der.to_vec(),
            subject_raw: cert.subject().as_raw().to_vec(),
            issuer_raw: cert.issuer().as_raw().to_vec(),
            serial: cert.raw_serial().to_vec(),
            organizational_units: cert
                .subject()
                .iter_organizational_unit()
                .filter_map(|ou| ou.as_str().ok().map(str::to_owned))
                .collect(),
            is_ca: cert.is_ca(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            public_key: spki.subject_public_key.data.to_vec(),
            tbs: cert.tbs_certificate.as_ref().to_vec(),
            signature: cert.signature_value.data.to_vec(),
            attributes,
            subject,
        })
    }

    /// Parses the first `CERTIFICATE` block of PEM text.
    pub fn from_pem(pem_bytes: &[u8]) -> Result<Certificate, IdentityError> {
        let der = pem_block(pem_bytes, "CERTIFICATE", "certificate")?;
        Certificate::from_der(&der)
    }

    /// True when `issuer` signed this certificate (names match and the signature verifies).
    pub fn is_issued_by(&self, issuer: &Certificate) -> bool {
        self.issuer_raw == issuer.subject_raw
            && verify_p256_certificate_signature(&issuer.public_key, &self.tbs, &self.signature)
                .is_ok()
    }

    /// True when `at_unix_secs` is inside the validity window.
    pub fn is_valid_at(&self, at_unix_secs: u64) -> bool {
        let at = i64::try_from(at_unix_secs).unwrap_or(i64::MAX);
        self.not_before <= at && at <= self.not_after
    }

    /// Serial number as lowercase hex, for messages.
    pub fn serial_hex(&self) -> String {
        hex::encode(&self.serial)
    }
}

/// A certificate revocation list whose signature has been checked against its issuer.
#[derive(Debug, Clone)]
pub struct RevocationList {
    /// Raw DER of the issuing CA's name.
    pub issuer_raw: Vec<u8>,
    /// Revoked serial numbers.
    pub revoked_serials: Vec<Vec<u8>>,
}

impl RevocationList {
    /// Parses a CRL from PEM (`X509 CRL`) or DER and checks it is signed by one of `issuers`.
    pub fn parse(bytes: &[u8], issuers: &[Certificate]) -> Result<RevocationList, IdentityError> {
        let der = if bytes.starts_with(b"-----") {
            pem_block(bytes, "X509 CRL", "revocation list")?
        } else {
            bytes.to_vec()
        };
        let (_, crl) =
            CertificateRevocationList::from_der(&der).map_err(|e| IdentityError::Der {
                what: "certificate revocation list".into(),
                reason: e.to_string(),
            })?;
        let issuer_raw = crl.issuer().as_raw().to_vec();
        let signed = issuers.iter().any(|ca| {
            ca.subject_raw == issuer_raw
                && verify_p256_certificate_signature(
                    &ca.public_key,
                    crl.tbs_cert_list.as_ref(),
                    &crl.signature_value.data,
                )
                .is_ok()
        });
        if !signed {
            return Err(IdentityError::Der {
                what: "certificate revocation list".into(),
                reason: format!(
                    "issuer '{}' is not a CA of this MSP or the signature is wrong",
                    crl.issuer()
                ),
            });
        }
        Ok(RevocationList {
            issuer_raw,
            revoked_serials: crl
                .iter_revoked_certificates()
                .map(|r| r.raw_serial().to_vec())
                .collect(),
        })
    }

    /// True when this list, issued by `cert`'s issuer, names `cert`'s serial.
    pub fn revokes(&self, cert: &Certificate) -> bool {
        self.issuer_raw == cert.issuer_raw
            && self
                .revoked_serials
                .iter()
                .any(|s| strip_zeros(s) == strip_zeros(&cert.serial))
    }
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// Decodes the first PEM block with the given tag.
pub(crate) fn pem_block(bytes: &[u8], tag: &str, what: &str) -> Result<Vec<u8>, IdentityError> {
    let blocks = ::pem::parse_many(bytes).map_err(|e| IdentityError::Pem {
        what: what.into(),
        reason: e.to_string(),
    })?;
    blocks
        .into_iter()
        .find(|b| b.tag() == tag)
        .map(|b| b.into_contents())
        .ok_or_else(|| IdentityError::Pem {
            what: what.into(),
            reason: format!("no '{tag}' block found"),
        })
}

/// Decodes every PEM block with the given tag (for files holding several certificates).
pub(crate) fn pem_blocks(
    bytes: &[u8],
    tag: &str,
    what: &str,
) -> Result<Vec<Vec<u8>>, IdentityError> {
    let blocks = ::pem::parse_many(bytes).map_err(|e| IdentityError::Pem {
        what: what.into(),
        reason: e.to_string(),
    })?;
    Ok(blocks
        .into_iter()
        .filter(|b| b.tag() == tag)
        .map(|b| b.into_contents())
        .collect())
}

/// Reads `{"attrs": {...}}` from the attribute extension's value. Non-string values are kept
/// as their JSON text.
fn parse_attributes(value: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let json: serde_json::Value =
        serde_json::from_slice(value).map_err(|e| format!("not JSON: {e}"))?;
    let attrs = match json.get("attrs") {
        None => return Ok(BTreeMap::new()),
        Some(serde_json::Value::Object(map)) => map,
        Some(_) => return Err("'attrs' is not an object".into()),
    };
    Ok(attrs
        .iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect())
}
