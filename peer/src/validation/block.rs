//! Block-level checks: the block is the next one of this chain (number, previous hash), its
//! header commits to its data (data hash), and the ordering service signed it (metadata slot 0
//! against `/Channel/Orderer/BlockValidation`).
//!
//! A failure here is not a transaction verdict: the committer refuses the whole block
//! ([`BlockRejected`]) and asks the ordering service again. Fabric's peer makes the same checks
//! when a block arrives over Deliver (`VerifyBlock` in its message crypto service).

use gridledger_channels::policy::VerifiedSigners;
use gridledger_identity::Certificate;
use gridledger_proto::common::{self, BlockMetadataIndex};
use gridledger_proto::{block_data_hash, block_header_bytes, msp};
use prost::Message;

use super::{BlockContext, BlockRejected};

/// The policy every block's orderer signatures must satisfy.
pub const BLOCK_VALIDATION_POLICY: &str = "/Channel/Orderer/BlockValidation";

/// Checks the header of `block` against the chain: present, numbered `ctx.expected_number`,
/// linked to `ctx.previous_header_hash`, and with a data hash equal to the hash of its data.
pub(crate) fn check_header<'b>(
    block: &'b common::Block,
    ctx: &BlockContext<'_>,
) -> Result<&'b common::BlockHeader, BlockRejected> {
    let header = block.header.as_ref().ok_or(BlockRejected::MissingHeader)?;
    if header.number != ctx.expected_number {
        return Err(BlockRejected::WrongNumber {
            expected: ctx.expected_number,
            got: header.number,
        });
    }
    if header.previous_hash != ctx.previous_header_hash {
        return Err(BlockRejected::BrokenHashChain {
            number: header.number,
            expected: hex::encode(ctx.previous_header_hash),
            got: hex::encode(&header.previous_hash),
        });
    }
    let data = block.data.as_ref().ok_or(BlockRejected::MissingData {
        number: header.number,
    })?;
    let computed = block_data_hash(data);
    if header.data_hash != computed {
        return Err(BlockRejected::BadDataHash {
            number: header.number,
            expected: hex::encode(computed),
            got: hex::encode(&header.data_hash),
        });
    }
    Ok(header)
}

/// The time at which an orderer identity is validated: one second into its certificate's
/// validity, as Fabric's MSP does (`getValidityOptsForCert`, FAB-3678) — the chain, the CA
/// flags and revocation are checked, expiry is not. No clock is read and nothing a client
/// chose is involved, so every peer reaches the same verdict, and a peer catching up on old
/// blocks is not stopped by an orderer certificate that has since expired. Bytes that are
/// not a serialized identity with a certificate give 0, at which validation then fails.
fn validity_start(serialized_identity: &[u8]) -> u64 {
    msp::SerializedIdentity::decode(serialized_identity)
        .ok()
        .and_then(|id| Certificate::from_pem(&id.id_bytes).ok())
        .and_then(|cert| u64::try_from(cert.not_before).ok())
        .map_or(0, |not_before| not_before.saturating_add(1))
}

/// Verifies that `block` is the next block of the chain and that the ordering service signed
/// it: every `MetadataSignature` in metadata slot 0 is checked over
/// `Metadata.value || signature_header || BlockHeaderBytes(header)` with the creator of its
/// signature header, and the verified signers must satisfy `/Channel/Orderer/BlockValidation`
/// of `ctx.channel`. Each orderer identity is validated one second into its certificate's
/// validity, as Fabric's MSP does: chain, CA flags and revocation are checked, expiry is not.
pub fn verify_block_signatures(
    block: &common::Block,
    ctx: &BlockContext<'_>,
) -> Result<(), BlockRejected> {
    let header = check_header(block, ctx)?;
    let number = header.number;
    let bad_metadata = |reason: String| BlockRejected::BadSignatureMetadata { number, reason };

    let slot = BlockMetadataIndex::Signatures as usize;
    let raw = block
        .metadata
        .as_ref()
        .and_then(|m| m.metadata.get(slot))
        .ok_or_else(|| bad_metadata("the block has no metadata slot 0".to_string()))?;
    let metadata = common::Metadata::decode(raw.as_slice())
        .map_err(|e| bad_metadata(format!("slot 0 is not a common.Metadata: {e}")))?;

    let header_bytes = block_header_bytes(header);
    let msps = ctx.channel.msp_manager();
    let mut identities = Vec::with_capacity(metadata.signatures.len());
    let mut dropped = Vec::new();
    for (index, sig) in metadata.signatures.iter().enumerate() {
        if sig.signature_header.is_empty() {
            return Err(bad_metadata(format!(
                "signature #{index} has no signature header (BFT identifier headers are not supported)"
            )));
        }
        let signature_header = common::SignatureHeader::decode(sig.signature_header.as_slice())
            .map_err(|e| {
                bad_metadata(format!(
                    "signature #{index} has a signature header that does not decode: {e}"
                ))
            })?;
        let creator = &signature_header.creator;
        let identity = match msps.deserialize_identity(creator, validity_start(creator)) {
            Ok(identity) => identity,
            Err(e) => {
                dropped.push(format!("signature #{index}: {e}"));
                continue;
            }
        };
        let signed = [
            metadata.value.as_slice(),
            sig.signature_header.as_slice(),
            header_bytes.as_slice(),
        ]
        .concat();
        match identity.verify(&signed, &sig.signature) {
            Ok(()) => identities.push(identity),
            Err(e) => dropped.push(format!("signature #{index} ({}): {e}", identity.subject())),
        }
    }

    let signers = VerifiedSigners::from_identities(identities);
    let evaluation = ctx
        .channel
        .policies()
        .evaluate_verified(BLOCK_VALIDATION_POLICY, &signers)
        .map_err(|e| BlockRejected::BadOrdererSignature {
            number,
            explanation: format!("the policy cannot be evaluated: {e}"),
        })?;
    if !evaluation.satisfied {
        let mut explanation = evaluation.explanation.to_string().trim_end().to_string();
        for reason in dropped {
            explanation.push_str("\ndropped ");
            explanation.push_str(&reason);
        }
        return Err(BlockRejected::BadOrdererSignature {
            number,
            explanation,
        });
    }
    Ok(())
}
