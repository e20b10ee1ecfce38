//! Step 2 of a signature-policy evaluation: the compiled rule tree run over verified signers.
//!
//! The semantics are Fabric's `cauthdsl` exactly, because a policy must give the same verdict on
//! every peer, Fabric's or ours:
//! - `SignedBy(i)` takes the *first* signer not yet used that satisfies principal `i` and marks
//!   it used; each signer counts at most once in the whole policy.
//! - `NOutOf(n, rules)` tries every rule in order, each on a copy of the used flags, and keeps
//!   the copy only if that rule succeeded; it is satisfied when at least `n` rules were. The
//!   choice is greedy, so `AND('A.member', 'A.admin')` with signers [admin, plain member] fails:
//!   the admin is spent on `'A.member'` first. Fabric behaves the same; the explanation shows it.
//! - Principal `ROLE`: `member` needs the MSP id; `admin` the MSP id and an admin identity;
//!   `client`/`peer`/`orderer` the MSP id and that NodeOU role. `IDENTITY`: the signer's
//!   [`IdentityId`] (MSP id and low-S certificate hash) equals the principal's, so any encoding
//!   of the named certificate matches. Other classifications are never satisfied.
//! - Only envelopes of version 0 are understood (Fabric's `cauthdsl` refuses others). Fabric
//!   decodes principals only when it evaluates them, so a principal whose bytes do not decode,
//!   or a ROLE with an unknown role number, does not make the policy malformed: it compiles
//!   into a principal that is never satisfied, and the explanation says why.
//!
//! [`CompiledSignaturePolicy`] has a fast path ([`CompiledSignaturePolicy::is_satisfied`]) that
//! builds no explanation, for validation at full speed, and [`CompiledSignaturePolicy::evaluate`]
//! that builds the tree. Both run the same matching function.

use gridledger_identity::{Identity, IdentityId, Role};
use gridledger_proto::common::{
    MspRole, SignaturePolicy, SignaturePolicyEnvelope, msp_principal, msp_role::MspRoleType,
    signature_policy,
};
use prost::Message;
use serde::Serialize;

use super::explain::{Explanation, PolicyExplanation, RuleExplanation};
use super::signers::{SignedData, VerifiedSigner, VerifiedSigners, verify_signers};
use super::syntax::role_name;
use super::{MAX_POLICY_DEPTH, PolicyError};
use gridledger_identity::MspManager;

/// The verdict of one evaluation and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    /// Whether the policy is satisfied by the signers.
    pub satisfied: bool,
    /// The explanation tree.
    pub explanation: Explanation,
}

/// What a principal requires of a signer.
#[derive(Debug, Clone)]
enum PrincipalKind {
    Role {
        msp_id: String,
        role: MspRoleType,
    },
    Identity(IdentityId),
    Unsupported(String),
    /// A principal whose bytes do not decode: never satisfied, for the reason given.
    Invalid(String),
}

#[derive(Debug, Clone)]
struct Principal {
    /// How the principal is shown: `'DSOMSP.peer'`, `the specific identity from DSOMSP ...`.
    label: String,
    /// The label as the object of "no signature from ...": `a 'DSOMSP.peer'`.
    wanted: String,
    kind: PrincipalKind,
}

impl Principal {
    /// Decodes principal `index` of an envelope. Never fails: what does not decode becomes a
    /// principal nobody satisfies, as in Fabric, which decodes principals at evaluation time.
    fn decode(index: i32, principal: &gridledger_proto::common::MspPrincipal) -> Principal {
        use msp_principal::Classification;
        let invalid = |label: String, reason: String| Principal {
            wanted: label.clone(),
            label,
            kind: PrincipalKind::Invalid(reason),
        };
        match Classification::try_from(principal.principal_classification) {
            Ok(Classification::Role) => {
                let label = format!("ROLE principal {index}");
                let role = match MspRole::decode(principal.principal.as_slice()) {
                    Ok(role) => role,
                    Err(source) => {
                        let reason = PolicyError::UndecodablePrincipal { index, source };
                        return invalid(label, reason.to_string());
                    }
                };
                let Ok(role_type) = MspRoleType::try_from(role.role) else {
                    let reason = PolicyError::UnknownRoleType {
                        index,
                        role: role.role,
                    };
                    return invalid(label, reason.to_string());
                };
                let label = format!("'{}.{}'", role.msp_identifier, role_name(role_type));
                Principal {
                    wanted: format!("a {label}"),
                    label,
                    kind: PrincipalKind::Role {
                        msp_id: role.msp_identifier,
                        role: role_type,
                    },
                }
            }
            Ok(Classification::Identity) => {
                match IdentityId::from_serialized(&principal.principal) {
                    Ok(id) => {
                        let label = format!(
                            "the specific identity from {} (identity principal {index})",
                            id.msp_id()
                        );
                        Principal {
                            wanted: label.clone(),
                            label,
                            kind: PrincipalKind::Identity(id),
                        }
                    }
                    Err(err) => invalid(
                        format!("the specific identity of principal {index}"),
                        format!(
                            "identity {index} of the policy is an IDENTITY principal that is not \
                             a serialized X.509 identity: {err}"
                        ),
                    ),
                }
            }
            Ok(other) => Principal {
                label: format!("{} principal {index}", other.as_str_name()),
                wanted: format!("{} principal {index}", other.as_str_name()),
                kind: PrincipalKind::Unsupported(other.as_str_name().to_string()),
            },
            Err(_) => Principal {
                label: format!("principal {index}"),
                wanted: format!("principal {index}"),
                kind: PrincipalKind::Unsupported(format!(
                    "classification {}",
                    principal.principal_classification
                )),
            },
        }
    }

    /// Whether `id` satisfies this principal (the one matching function both paths use).
    fn matches(&self, id: &Identity) -> bool {
        match &self.kind {
            PrincipalKind::Role { msp_id, role } => {
                id.msp_id() == msp_id
                    && match role {
                        MspRoleType::Member => true,
                        MspRoleType::Admin => id.is_admin(),
                        MspRoleType::Client => id.role() == Some(Role::Client),
                        MspRoleType::Peer => id.role() == Some(Role::Peer),
                        MspRoleType::Orderer => id.role() == Some(Role::Orderer),
                    }
            }
            PrincipalKind::Identity(wanted) => id.id() == wanted,
            PrincipalKind::Unsupported(_) | PrincipalKind::Invalid(_) => false,
        }
    }

    fn msp_id(&self) -> Option<&str> {
        match &self.kind {
            PrincipalKind::Role { msp_id, .. } => Some(msp_id),
            PrincipalKind::Identity(id) => Some(id.msp_id()),
            _ => None,
        }
    }
}

/// A compiled rule: principals resolved to indexes into `CompiledSignaturePolicy::principals`.
#[derive(Debug, Clone)]
enum Rule {
    NOutOf { n: i32, rules: Vec<Rule> },
    SignedBy { principal: usize },
}

/// A signature policy checked for well-formedness and ready to evaluate many times.
#[derive(Debug, Clone)]
pub struct CompiledSignaturePolicy {
    rule: Rule,
    principals: Vec<Principal>,
}

impl CompiledSignaturePolicy {
    /// Checks the envelope (version 0, rule present, no empty element, `SignedBy` indexes in
    /// range, nesting within [`MAX_POLICY_DEPTH`]) and compiles it. Principals that do not
    /// decode compile into principals that are never satisfied (see the module docs).
    pub fn compile(env: &SignaturePolicyEnvelope) -> Result<CompiledSignaturePolicy, PolicyError> {
        if env.version != 0 {
            return Err(PolicyError::UnsupportedVersion {
                version: env.version,
            });
        }
        let rule = env.rule.as_ref().ok_or(PolicyError::MissingRule)?;
        let mut compiler = Compiler {
            env,
            slots: vec![None; env.identities.len()],
            principals: Vec::new(),
        };
        let rule = compiler.compile(rule, 1)?;
        Ok(CompiledSignaturePolicy {
            rule,
            principals: compiler.principals,
        })
    }

    /// Whether the signers satisfy the policy, without building an explanation.
    pub fn is_satisfied(&self, signers: &VerifiedSigners) -> bool {
        let mut used = vec![false; signers.len()];
        self.eval(&self.rule, signers.signers(), &mut used)
    }

    /// Evaluates the policy and explains the verdict.
    pub fn evaluate(&self, signers: &VerifiedSigners) -> Evaluation {
        let rule = self.explain_rule(signers);
        let satisfied = rule.satisfied();
        Evaluation {
            satisfied,
            explanation: Explanation {
                satisfied,
                policy: PolicyExplanation::Signature {
                    path: None,
                    satisfied,
                    rule,
                },
                signers: signers.summaries(),
                rejected_signers: signers.rejected().to_vec(),
            },
        }
    }

    /// The rule tree's explanation alone (used by the policy tree to nest it).
    pub(crate) fn explain_rule(&self, signers: &VerifiedSigners) -> RuleExplanation {
        let mut used = vec![false; signers.len()];
        self.explain(&self.rule, signers, &mut used)
    }

    fn eval(&self, rule: &Rule, signers: &[VerifiedSigner], used: &mut [bool]) -> bool {
        match rule {
            Rule::SignedBy { principal } => {
                let principal = &self.principals[*principal];
                for (slot, signer) in used.iter_mut().zip(signers) {
                    if !*slot && principal.matches(&signer.identity) {
                        *slot = true;
                        return true;
                    }
                }
                false
            }
            Rule::NOutOf { n, rules } => {
                let mut verified: i64 = 0;
                let mut scratch = vec![false; used.len()];
                for rule in rules {
                    scratch.copy_from_slice(used);
                    if self.eval(rule, signers, &mut scratch) {
                        verified += 1;
                        used.copy_from_slice(&scratch);
                    }
                }
                verified >= i64::from(*n)
            }
        }
    }

    fn explain(&self, rule: &Rule, all: &VerifiedSigners, used: &mut [bool]) -> RuleExplanation {
        let signers = all.signers();
        match rule {
            Rule::SignedBy { principal } => {
                let principal = &self.principals[*principal];
                for (slot, signer) in used.iter_mut().zip(signers) {
                    if !*slot && principal.matches(&signer.identity) {
                        *slot = true;
                        return RuleExplanation::SignedBy {
                            satisfied: true,
                            principal: principal.label.clone(),
                            satisfied_by: Some(signer.summary()),
                            missing: None,
                        };
                    }
                }
                RuleExplanation::SignedBy {
                    satisfied: false,
                    principal: principal.label.clone(),
                    satisfied_by: None,
                    missing: Some(missing_text(principal, all)),
                }
            }
            Rule::NOutOf { n, rules } => {
                let mut explained = Vec::with_capacity(rules.len());
                let mut satisfied_count = 0usize;
                let mut scratch = vec![false; used.len()];
                for rule in rules {
                    scratch.copy_from_slice(used);
                    let sub = self.explain(rule, all, &mut scratch);
                    if sub.satisfied() {
                        satisfied_count += 1;
                        used.copy_from_slice(&scratch);
                    }
                    explained.push(sub);
                }
                RuleExplanation::NOutOf {
                    satisfied: satisfied_count as i64 >= i64::from(*n),
                    operator: operator_label(*n, rules.len()),
                    required: *n,
                    satisfied_count,
                    rules: explained,
                }
            }
        }
    }
}

/// How an `NOutOf` gate would be written: `AND`, `OR` or `OutOf(n)`.
fn operator_label(n: i32, rules: usize) -> String {
    if n == 1 {
        "OR".to_string()
    } else if usize::try_from(n).is_ok_and(|n| n == rules) {
        "AND".to_string()
    } else {
        format!("OutOf({n})")
    }
}

/// Why no unused signer satisfied `principal`.
fn missing_text(principal: &Principal, all: &VerifiedSigners) -> String {
    match &principal.kind {
        PrincipalKind::Unsupported(class) => {
            return format!(
                "unsupported principal classification {class} (only ROLE and IDENTITY principals \
                 are evaluated)"
            );
        }
        PrincipalKind::Invalid(reason) => {
            return format!("this principal can never be satisfied: {reason}");
        }
        PrincipalKind::Role { .. } | PrincipalKind::Identity(_) => {}
    }
    let signers = all.signers();
    let matching: Vec<String> = signers
        .iter()
        .filter(|s| principal.matches(&s.identity))
        .map(|s| s.summary().to_string())
        .collect();
    let mut text = if !matching.is_empty() {
        format!(
            "every signer that is {} was already counted for another principal of this policy \
             (each signer counts once): {}",
            principal.wanted,
            matching.join("; ")
        )
    } else if signers.is_empty() {
        format!("no signature from {}; no valid signers", principal.wanted)
    } else {
        let present: Vec<String> = signers.iter().map(|s| s.summary().to_string()).collect();
        format!(
            "no signature from {}; signers present: {}",
            principal.wanted,
            present.join("; ")
        )
    };
    // A signer of the right MSP that was dropped is usually the real cause: say so here.
    let dropped: Vec<String> = all
        .rejected()
        .iter()
        .filter(|r| {
            principal
                .msp_id()
                .is_some_and(|m| r.claimed_msp_id.as_deref() == Some(m))
        })
        .map(|r| r.to_string())
        .collect();
    if !dropped.is_empty() {
        text.push_str("; rejected: ");
        text.push_str(&dropped.join("; "));
    }
    text
}

struct Compiler<'a> {
    env: &'a SignaturePolicyEnvelope,
    /// Envelope identity index -> index in `principals`, filled as `SignedBy`s refer to them.
    slots: Vec<Option<usize>>,
    principals: Vec<Principal>,
}

impl Compiler<'_> {
    fn compile(&mut self, rule: &SignaturePolicy, depth: usize) -> Result<Rule, PolicyError> {
        if depth > MAX_POLICY_DEPTH {
            return Err(PolicyError::TooDeep {
                limit: MAX_POLICY_DEPTH,
            });
        }
        match &rule.r#type {
            None => Err(PolicyError::EmptyRule),
            Some(signature_policy::Type::SignedBy(index)) => {
                let count = self.env.identities.len();
                let slot = usize::try_from(*index).ok().filter(|&i| i < count).ok_or(
                    PolicyError::IdentityIndexOutOfRange {
                        index: *index,
                        count,
                    },
                )?;
                let principal = match self.slots[slot] {
                    Some(p) => p,
                    None => {
                        let decoded = Principal::decode(*index, &self.env.identities[slot]);
                        self.principals.push(decoded);
                        let p = self.principals.len() - 1;
                        self.slots[slot] = Some(p);
                        p
                    }
                };
                Ok(Rule::SignedBy { principal })
            }
            Some(signature_policy::Type::NOutOf(gate)) => {
                let rules = gate
                    .rules
                    .iter()
                    .map(|r| self.compile(r, depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Rule::NOutOf { n: gate.n, rules })
            }
        }
    }
}

/// Evaluates a signature policy over signed data: verifies every signer once (invalid
/// identities, bad signatures and repeats are dropped and reported), then applies the policy
/// with Fabric's semantics.
///
/// Errors only for a malformed policy; unmet policies give `satisfied: false`.
pub fn evaluate_signature_policy(
    env: &SignaturePolicyEnvelope,
    signers: &[SignedData<'_>],
    msps: &MspManager,
    now_unix_secs: u64,
) -> Result<Evaluation, PolicyError> {
    // Compile first: a malformed policy fails before any signature is checked.
    let compiled = CompiledSignaturePolicy::compile(env)?;
    let verified = verify_signers(signers, msps, now_unix_secs);
    Ok(compiled.evaluate(&verified))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports failure
mod tests {
    use super::*;
    use crate::policy::syntax::{n_out_of, signed_by};
    use gridledger_proto::common::MspPrincipal;

    fn role_principal(msp: &str, role: MspRoleType) -> MspPrincipal {
        MspPrincipal {
            principal_classification: msp_principal::Classification::Role as i32,
            principal: MspRole {
                msp_identifier: msp.into(),
                role: role as i32,
            }
            .encode_to_vec(),
        }
    }

    #[test]
    fn compile_rejects_malformed_envelopes() {
        let no_rule = SignaturePolicyEnvelope {
            version: 0,
            rule: None,
            identities: vec![],
        };
        assert!(matches!(
            CompiledSignaturePolicy::compile(&no_rule),
            Err(PolicyError::MissingRule)
        ));

        let out_of_range = SignaturePolicyEnvelope {
            version: 0,
            rule: Some(n_out_of(1, vec![signed_by(0), signed_by(1)])),
            identities: vec![role_principal("A", MspRoleType::Member)],
        };
        assert_eq!(
            CompiledSignaturePolicy::compile(&out_of_range).unwrap_err(),
            PolicyError::IdentityIndexOutOfRange { index: 1, count: 1 }
        );

        let negative = SignaturePolicyEnvelope {
            version: 0,
            rule: Some(signed_by(-1)),
            identities: vec![role_principal("A", MspRoleType::Member)],
        };
        assert!(matches!(
            CompiledSignaturePolicy::compile(&negative),
            Err(PolicyError::IdentityIndexOutOfRange { index: -1, .. })
        ));

        let empty = SignaturePolicyEnvelope {
            version: 0,
            rule: Some(n_out_of(1, vec![SignaturePolicy { r#type: None }])),
            identities: vec![],
        };
        assert_eq!(
            CompiledSignaturePolicy::compile(&empty).unwrap_err(),
            PolicyError::EmptyRule
        );

        let version_1 = SignaturePolicyEnvelope {
            version: 1,
            rule: Some(signed_by(0)),
            identities: vec![role_principal("A", MspRoleType::Member)],
        };
        assert_eq!(
            CompiledSignaturePolicy::compile(&version_1).unwrap_err(),
            PolicyError::UnsupportedVersion { version: 1 }
        );
    }

    #[test]
    fn undecodable_principals_compile_but_are_never_satisfied() {
        let garbage_role = MspPrincipal {
            principal_classification: msp_principal::Classification::Role as i32,
            principal: vec![0xff, 0xff, 0xff],
        };
        let unknown_role = MspPrincipal {
            principal_classification: msp_principal::Classification::Role as i32,
            principal: MspRole {
                msp_identifier: "A".into(),
                role: 9,
            }
            .encode_to_vec(),
        };
        let garbage_identity = MspPrincipal {
            principal_classification: msp_principal::Classification::Identity as i32,
            principal: b"not an identity".to_vec(),
        };
        for (principal, reason) in [
            (garbage_role, "does not decode as MSPRole"),
            (unknown_role, "unknown MSPRole type 9"),
            (garbage_identity, "not a serialized X.509 identity"),
        ] {
            // OutOf(0, ...) needs nothing: the policy stays usable, the principal does not.
            let env = SignaturePolicyEnvelope {
                version: 0,
                rule: Some(n_out_of(1, vec![signed_by(0), n_out_of(0, vec![])])),
                identities: vec![principal],
            };
            let compiled = CompiledSignaturePolicy::compile(&env).unwrap();
            let eval = compiled.evaluate(&VerifiedSigners::default());
            assert!(eval.satisfied, "the other branch of the OR is satisfied");
            let PolicyExplanation::Signature {
                rule: RuleExplanation::NOutOf { rules, .. },
                ..
            } = &eval.explanation.policy
            else {
                panic!("expected a gate, got {:?}", eval.explanation.policy);
            };
            let RuleExplanation::SignedBy {
                satisfied: false,
                missing: Some(missing),
                ..
            } = &rules[0]
            else {
                panic!("expected an unsatisfied principal, got {:?}", rules[0]);
            };
            assert!(
                missing.starts_with("this principal can never be satisfied")
                    && missing.contains(reason),
                "{missing}"
            );
        }
    }

    #[test]
    fn compile_limits_depth_instead_of_overflowing() {
        let mut rule = signed_by(0);
        for _ in 0..MAX_POLICY_DEPTH {
            rule = n_out_of(1, vec![rule]);
        }
        let env = SignaturePolicyEnvelope {
            version: 0,
            rule: Some(rule),
            identities: vec![role_principal("A", MspRoleType::Member)],
        };
        assert_eq!(
            CompiledSignaturePolicy::compile(&env).unwrap_err(),
            PolicyError::TooDeep {
                limit: MAX_POLICY_DEPTH
            }
        );
    }

    #[test]
    fn empty_signer_set_explains_what_is_missing() {
        let env = crate::policy::parse("OutOf(0, 'A.member')").unwrap();
        let compiled = CompiledSignaturePolicy::compile(&env).unwrap();
        let none = VerifiedSigners::default();
        assert!(compiled.is_satisfied(&none), "OutOf(0, ...) needs nothing");

        let env = crate::policy::parse("AND('A.member', 'B.peer')").unwrap();
        let compiled = CompiledSignaturePolicy::compile(&env).unwrap();
        let eval = compiled.evaluate(&none);
        assert!(!eval.satisfied);
        assert!(!compiled.is_satisfied(&none));
        let rule = match eval.explanation.policy {
            PolicyExplanation::Signature { rule, .. } => rule,
            other => panic!("unexpected {other:?}"),
        };
        let RuleExplanation::NOutOf {
            rules,
            satisfied_count,
            operator,
            ..
        } = rule
        else {
            panic!("expected a gate, got {rule:?}");
        };
        assert_eq!((operator.as_str(), satisfied_count), ("AND", 0));
        assert!(
            matches!(&rules[1], RuleExplanation::SignedBy { missing: Some(m), .. }
            if m == "no signature from a 'B.peer'; no valid signers")
        );
    }

    #[test]
    fn unsupported_classification_is_unsatisfied_with_a_reason() {
        let env = SignaturePolicyEnvelope {
            version: 0,
            rule: Some(signed_by(0)),
            identities: vec![MspPrincipal {
                principal_classification: msp_principal::Classification::OrganizationUnit as i32,
                principal: vec![1, 2, 3],
            }],
        };
        let compiled = CompiledSignaturePolicy::compile(&env).unwrap();
        let eval = compiled.evaluate(&VerifiedSigners::default());
        let text = eval.explanation.to_string();
        assert!(!eval.satisfied);
        assert!(
            text.contains("unsupported principal classification ORGANIZATION_UNIT"),
            "{text}"
        );
    }
}
