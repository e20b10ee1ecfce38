//! The policy engine: Fabric's signature policies and implicit-meta policies, evaluated with an
//! explanation of why a policy was or was not satisfied.
//!
//! - [`syntax`]: Fabric's policy syntax (`AND('A.peer', OR('B.peer', 'C.peer'))`) to and from
//!   `SignaturePolicyEnvelope`, and the implicit-meta string form (`MAJORITY Admins`).
//! - [`signers`]: step 1 of every evaluation — each `SignedData` is deserialized, validated
//!   against its MSP and its signature verified, once; failures are kept as rejected signers.
//! - [`evaluate`]: step 2 — a compiled signature policy evaluated over the verified signers with
//!   Fabric's exact greedy semantics, producing an [`Explanation`] tree.
//! - [`tree`]: the policies of a channel config (`/Channel/...`), with implicit-meta policies
//!   resolved over child groups.
//! - [`explain`]: the explanation types, printable (`Display`) and serializable (`--json`).
//!
//! Invariant: evaluation is a plain function of the policy, the signed data, the MSPs and the
//! validation time; a policy that is not satisfied is a result (`satisfied: false`), never an
//! error. Errors are reserved for policies that are malformed.

pub mod evaluate;
pub mod explain;
pub mod signers;
pub mod syntax;
pub mod tree;

pub use evaluate::{CompiledSignaturePolicy, Evaluation, evaluate_signature_policy};
pub use explain::{
    Explanation, PolicyExplanation, RejectedSigner, RejectionReason, RuleExplanation, SignerSummary,
};
pub use signers::{SignedData, VerifiedSigner, VerifiedSigners, verify_signers};
pub use syntax::{
    PolicyParseError, PolicyParseErrorKind, implicit_meta_to_string, parse, parse_implicit_meta,
    to_policy_string,
};
pub use tree::PolicyTree;

/// Deepest nesting of `NOutOf` gates accepted, when parsing and when evaluating (a limit keeps
/// recursion far from the stack's end on hostile input).
pub const MAX_POLICY_DEPTH: usize = 64;

/// Most principals a parsed policy may name.
pub const MAX_POLICY_PRINCIPALS: usize = 1024;

/// Deepest nesting of config groups a [`PolicyTree`] accepts.
pub const MAX_GROUP_DEPTH: usize = 64;

/// A policy that cannot be evaluated or rendered because it is malformed, or a policy path that
/// does not exist. (Missing signatures are never an error: see [`Evaluation::satisfied`].)
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// The envelope has no rule at all.
    #[error("signature policy envelope has no rule")]
    MissingRule,
    /// A `SignaturePolicyEnvelope` of a version other than 0, the only one Fabric defines.
    #[error("signature policy envelope has version {version}; only version 0 is understood")]
    UnsupportedVersion {
        /// The version found.
        version: i32,
    },
    /// A `SignaturePolicy` element with neither `signed_by` nor `n_out_of` set.
    #[error("signature policy has an empty element (neither signed_by nor n_out_of set)")]
    EmptyRule,
    /// `SignedBy(i)` with `i` outside the envelope's identities.
    #[error("SignedBy({index}) refers to a missing identity: the policy lists {count} identities")]
    IdentityIndexOutOfRange {
        /// The index used.
        index: i32,
        /// How many identities the envelope has.
        count: usize,
    },
    /// A ROLE principal whose bytes are not an `MSPRole`. Rendering a policy
    /// ([`syntax::to_policy_string`]) fails with it; evaluation treats such a principal as never
    /// satisfied and shows this message as the reason.
    #[error(
        "identity {index} of the policy is a ROLE principal that does not decode as MSPRole: {source}"
    )]
    UndecodablePrincipal {
        /// Index of the principal in the envelope.
        index: i32,
        /// The decoding error.
        source: prost::DecodeError,
    },
    /// An `MSPRole` with a role number outside Fabric's enum (rendering fails with it;
    /// evaluation treats the principal as never satisfied).
    #[error("identity {index} of the policy has unknown MSPRole type {role}")]
    UnknownRoleType {
        /// Index of the principal in the envelope.
        index: i32,
        /// The role number.
        role: i32,
    },
    /// `NOutOf` gates nested deeper than [`MAX_POLICY_DEPTH`].
    #[error("signature policy nests deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// [`syntax::to_policy_string`] met something the policy syntax cannot write.
    #[error("policy cannot be written in the policy syntax: {reason}")]
    NotExpressible {
        /// What could not be written.
        reason: String,
    },
    /// A policy path that is not absolute or not under `/Channel`.
    #[error("invalid policy path '{path}': {reason}")]
    InvalidPath {
        /// The path given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No policy at the path.
    #[error("no policy at '{path}'{}", available_suffix(.available))]
    PolicyNotFound {
        /// The path asked for.
        path: String,
        /// The policies that do exist in the group the path names (empty if the group is missing).
        available: Vec<String>,
    },
    /// A group on the path does not exist.
    #[error("no policy at '{path}': there is no group '{group}'{}", groups_suffix(.available))]
    GroupNotFound {
        /// The path asked for.
        path: String,
        /// The first group on the path that does not exist.
        group: String,
        /// The groups that do exist at that level.
        available: Vec<String>,
    },
    /// A `ConfigPolicy` whose `policy` is unset.
    #[error("config policy at '{path}' has no policy value")]
    MissingPolicyValue {
        /// Path of the policy.
        path: String,
    },
    /// A policy type other than SIGNATURE and IMPLICIT_META.
    #[error(
        "policy at '{path}' has type {policy_type}, which is not supported (only SIGNATURE and IMPLICIT_META are)"
    )]
    UnsupportedPolicyType {
        /// Path of the policy.
        path: String,
        /// The type, by name where known (`MSP`, `UNKNOWN`, or the number).
        policy_type: String,
    },
    /// The policy bytes do not decode as the message their type names.
    #[error("policy at '{path}' does not decode as {message}: {source}")]
    Decode {
        /// Path of the policy.
        path: String,
        /// The message expected (`SignaturePolicyEnvelope`, `ImplicitMetaPolicy`).
        message: &'static str,
        /// The decoding error.
        source: prost::DecodeError,
    },
    /// An implicit-meta policy with a rule number outside ANY/ALL/MAJORITY.
    #[error("implicit meta policy at '{path}' has unknown rule {rule}")]
    UnknownImplicitMetaRule {
        /// Path of the policy.
        path: String,
        /// The rule number.
        rule: i32,
    },
    /// A signature policy in the config tree is malformed.
    #[error("policy at '{path}' is malformed: {source}")]
    InvalidPolicy {
        /// Path of the policy.
        path: String,
        /// What is wrong with it.
        source: Box<PolicyError>,
    },
    /// Config groups nested deeper than [`MAX_GROUP_DEPTH`].
    #[error("config group '{path}' nests deeper than {limit} levels")]
    GroupTooDeep {
        /// Path of the group that crossed the limit.
        path: String,
        /// The limit.
        limit: usize,
    },
}

fn groups_suffix(available: &[String]) -> String {
    if available.is_empty() {
        " (that level has no groups)".to_string()
    } else {
        format!(" (groups there: {})", available.join(", "))
    }
}

fn available_suffix(available: &[String]) -> String {
    if available.is_empty() {
        String::new()
    } else {
        format!(" (policies there: {})", available.join(", "))
    }
}
