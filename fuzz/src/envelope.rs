//! Target `envelope`: a `common.Envelope` as a client sends it to the orderer's Broadcast and
//! as the peer's validator finds it in a block. Models a client (or a compromised orderer) that
//! sends arbitrary envelope bytes: payload, header, channel header, signature header, creator
//! and signature are all the attacker's.
//!
//! Checks: the orderer's screening (`gridledger_orderer::screen_envelope`: parse, channel,
//! type, creator, signature, `/Channel/Writers`) and the peer's validation of a block holding
//! the envelope alone (`validate_block`) never panic; the validator gives exactly one code;
//! decoding is stable (decode ∘ encode ∘ decode = decode).

use gridledger_proto::common;
use prost::Message;

use crate::support;

/// Feeds `data` to the orderer's screening and to the peer's validation.
pub fn run(data: &[u8]) {
    let Ok(envelope) = common::Envelope::decode(data) else {
        return;
    };
    let again = common::Envelope::decode(envelope.encode_to_vec().as_slice());
    assert_eq!(
        again.as_ref(),
        Ok(&envelope),
        "an envelope re-decodes to itself"
    );

    let world = support::fabric();
    let _ = gridledger_orderer::screen_envelope(&world.channel, &envelope, world.now);
    let validated = world
        .validate_alone(data.to_vec())
        .expect("a well-formed block 1 is never refused as a whole");
    assert_eq!(validated.codes.len(), 1, "one code per transaction");
}
