//! Building key-level endorsement policies, like Fabric's `statebased.KeyEndorsementPolicy`:
//! "a member (or peer) of each of these organizations must endorse changes of this key".
//!
//! The policy is what a chaincode stores in a key's `VALIDATION_PARAMETER` metadata entry
//! (`ChaincodeStub::set_state_validation_parameter`): a marshalled `SignaturePolicyEnvelope`
//! whose rule requires a signature from every listed organization — `NOutOf(n, [SignedBy 0,
//! …, SignedBy n-1])` over role principals sorted by MSP id, the form Fabric's shims build, so a
//! policy written by a Go or Node chaincode can be read and extended here and vice versa.

use std::collections::BTreeMap;

use gridledger_proto::common::{self, msp_principal, msp_role, signature_policy};
use gridledger_proto::prost::Message;
use thiserror::Error;

/// The role an organization's endorser must have (Fabric's `statebased.RoleType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoleType {
    /// Any member of the organization (`MSPRole.MEMBER`).
    Member,
    /// A peer of the organization (`MSPRole.PEER`).
    Peer,
}

impl RoleType {
    fn msp_role(self) -> msp_role::MspRoleType {
        match self {
            RoleType::Member => msp_role::MspRoleType::Member,
            RoleType::Peer => msp_role::MspRoleType::Peer,
        }
    }
}

/// Why existing policy bytes cannot be edited as a key endorsement policy.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyPolicyError {
    /// The bytes are not a `SignaturePolicyEnvelope`.
    #[error("the key's endorsement policy is not a SignaturePolicyEnvelope: {0}")]
    Decode(String),
    /// A principal is not an organization role.
    #[error(
        "the key's endorsement policy has principal #{index} that is not an MSP role (member or peer); only role principals can be edited"
    )]
    UnsupportedPrincipal {
        /// The principal's position in the envelope.
        index: usize,
    },
}

/// A key-level endorsement policy being built: organizations (by MSP id) whose endorsement
/// every change of the key needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyEndorsementPolicy {
    orgs: BTreeMap<String, RoleType>,
}

impl KeyEndorsementPolicy {
    /// An empty policy (no organization required).
    pub fn new() -> KeyEndorsementPolicy {
        KeyEndorsementPolicy::default()
    }

    /// The policy stored in `policy` (a key's `VALIDATION_PARAMETER`), to be edited; empty
    /// bytes give an empty policy. Only role principals (member, peer) are understood.
    pub fn from_policy(policy: &[u8]) -> Result<KeyEndorsementPolicy, KeyPolicyError> {
        let mut out = KeyEndorsementPolicy::new();
        if policy.is_empty() {
            return Ok(out);
        }
        let envelope = common::SignaturePolicyEnvelope::decode(policy)
            .map_err(|e| KeyPolicyError::Decode(e.to_string()))?;
        for (index, principal) in envelope.identities.iter().enumerate() {
            let unsupported = KeyPolicyError::UnsupportedPrincipal { index };
            if principal.principal_classification != msp_principal::Classification::Role as i32 {
                return Err(unsupported);
            }
            let role = common::MspRole::decode(principal.principal.as_slice())
                .map_err(|_| unsupported.clone())?;
            let role_type = match msp_role::MspRoleType::try_from(role.role) {
                Ok(msp_role::MspRoleType::Member) => RoleType::Member,
                Ok(msp_role::MspRoleType::Peer) => RoleType::Peer,
                _ => return Err(unsupported),
            };
            out.orgs.insert(role.msp_identifier, role_type);
        }
        Ok(out)
    }

    /// Requires an endorsement by `role` of each of `msp_ids` (replacing the role of an
    /// organization already listed).
    pub fn add_orgs<S: AsRef<str>>(&mut self, role: RoleType, msp_ids: &[S]) -> &mut Self {
        for msp_id in msp_ids {
            self.orgs.insert(msp_id.as_ref().to_owned(), role);
        }
        self
    }

    /// No longer requires endorsements from `msp_ids`.
    pub fn del_orgs<S: AsRef<str>>(&mut self, msp_ids: &[S]) -> &mut Self {
        for msp_id in msp_ids {
            self.orgs.remove(msp_id.as_ref());
        }
        self
    }

    /// The organizations required, sorted by MSP id.
    pub fn list_orgs(&self) -> Vec<String> {
        self.orgs.keys().cloned().collect()
    }

    /// The marshalled `SignaturePolicyEnvelope` to store as the key's validation parameter:
    /// every listed organization must endorse. With no organization listed this is empty,
    /// which removes the key-level policy (the chaincode's policy applies again).
    pub fn policy(&self) -> Vec<u8> {
        if self.orgs.is_empty() {
            return Vec::new();
        }
        let identities = self
            .orgs
            .iter()
            .map(|(msp_id, role)| common::MspPrincipal {
                principal_classification: msp_principal::Classification::Role as i32,
                principal: common::MspRole {
                    msp_identifier: msp_id.clone(),
                    role: role.msp_role() as i32,
                }
                .encode_to_vec(),
            })
            .collect();
        let rules = (0..self.orgs.len())
            .map(|i| common::SignaturePolicy {
                r#type: Some(signature_policy::Type::SignedBy(
                    i32::try_from(i).unwrap_or(i32::MAX),
                )),
            })
            .collect();
        common::SignaturePolicyEnvelope {
            version: 0,
            rule: Some(common::SignaturePolicy {
                r#type: Some(signature_policy::Type::NOutOf(signature_policy::NOutOf {
                    n: i32::try_from(self.orgs.len()).unwrap_or(i32::MAX),
                    rules,
                })),
            }),
            identities,
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_requires_every_org_sorted_and_round_trips() {
        let mut policy = KeyEndorsementPolicy::new();
        policy
            .add_orgs(RoleType::Peer, &["TSOMSP", "DSOMSP"])
            .add_orgs(RoleType::Member, &["AggMSP"]);
        let bytes = policy.policy();
        let envelope = common::SignaturePolicyEnvelope::decode(bytes.as_slice()).unwrap();
        let msp_ids: Vec<String> = envelope
            .identities
            .iter()
            .map(|p| {
                common::MspRole::decode(p.principal.as_slice())
                    .unwrap()
                    .msp_identifier
            })
            .collect();
        assert_eq!(msp_ids, ["AggMSP", "DSOMSP", "TSOMSP"]);
        match envelope.rule.and_then(|r| r.r#type) {
            Some(signature_policy::Type::NOutOf(n_out_of)) => {
                assert_eq!(n_out_of.n, 3);
                assert_eq!(n_out_of.rules.len(), 3);
            }
            other => panic!("expected NOutOf, got {other:?}"),
        }
        let mut back = KeyEndorsementPolicy::from_policy(&bytes).unwrap();
        assert_eq!(back, policy);
        back.del_orgs(&["AggMSP", "TSOMSP"]);
        assert_eq!(back.list_orgs(), ["DSOMSP"]);
        back.del_orgs(&["DSOMSP"]);
        assert!(back.policy().is_empty(), "no org left removes the policy");
    }

    #[test]
    fn garbage_or_non_role_policies_are_refused() {
        assert!(matches!(
            KeyEndorsementPolicy::from_policy(b"\xff\xff"),
            Err(KeyPolicyError::Decode(_))
        ));
        let envelope = common::SignaturePolicyEnvelope {
            version: 0,
            rule: None,
            identities: vec![common::MspPrincipal {
                principal_classification: msp_principal::Classification::Identity as i32,
                principal: b"cert".to_vec(),
            }],
        };
        assert_eq!(
            KeyEndorsementPolicy::from_policy(&envelope.encode_to_vec()),
            Err(KeyPolicyError::UnsupportedPrincipal { index: 0 })
        );
    }
}
