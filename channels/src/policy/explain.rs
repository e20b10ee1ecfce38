//! Why a policy was or was not satisfied: a tree that mirrors the policy, one node per gate,
//! principal and implicit-meta child, plus the signers that counted and the ones rejected.
//!
//! Fabric answers a failed policy with "signature set did not satisfy policy" and leaves the
//! operator to guess which signature was missing, which was the wrong role and which did not
//! verify. This tree is what `gridledger policy explain` prints (`Display`, an indented tree) or
//! emits as JSON (`serde::Serialize`).

use std::fmt;

use serde::Serialize;

/// One signer that passed identity validation and signature verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignerSummary {
    /// Position of the signer in the signed-data list given to the evaluation.
    pub index: usize,
    /// Subject DN of the signer's certificate.
    pub subject: String,
    /// The signer's MSP id.
    pub msp_id: String,
    /// The NodeOU role of the certificate (`client`, `peer`, `admin`, `orderer`), if any.
    pub role: Option<String>,
    /// Whether the MSP considers the signer an admin.
    pub is_admin: bool,
}

impl fmt::Display for SignerSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, {}",
            self.subject,
            self.msp_id,
            self.role.as_deref().unwrap_or("no role OU")
        )?;
        if self.is_admin && self.role.as_deref() != Some("admin") {
            f.write_str(", admin")?;
        }
        f.write_str(")")
    }
}

/// Why a signer was dropped before the policy was evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RejectionReason {
    /// The serialized identity did not decode, names an MSP that is not in the channel, or its
    /// certificate failed validation (chain, validity period, revocation, role OU).
    InvalidIdentity,
    /// The signature does not verify against the identity's key (or is malformed or high-S).
    BadSignature,
    /// The same identity already signed; each signer counts once.
    Duplicate {
        /// Index of the earlier, counted signature by the same identity.
        of: usize,
    },
}

/// A signer that was dropped, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedSigner {
    /// Position of the signer in the signed-data list given to the evaluation.
    pub index: usize,
    /// The MSP id the serialized identity claims, if it decoded.
    pub claimed_msp_id: Option<String>,
    /// The category of failure.
    pub reason: RejectionReason,
    /// The underlying error message.
    pub detail: String,
}

impl fmt::Display for RejectedSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "signer #{}", self.index)?;
        if let Some(msp) = &self.claimed_msp_id {
            write!(f, " (claims {msp})")?;
        }
        match &self.reason {
            RejectionReason::InvalidIdentity => write!(f, ": invalid identity: {}", self.detail),
            RejectionReason::BadSignature => write!(f, ": bad signature: {}", self.detail),
            RejectionReason::Duplicate { of } => {
                write!(f, ": duplicate of signer #{of} (each identity counts once)")
            }
        }
    }
}

/// One node of a signature policy's rule tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleExplanation {
    /// An `NOutOf` gate (written `AND`, `OR` or `OutOf`).
    NOutOf {
        /// Whether at least `required` rules were satisfied.
        satisfied: bool,
        /// `AND`, `OR` or `OutOf(n)`, as the gate would be written.
        operator: String,
        /// How many rules must be satisfied (`n`).
        required: i32,
        /// How many were.
        satisfied_count: usize,
        /// The rules, in order.
        rules: Vec<RuleExplanation>,
    },
    /// A `SignedBy` leaf: one signature from a principal.
    SignedBy {
        /// Whether an unused signer satisfied the principal.
        satisfied: bool,
        /// The principal, e.g. `'DSOMSP.peer'`.
        principal: String,
        /// The signer that satisfied it.
        satisfied_by: Option<SignerSummary>,
        /// What is missing, when not satisfied.
        missing: Option<String>,
    },
}

impl RuleExplanation {
    /// Whether this node was satisfied.
    pub fn satisfied(&self) -> bool {
        match self {
            RuleExplanation::NOutOf { satisfied, .. }
            | RuleExplanation::SignedBy { satisfied, .. } => *satisfied,
        }
    }

    fn write_tree(&self, f: &mut fmt::Formatter<'_>, depth: usize) -> fmt::Result {
        let indent = "  ".repeat(depth);
        let mark = marker(self.satisfied());
        match self {
            RuleExplanation::NOutOf {
                operator,
                required,
                satisfied_count,
                rules,
                ..
            } => {
                writeln!(
                    f,
                    "{indent}{mark} {operator}: {required} of {} required, {satisfied_count} satisfied",
                    rules.len()
                )?;
                for rule in rules {
                    rule.write_tree(f, depth + 1)?;
                }
                Ok(())
            }
            RuleExplanation::SignedBy {
                principal,
                satisfied_by,
                missing,
                ..
            } => match (satisfied_by, missing) {
                (Some(signer), _) => {
                    writeln!(f, "{indent}{mark} {principal}: satisfied by {signer}")
                }
                (None, Some(missing)) => writeln!(f, "{indent}{mark} {principal}: {missing}"),
                (None, None) => writeln!(f, "{indent}{mark} {principal}"),
            },
        }
    }
}

/// One policy in the explanation: a signature policy, an implicit-meta policy with its
/// children, or a child policy that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PolicyExplanation {
    /// A signature policy.
    Signature {
        /// Its path in the channel config, when evaluated from a [`super::PolicyTree`].
        path: Option<String>,
        /// Whether it was satisfied.
        satisfied: bool,
        /// Its rule tree.
        rule: RuleExplanation,
    },
    /// An implicit-meta policy: `rule` over `sub_policy` of every child group.
    ImplicitMeta {
        /// Its path.
        path: String,
        /// Whether enough children were satisfied.
        satisfied: bool,
        /// `ANY`, `ALL` or `MAJORITY`.
        rule: String,
        /// The policy name looked up in each child group.
        sub_policy: String,
        /// How many children must be satisfied (Fabric: ANY 1, ALL all, MAJORITY more than
        /// half; 0 when there are no child groups).
        required: usize,
        /// How many were.
        satisfied_count: usize,
        /// One explanation per child group, in group-name order.
        children: Vec<PolicyExplanation>,
    },
    /// A child group has no policy by the sub-policy's name; Fabric counts it as unsatisfied.
    Missing {
        /// The path that was looked up.
        path: String,
        /// Why it counts as unsatisfied.
        reason: String,
    },
}

impl PolicyExplanation {
    /// Whether this policy was satisfied.
    pub fn satisfied(&self) -> bool {
        match self {
            PolicyExplanation::Signature { satisfied, .. }
            | PolicyExplanation::ImplicitMeta { satisfied, .. } => *satisfied,
            PolicyExplanation::Missing { .. } => false,
        }
    }

    fn write_tree(&self, f: &mut fmt::Formatter<'_>, depth: usize) -> fmt::Result {
        let indent = "  ".repeat(depth);
        let mark = marker(self.satisfied());
        match self {
            PolicyExplanation::Signature { path, rule, .. } => {
                match path {
                    Some(path) => writeln!(f, "{indent}{mark} {path} (signature policy)")?,
                    None => writeln!(f, "{indent}{mark} signature policy")?,
                }
                rule.write_tree(f, depth + 1)
            }
            PolicyExplanation::ImplicitMeta {
                path,
                rule,
                sub_policy,
                required,
                satisfied_count,
                children,
                ..
            } => {
                if children.is_empty() {
                    writeln!(
                        f,
                        "{indent}{mark} {path} (implicit meta {rule} {sub_policy}): no child groups, \
                         so nothing is required (Fabric treats this as satisfied)"
                    )
                } else {
                    writeln!(
                        f,
                        "{indent}{mark} {path} (implicit meta {rule} {sub_policy}): {required} of {} \
                         child groups required, {satisfied_count} satisfied",
                        children.len()
                    )?;
                    for child in children {
                        child.write_tree(f, depth + 1)?;
                    }
                    Ok(())
                }
            }
            PolicyExplanation::Missing { path, reason } => {
                writeln!(f, "{indent}{mark} {path}: {reason}")
            }
        }
    }
}

fn marker(satisfied: bool) -> &'static str {
    if satisfied { "[ok]  " } else { "[FAIL]" }
}

/// The whole explanation of one evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Whether the policy was satisfied (same as the root node's `satisfied`).
    pub satisfied: bool,
    /// The evaluated policy as a tree.
    pub policy: PolicyExplanation,
    /// The signers that passed validation and verification, in input order.
    pub signers: Vec<SignerSummary>,
    /// The signers that were dropped before evaluation, in input order.
    pub rejected_signers: Vec<RejectedSigner>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "policy {}",
            if self.satisfied {
                "SATISFIED"
            } else {
                "NOT satisfied"
            }
        )?;
        self.policy.write_tree(f, 1)?;
        if self.signers.is_empty() {
            writeln!(f, "valid signers: none")?;
        } else {
            writeln!(f, "valid signers:")?;
            for signer in &self.signers {
                writeln!(f, "  #{} {signer}", signer.index)?;
            }
        }
        if !self.rejected_signers.is_empty() {
            writeln!(f, "rejected signers:")?;
            for rejected in &self.rejected_signers {
                writeln!(f, "  {rejected}")?;
            }
        }
        Ok(())
    }
}
