//! Reading and authorizing the signed envelopes clients send to Broadcast and Deliver.
//!
//! Every check works on the bytes as received: the creator's signature is verified over the
//! envelope's `payload` bytes, never over a re-encoding. Failures are [`Rejection`]s carrying
//! the Fabric status a client expects — BAD_REQUEST for what does not parse, NOT_FOUND for a
//! channel this orderer does not serve, FORBIDDEN for an identity or signature the channel
//! does not accept or a policy it does not satisfy — and an `info` line saying why.

use std::sync::Arc;

use gridledger_channels::config::ChannelConfig;
use gridledger_channels::policy::VerifiedSigners;
use gridledger_identity::Identity;
use gridledger_proto::common::{self, Status};
use prost::Message;

/// An envelope refused with a status and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    /// The Fabric status.
    pub status: Status,
    /// Why, for the client.
    pub info: String,
}

impl Rejection {
    pub(crate) fn new(status: Status, info: impl Into<String>) -> Rejection {
        Rejection {
            status,
            info: info.into(),
        }
    }

    pub(crate) fn bad_request(info: impl Into<String>) -> Rejection {
        Rejection::new(Status::BadRequest, info)
    }

    pub(crate) fn forbidden(info: impl Into<String>) -> Rejection {
        Rejection::new(Status::Forbidden, info)
    }
}

/// The decoded headers of an envelope, next to the payload bytes they came from.
#[derive(Debug, Clone)]
pub(crate) struct ParsedEnvelope {
    /// `Payload.header.channel_header`, decoded.
    pub channel_header: common::ChannelHeader,
    /// `Payload.header.signature_header`, decoded.
    pub signature_header: common::SignatureHeader,
    /// `Payload.data`.
    pub data: Vec<u8>,
}

/// Decodes payload, header, channel header and signature header; requires a channel id.
pub(crate) fn parse_envelope(envelope: &common::Envelope) -> Result<ParsedEnvelope, Rejection> {
    if envelope.payload.is_empty() {
        return Err(Rejection::bad_request("the envelope has no payload"));
    }
    let payload = common::Payload::decode(envelope.payload.as_slice()).map_err(|e| {
        Rejection::bad_request(format!("the envelope payload does not decode: {e}"))
    })?;
    let header = payload
        .header
        .ok_or_else(|| Rejection::bad_request("the envelope payload has no header"))?;
    let channel_header = common::ChannelHeader::decode(header.channel_header.as_slice())
        .map_err(|e| Rejection::bad_request(format!("the channel header does not decode: {e}")))?;
    let signature_header = common::SignatureHeader::decode(header.signature_header.as_slice())
        .map_err(|e| {
            Rejection::bad_request(format!("the signature header does not decode: {e}"))
        })?;
    if channel_header.channel_id.is_empty() {
        return Err(Rejection::bad_request(
            "the channel header names no channel",
        ));
    }
    Ok(ParsedEnvelope {
        channel_header,
        signature_header,
        data: payload.data,
    })
}

/// Validates the creator against the channel's MSPs at `now_unix_secs`, verifies its
/// signature over the payload bytes, and checks that it satisfies the policy at `policy_path`.
pub(crate) fn authorize(
    channel: &ChannelConfig,
    envelope: &common::Envelope,
    parsed: &ParsedEnvelope,
    policy_path: &str,
    now_unix_secs: u64,
) -> Result<Arc<Identity>, Rejection> {
    let creator = &parsed.signature_header.creator;
    if creator.is_empty() {
        return Err(Rejection::bad_request(
            "the signature header has no creator",
        ));
    }
    let identity = channel
        .msp_manager()
        .deserialize_identity(creator, now_unix_secs)
        .map_err(|e| {
            Rejection::forbidden(format!(
                "the creator is not a valid identity of channel {}: {e}",
                channel.channel_id()
            ))
        })?;
    identity
        .verify(&envelope.payload, &envelope.signature)
        .map_err(|e| {
            Rejection::forbidden(format!(
                "the creator's signature over the payload is not valid: {e}"
            ))
        })?;
    let signers = VerifiedSigners::from_identities([identity.clone()]);
    let policies = channel.policies();
    let satisfied = policies.is_satisfied(policy_path, &signers).map_err(|e| {
        Rejection::forbidden(format!("policy {policy_path} cannot be evaluated: {e}"))
    })?;
    if !satisfied {
        let why = policies
            .evaluate_verified(policy_path, &signers)
            .map(|evaluation| one_line(&evaluation.explanation.to_string()))
            .unwrap_or_default();
        return Err(Rejection::forbidden(format!(
            "identity '{}' of {} does not satisfy policy {policy_path}: {why}",
            identity.subject(),
            identity.msp_id()
        )));
    }
    Ok(identity)
}

/// A multi-line explanation folded into one line for a status `info`.
pub(crate) fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unparsable_envelopes_are_bad_requests() {
        let cases = [
            common::Envelope::default(),
            common::Envelope {
                payload: vec![0xff, 0x01],
                signature: Vec::new(),
            },
            common::Envelope {
                payload: common::Payload::default().encode_to_vec(),
                signature: Vec::new(),
            },
            common::Envelope {
                payload: common::Payload {
                    header: Some(common::Header {
                        channel_header: vec![0x0a, 0xff],
                        signature_header: Vec::new(),
                    }),
                    data: b"x".to_vec(),
                }
                .encode_to_vec(),
                signature: Vec::new(),
            },
            // Decodes, but names no channel.
            common::Envelope {
                payload: common::Payload {
                    header: Some(common::Header::default()),
                    data: b"x".to_vec(),
                }
                .encode_to_vec(),
                signature: Vec::new(),
            },
        ];
        for envelope in cases {
            let rejection = parse_envelope(&envelope).expect_err("refused");
            assert_eq!(rejection.status, Status::BadRequest, "{}", rejection.info);
        }
    }

    #[test]
    fn explanations_fold_into_one_line() {
        assert_eq!(
            one_line("policy NOT satisfied\n  [FAIL] x\n\n"),
            "policy NOT satisfied; [FAIL] x"
        );
    }
}
