//! ECDSA P-256 / SHA-256 signatures as Fabric uses them: DER `SEQUENCE { r, s }`, low-S only.
//!
//! Verification is the hot path of the whole system (every proposal, endorsement, transaction
//! and block signature), so it runs on `ring`, which `gridledger bench crypto` measured several
//! times faster than the pure-Rust `p256` crate (see BENCHMARKS.md). The DER and low-S rules are
//! checked here, on the received bytes, before `ring` sees them.
//!
//! Known difference from Fabric: bytes after the DER `SEQUENCE` make a signature malformed
//! here. Fabric's `UnmarshalECDSASignature` reads the `SEQUENCE` and ignores whatever follows,
//! so a transaction signature with trailing bytes verifies on a Fabric peer and is rejected
//! (invalid signature) by GridLedger. Honest signers never produce such bytes; accepting them
//! would give every signature unboundedly many encodings.

use crate::error::SignatureError;
use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};

/// The order n of the P-256 group, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// floor(n / 2): the largest `s` a low-S signature may carry.
const P256_HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// The two scalars of a signature, each as 32 big-endian bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawSignature {
    pub r: [u8; 32],
    pub s: [u8; 32],
}

/// Parses a strict DER ECDSA signature (minimal lengths, positive minimal integers, no
/// trailing bytes) into its scalars.
pub fn parse_der_signature(der: &[u8]) -> Result<RawSignature, SignatureError> {
    let (tag, body, rest) = der_element(der)?;
    if tag != 0x30 {
        return Err(SignatureError::Malformed("not a SEQUENCE"));
    }
    if !rest.is_empty() {
        return Err(SignatureError::Malformed(
            "trailing bytes after the SEQUENCE",
        ));
    }
    let (r, after_r) = der_positive_integer(body)?;
    let (s, after_s) = der_positive_integer(after_r)?;
    if !after_s.is_empty() {
        return Err(SignatureError::Malformed(
            "trailing bytes inside the SEQUENCE",
        ));
    }
    Ok(RawSignature { r, s })
}

/// Encodes scalars as a minimal DER `SEQUENCE { INTEGER r, INTEGER s }`.
pub fn encode_der_signature(sig: &RawSignature) -> Vec<u8> {
    let r = der_integer_bytes(&sig.r);
    let s = der_integer_bytes(&sig.s);
    let mut out = Vec::with_capacity(6 + r.len() + s.len());
    out.push(0x30);
    // At most 2 * (2 + 33) = 70 bytes: always the short length form.
    out.push((r.len() + s.len()) as u8);
    out.extend_from_slice(&r);
    out.extend_from_slice(&s);
    out
}

/// True when `s` is in the lower half of the group order (Fabric's canonical form).
pub fn is_low_s(s: &[u8; 32]) -> bool {
    s.as_slice() <= P256_HALF_ORDER.as_slice()
}

/// Rewrites a DER signature to its low-S form (`s := n - s` when `s > n/2`).
pub fn normalize_low_s(der: &[u8]) -> Result<Vec<u8>, SignatureError> {
    let mut sig = parse_der_signature(der)?;
    if is_low_s(&sig.s) {
        return Ok(der.to_vec());
    }
    sig.s = sub_mod_order(&P256_ORDER, &sig.s);
    Ok(encode_der_signature(&sig))
}

/// Returns the high-S twin of a low-S signature (`s := n - s`): the same signature in the
/// malleable form that verifiers must reject. Used by tests and the bad-input matrix.
pub fn to_high_s(der: &[u8]) -> Result<Vec<u8>, SignatureError> {
    let mut sig = parse_der_signature(der)?;
    if is_low_s(&sig.s) {
        sig.s = sub_mod_order(&P256_ORDER, &sig.s);
    }
    Ok(encode_der_signature(&sig))
}

/// Verifies `signature` (DER, low-S) over `message` with an uncompressed P-256 public key
/// (`04 || x || y`). The message is hashed with SHA-256 here.
pub fn verify_p256(
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    if public_key.len() != 65 || public_key[0] != 0x04 {
        return Err(SignatureError::BadPublicKey);
    }
    let raw = parse_der_signature(signature)?;
    if !is_low_s(&raw.s) {
        return Err(SignatureError::HighS);
    }
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public_key)
        .verify(message, signature)
        .map_err(|_| SignatureError::Invalid)
}

/// Verifies a certificate's or CRL's signature. Unlike transaction signatures these may carry
/// a high S: CAs (Go's crypto/x509 among them) do not normalise, and Fabric accepts them.
pub(crate) fn verify_p256_certificate_signature(
    public_key: &[u8],
    signed: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    if public_key.len() != 65 || public_key[0] != 0x04 {
        return Err(SignatureError::BadPublicKey);
    }
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public_key)
        .verify(signed, signature)
        .map_err(|_| SignatureError::Invalid)
}

/// a - b for 256-bit big-endian numbers with a >= b.
fn sub_mod_order(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = a[i] as i16 - b[i] as i16 - borrow;
        borrow = if d < 0 {
            d += 256;
            1
        } else {
            0
        };
        out[i] = d as u8;
    }
    out
}

/// Splits one DER element (short or long length form, strictly minimal) off `input`.
fn der_element(input: &[u8]) -> Result<(u8, &[u8], &[u8]), SignatureError> {
    let (&tag, rest) = input
        .split_first()
        .ok_or(SignatureError::Malformed("empty input"))?;
    let (&first_len, rest) = rest
        .split_first()
        .ok_or(SignatureError::Malformed("missing length"))?;
    let (len, rest) = if first_len < 0x80 {
        (first_len as usize, rest)
    } else if first_len == 0x81 {
        let (&len, rest) = rest
            .split_first()
            .ok_or(SignatureError::Malformed("missing length"))?;
        if len < 0x80 {
            return Err(SignatureError::Malformed("non-minimal length"));
        }
        (len as usize, rest)
    } else {
        return Err(SignatureError::Malformed(
            "length too large for a P-256 signature",
        ));
    };
    if rest.len() < len {
        return Err(SignatureError::Malformed("truncated"));
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// Reads a DER INTEGER that must be positive, minimal and fit in 32 bytes.
fn der_positive_integer(input: &[u8]) -> Result<([u8; 32], &[u8]), SignatureError> {
    let (tag, body, rest) = der_element(input)?;
    if tag != 0x02 {
        return Err(SignatureError::Malformed("expected an INTEGER"));
    }
    let digits = match body {
        [] => return Err(SignatureError::Malformed("empty INTEGER")),
        [b, ..] if b & 0x80 != 0 => return Err(SignatureError::Malformed("negative INTEGER")),
        [0, next, ..] if next & 0x80 == 0 => {
            return Err(SignatureError::Malformed("non-minimal INTEGER"));
        }
        [0, tail @ ..] => tail,
        all => all,
    };
    if digits.len() > 32 {
        return Err(SignatureError::Malformed("INTEGER longer than 32 bytes"));
    }
    if digits.iter().all(|&b| b == 0) {
        return Err(SignatureError::Malformed("zero scalar"));
    }
    let mut out = [0u8; 32];
    out[32 - digits.len()..].copy_from_slice(digits);
    Ok((out, rest))
}

/// Minimal DER INTEGER encoding (tag, length, value) of a positive 32-byte scalar.
fn der_integer_bytes(scalar: &[u8; 32]) -> Vec<u8> {
    let first = scalar.iter().position(|&b| b != 0).unwrap_or(31);
    let digits = &scalar[first..];
    let pad = digits[0] & 0x80 != 0;
    let mut out = Vec::with_capacity(3 + digits.len());
    out.push(0x02);
    out.push((digits.len() + pad as usize) as u8);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(digits);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_order_is_floor_of_order_over_two() {
        // 2 * half + 1 == n
        let mut doubled = [0u8; 32];
        let mut carry = 1u16;
        for i in (0..32).rev() {
            let v = (P256_HALF_ORDER[i] as u16) * 2 + carry;
            doubled[i] = v as u8;
            carry = v >> 8;
        }
        assert_eq!(doubled, P256_ORDER);
    }

    #[test]
    fn der_round_trip_and_strictness() {
        let mut s = [0u8; 32];
        s[31] = 5;
        let mut r = [0u8; 32];
        r[0] = 0x80; // high bit set: needs a leading zero
        let sig = RawSignature { r, s };
        let der = encode_der_signature(&sig);
        assert_eq!(&der[..4], &[0x30, 0x26, 0x02, 0x21]);
        assert_eq!(parse_der_signature(&der), Ok(sig));
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(parse_der_signature(&trailing).is_err());
        for cut in 0..der.len() {
            assert!(
                parse_der_signature(&der[..cut]).is_err(),
                "truncated at {cut}"
            );
        }
    }

    #[test]
    fn normalizing_twice_is_stable_and_low() {
        let mut s = P256_ORDER;
        s[31] -= 1; // n - 1: the highest possible s
        let r = [1u8; 32];
        let der = encode_der_signature(&RawSignature { r, s });
        let low = normalize_low_s(&der).expect("valid signature");
        let parsed = parse_der_signature(&low).expect("valid");
        assert!(is_low_s(&parsed.s));
        assert_eq!(parsed.s[31], 1);
        assert_eq!(normalize_low_s(&low).expect("valid"), low);
    }
}
