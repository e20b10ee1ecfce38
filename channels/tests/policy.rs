//! Policy engine tests: the policy syntax (errors with positions, Fabric's encoding, round
//! trips), signature-policy evaluation over real certificates and signatures (no mocks), the
//! explanation, and implicit-meta policies over a small channel config tree.

// A panic is how a test reports failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use gridledger_channels::policy::{
    self, Evaluation, MAX_POLICY_DEPTH, MAX_POLICY_PRINCIPALS, PolicyError, PolicyExplanation,
    PolicyParseErrorKind, PolicyTree, RejectionReason, RuleExplanation, SignedData,
    VerifiedSigners, evaluate_signature_policy, parse, parse_implicit_meta, to_policy_string,
    verify_signers,
};
use gridledger_identity::material::{CertificateAuthority, LeafSpec, Seed, high_s_twin_pem};
use gridledger_identity::{Msp, MspManager, Role, SigningIdentity, serialize_identity};
use gridledger_proto::common::{
    ConfigGroup, ConfigPolicy, MspPrincipal, MspRole, Policy, SignaturePolicy,
    SignaturePolicyEnvelope, msp_principal, msp_role::MspRoleType, policy::PolicyType,
    signature_policy,
};
use gridledger_proto::msp::{FabricMspConfig, FabricNodeOUs, FabricOuIdentifier};
use prost::Message;

/// Validation time for every test: mid-2025.
const NOW: u64 = 1_750_000_000;
const DAY: i64 = 86_400;

// ---------------------------------------------------------------------------------------------
// Fixtures: real CAs, MSPs and signing identities.

struct Org {
    msp_id: &'static str,
    ca: CertificateAuthority,
}

/// A NodeOU identifier with the conventional OU value of `role`, any CA.
fn ou_identifier(role: Role) -> Option<FabricOuIdentifier> {
    Some(FabricOuIdentifier {
        certificate: Vec::new(),
        organizational_unit_identifier: role.default_ou().to_string(),
    })
}

impl Org {
    fn new(msp_id: &'static str) -> Org {
        let seed = Seed::from_text(&format!("policy-tests/{msp_id}"));
        let now = NOW as i64;
        let ca = CertificateAuthority::new_root(
            &seed,
            msp_id,
            &format!("ca.{msp_id}"),
            now - 30 * DAY,
            now + 3650 * DAY,
        )
        .expect("root CA");
        Org { msp_id, ca }
    }

    fn msp(&self) -> Msp {
        let cfg = FabricMspConfig {
            name: self.msp_id.to_string(),
            root_certs: vec![self.ca.cert_pem().as_bytes().to_vec()],
            fabric_node_ous: Some(FabricNodeOUs {
                enable: true,
                client_ou_identifier: ou_identifier(Role::Client),
                peer_ou_identifier: ou_identifier(Role::Peer),
                admin_ou_identifier: ou_identifier(Role::Admin),
                orderer_ou_identifier: ou_identifier(Role::Orderer),
            }),
            ..Default::default()
        };
        Msp::from_fabric_config(&cfg).expect("MSP config")
    }

    fn identity_valid(
        &self,
        cn: &str,
        role: Role,
        not_before: i64,
        not_after: i64,
    ) -> SigningIdentity {
        let spec = LeafSpec::new(cn, Some(role), not_before, not_after);
        let issued = self.ca.issue(self.msp_id, &spec).expect("issue");
        SigningIdentity::from_pem(
            self.msp_id,
            issued.cert_pem.as_bytes(),
            issued.key_pem.as_bytes(),
        )
        .expect("signer")
    }

    fn identity(&self, cn: &str, role: Role) -> SigningIdentity {
        let now = NOW as i64;
        self.identity_valid(cn, role, now - DAY, now + 365 * DAY)
    }
}

struct Net {
    msps: MspManager,
    dso_peer: SigningIdentity,
    dso_admin: SigningIdentity,
    dso_client: SigningIdentity,
    dso_client2: SigningIdentity,
    retailer_peer: SigningIdentity,
    retailer_admin: SigningIdentity,
    retailer_client: SigningIdentity,
    community_peer: SigningIdentity,
    community_admin: SigningIdentity,
    orderer: SigningIdentity,
    orderer_admin: SigningIdentity,
    /// An identity of an organization that is not in the channel.
    outsider: SigningIdentity,
    /// A DSO client whose certificate expired before `NOW`.
    expired: SigningIdentity,
}

fn net() -> Net {
    let dso = Org::new("DSOMSP");
    let retailer = Org::new("RetailerMSP");
    let community = Org::new("CommunityMSP");
    let orderer = Org::new("OrdererMSP");
    let outsider = Org::new("OutsiderMSP");
    let now = NOW as i64;
    Net {
        msps: MspManager::new([dso.msp(), retailer.msp(), community.msp(), orderer.msp()]),
        dso_peer: dso.identity("peer0.dso", Role::Peer),
        dso_admin: dso.identity("Admin@dso", Role::Admin),
        dso_client: dso.identity("User1@dso", Role::Client),
        dso_client2: dso.identity("User2@dso", Role::Client),
        retailer_peer: retailer.identity("peer0.retailer", Role::Peer),
        retailer_admin: retailer.identity("Admin@retailer", Role::Admin),
        retailer_client: retailer.identity("User1@retailer", Role::Client),
        community_peer: community.identity("peer0.community", Role::Peer),
        community_admin: community.identity("Admin@community", Role::Admin),
        orderer: orderer.identity("orderer0", Role::Orderer),
        orderer_admin: orderer.identity("Admin@orderer", Role::Admin),
        outsider: outsider.identity("peer0.outsider", Role::Peer),
        expired: dso.identity_valid("Old@dso", Role::Client, now - 400 * DAY, now - 35 * DAY),
    }
}

/// Owned signed data (the policy API borrows).
struct Signed {
    data: Vec<u8>,
    identity: Vec<u8>,
    signature: Vec<u8>,
}

const MESSAGE: &[u8] = b"config update for channel market";

fn sign_all(signers: &[&SigningIdentity]) -> Vec<Signed> {
    signers
        .iter()
        .map(|s| Signed {
            data: MESSAGE.to_vec(),
            identity: s.serialized().to_vec(),
            signature: s.sign(MESSAGE),
        })
        .collect()
}

fn borrow(signed: &[Signed]) -> Vec<SignedData<'_>> {
    signed
        .iter()
        .map(|s| SignedData {
            data: &s.data,
            identity: &s.identity,
            signature: &s.signature,
        })
        .collect()
}

fn eval(net: &Net, policy: &str, signers: &[&SigningIdentity]) -> Evaluation {
    let env = parse(policy).expect("policy parses");
    let signed = sign_all(signers);
    evaluate_signature_policy(&env, &borrow(&signed), &net.msps, NOW)
        .expect("policy is well formed")
}

fn role(msp: &str, role: MspRoleType) -> MspPrincipal {
    MspPrincipal {
        principal_classification: msp_principal::Classification::Role as i32,
        principal: MspRole {
            msp_identifier: msp.to_string(),
            role: role as i32,
        }
        .encode_to_vec(),
    }
}

fn signed_by(i: i32) -> SignaturePolicy {
    SignaturePolicy {
        r#type: Some(signature_policy::Type::SignedBy(i)),
    }
}

fn n_out_of(n: i32, rules: Vec<SignaturePolicy>) -> SignaturePolicy {
    SignaturePolicy {
        r#type: Some(signature_policy::Type::NOutOf(signature_policy::NOutOf {
            n,
            rules,
        })),
    }
}

/// The rule tree of a signature-policy explanation.
fn rule_of(evaluation: &Evaluation) -> &RuleExplanation {
    match &evaluation.explanation.policy {
        PolicyExplanation::Signature { rule, .. } => rule,
        other => panic!("expected a signature policy explanation, got {other:?}"),
    }
}

fn gate_rules(rule: &RuleExplanation) -> &[RuleExplanation] {
    match rule {
        RuleExplanation::NOutOf { rules, .. } => rules,
        other => panic!("expected a gate, got {other:?}"),
    }
}

fn missing_of(rule: &RuleExplanation) -> &str {
    match rule {
        RuleExplanation::SignedBy {
            missing: Some(m), ..
        } => m,
        other => panic!("expected an unsatisfied principal, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Syntax.

#[test]
fn parse_errors_report_byte_offset_and_kind() {
    use PolicyParseErrorKind as K;
    type Check = fn(&PolicyParseErrorKind) -> bool;
    let cases: &[(&str, usize, Check)] = &[
        ("", 0, |k| *k == K::EmptyInput),
        ("   ", 3, |k| *k == K::EmptyInput),
        ("AND('A.peer', 'B.peer'", 22, |k| {
            *k == K::UnclosedParen { open_column: 4 }
        }),
        ("AND('A.peer'))", 13, |k| *k == K::UnmatchedCloseParen),
        (
            "AND('A.peer') OR",
            14,
            |k| matches!(k, K::TrailingInput { found } if found == "'OR'"),
        ),
        (
            "AND('A.peer', 'B.pear')",
            17,
            |k| matches!(k, K::UnknownRole { role, .. } if role == "pear"),
        ),
        (
            "OR('A.Member')",
            6,
            |k| matches!(k, K::UnknownRole { role, .. } if role == "Member"),
        ),
        ("OR('.member')", 4, |k| matches!(k, K::EmptyMspId { .. })),
        ("OR('Amember')", 4, |k| matches!(k, K::MissingRole { .. })),
        ("OR('A member.peer')", 5, |k| {
            matches!(k, K::InvalidMspIdChar { ch: ' ', .. })
        }),
        ("OR('')", 3, |k| *k == K::EmptyPrincipal),
        ("OutOf(4, 'A.peer', 'B.peer')", 6, |k| {
            *k == K::CountOutOfRange {
                n: 4,
                sub_policies: 2,
            }
        }),
        ("OutOf(-1, 'A.peer', 'B.peer')", 6, |k| {
            *k == K::CountOutOfRange {
                n: -1,
                sub_policies: 2,
            }
        }),
        ("OutOf(x, 'A.peer')", 6, |k| {
            matches!(k, K::InvalidCount { .. })
        }),
        ("OutOf(1)", 7, |k| matches!(k, K::NoSubPolicies { .. })),
        ("OR()", 3, |k| matches!(k, K::NoSubPolicies { .. })),
        (
            "OR(A.member)",
            3,
            |k| matches!(k, K::UnquotedPrincipal { found } if found == "A.member"),
        ),
        ("OR('A.member)", 3, |k| {
            *k == K::UnterminatedQuote { quote: '\'' }
        }),
        (
            "XOR('A.member')",
            0,
            |k| matches!(k, K::UnknownOperator { found } if found == "XOR"),
        ),
        ("'A.member'", 0, |k| matches!(k, K::BarePrincipal { .. })),
        ("OR('A.member',)", 14, |k| matches!(k, K::Unexpected { .. })),
        ("OR('A.member' 'B.member')", 14, |k| {
            matches!(
                k,
                K::Unexpected {
                    expected: "',' or ')'",
                    ..
                }
            )
        }),
        ("AND 'A.member'", 4, |k| matches!(k, K::Unexpected { .. })),
        ("OR(", 3, |k| matches!(k, K::UnexpectedEnd { .. })),
    ];
    for (src, offset, check) in cases {
        let err = parse(src).expect_err(src);
        assert_eq!(err.offset, *offset, "offset for {src:?}: {err}");
        assert!(check(&err.kind), "kind for {src:?}: {:?}", err.kind);
        assert_eq!(err.line, 1);
        assert_eq!(err.column, src[..err.offset].chars().count() + 1);
    }
}

#[test]
fn parse_error_messages_say_what_was_expected_and_found() {
    let err = parse("OR('A.member' 'B.member')").unwrap_err();
    assert_eq!(
        err.to_string(),
        "policy syntax error at column 15: expected ',' or ')', found 'B.member'"
    );
    let err = parse("AND('A.peer', 'B.peer'").unwrap_err();
    assert!(err.to_string().contains("unbalanced parentheses"), "{err}");
    let err =
        parse("OutOf(3, 'A.peer', 'B.peer', 'C.peer', 'D.peer', 'E.peer', 'F.peer'").unwrap_err();
    assert!(
        err.to_string()
            .contains("the '(' at column 6 is never closed"),
        "{err}"
    );
}

#[test]
fn whitespace_and_nesting_are_tolerated() {
    let compact = parse("AND('A.peer',OR('B.peer','C.peer'))").unwrap();
    let spaced = parse(" \n AND (\t'A.peer' ,\n   OR ( 'B.peer' , 'C.peer' ) )\n").unwrap();
    assert_eq!(compact, spaced);
}

#[test]
fn nesting_depth_and_principal_count_are_limited() {
    let nested =
        |levels: usize| format!("{}'A.member'{}", "OR(".repeat(levels), ")".repeat(levels));
    assert!(parse(&nested(MAX_POLICY_DEPTH)).is_ok());
    let err = parse(&nested(MAX_POLICY_DEPTH + 1)).unwrap_err();
    assert_eq!(
        err.kind,
        PolicyParseErrorKind::TooDeep {
            limit: MAX_POLICY_DEPTH
        }
    );
    assert_eq!(err.offset, 3 * MAX_POLICY_DEPTH);

    // Hostile input: deep enough to overflow a naive recursive parser's stack.
    let hostile = "OR(".repeat(200_000);
    assert_eq!(
        parse(&hostile).unwrap_err().kind,
        PolicyParseErrorKind::TooDeep {
            limit: MAX_POLICY_DEPTH
        }
    );

    let many = |count: usize| format!("OR({})", vec!["'A.member'"; count].join(","));
    assert!(parse(&many(MAX_POLICY_PRINCIPALS)).is_ok());
    let err = parse(&many(MAX_POLICY_PRINCIPALS + 1)).unwrap_err();
    assert_eq!(
        err.kind,
        PolicyParseErrorKind::TooManyPrincipals {
            limit: MAX_POLICY_PRINCIPALS
        }
    );
    assert_eq!(err.offset, 3 + 11 * MAX_POLICY_PRINCIPALS);
}

#[test]
fn encoding_matches_fabric_layout() {
    // Fabric numbers the principals of nested gates before the gate's own principals.
    let env = parse("AND('A.peer', OR('B.peer', 'C.peer'))").unwrap();
    let expected = SignaturePolicyEnvelope {
        version: 0,
        rule: Some(n_out_of(
            2,
            vec![signed_by(2), n_out_of(1, vec![signed_by(0), signed_by(1)])],
        )),
        identities: vec![
            role("B", MspRoleType::Peer),
            role("C", MspRoleType::Peer),
            role("A", MspRoleType::Peer),
        ],
    };
    assert_eq!(env, expected);
    assert_eq!(env.encode_to_vec(), expected.encode_to_vec());

    // Fabric's TestComplex2 and TestNodeOUs layouts.
    let env = parse("OR(AND('A.member', 'B.member'), OR('C.admin', 'D.member'))").unwrap();
    assert_eq!(
        env.identities,
        vec![
            role("A", MspRoleType::Member),
            role("B", MspRoleType::Member),
            role("C", MspRoleType::Admin),
            role("D", MspRoleType::Member)
        ]
    );
    assert_eq!(
        env.rule,
        Some(n_out_of(
            1,
            vec![
                n_out_of(2, vec![signed_by(0), signed_by(1)]),
                n_out_of(1, vec![signed_by(2), signed_by(3)])
            ]
        ))
    );
    let env = parse("OR('A.peer', 'B.admin', 'C.orderer', 'D.client')").unwrap();
    assert_eq!(
        env.identities,
        vec![
            role("A", MspRoleType::Peer),
            role("B", MspRoleType::Admin),
            role("C", MspRoleType::Orderer),
            role("D", MspRoleType::Client)
        ]
    );
    let env = parse("OutOf(2, 'A.member', 'B.member', 'C.member')").unwrap();
    assert_eq!(
        env.rule,
        Some(n_out_of(2, vec![signed_by(0), signed_by(1), signed_by(2)]))
    );
}

#[test]
fn round_trip_through_the_syntax() {
    let canonical = [
        "AND('A.peer', OR('B.peer', 'C.peer'))",
        "OR('DSOMSP.member')",
        "OutOf(2, 'A.member', 'B.admin', 'C.client')",
        "OR(AND('A.member', 'B.member'), 'C.orderer', AND('A.member', 'D.member'))",
        "OutOf(0, 'A.member', 'B.member')",
        "OutOf(3, 'A.member', 'B.member')",
        "AND(OutOf(2, 'MSP.WITH.DOTS.peer', 'MSP-WITH-DASHES.peer', OR('X.admin', 'Y.admin')), 'Z.member')",
    ];
    for src in canonical {
        let env = parse(src).unwrap();
        let text = to_policy_string(&env).unwrap();
        assert_eq!(text, src);
        assert_eq!(parse(&text).unwrap(), env, "{src}");
    }
    // Non-canonical spellings render canonically and keep their meaning.
    let env = parse("and('A.peer' , or ('B.peer','C.peer'))").unwrap();
    assert_eq!(
        to_policy_string(&env).unwrap(),
        "AND('A.peer', OR('B.peer', 'C.peer'))"
    );
}

#[test]
fn policies_outside_the_syntax_are_not_rendered() {
    let identity = SignaturePolicyEnvelope {
        version: 0,
        rule: Some(signed_by(0)),
        identities: vec![MspPrincipal {
            principal_classification: msp_principal::Classification::Identity as i32,
            principal: vec![1, 2, 3],
        }],
    };
    assert!(matches!(
        to_policy_string(&identity),
        Err(PolicyError::NotExpressible { .. })
    ));
    let empty_gate = SignaturePolicyEnvelope {
        version: 0,
        rule: Some(n_out_of(0, vec![])),
        identities: vec![],
    };
    assert!(matches!(
        to_policy_string(&empty_gate),
        Err(PolicyError::NotExpressible { .. })
    ));
    let out_of_range = SignaturePolicyEnvelope {
        version: 0,
        rule: Some(signed_by(3)),
        identities: vec![],
    };
    assert_eq!(
        to_policy_string(&out_of_range),
        Err(PolicyError::IdentityIndexOutOfRange { index: 3, count: 0 })
    );
}

/// Found by the `policy` fuzz target (fuzz/regressions/policy/bare-signed-by): an envelope
/// whose rule is a bare `SignedBy` rendered as `'Org8MSP.member'`, which `parse` refuses.
#[test]
fn a_bare_principal_renders_as_a_one_of_one_gate_that_parses_back() {
    // The fuzz input without its selector byte: rule SignedBy(0), identity Org8MSP.member.
    let bytes = [
        0x12, 0x02, 0x08, 0x00, 0x1a, 0x0b, 0x12, 0x09, 0x0a, 0x07, b'O', b'r', b'g', b'8', b'M',
        b'S', b'P',
    ];
    let env = SignaturePolicyEnvelope::decode(&bytes[..]).unwrap();
    assert_eq!(env.rule, Some(signed_by(0)));
    let text = to_policy_string(&env).unwrap();
    assert_eq!(text, "OR('Org8MSP.member')");
    let reparsed = parse(&text).unwrap();
    assert_eq!(reparsed.identities, env.identities);
    assert_eq!(reparsed.rule, Some(n_out_of(1, vec![signed_by(0)])));
}

#[test]
fn implicit_meta_strings() {
    let p = parse_implicit_meta("ANY Readers").unwrap();
    assert_eq!((p.rule, p.sub_policy.as_str()), (0, "Readers"));
    let p = parse_implicit_meta("ALL Writers").unwrap();
    assert_eq!(p.rule, 1);
    let p = parse_implicit_meta("MAJORITY Admins").unwrap();
    assert_eq!(p.rule, 2);
    assert_eq!(policy::implicit_meta_to_string(&p), "MAJORITY Admins");
    let err = parse_implicit_meta("MOST Admins").unwrap_err();
    assert!(
        matches!(err.kind, PolicyParseErrorKind::UnknownImplicitMetaRule { ref found } if found == "MOST")
    );
}

// ---------------------------------------------------------------------------------------------
// Signature-policy evaluation.

#[test]
fn evaluation_truth_table() {
    let n = net();
    let cases: &[(&str, Vec<&SigningIdentity>, bool)] = &[
        (
            "AND('DSOMSP.peer', 'RetailerMSP.peer')",
            vec![&n.dso_peer, &n.retailer_peer],
            true,
        ),
        (
            "AND('DSOMSP.peer', 'RetailerMSP.peer')",
            vec![&n.dso_peer],
            false,
        ),
        (
            "AND('DSOMSP.peer', 'RetailerMSP.peer')",
            vec![&n.retailer_peer, &n.dso_peer],
            true,
        ),
        (
            "OR('DSOMSP.peer', 'RetailerMSP.peer')",
            vec![&n.retailer_peer],
            true,
        ),
        (
            "OR('DSOMSP.peer', 'RetailerMSP.peer')",
            vec![&n.community_peer],
            false,
        ),
        ("OR('DSOMSP.peer', 'RetailerMSP.peer')", vec![], false),
        (
            "OutOf(2, 'DSOMSP.peer', 'RetailerMSP.peer', 'CommunityMSP.peer')",
            vec![&n.community_peer, &n.dso_peer],
            true,
        ),
        (
            "OutOf(2, 'DSOMSP.peer', 'RetailerMSP.peer', 'CommunityMSP.peer')",
            vec![&n.community_peer],
            false,
        ),
        ("OutOf(0, 'DSOMSP.peer')", vec![], true),
        ("OutOf(2, 'DSOMSP.peer')", vec![&n.dso_peer], false),
        (
            "AND('DSOMSP.peer', OR('RetailerMSP.peer', 'CommunityMSP.peer'))",
            vec![&n.dso_peer, &n.community_peer],
            true,
        ),
        (
            "AND('DSOMSP.peer', OR('RetailerMSP.peer', 'CommunityMSP.peer'))",
            vec![&n.retailer_peer, &n.community_peer],
            false,
        ),
        ("OR('OrdererMSP.orderer')", vec![&n.orderer], true),
    ];
    for (policy, signers, expected) in cases {
        let evaluation = eval(&n, policy, signers);
        assert_eq!(
            evaluation.satisfied,
            *expected,
            "{policy} with {} signers:\n{}",
            signers.len(),
            evaluation.explanation
        );
        assert_eq!(evaluation.explanation.satisfied, *expected);
        // The fast path agrees with the explaining path.
        let signed = sign_all(signers);
        let verified = verify_signers(&borrow(&signed), &n.msps, NOW);
        let compiled = policy::CompiledSignaturePolicy::compile(&parse(policy).unwrap()).unwrap();
        assert_eq!(
            compiled.is_satisfied(&verified),
            *expected,
            "fast path for {policy}"
        );
    }
}

#[test]
fn each_signer_counts_at_most_once() {
    let n = net();
    let policy = "OutOf(2, 'DSOMSP.member', 'DSOMSP.member')";
    let one = eval(&n, policy, &[&n.dso_client]);
    assert!(!one.satisfied);
    let missing = missing_of(&gate_rules(rule_of(&one))[1]);
    assert!(
        missing.contains("already counted for another principal"),
        "{missing}"
    );

    assert!(eval(&n, policy, &[&n.dso_client, &n.dso_client2]).satisfied);

    // The same identity signing twice is one signer.
    let twice = eval(&n, policy, &[&n.dso_client, &n.dso_client]);
    assert!(!twice.satisfied);
    assert_eq!(twice.explanation.signers.len(), 1);
    assert_eq!(twice.explanation.rejected_signers.len(), 1);
    assert_eq!(twice.explanation.rejected_signers[0].index, 1);
    assert_eq!(
        twice.explanation.rejected_signers[0].reason,
        RejectionReason::Duplicate { of: 0 }
    );
}

#[test]
fn role_principals() {
    let n = net();
    // admin: admin OU; member: anyone of the MSP; client/peer/orderer: that NodeOU.
    assert!(eval(&n, "OR('DSOMSP.admin')", &[&n.dso_admin]).satisfied);
    assert!(!eval(&n, "OR('DSOMSP.admin')", &[&n.dso_peer, &n.dso_client]).satisfied);
    assert!(eval(&n, "OR('DSOMSP.member')", &[&n.dso_admin]).satisfied);
    assert!(eval(&n, "OR('DSOMSP.member')", &[&n.dso_peer]).satisfied);
    assert!(!eval(&n, "OR('DSOMSP.member')", &[&n.retailer_peer]).satisfied);
    assert!(eval(&n, "OR('DSOMSP.client')", &[&n.dso_client]).satisfied);
    assert!(!eval(&n, "OR('DSOMSP.client')", &[&n.dso_peer, &n.dso_admin]).satisfied);
    assert!(eval(&n, "OR('DSOMSP.peer')", &[&n.dso_peer]).satisfied);
    assert!(!eval(&n, "OR('DSOMSP.peer')", &[&n.dso_client]).satisfied);
    assert!(eval(&n, "OR('OrdererMSP.orderer')", &[&n.orderer]).satisfied);
    assert!(!eval(&n, "OR('OrdererMSP.orderer')", &[&n.orderer_admin]).satisfied);
    assert!(eval(&n, "OR('OrdererMSP.admin')", &[&n.orderer_admin]).satisfied);
}

#[test]
fn identity_principal_matches_the_named_identity() {
    let n = net();
    let env = SignaturePolicyEnvelope {
        version: 0,
        rule: Some(signed_by(0)),
        identities: vec![MspPrincipal {
            principal_classification: msp_principal::Classification::Identity as i32,
            principal: n.dso_client.serialized().to_vec(),
        }],
    };
    let with = sign_all(&[&n.dso_client]);
    assert!(
        evaluate_signature_policy(&env, &borrow(&with), &n.msps, NOW)
            .unwrap()
            .satisfied
    );
    let without = sign_all(&[&n.dso_client2]);
    let evaluation = evaluate_signature_policy(&env, &borrow(&without), &n.msps, NOW).unwrap();
    assert!(!evaluation.satisfied);
    let missing = missing_of(rule_of(&evaluation));
    assert!(
        missing.starts_with("no signature from the specific identity from DSOMSP"),
        "{missing}"
    );
}

// ---------------------------------------------------------------------------------------------
// One identity, many encodings.

/// The same PEM certificate with 76-character lines and a trailing blank line.
fn rewrapped(cert_pem: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(cert_pem).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in body.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n\n");
    out.into_bytes()
}

/// A serialized identity with an unknown field (number 3, varint 1) appended; protobuf
/// decoders skip it.
fn with_unknown_field(serialized: &[u8]) -> Vec<u8> {
    let mut out = serialized.to_vec();
    out.extend_from_slice(&[0x18, 0x01]);
    out
}

/// `signer`'s identity serialized four ways: as it signs, with its PEM re-wrapped, with an
/// unknown protobuf field, and with the high-S twin of its certificate's signature.
fn encodings_of(signer: &SigningIdentity) -> Vec<Vec<u8>> {
    let twin = high_s_twin_pem(std::str::from_utf8(signer.cert_pem()).unwrap()).unwrap();
    vec![
        signer.serialized().to_vec(),
        serialize_identity(signer.msp_id(), &rewrapped(signer.cert_pem())),
        with_unknown_field(signer.serialized()),
        serialize_identity(signer.msp_id(), twin.as_bytes()),
    ]
}

#[test]
fn one_admin_in_several_encodings_counts_once() {
    let n = net();
    let encodings = encodings_of(&n.dso_admin);
    let signed: Vec<Signed> = encodings
        .iter()
        .map(|identity| Signed {
            data: MESSAGE.to_vec(),
            identity: identity.clone(),
            signature: n.dso_admin.sign(MESSAGE),
        })
        .collect();
    let one_admin = parse("OR('DSOMSP.admin')").unwrap();
    for (i, one) in signed.iter().enumerate() {
        let evaluation =
            evaluate_signature_policy(&one_admin, &borrow(std::slice::from_ref(one)), &n.msps, NOW)
                .unwrap();
        assert!(
            evaluation.satisfied,
            "encoding {i} is a valid admin signature"
        );
    }

    let two_admins = parse("OutOf(2, 'DSOMSP.admin', 'DSOMSP.admin')").unwrap();
    let evaluation =
        evaluate_signature_policy(&two_admins, &borrow(&signed), &n.msps, NOW).unwrap();
    assert!(
        !evaluation.satisfied,
        "one admin, however encoded, is one signer"
    );
    assert_eq!(evaluation.explanation.signers.len(), 1);
    let rejected = &evaluation.explanation.rejected_signers;
    assert_eq!(
        rejected.iter().map(|r| r.index).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(
        rejected
            .iter()
            .all(|r| r.reason == RejectionReason::Duplicate { of: 0 })
    );

    // The same through identities verified elsewhere.
    let identities: Vec<_> = encodings
        .iter()
        .map(|bytes| n.msps.deserialize_identity(bytes, NOW).unwrap())
        .collect();
    assert!(identities.iter().all(|id| id.id() == identities[0].id()));
    let verified = VerifiedSigners::from_identities(identities);
    assert_eq!(verified.len(), 1);
    assert_eq!(verified.rejected().len(), 3);
    let compiled = policy::CompiledSignaturePolicy::compile(&two_admins).unwrap();
    assert!(!compiled.is_satisfied(&verified));

    // Two different members do satisfy it.
    let members = parse("OutOf(2, 'DSOMSP.member', 'DSOMSP.member')").unwrap();
    let mut two = sign_all(&[&n.dso_client]);
    two.extend(signed);
    assert!(
        evaluate_signature_policy(&members, &borrow(&two), &n.msps, NOW)
            .unwrap()
            .satisfied
    );
}

#[test]
fn identity_principal_matches_every_encoding_of_its_certificate() {
    let n = net();
    let with = sign_all(&[&n.dso_client]);
    for (i, principal) in encodings_of(&n.dso_client).into_iter().enumerate() {
        let env = SignaturePolicyEnvelope {
            version: 0,
            rule: Some(signed_by(0)),
            identities: vec![MspPrincipal {
                principal_classification: msp_principal::Classification::Identity as i32,
                principal,
            }],
        };
        assert!(
            evaluate_signature_policy(&env, &borrow(&with), &n.msps, NOW)
                .unwrap()
                .satisfied,
            "principal encoding {i}"
        );
    }
    // The same certificate under another MSP id is another identity.
    let elsewhere = SignaturePolicyEnvelope {
        version: 0,
        rule: Some(signed_by(0)),
        identities: vec![MspPrincipal {
            principal_classification: msp_principal::Classification::Identity as i32,
            principal: serialize_identity("RetailerMSP", n.dso_client.cert_pem()),
        }],
    };
    assert!(
        !evaluate_signature_policy(&elsewhere, &borrow(&with), &n.msps, NOW)
            .unwrap()
            .satisfied
    );
}

#[test]
fn greedy_choice_follows_fabric() {
    let n = net();
    // The admin is taken by 'DSOMSP.member' first, so 'DSOMSP.admin' finds no unused admin —
    // Fabric's cauthdsl gives the same verdict. The other order works.
    let policy = "AND('DSOMSP.member', 'DSOMSP.admin')";
    let admin_first = eval(&n, policy, &[&n.dso_admin, &n.dso_client]);
    assert!(!admin_first.satisfied);
    let missing = missing_of(&gate_rules(rule_of(&admin_first))[1]);
    assert!(missing.contains("already counted"), "{missing}");
    assert!(eval(&n, policy, &[&n.dso_client, &n.dso_admin]).satisfied);

    // A failed sub-rule gives back the signers it tentatively used.
    let policy = "OR(AND('DSOMSP.peer', 'RetailerMSP.peer'), 'DSOMSP.peer')";
    let evaluation = eval(&n, policy, &[&n.dso_peer]);
    assert!(evaluation.satisfied, "{}", evaluation.explanation);
    let rules = gate_rules(rule_of(&evaluation));
    assert!(!rules[0].satisfied());
    assert!(
        matches!(&rules[1], RuleExplanation::SignedBy { satisfied: true, satisfied_by: Some(s), .. } if s.index == 0)
    );
}

#[test]
fn wrong_role_signer_appears_in_the_missing_text() {
    let n = net();
    let evaluation = eval(
        &n,
        "AND('DSOMSP.peer', 'RetailerMSP.peer')",
        &[&n.retailer_peer, &n.dso_client],
    );
    assert!(!evaluation.satisfied);
    let rules = gate_rules(rule_of(&evaluation));
    let missing = missing_of(&rules[0]);
    assert!(
        missing.starts_with("no signature from a 'DSOMSP.peer'; signers present: "),
        "{missing}"
    );
    assert!(
        missing.contains("peer0.retailer") && missing.contains("(RetailerMSP, peer)"),
        "{missing}"
    );
    assert!(
        missing.contains("User1@dso") && missing.contains("(DSOMSP, client)"),
        "{missing}"
    );
    match &rules[1] {
        RuleExplanation::SignedBy {
            satisfied: true,
            satisfied_by: Some(s),
            principal,
            ..
        } => {
            assert_eq!(principal, "'RetailerMSP.peer'");
            assert_eq!(
                (s.index, s.msp_id.as_str(), s.role.as_deref()),
                (0, "RetailerMSP", Some("peer"))
            );
            assert!(s.subject.contains("peer0.retailer"), "{}", s.subject);
        }
        other => panic!("expected a satisfied principal, got {other:?}"),
    }
    let text = evaluation.explanation.to_string();
    assert!(text.starts_with("policy NOT satisfied\n"), "{text}");
    assert!(text.contains("AND: 2 of 2 required, 1 satisfied"), "{text}");
    assert!(
        text.contains("[FAIL] 'DSOMSP.peer': no signature from a 'DSOMSP.peer'"),
        "{text}"
    );
    assert!(text.contains("'RetailerMSP.peer': satisfied by "), "{text}");
}

#[test]
fn out_of_explanation_counts() {
    let n = net();
    let evaluation = eval(
        &n,
        "OutOf(2, 'DSOMSP.peer', 'RetailerMSP.peer', 'CommunityMSP.peer')",
        &[&n.dso_peer],
    );
    assert!(!evaluation.satisfied);
    match rule_of(&evaluation) {
        RuleExplanation::NOutOf {
            operator,
            required,
            satisfied_count,
            rules,
            satisfied,
        } => {
            assert_eq!(
                (
                    operator.as_str(),
                    *required,
                    *satisfied_count,
                    rules.len(),
                    *satisfied
                ),
                ("OutOf(2)", 2, 1, 3, false)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        evaluation
            .explanation
            .to_string()
            .contains("OutOf(2): 2 of 3 required, 1 satisfied")
    );
}

#[test]
fn bad_signature_is_rejected_and_reported() {
    let n = net();
    let env = parse("AND('DSOMSP.peer', 'RetailerMSP.peer')").unwrap();
    let mut signed = sign_all(&[&n.dso_peer, &n.retailer_peer]);
    signed[0].signature = n.dso_peer.sign(b"some other message");
    let evaluation = evaluate_signature_policy(&env, &borrow(&signed), &n.msps, NOW).unwrap();
    assert!(!evaluation.satisfied);
    let rejected = &evaluation.explanation.rejected_signers;
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        (rejected[0].index, rejected[0].reason.clone()),
        (0, RejectionReason::BadSignature)
    );
    assert_eq!(rejected[0].claimed_msp_id.as_deref(), Some("DSOMSP"));
    let missing = missing_of(&gate_rules(rule_of(&evaluation))[0]);
    assert!(
        missing.contains("rejected: signer #0 (claims DSOMSP): bad signature"),
        "{missing}"
    );
    let text = evaluation.explanation.to_string();
    assert!(
        text.contains("rejected signers:\n  signer #0 (claims DSOMSP): bad signature"),
        "{text}"
    );

    // Garbage signature bytes are a rejection too, never an error.
    signed[0].signature = vec![0x30, 0x03, 0x02, 0x01];
    let evaluation = evaluate_signature_policy(&env, &borrow(&signed), &n.msps, NOW).unwrap();
    assert_eq!(
        evaluation.explanation.rejected_signers[0].reason,
        RejectionReason::BadSignature
    );
}

#[test]
fn invalid_identities_are_rejected_and_reported() {
    let n = net();
    let env = parse("OR('OutsiderMSP.peer', 'DSOMSP.client', 'DSOMSP.peer')").unwrap();
    let mut signed = sign_all(&[&n.outsider, &n.expired]);
    signed.push(Signed {
        data: MESSAGE.to_vec(),
        identity: b"not a serialized identity".to_vec(),
        signature: vec![1],
    });
    let evaluation = evaluate_signature_policy(&env, &borrow(&signed), &n.msps, NOW).unwrap();
    assert!(!evaluation.satisfied);
    assert!(evaluation.explanation.signers.is_empty());
    let rejected = &evaluation.explanation.rejected_signers;
    assert_eq!(rejected.len(), 3);
    assert!(
        rejected
            .iter()
            .all(|r| r.reason == RejectionReason::InvalidIdentity)
    );
    assert_eq!(rejected[0].claimed_msp_id.as_deref(), Some("OutsiderMSP"));
    assert!(
        rejected[0].detail.contains("OutsiderMSP"),
        "{}",
        rejected[0].detail
    );
    assert!(
        rejected[1].detail.contains("not valid at"),
        "{}",
        rejected[1].detail
    );
    let missing = missing_of(&gate_rules(rule_of(&evaluation))[1]);
    assert!(
        missing.starts_with("no signature from a 'DSOMSP.client'; no valid signers"),
        "{missing}"
    );
    assert!(
        missing.contains("rejected: signer #1 (claims DSOMSP): invalid identity"),
        "{missing}"
    );
}

#[test]
fn malformed_policy_is_an_error_not_a_verdict() {
    let n = net();
    let env = SignaturePolicyEnvelope {
        version: 0,
        rule: Some(n_out_of(1, vec![signed_by(0), signed_by(5)])),
        identities: vec![role("DSOMSP", MspRoleType::Peer)],
    };
    let signed = sign_all(&[&n.dso_peer]);
    assert_eq!(
        evaluate_signature_policy(&env, &borrow(&signed), &n.msps, NOW),
        Err(PolicyError::IdentityIndexOutOfRange { index: 5, count: 1 })
    );
}

#[test]
fn explanation_types_serialize() {
    let n = net();
    let evaluation = eval(&n, "OR('DSOMSP.peer')", &[&n.dso_peer]);
    assert!(evaluation.satisfied);
    let json = serde_json::to_value(&evaluation.explanation).unwrap();
    assert_eq!(json["satisfied"], serde_json::json!(true));
    assert_eq!(json["signers"].as_array().map(Vec::len), Some(1));
    assert!(json.to_string().contains("DSOMSP"), "{json}");

    let failed = eval(&n, "AND('DSOMSP.peer', 'RetailerMSP.peer')", &[&n.dso_peer]);
    assert!(!failed.satisfied);
    let json = serde_json::to_value(&failed.explanation).unwrap();
    assert_eq!(json["satisfied"], serde_json::json!(false));
    assert!(
        json["policy"].to_string().contains("RetailerMSP"),
        "the missing principal must be in the JSON: {json}"
    );
}

// ---------------------------------------------------------------------------------------------
// Implicit-meta policies over a channel config tree.

fn sig(policy: &str) -> ConfigPolicy {
    ConfigPolicy {
        version: 0,
        policy: Some(Policy {
            r#type: PolicyType::Signature as i32,
            value: parse(policy).unwrap().encode_to_vec(),
        }),
        mod_policy: "Admins".into(),
    }
}

fn meta(policy: &str) -> ConfigPolicy {
    ConfigPolicy {
        version: 0,
        policy: Some(Policy {
            r#type: PolicyType::ImplicitMeta as i32,
            value: parse_implicit_meta(policy).unwrap().encode_to_vec(),
        }),
        mod_policy: "Admins".into(),
    }
}

fn group(policies: &[(&str, ConfigPolicy)], groups: Vec<(&str, ConfigGroup)>) -> ConfigGroup {
    ConfigGroup {
        version: 0,
        groups: groups
            .into_iter()
            .map(|(k, g)| (k.to_string(), g))
            .collect(),
        values: BTreeMap::new(),
        policies: policies
            .iter()
            .map(|(k, p)| (k.to_string(), p.clone()))
            .collect(),
        mod_policy: "Admins".into(),
    }
}

fn org_group(msp: &str) -> ConfigGroup {
    group(
        &[
            ("Admins", sig(&format!("OR('{msp}.admin')"))),
            ("Readers", sig(&format!("OR('{msp}.member')"))),
            (
                "Writers",
                sig(&format!("OR('{msp}.admin', '{msp}.client')")),
            ),
            ("Endorsement", sig(&format!("OR('{msp}.peer')"))),
        ],
        vec![],
    )
}

fn channel_config() -> ConfigGroup {
    let application = group(
        &[
            ("Admins", meta("MAJORITY Admins")),
            ("Readers", meta("ANY Readers")),
            ("Writers", meta("ANY Writers")),
            ("Endorsement", meta("ALL Endorsement")),
            ("LifecycleEndorsement", meta("MAJORITY Endorsement")),
        ],
        vec![
            ("DSOMSP", org_group("DSOMSP")),
            ("RetailerMSP", org_group("RetailerMSP")),
            ("CommunityMSP", org_group("CommunityMSP")),
        ],
    );
    let orderer = group(
        &[
            ("Admins", meta("MAJORITY Admins")),
            ("Writers", meta("ANY Writers")),
            ("BlockValidation", meta("ANY Writers")),
        ],
        vec![(
            "OrdererMSP",
            group(
                &[
                    ("Admins", sig("OR('OrdererMSP.admin')")),
                    ("Writers", sig("OR('OrdererMSP.orderer')")),
                ],
                vec![],
            ),
        )],
    );
    group(
        &[
            ("Admins", meta("MAJORITY Admins")),
            ("Writers", meta("ANY Writers")),
            ("Readers", meta("ANY Readers")),
        ],
        vec![("Application", application), ("Orderer", orderer)],
    )
}

fn tree_eval(tree: &PolicyTree, n: &Net, path: &str, signers: &[&SigningIdentity]) -> Evaluation {
    let signed = sign_all(signers);
    let evaluation = tree
        .evaluate(path, &borrow(&signed), &n.msps, NOW)
        .expect("path exists");
    let verified = verify_signers(&borrow(&signed), &n.msps, NOW);
    assert_eq!(
        tree.is_satisfied(path, &verified).unwrap(),
        evaluation.satisfied,
        "fast path for {path}"
    );
    evaluation
}

#[test]
fn implicit_meta_any_all_majority() {
    let n = net();
    let tree = PolicyTree::from_config_group(&channel_config()).unwrap();

    // ANY Writers: one org's writer is enough.
    assert!(
        tree_eval(
            &tree,
            &n,
            "/Channel/Application/Writers",
            &[&n.retailer_client]
        )
        .satisfied
    );
    assert!(!tree_eval(&tree, &n, "/Channel/Application/Writers", &[&n.orderer]).satisfied);

    // MAJORITY Admins of three orgs needs two.
    let one = tree_eval(&tree, &n, "/Channel/Application/Admins", &[&n.dso_admin]);
    assert!(!one.satisfied);
    match &one.explanation.policy {
        PolicyExplanation::ImplicitMeta {
            rule,
            sub_policy,
            required,
            satisfied_count,
            children,
            ..
        } => {
            assert_eq!(
                (
                    rule.as_str(),
                    sub_policy.as_str(),
                    *required,
                    *satisfied_count
                ),
                ("MAJORITY", "Admins", 2, 1)
            );
            let paths: Vec<_> = children
                .iter()
                .map(|c| match c {
                    PolicyExplanation::Signature {
                        path: Some(p),
                        satisfied,
                        ..
                    } => (p.as_str(), *satisfied),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(
                paths,
                vec![
                    ("/Channel/Application/CommunityMSP/Admins", false),
                    ("/Channel/Application/DSOMSP/Admins", true),
                    ("/Channel/Application/RetailerMSP/Admins", false)
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    let text = one.explanation.to_string();
    assert!(text.contains("/Channel/Application/Admins (implicit meta MAJORITY Admins): 2 of 3 child groups required, 1 satisfied"), "{text}");
    assert!(
        text.contains("no signature from a 'CommunityMSP.admin'"),
        "{text}"
    );
    assert!(
        tree_eval(
            &tree,
            &n,
            "/Channel/Application/Admins",
            &[&n.dso_admin, &n.community_admin]
        )
        .satisfied
    );

    // ALL Endorsement needs every org's peer; MAJORITY Endorsement two of them.
    assert!(
        !tree_eval(
            &tree,
            &n,
            "/Channel/Application/Endorsement",
            &[&n.dso_peer, &n.retailer_peer]
        )
        .satisfied
    );
    assert!(
        tree_eval(
            &tree,
            &n,
            "/Channel/Application/Endorsement",
            &[&n.dso_peer, &n.retailer_peer, &n.community_peer]
        )
        .satisfied
    );
    assert!(
        tree_eval(
            &tree,
            &n,
            "/Channel/Application/LifecycleEndorsement",
            &[&n.dso_peer, &n.retailer_peer]
        )
        .satisfied
    );

    // Orderer block validation, and a two-level implicit meta at /Channel/Admins.
    assert!(tree_eval(&tree, &n, "/Channel/Orderer/BlockValidation", &[&n.orderer]).satisfied);
    assert!(
        !tree_eval(
            &tree,
            &n,
            "/Channel/Orderer/BlockValidation",
            &[&n.dso_peer]
        )
        .satisfied
    );
    let admins = [&n.dso_admin, &n.retailer_admin];
    assert!(
        !tree_eval(&tree, &n, "/Channel/Admins", &admins).satisfied,
        "the orderer org's admins are missing"
    );
    let all_admins = [&n.dso_admin, &n.retailer_admin, &n.orderer_admin];
    let evaluation = tree_eval(&tree, &n, "/Channel/Admins", &all_admins);
    assert!(evaluation.satisfied, "{}", evaluation.explanation);
    assert!(
        evaluation
            .explanation
            .to_string()
            .contains("    [ok]   /Channel/Application/DSOMSP/Admins (signature policy)")
    );
}

#[test]
fn implicit_meta_missing_sub_policy_and_empty_groups_follow_fabric() {
    let n = net();
    let mut config = channel_config();
    // RetailerMSP has no Endorsement policy: it counts as unsatisfied.
    if let Some(app) = config.groups.get_mut("Application") {
        if let Some(retailer) = app.groups.get_mut("RetailerMSP") {
            retailer.policies.remove("Endorsement");
        }
    }
    // A group without child groups: Fabric's threshold is 0, so ALL/ANY/MAJORITY hold.
    config.groups.insert(
        "Consortiums".into(),
        group(
            &[
                ("Admins", meta("ALL Admins")),
                ("Readers", meta("ANY Readers")),
            ],
            vec![],
        ),
    );
    let tree = PolicyTree::from_config_group(&config).unwrap();

    let peers = [&n.dso_peer, &n.retailer_peer, &n.community_peer];
    let evaluation = tree_eval(&tree, &n, "/Channel/Application/Endorsement", &peers);
    assert!(!evaluation.satisfied);
    let text = evaluation.explanation.to_string();
    assert!(text.contains("[FAIL] /Channel/Application/RetailerMSP/Endorsement: group /Channel/Application/RetailerMSP has no policy 'Endorsement'"), "{text}");
    assert!(
        tree_eval(
            &tree,
            &n,
            "/Channel/Application/LifecycleEndorsement",
            &peers
        )
        .satisfied
    );

    assert!(tree_eval(&tree, &n, "/Channel/Consortiums/Admins", &[]).satisfied);
    assert!(tree_eval(&tree, &n, "/Channel/Consortiums/Readers", &[]).satisfied);
}

#[test]
fn tree_paths_and_lookup() {
    let n = net();
    let tree = PolicyTree::from_config_group(&channel_config()).unwrap();
    let paths = tree.paths();
    assert!(paths.contains(&"/Channel/Orderer/BlockValidation".to_string()));
    assert!(paths.contains(&"/Channel/Application/DSOMSP/Endorsement".to_string()));
    assert_eq!(paths.len(), 3 + 5 + 3 + 3 * 4 + 2);
    let policy = tree.policy("/Channel/Application/DSOMSP/Admins").unwrap();
    assert_eq!(policy.r#type, PolicyType::Signature as i32);
    assert_eq!(
        to_policy_string(&SignaturePolicyEnvelope::decode(policy.value.as_slice()).unwrap())
            .unwrap(),
        "OR('DSOMSP.admin')"
    );
    assert!(tree.policy("/Channel/Application/Nope").is_none());

    let signed = sign_all(&[&n.dso_peer]);
    let data = borrow(&signed);
    let not_found = tree
        .evaluate("/Channel/Application/Nope", &data, &n.msps, NOW)
        .unwrap_err();
    match &not_found {
        PolicyError::PolicyNotFound { path, available } => {
            assert_eq!(path, "/Channel/Application/Nope");
            assert!(available.contains(&"Writers".to_string()));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        not_found
            .to_string()
            .contains("policies there: Admins, Endorsement"),
        "{not_found}"
    );
    assert!(matches!(
        tree.evaluate("/Channel/Applications/Writers", &data, &n.msps, NOW),
        Err(PolicyError::GroupNotFound { ref group, .. }) if group == "/Channel/Applications"
    ));
    for bad in [
        "Channel/Application/Writers",
        "/Other/Writers",
        "/Channel",
        "/Channel//Writers",
        "",
    ] {
        assert!(
            matches!(
                tree.evaluate(bad, &data, &n.msps, NOW),
                Err(PolicyError::InvalidPath { .. })
            ),
            "{bad}"
        );
    }

    // Signers are verified once and the verdict is the same through either entry point.
    let verified = verify_signers(&data, &n.msps, NOW);
    let direct = tree
        .evaluate_verified("/Channel/Application/Endorsement", &verified)
        .unwrap();
    let via_signed = tree
        .evaluate("/Channel/Application/Endorsement", &data, &n.msps, NOW)
        .unwrap();
    assert_eq!(direct, via_signed);
    assert_eq!(
        VerifiedSigners::from_identities(verified.signers().iter().map(|s| s.identity.clone()))
            .len(),
        1
    );
}

#[test]
fn tree_construction_errors_name_the_path() {
    let mut config = channel_config();
    fn org(c: &mut ConfigGroup) -> &mut ConfigGroup {
        c.groups
            .get_mut("Application")
            .and_then(|a| a.groups.get_mut("DSOMSP"))
            .expect("DSOMSP group")
    }

    org(&mut config).policies.insert(
        "Legacy".into(),
        ConfigPolicy {
            version: 0,
            policy: Some(Policy {
                r#type: PolicyType::Msp as i32,
                value: vec![],
            }),
            mod_policy: String::new(),
        },
    );
    let err = PolicyTree::from_config_group(&config).unwrap_err();
    assert_eq!(
        err,
        PolicyError::UnsupportedPolicyType {
            path: "/Channel/Application/DSOMSP/Legacy".into(),
            policy_type: "MSP".into()
        }
    );

    org(&mut config).policies.insert(
        "Legacy".into(),
        ConfigPolicy {
            version: 0,
            policy: Some(Policy {
                r#type: 42,
                value: vec![],
            }),
            mod_policy: String::new(),
        },
    );
    assert!(
        matches!(PolicyTree::from_config_group(&config), Err(PolicyError::UnsupportedPolicyType { ref policy_type, .. }) if policy_type == "42")
    );

    org(&mut config).policies.insert(
        "Legacy".into(),
        ConfigPolicy {
            version: 0,
            policy: None,
            mod_policy: String::new(),
        },
    );
    assert_eq!(
        PolicyTree::from_config_group(&config).unwrap_err(),
        PolicyError::MissingPolicyValue {
            path: "/Channel/Application/DSOMSP/Legacy".into()
        }
    );

    org(&mut config).policies.insert(
        "Legacy".into(),
        ConfigPolicy {
            version: 0,
            policy: Some(Policy {
                r#type: PolicyType::Signature as i32,
                value: vec![0x12, 0xff],
            }),
            mod_policy: String::new(),
        },
    );
    assert!(matches!(
        PolicyTree::from_config_group(&config),
        Err(PolicyError::Decode { ref path, message: "SignaturePolicyEnvelope", .. }) if path == "/Channel/Application/DSOMSP/Legacy"
    ));

    let broken = SignaturePolicyEnvelope {
        version: 0,
        rule: Some(signed_by(2)),
        identities: vec![],
    };
    org(&mut config).policies.insert(
        "Legacy".into(),
        ConfigPolicy {
            version: 0,
            policy: Some(Policy {
                r#type: PolicyType::Signature as i32,
                value: broken.encode_to_vec(),
            }),
            mod_policy: String::new(),
        },
    );
    let err = PolicyTree::from_config_group(&config).unwrap_err();
    assert!(matches!(&err, PolicyError::InvalidPolicy { path, source }
        if path == "/Channel/Application/DSOMSP/Legacy" && **source == PolicyError::IdentityIndexOutOfRange { index: 2, count: 0 }));

    org(&mut config).policies.remove("Legacy");
    let bad_rule = gridledger_proto::common::ImplicitMetaPolicy {
        sub_policy: "Admins".into(),
        rule: 7,
    };
    config.policies.insert(
        "Odd".into(),
        ConfigPolicy {
            version: 0,
            policy: Some(Policy {
                r#type: PolicyType::ImplicitMeta as i32,
                value: bad_rule.encode_to_vec(),
            }),
            mod_policy: String::new(),
        },
    );
    assert_eq!(
        PolicyTree::from_config_group(&config).unwrap_err(),
        PolicyError::UnknownImplicitMetaRule {
            path: "/Channel/Odd".into(),
            rule: 7
        }
    );
}

#[test]
fn deep_config_groups_are_refused() {
    let mut config = group(&[("Admins", meta("ANY Admins"))], vec![]);
    for _ in 0..policy::MAX_GROUP_DEPTH {
        config = group(&[], vec![("Nested", config)]);
    }
    assert!(matches!(
        PolicyTree::from_config_group(&config),
        Err(PolicyError::GroupTooDeep { .. })
    ));
}
