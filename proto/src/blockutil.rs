//! Fabric's block hashing and transaction-id rules (`protoutil/blockutils.go`, `ComputeTxID`).
//!
//! These live next to the messages because every component that builds, stores or checks a
//! block must hash it identically: the header hash is SHA-256 over an ASN.1 DER encoding of the
//! header (not over its protobuf bytes), and the data hash is SHA-256 over the plain
//! concatenation of the envelope bytes (not a Merkle tree, whatever the proto comment says).

use ring::digest::{Context, SHA256, digest};

use crate::common::{BlockData, BlockHeader};

/// DER tag of an INTEGER.
const TAG_INTEGER: u8 = 0x02;
/// DER tag of an OCTET STRING.
const TAG_OCTET_STRING: u8 = 0x04;
/// DER tag of a constructed SEQUENCE.
const TAG_SEQUENCE: u8 = 0x30;

/// The bytes Fabric hashes for a block header:
/// DER `SEQUENCE { INTEGER number, OCTET STRING previous_hash, OCTET STRING data_hash }`.
///
/// The INTEGER is minimal two's complement (as Go's `encoding/asn1` writes a `*big.Int`), so a
/// leading `0x00` is added when the top bit is set; lengths use DER long form from 128 bytes on.
/// These bytes are also the third part of the orderer's block signature input.
pub fn block_header_bytes(header: &BlockHeader) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + header.previous_hash.len() + header.data_hash.len());
    push_tlv(&mut body, TAG_INTEGER, &der_unsigned_integer(header.number));
    push_tlv(&mut body, TAG_OCTET_STRING, &header.previous_hash);
    push_tlv(&mut body, TAG_OCTET_STRING, &header.data_hash);
    let mut out = Vec::with_capacity(body.len() + 6);
    push_tlv(&mut out, TAG_SEQUENCE, &body);
    out
}

/// SHA-256 of [`block_header_bytes`]: the value the next block stores as `previous_hash`.
pub fn block_header_hash(header: &BlockHeader) -> [u8; 32] {
    sha256(&block_header_bytes(header))
}

/// SHA-256 of the concatenation `data[0] || data[1] || …`: the value of `BlockHeader.data_hash`.
pub fn block_data_hash(data: &BlockData) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    for entry in &data.data {
        ctx.update(entry);
    }
    to_array(ctx.finish().as_ref())
}

/// Fabric's transaction id: lowercase hex of SHA-256(`nonce || creator`), 64 characters.
///
/// `creator` must be the serialized identity bytes exactly as they appear in the
/// `SignatureHeader`, never a re-encoding.
pub fn compute_tx_id(nonce: &[u8], creator: &[u8]) -> String {
    let mut ctx = Context::new(&SHA256);
    ctx.update(nonce);
    ctx.update(creator);
    lower_hex(ctx.finish().as_ref())
}

/// Minimal big-endian two's-complement content octets of a non-negative integer.
fn der_unsigned_integer(value: u64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    // Keep at least one octet so that zero encodes as `00`.
    let first = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len() - 1);
    let significant = &bytes[first..];
    let mut out = Vec::with_capacity(significant.len() + 1);
    if significant[0] & 0x80 != 0 {
        // Without the pad the value would read as negative.
        out.push(0x00);
    }
    out.extend_from_slice(significant);
    out
}

/// Appends tag, DER length and content.
fn push_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    push_der_length(out, content.len());
    out.extend_from_slice(content);
}

/// DER definite length: short form below 128, else `0x80 | n` followed by n big-endian octets.
fn push_der_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        // Fits in seven bits by the check above.
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let first = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len() - 1);
    let significant = &bytes[first..];
    // At most size_of::<usize>() octets, so the count always fits in the low seven bits.
    out.push(0x80 | significant.len() as u8);
    out.extend_from_slice(significant);
}

/// SHA-256 of `data` (Fabric's `util.ComputeHash`, used for tx ids, block and private-data hashes).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    to_array(digest(&SHA256, data).as_ref())
}

fn to_array(d: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(d);
    out
}

fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_encoding_is_minimal_twos_complement() {
        assert_eq!(der_unsigned_integer(0), vec![0x00]);
        assert_eq!(der_unsigned_integer(1), vec![0x01]);
        assert_eq!(der_unsigned_integer(127), vec![0x7f]);
        assert_eq!(der_unsigned_integer(128), vec![0x00, 0x80]);
        assert_eq!(der_unsigned_integer(256), vec![0x01, 0x00]);
        assert_eq!(der_unsigned_integer(0x8000), vec![0x00, 0x80, 0x00]);
        let mut max = vec![0x00];
        max.extend_from_slice(&[0xff; 8]);
        assert_eq!(der_unsigned_integer(u64::MAX), max);
    }

    #[test]
    fn lengths_switch_to_long_form_at_128() {
        let enc = |n: usize| {
            let mut v = Vec::new();
            push_der_length(&mut v, n);
            v
        };
        assert_eq!(enc(0), vec![0x00]);
        assert_eq!(enc(127), vec![0x7f]);
        assert_eq!(enc(128), vec![0x81, 0x80]);
        assert_eq!(enc(255), vec![0x81, 0xff]);
        assert_eq!(enc(256), vec![0x82, 0x01, 0x00]);
        assert_eq!(enc(70_000), vec![0x83, 0x01, 0x11, 0x70]);
    }

    #[test]
    fn long_previous_hash_uses_long_form_sequence_length() {
        let header = BlockHeader {
            number: 5,
            previous_hash: vec![0x11; 200],
            data_hash: vec![],
        };
        let der = block_header_bytes(&header);
        // body = 3 (int) + 3 + 200 (octets, long form) + 2 (empty octets) = 208
        assert_eq!(&der[..3], &[0x30, 0x81, 208]);
        assert_eq!(&der[3..6], &[0x02, 0x01, 0x05]);
        assert_eq!(&der[6..9], &[0x04, 0x81, 200]);
        assert_eq!(&der[der.len() - 2..], &[0x04, 0x00]);
        assert_eq!(der.len(), 3 + 208);
    }

    #[test]
    fn tx_id_is_lowercase_hex_of_sha256() {
        // sha256("abc"), split across nonce and creator.
        assert_eq!(
            compute_tx_id(b"a", b"bc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
