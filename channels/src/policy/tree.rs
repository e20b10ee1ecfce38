//! The policies of a channel config, addressable by path, with implicit-meta policies resolved
//! over child groups the way Fabric's policy manager resolves them.
//!
//! The tree is built once from the `/Channel` config group: every `ConfigPolicy` is decoded by
//! its type (SIGNATURE → `SignaturePolicyEnvelope`, compiled; IMPLICIT_META →
//! `ImplicitMetaPolicy`), so a malformed policy is reported with its path when the config is
//! loaded, not when a transaction first needs it.
//!
//! An implicit-meta policy `RULE Sub` in group G consults policy `Sub` in every child group of G
//! (in name order). Fabric's thresholds: `ANY` needs 1, `ALL` needs every child, `MAJORITY`
//! needs `children / 2 + 1`; a child group without `Sub` counts as unsatisfied; and a group with
//! no child groups needs 0 — Fabric treats such a policy as satisfied whatever the rule.

use std::collections::BTreeMap;

use gridledger_identity::MspManager;
use gridledger_proto::common::{
    ConfigGroup, ImplicitMetaPolicy, Policy, SignaturePolicyEnvelope, implicit_meta_policy,
    policy::PolicyType,
};
use prost::Message;

use super::evaluate::{CompiledSignaturePolicy, Evaluation};
use super::explain::{Explanation, PolicyExplanation};
use super::signers::{SignedData, VerifiedSigners, verify_signers};
use super::{MAX_GROUP_DEPTH, PolicyError};

/// The name of the root group in policy paths (`/Channel/...`).
const ROOT_GROUP: &str = "Channel";

/// All policies of a channel config, by path.
#[derive(Debug, Clone)]
pub struct PolicyTree {
    root: Group,
}

#[derive(Debug, Clone)]
struct Group {
    path: String,
    policies: BTreeMap<String, Node>,
    groups: BTreeMap<String, Group>,
}

#[derive(Debug, Clone)]
struct Node {
    path: String,
    policy: Policy,
    kind: NodeKind,
}

#[derive(Debug, Clone)]
enum NodeKind {
    Signature(CompiledSignaturePolicy),
    ImplicitMeta {
        rule: implicit_meta_policy::Rule,
        sub_policy: String,
    },
}

impl PolicyTree {
    /// Builds the tree from the channel's root config group (the `/Channel` group), decoding
    /// and checking every policy. Fails, naming the path, on a policy without a value, of a
    /// type other than SIGNATURE or IMPLICIT_META, that does not decode, or that is malformed.
    pub fn from_config_group(root: &ConfigGroup) -> Result<PolicyTree, PolicyError> {
        Ok(PolicyTree {
            root: Group::build(root, format!("/{ROOT_GROUP}"), 1)?,
        })
    }

    /// The policy at an absolute path such as `/Channel/Application/Writers`, as configured.
    pub fn policy(&self, path: &str) -> Option<&Policy> {
        self.resolve(path).ok().map(|(node, _)| &node.policy)
    }

    /// Every policy path in the tree, sorted.
    pub fn paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.root.collect_paths(&mut out);
        out.sort();
        out
    }

    /// Verifies the signers once, then evaluates the policy at `path` and explains the verdict.
    ///
    /// Errors when the path is malformed or names no policy; an unmet policy is
    /// `satisfied: false`.
    pub fn evaluate(
        &self,
        path: &str,
        signers: &[SignedData<'_>],
        msps: &MspManager,
        now_unix_secs: u64,
    ) -> Result<Evaluation, PolicyError> {
        // Resolve first: a wrong path fails before any signature is checked.
        self.resolve(path)?;
        let verified = verify_signers(signers, msps, now_unix_secs);
        self.evaluate_verified(path, &verified)
    }

    /// Whether `signers` satisfy the policy at `path`: `Ok(None)` when they do, otherwise the
    /// explanation of why not. The explanation is only built for a refusal, so the request
    /// paths (proposals, Deliver, CommitStatus) pay for no text when access is granted.
    pub fn check(
        &self,
        path: &str,
        signers: &[SignedData<'_>],
        msps: &MspManager,
        now_unix_secs: u64,
    ) -> Result<Option<Explanation>, PolicyError> {
        self.resolve(path)?;
        let verified = verify_signers(signers, msps, now_unix_secs);
        if self.is_satisfied(path, &verified)? {
            return Ok(None);
        }
        Ok(Some(self.evaluate_verified(path, &verified)?.explanation))
    }

    /// Evaluates the policy at `path` over signers that were already verified.
    pub fn evaluate_verified(
        &self,
        path: &str,
        signers: &VerifiedSigners,
    ) -> Result<Evaluation, PolicyError> {
        let (node, group) = self.resolve(path)?;
        let policy = explain_node(node, group, signers);
        let satisfied = policy.satisfied();
        Ok(Evaluation {
            satisfied,
            explanation: Explanation {
                satisfied,
                policy,
                signers: signers.summaries(),
                rejected_signers: signers.rejected().to_vec(),
            },
        })
    }

    /// Whether verified signers satisfy the policy at `path`, without building an explanation
    /// (the validation hot path).
    pub fn is_satisfied(&self, path: &str, signers: &VerifiedSigners) -> Result<bool, PolicyError> {
        let (node, group) = self.resolve(path)?;
        Ok(node_satisfied(node, group, signers))
    }

    /// Finds the policy at an absolute path and the group that holds it.
    fn resolve(&self, path: &str) -> Result<(&Node, &Group), PolicyError> {
        let invalid = |reason: &str| PolicyError::InvalidPath {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        let Some(rest) = path.strip_prefix('/') else {
            return Err(invalid(
                "policy paths are absolute, e.g. /Channel/Application/Writers",
            ));
        };
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(invalid("empty path component"));
        }
        if parts[0] != ROOT_GROUP {
            return Err(invalid("policy paths start with /Channel"));
        }
        let Some((name, groups)) = parts[1..].split_last() else {
            return Err(invalid(
                "the path names the /Channel group, not a policy in it",
            ));
        };
        let mut group = &self.root;
        for part in groups {
            group = group
                .groups
                .get(*part)
                .ok_or_else(|| PolicyError::GroupNotFound {
                    path: path.to_string(),
                    group: format!("{}/{part}", group.path),
                    available: group.groups.keys().cloned().collect(),
                })?;
        }
        match group.policies.get(*name) {
            Some(node) => Ok((node, group)),
            None => Err(PolicyError::PolicyNotFound {
                path: path.to_string(),
                available: group.policies.keys().cloned().collect(),
            }),
        }
    }
}

impl Group {
    fn build(config: &ConfigGroup, path: String, depth: usize) -> Result<Group, PolicyError> {
        if depth > MAX_GROUP_DEPTH {
            return Err(PolicyError::GroupTooDeep {
                path,
                limit: MAX_GROUP_DEPTH,
            });
        }
        let mut groups = BTreeMap::new();
        for (name, child) in &config.groups {
            let child_path = checked_child_path(&path, name)?;
            groups.insert(name.clone(), Group::build(child, child_path, depth + 1)?);
        }
        let mut policies = BTreeMap::new();
        for (name, config_policy) in &config.policies {
            let policy_path = checked_child_path(&path, name)?;
            let policy =
                config_policy
                    .policy
                    .as_ref()
                    .ok_or_else(|| PolicyError::MissingPolicyValue {
                        path: policy_path.clone(),
                    })?;
            let kind = decode_policy(&policy_path, policy)?;
            policies.insert(
                name.clone(),
                Node {
                    path: policy_path,
                    policy: policy.clone(),
                    kind,
                },
            );
        }
        Ok(Group {
            path,
            policies,
            groups,
        })
    }

    /// A policy named by a path relative to this group (`Admins`, or `Org1MSP/Admins`).
    fn lookup(&self, relative: &str) -> Option<(&Node, &Group)> {
        let mut parts: Vec<&str> = relative.split('/').collect();
        let name = parts.pop()?;
        let mut group = self;
        for part in parts {
            group = group.groups.get(part)?;
        }
        group.policies.get(name).map(|node| (node, group))
    }

    fn collect_paths(&self, out: &mut Vec<String>) {
        out.extend(self.policies.values().map(|n| n.path.clone()));
        for group in self.groups.values() {
            group.collect_paths(out);
        }
    }
}

/// `parent/name`, refusing names that would make paths ambiguous.
fn checked_child_path(parent: &str, name: &str) -> Result<String, PolicyError> {
    let path = format!("{parent}/{name}");
    if name.is_empty() || name.contains('/') {
        return Err(PolicyError::InvalidPath {
            path,
            reason: "config group and policy names must be non-empty and contain no '/'"
                .to_string(),
        });
    }
    Ok(path)
}

fn decode_policy(path: &str, policy: &Policy) -> Result<NodeKind, PolicyError> {
    match PolicyType::try_from(policy.r#type) {
        Ok(PolicyType::Signature) => {
            let env =
                SignaturePolicyEnvelope::decode(policy.value.as_slice()).map_err(|source| {
                    PolicyError::Decode {
                        path: path.to_string(),
                        message: "SignaturePolicyEnvelope",
                        source,
                    }
                })?;
            let compiled =
                CompiledSignaturePolicy::compile(&env).map_err(|e| PolicyError::InvalidPolicy {
                    path: path.to_string(),
                    source: Box::new(e),
                })?;
            Ok(NodeKind::Signature(compiled))
        }
        Ok(PolicyType::ImplicitMeta) => {
            let meta = ImplicitMetaPolicy::decode(policy.value.as_slice()).map_err(|source| {
                PolicyError::Decode {
                    path: path.to_string(),
                    message: "ImplicitMetaPolicy",
                    source,
                }
            })?;
            let rule = implicit_meta_policy::Rule::try_from(meta.rule).map_err(|_| {
                PolicyError::UnknownImplicitMetaRule {
                    path: path.to_string(),
                    rule: meta.rule,
                }
            })?;
            Ok(NodeKind::ImplicitMeta {
                rule,
                sub_policy: meta.sub_policy,
            })
        }
        Ok(other) => Err(PolicyError::UnsupportedPolicyType {
            path: path.to_string(),
            policy_type: other.as_str_name().to_string(),
        }),
        Err(_) => Err(PolicyError::UnsupportedPolicyType {
            path: path.to_string(),
            policy_type: policy.r#type.to_string(),
        }),
    }
}

/// Fabric's threshold for an implicit-meta rule over `children` child groups.
fn threshold(rule: implicit_meta_policy::Rule, children: usize) -> usize {
    if children == 0 {
        return 0;
    }
    match rule {
        implicit_meta_policy::Rule::Any => 1,
        implicit_meta_policy::Rule::All => children,
        implicit_meta_policy::Rule::Majority => children / 2 + 1,
    }
}

fn node_satisfied(node: &Node, group: &Group, signers: &VerifiedSigners) -> bool {
    match &node.kind {
        NodeKind::Signature(compiled) => compiled.is_satisfied(signers),
        NodeKind::ImplicitMeta { rule, sub_policy } => {
            let required = threshold(*rule, group.groups.len());
            let mut remaining = required;
            for child in group.groups.values() {
                if remaining == 0 {
                    break;
                }
                if child
                    .lookup(sub_policy)
                    .is_some_and(|(n, g)| node_satisfied(n, g, signers))
                {
                    remaining -= 1;
                }
            }
            remaining == 0
        }
    }
}

fn explain_node(node: &Node, group: &Group, signers: &VerifiedSigners) -> PolicyExplanation {
    match &node.kind {
        NodeKind::Signature(compiled) => {
            let rule = compiled.explain_rule(signers);
            PolicyExplanation::Signature {
                path: Some(node.path.clone()),
                satisfied: rule.satisfied(),
                rule,
            }
        }
        NodeKind::ImplicitMeta { rule, sub_policy } => {
            let children: Vec<PolicyExplanation> = group
                .groups
                .values()
                .map(|child| match child.lookup(sub_policy) {
                    Some((n, g)) => explain_node(n, g, signers),
                    None => PolicyExplanation::Missing {
                        path: format!("{}/{sub_policy}", child.path),
                        reason: format!(
                            "group {} has no policy '{sub_policy}', so it counts as not satisfied",
                            child.path
                        ),
                    },
                })
                .collect();
            let required = threshold(*rule, children.len());
            let satisfied_count = children.iter().filter(|c| c.satisfied()).count();
            PolicyExplanation::ImplicitMeta {
                path: node.path.clone(),
                satisfied: satisfied_count >= required,
                rule: rule.as_str_name().to_string(),
                sub_policy: sub_policy.clone(),
                required,
                satisfied_count,
                children,
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports failure
mod tests {
    use super::*;

    #[test]
    fn fabric_thresholds() {
        use implicit_meta_policy::Rule::{All, Any, Majority};
        assert_eq!(
            [threshold(Any, 3), threshold(All, 3), threshold(Majority, 3)],
            [1, 3, 2]
        );
        assert_eq!(
            threshold(Majority, 4),
            3,
            "MAJORITY is strictly more than half"
        );
        assert_eq!(
            [threshold(Any, 0), threshold(All, 0), threshold(Majority, 0)],
            [0, 0, 0]
        );
    }
}
