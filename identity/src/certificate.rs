//! X.509 certificates and CRLs, parsed once into owned facts the MSP needs.
//!
//! Parsing uses `x509-parser`; signature checks on certificates and CRLs use the same `ring`
//! verifier as transactions. Only ECDSA P-256 keys and ecdsa-with-SHA256 signatures are
//! accepted, as in a default Fabric network.
//!
//! The parts of a certificate its issuer does not sign — the outer `SEQUENCE`, the outer
//! signature algorithm and the signature itself — are where one certificate can be re-encoded
//! into other bytes. Parsing therefore demands minimal DER lengths on that outer layer and an
//! outer algorithm identical to the signed one, as Go's parser does, and every certificate
//! carries [`Certificate::low_s_sha256`]: the SHA-256 of the certificate with its signature
//! rewritten to low-S (Fabric's "sanitised" certificate). Two encodings of one certificate —
//! the high-S twin of its signature included — share that digest, which is what identity ids
//! and admin lists compare.
//!
//! Known difference from Fabric: a CRL is matched to a certificate by the issuer *name* and
//! its signature is checked when the MSP is set up (a CRL that none of the MSP's CAs signed
//! makes the MSP configuration invalid). Fabric instead matches the CRL's Authority Key
//! Identifier to the Subject Key Identifier of the certificate's issuer and checks the CRL's
//! signature only when a serial matches, skipping CRLs with a bad signature. The two select
//! different lists only when two CAs of one MSP share a subject name (a re-keyed CA): here a
//! CRL signed by either then applies to serials issued by both.

use crate::error::IdentityError;
use crate::signature::{normalize_low_s, verify_p256_certificate_signature};
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
    /// SHA-256 of the certificate DER with its signature normalised to low-S: the same for
    /// every encoding of this certificate (see the module docs). Fabric hashes the same bytes
    /// for an identity's `IdentityIdentifier`.
    pub low_s_sha256: [u8; 32],
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
        let outer = OuterCertificate::split(der).map_err(|reason| IdentityError::Der {
            what: "X.509 certificate".into(),
            reason: reason.into(),
        })?;
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
        let low_s_der = outer
            .with_low_s_signature()
            .map_err(|e| IdentityError::Der {
                what: format!("signature of certificate '{subject}'"),
                reason: e.to_string(),
            })?;
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
            low_s_sha256: sha256(&low_s_der),
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

/// The unsigned outer layer of a certificate, split into its three elements (each the whole
/// DER element, tag and length included).
struct OuterCertificate<'a> {
    tbs: &'a [u8],
    algorithm: &'a [u8],
    /// The ECDSA signature DER inside the `BIT STRING`.
    signature: &'a [u8],
}

impl<'a> OuterCertificate<'a> {
    /// Splits `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }`
    /// with the rules Go's parser applies to the unsigned layer: minimal lengths, nothing after
    /// the three elements, the outer algorithm equal to the one inside the signed part, a
    /// `BIT STRING` without unused bits.
    fn split(der: &'a [u8]) -> Result<OuterCertificate<'a>, &'static str> {
        let (outer, rest) = der_element(der)?;
        if outer.tag != 0x30 || !rest.is_empty() {
            return Err("not a single SEQUENCE");
        }
        let (tbs, after_tbs) = der_element(outer.content)?;
        let (algorithm, after_algorithm) = der_element(after_tbs)?;
        let (signature, after_signature) = der_element(after_algorithm)?;
        if tbs.tag != 0x30 || algorithm.tag != 0x30 || signature.tag != 0x03 {
            return Err(
                "the certificate SEQUENCE does not hold tbsCertificate, signatureAlgorithm, signatureValue",
            );
        }
        if !after_signature.is_empty() {
            return Err("extra elements after the signature");
        }
        // tbsCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature, ... }
        let (first, after_first) = der_element(tbs.content)?;
        let after_serial = if first.tag == 0xa0 {
            der_element(after_first)?.1
        } else {
            after_first
        };
        let (inner_algorithm, _) = der_element(after_serial)?;
        if inner_algorithm.whole != algorithm.whole {
            return Err("the outer signature algorithm differs from the signed one");
        }
        let signature = match signature.content {
            [0, bits @ ..] => bits,
            _ => return Err("the signature BIT STRING has unused bits"),
        };
        Ok(OuterCertificate {
            tbs: tbs.whole,
            algorithm: algorithm.whole,
            signature,
        })
    }

    /// The certificate DER with its signature in low-S form: the received bytes when the
    /// signature already is low-S (as Fabric keeps them), else the certificate re-encoded.
    fn with_low_s_signature(&self) -> Result<Vec<u8>, crate::SignatureError> {
        let low = normalize_low_s(self.signature)?;
        Ok(self.encode(&low))
    }

    /// `SEQUENCE { tbs, algorithm, BIT STRING(0 unused bits, signature) }`, minimal DER.
    fn encode(&self, signature: &[u8]) -> Vec<u8> {
        let mut bit_string = vec![0u8];
        bit_string.extend_from_slice(signature);
        let mut body =
            Vec::with_capacity(self.tbs.len() + self.algorithm.len() + signature.len() + 8);
        body.extend_from_slice(self.tbs);
        body.extend_from_slice(self.algorithm);
        push_der_element(&mut body, 0x03, &bit_string);
        let mut out = Vec::with_capacity(body.len() + 6);
        push_der_element(&mut out, 0x30, &body);
        out
    }
}

/// Re-encodes a PEM certificate with the high-S twin of its signature: the same certificate
/// (its issuer's signature still verifies) in different bytes. For malleability tests.
pub(crate) fn high_s_twin(cert_pem: &[u8]) -> Result<Vec<u8>, IdentityError> {
    let der = pem_block(cert_pem, "CERTIFICATE", "certificate")?;
    let malformed = |reason: String| IdentityError::Der {
        what: "X.509 certificate".into(),
        reason,
    };
    let outer = OuterCertificate::split(&der).map_err(|r| malformed(r.into()))?;
    let high =
        crate::signature::to_high_s(outer.signature).map_err(|e| malformed(e.to_string()))?;
    Ok(outer.encode(&high))
}

/// One DER element: its tag, its content, and the whole element.
struct DerElement<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

/// Splits one DER element off `input`. Only single-byte tags and definite, minimal lengths of
/// up to four bytes are accepted.
fn der_element(input: &[u8]) -> Result<(DerElement<'_>, &[u8]), &'static str> {
    let [tag, first_len, after_header @ ..] = input else {
        return Err("truncated DER element");
    };
    if tag & 0x1f == 0x1f {
        return Err("multi-byte DER tags are not used in certificates");
    }
    let (len, header_len) = if *first_len < 0x80 {
        (usize::from(*first_len), 2)
    } else {
        let count = usize::from(first_len & 0x7f);
        if count == 0 || count > 4 || after_header.len() < count {
            return Err("unsupported or truncated DER length");
        }
        let bytes = &after_header[..count];
        if bytes[0] == 0 {
            return Err("non-minimal DER length");
        }
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len < 0x80 {
            return Err("non-minimal DER length");
        }
        (len, 2 + count)
    };
    let end = header_len
        .checked_add(len)
        .filter(|&end| end <= input.len())
        .ok_or("truncated DER element")?;
    Ok((
        DerElement {
            tag: *tag,
            content: &input[header_len..end],
            whole: &input[..end],
        },
        &input[end..],
    ))
}

/// Appends a DER element with a minimal length.
fn push_der_element(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let first = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len() - 1);
        out.push(0x80 | (bytes.len() - first) as u8);
        out.extend_from_slice(&bytes[first..]);
    }
    out.extend_from_slice(content);
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
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
