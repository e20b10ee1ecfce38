//! Step 1 of every policy evaluation: turn signed data into a set of verified signers.
//!
//! As in Fabric's `SignatureSetToValidIdentities`, each `SignedData` is deserialized and
//! validated against the channel's MSPs and its signature verified; signers that fail are
//! dropped, and a repeated identity is dropped before its signature is checked (so nobody can
//! make the validator verify the same signer over and over). Unlike Fabric, which only logs
//! them, every dropped signer is kept with its reason for the explanation.
//!
//! Invariant: "the same identity" means the same [`IdentityId`] — MSP id plus the hash of the
//! certificate normalised to low-S — never the same bytes. A certificate re-wrapped in other
//! PEM lines, a `SerializedIdentity` with an unknown field appended, or the high-S twin of the
//! certificate's signature are all one signer and count once.
//!
//! Verification happens once per evaluation: an implicit-meta policy that consults every org's
//! sub-policy reuses the same [`VerifiedSigners`].

use std::collections::HashMap;
use std::sync::Arc;

use gridledger_identity::{Identity, IdentityId, MspManager};
use gridledger_proto::msp::SerializedIdentity;
use prost::Message;

use super::explain::{RejectedSigner, RejectionReason, SignerSummary};

/// One signature over some data, as a policy sees it (Fabric's `protoutil.SignedData`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedData<'a> {
    /// The bytes that were signed.
    pub data: &'a [u8],
    /// The signer's `msp.SerializedIdentity` bytes, as received.
    pub identity: &'a [u8],
    /// The DER ECDSA signature over `data`.
    pub signature: &'a [u8],
}

/// A signer whose identity was validated and whose signature verified.
#[derive(Debug, Clone)]
pub struct VerifiedSigner {
    /// Position in the signed-data list the signer came from.
    pub index: usize,
    /// The validated identity.
    pub identity: Arc<Identity>,
}

impl VerifiedSigner {
    /// The signer as shown in explanations.
    pub fn summary(&self) -> SignerSummary {
        let id = &self.identity;
        SignerSummary {
            index: self.index,
            subject: id.subject().to_string(),
            msp_id: id.msp_id().to_string(),
            role: id.role().map(|r| r.to_string()),
            is_admin: id.is_admin(),
        }
    }
}

/// The deduplicated, verified signers of one evaluation, plus the ones that were dropped.
#[derive(Debug, Clone, Default)]
pub struct VerifiedSigners {
    signers: Vec<VerifiedSigner>,
    rejected: Vec<RejectedSigner>,
}

impl VerifiedSigners {
    /// Signers whose identities were validated and signatures verified elsewhere (for example a
    /// transaction creator checked while unpacking the envelope). Repeated identities (same
    /// [`IdentityId`], whatever the bytes) are dropped and reported as duplicates.
    pub fn from_identities(identities: impl IntoIterator<Item = Arc<Identity>>) -> VerifiedSigners {
        let mut out = VerifiedSigners::default();
        let mut seen: HashMap<IdentityId, usize> = HashMap::new();
        for (index, identity) in identities.into_iter().enumerate() {
            if let Some(&of) = seen.get(identity.id()) {
                out.rejected
                    .push(duplicate(index, identity.msp_id().to_string(), of));
                continue;
            }
            seen.insert(identity.id().clone(), index);
            out.signers.push(VerifiedSigner { index, identity });
        }
        out
    }

    /// The verified signers, in input order.
    pub fn signers(&self) -> &[VerifiedSigner] {
        &self.signers
    }

    /// The dropped signers, in input order.
    pub fn rejected(&self) -> &[RejectedSigner] {
        &self.rejected
    }

    /// How many signers verified.
    pub fn len(&self) -> usize {
        self.signers.len()
    }

    /// Whether no signer verified.
    pub fn is_empty(&self) -> bool {
        self.signers.is_empty()
    }

    /// The verified signers as shown in explanations.
    pub fn summaries(&self) -> Vec<SignerSummary> {
        self.signers.iter().map(VerifiedSigner::summary).collect()
    }
}

fn duplicate(index: usize, msp_id: String, of: usize) -> RejectedSigner {
    RejectedSigner {
        index,
        claimed_msp_id: Some(msp_id),
        reason: RejectionReason::Duplicate { of },
        detail: format!("the same identity already signed as signer #{of}"),
    }
}

/// The MSP id a serialized identity claims, if its bytes decode.
fn claimed_msp_id(serialized: &[u8]) -> Option<String> {
    SerializedIdentity::decode(serialized)
        .ok()
        .map(|id| id.mspid)
}

/// Validates each signer's identity at `now_unix_secs` and verifies its signature, dropping
/// (and recording) invalid identities, bad signatures and repeated identities.
pub fn verify_signers(
    signed: &[SignedData<'_>],
    msps: &MspManager,
    now_unix_secs: u64,
) -> VerifiedSigners {
    let mut out = VerifiedSigners::default();
    // Identities that already verified, by id: a repeat (in any encoding) is dropped before
    // its signature is checked. A repeat of one that failed is checked on its own merits, as
    // Fabric does. Exact byte repeats skip even the (cached) deserialization.
    let mut seen: HashMap<IdentityId, usize> = HashMap::new();
    let mut seen_bytes: HashMap<&[u8], usize> = HashMap::new();
    for (index, sd) in signed.iter().enumerate() {
        if let Some(&of) = seen_bytes.get(sd.identity) {
            out.rejected.push(RejectedSigner {
                claimed_msp_id: claimed_msp_id(sd.identity),
                ..duplicate(index, String::new(), of)
            });
            continue;
        }
        let identity = match msps.deserialize_identity(sd.identity, now_unix_secs) {
            Ok(identity) => identity,
            Err(err) => {
                out.rejected.push(RejectedSigner {
                    index,
                    claimed_msp_id: claimed_msp_id(sd.identity),
                    reason: RejectionReason::InvalidIdentity,
                    detail: err.to_string(),
                });
                continue;
            }
        };
        if let Some(&of) = seen.get(identity.id()) {
            out.rejected
                .push(duplicate(index, identity.msp_id().to_string(), of));
            continue;
        }
        if let Err(err) = identity.verify(sd.data, sd.signature) {
            out.rejected.push(RejectedSigner {
                index,
                claimed_msp_id: Some(identity.msp_id().to_string()),
                reason: RejectionReason::BadSignature,
                detail: format!("{} ({})", err, identity.subject()),
            });
            continue;
        }
        seen.insert(identity.id().clone(), index);
        seen_bytes.insert(sd.identity, index);
        out.signers.push(VerifiedSigner { index, identity });
    }
    out
}
