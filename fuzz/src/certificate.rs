//! Target `certificate`: X.509 certificates, CRLs, serialized identities, MSP configs and
//! signatures as they arrive in creators, endorsements, channel config values, MSP
//! directories on disk and TLS handshakes. Models anyone who can put bytes where an identity
//! or a signature is expected.
//!
//! The first byte selects the decoder: 0 certificate DER, 1 certificate PEM, 2 CRL (PEM or
//! DER) against Org1's CA, 3 `msp.SerializedIdentity` through the channel's MSPs, 4 ECDSA DER
//! signature, 5 `msp.FabricMSPConfig`; the rest is its input.
//!
//! Checks: none of these panic; a serialized identity an MSP accepts keeps its MSP id and
//! bytes; a signature that parses re-encodes to one that parses the same, and its low-S form
//! is low-S.

use gridledger_identity::msp::{IdentityId, Msp};
use gridledger_identity::signature::{
    encode_der_signature, is_low_s, normalize_low_s, parse_der_signature, to_high_s,
};
use gridledger_identity::{Certificate, certificate::RevocationList};
use gridledger_proto::msp;
use prost::Message;

use crate::support;

fn certificate(cert: &Certificate) {
    let net = support::synthetic();
    let _ = cert.is_valid_at(net.world.now);
    let _ = cert.serial_hex();
    let _ = cert.is_issued_by(net.client.certificate());
}

/// Feeds `data` to the identity decoder selected by its first byte.
pub fn run(data: &[u8]) {
    let Some((selector, input)) = data.split_first() else {
        return;
    };
    let net = support::synthetic();
    match selector % 6 {
        0 => {
            if let Ok(cert) = Certificate::from_der(input) {
                certificate(&cert);
            }
        }
        1 => {
            if let Ok(cert) = Certificate::from_pem(input) {
                certificate(&cert);
            }
        }
        2 => {
            let ca = Certificate::from_pem(net.org1_ca.cert_pem().as_bytes())
                .expect("the generated CA's certificate parses");
            if let Ok(crl) = RevocationList::parse(input, &[ca]) {
                let _ = crl.revokes(net.client.certificate());
            }
        }
        3 => {
            let _ = IdentityId::from_serialized(input);
            let msps = net.world.channel.msp_manager();
            if let Ok(identity) = msps.deserialize_identity(input, net.world.now) {
                let serialized =
                    msp::SerializedIdentity::decode(input).expect("an accepted identity decodes");
                assert_eq!(identity.msp_id(), serialized.mspid, "the MSP id is kept");
                assert_eq!(identity.serialized(), input, "the bytes are kept");
            }
        }
        4 => {
            if let Ok(sig) = parse_der_signature(input) {
                let encoded = encode_der_signature(&sig);
                let again = parse_der_signature(&encoded).expect("an encoded signature parses");
                assert_eq!(
                    encode_der_signature(&again),
                    encoded,
                    "DER re-encodes stably"
                );
                let low = normalize_low_s(input).expect("a parsed signature normalizes");
                let low = parse_der_signature(&low).expect("a normalized signature parses");
                assert!(is_low_s(&low.s), "normalizing gives low S");
                let _ = to_high_s(input);
            }
        }
        _ => {
            if let Ok(config) = msp::FabricMspConfig::decode(input) {
                let _ = Msp::from_fabric_config(&config);
            }
        }
    }
}
